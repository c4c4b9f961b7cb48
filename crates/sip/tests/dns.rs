//! RFC 3263 server location against a real DNS exchange: a small authoritative server on
//! 127.0.0.1 (answers built with hickory's own message types) holding NAPTR, SRV and A records,
//! asked by our resolver over UDP; then a call to `sip:bob@sip.test` that only DNS can place.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use switchboard_sip::dns::{SipResolver, Target};
use switchboard_sip::phone::{Phone, PhoneEvent};
use switchboard_sip::sdp::LocalMedia;
use switchboard_sip::transaction::Timers;
use switchboard_sip::transport::{TlsSettings, Transports};
use switchboard_sip::ua::{Transport, UaConfig, UaEvent, UserAgent};

type Zone = HashMap<(String, RecordType), Vec<RData>>;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn zone(sip_port: u16, tcp_port: u16) -> Zone {
    let mut z: Zone = HashMap::new();
    let lo = RData::A(A(Ipv4Addr::LOCALHOST));
    z.insert(
        ("sip.test.".into(), RecordType::NAPTR),
        vec![
            RData::NAPTR(NAPTR::new(
                20,
                10,
                b"s".to_vec().into(),
                b"SIP+D2T".to_vec().into(),
                Vec::new().into(),
                name("_sip._tcp.sip.test."),
            )),
            RData::NAPTR(NAPTR::new(
                10,
                10,
                b"s".to_vec().into(),
                b"SIP+D2U".to_vec().into(),
                Vec::new().into(),
                name("_sip._udp.sip.test."),
            )),
        ],
    );
    z.insert(
        ("_sip._udp.sip.test.".into(), RecordType::SRV),
        vec![
            RData::SRV(SRV::new(20, 0, 9, name("backup.sip.test."))),
            RData::SRV(SRV::new(10, 100, sip_port, name("a.sip.test."))),
        ],
    );
    z.insert(
        ("_sip._tcp.tcponly.test.".into(), RecordType::SRV),
        vec![RData::SRV(SRV::new(10, 0, tcp_port, name("a.sip.test.")))],
    );
    for h in ["a.sip.test.", "backup.sip.test.", "plain.test."] {
        z.insert((h.into(), RecordType::A), vec![lo.clone()]);
    }
    z
}

/// Answers queries from `zone` until the test ends.
fn dns_server(zone: Zone) -> SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.authoritative = true;
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            let mut found = false;
            for query in &q.queries {
                r.add_query(query.clone());
                let key = (query.name.to_ascii().to_ascii_lowercase(), query.query_type);
                if let Some(rdatas) = zone.get(&key) {
                    for d in rdatas {
                        r.add_answer(Record::from_rdata(query.name.clone(), 60, d.clone()));
                        found = true;
                    }
                }
            }
            if !found {
                let any = q.queries.iter().any(|query| {
                    let n = query.name.to_ascii().to_ascii_lowercase();
                    zone.keys().any(|(k, _)| *k == n)
                });
                r.metadata.response_code = if any {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

#[tokio::test]
async fn naptr_then_srv_then_a() {
    let dns = dns_server(zone(5070, 5080));
    let r = SipResolver::with_name_server(dns).unwrap();
    let all = [Transport::Udp, Transport::Tcp];
    let t = r.locate("sip.test", None, None, false, &all).await.unwrap();
    // NAPTR order 10 (UDP) beats 20 (TCP); SRV priority 10 beats the backup at 20.
    assert_eq!(
        t,
        vec![
            Target {
                transport: Transport::Udp,
                addr: "127.0.0.1:5070".parse().unwrap()
            },
            Target {
                transport: Transport::Udp,
                addr: "127.0.0.1:9".parse().unwrap()
            },
        ]
    );
    // No NAPTR: SRV per supported transport.
    let t = r
        .locate("tcponly.test", None, None, false, &all)
        .await
        .unwrap();
    assert_eq!(t[0].transport, Transport::Tcp);
    assert_eq!(t[0].addr.port(), 5080);
    // Neither: the A record on the default port.
    let t = r
        .locate("plain.test", None, None, false, &all)
        .await
        .unwrap();
    assert_eq!(t[0].addr, "127.0.0.1:5060".parse().unwrap());
    // An explicit port skips NAPTR and SRV.
    let t = r
        .locate("a.sip.test", Some(7000), None, false, &all)
        .await
        .unwrap();
    assert_eq!(t[0].addr.port(), 7000);
    // Nothing at all: a clear error.
    let e = r
        .locate("nowhere.test", None, None, false, &all)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("nowhere.test has no SIP server in DNS"),
        "{e}"
    );
}

fn ua(user: &str, contact: SocketAddr) -> UserAgent {
    UserAgent::new(UaConfig {
        user: user.into(),
        domain: "sip.test".into(),
        display_name: None,
        credentials: None,
        contact_host: contact.to_string(),
        transport: Transport::Udp,
        outbound_proxy: None,
        timers: Timers::default(),
        user_agent: "dns-test".into(),
    })
}

#[tokio::test]
async fn a_call_to_a_domain_found_through_srv() {
    let bob_net = Transports::bind(
        Transport::Udp,
        "127.0.0.1:0".parse().unwrap(),
        &TlsSettings::default(),
    )
    .await
    .unwrap();
    let bob_addr = bob_net.local_addr();
    let dns = dns_server(zone(bob_addr.port(), 1));
    let mut bob = Phone::new(bob_net, ua("bob", bob_addr));
    let alice_net = Transports::bind(
        Transport::Udp,
        "127.0.0.1:0".parse().unwrap(),
        &TlsSettings::default(),
    )
    .await
    .unwrap();
    let alice_addr = alice_net.local_addr();
    let mut alice = Phone::new(alice_net, ua("alice", alice_addr));
    alice.set_resolver(SipResolver::with_name_server(dns).unwrap());
    let m = LocalMedia::new("127.0.0.1".parse().unwrap(), 4000);
    alice
        .ua()
        .invite("sip:bob@sip.test", m.clone(), vec![], Instant::now())
        .unwrap();
    let bob_task = tokio::spawn(async move {
        loop {
            match bob.next_event().await.unwrap() {
                PhoneEvent::Call(UaEvent::IncomingCall { call, .. }) => {
                    bob.ua().answer(call, m.clone(), Instant::now()).unwrap();
                }
                PhoneEvent::Call(UaEvent::Established { .. }) => return true,
                _ => {}
            }
        }
    });
    let up = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let PhoneEvent::Call(UaEvent::Established { .. }) = alice.next_event().await.unwrap()
            {
                return true;
            }
        }
    })
    .await;
    assert_eq!(up, Ok(true), "the call reached bob through NAPTR → SRV → A");
    assert!(tokio::time::timeout(Duration::from_secs(5), bob_task)
        .await
        .is_ok());
}
