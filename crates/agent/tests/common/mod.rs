//! Real peers for the agent's interop tests: Kamailio and baresip on 127.0.0.1, started on free
//! ports from the configurations in tests/peers/, stopped when dropped.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_switchboard-agent");

// baresip and free ports: also used by the router's tests (crates/router/tests/calls.rs).
mod peers;
pub use peers::*;

/// Whether process `pid` itself holds UDP `port` on 127.0.0.1: the socket's inode in
/// /proc/net/udp is one of the process's open files. Tells our peer's socket from another
/// process's that took the port first.
pub fn holds_udp_port(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&wanted.as_str())).then(|| f.get(9).map(|s| s.to_string()))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}

/// Starts a peer that binds the UDP port it is given (SIPp, Kamailio): picks a free port,
/// waits until the peer itself holds it (#13 item 28: not until "something" does, not a
/// fixed sleep), and when another process took the port first — the peer then exits —
/// tries again on another one. `port` picks the port (`free_udp_port` or
/// `free_udp_tcp_port`); `spawn` starts the peer on it.
pub fn spawn_on_udp_port(
    port: impl Fn() -> u16,
    mut spawn: impl FnMut(u16) -> Child,
) -> (Child, u16) {
    for _ in 0..5 {
        let p = port();
        let mut child = spawn(p);
        let start = Instant::now();
        loop {
            if holds_udp_port(child.id(), p) {
                return (child, p);
            }
            if child.try_wait().ok().flatten().is_some() {
                break; // It could not bind: taken in between. Another port.
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the peer never bound UDP port {p}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("five ports in a row were taken before the peer could bind them");
}

pub struct Kamailio {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: Kamailio's main process then stops its worker processes;
        // killed outright it would leave them running.
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn kamailio_binary() -> PathBuf {
    [
        "/usr/sbin/kamailio",
        "/usr/local/sbin/kamailio",
        "/usr/bin/kamailio",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("kamailio is not installed — run tests/peers/install.sh")
}

pub fn start_kamailio(config: &str) -> Kamailio {
    let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers/kamailio")
        .join(config);
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = spawn_on_udp_port(free_udp_tcp_port, |port| {
        let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        Command::new(kamailio_binary())
            .args(["-DD", "-E", "-f"])
            .arg(&cfg)
            .arg("-l")
            .arg(format!("udp:127.0.0.1:{port}"))
            .args(if config == "proxy.cfg" {
                vec!["-l".to_owned(), format!("tcp:127.0.0.1:{port}")]
            } else {
                vec![]
            })
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-Y")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kamailio")
    });
    let mut k = Kamailio {
        child,
        port,
        _dir: dir,
    };
    // Ready when it answers OPTIONS.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = k.child.try_wait().unwrap() {
            panic!("kamailio exited at start with {status}");
        }
        let ping = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKping{}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            start.elapsed().as_millis(),
            start.elapsed().as_millis()
        );
        sock.send_to(ping.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200") {
                return k;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "kamailio did not answer OPTIONS on {port}"
        );
    }
}

pub fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn names(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

pub fn agent(args: &[&str]) -> Command {
    let mut c = Command::new(AGENT);
    // Clear of the RTP ranges the baresip instances take (20000–39999).
    c.env("SWITCHBOARD_RTP_PORTS", "40000-59999");
    c.arg("--json").args(args);
    c
}

/// The agent started with `args`, its stdout (the JSON events) and stderr piped.
pub fn spawn_agent(args: &[&str]) -> Child {
    agent(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `switchboard-agent answer` listening on a free port on 127.0.0.1 (waiting up to 20 s for
/// a call), with `extra` flags; returns the running agent and its port.
pub fn answering_agent(extra: &[&str]) -> (Child, u16) {
    answering_agent_env(extra, &[])
}

/// [`answering_agent`] with environment variables set (e.g. `PULSE_SERVER`).
pub fn answering_agent_env(extra: &[&str], env: &[(&str, &str)]) -> (Child, u16) {
    answering_agent_waiting("20", extra, env)
}

/// [`answering_agent_env`] waiting `wait` seconds for its calls instead of 20.
pub fn answering_agent_waiting(wait: &str, extra: &[&str], env: &[(&str, &str)]) -> (Child, u16) {
    let mut args = vec!["answer", "--bind", "127.0.0.1:0", "--wait", wait];
    args.extend_from_slice(extra);
    let mut child = agent(&args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port = listening_port(&mut child);
    (child, port)
}

/// The agent's JSON events on its stdout up to and including the first `name` event: read a
/// byte at a time, so nothing after it is taken from the pipe (the test reads the rest).
/// Panics with the agent's stderr when it ends first.
pub fn events_until(child: &mut Child, name: &str) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    let out = child.stdout.as_mut().expect("the agent's stdout is piped");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match out.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                    let done = v["event"] == name;
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                line.clear();
            }
            Ok(1) => line.push(byte[0]),
            _ => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the agent ended before its {name:?} event: {seen:?}\n{err}");
            }
        }
    }
}

/// Waits until the agent, started with `--bind 127.0.0.1:0`, says where it listens (its
/// `listening` event, its first) and returns that port: no port handed out by binding and
/// dropping, no fixed sleep.
pub fn listening_port(child: &mut Child) -> u16 {
    let seen = events_until(child, "listening");
    assert_eq!(
        seen.len(),
        1,
        "listening is the agent's first event: {seen:?}"
    );
    port_of(&seen[0])
}

/// The port of a `listening` event's contact (`sip:user@127.0.0.1:PORT[;params]`).
pub fn port_of(listening: &serde_json::Value) -> u16 {
    let contact = listening["contact"].as_str().expect("a contact");
    let hostport = contact.split(';').next().unwrap_or(contact);
    hostport
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {contact}"))
}

pub fn run_agent(
    args: &[&str],
    peers: &[&Baresip],
) -> (std::process::Output, Vec<serde_json::Value>) {
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

pub fn wait_output(
    child: &mut Child,
    within: Duration,
    peers: &[&Baresip],
) -> std::process::Output {
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

/// Rewrites a SIP message's body with `edit`, fixing Content-Length.
fn edit_body(msg: &str, edit: &dyn Fn(&str) -> String) -> String {
    let Some((head, body)) = msg.split_once("\r\n\r\n") else {
        return msg.to_owned();
    };
    let new_body = edit(body);
    if new_body == body {
        return msg.to_owned();
    }
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("content-length:") || lower.starts_with("l:") {
                format!("Content-Length: {}", new_body.len())
            } else {
                l.to_owned()
            }
        })
        .collect();
    format!("{}\r\n\r\n{new_body}", head.join("\r\n"))
}

/// A SIP relay on 127.0.0.1 in front of one UA (`callee`): what anyone else sends goes to the
/// callee, what the callee sends goes back to whoever spoke last, and every body passes
/// through `edit` on the way (a stand-in for a device that rewrites SDP). Works with peers
/// that use rport (RFC 3581), as baresip and the agent do, so responses come back through it.
pub struct SipRelay {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SipRelay {
    pub fn start(callee: u16, edit: impl Fn(&str) -> String + Send + 'static) -> Self {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            let callee: std::net::SocketAddr = ([127, 0, 0, 1], callee).into();
            let mut caller = None;
            let mut buf = vec![0u8; 65536];
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let out = edit_body(&text, &edit);
                let to = if from == callee {
                    match caller {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    caller = Some(from);
                    callee
                };
                let _ = sock.send_to(out.as_bytes(), to);
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SipRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A network impairment for one media stream, in user space (the kernels we run on may lack
/// `sch_netem`): RTP sent to `port` goes to `target` and what `target` sends back goes to the
/// last sender, each packet lost with probability `loss` or held for a random 0–`jitter`
/// (so packets also overtake each other), as `tc netem loss 5% delay 0 30ms` would.
pub struct MediaImpairment {
    pub port: u16,
    pub target: std::sync::Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
    pub forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MediaImpairment {
    pub fn start(loss: f64, jitter: Duration) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{mpsc, Arc, Mutex};
        let sock = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let target: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::new(Mutex::new(None));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        // Packets wait in a queue ordered by when they are due.
        let (tx, rx) = mpsc::channel::<(Instant, std::net::SocketAddr, Vec<u8>)>();
        let sender = {
            let sock = sock.clone();
            let halt = stop.clone();
            std::thread::spawn(move || {
                let mut due: Vec<(Instant, std::net::SocketAddr, Vec<u8>)> = Vec::new();
                while !halt.load(Ordering::Relaxed) {
                    while let Ok(p) = rx.try_recv() {
                        due.push(p);
                    }
                    due.sort_by_key(|p| p.0);
                    let now = Instant::now();
                    while due.first().is_some_and(|p| p.0 <= now) {
                        let (_, to, data) = due.remove(0);
                        let _ = sock.send_to(&data, to);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let receiver = {
            let (halt, target, forwarded, dropped) = (
                stop.clone(),
                target.clone(),
                forwarded.clone(),
                dropped.clone(),
            );
            std::thread::spawn(move || {
                let mut client = None;
                let mut buf = vec![0u8; 2048];
                while !halt.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(t) = *target.lock().unwrap() else {
                        continue;
                    };
                    let to = if from == t {
                        match client {
                            Some(c) => c,
                            None => continue,
                        }
                    } else {
                        client = Some(from);
                        t
                    };
                    if rand::random::<f64>() < loss {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    forwarded.fetch_add(1, Ordering::Relaxed);
                    let hold = jitter.mul_f64(rand::random::<f64>());
                    let _ = tx.send((Instant::now() + hold, to, buf[..n].to_vec()));
                }
            })
        };
        Self {
            port,
            target,
            forwarded,
            dropped,
            stop,
            threads: vec![sender, receiver],
        }
    }
}

impl Drop for MediaImpairment {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A PulseAudio server of our own (no system or user instance involved), with three null
/// sinks: `sb_speaker` (the default sink; its monitor is what was played), `sb_mic` (its
/// monitor is the default source, so what is played into `sb_mic` is what a microphone
/// hears) and `sb_ring` (a second output, e.g. the ringing device). Clients reach it through
/// `PULSE_SERVER`; ALSA's pulse plugin routes cpal there. cpal's ALSA backend lists only a
/// few fixed PCM names (default, pulse, jack, …) besides sound cards, so [`Self::alsa_home`]
/// gives a `HOME` whose `.asoundrc` turns the `jack` PCM into `sb_ring`.
pub struct PulseServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PulseServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("native");
        let log = std::fs::File::create(dir.path().join("pulse.log")).unwrap();
        let child = Command::new("pulseaudio")
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
            .arg("--load=module-null-sink sink_name=sb_ring")
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pulseaudio is not installed — run tests/peers/install.sh");
        let p = Self {
            child: Some(child),
            dir,
        };
        let start = Instant::now();
        while p.pactl(&["info"]).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pulseaudio did not start:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p.pactl(&["set-default-sink", "sb_speaker"]).unwrap();
        p.pactl(&["set-default-source", "sb_mic.monitor"]).unwrap();
        p
    }

    pub fn server(&self) -> String {
        format!("unix:{}", self.dir.path().join("native").display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulse.log")).unwrap_or_default()
    }

    /// A `HOME` for the agent in which the ALSA device `jack` plays into `sb_ring`.
    pub fn alsa_home(&self) -> String {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join(".asoundrc"),
            "pcm.!jack {\n  type pulse\n  device sb_ring\n}\n",
        )
        .unwrap();
        home.display().to_string()
    }

    /// Names of the sinks something plays into now.
    pub fn sinks_in_use(&self) -> Vec<String> {
        let sinks = self.pactl(&["list", "short", "sinks"]).unwrap_or_default();
        let inputs = self
            .pactl(&["list", "short", "sink-inputs"])
            .unwrap_or_default();
        inputs
            .lines()
            .filter_map(|l| l.split('\t').nth(1))
            .filter_map(|idx| {
                sinks
                    .lines()
                    .find(|s| s.split('\t').next() == Some(idx))
                    .and_then(|s| s.split('\t').nth(1))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// The streams open on the server now: (playing, recording) — sink inputs and source
    /// outputs.
    pub fn streams(&self) -> (usize, usize) {
        let count = |what: &str| {
            self.pactl(&["list", "short", what])
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        };
        (count("sink-inputs"), count("source-outputs"))
    }

    /// [`Self::streams`] once `want` holds for them, or after `within` (then the caller's
    /// assertion says what was seen).
    pub fn streams_when(&self, want: (usize, usize), within: Duration) -> (usize, usize) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.streams();
            if v == want || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Keeps `sink` running (a null sink that was idle drops the start of what is played
    /// next from its monitor) and records its monitor into `wav` until the recorder is
    /// stopped with [`stop_recorder`]; returns (keep-alive player, recorder).
    pub fn record(&self, sink: &str, wav: &std::path::Path) -> (Child, Child) {
        self.record_with(sink, wav, &[])
    }

    /// [`Self::record`], with the keep-alive asking for 20 ms of latency, for a stream that
    /// must be heard whole from its first second. A null sink renders ahead in blocks as long
    /// as the lowest latency its streams ask for: 2 s when none asks (paplay's default). There,
    /// what a stream played in its first block was heard in part or not at all, depending on
    /// where in the block it began: device_move.rs, 2 s of a call on the speaker, recorded 3 and
    /// 7 of its 40 blocks of 1000 Hz in 2 runs of 4 (38 and 39 in the others); with the
    /// keep-alive at 20 ms, 5 runs of 5 recorded 36–38. Not for every test: at 20 ms the test
    /// sound's first note came out 250 ms short in 9 runs of 12 (none of 10 with the default).
    pub fn record_steady(&self, sink: &str, wav: &std::path::Path) -> (Child, Child) {
        self.record_with(sink, wav, &["--latency-msec=20"])
    }

    fn record_with(&self, sink: &str, wav: &std::path::Path, keep_args: &[&str]) -> (Child, Child) {
        let quiet = wav.with_extension("silence.wav");
        let mut s = switchboard_media::wav::WavSink::create(&quiet, 48000).unwrap();
        s.write(&vec![0i16; 48000 * 60]).unwrap();
        s.finish().unwrap();
        let keep = self
            .client("paplay")
            .args(["-d", sink])
            .args(keep_args)
            .arg(&quiet)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let rec = self
            .client("parecord")
            .args(["-d", &format!("{sink}.monitor"), "--file-format=wav"])
            .arg(wav)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        (keep, rec)
    }

    /// The sinks in use once `ready` holds for them, or after 5 s (then the caller's
    /// assertion says what was seen): streams open a moment after the event that announces
    /// them.
    pub fn sinks_when(&self, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.sinks_in_use();
            if ready(&v) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A pulse client command against this server (pactl, paplay, parecord …).
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PULSE_SERVER", self.server());
        c
    }

    pub fn pactl(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .client("pactl")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Stops the server now (a sound system going away under a call).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stops what [`PulseServer::record`] started; SIGINT lets parecord finish the WAV header.
pub fn stop_recorder((mut keep, mut rec): (Child, Child)) {
    let _ = Command::new("kill")
        .args(["-INT", &rec.id().to_string()])
        .status();
    let _ = rec.wait();
    let _ = keep.kill();
    let _ = keep.wait();
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A WAV file of `seconds` of a `hz` tone (peak 8000) at 48 kHz.
pub fn tone_wav(path: &std::path::Path, hz: f64, seconds: usize) {
    let mut sink = switchboard_media::wav::WavSink::create(path, 48000).unwrap();
    sink.write(&switchboard_media::tone::sine(
        hz,
        48000,
        8000.0,
        0,
        48000 * seconds,
    ))
    .unwrap();
    sink.finish().unwrap();
}

/// Per note of `candidates`, in how many 50 ms blocks of the recording it dominated, and
/// how many blocks were loud.
pub fn notes(path: &std::path::Path, candidates: &[f64]) -> (Vec<usize>, usize) {
    let (samples, rate) = switchboard_media::wav::read_mono(path).unwrap_or_else(|e| panic!("{e}"));
    switchboard_media::tone::detect(&samples, rate, candidates)
}
