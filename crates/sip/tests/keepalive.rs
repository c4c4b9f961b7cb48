//! Keep-alives over UDP: an OPTIONS to the registrar at each interval; when it stops
//! answering, the phone registers again (and reports what happens to that registration).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sip::auth::{Algorithm, Credentials};
use switchboard_sip::phone::{Phone, PhoneEvent};
use switchboard_sip::registrar::{Registrar, RegistrarConfig};
use switchboard_sip::registrar_udp::serve_udp;
use switchboard_sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use switchboard_sip::transaction::{Reliability, Timers};
use switchboard_sip::transport::{TlsSettings, Transports};
use switchboard_sip::ua::{Transport, UaConfig, UserAgent};

/// Alice's user agent and registration at `registrar` over `transport` from `local`.
fn alice(
    local: std::net::SocketAddr,
    registrar: &str,
    transport: Transport,
    timers: Timers,
) -> (UserAgent, RegistrationConfig) {
    let (param, via, reliability) = match transport {
        Transport::Udp => ("", "UDP", Reliability::Unreliable),
        _ => (";transport=tcp", "TCP", Reliability::Reliable),
    };
    let ua = UserAgent::new(UaConfig {
        user: "alice".into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: None,
        contact_host: local.to_string(),
        transport,
        outbound_proxy: None,
        timers,
        user_agent: "keepalive-test".into(),
    });
    let reg = RegistrationConfig {
        registrar: format!("{registrar}{param}"),
        aor: "sip:alice@127.0.0.1".into(),
        contact: format!("sip:alice@{local}{param}"),
        via_sent_by: local.to_string(),
        via_transport: via,
        reliability,
        credentials: Credentials {
            username: "alice".into(),
            password: "wonderland".into(),
        },
        expires: 600,
        timers,
        user_agent: "keepalive-test".into(),
    };
    (ua, reg)
}

#[tokio::test]
async fn udp_keepalive_options_reach_the_registrar_and_a_silent_one_is_registered_again() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let registrar_addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut r = Registrar::new(
            RegistrarConfig {
                realm: "127.0.0.1".into(),
                ..RegistrarConfig::default()
            },
            [9; 32],
            Algorithm::Md5,
        );
        serve_udp(
            &socket,
            &mut r,
            |u| (u == "alice").then(|| "wonderland".to_owned()),
            &s2,
        )
        .unwrap()
    });

    // Short timers so an unanswered OPTIONS times out (64·T1) within the test.
    let timers = Timers {
        t1: Duration::from_millis(40),
        ..Timers::default()
    };
    let net = Transports::bind(
        Transport::Udp,
        "127.0.0.1:0".parse().unwrap(),
        &TlsSettings::default(),
    )
    .await
    .unwrap();
    let local = net.local_addr();
    let (ua, reg) = alice(
        local,
        &format!("sip:{registrar_addr}"),
        Transport::Udp,
        timers,
    );
    let mut phone = Phone::new(net, ua);
    let mut reg = Registration::new(reg);
    reg.start(Instant::now());
    phone.add_registration(reg, registrar_addr);
    phone.set_keepalive(Some(Duration::from_millis(200)));

    let mut registered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(ev) = tokio::time::timeout_at(deadline, phone.next_event()).await {
        if let PhoneEvent::Registration {
            event: RegistrationEvent::Registered { .. },
            ..
        } = ev.unwrap()
        {
            registered += 1;
        }
    }
    assert_eq!(registered, 1, "registered once, then kept alive");
    stop.store(true, Ordering::Relaxed);
    let handled = server.join().unwrap();
    // Two REGISTERs (challenge, answer) and the keep-alive OPTIONS (one per ~200 ms).
    assert!(
        handled >= 2 + 4,
        "keep-alive OPTIONS reached the registrar: {handled}"
    );

    // The registrar is gone: the next OPTIONS goes unanswered, and the phone registers again,
    // which fails and says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut outcome = None;
    while let Ok(ev) = tokio::time::timeout_at(deadline, phone.next_event()).await {
        if let PhoneEvent::Registration { event, .. } = ev.unwrap() {
            if !matches!(event, RegistrationEvent::Registered { .. }) {
                outcome = Some(event);
                break;
            }
        }
    }
    assert!(
        outcome.is_some(),
        "the phone noticed the silent registrar and tried again"
    );
}

/// A registrar refusing the TCP connection: the phone says Unreachable at once (RFC 3261
/// §17.1.4), not after timer F's 32 s of silence.
#[tokio::test]
async fn a_registrar_refusing_the_connection_is_unreachable_at_once() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registrar_addr = closed.local_addr().unwrap();
    drop(closed);
    let net = Transports::bind(
        Transport::Tcp,
        "127.0.0.1:0".parse().unwrap(),
        &TlsSettings::default(),
    )
    .await
    .unwrap();
    let local = net.local_addr();
    let registrar = format!("sip:{registrar_addr}");
    let (ua, reg) = alice(local, &registrar, Transport::Tcp, Timers::default());
    let mut phone = Phone::new(net, ua);
    let mut reg = Registration::new(reg);
    let started = Instant::now();
    reg.start(started);
    phone.add_registration(reg, registrar_addr);
    let ev = tokio::time::timeout(Duration::from_secs(5), phone.next_event())
        .await
        .expect("an event within 5 s, not at timer F")
        .unwrap();
    assert!(
        matches!(
            ev,
            PhoneEvent::Registration {
                event: RegistrationEvent::Unreachable,
                ..
            }
        ),
        "{ev:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
