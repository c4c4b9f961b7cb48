//! A PulseAudio server of the test's own (no system or user instance), with three null sinks:
//! `sb_speaker` (the default sink: its monitor is what the window played), `sb_mic` (its
//! monitor is the default source: what is played into it is what the window's microphone
//! hears) and `sb_headset` (a second output, ALSA `jack` in [`PulseServer::alsa_home`]).
//! Programs reach it through `PULSE_SERVER` ([`PulseServer::server`]); ALSA's pulse plugin
//! routes cpal there. The same arrangement as the agent's audio tests
//! (`crates/agent/tests/common`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Guard;

pub struct PulseServer {
    daemon: Guard,
    dir: tempfile::TempDir,
}

impl PulseServer {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let daemon = Self::daemon(dir.path())?;
        let p = Self { daemon, dir };
        p.ready()?;
        Ok(p)
    }

    /// The sound server goes away (killed), as when it crashes: every stream of it fails.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// A new server on the same socket, with the same sinks (after [`Self::kill`]).
    pub fn restart(&mut self) -> Result<()> {
        self.daemon.kill();
        self.daemon = Self::daemon(self.dir.path())?;
        self.ready()
    }

    fn daemon(dir: &Path) -> Result<Guard> {
        let socket = dir.join("native");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("pulse.log"))?;
        Guard::spawn(
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
                .arg("--load=module-null-sink sink_name=sb_headset")
                .env("HOME", dir)
                .env("XDG_RUNTIME_DIR", dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .context("run tests/peers/install.sh (pulseaudio)")
    }

    /// Waits for the server to answer, and makes `sb_speaker` and `sb_mic`'s monitor the
    /// defaults.
    fn ready(&self) -> Result<()> {
        let start = Instant::now();
        while self.pactl(&["info"]).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("pulseaudio did not start: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.pactl(&["set-default-sink", "sb_speaker"])?;
        self.pactl(&["set-default-source", "sb_mic.monitor"])?;
        Ok(())
    }

    /// `PULSE_SERVER` for programs that should use it.
    pub fn server(&self) -> String {
        format!("unix:{}", self.dir.path().join("native").display())
    }

    /// A `HOME` for the app in which the ALSA device `jack` (a second output, standing in for
    /// a headset plugged in) plays into `sb_headset`.
    pub fn alsa_home(&self) -> Result<std::path::PathBuf> {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        std::fs::write(
            home.join(".asoundrc"),
            "pcm.!jack {\n  type pulse\n  device sb_headset\n}\n",
        )?;
        Ok(home)
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

    /// Unplugs `sink` (unloads its module), as a headset's plug pulled: PulseAudio (14 and
    /// later) moves what played into it to the default sink.
    pub fn unplug(&self, sink: &str) -> Result<()> {
        let modules = self.pactl(&["list", "short", "modules"])?;
        let wanted = format!("sink_name={sink}");
        let id = modules
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == wanted))
            .and_then(|l| l.split_whitespace().next())
            .with_context(|| format!("no module of sink {sink}: {modules}"))?;
        self.pactl(&["unload-module", id])?;
        Ok(())
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
