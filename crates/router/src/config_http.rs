//! `/v1/config/…`: the router's configuration managed through the API. Agents and their
//! skills are here today: listed for Supervisors and Admins of the tenant's organisation,
//! added, changed and removed by its Admins (or the operator). A change applies at once — the
//! queues choose with the new skills from their next offer — and is kept in the store, so it
//! survives a restart (it applies over the configuration file at every start).

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use switchboard_api::{AgentConfigView, AgentSettings, Problem};

use crate::auth::{Caller, Role};
use crate::desk::AgentChangeError;
use crate::error::ApiError;
use crate::AppState;

impl From<AgentChangeError> for ApiError {
    fn from(e: AgentChangeError) -> Self {
        match e {
            AgentChangeError::NoTenant(_) | AgentChangeError::Unknown(_) => {
                ApiError::NotFound(e.to_string())
            }
            AgentChangeError::Busy(_) | AgentChangeError::Elsewhere(..) => {
                ApiError::Conflict(e.to_string())
            }
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
    if s.skills.len() > 64 {
        return bad(format!("skills: {} given, 64 at most", s.skills.len()));
    }
    for (k, v) in &s.skills {
        let name_ok = !k.is_empty()
            && k.len() <= 64
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return bad(format!(
                "skill {k:?}: a name is 1–64 letters, digits, '-' or '_'"
            ));
        }
        if !(1..=5).contains(v) {
            return bad(format!("skill {k:?}: level {v}; levels run from 1 to 5"));
        }
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
    state
        .store
        .put_agent_settings(&tenant, &upn, Some(&settings))
        .await?;
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
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
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
    state.store.put_agent_settings(&tenant, &upn, None).await?;
    if let Err(e) = state.center.set_agent(&tenant, &upn, None) {
        // A call reached the agent between the check and now: the store keeps them too.
        if let Some(b) = before {
            let kept = AgentSettings {
                name: b.name,
                skills: b.skills,
                object_id: b.object_id,
            };
            state
                .store
                .put_agent_settings(&tenant, &upn, Some(&kept))
                .await?;
        }
        return Err(e.into());
    }
    tracing::info!(%tenant, agent = %upn, "agent removed through the API");
    Ok(StatusCode::NO_CONTENT)
}
