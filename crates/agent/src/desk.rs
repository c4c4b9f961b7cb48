//! The agent's desk at the router: the router's agent API (`/v1/agents/me/…`: SIP
//! credentials, state, wrap-up) as [`AgentApi`], and [`DeskPhone`], the softphone registered
//! with the credentials the router issues, as one window drives it. The headless CLI's
//! `work` command uses the same [`AgentApi`].
//!
//! The same [`DeskPhone`] registers instead with a plain SIP account of Settings → Phone
//! ([`DeskPhone::start_plain`]): calls in and out through that registrar, and none of the
//! router's features (queues, transfer targets, consultations, wrap-up, the router's
//! history), which then say so ([`DeskError::RouterOnly`]); [`PhoneView::source`] tells the
//! window which it is.
//!
//! [`DeskPhone`] keeps a [`PhoneView`] (registration, the call ringing or up, the wrap-up
//! after a queue call, the last problem) that a window draws as it is, and passes every
//! [`PhoneEvent`] on. The router's SIP password goes from the API's answer into the phone's
//! account and nowhere else: not into the view, a log or an event.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_agent::desk::DeskError> {
//! use switchboard_agent::desk::{AgentApi, DeskPhone};
//!
//! let api = AgentApi::new("http://127.0.0.1:7700", None, Some("AdeleV@contoso.example".into()))?;
//! let desk = DeskPhone::new();
//! desk.start(api, &switchboard_agent::AudioSettings::default()).await?;
//! let mut view = desk.subscribe();
//! view.changed().await.ok();
//! println!("{:?}", view.borrow().registration);
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_api::{
    AgentRef, AgentState, AgentStateChange, AgentStatus, CallOutcome, CallRecord, NotesProblem,
    Problem, RequestedState, SipCredentials,
};
/// The router's answers the window draws as they are.
pub use switchboard_api::{
    ConsultState, ConsultStatus, MonitorMode, SupervisorBoard, TransferTargets,
};
use tokio::sync::{broadcast, watch};

use crate::call::{
    printable, Account, CallError, CallId, EndReason, Phone, PhoneEvent, PhoneOptions, ReferPolicy,
    ReferRefusal, RegistrationState, RingOptions, RouterOffer, Transport,
};
use crate::settings::{AudioSettings, PhoneSource, SipAccountSettings, SipTransport};

/// Environment variable naming the agent (UPN) where nobody is signed in and the router
/// checks no tokens (`[auth] mode = "none"`: the demo, tests).
pub const AGENT_ENV: &str = "SWITCHBOARD_AGENT";

/// The longest text kept from a router's problem detail.
const DETAIL_MAX: usize = 500;

/// What went wrong at the desk, in words that say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// Nobody is signed in and no agent is named.
    #[error("the phone does not know which agent you are — sign in with Microsoft (or, with a router that checks no tokens, start the app with {AGENT_ENV}=your UPN)")]
    NoAgent,
    #[error("cannot reach the router at {base} for {what} — is it running, and is the router URL in Settings right? ({detail})")]
    Unreachable {
        base: String,
        what: String,
        detail: String,
    },
    /// The router said no (`status`), with its reason and what to do.
    #[error("the router refused {what} for {agent}: {reason}")]
    Refused {
        what: String,
        agent: String,
        status: u16,
        reason: String,
    },
    #[error("the router's answer to {what} does not read — is the router URL that of a Switchboard router of this version?")]
    BadAnswer { what: String },
    /// The phone could not start or refused a command.
    #[error("the phone: {0}")]
    Phone(#[from] CallError),
    #[error("the phone is not started — wait until it shows Registered, or check the router's address in Settings")]
    NotStarted,
    #[error("there is no such call (it may have ended)")]
    NoSuchCall,
    #[error(
        "the other party asks no transfer now (it may have been withdrawn, or the call ended)"
    )]
    NoTransferAsked,
    #[error("{0:?} is not a key of the keypad (0–9, *, #, A–D)")]
    BadDigit(char),
    #[error("there is no wrap-up to finish")]
    NoWrapUp,
    /// Wrap-up notes the router would refuse (too long, or a control character).
    #[error("{0}")]
    BadNotes(#[from] NotesProblem),
    /// What was typed to call is no number and no name the router could know.
    #[error("{0:?} is neither a phone number nor a colleague's, queue's or group's name — type a number such as +15551234567, or a name such as MeganB")]
    BadTarget(String),
    #[error("a call is already going on — hang it up (or finish it) before placing another")]
    Busy,
    /// The router refused a transfer or a consultation step (`status`), with its reason.
    #[error("the router refused {what}: {reason}")]
    Transfer {
        what: String,
        status: u16,
        reason: String,
    },
    /// A feature of the Switchboard router, asked of a phone on a plain SIP account.
    #[error("{0} needs the Switchboard router, and the phone uses your own SIP account — choose \"Switchboard router\" in Settings → Phone to use it")]
    RouterOnly(&'static str),
    /// The plain SIP account cannot be used as set (`code` from the settings or the
    /// password store).
    #[error("{message}")]
    SipAccount { code: &'static str, message: String },
}

impl DeskError {
    /// A Settings → Phone problem: the account's settings or its kept password, with the
    /// code the window says it by.
    pub(crate) fn sip_account(code: &'static str, message: impl std::fmt::Display) -> Self {
        Self::SipAccount {
            code,
            message: message.to_string(),
        }
    }

    /// A stable code for the UI, which says the message in the person's language.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoAgent => "phone_no_agent",
            Self::Unreachable { .. } => "router_unreachable",
            Self::Refused { status: 401, .. } => "router_sign_in",
            Self::Refused { status: 403, .. } => "router_forbidden",
            Self::Refused { status: 404, .. } => "router_not_an_agent",
            Self::Refused { status: 409, .. } => "router_takes_no_calls",
            Self::Refused { status: 422, .. } => "router_refused_value",
            Self::Refused { .. } => "router_refused",
            Self::BadAnswer { .. } => "router_bad_answer",
            Self::Phone(_) => "phone_failed",
            Self::NotStarted => "phone_not_started",
            Self::NoSuchCall => "no_such_call",
            Self::NoTransferAsked => "no_transfer_asked",
            Self::BadDigit(_) => "invalid_digit",
            Self::NoWrapUp => "no_wrap_up",
            Self::BadNotes(NotesProblem::TooLong { .. }) => "notes_too_long",
            Self::BadNotes(NotesProblem::ControlCharacter { .. }) => "notes_control_character",
            Self::BadTarget(_) => "invalid_target",
            Self::Busy => "phone_busy",
            Self::Transfer { status: 404, .. } => "target_not_found",
            Self::Transfer { status: 403, .. } => "target_forbidden",
            Self::Transfer { status: 409, .. } => "target_unavailable",
            Self::Transfer { .. } => "router_refused",
            Self::RouterOnly(_) => "router_only",
            Self::SipAccount { code, .. } => code,
        }
    }
}

/// Why the router said no, for a person: the problem's detail (the router's own words say
/// what to do), else the status and a next step.
pub fn refusal(status: u16, body: &str, named: bool) -> String {
    let problem = serde_json::from_str::<Problem>(body).ok();
    if let Some(detail) = problem
        .as_ref()
        .and_then(|p| p.detail.as_deref())
        .and_then(|d| printable(d, DETAIL_MAX))
    {
        return format!("{status} {detail}");
    }
    let hint = match status {
        401 => "sign in again",
        403 => "ask your administrator for the Agent role in the router's app registration",
        404 if named => "check the agent's UPN and the router's [[tenants]] configuration (an older router has no such route: update it)",
        404 => "check that the signed-in account is an agent in the router's [[tenants]] configuration (an older router has no such route: update it)",
        409 => "the router takes no calls: set [sip] listen in its configuration",
        s if s >= 500 => "see the router's logs",
        _ => "check that the router URL names a Switchboard router of this version",
    };
    let said = problem
        .and_then(|p| printable(&p.title, DETAIL_MAX))
        .unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned()
        });
    format!("{status} {said} — {hint}")
}

/// `POST /v1/agents/me/wrap-up`: the agent is done with the last call.
#[derive(Debug, Serialize)]
pub struct WrapUpRequest<'a> {
    /// Only where the router checks no tokens; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<&'a str>,
    /// The agent's notes on the call (at most 2,000 characters; see
    /// [`switchboard_api::check_wrap_up_notes`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<&'a str>,
}

/// `POST /v1/agents/me/transfer`, `/consult` and `/consult/{step}`.
#[derive(Debug, Serialize)]
pub struct TransferBody<'a> {
    /// Only where the router checks no tokens; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
}

/// The router's answer to a transfer or consultation step.
#[derive(Debug, serde::Deserialize)]
struct StepDone {
    step: String,
}

/// A step the router would not take (403, 404, 409): said with its reason, as a refusal of
/// the step rather than of the agent.
fn step_refused(e: DeskError) -> DeskError {
    match e {
        DeskError::Refused {
            what,
            status,
            reason,
            ..
        } if matches!(status, 403 | 404 | 409 | 422) => DeskError::Transfer {
            what,
            status,
            reason,
        },
        e => e,
    }
}

/// What to do with the consultation going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum ConsultStep {
    /// Leave the caller with the person consulted (our leg ends; wrap-up).
    Complete,
    /// The caller, the agent and the person all talk together.
    Conference,
    /// Hang up the person (or stop ringing them): back to the caller.
    Cancel,
}

/// One call of the agent's history, from the router's records or the phone's own memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct HistoryEntry {
    /// The router's record id, or `phone-<n>` for a call only this phone knows.
    pub id: String,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub started_unix_ms: u64,
    /// The agent placed it.
    pub outgoing: bool,
    /// The other party: the caller's number, or whom the agent called.
    pub who: String,
    pub queue: Option<String>,
    /// `answered`, `transferred` (answered, then sent on), `called_back` (the agent called
    /// the caller back), `missed` (offered, not taken), `abandoned`, `refused`, `failed`,
    /// `not_answered` (placed, nobody answered), …
    pub outcome: String,
    /// Why, where there is a reason (a refusal's).
    pub reason: Option<String>,
    /// Seconds from answer to end, once answered and ended.
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub talk_seconds: Option<u64>,
    pub disposition: Option<String>,
    /// What to dial to call back (a number or a name), where there is one.
    pub call_back: Option<String>,
    /// `router` (its records) or `phone` (a call the router has no record of).
    pub source: String,
}

/// A call the phone placed or took, as it remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCall {
    pub n: u64,
    pub started_unix_ms: u64,
    pub answered_unix_ms: Option<u64>,
    pub ended_unix_ms: u64,
    pub outgoing: bool,
    pub who: String,
    /// The router's record of an offered call.
    pub call_record: Option<String>,
    pub queue: Option<String>,
    /// Why it did not connect (a refusal's code and words).
    pub problem: Option<PhoneProblem>,
}

/// Whether `who` is something one can dial back (a number or a plain name).
fn dialable(who: &str) -> Option<String> {
    let w = who.trim();
    let ok = !w.is_empty()
        && w.len() <= 128
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+._-@".contains(c));
    ok.then(|| w.to_owned())
}

/// Unix ms of a record's time, given as its Unix nanoseconds.
fn unix_ms(nanos: i128) -> u64 {
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

/// The agent's history: the router's `records` (of `me`, the agent's UPN) and the phone's
/// `local` calls the router has no record of, newest first, at most `limit`.
pub fn merge_history(
    me: &str,
    records: &[CallRecord],
    local: &[LocalCall],
    limit: usize,
) -> Vec<HistoryEntry> {
    let mut out: Vec<HistoryEntry> = records
        .iter()
        .map(|r| {
            let outgoing = r.caller.eq_ignore_ascii_case(me);
            let mine = r
                .agent
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(me));
            // The agent answered it, then sent it on (a transfer, a completed consultation).
            let by_me = format!("by {}", me.to_lowercase());
            let passed_on = r
                .offers
                .iter()
                .any(|o| o.agent.eq_ignore_ascii_case(me) && o.outcome == "answered")
                || r.steps.iter().any(|s| {
                    s.to_lowercase()
                        .split(" to ")
                        .next()
                        .is_some_and(|x| x.ends_with(&by_me))
                });
            let taken = matches!(
                r.outcome,
                CallOutcome::Answered | CallOutcome::CalledBack | CallOutcome::Transferred
            );
            let outcome = match r.outcome {
                _ if taken && !outgoing && !mine && passed_on => "transferred".to_owned(),
                _ if taken && !outgoing && !mine => "missed".to_owned(),
                o => serde_json::to_value(o)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            };
            let who = if outgoing { &r.dialled } else { &r.caller };
            HistoryEntry {
                id: r.id.clone(),
                started_unix_ms: unix_ms(r.started_at.unix_timestamp_nanos()),
                outgoing,
                who: printable(who, 128).unwrap_or_default(),
                queue: r.queue.clone(),
                outcome,
                reason: r.reason.as_deref().and_then(|x| printable(x, 200)),
                talk_seconds: r
                    .answered_at
                    .zip(r.ended_at)
                    .map(|(a, e)| u64::try_from((e - a).whole_seconds()).unwrap_or(0)),
                disposition: r.disposition.clone(),
                call_back: dialable(who),
                source: "router".into(),
            }
        })
        .collect();
    for c in local {
        let recorded = records.iter().any(|r| {
            c.call_record.as_deref() == Some(r.id.as_str())
                || (c.outgoing
                    && r.caller.eq_ignore_ascii_case(me)
                    && r.dialled.eq_ignore_ascii_case(&c.who)
                    && unix_ms(r.started_at.unix_timestamp_nanos()).abs_diff(c.started_unix_ms)
                        < 10_000)
        });
        if recorded {
            continue;
        }
        let (outcome, reason) = match (&c.answered_unix_ms, &c.problem) {
            (Some(_), _) => ("answered".to_owned(), None),
            (None, Some(p)) => ("refused".to_owned(), Some(p.message.clone())),
            (None, None) if c.outgoing => ("not_answered".to_owned(), None),
            (None, None) => ("missed".to_owned(), None),
        };
        out.push(HistoryEntry {
            id: format!("phone-{}", c.n),
            started_unix_ms: c.started_unix_ms,
            outgoing: c.outgoing,
            who: c.who.clone(),
            queue: c.queue.clone(),
            outcome,
            reason,
            talk_seconds: c
                .answered_unix_ms
                .map(|a| c.ended_unix_ms.saturating_sub(a) / 1000),
            disposition: None,
            call_back: dialable(&c.who),
            source: "phone".into(),
        });
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.started_unix_ms));
    out.truncate(limit);
    out
}

