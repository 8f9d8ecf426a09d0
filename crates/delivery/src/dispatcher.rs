//! Routing a due message to a ready queue: pool, source, site.

use crate::context::{Destination, Dispatched, DispatcherHandles};
use crate::outcome::{Attempt, Outcome, report};
use crate::ready::{ReadyHost, ReadyQueue};
use parking_lot::Mutex;
use petrel_dns::MxPlan;
use petrel_egress::{DEFAULT_NAME, EgressSource, Overflow};
use petrel_message::Message;
use petrel_queue::{DeliveryProtocol, Due, ScheduledQueue};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a message waits when every source of its pool is unavailable.
const NO_SOURCE_DELAY: Duration = Duration::from_secs(5);

/// What an operator sees of one ready queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadySummary {
    /// `source->site`.
    pub name: String,
    /// The egress source it sends from.
    pub source: String,
    /// The destination site (its MX host set).
    pub site: String,
    /// Messages waiting in it.
    pub messages: usize,
    /// Connection workers (connected, connecting or idle).
    pub connections: usize,
    /// The source is suspended by an operator.
    pub source_suspended: bool,
    /// The source failed in a way no destination causes (its address does
    /// not bind) and is skipped for a while.
    pub source_unhealthy: bool,
}

/// Takes due messages from the scheduled queues, gives each a pool, source and site, and runs the ready queues that send them.
pub struct Dispatcher {
    pub(crate) handles: DispatcherHandles,
    /// Every connection worker, so shutdown can wait for attempts in flight.
    pub(crate) workers: tokio_util::task::TaskTracker,
    ready: Mutex<HashMap<String, Arc<ReadyQueue>>>,
    suspended_sources: Mutex<HashSet<String>>,
    /// `(source, site)` pairs held: one ready queue, by automation or an operator.
    suspended_ready: Mutex<HashSet<(String, String)>>,
    pub(crate) health: crate::health::SourceHealth,
    pub(crate) selectors: crate::selector::Selectors,
    pub(crate) custom_queues: crate::context::CustomQueues,
    warmup: crate::warmup::WarmupCounters,
    /// Egress path options overridden per `source->site` (shaping
    /// automation's SetConfig), applied over the policy's answer.
    overrides: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl Dispatcher {
    /// A dispatcher with no ready queues yet.
    pub fn new(handles: DispatcherHandles) -> Arc<Self> {
        Arc::new(Self {
            handles,
            workers: tokio_util::task::TaskTracker::new(),
            ready: Mutex::new(HashMap::new()),
            suspended_sources: Mutex::new(HashSet::new()),
            suspended_ready: Mutex::new(HashSet::new()),
            health: Default::default(),
            selectors: Default::default(),
            custom_queues: Default::default(),
            warmup: Default::default(),
            overrides: Mutex::new(HashMap::new()),
        })
    }

    /// Route due messages until shutdown.
    pub async fn run(self: Arc<Self>, mut due: mpsc::UnboundedReceiver<Due>) {
        loop {
            tokio::select! {
                next = due.recv() => match next {
                    Some(d) => self.route_all(d).await,
                    None => return,
                },
                _ = self.handles.shutdown.cancelled() => return,
            }
        }
    }

    /// After a reload: ready queues whose source is affected (redefined,
    /// removed, or in a pool that changed) or whose egress path config now
    /// reads differently stop taking work once their current transactions
    /// end, and their waiting messages go back to their scheduled queues to
    /// be routed again. The others keep their connections and their mail.
    /// Returns how many were retired.
    pub async fn retire_changed_ready_queues(&self, affected_sources: &HashSet<String>) -> usize {
        let all: Vec<(String, Arc<ReadyQueue>)> =
            self.ready.lock().iter().map(|(k, q)| (k.clone(), q.clone())).collect();
        let mut retired = 0;
        for (name, queue) in all {
            let changed = affected_sources.contains(&queue.source.name)
                || match self
                    .handles
                    .policy
                    .egress_path_config(&queue.routing_domain, &queue.source.name, &queue.site)
                    .await
                {
                    Ok(path) => self.overridden(&name, path) != queue.path,
                    Err(_) => true,
                };
            if !changed {
                continue;
            }
            self.ready.lock().remove(&name);
            for item in queue.retire() {
                self.requeue(item.message);
            }
            retired += 1;
        }
        retired
    }

    /// Stop sending from a source (Momentum's `suspend_delivery` on a
    /// binding): the selector skips it, and messages waiting in its ready
    /// queues go back to their scheduled queues to be given another source.
    /// Attempts in progress finish.
    pub fn suspend_source(&self, name: &str) {
        self.suspended_sources.lock().insert(name.to_string());
        let ready: Vec<Arc<ReadyQueue>> =
            self.ready.lock().values().filter(|r| r.source.name == name).cloned().collect();
        for queue in ready {
            for item in queue.take_all() {
                self.requeue(item.message);
            }
        }
    }

    /// Per pool, how its last picks (up to 10,000) split over its sources.
    pub fn recent_picks(&self) -> Vec<(String, Vec<(String, u64)>)> {
        self.selectors.recent_split()
    }

    /// Let the selector pick `name` again.
    pub fn resume_source(&self, name: &str) {
        self.suspended_sources.lock().remove(name);
    }

    /// Whether an operator suspended `name`.
    pub fn is_source_suspended(&self, name: &str) -> bool {
        self.suspended_sources.lock().contains(name)
    }

    /// Stop sending from `source` to `site` only (KumoMTA's ready-queue
    /// suspension, what shaping automation does on a provider's block):
    /// the pool's other sources take that site's mail.
    pub fn suspend_ready(&self, source: &str, site: &str) {
        self.suspended_ready.lock().insert((source.to_string(), site.to_string()));
        let name = ready_name(source, site);
        let queue = self.ready.lock().get(&name).cloned();
        if let Some(queue) = queue {
            for item in queue.take_all() {
                self.requeue(item.message);
            }
        }
    }

    /// Override the egress path option `name` of `source->site`; its ready
    /// queue is rebuilt with it (waiting messages are routed again).
    pub fn set_path_override(&self, source: &str, site: &str, name: &str, value: &str) {
        let key = ready_name(source, site);
        let mut overrides = self.overrides.lock();
        let list = overrides.entry(key.clone()).or_default();
        list.retain(|(n, _)| n != name);
        list.push((name.to_string(), value.to_string()));
        drop(overrides);
        self.rebuild_ready(&key);
    }

    /// Drop the override of `name` on `source->site`.
    pub fn clear_path_override(&self, source: &str, site: &str, name: &str) {
        let key = ready_name(source, site);
        if let Some(list) = self.overrides.lock().get_mut(&key) {
            list.retain(|(n, _)| n != name);
        }
        self.rebuild_ready(&key);
    }

    /// `path` with the overrides of ready queue `name` applied.
    fn overridden(&self, name: &str, mut path: crate::EgressPathConfig) -> crate::EgressPathConfig {
        for (option, value) in self.overrides.lock().get(name).into_iter().flatten() {
            if let Err(e) = path.set_option(option, value) {
                tracing::warn!(ready_queue = name, error = %e, "cannot apply an egress path override");
            }
        }
        path
    }

    /// Retire ready queue `name`: the next message routed there builds a new
    /// one with the current settings.
    fn rebuild_ready(&self, name: &str) {
        let queue = self.ready.lock().remove(name);
        if let Some(queue) = queue {
            for item in queue.retire() {
                self.requeue(item.message);
            }
        }
    }

    /// Send from `source` to `site` again.
    pub fn resume_ready(&self, source: &str, site: &str) {
        self.suspended_ready.lock().remove(&(source.to_string(), site.to_string()));
    }

    /// Whether `source` may not send to `site` now (the source, or just
    /// that ready queue, is suspended).
    pub fn is_suspended(&self, source: &str, site: &str) -> bool {
        self.is_source_suspended(source)
            || self.suspended_ready.lock().contains(&(source.to_string(), site.to_string()))
    }

    /// Whether the selector may pick `source` now (for `site`, when known).
    /// A full ready queue counts only for a pool that spills.
    pub(crate) fn source_available(
        &self,
        source: &str,
        site: Option<&str>,
        overflow: Overflow,
    ) -> Result<(), &'static str> {
        if self.is_source_suspended(source) {
            Err("suspended")
        } else if site.is_some_and(|site| self.is_suspended(source, site)) {
            Err("suspended for this site")
        } else if self.health.is_skipped(source) {
            Err("unusable (its address will not bind)")
        } else if overflow == Overflow::Spill && site.is_some_and(|site| self.is_full(source, site)) {
            Err("its ready queue is full")
        } else if overflow == Overflow::Spill && site.is_some_and(|site| self.warmup_capped(source, site)) {
            Err("it reached today's warm-up cap")
        } else {
            Ok(())
        }
    }

