//! What delivery's parts share, at the bottom of the crate so that none of
//! them imports another's module for it: the handles every part works
//! with, a message on its way, and where it is going.

use crate::path::EgressPolicy;
use petrel_dns::{MxPlan, Resolver};
use petrel_message::Message;
use petrel_queue::{QueueManager, ScheduledQueue};
use petrel_smtp_client::TlsConfigs;
use petrel_spool::Spool;
use petrel_telemetry::Logger;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the dispatcher works with; shared by its ready queues.
pub struct DispatcherHandles {
    /// Scheduled queues: retries go back to them, finished messages leave them.
    pub queues: Arc<QueueManager>,
    /// Where message bodies are read from and finished messages removed.
    pub spool: Arc<dyn Spool>,
    /// Delivery, TransientFailure and Bounce records, and the delivery metrics.
    pub logger: Logger,
    /// Sources, pools and per-path settings, as the policy has them now.
    pub policy: Arc<dyn EgressPolicy>,
    /// MX and address lookups.
    pub resolver: Arc<dyn Resolver>,
    /// Client TLS settings (verifying and not).
    pub tls: TlsConfigs,
    /// EHLO name for sources that set none (the machine's host name).
    pub default_ehlo: String,
    /// Cancelled once when the daemon stops.
    pub shutdown: CancellationToken,
}

/// A message routed to a ready queue.
pub(crate) struct Dispatched {
    pub queue: Arc<ScheduledQueue>,
    pub message: Message,
    pub pool: String,
}

/// Where a message is going: its hosts, and whether the policy named them.
pub(crate) struct Destination {
    pub plan: MxPlan,
    /// A smart host (`mx_list`) chosen by the operator; `prohibited_hosts`
    /// guards only destinations found through DNS.
    pub explicit: bool,
}
