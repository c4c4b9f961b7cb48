//! `switchboard-agent router …`: check and watch the routing service.
use clap::Subcommand;
use switchboard_agent::router::{fetch_health, LinkPolicy, RouterLink};
use switchboard_agent::settings::{normalise_router_url, SettingsStore};

#[derive(Subcommand, Debug)]
pub enum RouterCommand {
    /// Ask the router for its health once and print it.
    Health {
        /// Router base URL; defaults to the one in the desktop's settings.
        #[arg(long)]
        url: Option<String>,
    },
    /// Keep a link to the router and print every change of its state until interrupted.
    Watch {
        #[arg(long)]
        url: Option<String>,
    },
}

fn resolve_url(url: Option<String>) -> anyhow::Result<String> {
    Ok(match url {
        Some(u) => normalise_router_url(&u)?,
        None => SettingsStore::for_current_user()?.load()?.router_url,
    })
}

pub async fn run(cmd: RouterCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        RouterCommand::Health { url } => {
            let url = resolve_url(url)?;
            let http = reqwest::Client::new();
            let h = fetch_health(&http, &url, std::time::Duration::from_secs(5)).await?;
            if json {
                println!("{}", serde_json::to_string(&h)?);
            } else {
                println!(
                    "{url}: {:?}, version {}, up {} s, storage {} {:?}",
                    h.status, h.version, h.uptime_seconds, h.storage.backend, h.storage.state
                );
            }
            Ok(())
        }
        RouterCommand::Watch { url } => {
            let url = resolve_url(url)?;
            let link = RouterLink::spawn(url, LinkPolicy::default());
            let mut rx = link.subscribe();
            loop {
                {
                    let s = rx.borrow_and_update().clone();
                    if json {
                        println!("{}", serde_json::to_string(&s)?);
                    } else {
                        println!(
                            "{} {:?}{}",
                            s.url,
                            s.state,
                            s.last_error.map(|e| format!(" ({e})")).unwrap_or_default()
                        );
                    }
                }
                tokio::select! {
                    r = rx.changed() => r?,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
    }
}
