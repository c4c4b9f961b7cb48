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
    let ua = UserAgent::new(UaConfig {
        user: "alice".into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: None,
        contact_host: local.to_string(),
        transport: Transport::Udp,
        outbound_proxy: None,
        timers,
        user_agent: "keepalive-test".into(),
    });
    let mut phone = Phone::new(net, ua);
    let mut reg = Registration::new(RegistrationConfig {
        registrar: format!("sip:{registrar_addr}"),
        aor: "sip:alice@127.0.0.1".into(),
        contact: format!("sip:alice@{local}"),
        via_sent_by: local.to_string(),
        via_transport: "UDP",
        reliability: Reliability::Unreliable,
        credentials: Credentials {
            username: "alice".into(),
            password: "wonderland".into(),
        },
        expires: 600,
        timers,
        user_agent: "keepalive-test".into(),
    });
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
