//! The Microsoft Graph v1.0 subset, with Graph's paths, payloads and errors.
//!
//! | route | scope (any of) |
//! | --- | --- |
//! | `GET /v1.0/me` | User.Read, ... |
//! | `GET /v1.0/users` (`$search` needs `ConsistencyLevel: eventual`; `$filter`, `$select`, `$top`, `$orderby`, `$count`, `$skiptoken`) | User.ReadBasic.All, User.Read.All, Directory.Read.All |
//! | `GET /v1.0/users/{id or upn}` (`$select=skills`: null without User.Read.All or Directory.Read.All, as outside the basic profile) | same |
//! | `GET /v1.0/me/photo/$value`, `/users/{id}/photo/$value`, `/users/{id}/photos/{48x48…648x648}/$value` | User.Read (self), User.ReadBasic.All |
//! | `POST /v1.0/$batch` (≤ 20 requests; see [`crate::batch`]) | each request's own |
//! | `GET /v1.0/me/presence` | Presence.Read, Presence.Read.All |
//! | `GET /v1.0/users/{id}/presence`, `/communications/presences/{id}` | Presence.Read.All |
//! | `POST /v1.0/communications/getPresencesByUserId` (≤ 650 ids) | Presence.Read.All |
//! | `POST /v1.0/{me, users/{id}}/presence/setPresence`, `clearPresence`, `setUserPreferredPresence`, `clearUserPreferredPresence`, `setStatusMessage` | Presence.ReadWrite (own presence only) |
//! | `GET /oidc/userinfo` | any Graph token |
//! | `POST/GET /v1.0/subscriptions`, `GET/PATCH/DELETE /v1.0/subscriptions/{id}`, `POST .../reauthorize` | Presence.Read.All (see [`crate::subscriptions`]) |
//!
//! Every call needs `Authorization: Bearer` with a token this simulator signed for Graph.
//! Presence calls count against 1,500 per 30 s per application; the `/_sim/throttle` switch
//! makes every call answer 429/503 with `Retry-After`.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::clock::graph_datetime;
use crate::directory::{DemoUser, DEFAULT_PROPERTIES, KNOWN_PROPERTIES};
use crate::errors::GraphError;
use crate::keys::AccessClaims;
use crate::odata::{Filter, Search};
use crate::presence::{Pair, PresenceChange, PresenceError, PresenceView, StatusMessage};
use crate::{
    avatar, identity, lock, read, subscriptions, AppState, Shared, GRAPH_APP_ID, GRAPH_RESOURCE,
};

/// Most ids `getPresencesByUserId` takes in one call.
pub const MAX_PRESENCE_IDS: usize = 650;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1.0/me", get(me))
        .route("/v1.0/users", get(list_users))
        .route("/v1.0/users/{id}", get(get_user))
        .route("/v1.0/me/photo/$value", get(my_photo))
        .route("/v1.0/users/{id}/photo/$value", get(user_photo))
        .route(
            "/v1.0/users/{id}/photos/{size}/$value",
            get(user_photo_sized),
        )
        .route("/v1.0/me/presence", get(my_presence))
        .route("/v1.0/users/{id}/presence", get(user_presence))
        .route("/v1.0/communications/presences/{id}", get(user_presence))
        .route(
            "/v1.0/communications/getPresencesByUserId",
            post(presences_by_id),
        )
        .route("/v1.0/me/presence/{action}", post(my_presence_action))
        .route(
            "/v1.0/users/{id}/presence/{action}",
            post(user_presence_action),
        )
        .route("/oidc/userinfo", get(userinfo))
        .merge(subscriptions::routes())
}

/// The signed-in caller of a Graph request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token claims.
    pub claims: AccessClaims,
    scopes: Vec<String>,
}

