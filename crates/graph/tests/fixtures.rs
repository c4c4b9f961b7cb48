//! Microsoft's documented Graph payloads (tests/fixtures, see its README) read by the types
//! and by the client through a local HTTP server that answers with them.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use switchboard_graph::webhook::{classify, client_state_matches, LifecycleEvent, WebhookRequest};
use switchboard_graph::{
    Activity, Availability, GraphClient, GraphConfig, GraphError, Page, Presence, StaticToken,
    Subscription, User, UserQuery,
};

const ME: &str = include_str!("fixtures/presence-get-me.json");
const USER: &str = include_str!("fixtures/presence-get-user.json");
const COMMS: &str = include_str!("fixtures/presence-communications.json");
const BATCH: &str = include_str!("fixtures/get-presences-by-user-id.json");
const STATUS: &str = include_str!("fixtures/presence-status-message.json");
const USERS: &str = include_str!("fixtures/users-list.json");
const SEARCH: &str = include_str!("fixtures/users-search-count.json");
const ERROR: &str = include_str!("fixtures/error-search-needs-eventual.json");
const SUB: &str = include_str!("fixtures/subscription-created.json");
const NOTE: &str = include_str!("fixtures/notification-presence-basic.json");
const LIFE: &str = include_str!("fixtures/notification-lifecycle.json");

#[test]
fn documented_presence_payloads_parse() {
    let p: Presence = serde_json::from_str(ME).unwrap();
    assert_eq!(
        (p.availability, p.activity),
        (Availability::Available, Activity::Available)
    );
    let p: Presence = serde_json::from_str(USER).unwrap();
    assert_eq!(
        (p.availability, p.activity),
        (Availability::DoNotDisturb, Activity::Presenting)
    );
    let page: Page<Presence> = serde_json::from_str(COMMS).unwrap();
    assert_eq!(page.value[0].activity, Activity::BeRightBack);
    let page: Page<Presence> = serde_json::from_str(BATCH).unwrap();
    assert_eq!(page.value.len(), 2);
    assert_eq!(page.value[0].activity, Activity::InAMeeting);
    let p: Presence = serde_json::from_str(STATUS).unwrap();
    let msg = p.status_message.unwrap().message.unwrap();
    assert_eq!(msg.content.as_deref(), Some("Hey I am available now"));
    assert_eq!(
        p.out_of_office_settings.unwrap().is_out_of_office,
        Some(false)
    );
}

#[test]
fn documented_user_and_subscription_payloads_parse() {
    let page: Page<User> = serde_json::from_str(USERS).unwrap();
    assert_eq!(page.value.len(), 2);
    assert_eq!(page.value[0].given_name, None);
    assert!(page.value[0].business_phones.is_empty());
    assert_eq!(page.value[1].business_phones, vec!["425-555-0100"]);
    assert_eq!(page.next_link, None);
    let page: Page<User> = serde_json::from_str(SEARCH).unwrap();
    assert_eq!(page.count, Some(7));
    assert_eq!(
        page.value[0].id, "",
        "the documented example omits id; it reads as empty rather than failing"
    );
    let s: Subscription = serde_json::from_str(SUB).unwrap();
    assert_eq!(s.client_state.as_deref(), Some("secretClientValue"));
    assert_eq!(s.expiration_date_time, "2016-11-20T18:23:45.9356913Z");
}

#[test]
fn documented_notifications_parse_and_check_client_state() {
    let WebhookRequest::Notifications(c) = classify(None, NOTE.as_bytes()).unwrap() else {
        panic!("not a notification")
    };
    let n = &c.value[0];
    assert!(client_state_matches(n, "secretClientValue"));
    assert!(!client_state_matches(n, "someone else's"));
    assert_eq!(n.user_id(), Some("fa8bf3dc-eca7-46b7-bad1-db199b62afc3"));
    assert_eq!(n.lifecycle_event, None);
    let WebhookRequest::Notifications(c) = classify(None, LIFE.as_bytes()).unwrap() else {
        panic!("not a notification")
    };
    assert_eq!(
        c.value[0].lifecycle_event,
        Some(LifecycleEvent::ReauthorizationRequired)
    );
}

