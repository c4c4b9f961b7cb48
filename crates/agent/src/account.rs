//! The agent's Microsoft account: which tenant to sign in to ([`TenantSettings`], kept in
//! `tenant.toml` beside the settings), the signed-in accounts and their tokens
//! ([`Accounts`], over `switchboard-identity`'s cache with its key in the OS keychain), and a
//! Microsoft Graph client acting for an account (`switchboard-graph`).
//!
//! A fresh install signs in nowhere until `tenant.toml` names the organisation's tenant
//! (README, "Use with your Microsoft 365 tenant"): without it, whatever answered on a local
//! port would be trusted as the identity provider and Graph. Demo mode writes a `tenant.toml`
//! for the simulated tenant it starts on `127.0.0.1:7710` ([`TenantSettings::simulated`]).
//!
//! The tenant lives in its own file rather than in [`crate::Settings`]: Settings → General
//! saves the whole settings object, and an administrator's tenant configuration must not
//! depend on every front end carrying it through.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_graph::{AccessTokenProvider, GraphClient, GraphConfig, TokenError, TokenFuture};
use switchboard_identity::client::{Browser, DeviceCode, Interactive};
use switchboard_identity::{
    Account, ClientConfig, EncryptedFile, IdentityClient, IdentityError, TokenCache,
};

use crate::settings::CONFIG_DIR_ENV;

/// The platform's browser opener (honours `$BROWSER` on Linux), for front ends.
pub use switchboard_identity::client::SystemBrowser;

/// Where demo mode runs the simulated tenant.
pub const SIM_BASE_URL: &str = "http://127.0.0.1:7710";
/// The simulated tenant's id (`switchboard-tenant-sim`'s default).
pub const SIM_TENANT_ID: &str = "5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0";
/// The app's client id in the simulated tenant.
pub const SIM_CLIENT_ID: &str = "8f3b2a61-1c57-4d0e-a7b2-5c3a9e6d1f20";

/// The delegated Graph permissions the agent asks for at sign-in: the person's profile, the
/// directory's basic profiles (the SME directory), everyone's presence, and writing one's
/// own presence. None of them needs an administrator's consent.
pub const GRAPH_SCOPES: [&str; 4] = [
    "User.Read",
    "User.ReadBasic.All",
    "Presence.Read.All",
    "Presence.ReadWrite",
];

/// The delegated permission that reads people's full profiles, skills among them (needs an
/// administrator's consent): asked for where [`TenantSettings::read_skills`] is on.
pub const SKILLS_SCOPE: &str = "User.Read.All";

/// The file name of the tenant configuration in the configuration folder.
pub const TENANT_FILE: &str = "tenant.toml";

/// Which identity provider and Graph the agent uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// `https://login.microsoftonline.com/{tenant id|organizations|common}/v2.0`, or any
    /// OpenID Connect issuer.
    pub authority: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// Microsoft Graph's base URL; by default Graph for Microsoft authorities and
    /// `{authority's origin}/v1.0` otherwise (the simulated tenant's layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    /// The routing service's API scope (e.g. `api://switchboard-router/access_as_user`),
    /// when the router asks for tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_scope: Option<String>,
    /// Whether the directory reads people's skills (Graph `skills`). They are outside the
    /// basic profile `User.ReadBasic.All` covers, so sign-in then asks for `User.Read.All`,
    /// which needs an administrator's consent for the app registration: set it only once
    /// that is granted (else sign-in stops at "Need admin approval").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_skills: bool,
}

impl TenantSettings {
    /// The simulated tenant demo mode runs on `127.0.0.1:7710` (what `scripts/demo.sh`
    /// writes into the demo's `tenant.toml`).
    pub fn simulated() -> Self {
        Self {
            authority: format!("{SIM_BASE_URL}/{SIM_TENANT_ID}/v2.0"),
            client_id: SIM_CLIENT_ID.into(),
            graph_url: None,
            router_scope: Some("api://switchboard-router/access_as_user".into()),
            read_skills: true,
        }
    }
}

