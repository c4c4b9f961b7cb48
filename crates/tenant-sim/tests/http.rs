//! The simulated tenant over real HTTP on 127.0.0.1: identity flows, Graph, subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Query, State};
use axum::routing::post;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use switchboard_tenant_sim::keys::{IdClaims, Jwks};
use switchboard_tenant_sim::{Config, SigningKey, TenantSim, DEMO_CLIENT_ID, DEMO_PASSWORD};

fn key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("keygen"))
        .clone()
}

async fn sim() -> TenantSim {
    TenantSim::start(Config {
        signing_key: Some(key()),
        ..Config::default()
    })
    .await
    .expect("start")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const ADELE: &str = "AdeleV@contoso.example";

/// Starts a device-code sign-in for the demo app (openid, offline_access, User.Read).
async fn start_device_code(c: &reqwest::Client, sim: &TenantSim) -> Value {
    c.post(format!(
        "{}/{}/oauth2/v2.0/devicecode",
        sim.base_url(),
        sim.tenant_id()
    ))
    .form(&[
        ("client_id", DEMO_CLIENT_ID),
        ("scope", "openid offline_access User.Read"),
    ])
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

/// One poll of the token endpoint for the device code `dc`: its status and body.
async fn poll_device_code(c: &reqwest::Client, sim: &TenantSim, dc: &Value) -> (StatusCode, Value) {
    let r = c
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.base_url(),
            sim.tenant_id()
        ))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("device_code", dc["device_code"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json::<Value>().await.unwrap())
}

/// Adele enters the code of `dc` on /devicelogin and approves; the page's text.
async fn approve_device_code(c: &reqwest::Client, sim: &TenantSim, dc: &Value) -> String {
    c.post(format!("{}/devicelogin", sim.base_url()))
        .form(&[
            ("otc", dc["user_code"].as_str().unwrap()),
            ("login", ADELE),
            ("passwd", DEMO_PASSWORD),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn discovery_has_microsoft_issuers_and_errors_have_aadsts_shape() {
    let sim = sim().await;
    let c = http();
    let d: Value = c
        .get(format!(
            "{}/.well-known/openid-configuration",
            sim.authority()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], sim.authority());
    assert_eq!(
        d["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", sim.base_url(), sim.tenant_id())
    );
    for t in ["common", "organizations"] {
        let d: Value = c
            .get(format!(
                "{}/{t}/v2.0/.well-known/openid-configuration",
                sim.base_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["issuer"], format!("{}/{{tenantid}}/v2.0", sim.base_url()));
        assert_eq!(
            d["device_authorization_endpoint"],
            format!("{}/{t}/oauth2/v2.0/devicecode", sim.base_url())
        );
    }
    let r = c
        .get(format!(
            "{}/nosuchtenant/v2.0/.well-known/openid-configuration",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_tenant");
    assert_eq!(e["error_codes"], json!([90002]));
    assert!(e["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS90002: Tenant 'nosuchtenant' not found."));
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(e[k].is_string(), "{k}");
    }
    sim.shutdown().await;
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (uuid::Uuid::new_v4().as_bytes()[i % 16]).wrapping_add(i as u8);
    }
    b
}

/// Plays the browser: opens the authorize URL, submits the sign-in form, returns the query
/// of the redirect to the loopback URI.
async fn browser_sign_in(
    c: &reqwest::Client,
    sim: &TenantSim,
    params: &[(&str, &str)],
    login: &str,
    password: &str,
) -> (StatusCode, HashMap<String, String>, String) {
    let url = format!(
        "{}/{}/oauth2/v2.0/authorize",
        sim.base_url(),
        sim.tenant_id()
    );
    let page = c.get(&url).query(params).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Adele Vance") && html.contains(DEMO_PASSWORD),
        "login page lists demo users and the password"
    );
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("login", login));
    form.push(("passwd", password));
    let r = c.post(&url).form(&form).send().await.unwrap();
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.text().await.unwrap();
    let q = loc
        .map(|l| {
            url::Url::parse(&l)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    (status, q, body)
}

async fn jwks(c: &reqwest::Client, sim: &TenantSim) -> Jwks {
    c.get(format!(
        "{}/{}/discovery/v2.0/keys",
        sim.base_url(),
        sim.tenant_id()
    ))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

fn verify_id_token(token: &str, jwks: &Jwks, issuer: &str) -> IdClaims {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let k = jwks
        .keys
        .iter()
        .find(|k| Some(&k.kid) == header.kid.as_ref())
        .expect("kid in JWKS");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[DEMO_CLIENT_ID]);
    v.set_issuer(&[issuer]);
    jsonwebtoken::decode::<IdClaims>(
        token,
        &DecodingKey::from_rsa_components(&k.n, &k.e).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

#[tokio::test]
async fn auth_code_with_pkce_refresh_rotation_and_id_token() {
    let sim = sim().await;
    let c = http();
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:53111/callback";
    let scope = "openid profile offline_access User.Read Presence.Read.All";
    let params = [
        ("client_id", DEMO_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", redirect),
        ("scope", scope),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // Wrong password: the page again with AADSTS50126, no redirect.
    let (status, q, body) = browser_sign_in(&c, &sim, &params, ADELE, "wrong").await;
    assert_eq!(status, StatusCode::OK);
    assert!(q.is_empty());
    assert!(body.contains("AADSTS50126"));

    let (status, q, _) = browser_sign_in(&c, &sim, &params, ADELE, DEMO_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(q["state"], "st-123");
    let token_url = format!("{}/{}/oauth2/v2.0/token", sim.base_url(), sim.tenant_id());
    // Wrong verifier: refused (and the code is burnt).
    let r = c
        .post(&token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("code", &q["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", "not-the-verifier"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant");
    assert_eq!(e["error_codes"], json!([501481]));

    let (_, q, _) =
        browser_sign_in(&c, &sim, &params, "adelev@CONTOSO.example", DEMO_PASSWORD).await;
    let t: Value = c
        .post(&token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("code", &q["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(
        t["scope"],
        "User.Read Presence.Read.All openid profile offline_access"
    );
    let keys = jwks(&c, &sim).await;
    let id = verify_id_token(t["id_token"].as_str().unwrap(), &keys, &sim.authority());
    assert_eq!(id.nonce.as_deref(), Some("n-456"));
    assert_eq!(id.tid, sim.tenant_id());
    assert_eq!(id.preferred_username, ADELE);
    assert_eq!(id.ver, "2.0");
    // The access token works against Graph.
    let me: Value = c
        .get(format!("{}/me", sim.graph_url()))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], id.oid);

    // Refresh gives a new refresh token; as at Entra, the old one stays valid (#13 item 16).
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let t2: Value = c
        .post(&token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
            ("refresh_token", &rt1),
            (
                "scope",
                "api://switchboard-router/access_as_user offline_access",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    assert_eq!(
        t2["scope"],
        "api://switchboard-router/access_as_user offline_access"
    );
    // The router token carries the user's app roles.
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(
                t2["access_token"]
                    .as_str()
                    .unwrap()
                    .split('.')
                    .nth(1)
                    .unwrap(),
            )
            .unwrap(),
    )
    .unwrap();
    // v2.0 tokens name the API by its client id (#13 item 14).
    assert_eq!(payload["aud"], switchboard_tenant_sim::ROUTER_API_CLIENT_ID);
    assert_eq!(payload["ver"], "2.0");
    assert_eq!(payload["roles"], json!(["Agent"]));
    let r = c
        .post(&token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
            ("refresh_token", &rt1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the redeemed refresh token still works"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn authorize_refuses_unknown_apps_and_foreign_redirects() {
    let sim = sim().await;
    let c = http();
    let url = format!(
        "{}/{}/oauth2/v2.0/authorize",
        sim.base_url(),
        sim.tenant_id()
    );
    let r = c
        .get(&url)
        .query(&[
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("AADSTS700016"));
    let r = c
        .get(&url)
        .query(&[
            ("client_id", DEMO_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "https://evil.example/cb"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("AADSTS50011"));
    // A bad scope goes back to the (trusted) redirect URI as an OAuth error.
    let r = c
        .get(&url)
        .query(&[
            ("client_id", DEMO_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost:5000/cb"),
            ("scope", "Mail.Send"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with("http://localhost:5000/cb?error=invalid_scope"),
        "{loc}"
    );
    assert!(loc.contains("state=s"));
    sim.shutdown().await;
}

#[tokio::test]
async fn device_code_pending_slow_down_approved_and_expired() {
    let sim = sim().await;
    let c = http();
    let dc = start_device_code(&c, &sim).await;
    assert_eq!(
        dc["verification_uri"],
        format!("{}/devicelogin", sim.base_url())
    );
    assert_eq!(dc["interval"], 5);
    assert!(dc["message"]
        .as_str()
        .unwrap()
        .contains(dc["user_code"].as_str().unwrap()));
    let poll = || poll_device_code(&c, &sim, &dc);
    let (s1, b1) = poll().await;
    assert_eq!(
        (s1, b1["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending"))
    );
    let (_, b2) = poll().await;
    assert_eq!(b2["error"], "slow_down");
    // The person enters the code on /devicelogin.
    assert!(approve_device_code(&c, &sim, &dc)
        .await
        .contains("signed in"));
    let (s3, b3) = poll().await;
    assert_eq!(s3, StatusCode::OK, "{b3}");
    assert!(b3["refresh_token"].is_string() && b3["id_token"].is_string());

    // A second device code expires after 15 minutes of the simulator's clock.
    let dc2: Value = c
        .post(format!(
            "{}/{}/oauth2/v2.0/devicecode",
            sim.base_url(),
            sim.tenant_id()
        ))
        .form(&[("client_id", DEMO_CLIENT_ID), ("scope", "User.Read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    c.post(format!("{}/_sim/clock/advance", sim.base_url()))
        .json(&json!({"seconds": 901}))
        .send()
        .await
        .unwrap();
    let (_, e) = poll_device_code(&c, &sim, &dc2).await;
    assert_eq!(e["error"], "expired_token");
    assert_eq!(e["error_codes"], json!([70020]));
    sim.shutdown().await;
}

#[tokio::test]
async fn graph_requires_a_valid_graph_token() {
    let sim = sim().await;
    let c = http();
    let r = c
        .get(format!("{}/me", sim.graph_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "InvalidAuthenticationToken");
    assert!(e["error"]["innerError"]["request-id"].is_string());
    // A router token is not a Graph token.
    let router = sim
        .mint_access_token(ADELE, &["api://switchboard-router/access_as_user"])
        .unwrap();
    let r = c
        .get(format!("{}/me", sim.graph_url()))
        .bearer_auth(&router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A tampered token fails the signature check.
    let good = sim.mint_access_token(ADELE, &["User.Read"]).unwrap();
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["oid"] = json!("00000000-0000-0000-0000-000000000000");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let r = c
        .get(format!("{}/me", sim.graph_url()))
        .bearer_auth(parts.join("."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Missing scope: 403.
    let r = c
        .get(format!("{}/users", sim.graph_url()))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Expired by the simulator's clock.
    c.post(format!("{}/_sim/clock/advance", sim.base_url()))
        .json(&json!({"seconds": 3601}))
        .send()
        .await
        .unwrap();
    let r = c
        .get(format!("{}/me", sim.graph_url()))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}

#[tokio::test]
async fn users_search_filter_paging_photo() {
    let sim = sim().await;
    let c = http();
    let t = sim
        .mint_access_token(ADELE, &["User.ReadBasic.All"])
        .unwrap();
    let g = sim.graph_url();
    let r = c
        .get(format!("{g}/users"))
        .query(&[("$search", "\"displayName:wa\"")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "Request_UnsupportedQuery");
    let v: Value = c
        .get(format!("{g}/users"))
        .query(&[
            ("$search", "\"displayName:wa\""),
            ("$count", "true"),
            ("$orderby", "displayName"),
        ])
        .header("ConsistencyLevel", "eventual")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["@odata.count"], 2);
    assert_eq!(v["value"][0]["displayName"], "Ben Walters");
    let v: Value = c
        .get(format!("{g}/users"))
        .query(&[
            ("$filter", "department eq 'Technical Support'"),
            ("$select", "id,displayName,department,jobTitle"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = v["value"].as_array().unwrap().len();
    assert!(n >= 6, "{v}");
    assert!(v["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["department"] == "Technical Support" && u.get("mail").is_none()));
    // Paging: 50 users in pages of 15 through @odata.nextLink.
    let mut url = format!("{g}/users?$top=15");
    let mut seen = Vec::new();
    loop {
        let page: Value = c
            .get(&url)
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 50);
    let r = c
        .get(format!("{g}/users?$top=1000"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Photos: SVG for most, 404 ImageNotFound for some.
    let users = sim.users();
    let r = c
        .get(format!("{g}/users/{}/photo/$value", users[0].id))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let no_photo = users.iter().find(|u| !u.has_photo).unwrap();
    let r = c
        .get(format!("{g}/users/{}/photo/$value", no_photo.id))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "ImageNotFound");
    // Skills only on a single user.
    let u: Value = c
        .get(format!(
            "{g}/users/{}?$select=displayName,skills",
            users[0].id
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["skills"], json!(["billing", "english", "french"]));
    // Someone else's skills are outside the basic profile: null with User.ReadBasic.All,
    // there with User.Read.All.
    let other = users
        .iter()
        .find(|u| u.user_principal_name == "MeganB@contoso.example")
        .unwrap();
    let skills_of = |token: String| {
        let c = c.clone();
        let url = format!("{g}/users/{}?$select=id,skills", other.id);
        async move {
            let u: Value = c
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            u["skills"].clone()
        }
    };
    assert_eq!(skills_of(t.clone()).await, Value::Null);
    let full = sim.mint_access_token(ADELE, &["User.Read.All"]).unwrap();
    assert_eq!(
        skills_of(full).await,
        json!(["escalations", "english", "spanish"])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn presence_get_batch_set_aggregate_and_throttle() {
    let sim = sim().await;
    let c = http();
    let g = sim.graph_url();
    let users = sim.users();
    let adele = &users[0];
    let t = sim
        .mint_access_token(ADELE, &["Presence.Read.All", "Presence.ReadWrite"])
        .unwrap();
    let me: Value = c
        .get(format!("{g}/me/presence"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["availability"], "Available");
    let dnd = users
        .iter()
        .find(|u| u.seed_presence == Some(("DoNotDisturb", "Presenting")))
        .unwrap();
    let p: Value = c
        .get(format!("{g}/users/{}/presence", dnd.id))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (p["availability"].as_str(), p["activity"].as_str()),
        (Some("DoNotDisturb"), Some("Presenting"))
    );

    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let v: Value = c
        .post(format!("{g}/communications/getPresencesByUserId"))
        .bearer_auth(&t)
        .json(&json!({ "ids": ids }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 50);
    let too_many: Vec<String> = (0..651)
        .map(|i| uuid::Uuid::from_u128(i).to_string())
        .collect();
    let r = c
        .post(format!("{g}/communications/getPresencesByUserId"))
        .bearer_auth(&t)
        .json(&json!({ "ids": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(format!("{g}/communications/getPresencesByUserId"))
        .bearer_auth(&t)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let set = |body: Value| {
        c.post(format!("{g}/users/{}/presence/setPresence", adele.id))
            .bearer_auth(&t)
            .json(&body)
            .send()
    };
    let r = set(json!({"sessionId": DEMO_CLIENT_ID, "availability": "Busy", "activity": "Busy"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = set(json!({"sessionId": DEMO_CLIENT_ID, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT4H1M"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = set(json!({"sessionId": DEMO_CLIENT_ID, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = c
        .get(format!("{g}/me/presence"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["availability"].as_str(), me["activity"].as_str()),
        (Some("Busy"), Some("InACall"))
    );
    // Teams shows DoNotDisturb: the stronger session wins.
    c.post(format!(
        "{}/_sim/users/{}/presence",
        sim.base_url(),
        adele.id
    ))
    .json(&json!({"availability": "DoNotDisturb", "activity": "Presenting"}))
    .send()
    .await
    .unwrap();
    let me: Value = c
        .get(format!("{g}/me/presence"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["availability"], "DoNotDisturb");
    // User-preferred beats all.
    let r = c
        .post(format!("{g}/me/presence/setUserPreferredPresence"))
        .bearer_auth(&t)
        .json(&json!({"availability": "Away", "activity": "Away"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = c
        .get(format!("{g}/me/presence"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["availability"], "Away");
    // Status message shows for self with publishedDateTime, for others without.
    let r = c.post(format!("{g}/me/presence/setStatusMessage")).bearer_auth(&t).json(&json!({"statusMessage": {"message": {"content": "On the phones", "contentType": "text"}}})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = c
        .get(format!("{g}/me/presence"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["statusMessage"]["message"]["content"], "On the phones");
    assert!(me["statusMessage"]["publishedDateTime"].is_string());
    // Another user's presence cannot be set with a delegated token.
    let r = c.post(format!("{g}/users/{}/presence/setPresence", dnd.id)).bearer_auth(&t).json(&json!({"sessionId": DEMO_CLIENT_ID, "availability": "Available", "activity": "Available"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The throttle switch: 429 with Retry-After for two calls, then normal again.
    c.post(format!("{}/_sim/throttle", sim.base_url()))
        .json(&json!({"enabled": true, "retry_after": 7, "count": 2}))
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        let r = c
            .get(format!("{g}/me/presence"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "7");
    }
    assert_eq!(
        c.get(format!("{g}/me/presence"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    sim.shutdown().await;
}

#[derive(Clone, Default)]
struct Hook {
    validations: Arc<Mutex<Vec<String>>>,
    notifications: Arc<Mutex<Vec<Value>>>,
    tx: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
}

async fn hook(
    State(h): State<Hook>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if let Some(tok) = q.get("validationToken") {
        h.validations.lock().unwrap().push(tok.clone());
        return (StatusCode::OK, tok.clone());
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    h.notifications.lock().unwrap().push(v.clone());
    if let Some(tx) = &h.tx {
        let _ = tx.send(v);
    }
    (StatusCode::ACCEPTED, String::new())
}

#[tokio::test]
async fn subscription_validation_delivery_and_lifecycle() {
    let sim = sim().await;
    let c = http();
    let g = sim.graph_url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = Hook {
        tx: Some(tx),
        ..Hook::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(h.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = sim
        .mint_access_token(ADELE, &["Presence.Read.All"])
        .unwrap();
    let users = sim.users();
    let watched = &users[5];
    let exp = time::OffsetDateTime::now_utc() + time::Duration::minutes(59);
    let exp_s = exp
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({
        "changeType": "updated",
        "notificationUrl": hook_url,
        "lifecycleNotificationUrl": hook_url,
        "resource": format!("/communications/presences?$filter=id in ('{}','{}')", watched.id, users[6].id),
        "expirationDateTime": exp_s,
        "clientState": "secret-state",
    });
    // More than an hour is refused.
    let mut too_long = body.clone();
    too_long["expirationDateTime"] = json!((time::OffsetDateTime::now_utc()
        + time::Duration::minutes(90))
    .format(&time::format_description::well_known::Rfc3339)
    .unwrap());
    assert_eq!(
        c.post(format!("{g}/subscriptions"))
            .bearer_auth(&t)
            .json(&too_long)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );

    let r = c
        .post(format!("{g}/subscriptions"))
        .bearer_auth(&t)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let sub: Value = r.json().await.unwrap();
    assert_eq!(sub["clientState"], "secret-state");
    let vals = h.validations.lock().unwrap().clone();
    assert_eq!(vals.len(), 1, "one validation (lifecycle URL is the same)");
    assert!(vals[0].starts_with("Validation: Testing client application reachability"));

    // A Teams change of a watched user arrives with clientState.
    c.post(format!(
        "{}/_sim/users/{}/presence",
        sim.base_url(),
        watched.id
    ))
    .json(&json!({"availability": "Busy", "activity": "InAMeeting"}))
    .send()
    .await
    .unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let item = &n["value"][0];
    assert_eq!(item["clientState"], "secret-state");
    assert_eq!(item["subscriptionId"], sub["id"]);
    assert_eq!(item["resourceData"]["id"], watched.id);
    assert_eq!(
        item["resourceData"]["@odata.type"],
        "#microsoft.graph.presence"
    );

    // Lifecycle: reauthorizationRequired on demand.
    c.post(format!(
        "{}/_sim/subscriptions/{}/lifecycle",
        sim.base_url(),
        sub["id"].as_str().unwrap()
    ))
    .json(&json!({"lifecycleEvent": "reauthorizationRequired"}))
    .send()
    .await
    .unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n["value"][0]["lifecycleEvent"], "reauthorizationRequired");

    // Renew, then delete.
    let r = c
        .patch(format!("{g}/subscriptions/{}", sub["id"].as_str().unwrap()))
        .bearer_auth(&t)
        .json(&json!({"expirationDateTime": exp_s}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .delete(format!("{g}/subscriptions/{}", sub["id"].as_str().unwrap()))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(format!("{g}/subscriptions/{}", sub["id"].as_str().unwrap()))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // An endpoint that does not echo the token fails validation.
    let r = c.post(format!("{g}/subscriptions")).bearer_auth(&t).json(&json!({
        "changeType": "updated", "notificationUrl": format!("{}/_sim/info", sim.base_url()),
        "resource": format!("/communications/presences?$filter=id in ('{}')", watched.id), "expirationDateTime": exp_s,
    })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    server.abort();
    sim.shutdown().await;
}

async fn failing_hook(Query(q): Query<HashMap<String, String>>) -> (StatusCode, String) {
    match q.get("validationToken") {
        Some(tok) => (StatusCode::OK, tok.clone()),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "down".into()),
    }
}

/// Graph tries a failed delivery again and then drops it; for presence it sends no `missed`
/// lifecycle notification, and it refuses to pretend otherwise.
#[tokio::test]
async fn failed_delivery_is_retried_then_dropped_without_a_missed_notification() {
    let sim = sim().await;
    let c = http();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = Hook {
        tx: Some(tx),
        ..Hook::default()
    };
    let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = tries.clone();
    let app = axum::Router::new()
        .route("/life", post(hook))
        .with_state(h)
        .route(
            "/fail",
            post(move |q: Query<HashMap<String, String>>| {
                let counted = counted.clone();
                async move {
                    if q.get("validationToken").is_none() {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    failing_hook(q).await
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let t = sim
        .mint_access_token(ADELE, &["Presence.Read.All"])
        .unwrap();
    let watched = sim.users()[7].id.clone();
    let exp = (time::OffsetDateTime::now_utc() + time::Duration::minutes(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = c
        .post(format!("{}/subscriptions", sim.graph_url()))
        .bearer_auth(&t)
        .json(&json!({
            "changeType": "updated", "notificationUrl": format!("{base}/fail"), "lifecycleNotificationUrl": format!("{base}/life"),
            "resource": format!("/communications/presences?$filter=id in ('{watched}')"), "expirationDateTime": exp, "clientState": "cs",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let sub: Value = r.json().await.unwrap();
    c.post(format!("{}/_sim/users/{watched}/presence", sim.base_url()))
        .json(&json!({"availability": "Away", "activity": "Away"}))
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tries.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery was tried {} times, not 3",
            tries.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // No lifecycle notification announces the loss, and no fourth try comes.
    let life = tokio::time::timeout(std::time::Duration::from_secs(3), rx.recv()).await;
    assert!(life.is_err(), "unexpected lifecycle notification: {life:?}");
    assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
    // `missed` and `subscriptionRemoved` do not exist for presence subscriptions.
    for event in ["missed", "subscriptionRemoved"] {
        let r = c
            .post(format!(
                "{}/_sim/subscriptions/{}/lifecycle",
                sim.base_url(),
                sub["id"].as_str().unwrap()
            ))
            .json(&json!({ "lifecycleEvent": event }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{event}");
    }
    server.abort();
    sim.shutdown().await;
}

/// #13 item 12: Graph's continuous access evaluation reaches only apps that declare the `cp1`
/// capability (`xms_cc` in the token request's `claims`): their older tokens get a claims
/// challenge once the user's sessions are revoked; other apps' tokens are honoured until they
/// expire, as at Microsoft.
#[tokio::test]
async fn claims_challenges_reach_only_apps_that_declare_cp1() {
    let sim = sim().await;
    let c = http();
    let dc = start_device_code(&c, &sim).await;
    approve_device_code(&c, &sim, &dc).await;
    let token_url = format!("{}/{}/oauth2/v2.0/token", sim.base_url(), sim.tenant_id());
    let (_, first) = poll_device_code(&c, &sim, &dc).await;
    let rt = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |claims: Option<&'static str>| {
        let (c, url, rt) = (c.clone(), token_url.clone(), rt.clone());
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("client_id", DEMO_CLIENT_ID.to_owned()),
                ("refresh_token", rt),
                ("scope", "User.Read".to_owned()),
            ];
            if let Some(cl) = claims {
                form.push(("claims", cl.to_owned()));
            }
            let t: Value = c
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            t["access_token"].as_str().unwrap().to_owned()
        }
    };
    let plain = refresh(None).await;
    let cae = refresh(Some(r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#)).await;
    let payload = |t: &str| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(payload(&cae)["xms_cc"], json!(["cp1"]));
    assert!(payload(&plain).get("xms_cc").is_none());
    sim.clock().advance(std::time::Duration::from_secs(2));
    sim.revoke_sessions(ADELE).unwrap();
    let me = |t: String| {
        let c = c.clone();
        let url = format!("{}/me", sim.graph_url());
        async move { c.get(url).bearer_auth(t).send().await.unwrap() }
    };
    let r = me(cae).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(www.contains("insufficient_claims"), "{www}");
    assert_eq!(me(plain).await.status(), StatusCode::OK);
    sim.shutdown().await;
}
