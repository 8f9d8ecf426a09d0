//! Operator controls over scheduled queues: suspend, resume, rebind and
//! admin bounce. They act on messages waiting in scheduled queues; messages
//! already handed to delivery finish their attempt first.

use crate::config::QueueKey;
use crate::manager::QueueManager;
use petrel_telemetry::{RecordType, ResponseInfo};
use std::sync::Arc;

/// Which queues an operation applies to; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    pub domain: Option<String>,
    pub tenant: Option<String>,
    pub campaign: Option<String>,
}

impl QueueFilter {
    pub fn matches(&self, key: &QueueKey) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
        self.domain
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case(&key.domain))
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

impl QueueManager {
    /// Stop releasing messages of the named queue until resumed. Suspending
    /// a queue that does not exist yet holds it from its first message.
    pub fn suspend_queue(&self, name: &str) {
        self.suspended.lock().insert(name.to_string());
    }

    pub fn resume_queue(&self, name: &str) {
        self.suspended.lock().remove(name);
        if let Some(queue) = self.queue(name) {
            queue.wake.notify_one();
        }
    }

    pub fn is_suspended(&self, name: &str) -> bool {
        self.suspended.lock().contains(name)
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
                };
                self.logger
                    .log(self.logger.record(RecordType::AdminBounce, &message, response));
                if let Err(e) = self.spool.remove(message.id).await {
                    tracing::error!(id = %message.id, error = %e, "cannot remove an admin-bounced message");
                }
                bounced += 1;
            }
        }
        bounced
    }

    fn matching(&self, filter: &QueueFilter) -> Vec<Arc<crate::ScheduledQueue>> {
        self.queues
            .lock()
            .values()
            .filter(|q| filter.matches(q.key()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_unset_fields_as_wildcards() {
        let key = QueueKey {
            domain: "d.example".into(),
            tenant: Some("t".into()),
            campaign: None,
            routing_domain: None,
        };
        assert!(QueueFilter::default().matches(&key));
        assert!(
            QueueFilter {
                domain: Some("D.example".into()),
                ..Default::default()
            }
            .matches(&key)
        );
        assert!(
            QueueFilter {
                tenant: Some("t".into()),
                ..Default::default()
            }
            .matches(&key)
        );
        assert!(
            !QueueFilter {
                tenant: Some("u".into()),
                ..Default::default()
            }
            .matches(&key)
        );
        assert!(
            !QueueFilter {
                campaign: Some("c".into()),
                ..Default::default()
            }
            .matches(&key)
        );
    }
}
