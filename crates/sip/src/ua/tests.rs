//! Deterministic tests: user agents wired through an in-memory network with a fake clock,
//! loss on demand, and a ladder printed when a test fails.
use super::refer::{escape_header_value, unescape};
use super::session::{without_tag, UDP_FIT};
use super::*;

struct Net {
    uas: Vec<(SocketAddr, UserAgent)>,
    now: Instant,
    /// (from, to, data) in flight.
    ladder: Vec<String>,
    /// Drop the next message whose first line starts with this.
    drop_next: Vec<String>,
    events: Vec<(usize, UaEvent)>,
    /// Every message delivered.
    wire: Vec<Wired>,
}

/// A message delivered: sender, receiver, transport and text.
type Wired = (SocketAddr, SocketAddr, Transport, String);

fn cfg(user: &str, port: u16) -> UaConfig {
    UaConfig {
        user: user.into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: None,
        contact_host: format!("127.0.0.1:{port}"),
        transport: Transport::Udp,
        outbound_proxy: None,
        timers: Timers::default(),
        user_agent: "test".into(),
    }
}

fn media(port: u16) -> LocalMedia {
    LocalMedia::new("127.0.0.1".parse().unwrap(), port)
}

impl Net {
    fn new(users: &[(&str, u16)]) -> Self {
        Self {
            uas: users
                .iter()
                .map(|(u, p)| {
                    (
                        SocketAddr::from(([127, 0, 0, 1], *p)),
                        UserAgent::new(cfg(u, *p)),
                    )
                })
                .collect(),
            now: Instant::now(),
            ladder: Vec::new(),
            drop_next: Vec::new(),
            events: Vec::new(),
            wire: Vec::new(),
        }
    }

    fn ua(&mut self, i: usize) -> &mut UserAgent {
        &mut self.uas[i].1
    }

    fn uri(&self, i: usize) -> String {
        format!("sip:u{}@{}", i, self.uas[i].0)
    }

    /// Delivers messages until the network is quiet.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.uas.len() {
                while let Some(t) = self.uas[i].1.poll_transmit() {
                    moved = true;
                    let from = self.uas[i].0;
                    let Destination::Addr(to) = t.to else {
                        panic!("unresolved destination {:?}", t.to)
                    };
                    let first = String::from_utf8_lossy(&t.data)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    if let Some(pos) = self.drop_next.iter().position(|d| first.starts_with(d)) {
                        self.drop_next.remove(pos);
                        self.ladder.push(format!("{from} -x {to}: {first} (lost)"));
                        continue;
                    }
                    match t.transport {
                        Transport::Udp => self.ladder.push(format!("{from} -> {to}: {first}")),
                        tr => self
                            .ladder
                            .push(format!("{from} -> {to}: {first} over {}", tr.via_name())),
                    }
                    let text = String::from_utf8_lossy(&t.data).into_owned();
                    self.wire.push((from, to, t.transport, text));
                    let msg = Message::parse(&t.data).unwrap_or_else(|e| {
                        panic!(
                            "we sent something unparsable ({e}):\n{}",
                            String::from_utf8_lossy(&t.data)
                        )
                    });
                    if let Some(j) = self.uas.iter().position(|(a, _)| *a == to) {
                        let now = self.now;
                        self.uas[j]
                            .1
                            .handle_message_on(&msg, from, t.transport, now);
                    }
                }
                while let Some(e) = self.uas[i].1.poll_event() {
                    self.ladder.push(format!("[{i}] {e:?}"));
                    self.events.push((i, e));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never went quiet:\n{}", self.ladder.join("\n"));
    }

    /// Advances the clock to the next timer of any UA and runs it.
    fn tick(&mut self) -> bool {
        let next = self.uas.iter().filter_map(|(_, u)| u.poll_timeout()).min();
        match next {
            Some(t) => {
                self.now = self.now.max(t);
                let now = self.now;
                for (_, u) in &mut self.uas {
                    u.handle_timeout(now);
                }
                self.run();
                true
            }
            None => false,
        }
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.uas.iter().filter_map(|(_, u)| u.poll_timeout()).min() {
            if t > until {
                break;
            }
            self.tick();
        }
        self.now = until;
    }

    fn take(&mut self, who: usize) -> Vec<UaEvent> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|(i, _)| *i == who);
        self.events = rest;
        mine.into_iter().map(|(_, e)| e).collect()
    }

    fn ladder(&self) -> String {
        self.ladder.join("\n")
    }

    fn incoming(&mut self, who: usize) -> CallId {
        let evs = self.take(who);
        evs.iter()
            .find_map(|e| match e {
                UaEvent::IncomingCall { call, .. } => Some(*call),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no incoming call at {who}: {evs:?}\n{}", self.ladder()))
    }

    /// The first message delivered that `f` picks.
    fn sent(&self, f: impl Fn(&Wired) -> bool) -> Wired {
        let found = self.wire.iter().find(|w| f(w)).cloned();
        found.unwrap_or_else(|| panic!("not sent:\n{}", self.ladder()))
    }

    /// `callee` answers the call that reached it; `caller` sees it established.
    fn answered(&mut self, callee: usize, caller: usize) -> CallId {
        let call = self.incoming(callee);
        let now = self.now;
        self.ua(callee)
            .answer(call, media(40000 + callee as u16 * 2), now)
            .unwrap();
        self.run();
        assert!(
            established(&self.take(caller)).is_some(),
            "{}",
            self.ladder()
        );
        call
    }

    fn call(&mut self, from: usize, to: usize) -> (CallId, CallId) {
        let target = self.uri(to);
        let now = self.now;
        let a = self
            .ua(from)
            .invite(&target, media(40000 + from as u16 * 2), vec![], now)
            .unwrap();
        self.run();
        let b = self.incoming(to);
        self.ua(to).ring(b, now);
        self.ua(to)
            .answer(b, media(40000 + to as u16 * 2), now)
            .unwrap();
        self.run();
        (a, b)
    }
}

fn established(evs: &[UaEvent]) -> Option<&Negotiated> {
    evs.iter().find_map(|e| match e {
        UaEvent::Established { media, .. } => Some(media),
        _ => None,
    })
}

fn ended(evs: &[UaEvent]) -> Option<&EndReason> {
    evs.iter().find_map(|e| match e {
        UaEvent::Ended { reason, .. } => Some(reason),
        _ => None,
    })
}

/// The edge's overload shedding asks whether a request is one a transaction of ours already
/// handles (§17.2.3: branch and method): the INVITE that made a call is, until its transaction
/// ends; an INVITE with another branch, or an ACK, is not.
#[test]
fn a_request_being_handled_is_told_from_a_new_one() {
    let mut net = Net::new(&[("alice", 5060), ("bob", 5062)]);
    let target = net.uri(1);
    let now = net.now;
    net.ua(0)
        .invite(&target, media(40000), vec![], now)
        .unwrap();
    net.run();
    let call = net.incoming(1);
    let (_, _, _, text) = net.sent(|w| w.3.starts_with("INVITE "));
    let invite = Message::parse(text.as_bytes()).unwrap();
    assert!(net.ua(1).is_retransmission(&invite));
    assert!(!net.ua(0).is_retransmission(&invite), "not the caller's");
    let other_branch = Message::parse(
        text.replacen(";branch=z9hG4bK", ";branch=z9hG4bKother", 1)
            .as_bytes(),
    )
    .unwrap();
    assert_ne!(other_branch.top_via_branch(), invite.top_via_branch());
    assert!(!net.ua(1).is_retransmission(&other_branch));
    let (cseq, _) = invite.cseq().unwrap();
    let ack = Message::parse(
        text.replacen("INVITE ", "ACK ", 1)
            .replacen(
                &format!("CSeq: {cseq} INVITE"),
                &format!("CSeq: {cseq} ACK"),
                1,
            )
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(ack.method().as_deref(), Some("ACK"));
    assert!(!net.ua(1).is_retransmission(&ack));
    // Refused and its transaction over (timer H and I past): a new request again.
    let now = net.now;
    net.ua(1).reject(call, 486, now);
    net.run();
    net.advance(Duration::from_secs(40));
    assert!(!net.ua(1).is_retransmission(&invite), "{}", net.ladder());
}

#[test]
fn call_answer_and_bye() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, b) = net.call(0, 1);
    let ea = net.take(0);
    let eb = net.take(1);
    assert!(
        ea.iter()
            .any(|e| matches!(e, UaEvent::Progress { status: 180, .. })),
        "{ea:?}"
    );
    let ma = established(&ea)
        .unwrap_or_else(|| panic!("{}", net.ladder()))
        .clone();
    let mb = established(&eb)
        .unwrap_or_else(|| panic!("{}", net.ladder()))
        .clone();
    assert_eq!(ma.codec.encoding, "opus");
    assert_eq!(ma.remote, Some("127.0.0.1:40002".parse().unwrap()));
    assert_eq!(mb.remote, Some("127.0.0.1:40000".parse().unwrap()));
    assert_eq!(ma.telephone_event, Some(101));
    let now = net.now;
    net.ua(1).hangup(b, now);
    net.run();
    assert_eq!(ended(&net.take(0)), Some(&EndReason::RemoteBye));
    assert_eq!(ended(&net.take(1)), Some(&EndReason::Local));
    assert!(net.ua(0).calls().next().is_none());
    let _ = a;
    // Transactions drain with their timers and leave nothing behind.
    while net.tick() {}
    assert!(net.ua(0).client.is_empty() && net.ua(0).server.is_empty());
    assert!(net.ua(1).client.is_empty() && net.ua(1).server.is_empty());
}

