//! A SIP user agent core for calls (RFC 3261 §8, §12–§15), sans-IO.
//!
//! [`UserAgent`] owns the transactions and dialogs of one SIP identity: it places and receives
//! INVITE calls with SDP offer/answer ([`crate::sdp`]), answers OPTIONS, ends calls with CANCEL
//! and BYE, holds and resumes with re-INVITE (and resolves glare with 491 and a randomised retry,
//! §14.1), carries DTMF as SIP INFO, and transfers with REFER (RFC 3515) with NOTIFY `sipfrag`
//! progress. The owner feeds it parsed messages with their source address and the current
//! `Instant`, sends what [`UserAgent::poll_transmit`] returns, delivers
//! [`UserAgent::poll_event`] to the person (or script), and calls
//! [`UserAgent::handle_timeout`] at [`UserAgent::poll_timeout`].
//!
//! Responses go back to the address the request came from, with `received`/`rport` filled in
//! the top Via (RFC 3581), so a UA behind NAT is reached on the mapping it opened.
//!
//! One user agent may speak over several transports at once (a B2BUA with UDP trunks and TLS
//! agents): [`UserAgent::add_transport`] names each one's Via/Contact address, a message is fed
//! with the transport it came on ([`UserAgent::handle_message_on`]), and every [`Transmit`]
//! says which transport carries it. A call keeps the transport it started on; a new request
//! takes the one its target asks for (`sips:`, `;transport=`) or the configured default.
//!
//! The code follows the RFCs, one file each, all of them `impl UserAgent` over the types here:
//!
//! | file | what |
//! |---|---|
//! | `ua/requests.rs` | incoming requests before a dialog: transaction keys, 400/416/420/501, flood bounds, OPTIONS |
//! | `ua/session.rs` | INVITE sessions and dialogs (RFC 3261 §12–§15, RFC 3891 Replaces), digest retries |
//! | `ua/dialog.rs` | requests inside a dialog: CSeq order, target refresh, BYE, INFO (DTMF) |
//! | `ua/reinvite.rs` | re-INVITE/UPDATE (§14, RFC 3311), hold, glare (491 and retry) |
//! | `ua/timer.rs` | session timers (RFC 4028) |
//! | `ua/prack.rs` | reliable provisional responses (RFC 3262) and early media (RFC 3960) |
//! | `ua/refer.rs` | transfers: REFER (RFC 3515), Replaces (RFC 3891), NOTIFY sipfrag (RFC 3420) |
//! | `ua/output.rs` | what we send, through [`crate::builder::MessageBuilder`], and client transactions |

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::auth::{Challenge, Credentials};
use crate::builder::MessageBuilder;
use crate::message::{split_list, value_uri, Message};
use crate::sdp::{self, Direction, LocalMedia, Negotiated, Sdp};
use crate::transaction::{
    self, ClientInvite, ClientNonInvite, Reliability, ServerInvite, ServerNonInvite, Timers,
};
use crate::wire::WireError;

/// Methods we answer (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE, PRACK";

/// Methods we know (answered, or refused with 405/481); others get 501.
const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "INFO",
    "REFER",
    "NOTIFY",
    "UPDATE",
    "PRACK",
    "REGISTER",
    "SUBSCRIBE",
    "MESSAGE",
    "PUBLISH",
];
/// Most calls one agent may have at once; more INVITEs get 486 Busy Here.
pub const MAX_CALLS: usize = 32;
/// Most server transactions kept at once; beyond it new requests get 503 (flood bound).
pub const MAX_SERVER_TRANSACTIONS: usize = 2048;
/// Most server transactions kept for one source address.
pub const MAX_PER_SOURCE: usize = 256;

/// What a user agent holds at most: a phone's defaults ([`MAX_CALLS`],
/// [`MAX_SERVER_TRANSACTIONS`], [`MAX_PER_SOURCE`]); a B2BUA that carries a contact center's
/// calls sets its own ([`UserAgent::set_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls (legs) at once; more INVITEs get 486, more of ours [`UaError::TooManyCalls`].
    pub calls: usize,
    /// Server transactions at once; beyond it new requests get 503.
    pub server_transactions: usize,
    /// Server transactions for one source address (a trunk's SBC sends them all).
    pub per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            calls: MAX_CALLS,
            server_transactions: MAX_SERVER_TRANSACTIONS,
            per_source: MAX_PER_SOURCE,
        }
    }
}

