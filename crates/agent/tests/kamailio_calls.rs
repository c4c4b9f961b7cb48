//! Calls through the real Kamailio (tests/peers/kamailio/proxy.cfg: registrar, record-routing
//! proxy, digest authentication with 401 for REGISTER and 407 for INVITE) between the headless
//! agent and a registered baresip, both directions.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn baresip_registered(k: &Kamailio, user: &str, password: &str) -> Baresip {
    let b = Baresip::start_with_account(
        user,
        &format!(
            "<sip:{user}@127.0.0.1:{port}>;auth_pass={password};regint=60;answermode=auto",
            port = k.port
        ),
        440,
    );
    b.wait_for("200 OK", Duration::from_secs(10));
    b
}

#[test]
fn agent_calls_a_registered_baresip_through_kamailio_with_proxy_auth() {
    let k = start_kamailio("proxy.cfg");
    let bob = baresip_registered(&k, "bob", "builder");
    let server = format!("sip:127.0.0.1:{}", k.port);
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:bob@127.0.0.1:{}", k.port),
            "--server",
            &server,
            "--user",
            "alice",
            "--password",
            "wonderland",
            "--dtmf",
            "42",
            "--dtmf-info",
            "--hold-after",
            "1",
            "--hangup-after",
            "4",
        ],
        &[&bob],
    );
    assert!(out.status.success());
    let n = names(&ev);
    assert_eq!(n.first().map(String::as_str), Some("registered"), "{n:?}");
    assert!(n.contains(&"established".into()), "{n:?}");
    let dirs: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "media")
        .map(|e| e["media"]["direction"].as_str().unwrap())
        .collect();
    assert_eq!(
        dirs,
        ["sendonly", "sendrecv"],
        "re-INVITEs follow the Record-Route"
    );
    assert_eq!(
        ev.iter().find(|e| e["event"] == "ended").unwrap()["reason"],
        "local"
    );
    // --dtmf-info: SIP INFO through the proxy, though RFC 4733 was agreed.
    bob.wait_for("received DTMF: '4'", Duration::from_secs(2));
    bob.wait_for("received DTMF: '2'", Duration::from_secs(2));
    bob.wait_for("terminated", Duration::from_secs(3));
}

#[test]
fn registered_baresip_calls_the_registered_agent_through_kamailio() {
    let k = start_kamailio("proxy.cfg");
    let bob = baresip_registered(&k, "bob", "builder");
    let server = format!("sip:127.0.0.1:{}", k.port);
    let mut child = agent(&[
        "answer",
        "--server",
        &server,
        "--user",
        "alice",
        "--password",
        "wonderland",
        "--wait",
        "20",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Registered and listening: then the call can reach it.
    let first = events_until(&mut child, "listening");
    bob.command("dial", &format!("sip:alice@127.0.0.1:{}", k.port));
    bob.wait_for("Call established", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    bob.command("hangup", "");
    let out = wait_output(&mut child, Duration::from_secs(15), &[&bob]);
    assert!(out.status.success());
    let ev = [first, events(&out.stdout)].concat();
    let n = names(&ev);
    assert!(
        n.starts_with(&["registered".into(), "listening".into()]),
        "{n:?}"
    );
    assert!(n.contains(&"established".into()), "{n:?}");
    assert_eq!(
        ev.iter().find(|e| e["event"] == "ended").unwrap()["reason"],
        "remotebye"
    );
}

#[test]
fn calling_an_unregistered_user_reports_the_proxys_404() {
    let k = start_kamailio("proxy.cfg");
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:carol@127.0.0.1:{}", k.port),
            "--server",
            &format!("sip:127.0.0.1:{}", k.port),
            "--user",
            "alice",
            "--password",
            "wonderland",
        ],
        &[],
    );
    assert!(!out.status.success());
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["status"], 404, "{ev:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused: 404 Not Found"), "{err}");
}

#[test]
fn a_wrong_password_for_calls_is_refused_clearly() {
    let k = start_kamailio("proxy.cfg");
    let out = agent(&[
        "call",
        &format!("sip:bob@127.0.0.1:{}", k.port),
        "--server",
        &format!("sip:127.0.0.1:{}", k.port),
        "--user",
        "alice",
        "--password",
        "nope",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403 Forbidden") && err.contains("check the user name and password"),
        "{err}"
    );
}