#[test]
fn an_invites_x_headers_reach_the_application_within_bounds() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let target = net.uri(1);
    let now = net.now;
    let mut extra = vec![
        "X-Switchboard-Queue: Billing".to_owned(),
        "Subject: not an X- header".to_owned(),
        format!("X-Too-Long: {}", "a".repeat(MAX_X_HEADER_VALUE + 1)),
        "x-switchboard-call: 42".to_owned(),
    ];
    extra.extend((0..MAX_X_HEADERS).map(|i| format!("X-Filler-{i}: {i}")));
    net.ua(0).invite(&target, media(40000), extra, now).unwrap();
    net.run();
    let evs = net.take(1);
    let x = evs
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { x_headers, .. } => Some(x_headers.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{evs:?}\n{}", net.ladder()));
    assert_eq!(x.len(), MAX_X_HEADERS, "{x:?}");
    assert_eq!(
        x[0],
        ("X-Switchboard-Queue".to_owned(), "Billing".to_owned())
    );
    // Names as sent (any case); the over-long value left out, not cut; no other headers.
    assert_eq!(x[1], ("x-switchboard-call".to_owned(), "42".to_owned()));
    assert!(x
        .iter()
        .all(|(n, _)| n.to_ascii_lowercase().starts_with("x-")));
    assert!(!x.iter().any(|(n, _)| n == "X-Too-Long"), "{x:?}");
}

#[test]
fn an_invite_over_udp_is_trimmed_to_1300_bytes_and_over_tcp_is_not() {
    // Headers a B2BUA adds (caller, choices, …): about 500 bytes.
    let extra: Vec<String> = (0..5)
        .map(|i| format!("X-Switchboard-Note-{i}: {}", "n".repeat(80)))
        .collect();
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
        net.uas[0].1 = UserAgent::new(UaConfig {
            transport,
            ..cfg("alice", 5061)
        });
        let target = net.uri(1);
        let now = net.now;
        net.ua(0)
            .invite(&target, media(40000), extra.clone(), now)
            .unwrap();
        net.run();
        let (_, _, _, invite) = net.sent(|w| w.3.starts_with("INVITE "));
        let b = net.incoming(1);
        net.ua(1).answer(b, media(40002), now).unwrap();
        net.run();
        let agreed = established(&net.take(0))
            .unwrap_or_else(|| panic!("{}", net.ladder()))
            .clone();
        // PCMU, which every peer takes, and telephone-event always stay.
        assert!(agreed.telephone_event.is_some(), "{transport:?}");
        assert!(invite.contains("telephone-event/8000"), "{invite}");
        assert!(invite.contains("PCMU/8000"), "{invite}");
        match transport {
            Transport::Udp => {
                assert!(invite.len() <= UDP_FIT, "{} bytes:\n{invite}", invite.len());
                assert!(
                    !invite.contains("PCMA/8000"),
                    "the least preferred went first"
                );
                assert!(!invite.contains("opus/48000"), "then the others but PCMU");
                assert_eq!(agreed.codec.encoding, "PCMU", "{transport:?}");
            }
            _ => {
                assert!(invite.len() > UDP_FIT, "{} bytes", invite.len());
                assert!(invite.contains("PCMA/8000") && invite.contains("opus/48000"));
                assert_eq!(agreed.codec.encoding, "opus", "{transport:?}");
            }
        }
    }
}

#[test]
fn cancel_before_answer() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let target = net.uri(1);
    let now = net.now;
    let a = net.ua(0).invite(&target, media(4000), vec![], now).unwrap();
    net.run();
    let b = net.incoming(1);
    net.ua(1).ring(b, now);
    net.run();
    net.ua(0).hangup(a, now);
    net.run();
    assert_eq!(
        ended(&net.take(1)),
        Some(&EndReason::Cancelled),
        "{}",
        net.ladder()
    );
    assert_eq!(
        ended(&net.take(0)),
        Some(&EndReason::Local),
        "{}",
        net.ladder()
    );
    assert!(net.ladder().contains("SIP/2.0 487 Request Terminated"));
    // The ACK for the 487 reached bob's transaction: nothing retransmits.
    let before = net.ladder.len();
    net.advance(Duration::from_secs(40));
    let late: Vec<_> = net.ladder[before..].to_vec();
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn rejected_call_reports_the_status() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let target = net.uri(1);
    let now = net.now;
    net.ua(0).invite(&target, media(4000), vec![], now).unwrap();
    net.run();
    let b = net.incoming(1);
    net.ua(1).reject(b, 486, now);
    net.run();
    assert_eq!(
        ended(&net.take(0)),
        Some(&EndReason::Rejected {
            status: 486,
            reason: "Busy Here".into()
        })
    );
}

#[test]
fn hold_resume_and_glare() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, b) = net.call(0, 1);
    net.take(0);
    net.take(1);
    let now = net.now;
    net.ua(0).hold(a, true, now).unwrap();
    net.run();
    let dir = |evs: &[UaEvent]| {
        evs.iter().find_map(|e| match e {
            UaEvent::MediaChanged { media, .. } => Some(media.direction),
            _ => None,
        })
    };
    assert_eq!(
        dir(&net.take(0)),
        Some(Direction::SendOnly),
        "{}",
        net.ladder()
    );
    assert_eq!(dir(&net.take(1)), Some(Direction::RecvOnly));
    net.ua(0).hold(a, false, now).unwrap();
    net.run();
    assert_eq!(dir(&net.take(0)), Some(Direction::SendRecv));
    assert_eq!(dir(&net.take(1)), Some(Direction::SendRecv));
    // Hold as Teams understands it: `inactive` offered and answered, nobody sends; then
    // resumed.
    net.ua(0).hold_as(a, Direction::Inactive, now).unwrap();
    net.run();
    assert_eq!(dir(&net.take(0)), Some(Direction::Inactive));
    assert_eq!(dir(&net.take(1)), Some(Direction::Inactive));
    net.ua(0).hold_as(a, Direction::SendRecv, now).unwrap();
    net.run();
    assert_eq!(dir(&net.take(0)), Some(Direction::SendRecv));
    assert_eq!(dir(&net.take(1)), Some(Direction::SendRecv));

    // Both re-INVITE at once: each answers the other 491, both retry after random waits and
    // both changes land (§14.1).
    let before = net.ladder.len();
    net.ua(0).hold(a, true, now).unwrap();
    net.ua(1).hold(b, true, now).unwrap();
    net.run();
    let glare = net.ladder[before..].join("\n");
    assert_eq!(glare.matches("491 Request Pending").count(), 2, "{glare}");
    // Each 491 is ACKed by the re-INVITE's client transaction (§17.1.1.3).
    assert_eq!(glare.matches(": ACK ").count(), 2, "{glare}");
    net.advance(Duration::from_secs(10));
    let ea = net.take(0);
    let eb = net.take(1);
    assert!(
        ea.iter()
            .filter(|e| matches!(e, UaEvent::MediaChanged { .. }))
            .count()
            >= 1,
        "{}",
        net.ladder()
    );
    assert!(
        eb.iter()
            .filter(|e| matches!(e, UaEvent::MediaChanged { .. }))
            .count()
            >= 1
    );
    // Both asked for hold: whoever went last, both ends now agree nobody sends to the other
    // side's hold… and the call is still up.
    assert_eq!(ended(&ea), None);
    assert!(net.ua(0).media(a).is_some() && net.ua(1).media(b).is_some());
}

