//! The real window on a plain SIP account (Settings → Phone → "My own SIP account"), with no
//! router running: a registrar without `sip:`, and one whose `;transport=` is not the
//! Transport chosen, refused in the form; the account saved with a
//! registrar nobody answers at, the status bar saying so; the account saved with a
//! wrong password, the status bar saying the SIP server refused it; the right password saved,
//! the status bar and the Phone section showing it registered with the real Kamailio
//! (tests/peers/kamailio/proxy.cfg on 127.0.0.1); calls both ways with bob, a headless
//! `switchboard-agent` registered there: the window dials "bob", tones cross both ways
//! (Goertzel: bob hears the window's microphone, the window's speaker plays bob), a headset
//! chosen in Settings → Audio during the call takes the call's sound (the speaker goes quiet),
//! the headset unplugged: the speaker plays bob again; the sound server killed: the window
//! says the call has no sound device, and once a server is back the notice goes and the
//! speaker plays bob again; bob hangs up;
//! bob calls alice, the window and the OS notification (dunst's) ring, Answer chosen on the
//! notification answers in the window, bob hangs up; bob gives up while it rings, and the app
//! takes its notification back; Reject on the notification sends bob 603; bob asks (REFER) to
//! transfer the call to a target outside the account's domain: the window puts it to the
//! person, declined (bob hears 603, the call goes on), then followed (the window calls carol,
//! bob's REFER ends 200); the password file not holding it in clear;
//! "Forget the password": the window says so, the phone leaves the account, the password file
//! is gone, and the settings file keeps the account (never a password) with the phone back on
//! the router's account.
//!
//! By hand: `xvfb-run -a -s "-screen 0 1280x800x24" cargo test --locked -p switchboard-e2e
//! --test desktop_sip_account -- --ignored --test-threads=1` (build switchboard-desktop first).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fantoccini::Client;
use switchboard_e2e::pulse::PulseServer;
use switchboard_e2e::tones::{blocks_with, heard, tone_wav};
use switchboard_e2e::ui::{
    choose, click, css, gone, screenshot, title_of, type_into, value_of, wait_attr, wait_clock,
    wait_text, WAIT,
};
use switchboard_e2e::{
    eventually, free_port, free_udp_port, need_display, our_binary, program, workspace_root,
    Desktop, Guard, Notifications,
};

/// The ring's upper tone (440 + 480 Hz; bob's tone is the lower).
const RING_HZ: f64 = 480.0;

/// The status bar's phone registration.
const REG: &str = r#"[data-testid="phone-registration"]"#;

