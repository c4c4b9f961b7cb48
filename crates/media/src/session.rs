//! One call's media stream, sans-IO: give it 20 ms frames of PCM to send and packets that
//! arrived (with their source and the time), take packets to send and frames to play.
//!
//! It latches onto the peer's real address (symmetric RTP: a peer behind NAT sends from an
//! address other than the one its SDP gave). Packets from the negotiated address are taken at
//! once; another source is followed only after it has sent [`LATCH_PACKETS`] packets in
//! sequence with one SSRC, and an established flow moves only after it has been silent for
//! [`FLOW_SILENT`] — no single packet, forged or stray, redirects our audio. It follows an SSRC
//! change (a new stream resets the jitter
//! buffer), drops and counts what does not belong, and keeps the receiver statistics of
//! RFC 3550 (extended highest sequence, cumulative loss, interarrival jitter §6.4.1/A.8).

use std::net::SocketAddr;
use std::time::Instant;

use crate::g711;
use crate::jitter::{JitterBuffer, Playout};
use crate::rtp::{self, RtpHeader};

/// Packets in sequence (one SSRC, each sequence number one to three past the last) that a
/// source other than the one we send to must send before we follow it.
pub const LATCH_PACKETS: usize = 5;

/// How long the flow we follow must have been silent before another source may take it over
/// (a NAT that rebinds the peer's port mid-call).
pub const FLOW_SILENT: std::time::Duration = std::time::Duration::from_millis(1000);

/// A source we may latch onto: its packets so far (decrypted), held until it qualifies.
#[derive(Debug)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    last_seq: u16,
    held: Vec<Vec<u8>>,
}

/// Codecs the engine carries today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Opus (RFC 6716, RTP per RFC 7587) through libopus: 48 kHz, mono, VoIP mode, in-band
    /// FEC on.
    Opus,
}

impl Codec {
    /// By SDP encoding name (case-insensitive) and clock rate.
    pub fn from_name(name: &str, clock_rate: u32) -> Option<Self> {
        match (name.to_ascii_uppercase().as_str(), clock_rate) {
            ("PCMU", 8000) => Some(Self::Pcmu),
            ("PCMA", 8000) => Some(Self::Pcma),
            ("OPUS", 48000) => Some(Self::Opus),
            _ => None,
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Opus => 48000,
            _ => 8000,
        }
    }

    /// The E-model figures for this codec.
    pub fn impairment(self) -> crate::quality::CodecImpairment {
        match self {
            Self::Opus => crate::quality::CodecImpairment::OPUS,
            _ => crate::quality::CodecImpairment::G711_PLC,
        }
    }
}

/// libopus's encoder and decoder for one stream, and how the encoder is tuned.
struct OpusState {
    enc: opus::Encoder,
    dec: opus::Decoder,
    /// The most the peer wants (`maxaveragebitrate`, RFC 7587 §6.1) or our default.
    max_bitrate: i32,
    bitrate: i32,
    /// The peer decodes in-band FEC (`useinbandfec=1` in its fmtp; RFC 7587: 0 when left out).
    fec: bool,
    dtx: bool,
}

impl std::fmt::Debug for OpusState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusState")
    }
}

impl OpusState {
    fn new() -> Option<Self> {
        let mut enc =
            opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).ok()?;
        // In-band FEC (RFC 7587 §3.3) against loss; a starting loss guess that RTCP refines.
        enc.set_inband_fec(true).ok()?;
        enc.set_packet_loss_perc(5).ok()?;
        enc.set_bitrate(opus::Bitrate::Bits(OPUS_DEFAULT_BITRATE))
            .ok()?;
        let dec = opus::Decoder::new(48000, opus::Channels::Mono).ok()?;
        Some(Self {
            enc,
            dec,
            max_bitrate: OPUS_DEFAULT_BITRATE,
            bitrate: OPUS_DEFAULT_BITRATE,
            fec: true,
            dtx: false,
        })
    }

    /// Follows the loss the peer reports (RTCP fraction lost, in %): tells the encoder, which
    /// then spends more of each packet on FEC, and lowers the bitrate when loss says the path
    /// is congested (above 3 %: 80 %, above 10 %: 60 % of the maximum, never below the
    /// 12 kbit/s where wideband speech with FEC stays intelligible).
    fn adapt(&mut self, loss_percent: f64) {
        let loss = loss_percent.clamp(0.0, 100.0);
        let share = if loss > 10.0 {
            0.6
        } else if loss > 3.0 {
            0.8
        } else {
            1.0
        };
        let bitrate =
            ((f64::from(self.max_bitrate) * share) as i32).max(12_000.min(self.max_bitrate));
        if bitrate != self.bitrate && self.enc.set_bitrate(opus::Bitrate::Bits(bitrate)).is_ok() {
            self.bitrate = bitrate;
        }
        // libopus adds FEC in proportion to the expected loss; at least 1 % while FEC is on.
        let perc = if self.fec {
            (loss.ceil() as i32).clamp(1, 30)
        } else {
            0
        };
        let _ = self.enc.set_packet_loss_perc(perc);
    }
}

/// Opus bitrate before the peer tells us otherwise: wideband speech with room for FEC.
pub const OPUS_DEFAULT_BITRATE: i32 = 32_000;

/// A `key=value` of an `a=fmtp` parameter list.
fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Why a packet was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("malformed RTP: {0}")]
    Malformed(#[from] rtp::RtpError),
    #[error("from {0}, not the peer")]
    WrongSource(SocketAddr),
    #[error("payload type {0} was not negotiated")]
    PayloadType(u8),
    #[error("a telephone-event payload of {0} bytes (RFC 4733 needs 4)")]
    BadEvent(usize),
    #[error("malformed RTCP: {0}")]
    Rtcp(crate::rtcp::RtcpError),
    #[error("{0}")]
    Srtp(crate::srtp::SrtpError),
}

/// RFC 4733 §3.2 event codes 0–15 as DTMF characters.
fn dtmf_char(code: u8) -> Option<char> {
    "0123456789*#ABCD".chars().nth(usize::from(code))
}

fn dtmf_code(digit: char) -> Option<u8> {
    "0123456789*#ABCD"
        .find(digit.to_ascii_uppercase())
        .map(|i| i as u8)
}

/// A DTMF event being sent (RFC 4733 §2.5): its packets carry the event's start timestamp
/// and a growing duration; the last three carry the E bit.
#[derive(Debug)]
struct DtmfTx {
    code: u8,
    start_ts: u32,
    total: u32,
    sent: u32,
    ends: u8,
}

