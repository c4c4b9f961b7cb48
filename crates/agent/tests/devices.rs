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
use switchboard_media::wav::read_mono;

/// A callee's flags: PCMU, on the sound server's default microphone and speaker.
const PCMU_ON_DEFAULT_DEVICES: &[&str] = &[
    "--codec",
    "pcmu",
    "--input-device",
    "default",
    "--output-device",
    "default",
];

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
    let (mut callee, port) =
        answering_agent_env(PCMU_ON_DEFAULT_DEVICES, &[("PULSE_SERVER", &server)]);
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
    // The sound server goes away once the call is up and the devices have said how they
    // opened (#13 item 28: on the events, not after a fixed 2 s). Killed while they were
    // still opening, there was no fallback to report yet (seen once, on a loaded machine).
    let mut cev = events_until(&mut callee, "established");
    while !cev
        .iter()
        .any(|e| e["event"] == "device" && e["kind"] == "fallback")
    {
        cev.extend(events_until(&mut callee, "device"));
    }
    pulse.kill();
    let (out, ev) = caller.join().unwrap();
    assert!(out.status.success(), "{ev:?}");
    let callee_out = wait_output(&mut callee, Duration::from_secs(10), &[]);
    cev.extend(events(&callee_out.stdout));
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

#[test]
fn the_test_sound_plays_on_the_device_chosen_and_nowhere_else() {
    let pulse = PulseServer::start();
    let home = pulse.alsa_home();
    let dir = tempfile::tempdir().unwrap();
    let (ring_wav, speaker_wav) = (dir.path().join("ring.wav"), dir.path().join("speaker.wav"));
    let ring_rec = pulse.record("sb_ring", &ring_wav);
    let speaker_rec = pulse.record("sb_speaker", &speaker_wav);
    let out = agent(&[
        "devices",
        "--test-sound",
        "chime",
        "--output-device",
        "jack",
    ])
    .env("PULSE_SERVER", pulse.server())
    .env("HOME", &home)
    .output()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop_recorder(ring_rec);
    stop_recorder(speaker_rec);
    let ev = events(&out.stdout);
    assert!(
        out.status.success(),
        "{ev:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ev[0]["event"], "played", "{ev:?}");
    assert_eq!(ev[0]["device"], "jack", "{ev:?}");
    // Each of the three notes, in the chosen device's sink.
    let hz = switchboard_media::check::TEST_SOUND_HZ;
    let (wins, loud) = notes(&ring_wav, &hz);
    assert!(
        wins.iter().all(|&w| w >= 4),
        "the chime's notes on the chosen device: {wins:?} of {loud} loud blocks"
    );
    // Nothing on the default speaker.
    let (_, loud) = notes(&speaker_wav, &hz);
    assert_eq!(loud, 0, "the default speaker stayed silent");
}

#[test]
fn the_microphone_test_reads_the_level_of_what_the_microphone_hears() {
    let pulse = PulseServer::start();
    let level = |ev: &[serde_json::Value]| {
        ev.iter()
            .find(|e| e["event"] == "mic_test_done")
            .and_then(|e| e["loudest_db"].as_f64())
            .unwrap_or_else(|| panic!("no mic_test_done: {ev:?}"))
    };
    // Nothing played into the "microphone": silence.
    let out = agent(&["devices", "--mic-test", "1.5", "--input-device", "pulse"])
        .env("PULSE_SERVER", pulse.server())
        .output()
        .unwrap();
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:?}");
    assert!(
        ev.iter().any(|e| e["event"] == "mic_level"),
        "readings while testing: {ev:?}"
    );
    assert!(
        level(&ev) < -55.0,
        "a silent microphone reads {}",
        level(&ev)
    );
    // A tone of -15 dBFS RMS played into it.
    let dir = tempfile::tempdir().unwrap();
    let mic = dir.path().join("mic.wav");
    tone_wav(&mic, 440.0, 10);
    let mut player = pulse
        .client("paplay")
        .args(["-d", "sb_mic"])
        .arg(&mic)
        .spawn()
        .unwrap();
    let out = agent(&["devices", "--mic-test", "2", "--input-device", "pulse"])
        .env("PULSE_SERVER", pulse.server())
        .output()
        .unwrap();
    let _ = player.kill();
    let _ = player.wait();
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:?}");
    let loudest = level(&ev);
    assert!(
        (-25.0..=-8.0).contains(&loudest),
        "a -15 dBFS tone reads {loudest} dBFS: {ev:?}"
    );
}

