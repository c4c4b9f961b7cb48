//! `switchboard-agent`: the agent engine without a window. Operators use it as a synthetic
//! agent to test a call path; scripts use `--json` for machine-readable events.
#![forbid(unsafe_code)]
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-agent",
    version,
    about = "Switchboard agent engine, headless"
)]
struct Args {
    /// Print events as JSON lines instead of human text.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `switchboard_sip=debug`.
    #[arg(long, global = true, env = "SWITCHBOARD_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Talk to the routing service (health, live events).
    #[command(subcommand)]
    Router(cli::router::RouterCommand),
    /// SIP phone: register with a registrar.
    #[command(flatten)]
    Phone(cli::phone::PhoneCommand),
    /// Call a SIP URI (directly, or through --server with an account), optionally send DTMF,
    /// hold, transfer, and hang up after a while.
    Call(cli::call::CallArgs),
    /// Wait for calls (registered at --server, or listening on --bind) and answer them.
    Answer(cli::call::AnswerArgs),
    /// Work as a contact-center agent: SIP credentials from the router, registered, Ready,
    /// answering what the router offers (Ctrl-C signs off).
    Work(cli::work::WorkArgs),
    /// List the sound devices (names for --input-device and --output-device), test the
    /// microphone's level, or play a test sound.
    Devices(cli::audio::DevicesArgs),
    /// Sign in with Microsoft (browser with a loopback redirect, or --device-code).
    Login(cli::account::LoginArgs),
    /// Show the signed-in account (object id, tenant id, username).
    Whoami(cli::account::WhoamiArgs),
    /// Sign out: the account's tokens leave the cache and the keychain.
    Logout(cli::account::LogoutArgs),
    /// Teams presence: get yours or others', set or clear yours, a status message.
    #[command(subcommand)]
    Presence(cli::account::PresenceCommand),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    cli::secrets::warn_about_argv();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match args.command {
            Command::Router(c) => cli::router::run(c, args.json).await,
            Command::Phone(c) => cli::phone::run(c, args.json).await,
            Command::Call(c) => cli::call::call(c, args.json).await,
            Command::Answer(c) => cli::call::answer(c, args.json).await,
            Command::Work(c) => cli::work::run(c, args.json).await,
            Command::Devices(a) => cli::audio::devices(a, args.json),
            Command::Login(a) => cli::account::login(a, args.json).await,
            Command::Whoami(a) => cli::account::whoami(a, args.json).await,
            Command::Logout(a) => cli::account::logout(a, args.json).await,
            Command::Presence(c) => cli::account::presence(c, args.json).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, what happened and (in the error's own text) what to do.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
