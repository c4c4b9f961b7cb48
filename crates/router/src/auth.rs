//! Who is calling: bearer access tokens from Entra ID (or any OpenID Connect provider) when
//! `[auth] mode = "entra"`, checked against the provider's keys (`switchboard-identity`:
//! signature, asymmetric algorithms only, `iss` with Microsoft's `{tenantid}` template, `aud`,
//! `exp`/`nbf`), and mapped to the router's own tenants through the token's `tid` and to a
//! role through its `roles` claim (the app roles `Agent`, `Supervisor`, `Admin`).
//!
//! The provider's discovery document is read on the first authenticated request (and again
//! after a failure), so the router starts while the provider is unreachable and says so per
//! request (503) rather than not starting.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use switchboard_identity::discovery::ProviderMetadata;
use switchboard_identity::jwt::{validate, Expect, Jwks};
use tokio::sync::OnceCell;

use crate::config::{AuthConfig, AuthMode};
use crate::error::ApiError;
use crate::AppState;

/// An app role of the router's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "Agent" => Some(Self::Agent),
            "Supervisor" => Some(Self::Supervisor),
            "Admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The user's object id (None without authentication).
    pub oid: Option<String>,
    /// The caller's Entra tenant id.
    pub tid: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<Role>,
    /// An Admin of the operator's own organisation: manages every tenant.
    pub operator: bool,
    /// True when the router checks no tokens (`auth.mode = "none"`).
    pub unauthenticated: bool,
    /// When the caller's access token expires (Unix seconds): a session that outlives the
    /// request, the event stream, ends then, so a removed role or account takes effect by
    /// the next token at the latest.
    pub expires_at: Option<i64>,
}

impl Caller {
    fn open() -> Self {
        Self {
            oid: None,
            tid: None,
            username: None,
            name: None,
            roles: vec![Role::Agent, Role::Supervisor, Role::Admin],
            operator: true,
            unauthenticated: true,
            expires_at: None,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Refuses a caller without any role.
    pub fn require_any_role(&self) -> Result<(), ApiError> {
        if self.roles.is_empty() {
            return Err(ApiError::Forbidden(
                "your account has no Switchboard role: ask your administrator to assign Agent, Supervisor or Admin to you in the app registration".into(),
            ));
        }
        Ok(())
    }

    /// Refuses anyone but an operator Admin.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.operator {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "only an Admin of the organisation that runs this router may do this".into(),
        ))
    }

    /// Whether the caller belongs to the Entra tenant `entra_tenant_id`.
    pub fn member_of(&self, entra_tenant_id: Option<&str>) -> bool {
        match (self.tid.as_deref(), entra_tenant_id) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}

/// The provider's metadata and keys, once discovered.
type Provider = Arc<(ProviderMetadata, Jwks)>;

/// Token checking for the API.
pub struct Auth {
    config: AuthConfig,
    http: reqwest::Client,
    /// Replaced by a fresh cell after a failed discovery, so a later request tries again.
    provider: tokio::sync::Mutex<Arc<OnceCell<Provider>>>,
    /// After a failed discovery: when it may be tried again, the last error, and the wait
    /// that led there (doubling up to `MAX_DISCOVERY_BACKOFF`). Requests before then get the
    /// 503 at once instead of each asking the unreachable provider.
    backoff: std::sync::Mutex<Option<(std::time::Instant, String, Duration)>>,
}

