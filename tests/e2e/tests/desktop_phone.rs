//! The real desktop window is the agent's softphone. The router runs the demo contact center
//! (`crates/router/demo.toml`, on free loopback ports, the billing queue given disposition codes);
//! the window starts as the demo's agent (`SWITCHBOARD_AGENT=AdeleV@contoso.example`: the demo
//! router checks no tokens; the app is set up for the simulated Microsoft 365 tenant, as in the
//! demo, but nobody signs in), gets SIP credentials from the router and registers — the status bar
//! says so. The agent goes Ready in the window; a caller on baresip (a real SIP phone) dials the
//! demo number on the trunk and presses 1 (billing). The window pops the call up with the caller,
//! the number dialled, the queue, the attendant choice and the wait; Answer by the keyboard
//! (Ctrl+Shift+A); the in-call panel shows the call and its timer; 4 and 2 on its keypad reach the
//! caller's phone; the volume at 25 % lowers the caller in the window's speaker; Mute by the
//! keyboard (Ctrl+Shift+M) for 5 s, the caller hearing nothing of the window meanwhile, then
//! Unmute; Hold, then Resume; the caller hangs up; the wrap-up panel counts the router's wrap-up
//! down and offers the queue's codes and notes; "resolved", notes, Done; the router's call record
//! has the disposition, the notes, the agent and the time on hold; the agent's own figures count
//! one call today, answered.
//!
//! Audio crosses both ways, on a PulseAudio server of the test's own with null sinks
//! (`switchboard_e2e::pulse`): the window plays the caller's 440 Hz into its default sink,
//! recorded from that sink's monitor; a 1000 Hz tone played into the sink the window's
//! microphone listens to reaches the caller, who records it. Both are checked with Goertzel
//! (`switchboard_media::tone`). The OS is told of each ringing call: the window's
//! notification reaches dunst on a private D-Bus bus (`switchboard_e2e::Notifications`).
//!
//! Then calls from the window and the picker: a headless colleague (`switchboard-agent work` as
//! MeganB) is called by name from the dial box (a name nobody has is refused and said so first) and
//! hung up by the keyboard (Ctrl+Shift+H); a second queue call is answered, the orders queue
//! consulted from the transfer picker (its only agent logged in Not ready: the consultation waits
//! there) and cancelled, the colleague consulted from the picker, the consultation cancelled, the
//! colleague consulted again, a conference made, a second colleague (AlexW, headless, Not ready)
//! added through the picker's consult-only view while the caller and the first talk on, and the
//! group call left to them; the window's history shows both calls, and calls the colleague back;
//! the supervisors' board shows the queues and the agents (the agent on that call, the second
//! colleague Not ready); last, a queue call rings the window unanswered until the router sets the
//! agent Not ready ("missed call"), which the window's state follows, and the agent goes Ready
//! again; a queue call is consulted with the colleague from the picker and handed to her
//! (Complete), and another transferred to her blind, each recorded with its kind of transfer; from
//! the board the second colleague is put on a break and this agent on coaching (the window follows
//! the router's announcement), then Ready; last, the agent listens in on the colleague's queue call
//! from the board (the window is rung, answers and hears the call), barges in (the caller hears the
//! window) and stops; a `tel:` link opened by a second start of the app lands in the running
//! window's dial box; at the end the router is killed during a call and started again at once
//! (the window ends the call the restart lost as soon as it is connected again, says why, and
//! opens no wrap-up; the call recorded as interrupted), then killed during a call and left away
//! (the window reconnects, the silent call is ended after 30 s and the window says why) and
//! started again (connected, the phone still registered, the call recorded as interrupted).
//!
//! Run through `scripts/test.sh`; by hand:
//! `xvfb-run -a cargo test -p switchboard-e2e --test desktop_phone -- --ignored --nocapture`.

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use switchboard_e2e::pulse::PulseServer;
use switchboard_e2e::tones::{blocks_with, heard, level, tone_wav};
use switchboard_e2e::ui::{
    choose, click, css, gone, screenshot, shortcut, type_into, wait_attr, wait_clock, wait_text,
    wait_value, WAIT,
};
use switchboard_e2e::{
    eventually, free_port, free_udp_port, need_display, our_binary, tenant_config, workspace_root,
    Desktop, Guard, Notifications, RouterProcess,
};
use switchboard_tenant_sim::{Config as SimConfig, TenantSim};

// baresip, a real SIP phone, as the first caller (shared with the agent's and the router's
// interop tests).
#[path = "../../../crates/agent/tests/common/peers.rs"]
mod peers;

const AGENT: &str = "AdeleV@contoso.example";
/// The agent's wrap-up notes, typed in the window.
const NOTES: &str = "Promised a refund; call back Monday";
/// A second colleague, brought into the group call: a headless agent, Not ready for queue calls.
const SECOND: &str = "AlexW@contoso.example";

/// The colleague: a headless agent (Ready; she has no billing skill, so no billing calls),
/// answering what rings and ending each wrap-up at once.
const COLLEAGUE: &str = "MeganB@contoso.example";
/// The caller's number, as the trunk gives it.
const CALLER: &str = "+15551234567";

/// The demo contact center on `sip` (UDP and TCP on 127.0.0.1), the billing queue with
/// disposition codes and a long wrap-up (the window's Done ends it).
fn demo_config(sip: u16) -> Result<String> {
    let demo = std::fs::read_to_string(workspace_root().join("crates/router/demo.toml"))?;
    let with_sip = demo.replace("127.0.0.1:7760", &format!("127.0.0.1:{sip}"));
    let billing = "wrap_up_seconds = 10\n";
    if !with_sip.contains(billing) {
        bail!("crates/router/demo.toml changed: no billing wrap_up_seconds to extend");
    }
    let trunk = "max_calls = 50\n";
    if !with_sip.contains(trunk) {
        bail!("crates/router/demo.toml changed: no carrier trunk max_calls to extend");
    }
    // Outside calls under toll rules: +1555 allowed, +1900 denied (never reaches the trunk,
    // whose outbound target is the discard port).
    let with_outbound = format!(
        "{}{OUTBOUND}",
        with_sip.replacen(trunk, "max_calls = 50\noutbound = \"sip:127.0.0.1:9\"\n", 1)
    );
    Ok(with_outbound.replacen(
        billing,
        "wrap_up_seconds = 120\ndispositions = [\"resolved\", \"callback\", \"escalated\"]\n",
        1,
    ))
}

