//! Fuzzes SDP parsing and offer/answer: any body a peer offers or answers gives an answer or a
//! typed error, never a panic; what we write parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::sdp::{self, LocalMedia, Sdp};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Sdp::parse(data) else { return };
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 4000);
    if let Ok((answer, _)) = sdp::answer(&s, &local, "1", 1) {
        assert!(Sdp::parse(&answer.to_bytes()).is_ok());
    }
    let ours = sdp::offer(&local, "1", 1);
    let _ = sdp::accept_answer(&ours, &s);
    let _ = Sdp::parse(&s.to_bytes());
});
