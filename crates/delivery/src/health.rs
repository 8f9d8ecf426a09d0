//! Sources that cannot be used right now: an address that will not bind
//! (not configured on this host, wrong family) makes every attempt from it
//! fail the same way. Such a source is skipped by the selector for a
//! back-off period, doubling while it keeps failing, so its share of the
//! pool goes to the other sources; after the period it is tried again.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

struct Sick {
    until: Instant,
    failures: u32,
}

#[derive(Default)]
pub(crate) struct SourceHealth {
    sick: Mutex<HashMap<String, Sick>>,
}

impl SourceHealth {
    /// Record a failure that no destination could cause; returns how long
    /// the source is now skipped.
    pub fn failed(&self, source: &str) -> Duration {
        let mut sick = self.sick.lock();
        let entry = sick.entry(source.to_string()).or_insert(Sick { until: Instant::now(), failures: 0 });
        entry.failures += 1;
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (entry.failures - 1).min(5)).min(MAX_BACKOFF);
        entry.until = Instant::now() + backoff;
        backoff
    }

    /// A connection from `source` worked: forget its failures. Returns
    /// whether it had been marked.
    pub fn recovered(&self, source: &str) -> bool {
        self.sick.lock().remove(source).is_some()
    }

    /// Whether the selector should skip `source` now.
    pub fn is_skipped(&self, source: &str) -> bool {
        self.sick.lock().get(source).is_some_and(|s| Instant::now() < s.until)
    }

    /// Whether `source` has failed and not worked since.
    pub fn is_marked(&self, source: &str) -> bool {
        self.sick.lock().contains_key(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_recovery_clears() {
        let health = SourceHealth::default();
        assert!(!health.is_skipped("a"));
        assert_eq!(health.failed("a"), FIRST_BACKOFF);
        assert_eq!(health.failed("a"), FIRST_BACKOFF * 2);
        assert!(health.is_skipped("a") && !health.is_skipped("b"));
        for _ in 0..10 {
            health.failed("a");
        }
        assert_eq!(health.failed("a"), MAX_BACKOFF);
        assert!(health.recovered("a"));
        assert!(!health.is_skipped("a") && !health.is_marked("a"));
    }
}
