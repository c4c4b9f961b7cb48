//! `switchboard-agent call URI` and `switchboard-agent answer`: the headless agent as a
//! synthetic caller or callee, directly or through a registrar/proxy, with DTMF, hold and
//! transfer, for operators testing a call path and for our own interop tests. The phone is
//! the library's call engine ([`switchboard_agent::call`]); this module turns flags into its
//! options, drives it with the flags' timed plan, and prints its events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use switchboard_agent::call::media::device_choice;
use switchboard_agent::call::{
    parse_codecs, parse_port_range, Account, CallError, CallId, DtmfVia, EndReason, MediaOptions,
    Phone, PhoneEvent, PhoneEvents, PhoneOptions, ReferPolicy, ReferRefusal, RegistrationState,
    RingOptions, RouterOffer, SrtpMode, Transport,
};
use switchboard_media::srtp::Suite;
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
    /// End a call whose other side sends no audio for this many seconds while it should
    /// (neither side holding): a peer gone without a BYE. 0: never.
    #[arg(long, default_value_t = 30.0)]
    pub media_timeout: f64,
    /// Send these DTMF digits (0-9 * # A-D) once the call is up, 250 ms apart: as RFC 4733
    /// events when the call agreed telephone-event, else as SIP INFO.
    #[arg(long)]
    pub dtmf: Option<String>,
    /// Seconds after the call is up before the first --dtmf digit (for a menu or an offer
    /// that comes later in the call).
    #[arg(long, default_value_t = 0.5, value_parser = dtmf_delay)]
    pub dtmf_after: f64,
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
    /// Three-way call: once the call is answered, call this URI too and join the two calls
    /// in a conference mixed by this agent (each of the others hears the other and us);
    /// --hangup-after then ends the whole conference.
    #[arg(long, value_name = "URI", conflicts_with = "transfer")]
    pub conference: Option<String>,
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
    /// Decline the first N calls that arrive (603 Decline, as a person pressing Decline
    /// does) before answering any; they do not count towards --calls.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub decline: u32,
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

async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host} — check the name"))?
        .next()
        .with_context(|| format!("{host} has no address"))
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