/// The transport a user agent's messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
    pub fn reliability(self) -> Reliability {
        match self {
            Self::Udp => Reliability::Unreliable,
            _ => Reliability::Reliable,
        }
    }
    pub fn param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    /// The transport a URI asks for: `sips:` is TLS, else its `transport=` parameter;
    /// `None` when it names none (or one we do not know, such as `sctp`). In a header value
    /// (`<sip:…;transport=tcp>;expires=60`) the URI is what the brackets hold; a bare URI's
    /// parameters are all its own.
    pub fn of_uri(uri: &str) -> Option<Self> {
        let uri = match (uri.find('<'), uri.find('>')) {
            (Some(_), Some(_)) => value_uri(uri),
            _ => uri.trim(),
        };
        if uri
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
        {
            return Some(Self::Tls);
        }
        let params = uri.split('?').next()?;
        let after_host = params.rsplit_once('@').map_or(params, |(_, h)| h);
        after_host.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("transport") {
                return None;
            }
            match v.trim().to_ascii_lowercase().as_str() {
                "udp" => Some(Self::Udp),
                "tcp" => Some(Self::Tcp),
                "tls" => Some(Self::Tls),
                _ => None,
            }
        })
    }

    /// Whether messages over it are framed on a stream (TCP, TLS): requests inside a dialog
    /// set up over one go back on the connection it came on.
    pub fn is_stream(self) -> bool {
        self != Self::Udp
    }
}

/// Who the user agent is.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// User part of our address (`alice` in `sip:alice@example.com`).
    pub user: String,
    /// Domain of our address of record.
    pub domain: String,
    pub display_name: Option<String>,
    /// Digest credentials for 401/407 challenges; `None` for a UA without an account.
    pub credentials: Option<Credentials>,
    /// `host:port` we are reachable at (Contact and Via).
    pub contact_host: String,
    pub transport: Transport,
    /// Out-of-dialog requests go here (a loose-routing proxy), when set.
    pub outbound_proxy: Option<Destination>,
    pub timers: Timers,
    pub user_agent: String,
}

impl UaConfig {
    fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }
    fn contact(&self) -> String {
        match self.transport {
            Transport::Udp => format!("<sip:{}@{}>", self.user, self.contact_host),
            t => format!(
                "<sip:{}@{};transport={}>",
                self.user,
                self.contact_host,
                t.param()
            ),
        }
    }
}

/// How we present ourselves inside one call, instead of the transport's defaults: a Direct
/// Routing SBC names its FQDN (never an IP address) in Contact and Via, and adds `X-MS-SBC`
/// to what it sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Face {
    /// `host:port` in our Contact and Via.
    pub contact_host: String,
    /// Header lines (`X-MS-SBC: …`) added to every request and response of ours in the call.
    pub headers: Vec<String>,
}

/// How [`UserAgent::invite_with`] places a call; the default is [`UserAgent::invite`]'s.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The next hop (transport and address) instead of what the target names.
    pub hop: Option<(Transport, SocketAddr)>,
    /// Our address in From instead of the account's (`sip:+15550100@sbc.example;user=phone`).
    pub from: Option<String>,
    pub face: Option<Face>,
    /// Other Request-URIs (bare URIs, parameters kept) to try in turn when the INVITE gets 408, 503 or 504, times out or
    /// cannot be sent (RFC 3263 §4.3: the next server): `sip2`, then `sip3` of a Direct
    /// Routing trunk. Never after any other final answer (603 Decline stays final).
    pub alternates: Vec<String>,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A known socket address (responses go to the request's source).
    Addr(SocketAddr),
    /// A host (name or literal) and port to resolve (RFC 3263); `None` means the default port.
    Host { host: String, port: Option<u16> },
}

