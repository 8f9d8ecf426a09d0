//! What the console's pages read: one snapshot of the daemon's recent
//! activity, sources and pools (`GET /api/admin/console/v1`), and the log
//! records about a message. Queues and suspensions come from their own
//! endpoints.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Events in one second or minute: received, delivered, deferred,
/// bounced, expired.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivityBucket {
    /// Start of the interval (Unix seconds).
    pub at: i64,
    /// received, delivered, deferred, bounced, expired.
    pub counts: Vec<u64>,
}

/// A pool a source is in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolWeight {
    /// The pool.
    pub pool: String,
    /// The source's weight in it.
    pub weight: u32,
}

/// One egress source as the Sources page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsoleSource {
    /// Its name.
    pub name: String,
    /// The address it binds; none: the system's choice.
    pub address: Option<String>,
    /// Its EHLO name; none: the host name.
    pub ehlo: Option<String>,
    /// Pools it is in, with its weight there.
    pub pools: Vec<PoolWeight>,
    /// Connections open now.
    pub connections: u64,
    /// Delivered in the last hour.
    pub delivered: u64,
    /// Deferred in the last hour.
    pub deferred: u64,
    /// Bounced in the last hour.
    pub bounced: u64,
}

/// One source of a pool: configured weight next to what happened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsolePoolEntry {
    /// The source.
    pub source: String,
    /// Its configured weight.
    pub weight: u32,
    /// Messages of this pool it delivered in the last hour.
    pub delivered_last_hour: u64,
    /// Of the pool's last picks (up to 10,000), how many went to it.
    pub recent_picks: u64,
}

/// One pool as the Pools page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsolePool {
    /// Its name.
    pub name: String,
    /// Its sources.
    pub entries: Vec<ConsolePoolEntry>,
}

/// `GET /api/admin/console/v1`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsoleSnapshot {
    /// Now (Unix seconds), the daemon's clock.
    pub now: i64,
    /// When the daemon started (Unix seconds).
    pub started: i64,
    /// The host name it greets with.
    pub hostname: String,
    /// The policy generation in force.
    pub generation: u64,
    /// Events since start: received, delivered, deferred, bounced, expired.
    pub totals: Vec<u64>,
    /// Per second, the last hour (seconds without events are left out).
    pub seconds: Vec<ActivityBucket>,
    /// Per minute, the last day (minutes without events are left out).
    pub minutes: Vec<ActivityBucket>,
    /// Messages in scheduled queues.
    pub scheduled_messages: u64,
    /// Messages in ready queues.
    pub ready_messages: u64,
    /// When the oldest waiting message arrived, seconds ago.
    pub oldest_age_secs: Option<u64>,
    /// Listeners, as `ESMTP 127.0.0.1:25`.
    pub listeners: Vec<String>,
    /// The spool's directories.
    pub spool: String,
    /// The spool takes new mail (false: below its free-space reserve or
    /// failing writes; new mail is deferred with 451).
    pub spool_healthy: bool,
    /// Egress sources.
    pub sources: Vec<ConsoleSource>,
    /// Egress pools.
    pub pools: Vec<ConsolePool>,
}

/// Which log records: those of one message, or of an address.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// A spool id.
    pub id: Option<String>,
    /// A sender or recipient address.
    pub address: Option<String>,
    /// At most this many records, newest kept (200 by default).
    pub limit: Option<usize>,
}

/// `GET /api/admin/message-records/v1`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageRecords {
    /// The records, oldest first, as the log writes them.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
}
