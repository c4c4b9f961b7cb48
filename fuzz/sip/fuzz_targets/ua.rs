//! Fuzzes the user agent's call state machine (dialogs, transactions, offer/answer, REFER,
//! session timers): the input is a script of peer messages from two sources, local commands
//! and clock jumps. Nothing a peer sends, in any order, may panic, and every message the
//! user agent sends must parse again (a message we send that we cannot parse is a failure:
//! something unchecked reached the wire).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_sip::message::Message;
use switchboard_sip::sdp::LocalMedia;
use switchboard_sip::transaction::Timers;
use switchboard_sip::ua::{Transport, UaConfig, UaEvent, UserAgent};

fuzz_target!(|data: &[u8]| {
    let mut ua = UserAgent::new(UaConfig {
        user: "fuzz".into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: None,
        contact_host: "127.0.0.1:5060".into(),
        transport: Transport::Udp,
        outbound_proxy: None,
        timers: Timers::default(),
        user_agent: "fuzz".into(),
    });
    let media = LocalMedia::new("127.0.0.1".parse().unwrap(), 4000);
    let mut now = Instant::now();
    let mut calls = Vec::new();
    // Chunks separated by 0xFF: the first byte of each picks what to do with the rest.
    for chunk in data.split(|b| *b == 0xff) {
        let Some((&op, rest)) = chunk.split_first() else { continue };
        match op % 12 {
            0..=4 => {
                if let Ok(m) = Message::parse(rest) {
                    let src = if op & 0x10 == 0 { "127.0.0.1:5070" } else { "10.0.0.9:5080" };
                    ua.handle_message(&m, src.parse().unwrap(), now);
                }
            }
            5 => {
                if let Ok(c) = ua.invite("sip:peer@127.0.0.1:5070", media.clone(), vec![], now) {
                    calls.push(c);
                }
            }
            6 => calls.iter().for_each(|c| drop(ua.answer(*c, media.clone(), now))),
            7 => calls.iter().for_each(|c| ua.hangup(*c, now)),
            8 => calls.iter().for_each(|c| drop(ua.hold(*c, op & 0x10 == 0, now))),
            9 => calls.iter().for_each(|c| drop(ua.transfer(*c, "sip:x@127.0.0.1:5090", None, now))),
            10 => calls.iter().for_each(|c| drop(ua.early_media(*c, media.clone(), now))),
            _ => {
                let ms = u64::from(rest.first().copied().unwrap_or(1)) * 250;
                now += Duration::from_millis(ms);
                ua.handle_timeout(now);
            }
        }
        drain(&mut ua);
        while let Some(e) = ua.poll_event() {
            if let UaEvent::IncomingCall { call, .. } = e {
                calls.push(call);
            }
        }
    }
    // Time runs out: every timer fires and nothing may panic.
    for _ in 0..64 {
        now += Duration::from_secs(1);
        ua.handle_timeout(now);
        drain(&mut ua);
        while ua.poll_event().is_some() {}
    }
});

/// Takes what the user agent sends; each message must parse.
fn drain(ua: &mut UserAgent) {
    while let Some(t) = ua.poll_transmit() {
        if let Err(e) = Message::parse(&t.data) {
            panic!(
                "the user agent sent a message it cannot parse ({e:?}):\n{}",
                String::from_utf8_lossy(&t.data)
            );
        }
    }
}