impl Destination {
    /// The next hop for a URI: its host and port (`maddr` is not supported).
    pub fn from_uri(uri: &str) -> Option<Self> {
        let (host, port) = uri_host_port(uri)?;
        Some(match (host.parse::<std::net::IpAddr>(), port) {
            (Ok(ip), Some(port)) => Self::Addr(SocketAddr::new(ip, port)),
            // Without a port the transport's default applies (5060, or 5061 for TLS).
            _ => Self::Host { host, port },
        })
    }
}

/// Bytes to send, where, and over which of our transports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Destination,
    pub data: Bytes,
    pub transport: Transport,
}

/// A call's local handle.
pub type CallId = u64;

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up (BYE sent, or CANCEL before an answer).
    Local,
    /// The peer sent BYE.
    RemoteBye,
    /// The caller cancelled before we answered.
    Cancelled,
    /// The peer (or a proxy) refused the call with this final response.
    Rejected { status: u16, reason: String },
    /// We refused the incoming call with this status.
    Declined { status: u16 },
    /// No final response in time (timer B), or no ACK for our 2xx (§13.3.1.4).
    Timeout,
    /// The transport failed.
    TransportError,
    /// The offer/answer failed (no common codec, bad SDP).
    MediaFailed(String),
    /// This call was replaced by another (RFC 3891).
    Replaced,
    /// A request of the call could not be written: a value in it (a URI, a header a caller
    /// or a peer gave) holds a control character or is otherwise not fit for the wire.
    NotSent(String),
}

/// A face's host and lines must be fit for the wire.
fn check_face(face: &Face) -> Result<(), UaError> {
    crate::wire::check_uri(&format!("sip:{}", face.contact_host))
        .map_err(|_| UaError::BadUri(face.contact_host.clone()))?;
    for h in &face.headers {
        crate::wire::check_header_line(h)?;
    }
    Ok(())
}

/// The most `X-` headers of an INVITE an [`UaEvent::IncomingCall`] carries.
pub const MAX_X_HEADERS: usize = 16;
/// The longest `X-` header value an [`UaEvent::IncomingCall`] carries, in bytes.
pub const MAX_X_HEADER_VALUE: usize = 256;

/// What the user agent tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    /// Our out-of-dialog OPTIONS to `target` ([`UserAgent::options`]; the key given to
    /// [`UserAgent::options_as`]) got this final status, or `None` when nothing answered
    /// (timeout, transport error): keep-alives and probes.
    OptionsAnswered { target: String, status: Option<u16> },
    /// Our INVITE got `status` (`None`: it timed out or could not be sent) and goes to the
    /// next of its [`Placement::alternates`], `next`, as a new transaction of the same call.
    FailedOver {
        call: CallId,
        status: Option<u16>,
        next: String,
    },
    /// Someone calls us; answer with [`UserAgent::answer`] or refuse with [`UserAgent::reject`].
    IncomingCall {
        call: CallId,
        from: String,
        to: String,
        /// The call replaces this one of ours (attended transfer, RFC 3891).
        replaces: Option<CallId>,
        /// The INVITE's `X-` headers (name as sent, value), at most [`MAX_X_HEADERS`] of them,
        /// each value at most [`MAX_X_HEADER_VALUE`] bytes (longer ones are left out, not
        /// cut): what a router says about the call it offers (`X-Switchboard-Queue`, …).
        /// Whoever sent the INVITE wrote them: check before showing or acting on them.
        x_headers: Vec<(String, String)>,
    },
    /// A provisional response to our INVITE (180 Ringing, 183 Session Progress, …), with the
    /// early-media negotiation when it carried SDP.
    Progress {
        call: CallId,
        status: u16,
        reason: String,
        early_media: Option<Negotiated>,
    },
    /// The call is up (2xx and ACK exchanged) with this media.
    Established { call: CallId, media: Negotiated },
    /// A re-INVITE or UPDATE changed the media (hold, resume, new address); `by_peer` when
    /// the peer asked for it, not us.
    MediaChanged {
        call: CallId,
        media: Negotiated,
        by_peer: bool,
    },
    /// A hold/resume we asked for was refused; the media stays as it was.
    MediaChangeFailed { call: CallId, status: u16 },
    /// A DTMF digit arrived as SIP INFO.
    Dtmf {
        call: CallId,
        digit: char,
        duration_ms: u32,
    },
    /// The peer asks us to call `target` (REFER received, 202 sent). Place the call and report
    /// its progress with [`UserAgent::notify_transfer`].
    TransferRequested {
        call: CallId,
        target: String,
        replaces: Option<String>,
        referred_by: Option<String>,
    },
    /// Our REFER was accepted (202) or refused (≥ 300), or a NOTIFY reported the transfer
    /// target's status (`final_` when the subscription ended).
    TransferProgress {
        call: CallId,
        status: u16,
        final_: bool,
    },
    /// The call is over.
    Ended { call: CallId, reason: EndReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Outgoing INVITE sent, no final response.
    Calling,
    /// Incoming INVITE, not answered yet.
    Ringing,
    /// 2xx sent, waiting for the ACK.
    Answered,
    Confirmed,
    /// CANCEL sent, waiting for 487 (or a 2xx we then BYE).
    Cancelling,
    Terminated,
}

