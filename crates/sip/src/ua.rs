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

/// The transport a user agent's messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Bytes to send and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Destination,
    pub data: Bytes,
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

/// What the user agent tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    /// Our out-of-dialog OPTIONS to `target` ([`UserAgent::options`]) got this final status,
    /// or `None` when nothing answered (timeout, transport error): keep-alives and probes.
    OptionsAnswered { target: String, status: Option<u16> },
    /// Someone calls us; answer with [`UserAgent::answer`] or refuse with [`UserAgent::reject`].
    IncomingCall {
        call: CallId,
        from: String,
        to: String,
        /// The call replaces this one of ours (attended transfer, RFC 3891).
        replaces: Option<CallId>,
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
    /// RFC 3262, UAC: the highest RSeq we sent PRACK for.
    last_rseq: u32,
    /// RFC 3262, UAS: our RSeq counter, and the reliable 1xx retransmitted until its PRACK
    /// (bytes, destination, next, interval, give-up, rseq).
    rseq: u32,
    reliable_1xx: Option<(Bytes, SocketAddr, Instant, Duration, Instant, u32)>,
    /// The SDP answer already went out in a reliable 1xx: the 2xx carries none.
    answered_reliably: bool,
}

/// RFC 4028 session timer of one call.
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    interval: u32,
    we_refresh: bool,
    /// When to refresh (refresher) or give up (the other side).
    at: Instant,
}

impl SessionTimer {
    fn new(interval: u32, we_refresh: bool, now: Instant) -> Self {
        let i = u64::from(interval.max(1));
        let at = if we_refresh {
            now + Duration::from_secs(i / 2)
        } else {
            // §10: BYE at expiry minus min(32, SE/3) when nobody refreshed.
            now + Duration::from_secs(i - (i / 3).min(32))
        };
        Self {
            interval,
            we_refresh,
            at,
        }
    }
}

/// `Session-Expires: 1800;refresher=uac` (RFC 4028 §4).
fn parse_session_expires(msg: &Message) -> Option<(u32, Option<String>)> {
    let v = msg.header("Session-Expires")?;
    let mut parts = v.split(';');
    let n = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((n, refresher))
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

/// The name-addr of a From/To value without its `tag` parameter.
fn without_tag(v: &str) -> String {
    let (head, params) = match v.rfind('>') {
        Some(i) => (&v[..=i], &v[i + 1..]),
        None => match v.split_once(';') {
            Some((h, p)) => (h, p),
            None => (v, ""),
        },
    };
    let mut out = head.trim().to_owned();
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if !p.to_ascii_lowercase().starts_with("tag=") {
            out.push(';');
            out.push_str(p);
        }
    }
    out
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

/// DTMF from an INFO body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (just the digit).
fn parse_info_dtmf(msg: &Message) -> Option<(char, u32)> {
    let ct = msg.header("Content-Type")?.split(';').next()?.trim();
    let body = std::str::from_utf8(msg.body()).ok()?;
    let valid = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
    if ct.eq_ignore_ascii_case("application/dtmf-relay") {
        let mut digit = None;
        let mut duration = 250;
        for line in body.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "signal" => {
                    let v = v.trim();
                    digit = match v {
                        "10" => Some('*'),
                        "11" => Some('#'),
                        _ => v
                            .chars()
                            .next()
                            .map(|c| c.to_ascii_uppercase())
                            .filter(|&c| valid(c)),
                    };
                }
                "duration" => duration = v.trim().parse().unwrap_or(250),
                _ => {}
            }
        }
        return digit.map(|d| (d, duration));
    }
    if ct.eq_ignore_ascii_case("application/dtmf") {
        let d = body.trim().chars().next()?.to_ascii_uppercase();
        return valid(d).then_some((d, 250));
    }
    None
}

/// Status code of a `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines().next()?.split_whitespace().nth(1)?.parse().ok()
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

/// RFC 3891 Replaces: `call-id;to-tag=…;from-tag=…`.
fn parse_replaces(v: &str) -> Option<(String, String, String)> {
    let mut parts = v.split(';');
    let call_id = parts.next()?.trim().to_owned();
    let (mut to, mut from) = (None, None);
    for p in parts {
        if let Some((k, val)) = p.split_once('=') {
            match k.trim().to_ascii_lowercase().as_str() {
                "to-tag" => to = Some(val.trim().to_owned()),
                "from-tag" => from = Some(val.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some((call_id, to?, from?))
}

/// Percent-decoding for header values carried in a Refer-To URI's `?Replaces=` (RFC 3261 §19.1.1).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape_header_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "-_.!~*'()[]/:+$".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
            }
        }
    }
    out
}

impl UserAgent {
    pub fn new(cfg: UaConfig) -> Self {
        Self {
            trusted_realms: vec![cfg.domain.clone()],
            cfg,
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
        }
    }

    /// RFC 4028 session timer: the interval we ask for (at least 90 s), or `None` to ask for
    /// none (we still honour a peer's).
    pub fn set_session_timer(&mut self, expires: Option<u32>) {
        self.session_expires = expires.map(|e| e.max(self.min_se));
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
        self.cfg.contact_host = host;
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

    /// Calls `target` (a `sip:` URI) offering `media`. `extra_headers` are added verbatim
    /// (e.g. `Replaces: …`, `Referred-By: …`).
    pub fn invite(
        &mut self,
        target: &str,
        media: LocalMedia,
        extra_headers: Vec<String>,
        now: Instant,
    ) -> Result<CallId, UaError> {
        let target_uri = value_uri(target).to_owned();
        crate::wire::check_uri(&target_uri).map_err(|_| UaError::BadUri(target.into()))?;
        for h in &extra_headers {
            crate::wire::check_header_line(h)?;
        }
        let destination = match &self.cfg.outbound_proxy {
            Some(p) => p.clone(),
            None => {
                Destination::from_uri(&target_uri).ok_or_else(|| UaError::BadUri(target.into()))?
            }
        };
        if self.calls.len() >= MAX_CALLS {
            return Err(UaError::TooManyCalls);
        }
        let id = self.next_call;
        self.next_call += 1;
        let local_uri = match &self.cfg.display_name {
            Some(d) => format!("\"{}\" <{}>", d.replace('"', ""), self.cfg.aor()),
            None => format!("<{}>", self.cfg.aor()),
        };
        let dialog = Dialog {
            call_id: format!("{}@switchboard", random_token(20)),
            local_tag: random_token(10),
            remote_tag: None,
            local_uri,
            remote_uri: format!("<{target_uri}>"),
            local_cseq: 0,
            remote_cseq: None,
            remote_target: target_uri.clone(),
            route_set: Vec::new(),
            we_called: true,
        };
        let session_id = rand::random::<u32>().to_string();
        let offer = sdp::offer(&media, &session_id, 1);
        let call = Call {
            id,
            state: CallState::Calling,
            dialog,
            local_media: media,
            session_id,
            sdp_version: 1,
            last_local_sdp: Some(offer.clone()),
            our_offer: Some(offer),
            their_offer: None,
            negotiated: None,
            invite: Some(OutgoingInvite {
                request_uri: target_uri,
                branch: String::new(),
                via: String::new(),
                cseq: 0,
                routes: Vec::new(),
                destination,
                extra_headers,
            }),
            incoming: None,
            retransmit_2xx: None,
            last_ack: None,
            reinvite: None,
            answering_reinvite: false,
            refer_sub: None,
            auth: None,
            replaces: None,
            timer: None,
            se_requested: self.session_expires.unwrap_or(0),
            retried_422: false,
            remote_se: None,
            peer_supports_timer: false,
            peer_supports_100rel: false,
            refreshing: false,
            last_rseq: 0,
            rseq: 0,
            reliable_1xx: None,
            answered_reliably: false,
        };
        self.calls.insert(id, call);
        self.send_initial_invite(id, now);
        Ok(id)
    }

    /// Sends 180 Ringing for an incoming call.
    pub fn ring(&mut self, call: CallId, now: Instant) {
        self.respond_incoming(call, 180, "Ringing", None, now);
    }

    /// Answers an incoming call with `media` (200 OK with our SDP answer).
    pub fn answer(&mut self, call: CallId, media: LocalMedia, now: Instant) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Ringing {
            return Err(UaError::WrongState(call, "answered"));
        }
        if c.negotiated.is_some() && c.last_local_sdp.is_some() {
            // The answer went out in a 183 already: the 2xx repeats it (unreliable 183) or
            // carries none (reliable 183, RFC 3262 §5).
            let body = (!c.answered_reliably)
                .then(|| c.last_local_sdp.as_ref().map(|s| s.to_bytes()))
                .flatten();
            self.respond_incoming(call, 200, "OK", body, now);
            return Ok(());
        }
        c.local_media = media;
        let offer = c.their_offer.clone();
        let (body, neg) = match offer {
            Some(o) => match sdp::answer(&o, &c.local_media, &c.session_id, c.sdp_version) {
                Ok((a, n)) => (a, Some(n)),
                Err(e) => {
                    let why = e.to_string();
                    self.reject(call, 488, now);
                    self.end_call(call, EndReason::MediaFailed(why));
                    return Err(UaError::Media(e));
                }
            },
            // Late offer: we offer in the 2xx, the ACK carries the answer.
            None => (
                sdp::offer(&c.local_media, &c.session_id, c.sdp_version),
                None,
            ),
        };
        if neg.is_none() {
            c.our_offer = Some(body.clone());
        }
        c.negotiated = neg;
        c.last_local_sdp = Some(body.clone());
        self.respond_incoming(call, 200, "OK", Some(body.to_bytes()), now);
        Ok(())
    }

    /// Refuses an incoming call (486 Busy Here, 603 Decline, …).
    pub fn reject(&mut self, call: CallId, status: u16, now: Instant) {
        let reason = reason_phrase(status);
        if self.calls.get(&call).map(|c| c.state) == Some(CallState::Ringing) {
            self.respond_incoming(call, status, reason, None, now);
            self.end_call(call, EndReason::Declined { status });
        }
    }

    /// Hangs up: CANCEL before an answer, BYE after, a refusal for an unanswered incoming call.
    pub fn hangup(&mut self, call: CallId, now: Instant) {
        let Some(state) = self.calls.get(&call).map(|c| c.state) else {
            return;
        };
        match state {
            CallState::Calling => self.cancel(call, now),
            CallState::Ringing => self.reject(call, 603, now),
            CallState::Answered | CallState::Confirmed => {
                self.send_bye(call, now);
                self.end_call(call, EndReason::Local);
            }
            CallState::Cancelling | CallState::Terminated => {}
        }
    }

