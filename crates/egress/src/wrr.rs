//! Smooth weighted round-robin (the algorithm nginx uses for upstreams).
//!
//! Each pick adds every eligible entry's weight to its running score, takes
//! the highest score and subtracts the eligible total from it. Over any run of
//! Σweights consecutive picks each entry is chosen exactly `weight` times, and
//! the choices are interleaved (1:2 gives B A B, not A B B), so a burst from
//! one queue spreads across its sources instead of landing on one IP.

use crate::registry::EgressPool;
use std::sync::Arc;

/// The selector state for one pool as seen by one scheduled queue.
#[derive(Debug, Clone)]
pub struct Wrr {
    pool: Arc<EgressPool>,
    scores: Vec<i64>,
}

impl Wrr {
    /// A fresh selector advanced `start` picks into its cycle. Queues pass a
    /// random `start`, so that many small queues do not all begin with the
    /// heaviest source.
    pub fn new(pool: Arc<EgressPool>, start: u64) -> Self {
        let mut wrr = Self { scores: vec![0; pool.entries.len()], pool };
        let total = wrr.pool.total_weight().max(1);
        for _ in 0..start % total {
            wrr.pick(|_| true);
        }
        wrr
    }

    /// The pool this state was built for; a reload that changes the pool
    /// gives a new `Arc`, which tells the owner to start a new selector.
    pub fn pool(&self) -> &Arc<EgressPool> {
        &self.pool
    }

    /// Pick a source name, skipping weight-0 entries and those for which
    /// `available` says no (suspended, or their ready queue is full).
    pub fn pick(&mut self, available: impl Fn(&str) -> bool) -> Option<&str> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, entry) in self.pool.entries.iter().enumerate() {
            if entry.weight == 0 || !available(&entry.source) {
                continue;
            }
            let weight = i64::from(entry.weight);
            self.scores[i] += weight;
            total += weight;
            if best.is_none_or(|b| self.scores[i] > self.scores[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.scores[best] -= total;
        Some(&self.pool.entries[best].source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::PoolEntry;
    use std::collections::HashMap;

    fn pool(weights: &[(&str, u32)]) -> Arc<EgressPool> {
        Arc::new(EgressPool {
            name: "p".into(),
            entries: weights.iter().map(|(s, w)| PoolEntry { source: s.to_string(), weight: *w }).collect(),
            overflow: Default::default(),
        })
    }

    fn picks(wrr: &mut Wrr, n: usize) -> Vec<String> {
        (0..n).map(|_| wrr.pick(|_| true).unwrap().to_string()).collect()
    }

    #[test]
    fn interleaves_rather_than_bunching() {
        let mut wrr = Wrr::new(pool(&[("A", 1), ("B", 2)]), 0);
        assert_eq!(picks(&mut wrr, 6), ["B", "A", "B", "B", "A", "B"]);
        let mut five = Wrr::new(pool(&[("A", 5), ("B", 1), ("C", 1)]), 0);
        assert_eq!(picks(&mut five, 7), ["A", "A", "B", "A", "C", "A", "A"]);
    }

    #[test]
    fn every_window_of_a_cycle_is_exact_from_any_start() {
        let weights = [("A", 3), ("B", 1), ("C", 4), ("D", 2)];
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        for start in 0..u64::from(total) * 2 {
            let mut wrr = Wrr::new(pool(&weights), start);
            let seq = picks(&mut wrr, total as usize * 5);
            for window in seq.windows(total as usize) {
                let mut counts: HashMap<&str, u32> = HashMap::new();
                for s in window {
                    *counts.entry(s).or_default() += 1;
                }
                for (name, w) in weights {
                    assert_eq!(counts.get(name).copied().unwrap_or(0), w, "start {start}");
                }
            }
        }
    }

    #[test]
    fn different_starts_begin_differently() {
        let firsts: std::collections::HashSet<String> =
            (0..3).map(|s| Wrr::new(pool(&[("A", 1), ("B", 2)]), s).pick(|_| true).unwrap().to_string()).collect();
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn skips_zero_weight_and_unavailable() {
        let mut wrr = Wrr::new(pool(&[("A", 1), ("B", 0), ("C", 1)]), 0);
        for _ in 0..10 {
            assert_ne!(wrr.pick(|_| true), Some("B"));
        }
        for _ in 0..10 {
            assert_eq!(wrr.pick(|s| s != "A"), Some("C"));
        }
        assert_eq!(wrr.pick(|_| false), None);
        // Once A is back, the proportions hold again over a cycle.
        let mut wrr = Wrr::new(pool(&[("A", 1), ("C", 3)]), 0);
        let seq = picks(&mut wrr, 400);
        assert_eq!(seq.iter().filter(|s| *s == "A").count(), 100);
    }
}
