//! RFC 4475 torture messages (fixtures under `tests/torture/`, one datagram each): the valid
//! ones parse and expose what the RFC says they carry; the invalid ones are a typed error,
//! never a panic.

use switchboard_sip::message::Message;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn wsinv_short_tortuous_invite() {
    // §3.1.1.1: folded lines, odd case, compact forms, Vias in one header and in several.
    let m = Message::parse(&fixture("valid-wsinv.sip")).expect("wsinv is valid");
    assert_eq!(m.method().as_deref(), Some("INVITE"));
    assert_eq!(m.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    let (seq, method) = m.cseq().expect("CSeq");
    assert_eq!((seq, method.as_str()), (9, "INVITE"));
    assert_eq!(m.body().len(), 150);
    assert!(m.header("max-forwards").is_some());
    assert!(m.header("Contact").is_some(), "compact m: is Contact");
    assert!(m.header("Subject").is_some(), "compact s: is Subject");
}

#[test]
fn esc01_percent_escapes() {
    // §3.1.1.3
    let m = Message::parse(&fixture("valid-esc01.sip")).expect("esc01 is valid");
    assert_eq!(
        m.call_id(),
        Some("esc01.239409asdfakjkn23onasd0-3234"),
        "compact i: is Call-ID"
    );
    assert!(
        m.header("content-type").is_some(),
        "compact c: is Content-Type"
    );
    assert_eq!(m.body().len(), 150);
}

#[test]
fn escnull_and_lwsdisp() {
    // §3.1.1.4, §3.1.1.6
    let m = Message::parse(&fixture("valid-escnull.sip")).expect("escnull is valid");
    assert_eq!(m.method().as_deref(), Some("REGISTER"));
    assert_eq!(m.headers("Contact").count(), 2);
    assert!(m.body().is_empty());
    let m = Message::parse(&fixture("valid-lwsdisp.sip")).expect("lwsdisp is valid");
    assert_eq!(m.method().as_deref(), Some("OPTIONS"));
}

#[test]
fn invalid_content_lengths_are_errors() {
    // §3.1.2.5 ncl (negative) and §3.1.2.4 clerr (larger than the datagram).
    for name in ["invalid-ncl.sip", "invalid-clerr.sip"] {
        assert!(
            Message::parse(&fixture(name)).is_err(),
            "{name} must not parse"
        );
    }
}

#[test]
fn no_prefix_of_a_torture_message_panics() {
    for name in [
        "valid-wsinv.sip",
        "valid-esc01.sip",
        "valid-escnull.sip",
        "valid-lwsdisp.sip",
        "invalid-ncl.sip",
        "invalid-clerr.sip",
    ] {
        let data = fixture(name);
        for end in 0..data.len() {
            let _ = Message::parse(&data[..end]);
        }
    }
}