/// The demo tenant's toll rules in this test.
const OUTBOUND: &str = "
[tenants.outbound]
trunk = \"carrier\"
allow = [\"+1555\"]
deny = [\"+1900\"]
";

/// Sets the in-call volume slider to `arguments[0]` as a person's drag ends (a change event).
const SET_VOLUME: &str = r#"const e = document.querySelector('[data-testid="call-volume"]');
e.value = arguments[0];
e.dispatchEvent(new Event('change', { bubbles: true }));"#;

const CALLER_HZ: f64 = 440.0;
const WINDOW_HZ: f64 = 1000.0;

/// A caller on the demo trunk (`switchboard-agent call` as [`CALLER`], PCMU): dials `uri`,
/// presses `dtmf` at the attendant, plays `tone` and hangs up after `hangup_after` seconds.
fn trunk_caller(
    uri: &str,
    dtmf: &str,
    hangup_after: &str,
    tone: &std::path::Path,
) -> Result<Command> {
    let mut cmd = Command::new(our_binary("switchboard-agent")?);
    cmd.env("SWITCHBOARD_RTP_PORTS", "40000-59999")
        .args(["--json", "call", uri, "--ring-timeout", "40"])
        .args(["--user", CALLER, "--dtmf", dtmf, "--codec", "pcmu"])
        .args(["--hangup-after", hangup_after])
        .arg("--play")
        .arg(tone);
    Ok(cmd)
}

/// An agent's state at the router at `base` (`GET /v1/agents/me`, named: the demo router checks
/// no tokens).
async fn agent_status(http: &reqwest::Client, base: &str, upn: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/v1/agents/me?agent={upn}"))
        .send()
        .await?
        .json()
        .await?)
}

/// The agent goes Ready in the window and so at the router (`base`), a quiet [`trunk_caller`]
/// dials `uri` and presses 1 (billing), the window answers and its call clock reaches `secs`:
/// the caller's process, to end when done with it.
async fn answered_billing_call(
    c: &fantoccini::Client,
    http: &reqwest::Client,
    base: &str,
    (uri, tone): (&str, &std::path::Path),
    secs: u64,
) -> Result<std::process::Child> {
    choose(c, r#"[data-testid="work-state"]"#, "ready").await?;
    eventually("the router to have the agent Ready again", WAIT, || async {
        let st = agent_status(http, base, AGENT).await?;
        Ok((st["state"] == "ready").then_some(()))
    })
    .await?;
    let mut cmd = trunk_caller(uri, "1", "120", tone)?;
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let caller = cmd.spawn().context("a billing caller")?;
    wait_text(c, r#"[data-testid="incoming-queue"]"#, "billing").await?;
    click(c, r#"[data-testid="answer"]"#).await?;
    wait_clock(c, r#"[data-testid="call-timer"]"#, secs).await?;
    Ok(caller)
}

/// Waits for a [`trunk_caller`] run on a blocking thread to end: an error unless it ended well.
async fn caller_done(
    caller: tokio::task::JoinHandle<std::io::Result<std::process::Output>>,
) -> Result<()> {
    let out = caller
        .await
        .context("the caller's thread")?
        .context("the caller")?;
    if !out.status.success() {
        bail!("caller: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the real window: needs an X display, tauri-driver and WebKitWebDriver (scripts/test.sh runs it)"]
async fn the_window_rings_answers_and_wraps_up_a_queue_call() -> Result<()> {
    need_display()?;
    let work = tempfile::tempdir()?;
    let logs = workspace_root().join("artifacts/e2e");
    std::fs::create_dir_all(&logs)?;
    let router_log = logs.join("router-phone.log");
    let _ = std::fs::remove_file(&router_log);

    let sip = free_udp_port()?;
    let config = work.path().join("router.toml");
    std::fs::write(&config, demo_config(sip)?)?;
    let router_port = free_port()?;
    // The router on its port, data and configuration, logging to `log` (started again after
    // it is killed, the same).
    let start_router = |log: std::path::PathBuf| {
        let (data, config) = (work.path().join("router-data"), config.clone());
        async move {
            RouterProcess::start_with(
                router_port,
                &data,
                &log,
                &[OsStr::new("--config"), config.as_os_str()],
            )
            .await
        }
    };
    let mut router = start_router(router_log).await?;
    let base = router.url.clone();
    let http = reqwest::Client::new();

    let pulse = PulseServer::start()?;
    let pulse_server = pulse.server();
    let config_dir = work.path().join("config");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&config_dir)?;
    // The app is set up for a Microsoft 365 tenant (the simulated one), as in the demo; the
    // agent is not signed in: the phone works as the agent the router was told of.
    let sim = TenantSim::start(SimConfig::default()).await?;
    tenant_config(&config_dir, &sim.authority())?;
    let notifications = Notifications::start(work.path()).await?;
    let desktop = Desktop::start(
        &[
            (
                "DBUS_SESSION_BUS_ADDRESS",
                OsStr::new(&notifications.address),
            ),
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_DATA_DIR", data_dir.as_os_str()),
            ("SWITCHBOARD_ROUTER_URL", OsStr::new(&base)),
            ("SWITCHBOARD_AGENT", OsStr::new(AGENT)),
            ("PULSE_SERVER", OsStr::new(&pulse_server)),
            ("SWITCHBOARD_LOG", OsStr::new("info")),
        ],
        "tauri-driver-phone.log",
    )
    .await?;
    let c = desktop.open().await?;

    // An agent's state at the router (the window's agent, unless another is named).
    let status_of = |http: reqwest::Client, base: String, upn: &'static str| async move {
        agent_status(&http, &base, upn).await
    };
    let status = |http: reqwest::Client, base: String| status_of(http, base, AGENT);
    // The router's call records, newest first.
    let records = |http: reqwest::Client, base: String| async move {
        let v: Vec<Value> = http
            .get(format!("{base}/v1/calls"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v)
    };

    let result = async {
        // 1. The phone registers with the router's credentials: the status bar says so, and
        //    the router sees the agent's phone.
        wait_attr(
            &c,
            r#"[data-testid="phone-registration"]"#,
            "data-state",
            "registered",
        )
        .await?;
        eventually("the router to see the phone", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["registered"] == true).then_some(()))
        })
        .await?;

        // 2. Ready in the window: Ready at the router.
        choose(&c, r#"[data-testid="work-state"]"#, "ready").await?;
        eventually("the router to have the agent Ready", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            if st["state"] == "ready" {
                Ok(Some(()))
            } else {
                bail!("router state {st}")
            }
        })
        .await?;
        screenshot(&c, "phone-ready.png").await?;

        // 3. A caller on a real SIP phone (baresip, as CALLER, from 127.0.0.1: the trunk's
        //    address; its microphone a 440 Hz sine) dials the demo number and presses 1
        //    (billing, an RFC 4733 event) while the greeting plays.
        let tone = work.path().join("caller.wav");
        tone_wav(&tone, CALLER_HZ, 8000, 30)?;
        // What the window's microphone hears, from now on.
        let mic_tone = work.path().join("window-mic.wav");
        tone_wav(&mic_tone, WINDOW_HZ, 48000, 40)?;
        let _mic = pulse.play("sb_mic", &mic_tone)?;
        let uri = format!("sip:+18005550100@127.0.0.1:{sip}");
        let dial = uri.clone();
        let caller = tokio::task::spawn_blocking(move || {
            let phone = peers::Baresip::start(CALLER, "manual", CALLER_HZ as u32);
            phone.command("dial", &dial);
            phone.wait_for("Call established", Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(800));
            phone.command("sndcode", "1");
            phone
        });

        // 4. The window pops the call up: caller, number dialled, queue, attendant choice.
        wait_text(&c, r#"[data-testid="incoming-queue"]"#, "billing").await?;
        wait_text(&c, r#"[data-testid="incoming-dialled"]"#, "+18005550100").await?;
        wait_text(&c, r#"[data-testid="incoming-choices"]"#, "main:1").await?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, CALLER).await?;
        // How long the caller has waited, counting up from the router's figure (m:ss).
        wait_text(&c, r#"[data-testid="incoming-waited"]"#, "0:").await?;
        let caller = caller.await.context("the caller (baresip)")?;
        screenshot(&c, "phone-incoming.png").await?;
        // The OS is told too: a notification (dunst's) with the caller and the queue.
        notifications
            .sent(&[
                &format!("Incoming call: {CALLER}"),
                "Queue billing",
                "Attendant choices main:1",
            ])
            .await?;

        // 5. Answer, by the keyboard (Ctrl+Shift+A): the in-call panel, with the queue and a
        //    running timer.
        shortcut(&c, r#"[data-testid="answer"]"#, 'a').await?;
        // What the window plays from now on (after the ring).
        let window_heard = work.path().join("window-heard.wav");
        let speaker = pulse.record("sb_speaker", &window_heard)?;
        wait_text(&c, r#"[data-testid="in-call-queue"]"#, "billing").await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, CALLER).await?;
        wait_text(&c, r#"[data-testid="call-timer"]"#, "0:0").await?;
        gone(&c, r#"[data-testid="incoming"]"#).await?;
        eventually("the router to have the agent on the call", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "on_call").then_some(()))
        })
        .await?;
        // The timer runs, and the live figures arrive.
        wait_clock(&c, r#"[data-testid="call-timer"]"#, 2).await?;
        wait_text(&c, r#"[data-testid="call-quality"]"#, "MOS").await?;
        screenshot(&c, "phone-in-call.png").await?;
        // The keypad: 4 and 2 pressed in the window reach the caller's phone as RFC 4733
        // events (the router passes on keys pressed while the two talk).
        click(&c, r#"[data-testid="keypad-toggle"]"#).await?;
        click(&c, r#"[data-testid="key-4"]"#).await?;
        click(&c, r#"[data-testid="key-2"]"#).await?;
        click(&c, r#"[data-testid="keypad-toggle"]"#).await?;
        eventually("the caller's phone to get the keys 4 and 2", WAIT, || async {
            let log = caller.log();
            let got = |k: char| log.contains(&format!("received event: '{k}' (end=1)"));
            Ok((got('4') && got('2')).then_some(()))
        })
        .await?;
        // The call's volume at 25 %: the window's speaker plays the caller at well under half
        // the level it had at 100 % (a second and a half recorded at each), then back to 100 %.
        let volume_level = |percent: &'static str| {
            let (c, pulse, dir) = (&c, &pulse, work.path());
            async move {
                c.execute(SET_VOLUME, vec![percent.into()]).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let wav = dir.join(format!("volume-{percent}.wav"));
                let rec = pulse.record("sb_speaker", &wav)?;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                rec.stop();
                level(&wav)
            }
        };
        let full = volume_level("100").await?;
        let quarter = volume_level("25").await?;
        volume_level("100").await?;
        eprintln!("the caller's level in the window's speaker: {full:.0} at 100 %, {quarter:.0} at 25 %");
        if !(quarter < full * 0.5 && full > 500.0) {
            bail!("the call's volume at 25 % played the caller at {quarter:.0}, against {full:.0} at 100 %");
        }
        // Mute by the keyboard (Ctrl+Shift+M) for 5 s, unmute with the button: the caller hears
        // nothing of the window's microphone meanwhile (checked below).
        shortcut(&c, r#"[data-testid="hold"]"#, 'm').await?;
        wait_attr(&c, r#"[data-testid="mute"]"#, "aria-pressed", "true").await?;
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        click(&c, r#"[data-testid="mute"]"#).await?;
        wait_attr(&c, r#"[data-testid="mute"]"#, "aria-pressed", "false").await?;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        // Hold and resume: the panel says so, and the router counts the hold (the caller
        // hears its music meanwhile, not the window's microphone).
        click(&c, r#"[data-testid="hold"]"#).await?;
        wait_attr(&c, r#"[data-testid="hold"]"#, "aria-pressed", "true").await?;
        screenshot(&c, "phone-on-hold.png").await?;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        click(&c, r#"[data-testid="hold"]"#).await?;
        wait_attr(&c, r#"[data-testid="hold"]"#, "aria-pressed", "false").await?;

        // 6. The caller hangs up: wrap-up with the billing queue's codes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_phone, heard_wav) = tokio::task::spawn_blocking(move || {
            caller.command("hangup", "");
            let heard = caller.heard_wav(Duration::from_secs(15));
            (caller, heard)
        })
        .await
        .context("the caller's recording (baresip)")?;
        speaker.stop();
        heard(
            &window_heard,
            CALLER_HZ,
            WINDOW_HZ,
            20,
            "the window played the caller",
        )?;
        heard(
            &heard_wav,
            WINDOW_HZ,
            CALLER_HZ,
            20,
            "the caller heard the window's microphone",
        )?;
        // The mute's 5 s is the longest the caller went without the window's microphone, and
        // it ended (the hold's music, about 2 s with the clicks around it, is shorter): a
        // break is counted only once the tone is back.
        let (samples, rate) = switchboard_media::wav::read_mono(&heard_wav)?;
        let (gap, _) = switchboard_media::tone::longest_break(&samples, rate, WINDOW_HZ);
        eprintln!("the caller's longest break in the window's microphone: {gap} blocks of 50 ms");
        if gap < 80 {
            bail!("muted for 5 s, the caller went only {gap} blocks of 50 ms without the window's microphone");
        }
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        // The router's countdown (billing's 120 s) ticks in the panel; notes go with the code.
        wait_text(&c, r#"[data-testid="wrap-up-countdown"]"#, "left").await?;
        // The state bar's clock follows the router's end (2:00), not the app's own 30 s.
        wait_text(&c, r#"[data-testid="work-now"]"#, "1:5").await?;
        type_into(&c, r#"[data-testid="wrap-up-notes"]"#, NOTES).await?;
        wait_text(&c, r#"[data-testid="wrap-up-notes-count"]"#, "/ 2000").await?;
        click(&c, r#"[data-testid="disposition-resolved"]"#).await?;
        screenshot(&c, "phone-wrap-up.png").await?;
        click(&c, r#"[data-testid="wrap-up-done"]"#).await?;
        gone(&c, r#"[data-testid="wrap-up"]"#).await?;

        // 7. The router's call record has the agent, the disposition and the notes.
        let recs = eventually("the call record with its disposition", WAIT, || async {
            let recs = records(http.clone(), base.clone()).await?;
            if recs
                .first()
                .is_some_and(|r| r["disposition"] == "resolved" && r["notes"] == NOTES)
            {
                Ok(Some(recs))
            } else {
                bail!("records: {recs:?}")
            }
        })
        .await?;
        assert_eq!(recs[0]["agent"], AGENT, "{recs:?}");
        assert_eq!(recs[0]["caller"], CALLER, "{recs:?}");
        assert!(
            recs[0]["hold_seconds"].as_u64().is_some_and(|s| s >= 1),
            "the hold counted: {recs:?}"
        );
        assert_eq!(
            recs[0]["choices"],
            serde_json::json!(["main:1"]),
            "{recs:?}"
        );
        // Back to Ready at the router once wrap-up is done.
        eventually("the agent Ready again", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;
        // The agent's own figures count the call: one today, answered.
        wait_text(&c, r#"[data-testid="figures-calls-today"]"#, "1").await?;
        wait_text(&c, r#"[data-testid="figures-answered-today"]"#, "1").await?;

        // 8. A colleague's headless phone: registered, Ready (no billing skill: none of the
        //    billing queue's calls), answering what rings after 1 s.
        let colleague_log = logs.join("colleague-phone.log");
        let mut cmd = Command::new(our_binary("switchboard-agent")?);
        cmd.env("SWITCHBOARD_RTP_PORTS", "40000-59999")
            .args(["--json", "work", "--router", &base, "--as", COLLEAGUE])
            .args(["--answer-after", "1", "--disposition", "resolved"])
            .arg("--play")
            .arg(&tone)
            .arg("--record")
            .arg(work.path().join("colleague.wav"))
            .stdout(std::fs::File::create(&colleague_log)?)
            .stderr(std::fs::File::create(logs.join("colleague-phone.err"))?);
        let _colleague = Guard::spawn("the colleague's headless agent", &mut cmd)?;
        eventually("the colleague's phone to register", WAIT, || async {
            let st = status_of(http.clone(), base.clone(), COLLEAGUE).await?;
            Ok((st["registered"] == true).then_some(()))
        })
        .await?;
        let mut cmd = Command::new(our_binary("switchboard-agent")?);
        cmd.env("SWITCHBOARD_RTP_PORTS", "40000-59999")
            .args(["--json", "work", "--router", &base, "--as", SECOND])
            .args(["--not-ready", "training", "--answer-after", "1"])
            .arg("--play")
            .arg(&tone)
            .stdout(std::fs::File::create(logs.join("second-phone.log"))?)
            .stderr(std::fs::File::create(logs.join("second-phone.err"))?);
        let _second = Guard::spawn("the second colleague's headless agent", &mut cmd)?;
        eventually("the second colleague's phone to register", WAIT, || async {
            let st = status_of(http.clone(), base.clone(), SECOND).await?;
            Ok((st["registered"] == true).then_some(()))
        })
        .await?;

        // 9. Calls from the window: a name nobody has is refused (404) and a number the toll
        //    rules deny (403), each said so; the colleague by name rings, answers, and the
        //    in-call view shows her; hang up.
        type_into(&c, r#"[data-testid="dial-input"]"#, "nobody").await?;
        click(&c, r#"[data-testid="dial-call"]"#).await?;
        wait_text(
            &c,
            r#"[data-testid="phone-problem"]"#,
            "Nobody by that name",
        )
        .await?;
        type_into(&c, r#"[data-testid="dial-input"]"#, "+1 900 555 0100").await?;
        click(&c, r#"[data-testid="dial-call"]"#).await?;
        wait_text(&c, r#"[data-testid="phone-problem"]"#, "toll rules").await?;
        screenshot(&c, "phone-toll-refused.png").await?;
        type_into(&c, r#"[data-testid="dial-input"]"#, "MeganB").await?;
        click(&c, r#"[data-testid="dial-call"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "MeganB").await?;
        wait_clock(&c, r#"[data-testid="call-timer"]"#, 2).await?;
        screenshot(&c, "phone-dialled.png").await?;
        // Hang up by the keyboard (Ctrl+Shift+H).
        shortcut(&c, r#"[data-testid="hold"]"#, 'h').await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        let dialled = eventually("the dialled call's record", WAIT, || async {
            let recs = records(http.clone(), base.clone()).await?;
            let r = recs
                .into_iter()
                .find(|r| r["dialled"] == "MeganB" && r["ended_at"].is_string());
            Ok(r)
        })
        .await?;
        assert_eq!(dialled["caller"], AGENT, "{dialled}");
        assert_eq!(dialled["agent"], COLLEAGUE, "{dialled}");
        assert_eq!(dialled["outcome"], "answered", "{dialled}");
        eventually("the agent Ready after their own call", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;

        // 10. A queue call again; the agent answers, opens the picker, consults the orders
        //     queue (it waits there) and cancels, consults the colleague,
        //     talks to her, cancels, consults her again, brings all three into a conference,
        //     adds the second colleague (consulted while the caller and the first talk on),
        //     and leaves the group call to them.
        let mut cmd = trunk_caller(&uri, "1", "40", &tone)?;
        let caller = tokio::task::spawn_blocking(move || cmd.output());
        wait_text(&c, r#"[data-testid="incoming-queue"]"#, "billing").await?;
        click(&c, r#"[data-testid="answer"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-queue"]"#, "billing").await?;
        click(&c, r#"[data-testid="transfer-open"]"#).await?;
        let megan = format!(
            r#"[data-testid="target-colleague"][data-upn="{COLLEAGUE}"][data-available="true"]"#
        );
        wait_text(&c, &megan, "Megan").await?;
        // The toll rules allow outside numbers: the picker has a number field.
        c.find(css(r#"[data-testid="picker-number"]"#)).await?;
        screenshot(&c, "phone-picker.png").await?;
        // A queue whose only agent logged in (the second colleague) is Not ready: the
        // consultation waits in it, Cancel only, and is cancelled.
        click(
            &c,
            r#"[data-testid="target-queue"][data-name="orders"] [data-testid="consult"]"#,
        )
        .await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "waiting").await?;
        wait_text(
            &c,
            r#"[data-testid="consult-status"]"#,
            "Waiting in queue orders",
        )
        .await?;
        c.find(css(r#"[data-testid="consult-complete"][disabled]"#))
            .await?;
        screenshot(&c, "phone-consult-queue.png").await?;
        click(&c, r#"[data-testid="consult-cancel"]"#).await?;
        gone(&c, r#"[data-testid="consult"]"#).await?;
        click(&c, r#"[data-testid="transfer-open"]"#).await?;
        click(&c, &format!(r#"{megan} [data-testid="consult"]"#)).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "talking").await?;
        wait_text(&c, r#"[data-testid="consult-status"]"#, COLLEAGUE).await?;
        screenshot(&c, "phone-consult.png").await?;
        // Cancel: back with the caller; then consult her again, all three in a conference,
        // and the agent leaves them talking.
        click(&c, r#"[data-testid="consult-cancel"]"#).await?;
        gone(&c, r#"[data-testid="consult"]"#).await?;
        click(&c, r#"[data-testid="transfer-open"]"#).await?;
        click(&c, &format!(r#"{megan} [data-testid="consult"]"#)).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "talking").await?;
        click(&c, r#"[data-testid="consult-conference"]"#).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "conference").await?;
        screenshot(&c, "phone-conference.png").await?;
        // Add someone: the picker offers people to consult only.
        click(&c, r#"[data-testid="conference-add"]"#).await?;
        let alex = format!(
            r#"[data-testid="target-colleague"][data-upn="{SECOND}"][data-available="true"]"#
        );
        wait_text(&c, &alex, "Alex").await?;
        gone(&c, r#"[data-testid="picker"] [data-testid="transfer"]"#).await?;
        click(&c, &format!(r#"{alex} [data-testid="consult"]"#)).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-with", SECOND).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "talking").await?;
        wait_text(&c, r#"[data-testid="conference-members"]"#, COLLEAGUE).await?;
        click(&c, r#"[data-testid="consult-conference"]"#).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "conference").await?;
        wait_text(&c, r#"[data-testid="consult-status"]"#, SECOND).await?;
        wait_text(&c, r#"[data-testid="consult-status"]"#, COLLEAGUE).await?;
        screenshot(&c, "phone-group-call.png").await?;
        // Leave: the caller talks on with both; the first colleague holds the call.
        click(&c, r#"[data-testid="consult-complete"]"#).await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        click(&c, r#"[data-testid="disposition-escalated"]"#).await?;
        click(&c, r#"[data-testid="wrap-up-done"]"#).await?;
        gone(&c, r#"[data-testid="wrap-up"]"#).await?;
        caller_done(caller).await?;
        let passed = eventually("the record of the transferred call", WAIT, || async {
            let recs = records(http.clone(), base.clone()).await?;
            let r = recs.into_iter().find(|r| {
                r["steps"].as_array().is_some_and(|s| {
                    s.iter().any(|x| {
                        x.as_str()
                            .is_some_and(|x| x.contains("left the conference to"))
                    })
                }) && r["ended_at"].is_string()
            });
            Ok(r)
        })
        .await?;
        assert_eq!(passed["agent"], COLLEAGUE, "{passed}");
        assert_eq!(passed["caller"], CALLER, "{passed}");
        let steps = passed["steps"].to_string();
        for step in [
            "consult with queue orders ended: cancelled",
            &format!("consult by {AGENT} with queue orders: waiting"),
            "ended: cancelled",
            "conference of",
            &format!("consult answered by {SECOND}"),
        ] {
            assert!(steps.contains(step), "{step}: {passed}");
        }

        // 11. The window's history has both: the transferred queue call and the call it
        //     placed; search finds the one.
        click(&c, r#"[data-testid="nav-history"]"#).await?;
        let transferred = format!(
            r#"[data-testid="history-entry"][data-outcome="transferred"][data-who="{CALLER}"]"#
        );
        wait_text(&c, &transferred, CALLER).await?;
        wait_text(
            &c,
            r#"[data-testid="history-entry"][data-outcome="answered"][data-who="MeganB"]"#,
            "MeganB",
        )
        .await?;
        screenshot(&c, "phone-history.png").await?;
        type_into(&c, r#"[data-testid="history-search"]"#, "transferred").await?;
        gone(&c, r#"[data-testid="history-entry"][data-who="MeganB"]"#).await?;
        wait_text(&c, &transferred, CALLER).await?;

        // 12. Call back from the history: the colleague again (her wrap-up of the caller is
        //     over: she gives a disposition at once).
        type_into(&c, r#"[data-testid="history-search"]"#, "MeganB").await?;
        eventually("the colleague Ready again", WAIT, || async {
            let st = status_of(http.clone(), base.clone(), COLLEAGUE).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;
        click(
            &c,
            r#"[data-testid="history-entry"][data-who="MeganB"] [data-testid="call-back"]"#,
        )
        .await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "MeganB").await?;

        // 13. The supervisors' board (the demo router checks no tokens: everyone may read
        //     it), during that call: the queues' figures, the agent on a call, the second
        //     colleague Not ready with his reason.
        click(&c, r#"[data-testid="nav-board"]"#).await?;
        wait_text(
            &c,
            r#"[data-testid="board-queue"][data-name="billing"]"#,
            "billing",
        )
        .await?;
        wait_attr(
            &c,
            &format!(r#"[data-testid="board-agent"][data-upn="{AGENT}"]"#),
            "data-state",
            "on_call",
        )
        .await?;
        wait_text(
            &c,
            &format!(
                r#"[data-testid="board-agent"][data-upn="{SECOND}"] [data-testid="board-agent-reason"]"#
            ),
            "Training",
        )
        .await?;
        screenshot(&c, "phone-board.png").await?;
        click(&c, r#"[data-testid="hangup"]"#).await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;

        // 14. Ring-no-answer: a billing call rings the window, nobody answers; after the
        //     queue's alert time (15 s) the router sets the agent Not ready ("missed call")
        //     and the window's state follows it; Ready again from the window.
        eventually("the agent Ready after the call back", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "ready").await?;
        let mut cmd = trunk_caller(&uri, "1", "30", &tone)?;
        let caller = tokio::task::spawn_blocking(move || cmd.output());
        wait_text(&c, r#"[data-testid="incoming-queue"]"#, "billing").await?;
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "not_ready").await?;
        gone(&c, r#"[data-testid="incoming-queue"]"#).await?;
        let st = status(http.clone(), base.clone()).await?;
        assert_eq!(st["state"], "not_ready", "{st}");
        assert_eq!(st["reason"], "missed call", "{st}");
        wait_value(&c, r#"[data-testid="work-state"]"#, "not_ready:missed call").await?;
        screenshot(&c, "phone-missed.png").await?;
        // Once the caller gave up (Ready now would ring the window again for them), Ready.
        caller
            .await
            .context("the caller's thread")?
            .context("the caller")?;
        choose(&c, r#"[data-testid="work-state"]"#, "ready").await?;
        eventually("the router to have the agent Ready again", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;

        // 14b. Handing callers over from the picker: a billing call consulted with the
        //      colleague and handed to her (Complete), then another transferred to her blind.
        //      Each time the window's call ends into wrap-up, she talks with the caller, and
        //      the record lists the transfer of its kind.
        let same = |v: &Value, upn: &str| v.as_str().is_some_and(|x| x.eq_ignore_ascii_case(upn));
        for (kind, hangup_after) in [("consult", "20"), ("blind", "12")] {
            eventually("the colleague Ready and free", WAIT, || async {
                let st = status_of(http.clone(), base.clone(), COLLEAGUE).await?;
                Ok((st["state"] == "ready").then_some(()))
            })
            .await?;
            let mut cmd = trunk_caller(&uri, "1", hangup_after, &tone)?;
            let caller = tokio::task::spawn_blocking(move || cmd.output());
            wait_text(&c, r#"[data-testid="incoming-queue"]"#, "billing").await?;
            click(&c, r#"[data-testid="answer"]"#).await?;
            wait_text(&c, r#"[data-testid="in-call-queue"]"#, "billing").await?;
            click(&c, r#"[data-testid="transfer-open"]"#).await?;
            if kind == "consult" {
                click(&c, &format!(r#"{megan} [data-testid="consult"]"#)).await?;
                wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "talking").await?;
                click(&c, r#"[data-testid="consult-complete"]"#).await?;
            } else {
                click(&c, &format!(r#"{megan} [data-testid="transfer"]"#)).await?;
            }
            gone(&c, r#"[data-testid="in-call"]"#).await?;
            click(&c, r#"[data-testid="disposition-resolved"]"#).await?;
            click(&c, r#"[data-testid="wrap-up-done"]"#).await?;
            gone(&c, r#"[data-testid="wrap-up"]"#).await?;
            caller_done(caller).await?;
            let rec = eventually("the handed-over call's record", WAIT, || async {
                let recs = records(http.clone(), base.clone()).await?;
                Ok(recs.into_iter().next().filter(|r| r["ended_at"].is_string()))
            })
            .await?;
            assert_eq!(rec["caller"], CALLER, "{rec}");
            assert_eq!(rec["agent"], COLLEAGUE, "{kind}: she took the caller: {rec}");
            let transfers = rec["transfers"].as_array().cloned().unwrap_or_default();
            assert!(
                transfers
                    .iter()
                    .any(|t| t["kind"] == kind && same(&t["by"], AGENT) && same(&t["to"], COLLEAGUE)),
                "{kind}: {rec}"
            );
        }
        eventually("the agent Ready after the transfers", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;

        // 15. From the board a supervisor (everyone, on the demo router) sets agents' states:
        //     the second colleague to a break at the router, and this agent to coaching —
        //     the window's own state follows the router's announcement — then Ready again.
        let set_state = |upn: &str| {
            format!(
                r#"[data-testid="board-agent"][data-upn="{upn}"] [data-testid="board-set-state"]"#
            )
        };
        choose(&c, &set_state(SECOND), "not_ready:break").await?;
        eventually("the second colleague on a break", WAIT, || async {
            let st = status_of(http.clone(), base.clone(), SECOND).await?;
            Ok((st["state"] == "not_ready" && st["reason"] == "break").then_some(()))
        })
        .await?;
        choose(&c, &set_state(AGENT), "not_ready:coaching").await?;
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "not_ready").await?;
        // The window's state follows the board.
        wait_value(&c, r#"[data-testid="work-state"]"#, "not_ready:coaching").await?;
        screenshot(&c, "phone-board-set.png").await?;
        choose(&c, &set_state(AGENT), "ready").await?;
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "ready").await?;

        // 16. Listening in from the board: this agent goes Not ready, a caller reaches the
        //     colleague through the general queue (key 0), and the agent listens in on her
        //     call from the board. The router rings the window, which says what the call is;
        //     answered, the window hears the call (the caller's 440 Hz); then it barges in
        //     (the caller hears the window's 1000 Hz microphone) and stops; the caller and
        //     the colleague talk on.
        choose(&c, r#"[data-testid="work-state"]"#, "not_ready:coaching").await?;
        eventually("the agent Not ready, the colleague Ready", WAIT, || async {
            let me = status(http.clone(), base.clone()).await?;
            let her = status_of(http.clone(), base.clone(), COLLEAGUE).await?;
            Ok((me["state"] == "not_ready" && her["state"] == "ready").then_some(()))
        })
        .await?;
        let _mic = pulse.play("sb_mic", &mic_tone)?;
        let caller_heard = work.path().join("caller-listened-in.wav");
        let mut cmd = trunk_caller(&uri, "0", "30", &tone)?;
        cmd.arg("--record").arg(&caller_heard);
        let caller = tokio::task::spawn_blocking(move || cmd.output());
        eventually("the colleague on the caller's call", WAIT, || async {
            let st = status_of(http.clone(), base.clone(), COLLEAGUE).await?;
            Ok((st["state"] == "on_call").then_some(()))
        })
        .await?;
        let row = format!(r#"[data-testid="board-agent"][data-upn="{COLLEAGUE}"]"#);
        let monitor = format!(r#"{row} [data-testid="board-monitor"]"#);
        choose(&c, &monitor, "listen").await?;
        wait_text(
            &c,
            r#"[data-testid="incoming-monitor"]"#,
            &format!("Listen in on {COLLEAGUE}"),
        )
        .await?;
        wait_text(
            &c,
            &format!(r#"{row} [data-testid="board-monitor-note"]"#),
            "answer it",
        )
        .await?;
        notifications
            .sent(&[&format!("Listen in on {COLLEAGUE}")])
            .await?;
        screenshot(&c, "phone-listen-in-ringing.png").await?;
        click(&c, r#"[data-testid="answer"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-monitor"]"#, "Supervisor").await?;
        let listened = work.path().join("window-listened-in.wav");
        let speaker = pulse.record("sb_speaker", &listened)?;
        let monitored = format!(r#"{row} [data-testid="board-agent-monitored"]"#);
        wait_text(&c, &monitored, "listening in").await?;
        screenshot(&c, "phone-listen-in.png").await?;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        speaker.stop();
        heard(
            &listened,
            CALLER_HZ,
            WINDOW_HZ,
            20,
            "the window heard the call it listens in on",
        )?;
        choose(&c, &monitor, "barge").await?;
        wait_attr(&c, &monitored, "data-mode", "barge").await?;
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        choose(&c, &monitor, "stop").await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        // A listen-in leaves no wrap-up behind: the window is back to the state chosen.
        wait_attr(&c, r#"[data-testid="work"]"#, "data-state", "not_ready").await?;
        gone(&c, &monitored).await?;
        caller_done(caller).await?;
        let barged = blocks_with(&caller_heard, WINDOW_HZ, 0.2)?;
        eprintln!("the caller heard the window in {barged} blocks of 50 ms");
        if !(20..=140).contains(&barged) {
            bail!("the caller heard the window only while it barged in (about 80 blocks): {barged}");
        }
        let listened_rec = eventually("the record of the call listened in on", WAIT, || async {
            let recs = records(http.clone(), base.clone()).await?;
            Ok(recs.into_iter().find(|r| {
                r["steps"].to_string().contains("listens in on") && r["ended_at"].is_string()
            }))
        })
        .await?;
        let steps = listened_rec["steps"].to_string();
        for step in [
            format!("{AGENT} listens in on {COLLEAGUE}"),
            format!("{AGENT} barges in on {COLLEAGUE}'s call"),
            format!("{AGENT} left: stopped"),
        ] {
            assert!(steps.contains(&step), "{step}: {listened_rec}");
        }

        // 17. A tel: link opened while the app runs: the OS starts the app again with the
        //     link; that start hands it to the running window (on the session bus) and ends.
        //     The window has it in the dial box, says so, and calls nothing by itself.
        click(&c, r#"[data-testid="nav-home"]"#).await?;
        let mut second = Command::new(our_binary("switchboard-desktop")?)
            .arg("tel:+1-555-0100-42;phone-context=+1")
            .env("DBUS_SESSION_BUS_ADDRESS", &notifications.address)
            .env("SWITCHBOARD_CONFIG_DIR", &config_dir)
            .env("SWITCHBOARD_DATA_DIR", &data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(logs.join("desktop-second-start.log"))?)
            .spawn()
            .context("a second start of the app")?;
        let started = std::time::Instant::now();
        let ended = loop {
            if let Some(status) = second.try_wait()? {
                break status;
            }
            if started.elapsed() > WAIT {
                let _ = second.kill();
                let _ = second.wait();
                bail!("the second start did not end (artifacts/e2e/desktop-second-start.log)");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(
            ended.success(),
            "the second start hands its link over and ends: {ended} (artifacts/e2e/desktop-second-start.log)"
        );
        wait_value(&c, r#"[data-testid="dial-input"]"#, "+1-555-0100-42").await?;
        wait_text(&c, r#"[data-testid="dial-link-note"]"#, "press Call").await?;
        screenshot(&c, "phone-link.png").await?;
        let st = status(http.clone(), base.clone()).await?;
        assert_ne!(st["state"], "on_call", "a link calls nothing by itself: {st}");

        // 18. The router restarts mid-call (SIGKILL, started again at once on the same data
        //     and ports). A restart loses the calls it carried: as soon as the window is
        //     connected to it again, the phone sees that the router is younger than the call
        //     and ends the call, saying why — not after 30 s of silence — with no wrap-up; the
        //     router closed the call's record as interrupted.
        let interrupted = |recs: Vec<Value>| {
            recs.into_iter()
                .filter(|r| r["outcome"] == "interrupted")
                .collect::<Vec<_>>()
        };
        assert!(
            interrupted(records(http.clone(), base.clone()).await?).is_empty(),
            "no call interrupted yet"
        );
        // Older than the 2 s the phone allows for the router's uptime in whole seconds.
        let mut caller =
            answered_billing_call(&c, &http, &base, (uri.as_str(), tone.as_path()), 3).await?;
        router.guard.kill();
        let killed = std::time::Instant::now();
        router = start_router(logs.join("router-phone-restart.log")).await?;
        wait_text(
            &c,
            r#"[data-testid="phone-problem"]"#,
            "the routing service restarted",
        )
        .await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        println!(
            "the call the restart lost ended {:?} after the router was killed",
            killed.elapsed()
        );
        gone(&c, r#"[data-testid="wrap-up"]"#).await?;
        screenshot(&c, "phone-router-restarted.png").await?;
        // Ready again at once, with no wrap-up of the app's own either (that would last 30 s).
        eventually("the window's state Ready", Duration::from_secs(10), || async {
            let st = c.find(css(r#"[data-testid="work"]"#)).await?.attr("data-state").await?;
            Ok((st.as_deref() == Some("ready")).then_some(()))
        })
        .await?;
        eventually("the agent Ready at the restarted router", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["state"] == "ready").then_some(()))
        })
        .await?;
        let _ = caller.kill();
        let _ = caller.wait();
        let cut = eventually("the record of the call the restart cut short", WAIT, || async {
            let recs = interrupted(records(http.clone(), base.clone()).await?);
            Ok((!recs.is_empty()).then_some(recs))
        })
        .await?;
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(cut[0]["agent"], AGENT, "{cut:?}");

        // 19. The router dies mid-call (SIGKILL) and stays away. The window says it is
        //     reconnecting; the call, whose audio went through the router, falls silent and
        //     the phone ends it after 30 s, saying why; with the router back on the same data
        //     the window is connected again, the router still has the phone registered, and
        //     the call cut short has a record closed as interrupted.
        let mut caller =
            answered_billing_call(&c, &http, &base, (uri.as_str(), tone.as_path()), 2).await?;
        router.guard.kill();
        wait_attr(
            &c,
            r#"[data-testid="router-state"]"#,
            "data-state",
            "reconnecting",
        )
        .await?;
        // 30 s without audio, then the phone hangs up and says why (WAIT is 45 s).
        wait_text(
            &c,
            r#"[data-testid="phone-problem"]"#,
            "no audio came from the other side",
        )
        .await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        screenshot(&c, "phone-router-gone.png").await?;
        let _ = caller.kill();
        let _ = caller.wait();
        let restarted = start_router(logs.join("router-phone-restarted.log")).await?;
        wait_attr(
            &c,
            r#"[data-testid="router-state"]"#,
            "data-state",
            "connected",
        )
        .await?;
        eventually("the restarted router to know the phone", WAIT, || async {
            let st = status(http.clone(), base.clone()).await?;
            Ok((st["registered"] == true).then_some(()))
        })
        .await?;
        let cut = eventually("the record of the call cut short", WAIT, || async {
            let recs = interrupted(records(http.clone(), base.clone()).await?);
            Ok((recs.len() == 2).then_some(recs))
        })
        .await?;
        // Newest first: this call's.
        assert_eq!(cut[0]["agent"], AGENT, "{cut:?}");
        assert!(cut[0]["ended_at"].is_string(), "{cut:?}");
        drop(restarted);
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&c, "phone-failure.png").await;
    }
    switchboard_e2e::ui::end_session(c).await;
    drop(desktop);
    drop(router);
    result
}
