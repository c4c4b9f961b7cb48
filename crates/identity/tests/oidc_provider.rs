//! Sign-in against oidc-provider (npm, OpenID Certified; `tests/peers/oidc-provider`,
//! installed by tests/peers/install.sh) on 127.0.0.1: a standards provider that is not
//! Microsoft. The test plays the browser's part over HTTP — cookies, redirects and the
//! provider's forms — and the client under test does everything else for real.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_identity::client::{Browser, ClientConfig, IdentityClient, Interactive, SignIn};
use switchboard_identity::{EncryptedFile, IdentityError, TokenCache};

const USER: &str = "alex@example.test";
const PASSWORD: &str = "correct horse";

/// The provider, a child process; stops when dropped (its stdin closes, then a kill).
struct Provider {
    child: Child,
    _stdin: Option<ChildStdin>,
    issuer: String,
    client_id: String,
}

impl Provider {
    fn start(access_token_ttl: u32) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {} — run tests/peers/install.sh",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("OIDC_AT_TTL", access_token_ttl.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is not on PATH");
        let stdin = child.stdin.take();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep reading what else it prints, so that it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("oidc-provider did not start ({e}): {line:?}"));
        Self {
            child,
            _stdin: stdin,
            issuer: v["issuer"].as_str().unwrap().to_owned(),
            client_id: v["client_id"].as_str().unwrap().to_owned(),
        }
    }

    async fn client(&self) -> IdentityClient {
        let mut config = ClientConfig::new(&self.issuer, &self.client_id);
        config.redirect_host = "127.0.0.1".into();
        IdentityClient::discover(config).await.unwrap()
    }

    /// Puts a new signing key in front (the old one stays published).
    async fn rotate_keys(&self) -> String {
        let v: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/_test/rotate", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["kid"].as_str().unwrap().to_owned()
    }

    /// What the userinfo endpoint says of an access token: its `sub`, or the status.
    async fn userinfo(&self, access_token: &str) -> Result<String, u16> {
        let r = reqwest::Client::new()
            .get(format!("{}/me", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return Err(r.status().as_u16());
        }
        let v: serde_json::Value = r.json().await.unwrap();
        Ok(v["sub"].as_str().unwrap().to_owned())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser: a cookie jar, manual redirects, and the forms of the provider's pages.
#[derive(Clone)]
struct WebBrowser {
    http: reqwest::Client,
    cookies: Arc<Mutex<BTreeMap<String, String>>>,
    login: String,
    password: String,
    /// Changes the authorize URL before it is opened, or the redirect to the app.
    tamper_request: fn(String) -> String,
    tamper_redirect: fn(String) -> String,
    /// The last page shown: the app's loopback page at the end of a sign-in.
    page: Arc<Mutex<Option<String>>>,
}

impl WebBrowser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Arc::default(),
            login: USER.into(),
            password: PASSWORD.into(),
            tamper_request: |u| u,
            tamper_redirect: |u| u,
            page: Arc::default(),
        }
    }

    fn remember(&self, r: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for h in r.headers().get_all("set-cookie") {
            let Ok(h) = h.to_str() else { continue };
            let pair = h.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = h.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            if value.is_empty() || expired {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// GET or POST `url`, following redirects, until a page answers; returns its URL and body.
    async fn visit(
        &self,
        mut url: String,
        mut form: Option<Vec<(String, String)>>,
    ) -> (String, String) {
        for _ in 0..20 {
            let req = match form.take() {
                Some(f) => self.http.post(&url).form(&f),
                None => self.http.get(&url),
            };
            let r = req
                .header("cookie", self.cookie_header())
                .send()
                .await
                .unwrap();
            self.remember(&r);
            if r.status().is_redirection() {
                let location = r.headers()["location"].to_str().unwrap().to_owned();
                let next = url::Url::parse(&url)
                    .unwrap()
                    .join(&location)
                    .unwrap()
                    .to_string();
                url = if next.starts_with(&self_app_prefix(&next)) {
                    (self.tamper_redirect)(next)
                } else {
                    next
                };
                continue;
            }
            let body = r.text().await.unwrap();
            return (url, body);
        }
        panic!("too many redirects");
    }

    /// Fills in and submits the first form of `page` (at `at`): hidden fields as they are,
    /// `login`/`password`/`user_code` from `fill`.
    async fn submit(&self, at: &str, page: &str, fill: &[(&str, &str)]) -> (String, String) {
        let (action, mut fields) = first_form(page).unwrap_or_else(|| panic!("no form in {page}"));
        for (k, v) in fill {
            match fields.iter_mut().find(|(name, _)| name == k) {
                Some(f) => f.1 = (*v).to_owned(),
                None => fields.push(((*k).to_owned(), (*v).to_owned())),
            }
        }
        let to = url::Url::parse(at)
            .unwrap()
            .join(&action)
            .unwrap()
            .to_string();
        self.visit(to, Some(fields)).await
    }

    /// Signs in on the provider's login page and allows access on its consent page, until a
    /// page without a form (the app's loopback page, or the device flow's success page).
    async fn sign_in_from(&self, (mut at, mut page): (String, String)) -> String {
        for _ in 0..6 {
            if page.contains("name=\"password\"") {
                (at, page) = self
                    .submit(
                        &at,
                        &page,
                        &[("login", &self.login), ("password", &self.password)],
                    )
                    .await;
                if page.contains("incorrect") {
                    return page;
                }
            } else if page.contains("name=\"confirm\"") {
                (at, page) = self.submit(&at, &page, &[]).await;
            } else {
                return page;
            }
        }
        panic!("the sign-in did not finish: {page}");
    }
}

/// Redirects to the app's loopback (http://127.0.0.1:port/?code=…) are what a tamper hook
/// may change; the provider's own pages are on another port of the same host.
fn self_app_prefix(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    if u.query_pairs().any(|(k, _)| k == "code" || k == "error") && u.path() == "/" {
        url.to_owned()
    } else {
        "\u{0}".into()
    }
}

impl Browser for WebBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        let me = self.clone();
        let url = (self.tamper_request)(url.to_owned());
        tokio::spawn(async move {
            let first = me.visit(url, None).await;
            let last = me.sign_in_from(first).await;
            *me.page.lock().unwrap() = Some(last);
        });
        Ok(())
    }
}

