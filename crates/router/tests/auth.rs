//! `[auth] mode = "entra"` against the simulated tenant (in process, 127.0.0.1): real access
//! tokens for the router's API, obtained by device code as the person would, checked against
//! the tenant's keys through the multi-tenant `organizations` authority (issuer template);
//! roles decide what each may do, and the token's tenant maps to the router's tenant.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard_identity::client::{ClientConfig, IdentityClient};
use switchboard_router::config::{AuthMode, Config};
use switchboard_tenant_sim::{
    Config as SimConfig, TenantSim, DEMO_CLIENT_ID, ROUTER_API, ROUTER_API_CLIENT_ID,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Setup {
    sim: TenantSim,
    base: String,
    router: switchboard_router::Background,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(&[ROUTER_API_CLIENT_ID]).await
}

async fn setup_with(audiences: &[&str]) -> Setup {
    setup_full(audiences, SimConfig::default(), |_| {}).await
}

async fn setup_full(
    audiences: &[&str],
    sim_config: SimConfig,
    tweak: impl FnOnce(&mut Config),
) -> Setup {
    let sim = TenantSim::start(SimConfig {
        device_code_interval: Duration::from_secs(1),
        ..sim_config
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = Some(dir.path().to_owned());
    config.auth.mode = AuthMode::Entra;
    config.auth.authority = format!("{}/organizations/v2.0", sim.base_url());
    config.auth.audiences = audiences.iter().map(|a| a.to_string()).collect();
    config.auth.operator_tenant_ids = vec![sim.tenant_id().to_uppercase()];
    config.http.metrics_token = "scrape-secret".into();
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = switchboard_router::Router::start_on(config, listener)
        .await
        .unwrap()
        .spawn();
    let base = router.url().to_owned();
    Setup {
        sim,
        base,
        router,
        _dir: dir,
    }
}

/// An access token for `upn` with `scope`, by device code (the test enters the code).
async fn token(sim: &TenantSim, upn: &str, scope: &str) -> String {
    let c = IdentityClient::discover(ClientConfig::new(sim.authority(), DEMO_CLIENT_ID))
        .await
        .unwrap();
    let code = c.start_device_code(&[scope.to_owned()]).await.unwrap();
    switchboard_tenant_sim::enter_device_code(&code.verification_uri, &code.user_code, upn)
        .await
        .unwrap();
    let s = c
        .finish_device_code(&code, std::future::pending())
        .await
        .unwrap();
    s.tokens.access_token.expose().to_owned()
}

fn api_scope() -> String {
    format!("{ROUTER_API}/access_as_user")
}

/// A demo user with exactly these roles.
async fn user_with(sim: &TenantSim, roles: &[&str]) -> String {
    let info: Value = reqwest::get(format!("{}/_sim/info", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            let have: Vec<&str> = u["roles"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            roles.iter().all(|r| have.contains(r)) && have.len() == roles.len()
        })
        .and_then(|u| u["userPrincipalName"].as_str())
        .unwrap_or_else(|| panic!("no demo user with roles {roles:?}"))
        .to_owned()
}

async fn get(base: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn tokens_roles_and_tenants() {
    let s = setup().await;
    let admin = token(
        &s.sim,
        &user_with(&s.sim, &["Admin", "Supervisor", "Agent"]).await,
        &api_scope(),
    )
    .await;
    let agent_upn = user_with(&s.sim, &["Agent"]).await;
    let agent = token(&s.sim, &agent_upn, &api_scope()).await;
    let nobody = token(&s.sim, &user_with(&s.sim, &[]).await, &api_scope()).await;

    // Open routes stay open; the rest wants a token, and says how to send one.
    assert_eq!(
        get(&s.base, "/v1/health", None).await.status(),
        StatusCode::OK
    );
    // Metrics: the scrape token, or a Supervisor/Admin access token; nobody else.
    assert_eq!(
        get(&s.base, "/metrics", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&s.base, "/metrics", Some("not-the-secret"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&s.base, "/metrics", Some(&agent)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&s.base, "/metrics", Some(&admin)).await.status(),
        StatusCode::OK
    );
    let r = get(&s.base, "/metrics", Some("scrape-secret")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("process_uptime_seconds"));
    let r = get(&s.base, "/v1/tenants", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(www.starts_with("Bearer realm="), "{www}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );

    // The operator's Admin creates the tenant for the organisation.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/tenants", s.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "Contoso Support", "sip_domain": "contoso.example", "entra_tenant_id": s.sim.tenant_id()}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = reqwest::Client::new()
        .post(format!("{}/v1/tenants", s.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "Fabrikam", "sip_domain": "fabrikam.example", "entra_tenant_id": "0b0b0b0b-1111-2222-3333-444444444444"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let all: Value = get(&s.base, "/v1/tenants", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);

    // An agent: who they are, their tenant only, no administration.
    let me: Value = get(&s.base, "/v1/me", Some(&agent))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], agent_upn.as_str());
    assert_eq!(me["roles"], json!(["Agent"]));
    assert_eq!(me["operator"], false);
    assert_eq!(me["tenant"]["name"], "Contoso Support");
    let mine: Value = get(&s.base, "/v1/tenants", Some(&agent))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let fabrikam_id = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Fabrikam")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(&s.base, &format!("/v1/tenants/{fabrikam_id}"), Some(&agent))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "another organisation's tenant is invisible"
    );
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/tenants/{fabrikam_id}", s.base))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // No role: told to ask for one.
    let r = get(&s.base, "/v1/tenants", Some(&nobody)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no Switchboard role"),
        "{body}"
    );

    // The agent's own lists (targets, calls): agents only, each for themselves.
    for path in ["/v1/agents/me/targets", "/v1/agents/me/calls"] {
        assert_eq!(
            get(&s.base, path, None).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            get(&s.base, path, Some(&nobody)).await.status(),
            StatusCode::FORBIDDEN,
            "{path}: no Agent role"
        );
        let other = format!("{path}?agent=someone.else@contoso.example");
        assert_eq!(
            get(&s.base, &other, Some(&agent)).await.status(),
            StatusCode::FORBIDDEN,
            "{path}: another agent's"
        );
        // A signed-in agent the contact center does not have: 404, said so.
        let r = get(&s.base, path, Some(&agent)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // The event stream takes the agent's token in the upgrade request, and nothing without.
    let ws_url = format!("{}/v1/events", s.base.replace("http://", "ws://"));
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {agent}").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
    assert!(tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .is_err());

    // Bad tokens: Graph's (wrong audience), altered, garbage — 401 with the reason.
    let graph = token(&s.sim, &agent_upn, "User.Read").await;
    // One character inside the signature (not the last, whose spare bits may not decode).
    let mut altered: Vec<char> = agent.chars().collect();
    let at = altered.len() - 10;
    altered[at] = if altered[at] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    for (t, why) in [
        (graph.as_str(), "another application"),
        (altered.as_str(), "signature"),
        ("not-a-jwt", "header"),
    ] {
        let r = get(&s.base, "/v1/me", Some(t)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(www.contains("invalid_token"), "{www}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
        assert!(!body.to_string().contains(t), "the token is not echoed");
    }
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn events_as(base: &str, token: &str) -> Ws {
    let ws_url = format!("{}/v1/events", base.replace("http://", "ws://"));
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The tenant events a socket gets until (and with) the deletion of `last`.
async fn tenant_events_until_deleted(ws: &mut Ws, last: &str) -> Vec<(String, String)> {
    use futures_util::StreamExt;
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event within 10 s")
            .expect("the socket stays open")
            .unwrap();
        let tokio_tungstenite::tungstenite::Message::Text(t) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        match v["type"].as_str().unwrap() {
            "tenant_created" => got.push((
                "created".to_owned(),
                v["tenant"]["id"].as_str().unwrap().to_owned(),
            )),
            "tenant_deleted" => {
                let id = v["id"].as_str().unwrap().to_owned();
                got.push(("deleted".to_owned(), id.clone()));
                if id == last {
                    return got;
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn tenant_events_reach_only_their_organisation_and_the_operator() {
    use futures_util::{SinkExt, StreamExt};
    let s = setup().await;
    let admin = token(
        &s.sim,
        &user_with(&s.sim, &["Admin", "Supervisor", "Agent"]).await,
        &api_scope(),
    )
    .await;
    let agent = token(&s.sim, &user_with(&s.sim, &["Agent"]).await, &api_scope()).await;
    let mut agent_ws = events_as(&s.base, &agent).await;
    let mut admin_ws = events_as(&s.base, &admin).await;
    let create = |body: Value| {
        let (base, admin) = (s.base.clone(), admin.clone());
        async move {
            let t: Value = reqwest::Client::new()
                .post(format!("{base}/v1/tenants"))
                .bearer_auth(&admin)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            t["id"].as_str().unwrap().to_owned()
        }
    };
    let fabrikam = create(json!({"name": "Fabrikam", "sip_domain": "fabrikam.example", "entra_tenant_id": "0b0b0b0b-1111-2222-3333-444444444444"})).await;
    let unmapped = create(json!({"name": "Nobody's", "sip_domain": "nobody.example"})).await;
    let contoso = create(json!({"name": "Contoso", "sip_domain": "contoso.example", "entra_tenant_id": s.sim.tenant_id()})).await;
    for id in [&fabrikam, &unmapped, &contoso] {
        let r = reqwest::Client::new()
            .delete(format!("{}/v1/tenants/{id}", s.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // The agent's organisation is Contoso's: its two events, nothing of the others.
    let seen = tenant_events_until_deleted(&mut agent_ws, &contoso).await;
    assert_eq!(
        seen,
        vec![
            ("created".to_owned(), contoso.clone()),
            ("deleted".to_owned(), contoso.clone())
        ]
    );
    // The operator's Admin sees every tenant's.
    let seen = tenant_events_until_deleted(&mut admin_ws, &contoso).await;
    assert_eq!(seen.len(), 6, "{seen:?}");

    // A client message over 64 KiB closes the socket.
    let big = format!(
        "{{\"type\":\"watch\",\"ids\":[\"{}\"]}}",
        "a".repeat(1024 * 1024)
    );
    let _ = agent_ws
        .send(tokio_tungstenite::tungstenite::Message::Text(big.into()))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match agent_ws.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the socket is closed after an oversized message"
    );
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

/// A web page cannot reach the router: a foreign Host (DNS rebinding) gets 421, a request
/// carrying a page's Origin 403 — the event stream included; native clients are served.
#[tokio::test]
async fn web_pages_and_rebound_hosts_are_refused() {
    let s = setup().await;
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/v1/health", s.base))
        .header("host", format!("rebind.evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    let r = c
        .get(format!("{}/v1/health", s.base))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{}/v1/health", s.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("allowed_origins"));
    // The event stream from a page: refused before the upgrade, token or not.
    let agent = token(&s.sim, &user_with(&s.sim, &["Agent"]).await, &api_scope()).await;
    let ws_url = format!("{}/v1/events", s.base.replace("http://", "ws://"));
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {agent}").parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // Without Origin, as the desktop's link connects, it works.
    let mut ws = events_as(&s.base, &agent).await;
    let _ = ws.close(None).await;
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

/// #13 item 14: the simulated tenant issues what Entra issues — a v2.0 token naming the API
/// by its client id — so a router that lists only the Application ID URI refuses it, and one
/// that lists the client id accepts it.
#[tokio::test]
async fn v2_tokens_name_the_api_by_its_client_id() {
    let s = setup_with(&[ROUTER_API]).await;
    let upn = user_with(&s.sim, &["Admin", "Supervisor", "Agent"]).await;
    let t = token(&s.sim, &upn, &api_scope()).await;
    let r = get(&s.base, "/v1/tenants", Some(&t)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = r.text().await.unwrap();
    assert!(body.contains("aud"), "{body}");
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;

    let s = setup().await;
    let t = token(&s.sim, &upn, &api_scope()).await;
    assert_eq!(
        get(&s.base, "/v1/tenants", Some(&t)).await.status(),
        StatusCode::OK
    );
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

/// #13 item 5: an event stream ends when its access token does (close code 4401), so a role
/// or account removed in Entra takes effect with the next token; and the number of event
/// clients is bounded (503 past `events.max_clients`).
#[tokio::test]
async fn an_event_session_ends_with_its_token_and_clients_are_bounded() {
    use futures_util::StreamExt;
    let s = setup_full(
        &[ROUTER_API_CLIENT_ID],
        SimConfig {
            token_lifetime: Duration::from_secs(3),
            ..SimConfig::default()
        },
        |c| c.events.max_clients = 1,
    )
    .await;
    let upn = user_with(&s.sim, &["Agent"]).await;
    let agent = token(&s.sim, &upn, &api_scope()).await;
    let mut ws = events_as(&s.base, &agent).await;
    // A second client: no place.
    let ws_url = format!("{}/v1/events", s.base.replace("http://", "ws://"));
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {agent}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a second client was let in: {other:?}"),
    }
    // The first is closed when its token expires (3 s), with the code that says why.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))) = m {
                return Some(u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("closed within 20 s");
    assert_eq!(
        closed,
        Some(switchboard_router::events::CLOSE_TOKEN_EXPIRED)
    );
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

/// Two tenants: Contoso (the simulated tenant's organisation; its trunk is elsewhere) and
/// Fabrikam (another organisation; its trunk is 127.0.0.1).
const TWO_TENANTS: &str = r#"
[sip]
listen = "127.0.0.1:0"

[[tenants]]
id = "contoso"
domain = "contoso.example"
entra_tenant_id = "5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0"
trunks = [{ name = "carrier", allow = ["192.0.2.1"] }]
numbers = [{ number = "+18005550100", queue = "general" }]
queues = [{ name = "general" }]
agents = [{ upn = "AdeleV@contoso.example" }]

[[tenants]]
id = "fabrikam"
domain = "fabrikam.example"
entra_tenant_id = "11111111-2222-3333-4444-555555555555"
trunks = [{ name = "carrier", allow = ["127.0.0.1"] }]
numbers = [{ number = "+18005550200", queue = "support" }]
queues = [{ name = "support" }]
agents = [{ upn = "ann@fabrikam.example" }]
"#;

/// Sends an INVITE for `number` to the SIP edge from 127.0.0.1; the first final answer's
/// status line (a 2xx is not acknowledged: the call is left to time out). A number the
/// tenant does not have is answered with early media first, then 404.
fn invite(sip: std::net::SocketAddr, number: &str) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", me.port() + 2);
    let msg = format!(
        "INVITE sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{number}\r\nMax-Forwards: 70\r\nFrom: <sip:+15550001111@{me}>;tag=t1\r\nTo: <sip:{number}@{sip}>\r\nCall-ID: {number}@{me}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(msg.as_bytes(), sip).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer from the router");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let first = text.lines().next().unwrap_or_default().to_owned();
        if !first.contains(" 100 ") && !first.contains(" 180 ") && !first.contains(" 183 ") {
            return first;
        }
    }
}

#[tokio::test]
async fn call_records_and_queues_stay_within_their_organisation() {
    let s = setup_full(&[ROUTER_API_CLIENT_ID], SimConfig::default(), |c| {
        let two = Config::from_toml(TWO_TENANTS, std::path::Path::new("two.toml")).unwrap();
        c.sip = two.sip;
        c.tenants = two.tenants;
    })
    .await;
    let sip = s.router.sip_addr().expect("the SIP edge listens");
    // Fabrikam's trunk reaches Fabrikam's number, never Contoso's.
    let (a, b) = tokio::task::spawn_blocking(move || {
        (invite(sip, "+18005550200"), invite(sip, "+18005550100"))
    })
    .await
    .unwrap();
    assert!(a.contains(" 200 "), "{a}");
    assert!(
        b.contains(" 404 "),
        "another tenant's number is not there: {b}"
    );
    let operator = token(
        &s.sim,
        &user_with(&s.sim, &["Admin", "Supervisor", "Agent"]).await,
        &api_scope(),
    )
    .await;
    let supervisor = token(
        &s.sim,
        &user_with(&s.sim, &["Supervisor", "Agent"]).await,
        &api_scope(),
    )
    .await;
    let agent = token(&s.sim, &user_with(&s.sim, &["Agent"]).await, &api_scope()).await;
    let all: Vec<Value> = get(&s.base, "/v1/calls", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    // Both came in on Fabrikam's trunk: Fabrikam's records.
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|c| c["tenant"] == "fabrikam"), "{all:?}");
    let id = all[0]["id"].as_str().unwrap();
    // Contoso's supervisor sees none of Fabrikam's calls or queues.
    let mine: Vec<Value> = get(&s.base, "/v1/calls", Some(&supervisor))
        .await
        .json()
        .await
        .unwrap();
    assert!(mine.is_empty(), "{mine:?}");
    let one = get(&s.base, &format!("/v1/calls/{id}"), Some(&supervisor)).await;
    assert_eq!(one.status(), StatusCode::NOT_FOUND);
    let queues: Vec<Value> = get(&s.base, "/v1/queues", Some(&supervisor))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = queues.iter().filter_map(|q| q["queue"].as_str()).collect();
    assert_eq!(names, ["general"], "{queues:?}");
    // Reports and trunks alike: Fabrikam's calls are in the operator's report only.
    let yesterday = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    let period = format!("/v1/reports/queues?from={yesterday}&days=3");
    let report: Vec<Value> = get(&s.base, &period, Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    let calls: u64 = report
        .iter()
        .map(|r| r["calls"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(calls, 2, "{report:?}");
    assert!(
        report.iter().all(|r| r["tenant"] == "fabrikam"),
        "{report:?}"
    );
    let theirs: Vec<Value> = get(&s.base, &period, Some(&supervisor))
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
    let trunks: Vec<Value> = get(&s.base, "/v1/trunks", Some(&supervisor))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        trunks.iter().all(|t| t["tenant"] == "contoso"),
        "{trunks:?}"
    );
    // The agents board alike: the supervisor sees Contoso's agents only, the operator both
    // tenants'.
    let board: Vec<Value> = get(&s.base, "/v1/agents", Some(&supervisor))
        .await
        .json()
        .await
        .unwrap();
    assert!(!board.is_empty(), "{board:?}");
    assert!(
        board.iter().all(|a| a["status"]["tenant"] == "contoso"),
        "{board:?}"
    );
    let every: Vec<Value> = get(&s.base, "/v1/agents", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    let tenants: std::collections::BTreeSet<&str> = every
        .iter()
        .filter_map(|a| a["status"]["tenant"].as_str())
        .collect();
    assert_eq!(
        tenants.into_iter().collect::<Vec<_>>(),
        ["contoso", "fabrikam"],
        "{every:?}"
    );
    // From the board a supervisor sets their tenant's agents' state, nobody else's; an
    // agent sets no one's but their own.
    let set = |upn: &str, token: &str, body: Value| {
        reqwest::Client::new()
            .put(format!("{}/v1/agents/{upn}/state", s.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let coaching = json!({ "state": "not_ready", "reason": "coaching" });
    let r = set("adelev@contoso.example", &supervisor, coaching.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let st: Value = r.json().await.unwrap();
    // No phone of hers is registered here: Offline, Not ready once it is (the window's
    // test sees a registered agent's change).
    assert_eq!(st["agent"], "AdeleV@contoso.example", "{st}");
    assert_eq!(st["state"], "offline", "{st}");
    for (upn, token, body, want) in [
        (
            "ann@fabrikam.example",
            &supervisor,
            coaching.clone(),
            StatusCode::NOT_FOUND,
        ),
        (
            "AdeleV@contoso.example",
            &agent,
            coaching.clone(),
            StatusCode::FORBIDDEN,
        ),
        (
            "AdeleV@contoso.example",
            &supervisor,
            json!({ "agent": "ann@fabrikam.example", "state": "ready" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "AdeleV@contoso.example",
            &supervisor,
            json!({ "state": "on_call" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "ann@fabrikam.example",
            &operator,
            json!({ "state": "ready" }),
            StatusCode::OK,
        ),
    ] {
        let r = set(upn, token, body.clone()).await.unwrap();
        assert_eq!(r.status(), want, "{upn} {body}");
    }
    // Listening in: Supervisors of the agent's own tenant, as themselves, with a phone of
    // theirs in that tenant (this supervisor has none); an agent may not.
    let listen = |upn: &str, token: &str, body: Option<Value>| {
        let url = format!("{}/v1/agents/{upn}/monitor", s.base);
        let http = reqwest::Client::new();
        match body {
            Some(b) => http.put(url).bearer_auth(token).json(&b),
            None => http.delete(url).bearer_auth(token),
        }
        .send()
    };
    let quiet = json!({ "mode": "listen" });
    for (upn, token, body, want) in [
        (
            "ann@fabrikam.example",
            &supervisor,
            Some(quiet.clone()),
            StatusCode::NOT_FOUND,
        ),
        (
            "AdeleV@contoso.example",
            &agent,
            Some(quiet.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            "AdeleV@contoso.example",
            &supervisor,
            Some(json!({ "mode": "listen", "supervisor": "ann@fabrikam.example" })),
            StatusCode::FORBIDDEN,
        ),
        (
            "AdeleV@contoso.example",
            &supervisor,
            Some(json!({ "mode": "shout" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "AdeleV@contoso.example",
            &supervisor,
            Some(quiet.clone()),
            StatusCode::CONFLICT,
        ),
        (
            "AdeleV@contoso.example",
            &supervisor,
            None,
            StatusCode::CONFLICT,
        ),
        (
            "AdeleV@contoso.example",
            &agent,
            None,
            StatusCode::FORBIDDEN,
        ),
    ] {
        let r = listen(upn, token, body.clone()).await.unwrap();
        let st = r.status();
        let problem: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(st, want, "{upn} {body:?}: {problem}");
    }
    let r = listen("AdeleV@contoso.example", &supervisor, Some(quiet))
        .await
        .unwrap();
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("has no phone in this agent's organisation")),
        "{problem}"
    );
    // An agent reads no records, reports, trunks, board or configuration.
    let contoso_agents = "/v1/config/tenants/contoso/agents";
    for path in [
        "/v1/calls",
        period.as_str(),
        "/v1/trunks",
        "/v1/agents",
        contoso_agents,
    ] {
        assert_eq!(
            get(&s.base, path, Some(&agent)).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // The configuration: a Supervisor reads their own tenant's, changes nothing, and does
    // not see another organisation's; the operator changes any.
    assert_eq!(
        get(&s.base, contoso_agents, Some(&supervisor))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(
            &s.base,
            "/v1/config/tenants/fabrikam/agents",
            Some(&supervisor)
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    let put = |path: &str, token: &str| {
        reqwest::Client::new()
            .put(format!("{}{path}", s.base))
            .bearer_auth(token)
            .json(&json!({ "name": "Nestor Wilke", "skills": { "support": 2 } }))
            .send()
    };
    let nestor = "/v1/config/tenants/contoso/agents/nestor@contoso.example";
    assert_eq!(
        put(nestor, &supervisor).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(
            "/v1/config/tenants/fabrikam/agents/nestor@fabrikam.example",
            &operator
        )
        .await
        .unwrap()
        .status(),
        StatusCode::CREATED
    );
    s.router.stop().await.unwrap();
}
