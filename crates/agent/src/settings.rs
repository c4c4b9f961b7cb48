//! The desktop's own settings (router URL, language, sound devices, the phone's account), kept in a TOML file in the user's
//! configuration directory and written atomically (temporary file + rename), so a crash while
//! saving never leaves a half-written file behind.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The router a fresh install talks to: the one the demo starts on this machine.
pub const DEFAULT_ROUTER_URL: &str = "http://127.0.0.1:7700";

/// Environment variable that overrides where settings live (tests, portable installs).
pub const CONFIG_DIR_ENV: &str = "SWITCHBOARD_CONFIG_DIR";
/// Environment variable that sets the router URL used when no settings file exists yet.
pub const ROUTER_URL_ENV: &str = "SWITCHBOARD_ROUTER_URL";

/// A language the UI speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum Language {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

/// What the person chose in Settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Settings {
    /// Base URL of the routing service, e.g. `http://127.0.0.1:7700`.
    pub router_url: String,
    /// The UI language.
    #[serde(default)]
    pub language: Language,
    /// Sound devices and volume.
    #[serde(default)]
    pub audio: AudioSettings,
    /// Which account the phone registers with: the router's, or a plain SIP account.
    #[serde(default)]
    pub phone: PhoneSettings,
    /// Closing the window keeps the app (and its phone) running in the tray, where the OS
    /// has one; off, closing the window quits.
    #[serde(default = "yes")]
    pub close_to_tray: bool,
}

fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            router_url: DEFAULT_ROUTER_URL.to_owned(),
            language: Language::default(),
            audio: AudioSettings::default(),
            phone: PhoneSettings::default(),
            close_to_tray: true,
        }
    }
}

/// Where the phone's SIP account comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum PhoneSource {
    /// Credentials the Switchboard router issues after sign-in (queues, transfers, wrap-up).
    #[default]
    Router,
    /// The person's own SIP account (a PBX, a provider, Kamailio): calls only, no router
    /// features.
    SipAccount,
}

/// The SIP transport of a plain account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum SipTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    /// As Settings → Phone shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

/// Settings → Phone. The account's password is not here: it is kept apart, encrypted, its
/// key in the OS keychain (`crate::phone_password`), never in the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PhoneSettings {
    /// Which account the phone registers with.
    #[serde(default)]
    pub source: PhoneSource,
    /// The plain SIP account (kept while the router is chosen, so switching back is one
    /// click).
    #[serde(default)]
    pub sip_account: Option<SipAccountSettings>,
}

/// A plain SIP account as the person types it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SipAccountSettings {
    /// The registrar: `sip:host[:port]` or `sips:host[:port]` (saved with its port).
    pub registrar: String,
    /// The SIP user name (the user part of the address of record).
    pub user: String,
    /// The digest user name, where the provider gives one apart from the user name.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The name callees see.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub transport: SipTransport,
}

/// The longest user name or display name kept.
pub const MAX_SIP_NAME: usize = 128;

impl SipAccountSettings {
    /// Checks what the person typed: blank optional fields become none, the registrar gets
    /// its port (5060, or 5061 for TLS) and loses parameters (the transport is its own field).
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        let bad = |field: &'static str, reason: String| SettingsError::InvalidSipAccount {
            field,
            reason,
        };
        self.registrar = normalise_registrar(&self.registrar, self.transport)?;
        self.user = self.user.trim().to_owned();
        let user_ok = |u: &str| {
            !u.is_empty()
                && u.chars().count() <= MAX_SIP_NAME
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c))
        };
        if self.user.is_empty() {
            return Err(bad(
                "user",
                "it is empty — enter the SIP user name your provider gave you".into(),
            ));
        }
        if !user_ok(&self.user) {
            return Err(bad(
                "user",
                format!("{:?} is not a SIP user name (letters, digits and - _ . ! ~ * ' ( ) & = + $ , ; ? / %; no spaces or @; at most {MAX_SIP_NAME})", printable(&self.user)),
            ));
        }
        self.auth_user = optional_name(self.auth_user, "auth_user", "authentication user")?;
        self.display_name = optional_name(self.display_name, "display_name", "display name")?;
        Ok(self)
    }
}

