//! The tray icon and closing the window to it, in the real app under Xvfb. The router runs the
//! demo contact center; the window starts as the demo's agent and registers its phone. The
//! tray's menu is read and clicked as a panel does it: over D-Bus, from the menu the app's
//! StatusNotifierItem exports (`com.canonical.dbusmenu`, `tests/e2e/dbusmenu.py`) on a private
//! session bus. Checked:
//!
//! - the tray's state line follows the window's state; Ready and Not ready → Lunch chosen in
//!   the tray reach the window and the router, and the menu ticks the one in force; in 中文 the
//!   menu speaks Chinese;
//! - closing the window (WM_DELETE_WINDOW, as a window manager sends it: `tests/e2e/x11.py`)
//!   hides it and the phone stays registered at the router; "Show Switchboard" in the tray
//!   brings it back; closed again, a queue call ringing brings it back with its pop-up; closed
//!   while it rings, a click on the call's notification (dunst's, `dunstctl action`) brings it
//!   back; and so does starting the app again;
//! - "Quit Switchboard" ends the app: the phone signs off at the router, the menu leaves the bus;
//! - with closing to the tray turned off in Settings, closing the window quits.
//!
//! Run through `scripts/test.sh`; by hand:
//! `xvfb-run -a cargo test -p switchboard-e2e --test desktop_tray -- --ignored --nocapture`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use switchboard_e2e::ui::{click, screenshot, wait_attr, wait_text, wait_value, WAIT};
use switchboard_e2e::{
    eventually, free_port, free_udp_port, need_display, our_binary, workspace_root, Desktop,
    Notifications, RouterProcess,
};

const AGENT: &str = "AdeleV@contoso.example";

/// One entry of the tray's menu, as `dbusmenu.py layout` prints it.
#[derive(Debug)]
struct Entry {
    label: String,
    enabled: bool,
    checked: bool,
    separator: bool,
    children: Vec<Entry>,
}

impl Entry {
    fn from_json(v: &Value) -> Self {
        Self {
            label: v["label"].as_str().unwrap_or_default().to_owned(),
            enabled: v["enabled"] == true,
            checked: v["checked"] == true,
            separator: v["separator"] == true,
            children: v["children"]
                .as_array()
                .map(|c| c.iter().map(Self::from_json).collect())
                .unwrap_or_default(),
        }
    }
}

/// `python3 tests/e2e/{name}` with Debian's Python, which has the Debian packages the scripts
/// need (python3-dbus, python3-xlib) whatever Python comes first on the PATH.
fn script(name: &str) -> Command {
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/e2e").join(name));
    cmd
}

/// The tray's menu now, or none when no app on `bus` exports one.
fn tray_menu(bus: &str) -> Result<Option<Vec<Entry>>> {
    let out = script("dbusmenu.py")
        .arg("layout")
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .output()
        .context("python3 tests/e2e/dbusmenu.py (python3-dbus: run tests/peers/install.sh)")?;
    match out.status.code() {
        Some(0) => {}
        Some(3) => return Ok(None),
        _ => bail!("dbusmenu.py: {}", String::from_utf8_lossy(&out.stderr)),
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v.as_array()
        .map(|a| a.iter().map(Entry::from_json).collect()))
}

