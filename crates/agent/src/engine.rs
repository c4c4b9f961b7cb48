//! [`Agent`]: the one object a front end (the desktop shell, the CLI) holds. It owns the
//! settings and the router link and keeps them consistent: saving a new router URL re-points
//! the link at once.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::account::AccountSession;
use crate::audio::MicTests;
use crate::router::{LinkPolicy, RouterLink, RouterStatus};
use crate::settings::{Settings, SettingsError, SettingsStore};

/// The agent engine.
pub struct Agent {
    store: SettingsStore,
    settings: Mutex<Settings>,
    link: RouterLink,
    load_problem: Option<SettingsError>,
    mic_tests: MicTests,
    account: std::sync::Arc<AccountSession>,
}

impl Agent {
    /// Loads settings (falling back to defaults when the file is unreadable, keeping the
    /// problem for [`Agent::load_problem`]) and starts the router link. Must be called inside
    /// a tokio runtime.
    pub fn start(store: SettingsStore, policy: LinkPolicy) -> Self {
        let (settings, load_problem) = match store.load() {
            Ok(s) => (s, None),
            Err(e) => {
                tracing::warn!(error = %e, "settings not loaded; using defaults");
                (Settings::default(), Some(e))
            }
        };
        let config_dir = store
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let account = std::sync::Arc::new(AccountSession::new(&config_dir));
        // The link sends the signed-in person's router token when the router asks for one.
        let link = RouterLink::spawn_with_tokens(
            settings.router_url.clone(),
            policy,
            Some(std::sync::Arc::new(crate::account::AccountRouterTokens(
                account.clone(),
            ))),
        );
        Self {
            account,
            store,
            settings: Mutex::new(settings),
            link,
            load_problem,
            mic_tests: MicTests::default(),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the settings file could not be used at start, if it could not.
    pub fn load_problem(&self) -> Option<&SettingsError> {
        self.load_problem.as_ref()
    }

    /// Validates, persists and applies new settings; a changed router URL re-points the
    /// link. Must be called inside a tokio runtime.
    pub fn save_settings(&self, new: Settings) -> Result<Settings, SettingsError> {
        let saved = self.store.save(new)?;
        let mut current = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        if current.router_url != saved.router_url {
            tracing::info!(router = %saved.router_url, "router URL changed");
            self.link.set_url(saved.router_url.clone());
        }
        *current = saved.clone();
        Ok(saved)
    }

    /// The latest router status.
    pub fn router_status(&self) -> RouterStatus {
        self.link.status()
    }

    /// The microphone test of Settings → Audio.
    pub fn mic_tests(&self) -> &MicTests {
        &self.mic_tests
    }

    /// The Microsoft account, its presence and the SME directory.
    pub fn account(&self) -> &AccountSession {
        &self.account
    }

    /// Connects to the router again now (after a sign-in or sign-out changed the token).
    pub fn reconnect_router(&self) {
        let url = self.settings().router_url;
        self.link.set_url(url);
    }

    /// Every change of the router status.
    pub fn subscribe_router(&self) -> watch::Receiver<RouterStatus> {
        self.link.subscribe()
    }
}
