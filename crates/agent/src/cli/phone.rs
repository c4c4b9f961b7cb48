//! `switchboard-agent register …`: the SIP registration side of the headless agent — one or
//! several accounts on one registrar, over UDP, TCP or TLS, kept fresh and kept alive, and
//! unregistered on exit.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use switchboard_sip::auth::Credentials;
use switchboard_sip::phone::{Phone, PhoneEvent};
use switchboard_sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use switchboard_sip::transaction::Timers;
use switchboard_sip::transport::{TlsSettings, Transports};
use switchboard_sip::ua::{Transport, UaConfig, UserAgent};
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

fn host(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
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
    let mut creds = vec![(user, password)];
    if let Some(f) = &accounts_file {
        creds.extend(super::secrets::read_accounts_file(f)?);
    }
    for a in &accounts {
        let Some((u, p)) = a.split_once(':') else {
            bail!("--account {a:?} must be USER:PASSWORD");
        };
        creds.push((u.to_owned(), p.to_owned()));
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
    let tls = TlsSettings {
        ca_file: tls_ca,
        ..TlsSettings::default()
    };
    let net = Transports::bind(kind, SocketAddr::new(probe.ip(), 0), &tls).await?;
    let local = net.local_addr();
    let registrar = addr.uri();
    let domain = domain.unwrap_or_else(|| addr.host.clone());
    let user_agent = format!("Switchboard-Agent/{}", env!("CARGO_PKG_VERSION"));
    let ua = UserAgent::new(UaConfig {
        user: creds[0].0.clone(),
        domain: domain.clone(),
        display_name: None,
        credentials: None,
        contact_host: host(local),
        transport: kind,
        outbound_proxy: None,
        timers: Timers::default(),
        user_agent: user_agent.clone(),
    });
    let mut phone = Phone::new(net, ua);
    phone.name_address(target, &addr.host);
    let mut aors = Vec::new();
    for (user, password) in creds {
        let aor = format!("sip:{user}@{domain}");
        let mut reg = Registration::new(RegistrationConfig {
            registrar: registrar.clone(),
            aor: aor.clone(),
            contact: format!("sip:{user}@{};transport={}", host(local), kind.param()),
            via_sent_by: host(local),
            via_transport: kind.via_name(),
            reliability: kind.reliability(),
            credentials: Credentials {
                username: user,
                password,
            },
            expires,
            timers: Timers::default(),
            user_agent: user_agent.clone(),
        });
        reg.start(Instant::now());
        phone.add_registration(reg, target);
        aors.push(aor);
    }
    let every = match keepalive {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None if kind == Transport::Udp => Some(Duration::from_secs(25)),
        None => Some(Duration::from_secs(90)),
    };
    phone.set_keepalive(every);

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
    let mut registered_once = vec![false; aors.len()];
    loop {
        tokio::select! {
            ev = phone.next_event() => {
                let PhoneEvent::Registration { account, event } = ev? else { continue };
                let aor = aors.get(account).cloned().unwrap_or_default();
                match event {
                    RegistrationEvent::Registered { expires, bindings } => {
                        registered_once[account] = true;
                        print_event(json, "registered", serde_json::json!({"aor": aor, "registrar": registrar, "expires": expires, "bindings": bindings, "transport": kind.param()}),
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
                        if !registered_once[account] {
                            bail!("no answer from {registrar} ({target}) within 32 s — check the address, port and transport, and that the registrar is running");
                        }
                        print_event(json, "unreachable", serde_json::json!({"aor": aor, "registrar": registrar}), format!("lost {registrar}; retrying"));
                    }
                    RegistrationEvent::Unregistered => {}
                    RegistrationEvent::NotSent(why) => {
                        bail!("SIP registration not sent: {why} — check --server, --user and --domain");
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    // Unregister every account that is registered, and wait (briefly) for the answers.
    let now = Instant::now();
    let mut pending = 0;
    for r in phone.registrations() {
        if r.is_registered() {
            r.unregister(now);
            pending += 1;
        }
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while pending > 0 {
        match tokio::time::timeout_at(until, phone.next_event()).await {
            Ok(Ok(PhoneEvent::Registration {
                account,
                event: RegistrationEvent::Unregistered,
            })) => {
                pending -= 1;
                let aor = aors.get(account).cloned().unwrap_or_default();
                print_event(
                    json,
                    "unregistered",
                    serde_json::json!({"aor": aor}),
                    format!("unregistered {aor}"),
                );
            }
            Ok(Ok(PhoneEvent::Registration {
                account,
                event: RegistrationEvent::Refused { status, reason },
            })) => {
                let aor = aors.get(account).cloned().unwrap_or_default();
                bail!("unregistering {aor} failed: {status} {reason}");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => bail!("no answer from {registrar} to the unregistration within 10 s"),
        }
    }
    Ok(())
}
