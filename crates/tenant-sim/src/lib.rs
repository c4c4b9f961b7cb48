//! `switchboard-tenant-sim`: a local stand-in for a Microsoft 365 tenant, for Switchboard's
//! demo mode and tests. One HTTP server speaks:
//!
//! - the Microsoft identity platform v2.0 under `/{tenant}/...` (`tenant` = the tenant id,
//!   the demo domain, `common` or `organizations`): OpenID discovery (with Microsoft's
//!   `{tenantid}` issuer template for `common`/`organizations`), `/oauth2/v2.0/authorize`
//!   with a small login page, `/oauth2/v2.0/token` (authorization code + PKCE, refresh with
//!   rotation, device code), `/oauth2/v2.0/devicecode` with the `/devicelogin` page,
//!   `/discovery/v2.0/keys`, and AADSTS error bodies. Tokens are RS256 JWTs signed by a key
//!   made at start;
//! - Microsoft Graph v1.0 under `/v1.0`: `/me`, `/users` (`$search`, `$filter`, `$select`,
//!   `$top`, `$orderby`, `$count`, paging), photos, presence (get, batch, setPresence,
//!   clearPresence, setUserPreferredPresence, setStatusMessage, with Microsoft's session
//!   aggregation) and change-notification subscriptions on presence with real webhook
//!   delivery;
//! - test and demo controls under `/_sim` (see [`admin`]).
//!
//! Every demo user's password is [`DEMO_PASSWORD`]; the desktop app's client id is
//! [`DEMO_CLIENT_ID`]. Routes are listed in the crate's README.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_tenant_sim::SimError> {
//! use switchboard_tenant_sim::{Config, TenantSim};
//! let sim = TenantSim::start(Config::default()).await?; // 127.0.0.1, ephemeral port
//! println!("authority {}", sim.authority());            // http://127.0.0.1:PORT/{tid}/v2.0
//! println!("graph     {}", sim.graph_url());            // http://127.0.0.1:PORT/v1.0
//! let token = sim.mint_access_token("AdeleV@contoso.example", &["User.Read", "Presence.Read.All"])?;
//! # let _ = token;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod admin;
pub mod avatar;
pub mod batch;
pub mod clock;
pub mod directory;
pub mod errors;
pub mod grants;
pub mod graph;
pub mod identity;
pub mod keys;
pub mod odata;
mod pages;
pub mod presence;
pub mod subscriptions;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use clock::SimClock;
pub use directory::{DemoUser, DEMO_DOMAIN, DEMO_PASSWORD};
pub use keys::SigningKey;

use crate::directory::Directory;
use crate::grants::GrantStore;
use crate::keys::{AccessClaims, KeyError, KeyRing};
use crate::presence::{Pair, PresenceBook};
use crate::subscriptions::SubscriptionStore;
use crate::throttle::Throttle;

/// The simulated tenant's id.
pub const DEMO_TENANT_ID: &str = "5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0";
/// The client id of the Switchboard desktop app registration in the simulated tenant.
pub const DEMO_CLIENT_ID: &str = "8f3b2a61-1c57-4d0e-a7b2-5c3a9e6d1f20";
/// The application id URI of the router's API (scope `api://switchboard-router/access_as_user`).
pub const ROUTER_API: &str = "api://switchboard-router";
/// The client id of the router's API registration: the `aud` of the v2.0 access tokens for it
/// (Entra names the API by its client id in v2.0 tokens, whatever scope form was asked).
pub const ROUTER_API_CLIENT_ID: &str = "3c0ffee5-2b1a-4c9d-8e7f-6a5b4c3d2e1f";
/// Microsoft Graph's resource (the `aud` of Graph tokens).
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Graph's well-known application id, also accepted as `aud`.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Settings of a simulated tenant. Defaults suit tests: 127.0.0.1 on an ephemeral port.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// The tenant id (default [`DEMO_TENANT_ID`]).
    pub tenant_id: String,
    /// Public base URL for issuers and links (default `http://{listen address}`), e.g. when
    /// the simulator sits behind a proxy.
    pub issuer_base: Option<String>,
    /// Generated users added to the 50 seeded ones (scale tests).
    pub extra_users: usize,
    /// Registered public client ids (default: [`DEMO_CLIENT_ID`]). Others get AADSTS700016.
    pub client_ids: Vec<String>,
    /// Access/id token lifetime (default 1 hour).
    pub token_lifetime: Duration,
    /// Device-code polling interval announced to clients (default 5 s).
    pub device_code_interval: Duration,
    /// Presence calls allowed per window per application (default 1,500 per 30 s).
    pub presence_rate_limit: (u32, Duration),
    /// Budget of the subscription validation request (default 10 s, as Graph).
    pub validation_timeout: Duration,
    /// Budget of a notification delivery (default 3 s, as Graph).
    pub notification_timeout: Duration,
    /// A pre-made signing key (tests share one; default: generate at start).
    pub signing_key: Option<Arc<SigningKey>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant_id: DEMO_TENANT_ID.to_string(),
            issuer_base: None,
            extra_users: 0,
            client_ids: vec![DEMO_CLIENT_ID.to_string()],
            token_lifetime: Duration::from_secs(3600),
            device_code_interval: Duration::from_secs(5),
            presence_rate_limit: (1500, Duration::from_secs(30)),
            validation_timeout: Duration::from_secs(10),
            notification_timeout: Duration::from_secs(3),
            signing_key: None,
        }
    }
}

