//! The engine's rules, and its command/event API driven end to end: two phones on the
//! loopback interface calling each other directly.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

#[test]
fn refers_are_followed_only_from_our_domain_to_our_domain() {
    let d = "pbx.example.com";
    let colleague = Some("<sip:alice@pbx.example.com>;tag=1");
    let stranger = Some("<sip:mallory@evil.example>;tag=2");
    let inside = "sip:bob@pbx.example.com";
    assert_eq!(refer_allowed(true, d, colleague, None, inside), Ok(()));
    assert_eq!(
        refer_allowed(
            true,
            d,
            colleague,
            Some("<sip:alice@PBX.example.com>"),
            "<sip:bob@PBX.EXAMPLE.COM;transport=tcp>"
        ),
        Ok(())
    );
    // A stranger through our registrar, or a colleague's dialog naming a stranger.
    assert!(matches!(
        refer_allowed(true, d, stranger, None, inside),
        Err(ReferRefusal::PeerOutside { .. })
    ));
    assert!(matches!(
        refer_allowed(true, d, colleague, Some("<sip:m@evil.example>"), inside),
        Err(ReferRefusal::ReferredByOutside { .. })
    ));
    // A colleague asking us to call out of the domain (toll fraud through a compromised
    // colleague, or a host that collects our digest).
    assert!(matches!(
        refer_allowed(true, d, colleague, None, "sip:+19005550100@evil.example"),
        Err(ReferRefusal::TargetOutside { .. })
    ));
    // Direct calls (no registrar): never without consent.
    assert_eq!(
        refer_allowed(false, "10.0.0.1", colleague, None, inside),
        Err(ReferRefusal::NoRegistrar)
    );
    assert!(refer_allowed(true, d, None, None, inside).is_err());
}

#[test]
fn events_are_tagged_snake_case_json() {
    let v = serde_json::to_value(PhoneEvent::Registration {
        account: 0,
        aor: "sip:alice@pbx.example.com".into(),
        state: RegistrationState::Refused {
            status: 403,
            reason: "Forbidden".into(),
        },
    })
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"event": "registration", "account": 0, "aor": "sip:alice@pbx.example.com", "state": "refused", "status": 403, "reason": "Forbidden"})
    );
    let v = serde_json::to_value(PhoneEvent::Ended {
        call: 3,
        reason: EndReason::Rejected {
            status: 486,
            phrase: "Busy Here".into(),
        },
        quality: CallQuality::default(),
        offer: None,
    })
    .unwrap();
    assert_eq!(v["event"], "ended");
    assert_eq!(v["reason"], "rejected");
    assert_eq!(v["status"], 486);
    assert_eq!(v["quality"]["packets_lost"], 0);
    let v = serde_json::to_value(PhoneEvent::TransferProgress {
        call: 1,
        status: 202,
        final_: false,
    })
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"event": "transfer_progress", "call": 1, "status": 202, "final": false})
    );
    let v = serde_json::to_value(PhoneEvent::Device(DeviceReport::Unavailable {
        direction: "input".into(),
        reason: "none".into(),
    }))
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"event": "device", "kind": "unavailable", "direction": "input", "reason": "none"})
    );
}

#[test]
fn passwords_are_not_shown_by_debug() {
    let mut a = Account::new("alice");
    a.password = Some("s3cret".into());
    assert!(!format!("{:?}", PhoneOptions::new(a)).contains("s3cret"));
}

fn options(user: &str, ports: (u16, u16), refer: ReferPolicy) -> PhoneOptions {
    let mut o = PhoneOptions::new(Account::new(user));
    o.bind = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    o.media.rtp_ports = ports;
    o.media.codecs = vec![switchboard_media::session::Codec::Pcmu];
    o.refer = refer;
    o
}

/// The next event `pick` takes, skipping others; panics after 10 s.
async fn until<T>(events: &mut PhoneEvents, mut pick: impl FnMut(&PhoneEvent) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.expect("the phone stopped");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await
    .expect("the event did not come within 10 s")
}