/// First wait after a failed discovery, and the longest.
const MIN_DISCOVERY_BACKOFF: Duration = Duration::from_secs(2);
const MAX_DISCOVERY_BACKOFF: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: AuthConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            provider: tokio::sync::Mutex::new(Arc::new(OnceCell::new())),
            backoff: std::sync::Mutex::new(None),
        }
    }

    fn unavailable(&self, e: &str) -> ApiError {
        ApiError::Unavailable(format!(
            "the identity provider {} cannot be reached to check tokens: {e}",
            self.config.authority
        ))
    }

    async fn provider(&self) -> Result<Provider, ApiError> {
        if let Some((until, e, _)) = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if std::time::Instant::now() < *until {
                return Err(self.unavailable(e));
            }
        }
        let cell = self.provider.lock().await.clone();
        let got = cell
            .get_or_try_init(|| async {
                let m = ProviderMetadata::discover(&self.http, &self.config.authority).await?;
                let keys = Jwks::new(self.http.clone(), m.jwks_uri.clone());
                Ok::<_, switchboard_identity::IdentityError>(Arc::new((m, keys)))
            })
            .await;
        match got {
            Ok(p) => {
                *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(p.clone())
            }
            Err(e) => {
                let e = e.to_string();
                let wait = {
                    let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                    let wait = b
                        .as_ref()
                        .map(|(_, _, w)| (*w * 2).min(MAX_DISCOVERY_BACKOFF))
                        .unwrap_or(MIN_DISCOVERY_BACKOFF);
                    *b = Some((std::time::Instant::now() + wait, e.clone(), wait));
                    wait
                };
                tracing::warn!(authority = %self.config.authority, error = %e, retry_in_seconds = wait.as_secs(), "identity provider unavailable");
                // A fresh cell: tried again once the wait is over.
                *self.provider.lock().await = Arc::new(OnceCell::new());
                Err(self.unavailable(&e))
            }
        }
    }

    /// The caller of a request with this `Authorization` header.
    pub async fn caller(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        if self.config.mode == AuthMode::None {
            return Ok(Caller::open());
        }
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "sign in first: send an access token for this router as Authorization: Bearer …"
                        .into(),
                )
            })?;
        let provider = self.provider().await?;
        let (metadata, keys) = (&provider.0, &provider.1);
        let claims = validate(
            token,
            metadata,
            keys,
            &Expect {
                audiences: &self.config.audiences,
                nonce: None,
                skew: Duration::from_secs(self.config.clock_skew_seconds),
            },
        )
        .await
        .map_err(|e| {
            // The reason, never the token.
            tracing::info!(reason = %e, "access token refused");
            match e {
                switchboard_identity::IdentityError::InvalidToken(why) => ApiError::Unauthorized(
                    format!("the access token was refused: {why}; sign in again"),
                ),
                other => ApiError::Unauthorized(format!("{other}; sign in again")),
            }
        })?;
        if let Err(why) = audience_fits_the_version(claims.ver.as_deref(), &claims.aud) {
            tracing::info!(reason = %why, "access token refused");
            return Err(ApiError::Unauthorized(format!(
                "the access token was refused: {why}; sign in again"
            )));
        }
        let mut roles: Vec<Role> = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
        roles.sort();
        roles.dedup();
        let operator = roles.contains(&Role::Admin)
            && claims.tid.as_deref().is_some_and(|t| {
                self.config
                    .operator_tenant_ids
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(t))
            });
        Ok(Caller {
            oid: claims.oid,
            tid: claims.tid,
            username: claims.preferred_username,
            name: claims.name,
            roles,
            operator,
            unauthenticated: false,
            expires_at: Some(claims.exp),
        })
    }
}

/// Entra names the API in a v2.0 access token's `aud` by its client id, never by its
/// Application ID URI (which only v1.0 tokens carry): a v2.0 token naming a URI was not made
/// by Entra for this API, whatever `auth.audiences` lists. Tokens without `ver` (other
/// OpenID Connect providers) are checked against `auth.audiences` alone.
pub fn audience_fits_the_version(ver: Option<&str>, aud: &serde_json::Value) -> Result<(), String> {
    if ver != Some("2.0") {
        return Ok(());
    }
    let auds: Vec<&str> = match aud {
        serde_json::Value::String(a) => vec![a.as_str()],
        serde_json::Value::Array(list) => list.iter().filter_map(|a| a.as_str()).collect(),
        _ => Vec::new(),
    };
    match auds.iter().find(|a| !crate::is_guid(a)) {
        Some(a) => Err(format!(
            "a v2.0 token names the API by its client id in aud, and this one says {a:?} — list the API's client id in auth.audiences"
        )),
        None => Ok(()),
    }
}

