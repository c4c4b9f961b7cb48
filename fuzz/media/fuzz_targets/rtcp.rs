//! Fuzzes RTCP from a peer (RFC 3550 §6.4): compound packets parsed alone, then fed to a call's
//! session on the RTP port (rtcp-mux) where they update the round trip, the peer's loss figures
//! and the Opus bitrate adaptation.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use switchboard_media::rtcp;
use switchboard_media::session::{Codec, MediaSession};

fuzz_target!(|data: &[u8]| {
    let _ = rtcp::parse(data);
    let t0 = Instant::now();
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let codec = if data.len() % 2 == 0 { Codec::Opus } else { Codec::Pcmu };
    let mut s = MediaSession::new(codec, 111, Some(peer), t0);
    s.configure_opus(Some("useinbandfec=1;maxaveragebitrate=20000"), false);
    let frame = vec![0i16; s.frame_samples()];
    let _ = s.packetise(&frame);
    for chunk in data.split(|b| *b == 0xfe) {
        let _ = s.receive(chunk, peer, t0);
        let _ = s.packetise(&frame);
    }
    let report = s.rtcp_report(std::time::Duration::from_secs(1_700_000_000));
    assert!(rtcp::parse(&report).is_ok());
    let st = s.stats();
    if let Some(b) = st.opus_bitrate {
        assert!((6_000..=32_000).contains(&b), "{b}");
    }
});