/// `a` calls `p`, who answers: (a's call, p's call), once a sees it established.
async fn connect(
    a: &Phone,
    ae: &mut PhoneEvents,
    p: &Phone,
    pe: &mut PhoneEvents,
) -> (CallId, CallId) {
    let out = a.dial(p.contact()).await.unwrap();
    let inc = until(pe, |e| match e {
        PhoneEvent::Incoming { call, .. } => Some(*call),
        _ => None,
    })
    .await;
    p.answer(inc).await.unwrap();
    until(ae, |e| {
        matches!(e, PhoneEvent::Established { call, .. } if *call == out).then_some(())
    })
    .await;
    (out, inc)
}

#[tokio::test]
async fn two_phones_call_hold_send_dtmf_and_hang_up() {
    let (a, mut ae) = Phone::start(options("alice", (41000, 41099), ReferPolicy::Trusted))
        .await
        .unwrap();
    let mut bob = options("bob", (41100, 41199), ReferPolicy::Trusted);
    bob.ring = Some(RingOptions {
        device: Some("no such device".into()),
        volume: 0.0,
    });
    let (b, mut be) = Phone::start(bob).await.unwrap();
    assert!(b.contact().starts_with("sip:bob@127.0.0.1:"));
    let out = a.dial(b.contact()).await.unwrap();
    until(&mut ae, |e| {
        matches!(e, PhoneEvent::Calling { call, .. } if *call == out).then_some(())
    })
    .await;
    let (inc, from) = until(&mut be, |e| match e {
        PhoneEvent::Incoming {
            call, from, offer, ..
        } => {
            assert!(offer.is_empty());
            Some((*call, from.clone()))
        }
        _ => None,
    })
    .await;
    assert!(from.contains("alice@"), "{from}");
    // Nothing rings before the application says the call rings.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(e) = be.try_recv() {
        assert!(!matches!(e, PhoneEvent::Ringing { .. }), "{e:?}");
    }
    b.ring(inc).unwrap();
    let device = until(&mut be, |e| match e {
        PhoneEvent::Ringing { device } => Some(device.clone()),
        _ => None,
    })
    .await;
    assert_eq!(device.as_deref(), Some("no such device"));
    until(&mut ae, |e| {
        matches!(e, PhoneEvent::Progress { status: 180, .. }).then_some(())
    })
    .await;
    b.answer(inc).await.unwrap();
    let media = until(&mut ae, |e| match e {
        PhoneEvent::Established { call, media, .. } if *call == out => Some(media.clone()),
        _ => None,
    })
    .await;
    assert_eq!(media.codec, "PCMU");
    assert_eq!(media.srtp, None);
    until(&mut be, |e| {
        matches!(e, PhoneEvent::Established { call, .. } if *call == inc).then_some(())
    })
    .await;
    // One call is no conference, named twice or not; a call that is not ours is named.
    for calls in [vec![out], vec![out, out]] {
        let e = a.conference(&calls).await.unwrap_err().to_string();
        assert!(e.contains("needs two answered calls"), "{e}");
    }
    let e = a
        .conference(&[out, out + 1000])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    // A digit in the media path arrives as one.
    let via = a.send_dtmf(out, '5').await.unwrap();
    assert_eq!(via, DtmfVia::Rfc4733);
    until(&mut ae, |e| {
        matches!(e, PhoneEvent::DtmfSent { digit: '5', .. }).then_some(())
    })
    .await;
    let (digit, via) = until(&mut be, |e| match e {
        PhoneEvent::Dtmf { digit, via, .. } => Some((*digit, *via)),
        _ => None,
    })
    .await;
    assert_eq!((digit, via), ('5', DtmfVia::Rfc4733));
    // Hold: the other side is told to only receive.
    a.hold(out, true).await.unwrap();
    let dir = until(&mut be, |e| match e {
        PhoneEvent::MediaChanged { media, .. } => Some(media.direction.clone()),
        _ => None,
    })
    .await;
    assert_eq!(dir, "recvonly");
    let dir = until(&mut ae, |e| match e {
        PhoneEvent::MediaChanged { media, .. } => Some(media.direction.clone()),
        _ => None,
    })
    .await;
    assert_eq!(dir, "sendonly");
    a.hold(out, false).await.unwrap();
    let dir = until(&mut be, |e| match e {
        PhoneEvent::MediaChanged { media, .. } => Some(media.direction.clone()),
        _ => None,
    })
    .await;
    assert_eq!(dir, "sendrecv");
    // Live figures: packets flow both ways.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let live = b.quality(inc).await.unwrap();
    assert!(
        live.packets_sent > 0 && live.packets_received > 0,
        "{live:?}"
    );
    assert!(a.quality(999).await.is_err());
    a.mute(true).unwrap();
    a.set_volume(0.5).unwrap();
    // Commands on calls that do not exist say so.
    assert!(matches!(
        a.hold(999, true).await,
        Err(CallError::Sip(UaError::NoSuchCall(999)))
    ));
    a.hangup(out).unwrap();
    let (reason, quality) = until(&mut ae, |e| match e {
        PhoneEvent::Ended {
            call,
            reason,
            quality,
            ..
        } if *call == out => Some((reason.clone(), quality.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reason, EndReason::Local);
    assert!(quality.packets_sent > 0, "{quality:?}");
    let reason = until(&mut be, |e| match e {
        PhoneEvent::Ended { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, EndReason::RemoteBye);
    a.close().await;
    until(&mut ae, |e| {
        matches!(e, PhoneEvent::Stopped { error: None }).then_some(())
    })
    .await;
    assert!(matches!(a.dial(b.contact()).await, Err(CallError::Stopped)));
    b.close().await;
}

#[tokio::test]
async fn a_refer_from_a_stranger_is_declined_or_put_to_the_person() {
    for policy in [ReferPolicy::Trusted, ReferPolicy::Ask] {
        let base = if policy == ReferPolicy::Ask {
            41200
        } else {
            41400
        };
        let (a, mut ae) = Phone::start(options("alice", (base, base + 99), ReferPolicy::Trusted))
            .await
            .unwrap();
        let (b, mut be) = Phone::start(options("bob", (base + 100, base + 199), policy))
            .await
            .unwrap();
        let out = a.dial(b.contact()).await.unwrap();
        let inc = until(&mut be, |e| match e {
            PhoneEvent::Incoming { call, .. } => Some(*call),
            _ => None,
        })
        .await;
        b.answer(inc).await.unwrap();
        until(&mut ae, |e| {
            matches!(e, PhoneEvent::Established { .. }).then_some(())
        })
        .await;
        // Alice (no registrar between them) asks Bob to call a third party.
        a.transfer(out, "sip:carol@192.0.2.7").await.unwrap();
        let target = until(&mut be, |e| match e {
            PhoneEvent::TransferRequested { target, .. } => Some(target.clone()),
            _ => None,
        })
        .await;
        assert_eq!(target, "sip:carol@192.0.2.7");
        let refusal = if policy == ReferPolicy::Ask {
            let why = until(&mut be, |e| match e {
                PhoneEvent::TransferConsent { call, refusal, .. } if *call == inc => {
                    Some(refusal.clone())
                }
                PhoneEvent::TransferRefused { .. } | PhoneEvent::TransferCalling { .. } => {
                    panic!("acted without asking: {e:?}")
                }
                _ => None,
            })
            .await;
            assert_eq!(why, ReferRefusal::NoRegistrar);
            b.decline_transfer(inc).unwrap();
            ReferRefusal::Declined
        } else {
            ReferRefusal::NoRegistrar
        };
        let got = until(&mut be, |e| match e {
            PhoneEvent::TransferRefused { refusal, .. } => Some(refusal.clone()),
            PhoneEvent::TransferCalling { .. } => panic!("followed a stranger's REFER"),
            _ => None,
        })
        .await;
        assert_eq!(got, refusal);
        // The transferor hears the refusal.
        let status = until(&mut ae, |e| match e {
            PhoneEvent::TransferProgress {
                status,
                final_: true,
                ..
            } => Some(*status),
            _ => None,
        })
        .await;
        assert_eq!(status, 603);
        a.hangup_all().unwrap();
        until(&mut be, |e| {
            matches!(e, PhoneEvent::Ended { .. }).then_some(())
        })
        .await;
        a.close().await;
        b.close().await;
    }
}

/// A registrar on a thread of its own (the sip crate's standalone loop) knowing alice and
/// bob; stops when the returned flag is set.
fn registrar() -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    use switchboard_sip::registrar::{Registrar, RegistrarConfig};
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut r = Registrar::new(
            RegistrarConfig {
                realm: "127.0.0.1".into(),
                ..RegistrarConfig::default()
            },
            [7; 32],
            switchboard_sip::auth::Algorithm::Md5,
        );
        let passwords = |u: &str| match u {
            "alice" => Some("wonderland".to_owned()),
            "bob" => Some("builder".to_owned()),
            _ => None,
        };
        switchboard_sip::registrar_udp::serve_udp(&socket, &mut r, passwords, &s2).unwrap();
    });
    (addr, stop, server)
}

#[tokio::test]
async fn several_accounts_register_unregister_and_a_wrong_password_is_refused() {
    let (addr, stop, server) = registrar();
    let mut o = options("alice", (41600, 41699), ReferPolicy::Trusted);
    o.account.server = Some(format!("sip:{addr}"));
    o.account.password = Some("wonderland".into());
    o.more_accounts = vec![("bob".into(), "builder".into())];
    o.expires = 60;
    let (phone, mut events) = Phone::start(o).await.unwrap();
    let mut registered = Vec::new();
    while registered.len() < 2 {
        let (account, aor, expires) = until(&mut events, |e| match e {
            PhoneEvent::Registration {
                account,
                aor,
                state: RegistrationState::Registered { expires, .. },
            } => Some((*account, aor.clone(), *expires)),
            PhoneEvent::Registration { state, .. } => panic!("not registered: {state:?}"),
            _ => None,
        })
        .await;
        assert_eq!(expires, 60);
        registered.push((account, aor));
    }
    registered.sort();
    assert_eq!(
        registered,
        vec![
            (0, "sip:alice@127.0.0.1".to_owned()),
            (1, "sip:bob@127.0.0.1".to_owned())
        ]
    );
    assert_eq!(phone.unregister().await.unwrap(), 2);
    for _ in 0..2 {
        until(&mut events, |e| {
            matches!(
                e,
                PhoneEvent::Registration {
                    state: RegistrationState::Unregistered,
                    ..
                }
            )
            .then_some(())
        })
        .await;
    }
    // Nothing is registered any more: closing sends nothing else.
    assert_eq!(phone.unregister().await.unwrap(), 0);
    phone.close().await;

    let mut o = options("alice", (41700, 41799), ReferPolicy::Trusted);
    o.account.server = Some(format!("sip:{addr}"));
    o.account.password = Some("not-the-password".into());
    let (phone, mut events) = Phone::start(o).await.unwrap();
    let status = until(&mut events, |e| match e {
        PhoneEvent::Registration {
            state: RegistrationState::Refused { status, .. },
            ..
        } => Some(*status),
        PhoneEvent::Registration {
            state: RegistrationState::Registered { .. },
            ..
        } => panic!("registered with a wrong password"),
        _ => None,
    })
    .await;
    assert!(matches!(status, 401 | 403), "{status}");
    phone.close().await;
    // A server without a password is an error before anything is sent.
    let mut o = options("alice", (41800, 41899), ReferPolicy::Trusted);
    o.account.server = Some(format!("sip:{addr}"));
    assert!(matches!(
        Phone::start(o).await.map(|_| ()),
        Err(CallError::Options(_))
    ));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

#[tokio::test]
async fn an_attended_transfer_consults_then_connects_the_two_others() {
    // Alice talks to Bob, consults Carol, then connects Bob to Carol (REFER with
    // Replaces); Bob is asked (no registrar between them) and accepts.
    let (a, mut ae) = Phone::start(options("alice", (41900, 41999), ReferPolicy::Trusted))
        .await
        .unwrap();
    let (b, mut be) = Phone::start(options("bob", (42000, 42099), ReferPolicy::Ask))
        .await
        .unwrap();
    let (c, mut ce) = Phone::start(options("carol", (42100, 42199), ReferPolicy::Trusted))
        .await
        .unwrap();
    let (to_bob, at_bob) = connect(&a, &mut ae, &b, &mut be).await;
    // Completing before there is a consultation says so.
    assert!(a.complete_transfer(to_bob).await.is_err());
    let consult = a.consult(to_bob, c.contact(), false).await.unwrap();
    until(&mut ae, |e| match e {
        PhoneEvent::Consulting { call, for_call, .. } if *call == consult => {
            assert_eq!(*for_call, to_bob);
            Some(())
        }
        _ => None,
    })
    .await;
    let at_carol = until(&mut ce, |e| match e {
        PhoneEvent::Incoming { call, .. } => Some(*call),
        _ => None,
    })
    .await;
    c.answer(at_carol).await.unwrap();
    until(&mut ae, |e| {
        matches!(e, PhoneEvent::Established { call, .. } if *call == consult).then_some(())
    })
    .await;
    // Not completed by itself: nothing is transferred until asked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(e) = ae.try_recv() {
        assert!(!matches!(e, PhoneEvent::Transferring { .. }), "{e:?}");
    }
    a.complete_transfer(consult).await.unwrap();
    until(&mut ae, |e| match e {
        PhoneEvent::Transferring {
            call, consultation, ..
        } => {
            assert_eq!((*call, *consultation), (to_bob, Some(consult)));
            Some(())
        }
        _ => None,
    })
    .await;
    let (asked, replaces) = until(&mut be, |e| match e {
        PhoneEvent::TransferRequested {
            call,
            replaces,
            target,
            ..
        } => {
            assert!(target.contains("carol@"), "{target}");
            Some((*call, replaces.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(asked, at_bob);
    assert!(replaces.is_some());
    until(&mut be, |e| {
        matches!(e, PhoneEvent::TransferConsent { call, .. } if *call == at_bob).then_some(())
    })
    .await;
    b.accept_transfer(at_bob).unwrap();
    let new_call = until(&mut be, |e| match e {
        PhoneEvent::TransferCalling { new_call, .. } => Some(*new_call),
        _ => None,
    })
    .await;
    // Carol's phone sees a call that replaces the consultation, and answers it.
    let (replacing, replaced) = until(&mut ce, |e| match e {
        PhoneEvent::Incoming {
            call,
            replaces: Some(r),
            ..
        } => Some((*call, *r)),
        _ => None,
    })
    .await;
    assert_eq!(replaced, at_carol);
    c.answer(replacing).await.unwrap();
    until(&mut be, |e| {
        matches!(e, PhoneEvent::Established { call, .. } if *call == new_call).then_some(())
    })
    .await;
    // Alice hears that it worked and leaves: both her calls end.
    let mut ended = Vec::new();
    while ended.len() < 2 {
        let call = until(&mut ae, |e| match e {
            PhoneEvent::TransferProgress {
                status,
                final_: true,
                ..
            } => {
                assert_eq!(*status, 200);
                None
            }
            PhoneEvent::Ended { call, .. } => Some(*call),
            _ => None,
        })
        .await;
        ended.push(call);
    }
    ended.sort();
    assert_eq!(ended, vec![to_bob, consult]);
    b.hangup(new_call).unwrap();
    until(&mut ce, |e| {
        matches!(e, PhoneEvent::Ended { call, .. } if *call == replacing).then_some(())
    })
    .await;
    for p in [a, b, c] {
        p.close().await;
    }
}

#[tokio::test]
async fn a_conference_made_while_a_hold_is_under_way_resumes_the_held_call() {
    // Alice talks to Bob and to Carol, holds Bob and at once joins the two: the hold's
    // answer has not come yet (the audio does not know Bob is held), yet Bob ends resumed.
    let (a, mut ae) = Phone::start(options("alice", (42200, 42299), ReferPolicy::Trusted))
        .await
        .unwrap();
    let (b, mut be) = Phone::start(options("bob", (42300, 42399), ReferPolicy::Trusted))
        .await
        .unwrap();
    let (c, mut ce) = Phone::start(options("carol", (42400, 42499), ReferPolicy::Trusted))
        .await
        .unwrap();
    let mut calls = Vec::new();
    for (p, pe) in [(&b, &mut be), (&c, &mut ce)] {
        calls.push(connect(&a, &mut ae, p, pe).await.0);
    }
    a.hold(calls[0], true).await.unwrap();
    let joined = a.conference(&calls).await.unwrap();
    assert_eq!(joined, calls);
    // Bob is held (sendonly from Alice: he receives only), then resumed.
    let first = until(&mut be, |e| match e {
        PhoneEvent::MediaChanged { media, .. } => Some(media.direction.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first, "recvonly");
    let then = until(&mut be, |e| match e {
        PhoneEvent::MediaChanged { media, .. } => Some(media.direction.clone()),
        _ => None,
    })
    .await;
    assert_eq!(then, "sendrecv");
    for p in [a, b, c] {
        p.close().await;
    }
}

/// A WAV file of `seconds` of a `hz` tone at 8 kHz.
fn tone_file(dir: &std::path::Path, name: &str, hz: f64, seconds: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut sink = switchboard_media::wav::WavSink::create(&path, 8000).unwrap();
    sink.write(&switchboard_media::tone::sine(
        hz,
        8000,
        8000.0,
        0,
        8000 * seconds,
    ))
    .unwrap();
    sink.finish().unwrap();
    path
}

#[tokio::test]
async fn in_a_conference_each_hears_the_others_and_our_mute_silences_only_us() {
    // Alice (1000 Hz) joins Bob (440 Hz) and Carol (660 Hz), then mutes: Bob goes on hearing
    // Carol, and Alice no more.
    let dir = tempfile::tempdir().unwrap();
    let mut alice = options("alice", (42500, 42599), ReferPolicy::Trusted);
    alice.media.play = Some(tone_file(dir.path(), "alice.wav", 1000.0, 30));
    let (a, mut ae) = Phone::start(alice).await.unwrap();
    let mut calls = Vec::new();
    let mut others = Vec::new();
    for (name, hz, ports) in [
        ("bob", 440.0, (42600, 42699)),
        ("carol", 660.0, (42700, 42799)),
    ] {
        let mut o = options(name, ports, ReferPolicy::Trusted);
        o.media.play = Some(tone_file(dir.path(), &format!("{name}.wav"), hz, 30));
        o.media.record = Some(dir.path().join(format!("{name}-heard.wav")));
        let (p, mut pe) = Phone::start(o).await.unwrap();
        calls.push(connect(&a, &mut ae, &p, &mut pe).await.0);
        others.push((p, pe));
    }
    a.conference(&calls).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.mute(true).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.hangup_all().unwrap();
    for (p, mut pe) in others {
        until(&mut pe, |e| {
            matches!(e, PhoneEvent::Ended { .. }).then_some(())
        })
        .await;
        p.close().await;
    }
    a.close().await;
    let heard = |name: &str| {
        switchboard_media::wav::read_mono(&dir.path().join(format!("{name}-heard.wav"))).unwrap()
    };
    // Per recording: blocks of Alice before and after the mute, and of the other party.
    let look = |name: &str, other: f64| {
        let (samples, rate) = heard(name);
        let last = (rate as usize).min(samples.len());
        let (before, after) = samples.split_at(samples.len() - last);
        let share = |s: &[i16], hz| switchboard_media::tone::blocks_holding(s, rate, hz, 0.2);
        (
            share(before, 1000.0),
            share(after, 1000.0),
            share(after, other),
        )
    };
    let (bob_alice, bob_alice_muted, bob_carol) = look("bob", 660.0);
    let (carol_alice, carol_alice_muted, carol_bob) = look("carol", 440.0);
    eprintln!("bob: alice {bob_alice} then {bob_alice_muted} muted, carol {bob_carol} (last 20 blocks); carol: alice {carol_alice} then {carol_alice_muted}, bob {carol_bob}");
    assert!(
        bob_alice >= 20 && carol_alice >= 20,
        "Alice was heard before her mute"
    );
    assert!(
        bob_alice_muted <= 1 && carol_alice_muted <= 1,
        "Alice was heard while muted"
    );
    assert!(
        bob_carol >= 15 && carol_bob >= 15,
        "the two others stopped hearing each other"
    );
}
