//! The call engine: a SIP phone with audio, driven by commands and reporting what happens
//! as a stream of [`PhoneEvent`]s. The headless CLI and the desktop app drive the same
//! engine: the CLI prints the events, the window shows them.
//!
//! [`Phone::start`] binds the SIP transport and the RTP ports, opens the audio (devices, or a
//! WAV file to play and one to record), registers when the account has a server, and returns
//! a cloneable [`Phone`] handle (the commands, as async methods) and a [`PhoneEvents`]
//! receiver. The engine runs in a task of its own; its audio on a thread of its own, with
//! its own 20 ms clock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_agent::call::CallError> {
//! use switchboard_agent::call::{Account, Phone, PhoneEvent, PhoneOptions};
//!
//! let mut options = PhoneOptions::new(Account::new("alice"));
//! options.account.server = Some("sip:pbx.example.com".into());
//! options.account.password = Some("s3cret".into());
//! let (phone, mut events) = Phone::start(options).await?;
//! while let Some(event) = events.recv().await {
//!     if let PhoneEvent::Incoming { call, .. } = event {
//!         phone.answer(call).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! A REFER (the other party asks us to call someone) is followed by the rule of
//! [`refer_allowed`]: from a party of the account's own domain through its registrar, to a
//! target of that domain; anything else is declined, or, with [`ReferPolicy::Ask`], put to
//! the person ([`PhoneEvent::TransferConsent`], then [`Phone::accept_transfer`] or
//! [`Phone::decline_transfer`]).

mod engine;
pub mod media;
mod offer;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use switchboard_media::device::{DeviceChoice, DeviceEvent};
use switchboard_media::session::{Codec, Stats};
use switchboard_media::srtp::Suite;
use switchboard_sip::sdp::Negotiated;
pub use switchboard_sip::ua::{CallId, Transport, UaError};

pub use engine::{Phone, PhoneEvents};
pub use media::{bind_media_ports, parse_codecs, parse_port_range};
pub use offer::{printable, RouterOffer, HEADER_VALUE_MAX};

/// What went wrong, in words that say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// An option cannot be used (an unknown codec, a bad port range, no password …).
    #[error("{0}")]
    Options(String),
    /// A name or address could not be resolved or bound.
    #[error("{0}")]
    Network(String),
    /// The call's audio cannot be carried.
    #[error("{0}")]
    Media(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wav(#[from] switchboard_media::wav::WavError),
    #[error(transparent)]
    Transport(#[from] switchboard_sip::transport::TransportError),
    #[error(transparent)]
    Address(#[from] switchboard_sip::udp::AddressError),
    #[error(transparent)]
    Dns(#[from] switchboard_sip::dns::DnsError),
    /// The SIP user agent refused the command (no such call, a call not yet answered, a bad
    /// URI …).
    #[error(transparent)]
    Sip(#[from] UaError),
    /// The engine has stopped (closed, or its transport failed).
    #[error("the phone has stopped")]
    Stopped,
}

/// A password, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The SIP account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Registrar / proxy: `sip:HOST[:PORT][;transport=udp]`. Without it, calls go directly
    /// to their URI and the phone listens on its bind address.
    pub server: Option<String>,
    /// SIP user name (also the digest user name unless [`Account::auth_user`] is set).
    pub user: String,
    /// The digest user name where the provider gives one apart from the SIP user name.
    pub auth_user: Option<String>,
    /// The display name in From (none: the user name alone).
    pub display_name: Option<String>,
    /// For digest challenges; needed to register.
    pub password: Option<Secret>,
    /// Domain of our address (default: the server's host, or our IP).
    pub domain: Option<String>,
    /// SIP transport (default: the server's `;transport=`, else [`PhoneOptions::transport_hint`],
    /// else UDP).
    pub transport: Option<Transport>,
}

impl Account {
    /// An account of `user` without a server (direct calls).
    pub fn new(user: &str) -> Self {
        Self {
            server: None,
            user: user.to_owned(),
            auth_user: None,
            display_name: None,
            password: None,
            domain: None,
            transport: None,
        }
    }
}

/// SRTP (RFC 3711, keyed by SDES, RFC 4568).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpMode {
    /// Required when the SIP leg is TLS, otherwise plain RTP offered and SRTP accepted.
    #[default]
    Auto,
    /// Always required.
    Sdes,
    /// Plain RTP only (SRTP offers refused).
    Off,
}

/// Whom a REFER is followed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferPolicy {
    /// Only from a party of the account's domain through its registrar, to a target of that
    /// domain ([`refer_allowed`]); others are declined.
    #[default]
    Trusted,
    /// As `Trusted`, but the others are put to the person ([`PhoneEvent::TransferConsent`]).
    Ask,
    /// Every REFER (the person consented beforehand, e.g. `--accept-refer`).
    Always,
}

/// How the calls sound.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// UDP ports for RTP and RTCP (inclusive): an even port for RTP, the next for RTCP.
    pub rtp_ports: (u16, u16),
    /// Codecs to offer and accept, in order of preference.
    pub codecs: Vec<Codec>,
    pub srtp: SrtpMode,
    /// SRTP suites in order of preference.
    pub srtp_suites: Vec<Suite>,
    /// Opus discontinuous transmission.
    pub dtx: bool,
    /// Play this WAV file into each call (instead of a device or silence).
    pub play: Option<PathBuf>,
    /// Record what each call carries from the other side (further calls get -2, -3 …).
    pub record: Option<PathBuf>,
    /// Sound devices to capture from and play on.
    pub devices: Option<DeviceChoice>,
    /// Echo test: each call sends back what it hears.
    pub echo: bool,
    /// Output volume, 0.0–1.0.
    pub volume: f32,
    /// Start with the microphone muted.
    pub muted: bool,
    /// Send DTMF as SIP INFO even when the call agreed RFC 4733 telephone-event.
    pub dtmf_info: bool,
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            rtp_ports: (16384, 32767),
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            srtp: SrtpMode::Auto,
            srtp_suites: Suite::ALL.to_vec(),
            dtx: false,
            play: None,
            record: None,
            devices: None,
            echo: false,
            volume: 1.0,
            muted: false,
            dtmf_info: false,
        }
    }
}

