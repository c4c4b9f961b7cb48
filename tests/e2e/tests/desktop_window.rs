//! The real desktop window, driven over WebDriver (tauri-driver → WebKitWebDriver → the
//! Switchboard app under Xvfb). It starts with the router down and checks, in the window:
//! "unreachable"; router up → "connected" without restarting the app; 中文 and back, with the
//! Chinese drawn as glyphs, not boxes, checked on the window's pixels (the 中文 button, then the
//! home heading in Chinese; see `switchboard_e2e::glyphs`: this needs no CJK font on the machine,
//! the UI bundles one);
//! Settings → Audio (device lists, the microphone test's live readings, the test sound, each
//! through the shell's commands and events); router killed → "reconnecting"; router back →
//! "connected". Screenshots go to `artifacts/e2e/`.
//!
//! Run through `scripts/test.sh` (it builds the binaries, installs tauri-driver and
//! WebKitWebDriver, and provides the X display). By hand:
//! `xvfb-run -a cargo test -p switchboard-e2e --test desktop_window -- --ignored --nocapture`.

use std::time::Duration;

use anyhow::{bail, Result};
use fantoccini::{Client, Locator};
use switchboard_e2e::glyphs::expect_glyphs;
use switchboard_e2e::ui::screenshot;
use switchboard_e2e::{
    eventually, free_port, need_display, workspace_root, Desktop, RouterProcess,
};

const STATE: &str = r#"[data-testid="router-state"]"#;
const WAIT: Duration = Duration::from_secs(45);
/// Time for the bundled Chinese font to load before boxes count as a failure.
const GLYPH_WAIT: Duration = Duration::from_secs(15);

/// (data-state, visible text) of the status bar.
async fn router_state(c: &Client) -> Result<(String, String)> {
    let el = c.find(Locator::Css(STATE)).await?;
    let state = el.attr("data-state").await?.unwrap_or_default();
    let text = el.text().await?;
    Ok((state, text))
}