impl PhoneSettings {
    /// Checks the account; choosing [`PhoneSource::SipAccount`] needs one.
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        self.sip_account = self
            .sip_account
            .map(SipAccountSettings::validated)
            .transpose()?;
        if self.source == PhoneSource::SipAccount && self.sip_account.is_none() {
            return Err(SettingsError::InvalidSipAccount {
                field: "registrar",
                reason: "no SIP account is set — fill in the registrar and user name, or choose the Switchboard router".into(),
            });
        }
        Ok(self)
    }

    /// The plain account the phone registers with, when chosen.
    pub fn chosen_account(&self) -> Option<&SipAccountSettings> {
        match self.source {
            PhoneSource::SipAccount => self.sip_account.as_ref(),
            PhoneSource::Router => None,
        }
    }
}

/// An optional name as typed: blank is none; refused with control characters, quotes or
/// backslashes (SIP would have to escape them) or over [`MAX_SIP_NAME`] characters.
fn optional_name(
    name: Option<String>,
    field: &'static str,
    what: &str,
) -> Result<Option<String>, SettingsError> {
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if let Some(n) = &name {
        if n.chars().count() > MAX_SIP_NAME
            || n.chars().any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(SettingsError::InvalidSipAccount {
                field,
                reason: format!("the {what} may not hold control characters, quotes or backslashes, nor be over {MAX_SIP_NAME} characters"),
            });
        }
    }
    Ok(name)
}

/// `s` with control characters shown escaped, cut to 64 characters (for messages).
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

/// Parses and normalises a registrar: `sip:` or `sips:` (TLS only), a host name or IP
/// address, an optional port; returned as `scheme:host:port`.
pub fn normalise_registrar(input: &str, transport: SipTransport) -> Result<String, SettingsError> {
    let bad = |reason: String| SettingsError::InvalidSipAccount {
        field: "registrar",
        reason: format!("{:?}: {reason}", printable(input.trim())),
    };
    let t = input.trim();
    if t.is_empty() {
        return Err(SettingsError::InvalidSipAccount {
            field: "registrar",
            reason: "it is empty — enter your provider's registrar, such as sip:sip.example.com"
                .into(),
        });
    }
    let (scheme, rest) = if let Some(r) = t.strip_prefix("sips:") {
        ("sips", r)
    } else if let Some(r) = t.strip_prefix("sip:") {
        ("sip", r)
    } else {
        return Err(bad(
            "it must start with sip: or sips:, such as sip:sip.example.com".into(),
        ));
    };
    if scheme == "sips" && transport != SipTransport::Tls {
        return Err(bad("a sips: registrar needs the TLS transport".into()));
    }
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or_default();
    // A `;transport=` the Transport field disagrees with: which one is meant is not ours to
    // guess (RFC 3263 §4.1 makes the URI's win; the field is what the user chose).
    for p in parts {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        if !name.trim().eq_ignore_ascii_case("transport") {
            continue;
        }
        let value = value.trim().to_ascii_lowercase();
        let named = match value.as_str() {
            "udp" => SipTransport::Udp,
            "tcp" => SipTransport::Tcp,
            "tls" => SipTransport::Tls,
            _ => {
                return Err(bad(format!(
                    "transport={} is not one the app speaks: use UDP, TCP or TLS",
                    printable(&value)
                )))
            }
        };
        if named != transport {
            return Err(bad(format!(
                "it says transport={value} but Transport is {} — choose {} in Transport, or remove ;transport={value}",
                transport.name(),
                named.name()
            )));
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address lacks its closing ]".into()))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("the address in [ ] is not an IPv6 address".into()));
        }
        (format!("[{h}]"), after.strip_prefix(':').map(str::to_owned))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("it has no host".into()));
    }
    if host.contains('@') {
        return Err(bad(
            "it holds a user part; put the user name in its own field and only the server here"
                .into(),
        ));
    }
    if !host.starts_with('[')
        && (host.len() > 253
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    {
        return Err(bad("the host is not a host name or IP address".into()));
    }
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(bad(format!(
                    "the port {:?} is not a number from 1 to 65535",
                    printable(&p)
                )))
            }
        },
        None if transport == SipTransport::Tls => 5061,
        None => 5060,
    };
    Ok(format!("{scheme}:{host}:{port}"))
}