/// Why the simulator could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {source}; pick another --listen address or port 0")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Key generation or signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The HTTP client for webhooks could not be built.
    #[error("could not build the webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// A user that is not in the directory.
    #[error("no user '{0}' in the simulated directory")]
    UnknownUser(String),
    /// A scope the simulator does not know.
    #[error("{0}")]
    Scope(String),
    /// One of the simulator's pages did not answer as a browser expects.
    #[error("the simulated tenant's page did not answer: {0}")]
    Page(reqwest::Error),
}

/// The person on the device-code page: enters `user_code` at `verification_uri` and signs
/// in as `login` with [`DEMO_PASSWORD`], posting the form as a browser would. For tests,
/// benchmarks and scripts that play the person's part.
pub async fn enter_device_code(
    verification_uri: &str,
    user_code: &str,
    login: &str,
) -> Result<(), SimError> {
    reqwest::Client::new()
        .post(verification_uri)
        .form(&[
            ("otc", user_code),
            ("login", login),
            ("passwd", DEMO_PASSWORD),
        ])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(SimError::Page)?;
    Ok(())
}

/// State every handler reaches.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) public_url: String,
    pub(crate) clock: SimClock,
    pub(crate) keys: RwLock<KeyRing>,
    pub(crate) directory: RwLock<Directory>,
    pub(crate) presence: Mutex<PresenceBook>,
    pub(crate) grants: Mutex<GrantStore>,
    pub(crate) subs: Mutex<SubscriptionStore>,
    pub(crate) throttle: Mutex<Throttle>,
    pub(crate) http: reqwest::Client,
    /// The `claims` of the last interactive sign-in that carried one (for tests).
    pub(crate) last_claims: Mutex<Option<String>>,
    /// Change notifications still to be lost (see `POST /_sim/notifications/lose`).
    pub(crate) lose_changes: std::sync::atomic::AtomicUsize,
}

/// Sets user `uid`'s Teams-client presence (`None`: signed out of Teams) and delivers the
/// change to subscriptions.
pub(crate) fn set_teams_presence(s: &AppState, uid: &str, pair: Option<Pair>) {
    let change = lock(&s.presence).set_teams(uid, pair, s.clock.now());
    if let Some(c) = change {
        subscriptions::dispatch(s, vec![c]);
    }
}

/// Locks a mutex, recovering from poisoning (a panicked handler must not take the
/// simulator down with it).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// `{public_url}/{tid}/v2.0`.
    pub(crate) fn issuer_for(&self, tid: &str) -> String {
        format!("{}/{}/v2.0", self.public_url, tid)
    }
    /// `{public_url}/v1.0`.
    pub(crate) fn graph_base(&self) -> String {
        format!("{}/v1.0", self.public_url)
    }
}

