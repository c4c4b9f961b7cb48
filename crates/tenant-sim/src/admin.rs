//! Test and demo controls under `/_sim` (no authentication: the simulator listens on
//! loopback; never expose it).
//!
//! | route | body | effect |
//! | --- | --- | --- |
//! | `GET /_sim/info` | | tenant id, client id, router API, demo password, URLs, users |
//! | `POST /_sim/throttle` | `{"enabled":true,"retry_after":1,"count":3,"status":429}` | Graph answers 429/503 with `Retry-After` (for `count` calls, or until disabled) |
//! | `POST /_sim/users/{id}/presence` | `{"availability":"Busy","activity":"InAMeeting"}` or `{"signedOut":true}` | sets the user's simulated Teams client presence |
//! | `POST /_sim/users` | `{"count":700}` | adds generated users; answers their ids |
//! | `POST /_sim/users/{id}/revoke` | | revokes the user's sessions: refresh tokens stop working, and Graph answers older access tokens with a continuous-access-evaluation claims challenge |
//! | `POST /_sim/clock/advance` | `{"seconds":900}` | moves the simulator's clock and runs expiry now |
//! | `POST /_sim/keys/rotate` | | new signing key (the old one stays in the JWKS) |
//! | `POST /_sim/subscriptions/{id}/lifecycle` | `{"lifecycleEvent":"reauthorizationRequired"}` | sends that lifecycle notification (the only one Graph sends for presence) |
//! | `POST /_sim/notifications/lose` | `{"count":1}` | the next `count` presence changes are not notified (Graph may lose a notification without saying so) |

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::errors::GraphError;
use crate::graph::json_body;
use crate::keys::SigningKey;
use crate::presence::{Pair, ACTIVITIES, AVAILABILITIES};
use crate::throttle::ThrottleSwitch;
use crate::{
    lock, read, subscriptions, write, AppState, DEMO_CLIENT_ID, DEMO_PASSWORD, ROUTER_API,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_sim/info", get(info))
        .route("/_sim/throttle", post(throttle))
        .route("/_sim/users", post(add_users))
        .route("/_sim/users/{id}/presence", post(set_presence))
        .route("/_sim/users/{id}/revoke", post(revoke))
        .route("/_sim/clock/advance", post(advance))
        .route("/_sim/keys/rotate", post(rotate))
        .route("/_sim/subscriptions/{id}/lifecycle", post(lifecycle))
        .route("/_sim/notifications/lose", post(lose_notifications))
}

async fn info(State(s): State<AppState>) -> Json<Value> {
    let users: Vec<Value> = read(&s.directory)
        .all()
        .iter()
        .take(50)
        .map(|u| json!({ "id": u.id, "userPrincipalName": u.user_principal_name, "displayName": u.display_name, "department": u.department, "roles": u.roles }))
        .collect();
    Json(json!({
        "tenantId": s.config.tenant_id,
        "authority": s.issuer_for(&s.config.tenant_id),
        "graph": s.graph_base(),
        "clientId": DEMO_CLIENT_ID,
        "routerApi": ROUTER_API,
        "routerApiClientId": crate::ROUTER_API_CLIENT_ID,
        "routerScope": format!("{ROUTER_API}/access_as_user"),
        "demoPassword": DEMO_PASSWORD,
        "users": users,
    }))
}

#[derive(Deserialize)]
struct ThrottleBody {
    enabled: bool,
    #[serde(default, alias = "retryAfter")]
    retry_after: Option<u64>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    status: Option<u16>,
}

async fn throttle(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, GraphError> {
    let b: ThrottleBody = json_body(&body)?;
    let status = b.status.unwrap_or(429);
    if status != 429 && status != 503 {
        return Err(GraphError::bad_request("status must be 429 or 503."));
    }
    let sw = ThrottleSwitch {
        enabled: b.enabled,
        retry_after: b.retry_after.unwrap_or(1),
        remaining: b.count,
        status,
    };
    lock(&s.throttle).switch = sw.clone();
    Ok(Json(
        json!({ "enabled": sw.enabled, "retry_after": sw.retry_after, "count": sw.remaining, "status": sw.status }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresenceBody {
    availability: Option<String>,
    activity: Option<String>,
    #[serde(default)]
    signed_out: bool,
}

async fn set_presence(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, GraphError> {
    let b: PresenceBody = json_body(&body)?;
    let uid = read(&s.directory)
        .find(&id)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::user_not_found(&id))?;
    let pair = if b.signed_out {
        None
    } else {
        let a = b.availability.unwrap_or_default();
        let c = b.activity.unwrap_or_else(|| a.clone());
        if !AVAILABILITIES.contains(&a.as_str()) || !ACTIVITIES.contains(&c.as_str()) {
            return Err(GraphError::bad_request(format!(
                "Unknown availability '{a}' or activity '{c}'."
            )));
        }
        Some(Pair::new(&a, &c))
    };
    crate::set_teams_presence(&s, &uid, pair);
    let view = lock(&s.presence).view(&uid, s.clock.now());
    Ok(Json(crate::graph::presence_json(&uid, &view, false)))
}

#[derive(Deserialize)]
struct CountBody {
    count: usize,
}

async fn add_users(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, GraphError> {
    let b: CountBody = json_body(&body)?;
    if b.count > 100_000 {
        return Err(GraphError::bad_request("count must be at most 100000."));
    }
    let new = write(&s.directory).add_generated(b.count);
    let now = s.clock.now();
    {
        let mut book = lock(&s.presence);
        for u in &new {
            book.set_teams(&u.id, u.seed_presence.map(|(a, b)| Pair::new(a, b)), now);
        }
    }
    let ids: Vec<&str> = new.iter().map(|u| u.id.as_str()).collect();
    Ok(Json(
        json!({ "added": ids.len(), "total": read(&s.directory).all().len(), "ids": ids }),
    ))
}

async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    let uid = read(&s.directory)
        .find(&id)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::user_not_found(&id))?;
    let n = lock(&s.grants).revoke_user(&uid, s.clock.unix());
    Ok(Json(json!({ "revoked": n })))
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: u64,
}

async fn advance(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, GraphError> {
    let b: AdvanceBody = json_body(&body)?;
    s.clock.advance(Duration::from_secs(b.seconds));
    subscriptions::tick(&s);
    Ok(Json(json!({ "offsetSeconds": s.clock.offset().as_secs() })))
}

async fn rotate(State(s): State<AppState>) -> Result<Json<Value>, GraphError> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                e.to_string(),
            )
        })?;
    let kid = key.kid().to_string();
    write(&s.keys).rotate(key);
    Ok(Json(json!({ "kid": kid })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LifecycleBody {
    lifecycle_event: String,
}

async fn lifecycle(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, GraphError> {
    let b: LifecycleBody = json_body(&body)?;
    if b.lifecycle_event != "reauthorizationRequired" {
        return Err(GraphError::bad_request(
            "lifecycleEvent must be reauthorizationRequired: Graph sends no missed or subscriptionRemoved for presence subscriptions.",
        ));
    }
    if !subscriptions::fire_lifecycle(&s, &id, &b.lifecycle_event) {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "No such subscription, or it has no lifecycleNotificationUrl.",
        ));
    }
    Ok(Json(json!({ "sent": b.lifecycle_event })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoseBody {
    count: usize,
}

async fn lose_notifications(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, GraphError> {
    let b: LoseBody = json_body(&body)?;
    s.lose_changes
        .store(b.count, std::sync::atomic::Ordering::SeqCst);
    Ok(Json(json!({ "lose": b.count })))
}
