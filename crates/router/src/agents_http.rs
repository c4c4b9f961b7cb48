//! `/v1/agents/me/…`: an agent's SIP credentials, state and wrap-up; `/v1/calls`: the call
//! detail records, for Supervisors and Admins. The agent is the caller
//! of the request (their UPN, in a tenant of their Entra tenant); where the router checks no
//! tokens (`[auth] mode = "none"`, development and the demo) the body names the agent.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use switchboard_api::{
    AgentRef, AgentStateChange, AgentStatus, CallRecord, Problem, QueueFigures, SipCredentials,
};

use crate::auth::{Caller, Role};
use crate::desk::DeskError;
use crate::error::ApiError;
use crate::AppState;

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::NoSuchAgent(_) => ApiError::NotFound(e.to_string()),
            DeskError::NoSipEdge => ApiError::Conflict(e.to_string()),
            DeskError::UnknownDisposition { .. } => ApiError::Unprocessable(e.to_string()),
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
    let creds = state
        .center
        .issue_credentials(&upn, tid.as_deref(), caller.oid.as_deref())?;
    // Follow the agent's Teams presence from now on.
    if state.presence.enabled() {
        state
            .presence
            .watch(crate::DESK_WATCHER, state.center.object_ids());
    }
    Ok((StatusCode::CREATED, Json(creds)))
}

#[utoipa::path(
    delete, path = "/v1/agents/me/sip-credentials", tag = "agents", request_body = AgentRef,
    responses(
        (status = 204, description = "the credentials no longer work and the agent's phone is forgotten: the agent is offline"),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_sip_credentials(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<AgentRef>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    let (upn, tid) = agent_of(&caller, body.agent.as_deref())?;
    state.center.revoke_credentials(&upn, tid.as_deref())?;
    Ok(StatusCode::NO_CONTENT)
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

#[utoipa::path(
    put, path = "/v1/agents/{upn}/state", tag = "agents", request_body = switchboard_api::AgentStateSet,
    params(("upn" = String, Path, description = "the agent's user principal name")),
    responses(
        (status = 200, description = "the agent's state now (a supervisor's change from the board: Ready, or Not ready with a reason); their desktop follows it", body = AgentStatus),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no or a bad access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a Supervisor or Admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such agent in the caller's tenants", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a state other than ready or not_ready, or fields the body does not have (`agent` among them: the path names the agent)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_agent_state(
    State(state): State<AppState>,
    caller: Caller,
    upn: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<switchboard_api::AgentStateSet>, JsonRejection>,
) -> Result<Json<AgentStatus>, ApiError> {
    let tenants = readable_tenants(&state, &caller)?;
    let axum::extract::Path(upn) = upn?;
    let Json(body) = body?;
    let reason = body
        .reason
        .map(|r| r.chars().filter(|c| !c.is_control()).take(64).collect());
    let status = state
        .center
        .set_state_in(&upn, tenants.as_deref(), body.state, reason)?;
    tracing::info!(
        agent = %status.agent,
        by = caller.username.as_deref().unwrap_or("(no token)"),
        state = ?status.state,
        "a supervisor set an agent's state"
    );
    Ok(Json(status))
}

/// What a supervisor's step on an agent's call did: the call record's step.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MonitorDone {
    /// `megan@… listens in on adele@…`, `… whispers to …`, `… barges in on …'s call`,
    /// `… left: stopped`.
    pub step: String,
}

/// Asks the SIP edge to let supervisor `supervisor` take part in agent `upn`'s call as
/// `mode` (or, `None`, to end whoever does), for a Supervisor or Admin of the agent's
/// tenant.
async fn monitor_step(
    state: &AppState,
    caller: &Caller,
    upn: &str,
    supervisor: Option<&str>,
    mode: Option<switchboard_api::MonitorMode>,
) -> Result<Json<MonitorDone>, ApiError> {
    use crate::desk::{EdgeCommand, MonitorRefusal};
    let tenants = readable_tenants(state, caller)?;
    let (tenant, agent) = state
        .center
        .with(|d| d.find_in(upn, tenants.as_deref()))
        .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
    // The supervisor's own phone takes the call: the signed-in person, or where no tokens
    // are checked the one the body names.
    let sup = match (caller.unauthenticated, caller.username.as_deref(), supervisor) {
        (_, _, _) if mode.is_none() => None,
        (true, _, Some(s)) => Some(s.trim().to_owned()),
        (true, _, None) => {
            return Err(ApiError::NotFound(
                "this router checks no tokens, so it cannot tell who you are: name the supervisor, e.g. {\"mode\": \"listen\", \"supervisor\": \"megan@contoso.example\"}".into(),
            ))
        }
        (false, Some(me), Some(s)) if !s.trim().eq_ignore_ascii_case(me) => {
            return Err(ApiError::Forbidden(format!(
                "you are signed in as {me} and can only listen in yourself, not as {s}"
            )))
        }
        (false, Some(me), _) => Some(me.to_owned()),
        (false, None, _) => {
            return Err(ApiError::Forbidden("the access token names no user (preferred_username); sign in as a person, not an application".into()))
        }
    };
    let sup = match sup {
        None => None,
        Some(s) => Some(
            state
                .center
                .with(|d| d.find_in(&s, Some(&[d.tenants[tenant].spec.id.clone()])))
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "{s} has no phone in this agent's organisation: a supervisor listens in with the desktop app's phone, as an agent of the same tenant"
                    ))
                })?,
        ),
    };
    let answer = edge_answer(state, |reply| EdgeCommand::Monitor {
        tenant,
        agent,
        supervisor: sup,
        mode,
        reply,
    })
    .await?;
    match answer {
        Ok(step) => {
            tracing::info!(
                agent = %upn,
                by = caller.username.as_deref().unwrap_or("(no token)"),
                %step,
                "a supervisor's step on an agent's call"
            );
            Ok(Json(MonitorDone { step }))
        }
        Err(e @ MonitorRefusal::Yourself) => Err(ApiError::Unprocessable(e.to_string())),
        Err(e) => Err(ApiError::Conflict(e.to_string())),
    }
}