/// Microsoft's public-cloud and national-cloud login hosts, and their Graph.
const MICROSOFT_CLOUDS: [(&str, &str); 3] = [
    (
        "login.microsoftonline.com",
        "https://graph.microsoft.com/v1.0",
    ),
    (
        "login.microsoftonline.us",
        "https://graph.microsoft.us/v1.0",
    ),
    (
        "login.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn/v1.0",
    ),
];

impl TenantSettings {
    /// Checks what an administrator wrote.
    pub fn validated(self) -> Result<Self, AccountError> {
        let bad = |what: &str| AccountError::Tenant(what.to_owned());
        let authority = url::Url::parse(self.authority.trim()).map_err(|e| {
            bad(&format!(
                "the authority {:?} is not a URL: {e}",
                self.authority
            ))
        })?;
        let loopback = matches!(
            authority.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]")
        );
        if authority.scheme() != "https" && !(authority.scheme() == "http" && loopback) {
            return Err(bad(&format!(
                "the authority {} must use https (plain http only on 127.0.0.1)",
                self.authority
            )));
        }
        if self.client_id.trim().is_empty() {
            return Err(bad("the client id is empty"));
        }
        if let Some(g) = &self.graph_url {
            url::Url::parse(g)
                .map_err(|e| bad(&format!("the Graph URL {g:?} is not a URL: {e}")))?;
        }
        Ok(Self {
            authority: self.authority.trim().trim_end_matches('/').to_owned(),
            client_id: self.client_id.trim().to_owned(),
            ..self
        })
    }

    /// Graph's base URL for this tenant.
    pub fn graph_url(&self) -> String {
        if let Some(g) = &self.graph_url {
            return g.trim_end_matches('/').to_owned();
        }
        let Ok(u) = url::Url::parse(&self.authority) else {
            return switchboard_graph::DEFAULT_BASE_URL.to_owned();
        };
        let host = u.host_str().unwrap_or_default();
        if let Some((_, graph)) = MICROSOFT_CLOUDS.iter().find(|(h, _)| *h == host) {
            return (*graph).to_owned();
        }
        format!("{}/v1.0", u.origin().ascii_serialization())
    }
}

/// Loads and saves `tenant.toml`.
#[derive(Debug, Clone)]
pub struct TenantStore {
    path: PathBuf,
}

