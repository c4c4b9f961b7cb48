//! Typed payloads of the Switchboard routing service's API.
//!
//! The router (`switchboard-router`) serves these shapes under `/v1`; the agent engine
//! (`switchboard-agent`) reads them; the desktop UI gets them as TypeScript through `ts-rs`.
//! Keeping them in one small crate means a field renamed on one side is a compile error on the
//! other, not a blank screen.
//!
//! ```
//! use switchboard_api::{Health, StorageState};
//! let json = r#"{"status":"ok","version":"0.1.0","uptime_seconds":12,
//!   "storage":{"backend":"sqlite","state":"ok","detail":null}}"#;
//! let health: Health = serde_json::from_str(json).unwrap();
//! assert_eq!(health.storage.state, StorageState::Ok);
//! ```
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// `GET /v1/health`: is the service up, which version, how long, and is its storage usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Health {
    /// `ok` when every part works, `degraded` when storage does not.
    pub status: HealthStatus,
    /// The router's semantic version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// The storage backend and whether it answers.
    pub storage: StorageHealth,
}

/// Overall state in [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// Storage part of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct StorageHealth {
    /// `sqlite` today; `postgres` when scale-out lands.
    pub backend: String,
    pub state: StorageState,
    /// What went wrong, when `state` is not `ok`.
    pub detail: Option<String>,
}

/// Whether the storage answered a trivial query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum StorageState {
    Ok,
    Unavailable,
}

/// A tenant: one organisation served by this router (several share one service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Tenant {
    pub id: uuid::Uuid,
    /// Display name, e.g. "Contoso Support".
    pub name: String,
    /// The SIP domain / trunk host that selects this tenant for incoming calls.
    pub sip_domain: String,
    /// The Entra ID tenant id (GUID) whose users are this tenant's agents, if linked.
    pub entra_tenant_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub created_at: time::OffsetDateTime,
}

/// `POST /v1/tenants` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct NewTenant {
    /// 1 to 200 characters, not only spaces, tabs or line breaks.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^ \t\r\n]")
    )]
    pub name: String,
    /// The tenant's SIP domain: an RFC 1123 host name (letters, digits, inner hyphens).
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 253,
            pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
        )
    )]
    pub sip_domain: String,
    /// The organisation's Entra tenant id (a GUID in its 36-character form).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub entra_tenant_id: Option<String>,
}

/// One message on the `/v1/events` WebSocket, as JSON text frames tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum Event {
    /// First message after the upgrade: who answers.
    Hello {
        version: String,
        uptime_seconds: u64,
        /// Whether this router follows Teams presence for its clients (`[presence]`): a
        /// client that sends `watch` gets `presence` events; without it, clients read Graph
        /// themselves. Absent from older routers (false).
        #[serde(default)]
        presence: bool,
    },
    /// Sent every `events.heartbeat_seconds` so clients notice a dead link quickly.
    Heartbeat { uptime_seconds: u64 },
    /// A tenant was created.
    TenantCreated { tenant: Tenant },
    /// A tenant was deleted.
    TenantDeleted { id: uuid::Uuid },
    /// The service is shutting down (graceful stop); clients should reconnect with backoff.
    ShuttingDown,
    /// An agent's state changed (to the agent's organisation).
    AgentState { status: AgentStatus },
    /// Every queue's figures of a tenant, every few seconds (to its organisation).
    QueueFigures { queues: Vec<QueueFigures> },
    /// A watched user's Teams presence (sent once when watching starts, then on each change).
    /// Values are Graph's; ones a client does not know it shows as unknown.
    Presence {
        /// The user's Entra object id.
        id: String,
        availability: String,
        activity: String,
        /// The user's status message, when they set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_message: Option<String>,
    },
}

/// `POST /v1/agents/me/sip-credentials`: whose credentials. With `[auth] mode = "none"` the
/// router checks no tokens, so the body names the agent; with tokens the agent is the caller
/// and `agent`, when given, must be the caller's own UPN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AgentRef {
    /// The agent's user principal name (`adele@contoso.example`).
    #[serde(default)]
    pub agent: Option<String>,
}

/// SIP credentials the router issues to an agent: a random user name and password, shown
/// once and replaced on each request (the previous pair stops working). Register with them
/// at `registrar`; the router ties the registration to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SipCredentials {
    /// The agent these are for (UPN).
    pub agent: String,
    /// The agent's tenant (its id in the router's configuration).
    pub tenant: String,
    pub username: String,
    pub password: String,
    /// The SIP domain (and digest realm) to register in.
    pub domain: String,
    /// Where to send REGISTER: `sip:host:port`, with `;transport=tcp` for TCP, or
    /// `sips:host:port` for TLS.
    pub registrar: String,
}

/// An agent as the router's configuration knows them (`/v1/config/tenants/{tenant}/agents`):
/// who they are and their skills; their state is `GET /v1/agents/me`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AgentConfigView {
    /// The tenant (its id in the router's configuration).
    pub tenant: String,
    /// User principal name, compared without case.
    pub upn: String,
    pub name: String,
    /// Skills with proficiency 1–5.
    #[cfg_attr(feature = "typescript", ts(type = "Record<string, number>"))]
    pub skills: std::collections::BTreeMap<String, u8>,
    /// The agent's Entra object id, to follow their Teams presence.
    pub object_id: Option<String>,
    /// Their Teams phone number (E.164), where they are rung as an expert over Direct
    /// Routing when no Switchboard phone of theirs is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_number: Option<String>,
    /// The skills their Microsoft 365 profile lists (Graph `skills`, lower case), as the
    /// router last read them (with `[presence]`, for tenants with an expert group that has
    /// `from_graph`); read-only, set in Microsoft 365.
    #[serde(default)]
    pub graph_skills: Vec<String>,
    /// Where this came from: `file` (the configuration file) or `api` (changed through the
    /// API, kept in the store across restarts).
    pub source: String,
}

