//! The client against the simulated tenant (in process, 127.0.0.1, ephemeral port).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};
use switchboard_graph::webhook::{
    classify, client_state_matches, ChangeNotification, LifecycleEvent, WebhookRequest,
};
use switchboard_graph::{
    presence_subscription_resource, presence_update, AccessTokenProvider, Activity, AgentState,
    Availability, GraphClient, GraphConfig, GraphError, NotReadyReason, PresenceUpdate,
    RetryPolicy, StaticToken, SubscriptionRequest, TokenError, TokenFuture, TokenRequest,
    UserQuery,
};
use switchboard_tenant_sim::{Config, SigningKey, TenantSim, DEMO_CLIENT_ID};

const ADELE: &str = "AdeleV@contoso.example";
const ALL_SCOPES: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "Presence.Read.All",
    "Presence.ReadWrite",
];

fn key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("keygen"))
        .clone()
}

async fn sim_with(extra_users: usize) -> TenantSim {
    TenantSim::start(Config {
        signing_key: Some(key()),
        extra_users,
        ..Config::default()
    })
    .await
    .expect("tenant-sim")
}

fn graph_for(sim: &TenantSim, token: String, retry: RetryPolicy) -> GraphClient {
    graph_with(sim, Arc::new(StaticToken::new(token)), retry)
}

fn graph_with(
    sim: &TenantSim,
    tokens: Arc<dyn AccessTokenProvider>,
    retry: RetryPolicy,
) -> GraphClient {
    GraphClient::new(
        GraphConfig {
            base_url: sim.graph_url(),
            client_id: DEMO_CLIENT_ID.into(),
            retry,
            ..GraphConfig::default()
        },
        tokens,
    )
    .unwrap()
}

fn graph(sim: &TenantSim) -> GraphClient {
    graph_for(
        sim,
        sim.mint_access_token(ADELE, ALL_SCOPES).unwrap(),
        RetryPolicy::default(),
    )
}

