//! The loopback redirect of a native app's sign-in (RFC 8252 §7.3): a one-shot HTTP listener
//! at an ephemeral port that takes the provider's redirect, shows the person a page saying
//! they can go back to the app, and hands the query to the flow.
//!
//! The redirect names `localhost` (what Microsoft's app registrations list), which a browser
//! may resolve to 127.0.0.1 or to `[::1]`: we listen on both at the same port, so no other
//! process can take the other one and receive the code. Only the request that carries our
//! `state` ends the wait; any other (a web page aiming at the port to abort the sign-in) gets
//! 400 and the wait goes on.
//!
//! A hand-written reader rather than an HTTP server crate: it serves one GET of a query
//! string from the local browser, and must never keep a socket open longer than the sign-in.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request we read (the browser's GET with code, state and session_state).
const MAX_REQUEST: usize = 16 * 1024;

/// A listener waiting for the redirect.
pub struct Loopback {
    v4: TcpListener,
    /// `[::1]` at the same port; `None` where the machine has no IPv6 loopback (then no
    /// other process can listen there either).
    v6: Option<TcpListener>,
    port: u16,
}

/// Ports tried before giving up when another process holds `[::1]` at the one picked.
const BIND_ATTEMPTS: usize = 16;

impl Loopback {
    /// Binds 127.0.0.1 on a port the system picks, and `[::1]` on the same port.
    pub async fn bind() -> std::io::Result<Self> {
        let mut last = None;
        for _ in 0..BIND_ATTEMPTS {
            let v4 = TcpListener::bind(("127.0.0.1", 0)).await?;
            let port = v4.local_addr()?.port();
            match TcpListener::bind(("::1", port)).await {
                Ok(v6) => {
                    return Ok(Self {
                        v4,
                        v6: Some(v6),
                        port,
                    })
                }
                // Taken by someone else: another port.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                // No IPv6 loopback here.
                Err(e) => {
                    tracing::debug!(error = %e, "no [::1] listener for the sign-in redirect");
                    return Ok(Self { v4, v6: None, port });
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free loopback port")))
    }

    /// Whether `[::1]` is held too.
    pub fn on_ipv6(&self) -> bool {
        self.v6.is_some()
    }

    async fn accept(&self) -> std::io::Result<TcpStream> {
        match &self.v6 {
            Some(v6) => tokio::select! {
                r = self.v4.accept() => r.map(|(s, _)| s),
                r = v6.accept() => r.map(|(s, _)| s),
            },
            None => self.v4.accept().await.map(|(s, _)| s),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the browser's request that carries `code` or `error` with `state` equal to
    /// `expected_state`, and answers it with `page(&params)`; returns its query parameters.
    /// Requests without `code`/`error` (a favicon) get 404; with another `state` 400, and the
    /// wait goes on.
    pub async fn wait(
        self,
        expected_state: &str,
        page: impl Fn(&HashMap<String, String>) -> String,
    ) -> HashMap<String, String> {
        loop {
            let Ok(mut sock) = self.accept().await else {
                continue;
            };
            let Ok(Ok(Some(query))) =
                tokio::time::timeout(Duration::from_secs(10), read_query(&mut sock)).await
            else {
                let _ = respond(&mut sock, "400 Bad Request", "").await;
                continue;
            };
            if !query.contains_key("code") && !query.contains_key("error") {
                let _ = respond(&mut sock, "404 Not Found", "").await;
                continue;
            }
            if !query
                .get("state")
                .is_some_and(|s| crate::pkce::same(s, expected_state))
            {
                tracing::warn!(
                    "a request to the sign-in redirect without this sign-in's state was ignored"
                );
                let _ = respond(&mut sock, "400 Bad Request", "").await;
                continue;
            }
            let _ = respond(&mut sock, "200 OK", &page(&query)).await;
            return query;
        }
    }
}

/// Reads a request's head and returns its query when it is a GET.
async fn read_query(sock: &mut TcpStream) -> std::io::Result<Option<HashMap<String, String>>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    if parts.next() != Some("GET") {
        return Ok(None);
    }
    let target = parts.next().unwrap_or("/");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    Ok(Some(
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    ))
}

async fn respond(sock: &mut TcpStream, status: &str, html: &str) -> std::io::Result<()> {
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page shown in the browser at the end of a sign-in, in English and Chinese.
pub fn finished_page(ok: bool, detail: &str) -> String {
    let (title, en, zh) = if ok {
        (
            "Signed in — Switchboard",
            "You are signed in to Switchboard. You can close this tab and go back to the app.",
            "您已登录 Switchboard。可以关闭此标签页并返回应用。",
        )
    } else {
        (
            "Sign-in failed — Switchboard",
            "The sign-in did not complete. Go back to the app and try again.",
            "登录未完成。请返回应用重试。",
        )
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;color:#111827}}\
h1{{font-size:1.3rem}}p.d{{color:#6b7280;font-size:.9rem}}</style></head><body>\
<h1>{title}</h1><p>{en}</p><p>{zh}</p>{}</body></html>",
        if detail.is_empty() {
            String::new()
        } else {
            format!("<p class=\"d\">{}</p>", escape(detail))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, target: &str) -> String {
        get_from("127.0.0.1", port, target).await
    }

    async fn get_from(host: &str, port: u16, target: &str) -> String {
        let mut s = TcpStream::connect((host, port)).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn takes_the_redirect_and_ignores_the_rest() {
        let lb = Loopback::bind().await.unwrap();
        let port = lb.port();
        let waiting = tokio::spawn(async move {
            lb.wait("x<y", |q| {
                finished_page(true, q.get("state").map_or("", |s| s))
            })
            .await
        });
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        // A page aiming at the port cannot end the sign-in: without our state it is refused.
        assert!(get(port, "/?error=access_denied&state=guess")
            .await
            .starts_with("HTTP/1.1 400"));
        assert!(get(port, "/?error=access_denied")
            .await
            .starts_with("HTTP/1.1 400"));
        assert!(get(port, "/?code=stolen&state=other")
            .await
            .starts_with("HTTP/1.1 400"));
        let page = get(port, "/?code=abc&state=x%3Cy").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("x&lt;y"), "escaped: {page}");
        assert!(page.contains("您已登录"));
        let q = waiting.await.unwrap();
        assert_eq!(q.get("code").map(String::as_str), Some("abc"));
        assert_eq!(q.get("state").map(String::as_str), Some("x<y"));
    }

    /// `localhost` may resolve to `[::1]`: that address is ours too, at the same port, so no
    /// other process can listen there and take the code.
    #[tokio::test]
    async fn holds_both_loopback_addresses_at_one_port() {
        let lb = Loopback::bind().await.unwrap();
        let port = lb.port();
        if !lb.on_ipv6() {
            eprintln!("no IPv6 loopback on this machine: nothing else can listen there");
            return;
        }
        assert!(
            TcpListener::bind(("::1", port)).await.is_err(),
            "[::1]:{port} is ours"
        );
        let waiting = tokio::spawn(async move { lb.wait("s1", |_| finished_page(true, "")).await });
        let page = get_from("::1", port, "/?code=abc&state=s1").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert_eq!(
            waiting.await.unwrap().get("code").map(String::as_str),
            Some("abc")
        );
    }
}
