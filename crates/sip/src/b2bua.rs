//! Back-to-back user agent building blocks (RFC 7092's "signalling and media B2BUA"): two
//! dialogs of one [`UserAgent`] linked so that what happens on one leg happens on the other.
//! The routing service anchors the media itself (it plays prompts, records, and bridges the two
//! RTP streams with the media engine), so each leg negotiates with the service's own
//! [`LocalMedia`] and this module only keeps the two call states in step:
//!
//! - the callee rings → the caller hears 180; the callee answers → the caller is answered;
//! - either side hangs up (or the caller cancels) → the other leg ends too, with the callee's
//!   refusal mapped onto the caller's leg (RFC 3261 §16.7's choice of the best response is the
//!   proxy's job; a B2BUA passes the status through, 6xx and 4xx alike);
//! - hold and resume on one leg are mirrored on the other; DTMF (SIP INFO) is relayed.
//!
//! It is sans-IO like the user agent: the owner passes every [`UaEvent`] to
//! [`B2bua::on_event`] and gets back what the bridge means for it ([`BridgeEvent`]).

use std::collections::HashMap;
use std::time::Instant;

use crate::sdp::{Direction, LocalMedia, Negotiated};
use crate::ua::{CallId, EndReason, UaError, UaEvent, UserAgent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// The incoming call (the caller's side).
    A,
    /// The call we placed (the callee's side).
    B,
}

#[derive(Debug, Clone)]
struct Bridge {
    a: CallId,
    b: CallId,
    /// Media for the caller's leg, used when the callee answers.
    a_media: LocalMedia,
    rang: bool,
    answered: bool,
    a_up: Option<Negotiated>,
    b_up: Option<Negotiated>,
    connected: bool,
    /// The peer of each leg holds us (sendonly/inactive towards us).
    a_held: bool,
    b_held: bool,
}

/// The callee side of a bridge.
#[derive(Debug, Clone)]
pub struct Target {
    /// Who to call (`sip:` URI).
    pub uri: String,
    /// What we offer the callee.
    pub media: LocalMedia,
    /// Extra headers for the INVITE (e.g. `Referred-By`, a `Diversion`).
    pub headers: Vec<String>,
}

/// What a bridge tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeEvent {
    /// Both legs are up: connect their media (the caller's leg, then the callee's).
    Connected {
        a: CallId,
        b: CallId,
        a_media: Negotiated,
        b_media: Negotiated,
    },
    /// A leg's media changed (hold, resume, new address): update the media bridge.
    MediaChanged { call: CallId, media: Negotiated },
    /// The bridge is over; both legs are ended or ending.
    Ended {
        a: CallId,
        b: CallId,
        /// Why the leg that ended first ended.
        reason: EndReason,
    },
}

/// Linked pairs of calls on one user agent.
#[derive(Debug, Default)]
pub struct B2bua {
    bridges: Vec<Bridge>,
    by_call: HashMap<CallId, (usize, Leg)>,
}

impl B2bua {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `call` is a leg of a bridge.
    pub fn is_bridged(&self, call: CallId) -> bool {
        self.by_call.contains_key(&call)
    }

    /// The other leg of `call`.
    pub fn other_leg(&self, call: CallId) -> Option<CallId> {
        let (i, leg) = self.by_call.get(&call)?;
        let b = self.bridges.get(*i)?;
        Some(if *leg == Leg::A { b.b } else { b.a })
    }

    /// Links the incoming call `a` (not answered yet) to a new call to `target`; `a_media`
    /// answers the caller when the callee answers.
    pub fn bridge(
        &mut self,
        ua: &mut UserAgent,
        a: CallId,
        a_media: LocalMedia,
        target: Target,
        now: Instant,
    ) -> Result<CallId, UaError> {
        let b = ua.invite(&target.uri, target.media, target.headers, now)?;
        let i = self.bridges.len();
        self.bridges.push(Bridge {
            a,
            b,
            a_media,
            rang: false,
            answered: false,
            a_up: None,
            b_up: None,
            connected: false,
            a_held: false,
            b_held: false,
        });
        self.by_call.insert(a, (i, Leg::A));
        self.by_call.insert(b, (i, Leg::B));
        Ok(b)
    }

