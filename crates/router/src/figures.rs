//! A queue's figures for the day (UTC): what the edge reports as callers enter, are answered,
//! abandon or overflow, and what agents' handling takes. Definitions (docs/contact-center.md):
//!
//! - offered: entries into the queue (a caller who overflows into another queue is offered
//!   to both);
//! - a short abandon (within [`SHORT_ABANDON`] of entering) counts only as itself — it is
//!   neither against the service level nor in the abandonment rate;
//! - service level = answered within the queue's threshold ÷ (answered + abandoned after the
//!   short-abandon time + overflowed);
//! - ASA = mean wait of answered callers (entering the queue to the agent's answer);
//! - AHT = mean of talk + wrap-up of handled calls (wrap-up as the agent took it);
//! - abandonment rate = abandoned after the short-abandon time ÷ offered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Abandons within this time of entering count as short.
pub const SHORT_ABANDON: Duration = Duration::from_secs(5);

/// The service-level threshold when a queue names none.
pub const DEFAULT_SERVICE_LEVEL: Duration = Duration::from_secs(20);

/// One queue's counters.
#[derive(Debug, Default, Clone)]
pub struct QueueStats {
    /// Days since the Unix epoch (UTC) the counters are for.
    day: i64,
    pub offered: u64,
    pub answered: u64,
    pub answered_in_time: u64,
    pub abandoned: u64,
    pub abandoned_short: u64,
    pub overflowed: u64,
    wait_of_answered: Duration,
    handled: u64,
    handle_time: Duration,
    /// Callers waiting now: call → when they entered.
    waiting: BTreeMap<u64, Instant>,
    /// Entries over the last half hour, for the forecast's arrival rate (kept across days).
    pub arrivals: Arrivals,
}

/// [`crate::routing::estimate::Arrivals`] over [`FORECAST_WINDOW`], at most 20,000 kept.
#[derive(Debug, Clone)]
pub struct Arrivals(pub crate::routing::estimate::Arrivals);

/// How far back the forecast's arrival rate looks.
pub const FORECAST_WINDOW: Duration = Duration::from_secs(30 * 60);

impl Default for Arrivals {
    fn default() -> Self {
        Self(crate::routing::estimate::Arrivals::new(
            FORECAST_WINDOW,
            20_000,
        ))
    }
}

fn today() -> i64 {
    time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400)
}

impl QueueStats {
    /// Starts the day's counters again when the day has changed (the waiting stay).
    fn roll(&mut self) {
        let d = today();
        if d != self.day {
            let waiting = std::mem::take(&mut self.waiting);
            let arrivals = std::mem::take(&mut self.arrivals);
            *self = Self {
                day: d,
                waiting,
                arrivals,
                ..Self::default()
            };
        }
    }

    pub fn entered(&mut self, call: u64, now: Instant) {
        self.roll();
        self.offered += 1;
        self.waiting.insert(call, now);
        self.arrivals.0.record(now);
    }

    /// The caller left the queue: answered after `threshold`-checked wait, abandoned, or
    /// overflowed. Unknown calls (not waiting here) are ignored.
    pub fn left(&mut self, call: u64, how: Left, threshold: Duration, now: Instant) {
        self.roll();
        let Some(at) = self.waiting.remove(&call) else {
            return;
        };
        let waited = now.saturating_duration_since(at);
        match how {
            Left::Answered => {
                self.answered += 1;
                self.wait_of_answered += waited;
                if waited <= threshold {
                    self.answered_in_time += 1;
                }
            }
            Left::Abandoned if waited <= SHORT_ABANDON => self.abandoned_short += 1,
            Left::Abandoned => self.abandoned += 1,
            Left::Overflowed => self.overflowed += 1,
            Left::Moved => {}
        }
    }

    /// An agent finished a call of this queue: talk and wrap-up.
    pub fn handled(&mut self, time: Duration) {
        self.roll();
        self.handled += 1;
        self.handle_time += time;
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn longest_wait(&self, now: Instant) -> Duration {
        self.waiting
            .values()
            .map(|t| now.saturating_duration_since(*t))
            .max()
            .unwrap_or_default()
    }

    /// Percent answered in time of those that counted.
    pub fn service_level(&self) -> Option<f64> {
        let base = self.answered + self.abandoned + self.overflowed;
        (base > 0).then(|| 100.0 * self.answered_in_time as f64 / base as f64)
    }

    pub fn asa(&self) -> Option<f64> {
        (self.answered > 0).then(|| self.wait_of_answered.as_secs_f64() / self.answered as f64)
    }

    pub fn aht(&self) -> Option<f64> {
        (self.handled > 0).then(|| self.handle_time.as_secs_f64() / self.handled as f64)
    }

    pub fn abandonment_rate(&self) -> Option<f64> {
        (self.offered > 0).then(|| 100.0 * self.abandoned as f64 / self.offered as f64)
    }
}

/// How a caller left a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    Answered,
    Abandoned,
    Overflowed,
    /// Left without an answer or an overflow: a callback given up (it is the call's record
    /// that says so).
    Moved,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_hold() {
        let mut q = QueueStats::default();
        let t = Instant::now();
        let sl = Duration::from_secs(20);
        for c in 0..6 {
            q.entered(c, t);
        }
        q.left(0, Left::Answered, sl, t + Duration::from_secs(10));
        q.left(1, Left::Answered, sl, t + Duration::from_secs(30));
        q.left(2, Left::Abandoned, sl, t + Duration::from_secs(3));
        q.left(3, Left::Abandoned, sl, t + Duration::from_secs(40));
        q.left(4, Left::Overflowed, sl, t + Duration::from_secs(60));
        q.left(99, Left::Answered, sl, t);
        assert_eq!((q.offered, q.answered, q.answered_in_time), (6, 2, 1));
        assert_eq!((q.abandoned, q.abandoned_short, q.overflowed), (1, 1, 1));
        assert_eq!(q.waiting(), 1);
        assert_eq!(
            q.longest_wait(t + Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        // 1 in time of (2 answered + 1 abandoned + 1 overflowed); the short abandon is out.
        assert_eq!(q.service_level(), Some(25.0));
        assert_eq!(q.asa(), Some(20.0));
        assert_eq!(q.abandonment_rate(), Some(100.0 / 6.0));
        q.handled(Duration::from_secs(100));
        q.handled(Duration::from_secs(200));
        assert_eq!(q.aht(), Some(150.0));
    }
}
