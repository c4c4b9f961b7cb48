//! `switchboard-agent work --router URL`: the headless agent of the contact center. It gets
//! its SIP credentials from the router (the signed-in account, or `--as UPN` where the router
//! checks no tokens), registers its phone with them, says Ready (or Not ready) and answers
//! what the router offers — the `answer` command's phone, with every flag it has after `--`.
//! After each queue call it ends wrap-up with `--disposition`; on Ctrl-C or SIGTERM it signs
//! off: Not ready (so nothing more is offered), a call up hung up and one ringing refused,
//! the phone unregistered, then the router forgets it and the credentials stop working.
//! The router's password reaches the phone in its arguments' struct, never in an argument
//! list, a log or the output.

use std::path::PathBuf;
use std::time::Duration;
use switchboard_agent::call::printable;

use anyhow::Context;
use clap::{Args, Parser};
use serde::de::DeserializeOwned;
use switchboard_api::{AgentRef, AgentStateChange, AgentStatus, Problem, RequestedState};
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
    /// Stop after this many calls (default: until interrupted).
    #[arg(long)]
    pub calls: Option<u32>,
    /// More flags for the phone, as `switchboard-agent answer` takes them (after `--`).
    #[arg(last = true, value_name = "ANSWER FLAGS")]
    pub phone: Vec<String>,
}

/// Parses `answer`'s flags, so the phone is configured exactly as that command would be.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct AnswerFlags {
    #[command(flatten)]
    args: super::call::AnswerArgs,
}

/// `POST /v1/agents/me/wrap-up`: the agent is done with the last call.
#[derive(Debug, serde::Serialize)]
struct WrapUpRequest<'a> {
    /// Only where the router checks no tokens (`--as`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    disposition: &'a str,
}

/// The longest text kept from a router's problem detail.
const DETAIL_MAX: usize = 500;

/// Why the router said no, for a person: the problem's detail (the router's own words say
/// what to do), else the status and a next step.
fn refusal(status: reqwest::StatusCode, body: &str, named: bool) -> String {
    let problem = serde_json::from_str::<Problem>(body).ok();
    if let Some(detail) = problem
        .as_ref()
        .and_then(|p| p.detail.as_deref())
        .and_then(|d| printable(d, DETAIL_MAX))
    {
        return format!("{} {detail}", status.as_u16());
    }
    let hint = match status.as_u16() {
        401 => "sign in again with `switchboard-agent login`",
        403 => "ask your administrator for the Agent role in the router's app registration",
        404 if named => "check the UPN given with --as and the router's [[tenants]] configuration (an older router has no such route: update it)",
        404 => "check that the signed-in account is an agent in the router's [[tenants]] configuration (an older router has no such route: update it)",
        409 => "the router takes no calls: set [sip] listen in its configuration",
        s if s >= 500 => "see the router's logs",
        _ => "check that --router names a Switchboard router of this version",
    };
    let said = problem
        .and_then(|p| printable(&p.title, DETAIL_MAX))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    format!("{} {said} — {hint}", status.as_u16())
}

/// The router's API, for one agent.
struct Api {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
    agent: Option<String>,
}