/// The action and the named inputs of the first `<form>` in `html` (attribute values in
/// double quotes, as the provider writes them).
fn first_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let i = tag.find(&key)? + key.len();
        let j = tag[i..].find('"')? + i;
        Some(tag[i..j].replace("&amp;", "&"))
    };
    let head_end = form.find('>')?;
    let action = attr(&form[..head_end], "action")?;
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..tag_end];
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[tag_end..];
    }
    Some((action, fields))
}

/// An authorization request to a standards provider: refresh tokens come with
/// `offline_access` only when the person is asked for consent (OpenID Connect Core §11).
fn consent() -> Interactive {
    Interactive {
        prompt: Some("consent".into()),
        ..Default::default()
    }
}

/// An interactive sign-in through the test's browser, with consent; must succeed.
async fn signed_in(c: &IdentityClient) -> SignIn {
    c.sign_in_interactive(&consent(), &WebBrowser::new(), std::future::pending())
        .await
        .expect("sign-in at oidc-provider")
}

#[tokio::test]
async fn auth_code_with_pkce_end_to_end() {
    let op = Provider::start(3600);
    let c = op.client().await;
    assert_eq!(c.metadata().issuer, op.issuer);
    let browser = WebBrowser::new();
    let s = c
        .sign_in_interactive(&consent(), &browser, std::future::pending())
        .await
        .unwrap();
    assert_eq!(s.account.sub, "b3f1c2d4-alex");
    assert_eq!(s.account.username.as_deref(), Some(USER));
    assert_eq!(s.account.name.as_deref(), Some("Alex Wilber"));
    assert!(s.tokens.refresh_token.is_some(), "offline_access granted");
    // The access token is the provider's own and it accepts it.
    assert_eq!(
        op.userinfo(s.tokens.access_token.expose()).await,
        Ok("b3f1c2d4-alex".into())
    );
    let page = browser.page.lock().unwrap().clone().unwrap();
    assert!(page.contains("You are signed in"), "{page}");
}

