//! The real window on a plain SIP account (Settings → Phone → "My own SIP account"), with no
//! router running: a registrar without `sip:` refused in the form; the account saved with a
//! wrong password, the status bar saying the SIP server refused it; the right password saved,
//! the status bar and the Phone section showing it registered with the real Kamailio
//! (tests/peers/kamailio/proxy.cfg on 127.0.0.1); the settings file holding no password, and
//! the password file not holding it in clear.
//!
//! By hand: `xvfb-run -a -s "-screen 0 1280x800x24" cargo test --locked -p switchboard-e2e
//! --test desktop_sip_account -- --ignored --test-threads=1` (build switchboard-desktop first).

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use switchboard_e2e::pulse::PulseServer;
use switchboard_e2e::ui::{click, css, screenshot, type_into, value_of, wait_attr, wait_text};
use switchboard_e2e::{
    free_port, free_udp_port, need_display, program, workspace_root, Desktop, Guard,
};

/// The status bar's phone registration.
const REG: &str = r#"[data-testid="phone-registration"]"#;

/// Kamailio as registrar and proxy on `port` (UDP), in its own process group (its workers go
/// with it).
fn kamailio(port: u16, dir: &std::path::Path) -> Result<Guard> {
    let bin = program("kamailio").or_else(|_| {
        let p = std::path::PathBuf::from("/usr/sbin/kamailio");
        if p.is_file() {
            Ok(p)
        } else {
            bail!("kamailio is not installed — run tests/peers/install.sh")
        }
    })?;
    let log = std::fs::File::create(dir.join("kamailio.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["-DD", "-E", "-f"])
        .arg(workspace_root().join("tests/peers/kamailio/proxy.cfg"))
        .arg("-l")
        .arg(format!("udp:127.0.0.1:{port}"))
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-Y")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut g = Guard::spawn("kamailio", &mut cmd)?;
    g.group = true;
    Ok(g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the real window: needs an X display, tauri-driver, WebKitWebDriver and Kamailio"]
async fn the_window_registers_a_plain_sip_account_with_kamailio() -> Result<()> {
    need_display()?;
    let sip_port = free_udp_port()?;
    let work = tempfile::tempdir()?;
    let mut k = kamailio(sip_port, work.path())?;
    // Bound once this process can no longer bind the port.
    let start = std::time::Instant::now();
    while std::net::UdpSocket::bind(("127.0.0.1", sip_port)).is_ok() {
        k.check_alive()?;
        if start.elapsed() > Duration::from_secs(15) {
            bail!("Kamailio did not listen on {sip_port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pulse = PulseServer::start()?;
    let pulse_server = pulse.server();
    let config_dir = work.path().join("config");
    let data_dir = work.path().join("data");
    // No router: the plain account needs none.
    let nowhere = format!("http://127.0.0.1:{}", free_port()?);
    let desktop = Desktop::start(
        &[
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_DATA_DIR", data_dir.as_os_str()),
            ("SWITCHBOARD_TOKEN_KEY", OsStr::new("file")),
            ("SWITCHBOARD_ROUTER_URL", OsStr::new(&nowhere)),
            ("PULSE_SERVER", OsStr::new(&pulse_server)),
            ("SWITCHBOARD_LOG", OsStr::new("info")),
        ],
        "tauri-driver-sip-account.log",
    )
    .await?;
    let c = desktop.open().await?;
    let result = async {
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        click(&c, r#"[data-testid="phone-source-sip"]"#).await?;
        let registrar = format!("sip:127.0.0.1:{sip_port}");
        // Checked in the window before anything is sent.
        type_into(&c, r#"[data-testid="sip-registrar"]"#, "127.0.0.1").await?;
        type_into(&c, r#"[data-testid="sip-user"]"#, "alice").await?;
        type_into(&c, r#"[data-testid="sip-password"]"#, "not-the-password").await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_text(
            &c,
            r#"[data-testid="sip-registrar-error"]"#,
            "sip: or sips:",
        )
        .await?;
        // A wrong password: saved, and the SIP server's refusal said.
        type_into(&c, r#"[data-testid="sip-registrar"]"#, &registrar).await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_text(&c, r#"[data-testid="phone-saved"]"#, "saved").await?;
        wait_attr(&c, REG, "data-state", "failing").await?;
        let bar = c.find(css(REG)).await?;
        // Cut short with an ellipsis on screen: read what it holds.
        let said = bar.prop("textContent").await?.unwrap_or_default();
        if !said.contains("refused the registration") {
            bail!("the status bar says {said:?}");
        }
        let title = bar.attr("title").await?.unwrap_or_default();
        if !title.starts_with(&format!(
            "SIP registration refused by {registrar}: 403 Forbidden — "
        )) {
            bail!("the tooltip does not say who refused: {title:?}");
        }
        screenshot(&c, "sip-account-refused.png").await?;
        // The right one: registered, in the status bar and the Phone section.
        type_into(&c, r#"[data-testid="sip-password"]"#, "wonderland").await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_attr(&c, REG, "data-state", "registered").await?;
        wait_text(
            &c,
            r#"[data-testid="phone-settings-status"]"#,
            "alice@127.0.0.1",
        )
        .await?;
        let kept = value_of(&c, r#"[data-testid="sip-password"]"#).await?;
        if kept.as_deref().is_some_and(|v| !v.is_empty()) {
            bail!("the password field was not emptied");
        }
        c.find(css(r#"[data-testid="sip-password-kept"]"#)).await?;
        screenshot(&c, "sip-account-registered.png").await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&c, "sip-account-failed.png").await;
    }
    let _ = c.close().await;
    result?;
    // The settings file has the account and no password; the password file is not clear text.
    let settings =
        std::fs::read_to_string(config_dir.join("settings.toml")).context("settings.toml")?;
    if !settings.contains("sip_account")
        || settings.contains("wonderland")
        || settings.contains("password")
    {
        bail!("settings.toml: {settings}");
    }
    let secret = std::fs::read(data_dir.join("sip-password.bin")).context("sip-password.bin")?;
    if secret.windows(10).any(|w| w == b"wonderland") {
        bail!("the password is kept in clear");
    }
    drop(desktop);
    Ok(())
}
