//! Source choice: one smooth weighted round-robin per scheduled queue and
//! pool (messages of one queue may name different pools, and each pool
//! keeps its own cycle). Delivery owns it: the dispatcher picks, `route`
//! peeks, and the queue layer knows nothing of sources.

use parking_lot::Mutex;
use petrel_egress::{EgressPool, Wrr};
use std::collections::HashMap;
use std::sync::Arc;

/// Selectors kept before the ones of queues that are gone are dropped.
const SWEEP_AT: usize = 10_000;

/// Queue name → pool name → selector. Nested so a pick looks up by `&str`
/// and allocates only when a queue or pool is seen for the first time.
#[derive(Default)]
pub(crate) struct Selectors {
    by_queue: Mutex<HashMap<String, HashMap<String, Wrr>>>,
    /// Each pool's last [`RECENT_PICKS`] picks, for the console's split.
    recent: Mutex<HashMap<String, std::collections::VecDeque<Arc<str>>>>,
}

/// Picks remembered per pool.
pub const RECENT_PICKS: usize = 10_000;

/// Where a queue's round-robin over a pool starts: spread over queues (so
/// many small queues do not all begin with the same source) yet fixed by
/// the names, so `route` can tell a new queue's first pick.
fn start_position(queue: &str, pool: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (queue, pool).hash(&mut hasher);
    hasher.finish()
}

impl Selectors {
    /// The next source of `pool` for `queue` among those `available`.
    /// `live` says whether a queue still exists, for sweeping.
    pub fn pick(
        &self,
        queue: &str,
        pool: &Arc<EgressPool>,
        available: impl Fn(&str) -> bool,
        live: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let mut all = self.by_queue.lock();
        if !all.contains_key(queue) {
            if all.len() >= SWEEP_AT {
                all.retain(|q, _| live(q));
            }
            all.insert(queue.to_string(), HashMap::new());
        }
        let pools = all.get_mut(queue).expect("inserted above");
        let current = pools.get(&pool.name).is_some_and(|s| **s.pool() == **pool);
        if !current {
            // New, or a redefined pool: a new cycle with its weights.
            pools.insert(pool.name.clone(), Wrr::new(pool.clone(), start_position(queue, &pool.name)));
        }
        let picked = pools.get_mut(&pool.name).expect("inserted above").pick(available).map(str::to_string);
        drop(all);
        if let Some(source) = &picked {
            self.remember(&pool.name, source);
        }
        picked
    }

    fn remember(&self, pool: &str, source: &str) {
        let mut recent = self.recent.lock();
        let ring = match recent.get_mut(pool) {
            Some(ring) => ring,
            None => recent.entry(pool.to_string()).or_default(),
        };
        if ring.len() >= RECENT_PICKS {
            ring.pop_front();
        }
        // Sources repeat: share the name with the previous pick when equal.
        let name = match ring.iter().rev().find(|s| &***s == source) {
            Some(same) => same.clone(),
            None => Arc::from(source),
        };
        ring.push_back(name);
    }

    /// Per pool, how many of its last picks went to each source.
    pub fn recent_split(&self) -> Vec<(String, Vec<(String, u64)>)> {
        let recent = self.recent.lock();
        let mut out: Vec<(String, Vec<(String, u64)>)> = recent
            .iter()
            .map(|(pool, ring)| {
                let mut counts: HashMap<&str, u64> = HashMap::new();
                for s in ring {
                    *counts.entry(&**s).or_default() += 1;
                }
                let mut split: Vec<(String, u64)> = counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
                split.sort();
                (pool.clone(), split)
            })
            .collect();
        out.sort();
        out
    }

    /// What `pick` would return, leaving the state untouched.
    pub fn peek(&self, queue: &str, pool: &Arc<EgressPool>, available: &dyn Fn(&str) -> bool) -> Option<String> {
        let all = self.by_queue.lock();
        let mut state = match all.get(queue).and_then(|pools| pools.get(&pool.name)) {
            Some(s) if **s.pool() == **pool => s.clone(),
            _ => Wrr::new(pool.clone(), start_position(queue, &pool.name)),
        };
        state.pick(available).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_egress::PoolEntry;

    fn pool(name: &str, weights: &[(&str, u32)]) -> Arc<EgressPool> {
        let entries = weights.iter().map(|(s, w)| PoolEntry { source: s.to_string(), weight: *w }).collect();
        Arc::new(EgressPool { name: name.into(), entries, overflow: Default::default() })
    }

    #[test]
    fn pools_sharing_a_queue_keep_their_own_proportions() {
        let selectors = Selectors::default();
        let pick = |p: &Arc<EgressPool>| selectors.pick("q", p, |_| true, |_| true);
        let shared = pool("shared", &[("s1", 1), ("s2", 3)]);
        let own = pool("own", &[("a1", 1)]);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..40 {
            // Interleave another pool's picks between the shared pool's.
            assert_eq!(pick(&own).as_deref(), Some("a1"));
            *counts.entry(pick(&shared).unwrap()).or_default() += 1;
        }
        assert_eq!((counts["s1"], counts["s2"]), (10, 30));
        // A redefined pool starts a new cycle with the new weights.
        let reweighted = pool("shared", &[("s1", 1), ("s2", 1)]);
        let picks: Vec<_> = (0..10).map(|_| pick(&reweighted).unwrap()).collect();
        assert_eq!(picks.iter().filter(|s| *s == "s1").count(), 5);
    }

    #[test]
    fn peeking_predicts_the_next_pick_without_moving_it() {
        let selectors = Selectors::default();
        let p = pool("p", &[("a", 1), ("b", 2)]);
        for _ in 0..6 {
            let peeked = selectors.peek("q", &p, &|_| true);
            assert_eq!(selectors.peek("q", &p, &|_| true), peeked, "peeking moves nothing");
            assert_eq!(selectors.pick("q", &p, |_| true, |_| true), peeked);
        }
    }
}
