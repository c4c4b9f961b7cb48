//! [`Agent`]: the one object a front end (the desktop shell, the CLI) holds. It owns the
//! settings and the router link and keeps them consistent: saving a new router URL re-points
//! the link at once.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::account::AccountSession;
use crate::audio::MicTests;
use crate::router::{LinkPolicy, RouterLink, RouterStatus};
use crate::settings::{PhoneSettings, Settings, SettingsError, SettingsStore};
use crate::sip_password::SipPasswordStore;

/// The agent engine.
pub struct Agent {
    store: SettingsStore,
    settings: Mutex<Settings>,
    link: RouterLink,
    load_problem: Option<SettingsError>,
    mic_tests: MicTests,
    account: std::sync::Arc<AccountSession>,
    /// The people whose presence the window shows now (the directory's page).
    shown: Mutex<Vec<String>>,
    /// The contact-center state, kept in Teams.
    work: std::sync::Arc<crate::state::WorkState>,
    /// The softphone registered with the router's credentials or the plain SIP account.
    desk: crate::desk::DeskPhone,
    /// Where the plain SIP account's password is kept (opened when first needed: it asks
    /// the OS keychain).
    sip_password: std::sync::OnceLock<Result<SipPasswordStore, String>>,
}

/// Settings → Phone as the window shows it: the settings, and whether a password is kept
/// (never the password).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PhoneSettingsView {
    pub phone: PhoneSettings,
    /// A password is kept for the plain SIP account.
    pub password_saved: bool,
    /// Where it is kept, for a person ("the encrypted file …, its key in the system keychain").
    pub password_place: Option<String>,
    /// Why the key is in a file beside it although the keychain was wanted, if it is.
    pub keychain_problem: Option<String>,
}

