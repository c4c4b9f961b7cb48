//! #13 item 20: bounds on SIP stream connections — an accepted connection that stays silent or
//! trickles a message is closed, connections past the cap are turned away and their places
//! come back, and a connection we opened ourselves is not closed for being quiet.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use switchboard_sip::transport::{Incoming, StreamLimits, TlsSettings, Transports};
use switchboard_sip::ua::Transport;

const OPTIONS: &str = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

async fn listener(limits: StreamLimits) -> Transports {
    Transports::bind_with(
        Transport::Tcp,
        "127.0.0.1:0".parse().unwrap(),
        &TlsSettings::default(),
        limits,
    )
    .await
    .unwrap()
}

/// Waits (on a blocking thread) until the server closes `s`: read returns 0 or an error.
async fn closed_by_server(mut s: TcpStream) -> bool {
    tokio::task::spawn_blocking(move || {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap()
}

/// Feeds what the transports hear until `want` matches, handling closes as the owner does.
async fn until(t: &mut Transports, mut want: impl FnMut(&Incoming) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let i = t.recv().await.unwrap();
            if want(&i) {
                return;
            }
        }
    })
    .await
    .expect("the transports heard what the test waited for");
}

#[tokio::test]
async fn a_trickled_message_and_an_idle_connection_are_closed() {
    let mut t = listener(StreamLimits {
        idle: Duration::from_secs(1),
        message: Duration::from_millis(500),
        ..StreamLimits::default()
    })
    .await;
    let at = t.local_addr();
    // Slowloris: half a header, then nothing.
    let mut slow = TcpStream::connect(at).unwrap();
    slow.write_all(&OPTIONS.as_bytes()[..40]).unwrap();
    let slow_addr = slow.local_addr().unwrap();
    // Silent: connects and says nothing.
    let silent = TcpStream::connect(at).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    // A live one keeps talking with keep-alives and is served.
    let mut live = TcpStream::connect(at).unwrap();
    let live_addr = live.local_addr().unwrap();

    let slow_closed = tokio::spawn(closed_by_server(slow));
    let silent_closed = tokio::spawn(closed_by_server(silent));
    let mut closed = Vec::new();
    let pinger = tokio::task::spawn_blocking(move || {
        for _ in 0..6 {
            live.write_all(b"\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(400));
        }
        live.write_all(OPTIONS.as_bytes()).unwrap();
        live
    });
    until(&mut t, |i| {
        if let Incoming::Closed(a) = i {
            closed.push(*a);
        }
        matches!(i, Incoming::Message(_, a) if *a == live_addr)
    })
    .await;
    let _live = pinger.await.unwrap();
    assert!(closed.contains(&slow_addr), "{closed:?}");
    assert!(closed.contains(&silent_addr), "{closed:?}");
    assert!(!closed.contains(&live_addr), "{closed:?}");
    assert!(slow_closed.await.unwrap());
    assert!(silent_closed.await.unwrap());
}

#[tokio::test]
async fn connections_past_the_cap_are_turned_away_and_places_come_back() {
    let mut t = listener(StreamLimits {
        max_accepted: 2,
        ..StreamLimits::default()
    })
    .await;
    let at = t.local_addr();
    let mut a = TcpStream::connect(at).unwrap();
    let mut b = TcpStream::connect(at).unwrap();
    // Both are served.
    for s in [&mut a, &mut b] {
        let from = s.local_addr().unwrap();
        s.write_all(OPTIONS.as_bytes()).unwrap();
        until(
            &mut t,
            |i| matches!(i, Incoming::Message(_, x) if *x == from),
        )
        .await;
    }
    // The third is closed at once.
    let c = TcpStream::connect(at).unwrap();
    assert!(closed_by_server(c).await);
    // One leaves; its place is free again.
    let a_addr = a.local_addr().unwrap();
    drop(a);
    until(&mut t, |i| matches!(i, Incoming::Closed(x) if *x == a_addr)).await;
    let mut d = TcpStream::connect(at).unwrap();
    let d_addr = d.local_addr().unwrap();
    d.write_all(OPTIONS.as_bytes()).unwrap();
    until(
        &mut t,
        |i| matches!(i, Incoming::Message(_, x) if *x == d_addr),
    )
    .await;
    drop(b);
}

#[tokio::test]
async fn a_connection_we_opened_is_not_closed_for_being_quiet() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr: SocketAddr = server.local_addr().unwrap();
    let mut t = listener(StreamLimits {
        idle: Duration::from_millis(300),
        ..StreamLimits::default()
    })
    .await;
    t.send(server_addr, None, OPTIONS.as_bytes().to_vec().into())
        .await
        .unwrap();
    let still_open = tokio::task::spawn_blocking(move || {
        let (mut s, _) = server.accept().unwrap();
        let mut first = vec![0u8; OPTIONS.len()];
        s.read_exact(&mut first).unwrap();
        // Well past the idle limit of accepted connections, the connection is still ours to
        // use: nothing arrives, and it is not closed.
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut b = [0u8; 16];
        let quiet = matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
        // And it carries a request to us.
        s.write_all(OPTIONS.as_bytes()).unwrap();
        (quiet, s)
    });
    until(
        &mut t,
        |i| matches!(i, Incoming::Message(_, a) if *a == server_addr),
    )
    .await;
    let (quiet, _s) = still_open.await.unwrap();
    assert!(quiet);
}
