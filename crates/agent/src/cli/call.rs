//! `switchboard-agent call URI` and `switchboard-agent answer`: the headless agent as a
//! synthetic caller or callee, directly or through a registrar/proxy, with DTMF, hold and
//! transfer, for operators testing a call path and for our own interop tests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use switchboard_sip::auth::Credentials;
use switchboard_sip::phone::{Phone, PhoneEvent};
use switchboard_sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use switchboard_sip::sdp::{LocalMedia, Negotiated};
use switchboard_sip::transaction::Timers;
use switchboard_sip::transport::{TlsSettings, Transports};
use switchboard_sip::ua::{
    CallId, Destination, EndReason, Transport, UaConfig, UaError, UaEvent, UserAgent,
};
use switchboard_sip::udp::ServerAddress;

use super::audio::{parse_codecs, AudioEvent, AudioHandle};
use switchboard_media::check::{ring_cycle, Player};
use switchboard_media::srtp::{SdesKey, Suite};
use tokio::time::Instant as TokioInstant;

/// Account and transport flags shared by `call` and `answer`.
#[derive(Args, Debug, Clone)]
pub struct AccountArgs {
    /// Registrar / proxy: sip:HOST[:PORT][;transport=udp]. Without it, calls go directly to
    /// the URI and `answer` listens on --bind.
    #[arg(long)]
    pub server: Option<String>,
    /// SIP user name (also the digest user name).
    #[arg(long, default_value = "agent")]
    pub user: String,
    /// SIP password (for digest challenges; better: SWITCHBOARD_SIP_PASSWORD or
    /// --password-file, as the command line is readable by every user of the machine).
    #[arg(
        long,
        env = "SWITCHBOARD_SIP_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_file"
    )]
    pub password: Option<String>,
    /// A file whose first line is the SIP password.
    #[arg(long, env = "SWITCHBOARD_SIP_PASSWORD_FILE")]
    pub password_file: Option<std::path::PathBuf>,
    /// Domain of our address (default: the server's host, or our IP).
    #[arg(long)]
    pub domain: Option<String>,
    /// Follow a transfer (REFER) from anyone. Without it, a REFER is followed only when it
    /// comes from a party of the account's own domain through the account's registrar
    /// (--server); others are declined, since a stranger could send us calling any number
    /// through the account (toll fraud) or to a host of theirs that collects our digest.
    #[arg(long)]
    pub accept_refer: bool,
    /// Local SIP address to listen on (default: an ephemeral port on the interface that
    /// reaches the server or callee; 127.0.0.1:5060 style).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Hang up this many seconds after the call is answered.
    #[arg(long)]
    pub hangup_after: Option<f64>,
    /// Send these DTMF digits (0-9 * # A-D) once the call is up, 250 ms apart: as RFC 4733
    /// events when the call agreed telephone-event, else as SIP INFO.
    #[arg(long)]
    pub dtmf: Option<String>,
    /// Send --dtmf as SIP INFO even when the call agreed RFC 4733 telephone-event (the
    /// default then sends the digits in the media path).
    #[arg(long)]
    pub dtmf_info: bool,
    /// Transfer the answered call to this URI (blind transfer with REFER), then end our leg.
    #[arg(long)]
    pub transfer: Option<String>,
    /// Attended transfer: call the --transfer target first, then connect the two calls
    /// (REFER with Replaces, RFC 3891) once the target has answered.
    #[arg(long, requires = "transfer")]
    pub attended: bool,
    /// Put the call on hold this many seconds after it is answered, and resume 2 s later.
    #[arg(long)]
    pub hold_after: Option<f64>,
    /// SIP transport (default: the server's or the URI's `;transport=`, else udp; sips: → tls).
    #[arg(long, value_parser = ["udp", "tcp", "tls"])]
    pub transport: Option<String>,
    /// PEM CA certificate(s) to trust for TLS, besides the system's roots.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// DNS server (ADDR:PORT) for locating SIP servers (RFC 3263 NAPTR/SRV/A) instead of the
    /// system's.
    #[arg(long)]
    pub dns_server: Option<SocketAddr>,
    /// PEM certificate chain to accept TLS connections with (`answer` over TLS).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Play this WAV file into the call (any rate or channels; silence after its end).
    #[arg(long, value_name = "FILE.wav")]
    pub play: Option<std::path::PathBuf>,
    /// Record what the call carries from the other side to this WAV file (mono at the
    /// codec's rate;
    /// further calls get -2, -3 … before the extension).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<std::path::PathBuf>,
    /// Codecs to offer and accept, in order of preference (repeatable): opus, pcmu, pcma
    /// (default: all three, in that order).
    #[arg(long = "codec", value_name = "NAME")]
    pub codecs: Vec<String>,
    /// SRTP (RFC 3711) keyed by SDES (RFC 4568). `auto`: required when the SIP leg is TLS
    /// (as Direct Routing trunks expect), otherwise plain RTP offered and SRTP offers
    /// accepted; `sdes`: always required; `off`: plain RTP only (SRTP offers refused).
    #[arg(long, value_parser = ["auto", "sdes", "off"], default_value = "auto")]
    pub srtp: String,
    /// SRTP suites in order of preference (repeatable): AES_CM_128_HMAC_SHA1_80,
    /// AEAD_AES_128_GCM (default: both, in that order).
    #[arg(long = "srtp-suite", value_name = "SUITE")]
    pub srtp_suites: Vec<String>,
    /// Opus discontinuous transmission: send nothing while we are silent.
    #[arg(long)]
    pub dtx: bool,
    /// Capture the call's audio from this sound device (a name from `devices`, or
    /// `default`); falls back to the default device when it is missing or fails.
    #[arg(long, value_name = "NAME", conflicts_with = "play")]
    pub input_device: Option<String>,
    /// Play the call's audio on this sound device (a name from `devices`, or `default`).
    #[arg(long, value_name = "NAME")]
    pub output_device: Option<String>,
    /// UDP ports for RTP and RTCP (an even port for RTP, the next for RTCP), as a firewall
    /// or SBC expects them.
    #[arg(
        long,
        value_name = "LOW-HIGH",
        env = "SWITCHBOARD_RTP_PORTS",
        default_value = "16384-32767"
    )]
    pub rtp_ports: String,
    /// Echo test: send back what the other side says (an echo service, or a loopback for
    /// measuring delay).
    #[arg(long, conflicts_with_all = ["play", "input_device"])]
    pub echo: bool,
    /// Call volume on the output device, 0–100 %.
    #[arg(long, value_name = "PCT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub volume: u8,
    /// Start with the microphone muted: the calls carry silence (from the device or
    /// --play's file, which goes on running).
    #[arg(long, conflicts_with = "echo")]
    pub mute: bool,
    /// Keep the contact-center state in Teams (the account signed in with `login`): Busy /
    /// In a call while a call is up, wrap-up after it, then the state chosen with --ready or
    /// --not-ready; cleared at the end. Without either, the person is off duty between calls
    /// (an SME) and Teams shows what Teams works out.
    #[arg(long)]
    pub teams_presence: bool,
    /// Ready for calls (Teams: Available) between calls.
    #[arg(long, requires = "teams_presence", conflicts_with = "not_ready")]
    pub ready: bool,
    /// Not ready between calls, for a reason: break, lunch, personal, admin_work, meeting,
    /// training, coaching or any short text (Teams: Away; DoNotDisturb / Presenting for
    /// meetings, training and coaching).
    #[arg(long, value_name = "REASON", requires = "teams_presence")]
    pub not_ready: Option<String>,
    /// After-call work: seconds in wrap-up (Busy in Teams) once a call ends, before the
    /// state chosen returns.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        requires = "teams_presence"
    )]
    pub wrap_up: u32,
}