/// RFC 3261 §12: the dialog's identifiers and route.
#[derive(Debug, Clone)]
struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our name-addr (From of our requests), without tag.
    local_uri: String,
    /// Their name-addr (To of our requests), without tag.
    remote_uri: String,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    remote_target: String,
    route_set: Vec<String>,
    /// We sent the initial INVITE (owner of the Call-ID, for glare timing).
    we_called: bool,
}

/// RFC 3261 §12.1.2: an early dialog made by a 1xx to our INVITE. With a forking proxy (a
/// Teams user's desktop and mobile) each fork has its own, with its own target, route set,
/// RSeq space (RFC 3262 §4) and SDP answer; the one whose 2xx comes is the call's.
#[derive(Debug, Clone)]
struct EarlyDialog {
    tag: String,
    /// The 1xx's Contact, if it had one.
    target: Option<String>,
    route_set: Vec<String>,
    /// RFC 3262, UAC: the highest RSeq we sent PRACK for in this dialog.
    last_rseq: u32,
    /// The answer to our offer this fork gave in a 1xx.
    answer: Option<Negotiated>,
}

/// Early dialogs kept per call; a 1xx from a further fork makes none (and is not PRACKed).
const MAX_FORKS: usize = 16;

#[derive(Debug)]
struct PendingReinvite {
    direction: Direction,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Call {
    id: CallId,
    state: CallState,
    dialog: Dialog,
    /// Our offer or answer for the current session, and its version.
    local_media: LocalMedia,
    session_id: String,
    sdp_version: u64,
    last_local_sdp: Option<Sdp>,
    /// The offer we sent in the pending INVITE / re-INVITE (to read the answer against).
    our_offer: Option<Sdp>,
    /// The incoming offer, until we answer.
    their_offer: Option<Sdp>,
    negotiated: Option<Negotiated>,
    /// Outgoing initial INVITE: what CANCEL and auth retries need.
    invite: Option<OutgoingInvite>,
    /// Incoming initial INVITE: the request and its server transaction key.
    incoming: Option<(Message, SocketAddr, String)>,
    /// A 2xx we retransmit until the ACK comes (§13.3.1.4): bytes, destination, next, interval,
    /// give-up.
    retransmit_2xx: Option<(Bytes, SocketAddr, Instant, Duration, Instant)>,
    /// ACK we sent for the 2xx of our INVITE with this CSeq (resent on 2xx retransmissions).
    last_ack: Option<(u32, Bytes, Destination)>,
    reinvite: Option<PendingReinvite>,
    /// An incoming re-INVITE being answered (its CSeq), waiting for its ACK.
    answering_reinvite: bool,
    /// A hold or resume asked for while another offer was under way (§14.1 allows one INVITE
    /// transaction at a time): the direction it offers, sent when that exchange is over. Only
    /// the last wish is kept.
    queued_hold: Option<Direction>,
    /// The REFER subscription we serve (we are the transferee): its id (the REFER's CSeq).
    refer_sub: Option<u32>,
    auth: Option<(Challenge, u32, bool)>,
    replaces: Option<CallId>,
    /// RFC 4028: the session timer, once agreed.
    timer: Option<SessionTimer>,
    /// Session-Expires we ask for in our INVITE (raised by a 422), 0 for none.
    se_requested: u32,
    retried_422: bool,
    /// The caller's Session-Expires (interval, refresher) and what it supports.
    remote_se: Option<(u32, Option<String>)>,
    peer_supports_timer: bool,
    peer_supports_100rel: bool,
    /// A session-refresh re-INVITE is in flight: its 2xx is no media change.
    refreshing: bool,
    /// UAC: the early dialogs the 1xx to our INVITE made, one per To tag (a forking proxy
    /// gives several), at most [`MAX_FORKS`].
    forks: Vec<EarlyDialog>,
    /// UAC: the To tags of other forks' 2xx we ACKed and ended with BYE (§13.2.2.4), at most
    /// [`MAX_FORKS`].
    stray_forks: Vec<String>,
    /// RFC 3262, UAS: our RSeq counter, and the reliable 1xx retransmitted until its PRACK
    /// (bytes, destination, next, interval, give-up, rseq).
    rseq: u32,
    reliable_1xx: Option<(Bytes, SocketAddr, Instant, Duration, Instant, u32)>,
    /// The SDP answer already went out in a reliable 1xx: the 2xx carries none.
    answered_reliably: bool,
    /// The transport the dialog uses (its Via, Contact and reliability).
    transport: Transport,
    /// Over a stream: the connection the dialog came on (the peer's address there), where
    /// requests inside it go, whatever its Contact says (a phone behind NAT, RFC 5626 §5.3).
    flow: Option<SocketAddr>,
    /// How we present ourselves in this call, when not as the transport says.
    face: Option<Face>,
}

impl Call {
    /// A call in `state` with nothing negotiated yet; the rest is filled by whoever creates it.
    fn new(
        id: CallId,
        state: CallState,
        dialog: Dialog,
        local_media: LocalMedia,
        transport: Transport,
    ) -> Self {
        Self {
            id,
            state,
            dialog,
            local_media,
            session_id: rand::random::<u32>().to_string(),
            sdp_version: 1,
            last_local_sdp: None,
            our_offer: None,
            their_offer: None,
            negotiated: None,
            invite: None,
            incoming: None,
            retransmit_2xx: None,
            last_ack: None,
            reinvite: None,
            answering_reinvite: false,
            queued_hold: None,
            refer_sub: None,
            auth: None,
            replaces: None,
            timer: None,
            se_requested: 0,
            retried_422: false,
            remote_se: None,
            peer_supports_timer: false,
            peer_supports_100rel: false,
            refreshing: false,
            forks: Vec::new(),
            stray_forks: Vec::new(),
            rseq: 0,
            reliable_1xx: None,
            answered_reliably: false,
            transport,
            flow: None,
            face: None,
        }
    }
}

/// Whether a Supported/Require-style header lists `option`.
fn lists_option(msg: &Message, header: &str, option: &str) -> bool {
    msg.headers(header)
        .flat_map(split_list)
        .any(|o| o.eq_ignore_ascii_case(option))
}

#[derive(Debug, Clone)]
struct OutgoingInvite {
    request_uri: String,
    branch: String,
    via: String,
    cseq: u32,
    routes: Vec<String>,
    destination: Destination,
    extra_headers: Vec<String>,
    /// Request-URIs still to try (see [`Placement::alternates`]).
    alternates: std::collections::VecDeque<String>,
}

enum ClientTxKind {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

struct ClientTx {
    kind: ClientTxKind,
    call: Option<CallId>,
    method: String,
    destination: Destination,
    transport: Transport,
    /// For non-2xx ACKs of INVITE: request line, From, To-less pieces.
    invite_parts: Option<(String, String, String, String, u32, Vec<String>)>,
}

enum ServerTxKind {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct ServerTx {
    kind: ServerTxKind,
    source: SocketAddr,
    transport: Transport,
}

/// The user agent core.
pub struct UserAgent {
    cfg: UaConfig,
    next_call: CallId,
    calls: HashMap<CallId, Call>,
    client: HashMap<String, ClientTx>,
    /// Keyed by (branch, method) with ACK counted as INVITE.
    server: HashMap<(String, String), ServerTx>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
    /// Requests we refused for lack of room, counted for the logs.
    refused_overload: u64,
    /// OPTIONS we sent outside dialogs: branch → target, for [`UaEvent::OptionsAnswered`].
    pings: HashMap<String, String>,
    /// RFC 4028: the Session-Expires we ask for (None: no session timer of ours) and the
    /// smallest we accept.
    session_expires: Option<u32>,
    min_se: u32,
    /// Digest realms our credentials may answer: the account's domain and the realm its
    /// registrar challenged with. A challenge for any other realm (a callee's own host, a
    /// transfer target) is not answered, so nobody else collects a digest response of ours.
    trusted_realms: Vec<String>,
    limits: Limits,
    /// Server transactions kept per source address (the per-source share of [`Limits`]).
    from_source: HashMap<std::net::IpAddr, usize>,
    /// Our Via/Contact address on each transport we speak; the configured one first.
    listening: Vec<(Transport, String)>,
    /// The transport of the message being handled.
    arrived_on: Transport,
}

fn random_token(n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    (0..n)
        .map(|_| A[r.random_range(0..A.len())] as char)
        .collect()
}

fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// `host` and optional port of a SIP URI (`sip:user@host:port;params`).
pub fn uri_host_port(uri: &str) -> Option<(String, Option<u16>)> {
    let uri = value_uri(uri);
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))?;
    let rest = rest.split(['?']).next()?;
    let hostpart = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = hostpart.split(';').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        return Some((h.to_owned(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), Some(p.parse().ok()?))),
        None if !hostport.is_empty() => Some((hostport.to_owned(), None)),
        None => None,
    }
}