#[tokio::test]
async fn device_code_end_to_end() {
    let op = Provider::start(3600);
    let c = op.client().await;
    let code = c.start_device_code(&[]).await.unwrap();
    assert!(!code.user_code.is_empty());
    // The person, on another device: the code page, the code, the confirmation, the login
    // and the consent.
    let browser = WebBrowser::new();
    let person = {
        let b = browser.clone();
        let (uri, user_code) = (code.verification_uri.clone(), code.user_code.clone());
        tokio::spawn(async move {
            let (at, page) = b.visit(uri, None).await;
            let (at, page) = b.submit(&at, &page, &[("user_code", &user_code)]).await;
            assert!(page.contains("deviceConfirmForm"), "{page}");
            let after_confirm = b.submit(&at, &page, &[]).await;
            b.sign_in_from(after_confirm).await
        })
    };
    let s = tokio::time::timeout(
        Duration::from_secs(60),
        c.finish_device_code(&code, std::future::pending()),
    )
    .await
    .expect("the device code was not redeemed within a minute")
    .unwrap();
    let last_page = person.await.unwrap();
    assert!(last_page.contains("Sign-in Success"), "{last_page}");
    assert_eq!(s.account.username.as_deref(), Some(USER));
    assert!(s.tokens.refresh_token.is_some());
    assert_eq!(
        op.userinfo(s.tokens.access_token.expose()).await,
        Ok("b3f1c2d4-alex".into())
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_is_refused() {
    let op = Provider::start(3600);
    let c = op.client().await;
    let s = signed_in(&c).await;
    let rt1 = s.tokens.refresh_token.clone().unwrap();
    let r = c.refresh(&s.account, &rt1, &[]).await.unwrap();
    let rt2 = r.tokens.refresh_token.clone().unwrap();
    assert_ne!(rt1, rt2, "a public client's refresh token rotates");
    assert_eq!(
        r.account, s.account,
        "the new id_token names the same person"
    );
    assert_ne!(r.tokens.access_token, s.tokens.access_token);
    let e = c.refresh(&s.account, &rt1, &[]).await.unwrap_err();
    assert_eq!(e.code(), "sign_in_again", "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_and_accepted() {
    let op = Provider::start(3600);
    let c = op.client().await;
    let s = signed_in(&c).await;
    let kid = op.rotate_keys().await;
    let r = c
        .refresh(&s.account, s.tokens.refresh_token.as_ref().unwrap(), &[])
        .await
        .unwrap();
    let id_token = r.tokens.id_token.clone().unwrap();
    let header = jsonwebtoken::decode_header(id_token.expose()).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(kid.as_str()),
        "signed with the new key"
    );
    // A fresh interactive sign-in also passes with the new key.
    let again = signed_in(&c).await;
    assert_eq!(again.account, s.account);
}

#[tokio::test]
async fn a_wrong_state_or_nonce_is_refused_and_nothing_is_stored() {
    let op = Provider::start(3600);
    let c = op.client().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(Box::new(EncryptedFile::new(dir.path().join("t.bin")))).unwrap();

    // A redirect with another state (a page aiming at the port) does not end the sign-in:
    // it is refused and the wait for the real one goes on.
    let mut browser = WebBrowser::new();
    browser.tamper_redirect = |u| replace_param(&u, "state", "forged-state");
    let waited = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.sign_in_interactive(&consent(), &browser, std::future::pending()),
    )
    .await;
    assert!(
        waited.is_err(),
        "the forged redirect ended the sign-in: {waited:?}"
    );

    // The provider signs whatever nonce the request carried: a request altered on its way
    // gives an id_token for another sign-in.
    let mut browser = WebBrowser::new();
    browser.tamper_request = |u| replace_param(&u, "nonce", "someone-elses-nonce");
    let e = c
        .sign_in_interactive(&consent(), &browser, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(e, IdentityError::InvalidToken(_)), "{e}");
    assert!(e.to_string().contains("nonce"), "{e}");

    assert!(cache.accounts().is_empty());
    assert!(!dir.path().join("t.bin").exists(), "nothing written");
}

#[tokio::test]
async fn a_wrong_password_stays_on_the_login_page() {
    let op = Provider::start(3600);
    let c = op.client().await;
    let mut browser = WebBrowser::new();
    browser.password = "wrong".into();
    let page = browser.page.clone();
    let cancel = async move {
        loop {
            if page.lock().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let e = c
        .sign_in_interactive(&consent(), &browser, cancel)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "sign_in_cancelled", "{e}");
    let page = browser.page.lock().unwrap().clone().unwrap();
    assert!(page.contains("incorrect"), "{page}");
}

#[tokio::test]
async fn an_expired_access_token_is_renewed_silently() {
    // Access tokens that live two seconds.
    let op = Provider::start(2);
    let c = op.client().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.bin");
    let cache = TokenCache::open(Box::new(EncryptedFile::new(&path))).unwrap();
    let s = signed_in(&c).await;
    cache.store(&s).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.userinfo(s.tokens.access_token.expose()).await,
        Err(401),
        "the first token expired"
    );
    let renewed = cache.token(&c, &s.account.id, &[]).await.unwrap();
    assert_ne!(renewed, s.tokens.access_token);
    assert_eq!(
        op.userinfo(renewed.expose()).await,
        Ok("b3f1c2d4-alex".into())
    );
    // The rotated refresh token was kept: a new cache over the same file renews again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reopened = TokenCache::open(Box::new(EncryptedFile::new(&path))).unwrap();
    let third = reopened.token(&c, &s.account.id, &[]).await.unwrap();
    assert_eq!(
        op.userinfo(third.expose()).await,
        Ok("b3f1c2d4-alex".into())
    );
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == name {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}