impl TenantStore {
    /// `tenant.toml` in `$SWITCHBOARD_CONFIG_DIR` or the platform's configuration folder.
    pub fn for_current_user() -> Result<Self, AccountError> {
        let dir = match std::env::var_os(CONFIG_DIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => directories::ProjectDirs::from("cc", "Switchboard", "switchboard")
                .ok_or_else(|| {
                    AccountError::Tenant("no configuration folder for this user".into())
                })?
                .config_dir()
                .to_path_buf(),
        };
        Ok(Self::at(dir.join(TENANT_FILE)))
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tenant; [`AccountError::NoTenant`] when none is configured.
    pub fn load(&self) -> Result<TenantSettings, AccountError> {
        self.load_if_any()?
            .ok_or_else(|| AccountError::NoTenant(self.path.display().to_string()))
    }

    /// The tenant, or `None` when the file does not exist.
    pub fn load_if_any(&self) -> Result<Option<TenantSettings>, AccountError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(AccountError::Tenant(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )))
            }
        };
        let t: TenantSettings = toml::from_str(&text).map_err(|e| {
            AccountError::Tenant(format!("{} is not valid: {e}", self.path.display()))
        })?;
        t.validated().map(Some)
    }

    pub fn save(&self, t: TenantSettings) -> Result<TenantSettings, AccountError> {
        let t = t.validated()?;
        let text = toml::to_string(&t).map_err(|e| AccountError::Tenant(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                AccountError::Tenant(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| {
                AccountError::Tenant(format!("cannot save {}: {e}", self.path.display()))
            })?;
        Ok(t)
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Graph(#[from] switchboard_graph::GraphError),
    #[error("the tenant configuration is not usable: {0} — fix tenant.toml or sign in with --authority and --client-id")]
    Tenant(String),
    #[error("not signed in — sign in with Microsoft first (switchboard-agent login)")]
    NotSignedIn,
    #[error("people's skills are not read in this tenant — an administrator grants the app User.Read.All (admin consent) and sets read_skills = true in tenant.toml; then sign in again")]
    SkillsNotRead,
    #[error("no Microsoft 365 tenant is configured — write your organisation's authority and client_id into {0} (README: \"Use with your Microsoft 365 tenant\"), or sign in with switchboard-agent login --authority … --client-id …")]
    NoTenant(String),
}

impl AccountError {
    /// A stable code for the UI.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Identity(e) => e.code(),
            Self::Graph(e) if e.needs_sign_in() => "sign_in_again",
            Self::Graph(_) => "graph_error",
            Self::Tenant(_) => "invalid_tenant",
            Self::NotSignedIn => "not_signed_in",
            Self::NoTenant(_) => "no_tenant",
            Self::SkillsNotRead => "skills_not_read",
        }
    }
}

/// The signed-in accounts of this user, for one tenant configuration.
pub struct Accounts {
    tenant: TenantSettings,
    cache: Arc<TokenCache>,
    key_fallback: Option<String>,
    key_in_keychain: bool,
    client: tokio::sync::OnceCell<Arc<IdentityClient>>,
    /// A claims challenge no silent renewal could meet: the next interactive sign-in
    /// carries it.
    pending_claims: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Opens the user's token cache (its key in the OS keychain where one answers).
    pub fn open(tenant: TenantSettings) -> Result<Self, AccountError> {
        let storage = EncryptedFile::for_current_user()?;
        let key_fallback = storage.fallback().map(str::to_owned);
        let key_in_keychain = matches!(
            storage.key_place(),
            switchboard_identity::KeyPlace::Keychain { .. }
        );
        Ok(Self {
            tenant: tenant.validated()?,
            cache: Arc::new(TokenCache::open(Box::new(storage))?),
            key_fallback,
            key_in_keychain,
            client: tokio::sync::OnceCell::new(),
            pending_claims: Arc::default(),
        })
    }

    /// The claims a resource asked for that need a fresh sign-in, if any.
    pub fn pending_claims(&self) -> Option<String> {
        self.pending_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn tenant(&self) -> &TenantSettings {
        &self.tenant
    }

    /// Set when tokens are kept under a key file because no keychain answered: why.
    pub fn key_fallback(&self) -> Option<&str> {
        self.key_fallback.as_deref()
    }

    /// Whether the token cache's key is in the OS keychain (else in a file beside it).
    pub fn key_in_keychain(&self) -> bool {
        self.key_in_keychain
    }

    /// The identity client for the tenant (discovered once).
    pub async fn client(&self) -> Result<Arc<IdentityClient>, AccountError> {
        let c = self
            .client
            .get_or_try_init(|| async {
                IdentityClient::discover(ClientConfig::new(
                    &self.tenant.authority,
                    &self.tenant.client_id,
                ))
                .await
                .map(Arc::new)
            })
            .await?;
        Ok(c.clone())
    }

    /// What sign-in asks for: [`GRAPH_SCOPES`], `User.Read.All` where the tenant reads
    /// skills, and `extra`.
    fn scopes(&self, extra: &[String]) -> Vec<String> {
        let mut v: Vec<String> = GRAPH_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        if self.tenant.read_skills {
            v.push(SKILLS_SCOPE.to_owned());
        }
        for s in extra {
            if !v.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                v.push(s.clone());
            }
        }
        v
    }

    /// Interactive sign-in in the browser; the account is kept.
    pub async fn sign_in(
        &self,
        extra_scopes: &[String],
        login_hint: Option<String>,
        browser: &dyn Browser,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<Account, AccountError> {
        let client = self.client().await?;
        let claims = self.pending_claims();
        let req = Interactive {
            scopes: self.scopes(extra_scopes),
            login_hint,
            claims: claims.clone(),
            ..Default::default()
        };
        let s = client.sign_in_interactive(&req, browser, cancel).await?;
        if claims.is_some() {
            tracing::info!("signed in again for a claims challenge");
            // Tokens cached for other resources predate the challenge: renewed on use.
            self.cache.expire_access_tokens(&s.account.id);
            *self
                .pending_claims
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.cache.store(&s)?;
        Ok(s.account)
    }

    /// Starts a device-code sign-in: show the code, then [`Self::finish_device_code`].
    pub async fn start_device_code(
        &self,
        extra_scopes: &[String],
    ) -> Result<DeviceCode, AccountError> {
        Ok(self
            .client()
            .await?
            .start_device_code(&self.scopes(extra_scopes))
            .await?)
    }

    pub async fn finish_device_code(
        &self,
        code: &DeviceCode,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<Account, AccountError> {
        let s = self
            .client()
            .await?
            .finish_device_code(code, cancel)
            .await?;
        self.cache.store(&s)?;
        Ok(s.account)
    }

    /// The signed-in accounts of this tenant's authority.
    pub fn accounts(&self) -> Vec<Account> {
        self.cache
            .accounts()
            .into_iter()
            .filter(|a| same_authority(&a.authority, &self.tenant.authority))
            .collect()
    }

    /// The account commands act for: the one named (username or id), else the first.
    pub fn current(&self, who: Option<&str>) -> Result<Account, AccountError> {
        let all = self.accounts();
        match who {
            Some(w) => all.into_iter().find(|a| {
                a.id == w
                    || a.username
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(w))
            }),
            None => all.into_iter().next(),
        }
        .ok_or(AccountError::NotSignedIn)
    }

    /// Signs an account out: its tokens leave the cache (the last one out empties it and
    /// its keychain entry).
    pub fn sign_out(&self, account_id: &str) -> Result<bool, AccountError> {
        Ok(self.cache.remove(account_id)?)
    }

    /// A token for `scopes`, renewed silently when due.
    pub async fn token(
        &self,
        account: &Account,
        scopes: &[String],
    ) -> Result<String, AccountError> {
        let client = self.client().await?;
        let t = self.cache.token(&client, &account.id, scopes).await?;
        Ok(t.expose().to_owned())
    }

    /// A Graph client acting for `account`.
    pub async fn graph(&self, account: &Account) -> Result<GraphClient, AccountError> {
        let tokens = CacheTokens {
            cache: self.cache.clone(),
            client: self.client().await?,
            account_id: account.id.clone(),
            pending_claims: self.pending_claims.clone(),
        };
        Ok(GraphClient::new(
            GraphConfig {
                base_url: self.tenant.graph_url(),
                client_id: self.tenant.client_id.clone(),
                ..GraphConfig::default()
            },
            Arc::new(tokens),
        )?)
    }
}

/// Authorities compared without case and trailing slash.
fn same_authority(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// Graph's tokens, from the cache.
struct CacheTokens {
    cache: Arc<TokenCache>,
    client: Arc<IdentityClient>,
    account_id: String,
    pending_claims: Arc<std::sync::Mutex<Option<String>>>,
}

impl AccessTokenProvider for CacheTokens {
    fn access_token<'a>(&'a self, request: switchboard_graph::TokenRequest<'a>) -> TokenFuture<'a> {
        Box::pin(async move {
            if request.force_refresh {
                self.cache.expire_access_tokens(&self.account_id);
            }
            let scopes: Vec<String> = request.scopes.iter().map(|s| (*s).to_owned()).collect();
            match self
                .cache
                .token_with_claims(&self.client, &self.account_id, &scopes, request.claims)
                .await
            {
                Ok(t) => Ok(t.expose().to_owned()),
                Err(e) => {
                    let interactive = matches!(
                        e.action(),
                        switchboard_identity::Action::SignInAgain
                            | switchboard_identity::Action::Interact
                            | switchboard_identity::Action::GrantConsent
                    ) || matches!(e, IdentityError::NotSignedIn);
                    if interactive {
                        // The token endpoint's own claims (an MFA step-up, AADSTS50076) come
                        // first; else the resource's challenge.
                        let endpoint_claims = match &e {
                            IdentityError::Provider(p) => p.claims.clone(),
                            _ => None,
                        };
                        if let Some(c) = endpoint_claims.or(request.claims.map(str::to_owned)) {
                            *self
                                .pending_claims
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = Some(c);
                        }
                    }
                    Err(if interactive {
                        TokenError::interaction_required(e.to_string())
                    } else {
                        TokenError::new(e.to_string())
                    })
                }
            }
        })
    }
}

/// The signed-in person as the window shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AccountInfo {
    pub id: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub oid: Option<String>,
    pub tid: Option<String>,
    /// `keychain`, or `file` where no keychain answered.
    pub key_storage: String,
    /// Why the keychain could not be used, when it could not.
    pub key_warning: Option<String>,
    /// Whether the directory reads people's skills (the tenant's `read_skills`).
    pub reads_skills: bool,
}

/// A device code to show the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct DeviceCodeInfo {
    pub user_code: String,
    pub verification_uri: String,
    /// The provider's own sentence, when it sends one.
    pub message: Option<String>,
    pub expires_in_seconds: u32,
}

/// The desktop's account state: the accounts opened lazily from `tenant.toml`, the sign-in
/// in progress (one at a time, cancellable), favourites and the directory's skill cache.
pub struct AccountSession {
    accounts: tokio::sync::OnceCell<Arc<Accounts>>,
    favourites: crate::directory::Favourites,
    skills: crate::directory::SkillCache,
    photos: crate::directory::PhotoCache,
    cancel: tokio::sync::watch::Sender<u64>,
    device: tokio::sync::Mutex<Option<DeviceCode>>,
}

impl std::fmt::Debug for AccountSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSession").finish_non_exhaustive()
    }
}

