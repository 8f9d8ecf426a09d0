//! The spool: where a message lives from the moment it is acknowledged until
//! its final outcome. [`Spool`] is what the rest of Petrel uses;
//! [`RocksSpool`] keeps meta and body in RocksDB and makes every store
//! durable (a synced write, shared by concurrent writers) before it returns.

mod memory;
mod rocks;
mod rocks_log;
mod salvage;
mod space;
mod wal_scan;

use async_trait::async_trait;
use petrel_message::{Message, SpoolId};
use std::sync::Arc;

pub use memory::MemorySpool;
pub use rocks::{RocksSpool, SpoolPaths};
pub use salvage::{SalvageReport, check, repair};
pub use space::{SpoolReserves, StorageReserve, Threshold};

/// Why a spool operation failed; [`SpoolError::is_transient`] tells whether to try again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// The storage refused a read or write (disk full, I/O error). New mail
    /// should be deferred; retrying later may succeed.
    #[error("spool storage error: {0}")]
    Storage(String),
    /// Free space or inodes are below the reserve (`min_free_space`,
    /// `min_free_inodes`): new mail waits until deliveries free some.
    #[error("the spool is below its free-space reserve")]
    NoSpace,
    /// The database cannot be opened as it is; `petrel spool repair`
    /// salvages what is readable.
    #[error("the spool at {} is damaged: {reason}", path.display())]
    Damaged {
        /// The database directory.
        path: std::path::PathBuf,
        /// What RocksDB reported.
        reason: String,
    },
    /// Another process (a second daemon) has the spool open.
    #[error("the spool at {} is in use by process {pid} (another petrel serve?)", path.display())]
    InUse {
        /// The database directory.
        path: std::path::PathBuf,
        /// The process holding its lock.
        pid: i32,
    },
    /// No record for this id.
    #[error("message {0} is not in the spool")]
    NotFound(SpoolId),
    /// A record is stored but does not decode.
    #[error("spool record {key} is corrupt: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The spool was shut down.
    #[error("the spool is closed")]
    Closed,
}

impl SpoolError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SpoolError::Storage(_) | SpoolError::NoSpace | SpoolError::Closed)
    }
}

/// Durable message storage. A `store` that returned `Ok` survives a crash.
#[async_trait]
pub trait Spool: Send + Sync + 'static {
    /// Store messages (meta and body) durably, all or none.
    async fn store(&self, messages: &[Message]) -> Result<(), SpoolError>;
    /// Rewrite a message's meta record (attempt count, next due time).
    /// Survives a process crash; not fsynced (see [`RocksSpool`]).
    async fn update_meta(&self, message: &Message) -> Result<(), SpoolError>;
    /// Forget a message after its final outcome. Survives a process crash;
    /// an OS crash may bring the message back (a duplicate, never a loss).
    async fn remove(&self, id: SpoolId) -> Result<(), SpoolError>;
    /// [`Spool::remove`] without waiting for the write: a delivery
    /// connection moves on to its next message while the removal rides
    /// with the writer's next batch. The same guarantee once written; a
    /// process crash before then brings the message back (a duplicate,
    /// never a loss), and a failed write is logged by the spool.
    fn remove_later(&self, id: SpoolId);
    /// The meta record of a spooled message (body not loaded).
    async fn load_meta(&self, id: SpoolId) -> Result<Message, SpoolError>;
    /// The body of a spooled message.
    async fn load_data(&self, id: SpoolId) -> Result<Arc<[u8]>, SpoolError>;
    /// False while new mail cannot be stored: a write failed and the
    /// storage is not back yet, or free space is below the reserve.
    fn is_healthy(&self) -> bool {
        true
    }
    /// Every spooled message's meta (bodies not loaded), for re-queueing at
    /// start. Records whose body is missing are dropped with a log line;
    /// records that cannot be read are left in place, logged at error and
    /// counted in [`Spool::unreadable`].
    fn enumerate(&self) -> Result<Vec<Message>, SpoolError>;
    /// Records the last [`Spool::enumerate`] found but could not read:
    /// unparsable meta, and ids the WAL holds whose records are gone.
    fn unreadable(&self) -> usize {
        0
    }
}
