//! The HTTP client: one `send` with token, throttling and error handling; typed calls on top.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use url::Url;

use crate::error::GraphError;
use crate::model::{
    Activity, Availability, Page, Photo, Presence, Subscription, SubscriptionRequest, User,
    MAX_IDS_PER_CALL,
};
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::token::{AccessTokenProvider, TokenRequest};

/// Microsoft Graph v1.0.
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0";

/// Client settings.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Graph's base URL, default [`DEFAULT_BASE_URL`]; the simulated tenant's is
    /// `http://127.0.0.1:PORT/v1.0`.
    pub base_url: String,
    /// Our application (client) id: the `sessionId` of `setPresence`/`clearPresence`.
    pub client_id: String,
    /// Throttling and unavailability retries.
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            client_id: String::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// `setPresence` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUpdate {
    /// Availability (Available, Busy, Away, DoNotDisturb).
    pub availability: Availability,
    /// Activity (Available, InACall, InAConferenceCall, Away, Presenting).
    pub activity: Activity,
    /// Session expiry, 5 minutes to 4 hours (`None`: Graph's default of 5 minutes).
    pub expiration: Option<Duration>,
}

/// A `/users` query. Text search and department filters use Entra ID's advanced queries, so
/// the client sends `ConsistencyLevel: eventual` and `$count=true` with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    search: Option<String>,
    filters: Vec<String>,
    select: Option<Vec<String>>,
    top: Option<u32>,
    order_by: Option<String>,
}

/// Properties the client asks for by default.
pub const USER_SELECT: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "department",
    "officeLocation",
    "businessPhones",
];

fn odata_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl UserQuery {
    /// All users.
    pub fn new() -> Self {
        Self::default()
    }
    /// Words the name, mail, job title or department start with (`$search`).
    pub fn search(mut self, text: &str) -> Self {
        let term: String = text.chars().filter(|c| *c != '"' && *c != '\\').collect();
        let term = term.trim();
        if !term.is_empty() {
            self.search = Some(
                ["displayName", "mail", "jobTitle", "department"]
                    .iter()
                    .map(|p| format!("\"{p}:{term}\""))
                    .collect::<Vec<_>>()
                    .join(" OR "),
            );
        }
        self
    }
    /// Users of one department (`department eq '...'`).
    pub fn department(mut self, department: &str) -> Self {
        self.filters
            .push(format!("department eq {}", odata_literal(department)));
        self
    }
    /// Display names starting with a prefix.
    pub fn name_starts_with(mut self, prefix: &str) -> Self {
        self.filters
            .push(format!("startswith(displayName,{})", odata_literal(prefix)));
        self
    }
    /// Any further `$filter` clause (ANDed).
    pub fn filter(mut self, clause: &str) -> Self {
        self.filters.push(clause.to_string());
        self
    }
    /// Page size (1..=999).
    pub fn top(mut self, n: u32) -> Self {
        self.top = Some(n.clamp(1, 999));
        self
    }
    /// Properties to return (default [`USER_SELECT`]).
    pub fn select(mut self, props: &[&str]) -> Self {
        self.select = Some(props.iter().map(|s| s.to_string()).collect());
        self
    }
    /// Sort by display name.
    pub fn order_by_display_name(mut self) -> Self {
        self.order_by = Some("displayName".into());
        self
    }
    fn advanced(&self) -> bool {
        self.search.is_some() || !self.filters.is_empty() || self.order_by.is_some()
    }
    fn pairs(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "$select".to_string(),
            self.select
                .as_ref()
                .map(|s| s.join(","))
                .unwrap_or_else(|| USER_SELECT.join(",")),
        )];
        if let Some(s) = &self.search {
            out.push(("$search".into(), s.clone()));
        }
        if !self.filters.is_empty() {
            out.push(("$filter".into(), self.filters.join(" and ")));
        }
        if let Some(t) = self.top {
            out.push(("$top".into(), t.to_string()));
        }
        if let Some(o) = &self.order_by {
            out.push(("$orderby".into(), o.clone()));
        }
        if self.advanced() {
            out.push(("$count".into(), "true".into()));
        }
        out
    }
}

