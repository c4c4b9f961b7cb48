//! Calls between the headless agent and the real baresip (Debian `baresip`, installed by
//! tests/peers/install.sh), both directions, on 127.0.0.1: ringing and answer, DTMF, hold and
//! resume, BYE from either side, CANCEL before an answer, and a blind transfer to a second
//! baresip. Each test prints baresip's log and the agent's events when it fails.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn agent_calls_baresip_with_dtmf_hold_and_hangs_up() {
    let bob = Baresip::start("bob", "auto", 440);
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--bind",
            "127.0.0.1:0",
            "--dtmf",
            "19#",
            "--hold-after",
            "1.5",
            "--hangup-after",
            "5",
        ],
        &[&bob],
    );
    assert!(out.status.success());
    let n = names(&ev);
    assert!(
        n.contains(&"progress".into()) && n.contains(&"established".into()),
        "{n:?}"
    );
    let est = ev.iter().find(|e| e["event"] == "established").unwrap();
    assert_eq!(
        est["media"]["codec"], "opus",
        "baresip offers Opus and so do we, first"
    );
    assert!(est["media"]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Hold then resume, as baresip answered them.
    let dirs: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "media")
        .map(|e| e["media"]["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["sendonly", "sendrecv"]);
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local");
    // baresip sends audio: our RTP port received it.
    assert!(
        ended["rtp_packets_received"].as_u64().unwrap() > 20,
        "{ended}"
    );
    // Telephone-event was agreed, so the digits went in the media path (RFC 4733).
    assert!(ev
        .iter()
        .filter(|e| e["event"] == "dtmf_sent")
        .all(|e| e["via"] == "rfc4733"));
    bob.wait_for("received event: '1' (end=1)", Duration::from_secs(2));
    bob.wait_for("received event: '9' (end=1)", Duration::from_secs(2));
    bob.wait_for("received event: '#' (end=1)", Duration::from_secs(2));
    bob.wait_for("terminated", Duration::from_secs(3));
}

#[test]
fn baresip_calls_the_agent_and_hangs_up() {
    let bob = Baresip::start("bob", "auto", 440);
    let (mut child, port) = answering_agent(&["--user", "agent"]);
    bob.command("dial", &format!("sip:agent@127.0.0.1:{port}"));
    bob.wait_for("Call established", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    bob.command("hangup", "");
    let out = wait_output(&mut child, Duration::from_secs(10), &[&bob]);
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:?}");
    let n = names(&ev);
    assert!(
        n.contains(&"incoming".into()) && n.contains(&"established".into()),
        "{n:?}"
    );
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "remotebye", "{ev:?}");
}

#[test]
fn baresip_calls_the_agent_which_hangs_up() {
    let bob = Baresip::start("bob", "auto", 440);
    let mut child = agent(&[
        "answer",
        "--bind",
        "127.0.0.1:0",
        "--answer-after",
        "0.5",
        "--hangup-after",
        "1.5",
        "--wait",
        "20",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let port = listening_port(&mut child);
    bob.command("dial", &format!("sip:agent@127.0.0.1:{port}"));
    let out = wait_output(&mut child, Duration::from_secs(15), &[&bob]);
    assert!(out.status.success());
    let ev = events(&out.stdout);
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local", "{ev:?}");
    bob.wait_for("terminated", Duration::from_secs(3));
}

#[test]
fn cancel_before_baresip_answers() {
    let bob = Baresip::start("bob", "manual", 440);
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--bind",
            "127.0.0.1:0",
            "--ring-timeout",
            "1.5",
        ],
        &[&bob],
    );
    assert!(
        !out.status.success(),
        "nobody answered: a failure for a script"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody answered"));
    let n = names(&ev);
    assert!(n.contains(&"progress".into()), "baresip rang: {n:?}");
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local", "{ev:?}");
    // baresip saw the CANCEL: its incoming call is gone.
    bob.wait_for("session closed", Duration::from_secs(3));
}

#[test]
fn blind_transfer_to_a_second_baresip() {
    let bob = Baresip::start("bob", "auto", 440);
    let carol = Baresip::start("carol", "auto", 880);
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--bind",
            "127.0.0.1:0",
            "--transfer",
            &carol.uri(),
            "--hangup-after",
            "15",
        ],
        &[&bob, &carol],
    );
    assert!(out.status.success());
    let progress: Vec<(u64, bool)> = ev
        .iter()
        .filter(|e| e["event"] == "transfer_progress")
        .map(|e| (e["status"].as_u64().unwrap(), e["final"].as_bool().unwrap()))
        .collect();
    assert_eq!(progress.first(), Some(&(202, false)), "{progress:?}");
    assert_eq!(progress.last(), Some(&(200, true)), "{progress:?}");
    // Carol now talks to Bob.
    carol.wait_for(
        "Call established: sip:bob@127.0.0.1",
        Duration::from_secs(5),
    );
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local");
}