/// The engine's options for the flags.
fn phone_options(
    account: &AccountArgs,
    towards: Option<(SocketAddr, String)>,
    uri_kind: Option<Transport>,
) -> anyhow::Result<PhoneOptions> {
    let password = match (&account.password, &account.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(super::secrets::read_password_file(f)?),
        (None, None) => None,
    };
    if account.server.is_some() && password.is_none() {
        bail!("--server needs a password to register: SWITCHBOARD_SIP_PASSWORD, --password-file FILE or --password");
    }
    let srtp_suites = if account.srtp_suites.is_empty() {
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
    let mut o = PhoneOptions::new(Account {
        server: account.server.clone(),
        user: account.user.clone(),
        auth_user: None,
        display_name: None,
        password: password.map(Into::into),
        domain: account.domain.clone(),
        transport: account.transport.as_deref().map(transport_named),
    });
    o.bind = account.bind;
    o.towards = towards;
    o.transport_hint = uri_kind;
    o.tls_ca = account.tls_ca.clone();
    o.tls_cert = account.tls_cert.clone();
    o.tls_key = account.tls_key.clone();
    o.dns_server = account.dns_server;
    o.media_timeout = (account.media_timeout > 0.0)
        .then(|| std::time::Duration::try_from_secs_f64(account.media_timeout))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--media-timeout: a number of seconds, such as 30"))?;
    o.refer = if account.accept_refer {
        ReferPolicy::Always
    } else {
        ReferPolicy::Trusted
    };
    o.media = MediaOptions {
        rtp_ports: parse_port_range(&account.rtp_ports)?,
        codecs: parse_codecs(&account.codecs)?,
        srtp: match account.srtp.as_str() {
            "off" => SrtpMode::Off,
            "sdes" => SrtpMode::Sdes,
            _ => SrtpMode::Auto,
        },
        srtp_suites,
        dtx: account.dtx,
        play: account.play.clone(),
        record: account.record.clone(),
        devices: device_choice(
            account.input_device.as_deref(),
            account.output_device.as_deref(),
        ),
        echo: account.echo,
        volume: f32::from(account.volume) / 100.0,
        muted: account.mute,
        dtmf_info: account.dtmf_info,
    };
    Ok(o)
}

struct Session {
    phone: Phone,
    events: PhoneEvents,
    /// Events that arrived while waiting for the registration, handled first by `run`.
    early: VecDeque<PhoneEvent>,
    out: Out,
    account: AccountArgs,
    /// Consultation calls of an attended transfer: consultation → (original call, target).
    consults: HashMap<CallId, (CallId, String)>,
    /// Calls placed for --conference, not yet answered → the call they are to join.
    joining: HashMap<CallId, CallId>,
    /// The calls of the conference.
    conference: Vec<CallId>,
    /// Calls placed before `run` (the `call` command's).
    placed: Vec<CallId>,
    /// The contact-center state kept in Teams (`--teams-presence`), and the task that
    /// prints its changes.
    teams: Option<(
        switchboard_agent::state::WorkState,
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Receiver<Option<switchboard_agent::state::WorkStateView>>,
    )>,
    /// Calls the agent state has been told of.
    calls_up: usize,
}

impl Session {
    async fn start(
        account: &AccountArgs,
        towards: Option<(SocketAddr, String)>,
        uri_kind: Option<Transport>,
        ring: Option<RingOptions>,
        json: bool,
    ) -> anyhow::Result<Self> {
        let mut options = phone_options(account, towards, uri_kind)?;
        options.ring = ring;
        let (phone, events) = Phone::start(options).await?;
        Ok(Self {
            phone,
            events,
            early: VecDeque::new(),
            out: Out { json },
            account: account.clone(),
            consults: HashMap::new(),
            joining: HashMap::new(),
            conference: Vec::new(),
            placed: Vec::new(),
            teams: None,
            calls_up: 0,
        })
    }

    /// The next event (cancel-safe).
    async fn next_event(&mut self) -> Option<PhoneEvent> {
        match self.early.pop_front() {
            Some(e) => Some(e),
            None => self.events.recv().await,
        }
    }
}

/// Why a REFER was declined, with the flag that would follow it.
fn refusal_text(r: &ReferRefusal) -> String {
    match r {
        ReferRefusal::NoRegistrar => "transfers are followed only with --accept-refer when calls do not go through a registrar".into(),
        ReferRefusal::Declined => "declined".into(),
        other => format!("{other}; --accept-refer follows such transfers"),
    }
}

/// Timed actions on an established call.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Dtmf(char),
    Hold(bool),
    Transfer(String),
    Conference(String),
    Hangup,
}

/// `--dtmf-after`: seconds, 0 to an hour.
fn dtmf_delay(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0 to 3600"
        )),
    }
}

