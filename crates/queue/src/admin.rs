//! Operator controls over scheduled queues: suspend, resume, rebind and
//! admin bounce. They act on messages waiting in scheduled queues; messages
//! already handed to delivery finish their attempt first.

use crate::config::QueueKey;
use crate::manager::QueueManager;
use petrel_telemetry::{RecordType, ResponseInfo};
use std::sync::Arc;

/// Which queues an operation applies to: a queue by name and/or by the
/// parts of its name; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// A queue by its exact name.
    pub queue: Option<String>,
    /// Every queue of this recipient domain.
    pub domain: Option<String>,
    /// Every queue of this tenant.
    pub tenant: Option<String>,
    /// Every queue of this campaign.
    pub campaign: Option<String>,
}

impl QueueFilter {
    /// Just the queue with this name.
    pub fn named(name: &str) -> Self {
        Self { queue: Some(name.to_string()), ..Default::default() }
    }

    /// Whether the queue `name` with these parts is selected (every given field must match).
    pub fn matches(&self, name: &str, key: &QueueKey) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
        self.queue.as_deref().is_none_or(|q| q == name)
            && self.domain.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(&key.domain))
            && eq(&self.tenant, key.tenant.as_deref())
            && eq(&self.campaign, key.campaign.as_deref())
    }
}

/// Where rebound messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebindTarget {
    /// Set meta `queue`: the messages move to this scheduled queue.
    Queue(String),
    /// Set meta `egress_pool`: the messages leave from this pool.
    Pool(String),
}

/// What an operator sees of one scheduled queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSummary {
    /// The queue's name.
    pub name: String,
    /// Messages in it.
    pub messages: usize,
    /// When its oldest message was received.
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
    /// The last failure reply of its messages.
    pub last_error: Option<String>,
    /// An operator suspended it.
    pub suspended: bool,
    /// Why the queue is held (its `get_queue_config` failed).
    pub held: Option<String>,
}

impl QueueManager {
    /// Stop releasing messages of the named queue until resumed. Suspending
    /// a queue that does not exist yet holds it from its first message.
    pub fn suspend_queue(&self, name: &str) {
        self.suspend_matching(&QueueFilter::named(name));
    }

    /// Lift the suspensions that select queue `name`.
    pub fn resume_queue(&self, name: &str) {
        self.resume_matching(&QueueFilter::named(name));
    }

    /// Suspend every queue, present or future, that `filter` matches.
    pub fn suspend_matching(&self, filter: &QueueFilter) {
        let mut suspended = self.suspended.lock();
        if !suspended.contains(filter) {
            suspended.push(filter.clone());
        }
    }

    /// Lift a suspension made with the same filter.
    pub fn resume_matching(&self, filter: &QueueFilter) {
        self.suspended.lock().retain(|f| f != filter);
        for queue in self.matching(filter) {
            queue.wake.notify_one();
        }
    }

    /// Whether a suspension selects `queue`.
    pub fn is_suspended(&self, queue: &crate::ScheduledQueue) -> bool {
        self.suspended.lock().iter().any(|f| f.matches(queue.name(), queue.key()))
    }

    /// Every scheduled queue, by name.
    pub fn summary(&self) -> Vec<ScheduledSummary> {
        let queues: Vec<_> = self.queues.lock().values().cloned().collect();
        let mut out: Vec<ScheduledSummary> = queues
            .iter()
            .map(|q| ScheduledSummary {
                name: q.name().to_string(),
                messages: q.len(),
                oldest: q.oldest(),
                last_error: q.last_error(),
                suspended: self.is_suspended(q),
                held: q.held(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Move every waiting message of matching queues to another queue or
    /// pool (Momentum's "reroute queue"); they become due at once. Returns
    /// how many moved.
    pub async fn rebind(self: &Arc<Self>, filter: &QueueFilter, target: &RebindTarget) -> usize {
        let mut moved = 0;
        for queue in self.matching(filter) {
            for mut message in queue.take_all() {
                match target {
                    RebindTarget::Queue(name) => message.set_meta("queue", name.clone().into()),
                    RebindTarget::Pool(pool) => message.set_meta("egress_pool", pool.clone().into()),
                }
                message.due = None;
                if let Err(e) = self.spool.update_meta(&message).await {
                    tracing::warn!(id = %message.id, error = %e, "cannot record the rebind; it holds until restart");
                }
                self.insert(message);
                moved += 1;
            }
        }
        moved
    }

    /// Bounce every waiting message of matching queues: an `AdminBounce`
    /// record each, and out of the spool. Returns how many.
    pub async fn admin_bounce(&self, filter: &QueueFilter, reason: &str) -> usize {
        let mut bounced = 0;
        for queue in self.matching(filter) {
            for message in queue.take_all() {
                let response = ResponseInfo {
                    code: 551,
                    enhanced_code: Some("5.7.1".into()),
                    content: reason.to_string(),
                    command: None,
                };
                self.logger.log(self.logger.record(RecordType::AdminBounce, &message, response));
                if let Err(e) = self.spool.remove(message.id).await {
                    tracing::error!(id = %message.id, error = %e, "cannot remove an admin-bounced message");
                }
                bounced += 1;
            }
        }
        bounced
    }

    pub(crate) fn matching(&self, filter: &QueueFilter) -> Vec<Arc<crate::ScheduledQueue>> {
        self.queues.lock().values().filter(|q| filter.matches(q.name(), q.key())).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_unset_fields_as_wildcards() {
        let key =
            QueueKey { domain: "d.example".into(), tenant: Some("t".into()), campaign: None, routing_domain: None };
        let name = "t@d.example";
        let by = |f: QueueFilter| f.matches(name, &key);
        assert!(by(QueueFilter::default()));
        assert!(by(QueueFilter::named(name)));
        assert!(!by(QueueFilter::named("other")));
        assert!(by(QueueFilter { domain: Some("D.example".into()), ..Default::default() }));
        assert!(by(QueueFilter { tenant: Some("t".into()), ..Default::default() }));
        assert!(!by(QueueFilter { tenant: Some("u".into()), ..Default::default() }));
        assert!(!by(QueueFilter { campaign: Some("c".into()), ..Default::default() }));
    }
}