#[test]
fn an_incoming_call_rings_on_the_ringing_device_until_it_is_answered() {
    let pulse = PulseServer::start();
    let home = pulse.alsa_home();
    let server = pulse.server();
    let dir = tempfile::tempdir().unwrap();
    let ring_wav = dir.path().join("ring.wav");
    let speaker_wav = dir.path().join("speaker.wav");
    let ring_rec = pulse.record("sb_ring", &ring_wav);
    let speaker_rec = pulse.record("sb_speaker", &speaker_wav);
    let (mut callee, port) = answering_agent_env(
        &[
            "--answer-after",
            "3",
            "--ring-device",
            "jack",
            "--ring-volume",
            "50",
            "--output-device",
            "default",
        ],
        &[("PULSE_SERVER", &server), ("HOME", &home)],
    );
    let far = dir.path().join("far.wav");
    tone_wav(&far, 1000.0, 12);
    let caller = std::thread::spawn(move || {
        run_agent(
            &[
                "call",
                &format!("sip:agent@127.0.0.1:{port}"),
                "--play",
                far.to_str().unwrap(),
                "--hangup-after",
                "5",
            ],
            &[],
        )
    });
    // Each sink also has the recorder's keep-alive stream.
    let count = |v: &[String], sink: &str| v.iter().filter(|s| *s == sink).count();
    let pair = |v: &[String]| (count(v, "sb_ring"), count(v, "sb_speaker"));
    // While it rings (on the agent's event, #13 item 28, not after a fixed 1.5 s): the ring
    // plays on its device and the call's output is open. Streams open a moment after the
    // event, so look until they are there (or 5 s pass), then check.
    let mut cev = events_until(&mut callee, "ringing");
    let ringing = pulse.sinks_when(|v| pair(v) == (2, 2));
    // Answered at 3 s: the ring has stopped, the call plays on the speaker.
    cev.extend(events_until(&mut callee, "established"));
    let talking = pulse.sinks_when(|v| pair(v) == (1, 2));
    let (out, ev) = caller.join().unwrap();
    assert!(out.status.success(), "{ev:?}");
    let callee_out = wait_output(&mut callee, Duration::from_secs(10), &[]);
    stop_recorder(ring_rec);
    stop_recorder(speaker_rec);
    cev.extend(events(&callee_out.stdout));
    assert!(callee_out.status.success(), "{cev:?}");
    assert_eq!(
        pair(&ringing),
        (2, 2),
        "while ringing, the ring plays on its device and the call's output is open: {ringing:?}"
    );
    assert_eq!(
        pair(&talking),
        (1, 2),
        "after the answer the ring is gone and the call plays: {talking:?}"
    );
    let order = names(&cev);
    let (r, e) = (
        order.iter().position(|n| n == "ringing"),
        order.iter().position(|n| n == "established"),
    );
    assert!(r.is_some() && r < e, "{order:?}");
    // No call audio on the ringing device. (That the ring's own sound reaches the device it
    // is played on is shown by the test-sound test: the same player. Here a null sink's
    // monitor, recorded beside a second stream of the same process, missed parts of it.)
    let (samples, rate) = read_mono(&ring_wav).unwrap();
    let call_blocks = samples
        .chunks_exact(rate as usize / 20)
        .filter(|b| tone::energy_share(b, rate, 1000.0) > 0.5)
        .count();
    assert_eq!(call_blocks, 0, "no call audio on the ringing device");
    // The call on the speaker, with no ring in it.
    let (wins, loud) = notes(&speaker_wav, &[1000.0, 440.0, 480.0]);
    assert!(
        loud >= 20 && wins[0] * 10 >= loud * 9,
        "the call on the speaker: {wins:?} of {loud}"
    );
}

/// The peak of what the speaker sink played while a caller playing a 1000 Hz tone of peak
/// 8000 called an agent with `callee_flags`; the caller adds `caller_flags`.
fn speaker_peak(pulse: &PulseServer, callee_flags: &[&str], caller_flags: &[&str]) -> u16 {
    let server = pulse.server();
    let dir = tempfile::tempdir().unwrap();
    let speaker_wav = dir.path().join("speaker.wav");
    let speaker_rec = pulse.record("sb_speaker", &speaker_wav);
    let mut flags = vec!["--output-device", "default", "--codec", "pcmu"];
    flags.extend_from_slice(callee_flags);
    let (mut callee, port) = answering_agent_env(&flags, &[("PULSE_SERVER", &server)]);
    let far = dir.path().join("far.wav");
    tone_wav(&far, 1000.0, 8);
    let uri = format!("sip:agent@127.0.0.1:{port}");
    let mut args = vec![
        "call",
        &uri,
        "--play",
        far.to_str().unwrap(),
        "--hangup-after",
        "3",
    ];
    args.extend_from_slice(caller_flags);
    let (out, ev) = run_agent(&args, &[]);
    assert!(out.status.success(), "{ev:?}");
    let callee_out = wait_output(&mut callee, Duration::from_secs(10), &[]);
    std::thread::sleep(Duration::from_millis(300));
    stop_recorder(speaker_rec);
    assert!(callee_out.status.success());
    let (samples, _) = read_mono(&speaker_wav).unwrap();
    samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
}

