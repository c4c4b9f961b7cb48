//! Fuzzes SRTP (RFC 3711) with SDES keys (RFC 4568): `a=crypto` lines as a peer writes them,
//! SRTP/SRTCP packets under the right key with bytes flipped (what an attacker or a broken
//! network delivers), and arbitrary bytes, into a call's session. Nothing may panic, nothing
//! altered may authenticate, forged SSRCs must not grow memory.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use switchboard_media::session::{Codec, Dropped, MediaSession};
use switchboard_media::srtp::{SdesKey, Srtp, Suite};

const OURS: &str = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
const THEIRS: &str = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const OURS_GCM: &str = "1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==";
const THEIRS_GCM: &str = "1 AEAD_AES_128_GCM inline:GxoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwIBAA==";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(k) = SdesKey::parse(text) {
            assert_eq!(SdesKey::parse(&k.to_attribute()).unwrap(), k);
        }
    }
    let Some((&mode, rest)) = data.split_first() else { return };
    let (ours, theirs) = if mode & 1 == 0 { (OURS, THEIRS) } else { (OURS_GCM, THEIRS_GCM) };
    let suite = if mode & 1 == 0 { Suite::AesCm128HmacSha1_80 } else { Suite::AeadAes128Gcm };
    let t0 = Instant::now();
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut rx = MediaSession::new(Codec::Pcmu, 0, Some(peer), t0);
    rx.set_srtp(Some(Srtp::new(ours, theirs).unwrap()));
    let mut tx = MediaSession::new(Codec::Pcmu, 0, Some(peer), t0);
    tx.set_srtp(Some(Srtp::new(theirs, ours).unwrap()));
    assert_eq!(Srtp::new(ours, theirs).unwrap().suite(), suite);
    for chunk in rest.split(|b| *b == 0xfe) {
        // Arbitrary bytes as they come.
        let _ = rx.receive(chunk, peer, t0);
        // A genuine packet (audio or a report) with the chunk XORed in.
        let mut sealed = if chunk.first().is_some_and(|b| b & 1 == 1) {
            tx.rtcp_report(std::time::Duration::from_secs(1_700_000_000))
        } else {
            tx.packetise(&[0; 160])
        };
        let mut flipped = false;
        for (i, b) in chunk.iter().skip(1).enumerate() {
            if let Some(x) = sealed.get_mut(i) {
                *x ^= b;
                flipped |= *b != 0;
            }
        }
        if chunk.len() > 1 && chunk[1] == 0xaa {
            sealed.truncate(usize::from(chunk.len() as u8));
            flipped = true;
        }
        let r = rx.receive(&sealed, peer, t0);
        if flipped {
            assert!(
                r.is_err() || sealed.len() < 12,
                "an altered packet authenticated"
            );
        } else if let Err(e) = r {
            assert!(
                !matches!(e, Dropped::Srtp(_)),
                "a genuine packet failed: {e}; header {:02x?}, {} bytes",
                &sealed[..sealed.len().min(12)],
                sealed.len()
            );
        }
        let _ = rx.play();
    }
    let _ = rx.stats();
});
