//! The `/v1` HTTP API: health and tenants, plus the OpenAPI document. Request bodies are
//! taken as `Result<Json<T>, JsonRejection>` so every malformed body becomes a problem answer
//! with our own wording.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use switchboard_api::{
    Event, Health, HealthStatus, NewTenant, Problem, StorageHealth, StorageState, Tenant,
};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::auth::{authorization, Caller};
use crate::error::ApiError;
use crate::AppState;

/// The OpenAPI document, generated from the handlers below.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard router API", description = "The routing service's HTTP API. Every error is an RFC 9457 problem (application/problem+json)."),
    paths(health, me, list_tenants, crate::agents_http::me, crate::agents_http::sip_credentials, crate::agents_http::revoke_sip_credentials, crate::agents_http::set_state, crate::agents_http::wrap_up, crate::agents_http::list_calls, crate::agents_http::get_call, crate::agents_http::queues, crate::agents_http::agents, crate::agents_http::set_agent_state, crate::agents_http::monitor, crate::agents_http::stop_monitor, crate::agents_http::trunks, crate::agents_http::transfer, crate::agents_http::consult, crate::agents_http::consult_next, crate::reports::queues, crate::config_http::list_agents, crate::config_http::put_agent, crate::config_http::delete_agent, crate::config_http::list_queues, crate::config_http::put_queue, crate::config_http::delete_queue, crate::config_http::list_numbers, crate::config_http::put_number, crate::config_http::delete_number, crate::config_http::list_experts, crate::config_http::put_expert, crate::config_http::delete_expert, crate::config_http::list_attendants, crate::config_http::put_attendant, crate::config_http::delete_attendant, crate::config_http::get_outbound, crate::config_http::put_outbound, crate::config_http::delete_outbound, crate::config_http::list_schedules, crate::config_http::put_schedule, crate::config_http::delete_schedule, crate::config_http::list_trunks, crate::config_http::put_trunk, crate::config_http::delete_trunk, create_tenant, get_tenant, delete_tenant, crate::events::events, openapi_json, crate::telemetry::metrics_text, graph_notifications, crate::agents_http::targets, crate::agents_http::my_calls),
    components(schemas(Health, HealthStatus, StorageHealth, StorageState, Tenant, NewTenant, Event, Problem, Me, NotificationCollection, switchboard_api::AgentRef, switchboard_api::SipCredentials, switchboard_api::AgentState, switchboard_api::AgentStateChange, switchboard_api::RequestedState, switchboard_api::AgentStatus, switchboard_api::BoardAgent, switchboard_api::AgentStateSet, switchboard_api::MonitorRequest, switchboard_api::MonitorMode, switchboard_api::Monitoring, crate::agents_http::MonitorDone, crate::agents_http::WrapUp, switchboard_api::CallRecord, switchboard_api::CallOutcome, switchboard_api::OfferRecord, switchboard_api::QueueFigures, switchboard_api::AgentsByState, switchboard_api::TrunkStatus, crate::agents_http::TransferRequest, crate::agents_http::TransferDone, crate::agents_http::ConsultRequest, crate::agents_http::ConsultStep, crate::agents_http::ConsultDone, crate::agents_http::ConsultStepName, switchboard_api::ConsultStatus, switchboard_api::ConsultState, switchboard_api::TrunkHealth, switchboard_api::QueueReport, crate::reports::Interval, crate::reports::Format, switchboard_api::AgentConfigView, switchboard_api::AgentSettings, switchboard_api::QueueSettings, switchboard_api::QueueConfigView, switchboard_api::NumberSettings, switchboard_api::NumberConfigView, switchboard_api::RouteSettings, switchboard_api::TollRules, switchboard_api::ExpertSettings, switchboard_api::ExpertGroupView, switchboard_api::ScheduleSettings, switchboard_api::ScheduleView, switchboard_api::AttendantSettings, switchboard_api::AttendantView, switchboard_api::CallbackSettings, switchboard_api::TrunkSettings, switchboard_api::TrunkView, switchboard_api::DirectRouting, switchboard_api::ProxyStatus, switchboard_api::TransferTargets, switchboard_api::QueueTarget, switchboard_api::ColleagueTarget, switchboard_api::ExpertGroupTarget, switchboard_api::ExpertTarget)),
    tags((name = "service", description = "health, metrics, this document"), (name = "tenants", description = "organisations served by this router"), (name = "events", description = "live event stream"), (name = "agents", description = "an agent's phone credentials and state"), (name = "calls", description = "call detail records"), (name = "config", description = "the router's configuration, managed through the API (trunks, agents and their skills, queues, numbers, schedules, expert groups, toll rules)"), (name = "graph", description = "Microsoft Graph's change notifications (called by Graph, not by clients)"))
)]
pub struct ApiDoc;

