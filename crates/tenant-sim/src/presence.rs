//! Presence as Microsoft Graph documents it, as a sans-IO core: each user has presence
//! sessions (the simulated Teams client, and one per application through `setPresence`), an
//! optional user-preferred presence and a status message. The visible presence aggregates
//! them: user-preferred beats everything (when at least one session exists); otherwise the
//! strongest session wins (DoNotDisturb > Busy > Available > Away, the documented order,
//! with the idle and BeRightBack states in between). App sessions expire after their
//! `expirationDuration` and an `Available` app session fades to AvailableIdle after 5 minutes
//! and to Away after 10 unless refreshed, as the setPresence page describes.
//!
//! Every method takes `now`; changes in the aggregate come back as [`PresenceChange`]s.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A presence pair as Graph spells it, e.g. `("Busy", "InACall")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// `availability`.
    pub availability: String,
    /// `activity`.
    pub activity: String,
}

impl Pair {
    /// From two strings.
    pub fn new(availability: &str, activity: &str) -> Self {
        Self {
            availability: availability.to_string(),
            activity: activity.to_string(),
        }
    }
    fn offline() -> Self {
        Self::new("Offline", "Offline")
    }
}

/// Documented `availability` values.
pub const AVAILABILITIES: &[&str] = &[
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
    "PresenceUnknown",
];
/// Documented `activity` values.
pub const ACTIVITIES: &[&str] = &[
    "Available",
    "Away",
    "BeRightBack",
    "Busy",
    "DoNotDisturb",
    "InACall",
    "InAConferenceCall",
    "Inactive",
    "InAMeeting",
    "Offline",
    "OffWork",
    "OutOfOffice",
    "PresenceUnknown",
    "Presenting",
    "UrgentInterruptionsOnly",
];

/// Pairs `setPresence` accepts.
pub const SET_PRESENCE_PAIRS: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// Pairs `setUserPreferredPresence` accepts.
pub const PREFERRED_PAIRS: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// Aggregation rank of an availability (higher wins).
fn rank(availability: &str) -> u8 {
    match availability {
        "DoNotDisturb" => 8,
        "Busy" => 7,
        "BusyIdle" => 6,
        "Available" => 5,
        "AvailableIdle" => 4,
        "BeRightBack" => 3,
        "Away" => 2,
        "Offline" => 1,
        _ => 0,
    }
}

/// Why a presence call was refused (→ Graph 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// Not one of the documented pairs.
    #[error("The availability '{0}' and activity '{1}' combination is not supported; see the documented combinations.")]
    InvalidPair(String, String),
    /// Outside PT5M..PT4H.
    #[error("expirationDuration must be between PT5M and PT4H (got '{0}').")]
    InvalidDuration(String),
    /// `sessionId` missing or empty.
    #[error("sessionId is required and must be the application's client id.")]
    MissingSession,
    /// `clearPresence` of a session that does not exist (never set, cleared, or timed out):
    /// Graph answers 404.
    #[error("The presence session '{0}' was not found.")]
    SessionNotFound(String),
}

/// A status message (`setStatusMessage`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusMessage {
    /// Text.
    pub content: String,
    /// `text` or `html`.
    pub content_type: String,
    /// When it stops showing (`None`: never).
    pub expires_at: Option<Instant>,
    /// The expiry as sent (`expiryDateTime`), echoed back to the owner.
    pub expiry_raw: Option<serde_json::Value>,
    /// When it was set, RFC 3339.
    pub published: String,
}

#[derive(Debug, Clone)]
struct AppSession {
    pair: Pair,
    set_at: Instant,
    expires_at: Instant,
}

#[derive(Debug, Clone)]
struct Preferred {
    pair: Pair,
    expires_at: Instant,
}

#[derive(Debug, Clone, Default)]
struct UserPresence {
    teams: Option<Pair>,
    apps: BTreeMap<String, AppSession>,
    preferred: Option<Preferred>,
    status: Option<StatusMessage>,
    published: Option<Pair>,
}

