//! `switchboard-agent devices`, and how the CLI prints sound-device events. The call audio
//! itself (RTP, SRTP, WAV files, devices) is the library's [`switchboard_agent::call`] engine.

use switchboard_agent::call::DeviceReport;

/// A device event as JSON fields and a line for people.
pub fn describe_device_event(e: &DeviceReport) -> (serde_json::Value, String) {
    let fields = serde_json::to_value(e).unwrap_or_default();
    let text = match e {
        DeviceReport::Opened {
            direction,
            name,
            rate,
        } => format!("{direction} device: {name} ({rate} Hz)"),
        DeviceReport::Fallback {
            direction,
            wanted,
            name,
            reason,
        } => format!(
            "warning: {direction} device {wanted:?} cannot be used ({reason}) — using {name} instead"
        ),
        DeviceReport::Lost {
            direction,
            name,
            reason,
        } => format!(
            "warning: the {direction} device {name} stopped working ({reason}) — switching to the default"
        ),
        DeviceReport::Unavailable { direction, reason } => format!(
            "warning: no {direction} device ({reason}) — the call goes on {}; plug one in or pick another in the settings",
            if direction == "input" { "muted" } else { "without sound" }
        ),
    };
    (fields, text)
}

/// `switchboard-agent devices`: list the sound devices, or check one as Settings → Audio does.
#[derive(clap::Args, Debug, Clone)]
pub struct DevicesArgs {
    /// Play a test sound (`chime`, or one ring's bursts: `ring`) on --output-device and exit.
    #[arg(long, value_name = "SOUND", value_parser = ["chime", "ring"])]
    pub test_sound: Option<String>,
    /// Measure the microphone (--input-device) for this many seconds, printing its level.
    #[arg(long, value_name = "SECONDS", conflicts_with = "test_sound")]
    pub mic_test: Option<f64>,
    /// The microphone to test (a name from the list; default: the system's).
    #[arg(long, value_name = "NAME")]
    pub input_device: Option<String>,
    /// The speaker to play the test sound on (default: the system's).
    #[arg(long, value_name = "NAME")]
    pub output_device: Option<String>,
    /// Test sound volume, 0–100 %.
    #[arg(long, value_name = "PCT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub volume: u8,
}

fn notice_json(n: &switchboard_agent::DeviceNotice) -> serde_json::Value {
    serde_json::to_value(n).unwrap_or_default()
}

/// Runs `devices`.
pub fn devices(args: DevicesArgs, json: bool) -> anyhow::Result<()> {
    let named = |n: Option<String>| n.filter(|n| n != "default");
    if let Some(sound) = args.test_sound {
        let sound = if sound == "ring" {
            switchboard_agent::TestSound::Ring
        } else {
            switchboard_agent::TestSound::Chime
        };
        let r = switchboard_agent::audio::play_test_sound(
            sound,
            named(args.output_device),
            args.volume,
        )?;
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "played", "device": r.device, "notices": r.notices.iter().map(notice_json).collect::<Vec<_>>()})
            );
        } else {
            for n in &r.notices {
                if n.kind != "opened" {
                    eprintln!(
                        "warning: {} device: {} {}",
                        n.direction,
                        n.kind,
                        n.reason.as_deref().unwrap_or("")
                    );
                }
            }
            println!(
                "played on {}",
                r.device.as_deref().unwrap_or("the default device")
            );
        }
        return Ok(());
    }
    if let Some(seconds) = args.mic_test {
        let tests = switchboard_agent::audio::MicTests::default();
        let id = tests.start(named(args.input_device));
        let end = std::time::Instant::now()
            + std::time::Duration::from_secs_f64(seconds.clamp(0.1, 3600.0));
        let mut loudest = -120f32;
        while std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let Some(l) = tests.level(id) else { break };
            loudest = loudest.max(l.peak_db);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "mic_level", "level_db": l.level_db, "peak_db": l.peak_db, "notices": l.notices.iter().map(notice_json).collect::<Vec<_>>()})
                );
            } else {
                for n in &l.notices {
                    println!(
                        "{} device: {} {}",
                        n.direction,
                        n.kind,
                        n.device.as_deref().or(n.reason.as_deref()).unwrap_or("")
                    );
                }
                let bars = ((l.peak_db + 60.0).clamp(0.0, 60.0) / 2.0) as usize;
                println!("{:>6.1} dBFS |{:<30}|", l.peak_db, "#".repeat(bars));
            }
        }
        tests.stop(Some(id));
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "mic_test_done", "loudest_db": loudest})
            );
        } else if loudest < -55.0 {
            println!("no sound from the microphone — check that it is plugged in and not muted");
        }
        return Ok(());
    }
    let list = switchboard_agent::audio::devices()?;
    let entry = |d: &switchboard_agent::AudioDevice| serde_json::json!({"name": d.name, "default": d.is_default, "channels": d.channels, "sample_rate": d.sample_rate});
    if json {
        println!(
            "{}",
            serde_json::json!({
                "inputs": list.inputs.iter().map(entry).collect::<Vec<_>>(),
                "outputs": list.outputs.iter().map(entry).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    for (title, devices) in [("inputs", &list.inputs), ("outputs", &list.outputs)] {
        println!("{title}:");
        if devices.is_empty() {
            println!("  (none)");
        }
        for d in devices {
            println!(
                "  {}{} — {} ch, {} Hz",
                d.name,
                if d.is_default { " (default)" } else { "" },
                d.channels,
                d.sample_rate
            );
        }
    }
    Ok(())
}