/// The OpenAPI document: the handlers' own declarations, plus the answers every route may
/// give before its handler runs — 421 (a Host this router does not answer to), 403 (a web
/// page's Origin), 408 (too slow), and on routes that need a caller 401, 403 and 503 (the
/// identity provider or storage unreachable) — so that it lists every status the router can
/// send.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // A report's time zone: one of the names the router's time zone database knows.
    if let Some(op) = doc
        .paths
        .paths
        .get_mut("/v1/reports/queues")
        .and_then(|i| i.get.as_mut())
    {
        let mut zones: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_owned())
            .collect();
        zones.sort();
        for p in op.parameters.iter_mut().flatten() {
            if p.name == "timezone" {
                p.schema = Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .enum_values(Some(zones.clone()))
                        .into(),
                );
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let needs_caller = !matches!(
            path.as_str(),
            "/v1/health" | "/v1/openapi.json" | "/v1/graph/notifications"
        );
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            if path == "/v1/graph/notifications" {
                // Graph's validation handshake comes without a body.
                if let Some(body) = op.request_body.as_mut() {
                    body.required = Some(utoipa::openapi::Required::False);
                }
            }
            let responses = &mut op.responses.responses;
            let mut add = |code: &str, why: &str| {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem_response(why));
            };
            add(
                "421",
                "the Host header names a host this router does not answer to (http.allowed_hosts)",
            );
            add("403", "a web page's Origin that http.allowed_origins does not list, or (with auth) a caller without the role");
            add(
                "408",
                "the request took longer than http.request_timeout_seconds",
            );
            if needs_caller {
                add(
                    "401",
                    "no access token, or one that fails its checks (auth.mode = \"entra\")",
                );
                add(
                    "503",
                    "the identity provider or the storage cannot be reached; try again",
                );
            }
        }
    }
    doc
}

fn problem_response(why: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(why)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "service", responses((status = 200, description = "this document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Is the service up and its storage answering. Open to anyone; what went wrong with the
/// storage (`storage.detail`) only to callers with a Switchboard role.
#[utoipa::path(get, path = "/v1/health", tag = "service", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>, headers: HeaderMap) -> Json<Health> {
    let (storage_state, detail) = match state.store.ping().await {
        Ok(()) => (StorageState::Ok, None),
        Err(e) => (StorageState::Unavailable, Some(e.to_string())),
    };
    let detail = match detail {
        Some(d) if state.auth.may_see_details(authorization(&headers)).await => Some(d),
        Some(_) => Some("see the router's log".to_string()),
        None => None,
    };
    Json(Health {
        status: if storage_state == StorageState::Ok {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.events.uptime_seconds(),
        storage: StorageHealth {
            backend: "sqlite".into(),
            state: storage_state,
            detail,
        },
    })
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, body = [Tenant]), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    caller.require_any_role()?;
    let mut all = state.store.list_tenants().await?;
    if !caller.operator {
        // Others see their own organisation's tenant only.
        all.retain(|t| caller.member_of(t.entra_tenant_id.as_deref()));
    }
    Ok(Json(all))
}

/// Who the caller is to this router: the token's person, roles, and the router tenant their
/// organisation maps to.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    /// `Agent`, `Supervisor`, `Admin` (empty: no Switchboard role assigned).
    pub roles: Vec<String>,
    /// An Admin of the operator's organisation (manages every tenant).
    pub operator: bool,
    /// The router tenant whose `entra_tenant_id` is the caller's `tid`.
    pub tenant: Option<Tenant>,
}

#[utoipa::path(get, path = "/v1/me", tag = "service", responses((status = 200, body = Me), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let tenant = match caller.tid.as_deref() {
        Some(_) => state
            .store
            .list_tenants()
            .await?
            .into_iter()
            .find(|t| caller.member_of(t.entra_tenant_id.as_deref())),
        None => None,
    };
    Ok(Json(Me {
        roles: caller.roles.iter().map(|r| format!("{r:?}")).collect(),
        oid: caller.oid,
        tid: caller.tid,
        username: caller.username,
        name: caller.name,
        operator: caller.operator,
        tenant,
    }))
}

