//! IP warm-up plans: a new source sends at most a day's cap, day after day
//! rising along its plan, then without a cap. Days are UTC calendar days
//! counted from the plan's start.

use chrono::NaiveDate;
use serde::Serialize;

/// A source's warm-up plan (`warmup = { start = '2026-12-01', daily = {50, 100, 250} }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarmupPlan {
    /// Day 1 of the plan.
    pub start: NaiveDate,
    /// The cap of day 1, day 2, …; after the last, no cap.
    pub daily: Vec<u64>,
    /// Count each destination site apart (a cap per source × site).
    pub per_site: bool,
}

impl WarmupPlan {
    /// `start` as `YYYY-MM-DD`, non-empty `daily` caps.
    pub fn parse(start: &str, daily: Vec<u64>, per_site: bool) -> Result<Self, String> {
        let start = NaiveDate::parse_from_str(start.trim(), "%Y-%m-%d")
            .map_err(|e| format!("warmup.start: {start:?} is not a YYYY-MM-DD date ({e})"))?;
        if daily.is_empty() {
            return Err("warmup.daily: give at least one daily cap".into());
        }
        Ok(Self { start, daily, per_site })
    }

    /// Which day of the plan `day` is (1 for the start; before it, 1).
    pub fn day_number(&self, day: NaiveDate) -> u64 {
        (day - self.start).num_days().max(0) as u64 + 1
    }

    /// The cap on `day`; `None` once the plan is over.
    pub fn cap_on(&self, day: NaiveDate) -> Option<u64> {
        self.daily.get(self.day_number(day) as usize - 1).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_plan_then_end() {
        let plan = WarmupPlan::parse("2026-12-01", vec![50, 100, 250], false).unwrap();
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        assert_eq!((plan.day_number(day("2026-11-30")), plan.cap_on(day("2026-11-30"))), (1, Some(50)));
        assert_eq!(plan.cap_on(day("2026-12-01")), Some(50));
        assert_eq!(plan.cap_on(day("2026-12-03")), Some(250));
        assert_eq!((plan.day_number(day("2026-12-04")), plan.cap_on(day("2026-12-04"))), (4, None));
        assert!(WarmupPlan::parse("12/01/2026", vec![1], false).is_err());
        assert!(WarmupPlan::parse("2026-12-01", vec![], false).is_err());
    }
}
