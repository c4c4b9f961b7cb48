//! The agent's link to the routing service: one health check, then the `/v1/events`
//! WebSocket, kept up with exponential backoff and jitter. Whoever shows the link (the desktop
//! status bar, the CLI) watches a [`RouterStatus`] through a `tokio::sync::watch` channel.
//!
//! States: `connecting` (first attempt under way), `connected` (the event stream is open and
//! heartbeats arrive), `reconnecting` (it was connected and lost the link; retrying),
//! `unreachable` (never reached since the URL was set; retrying).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchboard_api::{Event, Health};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::directory::PresenceInfo;

/// State of the link to the router, as the status bar shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum ConnectionState {
    Connecting,
    Connected,
    Reconnecting,
    Unreachable,
    /// The router answers but wants a signed-in account with a Switchboard role.
    SignInRequired,
}

/// Everything the UI needs to show the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct RouterStatus {
    /// The router's base URL.
    pub url: String,
    pub state: ConnectionState,
    /// The router's version while connected (from `/v1/health` and the `hello` event).
    pub version: Option<String>,
    /// The router's uptime at the last message received.
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub uptime_seconds: Option<u64>,
    /// Why the last attempt failed, for a person.
    pub last_error: Option<String>,
    /// Consecutive failed attempts since the last success.
    pub attempt: u32,
    /// Milliseconds until the next attempt, while waiting to retry.
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub next_retry_ms: Option<u64>,
    /// Whether the router sends Teams presence (its `[presence]` is on): while connected,
    /// presence dots come from it instead of each desktop asking Graph.
    pub presence: bool,
}

impl RouterStatus {
    fn connecting(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            state: ConnectionState::Connecting,
            version: None,
            uptime_seconds: None,
            last_error: None,
            attempt: 0,
            next_retry_ms: None,
            presence: false,
        }
    }
}

/// How the link retries and when it gives up on a silent router.
#[derive(Debug, Clone)]
pub struct LinkPolicy {
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Time allowed for one connection attempt (health + upgrade).
    pub connect_timeout: Duration,
    /// The link counts as dead when nothing arrives for this long (the router sends a
    /// heartbeat every 10 s by default).
    pub idle_timeout: Duration,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(35),
        }
    }
}

/// Why one attempt failed; shown in `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the router at {url} did not answer: {detail} — check that it is running and the URL in Settings")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered /v1/health with HTTP {status} — is this a Switchboard router?")]
    BadHealth { url: String, status: u16 },
    #[error("{url} answered /v1/health with something that is not a Switchboard health report: {detail}")]
    NotARouter { url: String, detail: String },
    #[error("the router's event stream at {url} failed: {detail}")]
    Events { url: String, detail: String },
    #[error("the router at {url} went silent for {seconds} s")]
    Silent { url: String, seconds: u64 },
    #[error("the router at {url} is shutting down")]
    ShuttingDown { url: String },
    #[error("the router at {url} closed the event stream")]
    Closed { url: String },
    #[error("the router at {url} wants you signed in — Sign in with Microsoft")]
    SignIn { url: String },
    #[error("the router at {url} refused your account — ask your administrator for a Switchboard role (Agent, Supervisor or Admin)")]
    NoRole { url: String },
}

/// Access tokens for the router's API, when it checks them (`[auth] mode = "entra"`).
pub trait RouterTokens: Send + Sync {
    /// A token for the router's API scope, or `None` when nobody is signed in.
    fn router_token(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>>;
}

/// Asks `GET {base}/v1/health` once.
pub async fn fetch_health(
    http: &reqwest::Client,
    base: &str,
    timeout: Duration,
) -> Result<Health, LinkError> {
    let url = format!("{base}/v1/health");
    let resp =
        http.get(&url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable {
                url: base.to_owned(),
                detail: error_chain(&e),
            })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(LinkError::BadHealth {
            url: base.to_owned(),
            status: status.as_u16(),
        });
    }
    resp.json::<Health>()
        .await
        .map_err(|e| LinkError::NotARouter {
            url: base.to_owned(),
            detail: error_chain(&e),
        })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let part = c.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = c.source();
    }
    s
}

fn events_url(base: &str) -> String {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/v1/events")
}

/// The retry delay after `attempt` consecutive failures (1-based): doubling from the initial
/// delay up to the maximum, less up to 20 % jitter (`jitter` in -1..=1) so many desktops do
/// not retry in step and none waits longer than the maximum.
pub fn backoff(policy: &LinkPolicy, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let base = policy
        .initial_backoff
        .saturating_mul(1u32 << exp)
        .min(policy.max_backoff);
    let factor = 1.0 - jitter.clamp(-1.0, 1.0).abs() * 0.2;
    base.mul_f64(factor)
}

