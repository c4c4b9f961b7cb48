//! Contact-center state ↔ Teams presence.
//!
//! An agent's state sets their Teams presence through `setPresence`, which accepts only
//! these pairs (Microsoft's setPresence page): Available/Available, Busy/InACall,
//! Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting. The mapping keeps to them:
//!
//! | agent state | presence |
//! | --- | --- |
//! | Ready | Available / Available |
//! | Not ready: break, lunch, personal, admin work, other | Away / Away |
//! | Not ready: meeting, training, coaching (must not be disturbed) | DoNotDisturb / Presenting (the only DoNotDisturb pair setPresence takes) |
//! | On a call | Busy / InACall |
//! | On a conference or consult with several parties | Busy / InAConferenceCall |
//! | Wrap-up | Busy / InACall (Busy/Busy is not accepted by setPresence; wrap-up still belongs to the call) |
//! | Logged out | no session: `clearPresence` |
//!
//! And the other way: [`is_transferable`] says whether a subject-matter expert may be
//! offered a transfer now.

use crate::client::PresenceUpdate;
use crate::model::{Activity, Availability, Presence};

/// Why an agent is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReadyReason {
    /// A break.
    Break,
    /// Lunch.
    Lunch,
    /// Personal time.
    Personal,
    /// Back-office work.
    AdminWork,
    /// A meeting.
    Meeting,
    /// Training.
    Training,
    /// Coaching with a supervisor.
    Coaching,
    /// Anything else (a configured reason).
    Other(String),
}

/// An agent's contact-center state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Waiting for calls.
    Ready,
    /// Not taking calls.
    NotReady(NotReadyReason),
    /// On a call with one party.
    OnCall,
    /// On a conference (consult, three-way, group call).
    OnConference,
    /// After-call work.
    WrapUp,
    /// Not signed in to the contact center.
    LoggedOut,
}

/// The `setPresence` pair for an agent state; `None` means clear our presence session.
pub fn presence_for(state: &AgentState) -> Option<(Availability, Activity)> {
    Some(match state {
        AgentState::Ready => (Availability::Available, Activity::Available),
        AgentState::NotReady(reason) => match reason {
            NotReadyReason::Meeting | NotReadyReason::Training | NotReadyReason::Coaching => {
                (Availability::DoNotDisturb, Activity::Presenting)
            }
            NotReadyReason::Break
            | NotReadyReason::Lunch
            | NotReadyReason::Personal
            | NotReadyReason::AdminWork
            | NotReadyReason::Other(_) => (Availability::Away, Activity::Away),
        },
        AgentState::OnCall | AgentState::WrapUp => (Availability::Busy, Activity::InACall),
        AgentState::OnConference => (Availability::Busy, Activity::InAConferenceCall),
        AgentState::LoggedOut => return None,
    })
}

/// The full `setPresence` update for a state, with a session expiry (5 min to 4 h; keep
/// calling before it ends, as Graph expires app sessions).
pub fn presence_update(
    state: &AgentState,
    expiration: std::time::Duration,
) -> Option<PresenceUpdate> {
    presence_for(state).map(|(availability, activity)| PresenceUpdate {
        availability,
        activity,
        expiration: Some(expiration),
    })
}

/// Whether a subject-matter expert may be offered a transfer now. Not when they asked not
/// to be disturbed (DoNotDisturb, UrgentInterruptionsOnly), present, are in a meeting, are
/// off work or out of office, or are offline or of unknown presence (nobody to ring).
/// Available, idle, away, be-right-back and busy (e.g. in a call) users may be offered one;
/// the router ranks them by availability.
pub fn is_transferable(p: &Presence) -> bool {
    let blocked_availability = matches!(
        p.availability,
        Availability::DoNotDisturb
            | Availability::Offline
            | Availability::PresenceUnknown
            | Availability::Unknown(_)
    );
    let blocked_activity = matches!(
        p.activity,
        Activity::Presenting
            | Activity::InAMeeting
            | Activity::DoNotDisturb
            | Activity::UrgentInterruptionsOnly
            | Activity::OffWork
            | Activity::OutOfOffice
            | Activity::Offline
    );
    !(blocked_availability || blocked_activity)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs Microsoft's setPresence page accepts.
    const SET_PRESENCE_PAIRS: &[(&str, &str)] = &[
        ("Available", "Available"),
        ("Busy", "InACall"),
        ("Busy", "InAConferenceCall"),
        ("Away", "Away"),
        ("DoNotDisturb", "Presenting"),
    ];

    fn all_states() -> Vec<AgentState> {
        let mut v = vec![
            AgentState::Ready,
            AgentState::OnCall,
            AgentState::OnConference,
            AgentState::WrapUp,
            AgentState::LoggedOut,
        ];
        for r in [
            NotReadyReason::Break,
            NotReadyReason::Lunch,
            NotReadyReason::Personal,
            NotReadyReason::AdminWork,
            NotReadyReason::Meeting,
            NotReadyReason::Training,
            NotReadyReason::Coaching,
            NotReadyReason::Other("Callback".into()),
        ] {
            v.push(AgentState::NotReady(r));
        }
        v
    }

    #[test]
    fn every_state_maps_to_a_documented_set_presence_pair() {
        for s in all_states() {
            match presence_for(&s) {
                Some((a, b)) => assert!(
                    SET_PRESENCE_PAIRS.contains(&(a.as_str(), b.as_str())),
                    "{s:?} → {a}/{b} is not a setPresence pair"
                ),
                None => assert_eq!(s, AgentState::LoggedOut),
            }
        }
    }

    #[test]
    fn specific_mappings() {
        assert_eq!(
            presence_for(&AgentState::Ready),
            Some((Availability::Available, Activity::Available))
        );
        assert_eq!(
            presence_for(&AgentState::OnCall),
            Some((Availability::Busy, Activity::InACall))
        );
        assert_eq!(
            presence_for(&AgentState::WrapUp),
            Some((Availability::Busy, Activity::InACall))
        );
        assert_eq!(
            presence_for(&AgentState::NotReady(NotReadyReason::Lunch)),
            Some((Availability::Away, Activity::Away))
        );
        assert_eq!(
            presence_for(&AgentState::NotReady(NotReadyReason::Training)),
            Some((Availability::DoNotDisturb, Activity::Presenting))
        );
        let u = presence_update(&AgentState::Ready, std::time::Duration::from_secs(3600)).unwrap();
        assert_eq!(u.expiration, Some(std::time::Duration::from_secs(3600)));
    }

    fn p(a: &str, b: &str) -> Presence {
        Presence {
            id: "x".into(),
            availability: Availability::parse(a),
            activity: Activity::parse(b),
            status_message: None,
            out_of_office_settings: None,
        }
    }

    #[test]
    fn transferability() {
        for (a, b) in [
            ("DoNotDisturb", "Presenting"),
            ("Busy", "InAMeeting"),
            ("Busy", "Presenting"),
            ("DoNotDisturb", "DoNotDisturb"),
            ("Offline", "Offline"),
            ("Away", "OffWork"),
            ("PresenceUnknown", "PresenceUnknown"),
            ("Busy", "UrgentInterruptionsOnly"),
            ("Quantum", "Available"),
        ] {
            assert!(!is_transferable(&p(a, b)), "{a}/{b}");
        }
        for (a, b) in [
            ("Available", "Available"),
            ("AvailableIdle", "Inactive"),
            ("Away", "Away"),
            ("BeRightBack", "BeRightBack"),
            ("Busy", "InACall"),
            ("Busy", "Busy"),
        ] {
            assert!(is_transferable(&p(a, b)), "{a}/{b}");
        }
    }
}
