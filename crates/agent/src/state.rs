//! The agent's contact-center state — Ready, Not ready (with a reason), On a call, Wrap-up,
//! Off duty — and the Teams presence it sets.
//!
//! [`WorkMachine`] is the state machine alone (explicit instants, no IO), so its rules are
//! unit-tested; [`WorkState`] keeps one on a task of its own and mirrors it into Teams through
//! `setPresence` with this app's presence session (the pairs of
//! [`switchboard_graph::presence_for`]): Ready → Available, Not ready → Away (or
//! DoNotDisturb / Presenting for meetings, training, coaching), on a call and in wrap-up →
//! Busy / InACall, Off duty → the session is cleared and Teams shows what Teams works out.
//!
//! Rules a contact center expects:
//! - a call can start in any state; when it ends a working agent (Ready or Not ready) goes to
//!   wrap-up for the configured time, then back to the state they had — or to the one they
//!   picked during the call or wrap-up; someone Off duty (an SME taking a transfer) goes
//!   straight back to Off duty;
//! - several calls at once (a consult) are one "on a call" until the last ends; a conference
//!   shows as Busy / InAConferenceCall;
//! - the Teams session is set with an expiry and renewed before it (Graph expires app
//!   sessions), retried after a failure, and cleared when the person goes off duty or the
//!   app stops.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use switchboard_graph::{AgentState, NotReadyReason};

/// The longest "other" not-ready reason kept.
pub const MAX_REASON: usize = 64;

/// The states a person sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum WorkStateKind {
    /// Not working in the contact center (SMEs, or an agent before and after their shift).
    OffDuty,
    Ready,
    NotReady,
    OnCall,
    OnConference,
    WrapUp,
}

/// The not-ready reasons the window and the tray offer, by code (the person may also type one).
pub const OFFERED_REASONS: [&str; 7] = [
    "break",
    "lunch",
    "personal",
    "admin_work",
    "meeting",
    "training",
    "coaching",
];

/// A not-ready reason as the window and the CLI name it: `break`, `lunch`, `personal`,
/// `admin_work`, `meeting`, `training`, `coaching`, or any other short text.
pub fn parse_reason(code: &str) -> Result<NotReadyReason, StateError> {
    let code = code.trim();
    Ok(match code {
        "break" => NotReadyReason::Break,
        "lunch" => NotReadyReason::Lunch,
        "personal" => NotReadyReason::Personal,
        "admin_work" => NotReadyReason::AdminWork,
        "meeting" => NotReadyReason::Meeting,
        "training" => NotReadyReason::Training,
        "coaching" => NotReadyReason::Coaching,
        "" => return Err(StateError::Reason("a not-ready reason is needed".into())),
        other if other.chars().count() > MAX_REASON || other.chars().any(char::is_control) => {
            return Err(StateError::Reason(format!(
                "a not-ready reason is at most {MAX_REASON} characters of text"
            )))
        }
        other => NotReadyReason::Other(other.to_owned()),
    })
}

/// The code of a reason (the inverse of [`parse_reason`]).
pub fn reason_code(r: &NotReadyReason) -> String {
    match r {
        NotReadyReason::Break => "break".into(),
        NotReadyReason::Lunch => "lunch".into(),
        NotReadyReason::Personal => "personal".into(),
        NotReadyReason::AdminWork => "admin_work".into(),
        NotReadyReason::Meeting => "meeting".into(),
        NotReadyReason::Training => "training".into(),
        NotReadyReason::Coaching => "coaching".into(),
        NotReadyReason::Other(s) => s.clone(),
    }
}

/// What went wrong with a state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Reason(String),
}

impl StateError {
    /// A stable code for the UI.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Reason(_) => "invalid_reason",
        }
    }
}

/// A state outside calls.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    OffDuty,
    Ready,
    NotReady(NotReadyReason),
}

