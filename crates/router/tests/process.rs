//! The real `switchboard-router` binary: durability across SIGKILL, graceful SIGTERM, refusals
//! at start (bad config, locked or corrupt data).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard_api::Tenant;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-router");

struct Proc(Child, String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the router on 127.0.0.1:0 and reads the real address from its first stdout line.
fn start(data: &std::path::Path) -> Proc {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Proc(child, base)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn committed_data_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut created = Vec::new();
    {
        let p = start(dir.path());
        let c = reqwest::Client::new();
        for i in 0..20 {
            let t: Tenant = c
                .post(format!("{}/v1/tenants", p.1))
                .json(&serde_json::json!({"name": format!("T{i}"), "sip_domain": format!("t{i}.example.com")}))
                .send().await.unwrap().json().await.unwrap();
            created.push(t);
        }
        // Drop = SIGKILL, no chance to flush anything.
    }
    let p = start(dir.path());
    let list: Vec<Tenant> = reqwest::get(format!("{}/v1/tenants", p.1))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), created.len());
    for t in &created {
        assert!(list.contains(t), "lost {t:?}");
    }
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path());
    let pid = p.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = wait_exit(&mut p.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_router_on_the_same_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path());
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another switchboard-router")
            && err.contains(&format!("pid {}", first.0.id())),
        "{err}"
    );
}

#[test]
fn a_corrupt_database_is_refused_and_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("router.db");
    std::fs::write(&db, b"this is not a database, it is a shopping list\n").unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router.db") && err.contains("NOT modified"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"this is not a database, it is a shopping list\n"
    );
}

#[test]
fn a_bad_config_file_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("router.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytez = 5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router.toml")
            && err.contains("line 3")
            && err.contains("http.max_body_bytez"),
        "{err}"
    );
}

#[test]
fn print_default_config_is_the_shipped_example() {
    let out = Command::new(BIN)
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        switchboard_router::config::EXAMPLE_CONFIG
    );
}
