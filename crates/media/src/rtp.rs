//! RTP packets (RFC 3550 §5.1): a fixed 12-byte header, CSRCs, an optional header extension
//! (§5.3.1) and padding (§5.1 P bit). Parsing never panics on what a peer sends: anything
//! malformed is an [`RtpError`] for the caller to count and drop.

/// The parts of an RTP header a receiver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header ({0} bytes)")]
    TooShort(usize),
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("the CSRC list or header extension runs past the packet")]
    Truncated,
    #[error("the padding length is larger than the packet")]
    BadPadding,
    #[error("payload type {0} is RTCP's range (RFC 5761 §4)")]
    RtcpRange(u8),
}

/// The length of a packet's header (fixed part, CSRCs, header extension), checked to lie
/// within the packet; the payload and any padding are not looked at (under SRTP they are
/// encrypted).
pub fn header_len(packet: &[u8]) -> Result<usize, RtpError> {
    if packet.len() < 12 {
        return Err(RtpError::TooShort(packet.len()));
    }
    let version = packet[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let mut start = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(start..start + 4).ok_or(RtpError::Truncated)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    if start > packet.len() {
        return Err(RtpError::Truncated);
    }
    Ok(start)
}

/// Checks the elements of an RFC 8285 header extension (one-byte `0xBEDE` or two-byte
/// `0x100x` profile) lie within the extension block; other profiles are opaque. For parsers
/// that walk the elements (the `rtp` crate under webrtc-srtp panics on an element that runs
/// past the packet).
pub fn check_extension_elements(packet: &[u8]) -> Result<(), RtpError> {
    let end = header_len(packet)?;
    if packet[0] & 0x10 == 0 {
        return Ok(());
    }
    let at = 12 + 4 * usize::from(packet[0] & 0x0f);
    let profile = u16::from_be_bytes([packet[at], packet[at + 1]]);
    let mut i = at + 4;
    match profile {
        0xBEDE => {
            while i < end {
                let b = packet[i];
                i += 1;
                if b == 0 {
                    continue;
                }
                if b >> 4 == 0x0f {
                    break;
                }
                i += usize::from(b & 0x0f) + 1;
            }
        }
        p if p & 0xfff0 == 0x1000 => {
            while i < end {
                let id = packet[i];
                i += 1;
                if id == 0 {
                    continue;
                }
                let len = *packet
                    .get(i)
                    .filter(|_| i < end)
                    .ok_or(RtpError::Truncated)?;
                i += 1 + usize::from(len);
            }
        }
        _ => return Ok(()),
    }
    if i > end {
        return Err(RtpError::Truncated);
    }
    Ok(())
}

/// Parses a packet; returns the header and the payload (padding removed).
pub fn parse(packet: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    let start = header_len(packet)?;
    let padding = packet[0] & 0x20 != 0;
    let marker = packet[1] & 0x80 != 0;
    let payload_type = packet[1] & 0x7f;
    // With rtcp-mux, 72–76 (200–204 with the marker bit) are RTCP packet types.
    if (72..=76).contains(&payload_type) {
        return Err(RtpError::RtcpRange(payload_type));
    }
    let sequence = u16::from_be_bytes([packet[2], packet[3]]);
    let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let mut end = packet.len();
    if padding {
        let pad = usize::from(packet[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    Ok((
        RtpHeader {
            payload_type,
            marker,
            sequence,
            timestamp,
            ssrc,
        },
        &packet[start..end],
    ))
}

/// Builds a packet with no CSRCs, extension or padding.
pub fn build(h: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push((u8::from(h.marker) << 7) | (h.payload_type & 0x7f));
    p.extend_from_slice(&h.sequence.to_be_bytes());
    p.extend_from_slice(&h.timestamp.to_be_bytes());
    p.extend_from_slice(&h.ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn extension_elements_must_stay_in_their_block() {
        let with = |profile: [u8; 2], words: u8, body: &[u8]| {
            let mut p = vec![0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
            p.extend_from_slice(&profile);
            p.extend_from_slice(&[0, words]);
            p.extend_from_slice(body);
            p.extend_from_slice(&[0xaa; 20]);
            p
        };
        // One-byte: id 1 with 2 bytes, padding; then an element claiming 16 bytes in a
        // 4-byte block.
        assert!(super::check_extension_elements(&with([0xbe, 0xde], 1, &[0x11, 1, 2, 0])).is_ok());
        assert!(super::check_extension_elements(&with([0xbe, 0xde], 1, &[0x1f, 1, 2, 3])).is_err());
        // Two-byte: id 1, length 2; then length 239 in a 4-byte block; a length byte
        // outside the block.
        assert!(super::check_extension_elements(&with([0x10, 0x00], 1, &[1, 2, 9, 9])).is_ok());
        assert!(super::check_extension_elements(&with([0x10, 0x00], 1, &[1, 239, 9, 9])).is_err());
        assert!(super::check_extension_elements(&with([0x10, 0x00], 1, &[0, 0, 0, 5])).is_err());
        // Other profiles are opaque.
        assert!(super::check_extension_elements(&with([0x12, 0x34], 1, &[0xff; 4])).is_ok());
    }

    use super::*;

    #[test]
    fn round_trip() {
        let h = RtpHeader {
            payload_type: 0,
            marker: true,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        let p = build(&h, &[1, 2, 3]);
        assert_eq!(parse(&p).unwrap(), (h, &[1u8, 2, 3][..]));
    }

    #[test]
    fn csrcs_extension_and_padding() {
        // V=2 P=1 X=1 CC=1, PT 8, one CSRC, a one-word extension, 3 bytes payload, 2 padding.
        let mut p = vec![0xb1, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]); // extension
        p.extend_from_slice(&[5, 6, 7, 0, 2]);
        let (h, payload) = parse(&p).unwrap();
        assert_eq!((h.payload_type, h.sequence, h.ssrc), (8, 1, 7));
        assert_eq!(payload, &[5, 6, 7]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version(1)));
        let mut p = vec![0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // 15 CSRCs, none present
        assert_eq!(parse(&p), Err(RtpError::Truncated));
        p[0] = 0xa0; // padding bit, pad length 0
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&rtcp), Err(RtpError::RtcpRange(72)));
        for n in 0..40 {
            let _ = parse(&vec![0xff; n]);
        }
    }
}