impl Caller {
    /// Whether the token carries any of these scopes.
    pub fn has_any(&self, wanted: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|s| wanted.iter().any(|w| w.eq_ignore_ascii_case(s)))
    }
    fn require(&self, wanted: &[&str], code: &'static str) -> Result<(), GraphError> {
        if self.has_any(wanted) {
            Ok(())
        } else {
            let msg = if code == "Authorization_RequestDenied" {
                "Insufficient privileges to complete the operation.".to_string()
            } else {
                format!(
                    "Missing scope permissions on the request. API requires one of '{}'.",
                    wanted.join(", ")
                )
            };
            Err(GraphError::new(StatusCode::FORBIDDEN, code, msg))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .unwrap_or("");
        let unauthorized = |msg: String| {
            let mut r = GraphError::unauthorized(msg).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\""),
            );
            r
        };
        if token.is_empty() {
            return Err(unauthorized("Access token is empty.".into()));
        }
        let claims = identity::check_access_token(s, token, &[GRAPH_RESOURCE, GRAPH_APP_ID])
            .map_err(|e| {
                tracing::info!(reason = %e, "Graph call with a bad token refused");
                unauthorized(format!("Access token validation failure. {e}"))
            })?;
        // Continuous access evaluation: a token older than the user's session revocation
        // gets Microsoft's claims challenge (the example of "Continuous access evaluation"
        // in Microsoft's docs: an `nbf` the new token must meet) — only when the app declared
        // the `cp1` capability; other apps' tokens are honoured until they expire.
        let cae = claims.xms_cc.iter().any(|c| c == "cp1");
        if let Some(revoked) = lock(&s.grants).revoked_at(&claims.oid).filter(|_| cae) {
            if claims.iat < revoked {
                tracing::info!(user = %claims.oid, "Graph call with a token issued before the session was revoked: claims challenge");
                let challenge = base64::engine::general_purpose::STANDARD.encode(format!(
                    r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{revoked}"}}}}}}"#
                ));
                let mut r = GraphError::unauthorized(
                    "Continuous access evaluation resulted in challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp",
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!(
                    r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="{challenge}""#
                )) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                return Err(r);
            }
        }
        if let Some((status, retry)) = lock(&s.throttle).check_switch() {
            return Err(throttled(status, retry).into_response());
        }
        let scopes = claims
            .scp
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(Caller { claims, scopes })
    }
}

fn throttled(status: u16, retry_after: u64) -> GraphError {
    let mut e = if status == 503 {
        GraphError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "The service is temporarily unavailable. Retry after the time in the Retry-After header.")
    } else {
        GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Retry after the time in the Retry-After header.",
        )
    };
    e.retry_after = Some(retry_after);
    e
}

const USERS_READ: &[&str] = &["User.ReadBasic.All", "User.Read.All", "Directory.Read.All"];
/// What reads a user's full profile (`skills` among it), not only the basic one.
const USERS_FULL_READ: &[&str] = &["User.Read.All", "Directory.Read.All"];
const ME_READ: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "User.Read.All",
    "Directory.Read.All",
];
const PRESENCE_SELF: &[&str] = &[
    "Presence.Read",
    "Presence.Read.All",
    "Presence.ReadWrite",
    "Presence.ReadWrite.All",
];
const PRESENCE_ALL: &[&str] = &["Presence.Read.All", "Presence.ReadWrite.All"];
const PRESENCE_WRITE: &[&str] = &["Presence.ReadWrite", "Presence.ReadWrite.All"];

/// Parses a JSON body into `T` with Graph-style 400 errors.
pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|e| GraphError::bad_request(format!("Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format. ({e})")))
}

fn find_user(s: &Shared, id: &str) -> Result<DemoUser, GraphError> {
    read(&s.directory)
        .find(id)
        .cloned()
        .ok_or_else(|| GraphError::user_not_found(id))
}

fn parse_select(select: Option<&str>, single: bool) -> Result<Vec<&'static str>, GraphError> {
    let Some(select) = select.filter(|s| !s.trim().is_empty()) else {
        return Ok(DEFAULT_PROPERTIES.to_vec());
    };
    let mut out = Vec::new();
    for p in select.split(',').map(str::trim) {
        let known = KNOWN_PROPERTIES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(p))
            .ok_or_else(|| GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", format!("Could not find a property named '{p}' on type 'Microsoft.DirectoryServices.User'.")))?;
        if *known == "skills" && !single {
            return Err(GraphError::new(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "This operation target is not yet supported: 'skills' can only be read on a single user."));
        }
        out.push(*known);
    }
    Ok(out)
}

