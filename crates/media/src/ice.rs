//! The lite side of ICE (RFC 8445 §2.5, §7.3): an ICE-lite agent has one host candidate,
//! never sends connectivity checks, and answers the full agent's. Microsoft Teams' media
//! bypass asks exactly this of an SBC: the Teams client is the full agent and controls; the
//! SBC answers its STUN Binding requests on the media port and sends media to the pair the
//! client nominates (USE-CANDIDATE).
//!
//! Sans-IO: [`IceLite::check`] takes a packet that arrived on the media port and its source,
//! and says what to send back and whether the pair was nominated. STUN messages are told from
//! RTP by their first byte (RFC 7983 §7) and the magic cookie; the STUN encoding itself is
//! `stun-types` (librice's).

use std::net::SocketAddr;

use stun_types::attribute::{
    AttributeType, ErrorCode, Fingerprint, MessageIntegrity, Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageWriteExt,
    MessageWriteVec, ShortTermCredentials, BINDING,
};
use stun_types::prelude::*;

/// PRIORITY (RFC 8445 §16.1): a check must carry it.
const PRIORITY: AttributeType = AttributeType::new(0x0024);
/// USE-CANDIDATE: the controlling agent nominates the pair.
const USE_CANDIDATE: AttributeType = AttributeType::new(0x0025);
/// ICE-CONTROLLED: the sender thinks itself controlled; so is a lite agent (a role conflict).
const ICE_CONTROLLED: AttributeType = AttributeType::new(0x8029);

/// Whether a packet that arrived on a media port is a STUN message (RFC 7983 §7: first byte
/// 0–3; RFC 8489 §5: the magic cookie at bytes 4–7) rather than RTP, RTCP or DTLS.
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= 20 && packet[0] <= 3 && packet[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

/// The lite agent's credentials on one stream (its user fragment and password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceLite {
    local_ufrag: String,
    credentials: MessageIntegrityCredentials,
}

/// What a packet that looked like STUN comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A valid check: send `reply` (a Binding success response) back to its source; when
    /// `nominated`, the full agent chose this pair and media goes to that source from now on.
    Answered { reply: Vec<u8>, nominated: bool },
    /// A check we refuse (RFC 8489 §6.3.4: 400 without USERNAME or MESSAGE-INTEGRITY, 401 for
    /// a user fragment or integrity that is not ours; RFC 8445 §7.3.1.1: 487 when the peer
    /// wants to be controlled too): send `reply` back; nothing else changes.
    Refused { reply: Vec<u8>, status: u16 },
    /// Not a request we answer (a response, an indication used as a keep-alive, or bytes
    /// that do not parse): dropped.
    Ignored,
}

impl IceLite {
    /// Our `ice-ufrag` and `ice-pwd` on the stream, as our SDP gave them.
    pub fn new(local_ufrag: &str, local_pwd: &str) -> Self {
        Self {
            local_ufrag: local_ufrag.to_owned(),
            credentials: ShortTermCredentials::new(local_pwd.to_owned()).into(),
        }
    }

    /// Answers a STUN packet that arrived from `from` (see [`is_stun`]).
    pub fn check(&self, packet: &[u8], from: SocketAddr) -> Check {
        let Ok(msg) = Message::from_bytes(packet) else {
            return Check::Ignored;
        };
        if !msg.has_method(BINDING) || !msg.has_class(MessageClass::Request) {
            return Check::Ignored;
        }
        // RFC 8445 §7.3: USERNAME is "our-ufrag:their-ufrag", MESSAGE-INTEGRITY is keyed
        // with our password; a check also carries PRIORITY and FINGERPRINT (§7.1).
        let username = msg.attribute::<Username>().ok();
        if username.is_none()
            || !msg.has_attribute(MessageIntegrity::TYPE)
            || !msg.has_attribute(PRIORITY)
            || !msg.has_attribute(Fingerprint::TYPE)
        {
            return refuse(&msg, ErrorCode::BAD_REQUEST);
        }
        let ours = username
            .as_ref()
            .and_then(|u| u.username().split_once(':'))
            .is_some_and(|(local, _)| local == self.local_ufrag);
        if !ours || msg.validate_integrity(&self.credentials).is_err() {
            return refuse(&msg, ErrorCode::UNAUTHORIZED);
        }
        if msg.has_attribute(ICE_CONTROLLED) {
            // A lite agent is always controlled and cannot switch (RFC 8445 §6.1.1).
            return refuse(&msg, ErrorCode::ROLE_CONFLICT);
        }
        let mut reply = Message::builder_success(&msg, MessageWriteVec::new());
        let built = reply
            .add_attribute(&XorMappedAddress::new(from, msg.transaction_id()))
            .and_then(|_| reply.add_message_integrity(&self.credentials, IntegrityAlgorithm::Sha1))
            .and_then(|_| reply.add_fingerprint());
        match built {
            Ok(()) => Check::Answered {
                reply: reply.finish(),
                nominated: msg.has_attribute(USE_CANDIDATE),
            },
            Err(_) => Check::Ignored,
        }
    }
}