/// A change in a user's aggregated presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// User object id.
    pub user_id: String,
    /// The new aggregate.
    pub presence: Pair,
}

/// What `GET .../presence` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceView {
    /// The aggregate.
    pub pair: Pair,
    /// Status message, if set and not expired.
    pub status: Option<StatusMessage>,
}

/// All users' presence.
#[derive(Debug, Default)]
pub struct PresenceBook {
    users: HashMap<String, UserPresence>,
}

/// Default preferred-presence expiry: 1 day for Busy/DoNotDisturb, 7 days otherwise.
fn preferred_default(availability: &str) -> Duration {
    if availability == "Busy" || availability == "DoNotDisturb" {
        Duration::from_secs(86_400)
    } else {
        Duration::from_secs(7 * 86_400)
    }
}

/// Parses an ISO 8601 duration of days/hours/minutes/seconds (`PT5M`, `PT1H30M`, `P1D`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs: f64 = 0.0;
    let mut any = false;
    let mut eat = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let mult = units.iter().find(|(u, _)| *u == c)?.1;
                let v: f64 = num.parse().ok()?;
                secs += v * mult;
                num.clear();
                any = true;
            }
        }
        if num.is_empty() {
            Some(())
        } else {
            None
        }
    };
    eat(date, &[('D', 86_400.0), ('W', 604_800.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        eat(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any || !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

const FADE_IDLE: Duration = Duration::from_secs(5 * 60);
const FADE_AWAY: Duration = Duration::from_secs(10 * 60);

impl UserPresence {
    fn prune(&mut self, now: Instant) {
        self.apps.retain(|_, s| s.expires_at > now);
        if self.preferred.as_ref().is_some_and(|p| p.expires_at <= now) {
            self.preferred = None;
        }
        if self
            .status
            .as_ref()
            .is_some_and(|s| s.expires_at.is_some_and(|e| e <= now))
        {
            self.status = None;
        }
    }

    fn aggregate(&self, now: Instant) -> Pair {
        let active_apps: Vec<&AppSession> =
            self.apps.values().filter(|s| s.expires_at > now).collect();
        if self.teams.is_none() && active_apps.is_empty() {
            return Pair::offline();
        }
        if let Some(p) = self.preferred.as_ref().filter(|p| p.expires_at > now) {
            return p.pair.clone();
        }
        let mut best: Option<Pair> = self.teams.clone();
        for s in active_apps {
            let mut pair = s.pair.clone();
            if pair.availability == "Available" {
                let idle = now.saturating_duration_since(s.set_at);
                if idle >= FADE_AWAY {
                    pair = Pair::new("Away", "Away");
                } else if idle >= FADE_IDLE {
                    pair = Pair::new("AvailableIdle", "Inactive");
                }
            }
            if best
                .as_ref()
                .is_none_or(|b| rank(&pair.availability) > rank(&b.availability))
            {
                best = Some(pair);
            }
        }
        best.unwrap_or_else(Pair::offline)
    }
}

impl PresenceBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn user(&mut self, id: &str) -> &mut UserPresence {
        self.users.entry(id.to_string()).or_default()
    }

    fn publish(&mut self, id: &str, now: Instant) -> Option<PresenceChange> {
        let u = self.user(id);
        u.prune(now);
        let agg = u.aggregate(now);
        if u.published.as_ref() == Some(&agg) {
            return None;
        }
        let first = u.published.is_none();
        u.published = Some(agg.clone());
        if first {
            // The first computation is the baseline, not a change anyone saw.
            return None;
        }
        Some(PresenceChange {
            user_id: id.to_string(),
            presence: agg,
        })
    }

    /// Sets (or with `None` signs out) the simulated Teams client session of a user.
    pub fn set_teams(
        &mut self,
        id: &str,
        pair: Option<Pair>,
        now: Instant,
    ) -> Option<PresenceChange> {
        self.publish(id, now);
        self.user(id).teams = pair;
        self.publish(id, now)
    }

    /// `setPresence`: validates the pair and duration, creates or refreshes the app session.
    pub fn set_presence(
        &mut self,
        id: &str,
        session_id: &str,
        pair: Pair,
        expiration: Option<&str>,
        now: Instant,
    ) -> Result<Option<PresenceChange>, PresenceError> {
        if session_id.trim().is_empty() {
            return Err(PresenceError::MissingSession);
        }
        if !SET_PRESENCE_PAIRS
            .iter()
            .any(|(a, b)| *a == pair.availability && *b == pair.activity)
        {
            return Err(PresenceError::InvalidPair(pair.availability, pair.activity));
        }
        let duration = match expiration {
            None => Duration::from_secs(300),
            Some(s) => match parse_duration(s) {
                Some(d) if d >= Duration::from_secs(300) && d <= Duration::from_secs(4 * 3600) => d,
                _ => return Err(PresenceError::InvalidDuration(s.to_string())),
            },
        };
        self.publish(id, now);
        self.user(id).apps.insert(
            session_id.to_string(),
            AppSession {
                pair,
                set_at: now,
                expires_at: now + duration,
            },
        );
        Ok(self.publish(id, now))
    }

    /// `clearPresence`: ends the app's session; one that does not exist (any more) is
    /// [`PresenceError::SessionNotFound`], as at Graph.
    pub fn clear_presence(
        &mut self,
        id: &str,
        session_id: &str,
        now: Instant,
    ) -> Result<Option<PresenceChange>, PresenceError> {
        if session_id.trim().is_empty() {
            return Err(PresenceError::MissingSession);
        }
        self.publish(id, now);
        if self.user(id).apps.remove(session_id).is_none() {
            return Err(PresenceError::SessionNotFound(session_id.to_string()));
        }
        Ok(self.publish(id, now))
    }

    /// `setUserPreferredPresence`.
    pub fn set_preferred(
        &mut self,
        id: &str,
        pair: Pair,
        expiration: Option<&str>,
        now: Instant,
    ) -> Result<Option<PresenceChange>, PresenceError> {
        if !PREFERRED_PAIRS
            .iter()
            .any(|(a, b)| *a == pair.availability && *b == pair.activity)
        {
            return Err(PresenceError::InvalidPair(pair.availability, pair.activity));
        }
        let duration = match expiration {
            None => preferred_default(&pair.availability),
            Some(s) => parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| PresenceError::InvalidDuration(s.to_string()))?,
        };
        self.publish(id, now);
        self.user(id).preferred = Some(Preferred {
            pair,
            expires_at: now + duration,
        });
        Ok(self.publish(id, now))
    }

    /// `clearUserPreferredPresence`.
    pub fn clear_preferred(&mut self, id: &str, now: Instant) -> Option<PresenceChange> {
        self.publish(id, now);
        self.user(id).preferred = None;
        self.publish(id, now)
    }

    /// `setStatusMessage` (`None` clears it).
    pub fn set_status(&mut self, id: &str, status: Option<StatusMessage>) {
        self.user(id).status = status;
    }

    /// The presence `GET` shows.
    /// Read-only: a change noticed here (an expiry not yet ticked) is still reported by the
    /// next [`PresenceBook::tick`], so subscribers never miss it.
    pub fn view(&self, id: &str, now: Instant) -> PresenceView {
        match self.users.get(id) {
            None => PresenceView {
                pair: Pair::offline(),
                status: None,
            },
            Some(u) => PresenceView {
                pair: u.aggregate(now),
                status: u
                    .status
                    .clone()
                    .filter(|s| s.expires_at.is_none_or(|e| e > now)),
            },
        }
    }

    /// When an application last set or refreshed one of `id`'s presence sessions
    /// (`setPresence`), on the tenant's clock; `None` without a live one.
    pub fn app_session_refreshed_at(&self, id: &str, now: Instant) -> Option<Instant> {
        self.users
            .get(id)?
            .apps
            .values()
            .filter(|s| s.expires_at > now)
            .map(|s| s.set_at)
            .max()
    }

    /// Re-evaluates time-dependent state (expiry, fading) for every user.
    pub fn tick(&mut self, now: Instant) -> Vec<PresenceChange> {
        let ids: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| !u.apps.is_empty() || u.preferred.is_some() || u.status.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| self.publish(id, now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "u1";
    const APP: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";
    const APP2: &str = "b8d08156-5ba4-4c5d-bee8-f2634901d491";

    fn agg(b: &mut PresenceBook, now: Instant) -> (String, String) {
        let v = b.view(U, now);
        (v.pair.availability, v.pair.activity)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT5M"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("PT1H30M"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("P1D"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("PT8H"), Some(Duration::from_secs(8 * 3600)));
        for bad in ["", "P", "PT", "5M", "PTXM", "PT5", "PT-5M", "PT5Q"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn no_session_is_offline() {
        let mut b = PresenceBook::new();
        assert_eq!(
            agg(&mut b, Instant::now()),
            ("Offline".into(), "Offline".into())
        );
    }

    #[test]
    fn invalid_pairs_and_durations_are_refused() {
        let mut b = PresenceBook::new();
        let t = Instant::now();
        assert!(matches!(
            b.set_presence(U, APP, Pair::new("Busy", "Busy"), None, t),
            Err(PresenceError::InvalidPair(..))
        ));
        assert!(matches!(
            b.set_presence(U, APP, Pair::new("Available", "InACall"), None, t),
            Err(PresenceError::InvalidPair(..))
        ));
        assert!(matches!(
            b.set_presence(U, APP, Pair::new("Available", "Available"), Some("PT4M"), t),
            Err(PresenceError::InvalidDuration(_))
        ));
        assert!(matches!(
            b.set_presence(
                U,
                APP,
                Pair::new("Available", "Available"),
                Some("PT4H1M"),
                t
            ),
            Err(PresenceError::InvalidDuration(_))
        ));
        assert!(matches!(
            b.set_presence(U, "", Pair::new("Available", "Available"), None, t),
            Err(PresenceError::MissingSession)
        ));
        assert!(b
            .set_presence(U, APP, Pair::new("Available", "Available"), Some("PT4H"), t)
            .is_ok());
        assert!(b
            .set_presence(
                U,
                APP,
                Pair::new("DoNotDisturb", "Presenting"),
                Some("PT5M"),
                t
            )
            .is_ok());
        assert!(matches!(
            b.set_preferred(U, Pair::new("Busy", "InACall"), None, t),
            Err(PresenceError::InvalidPair(..))
        ));
    }

    #[test]
    fn app_sessions_aggregate_dnd_busy_available_away() {
        let mut b = PresenceBook::new();
        let t = Instant::now();
        b.set_presence(U, APP, Pair::new("Away", "Away"), Some("PT1H"), t)
            .unwrap();
        assert_eq!(agg(&mut b, t).0, "Away");
        let ch = b
            .set_presence(
                U,
                APP2,
                Pair::new("Available", "Available"),
                Some("PT1H"),
                t,
            )
            .unwrap();
        assert_eq!(ch.unwrap().presence, Pair::new("Available", "Available"));
        b.set_presence(U, APP, Pair::new("Busy", "InACall"), Some("PT1H"), t)
            .unwrap();
        assert_eq!(agg(&mut b, t), ("Busy".into(), "InACall".into()));
        b.set_presence(
            U,
            APP2,
            Pair::new("DoNotDisturb", "Presenting"),
            Some("PT1H"),
            t,
        )
        .unwrap();
        assert_eq!(agg(&mut b, t), ("DoNotDisturb".into(), "Presenting".into()));
        // Clearing the DND session leaves the Busy one.
        let ch = b.clear_presence(U, APP2, t).unwrap().unwrap();
        assert_eq!(ch.presence, Pair::new("Busy", "InACall"));
        // A session that no longer exists is 404 at Graph, not a silent success.
        assert!(matches!(
            b.clear_presence(U, APP2, t),
            Err(PresenceError::SessionNotFound(_))
        ));
    }

    #[test]
    fn user_preferred_beats_app_set_but_needs_a_session() {
        let mut b = PresenceBook::new();
        let t = Instant::now();
        b.set_preferred(
            U,
            Pair::new("DoNotDisturb", "DoNotDisturb"),
            Some("PT8H"),
            t,
        )
        .unwrap();
        assert_eq!(
            agg(&mut b, t).0,
            "Offline",
            "preferred presence needs a session"
        );
        b.set_presence(U, APP, Pair::new("Busy", "InACall"), None, t)
            .unwrap();
        assert_eq!(
            agg(&mut b, t),
            ("DoNotDisturb".into(), "DoNotDisturb".into())
        );
        b.set_preferred(U, Pair::new("Away", "Away"), None, t)
            .unwrap();
        assert_eq!(
            agg(&mut b, t),
            ("Away".into(), "Away".into()),
            "user-set beats app-set even when weaker"
        );
        b.clear_preferred(U, t);
        assert_eq!(agg(&mut b, t), ("Busy".into(), "InACall".into()));
    }

    #[test]
    fn session_expiry_and_fading_follow_time() {
        let mut b = PresenceBook::new();
        let t0 = Instant::now();
        b.set_teams(U, Some(Pair::new("Away", "Away")), t0);
        b.set_presence(U, APP, Pair::new("Busy", "InACall"), Some("PT5M"), t0)
            .unwrap();
        assert_eq!(agg(&mut b, t0).0, "Busy");
        assert!(b.tick(t0 + Duration::from_secs(299)).is_empty());
        // Reading after the expiry but before the tick shows it and keeps the change for tick.
        assert_eq!(agg(&mut b, t0 + Duration::from_secs(300)).0, "Away");
        let changes = b.tick(t0 + Duration::from_secs(300));
        assert_eq!(
            changes,
            vec![PresenceChange {
                user_id: U.into(),
                presence: Pair::new("Away", "Away")
            }]
        );

        // An Available app session fades when not refreshed.
        let mut b = PresenceBook::new();
        b.set_presence(
            U,
            APP,
            Pair::new("Available", "Available"),
            Some("PT1H"),
            t0,
        )
        .unwrap();
        let c = b.tick(t0 + Duration::from_secs(301));
        assert_eq!(c[0].presence, Pair::new("AvailableIdle", "Inactive"));
        let c = b.tick(t0 + Duration::from_secs(601));
        assert_eq!(c[0].presence, Pair::new("Away", "Away"));
        // Refreshing brings it back.
        let c = b
            .set_presence(
                U,
                APP,
                Pair::new("Available", "Available"),
                Some("PT1H"),
                t0 + Duration::from_secs(602),
            )
            .unwrap();
        assert_eq!(c.unwrap().presence, Pair::new("Available", "Available"));
        let c = b.tick(t0 + Duration::from_secs(602 + 3600));
        assert_eq!(c[0].presence, Pair::new("Offline", "Offline"));
    }

    #[test]
    fn teams_session_competes_like_any_session() {
        let mut b = PresenceBook::new();
        let t = Instant::now();
        b.set_teams(U, Some(Pair::new("Busy", "InAMeeting")), t);
        b.set_presence(U, APP, Pair::new("Available", "Available"), None, t)
            .unwrap();
        assert_eq!(agg(&mut b, t), ("Busy".into(), "InAMeeting".into()));
        let c = b.set_teams(U, None, t).unwrap();
        assert_eq!(c.presence, Pair::new("Available", "Available"));
    }
}