    /// Puts the peer on hold (re-INVITE with `sendonly`) or resumes (`sendrecv`).
    pub fn hold(&mut self, call: CallId, on_hold: bool, now: Instant) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Confirmed {
            return Err(UaError::WrongState(call, "put on hold"));
        }
        let direction = if on_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        if c.reinvite.is_some() || c.answering_reinvite {
            return Err(UaError::Busy(call));
        }
        c.reinvite = Some(PendingReinvite {
            direction,
            retry_at: None,
        });
        self.send_reinvite(call, now);
        Ok(())
    }

    /// Sends a DTMF digit as SIP INFO (`application/dtmf-relay`).
    pub fn send_dtmf_info(
        &mut self,
        call: CallId,
        digit: char,
        duration_ms: u32,
        now: Instant,
    ) -> Result<(), UaError> {
        let d = digit.to_ascii_uppercase();
        if !(d.is_ascii_digit() || matches!(d, '*' | '#' | 'A'..='D')) {
            return Err(UaError::BadDigit(digit));
        }
        self.require_confirmed(call)?;
        let body = format!("Signal={d}\r\nDuration={duration_ms}\r\n");
        self.send_in_dialog(
            call,
            "INFO",
            Vec::new(),
            Some(("application/dtmf-relay", Bytes::from(body))),
            now,
        )?;
        Ok(())
    }

    /// Blind transfer: asks the peer to call `target` (REFER, RFC 3515). With `replaces`
    /// (another of our calls, to the target) it is an attended transfer (RFC 3891).
    pub fn transfer(
        &mut self,
        call: CallId,
        target: &str,
        replaces: Option<CallId>,
        now: Instant,
    ) -> Result<(), UaError> {
        self.require_confirmed(call)?;
        let mut refer_to = value_uri(target).to_owned();
        if let Some(other) = replaces {
            let o = self.calls.get(&other).ok_or(UaError::NoSuchCall(other))?;
            let d = &o.dialog;
            let remote_tag = d.remote_tag.clone().unwrap_or_default();
            // The target's view: its to-tag is our remote tag of that dialog.
            let r = format!(
                "{};to-tag={};from-tag={}",
                d.call_id, remote_tag, d.local_tag
            );
            refer_to = format!(
                "{}?Replaces={}",
                o.dialog.remote_target,
                escape_header_value(&r)
            );
        }
        let headers = vec![
            ("Refer-To", format!("<{refer_to}>")),
            ("Referred-By", format!("<{}>", self.cfg.aor())),
        ];
        self.send_in_dialog(call, "REFER", headers, None, now)?;
        Ok(())
    }

    /// Reports the progress of a transfer we were asked to make (NOTIFY with `sipfrag`):
    /// 100 while trying, then the final status of the new call.
    pub fn notify_transfer(&mut self, call: CallId, status: u16, reason: &str, now: Instant) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(id) = c.refer_sub else { return };
        let final_ = status >= 200;
        let state = if final_ {
            "terminated;reason=noresource".to_owned()
        } else {
            "active;expires=60".to_owned()
        };
        let headers = vec![
            ("Event", format!("refer;id={id}")),
            ("Subscription-State", state),
        ];
        // The sipfrag is a status line (RFC 3420): the same checks as our own responses'.
        if !(100..=699).contains(&status) || !crate::wire::is_clean_value(reason) {
            tracing::warn!(
                call,
                status,
                "NOTIFY of a transfer's progress not sent: bad status line"
            );
            return;
        }
        let body = Bytes::from(format!("SIP/2.0 {status} {reason}\r\n"));
        let _ = self.send_in_dialog(
            call,
            "NOTIFY",
            headers,
            Some(("message/sipfrag;version=2.0", body)),
            now,
        );
        if final_ {
            if let Some(c) = self.calls.get_mut(&call) {
                c.refer_sub = None;
            }
        }
    }

    /// Sends an out-of-dialog OPTIONS (a keep-alive or reachability probe).
    pub fn options(&mut self, target: &str, now: Instant) -> Result<(), UaError> {
        let uri = value_uri(target).to_owned();
        let destination = match &self.cfg.outbound_proxy {
            Some(p) => p.clone(),
            None => Destination::from_uri(&uri).ok_or_else(|| UaError::BadUri(target.into()))?,
        };
        let branch = new_branch();
        let mut m = MessageBuilder::request("OPTIONS", &uri);
        m.via(
            self.cfg.transport.via_name(),
            &self.cfg.contact_host,
            &branch,
        )
        .header("Max-Forwards", 70)
        .header(
            "From",
            format_args!("<{}>;tag={}", self.cfg.aor(), random_token(8)),
        )
        .header("To", format_args!("<{uri}>"))
        .header("Call-ID", format_args!("{}@switchboard", random_token(16)))
        .cseq(1, "OPTIONS")
        .header("Accept", "application/sdp")
        .header("User-Agent", &self.cfg.user_agent);
        let req = m.build()?;
        let tx =
            ClientNonInvite::start(req, self.cfg.transport.reliability(), self.cfg.timers, now);
        self.pings.insert(branch.clone(), uri.clone());
        self.client.insert(
            branch.clone(),
            ClientTx {
                kind: ClientTxKind::NonInvite(tx),
                call: None,
                method: "OPTIONS".into(),
                destination,
                invite_parts: None,
            },
        );
        self.drain_client(&branch, None, now);
        Ok(())
    }

    fn require_confirmed(&self, call: CallId) -> Result<(), UaError> {
        match self.calls.get(&call).map(|c| c.state) {
            Some(CallState::Confirmed) | Some(CallState::Answered) => Ok(()),
            Some(_) => Err(UaError::WrongState(call, "used before it is answered")),
            None => Err(UaError::NoSuchCall(call)),
        }
    }

    // ----- input ----------------------------------------------------------------------------

    /// A parsed message from `source`.
    pub fn handle_message(&mut self, msg: &Message, source: SocketAddr, now: Instant) {
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
            let mut give_up = false;
            let mut resend = None;
            let mut retry_reinvite = false;
            let mut refresh = false;
            let mut expired = false;
            let mut no_prack = false;
            if let Some(c) = self.calls.get_mut(&id) {
                // RFC 3262 §3: a reliable provisional goes again (T1 doubling) until PRACKed.
                if let Some((bytes, to, next, interval, until, _)) = c.reliable_1xx.as_mut() {
                    if *until <= now {
                        no_prack = true;
                    } else if *next <= now {
                        resend_1xx(&mut self.transmits, bytes, *to);
                        *interval *= 2;
                        *next = now + *interval;
                    }
                }
                if no_prack {
                    c.reliable_1xx = None;
                }
                // RFC 4028 §10: refresh at half the interval, or end an unrefreshed session.
                if let Some(t) = c.timer.as_mut() {
                    if t.at <= now && c.state == CallState::Confirmed {
                        if t.we_refresh {
                            refresh = !c.refreshing && c.reinvite.is_none();
                            // Until the refresh's answer resets it: try again in 10 s.
                            t.at = now + Duration::from_secs(10);
                        } else {
                            expired = true;
                        }
                    }
                }
                if let Some((bytes, to, next, interval, until)) = c.retransmit_2xx.as_mut() {
                    if *until <= now {
                        give_up = true;
                    } else if *next <= now {
                        resend = Some((bytes.clone(), *to));
                        *interval = (*interval * 2).min(self.cfg.timers.t2);
                        *next = now + *interval;
                    }
                }
                if let Some(r) = c.reinvite.as_mut() {
                    if r.retry_at.is_some_and(|t| t <= now) {
                        r.retry_at = None;
                        retry_reinvite = true;
                    }
                }
            }
            if let Some((data, to)) = resend {
                self.transmits.push_back(Transmit {
                    to: Destination::Addr(to),
                    data,
                });
            }
            if give_up {
                // §13.3.1.4: no ACK in 64*T1 — the UAS ends the dialog with BYE.
                if let Some(c) = self.calls.get_mut(&id) {
                    c.retransmit_2xx = None;
                    c.answering_reinvite = false;
                    c.state = CallState::Confirmed;
                }
                tracing::warn!(
                    call = id,
                    "no ACK for our 2xx within 64*T1; ending the call"
                );
                self.send_bye(id, now);
                self.end_call(id, EndReason::Timeout);
            }
            if retry_reinvite {
                self.send_reinvite(id, now);
            }
            if no_prack {
                tracing::warn!(call = id, "no PRACK for our reliable 183 within 64*T1");
                self.respond_incoming(id, 504, "Server Time-out", None, now);
                self.end_call(id, EndReason::Timeout);
            }
            if refresh {
                self.refresh_session(id, now);
            }
            if expired {
                tracing::info!(
                    call = id,
                    "the session timer expired without a refresh; ending the call"
                );
                self.send_bye(id, now);
                self.end_call(id, EndReason::Timeout);
            }
        }
    }

    /// RFC 4028 §7.4/§9: a re-INVITE with the unchanged session description.
    fn refresh_session(&mut self, id: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.timer else { return };
        let Some(sdp) = c.last_local_sdp.clone() else {
            return;
        };
        c.refreshing = true;
        c.our_offer = Some(sdp.clone());
        let headers = vec![
            ("Contact", self.cfg.contact()),
            ("Supported", "timer".to_owned()),
            ("Session-Expires", format!("{};refresher=uac", t.interval)),
        ];
        let _ = self.send_in_dialog(
            id,
            "INVITE",
            headers,
            Some(("application/sdp", sdp.to_bytes())),
            now,
        );
    }

    fn handle_request(&mut self, msg: &Message, source: SocketAddr, now: Instant) {
        let Some(method) = msg.method() else { return };
        let Some((cseq, cseq_method)) = msg.cseq() else {
            self.stateless(msg, source, 400, "Bad CSeq", &[], None);
            return;
        };
        // An RFC 2543 peer sends no magic-cookie branch: its transaction is identified by the
        // request's own fields (§17.2.3; RFC 4475 §3.4.1), the same for its ACK.
        let branch = match msg.top_via_branch() {
            Some(b) if b.starts_with("z9hG4bK") => b.to_owned(),
            b => format!(
                "rfc2543|{}|{}|{}|{}|{}",
                msg.call_id().unwrap_or(""),
                cseq,
                msg.header("From")
                    .and_then(|f| header_param(f, "tag"))
                    .unwrap_or(""),
                msg.header("Via")
                    .and_then(|v| split_list(v).into_iter().next())
                    .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
                    .unwrap_or_default(),
                b.unwrap_or("")
            ),
        };
        let known = KNOWN_METHODS.contains(&method.as_str());
        // An unknown method is a 501 whatever its CSeq says (RFC 4475 §3.1.2.18).
        if !known && method != "ACK" {
            let allow = format!("Allow: {ALLOW}");
            self.stateless(msg, source, 501, "Not Implemented", &[&allow], None);
            return;
        }
        if cseq_method != method {
            self.stateless(msg, source, 400, "CSeq method does not match", &[], None);
            return;
        }
        // We speak sip:, sips: and tel: (§8.2.2.1; RFC 4475 §3.3.2, §3.3.3).
        let scheme = msg
            .request_uri()
            .and_then(|u| u.split_once(':').map(|(s, _)| s.to_ascii_lowercase()))
            .unwrap_or_default();
        if !["sip", "sips", "tel"].contains(&scheme.as_str()) && method != "ACK" {
            self.stateless(msg, source, 416, "Unsupported URI Scheme", &[], None);
            return;
        }
        // ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx, to the dialog.
        if method == "ACK" {
            let key = (branch.clone(), "INVITE".to_owned());
            if let Some(t) = self.server.get_mut(&key) {
                if let ServerTxKind::Invite(i) = &mut t.kind {
                    if i.state() == transaction::State::Completed {
                        i.on_ack(now);
                        self.drain_server(&key);
                        return;
                    }
                }
            }
            self.handle_ack(msg, now);
            return;
        }
        // A retransmission of a request we are already handling.
        let key = (branch.clone(), method.clone());
        if let Some(t) = self.server.get_mut(&key) {
            match &mut t.kind {
                ServerTxKind::Invite(i) => i.on_request(),
                ServerTxKind::NonInvite(n) => n.on_request(),
            }
            self.drain_server(&key);
            return;
        }
        // Bounded memory under a flood: a global cap, and a per-source share of it so one
        // sender cannot starve the others.
        let from_source = self
            .server
            .values()
            .filter(|t| t.source.ip() == source.ip())
            .count();
        if self.server.len() >= MAX_SERVER_TRANSACTIONS || from_source >= MAX_PER_SOURCE {
            self.refused_overload += 1;
            if self.refused_overload.is_power_of_two() {
                tracing::warn!(
                    refused = self.refused_overload,
                    "too many transactions; refusing with 503"
                );
            }
            self.stateless(
                msg,
                source,
                503,
                "Service Unavailable",
                &["Retry-After: 5"],
                None,
            );
            return;
        }
        // Max-Forwards 0 is for proxies to refuse (483); an endpoint answers the request as
        // usual (RFC 4475 §3.3.11).
        // Create the server transaction.
        let kind = if method == "INVITE" {
            ServerTxKind::Invite(ServerInvite::new(
                self.cfg.transport.reliability(),
                self.cfg.timers,
            ))
        } else {
            ServerTxKind::NonInvite(ServerNonInvite::new(
                self.cfg.transport.reliability(),
                self.cfg.timers,
            ))
        };
        self.server.insert(key.clone(), ServerTx { kind, source });

        if method == "CANCEL" {
            self.handle_cancel(msg, &key, now);
            return;
        }
        // Extensions we do not support must be refused (§8.2.2.3).
        let unsupported: Vec<String> = msg
            .headers("Require")
            .flat_map(split_list)
            .filter(|o| {
                !["replaces", "100rel", "timer"]
                    .iter()
                    .any(|k| o.eq_ignore_ascii_case(k))
            })
            .collect();
        if !unsupported.is_empty() {
            let h = format!("Unsupported: {}", unsupported.join(", "));
            self.reply(&key, msg, 420, "Bad Extension", None, &[&h], None, now);
            return;
        }
        let to_tag = msg.header("To").and_then(|t| header_param(t, "tag"));
        if to_tag.is_some() {
            self.handle_in_dialog(msg, &method, cseq, &key, now);
            return;
        }
        match method.as_str() {
            "INVITE" => self.handle_new_invite(msg, source, &key, now),
            "OPTIONS" => {
                let allow = format!("Allow: {ALLOW}");
                self.reply(
                    &key,
                    msg,
                    200,
                    "OK",
                    None,
                    &[&allow, "Accept: application/sdp", "Supported: replaces"],
                    None,
                    now,
                );
            }
            "BYE" | "INFO" | "REFER" | "NOTIFY" | "UPDATE" | "PRACK" => self.reply(
                &key,
                msg,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &[],
                None,
                now,
            ),
            "REGISTER" | "SUBSCRIBE" | "MESSAGE" | "PUBLISH" => {
                let allow = format!("Allow: {ALLOW}");
                self.reply(
                    &key,
                    msg,
                    405,
                    "Method Not Allowed",
                    None,
                    &[&allow],
                    None,
                    now,
                )
            }
            _ => {
                let allow = format!("Allow: {ALLOW}");
                self.reply(
                    &key,
                    msg,
                    501,
                    "Not Implemented",
                    None,
                    &[&allow],
                    None,
                    now,
                )
            }
        }
    }

    fn handle_new_invite(
        &mut self,
        msg: &Message,
        source: SocketAddr,
        key: &(String, String),
        now: Instant,
    ) {
        // 100 Trying at once, so the caller's timer A stops (§17.2.1).
        self.reply(key, msg, 100, "Trying", None, &[], None, now);
        if self.calls.len() >= MAX_CALLS {
            self.reply(key, msg, 486, "Busy Here", None, &[], None, now);
            return;
        }
        // A body we cannot read (RFC 4475 §3.3.6 invut) → 415 saying what we accept.
        if !msg.body().is_empty() && !is_sdp(msg) {
            self.reply(
                key,
                msg,
                415,
                "Unsupported Media Type",
                None,
                &["Accept: application/sdp"],
                None,
                now,
            );
            return;
        }
        // Our answer is SDP: an Accept that rules it out (RFC 4475 §3.3.15 sdp01) → 406.
        if let Some(accept) = msg.header("Accept") {
            let takes_sdp = split_list(accept).iter().any(|a| {
                let t = a
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                t == "application/sdp" || t == "application/*" || t == "*/*"
            });
            if !takes_sdp && !accept.trim().is_empty() {
                let w = "Warning: 399 switchboard \"we answer with application/sdp only\"";
                self.reply(key, msg, 406, "Not Acceptable", None, &[w], None, now);
                return;
            }
        }
        let offer = if is_sdp(msg) {
            match Sdp::parse(msg.body()) {
                Ok(s) => Some(s),
                Err(e) => {
                    let w = format!("Warning: 399 switchboard \"{e}\"");
                    self.reply(key, msg, 400, "Bad SDP", None, &[&w], None, now);
                    return;
                }
            }
        } else {
            None
        };
        // Reject at once what we could never answer.
        if let Some(o) = &offer {
            let probe = LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 9);
            if let Err(e) = sdp::answer(o, &probe, "0", 0) {
                // Whether we have SRTP keys is the application's to say, when it answers.
                if !matches!(e, sdp::SdpError::NoCommonCrypto { .. }) {
                    let w = format!("Warning: 304 switchboard \"{e}\"");
                    self.reply(key, msg, 488, "Not Acceptable Here", None, &[&w], None, now);
                    return;
                }
            }
        }
        let from = msg.header("From").unwrap_or("").to_owned();
        let to = msg.header("To").unwrap_or("").to_owned();
        // RFC 2543 peers send neither a From tag nor, at times, a Contact (RFC 4475 §3.4.1):
        // the dialog then has no remote tag and its remote target is the From URI.
        let legacy = !msg
            .top_via_branch()
            .is_some_and(|b| b.starts_with("z9hG4bK"));
        let remote_tag = header_param(&from, "tag").map(str::to_owned);
        if remote_tag.is_none() && !legacy {
            self.reply(key, msg, 400, "Missing From tag", None, &[], None, now);
            return;
        }
        let contact = match msg.header("Contact") {
            Some(c) => value_uri(c).to_owned(),
            None if legacy => value_uri(&from).to_owned(),
            None => {
                self.reply(key, msg, 400, "Missing Contact", None, &[], None, now);
                return;
            }
        };
        // The Contact becomes the Request-URI of everything we send in this dialog.
        if !usable_target(&contact) {
            self.reply(key, msg, 400, "Bad Contact", None, &[], None, now);
            return;
        }
        // RFC 4028 §8.1: too short a session interval → 422 with our Min-SE.
        if let Some((se, _)) = parse_session_expires(msg) {
            if se < self.min_se {
                let h = format!("Min-SE: {}", self.min_se);
                self.reply(
                    key,
                    msg,
                    422,
                    "Session Interval Too Small",
                    None,
                    &[&h],
                    None,
                    now,
                );
                return;
            }
        }
        let replaces = match msg.header("Replaces").and_then(parse_replaces) {
            Some((cid, to_tag, from_tag)) => {
                let found = self.calls.values().find(|c| {
                    c.dialog.call_id == cid
                        && c.dialog.local_tag == to_tag
                        && c.dialog.remote_tag.as_deref() == Some(from_tag.as_str())
                });
                match found {
                    Some(c) if c.state != CallState::Terminated => Some(c.id),
                    _ => {
                        self.reply(
                            key,
                            msg,
                            481,
                            "Call/Transaction Does Not Exist",
                            None,
                            &[],
                            None,
                            now,
                        );
                        return;
                    }
                }
            }
            None => None,
        };
        let id = self.next_call;
        self.next_call += 1;
        let (cseq, _) = msg.cseq().unwrap_or((1, String::new()));
        let dialog = Dialog {
            call_id: msg.call_id().unwrap_or("").to_owned(),
            local_tag: random_token(10),
            remote_tag,
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            local_cseq: rand::random::<u16>() as u32,
            remote_cseq: Some(cseq),
            remote_target: contact,
            route_set: msg.headers("Record-Route").flat_map(split_list).collect(),
            we_called: false,
        };
        let call = Call {
            id,
            state: CallState::Ringing,
            dialog,
            local_media: LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 0),
            session_id: rand::random::<u32>().to_string(),
            sdp_version: 1,
            last_local_sdp: None,
            our_offer: None,
            their_offer: offer,
            negotiated: None,
            invite: None,
            incoming: Some((msg.clone(), source, key.0.clone())),
            retransmit_2xx: None,
            last_ack: None,
            reinvite: None,
            answering_reinvite: false,
            refer_sub: None,
            auth: None,
            replaces,
            timer: None,
            se_requested: 0,
            retried_422: false,
            remote_se: parse_session_expires(msg),
            peer_supports_timer: lists_option(msg, "Supported", "timer")
                || lists_option(msg, "Require", "timer"),
            peer_supports_100rel: lists_option(msg, "Supported", "100rel")
                || lists_option(msg, "Require", "100rel"),
            refreshing: false,
            last_rseq: 0,
            rseq: rand::rng().random_range(1..=0x7fff_ffff),
            reliable_1xx: None,
            answered_reliably: false,
        };
        self.calls.insert(id, call);
        self.events.push_back(UaEvent::IncomingCall {
            call: id,
            from,
            to,
            replaces,
        });
    }

    fn handle_cancel(&mut self, msg: &Message, key: &(String, String), now: Instant) {
        let invite_key = (key.0.clone(), "INVITE".to_owned());
        let call = self.calls.values().find_map(|c| {
            c.incoming
                .as_ref()
                .filter(|(_, _, b)| *b == key.0 && c.state == CallState::Ringing)
                .map(|_| c.id)
        });
        match (self.server.contains_key(&invite_key), call) {
            (true, Some(id)) => {
                self.reply(key, msg, 200, "OK", None, &[], None, now);
                self.respond_incoming(id, 487, "Request Terminated", None, now);
                self.end_call(id, EndReason::Cancelled);
            }
            // Already answered or unknown: 200 if the INVITE exists, 481 if not (§9.2).
            (true, None) => self.reply(key, msg, 200, "OK", None, &[], None, now),
            (false, _) => self.reply(
                key,
                msg,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &[],
                None,
                now,
            ),
        }
    }

    fn find_dialog(&self, msg: &Message) -> Option<CallId> {
        let call_id = msg.call_id()?;
        let from_tag = msg.header("From").and_then(|f| header_param(f, "tag"));
        let to_tag = msg.header("To").and_then(|t| header_param(t, "tag"));
        let (local, remote) = if msg.is_request() {
            (to_tag?, from_tag)
        } else {
            (from_tag?, to_tag)
        };
        self.calls
            .values()
            .find(|c| {
                c.dialog.call_id == call_id
                    && c.dialog.local_tag == local
                    && (c.dialog.remote_tag.is_none() || c.dialog.remote_tag.as_deref() == remote)
            })
            .map(|c| c.id)
    }

    fn handle_ack(&mut self, msg: &Message, now: Instant) {
        let Some(id) = self.find_dialog(msg) else {
            return; // §17.2.3: a stray ACK is dropped.
        };
        let mut changed = None;
        let mut established = None;
        if let Some(c) = self.calls.get_mut(&id) {
            c.retransmit_2xx = None;
            // Late offer: the ACK carries the answer to the offer in our 2xx.
            if let (Some(offer), true) = (c.our_offer.take(), is_sdp(msg)) {
                if let Ok(ans) = Sdp::parse(msg.body()) {
                    if let Ok(n) = sdp::accept_answer(&offer, &ans) {
                        c.negotiated = Some(n);
                    }
                }
            }
            if c.answering_reinvite {
                c.answering_reinvite = false;
                changed = c.negotiated.clone();
            } else if c.state == CallState::Answered {
                c.state = CallState::Confirmed;
                established = c.negotiated.clone();
            }
        }
        if let Some(media) = established {
            self.events
                .push_back(UaEvent::Established { call: id, media });
            self.finish_replacement(id, now);
        } else if let Some(media) = changed {
            self.events.push_back(UaEvent::MediaChanged {
                call: id,
                media,
                by_peer: true,
            });
        }
    }

    /// An answered call that replaced another (RFC 3891 §3): the old one ends with BYE.
    fn finish_replacement(&mut self, id: CallId, now: Instant) {
        let old = self.calls.get(&id).and_then(|c| c.replaces);
        if let Some(old) = old {
            if self.calls.contains_key(&old) {
                self.send_bye(old, now);
                self.end_call(old, EndReason::Replaced);
            }
        }
    }

    fn handle_in_dialog(
        &mut self,
        msg: &Message,
        method: &str,
        cseq: u32,
        key: &(String, String),
        now: Instant,
    ) {
        let Some(id) = self.find_dialog(msg) else {
            self.reply(
                key,
                msg,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &[],
                None,
                now,
            );
            return;
        };
        // §12.2.2: requests out of order are refused with 500.
        let in_order = {
            let c = &self.calls[&id];
            c.dialog.remote_cseq.is_none_or(|r| cseq > r)
        };
        if !in_order {
            self.reply(
                key,
                msg,
                500,
                "Server Internal Error",
                None,
                &["Retry-After: 1"],
                None,
                now,
            );
            return;
        }
        if let Some(c) = self.calls.get_mut(&id) {
            c.dialog.remote_cseq = Some(cseq);
            // A target refresh updates the remote target (§12.2.2).
            if matches!(method, "INVITE" | "UPDATE") {
                if let Some(t) = contact_target(msg) {
                    c.dialog.remote_target = t;
                }
            }
        }
        match method {
            "BYE" => {
                self.reply(key, msg, 200, "OK", Some(id), &[], None, now);
                // A BYE on a call we have not answered yet also ends its INVITE (§15.1.2).
                if self.calls.get(&id).map(|c| c.state) == Some(CallState::Ringing) {
                    self.respond_incoming(id, 487, "Request Terminated", None, now);
                }
                self.end_call(id, EndReason::RemoteBye);
            }
            "INVITE" | "UPDATE" => self.handle_reoffer(msg, method, id, key, now),
            "PRACK" => {
                // RFC 3262 §3: RAck names the reliable provisional it acknowledges.
                let rack = msg
                    .header("RAck")
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
                let ok = match (self.calls.get_mut(&id), rack) {
                    (Some(c), Some(r)) => {
                        if c.reliable_1xx.as_ref().is_some_and(|x| x.5 == r) {
                            c.reliable_1xx = None;
                            true
                        } else {
                            r <= c.rseq && c.answered_reliably
                        }
                    }
                    _ => false,
                };
                if ok {
                    self.reply(key, msg, 200, "OK", Some(id), &[], None, now);
                } else {
                    self.reply(
                        key,
                        msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        Some(id),
                        &[],
                        None,
                        now,
                    );
                }
            }
            "INFO" => match parse_info_dtmf(msg) {
                Some((digit, duration_ms)) => {
                    self.reply(key, msg, 200, "OK", Some(id), &[], None, now);
                    self.events.push_back(UaEvent::Dtmf {
                        call: id,
                        digit,
                        duration_ms,
                    });
                }
                None if msg.body().is_empty() => {
                    // An empty INFO is a keep-alive some equipment sends.
                    self.reply(key, msg, 200, "OK", Some(id), &[], None, now)
                }
                None => self.reply(
                    key,
                    msg,
                    415,
                    "Unsupported Media Type",
                    Some(id),
                    &["Accept: application/dtmf-relay, application/dtmf"],
                    None,
                    now,
                ),
            },
            "REFER" => {
                let Some(refer_to) = msg.header("Refer-To") else {
                    self.reply(key, msg, 400, "Missing Refer-To", Some(id), &[], None, now);
                    return;
                };
                let uri = value_uri(refer_to);
                let (target, replaces) = match uri.split_once('?') {
                    Some((t, hdrs)) => {
                        let rep = hdrs.split('&').find_map(|h| {
                            let (k, v) = h.split_once('=')?;
                            k.eq_ignore_ascii_case("Replaces").then(|| unescape(v))
                        });
                        // Decoded, the value is the peer's text: only its checked parts
                        // (RFC 3891) may reach the INVITE we send for it.
                        let rep = match rep.map(|r| crate::wire::Replaces::parse(&r)) {
                            Some(Ok(r)) => Some(r.to_string()),
                            Some(Err(_)) => {
                                self.reply(
                                    key,
                                    msg,
                                    400,
                                    "Bad Replaces in Refer-To",
                                    Some(id),
                                    &[],
                                    None,
                                    now,
                                );
                                return;
                            }
                            None => None,
                        };
                        (t.to_owned(), rep)
                    }
                    None => (uri.to_owned(), None),
                };
                if uri_host_port(&target).is_none() || crate::wire::check_uri(&target).is_err() {
                    self.reply(key, msg, 400, "Bad Refer-To", Some(id), &[], None, now);
                    return;
                }
                self.reply(key, msg, 202, "Accepted", Some(id), &[], None, now);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.refer_sub = Some(cseq);
                }
                // RFC 3515 §2.4.4: an immediate NOTIFY with the initial state.
                self.notify_transfer(id, 100, "Trying", now);
                self.events.push_back(UaEvent::TransferRequested {
                    call: id,
                    target,
                    replaces,
                    referred_by: msg.header("Referred-By").map(str::to_owned),
                });
            }
            "NOTIFY" => {
                let is_refer = msg
                    .header("Event")
                    .is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("refer"));
                if !is_refer {
                    self.reply(key, msg, 489, "Bad Event", Some(id), &[], None, now);
                    return;
                }
                self.reply(key, msg, 200, "OK", Some(id), &[], None, now);
                let final_ = msg
                    .header("Subscription-State")
                    .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
                if let Some(status) = sipfrag_status(msg.body()) {
                    self.events.push_back(UaEvent::TransferProgress {
                        call: id,
                        status,
                        final_,
                    });
                }
            }
            "OPTIONS" => {
                let allow = format!("Allow: {ALLOW}");
                self.reply(key, msg, 200, "OK", Some(id), &[&allow], None, now);
            }
            _ => {
                let allow = format!("Allow: {ALLOW}");
                self.reply(
                    key,
                    msg,
                    405,
                    "Method Not Allowed",
                    Some(id),
                    &[&allow],
                    None,
                    now,
                )
            }
        }
    }

    /// A re-INVITE or UPDATE with (or without) a new offer.
    fn handle_reoffer(
        &mut self,
        msg: &Message,
        method: &str,
        id: CallId,
        key: &(String, String),
        now: Instant,
    ) {
        let (pending_ours, answering, state) = {
            let c = &self.calls[&id];
            (
                c.reinvite.is_some() && c.reinvite.as_ref().is_some_and(|r| r.retry_at.is_none()),
                c.answering_reinvite,
                c.state,
            )
        };
        if state != CallState::Confirmed && method == "INVITE" {
            self.reply(
                key,
                msg,
                500,
                "Server Internal Error",
                Some(id),
                &["Retry-After: 1"],
                None,
                now,
            );
            return;
        }
        // §14.2: glare with our own pending re-INVITE → 491; an unfinished incoming one → 500.
        if pending_ours {
            self.reply(key, msg, 491, "Request Pending", Some(id), &[], None, now);
            return;
        }
        if answering {
            self.reply(
                key,
                msg,
                500,
                "Server Internal Error",
                Some(id),
                &["Retry-After: 2"],
                None,
                now,
            );
            return;
        }
        let offer = if is_sdp(msg) {
            match Sdp::parse(msg.body()) {
                Ok(s) => Some(s),
                Err(e) => {
                    let w = format!("Warning: 399 switchboard \"{e}\"");
                    self.reply(
                        key,
                        msg,
                        488,
                        "Not Acceptable Here",
                        Some(id),
                        &[&w],
                        None,
                        now,
                    );
                    return;
                }
            }
        } else {
            None
        };
        let se = parse_session_expires(msg);
        let peer_timer = lists_option(msg, "Supported", "timer");
        let mut timer_headers: Vec<String> = Vec::new();
        if let Some(c) = self.calls.get_mut(&id) {
            // RFC 4028 §9: a refresh (or any re-INVITE/UPDATE) restarts the timer; the request
            // says who refreshes next.
            let interval = se.as_ref().map(|(n, _)| *n).or(c.timer.map(|t| t.interval));
            if let Some(n) = interval {
                let refresher = match se.as_ref().and_then(|(_, r)| r.clone()) {
                    Some(r) if r == "uas" => "uas",
                    Some(_) => "uac",
                    None if peer_timer => "uac",
                    None => "uas",
                };
                timer_headers.push(format!("Session-Expires: {n};refresher={refresher}"));
                if peer_timer {
                    timer_headers.push("Require: timer".to_owned());
                }
                c.timer = Some(SessionTimer::new(n, refresher == "uas", now));
            }
        }
        if method == "UPDATE" && offer.is_none() {
            let extra: Vec<&str> = timer_headers.iter().map(String::as_str).collect();
            self.reply(key, msg, 200, "OK", Some(id), &extra, None, now);
            return;
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.sdp_version += 1;
        let (body, neg) = match &offer {
            Some(o) => match sdp::answer(o, &c.local_media, &c.session_id, c.sdp_version) {
                Ok((a, n)) => (a, Some(n)),
                Err(e) => {
                    let w = format!("Warning: 304 switchboard \"{e}\"");
                    self.reply(
                        key,
                        msg,
                        488,
                        "Not Acceptable Here",
                        Some(id),
                        &[&w],
                        None,
                        now,
                    );
                    return;
                }
            },
            None => {
                // An offerless re-INVITE: we offer, the ACK answers.
                if let Some(n) = &c.negotiated {
                    c.local_media.keep_agreed_crypto(n);
                }
                let o = sdp::offer(&c.local_media, &c.session_id, c.sdp_version);
                c.our_offer = Some(o.clone());
                (o, None)
            }
        };
        // An answer that changes nothing keeps the version (RFC 3264 §8).
        let body = match &c.last_local_sdp {
            Some(last) if last.media == body.media && neg.is_some() => {
                c.sdp_version -= 1;
                last.clone()
            }
            _ => body,
        };
        c.last_local_sdp = Some(body.clone());
        let unchanged = neg.is_some() && c.negotiated == neg;
        if let Some(n) = &neg {
            c.negotiated = Some(n.clone());
        }
        let neg = if unchanged { None } else { neg };
        let contact = format!("Contact: {}", self.cfg.contact());
        let mut headers: Vec<&str> = vec![&contact];
        headers.extend(timer_headers.iter().map(String::as_str));
        let sent = self.reply_tx(
            key,
            msg,
            200,
            "OK",
            Some(id),
            &headers,
            Some(("application/sdp", body.to_bytes())),
            now,
        );
        if method == "INVITE" {
            if let (Some(c), Some((bytes, to))) = (self.calls.get_mut(&id), sent) {
                c.answering_reinvite = neg.is_some() || c.our_offer.is_some();
                let t1 = self.cfg.timers.t1;
                if self.cfg.transport == Transport::Udp {
                    c.retransmit_2xx = Some((bytes, to, now + t1, t1, now + t1 * 64));
                } else {
                    c.retransmit_2xx = Some((bytes, to, now + t1 * 64, t1 * 64, now + t1 * 64));
                }
                if neg.is_some() {
                    // The media applies now; the ACK confirms it.
                    c.answering_reinvite = false;
                }
            }
        }
        if let Some(media) = neg {
            self.events.push_back(UaEvent::MediaChanged {
                call: id,
                media,
                by_peer: true,
            });
        }
    }

    fn handle_response(&mut self, msg: &Message, now: Instant) {
        let Some(status) = msg.status() else { return };
        let Some(branch) = msg.top_via_branch().map(str::to_owned) else {
            return;
        };
        let Some((_, cseq_method)) = msg.cseq() else {
            return;
        };
        let key = if cseq_method == "CANCEL" {
            format!("{branch}#CANCEL")
        } else {
            branch
        };
        let branch = key;
        let Some(tx) = self.client.get_mut(&branch) else {
            // A 2xx retransmission after our INVITE transaction ended: ACK again (§13.2.2.4).
            if (200..300).contains(&status) && cseq_method == "INVITE" {
                self.reack(msg);
            }
            return;
        };
        if tx.method != cseq_method {
            return;
        }
        match &mut tx.kind {
            ClientTxKind::NonInvite(n) => n.on_response(status, now),
            ClientTxKind::Invite(i) => {
                let ack = if status >= 300 {
                    // The To comes from the peer's response; a To we could not write back
                    // leaves the response unacknowledged (its retransmissions stop at timer D).
                    tx.invite_parts.as_ref().and_then(|p| {
                        non_2xx_ack(p, msg)
                            .map_err(|e| tracing::warn!(error = %e, "ACK of a refusal not sent"))
                            .ok()
                    })
                } else {
                    None
                };
                i.on_response(status, ack, now)
            }
        }
        self.drain_client(&branch, Some(msg), now);
    }

    fn reack(&mut self, msg: &Message) {
        let Some(id) = self.find_dialog(msg) else {
            return;
        };
        let Some((cseq, _)) = msg.cseq() else { return };
        if let Some((n, ack, to)) = self.calls.get(&id).and_then(|c| c.last_ack.clone()) {
            if n == cseq {
                self.transmits.push_back(Transmit { to, data: ack });
            }
        }
    }

    fn drain_client(&mut self, branch: &str, msg: Option<&Message>, now: Instant) {
        let mut outputs = Vec::new();
        let mut terminated = false;
        let Some(tx) = self.client.get_mut(branch) else {
            return;
        };
        loop {
            let o = match &mut tx.kind {
                ClientTxKind::Invite(i) => i.poll_output(),
                ClientTxKind::NonInvite(n) => n.poll_output(),
            };
            match o {
                Some(transaction::Output::Transmit(data)) => self.transmits.push_back(Transmit {
                    to: tx.destination.clone(),
                    data,
                }),
                Some(transaction::Output::Event(transaction::Event::Terminated)) => {
                    terminated = true
                }
                Some(transaction::Output::Event(e)) => outputs.push(e),
                None => break,
            }
        }
        let call = tx.call;
        let method = tx.method.clone();
        if terminated {
            self.client.remove(branch);
        }
        if call.is_none() && method == "OPTIONS" {
            let answered = outputs.iter().find_map(|e| match e {
                transaction::Event::Response(s) if *s >= 200 => Some(Some(*s)),
                transaction::Event::Timeout | transaction::Event::TransportError => Some(None),
                _ => None,
            });
            if let Some(status) = answered {
                if let Some(target) = self.pings.remove(branch) {
                    self.events
                        .push_back(UaEvent::OptionsAnswered { target, status });
                }
            }
        }
        for e in outputs {
            match e {
                transaction::Event::Response(status) => {
                    if let (Some(m), Some(id)) = (msg, call) {
                        self.on_call_response(id, &method, status, m, now);
                    }
                }
                transaction::Event::Timeout | transaction::Event::TransportError => {
                    let reason = if e == transaction::Event::Timeout {
                        EndReason::Timeout
                    } else {
                        EndReason::TransportError
                    };
                    if let Some(id) = call {
                        match method.as_str() {
                            "INVITE" => {
                                let initial = self.calls.get(&id).is_some_and(|c| {
                                    matches!(c.state, CallState::Calling | CallState::Cancelling)
                                });
                                if initial {
                                    self.end_call(id, reason);
                                } else if let Some(c) = self.calls.get_mut(&id) {
                                    c.reinvite = None;
                                    self.events.push_back(UaEvent::MediaChangeFailed {
                                        call: id,
                                        status: 408,
                                    });
                                }
                            }
                            // §12.2.1.2: a 408 or timeout on an in-dialog request ends the dialog.
                            "BYE" => {}
                            "REFER" => self.events.push_back(UaEvent::TransferProgress {
                                call: id,
                                status: 408,
                                final_: true,
                            }),
                            _ => {
                                if self.calls.contains_key(&id) {
                                    self.send_bye(id, now);
                                    self.end_call(id, reason);
                                }
                            }
                        }
                    }
                }
                transaction::Event::Terminated => {}
            }
        }
    }

    fn on_call_response(
        &mut self,
        id: CallId,
        method: &str,
        status: u16,
        msg: &Message,
        now: Instant,
    ) {
        let Some(state) = self.calls.get(&id).map(|c| c.state) else {
            return;
        };
        // A retransmitted 2xx to an INVITE we already ACKed: ACK again, nothing else (§13.2.2.4).
        if method == "INVITE" && (200..300).contains(&status) {
            let cseq = msg.cseq().map(|(n, _)| n);
            let acked = self
                .calls
                .get(&id)
                .and_then(|c| c.last_ack.as_ref())
                .map(|(n, _, _)| *n);
            if cseq.is_some() && cseq == acked {
                self.reack(msg);
                return;
            }
        }
        match method {
            "INVITE" if matches!(state, CallState::Calling | CallState::Cancelling) => {
                self.on_invite_response(id, status, msg, now)
            }
            "INVITE" => self.on_reinvite_response(id, status, msg, now),
            "REFER" if status >= 200 => {
                self.events.push_back(UaEvent::TransferProgress {
                    call: id,
                    status,
                    final_: status >= 300,
                });
            }
            "BYE" | "INFO" | "NOTIFY" => {
                if status == 481 || status == 408 {
                    if method != "BYE" {
                        self.end_call(id, EndReason::RemoteBye);
                    }
                } else if (status == 401 || status == 407) && method == "BYE" {
                    tracing::debug!(call = id, "BYE challenged; the call is already over for us");
                }
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, id: CallId, status: u16, msg: &Message, now: Instant) {
        let to = msg.header("To").unwrap_or("").to_owned();
        let remote_tag = header_param(&to, "tag").map(str::to_owned);
        match status {
            100 => {}
            101..=199 => {
                let mut early = None;
                let mut prack = None;
                if let Some(c) = self.calls.get_mut(&id) {
                    if c.dialog.remote_tag.is_none() {
                        c.dialog.remote_tag = remote_tag;
                    }
                    // RFC 3262: a reliable provisional response is PRACKed once per RSeq,
                    // inside the early dialog it creates.
                    let rseq = msg
                        .header("RSeq")
                        .and_then(|v| v.trim().parse::<u32>().ok());
                    if let (true, Some(rseq)) = (lists_option(msg, "Require", "100rel"), rseq) {
                        if rseq > c.last_rseq {
                            c.last_rseq = rseq;
                            if let Some(t) = contact_target(msg) {
                                c.dialog.remote_target = t;
                            }
                            let mut rr: Vec<String> =
                                msg.headers("Record-Route").flat_map(split_list).collect();
                            rr.reverse();
                            c.dialog.route_set = rr;
                            let cseq = c.invite.as_ref().map(|i| i.cseq).unwrap_or(1);
                            prack = Some(format!("{rseq} {cseq} INVITE"));
                        } else {
                            // A retransmission we already PRACKed: nothing new in it.
                            return;
                        }
                    }
                    if is_sdp(msg) {
                        if let (Some(offer), Ok(ans)) = (&c.our_offer, Sdp::parse(msg.body())) {
                            if let Ok(n) = sdp::accept_answer(offer, &ans) {
                                c.negotiated = Some(n.clone());
                                early = Some(n);
                            }
                        }
                    }
                }
                if let Some(rack) = prack {
                    let _ = self.send_in_dialog(id, "PRACK", vec![("RAck", rack)], None, now);
                }
                self.events.push_back(UaEvent::Progress {
                    call: id,
                    status,
                    reason: msg.reason().unwrap_or("").to_owned(),
                    early_media: early,
                });
            }
            200..=299 => {
                let cancelling =
                    self.calls.get(&id).map(|c| c.state) == Some(CallState::Cancelling);
                let mut media_result = None;
                if let Some(c) = self.calls.get_mut(&id) {
                    c.dialog.remote_tag = remote_tag;
                    if let Some(t) = contact_target(msg) {
                        c.dialog.remote_target = t;
                    }
                    // UAC: the route set is the Record-Route list reversed (§12.1.2).
                    let mut rr: Vec<String> =
                        msg.headers("Record-Route").flat_map(split_list).collect();
                    rr.reverse();
                    c.dialog.route_set = rr;
                    c.dialog.remote_cseq = None;
                    media_result = Some(match (&c.our_offer, is_sdp(msg)) {
                        (Some(offer), true) => Sdp::parse(msg.body())
                            .map_err(|e| e.to_string())
                            .and_then(|a| sdp::accept_answer(offer, &a).map_err(|e| e.to_string())),
                        (Some(_), false) => match &c.negotiated {
                            // The answer came in a reliable 18x earlier.
                            Some(n) => Ok(n.clone()),
                            None => Err("the 2xx carries no SDP answer".to_owned()),
                        },
                        (None, _) => Err("no offer".to_owned()),
                    });
                    c.our_offer = None;
                }
                let cseq = self
                    .calls
                    .get(&id)
                    .and_then(|c| c.invite.as_ref().map(|i| i.cseq))
                    .unwrap_or(1);
                self.send_ack(id, cseq, now);
                match media_result {
                    _ if cancelling => {
                        // The answer crossed our CANCEL: take the call and end it (§9.1).
                        self.send_bye(id, now);
                        self.end_call(id, EndReason::Local);
                    }
                    Some(Ok(n)) => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.state = CallState::Confirmed;
                            c.negotiated = Some(n.clone());
                            // RFC 4028 §7.2: the 2xx says who refreshes; we are the UAC.
                            if let Some((se, refresher)) = parse_session_expires(msg) {
                                let we = refresher.as_deref() != Some("uas");
                                c.timer = Some(SessionTimer::new(se, we, now));
                            }
                        }
                        self.events
                            .push_back(UaEvent::Established { call: id, media: n });
                    }
                    Some(Err(why)) => {
                        self.send_bye(id, now);
                        self.end_call(id, EndReason::MediaFailed(why));
                    }
                    None => {}
                }
            }
            422 => {
                // RFC 4028 §7.4: ask again with at least the Min-SE the peer wants.
                let min = msg
                    .header("Min-SE")
                    .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
                let retry = match (self.calls.get_mut(&id), min) {
                    (Some(c), Some(m)) if !c.retried_422 && c.state == CallState::Calling => {
                        c.retried_422 = true;
                        c.se_requested = c.se_requested.max(m);
                        true
                    }
                    _ => false,
                };
                if retry {
                    self.send_initial_invite(id, now);
                } else {
                    self.end_call(
                        id,
                        EndReason::Rejected {
                            status,
                            reason: msg.reason().unwrap_or("").to_owned(),
                        },
                    );
                }
            }
            401 | 407 => {
                let header = if status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let challenge = msg.headers(header).find_map(|h| Challenge::parse(h).ok());
                let foreign = challenge
                    .as_ref()
                    .filter(|ch| !self.realm_is_trusted(&ch.realm));
                if let Some(ch) = foreign {
                    tracing::warn!(
                        realm = %ch.realm,
                        "a challenge for a realm that is not our account's was not answered"
                    );
                }
                let can_retry = self.cfg.credentials.is_some()
                    && foreign.is_none()
                    && self
                        .calls
                        .get(&id)
                        .is_some_and(|c| c.state == CallState::Calling)
                    && match (
                        &challenge,
                        self.calls.get(&id).and_then(|c| c.auth.as_ref()),
                    ) {
                        (Some(_), None) => true,
                        (Some(ch), Some(_)) => ch.stale,
                        _ => false,
                    };
                if can_retry {
                    if let (Some(c), Some(ch)) = (self.calls.get_mut(&id), challenge) {
                        c.auth = Some((ch, 0, status == 407));
                    }
                    self.send_initial_invite(id, now);
                } else {
                    self.end_call(
                        id,
                        EndReason::Rejected {
                            status,
                            reason: msg.reason().unwrap_or("").to_owned(),
                        },
                    );
                }
            }
            _ => {
                let state = self.calls.get(&id).map(|c| c.state);
                let reason = if status == 487 && state == Some(CallState::Cancelling) {
                    EndReason::Local
                } else {
                    EndReason::Rejected {
                        status,
                        reason: msg.reason().unwrap_or("").to_owned(),
                    }
                };
                self.end_call(id, reason);
            }
        }
    }

    fn on_reinvite_response(&mut self, id: CallId, status: u16, msg: &Message, now: Instant) {
        match status {
            100..=199 => {}
            200..=299 => {
                let cseq = msg.cseq().map(|(n, _)| n).unwrap_or(0);
                self.send_ack(id, cseq, now);
                let mut changed = None;
                let mut was_refresh = false;
                let mut unchanged = false;
                if let Some(c) = self.calls.get_mut(&id) {
                    was_refresh = std::mem::take(&mut c.refreshing) && c.reinvite.is_none();
                    c.reinvite = None;
                    if let (Some(offer), true) = (c.our_offer.take(), is_sdp(msg)) {
                        if let Ok(n) = Sdp::parse(msg.body())
                            .ok()
                            .and_then(|a| sdp::accept_answer(&offer, &a).ok())
                            .ok_or(())
                        {
                            unchanged = c.negotiated.as_ref() == Some(&n);
                            c.negotiated = Some(n.clone());
                            changed = Some(n);
                        }
                    }
                    // Any 2xx to a re-INVITE restarts the session timer (RFC 4028 §10).
                    match (parse_session_expires(msg), c.timer) {
                        (Some((se, r)), _) => {
                            c.timer = Some(SessionTimer::new(se, r.as_deref() != Some("uas"), now))
                        }
                        (None, Some(t)) => {
                            c.timer = Some(SessionTimer::new(t.interval, t.we_refresh, now))
                        }
                        (None, None) => {}
                    }
                }
                match changed {
                    _ if was_refresh && (unchanged || changed.is_none()) => {}
                    Some(media) => self.events.push_back(UaEvent::MediaChanged {
                        call: id,
                        media,
                        by_peer: false,
                    }),
                    None => self
                        .events
                        .push_back(UaEvent::MediaChangeFailed { call: id, status }),
                }
            }
            491 => {
                // §14.1: glare. Retry after 2.1–4 s if we own the Call-ID, else 0–2 s.
                let mut r = rand::rng();
                if let Some(c) = self.calls.get_mut(&id) {
                    let ms = if c.dialog.we_called {
                        r.random_range(2100..=4000)
                    } else {
                        r.random_range(0..=2000)
                    };
                    c.our_offer = None;
                    c.refreshing = false;
                    if let Some(p) = c.reinvite.as_mut() {
                        p.retry_at = Some(now + Duration::from_millis(ms));
                    }
                }
            }
            _ => {
                let mut was_refresh = false;
                if let Some(c) = self.calls.get_mut(&id) {
                    was_refresh = std::mem::take(&mut c.refreshing) && c.reinvite.is_none();
                    c.reinvite = None;
                    c.our_offer = None;
                }
                if was_refresh && status != 481 && status != 408 {
                    // The next attempt comes from the timer (10 s later).
                    return;
                }
                if status == 481 || status == 408 {
                    self.end_call(id, EndReason::RemoteBye);
                } else {
                    self.events
                        .push_back(UaEvent::MediaChangeFailed { call: id, status });
                }
            }
        }
    }

    // ----- output helpers -------------------------------------------------------------------

    fn send_initial_invite(&mut self, id: CallId, now: Instant) {
        let cfg = self.cfg.clone();
        let min_se = self.min_se;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(inv) = c.invite.as_mut() else { return };
        c.dialog.local_cseq += 1;
        inv.cseq = c.dialog.local_cseq;
        inv.branch = new_branch();
        inv.via = format!(
            "SIP/2.0/{} {};branch={};rport",
            cfg.transport.via_name(),
            cfg.contact_host,
            inv.branch
        );
        let body = c
            .our_offer
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();
        let mut m = initial_request("INVITE", inv, &c.dialog);
        m.header("Contact", cfg.contact())
            .header("Allow", ALLOW)
            .header("Supported", "replaces, 100rel, timer")
            .header("User-Agent", &cfg.user_agent)
            .headers("Route", &inv.routes);
        if c.se_requested > 0 {
            m.header("Session-Expires", c.se_requested)
                .header("Min-SE", min_se);
        }
        for h in &inv.extra_headers {
            m.header_line(h);
        }
        if let (Some((ch, nc, proxy)), Some(creds)) = (c.auth.as_mut(), cfg.credentials.as_ref()) {
            *nc += 1;
            let value = ch.authorize(creds, "INVITE", &inv.request_uri, *nc, &random_token(16));
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            m.header(name, value);
        }
        m.body("application/sdp", body);
        let data = match m.build() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "INVITE not sent");
                self.end_call(id, EndReason::NotSent(format!("INVITE: {e}")));
                return;
            }
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(inv) = c.invite.as_mut() else { return };
        let parts = (
            inv.request_uri.clone(),
            inv.via.clone(),
            format!("{};tag={}", c.dialog.local_uri, c.dialog.local_tag),
            c.dialog.call_id.clone(),
            inv.cseq,
            inv.routes.clone(),
        );
        let destination = inv.destination.clone();
        let branch = inv.branch.clone();
        let tx = ClientInvite::start(data, cfg.transport.reliability(), cfg.timers, now);
        self.client.insert(
            branch.clone(),
            ClientTx {
                kind: ClientTxKind::Invite(tx),
                call: Some(id),
                method: "INVITE".into(),
                destination,
                invite_parts: Some(parts),
            },
        );
        self.drain_client(&branch, None, now);
    }

    /// CANCEL for our pending initial INVITE (§9.1): same Request-URI, Call-ID, From, To,
    /// CSeq number and top Via as the INVITE.
    fn cancel(&mut self, id: CallId, now: Instant) {
        let cfg = self.cfg.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(inv) = c.invite.clone() else { return };
        c.state = CallState::Cancelling;
        // §9.1: CANCEL only after a provisional response; before it, wait (timer B or the 1xx).
        let got_provisional = self
            .client
            .get(&inv.branch)
            .is_some_and(|t| matches!(&t.kind, ClientTxKind::Invite(i) if i.state() == transaction::State::Proceeding));
        if !got_provisional {
            // Still send it: most UAS accept CANCEL before a 1xx over UDP; the 487 ends the call.
            tracing::debug!(call = id, "CANCEL before any provisional response");
        }
        let mut m = initial_request("CANCEL", &inv, &c.dialog);
        m.header("User-Agent", &cfg.user_agent)
            .headers("Route", &inv.routes);
        // The INVITE went out with these same values, so this cannot fail; if it did, the
        // INVITE transaction still ends the call (timer B or the final response).
        let req = match m.build() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "CANCEL not sent");
                return;
            }
        };
        let tx = ClientNonInvite::start(req, cfg.transport.reliability(), cfg.timers, now);
        // CANCEL shares the INVITE's branch; key it apart.
        let key = format!("{}#CANCEL", inv.branch);
        self.client.insert(
            key.clone(),
            ClientTx {
                kind: ClientTxKind::NonInvite(tx),
                call: Some(id),
                method: "CANCEL".into(),
                destination: inv.destination,
                invite_parts: None,
            },
        );
        self.drain_client(&key, None, now);
    }

    fn send_ack(&mut self, id: CallId, cseq: u32, _now: Instant) {
        let cfg = self.cfg.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let (ruri, routes, destination) = in_dialog_target(&c.dialog, &cfg, c.invite.as_ref());
        let mut m = MessageBuilder::request("ACK", &ruri);
        dialog_headers(&mut m, &c.dialog, &cfg, &new_branch(), cseq, "ACK");
        m.headers("Route", &routes);
        let data = match m.build() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "ACK not sent");
                return;
            }
        };
        c.last_ack = Some((cseq, data.clone(), destination.clone()));
        self.transmits.push_back(Transmit {
            to: destination,
            data,
        });
    }

    fn send_reinvite(&mut self, id: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = c.reinvite.as_ref() else { return };
        c.local_media.direction = p.direction;
        if let Some(n) = &c.negotiated {
            c.local_media.keep_agreed_crypto(n);
        }
        c.sdp_version += 1;
        let offer = sdp::offer(&c.local_media, &c.session_id, c.sdp_version);
        c.our_offer = Some(offer.clone());
        c.last_local_sdp = Some(offer.clone());
        let contact = ("Contact", self.cfg.contact());
        let _ = self.send_in_dialog(
            id,
            "INVITE",
            vec![contact],
            Some(("application/sdp", offer.to_bytes())),
            now,
        );
    }

    /// BYE in the call's dialog; built from our own dialog state, so it cannot fail on a value,
    /// and a failure would be logged by [`Self::send_in_dialog`].
    fn send_bye(&mut self, id: CallId, now: Instant) {
        let _ = self.send_in_dialog(id, "BYE", Vec::new(), None, now);
    }

    /// A request inside the call's dialog (§12.2.1.1).
    fn send_in_dialog(
        &mut self,
        id: CallId,
        method: &str,
        headers: Vec<(&str, String)>,
        body: Option<(&str, Bytes)>,
        now: Instant,
    ) -> Result<(), WireError> {
        let cfg = self.cfg.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        c.dialog.local_cseq += 1;
        let cseq = c.dialog.local_cseq;
        let branch = new_branch();
        let (ruri, routes, destination) = in_dialog_target(&c.dialog, &cfg, c.invite.as_ref());
        let mut m = MessageBuilder::request(method, &ruri);
        dialog_headers(&mut m, &c.dialog, &cfg, &branch, cseq, method);
        m.headers("Route", &routes);
        for (name, value) in &headers {
            m.header(name, value);
        }
        if let Some((ct, b)) = body {
            m.body(ct, b);
        }
        let data = match m.build() {
            Ok(d) => d,
            Err(e) => {
                // The CSeq number stays used: RFC 3261 only asks that it grows.
                tracing::warn!(call = id, method, error = %e, "request not sent");
                return Err(e);
            }
        };
        // A re-INVITE's non-2xx final response (491 glare, 488) is ACKed by its transaction
        // (§17.1.1.3), which needs the request's parts to build that ACK.
        let invite_parts = (method == "INVITE").then(|| {
            (
                ruri.clone(),
                format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    cfg.transport.via_name(),
                    cfg.contact_host
                ),
                format!("{};tag={}", c.dialog.local_uri, c.dialog.local_tag),
                c.dialog.call_id.clone(),
                cseq,
                routes.clone(),
            )
        });
        let kind = if method == "INVITE" {
            ClientTxKind::Invite(ClientInvite::start(
                data,
                cfg.transport.reliability(),
                cfg.timers,
                now,
            ))
        } else {
            ClientTxKind::NonInvite(ClientNonInvite::start(
                data,
                cfg.transport.reliability(),
                cfg.timers,
                now,
            ))
        };
        self.client.insert(
            branch.clone(),
            ClientTx {
                kind,
                call: Some(id),
                method: method.to_owned(),
                destination,
                invite_parts,
            },
        );
        self.drain_client(&branch, None, now);
        Ok(())
    }

    /// Responds to the incoming initial INVITE of `id`.
    fn respond_incoming(
        &mut self,
        id: CallId,
        status: u16,
        reason: &str,
        body: Option<Bytes>,
        now: Instant,
    ) {
        self.respond_incoming_with(id, status, reason, body, Vec::new(), now);
    }

    fn respond_incoming_with(
        &mut self,
        id: CallId,
        status: u16,
        reason: &str,
        body: Option<Bytes>,
        mut headers: Vec<String>,
        now: Instant,
    ) -> Option<(Bytes, SocketAddr)> {
        let (req, _, branch) = self.calls.get(&id).and_then(|c| c.incoming.clone())?;
        let key = (branch, "INVITE".to_owned());
        if status < 300 && status > 100 {
            headers.push(format!("Contact: {}", self.cfg.contact()));
            headers.push(format!("Allow: {ALLOW}"));
            headers.push("Supported: replaces, 100rel, timer".to_owned());
        }
        // RFC 4028 §9: the 2xx states the interval and who refreshes.
        let mut timer = None;
        if (200..300).contains(&status) {
            if let Some(c) = self.calls.get(&id) {
                let interval = match (c.remote_se.as_ref(), self.session_expires) {
                    (Some((n, _)), _) => Some(*n),
                    (None, Some(ours)) if c.peer_supports_timer => Some(ours),
                    _ => None,
                };
                if let Some(n) = interval {
                    let refresher = match c.remote_se.as_ref().and_then(|(_, r)| r.clone()) {
                        Some(r) if r == "uac" || r == "uas" => r,
                        _ if c.peer_supports_timer => "uac".to_owned(),
                        _ => "uas".to_owned(),
                    };
                    headers.push(format!("Session-Expires: {n};refresher={refresher}"));
                    if c.peer_supports_timer {
                        headers.push("Require: timer".to_owned());
                    }
                    timer = Some(SessionTimer::new(n, refresher == "uas", now));
                }
            }
        }
        let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
        let sent = self.reply_tx(
            &key,
            &req,
            status,
            reason,
            Some(id),
            &extra,
            body.map(|b| ("application/sdp", b)),
            now,
        );
        if (200..300).contains(&status) {
            if let (Some(c), Some((bytes, to))) = (self.calls.get_mut(&id), sent.clone()) {
                c.state = CallState::Answered;
                c.timer = timer;
                c.reliable_1xx = None;
                let t1 = self.cfg.timers.t1;
                let first = if self.cfg.transport == Transport::Udp {
                    t1
                } else {
                    t1 * 64
                };
                c.retransmit_2xx = Some((bytes, to, now + first, first, now + t1 * 64));
            }
        }
        sent
    }

    /// Early media (RFC 3261 §13.3.1.1, RFC 3960): answers the caller's offer in a 183 Session
    /// Progress so audio (an announcement, ringback, a queue) flows before the call is answered.
    /// Reliable (100rel, RFC 3262) when the caller supports it.
    pub fn early_media(
        &mut self,
        call: CallId,
        media: LocalMedia,
        now: Instant,
    ) -> Result<Negotiated, UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Ringing {
            return Err(UaError::WrongState(call, "given early media"));
        }
        let offer = c.their_offer.clone().ok_or(UaError::WrongState(
            call,
            "given early media without an offer",
        ))?;
        c.local_media = media;
        let (answer, neg) = sdp::answer(&offer, &c.local_media, &c.session_id, c.sdp_version)?;
        c.negotiated = Some(neg.clone());
        c.last_local_sdp = Some(answer.clone());
        let reliable = c.peer_supports_100rel;
        let mut headers = Vec::new();
        if reliable {
            c.rseq += 1;
            headers.push("Require: 100rel".to_owned());
            headers.push(format!("RSeq: {}", c.rseq));
        }
        let rseq = c.rseq;
        let sent = self.respond_incoming_with(
            call,
            183,
            "Session Progress",
            Some(answer.to_bytes()),
            headers,
            now,
        );
        if let (true, Some((bytes, to)), Some(c)) = (reliable, sent, self.calls.get_mut(&call)) {
            let t1 = self.cfg.timers.t1;
            c.answered_reliably = true;
            c.reliable_1xx = Some((bytes, to, now + t1, t1, now + t1 * 64, rseq));
        }
        Ok(neg)
    }

    /// Sends a response through the server transaction `key`. With `call`, the To tag is the
    /// call's local tag. Returns the bytes and destination.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        key: &(String, String),
        req: &Message,
        status: u16,
        reason: &str,
        call: Option<CallId>,
        extra: &[&str],
        body: Option<(&str, Bytes)>,
        now: Instant,
    ) {
        let _ = self.reply_tx(key, req, status, reason, call, extra, body, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_tx(
        &mut self,
        key: &(String, String),
        req: &Message,
        status: u16,
        reason: &str,
        call: Option<CallId>,
        extra: &[&str],
        body: Option<(&str, Bytes)>,
        now: Instant,
    ) -> Option<(Bytes, SocketAddr)> {
        let tx = self.server.get(key)?;
        let source = tx.source;
        let tag = call
            .and_then(|id| self.calls.get(&id))
            .map(|c| c.dialog.local_tag.clone());
        let data = match build_response(
            req,
            source,
            status,
            reason,
            tag.as_deref(),
            extra,
            body,
            &self.cfg.user_agent,
        ) {
            Ok(d) => d,
            Err(e) => {
                // The parser refuses control characters, so only a value of ours can get
                // here; the transaction goes, so that nothing waits for a response forever.
                tracing::warn!(status, error = %e, "response not sent");
                self.server.remove(key);
                return None;
            }
        };
        let tx = self.server.get_mut(key)?;
        match &mut tx.kind {
            ServerTxKind::Invite(i) => i.send_response(status, data.clone(), now),
            ServerTxKind::NonInvite(n) => n.send_response(status, data.clone(), now),
        }
        self.drain_server(key);
        Some((data, source))
    }

    /// A response outside any transaction (the request was too broken for one).
    fn stateless(
        &mut self,
        req: &Message,
        source: SocketAddr,
        status: u16,
        reason: &str,
        extra: &[&str],
        body: Option<(&str, Bytes)>,
    ) {
        let data = match build_response(
            req,
            source,
            status,
            reason,
            None,
            extra,
            body,
            &self.cfg.user_agent,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(status, error = %e, "response not sent");
                return;
            }
        };
        self.transmits.push_back(Transmit {
            to: Destination::Addr(source),
            data,
        });
    }

    fn drain_server(&mut self, key: &(String, String)) {
        let Some(tx) = self.server.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        loop {
            let o = match &mut tx.kind {
                ServerTxKind::Invite(i) => i.poll_output(),
                ServerTxKind::NonInvite(n) => n.poll_output(),
            };
            match o {
                Some(transaction::Output::Transmit(data)) => self.transmits.push_back(Transmit {
                    to: Destination::Addr(tx.source),
                    data,
                }),
                Some(transaction::Output::Event(transaction::Event::Terminated)) => {
                    terminated = true
                }
                Some(transaction::Output::Event(transaction::Event::Timeout)) => {
                    tracing::debug!(branch = %key.0, "no ACK for our final response (timer H)");
                }
                Some(_) => {}
                None => break,
            }
        }
        if terminated {
            self.server.remove(key);
        }
    }

    fn end_call(&mut self, id: CallId, reason: EndReason) {
        if let Some(mut c) = self.calls.remove(&id) {
            c.state = CallState::Terminated;
            // Keep transactions: they finish their retransmissions on their own.
            for t in self.client.values_mut() {
                if t.call == Some(id) {
                    t.call = None;
                }
            }
            self.events.push_back(UaEvent::Ended { call: id, reason });
        }
    }
}