/// Kamailio as registrar and proxy on `port` (UDP), in its own process group (its workers go
/// with it).
fn kamailio(port: u16, dir: &std::path::Path) -> Result<Guard> {
    let bin = program("kamailio").or_else(|_| {
        let p = std::path::PathBuf::from("/usr/sbin/kamailio");
        if p.is_file() {
            Ok(p)
        } else {
            bail!("kamailio is not installed — run tests/peers/install.sh")
        }
    })?;
    let log = std::fs::File::create(dir.join("kamailio.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["-DD", "-E", "-f"])
        .arg(workspace_root().join("tests/peers/kamailio/proxy.cfg"))
        .arg("-l")
        .arg(format!("udp:127.0.0.1:{port}"))
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-Y")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut g = Guard::spawn("kamailio", &mut cmd)?;
    g.group = true;
    Ok(g)
}

const BOB_HZ: f64 = 440.0;
const WINDOW_HZ: f64 = 1000.0;
const CAROL_HZ: f64 = 660.0;

/// `user` (`switchboard-agent answer`) registered at the Kamailio `server` with `password`,
/// answering one call, playing `tone`, recording what they hear to `heard`, hanging up after
/// `hangup` seconds; returned once registered.
async fn answers(
    server: &str,
    (user, password): (&str, &str),
    hangup: &str,
    tone: &Path,
    heard: &Path,
) -> Result<Child> {
    let mut bob = Command::new(our_binary("switchboard-agent")?)
        .env("SWITCHBOARD_RTP_PORTS", "40000-59999")
        .args(["--json", "answer", "--server", server])
        .args(["--user", user, "--password", password])
        .args(["--wait", "60", "--hangup-after", hangup, "--play"])
        .arg(tone)
        .arg("--record")
        .arg(heard)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("switchboard-agent answer")?;
    let stdout = bob.stdout.take().context("the answering agent's stdout")?;
    // Registered once it says it listens; its later events are read (and dropped) on, so that
    // the pipe never fills.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("\"listening\"") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(20), rx).await {
        Ok(Ok(())) => Ok(bob),
        _ => {
            let _ = bob.kill();
            let out = bob.wait_with_output()?;
            bail!(
                "{user} did not register with Kamailio: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }
    }
}

/// Bob's call rings in the window: answered there, bob shown.
async fn answer_bob(c: &Client) -> Result<()> {
    wait_text(c, r#"[data-testid="incoming-caller"]"#, "bob").await?;
    click(c, r#"[data-testid="answer"]"#).await?;
    wait_text(c, r#"[data-testid="in-call-caller"]"#, "bob").await
}

/// In the call: `target` typed in the plain account's transfer field, then `button`
/// (Transfer or Consult) pressed.
async fn plain_transfer(c: &Client, target: &str, button: &str) -> Result<()> {
    click(c, r#"[data-testid="plain-transfer-open"]"#).await?;
    type_into(c, r#"[data-testid="plain-transfer-target"]"#, target).await?;
    click(c, button).await
}

/// `who` (an answering agent) ended well.
async fn hung_up(agent: Child, who: &str) -> Result<()> {
    let out = tokio::task::spawn_blocking(move || agent.wait_with_output()).await??;
    if !out.status.success() {
        bail!(
            "{who}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Bob's call that asked for a transfer (`out`): his REFER ended with `status` (the window
/// `what` it).
fn refer_ended(out: std::process::Output, status: u16, what: &str) -> Result<()> {
    let said = String::from_utf8_lossy(&out.stdout);
    let want = format!("\"status\":{status}");
    if !said
        .lines()
        .any(|l| l.contains("\"transfer_progress\"") && l.contains(&want))
    {
        bail!("bob's REFER {what} in the window: no {status} in\n{said}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the real window: needs an X display, tauri-driver, WebKitWebDriver and Kamailio"]
async fn the_window_registers_a_plain_sip_account_with_kamailio() -> Result<()> {
    need_display()?;
    let sip_port = free_udp_port()?;
    let work = tempfile::tempdir()?;
    let mut k = kamailio(sip_port, work.path())?;
    // Bound once this process can no longer bind the port.
    let start = std::time::Instant::now();
    while std::net::UdpSocket::bind(("127.0.0.1", sip_port)).is_ok() {
        k.check_alive()?;
        if start.elapsed() > Duration::from_secs(15) {
            bail!("Kamailio did not listen on {sip_port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pulse = PulseServer::start()?;
    let pulse_server = pulse.server();
    let alsa_home = pulse.alsa_home()?;
    // A session bus with dunst (a notification server) and no keychain on it: the password
    // goes to the encrypted file.
    let notifications = Notifications::start(work.path()).await?;
    let config_dir = work.path().join("config");
    let data_dir = work.path().join("data");
    // No router: the plain account needs none.
    let nowhere = format!("http://127.0.0.1:{}", free_port()?);
    let desktop = Desktop::start(
        &[
            ("SWITCHBOARD_CONFIG_DIR", config_dir.as_os_str()),
            ("SWITCHBOARD_DATA_DIR", data_dir.as_os_str()),
            ("SWITCHBOARD_TOKEN_KEY", OsStr::new("file")),
            ("SWITCHBOARD_ROUTER_URL", OsStr::new(&nowhere)),
            ("PULSE_SERVER", OsStr::new(&pulse_server)),
            // ALSA's `jack` is the test server's second output (the headset).
            ("HOME", alsa_home.as_os_str()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                OsStr::new(&notifications.address),
            ),
            ("SWITCHBOARD_LOG", OsStr::new("info")),
        ],
        "tauri-driver-sip-account.log",
    )
    .await?;
    let c = desktop.open().await?;
    let result = async {
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        click(&c, r#"[data-testid="phone-source-sip"]"#).await?;
        let registrar = format!("sip:127.0.0.1:{sip_port}");
        // Checked in the window before anything is sent.
        type_into(&c, r#"[data-testid="sip-registrar"]"#, "127.0.0.1").await?;
        type_into(&c, r#"[data-testid="sip-user"]"#, "alice").await?;
        type_into(&c, r#"[data-testid="sip-password"]"#, "not-the-password").await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_text(
            &c,
            r#"[data-testid="sip-registrar-error"]"#,
            "sip: or sips:",
        )
        .await?;
        // A `;transport=` the Transport field (UDP) disagrees with: which one is meant is not
        // the window's to guess.
        type_into(
            &c,
            r#"[data-testid="sip-registrar"]"#,
            "sip:127.0.0.1;transport=tcp",
        )
        .await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_text(
            &c,
            r#"[data-testid="sip-registrar-error"]"#,
            "must be the one chosen under Transport",
        )
        .await?;
        // A registrar nobody answers at (TCP to a closed port): saved, and said at once
        // (the connection refused, not 32 s of silence), with the address it tried.
        let closed = free_port()?;
        let nowhere = format!("sip:127.0.0.1:{closed}");
        type_into(&c, r#"[data-testid="sip-registrar"]"#, &nowhere).await?;
        choose(&c, r#"[data-testid="sip-transport"]"#, "tcp").await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_text(&c, r#"[data-testid="phone-saved"]"#, "saved").await?;
        wait_attr(&c, REG, "data-state", "failing").await?;
        let bar = c.find(css(REG)).await?;
        let said = bar.prop("textContent").await?.unwrap_or_default();
        let title = bar.attr("title").await?.unwrap_or_default();
        eprintln!("an unreachable registrar: {said:?} ({title:?})");
        if !said.contains("does not answer") || !title.contains(&format!("127.0.0.1:{closed}")) {
            bail!("the status bar says {said:?} ({title:?})");
        }
        screenshot(&c, "sip-account-unreachable.png").await?;
        // A wrong password: saved, and the SIP server's refusal said.
        type_into(&c, r#"[data-testid="sip-registrar"]"#, &registrar).await?;
        choose(&c, r#"[data-testid="sip-transport"]"#, "udp").await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_text(&c, r#"[data-testid="phone-saved"]"#, "saved").await?;
        wait_attr(&c, REG, "data-state", "failing").await?;
        let bar = c.find(css(REG)).await?;
        // Cut short with an ellipsis on screen: read what it holds.
        let said = bar.prop("textContent").await?.unwrap_or_default();
        if !said.contains("refused the registration") {
            bail!("the status bar says {said:?}");
        }
        let title = bar.attr("title").await?.unwrap_or_default();
        if !title.starts_with(&format!(
            "SIP registration refused by {registrar}: 403 Forbidden — "
        )) {
            bail!("the tooltip does not say who refused: {title:?}");
        }
        screenshot(&c, "sip-account-refused.png").await?;
        // The right one: registered, in the status bar and the Phone section.
        type_into(&c, r#"[data-testid="sip-password"]"#, "wonderland").await?;
        click(&c, r#"[data-testid="phone-save"]"#).await?;
        wait_attr(&c, REG, "data-state", "registered").await?;
        wait_text(
            &c,
            r#"[data-testid="phone-settings-status"]"#,
            "alice@127.0.0.1",
        )
        .await?;
        let kept = value_of(&c, r#"[data-testid="sip-password"]"#).await?;
        if kept.as_deref().is_some_and(|v| !v.is_empty()) {
            bail!("the password field was not emptied");
        }
        c.find(css(r#"[data-testid="sip-password-kept"]"#)).await?;
        screenshot(&c, "sip-account-registered.png").await?;
        // Calls on the plain account, both ways, with bob: a headless switchboard-agent
        // registered at the same Kamailio (bob / builder), playing 440 Hz; the window's
        // microphone hears 1000 Hz.
        let server = format!("sip:127.0.0.1:{sip_port}");
        let bob_tone = work.path().join("bob.wav");
        tone_wav(&bob_tone, BOB_HZ, 8000, 40)?;
        let mic_tone = work.path().join("window-mic.wav");
        tone_wav(&mic_tone, WINDOW_HZ, 48000, 60)?;
        let _mic = pulse.play("sb_mic", &mic_tone)?;
        let bob_heard = work.path().join("bob-heard.wav");
        let bob = answers(&server, ("bob", "builder"), "30", &bob_tone, &bob_heard).await?;
        // The window calls bob by his user name (at its registrar).
        let window_heard = work.path().join("window-heard.wav");
        let speaker = pulse.record("sb_speaker", &window_heard)?;
        type_into(&c, r#"[data-testid="dial-input"]"#, "bob").await?;
        click(&c, r#"[data-testid="dial-call"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "bob").await?;
        wait_clock(&c, r#"[data-testid="call-timer"]"#, 2).await?;
        screenshot(&c, "sip-account-call.png").await?;
        // A headset plugged in and chosen in Settings → Audio during the call (ALSA `jack`,
        // the test server's `sb_headset`): the call's sound moves to it, and the call goes on.
        let headset_heard = work.path().join("headset-heard.wav");
        let headset = pulse.record("sb_headset", &headset_heard)?;
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        choose(&c, r#"[data-testid="audio-output"]"#, "jack").await?;
        click(&c, r#"[data-testid="settings-save"]"#).await?;
        wait_text(&c, r#"[data-testid="settings-saved"]"#, "").await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "bob").await?;
        speaker.stop();
        // The speaker is quiet while the headset plays.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let quiet_wav = work.path().join("speaker-quiet.wav");
        let quiet = pulse.record("sb_speaker", &quiet_wav)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        screenshot(&c, "sip-account-headset.png").await?;
        quiet.stop();
        headset.stop();
        // The headset unplugged: the sound server moves the call to the default device (the
        // speaker), which plays bob again; the call goes on.
        click(&c, r#"[data-testid="nav-home"]"#).await?;
        pulse.unplug("sb_headset")?;
        let back_wav = work.path().join("speaker-back.wav");
        let back = pulse.record("sb_speaker", &back_wav)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        back.stop();
        // The sound server itself goes away (it crashed): the window says the call has no
        // sound device, and the call goes on; once a server is back, the call's sound comes
        // back on the default device and the notice goes.
        pulse.kill();
        eventually("the window to say the speaker is gone", WAIT, || async {
            let n = c.find(css(r#"[data-testid="call-device"]"#)).await?;
            let kind = n.attr("data-kind").await?.unwrap_or_default();
            Ok(["lost", "unavailable"]
                .contains(&kind.as_str())
                .then_some(()))
        })
        .await?;
        screenshot(&c, "sip-account-no-sound.png").await?;
        pulse.restart()?;
        let call_sound_back = "the call's sound back (the notice gone)";
        eventually(call_sound_back, WAIT, || async {
            c.find(css(r#"[data-testid="in-call"]"#)).await?;
            let notices = c.find_all(css(r#"[data-testid="call-device"]"#)).await?;
            Ok(notices.is_empty().then_some(()))
        })
        .await?;
        let again_wav = work.path().join("speaker-again.wav");
        let again = pulse.record("sb_speaker", &again_wav)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        again.stop();
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "bob").await?;
        // Bob hangs up after 30 s.
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        hung_up(bob, "bob (answering)").await?;
        heard(&bob_heard, WINDOW_HZ, BOB_HZ, 40, "bob heard the window")?;
        heard(
            &window_heard,
            BOB_HZ,
            WINDOW_HZ,
            20,
            "the window's speaker played bob",
        )?;
        heard(
            &headset_heard,
            BOB_HZ,
            WINDOW_HZ,
            40,
            "the headset played bob after the move",
        )?;
        let leaked = blocks_with(&quiet_wav, BOB_HZ, 0.5)?;
        eprintln!("the speaker while the headset played: {leaked} blocks of bob");
        if leaked > 5 {
            bail!("the speaker went on playing after the move: {leaked} blocks of bob");
        }
        heard(
            &back_wav,
            BOB_HZ,
            WINDOW_HZ,
            20,
            "the speaker played bob again after the headset was unplugged",
        )?;
        heard(
            &again_wav,
            BOB_HZ,
            WINDOW_HZ,
            20,
            "the speaker played bob again after the sound server came back",
        )?;
        // Bob calls alice: the window rings and so does the OS, with Answer and Reject on the
        // notification. Answered there (dunst's context menu, as a person picks a button);
        // the call goes on in the window; bob hangs up.
        let bob_runs = |ring: &str, hangup: &str, extra: &[&std::ffi::OsStr]| {
            let mut call = Command::new(our_binary("switchboard-agent")?);
            call.env("SWITCHBOARD_RTP_PORTS", "40000-59999")
                .args(["--json", "call", &format!("sip:alice@127.0.0.1:{sip_port}")])
                .args([
                    "--server",
                    &server,
                    "--user",
                    "bob",
                    "--password",
                    "builder",
                ])
                .args(["--ring-timeout", ring, "--hangup-after", hangup])
                .args(extra);
            anyhow::Ok(tokio::task::spawn_blocking(move || call.output()))
        };
        let bob_transfers = |ring: &str, hangup: &str, transfer: Option<&str>| match transfer {
            Some(t) => bob_runs(ring, hangup, &["--transfer".as_ref(), t.as_ref()]),
            None => bob_runs(ring, hangup, &[]),
        };
        let bob_calls = |ring: &str, hangup: &str| bob_transfers(ring, hangup, None);
        // The ring on the headset (Settings → Audio → ringing device), the calls on the
        // speaker: bob's call rings in the headset only (the ring's 480 Hz).
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        choose(&c, r#"[data-testid="audio-ringer"]"#, "jack").await?;
        choose(&c, r#"[data-testid="audio-output"]"#, "").await?;
        click(&c, r#"[data-testid="settings-save"]"#).await?;
        wait_text(&c, r#"[data-testid="settings-saved"]"#, "").await?;
        click(&c, r#"[data-testid="nav-home"]"#).await?;
        let (ring_headset, ring_speaker) = (
            work.path().join("ring-headset.wav"),
            work.path().join("ring-speaker.wav"),
        );
        let rings = (
            pulse.record("sb_headset", &ring_headset)?,
            pulse.record("sb_speaker", &ring_speaker)?,
        );
        let calling = bob_calls("30", "4")?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, "bob").await?;
        notifications
            .sent(&["Incoming call: bob", "answer", "Answer", "reject", "Reject"])
            .await?;
        // The ring's first two bursts (0.4 s each, 0.2 s apart; the device takes a moment to
        // open), then 5 s of quiet.
        tokio::time::sleep(Duration::from_secs(2)).await;
        rings.0.stop();
        rings.1.stop();
        let (in_headset, on_speaker) = (
            blocks_with(&ring_headset, RING_HZ, 0.3)?,
            blocks_with(&ring_speaker, RING_HZ, 0.3)?,
        );
        eprintln!("the ring ({RING_HZ} Hz): {in_headset} blocks in the headset, {on_speaker} on the speaker");
        if in_headset < 4 || on_speaker > 1 {
            bail!("the ring played {in_headset} blocks in the headset (the ringing device), {on_speaker} on the speaker");
        }
        notifications.choose("answer")?;
        wait_clock(&c, r#"[data-testid="call-timer"]"#, 1).await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        let out = calling.await??;
        if !out.status.success() {
            bail!(
                "bob (calling): {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Bob calls and gives up after 4 s: the window's pop-up goes, and the app takes its
        // notification back (the caller is no longer there to answer).
        let before = notifications.taken_back()?;
        let calling = bob_calls("4", "4")?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, "bob").await?;
        gone(&c, r#"[data-testid="incoming-caller"]"#).await?;
        calling.await??;
        switchboard_e2e::eventually(
            "the notification of a call given up to be taken back",
            Duration::from_secs(10),
            || async { Ok((notifications.taken_back()? > before).then_some(())) },
        )
        .await?;
        switchboard_e2e::eventually(
            "no notification left on screen",
            Duration::from_secs(10),
            || async { Ok((notifications.displayed()? == 0).then_some(())) },
        )
        .await?;
        // Bob calls again: Reject on the notification; bob hears 603 Decline, the window's
        // pop-up goes.
        let calling = bob_calls("30", "4")?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, "bob").await?;
        notifications.choose("reject")?;
        gone(&c, r#"[data-testid="incoming-caller"]"#).await?;
        let out = calling.await??;
        let said = String::from_utf8_lossy(&out.stdout);
        if out.status.success() || !said.contains("603") {
            bail!(
                "bob's call rejected from the notification: {}\n{said}",
                out.status
            );
        }
        // A transfer asked by bob to a target outside the account's domain (a REFER no
        // registrar vouches for): put to the person in the window, who declines it; bob hears
        // 603 on his REFER, the call goes on until he hangs up.
        const OUTSIDE: &str = "sip:carol@elsewhere.example";
        let calling = bob_transfers("30", "8", Some(OUTSIDE))?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, "bob").await?;
        click(&c, r#"[data-testid="answer"]"#).await?;
        wait_text(&c, r#"[data-testid="transfer-ask-text"]"#, OUTSIDE).await?;
        let why = title_of(&c, r#"[data-testid="transfer-ask-text"]"#).await?;
        if !why.contains("not of the account's domain") {
            bail!("the transfer asked says why it is put to the person: {why:?}");
        }
        click(&c, r#"[data-testid="transfer-ask-decline"]"#).await?;
        gone(&c, r#"[data-testid="transfer-ask"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "bob").await?;
        refer_ended(calling.await??, 603, "declined")?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        // Again, and followed this time: the window calls the target (Kamailio finds carol,
        // registered there, by her user name), bob's REFER ends 200 and he leaves; the window
        // shows the call with carol, who hangs up after 6 s.
        let carol_tone = work.path().join("carol.wav");
        tone_wav(&carol_tone, BOB_HZ, 8000, 30)?;
        // Carol answers one call and hangs up after 6 s.
        let carol_answers = |heard: &str| {
            let (server, tone, heard) =
                (server.clone(), carol_tone.clone(), work.path().join(heard));
            async move { answers(&server, ("carol", "carrots"), "6", &tone, &heard).await }
        };
        let carol = carol_answers("carol-heard.wav").await?;
        let calling = bob_transfers("30", "20", Some(OUTSIDE))?;
        wait_text(&c, r#"[data-testid="incoming-caller"]"#, "bob").await?;
        click(&c, r#"[data-testid="answer"]"#).await?;
        wait_text(&c, r#"[data-testid="transfer-ask-text"]"#, OUTSIDE).await?;
        click(&c, r#"[data-testid="transfer-ask-follow"]"#).await?;
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "carol").await?;
        refer_ended(calling.await??, 200, "followed")?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        hung_up(carol, "carol (answering the transfer)").await?;
        // The window's own blind transfer (a plain account has no router to consult
        // through): first to "nobody", whom Kamailio does not know — bob follows the REFER
        // (it comes from his registrar's domain), his call to them fails, his NOTIFY says 404
        // and the window says the transfer did not go through, the call still up with bob;
        // then to carol by her user name: bob calls her and the window's leg ends.
        let carol = carol_answers("carol-heard-2.wav").await?;
        let calling = bob_transfers("30", "25", None)?;
        answer_bob(&c).await?;
        plain_transfer(&c, "nobody", r#"[data-testid="plain-transfer-go"]"#).await?;
        wait_text(&c, r#"[data-testid="phone-problem"]"#, "did not go through").await?;
        let why = title_of(&c, r#"[data-testid="phone-problem"]"#).await?;
        if !why.contains("404") {
            bail!("the failed transfer says what the target answered: {why:?}");
        }
        wait_text(&c, r#"[data-testid="in-call-caller"]"#, "bob").await?;
        plain_transfer(&c, "carol", r#"[data-testid="plain-transfer-go"]"#).await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        // Carol answered her one call and hung up; bob's were the window's and carol's.
        hung_up(carol, "carol (the window's transfer of bob)").await?;
        let out = calling.await??;
        let said = String::from_utf8_lossy(&out.stdout);
        let established: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("\"established\""))
            .collect();
        if said.matches("\"transfer_requested\"").count() != 2
            || established.len() != 2
            || !said.contains("\"status\":404")
        {
            bail!(
                "bob (transferred by the window to nobody, then carol): {}\n{said}",
                out.status
            );
        }
        // A consultation on the plain account, then a three-way call the window's phone
        // mixes: bob (440 Hz) calls, the window consults carol (660 Hz) by her user name, bob
        // on hold; carol answers; Conference: bob hears carol and carol hears bob through the
        // window. Then Leave: the window hands bob to carol (REFER with Replaces), its two
        // calls end, and bob and carol talk on until carol hangs up.
        let carol_conf_tone = work.path().join("carol-conference.wav");
        tone_wav(&carol_conf_tone, CAROL_HZ, 8000, 40)?;
        let carol_conf_heard = work.path().join("carol-conference-heard.wav");
        let carol = answers(
            &server,
            ("carol", "carrots"),
            "20",
            &carol_conf_tone,
            &carol_conf_heard,
        )
        .await?;
        let bob_conf_heard = work.path().join("bob-conference-heard.wav");
        let calling = bob_runs(
            "30",
            "60",
            &[
                "--play".as_ref(),
                bob_tone.as_os_str(),
                "--record".as_ref(),
                bob_conf_heard.as_os_str(),
            ],
        )?;
        answer_bob(&c).await?;
        plain_transfer(&c, "carol", r#"[data-testid="plain-consult-go"]"#).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "talking").await?;
        wait_attr(&c, r#"[data-testid="in-call"]"#, "data-held", "true").await?;
        click(&c, r#"[data-testid="consult-conference"]"#).await?;
        wait_attr(&c, r#"[data-testid="consult"]"#, "data-state", "conference").await?;
        wait_attr(&c, r#"[data-testid="in-call"]"#, "data-held", "false").await?;
        screenshot(&c, "sip-account-conference.png").await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        click(&c, r#"[data-testid="consult-complete"]"#).await?;
        gone(&c, r#"[data-testid="in-call"]"#).await?;
        hung_up(carol, "carol (consulted, in the conference, then handed bob)").await?;
        let out = calling.await??;
        let said = String::from_utf8_lossy(&out.stdout);
        if !said.contains("\"replaces\":\"") || said.matches("\"established\"").count() != 2 {
            bail!("bob (in the window's conference, then handed to carol): {}\n{said}", out.status);
        }
        // Bob's call with the window: carol's voice came through the window's mix; carol's
        // consultation call: bob's.
        let (bob_heard_carol, carol_heard_bob) = (
            blocks_with(&bob_conf_heard, CAROL_HZ, 0.2)?,
            blocks_with(&carol_conf_heard, BOB_HZ, 0.2)?,
        );
        eprintln!("the window's conference: bob heard carol in {bob_heard_carol} blocks, carol heard bob in {carol_heard_bob}");
        if bob_heard_carol < 20 || carol_heard_bob < 20 {
            bail!("the window's conference: bob heard carol in {bob_heard_carol} blocks, carol heard bob in {carol_heard_bob} (of 50 ms)\nbob: {said}");
        }
        // The password file does not hold it in clear.
        let secret =
            std::fs::read(data_dir.join("sip-password.bin")).context("sip-password.bin")?;
        if secret.windows(10).any(|w| w == b"wonderland") {
            bail!("the password is kept in clear");
        }
        // Forgotten: the phone leaves the account (back to the router's, which is not
        // running here), the window says so, the password file is gone.
        click(&c, r#"[data-testid="nav-settings"]"#).await?;
        click(&c, r#"[data-testid="sip-password-forget"]"#).await?;
        wait_text(
            &c,
            r#"[data-testid="sip-password-forgotten"]"#,
            "The password is forgotten",
        )
        .await?;
        switchboard_e2e::eventually(
            "the phone to leave the plain account",
            Duration::from_secs(30),
            || async {
                let state = c.find(css(REG)).await?.attr("data-state").await?;
                Ok((state.as_deref() != Some("registered")).then_some(()))
            },
        )
        .await?;
        if data_dir.join("sip-password.bin").exists() {
            bail!("sip-password.bin is still there after Forget");
        }
        screenshot(&c, "sip-account-forgotten.png").await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&c, "sip-account-failed.png").await;
    }
    switchboard_e2e::ui::end_session(c).await;
    result?;
    // The settings file keeps the account, with no password, and the phone on the router's.
    let settings =
        std::fs::read_to_string(config_dir.join("settings.toml")).context("settings.toml")?;
    if !settings.contains("sip_account")
        || !settings.contains("source = \"router\"")
        || settings.contains("wonderland")
        || settings.contains("password")
    {
        bail!("settings.toml: {settings}");
    }
    drop(desktop);
    Ok(())
}