fn plan(account: &AccountArgs) -> Vec<(Duration, Action)> {
    let mut at = Duration::from_millis(500);
    let mut plan = Vec::new();
    if let Some(d) = &account.dtmf {
        at = Duration::from_secs_f64(account.dtmf_after);
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
    if let Some(t) = &account.conference {
        plan.push((at, Action::Conference(t.clone())));
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
        EndReason::Rejected { status, phrase } => (format!("refused: {status} {phrase}"), false),
        EndReason::Timeout => ("no answer from the other side (timeout)".into(), false),
        EndReason::TransportError => (
            "could not reach the other side (connection refused or TLS failure — see the warning above)".into(),
            false,
        ),
        EndReason::MediaFailed { detail } => (format!("media negotiation failed: {detail}"), false),
        EndReason::NotSent { detail } => (format!("not sent: {detail}"), false),
    }
}

fn reason_json(reason: &EndReason) -> serde_json::Value {
    match reason {
        EndReason::Rejected { status, phrase } => {
            serde_json::json!({"reason": "rejected", "status": status, "phrase": phrase})
        }
        EndReason::Declined { status } => {
            serde_json::json!({"reason": "declined", "status": status})
        }
        EndReason::MediaFailed { detail } => {
            serde_json::json!({"reason": "media_failed", "detail": detail})
        }
        EndReason::NotSent { detail } => {
            serde_json::json!({"reason": "not_sent", "detail": detail})
        }
        other => serde_json::json!({"reason": format!("{other:?}").to_lowercase()}),
    }
}

/// Adds a router's offer fields (queue, call record, caller, …) to an event's fields.
fn with_offer(mut fields: serde_json::Value, offer: Option<&RouterOffer>) -> serde_json::Value {
    if let (Some(f), Some(serde_json::Value::Object(o))) = (
        fields.as_object_mut(),
        offer.and_then(|o| serde_json::to_value(o).ok()),
    ) {
        f.extend(o);
    }
    fields
}

/// Prints an event as the CLI always has (JSON with `--json`, else a line for people).
fn print_event(out: &Out, ev: &PhoneEvent) {
    let media_json = |m| serde_json::to_value(m).unwrap_or_default();
    match ev {
        PhoneEvent::Registration { .. }
        | PhoneEvent::TransferConsent { .. }
        | PhoneEvent::TransferCalling { .. }
        | PhoneEvent::AttendedTransferFailed { .. }
        | PhoneEvent::Stopped { .. } => {}
        PhoneEvent::Ringing { device } => out.event(
            "ringing",
            serde_json::json!({"device": device.as_deref().unwrap_or("default")}),
            format!(
                "ringing on {}",
                device.as_deref().unwrap_or("the default device")
            ),
        ),
        PhoneEvent::RingDevice(d) => {
            let (mut fields, text) = super::audio::describe_device_event(d);
            fields["purpose"] = "ringing".into();
            out.event("device", fields, format!("ringing: {text}"));
        }
        PhoneEvent::Calling { call, to } => out.event(
            "calling",
            serde_json::json!({"call": call, "to": to}),
            format!("calling {to}"),
        ),
        PhoneEvent::Incoming {
            call,
            from,
            to,
            replaces,
            offer,
        } => {
            let fields = serde_json::json!({"call": call, "from": from, "to": to, "replaces": replaces});
            let text = match &offer.queue {
                Some(q) => format!("incoming call from {from} (queue {q})"),
                None => format!("incoming call from {from}"),
            };
            out.event("incoming", with_offer(fields, Some(offer)), text);
        }
        PhoneEvent::Progress {
            call,
            status,
            phrase,
            early_media,
        } => out.event(
            "progress",
            serde_json::json!({"call": call, "status": status, "phrase": phrase, "early_media": early_media.as_ref().map(media_json)}),
            format!("{status} {phrase}"),
        ),
        PhoneEvent::Established { call, media, offer } => out.event(
            "established",
            with_offer(
                serde_json::json!({"call": call, "media": media_json(media)}),
                offer.as_ref(),
            ),
            format!(
                "call {call} is up: {} to {}",
                media.codec,
                media.remote.as_deref().unwrap_or("nobody (on hold)")
            ),
        ),
        PhoneEvent::MediaChanged { call, media } => out.event(
            "media",
            serde_json::json!({"call": call, "media": media_json(media)}),
            format!("call {call}: media now {}", media.direction),
        ),
        PhoneEvent::MediaChangeFailed { call, status } => out.event(
            "media_failed",
            serde_json::json!({"call": call, "status": status}),
            format!("call {call}: the peer refused the media change ({status})"),
        ),
        PhoneEvent::MediaError { call, kind, error } => out.event(
            "media_error",
            serde_json::json!({"call": call, "kind": kind, "error": error}),
            if kind == "setup" {
                format!("call {call}: no audio: {error}")
            } else {
                format!("call {call}: {error}")
            },
        ),
        PhoneEvent::Dtmf {
            call,
            digit,
            via,
            duration_ms,
        } => {
            let fields = match duration_ms {
                Some(d) => {
                    serde_json::json!({"call": call, "digit": digit.to_string(), "duration_ms": d, "via": via.as_str()})
                }
                None => {
                    serde_json::json!({"call": call, "digit": digit.to_string(), "via": via.as_str()})
                }
            };
            out.event("dtmf", fields, format!("DTMF {digit}"));
        }
        PhoneEvent::DtmfSent { call, digit, via } => out.event(
            "dtmf_sent",
            serde_json::json!({"call": call, "digit": digit.to_string(), "via": via.as_str()}),
            match via {
                DtmfVia::Rfc4733 => format!("sent DTMF {digit} (RFC 4733)"),
                DtmfVia::Info => format!("sent DTMF {digit} (SIP INFO)"),
            },
        ),
        PhoneEvent::Conference { calls } => out.event(
            "conference",
            serde_json::json!({"calls": calls}),
            format!(
                "in a conference of calls {}",
                calls.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        ),
        PhoneEvent::Consulting { call, to, for_call } => out.event(
            "consulting",
            serde_json::json!({"call": call, "to": to, "for": for_call}),
            format!("consulting {to} before transferring call {for_call}"),
        ),
        PhoneEvent::Transferring {
            call,
            to,
            consultation: None,
        } => out.event(
            "transferring",
            serde_json::json!({"call": call, "to": to}),
            format!("transferring to {to}"),
        ),
        PhoneEvent::Transferring {
            call,
            to,
            consultation: Some(c),
        } => out.event(
            "transferring",
            serde_json::json!({"call": call, "to": to, "attended": true, "consultation": c}),
            format!("connecting call {call} to {to}"),
        ),
        PhoneEvent::TransferRequested {
            call,
            target,
            replaces,
            referred_by,
        } => out.event(
            "transfer_requested",
            serde_json::json!({"call": call, "target": target, "replaces": replaces, "referred_by": referred_by}),
            format!("asked to call {target}"),
        ),
        PhoneEvent::TransferRefused {
            call,
            target,
            refusal,
        } => {
            let why = refusal_text(refusal);
            out.event(
                "transfer_refused",
                serde_json::json!({"call": call, "target": target, "reason": why}),
                format!("not calling {target}: {why}"),
            );
        }
        PhoneEvent::TransferFailed {
            call,
            target,
            error,
        } => out.event(
            "transfer_failed",
            serde_json::json!({"call": call, "error": error}),
            format!("cannot call {target}: {error}"),
        ),
        PhoneEvent::TransferProgress {
            call,
            status,
            final_,
        } => out.event(
            "transfer_progress",
            serde_json::json!({"call": call, "status": status, "final": final_}),
            format!("transfer: {status}"),
        ),
        PhoneEvent::Device(d) => {
            let (fields, text) = super::audio::describe_device_event(d);
            out.event("device", fields, text);
        }
        PhoneEvent::Ended {
            call,
            reason,
            quality,
            offer,
        } => {
            let (text, _) = describe_end(reason);
            let mut fields = reason_json(reason);
            fields["call"] = serde_json::json!(call);
            fields["rtp_packets_received"] = serde_json::json!(quality.packets_received);
            fields["audio"] = serde_json::to_value(quality).unwrap_or_default();
            out.event(
                "ended",
                with_offer(fields, offer.as_ref()),
                format!("call {call} ended: {text}"),
            );
        }
    }
}

/// What the loop waits for.
enum Mode {
    Call {
        ring_deadline: TokioInstant,
    },
    Answer {
        remaining: u32,
        /// Calls still to decline before answering.
        decline: u32,
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
    let mut s = Session::start(&args.account, towards, kind, None, json).await?;
    start_teams(&mut s, json).await?;
    if s.account.server.is_some() {
        wait_registered(&mut s).await?;
    }
    let call = s.phone.dial(&target_uri).await?;
    s.placed.push(call);
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
    // The last view the reporter has printed (or found already printed).
    let (printed_tx, printed) = tokio::sync::watch::channel(None);
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
            printed_tx.send_replace(Some(v));
            if changes.changed().await.is_err() {
                break;
            }
        }
    });
    s.teams = Some((state, reporter, printed));
    Ok(())
}

