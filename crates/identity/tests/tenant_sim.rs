//! Sign-in against the simulated Microsoft tenant (`switchboard-tenant-sim`, in process on
//! 127.0.0.1): its discovery with the `{tenantid}` template, login page, device-code page,
//! token endpoint (PKCE, rotation), JWKS and AADSTS error bodies. The test plays the
//! browser's part over HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_identity::client::{Browser, ClientConfig, IdentityClient, Interactive};
use switchboard_identity::{EncryptedFile, IdentityError, TokenCache};
use switchboard_tenant_sim::{Config, TenantSim, DEMO_CLIENT_ID, DEMO_PASSWORD};

const USER: &str = "AdeleV@contoso.example";

async fn sim() -> TenantSim {
    TenantSim::start(Config {
        device_code_interval: Duration::from_secs(1),
        ..Config::default()
    })
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Plays the browser on the simulated login page: opens the authorize URL, signs in as
/// `user`, and follows the redirect to the app's loopback — after `tamper` had its way with
/// the redirect URL.
struct SimBrowser {
    user: String,
    password: String,
    tamper: fn(String) -> String,
    /// What the loopback page said.
    page: Arc<Mutex<Option<String>>>,
    /// The loopback's answer status.
    status: Arc<Mutex<Option<u16>>>,
}

impl SimBrowser {
    fn new(user: &str) -> Self {
        Self {
            user: user.into(),
            password: DEMO_PASSWORD.into(),
            tamper: |u| u,
            page: Arc::default(),
            status: Arc::default(),
        }
    }
}

impl Browser for SimBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        let (url, user, password, tamper, page, status) = (
            url.to_owned(),
            self.user.clone(),
            self.password.clone(),
            self.tamper,
            self.page.clone(),
            self.status.clone(),
        );
        tokio::spawn(async move {
            let c = http();
            let login_page = c.get(&url).send().await.unwrap();
            assert_eq!(login_page.status(), 200);
            let parsed = url::Url::parse(&url).unwrap();
            let mut form: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            form.push(("login".into(), user));
            form.push(("passwd".into(), password));
            let mut post_to = parsed.clone();
            post_to.set_query(None);
            let r = c.post(post_to).form(&form).send().await.unwrap();
            let Some(location) = r.headers().get("location") else {
                *page.lock().unwrap() = Some(r.text().await.unwrap_or_default());
                return;
            };
            let to = tamper(location.to_str().unwrap().to_owned());
            let answer = c.get(&to).send().await.unwrap();
            *status.lock().unwrap() = Some(answer.status().as_u16());
            let body = answer.text().await.unwrap();
            *page.lock().unwrap() = Some(body);
        });
        Ok(())
    }
}

async fn client(authority: String) -> IdentityClient {
    IdentityClient::discover(ClientConfig::new(authority, DEMO_CLIENT_ID))
        .await
        .unwrap()
}

fn graph_scopes() -> Vec<String> {
    vec!["User.Read".into(), "Presence.Read.All".into()]
}

