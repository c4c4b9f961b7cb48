//! `switchboard-tenant-sim`: runs the simulated Microsoft 365 tenant.
//!
//! ```text
//! switchboard-tenant-sim [--listen 127.0.0.1:PORT] [--tenant-id GUID] [--issuer-base URL]
//!                        [--extra-users N] [--client-id ID]... [--token-lifetime SECS]
//!                        [--device-code-interval SECS]
//! ```
//! Prints one line `listening on http://127.0.0.1:NNNN` on stdout when ready.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use switchboard_tenant_sim::{Config, TenantSim, DEMO_CLIENT_ID, DEMO_TENANT_ID};

/// A local stand-in for a Microsoft 365 tenant (identity v2.0 + Graph subset).
#[derive(Debug, Parser)]
#[command(name = "switchboard-tenant-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        env = "SWITCHBOARD_TENANT_SIM_LISTEN"
    )]
    listen: SocketAddr,
    /// The tenant id (GUID).
    #[arg(long, default_value = DEMO_TENANT_ID)]
    tenant_id: String,
    /// Public base URL used in issuers and links (default: http://LISTEN-ADDRESS).
    #[arg(long)]
    issuer_base: Option<String>,
    /// Generated users to add to the 50 seeded ones.
    #[arg(long, default_value_t = 0)]
    extra_users: usize,
    /// Extra registered public client ids (the demo app's id is always registered).
    #[arg(long = "client-id")]
    client_ids: Vec<String>,
    /// Access and id token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Device-code polling interval in seconds.
    #[arg(long, default_value_t = 5)]
    device_code_interval: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if uuid::Uuid::parse_str(&args.tenant_id).is_err() {
        anyhow::bail!("--tenant-id must be a GUID (got '{}')", args.tenant_id);
    }
    let mut client_ids = vec![DEMO_CLIENT_ID.to_string()];
    client_ids.extend(args.client_ids);
    let config = Config {
        listen: args.listen,
        tenant_id: args.tenant_id,
        issuer_base: args.issuer_base,
        extra_users: args.extra_users,
        client_ids,
        token_lifetime: Duration::from_secs(args.token_lifetime.max(60)),
        device_code_interval: Duration::from_secs(args.device_code_interval.max(1)),
        ..Config::default()
    };
    let sim = TenantSim::start(config).await?;
    println!("listening on http://{}", sim.local_addr());
    eprintln!(
        "authority: {}   graph: {}   client id: {DEMO_CLIENT_ID}   demo password: {}",
        sim.authority(),
        sim.graph_url(),
        switchboard_tenant_sim::DEMO_PASSWORD
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
