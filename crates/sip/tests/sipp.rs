//! The registrar building block against SIPp (Debian `sip-tester`): the register_auth scenario
//! (REGISTER → 401 → REGISTER with MD5 digest → 200) for many users, and garbage that must be
//! dropped without the server stopping.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchboard_sip::auth::Algorithm;
use switchboard_sip::registrar::{Registrar, RegistrarConfig};
use switchboard_sip::registrar_udp::serve_udp;

fn start_registrar() -> (u16, Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut r = Registrar::new(
            RegistrarConfig {
                realm: "switchboard.test".into(),
                ..RegistrarConfig::default()
            },
            [3u8; 32],
            Algorithm::Md5,
        );
        serve_udp(
            &socket,
            &mut r,
            |u| u.starts_with("user").then(|| "secret".to_owned()),
            &s,
        )
        .unwrap()
    });
    (port, stop, h)
}

#[test]
fn sipp_registers_fifty_users_with_digest() {
    let (port, stop, h) = start_registrar();
    // Garbage first: the server must drop it and carry on.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for b in [
        &b"\x00\x01garbage"[..],
        b"REGISTER\r\n\r\n",
        b"SIP/2.0 200 OK\r\n",
    ] {
        junk.send_to(b, ("127.0.0.1", port)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 1..=50 {
        csv.push_str(&format!(
            "user{i};[authentication username=user{i} password=secret]\n"
        ));
    }
    std::fs::write(&users, csv).unwrap();
    let scenario =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/sipp/register_auth.xml");
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(&users)
        .args(["-i", "127.0.0.1", "-m", "50", "-r", "50", "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error", "-trace_err"])
        .current_dir(dir.path())
        .output()
        .expect("sipp is not installed — run tests/peers/install.sh");
    stop.store(true, Ordering::Relaxed);
    let handled = h.join().unwrap();
    assert!(
        out.status.success(),
        "sipp failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(handled >= 100, "two REGISTERs per user: {handled}");
}