/// A local server answering with the documented payloads (and some broken ones).
async fn fixture_server() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/v1.0/me/presence", get(|| async { ME }))
        .route(
            "/v1.0/users/{id}/presence",
            get(|Path(id): Path<String>| async move {
                match id.as_str() {
                    "broken" => (StatusCode::OK, "{\"id\": 1".to_string()),
                    "future" => (
                        StatusCode::OK,
                        r#"{"id":"f","availability":"Lurking","activity":"InAHackathon"}"#
                            .to_string(),
                    ),
                    "error" => (StatusCode::BAD_REQUEST, ERROR.to_string()),
                    "html" => (
                        StatusCode::BAD_GATEWAY,
                        "<html>proxy error</html>".to_string(),
                    ),
                    _ => (StatusCode::OK, STATUS.to_string()),
                }
            }),
        )
        .route(
            "/v1.0/communications/getPresencesByUserId",
            post(|| async { BATCH }),
        )
        .route(
            "/v1.0/users",
            get(|headers: HeaderMap| async move {
                if headers.get("consistencylevel").is_some() {
                    (StatusCode::OK, SEARCH)
                } else {
                    (StatusCode::OK, USERS)
                }
            }),
        )
        .route(
            "/v1.0/subscriptions",
            post(|| async { (StatusCode::CREATED, SUB) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1.0", listener.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, h)
}

fn client(base: &str) -> GraphClient {
    let mut config = GraphConfig {
        base_url: base.to_string(),
        client_id: "app".into(),
        ..GraphConfig::default()
    };
    config.retry.max_retries = 0;
    GraphClient::new(config, Arc::new(StaticToken::new("fixture-token"))).unwrap()
}

#[tokio::test]
async fn client_reads_documented_payloads() {
    let (base, server) = fixture_server().await;
    let g = client(&base);
    assert_eq!(
        g.my_presence().await.unwrap().availability,
        Availability::Available
    );
    let p = g
        .presence("fa8bf3dc-eca7-46b7-bad1-db199b62afc3")
        .await
        .unwrap();
    assert!(p.status_message.is_some());
    let many = g
        .presences(&[
            "fa8bf3dc-eca7-46b7-bad1-db199b62afc3",
            "66825e03-7ef5-42da-9069-724602c31f6b",
        ])
        .await
        .unwrap();
    assert_eq!(many[1].availability, Availability::Away);
    assert_eq!(
        g.users(&UserQuery::new()).await.unwrap().value[1]
            .display_name
            .as_deref(),
        Some("MOD Administrator")
    );
    assert_eq!(
        g.users(&UserQuery::new().search("wa")).await.unwrap().count,
        Some(7)
    );
    server.abort();
}

#[tokio::test]
async fn unknown_values_malformed_json_and_errors_are_typed() {
    let (base, server) = fixture_server().await;
    let g = client(&base);
    let p = g.presence("future").await.unwrap();
    assert_eq!(p.availability, Availability::Unknown("Lurking".into()));
    assert_eq!(p.activity, Activity::Unknown("InAHackathon".into()));
    assert!(!switchboard_graph::is_transferable(&p));
    match g.presence("broken").await {
        Err(GraphError::Malformed { what, .. }) => assert_eq!(what, "presence"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    match g.presence("error").await {
        Err(GraphError::Api {
            status,
            code,
            request_id,
            ..
        }) => {
            assert_eq!(status, 400);
            assert_eq!(code, "Request_UnsupportedQuery");
            assert_eq!(
                request_id.as_deref(),
                Some("9b600954-ba11-4899-8ce9-6abad341f299")
            );
        }
        other => panic!("expected Api, got {other:?}"),
    }
    // 502 with an HTML body, retries disabled: reported as throttled/unavailable, no panic.
    assert!(matches!(
        g.presence("html").await,
        Err(GraphError::Throttled {
            status: 502,
            attempts: 1,
            ..
        })
    ));
    server.abort();
}
