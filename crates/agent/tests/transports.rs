//! Calls over TCP and TLS (rustls): agent to agent with a certificate from a test CA, a TLS
//! peer we must not trust, and registration plus a call over TCP through the real Kamailio.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA and a server certificate for localhost / 127.0.0.1 signed by it.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Switchboard test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.clone().self_signed(&ca_key).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        // Another CA, which did not sign the server's certificate.
        let other_key = rcgen::KeyPair::generate().unwrap();
        let other = ca_params.self_signed(&other_key).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        Self { dir }
    }
    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

/// An answering agent (bound to port 0 in `args`), once it listens: (the agent, its port).
fn answerer(args: &[&str]) -> (std::process::Child, u16) {
    let mut child = agent(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port = listening_port(&mut child);
    (child, port)
}

#[test]
fn agent_to_agent_over_tcp() {
    let (mut bob, port) = answerer(&[
        "answer",
        "--bind",
        "127.0.0.1:0",
        "--transport",
        "tcp",
        "--wait",
        "15",
    ]);
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:bob@127.0.0.1:{port};transport=tcp"),
            "--dtmf",
            "5",
            "--hold-after",
            "0.5",
            "--hangup-after",
            "3.5",
        ],
        &[],
    );
    assert!(out.status.success());
    let n = names(&ev);
    assert!(n.contains(&"established".into()), "{n:?}");
    assert_eq!(n.iter().filter(|e| *e == "media").count(), 2, "{n:?}");
    let bob_out = wait_output(&mut bob, Duration::from_secs(10), &[]);
    let bev = events(&bob_out.stdout);
    assert!(
        bev.iter()
            .any(|e| e["event"] == "dtmf" && e["digit"] == "5"),
        "{bev:?}"
    );
    assert_eq!(
        bev.iter().find(|e| e["event"] == "ended").unwrap()["reason"],
        "remotebye"
    );
}

#[test]
fn agent_to_agent_over_tls_with_a_trusted_ca() {
    let pki = Pki::new();
    let (mut bob, port) = answerer(&[
        "answer",
        "--bind",
        "127.0.0.1:0",
        "--transport",
        "tls",
        "--tls-cert",
        &pki.path("cert.pem"),
        "--tls-key",
        &pki.path("key.pem"),
        "--wait",
        "15",
    ]);
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sips:bob@localhost:{port}"),
            "--tls-ca",
            &pki.path("ca.pem"),
            "--hangup-after",
            "1",
        ],
        &[],
    );
    assert!(out.status.success());
    assert!(names(&ev).contains(&"established".into()));
    let bob_out = wait_output(&mut bob, Duration::from_secs(10), &[]);
    assert!(bob_out.status.success());
}

#[test]
fn a_tls_peer_signed_by_another_ca_is_refused_at_once() {
    let pki = Pki::new();
    let (mut bob, port) = answerer(&[
        "answer",
        "--bind",
        "127.0.0.1:0",
        "--transport",
        "tls",
        "--tls-cert",
        &pki.path("cert.pem"),
        "--tls-key",
        &pki.path("key.pem"),
        "--wait",
        "4",
    ]);
    let start = std::time::Instant::now();
    let (out, _) = run_agent(
        &[
            "call",
            &format!("sips:bob@localhost:{port}"),
            "--tls-ca",
            &pki.path("other-ca.pem"),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no waiting for timer B"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS with 127.0.0.1") && err.contains("invalid peer certificate"),
        "{err}"
    );
    let _ = wait_output(&mut bob, Duration::from_secs(8), &[]);
}

#[test]
fn register_and_call_over_tcp_through_kamailio() {
    let k = start_kamailio("proxy.cfg");
    let bob = Baresip::start_with_account(
        "bob",
        &format!(
            "<sip:bob@127.0.0.1:{};transport=udp>;auth_pass=builder;regint=60;answermode=auto",
            k.port
        ),
        440,
    );
    bob.wait_for("200 OK", Duration::from_secs(10));
    let (out, ev) = run_agent(
        &[
            "call",
            &format!("sip:bob@127.0.0.1:{}", k.port),
            "--server",
            &format!("sip:127.0.0.1:{};transport=tcp", k.port),
            "--user",
            "alice",
            "--password",
            "wonderland",
            "--hangup-after",
            "1.5",
        ],
        &[&bob],
    );
    assert!(out.status.success());
    let n = names(&ev);
    assert_eq!(n.first().map(String::as_str), Some("registered"));
    assert!(n.contains(&"established".into()), "{n:?}");
    bob.wait_for("terminated", Duration::from_secs(3));
}
