//! The real desktop window signs in with Microsoft — against the simulated tenant, in this
//! process on 127.0.0.1 — through the system browser (`$BROWSER`: a script that plays the
//! person on the login page), keeps the sign-in in a real Secret Service (gnome-keyring on a
//! private D-Bus bus), shows the account chip and live Teams presence, finds an expert in the
//! Directory and follows their presence, survives a restart signed in, and signs out, which
//! empties the keychain entry. Screenshots go to `artifacts/e2e/`.
//!
//! Run through `scripts/test.sh`; by hand:
//! `xvfb-run -a cargo test -p switchboard-e2e --test desktop_account -- --ignored --nocapture`.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::Result;
use switchboard_e2e::ui::{choose, click, css, screenshot, wait_attr, wait_text, WAIT};
use switchboard_e2e::{
    eventually, need_display, tenant_config, workspace_root, Desktop, SecretService,
};
use switchboard_tenant_sim::{Config, TenantSim, DEMO_PASSWORD};

const USER: &str = "AdeleV@contoso.example";

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
    tenant_config(&config_dir, &sim.authority())?;
    let browser = format!(
        "python3 {}",
        workspace_root()
            .join("crates/agent/tests/fixtures/sim_browser.py")
            .display()
    );
    let page = work.path().join("browser-page.html");
    let router_url = "http://127.0.0.1:9"; // no router in this test
    let desktop = Desktop::start(
        &[
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_DATA_DIR", data_dir.as_os_str()),
            ("SWITCHBOARD_ROUTER_URL", OsStr::new(router_url)),
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