/// Clicks `path` ("Ready", "Not ready/Lunch") in the tray's menu.
fn tray_click(bus: &str, path: &str) -> Result<()> {
    let out = script("dbusmenu.py")
        .args(["click", path])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .output()?;
    if !out.status.success() {
        bail!(
            "clicking {path:?} in the tray: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Waits until the tray's state line is `want`, with the entries `ticked` (paths) ticked and
/// no other; returns the menu.
async fn wait_tray(bus: &str, want: &str, ticked: &[&str]) -> Result<Vec<Entry>> {
    eventually(
        &format!("the tray to say {want:?} with {ticked:?} ticked"),
        WAIT,
        || async {
            let Some(menu) = tray_menu(bus)? else {
                bail!("no tray menu on the bus")
            };
            let first = menu.first().map(|e| (e.label.clone(), e.enabled));
            let mut on = Vec::new();
            for e in &menu {
                if e.checked {
                    on.push(e.label.clone());
                }
                for c in &e.children {
                    if c.checked {
                        on.push(format!("{}/{}", e.label, c.label));
                    }
                }
            }
            if first == Some((want.to_owned(), false)) && on == ticked {
                Ok(Some(menu))
            } else {
                bail!("state line {first:?}, ticked {on:?}")
            }
        },
    )
    .await
}

/// "viewable", "unmapped" or "none": the app's window on the X display.
fn window_state() -> Result<String> {
    let out = script("x11.py")
        .args(["state", "Switchboard"])
        .output()
        .context("python3 tests/e2e/x11.py (python3-xlib: run tests/peers/install.sh)")?;
    if !out.status.success() {
        bail!("x11.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn wait_window(want: &str) -> Result<()> {
    eventually(&format!("the window to be {want}"), WAIT, || async {
        let s = window_state()?;
        if s == want {
            Ok(Some(()))
        } else {
            bail!("the window is {s}")
        }
    })
    .await
}

/// Closes the window as a window manager does when its close button is clicked.
fn close_window() -> Result<()> {
    let out = script("x11.py").args(["close", "Switchboard"]).output()?;
    if !out.status.success() {
        bail!("x11.py close: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn agent_status(http: &reqwest::Client, base: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/v1/agents/me?agent={AGENT}"))
        .send()
        .await?
        .json()
        .await?)
}

async fn wait_router(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<()> {
    eventually(what, WAIT, || async {
        let st = agent_status(http, base).await?;
        if ok(&st) {
            Ok(Some(()))
        } else {
            bail!("router: {st}")
        }
    })
    .await
}

/// Where the app under test keeps its things: the session bus it is on, its settings and
/// data, and the freedesktop.org folders (`XDG_DATA_HOME`, `XDG_CONFIG_HOME`) where the OS's
/// handlers of links are written — the test's own, never the machine's user's.
struct Profile {
    bus: String,
    config_dir: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    xdg_data: std::path::PathBuf,
    xdg_config: std::path::PathBuf,
}

impl Profile {
    /// `program` with the app's environment.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("SWITCHBOARD_CONFIG_DIR", &self.config_dir)
            .env("SWITCHBOARD_DATA_DIR", &self.data_dir)
            .env("XDG_DATA_HOME", &self.xdg_data)
            .env("XDG_CONFIG_HOME", &self.xdg_config);
        cmd
    }

    /// The application GIO (what GNOME, and most desktops, open links with) names as the
    /// default for `scheme`'s links, if any.
    fn default_for(&self, scheme: &str) -> Result<Option<String>> {
        let out = self
            .command(Path::new("gio"))
            .args(["mime", &format!("x-scheme-handler/{scheme}")])
            .output()
            .context("gio (Debian's libglib2.0-bin; scripts/test.sh installs it)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .find(|l| l.starts_with("Default application for"))
            .and_then(|l| l.rsplit_once(": "))
            .map(|(_, app)| app.trim().to_owned()))
    }
}

/// Runs `cmd` (its stderr to `log`) until it ends, which it must, successfully, in time.
async fn run_to_end(mut cmd: Command, what: &str, log: &Path) -> Result<()> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("{what}: could not start"))?;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{what} ended with {status} ({})", log.display());
            }
            return Ok(());
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not end ({})", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the real window: needs an X display, tauri-driver, WebKitWebDriver, python3-xlib and python3-dbus (scripts/test.sh runs it)"]
async fn the_tray_shows_the_state_and_the_window_closes_to_it() -> Result<()> {
    need_display()?;
    let work = tempfile::tempdir()?;
    let logs = workspace_root().join("artifacts/e2e");
    std::fs::create_dir_all(&logs)?;
    let router_log = logs.join("router-tray.log");
    let _ = std::fs::remove_file(&router_log);

    let sip = free_udp_port()?;
    let demo = std::fs::read_to_string(workspace_root().join("crates/router/demo.toml"))?;
    let config = work.path().join("router.toml");
    std::fs::write(
        &config,
        demo.replace("127.0.0.1:7760", &format!("127.0.0.1:{sip}")),
    )?;
    let router = RouterProcess::start_with(
        free_port()?,
        &work.path().join("router-data"),
        &router_log,
        &[OsStr::new("--config"), config.as_os_str()],
    )
    .await?;
    let base = router.url.clone();
    let http = reqwest::Client::new();

    let config_dir = work.path().join("config");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&config_dir)?;
    // Sound devices for the ring (a PulseAudio server of the test's own, null sinks).
    let pulse = switchboard_e2e::pulse::PulseServer::start()?;
    let pulse_server = pulse.server();
    let notifications = Notifications::start(work.path()).await?;
    let profile = Profile {
        bus: notifications.address.clone(),
        config_dir: config_dir.clone(),
        data_dir: data_dir.clone(),
        xdg_data: work.path().join("xdg-data"),
        xdg_config: work.path().join("xdg-config"),
    };
    std::fs::create_dir_all(&profile.xdg_config)?;
    let desktop = Desktop::start(
        &[
            (
                "DBUS_SESSION_BUS_ADDRESS",
                OsStr::new(&notifications.address),
            ),
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_DATA_DIR", data_dir.as_os_str()),
            ("XDG_DATA_HOME", profile.xdg_data.as_os_str()),
            ("XDG_CONFIG_HOME", profile.xdg_config.as_os_str()),
            ("SWITCHBOARD_ROUTER_URL", OsStr::new(&base)),
            ("SWITCHBOARD_AGENT", OsStr::new(AGENT)),
            ("PULSE_SERVER", OsStr::new(&pulse_server)),
            ("SWITCHBOARD_LOG", OsStr::new("info")),
        ],
        "tauri-driver-tray.log",
    )
    .await?;
    let c = desktop.open().await?;
    let bus = notifications.address.clone();

    let result = async {
        // 1. The phone registers; the tray says the window's state.
        wait_attr(
            &c,
            r#"[data-testid="phone-registration"]"#,
            "data-state",
            "registered",
        )
        .await?;
        wait_router(&http, &base, "the router to see the phone", |st| {
            st["registered"] == true
        })
        .await?;
        let menu = wait_tray(&bus, "Off duty", &["Off duty"]).await?;
        let labels: Vec<&str> = menu
            .iter()
            .filter(|e| !e.separator)
            .map(|e| e.label.as_str())
            .collect();
        assert_eq!(
            labels,
            [
                "Off duty",
                "Ready",
                "Not ready",
                "Off duty",
                "Show Switchboard",
                "Quit Switchboard"
            ],
            "the tray's menu"
        );
        let reasons: Vec<&str> = menu[3].children.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "Break",
                "Lunch",
                "Personal",
                "Admin work",
                "Meeting",
                "Training",
                "Coaching"
            ]
        );

        // 2. Ready from the tray: the window and the router follow, the tray ticks it.
        tray_click(&bus, "Ready")?;
        wait_value(&c, r#"[data-testid="work-state"]"#, "ready").await?;
        wait_router(&http, &base, "the router to have the agent Ready", |st| {
            st["state"] == "ready"
        })
        .await?;
        wait_tray(&bus, "Ready", &["Ready"]).await?;

        // 3. Not ready → Lunch from the tray.
        tray_click(&bus, "Not ready/Lunch")?;
        wait_value(&c, r#"[data-testid="work-state"]"#, "not_ready:lunch").await?;
        wait_router(
            &http,
            &base,
            "the router to have the agent at lunch",
            |st| st["state"] == "not_ready" && st["reason"] == "lunch",
        )
        .await?;
        wait_tray(&bus, "Not ready · Lunch", &["Not ready/Lunch"]).await?;

        // 4. In 中文 the tray speaks Chinese; back to English.
        click(&c, r#"[data-testid="lang-toggle"]"#).await?;
        wait_tray(&bus, "未就绪：午餐", &["未就绪/午餐"]).await?;
        click(&c, r#"[data-testid="lang-toggle"]"#).await?;
        wait_tray(&bus, "Not ready · Lunch", &["Not ready/Lunch"]).await?;
        screenshot(&c, "tray-window.png").await?;

        // 5. Closing the window hides it; the phone stays registered and the tray stays.
        wait_window("viewable").await?;
        close_window()?;
        wait_window("unmapped").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let st = agent_status(&http, &base).await?;
        assert_eq!(
            st["registered"], true,
            "the phone runs on in the tray: {st}"
        );
        wait_tray(&bus, "Not ready · Lunch", &["Not ready/Lunch"]).await?;

        // 6. "Show Switchboard" brings the window back, and it is the same live window.
        tray_click(&bus, "Show Switchboard")?;
        wait_window("viewable").await?;
        wait_value(&c, r#"[data-testid="work-state"]"#, "not_ready:lunch").await?;

        // 7. Closed to the tray, a queue call brings the window back with its pop-up: Ready
        //    from the tray, the window closed, a caller on the trunk presses 1 (billing).
        tray_click(&bus, "Ready")?;
        wait_router(&http, &base, "the router to have the agent Ready", |st| {
            st["state"] == "ready"
        })
        .await?;
        close_window()?;
        wait_window("unmapped").await?;
        let mut caller = Command::new(our_binary("switchboard-agent")?);
        caller
            .env("SWITCHBOARD_RTP_PORTS", "40000-59999")
            .args([
                "--json",
                "call",
                &format!("sip:+18005550100@127.0.0.1:{sip}"),
            ])
            .args(["--user", "+15551234567", "--dtmf", "1", "--codec", "pcmu"])
            // From the router's answer (the attendant's): it rings the window from about
            // 3 s on, and hangs up while it rings.
            .args(["--hangup-after", "15"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _caller = switchboard_e2e::Guard::spawn("switchboard-agent call", &mut caller)?;
        wait_window("viewable").await?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, "+15551234567").await?;
        screenshot(&c, "tray-call-brings-the-window.png").await?;
        // Closed while it rings: a click on the call's notification brings the window back;
        // the call still rings there (a click does not answer).
        close_window()?;
        wait_window("unmapped").await?;
        notifications.sent(&["Incoming call: +15551234567"]).await?;
        notifications.click()?;
        wait_window("viewable").await?;
        c.find(switchboard_e2e::ui::css(
            r#"[data-testid="incoming-caller"]"#,
        ))
        .await?;
        switchboard_e2e::ui::gone(&c, r#"[data-testid="incoming-caller"]"#).await?;
        tray_click(&bus, "Not ready/Lunch")?;
        wait_tray(&bus, "Not ready · Lunch", &["Not ready/Lunch"]).await?;

        // 8. Closed again, starting the app again brings it back.
        close_window()?;
        wait_window("unmapped").await?;
        run_to_end(
            profile.command(&our_binary("switchboard-desktop")?),
            "a second start of the app (it hands over to the running one)",
            &logs.join("desktop-tray-second-start.log"),
        )
        .await?;
        wait_window("viewable").await?;
        wait_attr(
            &c,
            r#"[data-testid="router-state"]"#,
            "data-state",
            "connected",
        )
        .await?;

        // 8b. Settings → Links. In this fresh profile no app opens tel:, sip: or sips: links;
        //     the person makes Switchboard the one. GIO (what GNOME and most desktops open
        //     links with) then names the app's handler for each. Closed to the tray, a sip:
        //     link opened as the desktop opens one (xdg-open, which under GNOME is `gio open`)
        //     starts the app with it, and that start hands it to the running app: the window
        //     comes back on the phone's page with the link in the dial box. Stop: GIO names
        //     no app again.
        const HANDLER: &str = "switchboard-desktop-handler.desktop";
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        let status = r#"[data-testid="link-handler-status"]"#;
        wait_attr(&c, status, "data-state", "other").await?;
        assert_eq!(profile.default_for("tel")?, None);
        click(&c, r#"[data-testid="link-handler-toggle"]"#).await?;
        wait_attr(&c, status, "data-state", "ours").await?;
        wait_text(&c, status, "Switchboard opens tel: and sip: links").await?;
        screenshot(&c, "tray-links.png").await?;
        for scheme in ["tel", "sip", "sips"] {
            assert_eq!(
                profile.default_for(scheme)?.as_deref(),
                Some(HANDLER),
                "GIO's default for {scheme}: links"
            );
        }
        close_window()?;
        wait_window("unmapped").await?;
        let mut open = profile.command(Path::new("xdg-open"));
        open.arg("sip:MeganB@contoso.example;transport=tls")
            .env("XDG_CURRENT_DESKTOP", "GNOME");
        run_to_end(
            open,
            "xdg-open of a sip: link",
            &logs.join("desktop-tray-xdg-open.log"),
        )
        .await?;
        wait_window("viewable").await?;
        wait_value(
            &c,
            r#"[data-testid="dial-input"]"#,
            "MeganB@contoso.example",
        )
        .await?;
        wait_text(&c, r#"[data-testid="dial-link-note"]"#, "press Call").await?;
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        click(&c, r#"[data-testid="link-handler-toggle"]"#).await?;
        wait_attr(&c, status, "data-state", "other").await?;
        for scheme in ["tel", "sip", "sips"] {
            assert_eq!(profile.default_for(scheme)?, None, "{scheme}: after Stop");
        }
        click(&c, r#"[data-testid="nav-home"]"#).await?;

        // 9. "Quit Switchboard": the app ends, its phone signs off, its menu leaves the bus.
        tray_click(&bus, "Quit Switchboard")?;
        wait_window("none").await?;
        wait_router(&http, &base, "the phone to sign off", |st| {
            st["registered"] == false
        })
        .await?;
        eventually("the tray's menu to leave the bus", WAIT, || async {
            Ok(tray_menu(&bus)?.is_none().then_some(()))
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    switchboard_e2e::ui::end_session(c).await;
    result?;

    // 10. With closing to the tray off (Settings), closing the window quits.
    let c = desktop.open().await?;
    let result = async {
        wait_attr(
            &c,
            r#"[data-testid="phone-registration"]"#,
            "data-state",
            "registered",
        )
        .await?;
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        click(&c, r#"[data-testid="settings-close-to-tray"]"#).await?;
        click(&c, r#"[data-testid="settings-save"]"#).await?;
        let saved = wait_text(&c, r#"[data-testid="settings-saved"]"#, "").await;
        screenshot(&c, "tray-settings.png").await?;
        saved?;
        let saved = std::fs::read_to_string(config_dir.join("settings.toml"))?;
        assert!(saved.contains("close_to_tray = false"), "{saved}");
        close_window()?;
        wait_window("none").await?;
        wait_router(&http, &base, "the phone to sign off", |st| {
            st["registered"] == false
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    switchboard_e2e::ui::end_session(c).await;
    result
}