/// A queue's settings as `PUT /v1/config/tenants/{tenant}/queues/{name}` sets them and
/// `GET …/queues` shows them (with `name` and `source` there). Fields left out take the
/// configuration file's defaults (no overflow, no-agents or callback route): change a queue
/// by sending what `GET` shows with your changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// `longest_idle`, `round_robin`, `ring_all`, `fewest_calls`, `least_talk_time`,
    /// `linear`, `random` or `best_skill`.
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// The language callers hear prompts in from this queue on: `en` or `zh-CN`; none: the
    /// language they have been hearing (the tenant's, or an attendant's on the way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Skills an agent needs, each with its lowest level (1–5); none: every agent.
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(type = "Record<string, number>"))]
    pub skills: std::collections::BTreeMap<String, u8>,
    /// Seconds an agent's phone rings before the next is tried (1–600).
    #[serde(default = "default_alert")]
    pub alert_seconds: u64,
    #[serde(default)]
    pub wrap_up_seconds: u64,
    /// Callers waiting at most; more are refused.
    #[serde(default)]
    pub max_size: Option<u32>,
    /// An agent whose phone rang out is set Not ready ("missed call").
    #[serde(default = "yes")]
    pub not_ready_after_missed: bool,
    /// The Not-ready reason they are given then (1–64 characters, no control characters);
    /// none: `missed call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_reason: Option<String>,
    /// Every this many seconds (5–3600) a waiting caller hears their place.
    #[serde(default)]
    pub announce_seconds: Option<u64>,
    /// Answered within this many seconds counts as in time.
    #[serde(default = "default_service_level")]
    pub service_level_seconds: u64,
    /// The share answered in time the queue aims at, percent.
    #[serde(default = "default_service_level_target")]
    pub service_level_target: f64,
    /// Seconds a caller waits at most before the overflow route.
    #[serde(default)]
    pub max_wait_seconds: Option<u64>,
    /// The codes agents end the queue's calls with; none: any code.
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// Where callers go when the queue is full or they waited `max_wait_seconds`; none:
    /// they hear that all lines are busy and the call ends.
    #[serde(default)]
    pub overflow: Option<RouteSettings>,
    /// Where callers go who waited `max_wait_seconds`, when that is not where a full queue
    /// sends them; none: `overflow`.
    #[serde(default)]
    pub max_wait_overflow: Option<RouteSettings>,
    /// Where callers go when no agent of the queue is logged in; none: they hear that no
    /// one can take the call and it ends.
    #[serde(default)]
    pub no_agents: Option<RouteSettings>,
    /// Offer waiting callers a callback; none: never.
    #[serde(default)]
    pub callback: Option<CallbackSettings>,
}

/// When a queue offers its waiting callers a callback, and how it calls them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CallbackSettings {
    /// Offered once the caller has waited this long (seconds).
    #[serde(default)]
    pub after_seconds: Option<u64>,
    /// Offered when the caller's place is this or further back (1: next).
    #[serde(default)]
    pub position: Option<u32>,
    /// Calls placed to the caller at most (1–10).
    #[serde(default = "default_callback_attempts")]
    pub attempts: u32,
    /// Seconds before a failed callback is tried again (10–86400).
    #[serde(default = "default_callback_retry")]
    pub retry_seconds: u64,
    /// Seconds the caller's phone rings before a callback counts as unanswered (5–120).
    #[serde(default = "default_callback_ring")]
    pub ring_seconds: u64,
    /// Minutes a callback may wait in all before it is given up (1–1440).
    #[serde(default = "default_callback_expire")]
    pub expire_minutes: u64,
    /// Offered too when the queue overflows (it is full, or the caller waited
    /// `max_wait_seconds`): key 1 within a few seconds asks for the callback, the caller
    /// keeping their place by arrival; anything else goes on to the overflow route (or the
    /// busy message). With it, `after_seconds` and `position` may both be left out.
    #[serde(default)]
    pub on_overflow: bool,
}

fn default_callback_attempts() -> u32 {
    3
}
fn default_callback_retry() -> u64 {
    120
}
fn default_callback_ring() -> u64 {
    30
}
fn default_callback_expire() -> u64 {
    240
}

/// An auto attendant as `PUT /v1/config/tenants/{tenant}/attendants/{name}` sets it: the
/// greeting that offers the choices, the key of each, and where no choice goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AttendantSettings {
    /// The prompt played as the menu: `<prompts_dir>/<language>/<greeting>.wav` (1–64
    /// letters, digits, `-`, `_`), in the attendant's language (else the tenant's) or
    /// English.
    pub greeting: String,
    /// The language callers hear prompts in from this attendant on: `en` or `zh-CN`; none:
    /// the language they have been hearing (at first the tenant's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Seconds to wait for a key after the greeting (1–60).
    #[serde(default = "default_menu_timeout")]
    pub timeout_seconds: u64,
    /// Greetings again after no key or a wrong one, before `default` (0–9).
    #[serde(default = "default_menu_retries")]
    pub retries: u32,
    /// Keys `0`–`9` and where each goes (`*` repeats the greeting, `#` goes back).
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(type = "Record<string, RouteSettings>"))]
    pub options: std::collections::BTreeMap<String, RouteSettings>,
    /// Where the caller goes after no choice or too many wrong ones: the operator.
    pub default: RouteSettings,
    /// The opening hours it follows (a schedule's name); none: always open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Where its callers go while closed; none: they hear that the tenant is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<RouteSettings>,
    /// Where its callers go on holidays; none: as when closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holiday: Option<RouteSettings>,
}

