//! Media bypass on a Teams leg, against a real full ICE agent: aioice (RFC 8445, Python) plays
//! the Teams client, which controls, checks and nominates; the router's relay is the ICE-lite
//! SBC. The agent reads the router's own SDP lines, so what Teams would read is what is tested.
//!
//! Checked: the checks are answered with our integrity (aioice validates it and the source
//! address), the nominated pair carries the router's RTP and the agent's keypad events both
//! ways, the SDP's default address gets nothing once a pair is nominated, and an ICE restart
//! (new credentials both sides, a new agent socket) moves the media to the new pair.
//!
//! Needs `tests/peers/ice/.venv` (tests/peers/install.sh); 127.0.0.1 only.

mod ice_agent;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ice_agent::Agent;
use serde_json::Value;
use switchboard_media::session::Codec;
use switchboard_router::relay::{plain, Relay, RelayEvent};
use switchboard_sip::sdp::{self, CodecSpec, IceAgreed, IceLite, LocalMedia};

/// Our SDP for the leg, as the edge builds it for a Teams leg with media bypass.
fn our_sdp(port: u16, ice: &IceLite) -> String {
    let mut local = LocalMedia::new("127.0.0.1".parse().unwrap(), port);
    local.codecs = vec![CodecSpec::pcmu()];
    local.ice = Some(ice.clone());
    String::from_utf8(sdp::offer(&local, "1", 1).to_bytes().to_vec()).unwrap()
}

fn agreed(ice: &IceLite, remote: &Value) -> IceAgreed {
    IceAgreed {
        local_ufrag: ice.ufrag.clone(),
        local_pwd: ice.pwd.clone(),
        remote_ufrag: remote["ufrag"].as_str().unwrap().to_owned(),
        remote_pwd: remote["pwd"].as_str().unwrap().to_owned(),
    }
}

/// Packets waiting on `s` now.
fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while s.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

fn digit(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<RelayEvent>,
    until: Instant,
) -> Option<char> {
    while Instant::now() < until {
        match events.try_recv() {
            Ok(RelayEvent::Dtmf { digit, .. }) => return Some(digit),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

#[test]
fn a_full_ice_agent_checks_nominates_and_restarts_against_the_relay() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let relay = Relay::start(tx).unwrap();
    let leg_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = leg_socket.local_addr().unwrap().port();
    // The SDP's default address (c=/m=): where media goes until a pair is nominated.
    let default = UdpSocket::bind("127.0.0.1:0").unwrap();
    default.set_nonblocking(true).unwrap();
    let default_addr: SocketAddr = default.local_addr().unwrap();

    let ice = IceLite::generate();
    let mut agent = Agent::start(&["--listen", "1.5"]);
    agent.offer(&our_sdp(port, &ice));
    let theirs = agent.next("ufrag");
    assert_eq!(theirs["lite"], true, "the agent read a=ice-lite");
    let mut media = plain(Codec::Pcmu, default_addr);
    media.ice = Some(Box::new(agreed(&ice, &theirs)));
    relay.open(1, leg_socket, &media);

    let connected = agent.next("connected");
    assert_eq!(connected["connected"], true);
    // The relay's own frames went to the default address until then; none after.
    std::thread::sleep(Duration::from_millis(200));
    let before = drain(&default);
    // The agent sends nothing yet: the relay's RTP reaches it by the nomination alone (no
    // latching onto a source). 1.5 s of 20 ms frames is 75; the machine may be busy.
    let heard = agent.next("rtp")["rtp"].as_u64().unwrap();
    assert!(
        heard >= 40,
        "the agent got {heard} RTP packets over the pair"
    );
    assert_eq!(
        drain(&default),
        0,
        "nothing to the default address after the nomination ({before} before it)"
    );
    agent.next("keyed");
    assert_eq!(
        digit(&mut events, Instant::now() + Duration::from_secs(5)),
        Some('5'),
        "the agent's keypad event reached the relay over the nominated pair"
    );

    // An ICE restart: Teams re-offers with new credentials; the lite side answers with new
    // ones too (the UA does, tests in switchboard-sip), and the relay takes them.
    let ice2 = IceLite::generate();
    assert_ne!(ice2, ice);
    agent.offer(&our_sdp(port, &ice2));
    let theirs2 = agent.next("ufrag");
    assert_ne!(
        theirs2["local"], theirs["local"],
        "a new socket on the agent's side"
    );
    let mut media2 = plain(Codec::Pcmu, default_addr);
    media2.ice = Some(Box::new(agreed(&ice2, &theirs2)));
    relay.update(1, &media2);
    agent.next("connected");
    let heard2 = agent.next("rtp")["rtp"].as_u64().unwrap();
    assert!(
        heard2 >= 40,
        "the agent got {heard2} RTP packets over the new pair"
    );
    assert_eq!(drain(&default), 0, "still nothing to the default address");
    agent.next("keyed");
    assert_eq!(
        digit(&mut events, Instant::now() + Duration::from_secs(5)),
        Some('6'),
        "the keypad event of the new pair reached the relay"
    );
    relay.close(1);
}
