//! `/v1/events`: a WebSocket of JSON [`Event`]s. One broadcast channel fans events out; each
//! client gets `hello` first, then events and a heartbeat every `events.heartbeat_seconds`. A
//! client that falls more than `events.client_buffer` events behind is disconnected (it
//! reconnects and reloads), so one slow desktop never holds the others up. On shutdown every
//! client gets `shutting_down` and a close frame.
//!
//! Every event goes only to the clients allowed to read what it is about, by the rule REST
//! applies: a tenant's events to the operator's Admins and to members of the tenant's
//! organisation (`entra_tenant_id`); presence to the clients that watch the user. A client
//! message larger than [`MAX_CLIENT_MESSAGE`] closes the socket.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use switchboard_api::Event;
use tokio::sync::{broadcast, watch};

use crate::AppState;

/// The largest message a client may send (a `watch` of 1,000 object ids is about 40 KB).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Who may read an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every client (heartbeats; presence, which is filtered by watch lists).
    Everyone,
    /// The operator's Admins and the members of this Entra organisation (`None`: the
    /// operator's only).
    Organisation(Option<String>),
}

/// An event and who may read it.
#[derive(Debug, Clone)]
pub struct Published {
    pub event: Event,
    pub audience: Audience,
}

/// Who a client is, for [`Audience`].
#[derive(Debug, Clone)]
struct Viewer {
    operator: bool,
    tid: Option<String>,
}

impl Viewer {
    fn may_read(&self, a: &Audience) -> bool {
        match a {
            Audience::Everyone => true,
            Audience::Organisation(org) => {
                self.operator
                    || matches!((org, &self.tid), (Some(o), Some(t)) if o.eq_ignore_ascii_case(t))
            }
        }
    }
}

/// Publishes events to the connected clients allowed to read them.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Published>,
    started: Instant,
    heartbeat: Duration,
    /// Places for event clients (`events.max_clients`); a client holds one while connected.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    max_clients: usize,
}

