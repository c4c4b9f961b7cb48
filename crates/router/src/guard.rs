//! Scanner and password-guessing defence at the SIP edge: a source address that fails digest
//! authentication [`Limits::failures`] times within [`Limits::window`], or sends more than
//! [`Limits::rate`] requests a second, is refused for [`Limits::ban`] (its requests are dropped
//! without an answer, so a scanner learns nothing). Trunk sources are never rate-banned (their
//! calls are capped per trunk instead) but are banned for failed digests like anyone.
//!
//! Memory is bounded: at most [`Limits::max_tracked`] sources are followed; when the table is
//! full, expired entries go first, then the eighth seen longest ago (bans last) — a flood of
//! spoofed addresses costs a fixed amount of memory and cannot push a ban out before its time
//! unless the table is full of bans.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The guard's thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub failures: u32,
    pub window: Duration,
    pub rate: u32,
    pub ban: Duration,
    pub max_tracked: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(60),
            rate: 100,
            ban: Duration::from_secs(600),
            max_tracked: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    /// Failed digests in the window that started at `failures_since`.
    failures: u32,
    failures_since: Instant,
    /// Requests in the second that started at `second`.
    requests: u32,
    second: Instant,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

/// Why a source is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ban {
    Guessing,
    Flooding,
}

/// The table of sources.
#[derive(Debug)]
pub struct Guard {
    limits: Limits,
    sources: HashMap<IpAddr, Source>,
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            sources: HashMap::new(),
        }
    }

    fn entry(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_tracked {
            self.purge(now);
            if self.sources.len() >= self.limits.max_tracked {
                self.evict(now);
            }
        }
        self.sources.entry(ip).or_insert(Source {
            failures: 0,
            failures_since: now,
            requests: 0,
            second: now,
            banned_until: None,
            last_seen: now,
        })
    }

    /// Full of live entries: the eighth seen longest ago goes in one pass (so a flood of new
    /// addresses costs amortised constant time each), bans last of all.
    fn evict(&mut self, now: Instant) {
        let mut ages: Vec<(bool, Instant, IpAddr)> = self
            .sources
            .iter()
            .map(|(ip, s)| (s.banned_until.is_some_and(|u| u > now), s.last_seen, *ip))
            .collect();
        let n = (ages.len() / 8).max(1);
        if ages.len() > n {
            ages.select_nth_unstable(n);
        }
        for (_, _, ip) in ages.into_iter().take(n) {
            self.sources.remove(&ip);
        }
    }

    /// A request from `ip` arrives: whether to handle it. `trunk` sources are not counted
    /// for rate. Returns the new ban when this request caused one.
    pub fn admit(&mut self, ip: IpAddr, trunk: bool, now: Instant) -> Result<(), Option<Ban>> {
        let limits = self.limits;
        let s = self.entry(ip, now);
        s.last_seen = now;
        if s.banned_until.is_some_and(|u| u > now) {
            return Err(None);
        }
        if trunk {
            return Ok(());
        }
        if now.duration_since(s.second) >= Duration::from_secs(1) {
            s.second = now;
            s.requests = 0;
        }
        s.requests += 1;
        if s.requests > limits.rate {
            s.banned_until = Some(now + limits.ban);
            return Err(Some(Ban::Flooding));
        }
        Ok(())
    }

    /// A digest from `ip` was wrong: returns the ban when this was one too many.
    pub fn auth_failed(&mut self, ip: IpAddr, now: Instant) -> Option<Ban> {
        let limits = self.limits;
        let s = self.entry(ip, now);
        if now.duration_since(s.failures_since) > limits.window {
            s.failures_since = now;
            s.failures = 0;
        }
        s.failures += 1;
        if s.failures >= limits.failures {
            s.banned_until = Some(now + limits.ban);
            s.failures = 0;
            return Some(Ban::Guessing);
        }
        None
    }

    /// Sources refused now.
    pub fn banned(&self, now: Instant) -> usize {
        self.sources
            .values()
            .filter(|s| s.banned_until.is_some_and(|u| u > now))
            .count()
    }

    /// Forgets sources with nothing left to remember.
    pub fn purge(&mut self, now: Instant) {
        let window = self.limits.window;
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|u| u > now)
                || (s.failures > 0 && now.duration_since(s.failures_since) <= window)
                || now.duration_since(s.second) < Duration::from_secs(1)
        });
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn five_wrong_digests_in_a_minute_ban_the_source_for_ten_minutes() {
        let mut g = Guard::new(Limits::default());
        let t = Instant::now();
        for i in 0..4 {
            assert_eq!(g.auth_failed(ip(1), t + Duration::from_secs(i)), None);
        }
        assert_eq!(
            g.auth_failed(ip(1), t + Duration::from_secs(5)),
            Some(Ban::Guessing)
        );
        assert_eq!(g.admit(ip(1), false, t + Duration::from_secs(6)), Err(None));
        assert_eq!(g.admit(ip(1), true, t + Duration::from_secs(6)), Err(None));
        assert_eq!(g.admit(ip(2), false, t + Duration::from_secs(6)), Ok(()));
        assert_eq!(g.admit(ip(1), false, t + Duration::from_secs(606)), Ok(()));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_ban() {
        let mut g = Guard::new(Limits::default());
        let t = Instant::now();
        for i in 0..20 {
            assert_eq!(g.auth_failed(ip(1), t + Duration::from_secs(61 * i)), None);
        }
    }

    #[test]
    fn a_flood_is_banned_but_a_trunk_is_not() {
        let mut g = Guard::new(Limits::default());
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(g.admit(ip(1), false, t), Ok(()));
            assert_eq!(g.admit(ip(9), true, t), Ok(()));
        }
        assert_eq!(g.admit(ip(1), false, t), Err(Some(Ban::Flooding)));
        assert_eq!(g.admit(ip(9), true, t), Ok(()));
        // A second later the counter starts again for a well-behaved source.
        assert_eq!(g.admit(ip(2), false, t), Ok(()));
        assert_eq!(g.admit(ip(2), false, t + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_its_bans() {
        let mut g = Guard::new(Limits {
            max_tracked: 100,
            ..Limits::default()
        });
        let t = Instant::now();
        for _ in 0..5 {
            g.auth_failed(ip(7), t);
        }
        for n in 1000..50_000 {
            let _ = g.admit(ip(n), false, t + Duration::from_secs(2));
        }
        assert!(g.tracked() <= 100);
        assert_eq!(
            g.banned(t + Duration::from_secs(2)),
            1,
            "the ban survived the flood"
        );
    }
}
