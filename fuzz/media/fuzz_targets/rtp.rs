//! Fuzzes what a peer's RTP can do to a call's media session: parsing (padding, CSRCs,
//! extensions), source latching, SSRC changes, sequence wraps, the jitter buffer and decoding
//! (G.711, and Opus with its FEC and concealment).
//! Chunks separated by 0xFF are packets from one of two sources, played out as they come.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_media::session::{Codec, MediaSession};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let other: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let codec = match data.first().map(|b| b % 3) {
        Some(1) => Codec::Pcma,
        Some(2) => Codec::Opus,
        _ => Codec::Pcmu,
    };
    let mut s = MediaSession::new(codec, 0, Some(peer), t0);
    // Opus: FEC decoding from the next packet and concealment, with what a peer sends.
    s.configure_opus(Some("useinbandfec=1"), false);
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let Some((&op, packet)) = chunk.split_first() else { continue };
        let from = if op & 0x80 == 0 { peer } else { other };
        let at = t0 + Duration::from_millis(u64::from(op & 0x7f) * 7 + i as u64 * 20);
        let _ = s.receive(packet, from, at);
        for _ in 0..(op & 3) {
            assert_eq!(s.play().len(), s.frame_samples());
        }
        let frame = vec![0i16; s.frame_samples()];
        let _ = s.packetise(&frame);
    }
    for _ in 0..60 {
        assert_eq!(s.play().len(), s.frame_samples());
    }
    let _ = s.stats();
});