/// The `Authorization` header of a request, when it is text.
pub fn authorization(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Whether this caller may see operational details (storage errors): anyone when the
    /// router checks no tokens, else a valid token with a Switchboard role.
    pub async fn may_see_details(&self, authorization: Option<&str>) -> bool {
        match self.caller(authorization).await {
            Ok(c) => !c.roles.is_empty(),
            Err(_) => false,
        }
    }

    /// Lets `/metrics` through for `metrics_token` sent as a bearer token (when set), an
    /// access token with the Supervisor or Admin role, or anyone when no tokens are checked.
    pub async fn metrics_reader(
        &self,
        authorization: Option<&str>,
        metrics_token: &str,
    ) -> Result<(), ApiError> {
        if self.config.mode == AuthMode::None {
            return Ok(());
        }
        let bearer = authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        if let Some(t) = bearer {
            if !metrics_token.is_empty() && same_secret(t, metrics_token) {
                return Ok(());
            }
        }
        let caller = self.caller(authorization).await?;
        if caller.has(Role::Supervisor) || caller.has(Role::Admin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "metrics are for the Supervisor and Admin roles, or the router's metrics token (http.metrics_token)".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.caller(header).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn storage_details_and_metrics_need_a_caller_when_tokens_are_checked() {
        let open = Auth::new(AuthConfig::default());
        assert!(open.may_see_details(None).await);
        assert!(open.metrics_reader(None, "").await.is_ok());
        let entra = Auth::new(AuthConfig {
            mode: AuthMode::Entra,
            authority: "http://127.0.0.1:9/t/v2.0".into(),
            audiences: vec!["api".into()],
            ..AuthConfig::default()
        });
        assert!(!entra.may_see_details(None).await);
        assert!(entra.metrics_reader(None, "s3cret").await.is_err());
        assert!(entra
            .metrics_reader(Some("Bearer s3cret"), "s3cret")
            .await
            .is_ok());
        assert!(entra
            .metrics_reader(Some("Bearer s3cre"), "s3cret")
            .await
            .is_err());
    }

    /// A provider that is down is asked once per back-off period, not once per request.
    #[tokio::test]
    async fn a_down_provider_is_not_asked_on_every_request() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/tenant/v2.0", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let auth = Auth::new(AuthConfig {
            mode: AuthMode::Entra,
            authority: base,
            audiences: vec!["api".into()],
            ..AuthConfig::default()
        });
        for _ in 0..20 {
            let e = auth.caller(Some("Bearer abc.def.ghi")).await.unwrap_err();
            assert!(matches!(e, ApiError::Unavailable(_)), "{e:?}");
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "discovery asked once, then backed off"
        );
        server.abort();
    }

    /// #13 item 14: a v2.0 token carries the API's client id in aud; the App ID URI only
    /// appears in v1.0 tokens.
    #[test]
    fn the_audience_must_fit_the_token_version() {
        use serde_json::json;
        let id = json!("3c0ffee5-2b1a-4c9d-8e7f-6a5b4c3d2e1f");
        let uri = json!("api://switchboard-router");
        assert!(audience_fits_the_version(Some("2.0"), &id).is_ok());
        let e = audience_fits_the_version(Some("2.0"), &uri).unwrap_err();
        assert!(e.contains("client id"), "{e}");
        assert!(audience_fits_the_version(Some("2.0"), &json!([id, uri])).is_err());
        assert!(audience_fits_the_version(Some("1.0"), &uri).is_ok());
        assert!(audience_fits_the_version(None, &uri).is_ok());
    }

    #[tokio::test]
    async fn without_auth_everyone_may_do_everything() {
        let a = Auth::new(AuthConfig::default());
        let c = a.caller(None).await.unwrap();
        assert!(c.operator && c.unauthenticated && c.has(Role::Admin));
    }

    #[tokio::test]
    async fn a_missing_or_malformed_header_is_401() {
        let a = Auth::new(AuthConfig {
            mode: AuthMode::Entra,
            audiences: vec!["api://x".into()],
            authority: "http://127.0.0.1:9/t/v2.0".into(),
            ..AuthConfig::default()
        });
        for h in [
            None,
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer "),
            Some("Bearer"),
        ] {
            let e = a.caller(h).await.unwrap_err();
            assert!(matches!(e, ApiError::Unauthorized(_)), "{h:?}: {e}");
        }
        // A token, but the provider is down: 503, said so.
        let e = a.caller(Some("Bearer abc.def.ghi")).await.unwrap_err();
        assert!(matches!(e, ApiError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    }
}
