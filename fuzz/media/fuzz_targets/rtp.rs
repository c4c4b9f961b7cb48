//! Fuzzes what a peer's RTP can do to a call's media session: parsing (padding, CSRCs,
//! extensions), source latching, SSRC changes, sequence wraps, the jitter buffer and decoding.
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
    let codec = if data.first().is_some_and(|b| b & 1 == 1) { Codec::Pcma } else { Codec::Pcmu };
    let mut s = MediaSession::new(codec, 0, Some(peer), t0);
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let Some((&op, packet)) = chunk.split_first() else { continue };
        let from = if op & 0x80 == 0 { peer } else { other };
        let at = t0 + Duration::from_millis(u64::from(op & 0x7f) * 7 + i as u64 * 20);
        let _ = s.receive(packet, from, at);
        for _ in 0..(op & 3) {
            assert_eq!(s.play().len(), s.frame_samples());
        }
        let _ = s.packetise(&[0; 160]);
    }
    for _ in 0..60 {
        assert_eq!(s.play().len(), s.frame_samples());
    }
    let _ = s.stats();
});