fn resend_1xx(out: &mut VecDeque<Transmit>, bytes: &Bytes, to: SocketAddr) {
    out.push_back(Transmit {
        to: Destination::Addr(to),
        data: bytes.clone(),
    });
}

/// The standard reason phrase of a final status (RFC 3261 §21 and the IANA registry).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
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

/// Request-URI, Route headers and next hop for a request inside `dialog` (§12.2.1.1, loose
/// routing only: strict routers are from RFC 2543 times).
fn in_dialog_target(
    d: &Dialog,
    cfg: &UaConfig,
    invite: Option<&OutgoingInvite>,
) -> (String, Vec<String>, Destination) {
    let ruri = d.remote_target.clone();
    let routes = d.route_set.clone();
    let destination = routes
        .first()
        .and_then(|r| Destination::from_uri(value_uri(r)))
        .or_else(|| {
            // No Record-Route: requests go straight to the peer's Contact, unless we called
            // through an outbound proxy that did not record-route (then via it, RFC 3261 §8.1.2).
            if d.route_set.is_empty() && invite.is_some() {
                cfg.outbound_proxy.clone()
            } else {
                None
            }
        })
        .or_else(|| Destination::from_uri(&ruri))
        .unwrap_or(Destination::Host {
            host: "invalid".into(),
            port: None,
        });
    (ruri, routes, destination)
}

