//! The desktop's own settings (router URL, language, sound devices), kept in a TOML file in the user's
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            router_url: DEFAULT_ROUTER_URL.to_owned(),
            language: Language::default(),
            audio: AudioSettings::default(),
        }
    }
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
        }
    }
}

impl Settings {
    /// Checks what a person may have typed; returns the settings with the URL normalised
    /// (no trailing slash).
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        self.router_url = normalise_router_url(&self.router_url)?;
        self.audio = self.audio.validated()?;
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
            })
            .unwrap();
        assert_eq!(saved.router_url, "https://router.example.com");
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
