//! Calls between the headless agent and the real baresip (Debian `baresip`, installed by
//! tests/peers/install.sh), both directions, on 127.0.0.1: ringing and answer, DTMF, hold and
//! resume, BYE from either side, CANCEL before an answer, and a blind transfer to a second
//! baresip. Each test prints baresip's log and the agent's events when it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_switchboard-agent");

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Baresip {
    child: Child,
    dir: tempfile::TempDir,
    sip_port: u16,
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
    fn start(user: &str, answermode: &str, tone_hz: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/baresip/config"),
        )
        .unwrap();
        let sip_port = free_udp_port();
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
        std::fs::write(
            dir.path().join("accounts"),
            format!("<sip:{user}@127.0.0.1>;regint=0;answermode={answermode}\n"),
        )
        .unwrap();
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
        let b = Self {
            child,
            dir,
            sip_port,
            ctrl_port,
            user: user.to_owned(),
        };
        b.wait_for("baresip is ready", Duration::from_secs(10));
        b
    }

    fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < within,
                "baresip did not log {needle:?} within {within:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A ctrl_tcp command: a netstring-framed JSON object.
    fn command(&self, command: &str, params: &str) {
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

fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn names(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn agent(args: &[&str]) -> Command {
    let mut c = Command::new(AGENT);
    c.arg("--json").args(args);
    c
}

fn run_agent(args: &[&str], peers: &[&Baresip]) -> (std::process::Output, Vec<serde_json::Value>) {
    let out = agent(args).output().unwrap();
    let ev = events(&out.stdout);
    let logs: String = peers
        .iter()
        .map(|p| p.log())
        .collect::<Vec<_>>()
        .join("\n----\n");
    eprintln!(
        "agent {args:?} → {}\nstderr: {}\nevents: {ev:#?}\nbaresip:\n{logs}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out, ev)
}

#[test]
fn agent_calls_baresip_with_dtmf_hold_and_hangs_up() {
    let bob = Baresip::start("bob", "auto", 440);
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--bind",
            "127.0.0.1:0",
            "--dtmf",
            "19#",
            "--hold-after",
            "1.5",
            "--hangup-after",
            "5",
        ],
        &[&bob],
    );
    assert!(out.status.success());
    let n = names(&ev);
    assert!(
        n.contains(&"progress".into()) && n.contains(&"established".into()),
        "{n:?}"
    );
    let est = ev.iter().find(|e| e["event"] == "established").unwrap();
    assert_eq!(
        est["media"]["codec"], "opus",
        "baresip offers Opus and so do we"
    );
    assert!(est["media"]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Hold then resume, as baresip answered them.
    let dirs: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "media")
        .map(|e| e["media"]["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["sendonly", "sendrecv"]);
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local");
    // baresip sends audio: our RTP port received it.
    assert!(
        ended["rtp_packets_received"].as_u64().unwrap() > 20,
        "{ended}"
    );
    bob.wait_for("received DTMF: '1'", Duration::from_secs(2));
    bob.wait_for("received DTMF: '9'", Duration::from_secs(2));
    bob.wait_for("received DTMF: '#'", Duration::from_secs(2));
    bob.wait_for("terminated", Duration::from_secs(3));
}

#[test]
fn baresip_calls_the_agent_and_hangs_up() {
    let bob = Baresip::start("bob", "auto", 440);
    let port = free_udp_port();
    let mut child = agent(&[
        "answer",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--user",
        "agent",
        "--wait",
        "20",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    bob.command("dial", &format!("sip:agent@127.0.0.1:{port}"));
    bob.wait_for("Call established", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    bob.command("hangup", "");
    let out = wait_output(&mut child, Duration::from_secs(10), &[&bob]);
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:?}");
    let n = names(&ev);
    assert_eq!(n.first().map(String::as_str), Some("listening"));
    assert!(
        n.contains(&"incoming".into()) && n.contains(&"established".into()),
        "{n:?}"
    );
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "remotebye", "{ev:?}");
}

#[test]
fn baresip_calls_the_agent_which_hangs_up() {
    let bob = Baresip::start("bob", "auto", 440);
    let port = free_udp_port();
    let mut child = agent(&[
        "answer",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--answer-after",
        "0.5",
        "--hangup-after",
        "1.5",
        "--wait",
        "20",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    bob.command("dial", &format!("sip:agent@127.0.0.1:{port}"));
    let out = wait_output(&mut child, Duration::from_secs(15), &[&bob]);
    assert!(out.status.success());
    let ev = events(&out.stdout);
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local", "{ev:?}");
    bob.wait_for("terminated", Duration::from_secs(3));
}

#[test]
fn cancel_before_baresip_answers() {
    let bob = Baresip::start("bob", "manual", 440);
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--bind",
            "127.0.0.1:0",
            "--ring-timeout",
            "1.5",
        ],
        &[&bob],
    );
    assert!(
        !out.status.success(),
        "nobody answered: a failure for a script"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody answered"));
    let n = names(&ev);
    assert!(n.contains(&"progress".into()), "baresip rang: {n:?}");
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local", "{ev:?}");
    // baresip saw the CANCEL: its incoming call is gone.
    bob.wait_for("session closed", Duration::from_secs(3));
}

#[test]
fn blind_transfer_to_a_second_baresip() {
    let bob = Baresip::start("bob", "auto", 440);
    let carol = Baresip::start("carol", "auto", 880);
    let (out, ev) = run_agent(
        &[
            "call",
            &bob.uri(),
            "--bind",
            "127.0.0.1:0",
            "--transfer",
            &carol.uri(),
            "--hangup-after",
            "15",
        ],
        &[&bob, &carol],
    );
    assert!(out.status.success());
    let progress: Vec<(u64, bool)> = ev
        .iter()
        .filter(|e| e["event"] == "transfer_progress")
        .map(|e| (e["status"].as_u64().unwrap(), e["final"].as_bool().unwrap()))
        .collect();
    assert_eq!(progress.first(), Some(&(202, false)), "{progress:?}");
    assert_eq!(progress.last(), Some(&(200, true)), "{progress:?}");
    // Carol now talks to Bob.
    carol.wait_for(
        "Call established: sip:bob@127.0.0.1",
        Duration::from_secs(5),
    );
    let ended = ev.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"], "local");
}

fn wait_output(child: &mut Child, within: Duration, peers: &[&Baresip]) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    let status = child.wait().unwrap();
    let logs: String = peers
        .iter()
        .map(|p| p.log())
        .collect::<Vec<_>>()
        .join("\n----\n");
    eprintln!(
        "agent → {status}\nstdout: {}\nstderr: {}\nbaresip:\n{logs}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}