fn user_entity(s: &Shared, u: &DemoUser, select: &[&str]) -> Value {
    let mut m = Map::new();
    m.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#users/$entity", s.graph_base())),
    );
    m.extend(u.to_json(select));
    Value::Object(m)
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| {
            k.eq_ignore_ascii_case(name)
                || k.trim_start_matches('$')
                    .eq_ignore_ascii_case(name.trim_start_matches('$'))
        })
        .map(|(_, v)| v.as_str())
}

async fn me(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, GraphError> {
    caller.require(ME_READ, "Authorization_RequestDenied")?;
    let u = find_user(&s, &caller.claims.oid)?;
    let select = parse_select(param(&q, "$select"), true)?;
    Ok(Json(user_entity(&s, &u, &select)))
}

async fn get_user(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, GraphError> {
    if id != caller.claims.oid {
        caller.require(USERS_READ, "Authorization_RequestDenied")?;
    }
    let u = find_user(&s, &id)?;
    let select = parse_select(param(&q, "$select"), true)?;
    let mut entity = user_entity(&s, &u, &select);
    // Skills are outside the basic profile User.ReadBasic.All reads (display name, names,
    // mail, UPN, id, photo): without the full read they come back null.
    if u.id != caller.claims.oid && !caller.has_any(USERS_FULL_READ) {
        if let Some(v) = entity.get_mut("skills") {
            *v = Value::Null;
        }
    }
    Ok(Json(entity))
}

fn eventual(headers: &HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
}

async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, GraphError> {
    caller.require(USERS_READ, "Authorization_RequestDenied")?;
    let eventual = eventual(&headers);
    let unsupported =
        |m: String| GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", m);
    let search = match param(&q, "$search") {
        Some(_) if !eventual => {
            return Err(unsupported("Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'".into()))
        }
        Some(text) => Some(Search::parse(text).map_err(|e| unsupported(e.0))?),
        None => None,
    };
    let filter = match param(&q, "$filter") {
        Some(text) => Some(Filter::parse(text, eventual).map_err(|e| unsupported(e.0))?),
        None => None,
    };
    let count = param(&q, "$count").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if count && !eventual {
        return Err(unsupported(
            "$count is not currently supported without the 'ConsistencyLevel: eventual' header."
                .into(),
        ));
    }
    let top = match param(&q, "$top") {
        None => 100,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => n,
            _ => {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    format!(
                        "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
                    ),
                ))
            }
        },
    };
    let select = parse_select(param(&q, "$select"), false)?;
    let offset = match param(&q, "$skiptoken") {
        None => 0,
        Some(t) => decode_skiptoken(t).ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "The specified page token value has expired or is invalid.",
            )
        })?,
    };
    let dir = read(&s.directory);
    let mut matched: Vec<&DemoUser> = dir
        .all()
        .iter()
        .filter(|u| {
            filter.as_ref().is_none_or(|f| f.matches(u))
                && search.as_ref().is_none_or(|x| x.matches(u))
        })
        .collect();
    if let Some(order) = param(&q, "$orderby") {
        let mut parts = order.split_whitespace();
        let prop = parts.next().unwrap_or("");
        let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
        if !["displayName", "userPrincipalName"].contains(&prop) {
            return Err(unsupported(format!("Sorting not supported for '{prop}'.")));
        }
        matched.sort_by_key(|u| u.string_property(prop).unwrap_or("").to_lowercase());
        if desc {
            matched.reverse();
        }
    }
    let total = matched.len();
    let page: Vec<Value> = matched
        .iter()
        .skip(offset)
        .take(top)
        .map(|u| Value::Object(u.to_json(&select)))
        .collect();
    let ctx = if param(&q, "$select").is_some() {
        format!("{}/$metadata#users({})", s.graph_base(), select.join(","))
    } else {
        format!("{}/$metadata#users", s.graph_base())
    };
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(ctx));
    if count {
        body.insert("@odata.count".into(), json!(total));
    }
    if offset + top < total {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q
            .iter()
            .filter(|(k, _)| !k.trim_start_matches('$').eq_ignore_ascii_case("skiptoken"))
        {
            ser.append_pair(k, v);
        }
        ser.append_pair("$skiptoken", &encode_skiptoken(offset + top));
        body.insert(
            "@odata.nextLink".into(),
            json!(format!("{}/users?{}", s.graph_base(), ser.finish())),
        );
    }
    body.insert("value".into(), Value::Array(page));
    Ok(Json(Value::Object(body)))
}

