//! Today's use of each warming-up source's budget (per site when its plan
//! says so), so the dispatcher can hold or move the mail over the cap.

use chrono::{DateTime, NaiveDate, Utc};
use parking_lot::Mutex;
use petrel_egress::EgressSource;
use std::collections::HashMap;

/// One line of the warm-up view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupUse {
    /// The source.
    pub source: String,
    /// The site, for a per-site plan.
    pub site: Option<String>,
    /// Day of the plan (1 at the start).
    pub day: u64,
    /// Today's cap; `None` once the plan is over.
    pub cap: Option<u64>,
    /// Messages handed to the source today.
    pub used: u64,
}

/// One saved counter: a source (and site, for a per-site plan, else
/// empty), its day and its count, so a restart keeps the day's budget.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WarmupCount {
    /// The source.
    pub source: String,
    /// The site; empty for a plan counted over every site.
    pub site: String,
    /// The UTC day counted.
    pub day: NaiveDate,
    /// Messages handed to the source that day.
    pub used: u64,
}

/// Messages counted per source (× site) for the current UTC day.
#[derive(Default)]
pub(crate) struct WarmupCounters(Mutex<HashMap<(String, String), (NaiveDate, u64)>>);

fn key(source: &EgressSource, site: &str) -> (String, String) {
    let per_site = source.warmup.as_ref().is_some_and(|p| p.per_site);
    (source.name.clone(), if per_site { site.to_string() } else { String::new() })
}

/// The next UTC midnight after `now`, when a new day's budget starts.
fn tomorrow(now: DateTime<Utc>) -> DateTime<Utc> {
    let next = now.date_naive().succ_opt().unwrap_or(now.date_naive());
    next.and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc())
}

impl WarmupCounters {
    fn used(&self, key: &(String, String), today: NaiveDate) -> u64 {
        self.0.lock().get(key).filter(|(day, _)| *day == today).map_or(0, |(_, n)| *n)
    }

    /// Whether `source` has used today's cap for `site`.
    pub(crate) fn is_capped(&self, source: &EgressSource, site: &str, now: DateTime<Utc>) -> bool {
        let Some(plan) = &source.warmup else { return false };
        let today = now.date_naive();
        plan.cap_on(today).is_some_and(|cap| self.used(&key(source, site), today) >= cap)
    }

    /// Count one message against today's budget; `Err(when the next day
    /// starts)` when the cap is already reached.
    pub(crate) fn try_take(&self, source: &EgressSource, site: &str, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let Some(plan) = &source.warmup else { return Ok(()) };
        let today = now.date_naive();
        let Some(cap) = plan.cap_on(today) else { return Ok(()) };
        let mut counters = self.0.lock();
        let entry = counters.entry(key(source, site)).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        if entry.1 >= cap {
            return Err(tomorrow(now));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Every counter, for saving.
    pub(crate) fn snapshot(&self) -> Vec<WarmupCount> {
        let mut out: Vec<WarmupCount> = self
            .0
            .lock()
            .iter()
            .map(|((source, site), (day, used))| WarmupCount {
                source: source.clone(),
                site: site.clone(),
                day: *day,
                used: *used,
            })
            .collect();
        out.sort_by(|a, b| (&a.source, &a.site).cmp(&(&b.source, &b.site)));
        out
    }

    /// Counters saved before a restart (those of an earlier day do not
    /// matter: the day's count starts afresh anyway).
    pub(crate) fn restore(&self, counts: Vec<WarmupCount>) {
        let mut counters = self.0.lock();
        for c in counts {
            let entry = counters.entry((c.source, c.site)).or_insert((c.day, 0));
            if entry.0 == c.day {
                entry.1 = entry.1.max(c.used);
            } else if c.day > entry.0 {
                *entry = (c.day, c.used);
            }
        }
    }

    /// Each warming source's day, cap and use (a per-site plan: each site used).
    pub(crate) fn view<'a>(
        &self,
        sources: impl Iterator<Item = &'a EgressSource>,
        now: DateTime<Utc>,
    ) -> Vec<WarmupUse> {
        let today = now.date_naive();
        let counters = self.0.lock();
        let mut out = Vec::new();
        for source in sources {
            let Some(plan) = &source.warmup else { continue };
            let (day, cap) = (plan.day_number(today), plan.cap_on(today));
            let mut sites: Vec<(Option<String>, u64)> = counters
                .iter()
                .filter(|((name, _), (d, _))| name == &source.name && *d == today)
                .map(|((_, site), (_, n))| ((!site.is_empty()).then(|| site.clone()), *n))
                .collect();
            if sites.is_empty() {
                sites.push((None, 0));
            }
            sites.sort();
            for (site, used) in sites {
                out.push(WarmupUse { source: source.name.clone(), site, day, cap, used });
            }
        }
        out
    }
}
