//! The router's media relay beside rtpengine (Debian `rtpengine-daemon`, userspace
//! forwarding, no kernel module) relaying the same streams in the same run: CPU per relayed
//! call-second, for
//!
//! 1. plain relay, PCMU ↔ PCMU, ours and rtpengine's;
//! 2. transcoding, Opus ↔ PCMU, ours.
//!
//! and the resident memory each relayed call adds (the process's RSS after the calls ran,
//! less before they were opened, over the number of calls).
//!
//! Each call has two ends on 127.0.0.1 sending a 20 ms packet every 20 ms (50 packets a second
//! each way), from one generator thread of this program; the CPU counted is the relay's only
//! (our `router-media` thread; rtpengine's whole process). A benchmark, not a test: the numbers
//! move with the machine.
//!
//!     cargo bench -p switchboard-router --bench relay -- [--calls 50] [--seconds 10]
//!
//! `bench/relay.sh` installs rtpengine-daemon and runs it.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_media::session::{Codec, MediaSession};
use switchboard_media::tone::sine;
use switchboard_router::relay::{plain, Relay};

fn ticks_per_second() -> f64 {
    100.0 // Linux USER_HZ
}

/// utime + stime of a /proc stat file, in seconds.
fn cpu_of(stat: &str) -> f64 {
    let s = std::fs::read_to_string(stat).unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the comm: state is index 0, utime 11, stime 12.
    (t(11) + t(12)) / ticks_per_second()
}

/// VmRSS of a /proc status file, in KiB.
fn rss_kib(status: &str) -> u64 {
    std::fs::read_to_string(status)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What one relay run measured.
#[derive(Clone, Copy)]
struct Run {
    /// CPU seconds of the relay.
    cpu: f64,
    /// Packets the ends got back.
    got: u64,
    /// Resident memory the calls added, KiB.
    grew_kib: u64,
}

/// Our media thread's stat file.
fn media_thread_stat() -> Option<String> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == "router-media" {
            return Some(e.path().join("stat").display().to_string());
        }
    }
    None
}

/// One end's packets, replayed: `frames` encoded once, headers rewritten per send.
struct Stream {
    packets: Vec<Vec<u8>>,
    at: usize,
}

impl Stream {
    fn new(codec: Codec, pt: u8, hz: f64) -> Self {
        let mut s = MediaSession::new(codec, pt, None, Instant::now());
        let n = s.frame_samples();
        let packets = (0..50)
            .map(|i| s.packetise(&sine(hz, codec.clock_rate(), 8000.0, (i * n) as u64, n)))
            .collect();
        Self { packets, at: 0 }
    }

    /// The next packet: the recorded ones again, with sequence and timestamp going on.
    fn next(&mut self, seq: u16, ts: u32) -> Vec<u8> {
        let mut p = self.packets[self.at % self.packets.len()].clone();
        self.at += 1;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p
    }
}

struct End {
    socket: UdpSocket,
    to: SocketAddr,
    stream: Stream,
    seq: u16,
    ts: u32,
    step: u32,
    received: u64,
}

