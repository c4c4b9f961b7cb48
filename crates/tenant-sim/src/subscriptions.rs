//! Change-notification subscriptions on presence, delivered over real HTTP.
//!
//! - `POST /v1.0/subscriptions` with `resource` `/communications/presences?$filter=id in
//!   ('id1','id2')` (≤ 650 ids) or `communications/presences/{id}`, `changeType: updated`,
//!   `notificationUrl`, optional `lifecycleNotificationUrl`, `clientState` (≤ 128 characters)
//!   and `expirationDateTime` at most one hour ahead. Before answering 201 the simulator POSTs
//!   `?validationToken=...` (Graph's wording, with spaces and colons, so receivers must
//!   URL-decode) to each URL and wants `200` with the token as the body within 10 seconds.
//! - `PATCH /v1.0/subscriptions/{id}` renews (≤ 1 hour), `DELETE` removes,
//!   `GET /v1.0/subscriptions[/{id}]` lists, `POST /v1.0/subscriptions/{id}/reauthorize`.
//! - Presence changes of subscribed users are POSTed as `{"value": [...]}` batches with
//!   `clientState`; each POST must get a 2xx within 3 seconds. A failed delivery is tried
//!   again (three tries in all, 1 s then 2 s apart) and then dropped without a word: for
//!   presence Graph sends no `missed` or `subscriptionRemoved` lifecycle notification (those
//!   exist for Outlook resources and Teams chat messages only), so a receiver must re-read
//!   what it watches now and then. Ten minutes before expiry a `reauthorizationRequired`
//!   lifecycle notification is sent — the only one Graph sends for presence;
//!   `POST /_sim/subscriptions/{id}/lifecycle` sends it at once, and
//!   `POST /_sim/notifications/lose` loses the next changes' notifications, as Graph may.
//!   Expired subscriptions vanish.
//! - Notifications are *basic* ones (the resource id, no availability): notifications with
//!   resource data need an encryption certificate in Graph, and the simulator does not
//!   encrypt; `includeResourceData: true` is refused with a 400 that says so. A receiver
//!   reads the new presence with `getPresencesByUserId`.
//!
//! Unlike Graph, `http://` notification URLs are accepted (loopback tests).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use url::Url;

use crate::clock::{graph_datetime, parse_datetime};
use crate::errors::GraphError;
use crate::graph::{json_body, Caller, MAX_PRESENCE_IDS};
use crate::presence::PresenceChange;
use crate::{lock, AppState, Shared};

/// Longest subscription lifetime for presence.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// When the `reauthorizationRequired` lifecycle notification goes out.
pub const REAUTHORIZE_BEFORE: Duration = Duration::from_secs(600);

enum Outgoing {
    Change(Value),
    Lifecycle(Value),
}