/// Wrap-up after a call until queues set their own (the router's queue configuration).
pub const DEFAULT_WRAP_UP: std::time::Duration = std::time::Duration::from_secs(30);

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
        let work = std::sync::Arc::new(crate::state::WorkState::start(
            account.clone(),
            DEFAULT_WRAP_UP,
            crate::state::SessionTiming::default(),
        ));
        let desk = crate::desk::DeskPhone::new();
        // A call up is "on a call" in the contact-center state (and in Teams).
        let mut calls = desk.subscribe_events();
        let w = std::sync::Arc::downgrade(&work);
        let router = desk.clone();
        tokio::spawn(async move {
            use crate::call::PhoneEvent;
            use tokio::sync::broadcast::error::RecvError;
            let mut up = std::collections::HashSet::new();
            // Queue calls the router offers, ringing.
            let mut offered = std::collections::HashSet::new();
            // A supervisor's listen-in rung by the router: no wrap-up follows it. (The header
            // could be sent by anyone reaching the phone; skipping the app's own wrap-up timer
            // is all it does.)
            let mut listening = std::collections::HashSet::new();
            loop {
                match calls.recv().await {
                    Ok(PhoneEvent::Incoming { call, offer, .. }) if offer.queue.is_some() => {
                        offered.insert(call);
                    }
                    Ok(PhoneEvent::Incoming { call, offer, .. }) if offer.monitor.is_some() => {
                        listening.insert(call);
                    }
                    Ok(PhoneEvent::Established { call, .. }) => {
                        offered.remove(&call);
                        let Some(w) = w.upgrade() else { break };
                        if up.insert(call) {
                            w.call_started(false);
                        }
                    }
                    Ok(PhoneEvent::Ended { call, .. }) => {
                        if offered.remove(&call) {
                            // A queue call that rang out here: the router may have set the
                            // agent Not ready ("missed call"); the work state follows it.
                            tokio::spawn(follow_missed_offer(router.clone(), w.clone()));
                        }
                        let Some(w) = w.upgrade() else { break };
                        if up.remove(&call) {
                            w.call_ended(false);
                            // No wrap-up after a listen-in, nor after a call the router lost
                            // in a restart (its record is closed; the router is back with the
                            // agent's state from before the call).
                            let no_wrap_up =
                                listening.contains(&call) || router.lost_to_restart(call);
                            if no_wrap_up && up.is_empty() {
                                w.end_wrap_up();
                            } else if up.is_empty() {
                                // The router's wrap-up end may have reached the view before
                                // this event reached us (another task): follow it now.
                                if let Some(x) = router.view().wrap_up.as_ref() {
                                    follow_routers_wrap_up(&w, x.ends_unix_ms, x.after.is_some());
                                }
                            }
                        }
                        listening.remove(&call);
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        // The router announces each agent's state (`agent_state` events): a change it made
        // itself — a supervisor on the board, a restart — shows here as it does there.
        let mut states = link.subscribe_agent_states();
        let (w, phone) = (std::sync::Arc::downgrade(&work), desk.clone());
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match states.recv().await {
                    Ok(st) => {
                        let Some(w) = w.upgrade() else { break };
                        let view = phone.view();
                        let mine = view.source == crate::settings::PhoneSource::Router
                            && view
                                .agent
                                .as_deref()
                                .is_some_and(|a| a.eq_ignore_ascii_case(&st.agent));
                        if mine {
                            follow_router(&w, &st, "announced by the router");
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        // A router that restarted lost the calls it carried: the phone ends a call older than
        // the router at once (its uptime comes when the link connects, and with each message).
        let mut status = link.subscribe();
        let phone = desk.clone();
        tokio::spawn(async move {
            loop {
                let up = {
                    let s = status.borrow_and_update();
                    (s.state == crate::router::ConnectionState::Connected)
                        .then_some(s.uptime_seconds)
                        .flatten()
                };
                if let Some(up) = up {
                    phone.router_up_for(std::time::Duration::from_secs(up));
                }
                if status.changed().await.is_err() {
                    break;
                }
            }
        });
        // The router's wrap-up of a queue call is the one that counts: the work state (and so
        // Teams and the window's state clock) follows its end once the router says it.
        let mut phone = desk.subscribe();
        let w = std::sync::Arc::downgrade(&work);
        tokio::spawn(async move {
            let mut followed = None;
            while phone.changed().await.is_ok() {
                let seen = phone
                    .borrow_and_update()
                    .wrap_up
                    .as_ref()
                    .map(|x| (x.ends_unix_ms, x.after.is_some()));
                if seen == followed {
                    continue;
                }
                followed = seen;
                let Some((ends, over)) = seen else { continue };
                let Some(w) = w.upgrade() else { break };
                follow_routers_wrap_up(&w, ends, over);
            }
        });
        Self {
            desk,
            work,
            account,
            store,
            settings: Mutex::new(settings),
            link,
            load_problem,
            mic_tests: MicTests::default(),
            shown: Mutex::new(Vec::new()),
            sip_password: std::sync::OnceLock::new(),
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
    /// link. Settings → Phone is kept as it is: [`Agent::save_phone`] changes it (and
    /// restarts the phone). Must be called inside a tokio runtime.
    pub fn save_settings(&self, mut new: Settings) -> Result<Settings, SettingsError> {
        let mut current = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        new.phone = current.phone.clone();
        let saved = self.store.save(new)?;
        if current.router_url != saved.router_url {
            tracing::info!(router = %saved.router_url, "router URL changed");
            self.link.set_url(saved.router_url.clone());
        }
        if current.audio != saved.audio {
            self.desk.use_audio(&current.audio, &saved.audio);
        }
        *current = saved.clone();
        Ok(saved)
    }

    /// Uses `store` for the plain SIP account's password instead of the user's (tests; a
    /// store already opened is kept).
    pub fn use_sip_password_store(&self, store: SipPasswordStore) {
        let _ = self.sip_password.set(Ok(store));
    }

    fn password_store(&self) -> Result<&SipPasswordStore, crate::desk::DeskError> {
        self.sip_password
            .get_or_init(|| SipPasswordStore::for_current_user().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|message| crate::desk::DeskError::SipAccount {
                code: "sip_password_unavailable",
                message: message.clone(),
            })
    }

    /// Settings → Phone, and whether a password is kept.
    pub fn phone_settings(&self) -> PhoneSettingsView {
        let store = self.password_store().ok();
        PhoneSettingsView {
            phone: self.settings().phone,
            password_saved: store.is_some_and(SipPasswordStore::is_set),
            password_place: store.map(SipPasswordStore::describe),
            keychain_problem: store.and_then(|s| s.fallback().map(str::to_owned)),
        }
    }

    /// Saves Settings → Phone: `password` (when given; none keeps the one kept) in the
    /// password store, the rest in the settings file; then the phone is stopped, to be
    /// started again on the account now chosen ([`Agent::start_phone`]).
    pub async fn save_phone(
        &self,
        phone: PhoneSettings,
        password: Option<String>,
    ) -> Result<PhoneSettingsView, crate::desk::DeskError> {
        let as_desk = |e: SettingsError| crate::desk::DeskError::sip_account(e.code(), &e);
        let phone = phone.validated().map_err(as_desk)?;
        if let Some(p) = &password {
            crate::sip_password::check_password(p).map_err(as_desk)?;
        }
        let store = self.password_store()?;
        if phone.source == crate::settings::PhoneSource::SipAccount
            && password.is_none()
            && !store.is_set()
        {
            return Err(as_desk(SettingsError::InvalidSipAccount {
                field: "password",
                reason: "no password is kept for the account — enter it".into(),
            }));
        }
        if let Some(p) = &password {
            store.set(p).map_err(as_desk)?;
        }
        {
            let mut current = self.settings.lock().unwrap_or_else(|p| p.into_inner());
            let new = Settings {
                phone,
                ..current.clone()
            };
            *current = self.store.save(new).map_err(as_desk)?;
        }
        tracing::info!(source = ?self.settings().phone.source, "Settings → Phone saved; the phone starts again");
        self.desk.stop().await;
        Ok(self.phone_settings())
    }

    /// Forgets the plain SIP account's password (and its key). The account itself is kept,
    /// to be used again with its password entered anew; until then the phone uses the
    /// router's account, so that nothing goes on trying to register without a password. The
    /// phone is stopped, to be started again on the router's account.
    pub async fn forget_sip_password(&self) -> Result<PhoneSettingsView, crate::desk::DeskError> {
        let store = self.password_store()?;
        store
            .clear()
            .map_err(|e| crate::desk::DeskError::sip_account(e.code(), &e))?;
        let was_plain = {
            let mut current = self.settings.lock().unwrap_or_else(|p| p.into_inner());
            let was_plain = current.phone.source == crate::settings::PhoneSource::SipAccount;
            if was_plain {
                let mut new = current.clone();
                new.phone.source = crate::settings::PhoneSource::Router;
                *current = self
                    .store
                    .save(new)
                    .map_err(|e| crate::desk::DeskError::sip_account(e.code(), &e))?;
            }
            was_plain
        };
        tracing::info!(
            back_to_router = was_plain,
            "Settings → Phone: the SIP account's password is forgotten"
        );
        if was_plain {
            self.desk.stop().await;
        }
        Ok(self.phone_settings())
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
    /// Whom to watch is worked out again for the new account.
    pub fn reconnect_router(&self) {
        self.shown.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.link.watch_presence(Vec::new());
        let url = self.settings().router_url;
        self.link.set_url(url);
    }

    /// The contact-center state (Ready, Not ready, on a call, wrap-up, off duty), kept in
    /// Teams.
    pub fn work(&self) -> &crate::state::WorkState {
        &self.work
    }

    /// The softphone at the router.
    pub fn desk(&self) -> &crate::desk::DeskPhone {
        &self.desk
    }

    /// The router's agent API for the person: the signed-in account (its router token, and
    /// its UPN), else the agent named by [`crate::desk::AGENT_ENV`] (a router that checks no
    /// tokens: the demo, tests).
    pub async fn agent_api(&self) -> Result<crate::desk::AgentApi, crate::desk::DeskError> {
        use crate::router::RouterTokens;
        let me = self.account.current().await.ok().flatten();
        let agent = me
            .and_then(|a| a.username)
            .or_else(|| std::env::var(crate::desk::AGENT_ENV).ok())
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty());
        let bearer = crate::account::AccountRouterTokens(self.account.clone())
            .router_token()
            .await;
        if agent.is_none() && bearer.is_none() {
            return Err(crate::desk::DeskError::NoAgent);
        }
        crate::desk::AgentApi::new(&self.settings().router_url, bearer, agent)
    }

    /// Gets SIP credentials from the router and starts the phone on the devices of
    /// Settings → Audio; then Ready or Not ready at the router as the window shows it.
    /// Where Settings → Phone chose a plain SIP account, the phone registers with it
    /// instead, and no router is asked.
    pub async fn start_phone(&self) -> Result<(), crate::desk::DeskError> {
        let settings = self.settings();
        if let Some(account) = settings.phone.chosen_account() {
            let password = self.password_store().and_then(|s| {
                s.get()
                    .map_err(|e| crate::desk::DeskError::sip_account(e.code(), &e))?
                    .ok_or(crate::desk::DeskError::SipAccount {
                        code: "sip_password_missing",
                        message: "the SIP account has no password — enter it in Settings → Phone"
                            .into(),
                    })
            });
            return match password {
                Ok(p) => self.desk.start_plain(account, p, &settings.audio).await,
                Err(e) => {
                    self.desk.note_failure(&e, e.to_string());
                    Err(e)
                }
            };
        }
        let api = match self.agent_api().await {
            Ok(a) => a,
            Err(e) => {
                let reason = e.to_string();
                self.desk.note_failure(&e, reason);
                return Err(e);
            }
        };
        self.desk.start(api, &self.settings().audio).await?;
        self.sync_router_state().await
    }

    /// Says the window's Ready / Not ready to the router (nothing while no phone runs).
    pub async fn sync_router_state(&self) -> Result<(), crate::desk::DeskError> {
        let v = self.work.view();
        use crate::state::WorkStateKind as K;
        match v.after {
            K::Ready => self.desk.set_state(true, None).await,
            K::NotReady => self.desk.set_state(false, v.reason).await,
            K::OffDuty => {
                self.desk
                    .set_state(false, Some("off duty".to_owned()))
                    .await
            }
            _ => Ok(()),
        }
    }

    /// The agent is done with the wrap-up: the disposition and notes to the router, and back
    /// to the chosen state.
    pub async fn finish_wrap_up(
        &self,
        disposition: Option<String>,
        notes: Option<String>,
    ) -> Result<(), crate::desk::DeskError> {
        self.desk.finish_wrap_up(disposition, notes).await?;
        self.work.end_wrap_up();
        Ok(())
    }

    /// Signs the current account out: off duty first, so this app's presence session is
    /// cleared while there is still a token for it (waits at most 5 s), then the account
    /// and the router link.
    pub async fn sign_out(&self) -> Result<(), crate::account::AccountError> {
        // The phone signs off at the router while the token still works.
        self.desk.stop().await;
        let mut changes = self.work.subscribe();
        if self.work.view().teams.availability.is_some() {
            self.work.set_off_duty();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                changes.wait_for(|v| v.teams.availability.is_none() && v.teams.synced),
            )
            .await;
        } else {
            self.work.set_off_duty();
        }
        self.account.sign_out().await?;
        self.reconnect_router();
        Ok(())
    }

    /// After a sign-in: the router link with the new token, and the state set in Teams.
    pub fn signed_in(&self) {
        self.reconnect_router();
        self.work.resync();
    }

    /// Whether Teams presence comes from the router now (connected, and it serves presence).
    pub fn presence_from_router(&self) -> bool {
        let s = self.link.status();
        s.state == crate::router::ConnectionState::Connected && s.presence
    }

    /// Asks the router for the people shown and the signed-in person.
    async fn watch(&self) {
        let mut ids = self.shown.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Ok(Some(me)) = self.account.current().await {
            ids.extend(me.oid);
        }
        self.link.watch_presence(ids);
    }

    /// Presence of the people shown in the window. While the router serves presence it
    /// comes from its events (one Graph subscription for every desktop, instead of each
    /// desktop polling Graph and sharing the tenant's rate limit); people it has not sent yet,
    /// and every one when there is no such router, are read from Graph.
    pub async fn presences(
        &self,
        ids: &[String],
    ) -> Result<Vec<crate::directory::PresenceInfo>, crate::account::AccountError> {
        if !self.presence_from_router() {
            return self.account.presences(ids).await;
        }
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = ids.to_vec();
        self.watch().await;
        let mut out = self.link.known_presence(ids);
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !out.iter().any(|p| &p.id == *id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            out.extend(self.account.presences(&missing).await?);
        }
        Ok(out)
    }

    /// The signed-in person's presence: from the router while it serves presence, else
    /// from Graph.
    pub async fn my_presence(
        &self,
    ) -> Result<crate::directory::PresenceInfo, crate::account::AccountError> {
        if self.presence_from_router() {
            if let Ok(Some(me)) = self.account.current().await {
                if let Some(oid) = me.oid {
                    self.watch().await;
                    if let Some(p) = self.link.known_presence(&[oid]).pop() {
                        return Ok(p);
                    }
                }
            }
        }
        self.account.my_presence().await
    }

    /// Every presence event of the router, as it arrives (the window updates its dots at
    /// once instead of at its next refresh).
    pub fn subscribe_presence(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::directory::PresenceInfo> {
        self.link.subscribe_presence()
    }

    /// Every change of the router status.
    pub fn subscribe_router(&self) -> watch::Receiver<RouterStatus> {
        self.link.subscribe()
    }
}

/// After a queue call rang out on this phone: follows the router if it set the agent Not
/// ready (ring-no-answer, "missed call" by default), so the window, the state clock and Teams
/// say what the router does, also when its event stream is down. The router decides when the
/// offer's alert time is over; it is asked a few times over two seconds and left alone once
/// it says anything but Ready.
async fn follow_missed_offer(
    desk: crate::desk::DeskPhone,
    work: std::sync::Weak<crate::state::WorkState>,
) {
    for _ in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let Ok(st) = desk.router_status().await else {
            return;
        };
        let Some(w) = work.upgrade() else { return };
        if st.state != switchboard_api::AgentState::Ready {
            follow_router(&w, &st, "after a missed call");
            return;
        }
    }
}

/// Takes the router's Ready or Not ready (`why` for the log) into the work state, where
/// [`followed`] says so.
/// The work state's wrap-up follows the router's: it ends at `ends` (Unix ms), or now when
/// the router's is `over` (or it held none); nothing when the router has not said yet. Only a
/// wrap-up under way here is changed.
fn follow_routers_wrap_up(w: &crate::state::WorkState, ends: Option<u64>, over: bool) {
    match ends {
        Some(ends) => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let left = std::time::Duration::from_millis(ends.saturating_sub(now_ms));
            w.follow_wrap_up(Some(std::time::Instant::now() + left));
        }
        None if over => {
            w.follow_wrap_up(None);
        }
        None => {}
    }
}

fn follow_router(w: &crate::state::WorkState, st: &switchboard_api::AgentStatus, why: &str) {
    match followed(st, &w.view()) {
        Some(Followed::Ready) => {
            tracing::info!(why, "the router has the agent Ready; following it");
            w.set_ready();
        }
        Some(Followed::NotReady(reason)) => {
            tracing::info!(
                why,
                reason = %crate::state::reason_code(&reason),
                "the router has the agent Not ready; following it"
            );
            w.set_not_ready(reason);
        }
        None => {}
    }
}

/// A state the work state takes from the router.
#[derive(Debug, PartialEq, Eq)]
enum Followed {
    Ready,
    NotReady(switchboard_graph::NotReadyReason),
}

/// What to take from the router's `router` state: its Ready or Not ready with a reason
/// where the person's chosen state differs, only between calls (during a call and wrap-up the
/// router's own states rule) and never while they are Off duty (their own choice; the router
/// has them Not ready "off duty").
fn followed(
    router: &switchboard_api::AgentStatus,
    work: &crate::state::WorkStateView,
) -> Option<Followed> {
    use crate::state::WorkStateKind as K;
    if !matches!(work.state, K::Ready | K::NotReady) {
        return None;
    }
    match router.state {
        switchboard_api::AgentState::Ready => (work.after != K::Ready).then_some(Followed::Ready),
        switchboard_api::AgentState::NotReady => {
            // Not ready with no reason is where the router starts an agent it has not heard
            // from (a first registration): not a choice made for them.
            // A reason the window could not hold itself (empty, too long) is not taken either.
            let reason = crate::state::parse_reason(router.reason.as_deref()?).ok()?;
            let same = work.after == K::NotReady
                && work.reason.as_deref() == Some(crate::state::reason_code(&reason).as_str());
            (!same).then_some(Followed::NotReady(reason))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{followed, Agent, Followed};
    use crate::settings::{PhoneSettings, PhoneSource, SettingsStore, SipAccountSettings};
    use crate::sip_password::{SipPasswordStore, SIP_PASSWORD_FILE};
    use crate::LinkPolicy;

    #[tokio::test]
    async fn a_forgotten_password_is_gone_and_the_phone_goes_back_to_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::at(dir.path().join("settings.toml"), "http://127.0.0.1:9");
        let agent = Agent::start(store, LinkPolicy::default());
        let file = dir.path().join(SIP_PASSWORD_FILE);
        agent.use_sip_password_store(SipPasswordStore::at(
            switchboard_identity::EncryptedFile::new(&file),
        ));
        let account = SipAccountSettings {
            registrar: "sip:pbx.example.com".into(),
            user: "alice".into(),
            auth_user: None,
            display_name: None,
            transport: crate::settings::SipTransport::Udp,
        };
        let phone = PhoneSettings {
            source: PhoneSource::SipAccount,
            sip_account: Some(account),
        };
        let v = agent
            .save_phone(phone, Some("correct horse".into()))
            .await
            .unwrap();
        assert!(v.password_saved);
        assert!(file.exists());

        let v = agent.forget_sip_password().await.unwrap();
        assert!(!v.password_saved);
        assert_eq!(
            v.phone.source,
            PhoneSource::Router,
            "no registering without a password"
        );
        assert_eq!(
            v.phone.sip_account.as_ref().map(|a| a.user.as_str()),
            Some("alice"),
            "the account is kept, to be used again with its password"
        );
        assert!(!file.exists(), "the encrypted password is deleted");
        let on_disk = std::fs::read_to_string(dir.path().join("settings.toml")).unwrap();
        assert!(on_disk.contains("source = \"router\""), "{on_disk}");
        // The plain account cannot be chosen again without entering the password.
        let again = PhoneSettings {
            source: PhoneSource::SipAccount,
            sip_account: v.phone.sip_account.clone(),
        };
        let refused = agent.save_phone(again, None).await.unwrap_err();
        assert_eq!(refused.code(), "invalid_sip_password");
        // Forgetting twice is no error.
        assert!(!agent.forget_sip_password().await.unwrap().password_saved);
    }

    use crate::state::{WorkStateKind as K, WorkStateView};
    use switchboard_api::{AgentState, AgentStatus};
    use switchboard_graph::NotReadyReason;

    fn router(state: AgentState, reason: Option<&str>) -> AgentStatus {
        AgentStatus {
            agent: "AdeleV@contoso.example".into(),
            tenant: "contoso".into(),
            state,
            reason: reason.map(str::to_owned),
            registered: true,
            teams: None,
            dispositions: Vec::new(),
            consult: None,
            wrap_up_seconds_left: None,
            monitoring: None,
        }
    }

    fn work(state: K, after: K, reason: Option<&str>) -> WorkStateView {
        crate::state::test_view(state, after, reason)
    }

    #[test]
    fn the_work_state_follows_the_routers_ready_and_not_ready_between_calls() {
        let missed = router(AgentState::NotReady, Some("missed call"));
        let other = |r: &str| Some(Followed::NotReady(NotReadyReason::Other(r.into())));
        assert_eq!(
            followed(&missed, &work(K::Ready, K::Ready, None)),
            other("missed call")
        );
        // A known reason keeps its kind; Not ready with none (a first registration) is not
        // taken.
        assert_eq!(
            followed(
                &router(AgentState::NotReady, Some("break")),
                &work(K::Ready, K::Ready, None)
            ),
            Some(Followed::NotReady(NotReadyReason::Break))
        );
        assert_eq!(
            followed(
                &router(AgentState::NotReady, None),
                &work(K::Ready, K::Ready, None)
            ),
            None
        );
        // Another reason is followed; the same one is not.
        assert_eq!(
            followed(
                &router(AgentState::NotReady, Some("coaching")),
                &work(K::NotReady, K::NotReady, Some("lunch"))
            ),
            Some(Followed::NotReady(NotReadyReason::Coaching))
        );
        assert_eq!(
            followed(
                &router(AgentState::NotReady, Some("lunch")),
                &work(K::NotReady, K::NotReady, Some("lunch"))
            ),
            None
        );
        // Ready from Not ready (a supervisor's); Ready when Ready already is nothing.
        let ready = router(AgentState::Ready, None);
        assert_eq!(
            followed(&ready, &work(K::NotReady, K::NotReady, Some("lunch"))),
            Some(Followed::Ready)
        );
        assert_eq!(followed(&ready, &work(K::Ready, K::Ready, None)), None);
        // During calls, wrap-up and Off duty the router's states are not taken; nor are its
        // call states.
        for (state, after) in [
            (K::OffDuty, K::OffDuty),
            (K::OnCall, K::Ready),
            (K::WrapUp, K::Ready),
        ] {
            assert_eq!(
                followed(&missed, &work(state, after, None)),
                None,
                "{state:?}"
            );
            assert_eq!(
                followed(&ready, &work(state, after, None)),
                None,
                "{state:?}"
            );
        }
        for s in [
            AgentState::OnCall,
            AgentState::Ringing,
            AgentState::WrapUp,
            AgentState::Offline,
        ] {
            assert_eq!(
                followed(&router(s, None), &work(K::Ready, K::Ready, None)),
                None
            );
        }
        // Nor a reason the window could not hold itself.
        for odd in [String::new(), "x".repeat(200)] {
            assert_eq!(
                followed(
                    &router(AgentState::NotReady, Some(&odd)),
                    &work(K::Ready, K::Ready, None)
                ),
                None
            );
        }
    }
}