/// §14.1 allows one INVITE transaction at a time: a hold asked for while our session refresh,
/// or our own re-INVITE (sent, or waiting for its retry after a 491), is under way waits for
/// it and then goes; of several waiting wishes the last wins.
#[test]
fn a_hold_asked_while_another_offer_is_under_way_waits_for_it() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, b) = net.call(0, 1);
    net.take(0);
    net.take(1);
    let now = net.now;
    // Runs the network after `ask`, checks that only one INVITE of Alice's was ever open (each
    // got its final response from Bob before the next went), and returns how many Alice sent
    // and the direction each side agreed last.
    let exchange = |net: &mut Net, ask: &dyn Fn(&mut UserAgent)| {
        let before = net.ladder.len();
        ask(net.ua(0));
        net.run();
        let (mut open, mut invites) = (false, 0);
        for l in &net.ladder[before..] {
            if l.starts_with("127.0.0.1:5061 -> 127.0.0.1:5062: INVITE sip:") {
                assert!(!open, "a second INVITE while one is open\n{}", net.ladder());
                open = true;
                invites += 1;
            } else if l.starts_with("127.0.0.1:5062 -> 127.0.0.1:5061: SIP/2.0 200")
                || l.starts_with("127.0.0.1:5062 -> 127.0.0.1:5061: SIP/2.0 491")
            {
                open = false;
            }
        }
        let dir = |evs: Vec<UaEvent>| {
            evs.iter().rev().find_map(|e| match e {
                UaEvent::MediaChanged { media, .. } => Some(media.direction),
                _ => None,
            })
        };
        (invites, dir(net.take(0)), dir(net.take(1)))
    };

    // A refresh is on the wire when the agent presses Hold: the refresh, then the hold.
    let held = exchange(&mut net, &|ua| {
        ua.refresh_session(a, now);
        ua.hold(a, true, now).unwrap();
    });
    let want = (2, Some(Direction::SendOnly), Some(Direction::RecvOnly));
    assert_eq!(held, want, "{}", net.ladder());

    // Our resume is on the wire; a hold as Teams wants it and another hold are asked for
    // meanwhile: only the last wish goes after it.
    let last_wins = exchange(&mut net, &|ua| {
        ua.hold(a, false, now).unwrap();
        ua.hold_as(a, Direction::Inactive, now).unwrap();
        ua.hold_as(a, Direction::SendOnly, now).unwrap();
    });
    assert_eq!(last_wins, want, "{}", net.ladder());

    // Glare: both re-INVITE at once; while ours waits to be retried after the 491 we ask for
    // a hold as Teams wants it: the retry goes as it was, then the new wish.
    net.ua(0).hold(a, false, now).unwrap();
    net.ua(1).hold(b, true, now).unwrap();
    net.run();
    assert!(net.ua(0).calls[&a]
        .reinvite
        .as_ref()
        .is_some_and(|p| p.retry_at.is_some()));
    net.ua(0).hold_as(a, Direction::Inactive, now).unwrap();
    net.advance(Duration::from_secs(10));
    let offered: Vec<&str> = net
        .wire
        .iter()
        .filter(|(f, _, _, t)| f.port() == 5061 && t.starts_with("INVITE sip:"))
        .filter_map(|(_, _, _, t)| {
            t.lines()
                .find(|l| l.starts_with("a=s") || l.starts_with("a=i"))
        })
        .collect();
    assert_eq!(
        offered[offered.len().saturating_sub(3)..],
        ["a=sendrecv", "a=sendrecv", "a=inactive"],
        "the resume, its retry after the 491, then the hold\n{}",
        net.ladder()
    );
    assert_eq!(
        net.ua(0).media(a).map(|m| m.direction),
        Some(Direction::Inactive),
        "{}",
        net.ladder()
    );
    assert_eq!(ended(&net.take(0)), None);

    // Our refresh meets Bob's re-INVITE (lost on the way to us) and is refused 491; the
    // timer refreshes later, and the resume that waited for the refresh goes at once.
    net.ua(0).refresh_session(a, now);
    net.ua(0).hold(a, false, now).unwrap();
    net.ua(1).hold(b, true, now).unwrap();
    net.drop_next.push("INVITE sip:alice@".into());
    net.run();
    assert!(
        net.ua(0).calls[&a].queued_hold.is_none(),
        "the resume went after the 491\n{}",
        net.ladder()
    );
    // Bob's re-INVITE, retransmitted, and our resume sort themselves out (491s, retries).
    net.advance(Duration::from_secs(10));
    assert_eq!(ended(&net.take(0)), None, "{}", net.ladder());
    assert!(net.ua(0).calls[&a].reinvite.is_none(), "{}", net.ladder());
}

#[test]
fn an_ice_restart_is_answered_with_new_credentials() {
    use crate::sdp::IceLite;
    let creds = |u: &str, p: &str| IceLite {
        ufrag: u.into(),
        pwd: p.into(),
    };
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let now = net.now;
    let target = net.uri(1);
    let mut ma = media(40000);
    ma.ice = Some(creds("A1a1", "alicealicealicealicealice1"));
    let a = net.ua(0).invite(&target, ma, vec![], now).unwrap();
    net.run();
    let b = net.incoming(1);
    let mut mb = media(40002);
    mb.ice = Some(creds("B1b1", "bobbobbobbobbobbobbobbob1"));
    net.ua(1).answer(b, mb, now).unwrap();
    net.run();
    let agreed = established(&net.take(1)).unwrap().ice.clone().unwrap();
    assert_eq!(
        (agreed.local_ufrag.as_str(), agreed.remote_ufrag.as_str()),
        ("B1b1", "A1a1")
    );
    net.take(0);
    let changed = |evs: &[UaEvent]| {
        evs.iter().find_map(|e| match e {
            UaEvent::MediaChanged { media, .. } => media.ice.clone(),
            _ => None,
        })
    };
    // Alice (the full agent) restarts: new credentials in her re-offer.
    net.ua(0).calls.get_mut(&a).unwrap().local_media.ice =
        Some(creds("A2a2", "alice2alice2alice2alice2a"));
    net.ua(0).hold(a, true, now).unwrap();
    net.run();
    let bob = changed(&net.take(1)).unwrap_or_else(|| panic!("{}", net.ladder()));
    assert_eq!(bob.remote_ufrag, "A2a2");
    assert_ne!(
        bob.local_ufrag, "B1b1",
        "a restart is answered with new credentials"
    );
    assert_ne!(bob.local_pwd, "bobbobbobbobbobbobbobbob1");
    let alice = changed(&net.take(0)).unwrap();
    assert_eq!(alice.remote_ufrag, bob.local_ufrag);
    assert_eq!(alice.remote_pwd, bob.local_pwd);
    // A re-offer with the same credentials is no restart: bob keeps his.
    net.ua(0).hold(a, false, now).unwrap();
    net.run();
    let kept = changed(&net.take(1)).unwrap();
    assert_eq!(kept.local_ufrag, bob.local_ufrag);
    assert_eq!(kept.local_pwd, bob.local_pwd);
}

#[test]
fn dtmf_over_info() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, _) = net.call(0, 1);
    net.take(1);
    let now = net.now;
    for d in ['1', '#', '*', 'a'] {
        net.ua(0).send_dtmf_info(a, d, 160, now).unwrap();
    }
    net.run();
    let digits: String = net
        .take(1)
        .iter()
        .filter_map(|e| match e {
            UaEvent::Dtmf {
                digit,
                duration_ms: 160,
                ..
            } => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "1#*A");
    assert_eq!(
        net.ua(0).send_dtmf_info(a, 'x', 100, now),
        Err(UaError::BadDigit('x'))
    );
}

#[test]
fn blind_transfer_with_notify_progress() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062), ("carol", 5063)]);
    let (a, b) = net.call(0, 1);
    net.take(0);
    net.take(1);
    let carol = net.uri(2);
    let now = net.now;
    // Alice transfers Bob to Carol.
    net.ua(0).transfer(a, &carol, None, now).unwrap();
    net.run();
    let eb = net.take(1);
    let target = eb
        .iter()
        .find_map(|e| match e {
            UaEvent::TransferRequested { target, call, .. } if *call == b => Some(target.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{eb:?}\n{}", net.ladder()));
    assert_eq!(target, carol);
    // Bob calls Carol and reports progress to Alice.
    let bc = net.ua(1).invite(&target, media(5000), vec![], now).unwrap();
    net.run();
    let c = net.incoming(2);
    net.ua(2).answer(c, media(6000), now).unwrap();
    net.run();
    assert!(established(&net.take(1)).is_some());
    net.ua(1).notify_transfer(b, 200, "OK", now);
    net.run();
    let ea = net.take(0);
    let statuses: Vec<(u16, bool)> = ea
        .iter()
        .filter_map(|e| match e {
            UaEvent::TransferProgress { status, final_, .. } => Some((*status, *final_)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [(202, false), (100, false), (200, true)],
        "{}",
        net.ladder()
    );
    let _ = bc;
}

#[test]
fn a_refer_to_smuggling_header_lines_is_refused_and_nothing_reaches_the_wire() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062), ("carol", 5063)]);
    let (a, b) = net.call(0, 1);
    net.take(0);
    net.take(1);
    let now = net.now;
    // Alice (the peer here) asks Bob to call Carol with a Replaces that decodes to a line
    // break and a header of her choosing.
    let evil = format!(
        "{}?Replaces=x%40y%3Bto-tag%3D1%3Bfrom-tag%3D2%0D%0AX-Evil%3A%201",
        net.uri(2)
    );
    net.ua(0).transfer(a, &evil, None, now).unwrap();
    net.run();
    let eb = net.take(1);
    assert!(
        !eb.iter()
            .any(|e| matches!(e, UaEvent::TransferRequested { call, .. } if *call == b)),
        "{eb:?}"
    );
    let ea = net.take(0);
    assert!(
        ea.iter().any(|e| matches!(
            e,
            UaEvent::TransferProgress {
                status: 400,
                final_: true,
                ..
            }
        )),
        "{ea:?}\n{}",
        net.ladder()
    );
    assert!(!net.ladder().contains("\nX-Evil"), "{}", net.ladder());
    // Extra headers handed to invite() are checked too.
    let target = net.uri(2);
    let e = net
        .ua(1)
        .invite(
            &target,
            media(5000),
            vec!["Referred-By: <sip:a@b>\r\nX-Evil: 1".into()],
            now,
        )
        .unwrap_err();
    assert!(matches!(e, UaError::Wire(_)), "{e}");
    assert!(matches!(
        net.ua(1)
            .invite("sip:carol@127.0.0.1:5063\r\nX: 1", media(5000), vec![], now),
        Err(UaError::BadUri(_))
    ));
}

