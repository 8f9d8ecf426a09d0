//! One scheduled queue: its messages by due time, settings and WRR state.

use crate::config::{QueueConfig, QueueKey};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use petrel_egress::{EgressPool, Wrr};
use petrel_message::{Message, SpoolId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Notify;

pub struct ScheduledQueue {
    name: String,
    key: QueueKey,
    config: Mutex<Option<Arc<QueueConfig>>>,
    /// One selector per pool: messages of one queue may name different
    /// pools (meta `egress_pool`), and each pool keeps its own cycle.
    wrr: Mutex<HashMap<String, Wrr>>,
    waiting: Mutex<BTreeMap<(DateTime<Utc>, SpoolId), Message>>,
    last_error: Mutex<Option<String>>,
    /// Why the queue is held: its `get_queue_config` failed.
    held: Mutex<Option<String>>,
    pub(crate) wake: Notify,
}

/// Where a queue's round-robin over a pool starts: spread over queues (so
/// many small queues do not all begin with the same source) yet fixed by
/// the names, so `petrel route` can tell a new queue's first pick.
pub fn start_position(queue: &str, pool: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (queue, pool).hash(&mut hasher);
    hasher.finish()
}

impl ScheduledQueue {
    pub(crate) fn new(name: String, key: QueueKey) -> Self {
        Self {
            name,
            key,
            config: Mutex::new(None),
            wrr: Mutex::new(HashMap::new()),
            waiting: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
            held: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn key(&self) -> &QueueKey {
        &self.key
    }

    /// The queue's settings, once the policy has supplied them.
    pub fn config(&self) -> Option<Arc<QueueConfig>> {
        self.config.lock().clone()
    }

    pub(crate) fn clear_config(&self) {
        *self.config.lock() = None;
    }

    pub(crate) fn set_config(&self, config: QueueConfig) {
        *self.config.lock() = Some(Arc::new(config));
        *self.held.lock() = None;
    }

    /// Why the queue holds its messages, when its config could not be had.
    pub fn held(&self) -> Option<String> {
        self.held.lock().clone()
    }

    pub(crate) fn hold(&self, reason: String) {
        *self.held.lock() = Some(reason);
    }

    /// The reply of the last failed attempt, for operators.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub(crate) fn set_last_error(&self, response: &petrel_telemetry::ResponseInfo) {
        let code = response.enhanced_code.as_deref().map(|e| format!(" {e}")).unwrap_or_default();
        *self.last_error.lock() = Some(format!("{}{code} {}", response.code, response.content));
    }

    /// When the oldest waiting message was received.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.waiting.lock().values().map(|m| m.created).min()
    }

    /// Messages waiting for a later attempt.
    pub fn len(&self) -> usize {
        self.waiting.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Choose a source of `pool` by this queue's weighted round-robin. The
    /// state restarts, at a random point of the cycle, when the pool's
    /// definition differs from the one the state was built for.
    pub fn pick_source(&self, pool: &Arc<EgressPool>, available: impl Fn(&str) -> bool) -> Option<String> {
        let mut states = self.wrr.lock();
        let start = start_position(&self.name, &pool.name);
        let state = states.entry(pool.name.clone()).or_insert_with(|| Wrr::new(pool.clone(), start));
        if **state.pool() != **pool {
            *state = Wrr::new(pool.clone(), start);
        }
        state.pick(available).map(str::to_string)
    }

    /// What `pick_source` would return, leaving the state untouched.
    pub fn peek_source(&self, pool: &Arc<EgressPool>, available: &dyn Fn(&str) -> bool) -> Option<String> {
        let states = self.wrr.lock();
        let mut state = match states.get(&pool.name) {
            Some(s) if **s.pool() == **pool => s.clone(),
            _ => Wrr::new(pool.clone(), start_position(&self.name, &pool.name)),
        };
        state.pick(available).map(str::to_string)
    }

    pub(crate) fn push(&self, due: DateTime<Utc>, message: Message) {
        self.waiting.lock().insert((due, message.id), message);
        self.wake.notify_one();
    }

    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.waiting.lock().first_key_value().map(|((due, _), _)| *due)
    }

    pub(crate) fn take_all(&self) -> Vec<Message> {
        std::mem::take(&mut *self.waiting.lock()).into_values().collect()
    }

    /// Remove and return every message due at or before `now`.
    pub(crate) fn take_due(&self, now: DateTime<Utc>) -> Vec<Message> {
        let mut waiting = self.waiting.lock();
        let later = waiting.split_off(&(now, SpoolId::max()));
        std::mem::replace(&mut *waiting, later).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_egress::PoolEntry;

    fn pool(name: &str, weights: &[(&str, u32)]) -> Arc<EgressPool> {
        let entries = weights.iter().map(|(s, w)| PoolEntry { source: s.to_string(), weight: *w }).collect();
        Arc::new(EgressPool { name: name.into(), entries })
    }

    #[test]
    fn pools_sharing_a_queue_keep_their_own_proportions() {
        let queue = ScheduledQueue::new(
            "q".into(),
            QueueKey { domain: "d".into(), tenant: None, campaign: None, routing_domain: None },
        );
        let shared = pool("shared", &[("s1", 1), ("s2", 3)]);
        let own = pool("own", &[("a1", 1)]);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..40 {
            // Interleave another pool's picks between the shared pool's.
            assert_eq!(queue.pick_source(&own, |_| true).as_deref(), Some("a1"));
            *counts.entry(queue.pick_source(&shared, |_| true).unwrap()).or_default() += 1;
        }
        assert_eq!((counts["s1"], counts["s2"]), (10, 30));
        // A redefined pool starts a new cycle with the new weights.
        let reweighted = pool("shared", &[("s1", 1), ("s2", 1)]);
        let picks: Vec<_> = (0..10).map(|_| queue.pick_source(&reweighted, |_| true).unwrap()).collect();
        assert_eq!(picks.iter().filter(|s| *s == "s1").count(), 5);
    }
}
