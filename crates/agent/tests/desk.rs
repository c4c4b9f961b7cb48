//! The desk (`switchboard_agent::desk`) against a real router in this process, on 127.0.0.1:
//! credentials from the router's API, the phone registered with them, Ready at the router, a
//! queue call from a headless caller on the trunk shown, answered and hung up, wrap-up with
//! the queue's codes (a code the queue does not have is refused, said by code, and the wrap-up
//! stays), and the disposition on the call record; an account that is no agent is refused with
//! a code the window says in the person's language. The window's own test
//! (`tests/e2e/tests/desktop_phone.rs`) drives the same flow through the real window.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use switchboard_agent::desk::{AgentApi, CallStage, DeskPhone, RegistrationView};
use switchboard_agent::AudioSettings;
use switchboard_router::config::Config;

const CENTER: &str = r#"
[sip]
listen = "127.0.0.1:0"

[[tenants]]
id = "contoso"
domain = "contoso.example"

[[tenants.trunks]]
name = "carrier"
allow = ["127.0.0.1"]

[[tenants.numbers]]
number = "+18005550100"
queue = "general"

[[tenants.queues]]
name = "general"
alert_seconds = 10
wrap_up_seconds = 60
dispositions = ["resolved", "cut short", "callback"]

[[tenants.agents]]
upn = "adele@contoso.example"
name = "Adele Vance"
"#;

const WAIT: Duration = Duration::from_secs(20);

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The router of [`CENTER`] in this process, its data in `dir`: the running router, its SIP
/// port and its base URL.
async fn center(dir: &Path) -> (switchboard_router::Background, u16, String) {
    let mut config = Config::from_toml(CENTER, Path::new("desk.toml")).unwrap();
    config.storage.data_dir = Some(dir.to_owned());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = switchboard_router::Router::start_on(config, listener)
        .await
        .unwrap();
    let sip = router.sip_addr().expect("the SIP edge listens").port();
    let router = router.spawn();
    let base = router.url().to_owned();
    (router, sip, base)
}

/// Adele's desk on the router at `base`: started with the router's credentials, registered,
/// then Ready; her agent API.
async fn adele_ready(desk: &DeskPhone, base: &str) -> AgentApi {
    let api = AgentApi::new(base, None, Some("adele@contoso.example".into())).unwrap();
    desk.start(api.clone(), &AudioSettings::default())
        .await
        .unwrap();
    until("registered", || {
        matches!(
            desk.view().registration,
            RegistrationView::Registered { .. }
        )
        .then_some(())
    })
    .await;
    assert_eq!(desk.view().agent.as_deref(), Some("adele@contoso.example"));
    assert!(desk.view().problem.is_none());
    desk.set_state(true, None).await.unwrap();
    api
}

/// Answers the call ringing on the desk and waits for it to be up.
async fn answer(desk: &DeskPhone, call: switchboard_agent::call::CallId) {
    desk.answer(call).await.unwrap();
    until("the call to be up", || {
        desk.view()
            .call
            .filter(|c| c.stage == CallStage::Talking && c.answered_unix_ms.is_some())
    })
    .await;
}