/// A parameter of a header value after its URI (`;tag=…`).
pub fn header_param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    let after = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v.split_once(';').map(|(_, p)| p).unwrap_or(""),
    };
    after.split(';').find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| val.trim())
    })
}

fn is_sdp(msg: &Message) -> bool {
    msg.header("Content-Type").is_some_and(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/sdp")
    }) && !msg.body().is_empty()
}

/// Whether a peer's Contact URI can be our Request-URI: exactly what our own parser takes as
/// one (no escaped headers after the host, among others — the `ua` fuzz target found a
/// `sip:peer@host?.x` Contact that became the start line of our REFER), with a host.
fn usable_target(uri: &str) -> bool {
    crate::wire::check_uri(uri).is_ok()
        && crate::message::check_request_uri(uri).is_ok()
        && uri_host_port(uri).is_some()
}

/// The Contact of `msg` as a remote target, when it is usable; a bad one is ignored (the
/// target stays what it was).
fn contact_target(msg: &Message) -> Option<String> {
    let t = value_uri(msg.header("Contact")?);
    if usable_target(t) {
        Some(t.to_owned())
    } else {
        tracing::debug!("a Contact that cannot be a Request-URI was ignored");
        None
    }
}

impl UserAgent {
    pub fn new(cfg: UaConfig) -> Self {
        Self {
            trusted_realms: vec![cfg.domain.clone()],
            next_call: 1,
            calls: HashMap::new(),
            client: HashMap::new(),
            server: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            refused_overload: 0,
            pings: HashMap::new(),
            session_expires: Some(1800),
            min_se: 90,
            limits: Limits::default(),
            from_source: HashMap::new(),
            listening: vec![(cfg.transport, cfg.contact_host.clone())],
            arrived_on: cfg.transport,
            cfg,
        }
    }

