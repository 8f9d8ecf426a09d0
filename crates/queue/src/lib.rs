//! Scheduled queues: where messages wait for their next attempt.
//!
//! Each queue (named `campaign:tenant@domain!routing_domain`) holds its
//! messages ordered by due time (meta only, never bodies) and its settings
//! from the policy ([`QueuePolicy`]). Due messages are handed to the
//! delivery layer (which chooses their sources) through a channel; failures
//! come back through [`QueueManager::retry`]. [`Intake`] is how received
//! mail enters: spooled, logged, queued.

mod admin;
mod clock;
mod config;
mod intake;
mod loghook;
mod manager;
mod messages;
mod notify;
mod scheduled;

pub use admin::{QueueFilter, RebindTarget, ScheduledSummary};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{DeliveryProtocol, MxListEntry, QueueConfig, QueueKey, QueuePolicy, QueuePolicyError, retry_delay};
pub use intake::{Intake, PolicyError, ReceptionInfo};
pub use loghook::{LogHookPolicy, log_record_message, run_log_hooks};
pub use manager::{Due, QueueManager, RetryDecision};
pub use messages::{ActionOutcome, MessageAction, MessageRow};
pub use notify::Failure;
pub use scheduled::{HOLD_META, ScheduledQueue, is_held};