fn refuse(msg: &Message, status: u16) -> Check {
    let mut reply = Message::builder_error(msg, MessageWriteVec::new());
    let code = ErrorCode::builder(status).build();
    let built = code
        .map_err(|_| ())
        .and_then(|c| reply.add_attribute(&c).map_err(|_| ()))
        .and_then(|_| reply.add_fingerprint().map_err(|_| ()));
    match built {
        Ok(()) => Check::Refused {
            reply: reply.finish(),
            status,
        },
        Err(()) => Check::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1: a sample request from an ICE agent — SOFTWARE, PRIORITY,
    /// ICE-CONTROLLED, USERNAME "evtj:h6vY", MESSAGE-INTEGRITY keyed with
    /// "VOkJxbRl1RmTxUk/WvJxBt", FINGERPRINT.
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];
    const PWD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

    fn from() -> SocketAddr {
        "192.0.2.1:32853".parse().unwrap()
    }

    /// A check as a controlling full agent sends it: PRIORITY, ICE-CONTROLLING, maybe
    /// USE-CANDIDATE, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT.
    fn request(username: &str, pwd: &str, nominate: bool, controlled: bool) -> Vec<u8> {
        use stun_types::attribute::RawAttribute;
        let mut m = Message::builder_request(BINDING, MessageWriteVec::new());
        m.add_attribute(&RawAttribute::new(PRIORITY, &0x6e00_01ffu32.to_be_bytes()))
            .unwrap();
        let role = if controlled {
            ICE_CONTROLLED
        } else {
            AttributeType::new(0x802A)
        };
        m.add_attribute(&RawAttribute::new(role, &[1, 2, 3, 4, 5, 6, 7, 8]))
            .unwrap();
        if nominate {
            m.add_attribute(&RawAttribute::new(USE_CANDIDATE, &[]))
                .unwrap();
        }
        m.add_attribute(&Username::new(username).unwrap()).unwrap();
        let creds: MessageIntegrityCredentials = ShortTermCredentials::new(pwd.into()).into();
        m.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
            .unwrap();
        m.add_fingerprint().unwrap();
        m.finish()
    }

    #[test]
    fn stun_is_told_from_rtp() {
        assert!(is_stun(&RFC5769_REQUEST));
        // An RTP header (version 2: first byte 0x80) is not STUN.
        let mut rtp = RFC5769_REQUEST;
        rtp[0] = 0x80;
        assert!(!is_stun(&rtp));
        assert!(!is_stun(&RFC5769_REQUEST[..19]));
        let mut cookie = RFC5769_REQUEST;
        cookie[5] = 0;
        assert!(!is_stun(&cookie));
    }

    #[test]
    fn the_rfc_5769_request_is_checked_and_its_role_conflict_refused() {
        // The sample says ICE-CONTROLLED: the sender wants to be controlled, as a lite agent
        // is; the credentials are right, so the refusal is 487, not 401.
        let lite = IceLite::new("evtj", PWD);
        match lite.check(&RFC5769_REQUEST, from()) {
            Check::Refused { reply, status } => {
                assert_eq!(status, 487);
                let r = Message::from_bytes(&reply).unwrap();
                assert!(r.has_class(MessageClass::Error));
                assert_eq!(
                    r.transaction_id(),
                    Message::from_bytes(&RFC5769_REQUEST)
                        .unwrap()
                        .transaction_id()
                );
                assert_eq!(r.attribute::<ErrorCode>().unwrap().code(), 487);
            }
            other => panic!("{other:?}"),
        }
        // With another password, or another user fragment, it is not ours: 401.
        for lite in [
            IceLite::new("evtj", "VOkJxbRl1RmTxUk/WvJxBu"),
            IceLite::new("h6vY", PWD),
        ] {
            assert!(matches!(
                lite.check(&RFC5769_REQUEST, from()),
                Check::Refused { status: 401, .. }
            ));
        }
        // One byte changed: the fingerprint no longer matches and the packet is dropped.
        let mut bent = RFC5769_REQUEST;
        bent[30] ^= 1;
        assert_eq!(
            IceLite::new("evtj", PWD).check(&bent, from()),
            Check::Ignored
        );
    }

    #[test]
    fn a_check_is_answered_with_the_source_address_and_our_integrity() {
        let lite = IceLite::new("9uB6", "YH75Fviy6338Vbrhrlp8Yh");
        let req = request("9uB6:8hhY", "YH75Fviy6338Vbrhrlp8Yh", false, false);
        let Check::Answered { reply, nominated } = lite.check(&req, from()) else {
            panic!("not answered");
        };
        assert!(!nominated);
        let r = Message::from_bytes(&reply).unwrap();
        assert!(r.has_class(MessageClass::Success) && r.has_method(BINDING));
        assert_eq!(
            r.transaction_id(),
            Message::from_bytes(&req).unwrap().transaction_id()
        );
        let mapped = r.attribute::<XorMappedAddress>().unwrap();
        assert_eq!(mapped.addr(r.transaction_id()), from());
        let creds: MessageIntegrityCredentials =
            ShortTermCredentials::new("YH75Fviy6338Vbrhrlp8Yh".into()).into();
        assert!(r.validate_integrity(&creds).is_ok());
        assert!(r.has_attribute(Fingerprint::TYPE));
        // USE-CANDIDATE nominates.
        let req = request("9uB6:8hhY", "YH75Fviy6338Vbrhrlp8Yh", true, false);
        assert!(matches!(
            lite.check(&req, from()),
            Check::Answered {
                nominated: true,
                ..
            }
        ));
    }

    #[test]
    fn checks_that_are_not_ours_or_incomplete_are_refused_or_dropped() {
        let lite = IceLite::new("9uB6", "YH75Fviy6338Vbrhrlp8Yh");
        // Another stream's user fragment, and the wrong password: 401, never nominated.
        for req in [
            request("zzzz:8hhY", "YH75Fviy6338Vbrhrlp8Yh", true, false),
            request("9uB6:8hhY", "YH75Fviy6338Vbrhrlp8Yx", true, false),
            request("9uB6", "YH75Fviy6338Vbrhrlp8Yh", true, false),
        ] {
            assert!(matches!(
                lite.check(&req, from()),
                Check::Refused { status: 401, .. }
            ));
        }
        // No credentials at all: 400.
        let mut m = Message::builder_request(BINDING, MessageWriteVec::new());
        m.add_fingerprint().unwrap();
        assert!(matches!(
            lite.check(&m.finish(), from()),
            Check::Refused { status: 400, .. }
        ));
        // A response, an indication and garbage are dropped.
        let req = request("9uB6:8hhY", "YH75Fviy6338Vbrhrlp8Yh", false, false);
        let Check::Answered { reply, .. } = lite.check(&req, from()) else {
            panic!()
        };
        assert_eq!(lite.check(&reply, from()), Check::Ignored);
        let ind = Message::builder_indication(BINDING, MessageWriteVec::new()).finish();
        assert_eq!(lite.check(&ind, from()), Check::Ignored);
        assert_eq!(lite.check(&[0u8; 20], from()), Check::Ignored);
        assert_eq!(lite.check(&[1u8; 3], from()), Check::Ignored);
    }
}
