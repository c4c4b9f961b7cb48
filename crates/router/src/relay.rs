//! The router's media: every call leg the router anchors has a UDP port of its own and a
//! [`MediaSession`] (jitter buffer, decoder, encoder, RFC 4733 DTMF, RTCP) on one thread that
//! is not the async runtime's. Every 20 ms the thread takes in what arrived on every port,
//! plays one frame out of each leg's jitter buffer, and sends each leg one frame: a prompt or
//! music when one plays to it, else what its peers said (each converted to its codec's rate
//! and, in a conference of three or more, summed: every leg hears all the others but itself),
//! else silence. Hearing need not go both ways: a supervisor listening in hears the call and
//! nobody hears them ([`Relay::hear`]).
//!
//! Legs are always decoded and re-encoded, so two legs that share no codec (Opus ↔ PCMU)
//! bridge like any others, and each side keeps its own sequence numbers, timestamps, SSRC and
//! jitter buffer. A same-codec pass-through (no decode) is a later optimisation; the relay
//! benchmark prints what each costs. The thread's memory per leg is bounded: a jitter buffer,
//! one resampler and one frame.
//!
//! Keys pressed on a leg (RFC 4733 events, or SIP INFO the SIP side passes on with
//! [`Relay::pass_digit`]) go on to every leg that hears it, so an agent can work an outside
//! party's menu or enter an interpreter service's PIN, and a caller handed to an outside number
//! can answer its menu: as RFC 4733 events where that leg agreed telephone-event, else as the
//! key's two tones in its audio ([`KEY_MS`] each, [`KEY_GAP_MS`] apart). A leg nobody hears (a
//! caller in the attendant or waiting in a queue) passes nothing on: the router takes those
//! keys itself. Keys that arrive as tones are in the audio already and go on in it.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_media::dtmf::{key_frequencies, key_tone, DtmfDetector};
use switchboard_media::ice::{is_stun, Check, IceLite};
use switchboard_media::resample::Rate;
use switchboard_media::session::{Codec, MediaSession};
use switchboard_media::srtp::Srtp;
use switchboard_sip::sdp::{Direction, Negotiated, NegotiatedCodec};

/// A leg of a call, as the SIP side numbers them.
pub type LegId = u64;

/// The most legs in one conference: the mix costs a resampler per pair. A leg hears at most
/// this many others.
pub const MAX_CONFERENCE: usize = 8;

/// The rate prompts and music are stored at.
pub const CLIP_RATE: u32 = 16_000;

/// How long a key passed on to another leg lasts, ms (the usual 100 ms of a phone's keypad;
/// ITU-T Q.24 asks receivers to take 40 ms).
pub const KEY_MS: u32 = 100;
/// The silence after a key passed on as tones, ms, before the next.
pub const KEY_GAP_MS: u32 = 60;
/// The most keys waiting to be played as tones on one leg; more are dropped.
const KEYS_QUEUED: usize = 32;
/// The peak of each of a key's two tones played into a leg (about −9 dBm0 each).
const KEY_AMPLITUDE: f64 = 7000.0;

/// Audio to play to a leg (mono, [`CLIP_RATE`]).
#[derive(Debug)]
pub struct Clip {
    pub name: String,
    pub samples: Vec<i16>,
}

/// What to play: clips one after another, then (optionally) one clip looped until stopped.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    pub clips: Vec<Arc<Clip>>,
    pub then_loop: Option<Arc<Clip>>,
}

enum Cmd {
    Open {
        leg: LegId,
        socket: UdpSocket,
        media: Box<Negotiated>,
    },
    Update {
        leg: LegId,
        media: Box<Negotiated>,
    },
    Bridge(LegId, LegId),
    Conference(Vec<LegId>),
    Hear(Vec<(LegId, Vec<LegId>)>),
    Unbridge(LegId),
    Play(LegId, Playlist),
    Digit(LegId, char),
    Close(LegId),
}

/// What the media thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// A digit arrived on a leg in the media path (RFC 4733).
    Dtmf { leg: LegId, digit: char },
    /// A leg's playlist played to its end (its looped clip never ends).
    Played { leg: LegId },
    /// A leg could not be opened (its codec, its keys); the SIP side should end it.
    Failed { leg: LegId, why: String },
}

/// Counters of the media thread, for metrics and tests.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub legs: std::sync::atomic::AtomicU64,
    pub packets_in: std::sync::atomic::AtomicU64,
    pub packets_out: std::sync::atomic::AtomicU64,
    /// Ticks that started more than a frame late (the machine was too busy).
    pub late_ticks: std::sync::atomic::AtomicU64,
}

/// The handle to the media thread; dropping it stops the thread.
pub struct Relay {
    tx: mpsc::Sender<Cmd>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<RelayStats>,
}

impl Relay {
    /// Starts the media thread; its events go to `events`.
    pub fn start(events: tokio::sync::mpsc::UnboundedSender<RelayEvent>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(RelayStats::default());
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name("router-media".into())
            .spawn(move || run(rx, events, s))?;
        Ok(Self {
            tx,
            thread: Some(thread),
            stats,
        })
    }

