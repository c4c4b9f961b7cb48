//! The desktop's phone (`switchboard_agent::desk::DeskPhone`, headless, as the window drives
//! it) on a plain SIP account of Settings → Phone, against the real Kamailio
//! (tests/peers/kamailio/proxy.cfg: registrar and proxy with digest authentication, 401 for
//! REGISTER, 407 for INVITE) and a baresip registered there, on 127.0.0.1: a wrong password
//! is refused and said with what to do; the right one registers; the router's features say
//! they need the router; the phone calls baresip and baresip calls the phone, each side
//! playing a tone of its own (the phone a WAV at 1000 Hz in place of its microphone, baresip
//! 440 Hz) that a Goertzel detector finds in what the other side heard; the phone's own
//! history keeps the calls, a call cut by the phone starting anew (Settings → Phone saved) too.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use switchboard_agent::call::Secret;
use switchboard_agent::desk::{AudioFiles, CallStage, ConsultStep, DeskPhone, RegistrationView};
use switchboard_agent::{AudioSettings, PhoneSource, SipAccountSettings, SipTransport};
use switchboard_media::tone;
use switchboard_media::wav::{read_mono, WavSink};

const WAIT: Duration = Duration::from_secs(20);
const PHONE_HZ: f64 = 1000.0;
const BARESIP_HZ: u32 = 440;

async fn until<T>(what: &str, desk: &DeskPhone, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}: {:?}",
            desk.view()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The window's phone on Alice's plain account at `k`, playing a 1000 Hz tone as its
/// microphone, once registered (the tone lives in the directory returned).
async fn alice_registered(k: &Kamailio) -> (DeskPhone, tempfile::TempDir) {
    let account = SipAccountSettings {
        registrar: format!("sip:127.0.0.1:{}", k.port),
        user: "alice".into(),
        auth_user: None,
        display_name: None,
        transport: SipTransport::Udp,
    };
    let dir = tempfile::tempdir().unwrap();
    let mic = dir.path().join("tone1000.wav");
    tone_wav(&mic, PHONE_HZ, 30);
    let desk = DeskPhone::new();
    desk.use_audio_files(AudioFiles {
        play: Some(mic),
        record: None,
    });
    desk.start_plain(
        &account,
        Secret("wonderland".into()),
        &AudioSettings::default(),
    )
    .await
    .unwrap();
    until("registered", &desk, || match desk.view().registration {
        RegistrationView::Registered { .. } => Some(()),
        _ => None,
    })
    .await;
    (desk, dir)
}

