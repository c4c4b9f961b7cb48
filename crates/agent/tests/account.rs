//! `switchboard-agent login | whoami | logout | presence` against the simulated tenant
//! (`switchboard-tenant-sim`, in this process on 127.0.0.1): device code with the test as
//! the person on the code page, the browser flow through `$BROWSER`, presence set and read
//! through Graph, sign-out.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use switchboard_tenant_sim::{Config, TenantSim, DEMO_CLIENT_ID, DEMO_PASSWORD};

const AGENT: &str = env!("CARGO_BIN_EXE_switchboard-agent");

/// Tests that point this process's environment at their folders take turns.
static PROCESS_ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
const USER: &str = "AlexW@contoso.example";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(AGENT);
        c.arg("--json")
            .args(args)
            .env("SWITCHBOARD_CONFIG_DIR", self.dir.path().join("config"))
            .env("SWITCHBOARD_DATA_DIR", self.dir.path().join("data"))
            // The keychain has its own test (crates/identity/tests/keychain.rs); here the
            // key file, whatever session bus the machine has.
            .env("SWITCHBOARD_TOKEN_KEY", "file")
            .env_remove("BROWSER")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Points this process at the folders, for tests that use the library in process; the
    /// guard keeps other such tests waiting.
    fn in_process(&self) -> std::sync::MutexGuard<'static, ()> {
        let guard = PROCESS_ENV.lock().unwrap_or_else(|p| p.into_inner());
        std::env::set_var("SWITCHBOARD_CONFIG_DIR", self.dir.path().join("config"));
        std::env::set_var("SWITCHBOARD_DATA_DIR", self.data());
        std::env::set_var("SWITCHBOARD_TOKEN_KEY", "file");
        guard
    }
}

fn sim(rt: &tokio::runtime::Runtime) -> TenantSim {
    rt.block_on(TenantSim::start(Config {
        device_code_interval: Duration::from_secs(1),
        ..Config::default()
    }))
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The person on the device-code page: enters the code and signs in.
fn enter_code(uri: &str, code: &str, login: &str) {
    runtime()
        .block_on(switchboard_tenant_sim::enter_device_code(uri, code, login))
        .unwrap();
}

fn login_with_device_code(env: &Env, sim: &TenantSim, login: &str) -> serde_json::Value {
    login_with_device_code_and(env, sim, login, &[])
}

/// [`login_with_device_code`] with more arguments to `login`.
fn login_with_device_code_and(
    env: &Env,
    sim: &TenantSim,
    login: &str,
    more: &[&str],
) -> serde_json::Value {
    let authority = sim.authority();
    let mut args = vec![
        "login",
        "--device-code",
        "--authority",
        &authority,
        "--client-id",
        DEMO_CLIENT_ID,
    ];
    args.extend_from_slice(more);
    let mut child = env
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "device_code", "{first}");
    enter_code(
        first["verification_uri"].as_str().unwrap(),
        first["user_code"].as_str().unwrap(),
        login,
    );
    let done: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    done
}

fn no_secret_in(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "a token in clear"
        );
    }
}

