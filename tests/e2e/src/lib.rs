//! Helpers for the end-to-end tests: find the built binaries, pick free loopback ports,
//! start and stop the router and tauri-driver, wait for conditions in the real window, and look
//! at its pixels ([`glyphs`]: Chinese drawn as glyphs, not boxes).
//! Every process started here is stopped when its guard drops, also when a test fails.
#![forbid(unsafe_code)]

pub mod glyphs;
pub mod pulse;
pub mod tones;
pub mod ui;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Where `cargo build` put our binaries: `$SWITCHBOARD_BIN_DIR`, else
/// `$CARGO_TARGET_DIR/debug`, else `target/debug` in the workspace.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SWITCHBOARD_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("debug");
    }
    workspace_root().join("target/debug")
}

/// A built binary of ours; a clear error when it has not been built.
pub fn our_binary(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.is_file() {
        bail!(
            "{} not found — build it first (cargo build --workspace, as scripts/test.sh does)",
            p.display()
        );
    }
    Ok(p)
}

/// A program from PATH or `~/.cargo/bin`.
pub fn program(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed — run tests/peers/install.sh"))
}

/// A port on 127.0.0.1 free for both UDP and TCP a moment ago (a SIP listener).
pub fn free_udp_port() -> Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Guard {
    pub name: &'static str,
    pub child: Option<Child>,
    /// The child leads a process group (`process_group(0)`): the whole group is killed.
    pub group: bool,
}

impl Guard {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name,
            child: Some(child),
            group: false,
        })
    }

    /// SIGKILL now (to its process group when it leads one), and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.group {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", c.id())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fails when the process has already exited (it crashed or refused to start).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("{} exited early with {status}", self.name);
            }
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sets the app up, in `config_dir`, for the Microsoft 365 tenant whose sign-in authority is
/// `authority` (the simulated tenant's), with the demo's app registration: `tenant.toml`.
pub fn tenant_config(config_dir: &std::path::Path, authority: &str) -> Result<()> {
    std::fs::write(
        config_dir.join("tenant.toml"),
        format!(
            "authority = \"{authority}\"\nclient_id = \"{}\"\n",
            switchboard_tenant_sim::DEMO_CLIENT_ID
        ),
    )?;
    Ok(())
}

/// Fails unless there is an X display for the window (run under `xvfb-run`).
pub fn need_display() -> Result<()> {
    if std::env::var_os("DISPLAY").is_none() {
        bail!("no X display: run under xvfb-run (scripts/test.sh does)");
    }
    Ok(())
}