/// #13 item 17: what our own API is handed goes through the message builder too — a transfer
/// target, a NOTIFY reason, an OPTIONS target — and a value that would add a line is refused
/// with nothing sent.
#[test]
fn values_handed_to_the_api_cannot_add_lines() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, _) = net.call(0, 1);
    net.take(0);
    net.take(1);
    net.run();
    let now = net.now;
    let before = net.ladder.len();
    let e = net
        .ua(0)
        .transfer(a, "sip:carol@127.0.0.1\r\nX-Evil: 1", None, now)
        .unwrap_err();
    assert!(matches!(e, UaError::Wire(_)), "{e}");
    let e = net
        .ua(0)
        .options("sip:carol@127.0.0.1:5063\nX-Evil: 1", now)
        .unwrap_err();
    assert!(matches!(e, UaError::Wire(_) | UaError::BadUri(_)), "{e}");
    net.ua(0).notify_transfer(a, 200, "OK\r\nX-Evil: 1", now);
    net.run();
    assert_eq!(net.ladder.len(), before, "{}", net.ladder());
    assert!(!net.ladder().contains("X-Evil"), "{}", net.ladder());
    // The call is unharmed: a clean request still goes.
    net.ua(0).send_dtmf_info(a, '5', 160, now).unwrap();
    net.run();
    assert!(net.ladder().contains("INFO sip:"), "{}", net.ladder());
}

#[test]
fn attended_transfer_replaces_the_consultation_call() {
    // Alice talks to Bob, consults Carol, then connects Bob to Carol: Bob INVITEs Carol with
    // Replaces, Carol's consultation leg with Alice ends.
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062), ("carol", 5063)]);
    let (ab, b) = net.call(0, 1);
    let (ac, c_leg) = net.call(0, 2);
    net.take(0);
    net.take(1);
    net.take(2);
    let now = net.now;
    net.ua(0)
        .transfer(ab, "sip:ignored@127.0.0.1", Some(ac), now)
        .unwrap();
    net.run();
    let (target, replaces) = net
        .take(1)
        .into_iter()
        .find_map(|e| match e {
            UaEvent::TransferRequested {
                target, replaces, ..
            } => Some((target, replaces)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}", net.ladder()));
    let replaces = replaces.expect("Replaces in Refer-To");
    net.ua(1)
        .invite(
            &target,
            media(7000),
            vec![format!("Replaces: {replaces}")],
            now,
        )
        .unwrap();
    net.run();
    let ec = net.take(2);
    let (newc, rep) = ec
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { call, replaces, .. } => Some((*call, *replaces)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{ec:?}\n{}", net.ladder()));
    assert_eq!(rep, Some(c_leg));
    net.ua(2).answer(newc, media(8000), now).unwrap();
    net.run();
    let ec = net.take(2);
    assert!(
        ec.iter().any(
            |e| matches!(e, UaEvent::Ended { call, reason: EndReason::Replaced } if *call == c_leg)
        ),
        "{ec:?}"
    );
    // Alice's consultation leg got the BYE.
    assert!(net.take(0).iter().any(
        |e| matches!(e, UaEvent::Ended { call, reason: EndReason::RemoteBye } if *call == ac)
    ));
    let _ = b;
}

#[test]
fn lost_invite_and_lost_ack_are_recovered_by_retransmission() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    net.drop_next.push("INVITE".into());
    net.drop_next.push("ACK".into());
    let target = net.uri(1);
    let now = net.now;
    net.ua(0).invite(&target, media(4000), vec![], now).unwrap();
    net.run();
    assert!(net.take(1).is_empty());
    net.tick(); // timer A: the INVITE again
    let b = net.incoming(1);
    let now = net.now;
    net.ua(1).answer(b, media(5000), now).unwrap();
    net.run();
    assert!(established(&net.take(0)).is_some());
    assert!(established(&net.take(1)).is_none(), "the ACK was lost");
    net.advance(Duration::from_millis(600)); // bob retransmits the 200, alice ACKs again
    assert!(established(&net.take(1)).is_some(), "{}", net.ladder());
}

#[test]
fn no_ack_ends_the_call_with_bye() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    for _ in 0..20 {
        net.drop_next.push("ACK".into());
    }
    let (_, _) = net.call(0, 1);
    net.advance(Duration::from_secs(40));
    assert_eq!(
        ended(&net.take(1)),
        Some(&EndReason::Timeout),
        "{}",
        net.ladder()
    );
    assert_eq!(ended(&net.take(0)), Some(&EndReason::RemoteBye));
}

#[test]
fn unanswered_invite_times_out() {
    let mut net = Net::new(&[("alice", 5061)]);
    let now = net.now;
    net.ua(0)
        .invite("sip:nobody@127.0.0.1:5999", media(4000), vec![], now)
        .unwrap();
    net.run();
    net.advance(Duration::from_secs(40));
    assert_eq!(ended(&net.take(0)), Some(&EndReason::Timeout));
}

fn raw(ua: &mut UserAgent, text: &str) -> Vec<String> {
    let msg = Message::parse(text.as_bytes()).unwrap();
    ua.handle_message(&msg, "127.0.0.1:5999".parse().unwrap(), Instant::now());
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| String::from_utf8_lossy(&t.data).into_owned())
        .collect()
}

fn request(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5999;branch=z9hG4bK{}{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:x@10.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>{}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContact: <sip:x@10.0.0.1:5999>\r\n{extra}Content-Length: 0\r\n\r\n",
        method.to_lowercase(),
        rand::random::<u32>(),
        if extra.contains("TOTAG") { ";tag=zz" } else { "" },
    )
    .replace("TOTAG\r\n", "")
}

/// A Contact that cannot be a Request-URI (found by the fuzzer's re-parse check: it became
/// the start line of our BYE) is refused up front.
#[test]
fn an_invite_whose_contact_cannot_be_a_request_uri_gets_400() {
    for contact in ["<sip:peer", "<sip:peer@11?.0.0.1:5070>"] {
        let mut ua = UserAgent::new(cfg("bob", 5062));
        let inv = request("INVITE", "").replace(
            "Contact: <sip:x@10.0.0.1:5999>",
            &format!("Contact: {contact}"),
        );
        let out = raw(&mut ua, &inv);
        assert!(
            out.iter().any(|m| m.starts_with("SIP/2.0 400 Bad Contact")),
            "{contact}: {out:?}"
        );
        assert!(ua.poll_event().is_none());
    }
    // A `?` in the user part is legal (RFC 3261 §19.1.1): that Contact is taken.
    assert!(usable_target("sip:a?b@127.0.0.1:5070"));
    assert!(!usable_target("sip:peer@11?.0.0.1:5070"));
}

#[test]
fn answers_options_and_refuses_what_it_cannot_do() {
    let mut ua = UserAgent::new(cfg("bob", 5062));
    let r = raw(&mut ua, &request("OPTIONS", ""));
    assert!(r[0].starts_with("SIP/2.0 200 OK"), "{r:?}");
    assert!(r[0].contains("Allow: INVITE, ACK, CANCEL, BYE"));
    // RFC 3581: received and rport filled from the source.
    assert!(r[0].contains(";rport=5999;received=127.0.0.1"), "{}", r[0]);
    let r = raw(&mut ua, &request("BYE", "TOTAG\r\n"));
    assert!(r[0].starts_with("SIP/2.0 481"), "{r:?}");
    let r = raw(&mut ua, &request("FOO", ""));
    assert!(r[0].starts_with("SIP/2.0 501"), "{r:?}");
    let r = raw(&mut ua, &request("REGISTER", ""));
    assert!(
        r[0].starts_with("SIP/2.0 405") && r[0].contains("Allow:"),
        "{r:?}"
    );
    let r = raw(&mut ua, &request("INVITE", "Require: 100rel, foo\r\n"));
    assert!(
        r[0].starts_with("SIP/2.0 420") && r[0].contains("Unsupported: foo"),
        "{r:?}"
    );
    let r = raw(&mut ua, &request("CANCEL", ""));
    assert!(r[0].starts_with("SIP/2.0 481"), "{r:?}");
    // An INVITE whose SDP has no codec we carry: 488 with a Warning naming them.
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
    let inv = request("INVITE", "Content-Type: application/sdp\r\n").replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()),
    );
    let r = raw(&mut ua, &inv);
    assert!(r[0].starts_with("SIP/2.0 100"), "{r:?}");
    assert!(
        r[1].starts_with("SIP/2.0 488") && r[1].contains("G729/8000"),
        "{r:?}"
    );
    // Retransmitted requests are answered from the transaction, not processed twice.
    let opt = request("OPTIONS", "");
    let first = raw(&mut ua, &opt);
    let again = raw(&mut ua, &opt);
    assert_eq!(first, again);
}