/// ISO 8601 duration (`PT1H30M`).
pub fn iso_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{s}S"));
    }
    out
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "innerError", default)]
    inner_error: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(rename = "request-id", default)]
    request_id: Option<String>,
}

/// The claims challenge in a resource's `WWW-Authenticate` header (Microsoft's CAE and
/// conditional access: `Bearer ..., error="insufficient_claims", claims="<base64 JSON>"`),
/// decoded; send it with the next interactive sign-in.
pub fn parse_claims_challenge(www_authenticate: &str) -> Option<String> {
    use base64::Engine;
    let params = auth_params(www_authenticate);
    let raw = params.get("claims")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?;
    Some(text)
}

/// `key="value"` pairs of a `WWW-Authenticate` challenge (quoted values may hold commas).
fn auth_params(h: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let rest = h.trim();
    let rest = rest
        .split_once(' ')
        .filter(|(scheme, _)| !scheme.contains('='))
        .map_or(rest, |(_, r)| r);
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            v.push(n)
                        }
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>()
        };
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    out
}

/// Graph's limit of requests in one JSON batch.
pub const MAX_BATCH: usize = 20;

/// A `$batch` answer: one response per request, by id.
#[derive(serde::Deserialize)]
struct BatchReply {
    responses: Vec<BatchStep>,
}

#[derive(serde::Deserialize)]
struct BatchStep {
    id: String,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    body: Option<serde_json::Value>,
}

/// A Microsoft Graph client.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    config: GraphConfig,
    tokens: Arc<dyn AccessTokenProvider>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base.as_str())
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

const SCOPE_ME: &[&str] = &["User.Read"];
const SCOPE_USERS: &[&str] = &["User.ReadBasic.All"];
/// Profile properties beyond the basic set (`skills`) need the full read permission.
const SCOPE_USERS_FULL: &[&str] = &["User.Read.All"];
const SCOPE_MY_PRESENCE: &[&str] = &["Presence.Read"];
const SCOPE_PRESENCE_ALL: &[&str] = &["Presence.Read.All"];
const SCOPE_PRESENCE_WRITE: &[&str] = &["Presence.ReadWrite"];

