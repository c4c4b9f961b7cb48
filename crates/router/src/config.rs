//! The router's configuration: a TOML file whose every key has a default (see
//! `router.example.toml`, printed by `--print-default-config`), overridden by flags.
//!
//! A bad file is refused with the file, line, column and key named, never half-applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The commented default configuration, as shipped.
pub const EXAMPLE_CONFIG: &str = include_str!("../router.example.toml");

/// Everything the router can be told.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub presence: PresenceConfig,
    /// The SIP edge (no `listen`: the router takes no calls).
    pub sip: crate::center::SipConfig,
    /// The organisations whose calls the router routes.
    pub tenants: Vec<crate::center::TenantSpec>,
}

/// `[presence]`: following Teams presence for connected desktops.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Follow presence (needs `switchboard-router graph-login` once).
    pub enabled: bool,
    /// The identity provider of the Graph service account, naming the organisation
    /// (`https://login.microsoftonline.com/<tenant id>/v2.0`); required with `enabled`.
    pub authority: String,
    /// The app registration the service account signs in with (a public client with device
    /// code allowed; delegated Presence.Read.All and User.ReadBasic.All, and User.Read.All with
    /// `read_skills`).
    pub client_id: String,
    /// Microsoft Graph's base URL.
    pub graph_url: String,
    /// Public https URL of this router's `/v1/graph/notifications`, where Graph posts
    /// changes; empty: poll instead.
    pub notification_url: String,
    /// Seconds between reads of every watched user while polling.
    pub poll_seconds: u64,
    /// Seconds between reads of every watched user while webhooks are in use: Graph
    /// announces no lost presence notification, so this sweep is what heals one.
    pub sweep_seconds: u64,
    /// Most users one client may watch.
    pub max_watched: usize,
    /// Read agents' Microsoft 365 skills (Graph `skills`) for expert groups with
    /// `from_graph`: the service account then also asks for User.Read.All (admin consent).
    pub read_skills: bool,
    /// Seconds between reads of agents' Graph `skills`, for tenants with an expert group
    /// that has `from_graph` (an hour by default; a failed read is tried again in a minute).
    pub skills_seconds: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            // No default: `organizations` fails for a single-tenant registration (AADSTS50194).
            authority: String::new(),
            client_id: String::new(),
            graph_url: "https://graph.microsoft.com/v1.0".into(),
            notification_url: String::new(),
            poll_seconds: 30,
            sweep_seconds: 300,
            max_watched: 5000,
            read_skills: false,
            skills_seconds: 3600,
        }
    }
}

/// `[auth]`: who may call the API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none` (anyone who reaches the port; keep `http.listen` on loopback) or `entra`
    /// (every call but health, metrics and the OpenAPI document needs a bearer token).
    pub mode: AuthMode,
    /// The identity provider whose tokens are accepted (its discovery document and keys).
    pub authority: String,
    /// Accepted `aud` values: the API's Application ID URI and/or its client id.
    pub audiences: Vec<String>,
    /// Entra tenant ids whose `Admin` users manage every tenant of this router (the
    /// operator's own organisation). Admins of other organisations see only their own.
    pub operator_tenant_ids: Vec<String>,
    /// Allowed clock difference when checking `exp`/`nbf`, in seconds.
    pub clock_skew_seconds: u64,
    /// With `mode = "none"` the router refuses to listen on anything but a loopback address,
    /// since everyone who reaches the port is then an operator Admin. `true` lets it listen
    /// there anyway (and logs a warning): only behind something else that checks callers.
    pub unsafe_allow_anyone_on_network: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            authority: "https://login.microsoftonline.com/organizations/v2.0".into(),
            audiences: Vec::new(),
            operator_tenant_ids: Vec::new(),
            clock_skew_seconds: 300,
            unsafe_allow_anyone_on_network: false,
        }
    }
}