#[utoipa::path(
    put, path = "/v1/agents/{upn}/monitor", tag = "agents", request_body = switchboard_api::MonitorRequest,
    params(("upn" = String, Path, description = "the agent whose call it is (user principal name)")),
    responses(
        (status = 200, description = "the supervisor's phone rings and, once answered, they listen in (hear the caller, the agent and anyone in their conference; nobody hears them), whisper (the agent hears them, the caller does not) or barge in (everyone hears them); a supervisor already on the call changes mode at once. Every step is in the call's record", body = MonitorDone),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no or a bad access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a Supervisor or Admin, or naming another supervisor than the signed-in one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such agent in the caller's tenants (or, where the router checks no tokens, no supervisor named)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the agent has no call up, another supervisor is on it, the supervisor's phone is not registered or busy, they are on another call already, or the router takes no calls", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a mode other than listen, whisper or barge, fields the body does not have, or the supervisor's own call", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn monitor(
    State(state): State<AppState>,
    caller: Caller,
    upn: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<switchboard_api::MonitorRequest>, JsonRejection>,
) -> Result<Json<MonitorDone>, ApiError> {
    let axum::extract::Path(upn) = upn?;
    let Json(body) = body?;
    monitor_step(
        &state,
        &caller,
        &upn,
        body.supervisor.as_deref(),
        Some(body.mode),
    )
    .await
}

#[utoipa::path(
    delete, path = "/v1/agents/{upn}/monitor", tag = "agents",
    params(("upn" = String, Path, description = "the agent whose call it is (user principal name)")),
    responses(
        (status = 200, description = "the supervisor's leg is hung up; the caller and the agent talk on", body = MonitorDone),
        (status = 401, description = "no or a bad access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a Supervisor or Admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such agent in the caller's tenants", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "nobody listens in on the agent's call, or the router takes no calls", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stop_monitor(
    State(state): State<AppState>,
    caller: Caller,
    upn: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<MonitorDone>, ApiError> {
    let axum::extract::Path(upn) = upn?;
    monitor_step(&state, &caller, &upn, None, None).await
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
    /// The agent's notes on the call, kept in its record (`notes`): free text of at most
    /// 2,000 characters; line breaks (LF) and tabs are the only control characters taken.
    /// Surrounding white space is dropped; empty: none.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub notes: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/agents/me/wrap-up", tag = "agents", request_body = WrapUp,
    responses(
        (status = 200, body = AgentStatus),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have, a disposition code the last call's queue does not have, or notes longer than 2,000 characters or holding control characters other than line breaks and tabs (it stays in wrap-up)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn wrap_up(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<WrapUp>, JsonRejection>,
) -> Result<Json<AgentStatus>, ApiError> {
    let Json(body) = body?;
    // Checked as sent (as the OpenAPI document says), then kept without the white space
    // around them.
    if let Some(n) = &body.notes {
        switchboard_api::check_wrap_up_notes(n)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    }
    let notes = body
        .notes
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let (upn, tid) = agent_of(&caller, body.agent.as_deref())?;
    let disposition = body
        .disposition
        .map(|d| {
            d.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|d| !d.is_empty());
    // The notes are the agent's own words: their length goes to the log, never the text.
    let notes_chars = notes.as_deref().map_or(0, |n| n.chars().count());
    tracing::info!(agent = %upn, disposition = ?disposition, notes_chars, "wrap-up done");
    let status = state
        .center
        .end_wrap_up(&upn, tid.as_deref(), disposition, notes)?;
    // The disposition and notes are in the record when this answers.
    if let Some(w) = state.center.records.get() {
        let (done, written) = tokio::sync::oneshot::channel();
        if w.send(crate::desk::RecordWrite::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), written).await;
        }
    }
    Ok(Json(status))
}

/// Asks the SIP edge to act for the agent the request names (`command` built with the
/// agent's tenant and id and the reply channel) and waits up to 5 s: the agent's UPN and the
/// edge's answer. No edge, or none in time: [`DeskError::NoSipEdge`].
async fn ask_edge<E>(
    state: &AppState,
    caller: &Caller,
    agent: Option<&str>,
    command: impl FnOnce(
        usize,
        crate::routing::AgentId,
        tokio::sync::oneshot::Sender<Result<String, E>>,
    ) -> crate::desk::EdgeCommand,
) -> Result<(String, Result<String, E>), ApiError> {
    let (upn, tid) = agent_of(caller, agent)?;
    let (tenant, agent) = state
        .center
        .with(|d| d.find(&upn, tid.as_deref()))
        .ok_or_else(|| DeskError::NoSuchAgent(upn.clone()))?;
    let answer = edge_answer(state, |reply| command(tenant, agent, reply)).await?;
    Ok((upn, answer))
}

/// Sends the SIP edge `command` (built with the reply channel) and waits up to 5 s for its
/// answer. No edge, or none in time: [`DeskError::NoSipEdge`].
async fn edge_answer<T>(
    state: &AppState,
    command: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::desk::EdgeCommand,
) -> Result<T, ApiError> {
    let edge = state.center.commands.get().ok_or(DeskError::NoSipEdge)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    edge.send(command(reply))
        .map_err(|_| DeskError::NoSipEdge)?;
    Ok(
        tokio::time::timeout(std::time::Duration::from_secs(5), answer)
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(DeskError::NoSipEdge)?,
    )
}

/// `POST /v1/agents/me/transfer`: send the caller the agent is talking to elsewhere.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Only where the router checks no tokens: the agent (UPN).
    #[serde(default)]
    pub agent: Option<String>,
    /// A queue, attendant or expert group of the tenant by name (`orders`, `escalations`),
    /// or a colleague by UPN (`AlexW@contoso.example`); `teams:<upn>` rings a colleague with
    /// a Teams number in Teams rather than on their Switchboard phone.
    pub target: String,
}

/// Where a transfer sent the caller.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TransferDone {
    /// The call record's step (`transfer by adele@… to orders@contoso.example`).
    pub step: String,
}

#[utoipa::path(
    post, path = "/v1/agents/me/transfer", tag = "agents", request_body = TransferRequest,
    responses(
        (status = 200, description = "the router took the caller there (the agent's leg is hung up; wrap-up follows)", body = TransferDone),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent, or a target that is no queue, attendant, expert group or agent of the tenant (the caller stays)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the agent has no call up, nobody of the expert group is free, a `teams:` target who cannot be rung in Teams (the caller stays), or the router takes no calls", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn transfer(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<TransferDone>, ApiError> {
    use crate::desk::{EdgeCommand, TransferRefusal};
    let Json(body) = body?;
    let target: String = body
        .target
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let (upn, answer) = ask_edge(
        &state,
        &caller,
        body.agent.as_deref(),
        |tenant, agent, reply| EdgeCommand::Transfer {
            tenant,
            agent,
            target,
            reply,
        },
    )
    .await?;
    match answer {
        Ok(step) => {
            tracing::info!(agent = %upn, %step, "transferred through the API");
            Ok(Json(TransferDone { step }))
        }
        Err(e @ TransferRefusal::NoSuchTarget(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e) => Err(ApiError::Conflict(e.to_string())),
    }
}

/// `POST /v1/agents/me/consult`: put the caller on hold and ring a colleague, an expert, an
/// agent of a queue or an outside number.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsultRequest {
    /// Only where the router checks no tokens: the agent (UPN).
    #[serde(default)]
    pub agent: Option<String>,
    /// A colleague by UPN (`MeganB@contoso.example`), an expert group by name
    /// (`escalations`: its best free expert), a queue by name (`billing`: the agent it would
    /// offer its next call to), or an E.164 number where the tenant places outside calls;
    /// `teams:<upn>` rings a colleague with a Teams number in Teams rather than on their
    /// Switchboard phone.
    pub target: String,
}

/// `POST /v1/agents/me/consult/{complete,conference,cancel}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsultStep {
    /// Only where the router checks no tokens: the agent (UPN).
    #[serde(default)]
    pub agent: Option<String>,
}

/// What a consultation step did: the call record's step.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConsultDone {
    /// `consult by adele@… with megan@…`, `conference …`, `transfer … after consulting …`.
    pub step: String,
}

