//! Interop: registration against a real Kamailio (Debian `kamailio`, 5.6) with digest
//! authentication, configured by `tests/peers/kamailio/registrar.cfg`. The test starts Kamailio
//! in the foreground on 127.0.0.1 on a free UDP port, with its runtime dir and pid file in a
//! temporary directory, and stops it at the end (also when an assertion fails).

use std::net::UdpSocket as StdUdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_sip::auth::Credentials;
use switchboard_sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use switchboard_sip::transaction::{Reliability, Timers};
use switchboard_sip::udp::UdpRegistration;

struct Kamailio {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: Kamailio's main process then stops its worker processes;
        // killed outright it would leave them behind.
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start_kamailio() -> Kamailio {
    let cfg =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/kamailio/registrar.cfg");
    // A free port: bind 0, read it, release it for Kamailio.
    let port = StdUdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("no free UDP port on 127.0.0.1")
        .port();
    let dir = std::env::temp_dir().join(format!("sb-kamailio-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create Kamailio's runtime dir");
    let child = Command::new("kamailio")
        .arg("-DD")
        .arg("-E")
        .arg("-f")
        .arg(&cfg)
        .arg("-l")
        .arg(format!("udp:127.0.0.1:{port}"))
        .arg("-Y")
        .arg(&dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-w")
        .arg(&dir)
        .arg("-m")
        .arg("32")
        .arg("-M")
        .arg("8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "kamailio is not installed (Debian package `kamailio`; see tests/peers/install.sh)",
        );
    Kamailio {
        child,
        port,
        _dir: dir,
    }
}

async fn registration(port: u16, password: &str) -> UdpRegistration {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", port)).await.unwrap();
    let local = socket.local_addr().unwrap();
    let cfg = RegistrationConfig {
        registrar: format!("sip:127.0.0.1:{port}"),
        aor: "sip:alice@127.0.0.1".into(),
        contact: format!("sip:alice@{local};transport=udp"),
        via_sent_by: local.to_string(),
        via_transport: "UDP",
        reliability: Reliability::Unreliable,
        credentials: Credentials {
            username: "alice".into(),
            password: password.into(),
        },
        expires: 120,
        timers: Timers::default(),
        user_agent: "Switchboard-interop-test".into(),
    };
    UdpRegistration::new(socket, Registration::new(cfg))
}

async fn next(r: &mut UdpRegistration) -> RegistrationEvent {
    // Kamailio may still be starting: the REGISTER is retransmitted (timer E) until it answers.
    tokio::time::timeout(Duration::from_secs(40), r.next_event())
        .await
        .expect("no registration event within 40 s")
        .expect("socket error")
}

#[tokio::test]
async fn registers_is_refused_with_a_wrong_password_and_unregisters() {
    let k = start_kamailio();

    let mut good = registration(k.port, "wonderland").await;
    let contact = format!("sip:alice@{}", good.local_addr().unwrap());
    good.registration().start(Instant::now());
    match next(&mut good).await {
        RegistrationEvent::Registered { expires, bindings } => {
            assert!(expires > 0 && expires <= 120, "expires {expires}");
            assert!(
                bindings.iter().any(|b| b.contains(&contact)),
                "our contact {contact} is not among the bindings {bindings:?}"
            );
        }
        other => panic!("expected Registered, got {other:?}"),
    }
    assert!(good.registration().is_registered());

    let mut bad = registration(k.port, "not-the-password").await;
    bad.registration().start(Instant::now());
    match next(&mut bad).await {
        RegistrationEvent::Refused { status, reason } => {
            assert_eq!((status, reason.as_str()), (403, "Forbidden"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }

    good.registration().unregister(Instant::now());
    assert_eq!(next(&mut good).await, RegistrationEvent::Unregistered);
    assert!(!good.registration().is_registered());
}