#[tokio::test]
async fn auth_code_with_pkce_through_the_organizations_authority() {
    let sim = sim().await;
    // The multi-tenant authority: the issuer is a template filled from tid.
    let c = client(format!("{}/organizations/v2.0", sim.base_url())).await;
    assert!(c.metadata().issuer.contains("{tenantid}"));
    let browser = SimBrowser::new(USER);
    let req = Interactive {
        scopes: graph_scopes(),
        login_hint: Some(USER.into()),
        ..Default::default()
    };
    let s = c
        .sign_in_interactive(&req, &browser, std::future::pending())
        .await
        .unwrap();
    assert_eq!(s.account.username.as_deref(), Some(USER));
    assert_eq!(s.account.tid.as_deref(), Some(sim.tenant_id()));
    let oid = s.account.oid.clone().unwrap();
    assert_eq!(s.account.id, format!("{oid}.{}", sim.tenant_id()));
    assert!(s.tokens.refresh_token.is_some());
    assert!(s.tokens.scopes.iter().any(|x| x.ends_with("User.Read")));
    // The access token works against Graph.
    let me: serde_json::Value = http()
        .get(format!("{}/me", sim.graph_url()))
        .bearer_auth(s.tokens.access_token.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["userPrincipalName"], USER);
    let page = browser.page.lock().unwrap().clone().unwrap();
    assert!(page.contains("You are signed in"), "{page}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_redirect_with_the_wrong_state_is_refused_and_the_wait_goes_on() {
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let mut browser = SimBrowser::new(USER);
    browser.tamper = |u| {
        let mut url = url::Url::parse(&u).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .map(|(k, v)| {
                if k == "state" {
                    (k, "forged".into())
                } else {
                    (k, v)
                }
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    };
    // A redirect with another sign-in's state (a page aiming at the port) is answered 400 and
    // cannot end this sign-in: only the person (cancel) or the real redirect does.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let status = browser.status.clone();
    let watcher = tokio::spawn(async move {
        for _ in 0..400 {
            if let Some(s) = *status.lock().unwrap() {
                let _ = tx.send(());
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tx.send(());
        None
    });
    let e = c
        .sign_in_interactive(&Interactive::default(), &browser, async {
            let _ = rx.await;
        })
        .await
        .unwrap_err();
    assert_eq!(watcher.await.unwrap(), Some(400));
    assert!(matches!(e, IdentityError::Cancelled), "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_never_reaches_the_app_and_cancel_ends_the_wait() {
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let mut browser = SimBrowser::new(USER);
    browser.password = "wrong".into();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let page = browser.page.clone();
    tokio::spawn(async move {
        // The login page says why; then the person gives up in the app.
        for _ in 0..100 {
            if page.lock().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tx.send(());
    });
    let e = c
        .sign_in_interactive(&Interactive::default(), &browser, async {
            let _ = rx.await;
        })
        .await
        .unwrap_err();
    assert!(matches!(e, IdentityError::Cancelled), "{e}");
    let page = browser.page.lock().unwrap().clone().unwrap();
    assert!(page.contains("AADSTS50126"), "{page}");
    sim.shutdown().await;
}

#[tokio::test]
async fn device_code_end_to_end() {
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let code = c.start_device_code(&graph_scopes()).await.unwrap();
    assert!(code.verification_uri.ends_with("/devicelogin"));
    assert!(code
        .message
        .as_deref()
        .unwrap_or("")
        .contains(&code.user_code));
    // The person enters the code on another device, after the app has polled a while.
    let (uri, user_code) = (code.verification_uri.clone(), code.user_code.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        switchboard_tenant_sim::enter_device_code(&uri, &user_code, USER)
            .await
            .unwrap();
    });
    let s = c
        .finish_device_code(&code, std::future::pending())
        .await
        .unwrap();
    assert_eq!(s.account.username.as_deref(), Some(USER));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_declined_device_code_is_reported() {
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let code = c.start_device_code(&graph_scopes()).await.unwrap();
    let (uri, user_code) = (code.verification_uri.clone(), code.user_code.clone());
    tokio::spawn(async move {
        http()
            .post(&uri)
            .form(&[
                ("otc", user_code.as_str()),
                ("login", USER),
                ("passwd", DEMO_PASSWORD),
                ("decision", "decline"),
            ])
            .send()
            .await
            .unwrap();
    });
    let e = c
        .finish_device_code(&code, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(e, IdentityError::Refused { .. }), "{e}");
    sim.shutdown().await;
}

/// Entra ID hands out a new refresh token with every refresh and keeps the one presented
/// valid (no family revocation on reuse); revoking the user's sessions ends them all, and the
/// client then says to sign in again.
#[tokio::test]
async fn refresh_rotates_and_revoked_sessions_need_a_new_sign_in() {
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let s = c
        .sign_in_interactive(
            &Interactive {
                scopes: graph_scopes(),
                ..Default::default()
            },
            &SimBrowser::new(USER),
            std::future::pending(),
        )
        .await
        .unwrap();
    let rt1 = s.tokens.refresh_token.clone().unwrap();
    let r = c.refresh(&s.account, &rt1, &graph_scopes()).await.unwrap();
    let rt2 = r.tokens.refresh_token.clone().unwrap();
    assert_ne!(rt1, rt2, "rotated");
    assert_eq!(r.account, s.account);
    // The old one still works at Entra; the client stores the newest anyway.
    c.refresh(&s.account, &rt1, &graph_scopes()).await.unwrap();
    let oid = s.account.oid.clone().unwrap();
    let revoked = http()
        .post(format!("{}/_sim/users/{oid}/revoke", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let e = c
        .refresh(&s.account, &rt2, &graph_scopes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "sign_in_again", "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_cache_renews_silently_per_resource_and_survives_a_key_rotation() {
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(Box::new(EncryptedFile::new(dir.path().join("t.bin")))).unwrap();
    let s = c
        .sign_in_interactive(
            &Interactive {
                scopes: graph_scopes(),
                ..Default::default()
            },
            &SimBrowser::new(USER),
            std::future::pending(),
        )
        .await
        .unwrap();
    cache.store(&s).unwrap();
    let id = s.account.id.clone();
    let first = cache.token(&c, &id, &["User.Read".into()]).await.unwrap();
    assert_eq!(first, s.tokens.access_token, "cached");
    // The signing key rotates; an expired access token is renewed silently, and the new
    // id_token (new kid) passes after one refetch of the key set.
    let r = http()
        .post(format!("{}/_sim/keys/rotate", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    cache.expire_access_tokens(&id);
    let renewed = cache.token(&c, &id, &["User.Read".into()]).await.unwrap();
    assert_ne!(renewed, first);
    // Another resource: a token of its own from the same refresh token.
    let api = vec!["api://switchboard-router/access_as_user".to_string()];
    let router_token = cache.token(&c, &id, &api).await.unwrap();
    assert_ne!(router_token, renewed);
    assert_eq!(cache.token(&c, &id, &api).await.unwrap(), router_token);
    assert!(cache.remove(&id).unwrap());
    assert!(matches!(
        cache.token(&c, &id, &api).await,
        Err(IdentityError::NotSignedIn)
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn forged_altered_and_misdirected_id_tokens_are_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let sim = sim().await;
    let c = client(sim.authority()).await;
    let s = c
        .sign_in_interactive(
            &Interactive::default(),
            &SimBrowser::new(USER),
            std::future::pending(),
        )
        .await
        .unwrap();
    let id_token = s.tokens.id_token.clone().unwrap();
    let good = id_token.expose();
    assert!(c.check_id_token(good, None).await.is_ok());
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();

    // Altered claims, original signature.
    claims["preferred_username"] = "MeganB@contoso.example".into();
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    let e = c.check_id_token(&altered, None).await.unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");

    // alg: none.
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims.to_string())
    );
    let e = c.check_id_token(&none, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token", "{e}");

    // HMAC signed with the public key's bytes as the secret (the classic confusion).
    let hs = format!(
        "{}.{}.{}",
        B64.encode(r#"{"alg":"HS256","typ":"JWT","kid":"x"}"#),
        parts[1],
        parts[2]
    );
    let e = c.check_id_token(&hs, None).await.unwrap_err();
    assert!(e.to_string().contains("must not accept"), "{e}");

    // An access token (aud: Graph) offered as an id_token.
    let e = c
        .check_id_token(s.tokens.access_token.expose(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another application"), "{e}");

    // The nonce of another sign-in.
    let e = c
        .check_id_token(good, Some("another-nonce"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nonce"), "{e}");

    // A key the provider does not publish.
    let unknown_kid = format!(
        "{}.{}.{}",
        B64.encode(r#"{"alg":"RS256","typ":"JWT","kid":"not-published"}"#),
        parts[1],
        parts[2]
    );
    let e = c.check_id_token(&unknown_kid, None).await.unwrap_err();
    assert!(e.to_string().contains("does not publish"), "{e}");

    // Garbage.
    for junk in ["", "a.b", "a.b.c.d", "\u{0}"] {
        assert!(c.check_id_token(junk, None).await.is_err());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_app_unknown_to_the_tenant_is_told_to_ask_an_admin() {
    let sim = sim().await;
    let c = IdentityClient::discover(ClientConfig::new(
        sim.authority(),
        "00000000-1111-2222-3333-444444444444",
    ))
    .await
    .unwrap();
    let e = c.start_device_code(&graph_scopes()).await.unwrap_err();
    assert_eq!(e.code(), "ask_admin", "{e}");
    assert!(e.to_string().contains("AADSTS700016"), "{e}");
    // An authority that is not there: offline, said plainly.
    let e = IdentityClient::discover(ClientConfig::new(
        "http://127.0.0.1:9/x/v2.0",
        DEMO_CLIENT_ID,
    ))
    .await
    .unwrap_err();
    assert_eq!(e.code(), "identity_offline", "{e}");
    sim.shutdown().await;
}
