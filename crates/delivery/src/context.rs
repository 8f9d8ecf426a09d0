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

/// What the dispatcher works with, in the parts each user needs: ready
/// queues see only `settle` and `connect`.
pub struct DispatcherHandles {
    /// Where an attempt's outcome goes.
    pub settle: Settlement,
    /// What opening a connection needs.
    pub connect: Connector,
    /// Sources, pools and per-path settings, as the policy has them now.
    pub policy: Arc<dyn EgressPolicy>,
    /// EHLO name for sources that set none (the machine's host name).
    pub default_ehlo: String,
    /// Cancelled once when the daemon stops.
    pub shutdown: CancellationToken,
}

/// Where an attempt's outcome is recorded: the log, then the spool (done)
/// or the scheduled queue (retry). Also where bodies are read from.
pub struct Settlement {
    /// Scheduled queues: retries go back to them, finished messages leave them.
    pub queues: Arc<QueueManager>,
    /// Where message bodies are read from and finished messages removed.
    pub spool: Arc<dyn Spool>,
    /// Delivery, TransientFailure and Bounce records, and the delivery metrics.
    pub logger: Logger,
}

/// What opening a connection to a destination needs.
pub struct Connector {
    /// MX and address lookups.
    pub resolver: Arc<dyn Resolver>,
    /// Client TLS settings (verifying and not).
    pub tls: TlsConfigs,
    /// Rates and connection leases, this node's or shared through Redis.
    pub limits: Arc<petrel_throttle::Limiter>,
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
    /// `mx_list` hosts given with the address to connect to: name → addr.
    pub pinned: Vec<(String, String)>,
}

impl Destination {
    /// The site its ready queues are named by. An operator's route is
    /// `mx_list:` and its hosts (KumoMTA's name for smart-host queues), so
    /// it never shares a ready queue, and with it the prohibited_hosts
    /// decision, with the same hosts reached another way.
    pub fn site(&self) -> String {
        if self.explicit { format!("mx_list:{}", self.plan.site()) } else { self.plan.site() }
    }
}

/// How a queue's messages are grouped for `send_batch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Messages per call (1: `send` per message).
    pub size: usize,
    /// How long a short batch waits for more.
    pub timeout: Option<std::time::Duration>,
}

/// The messages each in-order queue has waiting for its one sender task.
#[derive(Default)]
pub(crate) struct CustomQueues(parking_lot::Mutex<std::collections::HashMap<String, Arc<Pending>>>);

#[derive(Default)]
pub(crate) struct Pending {
    /// Released and not yet handed to the connection, in order.
    pub messages: parking_lot::Mutex<Vec<Message>>,
    /// A sender task is running for the queue.
    pub running: std::sync::atomic::AtomicBool,
}

impl CustomQueues {
    pub fn of(&self, queue: &str) -> Arc<Pending> {
        self.0.lock().entry(queue.to_string()).or_default().clone()
    }
}