fn default_menu_timeout() -> u64 {
    5
}
fn default_menu_retries() -> u32 {
    2
}

/// An attendant as `GET /v1/config/tenants/{tenant}/attendants` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AttendantView {
    pub tenant: String,
    pub name: String,
    pub settings: AttendantSettings,
    /// `file` or `api`, as for agents.
    pub source: String,
}

fn default_strategy() -> String {
    "longest_idle".into()
}
fn default_alert() -> u64 {
    15
}
fn yes() -> bool {
    true
}
fn default_service_level() -> u64 {
    20
}
fn default_service_level_target() -> f64 {
    80.0
}

/// Where a call goes: a queue, an auto attendant or an expert group by name, an outside
/// number, or one of the tenant's agents (exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub attendant: Option<String>,
    #[serde(default)]
    pub expert: Option<String>,
    /// An outside number (E.164), called on the tenant's outbound trunk under its toll rules.
    #[serde(default)]
    pub number: Option<String>,
    /// One of the tenant's agents (UPN), rung directly when they are Ready; otherwise, or
    /// unanswered, the caller goes back where they came from.
    #[serde(default)]
    pub agent: Option<String>,
}

/// A number (DID) as `PUT /v1/config/tenants/{tenant}/numbers/{number}` maps it: to a queue
/// or an attendant (exactly one), with its callers' priority and opening hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct NumberSettings {
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub attendant: Option<String>,
    /// 1 (lowest) to 5 (highest); default 3.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// The opening hours its calls follow (a schedule of the file); none: always open.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Where calls go while closed; none: the caller hears that the tenant is closed.
    #[serde(default)]
    pub closed: Option<RouteSettings>,
    /// Where calls go on holidays; none: as when closed.
    #[serde(default)]
    pub holiday: Option<RouteSettings>,
}

fn default_priority() -> u8 {
    3
}

/// A number as `GET /v1/config/tenants/{tenant}/numbers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct NumberConfigView {
    pub tenant: String,
    /// E.164 with the `+`.
    pub number: String,
    pub settings: NumberSettings,
    /// `file` or `api`, as for agents.
    pub source: String,
}

/// Opening hours as `PUT /v1/config/tenants/{tenant}/schedules/{name}` sets them, written as
/// in the configuration file: days as lists of `"HH:MM-HH:MM"`, holidays as `"2026-12-25"` or
/// `"2026-12-24..2026-12-26"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// An IANA time zone (`Europe/London`).
    pub timezone: String,
    /// Monday to Friday, each day not given on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekdays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mon: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tue: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thu: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fri: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sat: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sun: Option<Vec<String>>,
    /// Days closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A schedule as `GET /v1/config/tenants/{tenant}/schedules` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ScheduleView {
    pub tenant: String,
    pub name: String,
    pub settings: ScheduleSettings,
    /// `file` or `api`, as for agents.
    pub source: String,
}

/// A trunk as `PUT /v1/config/tenants/{tenant}/trunks/{name}` sets it, with the
/// configuration file's fields (left out: the file's defaults). The password is never shown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct TrunkSettings {
    /// Source IP addresses whose INVITEs arrive on the trunk.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Digest authentication of its INVITEs: user name and password, both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Calls on the trunk at once (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Where OPTIONS keep-alives go (`sip:192.0.2.10:5060`, or a DNS name: `sip:sbc.carrier.example`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Seconds between probes (1–3600; default 30, or 60 on a Direct Routing trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_seconds: Option<u64>,
    /// Where calls the router places on the trunk go (`sip:192.0.2.10:5060`, or a DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<String>,
    /// A Microsoft Teams Direct Routing trunk (the router is its SBC): no `allow`,
    /// `username`, `probe` or `outbound` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_routing: Option<DirectRouting>,
}

/// A Direct Routing trunk's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct DirectRouting {
    /// The SBC's FQDN as paired in the Microsoft 365 tenant (`contoso.sbc.example`).
    pub fqdn: String,
    /// Microsoft's SIP proxies in failover order (`host` or `host:port`); left out:
    /// `sip`, `sip2` and `sip3.pstnhub.microsoft.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<String>,
    /// The port Microsoft reaches the SBC on, as paired (`-SipSignalingPort`), when it is
    /// not the `[sip.tls]` listen port (a firewall forwarding 5061 to another port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_port: Option<u16>,
    /// Media bypass (`Set-CsOnlinePSTNGateway -MediaBypass $true`): the router is an ICE-lite
    /// agent on the Teams leg, with `[sip] media_address` (a public IPv4 address) as its one
    /// candidate, and the audio goes straight between it and the Teams client.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub media_bypass: bool,
}

/// One Direct Routing proxy's health as the router's OPTIONS find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ProxyStatus {
    pub host: String,
    pub port: u16,
    pub health: TrunkHealth,
    /// When `health` last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub since: time::OffsetDateTime,
    /// When the last probe was answered or given up on.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string | null"))]
    pub last_probe_at: Option<time::OffsetDateTime>,
    /// The last probe's status; none: not answered.
    pub last_probe_status: Option<u16>,
}

/// A trunk as `GET /v1/config/tenants/{tenant}/trunks` lists it (no password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct TrunkView {
    pub tenant: String,
    pub name: String,
    pub allow: Vec<String>,
    pub username: Option<String>,
    /// Whether it has a digest password (never shown).
    pub has_password: bool,
    pub max_calls: u32,
    pub probe: Option<String>,
    pub probe_seconds: u64,
    pub outbound: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_routing: Option<DirectRouting>,
    /// `file` or `api`, as for agents.
    pub source: String,
}

