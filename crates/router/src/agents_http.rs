//! `/v1/agents/me/…`: an agent's SIP credentials, state and wrap-up. The agent is the caller
//! of the request (their UPN, in a tenant of their Entra tenant); where the router checks no
//! tokens (`[auth] mode = "none"`, development and the demo) the body names the agent.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use switchboard_api::{AgentRef, AgentStateChange, AgentStatus, Problem, SipCredentials};

use crate::auth::{Caller, Role};
use crate::desk::DeskError;
use crate::error::ApiError;
use crate::AppState;

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::NoSuchAgent(_) => ApiError::NotFound(e.to_string()),
            DeskError::NoSipEdge => ApiError::Conflict(e.to_string()),
        }
    }
}

/// The agent a request is for: (UPN, Entra tenant id when authenticated).
fn agent_of(caller: &Caller, named: Option<&str>) -> Result<(String, Option<String>), ApiError> {
    if caller.unauthenticated {
        // Without tokens there is no "me": the request names the agent, or finds none.
        let upn = named.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::NotFound(
                "this router checks no tokens, so it cannot tell which agent you are: name the agent, e.g. {\"agent\": \"adele@contoso.example\"}".into(),
            )
        })?;
        if upn.len() > 320 {
            return Err(ApiError::NotFound(
                "no agent has a UPN that long (320 characters at most)".into(),
            ));
        }
        return Ok((upn.to_owned(), None));
    }
    if !caller.has(Role::Agent) {
        return Err(ApiError::Forbidden(
            "only agents have a phone here: ask your administrator to assign you the Agent role in the app registration".into(),
        ));
    }
    let upn = caller.username.clone().ok_or_else(|| {
        ApiError::Forbidden("the access token names no user (preferred_username); sign in as a person, not an application".into())
    })?;
    if let Some(n) = named {
        if !n.eq_ignore_ascii_case(&upn) {
            return Err(ApiError::Forbidden(format!(
                "you are signed in as {upn} and can only act for yourself, not {n}"
            )));
        }
    }
    Ok((upn, caller.tid.clone()))
}

#[utoipa::path(
    post, path = "/v1/agents/me/sip-credentials", tag = "agents", request_body = AgentRef,
    responses(
        (status = 201, description = "new credentials; the previous ones stop working", body = SipCredentials),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the router takes no calls ([sip] listen unset)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sip_credentials(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<AgentRef>, JsonRejection>,
) -> Result<(StatusCode, Json<SipCredentials>), ApiError> {
    let Json(body) = body?;
    let (upn, tid) = agent_of(&caller, body.agent.as_deref())?;
    let creds = state.center.issue_credentials(&upn, tid.as_deref())?;
    Ok((StatusCode::CREATED, Json(creds)))
}

#[utoipa::path(
    put, path = "/v1/agents/me/state", tag = "agents", request_body = AgentStateChange,
    responses(
        (status = 200, body = AgentStatus),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a state other than ready or not_ready, or fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_state(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<AgentStateChange>, JsonRejection>,
) -> Result<Json<AgentStatus>, ApiError> {
    let Json(body) = body?;
    let (upn, tid) = agent_of(&caller, body.agent.as_deref())?;
    let reason = body
        .reason
        .map(|r| r.chars().filter(|c| !c.is_control()).take(64).collect());
    Ok(Json(state.center.set_state(
        &upn,
        tid.as_deref(),
        body.state,
        reason,
    )?))
}

/// `POST /v1/agents/me/wrap-up`: the agent is done with the last call.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WrapUp {
    /// Only where the router checks no tokens: the agent (UPN).
    #[serde(default)]
    pub agent: Option<String>,
    /// The queue's disposition code for the call.
    #[serde(default)]
    pub disposition: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/agents/me/wrap-up", tag = "agents", request_body = WrapUp,
    responses(
        (status = 200, body = AgentStatus),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn wrap_up(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<WrapUp>, JsonRejection>,
) -> Result<Json<AgentStatus>, ApiError> {
    let Json(body) = body?;
    let (upn, tid) = agent_of(&caller, body.agent.as_deref())?;
    if let Some(d) = &body.disposition {
        // Recorded with the call once call records land; logged meanwhile.
        let d: String = d.chars().filter(|c| !c.is_control()).take(64).collect();
        tracing::info!(agent = %upn, disposition = %d, "wrap-up done");
    }
    Ok(Json(state.center.end_wrap_up(&upn, tid.as_deref())?))
}

/// `GET /v1/agents/me`: the agent's state (for the agent named in the query where no tokens
/// are checked).
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
pub struct MeQuery {
    /// Only where the router checks no tokens: the agent (UPN).
    pub agent: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/agents/me", tag = "agents", params(MeQuery),
    responses(
        (status = 200, body = AgentStatus),
        (status = 400, description = "a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
    query: axum::extract::Query<MeQuery>,
) -> Result<Json<AgentStatus>, ApiError> {
    let (upn, tid) = agent_of(&caller, query.agent.as_deref())?;
    Ok(Json(state.center.status(&upn, tid.as_deref())?))
}
