//! `switchboard-agent work --router URL`: the headless agent of the contact center. It gets
//! its SIP credentials from the router (the signed-in account, or `--as UPN` where the router
//! checks no tokens), registers its phone with them, says Ready (or Not ready) and answers
//! what the router offers — the `answer` command's phone, with every flag it has after `--`.
//! After each queue call it ends wrap-up with `--disposition` and `--notes`; on Ctrl-C or SIGTERM it signs
//! off: Not ready (so nothing more is offered), a call up hung up and one ringing refused,
//! the phone unregistered, then the router forgets it and the credentials stop working.
//! The router's password reaches the phone in its arguments' struct, never in an argument
//! list, a log or the output.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser};
use switchboard_agent::desk::AgentApi as Api;
use switchboard_api::AgentStatus;
use switchboard_api::{AgentState, SipCredentials};

#[derive(Args, Debug, Clone)]
pub struct WorkArgs {
    /// The router's base URL (http://127.0.0.1:7700).
    #[arg(long)]
    pub router: String,
    /// Act as this agent (UPN) — only where the router checks no tokens (`[auth] mode =
    /// "none"`); otherwise the signed-in account (`switchboard-agent login`) is the agent.
    #[arg(long = "as", value_name = "UPN")]
    pub as_agent: Option<String>,
    /// Take calls (the default).
    #[arg(long, conflicts_with = "not_ready")]
    pub ready: bool,
    /// Start Not ready, for this reason (break, lunch, training, …).
    #[arg(long, value_name = "REASON")]
    pub not_ready: Option<String>,
    /// Let an offered call ring this many seconds before answering.
    #[arg(long, default_value_t = 0.0)]
    pub answer_after: f64,
    /// Hang up this many seconds after answering.
    #[arg(long)]
    pub hangup_after: Option<f64>,
    /// Play this WAV file into each call.
    #[arg(long, value_name = "FILE.wav")]
    pub play: Option<PathBuf>,
    /// Record each call (further calls get -2, -3 … before the extension).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// End wrap-up after each queue call with this disposition code.
    #[arg(long, value_name = "CODE")]
    pub disposition: Option<String>,
    /// End wrap-up after each queue call with these notes on the call's record (at most
    /// 2,000 characters; line breaks and tabs, no other control characters).
    #[arg(long, value_name = "TEXT", value_parser = notes_arg)]
    pub notes: Option<String>,
    /// Stop after this many calls (default: until interrupted).
    #[arg(long)]
    pub calls: Option<u32>,
    /// More flags for the phone, as `switchboard-agent answer` takes them (after `--`).
    #[arg(last = true, value_name = "ANSWER FLAGS")]
    pub phone: Vec<String>,
}

/// `--notes`, as the router takes them (checked here so a bad one fails at once, not after
/// the first call).
fn notes_arg(text: &str) -> Result<String, String> {
    switchboard_agent::desk::wrap_up_notes(Some(text))
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

/// What ends each wrap-up: `--disposition` and `--notes`. Neither given: the router ends it
/// at the queue's wrap-up time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WrapUpAnswer {
    disposition: Option<String>,
    notes: Option<String>,
}

impl WrapUpAnswer {
    fn of(args: &WorkArgs) -> Self {
        Self {
            disposition: args.disposition.clone(),
            notes: args.notes.clone().filter(|n| !n.is_empty()),
        }
    }

    fn given(&self) -> bool {
        self.disposition.is_some() || self.notes.is_some()
    }

    /// Ends the wrap-up at the router with them; the notes' length is logged, never their text.
    async fn send(&self, api: &Api) {
        match api
            .wrap_up(self.disposition.as_deref(), self.notes.as_deref())
            .await
        {
            Ok(_) => tracing::info!(
                disposition = ?self.disposition,
                notes_chars = self.notes.as_deref().map_or(0, |n| n.chars().count()),
                "wrap-up ended"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot end wrap-up; the router ends it after the queue's wrap-up time")
            }
        }
    }
}

/// Parses `answer`'s flags, so the phone is configured exactly as that command would be.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct AnswerFlags {
    #[command(flatten)]
    args: super::call::AnswerArgs,
}

/// The signed-in account's token for the router's API.
async fn signed_in_token() -> anyhow::Result<String> {
    use switchboard_agent::router::RouterTokens;
    let session = super::call::account_session()?;
    switchboard_agent::account::AccountRouterTokens(session)
        .router_token()
        .await
        .context("no token for the router: sign in with `switchboard-agent login` (and name the router's API scope in tenant.toml), or use --as UPN with a router that checks no tokens")
}