/// The longest device name kept (system names are far shorter; this bounds the file).
pub const MAX_DEVICE_NAME: usize = 256;

/// Which sound devices calls use. A device is named as the system lists it; `None` is the
/// system's default, followed when it changes. A named device that is missing when a call
/// starts falls back to the default and the person is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AudioSettings {
    /// The microphone (headset).
    #[serde(default)]
    pub input_device: Option<String>,
    /// Where the call is heard (headset).
    #[serde(default)]
    pub output_device: Option<String>,
    /// Where incoming calls ring: often the computer's speakers, so a ring is heard with the
    /// headset off.
    #[serde(default)]
    pub ringing_device: Option<String>,
    /// Call volume, 0–100 %.
    #[serde(default = "full")]
    pub output_volume: u8,
    /// Ring volume, 0–100 %.
    #[serde(default = "full")]
    pub ring_volume: u8,
}

fn full() -> u8 {
    100
}

impl Default for AudioSettings {
    fn default() -> Self {
        Self {
            input_device: None,
            output_device: None,
            ringing_device: None,
            output_volume: 100,
            ring_volume: 100,
        }
    }
}

impl AudioSettings {
    /// Checks names and volumes; an empty name means the default device.
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        for (what, name) in [
            ("microphone", &mut self.input_device),
            ("speaker", &mut self.output_device),
            ("ringing device", &mut self.ringing_device),
        ] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                *name = None;
            }
            if let Some(n) = name.as_deref() {
                if n.chars().count() > MAX_DEVICE_NAME || n.chars().any(char::is_control) {
                    return Err(SettingsError::InvalidAudio {
                        reason: format!(
                            "the {what} name is not one a sound system gives (over {MAX_DEVICE_NAME} characters or control characters)"
                        ),
                    });
                }
            }
        }
        for (what, v) in [
            ("call volume", self.output_volume),
            ("ring volume", self.ring_volume),
        ] {
            if v > 100 {
                return Err(SettingsError::InvalidAudio {
                    reason: format!("the {what} is {v} %, above 100 %"),
                });
            }
        }
        Ok(self)
    }
}

/// Why settings could not be read, checked or written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "the router URL {url:?} is not valid: {reason} — enter an http:// or https:// address such as http://127.0.0.1:7700"
    )]
    InvalidRouterUrl { url: String, reason: String },
    #[error("cannot read the settings file {path}: {source} — fix or delete the file; defaults are used until then")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {message} — fix or delete the file; defaults are used until then")]
    Malformed { path: PathBuf, message: String },
    #[error("cannot save the settings to {path}: {source} — check that the folder is writable and the disk is not full")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the sound settings are not valid: {reason} — choose the devices again in Settings → Audio"
    )]
    InvalidAudio { reason: String },
    #[error("no configuration folder could be found for this user — set {CONFIG_DIR_ENV} to a writable folder")]
    NoConfigDir,
    /// A field of Settings → Phone's SIP account (`field`: `registrar`, `user`,
    /// `auth_user`, `display_name`, `password`).
    #[error("the SIP account's {field} is not valid: {reason} — correct it in Settings → Phone")]
    InvalidSipAccount { field: &'static str, reason: String },
}