/// Polls `f` until it returns `Ok(Some(v))`, failing after `timeout` with the last error.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("condition never held");
    loop {
        // One look may hang (a WebDriver command the window never answers): it gets what is
        // left of the wait, and at least 5 s, so that a hang fails the step instead of the run.
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(5));
        match tokio::time::timeout(left, f()).await {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => {
                last = format!("one look did not finish in {left:?} (the window, or its driver, stopped answering)")
            }
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A router on 127.0.0.1:`port` with its data in `data_dir`.
pub struct RouterProcess {
    pub guard: Guard,
    pub url: String,
}

impl RouterProcess {
    /// Starts the router and waits until `/v1/health` answers.
    pub async fn start(port: u16, data_dir: &Path, log: &Path) -> Result<Self> {
        Self::start_with(port, data_dir, log, &[]).await
    }

    /// [`Self::start`] with more arguments (`--config FILE`, `--sip-listen ADDR:PORT` …).
    pub async fn start_with(
        port: u16,
        data_dir: &Path,
        log: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<Self> {
        let bin = our_binary("switchboard-router")?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut guard = Guard::spawn(
            "switchboard-router",
            Command::new(bin)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data_dir)
                .args(args)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let health = format!("{url}/v1/health");
        let start = Instant::now();
        loop {
            guard
                .check_alive()
                .with_context(|| format!("see {}", log.display()))?;
            if let Ok(r) = http.get(&health).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the router did not answer {health} within 30 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { guard, url })
    }
}

/// tauri-driver (over WebKitWebDriver) on 127.0.0.1, started with the environment the app
/// inherits; [`Desktop::open`] starts the app in a new WebDriver session (a new process).
pub struct Desktop {
    pub driver: Guard,
    webdriver: String,
    app: PathBuf,
}

impl Desktop {
    /// Starts tauri-driver with `env` for the app; its log goes to `artifacts/e2e/{log}`.
    pub async fn start(env: &[(&str, &std::ffi::OsStr)], log: &str) -> Result<Self> {
        let app = our_binary("switchboard-desktop")?;
        let tauri_driver = program("tauri-driver")?;
        let native_driver = program("WebKitWebDriver")?;
        let logs = workspace_root().join("artifacts/e2e");
        std::fs::create_dir_all(&logs)?;
        let driver_port = free_port()?;
        let native_port = free_port()?;
        let driver_log = std::fs::File::create(logs.join(log))?;
        let mut cmd = Command::new(tauri_driver);
        cmd.arg("--port")
            .arg(driver_port.to_string())
            .arg("--native-port")
            .arg(native_port.to_string())
            .arg("--native-driver")
            .arg(native_driver)
            .stdin(Stdio::null())
            .stdout(driver_log.try_clone()?)
            .stderr(driver_log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A process group of its own: stopping it stops the WebKitWebDriver it started too
        // (killed alone, tauri-driver leaves that running).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut driver = Guard::spawn("tauri-driver", &mut cmd)?;
        driver.group = true;
        let start = Instant::now();
        // tauri-driver listens before the WebKitWebDriver it starts does, and a session asked
        // for in between fails ("tcp connect error"): wait for both.
        let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        while !(listening(driver_port) && listening(native_port)) {
            driver
                .check_alive()
                .with_context(|| format!("see artifacts/e2e/{log}"))?;
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "tauri-driver ({driver_port}) and WebKitWebDriver ({native_port}) did not \
                     both listen within 20 s; see artifacts/e2e/{log}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            driver,
            webdriver: format!("http://127.0.0.1:{driver_port}"),
            app,
        })
    }

    /// Opens the app's window in a new session.
    pub async fn open(&self) -> Result<fantoccini::Client> {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "wry".into());
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": self.app.to_string_lossy() }),
        );
        fantoccini::Client::with_capabilities_and_connector(
            &self.webdriver,
            &caps,
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .await
        .context("WebDriver session for the Switchboard window")
    }
}

/// A private D-Bus session bus with gnome-keyring's Secret Service on it (Debian packages
/// installed by tests/peers/install.sh): the OS keychain of a desktop session, for this test
/// only. Stopped when dropped.
pub struct SecretService {
    _bus: Guard,
    _keyring: Guard,
    /// `DBUS_SESSION_BUS_ADDRESS` for programs that should use it.
    pub address: String,
}

impl SecretService {
    pub async fn start(dir: &Path) -> Result<Self> {
        use std::io::{BufRead, BufReader, Write};
        let mut bus = Guard::spawn(
            "dbus-daemon",
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address=1"])
                .arg(format!("--address=unix:path={}", dir.join("bus").display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .context("run tests/peers/install.sh")?;
        let out = bus
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("dbus-daemon stdout")?;
        let mut address = String::new();
        BufReader::new(out).read_line(&mut address)?;
        let address = address.trim().to_owned();
        let home = dir.join("keyring-home");
        std::fs::create_dir_all(&home)?;
        let mut keyring = Guard::spawn(
            "gnome-keyring-daemon",
            Command::new("gnome-keyring-daemon")
                .args(["--foreground", "--unlock", "--components=secrets"])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .env("HOME", &home)
                .env("XDG_DATA_HOME", home.join("data"))
                .env("XDG_RUNTIME_DIR", dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("run tests/peers/install.sh")?;
        if let Some(mut stdin) = keyring.child.as_mut().and_then(|c| c.stdin.take()) {
            stdin.write_all(b"e2e-login-password")?;
        }
        let me = Self {
            _bus: bus,
            _keyring: keyring,
            address,
        };
        // Ready when the login keyring exists (gnome-keyring made it from the password on
        // stdin) and a secret can be stored and removed. Before that a write would make
        // gnome-keyring prompt to create a default keyring, and with no prompter the writer
        // waits for ever — so the probe gets 3 s and is killed after.
        let login_keyring = home.join("data/keyrings/login.keyring");
        eventually(
            "gnome-keyring on the bus, taking secrets",
            Duration::from_secs(10),
            || async {
                if !login_keyring.exists() {
                    return Ok(None);
                }
                let mut store = Command::new("secret-tool")
                    .args([
                        "store",
                        "--label=switchboard probe",
                        "service",
                        "switchboard-probe",
                        "username",
                        "probe",
                    ])
                    .env("DBUS_SESSION_BUS_ADDRESS", &me.address)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                if let Some(mut stdin) = store.stdin.take() {
                    stdin.write_all(b"probe")?;
                }
                let started = std::time::Instant::now();
                let stored = loop {
                    if let Some(status) = store.try_wait()? {
                        break status.success();
                    }
                    if started.elapsed() > Duration::from_secs(3) {
                        let _ = store.kill();
                        let _ = store.wait();
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                if !stored {
                    return Ok(None);
                }
                let cleared = Command::new("secret-tool")
                    .args(["clear", "service", "switchboard-probe", "username", "probe"])
                    .env("DBUS_SESSION_BUS_ADDRESS", &me.address)
                    .output()?;
                Ok(cleared.status.success().then_some(()))
            },
        )
        .await?;
        Ok(me)
    }

    /// The secret stored for (service, username), read with libsecret's `secret-tool`.
    pub fn lookup(&self, service: &str, user: &str) -> Result<Option<String>> {
        let out = Command::new("secret-tool")
            .args(["lookup", "service", service, "username", user])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !text.is_empty()).then_some(text))
    }
}

/// A private D-Bus session bus (no service activation: nothing starts behind the test's back)
/// with dunst, a real notification server, on it, and `dbus-monitor` writing down every
/// `Notify` and `CloseNotification` call the window makes (Debian packages installed by
/// tests/peers/install.sh). dunst shows them on the test's X display; the test clicks them and
/// their buttons with `dunstctl`. Stopped when dropped.
pub struct Notifications {
    _bus: Guard,
    _server: Guard,
    _monitor: Guard,
    log: PathBuf,
    /// The button the context menu's script picks.
    choice: PathBuf,
    /// `DBUS_SESSION_BUS_ADDRESS` for programs that should use it.
    pub address: String,
}

impl Notifications {
    pub async fn start(dir: &Path) -> Result<Self> {
        let socket = dir.join("notify-bus");
        let config = dir.join("notify-bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )?;
        let bus = Guard::spawn(
            "dbus-daemon",
            Command::new("dbus-daemon")
                .args(["--nofork", "--nopidfile"])
                .arg(format!("--config-file={}", config.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("run tests/peers/install.sh")?;
        let address = format!("unix:path={}", socket.display());
        eventually("the private D-Bus bus", Duration::from_secs(10), || async {
            Ok(socket.exists().then_some(()))
        })
        .await?;
        // dunst's context menu, where a person picks one of a notification's buttons, runs a
        // `dmenu` with one line per button (`#Answer (Incoming call: bob) [3,answer]`) and
        // follows the line it prints: here a script picks the button the test names.
        let choice = dir.join("notify-choice");
        let picker = dir.join("notify-pick.sh");
        std::fs::write(
            &picker,
            format!(
                "#!/bin/sh\ngrep -m1 -F \",$(cat '{}')]\"\n",
                choice.display()
            ),
        )?;
        std::fs::set_permissions(&picker, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let dunstrc = dir.join("dunstrc");
        std::fs::write(
            &dunstrc,
            // Notifications stay until the app takes them back or someone acts on them.
            format!(
                "[global]\n    dmenu = \"{}\"\n[urgency_low]\n    timeout = 0\n\
                 [urgency_normal]\n    timeout = 0\n",
                picker.display()
            ),
        )?;
        let server = Guard::spawn(
            "dunst",
            Command::new("dunst")
                .arg("-config")
                .arg(&dunstrc)
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("run tests/peers/install.sh")?;
        // Up once it owns the name.
        eventually("dunst on the bus", Duration::from_secs(10), || async {
            let out = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.Notifications",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .output()?;
            Ok(String::from_utf8_lossy(&out.stdout)
                .contains("boolean true")
                .then_some(()))
        })
        .await?;
        let log = dir.join("notifications.log");
        let monitor = Guard::spawn(
            "dbus-monitor",
            Command::new("dbus-monitor")
                .arg("--address")
                .arg(&address)
                .arg("type='method_call',interface='org.freedesktop.Notifications',member='Notify'")
                .arg(
                    "type='method_call',interface='org.freedesktop.Notifications',\
                     member='CloseNotification'",
                )
                .stdout(std::fs::File::create(&log)?)
                .stderr(Stdio::null()),
        )
        .context("run tests/peers/install.sh")?;
        // dbus-monitor says it is listening before anything it saw.
        eventually(
            "dbus-monitor listening",
            Duration::from_secs(10),
            || async { Ok((std::fs::metadata(&log)?.len() > 0).then_some(())) },
        )
        .await?;
        Ok(Self {
            _bus: bus,
            _server: server,
            _monitor: monitor,
            log,
            choice,
            address,
        })
    }

    /// dunst's `dunstctl` on this bus.
    fn dunstctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("dunstctl")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .context("dunstctl (run tests/peers/install.sh)")?;
        if !out.status.success() {
            bail!(
                "dunstctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// How many notifications dunst has on screen.
    pub fn displayed(&self) -> Result<usize> {
        Ok(self.dunstctl(&["count", "displayed"])?.parse()?)
    }

    /// A click on the newest notification on screen, as a person clicks it (dunst's
    /// `default` action).
    pub fn click(&self) -> Result<()> {
        self.dunstctl(&["action", "0"]).map(drop)
    }

    /// The button `action` (its id) of a notification on screen chosen from dunst's context
    /// menu, as a person chooses it.
    pub fn choose(&self, action: &str) -> Result<()> {
        std::fs::write(&self.choice, action)?;
        self.dunstctl(&["context"]).map(drop)
    }

    /// How many times the app took a notification back (`CloseNotification`).
    pub fn taken_back(&self) -> Result<usize> {
        Ok(std::fs::read_to_string(&self.log)?
            .matches("member=CloseNotification")
            .count())
    }

    /// Waits until a notification containing every one of `texts` was sent; what the monitor
    /// saw of it.
    pub async fn sent(&self, texts: &[&str]) -> Result<String> {
        eventually(
            &format!("a notification with {texts:?}"),
            WAIT_NOTICE,
            || async {
                let seen = std::fs::read_to_string(&self.log)?;
                // One `method call` block per notification.
                Ok(seen
                    .split("method call")
                    .find(|n| texts.iter().all(|t| n.contains(t)))
                    .map(str::to_owned))
            },
        )
        .await
    }
}

/// How long a notification may take to be sent.
const WAIT_NOTICE: Duration = Duration::from_secs(15);
