//! The router link against a server speaking the router's protocol on 127.0.0.1 (the real
//! router is exercised by the end-to-end test; here the peer is scripted so each failure mode
//! — refused, silent, closed, shutting down — can be produced on demand).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use switchboard_agent::{ConnectionState, LinkPolicy, RouterLink, RouterStatus};
use switchboard_api::{Event, Health, HealthStatus, StorageHealth, StorageState};
use tokio::sync::watch;

#[derive(Clone)]
struct Peer {
    /// Send heartbeats (false: stay silent after hello).
    heartbeats: Arc<AtomicBool>,
    /// Say `shutting_down` and close right after hello.
    shut_down: Arc<AtomicBool>,
    /// Cleared when the server "dies": open sockets are dropped without a close frame.
    alive: Arc<AtomicBool>,
}

async fn health() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
        version: "9.8.7".into(),
        uptime_seconds: 42,
        storage: StorageHealth {
            backend: "sqlite".into(),
            state: StorageState::Ok,
            detail: None,
        },
    })
}

async fn events(State(peer): State<Peer>, ws: WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(move |socket| serve_events(socket, peer))
}

async fn serve_events(mut socket: WebSocket, peer: Peer) {
    let hello = Event::Hello {
        version: "9.8.7".into(),
        uptime_seconds: 42,
        presence: false,
    };
    let text = serde_json::to_string(&hello).unwrap();
    if socket.send(Message::Text(text.into())).await.is_err() {
        return;
    }
    if peer.shut_down.load(Ordering::SeqCst) {
        let bye = serde_json::to_string(&Event::ShuttingDown).unwrap();
        let _ = socket.send(Message::Text(bye.into())).await;
        return;
    }
    let mut uptime = 42;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !peer.alive.load(Ordering::SeqCst) {
            return;
        }
        if peer.heartbeats.load(Ordering::SeqCst) {
            uptime += 1;
            let hb = serde_json::to_string(&Event::Heartbeat {
                uptime_seconds: uptime,
            })
            .unwrap();
            if socket.send(Message::Text(hb.into())).await.is_err() {
                return;
            }
        }
    }
}

struct Server {
    task: tokio::task::JoinHandle<()>,
    alive: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        self.task.abort();
    }
}

async fn serve_on(addr: SocketAddr, peer: Peer) -> Server {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/events", get(events))
        .with_state(peer.clone());
    Server {
        task: tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
        alive: peer.alive,
    }
}

fn fast_policy() -> LinkPolicy {
    LinkPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_millis(600),
    }
}

async fn until(
    rx: &mut watch::Receiver<RouterStatus>,
    what: &str,
    pred: impl Fn(&RouterStatus) -> bool,
) -> RouterStatus {
    let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match r {
        Ok(Ok(s)) => s,
        _ => panic!(
            "timed out waiting for {what}; last status {:?}",
            *rx.borrow()
        ),
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn peer() -> Peer {
    Peer {
        heartbeats: Arc::new(AtomicBool::new(true)),
        shut_down: Arc::new(AtomicBool::new(false)),
        alive: Arc::new(AtomicBool::new(true)),
    }
}

#[tokio::test]
async fn unreachable_then_connected_then_reconnecting_then_connected() {
    let addr = free_addr();
    let link = RouterLink::spawn(format!("http://{addr}"), fast_policy());
    let mut rx = link.subscribe();

    let s = until(&mut rx, "unreachable", |s| {
        s.state == ConnectionState::Unreachable
    })
    .await;
    assert!(s.attempt >= 1);
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("did not answer"),
        "{s:?}"
    );

    let server = serve_on(addr, peer()).await;
    let s = until(&mut rx, "connected", |s| {
        s.state == ConnectionState::Connected
    })
    .await;
    assert_eq!(s.version.as_deref(), Some("9.8.7"));
    assert_eq!(s.attempt, 0);
    assert!(s.last_error.is_none());

    drop(server);
    until(&mut rx, "reconnecting", |s| {
        s.state == ConnectionState::Reconnecting
    })
    .await;

    let _server = serve_on(addr, peer()).await;
    until(&mut rx, "connected again", |s| {
        s.state == ConnectionState::Connected
    })
    .await;
}

#[tokio::test]
async fn a_silent_router_counts_as_lost() {
    let addr = free_addr();
    let p = peer();
    p.heartbeats.store(false, Ordering::SeqCst);
    let _server = serve_on(addr, p).await;
    let link = RouterLink::spawn(format!("http://{addr}"), fast_policy());
    let mut rx = link.subscribe();
    until(&mut rx, "connected", |s| {
        s.state == ConnectionState::Connected
    })
    .await;
    let s = until(&mut rx, "reconnecting", |s| {
        s.state == ConnectionState::Reconnecting
    })
    .await;
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("silent"),
        "{s:?}"
    );
}

#[tokio::test]
async fn shutting_down_is_reported_and_retried() {
    let addr = free_addr();
    let p = peer();
    p.shut_down.store(true, Ordering::SeqCst);
    let _server = serve_on(addr, p).await;
    let link = RouterLink::spawn(format!("http://{addr}"), fast_policy());
    let mut rx = link.subscribe();
    let s = until(&mut rx, "reconnecting after shutdown", |s| {
        s.state == ConnectionState::Reconnecting
            && s.last_error
                .as_deref()
                .unwrap_or("")
                .contains("shutting down")
    })
    .await;
    assert!(s.next_retry_ms.is_some() || s.attempt >= 1);
}

#[tokio::test]
async fn a_server_that_is_not_a_router_is_named() {
    let addr = free_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = Router::new().route("/v1/health", get(|| async { "hello" }));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let link = RouterLink::spawn(format!("http://{addr}"), fast_policy());
    let mut rx = link.subscribe();
    let s = until(&mut rx, "unreachable", |s| {
        s.state == ConnectionState::Unreachable
    })
    .await;
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("not a Switchboard health report"),
        "{s:?}"
    );
    task.abort();
}

#[tokio::test]
async fn set_url_repoints_the_link() {
    let a = free_addr();
    let b = free_addr();
    let _sb = serve_on(b, peer()).await;
    let link = RouterLink::spawn(format!("http://{a}"), fast_policy());
    let mut rx = link.subscribe();
    until(&mut rx, "unreachable", |s| {
        s.state == ConnectionState::Unreachable
    })
    .await;
    link.set_url(format!("http://{b}"));
    let s = until(&mut rx, "connected to b", |s| {
        s.state == ConnectionState::Connected
    })
    .await;
    assert_eq!(s.url, format!("http://{b}"));
}
