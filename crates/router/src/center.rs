//! The contact center's configuration: the SIP edge (`[sip]`) and, per tenant, its trunks,
//! numbers, queues and agents (`[[tenants]]`), as the router's TOML declares them. Values are
//! checked while the file is read (a skill level of 7, a number that is not E.164, an unknown
//! strategy are refused at their own line), and references between tables (a number's queue)
//! are checked after, naming the line of the reference.
//!
//! ```toml
//! [sip]
//! listen = "127.0.0.1:5080"
//!
//! [[tenants]]
//! id = "contoso"
//! domain = "contoso.example"
//!
//! [[tenants.trunks]]
//! name = "carrier"
//! allow = ["127.0.0.1"]
//!
//! [[tenants.numbers]]
//! number = "+18005550100"
//! queue = "general"
//!
//! [[tenants.queues]]
//! name = "general"
//!
//! [[tenants.agents]]
//! upn = "AdeleV@contoso.example"
//! skills = { billing = 5 }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::routing::Strategy;

/// `[sip]`: the SIP edge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP address and port of the SIP edge; none: the router takes no calls.
    pub listen: Option<SocketAddr>,
    /// SIP over TCP on the same address and port as `listen` (RFC 3261 §18: whoever speaks
    /// UDP speaks TCP too; messages too large for a datagram need it).
    pub tcp: bool,
    /// `[sip.tls]`: SIP over TLS, for phones across untrusted networks.
    pub tls: Option<SipTls>,
    /// How the router tells agents' phones to register (`POST
    /// /v1/agents/me/sip-credentials`): `udp`, `tcp` or `tls`.
    pub agents_transport: AgentsTransport,
    /// Address written into SDP and bound by media sockets; default: the listen address.
    pub media_address: Option<IpAddr>,
    /// Digest realm of the agents' registrations.
    pub realm: String,
    /// Registration lifetime the router grants at most, in seconds.
    pub max_expires: u32,
    /// The digest algorithm the registrar asks phones for: `SHA-256` (RFC 7616), or `MD5`
    /// for phones that know no other. One per router: a phone cannot talk it down.
    pub digest: Digest,
    /// Where the prompts and music on hold are (`<dir>/<language>/<id>.wav`,
    /// `<dir>/music/hold.wav`); default: the ones shipped with the router's sources.
    pub prompts_dir: Option<std::path::PathBuf>,
    /// `[sip.resolve]`: host names the router resolves itself, before DNS
    /// (`"sip.pstnhub.microsoft.com" = "127.0.0.1:35061"`): the simulated Teams proxy of the
    /// tests and the demo, or a network whose DNS does not know its peers. The name stays
    /// the TLS name checked in the peer's certificate.
    pub resolve: std::collections::BTreeMap<String, SocketAddr>,
    /// Received messages waiting for the edge at which every new call is refused with 503
    /// and `Retry-After`; from a quarter of it a share growing with the queue is, so the calls
    /// under way keep their time (docs/contact-center.md, "Overload"). 2–1000; default 512.
    #[serde(deserialize_with = "overload_queue")]
    pub overload_queue: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tcp: true,
            tls: None,
            agents_transport: AgentsTransport::Udp,
            media_address: None,
            realm: "switchboard".into(),
            max_expires: 3600,
            digest: Digest::Sha256,
            prompts_dir: None,
            resolve: std::collections::BTreeMap::new(),
            overload_queue: crate::overload::Thresholds::default().full,
        }
    }
}

/// `[sip.tls]`: where the router accepts SIP over TLS, and with which certificate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTls {
    /// Address and port (5061 by convention).
    pub listen: SocketAddr,
    /// PEM certificate chain naming the router's host name.
    pub certificate: std::path::PathBuf,
    /// PEM private key of that certificate.
    pub key: std::path::PathBuf,
    /// PEM CA certificates trusted, besides the system's, for connections the router opens.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// The host name written in our Via and Contact over TLS (the certificate's name);
    /// default: the listen address.
    #[serde(default)]
    pub host: Option<String>,
    /// Mutual TLS: the certificate is shown as a client's too on connections the router
    /// opens, and peers connecting are asked for theirs (one they show must chain to the
    /// trusted roots; phones showing none still get in). Microsoft's Direct Routing proxies
    /// require it both ways. Default: on.
    #[serde(default = "yes")]
    pub mutual: bool,
}

/// `[sip] agents_transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentsTransport {
    Udp,
    Tcp,
    Tls,
}

/// `[sip] digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Digest {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "MD5")]
    Md5,
}

impl Digest {
    /// The SIP core's algorithm of that name.
    pub fn algorithm(self) -> switchboard_sip::auth::Algorithm {
        match self {
            Digest::Sha256 => switchboard_sip::auth::Algorithm::Sha256,
            Digest::Md5 => switchboard_sip::auth::Algorithm::Md5,
        }
    }
}

/// One organisation served by the router.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Short name, unique among tenants (letters, digits, `-`).
    #[serde(deserialize_with = "short_name")]
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The SIP domain of the tenant's agents (`contoso.example`).
    pub domain: String,
    /// The Entra tenant (directory) id whose signed-in people are this tenant's agents.
    #[serde(default)]
    pub entra_tenant_id: Option<String>,
    /// The language of the tenant's prompts: `en` or `zh-CN`.
    #[serde(default = "default_language", deserialize_with = "language")]
    pub language: String,
    #[serde(default)]
    pub trunks: Vec<TrunkSpec>,
    #[serde(default)]
    pub numbers: Vec<NumberSpec>,
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    #[serde(default)]
    pub attendants: Vec<AttendantSpec>,
    /// Opening hours numbers can follow.
    #[serde(default)]
    pub schedules: Vec<crate::hours::ScheduleSpec>,
    /// Groups of experts (subject-matter experts) agents transfer callers to.
    #[serde(default)]
    pub experts: Vec<ExpertGroupSpec>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// Calls agents place to outside numbers, and the toll rules they follow (none: agents
    /// place no outside calls through the router).
    #[serde(default)]
    pub outbound: Option<OutboundSpec>,
}

/// Where a call goes: a queue, an auto attendant or an expert group (exactly one).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    #[serde(default)]
    pub queue: Option<Spanned<String>>,
    #[serde(default)]
    pub attendant: Option<Spanned<String>>,
    /// The best expert of this `[[tenants.experts]]` group free now, rung directly; with
    /// nobody free the caller hears so and goes back (to their queue or attendant).
    #[serde(default)]
    pub expert: Option<Spanned<String>>,
    /// An outside number (E.164), called on the tenant's outbound trunk (`[tenants.outbound]`)
    /// under its toll rules while the caller hears music: an overflow to a partner's service
    /// desk, an attendant's choice "for the emergency line". Unanswered, the caller hears so
    /// and goes back to the attendant they came from, or the call ends.
    #[serde(default)]
    pub number: Option<Spanned<String>>,
    /// One of the tenant's agents by UPN, rung directly (an attendant's "press 3 for the
    /// front desk"): they must have a phone registered and be Ready; otherwise, or unanswered
    /// after 20 s, the caller hears so and goes back (to their queue or attendant).
    #[serde(default)]
    pub agent: Option<Spanned<String>>,
}

/// Experts by skill: an agent's REFER to `sip:<name>@…` rings the best of them free now —
/// a registered phone, no call, and (where the router follows Teams presence) Available.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertGroupSpec {
    /// The transfer target's name (not a queue's or an attendant's).
    #[serde(deserialize_with = "short_name")]
    pub name: String,
    /// The skill its experts have (agents' `skills`).
    pub skill: String,
    /// The lowest level of that skill (1–5, default 1).
    #[serde(default = "one")]
    pub min_level: u8,
    /// Agents whose Microsoft 365 profile lists the skill (Graph `skills`, read with
    /// `[presence]`) are experts of the group too, at `min_level`, unless `skills` in the
    /// configuration gives them a level of their own.
    #[serde(default)]
    pub from_graph: bool,
}

fn one() -> u8 {
    1
}

/// An auto attendant: a greeting that offers choices by key, with retries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttendantSpec {
    #[serde(deserialize_with = "short_name")]
    pub name: String,
    /// The prompt played as the menu (`<prompts_dir>/<language>/<greeting>.wav`).
    #[serde(deserialize_with = "short_name")]
    pub greeting: String,
    /// The language its callers hear prompts in from here on (`en`, `zh-CN`); none: the
    /// language they have been hearing (at first the tenant's).
    #[serde(default, deserialize_with = "some_language")]
    pub language: Option<String>,
    /// Seconds to wait for a key after the greeting.
    #[serde(default = "default_menu_timeout")]
    pub timeout_seconds: u64,
    /// Greetings again after no key or a wrong one, before `default`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Keys `0`–`9` and where each goes (`*` repeats the greeting, `#` goes back).
    #[serde(default)]
    pub options: BTreeMap<String, TargetSpec>,
    /// Where the caller goes after no choice (or too many wrong ones): the operator.
    pub default: TargetSpec,
    /// The opening hours it follows (a `[[tenants.schedules]]` name); none: always open.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// Where its callers go while the schedule is closed; none: the `closed` prompt, then the
    /// call ends.
    #[serde(default)]
    pub closed: Option<TargetSpec>,
    /// Where its callers go on the schedule's holidays; none: as when closed.
    #[serde(default)]
    pub holiday: Option<TargetSpec>,
}