    /// Carries a leg's media on `socket` (already bound; its port is in our SDP).
    pub fn open(&self, leg: LegId, socket: UdpSocket, media: &Negotiated) {
        let _ = self.tx.send(Cmd::Open {
            leg,
            socket,
            media: Box::new(media.clone()),
        });
    }

    /// The leg's media changed (hold, resume, a new address).
    pub fn update(&self, leg: LegId, media: &Negotiated) {
        let _ = self.tx.send(Cmd::Update {
            leg,
            media: Box::new(media.clone()),
        });
    }

    /// Each of the two legs hears the other.
    pub fn bridge(&self, a: LegId, b: LegId) {
        let _ = self.tx.send(Cmd::Bridge(a, b));
    }

    /// Every leg hears all the others (mixed), and none hears itself: a conference. Each
    /// leaves any bridge or conference it was in. At most [`MAX_CONFERENCE`] legs; more are
    /// left out.
    pub fn conference(&self, legs: Vec<LegId>) {
        let _ = self.tx.send(Cmd::Conference(legs));
    }

    /// Who hears whom, one way: each leg named first hears exactly the legs listed with it
    /// (at most [`MAX_CONFERENCE`]; more are left out) and nothing else, and is heard by no
    /// leg outside the map. Legs the map does not name keep what they hear among
    /// themselves.
    pub fn hear(&self, map: Vec<(LegId, Vec<LegId>)>) {
        let _ = self.tx.send(Cmd::Hear(map));
    }

    /// The leg hears its peers no more (and they no longer hear it; the others of a
    /// conference still hear each other).
    pub fn unbridge(&self, leg: LegId) {
        let _ = self.tx.send(Cmd::Unbridge(leg));
    }

    /// Plays to the leg, replacing what played before (an empty playlist stops playing).
    pub fn play(&self, leg: LegId, playlist: Playlist) {
        let _ = self.tx.send(Cmd::Play(leg, playlist));
    }

    /// A key pressed on `leg` that arrived by signalling (SIP INFO): it goes on to the legs
    /// that hear `leg`, as one in the media path does.
    pub fn pass_digit(&self, leg: LegId, digit: char) {
        let _ = self.tx.send(Cmd::Digit(leg, digit));
    }