/// A headless caller on the router's trunk (port `sip`) dialling the general queue's number
/// over PCMU, hanging up after `seconds`.
fn queue_caller(sip: u16, seconds: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard-agent"))
        .env("SWITCHBOARD_RTP_PORTS", "40000-59999")
        .args([
            "--json",
            "call",
            &format!("sip:+18005550100@127.0.0.1:{sip}"),
        ])
        .args(["--ring-timeout", "20", "--codec", "pcmu"])
        .args(["--hangup-after", seconds])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_takes_a_queue_call_and_wraps_it_up_with_a_disposition() {
    let dir = tempfile::tempdir().unwrap();
    let (router, sip, base) = center(dir.path()).await;

    // Not an agent: refused, with a code for the window and the router's words.
    let stranger = AgentApi::new(&base, None, Some("mallory@contoso.example".into())).unwrap();
    let desk = DeskPhone::new();
    let e = desk
        .start(stranger, &AudioSettings::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "router_not_an_agent", "{e}");
    assert!(e.to_string().contains("mallory@contoso.example"), "{e}");
    assert!(matches!(
        desk.view().registration,
        RegistrationView::Failing { .. }
    ));

    // Adele: registered with the router's credentials, then Ready there.
    let api = adele_ready(&desk, &base).await;
    let st = api.status().await.unwrap();
    assert!(st.registered);
    assert_eq!(st.state, switchboard_api::AgentState::Ready);

    // A caller on the trunk; the desk shows the offer and answers.
    let caller = tokio::task::spawn_blocking(move || queue_caller(sip, "30"));
    let call = until("the call to ring", || desk.view().call).await;
    assert_eq!(call.stage, CallStage::Ringing);
    assert_eq!(call.offer.queue.as_deref(), Some("general"));
    assert_eq!(call.offer.dialled.as_deref(), Some("+18005550100"));
    let record = call.offer.call_record.clone().expect("a call record id");
    // A key the keypad does not have never reaches the phone.
    assert_eq!(
        desk.dtmf(call.id, 'x').await.unwrap_err().code(),
        "invalid_digit"
    );
    answer(&desk, call.id).await;
    desk.mute(true).unwrap();
    assert!(desk.view().call.is_some_and(|c| c.muted));
    desk.dtmf(call.id, '5').await.unwrap();
    desk.set_volume(140).unwrap();
    assert_eq!(desk.view().volume, 100, "at most 100 %");
    desk.set_volume(40).unwrap();
    assert_eq!(desk.view().volume, 40);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q = desk.quality(call.id).await.unwrap();
    assert!(q.packets_received > 0, "{q:?}");
    desk.hangup(call.id).unwrap();

    // Wrap-up with the queue's codes, and its end once the router has said it (the codes
    // come with the call; the end when the router's status is read after it ended).
    let wrap = until("wrap-up with the queue's codes and its end", || {
        desk.view()
            .wrap_up
            .filter(|w| !w.dispositions.is_empty() && w.ends_unix_ms.is_some())
    })
    .await;
    assert!(desk.view().call.is_none());
    assert_eq!(wrap.queue.as_deref(), Some("general"));
    assert_eq!(wrap.call_record.as_deref(), Some(record.as_str()));
    assert_eq!(wrap.dispositions, ["resolved", "cut short", "callback"]);
    // The router's 60 s countdown, as an end on this machine's clock.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ends = wrap
        .ends_unix_ms
        .expect("the router says when the wrap-up ends");
    assert!(
        ends > now_ms + 50_000 && ends <= now_ms + 61_000,
        "{ends} vs {now_ms}"
    );
    assert_eq!(wrap.after, None, "still in wrap-up");
    let out = caller.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Notes the router would refuse are refused here, said with a code of their own.
    let e = desk
        .finish_wrap_up(Some("resolved".into()), Some("n".repeat(2001)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "notes_too_long", "{e}");
    assert!(desk.view().wrap_up.is_some(), "the wrap-up stays");
    let e = desk
        .finish_wrap_up(Some("sold".into()), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "router_refused_value", "{e}");
    assert!(desk.view().wrap_up.is_some(), "the wrap-up stays");
    assert_eq!(
        desk.view().problem.map(|p| p.code).as_deref(),
        Some("router_refused_value")
    );
    desk.finish_wrap_up(
        Some("resolved".into()),
        Some("Refund promised.\r\nCall back Monday ".into()),
    )
    .await
    .unwrap();
    assert!(desk.view().wrap_up.is_none());
    assert!(desk.view().problem.is_none());

    let recs: Vec<serde_json::Value> = reqwest::get(format!("{base}/v1/calls"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recs[0]["id"], record.as_str(), "{recs:?}");
    assert_eq!(recs[0]["disposition"], "resolved", "{recs:?}");
    assert_eq!(
        recs[0]["notes"], "Refund promised.\nCall back Monday",
        "{recs:?}"
    );
    assert_eq!(recs[0]["agent"], "adele@contoso.example", "{recs:?}");

    // Stopping signs off: the router forgets the phone.
    desk.stop().await;
    assert_eq!(desk.view().registration, RegistrationView::Off);
    let st = api.status().await.unwrap();
    assert!(!st.registered, "{st:?}");
    router.stop().await.unwrap();
}

/// A router that restarts loses the calls it carried (it records them as interrupted): when
/// its link says it has been up for less time than a call has lasted, the desk hangs the call
/// up at once — not after 30 s of silence — says why, and opens no wrap-up for it. A router up
/// for longer than the call changes nothing. (The app feeds the link's uptime in; its window
/// test kills and restarts a real router mid-call.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_older_than_the_router_is_ended_at_once_and_said_why() {
    let dir = tempfile::tempdir().unwrap();
    let (router, sip, base) = center(dir.path()).await;
    let desk = DeskPhone::new();
    adele_ready(&desk, &base).await;
    let caller = tokio::task::spawn_blocking(move || queue_caller(sip, "30"));
    let call = until("the call to ring", || desk.view().call).await;
    answer(&desk, call.id).await;
    // Older than the 2 s the desk allows for the uptime's rounding.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The router up since before the call: the call goes on.
    desk.router_up_for(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = desk.view();
    assert!(v.call.is_some_and(|c| c.id == call.id), "the call goes on");
    assert!(v.problem.is_none(), "{:?}", v.problem);

    // The router up for a second: it cannot carry the call any more.
    let asked = std::time::Instant::now();
    desk.router_up_for(Duration::from_secs(1));
    until("the call to be ended", || {
        desk.view().call.is_none().then_some(())
    })
    .await;
    println!("ended {:?} after the router's uptime came", asked.elapsed());
    assert_eq!(
        desk.view().problem.map(|p| p.code).as_deref(),
        Some("router_restarted")
    );
    // No wrap-up for it, and no second hang-up for the next reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    desk.router_up_for(Duration::from_secs(2));
    let v = desk.view();
    assert!(v.wrap_up.is_none(), "{:?}", v.wrap_up);
    assert_eq!(
        v.problem.map(|p| p.code).as_deref(),
        Some("router_restarted")
    );
    // The caller heard the call end (the router passed the agent's BYE on).
    let out = caller.await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(r#""reason":"remotebye""#), "{said}");
    desk.stop().await;
    router.stop().await.unwrap();
}
