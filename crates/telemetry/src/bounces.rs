//! The last hour of failed attempts by egress source × site ×
//! classification, in one-minute buckets, so an operator sees at once that
//! one IP is being blocked at one provider (`petrel queue summary`).

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far back the window reaches, in minutes.
const MINUTES: u64 = 60;

type Key = (Arc<str>, Arc<str>, Arc<str>);

#[derive(Default, Clone, Copy)]
struct Tally {
    deferred: u64,
    bounced: u64,
}

/// One line of the window: failures of one source at one site in one class.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BounceCount {
    /// The egress source.
    pub source: String,
    /// The destination site (the MX set, or the smart host list).
    pub site: String,
    /// The bounce classification.
    pub classification: String,
    /// Temporary failures (TransientFailure records).
    pub deferred: u64,
    /// Permanent failures and expirations (Bounce and Expiration records).
    pub bounced: u64,
}

/// Counts per minute for the last hour.
#[derive(Default)]
pub struct BounceWindow {
    minutes: Mutex<VecDeque<(u64, HashMap<Key, Tally>)>>,
}

fn minute_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or(0)
}

impl BounceWindow {
    /// Count one failure.
    pub fn record(&self, source: &str, site: &str, classification: &str, permanent: bool) {
        self.record_at(minute_now(), source, site, classification, permanent);
    }

    fn record_at(&self, minute: u64, source: &str, site: &str, classification: &str, permanent: bool) {
        let mut minutes = self.minutes.lock();
        if minutes.back().is_none_or(|(m, _)| *m != minute) {
            minutes.push_back((minute, HashMap::new()));
        }
        while minutes.front().is_some_and(|(m, _)| *m + MINUTES <= minute) {
            minutes.pop_front();
        }
        let bucket = &mut minutes.back_mut().expect("pushed above").1;
        let key = (Arc::from(source), Arc::from(site), Arc::from(classification));
        let tally = bucket.entry(key).or_default();
        if permanent {
            tally.bounced += 1;
        } else {
            tally.deferred += 1;
        }
    }

    /// The last hour's counts, most failures first.
    pub fn last_hour(&self) -> Vec<BounceCount> {
        self.last_hour_at(minute_now())
    }

    fn last_hour_at(&self, now: u64) -> Vec<BounceCount> {
        let minutes = self.minutes.lock();
        let mut totals: HashMap<&Key, Tally> = HashMap::new();
        for (minute, bucket) in minutes.iter() {
            if minute + MINUTES <= now {
                continue;
            }
            for (key, tally) in bucket {
                let total = totals.entry(key).or_default();
                total.deferred += tally.deferred;
                total.bounced += tally.bounced;
            }
        }
        let mut out: Vec<BounceCount> = totals
            .into_iter()
            .map(|((source, site, class), t)| BounceCount {
                source: source.to_string(),
                site: site.to_string(),
                classification: class.to_string(),
                deferred: t.deferred,
                bounced: t.bounced,
            })
            .collect();
        out.sort_by(|a, b| {
            (b.deferred + b.bounced)
                .cmp(&(a.deferred + a.bounced))
                .then_with(|| (&a.source, &a.site, &a.classification).cmp(&(&b.source, &b.site, &b.classification)))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_source_site_and_class_and_forgets_after_an_hour() {
        let window = BounceWindow::default();
        window.record_at(1000, "ip-1", "mx.big.test", "PolicyRelated", false);
        window.record_at(1001, "ip-1", "mx.big.test", "PolicyRelated", true);
        window.record_at(1001, "ip-2", "mx.big.test", "InvalidRecipient", true);
        let now = window.last_hour_at(1002);
        assert_eq!(now.len(), 2);
        assert_eq!((now[0].source.as_str(), now[0].deferred, now[0].bounced), ("ip-1", 1, 1));
        assert_eq!(now[1].classification, "InvalidRecipient");
        // An hour after the first minute it has left the window.
        let later = window.last_hour_at(1060);
        assert_eq!((later[0].deferred, later[0].bounced), (0, 1));
        window.record_at(1200, "ip-3", "s", "c", true);
        assert_eq!(window.last_hour_at(1200).len(), 1, "old buckets are dropped");
    }
}
