//! `switchboard-agent login | whoami | logout | presence …`: the agent's Microsoft account
//! and its Teams presence, headless.
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use switchboard_agent::account::{AccountError, Accounts, TenantSettings, TenantStore};
use switchboard_graph::{Activity, Availability, PresenceUpdate};
use switchboard_identity::client::{Browser, SystemBrowser};
use switchboard_identity::Account;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Sign in with a code on another device instead of opening the browser here.
    #[arg(long)]
    device_code: bool,
    /// The identity provider, e.g. https://login.microsoftonline.com/organizations/v2.0
    /// (default: the configured tenant, else the simulated one). Given here, it is saved.
    #[arg(long)]
    authority: Option<String>,
    /// The app registration's client id (saved with --authority).
    #[arg(long)]
    client_id: Option<String>,
    /// Microsoft Graph's base URL, when not the authority's own.
    #[arg(long)]
    graph_url: Option<String>,
    /// The directory reads people's skills: sign-in asks for User.Read.All too (the app
    /// registration needs an administrator's consent for it). Saved in tenant.toml.
    #[arg(long)]
    read_skills: bool,
    /// Another scope to consent to now (repeatable), besides the Graph ones.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The account to pre-fill on the login page.
    #[arg(long)]
    login_hint: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Sign out every account, not only the current one.
    #[arg(long)]
    all: bool,
    /// The account (username) to sign out.
    #[arg(long = "account")]
    account: Option<String>,
}