#[derive(Args, Debug, Clone)]
pub struct CallArgs {
    /// Who to call: sip:user@host[:port].
    pub uri: String,
    #[command(flatten)]
    pub account: AccountArgs,
    /// Give up (CANCEL) when nobody answers within this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub ring_timeout: f64,
}

#[derive(Args, Debug, Clone)]
pub struct AnswerArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// Answer this many calls, then exit.
    #[arg(long, default_value_t = 1)]
    pub calls: u32,
    /// Let it ring this many seconds before answering.
    #[arg(long, default_value_t = 0.0)]
    pub answer_after: f64,
    /// Ring on this sound device (a name from `devices`, or `default`) while a call waits to
    /// be answered — often the computer's speakers rather than the headset.
    #[arg(long, value_name = "NAME")]
    pub ring_device: Option<String>,
    /// Ring volume, 0–100 %.
    #[arg(long, value_name = "PCT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub ring_volume: u8,
    /// Give up when no call arrives within this many seconds (default: wait forever).
    #[arg(long)]
    pub wait: Option<f64>,
}

struct Out {
    json: bool,
}

impl Out {
    fn event(&self, what: &str, mut fields: serde_json::Value, human: String) {
        if self.json {
            fields["event"] = serde_json::Value::String(what.to_owned());
            println!("{fields}");
        } else {
            println!("{human}");
        }
    }
}

fn media_json(m: &Negotiated) -> serde_json::Value {
    serde_json::json!({
        "codec": m.codec.encoding,
        "payload_type": m.codec.payload_type,
        "clock_rate": m.codec.clock_rate,
        "remote": m.remote.map(|a| a.to_string()),
        "direction": m.direction.as_str(),
        "telephone_event": m.telephone_event,
        "srtp": m.local_crypto.as_deref().and_then(|c| c.split_whitespace().nth(1)),
    })
}

fn host(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    }
}

/// The local IP the system would use to reach `to` (no packet is sent).
fn local_ip_towards(to: SocketAddr) -> IpAddr {
    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(to)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(if to.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        })
}

async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host} — check the name"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// What SRTP a call offers and accepts, from --srtp and the SIP transport.
#[derive(Debug, Clone)]
struct SrtpPolicy {
    suites: Vec<Suite>,
    required: bool,
}