impl GraphClient {
    /// A client over its own HTTP connection pool.
    pub fn new(
        config: GraphConfig,
        tokens: Arc<dyn AccessTokenProvider>,
    ) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| {
                GraphError::InvalidRequest(format!("could not build the HTTP client: {e}"))
            })?;
        Self::with_http(config, tokens, http)
    }

    /// A client sharing an HTTP client.
    pub fn with_http(
        config: GraphConfig,
        tokens: Arc<dyn AccessTokenProvider>,
        http: reqwest::Client,
    ) -> Result<Self, GraphError> {
        let base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| {
            GraphError::InvalidRequest(format!(
                "Graph base URL '{}' is not a URL: {e}",
                config.base_url
            ))
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(GraphError::InvalidRequest(format!(
                "Graph base URL '{}' must be an http(s) URL",
                config.base_url
            )));
        }
        Ok(Self {
            http,
            base,
            config,
            tokens,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    /// Only follow `@odata.nextLink`s to the same Graph (the token goes with them).
    fn same_origin(&self, link: &str) -> Result<Url, GraphError> {
        let u = Url::parse(link)
            .map_err(|_| GraphError::InvalidRequest(format!("nextLink '{link}' is not a URL")))?;
        if u.origin() != self.base.origin() || !u.path().starts_with(self.base.path()) {
            return Err(GraphError::InvalidRequest(format!(
                "nextLink '{link}' points outside {}; not following it with our token",
                self.base
            )));
        }
        Ok(u)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        scopes: &[&str],
        eventual: bool,
    ) -> Result<Reply, GraphError> {
        let mut retries = 0u32;
        let mut force_refresh = false;
        // The claims of a challenge already answered with a new token (asked once).
        let mut answered: Option<String> = None;
        let log_url = format!("{}{}", url.origin().ascii_serialization(), url.path());
        loop {
            let token = self
                .tokens
                .access_token(TokenRequest {
                    scopes,
                    force_refresh,
                    claims: answered.as_deref(),
                })
                .await
                .map_err(|e| match &answered {
                    // The identity platform wants the person: say which claims to sign in
                    // with.
                    Some(c) if e.interaction_required => GraphError::Api {
                        status: 401,
                        code: "InvalidAuthenticationToken".into(),
                        message: format!("a fresh sign-in is needed: {e}"),
                        request_id: None,
                        claims_challenge: Some(c.clone()),
                    },
                    _ => GraphError::from(e),
                })?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(ACCEPT, "application/json");
            if eventual {
                req = req.header("ConsistencyLevel", "eventual");
            }
            if let Some(b) = &body {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let resp = req.send().await.map_err(|source| GraphError::Transport {
                url: log_url.clone(),
                source,
            })?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(|source| GraphError::Transport {
                url: log_url.clone(),
                source,
            })?;
            tracing::debug!(method = %method, url = %log_url, status, retries, "Graph call");
            if (200..300).contains(&status) {
                return Ok(Reply {
                    status,
                    headers,
                    body: bytes.to_vec(),
                });
            }
            if matches!(status, 429 | 502 | 503 | 504) {
                let retry_after =
                    parse_retry_after(headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()));
                let jitter: f64 = rand::rng().random();
                match self.config.retry.delay(retries, retry_after, jitter) {
                    Some(wait) => {
                        tracing::info!(url = %log_url, status, ?retry_after, ?wait, "Graph throttled or unavailable; waiting before retrying");
                        tokio::time::sleep(wait).await;
                        retries += 1;
                        continue;
                    }
                    None => {
                        return Err(GraphError::Throttled {
                            status,
                            attempts: retries + 1,
                            retry_after,
                        })
                    }
                }
            }
            let claims = headers
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_claims_challenge);
            if status == 401 && answered.is_none() {
                if let Some(c) = &claims {
                    // A claims challenge (continuous access evaluation, step-up): one new
                    // token that satisfies it, then the call again.
                    tracing::info!(url = %log_url, "Graph sent a claims challenge; asking for a token that meets it");
                    answered = Some(c.clone());
                    force_refresh = true;
                    continue;
                }
            }
            if status == 401 && claims.is_none() && !force_refresh {
                // The token may have expired between the cache's check and Graph's: one retry
                // with a fresh token.
                force_refresh = true;
                continue;
            }
            let (code, message, request_id) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => (
                    e.error.code.unwrap_or_default(),
                    e.error.message.unwrap_or_default(),
                    e.error.inner_error.and_then(|i| i.request_id),
                ),
                Err(_) => (
                    String::new(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                    None,
                ),
            };
            return Err(GraphError::Api {
                status,
                code,
                message,
                request_id,
                claims_challenge: claims,
            });
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        scopes: &[&str],
        eventual: bool,
        what: &'static str,
    ) -> Result<T, GraphError> {
        let r = self.send(Method::GET, url, None, scopes, eventual).await?;
        serde_json::from_slice(&r.body).map_err(|source| GraphError::Malformed { what, source })
    }

    async fn post_json(
        &self,
        url: Url,
        body: &serde_json::Value,
        scopes: &[&str],
    ) -> Result<Reply, GraphError> {
        let bytes = serde_json::to_vec(body).map_err(|source| GraphError::Malformed {
            what: "request",
            source,
        })?;
        self.send(Method::POST, url, Some(bytes), scopes, false)
            .await
    }

    /// The signed-in user (`GET /me`).
    pub async fn me(&self) -> Result<User, GraphError> {
        let mut u = self.url(&["me"]);
        u.query_pairs_mut()
            .append_pair("$select", &USER_SELECT.join(","));
        self.get_json(u, SCOPE_ME, false, "user").await
    }

    /// One user by id or UPN, with `select` properties (e.g. `["id","displayName","skills"]`;
    /// empty: [`USER_SELECT`]).
    pub async fn user(&self, id: &str, select: &[&str]) -> Result<User, GraphError> {
        let mut u = self.url(&["users", id]);
        let sel = if select.is_empty() {
            USER_SELECT.join(",")
        } else {
            select.join(",")
        };
        u.query_pairs_mut().append_pair("$select", &sel);
        self.get_json(u, SCOPE_USERS, false, "user").await
    }

    /// The skills user `id`'s profile lists (Graph `skills`; none: an empty list). Read
    /// with User.Read.All: User.ReadBasic.All covers only the basic profile.
    pub async fn user_skills(&self, id: &str) -> Result<Vec<String>, GraphError> {
        let mut u = self.url(&["users", id]);
        u.query_pairs_mut().append_pair("$select", "id,skills");
        let user: User = self.get_json(u, SCOPE_USERS_FULL, false, "user").await?;
        Ok(user.skills.unwrap_or_default())
    }

    /// One page of users.
    pub async fn users(&self, query: &UserQuery) -> Result<Page<User>, GraphError> {
        let mut u = self.url(&["users"]);
        u.query_pairs_mut().extend_pairs(query.pairs());
        self.get_json(u, SCOPE_USERS, query.advanced(), "user page")
            .await
    }

    /// The page an `@odata.nextLink` points to (same Graph only).
    pub async fn users_next(&self, next_link: &str) -> Result<Page<User>, GraphError> {
        let u = self.same_origin(next_link)?;
        // nextLinks of advanced queries need the header again.
        let eventual = u
            .query_pairs()
            .any(|(k, _)| k == "$search" || k == "$count" || k == "$filter");
        self.get_json(u, SCOPE_USERS, eventual, "user page").await
    }

    /// Follows `@odata.nextLink` until the end or `limit` users.
    pub async fn users_all(
        &self,
        query: &UserQuery,
        limit: usize,
    ) -> Result<Vec<User>, GraphError> {
        let mut page = self.users(query).await?;
        let mut out = Vec::new();
        loop {
            out.append(&mut page.value);
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match page.next_link.take() {
                Some(next) => page = self.users_next(&next).await?,
                None => return Ok(out),
            }
        }
    }

    async fn photo_at(&self, url: Url, scopes: &[&str]) -> Result<Option<Photo>, GraphError> {
        match self.send(Method::GET, url, None, scopes, false).await {
            Ok(r) => {
                let content_type = r
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let _ = r.status;
                Ok(Some(Photo {
                    content_type,
                    bytes: r.body,
                }))
            }
            Err(GraphError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A user's photo; `None` if they have none (Graph's 404 `ImageNotFound`).
    pub async fn photo(&self, user_id: &str) -> Result<Option<Photo>, GraphError> {
        self.photo_at(
            self.url(&["users", user_id, "photo", "$value"]),
            SCOPE_USERS,
        )
        .await
    }

    /// Several users' photos in as few round trips as JSON batching allows (20 requests a
    /// batch): a directory page's avatars in one call instead of one call each. `size` is
    /// one of Graph's photo sizes (`48x48` … `648x648`; `None`: the largest). Users without
    /// a photo (or whose photo could not be read) get `None`; a step Graph throttled is
    /// asked again once after its `Retry-After` (at most 5 s).
    pub async fn photos<S: AsRef<str>>(
        &self,
        user_ids: &[S],
        size: Option<&str>,
    ) -> Result<Vec<(String, Option<Photo>)>, GraphError> {
        let mut out: Vec<(String, Option<Photo>)> = Vec::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(MAX_BATCH) {
            let mut pending: Vec<(usize, String)> = chunk
                .iter()
                .map(|id| id.as_ref().to_owned())
                .enumerate()
                .collect();
            let mut found: std::collections::HashMap<String, Option<Photo>> =
                std::collections::HashMap::new();
            for round in 0..2 {
                if pending.is_empty() {
                    break;
                }
                let requests: Vec<serde_json::Value> = pending
                    .iter()
                    .map(|(i, id)| {
                        let full = match size {
                            Some(sz) => self.url(&["users", id, "photos", sz, "$value"]),
                            None => self.url(&["users", id, "photo", "$value"]),
                        };
                        // Batch steps name paths relative to the version (`/users/…`).
                        let base = self.base.path().trim_end_matches('/');
                        let rel = full.path().strip_prefix(base).unwrap_or(full.path());
                        json!({ "id": i.to_string(), "method": "GET", "url": rel })
                    })
                    .collect();
                let reply = self
                    .post_json(
                        self.url(&["$batch"]),
                        &json!({ "requests": requests }),
                        SCOPE_USERS,
                    )
                    .await?;
                let batch: BatchReply = serde_json::from_slice(&reply.body).map_err(|source| {
                    GraphError::Malformed {
                        what: "batch response",
                        source,
                    }
                })?;
                let mut throttled = Vec::new();
                let mut wait = Duration::ZERO;
                for r in batch.responses {
                    let Some(id) = r.id.parse::<usize>().ok().and_then(|n| {
                        pending
                            .iter()
                            .find(|(i, _)| *i == n)
                            .map(|(_, id)| id.clone())
                    }) else {
                        continue;
                    };
                    match r.status {
                        200 => {
                            let content_type = r
                                .headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                                .and_then(|(_, v)| v.as_str())
                                .unwrap_or("application/octet-stream")
                                .to_owned();
                            let bytes = r.body.as_ref().and_then(|b| b.as_str()).and_then(|b| {
                                base64::Engine::decode(
                                    &base64::engine::general_purpose::STANDARD,
                                    b,
                                )
                                .ok()
                            });
                            found.insert(
                                id,
                                bytes.map(|bytes| Photo {
                                    content_type,
                                    bytes,
                                }),
                            );
                        }
                        429 | 503 if round == 0 => {
                            let after = r
                                .headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                                .and_then(|(_, v)| v.as_str())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .unwrap_or(1);
                            wait = wait.max(Duration::from_secs(after.min(5)));
                            throttled.push(id);
                        }
                        status => {
                            if status != 404 {
                                tracing::debug!(status, "a photo in a batch was not read");
                            }
                            found.insert(id, None);
                        }
                    }
                }
                pending.retain(|(_, id)| throttled.contains(id));
                if !pending.is_empty() {
                    tracing::info!(
                        users = pending.len(),
                        ?wait,
                        "photos throttled in a batch; asking again"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
            for id in chunk {
                let id = id.as_ref().to_owned();
                let p = found.remove(&id).flatten();
                out.push((id, p));
            }
        }
        Ok(out)
    }

    /// The signed-in user's photo.
    pub async fn my_photo(&self) -> Result<Option<Photo>, GraphError> {
        self.photo_at(self.url(&["me", "photo", "$value"]), SCOPE_ME)
            .await
    }

    /// The signed-in user's presence.
    pub async fn my_presence(&self) -> Result<Presence, GraphError> {
        self.get_json(
            self.url(&["me", "presence"]),
            SCOPE_MY_PRESENCE,
            false,
            "presence",
        )
        .await
    }

    /// Another user's presence.
    pub async fn presence(&self, user_id: &str) -> Result<Presence, GraphError> {
        self.get_json(
            self.url(&["users", user_id, "presence"]),
            SCOPE_PRESENCE_ALL,
            false,
            "presence",
        )
        .await
    }

    /// Presence of many users through `getPresencesByUserId`, 650 ids per call (duplicates
    /// asked once). Users Graph does not know are absent from the answer.
    pub async fn presences<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Presence>, GraphError> {
        let mut unique: Vec<&str> = Vec::with_capacity(ids.len());
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let id = id.as_ref();
            if seen.insert(id.to_ascii_lowercase()) {
                unique.push(id);
            }
        }
        let mut out = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(MAX_IDS_PER_CALL) {
            let r = self
                .post_json(
                    self.url(&["communications", "getPresencesByUserId"]),
                    &json!({ "ids": chunk }),
                    SCOPE_PRESENCE_ALL,
                )
                .await?;
            let page: Page<Presence> =
                serde_json::from_slice(&r.body).map_err(|source| GraphError::Malformed {
                    what: "presence collection",
                    source,
                })?;
            out.extend(page.value);
        }
        Ok(out)
    }

    fn check_session(&self) -> Result<(), GraphError> {
        if self.config.client_id.trim().is_empty() {
            return Err(GraphError::InvalidRequest("GraphConfig.client_id is empty; setPresence needs the application's client id as sessionId".into()));
        }
        Ok(())
    }

    /// `setPresence` for our application's session (`sessionId` = our client id).
    pub async fn set_presence(
        &self,
        user_id: &str,
        update: &PresenceUpdate,
    ) -> Result<(), GraphError> {
        self.check_session()?;
        let mut body = json!({
            "sessionId": self.config.client_id,
            "availability": update.availability.as_str(),
            "activity": update.activity.as_str(),
        });
        if let Some(d) = update.expiration {
            if d < Duration::from_secs(300) || d > Duration::from_secs(4 * 3600) {
                return Err(GraphError::InvalidRequest(format!(
                    "presence expiration must be 5 minutes to 4 hours (got {}s)",
                    d.as_secs()
                )));
            }
            body["expirationDuration"] = json!(iso_duration(d));
        }
        self.post_json(
            self.url(&["users", user_id, "presence", "setPresence"]),
            &body,
            SCOPE_PRESENCE_WRITE,
        )
        .await
        .map(|_| ())
    }

    /// `clearPresence`: ends our application's presence session. A session that no longer
    /// exists (cleared elsewhere, or timed out) is 404 at Graph: that is what we wanted, so
    /// it is `Ok`.
    pub async fn clear_presence(&self, user_id: &str) -> Result<(), GraphError> {
        self.check_session()?;
        match self
            .post_json(
                self.url(&["users", user_id, "presence", "clearPresence"]),
                &json!({ "sessionId": self.config.client_id }),
                SCOPE_PRESENCE_WRITE,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(GraphError::Api { status: 404, .. }) => {
                tracing::debug!("presence session already gone; nothing to clear");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `setUserPreferredPresence` (what the user picked; beats every session).
    pub async fn set_user_preferred_presence(
        &self,
        user_id: &str,
        availability: &Availability,
        activity: &Activity,
        expiration: Option<Duration>,
    ) -> Result<(), GraphError> {
        let mut body =
            json!({ "availability": availability.as_str(), "activity": activity.as_str() });
        if let Some(d) = expiration {
            body["expirationDuration"] = json!(iso_duration(d));
        }
        self.post_json(
            self.url(&["users", user_id, "presence", "setUserPreferredPresence"]),
            &body,
            SCOPE_PRESENCE_WRITE,
        )
        .await
        .map(|_| ())
    }

    /// `clearUserPreferredPresence`.
    pub async fn clear_user_preferred_presence(&self, user_id: &str) -> Result<(), GraphError> {
        self.post_json(
            self.url(&["users", user_id, "presence", "clearUserPreferredPresence"]),
            &json!({}),
            SCOPE_PRESENCE_WRITE,
        )
        .await
        .map(|_| ())
    }

    /// `setStatusMessage` (empty text clears it), optionally expiring.
    pub async fn set_status_message(
        &self,
        user_id: &str,
        text: &str,
        expires: Option<OffsetDateTime>,
    ) -> Result<(), GraphError> {
        let mut status = json!({ "message": { "content": text, "contentType": "text" } });
        if let Some(t) = expires {
            let t = t.to_offset(time::UtcOffset::UTC);
            status["expiryDateTime"] = json!({
                "dateTime": format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second()),
                "timeZone": "UTC",
            });
        }
        self.post_json(
            self.url(&["users", user_id, "presence", "setStatusMessage"]),
            &json!({ "statusMessage": status }),
            SCOPE_PRESENCE_WRITE,
        )
        .await
        .map(|_| ())
    }

    /// Creates a change-notification subscription (Graph validates the notification URL
    /// before answering).
    pub async fn create_subscription(
        &self,
        request: &SubscriptionRequest,
    ) -> Result<Subscription, GraphError> {
        if request
            .client_state
            .as_ref()
            .is_some_and(|c| c.chars().count() > 128)
        {
            return Err(GraphError::InvalidRequest(
                "clientState must be at most 128 characters".into(),
            ));
        }
        let body = serde_json::to_value(request).map_err(|source| GraphError::Malformed {
            what: "request",
            source,
        })?;
        let r = self
            .post_json(self.url(&["subscriptions"]), &body, SCOPE_PRESENCE_ALL)
            .await?;
        serde_json::from_slice(&r.body).map_err(|source| GraphError::Malformed {
            what: "subscription",
            source,
        })
    }

    /// Renews a subscription.
    pub async fn renew_subscription(
        &self,
        id: &str,
        expires: OffsetDateTime,
    ) -> Result<Subscription, GraphError> {
        let when = expires
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| GraphError::InvalidRequest(format!("bad expiration: {e}")))?;
        let bytes =
            serde_json::to_vec(&json!({ "expirationDateTime": when })).map_err(|source| {
                GraphError::Malformed {
                    what: "request",
                    source,
                }
            })?;
        let r = self
            .send(
                Method::PATCH,
                self.url(&["subscriptions", id]),
                Some(bytes),
                SCOPE_PRESENCE_ALL,
                false,
            )
            .await?;
        serde_json::from_slice(&r.body).map_err(|source| GraphError::Malformed {
            what: "subscription",
            source,
        })
    }

    /// Deletes a subscription.
    pub async fn delete_subscription(&self, id: &str) -> Result<(), GraphError> {
        self.send(
            Method::DELETE,
            self.url(&["subscriptions", id]),
            None,
            SCOPE_PRESENCE_ALL,
            false,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_iso() {
        assert_eq!(iso_duration(Duration::from_secs(300)), "PT5M");
        assert_eq!(iso_duration(Duration::from_secs(3600)), "PT1H");
        assert_eq!(iso_duration(Duration::from_secs(5430)), "PT1H30M30S");
        assert_eq!(iso_duration(Duration::ZERO), "PT0S");
    }

    #[test]
    fn user_query_builds_advanced_queries() {
        let q = UserQuery::new()
            .search("wa\"rd")
            .department("O'Brien & Co")
            .top(25);
        let p = q.pairs();
        let get = |k: &str| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("$search").unwrap(),
            "\"displayName:ward\" OR \"mail:ward\" OR \"jobTitle:ward\" OR \"department:ward\""
        );
        assert_eq!(get("$filter").unwrap(), "department eq 'O''Brien & Co'");
        assert_eq!(get("$count").unwrap(), "true");
        assert_eq!(get("$top").unwrap(), "25");
        assert!(q.advanced());
        assert!(!UserQuery::new().advanced());
        assert_eq!(UserQuery::new().search("  ").search, None);
    }

    #[test]
    fn claims_challenges_are_read_from_www_authenticate() {
        // The example of Microsoft's "Claims challenges, claims requests and client
        // capabilities" article.
        let h = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ==""#;
        assert_eq!(
            parse_claims_challenge(h).as_deref(),
            Some(r#"{"access_token":{"acrs":{"essential":true,"value":"cp1"}}}"#)
        );
        assert_eq!(
            parse_claims_challenge(r#"Bearer error="invalid_token""#),
            None
        );
        assert_eq!(
            parse_claims_challenge(r#"Bearer claims="not base64!""#),
            None
        );
        assert_eq!(parse_claims_challenge(""), None);
    }

    #[test]
    fn base_url_checks_and_next_link_origin() {
        let t: Arc<dyn AccessTokenProvider> = Arc::new(crate::StaticToken::new("t"));
        assert!(GraphClient::new(
            GraphConfig {
                base_url: "not a url".into(),
                ..GraphConfig::default()
            },
            t.clone()
        )
        .is_err());
        let c = GraphClient::new(GraphConfig::default(), t).unwrap();
        assert_eq!(
            c.url(&["users", "a#b@x", "photo", "$value"]).as_str(),
            "https://graph.microsoft.com/v1.0/users/a%23b@x/photo/$value"
        );
        assert!(c
            .same_origin("https://graph.microsoft.com/v1.0/users?$skiptoken=x")
            .is_ok());
        assert!(c.same_origin("https://evil.example/v1.0/users").is_err());
        assert!(c
            .same_origin("https://graph.microsoft.com/beta/users")
            .is_err());
    }
}
