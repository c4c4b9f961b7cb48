//! RFC 4475, "SIP Torture Test Messages": all 49 messages of its archive (bit-exact, under
//! `tests/torture/rfc4475/`, see the README there), fed to the parser and to a user agent
//! acting as UAS, with what RFC 4475 says an endpoint does with each: valid ones handled,
//! invalid ones answered 400 (or 505, 501, 415, 416, 406 where the RFC says so) or dropped
//! when no answer can be routed — never a panic.

use std::net::SocketAddr;
use std::time::Instant;

use switchboard_sip::auth::Algorithm;
use switchboard_sip::message::{error_response, Message};
use switchboard_sip::registrar::{Registrar, RegistrarConfig};
use switchboard_sip::transaction::Timers;
use switchboard_sip::ua::{Destination, Transport, UaConfig, UaEvent, UserAgent};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture/rfc4475")
        .join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The final (or only) response the UAS sent.
    Status(u16),
    /// An incoming call was offered to the application.
    Call,
    /// Nothing sent and nothing reported (a response with no transaction, or unroutable).
    Nothing,
}

use Outcome::*;

/// RFC 4475's messages and what an endpoint does with each (section numbers of RFC 4475).
const EXPECTED: &[(&str, Outcome)] = &[
    // 3.1.1 Valid messages.
    ("wsinv", Status(481)), // §3.1.1.1: well-formed; its To tag names no dialog of ours
    ("intmeth", Status(501)), // §3.1.1.2: an unknown method
    ("esc01", Call),        // §3.1.1.3
    ("escnull", Status(405)), // §3.1.1.4: REGISTER to an endpoint
    ("esc02", Status(501)), // §3.1.1.5: RE%47IST%45R is not REGISTER
    ("lwsdisp", Status(200)), // §3.1.1.6
    ("longreq", Call),      // §3.1.1.7: long values, 40 Vias, RFC 2543 top Via
    ("dblreq", Status(405)), // §3.1.1.8: the second request in the datagram is ignored
    ("semiuri", Status(200)), // §3.1.1.9
    ("transports", Status(200)), // §3.1.1.10
    ("mpart01", Status(405)), // §3.1.1.11: MESSAGE to a phone
    ("unreason", Nothing),  // §3.1.1.12: a response matching nothing
    ("noreason", Nothing),  // §3.1.1.13: an empty reason phrase parses; matches nothing
    // 3.1.2 Invalid messages.
    ("badinv01", Status(400)),   // §3.1.2.1: ;;,;,, in Via
    ("clerr", Status(400)),      // §3.1.2.2: Content-Length larger than the datagram
    ("ncl", Status(400)),        // §3.1.2.3: negative Content-Length
    ("scalar02", Status(400)),   // §3.1.2.4: CSeq beyond 2^31
    ("scalarlg", Nothing),       // §3.1.2.5: a response with overlarge values
    ("quotbal", Status(400)),    // §3.1.2.6: unterminated quoted string
    ("ltgtruri", Status(400)),   // §3.1.2.7: <> around the Request-URI
    ("lwsruri", Status(400)),    // §3.1.2.8: LWS inside the Request-URI
    ("lwsstart", Status(400)),   // §3.1.2.9: several SP in the Request-Line
    ("trws", Status(400)),       // §3.1.2.10: SP after SIP/2.0 (rejecting is acceptable)
    ("escruri", Status(400)),    // §3.1.2.11: headers in a sip: Request-URI
    ("baddate", Call),           // §3.1.2.12: liberal: we do not use Date
    ("regbadct", Status(405)),   // §3.1.2.13: REGISTER to an endpoint
    ("badaspec", Status(200)),   // §3.1.2.14: liberal: spaces inside <> ignored
    ("baddn", Status(400)),      // §3.1.2.15: (the archive's copy lacks the blank line too)
    ("badvers", Status(505)),    // §3.1.2.16: SIP/7.0
    ("mismatch01", Status(400)), // §3.1.2.17: CSeq method differs
    ("mismatch02", Status(501)), // §3.1.2.18: unknown method, so 501 rather than 400
    ("bigcode", Nothing),        // §3.1.2.19: a response with status 4294967301 is dropped
    // 3.2 Transaction layer.
    ("badbranch", Status(200)), // §3.2.1: branch is just the magic cookie: still a branch
    // 3.3 Application layer.
    ("insuf", Status(400)),    // §3.3.1: no Call-ID, From, To
    ("unkscm", Status(416)),   // §3.3.2
    ("novelsc", Status(416)),  // §3.3.3: soap.beep:
    ("unksm2", Status(405)),   // §3.3.4: REGISTER to an endpoint
    ("bext01", Status(420)),   // §3.3.5: Require we do not support
    ("invut", Status(415)),    // §3.3.6: a body we cannot read
    ("regaut01", Status(405)), // §3.3.7: REGISTER to an endpoint
    ("multi01", Status(400)),  // §3.3.8: two Call-IDs, To, From, CSeq
    ("mcl01", Status(400)),    // §3.3.9: two Content-Lengths
    ("bcast", Nothing),        // §3.3.10: a response with a broadcast Via
    ("zeromf", Status(200)),   // §3.3.11: Max-Forwards 0 to an endpoint: answer as usual
    ("cparam01", Status(405)), // §3.3.12
    ("cparam02", Status(405)), // §3.3.13
    ("regescrt", Status(405)), // §3.3.14
    ("sdp01", Status(406)),    // §3.3.15: Accept rules out the SDP answer
    // 3.4 Backward compatibility.
    ("inv2543", Call), // §3.4.1: RFC 2543 INVITE: no branch, no From tag, no Contact
];