impl AccountSession {
    /// Favourites are kept in `config_dir/favourites.json`.
    pub fn new(config_dir: &Path) -> Self {
        Self {
            accounts: tokio::sync::OnceCell::new(),
            favourites: crate::directory::Favourites::open(config_dir.join("favourites.json")),
            skills: crate::directory::SkillCache::default(),
            photos: crate::directory::PhotoCache::default(),
            cancel: tokio::sync::watch::channel(0).0,
            device: tokio::sync::Mutex::new(None),
        }
    }

    /// The accounts of the configured tenant (opened on first use).
    pub async fn accounts(&self) -> Result<Arc<Accounts>, AccountError> {
        let a = self
            .accounts
            .get_or_try_init(|| async {
                let tenant = TenantStore::for_current_user()?.load()?;
                let a = tokio::task::spawn_blocking(move || Accounts::open(tenant))
                    .await
                    .map_err(|e| AccountError::Tenant(e.to_string()))??;
                Ok::<_, AccountError>(Arc::new(a))
            })
            .await?;
        Ok(a.clone())
    }

    fn info(accounts: &Accounts, a: &Account) -> AccountInfo {
        AccountInfo {
            id: a.id.clone(),
            username: a.username.clone(),
            name: a.name.clone(),
            oid: a.oid.clone(),
            tid: a.tid.clone(),
            key_storage: if accounts.key_in_keychain() {
                "keychain"
            } else {
                "file"
            }
            .into(),
            key_warning: accounts.key_fallback().map(str::to_owned),
            reads_skills: accounts.tenant().read_skills,
        }
    }