/// The start line, Via, Max-Forwards, From, To, Call-ID and CSeq of our initial INVITE, which
/// its CANCEL repeats (§9.1).
fn initial_request(method: &str, inv: &OutgoingInvite, d: &Dialog) -> MessageBuilder {
    let mut m = MessageBuilder::request(method, &inv.request_uri);
    m.header("Via", &inv.via)
        .header("Max-Forwards", 70)
        .header("From", format_args!("{};tag={}", d.local_uri, d.local_tag))
        .header("To", &d.remote_uri)
        .header("Call-ID", &d.call_id)
        .cseq(inv.cseq, method);
    m
}

/// Via, Max-Forwards, From, To, Call-ID, CSeq and User-Agent of a request inside `d`
/// (§12.2.1.1).
fn dialog_headers(
    m: &mut MessageBuilder,
    d: &Dialog,
    cfg: &UaConfig,
    branch: &str,
    cseq: u32,
    method: &str,
) {
    m.via(cfg.transport.via_name(), &cfg.contact_host, branch)
        .header("Max-Forwards", 70)
        .header("From", format_args!("{};tag={}", d.local_uri, d.local_tag))
        .header(
            "To",
            format_args!(
                "{}{}",
                d.remote_uri,
                d.remote_tag
                    .as_deref()
                    .map(|t| format!(";tag={t}"))
                    .unwrap_or_default()
            ),
        )
        .header("Call-ID", &d.call_id)
        .cseq(cseq, method)
        .header("User-Agent", &cfg.user_agent);
}

