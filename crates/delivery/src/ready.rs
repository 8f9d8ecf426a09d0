//! A ready queue: messages bound for one site from one source, drained by up
//! to `connection_limit` connection workers that reuse their sessions.

use crate::batch::{Lane, Pacer, Transmitted, compatible, transmit};
use crate::context::{Connector, Destination, Dispatched, Settlement};
use crate::outcome::{Attempt, AttemptConn, Outcome, report};
use crate::path::EgressPathConfig;
use parking_lot::Mutex;
use petrel_egress::EgressSource;
use petrel_smtp_client::{ClientError, ConnectOptions, SmtpClient, TlsMode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// What a ready queue's workers ask of the dispatcher that owns them. The
/// trait lives here, so this module never imports the dispatcher's.
pub(crate) trait ReadyHost: Send + Sync + 'static {
    /// Where outcomes are recorded.
    fn settlement(&self) -> &Settlement;
    /// Resolver and TLS settings for connecting.
    fn connector(&self) -> &Connector;
    /// Cancelled when the daemon stops.
    fn shutdown(&self) -> &tokio_util::sync::CancellationToken;
    /// The source, or this ready queue, is suspended.
    fn is_suspended(&self, source: &str, site: &str) -> bool;
    /// Back to the scheduled queue, due now, without counting an attempt.
    fn requeue(&self, message: petrel_message::Message);
    fn source_worked(&self, source: &str);
    /// The source failed before reaching any host; `items` go elsewhere.
    fn source_failed(&self, attempt: &Attempt<'_>, error: &ClientError, items: Vec<Dispatched>);
    /// Run a connection worker, tracked so shutdown can wait for it.
    fn spawn_worker(&self, worker: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
}

struct Slots {
    items: VecDeque<Dispatched>,
    workers: usize,
    idle: usize,
    /// Replaced by a reload: finish what is held, then stop.
    retired: bool,
}

pub(crate) struct ReadyQueue {
    pub name: String,
    pub source: Arc<EgressSource>,
    pub site: String,
    /// The routing domain its path config was asked for.
    pub routing_domain: String,
    destination: Destination,
    pub(crate) path: EgressPathConfig,
    ehlo: String,
    /// The path's names in the limiter: message rate, connection rate,
    /// connection leases.
    keys: [String; 3],
    slots: Mutex<Slots>,
    wake: Notify,
}

enum Next {
    /// A message and the waiting ones that may share its transaction.
    Batch(Vec<Dispatched>),
    Wait,
    Exit,
}

/// An open connection, counted in the connections gauge and holding its
/// connection lease while it lives.
struct Open {
    client: SmtpClient,
    _gauge: petrel_telemetry::ConnectionGuard,
    lease: petrel_throttle::Lease,
}

/// How long a worker refused a shared connection lease waits to ask again.
const LEASE_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Why no connection could be made to any host of the site.
enum ConnectFailure {
    Client(ClientError),
    /// Every address of the site is in `prohibited_hosts`.
    Prohibited(String),
}

impl ReadyQueue {
    pub fn new(
        name: String,
        source: Arc<EgressSource>,
        site: String,
        routing_domain: String,
        destination: Destination,
        path: EgressPathConfig,
        ehlo: String,
    ) -> Self {
        let slots = Slots { items: VecDeque::new(), workers: 0, idle: 0, retired: false };
        let path_key = format!("{}->{}", source.name, site);
        let keys = [
            format!("message_rate:{path_key}"),
            format!("connection_rate:{path_key}"),
            format!("connections:{path_key}"),
        ];
        Self {
            keys,
            name,
            source,
            site,
            routing_domain,
            destination,
            path,
            ehlo,
            slots: Mutex::new(slots),
            wake: Notify::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.lock().items.len()
    }

    pub fn workers(&self) -> usize {
        self.slots.lock().workers
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.path.max_ready
    }

    /// Queue messages; wake idle connections and open more, up to
    /// `connection_limit`, for what the idle ones cannot take.
    pub fn push_many(self: &Arc<Self>, items: Vec<Dispatched>, dispatcher: &Arc<dyn ReadyHost>) {
        let mut slots = self.slots.lock();
        let count = items.len();
        // Messages come without their body (their scheduled queue dropped
        // it; it is read from the spool when sent), so a source slower than
        // its share holds a backlog at the cost of the envelopes only.
        slots.items.extend(items);
        if slots.idle > 0 {
            self.wake.notify_waiters();
        }
        let wanted = count.saturating_sub(slots.idle);
        let room = self.path.connection_limit.max(1).saturating_sub(slots.workers);
        for _ in 0..wanted.min(room) {
            slots.workers += 1;
            dispatcher.spawn_worker(Box::pin(self.clone().worker(dispatcher.clone())));
        }
    }

    /// The next transaction's messages, taken under one lock so that
    /// another worker cannot split a batch between its first message and
    /// its companions. `connected`: an open connection may wait idle.
    fn next(&self, connected: bool) -> Next {
        let mut slots = self.slots.lock();
        if let Some(first) = slots.items.pop_front() {
            let max = self.path.max_recipients_per_batch.max(1) - 1;
            let more = companions(&mut slots, &first, max);
            let mut batch = Vec::with_capacity(1 + more.len());
            batch.push(first);
            batch.extend(more);
            return Next::Batch(batch);
        }
        if connected && !slots.retired {
            slots.idle += 1;
            Next::Wait
        } else {
            slots.workers -= 1;
            Next::Exit
        }
    }

    /// After an idle wait: keep going if there is work, else retire.
    fn done_waiting(&self, give_up: bool) -> bool {
        let mut slots = self.slots.lock();
        slots.idle -= 1;
        if give_up && slots.items.is_empty() {
            slots.workers -= 1;
            return true;
        }
        false
    }

    /// Return a message to the front, for the next transaction.
    pub fn put_back(&self, item: Dispatched) {
        self.slots.lock().items.push_front(item);
    }

    /// Stop taking work: idle connections close, and the waiting messages
    /// are handed back.
    pub fn retire(&self) -> Vec<Dispatched> {
        let mut slots = self.slots.lock();
        slots.retired = true;
        self.wake.notify_waiters();
        slots.items.drain(..).collect()
    }

    pub fn take_all(&self) -> Vec<Dispatched> {
        self.slots.lock().items.drain(..).collect()
    }

    async fn worker(self: Arc<Self>, dispatcher: Arc<dyn ReadyHost>) {
        let shutdown = dispatcher.shutdown().clone();
        let mut conn: Option<Open> = None;
        let mut sent = 0usize;
        loop {
            if shutdown.is_cancelled() {
                // Stopping: what is still queued stays in the spool for the
                // next start; only the attempt in flight was finished.
                if let Some(open) = conn.take() {
                    open.client.quit().await;
                }
                return;
            }
            // A connection counted in a limit shared with other nodes is
            // closed rather than kept idle, so it does not hold a slot
            // another node's waiting mail could use.
            let keep_idle = conn.as_ref().is_some_and(|open| !open.lease.is_counted());
            let batch = match self.next(keep_idle) {
                Next::Batch(batch) => batch,
                Next::Exit => {
                    if let Some(open) = conn.take() {
                        open.client.quit().await;
                    }
                    return;
                }
                Next::Wait => {
                    let give_up = tokio::select! {
                        _ = self.wake.notified() => false,
                        _ = tokio::time::sleep(self.path.idle_timeout) => true,
                        _ = shutdown.cancelled() => true,
                    };
                    if self.done_waiting(give_up) {
                        if let Some(c) = conn.take() {
                            c.client.quit().await;
                        }
                        return;
                    }
                    continue;
                }
            };
            if dispatcher.is_suspended(&self.source.name, &self.site) {
                // Suspended while these waited: let another source take them.
                for item in batch {
                    dispatcher.requeue(item.message);
                }
                continue;
            }
            if conn.is_none() {
                let limits = &dispatcher.connector().limits;
                let Some(lease) = limits.lease(&self.keys[2], self.path.connection_limit.max(1)).await else {
                    // Every connection the nodes may open to this site is
                    // open: wait for one to close, holding nothing.
                    for item in batch.into_iter().rev() {
                        self.put_back(item);
                    }
                    let pause = LEASE_RETRY + std::time::Duration::from_millis(rand::random_range(0..100));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                };
                match self.connect(&*dispatcher).await {
                    Ok(client) => {
                        dispatcher.source_worked(&self.source.name);
                        let gauge = dispatcher.settlement().logger.metrics().connection_opened(&self.source.name);
                        conn = Some(Open { client, _gauge: gauge, lease });
                        sent = 0;
                    }
                    Err(ConnectFailure::Client(e @ ClientError::Bind { .. })) => {
                        // The source itself is broken, not the site.
                        let waiting: Vec<Dispatched> = batch.into_iter().chain(self.take_all()).collect();
                        dispatcher.source_failed(&self.attempt(None), &e, waiting);
                        continue;
                    }
                    Err(failure) => {
                        // The site is unreachable from this source: everything
                        // queued here would fail the same way, so fail it now.
                        let outcome = match &failure {
                            ConnectFailure::Client(e) => Outcome::from_client(e),
                            ConnectFailure::Prohibited(detail) => Outcome::local(true, "5.4.4", detail.clone()),
                        };
                        tracing::warn!(ready_queue = %self.name, outcome = ?outcome, "connection failed");
                        let attempt = self.attempt(None);
                        for other in batch.into_iter().chain(self.take_all()) {
                            report(dispatcher.settlement(), &attempt, other, &outcome).await;
                        }
                        continue;
                    }
                }
            }
            let client = &mut conn.as_mut().expect("connected above").client;
            let (peer, local, peer_name, tls) =
                (client.peer_addr(), client.local_addr(), client.peer_name().to_string(), client.tls_info().cloned());
            let attempt = self.attempt(Some(AttemptConn { peer_name: &peer_name, peer, local, tls: tls.as_ref() }));
            let put_back = |item: Dispatched| self.put_back(item);
            let limits = &*dispatcher.connector().limits;
            let message_rate = self.path.max_message_rate.map(|spec| Pacer { limits, key: &self.keys[0], spec });
            let lane = Lane { spool: &*dispatcher.settlement().spool, message_rate, put_back: &put_back };
            let (results, reusable) = match transmit(lane, client, batch, sent > 0).await {
                Transmitted::Done(results, reusable) => (results, reusable),
                Transmitted::Stale { retry, done } => {
                    conn = None;
                    for item in retry.into_iter().rev() {
                        self.put_back(item);
                    }
                    for (item, outcome) in done {
                        report(dispatcher.settlement(), &attempt, item, &outcome).await;
                    }
                    continue;
                }
            };
            for (item, outcome) in results {
                report(dispatcher.settlement(), &attempt, item, &outcome).await;
            }
            sent += 1;
            if !reusable || sent >= self.path.max_deliveries_per_connection.max(1) {
                let finished = conn.take();
                if let Some(open) = finished.filter(|_| reusable) {
                    open.client.quit().await;
                }
            }
        }
    }

    fn attempt<'a>(&'a self, conn: Option<AttemptConn<'a>>) -> Attempt<'a> {
        Attempt { source: &self.source, site: &self.site, conn, lmtp: self.path.use_lmtp }
    }

    /// Connect to the site's hosts in preference order until one answers.
    async fn connect(&self, dispatcher: &dyn ReadyHost) -> Result<SmtpClient, ConnectFailure> {
        let resolver = &dispatcher.connector().resolver;
        let mut last: Option<ClientError> = None;
        let mut prohibited = Vec::new();
        for crate::route::Endpoint { name, connect, port } in
            crate::route::endpoints(&self.destination, &self.path, &self.source)
        {
            let addresses = match resolver.resolve_ip(&connect).await {
                Ok(addresses) => addresses,
                Err(e) => {
                    let io = std::io::Error::other(e.to_string());
                    last = Some(ClientError::Connect { target: SocketAddr::from(([0, 0, 0, 0], port)), source: io });
                    continue;
                }
            };
            for ip in addresses {
                if crate::route::is_prohibited(&self.destination, &self.path, &ip) {
                    prohibited.push(format!("{name} ({ip})"));
                    continue;
                }
                if let Some(spec) = self.path.max_connection_rate {
                    let limits = &*dispatcher.connector().limits;
                    Pacer { limits, key: &self.keys[1], spec }.wait().await;
                }
                let target = SocketAddr::new(ip, port);
                match self.connect_one(dispatcher, &name, target).await {
                    Ok(client) => return Ok(client),
                    Err(e) => {
                        tracing::debug!(%target, error = %e, "host failed; trying the next");
                        last = Some(e);
                    }
                }
            }
        }
        match last {
            Some(e) => Err(ConnectFailure::Client(e)),
            None if !prohibited.is_empty() => {
                Err(ConnectFailure::Prohibited(format!("destination is a prohibited host: {}", prohibited.join(", "))))
            }
            None => {
                let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no destination hosts");
                Err(ConnectFailure::Client(ClientError::Io { phase: petrel_smtp_client::Phase::Connect, source: e }))
            }
        }
    }

    /// One host; with `OpportunisticInsecure`, a failed handshake is retried
    /// on a new connection in clear.
    async fn connect_one(
        &self,
        dispatcher: &dyn ReadyHost,
        name: &str,
        target: SocketAddr,
    ) -> Result<SmtpClient, ClientError> {
        let tls = self.path.enable_tls;
        let mut opts = ConnectOptions::new(self.source.source_address, target, self.ehlo.clone());
        opts.server_name = name.to_string();
        opts.timeouts = self.path.timeouts;
        opts.tls = tls;
        opts.tls_configs = Some(dispatcher.connector().tls.clone());
        opts.lmtp = self.path.use_lmtp;
        let traces = dispatcher.settlement().logger.traces();
        if let Some(trace) = traces.client_session(target, self.source.source_address, &self.site) {
            opts.transcript = Some(Arc::new(move |direction, line| trace.emit(direction, line)));
        }
        match SmtpClient::connect(&opts).await {
            Err(ClientError::Tls { detail }) if tls == TlsMode::OpportunisticInsecure => {
                tracing::info!(%target, %detail, "TLS failed; retrying in clear as OpportunisticInsecure allows");
                opts.tls = TlsMode::Disabled;
                SmtpClient::connect(&opts).await
            }
            other => other,
        }
    }
}

/// Up to `max` waiting messages that may share `first`'s transaction.
fn companions(slots: &mut Slots, first: &Dispatched, max: usize) -> Vec<Dispatched> {
    let mut taken = Vec::new();
    let mut i = 0;
    while i < slots.items.len() && taken.len() < max {
        if compatible(first, &slots.items[i]) {
            taken.extend(slots.items.remove(i));
        } else {
            i += 1;
        }
    }
    taken
}
