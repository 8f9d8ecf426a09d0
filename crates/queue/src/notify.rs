//! Telling senders what became of their mail: delivery status
//! notifications for bounces, expiries and (when the queue asks for them)
//! long delays. A notification is a new message from the null sender,
//! spooled before it is queued and delivered like any other; its own
//! failure is never reported (the null sender gets no notifications).

use crate::QueueManager;
use crate::config::QueueConfig;
use petrel_message::{DsnAction, DsnReport, Message, build_dsn, wants_dsn};
use petrel_telemetry::{RecordType, ResponseInfo};
use std::sync::Arc;

/// The meta key counting delay notifications already sent for a message.
const DELAY_DSNS_SENT: &str = "delay_dsns_sent";

/// A failure to report: the reply and the server that gave it.
pub struct Failure<'a> {
    /// The reply that decided the outcome.
    pub response: &'a ResponseInfo,
    /// The MX host that answered, when there was a connection.
    pub remote_mta: Option<&'a str>,
}

impl QueueManager {
    /// Notify the sender that `message` bounced or expired, when its queue
    /// generates bounces (`generate_bounces`, on by default).
    pub async fn report_failure(self: &Arc<Self>, config: &QueueConfig, message: &Message, failure: Failure<'_>) {
        if config.generate_bounces {
            self.send_dsn(DsnAction::Failed, message, failure, None).await;
        }
    }

    /// Before a retry: when the queue asks for delay notifications and the
    /// message has waited another `delay_dsn_retry_interval` since reception,
    /// tell the sender it is still trying. Counts in the message's meta.
    pub(crate) async fn maybe_report_delay(
        self: &Arc<Self>,
        config: &QueueConfig,
        message: &mut Message,
        failure: Failure<'_>,
    ) {
        if !config.generate_delay_dsn {
            return;
        }
        let sent = message.meta.get(DELAY_DSNS_SENT).and_then(|v| v.as_u64()).unwrap_or(0);
        let waited = (self.clock.now() - message.created).to_std().unwrap_or_default();
        if waited < config.delay_dsn_retry_interval * (sent as u32 + 1) {
            return;
        }
        let until = message.created + config.max_age;
        if self.send_dsn(DsnAction::Delayed, message, failure, Some(until)).await {
            message.set_meta(DELAY_DSNS_SENT, serde_json::Value::from(sent + 1));
        }
    }

    /// Build, spool, log and queue one notification; `true` once spooled.
    async fn send_dsn(
        self: &Arc<Self>,
        action: DsnAction,
        message: &Message,
        failure: Failure<'_>,
        will_retry_until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> bool {
        // The null sender is never told: decide that before reading the body.
        if message.sender.is_null() {
            return false;
        }
        let mut original = message.clone();
        if original.data.is_none() {
            // Expiries and delays happen between attempts, when only the
            // meta is in memory; the headers come from the spool.
            match self.spool.load_data(message.id).await {
                Ok(data) => original.data = Some(data),
                Err(e) => {
                    tracing::warn!(id = %message.id, error = %e, "cannot read a message to report on; the report has no headers")
                }
            }
        }
        if !wants_dsn(&original) {
            return false;
        }
        let response = failure.response;
        let report = DsnReport {
            reporting_mta: &self.reporting_mta,
            original: &original,
            action,
            code: response.code,
            enhanced_code: response.enhanced_code.as_deref(),
            text: &response.content,
            remote_mta: failure.remote_mta,
            last_attempt: self.clock.now(),
            will_retry_until,
        };
        let dsn = build_dsn(&report);
        if let Err(e) = self.spool.store(std::slice::from_ref(&dsn)).await {
            tracing::error!(id = %message.id, error = %e, "cannot spool a delivery status notification; the sender is not told");
            return false;
        }
        let mut record = self.logger.record(
            RecordType::Reception,
            &dsn,
            ResponseInfo::new(250, None, format!("delivery status notification for {}", message.id)),
        );
        record.reception_protocol = Some("DSN".to_string());
        self.logger.log(record);
        self.insert(dsn);
        true
    }
}
