//! Helpers for the end-to-end tests: find the built binaries, pick free loopback ports,
//! start and stop the router and tauri-driver, and wait for conditions in the real window.
//! Every process started here is stopped when its guard drops, also when a test fails.

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
            "{} not found — build it first (scripts/test.sh does: cargo build -p switchboard-router -p switchboard-desktop)",
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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Guard {
    pub name: &'static str,
    pub child: Option<Child>,
}

impl Guard {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name,
            child: Some(child),
        })
    }

    /// SIGKILL now, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
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

/// Polls `f` until it returns `Ok(Some(v))`, failing after `timeout` with the last error.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("condition never held");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
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