fn encode_skiptoken(offset: usize) -> String {
    format!(
        "RFNwdAIAAQAAA{}",
        URL_SAFE_NO_PAD.encode(format!("offset={offset}"))
    )
}

fn decode_skiptoken(t: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD
        .decode(t.strip_prefix("RFNwdAIAAQAAA")?)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset=")?
        .parse()
        .ok()
}

fn photo(s: &Shared, caller: &Caller, id: &str) -> Result<Response, GraphError> {
    if id != caller.claims.oid {
        caller.require(USERS_READ, "Authorization_RequestDenied")?;
    }
    let u = find_user(s, id)?;
    if !u.has_photo {
        return Err(GraphError::new(StatusCode::NOT_FOUND, "ImageNotFound", "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown."));
    }
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], avatar::svg(&u)).into_response())
}

async fn my_photo(State(s): State<AppState>, caller: Caller) -> Result<Response, GraphError> {
    caller.require(ME_READ, "Authorization_RequestDenied")?;
    let id = caller.claims.oid.clone();
    photo(&s, &caller, &id)
}

async fn user_photo(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, GraphError> {
    photo(&s, &caller, &id)
}

/// The sizes Graph keeps of a profile photo.
const PHOTO_SIZES: &[&str] = &[
    "48x48", "64x64", "96x96", "120x120", "240x240", "360x360", "432x432", "504x504", "648x648",
];

async fn user_photo_sized(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, size)): Path<(String, String)>,
) -> Result<Response, GraphError> {
    if !PHOTO_SIZES.contains(&size.as_str()) {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "ImageNotFound",
            "The photo size requested is not one of the sizes kept.",
        ));
    }
    photo(&s, &caller, &id)
}

fn presence_rate(s: &Shared, caller: &Caller) -> Result<(), GraphError> {
    match lock(&s.throttle).check_presence(&caller.claims.azp, s.clock.now()) {
        Some((status, retry)) => Err(throttled(status, retry)),
        None => Ok(()),
    }
}

/// Presence JSON as Graph returns it. `own`: the caller reads their own presence (the status
/// message then includes its expiry and publish time).
pub(crate) fn presence_json(id: &str, view: &PresenceView, own: bool) -> Value {
    let status = view.status.as_ref().map(|m| {
        let mut o = json!({ "message": { "content": m.content, "contentType": m.content_type } });
        if own {
            if let Some(raw) = &m.expiry_raw {
                o["expiryDateTime"] = raw.clone();
            }
            o["publishedDateTime"] = json!(m.published);
        }
        o
    });
    json!({
        "id": id,
        "availability": view.pair.availability,
        "activity": view.pair.activity,
        "statusMessage": status,
        "outOfOfficeSettings": { "message": null, "isOutOfOffice": view.pair.activity == "OutOfOffice" },
    })
}

fn presence_of(s: &Shared, id: &str, own: bool) -> Value {
    let view = lock(&s.presence).view(id, s.clock.now());
    presence_json(id, &view, own)
}

async fn my_presence(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, GraphError> {
    caller.require(PRESENCE_SELF, "Forbidden")?;
    presence_rate(&s, &caller)?;
    let mut v = presence_of(&s, &caller.claims.oid, true);
    v["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/presence/$entity",
        s.graph_base(),
        caller.claims.oid
    ));
    Ok(Json(v))
}

