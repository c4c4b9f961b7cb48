//! #13 item 20: when the process runs out of file descriptors, the SIP listener pauses
//! between failed accepts (growing to 1 s) instead of spinning on the pending connection, and
//! serves it once descriptors are free again. Alone in its test binary: it lowers the
//! process's open-file limit.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use switchboard_sip::transport::{Incoming, TlsSettings, Transports};
use switchboard_sip::ua::Transport;

const OPTIONS: &str = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn open_descriptors() -> u64 {
    // read_dir holds one descriptor of its own while listing.
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1
}

#[tokio::test(flavor = "current_thread")]
async fn out_of_descriptors_the_listener_pauses_then_recovers() {
    let mut t = Transports::bind(
        Transport::Tcp,
        "127.0.0.1:0".parse().unwrap(),
        &TlsSettings::default(),
    )
    .await
    .unwrap();
    // The accept loop has not run yet (one thread, no await since it was spawned): the
    // client's connection waits in the backlog.
    let mut client = TcpStream::connect(t.local_addr()).unwrap();
    client.write_all(OPTIONS.as_bytes()).unwrap();
    let before = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open_descriptors()),
            maximum: before.maximum,
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = t.accept_failures();
    setrlimit(Resource::Nofile, before).unwrap();
    assert!(failures >= 1, "the limit did not bite");
    // 50 + 100 + 200 + 400 + 800 + 1000 ms: about 6 in 2 s; a spinning loop makes thousands.
    assert!(failures <= 12, "{failures} failed accepts in 2 s");
    let from = client.local_addr().unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Incoming::Message(_, a)) = t.recv().await {
                if a == from {
                    return;
                }
            }
        }
    })
    .await
    .expect("the waiting connection is served once descriptors are free");
}
