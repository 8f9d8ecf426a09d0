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
    pub queues: Arc<QueueManager>,
    pub spool: Arc<dyn Spool>,
    pub logger: Logger,
    pub policy: Arc<dyn EgressPolicy>,
    pub resolver: Arc<dyn Resolver>,
    pub tls: TlsConfigs,
    /// EHLO name for sources that set none (the machine's host name).
    pub default_ehlo: String,
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