/// Everything [`Phone::start`] needs.
#[derive(Debug, Clone)]
pub struct PhoneOptions {
    pub account: Account,
    /// Local SIP address (default: an ephemeral port on the interface that reaches the
    /// server, or `towards`).
    pub bind: Option<SocketAddr>,
    /// Without a server: the first party we will call (its address and host name), to pick
    /// the interface and to name its address for TLS.
    pub towards: Option<(SocketAddr, String)>,
    /// The transport when neither the account nor its server names one (e.g. the called
    /// URI's `;transport=`).
    pub transport_hint: Option<Transport>,
    /// PEM CA certificate(s) to trust for TLS, besides the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate chain and key to accept TLS connections with.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// DNS server for locating SIP servers (RFC 3263) instead of the system's.
    pub dns_server: Option<SocketAddr>,
    pub media: MediaOptions,
    pub refer: ReferPolicy,
    /// Registration expiry to ask for, in seconds.
    pub expires: u32,
    /// More accounts (user, password) registered on the same server through this phone
    /// (account 1, 2 … of [`PhoneEvent::Registration`]); calls use the first.
    pub more_accounts: Vec<(String, Secret)>,
    /// Keep-alives (CRLF on TCP/TLS flows, OPTIONS over UDP; RFC 5626) this often.
    pub keepalive: Option<std::time::Duration>,
    /// Ring on a sound device while a call rings ([`Phone::ring`]) until it is answered,
    /// refused or over.
    pub ring: Option<RingOptions>,
    /// A call whose other side sends no audio this long while it should (neither side
    /// holding) is over: the phone says so ([`PhoneEvent::MediaError`], kind `no_audio`) and
    /// hangs up, rather than keep a dead call open (a peer or a router gone without a BYE).
    /// `None`: never.
    pub media_timeout: Option<std::time::Duration>,
}

/// How long a call may go without audio from the other side before the phone ends it.
pub const MEDIA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where and how loud incoming calls ring.
#[derive(Debug, Clone, PartialEq)]
pub struct RingOptions {
    /// The device (a name from the device list), or `None` for the system's default —
    /// often the computer's speakers rather than the headset.
    pub device: Option<String>,
    /// 0.0–1.0.
    pub volume: f32,
}

impl PhoneOptions {
    /// Defaults for `account`.
    pub fn new(account: Account) -> Self {
        Self {
            account,
            bind: None,
            towards: None,
            transport_hint: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            dns_server: None,
            media: MediaOptions::default(),
            refer: ReferPolicy::default(),
            expires: 300,
            more_accounts: Vec::new(),
            keepalive: None,
            ring: None,
            media_timeout: Some(MEDIA_TIMEOUT),
        }
    }
}