#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses(
        (status = 201, body = Tenant),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the SIP domain is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.require_operator()?;
    let Json(new) = body?;
    validate_tenant(&new)?;
    let tenant = state.store.create_tenant(&new).await?;
    tracing::info!(tenant = %tenant.id, sip_domain = %tenant.sip_domain, "tenant created");
    state.events.publish(Event::TenantCreated {
        tenant: tenant.clone(),
    });
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)), responses((status = 200, body = Tenant), (status = 400, description = "the id is not a UUID", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Tenant>, ApiError> {
    caller.require_any_role()?;
    let Path(id) = id?;
    let missing = || ApiError::NotFound(format!("no tenant {id}"));
    let t = state.store.get_tenant(id).await?.ok_or_else(missing)?;
    // Another organisation's tenant is not there, as far as the caller can tell.
    if !caller.operator && !caller.member_of(t.entra_tenant_id.as_deref()) {
        return Err(missing());
    }
    Ok(Json(t))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)), responses((status = 204), (status = 400, description = "the id is not a UUID", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    let Path(id) = id?;
    let org = state
        .store
        .get_tenant(id)
        .await?
        .and_then(|t| t.entra_tenant_id);
    if state.store.delete_tenant(id).await? {
        tracing::info!(tenant = %id, "tenant deleted");
        state.events.publish_to(
            Event::TenantDeleted { id },
            crate::events::Audience::Organisation(org),
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no tenant {id}")))
    }
}

/// The rules the OpenAPI document states for `NewTenant` (a schema-valid body is accepted, any
/// other refused): exactly these, no more and no less.
fn validate_tenant(t: &NewTenant) -> Result<(), ApiError> {
    let blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    if t.name.chars().count() > 200 || t.name.chars().all(blank) {
        return Err(ApiError::Unprocessable(
            "name must be 1 to 200 characters, not only spaces".into(),
        ));
    }
    if !is_host_name(&t.sip_domain) {
        return Err(ApiError::Unprocessable(format!(
            "sip_domain {:?} is not a host name such as contoso.example.com",
            t.sip_domain
        )));
    }
    if let Some(tid) = &t.entra_tenant_id {
        // The 36-character form only (JSON Schema's uuid format), not braces or bare hex.
        if !crate::is_guid(tid) {
            return Err(ApiError::Unprocessable(format!(
                "entra_tenant_id {tid:?} is not a GUID (find it in Entra admin center → Overview → Tenant ID)"
            )));
        }
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
pub(crate) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Graph's `changeNotificationCollection` as the router reads it (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct NotificationCollection {
    /// `changeNotification` items; those with another clientState, of a subscription this
    /// router does not hold, or not readable at all are dropped.
    value: Vec<serde_json::Value>,
    /// Tokens of rich notifications (not used).
    validation_tokens: Option<Vec<String>>,
}

/// Graph's change and lifecycle notifications for presence (and its validation handshake).
/// Not behind a token: Graph sends none; every notification must carry our `clientState`.
#[utoipa::path(
    post,
    path = "/v1/graph/notifications",
    tag = "graph",
    params(("validationToken" = Option<String>, Query, description = "Graph's validation handshake: answered with this text")),
    request_body(content = NotificationCollection, description = "Graph's change-notification collection; none with validationToken", content_type = "application/json"),
    responses(
        (status = 200, description = "the validation token, as Graph asks", body = String, content_type = "text/plain"),
        (status = 202, description = "taken; the items that are not ours were dropped"),
        (status = 400, description = "neither a validation nor a notification collection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "presence is not enabled on this router: no notifications are expected here", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn graph_notifications(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use crate::presence::WebhookAnswer as W;
    use axum::response::IntoResponse;
    match state.presence.webhook(uri.query(), &body) {
        W::Validation(token) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            token,
        )
            .into_response(),
        W::Accepted => StatusCode::ACCEPTED.into_response(),
        W::Malformed(why) => {
            ApiError::BadRequest(format!("not a change notification: {why}")).into_response()
        }
        W::WrongClientState => {
            ApiError::Forbidden("the notification's clientState is not this router's".into())
                .into_response()
        }
        W::UnknownSubscription(id) => {
            ApiError::NotFound(format!("this router holds no subscription {id}")).into_response()
        }
        W::Disabled => ApiError::NotFound(
            "presence is not enabled on this router ([presence] enabled = false)".into(),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #13 item 29: the body rules are exactly the document's — what the schema allows is
    /// taken, what it refuses is refused (Schemathesis checks both ways).
    #[test]
    fn tenant_rules_are_the_schemas() {
        let t = |name: &str, domain: &str, tid: Option<&str>| NewTenant {
            name: name.into(),
            sip_domain: domain.into(),
            entra_tenant_id: tid.map(str::to_owned),
        };
        let ok = |x: NewTenant| validate_tenant(&x).is_ok();
        assert!(ok(t(" Contoso ", "contoso.example.com", None)));
        assert!(ok(t(
            "联络中心",
            "a",
            Some("5B1DC0DE-7E4A-4C1E-9D1A-5317C4B0A4D0")
        )));
        assert!(
            ok(t("\u{a0}", "a-b.c", None)),
            "only ASCII blanks make a blank name"
        );
        assert!(!ok(t(" \t\r\n", "a.b", None)));
        assert!(!ok(t("", "a.b", None)));
        assert!(!ok(t(&"x".repeat(201), "a.b", None)));
        assert!(
            !ok(t(&format!(" {}", "x".repeat(200)), "a.b", None)),
            "length before trimming"
        );
        assert!(
            !ok(t("x", " contoso.example.com", None)),
            "no trimming of the domain"
        );
        assert!(
            !ok(t("x", "a.b", Some("5b1dc0de7e4a4c1e9d1a5317c4b0a4d0"))),
            "36-character form only"
        );
        assert!(!ok(t(
            "x",
            "a.b",
            Some("{5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0}")
        )));
    }

    /// Every operation lists the answers given before its handler runs.
    #[test]
    fn the_document_lists_every_status() {
        let doc = document();
        let tenants = doc.paths.paths.get("/v1/tenants/{id}").unwrap();
        let get = tenants.get.as_ref().unwrap();
        for code in ["200", "400", "401", "403", "404", "408", "421", "503"] {
            assert!(get.responses.responses.contains_key(code), "{code}");
        }
        let health = doc
            .paths
            .paths
            .get("/v1/health")
            .unwrap()
            .get
            .as_ref()
            .unwrap();
        assert!(!health.responses.responses.contains_key("401"));
        assert!(doc.paths.paths.contains_key("/v1/graph/notifications"));
    }

    #[test]
    fn host_names() {
        for ok in [
            "contoso.example.com",
            "sbc1.contoso.com",
            "localhost",
            "a-b.c",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a-.com",
            "a b.com",
            "a_b.com",
            "é.com",
            &"a".repeat(64),
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