#[test]
fn helpers() {
    assert_eq!(
        uri_host_port("sip:bob@example.com:5070;transport=udp"),
        Some(("example.com".into(), Some(5070)))
    );
    assert_eq!(
        uri_host_port("<sips:[::1]:5061>"),
        Some(("::1".into(), Some(5061)))
    );
    assert_eq!(
        uri_host_port("sip:example.com"),
        Some(("example.com".into(), None))
    );
    assert_eq!(uri_host_port("tel:+123"), None);
    assert_eq!(uri_host_port("sip:h:notaport"), None);
    assert_eq!(
        header_param("\"A\" <sip:a@h;x=1>;tag=abc", "tag"),
        Some("abc")
    );
    assert_eq!(without_tag("<sip:a@h>;tag=1;foo=2"), "<sip:a@h>;foo=2");
    assert_eq!(unescape("abc%3Bto-tag%3D1%"), "abc;to-tag=1%");
    assert_eq!(unescape("%zz%é"), "%zz%é");
    let r = "a@b;to-tag=1;from-tag=2";
    assert_eq!(unescape(&escape_header_value(r)), r);
    assert_eq!(
        parse_replaces(r),
        Some(("a@b".into(), "1".into(), "2".into()))
    );
    assert_eq!(
        crate::message::via_with_source(
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx",
            "10.0.0.1:5060".parse().unwrap()
        ),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx"
    );
    assert_eq!(
        crate::message::via_with_source(
            "SIP/2.0/UDP host.example;branch=z9hG4bKx;rport",
            "192.0.2.1:1234".parse().unwrap()
        ),
        "SIP/2.0/UDP host.example;branch=z9hG4bKx;rport=1234;received=192.0.2.1"
    );
}

#[test]
fn session_timer_refreshes_and_expires() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, b) = net.call(0, 1);
    net.take(0);
    net.take(1);
    // Bob's 2xx made Alice (the UAC, who supports timers) the refresher at 1800 s.
    assert_eq!(
        net.ua(0).calls[&a]
            .timer
            .map(|t| (t.interval, t.we_refresh)),
        Some((1800, true))
    );
    assert_eq!(
        net.ua(1).calls[&b]
            .timer
            .map(|t| (t.interval, t.we_refresh)),
        Some((1800, false))
    );
    net.advance(Duration::from_secs(1000));
    let refreshes = net
        .ladder
        .iter()
        .filter(|l| l.contains("-> 127.0.0.1:5062: INVITE"))
        .count();
    assert_eq!(
        refreshes,
        2,
        "the initial INVITE and one refresh at 900 s\n{}",
        net.ladder()
    );
    assert!(
        net.take(0).is_empty() && net.take(1).is_empty(),
        "a refresh is no media change"
    );
    // Refreshes get lost from now on: Bob ends the call 1800 - 32 s after the last one.
    for _ in 0..500 {
        net.drop_next.push("INVITE".into());
    }
    net.advance(Duration::from_secs(2000));
    assert_eq!(
        ended(&net.take(1)),
        Some(&EndReason::Timeout),
        "{}",
        net.ladder()
    );
    assert_eq!(ended(&net.take(0)), Some(&EndReason::RemoteBye));
}

#[test]
fn too_small_a_session_interval_is_raised_after_422() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    net.ua(1).min_se = 2000;
    let (a, _) = net.call(0, 1);
    assert!(
        net.ladder().contains("422 Session Interval Too Small"),
        "{}",
        net.ladder()
    );
    assert!(established(&net.take(0)).is_some());
    assert_eq!(net.ua(0).calls[&a].timer.map(|t| t.interval), Some(2000));
}

