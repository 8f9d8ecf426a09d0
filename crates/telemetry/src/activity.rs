//! What the daemon did lately, kept in memory for the console and the
//! status line: events per second for the last hour, per minute for the
//! last day, and each pool × source's outcomes per minute for the last
//! hour. Bounded rings; no database. Times are Unix seconds passed in, so
//! tests drive it without a clock.

use crate::record::RecordType;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

/// The kinds counted, in [`Bucket::counts`] order.
pub const KINDS: [&str; 5] = ["received", "delivered", "deferred", "bounced", "expired"];

const SECONDS: i64 = 3600;
const MINUTES: i64 = 1440;

fn slot(kind: RecordType) -> Option<usize> {
    Some(match kind {
        RecordType::Reception => 0,
        RecordType::Delivery => 1,
        RecordType::TransientFailure => 2,
        RecordType::Bounce | RecordType::AdminBounce => 3,
        RecordType::Expiration => 4,
        _ => return None,
    })
}

/// Events in one second or one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Start of the interval (Unix seconds).
    pub at: i64,
    /// received, delivered, deferred, bounced, expired.
    pub counts: [u64; 5],
}

/// A pool × source's outcomes over the last hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceActivity {
    /// The egress pool.
    pub pool: String,
    /// The egress source.
    pub source: String,
    /// Delivered in the last hour.
    pub delivered: u64,
    /// Deferred (transient failures) in the last hour.
    pub deferred: u64,
    /// Bounced in the last hour.
    pub bounced: u64,
}

/// Per-minute `[delivered, deferred, bounced]` of one pool × source.
type Minutes = VecDeque<(i64, [u64; 3])>;

#[derive(Default)]
struct Inner {
    seconds: VecDeque<Bucket>,
    minutes: VecDeque<Bucket>,
    /// pool → source → per-minute [delivered, deferred, bounced].
    paths: HashMap<String, HashMap<String, Minutes>>,
    totals: [u64; 5],
}

fn bump(ring: &mut VecDeque<Bucket>, at: i64, keep: i64, i: usize) {
    match ring.back_mut() {
        Some(last) if last.at == at => last.counts[i] += 1,
        _ => {
            let mut counts = [0; 5];
            counts[i] = 1;
            ring.push_back(Bucket { at, counts });
        }
    }
    while ring.front().is_some_and(|b| b.at <= at - keep) {
        ring.pop_front();
    }
}

/// The rings; one per daemon, fed by every log record.
#[derive(Default)]
pub struct Activity {
    inner: Mutex<Inner>,
}

impl Activity {
    /// Count a record of `kind` from `pool`/`source` at `now`.
    pub fn record(&self, kind: RecordType, pool: Option<&str>, source: Option<&str>, now: i64) {
        let Some(i) = slot(kind) else { return };
        let mut inner = self.inner.lock();
        inner.totals[i] += 1;
        bump(&mut inner.seconds, now, SECONDS, i);
        bump(&mut inner.minutes, now - now.rem_euclid(60), MINUTES * 60, i);
        let (Some(pool), Some(source), 1..=3) = (pool, source, i) else { return };
        let minute = now - now.rem_euclid(60);
        let sources = match inner.paths.get_mut(pool) {
            Some(s) => s,
            None => inner.paths.entry(pool.to_string()).or_default(),
        };
        let ring = match sources.get_mut(source) {
            Some(r) => r,
            None => sources.entry(source.to_string()).or_default(),
        };
        match ring.back_mut() {
            Some((at, counts)) if *at == minute => counts[i - 1] += 1,
            _ => {
                let mut counts = [0; 3];
                counts[i - 1] = 1;
                ring.push_back((minute, counts));
            }
        }
        while ring.front().is_some_and(|(at, _)| *at <= minute - SECONDS) {
            ring.pop_front();
        }
    }

    /// Every event counted since start: received, delivered, deferred,
    /// bounced, expired.
    pub fn totals(&self) -> [u64; 5] {
        self.inner.lock().totals
    }

    /// Per-second buckets of the last hour that saw events, oldest first.
    pub fn seconds(&self, now: i64) -> Vec<Bucket> {
        self.inner.lock().seconds.iter().filter(|b| b.at > now - SECONDS).copied().collect()
    }

    /// Per-minute buckets of the last day that saw events, oldest first.
    pub fn minutes(&self, now: i64) -> Vec<Bucket> {
        self.inner.lock().minutes.iter().filter(|b| b.at > now - MINUTES * 60).copied().collect()
    }

    /// Each pool × source's outcomes in the last hour.
    pub fn sources(&self, now: i64) -> Vec<SourceActivity> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for (pool, sources) in &inner.paths {
            for (source, ring) in sources {
                let mut sum = [0u64; 3];
                for (_, counts) in ring.iter().filter(|(at, _)| *at > now - SECONDS) {
                    for (s, c) in sum.iter_mut().zip(counts) {
                        *s += c;
                    }
                }
                out.push(SourceActivity {
                    pool: pool.clone(),
                    source: source.clone(),
                    delivered: sum[0],
                    deferred: sum[1],
                    bounced: sum[2],
                });
            }
        }
        out.sort_by(|a, b| (&a.pool, &a.source).cmp(&(&b.pool, &b.source)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_count_by_second_minute_and_path_and_forget_old_buckets() {
        let a = Activity::default();
        let t0 = 1_800_000_000; // a minute boundary
        a.record(RecordType::Reception, None, None, t0);
        a.record(RecordType::Reception, None, None, t0);
        a.record(RecordType::Delivery, Some("p"), Some("s1"), t0 + 1);
        a.record(RecordType::TransientFailure, Some("p"), Some("s2"), t0 + 61);
        a.record(RecordType::Rejection, None, None, t0 + 61);
        assert_eq!(a.totals(), [2, 1, 1, 0, 0]);
        let secs = a.seconds(t0 + 61);
        assert_eq!(secs.len(), 3);
        assert_eq!(secs[0].counts[0], 2);
        let mins = a.minutes(t0 + 61);
        assert_eq!(mins.len(), 2);
        assert_eq!(mins[0].counts, [2, 1, 0, 0, 0]);
        let paths = a.sources(t0 + 61);
        assert_eq!(paths.len(), 2);
        assert_eq!((paths[0].source.as_str(), paths[0].delivered), ("s1", 1));
        // An hour later the per-second ring and the path counts are empty.
        let later = t0 + 3700;
        a.record(RecordType::Bounce, Some("p"), Some("s1"), later);
        assert_eq!(a.seconds(later).len(), 1);
        let s1 = a.sources(later).into_iter().find(|s| s.source == "s1").unwrap();
        assert_eq!((s1.delivered, s1.bounced), (0, 1));
        assert_eq!(a.minutes(later).len(), 3, "a day of minutes");
    }
}
