//! A spool in memory, for unit tests of the crates above the spool: the
//! same contract as [`crate::RocksSpool`] except durability, plus a switch
//! that makes writes fail as a full disk does.

use crate::{Spool, SpoolError};
use async_trait::async_trait;
use parking_lot::Mutex;
use petrel_message::{Message, SpoolId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A spool held in memory, for unit tests; it keeps nothing over a restart.
#[derive(Default)]
pub struct MemorySpool {
    messages: Mutex<BTreeMap<SpoolId, Message>>,
    failing: AtomicBool,
}

impl MemorySpool {
    /// An empty spool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make stores fail (as on a full disk) until called with `false`.
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many messages are stored.
    pub fn len(&self) -> usize {
        self.messages.lock().len()
    }

    /// Whether it holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Spool for MemorySpool {
    async fn store(&self, messages: &[Message]) -> Result<(), SpoolError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SpoolError::Storage("writes are failing (test switch)".into()));
        }
        let mut stored = self.messages.lock();
        for m in messages {
            if m.data.is_none() {
                return Err(SpoolError::Corrupt {
                    key: m.id.to_string(),
                    reason: "message has no body to store".into(),
                });
            }
        }
        for m in messages {
            stored.insert(m.id, m.clone());
        }
        Ok(())
    }

    async fn update_meta(&self, message: &Message) -> Result<(), SpoolError> {
        let mut stored = self.messages.lock();
        let entry = stored.get_mut(&message.id).ok_or(SpoolError::NotFound(message.id))?;
        let data = entry.data.clone();
        *entry = Message { data, ..message.clone() };
        Ok(())
    }

    async fn remove(&self, id: SpoolId) -> Result<(), SpoolError> {
        self.messages.lock().remove(&id);
        Ok(())
    }

    fn remove_later(&self, id: SpoolId) {
        self.messages.lock().remove(&id);
    }

    async fn load_meta(&self, id: SpoolId) -> Result<Message, SpoolError> {
        let stored = self.messages.lock();
        let message = stored.get(&id).ok_or(SpoolError::NotFound(id))?;
        Ok(Message { data: None, ..message.clone() })
    }

    async fn load_data(&self, id: SpoolId) -> Result<Arc<[u8]>, SpoolError> {
        let stored = self.messages.lock();
        stored.get(&id).and_then(|m| m.data.clone()).ok_or(SpoolError::NotFound(id))
    }

    fn is_healthy(&self) -> bool {
        !self.failing.load(Ordering::SeqCst)
    }

    fn enumerate(&self) -> Result<Vec<Message>, SpoolError> {
        Ok(self.messages.lock().values().map(|m| Message { data: None, ..m.clone() }).collect())
    }
}