/// A live subscription.
pub struct Subscription {
    id: String,
    resource: String,
    user_ids: BTreeSet<String>,
    notification_url: String,
    lifecycle_url: Option<String>,
    client_state: Option<String>,
    expires: OffsetDateTime,
    application_id: String,
    creator_id: String,
    reauth_sent: bool,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// All subscriptions.
#[derive(Default)]
pub struct SubscriptionStore {
    subs: HashMap<String, Subscription>,
}

impl SubscriptionStore {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// How many are live.
    pub fn len(&self) -> usize {
        self.subs.len()
    }
    /// Whether none are live.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

/// Parses a presence subscription resource into user ids.
pub fn parse_resource(resource: &str) -> Result<Vec<String>, String> {
    let r = resource.trim().trim_start_matches('/');
    let ids: Vec<String> = if let Some(id) = r.strip_prefix("communications/presences/") {
        vec![id.to_string()]
    } else if let Some(q) = r.strip_prefix("communications/presences?") {
        let filter = q.strip_prefix("$filter=").ok_or(
            "The presence resource must be communications/presences?$filter=id in ('id1','id2').",
        )?;
        let list = filter
            .trim()
            .strip_prefix("id in")
            .map(str::trim)
            .and_then(|l| l.strip_prefix('('))
            .and_then(|l| l.strip_suffix(')'))
            .ok_or("The filter must be id in ('id1','id2',...).")?;
        list.split(',')
            .map(|p| p.trim().trim_matches('\'').trim_matches('"').to_string())
            .collect()
    } else {
        return Err(format!("Resource '{resource}' is not supported by the simulated tenant; use communications/presences."));
    };
    if ids.is_empty() || ids.iter().any(|i| i.is_empty()) {
        return Err("The id list is empty.".into());
    }
    if ids.len() > MAX_PRESENCE_IDS {
        return Err(format!(
            "A presence subscription takes at most {MAX_PRESENCE_IDS} user ids ({} given).",
            ids.len()
        ));
    }
    if let Some(bad) = ids.iter().find(|i| uuid::Uuid::parse_str(i).is_err()) {
        return Err(format!("'{bad}' is not a user id (GUID)."));
    }
    Ok(ids.into_iter().map(|i| i.to_ascii_lowercase()).collect())
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1.0/subscriptions", post(create).get(list))
        .route(
            "/v1.0/subscriptions/{id}",
            get(get_one).patch(renew).delete(remove),
        )
        .route("/v1.0/subscriptions/{id}/reauthorize", post(reauthorize))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
    #[serde(default)]
    include_resource_data: bool,
    encryption_certificate: Option<String>,
}

fn to_json(s: &Shared, sub: &Subscription) -> Value {
    json!({
        "@odata.context": format!("{}/$metadata#subscriptions/$entity", s.graph_base()),
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": sub.application_id,
        "changeType": "updated",
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "notificationQueryOptions": null,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": graph_datetime(sub.expires),
        "creatorId": sub.creator_id,
        "includeResourceData": false,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

fn invalid(msg: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

fn check_expiry(s: &Shared, raw: Option<&str>) -> Result<OffsetDateTime, GraphError> {
    let raw = raw.ok_or_else(|| invalid("expirationDateTime is required."))?;
    let t = parse_datetime(raw).ok_or_else(|| {
        invalid(format!(
            "expirationDateTime '{raw}' is not an ISO 8601 date-time."
        ))
    })?;
    let now = s.clock.wall();
    if t <= now {
        return Err(invalid("Subscription expiration must be in the future."));
    }
    if t - now > time::Duration::seconds(MAX_LIFETIME.as_secs() as i64 + 60) {
        return Err(invalid(
            "Subscription expiration can only be 60 minutes in the future for presence.",
        ));
    }
    Ok(t)
}

fn check_url(raw: &str, what: &str) -> Result<String, GraphError> {
    match Url::parse(raw) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(raw.to_string()),
        _ => Err(invalid(format!(
            "{what} '{raw}' is not an absolute http(s) URL."
        ))),
    }
}

/// Graph's validation handshake: POST `?validationToken=...`, expect 200 with the token.
async fn validate(s: &Shared, url: &str) -> Result<(), GraphError> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut target = Url::parse(url).map_err(|_| invalid("notificationUrl is not a URL."))?;
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let failed = |why: String| {
        tracing::info!(url, why = %why, "subscription validation failed");
        invalid(format!("Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. ({why})"))
    };
    let resp = s
        .http
        .post(target)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(s.config.validation_timeout)
        .send()
        .await
        .map_err(|e| failed(format!("request failed: {e}")))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(failed(format!("status {}", resp.status())));
    }
    let body = resp
        .text()
        .await
        .map_err(|e| failed(format!("body unreadable: {e}")))?;
    if body != token {
        return Err(failed(
            "the response body was not the validation token".into(),
        ));
    }
    Ok(())
}

async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, GraphError> {
    if !caller.has_any(&["Presence.Read.All", "Presence.ReadWrite.All"]) {
        return Err(GraphError::forbidden(
            "Missing scope permissions on the request. API requires one of 'Presence.Read.All'.",
        ));
    }
    let b: CreateBody = json_body(&body)?;
    if b.change_type.as_deref() != Some("updated") {
        return Err(invalid("changeType must be 'updated' for presence."));
    }
    let resource = b
        .resource
        .clone()
        .ok_or_else(|| invalid("resource is required."))?;
    let ids = parse_resource(&resource).map_err(invalid)?;
    let notification_url = check_url(
        b.notification_url
            .as_deref()
            .ok_or_else(|| invalid("notificationUrl is required."))?,
        "notificationUrl",
    )?;
    let lifecycle_url = b
        .lifecycle_notification_url
        .as_deref()
        .map(|u| check_url(u, "lifecycleNotificationUrl"))
        .transpose()?;
    let expires = check_expiry(&s, b.expiration_date_time.as_deref())?;
    if b.client_state
        .as_ref()
        .is_some_and(|c| c.chars().count() > 128)
    {
        return Err(invalid("clientState must be at most 128 characters."));
    }
    if b.include_resource_data {
        return Err(invalid(if b.encryption_certificate.is_none() {
            "encryptionCertificate is required when includeResourceData is true."
        } else {
            "Notifications with resource data (encrypted) are not simulated; subscribe with includeResourceData false and read presence with getPresencesByUserId."
        }));
    }
    validate(&s, &notification_url).await?;
    if let Some(l) = lifecycle_url.as_deref().filter(|l| *l != notification_url) {
        validate(&s, l).await?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let sub = Subscription {
        id: id.clone(),
        resource,
        user_ids: ids.into_iter().collect(),
        notification_url: notification_url.clone(),
        lifecycle_url: lifecycle_url.clone(),
        client_state: b.client_state,
        expires,
        application_id: caller.claims.azp.clone(),
        creator_id: caller.claims.oid.clone(),
        reauth_sent: false,
        tx,
    };
    let body = to_json(&s, &sub);
    tokio::spawn(deliver(
        s.http.clone(),
        rx,
        notification_url,
        lifecycle_url,
        s.config.notification_timeout,
    ));
    lock(&s.subs).subs.insert(id.clone(), sub);
    tracing::info!(subscription = %id, "presence subscription created");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn not_found(id: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("The object was not found: subscription '{id}' does not exist or has expired."),
    )
}

async fn list(State(s): State<AppState>, caller: Caller) -> Json<Value> {
    let subs = lock(&s.subs);
    let value: Vec<Value> = subs
        .subs
        .values()
        .filter(|x| x.application_id == caller.claims.azp)
        .map(|x| to_json(&s, x))
        .collect();
    Json(
        json!({ "@odata.context": format!("{}/$metadata#subscriptions", s.graph_base()), "value": value }),
    )
}

async fn get_one(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    let subs = lock(&s.subs);
    let sub = subs
        .subs
        .get(&id)
        .filter(|x| x.application_id == caller.claims.azp)
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(to_json(&s, sub)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewBody {
    expiration_date_time: Option<String>,
}

async fn renew(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, GraphError> {
    let b: RenewBody = json_body(&body)?;
    let expires = check_expiry(&s, b.expiration_date_time.as_deref())?;
    let mut subs = lock(&s.subs);
    let sub = subs
        .subs
        .get_mut(&id)
        .filter(|x| x.application_id == caller.claims.azp)
        .ok_or_else(|| not_found(&id))?;
    sub.expires = expires;
    sub.reauth_sent = false;
    Ok(Json(to_json(&s, sub)))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, GraphError> {
    let mut subs = lock(&s.subs);
    if subs
        .subs
        .get(&id)
        .is_none_or(|x| x.application_id != caller.claims.azp)
    {
        return Err(not_found(&id));
    }
    subs.subs.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

async fn reauthorize(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, GraphError> {
    let mut subs = lock(&s.subs);
    let sub = subs
        .subs
        .get_mut(&id)
        .filter(|x| x.application_id == caller.claims.azp)
        .ok_or_else(|| not_found(&id))?;
    sub.reauth_sent = false;
    Ok(StatusCode::NO_CONTENT)
}

fn lifecycle_item(s: &Shared, sub: &Subscription, event: &str) -> Value {
    json!({
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": graph_datetime(sub.expires),
        "tenantId": s.config.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    })
}

/// Sends a lifecycle notification (for presence Graph has only `reauthorizationRequired`).
/// `false` if there is no such subscription or it has no lifecycle URL.
pub(crate) fn fire_lifecycle(s: &Shared, id: &str, event: &str) -> bool {
    let subs = lock(&s.subs);
    let Some(sub) = subs.subs.get(id) else {
        return false;
    };
    if sub.lifecycle_url.is_none() {
        return false;
    }
    let item = lifecycle_item(s, sub, event);
    sub.tx.send(Outgoing::Lifecycle(item)).is_ok()
}

/// Queues change notifications for the subscriptions that watch these users.
pub(crate) fn dispatch(s: &Shared, changes: Vec<PresenceChange>) {
    if changes.is_empty() {
        return;
    }
    let now = s.clock.wall();
    let subs = lock(&s.subs);
    for c in changes {
        let lost = s
            .lose_changes
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if lost {
            tracing::info!(user = %c.user_id, "change notification lost on purpose (/_sim/notifications/lose)");
            continue;
        }
        let uid = c.user_id.to_ascii_lowercase();
        for sub in subs
            .subs
            .values()
            .filter(|x| x.expires > now && x.user_ids.contains(&uid))
        {
            let item = json!({
                "subscriptionId": sub.id,
                "clientState": sub.client_state,
                "changeType": "updated",
                "tenantId": s.config.tenant_id,
                "resource": format!("communications/presences/{}", c.user_id),
                "subscriptionExpirationDateTime": graph_datetime(sub.expires),
                "resourceData": {
                    "@odata.id": format!("users/{}/presence", c.user_id),
                    "@odata.type": "#microsoft.graph.presence",
                    "id": c.user_id,
                },
                "organizationId": s.config.tenant_id,
            });
            let _ = sub.tx.send(Outgoing::Change(item));
        }
    }
}

/// Time-driven work: presence expiry and fading, subscription expiry and reauthorization.
pub(crate) fn tick(s: &Arc<Shared>) {
    let changes = lock(&s.presence).tick(s.clock.now());
    dispatch(s, changes);
    let now = s.clock.wall();
    let mut subs = lock(&s.subs);
    let expired: Vec<String> = subs
        .subs
        .values()
        .filter(|x| x.expires <= now)
        .map(|x| x.id.clone())
        .collect();
    for id in expired {
        tracing::info!(subscription = %id, "presence subscription expired");
        subs.subs.remove(&id);
    }
    let soon = now + time::Duration::seconds(REAUTHORIZE_BEFORE.as_secs() as i64);
    for sub in subs
        .subs
        .values_mut()
        .filter(|x| !x.reauth_sent && x.lifecycle_url.is_some() && x.expires <= soon)
    {
        sub.reauth_sent = true;
        let item = lifecycle_item(s, sub, "reauthorizationRequired");
        let _ = sub.tx.send(Outgoing::Lifecycle(item));
    }
}

async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    items: Vec<Value>,
    timeout: Duration,
) -> Result<(), String> {
    let resp = http
        .post(url)
        .json(&json!({ "value": items }))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", resp.status()))
    }
}

/// Tries of one POST of change notifications, and the waits between them.
const DELIVERY_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// One delivery task per subscription: batches what is queued and POSTs it; a failed POST is
/// tried again after `DELIVERY_RETRIES` and then dropped, unannounced (Graph sends no
/// `missed` lifecycle notification for presence). Ends when the subscription is gone.
async fn deliver(
    http: reqwest::Client,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    url: String,
    lifecycle: Option<String>,
    timeout: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut changes = Vec::new();
        let mut events = Vec::new();
        for o in batch {
            match o {
                Outgoing::Change(v) => changes.push(v),
                Outgoing::Lifecycle(v) => events.push(v),
            }
        }
        if !changes.is_empty() {
            let mut waits = DELIVERY_RETRIES.iter();
            loop {
                match post_batch(&http, &url, changes.clone(), timeout).await {
                    Ok(()) => break,
                    Err(e) => match waits.next() {
                        Some(wait) => {
                            tracing::info!(url = %url, error = %e, "change notification not delivered; trying again");
                            tokio::time::sleep(*wait).await;
                        }
                        None => {
                            tracing::info!(url = %url, error = %e, "change notification not delivered; dropped");
                            break;
                        }
                    },
                }
            }
        }
        if let (Some(l), false) = (&lifecycle, events.is_empty()) {
            if let Err(e) = post_batch(&http, l, events, timeout).await {
                tracing::info!(url = %l, error = %e, "lifecycle notification not delivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources() {
        let a = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
        let b = "66825E03-7EF5-42DA-9069-724602C31F6B";
        assert_eq!(
            parse_resource(&format!(
                "/communications/presences?$filter=id in ('{a}','{b}')"
            ))
            .unwrap(),
            vec![a.to_string(), b.to_lowercase()]
        );
        assert_eq!(
            parse_resource(&format!("communications/presences/{a}")).unwrap(),
            vec![a.to_string()]
        );
        assert!(parse_resource("/users/x/messages").is_err());
        assert!(parse_resource("/communications/presences?$filter=id in ('nope')").is_err());
        assert!(parse_resource("/communications/presences?$filter=id eq 'x'").is_err());
        let many: Vec<String> = (0..651)
            .map(|i| format!("'{}'", uuid::Uuid::from_u128(i)))
            .collect();
        assert!(parse_resource(&format!(
            "/communications/presences?$filter=id in ({})",
            many.join(",")
        ))
        .unwrap_err()
        .contains("650"));
    }
}
