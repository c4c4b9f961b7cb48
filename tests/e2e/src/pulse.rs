//! A PulseAudio server of the test's own (no system or user instance), with two null sinks:
//! `sb_speaker` (the default sink: its monitor is what the window played) and `sb_mic` (its
//! monitor is the default source: what is played into it is what the window's microphone
//! hears). Programs reach it through `PULSE_SERVER` ([`PulseServer::server`]); ALSA's pulse
//! plugin routes cpal there. The same arrangement as the agent's audio tests
//! (`crates/agent/tests/common`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Guard;

pub struct PulseServer {
    _daemon: Guard,
    dir: tempfile::TempDir,
}

impl PulseServer {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("native");
        let log = std::fs::File::create(dir.path().join("pulse.log"))?;
        let daemon = Guard::spawn(
            "pulseaudio",
            Command::new("pulseaudio")
                .args([
                    "-n",
                    "--daemonize=no",
                    "--exit-idle-time=-1",
                    "--disallow-exit",
                ])
                .arg(format!(
                    "--load=module-native-protocol-unix socket={} auth-anonymous=1",
                    socket.display()
                ))
                .arg("--load=module-null-sink sink_name=sb_speaker")
                .arg("--load=module-null-sink sink_name=sb_mic")
                .env("HOME", dir.path())
                .env("XDG_RUNTIME_DIR", dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .context("run tests/peers/install.sh (pulseaudio)")?;
        let p = Self {
            _daemon: daemon,
            dir,
        };
        let start = Instant::now();
        while p.pactl(&["info"]).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("pulseaudio did not start: {}", p.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        p.pactl(&["set-default-sink", "sb_speaker"])?;
        p.pactl(&["set-default-source", "sb_mic.monitor"])?;
        Ok(p)
    }

    /// `PULSE_SERVER` for programs that should use it.
    pub fn server(&self) -> String {
        format!("unix:{}", self.dir.path().join("native").display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulse.log")).unwrap_or_default()
    }

    /// A pulse client command against this server (pactl, paplay, parecord …).
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PULSE_SERVER", self.server());
        c
    }

    pub fn pactl(&self, args: &[&str]) -> Result<String> {
        let out = self.client("pactl").args(args).output()?;
        if !out.status.success() {
            bail!("pactl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Plays `wav` into `sink` (e.g. `sb_mic`: the window's microphone hears it).
    pub fn play(&self, sink: &str, wav: &Path) -> Result<Guard> {
        Guard::spawn("paplay", self.client("paplay").args(["-d", sink]).arg(wav))
    }

    /// Records what is played into `sink` as `wav` (a keep-alive player of silence first: an
    /// idle null sink drops the start of what comes next); stop with [`Recording::stop`].
    pub fn record(&self, sink: &str, wav: &Path) -> Result<Recording> {
        let quiet = wav.with_extension("silence.wav");
        let mut s = switchboard_media::wav::WavSink::create(&quiet, 48000)?;
        s.write(&vec![0i16; 48000 * 60])?;
        s.finish()?;
        let keep = self.play(sink, &quiet)?;
        std::thread::sleep(Duration::from_millis(300));
        let rec = self
            .client("parecord")
            .args(["-d", &format!("{sink}.monitor"), "--file-format=wav"])
            .arg(wav)
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Recording { keep, rec })
    }
}

/// A recording under way.
pub struct Recording {
    keep: Guard,
    rec: Child,
}

impl Recording {
    /// SIGINT lets parecord finish the WAV header.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.rec.id().to_string()])
            .status();
        let _ = self.rec.wait();
        self.keep.kill();
    }
}