    /// The signed-in account, if any.
    pub async fn current(&self) -> Result<Option<AccountInfo>, AccountError> {
        let accounts = self.accounts().await?;
        Ok(accounts
            .current(None)
            .ok()
            .map(|a| Self::info(&accounts, &a)))
    }

    fn cancelled(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut rx = self.cancel.subscribe();
        async move {
            let _ = rx.changed().await;
        }
    }

    /// Ends the sign-in in progress (browser or device code).
    pub fn cancel_sign_in(&self) {
        self.cancel.send_modify(|n| *n += 1);
    }

    /// Signs in in the system browser.
    pub async fn sign_in(&self, browser: &dyn Browser) -> Result<AccountInfo, AccountError> {
        let accounts = self.accounts().await?;
        let a = accounts
            .sign_in(&[], None, browser, self.cancelled())
            .await?;
        Ok(Self::info(&accounts, &a))
    }

    /// Starts a device-code sign-in; [`Self::finish_device_code`] waits for the person.
    pub async fn start_device_code(&self) -> Result<DeviceCodeInfo, AccountError> {
        let accounts = self.accounts().await?;
        let code = accounts.start_device_code(&[]).await?;
        let info = DeviceCodeInfo {
            user_code: code.user_code.clone(),
            verification_uri: code.verification_uri.clone(),
            message: code.message.clone(),
            expires_in_seconds: u32::try_from(code.expires_in.as_secs()).unwrap_or(u32::MAX),
        };
        *self.device.lock().await = Some(code);
        Ok(info)
    }