/// A tenant's toll rules (`/v1/config/tenants/{tenant}/outbound`): the outside calls its
/// agents may place through the router, on which trunk, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct TollRules {
    /// The tenant's trunk that carries them (it needs an outbound or probe target).
    pub trunk: String,
    /// E.164 prefixes agents may call (`+1`, `+44`; `+`: anywhere). None: nowhere.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Prefixes never called, whatever `allow` says (premium rates: `+1900`).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Outside calls an agent may place in an hour (1–1000); default 60.
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
    /// Outside calls the whole tenant may place in an hour (1–100000): agents' calls, and
    /// callers sent to outside numbers by agents' transfers or by routes. None: no cap but
    /// each agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_max_per_hour: Option<u32>,
    /// Outside calls the tenant may have up at once (1–10000), counted as for
    /// `tenant_max_per_hour`. None: only the trunk's `max_calls` limits them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// The number the called party sees (E.164); none: the tenant's first number.
    #[serde(default)]
    pub caller_id: Option<String>,
}

fn default_max_per_hour() -> u32 {
    60
}

impl TollRules {
    /// Whether an agent may call `number`: an E.164 number (`+` and 6–15 digits) that an
    /// `allow` prefix covers and no `deny` prefix does. `Err` says why not.
    pub fn permits(&self, number: &str) -> Result<(), String> {
        let digits = number.strip_prefix('+').unwrap_or_default();
        if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{number} is not an E.164 number (+ and 6 to 15 digits)"
            ));
        }
        if let Some(d) = self.deny.iter().find(|d| number.starts_with(d.as_str())) {
            return Err(format!("numbers starting {d} are denied by the toll rules"));
        }
        if !self.allow.iter().any(|a| number.starts_with(a.as_str())) {
            return Err(format!(
                "{number} is not in an allowed prefix of the toll rules"
            ));
        }
        Ok(())
    }
}

/// An expert group as `PUT /v1/config/tenants/{tenant}/experts/{name}` sets it: the skill its
/// experts have, and its lowest level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ExpertSettings {
    pub skill: String,
    /// 1–5; default 1.
    #[serde(default = "one")]
    pub min_level: u8,
    /// Agents whose Microsoft 365 profile lists the skill (Graph `skills`) are experts of
    /// the group too, at `min_level`, unless their configured `skills` give them a level.
    #[serde(default)]
    pub from_graph: bool,
}

fn one() -> u8 {
    1
}

/// An expert group as `GET /v1/config/tenants/{tenant}/experts` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ExpertGroupView {
    pub tenant: String,
    pub name: String,
    pub settings: ExpertSettings,
    /// `file` or `api`, as for agents.
    pub source: String,
}

/// A queue as `GET /v1/config/tenants/{tenant}/queues` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct QueueConfigView {
    pub tenant: String,
    pub name: String,
    pub settings: QueueSettings,
    /// `file` or `api`, as for agents.
    pub source: String,
}

/// What `PUT /v1/config/tenants/{tenant}/agents/{upn}` sets: the agent's name, skills and
/// object id (all of them; a skill left out is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Display name, at most 200 characters.
    #[serde(default)]
    pub name: String,
    /// Skill → proficiency 1–5; at most 64 skills, names of 1–64 letters, digits, `-`, `_`.
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(type = "Record<string, number>"))]
    pub skills: std::collections::BTreeMap<String, u8>,
    /// The agent's Entra object id (a GUID).
    #[serde(default)]
    pub object_id: Option<String>,
    /// Their Teams phone number (E.164): as an expert without a Switchboard phone
    /// registered, they are rung there through the tenant's Direct Routing trunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_number: Option<String>,
}

/// One queue's calls in one interval (`GET /v1/reports/queues`). Each call counts once, in
/// the last queue it waited in (`queue` is `null` for calls that reached none: closed hours,
/// unknown numbers, callers who left in an attendant). Waits run from the call's arrival to
/// the agent's answer (attendant time included); definitions in docs/contact-center.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct QueueReport {
    /// The interval's start, RFC 3339 with the report's time zone offset.
    pub interval_start: String,
    pub tenant: String,
    pub queue: Option<String>,
    /// Calls that ended in this queue (or in none).
    pub calls: u64,
    pub answered: u64,
    /// Answered within the queue's `service_level_seconds` of arriving.
    pub answered_in_time: u64,
    /// Hung up waiting, after more than 5 s.
    pub abandoned: u64,
    /// Hung up within 5 s (misdials; counted against nothing).
    pub abandoned_short: u64,
    pub overflowed: u64,
    /// Outside opening hours, with no closed route.
    pub closed: u64,
    /// Refused (nobody logged in, unknown number, a loop).
    pub refused: u64,
    /// Failed or interrupted.
    pub failed: u64,
    /// answered_in_time ÷ (answered + abandoned + overflowed), percent; none without calls.
    pub service_level: Option<f64>,
    /// Mean wait of answered calls, seconds.
    pub asa_seconds: Option<f64>,
    /// Mean talk time of answered calls (answer to hang-up), seconds.
    pub average_talk_seconds: Option<f64>,
    /// The longest wait of an answered or abandoned call, seconds.
    pub longest_wait_seconds: Option<f64>,
}

/// A trunk's health as the router's OPTIONS keep-alives see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum TrunkHealth {
    /// Not heard from and not probed yet (or no `probe` and it sent nothing yet).
    Unknown,
    /// It answered the last probe, or sent us a request.
    Up,
    /// Three probes in a row went unanswered or got 503.
    Down,
}