    /// Also speaks over `transport`, reachable there at `contact_host` (`host:port` for its
    /// Via and Contact); replaces what was said for it before.
    pub fn add_transport(&mut self, transport: Transport, contact_host: String) {
        if transport == self.cfg.transport {
            self.cfg.contact_host = contact_host.clone();
        }
        match self.listening.iter_mut().find(|(t, _)| *t == transport) {
            Some(entry) => entry.1 = contact_host,
            None => self.listening.push((transport, contact_host)),
        }
    }

    /// Whether we speak `transport`.
    pub fn speaks(&self, transport: Transport) -> bool {
        self.listening.iter().any(|(t, _)| *t == transport)
    }

    /// Our configuration as seen over `transport`: its Via/Contact host and reliability (the
    /// default transport's when we do not speak it).
    fn over(&self, transport: Transport) -> UaConfig {
        let mut cfg = self.cfg.clone();
        if let Some((t, host)) = self.listening.iter().find(|(t, _)| *t == transport) {
            cfg.transport = *t;
            cfg.contact_host = host.clone();
        }
        cfg
    }

    /// Our configuration inside call `id`'s dialog.
    fn over_call(&self, id: CallId) -> UaConfig {
        match self.calls.get(&id) {
            Some(c) => {
                let mut cfg = self.over(c.transport);
                if let Some(f) = &c.face {
                    cfg.contact_host = f.contact_host.clone();
                }
                cfg
            }
            None => self.cfg.clone(),
        }
    }