impl EventHub {
    pub fn new(buffer: usize, heartbeat: Duration, started: Instant) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Self {
            tx,
            started,
            heartbeat,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CLIENTS)),
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }

    /// At most `n` event clients at once; more are answered 503.
    pub fn limit_clients(mut self, n: usize) -> Self {
        self.slots = std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self.max_clients = n.max(1);
        self
    }

    /// Sends to the clients connected now that may read it: a created tenant to its
    /// organisation and the operator, a deleted one (whose organisation the event does not
    /// name) to the operator only — use [`EventHub::publish_to`] to say more.
    pub fn publish(&self, event: Event) {
        let audience = match &event {
            Event::TenantCreated { tenant } => {
                Audience::Organisation(tenant.entra_tenant_id.clone())
            }
            Event::TenantDeleted { .. } => Audience::Organisation(None),
            _ => Audience::Everyone,
        };
        self.publish_to(event, audience);
    }

    /// Sends to the clients connected now that are in `audience` (no-op when none is).
    /// Every event published from now on (for the router's own listeners, not clients).
    pub fn listen(&self) -> tokio::sync::broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    pub fn publish_to(&self, event: Event, audience: Audience) {
        let _ = self.tx.send(Published { event, audience });
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Event clients at once unless `events.max_clients` says otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 1000;

/// The close code of a session whose access token expired (RFC 6455 §7.4.2: 4000–4999 are
/// the application's): reconnect with a fresh token.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    description = "A WebSocket (RFC 6455): the upgrade request carries the headers below; then the router sends JSON text frames and the client may send `{\"type\":\"watch\",\"ids\":[...]}`.",
    params(
        ("Connection" = String, Header, description = "`Upgrade`", pattern = "^[Uu]pgrade$"),
        ("Upgrade" = String, Header, description = "`websocket`", pattern = "^websocket$"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`", pattern = "^13$"),
        ("Sec-WebSocket-Key" = String, Header, description = "16 random bytes in base64", pattern = "^[A-Za-z0-9+/]{22}==$"),
    ),
    responses(
        (status = 101, description = "WebSocket upgrade; then JSON text frames, one `Event` each: `hello` first, `heartbeat` periodically, `shutting_down` before a graceful stop", body = Event),
        (status = 400, description = "not a WebSocket upgrade request", body = switchboard_api::Problem, content_type = "application/problem+json"),
        (status = 503, description = "as many event clients as `events.max_clients` are connected; try again later", body = switchboard_api::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(e) = caller.require_any_role() {
        return axum::response::IntoResponse::into_response(e);
    }
    let Ok(slot) = state.events.slots.clone().try_acquire_owned() else {
        return axum::response::IntoResponse::into_response(crate::error::ApiError::Unavailable(
            format!(
                "{} event clients are connected, as many as events.max_clients allows; try again later",
                state.events.max_clients
            ),
        ));
    };
    // The session ends when the token does: a removed role or account takes effect with the
    // next token, which the client brings when it reconnects.
    let token_ends = caller.expires_at.map(|exp| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let left = u64::try_from(exp.saturating_sub(now)).unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let rx = state.events.tx.subscribe();
    let hub = state.events.clone();
    let shutdown = state.shutdown.clone();
    let presence = state.presence.clone();
    let may_watch = presence.serves(&caller);
    let viewer = Viewer {
        operator: caller.operator,
        tid: caller.tid.clone(),
    };
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            serve_client(
                socket, hub, rx, shutdown, presence, may_watch, viewer, token_ends,
            )
            .await;
            drop(slot);
        })
}

fn text(e: &Event) -> Option<Message> {
    serde_json::to_string(e)
        .ok()
        .map(|s| Message::Text(s.into()))
}

/// Completes when a graceful shutdown starts (or the router is gone). The `watch::Ref` lives
/// only inside this function, so the client task stays `Send`.
async fn shutdown_started(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Numbers events clients for the presence hub's watch lists.
static NEXT_CLIENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[allow(clippy::too_many_arguments)]
async fn serve_client(
    socket: WebSocket,
    hub: EventHub,
    mut rx: broadcast::Receiver<Published>,
    mut shutdown: watch::Receiver<bool>,
    presence: std::sync::Arc<crate::presence::PresenceHub>,
    may_watch: bool,
    viewer: Viewer,
    token_ends: Option<tokio::time::Instant>,
) {
    let client = NEXT_CLIENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::gauge!("events_clients").increment(1.0);
    let (mut sink, mut stream) = socket.split();
    let hello = Event::Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: hub.uptime_seconds(),
        presence: may_watch,
    };
    let mut ok = match text(&hello) {
        Some(m) => sink.send(m).await.is_ok(),
        None => false,
    };
    let mut beat = tokio::time::interval(hub.heartbeat);
    beat.tick().await; // the first tick is immediate
    while ok {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(p) if !viewer.may_read(&p.audience) => {}
                // Presence goes only to the clients that watch the user.
                Ok(Published { event: Event::Presence { ref id, .. }, .. }) if !presence.watches(client, id) => {}
                Ok(p) => ok = match text(&p.event) { Some(m) => sink.send(m).await.is_ok(), None => true },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "events client too slow; disconnecting it");
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: 1008, reason: "too slow; reconnect".into() }))).await;
                    ok = false;
                }
                Err(broadcast::error::RecvError::Closed) => ok = false,
            },
            _ = beat.tick() => {
                ok = match text(&Event::Heartbeat { uptime_seconds: hub.uptime_seconds() }) {
                    Some(m) => sink.send(m).await.is_ok(),
                    None => true,
                };
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => ok = false,
                Some(Ok(Message::Text(t))) => {
                    match serde_json::from_str::<switchboard_api::ClientMessage>(t.as_str()) {
                        Ok(switchboard_api::ClientMessage::Watch { .. }) if !may_watch => {
                            tracing::debug!("watch from a client of another organisation (or with presence off) ignored");
                        }
                        Ok(switchboard_api::ClientMessage::Watch { ids }) => {
                            for e in presence.watch(client, ids) {
                                if let Some(m) = text(&e) {
                                    ok = ok && sink.send(m).await.is_ok();
                                }
                            }
                        }
                        // Not ours to act on; a newer client may say more.
                        Err(e) => tracing::debug!(error = %e, "unknown client message ignored"),
                    }
                }
                // Pings are answered by axum.
                Some(Ok(_)) => {}
            },
            () = tokio::time::sleep_until(token_ends.unwrap_or_else(tokio::time::Instant::now)), if token_ends.is_some() => {
                tracing::info!("events client's access token expired; closing its session");
                let _ = sink.send(Message::Close(Some(CloseFrame { code: CLOSE_TOKEN_EXPIRED, reason: "the access token expired; reconnect with a fresh one".into() }))).await;
                ok = false;
            }
            _ = shutdown_started(&mut shutdown) => {
                if let Some(m) = text(&Event::ShuttingDown) {
                    let _ = sink.send(m).await;
                }
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "router shutting down".into() }))).await;
                ok = false;
            }
        }
    }
    metrics::gauge!("events_clients").decrement(1.0);
    presence.forget(client);
}