impl Base {
    fn agent_state(&self) -> AgentState {
        match self {
            Base::OffDuty => AgentState::LoggedOut,
            Base::Ready => AgentState::Ready,
            Base::NotReady(r) => AgentState::NotReady(r.clone()),
        }
    }
}

/// The state machine, without IO.
#[derive(Debug, Clone)]
pub struct WorkMachine {
    /// Where the person returns after calls and wrap-up (changed by their choices).
    base: Base,
    /// Calls up now, and how many of them are conferences.
    calls: u32,
    conferences: u32,
    /// Wrap-up under way, until this instant.
    wrap_up_until: Option<Instant>,
    wrap_up: Duration,
    since: SystemTime,
}

impl WorkMachine {
    /// Off duty, with this wrap-up time after calls (zero: none).
    pub fn new(wrap_up: Duration) -> Self {
        Self {
            base: Base::OffDuty,
            calls: 0,
            conferences: 0,
            wrap_up_until: None,
            wrap_up,
            since: SystemTime::now(),
        }
    }

    fn changed(&mut self) {
        self.since = SystemTime::now();
    }

    /// What the state is now (call, then wrap-up, then the chosen state).
    pub fn agent_state(&self) -> AgentState {
        if self.calls > 0 {
            if self.conferences > 0 {
                AgentState::OnConference
            } else {
                AgentState::OnCall
            }
        } else if self.wrap_up_until.is_some() {
            AgentState::WrapUp
        } else {
            self.base.agent_state()
        }
    }

    /// Ready for calls. During a call or wrap-up it is where the person goes afterwards;
    /// in wrap-up it also ends the wrap-up (the "Done" of the window).
    pub fn set_ready(&mut self) {
        self.base = Base::Ready;
        self.wrap_up_until = None;
        self.changed();
    }

    /// Not ready, for a reason; as [`Self::set_ready`] during calls and wrap-up.
    pub fn set_not_ready(&mut self, reason: NotReadyReason) {
        self.base = Base::NotReady(reason);
        self.wrap_up_until = None;
        self.changed();
    }

    /// Off duty (no presence session).
    pub fn set_off_duty(&mut self) {
        self.base = Base::OffDuty;
        self.wrap_up_until = None;
        self.changed();
    }

    /// A call started (`conference`: more than two parties).
    pub fn call_started(&mut self, conference: bool) {
        self.calls += 1;
        if conference {
            self.conferences += 1;
        }
        self.wrap_up_until = None;
        self.changed();
    }

    /// A call ended; the last one starts wrap-up for a working agent.
    pub fn call_ended(&mut self, conference: bool, now: Instant) {
        if self.calls == 0 {
            return;
        }
        self.calls -= 1;
        if conference {
            self.conferences = self.conferences.saturating_sub(1);
        }
        if self.calls == 0 {
            self.conferences = 0;
            if self.base != Base::OffDuty && !self.wrap_up.is_zero() {
                self.wrap_up_until = Some(now + self.wrap_up);
            }
        }
        self.changed();
    }

    /// Ends a wrap-up now (the agent is done: the window's Done), back to the chosen state.
    pub fn end_wrap_up(&mut self) {
        if self.wrap_up_until.take().is_some() {
            self.changed();
        }
    }

    /// Follows the router's wrap-up of the queue call just ended, where one is under way here
    /// (this app's own wrap-up time is the router's guess until the router says): it ends at
    /// `until`, or now when `until` is none or past (the router holds none, or it is over).
    pub fn follow_wrap_up(&mut self, until: Option<Instant>, now: Instant) {
        if self.wrap_up_until.is_none() {
            return;
        }
        match until {
            Some(u) if u > now => self.wrap_up_until = Some(u),
            _ => {
                self.wrap_up_until = None;
                self.changed();
            }
        }
    }

