//! `switchboard-router`: Switchboard's routing service. Today it serves the HTTP API under
//! `/v1` (health, tenants, OpenAPI), the live event WebSocket `/v1/events` and Prometheus
//! `/metrics`, and keeps its data in SQLite; the registrar, B2BUA, auto attendant and queues
//! join it as they land.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchboard_router::{config::Config, Router};
//! let mut config = Config::default();
//! config.storage.data_dir = Some("/tmp/router-data".into());
//! let router = Router::start(config).await?;           // opens storage, binds the port
//! println!("listening on http://{}", router.local_addr());
//! router.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod agents_http;
pub mod auth;
pub mod center;
pub mod config;
pub mod config_http;
pub mod desk;
pub mod edge;
pub mod error;
pub mod events;
pub mod figures;
pub mod gate;
pub mod guard;
pub mod hours;
pub mod http;
pub mod overload;
pub mod presence;
pub mod prompts;
pub mod relay;
pub mod reports;
pub mod routing;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod trunks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::events::EventHub;
use crate::store::{Store, StoreError};

/// The presence hub's client id for the queues' own watch list (agents' Teams presence).
pub const DESK_WATCHER: u64 = u64::MAX;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub events: EventHub,
    /// Who may call the API.
    pub auth: Arc<auth::Auth>,
    /// Teams presence for connected clients.
    pub presence: Arc<presence::PresenceHub>,
    /// Turns true when a graceful shutdown starts.
    pub shutdown: watch::Receiver<bool>,
    /// `http.metrics_token`: the bearer value that may read `/metrics`.
    pub metrics_token: Arc<str>,
    /// The contact center: agents, queues, their state.
    pub center: Arc<desk::CallCenter>,
}

/// Why the router could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source} — is another program using the port? choose another with --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sip(#[from] edge::EdgeError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// The axum application with every route and layer.
pub fn app(state: AppState, config: &Config) -> axum::Router {
    let api = axum::Router::new()
        .route("/v1/health", get(http::health))
        .route("/v1/me", get(http::me))
        .route(
            "/v1/tenants",
            get(http::list_tenants).post(http::create_tenant),
        )
        .route(
            "/v1/tenants/{id}",
            get(http::get_tenant).delete(http::delete_tenant),
        )
        .route(
            "/v1/config/tenants/{tenant}/agents",
            get(config_http::list_agents),
        )
        .route(
            "/v1/config/tenants/{tenant}/trunks",
            get(config_http::list_trunks),
        )
        .route(
            "/v1/config/tenants/{tenant}/trunks/{name}",
            axum::routing::put(config_http::put_trunk).delete(config_http::delete_trunk),
        )
        .route(
            "/v1/config/tenants/{tenant}/schedules",
            get(config_http::list_schedules),
        )
        .route(
            "/v1/config/tenants/{tenant}/schedules/{name}",
            axum::routing::put(config_http::put_schedule).delete(config_http::delete_schedule),
        )
        .route(
            "/v1/config/tenants/{tenant}/attendants",
            get(config_http::list_attendants),
        )
        .route(
            "/v1/config/tenants/{tenant}/attendants/{name}",
            axum::routing::put(config_http::put_attendant).delete(config_http::delete_attendant),
        )
        .route(
            "/v1/config/tenants/{tenant}/experts",
            get(config_http::list_experts),
        )
        .route(
            "/v1/config/tenants/{tenant}/experts/{name}",
            axum::routing::put(config_http::put_expert).delete(config_http::delete_expert),
        )
        .route(
            "/v1/config/tenants/{tenant}/outbound",
            get(config_http::get_outbound)
                .put(config_http::put_outbound)
                .delete(config_http::delete_outbound),
        )
        .route(
            "/v1/config/tenants/{tenant}/numbers",
            get(config_http::list_numbers),
        )
        .route(
            "/v1/config/tenants/{tenant}/numbers/{number}",
            axum::routing::put(config_http::put_number).delete(config_http::delete_number),
        )
        .route(
            "/v1/config/tenants/{tenant}/queues",
            get(config_http::list_queues),
        )
        .route(
            "/v1/config/tenants/{tenant}/queues/{name}",
            axum::routing::put(config_http::put_queue).delete(config_http::delete_queue),
        )
        .route(
            "/v1/config/tenants/{tenant}/agents/{upn}",
            axum::routing::put(config_http::put_agent).delete(config_http::delete_agent),
        )
        .route("/v1/agents/me", get(agents_http::me))
        .route("/v1/agents/me/targets", get(agents_http::targets))
        .route("/v1/agents/me/calls", get(agents_http::my_calls))
        .route(
            "/v1/agents/me/sip-credentials",
            axum::routing::post(agents_http::sip_credentials)
                .delete(agents_http::revoke_sip_credentials),
        )
        .route(
            "/v1/agents/me/state",
            axum::routing::put(agents_http::set_state),
        )
        .route(
            "/v1/agents/me/wrap-up",
            axum::routing::post(agents_http::wrap_up),
        )
        .route("/v1/calls", get(agents_http::list_calls))
        .route("/v1/queues", get(agents_http::queues))
        .route("/v1/agents", get(agents_http::agents))
        .route(
            "/v1/agents/{upn}/state",
            axum::routing::put(agents_http::set_agent_state),
        )
        .route(
            "/v1/agents/{upn}/monitor",
            axum::routing::put(agents_http::monitor).delete(agents_http::stop_monitor),
        )
        .route("/v1/trunks", get(agents_http::trunks))
        .route(
            "/v1/agents/me/transfer",
            axum::routing::post(agents_http::transfer),
        )
        .route(
            "/v1/agents/me/consult",
            axum::routing::post(agents_http::consult),
        )
        .route(
            "/v1/agents/me/consult/{step}",
            axum::routing::post(agents_http::consult_next),
        )
        .route("/v1/reports/queues", get(reports::queues))
        .route("/v1/calls/{id}", get(agents_http::get_call))
        .route("/v1/events", get(events::events))
        .route(
            "/v1/graph/notifications",
            axum::routing::post(http::graph_notifications),
        )
        .route("/v1/openapi.json", get(http::openapi_json))
        .route("/metrics", get(telemetry::metrics_text))
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .with_state(state);
    api.layer(DefaultBodyLimit::max(config.http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_seconds),
        ))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(error::problem_layer))
        .route_layer(axum::middleware::from_fn(telemetry::track))
}

