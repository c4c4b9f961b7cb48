//! The HTTP server loop. `axum::serve` gives hyper no timer, so hyper's header-read timeout is
//! never armed (a client may send a header a byte a minute), and it accepts every connection.
//! This loop serves the same axum app through hyper's connection builder with a timer — the
//! headers of each request must arrive within `header_read_timeout` — and holds at most
//! `max_connections` connections (event streams included); more wait in the listen queue.
//! A failed accept (out of file descriptors) pauses, growing to 1 s, instead of spinning.
//! On `signal` it stops accepting, asks every connection to finish gracefully and waits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Bounds of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `signal` completes, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    signal: impl Future<Output = ()> + Send,
) {
    let room = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // The CONNECT protocol carries WebSockets over HTTP/2 (RFC 8441).
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    // Connections hold `stop_rx` clones to hear the shutdown; the loop waits until every
    // connection has dropped its `done_rx` clone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut pause = Duration::from_millis(50);
    tokio::pin!(signal);
    loop {
        let permit = tokio::select! {
            p = room.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut signal => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => {
                    pause = Duration::from_millis(50);
                    c
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept HTTP connections; pausing");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let (builder, app) = (builder.clone(), app.clone());
        let (mut stop, done) = (stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(peer = %peer, error = %e, "HTTP connection ended");
                        }
                        break;
                    }
                    r = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        if r.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes (true) or `within` passes (false).
    async fn closed_within(mut s: std::net::TcpStream, within: Duration) -> bool {
        tokio::task::spawn_blocking(move || {
            s.set_read_timeout(Some(within)).unwrap();
            let mut b = [0u8; 256];
            loop {
                match s.read(&mut b) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap()
    }

    /// #13 item 5: a client that sends its headers a little at a time is cut off after the
    /// header-read timeout (axum::serve never armed it: the connection stayed open).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn headers_must_arrive_in_time() {
        let (addr, _stop) = start(Limits {
            max_connections: 16,
            header_read_timeout: Duration::from_secs(1),
        })
        .await;
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        assert!(closed_within(slow, Duration::from_secs(15)).await);
        // A whole request is answered.
        let mut ok = std::net::TcpStream::connect(addr).unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// #13 item 5: past `max_connections`, a connection waits in the listen queue until a
    /// place is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_past_the_limit_wait_for_a_place() {
        let (addr, _stop) = start(Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(30),
        })
        .await;
        let a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let mut b = [0u8; 64];
        assert!(
            matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "the third connection was served while two held every place"
        );
        drop(a);
        let answer = tokio::task::spawn_blocking(move || {
            c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let mut s = String::new();
            let _ = c.read_to_string(&mut s);
            s
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