async fn finish_teams(s: &mut Session) {
    if let Some((state, reporter, mut printed)) = s.teams.take() {
        // Calls still counted have ended with the run.
        for _ in 0..std::mem::take(&mut s.calls_up) {
            state.call_ended(false);
        }
        // Wrap-up runs to its end, and the state after it reaches Teams (or fails to, and
        // says so), before the session goes: Teams never skips from wrap-up to offline.
        let mut changes = state.subscribe();
        let settled = tokio::time::timeout(
            Duration::from_secs(u64::from(s.account.wrap_up) + 10),
            changes.wait_for(|v| {
                v.wrap_up_seconds_left.is_none() && (v.teams.synced || v.teams.error.is_some())
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !settled {
            tracing::info!(
                "Teams presence not yet set for the state after wrap-up; signing out of it anyway"
            );
        }
        drop(changes);
        // And it is printed before the sign-out's own states.
        let now = state.view();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            printed.wait_for(|p| p.as_ref() == Some(&now)),
        )
        .await;
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
    let ring = args.ring_device.as_deref().map(|d| RingOptions {
        device: (d != "default").then(|| d.to_owned()),
        volume: f32::from(args.ring_volume) / 100.0,
    });
    let mut s = Session::start(&args.account, None, None, ring, json).await?;
    start_teams(&mut s, json).await?;
    if s.account.server.is_some() {
        tokio::select! {
            r = wait_registered(&mut s) => r?,
            () = stop.as_mut() => {
                finish_teams(&mut s).await;
                return Ok(());
            }
        }
    }
    let contact = s.phone.contact().to_owned();
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
            decline: args.decline,
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
        match tokio::time::timeout(Duration::from_secs(40), s.events.recv()).await {
            Err(_) => bail!("no answer from {server} within 40 s — check the address and that the registrar is running"),
            Ok(None) => bail!("the phone stopped before it registered"),
            Ok(Some(PhoneEvent::Stopped { error })) => {
                bail!("{}", error.unwrap_or_else(|| "the phone stopped before it registered".into()))
            }
            Ok(Some(PhoneEvent::Registration { state, .. })) => match state {
                RegistrationState::Registered { expires, .. } => {
                    s.out.event(
                        "registered",
                        serde_json::json!({"registrar": server, "expires": expires}),
                        format!("registered at {server} for {expires} s"),
                    );
                    return Ok(());
                }
                RegistrationState::Refused { status, reason } => {
                    let hint = match status {
                        401 | 403 | 407 => "check the user name and password",
                        404 => "the registrar does not know this user or domain — check --user and --domain",
                        _ => "see the registrar's logs",
                    };
                    bail!("SIP registration refused by {server}: {status} {reason} — {hint}");
                }
                RegistrationState::Unreachable => {
                    bail!("no answer from {server} within 32 s — check the address, port and transport, and that the registrar is running")
                }
                RegistrationState::NotSent { why } => {
                    bail!("SIP registration not sent: {why} — check --server, --user and --domain")
                }
                RegistrationState::Unregistered => {}
            },
            // Anything else (a call arriving already) is handled once registered.
            Ok(Some(other)) => s.early.push_back(other),
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
    let mut open: HashSet<CallId> = s.placed.drain(..).collect();
    // Per established call: when it was answered and its remaining plan.
    let mut active: HashMap<CallId, (TokioInstant, Vec<(Duration, Action)>)> = HashMap::new();
    // Incoming calls waiting to be answered: call → answer at.
    let mut ringing: HashMap<CallId, TokioInstant> = HashMap::new();
    let mut outcome: Option<anyhow::Error> = None;
    loop {
        if let Some((state, ..)) = &s.teams {
            while s.calls_up < active.len() {
                s.calls_up += 1;
                state.call_started(false);
            }
            while s.calls_up > active.len() {
                s.calls_up -= 1;
                state.call_ended(false);
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
            ev = s.next_event() => {
                let Some(ev) = ev else { bail!("the phone stopped") };
                print_event(&s.out, &ev);
                match ev {
                    PhoneEvent::Stopped { error } => {
                        bail!("{}", error.unwrap_or_else(|| "the phone stopped".into()));
                    }
                    PhoneEvent::Registration { state: RegistrationState::Refused { status, reason }, .. } => {
                        bail!("SIP registration refused: {status} {reason}");
                    }
                    PhoneEvent::Incoming { call, replaces, .. } => {
                        open.insert(call);
                        match &mut mode {
                            Mode::Answer { decline, .. } if !stopping && *decline > 0 && replaces.is_none() => {
                                *decline -= 1;
                                s.phone.reject(call, 603)?;
                            }
                            Mode::Answer { remaining, answer_after, .. } if !stopping && (*remaining > 0 || replaces.is_some()) => {
                                s.phone.ring(call)?;
                                let at = if replaces.is_some() { Duration::ZERO } else { *answer_after };
                                ringing.insert(call, TokioInstant::now() + at);
                            }
                            _ => s.phone.reject(call, 486)?,
                        }
                    }
                    PhoneEvent::TransferCalling { new_call, .. } => {
                        open.insert(new_call);
                    }
                    PhoneEvent::TransferConsent { call, .. } => {
                        // Not asked for by the CLI's policies; declined should it come.
                        s.phone.decline_transfer(call)?;
                    }
                    PhoneEvent::Established { call, .. } => {
                        // A consultation runs no plan: the engine connects it once answered.
                        // Nor does a call placed for the conference: it joins.
                        let plan = if s.consults.contains_key(&call) || s.joining.contains_key(&call) { Vec::new() } else { plan(&s.account) };
                        if let Some(orig) = s.joining.remove(&call) {
                            match s.phone.conference(&[orig, call]).await {
                                Ok(calls) => s.conference = calls,
                                Err(CallError::Stopped) => bail!("the phone stopped"),
                                Err(e) => {
                                    outcome.get_or_insert_with(|| anyhow::anyhow!("the conference failed: {e}"));
                                    s.phone.hangup(call)?;
                                }
                            }
                        }
                        active.insert(call, (TokioInstant::now(), plan));
                        if let Mode::Answer { remaining, .. } = &mut mode {
                            *remaining = remaining.saturating_sub(1);
                        }
                    }
                    PhoneEvent::AttendedTransferFailed { error, .. } => {
                        outcome = Some(anyhow::anyhow!("the attended transfer failed: {error}"));
                    }
                    PhoneEvent::TransferProgress { status, final_: true, .. } if !(200..300).contains(&status) => {
                        outcome = Some(anyhow::anyhow!("the transfer failed: the target answered {status}"));
                    }
                    PhoneEvent::Ended { call, reason, .. } => {
                        let (text, ok) = describe_end(&reason);
                        let left = active.remove(&call);
                        ringing.remove(&call);
                        open.remove(&call);
                        if s.conference.contains(&call) {
                            s.conference.retain(|c| *c != call);
                            // The conference's end stays where --hangup-after put it: those
                            // still in it (whose own calls run no plan) are hung up then, not
                            // when they leave.
                            if let Some((start, plan)) = left {
                                for c in &s.conference {
                                    if let Some((their_start, theirs)) = active.get_mut(c) {
                                        if theirs.is_empty() {
                                            *their_start = start;
                                            theirs.extend(
                                                plan.iter()
                                                    .filter(|(_, a)| matches!(a, Action::Hangup))
                                                    .map(|(d, _)| (*d, Action::Hangup)),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                        if s.joining.remove(&call).is_some() && outcome.is_none() && !ok {
                            outcome = Some(anyhow::anyhow!("the call for the conference {text}"));
                        }
                        if let Some((orig, target)) = s.consults.remove(&call) {
                            if !matches!(reason, EndReason::RemoteBye | EndReason::Replaced | EndReason::Local) {
                                outcome.get_or_insert_with(|| anyhow::anyhow!("the attended transfer of call {orig} failed: {target} {text}"));
                            }
                        }
                        if !ok && outcome.is_none() {
                            outcome = Some(anyhow::anyhow!("call {call} {text}"));
                        }
                    }
                    _ => {}
                }
            }
            () = stop.as_mut(), if !stopping => {
                // Hang up what is up, refuse what rings; the loop ends once every call has.
                stopping = true;
                ringing.clear();
                s.phone.hangup_all()?;
                if let Mode::Answer { remaining, .. } = &mut mode {
                    *remaining = 0;
                }
            }
            _ = sleep => {
                let tnow = TokioInstant::now();
                let due: Vec<CallId> = ringing.iter().filter(|(_, at)| **at <= tnow).map(|(c, _)| *c).collect();
                for call in due {
                    ringing.remove(&call);
                    if let Err(e) = s.phone.answer(call).await {
                        s.out.event("answer_failed", serde_json::json!({"call": call, "error": e.to_string()}), format!("cannot answer: {e}"));
                    }
                }
                for (call, (start, plan)) in active.iter_mut() {
                    while plan.first().is_some_and(|(d, _)| *start + *d <= tnow) {
                        let (_, action) = plan.remove(0);
                        let r = match action {
                            // In the media path when the call agreed telephone-event (RFC 4733),
                            // else as SIP INFO (the engine decides, --dtmf-info forces INFO).
                            Action::Dtmf(d) => s.phone.send_dtmf(*call, d).await.map(|_| ()),
                            Action::Hold(h) => s.phone.hold(*call, h).await,
                            Action::Transfer(t) if s.account.attended => {
                                s.phone.consult(*call, &t, true).await.map(|consult| {
                                    open.insert(consult);
                                    s.consults.insert(consult, (*call, t.clone()));
                                })
                            }
                            Action::Transfer(t) => s.phone.transfer(*call, &t).await,
                            Action::Conference(t) => s.phone.dial(&t).await.map(|added| {
                                open.insert(added);
                                s.joining.insert(added, *call);
                            }),
                            // Leaving a conference ends it: every call of it is ours.
                            Action::Hangup if s.conference.contains(call) => {
                                s.conference.iter().try_for_each(|c| s.phone.hangup(*c))
                            }
                            Action::Hangup => s.phone.hangup(*call),
                        };
                        match r {
                            Err(CallError::Stopped) => bail!("the phone stopped"),
                            Err(e) => {
                                s.out.event("error", serde_json::json!({"call": call, "error": e.to_string()}), format!("call {call}: {e}"));
                            }
                            Ok(()) => {}
                        }
                    }
                }
                match &mode {
                    Mode::Call { ring_deadline } if active.is_empty() && tnow >= *ring_deadline => {
                        s.phone.hangup_all()?;
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
        let idle = open.is_empty();
        let finished = match &mode {
            Mode::Call { .. } => idle,
            Mode::Answer { remaining, .. } => idle && *remaining == 0,
        };
        if finished {
            break;
        }
    }
    // Let the last requests finish, then unregister.
    s.phone.close().await;
    match outcome {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        account: AccountArgs,
    }

    fn account(args: &[&str]) -> Result<AccountArgs, clap::Error> {
        Flags::try_parse_from([&["call"], args].concat()).map(|f| f.account)
    }

    #[test]
    fn dtmf_goes_half_a_second_in_or_when_told_and_a_transfer_follows_it() {
        let a = account(&["--dtmf", "12", "--transfer", "sip:x@y"]).unwrap();
        assert_eq!(
            plan(&a),
            vec![
                (Duration::from_millis(500), Action::Dtmf('1')),
                (Duration::from_millis(750), Action::Dtmf('2')),
                (
                    Duration::from_millis(1000),
                    Action::Transfer("sip:x@y".into())
                ),
            ]
        );
        let a = account(&["--dtmf", "1", "--dtmf-after", "6.5", "--hangup-after", "9"]).unwrap();
        assert_eq!(
            plan(&a),
            vec![
                (Duration::from_millis(6500), Action::Dtmf('1')),
                (Duration::from_secs(9), Action::Hangup),
            ]
        );
        // Without digits the delay changes nothing.
        let a = account(&["--dtmf-after", "30", "--transfer", "sip:x@y"]).unwrap();
        assert_eq!(
            plan(&a),
            vec![(
                Duration::from_millis(500),
                Action::Transfer("sip:x@y".into())
            )]
        );
        for bad in ["-1", "3601", "NaN", "soon"] {
            let flag = format!("--dtmf-after={bad}");
            let e = account(&[&flag]).unwrap_err().to_string();
            assert!(
                e.contains("not a number of seconds from 0 to 3600"),
                "{bad}: {e}"
            );
        }
    }
}
