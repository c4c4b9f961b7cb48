//! Calls that carry audio, against baresip (Debian's 1.0): each side plays a tone of its own
//! (baresip its `ausine` at 440 Hz, the agent a WAV file at 1000 Hz) and records what it hears;
//! a Goertzel detector checks that each direction carried the other side's tone — with Opus,
//! PCMU and PCMA, with the agent calling and being called.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use switchboard_media::tone;
use switchboard_media::wav::{read_mono, WavSink};

const AGENT_HZ: f64 = 1000.0;
const BARESIP_HZ: u32 = 440;

fn tone_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tone1000.wav");
    let mut sink = WavSink::create(&path, 8000).unwrap();
    sink.write(&tone::sine(AGENT_HZ, 8000, 8000.0, 0, 8000 * 6))
        .unwrap();
    sink.finish().unwrap();
    path
}

/// Of the loud 50 ms blocks of `path`, the share where `hz` dominates (and how many blocks).
fn share_of(path: &Path, hz: f64, other: f64) -> (f64, usize) {
    let (samples, rate) = read_mono(path).unwrap_or_else(|e| panic!("{e}"));
    let (wins, loud) = tone::detect(&samples, rate, &[hz, other]);
    (wins[0] as f64 / loud.max(1) as f64, loud)
}

fn check_both_directions(agent_heard: &Path, bob: &Baresip, ev: &[serde_json::Value], codec: &str) {
    let established = ev
        .iter()
        .find(|e| e["event"] == "established")
        .unwrap_or_else(|| panic!("no call: {ev:?}"));
    assert_eq!(established["media"]["codec"], codec, "{ev:?}");
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    let audio = &ended["audio"];
    assert!(audio["packets_received"].as_u64().unwrap() > 80, "{audio}");
    assert!(audio["packets_sent"].as_u64().unwrap() > 80, "{audio}");
    assert_eq!(audio["packets_lost"], 0, "loopback loses nothing: {audio}");
    let mos = audio["mos"].as_f64().unwrap();
    assert!(mos > 4.2, "a clean call rates high: {audio}");
    let (share, loud) = share_of(agent_heard, f64::from(BARESIP_HZ), AGENT_HZ);
    assert!(
        loud >= 30 && share >= 0.9,
        "the agent heard baresip's {BARESIP_HZ} Hz in {share:.2} of {loud} blocks"
    );
    let mut heard = None;
    for _ in 0..50 {
        heard = bob
            .heard_wav()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 44));
        if heard.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let heard = heard.unwrap_or_else(|| panic!("baresip recorded nothing\n{}", bob.log()));
    let (share, loud) = share_of(&heard, AGENT_HZ, f64::from(BARESIP_HZ));
    assert!(
        loud >= 30 && share >= 0.9,
        "baresip heard the agent's {AGENT_HZ} Hz in {share:.2} of {loud} blocks\n{}",
        bob.log()
    );
}

#[test]
fn the_agent_calls_baresip_and_tones_cross_both_ways_opus_pcmu_and_pcma() {
    for codec in ["opus", "PCMU", "PCMA"] {
        let bob = Baresip::start("bob", "auto", BARESIP_HZ);
        let dir = tempfile::tempdir().unwrap();
        let play = tone_file(dir.path());
        let record = dir.path().join("heard-by-agent.wav");
        let (out, ev) = run_agent(
            &[
                "call",
                &bob.uri(),
                "--codec",
                &codec.to_lowercase(),
                "--play",
                play.to_str().unwrap(),
                "--record",
                record.to_str().unwrap(),
                "--hangup-after",
                "3",
            ],
            &[&bob],
        );
        assert!(out.status.success(), "{codec}: {ev:?}");
        bob.wait_for("terminated", Duration::from_secs(5));
        check_both_directions(&record, &bob, &ev, codec);
    }
}

#[test]
fn baresip_calls_the_agent_and_tones_cross_both_ways() {
    let bob = Baresip::start("bob", "auto", BARESIP_HZ);
    let dir = tempfile::tempdir().unwrap();
    let play = tone_file(dir.path());
    let record = dir.path().join("heard-by-agent.wav");
    let (mut child, port) = answering_agent(&[
        "--codec",
        "pcmu",
        "--play",
        play.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
    ]);
    bob.command("dial", &format!("sip:agent@127.0.0.1:{port}"));
    bob.wait_for("Call established", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    bob.command("hangup", "");
    let out = wait_output(&mut child, Duration::from_secs(10), &[&bob]);
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:?}");
    bob.wait_for("terminated", Duration::from_secs(5));
    check_both_directions(&record, &bob, &ev, "PCMU");
}

#[test]
fn two_agents_exchange_rtcp_over_rtcp_mux_and_measure_the_round_trip() {
    let (mut callee, port) = answering_agent(&[]);
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:agent@127.0.0.1:{port}"),
            "--hangup-after",
            "7",
        ],
        &[],
    );
    assert!(out.status.success(), "{ev:?}");
    let _ = wait_output(&mut callee, Duration::from_secs(10), &[]);
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    let audio = &ended["audio"];
    // Reports go every 5 s (the first 2.5 s in): at least one each way in 7 s.
    assert!(audio["rtcp_received"].as_u64().unwrap() >= 1, "{audio}");
    let rtt = audio["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{audio}"));
    assert!((0.0..100.0).contains(&rtt), "loopback round trip: {audio}");
}