/// The registration with the account's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RegistrationState {
    Registered {
        /// Seconds the registrar granted.
        expires: u32,
        /// The Contact values the registrar reported for the address of record.
        bindings: Vec<String>,
    },
    /// The registrar said no.
    Refused {
        status: u16,
        reason: String,
    },
    /// No answer from the registrar (retried).
    Unreachable,
    Unregistered,
    /// The REGISTER could not be built or sent.
    NotSent {
        why: String,
    },
}

/// The media a call agreed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct MediaInfo {
    /// `opus`, `PCMU`, `PCMA`.
    pub codec: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// Where our RTP goes (`None` on hold).
    pub remote: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly`, `inactive`.
    pub direction: String,
    /// The telephone-event payload type, when agreed (RFC 4733 DTMF).
    pub telephone_event: Option<u8>,
    /// The SRTP suite, when the call is encrypted.
    pub srtp: Option<String>,
}

impl From<&Negotiated> for MediaInfo {
    fn from(m: &Negotiated) -> Self {
        Self {
            codec: m.codec.encoding.clone(),
            payload_type: m.codec.payload_type,
            clock_rate: m.codec.clock_rate,
            remote: m.remote.map(|a| a.to_string()),
            direction: m.direction.as_str().to_owned(),
            telephone_event: m.telephone_event,
            srtp: m
                .local_crypto
                .as_deref()
                .and_then(|c| c.split_whitespace().nth(1))
                .map(str::to_owned),
        }
    }
}

/// A call's audio figures, at its end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct CallQuality {
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub packets_sent: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub packets_received: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub packets_lost: u64,
    /// Interarrival jitter, ms, one decimal.
    pub jitter_ms: f64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub concealed_ms: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub late: u64,
    /// Malformed, from a wrong source or with a wrong payload type.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub dropped: u64,
    /// Estimated mean opinion score (1–5), two decimals.
    pub mos: Option<f64>,
    /// Round-trip time from RTCP, ms, one decimal.
    pub rtt_ms: Option<f64>,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub rtcp_received: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub srtp_auth_failures: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub srtp_unencrypted: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub fec_recovered: u64,
    pub opus_bitrate: Option<i32>,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub dtx_frames: u64,
}

impl CallQuality {
    pub fn new(stats: &Stats, mos: Option<f64>) -> Self {
        Self {
            packets_sent: stats.packets_sent,
            packets_received: stats.packets_received,
            packets_lost: stats.packets_lost,
            jitter_ms: (stats.jitter_ms * 10.0).round() / 10.0,
            concealed_ms: stats.concealed_ms,
            late: stats.late,
            dropped: stats.malformed + stats.wrong_source + stats.wrong_payload_type,
            mos: mos.map(|m| (m * 100.0).round() / 100.0),
            rtt_ms: stats.rtt_ms.map(|r| (r * 10.0).round() / 10.0),
            rtcp_received: stats.rtcp_received,
            srtp_auth_failures: stats.srtp_auth_failures,
            srtp_unencrypted: stats.srtp_unencrypted,
            fec_recovered: stats.fec_recovered,
            opus_bitrate: stats.opus_bitrate,
            dtx_frames: stats.dtx_frames,
        }
    }
}

/// Why a call ended (the variants of the SIP user agent's reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum EndReason {
    /// We hung up.
    Local,
    /// The other side hung up.
    RemoteBye,
    /// The caller gave up before we answered.
    Cancelled,
    /// Replaced by a transferred call (RFC 3891).
    Replaced,
    /// We declined with this status.
    Declined {
        status: u16,
    },
    /// The other side refused.
    Rejected {
        status: u16,
        phrase: String,
    },
    /// No answer from the other side.
    Timeout,
    /// The other side could not be reached (connection refused, TLS failure).
    TransportError,
    MediaFailed {
        detail: String,
    },
    NotSent {
        detail: String,
    },
}

impl From<&switchboard_sip::ua::EndReason> for EndReason {
    fn from(r: &switchboard_sip::ua::EndReason) -> Self {
        use switchboard_sip::ua::EndReason as E;
        match r {
            E::Local => Self::Local,
            E::RemoteBye => Self::RemoteBye,
            E::Cancelled => Self::Cancelled,
            E::Replaced => Self::Replaced,
            E::Declined { status } => Self::Declined { status: *status },
            E::Rejected { status, reason } => Self::Rejected {
                status: *status,
                phrase: reason.clone(),
            },
            E::Timeout => Self::Timeout,
            E::TransportError => Self::TransportError,
            E::MediaFailed(w) => Self::MediaFailed { detail: w.clone() },
            E::NotSent(w) => Self::NotSent { detail: w.clone() },
        }
    }
}

/// How a DTMF digit travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DtmfVia {
    /// In the media path (RFC 4733 telephone-event).
    Rfc4733,
    /// SIP INFO.
    Info,
}

impl DtmfVia {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rfc4733 => "rfc4733",
            Self::Info => "info",
        }
    }
}

/// A sound device's news.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceReport {
    /// A stream is open on this device.
    Opened {
        direction: String,
        name: String,
        rate: u32,
    },
    /// The chosen device cannot be used: `name` is used instead.
    Fallback {
        direction: String,
        wanted: String,
        name: String,
        reason: String,
    },
    /// It stopped working (unplugged): switching to the default.
    Lost {
        direction: String,
        name: String,
        reason: String,
    },
    /// No device can be opened in this direction.
    Unavailable { direction: String, reason: String },
}

impl From<&DeviceEvent> for DeviceReport {
    fn from(e: &DeviceEvent) -> Self {
        match e {
            DeviceEvent::Opened { kind, name, rate } => Self::Opened {
                direction: kind.as_str().into(),
                name: name.clone(),
                rate: *rate,
            },
            DeviceEvent::Fallback {
                kind,
                wanted,
                using,
                reason,
            } => Self::Fallback {
                direction: kind.as_str().into(),
                wanted: wanted.clone(),
                name: using.clone(),
                reason: reason.clone(),
            },
            DeviceEvent::Lost { kind, name, reason } => Self::Lost {
                direction: kind.as_str().into(),
                name: name.clone(),
                reason: reason.clone(),
            },
            DeviceEvent::Unavailable { kind, reason } => Self::Unavailable {
                direction: kind.as_str().into(),
                reason: reason.clone(),
            },
        }
    }
}

/// Why a REFER is not followed without the person's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum ReferRefusal {
    /// The calls do not go through a registrar.
    NoRegistrar,
    /// The other party of the call is not of the account's domain.
    PeerOutside { peer: String, domain: String },
    /// The REFER's Referred-By is not of the account's domain.
    ReferredByOutside { referred_by: String, domain: String },
    /// The target is not of the account's domain.
    TargetOutside { target: String, domain: String },
    /// The person said no.
    Declined,
}

impl std::fmt::Display for ReferRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRegistrar => write!(f, "the call does not go through a registrar"),
            Self::PeerOutside { peer, domain } => write!(
                f,
                "the other party ({peer}) is not of the account's domain {domain}"
            ),
            Self::ReferredByOutside {
                referred_by,
                domain,
            } => write!(
                f,
                "Referred-By ({referred_by}) is not of the account's domain {domain}"
            ),
            Self::TargetOutside { target, domain } => write!(
                f,
                "the target ({target}) is not of the account's domain {domain}"
            ),
            Self::Declined => write!(f, "declined"),
        }
    }
}

/// The host of a SIP URI or name-addr (`"Bob" <sip:bob@pbx.example.com;x=y>` →
/// `pbx.example.com`), lower case.
fn uri_domain(v: &str) -> Option<String> {
    switchboard_sip::ua::uri_host_port(v).map(|(h, _)| h.to_ascii_lowercase())
}

/// Whether a REFER on a call may be followed without asking: only when the account has a
/// registrar and the other party, the Referred-By (when given) and the target are all of
/// the account's domain. A stranger could otherwise have us call any number through the
/// account (toll fraud), or a host of theirs that collects our digest.
pub fn refer_allowed(
    registrar: bool,
    domain: &str,
    peer: Option<&str>,
    referred_by: Option<&str>,
    target: &str,
) -> Result<(), ReferRefusal> {
    if !registrar {
        return Err(ReferRefusal::NoRegistrar);
    }
    let ours = domain.to_ascii_lowercase();
    let from_us = |v: Option<&str>| v.and_then(uri_domain).is_some_and(|d| d == ours);
    if !from_us(peer) {
        return Err(ReferRefusal::PeerOutside {
            peer: peer.unwrap_or("unknown").to_owned(),
            domain: domain.to_owned(),
        });
    }
    if referred_by.is_some() && !from_us(referred_by) {
        return Err(ReferRefusal::ReferredByOutside {
            referred_by: referred_by.unwrap_or_default().to_owned(),
            domain: domain.to_owned(),
        });
    }
    if !from_us(Some(target)) {
        return Err(ReferRefusal::TargetOutside {
            target: target.to_owned(),
            domain: domain.to_owned(),
        });
    }
    Ok(())
}

/// What the phone reports. Serialised as `{"event": "incoming", …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PhoneEvent {
    /// The registration of an account changed (`account` 0 is [`PhoneOptions::account`],
    /// then [`PhoneOptions::more_accounts`] in order).
    Registration {
        account: usize,
        /// Its address of record.
        aor: String,
        #[serde(flatten)]
        state: RegistrationState,
    },
    /// A call arrives. Ring it ([`Phone::ring`]), answer or reject it.
    Incoming {
        call: CallId,
        from: String,
        to: String,
        /// Our call it replaces (RFC 3891): we are the target of an attended transfer.
        replaces: Option<CallId>,
        /// What a router said about it (queue, caller, choices …).
        offer: RouterOffer,
    },
    /// The ring started on its device (`None`: the default) — a call is ringing.
    Ringing { device: Option<String> },
    /// News of the ringing device.
    RingDevice(DeviceReport),
    /// A call we placed ([`Phone::dial`]) is on its way.
    Calling { call: CallId, to: String },
    /// A provisional answer to a call we placed (180 Ringing, 183 with early media).
    Progress {
        call: CallId,
        status: u16,
        phrase: String,
        early_media: Option<MediaInfo>,
    },
    /// The call is up.
    Established {
        call: CallId,
        media: MediaInfo,
        offer: Option<RouterOffer>,
    },
    /// Hold, resume or a new address, agreed.
    MediaChanged { call: CallId, media: MediaInfo },
    /// The peer refused a media change (hold, resume) with this status.
    MediaChangeFailed { call: CallId, status: u16 },
    /// The call's audio does not work (the call goes on): `kind` is `setup`, `srtp_setup`,
    /// `srtp_auth` …
    MediaError {
        call: CallId,
        kind: String,
        error: String,
    },
    /// A digit from the other side.
    Dtmf {
        call: CallId,
        digit: char,
        via: DtmfVia,
        duration_ms: Option<u32>,
    },
    /// A digit we sent.
    DtmfSent {
        call: CallId,
        digit: char,
        via: DtmfVia,
    },
    /// A consultation call placed for an attended transfer of `for_call`.
    Consulting {
        call: CallId,
        to: String,
        for_call: CallId,
    },
    /// The phone's conference (a three-way call mixed here): its calls now, each hearing the
    /// others and us.
    Conference { calls: Vec<CallId> },
    /// We asked the other party of `call` to call `to` (REFER); with `consultation`, to
    /// replace that call (attended transfer).
    Transferring {
        call: CallId,
        to: String,
        consultation: Option<CallId>,
    },
    /// Connecting the call to the consulted party failed.
    AttendedTransferFailed {
        call: CallId,
        consultation: CallId,
        error: String,
    },
    /// Our REFER's progress (202, then the target's status; `final_` when it is over).
    TransferProgress {
        call: CallId,
        status: u16,
        #[serde(rename = "final")]
        final_: bool,
    },
    /// The other party asks us to call `target` (REFER received).
    TransferRequested {
        call: CallId,
        target: String,
        replaces: Option<String>,
        referred_by: Option<String>,
    },
    /// The REFER is not of a party we trust: [`Phone::accept_transfer`] or
    /// [`Phone::decline_transfer`].
    TransferConsent {
        call: CallId,
        target: String,
        refusal: ReferRefusal,
    },
    /// The REFER was declined.
    TransferRefused {
        call: CallId,
        target: String,
        refusal: ReferRefusal,
    },
    /// Following a REFER on `call`: `new_call` is calling `target`.
    TransferCalling {
        call: CallId,
        new_call: CallId,
        target: String,
    },
    /// Following a REFER: the new call to `target` could not be placed.
    TransferFailed {
        call: CallId,
        target: String,
        error: String,
    },
    /// A sound device's news.
    Device(DeviceReport),
    /// The call is over; its audio figures.
    Ended {
        call: CallId,
        #[serde(flatten)]
        reason: EndReason,
        quality: CallQuality,
        offer: Option<RouterOffer>,
    },
    /// The engine stopped: its transport failed (`error`), or it was closed.
    Stopped { error: Option<String> },
}

#[cfg(test)]
mod tests;