/// Teams presence as the router sends it, for the users this link watches.
struct LinkPresence {
    /// The users to watch (sorted, without repeats); sent again after each reconnect.
    watching: watch::Sender<Vec<String>>,
    /// The latest state of each watched user the router has sent, while connected.
    known: Mutex<std::collections::HashMap<String, PresenceInfo>>,
    /// Each presence event as it arrives.
    events: tokio::sync::broadcast::Sender<PresenceInfo>,
    /// Each agent-state event as it arrives (the router's view of agents' states).
    agent_states: tokio::sync::broadcast::Sender<switchboard_api::AgentStatus>,
}

impl LinkPresence {
    fn new() -> Self {
        Self {
            watching: watch::channel(Vec::new()).0,
            known: Mutex::new(std::collections::HashMap::new()),
            events: tokio::sync::broadcast::channel(1024).0,
            agent_states: tokio::sync::broadcast::channel(256).0,
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, PresenceInfo>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arrived(&self, p: PresenceInfo) {
        self.known().insert(p.id.clone(), p.clone());
        let _ = self.events.send(p);
    }
}

/// A presence event of the router as the window shows it: Graph's values (unknown ones as
/// `Unknown`) and whether a transfer may be offered.
fn presence_info(
    id: String,
    availability: &str,
    activity: &str,
    status_message: Option<String>,
) -> PresenceInfo {
    let p = switchboard_graph::Presence {
        id,
        availability: switchboard_graph::Availability::parse(availability),
        activity: switchboard_graph::Activity::parse(activity),
        status_message: None,
        out_of_office_settings: None,
    };
    PresenceInfo {
        status_message: status_message.filter(|m| !m.trim().is_empty()),
        ..PresenceInfo::from(&p)
    }
}

/// A running link to one router. Dropping it stops the link.
pub struct RouterLink {
    tx: Arc<watch::Sender<RouterStatus>>,
    status: watch::Receiver<RouterStatus>,
    policy: LinkPolicy,
    tokens: Option<Arc<dyn RouterTokens>>,
    presence: Arc<LinkPresence>,
    task: Mutex<JoinHandle<()>>,
}

impl Drop for RouterLink {
    fn drop(&mut self) {
        self.task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .abort();
    }
}

impl RouterLink {
    /// Starts keeping a link to `base_url` (already normalised, no trailing slash). Must be
    /// called inside a tokio runtime.
    pub fn spawn(base_url: String, policy: LinkPolicy) -> Self {
        Self::spawn_with_tokens(base_url, policy, None)
    }

    /// Like [`Self::spawn`], sending `tokens`' access token with the event-stream upgrade.
    pub fn spawn_with_tokens(
        base_url: String,
        policy: LinkPolicy,
        tokens: Option<Arc<dyn RouterTokens>>,
    ) -> Self {
        let (tx, rx) = watch::channel(RouterStatus::connecting(&base_url));
        let tx = Arc::new(tx);
        let presence = Arc::new(LinkPresence::new());
        let task = tokio::spawn(run_link(
            base_url,
            policy.clone(),
            tx.clone(),
            tokens.clone(),
            presence.clone(),
        ));
        Self {
            tx,
            status: rx,
            policy,
            tokens,
            presence,
            task: Mutex::new(task),
        }
    }

    /// Points the link at another router: the current attempt stops, the status goes back to
    /// `connecting`, and subscribers keep receiving changes. Must be called inside a tokio
    /// runtime.
    pub fn set_url(&self, base_url: String) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        task.abort();
        self.tx.send_replace(RouterStatus::connecting(&base_url));
        self.presence.known().clear();
        *task = tokio::spawn(run_link(
            base_url,
            self.policy.clone(),
            self.tx.clone(),
            self.tokens.clone(),
            self.presence.clone(),
        ));
    }

    /// The users whose Teams presence the router should send (replaces the earlier list).
    /// Sent when the router serves presence, again after each reconnect.
    pub fn watch_presence(&self, ids: impl IntoIterator<Item = String>) {
        let mut ids: Vec<String> = ids.into_iter().filter(|i| !i.is_empty()).collect();
        ids.sort();
        ids.dedup();
        // What the router sent of people no longer watched goes stale: forget it (watching
        // them again brings their state anew).
        self.presence
            .known()
            .retain(|id, _| ids.binary_search(id).is_ok());
        self.presence.watching.send_if_modified(|w| {
            let changed = *w != ids;
            if changed {
                *w = ids;
            }
            changed
        });
    }

    /// What the router has sent of these users (those it has not sent are left out).
    pub fn known_presence(&self, ids: &[String]) -> Vec<PresenceInfo> {
        let known = self.presence.known();
        ids.iter().filter_map(|id| known.get(id).cloned()).collect()
    }

    /// Each presence event of the router, as it arrives.
    pub fn subscribe_presence(&self) -> tokio::sync::broadcast::Receiver<PresenceInfo> {
        self.presence.events.subscribe()
    }

    /// Each agent's state as the router announces it (`agent_state` events: the agents of
    /// the organisations this link may read), as it arrives.
    pub fn subscribe_agent_states(
        &self,
    ) -> tokio::sync::broadcast::Receiver<switchboard_api::AgentStatus> {
        self.presence.agent_states.subscribe()
    }

    /// The latest status.
    pub fn status(&self) -> RouterStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<RouterStatus> {
        self.status.clone()
    }
}

async fn run_link(
    base: String,
    policy: LinkPolicy,
    tx: Arc<watch::Sender<RouterStatus>>,
    tokens: Option<Arc<dyn RouterTokens>>,
    presence: Arc<LinkPresence>,
) {
    let http = match reqwest::Client::builder()
        .connect_timeout(policy.connect_timeout)
        // Before the router closes them: its header-read timeout (10 s by default) also ends
        // idle keep-alive connections, and a request sent on one as it closes fails.
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tx.send_modify(|s| {
                s.state = ConnectionState::Unreachable;
                s.last_error = Some(format!("cannot set up HTTP: {e}"));
            });
            return;
        }
    };
    let mut ever_connected = false;
    let mut attempt: u32 = 0;
    loop {
        // connect_once returns only when the link failed or ended.
        let result = connect_once(&http, &base, &policy, &tx, tokens.as_deref(), &presence).await;
        // What the router sent is stale once the link is down.
        presence.known().clear();
        let err = match result {
            Ok(never) => match never {},
            Err(Attempt::Failed(e)) => e,
            Err(Attempt::Lost(e)) => {
                ever_connected = true;
                attempt = 0;
                e
            }
        };
        attempt = attempt.saturating_add(1);
        let delay = backoff(&policy, attempt, rand::random::<f64>() * 2.0 - 1.0);
        tracing::info!(router = %base, attempt, delay_ms = delay.as_millis() as u64, error = %err, "router link down; retrying");
        let sign_in = matches!(err, LinkError::SignIn { .. } | LinkError::NoRole { .. });
        tx.send_modify(|s| {
            s.state = if sign_in {
                ConnectionState::SignInRequired
            } else if ever_connected {
                ConnectionState::Reconnecting
            } else {
                ConnectionState::Unreachable
            };
            s.last_error = Some(err.to_string());
            s.attempt = attempt;
            s.next_retry_ms = Some(delay.as_millis() as u64);
            s.presence = false;
        });
        tokio::time::sleep(delay).await;
        tx.send_modify(|s| s.next_retry_ms = None);
    }
}