/// The body of `PUT /v1/agents/me/state`.
pub fn state_change(
    agent: Option<String>,
    ready: bool,
    reason: Option<String>,
) -> AgentStateChange {
    let (state, reason) = requested(ready, reason);
    AgentStateChange {
        agent,
        state,
        reason,
    }
}

/// Ready (no reason), or Not ready for `reason`, as the router's API asks for them.
fn requested(ready: bool, reason: Option<String>) -> (RequestedState, Option<String>) {
    if ready {
        (RequestedState::Ready, None)
    } else {
        (RequestedState::NotReady, reason)
    }
}

/// The router's agent API, for one agent.
#[derive(Clone)]
pub struct AgentApi {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
    agent: Option<String>,
}

impl std::fmt::Debug for AgentApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentApi")
            .field("base", &self.base)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl AgentApi {
    /// The API of the router at `base` (normalised, no trailing slash), with the signed-in
    /// person's `bearer` token and/or the `agent`'s UPN (which a router that checks no
    /// tokens needs, and one that checks them compares with the token's user).
    pub fn new(
        base: &str,
        bearer: Option<String>,
        agent: Option<String>,
    ) -> Result<Self, DeskError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // Before the router closes them: its header-read timeout (10 s by default) also
            // ends idle keep-alive connections, and a request sent on one as it closes fails.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| DeskError::Unreachable {
                base: base.to_owned(),
                what: "HTTP".into(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            bearer,
            agent,
        })
    }

    /// The router's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The agent named in requests, if any.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Sends `body` and reads the answer (`None` for 204); a refusal names `what` was asked,
    /// for whom, and why.
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        what: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Option<T>, DeskError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| DeskError::Unreachable {
            base: self.base.clone(),
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(DeskError::Refused {
                what: what.to_owned(),
                agent: self
                    .agent
                    .clone()
                    .unwrap_or_else(|| "the signed-in agent".into()),
                status: status.as_u16(),
                reason: refusal(status.as_u16(), &text, self.agent.is_some()),
            });
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| DeskError::BadAnswer {
                what: what.to_owned(),
            })
    }

    fn bad(what: &str) -> DeskError {
        DeskError::BadAnswer { what: what.into() }
    }

    /// New SIP credentials (the previous ones stop working).
    pub async fn credentials(&self) -> Result<SipCredentials, DeskError> {
        let body = AgentRef {
            agent: self.agent.clone(),
        };
        let what = "SIP credentials";
        self.send(
            reqwest::Method::POST,
            "/v1/agents/me/sip-credentials",
            what,
            Some(&body),
        )
        .await?
        .ok_or_else(|| Self::bad(what))
    }

    /// Ready, or Not ready for `reason`.
    pub async fn set_state(
        &self,
        ready: bool,
        reason: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        let body = state_change(self.agent.clone(), ready, reason);
        let what = "the state change";
        self.send(
            reqwest::Method::PUT,
            "/v1/agents/me/state",
            what,
            Some(&body),
        )
        .await?
        .ok_or_else(|| Self::bad(what))
    }

    /// A supervisor sets agent `upn`'s state from the board: Ready, or Not ready for
    /// `reason` (`PUT /v1/agents/{upn}/state`).
    pub async fn set_agent_state(
        &self,
        upn: &str,
        ready: bool,
        reason: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        let (state, reason) = requested(ready, reason);
        let body = switchboard_api::AgentStateSet { state, reason };
        let what = "the agent's state change";
        let upn: String = url::form_urlencoded::byte_serialize(upn.as_bytes()).collect();
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/agents/{upn}/state"),
            what,
            Some(&body),
        )
        .await?
        .ok_or_else(|| Self::bad(what))
    }

    /// The agent's state at the router.
    pub async fn status(&self) -> Result<AgentStatus, DeskError> {
        let path = self.me_path("/v1/agents/me");
        let what = "the agent's state";
        self.send(reqwest::Method::GET, &path, what, None::<&()>)
            .await?
            .ok_or_else(|| Self::bad(what))
    }

    /// The agent is done with the last call, with its disposition code and notes (the
    /// router refuses notes [`switchboard_api::check_wrap_up_notes`] refuses).
    pub async fn wrap_up(
        &self,
        disposition: Option<&str>,
        notes: Option<&str>,
    ) -> Result<AgentStatus, DeskError> {
        let body = WrapUpRequest {
            agent: self.agent.as_deref(),
            disposition,
            notes,
        };
        let what = "the end of wrap-up";
        self.send(
            reqwest::Method::POST,
            "/v1/agents/me/wrap-up",
            what,
            Some(&body),
        )
        .await?
        .ok_or_else(|| Self::bad(what))
    }

    /// `path` with `?agent=` where a UPN is named (`&` when `path` has a query).
    fn me_path(&self, path: &str) -> String {
        match &self.agent {
            Some(a) => format!(
                "{path}{}agent={}",
                if path.contains('?') { '&' } else { '?' },
                url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            ),
            None => path.to_owned(),
        }
    }

    /// Whom and where the agent may transfer or consult now.
    pub async fn targets(&self) -> Result<TransferTargets, DeskError> {
        let what = "the transfer targets";
        self.send(
            reqwest::Method::GET,
            &self.me_path("/v1/agents/me/targets"),
            what,
            None::<&()>,
        )
        .await?
        .ok_or_else(|| Self::bad(what))
    }

    /// The supervisors' board: every queue's live figures and every agent of the tenants the
    /// signed-in person may read (a Supervisor or Admin; others are refused with 403).
    pub async fn board(&self) -> Result<SupervisorBoard, DeskError> {
        let (queues, agents) = tokio::try_join!(
            async {
                let what = "the queues' figures";
                self.send::<Vec<switchboard_api::QueueFigures>>(
                    reqwest::Method::GET,
                    "/v1/queues",
                    what,
                    None::<&()>,
                )
                .await?
                .ok_or_else(|| Self::bad(what))
            },
            async {
                let what = "the agents board";
                self.send::<Vec<switchboard_api::BoardAgent>>(
                    reqwest::Method::GET,
                    "/v1/agents",
                    what,
                    None::<&()>,
                )
                .await?
                .ok_or_else(|| Self::bad(what))
            },
        )?;
        Ok(SupervisorBoard { queues, agents })
    }

    /// The agent's own calls at the router, newest first, at most `limit`.
    pub async fn my_calls(&self, limit: u32) -> Result<Vec<CallRecord>, DeskError> {
        let what = "your calls";
        self.send(
            reqwest::Method::GET,
            &self.me_path(&format!(
                "/v1/agents/me/calls?limit={}",
                limit.clamp(1, 500)
            )),
            what,
            None::<&()>,
        )
        .await?
        .ok_or_else(|| Self::bad(what))
    }

    /// A transfer or consultation request (`path` under `/v1/agents/me/`, `target` when it
    /// names one): the router's step; its refusals as [`DeskError::Transfer`].
    async fn transfer_step(
        &self,
        path: &str,
        what: &str,
        target: Option<&str>,
    ) -> Result<String, DeskError> {
        let body = TransferBody {
            agent: self.agent.as_deref(),
            target,
        };
        let done: Option<StepDone> = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/agents/me/{path}"),
                what,
                Some(&body),
            )
            .await
            .map_err(step_refused)?;
        done.map(|d| d.step).ok_or_else(|| Self::bad(what))
    }

    /// As a supervisor: listen in on agent `upn`'s call, whisper to them or barge in
    /// (`mode`), or stop whoever does (`None`). The router rings this person's own phone
    /// first; once it is up, a new mode takes effect at once. The router's step.
    pub async fn monitor(&self, upn: &str, mode: Option<MonitorMode>) -> Result<String, DeskError> {
        let path = format!(
            "/v1/agents/{}/monitor",
            url::form_urlencoded::byte_serialize(upn.as_bytes()).collect::<String>()
        );
        let (what, done) = match mode {
            Some(mode) => {
                let what = "listening in";
                let body = switchboard_api::MonitorRequest {
                    mode,
                    supervisor: self.agent.clone(),
                };
                let done: Option<StepDone> = self
                    .send(reqwest::Method::PUT, &path, what, Some(&body))
                    .await
                    .map_err(step_refused)?;
                (what, done)
            }
            None => {
                let what = "stopping the listen-in";
                let done: Option<StepDone> = self
                    .send(reqwest::Method::DELETE, &path, what, None::<&()>)
                    .await
                    .map_err(step_refused)?;
                (what, done)
            }
        };
        done.map(|d| d.step).ok_or_else(|| Self::bad(what))
    }

    /// Sends the caller the agent talks to elsewhere (blind transfer); the router hangs up the
    /// agent's leg.
    pub async fn transfer(&self, target: &str) -> Result<String, DeskError> {
        self.transfer_step("transfer", "the transfer", Some(target))
            .await
    }

    /// Puts the caller on hold and rings a colleague or an expert group's best free expert.
    pub async fn consult(&self, target: &str) -> Result<String, DeskError> {
        self.transfer_step("consult", "the consultation", Some(target))
            .await
    }

    /// The next step of the consultation going on.
    pub async fn consult_step(&self, step: ConsultStep) -> Result<String, DeskError> {
        let (path, what) = match step {
            ConsultStep::Complete => ("consult/complete", "completing the transfer"),
            ConsultStep::Conference => ("consult/conference", "the conference"),
            ConsultStep::Cancel => ("consult/cancel", "ending the consultation"),
        };
        self.transfer_step(path, what, None).await
    }

    /// The router forgets the agent's phone and its credentials stop working.
    pub async fn sign_off(&self) -> Result<(), DeskError> {
        let body = AgentRef {
            agent: self.agent.clone(),
        };
        self.send::<serde_json::Value>(
            reqwest::Method::DELETE,
            "/v1/agents/me/sip-credentials",
            "signing off",
            Some(&body),
        )
        .await
        .map(|_| ())
    }
}

/// The phone's registration, as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum RegistrationView {
    /// No phone (not started, or stopped).
    Off,
    /// Getting credentials and registering.
    Registering,
    Registered {
        /// The address of record.
        aor: String,
    },
    /// Not registered, and why, for a person (retried by the phone, or by Connect again);
    /// `code` is stable for the UI to say it in the person's language (`registrar_refused`,
    /// `registrar_unreachable`, on a plain SIP account `sip_account_refused` and
    /// `sip_account_unreachable`, `registration_not_sent`, `phone_stopped`, or a
    /// [`DeskError::code`]).
    Failing { code: String, reason: String },
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum CallStage {
    /// A call we placed, sent and not yet ringing at the other end.
    Calling,
    /// A call we placed rings at the other end (180 or 183).
    Alerting,
    /// An incoming call rings here.
    Ringing,
    /// Answering (the 200 OK is on its way).
    Answering,
    Talking,
}

/// The call ringing or up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct CallView {
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub id: CallId,
    pub stage: CallStage,
    /// A call we placed ([`DeskPhone::dial`]); `offer.dialled` then says whom.
    pub outgoing: bool,
    /// The caller as SIP said it (the router's `caller` in `offer` is better when given).
    pub from: String,
    /// What the router said about it: queue, caller, number dialled, attendant choices.
    pub offer: RouterOffer,
    /// When it started ringing, and when it was answered (Unix ms).
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub ringing_since_unix_ms: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub answered_unix_ms: Option<u64>,
    pub muted: bool,
    pub held: bool,
    /// The codec agreed, once up.
    pub codec: Option<String>,
    /// The other party asks to transfer this call somewhere we do not trust on its word (a
    /// REFER not from the router, or to a target outside the account's domain): the window
    /// asks the person to follow or decline it ([`DeskPhone::answer_transfer`]).
    pub transfer_ask: Option<TransferAsk>,
}

/// A transfer the other party asked for, put to the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct TransferAsk {
    /// Where the call would go (printable, at most 256 characters).
    pub target: String,
    /// Why it is put to the person rather than followed.
    pub why: String,
}

impl CallView {
    /// An incoming call still ringing (not yet answered or rejected).
    pub fn rings_in(&self) -> bool {
        self.stage == CallStage::Ringing && !self.outgoing
    }

    /// A call starting now at `stage` (outgoing from [`CallStage::Calling`]).
    fn new(id: CallId, stage: CallStage, from: String, offer: RouterOffer) -> Self {
        Self {
            id,
            stage,
            outgoing: stage == CallStage::Calling,
            from,
            offer,
            ringing_since_unix_ms: now_ms(),
            answered_unix_ms: None,
            muted: false,
            held: false,
            codec: None,
            transfer_ask: None,
        }
    }
}

/// The wrap-up of a queue call just ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct WrapUpView {
    pub queue: Option<String>,
    /// The router's call record.
    pub call_record: Option<String>,
    /// The queue's disposition codes (empty: any code, or none).
    pub dispositions: Vec<String>,
    /// When the router ends the wrap-up, in Unix ms on this machine's clock (the router's
    /// `wrap_up_seconds_left` counted from when it said it); none where the router holds no
    /// wrap-up (a queue without wrap-up time) or has not said yet. The window counts down to
    /// it; a view sent again keeps the same end.
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub ends_unix_ms: Option<u64>,
    /// The agent's state as the router set it once the wrap-up was over (Ready, Not ready, …);
    /// none while it lasts. The disposition and notes are still taken then.
    pub after: Option<AgentState>,
}