async fn user_presence(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    let u = find_user(&s, &id)?;
    if u.id != caller.claims.oid {
        caller.require(PRESENCE_ALL, "Forbidden")?;
    } else {
        caller.require(PRESENCE_SELF, "Forbidden")?;
    }
    presence_rate(&s, &caller)?;
    let mut v = presence_of(&s, &u.id, u.id == caller.claims.oid);
    v["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/presence/$entity",
        s.graph_base(),
        u.id
    ));
    Ok(Json(v))
}

#[derive(Deserialize)]
struct IdsBody {
    ids: Vec<String>,
}

async fn presences_by_id(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, GraphError> {
    caller.require(PRESENCE_ALL, "Forbidden")?;
    presence_rate(&s, &caller)?;
    let b: IdsBody = json_body(&body)?;
    if b.ids.is_empty() {
        return Err(GraphError::bad_request(
            "The ids list must contain at least one user id.",
        ));
    }
    if b.ids.len() > MAX_PRESENCE_IDS {
        return Err(GraphError::bad_request(format!(
            "The number of user ids ({}) exceeds the maximum of {MAX_PRESENCE_IDS} per request.",
            b.ids.len()
        )));
    }
    if let Some(bad) = b.ids.iter().find(|i| uuid::Uuid::parse_str(i).is_err()) {
        return Err(GraphError::bad_request(format!(
            "Invalid user id '{bad}': user ids must be GUIDs."
        )));
    }
    let known: Vec<String> = {
        let dir = read(&s.directory);
        b.ids
            .iter()
            .filter(|i| dir.find(i).is_some())
            .cloned()
            .collect()
    };
    let now = s.clock.now();
    let book = lock(&s.presence);
    let value: Vec<Value> = known
        .iter()
        .map(|id| presence_json(id, &book.view(id, now), false))
        .collect();
    drop(book);
    Ok(Json(
        json!({ "@odata.context": format!("{}/$metadata#Collection(microsoft.graph.presence)", s.graph_base()), "value": value }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetPresenceBody {
    session_id: Option<String>,
    availability: Option<String>,
    activity: Option<String>,
    expiration_duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClearPresenceBody {
    session_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    status_message: Option<StatusIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusIn {
    message: Option<ItemBody>,
    expiry_date_time: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    content: Option<String>,
    content_type: Option<String>,
}

async fn my_presence_action(
    State(s): State<AppState>,
    caller: Caller,
    Path(action): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    let id = caller.claims.oid.clone();
    presence_action(&s, &caller, &id, &action, &body)
}

async fn user_presence_action(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, GraphError> {
    presence_action(&s, &caller, &id, &action, &body)
}

fn presence_error(e: PresenceError) -> GraphError {
    match e {
        PresenceError::SessionNotFound(_) => {
            GraphError::new(StatusCode::NOT_FOUND, "NotFound", e.to_string())
        }
        _ => GraphError::bad_request(e.to_string()),
    }
}

fn parse_expiry(s: &Shared, v: &Value) -> Result<std::time::Instant, GraphError> {
    let bad = || {
        GraphError::bad_request("expiryDateTime must be {\"dateTime\": \"YYYY-MM-DDThh:mm:ss[.fffffff]\", \"timeZone\": \"UTC\"} and in the future.")
    };
    let dt = v.get("dateTime").and_then(Value::as_str).ok_or_else(bad)?;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let when = time::PrimitiveDateTime::parse(dt.trim_end_matches('Z'), &fmt)
        .map_err(|_| bad())?
        .assume_utc();
    // Time zones other than UTC are read as UTC (the simulator keeps no zone database).
    let ahead = when - s.clock.wall();
    if ahead <= time::Duration::ZERO {
        return Err(bad());
    }
    Ok(s.clock.now() + std::time::Duration::try_from(ahead).map_err(|_| bad())?)
}

fn presence_action(
    s: &Shared,
    caller: &Caller,
    id: &str,
    action: &str,
    body: &[u8],
) -> Result<Response, GraphError> {
    let u = find_user(s, id)?;
    let delegated_self = u.id == caller.claims.oid;
    if !delegated_self && !caller.has_any(&["Presence.ReadWrite.All"]) {
        return Err(GraphError::forbidden(
            "A delegated token can only change the signed-in user's own presence.",
        ));
    }
    caller.require(PRESENCE_WRITE, "Forbidden")?;
    presence_rate(s, caller)?;
    let now = s.clock.now();
    let change: Option<PresenceChange> = match action {
        "setPresence" => {
            let b: SetPresenceBody = json_body(body)?;
            let session = b.session_id.unwrap_or_default();
            if !session.is_empty() && !session.eq_ignore_ascii_case(&caller.claims.azp) {
                return Err(GraphError::bad_request(
                    "sessionId must be the calling application's client id.",
                ));
            }
            let pair = Pair::new(
                b.availability.as_deref().unwrap_or(""),
                b.activity.as_deref().unwrap_or(""),
            );
            lock(&s.presence)
                .set_presence(&u.id, &session, pair, b.expiration_duration.as_deref(), now)
                .map_err(presence_error)?
        }
        "clearPresence" => {
            let b: ClearPresenceBody = json_body(body)?;
            let session = b.session_id.unwrap_or_default();
            lock(&s.presence)
                .clear_presence(&u.id, &session, now)
                .map_err(presence_error)?
        }
        "setUserPreferredPresence" => {
            let b: SetPresenceBody = json_body(body)?;
            let pair = Pair::new(
                b.availability.as_deref().unwrap_or(""),
                b.activity.as_deref().unwrap_or(""),
            );
            lock(&s.presence)
                .set_preferred(&u.id, pair, b.expiration_duration.as_deref(), now)
                .map_err(presence_error)?
        }
        "clearUserPreferredPresence" => lock(&s.presence).clear_preferred(&u.id, now),
        "setStatusMessage" => {
            let b: StatusBody = json_body(body)?;
            let st = b
                .status_message
                .ok_or_else(|| GraphError::bad_request("statusMessage is required."))?;
            let msg = st
                .message
                .ok_or_else(|| GraphError::bad_request("statusMessage.message is required."))?;
            let content = msg.content.unwrap_or_default();
            let status = if content.is_empty() {
                None
            } else {
                let expires_at = st
                    .expiry_date_time
                    .as_ref()
                    .map(|v| parse_expiry(s, v))
                    .transpose()?;
                Some(StatusMessage {
                    content,
                    content_type: msg.content_type.unwrap_or_else(|| "text".into()),
                    expires_at,
                    expiry_raw: st.expiry_date_time,
                    published: graph_datetime(s.clock.wall()),
                })
            };
            lock(&s.presence).set_status(&u.id, status);
            None
        }
        other => {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Resource not found for the segment '{other}'."),
            ))
        }
    };
    tracing::debug!(user = %u.id, action, "presence updated");
    if let Some(c) = change {
        subscriptions::dispatch(s, vec![c]);
    }
    Ok(StatusCode::OK.into_response())
}

async fn userinfo(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, GraphError> {
    let u = find_user(&s, &caller.claims.oid)?;
    Ok(Json(json!({
        "sub": caller.claims.sub,
        "name": u.display_name,
        "family_name": u.surname,
        "given_name": u.given_name,
        "picture": format!("{}/me/photo/$value", s.graph_base()),
        "email": u.mail,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptoken_round_trip_and_garbage() {
        assert_eq!(decode_skiptoken(&encode_skiptoken(700)), Some(700));
        assert_eq!(decode_skiptoken("garbage"), None);
        assert_eq!(decode_skiptoken("RFNwdAIAAQAAA!!"), None);
    }

    #[test]
    fn select_rules() {
        assert_eq!(parse_select(None, false).unwrap(), DEFAULT_PROPERTIES);
        assert_eq!(
            parse_select(Some("displayName,department"), false).unwrap(),
            vec!["displayName", "department"]
        );
        assert_eq!(
            parse_select(Some("skills"), false).unwrap_err().status,
            StatusCode::NOT_IMPLEMENTED
        );
        assert!(parse_select(Some("skills"), true).is_ok());
        assert_eq!(
            parse_select(Some("nope"), true).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