enum Attempt {
    /// Never got to `connected`.
    Failed(LinkError),
    /// Was connected, then lost it.
    Lost(LinkError),
}

async fn connect_once(
    http: &reqwest::Client,
    base: &str,
    policy: &LinkPolicy,
    tx: &watch::Sender<RouterStatus>,
    tokens: Option<&dyn RouterTokens>,
    presence: &LinkPresence,
) -> Result<std::convert::Infallible, Attempt> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let health = fetch_health(http, base, policy.connect_timeout)
        .await
        .map_err(Attempt::Failed)?;
    let url = events_url(base);
    let mut request = url.as_str().into_client_request().map_err(|e| {
        Attempt::Failed(LinkError::Events {
            url: base.to_owned(),
            detail: e.to_string(),
        })
    })?;
    if let Some(t) = tokens {
        if let Some(token) = t.router_token().await {
            if let Ok(v) = format!("Bearer {token}").parse() {
                request.headers_mut().insert("authorization", v);
            }
        }
    }
    let (mut ws, _) = tokio::time::timeout(
        policy.connect_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| {
        Attempt::Failed(LinkError::Events {
            url: base.to_owned(),
            detail: "timed out".into(),
        })
    })?
    .map_err(|e| {
        use tokio_tungstenite::tungstenite::Error as WsError;
        Attempt::Failed(match &e {
            WsError::Http(r) if r.status().as_u16() == 401 => LinkError::SignIn {
                url: base.to_owned(),
            },
            WsError::Http(r) if r.status().as_u16() == 403 => LinkError::NoRole {
                url: base.to_owned(),
            },
            _ => LinkError::Events {
                url: base.to_owned(),
                detail: e.to_string(),
            },
        })
    })?;
    tracing::info!(router = %base, version = %health.version, "connected to router");
    tx.send_modify(|s| {
        s.state = ConnectionState::Connected;
        s.version = Some(health.version.clone());
        s.uptime_seconds = Some(health.uptime_seconds);
        s.last_error = None;
        s.attempt = 0;
        s.next_retry_ms = None;
    });
    let mut watching = presence.watching.subscribe();
    let mut serves_presence = false;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(policy.idle_timeout, ws.next()) => next,
            changed = watching.changed(), if serves_presence => {
                if changed.is_ok() {
                    let ids = watching.borrow_and_update().clone();
                    send_watch(&mut ws, &ids, base).await?;
                }
                continue;
            }
        };
        let msg = match next {
            Err(_) => {
                return Err(Attempt::Lost(LinkError::Silent {
                    url: base.to_owned(),
                    seconds: policy.idle_timeout.as_secs(),
                }))
            }
            Ok(None) => {
                return Err(Attempt::Lost(LinkError::Closed {
                    url: base.to_owned(),
                }))
            }
            Ok(Some(Err(e))) => {
                return Err(Attempt::Lost(LinkError::Events {
                    url: base.to_owned(),
                    detail: e.to_string(),
                }))
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(text) => match serde_json::from_str::<Event>(text.as_str()) {
                Ok(Event::Hello {
                    version,
                    uptime_seconds,
                    presence: serves,
                }) => {
                    tx.send_modify(|s| {
                        s.version = Some(version);
                        s.uptime_seconds = Some(uptime_seconds);
                        s.presence = serves;
                    });
                    serves_presence = serves;
                    if serves {
                        let ids = watching.borrow_and_update().clone();
                        if !ids.is_empty() {
                            send_watch(&mut ws, &ids, base).await?;
                        }
                    }
                }
                Ok(Event::Presence {
                    id,
                    availability,
                    activity,
                    status_message,
                }) => presence.arrived(presence_info(id, &availability, &activity, status_message)),
                Ok(Event::AgentState { status }) => {
                    let _ = presence.agent_states.send(status);
                }
                Ok(Event::Heartbeat { uptime_seconds }) => {
                    tx.send_if_modified(|s| {
                        let changed = s.uptime_seconds != Some(uptime_seconds);
                        s.uptime_seconds = Some(uptime_seconds);
                        changed
                    });
                }
                Ok(Event::ShuttingDown) => {
                    return Err(Attempt::Lost(LinkError::ShuttingDown {
                        url: base.to_owned(),
                    }))
                }
                Ok(other) => tracing::debug!(event = ?other, "router event"),
                // A newer router may send events this build does not know: not an error.
                Err(e) => tracing::debug!(error = %e, "unknown router event ignored"),
            },
            Message::Close(_) => {
                return Err(Attempt::Lost(LinkError::Closed {
                    url: base.to_owned(),
                }))
            }
            _ => {}
        }
    }
}

