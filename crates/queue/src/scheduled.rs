//! One scheduled queue: its messages by due time, settings and WRR state.

use crate::config::{QueueConfig, QueueKey};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use petrel_egress::{EgressPool, Wrr};
use petrel_message::{Message, SpoolId};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct ScheduledQueue {
    name: String,
    key: QueueKey,
    config: Mutex<Option<Arc<QueueConfig>>>,
    wrr: Mutex<Option<Wrr>>,
    waiting: Mutex<BTreeMap<(DateTime<Utc>, SpoolId), Message>>,
    pub(crate) wake: Notify,
}

impl ScheduledQueue {
    pub(crate) fn new(name: String, key: QueueKey) -> Self {
        Self {
            name,
            key,
            config: Mutex::new(None),
            wrr: Mutex::new(None),
            waiting: Mutex::new(BTreeMap::new()),
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

    pub(crate) fn set_config(&self, config: QueueConfig) {
        *self.config.lock() = Some(Arc::new(config));
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
        let mut guard = self.wrr.lock();
        let stale = guard.as_ref().is_none_or(|w| **w.pool() != **pool);
        if stale {
            *guard = Some(Wrr::new(pool.clone(), rand::random()));
        }
        guard.as_mut().and_then(|w| w.pick(available).map(str::to_string))
    }

    pub(crate) fn push(&self, due: DateTime<Utc>, message: Message) {
        self.waiting.lock().insert((due, message.id), message);
        self.wake.notify_one();
    }

    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.waiting.lock().first_key_value().map(|((due, _), _)| *due)
    }

    /// Remove and return every message due at or before `now`.
    pub(crate) fn take_due(&self, now: DateTime<Utc>) -> Vec<Message> {
        let mut waiting = self.waiting.lock();
        let later = waiting.split_off(&(now, SpoolId::max()));
        std::mem::replace(&mut *waiting, later).into_values().collect()
    }
}