#[derive(Args, Debug)]
pub struct WhoamiArgs {
    /// The account (username) to show; default the first signed-in one.
    #[arg(long = "account")]
    account: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PresenceCommand {
    /// Show presence: your own, or the users named (UPN or object id).
    Get {
        users: Vec<String>,
        #[arg(long = "account")]
        account: Option<String>,
    },
    /// Set your presence for this app's session (Available, Busy, Away, DoNotDisturb),
    /// with an activity (default: the availability's own; InACall, Presenting…).
    Set {
        availability: String,
        activity: Option<String>,
        /// Minutes the session presence lasts (5–240).
        #[arg(long, default_value_t = 60)]
        expires: u64,
        #[arg(long = "account")]
        account: Option<String>,
    },
    /// Clear this app's session presence.
    Clear {
        #[arg(long = "account")]
        account: Option<String>,
    },
    /// Set (or with an empty text, clear) your status message.
    Message {
        text: String,
        #[arg(long = "account")]
        account: Option<String>,
    },
}

fn open(tenant: Option<TenantSettings>) -> anyhow::Result<Accounts> {
    let tenant = match tenant {
        Some(t) => t,
        None => TenantStore::for_current_user()?.load()?,
    };
    let accounts = Accounts::open(tenant)?;
    if let Some(why) = accounts.key_fallback() {
        eprintln!(
            "warning: {why}; tokens are kept in an encrypted file whose key sits beside it, readable by your user account only"
        );
    }
    Ok(accounts)
}

fn account_json(a: &Account) -> serde_json::Value {
    json!({
        "id": a.id, "oid": a.oid, "tid": a.tid, "sub": a.sub,
        "username": a.username, "name": a.name, "authority": a.authority,
    })
}

/// The system browser; where it cannot open, the address for the person to open.
struct OpenOrPrint;

impl Browser for OpenOrPrint {
    fn open(&self, url: &str) -> Result<(), String> {
        if let Err(e) = SystemBrowser.open(url) {
            eprintln!("could not open a browser ({e}); open this address to sign in:\n{url}");
        }
        Ok(())
    }
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn login(a: LoginArgs, json: bool) -> anyhow::Result<()> {
    let store = TenantStore::for_current_user()?;
    let mut tenant = match store.load_if_any()? {
        Some(t) => t,
        // No tenant yet: the command line must name one (and it is saved below).
        None => match (&a.authority, &a.client_id) {
            (Some(authority), Some(client_id)) => TenantSettings {
                authority: authority.clone(),
                client_id: client_id.clone(),
                graph_url: None,
                router_scope: None,
                read_skills: false,
            },
            _ => return Err(AccountError::NoTenant(store.path().display().to_string()).into()),
        },
    };
    let explicit = a.authority.is_some()
        || a.client_id.is_some()
        || a.graph_url.is_some()
        || (a.read_skills && !tenant.read_skills);
    if let Some(x) = a.authority {
        if x.trim_end_matches('/') != tenant.authority {
            // Another tenant: the router's API scope and the consent of the old one do not
            // apply.
            tenant.router_scope = None;
            tenant.read_skills = false;
        }
        tenant.authority = x;
        tenant.graph_url = None;
    }
    if let Some(x) = a.client_id {
        tenant.client_id = x;
    }
    if let Some(x) = a.graph_url {
        tenant.graph_url = Some(x);
    }
    if a.read_skills {
        tenant.read_skills = true;
    }
    let tenant = tenant.validated()?;
    let accounts = open(Some(tenant.clone()))?;
    let timeout = Duration::from_secs(a.timeout.max(10));
    let account = if a.device_code {
        let code = accounts.start_device_code(&a.scopes).await?;
        if json {
            println!(
                "{}",
                json!({"event": "device_code", "user_code": code.user_code,
                       "verification_uri": code.verification_uri, "message": code.message,
                       "expires_in": code.expires_in.as_secs()})
            );
        } else {
            eprintln!(
                "{}",
                code.message.clone().unwrap_or_else(|| format!(
                    "To sign in, open {} and enter the code {}",
                    code.verification_uri, code.user_code
                ))
            );
        }
        tokio::time::timeout(timeout, accounts.finish_device_code(&code, ctrl_c()))
            .await
            .context("the sign-in was not finished in time; run login again")??
    } else {
        if !json {
            eprintln!("Opening the browser to sign in…");
        }
        tokio::time::timeout(
            timeout,
            accounts.sign_in(&a.scopes, a.login_hint, &OpenOrPrint, ctrl_c()),
        )
        .await
        .context("the sign-in was not finished in time; run login again")??
    };
    if explicit {
        store.save(tenant)?;
    }
    if json {
        let mut v = account_json(&account);
        v["event"] = "signed_in".into();
        v["key_storage"] = if accounts.key_in_keychain() {
            "keychain"
        } else {
            "file"
        }
        .into();
        println!("{v}");
    } else {
        println!(
            "Signed in as {} ({})",
            account.username.as_deref().unwrap_or(&account.sub),
            account.name.as_deref().unwrap_or("no name")
        );
    }
    Ok(())
}

pub async fn whoami(a: WhoamiArgs, json: bool) -> anyhow::Result<()> {
    let accounts = open(None)?;
    let me = accounts.current(a.account.as_deref())?;
    if json {
        println!("{}", account_json(&me));
    } else {
        println!(
            "{} ({})\n  object id {}\n  tenant    {}\n  authority {}",
            me.username.as_deref().unwrap_or(&me.sub),
            me.name.as_deref().unwrap_or("no name"),
            me.oid.as_deref().unwrap_or("-"),
            me.tid.as_deref().unwrap_or("-"),
            me.authority
        );
    }
    Ok(())
}

pub async fn logout(a: LogoutArgs, json: bool) -> anyhow::Result<()> {
    let accounts = open(None)?;
    let targets = if a.all {
        accounts.accounts()
    } else {
        vec![accounts.current(a.account.as_deref())?]
    };
    for t in &targets {
        accounts.sign_out(&t.id)?;
        let name = t.username.as_deref().unwrap_or(&t.sub);
        if json {
            println!(
                "{}",
                json!({"event": "signed_out", "username": name, "id": t.id})
            );
        } else {
            println!("Signed out {name}");
        }
    }
    Ok(())
}

fn presence_json(p: &switchboard_graph::Presence) -> serde_json::Value {
    json!({
        "id": p.id,
        "availability": p.availability.as_str(),
        "activity": p.activity.as_str(),
        "status_message": p.status_message.as_ref().and_then(|m| m.message.as_ref()).and_then(|m| m.content.clone()),
    })
}

fn print_presence_now(p: &switchboard_graph::Presence, json: bool) {
    if json {
        println!("{}", presence_json(p));
    } else {
        println!(
            "Presence is now {} / {}",
            p.availability.as_str(),
            p.activity.as_str()
        );
    }
}

pub async fn presence(c: PresenceCommand, json: bool) -> anyhow::Result<()> {
    let accounts = open(None)?;
    let account_of = |c: &PresenceCommand| match c {
        PresenceCommand::Get { account, .. }
        | PresenceCommand::Set { account, .. }
        | PresenceCommand::Clear { account }
        | PresenceCommand::Message { account, .. } => account.clone(),
    };
    let me = accounts.current(account_of(&c).as_deref())?;
    let graph = accounts.graph(&me).await?;
    let my_id = me.oid.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "this account has no object id (not a Microsoft account), so it has no Teams presence"
        )
    })?;
    match c {
        PresenceCommand::Get { users, .. } => {
            let list = if users.is_empty() {
                vec![graph.my_presence().await?]
            } else {
                let mut ids = Vec::new();
                for u in &users {
                    ids.push(if u.contains('@') {
                        graph.user(u, &["id"]).await?.id
                    } else {
                        u.clone()
                    });
                }
                graph.presences(&ids).await?
            };
            for p in &list {
                if json {
                    println!("{}", presence_json(p));
                } else {
                    println!(
                        "{} {} / {}",
                        p.id,
                        p.availability.as_str(),
                        p.activity.as_str()
                    );
                }
            }
        }
        PresenceCommand::Set {
            availability,
            activity,
            expires,
            ..
        } => {
            let availability = Availability::parse(&availability);
            if matches!(availability, Availability::Unknown(_)) {
                anyhow::bail!(
                    "unknown availability — use Available, Busy, Away, BeRightBack or DoNotDisturb"
                );
            }
            let activity = Activity::parse(activity.as_deref().unwrap_or(availability.as_str()));
            graph
                .set_presence(
                    &my_id,
                    &PresenceUpdate {
                        availability,
                        activity,
                        expiration: Some(Duration::from_secs(expires.clamp(5, 240) * 60)),
                    },
                )
                .await?;
            print_presence_now(&graph.my_presence().await?, json);
        }
        PresenceCommand::Clear { .. } => {
            graph.clear_presence(&my_id).await?;
            print_presence_now(&graph.my_presence().await?, json);
        }
        PresenceCommand::Message { text, .. } => {
            graph.set_status_message(&my_id, &text, None).await?;
            if !json {
                println!("Status message set");
            }
        }
    }
    Ok(())
}