/// Tells the router which users' presence to send.
async fn send_watch<S>(ws: &mut S, ids: &[String], base: &str) -> Result<(), Attempt>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    use futures_util::SinkExt;
    let msg = switchboard_api::ClientMessage::Watch { ids: ids.to_vec() };
    let text = serde_json::to_string(&msg).map_err(|e| {
        Attempt::Lost(LinkError::Events {
            url: base.to_owned(),
            detail: e.to_string(),
        })
    })?;
    ws.send(Message::Text(text.into())).await.map_err(|e| {
        Attempt::Lost(LinkError::Events {
            url: base.to_owned(),
            detail: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let p = LinkPolicy::default();
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&p, 2, 0.0), Duration::from_millis(1000));
        assert_eq!(backoff(&p, 4, 0.0), Duration::from_millis(4000));
        assert_eq!(backoff(&p, 5, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 400, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&p, 1, -1.0), Duration::from_millis(400));
        assert_eq!(backoff(&p, 1, 0.5), Duration::from_millis(450));
        assert!(backoff(&p, 9, 0.3) <= p.max_backoff);
    }

    #[test]
    fn events_url_follows_the_scheme() {
        assert_eq!(
            events_url("http://127.0.0.1:7700"),
            "ws://127.0.0.1:7700/v1/events"
        );
        assert_eq!(
            events_url("https://r.example.com"),
            "wss://r.example.com/v1/events"
        );
    }
}
