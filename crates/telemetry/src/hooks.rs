//! Log hooks (`kumo.configure_log_hook`): every logged record is also
//! handed, per hook, to a consumer that turns it into a message (the
//! daemon spools and queues those the policy keeps). The tap only copies
//! and sends; it never blocks the path that logs.

use crate::record::LogRecord;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One `kumo.configure_log_hook{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHookConfig {
    /// The hook's name (`should_enqueue_log_record`'s second argument).
    pub name: String,
    /// Headers of the message to copy into the record.
    pub headers: Vec<String>,
    /// Meta keys to keep; `None` keeps all.
    pub meta: Option<Vec<String>>,
}

/// A record for one hook.
#[derive(Debug, Clone)]
pub struct HookRecord {
    /// The hook it is for.
    pub hook: Arc<str>,
    /// The record, with the hook's headers and meta.
    pub record: LogRecord,
}

/// The hooks in force and where their records go.
#[derive(Clone)]
pub struct HookTap {
    /// The hooks.
    pub hooks: Vec<LogHookConfig>,
    /// The consumer.
    pub tx: mpsc::UnboundedSender<HookRecord>,
}

impl HookTap {
    /// Hand `record` (which carries every header any log wants) to each hook.
    pub(crate) fn send(&self, record: &LogRecord) {
        for hook in &self.hooks {
            let mut copy = record.clone();
            copy.headers.retain(|name, _| hook.headers.iter().any(|h| h.eq_ignore_ascii_case(name)));
            if let Some(keep) = &hook.meta {
                copy.meta.retain(|k, _| keep.contains(k));
            }
            // The consumer lives as long as the daemon; a send after it is
            // gone (at shutdown) has nowhere to go.
            let _ = self.tx.send(HookRecord { hook: Arc::from(hook.name.as_str()), record: copy });
        }
    }

    /// Header names the hooks want copied.
    pub(crate) fn headers(&self) -> impl Iterator<Item = &String> {
        self.hooks.iter().flat_map(|h| h.headers.iter())
    }
}
