//! Checking JWTs from the provider: the signature against its JWKS (an unknown `kid`
//! refetches the set once), the algorithm (asymmetric only: never `none`, never HMAC, which a
//! public key would turn into a shared secret), `iss` (Microsoft's `{tenantid}` template
//! filled from `tid`), `aud`, `exp`/`nbf` with a clock skew, and `nonce` for id_tokens. Used
//! for the id_token of a sign-in and by the router for the access tokens of its API.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::discovery::ProviderMetadata;
use crate::pkce::same;
use crate::IdentityError;

/// Allowed clock difference between us and the provider.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(300);

/// The key set is fetched for an unknown `kid` at most `REFETCH_BURST` times in any
/// `REFETCH_WINDOW`: a key rotated in right after start-up is still found at once, while
/// forged tokens with random kids cannot make us hammer the provider.
const REFETCH_WINDOW: Duration = Duration::from_secs(30);
const REFETCH_BURST: usize = 3;

/// The claims of a token that we read. Unknown claims are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub aud: serde_json::Value,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nonce: Option<String>,
    /// Microsoft: the user's object id (stable across apps).
    #[serde(default)]
    pub oid: Option<String>,
    /// Microsoft: the tenant id.
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Delegated scopes of an access token, space separated.
    #[serde(default)]
    pub scp: Option<String>,
    /// App roles of an access token.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Microsoft: the token format's version (`1.0` or `2.0`).
    #[serde(default)]
    pub ver: Option<String>,
}

/// The provider's signing keys, fetched from `jwks_uri` and kept.
pub struct Jwks {
    uri: String,
    http: reqwest::Client,
    /// The keys, and when they were fetched (newest last, at most `REFETCH_BURST`).
    state: Mutex<(JwkSet, VecDeque<Instant>)>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("uri", &self.uri).finish()
    }
}

impl Jwks {
    pub fn new(http: reqwest::Client, uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            http,
            state: Mutex::new((JwkSet { keys: Vec::new() }, VecDeque::new())),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, IdentityError> {
        let resp = self
            .http
            .get(&self.uri)
            .send()
            .await
            .map_err(|e| IdentityError::offline(&self.uri, &e))?;
        if !resp.status().is_success() {
            return Err(IdentityError::Protocol(format!(
                "the key set at {} answered {}",
                self.uri,
                resp.status()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| IdentityError::offline(&self.uri, &e))?;
        serde_json::from_slice(&body)
            .map_err(|e| IdentityError::Protocol(format!("the key set is not valid: {e}")))
    }

    /// The key for `kid` (or the only key when the token names none), fetching the set the
    /// first time and again when `kid` is unknown (within the refetch budget).
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, IdentityError> {
        let find = |set: &JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let due = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(jwk) = find(&st.0) {
                return DecodingKey::from_jwk(&jwk)
                    .map_err(|e| IdentityError::InvalidToken(format!("its key is unusable: {e}")));
            }
            st.1.retain(|at| at.elapsed() < REFETCH_WINDOW);
            st.1.len() < REFETCH_BURST
        };
        if due {
            let set = self.fetch().await?;
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.0 = set;
            st.1.push_back(Instant::now());
            if let Some(jwk) = find(&st.0) {
                return DecodingKey::from_jwk(&jwk)
                    .map_err(|e| IdentityError::InvalidToken(format!("its key is unusable: {e}")));
            }
        }
        Err(IdentityError::InvalidToken(format!(
            "it is signed with a key the provider does not publish (kid {})",
            kid.unwrap_or("missing")
        )))
    }
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Accepted audiences (the client id for an id_token; the API's id or URI for an access
    /// token).
    pub audiences: &'a [String],
    /// The nonce sent with the sign-in (id_tokens).
    pub nonce: Option<&'a str>,
    pub skew: Duration,
}

const ALLOWED: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Checks `token` against the provider's keys and `expect`; its claims when it passes.
pub async fn validate(
    token: &str,
    metadata: &ProviderMetadata,
    keys: &Jwks,
    expect: &Expect<'_>,
) -> Result<Claims, IdentityError> {
    let bad = |s: String| IdentityError::InvalidToken(s);
    // `alg: none` and unknown algorithms fail here: jsonwebtoken has no such variant.
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        bad(format!(
            "its header is not valid or names no usable algorithm ({e})"
        ))
    })?;
    if !ALLOWED.contains(&header.alg) {
        return Err(bad(format!(
            "it is signed with {:?}, which a public client must not accept",
            header.alg
        )));
    }
    let key = keys.key(header.kid.as_deref()).await?;
    let mut v = Validation::new(header.alg);
    v.set_audience(expect.audiences);
    v.leeway = expect.skew.as_secs();
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        bad(match e.kind() {
            K::InvalidSignature => "its signature does not match (altered or forged)".into(),
            K::ExpiredSignature => "it has expired".into(),
            K::ImmatureSignature => "it is not valid yet (nbf)".into(),
            K::InvalidAudience => "it is meant for another application (aud)".into(),
            K::MissingRequiredClaim(c) => format!("it lacks the {c} claim"),
            _ => format!("it cannot be read ({e})"),
        })
    })?;
    let claims = data.claims;
    let want_iss = metadata
        .issuer_for(claims.tid.as_deref())
        .ok_or_else(|| bad("it carries no usable tenant id (tid) for the issuer".into()))?;
    if claims.iss != want_iss {
        return Err(bad(format!(
            "it was issued by {}, not {want_iss}",
            claims.iss
        )));
    }
    if let Some(want) = expect.nonce {
        match claims.nonce.as_deref() {
            Some(n) if same(n, want) => {}
            _ => {
                return Err(bad(
                    "its nonce does not match the sign-in (a replayed or injected token)".into(),
                ))
            }
        }
    }
    Ok(claims)
}
