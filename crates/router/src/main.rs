//! `switchboard-router [--config FILE] [--listen ADDR:PORT] [--sip-listen ADDR:PORT] [--data-dir DIR]`: reads the
//! configuration, sets up logging, runs the service until SIGTERM or SIGINT.
#![forbid(unsafe_code)]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use switchboard_router::config::{Config, LogFormat, EXAMPLE_CONFIG};

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-router",
    version,
    about = "Switchboard's routing service"
)]
struct Args {
    /// TOML configuration file (every key is optional; see --print-default-config).
    #[arg(long, env = "SWITCHBOARD_ROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to listen on; overrides http.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// UDP address and port of the SIP edge; overrides sip.listen.
    #[arg(long)]
    sip_listen: Option<SocketAddr>,
    /// Data folder; overrides storage.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter; overrides log.level.
    #[arg(long)]
    log_level: Option<String>,
    /// Print the commented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Sign in the Graph service account that follows presence ([presence] in the
    /// configuration), by device code; its tokens are kept encrypted in the data folder.
    GraphLogin,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{EXAMPLE_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.http.listen = l;
    }
    if let Some(l) = args.sip_listen {
        config.sip.listen = Some(l);
    }
    if let Some(d) = args.data_dir {
        config.storage.data_dir = Some(d);
    }
    if let Some(l) = args.log_level {
        config.log.level = l;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|e| {
        eprintln!(
            "warning: log level {:?} is not valid ({e}); using info",
            config.log.level
        );
        tracing_subscriber::EnvFilter::new("info")
    });
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Json => sub.json().init(),
        LogFormat::Text => sub.init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::GraphLogin) = args.command {
        return rt.block_on(graph_login(&config));
    }
    rt.block_on(async move {
        let router = match switchboard_router::Router::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The signal handlers exist before anyone learns the port: a SIGTERM sent right after
        // the "listening on" line is a graceful stop, not the default kill.
        let signal = shutdown_signal();
        // Tests and scripts parse this line for the real port.
        println!("listening on http://{}", router.local_addr());
        match router.serve(signal).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Installs the SIGTERM/SIGINT handlers now (not on first poll) and returns the future that
/// completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut t), Some(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                (Some(mut t), None) => {
                    t.recv().await;
                }
                (None, Some(mut i)) => {
                    i.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn graph_login(config: &Config) -> ExitCode {
    if config.presence.client_id.trim().is_empty() {
        eprintln!("error: set [presence] client_id (and authority) in the configuration first");
        return ExitCode::from(2);
    }
    let data_dir = match config.data_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!("error: cannot create {}: {e}", data_dir.display());
        return ExitCode::FAILURE;
    }
    let r = switchboard_router::presence::sign_in_service_account(
        &data_dir,
        &config.presence,
        |code| {
            eprintln!(
                "{}",
                code.message.clone().unwrap_or_else(|| format!(
                    "To sign in the service account, open {} and enter the code {}",
                    code.verification_uri, code.user_code
                ))
            );
        },
    )
    .await;
    match r {
        Ok(user) => {
            println!("Graph service account signed in: {user}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
