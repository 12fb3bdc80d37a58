//! Per-process rate limiting: what limits requests while Redis is unavailable.
//!
//! The same GCRA as the Redis script, in memory: each replica then enforces the full limit on
//! its own (so N replicas allow up to N times the limit until Redis is back — the documented
//! price of staying up).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::RateWindow;

/// Entries kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

/// In-memory GCRA limiter keyed by string.
#[derive(Debug, Default)]
pub struct LocalLimiter {
    /// Theoretical arrival time per key.
    tats: Mutex<HashMap<String, Instant>>,
}

impl LocalLimiter {
    /// Counts one request against `per_minute` for `key`.
    pub fn check(&self, key: &str, per_minute: i64, now: Instant) -> RateWindow {
        let mut tats = self
            .tats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tats.len() >= SWEEP_AT {
            tats.retain(|_, tat| *tat > now);
        }
        if per_minute <= 0 {
            return RateWindow::denied(per_minute.max(0), Duration::from_secs(60));
        }
        let window = Duration::from_secs(60);
        let interval = window / u32::try_from(per_minute).unwrap_or(u32::MAX);
        let tat = tats.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + interval;
        let allow_at = new_tat.checked_sub(window).unwrap_or(now);
        if now < allow_at {
            return RateWindow {
                limit: per_minute,
                remaining: 0,
                reset: tat - now,
                retry_after: Some(allow_at - now),
            };
        }
        tats.insert(key.to_owned(), new_tat);
        let spare = (now + window).saturating_duration_since(new_tat);
        RateWindow {
            limit: per_minute,
            remaining: i64::try_from(spare.as_nanos() / interval.as_nanos().max(1))
                .unwrap_or(i64::MAX),
            reset: new_tat - now,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_minutes_burst_then_one_per_interval() {
        let limiter = LocalLimiter::default();
        let start = Instant::now();
        for i in 0..6 {
            let w = limiter.check("t", 6, start);
            assert!(w.retry_after.is_none(), "request {i} allowed");
            assert_eq!(w.remaining, 5 - i);
        }
        let denied = limiter.check("t", 6, start);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(10)));
        assert!(
            limiter
                .check("t", 6, start + Duration::from_secs(10))
                .retry_after
                .is_none()
        );
        // Another key has its own budget.
        assert!(limiter.check("u", 6, start).retry_after.is_none());
        assert!(limiter.check("z", 0, start).retry_after.is_some());
    }
}
