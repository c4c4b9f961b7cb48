//! The agent's desk at the router: the router's agent API (`/v1/agents/me/…`: SIP
//! credentials, state, wrap-up) as [`AgentApi`], and [`DeskPhone`], the softphone registered
//! with the credentials the router issues, as one window drives it. The headless CLI's
//! `work` command uses the same [`AgentApi`].
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
    AgentRef, AgentStateChange, AgentStatus, Problem, RequestedState, SipCredentials,
};
use tokio::sync::{broadcast, watch};

use crate::call::{
    printable, Account, CallError, CallId, Phone, PhoneEvent, PhoneOptions, RegistrationState,
    RingOptions, RouterOffer,
};
use crate::settings::AudioSettings;

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
    #[error("{0:?} is not a key of the keypad (0–9, *, #, A–D)")]
    BadDigit(char),
    #[error("there is no wrap-up to finish")]
    NoWrapUp,
}

impl DeskError {
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
            Self::BadDigit(_) => "invalid_digit",
            Self::NoWrapUp => "no_wrap_up",
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
}

/// The body of `PUT /v1/agents/me/state`.
pub fn state_change(
    agent: Option<String>,
    ready: bool,
    reason: Option<String>,
) -> AgentStateChange {
    AgentStateChange {
        agent,
        state: if ready {
            RequestedState::Ready
        } else {
            RequestedState::NotReady
        },
        reason: if ready { None } else { reason },
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

    /// The agent's state at the router.
    pub async fn status(&self) -> Result<AgentStatus, DeskError> {
        let path = match &self.agent {
            Some(a) => format!(
                "/v1/agents/me?agent={}",
                url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            ),
            None => "/v1/agents/me".to_owned(),
        };
        let what = "the agent's state";
        self.send(reqwest::Method::GET, &path, what, None::<&()>)
            .await?
            .ok_or_else(|| Self::bad(what))
    }

    /// The agent is done with the last call, with its disposition code.
    pub async fn wrap_up(&self, disposition: Option<&str>) -> Result<AgentStatus, DeskError> {
        let body = WrapUpRequest {
            agent: self.agent.as_deref(),
            disposition,
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
    /// `registrar_unreachable`, `registration_not_sent`, `phone_stopped`, or a
    /// [`DeskError::code`]).
    Failing { code: String, reason: String },
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum CallStage {
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
        }
    }
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

/// The phone while it runs.
struct Running {
    phone: Phone,
    api: AgentApi,
}

struct Inner {
    view: watch::Sender<PhoneView>,
    events: broadcast::Sender<PhoneEvent>,
    running: Mutex<Option<Running>>,
}

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
            }),
        }
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

    fn running(&self) -> Option<(Phone, AgentApi)> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| (r.phone.clone(), r.api.clone()))
    }

    fn update(&self, f: impl FnOnce(&mut PhoneView)) {
        self.inner.view.send_modify(f);
    }

    /// Records `e` as the problem to show, and returns it.
    fn problem(&self, e: DeskError) -> DeskError {
        tracing::warn!(code = e.code(), "phone: {e}");
        let p = PhoneProblem::from(&e);
        self.update(|v| v.problem = Some(p));
        e
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
        self.stop_phone().await;
        self.update(|v| {
            v.registration = RegistrationView::Registering;
            v.problem = None;
        });
        let r = self.start_inner(api, audio).await;
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
        let mut options = PhoneOptions::new(account);
        options.media.devices = Some(switchboard_media::device::DeviceChoice {
            input: audio.input_device.clone(),
            output: audio.output_device.clone(),
            open_input: true,
            open_output: true,
        });
        options.media.volume = f32::from(audio.output_volume.min(100)) / 100.0;
        options.ring = Some(RingOptions {
            device: audio.ringing_device.clone(),
            volume: f32::from(audio.ring_volume.min(100)) / 100.0,
        });
        let (phone, mut events) = Phone::start(options).await?;
        tracing::info!(agent = %creds.agent, registrar = %creds.registrar, "phone started");
        let agent = creds.agent.clone();
        let volume = audio.output_volume.min(100);
        self.update(|v| {
            v.agent = Some(agent);
            v.volume = volume;
        });
        *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            phone: phone.clone(),
            api: api.clone(),
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                me.on_event(&phone, &api, &e).await;
                let _ = me.inner.events.send(e);
            }
            me.update(|v| {
                if !matches!(v.registration, RegistrationView::Failing { .. }) {
                    v.registration = RegistrationView::Off;
                }
                v.call = None;
            });
        });
        Ok(())
    }

    async fn on_event(&self, phone: &Phone, api: &AgentApi, e: &PhoneEvent) {
        match e {
            PhoneEvent::Registration {
                account: 0,
                aor,
                state,
            } => {
                let r = registration_view(aor, state);
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
                let view = CallView {
                    id: *call,
                    stage: CallStage::Ringing,
                    from: printable(from, 256).unwrap_or_default(),
                    offer: offer.clone(),
                    ringing_since_unix_ms: now_ms(),
                    answered_unix_ms: None,
                    muted: false,
                    held: false,
                    codec: None,
                };
                self.update(|v| {
                    v.call = Some(view);
                    v.wrap_up = None;
                });
            }
            PhoneEvent::Established { call, media, .. } => {
                let codec = media.codec.clone();
                self.update(|v| {
                    if let Some(c) = v.call.as_mut().filter(|c| c.id == *call) {
                        c.stage = CallStage::Talking;
                        c.answered_unix_ms = Some(now_ms());
                        c.codec = Some(codec);
                    }
                });
            }
            PhoneEvent::Ended { call, .. } => {
                let ended = {
                    let v = self.inner.view.borrow();
                    v.call.as_ref().filter(|c| c.id == *call).cloned()
                };
                let Some(ended) = ended else { return };
                let queue_call = ended.answered_unix_ms.is_some() && ended.offer.queue.is_some();
                self.update(|v| {
                    v.call = None;
                    if queue_call {
                        v.wrap_up = Some(WrapUpView {
                            queue: ended.offer.queue.clone(),
                            call_record: ended.offer.call_record.clone(),
                            dispositions: Vec::new(),
                        });
                    }
                });
                if queue_call {
                    // The queue's codes: the router names them for the agent's last call.
                    let me = self.clone();
                    let api = api.clone();
                    tokio::spawn(async move {
                        match api.status().await {
                            Ok(st) => me.update(|v| {
                                if let Some(w) = v.wrap_up.as_mut() {
                                    w.dispositions = st.dispositions;
                                }
                            }),
                            Err(e) => {
                                me.problem(e);
                            }
                        }
                    });
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

    fn current_call(&self, call: CallId) -> Result<Phone, DeskError> {
        let (phone, _) = self.running().ok_or(DeskError::NotStarted)?;
        if self.inner.view.borrow().call.as_ref().map(|c| c.id) != Some(call) {
            return Err(DeskError::NoSuchCall);
        }
        Ok(phone)
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
        let Some((_, api)) = self.running() else {
            return Ok(());
        };
        let r = api.set_state(ready, reason).await.map(|_| ());
        self.ok(r)
    }

    /// Ends the wrap-up at the router with `disposition`.
    pub async fn finish_wrap_up(&self, disposition: Option<String>) -> Result<(), DeskError> {
        let r = async {
            let (_, api) = self.running().ok_or(DeskError::NotStarted)?;
            if self.inner.view.borrow().wrap_up.is_none() {
                return Err(DeskError::NoWrapUp);
            }
            let d = disposition
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty());
            api.wrap_up(d).await?;
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
            let _ = r.phone.hangup_all();
            let _ = tokio::time::timeout(Duration::from_secs(10), r.phone.close()).await;
            if let Err(e) = r.api.sign_off().await {
                tracing::info!(error = %e, "cannot sign off at the router");
            }
        }
    }

    /// Hangs up, unregisters and signs off at the router (the app closes, the person signs
    /// out).
    pub async fn stop(&self) {
        self.stop_phone().await;
        self.update(|v| {
            v.registration = RegistrationView::Off;
            v.call = None;
            v.wrap_up = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                disposition: Some("resolved")
            }),
            serde_json::json!({"disposition": "resolved"})
        );
        assert_eq!(
            v(&WrapUpRequest {
                agent: Some("adele@contoso.example"),
                disposition: None
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
}