/// `auth.mode`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Entra,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port of the API (default `127.0.0.1:7700`).
    pub listen: SocketAddr,
    /// Largest request body in bytes (default 65536); larger gets 413.
    pub max_body_bytes: usize,
    /// Per-request time limit in seconds (default 30); slower gets 408.
    pub request_timeout_seconds: u64,
    /// With `auth.mode = "entra"`, `/metrics` answers only a caller that sends this value
    /// as `Authorization: Bearer …` (a Prometheus `bearer_token`), or an access token with
    /// the Supervisor or Admin role. Empty: access tokens only.
    pub metrics_token: String,
    /// Host names this router answers to besides its own address (and, on loopback,
    /// `localhost`, `127.0.0.1`, `[::1]`); other `Host` headers get 421, which stops DNS
    /// rebinding. Empty on a non-loopback address: any host.
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://host[:port]`) whose pages may call the API or open the event
    /// stream; a request with any other `Origin` gets 403. Native clients send none.
    pub allowed_origins: Vec<String>,
    /// Connections open at once (event streams included); more wait in the listen queue.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (slowloris); slower is closed.
    pub header_read_timeout_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            max_body_bytes: 64 * 1024,
            request_timeout_seconds: 30,
            metrics_token: String::new(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_connections: 1024,
            header_read_timeout_seconds: 10,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Folder for the database and lock file (default: the platform data folder).
    pub data_dir: Option<PathBuf>,
    /// Database URL (default `sqlite://<data_dir>/router.db`).
    pub database_url: Option<String>,
}

/// `[events]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Seconds between heartbeats on `/v1/events` (default 10).
    pub heartbeat_seconds: u64,
    /// Events a slow client may lag before it is disconnected (default 256).
    pub client_buffer: usize,
    /// Event clients connected at once (default 1000); more are answered 503.
    pub max_clients: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            heartbeat_seconds: 10,
            client_buffer: 256,
            max_clients: crate::events::DEFAULT_MAX_CLIENTS,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing EnvFilter (default `info`).
    pub level: String,
    /// Output format (default text).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// An https URL, or http on loopback — parsed, not compared as text: no user or password
