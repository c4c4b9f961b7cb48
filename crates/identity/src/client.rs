//! The sign-in flows of a public client: authorization code + PKCE in the system browser with
//! a loopback redirect (RFC 6749 §4.1, RFC 7636, RFC 8252), the device authorization grant
//! (RFC 8628), and refresh (RFC 6749 §6) with rotation.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::discovery::ProviderMetadata;
use crate::error::ProviderError;
use crate::jwt::{self, Claims, Expect, Jwks, DEFAULT_SKEW};
use crate::loopback::{finished_page, Loopback};
use crate::pkce::{random_token, same, Pkce};
use crate::IdentityError;

/// Scopes every sign-in asks for besides the resource's: the id_token, the profile claims
/// and a refresh token.
pub const SIGN_IN_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// Who the app is and where it signs in.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://login.microsoftonline.com/{tenant|common|organizations}/v2.0`, or any
    /// OpenID Connect issuer.
    pub authority: String,
    pub client_id: String,
    /// Host named in the loopback redirect URI: `localhost` (what Microsoft app
    /// registrations list as `http://localhost`) or `127.0.0.1`. We listen on 127.0.0.1 and
    /// on `[::1]` at the same port, so whichever `localhost` resolves to is ours.
    pub redirect_host: String,
    /// Path of the loopback redirect URI (`/` unless the provider registered another).
    pub redirect_path: String,
    /// Allowed clock difference when checking tokens.
    pub skew: Duration,
    /// Client capabilities declared to Entra ID with every token request (`xms_cc` in the
    /// `claims` parameter). `cp1`: we handle claims challenges, so Graph may use continuous
    /// access evaluation (revocation within minutes, and longer-lived tokens) — Graph sends
    /// claims challenges only to clients that declare it. Not sent to other providers.
    pub client_capabilities: Vec<String>,
}

impl ClientConfig {
    pub fn new(authority: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            authority: authority.into(),
            client_id: client_id.into(),
            redirect_host: "localhost".into(),
            redirect_path: "/".into(),
            skew: DEFAULT_SKEW,
            client_capabilities: vec!["cp1".into()],
        }
    }
}

/// The `claims` parameter: a resource's claims challenge (`challenge`, JSON) with the client
/// capabilities merged in under `access_token.xms_cc` (as MSAL does). `None` when there is
/// neither; a challenge that is not a JSON object is passed on as it came.
pub fn claims_with_capabilities(
    challenge: Option<&str>,
    capabilities: &[String],
) -> Option<String> {
    if capabilities.is_empty() {
        return challenge.map(str::to_owned);
    }
    let mut root = match challenge {
        None => serde_json::Map::new(),
        Some(c) => match serde_json::from_str::<serde_json::Value>(c) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Some(c.to_owned()),
        },
    };
    let access = root
        .entry("access_token")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if let serde_json::Value::Object(a) = access {
        a.insert(
            "xms_cc".into(),
            serde_json::json!({ "values": capabilities }),
        );
    }
    Some(serde_json::Value::Object(root).to_string())
}

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The signed-in person, from the id_token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// `oid.tid` for Microsoft (MSAL's home account id), else `sub`.
    pub id: String,
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub sub: String,
    pub username: Option<String>,
    pub name: Option<String>,
    /// The authority signed in to.
    pub authority: String,
}

impl Account {
    fn from_claims(c: &Claims, authority: &str) -> Self {
        let id = match (&c.oid, &c.tid) {
            (Some(o), Some(t)) => format!("{o}.{t}"),
            _ => c.sub.clone(),
        };
        Self {
            id,
            oid: c.oid.clone(),
            tid: c.tid.clone(),
            sub: c.sub.clone(),
            username: c.preferred_username.clone().or_else(|| c.email.clone()),
            name: c.name.clone(),
            authority: authority.to_owned(),
        }
    }
}

/// Tokens from one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: Secret,
    /// Unix seconds.
    pub expires_at: u64,
    /// The scopes granted (as the provider lists them).
    pub scopes: Vec<String>,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
}

