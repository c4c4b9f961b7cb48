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
    paths(health, me, list_tenants, create_tenant, get_tenant, delete_tenant, crate::events::events, openapi_json, crate::telemetry::metrics_text),
    components(schemas(Health, HealthStatus, StorageHealth, StorageState, Tenant, NewTenant, Event, Problem, Me)),
    tags((name = "service", description = "health, metrics, this document"), (name = "tenants", description = "organisations served by this router"), (name = "events", description = "live event stream"))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/v1/openapi.json", tag = "service", responses((status = 200, description = "this document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
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

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)), responses((status = 200, body = Tenant), (status = 404, body = Problem, content_type = "application/problem+json")))]
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

#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)), responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
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

fn validate_tenant(t: &NewTenant) -> Result<(), ApiError> {
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::Unprocessable(
            "name must be 1 to 200 characters".into(),
        ));
    }
    if !is_host_name(t.sip_domain.trim()) {
        return Err(ApiError::Unprocessable(format!(
            "sip_domain {:?} is not a host name such as contoso.example.com",
            t.sip_domain
        )));
    }
    if let Some(tid) = &t.entra_tenant_id {
        if Uuid::parse_str(tid).is_err() {
            return Err(ApiError::Unprocessable(format!(
                "entra_tenant_id {tid:?} is not a GUID (find it in Entra admin center → Overview → Tenant ID)"
            )));
        }
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
fn is_host_name(s: &str) -> bool {
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

/// Graph's change and lifecycle notifications for presence (and its validation handshake).
/// Not behind a token: Graph sends none; every notification must carry our `clientState`.
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
        W::Disabled => ApiError::Unavailable(
            "presence is not enabled on this router ([presence] enabled = false)".into(),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