impl Api {
    /// Sends `body` and reads the answer (`None` for 204); a refusal names `what` was asked,
    /// for whom, and why.
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        what: &str,
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> anyhow::Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the router at {} for {what} — is it running, and is --router right?",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "the router refused {what} for {}: {}",
                self.agent.as_deref().unwrap_or("the signed-in agent"),
                refusal(status, &text, self.agent.is_some())
            );
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_str(&text).map(Some).with_context(|| {
            format!("the router's answer to {what} does not read — is --router a Switchboard router of this version?")
        })
    }

    async fn credentials(&self) -> anyhow::Result<SipCredentials> {
        let body = AgentRef {
            agent: self.agent.clone(),
        };
        self.send(
            reqwest::Method::POST,
            "/v1/agents/me/sip-credentials",
            "SIP credentials",
            Some(&body),
        )
        .await?
        .context("the router sent no SIP credentials")
    }

    async fn set_state(&self, ready: bool, reason: Option<String>) -> anyhow::Result<AgentStatus> {
        let body = state_change(self.agent.clone(), ready, reason);
        self.send(
            reqwest::Method::PUT,
            "/v1/agents/me/state",
            "the state change",
            Some(&body),
        )
        .await?
        .context("the router sent no state")
    }

    async fn status(&self) -> anyhow::Result<AgentStatus> {
        let path = match &self.agent {
            Some(a) => format!(
                "/v1/agents/me?agent={}",
                url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            ),
            None => "/v1/agents/me".to_owned(),
        };
        self.send(
            reqwest::Method::GET,
            &path,
            "the agent's state",
            None::<&()>,
        )
        .await?
        .context("the router sent no state")
    }

    async fn wrap_up(&self, disposition: &str) -> anyhow::Result<()> {
        let body = WrapUpRequest {
            agent: self.agent.as_deref(),
            disposition,
        };
        self.send::<AgentStatus>(
            reqwest::Method::POST,
            "/v1/agents/me/wrap-up",
            "the end of wrap-up",
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    async fn sign_off(&self) -> anyhow::Result<()> {
        let body = AgentRef {
            agent: self.agent.clone(),
        };
        self.send::<serde_json::Value>(
            reqwest::Method::DELETE,
            "/v1/agents/me/sip-credentials",
            "signing off",
            Some(&body),
        )
        .await
        .map(|_| ())
    }
}

/// The body of `PUT /v1/agents/me/state`.
fn state_change(agent: Option<String>, ready: bool, reason: Option<String>) -> AgentStateChange {
    AgentStateChange {
        agent,
        state: if ready {
            RequestedState::Ready
        } else {
            RequestedState::NotReady
        },
        reason: if ready { None } else { reason },
    }
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
/// disposition, watching the agent's state at the router.
async fn keep_state(
    api: &Api,
    ready: bool,
    reason: Option<String>,
    disposition: Option<String>,
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
                    if st.state == AgentState::WrapUp {
                        if let Some(d) = &disposition {
                            match api.wrap_up(d).await {
                                Ok(()) => tracing::info!(disposition = %d, "wrap-up ended"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot end wrap-up; the router ends it after the queue's wrap-up time")
                                }
                            }
                        }
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
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        base,
        bearer,
        agent: args.as_agent.clone(),
    };
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
        args.disposition.clone(),
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
    if let (Ok(()), Some(d), true) = (&result, &args.disposition, hung_up_a_call) {
        if let Err(e) = api.wrap_up(d).await {
            tracing::warn!(error = %e, "cannot end wrap-up");
        }
    } else if let (Ok(()), Some(d)) = (&result, &args.disposition) {
        for _ in 0..12 {
            match api.status().await {
                Ok(st) if st.state == AgentState::WrapUp => {
                    if let Err(e) = api.wrap_up(d).await {
                        tracing::warn!(error = %e, "cannot end wrap-up");
                    }
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
    fn a_refusal_says_the_problems_detail() {
        let body = r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"mallory@contoso.example is not an agent of any tenant","instance":"/v1/agents/me/sip-credentials"}"#;
        assert_eq!(
            refusal(reqwest::StatusCode::NOT_FOUND, body, true),
            "404 mallory@contoso.example is not an agent of any tenant"
        );
        // A detail with terminal escapes or line breaks is printed without them.
        let body = r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"no\u001b[2J\r\nrole"}"#;
        assert_eq!(
            refusal(reqwest::StatusCode::FORBIDDEN, body, false),
            "403 no[2Jrole"
        );
    }

    #[test]
    fn a_refusal_without_a_detail_says_what_to_do() {
        let r = refusal(reqwest::StatusCode::BAD_GATEWAY, "<html>", false);
        assert_eq!(r, "502 Bad Gateway — see the router's logs");
        // An older router's bare 404, with --as and without.
        let r = refusal(reqwest::StatusCode::NOT_FOUND, "", true);
        assert!(
            r.starts_with("404 Not Found — check the UPN given with --as"),
            "{r}"
        );
        let r = refusal(reqwest::StatusCode::NOT_FOUND, "", false);
        assert!(r.contains("signed-in account is an agent"), "{r}");
        let r = refusal(
            reqwest::StatusCode::UNAUTHORIZED,
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":null}"#,
            false,
        );
        assert_eq!(
            r,
            "401 Unauthorized — sign in again with `switchboard-agent login`"
        );
    }

    #[test]
    fn request_bodies() {
        fn v(body: &impl serde::Serialize) -> serde_json::Value {
            serde_json::to_value(body).unwrap()
        }
        assert_eq!(
            v(&WrapUpRequest {
                agent: None,
                disposition: "resolved"
            }),
            serde_json::json!({"disposition": "resolved"})
        );
        assert_eq!(
            v(&WrapUpRequest {
                agent: Some("adele@contoso.example"),
                disposition: "resolved"
            }),
            serde_json::json!({"agent": "adele@contoso.example", "disposition": "resolved"})
        );
        assert_eq!(
            v(&state_change(None, true, Some("ignored".into()))),
            serde_json::json!({"agent": null, "state": "ready", "reason": null})
        );
        assert_eq!(
            v(&state_change(
                Some("adele@contoso.example".into()),
                false,
                Some("lunch".into())
            )),
            serde_json::json!({"agent": "adele@contoso.example", "state": "not_ready", "reason": "lunch"})
        );
        assert_eq!(
            v(&AgentRef { agent: None }),
            serde_json::json!({"agent": null})
        );
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