fn non_2xx_ack(
    parts: &(String, String, String, String, u32, Vec<String>),
    resp: &Message,
) -> Result<Bytes, WireError> {
    let (ruri, via, from, call_id, cseq, routes) = parts;
    let to = resp.header("To").unwrap_or("");
    let mut m = MessageBuilder::request("ACK", ruri);
    m.header("Via", via)
        .header("Max-Forwards", 70)
        .header("From", from)
        .header("To", to)
        .header("Call-ID", call_id)
        .cseq(*cseq, "ACK")
        .headers("Route", routes);
    m.build()
}

/// A response to `req` (§8.2.6): Via (the top one with `received`/`rport`, RFC 3581), From,
/// To (with `tag` when given and absent), Call-ID, CSeq, Record-Route for dialog-creating
/// 1xx/2xx (§12.1.1).
#[allow(clippy::too_many_arguments)]
pub fn build_response(
    req: &Message,
    source: SocketAddr,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[&str],
    body: Option<(&str, Bytes)>,
    server: &str,
) -> Result<Bytes, WireError> {
    let mut m = MessageBuilder::response(status, reason);
    let mut first = true;
    for v in req.headers("Via") {
        for (i, via) in split_list(v).into_iter().enumerate() {
            if first && i == 0 {
                first = false;
                m.header("Via", crate::message::via_with_source(&via, source));
            } else {
                m.header("Via", via);
            }
        }
    }
    m.header_opt("From", req.header("From"));
    if let Some(t) = req.header("To") {
        match (header_param(t, "tag"), to_tag) {
            (None, Some(tag)) if status != 100 => m.header("To", format_args!("{t};tag={tag}")),
            _ => m.header("To", t),
        };
    }
    m.header_opt("Call-ID", req.header("Call-ID"))
        .header_opt("CSeq", req.header("CSeq"));
    if (101..300).contains(&status) {
        m.headers("Record-Route", req.headers("Record-Route"));
    }
    for e in extra {
        m.header_line(e);
    }
    m.header("Server", server);
    if let Some((ct, b)) = body {
        m.body(ct, b);
    }
    m.build()
}

/// Why a command could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    #[error("{0:?} is not a SIP URI we can call — write it like sip:bob@example.com")]
    BadUri(String),
    #[error("too many calls at once (at most {MAX_CALLS})")]
    TooManyCalls,
    #[error("call {0} does not exist (it may have ended)")]
    NoSuchCall(CallId),
    #[error("call {0} cannot be {1} in its current state")]
    WrongState(CallId, &'static str),
    #[error("call {0} is busy with another media change; try again in a moment")]
    Busy(CallId),
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    BadDigit(char),
    #[error("media negotiation failed: {0}")]
    Media(#[from] sdp::SdpError),
    #[error("not sent: {0}")]
    Wire(#[from] crate::wire::WireError),
}

#[cfg(test)]
mod tests;