    pub async fn finish_device_code(&self) -> Result<AccountInfo, AccountError> {
        let accounts = self.accounts().await?;
        let code = self
            .device
            .lock()
            .await
            .take()
            .ok_or_else(|| AccountError::Tenant("no device code sign-in was started".into()))?;
        let a = accounts.finish_device_code(&code, self.cancelled()).await?;
        Ok(Self::info(&accounts, &a))
    }

    /// Signs the current account out.
    pub async fn sign_out(&self) -> Result<(), AccountError> {
        let accounts = self.accounts().await?;
        if let Ok(a) = accounts.current(None) {
            accounts.sign_out(&a.id)?;
            tracing::info!("signed out");
        }
        Ok(())
    }

    async fn graph(&self) -> Result<(Account, GraphClient), AccountError> {
        let accounts = self.accounts().await?;
        let a = accounts.current(None)?;
        let g = accounts.graph(&a).await?;
        Ok((a, g))
    }

    fn my_id(a: &Account) -> Result<String, AccountError> {
        a.oid.clone().ok_or(AccountError::NotSignedIn)
    }

    /// Own presence.
    pub async fn my_presence(&self) -> Result<crate::directory::PresenceInfo, AccountError> {
        let (_, g) = self.graph().await?;
        Ok((&g.my_presence().await?).into())
    }

    /// The person's own choice (Teams' status selector: `setUserPreferredPresence`), or
    /// `None` to reset it.
    pub async fn set_preferred_presence(
        &self,
        availability: Option<String>,
    ) -> Result<crate::directory::PresenceInfo, AccountError> {
        let (a, g) = self.graph().await?;
        let id = Self::my_id(&a)?;
        match availability {
            None => g.clear_user_preferred_presence(&id).await?,
            Some(av) => {
                let (availability, activity) = preferred_pair(&av).ok_or_else(|| {
                    AccountError::Tenant(format!("{av} is not a status one can choose"))
                })?;
                g.set_user_preferred_presence(&id, &availability, &activity, None)
                    .await?;
            }
        }
        Ok((&g.my_presence().await?).into())
    }

    /// Sets this app's presence session (the contact-center state, [`crate::state`]) for
    /// `expiration`, or clears it with `None`.
    pub async fn set_session_presence(
        &self,
        state: Option<(switchboard_graph::Availability, switchboard_graph::Activity)>,
        expiration: std::time::Duration,
    ) -> Result<(), AccountError> {
        let (a, g) = self.graph().await?;
        let id = Self::my_id(&a)?;
        match state {
            Some((availability, activity)) => {
                g.set_presence(
                    &id,
                    &switchboard_graph::PresenceUpdate {
                        availability,
                        activity,
                        expiration: Some(expiration),
                    },
                )
                .await?
            }
            None => g.clear_presence(&id).await?,
        }
        Ok(())
    }

    /// Sets (or with empty text clears) the status message.
    pub async fn set_status_message(&self, text: &str) -> Result<(), AccountError> {
        let (a, g) = self.graph().await?;
        g.set_status_message(&Self::my_id(&a)?, text.trim(), None)
            .await?;
        Ok(())
    }

    /// The SME directory.
    pub async fn search_directory(
        &self,
        q: &crate::directory::DirectoryQuery,
    ) -> Result<Vec<crate::directory::Person>, AccountError> {
        let (a, g) = self.graph().await?;
        let fav = self.favourites.of(&a.id);
        let reads_skills = self.accounts().await?.tenant().read_skills;
        crate::directory::search(&g, &self.skills, reads_skills, &fav, q).await
    }

    /// Presence of people shown in the window.
    pub async fn presences(
        &self,
        ids: &[String],
    ) -> Result<Vec<crate::directory::PresenceInfo>, AccountError> {
        let (_, g) = self.graph().await?;
        crate::directory::presences(&g, ids).await
    }