/// part (`http://127.0.0.1:1@evil.example/` names the host evil.example), a host present.
fn url_like(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}, line {line}, column {column}{key}: {message} — see `switchboard-router --print-default-config` for every valid key", key = key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
    #[error("configuration file {path}, key `{key}`: {message}")]
    Reference {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("configuration: {0}")]
    Value(String),
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses configuration text; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                key: key_at(text, offset),
                message: e.message().trim().to_owned(),
            }
        })?;
        crate::center::check(&cfg.tenants).map_err(|e| match e.offset {
            Some(o) => {
                let (line, column) = line_col(text, o.min(text.len()));
                ConfigError::Invalid {
                    path: path.to_owned(),
                    line,
                    column,
                    key: Some(e.key),
                    message: e.message,
                }
            }
            None => ConfigError::Reference {
                path: path.to_owned(),
                key: e.key,
                message: e.message,
            },
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Whether serving on `addr` is allowed: with `auth.mode = "none"` anyone who reaches
    /// the port is an operator Admin, so only a loopback address — unless the operator set
    /// `auth.unsafe_allow_anyone_on_network`, which is logged as a warning.
    pub fn check_exposure(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if self.auth.mode != AuthMode::None || addr.ip().is_loopback() {
            return Ok(());
        }
        if self.auth.unsafe_allow_anyone_on_network {
            tracing::warn!(%addr, "auth.mode is \"none\" on a non-loopback address (auth.unsafe_allow_anyone_on_network): anyone who reaches this port manages every tenant");
            return Ok(());
        }
        Err(ConfigError::Value(format!(
            "refusing to listen on {addr} with auth.mode = \"none\": anyone who reaches it would manage every tenant — listen on 127.0.0.1, set [auth] mode = \"entra\", or, only behind something else that checks callers, set [auth] unsafe_allow_anyone_on_network = true"
        )))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.http.max_body_bytes == 0 {
            return Err(ConfigError::Value(
                "http.max_body_bytes must be at least 1".into(),
            ));
        }
        if self.http.request_timeout_seconds == 0 {
            return Err(ConfigError::Value(
                "http.request_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.http.max_connections == 0 || self.http.header_read_timeout_seconds == 0 {
            return Err(ConfigError::Value(
                "http.max_connections and http.header_read_timeout_seconds must be at least 1"
                    .into(),
            ));
        }
        if self.events.heartbeat_seconds == 0 || self.events.heartbeat_seconds > 3600 {
            return Err(ConfigError::Value(
                "events.heartbeat_seconds must be between 1 and 3600".into(),
            ));
        }
        if self.events.client_buffer == 0 {
            return Err(ConfigError::Value(
                "events.client_buffer must be at least 1".into(),
            ));
        }
        if self.auth.mode == AuthMode::Entra {
            if self.auth.audiences.iter().all(|a| a.trim().is_empty()) {
                return Err(ConfigError::Value(
                    "auth.audiences must name the API's Application ID URI or client id when auth.mode is \"entra\"".into(),
                ));
            }
            let ok = url_like(&self.auth.authority);
            if !ok {
                return Err(ConfigError::Value(format!(
                    "auth.authority {:?} must be an https:// URL (http:// only on 127.0.0.1)",
                    self.auth.authority
                )));
            }
        }
        if self.presence.enabled {
            if self.presence.client_id.trim().is_empty() {
                return Err(ConfigError::Value(
                    "presence.client_id must name the app registration when presence.enabled is true".into(),
                ));
            }
            if self.presence.authority.trim().is_empty() {
                return Err(ConfigError::Value(
                    "presence.authority must name your organisation when presence.enabled is true: https://login.microsoftonline.com/<tenant id>/v2.0 (a single-tenant app registration cannot sign in through \"organizations\" or \"common\": AADSTS50194)".into(),
                ));
            }
            if !url_like(&self.presence.authority) || !url_like(&self.presence.graph_url) {
                return Err(ConfigError::Value(
                    "presence.authority and presence.graph_url must be https:// URLs (http:// only on 127.0.0.1)".into(),
                ));
            }
            if !self.presence.notification_url.is_empty()
                && !url_like(&self.presence.notification_url)
            {
                return Err(ConfigError::Value(format!(
                    "presence.notification_url {:?} must be an https:// URL Graph can reach",
                    self.presence.notification_url
                )));
            }
            if self.presence.poll_seconds == 0
                || self.presence.sweep_seconds == 0
                || self.presence.skills_seconds == 0
                || self.presence.max_watched == 0
            {
                return Err(ConfigError::Value(
                    "presence.poll_seconds, presence.sweep_seconds, presence.skills_seconds and presence.max_watched must be at least 1".into(),
                ));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            for (j, tr) in t.trunks.iter().enumerate() {
                let problem = tr
                    .direct_routing
                    .as_ref()
                    .and_then(|d| d.sbc_problem(self.sip.tls.as_ref()));
                if let Some(p) = problem {
                    return Err(ConfigError::Value(format!(
                        "tenants[{i}].trunks[{j}].direct_routing: {p}"
                    )));
                }
            }
        }
        let reads_skills = self.presence.enabled && self.presence.read_skills;
        for (i, t) in self.tenants.iter().enumerate() {
            if let Some(j) = t.experts.iter().position(|g| g.from_graph) {
                if !reads_skills {
                    return Err(ConfigError::Value(format!(
                        "tenants[{i}].experts[{j}].from_graph needs Microsoft 365 skills read: set [presence] enabled = true and read_skills = true (and sign the service account in again with graph-login, for User.Read.All)"
                    )));
                }
            }
        }
        if let Some(url) = &self.storage.database_url {
            if !url.starts_with("sqlite:") {
                return Err(ConfigError::Value(format!(
                    "storage.database_url {url:?}: only sqlite: URLs are supported in this version"
                )));
            }
        }
        Ok(())
    }

    /// The data folder: configured, else the platform's.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.storage.data_dir {
            return Ok(d.clone());
        }
        directories::ProjectDirs::from("cc", "Switchboard", "switchboard-router")
            .map(|p| p.data_dir().to_path_buf())
            .ok_or_else(|| {
                ConfigError::Value(
                    "no data folder for this user: set storage.data_dir or --data-dir".into(),
                )
            })
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The dotted key whose line holds `offset`: the `[table]` above it and the name before `=`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table: Option<String> = None;
    // Arrays of tables (`[[tenants.queues]]`) seen so far: the index of their last element,
    // under the last element of the arrays they are in.
    let mut last: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    // `tenants.queues` as `tenants[1].queues[0]`, by the elements last opened.
    let indexed = |name: &str, last: &std::collections::HashMap<String, usize>| {
        let mut plain = String::new();
        let mut out = String::new();
        for (k, part) in name.split('.').map(str::trim).enumerate() {
            if k > 0 {
                plain.push('.');
                out.push('.');
            }
            plain.push_str(part);
            out.push_str(part);
            if let Some(i) = last.get(&plain) {
                out.push_str(&format!("[{i}]"));
            }
        }
        out
    };
    let mut pos = 0;
    for raw in text.split_inclusive('\n') {
        let end = pos + raw.len();
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim();
            // A new element: the arrays inside the last one start again.
            let inside = format!("{name}.");
            last.retain(|k, _| !k.starts_with(&inside));
            let i = last.get(name).map_or(0, |i| i + 1);
            last.insert(name.to_owned(), i);
            table = Some(indexed(name, &last));
        } else if line.starts_with('[') {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
                table = Some(indexed(name.trim(), &last));
            }
        }
        if offset >= pos && offset < end.max(pos + 1) {
            if line.starts_with('[') {
                return table;
            }
            let name = line.split('=').next()?.trim();
            if name.is_empty() || line.starts_with('#') || !line.contains('=') {
                return table;
            }
            return Some(match table {
                Some(t) => format!("{t}.{name}"),
                None => name.to_owned(),
            });
        }
        pos = end;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/sb/router.toml"))
    }

    #[test]
    fn a_refused_value_is_named_by_its_place_in_arrays_of_tables() {
        let text = "[sip]\nlisten = \"127.0.0.1:0\"\n[[tenants]]\nid = \"a\"\n[[tenants.queues]]\nname = \"q\"\n[[tenants]]\nid = \"b\"\n[[tenants.queues]]\nname = \"x\"\n[[tenants.queues]]\nname = \"y\"\n[tenants.queues.callback]\nattempts = 2\n[http]\nport = 1\n";
        let at = |needle: &str| key_at(text, text.find(needle).expect(needle));
        assert_eq!(at("listen").as_deref(), Some("sip.listen"));
        assert_eq!(
            at("name = \"q\"").as_deref(),
            Some("tenants[0].queues[0].name")
        );
        assert_eq!(at("id = \"b\"").as_deref(), Some("tenants[1].id"));
        assert_eq!(
            at("name = \"x\"").as_deref(),
            Some("tenants[1].queues[0].name")
        );
        assert_eq!(
            at("name = \"y\"").as_deref(),
            Some("tenants[1].queues[1].name")
        );
        assert_eq!(
            at("attempts").as_deref(),
            Some("tenants[1].queues[1].callback.attempts")
        );
        assert_eq!(at("port").as_deref(), Some("http.port"));
    }

    #[test]
    fn presence_needs_the_organisations_authority() {
        let e = parse("[presence]\nenabled = true\nclient_id = \"c\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("presence.authority") && e.contains("AADSTS50194"),
            "{e}"
        );
        assert!(parse("[presence]\nenabled = true\nclient_id = \"c\"\nauthority = \"https://login.microsoftonline.com/5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0/v2.0\"\n").is_ok());
    }

    #[test]
    fn expert_groups_from_graph_need_skills_read() {
        let tenant = "[[tenants]]\nid = \"contoso\"\ndomain = \"contoso.example\"\nexperts = [{ name = \"legal\", skill = \"legal\" }, { name = \"escalations\", skill = \"escalations\", from_graph = true }]\n";
        let presence = "[presence]\nenabled = true\nclient_id = \"c\"\nauthority = \"https://login.microsoftonline.com/5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0/v2.0\"\n";
        for text in [tenant.to_owned(), format!("{presence}\n{tenant}")] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("tenants[0].experts[1].from_graph") && e.contains("read_skills = true"),
                "{e}"
            );
        }
        let c = parse(&format!("{presence}read_skills = true\n\n{tenant}")).unwrap();
        assert!(c.tenants[0].experts[1].from_graph);
        assert!(!c.tenants[0].experts[0].from_graph, "off unless said");
    }

    #[test]
    fn urls_are_parsed_not_prefix_matched() {
        for ok in [
            "https://login.microsoftonline.com/organizations/v2.0",
            "http://127.0.0.1:7710/contoso/v2.0",
            "http://127.0.0.1/x",
            "http://localhost:8080/",
            "http://[::1]:7710/",
        ] {
            assert!(url_like(ok), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:1@evil.example/",
            "http://127.0.0.1.evil.example/",
            "http://localhost:80@evil.example/",
            "https://user:pw@login.example/",
            "http://10.0.0.1:7710/",
            "http://example.com/",
            "ftp://127.0.0.1/",
            "https://",
            "not a url",
        ] {
            assert!(!url_like(bad), "{bad}");
        }
    }

    #[test]
    fn no_auth_is_refused_off_loopback_unless_the_unsafe_key_says_so() {
        let open: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let lan: SocketAddr = "[::]:7700".parse().unwrap();
        let c = Config::default();
        assert!(c.check_exposure("127.0.0.1:7700".parse().unwrap()).is_ok());
        assert!(c.check_exposure("[::1]:7700".parse().unwrap()).is_ok());
        let e = c.check_exposure(open).unwrap_err().to_string();
        assert!(e.contains("unsafe_allow_anyone_on_network"), "{e}");
        assert!(c.check_exposure(lan).is_err());
        let c = parse("[auth]\nunsafe_allow_anyone_on_network = true\n").unwrap();
        assert!(c.check_exposure(open).is_ok());
        let c = parse("[auth]\nmode = \"entra\"\naudiences = [\"x\"]\nauthority = \"https://login.example/t/v2.0\"\n").unwrap();
        assert!(c.check_exposure(open).is_ok());
    }

    #[test]
    fn the_shipped_example_parses_to_the_defaults() {
        assert_eq!(parse(EXAMPLE_CONFIG).unwrap(), Config::default());
    }

    #[test]
    fn the_demo_contact_center_reads() {
        let demo = parse(include_str!("../demo.toml")).expect("demo.toml is valid");
        let t = &demo.tenants[0];
        assert_eq!(t.id, "contoso");
        assert_eq!(t.attendants[0].options.len(), 3);
        assert_eq!(t.queues.len(), 3);
        let adele = t.agents.iter().find(|a| a.upn == "AdeleV@contoso.example");
        // The simulated tenant's object id for her, so the demo's queues follow her presence.
        assert_eq!(
            adele.and_then(|a| a.object_id.clone()),
            Some(switchboard_tenant_sim::directory::user_id_for(
                "AdeleV@contoso.example"
            ))
        );
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn values_are_read() {
        let c = parse("[http]\nlisten = \"127.0.0.1:9000\"\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let e = parse("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/sb/router.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("`http.lisen`"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_line_and_key() {
        let e = parse("\n[events]\nheartbeat_seconds = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("`events.heartbeat_seconds`"), "{e}");
    }

    #[test]
    fn a_bad_address_names_the_key() {
        let e = parse("[http]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("`http.listen`"), "{e}");
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let e = parse("[http]\nlisten = \"127.0.0.1:1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(parse("[events]\nheartbeat_seconds = 0\n").is_err());
        assert!(parse("[storage]\ndatabase_url = \"postgres://x\"\n").is_err());
        for bad in [0, 1, 1001] {
            let e = parse(&format!("[sip]\noverload_queue = {bad}\n")).unwrap_err();
            let ConfigError::Invalid {
                line, key, message, ..
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(
                (*line, key.as_deref()),
                (2, Some("sip.overload_queue")),
                "{e}"
            );
            assert!(
                message.contains(&format!("{bad} messages: use 2 to 1000")),
                "{e}"
            );
        }
        assert!(parse("[sip]\noverload_queue = -3\n").is_err());
        let c = parse("[sip]\noverload_queue = 1000\n").unwrap();
        assert_eq!(c.sip.overload_queue, 1000);
        assert_eq!(parse("").unwrap().sip.overload_queue, 512);
    }
}
