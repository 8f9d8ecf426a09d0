//! Turning log records into messages (`kumo.configure_log_hook`): each
//! record becomes a message from the original sender to the original
//! recipient whose body is the record's JSON and whose `log_record` meta
//! is the record; the policy's `should_enqueue_log_record` decides whether
//! to keep it (and sets its queue). Kept messages are spooled, in groups,
//! before they are queued, and then delivered like any other message —
//! typically through a `custom_lua` queue that posts them to a webhook.

use crate::{PolicyError, QueueManager};
use petrel_message::{EnvelopeAddress, Message};
use petrel_spool::Spool;
use petrel_telemetry::HookRecord;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records taken from the channel at a time, so spooling is grouped.
const GROUP: usize = 256;

/// The policy's decision on a log record's message.
#[async_trait::async_trait]
pub trait LogHookPolicy: Send + Sync + 'static {
    /// `should_enqueue_log_record(message, hook_name)`: `true` keeps the
    /// message (whose meta the policy may have edited, `queue` above all).
    async fn should_enqueue_log_record(&self, message: &mut Message, hook: &str) -> Result<bool, PolicyError>;
}

/// The message a record becomes (KumoMTA's shape: `log_record` meta, the
/// JSON as body, `reception_protocol = "LogRecord"`).
pub fn log_record_message(record: &HookRecord) -> Message {
    let sender = EnvelopeAddress::parse(&record.record.sender).unwrap_or_else(|_| EnvelopeAddress::null());
    let recipient = EnvelopeAddress::parse(&record.record.recipient).unwrap_or_else(|_| EnvelopeAddress::null());
    let json = serde_json::to_value(&record.record).unwrap_or(serde_json::Value::Null);
    let mut body = serde_json::to_vec(&json).unwrap_or_default();
    body.extend_from_slice(b"\r\n");
    let mut message = Message::new(sender, recipient, Arc::from(body));
    message.set_meta("log_record", json);
    message.set_meta("reception_protocol", serde_json::Value::String("LogRecord".into()));
    message
}

/// Consume hook records until shutdown (then drain what is already sent).
pub async fn run_log_hooks(
    mut rx: mpsc::UnboundedReceiver<HookRecord>,
    policy: Arc<dyn LogHookPolicy>,
    spool: Arc<dyn Spool>,
    queues: Arc<QueueManager>,
    shutdown: CancellationToken,
) {
    let mut group = Vec::with_capacity(GROUP);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut group, GROUP) => n,
            _ = shutdown.cancelled() => {
                while let Ok(r) = rx.try_recv() { group.push(r); }
                0
            }
        };
        if group.is_empty() && (received == 0) {
            return;
        }
        let mut kept = Vec::with_capacity(group.len());
        for record in group.drain(..) {
            let mut message = log_record_message(&record);
            match policy.should_enqueue_log_record(&mut message, &record.hook).await {
                Ok(true) => kept.push(message),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(hook = %record.hook, id = %record.record.id, error = %e, "should_enqueue_log_record failed; the record is not queued")
                }
            }
        }
        if kept.is_empty() {
            continue;
        }
        if let Err(e) = spool.store(&kept).await {
            tracing::error!(count = kept.len(), error = %e, "cannot spool log hook messages; these records are not delivered to the hook");
            continue;
        }
        for message in kept {
            queues.insert(message);
        }
    }
}
