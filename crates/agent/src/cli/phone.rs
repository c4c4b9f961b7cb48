//! `switchboard-agent register …`: the SIP registration side of the headless agent — one or
//! several accounts on one registrar, over UDP, TCP or TLS, kept fresh and kept alive, and
//! unregistered on exit. The library's call engine ([`switchboard_agent::call`]) registers;
//! this module turns the flags into its options and prints its registration events.
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use switchboard_agent::call::{
    Account, Phone, PhoneEvent, PhoneOptions, RegistrationState, Secret, Transport,
};
use switchboard_sip::udp::ServerAddress;

#[derive(Subcommand, Debug)]
pub enum PhoneCommand {
    /// Register with a SIP registrar, keep the registration fresh, unregister on exit.
    Register {
        /// The registrar: sip:HOST[:PORT][;transport=udp|tcp|tls] (sips: for TLS).
        #[arg(long)]
        server: String,
        /// SIP user name (also the digest user name).
        #[arg(long)]
        user: String,
        /// SIP password (better: SWITCHBOARD_SIP_PASSWORD or --password-file; the command line
        /// is readable by every user of the machine).
        #[arg(
            long,
            env = "SWITCHBOARD_SIP_PASSWORD",
            hide_env_values = true,
            required_unless_present = "password_file",
            conflicts_with = "password_file"
        )]
        password: Option<String>,
        /// A file whose first line is the SIP password.
        #[arg(long, env = "SWITCHBOARD_SIP_PASSWORD_FILE")]
        password_file: Option<std::path::PathBuf>,
        /// More accounts on the same registrar, as USER:PASSWORD (repeat for several; better:
        /// --accounts-file).
        #[arg(long = "account", value_name = "USER:PASSWORD")]
        accounts: Vec<String>,
        /// More accounts on the same registrar from a file: one USER:PASSWORD a line, `#`
        /// comments.
        #[arg(long, env = "SWITCHBOARD_SIP_ACCOUNTS_FILE")]
        accounts_file: Option<std::path::PathBuf>,
        /// Domain of the address of record (default: the server's host).
        #[arg(long)]
        domain: Option<String>,
        /// Stay registered this many seconds, then unregister and exit (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Registration expiry to ask for, in seconds.
        #[arg(long, default_value_t = 600)]
        expires: u32,
        /// Keep-alive interval in seconds (CRLF ping, RFC 5626); 0 turns it off. Default: 25 over
        /// UDP (NAT bindings), 90 over TCP/TLS.
        #[arg(long)]
        keepalive: Option<u64>,
        /// PEM CA certificate(s) to trust for TLS, besides the system's roots.
        #[arg(long)]
        tls_ca: Option<std::path::PathBuf>,
    },
}

fn print_event(json: bool, what: &str, fields: serde_json::Value, human: String) {
    if json {
        let mut v = fields;
        v["event"] = serde_json::Value::String(what.to_owned());
        println!("{v}");
    } else {
        println!("{human}");
    }
}