fn default_menu_timeout() -> u64 {
    5
}
fn default_retries() -> u32 {
    2
}

/// A carrier or SBC that brings calls in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSpec {
    #[serde(deserialize_with = "short_name")]
    pub name: String,
    /// Source addresses whose INVITEs arrive on this trunk (IP addresses); none: the trunk
    /// is known by its digest `username` alone.
    #[serde(default)]
    pub allow: Vec<IpAddr>,
    /// Digest authentication of its INVITEs (407 challenge, the `[sip] digest` algorithm):
    /// with `allow` both must hold; alone, any source that answers the challenge is the trunk.
    #[serde(default)]
    pub username: Option<String>,
    /// The digest password (with `username`); never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Calls on the trunk at once; more get 503.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Where the router sends OPTIONS keep-alives (`sip:192.0.2.10:5060` or
    /// `sip:sbc.carrier.example`: an IP address or a DNS name, resolved by `[sip.resolve]` or
    /// DNS when each request goes; port 5060 when left out); none: the trunk is not probed, and is up once it sends
    /// anything.
    #[serde(default)]
    pub probe: Option<String>,
    /// Seconds between probes (1–3600); three unanswered (or 503) in a row: down. None: 30,
    /// or 60 on a Direct Routing trunk (Microsoft's proxies expect an OPTIONS a minute); see
    /// [`TrunkSpec::probe_every`].
    #[serde(default)]
    pub probe_seconds: Option<u64>,
    /// Where calls the router places on this trunk go (`sip:192.0.2.10:5060` or a DNS name
    /// as for `probe`; port 5060 when left out): callbacks to its callers. None: the `probe` target; neither:
    /// the router places no call on the trunk (no callback is offered to its callers).
    #[serde(default)]
    pub outbound: Option<String>,
    /// `[tenants.trunks.direct_routing]`: the trunk is the tenant's Microsoft Teams Direct
    /// Routing trunk, and the router its SBC: TLS to Microsoft's SIP proxies with the
    /// `[sip.tls]` certificate (mutual TLS), OPTIONS to each every `probe_seconds`, calls to
    /// the first healthy one with failover. `allow`, `username`, `probe` and `outbound` do
    /// not apply: the proxies are its sources and targets.
    #[serde(default)]
    pub direct_routing: Option<DirectRoutingSpec>,
    /// Removed through the API: no source, digest, probe or target; it keeps its place in
    /// the tenant's list (calls on it hold that place) until the router restarts.
    #[serde(skip)]
    pub retired: bool,
}

/// Microsoft's Direct Routing SIP proxies, in failover order.
pub const TEAMS_PROXIES: [&str; 3] = [
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
];

/// `[tenants.trunks.direct_routing]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectRoutingSpec {
    /// The SBC's FQDN as paired in the tenant (`New-CsOnlinePSTNGateway -Fqdn`), never an IP
    /// address; with carrier hosting a subdomain of the carrier's base FQDN per customer
    /// (`contoso.sbc.example`). Our Contact names it, and Microsoft finds the tenant by it;
    /// the `[sip.tls]` certificate must name it (SAN, or a wildcard of the base).
    pub fqdn: String,
    /// The proxies (`host` or `host:port`, port 5061 when left out), tried in this order.
    #[serde(default = "default_teams_proxies")]
    pub proxies: Vec<String>,
    /// The port Microsoft reaches the SBC on (`Set-CsOnlinePSTNGateway -SipSignalingPort`),
    /// named in our Contact and Via; none: the `[sip.tls]` listen port. Set it when a
    /// firewall forwards the paired port (5061) to another listen port.
    #[serde(default)]
    pub sip_port: Option<u16>,
    /// Media bypass, as paired (`Set-CsOnlinePSTNGateway -MediaBypass $true`): on the Teams
    /// leg the router is an ICE-lite agent (RFC 8445) whose one candidate is the media
    /// address, which must then be a public IPv4 address the Teams clients reach; it answers
    /// their connectivity checks and sends to the pair they nominate. Off: Microsoft's media
    /// processors relay the audio and no ICE is offered.
    #[serde(default)]
    pub media_bypass: bool,
}

fn default_teams_proxies() -> Vec<String> {
    TEAMS_PROXIES.iter().map(|p| (*p).to_owned()).collect()
}

impl DirectRoutingSpec {
    /// Each proxy's host name and port.
    pub fn proxy_hosts(&self) -> Vec<(String, u16)> {
        self.proxies.iter().filter_map(|p| proxy_host(p)).collect()
    }

    /// Why the router cannot be this trunk's SBC with `tls`, its `[sip.tls]`: none (it could
    /// neither reach Microsoft's proxies nor be reached), no mutual TLS (the proxies show a
    /// client certificate and ask for ours), or a certificate that does not name the FQDN
    /// (the proxies refuse the handshake, and Microsoft finds the tenant by that name).
    pub fn sbc_problem(&self, tls: Option<&SipTls>) -> Option<String> {
        let fqdn = &self.fqdn;
        let Some(tls) = tls else {
            return Some(format!(
                "a Direct Routing trunk needs [sip.tls]: TLS (port 5061 as paired) with a certificate naming {fqdn}"
            ));
        };
        if !tls.mutual {
            return Some(
                "a Direct Routing trunk needs [sip.tls] mutual = true: Microsoft's proxies connect with a certificate of theirs and ask for ours".into(),
            );
        }
        let base = fqdn.split_once('.').map_or(fqdn.as_str(), |(_, b)| b);
        match switchboard_sip::transport::certificate_file_is_for(&tls.certificate, fqdn) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the [sip.tls] certificate {} does not name {fqdn}: Microsoft's proxies refuse an SBC whose certificate does not name its FQDN — add it as a subject alternative name, or use a wildcard certificate for *.{base}",
                tls.certificate.display()
            )),
            Err(e) => Some(format!("the [sip.tls] certificate: {e}")),
        }
    }
}

/// `host` or `host:port` of a Direct Routing proxy (a DNS name, never an IP address).
fn proxy_host(p: &str) -> Option<(String, u16)> {
    let (host, port) = match p.rsplit_once(':') {
        Some((h, port)) => (h, port.parse::<u16>().ok().filter(|x| *x > 0)?),
        None => (p, 5061),
    };
    (crate::http::is_host_name(host) && host.parse::<IpAddr>().is_err() && host.contains('.'))
        .then(|| (host.to_ascii_lowercase(), port))
}

impl TrunkSpec {
    /// Seconds between its OPTIONS: `probe_seconds`, else 60 on a Direct Routing trunk
    /// (Microsoft's SBC rules: an OPTIONS a minute to each proxy), else 30.
    pub fn probe_every(&self) -> u64 {
        self.probe_seconds
            .unwrap_or(if self.direct_routing.is_some() {
                60
            } else {
                30
            })
    }

    /// Takes the trunk out of use (see `retired`).
    pub fn retire(&mut self) {
        self.allow.clear();
        self.username = None;
        self.password = None;
        self.probe = None;
        self.outbound = None;
        self.direct_routing = None;
        self.retired = true;
    }

    /// Whether the router can place calls on this trunk: it has an outbound (or probe)
    /// target, or is a Direct Routing trunk (its proxies).
    pub fn places_calls(&self) -> bool {
        self.direct_routing.is_some() || self.outbound_address().is_some()
    }

    /// Where the router's own calls on this trunk go.
    pub fn outbound_address(&self) -> Option<String> {
        self.outbound
            .as_deref()
            .or(self.probe.as_deref())
            .and_then(trunk_target)
    }
}

/// Agents' calls to outside numbers: which trunk carries them, which numbers they may reach
/// (toll rules), and how many an agent may place — the same type the API sets them with.
pub type OutboundSpec = switchboard_api::TollRules;

/// Whether `s` is an E.164 prefix: `+` and at most 15 digits.
fn e164_prefix(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A password from the configuration: its `Debug` says nothing.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A trunk's probe or outbound target, `sip:` and an IP address or a DNS name with an
/// optional port (5060): the `host:port` requests go to (a name lower-cased).
pub fn trunk_target(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sip:")?;
    if let Ok(a) = rest.parse::<std::net::SocketAddr>() {
        return Some(a.to_string());
    }
    let bare = rest.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(std::net::SocketAddr::new(ip, 5060).to_string());
    }
    // A DNS name (resolved when a request goes, as [sip.resolve] or DNS says).
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => (rest, 5060),
    };
    (crate::http::is_host_name(host) && host.contains('.') && host.parse::<IpAddr>().is_err())
        .then(|| format!("{}:{port}", host.to_ascii_lowercase()))
}

fn default_language() -> String {
    "en".into()
}

/// The languages prompts exist in.
pub const LANGUAGES: &[&str] = &["en", "zh-CN"];

fn language<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    known_language(&s)
        .map(str::to_owned)
        .map_err(serde::de::Error::custom)
}

