//! Who may knock at all, before any route: the `Host` a request names must be one this
//! router answers to (so a DNS-rebinding page, whose requests name the attacker's host, is
//! refused), and a request a web page makes — it carries `Origin` — is refused unless that
//! origin is in `http.allowed_origins` (so a page cannot open `ws://127.0.0.1:7700/v1/events`
//! or post to the API from the person's browser). Native clients (the desktop's router link,
//! Graph's webhook deliveries, scripts) send no `Origin`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::HttpConfig;
use crate::error::ApiError;

/// The Host and Origin rules of one router.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Host names accepted (lower case), any port; empty with `any_host`.
    hosts: Vec<String>,
    /// No Host rule: a non-loopback listener with no `http.allowed_hosts` configured.
    any_host: bool,
    /// Origins accepted (`scheme://host[:port]`, lower case).
    origins: Vec<String>,
}

impl Gate {
    /// The rules for a router bound to `addr`: the configured host names, and on a loopback
    /// address also `localhost`, `127.0.0.1` and `[::1]`.
    pub fn new(http: &HttpConfig, addr: SocketAddr) -> Arc<Self> {
        let mut hosts: Vec<String> = http
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let loopback = addr.ip().is_loopback();
        if loopback {
            hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        }
        if !addr.ip().is_unspecified() && !loopback {
            hosts.push(host_of_addr(addr));
        }
        Arc::new(Self {
            any_host: !loopback && http.allowed_hosts.is_empty(),
            hosts,
            origins: http
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        })
    }

    fn host_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        let name = strip_port(host).to_ascii_lowercase();
        self.hosts.contains(&name)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.origins.contains(&o)
    }
}

fn host_of_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// `example.com:7700` → `example.com`, `[::1]:7700` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The middleware: 421 for a Host this router does not answer to, 403 for a web page's
/// request from an origin not allowed.
pub async fn check(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if gate.host_allowed(&h) => {}
        Some(h) => {
            tracing::info!(host = %h, "request for a host this router does not serve refused");
            metrics::counter!("http_refused_total", "why" => "host").increment(1);
            return misdirected(format!(
                "this router does not answer to the host {h:?}: add it to http.allowed_hosts if it is a name of this router"
            ));
        }
        None => return ApiError::BadRequest("a request must name its Host".into()).into_response(),
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !gate.origin_allowed(origin) {
            tracing::info!(origin = %origin, path = %req.uri().path(), "request from a web page refused");
            metrics::counter!("http_refused_total", "why" => "origin").increment(1);
            return ApiError::Forbidden(format!(
                "requests from web pages are refused (Origin {origin:?}): add the origin to http.allowed_origins if it is yours"
            ))
            .into_response();
        }
    }
    next.run(req).await
}

fn misdirected(detail: String) -> Response {
    let mut r = ApiError::BadRequest(detail).into_response();
    *r.status_mut() = axum::http::StatusCode::MISDIRECTED_REQUEST;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(hosts: &[&str], origins: &[&str]) -> HttpConfig {
        HttpConfig {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn loopback_routers_answer_loopback_names_only() {
        let g = Gate::new(&http(&[], &[]), "127.0.0.1:7700".parse().unwrap());
        for ok in [
            "127.0.0.1:7700",
            "localhost:7700",
            "LOCALHOST",
            "[::1]:7700",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:7700",
            "127.0.0.1.evil.example",
            "[::2]:7700",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_and_origins() {
        let g = Gate::new(
            &http(
                &["Router.Contoso.example"],
                &["https://board.contoso.example/"],
            ),
            "0.0.0.0:7700".parse().unwrap(),
        );
        assert!(g.host_allowed("router.contoso.example:443"));
        assert!(!g.host_allowed("evil.example"));
        assert!(g.origin_allowed("https://board.contoso.example"));
        assert!(!g.origin_allowed("https://evil.example"));
        assert!(!g.origin_allowed("null"));
        // No names configured on a public address: any Host (the operator names them).
        let g = Gate::new(&http(&[], &[]), "0.0.0.0:7700".parse().unwrap());
        assert!(g.host_allowed("anything.example"));
    }
}