/// Sends every end's packet each 20 ms for `seconds`, draining what comes back.
fn drive(ends: &mut [End], seconds: u64) -> u64 {
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < Duration::from_secs(seconds) {
        for e in ends.iter_mut() {
            let p = e.stream.next(e.seq, e.ts);
            let _ = e.socket.send_to(&p, e.to);
            e.seq = e.seq.wrapping_add(1);
            e.ts = e.ts.wrapping_add(e.step);
            while e.socket.recv_from(&mut buf).is_ok() {
                e.received += 1;
            }
        }
        next += Duration::from_millis(20);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    ends.iter().map(|e| e.received).sum()
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn pt(c: Codec) -> u8 {
    match c {
        Codec::Opus => 111,
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
    }
}

/// Our relay with `calls` bridged pairs (`a` ↔ `b` codecs): CPU seconds of its thread,
/// packets delivered, and the process's resident memory the calls added (every socket and
/// generator stream is made before the first measure, so what grows is the relay's).
fn ours(calls: usize, seconds: u64, a: Codec, b: Codec) -> Run {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = Relay::start(tx).unwrap();
    let mut ends = Vec::new();
    let mut legs = Vec::new();
    for i in 0..calls {
        let (la, lb) = (bind(), bind());
        let (ea, eb) = (bind(), bind());
        let (ra, rb) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
        let id = (i as u64) * 2;
        legs.push((id, la, plain(a, ea.local_addr().unwrap())));
        legs.push((id + 1, lb, plain(b, eb.local_addr().unwrap())));
        for (sock, to, codec, hz) in [(ea, ra, a, 440.0), (eb, rb, b, 1000.0)] {
            ends.push(End {
                socket: sock,
                to,
                stream: Stream::new(codec, pt(codec), hz),
                seq: 1,
                ts: 0,
                step: codec.clock_rate() / 50,
                received: 0,
            });
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let rss_before = rss_kib("/proc/self/status");
    for (id, socket, media) in legs {
        relay.open(id, socket, &media);
        if id % 2 == 1 {
            relay.bridge(id - 1, id);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let stat = media_thread_stat().expect("the relay's thread");
    let before = cpu_of(&stat);
    let got = drive(&mut ends, seconds);
    let cpu = cpu_of(&stat) - before;
    let grew_kib = rss_kib("/proc/self/status").saturating_sub(rss_before);
    drop(relay);
    Run { cpu, got, grew_kib }
}

/// A bencode value of the ng protocol.
fn bencode(dict: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    let mut items: Vec<&(&str, &str)> = dict.iter().collect();
    items.sort_by_key(|(k, _)| *k);
    for (k, v) in items {
        out.extend(format!("{}:{}{}:", k.len(), k, v.len()).as_bytes());
        out.extend(v.as_bytes());
    }
    out.push(b'e');
    out
}

/// The `sdp` string of a bencoded ng answer.
fn ng_sdp(reply: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(reply);
    let at = text.find("3:sdp")? + 5;
    let rest = &text[at..];
    let (len, body) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some(body.get(..len)?.to_owned())
}

fn sdp_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn ng(sock: &UdpSocket, to: SocketAddr, n: &mut u32, dict: &[(&str, &str)]) -> Vec<u8> {
    *n += 1;
    let mut msg = format!("c{n} ").into_bytes();
    msg.extend(bencode(dict));
    sock.send_to(&msg, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (len, _) = sock.recv_from(&mut buf).expect("rtpengine answers ng");
    buf.truncate(len);
    buf
}

fn offer_sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
}

/// rtpengine relaying `calls` PCMU ↔ PCMU pairs: its process's CPU seconds, packets delivered
/// and the resident memory the calls added; `None` when it is not installed or does not start.
fn rtpengine(calls: usize, seconds: u64) -> Option<Run> {
    let ng_port = {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.local_addr().ok()?.port()
    };
    let mut child: Child = Command::new("rtpengine")
        .args([
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--table=-1",
            "--no-fallback",
            "--interface=127.0.0.1",
            &format!("--listen-ng=127.0.0.1:{ng_port}"),
            "--port-min=40000",
            "--port-max=41999",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let ng_to: SocketAddr = format!("127.0.0.1:{ng_port}").parse().ok()?;
    let ctl = UdpSocket::bind("127.0.0.1:0").ok()?;
    ctl.set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let mut n = 0;
    let mut up = false;
    for _ in 0..30 {
        n += 1;
        let _ = ctl.send_to(format!("c{n} d7:command4:pinge").as_bytes(), ng_to);
        let mut b = [0u8; 256];
        if ctl.recv_from(&mut b).is_ok() {
            up = true;
            break;
        }
    }
    if !up {
        let _ = child.kill();
        return None;
    }
    ctl.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let status = format!("/proc/{}/status", child.id());
    let rss_before = rss_kib(&status);
    let mut ends = Vec::new();
    for i in 0..calls {
        let (ea, eb) = (bind(), bind());
        let (pa, pb) = (ea.local_addr().ok()?.port(), eb.local_addr().ok()?.port());
        let call_id = format!("bench-{i}");
        let offered = ng(
            &ctl,
            ng_to,
            &mut n,
            &[
                ("command", "offer"),
                ("call-id", &call_id),
                ("from-tag", "a"),
                ("sdp", &offer_sdp(pa)),
            ],
        );
        let to_b = sdp_port(&ng_sdp(&offered)?)?;
        let answered = ng(
            &ctl,
            ng_to,
            &mut n,
            &[
                ("command", "answer"),
                ("call-id", &call_id),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &offer_sdp(pb)),
            ],
        );
        let to_a = sdp_port(&ng_sdp(&answered)?)?;
        for (sock, port, hz) in [(ea, to_a, 440.0), (eb, to_b, 1000.0)] {
            ends.push(End {
                socket: sock,
                to: SocketAddr::from(([127, 0, 0, 1], port)),
                stream: Stream::new(Codec::Pcmu, 0, hz),
                seq: 1,
                ts: 0,
                step: 160,
                received: 0,
            });
        }
    }
    let stat = format!("/proc/{}/stat", child.id());
    let before = cpu_of(&stat);
    let got = drive(&mut ends, seconds);
    let cpu = cpu_of(&stat) - before;
    let grew_kib = rss_kib(&status).saturating_sub(rss_before);
    let _ = child.kill();
    let _ = child.wait();
    Some(Run { cpu, got, grew_kib })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // `cargo bench` passes --bench; nothing else of criterion's applies here.
    let calls = opt("--calls", 50) as usize;
    let seconds = opt("--seconds", 10);
    let call_seconds = (calls as u64 * seconds) as f64;
    let sent = call_seconds * 100.0;
    println!("relaying {calls} calls for {seconds} s each (50 packets/s each way), 127.0.0.1");
    let plain = ours(calls, seconds, Codec::Pcmu, Codec::Pcmu);
    let transcode = ours(calls, seconds, Codec::Opus, Codec::Pcmu);
    let theirs = rtpengine(calls, seconds);
    let line = |name: &str, r: Run| {
        println!(
            "{name:<28} {:>8.3} ms CPU per call-second   {:>6.1} KiB per call   ({:.2} s CPU, {:.1} packets received per 100 sent)",
            r.cpu * 1000.0 / call_seconds,
            r.grew_kib as f64 / calls as f64,
            r.cpu,
            100.0 * r.got as f64 / sent
        );
    };
    line("switchboard plain PCMU", plain);
    line("switchboard Opus <-> PCMU", transcode);
    match theirs {
        Some(t) => {
            line("rtpengine plain PCMU", t);
            println!(
                "plain relay: switchboard / rtpengine CPU = {:.2}, memory per call = {:.2}",
                plain.cpu / t.cpu.max(0.001),
                plain.grew_kib as f64 / (t.grew_kib as f64).max(1.0)
            );
        }
        None => println!(
            "rtpengine did not start (not installed?): install Debian's rtpengine-daemon (bench/relay.sh does) to compare"
        ),
    }
}