    /// Applies one user-agent event; events of calls that are not bridged are ignored.
    pub fn on_event(
        &mut self,
        ua: &mut UserAgent,
        event: &UaEvent,
        now: Instant,
    ) -> Option<BridgeEvent> {
        let call = match event {
            UaEvent::IncomingCall { call, .. }
            | UaEvent::Progress { call, .. }
            | UaEvent::Established { call, .. }
            | UaEvent::MediaChanged { call, .. }
            | UaEvent::MediaChangeFailed { call, .. }
            | UaEvent::Dtmf { call, .. }
            | UaEvent::TransferRequested { call, .. }
            | UaEvent::TransferProgress { call, .. }
            | UaEvent::Ended { call, .. } => *call,
            UaEvent::OptionsAnswered { .. } | UaEvent::FailedOver { .. } => return None,
        };
        let (i, leg) = *self.by_call.get(&call)?;
        let bridge = self.bridges.get_mut(i)?;
        let other = if leg == Leg::A { bridge.b } else { bridge.a };
        match (event, leg) {
            (UaEvent::Progress { .. }, Leg::B) => {
                if !bridge.rang {
                    bridge.rang = true;
                    ua.ring(bridge.a, now);
                }
                None
            }
            (UaEvent::Established { media, .. }, Leg::B) => {
                bridge.b_up = Some(media.clone());
                if !bridge.answered {
                    bridge.answered = true;
                    let m = bridge.a_media.clone();
                    if let Err(e) = ua.answer(bridge.a, m, now) {
                        tracing::warn!(error = %e, "cannot answer the caller's leg; ending the bridge");
                        ua.hangup(bridge.b, now);
                    }
                }
                Self::connected(bridge)
            }
            (UaEvent::Established { media, .. }, Leg::A) => {
                bridge.a_up = Some(media.clone());
                Self::connected(bridge)
            }
            (UaEvent::MediaChanged { media, by_peer, .. }, _) => {
                if leg == Leg::A {
                    bridge.a_up = Some(media.clone());
                } else {
                    bridge.b_up = Some(media.clone());
                }
                // Mirror a hold or resume the peer asked for (not our own mirrored ones).
                if *by_peer {
                    let held = matches!(media.direction, Direction::RecvOnly | Direction::Inactive)
                        || media.remote.is_none();
                    let flag = if leg == Leg::A {
                        &mut bridge.a_held
                    } else {
                        &mut bridge.b_held
                    };
                    if held != *flag {
                        *flag = held;
                        if bridge.connected {
                            if let Err(e) = ua.hold(other, held, now) {
                                tracing::debug!(error = %e, "could not mirror hold on the other leg");
                            }
                        }
                    }
                }
                Some(BridgeEvent::MediaChanged {
                    call,
                    media: media.clone(),
                })
            }
            (
                UaEvent::Dtmf {
                    digit, duration_ms, ..
                },
                _,
            ) => {
                if let Err(e) = ua.send_dtmf_info(other, *digit, *duration_ms, now) {
                    tracing::debug!(error = %e, "could not relay DTMF");
                }
                None
            }
            (UaEvent::Ended { reason, .. }, _) => {
                let (a, b) = (bridge.a, bridge.b);
                match (leg, reason) {
                    // The callee refused before answering: the caller gets the same status.
                    (Leg::B, EndReason::Rejected { status, .. }) if !bridge.answered => {
                        ua.reject(a, *status, now)
                    }
                    (Leg::B, EndReason::Timeout) if !bridge.answered => ua.reject(a, 480, now),
                    (Leg::B, _) if !bridge.answered => ua.reject(a, 503, now),
                    _ => ua.hangup(other, now),
                }
                self.by_call.remove(&a);
                self.by_call.remove(&b);
                Some(BridgeEvent::Ended {
                    a,
                    b,
                    reason: reason.clone(),
                })
            }
            _ => None,
        }
    }

    fn connected(bridge: &mut Bridge) -> Option<BridgeEvent> {
        match (&bridge.a_up, &bridge.b_up, bridge.connected) {
            (Some(a), Some(b), false) => {
                bridge.connected = true;
                Some(BridgeEvent::Connected {
                    a: bridge.a,
                    b: bridge.b,
                    a_media: a.clone(),
                    b_media: b.clone(),
                })
            }
            _ => None,
        }
    }
}