fn some_language<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    language(d).map(Some)
}

/// `s` as one of [`LANGUAGES`] (compared without case), or why it is none of them.
pub fn known_language(s: &str) -> Result<&'static str, String> {
    LANGUAGES
        .iter()
        .find(|l| l.eq_ignore_ascii_case(s))
        .copied()
        .ok_or_else(|| {
            format!(
                "no prompts in {s:?}: the router speaks {}",
                LANGUAGES.join(", ")
            )
        })
}

fn default_max_calls() -> usize {
    100
}

/// A number (DID) and where its calls go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberSpec {
    /// E.164 with the `+`.
    #[serde(deserialize_with = "e164")]
    pub number: String,
    /// The queue its callers wait in (or `attendant`).
    #[serde(default)]
    pub queue: Option<Spanned<String>>,
    /// The auto attendant that answers its callers (or `queue`).
    #[serde(default)]
    pub attendant: Option<Spanned<String>>,
    /// Its callers' priority in queues, 1 (lowest) to 5 (highest): served first, then by
    /// how long they have waited.
    #[serde(default = "default_priority", deserialize_with = "priority")]
    pub priority: u8,
    /// The opening hours its calls follow (a `[[tenants.schedules]]` name); none: always open.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// Where its calls go while the schedule is closed; none: the caller hears that the
    /// tenant is closed and the call ends.
    #[serde(default)]
    pub closed: Option<TargetSpec>,
    /// Where its calls go on the schedule's holidays; none: as when closed.
    #[serde(default)]
    pub holiday: Option<TargetSpec>,
}

fn default_priority() -> u8 {
    3
}

fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let p = i64::deserialize(d)?;
    if !(1..=5).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "priority {p}: priorities go from 1 (lowest) to 5 (highest)"
        )));
    }
    Ok(p as u8)
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(deserialize_with = "short_name")]
    pub name: String,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// The language its callers hear prompts in from here on (`en`, `zh-CN`); none: the
    /// language they have been hearing (the tenant's, or an attendant's on the way).
    #[serde(default, deserialize_with = "some_language")]
    pub language: Option<String>,
    /// Skills an agent needs, each with its lowest level (1–5); none: every agent.
    #[serde(default, deserialize_with = "skill_levels")]
    pub skills: BTreeMap<String, u8>,
    /// Seconds an agent's phone rings before the next agent is tried.
    #[serde(default = "default_alert")]
    pub alert_seconds: u64,
    /// Seconds of wrap-up after each call before the agent is offered the next.
    #[serde(default)]
    pub wrap_up_seconds: u64,
    /// Callers waiting at most; more are refused.
    #[serde(default)]
    pub max_size: Option<usize>,
    /// After ringing out unanswered the agent is set Not ready ("missed call"); false: Ready.
    #[serde(default = "yes")]
    pub not_ready_after_missed: bool,
    /// The Not-ready reason an agent who rang out is given (1–64 characters, no control
    /// characters); none: "missed call".
    #[serde(default)]
    pub missed_reason: Option<String>,
    /// Every this many seconds a waiting caller hears their place in the queue and the
    /// expected wait (from the queue's handle time and staffed agents); none: never.
    #[serde(default)]
    pub announce_seconds: Option<u64>,
    /// The service-level threshold: answered within this many seconds counts as in time.
    #[serde(default = "default_service_level")]
    pub service_level_seconds: u64,
    /// The share answered in time the queue aims at, percent (the forecast's staffing goal).
    #[serde(default = "default_service_level_target")]
    pub service_level_target: f64,
    /// Seconds a caller waits at most before the overflow action.
    #[serde(default)]
    pub max_wait_seconds: Option<u64>,
    /// Where callers go when the queue is full or they waited `max_wait_seconds`; none:
    /// they hear that all lines are busy and the call ends.
    #[serde(default)]
    pub overflow: Option<TargetSpec>,
    /// Where callers go who waited `max_wait_seconds`, when that is not where a full queue
    /// sends them (`overflow`); none: `overflow`.
    #[serde(default)]
    pub max_wait_overflow: Option<TargetSpec>,
    /// Where callers go when no agent of the queue is logged in; none: they hear that no
    /// one can take the call and it ends.
    #[serde(default)]
    pub no_agents: Option<TargetSpec>,
    /// The disposition codes agents end this queue's calls with; none: any code.
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// Offer waiting callers a callback (none: never).
    #[serde(default)]
    pub callback: Option<CallbackSpec>,
}

/// When a queue offers a callback and how it calls back (`callback = { … }` in the file, the
/// same fields through the API). A caller who accepts (key 1) hangs up and keeps their place;
/// when an agent is chosen and answers, the router calls the caller on the trunk they came
/// from.
pub use switchboard_api::CallbackSettings as CallbackSpec;

fn default_strategy() -> Strategy {
    Strategy::LongestIdle
}
fn default_service_level() -> u64 {
    20
}
fn default_service_level_target() -> f64 {
    80.0
}
fn default_alert() -> u64 {
    15
}
fn yes() -> bool {
    true
}

/// An agent: a person of the tenant's directory, by sign-in name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// User principal name (`AdeleV@contoso.example`), compared without case.
    pub upn: String,
    #[serde(default)]
    pub name: String,
    /// Skills with proficiency 1–5.
    #[serde(default, deserialize_with = "skill_levels")]
    pub skills: BTreeMap<String, u8>,
    /// The agent's Entra object id, to follow their Teams presence from the start (with
    /// `[presence]`); otherwise learnt when they sign in to the router.
    #[serde(default)]
    pub object_id: Option<String>,
    /// Their Teams phone number (E.164, Teams Phone with Direct Routing): as an expert with
    /// no Switchboard phone registered, they are rung there through the tenant's Direct
    /// Routing trunk, while Teams presence says they are Available.
    #[serde(default, deserialize_with = "opt_e164")]
    pub teams_number: Option<String>,
}

fn opt_e164<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    e164(d).map(Some)
}

/// 1–64 letters, digits, `-` or `_`.
fn is_short_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn overload_queue<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if (2..=1000).contains(&n) {
        Ok(n)
    } else {
        Err(serde::de::Error::custom(format!(
            "{n} messages: use 2 to 1000 (received messages waiting at which every new call is refused; 512 suits most)"
        )))
    }
}

fn short_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if is_short_name(&s) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "{s:?} is not a name: use 1–64 letters, digits, '-' or '_'"
        )))
    }
}

fn e164<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if is_e164(&s) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "{s:?} is not an E.164 number: write it as + and 2 to 15 digits, e.g. \"+18005550100\""
        )))
    }
}

/// `+` and 2–15 digits, not starting with 0.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn skill_levels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u8>, D::Error> {
    let m = BTreeMap::<String, i64>::deserialize(d)?;
    m.into_iter()
        .map(|(k, v)| {
            if !(1..=5).contains(&v) {
                return Err(serde::de::Error::custom(format!(
                    "skill {k:?} has level {v}: levels go from 1 to 5"
                )));
            }
            if k.trim().is_empty() {
                return Err(serde::de::Error::custom("a skill needs a name"));
            }
            Ok((k.to_lowercase(), v as u8))
        })
        .collect()
}

/// A cross-reference the file got wrong: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefError {
    /// Byte offset of the offending value in the file, when known.
    pub offset: Option<usize>,
    pub key: String,
    pub message: String,
}

