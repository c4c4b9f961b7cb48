//! `switchboard-agent register` against the real Kamailio (Debian `kamailio`, installed by
//! tests/peers/install.sh) with digest authentication: the right password registers, a wrong
//! one fails with the server's status and reason, a short expiry is refreshed, and exit
//! unregisters.

mod common;

use std::process::Command;

use common::*;

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
    let k = start_kamailio("registrar.cfg");
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
    let k = start_kamailio("registrar.cfg");
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
    let k = start_kamailio("registrar.cfg");
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

#[test]
fn two_accounts_at_once_over_tcp_register_and_unregister() {
    let k = start_kamailio("proxy.cfg");
    let out = std::process::Command::new(AGENT)
        .arg("--json")
        .arg("register")
        .arg("--server")
        .arg(format!("sip:127.0.0.1:{};transport=tcp", k.port))
        .args(["--user", "alice", "--password", "wonderland"])
        .args([
            "--account",
            "bob:builder",
            "--duration",
            "2",
            "--keepalive",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    let mut registered: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "registered")
        .map(|e| e["aor"].as_str().unwrap())
        .collect();
    registered.sort();
    assert_eq!(
        registered,
        ["sip:alice@127.0.0.1", "sip:bob@127.0.0.1"],
        "{ev:?}"
    );
    assert!(ev
        .iter()
        .all(|e| e["event"] != "registered" || e["transport"] == "tcp"));
    let unregistered = ev.iter().filter(|e| e["event"] == "unregistered").count();
    assert_eq!(unregistered, 2, "{ev:?}");
}
