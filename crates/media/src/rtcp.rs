//! RTCP sender and receiver reports (RFC 3550 §6.4): building an SR or RR with one report
//! block about the stream we receive, parsing the reports a peer sends (a compound packet may
//! carry SDES, BYE and others, which are skipped), and the round-trip time from LSR/DLSR
//! (§6.4.1). Malformed input is an error, never a panic.

/// One report block (§6.4.1): what a receiver says about a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Loss since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24 bits, signed).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from that source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// The sender part of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// A parsed SR or RR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ssrc: u32,
    pub sender: Option<SenderInfo>,
    pub blocks: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("shorter than an RTCP header")]
    TooShort,
    #[error("RTCP version {0}, not 2")]
    Version(u8),
    #[error("an RTCP length runs past the packet")]
    Length,
    #[error("the first packet of a compound is neither SR nor RR")]
    NotAReport,
}

/// Whether a packet reads as clear RTCP from end to end: one or more packets of the RTCP
/// types (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR: 200–207), each version 2, whose lengths
/// add up to exactly the packet. An SRTCP packet does not, in practice: all but its first
/// header is encrypted, and its E flag, index and tag follow.
pub fn is_clear_compound(packet: &[u8]) -> bool {
    let mut at = 0;
    while at < packet.len() {
        let Some(header) = packet.get(at..at + 4) else {
            return false;
        };
        if header[0] >> 6 != 2 || !(200..=207).contains(&header[1]) {
            return false;
        }
        at += 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
    }
    at == packet.len() && !packet.is_empty()
}

/// Whether bytes on a muxed port are RTCP (RFC 5761 §4: packet types 200–204 after the
/// version byte fall in the range RTP payload types 72–76 would give).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (200..=204).contains(&packet[1])
}

fn write_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.lsr.to_be_bytes());
    out.extend_from_slice(&b.dlsr.to_be_bytes());
}

/// An SR (when `sender` is given) or an RR from `ssrc`, with at most one report block.
pub fn build(ssrc: u32, sender: Option<&SenderInfo>, block: Option<&ReportBlock>) -> Vec<u8> {
    let count = u8::from(block.is_some());
    let pt = if sender.is_some() { 200 } else { 201 };
    let words = 1 + if sender.is_some() { 5 } else { 0 } + 6 * usize::from(count);
    let mut out = Vec::with_capacity(4 + 4 * words);
    out.push(0x80 | count);
    out.push(pt);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    if let Some(b) = block {
        write_block(&mut out, b);
    }
    out
}

fn be32(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RtcpError::Length)
}

/// Parses a compound packet; returns its SRs and RRs.
pub fn parse(packet: &[u8]) -> Result<Vec<Report>, RtcpError> {
    if packet.len() < 4 {
        return Err(RtcpError::TooShort);
    }
    let mut reports = Vec::new();
    let mut at = 0;
    let mut first = true;
    while at + 4 <= packet.len() {
        let v = packet[at] >> 6;
        if v != 2 {
            return Err(RtcpError::Version(v));
        }
        let count = usize::from(packet[at] & 0x1f);
        let pt = packet[at + 1];
        let len = 4 * (usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]])) + 1);
        let body = packet.get(at..at + len).ok_or(RtcpError::Length)?;
        if first && pt != 200 && pt != 201 {
            return Err(RtcpError::NotAReport);
        }
        first = false;
        if pt == 200 || pt == 201 {
            let ssrc = be32(body, 4)?;
            let mut off = 8;
            let sender = if pt == 200 {
                let ntp = (u64::from(be32(body, 8)?) << 32) | u64::from(be32(body, 12)?);
                let s = SenderInfo {
                    ntp,
                    rtp_timestamp: be32(body, 16)?,
                    packets: be32(body, 20)?,
                    octets: be32(body, 24)?,
                };
                off = 28;
                Some(s)
            } else {
                None
            };
            let mut blocks = Vec::with_capacity(count);
            for i in 0..count {
                let o = off + 24 * i;
                let word = be32(body, o + 4)?;
                let lost24 = word & 0x00ff_ffff;
                // Sign-extend the 24-bit count.
                let cumulative_lost = ((lost24 << 8) as i32) >> 8;
                blocks.push(ReportBlock {
                    ssrc: be32(body, o)?,
                    fraction_lost: (word >> 24) as u8,
                    cumulative_lost,
                    highest_seq: be32(body, o + 8)?,
                    jitter: be32(body, o + 12)?,
                    lsr: be32(body, o + 16)?,
                    dlsr: be32(body, o + 20)?,
                });
            }
            reports.push(Report {
                ssrc,
                sender,
                blocks,
            });
        }
        at += len;
    }
    Ok(reports)
}