/// When the router's wrap-up ends on this machine's clock, `now_ms` being when it said
/// `st`: none outside wrap-up, or when it ends now (a queue without wrap-up time).
pub fn wrap_up_ends(st: &AgentStatus, now_ms: u64) -> Option<u64> {
    match (st.state, st.wrap_up_seconds_left) {
        (AgentState::WrapUp, Some(s)) if s > 0 => {
            Some(now_ms.saturating_add(s.saturating_mul(1000)))
        }
        _ => None,
    }
}

/// Notes as the window's text box gives them, ready for the router: CR LF and lone CR made
/// line feeds, white space around them dropped, none when empty; refused as the router
/// would refuse them.
pub fn wrap_up_notes(notes: Option<&str>) -> Result<Option<String>, NotesProblem> {
    let Some(n) = notes else { return Ok(None) };
    let n = n.replace("\r\n", "\n").replace('\r', "\n");
    let n = n.trim();
    if n.is_empty() {
        return Ok(None);
    }
    switchboard_api::check_wrap_up_notes(n)?;
    Ok(Some(n.to_owned()))
}

/// The call's sound devices of Settings → Audio.
fn call_devices(audio: &AudioSettings) -> switchboard_media::device::DeviceChoice {
    switchboard_media::device::DeviceChoice {
        input: audio.input_device.clone(),
        output: audio.output_device.clone(),
        open_input: true,
        open_output: true,
    }
}

/// Where and how loud calls ring, from Settings → Audio.
fn ring_of(audio: &AudioSettings) -> RingOptions {
    RingOptions {
        device: audio.ringing_device.clone(),
        volume: f32::from(audio.ring_volume.min(100)) / 100.0,
    }
}

/// A problem to show, with a code the UI says in the person's language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PhoneProblem {
    pub code: String,
    pub message: String,
}

impl From<&DeskError> for PhoneProblem {
    fn from(e: &DeskError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

/// Everything the window shows of the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PhoneView {
    /// The agent (UPN) the phone works for, once the router issued credentials.
    pub agent: Option<String>,
    pub registration: RegistrationView,
    pub call: Option<CallView>,
    pub wrap_up: Option<WrapUpView>,
    /// The last thing that went wrong (cleared when the next command works).
    pub problem: Option<PhoneProblem>,
    /// The call volume, 0–100 % (Settings → Audio's, until changed in a call).
    pub volume: u8,
    /// The consultation the router carries for the agent's call, while there is one
    /// (`GET /v1/agents/me`'s `consult`, followed while it lasts).
    pub consult: Option<ConsultStatus>,
    /// Whether the phone works through the Switchboard router or the person's own SIP
    /// account (then the window offers no router features: queues, transfers, wrap-up).
    pub source: PhoneSource,
    /// What went wrong with a sound device of the current call or its ring (a chosen one
    /// missing, one unplugged and what took over, none at all); none while all is well.
    /// A new call starts without it.
    pub device: Option<crate::audio::DeviceNotice>,
}

impl Default for PhoneView {
    fn default() -> Self {
        Self {
            agent: None,
            registration: RegistrationView::Off,
            call: None,
            wrap_up: None,
            problem: None,
            volume: 100,
            consult: None,
            source: PhoneSource::Router,
            device: None,
        }
    }
}

/// Whether a call that began at `call_ms` (Unix ms) began before a router that started at
/// `router_ms`, with 2 s to spare: the router's uptime comes in whole seconds, read a moment
/// after the link received it.
fn began_before_router(call_ms: u64, router_ms: u64) -> bool {
    call_ms.saturating_add(2000) < router_ms
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The registration as a person reads it.
pub fn registration_view(aor: &str, state: &RegistrationState) -> RegistrationView {
    match state {
        RegistrationState::Registered { .. } => RegistrationView::Registered {
            aor: aor.to_owned(),
        },
        RegistrationState::Refused { status, reason } => RegistrationView::Failing {
            code: "registrar_refused".into(),
            reason: format!(
                "the registrar refused {aor}: {status} {} — get new credentials (Connect again) or ask your administrator",
                printable(reason, 100).unwrap_or_default()
            ),
        },
        RegistrationState::Unreachable => RegistrationView::Failing {
            code: "registrar_unreachable".into(),
            reason: format!("no answer from the registrar of {aor} — check that the router is running; retrying"),
        },
        RegistrationState::Unregistered => RegistrationView::Off,
        RegistrationState::NotSent { why } => RegistrationView::Failing {
            code: "registration_not_sent".into(),
            reason: format!("the registration of {aor} could not be sent: {why}"),
        },
    }
}

/// The registration of a plain SIP account as a person reads it: who refused or did not
/// answer, and what to change in Settings → Phone.
pub fn plain_registration_view(
    aor: &str,
    registrar: &str,
    state: &RegistrationState,
) -> RegistrationView {
    match state {
        RegistrationState::Refused { status, reason } => {
            let hint = match status {
                401 | 403 | 407 => "check the user name, authentication user and password in Settings → Phone",
                404 => "the server does not know this user — check the user name in Settings → Phone",
                _ => "check the account in Settings → Phone, or ask your SIP provider",
            };
            RegistrationView::Failing {
                code: "sip_account_refused".into(),
                reason: format!(
                    "SIP registration refused by {registrar}: {status} {} — {hint}",
                    printable(reason, 100).unwrap_or_default()
                ),
            }
        }
        RegistrationState::Unreachable => RegistrationView::Failing {
            code: "sip_account_unreachable".into(),
            reason: format!("no answer from {registrar} for {aor} — check the registrar and transport in Settings → Phone and that this computer reaches it; retrying"),
        },
        other => registration_view(aor, other),
    }
}

/// Why a call placed through a plain SIP account did not connect: as [`call_refusal`], in
/// words about the SIP server rather than the router's rules.
pub fn plain_call_refusal(reason: &EndReason) -> Option<PhoneProblem> {
    let p = call_refusal(reason)?;
    let said = match reason {
        EndReason::Rejected { status, phrase } => {
            format!("{status} {}: ", printable(phrase, 100).unwrap_or_default())
        }
        _ => String::new(),
    };
    let what = match p.code.as_str() {
        "call_forbidden" => "the SIP server refused the call — your account may not call that address; ask your SIP provider",
        "call_not_found" => "the SIP server knows nobody by that name or number — check what you typed",
        "call_unavailable" => "the SIP server has no line free for that call now — try again in a minute",
        "call_failed" if said.is_empty() => return Some(PhoneProblem {
            message: p.message.replace("the router did not answer the call — check that it is running", "the SIP server did not answer the call — check the registrar in Settings → Phone"),
            ..p
        }),
        _ => return Some(p),
    };
    Some(PhoneProblem {
        code: p.code,
        message: format!("{said}{what}"),
    })
}

/// What the person typed to call through a plain SIP account, as a SIP URI: a full address
/// (`sip:bob@pbx.example.com`, `bob@pbx.example.com`), else a number or user name at the
/// account's registrar (`sip:host:port`).
pub fn plain_dial_uri(typed: &str, registrar: &str) -> Result<String, DeskError> {
    let bad = || DeskError::BadTarget(printable(typed, 64).unwrap_or_default());
    let t = typed.trim();
    let (scheme, hostport) = registrar
        .split_once(':')
        .map(|(sc, rest)| (sc, rest.split(';').next().unwrap_or(rest)))
        .ok_or_else(bad)?;
    let (scheme, t) = if let Some(r) = t.strip_prefix("sips:") {
        ("sips", r)
    } else if let Some(r) = t.strip_prefix("sip:") {
        (scheme, r)
    } else {
        (scheme, t)
    };
    match t.split_once('@') {
        Some((user, host)) => {
            let user_ok = |c: char| c.is_ascii_alphanumeric() || "._-+".contains(c);
            let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
            if user.is_empty()
                || user.len() > 64
                || !user.chars().all(user_ok)
                || host.is_empty()
                || host.len() > 253
                || !host.chars().all(host_ok)
            {
                return Err(bad());
            }
            Ok(format!("{scheme}:{user}@{host}"))
        }
        None => Ok(format!("{scheme}:{}@{hostport}", dial_target(t, "")?)),
    }
}

/// What the person typed to call, as the user part the router reads: a number (`+` and
/// digits; spaces, dashes, dots and brackets dropped; at most 15 digits, as E.164), or a name
/// of the tenant — a colleague's UPN in the tenant's `domain` or its user part, a queue, an
/// attendant, an expert group. A `tel:` or `sip:` in front is dropped.
pub fn dial_target(typed: &str, domain: &str) -> Result<String, DeskError> {
    let bad = || DeskError::BadTarget(printable(typed, 64).unwrap_or_default());
    let t = typed.trim();
    let t = t
        .strip_prefix("tel:")
        .or_else(|| t.strip_prefix("sip:"))
        .unwrap_or(t)
        .trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.chars()
        .all(|c| c.is_ascii_digit() || " +-.()".contains(c))
    {
        let plus = t.starts_with('+');
        let digits: String = t.chars().filter(char::is_ascii_digit).collect();
        if t.matches('+').count() > usize::from(plus) || digits.is_empty() || digits.len() > 15 {
            return Err(bad());
        }
        return Ok(if plus { format!("+{digits}") } else { digits });
    }
    let user = match t.split_once('@') {
        Some((u, host)) if host.eq_ignore_ascii_case(domain) => u,
        Some(_) => return Err(bad()),
        None => t,
    };
    let fits = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if user.is_empty() || user.len() > 64 || !user.chars().all(fits) {
        return Err(bad());
    }
    Ok(user.to_owned())
}

/// The SIP URI of `user` at the router whose registrar is `registrar` (`sip:host:port`).
pub fn dial_uri(user: &str, registrar: &str) -> String {
    let host = registrar.strip_prefix("sip:").unwrap_or(registrar);
    let host = host.split(';').next().unwrap_or(host);
    format!("sip:{user}@{host}")
}

/// What the picker or the person names as a transfer target, as the router's API takes it:
/// a queue, attendant or expert group by name, a colleague by UPN, or an E.164 number.
pub fn transfer_target(typed: &str) -> Result<String, DeskError> {
    let bad = || DeskError::BadTarget(printable(typed, 64).unwrap_or_default());
    let t = typed.trim();
    if t.chars()
        .all(|c| c.is_ascii_digit() || " +-.()".contains(c))
    {
        // A number: `+` and digits only, as dialling takes it.
        return dial_target(t, "");
    }
    let fits = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    if t.is_empty() || t.len() > 200 || !t.chars().all(fits) || t.matches('@').count() > 1 {
        return Err(bad());
    }
    Ok(t.to_owned())
}

/// The user part of a SIP URI (`sip:alex@host` → `alex`), for showing whom we call.
fn uri_user(uri: &str) -> String {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    let user = rest.split_once('@').map_or(rest, |(u, _)| u);
    printable(user, 128).unwrap_or_default()
}

/// Why a call we placed did not connect, for a person, with a stable code the window says
/// in the person's language (`None`: we hung up, or nothing went wrong).
pub fn call_refusal(reason: &EndReason) -> Option<PhoneProblem> {
    let (code, message) = match reason {
        EndReason::Rejected { status, phrase } => {
            let said = format!("{status} {}", printable(phrase, 100).unwrap_or_default());
            match status {
                403 => ("call_forbidden", format!("{said}: the router refused the call — the tenant's toll rules do not allow that number, or you placed the most outside calls allowed this hour; ask your administrator")),
                404 | 484 | 604 => ("call_not_found", format!("{said}: nobody by that name or number in your organisation — check what you typed")),
                408 | 480 => ("call_no_answer", format!("{said}: nobody answered — try again later, or call someone else")),
                486 | 600 => ("call_busy", format!("{said}: busy — try again later")),
                503 => ("call_unavailable", format!("{said}: no line is free for that call now — try again in a minute")),
                _ => ("call_failed", format!("{said}: the call failed — try again; if it repeats, tell your administrator")),
            }
        }
        EndReason::Timeout | EndReason::TransportError => (
            "call_failed",
            "the router did not answer the call — check that it is running, then try again"
                .to_owned(),
        ),
        EndReason::NotSent { detail } | EndReason::MediaFailed { detail } => (
            "call_failed",
            format!(
                "the call could not be placed: {} — try again; if it repeats, restart the app",
                printable(detail, 200).unwrap_or_default()
            ),
        ),
        _ => return None,
    };
    Some(PhoneProblem {
        code: code.to_owned(),
        message,
    })
}

/// The phone while it runs.
struct Running {
    phone: Phone,
    route: Route,
}

/// Where the phone's calls go.
struct Route {
    /// The router's agent API; none on a plain SIP account.
    api: Option<AgentApi>,
    /// The registrar (`sip:host:port`) and SIP domain: calls go there.
    registrar: String,
    domain: String,
}

struct Inner {
    view: watch::Sender<PhoneView>,
    events: broadcast::Sender<PhoneEvent>,
    running: Mutex<Option<Running>>,
    /// The calls this phone placed or took, newest last (at most [`LOCAL_CALLS_MAX`]).
    local: Mutex<Vec<LocalCall>>,
    /// Whether a task follows the consultation at the router.
    following: std::sync::atomic::AtomicBool,
    /// Files in place of the sound devices ([`DeskPhone::use_audio_files`]).
    files: Mutex<Option<AudioFiles>>,
    /// Bumped at each phone started: only the latest phone's events change the view (an
    /// older one, still closing, must not say Off over the new one's registration).
    generation: std::sync::atomic::AtomicU64,
    /// Held while a phone is stopped or started: a start (the app keeping its phone up) and a
    /// stop (Settings → Phone saved) one after the other, never interleaved — a stop's Off
    /// must never land over the registration of a phone started while it was closing the
    /// last one.
    lifecycle: tokio::sync::Mutex<()>,
    /// Closed for good ([`DeskPhone::close`], the app exiting): no phone starts again, even
    /// one whose start was already waiting for `lifecycle`.
    closed: std::sync::atomic::AtomicBool,
    /// A call the person let the other party transfer: its view while the phone calls the
    /// transfer's target (shown again should that call fail, the call being still up).
    referred_from: Mutex<Option<CallView>>,
    /// A plain SIP account's consultation: the phone's own second call, the caller on hold.
    plain_consult: Mutex<Option<PlainConsult>>,
    /// The call hung up because the router it went through restarted ([`DeskPhone::router_up_for`]):
    /// the router closed its record as interrupted, so no wrap-up follows it.
    lost_to_restart: Mutex<Option<CallId>>,
}

/// A consultation on a plain SIP account (no router): the phone holds the caller and calls
/// the person itself; it may then hand the caller over (REFER with Replaces) or mix the
/// three of them ([`Phone::conference`]).
#[derive(Debug, Clone)]
struct PlainConsult {
    /// The consultation call, and the call with the caller.
    call: CallId,
    original: CallId,
    /// Whom (the SIP URI called).
    with: String,
    state: ConsultState,
    /// Complete was asked for: the caller is being handed over (REFER with Replaces).
    completing: bool,
}

/// A WAV file played as the microphone, and one that records what calls carry from the
/// other side (further calls get -2, -3 …), in place of the sound devices.
#[derive(Debug, Clone, Default)]
pub struct AudioFiles {
    pub play: Option<std::path::PathBuf>,
    pub record: Option<std::path::PathBuf>,
}

/// Calls the phone remembers itself (the router's records hold the rest).
pub const LOCAL_CALLS_MAX: usize = 200;

/// The desk's softphone: started with the router's credentials, driven by the window.
#[derive(Clone)]
pub struct DeskPhone {
    inner: Arc<Inner>,
}

impl Default for DeskPhone {
    fn default() -> Self {
        Self::new()
    }
}

/// Which keys the keypad sends (RFC 4733 events 0–15).
pub fn is_dtmf_key(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

impl DeskPhone {
    /// No phone yet ([`RegistrationView::Off`]).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                view: watch::channel(PhoneView::default()).0,
                events: broadcast::channel(256).0,
                running: Mutex::new(None),
                referred_from: Mutex::new(None),
                plain_consult: Mutex::new(None),
                lost_to_restart: Mutex::new(None),
                lifecycle: tokio::sync::Mutex::new(()),
                closed: std::sync::atomic::AtomicBool::new(false),
                local: Mutex::new(Vec::new()),
                following: std::sync::atomic::AtomicBool::new(false),
                files: Mutex::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Headless use and tests: phones started from now on play and record `files` instead
    /// of using the sound devices of Settings → Audio (the window never sets this).
    pub fn use_audio_files(&self, files: AudioFiles) {
        *self.inner.files.lock().unwrap_or_else(|p| p.into_inner()) = Some(files);
    }

    /// The router the phone works through has been up for `uptime` (its link said so, on
    /// connecting and with each message after). A call that began before the router started is
    /// one it no longer carries: a router keeps no call across a restart (it records them as
    /// interrupted), so the call's audio is gone for good. The phone hangs it up now, rather than
    /// after [`crate::call::MEDIA_TIMEOUT`] of silence (30 s), and the window
    /// says why; the router is free to offer the agent a call at once. Calls on a plain SIP
    /// account, and calls younger than the router (with 2 s for the uptime's rounding and the
    /// link's delay), are left alone.
    pub fn router_up_for(&self, uptime: Duration) {
        let started =
            now_ms().saturating_sub(u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX));
        let lost = {
            let v = self.inner.view.borrow();
            v.call
                .as_ref()
                .filter(|_| v.source == PhoneSource::Router)
                .filter(|c| began_before_router(c.ringing_since_unix_ms, started))
                .map(|c| c.id)
        };
        let Some(call) = lost else { return };
        {
            let mut l = self
                .inner
                .lost_to_restart
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *l == Some(call) {
                return;
            }
            *l = Some(call);
        }
        tracing::warn!(
            call,
            uptime_s = uptime.as_secs(),
            "the router restarted during the call and no longer carries it: hanging up"
        );
        if let Some((phone, _)) = self.running() {
            if let Err(e) = phone.hangup(call) {
                tracing::info!(error = %e, "the call the router lost was gone already");
            }
        }
        self.update(|v| {
            v.problem = Some(PhoneProblem {
                code: "router_restarted".into(),
                message: "The call was ended: the routing service restarted, and a restart \
                          loses the calls it carried. Call again if you need to."
                    .into(),
            })
        });
    }

    /// Whether `call` was hung up because the router restarted ([`Self::router_up_for`]): no
    /// wrap-up follows it, here or in the agent's state.
    pub fn lost_to_restart(&self, call: CallId) -> bool {
        *self
            .inner
            .lost_to_restart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            == Some(call)
    }

    /// What the window shows now.
    pub fn view(&self) -> PhoneView {
        self.inner.view.borrow().clone()
    }

    /// Every change of the view.
    pub fn subscribe(&self) -> watch::Receiver<PhoneView> {
        self.inner.view.subscribe()
    }

    /// Every event of the phone, as it happens.
    pub fn subscribe_events(&self) -> broadcast::Receiver<PhoneEvent> {
        self.inner.events.subscribe()
    }

    /// Whether a phone runs (registered or trying to).
    pub fn is_running(&self) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn running(&self) -> Option<(Phone, Option<AgentApi>)> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| (r.phone.clone(), r.route.api.clone()))
    }