async fn admin(sim: &TenantSim, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn me_directory_search_paging_and_photos() {
    let sim = sim_with(0).await;
    let g = graph(&sim);
    let me = g.me().await.unwrap();
    assert_eq!(me.user_principal_name.as_deref(), Some(ADELE));
    assert_eq!(me.department.as_deref(), Some("Customer Service"));

    let billing = g
        .users_all(&UserQuery::new().department("Billing"), 100)
        .await
        .unwrap();
    assert!(
        billing.len() >= 5
            && billing
                .iter()
                .all(|u| u.department.as_deref() == Some("Billing"))
    );
    let found = g.users(&UserQuery::new().search("ward")).await.unwrap();
    assert_eq!(
        found
            .value
            .iter()
            .filter_map(|u| u.display_name.as_deref())
            .collect::<Vec<_>>(),
        vec!["Oscar Ward"]
    );
    // Search by skill-bearing job title words, e.g. "support".
    assert!(
        g.users(&UserQuery::new().search("support"))
            .await
            .unwrap()
            .value
            .len()
            >= 6
    );

    // Paging through nextLink: 50 users in pages of 7.
    let all = g.users_all(&UserQuery::new().top(7), 1000).await.unwrap();
    assert_eq!(all.len(), 50);
    let first_page = g.users(&UserQuery::new().top(7)).await.unwrap();
    assert_eq!(first_page.value.len(), 7);
    assert!(first_page.next_link.is_some());
    assert_eq!(
        g.users_all(&UserQuery::new().top(7), 10)
            .await
            .unwrap()
            .len(),
        10
    );

    let skills = g.user(&me.id, &["id", "skills"]).await.unwrap();
    assert_eq!(
        skills.skills,
        Some(vec![
            "billing".to_string(),
            "english".to_string(),
            "french".to_string()
        ])
    );

    let users = sim.users();
    let photo = g.photo(&users[0].id).await.unwrap().unwrap();
    assert_eq!(photo.content_type, "image/svg+xml");
    assert!(String::from_utf8(photo.bytes).unwrap().contains("AV"));
    let none = users.iter().find(|u| !u.has_photo).unwrap();
    assert_eq!(g.photo(&none.id).await.unwrap(), None);
    assert!(g.my_photo().await.unwrap().is_some());
    match g.user("00000000-0000-0000-0000-000000000000", &[]).await {
        Err(GraphError::Api {
            status: 404, code, ..
        }) => assert_eq!(code, "Request_ResourceNotFound"),
        other => panic!("{other:?}"),
    }
    sim.shutdown().await;
}

/// A page of avatars through JSON batching: 25 users take two batches (20 + 5), users
/// without a photo get none, unknown ids none, a sized photo path works, and steps Graph
/// throttled inside a batch are asked again after their Retry-After.
#[tokio::test]
async fn photos_come_in_batches_of_twenty() {
    let sim = sim_with(0).await;
    let g = graph(&sim);
    let users = sim.users();
    let mut ids: Vec<String> = users.iter().take(24).map(|u| u.id.clone()).collect();
    ids.push("00000000-0000-0000-0000-000000000000".into());
    let got = g.photos(&ids, Some("64x64")).await.unwrap();
    assert_eq!(got.len(), 25);
    for ((id, photo), want) in got.iter().zip(&ids) {
        assert_eq!(id, want, "answers keep the order asked");
        let user = users.iter().find(|u| &u.id == id);
        match (user, photo) {
            (Some(u), Some(p)) if u.has_photo => {
                assert_eq!(p.content_type, "image/svg+xml");
                assert!(String::from_utf8_lossy(&p.bytes).contains(&u.display_name));
            }
            (Some(u), None) => assert!(!u.has_photo, "{} has a photo", u.display_name),
            (None, None) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(got.iter().filter(|(_, p)| p.is_some()).count() >= 15);
    // A size Graph does not keep: no photo, not an error.
    let odd = g.photos(&ids[..1], Some("50x50")).await.unwrap();
    assert!(odd[0].1.is_none());

    // Three steps throttled: asked again, all answered.
    admin(
        &sim,
        "/_sim/throttle",
        json!({"enabled": true, "retry_after": 1, "count": 3, "status": 429}),
    )
    .await;
    let again = g.photos(&ids[..5], None).await.unwrap();
    let want: Vec<bool> = ids[..5]
        .iter()
        .map(|id| users.iter().any(|u| &u.id == id && u.has_photo))
        .collect();
    assert_eq!(
        again.iter().map(|(_, p)| p.is_some()).collect::<Vec<_>>(),
        want
    );
    // More than 20 requests in one batch are refused by Graph (and the simulator).
    let r = reqwest::Client::new()
        .post(format!("{}/$batch", sim.graph_url()))
        .bearer_auth(sim.mint_access_token(ADELE, ALL_SCOPES).unwrap())
        .json(&json!({"requests": (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/me"})).collect::<Vec<_>>()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn presences_of_more_users_than_one_call_takes() {
    let sim = sim_with(700).await;
    let g = graph(&sim);
    let ids: Vec<String> = sim.users().into_iter().map(|u| u.id).collect();
    assert_eq!(ids.len(), 750);
    // The simulator refuses more than 650 ids per call, so this only works chunked.
    let p = g.presences(&ids).await.unwrap();
    assert_eq!(p.len(), 750);
    let mut got: Vec<&str> = p.iter().map(|x| x.id.as_str()).collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 750);
    assert!(p
        .iter()
        .any(|x| x.availability == Availability::DoNotDisturb));
    // Duplicates are asked once.
    let twice: Vec<&str> = ids
        .iter()
        .take(3)
        .chain(ids.iter().take(3))
        .map(String::as_str)
        .collect();
    assert_eq!(g.presences(&twice).await.unwrap().len(), 3);
    assert!(g.presences::<&str>(&[]).await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn agent_presence_follows_contact_center_state() {
    let sim = sim_with(0).await;
    let g = graph(&sim);
    let me = g.me().await.unwrap();
    let hour = Duration::from_secs(3600);
    for (state, expect) in [
        (AgentState::OnCall, (Availability::Busy, Activity::InACall)),
        (
            AgentState::NotReady(NotReadyReason::Training),
            (Availability::DoNotDisturb, Activity::Presenting),
        ),
        (
            AgentState::Ready,
            (Availability::Available, Activity::Available),
        ),
    ] {
        g.set_presence(&me.id, &presence_update(&state, hour).unwrap())
            .await
            .unwrap();
        let p = g.my_presence().await.unwrap();
        assert_eq!((p.availability, p.activity), expect, "{state:?}");
    }
    // Wrap-up keeps Busy.
    g.set_presence(&me.id, &presence_update(&AgentState::WrapUp, hour).unwrap())
        .await
        .unwrap();
    assert_eq!(
        g.presence(&me.id).await.unwrap().availability,
        Availability::Busy
    );
    // Logged out: clear our session; Adele's seeded Teams client still shows Available.
    assert!(presence_update(&AgentState::LoggedOut, hour).is_none());
    g.clear_presence(&me.id).await.unwrap();
    assert_eq!(
        g.my_presence().await.unwrap().availability,
        Availability::Available
    );
    // Clearing again: the session is gone, Graph answers 404, and that counts as cleared.
    g.clear_presence(&me.id).await.unwrap();

    // The user's own choice beats every session.
    g.set_user_preferred_presence(
        &me.id,
        &Availability::BeRightBack,
        &Activity::BeRightBack,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        g.my_presence().await.unwrap().activity,
        Activity::BeRightBack
    );
    g.clear_user_preferred_presence(&me.id).await.unwrap();
    assert_eq!(g.my_presence().await.unwrap().activity, Activity::Available);

    g.set_status_message(
        &me.id,
        "Back at 2 pm",
        Some(time::OffsetDateTime::now_utc() + time::Duration::hours(2)),
    )
    .await
    .unwrap();
    let p = g.my_presence().await.unwrap();
    let sm = p.status_message.unwrap();
    assert_eq!(sm.message.unwrap().content.as_deref(), Some("Back at 2 pm"));
    assert_eq!(
        sm.expiry_date_time.unwrap().time_zone.as_deref(),
        Some("UTC")
    );

    // Refused before sending: expiration outside PT5M..PT4H; by Graph: a pair setPresence does not take.
    let bad = PresenceUpdate {
        availability: Availability::Busy,
        activity: Activity::InACall,
        expiration: Some(Duration::from_secs(60)),
    };
    assert!(matches!(
        g.set_presence(&me.id, &bad).await,
        Err(GraphError::InvalidRequest(_))
    ));
    let bad = PresenceUpdate {
        availability: Availability::Busy,
        activity: Activity::Busy,
        expiration: None,
    };
    assert!(matches!(
        g.set_presence(&me.id, &bad).await,
        Err(GraphError::Api { status: 400, .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn throttling_is_retried_within_bounds() {
    let sim = sim_with(0).await;
    let token = sim.mint_access_token(ADELE, ALL_SCOPES).unwrap();
    let g = graph_for(
        &sim,
        token.clone(),
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        },
    );
    // Two throttled answers with Retry-After: 1, then success.
    admin(
        &sim,
        "/_sim/throttle",
        json!({"enabled": true, "retry_after": 1, "count": 2}),
    )
    .await;
    assert_eq!(
        g.my_presence().await.unwrap().availability,
        Availability::Available
    );
    // 503 without end: bounded retries, then a typed error with the last Retry-After.
    let g1 = graph_for(
        &sim,
        token.clone(),
        RetryPolicy {
            max_retries: 1,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        },
    );
    admin(
        &sim,
        "/_sim/throttle",
        json!({"enabled": true, "retry_after": 1, "status": 503}),
    )
    .await;
    match g1.me().await {
        Err(GraphError::Throttled {
            status: 503,
            attempts: 2,
            retry_after,
        }) => assert_eq!(retry_after, Some(Duration::from_secs(1))),
        other => panic!("{other:?}"),
    }
    // A Retry-After beyond the policy's longest wait is reported at once, not slept through.
    admin(
        &sim,
        "/_sim/throttle",
        json!({"enabled": true, "retry_after": 120}),
    )
    .await;
    match g1.me().await {
        Err(GraphError::Throttled {
            status: 429,
            attempts: 1,
            retry_after,
        }) => assert_eq!(retry_after, Some(Duration::from_secs(120))),
        other => panic!("{other:?}"),
    }
    admin(&sim, "/_sim/throttle", json!({"enabled": false})).await;
    assert!(g1.me().await.is_ok());
    sim.shutdown().await;
}

/// A provider that hands out a stale token until Graph refuses it.
struct Refreshing {
    sim: Arc<TenantSim>,
    stale: String,
    fresh_calls: AtomicU32,
}

impl AccessTokenProvider for Refreshing {
    fn access_token<'a>(&'a self, request: TokenRequest<'a>) -> TokenFuture<'a> {
        Box::pin(async move {
            if !request.force_refresh {
                return Ok(self.stale.clone());
            }
            self.fresh_calls.fetch_add(1, Ordering::SeqCst);
            self.sim
                .mint_access_token(ADELE, ALL_SCOPES)
                .map_err(|e| TokenError::new(e.to_string()))
        })
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let sim = Arc::new(sim_with(0).await);
    let stale = sim.mint_access_token(ADELE, ALL_SCOPES).unwrap();
    sim.clock().advance(Duration::from_secs(3601));
    let provider = Arc::new(Refreshing {
        sim: sim.clone(),
        stale,
        fresh_calls: AtomicU32::new(0),
    });
    let g = graph_with(&sim, provider.clone(), RetryPolicy::default());
    assert!(g.me().await.is_ok());
    assert_eq!(provider.fresh_calls.load(Ordering::SeqCst), 1);
    // A token without the scope: 403, not retried, not a sign-in problem.
    let narrow = graph_for(
        &sim,
        sim.mint_access_token(ADELE, &["User.Read"]).unwrap(),
        RetryPolicy::default(),
    );
    let e = narrow.presence(&sim.users()[3].id).await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(!e.needs_sign_in());
}

/// A provider that answers a claims challenge: a fresh token when it is asked with the
/// challenge's claims (a refresh that meets them), or, when `person_needed`, the
/// identity platform's "sign in interactively".
struct Challenged {
    sim: Arc<TenantSim>,
    first: String,
    person_needed: bool,
    claims_seen: std::sync::Mutex<Vec<String>>,
}

impl AccessTokenProvider for Challenged {
    fn access_token<'a>(&'a self, request: TokenRequest<'a>) -> TokenFuture<'a> {
        Box::pin(async move {
            let Some(c) = request.claims else {
                return Ok(self.first.clone());
            };
            self.claims_seen.lock().unwrap().push(c.to_owned());
            if self.person_needed {
                return Err(TokenError::interaction_required(
                    "AADSTS50173: the grant was revoked",
                ));
            }
            self.sim
                .mint_access_token(ADELE, ALL_SCOPES)
                .map_err(|e| TokenError::new(e.to_string()))
        })
    }
}

/// Continuous access evaluation: after the user's sessions are revoked, Graph answers the
/// older token with a claims challenge; the client asks once for a token with the decoded
/// claims and calls again — or, when only the person can meet them, reports the claims.
#[tokio::test]
async fn a_claims_challenge_is_answered_with_a_token_that_meets_it() {
    let sim = Arc::new(sim_with(0).await);
    for person_needed in [false, true] {
        let first = sim.mint_access_token(ADELE, ALL_SCOPES).unwrap();
        sim.clock().advance(Duration::from_secs(2));
        sim.revoke_sessions(ADELE).unwrap();
        let provider = Arc::new(Challenged {
            sim: sim.clone(),
            first,
            person_needed,
            claims_seen: std::sync::Mutex::new(Vec::new()),
        });
        let g = graph_with(&sim, provider.clone(), RetryPolicy::default());
        let r = g.me().await;
        let seen = provider.claims_seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "asked once: {seen:?}");
        let claims: Value = serde_json::from_str(&seen[0]).expect("decoded JSON claims");
        assert_eq!(claims["access_token"]["nbf"]["essential"], true);
        if person_needed {
            let e = r.unwrap_err();
            assert!(e.needs_sign_in());
            assert_eq!(e.claims_challenge(), Some(seen[0].as_str()));
        } else {
            assert_eq!(r.unwrap().user_principal_name.as_deref(), Some(ADELE));
        }
    }
}

#[derive(Clone)]
struct Receiver {
    client_state: String,
    tx: tokio::sync::mpsc::UnboundedSender<ChangeNotification>,
}

/// The webhook as a router would host it, with the crate's helpers: answer the validation,
/// check clientState on every item, queue and answer 202 at once.
async fn webhook(
    State(r): State<Receiver>,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    match classify(q.as_deref(), &body) {
        Ok(WebhookRequest::Validation(token)) => (StatusCode::OK, token),
        Ok(WebhookRequest::Notifications(c)) => {
            if !c
                .value
                .iter()
                .all(|n| client_state_matches(n, &r.client_state))
            {
                return (StatusCode::FORBIDDEN, "clientState mismatch".into());
            }
            for n in c.value {
                let _ = r.tx.send(n);
            }
            (StatusCode::ACCEPTED, String::new())
        }
        Err(_) => (StatusCode::BAD_REQUEST, "not a notification".into()),
    }
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<ChangeNotification>,
) -> ChangeNotification {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification within 10 s")
        .expect("channel open")
}

#[tokio::test]
async fn subscription_lifecycle_end_to_end() {
    let sim = sim_with(0).await;
    let g = graph(&sim);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = Receiver {
        client_state: "s3cr3t-from-the-router".into(),
        tx,
    };
    let app = axum::Router::new()
        .route("/graph/notifications", post(webhook))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/graph/notifications",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let users = sim.users();
    let watched: Vec<&str> = users[10..20].iter().map(|u| u.id.as_str()).collect();
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::minutes(59);
    let sub = g
        .create_subscription(&SubscriptionRequest {
            change_type: "updated".into(),
            notification_url: url.clone(),
            lifecycle_notification_url: Some(url.clone()),
            resource: presence_subscription_resource(&watched).unwrap(),
            expiration_date_time: in_an_hour
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            client_state: Some("s3cr3t-from-the-router".into()),
        })
        .await
        .unwrap();
    assert_eq!(sub.client_state.as_deref(), Some("s3cr3t-from-the-router"));

    // Teams changes a watched user's presence: the webhook hears it; the router reads it.
    admin(
        &sim,
        &format!("/_sim/users/{}/presence", watched[2]),
        json!({"availability": "DoNotDisturb", "activity": "Presenting"}),
    )
    .await;
    let n = next(&mut rx).await;
    assert_eq!(n.subscription_id, sub.id);
    assert_eq!(n.user_id(), Some(watched[2]));
    let p = g.presences(&[n.user_id().unwrap()]).await.unwrap();
    assert_eq!(
        (p[0].availability.clone(), p[0].activity.clone()),
        (Availability::DoNotDisturb, Activity::Presenting)
    );
    assert!(!switchboard_graph::is_transferable(&p[0]));

    // Renew before the short presence expiry.
    let renewed = g
        .renew_subscription(
            &sub.id,
            time::OffsetDateTime::now_utc() + time::Duration::minutes(58),
        )
        .await
        .unwrap();
    assert_eq!(renewed.id, sub.id);
    // Renewing beyond an hour is refused by Graph.
    assert!(matches!(
        g.renew_subscription(
            &sub.id,
            time::OffsetDateTime::now_utc() + time::Duration::hours(2)
        )
        .await,
        Err(GraphError::Api { status: 400, .. })
    ));

    // Lifecycle notifications arrive on the lifecycle URL.
    admin(
        &sim,
        &format!("/_sim/subscriptions/{}/lifecycle", sub.id),
        json!({"lifecycleEvent": "reauthorizationRequired"}),
    )
    .await;
    let n = next(&mut rx).await;
    assert_eq!(
        n.lifecycle_event,
        Some(LifecycleEvent::ReauthorizationRequired)
    );

    // Ten minutes before the end, Graph asks for reauthorization by itself.
    sim.clock().advance(Duration::from_secs(49 * 60));
    sim.tick();
    let n = next(&mut rx).await;
    assert_eq!(
        n.lifecycle_event,
        Some(LifecycleEvent::ReauthorizationRequired)
    );

    g.delete_subscription(&sub.id).await.unwrap();
    assert!(matches!(
        g.delete_subscription(&sub.id).await,
        Err(GraphError::Api { status: 404, .. })
    ));
    server.abort();
    sim.shutdown().await;
}
