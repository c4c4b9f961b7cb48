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

/// Per 50 ms block of the last `seconds` of a recording, the share of its energy at each of
/// `notes`: the blocks where every note holds at least `floor` of it, and the blocks.
fn all_notes_heard(
    path: &std::path::Path,
    notes: &[f64],
    floor: f64,
    seconds: f64,
) -> (usize, usize) {
    let (samples, rate) = switchboard_media::wav::read_mono(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let block = rate as usize / 20;
    let tail = ((seconds * f64::from(rate)) as usize).min(samples.len());
    let blocks: Vec<&[i16]> = samples[samples.len() - tail..]
        .chunks_exact(block)
        .collect();
    let all = blocks
        .iter()
        .filter(|b| {
            notes
                .iter()
                .all(|&f| switchboard_media::tone::energy_share(b, rate, f) >= floor)
        })
        .count();
    eprintln!(
        "{}: {notes:?} each ≥ {floor} in {all} of {} blocks",
        path.display(),
        blocks.len()
    );
    (all, blocks.len())
}

#[test]
fn a_three_way_conference_mixed_by_the_agent() {
    // Alice (440 Hz) calls Bob (baresip, 523 Hz), then Carol (a headless agent, 659 Hz), and
    // joins the two calls: each of the three hears the other two. Bob's call is whatever
    // baresip chooses, Carol's Opus: the mix crosses rates.
    let dir = tempfile::tempdir().unwrap();
    let (alice_wav, carol_wav) = (dir.path().join("alice.wav"), dir.path().join("carol.wav"));
    tone_wav(&alice_wav, 440.0, 20);
    tone_wav(&carol_wav, 659.0, 20);
    let carol_heard = dir.path().join("carol-heard.wav");
    let alice_heard = dir.path().join("alice-heard.wav");
    let bob = Baresip::start("bob", "auto", 523);
    let (mut carol, cp) = answerer(
        "carol",
        &[
            "--hangup-after",
            "15",
            "--play",
            carol_wav.to_str().unwrap(),
            "--record",
            carol_heard.to_str().unwrap(),
        ],
    );
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--conference",
            &format!("sip:carol@127.0.0.1:{cp}"),
            "--play",
            alice_wav.to_str().unwrap(),
            "--record",
            alice_heard.to_str().unwrap(),
            "--hangup-after",
            "5",
        ],
        &[&bob],
    );
    assert!(out.status.success(), "{ev:?}");
    let conference = ev
        .iter()
        .find(|e| e["event"] == "conference")
        .unwrap_or_else(|| panic!("no conference: {ev:?}"));
    assert_eq!(
        conference["calls"].as_array().unwrap().len(),
        2,
        "{conference}"
    );
    // Leaving ended both calls, ours.
    let ended: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "ended").collect();
    assert_eq!(ended.len(), 2, "{ev:?}");
    assert!(ended.iter().all(|e| e["reason"] == "local"), "{ended:?}");
    let carol_out = wait_output(&mut carol, Duration::from_secs(10), &[&bob]);
    assert!(carol_out.status.success());

    // The last 2 s of each: the two others at once in most blocks.
    let (both, blocks) = all_notes_heard(
        &bob.heard_wav(Duration::from_secs(10)),
        &[440.0, 659.0],
        0.15,
        2.0,
    );
    assert!(
        both * 10 >= blocks * 8,
        "Bob heard Alice and Carol together in {both} of {blocks} blocks"
    );
    let (both, blocks) = all_notes_heard(&carol_heard, &[440.0, 523.0], 0.15, 2.0);
    assert!(
        both * 10 >= blocks * 8,
        "Carol heard Alice and Bob together in {both} of {blocks} blocks"
    );
    // Alice hears each call on its own recording: Bob's on the first, Carol's on the second.
    let (bob_only, blocks) = all_notes_heard(&alice_heard, &[523.0], 0.8, 2.0);
    assert!(
        bob_only * 10 >= blocks * 8,
        "Alice's first call: Bob alone in {bob_only} of {blocks}"
    );
    let (carol_only, blocks) =
        all_notes_heard(&dir.path().join("alice-heard-2.wav"), &[659.0], 0.8, 2.0);
    assert!(
        carol_only * 10 >= blocks * 8,
        "Alice's second call: Carol alone in {carol_only} of {blocks}"
    );
}

#[test]
fn a_conference_ends_at_its_time_after_the_first_party_left() {
    // Alice calls Dave, who leaves after 3 s, and joins Carol, who would stay 30 s. Alice's
    // --hangup-after 8 is the conference's: she hangs up on Carol then, not when Carol leaves.
    let (mut dave, dp) = answerer("dave", &["--hangup-after", "3"]);
    let (mut carol, cp) = answerer("carol", &["--hangup-after", "30"]);
    let started = std::time::Instant::now();
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:dave@127.0.0.1:{dp}"),
            "--conference",
            &format!("sip:carol@127.0.0.1:{cp}"),
            "--hangup-after",
            "8",
        ],
        &[],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{ev:?}");
    assert!(ev.iter().any(|e| e["event"] == "conference"), "{ev:?}");
    let ended: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "ended").collect();
    assert_eq!(ended.len(), 2, "{ev:?}");
    assert_ne!(ended[0]["reason"], "local", "Dave left first: {ended:?}");
    assert_eq!(
        ended[1]["reason"], "local",
        "Alice ended Carol's call: {ended:?}"
    );
    assert!(
        took < Duration::from_secs(20),
        "Alice left at the conference's time, not Carol's: {took:?}"
    );
    for p in [&mut dave, &mut carol] {
        assert!(wait_output(p, Duration::from_secs(10), &[])
            .status
            .success());
    }
}