/// Bob (headless, registered at `k`, `bob_extra` added) calls the phone, which answers and
/// consults Carol (headless, answering two calls, each hung up after `carol_hangup_after`
/// seconds); returns (Carol, Bob) once the consultation is up.
async fn consulting_carol(
    desk: &DeskPhone,
    k: &Kamailio,
    carol_hangup_after: &str,
    bob_extra: &[&str],
) -> (std::process::Child, std::process::Child) {
    let server = format!("sip:127.0.0.1:{}", k.port);
    let mut carol = spawn_agent(&[
        "answer",
        "--server",
        &server,
        "--user",
        "carol",
        "--password",
        "carrots",
        "--calls",
        "2",
        "--hangup-after",
        carol_hangup_after,
        "--wait",
        "40",
    ]);
    tokio::task::block_in_place(|| events_until(&mut carol, "registered"));
    let alice = format!("sip:alice@127.0.0.1:{}", k.port);
    let mut args = vec![
        "call",
        &alice,
        "--server",
        &server,
        "--user",
        "bob",
        "--password",
        "builder",
        "--hangup-after",
        "30",
    ];
    args.extend_from_slice(bob_extra);
    let bob = spawn_agent(&args);
    let ringing = until("Bob's call to ring", desk, || {
        desk.view().call.filter(|c| c.stage == CallStage::Ringing)
    })
    .await;
    desk.answer(ringing.id).await.unwrap();
    until("Bob's call to be up", desk, || {
        desk.view().call.filter(|c| c.stage == CallStage::Talking)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    desk.consult("carol").await.unwrap();
    until("the consultation to be up", desk, || {
        desk.view()
            .consult
            .filter(|c| c.state == switchboard_api::ConsultState::Talking)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    (carol, bob)
}

/// Bob's media changes on his call with the phone (his first established call).
fn bobs_media_changes(bev: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let first = bev
        .iter()
        .find(|e| e["event"] == "established")
        .map(|e| e["call"].clone())
        .unwrap();
    bev.iter()
        .filter(|e| e["event"] == "media" && e["call"] == first)
        .cloned()
        .collect()
}

/// Of the loud 50 ms blocks of the WAV at `path` after its first `skip_s` seconds, the share
/// where `hz` dominates `other`, and how many loud blocks there were.
fn tone_share(path: &Path, skip_s: u32, hz: f64, other: f64) -> (f64, usize) {
    let (samples, rate) = read_mono(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let skip = (rate * skip_s) as usize;
    let (wins, loud) = tone::detect(samples.get(skip..).unwrap_or_default(), rate, &[hz, other]);
    (wins[0] as f64 / loud.max(1) as f64, loud)
}

/// What the phone recorded of its `n`th call (1: `heard.wav`, then `heard-2.wav` …), once
/// the recording holds the call's audio.
async fn phone_heard(dir: &Path, n: usize) -> PathBuf {
    let path = match n {
        1 => dir.join("heard.wav"),
        n => dir.join(format!("heard-{n}.wav")),
    };
    let start = std::time::Instant::now();
    loop {
        if read_mono(&path).is_ok_and(|(s, _)| s.len() > 8000) {
            return path;
        }
        let names: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            start.elapsed() < WAIT,
            "no recording {} of the call in {names:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_tones_crossed(phone_heard: &Path, bob: &Baresip) {
    // The phone's first second is not judged: it holds a few hundred milliseconds of
    // concealment noise while its jitter buffer fills with the first packets.
    let (share, loud) = tone_share(phone_heard, 1, f64::from(BARESIP_HZ), PHONE_HZ);
    assert!(
        loud >= 30 && share >= 0.9,
        "the phone heard baresip's {BARESIP_HZ} Hz in {share:.2} of {loud} blocks"
    );
    let heard = bob.heard_wav(Duration::from_secs(10));
    let (share, loud) = tone_share(&heard, 0, PHONE_HZ, f64::from(BARESIP_HZ));
    assert!(
        loud >= 30 && share >= 0.9,
        "baresip heard the phone's {PHONE_HZ} Hz in {share:.2} of {loud} blocks\n{}",
        bob.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desks_phone_on_a_plain_sip_account_registers_with_kamailio_and_calls_both_ways() {
    let k = tokio::task::block_in_place(|| start_kamailio("proxy.cfg"));
    let registrar = format!("sip:127.0.0.1:{}", k.port);
    let account = SipAccountSettings {
        registrar: registrar.clone(),
        user: "alice".into(),
        auth_user: None,
        display_name: Some("Alice Liddell".into()),
        transport: SipTransport::Udp,
    };
    let dir = tempfile::tempdir().unwrap();
    let tone_wav = dir.path().join("tone1000.wav");
    let mut sink = WavSink::create(&tone_wav, 8000).unwrap();
    sink.write(&tone::sine(PHONE_HZ, 8000, 8000.0, 0, 8000 * 30))
        .unwrap();
    sink.finish().unwrap();
    let desk = DeskPhone::new();
    desk.use_audio_files(AudioFiles {
        play: Some(tone_wav),
        record: Some(dir.path().join("heard.wav")),
    });
    let audio = AudioSettings::default();

    // A wrong password: Kamailio's refusal, who refused, and what to do.
    desk.start_plain(&account, Secret("not-the-password".into()), &audio)
        .await
        .unwrap();
    let (code, reason) = until("the refusal", &desk, || match desk.view().registration {
        RegistrationView::Failing { code, reason } => Some((code, reason)),
        _ => None,
    })
    .await;
    assert_eq!(code, "sip_account_refused");
    assert!(
        reason.starts_with(&format!(
            "SIP registration refused by {registrar}: 403 Forbidden — "
        )) && reason.contains("password in Settings → Phone"),
        "{reason}"
    );
    assert!(!reason.contains("not-the-password"), "{reason}");
    assert_eq!(desk.view().source, PhoneSource::SipAccount);

    // The right one: registered, no router asked.
    desk.start_plain(&account, Secret("wonderland".into()), &audio)
        .await
        .unwrap();
    let aor = until("registered", &desk, || match desk.view().registration {
        RegistrationView::Registered { aor } => Some(aor),
        _ => None,
    })
    .await;
    assert!(aor.contains("alice@127.0.0.1"), "{aor}");
    assert!(desk.view().problem.is_none());
    assert_eq!(desk.view().agent, None, "no router agent");
    // The router's features say they need the router; Ready has nobody to tell. Transfer
    // and consult are the phone's own here, and need a call.
    let e = desk.targets().await.unwrap_err();
    assert_eq!(e.code(), "router_only", "{e}");
    assert!(e.to_string().contains("Settings → Phone"), "{e}");
    for e in [
        desk.transfer("bob").await.unwrap_err(),
        desk.consult("bob").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), "no_such_call", "{e}");
    }
    desk.set_state(true, None).await.unwrap();

    // The phone calls bob (registered at Kamailio, answering by itself) by his user name.
    let bob = tokio::task::block_in_place(|| {
        let b = Baresip::start_with_account(
            "bob",
            &format!(
                "<sip:bob@127.0.0.1:{}>;auth_pass=builder;regint=60;answermode=auto",
                k.port
            ),
            BARESIP_HZ,
        );
        b.wait_for("200 OK", Duration::from_secs(10));
        b
    });
    let call = desk.dial("bob").await.unwrap();
    until("the call to be up", &desk, || {
        desk.view()
            .call
            .filter(|c| c.stage == CallStage::Talking && c.outgoing)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let q = desk.quality(call).await.unwrap();
    assert!(q.packets_received > 80 && q.packets_sent > 80, "{q:?}");
    desk.hangup(call).unwrap();
    until("the call to end", &desk, || {
        desk.view().call.is_none().then_some(())
    })
    .await;
    let heard = phone_heard(dir.path(), 1).await;
    tokio::task::block_in_place(|| {
        bob.wait_for("terminated", Duration::from_secs(5));
        assert_tones_crossed(&heard, &bob);
    });

    // Bob calls alice: it rings at the phone, which answers; bob hangs up.
    bob.command("dial", &format!("sip:alice@127.0.0.1:{}", k.port));
    let ringing = until("the call to ring", &desk, || {
        desk.view()
            .call
            .filter(|c| c.stage == CallStage::Ringing && !c.outgoing)
    })
    .await;
    assert!(ringing.from.contains("bob"), "{ringing:?}");
    // Shown as a person reads it: the From's user part, not its header.
    assert_eq!(ringing.offer.caller.as_deref(), Some("bob"), "{ringing:?}");
    assert_eq!(ringing.offer.queue, None, "no router, no queue");
    desk.answer(ringing.id).await.unwrap();
    until("the call to be up", &desk, || {
        desk.view()
            .call
            .filter(|c| c.stage == CallStage::Talking && c.answered_unix_ms.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    bob.command("hangup", "");
    until("the call to end", &desk, || {
        desk.view().call.is_none().then_some(())
    })
    .await;
    assert!(desk.view().wrap_up.is_none(), "no wrap-up without a router");
    let heard = phone_heard(dir.path(), 2).await;
    tokio::task::block_in_place(|| assert_tones_crossed(&heard, &bob));

    // The phone's own history holds both calls.
    let history = desk.history(10).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history
            .iter()
            .all(|h| h.source == "phone" && h.outcome == "answered"),
        "{history:?}"
    );
    assert!(
        history.iter().any(|h| h.outgoing && h.who == "bob"),
        "{history:?}"
    );

    // Bob calls once more and Settings → Phone is saved during the call, which starts the
    // phone anew: bob's call is hung up, and the history keeps it.
    bob.command("dial", &format!("sip:alice@127.0.0.1:{}", k.port));
    let ringing = until("the third call to ring", &desk, || {
        desk.view()
            .call
            .filter(|c| c.stage == CallStage::Ringing && !c.outgoing)
    })
    .await;
    desk.answer(ringing.id).await.unwrap();
    until("the third call to be up", &desk, || {
        desk.view()
            .call
            .filter(|c| c.stage == CallStage::Talking && c.id == ringing.id)
    })
    .await;
    desk.start_plain(&account, Secret("wonderland".into()), &audio)
        .await
        .unwrap();
    assert!(desk.view().call.is_none(), "{:?}", desk.view());
    // Bob's log says "session closed" for each call the phone ended (the first, and this).
    tokio::task::block_in_place(|| bob.wait_for_times("session closed", 2, Duration::from_secs(5)));
    until("registered again", &desk, || {
        match desk.view().registration {
            RegistrationView::Registered { .. } => Some(()),
            _ => None,
        }
    })
    .await;
    let history = desk.history(10).await.unwrap();
    assert_eq!(history.len(), 3, "the call cut is kept: {history:?}");
    assert_eq!(
        history
            .iter()
            .filter(|h| !h.outgoing && h.outcome == "answered" && h.who == "bob")
            .count(),
        2,
        "{history:?}"
    );

    desk.stop().await;
    assert_eq!(desk.view().registration, RegistrationView::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registrar_says_what_to_check() {
    // A UDP port nobody answers on.
    let port = free_udp_port();
    let registrar = format!("sip:127.0.0.1:{port}");
    let account = SipAccountSettings {
        registrar: registrar.clone(),
        user: "alice".into(),
        auth_user: Some("alice-auth".into()),
        display_name: None,
        transport: SipTransport::Udp,
    };
    let desk = DeskPhone::new();
    let dir = tempfile::tempdir().unwrap();
    desk.use_audio_files(AudioFiles {
        play: None,
        record: Some(dir.path().join("heard.wav")),
    });
    desk.start_plain(
        &account,
        Secret("wonderland".into()),
        &AudioSettings::default(),
    )
    .await
    .unwrap();
    let start = std::time::Instant::now();
    let reason = loop {
        if let RegistrationView::Failing { code, reason } = desk.view().registration {
            assert_eq!(code, "sip_account_unreachable");
            break reason;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            desk.view()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        reason.contains(&registrar) && reason.contains("Settings → Phone"),
        "{reason}"
    );
    desk.stop().await;
}

/// A plain account's consultation handed over (REFER with Replaces, RFC 3891, through
/// Kamailio): Bob, a headless agent registered there, calls the phone, which answers, consults
/// Carol (another, answering by herself) and completes. Bob's next call is with Carol, in place
/// of the consultation; the phone's calls end; and Bob's call with the phone was held once and
/// never resumed on its way out — the consultation's end (Carol's BYE on the replaced dialog,
/// which races the transfer's final NOTIFY) is no reason to take a caller being handed over
/// off hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_account_consults_and_hands_the_caller_over() {
    let k = tokio::task::block_in_place(|| start_kamailio("proxy.cfg"));
    let (desk, _dir) = alice_registered(&k).await;
    let (mut carol, mut bob) = consulting_carol(&desk, &k, "6", &[]).await;
    desk.consult_step(ConsultStep::Complete).await.unwrap();
    until("the phone's calls to end", &desk, || {
        (desk.view().call.is_none() && desk.view().consult.is_none()).then_some(())
    })
    .await;

    let bob_out = tokio::task::block_in_place(|| wait_output(&mut bob, WAIT, &[]));
    let bev = events(&bob_out.stdout);
    assert!(bob_out.status.success(), "{bev:?}");
    assert!(
        bev.iter().any(|e| e["event"] == "transfer_requested"),
        "{bev:?}"
    );
    assert_eq!(
        bev.iter().filter(|e| e["event"] == "established").count(),
        2,
        "Bob talked to the phone, then to Carol: {bev:?}"
    );
    // The phone's call with Bob changed its media once: the hold.
    let changes = bobs_media_changes(&bev);
    assert_eq!(changes.len(), 1, "held once, never resumed: {changes:?}");
    assert_ne!(changes[0]["media"]["direction"], "sendrecv", "{changes:?}");
    let carol_out = tokio::task::block_in_place(|| wait_output(&mut carol, WAIT, &[]));
    let cev = events(&carol_out.stdout);
    assert!(
        cev.iter()
            .any(|e| e["event"] == "ended" && e["reason"] == "replaced"),
        "Bob's call replaced the consultation: {cev:?}"
    );
    desk.stop().await;
}

/// The caller's phone refuses the hand-over (Bob's account is of another domain than the
/// phone's, so his agent follows no REFER from it): the window says the transfer did not go
/// through and keeps the caller; ending the consultation then takes the caller off hold at
/// once, not after the 5 s the phone gives a hand-over in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hand_over_leaves_the_caller_with_the_phone_and_resumes_them_on_cancel() {
    let k = tokio::task::block_in_place(|| start_kamailio("proxy.cfg"));
    let (desk, _dir) = alice_registered(&k).await;
    let (mut carol, mut bob) =
        consulting_carol(&desk, &k, "30", &["--domain", "example.org"]).await;
    desk.consult_step(ConsultStep::Complete).await.unwrap();
    let problem = until("the refusal", &desk, || desk.view().problem).await;
    assert_eq!(problem.code, "transfer_not_done", "{problem:?}");
    let view = desk.view();
    assert!(
        view.call.as_ref().is_some_and(|c| c.held) && view.consult.is_some(),
        "the caller still held, the consultation still up: {view:?}"
    );
    desk.consult_step(ConsultStep::Cancel).await.unwrap();
    let cancelled = std::time::Instant::now();
    until("the caller resumed", &desk, || {
        desk.view()
            .call
            .filter(|c| !c.held && c.stage == CallStage::Talking)
    })
    .await;
    let resumed_after = cancelled.elapsed();
    assert!(
        resumed_after < Duration::from_secs(4),
        "the caller waited {resumed_after:?} after the consultation ended"
    );
    let call = desk.view().call.unwrap();
    desk.hangup(call.id).unwrap();
    let bob_out = tokio::task::block_in_place(|| wait_output(&mut bob, WAIT, &[]));
    let bev = events(&bob_out.stdout);
    assert!(
        bev.iter().any(|e| e["event"] == "transfer_refused"),
        "{bev:?}"
    );
    let changes = bobs_media_changes(&bev);
    assert_eq!(changes.len(), 2, "held, then resumed: {changes:?}");
    assert_eq!(changes[1]["media"]["direction"], "sendrecv", "{changes:?}");
    let _ = carol.kill();
    let _ = carol.wait();
    desk.stop().await;
}