pub async fn run(cmd: PhoneCommand, json: bool) -> anyhow::Result<()> {
    let PhoneCommand::Register {
        server,
        user,
        password,
        password_file,
        accounts,
        accounts_file,
        domain,
        duration,
        expires,
        keepalive,
        tls_ca,
    } = cmd;
    let addr = ServerAddress::parse(&server)?;
    let kind = match addr.transport.as_str() {
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => Transport::Udp,
    };
    let password = match (password, password_file) {
        (Some(p), _) => p,
        (None, Some(f)) => super::secrets::read_password_file(&f)?,
        (None, None) => {
            bail!("a password is needed: SWITCHBOARD_SIP_PASSWORD, --password-file or --password")
        }
    };
    let mut more: Vec<(String, Secret)> = Vec::new();
    if let Some(f) = &accounts_file {
        more.extend(
            super::secrets::read_accounts_file(f)?
                .into_iter()
                .map(|(u, p)| (u, p.into())),
        );
    }
    for a in &accounts {
        let Some((u, p)) = a.split_once(':') else {
            bail!("--account {a:?} must be USER:PASSWORD");
        };
        more.push((u.to_owned(), p.into()));
    }
    let target = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .with_context(|| format!("cannot resolve {} — check the server name", addr.host))?
        .next()
        .with_context(|| format!("{} has no address", addr.host))?;
    // The local address that reaches the registrar (no packet is sent to find it).
    let probe = std::net::UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .and_then(|s| {
        s.connect(target)?;
        s.local_addr()
    })
    .with_context(|| format!("no route to {target}"))?;
    let registrar = addr.uri();
    let mut options = PhoneOptions::new(Account {
        server: Some(server),
        user,
        auth_user: None,
        display_name: None,
        password: Some(password.into()),
        domain,
        transport: Some(kind),
    });
    options.bind = Some(SocketAddr::new(probe.ip(), 0));
    options.tls_ca = tls_ca;
    options.expires = expires;
    options.more_accounts = more;
    options.keepalive = match keepalive {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None if kind == Transport::Udp => Some(Duration::from_secs(25)),
        None => Some(Duration::from_secs(90)),
    };
    let (phone, mut events) = Phone::start(options).await?;

    let deadline = duration.map(|d| tokio::time::Instant::now() + Duration::from_secs(d));
    let stop = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    // Which accounts have been registered (for "lost; retrying" rather than an error).
    let mut registered_once = std::collections::HashSet::new();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => bail!("the phone stopped"),
                Some(PhoneEvent::Stopped { error }) => {
                    bail!("{}", error.unwrap_or_else(|| "the phone stopped".into()))
                }
                // A registration-only phone takes no calls.
                Some(PhoneEvent::Incoming { call, .. }) => phone.reject(call, 480)?,
                Some(PhoneEvent::Registration { account, aor, state }) => match state {
                    RegistrationState::Registered { expires, bindings } => {
                        registered_once.insert(account);
                        print_event(json, "registered", serde_json::json!({"aor": aor, "registrar": registrar, "expires": expires, "bindings": bindings, "transport": kind.param()}),
                            format!("registered {aor} at {registrar} for {expires} s"));
                    }
                    RegistrationState::Refused { status, reason } => {
                        let hint = match status {
                            401 | 403 | 407 => "check the user name and password",
                            404 => "the registrar does not know this user or domain — check --user and --domain",
                            _ => "see the registrar's logs",
                        };
                        bail!("SIP registration refused by {registrar}: {status} {reason} — {hint}");
                    }
                    RegistrationState::Unreachable => {
                        if !registered_once.contains(&account) {
                            bail!("no answer from {registrar} ({target}) within 32 s — check the address, port and transport, and that the registrar is running");
                        }
                        print_event(json, "unreachable", serde_json::json!({"aor": aor, "registrar": registrar}), format!("lost {registrar}; retrying"));
                    }
                    RegistrationState::Unregistered => {}
                    RegistrationState::NotSent { why } => {
                        bail!("SIP registration not sent: {why} — check --server, --user and --domain");
                    }
                },
                Some(_) => {}
            },
            _ = &mut stop => break,
        }
    }
    // Unregister every account that is registered, and wait (briefly) for the answers.
    let mut pending = phone.unregister().await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while pending > 0 {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(PhoneEvent::Registration {
                aor,
                state: RegistrationState::Unregistered,
                ..
            })) => {
                pending -= 1;
                print_event(
                    json,
                    "unregistered",
                    serde_json::json!({"aor": aor}),
                    format!("unregistered {aor}"),
                );
            }
            Ok(Some(PhoneEvent::Registration {
                aor,
                state: RegistrationState::Refused { status, reason },
                ..
            })) => {
                bail!("unregistering {aor} failed: {status} {reason}");
            }
            Ok(Some(PhoneEvent::Stopped { error })) => {
                bail!("{}", error.unwrap_or_else(|| "the phone stopped".into()))
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the phone stopped"),
            Err(_) => bail!("no answer from {registrar} to the unregistration within 10 s"),
        }
    }
    phone.close().await;
    Ok(())
}