async fn consult_step(
    state: &AppState,
    caller: &Caller,
    agent: Option<&str>,
    action: crate::desk::ConsultAction,
) -> Result<Json<ConsultDone>, ApiError> {
    use crate::desk::{ConsultRefusal, EdgeCommand};
    let (upn, answer) = ask_edge(state, caller, agent, |tenant, agent, reply| {
        EdgeCommand::Consult {
            tenant,
            agent,
            action,
            reply,
        }
    })
    .await?;
    match answer {
        Ok(step) => {
            tracing::info!(agent = %upn, %step, "consultation step");
            Ok(Json(ConsultDone { step }))
        }
        Err(e @ ConsultRefusal::NoSuchTarget(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ ConsultRefusal::NotAllowed(..)) => Err(ApiError::Forbidden(e.to_string())),
        Err(e) => Err(ApiError::Conflict(e.to_string())),
    }
}

#[utoipa::path(
    post, path = "/v1/agents/me/consult", tag = "agents", request_body = ConsultRequest,
    responses(
        (status = 200, description = "the caller hears music and the person's phone (for a queue, the agent its strategy would offer the next call to; for an outside number, rung on the tenant's outbound trunk) rings; `GET /v1/agents/me` shows the consultation (ringing, talking)", body = ConsultDone),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "an outside number the tenant may not call now (its toll rules, a cap, a full trunk)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent, or a target that is no colleague, queue, expert group or (where the tenant places outside calls) E.164 number", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "no call up, a consultation already going on, the person cannot take a call, nobody of the group or queue free (or callers wait in the queue), a `teams:` target who cannot be rung in Teams, or the router takes no calls", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn consult(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<ConsultRequest>, JsonRejection>,
) -> Result<Json<ConsultDone>, ApiError> {
    let Json(body) = body?;
    let target: String = body
        .target
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    consult_step(
        &state,
        &caller,
        body.agent.as_deref(),
        crate::desk::ConsultAction::Start(target),
    )
    .await
}

/// What to do with the consultation going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsultStepName {
    /// Leave the caller with the person consulted (the agent's leg is hung up; wrap-up).
    Complete,
    /// The caller, the agent and the person all hear each other.
    Conference,
    /// Hang up the person (or stop ringing them): back to the caller.
    Cancel,
}

#[utoipa::path(
    post, path = "/v1/agents/me/consult/{step}", tag = "agents", request_body = ConsultStep,
    params(("step" = ConsultStepName, Path, description = "complete, conference or cancel")),
    responses(
        (status = 200, description = "done: complete leaves the caller with the person consulted (the agent's leg is hung up, wrap-up follows) and, in a conference, with everyone in it (the first who joined holds the call); conference mixes the caller, the agent, the person and anyone already in the conference; cancel hangs the person up and the agent is back with the caller (and the conference)", body = ConsultDone),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent, or no such step", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "no consultation, or (complete, conference) the person has not answered yet", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fields the body does not have", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn consult_next(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(step): axum::extract::Path<String>,
    body: Result<Json<ConsultStep>, JsonRejection>,
) -> Result<Json<ConsultDone>, ApiError> {
    use crate::desk::ConsultAction;
    let action = match step.as_str() {
        "complete" => ConsultAction::Complete,
        "conference" => ConsultAction::Conference,
        "cancel" => ConsultAction::Cancel,
        _ => {
            return Err(ApiError::NotFound(format!(
                "{:?} is no consultation step: use complete, conference or cancel",
                step.chars().take(40).collect::<String>()
            )))
        }
    };
    let Json(body) = body?;
    consult_step(&state, &caller, body.agent.as_deref(), action).await
}

/// `GET /v1/agents/me`: the agent's state (for the agent named in the query where no tokens
/// are checked).
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

#[utoipa::path(
    get, path = "/v1/agents/me/targets", tag = "agents", params(MeQuery),
    responses(
        (status = 200, description = "where the agent may transfer or consult now: the tenant's queues (callers waiting, agents Ready), attendants, colleagues (state, Teams presence, whether they can take a call now), expert groups (only their experts free now), and whether outside numbers are allowed", body = switchboard_api::TransferTargets),
        (status = 400, description = "a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an agent (no Agent role), or another agent named", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn targets(
    State(state): State<AppState>,
    caller: Caller,
    query: axum::extract::Query<MeQuery>,
) -> Result<Json<switchboard_api::TransferTargets>, ApiError> {
    let (upn, tid) = agent_of(&caller, query.agent.as_deref())?;
    Ok(Json(state.center.targets(&upn, tid.as_deref())?))
}

/// How many records a list asks for: 1–500, 50 when not said.
fn records_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit {limit} is out of range: ask for 1 to 500 records"
        )));
    }
    Ok(limit)
}

