//! The agent against SIPp's built-in call scenarios (Debian `sip-tester`): SIPp as the caller
//! (`-sn uac`: INVITE, 180/200, ACK, BYE) to `switchboard-agent answer`, and SIPp as the callee
//! (`-sn uas`) answering `switchboard-agent call`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn sipp_calls_the_agent() {
    let (mut child, port) = answering_agent(&["--calls", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-sn",
            "uac",
            "-s",
            "agent",
            "-i",
            "127.0.0.1",
            "-m",
            "3",
            "-r",
            "3",
        ])
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .current_dir(dir.path())
        .output()
        .expect("sipp is not installed — run tests/peers/install.sh");
    let agent_out = wait_output(&mut child, Duration::from_secs(15), &[]);
    assert!(
        out.status.success(),
        "sipp: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&agent_out.stdout);
    assert_eq!(
        ev.iter().filter(|e| e["event"] == "established").count(),
        3,
        "{ev:?}"
    );
    assert!(agent_out.status.success());
}

#[test]
fn the_agent_calls_sipp() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sipp, port) = spawn_on_udp_port(free_udp_port, |port| {
        Command::new("sipp")
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
            ])
            .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is not installed — run tests/peers/install.sh")
    });
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:service@127.0.0.1:{port}"),
            "--hangup-after",
            "1",
        ],
        &[],
    );
    let status = sipp.wait().unwrap();
    assert!(out.status.success());
    assert!(names(&ev).contains(&"established".into()), "{ev:?}");
    assert!(status.success(), "sipp's uas scenario saw the whole call");
}

/// SIPp's `uas` answers and sends no audio, and never hangs up: with `--media-timeout 2`
/// the agent says so and ends the call itself (a peer or a router gone without a BYE), and
/// SIPp sees the BYE. The call was not hung up by `--hangup-after` (none is given).
#[test]
fn a_call_without_audio_from_the_other_side_is_ended_after_the_media_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sipp, port) = spawn_on_udp_port(free_udp_port, |port| {
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is not installed — run tests/peers/install.sh")
    });
    let started = std::time::Instant::now();
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:service@127.0.0.1:{port}"),
            "--media-timeout",
            "2",
        ],
        &[],
    );
    let took = started.elapsed();
    let status = sipp.wait().unwrap();
    let names = names(&ev);
    assert!(names.contains(&"established".into()), "{ev:?}");
    let silent = ev
        .iter()
        .find(|e| e["event"] == "media_error")
        .unwrap_or_else(|| panic!("no media_error: {ev:?}"));
    assert_eq!(silent["kind"], "no_audio", "{silent}");
    assert!(
        silent["error"]
            .as_str()
            .is_some_and(|e| e.contains("no audio from the other side for 2 s")),
        "{silent}"
    );
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local", "{ended}");
    assert!(
        took < Duration::from_secs(15),
        "ended by the media timeout, not SIPp's: {took:?}"
    );
    assert!(status.success(), "SIPp's uas saw the BYE");
    assert!(
        out.status.success(),
        "a call ended for silence is no failure of the agent"
    );
}