/// Whether `s` is a GUID in its 36-character form (`8-4-4-4-12` hex digits, either case):
/// what Entra's object, tenant and client ids look like, and JSON Schema's `uuid` format.
/// `Uuid::try_parse` alone also takes braces, `urn:uuid:` and bare hex.
pub(crate) fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// A started router: storage open, port bound, not yet serving.
pub struct Router {
    listener: TcpListener,
    app: axum::Router,
    store: Arc<Store>,
    /// The SIP edge, when `[sip] listen` is set.
    sip: Option<edge::EdgeHandle>,
    shutdown_tx: watch::Sender<bool>,
    limits: serve::Limits,
}

impl Router {
    /// Opens storage and binds `http.listen`.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let addr = config.http.listen;
        config.check_exposure(addr)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Self::start_on(config, listener).await
    }

    /// Opens storage and serves on an already bound listener (tests bind 127.0.0.1:0).
    pub async fn start_on(config: Config, listener: TcpListener) -> Result<Self, StartError> {
        let started = Instant::now();
        if config.sip.listen.is_none() && !config.tenants.is_empty() {
            tracing::warn!(
                tenants = config.tenants.len(),
                "[[tenants]] are configured but [sip] listen is not: this router takes no calls"
            );
        }
        if let Ok(addr) = listener.local_addr() {
            config.check_exposure(addr)?;
        }
        let _ = telemetry::prometheus();
        let data_dir = config.data_dir()?;
        let store = Arc::new(Store::open(&data_dir, config.storage.database_url.as_deref()).await?);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let events = EventHub::new(
            config.events.client_buffer,
            Duration::from_secs(config.events.heartbeat_seconds),
            started,
        )
        .limit_clients(config.events.max_clients);
        let presence = Arc::new(presence::PresenceHub::new(
            config.presence.clone(),
            &data_dir,
            events.clone(),
        ));
        tokio::spawn(presence.clone().run(shutdown.clone()));
        let center = Arc::new(desk::CallCenter::new(&config.tenants, Instant::now()));
        // What the API changed applies over the configuration file, in the order it was
        // changed; a change that needs one made after it (a number following a schedule that
        // was edited later) applies on a later pass.
        let mut pending = store.config_changes().await?;
        let mut failed = Vec::new();
        while !pending.is_empty() {
            failed.clear();
            let before = pending.len();
            pending.retain(|(tenant, kind, name, settings)| {
                match config_http::apply_stored(&center, tenant, kind, name, settings.as_deref()) {
                    Ok(()) => false,
                    Err(e) => {
                        failed.push((tenant.clone(), kind.clone(), name.clone(), e));
                        true
                    }
                }
            });
            if pending.len() == before {
                break;
            }
        }
        for (tenant, kind, name, e) in failed {
            tracing::warn!(%tenant, %kind, %name, error = %e, "a stored configuration change no longer applies; skipped");
        }
        // Agents signed in before a restart are again: credentials, state, registration.
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let restored =
            center.restore_sessions(store.agent_sessions().await?, Instant::now(), now_unix);
        if restored > 0 {
            tracing::info!(
                agents = restored,
                "agents' sessions kept from before the restart"
            );
        }
        // Round-robin queues go on after the agent they offered their last call to.
        center.restore_round_robin(store.round_robin().await?);
        // Callbacks callers asked for before the stop are taken up again; their calls stay
        // open. The rest of the calls cut short are closed as interrupted.
        let kept = restore_callbacks(&store, &center).await?;
        let interrupted = store
            .close_interrupted_calls(time::OffsetDateTime::now_utc(), &kept)
            .await?;
        if interrupted > 0 {
            tracing::warn!(
                calls = interrupted,
                "calls cut short when the router last stopped are recorded as interrupted"
            );
        }
        let _ = center.events.set(events.clone());
        if presence.enabled() {
            // The queues follow the agents' Teams presence: an agent in DoNotDisturb, a
            // presentation or a meeting is offered no queue call.
            presence.watch(DESK_WATCHER, center.object_ids());
            let (desk, mut heard) = (center.clone(), events.listen());
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        m = heard.recv() => match m {
                            Ok(p) => {
                                if let switchboard_api::Event::Presence { id, availability, activity, .. } = &p.event {
                                    desk.presence(id, availability, activity);
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => break,
                        },
                        _ = stop.changed() => break,
                    }
                }
            });
        }
        if presence.reads_skills() {
            tokio::spawn(read_graph_skills(
                center.clone(),
                presence.clone(),
                shutdown.clone(),
            ));
        }
        let (records, to_write) = tokio::sync::mpsc::unbounded_channel();
        let _ = center.records.set(records);
        tokio::spawn(desk::write_records(store.clone(), to_write));
        let sip = match config.sip.listen {
            Some(listen) => {
                Some(edge::start(&config.sip, listen, center.clone(), shutdown.clone()).await?)
            }
            None => None,
        };
        let state = AppState {
            store: store.clone(),
            events,
            presence,
            auth: Arc::new(auth::Auth::new(config.auth.clone())),
            shutdown,
            metrics_token: config.http.metrics_token.as_str().into(),
            center,
        };
        let bound = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let app = app(state, &config).layer(axum::middleware::from_fn_with_state(
            gate::Gate::new(&config.http, bound),
            gate::check,
        ));
        Ok(Self {
            listener,
            app,
            store,
            sip,
            shutdown_tx,
            limits: serve::Limits {
                max_connections: config.http.max_connections,
                header_read_timeout: Duration::from_secs(config.http.header_read_timeout_seconds),
            },
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The SIP edge's address, when it listens.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip.as_ref().map(|s| s.local)
    }

    /// The SIP edge's TLS address, when it listens with `[sip.tls]`.
    pub fn sip_tls_addr(&self) -> Option<SocketAddr> {
        self.sip.as_ref().and_then(|s| s.tls)
    }

    /// Serves until `signal` completes, then shuts down gracefully: event clients get
    /// `shutting_down`, requests in flight finish, storage is closed cleanly.
    pub async fn serve(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Router {
            listener,
            app,
            store,
            sip,
            shutdown_tx,
            limits,
        } = self;
        let addr = listener.local_addr().ok();
        tracing::info!(addr = ?addr, "serving");
        let graceful = async move {
            signal.await;
            tracing::info!("shutting down");
            let _ = shutdown_tx.send(true);
        };
        serve::serve(listener, app, limits, graceful).await;
        if let Some(sip) = sip {
            // The edge saw the shutdown too: it hangs up its calls and stops.
            let _ = tokio::time::timeout(Duration::from_secs(5), sip.task).await;
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves on a task of its own until [`Background::stop`] (or drop): for tests,
    /// benchmarks and programs that embed a router. Must be called inside a tokio runtime.
    pub fn spawn(self) -> Background {
        let url = format!("http://{}", self.local_addr());
        let sip = self.sip_addr();
        let sip_tls = self.sip_tls_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async move {
            let _ = stopped.await;
        }));
        Background {
            url,
            sip,
            sip_tls,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A router serving in the background ([`Router::spawn`]); dropping it stops it too.
pub struct Background {
    url: String,
    sip: Option<SocketAddr>,
    sip_tls: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), StartError>>>,
}

impl Background {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SIP edge's address, when it listens.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip
    }

    /// The SIP edge's TLS address, when it listens with `[sip.tls]`.
    pub fn sip_tls_addr(&self) -> Option<SocketAddr> {
        self.sip_tls
    }

    /// Stops gracefully and waits (at most 10 s) for the shutdown to finish.
    pub async fn stop(mut self) -> Result<(), StartError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => match tokio::time::timeout(Duration::from_secs(10), t).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(StartError::Serve(std::io::Error::other(e))),
                Err(_) => Err(StartError::Serve(std::io::Error::other(
                    "the router did not stop within 10 s",
                ))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Hands the SIP edge the callbacks kept from before the router stopped that can still be
/// made — their tenant, trunk and queue still there, the queue still offering callbacks, not
/// expired, their call still open — and forgets the others (their calls are then closed as
/// interrupted). Returns the ids of the calls taken up.
/// Reads the Microsoft 365 skills (Graph `skills`) of the agents of tenants with an expert
/// group that counts them, each `[presence] skills_seconds`, a failed read again a minute
/// later; agents who get an object id (at sign-in) are read within ten seconds.
async fn read_graph_skills(
    center: Arc<desk::CallCenter>,
    presence: Arc<presence::PresenceHub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const RETRY: Duration = Duration::from_secs(60);
    let every = presence.skills_every();
    let mut next: std::collections::HashMap<String, Instant> = Default::default();
    loop {
        let ids = center.graph_skill_ids();
        next.retain(|id, _| ids.contains(id));
        for id in ids {
            if next.get(&id).is_some_and(|t| Instant::now() < *t) {
                continue;
            }
            let wait = match presence.skills(&id).await {
                Some(skills) => {
                    tracing::debug!(user = %id, skills = skills.len(), "an agent's skills from Graph");
                    center.graph_skills(&id, &skills);
                    every
                }
                None => RETRY.min(every),
            };
            next.insert(id, Instant::now() + wait);
        }
        tokio::select! {
            _ = tokio::time::sleep(every.min(Duration::from_secs(10))) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

async fn restore_callbacks(
    store: &store::Store,
    center: &desk::CallCenter,
) -> Result<std::collections::HashSet<String>, store::StoreError> {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut kept = std::collections::HashSet::new();
    let mut restored = Vec::new();
    for p in store.pending_callbacks().await? {
        let expire_minutes = center.with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == p.tenant)?;
            t.spec
                .trunks
                .iter()
                .find(|x| x.name == p.trunk && !x.retired && x.places_calls())?;
            let q = t.queue(*t.queue_ids.get(&p.queue)?)?;
            Some(q.callback.as_ref()?.expire_minutes)
        });
        let live = expire_minutes
            .is_some_and(|m| p.requested_at_ms.saturating_add(m as i64 * 60_000) > now_ms);
        let rec = match live {
            true => store.get_call(&p.id).await?,
            false => None,
        };
        match rec.filter(|r| r.outcome == switchboard_api::CallOutcome::InProgress) {
            Some(rec) => {
                kept.insert(p.id.clone());
                restored.push((p, rec));
            }
            None => {
                tracing::warn!(call = %p.id, tenant = %p.tenant, "a callback kept from before the restart can no longer be made (expired, or its queue, trunk or callback offer is gone)");
                store.delete_pending_callback(&p.id).await?;
            }
        }
    }
    if !restored.is_empty() {
        tracing::info!(
            callbacks = restored.len(),
            "callbacks kept from before the restart are back in their queues"
        );
    }
    if let Ok(mut r) = center.restored_callbacks.lock() {
        *r = restored;
    }
    Ok(kept)
}
