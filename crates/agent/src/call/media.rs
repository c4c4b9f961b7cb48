//! The audio of the phone's calls: one RTP port shared by its calls, a media session per call
//! (Opus or G.711), sound devices, a WAV file or silence as the microphone and a WAV file as
//! the speaker. It runs on a thread of its own with its own 20 ms clock, driven through an
//! [`AudioHandle`]: the SIP loop never waits on audio, and audio never interrupts SIP (a TLS
//! handshake takes longer than a frame). Calls whose SDP agreed SDES keys are carried as SRTP; packets that fail authentication
//! are dropped, and a run of them is reported as a `media_error` event.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use switchboard_media::device::{DeviceAudio, DeviceChoice, DeviceEvent, Rate, ENGINE_RATE};
use switchboard_media::session::{Codec, Dropped, MediaSession, Stats};
use switchboard_media::srtp::{Srtp, SrtpError};
use switchboard_media::wav::{WavSink, WavSource};
use switchboard_sip::sdp::{CodecSpec, Direction, Negotiated};
use switchboard_sip::ua::CallId;
use tokio::sync::{mpsc, oneshot};

use super::CallError;

struct CallMedia {
    session: MediaSession,
    source: Option<WavSource>,
    sink: Option<WavSink>,
    send: bool,
    /// We hold the call (our own re-offer made it `sendonly` or `inactive`): it carries
    /// silence, never the microphone or the file, until we resume it. Not so when the other
    /// side asked only to receive (its `recvonly` offer): then we talk on.
    held: bool,
    /// The other side is to send us audio (`sendrecv`, or `recvonly` on our side): not while
    /// either side holds the call.
    recv: bool,
    /// RTCP goes on the RTP port (RFC 5761) when both sides agreed; otherwise none is sent.
    rtcp_mux: bool,
    /// The `a=crypto` lines (ours, the peer's) the SRTP context was keyed with.
    keys: Option<(String, String)>,
    /// Microphone (48 kHz) → the codec's rate, and what we hear → 48 kHz, with devices.
    mic: Rate,
    speaker: Rate,
    /// In the phone's conference: the call also carries what the conference's other calls
    /// hear.
    joined: bool,
    /// What this call heard this tick, at its rate and at 48 kHz (for the speaker and the
    /// conference).
    heard: Vec<i16>,
    heard48: Vec<f32>,
    /// The conference's other calls (48 kHz) → this call's codec rate.
    others: Rate,
    /// SRTP packets that failed authentication in a row, and whether we said so.
    auth_failures_in_row: u32,
    warned: bool,
}

/// SRTP packets failing authentication in a row (half a second of audio) before the agent
/// reports that the keys disagree.
const AUTH_FAILURES_TO_REPORT: u32 = 25;

/// The `a=crypto` lines (ours, the peer's) an SRTP context was keyed with.
type Keys = (String, String);

/// The SRTP context for agreed keys; `None` for plain RTP.
fn srtp_for(m: &Negotiated) -> Result<Option<(Srtp, Keys)>, CallError> {
    match (&m.local_crypto, &m.remote_crypto) {
        (Some(l), Some(r)) => {
            let srtp =
                Srtp::new(l, r).map_err(|e| CallError::Media(format!("cannot start SRTP: {e}")))?;
            Ok(Some((srtp, (l.clone(), r.clone()))))
        }
        _ => Ok(None),
    }
}

struct CallAudio {
    calls: HashMap<CallId, CallMedia>,
    /// The file to play, and its audio at each rate a call needed so far.
    play: Option<PathBuf>,
    played: HashMap<u32, WavSource>,
    record: Option<PathBuf>,
    recordings: u32,
    /// Opus DTX on our side.
    dtx: bool,
    /// The sound devices chosen (none: the calls use files or silence), and the volume of
    /// the speaker.
    choice: Option<DeviceChoice>,
    volume: f32,
    /// The devices, open only around calls: from the moment a call is expected (it rings,
    /// or we dial) until [`DEVICE_LINGER`] after the last call ended. Between calls the
    /// phone holds no microphone (the system shows none in use) and runs no clock.
    devices: Option<DeviceAudio>,
    /// Calls that will need the devices (ringing, dialled), not carrying audio yet, and when
    /// each was expected.
    expected: HashMap<CallId, Instant>,
    /// When the last call needing the devices went.
    quiet_since: Option<Instant>,
    /// Send back what each call hears.
    echo: bool,
    /// The microphone is muted: calls carry silence.
    muted: bool,
    frames: DeviceFrames,
}

/// How long the devices stay open after the last call: a call that follows at once (the
/// next caller in a queue, a consultation after a transfer) finds them open, and the ring of
/// the next call is not held up by opening them.
const DEVICE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// A call expected this long without carrying audio no longer keeps the devices open (the
/// engine stops every call it knows; this is for one it never started).
const EXPECTED_AT_MOST: std::time::Duration = std::time::Duration::from_secs(600);

