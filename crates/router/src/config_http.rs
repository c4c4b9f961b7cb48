//! `/v1/config/…`: the router's configuration managed through the API — agents (with their
//! skills), queues (with their routes), numbers, attendants, trunks, opening hours, expert
//! groups and toll rules: listed for Supervisors and Admins of the tenant's organisation,
//! added, changed and removed by its Admins or the operator. A change
//! is checked as the configuration file is, applies at once — the queues choose with the new
//! skills and settings from their next offer — and is kept in the store, so it survives a
//! restart (stored changes apply over the configuration file at every start).

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use switchboard_api::{
    AgentConfigView, AgentSettings, AttendantSettings, AttendantView, ExpertGroupView,
    ExpertSettings, NumberConfigView, NumberSettings, Problem, QueueConfigView, QueueSettings,
    RouteSettings, ScheduleSettings, ScheduleView, TollRules, TrunkSettings, TrunkView,
};

use crate::center::{
    AttendantSpec, ExpertGroupSpec, NumberSpec, QueueConfig, TargetSpec, TenantSpec,
};
use crate::desk::CallCenter;
use crate::routing::Strategy;

use crate::auth::{Caller, Role};
use crate::desk::AgentChangeError;
use crate::error::ApiError;
use crate::AppState;

impl From<AgentChangeError> for ApiError {
    fn from(e: AgentChangeError) -> Self {
        match e {
            AgentChangeError::NoTenant(_)
            | AgentChangeError::Unknown(_)
            | AgentChangeError::NoNumber(_)
            | AgentChangeError::Missing(_) => ApiError::NotFound(e.to_string()),
            AgentChangeError::Busy(_)
            | AgentChangeError::Elsewhere(..)
            | AgentChangeError::InUse(_) => ApiError::Conflict(e.to_string()),
            AgentChangeError::Invalid(_) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

/// The tenant the caller may read (`write`: change) the configuration of; another
/// organisation's tenant is not there, as far as the caller can tell.
fn may(state: &AppState, caller: &Caller, tenant: &str, write: bool) -> Result<(), ApiError> {
    let org = state.center.with(|d| {
        d.tenants
            .iter()
            .find(|t| t.spec.id == tenant)
            .map(|t| t.spec.entra_tenant_id.clone())
    });
    let missing = || {
        ApiError::NotFound(format!(
            "no tenant {tenant:?} in this router's configuration"
        ))
    };
    let org = org.ok_or_else(missing)?;
    if caller.unauthenticated || caller.operator {
        return Ok(());
    }
    if !caller.member_of(org.as_deref()) {
        return Err(missing());
    }
    let allowed = caller.has(Role::Admin) || (!write && caller.has(Role::Supervisor));
    if allowed {
        Ok(())
    } else if write {
        Err(ApiError::Forbidden(
            "changing the configuration is for Admins: ask your administrator for the Admin role"
                .into(),
        ))
    } else {
        Err(ApiError::Forbidden(
            "the configuration is for Supervisors and Admins: ask your administrator for the Supervisor role".into(),
        ))
    }
}

/// 1–254 characters, one `@` with something on both sides, no space, control character,
/// `/`, `?` or `#`.
fn check_upn(upn: &str) -> Result<(), ApiError> {
    let ok = (3..=254).contains(&upn.len())
        && upn.matches('@').count() == 1
        && !upn.starts_with('@')
        && !upn.ends_with('@')
        && !upn
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#\\\"<>".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "{upn:?} is not a user principal name: write it like adele@contoso.example"
        )))
    }
}

fn check_settings(s: &AgentSettings) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::Unprocessable(why));
    if s.name.chars().count() > 200 || s.name.chars().any(char::is_control) {
        return bad("name: at most 200 characters, no control characters".into());
    }
    check_skills(&s.skills)?;
    if let Some(n) = s
        .teams_number
        .as_deref()
        .filter(|n| !crate::center::is_e164(n))
    {
        return bad(format!(
            "teams_number {n:?} is not an E.164 number: write it as + and 2 to 15 digits, e.g. \"+14255550101\""
        ));
    }
    if let Some(o) = &s.object_id {
        if uuid::Uuid::parse_str(o).is_err() {
            return bad(format!(
                "object_id {o:?} is not an Entra object id (a GUID like 00000000-0000-0000-0000-000000000000)"
            ));
        }
    }
    Ok(())
}

/// 1–64 letters, digits, `-` or `_` (a skill's or a queue's name).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// 201 for what a PUT added, 200 for what it changed.
fn created(new: bool) -> StatusCode {
    if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// At most 64 skills, names of 1–64 letters, digits, `-`, `_`, levels 1–5.
fn check_skills(skills: &std::collections::BTreeMap<String, u8>) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::Unprocessable(why));
    let s = skills;
    if s.len() > 64 {
        return bad(format!("skills: {} given, 64 at most", s.len()));
    }
    for (k, v) in s {
        if !is_name(k) {
            return bad(format!(
                "skill {k:?}: a name is 1–64 letters, digits, '-' or '_'"
            ));
        }
        if !(1..=5).contains(v) {
            return bad(format!("skill {k:?}: level {v}; levels run from 1 to 5"));
        }
    }
    Ok(())
}

/// Keeps a change in the store (`None`: removed) before it is made, so that a change the
/// store could not keep is not made (it would be lost at the next start).
async fn keep<T: serde::Serialize>(
    state: &AppState,
    tenant: &str,
    kind: &str,
    name: &str,
    settings: Option<&T>,
) -> Result<(), ApiError> {
    let json = settings
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::Unavailable(format!("the change could not be written: {e}")))?;
    let key = match kind {
        "agent" => name.to_ascii_lowercase(),
        _ => name.to_owned(),
    };
    state
        .store
        .put_config_change(tenant, kind, &key, json)
        .await?;
    Ok(())
}

