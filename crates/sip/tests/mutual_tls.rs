//! Mutual TLS (a Direct Routing SBC and Microsoft's SIP proxies): with `mutual`, our
//! certificate goes out as a client's on connections we open, a listener asks for the peer's
//! and refuses one that does not chain to the trusted roots, and a peer without one (a
//! phone) still gets in. Certificates come from test CAs made here (rcgen).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::transport::{Incoming, TlsSettings, Transports};
use switchboard_sip::ua::Transport;

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pem: PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { cert, key, pem }
}

/// A certificate for `names` signed by `ca`: (certificate path, key path).
fn leaf(dir: &Path, ca: &Ca, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// The test CA, the proxy's certificate (Microsoft's name) and the SBC's.
fn pki(dir: &Path) -> (Ca, (PathBuf, PathBuf), (PathBuf, PathBuf)) {
    let test_ca = ca(dir, "test");
    let proxy = leaf(dir, &test_ca, "proxy", &["sip.pstnhub.microsoft.com"]);
    let sbc = leaf(dir, &test_ca, "sbc", &["sbc.test"]);
    (test_ca, proxy, sbc)
}

fn settings(ca: &Ca, cert: Option<&(PathBuf, PathBuf)>, mutual: bool) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.pem.clone()),
        cert_file: cert.map(|c| c.0.clone()),
        key_file: cert.map(|c| c.1.clone()),
        mutual,
    }
}

const OPTIONS: &str = "OPTIONS sip:sip.pstnhub.microsoft.com SIP/2.0\r\nVia: SIP/2.0/TLS sbc.test:5061;branch=z9hG4bKmtls1\r\nMax-Forwards: 70\r\nFrom: <sip:sbc.test>;tag=a\r\nTo: <sip:sip.pstnhub.microsoft.com>\r\nCall-ID: mtls-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// Whether `proxy` receives the OPTIONS `sbc` sends it within a few seconds.
async fn arrives(proxy: &mut Transports, sbc: &mut Transports) -> bool {
    let to = proxy.local_addr();
    let sent = sbc
        .send(
            to,
            Some("sip.pstnhub.microsoft.com"),
            Bytes::from_static(OPTIONS.as_bytes()),
        )
        .await;
    if sent.is_err() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, proxy.recv()).await {
            Ok(Some(Incoming::Message(m, _))) => return m.method().as_deref() == Some("OPTIONS"),
            Ok(Some(_)) => continue,
            _ => return false,
        }
    }
}

/// A TLS listener on 127.0.0.1 with `cert`, asking peers for theirs (mutual), trusting `ca`.
async fn mutual_listener(ca: &Ca, cert: &(PathBuf, PathBuf)) -> Transports {
    let bind = "127.0.0.1:0".parse().unwrap();
    Transports::bind(Transport::Tls, bind, &settings(ca, Some(cert), true))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_mutual_listener_takes_our_client_certificate_and_refuses_a_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let (test_ca, proxy_cert, sbc_cert) = pki(dir.path());
    let other_ca = ca(dir.path(), "other");
    let stranger_cert = leaf(dir.path(), &other_ca, "stranger", &["sbc.test"]);
    let bind = "127.0.0.1:0".parse().unwrap();

    let mut proxy = mutual_listener(&test_ca, &proxy_cert).await;

    // Who connects, with which certificate (and `mutual`), and whether they get through:
    // an SBC with a certificate of the trusted CA does; one of another CA is refused in the
    // handshake; a phone without a certificate still gets in (who may do what is decided
    // above, by address); without `mutual` no client certificate is shown, and a listener
    // that only asks for one lets the peer in.
    let cases = [
        ("an SBC of the trusted CA", Some(&sbc_cert), true, true),
        (
            "a certificate of another CA",
            Some(&stranger_cert),
            true,
            false,
        ),
        ("a phone without a certificate", None, false, true),
        ("an SBC without mutual", Some(&sbc_cert), false, true),
    ];
    for (who, cert, mutual, admitted) in cases {
        let mut peer = Transports::bind(Transport::Tls, bind, &settings(&test_ca, cert, mutual))
            .await
            .unwrap();
        assert_eq!(arrives(&mut proxy, &mut peer).await, admitted, "{who}");
    }
}

#[tokio::test]
async fn our_client_certificate_is_what_a_peer_requiring_one_sees() {
    // A listener that requires a client certificate (as Microsoft's proxy does) is rustls
    // here, built the way the Kamailio-based simulated proxy is configured: refuses peers
    // without one.
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (test_ca, proxy_cert, sbc_cert) = pki(dir.path());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(test_ca.cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    use rustls::pki_types::pem::PemObject as _;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&proxy_cert.0)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&proxy_cert.1).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let mut names = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            match acceptor.accept(tcp).await {
                Ok(s) => {
                    let (_, conn) = s.get_ref();
                    names.push(conn.peer_certificates().map(|c| c.len()).unwrap_or(0));
                }
                Err(_) => names.push(usize::MAX),
            }
        }
        names
    });
    let bind = "127.0.0.1:0".parse().unwrap();
    for mutual in [true, false] {
        let mut sbc = Transports::bind(
            Transport::Tls,
            bind,
            &settings(&test_ca, Some(&sbc_cert), mutual),
        )
        .await
        .unwrap();
        let _ = sbc
            .send(
                addr,
                Some("sip.pstnhub.microsoft.com"),
                Bytes::from_static(OPTIONS.as_bytes()),
            )
            .await;
    }
    let names = tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        names,
        vec![1, usize::MAX],
        "mutual: one certificate shown; without: refused"
    );
}

