//! A standalone UDP registrar built on the `Registrar` building block, for load tests against
//! Kamailio (`bench/sip_register.py`) and for trying clients by hand:
//!
//! `cargo run --release -p switchboard-sip --example registrar -- 127.0.0.1:5060 [USERS] [PASSWORD]`
//!
//! Users are `user1` … `userUSERS` (default 1000), all with PASSWORD (default `secret`); MD5
//! digest with qop=auth, which is what SIPp's `[authentication]` speaks. OPTIONS gets 200,
//! other methods 405, bytes that are not SIP are dropped.

use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;

use switchboard_sip::auth::Algorithm;
use switchboard_sip::registrar::{Registrar, RegistrarConfig};
use switchboard_sip::registrar_udp::serve_udp;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:5060".into());
    let users: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let password = args.next().unwrap_or_else(|| "secret".into());
    let socket = UdpSocket::bind(&listen)?;
    eprintln!("registrar listening on udp:{}", socket.local_addr()?);
    let cfg = RegistrarConfig {
        realm: "switchboard.test".into(),
        min_expires: 10,
        max_bindings_per_aor: 100,
        ..RegistrarConfig::default()
    };
    let mut registrar = Registrar::new(cfg, rand::random(), Algorithm::Md5);
    let stop = AtomicBool::new(false);
    serve_udp(
        &socket,
        &mut registrar,
        |user| {
            let known = user
                .strip_prefix("user")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (1..=users).contains(&n));
            known.then(|| password.clone())
        },
        &stop,
    )?;
    Ok(())
}