/// A trunk of a tenant, now (`GET /v1/trunks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct TrunkStatus {
    pub tenant: String,
    pub name: String,
    pub health: TrunkHealth,
    /// When `health` last changed (the router's start, at first).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub since: time::OffsetDateTime,
    /// Calls on the trunk now, and at most.
    pub calls: usize,
    pub max_calls: usize,
    /// Where the router's OPTIONS probes go; none: the trunk is not probed.
    pub probe: Option<String>,
    /// When the last probe was answered or given up on.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string | null"))]
    pub last_probe_at: Option<time::OffsetDateTime>,
    /// The last probe's status; none: not answered.
    pub last_probe_status: Option<u16>,
    /// When the trunk last sent the router a request.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string | null"))]
    pub last_heard_at: Option<time::OffsetDateTime>,
    /// A Direct Routing trunk: its FQDN, and each proxy's health (the trunk is up while one
    /// is; calls go to healthy ones first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_routing: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyStatus>,
}

/// An agent's state in the contact center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum AgentState {
    /// No phone registered.
    Offline,
    /// Takes calls.
    Ready,
    /// Takes no queue calls (with a reason).
    NotReady,
    /// A queue call is being offered to the agent's phone.
    Ringing,
    OnCall,
    /// After a queue call, for the queue's wrap-up time or until the agent is done.
    WrapUp,
}

/// `PUT /v1/agents/me/state`: the state an agent asks for (Ready or Not ready); the others
/// follow from calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AgentStateChange {
    /// Only where the router checks no tokens: the agent (UPN).
    #[serde(default)]
    pub agent: Option<String>,
    pub state: RequestedState,
    /// Why Not ready (`lunch`, `training`, …).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `PUT /v1/agents/{upn}/state`: the state a supervisor sets for an agent from the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStateSet {
    pub state: RequestedState,
    /// Why Not ready (`lunch`, `training`, …).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The states an agent can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum RequestedState {
    Ready,
    NotReady,
}

/// An agent as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AgentStatus {
    pub agent: String,
    pub tenant: String,
    pub state: AgentState,
    /// The Not-ready reason (`missed call` after a ring-no-answer).
    pub reason: Option<String>,
    /// Whether a phone is registered for the agent.
    pub registered: bool,
    /// Teams presence as the router last heard it (`Available/Available`,
    /// `DoNotDisturb/Presenting`, …), when it follows the agent's presence; DoNotDisturb,
    /// Presenting, InAMeeting and a Teams call keep queue calls away.
    #[serde(default)]
    pub teams: Option<String>,
    /// The disposition codes the wrap-up of the agent's last queue call accepts (its queue's
    /// `dispositions`); empty: any code.
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// The colleague or expert the agent is consulting, while they are.
    #[serde(default)]
    pub consult: Option<ConsultStatus>,
    /// While in wrap-up: the seconds until the router ends it (rounded up; 0 when it is
    /// ending now), counted from when this status was made. Relative rather than a time of
    /// day, so a desktop whose clock is off from the router's still counts down right.
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub wrap_up_seconds_left: Option<u64>,
    /// On a supervisor's own status: the agent's call they listen in on, whisper to or barged
    /// into, while they do.
    #[serde(default)]
    pub monitoring: Option<Monitoring>,
}

/// An agent on the supervisors' board (`GET /v1/agents`): their state as they see it, with
/// their name, how long they have been in that state, and the queue of the call they are on
/// or wrapping up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct BoardAgent {
    pub name: String,
    pub status: AgentStatus,
    /// Seconds in the current state (and Not-ready reason); none until the router has seen
    /// the state change (before the SIP edge runs).
    #[cfg_attr(feature = "typescript", ts(type = "number | null"))]
    pub state_seconds: Option<u64>,
    /// The queue of the call the agent is on or wrapping up (none for direct calls).
    pub queue: Option<String>,
}

/// What the supervisors' board shows: every queue's live figures and every agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SupervisorBoard {
    pub queues: Vec<QueueFigures>,
    pub agents: Vec<BoardAgent>,
}

/// `GET /v1/agents/me/targets`: whom and where the agent may transfer or consult the call
/// they are on, now. Experts are offered only when they can take a call now (a registered
/// phone, no call, not ringing or in wrap-up, and Available in Teams where the router follows
/// presence); colleagues say whether they can take a consultation (`available`) and a blind
/// transfer or a call (`transferable`: Ready too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct TransferTargets {
    /// The agent's tenant.
    pub tenant: String,
    /// The tenant's queues (a blind transfer keeps the caller's place and priority).
    pub queues: Vec<QueueTarget>,
    /// The tenant's auto attendants, by name.
    pub attendants: Vec<String>,
    /// The agent's colleagues (the agent left out), in the configuration's order.
    pub colleagues: Vec<ColleagueTarget>,
    /// The tenant's expert groups.
    pub experts: Vec<ExpertGroupTarget>,
    /// Whether the tenant's toll rules (`[tenants.outbound]`) let callers be sent to outside
    /// numbers (E.164); each number is still checked against them.
    pub outside_numbers: bool,
}

/// A queue one may transfer to, and how busy it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct QueueTarget {
    pub name: String,
    /// Callers waiting in it now.
    pub waiting: u32,
    /// Its agents Ready now.
    pub ready: u32,
    /// Its agents logged in now (in any state but Offline), the agent asking left out: a
    /// consultation of the queue waits for one of them.
    #[serde(default)]
    pub staffed: u32,
    /// Whether the agent asking is one of its agents.
    pub mine: bool,
}

