//! Peers shared with the router's tests (which include this file by path): baresip on
//! 127.0.0.1 with the configuration in tests/peers/baresip, and free ports for peers to bind.
//! Needs nothing of the crate that includes it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both).
pub fn free_udp_tcp_port() -> u16 {
    loop {
        let p = free_udp_port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A WAV file whose writer has finished: more than a header, and a RIFF size that covers
/// the whole file.
fn wav_closed(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    bytes.len() > 44
        && bytes.starts_with(b"RIFF")
        && u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize + 8 == bytes.len()
}

/// A baresip instance on 127.0.0.1 (a sine tone as its microphone, its calls recorded),
/// driven over ctrl_tcp; stopped when dropped.
pub struct Baresip {
    child: Child,
    dir: tempfile::TempDir,
    pub sip_port: u16,
    ctrl_port: u16,
    user: String,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Baresip {
    pub fn start(user: &str, answermode: &str, tone_hz: u32) -> Self {
        Self::start_with_account(
            user,
            &format!("<sip:{user}@127.0.0.1>;regint=0;answermode={answermode}"),
            tone_hz,
        )
    }

    /// With a full `accounts` line (e.g. one that registers with a proxy).
    pub fn start_with_account(user: &str, account: &str, tone_hz: u32) -> Self {
        let mut dir = tempfile::tempdir().unwrap();
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/baresip/config"),
        )
        .unwrap();
        // Ports are picked free, then bound by baresip a moment later: another test may take
        // one in between (CI saw it), so a start that finds its port taken is tried again.
        for attempt in 1..=3 {
            let sip_port = free_udp_tcp_port();
            let ctrl_port = free_tcp_port();
            // A private RTP range per instance, derived from the SIP port to avoid clashes.
            let rtp_first = 20000 + (sip_port % 200) * 100;
            let config = template
                .replace("@SIP_PORT@", &sip_port.to_string())
                .replace("@CTRL_PORT@", &ctrl_port.to_string())
                .replace("@DIR@", &dir.path().display().to_string())
                .replace("@TONE_HZ@", &tone_hz.to_string())
                .replace("@RTP_FIRST@", &rtp_first.to_string())
                .replace("@RTP_LAST@", &(rtp_first + 98).to_string());
            std::fs::write(dir.path().join("config"), config).unwrap();
            std::fs::write(dir.path().join("accounts"), format!("{account}\n")).unwrap();
            let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
            let child = Command::new("baresip")
                .arg("-f")
                .arg(dir.path())
                .arg("-v")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("baresip is not installed — run tests/peers/install.sh");
            let mut b = Self {
                child,
                dir,
                sip_port,
                ctrl_port,
                user: user.to_owned(),
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                let log = b.log();
                if log.contains("baresip is ready") {
                    return b;
                }
                if log.contains("Address already in use") && attempt < 3 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if attempt == 3 || b.log().contains("baresip is ready") {
                b.wait_for("baresip is ready", Duration::from_secs(1));
                return b;
            }
            let _ = b.child.kill();
            let _ = b.child.wait();
            dir = std::mem::replace(&mut b.dir, tempfile::tempdir().unwrap());
        }
        unreachable!("the last attempt returns")
    }

    pub fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port)
    }

    /// What baresip heard in its last call: the decoded side that its `sndfile` filter
    /// writes (`dump-<time>-dec.wav`), once baresip has closed it. libsndfile writes the
    /// sizes in the header only on close, so a file still open reads as empty: wait until
    /// the RIFF size matches the file (on a loaded machine the close comes well after the
    /// "terminated" line). Panics with baresip's log after `within`.
    pub fn heard_wav(&self, within: Duration) -> PathBuf {
        let start = Instant::now();
        loop {
            if let Some(p) = self.last_dump("-dec.wav").filter(|p| wav_closed(p)) {
                return p;
            }
            assert!(
                start.elapsed() < within,
                "baresip recorded nothing (or never closed its recording) in {within:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn last_dump(&self, suffix: &str) -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
            })
            .collect();
        found.sort();
        found.pop()
    }

    pub fn log(&self) -> String {
        // Lossy: baresip's log can hold bytes that are not UTF-8 (terminal escapes).
        std::fs::read(self.dir.path().join("baresip.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn wait_for(&self, needle: &str, within: Duration) {
        self.wait_for_times(needle, 1, within);
    }

    /// Waits until baresip's log holds `needle` at least `times` times.
    pub fn wait_for_times(&self, needle: &str, times: usize, within: Duration) {
        let start = Instant::now();
        while self.log().matches(needle).count() < times {
            assert!(
                start.elapsed() < within,
                "baresip did not log {needle:?} {times} time(s) within {within:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A ctrl_tcp command: a netstring-framed JSON object.
    pub fn command(&self, command: &str, params: &str) {
        let body =
            serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.ctrl_port)).unwrap();
        s.write_all(format!("{}:{},", body.len(), body).as_bytes())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
    }
}