async fn wait_state(c: &Client, want: &str, text_has: &str) -> Result<()> {
    eventually(
        &format!("the status bar to show {want} ({text_has})"),
        WAIT,
        || async {
            let (state, text) = router_state(c).await?;
            if state == want && text.contains(text_has) {
                Ok(Some(()))
            } else {
                // Kept as the last observation for the timeout message.
                bail!("status bar shows data-state={state:?} text={text:?}")
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the real window: needs an X display, tauri-driver and WebKitWebDriver (scripts/test.sh runs it)"]
async fn window_follows_the_router_and_switches_language() -> Result<()> {
    need_display()?;
    let work = tempfile::tempdir()?;
    let logs = workspace_root().join("artifacts/e2e");
    std::fs::create_dir_all(&logs)?;
    let router_log = logs.join("router.log");
    let _ = std::fs::remove_file(&router_log);
    let router_port = free_port()?;
    let router_url = format!("http://127.0.0.1:{router_port}");
    let data_dir = work.path().join("router-data");

    // The app is started by WebKitWebDriver and inherits tauri-driver's environment.
    let config_dir = work.path().join("config");
    let desktop = Desktop::start(
        &[
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_ROUTER_URL", router_url.as_ref()),
            ("SWITCHBOARD_LOG", "info".as_ref()),
        ],
        "tauri-driver.log",
    )
    .await?;
    let c = desktop.open().await?;

    let result = async {
        // 1. No router yet: the window says so.
        wait_state(&c, "unreachable", "Unreachable").await?;
        let url_text = c
            .find(Locator::Css(r#"[data-testid="router-url"]"#))
            .await?
            .text()
            .await?;
        assert!(
            url_text.contains(&router_url),
            "status bar shows {url_text:?}, want {router_url}"
        );

        // 2. Router starts: the same window connects, no restart.
        let mut router = RouterProcess::start(router_port, &data_dir, &router_log).await?;
        wait_state(&c, "connected", "Connected").await?;
        let version = c
            .find(Locator::Css(r#"[data-testid="router-version"]"#))
            .await?
            .text()
            .await?;
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "router version shown: {version:?}"
        );
        screenshot(&c, "connected-en.png").await?;

        // 3. Language: to 中文 and back, at run time. The Chinese must be drawn, not boxes:
        // the 中文 button in English, then the home heading in Chinese, on the pixels.
        let glyphs = expect_glyphs(
            &c,
            r#"[data-testid="lang-toggle"]"#,
            &logs,
            "glyphs-lang-toggle",
            GLYPH_WAIT,
        )
        .await?;
        println!("the 中文 button draws glyphs: {glyphs}");
        c.find(Locator::Css(r#"[data-testid="lang-toggle"]"#))
            .await?
            .click()
            .await?;
        wait_state(&c, "connected", "已连接").await?;
        screenshot(&c, "connected-zh.png").await?;
        let glyphs = expect_glyphs(&c, "main h1", &logs, "glyphs-home-heading", GLYPH_WAIT).await?;
        println!("the Chinese home heading draws glyphs: {glyphs}");
        c.find(Locator::Css(r#"[data-testid="lang-toggle"]"#))
            .await?
            .click()
            .await?;
        wait_state(&c, "connected", "Connected").await?;

        // 3b. Settings → Audio. The machine may have no sound server (CI): whatever it has,
        // the lists come back, the microphone test streams readings into the window and
        // stops, and the test sound either plays or says why it cannot.
        c.find(Locator::Css(r#"[data-testid="nav-settings"]"#))
            .await?
            .click()
            .await?;
        eventually("the microphone list", WAIT, || async {
            let n = c
                .find_all(Locator::Css(r#"[data-testid="audio-input"] option"#))
                .await?
                .len();
            Ok((n >= 1).then_some(()))
        })
        .await?;
        eventually("mic-level readings in the window", WAIT, || async {
            // The page settles as the device lists arrive (a notice can move the button
            // under the pointer): until the meter shows, the button is pressed again.
            let Ok(meter) = c.find(Locator::Css(r#"[data-testid="mic-meter"]"#)).await else {
                if let Ok(button) = c.find(Locator::Css(r#"[data-testid="mic-test"]"#)).await {
                    // Into the middle of the view first: half under the status bar, WebKit's
                    // driver neither scrolls to it nor clicks it.
                    let _ = c
                        .execute(
                            "arguments[0].scrollIntoView({block: 'center'})",
                            vec![serde_json::to_value(&button)?],
                        )
                        .await;
                    let _ = button.click().await;
                }
                bail!("the microphone test has not started yet");
            };
            let readings: u32 = meter
                .attr("data-readings")
                .await?
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            if readings >= 5 {
                Ok(Some(()))
            } else {
                bail!("{readings} readings so far")
            }
        })
        .await?;
        screenshot(&c, "settings-audio.png").await?;
        c.find(Locator::Css(r#"[data-testid="mic-test-stop"]"#))
            .await?
            .click()
            .await?;
        c.find(Locator::Css(r#"[data-testid="play-chime"]"#))
            .await?
            .click()
            .await?;
        eventually("the test sound's outcome", WAIT, || async {
            for id in ["audio-played", "audio-play-error"] {
                if let Ok(el) = c
                    .find(Locator::Css(&format!(r#"[data-testid="{id}"]"#)))
                    .await
                {
                    let text = el.text().await?;
                    if !text.is_empty() {
                        return Ok(Some(()));
                    }
                }
            }
            Ok(None)
        })
        .await?;
        c.find(Locator::Css(r#"[data-testid="nav-home"]"#))
            .await?
            .click()
            .await?;

        // 4. Router dies (SIGKILL): the window shows it is reconnecting.
        router.guard.kill();
        wait_state(&c, "reconnecting", "Reconnecting").await?;
        screenshot(&c, "reconnecting.png").await?;

        // 5. Router back on the same port and data: connected again.
        let _router = RouterProcess::start(router_port, &data_dir, &router_log).await?;
        wait_state(&c, "connected", "Connected").await?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&c, "failure.png").await;
    }
    switchboard_e2e::ui::end_session(c).await;
    result
}
