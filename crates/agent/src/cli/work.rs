//! `switchboard-agent work --router URL`: the headless agent of the contact center. It gets
//! its SIP credentials from the router (the signed-in account, or `--as UPN` where the router
//! checks no tokens), registers its phone with them, says Ready (or Not ready) and answers
//! what the router offers — the `answer` command's phone, with every flag it has after `--`.
//! After each queue call it ends wrap-up with `--disposition`; on Ctrl-C or SIGTERM it signs
//! off (the router forgets its phone and the credentials stop working).

use std::path::PathBuf;
use std::time::Duration;

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

/// The router's API, for one agent.
struct Api {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
    agent: Option<String>,
}

/// What a refusal says: the problem's detail, else the status.
fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    match serde_json::from_str::<Problem>(body) {
        Ok(p) => p.detail.unwrap_or(p.title),
        Err(_) => status.to_string(),
    }
}

impl Api {
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).json(body);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!("cannot reach the router at {} — is it running?", self.base)
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "the router refused {method} {path} for {}: {status}: {}",
                self.agent.as_deref().unwrap_or("the signed-in agent"),
                refusal(status, &text)
            );
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("the router's answer to {path} does not read"))
    }

    async fn credentials(&self) -> anyhow::Result<SipCredentials> {
        let body = AgentRef {
            agent: self.agent.clone(),
        };
        self.send(
            reqwest::Method::POST,
            "/v1/agents/me/sip-credentials",
            &body,
        )
        .await?
        .context("the router sent no credentials")
    }

    async fn set_state(&self, ready: bool, reason: Option<String>) -> anyhow::Result<AgentStatus> {
        let body = AgentStateChange {
            agent: self.agent.clone(),
            state: if ready {
                RequestedState::Ready
            } else {
                RequestedState::NotReady
            },
            reason,
        };
        self.send(reqwest::Method::PUT, "/v1/agents/me/state", &body)
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
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{}", refusal(status, &text));
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn wrap_up(&self, disposition: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "agent": self.agent, "disposition": disposition });
        self.send::<AgentStatus>(reqwest::Method::POST, "/v1/agents/me/wrap-up", &body)
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
            &body,
        )
        .await
        .map(|_| ())
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

/// The `answer` flags for the phone: the router's account, then ours.
fn phone_flags(args: &WorkArgs, creds: &SipCredentials) -> Vec<String> {
    let mut v: Vec<String> = [
        "--server",
        &creds.registrar,
        "--user",
        &creds.username,
        "--domain",
        &creds.domain,
        "--password",
        &creds.password,
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
                                Err(e) => tracing::warn!(error = %e, "cannot end wrap-up"),
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
    let flags = AnswerFlags::try_parse_from(phone_flags(&args, &creds))
        .map_err(|e| anyhow::anyhow!("the phone's flags after -- do not read: {e}"))?;
    let ready = args.not_ready.is_none();
    let watcher = keep_state(
        &api,
        ready,
        args.not_ready.clone(),
        args.disposition.clone(),
        json,
    );
    let phone = super::call::answer(flags.args, json);
    let stop = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await
    };
    let result = tokio::select! {
        r = phone => r,
        _ = watcher => Ok(()),
        _ = stop => Ok(()),
    };
    // The last call's wrap-up, when the phone stopped right after it (--calls).
    if let (Ok(()), Some(d)) = (&result, &args.disposition) {
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
    if let Err(e) = api.sign_off().await {
        tracing::warn!(error = %e, "cannot sign off at the router");
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
        let flags = AnswerFlags::try_parse_from(phone_flags(&args, &creds())).unwrap();
        assert_eq!(
            flags.args.account.server.as_deref(),
            Some("sip:127.0.0.1:7760")
        );
        assert_eq!(flags.args.account.user, "agent-x");
        assert_eq!(
            flags.args.account.domain.as_deref(),
            Some("contoso.example")
        );
        assert_eq!(flags.args.calls, 2);
        assert_eq!(flags.args.account.codecs, ["pcmu"]);
        assert_eq!(
            flags.args.account.play.as_deref(),
            Some(std::path::Path::new("a.wav"))
        );
    }

    #[test]
    fn a_refusal_says_the_problems_detail() {
        let body = r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"mallory@contoso.example is not an agent of any tenant","instance":"/v1/agents/me/sip-credentials"}"#;
        assert_eq!(
            refusal(reqwest::StatusCode::NOT_FOUND, body),
            "mallory@contoso.example is not an agent of any tenant"
        );
        assert_eq!(
            refusal(reqwest::StatusCode::BAD_GATEWAY, "<html>"),
            "502 Bad Gateway"
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