    fn update(&self, f: impl FnOnce(&mut PhoneView)) {
        self.inner.view.send_modify(f);
    }

    /// Records `e` as the problem to show, and returns it.
    fn problem(&self, e: DeskError) -> DeskError {
        self.show_problem(&e, true);
        e
    }

    /// Like [`Self::problem`], but a problem already shown stays.
    fn problem_unless_shown(&self, e: DeskError) {
        self.show_problem(&e, false);
    }

    /// Logs `e` and shows it, in place of a problem shown already when `replace`.
    fn show_problem(&self, e: &DeskError, replace: bool) {
        tracing::warn!(code = e.code(), "phone: {e}");
        let p = PhoneProblem::from(e);
        self.update(|v| {
            if replace || v.problem.is_none() {
                v.problem = Some(p);
            }
        });
    }

    fn ok<T>(&self, r: Result<T, DeskError>) -> Result<T, DeskError> {
        match r {
            Ok(v) => {
                self.update(|v| v.problem = None);
                Ok(v)
            }
            Err(e) => Err(self.problem(e)),
        }
    }

    /// Shows that the phone could not start, and why.
    pub fn note_failure(&self, e: &DeskError, reason: String) {
        let p = PhoneProblem::from(e);
        let code = e.code().to_owned();
        self.update(|v| {
            v.registration = RegistrationView::Failing { code, reason };
            v.problem = Some(p);
        });
    }

    /// Gets SIP credentials from the router, starts the phone on the devices of `audio`
    /// and registers. A phone already running is closed first.
    pub async fn start(&self, api: AgentApi, audio: &AudioSettings) -> Result<(), DeskError> {
        self.starting(PhoneSource::Router, self.start_inner(api, audio))
            .await
    }

