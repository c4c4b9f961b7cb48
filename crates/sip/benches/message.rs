//! Parse and serialise throughput of SIP messages, digest verification, and SDP offer/answer.
//! `cargo bench -p switchboard-sip --bench message` (add `-- --quick` for a fast look).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchboard_sip::auth::{Algorithm, Challenge, Credentials, DigestServer};
use switchboard_sip::message::Message;
use switchboard_sip::sdp::{self, LocalMedia, Sdp};

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49170 RTP/AVP 111 0 8 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

fn invite() -> String {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\nSupported: replaces, 100rel, timer\r\nSession-Expires: 1800\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

const REGISTER: &str = "REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\nFrom: Bob <sip:bob@biloxi.example.com>;tag=456248\r\nCall-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nContact: <sip:bob@192.0.2.4>;expires=7200\r\nAuthorization: Digest username=\"bob\", realm=\"biloxi.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:registrar.biloxi.example.com\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\nContent-Length: 0\r\n\r\n";

const OK_VIAS: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\nVia: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\nTo: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:bob@192.0.2.4>\r\nContent-Length: 0\r\n\r\n";

const COMPACT: &str = "BYE sip:bob@192.0.2.4 SIP/2.0\r\nv: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds10\r\nMax-Forwards: 70\r\nf: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nt: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\ni: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 231 BYE\r\nl: 0\r\n\r\n";

fn messages(c: &mut Criterion) {
    let inv = invite();
    let cases: [(&str, &str); 4] = [
        ("invite_with_sdp", &inv),
        ("register_with_auth", REGISTER),
        ("ok_three_vias", OK_VIAS),
        ("compact_bye", COMPACT),
    ];
    let mut g = c.benchmark_group("parse");
    for (name, text) in cases {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| Message::parse(black_box(text.as_bytes())).map(|m| m.cseq()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("serialise");
    for (name, text) in cases {
        let m = Message::parse(text.as_bytes()).expect("valid");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(&m).to_bytes()));
    }
    g.finish();
}

fn digest(c: &mut Criterion) {
    let mut server = DigestServer::new("biloxi.example.com", [7u8; 32], Algorithm::Sha256);
    let challenge = Challenge::parse(&server.challenge(1_000, false)).expect("our challenge");
    let creds = Credentials {
        username: "bob".into(),
        password: "zanzibar".into(),
    };
    c.bench_function("digest_verify_sha256", |b| {
        // The nonce count must grow (replay protection), so each round answers afresh.
        let mut nc = 0u32;
        b.iter(|| {
            nc += 1;
            let h =
                challenge.authorize(&creds, "REGISTER", "sip:biloxi.example.com", nc, "0a4f113b");
            server.verify(
                black_box(&h),
                "REGISTER",
                "sip:biloxi.example.com",
                1_000,
                |_| Some("zanzibar".to_owned()),
            )
        })
    });
}

fn offer_answer(c: &mut Criterion) {
    let local = LocalMedia::new("192.0.2.55".parse().expect("ip"), 40000);
    c.bench_function("sdp_parse_and_answer", |b| {
        b.iter(|| {
            let o = Sdp::parse(black_box(SDP.as_bytes())).expect("valid");
            sdp::answer(&o, &local, "1", 1).map(|(a, _)| a.to_bytes())
        })
    });
}

criterion_group!(benches, messages, digest, offer_answer);
criterion_main!(benches);