impl SrtpPolicy {
    fn new(account: &AccountArgs, kind: Transport) -> anyhow::Result<Self> {
        let suites = if account.srtp_suites.is_empty() {
            Suite::ALL.to_vec()
        } else {
            account
                .srtp_suites
                .iter()
                .map(|n| {
                    Suite::from_name(n).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown SRTP suite {n:?} — this agent speaks AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM"
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        let (suites, required) = match account.srtp.as_str() {
            "off" => (Vec::new(), false),
            "sdes" => (suites, true),
            _ => (suites, kind == Transport::Tls),
        };
        Ok(Self { suites, required })
    }
}

struct Session {
    phone: Phone,
    out: Out,
    audio: AudioHandle,
    local_ip: IpAddr,
    account: AccountArgs,
    srtp: SrtpPolicy,
    /// Calls we placed because a peer asked us to (REFER): new call → the call that asked.
    transfers: HashMap<CallId, CallId>,
    /// Consultation calls of an attended transfer: consultation → (original call, target).
    consults: HashMap<CallId, (CallId, String)>,
    /// Where and how loud to ring (`answer --ring-device`): device (None: default), volume.
    ring: Option<(Option<String>, f32)>,
    /// The contact-center state kept in Teams (`--teams-presence`), and the task that
    /// prints its changes.
    teams: Option<(
        switchboard_agent::state::WorkState,
        tokio::task::JoinHandle<()>,
    )>,
    /// Calls the agent state has been told of.
    calls_up: usize,
    /// The domain of our address of record, and whether calls go through its registrar.
    domain: String,
    /// The other party of each call (the caller, or whom we called), for the REFER rule.
    peers: HashMap<CallId, String>,
    /// What a router said about each call it offered (queue, call record, caller, choices),
    /// repeated in the call's `established` and `ended` events.
    offers: HashMap<CallId, serde_json::Map<String, serde_json::Value>>,
}

impl Session {
    fn local_media(&self) -> LocalMedia {
        let mut m = LocalMedia::new(self.local_ip, self.audio.port());
        m.codecs = self.audio.codec_specs();
        // Fresh keys for every call (RFC 4568 §6.1: never reuse a master key).
        m.crypto = self
            .srtp
            .suites
            .iter()
            .enumerate()
            .map(|(i, s)| SdesKey::generate(i as u32 + 1, *s).to_attribute())
            .collect();
        m.plain_offer = !self.srtp.required;
        m.require_srtp = self.srtp.required;
        m
    }

    /// Starts or updates a call's audio for newly agreed media; says so when it cannot.
    async fn media_agreed(&mut self, call: CallId, media: &Negotiated) {
        if let Err(e) = self.audio.start(call, media).await {
            self.out.event(
                "media_error",
                serde_json::json!({"call": call, "kind": "setup", "error": e.to_string()}),
                format!("call {call}: no audio: {e}"),
            );
        }
    }
}

fn transport_named(name: &str) -> Transport {
    match name {
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => Transport::Udp,
    }
}

/// The transport a URI asks for: `;transport=`, or TLS for `sips:`.
fn uri_transport(uri: &str) -> Option<Transport> {
    // A bare URI keeps its parameters (value_uri would read them as header parameters).
    let uri = match (uri.find('<'), uri.find('>')) {
        (Some(a), Some(b)) if b > a => &uri[a + 1..b],
        _ => uri.trim(),
    };
    if uri.to_ascii_lowercase().starts_with("sips:") {
        return Some(Transport::Tls);
    }
    uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case("transport")
            .then(|| transport_named(&v.to_ascii_lowercase()))
    })
}

async fn setup(
    account: &AccountArgs,
    towards: Option<(SocketAddr, String)>,
    uri_kind: Option<Transport>,
) -> anyhow::Result<Session> {
    let (server, registrar) = match &account.server {
        Some(s) => {
            let addr = ServerAddress::parse(s)?;
            let target = resolve(&addr.host, addr.port).await?;
            (Some(addr), Some(target))
        }
        None => (None, None),
    };
    let kind = match (&account.transport, &server) {
        (Some(t), _) => transport_named(t),
        (None, Some(s)) => transport_named(&s.transport),
        (None, None) => uri_kind.unwrap_or(Transport::Udp),
    };
    let peer_name = match (&server, &towards) {
        (Some(s), _) => Some(s.host.clone()),
        (None, Some((_, h))) => Some(h.clone()),
        _ => None,
    };
    let towards = towards.map(|(a, _)| a);
    let peer = registrar.or(towards);
    // Without a resolved peer (a domain only SRV knows), the interface of the default route.
    let default_route = || local_ip_towards(SocketAddr::from(([192, 0, 2, 1], 5060)));
    let bind = match account.bind {
        Some(b) => b,
        None => SocketAddr::new(peer.map(local_ip_towards).unwrap_or_else(default_route), 0),
    };
    let tls = TlsSettings {
        ca_file: account.tls_ca.clone(),
        cert_file: account.tls_cert.clone(),
        key_file: account.tls_key.clone(),
    };
    let net = Transports::bind(kind, bind, &tls).await?;
    let local = net.local_addr();
    let local_ip = if local.ip().is_unspecified() {
        peer.map(local_ip_towards)
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        local.ip()
    };
    let contact = SocketAddr::new(local_ip, local.port());
    let rtp = super::audio::bind_media_ports(
        local_ip,
        super::audio::parse_port_range(&account.rtp_ports)?,
    )
    .await?;
    let srtp = SrtpPolicy::new(account, kind)?;
    let audio = AudioHandle::spawn(
        rtp,
        super::audio::AudioOptions {
            play: account.play.clone(),
            record: account.record.clone(),
            codecs: parse_codecs(&account.codecs)?,
            dtx: account.dtx,
            devices: super::audio::device_choice(
                account.input_device.as_deref(),
                account.output_device.as_deref(),
            ),
            echo: account.echo,
            volume: f32::from(account.volume) / 100.0,
            muted: account.mute,
        },
    )?;
    let domain = account
        .domain
        .clone()
        .or_else(|| server.as_ref().map(|s| s.host.clone()))
        .unwrap_or_else(|| local_ip.to_string());
    let password = match (&account.password, &account.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(super::secrets::read_password_file(f)?),
        (None, None) => None,
    };
    let credentials = password.map(|password| Credentials {
        username: account.user.clone(),
        password,
    });
    let cfg = UaConfig {
        user: account.user.clone(),
        domain: domain.clone(),
        display_name: None,
        credentials: credentials.clone(),
        contact_host: host(contact),
        transport: kind,
        outbound_proxy: registrar.map(Destination::Addr),
        timers: Timers::default(),
        user_agent: format!("Switchboard-Agent/{}", env!("CARGO_PKG_VERSION")),
    };
    let mut phone = Phone::new(net, UserAgent::new(cfg));
    if let Some(dns) = account.dns_server {
        phone.set_resolver(switchboard_sip::dns::SipResolver::with_name_server(dns)?);
    }
    if let (Some(p), Some(name)) = (peer, &peer_name) {
        phone.name_address(p, name);
    }
    if let (Some(server), Some(registrar)) = (&server, registrar) {
        let Some(credentials) = credentials else {
            bail!("--server needs a password to register: SWITCHBOARD_SIP_PASSWORD, --password-file FILE or --password");
        };
        let mut reg = Registration::new(RegistrationConfig {
            registrar: server.uri(),
            aor: format!("sip:{}@{domain}", account.user),
            contact: format!(
                "sip:{}@{};transport={}",
                account.user,
                host(contact),
                kind.param()
            ),
            via_sent_by: host(contact),
            via_transport: kind.via_name(),
            reliability: kind.reliability(),
            credentials,
            expires: 300,
            timers: Timers::default(),
            user_agent: format!("Switchboard-Agent/{}", env!("CARGO_PKG_VERSION")),
        });
        reg.start(Instant::now());
        phone.set_registration(reg, registrar);
    }
    Ok(Session {
        phone,
        out: Out { json: false },
        audio,
        local_ip,
        account: account.clone(),
        srtp,
        transfers: HashMap::new(),
        consults: HashMap::new(),
        ring: None,
        teams: None,
        calls_up: 0,
        domain,
        peers: HashMap::new(),
        offers: HashMap::new(),
    })
}

/// The host of a SIP URI or name-addr (`"Bob" <sip:bob@pbx.example.com;x=y>` → `pbx.example.com`).
fn uri_domain(v: &str) -> Option<String> {
    switchboard_sip::ua::uri_host_port(v).map(|(h, _)| h.to_ascii_lowercase())
}

/// Whether to follow a REFER on `call`: always with `--accept-refer`; else only when the
/// account has a registrar and both the other party and the Referred-By (when given) are of
/// the account's domain.
fn refer_allowed(
    accept_refer: bool,
    registrar: bool,
    domain: &str,
    peer: Option<&str>,
    referred_by: Option<&str>,
) -> Result<(), String> {
    if accept_refer {
        return Ok(());
    }
    if !registrar {
        return Err("transfers are followed only with --accept-refer when calls do not go through a registrar".into());
    }
    let ours = domain.to_ascii_lowercase();
    let from_us = |v: Option<&str>| v.and_then(uri_domain).is_some_and(|d| d == ours);
    if !from_us(peer) {
        return Err(format!(
            "the other party ({}) is not of the account's domain {domain}; --accept-refer follows such transfers",
            peer.unwrap_or("unknown")
        ));
    }
    if referred_by.is_some() && !from_us(referred_by) {
        return Err(format!(
            "Referred-By ({}) is not of the account's domain {domain}; --accept-refer follows such transfers",
            referred_by.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Timed actions on an established call.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Dtmf(char),
    Hold(bool),
    Transfer(String),
    Hangup,
}

fn plan(account: &AccountArgs) -> Vec<(Duration, Action)> {
    let mut at = Duration::from_millis(500);
    let mut plan = Vec::new();
    if let Some(d) = &account.dtmf {
        for c in d.chars() {
            plan.push((at, Action::Dtmf(c)));
            at += Duration::from_millis(250);
        }
    }
    if let Some(h) = account.hold_after {
        let h = Duration::from_secs_f64(h.max(0.0));
        plan.push((h, Action::Hold(true)));
        plan.push((h + Duration::from_secs(2), Action::Hold(false)));
        at = at.max(h + Duration::from_secs(3));
    }
    if let Some(t) = &account.transfer {
        plan.push((at, Action::Transfer(t.clone())));
    }
    if let Some(s) = account.hangup_after {
        plan.push((Duration::from_secs_f64(s.max(0.0)), Action::Hangup));
    }
    plan.sort_by_key(|(d, _)| *d);
    plan
}

fn describe_end(reason: &EndReason) -> (String, bool) {
    match reason {
        EndReason::Local => ("we hung up".into(), true),
        EndReason::RemoteBye => ("the other side hung up".into(), true),
        EndReason::Cancelled => ("the caller gave up before we answered".into(), true),
        EndReason::Replaced => ("replaced by a transferred call".into(), true),
        EndReason::Declined { status } => (format!("we declined with {status}"), true),
        EndReason::Rejected { status, reason } => (format!("refused: {status} {reason}"), false),
        EndReason::Timeout => ("no answer from the other side (timeout)".into(), false),
        EndReason::TransportError => (
            "could not reach the other side (connection refused or TLS failure — see the warning above)".into(),
            false,
        ),
        EndReason::MediaFailed(why) => (format!("media negotiation failed: {why}"), false),
        EndReason::NotSent(why) => (format!("not sent: {why}"), false),
    }
}

fn reason_json(reason: &EndReason) -> serde_json::Value {
    match reason {
        EndReason::Rejected { status, reason } => {
            serde_json::json!({"reason": "rejected", "status": status, "phrase": reason})
        }
        EndReason::Declined { status } => {
            serde_json::json!({"reason": "declined", "status": status})
        }
        EndReason::MediaFailed(w) => serde_json::json!({"reason": "media_failed", "detail": w}),
        EndReason::NotSent(w) => serde_json::json!({"reason": "not_sent", "detail": w}),
        other => serde_json::json!({"reason": format!("{other:?}").to_lowercase()}),
    }
}

/// What the loop waits for.
enum Mode {
    Call {
        ring_deadline: TokioInstant,
    },
    Answer {
        remaining: u32,
        answer_after: Duration,
        wait_deadline: Option<TokioInstant>,
    },
}

pub async fn call(args: CallArgs, json: bool) -> anyhow::Result<()> {
    let target_uri = args.uri.trim().to_owned();
    let (host_s, port) = switchboard_sip::ua::uri_host_port(&target_uri).with_context(|| {
        format!("{target_uri:?} is not a SIP URI — write it like sip:bob@192.0.2.10:5060")
    })?;
    let kind = uri_transport(&target_uri);
    let default_port = if kind == Some(Transport::Tls) {
        5061
    } else {
        5060
    };
    let towards = resolve(&host_s, port.unwrap_or(default_port))
        .await
        .ok()
        .map(|a| (a, host_s.clone()));
    let mut s = setup(&args.account, towards, kind).await?;
    s.out.json = json;
    start_teams(&mut s, json).await?;
    if s.phone.registration().is_some() {
        wait_registered(&mut s).await?;
    }
    let media = s.local_media();
    let now = Instant::now();
    let call = s.phone.ua().invite(&target_uri, media, Vec::new(), now)?;
    s.peers.insert(call, target_uri.clone());
    s.out.event(
        "calling",
        serde_json::json!({"call": call, "to": target_uri}),
        format!("calling {target_uri}"),
    );
    let ring_deadline = TokioInstant::now() + Duration::from_secs_f64(args.ring_timeout.max(0.1));
    let r = run(
        &mut s,
        Mode::Call { ring_deadline },
        std::pin::pin!(std::future::pending::<()>()),
    )
    .await;
    finish_teams(&mut s).await;
    r
}

/// The signed-in account's session (the desktop's settings folder holds its cache).
pub(super) fn account_session(
) -> anyhow::Result<std::sync::Arc<switchboard_agent::account::AccountSession>> {
    let config_dir = switchboard_agent::settings::SettingsStore::for_current_user()?
        .path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    Ok(std::sync::Arc::new(
        switchboard_agent::account::AccountSession::new(&config_dir),
    ))
}

/// `--teams-presence`: keeps the contact-center state in Teams from here on.
async fn start_teams(s: &mut Session, json: bool) -> anyhow::Result<()> {
    use switchboard_agent::state::{parse_reason, SessionTiming, WorkState};
    if !s.account.teams_presence {
        return Ok(());
    }
    let reason = s
        .account
        .not_ready
        .as_deref()
        .map(parse_reason)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--not-ready: {e}"))?;
    let session = account_session()?;
    let me = session
        .current()
        .await?
        .context("--teams-presence needs a signed-in account (switchboard-agent login)")?;
    tracing::debug!(account = %me.id, "keeping the agent state in Teams");
    let state = WorkState::start(
        session,
        Duration::from_secs(u64::from(s.account.wrap_up)),
        SessionTiming::default(),
    );
    if s.account.ready {
        state.set_ready();
    } else if let Some(r) = reason {
        state.set_not_ready(r);
    }
    let mut changes = state.subscribe();
    let reporter = tokio::spawn(async move {
        let out = Out { json };
        let mut last = None;
        loop {
            let v = changes.borrow_and_update().clone();
            let key = (
                v.state,
                v.teams.synced,
                v.teams.availability.clone(),
                v.teams.error.clone(),
            );
            if last.as_ref() != Some(&key) {
                let shown = match (&v.teams.availability, &v.teams.activity) {
                    (Some(a), Some(b)) => format!("{a} / {b}"),
                    _ => "cleared".into(),
                };
                let human = match &v.teams.error {
                    Some(e) => format!("{:?}: Teams presence not set: {e}", v.state),
                    None if v.teams.synced => format!("{:?}: Teams presence {shown}", v.state),
                    None => format!("{:?}", v.state),
                };
                out.event(
                    "work_state",
                    serde_json::to_value(&v).unwrap_or_default(),
                    human,
                );
                last = Some(key);
            }
            if changes.changed().await.is_err() {
                break;
            }
        }
    });
    s.teams = Some((state, reporter));
    Ok(())
}

async fn finish_teams(s: &mut Session) {
    if let Some((state, reporter)) = s.teams.take() {
        // Calls still counted have ended with the run.
        for _ in 0..std::mem::take(&mut s.calls_up) {
            state.call_ended(false);
        }
        // Wrap-up runs to its end before the session goes.
        while let Some(left) = state.view().wrap_up_seconds_left {
            tokio::time::sleep(Duration::from_millis(u64::from(left.min(1)) * 1000 + 100)).await;
        }
        state.finish().await;
        drop(state);
        let _ = tokio::time::timeout(Duration::from_secs(2), reporter).await;
    }
}

pub async fn answer(args: AnswerArgs, json: bool) -> anyhow::Result<()> {
    answer_until(args, json, std::future::pending::<()>()).await
}

/// `answer`, until `stop` completes: then calls up are hung up, calls ringing refused, new
/// ones turned away (486), and the phone unregisters; `Ok` unless a call failed before.
/// `work` stops it on Ctrl-C/SIGTERM.
pub(super) async fn answer_until(
    args: AnswerArgs,
    json: bool,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut stop = std::pin::pin!(stop);
    let mut s = setup(&args.account, None, None).await?;
    s.out.json = json;
    start_teams(&mut s, json).await?;
    s.ring = args.ring_device.as_deref().map(|d| {
        (
            (d != "default").then(|| d.to_owned()),
            f32::from(args.ring_volume) / 100.0,
        )
    });
    let local = s.phone.local_addr()?;
    if s.phone.registration().is_some() {
        tokio::select! {
            r = wait_registered(&mut s) => r?,
            () = stop.as_mut() => {
                finish_teams(&mut s).await;
                return Ok(());
            }
        }
    }
    let contact = format!(
        "sip:{}@{}",
        args.account.user,
        host(SocketAddr::new(s.local_ip, local.port()))
    );
    s.out.event(
        "listening",
        serde_json::json!({"contact": contact}),
        format!("waiting for calls at {contact}"),
    );
    let wait_deadline = args
        .wait
        .map(|w| TokioInstant::now() + Duration::from_secs_f64(w.max(0.0)));
    let r = run(
        &mut s,
        Mode::Answer {
            remaining: args.calls.max(1),
            answer_after: Duration::from_secs_f64(args.answer_after.max(0.0)),
            wait_deadline,
        },
        stop,
    )
    .await;
    finish_teams(&mut s).await;
    r
}

async fn wait_registered(s: &mut Session) -> anyhow::Result<()> {
    let server = s.account.server.clone().unwrap_or_default();
    loop {
        match tokio::time::timeout(Duration::from_secs(40), s.phone.next_event()).await {
            Err(_) => bail!("no answer from {server} within 40 s — check the address and that the registrar is running"),
            Ok(ev) => match ev? {
                PhoneEvent::Registration { event: RegistrationEvent::Registered { expires, .. }, .. } => {
                    s.out.event(
                        "registered",
                        serde_json::json!({"registrar": server, "expires": expires}),
                        format!("registered at {server} for {expires} s"),
                    );
                    return Ok(());
                }
                PhoneEvent::Registration { event: RegistrationEvent::Refused { status, reason }, .. } => {
                    let hint = match status {
                        401 | 403 | 407 => "check the user name and password",
                        404 => "the registrar does not know this user or domain — check --user and --domain",
                        _ => "see the registrar's logs",
                    };
                    bail!("SIP registration refused by {server}: {status} {reason} — {hint}");
                }
                PhoneEvent::Registration { event: RegistrationEvent::Unreachable, .. } => {
                    bail!("no answer from {server} within 32 s — check the address, port and transport, and that the registrar is running")
                }
                PhoneEvent::Registration { event: RegistrationEvent::NotSent(why), .. } => {
                    bail!("SIP registration not sent: {why} — check --server, --user and --domain")
                }
                _ => {}
            },
        }
    }
}

async fn run<F: std::future::Future<Output = ()>>(
    s: &mut Session,
    mut mode: Mode,
    mut stop: std::pin::Pin<&mut F>,
) -> anyhow::Result<()> {
    // Told to stop: nothing more is answered.
    let mut stopping = false;
    // Calls that have not reported their end yet.
    let mut open: std::collections::HashSet<CallId> = s.phone.ua().calls().collect();
    // Per established call: when it was answered and its remaining plan.
    let mut active: HashMap<CallId, (TokioInstant, Vec<(Duration, Action)>)> = HashMap::new();
    // Incoming calls waiting to be answered: call → answer at.
    let mut ringing: HashMap<CallId, TokioInstant> = HashMap::new();
    let mut outcome: Option<anyhow::Error> = None;
    // The ring on the ringing device while a call waits to be answered.
    let mut ringer: Option<Player> = None;
    loop {
        if let Some((state, _)) = &s.teams {
            while s.calls_up < active.len() {
                s.calls_up += 1;
                state.call_started(false);
            }
            while s.calls_up > active.len() {
                s.calls_up -= 1;
                state.call_ended(false);
            }
        }
        match (&s.ring, ringing.is_empty(), ringer.is_some()) {
            (Some((device, volume)), false, false) => {
                ringer = Some(Player::start(device.clone(), ring_cycle(), *volume, true));
                s.out.event(
                    "ringing",
                    serde_json::json!({"device": device.as_deref().unwrap_or("default")}),
                    format!(
                        "ringing on {}",
                        device.as_deref().unwrap_or("the default device")
                    ),
                );
            }
            (_, true, true) => {
                // Stopping joins the sound's thread: at most one 20 ms step.
                for e in ringer.take().map(Player::stop).unwrap_or_default() {
                    let (mut fields, text) = super::audio::describe_device_event(&e);
                    fields["purpose"] = "ringing".into();
                    s.out.event("device", fields, format!("ringing: {text}"));
                }
            }
            _ => {}
        }
        if let Some(r) = &ringer {
            while let Some(e) = r.try_event() {
                let (mut fields, text) = super::audio::describe_device_event(&e);
                fields["purpose"] = "ringing".into();
                s.out.event("device", fields, format!("ringing: {text}"));
            }
        }
        // The next timed thing to do.
        let mut next: Option<TokioInstant> = None;
        let mut consider =
            |t: TokioInstant| next = Some(next.map_or(t, |n: TokioInstant| n.min(t)));
        for (start, plan) in active.values() {
            if let Some((d, _)) = plan.first() {
                consider(*start + *d);
            }
        }
        for at in ringing.values() {
            consider(*at);
        }
        match &mode {
            Mode::Call { ring_deadline } if active.is_empty() => consider(*ring_deadline),
            Mode::Answer {
                wait_deadline: Some(d),
                ..
            } if active.is_empty() && ringing.is_empty() => consider(*d),
            _ => {}
        }
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = s.phone.next_event() => {
                let ev = ev?;
                let now = Instant::now();
                match ev {
                    PhoneEvent::Registration { event: RegistrationEvent::Refused { status, reason }, .. } => {
                        bail!("SIP registration refused: {status} {reason}");
                    }
                    PhoneEvent::Registration { .. } => {}
                    PhoneEvent::Call(UaEvent::OptionsAnswered { .. }) => {}
                    PhoneEvent::Call(UaEvent::IncomingCall { call, from, to, replaces, x_headers }) => {
                        open.insert(call);
                        s.peers.insert(call, from.clone());
                        // What a router says about the call it offers (queue, caller, …).
                        let mut fields = serde_json::json!({"call": call, "from": from, "to": to, "replaces": replaces});
                        let offer = super::work::offer_fields(&x_headers);
                        let text = match offer.get("queue").and_then(|q| q.as_str()) {
                            Some(q) => format!("incoming call from {from} (queue {q})"),
                            None => format!("incoming call from {from}"),
                        };
                        if let (Some(f), Some(o)) = (fields.as_object_mut(), offer.as_object()) {
                            f.extend(o.clone());
                            if !o.is_empty() {
                                s.offers.insert(call, o.clone());
                            }
                        }
                        s.out.event("incoming", fields, text);
                        match &mode {
                            Mode::Answer { remaining, answer_after, .. } if !stopping && (*remaining > 0 || replaces.is_some()) => {
                                s.phone.ua().ring(call, now);
                                let at = if replaces.is_some() { Duration::ZERO } else { *answer_after };
                                ringing.insert(call, TokioInstant::now() + at);
                            }
                            _ => s.phone.ua().reject(call, 486, now),
                        }
                    }
                    PhoneEvent::Call(UaEvent::Progress { call, status, reason, early_media }) => {
                        s.out.event("progress", serde_json::json!({"call": call, "status": status, "phrase": reason, "early_media": early_media.as_ref().map(media_json)}), format!("{status} {reason}"));
                        if let Some(m) = &early_media {
                            s.media_agreed(call, m).await;
                        }
                        if let Some(orig) = s.transfers.get(&call).copied() {
                            s.phone.ua().notify_transfer(orig, status, &reason, now);
                        }
                    }
                    PhoneEvent::Call(UaEvent::Established { call, media }) => {
                        s.media_agreed(call, &media).await;
                        let mut fields = serde_json::json!({"call": call, "media": media_json(&media)});
                        if let (Some(f), Some(o)) = (fields.as_object_mut(), s.offers.get(&call)) {
                            f.extend(o.clone());
                        }
                        s.out.event("established", fields,
                            format!("call {call} is up: {} to {}", media.codec.encoding, media.remote.map(|a| a.to_string()).unwrap_or_else(|| "nobody (on hold)".into())));
                        if let Some(orig) = s.transfers.remove(&call) {
                            s.phone.ua().notify_transfer(orig, 200, "OK", now);
                        }
                        if let Some((orig, target)) = s.consults.get(&call).cloned() {
                            // The target answered the consultation: connect it to the original
                            // caller (REFER with Replaces), and run no plan on this call.
                            match s.phone.ua().transfer(orig, &target, Some(call), now) {
                                Ok(()) => s.out.event("transferring", serde_json::json!({"call": orig, "to": target, "attended": true, "consultation": call}), format!("connecting call {orig} to {target}")),
                                Err(e) => outcome = Some(anyhow::anyhow!("the attended transfer failed: {e}")),
                            }
                            active.insert(call, (TokioInstant::now(), Vec::new()));
                        } else {
                            active.insert(call, (TokioInstant::now(), plan(&s.account)));
                        }
                        if let Mode::Answer { remaining, .. } = &mut mode {
                            *remaining = remaining.saturating_sub(1);
                        }
                    }
                    PhoneEvent::Call(UaEvent::MediaChanged { call, media, .. }) => {
                        s.audio.update(call, &media);
                        s.out.event("media", serde_json::json!({"call": call, "media": media_json(&media)}), format!("call {call}: media now {}", media.direction.as_str()));
                    }
                    PhoneEvent::Call(UaEvent::MediaChangeFailed { call, status }) => {
                        s.out.event("media_failed", serde_json::json!({"call": call, "status": status}), format!("call {call}: the peer refused the media change ({status})"));
                    }
                    PhoneEvent::Call(UaEvent::Dtmf { call, digit, duration_ms }) => {
                        s.out.event("dtmf", serde_json::json!({"call": call, "digit": digit.to_string(), "duration_ms": duration_ms, "via": "info"}), format!("DTMF {digit}"));
                    }
                    PhoneEvent::Call(UaEvent::TransferRequested { call, target, replaces, referred_by }) => {
                        s.out.event("transfer_requested", serde_json::json!({"call": call, "target": target, "replaces": replaces, "referred_by": referred_by}), format!("asked to call {target}"));
                        if let Err(why) = refer_allowed(s.account.accept_refer, s.account.server.is_some(), &s.domain, s.peers.get(&call).map(String::as_str), referred_by.as_deref()) {
                            s.phone.ua().notify_transfer(call, 603, "Declined", now);
                            s.out.event("transfer_refused", serde_json::json!({"call": call, "target": target, "reason": why}), format!("not calling {target}: {why}"));
                        } else {
                            // Through the wire checks: a value that would break a header line
                            // is refused (the Replaces is already re-built from its parts).
                            let built: Result<Vec<String>, switchboard_sip::wire::WireError> = replaces
                                .iter()
                                .map(|r| switchboard_sip::wire::header_line("Replaces", r))
                                .chain(referred_by.iter().map(|b| switchboard_sip::wire::header_line("Referred-By", b)))
                                .collect();
                            let media = s.local_media();
                            let placed = match built {
                                Ok(headers) => s.phone.ua().invite(&target, media, headers, now),
                                Err(e) => Err(e.into()),
                            };
                            match placed {
                                Ok(new_call) => { open.insert(new_call); s.transfers.insert(new_call, call); s.peers.insert(new_call, target.clone()); }
                                Err(e) => {
                                    s.phone.ua().notify_transfer(call, 503, "Service Unavailable", now);
                                    s.out.event("transfer_failed", serde_json::json!({"call": call, "error": e.to_string()}), format!("cannot call {target}: {e}"));
                                }
                            }
                        }
                    }
                    PhoneEvent::Call(UaEvent::TransferProgress { call, status, final_ }) => {
                        s.out.event("transfer_progress", serde_json::json!({"call": call, "status": status, "final": final_}), format!("transfer: {status}"));
                        if final_ {
                            // RFC 5589 §6: the transferor ends its leg once the transfer is done,
                            // and (§7.2) the consultation too, in case the target did not.
                            if (200..300).contains(&status) {
                                s.phone.ua().hangup(call, now);
                                let consults: Vec<CallId> = s.consults.iter().filter(|(_, (o, _))| *o == call).map(|(c, _)| *c).collect();
                                for c in consults {
                                    // A target that replaces it ends it itself (RFC 3891); give
                                    // it two seconds before we do.
                                    if let Some((start, plan)) = active.get_mut(&c) {
                                        plan.push((start.elapsed() + Duration::from_secs(2), Action::Hangup));
                                    }
                                }
                            } else {
                                outcome = Some(anyhow::anyhow!("the transfer failed: the target answered {status}"));
                            }
                        }
                    }
                    PhoneEvent::Call(UaEvent::Ended { call, reason }) => {
                        let (text, ok) = describe_end(&reason);
                        let mut fields = reason_json(&reason);
                        fields["call"] = serde_json::json!(call);
                        let (stats, mos) = s.audio.stop(call).await.unwrap_or_default();
                        fields["rtp_packets_received"] = serde_json::json!(stats.packets_received);
                        fields["audio"] = serde_json::json!({
                            "packets_sent": stats.packets_sent,
                            "packets_received": stats.packets_received,
                            "packets_lost": stats.packets_lost,
                            "jitter_ms": (stats.jitter_ms * 10.0).round() / 10.0,
                            "concealed_ms": stats.concealed_ms,
                            "late": stats.late,
                            "dropped": stats.malformed + stats.wrong_source + stats.wrong_payload_type,
                            "mos": mos.map(|m| (m * 100.0).round() / 100.0),
                            "rtt_ms": stats.rtt_ms.map(|r| (r * 10.0).round() / 10.0),
                            "rtcp_received": stats.rtcp_received,
                            "srtp_auth_failures": stats.srtp_auth_failures,
                            "srtp_unencrypted": stats.srtp_unencrypted,
                            "fec_recovered": stats.fec_recovered,
                            "opus_bitrate": stats.opus_bitrate,
                            "dtx_frames": stats.dtx_frames,
                        });
                        if let (Some(f), Some(o)) = (fields.as_object_mut(), s.offers.remove(&call)) {
                            f.extend(o);
                        }
                        s.out.event("ended", fields, format!("call {call} ended: {text}"));
                        if let Some(orig) = s.transfers.remove(&call) {
                            let (st, ph) = match &reason { EndReason::Rejected { status, reason } => (*status, reason.clone()), _ => (487, "Request Terminated".to_owned()) };
                            s.phone.ua().notify_transfer(orig, st, &ph, now);
                        }
                        active.remove(&call);
                        ringing.remove(&call);
                        open.remove(&call);
                        if let Some((orig, target)) = s.consults.remove(&call) {
                            if !matches!(reason, EndReason::RemoteBye | EndReason::Replaced | EndReason::Local) {
                                outcome.get_or_insert_with(|| anyhow::anyhow!("the attended transfer of call {orig} failed: {target} {text}"));
                            }
                        }
                        if !ok && outcome.is_none() {
                            outcome = Some(anyhow::anyhow!("call {call} {text}"));
                        }
                    }
                }
            }

            Some(ev) = s.audio.next_event() => match ev {
                AudioEvent::Dtmf { call, digit } => {
                    s.out.event("dtmf", serde_json::json!({"call": call, "digit": digit.to_string(), "via": "rfc4733"}), format!("DTMF {digit}"));
                }
                AudioEvent::Problem { call, kind, message } => {
                    s.out.event("media_error", serde_json::json!({"call": call, "kind": kind, "error": message}), format!("call {call}: {message}"));
                }
                AudioEvent::Device(d) => {
                    let (fields, text) = super::audio::describe_device_event(&d);
                    s.out.event("device", fields, text);
                }
            },
            () = stop.as_mut(), if !stopping => {
                // Hang up what is up, refuse what rings; the loop ends once every call has.
                stopping = true;
                ringing.clear();
                let now = Instant::now();
                let calls: Vec<CallId> = s.phone.ua().calls().collect();
                for c in calls {
                    s.phone.ua().hangup(c, now);
                }
                if let Mode::Answer { remaining, .. } = &mut mode {
                    *remaining = 0;
                }
            }
            _ = sleep => {
                let now = Instant::now();
                let tnow = TokioInstant::now();
                let due: Vec<CallId> = ringing.iter().filter(|(_, at)| **at <= tnow).map(|(c, _)| *c).collect();
                for call in due {
                    ringing.remove(&call);
                    let media = s.local_media();
                    if let Err(e) = s.phone.ua().answer(call, media, now) {
                        s.out.event("answer_failed", serde_json::json!({"call": call, "error": e.to_string()}), format!("cannot answer: {e}"));
                    }
                }
                for (call, (start, plan)) in active.iter_mut() {
                    while plan.first().is_some_and(|(d, _)| *start + *d <= tnow) {
                        let (_, action) = plan.remove(0);
                        let retry = action.clone();
                        let r = match action {
                            // In the media path when the call agreed telephone-event (RFC 4733),
                            // else as SIP INFO.
                            Action::Dtmf(d) if !s.account.dtmf_info && s.audio.send_dtmf(*call, d).await => {
                                s.out.event("dtmf_sent", serde_json::json!({"call": call, "digit": d.to_string(), "via": "rfc4733"}), format!("sent DTMF {d} (RFC 4733)"));
                                Ok(())
                            }
                            Action::Dtmf(d) => s.phone.ua().send_dtmf_info(*call, d, 160, now).map(|_| {
                                s.out.event("dtmf_sent", serde_json::json!({"call": call, "digit": d.to_string(), "via": "info"}), format!("sent DTMF {d} (SIP INFO)"));
                            }),
                            Action::Hold(h) => s.phone.ua().hold(*call, h, now),
                            Action::Transfer(t) if s.account.attended => {
                                let media = s.local_media();
                                s.phone.ua().invite(&t, media, Vec::new(), now).map(|consult| {
                                    open.insert(consult);
                                    s.consults.insert(consult, (*call, t.clone()));
                                    s.out.event("consulting", serde_json::json!({"call": consult, "to": t, "for": call}), format!("consulting {t} before transferring call {call}"));
                                })
                            }
                            Action::Transfer(t) => s.phone.ua().transfer(*call, &t, None, now).map(|_| {
                                s.out.event("transferring", serde_json::json!({"call": call, "to": t}), format!("transferring to {t}"));
                            }),
                            Action::Hangup => { s.phone.ua().hangup(*call, now); Ok(()) }
                        };
                        match r {
                            // Another offer/answer exchange is under way (e.g. a hold retried
                            // after glare): do this once it is over, as a person would.
                            Err(UaError::Busy(_)) => {
                                let at = tnow.duration_since(*start) + Duration::from_millis(250);
                                plan.insert(0, (at, retry));
                                break;
                            }
                            Err(e) => {
                                s.out.event("error", serde_json::json!({"call": call, "error": e.to_string()}), format!("call {call}: {e}"));
                            }
                            Ok(()) => {}
                        }
                    }
                }
                match &mode {
                    Mode::Call { ring_deadline } if active.is_empty() && tnow >= *ring_deadline => {
                        let calls: Vec<CallId> = s.phone.ua().calls().collect();
                        for c in calls { s.phone.ua().hangup(c, now); }
                        outcome.get_or_insert_with(|| anyhow::anyhow!("nobody answered within the ring timeout"));
                    }
                    Mode::Answer { wait_deadline: Some(d), .. } if active.is_empty() && ringing.is_empty() && tnow >= *d => {
                        bail!("no call arrived in time");
                    }
                    _ => {}
                }
            }
        }
        // Done when nothing is left to do.
        let idle = open.is_empty() && s.transfers.is_empty();
        let finished = match &mode {
            Mode::Call { .. } => idle,
            Mode::Answer { remaining, .. } => idle && *remaining == 0,
        };
        if finished {
            break;
        }
    }
    // Let the last requests finish (a BYE retransmitted on a lossy path waits for its 200, up
    // to 8 s), and answer stray retransmissions for a moment, then unregister.
    let give_up = TokioInstant::now() + Duration::from_secs(8);
    let mut settle = TokioInstant::now() + Duration::from_millis(300);
    loop {
        match tokio::time::timeout_at(settle, s.phone.next_event()).await {
            Ok(ev) => {
                ev?;
            }
            Err(_) if s.phone.ua().has_pending_requests() && settle < give_up => {
                settle = (TokioInstant::now() + Duration::from_millis(100)).min(give_up);
            }
            Err(_) => break,
        }
    }
    if let Some(reg) = s.phone.registration() {
        if reg.is_registered() {
            reg.unregister(Instant::now());
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match s.phone.next_event().await {
                        Ok(PhoneEvent::Registration {
                            event: RegistrationEvent::Unregistered,
                            ..
                        })
                        | Err(_) => break,
                        _ => {}
                    }
                }
            })
            .await;
        }
    }
    match outcome {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::refer_allowed;

    #[test]
    fn refers_are_followed_only_from_our_domain_or_with_consent() {
        let d = "pbx.example.com";
        let colleague = Some("<sip:alice@pbx.example.com>;tag=1");
        let stranger = Some("<sip:mallory@evil.example>;tag=2");
        assert!(refer_allowed(false, true, d, colleague, None).is_ok());
        assert!(refer_allowed(
            false,
            true,
            d,
            colleague,
            Some("<sip:alice@PBX.example.com>")
        )
        .is_ok());
        // A stranger through our registrar, or a colleague's dialog naming a stranger.
        assert!(refer_allowed(false, true, d, stranger, None).is_err());
        assert!(refer_allowed(false, true, d, colleague, Some("<sip:m@evil.example>")).is_err());
        // Direct calls (no registrar): only with consent.
        assert!(refer_allowed(false, false, "10.0.0.1", colleague, None).is_err());
        assert!(refer_allowed(true, false, "10.0.0.1", stranger, None).is_ok());
        assert!(refer_allowed(false, true, d, None, None).is_err());
    }
}