    /// Stops carrying the leg and closes its port.
    pub fn close(&self, leg: LegId) {
        let _ = self.tx.send(Cmd::Close(leg));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Player {
    list: Playlist,
    /// Index of the clip playing (== clips.len(): the loop).
    at: usize,
    pos: usize,
    /// The clip converted to the leg's rate.
    current: Arc<Vec<i16>>,
}

struct Leg {
    socket: UdpSocket,
    session: MediaSession,
    send: bool,
    rtcp_mux: bool,
    rate: u32,
    /// The legs this one hears, each with its audio converted to this leg's rate.
    peers: Vec<(LegId, Rate)>,
    player: Option<Player>,
    /// Keys pressed as tones in what the leg sends: where the call agreed no RFC 4733
    /// telephone-event (a trunk without it), the only way its digits arrive.
    inband: Option<DtmfDetector>,
    /// ICE-lite on the leg (a Teams leg with media bypass): the peer's checks are answered
    /// on the media port.
    ice: Option<IceLite>,
    /// Where the peer's nominated pair ends: media goes there rather than to the SDP's
    /// default address, and stays there across an ICE restart until the next nomination.
    nominated: Option<SocketAddr>,
    /// Keys of other legs to play as tones in what this one is sent (it agreed no
    /// telephone-event), and how far into the first (its tone, then its gap) in samples.
    keys_out: VecDeque<char>,
    key_pos: usize,
}

impl Leg {
    /// Plays the keys waiting in `keys_out` over `pcm` (a frame at the leg's rate): each
    /// key's two tones for [`KEY_MS`], then [`KEY_GAP_MS`] of what the leg would hear anyway.
    fn play_keys(&mut self, pcm: &mut [i16]) {
        let tone = (self.rate * KEY_MS / 1000) as usize;
        let cycle = tone + (self.rate * KEY_GAP_MS / 1000) as usize;
        let mut i = 0;
        while i < pcm.len() {
            let Some(&key) = self.keys_out.front() else {
                return;
            };
            let step = if self.key_pos < tone {
                let m = (tone - self.key_pos).min(pcm.len() - i);
                if let Some(t) = key_tone(key, self.rate, KEY_AMPLITUDE, self.key_pos as u64, m) {
                    pcm[i..i + m].copy_from_slice(&t);
                }
                m
            } else {
                (cycle - self.key_pos).min(pcm.len() - i)
            };
            i += step;
            self.key_pos += step;
            if self.key_pos >= cycle {
                self.keys_out.pop_front();
                self.key_pos = 0;
            }
        }
    }
}

fn ice_for(m: &Negotiated) -> Option<IceLite> {
    m.ice
        .as_ref()
        .map(|a| IceLite::new(&a.local_ufrag, &a.local_pwd))
}

/// An in-band detector for a leg that agreed no telephone-event.
fn inband_for(m: &Negotiated, rate: u32) -> Option<DtmfDetector> {
    (m.telephone_event.is_none() && rate >= 8000).then(|| DtmfDetector::new(rate))
}

struct Engine {
    legs: HashMap<LegId, Leg>,
    /// Clips converted to a codec's rate, by (clip address, rate).
    converted: HashMap<(usize, u32), Arc<Vec<i16>>>,
    events: tokio::sync::mpsc::UnboundedSender<RelayEvent>,
    stats: Arc<RelayStats>,
    anchor: (Instant, Duration),
}

fn unix_time() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn sends(d: Direction) -> bool {
    matches!(d, Direction::SendRecv | Direction::SendOnly)
}

fn srtp_for(m: &Negotiated) -> Result<Option<Srtp>, String> {
    match (&m.local_crypto, &m.remote_crypto) {
        (Some(l), Some(r)) => Srtp::new(l, r)
            .map(Some)
            .map_err(|e| format!("cannot start SRTP: {e}")),
        _ => Ok(None),
    }
}

impl Engine {
    fn open(&mut self, leg: LegId, socket: UdpSocket, m: &Negotiated) -> Result<(), String> {
        let codec = Codec::from_name(&m.codec.encoding, m.codec.clock_rate).ok_or_else(|| {
            format!(
                "the peer chose {}/{}, which the router cannot carry",
                m.codec.encoding, m.codec.clock_rate
            )
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("cannot use the media port: {e}"))?;
        let now = Instant::now();
        let mut session = MediaSession::new(codec, m.codec.payload_type, m.remote, now);
        session.set_wall_clock(self.anchor.0, self.anchor.1);
        session.set_telephone_event(m.telephone_event);
        session.configure_opus(m.codec.fmtp.as_deref(), false);
        session.set_srtp(srtp_for(m)?);
        self.legs.insert(
            leg,
            Leg {
                socket,
                session,
                send: sends(m.direction),
                rtcp_mux: m.rtcp_mux,
                rate: codec.clock_rate(),
                peers: Vec::new(),
                player: None,
                inband: inband_for(m, codec.clock_rate()),
                ice: ice_for(m),
                nominated: None,
                keys_out: VecDeque::new(),
                key_pos: 0,
            },
        );
        self.stats
            .legs
            .store(self.legs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn update(&mut self, leg: LegId, m: &Negotiated) -> Result<(), String> {
        let Some(l) = self.legs.get_mut(&leg) else {
            return Ok(());
        };
        l.ice = ice_for(m);
        if l.ice.is_none() {
            l.nominated = None;
        }
        // Media stays on the nominated pair through a re-offer (hold, resume, an ICE restart).
        l.session.set_remote(l.nominated.or(m.remote));
        l.session.set_telephone_event(m.telephone_event);
        if m.telephone_event.is_some() != l.inband.is_none() {
            l.inband = inband_for(m, l.rate);
        }
        l.rtcp_mux = m.rtcp_mux;
        l.send = sends(m.direction);
        if l.session.is_secure() != m.local_crypto.is_some() {
            l.session.set_srtp(srtp_for(m)?);
        }
        Ok(())
    }

    /// Key `digit` pressed on leg `from` goes on to every leg that hears it (see the module's
    /// documentation).
    fn pass_digit(&mut self, from: LegId, digit: char) {
        if key_frequencies(digit).is_none() {
            return;
        }
        for (&id, l) in self.legs.iter_mut() {
            if id == from || !l.peers.iter().any(|(p, _)| *p == from) {
                continue;
            }
            if !l.session.send_dtmf(digit, KEY_MS) && l.keys_out.len() < KEYS_QUEUED {
                l.keys_out.push_back(digit);
            }
        }
    }

    fn bridge(&mut self, a: LegId, b: LegId) {
        if a != b {
            self.conference(&[a, b]);
        }
    }

    /// Each of `legs` (the open ones, at most [`MAX_CONFERENCE`]) hears all the others.
    fn conference(&mut self, legs: &[LegId]) {
        let mut members: Vec<LegId> = Vec::new();
        for id in legs {
            if members.len() < MAX_CONFERENCE && !members.contains(id) && self.legs.contains_key(id)
            {
                members.push(*id);
            }
        }
        let map: Vec<(LegId, Vec<LegId>)> = members
            .iter()
            .map(|id| (*id, members.iter().copied().filter(|o| o != id).collect()))
            .collect();
        self.hear(&map);
    }

    /// Each leg of `map` hears exactly its list (the open legs of it, itself left out, at
    /// most [`MAX_CONFERENCE`]), each converted to its rate.
    fn hear(&mut self, map: &[(LegId, Vec<LegId>)]) {
        for (id, _) in map {
            self.unbridge(*id);
        }
        for (id, list) in map {
            let Some(rate) = self.legs.get(id).map(|l| l.rate) else {
                continue;
            };
            let mut peers: Vec<(LegId, Rate)> = Vec::new();
            for p in list {
                if peers.len() == MAX_CONFERENCE || p == id || peers.iter().any(|(x, _)| x == p) {
                    continue;
                }
                if let Some(other) = self.legs.get(p) {
                    peers.push((*p, Rate::new(other.rate, rate)));
                }
            }
            if let Some(l) = self.legs.get_mut(id) {
                l.peers = peers;
            }
        }
    }

    /// The leg hears nobody and nobody hears it (hearing may go one way, so every leg is
    /// looked at).
    fn unbridge(&mut self, leg: LegId) {
        for (id, l) in self.legs.iter_mut() {
            if *id == leg {
                l.peers.clear();
            } else {
                l.peers.retain(|(x, _)| *x != leg);
            }
        }
    }

    fn clip_at(&mut self, clip: &Arc<Clip>, rate: u32) -> Arc<Vec<i16>> {
        let key = (Arc::as_ptr(clip) as usize, rate);
        if let Some(c) = self.converted.get(&key) {
            return c.clone();
        }
        let converted = if rate == CLIP_RATE {
            clip.samples.clone()
        } else {
            let mut r = Rate::new(CLIP_RATE, rate);
            let f: Vec<f32> = clip
                .samples
                .iter()
                .map(|&x| f32::from(x) / 32768.0)
                .collect();
            r.push(&f);
            // Flush the converter's last chunk with silence.
            r.push(&vec![0.0; CLIP_RATE as usize / 50]);
            let n = r.available();
            r.pull(n)
                .unwrap_or_default()
                .iter()
                .map(|&x| (x.clamp(-1.0, 1.0) * 32767.0) as i16)
                .collect()
        };
        let converted = Arc::new(converted);
        // Bounded: prompts and music are few; a runaway set is simply not cached.
        if self.converted.len() < 512 {
            self.converted.insert(key, converted.clone());
        }
        converted
    }

    fn play(&mut self, leg: LegId, list: Playlist) {
        let Some(rate) = self.legs.get(&leg).map(|l| l.rate) else {
            return;
        };
        let first = list.clips.first().or(list.then_loop.as_ref()).cloned();
        let player = match first {
            Some(c) => {
                let current = self.clip_at(&c, rate);
                Some(Player {
                    list,
                    at: 0,
                    pos: 0,
                    current,
                })
            }
            None => None,
        };
        if let Some(l) = self.legs.get_mut(&leg) {
            l.player = player;
        }
    }

    /// The next frame of the leg's playlist; `None` when it has ended (reported once).
    fn next_played(&mut self, leg: LegId, n: usize) -> Option<Vec<i16>> {
        let rate = self.legs.get(&leg)?.rate;
        let mut out = Vec::with_capacity(n);
        loop {
            let l = self.legs.get_mut(&leg)?;
            let p = l.player.as_mut()?;
            let take = (n - out.len()).min(p.current.len().saturating_sub(p.pos));
            out.extend_from_slice(&p.current[p.pos..p.pos + take]);
            p.pos += take;
            if out.len() == n {
                return Some(out);
            }
            // The clip ended: the next one, the loop again, or the end.
            let looping = p.at >= p.list.clips.len();
            let next = if looping {
                p.list.then_loop.clone()
            } else {
                p.at += 1;
                p.list
                    .clips
                    .get(p.at)
                    .or(p.list.then_loop.as_ref())
                    .cloned()
            };
            match next {
                Some(c) if !c.samples.is_empty() => {
                    let current = self.clip_at(&c, rate);
                    if let Some(p) = self.legs.get_mut(&leg).and_then(|l| l.player.as_mut()) {
                        p.current = current;
                        p.pos = 0;
                    }
                }
                _ => {
                    if let Some(l) = self.legs.get_mut(&leg) {
                        l.player = None;
                    }
                    let _ = self.events.send(RelayEvent::Played { leg });
                    out.resize(n, 0);
                    return Some(out);
                }
            }
        }
    }

    fn receive_all(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        let mut pressed = Vec::new();
        for (&id, l) in self.legs.iter_mut() {
            // Bounded per tick, so one flooded port cannot starve the others.
            for _ in 0..64 {
                let (n, from) = match l.socket.recv_from(buf) {
                    Ok(x) => x,
                    Err(_) => break,
                };
                self.stats
                    .packets_in
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(ice) = l.ice.as_ref().filter(|_| is_stun(&buf[..n])) {
                    match ice.check(&buf[..n], from) {
                        Check::Answered { reply, nominated } => {
                            let _ = l.socket.send_to(&reply, from);
                            if nominated && l.nominated != Some(from) {
                                tracing::debug!(leg = id, %from, "ICE pair nominated: media goes there");
                                l.nominated = Some(from);
                                l.session.set_remote(Some(from));
                            }
                        }
                        Check::Refused { reply, status } => {
                            tracing::debug!(leg = id, %from, status, "ICE check refused");
                            let _ = l.socket.send_to(&reply, from);
                        }
                        Check::Ignored => {}
                    }
                    continue;
                }
                match l.session.receive(&buf[..n], from, now) {
                    Ok(Some(digit)) => {
                        let _ = self.events.send(RelayEvent::Dtmf { leg: id, digit });
                        pressed.push((id, digit));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::trace!(leg = id, error = %e, %from, "RTP packet dropped"),
                }
            }
        }
        for (leg, digit) in pressed {
            self.pass_digit(leg, digit);
        }
    }

    fn tick(&mut self, ticks: u64) {
        // What each leg heard this frame, at its own rate.
        let heard: HashMap<LegId, Vec<i16>> = self
            .legs
            .iter_mut()
            .map(|(&id, l)| (id, l.session.play()))
            .collect();
        // Keys pressed as tones, where a leg has no telephone-event.
        let mut digits = Vec::new();
        for (id, l) in self.legs.iter_mut() {
            if let (Some(d), Some(pcm)) = (l.inband.as_mut(), heard.get(id)) {
                d.push_into(pcm, &mut digits);
                for digit in digits.drain(..) {
                    let _ = self.events.send(RelayEvent::Dtmf { leg: *id, digit });
                }
            }
        }
        let ids: Vec<LegId> = self.legs.keys().copied().collect();
        for id in ids {
            let playing = self.legs.get(&id).is_some_and(|l| l.player.is_some());
            let n = match self.legs.get(&id) {
                Some(l) => l.session.frame_samples(),
                None => continue,
            };
            let played = if playing {
                self.next_played(id, n)
            } else {
                None
            };
            let Some(l) = self.legs.get_mut(&id) else {
                continue;
            };
            // The peers' frames, converted, go through their resamplers even while a prompt
            // plays, so all stay in step when it ends; in a conference they are summed.
            let mut mix: Option<Vec<f32>> = None;
            for (p, r) in l.peers.iter_mut() {
                let Some(h) = heard.get(p) else { continue };
                let f: Vec<f32> = h.iter().map(|&x| f32::from(x) / 32768.0).collect();
                r.push(&f);
                // Keep at most 60 ms queued (the converters' chunks differ from frames).
                while r.available() > n * 3 {
                    let _ = r.pull(n);
                }
                if let Some(v) = r.pull(n) {
                    match mix.as_mut() {
                        Some(m) => m.iter_mut().zip(&v).for_each(|(m, x)| *m += x),
                        None => mix = Some(v),
                    }
                }
            }
            let from_peer = mix.map(|v| {
                v.iter()
                    .map(|&x| (x.clamp(-1.0, 1.0) * 32767.0) as i16)
                    .collect::<Vec<i16>>()
            });
            let mut pcm = played.or(from_peer).unwrap_or_else(|| vec![0; n]);
            l.play_keys(&mut pcm);
            if !l.send {
                continue;
            }
            let Some(to) = l.session.remote() else {
                continue;
            };
            let packet = l.session.packetise(&pcm);
            if !packet.is_empty() && l.socket.send_to(&packet, to).is_ok() {
                self.stats
                    .packets_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // RTCP every 5 s, on the RTP port where rtcp-mux was agreed.
            if ticks % 250 == 125 && l.rtcp_mux {
                let now = l
                    .session
                    .wall_clock_at(Instant::now())
                    .unwrap_or_else(unix_time);
                let report = l.session.rtcp_report(now);
                if !report.is_empty() {
                    let _ = l.socket.send_to(&report, to);
                }
            }
        }
    }
}

fn run(
    rx: mpsc::Receiver<Cmd>,
    events: tokio::sync::mpsc::UnboundedSender<RelayEvent>,
    stats: Arc<RelayStats>,
) {
    let mut engine = Engine {
        legs: HashMap::new(),
        converted: HashMap::new(),
        events,
        stats,
        anchor: (Instant::now(), unix_time()),
    };
    let frame = Duration::from_millis(20);
    let mut next = Instant::now() + frame;
    let mut buf = vec![0u8; 2048];
    let mut ticks: u64 = 0;
    loop {
        loop {
            let cmd = match rx.try_recv() {
                Ok(c) => c,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            };
            match cmd {
                Cmd::Open { leg, socket, media } => {
                    if let Err(why) = engine.open(leg, socket, &media) {
                        let _ = engine.events.send(RelayEvent::Failed { leg, why });
                    }
                }
                Cmd::Update { leg, media } => {
                    if let Err(why) = engine.update(leg, &media) {
                        let _ = engine.events.send(RelayEvent::Failed { leg, why });
                    }
                }
                Cmd::Bridge(a, b) => engine.bridge(a, b),
                Cmd::Conference(legs) => engine.conference(&legs),
                Cmd::Hear(map) => engine.hear(&map),
                Cmd::Unbridge(l) => engine.unbridge(l),
                Cmd::Play(l, list) => engine.play(l, list),
                Cmd::Digit(l, digit) => engine.pass_digit(l, digit),
                Cmd::Close(l) => {
                    engine.unbridge(l);
                    engine.legs.remove(&l);
                    engine.stats.legs.store(
                        engine.legs.len() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            }
        }
        engine.receive_all(&mut buf);
        engine.tick(ticks);
        ticks += 1;
        let now = Instant::now();
        if now > next + frame {
            // Too late for more than a frame: count it and start the clock again rather than
            // sending a burst.
            engine
                .stats
                .late_ticks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            next = now + frame;
        } else {
            std::thread::sleep(next.saturating_duration_since(now));
            next += frame;
        }
    }
}

/// What an offer/answer agrees for a plain RTP stream of `codec` to `remote` (20 ms, rtcp-mux,
/// RFC 4733 at 101): for tests and benchmarks that drive legs without SIP.
pub fn plain(codec: Codec, remote: SocketAddr) -> Negotiated {
    let (encoding, rate, pt, channels) = match codec {
        Codec::Opus => ("opus", 48_000, 111, 2),
        Codec::Pcmu => ("PCMU", 8_000, 0, 1),
        Codec::Pcma => ("PCMA", 8_000, 8, 1),
    };
    Negotiated {
        remote: Some(remote),
        codec: NegotiatedCodec {
            payload_type: pt,
            encoding: encoding.into(),
            clock_rate: rate,
            channels,
            fmtp: None,
        },
        telephone_event: Some(101),
        direction: Direction::SendRecv,
        ptime: 20,
        remote_crypto: None,
        local_crypto: None,
        rtcp_mux: true,
        ice: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_media::tone::{energy_share, sine};

    /// A phone at the other end of a leg: sends a tone at `freq` for `frames` frames and
    /// keeps what it hears.
    fn phone(
        socket: UdpSocket,
        codec: Codec,
        pt: u8,
        to: SocketAddr,
        freq: f64,
        frames: usize,
    ) -> std::thread::JoinHandle<Vec<i16>> {
        std::thread::spawn(move || {
            socket.set_nonblocking(true).unwrap();
            let mut s = MediaSession::new(codec, pt, Some(to), Instant::now());
            s.set_telephone_event(Some(101));
            let rate = codec.clock_rate();
            let n = s.frame_samples();
            let mut heard = Vec::new();
            let mut buf = [0u8; 2048];
            let mut next = Instant::now();
            for i in 0..frames {
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let _ = s.receive(&buf[..len], from, Instant::now());
                }
                heard.extend(s.play());
                let pcm = sine(freq, rate, 8000.0, (i * n) as u64, n);
                let p = s.packetise(&pcm);
                socket.send_to(&p, to).unwrap();
                if i == frames / 2 {
                    s.send_dtmf('5', 160);
                }
                next += Duration::from_millis(20);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            heard
        })
    }

    /// The share of `hz` in `pcm` (at `rate`): the median over 100 ms windows, so that a
    /// window or two concealed (digits carry no audio; a test machine under load delays a
    /// packet) does not decide it.
    fn median_share(pcm: &[i16], rate: u32, hz: f64) -> f64 {
        let mut shares: Vec<f64> = pcm
            .chunks(rate as usize / 10)
            .map(|w| energy_share(w, rate, hz))
            .collect();
        shares.sort_by(f64::total_cmp);
        shares.get(shares.len() / 2).copied().unwrap_or(0.0)
    }

    #[test]
    fn opus_and_pcmu_legs_hear_each_other_through_the_bridge() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Relay::start(tx).unwrap();
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (leg_a, leg_b, phone_a, phone_b) = (bind(), bind(), bind(), bind());
        let (ra, rb) = (leg_a.local_addr().unwrap(), leg_b.local_addr().unwrap());
        let (pa, pb) = (phone_a.local_addr().unwrap(), phone_b.local_addr().unwrap());
        relay.open(1, leg_a, &plain(Codec::Opus, pa));
        relay.open(2, leg_b, &plain(Codec::Pcmu, pb));
        relay.bridge(1, 2);
        let frames = 100;
        let a = phone(phone_a, Codec::Opus, 111, ra, 440.0, frames);
        let b = phone(phone_b, Codec::Pcmu, 0, rb, 1000.0, frames);
        let (heard_a, heard_b) = (a.join().unwrap(), b.join().unwrap());
        // The second half: past the jitter buffers' start.
        let tail_a = &heard_a[heard_a.len() / 2..];
        let tail_b = &heard_b[heard_b.len() / 2..];
        let (a_hears_b, b_hears_a) = (
            median_share(tail_a, 48_000, 1000.0),
            median_share(tail_b, 8_000, 440.0),
        );
        assert!(
            a_hears_b > 0.5,
            "the Opus phone hears the PCMU phone's 1 kHz: {a_hears_b:.2}"
        );
        assert!(
            b_hears_a > 0.5,
            "the PCMU phone hears the Opus phone's 440 Hz: {b_hears_a:.2}"
        );
        assert!(
            energy_share(tail_a, 48_000, 440.0) < 0.1,
            "no echo of its own tone"
        );
        let mut digits = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let RelayEvent::Dtmf { leg, digit } = e {
                digits.push((leg, digit));
            }
        }
        digits.sort();
        assert_eq!(
            digits,
            vec![(1, '5'), (2, '5')],
            "each leg's RFC 4733 digit is reported once"
        );
    }

    /// Three legs in a conference (Opus, PCMU, PCMA): each phone hears the other two tones,
    /// about equally, and not its own.
    #[test]
    fn in_a_conference_every_leg_hears_the_others_and_not_itself() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Relay::start(tx).unwrap();
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (legs, phones): (Vec<UdpSocket>, Vec<UdpSocket>) =
            (0..3).map(|_| (bind(), bind())).unzip();
        let codecs = [(Codec::Opus, 111), (Codec::Pcmu, 0), (Codec::Pcma, 8)];
        let tones = [440.0, 1000.0, 700.0];
        let mut threads = Vec::new();
        let mut ids = Vec::new();
        for (i, (leg, phone_socket)) in legs.into_iter().zip(phones).enumerate() {
            let to = leg.local_addr().unwrap();
            let (codec, pt) = codecs[i];
            relay.open(
                10 + i as u64,
                leg,
                &plain(codec, phone_socket.local_addr().unwrap()),
            );
            ids.push(10 + i as u64);
            threads.push((codec, phone(phone_socket, codec, pt, to, tones[i], 100)));
        }
        // A bridge first (10 ↔ 11), then all three: the conference replaces it.
        relay.bridge(10, 11);
        relay.conference(ids);
        for (i, (codec, t)) in threads.into_iter().enumerate() {
            let heard = t.join().unwrap();
            let rate = codec.clock_rate();
            let tail = &heard[heard.len() / 2..];
            for (j, hz) in tones.iter().enumerate() {
                let got = median_share(tail, rate, *hz);
                if i == j {
                    assert!(got < 0.1, "phone {i} hears its own {hz} Hz: {got:.2}");
                } else {
                    assert!(got > 0.2, "phone {i} hears phone {j}'s {hz} Hz: {got:.2}");
                }
            }
        }
    }

    /// A supervisor's leg listening in: it hears the caller and the agent, who hear each
    /// other and not it; whispering, the agent hears it too and the caller still does not.
    #[test]
    fn hearing_goes_one_way_for_a_supervisor_listening_in_or_whispering() {
        for whisper in [false, true] {
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let relay = Relay::start(tx).unwrap();
            let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
            let codecs = [(Codec::Pcmu, 0), (Codec::Opus, 111), (Codec::Pcma, 8)];
            // The caller (1), the agent (2), the supervisor (3).
            let tones = [440.0, 1000.0, 700.0];
            let mut threads = Vec::new();
            for (i, (codec, pt)) in codecs.into_iter().enumerate() {
                let (leg, phone_socket) = (bind(), bind());
                let to = leg.local_addr().unwrap();
                relay.open(
                    1 + i as u64,
                    leg,
                    &plain(codec, phone_socket.local_addr().unwrap()),
                );
                threads.push((codec, phone(phone_socket, codec, pt, to, tones[i], 100)));
            }
            relay.bridge(1, 2);
            let agent_hears = if whisper { vec![1, 3] } else { vec![1] };
            relay.hear(vec![(1, vec![2]), (2, agent_hears), (3, vec![1, 2])]);
            let mut shares = Vec::new();
            for (codec, t) in threads {
                let heard = t.join().unwrap();
                let rate = codec.clock_rate();
                let tail = &heard[heard.len() / 2..];
                shares.push(tones.map(|hz| median_share(tail, rate, hz)));
            }
            let [caller, agent, supervisor] = [&shares[0], &shares[1], &shares[2]];
            assert!(caller[1] > 0.5, "the caller hears the agent: {caller:?}");
            assert!(
                caller[2] < 0.05,
                "the caller never hears the supervisor: {caller:?}"
            );
            assert!(agent[0] > 0.2, "the agent hears the caller: {agent:?}");
            if whisper {
                assert!(
                    agent[2] > 0.2,
                    "whispered to, the agent hears the supervisor: {agent:?}"
                );
            } else {
                assert!(
                    agent[2] < 0.05,
                    "listened in on, the agent does not: {agent:?}"
                );
            }
            assert!(
                supervisor[0] > 0.2 && supervisor[1] > 0.2,
                "the supervisor hears both: {supervisor:?}"
            );
        }
    }

    /// A phone at the other end of a leg (telephone-event agreed or not): sends a tone at
    /// `freq` for `frames` frames, presses `press` (RFC 4733: frame, key) when given, and
    /// keeps what it hears and the keys that reach it as RFC 4733 events.
    fn keypad_phone(
        socket: UdpSocket,
        (codec, pt, te): (Codec, u8, bool),
        to: SocketAddr,
        freq: f64,
        press: Option<(usize, char)>,
        frames: usize,
    ) -> std::thread::JoinHandle<(Vec<i16>, Vec<char>)> {
        std::thread::spawn(move || {
            socket.set_nonblocking(true).unwrap();
            let mut s = MediaSession::new(codec, pt, Some(to), Instant::now());
            s.set_telephone_event(te.then_some(101));
            let (rate, n) = (codec.clock_rate(), s.frame_samples());
            let (mut heard, mut keys) = (Vec::new(), Vec::new());
            let mut buf = [0u8; 2048];
            let mut next = Instant::now();
            for i in 0..frames {
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    if let Ok(Some(k)) = s.receive(&buf[..len], from, Instant::now()) {
                        keys.push(k);
                    }
                }
                heard.extend(s.play());
                let p = s.packetise(&sine(freq, rate, 6000.0, (i * n) as u64, n));
                socket.send_to(&p, to).unwrap();
                if let Some((_, key)) = press.filter(|(at, _)| *at == i) {
                    s.send_dtmf(key, 160);
                }
                next += Duration::from_millis(20);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            (heard, keys)
        })
    }

    /// In a conference, a key pressed on one leg (RFC 4733) and one sent on another by SIP
    /// INFO reach every other leg that hears them: as RFC 4733 events where the leg agreed
    /// telephone-event, as the key's tones in its audio where it did not. A leg nobody
    /// bridged gets neither.
    #[test]
    fn keys_pressed_on_a_leg_reach_the_legs_that_hear_it_as_events_or_as_tones() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Relay::start(tx).unwrap();
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        // 1: presses 5 (Opus); 2: sends # by INFO (PCMU); 3: no telephone-event (PCMA);
        // 4: in no bridge (PCMU).
        let kinds = [
            (Codec::Opus, 111, true),
            (Codec::Pcmu, 0, true),
            (Codec::Pcma, 8, false),
            (Codec::Pcmu, 0, true),
        ];
        let mut phones = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let (leg, phone_socket) = (bind(), bind());
            let to = leg.local_addr().unwrap();
            let mut m = plain(kind.0, phone_socket.local_addr().unwrap());
            m.telephone_event = kind.2.then_some(101);
            relay.open(1 + i as u64, leg, &m);
            let press = (i == 0).then_some((40, '5'));
            let hz = [440.0, 1000.0, 700.0, 1200.0][i];
            phones.push(keypad_phone(phone_socket, kind, to, hz, press, 120));
        }
        relay.conference(vec![1, 2, 3]);
        std::thread::sleep(Duration::from_millis(1600));
        relay.pass_digit(2, '#');
        let got: Vec<(Vec<i16>, Vec<char>)> =
            phones.into_iter().map(|p| p.join().unwrap()).collect();
        assert_eq!(
            got[0].1,
            ['#'],
            "the Opus phone gets the INFO key, not its own"
        );
        assert_eq!(got[1].1, ['5'], "the PCMU phone gets the Opus phone's key");
        assert!(got[2].1.is_empty(), "no events where none were agreed");
        let tones = |pcm: &[i16], rate| DtmfDetector::new(rate).push(pcm);
        assert_eq!(
            tones(&got[2].0, 8000),
            ['5', '#'],
            "the PCMA phone without telephone-event hears both keys as tones"
        );
        assert!(
            tones(&got[1].0, 8000).is_empty(),
            "events are not also tones"
        );
        assert!(
            got[3].1.is_empty() && tones(&got[3].0, 8000).is_empty(),
            "a leg in no bridge gets no key"
        );
    }

    #[test]
    fn keys_pressed_as_tones_on_a_leg_without_telephone_event_are_heard() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Relay::start(tx).unwrap();
        let (leg, phone) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let (to, pa) = (leg.local_addr().unwrap(), phone.local_addr().unwrap());
        // A trunk that agreed no telephone-event: PCMU only.
        let mut m = plain(Codec::Pcmu, pa);
        m.telephone_event = None;
        relay.open(9, leg, &m);
        // "1", "5", "#": 80 ms of the key's two tones, 80 ms of silence, sent in real time.
        let keys = ['1', '5', '#'];
        let mut s = MediaSession::new(Codec::Pcmu, 0, Some(to), Instant::now());
        let mut next = Instant::now();
        let mut t = 0u64;
        for key in keys {
            for frame in 0..8 {
                let pcm: Vec<i16> = if frame < 4 {
                    switchboard_media::dtmf::key_tone(key, 8000, 6000.0, t, 160).unwrap()
                } else {
                    vec![0; 160]
                };
                t += 160;
                phone.send_to(&s.packetise(&pcm), to).unwrap();
                next += Duration::from_millis(20);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut digits = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let RelayEvent::Dtmf { leg, digit } = e {
                assert_eq!(leg, 9);
                digits.push(digit);
            }
        }
        assert_eq!(digits, ['1', '5', '#'], "each key once, in order");
    }

    #[test]
    fn a_playlist_plays_its_clips_in_turn_and_reports_its_end_once() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Relay::start(tx).unwrap();
        let leg = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pa = peer.local_addr().unwrap();
        let ra = leg.local_addr().unwrap();
        relay.open(7, leg, &plain(Codec::Pcmu, pa));
        let tone = Arc::new(Clip {
            name: "tone".into(),
            samples: sine(600.0, CLIP_RATE, 8000.0, 0, CLIP_RATE as usize / 5),
        });
        relay.play(
            7,
            Playlist {
                clips: vec![tone.clone(), tone],
                then_loop: None,
            },
        );
        let h = phone(peer, Codec::Pcmu, 0, ra, 2000.0, 40);
        let heard = h.join().unwrap();
        assert!(
            energy_share(&heard, 8_000, 600.0) > 0.3,
            "the clips were heard"
        );
        let played: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|e| matches!(e, RelayEvent::Played { .. }))
            .collect();
        assert_eq!(played, vec![RelayEvent::Played { leg: 7 }]);
        drop(relay);
    }
}