impl SettingsError {
    /// A stable code for the UI (`{ code, message }` across IPC).
    pub fn code(&self) -> &'static str {
        match self {
            SettingsError::InvalidRouterUrl { .. } => "invalid_router_url",
            SettingsError::Unreadable { .. } => "settings_unreadable",
            SettingsError::Malformed { .. } => "settings_malformed",
            SettingsError::Unwritable { .. } => "settings_unwritable",
            SettingsError::InvalidAudio { .. } => "invalid_audio",
            SettingsError::NoConfigDir => "no_config_dir",
            SettingsError::InvalidSipAccount {
                field: "registrar", ..
            } => "invalid_sip_registrar",
            SettingsError::InvalidSipAccount { field: "user", .. } => "invalid_sip_user",
            SettingsError::InvalidSipAccount {
                field: "password", ..
            } => "invalid_sip_password",
            SettingsError::InvalidSipAccount { .. } => "invalid_sip_account",
        }
    }
}

impl Settings {
    /// Checks what a person may have typed; returns the settings with the URL normalised
    /// (no trailing slash).
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        self.router_url = normalise_router_url(&self.router_url)?;
        self.audio = self.audio.validated()?;
        self.phone = self.phone.validated()?;
        Ok(self)
    }
}

/// Parses and normalises a router base URL: http or https, a host, no query or fragment.
pub fn normalise_router_url(input: &str) -> Result<String, SettingsError> {
    let bad = |reason: &str| SettingsError::InvalidRouterUrl {
        url: input.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let url = url::Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("only http and https are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Where settings are kept and how they are loaded and saved.
#[derive(Debug, Clone)]
pub struct SettingsStore {
    path: PathBuf,
    default_router_url: String,
}

impl SettingsStore {
    /// The per-user store: `$SWITCHBOARD_CONFIG_DIR/settings.toml`, else the platform's
    /// configuration folder (`~/.config/switchboard` on Linux, `~/Library/Application Support`
    /// on macOS, `%APPDATA%` on Windows).
    pub fn for_current_user() -> Result<Self, SettingsError> {
        let dir = match std::env::var_os(CONFIG_DIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => directories::ProjectDirs::from("cc", "Switchboard", "switchboard")
                .ok_or(SettingsError::NoConfigDir)?
                .config_dir()
                .to_path_buf(),
        };
        let default_router_url = std::env::var(ROUTER_URL_ENV)
            .ok()
            .and_then(|u| normalise_router_url(&u).ok())
            .unwrap_or_else(|| DEFAULT_ROUTER_URL.to_owned());
        Ok(Self::at(dir.join("settings.toml"), default_router_url))
    }

    /// A store at an explicit file path (tests).
    pub fn at(path: impl Into<PathBuf>, default_router_url: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            default_router_url: default_router_url.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the settings. A missing file gives the defaults; an unreadable or malformed one is
    /// an error the caller shows (and then uses defaults), never silently overwritten.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Settings {
                    router_url: self.default_router_url.clone(),
                    ..Settings::default()
                })
            }
            Err(source) => {
                return Err(SettingsError::Unreadable {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let settings: Settings = toml::from_str(&text).map_err(|e| SettingsError::Malformed {
            path: self.path.clone(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        settings.validated().map_err(|e| SettingsError::Malformed {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Validates and saves atomically; returns what was stored.
    pub fn save(&self, settings: Settings) -> Result<Settings, SettingsError> {
        let settings = settings.validated()?;
        let unwritable = |source| SettingsError::Unwritable {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(unwritable)?;
        }
        let text = toml::to_string_pretty(&settings)
            .map_err(|e| unwritable(std::io::Error::other(e.to_string())))?;
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, text.as_bytes()).map_err(unwritable)?;
        std::fs::rename(&tmp, &self.path).map_err(unwritable)?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_with_the_configured_router() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::at(dir.path().join("s.toml"), "http://10.1.2.3:7700");
        let s = store.load().unwrap();
        assert_eq!(s.router_url, "http://10.1.2.3:7700");
        assert_eq!(s.language, Language::En);
    }

    #[test]
    fn save_then_load_round_trips_and_normalises() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::at(dir.path().join("sub/s.toml"), DEFAULT_ROUTER_URL);
        let saved = store
            .save(Settings {
                router_url: " https://router.example.com/ ".into(),
                language: Language::ZhCn,
                audio: AudioSettings {
                    input_device: Some("Jabra Evolve2 65".into()),
                    ringing_device: Some("  ".into()),
                    ring_volume: 40,
                    ..AudioSettings::default()
                },
                phone: PhoneSettings::default(),
                close_to_tray: false,
            })
            .unwrap();
        assert_eq!(saved.router_url, "https://router.example.com");
        assert!(!saved.close_to_tray);
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("language = \"zh-CN\""), "{text}");
        assert_eq!(
            saved.audio.ringing_device, None,
            "a blank name is the default"
        );
        assert_eq!(
            saved.audio.input_device.as_deref(),
            Some("Jabra Evolve2 65")
        );
        assert_eq!(store.load().unwrap(), saved);
    }

    #[test]
    fn files_from_before_the_audio_settings_load_with_default_devices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "router_url = \"http://127.0.0.1:7700\"\nlanguage = \"en\"\n",
        )
        .unwrap();
        let s = SettingsStore::at(&path, DEFAULT_ROUTER_URL).load().unwrap();
        assert_eq!(s.audio, AudioSettings::default());
        assert_eq!(s.audio.output_volume, 100);
        assert!(s.close_to_tray, "closing to the tray is the default");
    }

    #[test]
    fn bad_audio_settings_are_refused_with_a_code() {
        let loud = AudioSettings {
            output_volume: 101,
            ..AudioSettings::default()
        };
        let e = loud.validated().unwrap_err();
        assert_eq!(e.code(), "invalid_audio");
        assert!(e.to_string().contains("101 %"), "{e}");
        for name in ["a\nb".to_owned(), "x".repeat(MAX_DEVICE_NAME + 1)] {
            let bad = AudioSettings {
                output_device: Some(name),
                ..AudioSettings::default()
            };
            assert_eq!(bad.validated().unwrap_err().code(), "invalid_audio");
        }
        // In a file, the same is reported as a malformed file, left alone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "router_url = \"http://h\"\n[audio]\nring_volume = 300\n",
        )
        .unwrap();
        let e = SettingsStore::at(&path, DEFAULT_ROUTER_URL)
            .load()
            .unwrap_err();
        assert_eq!(e.code(), "settings_malformed");
    }

    #[test]
    fn bad_urls_are_refused_with_a_code() {
        for bad in ["", "ftp://x", "not a url", "http://", "http://h/?q=1"] {
            let e = normalise_router_url(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_router_url", "{bad}");
            assert!(e.to_string().contains("http://"), "{e}");
        }
    }

    fn account() -> SipAccountSettings {
        SipAccountSettings {
            registrar: " sip:sip.example.com ".into(),
            user: " alice ".into(),
            auth_user: Some("  ".into()),
            display_name: Some(" Alice Liddell ".into()),
            transport: SipTransport::Udp,
        }
    }

    #[test]
    fn a_plain_sip_account_is_normalised_and_round_trips_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::at(dir.path().join("s.toml"), DEFAULT_ROUTER_URL);
        let saved = store
            .save(Settings {
                phone: PhoneSettings {
                    source: PhoneSource::SipAccount,
                    sip_account: Some(account()),
                },
                ..Settings::default()
            })
            .unwrap();
        let a = saved.phone.chosen_account().unwrap();
        assert_eq!(a.registrar, "sip:sip.example.com:5060");
        assert_eq!(a.user, "alice");
        assert_eq!(a.auth_user, None, "blank is none");
        assert_eq!(a.display_name.as_deref(), Some("Alice Liddell"));
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("source = \"sip_account\""), "{text}");
        assert!(
            !text.contains("password"),
            "no password in the file: {text}"
        );
        assert_eq!(store.load().unwrap(), saved);
        // The router chosen again: the account is kept, not used.
        let back = PhoneSettings {
            source: PhoneSource::Router,
            ..saved.phone.clone()
        }
        .validated()
        .unwrap();
        assert!(back.chosen_account().is_none());
        assert!(back.sip_account.is_some());
    }

    #[test]
    fn registrars_get_their_port_and_bad_ones_say_why() {
        use SipTransport::*;
        for (typed, t, want) in [
            ("sip:pbx.example.com", Udp, "sip:pbx.example.com:5060"),
            ("sip:pbx.example.com", Tls, "sip:pbx.example.com:5061"),
            ("sips:pbx.example.com", Tls, "sips:pbx.example.com:5061"),
            (
                "sip:127.0.0.1:5080;transport=tcp",
                Tcp,
                "sip:127.0.0.1:5080",
            ),
            ("sip:[::1]:5070", Udp, "sip:[::1]:5070"),
            (
                "sip:pbx.example.com;Transport=TLS",
                Tls,
                "sip:pbx.example.com:5061",
            ),
            (
                "sip:pbx.example.com;lr;transport=udp",
                Udp,
                "sip:pbx.example.com:5060",
            ),
        ] {
            assert_eq!(normalise_registrar(typed, t).unwrap(), want, "{typed}");
        }
        for (typed, t, says) in [
            ("", Udp, "empty"),
            ("pbx.example.com", Udp, "sip: or sips:"),
            ("http://pbx", Udp, "sip: or sips:"),
            ("sips:pbx.example.com", Udp, "TLS"),
            ("sip:alice@pbx.example.com", Udp, "user part"),
            ("sip:pbx example.com", Udp, "host name"),
            ("sip:pbx.example.com:0", Udp, "1 to 65535"),
            ("sip:pbx.example.com:99999", Udp, "1 to 65535"),
            ("sip:[::1", Udp, "]"),
            ("sip:\r\nVia: x", Udp, "host name"),
            (
                "sip:pbx.example.com;transport=tcp",
                Udp,
                "transport=tcp but Transport is UDP — choose TCP in Transport",
            ),
            ("sip:pbx.example.com:5061;transport=TLS", Tcp, "choose TLS"),
            ("sip:pbx.example.com;transport=udp", Tls, "choose UDP"),
            ("sip:pbx.example.com;transport=ws", Udp, "UDP, TCP or TLS"),
            (
                "sip:pbx.example.com;transport=t\u{7}",
                Udp,
                "UDP, TCP or TLS",
            ),
        ] {
            let e = normalise_registrar(typed, t).unwrap_err();
            assert_eq!(e.code(), "invalid_sip_registrar", "{typed}");
            assert!(e.to_string().contains(says), "{typed}: {e}");
            assert!(e.to_string().contains("Settings → Phone"), "{e}");
        }
    }

    #[test]
    fn bad_account_fields_are_refused_with_their_codes() {
        type Spoil = fn(&mut SipAccountSettings);
        let cases: [(Spoil, &str); 5] = [
            (|a| a.user = " ".into(), "invalid_sip_user"),
            (|a| a.user = "alice smith".into(), "invalid_sip_user"),
            (|a| a.user = "alice@example.com".into(), "invalid_sip_user"),
            (
                |a| a.display_name = Some("A \"B\"".into()),
                "invalid_sip_account",
            ),
            (|a| a.auth_user = Some("x\ny".into()), "invalid_sip_account"),
        ];
        for (spoil, code) in cases {
            let mut a = account();
            spoil(&mut a);
            assert_eq!(a.validated().unwrap_err().code(), code);
        }
        // Choosing the plain account needs one.
        let none = PhoneSettings {
            source: PhoneSource::SipAccount,
            sip_account: None,
        };
        assert_eq!(
            none.validated().unwrap_err().code(),
            "invalid_sip_registrar"
        );
        // Files from before Settings → Phone use the router.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "router_url = \"http://h\"\n").unwrap();
        let s = SettingsStore::at(&path, DEFAULT_ROUTER_URL).load().unwrap();
        assert_eq!(s.phone, PhoneSettings::default());
        assert_eq!(s.phone.source, PhoneSource::Router);
    }

    #[test]
    fn malformed_file_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "router_url = 12\n").unwrap();
        let store = SettingsStore::at(&path, DEFAULT_ROUTER_URL);
        let e = store.load().unwrap_err();
        assert_eq!(e.code(), "settings_malformed");
        assert!(e.to_string().contains("s.toml"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "router_url = 12\n");
    }
}