    /// Ends the wrap-up at its time; true when the state changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        match self.wrap_up_until {
            Some(t) if now >= t => {
                self.wrap_up_until = None;
                self.changed();
                true
            }
            _ => false,
        }
    }

    /// When the wrap-up ends, if one is under way.
    pub fn wrap_up_until(&self) -> Option<Instant> {
        self.wrap_up_until
    }

    /// The state for the window.
    pub fn view(&self, now: Instant) -> WorkStateView {
        let state = match self.agent_state() {
            AgentState::Ready => WorkStateKind::Ready,
            AgentState::NotReady(_) => WorkStateKind::NotReady,
            AgentState::OnCall => WorkStateKind::OnCall,
            AgentState::OnConference => WorkStateKind::OnConference,
            AgentState::WrapUp => WorkStateKind::WrapUp,
            AgentState::LoggedOut => WorkStateKind::OffDuty,
        };
        let (after, reason) = match &self.base {
            Base::OffDuty => (WorkStateKind::OffDuty, None),
            Base::Ready => (WorkStateKind::Ready, None),
            Base::NotReady(r) => (WorkStateKind::NotReady, Some(reason_code(r))),
        };
        WorkStateView {
            state,
            reason,
            after,
            since_unix_ms: unix_ms(self.since),
            wrap_up_seconds_left: self
                .wrap_up_until
                .map(|t| u32::try_from(t.saturating_duration_since(now).as_secs()).unwrap_or(0)),
            teams: TeamsSync::default(),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How the state shows in Teams.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct TeamsSync {
    /// The availability / activity this app's session sets now (`None`: no session).
    pub availability: Option<String>,
    pub activity: Option<String>,
    /// Set in Teams (false while it is being set, or when it failed).
    pub synced: bool,
    /// Why it could not be set, for a person (retried on its own).
    pub error: Option<String>,
    /// The error's code (`not_signed_in`, `sign_in_again`, `graph`, …).
    pub error_code: Option<String>,
}

/// The state as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct WorkStateView {
    pub state: WorkStateKind,
    /// The not-ready reason chosen (also during calls, for afterwards).
    pub reason: Option<String>,
    /// The state the person returns to after calls and wrap-up.
    pub after: WorkStateKind,
    /// When the state last changed (Unix ms).
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub since_unix_ms: u64,
    /// Seconds of wrap-up left.
    pub wrap_up_seconds_left: Option<u32>,
    pub teams: TeamsSync,
}

/// How long each presence session is set for, and how often it is renewed.
#[derive(Debug, Clone, Copy)]
pub struct SessionTiming {
    /// `expirationDuration` of setPresence (Graph takes 5 min to 4 h).
    pub expiration: Duration,
    /// Renew after this long.
    pub renew_after: Duration,
    /// Try again after a failure.
    pub retry_after: Duration,
}

impl Default for SessionTiming {
    /// An hour's expiry (a crashed app's state does not linger past it), renewed every
    /// 4 minutes: Microsoft's "Manage presence state" page says a session times out — an
    /// Available one turns AvailableIdle after 5 minutes, then Away — unless setPresence is
    /// called again before the timeout.
    fn default() -> Self {
        Self {
            expiration: Duration::from_secs(60 * 60),
            renew_after: Duration::from_secs(4 * 60),
            retry_after: Duration::from_secs(15),
        }
    }
}

/// An availability / activity pair of setPresence.
pub type Pair = (switchboard_graph::Availability, switchboard_graph::Activity);

/// What [`PresenceSink::apply`] returns.
pub type ApplyFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::account::AccountError>> + Send + 'a>,
>;

/// Where the presence session goes: the signed-in account's Graph (or a test's stand-in).
pub trait PresenceSink: Send + Sync + 'static {
    /// Sets this app's presence session for the state, or clears it (`None`).
    fn apply(&self, state: Option<Pair>, expiration: Duration) -> ApplyFuture<'_>;
}

impl PresenceSink for std::sync::Arc<crate::account::AccountSession> {
    fn apply(&self, state: Option<Pair>, expiration: Duration) -> ApplyFuture<'_> {
        Box::pin(async move { self.set_session_presence(state, expiration).await })
    }
}

