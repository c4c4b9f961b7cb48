//! Overload control at the SIP edge (RFC 6357 §3, RFC 7339 §3 in spirit): when messages arrive
//! faster than the edge handles them, a share of new calls is refused at once with `503 Service
//! Unavailable` and `Retry-After`, so what is already under way — the ACKs, BYEs, re-INVITEs and
//! answers of calls being set up or talking — is handled in time.
//!
//! Without it a router offered more calls than it can carry collapses instead of levelling off:
//! every call waits in the same queue, ACKs arrive after their 2xx was given up (64·T1), callers
//! retransmit and add to the load, and nearly every call fails (the B2BUA benchmark at 300 calls
//! a second on two cores: 62 of 300 completed a second before this).
//!
//! The signal is the number of received messages waiting for the edge (the transports' queues).
//! Up to [`Thresholds::start`] every new call is taken; from there the share refused grows with
//! the queue, to all of them at [`Thresholds::full`] (as RED does for packets): the edge refuses
//! about the excess, not everything for as long as a queue takes to drain. The refusals are
//! spread evenly (an error accumulator, not chance), so tests and benchmarks repeat.

use std::time::{Duration, Instant};

/// Where refusing starts and where it is total, in messages waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub start: usize,
    pub full: usize,
}

impl Thresholds {
    /// Every new call refused from `full` waiting messages (`[sip] overload_queue`), a growing
    /// share of them from a quarter of it.
    pub fn from_full(full: usize) -> Self {
        Self {
            start: full / 4,
            full,
        }
    }
}

impl Default for Thresholds {
    /// 512 waiting messages are about a quarter of a second of work at the edge's rate on a
    /// small machine (ten messages a call, 2,000 a second); refusing starts at 128. Chosen by
    /// `bench/b2bua_cps.py` on two cores: at 200 calls a second offered (about what the
    /// machine carries) 256 refused one call in seven that would have gone through, 512 one in
    /// 40 or fewer; at 300 a second 512 completed 160–194 a second, against 62 with no control
    /// (docs/decisions.md). The queue holds 1,024 per transport before the socket's buffer
    /// fills.
    fn default() -> Self {
        Self::from_full(512)
    }
}

/// The seconds a refused caller (or the carrier's proxy, RFC 3263) is asked to wait: short,
/// since an overload at the edge passes in seconds.
pub const RETRY_AFTER: &str = "Retry-After: 1";

/// A change of state for the edge to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The queue passed [`Thresholds::start`] with `waiting` messages: refusing begins.
    Began { waiting: usize },
    /// The queue is down to half of [`Thresholds::start`] after `lasted`, `refused` new calls
    /// refused meanwhile.
    Ended { refused: u64, lasted: Duration },
}

/// The edge's overload state.
#[derive(Debug)]
pub struct Overload {
    limits: Thresholds,
    since: Option<Instant>,
    refused: u64,
    /// The share of calls owed a refusal, carried from call to call.
    owed: f64,
}

impl Overload {
    pub fn new(limits: Thresholds) -> Self {
        Self {
            limits,
            since: None,
            refused: 0,
            owed: 0.0,
        }
    }

    /// Whether an episode is under way (the queue passed `start` and has not come down to
    /// half of it).
    pub fn shedding(&self) -> bool {
        self.since.is_some()
    }

    /// The share of new calls refused with `waiting` messages queued.
    pub fn share(&self, waiting: usize) -> f64 {
        let Thresholds { start, full } = self.limits;
        if waiting <= start {
            0.0
        } else if waiting >= full {
            1.0
        } else {
            (waiting - start) as f64 / (full - start) as f64
        }
    }

    /// Updates the episode with the messages `waiting` now; returns the change, if any.
    pub fn observe(&mut self, waiting: usize, now: Instant) -> Option<Change> {
        match self.since {
            None if waiting > self.limits.start => {
                // `refused` is zero here: `Ended` took it.
                self.since = Some(now);
                Some(Change::Began { waiting })
            }
            Some(since) if waiting <= self.limits.start / 2 => {
                self.since = None;
                self.owed = 0.0;
                Some(Change::Ended {
                    refused: std::mem::take(&mut self.refused),
                    lasted: now.saturating_duration_since(since),
                })
            }
            _ => None,
        }
    }

    /// Whether a new call arriving with `waiting` messages queued is taken; a refused one is
    /// counted for the [`Change::Ended`] report.
    pub fn admit(&mut self, waiting: usize, now: Instant) -> (bool, Option<Change>) {
        let change = self.observe(waiting, now);
        self.owed += self.share(waiting);
        if self.owed >= 1.0 - 1e-9 {
            self.owed -= 1.0;
            self.refused += 1;
            (false, change)
        } else {
            (true, change)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_refused_grows_from_start_to_full() {
        let o = Overload::new(Thresholds::from_full(200));
        assert_eq!(
            o.limits,
            Thresholds {
                start: 50,
                full: 200
            }
        );
        assert_eq!(o.share(0), 0.0);
        assert_eq!(o.share(50), 0.0);
        assert_eq!(o.share(125), 0.5);
        assert_eq!(o.share(200), 1.0);
        assert_eq!(o.share(5000), 1.0);
        assert_eq!(
            Thresholds::default(),
            Thresholds {
                start: 128,
                full: 512
            }
        );
    }

    #[test]
    fn refusals_are_spread_evenly_and_episodes_reported() {
        let t0 = Instant::now();
        let mut o = Overload::new(Thresholds {
            start: 10,
            full: 20,
        });
        // Up to start: every call taken, nothing changes.
        assert_eq!(o.admit(0, t0), (true, None));
        assert_eq!(o.admit(10, t0), (true, None));
        // Half way: every second call refused; the first one past start begins the episode.
        assert_eq!(o.admit(15, t0), (true, Some(Change::Began { waiting: 15 })));
        let taken: Vec<bool> = (0..6).map(|_| o.admit(15, t0).0).collect();
        assert_eq!(taken, [false, true, false, true, false, true]);
        // Full: every call refused.
        assert!((0..5).all(|_| !o.admit(20, t0).0));
        // Back under start the calls are taken, but the episode lasts until half of it.
        assert_eq!(o.admit(8, t0), (true, None));
        assert!(o.shedding());
        assert_eq!(
            o.admit(5, t0 + Duration::from_millis(400)),
            (
                true,
                Some(Change::Ended {
                    refused: 8,
                    lasted: Duration::from_millis(400)
                })
            )
        );
        assert!(!o.shedding());
        // A second episode counts from zero, and owes nothing from the first.
        assert!(o.admit(19, t0).0);
        assert!(!o.admit(30, t0).0);
        assert_eq!(
            o.observe(0, t0 + Duration::from_secs(1)),
            Some(Change::Ended {
                refused: 1,
                lasted: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn observing_alone_refuses_nothing() {
        let t0 = Instant::now();
        let mut o = Overload::new(Thresholds::default());
        assert_eq!(o.observe(300, t0), Some(Change::Began { waiting: 300 }));
        assert_eq!(
            o.observe(10, t0),
            Some(Change::Ended {
                refused: 0,
                lasted: Duration::ZERO
            })
        );
    }
}