#[test]
fn device_code_login_whoami_presence_and_logout() {
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();

    // No tenant configured (#13 item 24): nothing is asked of whatever answers locally, and
    // the error says how to configure one.
    for args in [&["whoami"][..], &["login", "--device-code"][..]] {
        let out = env.run(args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no Microsoft 365 tenant is configured"),
            "{err}"
        );
        assert!(err.contains("tenant.toml"), "{err}");
    }

    let done = login_with_device_code(&env, &sim, USER);
    assert_eq!(done["event"], "signed_in", "{done}");
    assert_eq!(done["username"], USER);
    assert_eq!(done["tid"], sim.tenant_id());
    assert_eq!(done["key_storage"], "file");
    // The authority given was saved: later commands use it without flags.
    let tenant = std::fs::read_to_string(env.dir.path().join("config/tenant.toml")).unwrap();
    assert!(tenant.contains(&sim.authority()), "{tenant}");

    let me = env.json(&["whoami"]);
    assert_eq!(me["username"], USER);
    assert_eq!(me["tid"], sim.tenant_id());
    let oid = me["oid"].as_str().unwrap().to_owned();
    assert_eq!(me["id"], format!("{oid}.{}", sim.tenant_id()));

    // Own presence through Graph: set for this app's session (over what the seeded Teams
    // client shows), read back, cleared back to the Teams client's.
    sim.set_teams_presence(USER, Some(("Available", "Available")))
        .unwrap();
    let before = env.json(&["presence", "get"]);
    assert_eq!(before["availability"], "Available", "{before}");
    let p = env.json(&["presence", "set", "Busy", "InACall"]);
    assert_eq!(
        (p["availability"].as_str(), p["activity"].as_str()),
        (Some("Busy"), Some("InACall"))
    );
    let p = env.json(&["presence", "get"]);
    assert_eq!(p["id"], oid.as_str());
    assert_eq!(p["availability"], "Busy");
    let p = env.json(&["presence", "clear"]);
    assert_eq!(p, before);
    // Someone else's, as their Teams client set it.
    sim.set_teams_presence(
        "MeganB@contoso.example",
        Some(("DoNotDisturb", "Presenting")),
    )
    .unwrap();
    let p = env.json(&["presence", "get", "MeganB@contoso.example"]);
    assert_eq!(
        (p["availability"].as_str(), p["activity"].as_str()),
        (Some("DoNotDisturb"), Some("Presenting"))
    );
    // Bad input: an availability Graph does not have.
    let out = env.run(&["presence", "set", "Sleeping"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown availability"));

    // Tokens on disk are encrypted.
    no_secret_in(&env.data(), "eyJ");

    // Sign-out: the cache and its key are gone.
    let out = env.json(&["logout"]);
    assert_eq!(out["event"], "signed_out");
    assert!(
        std::fs::read_dir(env.data()).unwrap().next().is_none(),
        "data emptied"
    );
    let out = env.run(&["whoami"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not signed in"), "{err}");
    rt.block_on(sim.shutdown());
}

#[test]
fn browser_login_through_dollar_browser_with_two_accounts() {
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    // Point the tenant at the simulator once, by device code; then the browser flow.
    login_with_device_code(&env, &sim, USER);
    let page = env.dir.path().join("page.html");
    let browser = format!(
        "python3 {}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sim_browser.py")
            .display()
    );
    let out = env
        .command(&[
            "login",
            "--login-hint",
            "MeganB@contoso.example",
            "--timeout",
            "60",
        ])
        .env("BROWSER", &browser)
        .env("SIM_BROWSER_LOGIN", "MeganB@contoso.example")
        .env("SIM_BROWSER_PASSWORD", DEMO_PASSWORD)
        .env("SIM_BROWSER_PAGE", &page)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["username"], "MeganB@contoso.example");
    let shown = std::fs::read_to_string(&page).unwrap();
    assert!(shown.contains("You are signed in"), "{shown}");

    // Two accounts: each by name; sign-out of one keeps the other.
    let a = env.json(&["whoami", "--account", USER]);
    let b = env.json(&["whoami", "--account", "MeganB@contoso.example"]);
    assert_ne!(a["oid"], b["oid"]);
    env.json(&["logout", "--account", USER]);
    let left = env.json(&["whoami"]);
    assert_eq!(left["username"], "MeganB@contoso.example");
    let out = env.json(&["logout", "--all"]);
    assert_eq!(out["event"], "signed_out");
    assert!(!env.run(&["whoami"]).status.success());
    rt.block_on(sim.shutdown());
}

#[test]
fn a_wrong_authority_is_refused_before_anything_is_stored() {
    let env = Env::new();
    let out = env.run(&[
        "login",
        "--device-code",
        "--authority",
        "http://login.example.com/common/v2.0",
        "--client-id",
        DEMO_CLIENT_ID,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https"), "{err}");
    assert!(!env.dir.path().join("config/tenant.toml").exists());
    // An authority nobody answers at: offline, said so.
    let out = env.run(&[
        "login",
        "--device-code",
        "--authority",
        "http://127.0.0.1:9/common/v2.0",
        "--client-id",
        DEMO_CLIENT_ID,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(!env.dir.path().join("config/tenant.toml").exists());
}

#[test]
fn the_directory_finds_experts_with_live_presence_and_favourites() {
    use switchboard_agent::account::AccountSession;
    use switchboard_agent::directory::DirectoryQuery;
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    let q = |f: fn(&mut DirectoryQuery)| {
        let mut q = DirectoryQuery::default();
        f(&mut q);
        q
    };
    // Without read_skills (no User.Read.All, the basic profile only): people come without
    // skills, and a search by skill says what to do.
    login_with_device_code(&env, &sim, USER);
    {
        let _env = env.in_process();
        let session = AccountSession::new(&env.dir.path().join("config"));
        rt.block_on(async {
            let me = session.current().await.unwrap().expect("signed in");
            assert!(!me.reads_skills);
            let found = session
                .search_directory(&q(|q| q.text = Some("Megan".into())))
                .await
                .unwrap();
            let megan = found.iter().find(|p| p.display_name == "Megan Bowen");
            assert_eq!(megan.map(|p| p.skills.len()), Some(0), "{found:?}");
            let e = session
                .search_directory(&q(|q| q.skill = Some("german".into())))
                .await
                .unwrap_err();
            assert_eq!(e.code(), "skills_not_read");
            assert!(e.to_string().contains("User.Read.All"), "{e}");
        });
    }
    // Signed in again with --read-skills (saved in tenant.toml): sign-in asks for
    // User.Read.All and the directory reads skills.
    let done = login_with_device_code_and(&env, &sim, USER, &["--read-skills"]);
    assert_eq!(done["event"], "signed_in", "{done}");
    let tenant = std::fs::read_to_string(env.dir.path().join("config/tenant.toml")).unwrap();
    assert!(tenant.contains("read_skills = true"), "{tenant}");
    // The library reads the same folders as the CLI.
    let _env = env.in_process();
    let session = AccountSession::new(&env.dir.path().join("config"));
    rt.block_on(async {
        let me = session.current().await.unwrap().expect("signed in");
        assert_eq!(me.username.as_deref(), Some(USER));
        assert_eq!(me.key_storage, "file");
        assert!(me.reads_skills);
        let found = session
            .search_directory(&q(|q| q.text = Some("Megan".into())))
            .await
            .unwrap();
        let megan = found
            .iter()
            .find(|p| p.display_name == "Megan Bowen")
            .unwrap_or_else(|| panic!("{found:?}"))
            .clone();
        assert_eq!(megan.department.as_deref(), Some("Customer Service"));
        assert!(megan.skills.iter().any(|s| s == "escalations"), "{megan:?}");
        assert!(megan.presence.is_some());

        let it = session
            .search_directory(&q(|q| q.department = Some("IT".into())))
            .await
            .unwrap();
        assert!(!it.is_empty());
        assert!(it.iter().all(|p| p.department.as_deref() == Some("IT")));

        let german = session
            .search_directory(&q(|q| q.skill = Some("german".into())))
            .await
            .unwrap();
        assert!(german.iter().any(|p| p.display_name == "Lynne Robbins"));
        assert!(german
            .iter()
            .all(|p| p.skills.iter().any(|s| s == "german")));

        // Megan presents: not offered, and her dot says so.
        sim.set_teams_presence(
            "MeganB@contoso.example",
            Some(("DoNotDisturb", "Presenting")),
        )
        .unwrap();
        let available = session
            .search_directory(&q(|q| {
                q.department = Some("Customer Service".into());
                q.available_only = true;
            }))
            .await
            .unwrap();
        assert!(!available.is_empty());
        assert!(available
            .iter()
            .all(|p| p.presence.as_ref().unwrap().transferable));
        assert!(!available.iter().any(|p| p.id == megan.id));
        let dots = session
            .presences(std::slice::from_ref(&megan.id))
            .await
            .unwrap();
        assert_eq!(dots[0].availability, "DoNotDisturb");
        assert!(!dots[0].transferable);

        // Favourites come first and can be listed alone.
        session.set_favourite(&megan.id, true).await.unwrap();
        let cs = session
            .search_directory(&q(|q| q.department = Some("Customer Service".into())))
            .await
            .unwrap();
        assert_eq!(cs[0].id, megan.id);
        assert!(cs[0].favourite);
        let favs = session
            .search_directory(&q(|q| q.favourites_only = true))
            .await
            .unwrap();
        assert_eq!(favs.len(), 1);

        // Own status, as chosen in the window.
        let p = session
            .set_preferred_presence(Some("BeRightBack".into()))
            .await
            .unwrap();
        assert_eq!(p.availability, "BeRightBack");
        assert!(session
            .set_preferred_presence(Some("Sleeping".into()))
            .await
            .is_err());
        session.set_preferred_presence(None).await.unwrap();

        // Avatars for a page of the directory: photos as data: URLs (one JSON batch),
        // none for people without one.
        let page = session
            .search_directory(&DirectoryQuery::default())
            .await
            .unwrap();
        let ids: Vec<String> = page.iter().take(12).map(|p| p.id.clone()).collect();
        let photos = session.photos(&ids).await.unwrap();
        assert_eq!(photos.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), ids);
        for p in &photos {
            let has = sim.users().iter().any(|u| u.id == p.id && u.has_photo);
            match &p.data_url {
                Some(url) => {
                    assert!(has);
                    assert!(url.starts_with("data:image/svg+xml;base64,"), "{url}");
                }
                None => assert!(!has, "{} has a photo", p.id),
            }
        }
        assert!(photos.iter().any(|p| p.data_url.is_some()));

        session.sign_out().await.unwrap();
        assert_eq!(session.current().await.unwrap(), None);
        let e = session.my_presence().await.unwrap_err();
        assert_eq!(e.code(), "not_signed_in");
    });
    rt.block_on(sim.shutdown());
}

/// The link sends the signed-in person's router token; without one a router that checks
/// tokens is reported as wanting a sign-in, not as down.
#[test]
fn the_router_link_carries_the_router_token() {
    use switchboard_agent::account::{AccountRouterTokens, AccountSession};
    use switchboard_agent::{ConnectionState, LinkPolicy, RouterLink};
    use switchboard_router::config::{AuthMode, Config as RouterConfig};
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    login_with_device_code(&env, &sim, USER);
    let router_dir = tempfile::tempdir().unwrap();
    let router = rt.block_on(async {
        let mut config = RouterConfig::default();
        config.storage.data_dir = Some(router_dir.path().to_owned());
        config.auth.mode = AuthMode::Entra;
        config.auth.authority = sim.authority();
        config.auth.audiences = vec![switchboard_tenant_sim::ROUTER_API_CLIENT_ID.into()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        switchboard_router::Router::start_on(config, listener)
            .await
            .unwrap()
            .spawn()
    });
    let base = router.url().to_owned();
    let policy = LinkPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(300),
        ..LinkPolicy::default()
    };
    let wait_for = |link: &RouterLink, want: ConnectionState| {
        rt.block_on(async {
            let mut rx = link.subscribe();
            let seen =
                tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| s.state == want))
                    .await
                    .unwrap_or_else(|_| panic!("never {want:?}: {:?}", link.status()))
                    .unwrap()
                    .clone();
            seen
        })
    };
    // Nobody signed in: the router wants a sign-in.
    let anonymous = rt.block_on(async { RouterLink::spawn(base.clone(), policy.clone()) });
    let s = wait_for(&anonymous, ConnectionState::SignInRequired);
    assert!(s.last_error.unwrap().contains("Sign in with Microsoft"));
    drop(anonymous);

    // Alex's token for the router's API, from the account (tenant.toml's router_scope).
    let _env = env.in_process();
    let tenant = env.dir.path().join("config/tenant.toml");
    let text = std::fs::read_to_string(&tenant).unwrap();
    std::fs::write(
        &tenant,
        format!("{text}router_scope = \"api://switchboard-router/access_as_user\"\n"),
    )
    .unwrap();
    let session = std::sync::Arc::new(AccountSession::new(&env.dir.path().join("config")));
    let link = rt.block_on(async {
        RouterLink::spawn_with_tokens(
            base.clone(),
            policy.clone(),
            Some(std::sync::Arc::new(AccountRouterTokens(session.clone()))),
        )
    });
    wait_for(&link, ConnectionState::Connected);
    drop(link);
    rt.block_on(sim.shutdown());
}

/// `answer --teams-presence`: Busy / In a call in Teams while the call is up, cleared after.
/// `answer --teams-presence --ready --wrap-up 2`: Ready shows Available, the call Busy /
/// InACall, wrap-up keeps Busy for its 2 s, then Ready again, and the end clears the session.
#[test]
fn a_call_and_wrap_up_show_in_teams_presence() {
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    login_with_device_code(&env, &sim, USER);
    // Signed out of the Teams client: what Teams shows is this app's session alone.
    sim.set_teams_presence(USER, None).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let answering = env
        .command(&[
            "answer",
            "--bind",
            &bind,
            "--wait",
            "30",
            "--teams-presence",
            "--ready",
            "--wrap-up",
            "2",
            "--codec",
            "pcmu",
            "--rtp-ports",
            "40000-40999",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = |activity: &str| {
        for _ in 0..50 {
            let p = env.json(&["presence", "get"]);
            if p["activity"] == activity {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Teams never showed {activity}");
    };
    assert_eq!(until("Available")["availability"], "Available");
    let uri = format!("sip:agent@{bind}");
    let caller = env
        .command(&[
            "call",
            &uri,
            "--hangup-after",
            "3",
            "--codec",
            "pcmu",
            "--rtp-ports",
            "41000-41999",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(until("InACall")["availability"], "Busy");
    let out = answering.wait_with_output().unwrap();
    let _ = caller.wait_with_output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "work_state" && e["teams"]["synced"] == true)
        .collect();
    let states: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["state"].as_str().unwrap(),
                e["teams"]["activity"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("ready", Some("Available")),
            ("on_call", Some("InACall")),
            ("wrap_up", Some("InACall")),
            ("ready", Some("Available")),
            ("off_duty", None),
        ],
        "{events:#?}"
    );
    let wrap = events[2]["since_unix_ms"].as_u64().unwrap();
    let back = events[3]["since_unix_ms"].as_u64().unwrap();
    assert!(back - wrap >= 1_900, "wrap-up lasted {} ms", back - wrap);
    // After: the session is gone; signed out of Teams, the person shows offline.
    let p = env.json(&["presence", "get"]);
    assert_eq!(p["availability"], "Offline", "{p}");
    rt.block_on(sim.shutdown());
}

/// With a router that follows Teams presence (`[presence]`, webhooks from the simulated
/// tenant), the engine watches the people shown and the signed-in person through it: changes
/// arrive as events, dots are read from them, and without the router it reads Graph again.
#[test]
fn presence_comes_from_the_router_while_it_serves_it() {
    use switchboard_agent::settings::SettingsStore;
    use switchboard_agent::{Agent, LinkPolicy};
    use switchboard_router::config::Config as RouterConfig;
    const SERVICE: &str = "NestorW@contoso.example";
    const MEGAN: &str = "MeganB@contoso.example";
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    login_with_device_code(&env, &sim, USER);
    sim.set_teams_presence(MEGAN, Some(("Available", "Available")))
        .unwrap();
    sim.set_teams_presence(USER, Some(("Available", "Available")))
        .unwrap();
    let megan = sim.user_id(MEGAN).unwrap();
    let me = sim.user_id(USER).unwrap();

    // The router: its Graph service account signed in once by device code (graph-login).
    let router_dir = tempfile::tempdir().unwrap();
    let (base, router) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = RouterConfig::default();
        config.storage.data_dir = Some(router_dir.path().to_owned());
        config.presence.enabled = true;
        config.presence.authority = sim.authority();
        config.presence.client_id = DEMO_CLIENT_ID.into();
        config.presence.graph_url = sim.graph_url();
        config.presence.notification_url = format!("{base}/v1/graph/notifications");
        switchboard_router::presence::sign_in_service_account(
            router_dir.path(),
            &config.presence,
            |code| {
                let (uri, otc) = (code.verification_uri.clone(), code.user_code.clone());
                std::thread::spawn(move || enter_code(&uri, &otc, SERVICE));
            },
        )
        .await
        .unwrap();
        let router = switchboard_router::Router::start_on(config, listener)
            .await
            .unwrap()
            .spawn();
        (base, router)
    });

    let _env = env.in_process();
    let store = SettingsStore::at(env.dir.path().join("config/settings.toml"), base.clone());
    let policy = LinkPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(300),
        ..LinkPolicy::default()
    };
    rt.block_on(async {
        let agent = Agent::start(store, policy);
        let mut status = agent.subscribe_router();
        tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.presence))
            .await
            .unwrap_or_else(|_| panic!("router never served presence: {:?}", agent.router_status()))
            .unwrap();
        assert!(agent.presence_from_router());
        let mut events = agent.subscribe_presence();
        let next = |events: &mut tokio::sync::broadcast::Receiver<
            switchboard_agent::directory::PresenceInfo,
        >,
                    id: String,
                    availability: &'static str| {
            let events = events.resubscribe();
            async move {
                let mut events = events;
                tokio::time::timeout(Duration::from_secs(15), async {
                    loop {
                        let p = events.recv().await.unwrap();
                        if p.id == id && p.availability == availability {
                            return p;
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("no {availability} event for {id}"))
            }
        };

        // Own status message, then the first reads: answered at once (from Graph while the
        // router has not sent them), then sent by the router.
        agent
            .account()
            .set_status_message("Back at 3")
            .await
            .unwrap();
        let megan_first = next(&mut events, megan.clone(), "Available");
        let me_first = next(&mut events, me.clone(), "Available");
        let shown = agent.presences(std::slice::from_ref(&megan)).await.unwrap();
        assert_eq!(shown[0].availability, "Available");
        let mine = agent.my_presence().await.unwrap();
        assert_eq!(mine.id, me);
        megan_first.await;
        let mine = me_first.await;
        assert_eq!(
            mine.status_message.as_deref(),
            Some("Back at 3"),
            "{mine:?}"
        );

        // Megan starts presenting in Teams: an event, and the dot read from it.
        let presenting = next(&mut events, megan.clone(), "DoNotDisturb");
        sim.set_teams_presence(MEGAN, Some(("DoNotDisturb", "Presenting")))
            .unwrap();
        let e = presenting.await;
        assert_eq!(e.activity, "Presenting");
        assert!(!e.transferable);
        let shown = agent.presences(std::slice::from_ref(&megan)).await.unwrap();
        assert_eq!(shown[0].availability, "DoNotDisturb");
        assert!(!shown[0].transferable);
        // And the signed-in person's own change.
        let busy = next(&mut events, me.clone(), "Busy");
        sim.set_teams_presence(USER, Some(("Busy", "InACall")))
            .unwrap();
        busy.await;
        assert_eq!(agent.my_presence().await.unwrap().availability, "Busy");

        // The router goes away: presence is read from Graph again.
        router.stop().await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| !s.presence))
            .await
            .unwrap()
            .unwrap();
        assert!(!agent.presence_from_router());
        sim.set_teams_presence(MEGAN, Some(("Away", "Away")))
            .unwrap();
        let shown = agent.presences(std::slice::from_ref(&megan)).await.unwrap();
        assert_eq!(shown[0].availability, "Away");
    });
    drop(_env);
    rt.block_on(sim.shutdown());
}

/// The contact-center state in Teams through the engine's `WorkState`: each state's pair,
/// the session kept alive past Microsoft's 5-minute timeout, wrap-up and back, clearing at
/// the end, and a clear error (retried) when nobody is signed in.
#[test]
fn agent_states_set_teams_presence_and_keep_it_alive() {
    use switchboard_agent::account::AccountSession;
    use switchboard_agent::state::{SessionTiming, WorkState, WorkStateKind};
    use switchboard_graph::NotReadyReason;
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    login_with_device_code(&env, &sim, USER);
    sim.set_teams_presence(USER, None).unwrap();
    let _env = env.in_process();
    let shows = |a: &str, b: &str| Some((a.to_owned(), b.to_owned()));
    rt.block_on(async {
        let session = std::sync::Arc::new(AccountSession::new(&env.dir.path().join("config")));
        let work = WorkState::start(
            session.clone(),
            Duration::from_secs(1),
            SessionTiming {
                expiration: Duration::from_secs(5 * 60),
                renew_after: Duration::from_millis(500),
                retry_after: Duration::from_millis(500),
            },
        );
        let settled = |state: WorkStateKind, activity: Option<&'static str>| {
            let mut rx = work.subscribe();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    rx.wait_for(|v| {
                        v.state == state
                            && v.teams.synced
                            && v.teams.activity.as_deref() == activity
                    }),
                )
                .await
                .unwrap_or_else(|_| panic!("never {state:?} with {activity:?} in Teams"))
                .unwrap()
                .clone()
            }
        };
        work.set_ready();
        settled(WorkStateKind::Ready, Some("Available")).await;
        assert_eq!(sim.presence(USER), shows("Available", "Available"));
        // Eight minutes pass in the tenant in two steps, with renewals in between: still
        // Available (without them: AvailableIdle after 5 minutes, the session gone after
        // its 5-minute expiry).
        for _ in 0..2 {
            sim.clock().advance(Duration::from_secs(4 * 60));
            let advanced = sim.clock().now();
            sim.tick();
            // The engine renews on its own (every 500 ms here): wait for a renewal made after
            // the jump, on the tenant's clock (#13 item 28: no "should have renewed by now").
            tokio::time::timeout(Duration::from_secs(20), async {
                while sim
                    .app_session_refreshed_at(USER)
                    .is_none_or(|at| at < advanced)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("the presence session was never renewed after the clock moved");
        }
        assert_eq!(sim.presence(USER), shows("Available", "Available"));

        work.set_not_ready(NotReadyReason::Meeting);
        settled(WorkStateKind::NotReady, Some("Presenting")).await;
        assert_eq!(sim.presence(USER), shows("DoNotDisturb", "Presenting"));
        work.set_not_ready(NotReadyReason::Lunch);
        settled(WorkStateKind::NotReady, Some("Away")).await;
        assert_eq!(sim.presence(USER), shows("Away", "Away"));

        work.call_started(false);
        settled(WorkStateKind::OnCall, Some("InACall")).await;
        assert_eq!(sim.presence(USER), shows("Busy", "InACall"));
        let ended = work.call_ended(false);
        assert_eq!(ended.state, WorkStateKind::WrapUp);
        assert_eq!(sim.presence(USER), shows("Busy", "InACall"));
        // One second of wrap-up, then lunch again.
        let back = settled(WorkStateKind::NotReady, Some("Away")).await;
        assert_eq!(back.reason.as_deref(), Some("lunch"));
        assert_eq!(sim.presence(USER), shows("Away", "Away"));

        // Off duty clears the session: signed out of Teams, the person shows offline.
        work.set_off_duty();
        settled(WorkStateKind::OffDuty, None).await;
        assert_eq!(sim.presence(USER).unwrap().0, "Offline");

        // Nobody signed in: the state changes, Teams cannot follow, the reason is given.
        session.sign_out().await.unwrap();
        let mut changes = work.subscribe();
        work.set_ready();
        let failed = tokio::time::timeout(
            Duration::from_secs(10),
            changes.wait_for(|v| v.teams.error.is_some()),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert_eq!(failed.state, WorkStateKind::Ready);
        assert_eq!(failed.teams.error_code.as_deref(), Some("not_signed_in"));
        work.finish().await;
    });
    drop(_env);
    rt.block_on(sim.shutdown());
}

/// Graph's continuous access evaluation: the person's sessions are revoked in the tenant;
/// the next Graph call gets a claims challenge, no silent renewal can meet it, so the engine
/// says "sign in again" and keeps the claims; the next sign-in in the browser carries them,
/// and Graph answers again.
#[test]
fn a_revoked_session_asks_for_a_fresh_sign_in_with_the_claims() {
    use switchboard_agent::account::{AccountSession, SystemBrowser};
    let rt = runtime();
    let sim = sim(&rt);
    let env = Env::new();
    login_with_device_code(&env, &sim, USER);
    let page = env.dir.path().join("page.html");
    let _env = env.in_process();
    std::env::set_var(
        "BROWSER",
        format!(
            "python3 {}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sim_browser.py")
                .display()
        ),
    );
    std::env::set_var("SIM_BROWSER_LOGIN", USER);
    std::env::set_var("SIM_BROWSER_PASSWORD", DEMO_PASSWORD);
    std::env::set_var("SIM_BROWSER_PAGE", &page);
    rt.block_on(async {
        let session = AccountSession::new(&env.dir.path().join("config"));
        session.my_presence().await.unwrap();
        // Revoked a moment after the token was issued (tokens count whole seconds).
        sim.clock().advance(Duration::from_secs(2));
        assert!(sim.revoke_sessions(USER).unwrap() >= 1);

        let e = session.my_presence().await.unwrap_err();
        assert_eq!(e.code(), "sign_in_again", "{e}");
        let accounts = session.accounts().await.unwrap();
        let claims = accounts
            .pending_claims()
            .expect("the challenge's claims are kept");
        assert!(claims.contains(r#""nbf""#), "{claims}");

        session.sign_in(&SystemBrowser).await.unwrap();
        // The sign-in carries the challenge, with the app's cp1 capability merged in (#13
        // item 12: Graph challenges only apps that declare it).
        let sent: serde_json::Value =
            serde_json::from_str(&sim.last_sign_in_claims().unwrap()).unwrap();
        let asked: serde_json::Value = serde_json::from_str(&claims).unwrap();
        assert_eq!(sent["access_token"]["nbf"], asked["access_token"]["nbf"]);
        assert_eq!(
            sent["access_token"]["xms_cc"]["values"],
            serde_json::json!(["cp1"])
        );
        assert!(accounts.pending_claims().is_none());
        let p = session.my_presence().await.unwrap();
        assert!(!p.id.is_empty());
    });
    for v in [
        "BROWSER",
        "SIM_BROWSER_LOGIN",
        "SIM_BROWSER_PASSWORD",
        "SIM_BROWSER_PAGE",
    ] {
        std::env::remove_var(v);
    }
    drop(_env);
    rt.block_on(sim.shutdown());
}
