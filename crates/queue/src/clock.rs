//! Time for scheduling, retry and expiry, behind a seam: the daemon runs on
//! the system clock; tests drive a [`ManualClock`] and never wait for real
//! retry intervals.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Where scheduling reads the time, so tests can move it by hand.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> DateTime<Utc>;
    /// Wait until `at`, or at most `limit` (so a caller can look again).
    async fn sleep_until(&self, at: DateTime<Utc>, limit: Duration);
}

/// The real clock.
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>, limit: Duration) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default().min(limit);
        tokio::time::sleep(wait).await;
    }
}

/// A clock that moves only when told to; sleepers wake as it passes their
/// time.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    moved: Notify,
}

impl ManualClock {
    /// Starting at the real time now, so messages made with the system
    /// time line up with it.
    pub fn new() -> Self {
        Self { now: Mutex::new(Utc::now()), moved: Notify::new() }
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += chrono::Duration::from_std(by).expect("a sane duration");
        self.moved.notify_waiters();
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock()
    }

    async fn sleep_until(&self, at: DateTime<Utc>, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let moved = self.moved.notified();
            if self.now() >= at {
                return;
            }
            tokio::select! {
                _ = moved => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}