    /// The header lines call `id` adds to what it sends ([`Face::headers`]).
    fn face_headers(&self, id: CallId) -> Vec<String> {
        self.calls
            .get(&id)
            .and_then(|c| c.face.as_ref())
            .map(|f| f.headers.clone())
            .unwrap_or_default()
    }

    /// Presents us as `face` in call `id` from now on (an incoming call from a Direct
    /// Routing proxy, before it is answered).
    pub fn set_face(&mut self, call: CallId, face: Face) -> Result<(), UaError> {
        check_face(&face)?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.face = Some(face);
        }
        Ok(())
    }

    /// The transport a new request to `uri` goes over: the one the URI asks for when we speak
    /// it, else our default (also whenever an outbound proxy takes every request).
    fn transport_for(&self, uri: &str) -> Transport {
        if self.cfg.outbound_proxy.is_some() {
            return self.cfg.transport;
        }
        match Transport::of_uri(uri) {
            Some(t) if self.speaks(t) => t,
            _ => self.cfg.transport,
        }
    }

    /// Forgets server transaction `key`, and its share of its source's count.
    fn drop_server_tx(&mut self, key: &(String, String)) {
        if let Some(tx) = self.server.remove(key) {
            let ip = tx.source.ip();
            if let Some(n) = self.from_source.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.from_source.remove(&ip);
                }
            }
        }
    }

    /// How much the user agent holds at most (calls, server transactions); a phone keeps the
    /// defaults.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// Lets our credentials answer digest challenges for `realm` too: the realm our registrar
    /// challenged with (the account's domain is trusted from the start).
    pub fn trust_realm(&mut self, realm: &str) {
        if !self.realm_is_trusted(realm) {
            self.trusted_realms.push(realm.to_owned());
        }
    }

    fn realm_is_trusted(&self, realm: &str) -> bool {
        self.trusted_realms
            .iter()
            .any(|r| r.eq_ignore_ascii_case(realm))
    }

    /// Updates where we say we are (after a transport learns its public address).
    pub fn set_contact_host(&mut self, host: String) {
        self.add_transport(self.cfg.transport, host);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// Calls in progress.
    pub fn calls(&self) -> impl Iterator<Item = CallId> + '_ {
        self.calls.keys().copied()
    }

    /// Whether requests we sent still wait for their final response (a BYE on a lossy path,
    /// say): a process about to exit lets them finish first.
    pub fn has_pending_requests(&self) -> bool {
        use crate::transaction::State;
        self.client.values().any(|t| {
            let state = match &t.kind {
                ClientTxKind::NonInvite(n) => n.state(),
                ClientTxKind::Invite(i) => i.state(),
            };
            matches!(state, State::Calling | State::Trying | State::Proceeding)
        })
    }

    /// The current media of a call.
    pub fn media(&self, call: CallId) -> Option<&Negotiated> {
        self.calls.get(&call).and_then(|c| c.negotiated.as_ref())
    }

    /// When [`UserAgent::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.client.values().filter_map(|t| match &t.kind {
            ClientTxKind::Invite(i) => i.poll_timeout(),
            ClientTxKind::NonInvite(n) => n.poll_timeout(),
        });
        let stx = self.server.values().filter_map(|t| match &t.kind {
            ServerTxKind::Invite(i) => i.poll_timeout(),
            ServerTxKind::NonInvite(n) => n.poll_timeout(),
        });
        let calls = self.calls.values().flat_map(|c| {
            [
                c.retransmit_2xx
                    .as_ref()
                    .map(|(_, _, next, _, give_up)| (*next).min(*give_up)),
                c.reinvite.as_ref().and_then(|r| r.retry_at),
                c.reliable_1xx.as_ref().map(|x| x.2.min(x.4)),
                c.timer
                    .as_ref()
                    .filter(|_| c.state == CallState::Confirmed)
                    .map(|t| t.at),
            ]
            .into_iter()
            .flatten()
        });
        tx.chain(stx).chain(calls).min()
    }

    // ----- commands -------------------------------------------------------------------------

    /// A parsed message from `source`, over our default transport.
    pub fn handle_message(&mut self, msg: &Message, source: SocketAddr, now: Instant) {
        self.handle_message_on(msg, source, self.cfg.transport, now);
    }

    /// A parsed message from `source` that came over `transport`.
    pub fn handle_message_on(
        &mut self,
        msg: &Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        self.arrived_on = transport;
        if msg.is_request() {
            self.handle_request(msg, source, now);
        } else {
            self.handle_response(msg, now);
        }
    }

    /// The transport could not deliver to `to` (connection refused, TLS failure): the client
    /// transactions sending there fail now instead of at timer B/F (§17.1.4).
    pub fn transport_error(&mut self, to: &Destination, now: Instant) {
        let branches: Vec<String> = self
            .client
            .iter()
            .filter(|(_, t)| &t.destination == to)
            .map(|(b, _)| b.clone())
            .collect();
        for b in branches {
            if let Some(t) = self.client.get_mut(&b) {
                match &mut t.kind {
                    ClientTxKind::Invite(i) => i.transport_error(),
                    ClientTxKind::NonInvite(n) => n.transport_error(),
                }
            }
            self.drain_client(&b, None, now);
        }
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let branches: Vec<String> = self.client.keys().cloned().collect();
        for b in branches {
            if let Some(t) = self.client.get_mut(&b) {
                match &mut t.kind {
                    ClientTxKind::Invite(i) => i.handle_timeout(now),
                    ClientTxKind::NonInvite(n) => n.handle_timeout(now),
                }
            }
            self.drain_client(&b, None, now);
        }
        let keys: Vec<(String, String)> = self.server.keys().cloned().collect();
        for k in keys {
            if let Some(t) = self.server.get_mut(&k) {
                match &mut t.kind {
                    ServerTxKind::Invite(i) => i.handle_timeout(now),
                    ServerTxKind::NonInvite(n) => n.handle_timeout(now),
                }
            }
            self.drain_server(&k);
        }
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.reliable_1xx_timeout(id, now);
            self.retransmit_2xx_timeout(id, now);
            self.reinvite_retry_timeout(id, now);
            self.session_timer_timeout(id, now);
        }
    }
}

