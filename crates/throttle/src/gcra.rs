//! The Generic Cell Rate Algorithm, sans-IO: each throttle is one number,
//! its theoretical arrival time (TAT). The same arithmetic runs here for
//! node-local throttles and in the Redis scripts for shared ones.

use crate::spec::ThrottleSpec;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// What `throttle()` reports, in the shape of HTTP rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleResult {
    /// The event may not go now (and was not counted).
    pub throttled: bool,
    /// The throttle's burst capacity.
    pub limit: u64,
    /// Events that may still go at once.
    pub remaining: u64,
    /// Until the throttle is back at full capacity.
    pub reset_after: Duration,
    /// When throttled, how long until the event may go.
    pub retry_after: Option<Duration>,
}

/// Microseconds of the emission interval and of the burst tolerance.
pub(crate) fn parameters(spec: &ThrottleSpec) -> (u64, u64) {
    let interval = spec.interval().as_micros().max(1) as u64;
    (interval, interval * (spec.burst() - 1))
}

/// Count one event at `now` whatever happens; how long it must wait for
/// its slot. Waiters queue in arrival order, so none is starved.
pub(crate) fn reserve(tat: &mut u64, now: u64, spec: &ThrottleSpec) -> u64 {
    let (interval, tolerance) = parameters(spec);
    let base = (*tat).max(now);
    *tat = base + interval;
    base.saturating_sub(tolerance).saturating_sub(now)
}

/// Count one event at `now` only if it may go at once.
pub(crate) fn check(tat: &mut u64, now: u64, spec: &ThrottleSpec) -> ThrottleResult {
    let (interval, tolerance) = parameters(spec);
    let base = (*tat).max(now);
    let allow_at = base.saturating_sub(tolerance);
    if now < allow_at {
        return result(spec, true, allow_at - now, base - now);
    }
    *tat = base + interval;
    result(spec, false, 0, *tat - now)
}

/// The report for a decision: `ahead` is how far the TAT is past now.
pub(crate) fn result(spec: &ThrottleSpec, throttled: bool, retry_us: u64, ahead_us: u64) -> ThrottleResult {
    let (interval, _) = parameters(spec);
    let used = ahead_us.div_ceil(interval);
    ThrottleResult {
        throttled,
        limit: spec.burst(),
        remaining: spec.burst().saturating_sub(used),
        reset_after: Duration::from_micros(ahead_us),
        retry_after: throttled.then(|| Duration::from_micros(retry_us)),
    }
}

/// Node-local throttles by name. Cells whose TAT has passed carry no
/// information, so they are dropped when the map grows (a throttle per
/// sender address must not grow memory forever).
pub(crate) struct LocalCells {
    epoch: Instant,
    cells: Mutex<HashMap<String, u64>>,
}

const SWEEP_AT: usize = 4096;

impl LocalCells {
    pub fn new() -> Self {
        Self { epoch: Instant::now(), cells: Mutex::new(HashMap::new()) }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut u64, u64) -> T) -> T {
        let now = self.now();
        let mut cells = self.cells.lock();
        if cells.len() >= SWEEP_AT && !cells.contains_key(key) {
            cells.retain(|_, tat| *tat > now);
        }
        // Look up by &str first: a throttle in use costs no allocation.
        if let Some(tat) = cells.get_mut(key) {
            return f(tat, now);
        }
        f(cells.entry(key.to_string()).or_insert(now), now)
    }

    /// Count an event; how long it must wait.
    pub fn reserve(&self, key: &str, spec: &ThrottleSpec) -> Duration {
        Duration::from_micros(self.with(key, |tat, now| reserve(tat, now, spec)))
    }

    /// Count an event only if it may go now.
    pub fn check(&self, key: &str, spec: &ThrottleSpec) -> ThrottleResult {
        self.with(key, |tat, now| check(tat, now, spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ThrottleSpec {
        ThrottleSpec::parse(text).unwrap()
    }

    #[test]
    fn burst_then_steady_rate() {
        let s = spec("6/m");
        let mut tat = 0;
        // All six of a minute's quantity may go at once...
        for _ in 0..6 {
            assert!(!check(&mut tat, 0, &s).throttled);
        }
        // ...the seventh waits one interval (10 s).
        let r = check(&mut tat, 0, &s);
        assert!(r.throttled);
        assert_eq!(r.retry_after, Some(Duration::from_secs(10)));
        assert_eq!(r.remaining, 0);
        assert!(!check(&mut tat, 10_000_000, &s).throttled);
    }

    #[test]
    fn max_burst_one_spaces_evenly() {
        let s = spec("60/minute,max_burst=1");
        let mut tat = 0;
        let waits: Vec<u64> = (0..4).map(|_| reserve(&mut tat, 0, &s)).collect();
        assert_eq!(waits, vec![0, 1_000_000, 2_000_000, 3_000_000]);
    }

    #[test]
    fn remaining_counts_down_and_resets() {
        let s = spec("4/s");
        let mut tat = 0;
        let r = check(&mut tat, 0, &s);
        assert_eq!((r.limit, r.remaining), (4, 3));
        check(&mut tat, 0, &s);
        check(&mut tat, 0, &s);
        let r = check(&mut tat, 0, &s);
        assert_eq!(r.remaining, 0);
        assert_eq!(r.reset_after, Duration::from_secs(1));
        let r = check(&mut tat, 2_000_000, &s);
        assert_eq!(r.remaining, 3, "a quiet second refills it");
    }

    #[tokio::test(start_paused = true)]
    async fn local_cells_are_swept() {
        let cells = LocalCells::new();
        let s = spec("1/s");
        for i in 0..SWEEP_AT {
            cells.check(&format!("k{i}"), &s);
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        cells.check("another", &s);
        assert_eq!(cells.cells.lock().len(), 1, "expired cells are dropped");
    }
}