fn uas() -> UserAgent {
    UserAgent::new(UaConfig {
        user: "user".into(),
        domain: "example.com".into(),
        display_name: None,
        credentials: None,
        contact_host: "192.0.2.200:5060".into(),
        transport: Transport::Udp,
        outbound_proxy: None,
        timers: Timers::default(),
        user_agent: "torture".into(),
    })
}

fn outcome(data: &[u8]) -> Outcome {
    let source: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let msg = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            return match error_response(data, &e, source) {
                // The answer copies the request's From/To as they came (§8.2.6.2), broken
                // quoting included, so read its status line only.
                Some(reply) => Status(
                    std::str::from_utf8(&reply[8..11])
                        .ok()
                        .and_then(|c| c.parse().ok())
                        .expect("a status line"),
                ),
                None => Nothing,
            };
        }
    };
    let mut ua = uas();
    ua.handle_message(&msg, source, Instant::now());
    let mut last = None;
    while let Some(t) = ua.poll_transmit() {
        let r = Message::parse(&t.data).expect("what we send parses");
        if let Some(s) = r.status().filter(|s| *s >= 200) {
            // Responses go back where the request came from (§18.2.2, RFC 3581).
            assert_eq!(t.to, Destination::Addr(source));
            last = Some(s);
        }
    }
    let mut call = false;
    while let Some(e) = ua.poll_event() {
        call |= matches!(e, UaEvent::IncomingCall { .. });
    }
    match (last, call) {
        (Some(s), _) => Status(s),
        (None, true) => Call,
        (None, false) => Nothing,
    }
}

