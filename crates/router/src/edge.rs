//! The SIP edge of the contact center: one task that owns the SIP transport, a user agent (the
//! B2BUA's two sides: it answers callers and calls agents), the registrar of the agents'
//! phones, and drives the tenants' routing engines; media goes to the [`Relay`] thread.
//!
//! A call's life: an INVITE from a trunk's source address to one of the tenant's numbers is
//! admitted (others get 403, unknown numbers 404, a full trunk 503), answered, and the caller
//! joins the number's queue hearing the welcome prompt and then music. The engine offers the
//! caller to agents; each offer is an INVITE to the agent's registered phone, carrying the
//! queue and the caller in `X-Switchboard-*` headers. The first agent to answer is bridged to
//! the caller; an offer that rings past the queue's alert time is cancelled, the agent set as
//! the queue says (Not ready, "missed call", by default) and the next agent tried. When either
//! side hangs up, the other is hung up and the agent goes to wrap-up. A caller refused by the
//! queue (full, nobody logged in) hears why, then the router hangs up.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sip::message::{value_uri, Message};
use switchboard_sip::registrar::{address_of_record, response, Registrar, RegistrarConfig};
use switchboard_sip::registrar_udp::Answered;
use switchboard_sip::sdp::{LocalMedia, Negotiated};
use switchboard_sip::transport::{Incoming, TlsSettings, Transports};
use switchboard_sip::ua::{
    CallId as UaCall, Destination, Transmit, Transport, UaConfig, UaEvent, UserAgent,
};
use tokio::sync::watch;

use crate::center::{AgentsTransport, SipConfig};
use crate::desk::{CallCenter, RecordWrite, Route};
use crate::figures::Left;
use crate::prompts::Prompts;
use crate::relay::{Playlist, Relay, RelayEvent};
use crate::routing::{self, AfterMissed, AgentId, OfferEnd, QueueId, Refused};
use switchboard_api::{
    CallOutcome, CallRecord, ConsultState, MonitorMode, OfferRecord, TransferKind, TransferRecord,
};

/// Why the SIP edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("cannot listen for SIP on {addr}: {why} — is another program using the port? choose another with --sip-listen")]
    Bind { addr: SocketAddr, why: String },
    #[error("cannot start the media thread: {0}")]
    Media(std::io::Error),
}

/// What a leg of the user agent is to the contact center.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// The caller's side of call `n`.
    Caller(u64),
    /// An offer of call `n` to agent `agent` of tenant `tenant` (the agent's side once
    /// answered).
    Offer {
        call: u64,
        tenant: usize,
        agent: AgentId,
    },
    /// The leg to the outside number call `n`'s caller was transferred to.
    Far(u64),
    /// The leg to the colleague or expert `agent` consults on call `call` (none: an outside
    /// number, rung on a trunk).
    Consult {
        call: u64,
        tenant: usize,
        agent: Option<AgentId>,
    },
    /// The leg to supervisor `agent`, who listens in on call `call` (or whispers, or barged
    /// in).
    Monitor {
        call: u64,
        tenant: usize,
        agent: AgentId,
    },
}

/// The party a caller was handed to on a Direct Routing trunk (a Teams user) who transfers
/// them on by REFER, while the new party rings.
#[derive(Debug, Clone)]
struct Referrer {
    leg: UaCall,
    /// The trunk carrying their leg: one of its channels is theirs until they leave.
    trunk: usize,
    /// Who they are, as recorded (`Teams user <MRI>`).
    who: String,
}

/// A supervisor's part in a call: their leg (as a [`Consult`]) and how they take part.
#[derive(Debug, Clone)]
struct Monitor {
    who: Consult,
    mode: MonitorMode,
}

/// The record's step for supervisor `sup` taking part in `agent`'s call as `mode`.
fn monitor_step(sup: &str, mode: MonitorMode, agent: &str) -> String {
    match mode {
        MonitorMode::Listen => format!("{sup} listens in on {agent}"),
        MonitorMode::Whisper => format!("{sup} whispers to {agent}"),
        MonitorMode::Barge => format!("{sup} barges in on {agent}'s call"),
    }
}

/// An agent's consultation on their call: the person consulted and their leg.
#[derive(Debug, Clone)]
struct Consult {
    /// The colleague or expert (or supervisor) consulted; none: an outside number.
    agent: Option<AgentId>,
    /// An outside number's: the trunk whose channel its leg holds.
    trunk: Option<usize>,
    /// Their UPN, or the outside number.
    upn: String,
    leg: UaCall,
    /// They answered.
    up: bool,
    /// Their talk began (for their handle time).
    since: Option<Instant>,
    /// The queue that chose them, when the agent consulted a queue.
    queue: Option<String>,
}

/// An agent's consultation of a queue that waits in it: nobody of the queue is free yet, or
/// callers wait there (they come first). Served in [`Edge::dispatch`], after the callers.
#[derive(Debug, Clone)]
struct ConsultWait {
    queue: QueueId,
    /// The queue's name.
    name: String,
    /// The agent consulting, their UPN, and the target as they gave it (asked again when an
    /// agent of the queue is free).
    agent: AgentId,
    by: String,
    target: String,
    since: Instant,
}

/// Where a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Answered, media not agreed yet; then `first` routes the call.
    Answering { first: Route },
    /// In an attendant's menu: after how many failed tries.
    Menu { attendant: usize, tries: u32 },
    /// Waiting in a queue (or ringing agents).
    Queued,
    /// Hearing why the call cannot go on (this prompt), then hung up.
    Closing(&'static str),
    /// With an agent.
    Talking,
    /// The queue overflowed (full, or the longest wait passed) and offers a callback: the
    /// caller hears the offer, and has [`OVERFLOW_OFFER_WAIT`] after it to press 1.
    OverflowOffer(Refusal),
    /// Accepted a callback: hearing that it will come, then hung up.
    CallbackConfirming,
    /// Waiting for a callback, in the queue, with no leg.
    CallbackWaiting,
    /// An agent answered; the router is calling the caller back.
    CallingBack,
    /// An agent's call to an outside number: ringing there.
    Dialling,
    /// The caller was transferred to an outside number: ringing there.
    Outside,
}

/// A queue's callback, as far as this caller got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callback {
    NotOffered,
    Offered,
    /// The caller chose to keep waiting (key 2).
    Declined,
    /// Asked for at `at`; `attempts` calls placed so far.
    Requested {
        at: Instant,
        attempts: u32,
    },
}

/// Why a queue let a caller go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoAgents,
    Full,
    MaxWait,
}

/// `a`, `a and b`, `a, b and c`.
/// The record of a call refused at once, with `step` and `reason`, on `(tenant, trunk)`
/// (their names); `dialled` empty: `(none)`.
fn refused_record(
    (tenant, trunk): (String, String),
    caller: &str,
    dialled: &str,
    step: String,
    reason: String,
) -> CallRecord {
    let at = time::OffsetDateTime::now_utc();
    CallRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant,
        trunk,
        caller: caller.to_owned(),
        dialled: if dialled.is_empty() {
            "(none)".into()
        } else {
            dialled.to_owned()
        },
        started_at: at,
        answered_at: None,
        ended_at: Some(at),
        choices: Vec::new(),
        queue: None,
        steps: vec![step],
        offers: Vec::new(),
        agent: None,
        outcome: CallOutcome::Refused,
        reason: Some(reason),
        hold_seconds: 0,
        transfers: Vec::new(),
        wrap_up_seconds: None,
        disposition: None,
        notes: None,
        language: None,
    }
}

/// A transfer the router makes now, for the call's record.
fn transfer_record(by: &str, to: &str, kind: TransferKind) -> TransferRecord {
    TransferRecord {
        by: by.to_owned(),
        to: to.to_owned(),
        kind,
        at: time::OffsetDateTime::now_utc(),
    }
}

fn and_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Seconds an agent's outside call rings before it counts as unanswered.
const OUTBOUND_RING_SECONDS: u64 = 60;

/// Seconds a transfer to an agent rings before it fails back.
const DIRECT_ALERT_SECONDS: u64 = 20;

/// Routing steps a call may take (attendant to attendant, to a queue) before it is ended:
/// a loop in the configuration cannot keep a caller forever.
const MAX_HOPS: u32 = 16;

/// A caller's call.
#[derive(Debug)]
struct CallRt {
    id: String,
    tenant: usize,
    /// Its trunk, by index in the tenant's list.
    trunk: usize,
    /// The queue the caller waits (or waited) in.
    queue: Option<QueueId>,
    caller_leg: UaCall,
    caller: String,
    dialled: String,
    stage: Stage,
    /// When the caller first joined a queue: kept across moves so they keep their place.
    since: Option<Instant>,
    /// The attendants the caller went through (for `#`, back).
    menus: Vec<usize>,
    /// What the caller chose (`main:1`), for the agent and the record.
    choices: Vec<String>,
    /// Bumped at every new menu prompt, so that an older no-input timer is ignored.
    menu_generation: u64,
    hops: u32,
    /// 1–5, from the number dialled.
    priority: u8,
    /// The caller left a queue with nowhere to go (full, waited too long).
    overflowed: bool,
    /// Hold: the call's legs that hold it now (the caller's or the agent's phone offered
    /// `sendonly`, `recvonly` or `inactive`), since when, and the time held before.
    holding: Vec<UaCall>,
    hold_since: Option<Instant>,
    /// The caller, a Teams user on a Direct Routing trunk, was told of the agent's hold
    /// (re-INVITE `a=inactive`) and not yet of the resume.
    teams_held: bool,
    /// The caller holds the call in a way that sends nothing (`a=inactive`, as Teams does, or
    /// `recvonly`): the agent's leg that hears the tenant's music meanwhile.
    caller_hold_music: Option<UaCall>,
    /// The party the caller was handed to (`far`) holds them: the caller hears music.
    far_holds: bool,
    held: Duration,
    /// A direct offer (a transfer to an agent) rings this agent.
    direct: Option<AgentId>,
    /// The direct offer rings them in Teams (a transfer to `teams:<person>`), not their
    /// Switchboard phone.
    direct_in_teams: bool,
    /// Never answered: a prompt plays as early media, then the call is refused (404).
    early: bool,
    /// Offers ringing: (leg, agent).
    offers: Vec<(UaCall, AgentId)>,
    /// The agent who answered, and their leg.
    agent: Option<(AgentId, UaCall)>,
    started: Instant,
    answered_at: Option<Instant>,
    /// The call's record, as far as it goes.
    rec: CallRecord,
    /// Offer legs → their place in `rec.offers`.
    offer_rec: HashMap<UaCall, usize>,
    /// Why the call failed, when it did.
    failure: Option<String>,
    /// The queue's callback, offered or asked for.
    callback: Callback,
    /// The call holds one of its trunk's channels (not while a callback waits with no leg).
    on_trunk: bool,
    /// The agent's consultation, while there is one.
    consult: Option<Consult>,
    /// The agent's consultation of a queue while it waits there (no `consult` yet).
    consult_wait: Option<ConsultWait>,
    /// Those a queue chose for the agent's consultation who did not take it (declined, or
    /// did not answer): the queue's next choice passes over them. Cleared when the agent
    /// starts another consultation.
    consult_passed: Vec<AgentId>,
    /// Those the agent brought into a conference on the call, in the order they joined
    /// (besides the caller and the agent).
    joined: Vec<Consult>,
    /// A supervisor listening in, whispering or barged in (one at a time).
    monitor: Option<Monitor>,
    /// An agent's call to an outside number (its `caller_leg` is the called party's).
    outbound: bool,
    /// The agent who placed this call from their phone, inside the tenant (they are its
    /// caller, busy for the queues while it lasts).
    dialler: Option<AgentId>,
    /// The caller's leg is not answered yet: an agent's call to a colleague is answered when
    /// the colleague answers, as a phone call is.
    pending_answer: bool,
    /// The outside number the caller was transferred to: its leg, and the trunk carrying it.
    far: Option<(UaCall, usize)>,
    /// The agent's REFER is being carried out to `far` and they stay on the call until it
    /// answers (a Teams user's transfer): on failure the caller is theirs again.
    transfer_pending: bool,
    /// The party the caller was handed to (a Teams user) passed them on by REFER to `far`,
    /// which rings: they wait for the outcome, theirs again on failure.
    referrer: Option<Referrer>,
    /// An outside number (`far`) answered the call: it left the contact center.
    handed_out: bool,
    /// The caller took the agent's call back.
    called_back: bool,
}

impl CallRt {
    /// A call admitted as `a`, its first leg `leg` to `caller`, at `stage`.
    fn new(
        id: String,
        a: &Admission,
        leg: UaCall,
        caller: String,
        stage: Stage,
        rec: CallRecord,
        now: Instant,
    ) -> Self {
        Self {
            id,
            tenant: a.tenant,
            trunk: a.trunk,
            queue: None,
            caller_leg: leg,
            caller,
            dialled: a.dialled.clone(),
            stage,
            since: None,
            menus: Vec::new(),
            choices: Vec::new(),
            menu_generation: 0,
            hops: 0,
            priority: a.priority,
            overflowed: false,
            holding: Vec::new(),
            hold_since: None,
            teams_held: false,
            caller_hold_music: None,
            far_holds: false,
            held: Duration::ZERO,
            direct: None,
            direct_in_teams: false,
            early: false,
            offers: Vec::new(),
            agent: None,
            started: now,
            answered_at: None,
            rec,
            offer_rec: HashMap::new(),
            failure: None,
            callback: Callback::NotOffered,
            on_trunk: true,
            consult: None,
            consult_wait: None,
            consult_passed: Vec::new(),
            joined: Vec::new(),
            monitor: None,
            outbound: false,
            dialler: None,
            pending_answer: false,
            far: None,
            transfer_pending: false,
            referrer: None,
            handed_out: false,
            called_back: false,
        }
    }

    /// The caller talks with their agent and no one else: no consultation under way or
    /// asked of a queue, no one joined.
    fn alone_with_agent(&self) -> bool {
        self.consult.is_none() && self.consult_wait.is_none() && self.joined.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    RingOut(UaCall),
    /// A transferor's leg that should have ended by now.
    HangUp(UaCall),
    WrapUp(usize, AgentId),
    /// No key after call `n`'s menu prompt (of this generation).
    NoInput(u64, u64),
    /// Time to tell waiting call `n` its place (while in the queue it entered as `hops`).
    Announce(u64, u32),
    /// Time to send trunk (tenant, index) an OPTIONS.
    Probe(usize, usize),
    /// Time to see whether waiting call `n` (in the queue it entered as `hops`) is offered a
    /// callback.
    CallbackOffer(u64, u32),
    /// A callback's call to the caller rang this long unanswered.
    CallbackRing(UaCall),
    /// Call `n`'s callback goes back into its queue after a failed attempt.
    CallbackRetry(u64),
    /// Call `n`'s callback waited its longest.
    CallbackExpire(u64),
    /// Call `n`'s caller (in the queue it entered as `hops`) did not take the callback
    /// offered at overflow in time.
    OverflowOffer(u64, u32),
}

/// The trunk's metrics: `sip_trunk_up` (1 up, 0 down or unknown) and `sip_trunk_calls`.
fn trunk_gauges(tenant: &str, t: &crate::trunks::TrunkRt) {
    let labels = [("tenant", tenant.to_owned()), ("trunk", t.name.clone())];
    let up = matches!(t.health, switchboard_api::TrunkHealth::Up);
    metrics::gauge!("sip_trunk_up", &labels).set(if up { 1.0 } else { 0.0 });
    metrics::gauge!("sip_trunk_calls", &labels).set(t.calls as f64);
}

/// The `sip_trunk_proxy_up` gauge of proxy `p` of trunk `trunk` of `tenant`.
fn proxy_gauge(tenant: &str, trunk: &str, p: &crate::trunks::ProxyRt) {
    let up = p.state.health == switchboard_api::TrunkHealth::Up;
    metrics::gauge!("sip_trunk_proxy_up", "tenant" => tenant.to_owned(), "trunk" => trunk.to_owned(), "proxy" => p.host.clone())
        .set(if up { 1.0 } else { 0.0 });
}

/// An INVITE let in, waiting for the user agent's `IncomingCall`.
struct Admission {
    tenant: usize,
    /// By index in the tenant's list.
    trunk: usize,
    /// `None`: a number the tenant does not have.
    route: Option<Route>,
    dialled: String,
    priority: u8,
    /// It arrived outside its number's opening hours: the record's step (`closed (office)`).
    closed: Option<String>,
    /// An agent's call to the outside number `dialled`, on `trunk`.
    outbound: Option<AgentId>,
    /// An agent's call inside the tenant (a colleague, a queue, an attendant, an expert
    /// group): `route` says where; no trunk is used.
    internal: Option<AgentId>,
    /// Who a trunk asserts the caller is (RFC 3325 P-Asserted-Identity; `anonymous` when
    /// the caller asked for Privacy: id), instead of From.
    asserted: Option<String>,
}

/// The running edge's handle.
pub struct EdgeHandle {
    pub local: SocketAddr,
    /// The TLS listener's address, with `[sip.tls]`.
    pub tls: Option<SocketAddr>,
    pub task: tokio::task::JoinHandle<()>,
}

/// The edge's transports: UDP always; TCP on the same port and TLS when configured.
struct Nets {
    udp: Transports,
    tcp: Option<Transports>,
    tls: Option<Transports>,
}

impl Nets {
    fn of(&mut self, t: Transport) -> Option<&mut Transports> {
        match t {
            Transport::Udp => Some(&mut self.udp),
            Transport::Tcp => self.tcp.as_mut(),
            Transport::Tls => self.tls.as_mut(),
        }
    }

    /// The next thing from any of them, with the transport it came on.
    async fn recv(&mut self) -> Option<(Transport, Incoming)> {
        async fn next(t: Option<&mut Transports>) -> Option<Incoming> {
            match t {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            i = self.udp.recv() => i.map(|i| (Transport::Udp, i)),
            Some(i) = next(self.tcp.as_mut()) => Some((Transport::Tcp, i)),
            Some(i) = next(self.tls.as_mut()) => Some((Transport::Tls, i)),
        }
    }

    /// Sends over `t` without stalling the edge on a connection to be made (a failure comes
    /// back as [`Incoming::Unreachable`]); false when it cannot even start.
    async fn send(&mut self, t: Transport, to: SocketAddr, data: bytes::Bytes) -> bool {
        self.send_named(t, to, None, data).await
    }

    async fn send_named(
        &mut self,
        t: Transport,
        to: SocketAddr,
        name: Option<String>,
        data: bytes::Bytes,
    ) -> bool {
        match self.of(t) {
            Some(n) => n.send_detached(to, name, data).await.is_ok(),
            None => false,
        }
    }

    /// Received messages waiting on all transports.
    fn backlog(&self) -> usize {
        [Some(&self.udp), self.tcp.as_ref(), self.tls.as_ref()]
            .into_iter()
            .flatten()
            .map(Transports::backlog)
            .sum()
    }

    async fn reply(&mut self, t: Transport, to: SocketAddr, data: bytes::Bytes) {
        if let Some(n) = self.of(t) {
            n.reply(to, data).await;
        }
    }
}

struct Edge {
    cc: Arc<CallCenter>,
    net: Nets,
    /// The transport of the message being handled.
    arrived: Transport,
    /// Phones registered over a stream: their Contact → the connection they registered on,
    /// where calls to them go (RFC 5626 §5.3; their Contact may be unreachable behind NAT).
    flows: HashMap<String, (Transport, SocketAddr)>,
    /// Host destinations sent to over a stream, by the address they resolved to, so a
    /// connection that cannot be made fails their transactions at once.
    resolved: HashMap<SocketAddr, Destination>,
    ua: UserAgent,
    registrar: Registrar,
    answered: Answered,
    relay: Relay,
    relay_rx: tokio::sync::mpsc::UnboundedReceiver<RelayEvent>,
    media_ip: IpAddr,
    prompts: Prompts,
    /// Media ports bound for legs whose media is not agreed yet.
    sockets: HashMap<UaCall, std::net::UdpSocket>,
    /// Legs to people rung in Teams over a Direct Routing trunk: (tenant, trunk) they count
    /// against until the user agent says they ended.
    person_trunks: HashMap<UaCall, (usize, usize)>,
    legs: HashMap<UaCall, Leg>,
    calls: HashMap<u64, CallRt>,
    next_call: u64,
    timers: BTreeMap<(Instant, Timer), ()>,
    /// Probe keys (the target `sip:…`; for a Direct Routing proxy, tenant, trunk and
    /// target) → (tenant, trunk index, the proxy's index).
    probes: HashMap<String, (usize, usize, Option<usize>)>,
    admitted: Option<Admission>,
    last_purge: Instant,
    guard: crate::guard::Guard,
    /// Sheds new calls while received messages wait faster than they are handled.
    overload: crate::overload::Overload,
    /// Trunk sources (unique across tenants, checked at start) → (tenant, trunk index).
    trunk_of: HashMap<IpAddr, (usize, usize)>,
    /// Direct Routing trunks by their SBC FQDN (lower case) → (tenant, trunk index).
    dr_fqdns: HashMap<String, (usize, usize)>,
    /// Addresses `[sip.resolve]` gives Direct Routing proxies: their requests may be a
    /// trunk's (besides Microsoft's signalling ranges).
    dr_sources: std::collections::HashSet<IpAddr>,
    /// `[sip.resolve]`: host names (lower case) the edge resolves itself.
    resolve: BTreeMap<String, SocketAddr>,
    /// The port of our TLS listener (Direct Routing Contacts name it).
    tls_port: Option<u16>,
    /// Requests from the API (transfers).
    commands: tokio::sync::mpsc::UnboundedReceiver<crate::desk::EdgeCommand>,
    /// Digest-authenticated trunks: lower-case username → (tenant, trunk index, password).
    trunk_users: HashMap<String, (usize, usize, String)>,
    /// Challenges and checks trunks' INVITEs (407), with nonces of its own.
    trunk_digest: switchboard_sip::auth::DigestServer,
    /// Challenges and checks agents' INVITEs (their outside calls), with nonces of its own.
    agent_digest: switchboard_sip::auth::DigestServer,
    /// When each agent (tenant, agent) placed their outside calls of the last hour.
    dialled: HashMap<(usize, AgentId), std::collections::VecDeque<Instant>>,
    /// When each tenant placed its outside calls of the last hour (agents' calls, and
    /// callers sent to outside numbers).
    tenant_dialled: HashMap<usize, std::collections::VecDeque<Instant>>,
    /// Agents' states are announced at most every [`ANNOUNCE_EVERY`]: when, and whether a
    /// change may be waiting.
    announced: Instant,
    unannounced: bool,
    /// Why the leg being ended ended, while its `Ended` is handled (for callbacks' records).
    end_reason: Option<String>,
}

/// Logs and shows a change of the edge's overload state.
fn overload_changed(change: Option<crate::overload::Change>) {
    use crate::overload::Change;
    match change {
        Some(Change::Began { waiting }) => {
            metrics::gauge!("sip_overloaded").set(1.0);
            tracing::warn!(
                waiting,
                "the SIP edge is overloaded (messages arrive faster than it handles them): a share of new calls, growing with the backlog, gets 503 with Retry-After until it catches up"
            );
        }
        Some(Change::Ended { refused, lasted }) => {
            metrics::gauge!("sip_overloaded").set(0.0);
            tracing::warn!(
                refused,
                lasted_ms = lasted.as_millis() as u64,
                "the SIP edge caught up; every new call is taken again"
            );
        }
        None => {}
    }
}

/// Why a leg ended, for a record: `486 Busy Here`, `no answer`, `unreachable`.
fn describe_end(reason: &switchboard_sip::ua::EndReason) -> String {
    use switchboard_sip::ua::EndReason as E;
    match reason {
        E::Rejected { status, reason } => {
            let text: String = reason
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            format!("{status} {text}")
        }
        E::Timeout => "no answer".into(),
        E::TransportError => "unreachable".into(),
        E::MediaFailed(why) => format!("media: {why}"),
        E::NotSent(_) => "could not be sent".into(),
        _ => "hung up".into(),
    }
}

/// How often agents' state changes are announced at most.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(100);

/// How long a caller has to press 1 after the callback offered at overflow has played.
const OVERFLOW_OFFER_WAIT: Duration = Duration::from_secs(5);

/// The caller a trunk's INVITE asserts (RFC 3325): `anonymous` when it asks for
/// `Privacy: id` (RFC 3323) — agents see no number and none is called back — else the user
/// of its P-Asserted-Identity (Teams puts the caller's number there), else none (From).
fn asserted_caller(m: &Message) -> Option<String> {
    let private = m.headers("Privacy").any(|v| {
        v.split(';')
            .any(|t| t.trim().eq_ignore_ascii_case("id") || t.trim().eq_ignore_ascii_case("user"))
    });
    if private {
        return Some("anonymous".into());
    }
    m.headers("P-Asserted-Identity")
        .flat_map(|v| v.split(','))
        .find_map(safe_user)
}

/// Whom a call through Microsoft's proxy is for.
#[derive(Clone, Copy)]
enum TeamsTarget<'a> {
    /// An E.164 number.
    Number(&'a str),
    /// A Teams user by MRI (`x-m`) and tenant (`x-t`), as a Teams REFER names them.
    User { xm: &'a str, xt: &'a str },
}

/// The value of URI parameter `name` in bare `uri` (`x-m` of `sip:host;x-m=8:orgid:…;x-t=…`):
/// the SIP core's parameter reader, on the URI without its `?` headers.
fn uri_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let uri = uri.split('?').next().unwrap_or_default();
    switchboard_sip::ua::header_param(uri, name)
}

/// Why a transfer a REFER asked for was refused: the status and reason its NOTIFY gives, and
/// why (for the record).
type ReferRefusal = (u16, &'static str, String);

/// The status a REFER's NOTIFY gives for a transfer target that did not answer (`why`, as
/// the leg ended: `486 Busy Here`, `no answer`, …): its own when it was refused with one,
/// else 480.
fn notify_status(why: &str) -> u16 {
    why.split(' ')
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (300..700).contains(s))
        .unwrap_or(480)
}

/// The reason phrase for [`notify_status`] of `why`.
fn reason_for(why: &str) -> &'static str {
    switchboard_sip::ua::reason_phrase(notify_status(why))
}

/// What a Teams REFER's `x-m` and `x-t` may hold: up to 400 characters (Microsoft's
/// bound) of letters, digits and `:-._`.
fn teams_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 400
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-._".contains(c))
}

/// Microsoft's Direct Routing signalling addresses (52.112.0.0/14 and 52.122.0.0/15, as
/// "Plan Direct Routing" lists them): requests from them over TLS may be a Direct Routing
/// trunk's, besides the addresses its proxies resolve to.
fn microsoft_signalling(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            n & 0xfffc_0000 == 0x3470_0000 || n & 0xfffe_0000 == 0x347a_0000
        }
        IpAddr::V6(_) => false,
    }
}

/// How many of `placed` (times, oldest first) are within the hour before `now`; older ones
/// are forgotten.
fn calls_in_last_hour(placed: &mut std::collections::VecDeque<Instant>, now: Instant) -> usize {
    while placed
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(3600))
    {
        placed.pop_front();
    }
    placed.len()
}