/// A colleague, their state, and whether they can take a call now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ColleagueTarget {
    pub upn: String,
    /// Their display name (the UPN where none is configured).
    pub name: String,
    pub state: AgentState,
    /// Teams presence as the router last heard it (`Available/Available` …), when followed.
    pub teams: Option<String>,
    /// They can take a consultation now: a registered phone, no call, not ringing or in
    /// wrap-up, Available in Teams where followed (Not ready for queue calls is no matter).
    pub available: bool,
    /// They can take a blind transfer or a call now: as for a consultation, and Ready.
    pub transferable: bool,
    /// They can be rung in Teams (a `teams_number` and the tenant's Direct Routing trunk):
    /// the target `teams:<upn>` consults them there even when their Switchboard phone is
    /// registered.
    #[serde(default)]
    pub in_teams: bool,
}

/// An expert group: the experts who can take a call now, and how many cannot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ExpertGroupTarget {
    pub name: String,
    /// The skill its experts have, and its lowest level.
    pub skill: String,
    pub min_level: u8,
    /// Its experts who can take a call now, the best first (highest level, then as
    /// configured); the group's name picks the first.
    pub available: Vec<ExpertTarget>,
    /// Its experts who cannot now (offline, on a call, busy in Teams …).
    pub unavailable: u32,
}

/// An expert free now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ExpertTarget {
    pub upn: String,
    pub name: String,
    /// Their level of the group's skill (1–5).
    pub level: u8,
    pub teams: Option<String>,
    /// They can be rung in Teams (`teams:<upn>`; the group's `teams:<group>` takes the best
    /// such expert).
    #[serde(default)]
    pub in_teams: bool,
}

/// An agent's consultation: with whom, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ConsultStatus {
    /// The UPN of the person consulted (in a conference with nobody being consulted: the
    /// last to join).
    pub with: String,
    pub state: ConsultState,
    /// The queue consulted: while the consultation waits in it (`with` is then the queue's
    /// name too), and once it chose the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Everyone in the agent's conference besides the agent and the caller, in the order
    /// they joined (empty before the first joins). While the agent consults someone new,
    /// these talk on with the caller.
    #[serde(default)]
    pub conference: Vec<String>,
}

/// `waiting`: a consultation of a queue waits in it for the agent it will choose (nobody
/// of it free yet, or callers come first); the agent and the caller hear music (or the caller
/// talks on with those in the conference); `ringing`: their phone rings, the caller hears
/// music (or talks on with those in the conference); `talking`: the agent talks to them, the
/// caller on hold (or with the conference); `conference`: the agent, the caller and everyone
/// joined talk together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum ConsultState {
    Waiting,
    Ringing,
    Talking,
    Conference,
}

/// How a supervisor takes part in an agent's call (`PUT /v1/agents/{upn}/monitor`).
/// `listen`: they hear the caller and the agent (and anyone in their conference) and nobody
/// hears them; `whisper`: the agent hears them too, the caller does not; `barge`: everyone
/// on the call hears them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum MonitorMode {
    Listen,
    Whisper,
    Barge,
}

/// A supervisor's part in an agent's call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Monitoring {
    /// The agent whose call it is (UPN).
    pub agent: String,
    pub mode: MonitorMode,
    /// The supervisor's phone answered; until then it rings.
    pub answered: bool,
}

/// `PUT /v1/agents/{upn}/monitor`: a supervisor listens in on the agent's call, whispers
/// to the agent or barges in. The router rings the supervisor's own registered phone; once
/// it is up, another `PUT` changes the mode without ringing again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonitorRequest {
    pub mode: MonitorMode,
    /// Only where the router checks no tokens: the supervisor (UPN), an agent of the same
    /// tenant with a phone. Otherwise the signed-in supervisor.
    #[serde(default)]
    pub supervisor: Option<String>,
}

/// Agents of a queue by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AgentsByState {
    pub ready: u32,
    pub not_ready: u32,
    pub ringing: u32,
    pub on_call: u32,
    pub wrap_up: u32,
    pub offline: u32,
}

/// A queue's live figures: now, and since the start of the day (UTC). Definitions are in
/// the router's docs (docs/contact-center.md): a short abandon (within 5 s) counts nowhere
/// but `abandoned_short`; service level = answered within the threshold ÷ (answered +
/// abandoned after 5 s + overflowed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct QueueFigures {
    pub tenant: String,
    pub queue: String,
    /// Callers waiting now (ringing agents included).
    pub waiting: u32,
    /// Agents' consultations of the queue waiting in it now (not callers: served after
    /// them, and counted in no other figure).
    #[serde(default)]
    pub consultations_waiting: u32,
    /// The longest a caller waiting now has waited, in seconds.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub longest_wait_seconds: u64,
    pub agents: AgentsByState,
    /// Callers who entered the queue today.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub offered: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub answered: u64,
    /// Answered within `service_level_seconds`.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub answered_in_time: u64,
    /// Hung up while waiting, after 5 s.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub abandoned: u64,
    /// Hung up within 5 s of entering.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub abandoned_short: u64,
    /// Left for the overflow route (full, waited the longest).
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub overflowed: u64,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub service_level_seconds: u64,
    /// Percent; none before any call counts.
    pub service_level: Option<f64>,
    /// Average speed of answer, seconds.
    pub asa_seconds: Option<f64>,
    /// Average handle time (talk + wrap-up), seconds.
    pub aht_seconds: Option<f64>,
    /// Percent of offered callers who abandoned after 5 s.
    pub abandonment_rate: Option<f64>,
    /// What Erlang C expects of the next half hour at the recent arrival rate and handle time.
    pub forecast: QueueForecast,
}