impl Tokens {
    /// True when the access token ends within `margin`.
    pub fn expiring(&self, margin: Duration) -> bool {
        unix_now() + margin.as_secs() >= self.expires_at
    }
}

/// A completed sign-in: who, and their tokens.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub account: Account,
    pub tokens: Tokens,
}

/// What an interactive sign-in asks for.
#[derive(Debug, Clone, Default)]
pub struct Interactive {
    /// The resource's scopes (e.g. `User.Read`), besides [`SIGN_IN_SCOPES`].
    pub scopes: Vec<String>,
    pub login_hint: Option<String>,
    /// A claims challenge (JSON) from a resource's `WWW-Authenticate`.
    pub claims: Option<String>,
    /// `select_account`, `login`, `consent`, or none.
    pub prompt: Option<String>,
    /// Give up after this long (default 5 minutes).
    pub timeout: Option<Duration>,
}

/// Opens URLs for the person: the system browser, or a test playing its part.
pub trait Browser: Send + Sync {
    fn open(&self, url: &str) -> Result<(), String>;
}

/// The platform's opener: `$BROWSER` (a `:`-separated list, `%s` for the URL) then
/// `xdg-open` on Linux and BSD, `open` on macOS, the URL handler on Windows.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemBrowser;

impl Browser for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        let spawn = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map(|_| ())
                .map_err(|e| format!("{program}: {e}"))
        };
        if cfg!(target_os = "windows") {
            return spawn("rundll32", &["url.dll,FileProtocolHandler", url]);
        }
        if cfg!(target_os = "macos") {
            return spawn("open", &[url]);
        }
        let mut tried = Vec::new();
        if let Ok(list) = std::env::var("BROWSER") {
            for cmd in list.split(':').filter(|c| !c.trim().is_empty()) {
                let mut words: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
                if words.iter().any(|w| w.contains("%s")) {
                    words.iter_mut().for_each(|w| *w = w.replace("%s", url));
                } else {
                    words.push(url.to_owned());
                }
                let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                match spawn(&words[0], &args) {
                    Ok(()) => return Ok(()),
                    Err(e) => tried.push(e),
                }
            }
        }
        match spawn("xdg-open", &[url]) {
            Ok(()) => Ok(()),
            Err(e) => {
                tried.push(e);
                Err(tried.join("; "))
            }
        }
    }
}

