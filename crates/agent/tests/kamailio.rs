//! `switchboard-agent register` against the real Kamailio (Debian `kamailio`, installed by
//! tests/peers/install.sh) with digest authentication: the right password registers, a wrong
//! one fails with the server's status and reason, a short expiry is refreshed, and exit
//! unregisters.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_switchboard-agent");

struct Kamailio {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: Kamailio's main process then stops its worker processes;
        // killed outright it would leave them running.
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn kamailio_binary() -> PathBuf {
    [
        "/usr/sbin/kamailio",
        "/usr/local/sbin/kamailio",
        "/usr/bin/kamailio",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("kamailio is not installed — run tests/peers/install.sh")
}

fn start_kamailio() -> Kamailio {
    let cfg =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/kamailio/registrar.cfg");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
    let child = Command::new(kamailio_binary())
        .args(["-DD", "-E", "-f"])
        .arg(&cfg)
        .arg("-l")
        .arg(format!("udp:127.0.0.1:{port}"))
        .arg("-P")
        .arg(dir.path().join("kamailio.pid"))
        .arg("-Y")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kamailio");
    let mut k = Kamailio {
        child,
        port,
        _dir: dir,
    };
    // Ready when it answers OPTIONS.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = k.child.try_wait().unwrap() {
            panic!("kamailio exited at start with {status}");
        }
        let ping = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKping{}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            start.elapsed().as_millis(),
            start.elapsed().as_millis()
        );
        sock.send_to(ping.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200") {
                return k;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "kamailio did not answer OPTIONS on {port}"
        );
    }
}

fn register(port: u16, user: &str, password: &str, extra: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .arg("--json")
        .arg("register")
        .arg("--server")
        .arg(format!("sip:127.0.0.1:{port};transport=udp"))
        .args(["--user", user, "--password", password])
        .args(extra)
        .output()
        .unwrap()
}

fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn registers_refreshes_and_unregisters_with_the_right_password() {
    let k = start_kamailio();
    let out = register(
        k.port,
        "alice",
        "wonderland",
        &["--expires", "10", "--duration", "7"],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    let registered: Vec<&serde_json::Value> =
        ev.iter().filter(|e| e["event"] == "registered").collect();
    assert!(
        registered.len() >= 2,
        "expected a refresh within 7 s of a 10 s registration: {ev:?}"
    );
    assert_eq!(registered[0]["expires"], 10);
    let bindings = registered[0]["bindings"].as_array().unwrap();
    assert!(
        bindings
            .iter()
            .any(|b| b.as_str().unwrap().contains("sip:alice@127.0.0.1:")),
        "{bindings:?}"
    );
    assert_eq!(ev.last().unwrap()["event"], "unregistered");
}

#[test]
fn a_wrong_password_names_the_status_and_reason() {
    let k = start_kamailio();
    let out = register(k.port, "alice", "not-the-password", &["--duration", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "SIP registration refused by sip:127.0.0.1:{}: 403 Forbidden",
            k.port
        )),
        "{err}"
    );
    assert!(err.contains("check the user name and password"), "{err}");
}

#[test]
fn an_unknown_user_is_refused() {
    let k = start_kamailio();
    let out = register(k.port, "mallory", "x", &["--duration", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403 Forbidden"));
}

#[test]
fn a_bad_server_address_is_a_clear_error() {
    let out = Command::new(AGENT)
        .args([
            "register",
            "--server",
            "127.0.0.1",
            "--user",
            "a",
            "--password",
            "b",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a SIP server address") && err.contains("sip:"),
        "{err}"
    );
}
