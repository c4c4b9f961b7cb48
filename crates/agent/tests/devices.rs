//! The agent on real sound devices: cpal through ALSA's pulse plugin to a PulseAudio server
//! of the test's own, whose null sinks stand in for a headset. What is played into the
//! `sb_mic` sink is what the agent's microphone hears; what the agent plays lands in
//! `sb_speaker`, recorded from its monitor with `parecord`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use switchboard_media::tone;
use switchboard_media::wav::{read_mono, WavSink};

fn tone_wav(path: &Path, hz: f64, seconds: usize) {
    let mut sink = WavSink::create(path, 48000).unwrap();
    sink.write(&tone::sine(hz, 48000, 8000.0, 0, 48000 * seconds))
        .unwrap();
    sink.finish().unwrap();
}

fn share(path: &Path, hz: f64, other: f64) -> (f64, usize) {
    let (samples, rate) = read_mono(path).unwrap_or_else(|e| panic!("{e}"));
    let (wins, loud) = tone::detect(&samples, rate, &[hz, other]);
    (wins[0] as f64 / loud.max(1) as f64, loud)
}

#[test]
fn devices_are_listed_from_the_sound_server() {
    let pulse = PulseServer::start();
    let out = agent(&["devices"])
        .env("PULSE_SERVER", pulse.server())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for side in ["inputs", "outputs"] {
        let names: Vec<&str> = list[side]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert!(
            names.contains(&"default") && names.contains(&"pulse"),
            "{side}: {names:?}"
        );
    }
}

#[test]
fn the_agent_captures_and_plays_through_real_devices() {
    let pulse = PulseServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The "microphone": 440 Hz played into sb_mic for the whole test.
    let mic = dir.path().join("mic.wav");
    tone_wav(&mic, 440.0, 12);
    let mut mic_player = pulse
        .client("paplay")
        .args(["-d", "sb_mic"])
        .arg(&mic)
        .spawn()
        .unwrap();
    // What the agent's speaker plays.
    let speaker = dir.path().join("speaker.wav");
    let mut recorder = pulse
        .client("parecord")
        .args(["-d", "sb_speaker.monitor", "--file-format=wav"])
        .arg(&speaker)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = pulse.server();
    let (mut callee, port) = answering_agent_env(
        &[
            "--codec",
            "pcmu",
            "--input-device",
            "default",
            "--output-device",
            "default",
        ],
        &[("PULSE_SERVER", &server)],
    );
    // The caller: a headless agent playing 1000 Hz and recording what it hears.
    let far = dir.path().join("far.wav");
    tone_wav(&far, 1000.0, 8);
    let heard = dir.path().join("heard-by-caller.wav");
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:agent@127.0.0.1:{port}"),
            "--play",
            far.to_str().unwrap(),
            "--record",
            heard.to_str().unwrap(),
            "--hangup-after",
            "5",
        ],
        &[],
    );
    assert!(out.status.success(), "{ev:?}");
    let callee_out = wait_output(&mut callee, Duration::from_secs(10), &[]);
    // SIGINT lets parecord finish the WAV header.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &recorder.id().to_string()])
        .status();
    let _ = recorder.wait();
    let _ = mic_player.kill();
    let _ = mic_player.wait();
    let callee_ev = events(&callee_out.stdout);
    assert!(
        callee_out.status.success(),
        "{callee_ev:?}\n{}",
        pulse.log()
    );
    let opened: Vec<&str> = callee_ev
        .iter()
        .filter(|e| e["event"] == "device" && e["kind"] == "opened")
        .filter_map(|e| e["direction"].as_str())
        .collect();
    assert!(
        opened.contains(&"input") && opened.contains(&"output"),
        "{callee_ev:?}"
    );
    // The microphone's 440 Hz crossed the call to the caller.
    let (s, loud) = share(&heard, 440.0, 1000.0);
    assert!(
        loud >= 40 && s >= 0.9,
        "the caller heard the mic's 440 Hz in {s:.2} of {loud}"
    );
    // The caller's 1000 Hz came out of the speaker device.
    let (s, loud) = share(&speaker, 1000.0, 440.0);
    assert!(
        loud >= 40 && s >= 0.9,
        "the speaker played 1000 Hz in {s:.2} of {loud}"
    );
}

#[test]
fn a_sound_server_that_goes_away_mid_call_leaves_the_call_up_with_a_warning() {
    let mut pulse = PulseServer::start();
    let server = pulse.server();
    let (mut callee, port) = answering_agent_env(
        &[
            "--input-device",
            "no such headset",
            "--output-device",
            "default",
        ],
        &[("PULSE_SERVER", &server)],
    );
    let caller = std::thread::spawn(move || {
        run_agent(
            &[
                "call",
                &format!("sip:agent@127.0.0.1:{port}"),
                "--hangup-after",
                "5",
            ],
            &[],
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    pulse.kill();
    let (out, ev) = caller.join().unwrap();
    assert!(out.status.success(), "{ev:?}");
    let callee_out = wait_output(&mut callee, Duration::from_secs(10), &[]);
    let cev = events(&callee_out.stdout);
    assert!(callee_out.status.success(), "no crash: {cev:?}");
    let kinds: Vec<(&str, &str)> = cev
        .iter()
        .filter(|e| e["event"] == "device")
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["direction"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("fallback", "input")),
        "a missing headset falls back to the default: {kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, _)| *k == "lost" || *k == "unavailable"),
        "the vanished sound server is reported: {kinds:?}"
    );
    let ended = cev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(
        ended["reason"], "remotebye",
        "the call went on to its end: {ended}"
    );
}