#[test]
fn reliable_early_media_with_prack_then_answer() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let target = net.uri(1);
    let now = net.now;
    net.drop_next.push("SIP/2.0 183".into()); // the first 183 is lost: it is retransmitted
    net.ua(0).invite(&target, media(4000), vec![], now).unwrap();
    net.run();
    let b = net.incoming(1);
    let early = net.ua(1).early_media(b, media(5000), now).unwrap();
    assert_eq!(early.codec.encoding, "opus");
    net.run();
    net.advance(Duration::from_millis(600));
    let ea = net.take(0);
    let em = ea
        .iter()
        .find_map(|e| match e {
            UaEvent::Progress {
                status: 183,
                early_media,
                ..
            } => early_media.clone(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{ea:?}\n{}", net.ladder()));
    assert_eq!(em.remote, Some("127.0.0.1:5000".parse().unwrap()));
    assert!(net.ladder().contains("PRACK sip:"), "{}", net.ladder());
    assert!(
        net.ua(1).calls[&b].reliable_1xx.is_none(),
        "PRACK stopped the retransmissions"
    );
    let now = net.now;
    net.ua(1).answer(b, media(5000), now).unwrap();
    net.run();
    let m = established(&net.take(0))
        .cloned()
        .unwrap_or_else(|| panic!("{}", net.ladder()));
    assert_eq!(m.remote, Some("127.0.0.1:5000".parse().unwrap()));
    assert!(established(&net.take(1)).is_some());
}

#[test]
fn update_without_sdp_refreshes_without_a_body() {
    let mut net = Net::new(&[("alice", 5061), ("bob", 5062)]);
    let (a, _) = net.call(0, 1);
    net.take(0);
    net.take(1);
    let now = net.now;
    net.ua(0)
        .send_in_dialog(
            a,
            "UPDATE",
            vec![("Session-Expires", "600;refresher=uac".into())],
            None,
            now,
        )
        .unwrap();
    net.run();
    let ok = net
        .ladder
        .iter()
        .rev()
        .find(|l| l.contains("SIP/2.0 200"))
        .cloned()
        .unwrap();
    assert!(ok.contains("5061"), "{}", net.ladder());
    assert!(net.take(0).is_empty() && net.take(1).is_empty());
    assert_eq!(
        net.ua(1)
            .calls
            .values()
            .next()
            .unwrap()
            .timer
            .map(|t| t.interval),
        Some(600)
    );
}

mod b2bua {
    use super::*;
    use crate::b2bua::{B2bua, BridgeEvent};

    /// Alice (0) calls the router (1), which bridges her to Carol (2).
    fn bridged(net: &mut Net, b2b: &mut B2bua) -> (CallId, CallId, CallId, Vec<BridgeEvent>) {
        let router = net.uri(1);
        let now = net.now;
        let a = net.ua(0).invite(&router, media(4000), vec![], now).unwrap();
        net.run();
        let a_leg = net.incoming(1);
        let carol = net.uri(2);
        let target = crate::b2bua::Target {
            uri: carol,
            media: media(6002),
            headers: vec![],
        };
        let b_leg = b2b
            .bridge(net.ua(1), a_leg, media(6000), target, now)
            .unwrap();
        let mut out = Vec::new();
        pump(net, b2b, &mut out);
        (a, a_leg, b_leg, out)
    }

    /// Runs the network, feeding the router's events to the bridge.
    fn pump(net: &mut Net, b2b: &mut B2bua, out: &mut Vec<BridgeEvent>) {
        for _ in 0..20 {
            net.run();
            let evs = net.take(1);
            if evs.is_empty() {
                return;
            }
            let now = net.now;
            for e in evs {
                if let Some(be) = b2b.on_event(net.ua(1), &e, now) {
                    out.push(be);
                }
            }
        }
    }

    #[test]
    fn ringing_answer_dtmf_hold_and_hangup_cross_the_bridge() {
        let mut net = Net::new(&[("alice", 5061), ("router", 5062), ("carol", 5063)]);
        let mut b2b = B2bua::new();
        let (a, a_leg, b_leg, _) = bridged(&mut net, &mut b2b);
        let c = net.incoming(2);
        let now = net.now;
        net.ua(2).ring(c, now);
        let mut out = Vec::new();
        pump(&mut net, &mut b2b, &mut out);
        assert!(
            net.take(0)
                .iter()
                .any(|e| matches!(e, UaEvent::Progress { status: 180, .. })),
            "{}",
            net.ladder()
        );
        net.ua(2).answer(c, media(7000), now).unwrap();
        pump(&mut net, &mut b2b, &mut out);
        let ea = net.take(0);
        let m = established(&ea).unwrap_or_else(|| panic!("{}", net.ladder()));
        assert_eq!(
            m.remote,
            Some("127.0.0.1:6000".parse().unwrap()),
            "media anchored at the router"
        );
        assert!(out.iter().any(|e| matches!(e, BridgeEvent::Connected { a: x, b: y, .. } if *x == a_leg && *y == b_leg)), "{out:?}");
        // DTMF from Alice reaches Carol.
        net.ua(0).send_dtmf_info(a, '7', 100, now).unwrap();
        pump(&mut net, &mut b2b, &mut out);
        assert!(net
            .take(2)
            .iter()
            .any(|e| matches!(e, UaEvent::Dtmf { digit: '7', .. })));
        // Alice holds: Carol is held too; Alice resumes: Carol resumes.
        net.ua(0).hold(a, true, now).unwrap();
        pump(&mut net, &mut b2b, &mut out);
        let dir = |evs: &[UaEvent]| {
            evs.iter().rev().find_map(|e| match e {
                UaEvent::MediaChanged { media, .. } => Some(media.direction),
                _ => None,
            })
        };
        assert_eq!(
            dir(&net.take(2)),
            Some(Direction::RecvOnly),
            "{}",
            net.ladder()
        );
        net.ua(0).hold(a, false, now).unwrap();
        pump(&mut net, &mut b2b, &mut out);
        assert_eq!(dir(&net.take(2)), Some(Direction::SendRecv));
        // Carol hangs up: Alice's leg ends too.
        net.ua(2).hangup(c, now);
        pump(&mut net, &mut b2b, &mut out);
        assert_eq!(
            ended(&net.take(0)),
            Some(&EndReason::RemoteBye),
            "{}",
            net.ladder()
        );
        assert!(matches!(out.last(), Some(BridgeEvent::Ended { .. })));
        assert!(!b2b.is_bridged(a_leg) && net.ua(1).calls().next().is_none());
    }

    #[test]
    fn the_callees_refusal_reaches_the_caller_and_a_cancel_reaches_the_callee() {
        let mut net = Net::new(&[("alice", 5061), ("router", 5062), ("carol", 5063)]);
        let mut b2b = B2bua::new();
        let (_, _, _, _) = bridged(&mut net, &mut b2b);
        let c = net.incoming(2);
        let now = net.now;
        net.ua(2).reject(c, 486, now);
        let mut out = Vec::new();
        pump(&mut net, &mut b2b, &mut out);
        assert_eq!(
            ended(&net.take(0)),
            Some(&EndReason::Rejected {
                status: 486,
                reason: "Busy Here".into()
            }),
            "{}",
            net.ladder()
        );

        let (a, _, _, _) = bridged(&mut net, &mut b2b);
        let c = net.incoming(2);
        net.ua(2).ring(c, now);
        pump(&mut net, &mut b2b, &mut out);
        net.ua(0).hangup(a, now); // CANCEL
        pump(&mut net, &mut b2b, &mut out);
        assert_eq!(
            ended(&net.take(2)),
            Some(&EndReason::Cancelled),
            "{}",
            net.ladder()
        );
        assert_eq!(ended(&net.take(0)), Some(&EndReason::Local));
    }
}

#[test]
fn a_flood_from_one_source_is_bounded_and_others_still_get_through() {
    let mut ua = UserAgent::new(cfg("bob", 5062));
    let mut refused = 0;
    for _ in 0..(MAX_PER_SOURCE + 100) {
        let r = raw(&mut ua, &request("OPTIONS", ""));
        if r[0].starts_with("SIP/2.0 503") {
            refused += 1;
        }
    }
    assert_eq!(refused, 100);
    assert!(ua.server.len() <= MAX_PER_SOURCE);
    // Another source is still answered.
    let msg = Message::parse(request("OPTIONS", "").as_bytes()).unwrap();
    ua.handle_message(&msg, "10.9.9.9:5060".parse().unwrap(), Instant::now());
    let r = String::from_utf8_lossy(&ua.poll_transmit().unwrap().data).into_owned();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
}

#[test]
fn a_b2buas_own_limits_take_a_trunks_load_and_the_count_per_source_follows_the_transactions() {
    let mut ua = UserAgent::new(cfg("router", 5062));
    ua.set_limits(crate::ua::Limits {
        calls: 10_000,
        server_transactions: 10_000,
        per_source: 1_000,
    });
    let mut refused = 0;
    for _ in 0..(MAX_PER_SOURCE + 100) {
        let r = raw(&mut ua, &request("OPTIONS", ""));
        if r[0].starts_with("SIP/2.0 503") {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "a phone's share would have refused 100");
    assert_eq!(ua.server.len(), MAX_PER_SOURCE + 100);
    assert_eq!(ua.from_source.values().sum::<usize>(), MAX_PER_SOURCE + 100);
    // Once the transactions are over (timer J), nothing is counted against the source.
    ua.handle_timeout(Instant::now() + std::time::Duration::from_secs(64));
    assert!(ua.server.is_empty());
    assert!(ua.from_source.is_empty(), "{:?}", ua.from_source);
}

/// #13 item 18: our credentials answer a digest challenge only for the account's realm (its
/// domain, or the realm its registrar challenged with) — a callee or transfer target that
/// challenges us for its own realm collects no MD5 response of ours.
#[test]
fn a_challenge_is_answered_only_for_the_accounts_realm() {
    fn challenged_with(realm: &str, trust: Option<&str>) -> (Vec<String>, Vec<UaEvent>) {
        let mut c = cfg("alice", 5061);
        c.credentials = Some(Credentials {
            username: "alice".into(),
            password: "secret".into(),
        });
        let mut ua = UserAgent::new(c);
        if let Some(r) = trust {
            ua.trust_realm(r);
        }
        ua.invite(
            "sip:bob@127.0.0.1:5062",
            media(4000),
            vec![],
            Instant::now(),
        )
        .unwrap();
        let invite = ua.poll_transmit().unwrap();
        let invite = Message::parse(&invite.data).unwrap();
        let h = |n: &str| invite.header(n).unwrap().to_owned();
        let reply = format!(
            "SIP/2.0 401 Unauthorized\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=x1\r\nCall-ID: {}\r\nCSeq: {}\r\nWWW-Authenticate: Digest realm=\"{realm}\", nonce=\"abc\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n",
            h("Via"),
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq"),
        );
        let out = raw(&mut ua, &reply);
        (out, std::iter::from_fn(|| ua.poll_event()).collect())
    }
    let answered = |out: &[String]| {
        out.iter()
            .any(|m| m.starts_with("INVITE ") && m.contains("\r\nAuthorization: Digest "))
    };
    // The account's domain: answered.
    let (out, _) = challenged_with("127.0.0.1", None);
    assert!(answered(&out), "{out:?}");
    // The registrar's realm, once trusted: answered.
    let (out, _) = challenged_with("pbx.example", Some("PBX.example"));
    assert!(answered(&out), "{out:?}");
    // Anyone else's: the call ends with the 401, and no response of ours leaves.
    let (out, events) = challenged_with("evil.example", None);
    assert!(!answered(&out), "{out:?}");
    assert!(!out.iter().any(|m| m.contains("Authorization")), "{out:?}");
    assert_eq!(
        ended(&events),
        Some(&EndReason::Rejected {
            status: 401,
            reason: "Unauthorized".into()
        })
    );
}

#[test]
fn transports_named_by_uris() {
    use Transport::{Tcp, Tls, Udp};
    let cases = [
        ("sips:bob@example.com", Some(Tls)),
        (
            "<sip:bob@10.0.0.1:5070;transport=TCP>;expires=60",
            Some(Tcp),
        ),
        ("sip:bob@h;lr;transport=tls", Some(Tls)),
        ("sip:bob@h;transport=udp", Some(Udp)),
        ("sip:bob@h", None),
        ("sip:bob@h;transport=sctp", None),
        // A user part that looks like a parameter is not one.
        ("sip:x;transport=tcp@h", None),
        // Parameters of escaped headers are not the URI's.
        ("sip:bob@h?x=1;transport=tcp", None),
    ];
    for (uri, want) in cases {
        assert_eq!(Transport::of_uri(uri), want, "{uri}");
    }
}

/// A router on UDP and TCP at 127.0.0.1:5060, Adele's phone speaking TCP only at :5070, and
/// `more` user agents on UDP.
fn router_and_tcp_phone(more: &[(&str, u16)]) -> Net {
    let mut users = vec![("router", 5060), ("adele", 5070)];
    users.extend_from_slice(more);
    let mut net = Net::new(&users);
    net.ua(0)
        .add_transport(Transport::Tcp, "127.0.0.1:5060".into());
    net.uas[1].1 = UserAgent::new(UaConfig {
        transport: Transport::Tcp,
        ..cfg("adele", 5070)
    });
    net
}

/// One user agent on UDP and TCP at once (a B2BUA with UDP trunks and TCP phones): each
/// dialog keeps the transport it began on, in its Via, Contact and every request inside it,
/// and requests inside a dialog that came over a stream go back on that connection.
#[test]
fn one_user_agent_speaks_udp_and_tcp_and_each_dialog_keeps_its_own() {
    let mut net = router_and_tcp_phone(&[("trunk", 5080)]);
    assert!(net.ua(0).speaks(Transport::Tcp) && !net.ua(0).speaks(Transport::Tls));
    let now = net.now;
    // Adele calls the router over TCP.
    let a = net
        .ua(1)
        .invite(
            "sip:queue@127.0.0.1:5060;transport=tcp",
            media(4000),
            vec![],
            now,
        )
        .unwrap();
    net.run();
    let r = net.answered(0, 1);
    let ok = net.sent(|(from, _, _, m)| from.port() == 5060 && m.starts_with("SIP/2.0 200"));
    assert_eq!(ok.2, Transport::Tcp, "the 200 went back over TCP");
    assert!(
        ok.3.contains("Contact: <sip:router@127.0.0.1:5060;transport=tcp>"),
        "{}",
        ok.3
    );
    // The router calls the trunk over UDP meanwhile.
    let t = net
        .ua(0)
        .invite("sip:+15551234@127.0.0.1:5080", media(4004), vec![], now)
        .unwrap();
    net.run();
    net.answered(2, 0);
    let invite = net.sent(|(_, to, _, m)| to.port() == 5080 && m.starts_with("INVITE"));
    assert_eq!(invite.2, Transport::Udp);
    assert!(
        invite.3.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;"),
        "{}",
        invite.3
    );
    assert!(
        invite.3.contains("Contact: <sip:router@127.0.0.1:5060>"),
        "{}",
        invite.3
    );
    // Hanging both up: the BYE to Adele is TCP, the one to the trunk UDP.
    net.wire.clear();
    net.ua(0).hangup(r, now);
    net.ua(0).hangup(t, now);
    net.run();
    let byes: Vec<_> = net
        .wire
        .iter()
        .filter(|(from, _, _, m)| from.port() == 5060 && m.starts_with("BYE"))
        .map(|(_, to, tr, m)| (to.port(), *tr, m.contains("Via: SIP/2.0/TCP")))
        .collect();
    assert!(byes.contains(&(5070, Transport::Tcp, true)), "{byes:?}");
    assert!(byes.contains(&(5080, Transport::Udp, false)), "{byes:?}");
    assert_eq!(ended(&net.take(1)), Some(&EndReason::RemoteBye));
    let _ = a;
}

/// A phone registered over a stream is reached on its connection (RFC 5626 §5.3), not at
/// the address its Contact names, and a next hop over a transport we do not speak is refused.
#[test]
fn an_invite_over_a_flow_goes_to_the_connection_and_stays_there() {
    let mut net = router_and_tcp_phone(&[]);
    let now = net.now;
    // Her Contact names a port nobody listens on; the flow is her real address.
    let flow: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    let r = net
        .ua(0)
        .invite_over(
            "sip:adele@192.0.2.1:6000;transport=tcp",
            Some((Transport::Tcp, flow)),
            media(4000),
            vec![],
            now,
        )
        .unwrap();
    net.run();
    net.answered(1, 0);
    net.wire.clear();
    net.ua(0).hold(r, true, now).unwrap();
    net.run();
    let reinvite = net.sent(|(_, _, _, m)| m.starts_with("INVITE"));
    assert_eq!((reinvite.1, reinvite.2), (flow, Transport::Tcp));
    assert!(
        reinvite.3.starts_with("INVITE sip:adele@127.0.0.1:5070"),
        "{}",
        reinvite.3
    );
    assert!(matches!(
        net.ua(0).invite_over(
            "sips:x@127.0.0.1",
            Some((Transport::Tls, flow)),
            media(4004),
            vec![],
            now
        ),
        Err(UaError::NoTransport(Transport::Tls))
    ));
    // Out-of-dialog OPTIONS take the transport their target names.
    net.wire.clear();
    net.ua(0)
        .options("sip:127.0.0.1:5070;transport=tcp", now)
        .unwrap();
    net.ua(0).options("sip:127.0.0.1:5070", now).unwrap();
    net.run();
    let options: Vec<Transport> = net
        .wire
        .iter()
        .filter(|(_, _, _, m)| m.starts_with("OPTIONS"))
        .map(|(_, _, t, _)| *t)
        .collect();
    assert_eq!(options, vec![Transport::Tcp, Transport::Udp]);
}

/// What the UA sent: (destination, text).
fn drain(ua: &mut UserAgent) -> Vec<(Destination, String)> {
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| (t.to, String::from_utf8_lossy(&t.data).into_owned()))
        .collect()
}

/// The answer `status` to request `text`, arriving from `from`.
fn answer(ua: &mut UserAgent, text: &str, status: u16, from: &str, extra: &[&str]) {
    let req = Message::parse(text.as_bytes()).unwrap();
    let from: SocketAddr = from.parse().unwrap();
    let bytes = build_response(
        &req,
        from,
        status,
        reason_phrase(status),
        Some("far"),
        extra,
        None,
        "proxy",
    )
    .unwrap();
    let resp = Message::parse(&bytes).unwrap();
    ua.handle_message(&resp, from, Instant::now());
}

fn header_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .collect()
}

/// A Direct Routing call: From, Contact and Via name the SBC's FQDN, every request carries
/// `X-MS-SBC`; 503 (with Retry-After) moves the INVITE to `sip2`, a timeout to `sip3`, and
/// 603 from any server is final.
#[test]
fn an_invite_fails_over_to_the_next_proxy_on_503_and_timeout_but_not_603() {
    let face = Face {
        contact_host: "contoso.sbc.example:5061".into(),
        headers: vec!["X-MS-SBC: Switchboard/Router/1.0".into()],
    };
    let place = |ua: &mut UserAgent| {
        ua.invite_with(
            "<sip:+14255550101@127.0.0.1:5071;user=phone>",
            Placement {
                hop: None,
                from: Some("sip:+15550100@contoso.sbc.example;user=phone".into()),
                face: Some(face.clone()),
                alternates: vec![
                    "sip:+14255550101@127.0.0.1:5072;user=phone".into(),
                    "sip:+14255550101@127.0.0.1:5073;user=phone".into(),
                ],
            },
            media(4000),
            vec![],
            Instant::now(),
        )
        .unwrap()
    };
    let mut ua = UserAgent::new(cfg("router", 5060));
    let call = place(&mut ua);
    let sent = drain(&mut ua);
    assert_eq!(sent.len(), 1);
    let (to, first) = &sent[0];
    assert_eq!(*to, Destination::Addr("127.0.0.1:5071".parse().unwrap()));
    assert!(
        first.starts_with("INVITE sip:+14255550101@127.0.0.1:5071;user=phone SIP/2.0"),
        "{first}"
    );
    assert!(
        header_of(first, "From")[0]
            .starts_with("<sip:+15550100@contoso.sbc.example;user=phone>;tag="),
        "{first}"
    );
    assert_eq!(
        header_of(first, "Contact"),
        ["<sip:router@contoso.sbc.example:5061>"]
    );
    assert!(
        header_of(first, "Via")[0].contains("contoso.sbc.example:5061"),
        "{first}"
    );
    assert_eq!(header_of(first, "X-MS-SBC"), ["Switchboard/Router/1.0"]);

    // 503 with Retry-After from sip: the same call goes to sip2, a new transaction.
    answer(&mut ua, first, 503, "127.0.0.1:5071", &["Retry-After: 30"]);
    let sent = drain(&mut ua);
    let (to, second) = sent
        .iter()
        .find(|(_, m)| m.starts_with("INVITE"))
        .expect("an INVITE to sip2");
    assert_eq!(*to, Destination::Addr("127.0.0.1:5072".parse().unwrap()));
    assert_eq!(header_of(second, "Call-ID"), header_of(first, "Call-ID"));
    assert_ne!(header_of(second, "Via"), header_of(first, "Via"));
    let evs: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
    assert!(
        evs.contains(&UaEvent::FailedOver {
            call,
            status: Some(503),
            next: "sip:+14255550101@127.0.0.1:5072;user=phone".into()
        }),
        "{evs:?}"
    );
    assert!(ended(&evs).is_none());

    // sip2 says nothing at all: after Timer B the INVITE goes to sip3.
    let later = Instant::now() + Duration::from_secs(40);
    ua.handle_timeout(later);
    let sent = drain(&mut ua);
    assert!(
        sent.iter().any(|(to, m)| m.starts_with("INVITE")
            && *to == Destination::Addr("127.0.0.1:5073".parse().unwrap())),
        "{sent:?}"
    );
    // sip3 declines: final, no server left anyway, and the call ends with 603.
    let third = sent
        .iter()
        .find(|(_, m)| m.starts_with("INVITE"))
        .unwrap()
        .1
        .clone();
    answer(&mut ua, &third, 603, "127.0.0.1:5073", &[]);
    let evs: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
    assert!(
        matches!(ended(&evs), Some(EndReason::Rejected { status: 603, .. })),
        "{evs:?}"
    );

    // 603 from the first server is never retried elsewhere.
    let mut ua = UserAgent::new(cfg("router", 5060));
    place(&mut ua);
    let first = drain(&mut ua).remove(0).1;
    answer(&mut ua, &first, 603, "127.0.0.1:5071", &[]);
    assert!(drain(&mut ua).iter().all(|(_, m)| !m.starts_with("INVITE")));
    let evs: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
    assert!(matches!(
        ended(&evs),
        Some(EndReason::Rejected { status: 603, .. })
    ));
}

/// A keep-alive OPTIONS sent as a face names the FQDN in Contact and Via and carries its
/// lines; its answer is reported under the key given, not the target.
#[test]
fn options_as_a_face_carry_its_contact_and_report_under_the_key() {
    let mut ua = UserAgent::new(cfg("router", 5060));
    let face = Face {
        contact_host: "contoso.sbc.example:5061".into(),
        headers: vec!["X-MS-SBC: Switchboard/Router/1.0".into()],
    };
    ua.options_as(
        "sip:127.0.0.1:5071",
        "contoso/sip",
        Some(&face),
        Instant::now(),
    )
    .unwrap();
    let (_, m) = drain(&mut ua).remove(0);
    assert_eq!(
        header_of(&m, "Contact"),
        ["<sip:router@contoso.sbc.example:5061>"]
    );
    assert!(header_of(&m, "Via")[0].contains("contoso.sbc.example:5061"));
    assert_eq!(header_of(&m, "X-MS-SBC"), ["Switchboard/Router/1.0"]);
    answer(&mut ua, &m, 200, "127.0.0.1:5071", &[]);
    assert_eq!(
        ua.poll_event(),
        Some(UaEvent::OptionsAnswered {
            target: "contoso/sip".into(),
            status: Some(200)
        })
    );
    // A face whose lines would add headers of their own is refused.
    let bad = Face {
        contact_host: "contoso.sbc.example:5061".into(),
        headers: vec!["X-MS-SBC: a\r\nVia: evil".into()],
    };
    assert!(ua
        .options_as("sip:127.0.0.1:5071", "k", Some(&bad), Instant::now())
        .is_err());
}

/// One device a forking proxy reached: its To tag, Contact port and SDP answer's media port.
struct Fork {
    tag: &'static str,
    port: u16,
    media: u16,
}

impl Fork {
    /// A reliable 183 with our answer, numbered `rseq`, to `invite`.
    fn early(&self, ua: &mut UserAgent, invite: &str, rseq: u32) {
        let rseq = format!("RSeq: {rseq}");
        self.respond(ua, invite, 183, &["Require: 100rel", &rseq], true);
    }

    /// A 200 to `invite`, with our answer when `sdp`.
    fn answer(&self, ua: &mut UserAgent, invite: &str, sdp: bool) {
        self.respond(ua, invite, 200, &[], sdp);
    }

    fn respond(&self, ua: &mut UserAgent, invite: &str, status: u16, extra: &[&str], sdp: bool) {
        let req = Message::parse(invite.as_bytes()).unwrap();
        let from: SocketAddr = "127.0.0.1:5071".parse().unwrap();
        let contact = format!("Contact: <sip:{}@127.0.0.1:{}>", self.tag, self.port);
        let mut lines = vec![contact.as_str(), "Record-Route: <sip:127.0.0.1:5071;lr>"];
        lines.extend_from_slice(extra);
        let body = sdp.then(|| {
            let text = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
                self.media
            );
            ("application/sdp", Bytes::from(text))
        });
        let reason = reason_phrase(status);
        let bytes = build_response(
            &req,
            from,
            status,
            reason,
            Some(self.tag),
            &lines,
            body,
            "proxy",
        )
        .unwrap();
        let resp = Message::parse(&bytes).unwrap();
        ua.handle_message(&resp, from, Instant::now());
    }
}