#[test]
fn mute_sends_silence_and_volume_scales_what_the_speaker_plays() {
    let pulse = PulseServer::start();
    let full = speaker_peak(&pulse, &[], &[]);
    assert!(
        (6500..=9500).contains(&full),
        "at full volume the tone of peak 8000 plays at {full}"
    );
    let quarter = speaker_peak(&pulse, &["--volume", "25"], &[]);
    assert!(
        (1500..=2600).contains(&quarter),
        "at 25 % it plays at {quarter} (full: {full})"
    );
    // The caller muted: its file runs on, the call carries silence.
    let muted = speaker_peak(&pulse, &[], &["--mute"]);
    assert!(muted < 100, "a muted caller was heard: peak {muted}");
}

/// Between calls the phone holds no sound device: none while it waits, none for a call it
/// turns away at once, both (microphone and speaker) from the moment a call rings until a
/// few seconds after it ended, none again after — and the next call opens them again.
#[test]
fn the_phone_holds_its_sound_devices_only_around_calls() {
    let pulse = PulseServer::start();
    let server = pulse.server();
    // It waits for calls for a minute (the usual 20 s run out before the second call's end,
    // and its end would close the devices too); one declined, two answered, a fourth never
    // made, so it is still waiting after the second.
    let (mut callee, port) = answering_agent_waiting(
        "60",
        &[
            &["--calls", "4", "--decline", "1", "--answer-after", "3"],
            PCMU_ON_DEFAULT_DEVICES,
        ]
        .concat(),
        &[("PULSE_SERVER", &server)],
    );
    let call = move |seconds: &str| {
        let seconds = seconds.to_owned();
        std::thread::spawn(move || {
            run_agent(
                &[
                    "call",
                    &format!("sip:agent@127.0.0.1:{port}"),
                    "--hangup-after",
                    &seconds,
                ],
                &[],
            )
        })
    };
    // Waiting for a call: a moment for anything opened at the start to show.
    std::thread::sleep(Duration::from_secs(2));
    let idle = pulse.streams();
    let mut seen = Vec::new();
    // The first call is declined (603) as it comes: nothing opens for it.
    let declined = call("3");
    seen.extend(events_until(&mut callee, "incoming"));
    let (out, _) = declined.join().unwrap();
    assert!(!out.status.success(), "the first call is declined");
    let turned_away = pulse.streams_when((1, 1), Duration::from_secs(2));
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let caller = call("3");
        seen.extend(events_until(&mut callee, "incoming"));
        // Open while it rings (before the answer, 3 s after the call came; a stream takes
        // up to 1.5 s to start).
        let ringing = pulse.streams_when((1, 1), Duration::from_millis(2500));
        seen.extend(events_until(&mut callee, "established"));
        let talking = pulse.streams_when((1, 1), Duration::from_secs(2));
        let (out, ev) = caller.join().unwrap();
        assert!(out.status.success(), "{ev:?}");
        seen.extend(events_until(&mut callee, "ended"));
        // Kept a moment after the call (a call that follows finds them open) …
        let just_after = pulse.streams();
        // … and closed after that.
        let later = pulse.streams_when((0, 0), Duration::from_secs(10));
        rounds.push((ringing, talking, just_after, later));
    }
    let _ = callee.kill();
    let _ = callee.wait();
    let opened = seen
        .iter()
        .filter(|e| e["event"] == "device" && e["kind"] == "opened")
        .count();
    assert_eq!(opened, 4, "each call opened both devices: {seen:?}");
    assert_eq!(idle, (0, 0), "no device open while waiting for a call");
    assert_eq!(turned_away, (0, 0), "no device open for a call turned away");
    for (i, (ringing, talking, just_after, later)) in rounds.into_iter().enumerate() {
        assert_eq!(ringing, (1, 1), "call {i}: open while it rings");
        assert_eq!(talking, (1, 1), "call {i}: open in the call");
        assert_eq!(just_after, (1, 1), "call {i}: still open just after it");
        assert_eq!(later, (0, 0), "call {i}: closed a few seconds after it");
    }
}