/// The most samples a frame has: 20 ms at 48 kHz (the devices' and Opus's rate).
const MAX_FRAME: usize = 960;

/// The buffers of a tick's device side, made once: the microphone's frame, one call's share
/// (at its codec's rate or at 48 kHz), one call's frame to send, and the speaker's mix.
struct DeviceFrames {
    mic: Vec<f32>,
    call: Vec<f32>,
    pcm: Vec<i16>,
    mix: Vec<f32>,
    /// What every call of the conference heard this tick, summed (48 kHz).
    conference: Vec<f32>,
    /// Our voice at one call's rate.
    mic_call: Vec<f32>,
}

impl DeviceFrames {
    fn new() -> Self {
        Self {
            mic: vec![0.0; MAX_FRAME],
            call: vec![0.0; MAX_FRAME],
            pcm: vec![0; MAX_FRAME],
            mix: vec![0.0; MAX_FRAME],
            conference: vec![0.0; MAX_FRAME],
            mic_call: vec![0.0; MAX_FRAME],
        }
    }
}

/// `from` into `to`, with silence where it runs short.
fn copy_padded(to: &mut [i16], from: &[i16]) {
    let n = to.len().min(from.len());
    to[..n].copy_from_slice(&from[..n]);
    to[n..].fill(0);
}

/// How the agent's calls sound.
pub struct AudioOptions {
    /// The microphone: this WAV file (otherwise silence, or a device).
    pub play: Option<PathBuf>,
    /// Record what each call carries from the other side.
    pub record: Option<PathBuf>,
    pub codecs: Vec<Codec>,
    /// Opus DTX.
    pub dtx: bool,
    pub devices: Option<DeviceChoice>,
    /// Echo test: each call sends back what it hears.
    pub echo: bool,
    /// Output volume on the device, 0.0–1.0.
    pub volume: f32,
    /// Start muted.
    pub muted: bool,
}

/// The codecs `--codec` names, in order (default: Opus, then PCMU, then PCMA).
pub fn parse_codecs(names: &[String]) -> Result<Vec<Codec>, CallError> {
    if names.is_empty() {
        return Ok(vec![Codec::Opus, Codec::Pcmu, Codec::Pcma]);
    }
    names
        .iter()
        .map(|n| {
            Codec::from_name(n, 8000)
                .or_else(|| Codec::from_name(n, 48000))
                .ok_or_else(|| {
                    CallError::Options(format!(
                        "unknown codec {n:?} — this agent speaks opus, pcmu and pcma"
                    ))
                })
        })
        .collect()
}

fn directions(d: switchboard_sip::sdp::Direction) -> (bool, bool) {
    match d {
        Direction::SendRecv => (true, true),
        Direction::SendOnly => (true, false),
        Direction::RecvOnly => (false, true),
        Direction::Inactive => (false, false),
    }
}