/// The one message `ua` sent: a PRACK in the early dialog of fork `tag` (at `port`) with
/// `rack`.
fn prack_in(ua: &mut UserAgent, tag: &str, port: u16, rack: &str) -> String {
    let sent = drain(ua);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let prack = sent[0].1.clone();
    let line = format!("PRACK sip:{tag}@127.0.0.1:{port} SIP/2.0");
    assert!(prack.starts_with(&line), "{prack}");
    assert!(
        header_of(&prack, "To")[0].ends_with(&format!(";tag={tag}")),
        "{prack}"
    );
    assert_eq!(header_of(&prack, "RAck"), [rack]);
    prack
}

/// RFC 3261 §12.1.2 and §13.2.2.4, RFC 3262 §4: a forking proxy (a Teams user's desktop and
/// mobile, with media bypass) gives two early dialogs. Each reliable 183 is PRACKed in its
/// own dialog (the same RSeq in both), the call takes the answer of the fork whose 2xx comes
/// (here without SDP: its answer was in its 183), and a 2xx from the other fork afterwards is
/// ACKed and ended with BYE once, unseen by the application.
#[test]
fn a_forked_invite_keeps_each_early_dialog_apart_and_ends_a_second_answer() {
    let mut ua = UserAgent::new(cfg("router", 5060));
    let call = ua
        .invite(
            "<sip:+14255550106@127.0.0.1:5071;user=phone>",
            media(4000),
            vec![],
            Instant::now(),
        )
        .unwrap();
    let invite = drain(&mut ua).remove(0).1;
    let desk = Fork {
        tag: "desk",
        port: 6001,
        media: 6000,
    };
    let mobile = Fork {
        tag: "mobile",
        port: 7001,
        media: 7000,
    };

    desk.early(&mut ua, &invite, 1);
    let prack = prack_in(&mut ua, "desk", 6001, "1 1 INVITE");
    assert_eq!(header_of(&prack, "Route"), ["<sip:127.0.0.1:5071;lr>"]);

    // The mobile's 183 starts its own RSeq space: RSeq 1 again, PRACKed in its dialog.
    mobile.early(&mut ua, &invite, 1);
    prack_in(&mut ua, "mobile", 7001, "1 1 INVITE");

    // The desk's 183 again (a retransmission): no PRACK; then its next one: PRACKed.
    desk.early(&mut ua, &invite, 1);
    assert!(drain(&mut ua).is_empty());
    desk.early(&mut ua, &invite, 2);
    prack_in(&mut ua, "desk", 6001, "2 1 INVITE");
    let progress: Vec<_> = std::iter::from_fn(|| ua.poll_event())
        .filter_map(|e| match e {
            UaEvent::Progress { early_media, .. } => early_media.and_then(|m| m.remote),
            _ => None,
        })
        .map(|a| a.port())
        .collect();
    assert_eq!(
        progress,
        [6000, 7000, 6000],
        "each fork's early media in turn"
    );

    // The mobile answers, without SDP: the call's media is the mobile's answer, not the
    // desk's that came last.
    mobile.answer(&mut ua, &invite, false);
    let sent = drain(&mut ua);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0]
        .1
        .starts_with("ACK sip:mobile@127.0.0.1:7001 SIP/2.0"));
    let evs: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
    let media = established(&evs).unwrap_or_else(|| panic!("{evs:?}"));
    assert_eq!(media.remote, Some("127.0.0.1:7000".parse().unwrap()));

    // The desk answers too: ACKed and ended, in its own dialog; the call goes on.
    desk.answer(&mut ua, &invite, true);
    let sent = drain(&mut ua);
    let lines: Vec<_> = sent
        .iter()
        .map(|(_, m)| m.lines().next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "ACK sip:desk@127.0.0.1:6001 SIP/2.0",
            "BYE sip:desk@127.0.0.1:6001 SIP/2.0"
        ],
        "{sent:?}"
    );
    for (_, m) in &sent {
        assert!(header_of(m, "To")[0].ends_with(";tag=desk"), "{m}");
        assert_eq!(header_of(m, "Call-ID"), header_of(&invite, "Call-ID"));
    }
    assert_eq!(
        sent[0].0,
        Destination::Addr("127.0.0.1:5071".parse().unwrap())
    );
    assert!(std::iter::from_fn(|| ua.poll_event()).next().is_none());
    assert_eq!(ua.calls[&call].state, CallState::Confirmed);
    assert_eq!(ua.calls[&call].dialog.remote_tag.as_deref(), Some("mobile"));

    // Its 2xx again: ACKed again, no second BYE.
    desk.answer(&mut ua, &invite, true);
    let sent = drain(&mut ua);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].1.starts_with("ACK sip:desk@"));

    // A BYE inside the call still goes to the mobile.
    ua.hangup(call, Instant::now());
    let sent = drain(&mut ua);
    assert!(
        sent[0].1.starts_with("BYE sip:mobile@127.0.0.1:7001"),
        "{sent:?}"
    );
}
