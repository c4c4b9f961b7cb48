//! Attended transfer (REFER with Replaces, RFC 3891; NOTIFY sipfrag progress, RFC 3515): the
//! agent talks to a caller, consults a second party, then connects the two and leaves.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// An answering agent on a port it chose, once it listens: (the agent, its port).
fn answerer(user: &str, extra: &[&str]) -> (std::process::Child, u16) {
    let mut args = vec![
        "answer",
        "--bind",
        "127.0.0.1:0",
        "--user",
        user,
        "--wait",
        "20",
    ];
    args.extend_from_slice(extra);
    let mut child = agent(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port = listening_port(&mut child);
    (child, port)
}

#[test]
fn attended_transfer_between_three_agents() {
    let (mut carol, cp) = answerer("carol", &["--calls", "2", "--hangup-after", "3"]);
    let (mut bob, bp) = answerer("bob", &["--hangup-after", "8", "--accept-refer"]);
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:bob@127.0.0.1:{bp}"),
            "--transfer",
            &format!("sip:carol@127.0.0.1:{cp}"),
            "--attended",
            "--hangup-after",
            "15",
        ],
        &[],
    );
    assert!(out.status.success());
    let n = names(&ev);
    assert!(n.contains(&"consulting".into()), "{n:?}");
    let progress: Vec<(u64, bool)> = ev
        .iter()
        .filter(|e| e["event"] == "transfer_progress")
        .map(|e| (e["status"].as_u64().unwrap(), e["final"].as_bool().unwrap()))
        .collect();
    assert_eq!(progress.last(), Some(&(200, true)), "{progress:?}");
    // Both of our calls ended: the original by us, the consultation by Carol (replaced).
    // In either order: Carol's BYE on the replaced consultation races the final NOTIFY.
    let mut reasons: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "ended")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["local", "remotebye"], "{ev:?}");

    let bob_out = wait_output(&mut bob, Duration::from_secs(15), &[]);
    let bev = events(&bob_out.stdout);
    let req = bev
        .iter()
        .find(|e| e["event"] == "transfer_requested")
        .unwrap_or_else(|| panic!("{bev:?}"));
    assert!(req["replaces"].as_str().unwrap().contains(";to-tag="));
    let carol_out = wait_output(&mut carol, Duration::from_secs(15), &[]);
    let cev = events(&carol_out.stdout);
    // Carol's second call replaced the consultation and came from Bob.
    let incoming: Vec<&serde_json::Value> =
        cev.iter().filter(|e| e["event"] == "incoming").collect();
    assert_eq!(incoming.len(), 2, "{cev:?}");
    assert!(incoming[1]["from"].as_str().unwrap().contains("sip:bob@"));
    assert!(!incoming[1]["replaces"].is_null());
    assert!(
        cev.iter()
            .any(|e| e["event"] == "ended" && e["reason"] == "replaced"),
        "{cev:?}"
    );
}

#[test]
fn attended_transfer_to_a_baresip_target() {
    // baresip (Debian's 1.0) as the transfer target. It does not implement Replaces (RFC 3891)
    // in either role: as the transferee it dials the whole Refer-To, headers and all, so that
    // role is covered by the agent-only test above. As the target it takes Bob's INVITE as a
    // new call, and we (the transferor) end the consultation ourselves, as RFC 5589 §7.2 says.
    let carol = Baresip::start("carol", "auto", 880);
    let (mut bob, bp) = answerer("bob", &["--hangup-after", "6", "--accept-refer"]);
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:bob@127.0.0.1:{bp}"),
            "--transfer",
            &carol.uri(),
            "--attended",
            "--hangup-after",
            "15",
        ],
        &[&carol],
    );
    assert!(out.status.success(), "{ev:?}");
    let progress: Vec<(u64, bool)> = ev
        .iter()
        .filter(|e| e["event"] == "transfer_progress")
        .map(|e| (e["status"].as_u64().unwrap(), e["final"].as_bool().unwrap()))
        .collect();
    assert_eq!(progress.last(), Some(&(200, true)), "{progress:?}");
    assert_eq!(ev.iter().filter(|e| e["event"] == "ended").count(), 2);
    carol.wait_for(
        "Call established: sip:bob@127.0.0.1",
        Duration::from_secs(5),
    );
    let bob_out = wait_output(&mut bob, Duration::from_secs(15), &[&carol]);
    let bev = events(&bob_out.stdout);
    assert!(
        bev.iter().filter(|e| e["event"] == "established").count() == 2,
        "{bev:?}"
    );
}

#[test]
fn a_transfer_from_a_stranger_is_declined_without_consent() {
    // Bob takes calls directly (no registrar) and was not told to follow transfers: the
    // caller's REFER is declined, Carol is never called.
    let (mut carol, cp) = answerer("carol", &["--calls", "1"]);
    let (mut bob, bp) = answerer("bob", &["--hangup-after", "6"]);
    let (_out, ev) = run_agent(
        &[
            "call",
            &format!("sip:bob@127.0.0.1:{bp}"),
            "--transfer",
            &format!("sip:carol@127.0.0.1:{cp}"),
            "--hangup-after",
            "5",
        ],
        &[],
    );
    let progress: Vec<(u64, bool)> = ev
        .iter()
        .filter(|e| e["event"] == "transfer_progress")
        .map(|e| (e["status"].as_u64().unwrap(), e["final"].as_bool().unwrap()))
        .collect();
    assert_eq!(progress.last(), Some(&(603, true)), "{progress:?} {ev:?}");
    let bob_out = wait_output(&mut bob, Duration::from_secs(15), &[]);
    let bev = events(&bob_out.stdout);
    let refused = bev
        .iter()
        .find(|e| e["event"] == "transfer_refused")
        .unwrap_or_else(|| panic!("{bev:?}"));
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("--accept-refer"),
        "{refused}"
    );
    // Carol would have been called by now; she is stopped and tells what she saw.
    let carol_out = wait_output(&mut carol, Duration::from_secs(1), &[]);
    let cev = events(&carol_out.stdout);
    assert!(
        !cev.iter().any(|e| e["event"] == "incoming"),
        "Carol was called: {cev:?}"
    );
}