/// Whether a caller's number can be called back: an E.164 or national number (`+` then 3–20
/// digits), not `anonymous` or a name.
fn callable(user: &str) -> bool {
    let digits = user.strip_prefix('+').unwrap_or(user);
    (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A SIP user part fit to show and to pass on in a header: at most 64 characters of
/// `+`, digits, letters and `-_.*#`.
fn safe_user(v: &str) -> Option<String> {
    let uri = value_uri(v);
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let user = rest.split('@').next()?.split(';').next()?;
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(c));
    ok.then(|| user.to_owned())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How the edge finds trunks: by source address, by digest user name (with the password),
/// by probe target; and the trunks it probes.
struct TrunkMaps {
    by_source: HashMap<IpAddr, (usize, usize)>,
    probes: HashMap<String, (usize, usize, Option<usize>)>,
    probed: Vec<Timer>,
    users: HashMap<String, (usize, usize, String)>,
    fqdns: HashMap<String, (usize, usize)>,
    dr_sources: std::collections::HashSet<IpAddr>,
}

/// The key a Direct Routing proxy's probe answers under: one target is probed once per
/// tenant (each names its own FQDN).
fn dr_probe_key(tenant: &str, trunk: &str, target: &str) -> String {
    format!("{tenant}|{trunk}|{target}")
}

fn trunk_maps(cc: &CallCenter, resolve: &BTreeMap<String, SocketAddr>) -> TrunkMaps {
    cc.with(|d| {
        let mut maps = TrunkMaps {
            by_source: HashMap::new(),
            probes: HashMap::new(),
            probed: Vec::new(),
            users: HashMap::new(),
            fqdns: HashMap::new(),
            dr_sources: Default::default(),
        };
        for (i, t) in d.tenants.iter().enumerate() {
            for (j, tr) in t.spec.trunks.iter().enumerate() {
                for ip in &tr.allow {
                    maps.by_source.insert(*ip, (i, j));
                }
                if let (Some(u), Some(p)) = (&tr.username, &tr.password) {
                    maps.users
                        .insert(u.to_ascii_lowercase(), (i, j, p.0.clone()));
                }
                if let Some(p) = &tr.probe {
                    maps.probes.insert(p.clone(), (i, j, None));
                    maps.probed.push(Timer::Probe(i, j));
                }
                if let Some(dr) = &tr.direct_routing {
                    maps.fqdns.insert(dr.fqdn.to_ascii_lowercase(), (i, j));
                    maps.probed.push(Timer::Probe(i, j));
                    for (k, (host, port)) in dr.proxy_hosts().into_iter().enumerate() {
                        let target = crate::trunks::ProxyRt::target(&host, port);
                        maps.probes
                            .insert(dr_probe_key(&t.spec.id, &tr.name, &target), (i, j, Some(k)));
                        if let Some(a) = resolve.get(&host) {
                            maps.dr_sources.insert(a.ip());
                        }
                    }
                }
                if let Some(rt) = t.trunks.get(j) {
                    trunk_gauges(&t.spec.id, rt);
                }
            }
        }
        maps
    })
}

/// Binds the SIP edge on `cfg.listen` and runs it until `shutdown`.
pub async fn start(
    cfg: &SipConfig,
    listen: SocketAddr,
    cc: Arc<CallCenter>,
    shutdown: watch::Receiver<bool>,
) -> Result<EdgeHandle, EdgeError> {
    let bind = |t: Transport, addr: SocketAddr, tls: TlsSettings| async move {
        Transports::bind(t, addr, &tls)
            .await
            .map_err(|e| EdgeError::Bind {
                addr,
                why: e.to_string(),
            })
    };
    // TCP on the port UDP got (the same one unless it was 0; then, if that port is taken for
    // TCP, another pair is tried).
    let (udp, tcp) = {
        let mut tries = 0;
        loop {
            let udp = bind(Transport::Udp, listen, TlsSettings::default()).await?;
            if !cfg.tcp {
                break (udp, None);
            }
            match bind(Transport::Tcp, udp.local_addr(), TlsSettings::default()).await {
                Ok(tcp) => break (udp, Some(tcp)),
                Err(_) if listen.port() == 0 && tries < 8 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    };
    let local = udp.local_addr();
    let tls = match &cfg.tls {
        Some(t) => {
            let settings = TlsSettings {
                ca_file: t.ca.clone(),
                cert_file: Some(t.certificate.clone()),
                key_file: Some(t.key.clone()),
                mutual: t.mutual,
            };
            Some(bind(Transport::Tls, t.listen, settings).await?)
        }
        None => None,
    };
    let media_ip = cfg.media_address.unwrap_or(local.ip());
    let ua = UserAgent::new(UaConfig {
        user: "switchboard".into(),
        domain: cfg.realm.clone(),
        display_name: None,
        credentials: None,
        contact_host: local.to_string(),
        transport: Transport::Udp,
        outbound_proxy: None,
        timers: Default::default(),
        user_agent: format!("Switchboard-Router/{}", env!("CARGO_PKG_VERSION")),
    });
    let mut ua = ua;
    if let Some(t) = &tcp {
        ua.add_transport(Transport::Tcp, t.local_addr().to_string());
    }
    let tls_at = tls.as_ref().map(|t| {
        let port = t.local_addr().port();
        let host = cfg.tls.as_ref().and_then(|c| c.host.clone());
        host.map_or_else(|| t.local_addr().to_string(), |h| format!("{h}:{port}"))
    });
    if let Some(at) = &tls_at {
        ua.add_transport(Transport::Tls, at.clone());
    }
    // A contact center's calls, not a phone's: room for thousands of legs and transactions
    // (a trunk's SBC sends every call from one address; the guard bounds strangers' floods).
    ua.set_limits(switchboard_sip::ua::Limits {
        calls: 20_000,
        server_transactions: 100_000,
        per_source: 50_000,
    });
    let secret: [u8; 32] = rand::random();
    let registrar = Registrar::new(
        RegistrarConfig {
            realm: cfg.realm.clone(),
            max_expires: cfg.max_expires,
            default_expires: cfg.max_expires.min(3600),
            ..RegistrarConfig::default()
        },
        secret,
        cfg.digest.algorithm(),
    );
    // Phones registered before a restart (their sessions were kept): their bindings come back
    // until they expire or the phone refreshes.
    let mut registrar = registrar;
    let (now, now_unix) = (Instant::now(), unix_now());
    let kept: Vec<(String, String, u64)> = cc.with(|d| {
        d.tenants
            .iter()
            .flat_map(|t| t.agents.iter())
            .filter_map(|a| Some((a.aor.clone()?, a.contact.clone()?, a.registered_until?)))
            .collect()
    });
    for (aor, contact, until) in &kept {
        let left = Duration::from_secs(until.saturating_sub(now_unix));
        registrar.restore(aor, contact, now + left);
    }
    if !kept.is_empty() {
        tracing::info!(
            phones = kept.len(),
            "registrations kept from before the restart"
        );
    }
    let (tx, relay_rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = Relay::start(tx).map_err(EdgeError::Media)?;
    let languages: Vec<&str> = crate::center::LANGUAGES.to_vec();
    let greetings: Vec<String> = cc.with(|d| {
        d.tenants
            .iter()
            .flat_map(|t| t.attendants.iter().map(|a| a.greeting.clone()))
            .collect()
    });
    let dir = cfg
        .prompts_dir
        .clone()
        .unwrap_or_else(crate::prompts::default_dir);
    cc.with(|d| d.prompts_dir = Some(dir.clone()));
    let prompts = tokio::task::spawn_blocking(move || Prompts::load(&dir, &languages, &greetings))
        .await
        .map_err(|e| EdgeError::Media(std::io::Error::other(e)))?;
    // Where agents' phones are told to register.
    let register_at = match (cfg.agents_transport, &tcp, &tls_at) {
        (AgentsTransport::Tcp, Some(t), _) => format!("sip:{};transport=tcp", t.local_addr()),
        (AgentsTransport::Tls, _, Some(at)) => format!("sips:{at}"),
        (AgentsTransport::Udp, _, _) => format!("sip:{local}"),
        (t, _, _) => {
            tracing::warn!(?t, "[sip] agents_transport names a transport that is not set up; agents register over UDP");
            format!("sip:{local}")
        }
    };
    cc.with(|d| d.registrar = Some(register_at));
    let (command_tx, commands) = tokio::sync::mpsc::unbounded_channel();
    let _ = cc.commands.set(command_tx);
    let resolve: BTreeMap<String, SocketAddr> = cfg
        .resolve
        .iter()
        .map(|(h, a)| (h.to_ascii_lowercase(), *a))
        .collect();
    let TrunkMaps {
        by_source: trunk_of,
        probes,
        probed: first_probes,
        users: trunk_users,
        fqdns: dr_fqdns,
        dr_sources,
    } = trunk_maps(&cc, &resolve);
    // Every Direct Routing trunk is checked against the certificate the router has now: the
    // ones kept from the API were checked when they were put, perhaps against another
    // certificate; the file's pass here (the file was refused otherwise as it was read).
    let direct_routing: Vec<_> = cc.with(|d| {
        d.sip_tls = cfg.tls.clone();
        d.tenants
            .iter()
            .flat_map(|t| {
                t.spec
                    .trunks
                    .iter()
                    .filter(|tr| !tr.retired)
                    .filter_map(|tr| {
                        let dr = tr.direct_routing.clone()?;
                        Some((t.spec.id.clone(), tr.name.clone(), dr))
                    })
            })
            .collect()
    });
    for (tenant, trunk, dr) in direct_routing {
        if let Some(p) = dr.sbc_problem(cfg.tls.as_ref()) {
            tracing::error!(%tenant, %trunk, "{p}: the trunk cannot call or be called until this is fixed");
        }
    }
    let trunk_digest = switchboard_sip::auth::DigestServer::new(
        cfg.realm.clone(),
        rand::random(),
        cfg.digest.algorithm(),
    );
    let agent_digest = switchboard_sip::auth::DigestServer::new(
        cfg.realm.clone(),
        rand::random(),
        cfg.digest.algorithm(),
    );
    // The first probes a second after start, then every trunk's `probe_seconds`.
    let mut timers = BTreeMap::new();
    for t in first_probes {
        timers.insert((Instant::now() + Duration::from_secs(1), t), ());
    }
    let transports: Vec<&str> = [
        Some("UDP"),
        tcp.as_ref().map(|_| "TCP"),
        tls.as_ref().map(|_| "TLS"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tls_local = tls.as_ref().map(|t| t.local_addr());
    let mut edge = Edge {
        cc,
        net: Nets { udp, tcp, tls },
        arrived: Transport::Udp,
        flows: HashMap::new(),
        resolved: HashMap::new(),
        ua,
        registrar,
        answered: Answered::default(),
        relay,
        relay_rx,
        media_ip,
        prompts,
        sockets: HashMap::new(),
        person_trunks: HashMap::new(),
        legs: HashMap::new(),
        calls: HashMap::new(),
        next_call: 1,
        timers,
        probes,
        admitted: None,
        last_purge: Instant::now(),
        guard: crate::guard::Guard::new(crate::guard::Limits::default()),
        overload: crate::overload::Overload::new(crate::overload::Thresholds::from_full(
            cfg.overload_queue,
        )),
        trunk_of,
        dr_fqdns,
        dr_sources,
        resolve,
        tls_port: tls_local.map(|a| a.port()),
        trunk_users,
        trunk_digest,
        agent_digest,
        dialled: HashMap::new(),
        tenant_dialled: HashMap::new(),
        commands,
        announced: Instant::now(),
        unannounced: true,
        end_reason: None,
    };
    tracing::info!(%local, tls = ?tls_local, media = %media_ip, transports = %transports.join(", "), "SIP edge listening");
    edge.restore_callbacks(Instant::now());
    let task = tokio::spawn(edge.run(shutdown));
    Ok(EdgeHandle {
        local,
        tls: tls_local,
        task,
    })
}

impl Edge {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.settle().await;
            let now = Instant::now();
            if self.overload.shedding() {
                // The queue may drain with no new call arriving to notice it.
                let change = self.overload.observe(self.net.backlog(), now);
                overload_changed(change);
            }
            if now >= self.announced + ANNOUNCE_EVERY {
                self.cc.publish_agent_changes();
                self.announced = now;
                self.unannounced = false;
            } else {
                self.unannounced = true;
            }
            let announce = self.unannounced.then_some(self.announced + ANNOUNCE_EVERY);
            let wake = self
                .ua
                .poll_timeout()
                .into_iter()
                .chain(self.timers.keys().next().map(|(t, _)| *t))
                .chain(self.cc.with(|d| {
                    d.tenants
                        .iter()
                        .filter_map(|t| t.engine.poll_timeout())
                        .min()
                }))
                .chain(Some(self.last_purge + Duration::from_secs(5)))
                .chain(announce)
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let cc = self.cc.clone();
            tokio::select! {
                item = self.net.recv() => match item {
                    Some((t, Incoming::Message(m, from))) => {
                        self.arrived = t;
                        self.on_message(&m, from).await;
                    }
                    Some((t, Incoming::Garbage(from, _why, reply))) => {
                        if let Some(r) = reply {
                            self.net.reply(t, from, r).await;
                        }
                    }
                    Some((t, Incoming::Closed(addr))) => {
                        // A phone's connection closed: calls to it go to its Contact until it
                        // registers again.
                        self.flows.retain(|_, f| *f != (t, addr));
                    }
                    Some((t, Incoming::Unreachable(addr, why))) => {
                        tracing::info!(%addr, transport = t.via_name(), %why, "SIP connection failed");
                        self.flows.retain(|_, f| *f != (t, addr));
                        let now = Instant::now();
                        self.ua.transport_error(&Destination::Addr(addr), now);
                        if let Some(d) = self.resolved.remove(&addr) {
                            self.ua.transport_error(&d, now);
                        }
                    }
                    None => {
                        tracing::error!("the SIP transport stopped; the edge stops");
                        return;
                    }
                },
                Some(ev) = self.relay_rx.recv() => self.on_relay(ev),
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                _ = cc.wake.notified() => self.dispatch(),
                _ = sleep => self.on_timeout(),
                r = shutdown.changed() => {
                    let stopping = r.is_err() || *shutdown.borrow();
                    if stopping {
                        self.stop().await;
                        return;
                    }
                }
            }
        }
    }

    /// Sends what the user agent queued and handles what it reported, until both are empty
    /// (handling an event may queue more).
    async fn settle(&mut self) {
        loop {
            let mut any = false;
            while let Some(Transmit {
                to,
                data,
                transport,
            }) = self.ua.poll_transmit()
            {
                any = true;
                let (addr, name) = match &to {
                    Destination::Addr(a) => (Some(*a), None),
                    Destination::Host { host, port } => {
                        let default = if transport == Transport::Tls {
                            5061
                        } else {
                            5060
                        };
                        let a = match self.resolve.get(&host.to_ascii_lowercase()) {
                            Some(a) => Some(*a),
                            None => {
                                tokio::net::lookup_host((host.as_str(), port.unwrap_or(default)))
                                    .await
                                    .ok()
                                    .and_then(|mut it| it.find(|a| a.is_ipv4()))
                            }
                        };
                        (a, Some(host.clone()))
                    }
                };
                let sent = match addr {
                    Some(a) => {
                        if transport.is_stream() && name.is_some() {
                            self.resolved.insert(a, to.clone());
                        }
                        self.net.send_named(transport, a, name, data).await
                    }
                    None => false,
                };
                if !sent {
                    self.ua.transport_error(&to, Instant::now());
                }
            }
            while let Some(ev) = self.ua.poll_event() {
                any = true;
                self.on_ua_event(ev);
            }
            if !any {
                return;
            }
        }
    }

    async fn on_message(&mut self, m: &Message, from: SocketAddr) {
        let now = Instant::now();
        if !m.is_request() {
            self.ua.handle_message_on(m, from, self.arrived, now);
            return;
        }
        // A Direct Routing proxy's request names its tenant's FQDN: that first, since one
        // address may also be another trunk's (the proxies serve every tenant).
        let trunk = self
            .dr_trunk_of(m, from)
            .or_else(|| self.trunk_of.get(&from.ip()).copied());
        if let Err(ban) = self.guard.admit(from.ip(), trunk.is_some(), now) {
            metrics::counter!("sip_requests_refused_total", "why" => "banned").increment(1);
            if let Some(why) = ban {
                metrics::counter!("sip_sources_banned_total", "why" => "flooding").increment(1);
                tracing::warn!(source = %from.ip(), ?why, "a source sends too many requests; refusing it for a while");
            }
            return;
        }
        if let Some((tenant, j)) = trunk {
            // A request from a trunk (its keep-alive OPTIONS, a call): it is alive.
            self.cc.with(|d| {
                let t = &mut d.tenants[tenant];
                if t.trunks[j].heard() {
                    tracing::info!(tenant = %t.spec.id, trunk = %t.trunks[j].name, "trunk up: it sent a request");
                    trunk_gauges(&t.spec.id, &t.trunks[j]);
                }
            });
        }
        if m.method().as_deref() == Some("INVITE")
            && !has_to_tag(m)
            && !self.ua.is_retransmission(m)
        {
            // A new call while the edge falls behind: refused before any work is spent on it,
            // so the calls under way keep their time (their retransmissions pass).
            let (take, change) = self.overload.admit(self.net.backlog(), now);
            overload_changed(change);
            if !take {
                metrics::counter!("sip_requests_refused_total", "why" => "overload").increment(1);
                if let Some(r) = response(
                    m,
                    503,
                    "Service Unavailable",
                    &[crate::overload::RETRY_AFTER],
                ) {
                    let _ = self.net.send(self.arrived, from, r).await;
                }
                return;
            }
        }
        match m.method().as_deref() {
            Some("REGISTER") => self.on_register(m, from, now).await,
            Some("INVITE") if !has_to_tag(m) && self.agent_calling(m).is_some() => {
                self.on_agent_invite(m, from, now).await;
            }
            Some("INVITE") if !has_to_tag(m) => {
                let trunk = match self.trunk_of_invite(m, from, trunk, now) {
                    Ok(t) => t,
                    Err(reply) => {
                        if let Some(r) = reply {
                            let _ = self.net.send(self.arrived, from, r).await;
                        }
                        return;
                    }
                };
                match self.admit(m, trunk) {
                    Ok(mut a) => {
                        a.asserted = asserted_caller(m);
                        self.admitted = Some(a);
                        self.ua.handle_message_on(m, from, self.arrived, now);
                        // The IncomingCall it raised takes the admission.
                        self.settle().await;
                        self.admitted = None;
                    }
                    Err((status, reason)) => {
                        tracing::info!(%from, status, reason, "INVITE refused");
                        if let Some(r) = response(m, status, reason, &[]) {
                            let _ = self.net.send(self.arrived, from, r).await;
                        }
                        if status == 503 {
                            self.trunk_full_record(m, trunk);
                        }
                    }
                }
            }
            _ => self.ua.handle_message_on(m, from, self.arrived, now),
        }
    }

    /// A call refused (503) because its trunk already carried `max_calls` calls: its record
    /// says so, as the carrier's blocked calls are what capacity is planned from.
    fn trunk_full_record(&self, m: &Message, (tenant, j): (usize, usize)) {
        let dialled = m
            .request_uri()
            .and_then(|u| safe_user(&u))
            .unwrap_or_default();
        let caller = asserted_caller(m)
            .or_else(|| m.headers("From").find_map(safe_user))
            .unwrap_or_else(|| "anonymous".into());
        let (tenant_id, name, max) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let tr = &t.trunks[j];
            (t.spec.id.clone(), tr.name.clone(), tr.max_calls)
        });
        let why = format!("trunk {name} is full (max_calls = {max})");
        tracing::info!(tenant = %tenant_id, trunk = %name, %caller, "a call was refused: the trunk is full");
        let step = "refused: trunk full".to_owned();
        self.write(&refused_record(
            (tenant_id, name),
            &caller,
            &dialled,
            step,
            why,
        ));
    }

    /// Calls an agent's phone at its registered Contact: over the connection it registered
    /// on when that was a stream, else where the Contact says.
    fn call_phone(
        &mut self,
        contact: &str,
        port: u16,
        headers: Vec<String>,
        now: Instant,
    ) -> Result<UaCall, switchboard_sip::ua::UaError> {
        let hop = self.flows.get(contact).copied();
        // A phone over TLS gets SRTP (SDES) offered and required: its calls are private end
        // to end of its leg, as its signalling is.
        let tls = hop.map(|(t, _)| t) == Some(Transport::Tls)
            || (hop.is_none() && Transport::of_uri(contact) == Some(Transport::Tls));
        let media = self.local_media(port, tls);
        self.ua.invite_over(contact, hop, media, headers, now)
    }

    /// Rings agent (or expert) `agent` of `tenant`: their registered phone (unless
    /// `in_teams`), else their Teams number over the tenant's Direct Routing trunk (showing
    /// `caller`'s number when it is E.164; the router's own `X-Switchboard-*` lines stay
    /// inside).
    #[allow(clippy::too_many_arguments)]
    fn ring_person(
        &mut self,
        tenant: usize,
        agent: AgentId,
        caller: &str,
        headers: Vec<String>,
        port: u16,
        in_teams: bool,
        now: Instant,
    ) -> Result<UaCall, String> {
        let (contact, teams) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            (
                t.agent(agent)
                    .and_then(|a| a.contact.clone())
                    .filter(|_| !in_teams),
                t.teams_reach(agent),
            )
        });
        match (contact, teams) {
            (Some(contact), _) => self
                .call_phone(&contact, port, headers, now)
                .map_err(|e| format!("cannot call {contact}: {e}")),
            (None, Some((j, number))) => {
                // The trunk's cap holds for these legs as for callers'.
                let full = self.cc.with(|d| {
                    let t = &d.tenants[tenant];
                    t.trunks
                        .get(j)
                        .map(|x| (x.calls >= x.max_calls, x.name.clone()))
                });
                if let Some((true, name)) = full {
                    return Err(format!(
                        "trunk {name} is full (max_calls): the Teams number cannot be rung now"
                    ));
                }
                let shown = crate::center::is_e164(caller).then_some(caller);
                let leg = self.trunk_call(tenant, j, &number, shown, Vec::new(), port, now)?;
                Self::seize_trunk(&self.cc, tenant, j);
                self.person_trunks.insert(leg, (tenant, j));
                Ok(leg)
            }
            (None, None) => Err("no phone registered and no Teams number".into()),
        }
    }

    /// Calls `number` on trunk `j` of `tenant`, showing `caller_id` (P-Asserted-Identity;
    /// on Direct Routing the From too). A Direct Routing trunk takes E.164 numbers only and
    /// sends to its healthy proxies first, failing over to the next on 408/503/504 or
    /// silence; the call names the SBC's FQDN, carries `X-MS-SBC`, and offers SRTP.
    #[allow(clippy::too_many_arguments)]
    fn trunk_call(
        &mut self,
        tenant: usize,
        j: usize,
        number: &str,
        caller_id: Option<&str>,
        mut headers: Vec<String>,
        port: u16,
        now: Instant,
    ) -> Result<UaCall, String> {
        let (spec, order, domain) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            (
                t.spec.trunks.get(j).cloned(),
                t.trunks.get(j).map(|x| x.proxy_order()).unwrap_or_default(),
                t.spec.domain.clone(),
            )
        });
        let spec = spec.ok_or("no such trunk")?;
        let cid = caller_id.and_then(|c| safe_user(&format!("sip:{c}@x")));
        let Some(dr) = &spec.direct_routing else {
            let to = spec
                .outbound_address()
                .ok_or("the trunk has no outbound target")?;
            if let Some(cid) = &cid {
                headers.push(format!("P-Asserted-Identity: <sip:{cid}@{domain}>"));
            }
            let uri = format!("sip:{number}@{to}");
            return self
                .ua
                .invite(&uri, self.local_media(port, false), headers, now)
                .map_err(|e| format!("cannot call {uri}: {e}"));
        };
        if !crate::center::is_e164(number) {
            return Err(format!(
                "{number} is not an E.164 number: Teams Direct Routing takes +, the country code and the number"
            ));
        }
        let fqdn = dr.fqdn.clone();
        self.teams_call(
            &fqdn,
            &order,
            TeamsTarget::Number(number),
            cid.as_deref(),
            headers,
            port,
            now,
        )
    }

    /// Calls a Teams user (by number, or by the MRI a Teams REFER named) through the
    /// proxies of the Direct Routing trunk of SBC `fqdn`, in `order`.
    #[allow(clippy::too_many_arguments)]
    fn teams_call(
        &mut self,
        fqdn: &str,
        order: &[(String, u16)],
        target: TeamsTarget<'_>,
        cid: Option<&str>,
        mut headers: Vec<String>,
        port: u16,
        now: Instant,
    ) -> Result<UaCall, String> {
        let face = self.dr_face(fqdn).ok_or(
            "a Direct Routing trunk needs [sip.tls] (the certificate naming the SBC's FQDN)",
        )?;
        let fqdn = fqdn.to_ascii_lowercase();
        // Microsoft wants E.164 in From and P-Asserted-Identity; a caller id that is not
        // goes out as anonymous with Privacy (RFC 3323).
        let from = match cid.filter(|c| crate::center::is_e164(c)) {
            Some(c) => {
                headers.push(format!("P-Asserted-Identity: <sip:{c}@{fqdn};user=phone>"));
                format!("sip:{c}@{fqdn};user=phone")
            }
            None => {
                headers.push("Privacy: id".into());
                format!("sip:anonymous@{fqdn}")
            }
        };
        let mut uris = order.iter().map(|(h, p)| match target {
            TeamsTarget::Number(number) => {
                format!("sip:{number}@{h}:{p};user=phone;transport=tls")
            }
            TeamsTarget::User { xm, xt } => format!("sip:{h}:{p};transport=tls;x-m={xm};x-t={xt}"),
        });
        let first = uris.next().ok_or("the trunk has no proxies")?;
        let bypass = self
            .dr_fqdns
            .get(&fqdn)
            .is_some_and(|(t, j)| self.bypass_on(*t, *j));
        let how = switchboard_sip::ua::Placement {
            hop: None,
            from: Some(from),
            face: Some(face),
            alternates: uris.collect(),
        };
        self.ua
            .invite_with(
                &format!("<{first}>"),
                how,
                self.leg_media(port, true, bypass),
                headers,
                now,
            )
            .map_err(|e| format!("cannot call {first}: {e}"))
    }

    /// How the router presents itself on a Direct Routing trunk of SBC `fqdn`: the FQDN and
    /// our TLS port in Contact and Via, and `X-MS-SBC`. None without a TLS listener.
    fn dr_face(&self, fqdn: &str) -> Option<switchboard_sip::ua::Face> {
        // The port paired in the tenant, else the one we listen on.
        let paired = self
            .dr_fqdns
            .get(&fqdn.to_ascii_lowercase())
            .and_then(|&(i, j)| {
                self.cc.with(|d| {
                    d.tenants
                        .get(i)?
                        .spec
                        .trunks
                        .get(j)?
                        .direct_routing
                        .as_ref()?
                        .sip_port
                })
            });
        let port = self.tls_port.map(|p| paired.unwrap_or(p))?;
        Some(switchboard_sip::ua::Face {
            contact_host: format!("{}:{port}", fqdn.to_ascii_lowercase()),
            headers: vec![format!(
                "X-MS-SBC: Switchboard/Router/{}",
                env!("CARGO_PKG_VERSION")
            )],
        })
    }

    /// The Direct Routing trunk a request from `from` is for: it came over TLS from one of
    /// Microsoft's proxies (their signalling ranges, or an address `[sip.resolve]` gives one)
    /// on a connection whose handshake proved the peer to be one of the trunk's proxies (we
    /// connected to that name, or its client certificate names it), and its Request-URI names
    /// the SBC FQDN of one of our tenants' trunks.
    fn dr_trunk_of(&self, m: &Message, from: SocketAddr) -> Option<(usize, usize)> {
        if self.arrived != Transport::Tls || self.dr_fqdns.is_empty() {
            return None;
        }
        if !self.dr_sources.contains(&from.ip()) && !microsoft_signalling(from.ip()) {
            return None;
        }
        let uri = m.request_uri()?;
        let (host, _) = switchboard_sip::ua::uri_host_port(&uri)?;
        let (i, j) = self.dr_fqdns.get(&host.to_ascii_lowercase()).copied()?;
        let identity = self.net.tls.as_ref().and_then(|t| t.peer_identity(&from));
        let proxies = self.cc.with(|d| {
            d.tenants
                .get(i)
                .and_then(|t| t.spec.trunks.get(j))
                .and_then(|t| t.direct_routing.as_ref())
                .map(|dr| dr.proxy_hosts())
                .unwrap_or_default()
        });
        let proven = identity
            .as_ref()
            .is_some_and(|id| proxies.iter().any(|(name, _)| id.is_for(name)));
        if !proven {
            metrics::counter!("sip_requests_refused_total", "why" => "proxy-certificate")
                .increment(1);
            let shown = match &identity {
                None => "no certificate",
                Some(_) => "a certificate naming none of them",
            };
            tracing::warn!(source = %from, method = %m.method().unwrap_or_default(), sbc = %host, shown, "a request for a Direct Routing trunk from a proxy address whose TLS connection does not prove it is one of the trunk's proxies; refused as a stranger's");
            return None;
        }
        Some((i, j))
    }

    /// Our media for a leg on `port`: plain RTP offered, with SDES keys (RFC 4568) to answer
    /// an SRTP offer with; with `srtp`, SRTP offered and required instead.
    fn local_media(&self, port: u16, srtp: bool) -> LocalMedia {
        use switchboard_media::srtp::{SdesKey, Suite};
        let mut m = LocalMedia::new(self.media_ip, port);
        m.crypto = [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm]
            .iter()
            .enumerate()
            .map(|(i, s)| SdesKey::generate(i as u32 + 1, *s).to_attribute())
            .collect();
        m.plain_offer = !srtp;
        m.require_srtp = srtp;
        m
    }

    /// Whether trunk `trunk` of tenant `tenant` is a Direct Routing trunk with media bypass.
    fn bypass_on(&self, tenant: usize, trunk: usize) -> bool {
        self.cc.with(|d| {
            d.tenants
                .get(tenant)
                .and_then(|t| t.spec.trunks.get(trunk))
                .and_then(|tr| tr.direct_routing.as_ref())
                .is_some_and(|dr| dr.media_bypass)
        })
    }

    /// Our media for a leg on `port`, as [`Self::local_media`]; with `bypass` (a Teams leg of
    /// a trunk with media bypass) also ICE-lite, the media address being the one candidate.
    /// Microsoft takes one IPv4 candidate only: on an IPv6 or unspecified media address no
    /// ICE is offered, and Teams relays the media through its media processors.
    fn leg_media(&self, port: u16, srtp: bool, bypass: bool) -> LocalMedia {
        let mut m = self.local_media(port, srtp);
        if bypass {
            if self.media_ip.is_ipv4() && !self.media_ip.is_unspecified() {
                m.ice = Some(switchboard_sip::sdp::IceLite::generate());
            } else {
                tracing::warn!(media = %self.media_ip, "media bypass needs an IPv4 media address ([sip] media_address): no ICE offered");
            }
        }
        m
    }

    async fn on_register(&mut self, m: &Message, from: SocketAddr, now: Instant) {
        let key = m
            .top_via_branch()
            .filter(|b| b.starts_with("z9hG4bK"))
            .map(|b| (b.to_owned(), from));
        if let Some(reply) = key.as_ref().and_then(|k| self.answered.get(k, now)) {
            let _ = self.net.send(self.arrived, from, reply).await;
            return;
        }
        let cc = self.cc.clone();
        let reply = self
            .registrar
            .handle_register(m, now, unix_now(), |user| cc.with(|d| d.password_of(user)));
        if let Some(aor) = m.header("To").and_then(address_of_record) {
            let user = aor
                .split_once(':')
                .and_then(|(_, r)| r.rsplit_once('@'))
                .map(|(u, _)| u.to_owned());
            if let Some(user) = user {
                let binding = self.registrar.lookup(&aor, now).into_iter().next();
                let until = binding
                    .as_ref()
                    .map(|b| unix_now() + b.expires_at.saturating_duration_since(now).as_secs());
                let contact = binding.map(|b| b.contact);
                if let Some(c) = &contact {
                    if self.arrived.is_stream() {
                        self.flows.insert(c.clone(), (self.arrived, from));
                    } else {
                        self.flows.remove(c);
                    }
                }
                self.cc.with(|d| {
                    d.registered(&user, &aor, contact, now);
                    if let Some(until) = until {
                        d.registration_lasts(&user, until);
                    }
                });
                self.cc.wake.notify_one();
            }
        }
        if let Some(reply) = &reply {
            // A wrong digest (not a first challenge, not a stale nonce) counts against the
            // source: guessing passwords gets it banned.
            let status = reply.get(8..11).and_then(|s| std::str::from_utf8(s).ok());
            let stale = reply
                .windows(10)
                .any(|w| w.eq_ignore_ascii_case(b"stale=true"));
            let answered = m.header("Authorization").is_some();
            if answered && (status == Some("403") || (status == Some("401") && !stale)) {
                metrics::counter!("sip_auth_failures_total").increment(1);
                if let Some(why) = self.guard.auth_failed(from.ip(), now) {
                    metrics::counter!("sip_sources_banned_total", "why" => "guessing").increment(1);
                    tracing::warn!(source = %from.ip(), ?why, "a source keeps failing digest authentication; refusing it for a while");
                }
            }
        }
        if let Some(reply) = reply {
            let _ = self.net.send(self.arrived, from, reply.clone()).await;
            if let Some(k) = key {
                self.answered.insert(k, reply, now);
            }
        }
    }

    /// The trunk a new INVITE comes on: by its source, and by digest where the trunk asks for
    /// it (or where the source is no trunk's and some trunk is known by digest alone). `Err`
    /// holds the answer to send instead: 403 for a stranger, 407 with a challenge, 403 for a
    /// wrong answer (which counts against the source, as the registrar's do).
    fn trunk_of_invite(
        &mut self,
        m: &Message,
        from: SocketAddr,
        by_source: Option<(usize, usize)>,
        now: Instant,
    ) -> Result<(usize, usize), Option<bytes::Bytes>> {
        let needs_digest = |(t, j): (usize, usize)| {
            self.trunk_users
                .values()
                .any(|(ut, uj, _)| (*ut, *uj) == (t, j))
        };
        match by_source {
            Some(t) if !needs_digest(t) => return Ok(t),
            None if self.trunk_users.is_empty() => {
                return Err(response(m, 403, "Forbidden", &[]));
            }
            _ => {}
        }
        let challenge = |digest: &switchboard_sip::auth::DigestServer, stale: bool| {
            let h = format!(
                "Proxy-Authenticate: {}",
                digest.challenge(unix_now(), stale)
            );
            response(m, 407, "Proxy Authentication Required", &[&h])
        };
        let Some(auth) = m.header("Proxy-Authorization") else {
            return Err(challenge(&self.trunk_digest, false));
        };
        let uri = m.request_uri().unwrap_or_default();
        let users = &self.trunk_users;
        // With a source, only that trunk's own username will do.
        let password_of = |user: &str| {
            users
                .get(&user.to_ascii_lowercase())
                .filter(|(t, j, _)| by_source.is_none_or(|s| s == (*t, *j)))
                .map(|(_, _, p)| p.clone())
        };
        use switchboard_sip::auth::Refusal;
        match self
            .trunk_digest
            .verify(auth, "INVITE", &uri, unix_now(), password_of)
        {
            Ok(user) => {
                let Some(&(t, j, _)) = self.trunk_users.get(&user.to_ascii_lowercase()) else {
                    return Err(response(m, 403, "Forbidden", &[]));
                };
                self.cc.with(|d| {
                    let tn = &mut d.tenants[t];
                    if tn.trunks[j].heard() {
                        trunk_gauges(&tn.spec.id, &tn.trunks[j]);
                    }
                });
                Ok((t, j))
            }
            Err(Refusal::Stale | Refusal::Replay) => Err(challenge(&self.trunk_digest, true)),
            Err(Refusal::WrongUri(_)) => Err(response(m, 400, "Digest URI Mismatch", &[])),
            Err(why @ (Refusal::UnknownUser(_) | Refusal::WrongPassword(_))) => {
                tracing::info!(%from, why = %why, "a trunk's digest answer was refused");
                metrics::counter!("sip_auth_failures_total").increment(1);
                if let Some(ban) = self.guard.auth_failed(from.ip(), now) {
                    metrics::counter!("sip_sources_banned_total", "why" => "guessing").increment(1);
                    tracing::warn!(source = %from.ip(), ?ban, "a source keeps failing digest authentication; refusing it for a while");
                }
                Err(response(m, 403, "Forbidden", &[]))
            }
            Err(_) => Err(challenge(&self.trunk_digest, false)),
        }
    }

    /// The agent (tenant, agent, SIP user) whose phone sends this INVITE, by its From user:
    /// a SIP user the router issued.
    fn agent_calling(&self, m: &Message) -> Option<(usize, AgentId, String)> {
        let user = m.header("From").and_then(safe_user)?;
        let (t, a) = self.cc.with(|d| d.agent_of(&user))?;
        Some((t, a, user))
    }

    /// An agent's phone calls an outside number through the router: the agent proves who
    /// they are (407, their SIP password), then the tenant's toll rules and the agent's hourly
    /// cap decide. Refusals get 403 (404 for what is no number) and a record.
    async fn on_agent_invite(&mut self, m: &Message, from: SocketAddr, now: Instant) {
        let Some((tenant, agent, user)) = self.agent_calling(m) else {
            return;
        };
        let challenge = |digest: &switchboard_sip::auth::DigestServer, stale: bool| {
            let h = format!(
                "Proxy-Authenticate: {}",
                digest.challenge(unix_now(), stale)
            );
            response(m, 407, "Proxy Authentication Required", &[&h])
        };
        let reply = match m.header("Proxy-Authorization") {
            None => Some(challenge(&self.agent_digest, false)),
            Some(auth) => {
                let uri = m.request_uri().unwrap_or_default();
                let cc = self.cc.clone();
                use switchboard_sip::auth::Refusal;
                match self
                    .agent_digest
                    .verify(auth, "INVITE", &uri, unix_now(), |u| {
                        cc.with(|d| d.password_of(u))
                    }) {
                    Ok(u) if u == user => None,
                    Ok(_) => Some(response(m, 403, "Forbidden", &[])),
                    Err(Refusal::Stale | Refusal::Replay) => {
                        Some(challenge(&self.agent_digest, true))
                    }
                    Err(Refusal::WrongUri(u)) => {
                        tracing::info!(%from, digest_uri = %u, request_uri = %uri, "an agent's digest answer names another URI");
                        Some(response(m, 400, "Digest URI Mismatch", &[]))
                    }
                    Err(why @ (Refusal::UnknownUser(_) | Refusal::WrongPassword(_))) => {
                        tracing::info!(%from, why = %why, "an agent's call was refused: wrong digest");
                        metrics::counter!("sip_auth_failures_total").increment(1);
                        if let Some(ban) = self.guard.auth_failed(from.ip(), now) {
                            metrics::counter!("sip_sources_banned_total", "why" => "guessing")
                                .increment(1);
                            tracing::warn!(source = %from.ip(), ?ban, "a source keeps failing digest authentication; refusing it for a while");
                        }
                        Some(response(m, 403, "Forbidden", &[]))
                    }
                    Err(_) => Some(challenge(&self.agent_digest, false)),
                }
            }
        };
        if let Some(r) = reply {
            if let Some(r) = r {
                let _ = self.net.send(self.arrived, from, r).await;
            }
            return;
        }
        let dialled = m
            .request_uri()
            .and_then(|u| safe_user(&u))
            .unwrap_or_default();
        if !dialled.starts_with('+') && !dialled.bytes().all(|b| b.is_ascii_digit()) {
            self.agent_calls_inside(m, from, tenant, agent, &dialled, now)
                .await;
            return;
        }
        let recent = calls_in_last_hour(self.dialled.entry((tenant, agent)).or_default(), now);
        let capped = self.tenant_outside_cap(tenant, now);
        let verdict = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let upn = t.upn_of(agent);
            let Some(o) = &t.spec.outbound else {
                return Err((403, "Forbidden", upn, "this tenant places no outside calls".to_owned(), None));
            };
            let trunk = t.spec.trunks.iter().position(|tr| tr.name == o.trunk);
            if let Err(why) = o.permits(&dialled) {
                return Err((403, "Forbidden", upn, format!("toll rules: {why}"), trunk));
            }
            if recent >= o.max_per_hour as usize {
                return Err((403, "Forbidden", upn, format!("toll rules: {} outside calls in the last hour is the most an agent may place", o.max_per_hour), trunk));
            }
            if let Some(why) = capped {
                return Err((403, "Forbidden", upn, why, trunk));
            }
            let Some(j) = trunk else {
                return Err((503, "Service Unavailable", upn, "no trunk for outside calls".into(), None));
            };
            if t.trunks[j].calls >= t.trunks[j].max_calls {
                return Err((503, "Service Unavailable", upn, format!("trunk {} is full", o.trunk), trunk));
            }
            Ok(j)
        });
        match verdict {
            Err((status, reason, upn, why, trunk)) => {
                tracing::info!(agent = %upn, number = %dialled, %why, "an agent's outside call was refused");
                if let Some(r) = response(m, status, reason, &[]) {
                    let _ = self.net.send(self.arrived, from, r).await;
                }
                let (tenant_id, trunk_name) = self.cc.with(|d| {
                    let t = &d.tenants[tenant];
                    (
                        t.spec.id.clone(),
                        trunk
                            .and_then(|j| t.spec.trunks.get(j))
                            .map(|tr| tr.name.clone())
                            .unwrap_or_default(),
                    )
                });
                let step = format!("outbound by {upn} refused");
                let mut rec = refused_record((tenant_id, trunk_name), &upn, &dialled, step, why);
                rec.agent = Some(upn);
                self.write(&rec);
            }
            Ok(trunk) => {
                self.outside_placed(tenant, Some(agent), now);
                self.admitted = Some(Admission {
                    tenant,
                    trunk,
                    route: None,
                    dialled,
                    priority: 3,
                    closed: None,
                    outbound: Some(agent),
                    internal: None,
                    asserted: None,
                });
                self.ua.handle_message_on(m, from, self.arrived, now);
                self.settle().await;
                self.admitted = None;
            }
        }
    }

    /// An agent's phone calls `name` inside the tenant: a colleague (the user part of their
    /// UPN), a queue, an attendant or an expert group, as transfers name them. Unknown: 404.
    async fn agent_calls_inside(
        &mut self,
        m: &Message,
        from: SocketAddr,
        tenant: usize,
        agent: AgentId,
        name: &str,
        now: Instant,
    ) {
        let route = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            t.transfer_target(name, &t.spec.domain)
        });
        let route = match route {
            Some(Route::Agent(a) | Route::Expert(a)) if a == agent => None,
            r => r,
        };
        let Some(route) = route else {
            tracing::info!(%name, "an agent called nobody of the tenant");
            if let Some(r) = response(m, 404, "Not Found", &[]) {
                let _ = self.net.send(self.arrived, from, r).await;
            }
            return;
        };
        self.admitted = Some(Admission {
            tenant,
            trunk: 0,
            route: Some(route),
            dialled: name.to_owned(),
            priority: 3,
            closed: None,
            outbound: None,
            internal: Some(agent),
            asserted: None,
        });
        self.ua.handle_message_on(m, from, self.arrived, now);
        self.settle().await;
        self.admitted = None;
    }

    /// The agent's leg `leg` of an admitted outside call is here: ring the number on the
    /// trunk; the agent's phone hears ringing (180) until it answers.
    fn on_outbound(&mut self, leg: UaCall, a: Admission, agent: AgentId, now: Instant) {
        let Some((socket, _)) = self.bind_media() else {
            self.ua.reject(leg, 503, now);
            return;
        };
        let n = self.next_call;
        self.next_call += 1;
        let (tenant_id, trunk_name, upn, caller_id) = self.cc.with(|d| {
            let t = &mut d.tenants[a.tenant];
            let tr = &mut t.trunks[a.trunk];
            tr.calls += 1;
            trunk_gauges(&t.spec.id, tr);
            let o = t.spec.outbound.as_ref();
            let caller_id = o
                .and_then(|o| o.caller_id.clone())
                .or_else(|| t.spec.numbers.first().map(|x| x.number.clone()));
            t.engine
                .set_busy_elsewhere(agent, Some(routing::CallId(n)), now);
            let upn = match t.agent_mut(agent) {
                Some(r) => {
                    r.on_call = true;
                    r.upn.clone()
                }
                None => String::new(),
            };
            (
                (t.spec.id.clone(), t.spec.language.clone()),
                t.trunks[a.trunk].name.clone(),
                upn,
                caller_id,
            )
        });
        let (tenant_id, language) = tenant_id;
        let id = uuid::Uuid::new_v4().to_string();
        let step = format!("outbound by {upn} to {}", a.dialled);
        tracing::info!(call = %id, agent = %upn, number = %a.dialled, trunk = %trunk_name, "an agent calls out");
        let rec = CallRecord {
            id: id.clone(),
            tenant: tenant_id,
            trunk: trunk_name,
            caller: upn.clone(),
            dialled: a.dialled.clone(),
            started_at: time::OffsetDateTime::now_utc(),
            answered_at: None,
            ended_at: None,
            choices: Vec::new(),
            queue: None,
            steps: vec![step],
            offers: Vec::new(),
            agent: Some(upn),
            outcome: CallOutcome::InProgress,
            reason: None,
            hold_seconds: 0,
            transfers: Vec::new(),
            wrap_up_seconds: None,
            disposition: None,
            notes: None,
            language: Some(language),
        };
        // The called party's leg.
        let far = match self.bind_media() {
            Some((far_socket, far_port)) => self
                .trunk_call(
                    a.tenant,
                    a.trunk,
                    &a.dialled,
                    caller_id.as_deref(),
                    vec![format!("X-Switchboard-Call: {id}")],
                    far_port,
                    now,
                )
                .map(|l| (l, far_socket)),
            None => Err("no media port free".to_owned()),
        };
        let (far_leg, failure) = match far {
            Ok((l, sock)) => {
                self.sockets.insert(l, sock);
                self.legs.insert(l, Leg::Caller(n));
                (l, None)
            }
            Err(why) => (leg, Some(why)),
        };
        self.sockets.insert(leg, socket);
        self.legs.insert(
            leg,
            Leg::Offer {
                call: n,
                tenant: a.tenant,
                agent,
            },
        );
        let mut c = CallRt::new(
            id,
            &a,
            far_leg,
            a.dialled.clone(),
            Stage::Dialling,
            rec,
            now,
        );
        c.agent = Some((agent, leg));
        c.outbound = true;
        self.calls.insert(n, c);
        self.save(n);
        match failure {
            None => {
                self.ua.ring(leg, now);
                self.timers.insert(
                    (
                        now + Duration::from_secs(OUTBOUND_RING_SECONDS),
                        Timer::CallbackRing(far_leg),
                    ),
                    (),
                );
            }
            Some(why) => {
                tracing::warn!(call = n, %why, "cannot place the outside call");
                self.outbound_failed(n, &why, now);
            }
        }
    }

    /// The outside number of call `n` did not answer (`why`): the agent's phone is told (486
    /// when busy, 603 when declined, else 480) and the call ends as failed.
    fn outbound_failed(&mut self, n: u64, why: &str, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.failure = Some(why.to_owned());
        c.rec.steps.push(format!("not answered: {why}"));
        if let Some((_, leg)) = c.agent {
            if self.legs.remove(&leg).is_some() {
                let status = if why.starts_with("486") {
                    486
                } else if why.starts_with("603") {
                    603
                } else {
                    480
                };
                self.sockets.remove(&leg);
                self.ua.reject(leg, status, now);
            }
        }
        self.finish(n, now);
    }

    /// Lets an INVITE on `trunk` (tenant, index) in (one of its tenant's numbers, room on the
    /// trunk) or says why not.
    fn admit(
        &self,
        m: &Message,
        (tenant, trunk): (usize, usize),
    ) -> Result<Admission, (u16, &'static str)> {
        let dialled = m
            .request_uri()
            .and_then(|u| safe_user(&u))
            .ok_or((404, "Not Found"))?;
        self.cc.with(|d| {
            let t = &d.tenants[tenant];
            if t.trunks[trunk].calls >= t.trunks[trunk].max_calls {
                return Err((503, "Service Unavailable"));
            }
            let number = t.spec.numbers.iter().find(|n| {
                n.number == dialled || n.number.strip_prefix('+') == Some(dialled.as_str())
            });
            // A number the tenant does not have: the caller hears so (early media), then 404.
            let Some(number) = number else {
                return Ok(Admission {
                    tenant,
                    trunk,
                    route: None,
                    dialled,
                    priority: 3,
                    closed: None,
                    outbound: None,
                    internal: None,
                    asserted: None,
                });
            };
            // Outside the number's opening hours: its holiday or closed route, or nowhere.
            let after = t.after_hours(
                number.schedule.as_ref().map(|s| s.get_ref().as_str()),
                number.closed.as_ref(),
                number.holiday.as_ref(),
                jiff::Timestamp::now(),
            );
            let (closed, route) = match after {
                Some((step, route)) => (Some(step), Some(route)),
                None => (
                    None,
                    t.route(&crate::center::TargetSpec {
                        queue: number.queue.clone(),
                        attendant: number.attendant.clone(),
                        ..Default::default()
                    }),
                ),
            };
            let route = route.ok_or((404, "Not Found"))?;
            Ok(Admission {
                tenant,
                trunk,
                route: Some(route),
                dialled: number.number.clone(),
                priority: number.priority,
                closed,
                outbound: None,
                internal: None,
                asserted: None,
            })
        })
    }

    /// Sends trunk `j` of `tenant` its OPTIONS (unless the last is still unanswered: that
    /// counts as a miss) and sets the next probe.
    fn probe(&mut self, tenant: usize, j: usize, now: Instant) {
        // A trunk removed through the API is probed no more.
        if self.cc.with(|d| {
            d.tenants[tenant]
                .spec
                .trunks
                .get(j)
                .is_none_or(|t| t.retired)
        }) {
            return;
        }
        if self.cc.with(|d| {
            d.tenants[tenant]
                .spec
                .trunks
                .get(j)
                .is_some_and(|t| t.direct_routing.is_some())
        }) {
            return self.probe_proxies(tenant, j, now);
        }
        let next = self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let every = t.spec.trunks[j].probe_every();
            let tr = &mut t.trunks[j];
            let (send, changed) = tr.probe_due(now);
            if changed {
                tracing::warn!(tenant = %t.spec.id, trunk = %tr.name, "trunk down: its OPTIONS probes went unanswered");
                trunk_gauges(&t.spec.id, tr);
            }
            (send.then(|| tr.probe.clone()).flatten(), every)
        });
        let (target, every) = next;
        if let Some(target) = target {
            if let Err(e) = self.ua.options(&target, now) {
                tracing::warn!(error = %e, %target, "cannot probe the trunk");
                self.on_probed(&target, None);
            }
        }
        self.timers.insert(
            (now + Duration::from_secs(every), Timer::Probe(tenant, j)),
            (),
        );
    }

    /// Sends each proxy of Direct Routing trunk `j` of `tenant` its OPTIONS (Microsoft asks
    /// for one a minute; `probe_seconds`), from the tenant's SBC FQDN, and sets the next.
    fn probe_proxies(&mut self, tenant: usize, j: usize, now: Instant) {
        let (every, fqdn, sends) = self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let spec = &t.spec.trunks[j];
            let every = spec.probe_every();
            let fqdn = spec
                .direct_routing
                .as_ref()
                .map(|x| x.fqdn.clone())
                .unwrap_or_default();
            let (id, name) = (t.spec.id.clone(), spec.name.clone());
            let tr = &mut t.trunks[j];
            let mut sends = Vec::new();
            let mut changed = false;
            for p in &mut tr.proxies {
                let (send, c) = p.state.probe_due(now);
                if c {
                    tracing::warn!(tenant = %id, trunk = %name, proxy = %p.host, "Direct Routing proxy down: its OPTIONS went unanswered; calls skip it");
                    proxy_gauge(&id, &name, p);
                    changed = true;
                }
                let target = crate::trunks::ProxyRt::target(&p.host, p.port);
                if send {
                    sends.push((target.clone(), dr_probe_key(&id, &name, &target)));
                }
            }
            if changed | tr.from_proxies() {
                trunk_gauges(&id, tr);
            }
            (every, fqdn, sends)
        });
        match self.dr_face(&fqdn) {
            Some(face) => {
                for (target, key) in sends {
                    if let Err(e) = self.ua.options_as(&target, &key, Some(&face), now) {
                        tracing::warn!(error = %e, %target, "cannot probe the Direct Routing proxy");
                        self.on_probed(&key, None);
                    }
                }
            }
            None => {
                tracing::warn!(%fqdn, "Direct Routing proxies not probed: the router has no [sip.tls]");
                for (_, key) in sends {
                    self.on_probed(&key, None);
                }
            }
        }
        self.timers.insert(
            (now + Duration::from_secs(every), Timer::Probe(tenant, j)),
            (),
        );
    }

    /// A probe's answer (`None`: none came).
    fn on_probed(&mut self, target: &str, status: Option<u16>) {
        let Some(&(tenant, j, proxy)) = self.probes.get(target) else {
            return;
        };
        metrics::counter!("sip_trunk_probes_total", "answered" => if status.is_some() { "yes" } else { "no" }).increment(1);
        if let Some(k) = proxy {
            self.cc.with(|d| {
                let t = &mut d.tenants[tenant];
                let Some(tr) = t.trunks.get_mut(j) else {
                    return;
                };
                let Some(p) = tr.proxies.get_mut(k) else {
                    return;
                };
                if p.state.probed(status) {
                    match p.state.health {
                        switchboard_api::TrunkHealth::Down => tracing::warn!(tenant = %t.spec.id, trunk = %tr.name, proxy = %p.host, ?status, "Direct Routing proxy down: three OPTIONS in a row failed; calls skip it"),
                        _ => tracing::info!(tenant = %t.spec.id, trunk = %tr.name, proxy = %p.host, ?status, "Direct Routing proxy up: it answered our OPTIONS"),
                    }
                    proxy_gauge(&t.spec.id, &tr.name, p);
                }
                if tr.from_proxies() {
                    trunk_gauges(&t.spec.id, tr);
                }
            });
            return;
        }
        self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let tr = &mut t.trunks[j];
            if tr.probed(status) {
                match tr.health {
                    switchboard_api::TrunkHealth::Down => tracing::warn!(tenant = %t.spec.id, trunk = %tr.name, ?status, "trunk down: three OPTIONS probes in a row failed"),
                    _ => tracing::info!(tenant = %t.spec.id, trunk = %tr.name, ?status, "trunk up: it answered an OPTIONS probe"),
                }
                trunk_gauges(&t.spec.id, tr);
            }
        });
    }

    fn bind_media(&self) -> Option<(std::net::UdpSocket, u16)> {
        let s = std::net::UdpSocket::bind((self.media_ip, 0))
            .map_err(|e| tracing::warn!(error = %e, "cannot open a media port"))
            .ok()?;
        let port = s.local_addr().ok()?.port();
        Some((s, port))
    }

    fn on_ua_event(&mut self, ev: UaEvent) {
        let now = Instant::now();
        match ev {
            UaEvent::IncomingCall { call, from, .. } => self.on_incoming(call, &from, now),
            UaEvent::Established { call, media } => self.on_established(call, &media, now),
            UaEvent::MediaChanged {
                call,
                media,
                by_peer,
            } => {
                self.relay.update(call, &media);
                let held = media.direction != switchboard_sip::sdp::Direction::SendRecv;
                self.hold_changed(call, held, now);
                if by_peer {
                    self.agent_held(call, held, now);
                }
                // What the leg sends now, whoever re-offered: a resume may come as the answer
                // to our own offer.
                self.party_held(call, media.direction);
            }
            UaEvent::Ended { call, reason } => {
                tracing::debug!(leg = call, ?reason, "leg ended");
                if let Some((tenant, j)) = self.person_trunks.remove(&call) {
                    Self::release_trunk(&self.cc, tenant, j);
                }
                self.end_reason = Some(describe_end(&reason));
                self.on_ended(call, now);
                self.end_reason = None;
            }
            UaEvent::Dtmf { call, digit, .. } => {
                // Keys sent as SIP INFO go on to whoever hears the leg, as those in the media
                // path do (the relay's module documentation).
                self.relay.pass_digit(call, digit);
                self.on_digit(call, digit, now)
            }
            UaEvent::TransferRequested {
                call,
                target,
                replaces,
                referred_by,
            } => self.on_refer(
                call,
                &target,
                replaces.as_deref(),
                referred_by.as_deref(),
                now,
            ),
            UaEvent::OptionsAnswered { target, status } => self.on_probed(&target, status),
            UaEvent::FailedOver { call, status, next } => {
                let n = self.legs.get(&call).map(|l| match *l {
                    Leg::Caller(n) | Leg::Far(n) => n,
                    Leg::Offer { call, .. }
                    | Leg::Consult { call, .. }
                    | Leg::Monitor { call, .. } => call,
                });
                let why = status.map_or_else(|| "no answer".to_owned(), |s| s.to_string());
                tracing::warn!(leg = call, %why, %next, "the proxy did not take the call; trying the next");
                metrics::counter!("sip_trunk_failovers_total").increment(1);
                if let Some(c) = n.and_then(|n| self.calls.get_mut(&n)) {
                    let host = switchboard_sip::ua::uri_host_port(&next)
                        .map(|(h, _)| h)
                        .unwrap_or_default();
                    c.rec.steps.push(format!("failover after {why} to {host}"));
                }
            }
            _ => {}
        }
    }

    fn on_incoming(&mut self, leg: UaCall, from: &str, now: Instant) {
        let Some(a) = self.admitted.take() else {
            // Not an INVITE we let in (cannot happen: every out-of-dialog INVITE is checked).
            self.ua.reject(leg, 403, now);
            return;
        };
        if let Some(agent) = a.outbound {
            self.on_outbound(leg, a, agent, now);
            return;
        }
        if a.internal.is_none() {
            // From a Direct Routing proxy: our answers name the SBC's FQDN.
            let fqdn = self.cc.with(|d| {
                d.tenants[a.tenant]
                    .spec
                    .trunks
                    .get(a.trunk)
                    .and_then(|t| t.direct_routing.as_ref())
                    .map(|x| x.fqdn.clone())
            });
            if let Some(face) = fqdn.and_then(|f| self.dr_face(&f)) {
                if let Err(e) = self.ua.set_face(leg, face) {
                    tracing::warn!(error = %e, "cannot present the SBC's FQDN on this call");
                }
            }
        }
        let Some((socket, port)) = self.bind_media() else {
            self.ua.reject(leg, 503, now);
            return;
        };
        let n = self.next_call;
        self.next_call += 1;
        let id = uuid::Uuid::new_v4().to_string();
        let language = self.cc.with(|d| d.tenants[a.tenant].spec.language.clone());
        let (tenant_id, trunk_name, dialler) = self.cc.with(|d| {
            let t = &mut d.tenants[a.tenant];
            if let Some(agent) = a.internal {
                // An agent's own call inside the tenant: busy for the queues meanwhile.
                t.engine
                    .set_busy_elsewhere(agent, Some(routing::CallId(n)), now);
                let upn = t.agent_mut(agent).map(|r| {
                    r.on_call = true;
                    r.upn.clone()
                });
                return (t.spec.id.clone(), "internal".to_owned(), upn);
            }
            let tr = &mut t.trunks[a.trunk];
            tr.calls += 1;
            trunk_gauges(&t.spec.id, tr);
            (t.spec.id.clone(), tr.name.clone(), None)
        });
        let caller = dialler
            .clone()
            .or(a.asserted.clone())
            .unwrap_or_else(|| safe_user(from).unwrap_or_else(|| "anonymous".into()));
        let rec = CallRecord {
            id: id.clone(),
            tenant: tenant_id,
            trunk: trunk_name.clone(),
            caller: caller.clone(),
            dialled: a.dialled.clone(),
            started_at: time::OffsetDateTime::now_utc(),
            answered_at: None,
            ended_at: None,
            choices: Vec::new(),
            queue: None,
            steps: Vec::new(),
            offers: Vec::new(),
            agent: None,
            outcome: CallOutcome::InProgress,
            reason: None,
            hold_seconds: 0,
            transfers: Vec::new(),
            wrap_up_seconds: None,
            disposition: None,
            notes: None,
            language: Some(language),
        };
        tracing::info!(call = %id, caller = %caller, dialled = %a.dialled, trunk = %trunk_name, closed = ?a.closed, "call arrived");
        let mut rec = rec;
        if let Some(step) = &a.closed {
            rec.steps.push(step.clone());
        }
        let stage = match a.route {
            Some(first) => Stage::Answering { first },
            None => Stage::Closing("unknown-number"),
        };
        // A Teams user calling over a trunk with media bypass: ICE-lite in our answer.
        let bypass = a.internal.is_none() && self.bypass_on(a.tenant, a.trunk);
        let mut c = CallRt::new(id, &a, leg, caller, stage, rec, now);
        c.early = a.route.is_none();
        c.dialler = a.internal;
        c.on_trunk = a.internal.is_none();
        self.calls.insert(n, c);
        self.save(n);
        self.legs.insert(leg, Leg::Caller(n));
        if a.route.is_none() {
            // Unknown number: never answered; the prompt plays in a 183, then 404.
            match self
                .ua
                .early_media(leg, self.leg_media(port, false, bypass), now)
            {
                Ok(neg) => {
                    self.relay.open(leg, socket, &neg);
                    let clip = self.prompt(n, "unknown-number");
                    self.relay.play(
                        leg,
                        Playlist {
                            clips: vec![clip],
                            then_loop: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::info!(error = %e, "no early media for an unknown number; refusing at once");
                    self.ua.reject(leg, 404, now);
                }
            }
            return;
        }
        self.sockets.insert(leg, socket);
        if let (Some(_), Some(first @ (Route::Agent(_) | Route::Expert(_)))) = (a.internal, a.route)
        {
            // A colleague: their phone rings while ours does; answered when they answer.
            if let Some(c) = self.calls.get_mut(&n) {
                c.pending_answer = true;
            }
            self.ua.ring(leg, now);
            self.route(n, first, now);
            return;
        }
        if let Err(e) = self
            .ua
            .answer(leg, self.leg_media(port, false, bypass), now)
        {
            tracing::info!(error = %e, "cannot answer the caller");
        }
    }

    /// Sends call `n` on: to an attendant's menu or into a queue.
    fn route(&mut self, n: u64, to: Route, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.hops += 1;
        if c.hops > MAX_HOPS {
            tracing::warn!(call = %c.id, "the call went round the attendants too often (a loop in the configuration?); ending it");
            self.close(n, "goodbye");
            return;
        }
        match to {
            Route::Outside(number) => self.route_out(n, number, now),
            Route::Closed => self.close(n, "closed"),
            Route::NoExpert => self.fail_back(n, "no expert free", now),
            Route::Agent(a) | Route::Expert(a) => {
                let tenant = c.tenant;
                let expert = matches!(to, Route::Expert(_));
                // Taken here and put back only for the offer below: a transfer that fails
                // back leaves nothing behind for the next route.
                let in_teams = std::mem::take(&mut c.direct_in_teams);
                let free = self.cc.with(|d| {
                    let t = &mut d.tenants[tenant];
                    let upn = t.agent(a).map(|r| r.upn.clone()).unwrap_or_default();
                    // An expert is free with a phone or a Teams number to ring; in Teams (as
                    // for an expert) Teams presence says whether they are free, not their
                    // Ready state for queue calls; an agent needs their phone, and Ready.
                    let free = if in_teams {
                        t.teams_reach(a).is_some() && t.expert_free(a)
                    } else if expert {
                        t.expert_free(a)
                    } else {
                        t.agent(a).is_some_and(|r| r.contact.is_some()) && t.engine.is_available(a)
                    };
                    if free {
                        t.engine
                            .set_busy_elsewhere(a, Some(routing::CallId(n)), now);
                    }
                    (free, upn)
                });
                let who = if expert { "expert" } else { "agent" };
                c.rec.steps.push(format!("{who} {}", free.1));
                if !free.0 {
                    self.fail_back(n, &format!("{who} {} is not available", free.1), now);
                    return;
                }
                c.direct = Some(a);
                c.direct_in_teams = in_teams;
                c.stage = Stage::Queued;
                let leg = c.caller_leg;
                // A colleague's call rings back; a transferred caller hears why they wait.
                let list = if c.dialler.is_some() && c.hops == 1 {
                    Playlist {
                        clips: Vec::new(),
                        then_loop: Some(self.prompts.ringback.clone()),
                    }
                } else {
                    Playlist {
                        clips: vec![self.prompt(n, "transferring")],
                        then_loop: Some(self.prompts.music.clone()),
                    }
                };
                self.relay.play(leg, list);
                self.offer(tenant, n, None, a, now);
            }
            Route::Attendant(a) => {
                let tenant = c.tenant;
                let (name, after, language) = self.cc.with(|d| {
                    let t = &d.tenants[tenant];
                    let Some(x) = t.attendants.get(a) else {
                        return (String::new(), None, None);
                    };
                    let after = t.after_hours(
                        x.schedule.as_ref().map(|s| s.get_ref().as_str()),
                        x.closed.as_ref(),
                        x.holiday.as_ref(),
                        jiff::Timestamp::now(),
                    );
                    (x.name.clone(), after, x.language.clone())
                });
                // Closed too, the caller hears it in the attendant's language.
                self.speak(n, language);
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                if let Some((step, to)) = after {
                    // Outside the attendant's hours: its holiday or closed route.
                    c.rec.steps.push(format!("attendant {name} {step}"));
                    self.route(n, to, now);
                    return;
                }
                c.rec.steps.push(format!("attendant {name}"));
                c.menus.push(a);
                c.stage = Stage::Menu {
                    attendant: a,
                    tries: 0,
                };
                self.menu(n, None);
            }
            Route::Queue(q) => {
                let tenant = c.tenant;
                let (name, language) = self.cc.with(|d| {
                    let x = d.tenants[tenant].queue(q);
                    (
                        x.map(|x| x.name.clone()),
                        x.and_then(|x| x.language.clone()),
                    )
                });
                self.speak(n, language);
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                c.queue = Some(q);
                c.rec.queue = name;
                let qname = c.rec.queue.clone().unwrap_or_default();
                c.rec.steps.push(format!("queue {qname}"));
                let priority = c.priority;
                let since = *c.since.get_or_insert(now);
                let (tenant, leg) = (c.tenant, c.caller_leg);
                let refused = self.cc.with(|d| {
                    let r = d.tenants[tenant].engine.enqueue(
                        q,
                        routing::Caller {
                            call: routing::CallId(n),
                            priority,
                            since,
                        },
                        now,
                    );
                    match r {
                        Ok(()) => None,
                        Err(Refused::Full) => Some(Refusal::Full),
                        Err(_) => Some(Refusal::NoAgents),
                    }
                });
                match refused {
                    Some(why) => self.queue_refused(n, q, why, now),
                    None => {
                        self.cc
                            .with(|d| d.tenants[tenant].stats[q.0 as usize].entered(n, now));
                        if let Some(c) = self.calls.get_mut(&n) {
                            c.stage = Stage::Queued;
                        }
                        let mut clips = vec![self.prompt(n, "welcome-queue")];
                        if self.callback_due(n, now) {
                            clips.push(self.prompt(n, "callback-offer"));
                        }
                        self.save(n);
                        let list = Playlist {
                            clips,
                            then_loop: Some(self.prompts.music.clone()),
                        };
                        self.relay.play(leg, list);
                        // A callback offered after a wait: when the caller will have waited
                        // that long (from their first queue).
                        let after = self.cc.with(|d| {
                            d.tenants[tenant]
                                .queue(q)
                                .and_then(|x| x.callback.as_ref())
                                .and_then(|cb| cb.after_seconds)
                        });
                        if let (Some(after), Some(c)) = (after, self.calls.get(&n)) {
                            if c.callback == Callback::NotOffered {
                                let at = (since + Duration::from_secs(after)).max(now);
                                self.timers
                                    .insert((at, Timer::CallbackOffer(n, c.hops)), ());
                            }
                        }
                        let every = self
                            .cc
                            .with(|d| d.tenants[tenant].queue(q).and_then(|x| x.announce_seconds));
                        if let Some(every) = every {
                            let hops = self.calls.get(&n).map_or(0, |c| c.hops);
                            self.timers.insert(
                                (now + Duration::from_secs(every), Timer::Announce(n, hops)),
                                (),
                            );
                        }
                        self.dispatch();
                    }
                }
            }
        }
    }

    /// Queue `q`'s name, and where its callers go for `why` (its overflow or no-agents
    /// route), in call `n`'s tenant.
    fn overflow_route(&self, n: u64, q: QueueId, why: Refusal) -> (String, Option<Route>) {
        let Some(tenant) = self.calls.get(&n).map(|c| c.tenant) else {
            return (String::new(), None);
        };
        self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let queue = t.queue(q);
            let target = match why {
                Refusal::NoAgents => queue.and_then(|x| x.no_agents.as_ref()),
                Refusal::Full => queue.and_then(|x| x.overflow.as_ref()),
                Refusal::MaxWait => {
                    queue.and_then(|x| x.max_wait_overflow.as_ref().or(x.overflow.as_ref()))
                }
            };
            (
                queue.map(|x| x.name.clone()).unwrap_or_default(),
                target.and_then(|t2| t.route(t2)),
            )
        })
    }

    /// Queue `q` could not take call `n` (or the caller waited its longest): a callback
    /// where the queue offers one at overflow, else its overflow or no-agents route, else a
    /// prompt saying why and the end of the call.
    fn queue_refused(&mut self, n: u64, q: QueueId, why: Refusal, now: Instant) {
        let (name, next) = self.overflow_route(n, q, why);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let what = match why {
            Refusal::NoAgents => format!("no agents in {name}"),
            Refusal::Full => format!("overflow {name} (full)"),
            Refusal::MaxWait => format!("overflow {name} (max wait)"),
        };
        c.rec.steps.push(what);
        tracing::info!(call = %c.id, queue = %name, ?why, rerouted = next.is_some(), "the queue could not keep the caller");
        if why != Refusal::NoAgents && self.overflow_callback_offered(n, q, why) {
            return;
        }
        self.queue_let_go(n, q, why, now);
    }

    /// Call `n` leaves queue `q` for `why`: counted so, then on to the queue's route for it,
    /// or a prompt saying why and the end of the call.
    fn queue_let_go(&mut self, n: u64, q: QueueId, why: Refusal, now: Instant) {
        let (_, next) = self.overflow_route(n, q, why);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let tenant = c.tenant;
        let prompt = match why {
            Refusal::NoAgents => "no-agents",
            Refusal::Full | Refusal::MaxWait => "queue-full",
        };
        if why != Refusal::NoAgents {
            self.cc.with(|d| {
                let t = &mut d.tenants[tenant];
                let sl = t.queue(q).map_or(20, |x| x.service_level_seconds);
                let st = &mut t.stats[q.0 as usize];
                if why == Refusal::Full {
                    st.entered(n, now);
                }
                st.left(n, Left::Overflowed, Duration::from_secs(sl), now);
            });
        }
        match next {
            Some(r) => self.route(n, r, now),
            None => {
                c.overflowed = why != Refusal::NoAgents;
                self.close(n, prompt);
            }
        }
    }

    /// Whether queue `q`, overflowing for `why`, offers call `n`'s caller a callback (its
    /// `callback.on_overflow`, a caller with a number to call who has not asked for one yet,
    /// on a trunk the router can call out on). Offers it when so: the caller hears the offer
    /// (the music stops) and has [`OVERFLOW_OFFER_WAIT`] after it to press 1.
    fn overflow_callback_offered(&mut self, n: u64, q: QueueId, why: Refusal) -> bool {
        let Some(c) = self.calls.get(&n) else {
            return false;
        };
        if c.direct.is_some()
            || matches!(c.callback, Callback::Requested { .. })
            || !callable(&c.caller)
            || !self.legs.contains_key(&c.caller_leg)
        {
            return false;
        }
        let (tenant, trunk) = (c.tenant, c.trunk);
        let offers = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            t.queue(q)
                .and_then(|x| x.callback.as_ref())
                .is_some_and(|cb| cb.on_overflow)
                && t.spec.trunks.get(trunk).is_some_and(|x| x.places_calls())
        });
        if !offers {
            return false;
        }
        let Some(c) = self.calls.get_mut(&n) else {
            return false;
        };
        c.queue = Some(q);
        c.stage = Stage::OverflowOffer(why);
        c.callback = Callback::Offered;
        c.rec.steps.push("callback offered".into());
        tracing::info!(call = %c.id, ?why, "callback offered at overflow");
        let leg = c.caller_leg;
        let list = Playlist {
            clips: vec![self.prompt(n, "callback-overflow")],
            then_loop: None,
        };
        self.relay.play(leg, list);
        self.save(n);
        true
    }

    /// The caller of call `n` did not take the callback offered at overflow (another key,
    /// or none in time): on as the overflow goes without it.
    fn overflow_callback_declined(&mut self, n: u64, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let (Stage::OverflowOffer(why), Some(q)) = (c.stage, c.queue) else {
            return;
        };
        c.callback = Callback::Declined;
        c.rec.steps.push("callback declined".into());
        self.queue_let_go(n, q, why, now);
    }

    /// Prompt `id` in the language call `n`'s caller hears now (English once it is gone).
    fn prompt(&self, n: u64, id: &str) -> Arc<crate::relay::Clip> {
        let lang = self.calls.get(&n).and_then(|c| c.rec.language.as_deref());
        self.prompts.get(lang.unwrap_or("en"), id)
    }

    /// Prompt `id` in `tenant`'s language: what its agents hear.
    fn tenant_prompt(&self, tenant: usize, id: &str) -> Arc<crate::relay::Clip> {
        let lang = self.cc.with(|d| d.tenants[tenant].spec.language.clone());
        self.prompts.get(&lang, id)
    }

    /// Call `n`'s caller reaches an attendant or a queue that speaks `language` (none: it
    /// speaks the caller's language so far): their prompts are in it from now on.
    fn speak(&mut self, n: u64, language: Option<String>) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        if let Some(l) = language.filter(|l| c.rec.language.as_ref() != Some(l)) {
            tracing::info!(call = %c.id, language = %l, "the caller hears prompts in another language");
            c.rec.language = Some(l);
        }
    }

    /// Plays call `n`'s menu, after `before` (why it plays again); the no-input timer starts
    /// when it has played.
    fn menu(&mut self, n: u64, before: Option<&str>) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Stage::Menu { attendant, .. } = c.stage else {
            return;
        };
        c.menu_generation += 1;
        let (tenant, leg) = (c.tenant, c.caller_leg);
        let (greeting, language) = self.cc.with(|d| {
            let a = d.tenants[tenant].attendants.get(attendant);
            (
                a.map(|a| a.greeting.clone()),
                a.and_then(|a| a.language.clone()),
            )
        });
        self.speak(n, language);
        let mut clips = Vec::new();
        if let Some(b) = before {
            clips.push(self.prompt(n, b));
        }
        if let Some(g) = greeting {
            clips.push(self.prompt(n, &g));
        }
        self.relay.play(
            leg,
            Playlist {
                clips,
                then_loop: None,
            },
        );
    }

    /// A failed try at call `n`'s menu (no key, a wrong key): again, or the default route.
    fn menu_failed(&mut self, n: u64, why: &'static str, now: Instant) {
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        let Stage::Menu { attendant, tries } = c.stage else {
            return;
        };
        let tenant = c.tenant;
        let Some((retries, default, name)) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let a = t.attendants.get(attendant)?;
            Some((a.retries, t.route(&a.default), a.name.clone()))
        }) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        if tries >= retries {
            c.choices.push(format!("{name}:none"));
            match default {
                Some(r) => self.route(n, r, now),
                None => self.close(n, "goodbye"),
            }
        } else {
            c.stage = Stage::Menu {
                attendant,
                tries: tries + 1,
            };
            self.menu(n, Some(why));
        }
    }

    /// A key from the caller of call `n`.
    fn key(&mut self, n: u64, digit: char, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        if let Stage::OverflowOffer(why) = c.stage {
            if digit == '1' {
                if why == Refusal::Full {
                    // Never counted in the queue: it waits there now, as a callback.
                    if let Some(q) = c.queue {
                        let tenant = c.tenant;
                        self.cc
                            .with(|d| d.tenants[tenant].stats[q.0 as usize].entered(n, now));
                    }
                }
                // Its place in the queue is taken again when the caller has hung up.
                self.callback_accepted(n, now);
            } else {
                self.overflow_callback_declined(n, now);
            }
            return;
        }
        if c.stage == Stage::Queued && c.callback == Callback::Offered {
            match digit {
                '1' => self.callback_accepted(n, now),
                '2' => {
                    c.callback = Callback::Declined;
                    c.rec.steps.push("callback declined".into());
                }
                _ => {}
            }
            return;
        }
        let Stage::Menu { attendant, .. } = c.stage else {
            return;
        };
        let tenant = c.tenant;
        match digit {
            '*' => self.menu(n, None),
            '#' => {
                if c.menus.len() > 1 {
                    c.menus.pop();
                    let back = c.menus.pop().unwrap_or(attendant);
                    self.route(n, Route::Attendant(back), now);
                } else {
                    self.menu(n, None);
                }
            }
            d => {
                let found = self.cc.with(|desk| {
                    let t = &desk.tenants[tenant];
                    let a = t.attendants.get(attendant)?;
                    let to = a.options.get(&d.to_string())?;
                    Some((a.name.clone(), t.route(to)?))
                });
                match found {
                    Some((name, to)) => {
                        if let Some(c) = self.calls.get_mut(&n) {
                            c.choices.push(format!("{name}:{d}"));
                        }
                        self.route(n, to, now);
                    }
                    None => self.menu_failed(n, "invalid-choice", now),
                }
            }
        }
    }

    /// Call `n` cannot go on: the caller hears `prompt`, then the router hangs up.
    fn close(&mut self, n: u64, prompt: &'static str) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.stage = Stage::Closing(prompt);
        let leg = c.caller_leg;
        let clip = self.prompt(n, prompt);
        self.relay.play(
            leg,
            Playlist {
                clips: vec![clip],
                then_loop: None,
            },
        );
    }

    /// Offers waiting callers to agents, in every tenant.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let offers: Vec<(usize, routing::Offer)> = self.cc.with(|d| {
            d.tenants
                .iter_mut()
                .enumerate()
                .flat_map(|(i, t)| t.engine.dispatch().into_iter().map(move |o| (i, o)))
                .collect()
        });
        for (tenant, offer) in offers {
            for agent in offer.agents {
                self.offer(tenant, offer.call.0, Some(offer.queue), agent, now);
            }
        }
        self.consult_waits_served(now);
    }

    /// Rings `agent`'s phone with call `n`, for `queue` (or directly: a transfer).
    fn offer(
        &mut self,
        tenant: usize,
        n: u64,
        queue: Option<QueueId>,
        agent: AgentId,
        now: Instant,
    ) {
        let (queue_name, alert) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let q = queue.and_then(|q| t.queue(q));
            (
                q.map_or_else(|| "direct".to_owned(), |q| q.name.clone()),
                q.map_or(DIRECT_ALERT_SECONDS, |q| q.alert_seconds),
            )
        });
        // A transfer to `teams:<person>` rings them in Teams, this once.
        let in_teams = queue.is_none()
            && self
                .calls
                .get_mut(&n)
                .is_some_and(|c| std::mem::take(&mut c.direct_in_teams));
        let call = self.calls.get(&n);
        let placed = match (call, self.bind_media()) {
            (Some(c), Some((socket, port))) => {
                let headers = vec![
                    format!("X-Switchboard-Queue: {queue_name}"),
                    format!("X-Switchboard-Call: {}", c.id),
                    format!("X-Switchboard-Caller: {}", c.caller),
                    format!("X-Switchboard-Dialled: {}", c.dialled),
                ];
                let mut headers = headers;
                // How long the caller has waited so far, for the agent's pop-up.
                headers.push(format!(
                    "X-Switchboard-Waited: {}",
                    now.saturating_duration_since(c.started).as_secs()
                ));
                if !c.choices.is_empty() {
                    headers.push(format!("X-Switchboard-Choices: {}", c.choices.join(",")));
                }
                let caller = c.caller.clone();
                match self.ring_person(tenant, agent, &caller, headers, port, in_teams, now) {
                    Ok(leg) => Some((leg, socket)),
                    Err(why) => {
                        tracing::warn!(%why, "cannot call the agent's phone");
                        None
                    }
                }
            }
            _ => None,
        };
        match placed {
            Some((leg, socket)) => {
                self.sockets.insert(leg, socket);
                self.legs.insert(
                    leg,
                    Leg::Offer {
                        call: n,
                        tenant,
                        agent,
                    },
                );
                let upn = self.cc.with(|d| {
                    let a = d.tenants[tenant].agent_mut(agent)?;
                    a.ringing += 1;
                    tracing::info!(agent = %a.upn, queue = %queue_name, "offering a call");
                    Some(a.upn.clone())
                });
                if let Some(c) = self.calls.get_mut(&n) {
                    c.offers.push((leg, agent));
                    c.offer_rec.insert(leg, c.rec.offers.len());
                    c.rec.offers.push(OfferRecord {
                        agent: upn.unwrap_or_default(),
                        at: time::OffsetDateTime::now_utc(),
                        outcome: "ringing".into(),
                        ended_at: None,
                    });
                }
                self.timers
                    .insert((now + Duration::from_secs(alert), Timer::RingOut(leg)), ());
            }
            None if queue.is_none() => self.direct_failed(n, "could not be called", now),
            None => self.cc.with(|d| {
                d.tenants[tenant].engine.offer_ended(
                    routing::CallId(n),
                    agent,
                    OfferEnd::Refused,
                    now,
                )
            }),
        }
    }

    /// A transfer to an agent did not reach them: the caller hears so and goes back to the
    /// queue they came from (keeping their place), or the call ends.
    fn direct_failed(&mut self, n: u64, why: &str, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Some(agent) = c.direct.take() else {
            return;
        };
        let tenant = c.tenant;
        let upn = self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            t.engine.set_busy_elsewhere(agent, None, now);
            t.upn_of(agent)
        });
        self.fail_back(n, &format!("agent {upn} {why}"), now);
    }

    /// A transfer failed (`what`): the caller hears so and goes back to the queue they came
    /// from, keeping their place, or the call ends.
    fn fail_back(&mut self, n: u64, what: &str, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.rec.steps.push(what.to_owned());
        // Back to the caller's queue, else the attendant they came from, else the end.
        let (queue, attendant) = (c.queue, c.menus.last().copied());
        tracing::info!(call = %c.id, what, "a transfer failed");
        match (queue, attendant) {
            (Some(q), _) => {
                let leg = c.caller_leg;
                let clip = self.prompt(n, "transfer-failed");
                self.relay.play(
                    leg,
                    Playlist {
                        clips: vec![clip],
                        then_loop: None,
                    },
                );
                self.route(n, Route::Queue(q), now);
            }
            (None, Some(a)) => {
                c.stage = Stage::Menu {
                    attendant: a,
                    tries: 0,
                };
                self.menu(n, Some("transfer-failed"));
            }
            (None, None) if c.pending_answer => {
                // Never answered: the phone hears 480 and shows it.
                let leg = c.caller_leg;
                c.failure = Some(format!("not answered: {what}"));
                if self.legs.remove(&leg).is_some() {
                    self.sockets.remove(&leg);
                    self.ua.reject(leg, 480, now);
                }
                self.finish(n, now);
            }
            (None, None) if c.dialler.is_some() => self.close(n, "not-available"),
            (None, None) => self.close(n, "transfer-failed"),
        }
    }

    /// Takes one of trunk (`tenant`, `trunk`)'s channels.
    fn seize_trunk(cc: &CallCenter, tenant: usize, trunk: usize) {
        cc.with(|d| {
            let t = &mut d.tenants[tenant];
            if let Some(tr) = t.trunks.get_mut(trunk) {
                tr.calls += 1;
                trunk_gauges(&t.spec.id, tr);
            }
        });
    }

    /// Frees one of trunk (`tenant`, `trunk`)'s channels.
    fn release_trunk(cc: &CallCenter, tenant: usize, trunk: usize) {
        cc.with(|d| {
            let t = &mut d.tenants[tenant];
            if let Some(tr) = t.trunks.get_mut(trunk) {
                tr.calls = tr.calls.saturating_sub(1);
                trunk_gauges(&t.spec.id, tr);
            }
        });
    }

    /// The callback settings of call `n`'s queue.
    fn callback_spec(&self, n: u64) -> Option<crate::center::CallbackSpec> {
        let c = self.calls.get(&n)?;
        let q = c.queue?;
        self.cc
            .with(|d| d.tenants[c.tenant].queue(q)?.callback.clone())
    }

    /// Whether waiting call `n` is to be offered a callback now (its queue offers them, the
    /// caller waited long enough or is far enough back, has a number to call and came on a
    /// trunk the router can call out on). Marks it offered, once.
    fn callback_due(&mut self, n: u64, now: Instant) -> bool {
        let Some(c) = self.calls.get(&n) else {
            return false;
        };
        let (Stage::Queued, Some(q), Callback::NotOffered, None) =
            (c.stage, c.queue, c.callback, c.direct)
        else {
            return false;
        };
        if !callable(&c.caller) {
            return false;
        }
        let waited = c
            .since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let (tenant, trunk) = (c.tenant, c.trunk);
        let due = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let cb = t.queue(q)?.callback.clone()?;
            t.spec.trunks.get(trunk).filter(|x| x.places_calls())?;
            let by_wait = cb.after_seconds.is_some_and(|a| waited.as_secs() >= a);
            let by_place = cb.position.is_some_and(|p| {
                t.engine
                    .position(routing::CallId(n))
                    .is_some_and(|x| x >= p as usize)
            });
            Some(by_wait || by_place)
        });
        if due != Some(true) {
            return false;
        }
        let Some(c) = self.calls.get_mut(&n) else {
            return false;
        };
        c.callback = Callback::Offered;
        c.rec.steps.push("callback offered".into());
        tracing::info!(call = %c.id, waited_s = waited.as_secs(), "callback offered");
        true
    }

    /// The caller of call `n` pressed 1 for a callback: they hear it confirmed, then the
    /// router hangs up; their place in the queue stays.
    fn callback_accepted(&mut self, n: u64, now: Instant) {
        let expire = self.callback_spec(n).map_or(240, |cb| cb.expire_minutes);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.callback = Callback::Requested {
            at: now,
            attempts: 0,
        };
        c.stage = Stage::CallbackConfirming;
        c.rec.steps.push("callback requested".into());
        tracing::info!(call = %c.id, caller = %c.caller, "callback requested");
        let leg = c.caller_leg;
        let clip = self.prompt(n, "callback-confirmed");
        self.relay.play(
            leg,
            Playlist {
                clips: vec![clip],
                then_loop: None,
            },
        );
        self.timers.insert(
            (
                now + Duration::from_secs(expire * 60),
                Timer::CallbackExpire(n),
            ),
            (),
        );
        self.save(n);
        self.keep_callback(n, now);
    }

    /// Keeps call `n`'s callback in the store as it stands, so a restart does not lose it.
    fn keep_callback(&self, n: u64, now: Instant) {
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        let Callback::Requested { at, attempts } = c.callback else {
            return;
        };
        let wall_ms = |i: Instant| {
            let ago = now.saturating_duration_since(i).as_millis() as i64;
            (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64 - ago
        };
        let p = self.cc.with(|d| {
            let t = &d.tenants[c.tenant];
            Some(crate::desk::PendingCallback {
                id: c.id.clone(),
                tenant: t.spec.id.clone(),
                trunk: t.spec.trunks.get(c.trunk)?.name.clone(),
                queue: t.queue(c.queue?)?.name.clone(),
                caller: c.caller.clone(),
                dialled: c.dialled.clone(),
                priority: c.priority,
                queued_at_ms: wall_ms(c.since.unwrap_or(at)),
                requested_at_ms: wall_ms(at),
                attempts,
            })
        });
        if let (Some(p), Some(w)) = (p, self.cc.records.get()) {
            let _ = w.send(RecordWrite::Callback(Box::new(p)));
        }
    }

    /// Takes up the callbacks kept from before the router restarted: each waits in its
    /// queue again with no leg, in the place its caller had, attempts and expiry counted
    /// from before.
    fn restore_callbacks(&mut self, now: Instant) {
        let kept = self
            .cc
            .restored_callbacks
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let ago = |ms: i64| {
            now.checked_sub(Duration::from_millis(
                now_ms.saturating_sub(ms).max(0) as u64
            ))
        };
        for (p, mut rec) in kept {
            let found = self.cc.with(|d| {
                let ti = d.tenants.iter().position(|t| t.spec.id == p.tenant)?;
                let t = &d.tenants[ti];
                let j = t
                    .spec
                    .trunks
                    .iter()
                    .position(|x| x.name == p.trunk && !x.retired)?;
                let q = *t.queue_ids.get(&p.queue)?;
                let expire = t.queue(q)?.callback.as_ref()?.expire_minutes;
                Some((ti, j, q, expire))
            });
            let Some((tenant, trunk, q, expire)) = found else {
                continue;
            };
            let a = Admission {
                tenant,
                trunk,
                route: Some(Route::Queue(q)),
                dialled: p.dialled.clone(),
                priority: p.priority,
                closed: None,
                outbound: None,
                internal: None,
                asserted: None,
            };
            let n = self.next_call;
            self.next_call += 1;
            rec.steps
                .push("callback kept across a restart of the router".into());
            // No leg: a number no call of the user agent has.
            let mut c = CallRt::new(
                p.id.clone(),
                &a,
                u64::MAX - n,
                p.caller.clone(),
                Stage::CallbackWaiting,
                rec,
                now,
            );
            c.queue = Some(q);
            c.since = ago(p.queued_at_ms).or(Some(now));
            let at = ago(p.requested_at_ms).unwrap_or(now);
            c.callback = Callback::Requested {
                at,
                attempts: p.attempts,
            };
            c.on_trunk = false;
            let left =
                Duration::from_secs(expire * 60).saturating_sub(now.saturating_duration_since(at));
            tracing::info!(call = %c.id, tenant = %p.tenant, queue = %p.queue, attempts = p.attempts, "callback taken up after the restart");
            let since = c.since.unwrap_or(now);
            self.calls.insert(n, c);
            self.cc
                .with(|d| d.tenants[tenant].stats[q.0 as usize].entered(n, since));
            self.timers
                .insert((now + left, Timer::CallbackExpire(n)), ());
            self.save(n);
            self.callback_requeue(n, now);
        }
    }

    /// Call `n`'s caller has heard that they will be called back (or hung up): their leg
    /// ends, the call waits in the queue with none.
    fn callback_parked(&mut self, n: u64, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        if c.stage != Stage::CallbackConfirming {
            return;
        }
        c.stage = Stage::CallbackWaiting;
        let leg = c.caller_leg;
        let (tenant, trunk, on_trunk) = (c.tenant, c.trunk, c.on_trunk);
        c.on_trunk = false;
        if self.legs.remove(&leg).is_some() {
            self.relay.close(leg);
            self.sockets.remove(&leg);
            self.ua.hangup(leg, now);
        }
        if on_trunk {
            Self::release_trunk(&self.cc, tenant, trunk);
        }
        self.save(n);
        // A callback taken at overflow left the queue: back in it, in its place by arrival
        // (a callback asked for while waiting is still in it, and stays).
        self.callback_requeue(n, now);
    }

    /// An agent answered call `n`, whose caller waits for a callback: the agent hears that
    /// the caller is being called, and the router calls them on the trunk they came from
    /// (from the number they dialled).
    fn call_back(&mut self, n: u64, now: Instant) {
        let ring = self.callback_spec(n).map_or(30, |cb| cb.ring_seconds);
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        let Callback::Requested { at, attempts } = c.callback else {
            return;
        };
        let (tenant, trunk, agent) = (c.tenant, c.trunk, c.agent);
        let (id, caller, dialled) = (c.id.clone(), c.caller.clone(), c.dialled.clone());
        let (can, full) = self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let can = t.spec.trunks.get(trunk).is_some_and(|x| x.places_calls());
            let full = t.trunks.get(trunk).is_some_and(|x| x.calls >= x.max_calls);
            (can, full)
        });
        if let Some((_, agent_leg)) = agent {
            let list = Playlist {
                clips: vec![self.tenant_prompt(tenant, "callback-calling")],
                then_loop: Some(self.prompts.music.clone()),
            };
            self.relay.play(agent_leg, list);
        }
        let placed = match (can, full, self.bind_media()) {
            (false, _, _) => Err("the trunk has no outbound target".to_owned()),
            (_, true, _) => Err("the trunk is full".to_owned()),
            (_, _, None) => Err("no media port free".to_owned()),
            (true, false, Some((socket, port))) => {
                // The caller sees the number they dialled.
                let shown = safe_user(&dialled);
                self.trunk_call(
                    tenant,
                    trunk,
                    &caller,
                    shown.as_deref(),
                    vec![format!("X-Switchboard-Call: {id}")],
                    port,
                    now,
                )
                .map(|leg| (leg, socket))
            }
        };
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.callback = Callback::Requested {
            at,
            attempts: attempts + 1,
        };
        c.stage = Stage::CallingBack;
        c.rec
            .steps
            .push(format!("callback attempt {}", attempts + 1));
        self.keep_callback(n, now);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        match placed {
            Ok((leg, socket)) => {
                tracing::info!(call = %id, attempt = attempts + 1, "calling the caller back");
                c.caller_leg = leg;
                c.on_trunk = true;
                self.sockets.insert(leg, socket);
                self.legs.insert(leg, Leg::Caller(n));
                Self::seize_trunk(&self.cc, tenant, trunk);
                self.timers.insert(
                    (now + Duration::from_secs(ring), Timer::CallbackRing(leg)),
                    (),
                );
            }
            Err(why) => {
                tracing::warn!(call = %id, %why, "cannot place the callback");
                self.callback_failed(n, &why, now);
            }
        }
    }

    /// Call `n`'s callback attempt failed (`why`): the agent is let go at once (no wrap-up)
    /// and the callback waits in the queue again after the retry time, keeping its place —
    /// or, after the last attempt, the call ends as failed.
    fn callback_failed(&mut self, n: u64, why: &str, now: Instant) {
        let spec = self.callback_spec(n);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Callback::Requested { attempts, .. } = c.callback else {
            return;
        };
        c.rec
            .steps
            .push(format!("callback attempt {attempts} failed: {why}"));
        tracing::info!(call = %c.id, attempt = attempts, %why, "the callback failed");
        let (tenant, trunk) = (c.tenant, c.trunk);
        if std::mem::take(&mut c.on_trunk) {
            Self::release_trunk(&self.cc, tenant, trunk);
        }
        let caller_leg = c.caller_leg;
        if self.legs.remove(&caller_leg).is_some() {
            self.relay.close(caller_leg);
            self.sockets.remove(&caller_leg);
            self.ua.hangup(caller_leg, now);
        }
        if let Some((agent, leg)) = c.agent.take() {
            c.answered_at = None;
            c.rec.answered_at = None;
            c.rec.agent = None;
            if self.legs.remove(&leg).is_some() {
                self.relay.close(leg);
                self.sockets.remove(&leg);
                self.ua.hangup(leg, now);
            }
            // No queue: no wrap-up and no handle time for a call that never happened.
            self.cc.with(|d| {
                d.tenants[tenant].agent_done(agent, None, Duration::ZERO, now);
                // (A call with no queue has no wrap-up time for its record.)
                let _ = d.finish_wrap_up(tenant, agent, now);
            });
        }
        let max = spec.as_ref().map_or(1, |cb| cb.attempts);
        if attempts >= max {
            c.failure = Some(format!(
                "callback failed after {attempts} attempt{}: {why}",
                if attempts == 1 { "" } else { "s" }
            ));
            self.finish(n, now);
            return;
        }
        c.stage = Stage::CallbackWaiting;
        let retry = spec.map_or(120, |cb| cb.retry_seconds);
        self.timers.insert(
            (now + Duration::from_secs(retry), Timer::CallbackRetry(n)),
            (),
        );
        self.save(n);
        self.dispatch();
    }

    /// Call `n`'s callback goes back to its place in the queue (after a failed attempt, or
    /// when the queue's longest wait passed); tried again later when the queue cannot take it.
    fn callback_requeue(&mut self, n: u64, now: Instant) {
        let retry = self.callback_spec(n).map_or(120, |cb| cb.retry_seconds);
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        let (Stage::CallbackWaiting, Some(q)) = (c.stage, c.queue) else {
            return;
        };
        let caller = routing::Caller {
            call: routing::CallId(n),
            priority: c.priority,
            since: c.since.unwrap_or(now),
        };
        let tenant = c.tenant;
        let r = self.cc.with(|d| {
            let e = &mut d.tenants[tenant].engine;
            if e.position(routing::CallId(n)).is_some() {
                return Ok(());
            }
            e.enqueue(q, caller, now)
        });
        match r {
            Ok(()) | Err(Refused::AlreadyQueued) => self.dispatch(),
            Err(why) => {
                tracing::debug!(call = n, %why, "the callback cannot go back to its queue yet");
                self.timers.insert(
                    (now + Duration::from_secs(retry), Timer::CallbackRetry(n)),
                    (),
                );
            }
        }
    }

    fn on_established(&mut self, leg: UaCall, media: &Negotiated, now: Instant) {
        let Some(role) = self.legs.get(&leg).copied() else {
            return;
        };
        match role {
            Leg::Caller(n) => {
                if let Some(socket) = self.sockets.remove(&leg) {
                    self.relay.open(leg, socket, media);
                }
                match self.calls.get_mut(&n) {
                    Some(c) if matches!(c.stage, Stage::Answering { .. }) => {
                        if let Stage::Answering { first } = c.stage {
                            self.route(n, first, now);
                        }
                    }
                    Some(c) if c.pending_answer => {
                        // An agent's call to a colleague, answered on both sides: connect.
                        c.pending_answer = false;
                        if let Some((_, agent_leg)) = c.agent {
                            self.relay.bridge(leg, agent_leg);
                        }
                    }
                    Some(c) if c.stage == Stage::Dialling => {
                        // The number answered: now the agent's phone is answered.
                        c.stage = Stage::Talking;
                        c.rec.steps.push("answered".into());
                        let agent_leg = c.agent.map(|(_, l)| l);
                        if let Some(al) = agent_leg {
                            let port = self
                                .sockets
                                .get(&al)
                                .and_then(|s| s.local_addr().ok())
                                .map(|a| a.port());
                            let answered =
                                port.map(|p| self.ua.answer(al, self.local_media(p, false), now));
                            if !matches!(answered, Some(Ok(()))) {
                                tracing::warn!(call = n, "cannot answer the agent's outside call");
                            }
                        }
                        self.save(n);
                    }
                    Some(c) if c.stage == Stage::CallingBack => {
                        // The caller took the callback: put them through to the agent.
                        c.stage = Stage::Talking;
                        c.called_back = true;
                        c.rec.steps.push("called back".into());
                        tracing::info!(call = %c.id, "the caller took the callback");
                        if let Some(w) = self.cc.records.get() {
                            let _ = w.send(RecordWrite::CallbackDone(c.id.clone()));
                        }
                        if let Some((_, agent_leg)) = c.agent {
                            self.relay.play(agent_leg, Playlist::default());
                            self.relay.bridge(leg, agent_leg);
                        }
                        self.save(n);
                    }
                    _ => {}
                }
            }
            Leg::Far(n) => {
                if let Some(socket) = self.sockets.remove(&leg) {
                    self.relay.open(leg, socket, media);
                }
                let ours = |c: &&mut CallRt| {
                    c.stage == Stage::Outside && c.far.is_none_or(|(l, _)| l == leg)
                };
                if let Some(c) = self.calls.get_mut(&n).filter(ours) {
                    c.stage = Stage::Talking;
                    c.handed_out = true;
                    if c.answered_at.is_none() {
                        // Sent out by a route, not an agent: the number answered the call.
                        c.answered_at = Some(now);
                        c.rec.answered_at = Some(time::OffsetDateTime::now_utc());
                    }
                    c.rec.steps.push(format!(
                        "answered by {}",
                        c.rec
                            .steps
                            .last()
                            .and_then(|s| s.rsplit(' ').next())
                            .unwrap_or("the number")
                    ));
                    let caller_leg = c.caller_leg;
                    let pending = std::mem::take(&mut c.transfer_pending)
                        .then_some(c.agent)
                        .flatten()
                        .map(|(agent, agent_leg)| (c.tenant, agent, agent_leg));
                    let referrer = c.referrer.take().map(|r| (c.tenant, r));
                    if let Some((tenant, agent, agent_leg)) = pending {
                        // The transfer the agent asked for is done: NOTIFY 200, they leave
                        // (before the bridge: leaving unbridges the caller).
                        self.agent_leaves(n, tenant, agent, agent_leg, true, now);
                    }
                    if let Some((tenant, r)) = referrer {
                        // The Teams user's transfer is done: NOTIFY 200, they leave.
                        self.referrer_leaves(tenant, &r, now);
                    }
                    self.relay.play(caller_leg, Playlist::default());
                    self.relay.bridge(caller_leg, leg);
                    self.save(n);
                }
            }
            Leg::Consult {
                call: n,
                tenant,
                agent,
            } => {
                let Some(c) = self
                    .calls
                    .get_mut(&n)
                    .filter(|c| c.consult.as_ref().is_some_and(|x| x.leg == leg))
                else {
                    self.legs.remove(&leg);
                    self.sockets.remove(&leg);
                    self.ua.hangup(leg, now);
                    return;
                };
                if let Some(x) = c.consult.as_mut() {
                    x.up = true;
                    x.since = Some(now);
                }
                c.rec.steps.push(format!(
                    "consult answered by {}",
                    c.consult
                        .as_ref()
                        .map(|x| x.upn.as_str())
                        .unwrap_or_default()
                ));
                let agent_leg = c.agent.map(|(_, l)| l);
                let by = c.agent.map(|(a, _)| a);
                if let Some(socket) = self.sockets.remove(&leg) {
                    self.relay.open(leg, socket, media);
                }
                let monitored = c.monitor.as_ref().is_some_and(|m| m.who.up);
                match agent_leg {
                    // A supervisor listening in hears the consultation too.
                    Some(_) if monitored => self.remix(n),
                    Some(al) => self.relay.bridge(al, leg),
                    None => {}
                }
                if let Some(person) = agent {
                    self.rung_into_call_answered(tenant, person);
                }
                self.consult_shown(tenant, by, n);
                self.save(n);
                if by.is_none() {
                    // The agent hung up while this rang: the person takes the caller.
                    self.consult_complete(n, now);
                }
            }
            Leg::Monitor {
                call: n,
                tenant,
                agent,
            } => {
                let Some(c) = self
                    .calls
                    .get_mut(&n)
                    .filter(|c| c.monitor.as_ref().is_some_and(|m| m.who.leg == leg))
                else {
                    self.legs.remove(&leg);
                    self.sockets.remove(&leg);
                    self.ua.hangup(leg, now);
                    return;
                };
                let mut upn = String::new();
                if let Some(m) = c.monitor.as_mut() {
                    m.who.up = true;
                    m.who.since = Some(now);
                    upn.clone_from(&m.who.upn);
                }
                c.rec.steps.push(format!("{upn} answered to listen in"));
                if let Some(socket) = self.sockets.remove(&leg) {
                    self.relay.open(leg, socket, media);
                }
                self.rung_into_call_answered(tenant, agent);
                tracing::info!(call = n, supervisor = %upn, "a supervisor is on the call");
                self.remix(n);
                self.monitor_shown(tenant, n, agent);
                self.save(n);
            }
            Leg::Offer { call: n, .. }
                if self
                    .calls
                    .get(&n)
                    .is_some_and(|c| c.outbound && c.agent.is_some_and(|(_, l)| l == leg)) =>
            {
                // The agent's own outside call is up both ways: connect them.
                if let Some(socket) = self.sockets.remove(&leg) {
                    self.relay.open(leg, socket, media);
                }
                if let Some(c) = self.calls.get_mut(&n) {
                    c.answered_at = Some(now);
                    c.rec.answered_at = Some(time::OffsetDateTime::now_utc());
                    self.relay.bridge(c.caller_leg, leg);
                }
                self.save(n);
            }
            Leg::Offer {
                call: n,
                tenant,
                agent,
            } => {
                let queue = self.calls.get(&n).and_then(|c| c.queue);
                let direct = self
                    .calls
                    .get_mut(&n)
                    .and_then(|c| c.direct.take_if(|a| *a == agent))
                    .is_some();
                let taken = self.cc.with(|d| {
                    let t = &mut d.tenants[tenant];
                    // A direct offer's agent was marked busy with the call when it was placed.
                    let ok = direct || t.engine.answered(routing::CallId(n), agent);
                    if ok && !direct {
                        if let Some(q) = queue {
                            let sl = t.queue(q).map_or(20, |x| x.service_level_seconds);
                            t.stats[q.0 as usize].left(
                                n,
                                Left::Answered,
                                Duration::from_secs(sl),
                                now,
                            );
                        }
                    }
                    if let Some(a) = t.agent_mut(agent) {
                        a.ringing = a.ringing.saturating_sub(1);
                        a.on_call = ok;
                    }
                    ok
                });
                let Some(c) = self.calls.get_mut(&n).filter(|_| taken) else {
                    // Another agent was first, or the caller left: this leg is not needed.
                    self.legs.remove(&leg);
                    self.sockets.remove(&leg);
                    self.ua.hangup(leg, now);
                    return;
                };
                c.offers.retain(|(l, _)| *l != leg);
                c.agent = Some((agent, leg));
                c.answered_at = Some(now);
                c.stage = Stage::Talking;
                c.rec.answered_at = Some(time::OffsetDateTime::now_utc());
                let (id, queue) = (c.id.clone(), if direct { None } else { c.queue });
                c.rec.agent = self.cc.with(|d| {
                    let a = d.tenants[tenant].agent_mut(agent)?;
                    a.last_call = Some(id);
                    a.last_queue = queue;
                    Some(a.upn.clone())
                });
                Self::offer_outcome(c, leg, "answered");
                for (other, _) in c.offers.clone() {
                    Self::offer_outcome(c, other, "cancelled");
                }
                let caller_leg = c.caller_leg;
                let others: Vec<(UaCall, AgentId)> = std::mem::take(&mut c.offers);
                tracing::info!(call = %c.id, waited_ms = now.duration_since(c.started).as_millis() as u64, "an agent answered");
                let calling_back = c.stage == Stage::Talking
                    && matches!(c.callback, Callback::Requested { .. })
                    && !self.legs.contains_key(&caller_leg);
                if let Some(socket) = self.sockets.remove(&leg) {
                    self.relay.open(leg, socket, media);
                }
                let pending = self.calls.get(&n).is_some_and(|c| c.pending_answer);
                if pending {
                    // The colleague answered: now the caller's phone is answered too (the two
                    // are bridged once its media is agreed).
                    let port = self
                        .sockets
                        .get(&caller_leg)
                        .and_then(|s| s.local_addr().ok())
                        .map(|a| a.port());
                    let answered =
                        port.map(|p| self.ua.answer(caller_leg, self.local_media(p, false), now));
                    if !matches!(answered, Some(Ok(()))) {
                        tracing::warn!(call = n, "cannot answer the agent's call to a colleague");
                    }
                }
                if calling_back {
                    self.call_back(n, now);
                } else {
                    self.relay.play(caller_leg, Playlist::default());
                    self.relay.bridge(caller_leg, leg);
                }
                self.save(n);
                for (other, a) in others {
                    self.legs.remove(&other);
                    self.sockets.remove(&other);
                    self.unring(tenant, a);
                    self.ua.hangup(other, now);
                }
            }
        }
    }

    fn on_ended(&mut self, leg: UaCall, now: Instant) {
        self.relay.close(leg);
        self.sockets.remove(&leg);
        let Some(role) = self.legs.remove(&leg) else {
            return;
        };
        match role {
            Leg::Far(n) => {
                let why = self.end_reason.clone().unwrap_or_else(|| "hung up".into());
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                if c.referrer.as_ref().is_some_and(|r| r.leg == leg) {
                    // The Teams user who passed the caller on hung up before the new party
                    // answered: the transfer goes on without them.
                    if let Some(r) = c.referrer.take() {
                        Self::release_trunk(&self.cc, c.tenant, r.trunk);
                        c.rec
                            .steps
                            .push(format!("{} left before the transfer ended", r.who));
                        tracing::info!(call = %c.id, who = %r.who, "the transferor in Teams left; the transfer goes on");
                    }
                    return;
                }
                if c.far.is_some_and(|(l, _)| l != leg) {
                    // Not the call's far party now (one a failed transfer left behind).
                    return;
                }
                if c.stage == Stage::Outside {
                    self.outside_failed(n, &why, now);
                } else {
                    self.finish(n, now);
                }
            }
            Leg::Monitor { call: n, .. } => {
                let why = self.end_reason.clone().unwrap_or_else(|| "hung up".into());
                if self
                    .calls
                    .get(&n)
                    .and_then(|c| c.monitor.as_ref())
                    .is_some_and(|m| m.who.leg == leg)
                {
                    self.monitor_over(n, &why, now);
                }
            }
            Leg::Consult { call: n, .. } => {
                let why = self.end_reason.clone().unwrap_or_else(|| "hung up".into());
                let x = self
                    .calls
                    .get(&n)
                    .and_then(|c| c.consult.clone())
                    .filter(|x| x.leg == leg);
                if let Some(x) = x {
                    // Someone a queue chose who did not take it: the queue's next choice.
                    let next = match (x.queue, x.agent, x.up) {
                        (Some(name), Some(person), false) => Some((name, person)),
                        _ => None,
                    };
                    self.consult_end(n, &why, next.is_none(), now);
                    if let Some((name, person)) = next {
                        self.consult_goes_on(n, &name, person, now);
                    }
                } else {
                    self.conference_left(n, leg, &why, now);
                }
            }
            Leg::Caller(n) => match self.calls.get(&n).map(|c| c.stage) {
                // Hung up before the confirmation ended: the callback stands.
                Some(Stage::CallbackConfirming) => self.callback_parked(n, now),
                Some(Stage::CallingBack) => {
                    let why = self.end_reason.clone().unwrap_or_else(|| "ended".into());
                    self.callback_failed(n, &why, now);
                }
                Some(Stage::Dialling) => {
                    let why = self.end_reason.clone().unwrap_or_else(|| "ended".into());
                    self.outbound_failed(n, &why, now);
                }
                _ => self.finish(n, now),
            },
            Leg::Offer {
                call: n,
                tenant,
                agent,
            } => {
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                if c.agent == Some((agent, leg))
                    && (c.consult.as_ref().is_some_and(|x| x.up) || !c.joined.is_empty())
                {
                    // The agent hung up while consulting, or in a conference: the caller stays
                    // with the person consulted (a transfer after consulting, as desk phones
                    // do) and those in the conference. Someone still ringing is let go, and a
                    // consultation waiting in a queue ends.
                    let ringing = c.consult.as_ref().filter(|x| !x.up).map(|x| x.leg);
                    self.consult_wait_end(n, Some("the agent hung up"));
                    if let Some(ringing) = ringing {
                        if self.legs.remove(&ringing).is_some() {
                            self.relay.close(ringing);
                            self.sockets.remove(&ringing);
                            self.ua.hangup(ringing, now);
                        }
                        self.consult_over(n, "the agent hung up", now);
                    }
                    self.consult_complete(n, now);
                    return;
                }
                if c.agent == Some((agent, leg))
                    && (c.consult.is_some() || c.consult_wait.is_some())
                {
                    // Their consultation rings or waits: the caller goes on to it.
                    self.consult_left_ringing(n, tenant, (agent, leg), now);
                    return;
                }
                if c.agent == Some((agent, leg)) && c.transfer_pending {
                    // The agent hung up while their transfer rings: it goes on without them.
                    c.transfer_pending = false;
                    self.agent_leaves(n, tenant, agent, leg, false, now);
                    return;
                }
                if c.agent == Some((agent, leg)) {
                    if c.stage == Stage::CallingBack {
                        // The agent gave up before the caller answered.
                        self.callback_failed(n, "the agent hung up first", now);
                    } else {
                        self.finish(n, now);
                    }
                    return;
                }
                // An offer that ended unanswered: refused (busy, declined, unreachable).
                let before = c.offers.len();
                c.offers.retain(|(l, _)| *l != leg);
                if c.offers.len() != before && c.direct == Some(agent) {
                    Self::offer_outcome(c, leg, "refused");
                    self.unring(tenant, agent);
                    self.direct_failed(n, "refused the call", now);
                } else if c.offers.len() != before {
                    Self::offer_outcome(c, leg, "refused");
                    self.cc.with(|d| {
                        let t = &mut d.tenants[tenant];
                        if let Some(a) = t.agent_mut(agent) {
                            a.ringing = a.ringing.saturating_sub(1);
                        }
                        t.engine
                            .offer_ended(routing::CallId(n), agent, OfferEnd::Refused, now);
                    });
                    // The record shows the refusal now, not at the call's next step.
                    self.save(n);
                    self.dispatch();
                }
            }
        }
    }

    /// Call `n` is over: both sides are hung up, the agent goes to wrap-up.
    fn finish(&mut self, n: u64, now: Instant) {
        let Some(mut c) = self.calls.remove(&n) else {
            return;
        };
        if let (Callback::Requested { .. }, Some(w)) = (c.callback, self.cc.records.get()) {
            let _ = w.send(RecordWrite::CallbackDone(c.id.clone()));
        }
        for (leg, _) in c.offers.clone() {
            Self::offer_outcome(&mut c, leg, "cancelled");
        }
        if c.on_trunk {
            Self::release_trunk(&self.cc, c.tenant, c.trunk);
        }
        let mut hang = Vec::new();
        if let Some((far, j)) = c.far.take() {
            Self::release_trunk(&self.cc, c.tenant, j);
            if self.legs.remove(&far).is_some() {
                hang.push(far);
            }
        }
        if let Some(r) = c.referrer.take() {
            Self::release_trunk(&self.cc, c.tenant, r.trunk);
            if self.legs.remove(&r.leg).is_some() {
                // Their REFER's outcome: the caller is gone.
                self.ua
                    .notify_transfer(r.leg, 487, "Request Terminated", now);
                hang.push(r.leg);
            }
        }
        if self.legs.remove(&c.caller_leg).is_some() {
            hang.push(c.caller_leg);
        }
        for (leg, _) in &c.offers {
            if self.legs.remove(leg).is_some() {
                hang.push(*leg);
            }
        }
        let waiting =
            c.agent.is_none() && matches!(c.stage, Stage::Queued | Stage::OverflowOffer(_));
        let parked = matches!(c.stage, Stage::CallbackConfirming | Stage::CallbackWaiting);
        let wrap_up = self.cc.with(|d| {
            let t = &mut d.tenants[c.tenant];
            t.engine.remove(routing::CallId(n));
            if let (true, Some(q)) = (waiting, c.queue) {
                t.stats[q.0 as usize].left(n, Left::Abandoned, Duration::ZERO, now);
            }
            if let (true, Some(q)) = (parked, c.queue) {
                // A callback never reached an agent: it leaves the queue's waiting callers.
                t.stats[q.0 as usize].left(n, Left::Moved, Duration::ZERO, now);
            }
            for (_, a) in &c.offers {
                if let Some(r) = t.agent_mut(*a) {
                    r.ringing = r.ringing.saturating_sub(1);
                }
            }
            if let Some(a) = c.direct {
                t.engine.set_busy_elsewhere(a, None, now);
            }
            if let Some(a) = c.dialler {
                t.engine.set_busy_elsewhere(a, None, now);
                if let Some(r) = t.agent_mut(a) {
                    r.on_call = false;
                }
            }
            let (agent, _) = c.agent?;
            let talk = c.answered_at.map_or(Duration::ZERO, |t| now - t);
            Some((agent, t.agent_done(agent, c.queue, talk, now)))
        });
        if let Some((_, leg)) = c.agent {
            if self.legs.remove(&leg).is_some() {
                hang.push(leg);
            }
        }
        if let Some(m) = c.monitor.take() {
            if self.legs.remove(&m.who.leg).is_some() {
                hang.push(m.who.leg);
            }
            self.consult_free(c.tenant, &m.who, now);
            if let Some(sup) = m.who.agent {
                self.monitor_shown(c.tenant, u64::MAX, sup);
            }
        }
        let people: Vec<Consult> = c
            .consult
            .take()
            .into_iter()
            .chain(c.joined.drain(..))
            .collect();
        let waited = c.consult_wait.take().is_some();
        if waited {
            self.cc
                .with(|d| d.tenants[c.tenant].consult_waits.remove(&n));
        }
        if !people.is_empty() || waited {
            for x in &people {
                if self.legs.remove(&x.leg).is_some() {
                    hang.push(x.leg);
                }
                self.consult_free(c.tenant, x, now);
            }
            let by = c.agent.map(|(a, _)| a);
            self.consult_shown(c.tenant, by, u64::MAX);
        }
        for leg in hang {
            self.relay.close(leg);
            self.sockets.remove(&leg);
            self.ua.hangup(leg, now);
        }
        if let Some(since) = c.hold_since.take() {
            c.held += now.saturating_duration_since(since);
        }
        c.rec.hold_seconds = c.held.as_secs();
        c.rec.outcome = match (c.agent.is_some(), c.stage, &c.failure) {
            (_, _, Some(why)) => {
                c.rec.reason = Some(why.clone());
                CallOutcome::Failed
            }
            (true, _, None) if c.outbound && c.answered_at.is_none() => {
                c.rec.reason = Some("the agent hung up first".into());
                CallOutcome::Abandoned
            }
            (true, _, None) => CallOutcome::Answered,
            // Its answering leg went on in another call (a consultation that became the
            // caller's call in an attended transfer).
            (false, _, None) if c.answered_at.is_some() => CallOutcome::Answered,
            (false, Stage::Closing("closed"), None) => CallOutcome::Closed,
            (false, Stage::Closing(prompt), None) => {
                c.rec.reason = Some(prompt.to_owned());
                if c.overflowed {
                    CallOutcome::Overflowed
                } else {
                    CallOutcome::Refused
                }
            }
            (false, _, None) => CallOutcome::Abandoned,
        };
        if c.rec.outcome == CallOutcome::Answered {
            if c.handed_out {
                c.rec.outcome = CallOutcome::Transferred;
            } else if c.called_back {
                c.rec.outcome = CallOutcome::CalledBack;
            }
        }
        c.rec.ended_at = Some(time::OffsetDateTime::now_utc());
        c.rec.choices = c.choices.clone();
        self.write(&c.rec);
        let outcome = c.rec.outcome;
        tracing::info!(call = %c.id, ?outcome, seconds = now.duration_since(c.started).as_secs(), "call ended");
        if let Some((agent, secs)) = wrap_up {
            self.timers.insert(
                (
                    now + Duration::from_secs(secs),
                    Timer::WrapUp(c.tenant, agent),
                ),
                (),
            );
        }
        self.dispatch();
    }

    fn on_relay(&mut self, ev: RelayEvent) {
        let now = Instant::now();
        match ev {
            RelayEvent::Played { leg } => {
                // The queue's music loops: only a menu or a closing prompt ends.
                let Some(Leg::Caller(n)) = self.legs.get(&leg).copied() else {
                    return;
                };
                let Some(c) = self.calls.get(&n) else {
                    return;
                };
                match c.stage {
                    Stage::Closing(_) if c.early => {
                        // Its end (Ended) finishes the call.
                        self.relay.close(leg);
                        self.ua.reject(leg, 404, now);
                    }
                    Stage::Closing(_) => {
                        self.ua.hangup(leg, now);
                        self.finish(n, now);
                    }
                    Stage::CallbackConfirming => self.callback_parked(n, now),
                    Stage::OverflowOffer(_) => {
                        let at = now + OVERFLOW_OFFER_WAIT;
                        self.timers
                            .insert((at, Timer::OverflowOffer(n, c.hops)), ());
                    }
                    Stage::Menu { attendant, .. } => {
                        let tenant = c.tenant;
                        let generation = c.menu_generation;
                        let wait = self.cc.with(|d| {
                            d.tenants[tenant]
                                .attendants
                                .get(attendant)
                                .map_or(5, |a| a.timeout_seconds)
                        });
                        self.timers.insert(
                            (
                                now + Duration::from_secs(wait),
                                Timer::NoInput(n, generation),
                            ),
                            (),
                        );
                    }
                    _ => {}
                }
            }
            RelayEvent::Failed { leg, why } => {
                tracing::warn!(leg, %why, "a leg's media could not start; ending it");
                let n = match self.legs.get(&leg) {
                    Some(Leg::Caller(n))
                    | Some(Leg::Far(n))
                    | Some(Leg::Offer { call: n, .. })
                    | Some(Leg::Consult { call: n, .. })
                    | Some(Leg::Monitor { call: n, .. }) => Some(*n),
                    None => None,
                };
                if let Some(c) = n.and_then(|n| self.calls.get_mut(&n)) {
                    c.failure.get_or_insert(format!("media: {why}"));
                }
                self.ua.hangup(leg, now);
                self.on_ended(leg, now);
            }
            RelayEvent::Dtmf { leg, digit } => self.on_digit(leg, digit, now),
        }
    }

    /// A REFER on `leg`, to pass the caller on to `target`. From an agent's answered leg: a
    /// queue, attendant or expert group of the tenant by name, an agent by UPN, one of the
    /// tenant's numbers, an outside number under the toll rules, a Teams user by MRI, or (with
    /// Replaces) the agent's own consultation. From the party the caller was handed to: see
    /// [`Self::far_refer`]. The router carries it out itself — it never forwards a REFER — and
    /// declines anything else, leaving the caller where they are.
    fn on_refer(
        &mut self,
        leg: UaCall,
        target: &str,
        replaces: Option<&str>,
        referred_by: Option<&str>,
        now: Instant,
    ) {
        if let Some(Leg::Far(n)) = self.legs.get(&leg).copied() {
            self.far_refer(n, leg, target, replaces, referred_by, now);
            return;
        }
        let Some(Leg::Offer {
            call: n,
            tenant,
            agent,
        }) = self.legs.get(&leg).copied()
        else {
            // Only an agent's answered leg, or a Teams user the caller was handed to, may
            // transfer; a caller's REFER is declined.
            self.ua.notify_transfer(leg, 603, "Decline", now);
            return;
        };
        if self
            .calls
            .get(&n)
            .is_none_or(|c| c.agent != Some((agent, leg)))
        {
            self.ua.notify_transfer(leg, 603, "Decline", now);
            return;
        }
        if let Some(r) = replaces {
            self.refer_replaces(n, tenant, agent, leg, r, now);
            return;
        }
        // The user agent hands the Refer-To URI over bare, its parameters kept.
        let bare = target.trim_start_matches('<').trim_end_matches('>');
        if uri_param(bare, "x-m").is_some() {
            // A Teams user's transfer to another Teams user (Direct Routing names them by
            // MRI, not number): the router calls them through Microsoft's proxy.
            self.transfer_to_teams(n, tenant, agent, leg, bare, referred_by, now);
            return;
        }
        let uri = value_uri(target);
        let user = safe_user(target).unwrap_or_default();
        let host = uri
            .split_once('@')
            .map(|(_, h)| h.split([';', ':', '>', '?']).next().unwrap_or_default())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let _ = self.transfer(n, tenant, agent, leg, &user, &host, true, now);
    }

    /// The agent's consultation of an outside number that `l` (their phone's leg, named by
    /// a REFER's Replaces) belongs to: their own outside call `n2` (not `n`), answered, of
    /// the same tenant; returns it and the number's leg.
    fn outside_consultation(
        &self,
        n: u64,
        tenant: usize,
        agent: AgentId,
        l: UaCall,
    ) -> Option<(u64, UaCall)> {
        let Some(Leg::Offer { call: n2, .. }) = self.legs.get(&l).copied() else {
            return None;
        };
        let c2 = self.calls.get(&n2)?;
        let ok = n2 != n
            && c2.outbound
            && c2.tenant == tenant
            && c2.agent == Some((agent, l))
            && c2.stage == Stage::Talking
            && c2.far.is_none();
        ok.then_some((n2, c2.caller_leg))
    }

    /// An attended transfer from the agent's phone to an outside number: `agent` (on leg
    /// `leg` of call `n`) called the number through the router (call `n2`, under the toll
    /// rules, its leg `far`), and REFERs their caller with Replaces naming that call. The
    /// router joins the caller to the number itself: the number's leg, and the trunk channel
    /// it holds, move to the caller's call; both of the agent's legs end; the agent wraps up.
    fn join_outside(
        &mut self,
        n: u64,
        (tenant, agent, leg): (usize, AgentId, UaCall),
        n2: u64,
        far: UaCall,
        now: Instant,
    ) {
        let by = self.cc.with(|d| {
            d.tenants[tenant]
                .agent(agent)
                .map(|r| r.upn.clone())
                .unwrap_or_default()
        });
        self.monitor_drop(n2, "the agent left the call", now);
        // The consultation keeps only the agent's leg, which ends with it; the number's leg
        // and its trunk channel go to the caller's call.
        let Some(c2) = self.calls.get_mut(&n2) else {
            return;
        };
        let number = c2.rec.dialled.clone();
        let j = c2.trunk;
        let Some((_, agent_leg2)) = c2.agent.take() else {
            return;
        };
        c2.on_trunk = false;
        c2.caller_leg = agent_leg2;
        c2.rec
            .steps
            .push(format!("transfer by {by} of their caller to {number}"));
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.rec
            .steps
            .push(format!("transfer by {by} to {number} after consulting"));
        c.rec
            .transfers
            .push(transfer_record(&by, &number, TransferKind::Consult));
        c.far = Some((far, j));
        c.far_holds = false;
        c.handed_out = true;
        let (caller_leg, id) = (c.caller_leg, c.id.clone());
        tracing::info!(call = %id, agent = %by, to = %number, "attended transfer to an outside number from the agent's phone");
        // The agent leaves (NOTIFY 200, wrap-up) before the bridge: leaving unbridges the
        // caller.
        self.agent_leaves(n, tenant, agent, leg, true, now);
        self.legs.insert(far, Leg::Far(n));
        self.relay.play(caller_leg, Playlist::default());
        self.relay.bridge(caller_leg, far);
        self.save(n);
        self.finish(n2, now);
    }

    /// An attended transfer from the agent's phone: `agent` (on leg `leg` of call `n`) has
    /// consulted someone with a call of their own through the router, and asks (REFER with
    /// `replaces`, naming that consultation's dialog with us) to connect the caller to them.
    /// The router joins the two itself: the caller and the consulted person talk, both of the
    /// agent's legs end, the agent wraps up. Anything else named: 481 in the NOTIFY (RFC 3891),
    /// and the caller stays with the agent.
    fn refer_replaces(
        &mut self,
        n: u64,
        tenant: usize,
        agent: AgentId,
        leg: UaCall,
        replaces: &str,
        now: Instant,
    ) {
        // The consultation: the agent's own call (their leg is its caller leg), answered.
        let named = self.ua.replaced_call(replaces);
        if let Some((n2, far)) = named.and_then(|l| self.outside_consultation(n, tenant, agent, l))
        {
            self.join_outside(n, (tenant, agent, leg), n2, far, now);
            return;
        }
        let consult = named.and_then(|l| {
            let Some(Leg::Caller(n2)) = self.legs.get(&l).copied() else {
                return None;
            };
            let c2 = self.calls.get(&n2)?;
            let ok = n2 != n
                && c2.dialler == Some(agent)
                && c2.tenant == tenant
                && c2.stage == Stage::Talking
                && c2.caller_leg == l;
            c2.agent.filter(|_| ok).map(|(a, x)| (n2, a, x))
        });
        let Some((n2, person, person_leg)) = consult else {
            tracing::info!(
                call = n,
                "a REFER with Replaces named no consultation of the agent's"
            );
            self.ua
                .notify_transfer(leg, 481, "Call/Transaction Does Not Exist", now);
            return;
        };
        let (by, upn) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let name = |a: AgentId| t.agent(a).map(|r| r.upn.clone()).unwrap_or_default();
            (name(agent), name(person))
        });
        self.monitor_drop(n, "the agent left the call", now);
        self.monitor_drop(n2, "the agent left the call", now);
        // The person's leg leaves the consultation for the caller's call.
        let person_talk = self.calls.get_mut(&n2).map(|c2| {
            c2.agent = None;
            c2.rec
                .steps
                .push(format!("transfer by {by} of their caller to {upn}"));
            c2.answered_at
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
        });
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let step = format!("transfer by {by} to {upn} after consulting");
        c.rec.steps.push(step.clone());
        c.rec
            .transfers
            .push(transfer_record(&by, &upn, TransferKind::Consult));
        c.rec.agent = Some(upn.clone());
        let queue = c.queue;
        let talk = c
            .answered_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        c.agent = Some((person, person_leg));
        c.answered_at = Some(now);
        let caller_leg = c.caller_leg;
        let id = c.id.clone();
        tracing::info!(call = %id, agent = %by, to = %upn, talked_s = person_talk.map(|d| d.as_secs()), "attended transfer from the agent's phone");
        self.legs.insert(
            person_leg,
            Leg::Offer {
                call: n,
                tenant,
                agent: person,
            },
        );
        self.relay.play(caller_leg, Playlist::default());
        self.relay.bridge(caller_leg, person_leg);
        // The agent's leg of the caller's call: NOTIFY 200, then their phone hangs up (or we
        // do); their consultation leg is ended with that call.
        self.refer_succeeded(leg, now);
        self.legs.remove(&leg);
        self.relay.close(leg);
        let secs = self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let secs = t.agent_done(agent, queue, talk, now);
            // The person now holds the caller's call.
            t.engine
                .set_busy_elsewhere(person, Some(routing::CallId(n)), now);
            if let Some(r) = t.agent_mut(person) {
                r.last_call = Some(id);
                r.last_queue = None;
                r.on_call = true;
            }
            secs
        });
        self.timers.insert(
            (
                now + Duration::from_secs(secs),
                Timer::WrapUp(tenant, agent),
            ),
            (),
        );
        self.save(n);
        self.finish(n2, now);
    }

    /// A target the API names — a colleague by UPN, or a name in the tenant's own domain, with
    /// `teams:` before it to ring them in Teams — as the checked user part (empty when unfit),
    /// the lower-case host and whether Teams was asked for.
    fn api_target(&self, tenant: usize, target: &str) -> (String, String, bool) {
        // `teams:<person>` (any case): ring them in Teams, though their Switchboard phone is
        // registered.
        let (in_teams, target) = match target.get(..6) {
            Some(p) if p.eq_ignore_ascii_case("teams:") => (true, &target[6..]),
            _ => (false, target),
        };
        let (user, host) = match target.split_once('@') {
            Some((u, h)) => (u.to_owned(), h.to_ascii_lowercase()),
            None => (
                target.to_owned(),
                self.cc.with(|d| d.tenants[tenant].spec.domain.clone()),
            ),
        };
        let user = safe_user(&format!("sip:{user}@x")).unwrap_or_default();
        (user, host, in_teams)
    }

    /// The API asks for something.
    fn on_command(&mut self, cmd: crate::desk::EdgeCommand) {
        let now = Instant::now();
        match cmd {
            crate::desk::EdgeCommand::GreetingsChanged => {
                // An attendant added or changed through the API: read its greeting (a few
                // hundred kilobytes; the API checked that the file is there).
                let (dir, new): (Option<std::path::PathBuf>, Vec<String>) = self.cc.with(|d| {
                    let new = d
                        .tenants
                        .iter()
                        .flat_map(|t| t.spec.attendants.iter())
                        .map(|a| a.greeting.clone())
                        .filter(|g| !self.prompts.has(g))
                        .collect();
                    (d.prompts_dir.clone(), new)
                });
                if let (Some(dir), false) = (dir, new.is_empty()) {
                    self.prompts.add(&dir, crate::center::LANGUAGES, &new);
                    tracing::info!(
                        greetings = new.len(),
                        "greetings read for attendants set through the API"
                    );
                }
            }
            crate::desk::EdgeCommand::TrunksChanged => {
                // The configuration API added or changed a trunk: find trunks anew, and probe
                // those not probed yet a second from now.
                let maps = trunk_maps(&self.cc, &self.resolve);
                self.trunk_of = maps.by_source;
                self.trunk_users = maps.users;
                self.probes = maps.probes;
                self.dr_fqdns = maps.fqdns;
                self.dr_sources.extend(maps.dr_sources);
                for t in maps.probed {
                    if !self.timers.keys().any(|(_, k)| *k == t) {
                        self.timers.insert((now + Duration::from_secs(1), t), ());
                    }
                }
                tracing::info!("trunks changed through the API; the edge knows them now");
            }
            crate::desk::EdgeCommand::Consult {
                tenant,
                agent,
                action,
                reply,
            } => {
                let r = self.consult(tenant, agent, action, now);
                let _ = reply.send(r);
            }
            crate::desk::EdgeCommand::Monitor {
                tenant,
                agent,
                supervisor,
                mode,
                reply,
            } => {
                let r = self.monitor(tenant, agent, supervisor, mode, now);
                let _ = reply.send(r);
            }
            crate::desk::EdgeCommand::Transfer {
                tenant,
                agent,
                target,
                reply,
            } => {
                use crate::desk::TransferRefusal;
                // The call the agent is talking on.
                let up = self.calls.iter().find_map(|(n, c)| {
                    c.agent
                        .filter(|(a, _)| *a == agent && c.tenant == tenant)
                        .map(|(_, leg)| (*n, leg))
                });
                let r = match up {
                    None => Err(TransferRefusal::NoCall),
                    Some((n, leg)) => {
                        let (user, host, in_teams) = self.api_target(tenant, &target);
                        if let Some(c) = self.calls.get_mut(&n) {
                            c.direct_in_teams = in_teams;
                        }
                        let r = self.transfer(n, tenant, agent, leg, &user, &host, false, now);
                        if let Some(c) = self.calls.get_mut(&n).filter(|_| r.is_err()) {
                            c.direct_in_teams = false;
                        }
                        r
                    }
                };
                let _ = reply.send(r);
            }
        }
    }

    /// A step of `agent`'s consultation on the call they talk on.
    fn consult(
        &mut self,
        tenant: usize,
        agent: AgentId,
        action: crate::desk::ConsultAction,
        now: Instant,
    ) -> Result<String, crate::desk::ConsultRefusal> {
        use crate::desk::{ConsultAction, ConsultRefusal};
        let n = self
            .calls
            .iter()
            .find(|(_, c)| {
                c.tenant == tenant
                    && c.stage == Stage::Talking
                    && c.agent.is_some_and(|(a, _)| a == agent)
            })
            .map(|(n, _)| *n)
            .ok_or(ConsultRefusal::NoCall)?;
        let by = self.upn(tenant, agent);
        let current = self.calls.get(&n).and_then(|c| c.consult.clone());
        let joined = self.calls.get(&n).map_or(0, |c| c.joined.len());
        // A consultation waiting in a queue: it may only be cancelled.
        let waiting = self
            .calls
            .get(&n)
            .and_then(|c| c.consult_wait.as_ref())
            .map(|w| format!("queue {}", w.name));
        if let Some(queue) = waiting {
            return match action {
                ConsultAction::Start(_) => Err(ConsultRefusal::Already(queue)),
                ConsultAction::Complete | ConsultAction::Conference => {
                    Err(ConsultRefusal::NotAnswered(queue))
                }
                ConsultAction::Cancel => {
                    self.consult_wait_end(n, Some("cancelled"));
                    Ok(format!("consult by {by} with {queue} cancelled"))
                }
            };
        }
        match (action, current) {
            (ConsultAction::Start(_), Some(x)) => Err(ConsultRefusal::Already(x.upn)),
            // The caller, the agent, those joined and the one consulted must fit in the mix.
            (ConsultAction::Start(_), None) if joined + 3 > crate::relay::MAX_CONFERENCE => {
                Err(ConsultRefusal::Full(crate::relay::MAX_CONFERENCE - 1))
            }
            (ConsultAction::Start(target), None) => {
                if let Some(c) = self.calls.get_mut(&n) {
                    c.consult_passed.clear();
                }
                self.consult_start(n, agent, &by, &target, now)
            }
            // In a conference with nobody being consulted: the agent leaves it to the others.
            (ConsultAction::Complete, None) if joined > 0 => Ok(self.consult_complete(n, now)),
            (_, None) => Err(ConsultRefusal::NoConsult),
            (ConsultAction::Cancel, Some(x)) => {
                if self.legs.remove(&x.leg).is_some() {
                    self.relay.close(x.leg);
                    self.sockets.remove(&x.leg);
                    self.ua.hangup(x.leg, now);
                }
                self.consult_over(n, "cancelled", now);
                Ok(format!("consult by {by} with {} cancelled", x.upn))
            }
            (ConsultAction::Complete | ConsultAction::Conference, Some(x)) if !x.up => {
                Err(ConsultRefusal::NotAnswered(x.upn))
            }
            (ConsultAction::Complete, Some(_)) => Ok(self.consult_complete(n, now)),
            (ConsultAction::Conference, Some(_)) => {
                let Some(c) = self.calls.get_mut(&n) else {
                    return Err(ConsultRefusal::NoCall);
                };
                c.joined.extend(c.consult.take());
                let mut names: Vec<&str> = vec![by.as_str()];
                names.extend(c.joined.iter().map(|x| x.upn.as_str()));
                let step = format!("conference of {} with the caller", and_list(&names));
                c.rec.steps.push(step.clone());
                self.remix(n);
                self.consult_shown(tenant, Some(agent), n);
                self.save(n);
                Ok(step)
            }
        }
    }

    /// `agent` (`by`) starts consulting outside number `number` on call `n`, where the toll
    /// rules and caps allow it: the caller hears music, the number is rung on the tenant's
    /// outbound trunk (holding one of its channels) for [`OUTBOUND_RING_SECONDS`].
    fn consult_outside(
        &mut self,
        n: u64,
        (tenant, agent): (usize, AgentId),
        by: &str,
        number: &str,
        now: Instant,
    ) -> Result<String, crate::desk::ConsultRefusal> {
        use crate::desk::ConsultRefusal;
        let (j, caller_id, _) = self
            .outside_allowed(tenant, agent, number, now)
            .map_err(|why| ConsultRefusal::NotAllowed(number.to_owned(), why))?;
        let Some((socket, port)) = self.bind_media() else {
            return Err(ConsultRefusal::Busy(number.to_owned()));
        };
        let id = self.calls.get(&n).ok_or(ConsultRefusal::NoCall)?.id.clone();
        let headers = vec![format!("X-Switchboard-Call: {id}")];
        let leg = self
            .trunk_call(tenant, j, number, caller_id.as_deref(), headers, port, now)
            .map_err(|why| {
                tracing::warn!(%why, %number, "cannot call the outside number to consult");
                ConsultRefusal::Busy(number.to_owned())
            })?;
        self.outside_placed(tenant, Some(agent), now);
        Self::seize_trunk(&self.cc, tenant, j);
        self.sockets.insert(leg, socket);
        self.legs.insert(
            leg,
            Leg::Consult {
                call: n,
                tenant,
                agent: None,
            },
        );
        self.timers.insert(
            (
                now + Duration::from_secs(OUTBOUND_RING_SECONDS),
                Timer::RingOut(leg),
            ),
            (),
        );
        let x = Consult {
            agent: None,
            trunk: Some(j),
            upn: number.to_owned(),
            leg,
            up: false,
            since: None,
            queue: None,
        };
        self.consult_begun(n, (tenant, agent), by, x, None)
    }

    /// `agent` (`by`) consults `x` on call `n`, whose leg now rings (`via`: how they were
    /// reached, `of queue orders`, `in Teams`): recorded and shown. The
    /// caller waits with music (or talks on with those in the conference); the agent hears
    /// nothing until the person answers.
    fn consult_begun(
        &mut self,
        n: u64,
        (tenant, agent): (usize, AgentId),
        by: &str,
        x: Consult,
        via: Option<&str>,
    ) -> Result<String, crate::desk::ConsultRefusal> {
        let Some(c) = self.calls.get_mut(&n) else {
            return Err(crate::desk::ConsultRefusal::NoCall);
        };
        let step = match via {
            Some(v) => format!("consult by {by} with {} {v}", x.upn),
            None => format!("consult by {by} with {}", x.upn),
        };
        c.rec.steps.push(step.clone());
        c.consult = Some(x);
        self.remix(n);
        self.consult_shown(tenant, Some(agent), n);
        self.save(n);
        tracing::info!(call = n, %step, "consulting");
        Ok(step)
    }

    /// Call `n`'s agent consults a queue with nobody free yet (`w`): the consultation waits
    /// there, the agent and the caller hearing music (the caller talks on with those in a
    /// conference), until [`Self::consult_waits_served`] finds an agent of it free. Returns
    /// the step.
    fn consult_wait_begin(
        &mut self,
        n: u64,
        tenant: usize,
        w: ConsultWait,
    ) -> Result<String, crate::desk::ConsultRefusal> {
        let Some(c) = self.calls.get_mut(&n) else {
            return Err(crate::desk::ConsultRefusal::NoCall);
        };
        let step = format!("consult by {} with queue {}: waiting", w.by, w.name);
        c.rec.steps.push(step.clone());
        let agent = w.agent;
        let agent_leg = c.agent.map(|(_, l)| l);
        tracing::info!(call = %c.id, queue = %w.name, "a consultation waits in the queue");
        let queue = w.queue;
        c.consult_wait = Some(w);
        self.cc
            .with(|d| d.tenants[tenant].consult_waits.insert(n, queue));
        self.remix(n);
        if let Some(l) = agent_leg {
            let music = Playlist {
                clips: Vec::new(),
                then_loop: Some(self.prompts.music.clone()),
            };
            self.relay.play(l, music);
        }
        self.consult_shown(tenant, Some(agent), n);
        self.save(n);
        Ok(step)
    }

    /// Call `n`'s consultation of a queue stops waiting (`why`, recorded when given): the
    /// agent's music stops; they talk with the caller again unless the queue's agent is rung
    /// next. Returns what waited.
    fn consult_wait_end(&mut self, n: u64, why: Option<&str>) -> Option<ConsultWait> {
        let c = self.calls.get_mut(&n)?;
        let w = c.consult_wait.take()?;
        if let Some(why) = why {
            c.rec
                .steps
                .push(format!("consult with queue {} ended: {why}", w.name));
        }
        let tenant = c.tenant;
        if let Some((_, l)) = c.agent {
            self.relay.play(l, Playlist::default());
        }
        self.cc.with(|d| d.tenants[tenant].consult_waits.remove(&n));
        self.remix(n);
        self.consult_shown(tenant, Some(w.agent), n);
        self.save(n);
        Some(w)
    }

    /// Consultations waiting in queues, longest first: each whose queue has an agent free
    /// now, and no caller waiting, rings that agent (as [`Self::consult_start`] would have);
    /// one whose queue has nobody logged in any more ends.
    fn consult_waits_served(&mut self, now: Instant) {
        let mut waiting: Vec<(Instant, u64)> = self
            .calls
            .iter()
            .filter_map(|(n, c)| c.consult_wait.as_ref().map(|w| (w.since, *n)))
            .collect();
        waiting.sort();
        for (_, n) in waiting {
            let Some((tenant, q, agent, passed)) = self.calls.get(&n).and_then(|c| {
                let w = c.consult_wait.as_ref()?;
                Some((c.tenant, w.queue, w.agent, c.consult_passed.clone()))
            }) else {
                continue;
            };
            let (free, staffed, unrung) = self.cc.with(|d| {
                let t = &mut d.tenants[tenant];
                (
                    t.engine.next_for_consult(q, &passed).is_some(),
                    t.queue_staffed(q, agent, &[]),
                    t.queue_staffed(q, agent, &passed),
                )
            });
            if staffed == 0 {
                self.consult_wait_end(n, Some("nobody of the queue is logged in any more"));
                continue;
            }
            if unrung == 0 {
                let why = "everyone of the queue logged in was rung and none took it";
                self.consult_wait_end(n, Some(why));
                continue;
            }
            if !free {
                continue;
            }
            let Some(w) = self.consult_wait_end(n, None) else {
                continue;
            };
            if let Err(e) = self.consult_start(n, w.agent, &w.by, &w.target, now) {
                tracing::info!(call = n, queue = %w.name, %e, "a waiting consultation could not ring the queue's agent");
                self.queue_consult_ended(n, &w.name, &e.to_string());
            }
        }
    }

    /// `agent` (`by`) starts consulting `target` on call `n`: the caller hears music, the
    /// person's phone rings.
    fn consult_start(
        &mut self,
        n: u64,
        agent: AgentId,
        by: &str,
        target: &str,
        now: Instant,
    ) -> Result<String, crate::desk::ConsultRefusal> {
        use crate::desk::ConsultRefusal;
        let Some(c) = self.calls.get(&n) else {
            return Err(ConsultRefusal::NoCall);
        };
        let tenant = c.tenant;
        let passed = c.consult_passed.clone();
        let (user, host, in_teams) = self.api_target(tenant, target);
        let outside = !in_teams
            && crate::center::is_e164(&user)
            && self.cc.with(|d| {
                let t = &d.tenants[tenant];
                t.spec.outbound.is_some() && t.number(&user).is_none()
            });
        if outside {
            return self.consult_outside(n, (tenant, agent), by, &user, now);
        }
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".-".contains(ch));
        let shown = format!("{user}@{host}");
        // A queue with nobody free now (or callers first), but agents logged in: wait there.
        let mut wait = None;
        let found = self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let route = (host_ok && !user.is_empty())
                .then(|| match in_teams {
                    true => t.transfer_target_in_teams(&user, &host),
                    false => t.transfer_target(&user, &host),
                })
                .flatten();
            // A queue: the agent its strategy would offer the next call to.
            let (route, via) = match route {
                Some(Route::Queue(q)) => {
                    let name = t.queues.get(q.0 as usize).map(|x| x.name.clone());
                    let name = name.unwrap_or_default();
                    match t.engine.next_for_consult(q, &passed) {
                        Some(a) => (Some(Route::Agent(a)), Some((q, name))),
                        None if t.queue_staffed(q, agent, &passed) > 0 => {
                            wait = Some((q, name));
                            return None;
                        }
                        None if t.queue_staffed(q, agent, &[]) > 0 => {
                            return Some(Err(ConsultRefusal::QueueAllRung(name)));
                        }
                        None => return Some(Err(ConsultRefusal::NoQueueAgent(name))),
                    }
                }
                r => (r, None),
            };
            match route {
                Some(Route::Agent(a)) | Some(Route::Expert(a)) if a != agent => {
                    let r = t.agent(a)?;
                    if in_teams && t.teams_reach(a).is_none() {
                        return Some(Err(ConsultRefusal::NotInTeams(r.upn.clone())));
                    }
                    let reachable = r.contact.is_some() || t.teams_reach(a).is_some();
                    Some(Ok((a, r.upn.clone(), t.expert_free(a), reachable, via)))
                }
                Some(Route::NoExpert) => Some(Err(ConsultRefusal::NoExpert(user.clone()))),
                _ => None,
            }
        });
        if let Some((queue, name)) = wait {
            let w = ConsultWait {
                queue,
                name,
                agent,
                by: by.to_owned(),
                target: target.to_owned(),
                since: now,
            };
            return self.consult_wait_begin(n, tenant, w);
        }
        let (person, upn, free, reachable, via) = match found {
            None => return Err(ConsultRefusal::NoSuchTarget(shown)),
            Some(Err(e)) => return Err(e),
            Some(Ok(x)) => x,
        };
        if !(reachable && free) {
            return Err(ConsultRefusal::Busy(upn));
        }
        let Some((socket, port)) = self.bind_media() else {
            return Err(ConsultRefusal::Busy(upn));
        };
        let queue = format!(
            "X-Switchboard-Queue: {}",
            c.rec.queue.clone().unwrap_or_else(|| "direct".into())
        );
        let role = Leg::Consult {
            call: n,
            tenant,
            agent: Some(person),
        };
        // A queue's choice rings for the queue's alert time, as its calls do.
        let alert = via.as_ref().map_or(DIRECT_ALERT_SECONDS, |(q, _)| {
            self.cc.with(|d| {
                d.tenants[tenant]
                    .queue(*q)
                    .map_or(DIRECT_ALERT_SECONDS, |x| x.alert_seconds)
            })
        });
        let leg = self
            .ring_into_call(role, queue, (socket, port), (in_teams, alert), now)
            .map_err(|why| {
                tracing::warn!(%why, person = %upn, "cannot call the person to consult");
                ConsultRefusal::Busy(upn.clone())
            })?;
        if let Some((q, _)) = &via {
            self.cc
                .with(|d| d.tenants[tenant].engine.consulted(*q, person));
        }
        let x = Consult {
            agent: Some(person),
            trunk: None,
            upn,
            leg,
            up: false,
            since: None,
            queue: via.as_ref().map(|(_, name)| name.clone()),
        };
        let via = match (via, in_teams) {
            (Some((_, q)), _) => Some(format!("of queue {q}")),
            (None, true) => Some("in Teams".to_owned()),
            (None, false) => None,
        };
        self.consult_begun(n, (tenant, agent), by, x, via.as_deref())
    }

    /// The person consulted on call `n` is free again (their leg ended, rang out, or the
    /// consultation was cancelled): the agent and the caller talk again (`why` recorded).
    fn consult_over(&mut self, n: u64, why: &str, now: Instant) {
        self.consult_end(n, why, true, now);
    }

    /// [`Self::consult_over`]; with `show` false the agent's view keeps the consultation
    /// until the caller of this shows what follows (the queue's next choice rung, or the
    /// end): `GET /v1/agents/me` never shows a moment without it while it goes on.
    fn consult_end(&mut self, n: u64, why: &str, show: bool, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Some(x) = c.consult.take() else {
            return;
        };
        c.rec
            .steps
            .push(format!("consult with {} ended: {why}", x.upn));
        let tenant = c.tenant;
        let agent = c.agent;
        let alone = agent.is_none() && c.joined.is_empty();
        self.consult_free(tenant, &x, now);
        if let Some((a, _)) = agent {
            self.remix(n);
            if show {
                self.consult_shown(tenant, Some(a), n);
            }
        }
        self.save(n);
        if alone {
            self.consult_left_unanswered(n, &x, now);
        }
    }

    /// The person rung for call `n`'s consultation (`x`) after its agent hung up did not take
    /// the caller: the caller goes to the queue that chose them, or back to where they came
    /// from (their queue, else their attendant, else a message and the end).
    fn consult_left_unanswered(&mut self, n: u64, x: &Consult, now: Instant) {
        let Some(tenant) = self.calls.get(&n).map(|c| c.tenant) else {
            return;
        };
        let queue = x.queue.as_ref().and_then(|name| {
            self.cc
                .with(|d| d.tenants[tenant].queue_ids.get(name).copied())
        });
        match queue {
            Some(q) => self.route(n, Route::Queue(q), now),
            None => self.fail_back(n, &format!("{} did not take the caller", x.upn), now),
        }
    }

    /// The agent of call `n` hung up while their consultation rang or waited in a queue, with
    /// nobody in a conference: the caller is not dropped. A wait in a queue becomes the
    /// caller's place in that queue (their priority and first arrival kept); someone ringing
    /// rings on and takes the caller when they answer, as after a consultation — unanswered,
    /// [`Self::consult_left_unanswered`]. The agent goes to wrap-up.
    fn consult_left_ringing(
        &mut self,
        n: u64,
        tenant: usize,
        (agent, leg): (AgentId, UaCall),
        now: Instant,
    ) {
        let wait = self.consult_wait_end(n, None);
        self.agent_leaves(n, tenant, agent, leg, false, now);
        self.consult_shown(tenant, Some(agent), u64::MAX);
        let by = self.upn(tenant, agent);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        if let Some(w) = wait {
            c.rec.steps.push(format!(
                "{by} hung up while consulting queue {}: the caller goes to the queue",
                w.name
            ));
            tracing::info!(call = %c.id, queue = %w.name, "the agent hung up while their consultation waited: the caller goes to the queue");
            self.route(n, Route::Queue(w.queue), now);
            return;
        }
        let upn = c
            .consult
            .as_ref()
            .map(|x| x.upn.clone())
            .unwrap_or_default();
        c.rec.steps.push(format!(
            "{by} hung up while {upn} rang: the caller goes to them when they answer"
        ));
        tracing::info!(call = %c.id, "the agent hung up while their consultation rang: the caller goes to the person rung");
        self.remix(n);
        self.save(n);
    }

    /// Someone in the conference on call `n` left it (their leg `leg` ended, `why`): the
    /// others talk on.
    fn conference_left(&mut self, n: u64, leg: UaCall, why: &str, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Some(i) = c.joined.iter().position(|x| x.leg == leg) else {
            return;
        };
        let x = c.joined.remove(i);
        c.rec
            .steps
            .push(format!("{} left the conference: {why}", x.upn));
        let (tenant, agent) = (c.tenant, c.agent.map(|(a, _)| a));
        let nobody_left = agent.is_none() && c.joined.is_empty() && c.consult.is_none();
        self.consult_free(tenant, &x, now);
        if nobody_left {
            // Outside numbers the agent left the caller with have all hung up.
            self.finish(n, now);
            return;
        }
        self.remix(n);
        self.consult_shown(tenant, agent, n);
        self.save(n);
    }

    /// Who hears whom on call `n`: the caller, the agent (unless they are consulting someone
    /// new) and everyone joined hear each other; a caller left alone hears music. A
    /// supervisor on the call hears all of them; the agent hears them when they whisper,
    /// everyone when they barged in.
    fn remix(&mut self, n: u64) {
        // The music an agent hears while the caller holds is for the two of them alone.
        if let Some(c) = self.calls.get_mut(&n) {
            let alone = c.alone_with_agent();
            if let Some(l) = c
                .caller_hold_music
                .take_if(|l| !alone || c.agent.is_none_or(|(_, a)| a != *l))
            {
                self.relay.play(l, Playlist::default());
            }
        }
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        // The caller's side, and apart from it the agent with the person they consult.
        let mut side = vec![c.caller_leg];
        let mut apart = Vec::new();
        match (&c.consult, c.agent) {
            // Waiting in a queue for someone to consult: the agent hears music, apart.
            (None, Some((_, l))) if c.consult_wait.is_some() => apart.push(l),
            (None, agent) => side.extend(agent.map(|(_, l)| l)),
            // The agent talks with the person consulted once they answer; until then, alone.
            (Some(x), Some((_, l))) => {
                apart.push(l);
                apart.extend(x.up.then_some(x.leg));
            }
            (Some(_), None) => {}
        }
        side.extend(c.joined.iter().map(|x| x.leg));
        let others = |group: &[UaCall], me: UaCall| -> (UaCall, Vec<UaCall>) {
            (me, group.iter().copied().filter(|l| *l != me).collect())
        };
        let mut hear: Vec<(UaCall, Vec<UaCall>)> = side
            .iter()
            .map(|l| others(&side, *l))
            .chain(apart.iter().map(|l| others(&apart, *l)))
            .collect();
        if let Some(m) = c.monitor.as_ref().filter(|m| m.who.up) {
            let sup = m.who.leg;
            let agent = c.agent.map(|(_, l)| l);
            for (l, peers) in hear.iter_mut() {
                let hears_sup = match m.mode {
                    MonitorMode::Listen => false,
                    MonitorMode::Whisper => Some(*l) == agent,
                    MonitorMode::Barge => true,
                };
                if hears_sup {
                    peers.push(sup);
                }
            }
            hear.push((sup, side.iter().chain(&apart).copied().collect()));
        }
        let caller_leg = c.caller_leg;
        let alone = hear
            .iter()
            .find(|(l, _)| *l == caller_leg)
            .is_none_or(|(_, peers)| peers.is_empty());
        self.relay.hear(hear);
        let playlist = if alone {
            Playlist {
                clips: Vec::new(),
                then_loop: Some(self.prompts.music.clone()),
            }
        } else {
            Playlist::default()
        };
        self.relay.play(caller_leg, playlist);
    }

    /// The agent of call `n` leaves it to the person consulted (who must have answered) and
    /// those in its conference (or hung up while consulting): the caller talks on with them,
    /// the first to have joined holding the call as its agent; the agent goes to wrap-up.
    /// Returns the step.
    fn consult_complete(&mut self, n: u64, now: Instant) -> String {
        if self.calls.get(&n).is_some_and(|c| {
            c.joined.is_empty() && c.consult.as_ref().is_some_and(|x| x.agent.is_none())
        }) {
            return self.consult_complete_outside(n, now);
        }
        self.monitor_drop(n, "the agent left the call", now);
        let Some(c) = self.calls.get_mut(&n) else {
            return String::new();
        };
        if let Some(x) = c.consult.take() {
            if !c.joined.is_empty() {
                c.rec.steps.push(format!("{} joined the conference", x.upn));
            }
            c.joined.push(x);
        }
        // The first to have joined who is one of ours holds the call (an outside number in
        // the conference talks on, but holds nothing).
        let Some(first) = c.joined.iter().position(|x| x.agent.is_some()) else {
            return self.conference_left_to_outside(n, now);
        };
        let x = c.joined.remove(first);
        let Some(person) = x.agent else {
            return String::new();
        };
        let others = !c.joined.is_empty();
        let (tenant, id) = (c.tenant, c.id.clone());
        let old = c.agent.replace((person, x.leg));
        let queue = c.queue;
        let talk = c
            .answered_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        c.answered_at = Some(now);
        let by = c.rec.agent.replace(x.upn.clone()).unwrap_or_default();
        let step = if others {
            format!("{by} left the conference to {}, who holds the call", x.upn)
        } else {
            c.rec
                .transfers
                .push(transfer_record(&by, &x.upn, TransferKind::Consult));
            format!("transfer by {by} to {} after consulting", x.upn)
        };
        c.rec.steps.push(step.clone());
        // The person consulted now holds the call as its agent: a direct call for them.
        c.direct = None;
        // The leg to the consulted person is now the call's agent leg.
        self.legs.insert(
            x.leg,
            Leg::Offer {
                call: n,
                tenant,
                agent: person,
            },
        );
        if let Some((a, leg)) = old {
            if self.legs.remove(&leg).is_some() {
                self.relay.close(leg);
                self.sockets.remove(&leg);
                self.ua.hangup(leg, now);
            }
            let secs = self
                .cc
                .with(|d| d.tenants[tenant].agent_done(a, queue, talk, now));
            self.timers.insert(
                (now + Duration::from_secs(secs), Timer::WrapUp(tenant, a)),
                (),
            );
            self.consult_shown(tenant, Some(a), u64::MAX);
        }
        // The caller and the new agent (and any others in the conference) talk on: a Teams
        // caller the agent held is resumed.
        self.teams_hold(n, false, now);
        self.remix(n);
        self.consult_shown(tenant, Some(person), n);
        self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            // Their engine state: busy with this call until it ends (agent_done then).
            t.engine
                .set_busy_elsewhere(person, Some(routing::CallId(n)), now);
            if let Some(r) = t.agent_mut(person) {
                r.last_call = Some(id);
                r.last_queue = None;
            }
        });
        self.save(n);
        step
    }

    /// The agent of call `n` leaves a conference where only outside numbers are with the
    /// caller: they talk on in the router's mix (the call has left the contact center:
    /// `transferred`), the agent wraps up, and when the last of them hangs up the call ends.
    /// Returns the step.
    fn conference_left_to_outside(&mut self, n: u64, now: Instant) -> String {
        let Some(c) = self.calls.get_mut(&n) else {
            return String::new();
        };
        let Some((agent, leg)) = c.agent else {
            return String::new();
        };
        let tenant = c.tenant;
        let by = c.rec.agent.clone().unwrap_or_default();
        let names: Vec<String> = c.joined.iter().map(|x| x.upn.clone()).collect();
        let listed: Vec<&str> = names.iter().map(String::as_str).collect();
        let step = format!("{by} left the conference to {}", and_list(&listed));
        c.rec.steps.push(step.clone());
        if let [only] = listed.as_slice() {
            c.rec
                .transfers
                .push(transfer_record(&by, only, TransferKind::Consult));
        }
        c.handed_out = true;
        self.agent_leaves(n, tenant, agent, leg, false, now);
        self.consult_shown(tenant, Some(agent), u64::MAX);
        self.remix(n);
        self.save(n);
        step
    }

    /// The agent of call `n` leaves the caller to the outside number they consulted (it
    /// answered): its leg, and the trunk channel it holds, become the call's far leg; the
    /// caller and the number talk through the router, and the agent goes to wrap-up.
    /// Returns the step.
    fn consult_complete_outside(&mut self, n: u64, now: Instant) -> String {
        let Some(c) = self.calls.get_mut(&n) else {
            return String::new();
        };
        let Some(x) = c.consult.take() else {
            return String::new();
        };
        let tenant = c.tenant;
        let by = c.rec.agent.clone().unwrap_or_default();
        let step = format!("transfer by {by} to {} after consulting", x.upn);
        c.rec.steps.push(step.clone());
        c.rec
            .transfers
            .push(transfer_record(&by, &x.upn, TransferKind::Consult));
        c.far = x.trunk.map(|j| (x.leg, j));
        c.handed_out = true;
        let caller_leg = c.caller_leg;
        self.legs.insert(x.leg, Leg::Far(n));
        // The agent leaves before the bridge: leaving unbridges the caller. (One who hung up
        // while the number rang has left already.)
        if let Some((agent, leg)) = c.agent {
            self.agent_leaves(n, tenant, agent, leg, false, now);
            self.consult_shown(tenant, Some(agent), u64::MAX);
        }
        self.relay.play(caller_leg, Playlist::default());
        self.relay.bridge(caller_leg, x.leg);
        self.save(n);
        step
    }

    /// The person consulted is let go: no longer ringing, or off the call (no wrap-up: the
    /// call was not theirs).
    fn consult_free(&self, tenant: usize, x: &Consult, now: Instant) {
        if let Some(j) = x.trunk {
            // An outside number: its trunk channel is free again.
            Self::release_trunk(&self.cc, tenant, j);
        }
        let Some(person) = x.agent else {
            return;
        };
        self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            t.engine.set_busy_elsewhere(person, None, now);
            if x.up {
                let talk = x
                    .since
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                t.agent_done(person, None, talk, now);
                let _ = d.finish_wrap_up(tenant, person, now);
            } else if let Some(a) = t.agent_mut(person) {
                a.ringing = a.ringing.saturating_sub(1);
            }
        });
    }

    /// What `GET /v1/agents/me` shows of `agent`'s consultation and conference on call `n`
    /// (none when `n` has none, e.g. `u64::MAX`).
    fn consult_shown(&mut self, tenant: usize, agent: Option<AgentId>, n: u64) {
        let Some(agent) = agent else {
            return;
        };
        let shown = self.calls.get(&n).and_then(|c| {
            let conference: Vec<String> = c.joined.iter().map(|x| x.upn.clone()).collect();
            let (with, state, queue) = match (&c.consult, &c.consult_wait, c.joined.last()) {
                (Some(x), _, _) if x.up => (x.upn.clone(), ConsultState::Talking, x.queue.clone()),
                (Some(x), _, _) => (x.upn.clone(), ConsultState::Ringing, x.queue.clone()),
                (None, Some(w), _) => (w.name.clone(), ConsultState::Waiting, Some(w.name.clone())),
                (None, None, Some(x)) => (x.upn.clone(), ConsultState::Conference, None),
                (None, None, None) => return None,
            };
            Some(switchboard_api::ConsultStatus {
                with,
                state,
                queue,
                conference,
            })
        });
        self.cc.with(|d| {
            if let Some(a) = d.tenants[tenant].agent_mut(agent) {
                a.consult = shown;
            }
        });
        self.unannounced = true;
    }

    /// Supervisor `supervisor` takes part in `agent`'s call as `mode` (their phone rung
    /// first; a new mode for one already on it), or stops (`mode` none). Returns the
    /// record's step.
    fn monitor(
        &mut self,
        tenant: usize,
        agent: AgentId,
        supervisor: Option<AgentId>,
        mode: Option<MonitorMode>,
        now: Instant,
    ) -> Result<String, crate::desk::MonitorRefusal> {
        use crate::desk::MonitorRefusal;
        let upn_of = |a: AgentId| {
            self.cc.with(|d| {
                d.tenants[tenant]
                    .agent(a)
                    .map(|r| r.upn.clone())
                    .unwrap_or_default()
            })
        };
        let agent_upn = upn_of(agent);
        let n = self
            .calls
            .iter()
            .find(|(_, c)| {
                c.tenant == tenant
                    && c.stage == Stage::Talking
                    && c.agent.is_some_and(|(a, _)| a == agent)
            })
            .map(|(n, _)| *n);
        let current = n.and_then(|n| self.calls.get(&n)?.monitor.clone());
        let (Some(mode), Some(sup)) = (mode, supervisor) else {
            // Stop: whoever listens in on the agent's call.
            let (Some(n), Some(m)) = (n, current) else {
                return Err(MonitorRefusal::NotMonitored(agent_upn));
            };
            self.monitor_drop(n, "stopped", now);
            return Ok(format!("{} left: stopped", m.who.upn));
        };
        if sup == agent {
            return Err(MonitorRefusal::Yourself);
        }
        let Some(n) = n else {
            return Err(MonitorRefusal::NoCall(agent_upn));
        };
        let elsewhere = self.calls.iter().find_map(|(k, c)| {
            c.monitor
                .as_ref()
                .filter(|m| m.who.agent == Some(sup) && *k != n)
                .and(c.agent)
        });
        if let Some((other, _)) = elsewhere {
            return Err(MonitorRefusal::Elsewhere(upn_of(other)));
        }
        let sup_upn = upn_of(sup);
        let step = monitor_step(&sup_upn, mode, &agent_upn);
        match current {
            Some(m) if m.who.agent != Some(sup) => Err(MonitorRefusal::Taken(m.who.upn)),
            Some(m) => {
                let Some(c) = self.calls.get_mut(&n) else {
                    return Err(MonitorRefusal::NoCall(agent_upn));
                };
                if let Some(x) = c.monitor.as_mut() {
                    x.mode = mode;
                }
                if m.mode != mode {
                    c.rec.steps.push(step.clone());
                    tracing::info!(call = n, %step, "the supervisor's part changed");
                }
                if m.who.up {
                    self.remix(n);
                }
                self.monitor_shown(tenant, n, sup);
                self.save(n);
                Ok(step)
            }
            None => self.monitor_start(n, sup, sup_upn, mode, step, now),
        }
    }

    /// Rings supervisor `sup` (`upn`) to take part in call `n` as `mode` (`step`).
    fn monitor_start(
        &mut self,
        n: u64,
        sup: AgentId,
        upn: String,
        mode: MonitorMode,
        step: String,
        now: Instant,
    ) -> Result<String, crate::desk::MonitorRefusal> {
        use crate::desk::MonitorRefusal;
        let Some(c) = self.calls.get(&n) else {
            return Err(MonitorRefusal::Busy(upn));
        };
        let tenant = c.tenant;
        let free = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let reachable =
                t.agent(sup).is_some_and(|r| r.contact.is_some()) || t.teams_reach(sup).is_some();
            reachable && t.expert_free(sup)
        });
        if !free {
            return Err(MonitorRefusal::Busy(upn));
        }
        let Some((socket, port)) = self.bind_media() else {
            return Err(MonitorRefusal::Busy(upn));
        };
        let shown = match mode {
            MonitorMode::Listen => "listen",
            MonitorMode::Whisper => "whisper",
            MonitorMode::Barge => "barge",
        };
        let what = format!(
            "X-Switchboard-Monitor: {shown} {}",
            c.rec.agent.as_deref().unwrap_or_default()
        );
        let role = Leg::Monitor {
            call: n,
            tenant,
            agent: sup,
        };
        let leg = self
            .ring_into_call(
                role,
                what,
                (socket, port),
                (false, DIRECT_ALERT_SECONDS),
                now,
            )
            .map_err(|why| {
                tracing::warn!(%why, supervisor = %upn, "cannot call the supervisor");
                MonitorRefusal::Busy(upn.clone())
            })?;
        let Some(c) = self.calls.get_mut(&n) else {
            return Err(MonitorRefusal::Busy(upn));
        };
        c.rec.steps.push(step.clone());
        c.monitor = Some(Monitor {
            who: Consult {
                agent: Some(sup),
                trunk: None,
                upn,
                leg,
                up: false,
                since: None,
                queue: None,
            },
            mode,
        });
        tracing::info!(call = n, %step, "ringing the supervisor");
        self.monitor_shown(tenant, n, sup);
        self.save(n);
        Ok(step)
    }

    /// Rings the person a consultation or a listen-in (`role`, which names the call, the
    /// tenant and the person) adds to a call, showing the call's caller and its
    /// `X-Switchboard-*` headers with `extra`, with media on `socket` (bound to `port`): they
    /// are busy for the queues while it rings, and it rings out after
    /// [`DIRECT_ALERT_SECONDS`]. Their leg.
    fn ring_into_call(
        &mut self,
        role: Leg,
        extra: String,
        (socket, port): (std::net::UdpSocket, u16),
        (in_teams, alert): (bool, u64),
        now: Instant,
    ) -> Result<UaCall, String> {
        let (Leg::Consult {
            call: n,
            tenant,
            agent: Some(person),
        }
        | Leg::Monitor {
            call: n,
            tenant,
            agent: person,
        }) = role
        else {
            return Err("only a consultation or a listen-in rings into a call".into());
        };
        let c = self.calls.get(&n).ok_or("the call is over")?;
        let headers = vec![
            format!("X-Switchboard-Call: {}", c.id),
            format!("X-Switchboard-Caller: {}", c.caller),
            format!("X-Switchboard-Dialled: {}", c.dialled),
            extra,
        ];
        let caller = c.caller.clone();
        let leg = self.ring_person(tenant, person, &caller, headers, port, in_teams, now)?;
        self.sockets.insert(leg, socket);
        self.legs.insert(leg, role);
        self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            t.engine
                .set_busy_elsewhere(person, Some(routing::CallId(n)), now);
            if let Some(a) = t.agent_mut(person) {
                a.ringing += 1;
            }
        });
        self.timers
            .insert((now + Duration::from_secs(alert), Timer::RingOut(leg)), ());
        Ok(leg)
    }

    /// The person [`Self::ring_into_call`] rang answered: on the call, no longer ringing. It
    /// is not a queue call of theirs, so the board shows no queue for it.
    fn rung_into_call_answered(&self, tenant: usize, agent: AgentId) {
        self.cc.with(|d| {
            if let Some(a) = d.tenants[tenant].agent_mut(agent) {
                a.ringing = a.ringing.saturating_sub(1);
                a.on_call = true;
                a.last_queue = None;
            }
        });
    }

    /// The supervisor on call `n` leaves it (`why`): their leg is hung up if it is still
    /// there, and the call's parties hear each other as before.
    fn monitor_drop(&mut self, n: u64, why: &str, now: Instant) {
        let Some(leg) = self
            .calls
            .get(&n)
            .and_then(|c| c.monitor.as_ref())
            .map(|m| m.who.leg)
        else {
            return;
        };
        if self.legs.remove(&leg).is_some() {
            self.relay.close(leg);
            self.sockets.remove(&leg);
            self.ua.hangup(leg, now);
        }
        self.monitor_over(n, why, now);
    }

    /// The supervisor's leg on call `n` ended (`why`): the record says so, they are free.
    fn monitor_over(&mut self, n: u64, why: &str, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Some(m) = c.monitor.take() else {
            return;
        };
        c.rec.steps.push(format!("{} left: {why}", m.who.upn));
        let tenant = c.tenant;
        self.consult_free(tenant, &m.who, now);
        if let Some(sup) = m.who.agent {
            self.monitor_shown(tenant, u64::MAX, sup);
        }
        self.remix(n);
        self.save(n);
    }

    /// What the supervisor `sup`'s own status shows of their part in call `n` (none when
    /// `n` has no supervisor, e.g. `u64::MAX`).
    fn monitor_shown(&mut self, tenant: usize, n: u64, sup: AgentId) {
        let shown = self.calls.get(&n).and_then(|c| {
            let m = c.monitor.as_ref()?;
            Some(switchboard_api::Monitoring {
                agent: c.rec.agent.clone().unwrap_or_default(),
                mode: m.mode,
                answered: m.who.up,
            })
        });
        self.cc.with(|d| {
            if let Some(a) = d.tenants[tenant].agent_mut(sup) {
                a.monitoring = shown;
            }
        });
        self.unannounced = true;
    }

    /// Transfers call `n`, which `agent` talks on over `leg`, to `user@host` inside the
    /// tenant: the router carries it out (a REFER's NOTIFY says so, `by_refer`; otherwise the
    /// agent's leg is hung up) and never forwards a REFER. Anything outside the tenant is
    /// refused and the caller stays with the agent, as when no expert of a group is free.
    /// Returns the record's step for where the call went.
    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        n: u64,
        tenant: usize,
        agent: AgentId,
        leg: UaCall,
        user: &str,
        host: &str,
        by_refer: bool,
        now: Instant,
    ) -> Result<String, crate::desk::TransferRefusal> {
        use crate::desk::TransferRefusal;
        if !self.calls.get(&n).is_some_and(|c| {
            c.stage == Stage::Talking && c.consult.is_none() && c.consult_wait.is_none()
        }) {
            // No call, a callback whose caller has not answered yet, or a consultation going
            // on (complete or cancel it): nothing to pass on.
            if by_refer {
                self.ua.notify_transfer(leg, 603, "Decline", now);
            }
            return Err(TransferRefusal::NoCall);
        };
        if self.calls.get(&n).is_some_and(|c| !c.joined.is_empty()) {
            // A conference goes on without the agent (consult/complete), not elsewhere.
            if by_refer {
                self.ua.notify_transfer(leg, 603, "Decline", now);
            }
            return Err(TransferRefusal::Conference);
        }
        let outside = user.starts_with('+')
            && self.cc.with(|d| {
                let t = &d.tenants[tenant];
                t.spec.outbound.is_some() && t.number(user).is_none()
            });
        if outside {
            if let Some(step) = self.transfer_out(n, tenant, agent, leg, user, by_refer, now) {
                return Ok(step);
            }
        }
        let Some(c) = self.calls.get_mut(&n) else {
            return Err(TransferRefusal::NoCall);
        };
        let in_teams = c.direct_in_teams;
        let (route, by) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let by = t.upn_of(agent);
            let host_ok = host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".-".contains(ch));
            let route = (host_ok && !user.is_empty())
                .then(|| match in_teams {
                    true => t.transfer_target_in_teams(user, host),
                    false => t.transfer_target(user, host),
                })
                .flatten();
            (route, by)
        });
        // The target as it may be recorded: the checked user part and host only.
        let shown = format!("{user}@{host}");
        let Some(route) = route.filter(|r| *r != Route::Agent(agent)) else {
            c.rec
                .steps
                .push(format!("transfer by {by} to {shown} refused"));
            tracing::info!(call = %c.id, agent = %by, target = %shown, "a transfer to a target outside the tenant was refused");
            if by_refer {
                self.ua.notify_transfer(leg, 403, "Forbidden", now);
            }
            self.save(n);
            return Err(TransferRefusal::NoSuchTarget(shown));
        };
        if route == Route::NoExpert {
            // Nobody of the group is free: the caller stays with the agent, who may try again.
            c.rec
                .steps
                .push(format!("transfer by {by} to {shown}: no expert free"));
            tracing::info!(call = %c.id, agent = %by, target = %shown, "no expert of the group is free");
            if by_refer {
                self.ua
                    .notify_transfer(leg, 480, "Temporarily Unavailable", now);
            }
            self.save(n);
            return Err(TransferRefusal::NoExpert(user.to_owned()));
        }
        if c.direct_in_teams {
            // Only a person with a Teams number is rung in Teams.
            let person = match route {
                Route::Agent(a) | Route::Expert(a) => Some(a),
                _ => None,
            };
            let reach = person.filter(|a| {
                self.cc
                    .with(|d| d.tenants[tenant].teams_reach(*a).is_some())
            });
            if reach.is_none() {
                return Err(TransferRefusal::NotInTeams(shown));
            }
        }
        let in_teams = if c.direct_in_teams { " in Teams" } else { "" };
        let step = format!("transfer by {by} to {shown}{in_teams}");
        c.rec.steps.push(step.clone());
        c.rec
            .transfers
            .push(transfer_record(&by, &shown, TransferKind::Blind));
        tracing::info!(call = %c.id, agent = %by, target = %shown, "transferring");
        // The agent's part ends: the phone hangs up on our NOTIFY (RFC 5589 §6), or we do.
        self.agent_leaves(n, tenant, agent, leg, by_refer, now);
        self.route(n, route, now);
        Ok(step)
    }

    /// `agent`'s part of call `n` ends with a transfer: their phone is told (NOTIFY 200 to a
    /// REFER, then it hangs up — or we do after 5 s) or hung up, the caller no longer hears
    /// them, and they wrap up.
    fn agent_leaves(
        &mut self,
        n: u64,
        tenant: usize,
        agent: AgentId,
        leg: UaCall,
        by_refer: bool,
        now: Instant,
    ) {
        self.monitor_drop(n, "the agent left the call", now);
        self.hold_changed(leg, false, now);
        // A Teams caller the agent held is resumed for whoever takes them next.
        self.teams_hold(n, false, now);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.agent = None;
        let talk = c.answered_at.map_or(Duration::ZERO, |t| now - t);
        let (queue, caller_leg) = (c.queue, c.caller_leg);
        if by_refer {
            self.refer_succeeded(leg, now);
        } else {
            self.ua.hangup(leg, now);
        }
        self.legs.remove(&leg);
        self.relay.unbridge(caller_leg);
        self.relay.close(leg);
        let secs = self
            .cc
            .with(|d| d.tenants[tenant].agent_done(agent, queue, talk, now));
        self.timers.insert(
            (
                now + Duration::from_secs(secs),
                Timer::WrapUp(tenant, agent),
            ),
            (),
        );
    }

    /// Why tenant `tenant` may place no outside call now, when its toll rules' cap for the
    /// hour (`tenant_max_per_hour`) or for calls at once (`max_concurrent`) is reached.
    fn tenant_outside_cap(&mut self, tenant: usize, now: Instant) -> Option<String> {
        let (hourly, at_once) = self.cc.with(|d| {
            d.tenants[tenant]
                .spec
                .outbound
                .as_ref()
                .map_or((None, None), |o| (o.tenant_max_per_hour, o.max_concurrent))
        });
        if let Some(max) = hourly {
            let placed = self.tenant_dialled.entry(tenant).or_default();
            if calls_in_last_hour(placed, now) >= max as usize {
                return Some(format!(
                    "toll rules: {max} outside calls in the last hour is the most the tenant may place"
                ));
            }
        }
        let max = at_once?;
        let up = self
            .calls
            .values()
            .map(|c| {
                let consulting = c
                    .consult
                    .iter()
                    .chain(&c.joined)
                    .filter(|x| x.trunk.is_some())
                    .count();
                usize::from(c.tenant == tenant)
                    * (usize::from(c.outbound || c.far.is_some()) + consulting)
            })
            .sum::<usize>();
        (up >= max as usize).then(|| {
            format!("toll rules: {max} outside calls at once is the most the tenant may have")
        })
    }

    /// An outside call was placed for tenant `tenant` (by `agent`, or by a route): it counts
    /// against the hourly caps.
    fn outside_placed(&mut self, tenant: usize, agent: Option<AgentId>, now: Instant) {
        if let Some(a) = agent {
            self.dialled.entry((tenant, a)).or_default().push_back(now);
        }
        let placed = self.tenant_dialled.entry(tenant).or_default();
        placed.push_back(now);
        // Only the last hour's are kept, capped or not.
        calls_in_last_hour(placed, now);
    }

    /// A transfer of call `n`'s caller to the outside number `number`, where the tenant's
    /// toll rules allow it for `agent` (their hourly cap included) and its trunk has room: the
    /// number is rung on the trunk while the caller hears music, the agent's part ends.
    /// `None`: not allowed (the caller stays; the refusal is the caller's to record).
    #[allow(clippy::too_many_arguments)]
    fn transfer_out(
        &mut self,
        n: u64,
        tenant: usize,
        agent: AgentId,
        leg: UaCall,
        number: &str,
        by_refer: bool,
        now: Instant,
    ) -> Option<String> {
        let (j, caller_id, by) = match self.outside_allowed(tenant, agent, number, now) {
            Ok(x) => x,
            Err(why) => {
                tracing::info!(%number, %why, "a transfer to an outside number is not allowed");
                return None;
            }
        };
        let (socket, port) = self.bind_media()?;
        let c = self.calls.get(&n)?;
        let headers = vec![format!("X-Switchboard-Call: {}", c.id)];
        let far = match self.trunk_call(tenant, j, number, caller_id.as_deref(), headers, port, now)
        {
            Ok(l) => l,
            Err(why) => {
                tracing::warn!(%why, %number, "cannot call the outside number");
                return None;
            }
        };
        self.outside_placed(tenant, Some(agent), now);
        self.far_placed(
            n,
            (tenant, j),
            (agent, leg),
            (far, socket),
            &by,
            number,
            (by_refer, false),
            now,
        )
    }

    /// Whether `agent` may have tenant `tenant` call outside number `number` now (a transfer
    /// or a consultation): the toll rules' prefixes, the agent's and the tenant's caps, and
    /// room on the outbound trunk. Ok: the trunk, the caller id to show, the agent's UPN;
    /// else why not.
    fn outside_allowed(
        &mut self,
        tenant: usize,
        agent: AgentId,
        number: &str,
        now: Instant,
    ) -> Result<(usize, Option<String>, String), String> {
        let recent = calls_in_last_hour(self.dialled.entry((tenant, agent)).or_default(), now);
        let capped = self.tenant_outside_cap(tenant, now);
        self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let o = t
                .spec
                .outbound
                .as_ref()
                .ok_or("this tenant places no outside calls")?;
            let j = t
                .spec
                .trunks
                .iter()
                .position(|tr| tr.name == o.trunk && tr.places_calls())
                .ok_or("no trunk for outside calls")?;
            let why = o
                .permits(number)
                .err()
                .map(|why| format!("toll rules: {why}"))
                .or_else(|| {
                    (recent >= o.max_per_hour as usize).then(|| {
                        format!(
                            "toll rules: {} outside calls in the last hour is the most an agent may place",
                            o.max_per_hour
                        )
                    })
                })
                .or(capped)
                .or_else(|| {
                    (t.trunks[j].calls >= t.trunks[j].max_calls)
                        .then(|| format!("trunk {} is full", o.trunk))
                });
            if let Some(why) = why {
                return Err(why);
            }
            let caller_id = o
                .caller_id
                .clone()
                .or_else(|| t.spec.numbers.first().map(|x| x.number.clone()));
            let by = t.upn_of(agent);
            Ok((j, caller_id, by))
        })
    }

    /// A REFER from `agent`'s leg (a Teams user reached over Direct Routing) names another
    /// Teams user by MRI: `Refer-To: <sip:sip.pstnhub.microsoft.com;x-m=…;x-t=…>`. The router
    /// calls them through the tenant's Direct Routing trunk with those values in the
    /// Request-URI and the REFER's Referred-By, and the caller follows. A malformed Refer-To
    /// (or no Direct Routing trunk) is refused in the NOTIFY, recorded, and the caller stays.
    #[allow(clippy::too_many_arguments)]
    fn transfer_to_teams(
        &mut self,
        n: u64,
        tenant: usize,
        agent: AgentId,
        leg: UaCall,
        refer_to: &str,
        referred_by: Option<&str>,
        now: Instant,
    ) {
        let talking = self
            .calls
            .get(&n)
            .is_some_and(|c| c.stage == Stage::Talking && c.alone_with_agent());
        if !talking {
            self.ua.notify_transfer(leg, 603, "Decline", now);
            return;
        }
        let by = self.cc.with(|d| d.tenants[tenant].upn_of(agent));
        let placed = self.place_teams_user(n, tenant, refer_to, referred_by, now);
        match placed {
            Ok((far, socket, j, shown)) => {
                self.far_placed(
                    n,
                    (tenant, j),
                    (agent, leg),
                    (far, socket),
                    &by,
                    &shown,
                    (true, true),
                    now,
                );
            }
            Err((status, reason, why)) => {
                if let Some(c) = self.calls.get_mut(&n) {
                    c.rec
                        .steps
                        .push(format!("transfer by {by} to a Teams user refused: {why}"));
                    tracing::info!(call = %c.id, agent = %by, %why, "a Teams transfer was refused; the caller stays");
                }
                self.ua.notify_transfer(leg, status, reason, now);
                self.save(n);
            }
        }
    }

    /// Places call `n`'s leg to the Teams user a REFER's Refer-To names by MRI (`x-m`, `x-t`,
    /// as Microsoft's proxy writes it), through the first Direct Routing trunk of `tenant`
    /// with room, the REFER's Referred-By passed on when it is a plain SIP URI within bounds:
    /// the leg, its media socket, the trunk and the target as recorded (`Teams user <MRI>`).
    /// Refused: the status and reason for the REFER's NOTIFY, and why.
    fn place_teams_user(
        &mut self,
        n: u64,
        tenant: usize,
        refer_to: &str,
        referred_by: Option<&str>,
        now: Instant,
    ) -> Result<(UaCall, std::net::UdpSocket, usize, String), ReferRefusal> {
        let trunk = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            t.spec
                .trunks
                .iter()
                .position(|x| x.direct_routing.is_some() && !x.retired)
                .and_then(|j| {
                    let fqdn = t.spec.trunks[j].direct_routing.as_ref()?.fqdn.clone();
                    let rt = t.trunks.get(j)?;
                    (rt.calls < rt.max_calls).then(|| (j, fqdn, rt.proxy_order()))
                })
        });
        let ids = uri_param(refer_to, "x-m")
            .zip(uri_param(refer_to, "x-t"))
            .filter(|(m, t)| teams_id(m) && teams_id(t));
        let Some((xm, xt)) = ids else {
            return Err((400, "Bad Request", "malformed Refer-To (x-m, x-t)".into()));
        };
        let Some((j, fqdn, order)) = trunk else {
            return Err((
                503,
                "Service Unavailable",
                "no Direct Routing trunk free".into(),
            ));
        };
        // Referred-By goes back to Teams as it came, when it is a plain SIP URI within
        // bounds (its x-m, x-t, x-ti, x-tt are up to 400 characters each).
        let referred = referred_by.filter(|r| {
            let uri = value_uri(r);
            r.len() <= 2048
                && uri.starts_with("sip:")
                && ["x-m", "x-t", "x-ti", "x-tt"]
                    .iter()
                    .all(|k| uri_param(uri, k).is_none_or(teams_id))
        });
        let caller = self.calls.get(&n).map(|c| c.caller.clone());
        let cid = caller.filter(|c| crate::center::is_e164(c));
        let headers = referred
            .map(|r| vec![format!("Referred-By: {r}")])
            .unwrap_or_default();
        let (socket, port) = self.bind_media().ok_or((
            503,
            "Service Unavailable",
            "no media port free".to_owned(),
        ))?;
        let far = self
            .teams_call(
                &fqdn,
                &order,
                TeamsTarget::User { xm, xt },
                cid.as_deref(),
                headers,
                port,
                now,
            )
            .map_err(|why| (503, "Service Unavailable", why))?;
        Ok((far, socket, j, format!("Teams user {xm}")))
    }

    /// A REFER from `leg`, the party call `n`'s caller was handed to: followed only when they
    /// are a Teams user on a Direct Routing trunk (Microsoft's proxy speaks for them, inside
    /// the dialog we opened) talking with the caller alone, and it names a Teams user by MRI
    /// (`x-m`, `x-t`), one of the tenant's numbers (the caller goes where a call to it goes:
    /// back into the contact center) or an outside number the tenant's toll rules allow. A
    /// new party rings while the Teams user waits for the outcome (NOTIFY 200 once they
    /// answer, then they leave; on failure the NOTIFY says why and the caller is theirs
    /// again). Anyone else's REFER, or one with Replaces, is declined (603).
    fn far_refer(
        &mut self,
        n: u64,
        leg: UaCall,
        target: &str,
        replaces: Option<&str>,
        referred_by: Option<&str>,
        now: Instant,
    ) {
        let found = self.calls.get(&n).and_then(|c| {
            let (far, j) = c.far?;
            let alone = far == leg
                && c.stage == Stage::Talking
                && c.handed_out
                && c.joined.is_empty()
                && c.referrer.is_none()
                && replaces.is_none();
            alone.then_some((c.tenant, j, c.caller_leg, c.id.clone()))
        });
        let found = found.filter(|&(tenant, j, ..)| {
            self.cc.with(|d| {
                d.tenants[tenant]
                    .spec
                    .trunks
                    .get(j)
                    .is_some_and(|t| t.direct_routing.is_some())
            })
        });
        let Some((tenant, j, caller_leg, id)) = found else {
            // A carrier's party (Teams users only are trusted to pass the caller on), or a
            // call not in a state to pass on.
            self.ua.notify_transfer(leg, 603, "Decline", now);
            return;
        };
        // Who: the MRI of the REFER's Referred-By, as Microsoft's proxy writes it.
        let who = referred_by
            .and_then(|r| uri_param(value_uri(r), "x-m"))
            .filter(|m| teams_id(m))
            .map_or_else(
                || "the Teams user".to_owned(),
                |m| format!("Teams user {m}"),
            );
        let referrer = Referrer {
            leg,
            trunk: j,
            who: who.clone(),
        };
        let bare = target.trim_start_matches('<').trim_end_matches('>');
        let user = safe_user(target).unwrap_or_default();
        let placed = if uri_param(bare, "x-m").is_some() {
            self.place_teams_user(n, tenant, bare, referred_by, now)
                .map(|(far, socket, j2, shown)| (far, socket, j2, shown, false))
        } else {
            let route = self.cc.with(|d| {
                let t = &d.tenants[tenant];
                t.number(&user).and_then(|_| t.transfer_target(&user, ""))
            });
            if let Some(route) = route {
                // Back into the contact center: where a call to the number goes.
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                c.rec.steps.push(format!("transfer by {who} to {user}"));
                c.rec
                    .transfers
                    .push(transfer_record(&who, &user, TransferKind::Blind));
                tracing::info!(call = %id, %who, to = %user, "a Teams user sends the caller back into the contact center");
                c.far = None;
                c.handed_out = false;
                c.far_holds = false;
                self.referrer_leaves(tenant, &referrer, now);
                self.relay.unbridge(caller_leg);
                self.route(n, route, now);
                self.save(n);
                return;
            }
            match crate::desk::E164::new(&user) {
                Some(number) => self
                    .outside_leg(tenant, &id, number.as_str(), now)
                    .map(|(far, socket, j2)| (far, socket, j2, user.clone(), true))
                    .map_err(|why| (403, "Forbidden", why)),
                None => Err((
                    403,
                    "Forbidden",
                    "neither a Teams user, one of the tenant's numbers nor an outside number"
                        .to_owned(),
                )),
            }
        };
        let (far, socket, j2, shown, outside) = match placed {
            Ok(p) => p,
            Err((status, reason, why)) => {
                if let Some(c) = self.calls.get_mut(&n) {
                    c.rec
                        .steps
                        .push(format!("transfer by {who} refused: {why}"));
                    tracing::info!(call = %id, %who, %why, "a Teams user's transfer was refused; the caller stays with them");
                }
                self.ua.notify_transfer(leg, status, reason, now);
                self.save(n);
                return;
            }
        };
        if outside {
            self.outside_placed(tenant, None, now);
        }
        self.far_ringing(n, (tenant, j2), (far, socket), now);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let step = format!("transfer by {who} to {shown}");
        c.rec.steps.push(step);
        c.rec
            .transfers
            .push(transfer_record(&who, &shown, TransferKind::Blind));
        tracing::info!(call = %id, %who, target = %shown, "a Teams user transfers the caller; they wait for the outcome");
        c.far = Some((far, j2));
        c.stage = Stage::Outside;
        c.referrer = Some(referrer);
        self.relay.unbridge(caller_leg);
        let list = Playlist {
            clips: vec![self.prompt(n, "transferring")],
            then_loop: Some(self.prompts.music.clone()),
        };
        self.relay.play(caller_leg, list);
        self.save(n);
    }

    /// The transfer the REFER on `leg` asked for is done: NOTIFY 200, then the transferor
    /// hangs up (RFC 5589 §6), or we do after 5 s.
    fn refer_succeeded(&mut self, leg: UaCall, now: Instant) {
        self.ua.notify_transfer(leg, 200, "OK", now);
        self.timers
            .insert((now + Duration::from_secs(5), Timer::HangUp(leg)), ());
    }

    /// `r`, who passed a caller on, leaves: their REFER succeeded (NOTIFY 200, then they hang
    /// up, or we do after 5 s), and their trunk channel is free.
    fn referrer_leaves(&mut self, tenant: usize, r: &Referrer, now: Instant) {
        self.refer_succeeded(r.leg, now);
        self.legs.remove(&r.leg);
        self.relay.close(r.leg);
        self.sockets.remove(&r.leg);
        Self::release_trunk(&self.cc, tenant, r.trunk);
    }

    /// Call `n`'s caller is being transferred by `agent` (on `leg`) to `far`, a leg placed on
    /// trunk `j`: the caller hears they are being transferred while it rings, the agent
    /// leaves. Returns the record's step.
    #[allow(clippy::too_many_arguments)]
    fn far_placed(
        &mut self,
        n: u64,
        (tenant, j): (usize, usize),
        (agent, leg): (AgentId, UaCall),
        (far, socket): (UaCall, std::net::UdpSocket),
        by: &str,
        shown: &str,
        (by_refer, keep_agent): (bool, bool),
        now: Instant,
    ) -> Option<String> {
        self.monitor_drop(n, "the agent transferred the call", now);
        self.far_ringing(n, (tenant, j), (far, socket), now);
        let c = self.calls.get_mut(&n)?;
        let step = format!("transfer by {by} to {shown}");
        c.rec.steps.push(step.clone());
        c.rec
            .transfers
            .push(transfer_record(by, shown, TransferKind::Blind));
        tracing::info!(call = %c.id, agent = %by, target = %shown, "transferring outside the router");
        c.far = Some((far, j));
        c.far_holds = false;
        c.stage = Stage::Outside;
        let caller_leg = c.caller_leg;
        if keep_agent {
            // The agent waits for the outcome (the REFER's NOTIFY): theirs again on failure.
            c.transfer_pending = true;
            self.relay.unbridge(caller_leg);
        } else {
            self.agent_leaves(n, tenant, agent, leg, by_refer, now);
        }
        let list = Playlist {
            clips: vec![self.prompt(n, "transferring")],
            then_loop: Some(self.prompts.music.clone()),
        };
        self.relay.play(caller_leg, list);
        self.save(n);
        Some(step)
    }

    /// `far`, call `n`'s leg placed on trunk `j` of `tenant`, rings: the trunk counts it, and
    /// it has [`OUTBOUND_RING_SECONDS`] to answer.
    fn far_ringing(
        &mut self,
        n: u64,
        (tenant, j): (usize, usize),
        (far, socket): (UaCall, std::net::UdpSocket),
        now: Instant,
    ) {
        self.sockets.insert(far, socket);
        self.legs.insert(far, Leg::Far(n));
        Self::seize_trunk(&self.cc, tenant, j);
        self.timers.insert(
            (
                now + Duration::from_secs(OUTBOUND_RING_SECONDS),
                Timer::CallbackRing(far),
            ),
            (),
        );
    }

    /// Call `n`'s caller goes to outside number `number` (an attendant's choice, a queue's
    /// overflow or no-agents route): it is rung on the tenant's outbound trunk, under its toll
    /// rules and within the trunk's room, while the caller hears they are being transferred.
    /// Answered, they talk through the router; refused or unanswered, the caller hears so and
    /// goes back to the attendant they came from, or the call ends — never back into the
    /// queue that sent them on.
    fn route_out(&mut self, n: u64, number: crate::desk::E164, now: Instant) {
        let number = number.as_str();
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let tenant = c.tenant;
        c.queue = None;
        let id = c.id.clone();
        let placed = self.outside_leg(tenant, &id, number, now);
        let (far, socket, j) = match placed {
            Ok(p) => p,
            Err(why) => {
                tracing::info!(call = %id, %number, %why, "the caller cannot be sent to the outside number");
                self.fail_back(n, &format!("to {number} refused: {why}"), now);
                return;
            }
        };
        self.outside_placed(tenant, None, now);
        self.far_ringing(n, (tenant, j), (far, socket), now);
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        tracing::info!(call = %id, %number, "sending the caller to an outside number");
        c.rec.steps.push(format!("to {number}"));
        c.far = Some((far, j));
        c.far_holds = false;
        c.stage = Stage::Outside;
        let leg = c.caller_leg;
        let list = Playlist {
            clips: vec![self.prompt(n, "transferring")],
            then_loop: Some(self.prompts.music.clone()),
        };
        self.relay.play(leg, list);
        self.save(n);
    }

    /// Places a leg of call `id` of `tenant` to outside number `number` on the tenant's
    /// outbound trunk, under its toll rules and within the trunk's room: the leg, its media
    /// socket and the trunk; or why not.
    fn outside_leg(
        &mut self,
        tenant: usize,
        id: &str,
        number: &str,
        now: Instant,
    ) -> Result<(UaCall, std::net::UdpSocket, usize), String> {
        let capped = self.tenant_outside_cap(tenant, now);
        let allowed = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            let o = t
                .spec
                .outbound
                .as_ref()
                .ok_or("the tenant places no outside calls ([tenants.outbound])")?;
            o.permits(number)?;
            if let Some(why) = capped {
                return Err(why);
            }
            let j = t
                .spec
                .trunks
                .iter()
                .position(|tr| tr.name == o.trunk && tr.places_calls())
                .ok_or_else(|| format!("trunk {} places no calls", o.trunk))?;
            if t.trunks[j].calls >= t.trunks[j].max_calls {
                return Err(format!("trunk {} is full", o.trunk));
            }
            let caller_id = o
                .caller_id
                .clone()
                .or_else(|| t.spec.numbers.first().map(|x| x.number.clone()));
            Ok::<_, String>((j, caller_id))
        });
        allowed.and_then(|(j, caller_id)| {
            let (socket, port) = self.bind_media().ok_or("no media port free")?;
            let headers = vec![format!("X-Switchboard-Call: {id}")];
            self.trunk_call(tenant, j, number, caller_id.as_deref(), headers, port, now)
                .map(|far| (far, socket, j))
        })
    }

    /// The outside number call `n`'s caller was transferred to did not answer (`why`): the
    /// caller hears so and goes back to their queue, the attendant, or the call ends.
    fn outside_failed(&mut self, n: u64, why: &str, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        c.stage = Stage::Talking;
        if let Some((far, j)) = c.far.take() {
            Self::release_trunk(&self.cc, c.tenant, j);
            if self.legs.remove(&far).is_some() {
                self.relay.close(far);
                self.sockets.remove(&far);
            }
        }
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        if let Some(r) = c.referrer.take() {
            // The Teams user waited for it: the caller is theirs again, their REFER failed.
            let caller_leg = c.caller_leg;
            c.far = Some((r.leg, r.trunk));
            c.handed_out = true;
            c.rec.steps.push(format!(
                "transfer target not answered: {why}; the caller stays with {}",
                r.who
            ));
            tracing::info!(call = %c.id, who = %r.who, %why, "the transfer failed; the caller stays with the Teams user");
            let music = c.far_holds.then(|| Playlist {
                clips: Vec::new(),
                then_loop: Some(self.prompts.music.clone()),
            });
            self.ua
                .notify_transfer(r.leg, notify_status(why), reason_for(why), now);
            self.relay.play(caller_leg, music.unwrap_or_default());
            self.relay.bridge(caller_leg, r.leg);
            self.save(n);
            return;
        }
        if let (true, Some((agent, agent_leg))) = (std::mem::take(&mut c.transfer_pending), c.agent)
        {
            // The agent waited for it: the caller is theirs again, and their REFER failed.
            let (tenant, caller_leg) = (c.tenant, c.caller_leg);
            let upn = self.cc.with(|d| d.tenants[tenant].upn_of(agent));
            c.rec.steps.push(format!(
                "transfer target not answered: {why}; the caller stays with {upn}"
            ));
            tracing::info!(call = %c.id, agent = %upn, %why, "the transfer failed; the caller stays with the agent");
            self.ua
                .notify_transfer(agent_leg, notify_status(why), reason_for(why), now);
            self.relay.play(caller_leg, Playlist::default());
            self.relay.bridge(caller_leg, agent_leg);
            self.save(n);
            return;
        }
        self.fail_back(n, &format!("transfer target not answered: {why}"), now);
    }

    /// Tells a waiting caller their place and the expected wait, then music again; again
    /// after the queue's `announce_seconds` while they wait in the same queue.
    fn announce(&mut self, n: u64, hops: u32, now: Instant) {
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        let (Stage::Queued, Some(q), true) = (c.stage, c.queue, c.hops == hops) else {
            return;
        };
        let (tenant, leg) = (c.tenant, c.caller_leg);
        let (place, every) = self.cc.with(|d| {
            let t = &d.tenants[tenant];
            (
                t.place(q, routing::CallId(n)),
                t.queue(q).and_then(|x| x.announce_seconds),
            )
        });
        if let Some((position, wait)) = place {
            let mut ids: Vec<String> = vec!["position-prefix".into()];
            ids.extend(crate::prompts::number(position as u64));
            ids.push("position-suffix".into());
            if let Some(w) = wait {
                let minutes = w.as_secs().div_ceil(60).max(1);
                ids.push("wait-prefix".into());
                ids.extend(crate::prompts::number(minutes));
                ids.push(if minutes == 1 { "minute" } else { "minutes" }.into());
            }
            if self.callback_due(n, now) {
                ids.push("callback-offer".into());
            }
            let clips = ids.iter().map(|id| self.prompt(n, id)).collect();
            self.relay.play(
                leg,
                Playlist {
                    clips,
                    then_loop: Some(self.prompts.music.clone()),
                },
            );
            metrics::counter!("queue_announcements_total").increment(1);
            tracing::debug!(
                call = n,
                position,
                wait_s = wait.map(|w| w.as_secs()),
                "position announced"
            );
        }
        if let Some(every) = every {
            self.timers.insert(
                (now + Duration::from_secs(every), Timer::Announce(n, hops)),
                (),
            );
        }
    }

    /// A key pressed on a leg (RFC 4733 in the media, or SIP INFO).
    fn on_digit(&mut self, leg: UaCall, digit: char, now: Instant) {
        // Not the digit: while people talk it may be a card number or a PIN passed on.
        tracing::debug!(leg, "DTMF");
        if let Some(Leg::Caller(n)) = self.legs.get(&leg).copied() {
            self.key(n, digit, now);
        }
    }

    fn on_timeout(&mut self) {
        let now = Instant::now();
        self.ua.handle_timeout(now);
        while let Some((&(at, timer), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, timer));
            match timer {
                Timer::RingOut(leg) => self.ring_out(leg, now),
                Timer::HangUp(leg) => {
                    if self.ua.calls().any(|c| c == leg) {
                        self.ua.hangup(leg, now);
                    }
                }
                Timer::Announce(n, hops) => self.announce(n, hops, now),
                Timer::OverflowOffer(n, hops) => {
                    if self.calls.get(&n).is_some_and(|c| c.hops == hops) {
                        self.overflow_callback_declined(n, now);
                    }
                }
                Timer::CallbackOffer(n, hops) => {
                    let here = self.calls.get(&n).is_some_and(|c| c.hops == hops);
                    if here && self.callback_due(n, now) {
                        if let Some(c) = self.calls.get(&n) {
                            let list = Playlist {
                                clips: vec![self.prompt(n, "callback-offer")],
                                then_loop: Some(self.prompts.music.clone()),
                            };
                            self.relay.play(c.caller_leg, list);
                        }
                    }
                }
                Timer::CallbackRing(leg) => {
                    let dialling = match self.legs.get(&leg) {
                        Some(Leg::Caller(n)) => self
                            .calls
                            .get(n)
                            .filter(|c| c.stage == Stage::Dialling && c.caller_leg == leg)
                            .map(|_| *n),
                        _ => None,
                    };
                    let outside = match self.legs.get(&leg) {
                        Some(Leg::Far(n)) => self
                            .calls
                            .get(n)
                            .filter(|c| {
                                c.stage == Stage::Outside && c.far.is_none_or(|(l, _)| l == leg)
                            })
                            .map(|_| *n),
                        _ => None,
                    };
                    if let Some(n) = outside {
                        self.legs.remove(&leg);
                        self.sockets.remove(&leg);
                        self.ua.hangup(leg, now);
                        self.outside_failed(n, "no answer", now);
                    } else if let Some(n) = dialling {
                        self.legs.remove(&leg);
                        self.sockets.remove(&leg);
                        self.ua.hangup(leg, now);
                        self.outbound_failed(n, "no answer", now);
                    } else if let Some(Leg::Caller(n)) = self.legs.get(&leg).copied() {
                        if self
                            .calls
                            .get(&n)
                            .is_some_and(|c| c.stage == Stage::CallingBack && c.caller_leg == leg)
                        {
                            self.legs.remove(&leg);
                            self.relay.close(leg);
                            self.sockets.remove(&leg);
                            self.ua.hangup(leg, now);
                            self.callback_failed(n, "no answer", now);
                        }
                    }
                }
                Timer::CallbackRetry(n) => self.callback_requeue(n, now),
                Timer::CallbackExpire(n) => {
                    if self
                        .calls
                        .get(&n)
                        .is_some_and(|c| c.stage == Stage::CallbackWaiting)
                    {
                        let minutes = self.callback_spec(n).map_or(0, |cb| cb.expire_minutes);
                        if let Some(c) = self.calls.get_mut(&n) {
                            c.failure = Some(format!("callback not made within {minutes} minutes"));
                        }
                        self.finish(n, now);
                    }
                }
                Timer::Probe(tenant, j) => self.probe(tenant, j, now),
                Timer::NoInput(n, generation) => {
                    let current = self.calls.get(&n).map(|c| c.menu_generation);
                    if current == Some(generation) {
                        self.menu_failed(n, "no-input", now);
                    }
                }
                Timer::WrapUp(t, a) => {
                    let due = self.cc.with(|d| {
                        d.tenants[t]
                            .agent(a)
                            .and_then(|r| r.wrap_up_until)
                            .is_some_and(|u| u <= now)
                    });
                    if due {
                        let done = self.cc.with(|d| d.finish_wrap_up(t, a, now));
                        self.cc.wrap_up_done(done);
                        self.dispatch();
                    }
                }
            }
        }
        // Agents whose phone refused an offer a while ago are offered calls again.
        let released = self.cc.with(|d| {
            d.tenants
                .iter_mut()
                .fold(false, |any, t| t.engine.release_held_back(now) | any)
        });
        if released {
            self.dispatch();
        }
        // Callers who waited their queue's longest.
        let waited: Vec<(QueueId, routing::Caller)> = self.cc.with(|d| {
            d.tenants
                .iter_mut()
                .flat_map(|t| t.engine.handle_timeout(now))
                .collect()
        });
        for (q, caller) in waited {
            let n = caller.call.0;
            if self
                .calls
                .get(&n)
                .is_some_and(|c| c.stage == Stage::CallbackWaiting)
            {
                // A callback was promised: it keeps its place, whatever the queue's longest
                // wait (its own expiry ends it).
                self.callback_requeue(n, now);
                continue;
            }
            self.queue_refused(n, q, Refusal::MaxWait, now);
        }
        if now >= self.last_purge + Duration::from_secs(5) {
            self.last_purge = now;
            self.purge_registrations(now);
            self.guard.purge(now);
            metrics::gauge!("sip_sources_banned").set(self.guard.banned(now) as f64);
            self.cc.publish_figures(now);
        }
    }

    /// Queue `name`'s agent `person`, rung for a consultation on call `n`, did not answer:
    /// they are set as the queue sets an agent whose call rang out (Not ready, "missed call",
    /// by default).
    fn consult_rang_out(&mut self, n: u64, name: &str, person: AgentId, now: Instant) {
        let Some(tenant) = self.calls.get(&n).map(|c| c.tenant) else {
            return;
        };
        self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let q = t.queue_ids.get(name).copied();
            if t.rang_out(q, person) == AfterMissed::NotReady {
                t.engine.set_ready(person, false, now);
            }
            if let Some(a) = t.agent(person) {
                tracing::info!(agent = %a.upn, queue = %name, "a consultation rang out unanswered");
            }
        });
        self.unannounced = true;
    }

    /// Queue `name`'s agent `person`, rung for the agent's consultation on call `n`, did not
    /// take it (declined, busy, or rang out): the consultation goes on without them — the
    /// queue's next choice is rung, or it waits there — while the agent is on the call.
    fn consult_goes_on(&mut self, n: u64, name: &str, person: AgentId, now: Instant) {
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let Some((agent, _)) = c.agent else {
            return;
        };
        c.consult_passed.push(person);
        let tenant = c.tenant;
        let by = self.upn(tenant, agent);
        if let Err(e) = self.consult_start(n, agent, &by, name, now) {
            self.queue_consult_ended(n, name, &e.to_string());
            // Over: the agent's view says so now (the end of the one rung was not shown).
            self.consult_shown(tenant, Some(agent), n);
        }
    }

    /// Agent `agent`'s UPN in tenant `tenant` (empty for an id it does not know).
    fn upn(&self, tenant: usize, agent: AgentId) -> String {
        self.cc.with(|d| d.tenants[tenant].upn_of(agent))
    }

    /// Call `n`'s consultation of queue `name` ended (`why`): recorded.
    fn queue_consult_ended(&mut self, n: u64, name: &str, why: &str) {
        if let Some(c) = self.calls.get_mut(&n) {
            c.rec
                .steps
                .push(format!("consult with queue {name} ended: {why}"));
        }
        self.save(n);
    }

    fn ring_out(&mut self, leg: UaCall, now: Instant) {
        if let Some(Leg::Monitor { call, .. }) = self.legs.get(&leg).copied() {
            if self
                .calls
                .get(&call)
                .and_then(|c| c.monitor.as_ref())
                .is_some_and(|m| m.who.leg == leg && !m.who.up)
            {
                self.monitor_drop(call, "did not answer", now);
            }
            return;
        }
        if let Some(Leg::Consult { call, .. }) = self.legs.get(&leg).copied() {
            let Some(x) = self
                .calls
                .get(&call)
                .and_then(|c| c.consult.clone())
                .filter(|x| x.leg == leg && !x.up)
            else {
                return;
            };
            self.legs.remove(&leg);
            self.sockets.remove(&leg);
            self.ua.hangup(leg, now);
            if let (Some(name), Some(person)) = (&x.queue, x.agent) {
                self.consult_rang_out(call, name, person, now);
            }
            let next = x.queue.zip(x.agent);
            self.consult_end(call, "did not answer", next.is_none(), now);
            if let Some((name, person)) = next {
                self.consult_goes_on(call, &name, person, now);
            }
            return;
        }
        let Some(Leg::Offer {
            call: n,
            tenant,
            agent,
        }) = self.legs.get(&leg).copied()
        else {
            return;
        };
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let before = c.offers.len();
        c.offers.retain(|(l, _)| *l != leg);
        if c.offers.len() == before {
            return;
        }
        let queue = c.queue;
        Self::offer_outcome(c, leg, "no_answer");
        self.legs.remove(&leg);
        if c.direct == Some(agent) {
            self.sockets.remove(&leg);
            self.unring(tenant, agent);
            self.ua.hangup(leg, now);
            self.direct_failed(n, "did not answer", now);
            return;
        }
        self.sockets.remove(&leg);
        self.cc.with(|d| {
            let t = &mut d.tenants[tenant];
            let after = t.rang_out(queue, agent);
            t.engine
                .offer_ended(routing::CallId(n), agent, OfferEnd::NoAnswer(after), now);
            if let Some(a) = t.agent_mut(agent) {
                a.ringing = a.ringing.saturating_sub(1);
                tracing::info!(agent = %a.upn, "the offer rang out unanswered");
            }
        });
        self.save(n);
        self.ua.hangup(leg, now);
        self.dispatch();
    }

    /// Phones whose registration expired are offline.
    fn purge_registrations(&mut self, now: Instant) {
        self.registrar.purge(now);
        let registrar = &self.registrar;
        self.cc.with(|d| {
            let gone: Vec<(String, String)> = d
                .tenants
                .iter()
                .flat_map(|t| t.agents.iter())
                .filter_map(|a| Some((a.username.clone()?, a.aor.clone()?)))
                .filter(|(_, aor)| registrar.lookup(aor, now).is_empty())
                .collect();
            for (user, aor) in gone {
                d.registered(&user, &aor, None, now);
            }
        });
    }

    /// An offer to `agent` stopped ringing.
    fn unring(&self, tenant: usize, agent: AgentId) {
        self.cc.with(|d| {
            if let Some(a) = d.tenants[tenant].agent_mut(agent) {
                a.ringing = a.ringing.saturating_sub(1);
            }
        });
    }

    /// Sets the outcome of the offer on `leg` in the call's record.
    fn offer_outcome(c: &mut CallRt, leg: UaCall, outcome: &str) {
        if let Some(o) = c
            .offer_rec
            .remove(&leg)
            .and_then(|i| c.rec.offers.get_mut(i))
        {
            o.outcome = outcome.to_owned();
            o.ended_at = Some(time::OffsetDateTime::now_utc());
        }
    }

    /// Leg `leg` holds its call (`held`) or not any more: the caller's leg or the agent's.
    /// The call counts as on hold while either holds it.
    /// Leg `leg` re-offered media, `held` or not: where it is the agent's leg, the agent put
    /// the caller on hold or took them back. A Teams caller on a Direct Routing trunk is told
    /// ([`Self::teams_hold`]); any other caller hears the tenant's music on hold from the
    /// relay meanwhile, not what the agent's phone sends (silence, or its own music).
    fn agent_held(&mut self, leg: UaCall, held: bool, now: Instant) {
        let Some(Leg::Offer { call: n, .. }) = self.legs.get(&leg).copied() else {
            return;
        };
        if self
            .calls
            .get(&n)
            .is_none_or(|c| c.agent.is_none_or(|(_, l)| l != leg))
        {
            return;
        }
        self.teams_hold(n, held, now);
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        // In a consultation or a conference the router's own mix decides what the caller
        // hears; a Teams caller held with `a=inactive` gets no media at all.
        if !c.alone_with_agent() || c.teams_held {
            return;
        }
        let playlist = Playlist {
            clips: Vec::new(),
            then_loop: held.then(|| self.prompts.music.clone()),
        };
        self.relay.play(c.caller_leg, playlist);
    }

    /// Leg `leg` re-offered media itself, and the router now sends it `ours`: when that holds
    /// the call so that the leg sends nothing — `a=inactive`, the only hold Teams makes, or
    /// `recvonly` — whoever talks with it would hear silence, so they hear the tenant's music
    /// on hold from the relay instead, and the party again when it resumes:
    /// - the outside party the caller was handed to (a number, or a Teams user reached by
    ///   number or by a Teams REFER): the caller hears the music;
    /// - the caller (a Teams user calling the tenant, say) talking with an agent alone: the
    ///   agent hears it ([`Self::remix`] stops it once a consultation or a conference begins).
    ///
    /// A `sendonly` hold is passed on as it is: the holder sends what the other side should
    /// hear (a PBX's own music).
    fn party_held(&mut self, leg: UaCall, ours: switchboard_sip::sdp::Direction) {
        use switchboard_sip::sdp::Direction;
        let silent = matches!(ours, Direction::Inactive | Direction::SendOnly);
        let music = Playlist {
            clips: Vec::new(),
            then_loop: Some(self.prompts.music.clone()),
        };
        match self.legs.get(&leg).copied() {
            Some(Leg::Far(n)) => {
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                if !c.handed_out || c.far.is_none_or(|(l, _)| l != leg) || !c.joined.is_empty() {
                    return;
                }
                // A session refresh re-offers what was offered before: nothing changes.
                if c.far_holds == silent {
                    return;
                }
                c.far_holds = silent;
                tracing::info!(call = %c.id, held = silent, "the party the caller was handed to holds or resumes");
                let playlist = if silent { music } else { Playlist::default() };
                self.relay.play(c.caller_leg, playlist);
            }
            Some(Leg::Caller(n)) => {
                let Some(c) = self.calls.get_mut(&n) else {
                    return;
                };
                // While the router holds a Teams caller for the agent, their `inactive` is
                // that hold, not theirs.
                if silent && !c.teams_held {
                    let alone = c.alone_with_agent();
                    let Some((_, agent_leg)) = c.agent.filter(|_| alone) else {
                        return;
                    };
                    tracing::info!(call = %c.id, "the caller holds the call: the agent hears music");
                    c.caller_hold_music = Some(agent_leg);
                    self.relay.play(agent_leg, music);
                } else if let Some(agent_leg) = c.caller_hold_music.take_if(|_| !silent) {
                    tracing::info!(call = %c.id, "the caller resumed the call");
                    self.relay.play(agent_leg, Playlist::default());
                }
            }
            _ => {}
        }
    }

    /// Call `n`'s caller, when a Teams user on a Direct Routing trunk, is put on hold (`held`)
    /// or resumed: a re-INVITE with `a=inactive` — the only hold Teams understands — or
    /// `sendrecv`. Callers on other trunks get no re-INVITE (they hear the router's music on
    /// hold, [`Self::agent_held`]); nor does a Teams caller while the router itself plays them
    /// music (consultations, queues).
    fn teams_hold(&mut self, n: u64, held: bool, now: Instant) {
        let Some(c) = self.calls.get(&n) else {
            return;
        };
        if c.teams_held == held || !c.on_trunk {
            return;
        }
        let (tenant, trunk, leg, id) = (c.tenant, c.trunk, c.caller_leg, c.id.clone());
        let teams = self.cc.with(|d| {
            d.tenants[tenant]
                .spec
                .trunks
                .get(trunk)
                .is_some_and(|t| t.direct_routing.is_some())
        });
        if !teams {
            return;
        }
        let direction = if held {
            switchboard_sip::sdp::Direction::Inactive
        } else {
            switchboard_sip::sdp::Direction::SendRecv
        };
        match self.ua.hold_as(leg, direction, now) {
            Ok(()) => {
                tracing::info!(call = %id, held, "the Teams caller is told of the agent's hold");
                if let Some(c) = self.calls.get_mut(&n) {
                    c.teams_held = held;
                }
            }
            Err(e) => {
                tracing::warn!(call = %id, held, error = %e, "cannot tell the Teams caller of the agent's hold")
            }
        }
    }

    fn hold_changed(&mut self, leg: UaCall, held: bool, now: Instant) {
        let n = match self.legs.get(&leg) {
            Some(Leg::Caller(n)) => *n,
            Some(Leg::Offer { call, .. })
                if self
                    .calls
                    .get(call)
                    .is_some_and(|c| c.agent.is_some_and(|(_, l)| l == leg)) =>
            {
                *call
            }
            _ => return,
        };
        let Some(c) = self.calls.get_mut(&n) else {
            return;
        };
        let was = !c.holding.is_empty();
        c.holding.retain(|l| *l != leg);
        if held {
            c.holding.push(leg);
        }
        match (was, !c.holding.is_empty()) {
            (false, true) => c.hold_since = Some(now),
            (true, false) => {
                if let Some(since) = c.hold_since.take() {
                    c.held += now.saturating_duration_since(since);
                }
            }
            _ => {}
        }
    }

    /// Queues call `n`'s record as it is now for writing.
    fn save(&self, n: u64) {
        if let Some(c) = self.calls.get(&n) {
            let mut rec = c.rec.clone();
            rec.choices = c.choices.clone();
            self.write(&rec);
        }
    }

    fn write(&self, rec: &CallRecord) {
        if let Some(w) = self.cc.records.get() {
            let _ = w.send(RecordWrite::Put(Box::new(rec.clone())));
        }
    }

    /// Shutting down: every call is hung up, and recorded as interrupted.
    async fn stop(&mut self) {
        let now = Instant::now();
        // Callbacks waiting with no leg stay open: kept in the store, the next start takes
        // them up again.
        self.calls
            .retain(|_, c| !matches!(c.stage, Stage::CallbackWaiting | Stage::CallbackConfirming));
        for c in self.calls.values_mut() {
            c.failure = None;
            c.rec.outcome = CallOutcome::Interrupted;
            c.rec.reason = Some("the router was stopped".into());
            c.rec.ended_at = Some(time::OffsetDateTime::now_utc());
            c.rec.choices = c.choices.clone();
        }
        for c in self.calls.values() {
            self.write(&c.rec);
        }
        self.calls.clear();
        if let Some(w) = self.cc.records.get() {
            let (done, written) = tokio::sync::oneshot::channel();
            if w.send(RecordWrite::Flush(done)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(3), written).await;
            }
        }
        let legs: Vec<UaCall> = self.legs.keys().copied().collect();
        for leg in legs {
            self.ua.hangup(leg, now);
        }
        self.settle().await;
    }
}

