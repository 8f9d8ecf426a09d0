//! Operator actions on single messages, the ones Postfix operators know as
//! `mailq`, `postqueue -f` and `postsuper -d/-h/-H`: list what waits, make
//! it due now, hold, release, delete or bounce by spool id.

use crate::admin::QueueFilter;
use crate::manager::QueueManager;
use crate::scheduled::{HOLD_META, is_held};
use chrono::{DateTime, Utc};
use petrel_message::{Message, SpoolId};
use petrel_telemetry::{RecordType, ResponseInfo};
use std::sync::Arc;

/// One waiting message, as `petrel queue list` shows it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// The message's spool id.
    pub id: SpoolId,
    /// Its scheduled queue.
    pub queue: String,
    /// When it was received.
    pub created: DateTime<Utc>,
    /// Its size in bytes.
    pub size: usize,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipient.
    pub recipient: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Its next attempt; `None` while an operator holds it.
    pub next_attempt: Option<DateTime<Utc>>,
    /// The last failure of its queue.
    pub last_error: Option<String>,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageAction {
    /// Keep it, but never release it, until released.
    Hold,
    /// Let a held message go, due now.
    Release,
    /// Remove it without telling anyone (an `AdminBounce` record says so).
    Delete,
    /// Remove it with an `AdminBounce` record carrying the reason.
    Bounce(String),
}

/// What an action found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Done.
    Done,
    /// Release of a message that is not held: nothing to do.
    NotHeld,
    /// No waiting message has the id (unknown, delivered, or being
    /// delivered right now).
    NotWaiting,
}

impl QueueManager {
    /// Messages waiting in matching queues, oldest first, at most `limit`.
    pub fn list_messages(&self, filter: &QueueFilter, limit: usize) -> Vec<MessageRow> {
        let mut rows = Vec::new();
        for queue in self.matching(filter) {
            let last_error = queue.last_error();
            for (due, m) in queue.messages() {
                rows.push(MessageRow {
                    id: m.id,
                    queue: queue.name().to_string(),
                    created: m.created,
                    size: m.size,
                    sender: m.sender.to_string(),
                    recipient: m.recipient.to_string(),
                    attempts: m.num_attempts,
                    next_attempt: due,
                    last_error: last_error.clone(),
                });
            }
        }
        rows.sort_by_key(|r| (r.created, r.id));
        rows.truncate(limit);
        rows
    }

    /// Make every waiting message of matching queues due now (held ones
    /// stay held). Returns how many.
    pub fn flush(self: &Arc<Self>, filter: &QueueFilter) -> usize {
        let mut flushed = 0;
        for queue in self.matching(filter) {
            for mut message in queue.take_all() {
                if !is_held(&message) {
                    message.due = None;
                    flushed += 1;
                }
                self.insert(message);
            }
        }
        flushed
    }

    fn find(&self, id: SpoolId) -> Option<Message> {
        self.matching(&QueueFilter::default()).iter().find_map(|q| q.take(id))
    }

    /// Apply `action` to the waiting message `id`.
    pub async fn message_action(self: &Arc<Self>, id: SpoolId, action: &MessageAction) -> ActionOutcome {
        let Some(mut message) = self.find(id) else { return ActionOutcome::NotWaiting };
        match action {
            MessageAction::Hold | MessageAction::Release => {
                let hold = *action == MessageAction::Hold;
                if !hold && !is_held(&message) {
                    self.insert(message);
                    return ActionOutcome::NotHeld;
                }
                if hold {
                    message.set_meta(HOLD_META, true.into());
                } else {
                    message.meta.retain(|k, _| k != HOLD_META);
                    message.due = None;
                }
                if let Err(e) = self.spool.update_meta(&message).await {
                    tracing::warn!(id = %message.id, error = %e, "cannot record the hold in the spool; it lasts until restart");
                }
                self.insert(message);
                ActionOutcome::Done
            }
            MessageAction::Delete | MessageAction::Bounce(_) => {
                let content = match action {
                    MessageAction::Bounce(reason) => reason.clone(),
                    _ => "deleted by the operator".to_string(),
                };
                let response = ResponseInfo { code: 551, enhanced_code: Some("5.7.1".into()), content, command: None };
                self.logger.log(self.logger.record(RecordType::AdminBounce, &message, response));
                if let Err(e) = self.spool.remove(message.id).await {
                    tracing::error!(id = %message.id, error = %e, "cannot remove a message from the spool");
                }
                ActionOutcome::Done
            }
        }
    }
}
