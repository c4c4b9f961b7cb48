//! The simulator's clock: real time plus an offset that tests move forward through
//! `POST /_sim/clock/advance`, so expiry (codes, device codes, presence sessions,
//! subscriptions) is tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// Shared clock; cloning shares the offset.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    offset_ms: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock at real time.
    pub fn new() -> Self {
        Self::default()
    }

    /// How far the clock has been moved ahead of real time.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Monotonic "now" used by the sans-IO cores.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Wall-clock "now" used in tokens and payloads.
    pub fn wall(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset()
    }

    /// Seconds since the Unix epoch (for JWT `iat`/`exp`).
    pub fn unix(&self) -> i64 {
        self.wall().unix_timestamp()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Formats a time as Graph does (`2023-09-14T10:00:00.0000000Z`).
pub fn graph_datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}

/// Parses an RFC 3339 date-time (what clients send in `expirationDateTime`).
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_both_clocks() {
        let c = SimClock::new();
        let before = c.wall();
        c.advance(Duration::from_secs(3600));
        assert!(c.wall() - before >= time::Duration::seconds(3600));
        assert_eq!(c.offset(), Duration::from_secs(3600));
    }

    #[test]
    fn graph_format_round_trips() {
        let t = parse_datetime("2023-09-14T10:00:00.1234567Z").unwrap();
        assert_eq!(graph_datetime(t), "2023-09-14T10:00:00.1234567Z");
    }
}
