//! Throttling: the documented presence limit (1,500 requests per 30 seconds per application
//! per tenant) as a sliding window, and a switch tests flip (`POST /_sim/throttle`) to make
//! every Graph call answer 429 (or 503) with `Retry-After`. Sans-IO: callers pass `now`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The test switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSwitch {
    /// Whether Graph calls are refused.
    pub enabled: bool,
    /// `Retry-After` in seconds.
    pub retry_after: u64,
    /// Refuse only this many more calls, then switch off (`None`: until switched off).
    pub remaining: Option<u32>,
    /// 429 or 503.
    pub status: u16,
}

impl Default for ThrottleSwitch {
    fn default() -> Self {
        Self {
            enabled: false,
            retry_after: 1,
            remaining: None,
            status: 429,
        }
    }
}

/// What to answer: `Some((status, retry_after))` when refused.
pub type Verdict = Option<(u16, u64)>;

/// The throttling state.
#[derive(Debug)]
pub struct Throttle {
    /// The switch.
    pub switch: ThrottleSwitch,
    limit: u32,
    window: Duration,
    calls: HashMap<String, VecDeque<Instant>>,
}

impl Throttle {
    /// `limit` presence calls per `window` per application.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            switch: ThrottleSwitch::default(),
            limit,
            window,
            calls: HashMap::new(),
        }
    }

    /// Checks the switch (every Graph call).
    pub fn check_switch(&mut self) -> Verdict {
        if !self.switch.enabled {
            return None;
        }
        if let Some(n) = self.switch.remaining.as_mut() {
            if *n == 0 {
                self.switch.enabled = false;
                return None;
            }
            *n -= 1;
        }
        Some((self.switch.status, self.switch.retry_after))
    }

    /// Counts one presence call of `app` and checks the documented limit.
    pub fn check_presence(&mut self, app: &str, now: Instant) -> Verdict {
        let q = self.calls.entry(app.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() >= self.limit as usize {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = self
                .window
                .saturating_sub(now.saturating_duration_since(oldest));
            return Some((429, wait.as_secs().max(1)));
        }
        q.push_back(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_counts_down() {
        let mut t = Throttle::new(1500, Duration::from_secs(30));
        assert_eq!(t.check_switch(), None);
        t.switch = ThrottleSwitch {
            enabled: true,
            retry_after: 2,
            remaining: Some(2),
            status: 429,
        };
        assert_eq!(t.check_switch(), Some((429, 2)));
        assert_eq!(t.check_switch(), Some((429, 2)));
        assert_eq!(t.check_switch(), None);
        assert!(!t.switch.enabled);
    }

    #[test]
    fn presence_window_per_app() {
        let mut t = Throttle::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(t.check_presence("a", t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            t.check_presence("a", t0 + Duration::from_secs(10)),
            Some((429, 20))
        );
        assert_eq!(
            t.check_presence("b", t0 + Duration::from_secs(10)),
            None,
            "limits are per app"
        );
        assert_eq!(
            t.check_presence("a", t0 + Duration::from_secs(30)),
            None,
            "the oldest call left the window"
        );
    }
}