/// `GET /v1/agents/me/calls` query.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyCallsQuery {
    /// Only where the router checks no tokens: the agent (UPN).
    pub agent: Option<String>,
    /// At most this many, newest first (1–500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/v1/agents/me/calls", tag = "agents", params(MyCallsQuery),
    responses(
        (status = 200, description = "the agent's own calls, newest first: those they placed, answered, were offered, consulted on or transferred (no one else's)", body = Vec<CallRecord>),
        (status = 400, description = "a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an agent (no Agent role), or another agent named", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not an agent of any tenant (or, where the router checks no tokens, no agent named)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "limit out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn my_calls(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<MyCallsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CallRecord>>, ApiError> {
    let query = query.map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let (upn, tid) = agent_of(&caller, query.agent.as_deref())?;
    let limit = records_limit(query.limit)?;
    let tenant = state.center.tenant_of(&upn, tid.as_deref())?;
    Ok(Json(
        state.store.list_agent_calls(&tenant, &upn, limit).await?,
    ))
}

/// `GET /v1/calls` query.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallsQuery {
    /// At most this many, newest first (1–500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The configured tenants (their ids) whose records the caller may read: every tenant for
/// the operator's Admins and where no tokens are checked, else those of the caller's Entra
/// tenant; Supervisors and Admins only.
pub(crate) fn readable_tenants(
    state: &AppState,
    caller: &Caller,
) -> Result<Option<Vec<String>>, ApiError> {
    if caller.unauthenticated || caller.operator {
        return Ok(None);
    }
    if !caller.has(Role::Supervisor) && !caller.has(Role::Admin) {
        return Err(ApiError::Forbidden(
            "call records, queue figures and the agents board are for Supervisors and Admins: ask your administrator for the Supervisor role".into(),
        ));
    }
    Ok(Some(state.center.with(|d| {
        d.tenants
            .iter()
            .filter(|t| caller.member_of(t.spec.entra_tenant_id.as_deref()))
            .map(|t| t.spec.id.clone())
            .collect()
    })))
}

#[utoipa::path(
    get, path = "/v1/calls", tag = "calls", params(CallsQuery),
    responses(
        (status = 200, description = "call detail records, newest first", body = Vec<CallRecord>),
        (status = 400, description = "a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "limit out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_calls(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<CallsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CallRecord>>, ApiError> {
    let query = query.map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let limit = records_limit(query.limit)?;
    let tenants = readable_tenants(&state, &caller)?;
    Ok(Json(
        state.store.list_calls(tenants.as_deref(), limit).await?,
    ))
}

#[utoipa::path(
    get, path = "/v1/calls/{id}", tag = "calls", params(("id" = String, Path, description = "the call's record id")),
    responses(
        (status = 200, body = CallRecord),
        (status = 404, description = "no such call (or not one of the caller's tenants)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_call(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<CallRecord>, ApiError> {
    let tenants = readable_tenants(&state, &caller)?;
    let missing = || ApiError::NotFound(format!("no call {id}"));
    let rec = state.store.get_call(&id).await?.ok_or_else(missing)?;
    // Another organisation's call is not there, as far as the caller can tell.
    if tenants.is_some_and(|t| !t.contains(&rec.tenant)) {
        return Err(missing());
    }
    Ok(Json(rec))
}

#[utoipa::path(
    get, path = "/v1/queues", tag = "calls",
    responses((status = 200, description = "every queue's live figures (of the caller's tenants)", body = Vec<QueueFigures>))
)]
pub async fn queues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<QueueFigures>>, ApiError> {
    let now = std::time::Instant::now();
    readable_rows(&state, &caller, |t| t.figures(now))
}

/// `rows` of each tenant the caller may read (Supervisors and Admins), in the tenants'
/// order.
fn readable_rows<T>(
    state: &AppState,
    caller: &Caller,
    rows: impl Fn(&crate::desk::TenantRt) -> Vec<T>,
) -> Result<Json<Vec<T>>, ApiError> {
    let tenants = readable_tenants(state, caller)?;
    Ok(Json(state.center.with(|d| {
        d.tenants
            .iter()
            .filter(|t| tenants.as_ref().is_none_or(|ids| ids.contains(&t.spec.id)))
            .flat_map(&rows)
            .collect()
    })))
}

#[utoipa::path(
    get, path = "/v1/agents", tag = "agents",
    responses(
        (status = 200, description = "the supervisors' board: every agent of the caller's tenants (as configured, removed ones left out) with their state, Not-ready reason, phone, Teams presence, consultation or conference, seconds in the state, and the queue of the call they are on or wrapping up", body = Vec<switchboard_api::BoardAgent>),
        (status = 401, description = "no or a bad access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a Supervisor or Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn agents(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<switchboard_api::BoardAgent>>, ApiError> {
    let now = std::time::Instant::now();
    readable_rows(&state, &caller, |t| t.board(now))
}

#[utoipa::path(
    get, path = "/v1/trunks", tag = "calls",
    responses((status = 200, description = "every trunk of the caller's tenants: calls now and health from the OPTIONS keep-alives", body = Vec<switchboard_api::TrunkStatus>))
)]
pub async fn trunks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<switchboard_api::TrunkStatus>>, ApiError> {
    readable_rows(&state, &caller, |t| {
        let retired = |name: &str| t.spec.trunks.iter().any(|s| s.name == name && s.retired);
        t.trunks
            .iter()
            .filter(move |tr| !retired(&tr.name))
            .map(|tr| switchboard_api::TrunkStatus {
                tenant: t.spec.id.clone(),
                name: tr.name.clone(),
                health: tr.health,
                since: tr.since,
                calls: tr.calls,
                max_calls: tr.max_calls,
                probe: tr.probe.clone(),
                last_probe_at: tr.last_probe.map(|(at, _)| at),
                last_probe_status: tr.last_probe.and_then(|(_, s)| s),
                last_heard_at: tr.last_heard,
                direct_routing: t
                    .spec
                    .trunks
                    .iter()
                    .find(|s| s.name == tr.name)
                    .and_then(|s| s.direct_routing.as_ref())
                    .map(|d| d.fqdn.clone()),
                proxies: tr
                    .proxies
                    .iter()
                    .map(|p| switchboard_api::ProxyStatus {
                        host: p.host.clone(),
                        port: p.port,
                        health: p.state.health,
                        since: p.state.since,
                        last_probe_at: p.state.last_probe.map(|(at, _)| at),
                        last_probe_status: p.state.last_probe.and_then(|(_, s)| s),
                    })
                    .collect(),
            })
            .collect()
    })
}
