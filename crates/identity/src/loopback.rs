//! The loopback redirect of a native app's sign-in (RFC 8252 §7.3): a one-shot HTTP listener
//! on 127.0.0.1 at an ephemeral port that takes the provider's redirect, shows the person a
//! page saying they can go back to the app, and hands the query to the flow.
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
    listener: TcpListener,
    port: u16,
}

impl Loopback {
    /// Binds 127.0.0.1 on a port the system picks.
    pub async fn bind() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        Ok(Self { listener, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the browser's request that carries `code` or `error` and answers it with
    /// `page(&params)`; other requests (a favicon) get 404. Returns the query parameters.
    pub async fn wait(
        self,
        page: impl Fn(&HashMap<String, String>) -> String,
    ) -> HashMap<String, String> {
        loop {
            let Ok((mut sock, _)) = self.listener.accept().await else {
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
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
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
        let waiting =
            tokio::spawn(lb.wait(|q| finished_page(true, q.get("state").map_or("", |s| s))));
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        let page = get(port, "/?code=abc&state=x%3Cy").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("x&lt;y"), "escaped: {page}");
        assert!(page.contains("您已登录"));
        let q = waiting.await.unwrap();
        assert_eq!(q.get("code").map(String::as_str), Some("abc"));
        assert_eq!(q.get("state").map(String::as_str), Some("x<y"));
    }
}
