//! When to retry a throttled (429) or unavailable (502/503/504) Graph call: honour
//! `Retry-After` when Graph sends one, else exponential backoff with jitter; a bounded number
//! of retries. Pure: the caller passes the attempt number and the random jitter.

use std::time::Duration;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff step when Graph gives no `Retry-After`.
    pub base_delay: Duration,
    /// Longest wait; a `Retry-After` beyond it ends the retries (the caller gets
    /// [`crate::GraphError::Throttled`] with the wait to honour).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `attempt + 1` (`attempt` counts retries already
    /// made), or `None` to give up. `jitter` is uniform in `[0, 1)`.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_retries {
            return None;
        }
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match retry_after {
            Some(ra) if ra > self.max_delay => None,
            // Graph's instruction: wait at least Retry-After; spread clients a little after it.
            Some(ra) => Some(ra + self.base_delay.mul_f64(jitter * 0.2)),
            None => {
                let exp = self
                    .base_delay
                    .saturating_mul(1u32 << attempt.min(16))
                    .min(self.max_delay);
                // "Equal jitter": half fixed, half random.
                Some(exp / 2 + exp.mul_f64(jitter / 2.0))
            }
        }
    }
}

/// Reads `Retry-After` (delta-seconds; Graph does not send HTTP dates).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_retry_after_and_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3)), 0.0),
            Some(Duration::from_secs(3))
        );
        let d = p.delay(0, Some(Duration::from_secs(3)), 0.999).unwrap();
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_millis(3100));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(61)), 0.5),
            None,
            "longer than max_delay: give up, report it"
        );
        assert_eq!(
            p.delay(4, Some(Duration::from_secs(1)), 0.5),
            None,
            "bounded retries"
        );
    }

    #[test]
    fn exponential_with_equal_jitter() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.delay(0, None, 0.0), Some(Duration::from_millis(50)));
        assert_eq!(p.delay(0, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, None, 0.0), Some(Duration::from_millis(200)));
        assert_eq!(
            p.delay(9, None, 1.0),
            Some(Duration::from_secs(1)),
            "capped"
        );
        assert_eq!(p.delay(3, None, f64::NAN), Some(Duration::from_millis(400)));
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after(Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(Some(" 0 ")), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(Some("-1")), None);
        assert_eq!(parse_retry_after(None), None);
    }
}