/// A queue's Erlang C forecast: the traffic of the last 30 minutes (arrivals × average handle
/// time) offered to the agents staffing the queue now (logged in and not Not ready). Figures
/// that need spare capacity are none when the staffed agents cannot keep up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct QueueForecast {
    /// Callers entering the queue per hour, over the last 30 minutes.
    pub arrivals_per_hour: f64,
    /// The handle time assumed: the mean of the queue's last 100 calls (180 s before any).
    pub aht_seconds: f64,
    /// Offered traffic, in Erlangs (arrival rate × handle time).
    pub traffic_erlangs: f64,
    /// Agents staffing the queue now.
    pub staffed: u32,
    /// Percent of callers expected to wait at all.
    pub wait_probability: f64,
    /// Expected average speed of answer, seconds.
    pub expected_asa_seconds: Option<f64>,
    /// Percent expected to be answered within the queue's service-level threshold.
    pub expected_service_level: Option<f64>,
    /// The queue's service-level goal, percent (`service_level_target`).
    pub service_level_target: f64,
    /// The fewest agents that would meet the goal at this traffic (at most 10,000).
    pub agents_needed: Option<u32>,
}

/// How a call ended (or that it goes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum CallOutcome {
    InProgress,
    /// An agent took it.
    Answered,
    /// The caller hung up before an agent answered.
    Abandoned,
    /// The router could not take it on (nobody logged in, queue full, a loop): the caller
    /// heard why (`reason`) and the router hung up.
    Refused,
    /// It failed (media could not start, a SIP error).
    Failed,
    /// The router stopped (or was killed) during the call.
    Interrupted,
    /// The queue was full or the caller waited its longest, and there was nowhere else to
    /// go: the caller heard that all lines are busy and the router hung up.
    Overflowed,
    /// It came outside its number's opening hours (or on a holiday), and the number has no
    /// `closed` route: the caller heard that the tenant is closed and the router hung up.
    Closed,
    /// The caller asked for a callback, and an agent's call back reached them.
    CalledBack,
    /// It left the contact center: an outside number took it (an agent's transfer, or a
    /// route to the number) and the call ended there.
    Transferred,
}

/// How a transfer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum TransferKind {
    /// Handed on at once (a REFER, or the API's transfer): the agent left the call.
    Blind,
    /// After the agent consulted the target, who then took the caller.
    Consult,
}

/// One transfer of a call, as the router made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct TransferRecord {
    /// The agent who transferred the call (UPN).
    pub by: String,
    /// Where to: as the target was named within the tenant — `name@domain` for a queue, an
    /// attendant or an expert group (`orders@contoso.example`, as a REFER's Refer-To names it),
    /// a person's UPN — or an outside number (E.164).
    pub to: String,
    pub kind: TransferKind,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub at: time::OffsetDateTime,
}

/// One offer of a call to an agent, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct OfferRecord {
    /// The agent (UPN).
    pub agent: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub at: time::OffsetDateTime,
    /// `answered`, `no_answer` (rang out), `refused` (busy, declined, unreachable) or
    /// `cancelled` (another agent answered, or the caller left).
    pub outcome: String,
    /// When it stopped ringing (answered, rang out, refused or cancelled): its ring time is
    /// this less `at`. Absent while it rings, and in records kept before it was noted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string | null"))]
    pub ended_at: Option<time::OffsetDateTime>,
}

/// A call detail record: one per call that reached the router, from arrival to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct CallRecord {
    pub id: String,
    /// The tenant's id in the router's configuration.
    pub tenant: String,
    /// The trunk it came in on.
    pub trunk: String,
    /// The caller's number (or user), as the trunk gave it.
    pub caller: String,
    /// The number dialled (E.164).
    pub dialled: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub started_at: time::OffsetDateTime,
    /// When an agent answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string | null"))]
    pub answered_at: Option<time::OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "typescript", ts(type = "string | null"))]
    pub ended_at: Option<time::OffsetDateTime>,
    /// What the caller chose in attendants (`main:1`, `main:none`).
    pub choices: Vec<String>,
    /// The queue the caller waited in (the last one).
    pub queue: Option<String>,
    /// Every routing step, in order: `attendant main`, `queue billing`, `overflow billing →
    /// queue general (max wait)`, `no agents in orders`.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Every offer to an agent, in order.
    pub offers: Vec<OfferRecord>,
    /// The agent who took the call (UPN).
    pub agent: Option<String>,
    pub outcome: CallOutcome,
    /// Why it was refused or failed.
    pub reason: Option<String>,
    /// How long the caller was on hold in all (the agent's phone, or the caller's, held the
    /// call: `sendonly`, `recvonly` or `inactive`), in whole seconds. 0 in records kept before
    /// hold was counted.
    #[serde(default)]
    pub hold_seconds: u64,
    /// Every transfer the router made of the call, in order (refused ones are only in
    /// `steps`). Empty in records kept before transfers were listed.
    #[serde(default)]
    pub transfers: Vec<TransferRecord>,
    /// How long the agent was in wrap-up after the call, in whole seconds: from the call's
    /// end until they said they were done or the queue's wrap-up time ran out. Absent while
    /// it goes on, for calls with no wrap-up (no agent took them, or they came to the agent
    /// directly), and in records kept before it was noted.
    #[serde(default)]
    pub wrap_up_seconds: Option<u64>,
    /// The disposition code the agent gave in wrap-up.
    pub disposition: Option<String>,
    /// The language the caller heard the router's prompts in, last (`en`, `zh-CN`): the
    /// tenant's, or that of an attendant or queue on the way that has one. Absent in refused
    /// calls that heard nothing and in records kept before it was noted.
    #[serde(default)]
    pub language: Option<String>,
    /// The agent's notes from wrap-up (free text, at most [`WRAP_UP_NOTES_MAX`] characters;
    /// line breaks and tabs are the only control characters). Absent in records kept before
    /// notes existed.
    #[serde(default)]
    pub notes: Option<String>,
}