/// The agent's state, kept in Teams. Dropping it stops the task without clearing the
/// session (it expires); [`WorkState::finish`] clears it.
pub struct WorkState {
    machine: std::sync::Arc<std::sync::Mutex<WorkMachine>>,
    view: tokio::sync::watch::Sender<WorkStateView>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// Set by [`WorkState::resync`]: try now, not at the next retry time.
    now: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WorkState {
    /// Off duty, with `wrap_up` after calls; starts the task that keeps Teams in step. Must
    /// be called inside a tokio runtime.
    pub fn start(sink: impl PresenceSink, wrap_up: Duration, timing: SessionTiming) -> Self {
        let machine = std::sync::Arc::new(std::sync::Mutex::new(WorkMachine::new(wrap_up)));
        let first = machine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .view(Instant::now());
        let (view, _) = tokio::sync::watch::channel(first);
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let now = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(keep(
            sink,
            machine.clone(),
            view.clone(),
            Wake {
                notify: wake.clone(),
                now: now.clone(),
            },
            stop_rx,
            timing,
        ));
        Self {
            machine,
            view,
            wake,
            now,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    fn change(&self, f: impl FnOnce(&mut WorkMachine)) -> WorkStateView {
        let mut m = self.machine.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m);
        let v = m.view(Instant::now());
        drop(m);
        self.view.send_modify(|cur| carry_teams(cur, v));
        self.wake.notify_one();
        self.view.borrow().clone()
    }

    pub fn set_ready(&self) -> WorkStateView {
        self.change(WorkMachine::set_ready)
    }

    pub fn set_not_ready(&self, reason: NotReadyReason) -> WorkStateView {
        self.change(|m| m.set_not_ready(reason))
    }

    pub fn set_off_duty(&self) -> WorkStateView {
        self.change(WorkMachine::set_off_duty)
    }

    pub fn call_started(&self, conference: bool) -> WorkStateView {
        self.change(|m| m.call_started(conference))
    }

    pub fn call_ended(&self, conference: bool) -> WorkStateView {
        self.change(|m| m.call_ended(conference, Instant::now()))
    }

    /// Follows the router's wrap-up (see [`WorkMachine::follow_wrap_up`]).
    pub fn follow_wrap_up(&self, until: Option<Instant>) -> WorkStateView {
        self.change(|m| m.follow_wrap_up(until, Instant::now()))
    }

    /// The agent is done with the wrap-up: back to the state they chose.
    pub fn end_wrap_up(&self) -> WorkStateView {
        self.change(WorkMachine::end_wrap_up)
    }

    /// The state now.
    pub fn view(&self) -> WorkStateView {
        self.view.borrow().clone()
    }

    /// Every change (the state, the wrap-up countdown, the Teams outcome).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<WorkStateView> {
        self.view.subscribe()
    }

    /// Sets the Teams session again now (after a sign-in), even if a failed attempt would
    /// otherwise wait for its retry time.
    pub fn resync(&self) {
        self.view.send_modify(|v| v.teams.synced = false);
        self.now.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Goes off duty, clears the Teams session (waits at most 10 s) and stops.
    pub async fn finish(&self) {
        self.set_off_duty();
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for WorkState {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Replaces the view with `v`, keeping the Teams part as it is until the task has set the
/// new state (still "synced" only when the state sets the same pair).
fn carry_teams(cur: &mut WorkStateView, mut v: WorkStateView) {
    let want = presence_of_view(&v);
    v.teams = cur.teams.clone();
    v.teams.synced = v.teams.synced
        && (v.teams.availability.as_deref(), v.teams.activity.as_deref())
            == (want.0.as_deref(), want.1.as_deref());
    *cur = v;
}

/// The pair a view's state sets, as strings.
fn presence_of_view(v: &WorkStateView) -> (Option<String>, Option<String>) {
    let state = match v.state {
        WorkStateKind::OffDuty => AgentState::LoggedOut,
        WorkStateKind::Ready => AgentState::Ready,
        WorkStateKind::NotReady => AgentState::NotReady(
            v.reason
                .as_deref()
                .and_then(|r| parse_reason(r).ok())
                .unwrap_or(NotReadyReason::Other(String::new())),
        ),
        WorkStateKind::OnCall => AgentState::OnCall,
        WorkStateKind::OnConference => AgentState::OnConference,
        WorkStateKind::WrapUp => AgentState::WrapUp,
    };
    match switchboard_graph::presence_for(&state) {
        Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
        None => (None, None),
    }
}

/// How the task is woken: a change, or a change that must not wait for a retry time.
struct Wake {
    notify: std::sync::Arc<tokio::sync::Notify>,
    now: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The task: keeps Teams at the machine's state, ends wrap-ups, renews the session.
async fn keep(
    sink: impl PresenceSink,
    machine: std::sync::Arc<std::sync::Mutex<WorkMachine>>,
    view: tokio::sync::watch::Sender<WorkStateView>,
    wake: Wake,
    mut stop: tokio::sync::watch::Receiver<bool>,
    timing: SessionTiming,
) {
    // What Teams has from us: None = nothing (no session), and when it was set.
    let mut applied: Option<Pair> = None;
    let mut applied_at: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    // A session an earlier run left behind (it crashed, or was killed) is cleared once at
    // the start; failing that (nobody signed in, offline) it simply expires.
    let mut leftover_checked = false;
    loop {
        let now = Instant::now();
        let (want, deadline) = {
            let mut m = machine.lock().unwrap_or_else(|p| p.into_inner());
            if m.tick(now) {
                let v = m.view(now);
                view.send_modify(|cur| carry_teams(cur, v));
            } else if let Some(left) = m.view(now).wrap_up_seconds_left {
                view.send_if_modified(|cur| {
                    let changed = cur.wrap_up_seconds_left != Some(left);
                    cur.wrap_up_seconds_left = Some(left);
                    changed
                });
            }
            let want = switchboard_graph::presence_for(&m.agent_state());
            // Wake at least each second during wrap-up (the countdown).
            let deadline = m
                .wrap_up_until()
                .map(|t| t.min(now + Duration::from_secs(1)));
            (want, deadline)
        };
        if !leftover_checked {
            leftover_checked = true;
            if want.is_none() {
                match sink.apply(None, timing.expiration).await {
                    Ok(()) => tracing::debug!("no presence session left from an earlier run"),
                    Err(e) => tracing::debug!(
                        code = e.code(),
                        "leftover presence session not cleared: {e}"
                    ),
                }
            }
        }
        if wake.now.swap(false, std::sync::atomic::Ordering::SeqCst) {
            retry_at = None;
        }
        let resync = !view.borrow().teams.synced;
        let renew_due = applied.is_some()
            && applied_at.is_some_and(|t| now.duration_since(t) >= timing.renew_after);
        let retry_ok = retry_at.is_none_or(|t| now >= t);
        if (want != applied || renew_due || resync) && retry_ok {
            // Nothing to clear when nothing was set and nothing is wanted.
            let result = if want.is_none() && applied.is_none() {
                Ok(())
            } else {
                sink.apply(want.clone(), timing.expiration).await
            };
            let (a, b) = match &want {
                Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
                None => (None, None),
            };
            match result {
                Ok(()) => {
                    if want != applied {
                        tracing::info!(availability = ?a, activity = ?b, "Teams presence set for the agent state");
                    }
                    applied = want.clone();
                    applied_at = Some(Instant::now());
                    retry_at = None;
                    view.send_modify(|v| {
                        // The state may have moved on meanwhile: synced only if it still
                        // sets this pair (else the next round sets the new one).
                        let synced = presence_of_view(v) == (a.clone(), b.clone());
                        v.teams = TeamsSync {
                            availability: a,
                            activity: b,
                            synced,
                            error: None,
                            error_code: None,
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), "Teams presence not set: {e}");
                    retry_at = Some(Instant::now() + timing.retry_after);
                    view.send_modify(|v| {
                        v.teams = TeamsSync {
                            availability: a,
                            activity: b,
                            synced: false,
                            error: Some(e.to_string()),
                            error_code: Some(e.code().to_owned()),
                        }
                    });
                }
            }
            continue;
        }
        let mut next = deadline;
        if let Some(t) = applied_at.filter(|_| applied.is_some()) {
            let r = t + timing.renew_after;
            next = Some(next.map_or(r, |n| n.min(r)));
        }
        if let Some(r) = retry_at {
            next = Some(next.map_or(r, |n| n.min(r)));
        }
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wake.notify.notified() => {}
            _ = sleep => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if applied.is_some() {
        let r = sink.apply(None, timing.expiration).await;
        match &r {
            Ok(()) => tracing::info!("Teams presence session cleared"),
            Err(e) => tracing::warn!(code = e.code(), "Teams presence session not cleared: {e}"),
        }
        view.send_modify(|v| {
            v.teams = TeamsSync {
                synced: r.is_ok(),
                error: r.as_ref().err().map(ToString::to_string),
                error_code: r.as_ref().err().map(|e| e.code().to_owned()),
                ..TeamsSync::default()
            }
        });
    }
}

/// A view of `state` (then `after`, with `reason`) as of the epoch, for tests.
#[cfg(test)]
pub(crate) fn test_view(
    state: WorkStateKind,
    after: WorkStateKind,
    reason: Option<&str>,
) -> WorkStateView {
    WorkStateView {
        state,
        reason: reason.map(str::to_owned),
        after,
        since_unix_ms: 0,
        wrap_up_seconds_left: None,
        teams: TeamsSync::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_graph::{presence_for, Activity, Availability};

    fn pair(m: &WorkMachine) -> Option<(String, String)> {
        presence_for(&m.agent_state()).map(|(a, b)| (a.to_string(), b.to_string()))
    }

    fn p(a: &str, b: &str) -> Option<(String, String)> {
        Some((a.into(), b.into()))
    }

    #[test]
    fn states_set_the_documented_teams_pairs() {
        let t0 = Instant::now();
        let mut m = WorkMachine::new(Duration::from_secs(30));
        assert_eq!(pair(&m), None);
        m.set_ready();
        assert_eq!(pair(&m), p("Available", "Available"));
        m.set_not_ready(NotReadyReason::Lunch);
        assert_eq!(pair(&m), p("Away", "Away"));
        m.set_not_ready(NotReadyReason::Training);
        assert_eq!(pair(&m), p("DoNotDisturb", "Presenting"));
        m.call_started(false);
        assert_eq!(pair(&m), p("Busy", "InACall"));
        m.call_started(true);
        assert_eq!(pair(&m), p("Busy", "InAConferenceCall"));
        m.call_ended(true, t0);
        assert_eq!(pair(&m), p("Busy", "InACall"));
        m.call_ended(false, t0);
        assert_eq!(m.view(t0).state, WorkStateKind::WrapUp);
        assert_eq!(m.view(t0).wrap_up_seconds_left, Some(30));
        assert_eq!(pair(&m), p("Busy", "InACall"));
        assert!(!m.tick(t0 + Duration::from_secs(29)));
        assert!(m.tick(t0 + Duration::from_secs(30)));
        // Back to what they had: not ready for training.
        assert_eq!(pair(&m), p("DoNotDisturb", "Presenting"));
        assert_eq!(m.view(t0).reason.as_deref(), Some("training"));
        m.set_off_duty();
        assert_eq!(pair(&m), None);
        let _ = (Availability::Available, Activity::Available);
    }

    #[test]
    fn a_choice_during_a_call_applies_after_it_and_ready_ends_wrap_up() {
        let t0 = Instant::now();
        let mut m = WorkMachine::new(Duration::from_secs(20));
        m.set_ready();
        m.call_started(false);
        m.set_not_ready(NotReadyReason::Break);
        let v = m.view(t0);
        assert_eq!(
            (v.state, v.after),
            (WorkStateKind::OnCall, WorkStateKind::NotReady)
        );
        m.call_ended(false, t0);
        assert_eq!(m.view(t0).state, WorkStateKind::WrapUp);
        assert_eq!(m.view(t0).after, WorkStateKind::NotReady);
        // "Done": ready now, wrap-up over.
        m.set_ready();
        assert_eq!(m.view(t0).state, WorkStateKind::Ready);
        assert_eq!(m.wrap_up_until(), None);
        // A call ending that never started changes nothing.
        m.call_ended(false, t0);
        assert_eq!(m.view(t0).state, WorkStateKind::Ready);
    }

    #[test]
    fn the_routers_wrap_up_end_is_followed_where_one_is_under_way() {
        let t0 = Instant::now();
        let mut m = WorkMachine::new(Duration::from_secs(30));
        m.set_ready();
        // No wrap-up here: the router's makes none.
        m.follow_wrap_up(Some(t0 + Duration::from_secs(120)), t0);
        assert_eq!(m.wrap_up_until(), None);
        m.call_started(false);
        m.call_ended(false, t0);
        // The router's 120 s, not this app's 30 s.
        m.follow_wrap_up(Some(t0 + Duration::from_secs(120)), t0);
        let v = m.view(t0 + Duration::from_secs(60));
        assert_eq!(
            (v.state, v.wrap_up_seconds_left),
            (WorkStateKind::WrapUp, Some(60))
        );
        assert!(!m.tick(t0 + Duration::from_secs(119)));
        assert!(m.tick(t0 + Duration::from_secs(120)));
        assert_eq!(m.agent_state(), AgentState::Ready);
        // A queue without wrap-up time (or the router's end past): over now.
        m.call_started(false);
        m.call_ended(false, t0);
        m.follow_wrap_up(None, t0);
        assert_eq!(m.agent_state(), AgentState::Ready);
        m.call_started(false);
        m.call_ended(false, t0);
        m.follow_wrap_up(Some(t0), t0 + Duration::from_secs(1));
        assert_eq!(m.wrap_up_until(), None);
    }

    #[test]
    fn done_ends_wrap_up_back_to_the_chosen_state() {
        let t0 = Instant::now();
        let mut m = WorkMachine::new(Duration::from_secs(30));
        m.set_not_ready(NotReadyReason::Lunch);
        m.call_started(false);
        m.call_ended(false, t0);
        assert_eq!(m.agent_state(), AgentState::WrapUp);
        m.end_wrap_up();
        assert_eq!(m.agent_state(), AgentState::NotReady(NotReadyReason::Lunch));
        assert_eq!(m.wrap_up_until(), None);
    }

    #[test]
    fn off_duty_people_and_zero_wrap_up_skip_wrap_up() {
        let t0 = Instant::now();
        let mut sme = WorkMachine::new(Duration::from_secs(30));
        sme.call_started(false);
        assert_eq!(pair(&sme), p("Busy", "InACall"));
        sme.call_ended(false, t0);
        assert_eq!(sme.view(t0).state, WorkStateKind::OffDuty);
        let mut quick = WorkMachine::new(Duration::ZERO);
        quick.set_ready();
        quick.call_started(false);
        quick.call_ended(false, t0);
        assert_eq!(quick.view(t0).state, WorkStateKind::Ready);
    }

    #[test]
    fn reasons_round_trip_and_bad_ones_are_refused() {
        for code in OFFERED_REASONS.into_iter().chain(["Team huddle"]) {
            assert_eq!(reason_code(&parse_reason(code).unwrap()), code);
        }
        assert_eq!(parse_reason(" ").unwrap_err().code(), "invalid_reason");
        assert!(parse_reason(&"x".repeat(65)).is_err());
        assert!(parse_reason("a\u{7}b").is_err());
    }
}