/// The `answer` flags for the phone: the router's account (all but its password, which
/// never passes through an argument list), then ours.
fn phone_flags(args: &WorkArgs, creds: &SipCredentials) -> Vec<String> {
    let mut v: Vec<String> = [
        "--server",
        &creds.registrar,
        "--user",
        &creds.username,
        "--domain",
        &creds.domain,
        "--calls",
        &args.calls.unwrap_or(u32::MAX).to_string(),
        "--answer-after",
        &args.answer_after.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(h) = args.hangup_after {
        v.extend(["--hangup-after".to_owned(), h.to_string()]);
    }
    for (flag, path) in [("--play", &args.play), ("--record", &args.record)] {
        if let Some(p) = path {
            v.extend([flag.to_owned(), p.display().to_string()]);
        }
    }
    v.extend(args.phone.iter().cloned());
    v
}

/// The phone `answer` would be with these flags, registering with the router's credentials.
fn phone_args(args: &WorkArgs, creds: &SipCredentials) -> anyhow::Result<super::call::AnswerArgs> {
    let mut flags = AnswerFlags::try_parse_from(phone_flags(args, creds)).map_err(|e| {
        anyhow::anyhow!(
            "the phone's flags after -- do not read (they are `switchboard-agent answer`'s): {e}"
        )
    })?;
    // The router's password, whatever the environment or the flags after -- say.
    flags.args.account.password = Some(creds.password.clone());
    flags.args.account.password_file = None;
    Ok(flags.args)
}

/// Says Ready (or Not ready) once the phone is registered, then ends each wrap-up with the
/// disposition and notes, watching the agent's state at the router.
async fn keep_state(
    api: &Api,
    ready: bool,
    reason: Option<String>,
    answer: WrapUpAnswer,
    json: bool,
) {
    let mut said = false;
    let mut last = None;
    loop {
        match api.status().await {
            Ok(st) => {
                if !said && st.registered {
                    match api.set_state(ready, reason.clone()).await {
                        Ok(now) => {
                            said = true;
                            print_state(json, &now);
                            // `st` is from before the change: start from what it made.
                            last = Some(now.state);
                            continue;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot set the agent's state"),
                    }
                }
                if said && last != Some(st.state) {
                    if last.is_some() {
                        print_state(json, &st);
                    }
                    if st.state == AgentState::WrapUp && answer.given() {
                        answer.send(api).await;
                    }
                    last = Some(st.state);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the agent's state"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_state(json: bool, st: &AgentStatus) {
    let state = serde_json::to_value(st.state).unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "state", "state": state, "reason": st.reason})
        );
    } else {
        println!(
            "state: {}{}",
            state.as_str().unwrap_or("?"),
            st.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
}

/// Ctrl-C, or SIGTERM where there is one.
async fn interrupted() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

/// The Not-ready reason given while signing off.
const SIGN_OFF_REASON: &str = "signed off";

pub async fn run(args: WorkArgs, json: bool) -> anyhow::Result<()> {
    let base = switchboard_agent::settings::normalise_router_url(&args.router)?;
    let bearer = match &args.as_agent {
        Some(_) => None,
        None => Some(signed_in_token().await?),
    };
    let api = Api::new(&base, bearer, args.as_agent.clone())?;
    let creds = api.credentials().await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "credentials", "agent": creds.agent, "tenant": creds.tenant, "registrar": creds.registrar, "username": creds.username})
        );
    } else {
        println!(
            "{} of {}: phone registers at {}",
            creds.agent, creds.tenant, creds.registrar
        );
    }
    let phone_args = phone_args(&args, &creds)?;
    let ready = args.not_ready.is_none();
    let watcher = keep_state(
        &api,
        ready,
        args.not_ready.clone(),
        WrapUpAnswer::of(&args),
        json,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let phone = super::call::answer_until(phone_args, json, async {
        let _ = stopped.await;
    });
    tokio::pin!(phone);
    let signal = tokio::select! {
        r = &mut phone => Err(r),
        () = watcher => Err(Ok(())),
        r = interrupted() => Ok(r),
    };
    // Whether signing off hung up a queue call (its wrap-up is ours to end).
    let mut hung_up_a_call = false;
    let result = match signal {
        Err(phone_ended) => phone_ended,
        Ok(r) => {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot listen for signals; signing off");
            }
            // Not ready first, so the router offers nothing more; then the phone hangs up,
            // refuses what rings and unregisters.
            match api.set_state(false, Some(SIGN_OFF_REASON.to_owned())).await {
                Ok(st) => {
                    hung_up_a_call = matches!(st.state, AgentState::OnCall | AgentState::WrapUp);
                    print_state(json, &st)
                }
                Err(e) => tracing::warn!(error = %e, "cannot say Not ready while signing off"),
            }
            let _ = stop.send(());
            match tokio::time::timeout(Duration::from_secs(20), &mut phone).await {
                // Asked to stop, it stopped: an earlier call's failure was reported already.
                Ok(Err(e)) => tracing::warn!(error = %e, "the phone stopped after an error"),
                Ok(Ok(())) => {}
                Err(_) => tracing::warn!("the phone did not unregister within 20 s"),
            }
            Ok(())
        }
    };
    // The last call's wrap-up, when the phone stopped right after it (--calls), or signing
    // off hung it up (the phone is gone then, but the router still takes the disposition).
    let answer = WrapUpAnswer::of(&args);
    if result.is_ok() && answer.given() && hung_up_a_call {
        answer.send(&api).await;
    } else if result.is_ok() && answer.given() {
        for _ in 0..12 {
            match api.status().await {
                Ok(st) if st.state == AgentState::WrapUp => {
                    answer.send(&api).await;
                    break;
                }
                Ok(st) if st.state != AgentState::OnCall => break,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    // Signing off: the router forgets the phone and offers it nothing more.
    match api.sign_off().await {
        Ok(()) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "signed_off", "agent": creds.agent})
                );
            } else {
                println!("signed off: the router forgot this phone");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot sign off at the router"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> SipCredentials {
        SipCredentials {
            agent: "adele@contoso.example".into(),
            tenant: "contoso".into(),
            username: "agent-x".into(),
            password: "secret".into(),
            domain: "contoso.example".into(),
            registrar: "sip:127.0.0.1:7760".into(),
        }
    }

    fn work(argv: &[&str]) -> WorkArgs {
        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct W {
            #[command(flatten)]
            w: WorkArgs,
        }
        W::try_parse_from(argv).unwrap().w
    }

    #[test]
    fn the_phone_gets_the_routers_account_and_the_answer_flags_after_the_double_dash() {
        let args = work(&[
            "--router",
            "http://127.0.0.1:7700",
            "--as",
            "adele@contoso.example",
            "--play",
            "a.wav",
            "--calls",
            "2",
            "--",
            "--codec",
            "pcmu",
        ]);
        let phone = phone_args(&args, &creds()).unwrap();
        assert_eq!(phone.account.server.as_deref(), Some("sip:127.0.0.1:7760"));
        assert_eq!(phone.account.user, "agent-x");
        assert_eq!(phone.account.domain.as_deref(), Some("contoso.example"));
        assert_eq!(phone.account.password.as_deref(), Some("secret"));
        assert_eq!(phone.calls, 2);
        assert_eq!(phone.account.codecs, ["pcmu"]);
        assert_eq!(
            phone.account.play.as_deref(),
            Some(std::path::Path::new("a.wav"))
        );
    }

    #[test]
    fn the_password_never_passes_through_an_argument_list() {
        // An argument list ends up in clap's error messages; the password must not.
        let args = work(&["--router", "http://x", "--", "--password", "mine"]);
        assert!(!phone_flags(&args, &creds()).iter().any(|f| f == "secret"));
        // Flags after -- cannot swap the router's password for another.
        let phone = phone_args(&args, &creds()).unwrap();
        assert_eq!(phone.account.password.as_deref(), Some("secret"));
        let err = phone_args(
            &work(&["--router", "http://x", "--", "--no-such-flag"]),
            &creds(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("after --"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn ready_is_the_default_and_not_ready_carries_its_reason() {
        let a = work(&["--router", "http://x"]);
        assert!(a.not_ready.is_none());
        let a = work(&["--router", "http://x", "--not-ready", "lunch"]);
        assert_eq!(a.not_ready.as_deref(), Some("lunch"));
        assert_eq!(a.phone, Vec::<String>::new());
    }

    #[test]
    fn notes_go_with_the_disposition_and_bad_ones_are_refused_at_once() {
        let a = work(&["--router", "http://x"]);
        assert!(!WrapUpAnswer::of(&a).given());
        let a = work(&[
            "--router",
            "http://x",
            "--disposition",
            "resolved",
            "--notes",
            "  Refund promised.\r\n\tCall back Monday  ",
        ]);
        assert_eq!(
            WrapUpAnswer::of(&a),
            WrapUpAnswer {
                disposition: Some("resolved".into()),
                notes: Some("Refund promised.\n\tCall back Monday".into()),
            }
        );
        // Notes alone end the wrap-up too; blank ones are none.
        let a = work(&["--router", "http://x", "--notes", "left a voicemail"]);
        assert!(WrapUpAnswer::of(&a).given());
        let a = work(&["--router", "http://x", "--notes", "   "]);
        assert!(!WrapUpAnswer::of(&a).given());
        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct W {
            #[command(flatten)]
            w: WorkArgs,
        }
        let long = "n".repeat(2001);
        for (bad, says) in [
            (long.as_str(), "shorten"),
            ("a\u{7}b", "line breaks and tabs"),
        ] {
            let e = W::try_parse_from(["--router", "http://x", "--notes", bad])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("--notes") && e.contains(says), "{e}");
        }
    }

    #[test]
    fn ready_and_not_ready_exclude_each_other() {
        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct W {
            #[command(flatten)]
            w: WorkArgs,
        }
        assert!(
            W::try_parse_from(["--router", "http://x", "--ready", "--not-ready", "lunch"]).is_err()
        );
    }
}
