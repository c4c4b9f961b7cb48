//! The router's HTTP API and event stream, in process on 127.0.0.1:0, over real HTTP.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use switchboard_api::{Event, Health, StorageState, Tenant};
use switchboard_router::config::Config;
use tokio_tungstenite::tungstenite::Message;

struct Running {
    base: String,
    router: switchboard_router::Background,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = Some(dir.path().to_owned());
    config.events.heartbeat_seconds = 1;
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = switchboard_router::Router::start_on(config, listener)
        .await
        .unwrap()
        .spawn();
    Running {
        base: router.url().to_owned(),
        router,
        _dir: dir,
    }
}

impl Running {
    async fn shutdown(self) {
        self.router.stop().await.expect("graceful stop in 10 s");
    }
}

/// The JSON body of `GET url`.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn problem(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "content-type for {status}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn health_reports_version_and_storage() {
    let r = start(|_| {}).await;
    let h: Health = reqwest::get(format!("{}/v1/health", r.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(h.storage.state, StorageState::Ok);
    assert_eq!(h.storage.backend, "sqlite");
    r.shutdown().await;
}

#[tokio::test]
async fn tenants_crud() {
    let r = start(|_| {}).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tenants", r.base);
    let resp = c
        .post(&url)
        .json(&serde_json::json!({"name": "Contoso", "sip_domain": "contoso.example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let t: Tenant = resp.json().await.unwrap();
    let list: Vec<Tenant> = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, vec![t.clone()]);
    let one: Tenant = c
        .get(format!("{url}/{}", t.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, t);
    let dup = c
        .post(&url)
        .json(&serde_json::json!({"name": "Other", "sip_domain": "CONTOSO.example.com"}))
        .send()
        .await
        .unwrap();
    problem(dup, StatusCode::CONFLICT).await;
    assert_eq!(
        c.delete(format!("{url}/{}", t.id))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    problem(
        c.get(format!("{url}/{}", t.id)).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        c.delete(format!("{url}/{}", t.id)).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    r.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_problem_json() {
    let r = start(|c| c.http.max_body_bytes = 1024).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tenants", r.base);
    // Malformed JSON.
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST).await;
    // Not JSON at all.
    let resp = c
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Wrong shape and unknown fields.
    let resp = c
        .post(&url)
        .json(&serde_json::json!({"name": 5, "sip_domain": "a.b"}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    let resp = c
        .post(&url)
        .json(&serde_json::json!({"name": "a", "sip_domain": "a.b", "evil": true}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Invalid values.
    let resp = c
        .post(&url)
        .json(&serde_json::json!({"name": " ", "sip_domain": "a.b"}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    let resp = c
        .post(&url)
        .json(&serde_json::json!({"name": "a", "sip_domain": "not a domain"}))
        .send()
        .await
        .unwrap();
    let body = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["detail"].as_str().unwrap().contains("sip_domain"),
        "{body}"
    );
    let resp = c
        .post(&url)
        .json(&serde_json::json!({"name": "a", "sip_domain": "a.b", "entra_tenant_id": "nope"}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Oversized body.
    let big = format!(
        "{{\"name\": \"{}\", \"sip_domain\": \"a.b\"}}",
        "x".repeat(4096)
    );
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Unknown route, wrong method, bad path parameter.
    let body = problem(
        c.get(format!("{}/v1/nope", r.base)).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["instance"], "/v1/nope");
    let resp = c.put(&url).send().await.unwrap();
    assert!(resp.headers().get("allow").is_some());
    problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    problem(
        c.get(format!("{url}/not-a-uuid")).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    // Still healthy afterwards.
    assert!(c
        .get(format!("{}/v1/health", r.base))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    r.shutdown().await;
}

#[tokio::test]
async fn openapi_and_metrics_are_served() {
    let r = start(|_| {}).await;
    let doc: Value = reqwest::get(format!("{}/v1/openapi.json", r.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/health",
        "/v1/tenants",
        "/v1/tenants/{id}",
        "/v1/events",
        "/v1/openapi.json",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"].get("Problem").is_some());
    let _ = reqwest::get(format!("{}/v1/health", r.base)).await.unwrap();
    let text = reqwest::get(format!("{}/metrics", r.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/health\""), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("process_uptime_seconds"), "{text}");
    r.shutdown().await;
}

async fn next_event(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Event> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
            .ok()?;
        match m {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn events_hello_heartbeat_tenant_and_shutdown() {
    let r = start(|_| {}).await;
    let ws_url = r.base.replace("http://", "ws://") + "/v1/events";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    assert!(
        matches!(next_event(&mut ws).await, Some(Event::Hello { version, .. }) if version == env!("CARGO_PKG_VERSION"))
    );
    assert!(matches!(
        next_event(&mut ws).await,
        Some(Event::Heartbeat { .. })
    ));
    let t: Tenant = reqwest::Client::new()
        .post(format!("{}/v1/tenants", r.base))
        .json(&serde_json::json!({"name": "Fabrikam", "sip_domain": "fabrikam.example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    loop {
        match next_event(&mut ws).await {
            Some(Event::TenantCreated { tenant }) => {
                assert_eq!(tenant, t);
                break;
            }
            Some(Event::Heartbeat { .. }) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    let stop = tokio::spawn(r.shutdown());
    loop {
        match next_event(&mut ws).await {
            Some(Event::ShuttingDown) => break,
            Some(Event::Heartbeat { .. }) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    stop.await.unwrap();
}

const TWO_TENANTS: &str = r#"
[sip]
listen = "127.0.0.1:0"

[[tenants]]
id = "contoso"
domain = "contoso.example"

[[tenants.trunks]]
name = "carrier"
allow = ["192.0.2.10"]
outbound = "sip:192.0.2.10:5060"

[[tenants.queues]]
name = "billing"
skills = { billing = 3 }

[[tenants.agents]]
upn = "adele@contoso.example"
name = "Adele Vance"
skills = { billing = 5 }

[[tenants]]
id = "fabrikam"
domain = "fabrikam.example"

[[tenants.agents]]
upn = "bob@fabrikam.example"
"#;

/// PUTs each body to its URL; each must be refused with 422 and problem+json.
async fn unprocessable(http: &reqwest::Client, cases: &[(String, Value)]) {
    for (url, body) in cases {
        let r = http.put(url).json(body).send().await.unwrap();
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        eprintln!("{url} {body} → {}", p["detail"]);
    }
}

/// DELETE `url` removes what it names (204); a second finds nothing (404).
async fn removed_once(http: &reqwest::Client, url: &str) {
    let r = http.delete(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{url}");
    problem(
        http.delete(url).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// A router on `dir` with [`TWO_TENANTS`], and SIP over TLS with a certificate naming
/// Contoso's SBC (`sbc.contoso.example`), made in `dir` at the first start: Microsoft's
/// proxies are resolved to a closed port on 127.0.0.1, never looked up.
async fn start_on_dir(dir: &std::path::Path) -> switchboard_router::Background {
    let mut config = Config::from_toml(TWO_TENANTS, std::path::Path::new("two.toml")).unwrap();
    config.storage.data_dir = Some(dir.to_owned());
    let (certificate, key) = (dir.join("sbc.pem"), dir.join("sbc.key"));
    if !certificate.exists() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["sbc.contoso.example".to_owned()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        std::fs::write(&certificate, cert.pem()).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
    }
    config.sip.tls = Some(switchboard_router::center::SipTls {
        listen: "127.0.0.1:0".parse().unwrap(),
        certificate,
        key,
        ca: None,
        host: None,
        mutual: true,
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    for proxy in switchboard_router::center::TEAMS_PROXIES {
        config.sip.resolve.insert(proxy.to_owned(), nowhere);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    switchboard_router::Router::start_on(config, listener)
        .await
        .unwrap()
        .spawn()
}

/// Agents (and queues, numbers, expert groups, toll rules) are set through the API: the change applies at once (the
/// new agent gets SIP credentials, the removed one no longer does), bad input is refused with
/// problem+json, a UPN stays in one tenant, and what changed survives a restart.
#[tokio::test]
async fn the_configuration_api_sets_agents_queues_numbers_experts_and_toll_rules_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let router = start_on_dir(dir.path()).await;
    let base = router.url().to_owned();
    let http = reqwest::Client::new();
    let agents = format!("{base}/v1/config/tenants/contoso/agents");
    let list = |http: reqwest::Client, url: String| async move {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Vec<Value>>().await.unwrap()
    };
    let all = list(http.clone(), agents.clone()).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (
            &all[0]["upn"],
            &all[0]["skills"]["billing"],
            &all[0]["source"]
        ),
        (
            &Value::from("adele@contoso.example"),
            &Value::from(5),
            &Value::from("file")
        )
    );
    let credentials = |upn: &'static str| {
        http.post(format!("{base}/v1/agents/me/sip-credentials"))
            .json(&serde_json::json!({ "agent": upn }))
            .send()
    };
    assert_eq!(
        credentials("lynne@contoso.example").await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "not an agent yet"
    );
    // Added, then changed.
    let lynne = format!("{agents}/lynne@contoso.example");
    let put = |url: String, body: Value| http.put(url).json(&body).send();
    let r = put(
        lynne.clone(),
        serde_json::json!({ "name": "Lynne Robbins", "skills": { "billing": 3 } }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = put(
        lynne.clone(),
        serde_json::json!({ "name": "Lynne Robbins", "skills": { "billing": 4, "orders": 2 }, "teams_number": "+14255550101" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        view["skills"],
        serde_json::json!({ "billing": 4, "orders": 2 })
    );
    assert_eq!(view["teams_number"], "+14255550101", "{view}");
    assert_eq!(view["source"], "api");
    assert_eq!(
        credentials("lynne@contoso.example").await.unwrap().status(),
        StatusCode::CREATED,
        "an agent at once"
    );
    // Refusals.
    let bad = [
        (
            format!("{agents}/nobody"),
            serde_json::json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            lynne.clone(),
            serde_json::json!({ "skills": { "billing": 6 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            lynne.clone(),
            serde_json::json!({ "teams_number": "4255550101" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            lynne.clone(),
            serde_json::json!({ "skills": { "bill ing": 2 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            lynne.clone(),
            serde_json::json!({ "object_id": "not-a-guid" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            lynne.clone(),
            serde_json::json!({ "colour": "blue" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{base}/v1/config/tenants/nope/agents/x@y.example"),
            serde_json::json!({}),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{agents}/bob@fabrikam.example"),
            serde_json::json!({}),
            StatusCode::CONFLICT,
        ),
    ];
    for (url, body, status) in bad {
        let p = problem(put(url.clone(), body.clone()).await.unwrap(), status).await;
        eprintln!("{url} {body} → {}", p["detail"]);
    }
    // Removed: no credentials, not listed; removing again is 404.
    let adele = format!("{agents}/adele@contoso.example");
    let r = http.delete(&adele).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        credentials("adele@contoso.example").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    problem(
        http.delete(&adele).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let all = list(http.clone(), agents.clone()).await;
    let upns: Vec<&str> = all.iter().filter_map(|a| a["upn"].as_str()).collect();
    assert_eq!(upns, vec!["lynne@contoso.example"]);
    // Queues: one changed (its routes from the file kept), one added, the file's checks.
    let queues = format!("{base}/v1/config/tenants/contoso/queues");
    let billing = format!("{queues}/billing");
    let r = put(
        billing.clone(),
        serde_json::json!({ "strategy": "ring_all", "skills": { "billing": 4 }, "alert_seconds": 25, "dispositions": ["paid", "refund"] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        (
            &view["settings"]["strategy"],
            &view["settings"]["alert_seconds"],
            &view["source"]
        ),
        (
            &Value::from("ring_all"),
            &Value::from(25),
            &Value::from("api")
        ),
        "{view}"
    );
    let r = put(
        format!("{queues}/vip"),
        serde_json::json!({ "skills": { "vip": 1 } }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let bad = [
        (
            billing.clone(),
            serde_json::json!({ "strategy": "loudest" }),
        ),
        (billing.clone(), serde_json::json!({ "alert_seconds": 0 })),
        (
            billing.clone(),
            serde_json::json!({ "announce_seconds": 2 }),
        ),
        (
            billing.clone(),
            serde_json::json!({ "dispositions": ["paid", "PAID"] }),
        ),
        (format!("{queues}/not%20a%20name"), serde_json::json!({})),
    ];
    unprocessable(&http, &bad).await;
    // Numbers: added, checked like the file (existing queue, one tenant per number), removed.
    let numbers = format!("{base}/v1/config/tenants/contoso/numbers");
    let r = put(
        format!("{numbers}/+18005550123"),
        serde_json::json!({ "queue": "billing", "priority": 4 }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = put(
        format!("{numbers}/+18005550124"),
        serde_json::json!({ "queue": "vip" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let bad = [
        (
            format!("{numbers}/+18005550125"),
            serde_json::json!({ "queue": "nope" }),
        ),
        (format!("{numbers}/+18005550125"), serde_json::json!({})),
        (
            format!("{numbers}/+18005550125"),
            serde_json::json!({ "queue": "billing", "attendant": "main" }),
        ),
        (
            format!("{numbers}/+18005550125"),
            serde_json::json!({ "queue": "billing", "priority": 9 }),
        ),
        (
            format!("{numbers}/+18005550125"),
            serde_json::json!({ "queue": "billing", "closed": { "queue": "billing" } }),
        ),
        (
            format!("{numbers}/12345"),
            serde_json::json!({ "queue": "billing" }),
        ),
        (
            format!("{base}/v1/config/tenants/fabrikam/numbers/+18005550123"),
            serde_json::json!({ "queue": "x" }),
        ),
    ];
    unprocessable(&http, &bad).await;
    // Opening hours, as the file writes them; a schedule a number follows stays.
    let schedules = format!("{base}/v1/config/tenants/contoso/schedules");
    let hours = serde_json::json!({
        "timezone": "Europe/London",
        "weekdays": ["09:00-12:30", "13:30-17:00"],
        "sat": ["10:00-14:00"],
        "holidays": ["2026-12-25", "2026-12-31..2027-01-01"]
    });
    let r = put(format!("{schedules}/office"), hours.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["settings"], hours, "shown as written");
    let r = put(
        format!("{numbers}/+18005550126"),
        serde_json::json!({ "queue": "billing", "schedule": "office", "closed": { "queue": "vip" } }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let bad = [
        (
            format!("{schedules}/office"),
            serde_json::json!({ "timezone": "Mars/Olympus_Mons" }),
        ),
        (
            format!("{schedules}/office"),
            serde_json::json!({ "timezone": "UTC", "mon": ["9-5"] }),
        ),
        (
            format!("{schedules}/office"),
            serde_json::json!({ "timezone": "UTC", "mon": ["09:00-12:00", "11:00-13:00"] }),
        ),
        (
            format!("{schedules}/office"),
            serde_json::json!({ "timezone": "UTC", "holidays": ["25/12/2026"] }),
        ),
    ];
    unprocessable(&http, &bad).await;
    let p = problem(
        http.delete(format!("{schedules}/office"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    eprintln!("removing a schedule a number follows → {}", p["detail"]);
    // Edited after the number that follows it: the restart still puts both back.
    let r = put(format!("{schedules}/office"), hours.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Trunks: the password is never shown; the file's rules hold.
    let trunks = format!("{base}/v1/config/tenants/contoso/trunks");
    let r = put(
        format!("{trunks}/partner"),
        serde_json::json!({ "username": "partner-1", "password": "s3cret-partner", "probe": "sip:192.0.2.20:5060" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let text = r.text().await.unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("\"has_password\":true"), "{text}");
    let bad = [
        (
            format!("{trunks}/other"),
            serde_json::json!({ "allow": ["192.0.2.10"] }),
        ),
        (
            format!("{trunks}/other"),
            serde_json::json!({ "username": "u-only" }),
        ),
        (
            format!("{trunks}/other"),
            serde_json::json!({ "allow": ["not-an-ip"] }),
        ),
        (
            format!("{trunks}/other"),
            serde_json::json!({ "allow": ["192.0.2.30"], "probe": "sip:carrier" }),
        ),
        // Direct Routing: an FQDN, never an IP address; proxies by name; nothing of other
        // trunks beside them.
        (
            format!("{trunks}/teams"),
            serde_json::json!({ "direct_routing": { "fqdn": "192.0.2.40" } }),
        ),
        (
            format!("{trunks}/teams"),
            serde_json::json!({ "direct_routing": { "fqdn": "sbc.contoso.example", "proxies": ["52.112.0.1"] } }),
        ),
        (
            format!("{trunks}/teams"),
            serde_json::json!({ "allow": ["192.0.2.41"], "direct_routing": { "fqdn": "sbc.contoso.example" } }),
        ),
    ];
    unprocessable(&http, &bad).await;
    // Nor one the router's certificate does not name: Microsoft's proxies would refuse it.
    let p = problem(
        put(
            format!("{trunks}/teams"),
            serde_json::json!({ "direct_routing": { "fqdn": "sbc.fabrikam.example" } }),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("does not name sbc.fabrikam.example"),
        "{detail}"
    );
    // A Direct Routing trunk: Microsoft's three proxies unless told otherwise, each with its
    // own health in GET /v1/trunks.
    let r = put(
        format!("{trunks}/teams"),
        serde_json::json!({ "direct_routing": { "fqdn": "sbc.contoso.example", "media_bypass": true }, "probe_seconds": 60 }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        view["direct_routing"]["fqdn"], "sbc.contoso.example",
        "{view}"
    );
    assert_eq!(view["direct_routing"]["media_bypass"], true, "{view}");
    let health = get_json(&http, &format!("{base}/v1/trunks")).await;
    let teams = health
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "teams")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(teams["direct_routing"], "sbc.contoso.example", "{teams}");
    let proxies: Vec<&str> = teams["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["host"].as_str())
        .collect();
    assert_eq!(
        proxies,
        [
            "sip.pstnhub.microsoft.com",
            "sip2.pstnhub.microsoft.com",
            "sip3.pstnhub.microsoft.com"
        ],
        "{teams}"
    );
    assert_eq!(teams["proxies"][0]["port"], 5061, "{teams}");
    // Toll rules and expert groups.
    let outbound = format!("{base}/v1/config/tenants/contoso/outbound");
    problem(
        http.get(&outbound).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let rules = serde_json::json!({ "trunk": "carrier", "allow": ["+1"], "deny": ["+1900"] });
    let r = put(outbound.clone(), rules).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rules = serde_json::json!({ "trunk": "carrier", "allow": ["+1", "+44"], "deny": ["+1900"], "max_per_hour": 10 });
    let r = put(outbound.clone(), rules.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = get_json(&http, &outbound).await;
    assert_eq!(got["allow"], rules["allow"]);
    assert_eq!(got["max_per_hour"], 10);
    let experts = format!("{base}/v1/config/tenants/contoso/experts");
    let r = put(
        format!("{experts}/escalations"),
        serde_json::json!({ "skill": "billing", "min_level": 4 }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let bad = [
        (outbound.clone(), serde_json::json!({ "trunk": "nope" })),
        (
            outbound.clone(),
            serde_json::json!({ "trunk": "carrier", "allow": ["1"] }),
        ),
        (
            outbound.clone(),
            serde_json::json!({ "trunk": "carrier", "max_per_hour": 0 }),
        ),
        (
            format!("{experts}/billing"),
            serde_json::json!({ "skill": "billing" }),
        ),
        (
            format!("{experts}/escalations"),
            serde_json::json!({ "skill": "billing", "min_level": 7 }),
        ),
        // This router reads no Microsoft 365 skills ([presence] read_skills).
        (
            format!("{experts}/escalations"),
            serde_json::json!({ "skill": "billing", "from_graph": true }),
        ),
    ];
    unprocessable(&http, &bad).await;
    removed_once(&http, &format!("{experts}/escalations")).await;
    removed_once(&http, &format!("{numbers}/+18005550124")).await;
    router.stop().await.expect("graceful stop");

    // The same configuration file and data folder: the API's changes are still there.
    let router = start_on_dir(dir.path()).await;
    let base = router.url().to_owned();
    let agents = format!("{base}/v1/config/tenants/contoso/agents");
    let all = list(http.clone(), agents).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["upn"], "lynne@contoso.example");
    assert_eq!(
        all[0]["skills"],
        serde_json::json!({ "billing": 4, "orders": 2 })
    );
    let got: Value = http
        .get(format!("{base}/v1/config/tenants/contoso/outbound"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["max_per_hour"], 10,
        "the toll rules after the restart: {got}"
    );
    let groups = list(
        http.clone(),
        format!("{base}/v1/config/tenants/contoso/experts"),
    )
    .await;
    assert!(groups.is_empty(), "removed stays removed: {groups:?}");
    let kept = list(
        http.clone(),
        format!("{base}/v1/config/tenants/contoso/schedules"),
    )
    .await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        kept[0]["settings"]["sat"],
        serde_json::json!(["10:00-14:00"])
    );
    let ns = list(
        http.clone(),
        format!("{base}/v1/config/tenants/contoso/numbers"),
    )
    .await;
    assert_eq!(ns.len(), 2, "{ns:?}");
    assert_eq!(
        (
            &ns[0]["number"],
            &ns[0]["settings"]["queue"],
            &ns[0]["settings"]["priority"]
        ),
        (
            &Value::from("+18005550123"),
            &Value::from("billing"),
            &Value::from(4)
        ),
        "{ns:?}"
    );
    let qs = list(
        http.clone(),
        format!("{base}/v1/config/tenants/contoso/queues"),
    )
    .await;
    let names: Vec<(&str, &Value)> = qs
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap_or_default(),
                &q["settings"]["alert_seconds"],
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![("billing", &Value::from(25)), ("vip", &Value::from(15))],
        "{qs:?}"
    );
    for (upn, status) in [
        ("lynne@contoso.example", StatusCode::CREATED),
        ("adele@contoso.example", StatusCode::NOT_FOUND),
    ] {
        let r = http
            .post(format!("{base}/v1/agents/me/sip-credentials"))
            .json(&serde_json::json!({ "agent": upn }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{upn} after the restart");
    }
    router.stop().await.expect("graceful stop");
}

/// A 16-bit mono WAV of half a second of `sample` at 8 kHz in `dir/<lang>/<name>.wav`.
fn greeting_file(dir: &std::path::Path, lang: &str, name: &str) {
    std::fs::create_dir_all(dir.join(lang)).unwrap();
    let mut w =
        switchboard_media::wav::WavSink::create(&dir.join(lang).join(format!("{name}.wav")), 8000)
            .unwrap();
    w.write(&[1000i16; 4000]).unwrap();
    w.finish().unwrap();
}

/// Attendants are set through the API like the file's `[[tenants.attendants]]`: their
/// greeting must be a prompt file, their keys and routes are checked, one a number (or a
/// queue's route) names cannot be removed, and they survive a restart; queues' overflow,
/// no-agents and callback routes are set with the queue; queues and trunks are removed
/// unless something names them, and come back when added again.
#[tokio::test]
async fn attendants_queue_routes_and_removals_are_set_through_the_api_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let prompts = tempfile::tempdir().unwrap();
    let toml = TWO_TENANTS.replace(
        "listen = \"127.0.0.1:0\"",
        &format!(
            "listen = \"127.0.0.1:0\"\nprompts_dir = {:?}",
            prompts.path().display().to_string()
        ),
    );
    let start = || async {
        let mut config = Config::from_toml(&toml, std::path::Path::new("two.toml")).unwrap();
        config.storage.data_dir = Some(data.path().to_owned());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        switchboard_router::Router::start_on(config, listener)
            .await
            .unwrap()
            .spawn()
    };
    let router = start().await;
    let base = router.url().to_owned();
    let http = reqwest::Client::new();
    let attendants = format!("{base}/v1/config/tenants/contoso/attendants");
    let front = format!("{attendants}/front");
    let menu = serde_json::json!({
        "greeting": "front-menu",
        "timeout_seconds": 3,
        "options": { "1": { "queue": "billing" } },
        "default": { "queue": "billing" },
    });
    let r = http.put(&front).json(&menu).send().await.unwrap();
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("front-menu.wav"),
        "no greeting file yet: {p}"
    );
    greeting_file(prompts.path(), "en", "front-menu");
    let r = http.put(&front).json(&menu).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut changed = menu.clone();
    changed["options"]["2"] = serde_json::json!({ "attendant": "front" });
    let r = http.put(&front).json(&changed).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["settings"]["options"]["2"]["attendant"], "front");
    assert_eq!(view["settings"]["retries"], 2, "the file's default");
    assert_eq!(view["source"], "api");
    let bad = |patch: Value| {
        let mut m = menu.clone();
        for (k, v) in patch.as_object().unwrap() {
            m[k] = v.clone();
        }
        (format!("{attendants}/other"), m)
    };
    unprocessable(
        &http,
        &[
            bad(serde_json::json!({ "options": { "a": { "queue": "billing" } } })),
            bad(serde_json::json!({ "options": { "1": { "queue": "nope" } } })),
            bad(serde_json::json!({ "default": { "queue": "billing", "attendant": "front" } })),
            bad(serde_json::json!({ "timeout_seconds": 0 })),
            bad(serde_json::json!({ "greeting": "../../etc/passwd" })),
            bad(serde_json::json!({ "schedule": "nope" })),
            bad(serde_json::json!({ "language": "fr" })),
            (format!("{attendants}/bad%20name"), menu.clone()),
        ],
    )
    .await;
    // An attendant that speaks Chinese needs its greeting in Chinese (or English), not in
    // the tenant's language.
    greeting_file(prompts.path(), "zh-CN", "front-zh");
    let mut zh = menu.clone();
    zh["greeting"] = "front-zh".into();
    let put_zh = |body: Value| http.put(format!("{attendants}/zh")).json(&body).send();
    let p = problem(
        put_zh(zh.clone()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(p["detail"].to_string().contains("en/front-zh.wav"), "{p}");
    zh["language"] = "ZH-cn".into();
    let r = put_zh(zh).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["settings"]["language"], "zh-CN", "{view}");
    assert_eq!(menu.get("language"), None);
    // Named by a number: it stays until the number goes elsewhere.
    let number = format!("{base}/v1/config/tenants/contoso/numbers/+18005550150");
    let r = http
        .put(&number)
        .json(&serde_json::json!({ "attendant": "front" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http.delete(&front).send().await.unwrap();
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let r = http
        .put(format!("{attendants}/spare"))
        .json(&menu)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    removed_once(&http, &format!("{attendants}/spare")).await;
    // Queue routes: overflow and no-agents to the attendant, a callback offer.
    let vip = format!("{base}/v1/config/tenants/contoso/queues/vip");
    let q = serde_json::json!({
        "max_wait_seconds": 60,
        "overflow": { "attendant": "front" },
        "no_agents": { "queue": "billing" },
        "callback": { "after_seconds": 30, "attempts": 2 },
    });
    let r = http.put(&vip).json(&q).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["settings"]["overflow"]["attendant"], "front", "{view}");
    assert_eq!(view["settings"]["callback"]["retry_seconds"], 120, "{view}");
    assert_eq!(view["settings"].get("language"), None, "{view}");
    unprocessable(
        &http,
        &[
            (
                vip.clone(),
                serde_json::json!({ "overflow": { "queue": "nope" } }),
            ),
            (
                vip.clone(),
                serde_json::json!({ "callback": { "after_seconds": 30, "attempts": 0 } }),
            ),
            (vip.clone(), serde_json::json!({ "callback": {} })),
            (vip.clone(), serde_json::json!({ "language": "klingon" })),
        ],
    )
    .await;
    // A queue named by an attendant cannot go; one named by nothing can, and comes back.
    let queues = format!("{base}/v1/config/tenants/contoso/queues");
    let r = http
        .delete(format!("{queues}/billing"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    for status in [StatusCode::CREATED, StatusCode::CREATED] {
        let r = http
            .put(format!("{queues}/temp"))
            .json(&serde_json::json!({ "alert_seconds": 9 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        removed_once(&http, &format!("{queues}/temp")).await;
    }
    // A trunk the toll rules place calls on cannot go; then it can, and comes back.
    let trunks = format!("{base}/v1/config/tenants/contoso/trunks");
    let spare = format!("{trunks}/spare");
    // This router has no [sip.tls]: it cannot be a Direct Routing SBC, and says so.
    let p = problem(
        http.put(format!("{trunks}/teams"))
            .json(&serde_json::json!({ "direct_routing": { "fqdn": "sbc.contoso.example" } }))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("needs [sip.tls]"), "{detail}");
    let outbound = format!("{base}/v1/config/tenants/contoso/outbound");
    for status in [StatusCode::CREATED, StatusCode::CREATED] {
        let r = http
            .put(&spare)
            .json(&serde_json::json!({ "allow": ["192.0.2.20"], "outbound": "sip:192.0.2.20" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let r = http
            .put(&outbound)
            .json(&serde_json::json!({ "trunk": "spare", "allow": ["+1"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        problem(
            http.delete(&spare).send().await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        removed_once(&http, &outbound).await;
        removed_once(&http, &spare).await;
        let listed = get_json(&http, &format!("{base}/v1/trunks")).await;
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["name"] != "spare"),
            "{listed}"
        );
    }
    router.stop().await.expect("graceful stop");

    // After a restart: the attendant, its number and the queue's routes are there.
    let router = start().await;
    let base = router.url().to_owned();
    let all = get_json(
        &http,
        &format!("{base}/v1/config/tenants/contoso/attendants"),
    )
    .await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["name"], "front");
    assert_eq!(all[0]["settings"]["options"]["2"]["attendant"], "front");
    assert_eq!(all[1]["name"], "zh");
    assert_eq!(
        all[1]["settings"]["language"], "zh-CN",
        "its language is kept"
    );
    let qs = get_json(&http, &format!("{base}/v1/config/tenants/contoso/queues")).await;
    let vip = qs
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "vip")
        .cloned()
        .unwrap_or_default();
    assert_eq!(vip["settings"]["no_agents"]["queue"], "billing", "{qs}");
    assert_eq!(vip["settings"]["callback"]["attempts"], 2, "{qs}");
    let names: Vec<&str> = qs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["billing", "vip"], "removed stays removed");
    let trunks = get_json(&http, &format!("{base}/v1/config/tenants/contoso/trunks")).await;
    let names: Vec<&str> = trunks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["carrier"], "removed stays removed");
    // The other tenant has none of them.
    let other = get_json(
        &http,
        &format!("{base}/v1/config/tenants/fabrikam/attendants"),
    )
    .await;
    assert_eq!(other, serde_json::json!([]));
    router.stop().await.expect("graceful stop");
}