/// Checks `change` on tenant `tenant` as the file is checked, keeps `settings` in the store
/// as the `kind` named `name` (`""`: the tenant's one), then makes the change; returns what
/// the change returned.
async fn check_keep_apply<T: serde::Serialize, R>(
    state: &AppState,
    tenant: &str,
    kind: &str,
    name: &str,
    settings: Option<&T>,
    change: impl Fn(&mut TenantSpec) -> Result<R, AgentChangeError>,
) -> Result<R, ApiError> {
    let key = source_key(kind, name);
    state.center.change_tenant(tenant, &key, true, &change)?;
    keep(state, tenant, kind, name, settings).await?;
    Ok(state.center.change_tenant(tenant, &key, false, &change)?)
}

/// How a tenant remembers what the API set: `kind:name`, or `kind` for the tenant's one.
fn source_key(kind: &str, name: &str) -> String {
    if name.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}:{name}")
    }
}

/// `api` when the API set `kind` `name` of tenant `t`, else `file`.
fn source(t: &crate::desk::TenantRt, kind: &str, name: &str) -> String {
    if t.others_from_api.contains(&source_key(kind, name)) {
        "api"
    } else {
        "file"
    }
    .into()
}

/// Applies a change kept in the store (at start): `kind` `agent` or `queue`, settings as
/// JSON or `None` for removed.
pub(crate) fn apply_stored(
    center: &CallCenter,
    tenant: &str,
    kind: &str,
    name: &str,
    json: Option<&str>,
) -> Result<(), String> {
    match kind {
        "agent" => {
            let settings: Option<AgentSettings> = json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| e.to_string())?;
            match center.set_agent(tenant, name, settings.as_ref()) {
                // Added through the API, then removed: nothing to undo.
                Err(AgentChangeError::Unknown(_)) if settings.is_none() => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        "queue" if json.is_none() => match center.remove_queue(tenant, name, false) {
            Err(AgentChangeError::Missing(_)) => Ok(()),
            r => r.map_err(|e| e.to_string()),
        },
        "queue" => {
            let raw: serde_json::Value =
                serde_json::from_str(json.unwrap_or("null")).map_err(|e| e.to_string())?;
            let settings: QueueSettings =
                serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
            let mut q = queue_config(name, &settings).map_err(|e| e.to_string())?;
            // Kept before the API set a queue's routes: those of the file stay.
            if raw.get("overflow").is_none() {
                let base = center
                    .queue_configs(tenant)
                    .and_then(|all| all.into_iter().find(|(b, _)| b.name == name));
                if let Some((b, _)) = base {
                    (q.overflow, q.max_wait_overflow, q.no_agents, q.callback) =
                        (b.overflow, b.max_wait_overflow, b.no_agents, b.callback);
                }
            }
            center
                .set_queue(tenant, q)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "number" => {
            let settings: Option<NumberSettings> = json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| e.to_string())?;
            let spec = settings.map(|s| number_spec(name, &s));
            match center.set_number(tenant, name, spec) {
                Err(AgentChangeError::NoNumber(_)) => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        "expert" => {
            let settings: Option<ExpertSettings> = json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| e.to_string())?;
            let change = set_expert(name, settings.as_ref());
            match center.change_tenant(tenant, &source_key("expert", name), false, change) {
                Err(AgentChangeError::Missing(_)) => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        "schedule" => {
            let settings: Option<ScheduleSettings> = json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| e.to_string())?;
            let spec = settings
                .map(|s| crate::hours::ScheduleSpec::from_settings(name, &s))
                .transpose()?;
            let change = set_schedule(name, spec);
            match center.change_tenant(tenant, &source_key("schedule", name), false, change) {
                Err(AgentChangeError::Missing(_)) => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        "trunk" if json.is_none() => {
            let r = center.change_tenant(
                tenant,
                &source_key("trunk", name),
                false,
                retire_trunk(name),
            );
            center.trunks_changed(tenant);
            match r {
                Err(AgentChangeError::Missing(_)) => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        "trunk" => {
            let settings: TrunkSettings =
                serde_json::from_str(json.unwrap_or("null")).map_err(|e| e.to_string())?;
            let spec = trunk_spec(name, &settings)?;
            let change = set_trunk(spec);
            center
                .change_tenant(tenant, &source_key("trunk", name), false, change)
                .map_err(|e| e.to_string())?;
            center.trunks_changed(tenant);
            Ok(())
        }
        "attendant" => {
            let settings: Option<AttendantSettings> = json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| e.to_string())?;
            let change = set_attendant(name, settings.map(|s| attendant_spec(name, &s)));
            let r = center.change_tenant(tenant, &source_key("attendant", name), false, change);
            center.attendant_changed(tenant, name);
            match r {
                Err(AgentChangeError::Missing(_)) => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        "outbound" => {
            let rules: Option<TollRules> = json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| e.to_string())?;
            let change = set_outbound(rules.as_ref());
            match center.change_tenant(tenant, "outbound", false, change) {
                Err(AgentChangeError::Missing(_)) => Ok(()),
                r => r.map(|_| ()).map_err(|e| e.to_string()),
            }
        }
        other => Err(format!("unknown kind {other:?}")),
    }
}

/// The queue `name` of `tenant` with `s`.
fn queue_config(name: &str, s: &QueueSettings) -> Result<QueueConfig, ApiError> {
    let strategy: Strategy = serde_json::from_value(serde_json::Value::String(s.strategy.clone()))
        .map_err(|_| ApiError::Unprocessable(format!(
            "strategy {:?}: use longest_idle, round_robin, ring_all, fewest_calls, least_talk_time, linear, random or best_skill",
            s.strategy
        )))?;
    check_skills(&s.skills)?;
    let language = s
        .language
        .as_deref()
        .map(crate::center::known_language)
        .transpose()
        .map_err(|e| ApiError::Unprocessable(format!("language: {e}")))?;
    Ok(QueueConfig {
        name: name.to_owned(),
        strategy,
        language: language.map(str::to_owned),
        skills: s.skills.clone(),
        alert_seconds: s.alert_seconds,
        wrap_up_seconds: s.wrap_up_seconds,
        max_size: s.max_size.map(|n| n as usize),
        not_ready_after_missed: s.not_ready_after_missed,
        missed_reason: s.missed_reason.clone(),
        announce_seconds: s.announce_seconds,
        service_level_seconds: s.service_level_seconds,
        service_level_target: s.service_level_target,
        max_wait_seconds: s.max_wait_seconds,
        overflow: s.overflow.as_ref().map(route_spec),
        max_wait_overflow: s.max_wait_overflow.as_ref().map(route_spec),
        no_agents: s.no_agents.as_ref().map(route_spec),
        dispositions: s.dispositions.clone(),
        callback: s.callback.clone(),
    })
}

fn queue_settings(q: &QueueConfig) -> QueueSettings {
    QueueSettings {
        strategy: serde_json::to_value(q.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        language: q.language.clone(),
        skills: q.skills.clone(),
        alert_seconds: q.alert_seconds,
        wrap_up_seconds: q.wrap_up_seconds,
        max_size: q.max_size.map(|n| n.min(u32::MAX as usize) as u32),
        not_ready_after_missed: q.not_ready_after_missed,
        missed_reason: q.missed_reason.clone(),
        announce_seconds: q.announce_seconds,
        service_level_seconds: q.service_level_seconds,
        service_level_target: q.service_level_target,
        max_wait_seconds: q.max_wait_seconds,
        dispositions: q.dispositions.clone(),
        overflow: q.overflow.as_ref().map(route_settings),
        max_wait_overflow: q.max_wait_overflow.as_ref().map(route_settings),
        no_agents: q.no_agents.as_ref().map(route_settings),
        callback: q.callback.clone(),
    }
}

fn queue_views(state: &AppState, tenant: &str) -> Result<Vec<QueueConfigView>, ApiError> {
    let all = state
        .center
        .queue_configs(tenant)
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))?;
    Ok(all
        .iter()
        .map(|(q, api)| QueueConfigView {
            tenant: tenant.to_owned(),
            name: q.name.clone(),
            settings: queue_settings(q),
            source: if *api { "api" } else { "file" }.into(),
        })
        .collect())
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/queues", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's queues and their settings, as configured now", body = Vec<QueueConfigView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_queues(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<QueueConfigView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    Ok(Json(queue_views(&state, &tenant)?))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/queues/{name}", tag = "config", request_body = QueueSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the queue's name (1–64 letters, digits, '-', '_')"),
    ),
    responses(
        (status = 200, description = "the queue was changed; callers waiting in it stay", body = QueueConfigView),
        (status = 201, description = "the queue was added (reached by transfers and internal calls by name; numbers and attendants name queues in the file)", body = QueueConfigView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a setting the configuration file would refuse (the key and why)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_queue(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<QueueSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<QueueConfigView>), ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    if !is_name(&name) {
        return Err(ApiError::Unprocessable(format!(
            "{name:?} is not a queue name: use 1–64 letters, digits, '-' or '_'"
        )));
    }
    let Json(settings) = body?;
    if !settings.service_level_target.is_finite() {
        return Err(ApiError::Unprocessable(
            "service_level_target is a percent: more than 0, at most 100".into(),
        ));
    }
    let q = queue_config(&name, &settings)?;
    state.center.check_queue(&tenant, &q)?;
    keep(&state, &tenant, "queue", &name, Some(&settings)).await?;
    let new = state.center.set_queue(&tenant, q)?;
    tracing::info!(%tenant, queue = %name, new, "queue set through the API");
    let view = queue_views(&state, &tenant)?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no queue {name:?}")))?;
    Ok((created(new), Json(view)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/queues/{name}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the queue's name"),
    ),
    responses(
        (status = 204, description = "the queue was removed: no route or transfer reaches it; a caller already being offered from it is still served"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or queue", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "callers are waiting in it: send its numbers and routes elsewhere first, then remove it once they are served", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the configuration still names the queue (a number, an attendant's key, another queue's overflow)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_queue(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    state.center.remove_queue(&tenant, &name, true)?;
    keep::<QueueSettings>(&state, &tenant, "queue", &name, None).await?;
    state.center.remove_queue(&tenant, &name, false)?;
    tracing::info!(%tenant, queue = %name, "queue removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/agents", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's agents and their skills, as configured now", body = Vec<AgentConfigView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<AgentConfigView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    let all = state
        .center
        .agent_configs(&tenant)
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))?;
    Ok(Json(all))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/agents/{upn}", tag = "config", request_body = AgentSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("upn" = String, Path, description = "the agent's user principal name"),
    ),
    responses(
        (status = 200, description = "the agent was changed", body = AgentConfigView),
        (status = 201, description = "the agent was added", body = AgentConfigView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the UPN is an agent of another tenant", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a UPN, name, skill or object id that cannot be", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_agent(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<AgentSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<AgentConfigView>), ApiError> {
    let Path((tenant, upn)) = path?;
    may(&state, &caller, &tenant, true)?;
    check_upn(&upn)?;
    let Json(settings) = body?;
    check_settings(&settings)?;
    // Stored first: a change the store could not keep is not made (it would be lost).
    state.center.check_agent_change(&tenant, &upn, true)?;
    keep(&state, &tenant, "agent", &upn, Some(&settings)).await?;
    let new = state.center.set_agent(&tenant, &upn, Some(&settings))?;
    if settings.object_id.is_some() && state.presence.enabled() {
        // The queues follow the agent's Teams presence from now on.
        state
            .presence
            .watch(crate::DESK_WATCHER, state.center.object_ids());
    }
    tracing::info!(%tenant, agent = %upn, new, skills = settings.skills.len(), "agent set through the API");
    let view = state
        .center
        .agent_configs(&tenant)
        .and_then(|all| all.into_iter().find(|a| a.upn.eq_ignore_ascii_case(&upn)))
        .ok_or_else(|| ApiError::NotFound(format!("no agent {upn}")))?;
    Ok((created(new), Json(view)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/agents/{upn}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("upn" = String, Path, description = "the agent's user principal name"),
    ),
    responses(
        (status = 204, description = "the agent was removed: their credentials stop working and no call is offered to them"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or agent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the agent is on a call or being rung", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_agent(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, upn)) = path?;
    may(&state, &caller, &tenant, true)?;
    state.center.check_agent_change(&tenant, &upn, false)?;
    let before = state
        .center
        .agent_configs(&tenant)
        .and_then(|all| all.into_iter().find(|a| a.upn.eq_ignore_ascii_case(&upn)));
    keep::<AgentSettings>(&state, &tenant, "agent", &upn, None).await?;
    if let Err(e) = state.center.set_agent(&tenant, &upn, None) {
        // A call reached the agent between the check and now: the store keeps them too.
        if let Some(b) = before {
            let kept = AgentSettings {
                name: b.name,
                skills: b.skills,
                object_id: b.object_id,
                teams_number: b.teams_number,
            };
            keep(&state, &tenant, "agent", &upn, Some(&kept)).await?;
        }
        return Err(e.into());
    }
    tracing::info!(%tenant, agent = %upn, "agent removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// A name from the API where the file has a spanned one (no place in a file to point at).
fn spanned(s: &Option<String>) -> Option<toml::Spanned<String>> {
    s.clone().map(|v| toml::Spanned::new(0..0, v))
}

fn route_spec(r: &RouteSettings) -> TargetSpec {
    TargetSpec {
        queue: spanned(&r.queue),
        attendant: spanned(&r.attendant),
        expert: spanned(&r.expert),
        number: spanned(&r.number),
        agent: spanned(&r.agent),
    }
}

fn route_settings(t: &TargetSpec) -> RouteSettings {
    let name = |s: &Option<toml::Spanned<String>>| s.as_ref().map(|v| v.get_ref().clone());
    RouteSettings {
        queue: name(&t.queue),
        attendant: name(&t.attendant),
        expert: name(&t.expert),
        number: name(&t.number),
        agent: name(&t.agent),
    }
}

fn number_spec(number: &str, s: &NumberSettings) -> NumberSpec {
    NumberSpec {
        number: number.to_owned(),
        queue: spanned(&s.queue),
        attendant: spanned(&s.attendant),
        priority: s.priority,
        schedule: spanned(&s.schedule),
        closed: s.closed.as_ref().map(route_spec),
        holiday: s.holiday.as_ref().map(route_spec),
    }
}

fn number_view(tenant: &str, n: &NumberSpec, api: bool) -> NumberConfigView {
    let name = |s: &Option<toml::Spanned<String>>| s.as_ref().map(|v| v.get_ref().clone());
    NumberConfigView {
        tenant: tenant.to_owned(),
        number: n.number.clone(),
        settings: NumberSettings {
            queue: name(&n.queue),
            attendant: name(&n.attendant),
            priority: n.priority,
            schedule: name(&n.schedule),
            closed: n.closed.as_ref().map(route_settings),
            holiday: n.holiday.as_ref().map(route_settings),
        },
        source: if api { "api" } else { "file" }.into(),
    }
}

/// An E.164 number in a path: `+` and 2 to 15 digits.
fn check_number(number: &str) -> Result<(), ApiError> {
    if crate::center::is_e164(number) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "{number:?} is not an E.164 number: write it as + and 2 to 15 digits, e.g. +18005550100"
        )))
    }
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/numbers", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's numbers and where their calls go", body = Vec<NumberConfigView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_numbers(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<NumberConfigView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    let all = state
        .center
        .number_configs(&tenant)
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))?;
    Ok(Json(
        all.iter()
            .map(|(n, api)| number_view(&tenant, n, *api))
            .collect(),
    ))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/numbers/{number}", tag = "config", request_body = NumberSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("number" = String, Path, description = "E.164 with the + (+18005550100)"),
    ),
    responses(
        (status = 200, description = "the number's mapping was changed; new calls follow it", body = NumberConfigView),
        (status = 201, description = "the number was added", body = NumberConfigView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not E.164, or a mapping the configuration file would refuse (the key and why: no such queue, attendant or schedule; the number is another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_number(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<NumberSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<NumberConfigView>), ApiError> {
    let Path((tenant, number)) = path?;
    may(&state, &caller, &tenant, true)?;
    check_number(&number)?;
    let Json(settings) = body?;
    if !(1..=5).contains(&settings.priority) {
        return Err(ApiError::Unprocessable(format!(
            "priority {}: priorities run from 1 (lowest) to 5 (highest)",
            settings.priority
        )));
    }
    let spec = number_spec(&number, &settings);
    state.center.check_number(&tenant, &number, Some(&spec))?;
    keep(&state, &tenant, "number", &number, Some(&settings)).await?;
    let new = state.center.set_number(&tenant, &number, Some(spec))?;
    tracing::info!(%tenant, %number, new, "number set through the API");
    Ok((
        created(new),
        Json(number_view(&tenant, &number_spec(&number, &settings), true)),
    ))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/numbers/{number}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("number" = String, Path, description = "E.164 with the + (+18005550100)"),
    ),
    responses(
        (status = 204, description = "the number was removed: new calls to it hear that it is not in service (404); calls in progress go on"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or number", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not E.164", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_number(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, number)) = path?;
    may(&state, &caller, &tenant, true)?;
    check_number(&number)?;
    state.center.check_number(&tenant, &number, None)?;
    keep::<NumberSettings>(&state, &tenant, "number", &number, None).await?;
    state.center.set_number(&tenant, &number, None)?;
    tracing::info!(%tenant, %number, "number removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets expert group `name` to `settings` (`None`: removes it); the change returns whether the
/// group is new.
fn set_expert(
    name: &str,
    settings: Option<&ExpertSettings>,
) -> impl Fn(&mut TenantSpec) -> Result<bool, AgentChangeError> {
    let settings = settings.cloned();
    let name = name.to_owned();
    move |t: &mut TenantSpec| {
        let name = name.as_str();
        let at = t
            .experts
            .iter()
            .position(|g| g.name.eq_ignore_ascii_case(name));
        match (at, &settings) {
            (Some(i), Some(s)) => {
                t.experts[i] = ExpertGroupSpec {
                    name: name.to_owned(),
                    skill: s.skill.clone(),
                    min_level: s.min_level,
                    from_graph: s.from_graph,
                };
                Ok(false)
            }
            (None, Some(s)) => {
                t.experts.push(ExpertGroupSpec {
                    name: name.to_owned(),
                    skill: s.skill.clone(),
                    min_level: s.min_level,
                    from_graph: s.from_graph,
                });
                Ok(true)
            }
            (Some(i), None) => {
                t.experts.remove(i);
                Ok(false)
            }
            (None, None) => Err(AgentChangeError::Missing(format!(
                "no expert group {name:?} in this tenant"
            ))),
        }
    }
}

/// Sets the tenant's toll rules (`None`: no outside calls); the change returns whether there
/// were none before.
fn set_outbound(
    rules: Option<&TollRules>,
) -> impl Fn(&mut TenantSpec) -> Result<bool, AgentChangeError> {
    let rules = rules.cloned();
    move |t: &mut TenantSpec| {
        let was = t.outbound.is_some();
        match &rules {
            Some(r) => {
                t.outbound = Some(r.clone());
                Ok(!was)
            }
            None if was => {
                t.outbound = None;
                Ok(false)
            }
            None => Err(AgentChangeError::Missing(
                "this tenant has no toll rules: its agents place no outside calls".into(),
            )),
        }
    }
}

fn expert_views(state: &AppState, tenant: &str) -> Result<Vec<ExpertGroupView>, ApiError> {
    state
        .center
        .with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.spec
                    .experts
                    .iter()
                    .map(|g| ExpertGroupView {
                        tenant: tenant.to_owned(),
                        name: g.name.clone(),
                        settings: ExpertSettings {
                            skill: g.skill.clone(),
                            min_level: g.min_level,
                            from_graph: g.from_graph,
                        },
                        source: source(t, "expert", &g.name),
                    })
                    .collect(),
            )
        })
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/experts", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's expert groups", body = Vec<ExpertGroupView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_experts(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<ExpertGroupView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    Ok(Json(expert_views(&state, &tenant)?))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/experts/{name}", tag = "config", request_body = ExpertSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the group's name, its transfer target (1–64 letters, digits, '-', '_')"),
    ),
    responses(
        (status = 200, description = "the group was changed", body = ExpertGroupView),
        (status = 201, description = "the group was added", body = ExpertGroupView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a name or level the configuration file would refuse (the key and why)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_expert(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ExpertSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<ExpertGroupView>), ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    let Json(settings) = body?;
    if !is_name(&name) || !is_name(&settings.skill) {
        return Err(ApiError::Unprocessable(format!(
            "{name:?} and its skill {:?} are names: 1–64 letters, digits, '-' or '_'",
            settings.skill
        )));
    }
    if settings.from_graph && !state.presence.reads_skills() {
        return Err(ApiError::Unprocessable(
            "from_graph needs Microsoft 365 skills read: this router's configuration has no [presence] enabled = true with read_skills = true".into(),
        ));
    }
    let change = set_expert(&name, Some(&settings));
    let new = check_keep_apply(&state, &tenant, "expert", &name, Some(&settings), change).await?;
    tracing::info!(%tenant, group = %name, new, "expert group set through the API");
    let view = expert_views(&state, &tenant)?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no expert group {name:?}")))?;
    Ok((created(new), Json(view)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/experts/{name}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the group's name"),
    ),
    responses(
        (status = 204, description = "the group was removed: transfers to it find nobody"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or group", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the configuration still names the group (an attendant's key, a queue's overflow)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_expert(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    let change = set_expert(&name, None);
    check_keep_apply::<ExpertSettings, _>(&state, &tenant, "expert", &name, None, change).await?;
    tracing::info!(%tenant, group = %name, "expert group removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/outbound", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's toll rules", body = TollRules),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or it has no toll rules (its agents place no outside calls)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_outbound(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<TollRules>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    let rules = state.center.with(|d| {
        let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
        t.spec.outbound.clone()
    });
    rules.map(Json).ok_or_else(|| {
        ApiError::NotFound(
            "this tenant has no toll rules: its agents place no outside calls".into(),
        )
    })
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/outbound", tag = "config", request_body = TollRules,
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the toll rules were changed; the next outside call follows them", body = TollRules),
        (status = 201, description = "the tenant had none: its agents may now place outside calls within them", body = TollRules),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "rules the configuration file would refuse (the key and why: no such trunk, a prefix that is not E.164, a cap out of range)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_outbound(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
    body: Result<Json<TollRules>, JsonRejection>,
) -> Result<(StatusCode, Json<TollRules>), ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, true)?;
    let Json(rules) = body?;
    let change = set_outbound(Some(&rules));
    let new = check_keep_apply(&state, &tenant, "outbound", "", Some(&rules), change).await?;
    tracing::info!(%tenant, allow = rules.allow.len(), deny = rules.deny.len(), "toll rules set through the API");
    Ok((created(new), Json(rules)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/outbound", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 204, description = "the toll rules were removed: agents place no outside calls, and transfers to outside numbers are refused"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or it had no toll rules", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_outbound(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, true)?;
    let change = set_outbound(None);
    check_keep_apply::<TollRules, _>(&state, &tenant, "outbound", "", None, change).await?;
    tracing::info!(%tenant, "toll rules removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets schedule `name` (`None`: removes it); the change returns whether it is new.
fn set_schedule(
    name: &str,
    spec: Option<crate::hours::ScheduleSpec>,
) -> impl Fn(&mut TenantSpec) -> Result<bool, AgentChangeError> {
    let name = name.to_owned();
    move |t: &mut TenantSpec| {
        let at = t.schedules.iter().position(|s| s.name == name);
        match (at, &spec) {
            (Some(i), Some(s)) => {
                t.schedules[i] = s.clone();
                Ok(false)
            }
            (None, Some(s)) => {
                t.schedules.push(s.clone());
                Ok(true)
            }
            (Some(i), None) => {
                t.schedules.remove(i);
                Ok(false)
            }
            (None, None) => Err(AgentChangeError::Missing(format!(
                "no schedule {name:?} in this tenant"
            ))),
        }
    }
}

fn schedule_views(state: &AppState, tenant: &str) -> Result<Vec<ScheduleView>, ApiError> {
    state
        .center
        .with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.spec
                    .schedules
                    .iter()
                    .map(|s| ScheduleView {
                        tenant: tenant.to_owned(),
                        name: s.name.clone(),
                        settings: s.settings(),
                        source: source(t, "schedule", &s.name),
                    })
                    .collect(),
            )
        })
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/schedules", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's opening hours", body = Vec<ScheduleView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    Ok(Json(schedule_views(&state, &tenant)?))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/schedules/{name}", tag = "config", request_body = ScheduleSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the schedule's name (1–64 letters, digits, '-', '_')"),
    ),
    responses(
        (status = 200, description = "the hours were changed; the next call follows them", body = ScheduleView),
        (status = 201, description = "the schedule was added", body = ScheduleView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "hours the configuration file would refuse (an unknown time zone, a span that is not HH:MM-HH:MM or overlaps, a date that is not one)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_schedule(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ScheduleSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    if !is_name(&name) {
        return Err(ApiError::Unprocessable(format!(
            "{name:?} is not a schedule name: use 1–64 letters, digits, '-' or '_'"
        )));
    }
    let Json(settings) = body?;
    let spec = crate::hours::ScheduleSpec::from_settings(&name, &settings)
        .map_err(ApiError::Unprocessable)?;
    let change = set_schedule(&name, Some(spec));
    let new = check_keep_apply(&state, &tenant, "schedule", &name, Some(&settings), change).await?;
    tracing::info!(%tenant, schedule = %name, new, "schedule set through the API");
    let view = schedule_views(&state, &tenant)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no schedule {name:?}")))?;
    Ok((created(new), Json(view)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/schedules/{name}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the schedule's name"),
    ),
    responses(
        (status = 204, description = "the schedule was removed"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or schedule", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a number or an attendant still follows the schedule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    let change = set_schedule(&name, None);
    check_keep_apply::<ScheduleSettings, _>(&state, &tenant, "schedule", &name, None, change)
        .await?;
    tracing::info!(%tenant, schedule = %name, "schedule removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Trunk `name` from the API's settings, read by the configuration file's own reader.
fn trunk_spec(name: &str, s: &TrunkSettings) -> Result<crate::center::TrunkSpec, String> {
    let mut v = serde_json::to_value(s).map_err(|e| e.to_string())?;
    if let Some(m) = v.as_object_mut() {
        m.insert("name".into(), serde_json::Value::String(name.to_owned()));
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Sets trunk `spec` (added after the others when new, or again in its place when it was
/// removed); returns whether it is new.
fn set_trunk(
    spec: crate::center::TrunkSpec,
) -> impl Fn(&mut TenantSpec) -> Result<bool, AgentChangeError> {
    move |t: &mut TenantSpec| match t.trunks.iter_mut().find(|tr| tr.name == spec.name) {
        Some(tr) => {
            // A trunk removed earlier comes back in its place: new again.
            let again = tr.retired;
            *tr = spec.clone();
            Ok(again)
        }
        None => {
            t.trunks.push(spec.clone());
            Ok(true)
        }
    }
}

/// Takes trunk `name` out of use; the change returns whether it had been in use.
fn retire_trunk(name: &str) -> impl Fn(&mut TenantSpec) -> Result<bool, AgentChangeError> {
    let name = name.to_owned();
    move |t: &mut TenantSpec| match t
        .trunks
        .iter_mut()
        .find(|tr| tr.name == name && !tr.retired)
    {
        Some(tr) => {
            tr.retire();
            Ok(true)
        }
        None => Err(AgentChangeError::Missing(format!(
            "no trunk {name:?} in this tenant"
        ))),
    }
}

fn trunk_views(state: &AppState, tenant: &str) -> Result<Vec<TrunkView>, ApiError> {
    state
        .center
        .with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.spec
                    .trunks
                    .iter()
                    .filter(|tr| !tr.retired)
                    .map(|tr| TrunkView {
                        tenant: tenant.to_owned(),
                        name: tr.name.clone(),
                        allow: tr.allow.iter().map(|a| a.to_string()).collect(),
                        username: tr.username.clone(),
                        has_password: tr.password.is_some(),
                        max_calls: tr.max_calls.min(u32::MAX as usize) as u32,
                        probe: tr.probe.clone(),
                        probe_seconds: tr.probe_every(),
                        outbound: tr.outbound.clone(),
                        direct_routing: tr.direct_routing.as_ref().map(|d| {
                            switchboard_api::DirectRouting {
                                fqdn: d.fqdn.clone(),
                                proxies: d.proxies.clone(),
                                sip_port: d.sip_port,
                                media_bypass: d.media_bypass,
                            }
                        }),
                        source: source(t, "trunk", &tr.name),
                    })
                    .collect(),
            )
        })
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/trunks", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's trunks as configured (passwords never shown); their health is GET /v1/trunks", body = Vec<TrunkView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_trunks(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<TrunkView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    Ok(Json(trunk_views(&state, &tenant)?))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/trunks/{name}", tag = "config", request_body = TrunkSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the trunk's name (1–64 letters, digits, '-', '_')"),
    ),
    responses(
        (status = 200, description = "the trunk was changed; calls on it go on, new ones follow", body = TrunkView),
        (status = 201, description = "the trunk was added: its calls are taken at once, its probes start", body = TrunkView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a trunk the configuration file would refuse (the key and why: a source another trunk has, a user name without a password, a probe that is not sip:IP:PORT; a Direct Routing trunk while the router has no [sip.tls] with mutual TLS and a certificate naming its FQDN)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_trunk(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<TrunkSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<TrunkView>), ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    if !is_name(&name) {
        return Err(ApiError::Unprocessable(format!(
            "{name:?} is not a trunk name: use 1–64 letters, digits, '-' or '_'"
        )));
    }
    let Json(settings) = body?;
    let spec = trunk_spec(&name, &settings)
        .map_err(|e| ApiError::Unprocessable(format!("trunk {name:?}: {e}")))?;
    if let Some(dr) = &spec.direct_routing {
        // As the file's check does: TLS, mutual, a certificate naming the FQDN (read outside
        // the desk's lock).
        let tls = state.center.with(|d| d.sip_tls.clone());
        if let Some(p) = dr.sbc_problem(tls.as_ref()) {
            return Err(ApiError::Unprocessable(format!("trunk {name:?}: {p}")));
        }
    }
    let new = check_keep_apply(
        &state,
        &tenant,
        "trunk",
        &name,
        Some(&settings),
        set_trunk(spec),
    )
    .await?;
    state.center.trunks_changed(&tenant);
    tracing::info!(%tenant, trunk = %name, new, "trunk set through the API");
    let view = trunk_views(&state, &tenant)?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no trunk {name:?}")))?;
    Ok((created(new), Json(view)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/trunks/{name}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the trunk's name"),
    ),
    responses(
        (status = 204, description = "the trunk was removed: its sources are strangers (403), its probes stop, the router places no call on it; calls on it go on to their end"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or trunk", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the toll rules place outside calls on it: change them first", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_trunk(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    let change = retire_trunk(&name);
    check_keep_apply::<TrunkSettings, _>(&state, &tenant, "trunk", &name, None, change).await?;
    state.center.trunks_changed(&tenant);
    tracing::info!(%tenant, trunk = %name, "trunk removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

fn attendant_spec(name: &str, s: &AttendantSettings) -> AttendantSpec {
    AttendantSpec {
        name: name.to_owned(),
        greeting: s.greeting.clone(),
        // Checked when set ([`put_attendant`]); one stored before that speaks as before.
        language: s
            .language
            .as_deref()
            .and_then(|l| crate::center::known_language(l).ok())
            .map(str::to_owned),
        timeout_seconds: s.timeout_seconds,
        retries: s.retries,
        options: s
            .options
            .iter()
            .map(|(k, r)| (k.clone(), route_spec(r)))
            .collect(),
        default: route_spec(&s.default),
        schedule: spanned(&s.schedule),
        closed: s.closed.as_ref().map(route_spec),
        holiday: s.holiday.as_ref().map(route_spec),
    }
}

fn attendant_settings(a: &AttendantSpec) -> AttendantSettings {
    AttendantSettings {
        greeting: a.greeting.clone(),
        language: a.language.clone(),
        timeout_seconds: a.timeout_seconds,
        retries: a.retries,
        options: a
            .options
            .iter()
            .map(|(k, r)| (k.clone(), route_settings(r)))
            .collect(),
        default: route_settings(&a.default),
        schedule: a.schedule.as_ref().map(|s| s.get_ref().clone()),
        closed: a.closed.as_ref().map(route_settings),
        holiday: a.holiday.as_ref().map(route_settings),
    }
}

/// Sets attendant `name` to `spec` (`None`: removes it); the change returns whether it is new.
fn set_attendant(
    name: &str,
    spec: Option<AttendantSpec>,
) -> impl Fn(&mut TenantSpec) -> Result<bool, AgentChangeError> {
    let name = name.to_owned();
    move |t: &mut TenantSpec| {
        let at = t.attendants.iter().position(|a| a.name == name);
        match (at, &spec) {
            (Some(i), Some(a)) => {
                t.attendants[i] = a.clone();
                Ok(false)
            }
            (None, Some(a)) => {
                t.attendants.push(a.clone());
                Ok(true)
            }
            (Some(i), None) => {
                t.attendants.remove(i);
                Ok(false)
            }
            (None, None) => Err(AgentChangeError::Missing(format!(
                "no attendant {name:?} in this tenant"
            ))),
        }
    }
}

/// The greeting `greeting` of an attendant of `tenant` is a prompt file the SIP edge can
/// read: in the attendant's `language` (none: the tenant's) or English (without a SIP edge
/// there is nothing to play); `language` is one the router speaks.
fn check_greeting(
    state: &AppState,
    tenant: &str,
    greeting: &str,
    language: Option<&str>,
) -> Result<(), ApiError> {
    let language = language
        .map(crate::center::known_language)
        .transpose()
        .map_err(|e| ApiError::Unprocessable(format!("language: {e}")))?;
    if !is_name(greeting) {
        return Err(ApiError::Unprocessable(format!(
            "greeting {greeting:?} is not a prompt's name: use 1–64 letters, digits, '-' or '_' (the file <prompts_dir>/<language>/<greeting>.wav)"
        )));
    }
    let (dir, language) = state.center.with(|d| {
        let language = d
            .tenants
            .iter()
            .find(|t| t.spec.id == tenant)
            .map(|t| language.map_or_else(|| t.spec.language.clone(), str::to_owned));
        (d.prompts_dir.clone(), language)
    });
    let (Some(dir), Some(language)) = (dir, language) else {
        return Ok(());
    };
    let file = |lang: &str| dir.join(lang).join(format!("{greeting}.wav"));
    if file(&language).is_file() || file("en").is_file() {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "greeting {greeting:?}: there is no {} — record the menu (WAV, 16-bit mono) and put it there first, or name a prompt that is there",
            file(&language).display()
        )))
    }
}

fn attendant_views(state: &AppState, tenant: &str) -> Result<Vec<AttendantView>, ApiError> {
    state
        .center
        .with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.spec
                    .attendants
                    .iter()
                    .map(|a| AttendantView {
                        tenant: tenant.to_owned(),
                        name: a.name.clone(),
                        settings: attendant_settings(a),
                        source: source(t, "attendant", &a.name),
                    })
                    .collect(),
            )
        })
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant:?}")))
}

#[utoipa::path(
    get, path = "/v1/config/tenants/{tenant}/attendants", tag = "config",
    params(("tenant" = String, Path, description = "the tenant's id in the router's configuration")),
    responses(
        (status = 200, description = "the tenant's auto attendants", body = Vec<AttendantView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_attendants(
    State(state): State<AppState>,
    caller: Caller,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<AttendantView>>, ApiError> {
    let Path(tenant) = tenant?;
    may(&state, &caller, &tenant, false)?;
    Ok(Json(attendant_views(&state, &tenant)?))
}

#[utoipa::path(
    put, path = "/v1/config/tenants/{tenant}/attendants/{name}", tag = "config", request_body = AttendantSettings,
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the attendant's name (1–64 letters, digits, '-', '_')"),
    ),
    responses(
        (status = 200, description = "the attendant was changed: callers in its menu hear the new one from their next step", body = AttendantView),
        (status = 201, description = "the attendant was added: map a number to it, or name it in another attendant's key", body = AttendantView),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or another organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "settings the configuration file would refuse (the key and why: a key that is not 0–9, a route to nothing, a greeting with no prompt file)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_attendant(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<AttendantSettings>, JsonRejection>,
) -> Result<(StatusCode, Json<AttendantView>), ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    if !is_name(&name) {
        return Err(ApiError::Unprocessable(format!(
            "{name:?} is not an attendant name: use 1–64 letters, digits, '-' or '_'"
        )));
    }
    let Json(settings) = body?;
    check_greeting(
        &state,
        &tenant,
        &settings.greeting,
        settings.language.as_deref(),
    )?;
    let change = set_attendant(&name, Some(attendant_spec(&name, &settings)));
    let new =
        check_keep_apply(&state, &tenant, "attendant", &name, Some(&settings), change).await?;
    state.center.attendant_changed(&tenant, &name);
    tracing::info!(%tenant, attendant = %name, new, keys = settings.options.len(), "attendant set through the API");
    let view = attendant_views(&state, &tenant)?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no attendant {name:?}")))?;
    Ok((created(new), Json(view)))
}

#[utoipa::path(
    delete, path = "/v1/config/tenants/{tenant}/attendants/{name}", tag = "config",
    params(
        ("tenant" = String, Path, description = "the tenant's id in the router's configuration"),
        ("name" = String, Path, description = "the attendant's name"),
    ),
    responses(
        (status = 204, description = "the attendant was removed: no route reaches it; callers in its menu finish it"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or attendant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the configuration still names the attendant (a number, another attendant's key, a queue's overflow)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the change could not be stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_attendant(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((tenant, name)) = path?;
    may(&state, &caller, &tenant, true)?;
    let change = set_attendant(&name, None);
    check_keep_apply::<AttendantSettings, _>(&state, &tenant, "attendant", &name, None, change)
        .await?;
    state.center.attendant_changed(&tenant, &name);
    tracing::info!(%tenant, attendant = %name, "attendant removed through the API");
    Ok(StatusCode::NO_CONTENT)
}