#[test]
fn every_rfc4475_message_gets_the_answer_the_rfc_expects() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture/rfc4475");
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dat"))
        })
        .count();
    // test.dat is in the archive but in no section of the RFC.
    assert_eq!(
        on_disk,
        EXPECTED.len() + 1,
        "every archived message is covered"
    );
    let mut wrong = Vec::new();
    for (name, expected) in EXPECTED {
        let got = outcome(&fixture(name));
        if got != *expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn valid_messages_expose_what_the_rfc_says_they_carry() {
    // §3.1.1.1: folded lines, odd case, compact forms, Vias in one header and in several.
    let m = Message::parse(&fixture("wsinv")).expect("wsinv is valid");
    assert_eq!(m.method().as_deref(), Some("INVITE"));
    assert_eq!(m.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(m.cseq(), Some((9, "INVITE".into())));
    assert_eq!(m.body().len(), 150);
    assert_eq!(m.header("max-forwards"), Some("0068"));
    assert!(m.header("Contact").is_some(), "compact m: is Contact");
    assert_eq!(
        m.header("Subject"),
        Some(""),
        "compact s: is Subject, empty"
    );
    assert_eq!(
        m.header("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;"),
        "an unknown header's value is opaque"
    );
    // §3.1.1.2: an extension method of token characters, an odd but legal Request-URI.
    let m = Message::parse(&fixture("intmeth")).expect("intmeth is valid");
    assert_eq!(
        m.method().as_deref(),
        Some("!interesting-Method0123456789_*+`.%indeed'~")
    );
    assert!(m.request_uri().unwrap().ends_with("@example.com"));
    // §3.1.1.3, §3.1.1.4.
    let m = Message::parse(&fixture("esc01")).expect("esc01 is valid");
    assert_eq!(m.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    let m = Message::parse(&fixture("escnull")).expect("escnull is valid");
    assert_eq!(m.headers("Contact").count(), 2);
    // §3.1.1.7: forty Vias in many spellings of the name.
    let m = Message::parse(&fixture("longreq")).expect("longreq is valid");
    assert!(m.headers("Via").count() >= 30);
    // §3.1.1.8: only the first request of the datagram.
    let m = Message::parse(&fixture("dblreq")).expect("dblreq is valid");
    assert_eq!(m.method().as_deref(), Some("REGISTER"));
    assert!(m.body().is_empty());
    // §3.1.1.12, §3.1.1.13: reason phrases.
    let m = Message::parse(&fixture("unreason")).expect("unreason is valid");
    assert_eq!(m.status(), Some(200));
    let m = Message::parse(&fixture("noreason")).expect("noreason is valid");
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
    // §3.4.1: no Content-Length: the body is the rest of the datagram.
    let m = Message::parse(&fixture("inv2543")).expect("inv2543 is valid");
    assert!(m.body().starts_with(b"v=0"));
}

#[test]
fn the_registrar_challenges_every_torture_register() {
    // REGISTERs of RFC 4475 reach a registrar before any binding is looked at: none carries
    // credentials it could accept (regaut01 uses an unknown scheme), so each is challenged.
    let mut r = Registrar::new(
        RegistrarConfig {
            realm: "example.com".into(),
            ..RegistrarConfig::default()
        },
        [7; 32],
        Algorithm::Sha256,
    );
    for name in [
        "escnull", "cparam01", "cparam02", "regescrt", "regaut01", "dblreq",
    ] {
        let m = Message::parse(&fixture(name)).unwrap();
        let reply = r
            .handle_register(&m, Instant::now(), 1_000_000, |_| None)
            .unwrap();
        let reply = Message::parse(&reply).unwrap();
        assert_eq!(reply.status(), Some(401), "{name}");
        assert!(reply.header("WWW-Authenticate").is_some(), "{name}");
    }
}

#[test]
fn the_answer_to_a_malformed_request_names_the_problem_and_routes_back() {
    let source: SocketAddr = "198.51.100.7:5071".parse().unwrap();
    let data = fixture("clerr");
    let err = Message::parse(&data).unwrap_err();
    let reply = Message::parse(&error_response(&data, &err, source).unwrap()).unwrap();
    assert_eq!(reply.status(), Some(400));
    let via = reply.header("Via").unwrap();
    assert!(via.contains("received=198.51.100.7"), "{via}");
    assert!(reply.header("To").unwrap().contains(";tag="));
    assert!(reply
        .header("Warning")
        .unwrap()
        .contains("Content-Length 9999"));
    assert_eq!(reply.call_id(), Some("clerr.0ha0isndaksdjweiafasdk3"));
}

#[test]
fn no_prefix_of_a_torture_message_panics() {
    let source: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    for (name, _) in EXPECTED {
        let data = fixture(name);
        for end in 0..=data.len() {
            if let Err(e) = Message::parse(&data[..end]) {
                let _ = error_response(&data[..end], &e, source);
            }
        }
    }
}