impl CallAudio {
    /// A call's media is agreed: start carrying it. The error says why it cannot be.
    fn start(&mut self, call: CallId, m: &Negotiated) -> Result<(), CallError> {
        if self.calls.contains_key(&call) {
            return self.update(call, m, false);
        }
        // Normally open since the call rang or was dialled; otherwise now.
        self.expected.remove(&call);
        self.open_devices();
        let codec = Codec::from_name(&m.codec.encoding, m.codec.clock_rate).ok_or_else(|| {
            CallError::Media(format!(
                "the peer chose {}/{}, which this agent cannot carry yet",
                m.codec.encoding, m.codec.clock_rate
            ))
        })?;
        let created = Instant::now();
        let mut session = MediaSession::new(codec, m.codec.payload_type, m.remote, created);
        // The one read of the system clock for this stream's RTCP (the edge, #13 item 25).
        session.set_wall_clock(created, unix_time());
        session.set_telephone_event(m.telephone_event);
        session.configure_opus(m.codec.fmtp.as_deref(), self.dtx);
        let keys = match srtp_for(m)? {
            Some((srtp, keys)) => {
                session.set_srtp(Some(srtp));
                Some(keys)
            }
            None => None,
        };
        let sink = match &self.record {
            Some(path) => {
                self.recordings += 1;
                let path = if self.recordings == 1 {
                    path.clone()
                } else {
                    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string());
                    path.with_file_name(format!(
                        "{}-{}.wav",
                        stem.unwrap_or_else(|| "call".into()),
                        self.recordings
                    ))
                };
                Some(WavSink::create(&path, codec.clock_rate())?)
            }
            None => None,
        };
        let (send, recv) = directions(m.direction);
        let source = match &self.play {
            Some(path) => {
                let rate = codec.clock_rate();
                let src = match self.played.entry(rate) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(WavSource::open(path, rate)?)
                    }
                };
                Some(src.clone())
            }
            None => None,
        };
        self.calls.insert(
            call,
            CallMedia {
                session,
                source,
                sink,
                send,
                held: false,
                recv,
                rtcp_mux: m.rtcp_mux,
                keys,
                mic: Rate::new(ENGINE_RATE, codec.clock_rate()),
                speaker: Rate::new(codec.clock_rate(), ENGINE_RATE),
                joined: false,
                heard: Vec::new(),
                heard48: vec![0.0; MAX_FRAME],
                others: Rate::new(ENGINE_RATE, codec.clock_rate()),
                auth_failures_in_row: 0,
                warned: false,
            },
        );
        Ok(())
    }

    /// New offer/answer on the call (hold, resume, a new address); `ours` when we made the
    /// offer (our hold or resume).
    fn update(&mut self, call: CallId, m: &Negotiated, ours: bool) -> Result<(), CallError> {
        if let Some(c) = self.calls.get_mut(&call) {
            let keys = m.local_crypto.clone().zip(m.remote_crypto.clone());
            if keys != c.keys {
                // New keys (a re-INVITE re-keyed the call), or SRTP started or stopped.
                let srtp = srtp_for(m)?;
                c.keys = srtp.as_ref().map(|(_, k)| k.clone());
                c.session.set_srtp(srtp.map(|(s, _)| s));
                c.auth_failures_in_row = 0;
                c.warned = false;
            }
            c.session.set_remote(m.remote);
            c.session.set_telephone_event(m.telephone_event);
            c.rtcp_mux = m.rtcp_mux;
            (c.send, c.recv) = directions(m.direction);
            if ours {
                c.held = m.direction != Direction::SendRecv;
            }
        }
        Ok(())
    }

    /// The call ended: close its recording; its figures.
    fn stop(&mut self, call: CallId) -> Option<(Stats, Option<f64>)> {
        self.expected.remove(&call);
        let c = self.calls.remove(&call)?;
        if let Some(sink) = c.sink {
            if let Err(e) = sink.finish() {
                tracing::warn!(error = %e, "could not finish the recording");
            }
        }
        Some((c.session.stats(), c.session.mos()))
    }

    /// Every 20 ms: one frame out per sending call (packets to send), one frame played into
    /// each recording.
    ///
    /// First every call's frame heard is taken (for the speaker, the recordings and the
    /// conference), then every call's frame to send is made: our voice (the device, the file
    /// or silence; not while muted or held) and, for a call in the conference, what the
    /// conference's other calls heard in this same tick — each party hears the others with no
    /// frame of extra delay, and never itself.
    ///
    /// The device side (the microphone frame, each call's share of it and of the speaker, the
    /// mix, the conference) goes through buffers made once ([`DeviceFrames`], each call's
    /// `heard48`); the codec work of each call (decoding, encoding, SRTP, the packets) still
    /// allocates.
    fn tick(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let echo = self.echo;
        let muted = self.muted;
        // The microphone once for every call; what the calls carry, mixed, to the speaker.
        let bufs = &mut self.frames;
        let devices = self.devices.as_mut();
        let with_devices = devices.is_some();
        if let Some(d) = devices {
            d.capture_into(&mut bufs.mic);
            bufs.mix.fill(0.0);
        }
        // A conference needs two calls or more; one left talks as a plain call.
        let conference = self.calls.values().filter(|c| c.joined).count() >= 2;
        bufs.conference.fill(0.0);
        for c in self.calls.values_mut() {
            // Kept for the second pass (the vector moves in; none is made for it).
            c.heard = c.session.play();
            let heard = &c.heard;
            let in_conference = conference && c.joined;
            if with_devices || in_conference {
                let f = &mut bufs.call[..heard.len().min(MAX_FRAME)];
                f.iter_mut()
                    .zip(heard)
                    .for_each(|(f, &x)| *f = f32::from(x) / 32768.0);
                c.speaker.push(f);
                if !c.speaker.pull_into(&mut c.heard48) {
                    c.heard48.fill(0.0);
                }
                if with_devices {
                    bufs.mix
                        .iter_mut()
                        .zip(&c.heard48)
                        .for_each(|(m, x)| *m += x);
                }
                if in_conference {
                    bufs.conference
                        .iter_mut()
                        .zip(&c.heard48)
                        .for_each(|(m, x)| *m += x);
                }
            }
            if let Some(sink) = c.sink.as_mut() {
                if let Err(e) = sink.write(heard) {
                    tracing::warn!(error = %e, "recording stopped");
                    c.sink = None;
                }
            }
        }
        for c in self.calls.values_mut() {
            let n = c.session.frame_samples().min(MAX_FRAME);
            if with_devices {
                c.mic.push(&bufs.mic);
                // Not sending (held): keep no more than 100 ms.
                c.mic.keep_newest(n * 5);
            }
            // The others of the conference, at this call's rate, in `bufs.call[..n]`.
            let others = conference && c.joined && {
                let f = &mut bufs.call[..MAX_FRAME];
                f.iter_mut()
                    .zip(bufs.conference.iter().zip(&c.heard48))
                    .for_each(|(f, (all, own))| *f = all - own);
                c.others.push(f);
                c.others.keep_newest(n * 5);
                c.others.pull_into(&mut bufs.call[..n])
            };
            if !c.send {
                continue;
            }
            let Some(to) = c.session.remote() else {
                continue;
            };
            let pcm = &mut bufs.pcm[..n];
            let mine = &mut bufs.mic_call[..n];
            match c.source.as_mut() {
                // An echo sends what it hears in the same tick (no frame of extra delay).
                _ if echo => copy_padded(pcm, &c.heard),
                Some(s) => copy_padded(pcm, &s.next_frame(n)),
                None if with_devices => {
                    if c.mic.pull_into(mine) {
                        pcm.iter_mut()
                            .zip(mine.iter())
                            .for_each(|(p, &x)| *p = (x * 32767.0) as i16);
                    } else {
                        pcm.fill(0);
                    }
                }
                None => pcm.fill(0),
            }
            // Muted, or held by us: the file or device keeps running, the call carries
            // silence — the person held never hears what is said meanwhile.
            if (muted || c.held) && !echo {
                pcm.fill(0);
            }
            // Muting silences only us: the conference's others still hear each other.
            if others && !c.held {
                pcm.iter_mut().zip(&bufs.call[..n]).for_each(|(p, &x)| {
                    *p = (f32::from(*p) + x * 32767.0).clamp(-32768.0, 32767.0) as i16
                });
            }
            let packet = c.session.packetise(pcm);
            // Empty: Opus DTX is quiet this frame.
            if !packet.is_empty() {
                out.push((to, packet));
            }
        }
        if let Some(d) = self.devices.as_mut() {
            d.play_frame(&self.frames.mix);
        }
        out
    }

    /// Joins `calls` to the phone's conference (with those in it already): every call named
    /// must carry audio (else the first that does not is the error), and the conference must
    /// have two calls at least (else the error is `None`); otherwise nothing changes. Every
    /// call of the conference now.
    fn join(&mut self, calls: &[CallId]) -> Joined {
        if let Some(missing) = calls.iter().find(|c| !self.calls.contains_key(c)) {
            return Err(Some(*missing));
        }
        let size = self
            .calls
            .iter()
            .filter(|(k, c)| c.joined || calls.contains(k))
            .count();
        if size < 2 {
            return Err(None);
        }
        for call in calls {
            if let Some(c) = self.calls.get_mut(call) {
                if !c.joined {
                    c.joined = true;
                    // A fresh start: no stale audio from an earlier conference.
                    c.others = Rate::new(ENGINE_RATE, c.others.rates().1);
                }
            }
        }
        let mut all: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.joined)
            .map(|(k, _)| *k)
            .collect();
        all.sort();
        Ok(all)
    }

    /// A call will need the devices (it rings, or we dial): open them now, so that they are
    /// ready when it is answered (opening takes a moment, up to a second or two with some
    /// sound servers).
    fn expect(&mut self, call: CallId, now: Instant) {
        if self.choice.is_some() {
            self.expected.insert(call, now);
            self.open_devices();
        }
    }

    /// Opens the devices chosen, when they are not open.
    fn open_devices(&mut self) {
        if self.devices.is_none() {
            if let Some(choice) = &self.choice {
                tracing::debug!("opening the sound devices for a call");
                let d = DeviceAudio::open(choice.clone());
                d.set_volume(self.volume);
                self.devices = Some(d);
            }
        }
        self.quiet_since = None;
    }

    /// Closes the devices, on a thread of their own (joining their thread never holds up a
    /// frame).
    fn close_devices(&mut self) {
        if let Some(old) = self.devices.take() {
            tracing::debug!("closing the sound devices: no call needs them");
            let _ = std::thread::Builder::new()
                .name("switchboard-audio-close".into())
                .spawn(move || drop(old));
        }
    }

    /// Other devices chosen (none: no devices): calls going on move to them at once.
    fn choose_devices(&mut self, choice: Option<DeviceChoice>) {
        let open = self.devices.is_some();
        self.close_devices();
        self.choice = choice;
        if open || !self.calls.is_empty() || !self.expected.is_empty() {
            self.open_devices();
        }
    }

    /// Closes the devices once no call has needed them for [`DEVICE_LINGER`].
    fn settle(&mut self, now: Instant) {
        self.expected
            .retain(|_, since| now.duration_since(*since) < EXPECTED_AT_MOST);
        if !self.calls.is_empty() || !self.expected.is_empty() || self.devices.is_none() {
            self.quiet_since = None;
            return;
        }
        let since = *self.quiet_since.get_or_insert(now);
        if now.duration_since(since) >= DEVICE_LINGER {
            self.close_devices();
            self.quiet_since = None;
        }
    }

    /// The 20 ms clock has work: calls to carry, or devices to feed.
    fn active(&self) -> bool {
        !self.calls.is_empty() || self.devices.is_some()
    }

    /// What the devices reported since the last tick.
    fn device_events(&self) -> Vec<DeviceEvent> {
        let mut v = Vec::new();
        if let Some(d) = &self.devices {
            while let Some(e) = d.try_event() {
                v.push(e);
            }
        }
        v
    }

    /// RTCP reports due now (every 5 s), and whether each goes on the RTP port (rtcp-mux)
    /// or to the peer's RTCP port (its RTP port + 1, RFC 3550 §11) from ours.
    fn reports(&mut self) -> Vec<(SocketAddr, Vec<u8>, bool)> {
        let at = Instant::now();
        self.calls
            .values_mut()
            .filter_map(|c| {
                let remote = c.session.remote()?;
                let to = if c.rtcp_mux {
                    remote
                } else {
                    SocketAddr::new(remote.ip(), remote.port().checked_add(1)?)
                };
                // Our SR's time from the same anchor as the arrivals, so the RTT never mixes
                // the monotonic clock with a stepped wall clock.
                let now = c.session.wall_clock_at(at).unwrap_or_else(unix_time);
                Some((to, c.session.rtcp_report(now), c.rtcp_mux))
            })
            .filter(|(_, p, _)| !p.is_empty())
            .collect()
    }

    /// A datagram on the RTCP port: to the call whose peer's host sent it.
    fn receive_rtcp(&mut self, data: &[u8], from: SocketAddr) {
        let only = (self.calls.len() == 1)
            .then(|| self.calls.keys().next().copied())
            .flatten();
        let key = self
            .calls
            .iter()
            .find(|(_, c)| {
                c.session.remote().is_some_and(|r| {
                    r.ip() == from.ip() && r.port().checked_add(1) == Some(from.port())
                })
            })
            .map(|(k, _)| *k)
            .or(only);
        if let Some(c) = key.and_then(|k| self.calls.get_mut(&k)) {
            if let Err(e) = c.session.receive_rtcp_port(data, from, Instant::now()) {
                tracing::debug!(error = %e, %from, "RTCP packet dropped");
            }
        }
    }

    /// A datagram on the RTP port: to the call whose peer sent it (or the only call, which
    /// may latch onto a NATed source).
    fn receive(&mut self, data: &[u8], from: SocketAddr) -> Option<AudioEvent> {
        let now = Instant::now();
        let key = self
            .calls
            .iter()
            .find(|(_, c)| c.session.remote() == Some(from))
            .map(|(k, _)| *k)
            .or_else(|| {
                if self.calls.len() == 1 {
                    self.calls.keys().next().copied()
                } else {
                    None
                }
            });
        let call = key?;
        let c = self.calls.get_mut(&call)?;
        let result = c.session.receive(data, from, now);
        if matches!(
            result,
            Err(Dropped::Srtp(
                SrtpError::AuthFailed | SrtpError::Malformed(_)
            ))
        ) {
            c.auth_failures_in_row += 1;
        } else if result.is_ok() {
            c.auth_failures_in_row = 0;
        }
        match result {
            Ok(Some(digit)) => Some(AudioEvent::Dtmf { call, digit }),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, %from, "RTP packet dropped");
                if c.auth_failures_in_row >= AUTH_FAILURES_TO_REPORT && !c.warned {
                    c.warned = true;
                    tracing::warn!(%call, %from, "SRTP authentication keeps failing");
                    return Some(AudioEvent::Problem {
                        call,
                        kind: "srtp_auth",
                        message: format!(
                            "no audio from the other side: {} SRTP packets in a row from {from} failed authentication — the keys exchanged in SDP do not match; a device between the two ends may be rewriting the SDP, check the trunk's SRTP settings",
                            c.auth_failures_in_row
                        ),
                    });
                }
                None
            }
        }
    }
}