/// A device code to show the person (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub user_code: String,
    pub verification_uri: String,
    /// The provider's own sentence for the person, when it sends one.
    pub message: Option<String>,
    pub expires_in: Duration,
    interval: Duration,
    device_code: Secret,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct DeviceResponse {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn scope_string(scopes: &[String]) -> String {
    let mut all: Vec<&str> = SIGN_IN_SCOPES.to_vec();
    for s in scopes {
        if !all.contains(&s.as_str()) {
            all.push(s);
        }
    }
    all.join(" ")
}

/// A client of one authority, discovered.
#[derive(Debug)]
pub struct IdentityClient {
    http: reqwest::Client,
    config: ClientConfig,
    metadata: ProviderMetadata,
    jwks: Jwks,
}

enum Grant {
    Tokens(TokenResponse),
    Refused(ProviderError),
}

impl IdentityClient {
    /// Discovers the authority's endpoints.
    pub async fn discover(config: ClientConfig) -> Result<Self, IdentityError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
            // A token endpoint has no business redirecting; never follow with our body.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| IdentityError::Protocol(e.to_string()))?;
        let metadata = ProviderMetadata::discover(&http, &config.authority).await?;
        let jwks = Jwks::new(http.clone(), metadata.jwks_uri.clone());
        Ok(Self {
            http,
            config,
            metadata,
            jwks,
        })
    }

    pub fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The `claims` to send with a request to this provider: the challenge, and for Entra ID
    /// the client capabilities.
    fn claims_param(&self, challenge: Option<&str>) -> Option<String> {
        if self.metadata.is_entra() {
            claims_with_capabilities(challenge, &self.config.client_capabilities)
        } else {
            challenge.map(str::to_owned)
        }
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<Grant, IdentityError> {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let claims;
        if url == self.metadata.token_endpoint {
            let challenge = form.iter().position(|(k, _)| *k == "claims");
            claims = self.claims_param(challenge.map(|i| form[i].1));
            if let Some(i) = challenge {
                form.remove(i);
            }
            if let Some(c) = &claims {
                form.push(("claims", c.as_str()));
            }
        }
        let resp = self
            .http
            .post(url)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| IdentityError::offline(url, &e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| IdentityError::offline(url, &e))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map(Grant::Tokens)
                .map_err(|e| {
                    IdentityError::Protocol(format!("the token response is not valid: {e}"))
                });
        }
        match ProviderError::from_body(&body) {
            Some(p) => Ok(Grant::Refused(p)),
            None => Err(IdentityError::Protocol(format!(
                "{url} answered {status} without an OAuth error body"
            ))),
        }
    }

    /// Checks a token response; `nonce` for a fresh sign-in. `previous` is the account a
    /// refresh belongs to (a refresh may come without an id_token).
    async fn accept(
        &self,
        r: TokenResponse,
        nonce: Option<&str>,
        previous: Option<&Account>,
        asked: &[String],
    ) -> Result<SignIn, IdentityError> {
        let account = match (&r.id_token, previous) {
            (Some(id), prev) => {
                let claims = self.check_id_token(id, nonce).await?;
                let account = Account::from_claims(&claims, &self.config.authority);
                if let Some(p) = prev {
                    if p.sub != account.sub || p.tid != account.tid {
                        return Err(IdentityError::InvalidToken(
                            "a refresh returned another person's id_token".into(),
                        ));
                    }
                }
                account
            }
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(IdentityError::Protocol(
                    "the sign-in returned no id_token (was the openid scope dropped?)".into(),
                ))
            }
        };
        let expires_in = match &r.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(3600),
            // Older Microsoft endpoints send it as a string.
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(3600),
            _ => 3600,
        };
        let scopes = match &r.scope {
            Some(s) => s.split_whitespace().map(str::to_owned).collect(),
            None => asked.to_vec(),
        };
        Ok(SignIn {
            account,
            tokens: Tokens {
                access_token: Secret(r.access_token),
                expires_at: unix_now() + expires_in,
                scopes,
                refresh_token: r.refresh_token.map(Secret),
                id_token: r.id_token.map(Secret),
            },
        })
    }

    /// Checks an id_token of this client (signature, iss, aud, exp/nbf, nonce).
    pub async fn check_id_token(
        &self,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<Claims, IdentityError> {
        let aud = [self.config.client_id.clone()];
        jwt::validate(
            id_token,
            &self.metadata,
            &self.jwks,
            &Expect {
                audiences: &aud,
                nonce,
                skew: self.config.skew,
            },
        )
        .await
    }

    /// Signs in in the browser: authorization code + PKCE (S256), loopback redirect,
    /// state and nonce checked. `cancel` resolving ends the wait with [`IdentityError::Cancelled`].
    pub async fn sign_in_interactive(
        &self,
        req: &Interactive,
        browser: &dyn Browser,
        cancel: impl Future<Output = ()>,
    ) -> Result<SignIn, IdentityError> {
        let loopback = Loopback::bind()
            .await
            .map_err(|e| IdentityError::Browser(format!("cannot listen on 127.0.0.1: {e}")))?;
        let redirect_uri = format!(
            "http://{}:{}{}",
            self.config.redirect_host,
            loopback.port(),
            self.config.redirect_path
        );
        let pkce = Pkce::new();
        let state = random_token(24);
        let nonce = random_token(24);
        let mut url = url::Url::parse(&self.metadata.authorization_endpoint)
            .map_err(|e| IdentityError::Protocol(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.config.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("response_mode", "query")
                .append_pair("scope", &scope_string(&req.scopes))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", pkce.challenge())
                .append_pair("code_challenge_method", "S256");
            if let Some(h) = &req.login_hint {
                q.append_pair("login_hint", h);
            }
            if let Some(p) = &req.prompt {
                q.append_pair("prompt", p);
            }
            if let Some(c) = self.claims_param(req.claims.as_deref()) {
                q.append_pair("claims", &c);
            }
        }
        browser.open(url.as_str()).map_err(IdentityError::Browser)?;
        tracing::info!(
            port = loopback.port(),
            "waiting for the sign-in in the browser"
        );
        let timeout = req.timeout.unwrap_or(Duration::from_secs(300));
        let wait = loopback.wait(&state, move |q| {
            let ok = q.contains_key("code");
            let detail = q
                .get("error_description")
                .or_else(|| q.get("error"))
                .map(String::as_str)
                .unwrap_or("");
            finished_page(ok, detail)
        });
        let query = tokio::select! {
            q = wait => q,
            _ = tokio::time::sleep(timeout) => return Err(IdentityError::TimedOut(timeout.as_secs())),
            _ = cancel => return Err(IdentityError::Cancelled),
        };
        if !query.get("state").is_some_and(|s| same(s, &state)) {
            return Err(IdentityError::StateMismatch);
        }
        if let Some(error) = query.get("error") {
            return Err(IdentityError::Refused {
                error: error.clone(),
                description: query.get("error_description").cloned().unwrap_or_default(),
            });
        }
        let code = query
            .get("code")
            .ok_or_else(|| IdentityError::Protocol("the redirect carried no code".into()))?;
        let scope = scope_string(&req.scopes);
        match self
            .post(
                &self.metadata.token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", &self.config.client_id),
                    ("code", code),
                    ("redirect_uri", &redirect_uri),
                    ("code_verifier", pkce.verifier()),
                    ("scope", &scope),
                ],
            )
            .await?
        {
            Grant::Tokens(t) => self.accept(t, Some(&nonce), None, &req.scopes).await,
            Grant::Refused(p) => Err(IdentityError::Provider(p)),
        }
    }

    /// Starts a device-code sign-in: the code to show.
    pub async fn start_device_code(&self, scopes: &[String]) -> Result<DeviceCode, IdentityError> {
        let endpoint = self
            .metadata
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                IdentityError::Protocol(
                    "this provider offers no device-code sign-in; sign in in the browser".into(),
                )
            })?;
        let scope = scope_string(scopes);
        let resp = self
            .http
            .post(&endpoint)
            .header("Accept", "application/json")
            .form(&[
                ("client_id", self.config.client_id.as_str()),
                ("scope", &scope),
            ])
            .send()
            .await
            .map_err(|e| IdentityError::offline(&endpoint, &e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| IdentityError::offline(&endpoint, &e))?;
        if !status.is_success() {
            return Err(match ProviderError::from_body(&body) {
                Some(p) => IdentityError::Provider(p),
                None => IdentityError::Protocol(format!("{endpoint} answered {status}")),
            });
        }
        let d: DeviceResponse = serde_json::from_slice(&body).map_err(|e| {
            IdentityError::Protocol(format!("the device-code response is not valid: {e}"))
        })?;
        Ok(DeviceCode {
            user_code: d.user_code,
            verification_uri: d.verification_uri,
            message: d.message,
            expires_in: Duration::from_secs(d.expires_in.min(3600)),
            interval: Duration::from_secs(d.interval.unwrap_or(5).clamp(1, 60)),
            device_code: Secret(d.device_code),
            scopes: scopes.to_vec(),
        })
    }

    /// Polls until the person has entered the code (honouring `interval` and `slow_down`),
    /// declined, or the code expired.
    pub async fn finish_device_code(
        &self,
        code: &DeviceCode,
        cancel: impl Future<Output = ()>,
    ) -> Result<SignIn, IdentityError> {
        let deadline = tokio::time::Instant::now() + code.expires_in;
        let mut interval = code.interval;
        let poll = async {
            loop {
                tokio::time::sleep(interval).await;
                if tokio::time::Instant::now() >= deadline {
                    return Err(IdentityError::DeviceCodeExpired);
                }
                let grant = self
                    .post(
                        &self.metadata.token_endpoint,
                        &[
                            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                            ("client_id", &self.config.client_id),
                            ("device_code", code.device_code.expose()),
                        ],
                    )
                    .await;
                match grant {
                    Ok(Grant::Tokens(t)) => return self.accept(t, None, None, &code.scopes).await,
                    Ok(Grant::Refused(p)) => match p.error.as_str() {
                        "authorization_pending" => {}
                        "slow_down" => interval += Duration::from_secs(5),
                        "expired_token" | "code_expired" => {
                            return Err(IdentityError::DeviceCodeExpired)
                        }
                        "access_denied" | "authorization_declined" => {
                            return Err(IdentityError::Refused {
                                error: p.error,
                                description: p.description,
                            })
                        }
                        _ => return Err(IdentityError::Provider(p)),
                    },
                    // A passing network fault: keep polling until the code expires.
                    Err(IdentityError::Offline { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::select! {
            r = poll => r,
            _ = cancel => Err(IdentityError::Cancelled),
        }
    }

    /// Redeems a refresh token for `scopes` (another resource's, for incremental consent).
    /// The provider rotates refresh tokens: store the one returned.
    pub async fn refresh(
        &self,
        account: &Account,
        refresh_token: &Secret,
        scopes: &[String],
    ) -> Result<SignIn, IdentityError> {
        self.refresh_with_claims(account, refresh_token, scopes, None)
            .await
    }

    /// [`Self::refresh`] answering a resource's claims challenge (the `claims` parameter).
    pub async fn refresh_with_claims(
        &self,
        account: &Account,
        refresh_token: &Secret,
        scopes: &[String],
        claims: Option<&str>,
    ) -> Result<SignIn, IdentityError> {
        let scope = scope_string(scopes);
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.config.client_id.as_str()),
            ("refresh_token", refresh_token.expose()),
            ("scope", scope.as_str()),
        ];
        if let Some(c) = claims {
            form.push(("claims", c));
        }
        match self.post(&self.metadata.token_endpoint, &form).await? {
            Grant::Tokens(t) => {
                let mut s = self.accept(t, None, Some(account), scopes).await?;
                // A provider that does not rotate keeps the old one valid.
                if s.tokens.refresh_token.is_none() {
                    s.tokens.refresh_token = Some(refresh_token.clone());
                }
                Ok(s)
            }
            Grant::Refused(p) => Err(IdentityError::Provider(p)),
        }
    }

    /// Where to send the browser to end the provider's session too.
    pub fn end_session_url(&self, id_token_hint: Option<&str>) -> Option<String> {
        let mut url = url::Url::parse(self.metadata.end_session_endpoint.as_deref()?).ok()?;
        if let Some(h) = id_token_hint {
            url.query_pairs_mut().append_pair("id_token_hint", h);
        }
        Some(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_scopes_come_first_once() {
        assert_eq!(
            scope_string(&["User.Read".into(), "openid".into()]),
            "openid profile offline_access User.Read"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let t = Tokens {
            access_token: Secret::new("eyJ.secret"),
            expires_at: 0,
            scopes: vec![],
            refresh_token: Some(Secret::new("rt-secret")),
            id_token: None,
        };
        let s = format!("{t:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(t.expiring(Duration::ZERO));
    }

    /// #13 item 12: the capabilities go under access_token.xms_cc, merged with a resource's
    /// challenge (Microsoft's CAE example), the way MSAL sends them.
    #[test]
    fn capabilities_are_merged_into_the_claims_challenge() {
        let cp1 = vec!["cp1".to_string()];
        let v = |s: Option<String>| serde_json::from_str::<serde_json::Value>(&s.unwrap()).unwrap();
        assert_eq!(
            v(claims_with_capabilities(None, &cp1)),
            serde_json::json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
        );
        let challenge = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
        assert_eq!(
            v(claims_with_capabilities(Some(challenge), &cp1)),
            serde_json::json!({"access_token": {
                "nbf": {"essential": true, "value": "1604106651"},
                "xms_cc": {"values": ["cp1"]}
            }})
        );
        assert_eq!(claims_with_capabilities(None, &[]), None);
        assert_eq!(
            claims_with_capabilities(Some(challenge), &[]).as_deref(),
            Some(challenge)
        );
        assert_eq!(
            claims_with_capabilities(Some("not json"), &cp1).as_deref(),
            Some("not json")
        );
    }
}
