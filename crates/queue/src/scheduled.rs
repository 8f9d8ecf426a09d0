//! One scheduled queue: its messages by due time and its settings.

use crate::config::{QueueConfig, QueueKey};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use petrel_message::{Message, SpoolId};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Messages of one queue name waiting for their next attempt, with the queue's config.
pub struct ScheduledQueue {
    name: String,
    key: QueueKey,
    config: Mutex<Option<Arc<QueueConfig>>>,
    waiting: Mutex<BTreeMap<(DateTime<Utc>, SpoolId), Message>>,
    /// Messages an operator held (`petrel hold`): kept, never released,
    /// until released. The mark is in their meta, so it outlives a restart.
    on_hold: Mutex<BTreeMap<SpoolId, Message>>,
    last_error: Mutex<Option<String>>,
    /// Why the queue is held: its `get_queue_config` failed, or its pool
    /// or sources could not be had.
    held: Mutex<Option<String>>,
    /// Nothing is released before this time: an in-order queue waits out
    /// the retry of its first failed message.
    paused_until: Mutex<Option<DateTime<Utc>>>,
    pub(crate) wake: Notify,
}

impl ScheduledQueue {
    pub(crate) fn new(name: String, key: QueueKey) -> Self {
        Self {
            name,
            key,
            config: Mutex::new(None),
            waiting: Mutex::new(BTreeMap::new()),
            on_hold: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
            held: Mutex::new(None),
            paused_until: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    /// Its name (`campaign:tenant@domain!routing_domain`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the name is made of.
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

    /// Record why the queue's messages cannot move on (shown by `queue
    /// summary` until the next config or [`clear_hold`](Self::clear_hold)).
    pub fn hold(&self, reason: String) {
        *self.held.lock() = Some(reason);
    }

    /// Its messages move again.
    pub fn clear_hold(&self) {
        let mut held = self.held.lock();
        if held.is_some() {
            *held = None;
        }
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
        let waiting = self.waiting.lock().values().map(|m| m.created).min();
        let held = self.on_hold.lock().values().map(|m| m.created).min();
        waiting.into_iter().chain(held).min()
    }

    /// Messages waiting for a later attempt (held ones included).
    pub fn len(&self) -> usize {
        self.waiting.lock().len() + self.on_hold.lock().len()
    }

    /// Messages an operator holds.
    pub fn on_hold(&self) -> usize {
        self.on_hold.lock().len()
    }

    /// Every message, waiting (with its due time) or held (`None`), in due order.
    pub fn messages(&self) -> Vec<(Option<DateTime<Utc>>, Message)> {
        let mut out: Vec<_> = self.waiting.lock().iter().map(|((due, _), m)| (Some(*due), m.clone())).collect();
        out.extend(self.on_hold.lock().values().map(|m| (None, m.clone())));
        out
    }

    /// Take one message out, waiting or held.
    pub(crate) fn take(&self, id: SpoolId) -> Option<Message> {
        if let Some(m) = self.on_hold.lock().remove(&id) {
            return Some(m);
        }
        let mut waiting = self.waiting.lock();
        let key = *waiting.iter().find(|(_, m)| m.id == id)?.0;
        waiting.remove(&key)
    }
    /// Whether no message waits in it.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&self, due: DateTime<Utc>, message: Message) {
        if is_held(&message) {
            self.on_hold.lock().insert(message.id, message);
            return;
        }
        self.waiting.lock().insert((due, message.id), message);
        self.wake.notify_one();
    }

    /// When the next message may be released: the first due time, or the
    /// end of a pause when that is later.
    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        let due = self.waiting.lock().first_key_value().map(|((due, _), _)| *due)?;
        Some(match *self.paused_until.lock() {
            Some(until) if until > due => until,
            _ => due,
        })
    }

    /// Release nothing before `until`.
    pub(crate) fn pause_until(&self, until: DateTime<Utc>) {
        *self.paused_until.lock() = Some(until);
    }

    pub(crate) fn take_all(&self) -> Vec<Message> {
        let mut all: Vec<Message> = std::mem::take(&mut *self.waiting.lock()).into_values().collect();
        all.extend(std::mem::take(&mut *self.on_hold.lock()).into_values());
        all
    }

    /// Remove and return every message due at or before `now`.
    pub(crate) fn take_due(&self, now: DateTime<Utc>) -> Vec<Message> {
        let mut waiting = self.waiting.lock();
        let later = waiting.split_off(&(now, SpoolId::max()));
        std::mem::replace(&mut *waiting, later).into_values().collect()
    }
}

/// The meta key that marks a message an operator holds.
pub const HOLD_META: &str = "petrel_hold";

/// Whether an operator holds the message.
pub fn is_held(message: &Message) -> bool {
    message.meta.get(HOLD_META).and_then(|v| v.as_bool()).unwrap_or(false)
}
