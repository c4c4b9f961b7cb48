//! Settings → Audio changed while a call goes on (a headset plugged in and chosen): the call's
//! sound moves to the new device at once and the call goes on; the ring moves too. The phone
//! of the library (what the window and the CLI run), on real sound devices: cpal through
//! ALSA's pulse plugin to a PulseAudio server of the test's own, whose null sinks stand in for
//! a laptop's speaker (`sb_speaker`, ALSA `default`) and a headset (`sb_ring`, ALSA `jack`);
//! the caller is a headless agent playing 1000 Hz.
//!
//! A test binary of its own: it points this process's sound at the test's server
//! (`PULSE_SERVER`, and a `HOME` whose ALSA configuration names `jack`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use switchboard_agent::call::{Account, Phone, PhoneEvent, PhoneEvents, PhoneOptions, RingOptions};
use switchboard_media::device::DeviceChoice;

/// The next event `pick` takes, skipping others; panics after 15 s.
async fn until<T>(events: &mut PhoneEvents, mut pick: impl FnMut(&PhoneEvent) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let e = events.recv().await.expect("the phone stopped");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await
    .expect("the event did not come within 15 s")
}

fn output(device: &str) -> DeviceChoice {
    DeviceChoice {
        input: None,
        output: Some(device.to_owned()),
        open_input: false,
        open_output: true,
    }
}

#[test]
fn a_call_moves_to_the_output_device_chosen_while_it_goes_on() {
    let pulse = PulseServer::start();
    std::env::set_var("PULSE_SERVER", pulse.server());
    std::env::set_var("HOME", pulse.alsa_home());
    let dir = tempfile::tempdir().unwrap();
    let speaker_wav = dir.path().join("speaker.wav");
    let headset_wav = dir.path().join("headset.wav");
    let speaker_rec = pulse.record_steady("sb_speaker", &speaker_wav);
    let headset_rec = pulse.record_steady("sb_ring", &headset_wav);
    let far = dir.path().join("far.wav");
    tone_wav(&far, 1000.0, 14);
    // Each sink also has its recorder's keep-alive stream.
    let count = |v: &[String], sink: &str| v.iter().filter(|s| *s == sink).count();
    let pair = |v: &[String]| (count(v, "sb_speaker"), count(v, "sb_ring"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (before, after, ringing, caller) = rt.block_on(async {
        let mut o = PhoneOptions::new(Account::new("agent"));
        o.bind = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        o.media.codecs = vec![switchboard_media::session::Codec::Pcmu];
        o.media.devices = Some(output("default"));
        o.ring = Some(RingOptions {
            device: Some("default".into()),
            volume: 0.5,
        });
        let (phone, mut events) = Phone::start(o).await.unwrap();
        let port = phone.local_addr().port();
        let uri = format!("sip:agent@127.0.0.1:{port}");
        let far = far.clone();
        let caller = tokio::task::spawn_blocking(move || {
            run_agent(
                &[
                    "call",
                    &uri,
                    "--play",
                    far.to_str().unwrap(),
                    "--hangup-after",
                    "8",
                ],
                &[],
            )
        });
        let call = until(&mut events, |e| match e {
            PhoneEvent::Incoming { call, .. } => Some(*call),
            _ => None,
        })
        .await;
        phone.ring(call).unwrap();
        // Ringing on the speaker (the ring's stream beside the call's output); the ring
        // moves to the headset while it sounds.
        until(&mut events, |e| {
            matches!(e, PhoneEvent::Ringing { .. }).then_some(())
        })
        .await;
        phone
            .set_ring(Some(RingOptions {
                device: Some("jack".into()),
                volume: 0.5,
            }))
            .unwrap();
        let ringing =
            tokio::task::block_in_place(|| pulse.sinks_when(|v| count(v, "sb_ring") == 2));
        phone.answer(call).await.unwrap();
        until(&mut events, |e| {
            matches!(e, PhoneEvent::Established { .. }).then_some(())
        })
        .await;
        // The call on the speaker for 2 s, then moved to the headset.
        let before = tokio::task::block_in_place(|| pulse.sinks_when(|v| pair(v) == (2, 1)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        phone.set_devices(Some(output("jack"))).unwrap();
        let after = tokio::task::block_in_place(|| pulse.sinks_when(|v| pair(v) == (1, 2)));
        let caller = caller.await.unwrap();
        // The call went on to the caller's hang-up.
        let reason = until(&mut events, |e| match e {
            PhoneEvent::Ended { reason, .. } => Some(serde_json::to_value(reason).unwrap()),
            _ => None,
        })
        .await;
        phone.close().await;
        (before, after, ringing, (caller, reason))
    });
    stop_recorder(speaker_rec);
    stop_recorder(headset_rec);
    let ((out, ev), reason) = caller;
    assert!(out.status.success(), "{ev:?}");
    assert_eq!(reason["reason"], "remote_bye", "{reason}");
    assert_eq!(
        count(&ringing, "sb_ring"),
        2,
        "the ring moved to the headset while it sounded: {ringing:?}"
    );
    assert_eq!(pair(&before), (2, 1), "the call on the speaker: {before:?}");
    assert_eq!(pair(&after), (1, 2), "the call on the headset: {after:?}");
    // The caller's 1000 Hz came out of the speaker for the first 2 s or so (at least 1 s,
    // and far from the whole 8 s call), then out of the headset for the rest.
    let (wins, loud) = notes(&speaker_wav, &[1000.0, 440.0, 480.0]);
    assert!(
        (20..=100).contains(&wins[0]),
        "the call on the speaker first: {wins:?} of {loud}"
    );
    let (wins, loud) = notes(&headset_wav, &[1000.0, 440.0, 480.0]);
    assert!(
        wins[0] >= 60,
        "the call on the headset after the move: {wins:?} of {loud}"
    );
}
