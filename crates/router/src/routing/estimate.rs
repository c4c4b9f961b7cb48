//! How long a caller will wait, from the queue's actual service rate — never a moving average
//! of the last few waits, which swings with every lucky or unlucky call (#14).
//!
//! - [`HandleTimes`] keeps the handle times (talk + wrap-up) of the queue's last calls; their
//!   mean is the average handle time (AHT), and `agents / AHT` the rate at which the queue's
//!   staffed agents finish calls.
//! - A caller at position `k` (1: next) waits until `k` calls have finished:
//!   `k × AHT / staffed agents` ([`position_wait`]); that is what position announcements say.
//! - For a caller about to join (and for staffing), Erlang C gives the probability of waiting
//!   and the average speed of answer from the arrival rate ([`Arrivals`]), the AHT and the
//!   number of agents ([`erlang_c`], [`average_speed_of_answer`], [`service_level`]).
//!
//! ```
//! use std::time::Duration;
//! use switchboard_router::routing::estimate::{erlang_c, service_level};
//! // The textbook case: 360 calls in 30 minutes, 240 s handle time (48 Erlangs), 55 agents.
//! let traffic = 360.0 / 1800.0 * 240.0;
//! assert!((erlang_c(55, traffic) - 0.2387).abs() < 0.001);
//! let sl = service_level(55, traffic, Duration::from_secs(240), Duration::from_secs(20));
//! assert!((sl - 0.8668).abs() < 0.001);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Erlang C: the probability that a caller waits, with `agents` agents and `traffic` Erlangs
/// offered (arrival rate × AHT). 1 when the agents cannot keep up (`agents ≤ traffic`).
/// Computed through the Erlang B recursion, which stays exact where factorials overflow.
pub fn erlang_c(agents: u32, traffic: f64) -> f64 {
    if traffic <= 0.0 {
        return 0.0;
    }
    let n = f64::from(agents);
    if n <= traffic {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=agents {
        b = traffic * b / (f64::from(k) + traffic * b);
    }
    n * b / (n - traffic * (1.0 - b))
}

/// The average speed of answer: the mean wait over all callers, `P(wait) × AHT / (N − A)`;
/// `None` when the agents cannot keep up.
pub fn average_speed_of_answer(agents: u32, traffic: f64, aht: Duration) -> Option<Duration> {
    let spare = f64::from(agents) - traffic;
    if spare <= 0.0 {
        return None;
    }
    let seconds = erlang_c(agents, traffic) * aht.as_secs_f64() / spare;
    Some(Duration::from_secs_f64(seconds))
}

/// The share of callers answered within `target`: `1 − P(wait) × e^(−(N − A) × target / AHT)`.
pub fn service_level(agents: u32, traffic: f64, aht: Duration, target: Duration) -> f64 {
    let spare = f64::from(agents) - traffic;
    if spare <= 0.0 || aht.is_zero() {
        return 0.0;
    }
    1.0 - erlang_c(agents, traffic) * (-spare * target.as_secs_f64() / aht.as_secs_f64()).exp()
}

/// The fewest agents (at most `limit`) who answer `share` (0–1) of callers within `target`
/// at `traffic` Erlangs and `aht`; `None` past `limit`. Service level grows with every agent
/// added beyond the traffic, so the first that meets the goal is the answer.
pub fn agents_needed(
    traffic: f64,
    aht: Duration,
    target: Duration,
    share: f64,
    limit: u32,
) -> Option<u32> {
    if traffic <= 0.0 {
        return Some(0);
    }
    // No fewer than the traffic itself: below it the queue grows without end.
    let first = (traffic.floor() as u32).saturating_add(1);
    (first..=limit).find(|&n| service_level(n, traffic, aht, target) >= share)
}

/// The wait of the caller at `position` (1: next) while `staffed` agents serve the queue at
/// `aht` per call: `position` calls must finish first. `None` without staffed agents.
pub fn position_wait(position: usize, staffed: u32, aht: Duration) -> Option<Duration> {
    if staffed == 0 {
        return None;
    }
    Some(aht.mul_f64(position as f64 / f64::from(staffed)))
}

/// The handle times of a queue's last calls (at most `capacity`), and the AHT to assume
/// before the first call has been handled.
#[derive(Debug, Clone)]
pub struct HandleTimes {
    recent: VecDeque<Duration>,
    capacity: usize,
    total: Duration,
    default: Duration,
}

impl HandleTimes {
    pub fn new(capacity: usize, default: Duration) -> Self {
        Self {
            recent: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            total: Duration::ZERO,
            default,
        }
    }

    /// A call of the queue was handled in `d` (talk and wrap-up).
    pub fn record(&mut self, d: Duration) {
        if self.recent.len() == self.capacity {
            if let Some(old) = self.recent.pop_front() {
                self.total -= old;
            }
        }
        self.recent.push_back(d);
        self.total += d;
    }

    /// The average handle time: the mean of the recorded calls, or the default before any.
    pub fn aht(&self) -> Duration {
        match self.recent.len() {
            0 => self.default,
            n => self.total / n as u32,
        }
    }
}

/// Calls arriving at a queue over the last `window`, for the arrival rate Erlang C needs.
#[derive(Debug, Clone)]
pub struct Arrivals {
    at: VecDeque<Instant>,
    window: Duration,
    /// Most arrivals kept: a flood cannot grow the record without bound.
    cap: usize,
}

impl Arrivals {
    pub fn new(window: Duration, cap: usize) -> Self {
        Self {
            at: VecDeque::new(),
            window,
            cap: cap.max(1),
        }
    }

    pub fn record(&mut self, now: Instant) {
        self.forget(now);
        if self.at.len() == self.cap {
            self.at.pop_front();
        }
        self.at.push_back(now);
    }

    fn forget(&mut self, now: Instant) {
        while self
            .at
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.at.pop_front();
        }
    }

    /// Arrivals per second over the window, without forgetting the older ones (for readers
    /// that hold the record shared).
    pub fn rate_at(&self, now: Instant) -> f64 {
        let old = self
            .at
            .partition_point(|t| now.saturating_duration_since(*t) > self.window);
        (self.at.len() - old) as f64 / self.window.as_secs_f64().max(1.0)
    }

    /// Arrivals per second over the window.
    pub fn rate(&mut self, now: Instant) -> f64 {
        self.forget(now);
        self.at.len() as f64 / self.window.as_secs_f64().max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the closed form (Σ Aᵏ/k! and Aᴺ/N! · N/(N−A)), worked out independently.
    #[test]
    fn erlang_c_matches_the_closed_form() {
        for (n, a, p) in [
            (11, 10.0, 0.682_118),
            (12, 10.0, 0.449_388),
            (13, 10.0, 0.285_270),
            (55, 48.0, 0.238_701),
        ] {
            let got = erlang_c(n, a);
            assert!((got - p).abs() < 1e-5, "C({n}, {a}) = {got}, want {p}");
        }
        assert_eq!(erlang_c(10, 10.0), 1.0, "no spare capacity: everyone waits");
        assert_eq!(erlang_c(3, 0.0), 0.0);
        // A thousand agents: no overflow, and a sensible answer.
        let big = erlang_c(1000, 950.0);
        assert!(big > 0.0 && big < 1.0, "{big}");
    }

    #[test]
    fn speed_of_answer_and_service_level() {
        let aht = Duration::from_secs(240);
        let asa = average_speed_of_answer(55, 48.0, aht).unwrap();
        assert!((asa.as_secs_f64() - 8.184).abs() < 0.01, "{asa:?}");
        assert_eq!(average_speed_of_answer(48, 48.0, aht), None);
        let sl = service_level(55, 48.0, aht, Duration::from_secs(20));
        assert!((sl - 0.866_796).abs() < 1e-4, "{sl}");
        assert_eq!(service_level(40, 48.0, aht, Duration::from_secs(20)), 0.0);
    }

    /// The textbook case again: 48 Erlangs need 54 agents for 80 % in 20 s (81.7 %; 53 give
    /// 75.2 %), and 52 for 80 % in 60 s (82.9 %; 51 give 73.0 %).
    #[test]
    fn agents_needed_is_the_first_staffing_that_meets_the_goal() {
        let aht = Duration::from_secs(240);
        let sl20 = Duration::from_secs(20);
        assert!(service_level(53, 48.0, aht, sl20) < 0.8);
        assert_eq!(agents_needed(48.0, aht, sl20, 0.8, 10_000), Some(54));
        let sl60 = Duration::from_secs(60);
        assert_eq!(agents_needed(48.0, aht, sl60, 0.8, 10_000), Some(52));
        assert!(service_level(51, 48.0, aht, sl60) < 0.8);
        assert_eq!(agents_needed(0.0, aht, sl20, 0.8, 10), Some(0));
        assert_eq!(
            agents_needed(48.0, aht, sl20, 0.8, 50),
            None,
            "past the limit"
        );
        // A trickle still needs one agent.
        assert_eq!(agents_needed(0.05, aht, sl20, 0.8, 10), Some(1));
    }

    #[test]
    fn position_waits_follow_the_service_rate() {
        let aht = Duration::from_secs(300);
        assert_eq!(position_wait(1, 5, aht), Some(Duration::from_secs(60)));
        assert_eq!(position_wait(10, 5, aht), Some(Duration::from_secs(600)));
        assert_eq!(position_wait(3, 0, aht), None);
    }

    #[test]
    fn the_aht_is_the_mean_of_the_last_calls_not_of_three() {
        let mut h = HandleTimes::new(4, Duration::from_secs(180));
        assert_eq!(
            h.aht(),
            Duration::from_secs(180),
            "the default before any call"
        );
        for s in [100, 200, 300, 400] {
            h.record(Duration::from_secs(s));
        }
        assert_eq!(h.aht(), Duration::from_secs(250));
        // One very long call moves a 4-call mean by a quarter of its excess, not all of it.
        h.record(Duration::from_secs(1200));
        assert_eq!(h.aht(), Duration::from_secs(525));
    }

    #[test]
    fn arrivals_count_within_the_window_and_stay_bounded() {
        let t0 = Instant::now();
        let mut a = Arrivals::new(Duration::from_secs(60), 1000);
        for i in 0..30 {
            a.record(t0 + Duration::from_secs(i));
        }
        assert!((a.rate(t0 + Duration::from_secs(30)) - 0.5).abs() < 1e-9);
        // The reader's count agrees without forgetting anything.
        assert!((a.rate_at(t0 + Duration::from_secs(75)) - 15.0 / 60.0).abs() < 1e-9);
        assert!((a.rate_at(t0 + Duration::from_secs(30)) - 0.5).abs() < 1e-9);
        assert!((a.rate(t0 + Duration::from_secs(75)) - 15.0 / 60.0).abs() < 1e-9);
        assert_eq!(a.rate_at(t0 + Duration::from_secs(200)), 0.0);
        let mut flood = Arrivals::new(Duration::from_secs(60), 10);
        for _ in 0..100 {
            flood.record(t0);
        }
        assert!((flood.rate(t0) - 10.0 / 60.0).abs() < 1e-9);
    }
}
