//! Rate limits (`"100/s"`, `"1000/h"`) and the pacing that enforces them.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A number of events per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many per period.
    pub limit: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// `N/s`, `N/m`, `N/h`, `N/d` (also `sec`, `min`, `hour`, `day`, plurals).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (n, unit) = text.split_once('/').ok_or_else(|| format!("rate {text:?}: expected N/unit such as 100/s"))?;
        let limit: u32 = n.trim().parse().map_err(|_| format!("rate {text:?}: {n:?} is not a whole number"))?;
        if limit == 0 {
            return Err(format!("rate {text:?}: must be at least 1"));
        }
        let secs = match unit.trim().trim_end_matches('s') {
            "" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hr" | "hour" => 3600,
            "d" | "day" => 86400,
            other => return Err(format!("rate {text:?}: unknown unit {other:?} (use s, m, h or d)")),
        };
        Ok(Self { limit, per: Duration::from_secs(secs) })
    }

    fn interval(&self) -> Duration {
        self.per / self.limit
    }
}

/// Spaces events evenly at the rate; shared by the connections of a ready
/// queue so the limit holds for the queue as a whole.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Throttle {
    /// A throttle spacing events evenly at `rate`; the first may go at once.
    pub fn new(rate: Rate) -> Self {
        Self { interval: rate.interval(), next: Mutex::new(Instant::now()) }
    }

    /// Reserve the next slot and wait for it.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock();
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("100/s").unwrap(), Rate { limit: 100, per: Duration::from_secs(1) });
        assert_eq!(Rate::parse("1000/h").unwrap().per, Duration::from_secs(3600));
        assert_eq!(Rate::parse("5/minute").unwrap().per, Duration::from_secs(60));
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("fast").is_err());
        assert!(Rate::parse("10/fortnight").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn paces_events_evenly() {
        let throttle = Throttle::new(Rate::parse("10/s").unwrap());
        let start = Instant::now();
        for _ in 0..21 {
            throttle.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