/// What the audio engine reports.
#[derive(Debug)]
pub enum AudioEvent {
    /// A DTMF digit arrived in the media path (RFC 4733).
    Dtmf { call: CallId, digit: char },
    /// A sound device opened, fell back, failed or is missing.
    Device(DeviceEvent),
    /// Something keeps the call's audio from working (the call itself goes on).
    Problem {
        call: CallId,
        kind: &'static str,
        message: String,
    },
}

enum Cmd {
    Expect(CallId),
    Dtmf(CallId, char, oneshot::Sender<bool>),
    Start(
        CallId,
        Box<Negotiated>,
        oneshot::Sender<Result<(), CallError>>,
    ),
    Mute(bool),
    Volume(f32),
    Devices(Option<DeviceChoice>),
    /// The call's media changed; `true` when by our own offer.
    Update(CallId, Box<Negotiated>, bool),
    Stop(CallId, oneshot::Sender<Option<(Stats, Option<f64>)>>),
    Stats(CallId, oneshot::Sender<Option<(Stats, Option<f64>)>>),
    Heard(CallId, oneshot::Sender<Option<(u64, bool)>>),
    Join(Vec<CallId>, oneshot::Sender<Joined>),
}

/// Every call of the conference; or the first call named that carries no audio, or `None`
/// when there would be fewer than two calls. (Which calls to resume is the engine's to know:
/// it keeps the holds it asked for, and a hold from the other side is not ours to lift.)
type Joined = Result<Vec<CallId>, Option<CallId>>;