/// The middle 32 bits of an NTP timestamp (what LSR carries).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// NTP time (seconds since 1900 in the high 32 bits) of a duration since the Unix epoch.
pub fn ntp_from_unix(d: std::time::Duration) -> u64 {
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Round-trip time (§6.4.1): now − LSR − DLSR, all in 1/65536 s of NTP's middle bits;
/// `None` when the block names no SR of ours yet or the figures are inconsistent.
pub fn rtt(now_ntp: u64, block: &ReportBlock) -> Option<std::time::Duration> {
    if block.lsr == 0 {
        return None;
    }
    // In 1/65536 s, modulo 2^32 (the middle 32 bits of NTP time wrap every 18 hours).
    let a = ntp_middle(now_ntp);
    let rtt = a.wrapping_sub(block.lsr).wrapping_sub(block.dlsr) as i32;
    // A peer that keeps time in milliseconds reports a DLSR up to a millisecond too long, so
    // a round trip shorter than that (loopback, a LAN) can come out slightly negative: zero.
    // Anything more negative than 100 ms is not a reply to our report.
    match rtt {
        r if r >= 0 => Some(std::time::Duration::from_micros(
            r as u64 * 1_000_000 / 65536,
        )),
        r if r > -(65536 / 10) => Some(std::time::Duration::ZERO),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_round_trip_shorter_than_the_peers_clock_tick_is_zero_not_lost() {
        let now = ntp_from_unix(Duration::from_secs(1_800_000_000));
        let a = ntp_middle(now);
        let block = |lsr: u32, dlsr: u32| ReportBlock {
            ssrc: 1,
            fraction_lost: 0,
            cumulative_lost: 0,
            highest_seq: 0,
            jitter: 0,
            lsr,
            dlsr,
        };
        // Our SR 0.5 s ago; the peer says it held it 0.5 s + 0.9 ms (its ms clock).
        let half = 32768;
        assert_eq!(
            rtt(now, &block(a.wrapping_sub(half), half + 59)),
            Some(Duration::ZERO)
        );
        // 20 ms real round trip.
        let r = rtt(now, &block(a.wrapping_sub(half), half - 1311)).unwrap();
        assert!((r.as_secs_f64() - 0.020).abs() < 0.001, "{r:?}");
        // Across the 18-hour wrap of the middle 32 bits: now just after it, our SR before.
        let after_wrap = 100u64 << 16;
        assert_eq!(ntp_middle(after_wrap), 100);
        let r = rtt(after_wrap, &block(100u32.wrapping_sub(half), half - 1311)).unwrap();
        assert!((r.as_secs_f64() - 0.020).abs() < 0.001, "{r:?}");
        // A reply to something else entirely.
        assert_eq!(rtt(now, &block(a.wrapping_add(65536), 0)), None);
        assert_eq!(rtt(now, &block(0, 5)), None);
    }

    #[test]
    fn sr_and_rr_round_trip() {
        let b = ReportBlock {
            ssrc: 7,
            fraction_lost: 12,
            cumulative_lost: -3,
            highest_seq: 70_000,
            jitter: 88,
            lsr: 0x1234_5678,
            dlsr: 65536,
        };
        let s = SenderInfo {
            ntp: 0xaabb_ccdd_eeff_0011,
            rtp_timestamp: 160,
            packets: 50,
            octets: 8000,
        };
        let sr = build(1, Some(&s), Some(&b));
        assert_eq!(sr.len(), 52);
        assert!(is_rtcp(&sr));
        let rr = build(2, None, None);
        assert_eq!(rr.len(), 8);
        let compound = [sr.clone(), rr.clone()].concat();
        let got = parse(&compound).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].sender, Some(s));
        assert_eq!(got[0].blocks, vec![b]);
        assert_eq!(
            (got[1].ssrc, got[1].sender, got[1].blocks.len()),
            (2, None, 0)
        );
    }

    #[test]
    fn skips_sdes_and_refuses_garbage() {
        let rr = build(2, None, None);
        // SDES with one empty chunk (type 202, length 1 word).
        let sdes = [0x81, 202, 0, 1, 0, 0, 0, 2];
        assert_eq!(parse(&[rr, sdes.to_vec()].concat()).unwrap().len(), 1);
        assert_eq!(parse(&sdes), Err(RtcpError::NotAReport));
        assert_eq!(parse(&[0x80, 201]), Err(RtcpError::TooShort));
        assert_eq!(
            parse(&[0x40, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::Version(1))
        );
        assert_eq!(
            parse(&[0x81, 201, 0, 7, 0, 0, 0, 0]),
            Err(RtcpError::Length)
        );
        for n in 0..60 {
            let _ = parse(&vec![0x81; n]);
            let _ = parse(&[&[0x9f, 200, 0, 30][..], &vec![0; n]].concat());
        }
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        let t = Duration::from_secs(1_700_000_000);
        let sent = ntp_from_unix(t);
        // The peer held our SR 250 ms and answered; it arrives 400 ms after we sent it.
        let block = ReportBlock {
            lsr: ntp_middle(sent),
            dlsr: 65536 / 4,
            ..Default::default()
        };
        let now = ntp_from_unix(t + Duration::from_millis(400));
        let rtt = rtt(now, &block).unwrap();
        assert!((rtt.as_millis() as i64 - 150).abs() <= 1, "{rtt:?}");
        assert_eq!(super::rtt(now, &ReportBlock::default()), None);
    }
}