/// The message `proxy` receives next within a few seconds, with its source.
async fn next_message(proxy: &mut Transports) -> Option<std::net::SocketAddr> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, proxy.recv()).await {
            Ok(Some(Incoming::Message(_, from))) => return Some(from),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Who connects, their certificate (none: they show none), the names it proves and those
/// it does not.
type Case<'a> = (
    &'a str,
    Option<&'a (PathBuf, PathBuf)>,
    &'a [&'a str],
    &'a [&'a str],
);

#[tokio::test]
async fn each_connection_knows_who_its_handshake_proved_the_peer_to_be() {
    use switchboard_sip::transport::PeerIdentity;
    let dir = tempfile::tempdir().unwrap();
    let (test_ca, proxy_cert, _) = pki(dir.path());
    let bind = "127.0.0.1:0".parse().unwrap();
    let mut proxy = mutual_listener(&test_ca, &proxy_cert).await;
    let to = proxy.local_addr();
    // Who connects (their certificate's names), and the names it proves or not.
    let wildcard = leaf(dir.path(), &test_ca, "wild", &["*.pstnhub.microsoft.com"]);
    let other = leaf(
        dir.path(),
        &test_ca,
        "other",
        &["sip.pstnhub.impostor.example"],
    );
    let cases: [Case; 3] = [
        (
            "a wildcard of Microsoft's",
            Some(&wildcard),
            &["sip2.pstnhub.microsoft.com", "SIP.pstnhub.microsoft.com"],
            &["pstnhub.microsoft.com", "a.sip.pstnhub.microsoft.com"],
        ),
        (
            "another name of the same CA",
            Some(&other),
            &["sip.pstnhub.impostor.example"],
            &["sip.pstnhub.microsoft.com"],
        ),
        ("no certificate", None, &[], &["sip.pstnhub.microsoft.com"]),
    ];
    for (who, cert, proven, not) in cases {
        let mut peer = Transports::bind(
            Transport::Tls,
            bind,
            &settings(&test_ca, cert, cert.is_some()),
        )
        .await
        .unwrap();
        peer.send(
            to,
            Some("sip.pstnhub.microsoft.com"),
            Bytes::from_static(OPTIONS.as_bytes()),
        )
        .await
        .unwrap();
        let from = next_message(&mut proxy).await.expect(who);
        let id = proxy.peer_identity(&from);
        assert_eq!(id.is_some(), cert.is_some(), "{who}: {id:?}");
        for name in proven {
            assert!(
                id.as_ref().is_some_and(|i| i.is_for(name)),
                "{who} is {name}"
            );
        }
        for name in not {
            assert!(
                !id.as_ref().is_some_and(|i| i.is_for(name)),
                "{who} is not {name}"
            );
        }
        // The side that connected knows the name it verified.
        assert_eq!(
            peer.peer_identity(&to),
            Some(PeerIdentity::Server("sip.pstnhub.microsoft.com".into())),
            "{who}"
        );
    }
    // Over UDP nobody is proven.
    let udp = Transports::bind(Transport::Udp, bind, &TlsSettings::default())
        .await
        .unwrap();
    assert_eq!(udp.peer_identity(&to), None);
}

#[test]
fn a_certificate_file_is_checked_for_a_name_as_a_client_would() {
    use switchboard_sip::transport::certificate_file_is_for;
    let dir = tempfile::tempdir().unwrap();
    let test_ca = ca(dir.path(), "test");
    let (wild, _) = leaf(
        dir.path(),
        &test_ca,
        "wild",
        &["*.sbc.example", "sbc.example"],
    );
    let (one, _) = leaf(dir.path(), &test_ca, "one", &["contoso.sbc.example"]);
    for (file, name, is) in [
        (&wild, "contoso.sbc.example", true),
        (&wild, "CONTOSO.sbc.example", true),
        (&wild, "sbc.example", true),
        (&wild, "a.contoso.sbc.example", false),
        (&one, "contoso.sbc.example", true),
        (&one, "fabrikam.sbc.example", false),
        (&one, "192.0.2.1", false),
    ] {
        assert_eq!(
            certificate_file_is_for(file, name).unwrap(),
            is,
            "{} for {name}",
            file.display()
        );
    }
    // Only the first certificate counts: the chain's CA after it names nothing we are.
    let chain = dir.path().join("chain.pem");
    let mut both = std::fs::read_to_string(&one).unwrap();
    both.push_str(&std::fs::read_to_string(&wild).unwrap());
    std::fs::write(&chain, both).unwrap();
    assert!(!certificate_file_is_for(&chain, "fabrikam.sbc.example").unwrap());
    assert!(certificate_file_is_for(&chain, "contoso.sbc.example").unwrap());
    let missing = certificate_file_is_for(&dir.path().join("none.pem"), "sbc.example");
    assert!(missing.is_err(), "{missing:?}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let e = certificate_file_is_for(&empty, "sbc.example").unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}