/// The agent's audio engine, running on a thread of its own (`switchboard-audio`).
pub struct AudioHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    events: mpsc::UnboundedReceiver<AudioEvent>,
    port: u16,
    codecs: Vec<Codec>,
}

impl AudioHandle {
    /// Starts the engine on a pair of sockets: the RTP port our SDP names (even) and the
    /// RTCP port after it, for peers that do not take rtcp-mux. `play` is read now, so a bad
    /// file is an error before any call.
    pub fn spawn(
        (socket, rtcp): (tokio::net::UdpSocket, tokio::net::UdpSocket),
        options: AudioOptions,
    ) -> Result<Self, CallError> {
        let AudioOptions {
            play,
            record,
            codecs,
            dtx,
            devices,
            echo,
            volume,
            muted,
        } = options;
        let (play, record) = (play.as_deref(), record.as_deref());
        // Read the file now, so a bad one is an error before any call.
        let mut played = HashMap::new();
        if let Some(p) = play {
            played.insert(8000, WavSource::open(p, 8000)?);
        }
        let port = socket.local_addr()?.port();
        let mut audio = CallAudio {
            calls: HashMap::new(),
            play: play.map(Path::to_path_buf),
            played,
            record: record.map(Path::to_path_buf),
            recordings: 0,
            dtx,
            choice: devices,
            volume,
            devices: None,
            expected: HashMap::new(),
            quiet_since: None,
            echo,
            muted,
            frames: DeviceFrames::new(),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        // The pump runs on a thread of its own, with a single-threaded runtime for its
        // sockets and its 20 ms clock: SIP, TLS and the application's tasks never delay a
        // frame, and the pump never delays them.
        let (socket, rtcp) = (socket.into_std()?, rtcp.into_std()?);
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let pump = async move {
            let (socket, rtcp) = match (
                tokio::net::UdpSocket::from_std(socket),
                tokio::net::UdpSocket::from_std(rtcp),
            ) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "the audio thread cannot use the RTP ports");
                    return;
                }
            };
            let mut buf = vec![0u8; 2048];
            let mut rtcp_buf = vec![0u8; 2048];
            let mut ticks: u64 = 0;
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // The clock runs only while there are calls or open devices: an idle phone
            // wakes for nothing.
            let mut ticking = false;
            loop {
                let active = audio.active();
                if active && !ticking {
                    // From now, not a burst of the ticks missed while idle.
                    tick.reset_immediately();
                }
                ticking = active;
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        None => break,
                        Some(Cmd::Start(call, m, reply)) => {
                            let _ = reply.send(audio.start(call, &m));
                        }
                        Some(Cmd::Update(call, m, ours)) => {
                            if let Err(e) = audio.update(call, &m, ours) {
                                let _ = ev_tx.send(AudioEvent::Problem { call, kind: "srtp_setup", message: e.to_string() });
                            }
                        }
                        Some(Cmd::Dtmf(call, digit, reply)) => {
                            let sent = audio
                                .calls
                                .get_mut(&call)
                                .is_some_and(|c| c.session.send_dtmf(digit, 160));
                            let _ = reply.send(sent);
                        }
                        Some(Cmd::Join(calls, reply)) => {
                            let _ = reply.send(audio.join(&calls));
                        }
                        Some(Cmd::Stop(call, reply)) => {
                            let _ = reply.send(audio.stop(call));
                        }
                        Some(Cmd::Heard(call, reply)) => {
                            let _ = reply.send(audio.calls.get(&call).map(|c| {
                                (c.session.stats().packets_received, c.recv)
                            }));
                        }
                        Some(Cmd::Stats(call, reply)) => {
                            let _ = reply.send(
                                audio.calls.get(&call).map(|c| (c.session.stats(), c.session.mos())),
                            );
                        }
                        Some(Cmd::Expect(call)) => audio.expect(call, Instant::now()),
                        Some(Cmd::Mute(on)) => audio.muted = on,
                        Some(Cmd::Volume(v)) => {
                            audio.volume = v;
                            if let Some(d) = &audio.devices {
                                d.set_volume(v);
                            }
                        }
                        // The new devices open on a thread of their own (their news comes
                        // as device events).
                        Some(Cmd::Devices(choice)) => audio.choose_devices(choice),
                    },
                    r = socket.recv_from(&mut buf) => {
                        if let Ok((n, from)) = r {
                            if let Some(ev) = audio.receive(&buf[..n], from) {
                                let _ = ev_tx.send(ev);
                            }
                        }
                    }
                    r = rtcp.recv_from(&mut rtcp_buf) => {
                        if let Ok((n, from)) = r {
                            audio.receive_rtcp(&rtcp_buf[..n], from);
                        }
                    }
                    _ = tick.tick(), if active => {
                        // Take in what has arrived before playing a frame: when this task
                        // was held up, the socket and the (bursting) ticks are ready at
                        // once, and a frame played first would find its packet missing.
                        for _ in 0..256 {
                            let Ok((n, from)) = socket.try_recv_from(&mut buf) else {
                                break;
                            };
                            if let Some(ev) = audio.receive(&buf[..n], from) {
                                let _ = ev_tx.send(ev);
                            }
                        }
                        for e in audio.device_events() {
                            let _ = ev_tx.send(AudioEvent::Device(e));
                        }
                        for (to, packet) in audio.tick() {
                            let _ = socket.send_to(&packet, to).await;
                        }
                        audio.settle(Instant::now());
                        ticks += 1;
                        // RTCP every 5 s (RFC 3550 §6.2's minimum for a two-party call).
                        if ticks % 250 == 125 {
                            for (to, packet, mux) in audio.reports() {
                                let from = if mux { &socket } else { &rtcp };
                                let _ = from.send_to(&packet, to).await;
                            }
                        }
                    }
                }
            }
            for call in audio.calls.keys().copied().collect::<Vec<_>>() {
                audio.stop(call);
            }
        };
        std::thread::Builder::new()
            .name("switchboard-audio".into())
            .spawn(move || clock.block_on(pump))?;
        Ok(Self {
            tx,
            events,
            port,
            codecs,
        })
    }

    /// The RTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What to put in our SDP, in order of preference.
    pub fn codec_specs(&self) -> Vec<CodecSpec> {
        self.codecs
            .iter()
            .map(|c| match c {
                Codec::Pcmu => CodecSpec::pcmu(),
                Codec::Pcma => CodecSpec::pcma(),
                Codec::Opus => CodecSpec::opus(),
            })
            .collect()
    }

    /// A call's media is agreed (or changed): carry it. The error says why it cannot be.
    pub async fn start(&self, call: CallId, m: &Negotiated) -> Result<(), CallError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || CallError::Media("the audio engine stopped".into());
        self.tx
            .send(Cmd::Start(call, Box::new(m.clone()), reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A call rings or is dialled: the sound devices open now, so that they are ready when
    /// it is answered. (Between calls the phone keeps none open.)
    pub fn expect(&self, call: CallId) {
        let _ = self.tx.send(Cmd::Expect(call));
    }

    /// Mutes or unmutes the microphone of every call (the file or device goes on running).
    pub fn set_muted(&self, muted: bool) {
        let _ = self.tx.send(Cmd::Mute(muted));
    }

    /// The output volume on the sound device, 0.0–1.0 (no effect without devices).
    pub fn set_volume(&self, volume: f32) {
        let _ = self.tx.send(Cmd::Volume(volume.clamp(0.0, 1.0)));
    }

    /// Moves the calls' audio to other sound devices (none: no devices), at once, calls
    /// going on: what was chosen in Settings → Audio while the phone runs.
    pub fn set_devices(&self, choice: Option<DeviceChoice>) {
        let _ = self.tx.send(Cmd::Devices(choice));
    }

    /// Sends a DTMF digit in the media path (RFC 4733), when the call agreed telephone-event;
    /// `false` otherwise (then send it as SIP INFO).
    pub async fn send_dtmf(&self, call: CallId, digit: char) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Cmd::Dtmf(call, digit, reply)).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// The next thing the engine reports.
    pub async fn next_event(&mut self) -> Option<AudioEvent> {
        self.events.recv().await
    }

    /// Hold, resume, a new address; `ours` when we made the offer (our hold or resume: the
    /// call carries silence while we hold it).
    pub fn update(&self, call: CallId, m: &Negotiated, ours: bool) {
        let _ = self.tx.send(Cmd::Update(call, Box::new(m.clone()), ours));
    }

    /// A call's figures so far and its estimated MOS; `None` when it carries no audio.
    pub async fn stats(&self, call: CallId) -> Option<(Stats, Option<f64>)> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Cmd::Stats(call, reply)).ok()?;
        answer.await.ok().flatten()
    }

    /// The packets received on a call so far, and whether the other side is to send any
    /// now (not while the call is held); `None` when it carries no audio.
    pub async fn heard(&self, call: CallId) -> Option<(u64, bool)> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Cmd::Heard(call, reply)).ok()?;
        answer.await.ok().flatten()
    }

    /// Joins `calls` to the phone's conference: each then also carries what the
    /// conference's other calls hear (a local three-way call, mixed here). Every call of the
    /// conference; the error is the first call named
    /// that carries no audio (not answered, or ended), or `None` when the conference would
    /// have one call. A call leaves when it ends.
    pub async fn conference(&self, calls: Vec<CallId>) -> Option<Joined> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Cmd::Join(calls, reply)).ok()?;
        answer.await.ok()
    }

    /// The call ended: its recording is closed; its figures and estimated MOS.
    pub async fn stop(&self, call: CallId) -> Option<(Stats, Option<f64>)> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Cmd::Stop(call, reply)).ok()?;
        answer.await.ok().flatten()
    }
}