/// Receiver and sender counters for the quality figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// RFC 3550 A.3: expected − received (negative with duplicates; clamped at 0).
    pub packets_lost: u64,
    /// Interarrival jitter in milliseconds (RFC 3550 A.8).
    pub jitter_ms: f64,
    pub malformed: u64,
    pub wrong_source: u64,
    pub wrong_payload_type: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Milliseconds of audio the receiver made up for lost or late frames.
    pub concealed_ms: u64,
    pub ssrc_changes: u64,
    /// Round-trip time from the peer's RTCP reports (RFC 3550 §6.4.1).
    pub rtt_ms: Option<f64>,
    /// What the peer says it lost of our stream, cumulative.
    pub remote_lost: Option<i32>,
    pub rtcp_received: u64,
    /// SRTP/SRTCP packets that failed authentication (a wrong key, or altered on the way).
    pub srtp_auth_failures: u64,
    /// Clear RTCP packets on an SRTP call (refused: RFC 3711 §3.4 makes SRTCP
    /// authentication mandatory), such as the BYE some peers send once they have dropped
    /// the call's keys.
    pub srtp_unencrypted: u64,
    /// SRTP packets seen before (replays), dropped.
    pub srtp_replayed: u64,
    /// Lost Opus frames rebuilt from the next packet's in-band FEC.
    pub fec_recovered: u64,
    /// The Opus encoder's bitrate now (bit/s), as adapted to the loss the peer reports.
    pub opus_bitrate: Option<i32>,
    /// Frames not sent because Opus DTX found silence.
    pub dtx_frames: u64,
}

#[derive(Debug)]
pub struct MediaSession {
    codec: Codec,
    opus: Option<OpusState>,
    payload_type: u8,
    /// Samples a frame (160 for 20 ms at 8 kHz).
    frame: usize,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    /// Where we send: the SDP's address until we latch onto where the peer really sends from.
    remote: Option<SocketAddr>,
    /// The address the SDP gave (packets from it are the peer's).
    negotiated: Option<SocketAddr>,
    /// When a packet last came from `remote`: the flow is established while this is recent.
    heard_at: Option<Instant>,
    candidate: Option<Candidate>,
    peer_ssrc: Option<u32>,
    jitter: JitterBuffer,
    base_seq: Option<u64>,
    highest_seq: u64,
    cycles: u64,
    last_seq: u16,
    transit: Option<f64>,
    jitter_ts: f64,
    started: Instant,
    last_played: Vec<i16>,
    concealed_run: u32,
    stats: Stats,
    /// RFC 4733 telephone-event payload type, when negotiated.
    telephone_event: Option<u8>,
    dtmf_queue: std::collections::VecDeque<(u8, u32)>,
    dtmf_tx: Option<DtmfTx>,
    /// Audio frames to send between two digits.
    dtmf_gap: u32,
    last_event_ts: Option<u32>,
    /// The peer's last SR: its NTP middle bits and when it came (for LSR/DLSR).
    last_sr: Option<(u32, std::time::Duration)>,
    /// Expected/received at our last report (for the fraction lost).
    prior: (u64, u64),
    octets_sent: u64,
    srtp: Option<crate::srtp::Srtp>,
    /// The wall clock RTCP's NTP timestamps need, as the owner told it: the time since the
    /// Unix epoch at an `Instant`. The session never reads the system clock itself.
    wall_anchor: Option<(Instant, std::time::Duration)>,
}

impl MediaSession {
    /// A stream with `codec` as `payload_type`, sending to `remote` (from the SDP), 20 ms
    /// frames.
    pub fn new(codec: Codec, payload_type: u8, remote: Option<SocketAddr>, now: Instant) -> Self {
        let frame = (codec.clock_rate() / 50) as usize;
        Self {
            codec,
            opus: (codec == Codec::Opus).then(OpusState::new).flatten(),
            payload_type,
            frame,
            ssrc: rand::random(),
            seq: rand::random(),
            ts: rand::random(),
            marker: true,
            remote,
            negotiated: remote,
            heard_at: None,
            candidate: None,
            peer_ssrc: None,
            jitter: JitterBuffer::new(1, 10),
            base_seq: None,
            highest_seq: 0,
            cycles: 0,
            last_seq: 0,
            transit: None,
            jitter_ts: 0.0,
            started: now,
            last_played: vec![0; frame],
            concealed_run: 0,
            stats: Stats::default(),
            telephone_event: None,
            dtmf_queue: std::collections::VecDeque::new(),
            dtmf_tx: None,
            dtmf_gap: 0,
            last_event_ts: None,
            last_sr: None,
            prior: (0, 0),
            octets_sent: 0,
            wall_anchor: None,
            srtp: None,
        }
    }

    /// Encrypt what we send and check what arrives (SRTP keyed by SDES), or carry plain RTP.
    pub fn set_srtp(&mut self, srtp: Option<crate::srtp::Srtp>) {
        if srtp.is_some() && self.stats.packets_sent == 0 {
            // SDES does not carry the rollover counter: a receiver that misses every packet
            // before our sequence number wraps would guess it wrong and fail every packet
            // after. Starting below 2^15 puts the first wrap half an hour of packets away
            // (found by fuzz/media's srtp target).
            self.seq &= 0x7fff;
        }
        self.srtp = srtp;
    }

    /// Whether the stream is encrypted.
    pub fn is_secure(&self) -> bool {
        self.srtp.is_some()
    }

    /// Tunes Opus to the peer's `a=fmtp` (RFC 7587 §6.1: `maxaveragebitrate`, `useinbandfec`,
    /// `usedtx`) and to whether we want DTX ourselves. No effect on G.711.
    pub fn configure_opus(&mut self, peer_fmtp: Option<&str>, dtx: bool) {
        let Some(o) = self.opus.as_mut() else {
            return;
        };
        let fmtp = peer_fmtp.unwrap_or("");
        if let Some(max) = fmtp_param(fmtp, "maxaveragebitrate").and_then(|v| v.parse::<i32>().ok())
        {
            o.max_bitrate = max.clamp(6_000, 510_000).min(OPUS_DEFAULT_BITRATE);
            o.bitrate = 0;
        }
        // RFC 7587 §6.1: only useinbandfec=1 says the peer's decoder uses in-band FEC; left
        // out, it is assumed 0 (baresip, for one, does not declare it). Sending FEC to a
        // decoder that ignores it only costs bits and the encoder's time (a second SILK
        // encoding of every frame).
        o.fec = fmtp_param(fmtp, "useinbandfec") == Some("1");
        let _ = o.enc.set_inband_fec(o.fec);
        o.dtx = dtx || fmtp_param(fmtp, "usedtx") == Some("1");
        let _ = o.enc.set_dtx(o.dtx);
        o.adapt(0.0);
    }