fn scenario(name: &str) -> String {
    format!(
        "{}/../../tests/peers/sipp/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs a SIPp client scenario against `port` and returns its output (asserting success).
fn sipp_client(port: u16, scenario_file: &str, dir: &std::path::Path) -> std::process::Output {
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-sf", &scenario(scenario_file)])
        .args(["-s", "agent", "-i", "127.0.0.1", "-m", "1"])
        .args([
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_err",
        ])
        .arg("-trace_counts")
        .current_dir(dir)
        .output()
        .expect("sipp is not installed — run tests/peers/install.sh");
    let errors: String = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        out.status.success(),
        "sipp {scenario_file}: {}\n{}\n{errors}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// SIPp's per-message counters (`-trace_counts`), final row: `{step}_{message}_{counter}` →
/// value, in scenario order.
fn sipp_counts(dir: &std::path::Path) -> Vec<(String, u64)> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_counts.csv"))
        .expect("sipp wrote no -trace_counts file");
    let text = std::fs::read_to_string(file.path()).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next().unwrap().split(';').collect();
    let last: Vec<&str> = lines.next_back().unwrap().split(';').collect();
    head.iter()
        .zip(last)
        .skip(2)
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The `nth` (0-based) counter whose name ends with `suffix`, e.g. `_BYE_Retrans`.
fn count(counts: &[(String, u64)], suffix: &str, nth: usize) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .nth(nth)
        .unwrap_or_else(|| panic!("no counter {suffix} #{nth} in {counts:?}"))
        .1
}

/// Starts a SIPp server scenario on a free port; returns the child and the port.
fn sipp_server(scenario_file: &str, dir: &std::path::Path) -> (std::process::Child, u16) {
    spawn_on_udp_port(free_udp_port, |port| {
        Command::new("sipp")
            .args(["-sf", &scenario(scenario_file)])
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
            .args([
                "-nostdin",
                "-timeout",
                "30s",
                "-timeout_error",
                "-trace_err",
            ])
            .arg("-trace_counts")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp is not installed — run tests/peers/install.sh")
    })
}

#[test]
fn sipp_cancels_before_answer_and_gets_487() {
    let (mut child, port) = answering_agent(&["--answer-after", "10"]);
    let dir = tempfile::tempdir().unwrap();
    sipp_client(port, "uac_cancel.xml", dir.path());
    // The agent keeps waiting for a call it can answer; stop it once it has reported the end.
    let out = wait_output(&mut child, Duration::from_secs(2), &[]);
    let ev = events(&out.stdout);
    let ended: Vec<_> = ev.iter().filter(|e| e["event"] == "ended").collect();
    assert_eq!(ended.len(), 1, "{ev:?}");
    assert_eq!(ended[0]["reason"], "cancelled", "{ev:?}");
    assert!(!names(&ev).contains(&"established".into()), "{ev:?}");
}

#[test]
fn lost_ack_bad_dialogs_and_retransmitted_bye() {
    let (mut child, port) = answering_agent(&[]);
    let dir = tempfile::tempdir().unwrap();
    sipp_client(port, "uac_lost.xml", dir.path());
    let counts = sipp_counts(dir.path());
    assert!(
        count(&counts, "_200_Retrans", 0) >= 1,
        "the unacknowledged 200 was retransmitted: {counts:?}"
    );
    assert!(
        count(&counts, "_200_Retrans", 1) >= 1,
        "the retransmitted BYE got its 200 again: {counts:?}"
    );
    let out = wait_output(&mut child, Duration::from_secs(10), &[]);
    let ev = events(&out.stdout);
    let ended: Vec<_> = ev.iter().filter(|e| e["event"] == "ended").collect();
    assert_eq!(ended.len(), 1, "one call, one end: {ev:?}");
    assert_eq!(ended[0]["reason"], "remotebye", "{ev:?}");
    assert!(out.status.success(), "{ev:?}");
}

/// The agent calls a SIPp server scenario; returns the agent's output and events and SIPp's
/// counters, once SIPp has run the scenario to its end.
fn call_sipp_server(
    scenario_file: &str,
    agent_args: &[&str],
) -> (
    std::process::Output,
    Vec<serde_json::Value>,
    Vec<(String, u64)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (sipp, port) = sipp_server(scenario_file, dir.path());
    let uri = format!("sip:service@127.0.0.1:{port}");
    let mut args = vec!["call", &uri];
    args.extend_from_slice(agent_args);
    let (out, ev) = run_agent(&args, &[]);
    let sipp = sipp.wait_with_output().unwrap();
    assert!(
        sipp.status.success(),
        "sipp's {scenario_file} did not run to the end: {}",
        String::from_utf8_lossy(&sipp.stdout)
    );
    (out, ev, sipp_counts(dir.path()))
}

#[test]
fn the_agent_retransmits_over_a_lossy_path() {
    let (out, ev, counts) = call_sipp_server("uas_lost.xml", &["--hangup-after", "1"]);
    assert!(
        count(&counts, "_INVITE_Retrans", 0) >= 1,
        "the INVITE was retransmitted: {counts:?}"
    );
    assert!(
        count(&counts, "_BYE_Retrans", 0) >= 1,
        "the BYE was retransmitted: {counts:?}"
    );
    assert!(out.status.success(), "{ev:?}");
    assert!(names(&ev).contains(&"established".into()), "{ev:?}");
}

#[test]
fn reinvite_glare_is_resolved_with_491_and_a_retry() {
    let (out, ev, _) = call_sipp_server(
        "uas_glare.xml",
        &["--hold-after", "0.5", "--hangup-after", "9"],
    );
    assert!(out.status.success(), "{ev:?}");
    let directions: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "media")
        .map(|e| e["media"]["direction"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        directions,
        ["sendonly", "sendrecv"],
        "the hold landed after the retry, then the resume: {ev:?}"
    );
}

#[test]
fn malformed_requests_get_400_or_505_on_the_wire_and_the_agent_carries_on() {
    let (mut child, port) = answering_agent(&[]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let torture = format!(
        "{}/../sip/tests/torture/rfc4475",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut buf = [0u8; 4096];
    for (file, status) in [
        ("clerr.dat", "400"),
        ("badvers.dat", "505"),
        ("ncl.dat", "400"),
    ] {
        let data = std::fs::read(format!("{torture}/{file}")).unwrap();
        sock.send_to(&data, ("127.0.0.1", port)).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            reply.starts_with(&format!("SIP/2.0 {status} ")),
            "{file}: {reply}"
        );
    }
    // Bytes that are not SIP at all get nothing; the agent still answers OPTIONS.
    sock.send_to(b"\x00\x01\x02 hello", ("127.0.0.1", port))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:agent@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: opt1@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(options.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("an answer to OPTIONS");
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
    let _ = child.kill();
    let _ = child.wait();
}
