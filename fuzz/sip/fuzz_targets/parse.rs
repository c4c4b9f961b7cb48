//! Fuzzes the SIP message parser and stream framer: any bytes a peer sends must give a message
//! or a typed error, never a panic; a parsed message must serialise and parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::message::Message;

fuzz_target!(|data: &[u8]| {
    let _ = Message::frame_len(data);
    if let Ok(m) = Message::parse(data) {
        let _ = (m.method(), m.request_uri(), m.status(), m.reason());
        let _ = (m.call_id(), m.cseq(), m.top_via_branch());
        let _ = m.headers("via").count();
        let bytes = m.to_bytes();
        let _ = Message::parse(&bytes);
    }
});
