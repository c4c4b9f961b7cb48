//! The real desktop window signs in with Microsoft — against the simulated tenant, in this
//! process on 127.0.0.1 — through the system browser (`$BROWSER`: a script that plays the
//! person on the login page), keeps the sign-in in a real Secret Service (gnome-keyring on a
//! private D-Bus bus), shows the account chip and live Teams presence, finds an expert in the
//! Directory and follows their presence, survives a restart signed in, and signs out, which
//! empties the keychain entry. Signed in, the window is her phone at a router that checks
//! the tenant's tokens (the demo contact center with `[auth] mode = "entra"`): with her router
//! token it gets SIP credentials and registers, and a queue call rings in the window and is
//! answered. Screenshots go to `artifacts/e2e/`.
//!
//! Run through `scripts/test.sh`; by hand:
//! `xvfb-run -a cargo test -p switchboard-e2e --test desktop_account -- --ignored --nocapture`.

use std::ffi::OsStr;
use std::time::Duration;

use std::process::Command;

use anyhow::{bail, Result};
use switchboard_e2e::pulse::PulseServer;
use switchboard_e2e::tones::tone_wav;
use switchboard_e2e::ui::{choose, click, css, gone, screenshot, wait_attr, wait_text, WAIT};
use switchboard_e2e::{
    eventually, free_port, free_udp_port, need_display, our_binary, workspace_root, Desktop,
    RouterProcess, SecretService,
};
use switchboard_tenant_sim::{
    Config, TenantSim, DEMO_CLIENT_ID, DEMO_PASSWORD, ROUTER_API, ROUTER_API_CLIENT_ID,
};

const USER: &str = "AdeleV@contoso.example";

/// The demo contact center (`crates/router/demo.toml`, SIP on a free port) checking the
/// simulated tenant's tokens; returns it and its SIP port.
async fn entra_router(sim: &TenantSim, work: &std::path::Path) -> Result<(RouterProcess, u16)> {
    let demo = std::fs::read_to_string(workspace_root().join("crates/router/demo.toml"))?;
    let tenant = format!("entra_tenant_id = \"{}\"", sim.tenant_id());
    if !demo.contains(&tenant) {
        bail!("crates/router/demo.toml changed: its tenant is not the simulated one ({tenant})");
    }
    let sip = free_udp_port()?;
    let config = work.join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"entra\"\nauthority = \"{}/organizations/v2.0\"\naudiences = [\"{ROUTER_API_CLIENT_ID}\"]\n\n{}",
            sim.base_url(),
            demo.replace("127.0.0.1:7760", &format!("127.0.0.1:{sip}"))
        ),
    )?;
    let logs = workspace_root().join("artifacts/e2e");
    std::fs::create_dir_all(&logs)?;
    let router = RouterProcess::start_with(
        free_port()?,
        &work.join("router-data"),
        &logs.join("router-account.log"),
        &[std::ffi::OsStr::new("--config"), config.as_os_str()],
    )
    .await?;
    Ok((router, sip))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the real window: needs an X display, tauri-driver, WebKitWebDriver and gnome-keyring (scripts/test.sh runs it)"]