/// Checks what spans tables: unique names, numbers that name an existing queue, trunks that
/// do not share a source address across tenants (a call's tenant is its trunk's).
pub fn check(tenants: &[TenantSpec]) -> Result<(), RefError> {
    let mut ids = HashSet::new();
    let mut numbers = HashSet::new();
    let mut sources: HashSet<IpAddr> = HashSet::new();
    let mut trunk_users: HashSet<String> = HashSet::new();
    let mut dr_fqdns: HashSet<String> = HashSet::new();
    for (ti, t) in tenants.iter().enumerate() {
        let at = |k: &str| format!("tenants[{ti}].{k}");
        if !ids.insert(t.id.as_str()) {
            return Err(RefError {
                offset: None,
                key: at("id"),
                message: format!("tenant id {:?} is used twice", t.id),
            });
        }
        if !crate::http::is_host_name(&t.domain) {
            return Err(RefError {
                offset: None,
                key: at("domain"),
                message: format!("{:?} is not a domain name", t.domain),
            });
        }
        let mut trunk_sources = HashSet::new();
        for (i, tr) in t.trunks.iter().enumerate().filter(|(_, tr)| !tr.retired) {
            if let Some(dr) = &tr.direct_routing {
                let fqdn = dr.fqdn.to_ascii_lowercase();
                if proxy_host(&fqdn).is_none() || fqdn.contains(':') {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].direct_routing.fqdn")),
                        message: format!("{:?} is not an FQDN: Direct Routing pairs an SBC by its DNS name (\"contoso.sbc.example\"), never an IP address", dr.fqdn),
                    });
                }
                if !dr_fqdns.insert(fqdn) {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].direct_routing.fqdn")),
                        message: format!("{:?} is another Direct Routing trunk's FQDN: Microsoft finds the tenant by it, so each customer has its own", dr.fqdn),
                    });
                }
                if dr.proxies.is_empty() || dr.proxies.len() > 8 {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].direct_routing.proxies")),
                        message: "a Direct Routing trunk needs 1 to 8 proxies (Microsoft's: sip, sip2 and sip3.pstnhub.microsoft.com)".into(),
                    });
                }
                if dr.sip_port == Some(0) {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].direct_routing.sip_port")),
                        message: "sip_port is the port paired in the tenant (1–65535; Microsoft's default 5061), or left out for the [sip.tls] listen port".into(),
                    });
                }
                if let Some(p) = dr.proxies.iter().find(|p| proxy_host(p).is_none()) {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].direct_routing.proxies")),
                        message: format!("{p:?} is not a proxy: write its DNS name, with a port when not 5061 (\"sip.pstnhub.microsoft.com\")"),
                    });
                }
                let extra = [
                    ("allow", !tr.allow.is_empty()),
                    ("username", tr.username.is_some()),
                    ("probe", tr.probe.is_some()),
                    ("outbound", tr.outbound.is_some()),
                ];
                if let Some((k, _)) = extra.iter().find(|(_, set)| *set) {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].{k}")),
                        message: format!("a Direct Routing trunk has no {k}: Microsoft's proxies are its sources and targets"),
                    });
                }
            }
            for ip in &tr.allow {
                if !trunk_sources.insert(*ip) || !sources.insert(*ip) {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].allow")),
                        message: format!("source {ip} already belongs to another trunk: a call's tenant and trunk are found by its source"),
                    });
                }
            }
            match (&tr.username, &tr.password) {
                (Some(u), Some(p)) => {
                    let ok_user = !u.is_empty()
                        && u.len() <= 64
                        && u.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                    if !ok_user || !trunk_users.insert(u.to_ascii_lowercase()) {
                        return Err(RefError {
                            offset: None,
                            key: at(&format!("trunks[{i}].username")),
                            message: format!("{u:?}: a trunk's username is 1–64 letters, digits, '-', '_' or '.', and no other trunk's"),
                        });
                    }
                    if p.0.chars().count() < 12 {
                        return Err(RefError {
                            offset: None,
                            key: at(&format!("trunks[{i}].password")),
                            message: "a trunk's password needs at least 12 characters".into(),
                        });
                    }
                }
                (None, None) if tr.allow.is_empty() && tr.direct_routing.is_none() => {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].allow")),
                        message: "a trunk needs source addresses (allow), a digest username and password, or both".into(),
                    });
                }
                (None, None) => {}
                _ => {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].username")),
                        message: "give a trunk both username and password, or neither".into(),
                    });
                }
            }
            if let Some(p) = &tr.probe {
                if trunk_target(p).is_none() {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].probe")),
                        message: format!("{p:?} is not a probe target: write sip: and the trunk's IP address or DNS name, with a port when not 5060 (\"sip:192.0.2.10:5060\", \"sip:sbc.carrier.example\")"),
                    });
                }
            }
            if let Some(p) = &tr.outbound {
                if trunk_target(p).is_none() {
                    return Err(RefError {
                        offset: None,
                        key: at(&format!("trunks[{i}].outbound")),
                        message: format!("{p:?} is not an outbound target: write sip: and the trunk's IP address or DNS name, with a port when not 5060 (\"sip:192.0.2.10:5060\", \"sip:sbc.carrier.example\")"),
                    });
                }
            }
            if !(1..=3600).contains(&tr.probe_every()) {
                return Err(RefError {
                    offset: None,
                    key: at(&format!("trunks[{i}].probe_seconds")),
                    message: "probe_seconds must be between 1 and 3600".into(),
                });
            }
            if tr.max_calls == 0 {
                return Err(RefError {
                    offset: None,
                    key: at(&format!("trunks[{i}].max_calls")),
                    message: "max_calls must be at least 1".into(),
                });
            }
        }
        let mut queues = HashSet::new();
        for (i, q) in t.queues.iter().enumerate() {
            if !queues.insert(q.name.as_str()) {
                return Err(RefError {
                    offset: None,
                    key: at(&format!("queues[{i}].name")),
                    message: format!("queue {:?} is declared twice", q.name),
                });
            }
            if q.alert_seconds == 0 || q.alert_seconds > 600 {
                return Err(RefError {
                    offset: None,
                    key: at(&format!("queues[{i}].alert_seconds")),
                    message: "alert_seconds must be between 1 and 600".into(),
                });
            }
        }
        let attendants: HashSet<&str> = t.attendants.iter().map(|a| a.name.as_str()).collect();
        if attendants.len() != t.attendants.len() {
            return Err(RefError {
                offset: None,
                key: at("attendants"),
                message: "an attendant name is used twice".into(),
            });
        }
        let target = |queue: &Option<Spanned<String>>,
                      attendant: &Option<Spanned<String>>,
                      key: String|
         -> Result<(), RefError> {
            match (queue, attendant) {
                (Some(q), None) if !queues.contains(q.get_ref().as_str()) => Err(RefError {
                    offset: Some(q.span().start),
                    key: format!("{key}.queue"),
                    message: format!(
                        "no queue {:?} in tenant {:?}: declare it under [[tenants.queues]]",
                        q.get_ref(),
                        t.id
                    ),
                }),
                (None, Some(a)) if !attendants.contains(a.get_ref().as_str()) => Err(RefError {
                    offset: Some(a.span().start),
                    key: format!("{key}.attendant"),
                    message: format!(
                        "no attendant {:?} in tenant {:?}: declare it under [[tenants.attendants]]",
                        a.get_ref(),
                        t.id
                    ),
                }),
                (Some(_), None) | (None, Some(_)) => Ok(()),
                _ => Err(RefError {
                    offset: None,
                    key,
                    message: "name exactly one of queue or attendant".into(),
                }),
            }
        };
        // A route: an expert group that exists, or an outside number the toll rules allow,
        // alone; else a queue or an attendant.
        let spec_target = |to: &TargetSpec, key: String| -> Result<(), RefError> {
            let named = [
                to.queue.is_some(),
                to.attendant.is_some(),
                to.expert.is_some(),
                to.number.is_some(),
                to.agent.is_some(),
            ];
            if named.iter().filter(|x| **x).count() > 1 {
                return Err(RefError {
                    offset: None,
                    key,
                    message: "name exactly one of queue, attendant, expert, number or agent".into(),
                });
            }
            if let Some(a) = &to.agent {
                let known = t
                    .agents
                    .iter()
                    .any(|x| x.upn.eq_ignore_ascii_case(a.get_ref()));
                return match known {
                    true => Ok(()),
                    false => Err(RefError {
                        offset: Some(a.span().start),
                        key: format!("{key}.agent"),
                        message: format!(
                            "no agent {:?} in tenant {:?}: declare them under [[tenants.agents]]",
                            a.get_ref(),
                            t.id
                        ),
                    }),
                };
            }
            if let Some(n) = &to.number {
                let why = match &t.outbound {
                    None => Some(
                        "an outside number needs [tenants.outbound] (its trunk and toll rules)"
                            .to_owned(),
                    ),
                    Some(o) => o.permits(n.get_ref()).err(),
                };
                return match why {
                    Some(why) => Err(RefError {
                        offset: Some(n.span().start),
                        key: format!("{key}.number"),
                        message: why,
                    }),
                    None => Ok(()),
                };
            }
            match &to.expert {
                None => target(&to.queue, &to.attendant, key),
                Some(e) if !t.experts.iter().any(|g| g.name == *e.get_ref()) => Err(RefError {
                    offset: Some(e.span().start),
                    key: format!("{key}.expert"),
                    message: format!(
                        "no expert group {:?} in tenant {:?}: declare it under [[tenants.experts]]",
                        e.get_ref(),
                        t.id
                    ),
                }),
                Some(_) => Ok(()),
            }
        };
        // A schedule that exists, and after-hours routes that need one.
        let hours = |schedule: &Option<Spanned<String>>,
                     closed: &Option<TargetSpec>,
                     holiday: &Option<TargetSpec>,
                     key: String|
         -> Result<(), RefError> {
            if let Some(s) = schedule {
                if !t.schedules.iter().any(|x| x.name == *s.get_ref()) {
                    return Err(RefError {
                        offset: Some(s.span().start),
                        key: format!("{key}.schedule"),
                        message: format!(
                            "no schedule {:?} in tenant {:?}: declare it under [[tenants.schedules]]",
                            s.get_ref(),
                            t.id
                        ),
                    });
                }
            }
            for (name, to) in [("closed", closed), ("holiday", holiday)] {
                let Some(to) = to else { continue };
                if schedule.is_none() {
                    return Err(RefError {
                        offset: None,
                        key: format!("{key}.{name}"),
                        message: format!(
                            "{name} needs a schedule: name the opening hours in schedule"
                        ),
                    });
                }
                spec_target(to, format!("{key}.{name}"))?;
            }
            Ok(())
        };
        for (i, n) in t.numbers.iter().enumerate() {
            if !numbers.insert(n.number.as_str()) {
                return Err(RefError {
                    offset: None,
                    key: at("numbers"),
                    message: format!("number {} is mapped twice", n.number),
                });
            }
            target(&n.queue, &n.attendant, at(&format!("numbers[{i}]")))?;
            hours(
                &n.schedule,
                &n.closed,
                &n.holiday,
                at(&format!("numbers[{i}]")),
            )?;
        }
        let mut schedules = HashSet::new();
        for (i, s) in t.schedules.iter().enumerate() {
            let key = |k: &str| at(&format!("schedules[{i}].{k}"));
            if !is_short_name(&s.name) || !schedules.insert(s.name.as_str()) {
                return Err(RefError {
                    offset: None,
                    key: key("name"),
                    message: format!(
                        "{:?}: a schedule needs a name of its own (1–64 letters, digits, '-' or '_')",
                        s.name
                    ),
                });
            }
            if s.weekdays.is_some()
                && [&s.mon, &s.tue, &s.wed, &s.thu, &s.fri]
                    .iter()
                    .all(|d| d.is_some())
            {
                return Err(RefError {
                    offset: None,
                    key: key("weekdays"),
                    message: "every weekday has hours of its own: weekdays would never apply"
                        .into(),
                });
            }
            if !s.ever_open() {
                tracing::warn!(schedule = %s.name, tenant = %t.id, "this schedule has no opening hours: its numbers are always closed");
            }
        }
        if let Some(o) = &t.outbound {
            let bad = |k: &str, message: String| RefError {
                offset: None,
                key: at(&format!("outbound.{k}")),
                message,
            };
            match t.trunks.iter().find(|tr| tr.name == o.trunk && !tr.retired) {
                None => {
                    return Err(bad(
                        "trunk",
                        format!("{:?} is not a trunk of this tenant", o.trunk),
                    ))
                }
                Some(tr) if !tr.places_calls() => {
                    return Err(bad("trunk", format!("trunk {:?} has no outbound (or probe) target to send calls to: add outbound = \"sip:IP:PORT\" to it", o.trunk)))
                }
                Some(_) => {}
            }
            for (k, list) in [("allow", &o.allow), ("deny", &o.deny)] {
                if let Some(p) = list.iter().find(|p| !e164_prefix(p)) {
                    return Err(bad(k, format!("{p:?} is not an E.164 prefix: + and up to 15 digits (\"+44\", \"+1900\")")));
                }
            }
            if !(1..=1000).contains(&o.max_per_hour) {
                return Err(bad(
                    "max_per_hour",
                    "max_per_hour must be between 1 and 1000".into(),
                ));
            }
            if o.tenant_max_per_hour
                .is_some_and(|m| !(1..=100_000).contains(&m))
            {
                return Err(bad(
                    "tenant_max_per_hour",
                    "tenant_max_per_hour must be between 1 and 100000, or left out".into(),
                ));
            }
            if o.max_concurrent.is_some_and(|m| !(1..=10_000).contains(&m)) {
                return Err(bad(
                    "max_concurrent",
                    "max_concurrent must be between 1 and 10000, or left out".into(),
                ));
            }
            if let Some(c) = &o.caller_id {
                if !e164_prefix(c) || c.len() < 7 {
                    return Err(bad("caller_id", format!("{c:?} is not an E.164 number")));
                }
            }
        }
        for (i, q) in t.queues.iter().enumerate() {
            let key = |k: &str| at(&format!("queues[{i}].{k}"));
            if let Some(o) = &q.overflow {
                spec_target(o, key("overflow"))?;
            }
            if let Some(o) = &q.max_wait_overflow {
                spec_target(o, key("max_wait_overflow"))?;
            }
            if let Some(o) = &q.no_agents {
                spec_target(o, key("no_agents"))?;
            }
            if let Some(r) = &q.missed_reason {
                let n = r.chars().count();
                if !(1..=64).contains(&n) || r.chars().any(char::is_control) || r.trim().is_empty()
                {
                    return Err(RefError {
                        offset: None,
                        key: key("missed_reason"),
                        message: "missed_reason must be 1 to 64 characters, not all spaces, with no control characters (or left out: \"missed call\")".into(),
                    });
                }
            }
            if q.announce_seconds.is_some_and(|a| !(5..=3600).contains(&a)) {
                return Err(RefError {
                    offset: None,
                    key: key("announce_seconds"),
                    message: "announce_seconds must be between 5 and 3600".into(),
                });
            }
            if let Some(cb) = &q.callback {
                let bad = |what: &str| {
                    RefError {
                    offset: None,
                    key: if what == "when" {
                        key("callback")
                    } else {
                        key(&format!("callback.{what}"))
                    },
                    message: match what {
                        "after_seconds" => "after_seconds must be between 1 and 86400, or left out; with position, the callback is offered when either is reached".into(),
                        "position" => "position must be between 1 and 10000, or left out".into(),
                        "attempts" => "attempts must be between 1 and 10".into(),
                        "retry_seconds" => "retry_seconds must be between 10 and 86400".into(),
                        "ring_seconds" => "ring_seconds must be between 5 and 120".into(),
                        "expire_minutes" => "expire_minutes must be between 1 and 1440".into(),
                        "on_overflow" => "on_overflow offers the callback when the queue overflows: set max_size or max_wait_seconds too".into(),
                        _ => "callback: name after_seconds or position (or both), or set on_overflow".into(),
                    },
                }
                };
                if cb.after_seconds.is_none() && cb.position.is_none() && !cb.on_overflow {
                    return Err(bad("when"));
                }
                if cb.on_overflow && q.max_size.is_none() && q.max_wait_seconds.is_none() {
                    return Err(bad("on_overflow"));
                }
                if cb.after_seconds.is_some_and(|s| !(1..=86_400).contains(&s)) {
                    return Err(bad("after_seconds"));
                }
                if cb.position.is_some_and(|p| !(1..=10_000).contains(&p)) {
                    return Err(bad("position"));
                }
                if !(1..=10).contains(&cb.attempts) {
                    return Err(bad("attempts"));
                }
                if !(10..=86_400).contains(&cb.retry_seconds) {
                    return Err(bad("retry_seconds"));
                }
                if !(5..=120).contains(&cb.ring_seconds) {
                    return Err(bad("ring_seconds"));
                }
                if !(1..=1440).contains(&cb.expire_minutes) {
                    return Err(bad("expire_minutes"));
                }
            }
            if !(q.service_level_target > 0.0 && q.service_level_target <= 100.0) {
                return Err(RefError {
                    offset: None,
                    key: key("service_level_target"),
                    message: "service_level_target is a percent: more than 0, at most 100".into(),
                });
            }
            let mut codes = HashSet::new();
            for d in &q.dispositions {
                let fine = !d.trim().is_empty()
                    && d.chars().count() <= 64
                    && !d.chars().any(char::is_control);
                if !fine || !codes.insert(d.to_lowercase()) || q.dispositions.len() > 100 {
                    return Err(RefError {
                        offset: None,
                        key: key("dispositions"),
                        message: format!("{d:?}: a disposition code is 1–64 printable characters, each once, at most 100 codes"),
                    });
                }
            }
            if q.max_wait_seconds == Some(0) {
                return Err(RefError {
                    offset: None,
                    key: key("max_wait_seconds"),
                    message: "max_wait_seconds must be at least 1 (leave it out for no limit)"
                        .into(),
                });
            }
        }
        for (i, a) in t.attendants.iter().enumerate() {
            let key = |k: &str| at(&format!("attendants[{i}].{k}"));
            spec_target(&a.default, key("default"))?;
            hours(
                &a.schedule,
                &a.closed,
                &a.holiday,
                at(&format!("attendants[{i}]")),
            )?;
            for (digit, to) in &a.options {
                if digit.len() != 1 || !digit.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RefError {
                        offset: None,
                        key: key("options"),
                        message: format!("option {digit:?} is not a key 0–9 (* repeats the greeting, # goes back)"),
                    });
                }
                spec_target(to, key(&format!("options.{digit}")))?;
            }
            if !(1..=60).contains(&a.timeout_seconds) || a.retries > 9 {
                return Err(RefError {
                    offset: None,
                    key: key("timeout_seconds"),
                    message: "timeout_seconds must be 1–60 and retries 0–9".into(),
                });
            }
        }
        let mut experts = HashSet::new();
        for (i, g) in t.experts.iter().enumerate() {
            let key = |k: &str| at(&format!("experts[{i}].{k}"));
            let lower = g.name.to_ascii_lowercase();
            let clash = queues.iter().any(|q| q.eq_ignore_ascii_case(&g.name))
                || attendants.iter().any(|a| a.eq_ignore_ascii_case(&g.name));
            if clash || !experts.insert(lower) {
                return Err(RefError {
                    offset: None,
                    key: key("name"),
                    message: format!("{:?} is already a queue's, an attendant's or another expert group's name: transfer targets are found by name", g.name),
                });
            }
            if !(1..=5).contains(&g.min_level) || g.skill.trim().is_empty() {
                return Err(RefError {
                    offset: None,
                    key: key("min_level"),
                    message: "an expert group names a skill and a min_level from 1 to 5".into(),
                });
            }
            let skill = g.skill.to_lowercase();
            if !g.from_graph
                && !t
                    .agents
                    .iter()
                    .any(|a| a.skills.get(&skill).is_some_and(|l| *l >= g.min_level))
            {
                tracing::warn!(tenant = %t.id, group = %g.name, skill = %skill, "no agent has this skill at this level: transfers to the group will find nobody");
            }
        }
        let mut upns = HashSet::new();
        for (i, a) in t.agents.iter().enumerate() {
            if a.object_id.as_deref().is_some_and(|o| !crate::is_guid(o)) {
                return Err(RefError {
                    offset: None,
                    key: at(&format!("agents[{i}].object_id")),
                    message: "object_id must be an Entra object id (a GUID)".into(),
                });
            }
            if !a.upn.contains('@') || !upns.insert(a.upn.to_lowercase()) {
                return Err(RefError {
                    offset: None,
                    key: at(&format!("agents[{i}].upn")),
                    message: format!(
                        "{:?} must be a sign-in name (user@domain), once per tenant",
                        a.upn
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("router.toml"))
    }

    const GOOD: &str = r#"
[sip]
listen = "127.0.0.1:5080"

[[tenants]]
id = "contoso"
domain = "contoso.example"

[[tenants.trunks]]
name = "carrier"
allow = ["127.0.0.1"]

[[tenants.numbers]]
number = "+18005550100"
queue = "general"

[[tenants.queues]]
name = "general"
skills = { Billing = 3 }

[[tenants.agents]]
upn = "AdeleV@contoso.example"
skills = { billing = 5 }
"#;

    #[test]
    fn a_contact_center_is_read_with_its_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.sip.listen, Some("127.0.0.1:5080".parse().expect("addr")));
        let t = &c.tenants[0];
        assert_eq!(t.trunks[0].max_calls, 100);
        assert_eq!(t.queues[0].strategy, Strategy::LongestIdle);
        assert_eq!(t.queues[0].alert_seconds, 15);
        assert_eq!(
            t.queues[0].skills.get("billing"),
            Some(&3),
            "names without case"
        );
        assert!(t.queues[0].not_ready_after_missed);
    }

    fn invalid(text: &str) -> (usize, Option<String>, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a refusal with a line, got {other:?}"),
        }
    }

    /// A refused cross-reference that has no line of its own: its key and message.
    fn reference(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Reference { key, message, .. }) => (key, message),
            other => panic!("expected a refused reference, got {other:?}"),
        }
    }

    #[test]
    fn direct_routing_trunks_name_an_fqdn_and_proxies_and_nothing_of_other_trunks() {
        let dir = tempfile::tempdir().expect("dir");
        let tls = sbc_tls(dir.path(), &["*.sbc.example", "sbc.example"], true);
        let dr = |extra: &str| {
            GOOD.replace("allow = [\"127.0.0.1\"]", extra)
                .replace("[[tenants]]", &format!("{tls}\n[[tenants]]"))
        };
        let c = parse(&dr(
            "[tenants.trunks.direct_routing]\nfqdn = \"Contoso.SBC.example\"",
        ))
        .expect("a Direct Routing trunk");
        let d = c.tenants[0].trunks[0].direct_routing.as_ref().expect("dr");
        assert_eq!(
            d.proxy_hosts(),
            TEAMS_PROXIES.map(|h| (h.to_owned(), 5061)).to_vec()
        );
        assert!(c.tenants[0].trunks[0].places_calls());
        assert_eq!(d.sip_port, None, "the [sip.tls] listen port");
        assert!(
            !d.media_bypass,
            "Microsoft's media processors relay unless told"
        );
        let c = parse(&dr(
            "[tenants.trunks.direct_routing]\nfqdn = \"sbc.example\"\nsip_port = 5061\nmedia_bypass = true",
        ))
        .expect("a paired port, media bypass");
        let d = c.tenants[0].trunks[0].direct_routing.as_ref().expect("dr");
        assert_eq!(d.sip_port, Some(5061));
        assert!(d.media_bypass);
        // Its FQDN is a DNS name, never an IP address; proxies likewise.
        for (bad, key) in [
            ("fqdn = \"192.0.2.1\"", "fqdn"),
            ("fqdn = \"sbc\"", "fqdn"),
            ("fqdn = \"sbc.example:5061\"", "fqdn"),
            ("fqdn = \"sbc.example\"\nproxies = []", "proxies"),
            (
                "fqdn = \"sbc.example\"\nproxies = [\"52.112.0.1\"]",
                "proxies",
            ),
            (
                "fqdn = \"sbc.example\"\nproxies = [\"sip.example:0\"]",
                "proxies",
            ),
            ("fqdn = \"sbc.example\"\nsip_port = 0", "sip_port"),
        ] {
            let (k, msg) = reference(&dr(&format!("[tenants.trunks.direct_routing]\n{bad}")));
            assert_eq!(
                k,
                format!("tenants[0].trunks[0].direct_routing.{key}"),
                "{bad}: {msg}"
            );
        }
        // No probe, outbound or digest user: the proxies are all of that.
        let (k, msg) = reference(&dr(
            "probe = \"sip:127.0.0.1\"\n[tenants.trunks.direct_routing]\nfqdn = \"sbc.example\"",
        ));
        assert_eq!(k, "tenants[0].trunks[0].probe", "{msg}");
        // Nor source addresses: a request's tenant is found by the FQDN it names.
        let (k, msg) = reference(&dr(
            "allow = [\"127.0.0.1\"]\n[tenants.trunks.direct_routing]\nfqdn = \"sbc.example\"",
        ));
        assert_eq!(k, "tenants[0].trunks[0].allow", "{msg}");
        // Two tenants (carrier hosting) each have their own FQDN.
        let two = format!(
            "{}\n[[tenants]]\nid = \"fabrikam\"\ndomain = \"fabrikam.example\"\n[[tenants.trunks]]\nname = \"teams\"\n[tenants.trunks.direct_routing]\nfqdn = \"{{}}\"\n",
            dr("[tenants.trunks.direct_routing]\nfqdn = \"contoso.sbc.example\"")
        );
        parse(&two.replace("{}", "fabrikam.sbc.example")).expect("two customers");
        let (k, msg) = reference(&two.replace("{}", "CONTOSO.sbc.example"));
        assert_eq!(k, "tenants[1].trunks[0].direct_routing.fqdn", "{msg}");
    }

    /// A `[sip.tls]` section whose certificate, written in `dir`, names `names`.
    fn sbc_tls(dir: &Path, names: &[&str], mutual: bool) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("names")
        .self_signed(&key)
        .expect("certificate");
        let file = dir.join(format!("{}.pem", names.join("+").replace('*', "star")));
        std::fs::write(&file, cert.pem()).expect("write");
        format!(
            "[sip.tls]\nlisten = \"127.0.0.1:5061\"\ncertificate = {:?}\nkey = \"sbc.key\"\nmutual = {mutual}\n",
            file.display().to_string()
        )
    }

    #[test]
    fn a_direct_routing_trunk_needs_mutual_tls_with_a_certificate_naming_its_fqdn() {
        let dir = tempfile::tempdir().expect("dir");
        let dr = |tls: &str, fqdn: &str| {
            GOOD.replace(
                "allow = [\"127.0.0.1\"]",
                &format!("[tenants.trunks.direct_routing]\nfqdn = \"{fqdn}\""),
            )
            .replace("[[tenants]]", &format!("{tls}\n[[tenants]]"))
        };
        let refused = |text: &str| match parse(text) {
            Err(ConfigError::Value(msg)) => msg,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let one = sbc_tls(dir.path(), &["contoso.sbc.example"], true);
        parse(&dr(&one, "contoso.sbc.example")).expect("the certificate names it");
        parse(&dr(&one, "Contoso.SBC.example")).expect("names have no case");
        let msg = refused(&dr("", "contoso.sbc.example"));
        assert!(
            msg.starts_with("tenants[0].trunks[0].direct_routing: ")
                && msg.contains("needs [sip.tls]")
                && msg.contains("contoso.sbc.example"),
            "{msg}"
        );
        let msg = refused(&dr(
            &sbc_tls(dir.path(), &["contoso.sbc.example"], false),
            "contoso.sbc.example",
        ));
        assert!(msg.contains("mutual = true"), "{msg}");
        let msg = refused(&dr(&one, "fabrikam.sbc.example"));
        assert!(
            msg.contains("does not name fabrikam.sbc.example") && msg.contains("*.sbc.example"),
            "{msg}"
        );
        let msg = refused(&dr(
            &one.replace("contoso.sbc.example.pem", "gone.pem"),
            "contoso.sbc.example",
        ));
        assert!(msg.contains("gone.pem"), "{msg}");
        // Other trunks need no TLS.
        parse(GOOD).expect("a carrier trunk alone");
    }

    #[test]
    fn bad_values_are_refused_at_their_line() {
        let (line, _, msg) = invalid(&GOOD.replace("billing = 5", "billing = 7"));
        assert_eq!(line, 23, "{msg}");
        assert!(msg.contains("levels go from 1 to 5"), "{msg}");
        let (line, _, msg) = invalid(&GOOD.replace("\"+18005550100\"", "\"18005550100\""));
        assert_eq!(line, 14, "{msg}");
        assert!(msg.contains("E.164"), "{msg}");
        let (_, _, msg) = invalid(&GOOD.replace(
            "name = \"general\"",
            "name = \"general\"\nstrategy = \"fastest\"",
        ));
        assert!(msg.contains("fastest"), "{msg}");
        let (_, _, msg) =
            invalid(&GOOD.replace("name = \"carrier\"", "name = \"carrier\"\nallow_all = true"));
        assert!(msg.contains("allow_all"), "{msg}");
    }

    #[test]
    fn a_number_for_a_missing_queue_names_the_reference() {
        let (line, key, msg) = invalid(&GOOD.replace("queue = \"general\"", "queue = \"sales\""));
        assert_eq!(line, 15, "{msg}");
        assert_eq!(key.as_deref(), Some("tenants[0].numbers[0].queue"));
        assert!(msg.contains("no queue \"sales\""), "{msg}");
    }

    #[test]
    fn attendants_and_queues_may_speak_a_language_of_their_own() {
        let menu = "\n[[tenants.attendants]]\nname = \"main\"\ngreeting = \"demo-main-menu\"\nlanguage = \"ZH-cn\"\ndefault = { queue = \"general\" }\n";
        let c = parse(&format!("{GOOD}{menu}")).expect("a Chinese attendant");
        let t = &c.tenants[0];
        assert_eq!(t.language, "en", "the tenant's default");
        assert_eq!(t.attendants[0].language.as_deref(), Some("zh-CN"));
        assert_eq!(t.queues[0].language, None, "none: the caller's so far");
        let q = GOOD.replace(
            "name = \"general\"\n",
            "name = \"general\"\nlanguage = \"en\"\n",
        );
        assert_eq!(
            parse(&q).expect("valid").tenants[0].queues[0]
                .language
                .as_deref(),
            Some("en")
        );
        let (line, key, msg) = invalid(&GOOD.replace(
            "name = \"general\"\n",
            "name = \"general\"\nlanguage = \"fr\"\n",
        ));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].queues[0].language"),
            "{msg}"
        );
        assert!(msg.contains("en, zh-CN"), "{msg}");
        assert_eq!(line, 19, "{msg}");
    }

    #[test]
    fn attendants_are_checked_like_numbers() {
        let menu = "\n[[tenants.attendants]]\nname = \"main\"\ngreeting = \"demo-main-menu\"\ndefault = { queue = \"general\" }\noptions = { 1 = { queue = \"general\" } }\n";
        let good =
            format!("{GOOD}{menu}").replace("queue = \"general\"\n", "attendant = \"main\"\n");
        parse(&good).expect("a number to an attendant");
        let (_, key, msg) =
            invalid(&good.replace("attendant = \"main\"\n", "attendant = \"side\"\n"));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].numbers[0].attendant"),
            "{msg}"
        );
        let (key, msg) = reference(&good.replace("options = { 1 =", "options = { 12 ="));
        assert_eq!(key, "tenants[0].attendants[0].options", "{msg}");
        let (key, msg) =
            reference(&good.replace("default = { queue = \"general\" }", "default = {}"));
        assert_eq!(key, "tenants[0].attendants[0].default", "{msg}");
        assert!(msg.contains("exactly one"), "{msg}");
        // An expert group as a route: it must exist, and stand alone.
        let experts = "\n[[tenants.experts]]\nname = \"billing-experts\"\nskill = \"billing\"\n";
        let with = |route: &str| {
            format!("{good}{experts}").replace(
                "options = { 1 = { queue = \"general\" } }",
                &format!("options = {{ 1 = {route} }}"),
            )
        };
        parse(&with("{ expert = \"billing-experts\" }")).expect("an expert route");
        let (_, key, msg) = invalid(&with("{ expert = \"nobody\" }"));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].attendants[0].options.1.expert"),
            "{msg}"
        );
        let (key, msg) = reference(&with(
            "{ expert = \"billing-experts\", queue = \"general\" }",
        ));
        assert_eq!(key, "tenants[0].attendants[0].options.1", "{msg}");
        // An agent as a route: one of the tenant's, whatever the case of the name, alone.
        parse(&with("{ agent = \"adelev@contoso.example\" }")).expect("an agent route");
        let (_, key, msg) = invalid(&with("{ agent = \"nobody@contoso.example\" }"));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].attendants[0].options.1.agent"),
            "{msg}"
        );
        assert!(msg.contains("[[tenants.agents]]"), "{msg}");
        let (key, msg) = reference(&with(
            "{ agent = \"AdeleV@contoso.example\", queue = \"general\" }",
        ));
        assert_eq!(key, "tenants[0].attendants[0].options.1", "{msg}");
    }

    #[test]
    fn a_queue_s_max_wait_route_is_checked_like_its_overflow() {
        let with = |route: &str| {
            GOOD.replace(
                "name = \"general\"\n",
                &format!(
                    "name = \"general\"\nmax_wait_seconds = 60\nmax_wait_overflow = {route}\n"
                ),
            )
        };
        let c = parse(&with("{ queue = \"general\" }")).expect("a max-wait route");
        assert!(c.tenants[0].queues[0].max_wait_overflow.is_some());
        let (_, key, msg) = invalid(&with("{ queue = \"sales\" }"));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].queues[0].max_wait_overflow.queue"),
            "{msg}"
        );
    }

    #[test]
    fn schedules_and_trunk_probes_are_checked() {
        let hours = "\n[[tenants.schedules]]\nname = \"office\"\ntimezone = \"Europe/London\"\nweekdays = [\"09:00-17:00\"]\n";
        let with = |number: &str| {
            format!("{GOOD}{hours}").replace(
                "queue = \"general\"\n\n",
                &format!("queue = \"general\"\n{number}\n\n"),
            )
        };
        let c = parse(&with(
            "schedule = \"office\"\nclosed = { queue = \"general\" }",
        ))
        .expect("a number with opening hours");
        assert_eq!(c.tenants[0].schedules[0].timezone.name, "Europe/London");
        let (_, key, msg) = invalid(&with("schedule = \"shop\""));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].numbers[0].schedule"),
            "{msg}"
        );
        let (key, msg) = reference(&with("closed = { queue = \"general\" }"));
        assert_eq!(key, "tenants[0].numbers[0].closed", "{msg}");
        assert!(msg.contains("needs a schedule"), "{msg}");
        let (_, key, msg) = invalid(&with(
            "schedule = \"office\"\nclosed = { queue = \"night\" }",
        ));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].numbers[0].closed.queue"),
            "{msg}"
        );
        let (_, _, msg) = invalid(&with("").replace("Europe/London", "Europe/Londn"));
        assert!(msg.contains("not a time zone"), "{msg}");
        // Trunk probes: sip: and an IP address or a DNS name, a sane interval.
        let probe = |p: &str| {
            GOOD.replace(
                "allow = [\"127.0.0.1\"]",
                &format!("allow = [\"127.0.0.1\"]\n{p}"),
            )
        };
        let c = parse(&probe("probe = \"sip:127.0.0.1\"")).expect("a probe");
        assert_eq!(c.tenants[0].trunks[0].probe_every(), 30);
        let dir = tempfile::tempdir().expect("dir");
        let tls = sbc_tls(dir.path(), &["sbc.contoso.example"], true);
        let dr = parse(
            &GOOD
                .replace(
                    "allow = [\"127.0.0.1\"]",
                    "[tenants.trunks.direct_routing]\nfqdn = \"sbc.contoso.example\"",
                )
                .replace("[[tenants]]", &format!("{tls}\n[[tenants]]")),
        )
        .expect("a Direct Routing trunk");
        assert_eq!(
            dr.tenants[0].trunks[0].probe_every(),
            60,
            "an OPTIONS a minute"
        );
        let set = parse(&probe("probe = \"sip:127.0.0.1\"\nprobe_seconds = 5")).expect("valid");
        assert_eq!(set.tenants[0].trunks[0].probe_every(), 5);
        for (uri, want) in [
            ("sip:127.0.0.1", Some("127.0.0.1:5060")),
            ("sip:[::1]:5070", Some("[::1]:5070")),
            ("sip:SBC.carrier.example", Some("sbc.carrier.example:5060")),
            (
                "sip:sbc.carrier.example:5080",
                Some("sbc.carrier.example:5080"),
            ),
            ("sip:carrier", None),
            ("sip:sbc.carrier.example:0", None),
            ("sip:bad host.example", None),
            ("sips:sbc.carrier.example", None),
        ] {
            assert_eq!(trunk_target(uri).as_deref(), want, "{uri}");
        }
        parse(&probe("probe = \"sip:sbc.carrier.example\"")).expect("a probe by name");
        let (key, msg) = reference(&probe("probe = \"sip:carrier\""));
        assert_eq!(key, "tenants[0].trunks[0].probe", "{msg}");
        let (key, msg) = reference(&probe("probe = \"sip:127.0.0.1\"\nprobe_seconds = 0"));
        assert_eq!(key, "tenants[0].trunks[0].probe_seconds", "{msg}");
        // The outbound target: its own, else the probe's; an address or a name too.
        let c = parse(&probe(
            "outbound = \"sip:127.0.0.1:5080\"\nprobe = \"sip:127.0.0.1\"",
        ))
        .expect("an outbound target");
        assert_eq!(
            c.tenants[0].trunks[0].outbound_address().as_deref(),
            Some("127.0.0.1:5080")
        );
        let c = parse(&probe("probe = \"sip:127.0.0.1\"")).expect("a probe");
        assert_eq!(
            c.tenants[0].trunks[0].outbound_address().as_deref(),
            Some("127.0.0.1:5060")
        );
        let (key, msg) = reference(&probe("outbound = \"sip:carrier\""));
        assert_eq!(key, "tenants[0].trunks[0].outbound", "{msg}");
        // Outside calls: a trunk with a target, E.164 prefixes, a sane cap.
        let outbound = |o: &str| {
            format!(
                "{}\n[tenants.outbound]\n{o}\n",
                probe("outbound = \"sip:127.0.0.1:5080\"")
            )
        };
        let c = parse(&outbound(
            "trunk = \"carrier\"\nallow = [\"+1\", \"+44\"]\ndeny = [\"+1900\"]",
        ))
        .expect("outside calls");
        let o = c.tenants[0].outbound.clone().expect("outbound");
        assert_eq!(o.max_per_hour, 60);
        assert_eq!(o.permits("+12065550100"), Ok(()));
        assert_eq!(o.permits("+442071234567"), Ok(()));
        assert!(o
            .permits("+19005550100")
            .is_err_and(|e| e.contains("denied")));
        assert!(o
            .permits("+33140000000")
            .is_err_and(|e| e.contains("allowed")));
        assert!(o.permits("12065550100").is_err_and(|e| e.contains("E.164")));
        assert!(o.permits("+1206;user=phone").is_err());
        for (o, key) in [
            ("trunk = \"pstn\"", "tenants[0].outbound.trunk"),
            (
                "trunk = \"carrier\"\nallow = [\"44\"]",
                "tenants[0].outbound.allow",
            ),
            (
                "trunk = \"carrier\"\ndeny = [\"+1-900\"]",
                "tenants[0].outbound.deny",
            ),
            (
                "trunk = \"carrier\"\nmax_per_hour = 0",
                "tenants[0].outbound.max_per_hour",
            ),
            (
                "trunk = \"carrier\"\ntenant_max_per_hour = 0",
                "tenants[0].outbound.tenant_max_per_hour",
            ),
            (
                "trunk = \"carrier\"\nmax_concurrent = 10001",
                "tenants[0].outbound.max_concurrent",
            ),
            (
                "trunk = \"carrier\"\ncaller_id = \"contoso\"",
                "tenants[0].outbound.caller_id",
            ),
        ] {
            let (k, msg) = reference(&outbound(o));
            assert_eq!(k, key, "{o}: {msg}");
        }
        // A trunk with no target to send calls to cannot carry them.
        let (k, msg) = reference(&format!(
            "{GOOD}\n[tenants.outbound]\ntrunk = \"carrier\"\n"
        ));
        assert_eq!(k, "tenants[0].outbound.trunk", "{msg}");
        assert!(msg.contains("no outbound"), "{msg}");
        // Callbacks: when (a wait or a place, or both), and sane attempts and times.
        let callback = |cb: &str| {
            GOOD.replace(
                "[[tenants.queues]]\nname = \"general\"\n",
                &format!("[[tenants.queues]]\nname = \"general\"\ncallback = {{ {cb} }}\n"),
            )
        };
        let c = parse(&callback("after_seconds = 60")).expect("a callback");
        let cb = c.tenants[0].queues[0].callback.clone().expect("callback");
        assert_eq!(
            (
                cb.attempts,
                cb.retry_seconds,
                cb.ring_seconds,
                cb.expire_minutes
            ),
            (3, 120, 30, 240)
        );
        for (cb, key) in [
            ("attempts = 2", "tenants[0].queues[0].callback"),
            ("position = 0", "tenants[0].queues[0].callback.position"),
            (
                "position = 3, attempts = 0",
                "tenants[0].queues[0].callback.attempts",
            ),
            (
                "position = 3, retry_seconds = 5",
                "tenants[0].queues[0].callback.retry_seconds",
            ),
            (
                "position = 3, ring_seconds = 600",
                "tenants[0].queues[0].callback.ring_seconds",
            ),
            (
                "position = 3, expire_minutes = 0",
                "tenants[0].queues[0].callback.expire_minutes",
            ),
            (
                "after_seconds = 0",
                "tenants[0].queues[0].callback.after_seconds",
            ),
            // Offered at overflow only, in a queue that never overflows.
            (
                "on_overflow = true",
                "tenants[0].queues[0].callback.on_overflow",
            ),
        ] {
            let (k, msg) = reference(&callback(cb));
            assert_eq!(k, key, "{cb}: {msg}");
        }
        // A missed-call reason: some text, no control characters, at most 64 characters.
        for bad in ["\"  \"", "\"a\\u0007b\"", &format!("{:?}", "x".repeat(65))] {
            let (k, msg) = reference(&GOOD.replace(
                "[[tenants.queues]]\nname = \"general\"\n",
                &format!("[[tenants.queues]]\nname = \"general\"\nmissed_reason = {bad}\n"),
            ));
            assert_eq!(k, "tenants[0].queues[0].missed_reason", "{bad}: {msg}");
        }
        // At overflow only, in a queue with a longest wait.
        let c = parse(&GOOD.replace(
            "[[tenants.queues]]\nname = \"general\"\n",
            "[[tenants.queues]]\nname = \"general\"\nmax_wait_seconds = 60\ncallback = { on_overflow = true }\n",
        ))
        .expect("a callback at overflow");
        let cb = c.tenants[0].queues[0].callback.clone().expect("callback");
        assert!(cb.on_overflow && cb.after_seconds.is_none() && cb.position.is_none());
        let (_, key, msg) = invalid(&callback("position = 3, key = \"9\""));
        assert!(msg.contains("unknown field"), "{key:?} {msg}");
        let (k, msg) = reference(&GOOD.replace(
            "[[tenants.queues]]\nname = \"general\"\n",
            "[[tenants.queues]]\nname = \"general\"\nservice_level_target = 0.0\n",
        ));
        assert_eq!(k, "tenants[0].queues[0].service_level_target", "{msg}");
        // Digest trunks: both username and password, a password of some length, and a
        // password that Debug never shows; a trunk with neither addresses nor digest is refused.
        let digest = |d: &str| GOOD.replace("allow = [\"127.0.0.1\"]", d);
        let c = parse(&digest(
            "username = \"carrier-1\"\npassword = \"correct horse battery\"",
        ))
        .expect("a digest trunk");
        assert!(!format!("{:?}", c.tenants[0].trunks[0]).contains("horse"));
        let (key, msg) = reference(&digest("username = \"carrier-1\""));
        assert_eq!(key, "tenants[0].trunks[0].username", "{msg}");
        let (key, msg) = reference(&digest("username = \"carrier-1\"\npassword = \"short\""));
        assert_eq!(key, "tenants[0].trunks[0].password", "{msg}");
        let (key, msg) = reference(&digest("allow = []"));
        assert_eq!(key, "tenants[0].trunks[0].allow", "{msg}");
    }

    #[test]
    fn overflow_targets_priorities_and_waits_are_checked() {
        let (_, key, msg) = invalid(&GOOD.replace(
            "name = \"general\"",
            "name = \"general\"\noverflow = { queue = \"nowhere\" }",
        ));
        assert_eq!(
            key.as_deref(),
            Some("tenants[0].queues[0].overflow.queue"),
            "{msg}"
        );
        let (_, _, msg) = invalid(&GOOD.replace(
            "queue = \"general\"\n",
            "queue = \"general\"\npriority = 9\n",
        ));
        assert!(msg.contains("priority 9"), "{msg}");
        let (key, msg) = reference(&GOOD.replace(
            "name = \"general\"",
            "name = \"general\"\nmax_wait_seconds = 0",
        ));
        assert_eq!(key, "tenants[0].queues[0].max_wait_seconds", "{msg}");
    }

    #[test]
    fn cross_table_mistakes_are_refused() {
        let twice = format!("{GOOD}\n[[tenants]]\nid = \"contoso\"\ndomain = \"b.example\"\n");
        let e = parse(&twice).expect_err("one id, two tenants");
        assert!(
            matches!(&e, ConfigError::Reference { key, .. } if key == "tenants[1].id"),
            "{e}"
        );
        let shared = format!("{GOOD}\n[[tenants]]\nid = \"fabrikam\"\ndomain = \"fabrikam.example\"\n[[tenants.trunks]]\nname = \"x\"\nallow = [\"127.0.0.1\"]\n");
        let e = parse(&shared).expect_err("one source, two tenants");
        assert!(e.to_string().contains("another trunk"), "{e}");
    }
}