/// The standard reason phrase of a status (RFC 3261 §21, RFC 4028, RFC 6665 and the IANA
/// registry); `Refused` for one we never send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        410 => "Gone",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Refused",
    }
}

/// Why a command could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    #[error("{0:?} is not a SIP URI we can call — write it like sip:bob@example.com")]
    BadUri(String),
    #[error("too many calls at once")]
    TooManyCalls,
    #[error("call {0} does not exist (it may have ended)")]
    NoSuchCall(CallId),
    #[error("call {0} cannot be {1} in its current state")]
    WrongState(CallId, &'static str),
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    BadDigit(char),
    #[error("media negotiation failed: {0}")]
    Media(#[from] sdp::SdpError),
    #[error("not sent: {0}")]
    Wire(#[from] crate::wire::WireError),
    #[error("no {} transport is set up to send this over", .0.via_name())]
    NoTransport(Transport),
}

mod session;

pub use output::build_response;
use output::{dialog_headers, in_dialog_target, Refusal, Req};
use prack::{early_dialog, enter_early_dialog, reliable_provisional, Reliable1xx};
use refer::parse_replaces;
use session::uac_route_set;
use timer::{
    parse_session_expires, restart_session_timer, uac_session_timer, uas_session_timer,
    SessionTimer,
};
mod dialog;
mod output;
mod prack;
mod refer;
mod reinvite;
mod requests;
mod timer;

#[cfg(test)]
mod tests;