/// Wrap-up notes hold at most this many characters (Unicode scalar values).
pub const WRAP_UP_NOTES_MAX: usize = 2000;

/// Why wrap-up notes cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotesProblem {
    /// More than [`WRAP_UP_NOTES_MAX`] characters.
    TooLong { chars: usize },
    /// A control character other than a line break (LF) or a tab, at this character
    /// (counted from 1).
    ControlCharacter { at: usize, code: u32 },
}

impl std::fmt::Display for NotesProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong { chars } => write!(
                f,
                "the notes are {chars} characters long, more than the {WRAP_UP_NOTES_MAX} kept: shorten them and send them again"
            ),
            Self::ControlCharacter { at, code } => write!(
                f,
                "the notes hold a control character (U+{code:04X}) at character {at}; only line breaks and tabs may be in them: remove it and send them again"
            ),
        }
    }
}

impl std::error::Error for NotesProblem {}

/// Checks wrap-up notes: at most [`WRAP_UP_NOTES_MAX`] characters, no control characters
/// but line feed and tab (a CR too is refused: send line breaks as LF).
pub fn check_wrap_up_notes(notes: &str) -> Result<(), NotesProblem> {
    if let Some((i, c)) = notes
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(NotesProblem::ControlCharacter {
            at: i + 1,
            code: u32::from(c),
        });
    }
    let chars = notes.chars().count();
    if chars > WRAP_UP_NOTES_MAX {
        return Err(NotesProblem::TooLong { chars });
    }
    Ok(())
}

/// What a client may send on `/v1/events`, as JSON text frames tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum ClientMessage {
    /// The users whose presence this client wants (replaces its earlier list; empty stops).
    Watch { ids: Vec<String> },
}

/// RFC 9457 `application/problem+json` body for every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Problem {
    /// A URI reference naming the problem type (`about:blank` when only the status says it).
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What happened and what to do, for a person.
    pub detail: Option<String>,
    /// The request path.
    pub instance: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_tagged_by_type() {
        let e = Event::Hello {
            version: "1.2.3".into(),
            uptime_seconds: 5,
            presence: true,
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "hello");
        assert_eq!(v["version"], "1.2.3");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        // An older router's hello (no presence field) still reads.
        let old: Event =
            serde_json::from_str(r#"{"type":"hello","version":"0.1.0","uptime_seconds":1}"#)
                .unwrap();
        assert!(matches!(
            old,
            Event::Hello {
                presence: false,
                ..
            }
        ));
    }

    #[test]
    fn problem_uses_rfc9457_member_names() {
        let p = Problem {
            problem_type: "about:blank".into(),
            title: "Not Found".into(),
            status: 404,
            detail: None,
            instance: Some("/v1/nope".into()),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["status"], 404);
    }

    #[test]
    fn new_tenant_rejects_unknown_fields() {
        let r: Result<NewTenant, _> =
            serde_json::from_str(r#"{"name":"a","sip_domain":"b","evil":1}"#);
        assert!(r.is_err());
    }
    #[test]
    fn wrap_up_notes_take_line_breaks_and_tabs_and_no_more_than_the_limit() {
        assert_eq!(check_wrap_up_notes(""), Ok(()));
        assert_eq!(
            check_wrap_up_notes("Asked for a refund.\n\tCall back Monday"),
            Ok(())
        );
        // The limit is in characters, not bytes: 2,000 Chinese characters are fine.
        assert_eq!(check_wrap_up_notes(&"退".repeat(WRAP_UP_NOTES_MAX)), Ok(()));
        let long = "a".repeat(WRAP_UP_NOTES_MAX + 1);
        let e = check_wrap_up_notes(&long).unwrap_err();
        assert_eq!(e, NotesProblem::TooLong { chars: 2001 });
        assert!(
            e.to_string().contains("2001") && e.to_string().contains("shorten"),
            "{e}"
        );
        for (text, at, code) in [
            ("a\rb", 2, 0x0d),
            ("\u{1b}[2J", 1, 0x1b),
            ("ok\u{0}", 3, 0),
            ("x\u{85}", 2, 0x85),
        ] {
            let e = check_wrap_up_notes(text).unwrap_err();
            assert_eq!(e, NotesProblem::ControlCharacter { at, code }, "{text:?}");
            assert!(e.to_string().contains("line breaks and tabs"), "{e}");
        }
    }

    #[test]
    fn records_kept_before_notes_existed_still_read() {
        let old = r#"{"id":"c-1","tenant":"contoso","trunk":"carrier","caller":"+15550001",
            "dialled":"+18005550100","started_at":"2026-01-02T03:04:05Z","answered_at":null,
            "ended_at":null,"choices":[],"queue":"general","offers":[],"agent":null,
            "outcome":"answered","reason":null,"disposition":"resolved"}"#;
        let r: CallRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            (r.disposition.as_deref(), r.notes),
            (Some("resolved"), None)
        );
        // And the status of an older router (no countdown) too.
        let st: AgentStatus = serde_json::from_str(
            r#"{"agent":"a@b","tenant":"t","state":"wrap_up","reason":null,"registered":true}"#,
        )
        .unwrap();
        assert_eq!(st.wrap_up_seconds_left, None);
    }
}
