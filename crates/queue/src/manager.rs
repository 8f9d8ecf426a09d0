//! The set of scheduled queues and the task that releases each one's due
//! messages to delivery.

use crate::config::{QueueKey, QueuePolicy, retry_delay};
use crate::scheduled::ScheduledQueue;
use chrono::Utc;
use parking_lot::Mutex;
use petrel_message::Message;
use petrel_spool::Spool;
use petrel_telemetry::{Logger, RecordType, ResponseInfo};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A queue with nothing waiting is dropped after this long.
const IDLE_QUEUE: Duration = Duration::from_secs(300);
/// How long to hold a queue's messages when the policy cannot configure it.
const CONFIG_RETRY: Duration = Duration::from_secs(60);

/// Messages of one queue whose time has come, released together so that
/// delivery can group them (one connection, one transaction per body).
pub struct Due {
    /// The queue they belong to.
    pub queue: Arc<ScheduledQueue>,
    /// The messages, in the order they became due.
    pub messages: Vec<Message>,
}

/// What [`QueueManager::retry`] did with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Another attempt at this time.
    Scheduled(chrono::DateTime<Utc>),
    /// No further attempt fits in `max_age`: logged and removed.
    Expired,
}

/// Every scheduled queue, keyed by name, with its timers and the policy that configures it.
pub struct QueueManager {
    pub(crate) queues: Mutex<HashMap<String, Arc<ScheduledQueue>>>,
    pub(crate) suspended: Mutex<Vec<crate::QueueFilter>>,
    policy: Arc<dyn QueuePolicy>,
    pub(crate) spool: Arc<dyn Spool>,
    pub(crate) logger: Logger,
    due_tx: mpsc::UnboundedSender<Due>,
    shutdown: CancellationToken,
    /// Queue tasks run here even when an operator call comes from elsewhere.
    runtime: tokio::runtime::Handle,
    pub(crate) clock: Arc<dyn crate::Clock>,
    /// This host's name in delivery status notifications.
    pub(crate) reporting_mta: String,
}

impl QueueManager {
    /// The receiver yields every due message; delivery drains it.
    pub fn new(
        policy: Arc<dyn QueuePolicy>,
        spool: Arc<dyn Spool>,
        logger: Logger,
        shutdown: CancellationToken,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Due>) {
        Self::with_clock(policy, spool, logger, shutdown, Arc::new(crate::SystemClock), "localhost".into())
    }

    /// As [`QueueManager::new`], with due times, retries and expiry read
    /// from `clock`, and `reporting_mta` naming this host in delivery
    /// status notifications.
    pub fn with_clock(
        policy: Arc<dyn QueuePolicy>,
        spool: Arc<dyn Spool>,
        logger: Logger,
        shutdown: CancellationToken,
        clock: Arc<dyn crate::Clock>,
        reporting_mta: String,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Due>) {
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        let manager = Arc::new(Self {
            queues: Mutex::new(HashMap::new()),
            suspended: Mutex::new(Vec::new()),
            policy,
            spool,
            logger,
            due_tx,
            shutdown,
            runtime: tokio::runtime::Handle::current(),
            clock,
            reporting_mta,
        });
        (manager, due_rx)
    }

    /// Queue a message (new, or recovered from the spool) for its due time.
    /// The body is dropped: it is in the spool, and delivery reads it back
    /// when the attempt starts, so a backlog costs meta, not bodies.
    pub fn insert(self: &Arc<Self>, mut message: Message) {
        message.data = None;
        let due = message.due.unwrap_or_else(|| self.clock.now());
        let name = message.queue_name();
        let mut queues = self.queues.lock();
        let queue = queues.entry(name.clone()).or_insert_with(|| {
            let queue = Arc::new(ScheduledQueue::new(name, QueueKey::of(&message)));
            self.runtime.spawn(self.clone().run_queue(queue.clone()));
            queue
        });
        queue.push(due, message);
    }

    /// Forget every queue's settings so each asks the (new) policy again
    /// before releasing its next messages. Used after a reload.
    pub fn refresh_configs(&self) {
        for queue in self.queues.lock().values() {
            queue.clear_config();
            queue.wake.notify_one();
        }
    }

    /// Look up a scheduled queue by name.
    pub fn queue(&self, name: &str) -> Option<Arc<ScheduledQueue>> {
        self.queues.lock().get(name).cloned()
    }

    /// Messages waiting in scheduled queues (not those being delivered).
    pub fn waiting(&self) -> usize {
        self.queues.lock().values().map(|q| q.len()).sum()
    }

    /// Put a message that failed transiently back for a later attempt, or
    /// expire it when no attempt fits within `max_age`. The caller has
    /// already counted the attempt in `num_attempts`.
    pub async fn retry(
        self: &Arc<Self>,
        queue: &Arc<ScheduledQueue>,
        mut message: Message,
        last: &ResponseInfo,
    ) -> RetryDecision {
        queue.set_last_error(last);
        let config = queue.config().unwrap_or_default();
        let jitter = rand::random_range(-1.0..=1.0);
        let next = self.clock.now() + retry_delay(&config, message.num_attempts.max(1), jitter);
        let expires = message.created + config.max_age;
        if next >= expires {
            self.expire(&config, message, last).await;
            return RetryDecision::Expired;
        }
        self.maybe_report_delay(&config, &mut message, crate::notify::Failure { response: last, remote_mta: None })
            .await;
        message.due = Some(next);
        message.data = None;
        if let Err(e) = self.spool.update_meta(&message).await {
            // The message stays spooled with its old due time: at worst an
            // early retry after a restart.
            tracing::warn!(id = %message.id, error = %e, "cannot record the next attempt time");
        }
        self.insert(message);
        RetryDecision::Scheduled(next)
    }