/// A running simulated tenant.
pub struct TenantSim {
    addr: SocketAddr,
    shared: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

impl TenantSim {
    /// Binds, seeds the directory and presence, and serves in the background.
    pub async fn start(config: Config) -> Result<Self, SimError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        let key = match &config.signing_key {
            Some(k) => k.clone(),
            None => tokio::task::spawn_blocking(SigningKey::generate)
                .await
                .map_err(|e| SimError::Key(KeyError::Generate(e.to_string())))??,
        };
        let public_url = config
            .issuer_base
            .clone()
            .map(|s| s.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{addr}"));
        let clock = SimClock::new();
        let directory = Directory::new(config.extra_users);
        let mut presence = PresenceBook::new();
        let now = clock.now();
        for u in directory.all() {
            presence.set_teams(&u.id, u.seed_presence.map(|(a, b)| Pair::new(a, b)), now);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let shared = Arc::new(Shared {
            throttle: Mutex::new(Throttle::new(
                config.presence_rate_limit.0,
                config.presence_rate_limit.1,
            )),
            config,
            public_url,
            clock,
            keys: RwLock::new(KeyRing::new(key)),
            directory: RwLock::new(directory),
            presence: Mutex::new(presence),
            grants: Mutex::new(GrantStore::new()),
            subs: Mutex::new(SubscriptionStore::new()),
            http,
            last_claims: Mutex::new(None),
            lose_changes: std::sync::atomic::AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .merge(identity::routes())
            .merge(graph::routes())
            .merge(batch::routes())
            .merge(admin::routes())
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "tenant-sim server stopped with an error");
            }
        });
        let ticker_state = shared.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                subscriptions::tick(&ticker_state);
            }
        });
        tracing::info!(%addr, tenant = %shared.config.tenant_id, "simulated tenant listening");
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            server,
            ticker,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT` (or the configured issuer base).
    pub fn base_url(&self) -> &str {
        &self.shared.public_url
    }
    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.shared.config.tenant_id
    }
    /// The authority for this tenant: `{base}/{tenant id}/v2.0`.
    pub fn authority(&self) -> String {
        self.shared.issuer_for(&self.shared.config.tenant_id)
    }
    /// Graph's base: `{base}/v1.0`.
    pub fn graph_url(&self) -> String {
        self.shared.graph_base()
    }
    /// The simulator's clock (tests move it with [`SimClock::advance`] and then call
    /// [`TenantSim::tick`], or use `POST /_sim/clock/advance`).
    pub fn clock(&self) -> SimClock {
        self.shared.clock.clone()
    }
    /// Re-evaluates everything time-dependent now (presence expiry, subscription expiry).
    pub fn tick(&self) {
        subscriptions::tick(&self.shared);
    }
    /// A copy of the directory.
    pub fn users(&self) -> Vec<DemoUser> {
        read(&self.shared.directory).all().to_vec()
    }
    /// Adds generated users; returns them.
    pub fn add_users(&self, count: usize) -> Vec<DemoUser> {
        let new = write(&self.shared.directory).add_generated(count);
        let now = self.shared.clock.now();
        let mut book = lock(&self.shared.presence);
        for u in &new {
            book.set_teams(&u.id, u.seed_presence.map(|(a, b)| Pair::new(a, b)), now);
        }
        new
    }

    /// A user's object id, found by id or user principal name.
    pub fn user_id(&self, id_or_upn: &str) -> Option<String> {
        read(&self.shared.directory)
            .find(id_or_upn)
            .map(|u| u.id.clone())
    }

    /// Sets a user's simulated Teams-client presence (`None`: signed out of Teams), as
    /// `POST /_sim/users/{id}/presence` does, and delivers the change to subscriptions.
    pub fn set_teams_presence(
        &self,
        id_or_upn: &str,
        pair: Option<(&str, &str)>,
    ) -> Result<(), SimError> {
        let uid = self
            .user_id(id_or_upn)
            .ok_or_else(|| SimError::UnknownUser(id_or_upn.to_string()))?;
        set_teams_presence(&self.shared, &uid, pair.map(|(a, b)| Pair::new(a, b)));
        Ok(())
    }

    /// A user's presence as Graph shows it now (every session aggregated):
    /// `(availability, activity)`.
    pub fn presence(&self, id_or_upn: &str) -> Option<(String, String)> {
        let uid = self.user_id(id_or_upn)?;
        let view = lock(&self.shared.presence).view(&uid, self.shared.clock.now());
        Some((view.pair.availability, view.pair.activity))
    }

    /// When an application last set or refreshed a presence session of the user (its
    /// `setPresence`), on the tenant's clock: tests wait for a renewal with it instead of
    /// sleeping.
    pub fn app_session_refreshed_at(&self, id_or_upn: &str) -> Option<Instant> {
        let uid = self.user_id(id_or_upn)?;
        let now = self.shared.clock.now();
        lock(&self.shared.presence).app_session_refreshed_at(&uid, now)
    }

    /// Revokes a user's sign-in sessions (Graph's `revokeSignInSessions`, or an admin
    /// resetting a password): refresh tokens stop working, and Graph answers access tokens
    /// issued before now with a continuous-access-evaluation claims challenge (401,
    /// `insufficient_claims`). The same as `POST /_sim/users/{id}/revoke`.
    pub fn revoke_sessions(&self, id_or_upn: &str) -> Result<usize, SimError> {
        let uid = self
            .user_id(id_or_upn)
            .ok_or_else(|| SimError::UnknownUser(id_or_upn.to_string()))?;
        Ok(lock(&self.shared.grants).revoke_user(&uid, self.shared.clock.unix()))
    }

    /// Loses the next `count` presence changes' notifications, as Graph may without saying
    /// so (no lifecycle notification announces it for presence). The same as
    /// `POST /_sim/notifications/lose`.
    pub fn lose_notifications(&self, count: usize) {
        self.shared
            .lose_changes
            .store(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// The `claims` request of the last interactive sign-in that carried one.
    pub fn last_sign_in_claims(&self) -> Option<String> {
        lock(&self.shared.last_claims).clone()
    }

    /// Mints a Graph (or router API) access token for a demo user, exactly as the token
    /// endpoint would after a sign-in with [`DEMO_CLIENT_ID`] declaring the `cp1` capability
    /// (as Switchboard's clients do). For tests of Graph clients that do not exercise the
    /// sign-in itself.
    pub fn mint_access_token(&self, user: &str, scopes: &[&str]) -> Result<String, SimError> {
        let u = read(&self.shared.directory)
            .find(user)
            .cloned()
            .ok_or_else(|| SimError::UnknownUser(user.to_string()))?;
        let scope_line = scopes.join(" ");
        let req =
            identity::parse_scopes(&scope_line).map_err(|e| SimError::Scope(e.description))?;
        let claims: AccessClaims =
            identity::access_claims(&self.shared, &u, DEMO_CLIENT_ID, &req, &["cp1".into()]);
        Ok(read(&self.shared.keys).sign(&claims)?)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ticker.abort();
        let _ = (&mut self.server).await;
    }
}

impl Drop for TenantSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ticker.abort();
    }
}