/// `--input-device` / `--output-device` as a device choice (`default` = the system's,
/// followed when it changes); `None` when neither was given.
pub fn device_choice(input: Option<&str>, output: Option<&str>) -> Option<DeviceChoice> {
    if input.is_none() && output.is_none() {
        return None;
    }
    let named = |n: Option<&str>| n.filter(|n| *n != "default").map(str::to_owned);
    Some(DeviceChoice {
        input: named(input),
        output: named(output),
        open_input: input.is_some(),
        open_output: output.is_some(),
    })
}

/// The RTP and RTCP sockets of the agent: an even port and the one after it (RFC 3550 §11),
/// from `range` (inclusive), starting at a random place in it so that agents on one host
/// rarely collide; an error when the whole range is taken.
pub async fn bind_media_ports(
    ip: std::net::IpAddr,
    range: (u16, u16),
) -> Result<(tokio::net::UdpSocket, tokio::net::UdpSocket), CallError> {
    let first = range.0 + range.0 % 2;
    let pairs = u32::from(range.1.saturating_sub(first).div_ceil(2));
    let start = rand::random::<u32>() % pairs.max(1);
    for i in 0..pairs {
        let port = first + (((start + i) % pairs) * 2) as u16;
        let Some(next) = port.checked_add(1).filter(|p| *p <= range.1) else {
            continue;
        };
        let Ok(rtp) = tokio::net::UdpSocket::bind(SocketAddr::new(ip, port)).await else {
            continue;
        };
        if let Ok(rtcp) = tokio::net::UdpSocket::bind(SocketAddr::new(ip, next)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(CallError::Options(format!(
        "no free pair of RTP/RTCP ports in {}-{} on {ip} — widen --rtp-ports",
        range.0, range.1
    )))
}

/// `--rtp-ports LOW-HIGH`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), CallError> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| CallError::Options("--rtp-ports takes LOW-HIGH, e.g. 16384-32767".into()))?;
    let port = |x: &str| {
        x.trim()
            .parse::<u16>()
            .map_err(|_| CallError::Options(format!("{x:?} is not a port")))
    };
    let (a, b) = (port(a)?, port(b)?);
    if !(a >= 1024 && a < b) {
        return Err(CallError::Options(format!(
            "--rtp-ports {s}: need 1024 ≤ LOW < HIGH"
        )));
    }
    Ok((a, b))
}

/// The system clock as time since the Unix epoch: read here, at the edge, for RTCP.
fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_are_read_and_pairs_bound() {
        assert_eq!(parse_port_range("16384-32767").unwrap(), (16384, 32767));
        for bad in ["", "1000", "2000-1000", "80-90", "a-b", "5000-5000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            let (a, b) = bind_media_ports(ip, (40000, 40003)).await.unwrap();
            let (pa, pb) = (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            );
            assert_eq!(pa % 2, 0);
            assert_eq!(pb, pa + 1);
            // The other pair is what is left; then the range is full.
            let (c, _d) = bind_media_ports(ip, (40000, 40003)).await.unwrap();
            assert_ne!(c.local_addr().unwrap().port(), pa);
            let err = bind_media_ports(ip, (40000, 40003)).await.unwrap_err();
            assert!(err.to_string().contains("widen --rtp-ports"), "{err}");
        });
    }
}