    /// An in-order queue (a log hook's): `failed` failed transiently and
    /// `rest` of its batch was not tried. All go back with their due times
    /// unchanged and the queue pauses until `failed`'s next attempt, so
    /// they are retried, before anything newer, in the order they came.
    /// `failed` expires instead when that attempt would be past `max_age`.
    pub async fn retry_in_order(
        self: &Arc<Self>,
        queue: &Arc<ScheduledQueue>,
        mut failed: Message,
        mut rest: Vec<Message>,
        last: &ResponseInfo,
    ) {
        // A new message has no due time; its reception time keeps it in line.
        for message in std::iter::once(&mut failed).chain(rest.iter_mut()) {
            message.due.get_or_insert(message.created);
        }
        queue.set_last_error(last);
        let config = queue.config().unwrap_or_default();
        let jitter = rand::random_range(-1.0..=1.0);
        let next = self.clock.now() + retry_delay(&config, failed.num_attempts.max(1), jitter);
        if next >= failed.created + config.max_age {
            self.expire(&config, failed, last).await;
        } else {
            if let Err(e) = self.spool.update_meta(&failed).await {
                tracing::warn!(id = %failed.id, error = %e, "cannot record the attempt count");
            }
            queue.pause_until(next);
            queue.hold(format!(
                "in order: every message waits for the retry of {} at {}",
                failed.id,
                next.format("%H:%M:%S")
            ));
            self.insert(failed);
        }
        for message in rest {
            self.insert(message);
        }
    }

    /// Give up on a message past its `max_age`. The record states the
    /// expiry as KumoMTA's does (`551 5.4.7`, RFC 3463 "delivery time
    /// expired", class 5 because it is final) and keeps the last reply in
    /// `last_response`.
    async fn expire(self: &Arc<Self>, config: &crate::QueueConfig, message: Message, last: &ResponseInfo) {
        let expired = ResponseInfo {
            code: 551,
            enhanced_code: Some("5.4.7".into()),
            content: format!(
                "message expired: the next attempt would be past max_age; last reply: {} {}",
                last.code, last.content
            ),
            command: None,
        };
        let mut record = self.logger.record(RecordType::Expiration, &message, expired.clone());
        record.last_response = Some(last.clone());
        self.logger.log(record);
        let failure = crate::notify::Failure { response: &expired, remote_mta: None };
        self.report_failure(config, &message, failure).await;
        if let Err(e) = self.spool.remove(message.id).await {
            tracing::error!(id = %message.id, error = %e, "cannot remove expired message from the spool");
        }
    }

    async fn run_queue(self: Arc<Self>, queue: Arc<ScheduledQueue>) {
        loop {
            if queue.config().is_none() {
                match self.policy.queue_config(queue.key()).await {
                    Ok(config) => queue.set_config(config),
                    Err(e) => {
                        tracing::error!(queue = queue.name(), error = %e, "get_queue_config failed; holding the queue");
                        queue.hold(e.to_string());
                        // A reload (which wakes every queue) asks again at once.
                        tokio::select! {
                            _ = tokio::time::sleep(CONFIG_RETRY) => {}
                            _ = queue.wake.notified() => {}
                            _ = self.shutdown.cancelled() => return,
                        }
                        continue;
                    }
                }
            }
            if self.is_suspended(&queue) {
                tokio::select! {
                    _ = queue.wake.notified() => continue,
                    _ = self.shutdown.cancelled() => return,
                }
            }
            let now = self.clock.now();
            match queue.next_due() {
                Some(due) if due <= now => self.release(&queue, now).await,
                Some(due) => {
                    tokio::select! {
                        _ = self.clock.sleep_until(due, IDLE_QUEUE) => {}
                        _ = queue.wake.notified() => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                }
                None => {
                    tokio::select! {
                        _ = queue.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_QUEUE) => if self.reap(&queue) { return },
                        _ = self.shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn release(self: &Arc<Self>, queue: &Arc<ScheduledQueue>, now: chrono::DateTime<Utc>) {
        let config = queue.config().unwrap_or_default();
        let max_age = config.max_age;
        let mut due = Vec::new();
        for message in queue.take_due(now) {
            if now >= message.created + max_age {
                let last = ResponseInfo {
                    code: 0,
                    enhanced_code: None,
                    content: "expired while queued".into(),
                    command: None,
                };
                self.expire(&config, message, &last).await;
                continue;
            }
            due.push(message);
        }
        if !due.is_empty() {
            let _ = self.due_tx.send(Due { queue: queue.clone(), messages: due });
        }
    }

    /// Drop an idle queue unless a message arrived meanwhile.
    fn reap(&self, queue: &Arc<ScheduledQueue>) -> bool {
        let mut queues = self.queues.lock();
        if queue.is_empty() {
            queues.remove(queue.name());
            return true;
        }
        false
    }
}