    /// Photos of people shown (cached; fetched in JSON batches).
    pub async fn photos(
        &self,
        ids: &[String],
    ) -> Result<Vec<crate::directory::PersonPhoto>, AccountError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (_, g) = self.graph().await?;
        self.photos.photos(&g, ids).await
    }

    pub async fn set_favourite(&self, person: &str, on: bool) -> Result<(), AccountError> {
        let accounts = self.accounts().await?;
        let a = accounts.current(None)?;
        self.favourites.set(&a.id, person, on)
    }
}

/// The router's API tokens from the signed-in account (`tenant.toml`'s `router_scope`).
pub struct AccountRouterTokens(pub Arc<AccountSession>);

impl crate::router::RouterTokens for AccountRouterTokens {
    fn router_token(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            let accounts = self.0.accounts().await.ok()?;
            let scope = accounts.tenant().router_scope.clone()?;
            let account = accounts.current(None).ok()?;
            match accounts.token(&account, &[scope]).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::info!(code = e.code(), "no router token: {e}");
                    None
                }
            }
        })
    }
}

/// The statuses a person picks in Teams, as `setUserPreferredPresence` pairs.
pub fn preferred_pair(
    availability: &str,
) -> Option<(switchboard_graph::Availability, switchboard_graph::Activity)> {
    use switchboard_graph::{Activity as Ac, Availability as Av};
    Some(match availability {
        "Available" => (Av::Available, Ac::Available),
        "Busy" => (Av::Busy, Ac::Busy),
        "DoNotDisturb" => (Av::DoNotDisturb, Ac::DoNotDisturb),
        "BeRightBack" => (Av::BeRightBack, Ac::BeRightBack),
        "Away" => (Av::Away, Ac::Away),
        "Offline" => (Av::Offline, Ac::OffWork),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_follows_the_authority() {
        let mut t = TenantSettings {
            authority: "https://login.microsoftonline.com/organizations/v2.0".into(),
            client_id: "x".into(),
            graph_url: None,
            router_scope: None,
            read_skills: false,
        };
        assert_eq!(t.graph_url(), "https://graph.microsoft.com/v1.0");
        t.authority = "https://login.microsoftonline.us/contoso.onmicrosoft.us/v2.0".into();
        assert_eq!(t.graph_url(), "https://graph.microsoft.us/v1.0");
        assert_eq!(
            TenantSettings::simulated().graph_url(),
            format!("{SIM_BASE_URL}/v1.0")
        );
        t.graph_url = Some("http://127.0.0.1:9/v1.0/".into());
        assert_eq!(t.graph_url(), "http://127.0.0.1:9/v1.0");
    }

    #[test]
    fn bad_tenants_are_refused_with_the_reason() {
        for (authority, client, why) in [
            ("not a url", "x", "not a URL"),
            ("http://login.example.com/t/v2.0", "x", "https"),
            (
                "https://login.microsoftonline.com/common/v2.0",
                " ",
                "client id",
            ),
        ] {
            let e = TenantSettings {
                authority: authority.into(),
                client_id: client.into(),
                graph_url: None,
                router_scope: None,
                read_skills: false,
            }
            .validated()
            .unwrap_err();
            assert_eq!(e.code(), "invalid_tenant");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    /// #13 item 24: no file, no tenant — nothing local is trusted as the identity provider.
    #[test]
    fn the_file_round_trips_and_without_it_there_is_no_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = TenantStore::at(dir.path().join(TENANT_FILE));
        let e = store.load().unwrap_err();
        assert_eq!(e.code(), "no_tenant");
        assert!(e.to_string().contains(TENANT_FILE), "{e}");
        assert!(store.load_if_any().unwrap().is_none());
        let t = TenantSettings {
            authority: "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            graph_url: None,
            router_scope: Some("api://contoso-switchboard/access_as_user".into()),
            read_skills: true,
        };
        let saved = store.save(t).unwrap();
        assert!(std::fs::read_to_string(store.path())
            .unwrap()
            .contains("read_skills = true"));
        assert!(!saved.authority.ends_with('/'));
        assert_eq!(store.load().unwrap(), saved);
        std::fs::write(store.path(), "authority = 3").unwrap();
        assert_eq!(store.load().unwrap_err().code(), "invalid_tenant");
    }
}
