//! Delivery of `custom_lua` queues (log hooks, webhooks): no source, no
//! SMTP; the policy's connection object sends each message. A queue's
//! messages go out one batch at a time and in order, and a transient
//! failure stops the batch and pauses the queue until the retry, so a
//! consumer sees each message's events in the order they happened.

use crate::context::Batching;
use crate::dispatcher::Dispatcher;
use crate::path::CustomOutcome;
use petrel_message::Message;
use petrel_queue::{Failure, ScheduledQueue};
use petrel_telemetry::{RecordType, ResponseInfo};
use std::sync::Arc;

/// Most messages handed to one connection object (its `send_batch` gets
/// `batch_size` at a time).
const MAX_PER_CONNECTION: usize = 256;

/// A reply as the log records it: `451 4.3.0 text` split into its parts.
fn response(code: u16, text: &str) -> ResponseInfo {
    let (enhanced, rest) = match text.split_once(' ') {
        Some((first, rest))
            if first.split('.').count() == 3 && first.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            (Some(first), rest)
        }
        _ => (None, text),
    };
    ResponseInfo::new(code, enhanced, rest)
}

impl Dispatcher {
    /// Send a release of a `custom_lua` queue in the background, in order:
    /// one sender task per queue takes whatever has been released, so
    /// releases that come while it lingers or sends join the next batch.
    pub(crate) fn send_custom(
        self: &Arc<Self>,
        queue: Arc<ScheduledQueue>,
        messages: Vec<Message>,
        constructor: String,
        batching: Batching,
    ) {
        use std::sync::atomic::Ordering;
        let pending = self.custom_queues.of(queue.name());
        pending.messages.lock().extend(messages);
        if pending.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        self.workers.spawn(async move {
            loop {
                // A short batch lingers for companions released meanwhile.
                if let Some(linger) = batching.timeout
                    && batching.size > 1
                    && pending.messages.lock().len() < batching.size
                {
                    tokio::time::sleep(linger).await;
                }
                let taken: Vec<Message> = {
                    let mut waiting = pending.messages.lock();
                    let n = waiting.len().min(MAX_PER_CONNECTION);
                    waiting.drain(..n).collect()
                };
                if taken.is_empty() {
                    pending.running.store(false, Ordering::Release);
                    // A release that raced the check above starts no task of
                    // its own: take it on.
                    if pending.messages.lock().is_empty() || pending.running.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                }
                if !me.custom_batch(&queue, taken, &constructor, batching.size, &pending.messages).await {
                    // Paused: everything waiting went back to the queue.
                    pending.running.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// One connection's worth. Returns `false` when a transient failure
    /// paused the queue (`later` went back with the batch's remainder).
    async fn custom_batch(
        &self,
        queue: &Arc<ScheduledQueue>,
        mut batch: Vec<Message>,
        constructor: &str,
        batch_size: usize,
        later: &parking_lot::Mutex<Vec<Message>>,
    ) -> bool {
        let settle = &self.handles.settle;
        for message in &mut batch {
            if message.data.is_none() {
                match settle.spool.load_data(message.id).await {
                    Ok(data) => message.data = Some(data),
                    Err(e) => tracing::error!(id = %message.id, error = %e, "cannot read a message body to send"),
                }
            }
        }
        let outcomes = self.handles.policy.custom_send(constructor, batch_size, queue.key(), batch.clone()).await;
        let mut outcomes = outcomes.into_iter();
        let mut batch = batch.into_iter();
        while let Some(mut message) = batch.next() {
            let outcome = outcomes.next().unwrap_or(CustomOutcome::Failed {
                code: 451,
                text: "4.3.0 the connection gave no outcome for this message".into(),
            });
            message.num_attempts += 1;
            let (kind, reply) = match &outcome {
                CustomOutcome::Delivered(text) => (RecordType::Delivery, response(250, text)),
                CustomOutcome::Failed { code, text } if *code >= 500 => (RecordType::Bounce, response(*code, text)),
                CustomOutcome::Failed { code, text } => (RecordType::TransientFailure, response(*code, text)),
            };
            let mut record = settle.logger.record(kind, &message, reply.clone());
            record.site = format!("lua:{constructor}");
            record.delivery_protocol = Some("Lua".to_string());
            settle.logger.log(record);
            if kind == RecordType::TransientFailure {
                let mut rest: Vec<Message> = batch.collect();
                rest.append(&mut later.lock());
                settle.queues.retry_in_order(queue, message, rest, &reply).await;
                return false;
            }
            queue.clear_hold();
            if kind == RecordType::Bounce {
                let config = queue.config().unwrap_or_default();
                settle.queues.report_failure(&config, &message, Failure { response: &reply, remote_mta: None }).await;
            }
            if let Err(e) = settle.spool.remove(message.id).await {
                tracing::error!(id = %message.id, error = %e, "cannot remove a finished message from the spool");
            }
        }
        true
    }
}