    /// Closes a phone already running, shows `source` registering, runs `start` and shows
    /// why it failed, if it did.
    async fn starting(
        &self,
        source: PhoneSource,
        start: impl std::future::Future<Output = Result<(), DeskError>>,
    ) -> Result<(), DeskError> {
        let _one_at_a_time = self.inner.lifecycle.lock().await;
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            // The app is exiting: its phone signed off and stays so.
            return Err(DeskError::NotStarted);
        }
        self.stop_phone().await;
        // A new phone numbers its calls from the start again.
        *self
            .inner
            .lost_to_restart
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.update(|v| {
            v.registration = RegistrationView::Registering;
            v.problem = None;
            // The calls of the phone stopped are gone with it.
            v.call = None;
            if v.source != source {
                v.source = source;
                v.agent = None;
                v.wrap_up = None;
                v.consult = None;
            }
        });
        let r = start.await;
        if let Err(e) = &r {
            let reason = e.to_string();
            let code = e.code().to_owned();
            self.update(|v| v.registration = RegistrationView::Failing { code, reason });
        }
        self.ok(r)
    }

    async fn start_inner(&self, api: AgentApi, audio: &AudioSettings) -> Result<(), DeskError> {
        let creds = api.credentials().await?;
        let mut account = Account::new(&creds.username);
        account.server = Some(creds.registrar.clone());
        account.domain = Some(creds.domain.clone());
        account.password = Some(creds.password.into());
        tracing::info!(agent = %creds.agent, registrar = %creds.registrar, "starting the phone with the router's credentials");
        let route = Route {
            api: Some(api),
            registrar: creds.registrar,
            domain: creds.domain,
        };
        self.launch(account, audio, route, Some(creds.agent)).await
    }

    /// Starts the phone on the plain SIP account of Settings → Phone (checked again here)
    /// with its `password`, on the devices of `audio`, and registers; no router is asked.
    /// A phone already running is closed first.
    pub async fn start_plain(
        &self,
        account: &SipAccountSettings,
        password: crate::call::Secret,
        audio: &AudioSettings,
    ) -> Result<(), DeskError> {
        let start = async {
            let a = account
                .clone()
                .validated()
                .map_err(|e| DeskError::sip_account(e.code(), &e))?;
            let transport = match a.transport {
                SipTransport::Udp => Transport::Udp,
                SipTransport::Tcp => Transport::Tcp,
                SipTransport::Tls => Transport::Tls,
            };
            let mut sip = Account::new(&a.user);
            sip.server = Some(a.registrar.clone());
            sip.transport = Some(transport);
            sip.auth_user = a.auth_user.clone();
            sip.display_name = a.display_name.clone();
            sip.password = Some(password);
            let domain = a
                .registrar
                .split_once(':')
                .map_or("", |(_, h)| h)
                .rsplit_once(':')
                .map_or("", |(h, _)| h)
                .to_owned();
            tracing::info!(registrar = %a.registrar, transport = ?a.transport, "starting the phone with the plain SIP account");
            let route = Route {
                api: None,
                registrar: a.registrar,
                domain,
            };
            self.launch(sip, audio, route, None).await
        };
        self.starting(PhoneSource::SipAccount, start).await
    }

    /// Starts the call engine with `account` and follows its events; `route` says where
    /// calls go.
    async fn launch(
        &self,
        account: Account,
        audio: &AudioSettings,
        route: Route,
        agent: Option<String>,
    ) -> Result<(), DeskError> {
        let mut options = PhoneOptions::new(account);
        options.media.devices = Some(call_devices(audio));
        options.media.volume = f32::from(audio.output_volume.min(100)) / 100.0;
        // A transfer asked by a party we do not trust on its word is put to the person.
        options.refer = ReferPolicy::Ask;
        options.ring = Some(ring_of(audio));
        let files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(f) = files {
            options.media.devices = None;
            options.ring = None;
            options.media.play = f.play;
            options.media.record = f.record;
        }
        let (phone, mut events) = Phone::start(options).await?;
        let volume = audio.output_volume.min(100);
        let source = if route.api.is_some() {
            PhoneSource::Router
        } else {
            PhoneSource::SipAccount
        };
        self.update(|v| {
            v.agent = agent;
            v.volume = volume;
            v.source = source;
        });
        let api = route.api.clone();
        let registrar = (source == PhoneSource::SipAccount).then(|| route.registrar.clone());
        *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            phone: phone.clone(),
            route,
        });
        use std::sync::atomic::Ordering;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let me = self.clone();
        tokio::spawn(async move {
            let current = |me: &Self| me.inner.generation.load(Ordering::SeqCst) == generation;
            while let Some(e) = events.recv().await {
                // A replaced phone's late events still reach subscribers (a call it had ends
                // there too) but no longer change the view.
                if current(&me) {
                    me.on_event(&phone, api.as_ref(), registrar.as_deref(), &e)
                        .await;
                }
                let _ = me.inner.events.send(e);
            }
            if current(&me) {
                me.update(|v| {
                    if !matches!(v.registration, RegistrationView::Failing { .. }) {
                        v.registration = RegistrationView::Off;
                    }
                    v.call = None;
                });
            }
        });
        Ok(())
    }

    /// Settings → Audio changed from `was` to `now` while the phone runs: calls (going on,
    /// and to come) move to its devices and volume, and calls ring on its ringing device,
    /// each only where it changed. Nothing where the phone plays and records files
    /// ([`DeskPhone::use_audio_files`]) or none runs (the next one starts on them).
    pub fn use_audio(&self, was: &AudioSettings, now: &AudioSettings) {
        let files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let Some((phone, _)) = self.running().filter(|_| !files) else {
            return;
        };
        let r = (|| {
            if (&was.input_device, &was.output_device) != (&now.input_device, &now.output_device) {
                tracing::info!(
                    input = now.input_device.as_deref().unwrap_or("default"),
                    output = now.output_device.as_deref().unwrap_or("default"),
                    "calls move to the sound devices of Settings → Audio"
                );
                phone.set_devices(Some(call_devices(now)))?;
            }
            if ring_of(was) != ring_of(now) {
                phone.set_ring(Some(ring_of(now)))?;
            }
            if was.output_volume != now.output_volume {
                let volume = now.output_volume.min(100);
                phone.set_volume(f32::from(volume) / 100.0)?;
                self.update(|v| v.volume = volume);
            }
            Ok::<_, CallError>(())
        })();
        if let Err(e) = r {
            let _ = self.problem(e.into());
        }
    }

    /// `api` is none and `plain` names the registrar on a plain SIP account.
    async fn on_event(
        &self,
        phone: &Phone,
        api: Option<&AgentApi>,
        plain: Option<&str>,
        e: &PhoneEvent,
    ) {
        self.plain_consult_news(phone, e);
        match e {
            PhoneEvent::Registration {
                account: 0,
                aor,
                state,
            } => {
                let r = match plain {
                    Some(registrar) => plain_registration_view(aor, registrar, state),
                    None => registration_view(aor, state),
                };
                tracing::info!(%aor, state = ?r, "phone registration");
                self.update(|v| v.registration = r);
            }
            PhoneEvent::Incoming {
                call, from, offer, ..
            } => {
                let busy = self.inner.view.borrow().call.is_some();
                if busy {
                    // One call at a time in this window: the router offers it elsewhere.
                    let _ = phone.reject(*call, 486);
                    return;
                }
                let _ = phone.ring(*call);
                // A plain account's caller, as a person reads it: the From's display name or
                // user part (the router names its callers itself).
                let mut offer = offer.clone();
                if offer.caller.is_none() {
                    offer.caller = crate::notice::caller_of(from);
                }
                let from = printable(from, 256).unwrap_or_default();
                self.new_call(CallView::new(*call, CallStage::Ringing, from, offer));
            }
            PhoneEvent::Calling { call, to } => self.calling(*call, to),
            PhoneEvent::Progress {
                call,
                status: 180 | 183,
                ..
            } => self.update(|v| {
                if let Some(c) = v
                    .call
                    .as_mut()
                    .filter(|c| c.id == *call && c.stage == CallStage::Calling)
                {
                    c.stage = CallStage::Alerting;
                }
            }),
            PhoneEvent::Established { call, media, .. } => {
                let original = self.referred_from().as_ref().map(|c| c.id);
                if let Some(original) = original {
                    // The transfer's target answered: the other party of the original call
                    // ends it (RFC 5589); should it not within 5 s, we do.
                    let (me, phone) = (self.clone(), phone.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        if me
                            .referred_from()
                            .as_ref()
                            .is_some_and(|c| c.id == original)
                        {
                            let _ = phone.hangup(original);
                        }
                    });
                }
                let codec = media.codec.clone();
                self.update(|v| {
                    if let Some(c) = v.call.as_mut().filter(|c| c.id == *call) {
                        c.stage = CallStage::Talking;
                        c.answered_unix_ms = Some(now_ms());
                        c.codec = Some(codec);
                    }
                });
            }
            PhoneEvent::Ended { call, reason, .. } => {
                // The call the person let be transferred, ended once the transfer is done:
                // into the history.
                let gone = {
                    let mut from = self.referred_from();
                    from.take_if(|c| c.id == *call)
                };
                if let Some(c) = gone {
                    self.remember(&c, None);
                    return;
                }
                let ended = {
                    let v = self.inner.view.borrow();
                    v.call.as_ref().filter(|c| c.id == *call).cloned()
                };
                let Some(ended) = ended else { return };
                // A transfer's call that did not connect: the call it was for, still up, is
                // shown again.
                let back = if ended.answered_unix_ms.is_none() {
                    self.referred_from().take()
                } else {
                    None
                };
                // A call the router lost in a restart has no wrap-up: its record is closed.
                let lost = self.lost_to_restart(*call);
                let api = api.filter(|_| {
                    ended.answered_unix_ms.is_some() && ended.offer.queue.is_some() && !lost
                });
                let queue_call = api.is_some();
                let refused = (ended.outgoing && ended.answered_unix_ms.is_none())
                    .then(|| match plain {
                        Some(_) => plain_call_refusal(reason),
                        None => call_refusal(reason),
                    })
                    .flatten();
                if let Some(p) = &refused {
                    tracing::info!(code = %p.code, "the call was not connected: {}", p.message);
                }
                self.remember(&ended, refused.clone());
                self.update(|v| {
                    v.call = back;
                    v.consult = None;
                    if refused.is_some() {
                        v.problem = refused;
                    }
                    if queue_call {
                        v.wrap_up = Some(WrapUpView {
                            queue: ended.offer.queue.clone(),
                            call_record: ended.offer.call_record.clone(),
                            dispositions: Vec::new(),
                            ends_unix_ms: None,
                            after: None,
                        });
                    }
                });
                if let Some(api) = api {
                    // The queue's codes and the wrap-up's end: the router says them for the
                    // agent's last call; once it is over, the state it set.
                    let me = self.clone();
                    let api = api.clone();
                    let record = ended.offer.call_record.clone();
                    tokio::spawn(async move { me.follow_wrap_up(&api, record).await });
                }
            }
            // The other party asks to transfer the call somewhere we do not follow on its
            // word: the window asks the person. Another call's (none is shown): declined.
            PhoneEvent::TransferConsent {
                call,
                target,
                refusal,
            } => {
                let ask = TransferAsk {
                    target: printable(target, 256).unwrap_or_default(),
                    why: printable(&refusal.to_string(), 400).unwrap_or_default(),
                };
                let mut asked = false;
                self.update(|v| {
                    if let Some(c) = v
                        .call
                        .as_mut()
                        .filter(|c| c.id == *call && c.stage == CallStage::Talking)
                    {
                        c.transfer_ask = Some(ask);
                        asked = true;
                    }
                });
                if !asked {
                    let _ = phone.decline_transfer(*call);
                }
            }
            PhoneEvent::TransferRefused {
                call,
                target,
                refusal,
            } => {
                let p = (*refusal != ReferRefusal::Declined).then(|| PhoneProblem {
                    code: "transfer_refused".into(),
                    message: printable(
                        &format!(
                            "the other party asked to transfer the call to {target}; not followed: {refusal}"
                        ),
                        400,
                    )
                    .unwrap_or_default(),
                });
                self.update(|v| {
                    if let Some(c) = v.call.as_mut().filter(|c| c.id == *call) {
                        c.transfer_ask = None;
                        if p.is_some() {
                            v.problem = p;
                        }
                    }
                });
            }
            // Following a transfer the person accepted: the new call is shown (the one it
            // was for kept aside until it ends).
            PhoneEvent::TransferCalling {
                call,
                new_call,
                target,
            } => {
                let current = self.inner.view.borrow().call.clone();
                if let Some(mut original) = current.filter(|c| c.id == *call) {
                    tracing::info!(call, new_call, "following the transfer the person accepted");
                    original.transfer_ask = None;
                    *self.referred_from() = Some(original);
                    self.calling(*new_call, target);
                }
            }
            // Our blind transfer (a plain SIP account's): the other party refused it, or
            // could not reach the target; the call stays with us. Done, our leg ends.
            PhoneEvent::TransferProgress {
                call,
                status,
                final_: true,
            } if !(200..300).contains(status) => {
                let p = PhoneProblem {
                    code: "transfer_not_done".into(),
                    message: format!(
                        "the transfer did not go through ({status}{}): the caller is still with you — try another number, or transfer again",
                        match status {
                            603 => " Decline: the other party would not be transferred",
                            486 | 600 => " Busy",
                            404 => " Not Found: nobody by that number",
                            408 | 480 => ": nobody answered",
                            _ => "",
                        }
                    ),
                };
                self.update(|v| {
                    if v.call.as_ref().is_some_and(|c| c.id == *call) {
                        v.problem = Some(p);
                    }
                });
            }
            PhoneEvent::TransferFailed {
                call,
                target,
                error,
            } => {
                let p = PhoneProblem {
                    code: "transfer_failed".into(),
                    message: printable(&format!("cannot call {target}: {error}"), 400)
                        .unwrap_or_default(),
                };
                self.update(|v| {
                    if v.call.as_ref().is_some_and(|c| c.id == *call) {
                        v.problem = Some(p);
                    }
                });
            }
            // A call gone silent (its other side, or the router, gone without a BYE): the
            // engine hangs up; the window says why the call ended.
            PhoneEvent::MediaError { call, kind, error } if kind == "no_audio" => {
                let current = self
                    .inner
                    .view
                    .borrow()
                    .call
                    .as_ref()
                    .is_some_and(|c| c.id == *call);
                if current {
                    let p = PhoneProblem {
                        code: "no_audio".into(),
                        message: error.clone(),
                    };
                    self.update(|v| v.problem = Some(p));
                }
            }
            PhoneEvent::Device(r) => self.device_news(crate::audio::DeviceNotice::from(r)),
            // The ring's device: only what went wrong (its opening says nothing of the call's).
            PhoneEvent::RingDevice(r) => {
                let n = crate::audio::DeviceNotice::from(r);
                if n.kind != "opened" {
                    self.device_news(n);
                }
            }
            PhoneEvent::Stopped { error } => {
                self.inner
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let reason = match error {
                    Some(e) => format!("the phone stopped: {e} — Connect again"),
                    None => "the phone stopped".into(),
                };
                self.update(|v| {
                    v.registration = RegistrationView::Failing {
                        code: "phone_stopped".into(),
                        reason,
                    };
                    v.call = None;
                });
            }
            _ => {}
        }
    }

    /// Fills in the wrap-up of call record `record` from the router: the queue's codes and
    /// when the wrap-up ends; at its end, the state the router set (asked again a few times
    /// should the router be late). Stops when the wrap-up is no longer shown.
    async fn follow_wrap_up(&self, api: &AgentApi, record: Option<String>) {
        let shown = |me: &Self| {
            me.inner
                .view
                .borrow()
                .wrap_up
                .as_ref()
                .is_some_and(|w| w.call_record == record)
        };
        let set = |me: &Self, f: &dyn Fn(&mut WrapUpView)| {
            me.update(|v| {
                if let Some(w) = v.wrap_up.as_mut().filter(|w| w.call_record == record) {
                    f(w);
                }
            })
        };
        // The router may not have seen the call end yet (our BYE and this read cross): while
        // it still has the agent on the call or ringing, ask again, for 2 s at most.
        let mut st = None;
        for _ in 0..10 {
            match api.status().await {
                Ok(s) if matches!(s.state, AgentState::OnCall | AgentState::Ringing) => {
                    st = Some(s);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(s) => {
                    st = Some(s);
                    break;
                }
                Err(e) => {
                    // Why the call ended (no audio: the router went away mid-call) stays in
                    // view; that the router cannot be reached the status bar says already.
                    self.problem_unless_shown(e);
                    return;
                }
            }
        }
        let Some(st) = st else { return };
        if matches!(st.state, AgentState::OnCall | AgentState::Ringing) {
            // On another call already (or the router never said): nothing to follow.
            set(self, &|w| w.dispositions = st.dispositions.clone());
            return;
        }
        let ends = wrap_up_ends(&st, now_ms());
        set(self, &|w| {
            w.dispositions = st.dispositions.clone();
            w.ends_unix_ms = ends;
            w.after = (st.state != AgentState::WrapUp).then_some(st.state);
        });
        let Some(ends) = ends else { return };
        for attempt in 0..5u64 {
            let wait = ends.saturating_sub(now_ms()) + 300 + attempt * 1000;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if !shown(self) {
                return;
            }
            match api.status().await {
                Ok(st) if st.state != AgentState::WrapUp => {
                    set(self, &|w| w.after = Some(st.state));
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read the state after wrap-up"),
            }
        }
    }

    /// The call kept aside while a transfer the person accepted is being followed.
    fn plain_consult(&self) -> std::sync::MutexGuard<'_, Option<PlainConsult>> {
        self.inner
            .plain_consult
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Shows the plain account's consultation (or none) as the view's.
    fn show_plain_consult(&self) {
        let c = self.plain_consult().clone();
        self.update(|v| {
            v.consult = c.map(|c| ConsultStatus {
                conference: if c.state == ConsultState::Conference {
                    vec![c.with.clone()]
                } else {
                    Vec::new()
                },
                with: c.with,
                state: c.state,
                queue: None,
            })
        });
    }

    /// What the phone says of a plain account's consultation: answered, ended (the caller
    /// resumed, and a refusal said), or the caller's call ended (the consultation with it).
    fn plain_consult_news(&self, phone: &Phone, e: &PhoneEvent) {
        let Some(c) = self.plain_consult().clone() else {
            return;
        };
        match e {
            PhoneEvent::Established { call, .. } if *call == c.call => {
                if let Some(pc) = self.plain_consult().as_mut() {
                    pc.state = ConsultState::Talking;
                }
                self.show_plain_consult();
            }
            PhoneEvent::Ended { call, reason, .. } if *call == c.call => {
                *self.plain_consult() = None;
                self.show_plain_consult();
                let refused = (c.state == ConsultState::Ringing)
                    .then(|| plain_call_refusal(reason))
                    .flatten();
                if let Some(p) = refused {
                    self.update(|v| v.problem = Some(p));
                }
                // Back to the caller (still on hold unless the two were in a conference). Not
                // while the caller is being handed over: the consultation's end is then the
                // transfer working (the person's phone ends it, replaced), and the caller's
                // call ends with the transfer's answer — resumed once the transfer is
                // refused, or if the call is still here, held, 5 s on.
                let (me, phone) = (self.clone(), phone.clone());
                let original = c.original;
                let completing = c.completing;
                tokio::spawn(async move {
                    if completing {
                        let mut view = me.inner.view.subscribe();
                        let settled = view.wait_for(|v| {
                            v.call.as_ref().map(|c| c.id) != Some(original)
                                || v.problem
                                    .as_ref()
                                    .is_some_and(|p| p.code == "transfer_not_done")
                        });
                        let _ = tokio::time::timeout(Duration::from_secs(5), settled).await;
                    }
                    let up = me
                        .inner
                        .view
                        .borrow()
                        .call
                        .as_ref()
                        .is_some_and(|v| v.id == original && v.held);
                    if up {
                        match phone.hold(original, false).await {
                            Ok(()) => me.update(|v| {
                                if let Some(v) = v.call.as_mut().filter(|v| v.id == original) {
                                    v.held = false;
                                }
                            }),
                            Err(e) => {
                                tracing::info!(call = original, "could not resume the caller: {e}")
                            }
                        }
                    }
                });
            }
            // The hand-over was refused (by the caller's phone, or the person's): the
            // consultation goes on, and ending it now takes the caller off hold at once.
            PhoneEvent::TransferProgress {
                call,
                status,
                final_: true,
            } if *call == c.original && !(200..300).contains(status) => {
                self.mark_completing(c.call, false);
            }
            // The caller's call is over (hung up, or handed to the person): the consultation
            // goes with it — nothing of it may stay up unseen.
            PhoneEvent::Ended { call, .. } if *call == c.original => {
                *self.plain_consult() = None;
                self.show_plain_consult();
                let _ = phone.hangup(c.call);
            }
            _ => {}
        }
    }

    fn referred_from(&self) -> std::sync::MutexGuard<'_, Option<CallView>> {
        self.inner
            .referred_from
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `call` to `to` (a SIP URI) as the call placed, from its start.
    fn calling(&self, call: CallId, to: &str) {
        let offer = RouterOffer {
            dialled: Some(uri_user(to)),
            ..RouterOffer::default()
        };
        self.new_call(CallView::new(
            call,
            CallStage::Calling,
            String::new(),
            offer,
        ));
        self.update(|v| v.problem = None);
    }

    /// Shows `view` as the call, and no wrap-up.
    fn new_call(&self, view: CallView) {
        self.update(|v| {
            v.call = Some(view);
            v.wrap_up = None;
            v.device = None;
        });
    }

    /// Shows what happened to a sound device: a failure until it is over. A device opened
    /// after one was lost in that direction says what took over; one opened otherwise (the
    /// person chose another) ends a notice of its direction.
    fn device_news(&self, n: crate::audio::DeviceNotice) {
        if n.kind != "opened" {
            tracing::info!(kind = %n.kind, direction = %n.direction, device = ?n.device, wanted = ?n.wanted, reason = ?n.reason, "sound device");
        }
        self.update(|v| {
            let same = v.device.as_ref().filter(|c| c.direction == n.direction);
            v.device = match (same, n.kind.as_str()) {
                (Some(c), "opened") if c.kind == "lost" && c.device.is_none() => {
                    Some(crate::audio::DeviceNotice {
                        device: n.device,
                        ..c.clone()
                    })
                }
                (Some(_), "opened") => None,
                // Nothing of that direction was wrong.
                (None, "opened") => return,
                _ => Some(n),
            };
        });
    }

    /// Keeps an ended call in the phone's own history.
    fn remember(&self, c: &CallView, problem: Option<PhoneProblem>) {
        let mut local = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        let n = local.last().map_or(1, |l| l.n + 1);
        let who = if c.outgoing {
            c.offer.dialled.clone()
        } else {
            c.offer.caller.clone()
        }
        .or_else(|| (!c.from.is_empty()).then(|| uri_user(c.from.trim_matches(['<', '>']))))
        .unwrap_or_default();
        local.push(LocalCall {
            n,
            started_unix_ms: c.ringing_since_unix_ms,
            answered_unix_ms: c.answered_unix_ms,
            ended_unix_ms: now_ms(),
            outgoing: c.outgoing,
            who,
            call_record: c.offer.call_record.clone(),
            queue: c.offer.queue.clone(),
            problem,
        });
        if local.len() > LOCAL_CALLS_MAX {
            local.remove(0);
        }
    }

    /// The router's agent API, for `what` (a router feature).
    fn api(&self, what: &'static str) -> Result<AgentApi, DeskError> {
        self.running()
            .ok_or(DeskError::NotStarted)?
            .1
            .ok_or(DeskError::RouterOnly(what))
    }

    /// Whom and where the agent may transfer or consult now (for the picker; a failure is
    /// returned, not kept as the view's problem).
    pub async fn targets(&self) -> Result<TransferTargets, DeskError> {
        self.api("the transfer picker")?.targets().await
    }

    /// The agent's state at the router the phone uses.
    pub async fn router_status(&self) -> Result<AgentStatus, DeskError> {
        self.api("the agent's state at the router")?.status().await
    }

    /// The supervisors' board of the router the phone uses.
    pub async fn board(&self) -> Result<SupervisorBoard, DeskError> {
        self.api("the supervisors' board")?.board().await
    }

    /// From the board: agent `upn` Ready, or Not ready for `reason`.
    pub async fn set_agent_state(
        &self,
        upn: &str,
        ready: bool,
        reason: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        self.api("the supervisors' board")?
            .set_agent_state(upn, ready, reason)
            .await
    }

    /// From the board: listen in on agent `upn`'s call, whisper or barge in (`mode`), or
    /// stop; this phone is rung. The router's step.
    pub async fn monitor(&self, upn: &str, mode: Option<MonitorMode>) -> Result<String, DeskError> {
        self.api("the supervisors' board")?.monitor(upn, mode).await
    }

    /// The agent's history: the router's records of their calls and the phone's own calls the
    /// router has none of, newest first, at most `limit`. A router that cannot be asked fails
    /// the whole list (its error says why; the window shows it).
    pub async fn history(&self, limit: u32) -> Result<Vec<HistoryEntry>, DeskError> {
        let (_, api) = self.running().ok_or(DeskError::NotStarted)?;
        let me = self.view().agent.unwrap_or_default();
        // On a plain SIP account the phone's own calls are all there is.
        let records = match api {
            Some(api) => api.my_calls(limit).await?,
            None => Vec::new(),
        };
        let local = self
            .inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(merge_history(&me, &records, &local, limit as usize))
    }

    /// A blind transfer of the call up to `target` (a queue, attendant, expert group or
    /// colleague, or an outside number where the toll rules allow); the router hangs up our
    /// leg. On a plain SIP account, `target` is a number or address as in the dial box, and
    /// the phone asks the other party to call it (REFER); our leg ends once they say it
    /// worked, and a refusal shows as the view's problem with the call still up.
    pub async fn transfer(&self, target: &str) -> Result<String, DeskError> {
        let r = async {
            let Some((phone, registrar)) = self.plain()? else {
                let api = self.api("a transfer")?;
                self.talking()?;
                return api.transfer(&transfer_target(target)?).await;
            };
            let call = self.talking()?;
            if self.plain_consult().is_some() {
                return Err(DeskError::Busy);
            }
            let uri = plain_dial_uri(target, &registrar)?;
            phone.transfer(call, &uri).await?;
            Ok(format!("asked the other party to call {uri}"))
        }
        .await;
        self.ok(r)
    }

    /// On a plain SIP account: its phone and registrar; `None` on the router's.
    fn plain(&self) -> Result<Option<(Phone, String)>, DeskError> {
        let guard = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let r = guard.as_ref().ok_or(DeskError::NotStarted)?;
        Ok(r.route
            .api
            .is_none()
            .then(|| (r.phone.clone(), r.route.registrar.clone())))
    }

    /// Consults `target` (a colleague, an expert group, or an outside number where the toll
    /// rules allow) while the caller waits; the consultation's state follows in the view.
    /// On a plain SIP account, `target` is a number or address as in the dial box: the phone
    /// holds the caller and calls it.
    pub async fn consult(&self, target: &str) -> Result<String, DeskError> {
        let r = async {
            if let Some((phone, registrar)) = self.plain()? {
                let call = self.talking()?;
                if self.plain_consult().is_some() {
                    return Err(DeskError::Busy);
                }
                let uri = plain_dial_uri(target, &registrar)?;
                let held = self
                    .inner
                    .view
                    .borrow()
                    .call
                    .as_ref()
                    .is_some_and(|c| c.held);
                if !held {
                    phone.hold(call, true).await?;
                    self.update(|v| {
                        if let Some(c) = v.call.as_mut().filter(|c| c.id == call) {
                            c.held = true;
                        }
                    });
                }
                let consult = phone.consult(call, &uri, false).await?;
                tracing::info!(
                    call,
                    consult,
                    held,
                    "consulting on the plain account, the caller on hold"
                );
                *self.plain_consult() = Some(PlainConsult {
                    call: consult,
                    original: call,
                    with: uri.clone(),
                    state: ConsultState::Ringing,
                    completing: false,
                });
                self.show_plain_consult();
                return Ok(format!("consulting {uri}, the caller on hold"));
            }
            let api = self.api("a consultation")?;
            self.talking()?;
            let step = api.consult(&transfer_target(target)?).await?;
            self.follow_consult(api);
            Ok(step)
        }
        .await;
        self.ok(r)
    }

    /// Completes, conferences or cancels the consultation.
    pub async fn consult_step(&self, step: ConsultStep) -> Result<String, DeskError> {
        let r = async {
            if let Some((phone, _)) = self.plain()? {
                return self.plain_consult_step(&phone, step).await;
            }
            let api = self.api("a consultation")?;
            let done = api.consult_step(step).await?;
            if let Ok(st) = api.status().await {
                self.update(|v| v.consult = st.consult);
            }
            Ok(done)
        }
        .await;
        self.ok(r)
    }

    /// A plain SIP account's consultation step: hand the caller to the person (REFER with
    /// Replaces, RFC 3891: our two calls end once it worked), the three of us in a
    /// conference mixed by the phone, or the person hung up (back to the caller).
    async fn plain_consult_step(
        &self,
        phone: &Phone,
        step: ConsultStep,
    ) -> Result<String, DeskError> {
        let c = self.plain_consult().clone().ok_or(DeskError::NoSuchCall)?;
        match step {
            ConsultStep::Complete => {
                if c.state == ConsultState::Ringing {
                    return Err(DeskError::NoSuchCall);
                }
                // Marked before the REFER goes: the consultation's end may come before its
                // answer does. A refusal of an earlier attempt is no longer news.
                self.mark_completing(c.call, true);
                self.update(|v| {
                    if v.problem
                        .as_ref()
                        .is_some_and(|p| p.code == "transfer_not_done")
                    {
                        v.problem = None;
                    }
                });
                if let Err(e) = phone.complete_transfer(c.call).await {
                    self.mark_completing(c.call, false);
                    return Err(e.into());
                }
                Ok(format!("handing the caller to {}", c.with))
            }
            ConsultStep::Conference => {
                if c.state != ConsultState::Talking {
                    return Err(DeskError::NoSuchCall);
                }
                phone.conference(&[c.original, c.call]).await?;
                if let Some(pc) = self.plain_consult().as_mut() {
                    pc.state = ConsultState::Conference;
                }
                self.update(|v| {
                    if let Some(v) = v.call.as_mut().filter(|v| v.id == c.original) {
                        v.held = false;
                    }
                });
                self.show_plain_consult();
                Ok(format!("a conference with {} and the caller", c.with))
            }
            ConsultStep::Cancel => {
                phone.hangup(c.call)?;
                Ok(format!("ended the consultation with {}", c.with))
            }
        }
    }

    /// Marks the plain account's consultation `call` as being completed (or no longer).
    fn mark_completing(&self, call: CallId, on: bool) {
        if let Some(pc) = self.plain_consult().as_mut().filter(|pc| pc.call == call) {
            pc.completing = on;
        }
    }

    /// The call up and talking.
    fn talking(&self) -> Result<CallId, DeskError> {
        match &self.inner.view.borrow().call {
            Some(c) if c.stage == CallStage::Talking => Ok(c.id),
            _ => Err(DeskError::NoSuchCall),
        }
    }

    /// Follows `GET /v1/agents/me`'s consultation into the view until it is over (or the call
    /// is), twice a second.
    fn follow_consult(&self, api: AgentApi) {
        use std::sync::atomic::Ordering;
        if self.inner.following.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            // The router has the consultation when its answer came: it shows from the start.
            loop {
                match api.status().await {
                    Ok(st) => {
                        let over = st.consult.is_none();
                        me.update(|v| v.consult = st.consult);
                        if over {
                            break;
                        }
                    }
                    Err(e) => tracing::info!(code = e.code(), "the consultation's state: {e}"),
                }
                if me.inner.view.borrow().call.is_none() {
                    me.update(|v| v.consult = None);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            me.inner.following.store(false, Ordering::SeqCst);
        });
    }

    fn current_call(&self, call: CallId) -> Result<Phone, DeskError> {
        let (phone, _) = self.running().ok_or(DeskError::NotStarted)?;
        if self.inner.view.borrow().call.as_ref().map(|c| c.id) != Some(call) {
            return Err(DeskError::NoSuchCall);
        }
        Ok(phone)
    }

    /// Calls `typed` — a number, or a colleague, queue, attendant or expert group by name —
    /// through the router (which answers for the tenant's toll rules), or on a plain SIP
    /// account a number or address through its registrar; the call shows in the view from
    /// [`CallStage::Calling`] on, and a refusal as its problem when it ends.
    pub async fn dial(&self, typed: &str) -> Result<CallId, DeskError> {
        let r = async {
            let (phone, registrar, domain, plain) = {
                let guard = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
                let r = guard.as_ref().ok_or(DeskError::NotStarted)?;
                (
                    r.phone.clone(),
                    r.route.registrar.clone(),
                    r.route.domain.clone(),
                    r.route.api.is_none(),
                )
            };
            let uri = if plain {
                plain_dial_uri(typed, &registrar)?
            } else {
                dial_uri(&dial_target(typed, &domain)?, &registrar)
            };
            {
                let v = self.inner.view.borrow();
                if v.call.is_some() {
                    return Err(DeskError::Busy);
                }
            }
            Ok(phone.dial(&uri).await?)
        }
        .await;
        self.ok(r)
    }

    /// Answers the call ringing.
    pub async fn answer(&self, call: CallId) -> Result<(), DeskError> {
        let r = async {
            let phone = self.current_call(call)?;
            self.update(|v| {
                if let Some(c) = v.call.as_mut() {
                    c.stage = CallStage::Answering;
                }
            });
            phone.answer(call).await?;
            Ok(())
        }
        .await;
        self.ok(r)
    }

    /// Refuses the call ringing (603 Decline: the router offers it to someone else).
    pub fn reject(&self, call: CallId) -> Result<(), DeskError> {
        let r = self
            .current_call(call)
            .and_then(|p| p.reject(call, 603).map_err(DeskError::from));
        self.ok(r)
    }

    /// Follows (`follow`) or declines the transfer the other party of `call` asked for
    /// ([`CallView::transfer_ask`]).
    pub fn answer_transfer(&self, call: CallId, follow: bool) -> Result<(), DeskError> {
        let r = self.current_call(call).and_then(|p| {
            let asked = self
                .inner
                .view
                .borrow()
                .call
                .as_ref()
                .is_some_and(|c| c.transfer_ask.is_some());
            if !asked {
                return Err(DeskError::NoTransferAsked);
            }
            if follow {
                p.accept_transfer(call)?;
            } else {
                p.decline_transfer(call)?;
            }
            self.update(|v| {
                if let Some(c) = v.call.as_mut() {
                    c.transfer_ask = None;
                }
            });
            Ok(())
        });
        self.ok(r)
    }

    /// Hangs up the call (or stops it ringing).
    pub fn hangup(&self, call: CallId) -> Result<(), DeskError> {
        let r = self
            .current_call(call)
            .and_then(|p| p.hangup(call).map_err(DeskError::from));
        self.ok(r)
    }

    /// Puts the call on hold, or resumes it.
    pub async fn hold(&self, call: CallId, on: bool) -> Result<(), DeskError> {
        let r = async {
            let phone = self.current_call(call)?;
            phone.hold(call, on).await?;
            self.update(|v| {
                if let Some(c) = v.call.as_mut() {
                    c.held = on;
                }
            });
            Ok(())
        }
        .await;
        self.ok(r)
    }

    /// Mutes the microphone, or not.
    pub fn mute(&self, on: bool) -> Result<(), DeskError> {
        let r = self
            .running()
            .ok_or(DeskError::NotStarted)
            .and_then(|(p, _)| p.mute(on).map_err(DeskError::from));
        if r.is_ok() {
            self.update(|v| {
                if let Some(c) = v.call.as_mut() {
                    c.muted = on;
                }
            });
        }
        self.ok(r)
    }

    /// The call volume, 0–100 %.
    pub fn set_volume(&self, percent: u8) -> Result<(), DeskError> {
        let r = self
            .running()
            .ok_or(DeskError::NotStarted)
            .and_then(|(p, _)| {
                p.set_volume(f32::from(percent.min(100)) / 100.0)
                    .map_err(DeskError::from)
            });
        if r.is_ok() {
            self.update(|v| v.volume = percent.min(100));
        }
        self.ok(r)
    }

    /// The call's audio figures so far (loss, jitter, estimated MOS …).
    pub async fn quality(&self, call: CallId) -> Result<crate::call::CallQuality, DeskError> {
        let phone = self.current_call(call)?;
        // Not recorded as the view's problem: the window asks every few seconds, and a call
        // that carries no audio yet is no fault.
        Ok(phone.quality(call).await?)
    }

    /// Sends a keypad key into the call.
    pub async fn dtmf(&self, call: CallId, key: char) -> Result<(), DeskError> {
        let r = async {
            if !is_dtmf_key(key) {
                return Err(DeskError::BadDigit(key));
            }
            let phone = self.current_call(call)?;
            phone.send_dtmf(call, key).await?;
            Ok(())
        }
        .await;
        self.ok(r)
    }

    /// Ready or Not ready at the router (when the phone runs; otherwise nothing to say).
    pub async fn set_state(&self, ready: bool, reason: Option<String>) -> Result<(), DeskError> {
        // No router to tell on a plain SIP account.
        let Some((_, Some(api))) = self.running() else {
            return Ok(());
        };
        let r = api.set_state(ready, reason).await.map(|_| ());
        self.ok(r)
    }

    /// Ends the wrap-up at the router with `disposition` and `notes` (notes the router would
    /// refuse are refused here, before anything is sent).
    pub async fn finish_wrap_up(
        &self,
        disposition: Option<String>,
        notes: Option<String>,
    ) -> Result<(), DeskError> {
        let r = async {
            let api = self.api("the wrap-up")?;
            if self.inner.view.borrow().wrap_up.is_none() {
                return Err(DeskError::NoWrapUp);
            }
            let d = disposition
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty());
            let notes = wrap_up_notes(notes.as_deref())?;
            api.wrap_up(d, notes.as_deref()).await?;
            self.update(|v| v.wrap_up = None);
            Ok(())
        }
        .await;
        self.ok(r)
    }

    async fn stop_phone(&self) {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = running {
            // Its late events (its calls ending, its Stopped) no longer change the view: the
            // phone is stopped on purpose, and the view says what comes next (Off, or the
            // next phone registering).
            self.inner
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Its calls end with it: into the history, as a call ended by the phone's own
            // events would have been (a call kept aside for a transfer first).
            let aside = self.referred_from().take();
            let shown = self.inner.view.borrow().call.clone();
            for c in aside.iter().chain(shown.iter()) {
                self.remember(c, None);
            }
            let _ = r.phone.hangup_all();
            let _ = tokio::time::timeout(Duration::from_secs(10), r.phone.close()).await;
            if let Some(api) = r.route.api {
                if let Err(e) = api.sign_off().await {
                    tracing::info!(error = %e, "cannot sign off at the router");
                }
            }
        }
    }

    /// Hangs up, unregisters and signs off at the router (the app closes, the person signs
    /// out).
    pub async fn stop(&self) {
        let _one_at_a_time = self.inner.lifecycle.lock().await;
        self.stop_phone().await;
        self.update(|v| {
            v.registration = RegistrationView::Off;
            v.call = None;
            v.wrap_up = None;
            v.consult = None;
        });
    }

    /// [`DeskPhone::stop`] for good, as the app exits: a start already asked for (the app
    /// keeping its phone up, which saw it stop) no longer starts it again after the
    /// sign-off, nor does any later one.
    pub async fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app exiting closes the phone for good: a start asked for meanwhile (the task that
    /// keeps the phone up, seeing it stop) starts nothing, and the view stays Off.
    #[tokio::test]
    async fn a_closed_phone_starts_no_more() {
        let desk = DeskPhone::new();
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A start that waits for the lifecycle while the close runs.
        let held = desk.inner.lifecycle.lock().await;
        let waiting = {
            let (desk, ran) = (desk.clone(), ran.clone());
            tokio::spawn(async move {
                desk.starting(PhoneSource::Router, async {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let closing = {
            let desk = desk.clone();
            tokio::spawn(async move { desk.close().await })
        };
        tokio::task::yield_now().await;
        drop(held);
        closing.await.unwrap();
        let r = waiting.await.unwrap();
        assert!(matches!(r, Err(DeskError::NotStarted)), "{r:?}");
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "nothing started"
        );
        assert!(matches!(desk.view().registration, RegistrationView::Off));
        // Nor does a later one.
        let r = desk.starting(PhoneSource::Router, async { Ok(()) }).await;
        assert!(matches!(r, Err(DeskError::NotStarted)), "{r:?}");
    }

    #[test]
    fn a_refusal_says_the_problems_detail() {
        let body = r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"mallory@contoso.example is not an agent of any tenant","instance":"/v1/agents/me/sip-credentials"}"#;
        assert_eq!(
            refusal(404, body, true),
            "404 mallory@contoso.example is not an agent of any tenant"
        );
        // A detail with terminal escapes or line breaks is said without them.
        let body = r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"no\u001b[2J\r\nrole"}"#;
        assert_eq!(refusal(403, body, false), "403 no[2Jrole");
    }

    #[test]
    fn a_refusal_without_a_detail_says_what_to_do() {
        assert_eq!(
            refusal(502, "<html>", false),
            "502 Bad Gateway — see the router's logs"
        );
        let r = refusal(404, "", true);
        assert!(
            r.starts_with("404 Not Found — check the agent's UPN"),
            "{r}"
        );
        let r = refusal(404, "", false);
        assert!(r.contains("signed-in account is an agent"), "{r}");
        let r = refusal(
            401,
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":null}"#,
            false,
        );
        assert_eq!(r, "401 Unauthorized — sign in again");
    }

    #[test]
    fn request_bodies() {
        fn v(body: &impl Serialize) -> serde_json::Value {
            serde_json::to_value(body).unwrap()
        }
        assert_eq!(
            v(&WrapUpRequest {
                agent: None,
                disposition: Some("resolved"),
                notes: Some("Call back Monday")
            }),
            serde_json::json!({"disposition": "resolved", "notes": "Call back Monday"})
        );
        assert_eq!(
            v(&WrapUpRequest {
                agent: Some("adele@contoso.example"),
                disposition: None,
                notes: None
            }),
            serde_json::json!({"agent": "adele@contoso.example"})
        );
        assert_eq!(
            v(&state_change(None, true, Some("ignored".into()))),
            serde_json::json!({"agent": null, "state": "ready", "reason": null})
        );
        assert_eq!(
            v(&state_change(
                Some("adele@contoso.example".into()),
                false,
                Some("lunch".into())
            )),
            serde_json::json!({"agent": "adele@contoso.example", "state": "not_ready", "reason": "lunch"})
        );
    }

    #[test]
    fn registration_reads_for_a_person_and_keeps_no_control_characters() {
        let aor = "sip:agent-x@contoso.example";
        assert_eq!(
            registration_view(
                aor,
                &RegistrationState::Registered {
                    expires: 300,
                    bindings: vec![]
                }
            ),
            RegistrationView::Registered { aor: aor.into() }
        );
        let RegistrationView::Failing { code, reason } = registration_view(
            aor,
            &RegistrationState::Refused {
                status: 403,
                reason: "Forbidden\r\nX: y".into(),
            },
        ) else {
            panic!("a refusal is a failure")
        };
        assert_eq!(code, "registrar_refused");
        assert!(reason.contains("403 ForbiddenX: y"), "{reason}");
        assert!(!reason.contains('\n'));
    }

    #[test]
    fn what_is_typed_to_call_becomes_a_user_the_router_reads() {
        let d = "contoso.example";
        assert_eq!(
            dial_target(" +1 (555) 123-4567 ", d).unwrap(),
            "+15551234567"
        );
        assert_eq!(
            dial_target("tel:+44.20.7123.4567", d).unwrap(),
            "+442071234567"
        );
        assert_eq!(dial_target("0123", d).unwrap(), "0123");
        assert_eq!(dial_target("MeganB", d).unwrap(), "MeganB");
        assert_eq!(dial_target("MeganB@Contoso.example", d).unwrap(), "MeganB");
        assert_eq!(dial_target("sip:escalations", d).unwrap(), "escalations");
        for bad in [
            "",
            "  ",
            "+",
            "1+2",
            "++15551234567",
            "1234567890123456",
            "megan@fabrikam.example",
            "megan b",
            "a;b",
            "x\r\nVia: evil",
            "<sip:x>",
        ] {
            let e = dial_target(bad, d).unwrap_err();
            assert_eq!(e.code(), "invalid_target", "{bad:?}");
        }
        assert!(!DeskError::BadTarget("x\ny".into()).to_string().is_empty());
        assert_eq!(
            dial_uri("alex", "sip:127.0.0.1:5070"),
            "sip:alex@127.0.0.1:5070"
        );
        assert_eq!(
            dial_uri("+15551234567", "sip:router.contoso.example;transport=udp"),
            "sip:+15551234567@router.contoso.example"
        );
        assert_eq!(uri_user("sip:alex@127.0.0.1:5070"), "alex");
    }

    #[test]
    fn a_plain_accounts_registration_says_who_refused_and_what_to_check() {
        let aor = "sip:alice@sip.example.com";
        let registrar = "sip:sip.example.com:5060";
        let RegistrationView::Failing { code, reason } = plain_registration_view(
            aor,
            registrar,
            &RegistrationState::Refused {
                status: 403,
                reason: "Forbidden".into(),
            },
        ) else {
            panic!("a refusal is a failure")
        };
        assert_eq!(code, "sip_account_refused");
        assert_eq!(reason, "SIP registration refused by sip:sip.example.com:5060: 403 Forbidden — check the user name, authentication user and password in Settings → Phone");
        let RegistrationView::Failing { code, reason } =
            plain_registration_view(aor, registrar, &RegistrationState::Unreachable)
        else {
            panic!("no answer is a failure")
        };
        assert_eq!(code, "sip_account_unreachable");
        assert!(reason.contains(registrar) && reason.contains("transport in Settings → Phone"));
        assert_eq!(
            plain_registration_view(
                aor,
                registrar,
                &RegistrationState::Registered {
                    expires: 60,
                    bindings: vec![]
                }
            ),
            RegistrationView::Registered { aor: aor.into() }
        );
    }

    #[test]
    fn what_is_typed_on_a_plain_account_becomes_a_sip_uri() {
        let r = "sip:pbx.example.com:5060";
        assert_eq!(
            plain_dial_uri("1001", r).unwrap(),
            "sip:1001@pbx.example.com:5060"
        );
        assert_eq!(
            plain_dial_uri(" +1 (555) 123-4567 ", r).unwrap(),
            "sip:+15551234567@pbx.example.com:5060"
        );
        assert_eq!(
            plain_dial_uri("bob@example.com", r).unwrap(),
            "sip:bob@example.com"
        );
        assert_eq!(
            plain_dial_uri("sip:bob@127.0.0.1:5070", r).unwrap(),
            "sip:bob@127.0.0.1:5070"
        );
        assert_eq!(
            plain_dial_uri("1001", "sips:pbx.example.com:5061").unwrap(),
            "sips:1001@pbx.example.com:5061"
        );
        assert_eq!(
            plain_dial_uri("sips:bob@example.com", r).unwrap(),
            "sips:bob@example.com"
        );
        for bad in [
            "",
            "bob@",
            "@example.com",
            "bob smith",
            "bob@exa mple.com",
            "b<o>b@x",
            "x\r\nVia: evil@h",
            "a;b@h",
        ] {
            let e = plain_dial_uri(bad, r).unwrap_err();
            assert_eq!(e.code(), "invalid_target", "{bad:?}");
        }
        // Refusals speak of the SIP server, not the router's toll rules.
        let p = plain_call_refusal(&EndReason::Rejected {
            status: 403,
            phrase: "Forbidden".into(),
        })
        .unwrap();
        assert_eq!(p.code, "call_forbidden");
        assert!(
            p.message
                .starts_with("403 Forbidden: the SIP server refused"),
            "{}",
            p.message
        );
        assert!(!p.message.contains("toll"), "{}", p.message);
        let p = plain_call_refusal(&EndReason::Timeout).unwrap();
        assert!(
            p.message.contains("SIP server did not answer"),
            "{}",
            p.message
        );
        let p = plain_call_refusal(&EndReason::Rejected {
            status: 486,
            phrase: "Busy Here".into(),
        })
        .unwrap();
        assert_eq!(p.code, "call_busy");
        assert_eq!(plain_call_refusal(&EndReason::Local), None);
        assert!(DeskError::RouterOnly("a transfer")
            .to_string()
            .contains("Settings → Phone"));
        assert_eq!(DeskError::RouterOnly("a transfer").code(), "router_only");
    }

    #[test]
    fn refusals_of_a_call_we_placed_say_why() {
        let rejected = |status, phrase: &str| EndReason::Rejected {
            status,
            phrase: phrase.into(),
        };
        let code = |r: &EndReason| call_refusal(r).map(|p| p.code);
        assert_eq!(
            code(&rejected(403, "Forbidden")).as_deref(),
            Some("call_forbidden")
        );
        assert_eq!(
            code(&rejected(404, "Not Found")).as_deref(),
            Some("call_not_found")
        );
        assert_eq!(
            code(&rejected(480, "Temporarily Unavailable")).as_deref(),
            Some("call_no_answer")
        );
        assert_eq!(
            code(&rejected(486, "Busy Here")).as_deref(),
            Some("call_busy")
        );
        assert_eq!(code(&rejected(500, "Oops")).as_deref(), Some("call_failed"));
        assert_eq!(code(&EndReason::Timeout).as_deref(), Some("call_failed"));
        assert_eq!(code(&EndReason::Local), None);
        assert_eq!(code(&EndReason::RemoteBye), None);
        let p = call_refusal(&rejected(403, "Forbidden\r\nX: y")).unwrap();
        assert!(p.message.starts_with("403 ForbiddenX: y"), "{}", p.message);
        assert!(p.message.contains("toll rules"), "{}", p.message);
    }

    #[test]
    fn transfer_targets_are_names_upns_or_numbers() {
        assert_eq!(transfer_target(" escalations ").unwrap(), "escalations");
        assert_eq!(
            transfer_target("MeganB@contoso.example").unwrap(),
            "MeganB@contoso.example"
        );
        assert_eq!(
            transfer_target("+1 (555) 000-1234").unwrap(),
            "+15550001234"
        );
        for bad in ["", "a b", "x@y@z", "sip:x", "a\r\nb", "<x>"] {
            assert_eq!(
                transfer_target(bad).unwrap_err().code(),
                "invalid_target",
                "{bad:?}"
            );
        }
    }

    fn record(id: &str, caller: &str, dialled: &str, agent: Option<&str>, at: i64) -> CallRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "tenant": "contoso", "trunk": "carrier", "caller": caller,
            "dialled": dialled, "started_at": time_text(at), "answered_at": time_text(at + 5),
            "ended_at": time_text(at + 65), "choices": [], "queue": "billing", "steps": [],
            "offers": [], "agent": agent, "outcome": "answered", "reason": null,
            "disposition": "resolved"
        }))
        .unwrap()
    }

    /// RFC 3339 of Unix second `s` (2026-12-04 plus `s`).
    fn time_text(s: i64) -> String {
        format!("2026-12-04T09:{:02}:{:02}Z", s / 60, s % 60)
    }

    #[test]
    fn history_merges_the_routers_records_with_the_phones_own_calls() {
        let me = "adele@contoso.example";
        let base_ms = 1_796_374_800_000u64; // 2026-12-04T09:00:00Z
        let records = vec![
            record("r-in", "+15551230000", "+18005550100", Some(me), 0),
            record("r-out", me, "MeganB", Some("megan@contoso.example"), 120),
            record(
                "r-missed",
                "+15559990000",
                "+18005550100",
                Some("alex@contoso.example"),
                240,
            ),
        ];
        let local = vec![
            // The router's record r-out, as the phone saw it: not shown twice.
            LocalCall {
                n: 1,
                started_unix_ms: base_ms + 121_000,
                answered_unix_ms: Some(base_ms + 125_000),
                ended_unix_ms: base_ms + 180_000,
                outgoing: true,
                who: "MeganB".into(),
                call_record: None,
                queue: None,
                problem: None,
            },
            // Refused by the router before any record: the phone's own.
            LocalCall {
                n: 2,
                started_unix_ms: base_ms + 300_000,
                answered_unix_ms: None,
                ended_unix_ms: base_ms + 301_000,
                outgoing: true,
                who: "nobody".into(),
                call_record: None,
                queue: None,
                problem: Some(PhoneProblem {
                    code: "call_not_found".into(),
                    message: "404 Not Found".into(),
                }),
            },
            // An offered call the router recorded (by its id).
            LocalCall {
                n: 3,
                started_unix_ms: base_ms,
                answered_unix_ms: Some(base_ms + 5_000),
                ended_unix_ms: base_ms + 65_000,
                outgoing: false,
                who: "+15551230000".into(),
                call_record: Some("r-in".into()),
                queue: Some("billing".into()),
                problem: None,
            },
        ];
        let h = merge_history(me, &records, &local, 50);
        let ids: Vec<&str> = h.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["phone-2", "r-missed", "r-out", "r-in"]);
        assert_eq!(h[0].outcome, "refused");
        assert_eq!(h[0].reason.as_deref(), Some("404 Not Found"));
        assert_eq!(h[0].source, "phone");
        assert_eq!(h[1].outcome, "missed", "another agent took it");
        assert_eq!(h[2].who, "MeganB");
        assert!(h[2].outgoing);
        assert_eq!(h[2].call_back.as_deref(), Some("MeganB"));
        assert_eq!(h[3].who, "+15551230000");
        assert_eq!(h[3].call_back.as_deref(), Some("+15551230000"));
        assert_eq!(h[3].talk_seconds, Some(60));
        assert_eq!(h[3].disposition.as_deref(), Some("resolved"));
        assert_eq!(h[3].started_unix_ms, base_ms);
        assert_eq!(merge_history(me, &records, &local, 2).len(), 2);
        // Answered by Adele, then sent on to Megan: transferred, for Adele.
        let mut passed = record(
            "r-passed",
            "+15551230000",
            "+18005550100",
            Some("megan@contoso.example"),
            0,
        );
        passed.steps = vec![
            "queue billing".into(),
            "transfer by adele@contoso.example to megan@contoso.example after consulting".into(),
        ];
        assert_eq!(
            merge_history(me, &[passed.clone()], &[], 5)[0].outcome,
            "transferred"
        );
        // For Megan, it is hers.
        assert_eq!(
            merge_history("megan@contoso.example", &[passed], &[], 5)[0].outcome,
            "answered"
        );
        // A caller one cannot dial back is shown, without Call back.
        let odd = record("r-odd", "Anonymous <x>", "+18005550100", Some(me), 0);
        assert_eq!(merge_history(me, &[odd], &[], 5)[0].call_back, None);
    }

    #[test]
    fn keypad_keys() {
        for k in "0123456789*#ABCD".chars() {
            assert!(is_dtmf_key(k));
        }
        for k in ['a', 'E', ' ', '\n', '+'] {
            assert!(!is_dtmf_key(k));
        }
    }

    #[tokio::test]
    async fn commands_without_a_phone_say_so_and_show_the_problem() {
        let desk = DeskPhone::new();
        assert_eq!(desk.view().registration, RegistrationView::Off);
        let e = desk.answer(1).await.unwrap_err();
        assert_eq!(e.code(), "phone_not_started");
        assert_eq!(
            desk.view().problem.map(|p| p.code).as_deref(),
            Some("phone_not_started")
        );
        assert_eq!(desk.dtmf(1, 'x').await.unwrap_err().code(), "invalid_digit");
        assert_eq!(
            desk.dial("MeganB").await.unwrap_err().code(),
            "phone_not_started"
        );
        assert_eq!(
            desk.targets().await.unwrap_err().code(),
            "phone_not_started"
        );
        assert_eq!(
            desk.history(10).await.unwrap_err().code(),
            "phone_not_started"
        );
        assert_eq!(
            desk.consult("escalations").await.unwrap_err().code(),
            "phone_not_started"
        );
        // Without a phone there is no router state to set: not an error.
        desk.set_state(true, None).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_router_fails_the_start_with_what_to_do() {
        // Port 9 (discard) on loopback: nothing answers.
        let api = AgentApi::new("http://127.0.0.1:9", None, Some("a@b.example".into())).unwrap();
        let desk = DeskPhone::new();
        let e = desk
            .start(api, &AudioSettings::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "router_unreachable");
        let RegistrationView::Failing { reason, .. } = desk.view().registration else {
            panic!("failing")
        };
        assert!(reason.contains("is it running"), "{reason}");
    }

    #[tokio::test]
    async fn only_a_router_call_older_than_the_router_counts_as_lost_to_its_restart() {
        let problem = |d: &DeskPhone| d.view().problem.map(|p| p.code);
        let desk = DeskPhone::new();
        let call = |age_ms: u64| {
            let mut c = CallView::new(
                7,
                CallStage::Talking,
                "caller".into(),
                RouterOffer::default(),
            );
            c.ringing_since_unix_ms = now_ms() - age_ms;
            c
        };
        // No call: nothing to end.
        desk.router_up_for(Duration::ZERO);
        assert_eq!(problem(&desk), None);
        // A plain SIP account's call: no router carries it.
        desk.update(|v| {
            v.source = PhoneSource::SipAccount;
            v.call = Some(call(60_000));
        });
        desk.router_up_for(Duration::ZERO);
        assert_eq!(problem(&desk), None);
        // Through the router: a call 10 s old outlives a router up for 5 s, not one up for 9 s
        // (2 s allowed for the uptime's whole seconds).
        desk.update(|v| {
            v.source = PhoneSource::Router;
            v.call = Some(call(10_000));
        });
        desk.router_up_for(Duration::from_secs(9));
        assert_eq!(problem(&desk), None);
        desk.router_up_for(Duration::from_secs(5));
        assert_eq!(problem(&desk).as_deref(), Some("router_restarted"));
        assert!(desk.lost_to_restart(7));
        // A new phone numbers its calls from 1 again: its call 7 is another.
        desk.starting(PhoneSource::Router, async { Ok(()) })
            .await
            .unwrap();
        assert!(!desk.lost_to_restart(7));
        assert!(began_before_router(1_000, 3_001));
        assert!(!began_before_router(1_000, 3_000));
        assert!(!began_before_router(u64::MAX, 0));
    }

    #[test]
    fn a_device_notice_shows_what_went_wrong_until_it_is_over() {
        use crate::audio::DeviceNotice;
        use crate::call::DeviceReport;
        let desk = DeskPhone::new();
        let out = |name: &str| DeviceReport::Opened {
            direction: "output".into(),
            name: name.into(),
            rate: 48000,
        };
        let kind = |d: &DeskPhone| d.view().device.map(|n| (n.kind, n.device, n.wanted));
        // The chosen headset is missing: the default plays; said until another opens.
        desk.device_news(DeviceNotice::from(&DeviceReport::Fallback {
            direction: "output".into(),
            wanted: "Headset".into(),
            name: "default".into(),
            reason: "not found".into(),
        }));
        assert_eq!(
            kind(&desk),
            Some((
                "fallback".into(),
                Some("default".into()),
                Some("Headset".into())
            ))
        );
        desk.device_news(DeviceNotice::from(&out("Speakers")));
        assert_eq!(kind(&desk), None);
        // Unplugged mid-call: lost, then what took over; a microphone opening meanwhile
        // changes nothing; the person choosing another device ends it.
        desk.device_news(DeviceNotice::from(&DeviceReport::Lost {
            direction: "output".into(),
            name: "Headset".into(),
            reason: "stream error".into(),
        }));
        assert_eq!(
            kind(&desk),
            Some(("lost".into(), None, Some("Headset".into())))
        );
        desk.device_news(DeviceNotice::from(&DeviceReport::Opened {
            direction: "input".into(),
            name: "Mic".into(),
            rate: 48000,
        }));
        assert_eq!(
            kind(&desk),
            Some(("lost".into(), None, Some("Headset".into())))
        );
        desk.device_news(DeviceNotice::from(&out("default")));
        assert_eq!(
            kind(&desk),
            Some((
                "lost".into(),
                Some("default".into()),
                Some("Headset".into())
            ))
        );
        desk.device_news(DeviceNotice::from(&out("Speakers")));
        assert_eq!(kind(&desk), None);
        // None at all; a new call starts without the last one's notice.
        desk.device_news(DeviceNotice::from(&DeviceReport::Unavailable {
            direction: "input".into(),
            reason: "no device".into(),
        }));
        assert_eq!(kind(&desk).map(|k| k.0), Some("unavailable".into()));
        desk.new_call(CallView::new(
            1,
            CallStage::Ringing,
            "sip:bob@example.com".into(),
            RouterOffer::default(),
        ));
        assert_eq!(kind(&desk), None);
    }
}