fn has_to_tag(m: &Message) -> bool {
    m.header("To")
        .is_some_and(|t| switchboard_sip::ua::header_param(t, "tag").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_outside_calls_are_counted_over_the_last_hour() {
        let t0 = Instant::now();
        let mut placed: std::collections::VecDeque<Instant> = [0u64, 600, 1800, 3000]
            .iter()
            .map(|s| t0 + Duration::from_secs(*s))
            .collect();
        assert_eq!(
            calls_in_last_hour(&mut placed, t0 + Duration::from_secs(3000)),
            4
        );
        // An hour after the first, it no longer counts; nor, later, the next two.
        assert_eq!(
            calls_in_last_hour(&mut placed, t0 + Duration::from_secs(3600)),
            3
        );
        assert_eq!(
            calls_in_last_hour(&mut placed, t0 + Duration::from_secs(5401)),
            1
        );
        assert_eq!(placed.len(), 1, "forgotten, not kept");
    }

    #[test]
    fn only_plain_user_parts_pass() {
        assert_eq!(
            safe_user("\"Bob\" <sip:+15551234567@carrier.example;user=phone>;tag=1").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            safe_user("<tel:+18005550100>").as_deref(),
            Some("+18005550100")
        );
        assert_eq!(safe_user("<sip:a%0d%0aX-Evil:1@h>"), None);
        assert_eq!(safe_user("<sip:@h>"), None);
        assert_eq!(safe_user(&format!("<sip:{}@h>", "1".repeat(65))), None);
    }

    /// A Teams REFER's Refer-To (Microsoft's documented form) gives its MRI and tenant; what
    /// does not fit Microsoft's bounds is refused.
    #[test]
    fn teams_refer_targets_are_read_and_bounded() {
        let to = "sip:sip.pstnhub.microsoft.com;x-m=8:orgid:2f6e1a44-5e5f-4b3a-9a39-2f6d1f6a1d44;x-t=72f988bf-86f1-41af-91ab-2d7cd011db47?Referred-By=x";
        assert_eq!(
            uri_param(to, "x-m"),
            Some("8:orgid:2f6e1a44-5e5f-4b3a-9a39-2f6d1f6a1d44")
        );
        assert_eq!(
            uri_param(to, "X-T"),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        assert_eq!(
            uri_param("sip:+15550100@sip.pstnhub.microsoft.com;user=phone", "x-m"),
            None
        );
        assert!(teams_id("8:orgid:2f6e1a44-5e5f-4b3a-9a39-2f6d1f6a1d44"));
        assert!(teams_id(&"a".repeat(400)));
        assert!(!teams_id(&"a".repeat(401)));
        assert!(!teams_id(""));
        assert!(!teams_id("8:orgid:x>\r\nVia: evil"));
        assert!(!teams_id("a b"));
    }

    /// Microsoft's signalling ranges: 52.112.0.0/14 and 52.122.0.0/15.
    #[test]
    fn microsofts_signalling_ranges() {
        for ip in ["52.112.0.1", "52.115.255.254", "52.122.0.1", "52.123.1.1"] {
            assert!(microsoft_signalling(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "52.111.255.255",
            "52.116.0.0",
            "52.121.9.9",
            "52.124.0.0",
            "127.0.0.1",
        ] {
            assert!(!microsoft_signalling(ip.parse().unwrap()), "{ip}");
        }
    }

    /// What a trunk asserts about its caller wins over From; Privacy: id hides them.
    #[test]
    fn a_trunk_asserts_the_caller_and_privacy_hides_them() {
        let invite = |extra: &str| {
            let text = format!("INVITE sip:+18005550100@contoso.sbc.example:5061;user=phone SIP/2.0\r\nVia: SIP/2.0/TLS 52.112.0.1:5061;branch=z9hG4bKa\r\nFrom: <sip:+14255550101@sip.pstnhub.microsoft.com;user=phone>;tag=a\r\nTo: <sip:+18005550100@contoso.sbc.example>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n");
            Message::parse(text.as_bytes()).unwrap()
        };
        assert_eq!(asserted_caller(&invite("")), None);
        assert_eq!(
            asserted_caller(&invite(
                "P-Asserted-Identity: <sip:+14255550199@sip.pstnhub.microsoft.com;user=phone>, <tel:+14255550199>\r\n"
            ))
            .as_deref(),
            Some("+14255550199")
        );
        assert_eq!(
            asserted_caller(&invite(
                "P-Asserted-Identity: <sip:+14255550199@sip.pstnhub.microsoft.com>\r\nPrivacy: id\r\n"
            ))
            .as_deref(),
            Some("anonymous")
        );
        // Nothing that could not be shown passes.
        assert_eq!(
            asserted_caller(&invite("P-Asserted-Identity: <sip:a%0d%0aX@h>\r\n")),
            None
        );
    }
}