    /// The source the round-robin gives a message of `queue` (`commit`:
    /// move the round-robin; else only tell what it would give). A spilling
    /// pool first passes over sources whose ready queue is full; when all
    /// are full, the message waits for its pick like any other.
    pub(crate) fn choose_source(
        &self,
        queue: &str,
        pool: &Arc<petrel_egress::EgressPool>,
        site: Option<&str>,
        commit: bool,
    ) -> Option<String> {
        let live = |name: &str| self.handles.settle.queues.queue(name).is_some();
        let pick = |overflow: Overflow| {
            let available = |source: &str| self.source_available(source, site, overflow).is_ok();
            if commit {
                self.selectors.pick(queue, pool, available, live)
            } else {
                self.selectors.peek(queue, pool, &available)
            }
        };
        match pick(pool.overflow) {
            None if pool.overflow == Overflow::Spill => pick(Overflow::Wait),
            picked => picked,
        }
    }

    /// A source failed before reaching any host (its address would not
    /// bind): skip it for a while and send `items` again through the
    /// selector, which gives them another source of their pool.
    /// Each message gets a TransientFailure record saying why.
    pub(crate) fn source_failed(
        &self,
        attempt: &Attempt<'_>,
        error: &petrel_smtp_client::ClientError,
        items: Vec<Dispatched>,
    ) {
        let source = attempt.source.name.as_str();
        let backoff = self.health.failed(source);
        tracing::error!(source, error = %error, ?backoff, "egress source unusable; skipping it and routing its mail to the pool's other sources");
        self.handles.settle.logger.metrics().source_unhealthy.with_label_values(&[source]).set(1);
        let outcome = Outcome::from_client(error);
        for item in items {
            crate::outcome::log_attempt(&self.handles.settle, attempt, &item.message, &item.pool, &outcome);
            self.requeue(item.message);
        }
    }

