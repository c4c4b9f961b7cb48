//! `switchboard-agent register …`: the SIP side of the headless agent.
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use switchboard_sip::auth::Credentials;
use switchboard_sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use switchboard_sip::transaction::{Reliability, Timers};
use switchboard_sip::udp::{ServerAddress, UdpRegistration};

#[derive(Subcommand, Debug)]
pub enum PhoneCommand {
    /// Register with a SIP registrar, keep the registration fresh, unregister on exit.
    Register {
        /// The registrar: sip:HOST[:PORT][;transport=udp].
        #[arg(long)]
        server: String,
        /// SIP user name (also the digest user name).
        #[arg(long)]
        user: String,
        /// SIP password.
        #[arg(long, env = "SWITCHBOARD_SIP_PASSWORD", hide_env_values = true)]
        password: String,
        /// Domain of the address of record (default: the server's host).
        #[arg(long)]
        domain: Option<String>,
        /// Stay registered this many seconds, then unregister and exit (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Registration expiry to ask for, in seconds.
        #[arg(long, default_value_t = 600)]
        expires: u32,
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
        domain,
        duration,
        expires,
    } = cmd;
    let addr = ServerAddress::parse(&server)?;
    if addr.transport != "udp" {
        bail!(
            "transport={} is not supported yet by switchboard-agent register — use ;transport=udp",
            addr.transport
        );
    }
    let target = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .with_context(|| format!("cannot resolve {} — check the server name", addr.host))?
        .next()
        .with_context(|| format!("{} has no address", addr.host))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .context("cannot open a UDP socket")?;
    socket
        .connect(target)
        .await
        .with_context(|| format!("cannot reach {target}"))?;
    let local = socket.local_addr()?;
    let registrar = addr.uri();
    let domain = domain.unwrap_or_else(|| addr.host.clone());
    let aor = format!("sip:{user}@{domain}");
    let host = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    };
    let cfg = RegistrationConfig {
        registrar: registrar.clone(),
        aor: aor.clone(),
        contact: format!("sip:{user}@{};transport=udp", host(local)),
        via_sent_by: host(local),
        via_transport: "UDP",
        reliability: Reliability::Unreliable,
        credentials: Credentials {
            username: user,
            password,
        },
        expires,
        timers: Timers::default(),
        user_agent: format!("Switchboard-Agent/{}", env!("CARGO_PKG_VERSION")),
    };
    let mut reg = Registration::new(cfg);
    reg.start(Instant::now());
    let mut udp = UdpRegistration::new(socket, reg);

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
    let mut registered_once = false;
    loop {
        tokio::select! {
            ev = udp.next_event() => match ev? {
                RegistrationEvent::Registered { expires, bindings } => {
                    registered_once = true;
                    print_event(json, "registered", serde_json::json!({"aor": aor, "registrar": registrar, "expires": expires, "bindings": bindings}),
                        format!("registered {aor} at {registrar} for {expires} s"));
                }
                RegistrationEvent::Refused { status, reason } => {
                    let hint = match status {
                        401 | 403 | 407 => "check the user name and password",
                        404 => "the registrar does not know this user or domain — check --user and --domain",
                        _ => "see the registrar's logs",
                    };
                    bail!("SIP registration refused by {registrar}: {status} {reason} — {hint}");
                }
                RegistrationEvent::Unreachable => {
                    if !registered_once {
                        bail!("no answer from {registrar} ({target}) within 32 s — check the address, port and transport, and that the registrar is running");
                    }
                    print_event(json, "unreachable", serde_json::json!({"registrar": registrar}), format!("lost {registrar}; retrying"));
                }
                RegistrationEvent::Unregistered => {}
            },
            _ = &mut stop => break,
        }
    }
    if udp.registration().is_registered() {
        udp.registration().unregister(Instant::now());
        match tokio::time::timeout(Duration::from_secs(10), udp.next_event()).await {
            Ok(Ok(RegistrationEvent::Unregistered)) => print_event(
                json,
                "unregistered",
                serde_json::json!({"aor": aor}),
                format!("unregistered {aor}"),
            ),
            Ok(Ok(other)) => bail!("unregistering {aor} failed: {other:?}"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => bail!("no answer from {registrar} to the unregistration within 10 s"),
        }
    }
    Ok(())
}