async fn window_signs_in_with_microsoft_and_shows_live_presence() -> Result<()> {
    need_display()?;
    let work = tempfile::tempdir()?;
    let sim = TenantSim::start(Config::default()).await?;
    let keychain = SecretService::start(work.path()).await?;

    let config_dir = work.path().join("config");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&config_dir)?;
    let browser = format!(
        "python3 {}",
        workspace_root()
            .join("crates/agent/tests/fixtures/sim_browser.py")
            .display()
    );
    let page = work.path().join("browser-page.html");
    // The demo contact center, checking the tokens of the simulated tenant's people: the
    // window's phone is set up with the signed-in person's router token.
    let (router, sip) = entra_router(&sim, work.path()).await?;
    std::fs::write(
        config_dir.join("tenant.toml"),
        format!(
            "authority = \"{}\"\nclient_id = \"{DEMO_CLIENT_ID}\"\nrouter_scope = \"{ROUTER_API}/access_as_user\"\n",
            sim.authority()
        ),
    )?;
    let pulse = PulseServer::start()?;
    let pulse_server = pulse.server();
    let desktop = Desktop::start(
        &[
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_DATA_DIR", data_dir.as_os_str()),
            ("SWITCHBOARD_ROUTER_URL", OsStr::new(&router.url)),
            ("PULSE_SERVER", OsStr::new(&pulse_server)),
            ("SWITCHBOARD_LOG", OsStr::new("info")),
            ("DBUS_SESSION_BUS_ADDRESS", OsStr::new(&keychain.address)),
            ("BROWSER", OsStr::new(&browser)),
            ("SIM_BROWSER_LOGIN", OsStr::new(USER)),
            ("SIM_BROWSER_PASSWORD", OsStr::new(DEMO_PASSWORD)),
            ("SIM_BROWSER_PAGE", page.as_os_str()),
        ],
        "tauri-driver-account.log",
    )
    .await?;
    let key_entry = format!(
        "token-cache-key:{}",
        data_dir.join("token-cache.bin").display()
    );

    let c = desktop.open().await?;
    let result = async {
        // 1. Sign in through the browser: the chip shows the person.
        click(&c, r#"[data-testid="sign-in"]"#).await?;
        click(&c, r#"[data-testid="sign-in-browser"]"#).await?;
        wait_text(&c, r#"[data-testid="account-name"]"#, "Adele Vance").await?;
        let shown = std::fs::read_to_string(&page).unwrap_or_default();
        assert!(shown.contains("You are signed in"), "browser page: {shown}");
        assert!(
            keychain.lookup("switchboard", &key_entry)?.is_some(),
            "the token cache key is in the keychain"
        );
        screenshot(&c, "signed-in.png").await?;
        // With her token the window gets SIP credentials from the router and its phone
        // registers: the status bar says so.
        wait_attr(
            &c,
            r#"[data-testid="phone-registration"]"#,
            "data-state",
            "registered",
        )
        .await?;

        // 2. Her own presence follows what Teams shows.
        sim.set_teams_presence(USER, Some(("Busy", "InACall")))?;
        wait_attr(
            &c,
            r#"[data-testid="my-presence"]"#,
            "data-availability",
            "Busy",
        )
        .await?;

        // 3. The Directory finds Megan; her dot follows her Teams client.
        sim.set_teams_presence("MeganB@contoso.example", Some(("Available", "Available")))?;
        click(&c, r#"[data-testid="nav-directory"]"#).await?;
        let search = c.find(css(r#"[data-testid="dir-search"]"#)).await?;
        search.send_keys("Megan").await?;
        let megan =
            r#"[data-testid="person"][data-name="Megan Bowen"] [data-testid="presence-dot"]"#;
        wait_attr(&c, megan, "data-availability", "Available").await?;
        sim.set_teams_presence(
            "MeganB@contoso.example",
            Some(("DoNotDisturb", "Presenting")),
        )?;
        wait_attr(&c, megan, "data-availability", "DoNotDisturb").await?;
        // Her avatar: the photo from Graph (fetched in a JSON batch), else her initials.
        let has_photo = sim
            .users()
            .iter()
            .any(|u| u.user_principal_name == "MeganB@contoso.example" && u.has_photo);
        let avatar = if has_photo {
            r#"[data-testid="person"][data-name="Megan Bowen"] [data-testid="person-photo"]"#
        } else {
            r#"[data-testid="person"][data-name="Megan Bowen"] [data-testid="person-initials"]"#
        };
        eventually("Megan's avatar", WAIT, || async {
            c.find(css(avatar)).await?;
            Ok(Some(()))
        })
        .await?;
        screenshot(&c, "directory.png").await?;

        // 4. Her contact-center state is what Teams shows (her Teams client signed out, so
        //    this app's presence session is all there is).
        sim.set_teams_presence(USER, None)?;
        let teams_shows = |want: (&'static str, &'static str)| {
            let sim = &sim;
            eventually(
                "the tenant to show the agent state",
                WAIT,
                move || async move {
                    Ok((sim.presence(USER) == Some((want.0.into(), want.1.into()))).then_some(()))
                },
            )
        };
        choose(&c, r#"[data-testid="work-state"]"#, "ready").await?;
        teams_shows(("Available", "Available")).await?;
        wait_attr(
            &c,
            r#"[data-testid="work-teams"]"#,
            "data-availability",
            "Available",
        )
        .await?;
        choose(&c, r#"[data-testid="work-state"]"#, "not_ready:lunch").await?;
        teams_shows(("Away", "Away")).await?;
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "not_ready").await?;
        screenshot(&c, "work-state.png").await?;
        // 4b. Ready again: a call from the trunk's caller (key 1, billing) rings in the
        //     window, the phone set up with her token; she answers, and ends the wrap-up.
        choose(&c, r#"[data-testid="work-state"]"#, "ready").await?;
        let tone = work.path().join("caller.wav");
        tone_wav(&tone, 440.0, 8000, 10)?;
        let mut cmd = Command::new(our_binary("switchboard-agent")?);
        cmd.env("SWITCHBOARD_RTP_PORTS", "40000-59999")
            .args([
                "--json",
                "call",
                &format!("sip:+18005550100@127.0.0.1:{sip}"),
            ])
            .args(["--ring-timeout", "40", "--dtmf", "1", "--codec", "pcmu"])
            .args(["--hangup-after", "3"])
            .arg("--play")
            .arg(&tone);
        let caller = tokio::task::spawn_blocking(move || cmd.output());
        wait_text(&c, r#"[data-testid="incoming-queue"]"#, "billing").await?;
        click(&c, r#"[data-testid="answer"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-queue"]"#, "billing").await?;
        let out = caller.await??;
        if !out.status.success() {
            bail!("the caller: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The caller hung up: wrap-up, ended here (billing has no codes in the demo).
        wait_text(&c, r#"[data-testid="wrap-up-countdown"]"#, "left").await?;
        click(&c, r#"[data-testid="wrap-up-done"]"#).await?;
        gone(&c, r#"[data-testid="wrap-up"]"#).await?;

        // 5. Her sessions are revoked in the tenant (continuous access evaluation): Graph
        //    answers with a claims challenge, the window offers to sign in again, and that
        //    sign-in carries the claims.
        sim.clock().advance(Duration::from_secs(2));
        sim.revoke_sessions(USER)?;
        click(&c, r#"[data-testid="sign-in-again"]"#).await?;
        click(&c, r#"[data-testid="sign-in-browser"]"#).await?;
        eventually("the sign-in with the claims", WAIT, || async {
            Ok(sim
                .last_sign_in_claims()
                .filter(|c| c.contains("nbf"))
                .map(|_| ()))
        })
        .await?;
        eventually("the error to go", WAIT, || async {
            Ok(c.find_all(css(r#"[data-testid="account-error"]"#))
                .await?
                .is_empty()
                .then_some(()))
        })
        .await?;
        wait_text(&c, r#"[data-testid="account-name"]"#, "Adele Vance").await?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&c, "account-failure.png").await;
    }
    switchboard_e2e::ui::end_session(c).await;
    result?;

    // 6. Restart: still signed in, from the keychain-keyed cache; the new run starts off
    //    duty, and the presence session of the last one is gone (cleared at exit, or at
    //    this start if the last run was killed).
    let c = desktop.open().await?;
    let result = async {
        wait_text(&c, r#"[data-testid="account-name"]"#, "Adele Vance").await?;
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "off_duty").await?;
        eventually(
            "the last run's presence session to be cleared",
            WAIT,
            || async {
                Ok((sim.presence(USER).map(|p| p.0).as_deref() == Some("Offline")).then_some(()))
            },
        )
        .await?;
        // 7. Sign out: back to the button, and the keychain entry is gone.
        click(&c, r#"[data-testid="account-chip"]"#).await?;
        click(&c, r#"[data-testid="sign-out"]"#).await?;
        eventually("the sign-in button after sign-out", WAIT, || async {
            c.find(css(r#"[data-testid="sign-in"]"#)).await?;
            Ok(Some(()))
        })
        .await?;
        eventually("the keychain entry to be deleted", WAIT, || async {
            Ok(keychain
                .lookup("switchboard", &key_entry)?
                .is_none()
                .then_some(()))
        })
        .await?;
        assert!(!data_dir.join("token-cache.bin").exists());
        screenshot(&c, "signed-out.png").await?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&c, "account-failure-restart.png").await;
    }
    switchboard_e2e::ui::end_session(c).await;
    sim.shutdown().await;
    result
}