    /// An RTCP report to send now (`now` since the Unix epoch): an SR once we have sent, with
    /// a report block on the stream we receive (RFC 3550 §6.4).
    pub fn rtcp_report(&mut self, now: std::time::Duration) -> Vec<u8> {
        let ntp = crate::rtcp::ntp_from_unix(now);
        let sender = (self.stats.packets_sent > 0).then_some(crate::rtcp::SenderInfo {
            ntp,
            rtp_timestamp: self.ts,
            packets: self.stats.packets_sent as u32,
            octets: self.octets_sent as u32,
        });
        let block = self.peer_ssrc.map(|ssrc| {
            let st = self.stats();
            let expected = st.packets_received + st.packets_lost;
            let (e0, r0) = self.prior;
            let exp_int = expected.saturating_sub(e0);
            let rec_int = st.packets_received.saturating_sub(r0);
            self.prior = (expected, st.packets_received);
            let fraction = if exp_int == 0 || rec_int >= exp_int {
                0
            } else {
                (((exp_int - rec_int) << 8) / exp_int) as u8
            };
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => {
                    let held = now.saturating_sub(at);
                    (lsr, (held.as_micros() * 65536 / 1_000_000) as u32)
                }
                None => (0, 0),
            };
            crate::rtcp::ReportBlock {
                ssrc,
                fraction_lost: fraction,
                cumulative_lost: st.packets_lost.min(0x7f_ffff) as i32,
                highest_seq: self.highest_seq as u32,
                jitter: self.jitter_ts as u32,
                lsr,
                dlsr,
            }
        });
        let report = crate::rtcp::build(self.ssrc, sender.as_ref(), block.as_ref());
        self.protect(report)
    }

    /// Through SRTP when the call is encrypted; an empty packet (not sent) when it cannot be.
    fn protect(&mut self, packet: Vec<u8>) -> Vec<u8> {
        match self.srtp.as_mut() {
            None => packet,
            Some(s) => s.protect(&packet).unwrap_or_default(),
        }
    }

    /// Tells the session the wall-clock time (since the Unix epoch) at `at`, from which it
    /// places the arrival of RTCP reports for LSR/DLSR and the round-trip time (RFC 3550
    /// §6.4). The owner reads the system clock once, at the edge; later instants are placed
    /// from this anchor with the monotonic clock, so a wall-clock step does not skew the RTT.
    /// Without it, reports received are counted and read but give no round-trip time.
    pub fn set_wall_clock(&mut self, at: Instant, since_epoch: std::time::Duration) {
        self.wall_anchor = Some((at, since_epoch));
    }

    /// The wall-clock time at `now`, placed from the anchor of [`Self::set_wall_clock`]; the
    /// time to give [`Self::rtcp_report`], so that our SRs and the arrivals share one clock.
    pub fn wall_clock_at(&self, now: Instant) -> Option<std::time::Duration> {
        let (at, wall) = self.wall_anchor?;
        Some(match now.checked_duration_since(at) {
            Some(after) => wall + after,
            None => wall.saturating_sub(at.saturating_duration_since(now)),
        })
    }

    /// An RTCP compound packet that arrived at `now`.
    fn receive_rtcp_at(&mut self, packet: &[u8], now: Instant) -> Result<(), Dropped> {
        match self.wall_clock_at(now) {
            Some(wall) => self.receive_rtcp(packet, wall),
            None => {
                // No wall clock: read the reports (loss, jitter) but keep no SR time and
                // compute no RTT, which would mix two clocks.
                let rtt = self.stats.rtt_ms;
                let r = self.receive_rtcp(packet, std::time::Duration::ZERO);
                self.last_sr = None;
                self.stats.rtt_ms = rtt;
                r
            }
        }
    }

    fn receive_rtcp(&mut self, packet: &[u8], now: std::time::Duration) -> Result<(), Dropped> {
        let reports = crate::rtcp::parse(packet).map_err(|e| {
            self.stats.malformed += 1;
            Dropped::Rtcp(e)
        })?;
        self.stats.rtcp_received += 1;
        let ntp_now = crate::rtcp::ntp_from_unix(now);
        for r in reports {
            if let Some(sr) = r.sender {
                self.last_sr = Some((crate::rtcp::ntp_middle(sr.ntp), now));
            }
            for b in r.blocks.iter().filter(|b| b.ssrc == self.ssrc) {
                if let Some(rtt) = crate::rtcp::rtt(ntp_now, b) {
                    self.stats.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
                self.stats.remote_lost = Some(b.cumulative_lost);
                if let Some(o) = self.opus.as_mut() {
                    o.adapt(f64::from(b.fraction_lost) * 100.0 / 256.0);
                }
            }
        }
        Ok(())
    }

    /// SRTP/SRTCP checked and decrypted (a copy), `None` on a plain RTP call; failures
    /// counted.
    fn unprotect(&mut self, packet: &[u8]) -> Result<Option<Vec<u8>>, Dropped> {
        let Some(srtp) = self.srtp.as_mut() else {
            return Ok(None);
        };
        srtp.unprotect(packet).map(Some).map_err(|e| {
            match e {
                crate::srtp::SrtpError::AuthFailed => self.stats.srtp_auth_failures += 1,
                crate::srtp::SrtpError::Replayed => self.stats.srtp_replayed += 1,
                crate::srtp::SrtpError::Unencrypted => self.stats.srtp_unencrypted += 1,
                _ => self.stats.malformed += 1,
            }
            Dropped::Srtp(e)
        })
    }

    /// A packet on the RTCP port (no rtcp-mux: RFC 3550's RTP port + 1), from the peer's
    /// host only; SRTCP is checked as on the RTP port.
    pub fn receive_rtcp_port(
        &mut self,
        packet: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<(), Dropped> {
        if self.remote.is_some_and(|r| r.ip() != from.ip()) {
            self.stats.wrong_source += 1;
            return Err(Dropped::WrongSource(from));
        }
        if !crate::rtcp::is_rtcp(packet) {
            self.stats.malformed += 1;
            return Err(Dropped::Rtcp(crate::rtcp::RtcpError::NotAReport));
        }
        let clear = self.unprotect(packet)?;
        let packet = clear.as_deref().unwrap_or(packet);
        self.receive_rtcp_at(packet, now)
    }

    /// The RFC 4733 telephone-event payload type agreed in SDP (DTMF in the media path).
    pub fn set_telephone_event(&mut self, payload_type: Option<u8>) {
        self.telephone_event = payload_type;
    }

    /// Queues a DTMF digit (0-9 * # A-D) to send as RFC 4733 events lasting `duration_ms`;
    /// `false` when no telephone-event was agreed or the digit is not DTMF.
    pub fn send_dtmf(&mut self, digit: char, duration_ms: u32) -> bool {
        let (Some(_), Some(code)) = (self.telephone_event, dtmf_code(digit)) else {
            return false;
        };
        let samples = duration_ms.max(40) * self.codec.clock_rate() / 1000;
        self.dtmf_queue.push_back((code, samples));
        true
    }

    /// The next RFC 4733 packet, while a digit is being sent.
    fn dtmf_packet(&mut self) -> Option<Vec<u8>> {
        let pt = self.telephone_event?;
        if self.dtmf_tx.is_none() {
            if self.dtmf_gap > 0 {
                return None;
            }
            let (code, total) = self.dtmf_queue.pop_front()?;
            self.dtmf_tx = Some(DtmfTx {
                code,
                start_ts: self.ts,
                total,
                sent: 0,
                ends: 0,
            });
        }
        let frame = self.frame as u32;
        let d = self.dtmf_tx.as_mut()?;
        let first = d.sent == 0;
        d.sent = (d.sent + frame).min(d.total);
        let end = d.sent >= d.total;
        if end {
            d.ends += 1;
        }
        let duration = d.sent.min(u32::from(u16::MAX)) as u16;
        // Volume 10 (−10 dBm0), as RFC 4733's examples use.
        let payload = [
            d.code,
            if end { 0x80 | 10 } else { 10 },
            (duration >> 8) as u8,
            duration as u8,
        ];
        let packet = rtp::build(
            &RtpHeader {
                payload_type: pt,
                marker: first,
                sequence: self.seq,
                timestamp: d.start_ts,
                ssrc: self.ssrc,
            },
            &payload,
        );
        self.seq = self.seq.wrapping_add(1);
        self.stats.packets_sent += 1;
        if d.ends >= 3 {
            // The event is over: audio resumes with the time the digit took.
            self.ts = d.start_ts.wrapping_add(d.total);
            self.dtmf_tx = None;
            self.dtmf_gap = 3;
        }
        Some(packet)
    }

    /// Samples in one frame.
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Where packets go now.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The peer's address changed by a new offer/answer (re-INVITE): send there, latch anew.
    pub fn set_remote(&mut self, remote: Option<SocketAddr>) {
        if remote != self.negotiated {
            self.remote = remote;
            self.negotiated = remote;
            self.heard_at = None;
            self.candidate = None;
        }
    }

    /// One frame of PCM (padded or cut to a frame) → the RTP packet to send (an RFC 4733
    /// event packet instead while a DTMF digit is being sent).
    ///
    /// Empty when there is nothing to send this time: Opus DTX found silence (RFC 7587
    /// §3.1.3: packets of two bytes or less need not go), or SRTP could not protect it.
    pub fn packetise(&mut self, pcm: &[i16]) -> Vec<u8> {
        if let Some(p) = self.dtmf_packet() {
            return self.protect(p);
        }
        self.dtmf_gap = self.dtmf_gap.saturating_sub(1);
        let mut frame = pcm.to_vec();
        frame.resize(self.frame, 0);
        let payload = self.encode(&frame);
        if self.codec == Codec::Opus
            && payload.len() <= 2
            && self.opus.as_ref().is_some_and(|o| o.dtx)
        {
            // Silence under DTX: time goes on, nothing is sent; the next packet starts a
            // talkspurt (marker bit).
            self.ts = self.ts.wrapping_add(self.frame as u32);
            self.marker = true;
            self.stats.dtx_frames += 1;
            return Vec::new();
        }
        let packet = rtp::build(
            &RtpHeader {
                payload_type: self.payload_type,
                marker: self.marker,
                sequence: self.seq,
                timestamp: self.ts,
                ssrc: self.ssrc,
            },
            &payload,
        );
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.frame as u32);
        self.stats.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
        self.protect(packet)
    }

    /// A packet arrived from `from` at `now`. Returns the DTMF digit an RFC 4733 event
    /// started, once per event.
    pub fn receive(
        &mut self,
        packet: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Option<char>, Dropped> {
        let clear = self.unprotect(packet)?;
        let packet = clear.as_deref().unwrap_or(packet);
        if crate::rtcp::is_rtcp(packet) {
            // RTCP on the RTP port (rtcp-mux, RFC 5761), from the peer we follow (or the
            // negotiated address) only.
            if Some(from) != self.remote && Some(from) != self.negotiated {
                self.stats.wrong_source += 1;
                return Err(Dropped::WrongSource(from));
            }
            return self.receive_rtcp_at(packet, now).map(|()| None);
        }
        let (h, payload) = match rtp::parse(packet) {
            Ok(x) => x,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e.into());
            }
        };
        let event = Some(h.payload_type) == self.telephone_event;
        if h.payload_type != self.payload_type && !event {
            self.stats.wrong_payload_type += 1;
            return Err(Dropped::PayloadType(h.payload_type));
        }
        let alive = self
            .heard_at
            .is_some_and(|t| now.saturating_duration_since(t) < FLOW_SILENT);
        if Some(from) == self.remote || (Some(from) == self.negotiated && !alive) {
            // The flow we follow, or the negotiated address while nothing else is live.
            self.remote = Some(from);
            self.heard_at = Some(now);
            if let Some(c) = self.candidate.take() {
                self.stats.wrong_source += c.held.len() as u64;
            }
            return self.accept(&h, payload, now);
        }
        // Another source: hold its packets until it proves to be a stream of its own.
        let in_sequence = |c: &Candidate| {
            c.from == from
                && c.ssrc == h.ssrc
                && (1..=3).contains(&h.sequence.wrapping_sub(c.last_seq))
        };
        match self.candidate.as_mut() {
            Some(c) if in_sequence(c) => {
                c.last_seq = h.sequence;
                c.held.push(packet.to_vec());
            }
            _ => {
                if let Some(old) = self.candidate.take() {
                    self.stats.wrong_source += old.held.len() as u64;
                }
                self.candidate = Some(Candidate {
                    from,
                    ssrc: h.ssrc,
                    last_seq: h.sequence,
                    held: vec![packet.to_vec()],
                });
            }
        }
        let ready = self
            .candidate
            .as_ref()
            .is_some_and(|c| c.held.len() >= LATCH_PACKETS);
        if !ready || alive {
            if alive {
                // An established flow never moves while it is live: these are strays.
                if let Some(c) = self.candidate.as_mut() {
                    if c.held.len() >= LATCH_PACKETS {
                        let gone = c.held.len() - LATCH_PACKETS + 1;
                        c.held.drain(..gone);
                        self.stats.wrong_source += gone as u64;
                    }
                }
            }
            return Err(Dropped::WrongSource(from));
        }
        // Latch: follow the new source and play what it sent so far.
        let Some(c) = self.candidate.take() else {
            return Err(Dropped::WrongSource(from));
        };
        self.remote = Some(c.from);
        self.heard_at = Some(now);
        let mut digit = None;
        for p in &c.held {
            if let Ok((h, payload)) = rtp::parse(p) {
                digit = self.accept(&h, payload, now).ok().flatten().or(digit);
            }
        }
        Ok(digit)
    }

    /// A packet from the flow we follow: SSRC bookkeeping, DTMF events, statistics, playout.
    fn accept(
        &mut self,
        h: &RtpHeader,
        payload: &[u8],
        now: Instant,
    ) -> Result<Option<char>, Dropped> {
        let event = Some(h.payload_type) == self.telephone_event;
        if self.peer_ssrc != Some(h.ssrc) {
            if self.peer_ssrc.is_some() {
                // A new stream (the peer restarted it, or a transfer swapped the source).
                self.stats.ssrc_changes += 1;
                self.jitter = JitterBuffer::new(1, 10);
            }
            self.peer_ssrc = Some(h.ssrc);
            self.base_seq = None;
            self.transit = None;
        }
        if event {
            // RFC 4733 §2.3: event, E|R|volume, duration; repeated and retransmitted packets
            // of one event share its timestamp, so the digit is reported once.
            if payload.len() < 4 {
                self.stats.malformed += 1;
                return Err(Dropped::BadEvent(payload.len()));
            }
            self.stats.packets_received += 1;
            if self.last_event_ts == Some(h.timestamp) {
                return Ok(None);
            }
            self.last_event_ts = Some(h.timestamp);
            return Ok(dtmf_char(payload[0]));
        }
        self.count(h, now);
        self.jitter.push(h.sequence, payload.to_vec());
        Ok(None)
    }

    fn count(&mut self, h: &RtpHeader, now: Instant) {
        self.stats.packets_received += 1;
        // Extended highest sequence number (RFC 3550 A.1, simplified: no probation).
        match self.base_seq {
            None => {
                self.base_seq = Some(u64::from(h.sequence));
                self.highest_seq = u64::from(h.sequence);
                self.last_seq = h.sequence;
                self.cycles = 0;
            }
            Some(_) => {
                let delta = h.sequence.wrapping_sub(self.last_seq);
                if delta > 1 && delta < 0x8000 && self.opus.is_some() {
                    // Loss on an Opus stream: keep one packet ahead so that a lost frame
                    // can be rebuilt from the next packet's FEC (20 ms more delay, only on
                    // lossy paths).
                    self.jitter.set_min_frames(2);
                }
                if delta != 0 && delta < 0x8000 {
                    if h.sequence < self.last_seq {
                        self.cycles += 1 << 16;
                    }
                    self.last_seq = h.sequence;
                    self.highest_seq = self.cycles + u64::from(h.sequence);
                }
            }
        }
        // Interarrival jitter (A.8), in timestamp units.
        let arrival =
            now.duration_since(self.started).as_secs_f64() * f64::from(self.codec.clock_rate());
        let transit = arrival - f64::from(h.timestamp);
        if let Some(prev) = self.transit {
            let mut d = transit - prev;
            // Timestamps wrap at 2^32.
            if d.abs() > 2f64.powi(31) {
                d -= 2f64.powi(32) * d.signum();
            }
            self.jitter_ts += (d.abs() - self.jitter_ts) / 16.0;
        }
        self.transit = Some(transit);
        self.jitter.adapt(self.jitter_ts / self.frame as f64);
    }

    fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        match (self.codec, self.opus.as_mut()) {
            (Codec::Pcmu, _) => pcm.iter().map(|&s| g711::ulaw_encode(s)).collect(),
            (Codec::Pcma, _) => pcm.iter().map(|&s| g711::alaw_encode(s)).collect(),
            (Codec::Opus, Some(o)) => {
                let mut out = vec![0u8; 1500];
                match o.enc.encode(pcm, &mut out) {
                    Ok(n) => {
                        out.truncate(n);
                        out
                    }
                    Err(_) => Vec::new(),
                }
            }
            (Codec::Opus, None) => Vec::new(),
        }
    }

    fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match (self.codec, self.opus.as_mut()) {
            (Codec::Pcmu, _) => payload.iter().map(|&b| g711::ulaw_decode(b)).collect(),
            (Codec::Pcma, _) => payload.iter().map(|&b| g711::alaw_decode(b)).collect(),
            (Codec::Opus, Some(o)) => {
                // Up to 120 ms per packet (RFC 6716); we play one 20 ms frame of it.
                let mut out = vec![0i16; 48 * 120];
                match o.dec.decode(payload, &mut out, false) {
                    Ok(n) => {
                        out.truncate(n);
                        out
                    }
                    Err(_) => {
                        self.stats.malformed += 1;
                        Vec::new()
                    }
                }
            }
            (Codec::Opus, None) => Vec::new(),
        }
    }

    /// The next 20 ms to play: decoded, concealed (the last frame again, fading out — G.711
    /// packet loss concealment in the spirit of G.711 Appendix I), or silence.
    pub fn play(&mut self) -> Vec<i16> {
        match self.jitter.pop() {
            Playout::Frame(p) => {
                let mut pcm = self.decode(&p);
                pcm.resize(self.frame, 0);
                self.last_played.clone_from(&pcm);
                self.concealed_run = 0;
                pcm
            }
            Playout::Missing if self.opus.is_some() => {
                let n = self.frame;
                let mut pcm = vec![0i16; n];
                // The packet after the lost one may carry it again at a lower rate (in-band
                // FEC, RFC 7587 §3.3): decode that; otherwise libopus's concealment (a
                // decode without a packet).
                let next = self.jitter.peek_next().map(<[u8]>::to_vec);
                let mut recovered = false;
                if let Some(o) = self.opus.as_mut() {
                    if let Some(next) = next {
                        recovered = o.dec.decode(&next, &mut pcm, true).is_ok_and(|k| k == n);
                    }
                    if !recovered {
                        let _ = o.dec.decode(&[], &mut pcm, false);
                    }
                }
                if recovered {
                    self.stats.fec_recovered += 1;
                    self.concealed_run = 0;
                } else {
                    self.concealed_run += 1;
                    self.stats.concealed_ms += 20;
                }
                pcm
            }
            Playout::Missing => {
                self.concealed_run += 1;
                self.stats.concealed_ms += 20;
                // −6 dB per concealed frame, silent after 5 (100 ms).
                let gain = if self.concealed_run > 5 {
                    0.0
                } else {
                    0.5f64.powi(self.concealed_run as i32)
                };
                let pcm: Vec<i16> = self
                    .last_played
                    .iter()
                    .map(|&s| (f64::from(s) * gain) as i16)
                    .collect();
                pcm
            }
            Playout::Idle => vec![0; self.frame],
        }
    }

    /// The one-way delay our side adds and sees, in ms, for the E-model: packetisation (one
    /// frame), the jitter buffer's target, the sender's frame, and half the round trip RTCP
    /// measured (when the peer sends reports).
    pub fn estimated_delay_ms(&self) -> f64 {
        let frame_ms = 20.0;
        let network = self.stats.rtt_ms.map_or(0.0, |r| r / 2.0);
        frame_ms * 2.0 + self.jitter.target() as f64 * frame_ms + network
    }

    /// Estimated MOS (E-model, G.107) from the loss and delay seen so far; `None` before any
    /// packet arrived.
    pub fn mos(&self) -> Option<f64> {
        let s = self.stats();
        let expected = s.packets_received + s.packets_lost;
        if expected == 0 {
            return None;
        }
        // Frames concealed for lateness count like losses to the listener; a frame FEC
        // rebuilt counts as half a loss (its copy in the next packet is coarser, RFC 6716
        // §2.1.7's LBRR).
        let lost = (s.packets_lost + s.late).saturating_sub(s.fec_recovered / 2);
        let loss = 100.0 * lost as f64 / (expected + s.late) as f64;
        let r = crate::quality::r_factor(self.estimated_delay_ms(), loss, self.codec.impairment());
        Some(crate::quality::mos(r))
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        if let Some(base) = self.base_seq {
            let expected = self.highest_seq.saturating_sub(base) + 1;
            s.packets_lost = expected.saturating_sub(self.stats.packets_received);
        }
        s.jitter_ms = self.jitter_ts * 1000.0 / f64::from(self.codec.clock_rate());
        s.late = self.jitter.stats.late;
        s.duplicates = self.jitter.stats.duplicates;
        s.opus_bitrate = self.opus.as_ref().map(|o| o.bitrate);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone;
    use std::time::Duration;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    /// Two sessions wired back to back with a scripted network: `lose` drops the nth packets.
    fn carry(codec: Codec, lose: &[usize], jitter_ms: u64) -> (Vec<i16>, Stats, f64) {
        let t0 = Instant::now();
        let mut a = MediaSession::new(codec, 0, Some(addr(2)), t0);
        let mut b = MediaSession::new(codec, 0, Some(addr(1)), t0);
        let mut heard = Vec::new();
        let rate = codec.clock_rate();
        let n = (rate / 50) as usize;
        for i in 0..200usize {
            let pcm = tone::sine(1000.0, rate, 8000.0, (i * n) as u64, n);
            let pkt = a.packetise(&pcm);
            let late = if i % 2 == 1 { jitter_ms } else { 0 };
            let at = t0 + Duration::from_millis(20 * i as u64 + late);
            if !lose.contains(&i) {
                assert_eq!(b.receive(&pkt, addr(1), at), Ok(None));
            }
            heard.extend(b.play());
        }
        let mos = b.mos().unwrap();
        (heard, b.stats(), mos)
    }

    #[test]
    fn a_tone_crosses_intact_with_pcmu_pcma_and_opus() {
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::Opus] {
            let (heard, stats, mos) = carry(codec, &[], 0);
            assert!(mos > 4.3, "clean call: MOS {mos}");
            let (wins, loud) = tone::detect(&heard, codec.clock_rate(), &[1000.0, 440.0]);
            assert!(
                loud >= 70 && wins[0] == loud,
                "{codec:?}: {wins:?} of {loud}"
            );
            assert_eq!(stats.packets_received, 200);
            assert_eq!(stats.packets_lost, 0);
            assert_eq!(stats.concealed_ms, 0);
            assert!(stats.jitter_ms < 1.0);
        }
    }

    #[test]
    fn loss_is_counted_and_concealed_and_jitter_measured() {
        let lose: Vec<usize> = (10..200).step_by(20).collect();
        let (_, opus_stats, opus_mos) = carry(Codec::Opus, &lose, 30);
        assert_eq!(opus_stats.packets_lost, lose.len() as u64);
        assert!(
            (3.0..4.4).contains(&opus_mos),
            "Opus under loss: {opus_mos}"
        );
        let (heard, stats, mos) = carry(Codec::Pcmu, &lose, 30);
        assert!((3.0..4.3).contains(&mos), "5 % loss and jitter: MOS {mos}");
        assert_eq!(stats.packets_lost, lose.len() as u64);
        assert!(
            stats.concealed_ms >= 20 * lose.len() as u64 - 40,
            "{stats:?}"
        );
        assert!(stats.jitter_ms > 5.0, "{stats:?}");
        let (wins, loud) = tone::detect(&heard, 8000, &[1000.0, 440.0]);
        assert!(
            wins[0] * 10 >= loud * 8,
            "tone still there: {wins:?} of {loud}"
        );
    }

    #[test]
    fn latches_onto_the_real_source_then_refuses_others() {
        let t0 = Instant::now();
        let mut tx = MediaSession::new(Codec::Pcmu, 0, None, t0);
        let mut rx = MediaSession::new(Codec::Pcmu, 0, Some(addr(5000)), t0);
        // Nothing from the negotiated address: a stream from elsewhere (NAT) is followed once
        // it has sent LATCH_PACKETS in sequence, and what it sent meanwhile is played.
        for i in 0..LATCH_PACKETS {
            let p = tx.packetise(&[0; 160]);
            let r = rx.receive(&p, addr(6000), t0 + Duration::from_millis(20 * i as u64));
            if i + 1 < LATCH_PACKETS {
                assert_eq!(r, Err(Dropped::WrongSource(addr(6000))), "packet {i}");
                assert_eq!(rx.remote(), Some(addr(5000)), "one packet moves nothing");
            } else {
                assert_eq!(r, Ok(None));
            }
        }
        assert_eq!(rx.remote(), Some(addr(6000)), "latched (symmetric RTP)");
        assert_eq!(rx.stats().packets_received, LATCH_PACKETS as u64);
        let p = tx.packetise(&[0; 160]);
        assert_eq!(
            rx.receive(&p, addr(7000), t0),
            Err(Dropped::WrongSource(addr(7000)))
        );
        let mut other = MediaSession::new(Codec::Pcmu, 8, None, t0);
        let p = other.packetise(&[0; 160]);
        assert_eq!(rx.receive(&p, addr(6000), t0), Err(Dropped::PayloadType(8)));
        assert!(rx.receive(&[1, 2, 3], addr(6000), t0).is_err());
        let s = rx.stats();
        assert_eq!((s.wrong_payload_type, s.malformed), (1, 1));
    }

    /// #13 item 19: an established flow is not moved by another source, however well it
    /// imitates the stream, while the flow is live; when the flow falls silent (a NAT
    /// rebinding), a source that keeps sending in sequence takes over.
    #[test]
    fn a_live_flow_is_never_moved_and_a_silent_one_moves_only_to_a_steady_stream() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut peer = MediaSession::new(Codec::Pcmu, 0, None, t0);
        let mut rx = MediaSession::new(Codec::Pcmu, 0, Some(addr(5000)), t0);
        // The negotiated address is taken at once.
        let p = peer.packetise(&[0; 160]);
        assert_eq!(rx.receive(&p, addr(5000), ms(0)), Ok(None));
        // An attacker copies the stream (same SSRC, next sequence numbers) from elsewhere,
        // while the peer goes on: the flow stays, all forged packets are dropped.
        let mut t = 20;
        for _ in 0..20 {
            let real = peer.packetise(&[0; 160]);
            let forged = real.clone();
            assert_eq!(
                rx.receive(&forged, addr(6666), ms(t)),
                Err(Dropped::WrongSource(addr(6666)))
            );
            assert_eq!(rx.receive(&real, addr(5000), ms(t)), Ok(None));
            t += 20;
        }
        assert_eq!(rx.remote(), Some(addr(5000)));
        // Packets with random sequence numbers never qualify, even once the flow is silent.
        t += FLOW_SILENT.as_millis() as u64;
        for i in 0..20u16 {
            let mut stray = MediaSession::new(Codec::Pcmu, 0, None, t0);
            stray.seq = i.wrapping_mul(7919);
            let p = stray.packetise(&[0; 160]);
            assert!(rx.receive(&p, addr(7777), ms(t)).is_err());
            t += 20;
        }
        assert_eq!(rx.remote(), Some(addr(5000)));
        // The peer's NAT rebinds: its stream goes on from a new port and is followed after
        // LATCH_PACKETS packets.
        for i in 0..LATCH_PACKETS {
            let p = peer.packetise(&[0; 160]);
            let r = rx.receive(&p, addr(5001), ms(t));
            assert_eq!(r.is_ok(), i + 1 == LATCH_PACKETS, "packet {i}: {r:?}");
            t += 20;
        }
        assert_eq!(rx.remote(), Some(addr(5001)));
        // A re-INVITE names a new address: it is taken at once.
        rx.set_remote(Some(addr(8000)));
        let p = peer.packetise(&[0; 160]);
        assert_eq!(rx.receive(&p, addr(8000), ms(t)), Ok(None));
        assert_eq!(rx.remote(), Some(addr(8000)));
    }

    #[test]
    fn dtmf_crosses_as_rfc4733_events_once_per_digit() {
        let t0 = Instant::now();
        let mut tx = MediaSession::new(Codec::Pcmu, 0, Some(addr(2)), t0);
        let mut rx = MediaSession::new(Codec::Pcmu, 0, Some(addr(1)), t0);
        assert!(!tx.send_dtmf('5', 100), "no telephone-event agreed");
        tx.set_telephone_event(Some(101));
        rx.set_telephone_event(Some(101));
        assert!(!tx.send_dtmf('x', 100));
        for d in ['1', '#', 'D'] {
            assert!(tx.send_dtmf(d, 100));
        }
        let mut got = Vec::new();
        let (mut events, mut audio) = (0, 0);
        for i in 0..60u64 {
            let p = tx.packetise(&[0; 160]);
            let (h, payload) = rtp::parse(&p).unwrap();
            if h.payload_type == 101 {
                events += 1;
                assert_eq!(payload.len(), 4);
            } else {
                audio += 1;
            }
            if let Some(d) = rx
                .receive(&p, addr(1), t0 + Duration::from_millis(20 * i))
                .unwrap()
            {
                got.push(d);
            }
        }
        assert_eq!(got, vec!['1', '#', 'D']);
        // 100 ms = 5 packets, the last sent three times (E bit): 7 a digit.
        assert_eq!(events, 21);
        assert_eq!(audio, 39);
        // A short event payload is dropped and counted.
        let bad = rtp::build(
            &RtpHeader {
                payload_type: 101,
                marker: false,
                sequence: 9,
                timestamp: 9,
                ssrc: 1,
            },
            &[1],
        );
        assert_eq!(rx.receive(&bad, addr(1), t0), Err(Dropped::BadEvent(1)));
    }

    #[test]
    fn rtcp_reports_carry_loss_and_give_the_round_trip_time() {
        let t0 = Instant::now();
        let epoch = Duration::from_secs(1_700_000_000);
        let mut a = MediaSession::new(Codec::Pcmu, 0, Some(addr(2)), t0);
        let mut b = MediaSession::new(Codec::Pcmu, 0, Some(addr(1)), t0);
        for i in 0..50 {
            let p = a.packetise(&[0; 160]);
            if i % 10 != 3 {
                b.receive(&p, addr(1), t0).unwrap();
            }
        }
        // a → SR at 10 s; b holds it 100 ms, reports; the report reaches a 250 ms after its SR.
        let sr = a.rtcp_report(epoch);
        b.receive_rtcp(&sr, epoch + Duration::from_millis(50))
            .unwrap();
        let rr = b.rtcp_report(epoch + Duration::from_millis(150));
        let parsed = crate::rtcp::parse(&rr).unwrap();
        let block = parsed[0].blocks[0];
        assert_eq!(block.cumulative_lost, 5);
        assert_eq!(block.fraction_lost, (5 * 256 / 50) as u8);
        a.receive_rtcp(&rr, epoch + Duration::from_millis(250))
            .unwrap();
        let st = a.stats();
        assert_eq!(st.remote_lost, Some(5));
        let rtt = st.rtt_ms.unwrap();
        assert!((rtt - 150.0).abs() < 1.0, "{rtt}");
        assert!(a.estimated_delay_ms() > 100.0);
        // On the RTP port (mux): recognised, counted, never mistaken for audio.
        assert_eq!(b.receive(&sr, addr(1), t0), Ok(None));
        assert_eq!(b.stats().rtcp_received, 2);
        // The public path places arrivals with the monotonic clock from the owner's anchor
        // (#13 item 25: no system clock inside the session): the same exchange, a 20 ms round trip.
        a.set_wall_clock(t0, epoch);
        b.set_wall_clock(t0, epoch);
        let sr = a.rtcp_report(epoch + Duration::from_secs(5));
        let arrives = t0 + Duration::from_millis(5_010);
        assert_eq!(b.receive(&sr, addr(1), arrives), Ok(None));
        let rr = b.rtcp_report(epoch + Duration::from_millis(5_030));
        a.receive_rtcp_port(&rr, addr(1), t0 + Duration::from_millis(5_040))
            .unwrap();
        let rtt = a.stats().rtt_ms.unwrap();
        assert!((rtt - 20.0).abs() < 1.0, "{rtt}");
        // Without an anchor, a report is read but gives no round-trip time.
        let mut c = MediaSession::new(Codec::Pcmu, 0, Some(addr(2)), t0);
        let _ = c.packetise(&[0; 160]);
        let rr = b.rtcp_report(epoch + Duration::from_secs(6));
        assert_eq!(c.receive(&rr, addr(2), t0), Ok(None));
        assert_eq!(c.stats().rtcp_received, 1);
        assert_eq!(c.stats().rtt_ms, None);
        assert!(b
            .receive(&[0x80, 201, 0, 9, 0, 0, 0, 0], addr(1), t0)
            .is_err());
    }

    #[test]
    fn opus_rebuilds_lost_frames_from_in_band_fec() {
        // Speech-like: a tone whose loudness varies, so libopus stays in its SILK/hybrid modes
        // where FEC lives.
        let t0 = Instant::now();
        let mut a = MediaSession::new(Codec::Opus, 111, Some(addr(2)), t0);
        let mut b = MediaSession::new(Codec::Opus, 111, Some(addr(1)), t0);
        a.configure_opus(Some("minptime=10;useinbandfec=1"), false);
        a.opus.as_mut().unwrap().adapt(10.0);
        let lose: Vec<usize> = (20..250).step_by(10).collect();
        let mut heard = Vec::new();
        for i in 0..250usize {
            let mut pcm = tone::sine(300.0, 48000, 6000.0, (i * 960) as u64, 960);
            let env = 0.4 + 0.6 * ((i as f64) * 0.3).sin().abs();
            pcm.iter_mut()
                .for_each(|s| *s = (f64::from(*s) * env) as i16);
            let pkt = a.packetise(&pcm);
            if !lose.contains(&i) {
                b.receive(&pkt, addr(1), t0 + Duration::from_millis(20 * i as u64))
                    .unwrap();
            }
            heard.extend(b.play());
        }
        let st = b.stats();
        assert_eq!(st.packets_lost, lose.len() as u64);
        assert!(
            st.fec_recovered * 2 >= lose.len() as u64,
            "most lost frames rebuilt: {st:?}"
        );
        assert!(st.concealed_ms < 20 * lose.len() as u64, "{st:?}");
        let (wins, loud) = tone::detect(&heard, 48000, &[300.0, 1000.0]);
        assert!(wins[0] * 10 >= loud * 9, "{wins:?} of {loud}");
    }

    #[test]
    fn opus_fec_only_for_a_peer_that_says_it_decodes_it() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(Codec::Opus, 111, Some(addr(2)), t0);
        for (fmtp, fec) in [
            (Some("useinbandfec=1"), true),
            (
                Some("stereo=0;sprop-stereo=0;maxaveragebitrate=32000"),
                false,
            ),
            (Some("useinbandfec=0"), false),
            (None, false),
            (Some("minptime=10; useinbandfec=1"), true),
        ] {
            a.configure_opus(fmtp, false);
            let o = a.opus.as_mut().unwrap();
            assert_eq!(o.fec, fec, "{fmtp:?}");
            assert_eq!(o.enc.get_inband_fec().unwrap(), fec, "{fmtp:?}");
            // Without FEC the encoder is not told to expect loss (which would cost bits).
            o.adapt(10.0);
            assert_eq!(o.enc.get_packet_loss_perc().unwrap() > 0, fec, "{fmtp:?}");
        }
    }

    #[test]
    fn opus_bitrate_follows_reported_loss_within_the_peers_maximum() {
        let t0 = Instant::now();
        let epoch = Duration::from_secs(1_700_000_000);
        let mut a = MediaSession::new(Codec::Opus, 111, Some(addr(2)), t0);
        assert_eq!(a.stats().opus_bitrate, Some(OPUS_DEFAULT_BITRATE));
        a.configure_opus(Some("maxaveragebitrate=24000; useinbandfec=1"), false);
        assert_eq!(a.stats().opus_bitrate, Some(24_000));
        // The peer reports what it got of a's stream: 0 %, then 20 %, then 5 %, then 0 %.
        let mut b = MediaSession::new(Codec::Opus, 111, Some(addr(1)), t0);
        let mut seen = Vec::new();
        for lose_every in [0usize, 5, 20, 0] {
            for i in 0..100 {
                let p = a.packetise(&[0; 960]);
                if lose_every == 0 || i % lose_every != 1 {
                    b.receive(&p, addr(1), t0).unwrap();
                }
            }
            let rr = b.rtcp_report(epoch);
            a.receive_rtcp(&rr, epoch).unwrap();
            seen.push(a.stats().opus_bitrate.unwrap());
        }
        assert_eq!(seen, vec![24_000, 14_400, 19_200, 24_000]);
        // G.711 has no bitrate to adapt.
        assert_eq!(
            MediaSession::new(Codec::Pcmu, 0, None, t0)
                .stats()
                .opus_bitrate,
            None
        );
    }

    #[test]
    fn opus_dtx_sends_nothing_in_silence_and_marks_the_next_talkspurt() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(Codec::Opus, 111, Some(addr(2)), t0);
        a.configure_opus(Some("usedtx=1"), false);
        let mut sent = 0;
        for _ in 0..100 {
            if !a.packetise(&[0; 960]).is_empty() {
                sent += 1;
            }
        }
        let st = a.stats();
        assert!(st.dtx_frames > 50, "{st:?}");
        assert_eq!(sent as u64, st.packets_sent);
        let talk = a.packetise(&tone::sine(440.0, 48000, 8000.0, 0, 960));
        let (h, _) = rtp::parse(&talk).unwrap();
        assert!(h.marker, "a talkspurt starts with the marker bit");
        // Without DTX every frame goes.
        let mut b = MediaSession::new(Codec::Opus, 111, Some(addr(2)), t0);
        b.configure_opus(None, false);
        assert!((0..20).all(|_| !b.packetise(&[0; 960]).is_empty()));
    }

    #[test]
    fn srtp_carries_the_tone_and_a_wrong_key_is_dropped_and_counted() {
        use crate::srtp::{SdesKey, Srtp, Suite};
        for suite in Suite::ALL {
            let t0 = Instant::now();
            let ka = SdesKey::generate(1, suite).to_attribute();
            let kb = SdesKey::generate(1, suite).to_attribute();
            let mut a = MediaSession::new(Codec::Pcmu, 0, Some(addr(2)), t0);
            let mut b = MediaSession::new(Codec::Pcmu, 0, Some(addr(1)), t0);
            a.seq = 0xffff;
            a.set_srtp(Some(Srtp::new(&ka, &kb).unwrap()));
            assert!(a.seq < 0x8000, "an SRTP stream starts far from the wrap");
            b.set_srtp(Some(Srtp::new(&kb, &ka).unwrap()));
            let mut heard = Vec::new();
            for i in 0..100usize {
                let pkt = a.packetise(&tone::sine(1000.0, 8000, 8000.0, (i * 160) as u64, 160));
                assert_ne!(rtp::parse(&pkt).unwrap().1.len(), 160, "auth tag appended");
                b.receive(&pkt, addr(1), t0 + Duration::from_millis(20 * i as u64))
                    .unwrap();
                heard.extend(b.play());
            }
            let (wins, loud) = tone::detect(&heard, 8000, &[1000.0, 440.0]);
            assert!(
                loud > 30 && wins[0] == loud,
                "{suite:?}: {wins:?} of {loud}"
            );
            // Reports are SRTCP, and read back.
            let rr = b.rtcp_report(Duration::from_secs(1_700_000_000));
            assert_eq!(a.receive(&rr, addr(2), t0), Ok(None));
            assert_eq!(a.stats().rtcp_received, 1);
            // A plain RTP packet, or one under another key, is refused and counted.
            let mut plain = MediaSession::new(Codec::Pcmu, 0, None, t0);
            let p = plain.packetise(&[0; 160]);
            assert!(matches!(b.receive(&p, addr(1), t0), Err(Dropped::Srtp(_))));
            let mut wrong = MediaSession::new(Codec::Pcmu, 0, None, t0);
            let kw = SdesKey::generate(1, suite).to_attribute();
            wrong.set_srtp(Some(Srtp::new(&kw, &ka).unwrap()));
            let p = wrong.packetise(&[0; 160]);
            assert_eq!(
                b.receive(&p, addr(9), t0),
                Err(Dropped::Srtp(crate::srtp::SrtpError::AuthFailed))
            );
            assert_eq!(
                b.remote(),
                Some(addr(1)),
                "forged packets never move the latch"
            );
            assert!(b.stats().srtp_auth_failures >= 1, "{:?}", b.stats());
        }
    }

    #[test]
    fn an_ssrc_change_starts_a_new_stream() {
        let t0 = Instant::now();
        let mut rx = MediaSession::new(Codec::Pcmu, 0, Some(addr(1)), t0);
        for _ in 0..2 {
            let mut tx = MediaSession::new(Codec::Pcmu, 0, None, t0);
            for _ in 0..5 {
                rx.receive(&tx.packetise(&[0; 160]), addr(1), t0).unwrap();
            }
        }
        let s = rx.stats();
        assert_eq!(
            (s.ssrc_changes, s.packets_received, s.packets_lost),
            (1, 10, 0)
        );
    }
}