    /// A connection from `source` worked.
    pub(crate) fn source_worked(&self, source: &str) {
        if self.health.recovered(source) {
            tracing::info!(source, "egress source usable again");
            self.handles.settle.logger.metrics().source_unhealthy.with_label_values(&[source]).set(0);
        }
    }

    /// Back to the scheduled queue, due now, without counting an attempt.
    pub(crate) fn requeue(&self, mut message: Message) {
        message.due = None;
        message.data = None;
        self.handles.settle.queues.insert(message);
    }

    /// After the shutdown signal: wait up to `grace` for the attempts in
    /// flight to finish (no new ones start). Returns whether all did.
    pub async fn finish(&self, grace: Duration) -> bool {
        self.workers.close();
        tokio::time::timeout(grace, self.workers.wait()).await.is_ok()
    }

    /// Every ready queue, by name.
    pub fn summary(&self) -> Vec<ReadySummary> {
        let ready: Vec<Arc<ReadyQueue>> = self.ready.lock().values().cloned().collect();
        let mut out: Vec<ReadySummary> = ready
            .iter()
            .map(|r| ReadySummary {
                name: r.name.clone(),
                source: r.source.name.clone(),
                site: r.site.clone(),
                messages: r.len(),
                connections: r.workers(),
                source_suspended: self.is_suspended(&r.source.name, &r.site),
                source_unhealthy: self.health.is_marked(&r.source.name),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Route a release of due messages, then hand each ready queue its
    /// share at once, so workers see companions they can batch with.
    async fn route_all(self: &Arc<Self>, due: Due) {
        let config = due.queue.config().unwrap_or_default();
        if let DeliveryProtocol::CustomLua { constructor, batch_size, batch_timeout } = &config.protocol {
            let batching = crate::context::Batching { size: *batch_size, timeout: *batch_timeout };
            self.send_custom(due.queue, due.messages, constructor.clone(), batching);
            return;
        }
        let mut groups: HashMap<String, (Arc<ReadyQueue>, Vec<Dispatched>)> = HashMap::new();
        for message in due.messages {
            if let Some((ready, item)) = self.route(due.queue.clone(), message).await {
                groups.entry(ready.name.clone()).or_insert_with(|| (ready, Vec::new())).1.push(item);
            }
        }
        let host: Arc<dyn ReadyHost> = self.clone();
        for (ready, items) in groups.into_values() {
            ready.push_many(items, &host);
        }
    }

    /// Pool, destination and source for one message; `None` when it was
    /// settled (DNS failure) or put back to wait.
    async fn route(
        self: &Arc<Self>,
        queue: Arc<ScheduledQueue>,
        message: Message,
    ) -> Option<(Arc<ReadyQueue>, Dispatched)> {
        let policy = &*self.handles.policy;
        let registry = policy.registry();
        let config = queue.config().unwrap_or_default();
        let chosen = crate::route::choose_pool(policy, &registry, message.meta_str("egress_pool"), &config).await;
        let (pool, sources) = match chosen {
            Ok((pool, choice)) => {
                if let crate::route::PoolChoice::Undefined(wanted) = &choice {
                    tracing::warn!(id = %message.id, pool = %wanted, "egress pool is not defined; using the default pool");
                }
                match crate::route::pool_sources(policy, &registry, &pool).await {
                    Ok(sources) => (pool, sources),
                    Err(e) => return self.hold_for(&queue, message, e),
                }
            }
            Err(e) => return self.hold_for(&queue, message, e),
        };
        let destination = match self.destination(&config.protocol, &message).await {
            Ok(d) => d,
            Err(outcome) => {
                // The domain itself failed (DNS): no source is involved yet.
                let source = registry.source(DEFAULT_NAME).expect("always defined").clone();
                let site = message.routing_domain().to_string();
                let attempt = Attempt { source: &source, site: &site, conn: None, lmtp: false };
                let item = Dispatched { queue, message, pool: pool.name.clone() };
                report(&self.handles.settle, &attempt, item, &outcome).await;
                return None;
            }
        };
        let site = destination.site();
        let Some(source_name) = self.choose_source(queue.name(), &pool, Some(&site), true) else {
            tracing::debug!(id = %message.id, pool = %pool.name, "no source available; holding the message");
            self.hold(message);
            return None;
        };
        let source =
            sources.into_iter().find(|s| s.name == source_name).expect("the pick is one of the pool's sources");
        if let Err(until) = self.warmup.try_take(&source, &site, chrono::Utc::now()) {
            // Over today's cap: the message waits for tomorrow's budget.
            queue.hold(format!("warm-up: {} has sent today's cap; waiting until {until}", source.name));
            let mut message = message;
            message.due = Some(until);
            message.data = None;
            self.handles.settle.queues.insert(message);
            return None;
        }
        queue.clear_hold();
        let ready = match self.ready_queue(&source, &site, destination, message.routing_domain()).await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!(id = %message.id, error = %e, "get_egress_path_config failed; holding the message");
                self.hold(message);
                return None;
            }
        };
        let item = Dispatched { queue, message, pool: pool.name.clone() };
        Some((ready, item))
    }

    pub(crate) async fn destination(
        &self,
        protocol: &DeliveryProtocol,
        message: &Message,
    ) -> Result<Destination, Outcome> {
        match protocol.mx_list() {
            Some(hosts) => {
                let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
                let pinned = hosts.iter().filter_map(|h| Some((h.name.clone(), h.addr.clone()?))).collect();
                Ok(Destination { plan: MxPlan::in_order(&names), explicit: true, pinned })
            }
            // A domain literal names its host. Set by the policy as the
            // routing domain it is the operator's route (a gateway); as a
            // recipient's domain it is the client's, and prohibited_hosts
            // guards it like any host Petrel did not choose.
            None if let Some(plan) = MxPlan::literal(message.routing_domain()) => {
                Ok(Destination { plan, explicit: message.meta_str("routing_domain").is_some(), pinned: Vec::new() })
            }
            None => match self.handles.connect.resolver.resolve_mx(message.routing_domain()).await {
                Ok(plan) => Ok(Destination { plan, explicit: false, pinned: Vec::new() }),
                Err(e) => Err(Outcome::from_dns(&e)),
            },
        }
    }

    /// The pool or its sources could not be had: the message waits without
    /// an attempt counted, and the queue shows why (`queue summary`).
    fn hold_for(
        &self,
        queue: &ScheduledQueue,
        message: Message,
        error: crate::EgressPolicyError,
    ) -> Option<(Arc<ReadyQueue>, Dispatched)> {
        tracing::error!(id = %message.id, queue = queue.name(), error = %error, "cannot choose an egress source; holding the message");
        queue.hold(format!("egress: {error}"));
        self.hold(message);
        None
    }

    /// Put a message back briefly without counting an attempt.
    fn hold(&self, mut message: Message) {
        message.due = Some(chrono::Utc::now() + NO_SOURCE_DELAY);
        message.data = None;
        self.handles.settle.queues.insert(message);
    }

    fn warmup_capped(&self, source: &str, site: &str) -> bool {
        let registry = self.handles.policy.registry();
        registry.source(source).is_some_and(|s| self.warmup.is_capped(s, site, chrono::Utc::now()))
    }

    /// The warm-up counters, for saving across a restart.
    pub fn warmup_counts(&self) -> Vec<crate::WarmupCount> {
        self.warmup.snapshot()
    }

    /// Counters saved before a restart.
    pub fn restore_warmup_counts(&self, counts: Vec<crate::WarmupCount>) {
        self.warmup.restore(counts);
    }

    /// Each warming-up source of the registry: day, cap, use today.
    pub fn warmup_view(&self) -> Vec<crate::WarmupUse> {
        let registry = self.handles.policy.registry();
        self.warmup.view(registry.sources().map(|s| &**s), chrono::Utc::now())
    }

    pub(crate) fn is_full(&self, source: &str, site: &str) -> bool {
        self.ready.lock().get(&ready_name(source, site)).is_some_and(|r| r.is_full())
    }

    async fn ready_queue(
        &self,
        source: &Arc<EgressSource>,
        site: &str,
        destination: Destination,
        routing_domain: &str,
    ) -> Result<Arc<ReadyQueue>, crate::EgressPolicyError> {
        let name = ready_name(&source.name, site);
        if let Some(existing) = self.ready.lock().get(&name) {
            // A reload may redefine the source; the queue follows its address.
            if existing.source == *source {
                return Ok(existing.clone());
            }
        }
        let path = self.handles.policy.egress_path_config(routing_domain, &source.name, site).await?;
        let path = self.overridden(&name, path);
        let ehlo = crate::route::ehlo_name(&path, source, &self.handles.default_ehlo);
        let created = Arc::new(ReadyQueue::new(
            name.clone(),
            source.clone(),
            site.into(),
            routing_domain.into(),
            destination,
            path,
            ehlo,
        ));
        let mut ready = self.ready.lock();
        let entry = ready.entry(name).or_insert_with(|| created.clone());
        if entry.source != *source {
            *entry = created;
        }
        Ok(entry.clone())
    }
}

impl ReadyHost for Dispatcher {
    fn settlement(&self) -> &crate::context::Settlement {
        &self.handles.settle
    }
    fn connector(&self) -> &crate::context::Connector {
        &self.handles.connect
    }
    fn shutdown(&self) -> &tokio_util::sync::CancellationToken {
        &self.handles.shutdown
    }
    fn is_suspended(&self, source: &str, site: &str) -> bool {
        Dispatcher::is_suspended(self, source, site)
    }
    fn requeue(&self, message: Message) {
        Dispatcher::requeue(self, message)
    }
    fn source_worked(&self, source: &str) {
        Dispatcher::source_worked(self, source)
    }
    fn source_failed(&self, attempt: &Attempt<'_>, error: &petrel_smtp_client::ClientError, items: Vec<Dispatched>) {
        Dispatcher::source_failed(self, attempt, error, items)
    }
    fn spawn_worker(&self, worker: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        self.workers.spawn(worker);
    }
}

fn ready_name(source: &str, site: &str) -> String {
    format!("{source}->{site}")
}
