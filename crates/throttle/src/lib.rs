//! Limits on how fast and how much: GCRA rate throttles (`kumo.make_throttle`,
//! an egress path's `max_message_rate` and `max_connection_rate`) and
//! connection leases (`connection_limit`), kept in this process or, once
//! `kumo.configure_redis_throttles` names a Redis, shared by every node on it.
//!
//! When Redis cannot be reached a node keeps going on its own share of each
//! limit (the limit divided by the configured node count), says so once in
//! the log, probes Redis again every second and goes back to the shared
//! limits when it answers. Mail never waits for Redis to come back.

mod gcra;
mod redis;
mod spec;

pub use crate::redis::{RedisConfig, RedisFailure};
pub use gcra::ThrottleResult;
pub use spec::{SpecError, ThrottleSpec};

use crate::redis::RedisStore;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long a connection lease lives without renewal, unless configured.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Where the limits are being kept right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In this process (no Redis configured).
    Local,
    /// In Redis, shared with the other nodes.
    Shared,
    /// Redis is configured but unreachable: this node's share, locally.
    Fallback,
}

enum Backend {
    Local,
    Shared(Arc<SharedStore>),
}

struct SharedStore {
    store: RedisStore,
    down: AtomicBool,
    probe_at: Mutex<Instant>,
}

impl SharedStore {
    /// Try Redis: always while it answers, once a second while it does not.
    fn usable(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return true;
        }
        let mut at = self.probe_at.lock();
        let now = Instant::now();
        if now < *at {
            return false;
        }
        *at = now + PROBE_EVERY;
        true
    }

    fn up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(nodes = ?self.store.config.nodes, "redis throttles reachable again; limits are shared");
        }
    }

    fn failed(&self, error: &RedisFailure) {
        *self.probe_at.lock() = Instant::now() + PROBE_EVERY;
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                nodes = ?self.store.config.nodes,
                node_count = self.store.config.node_count,
                %error,
                "redis throttles unreachable; this node uses its share of each limit until redis answers"
            );
        }
    }

    fn nodes(&self) -> u32 {
        self.store.config.node_count.max(1)
    }
}

/// The node's limits; one per daemon, handed to delivery and to the policy.
pub struct Limiter {
    backend: ArcSwap<Backend>,
    /// The configuration the backend was built from, to keep it on reload.
    configured: Mutex<Option<RedisConfig>>,
    local: gcra::LocalCells,
    holders: Arc<Mutex<HashMap<String, usize>>>,
    node_id: String,
    next_lease: AtomicU64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

fn shared_key(key: &str) -> String {
    format!("petrel:{key}")
}

fn fallback_key(key: &str) -> String {
    format!("fallback:{key}")
}

impl Limiter {
    /// Limits kept in this process until [`Limiter::configure`] names a Redis.
    pub fn new() -> Self {
        Self {
            backend: ArcSwap::from_pointee(Backend::Local),
            configured: Mutex::new(None),
            local: gcra::LocalCells::new(),
            holders: Arc::default(),
            node_id: format!("{:016x}", rand::random::<u64>()),
            next_lease: AtomicU64::new(0),
        }
    }

    /// Use `config`'s Redis (or none) from now on. An unchanged
    /// configuration keeps its connection, so a reload costs nothing.
    pub fn configure(&self, config: Option<&RedisConfig>) -> Result<(), RedisFailure> {
        let mut configured = self.configured.lock();
        if configured.as_ref() == config {
            return Ok(());
        }
        let backend = match config {
            None => Backend::Local,
            Some(config) => Backend::Shared(Arc::new(SharedStore {
                store: RedisStore::open(config)?,
                down: AtomicBool::new(false),
                probe_at: Mutex::new(Instant::now()),
            })),
        };
        self.backend.store(Arc::new(backend));
        *configured = config.cloned();
        Ok(())
    }

    /// Where the limits are kept now.
    pub fn mode(&self) -> Mode {
        match &**self.backend.load() {
            Backend::Local => Mode::Local,
            Backend::Shared(s) if s.down.load(Ordering::Relaxed) => Mode::Fallback,
            Backend::Shared(_) => Mode::Shared,
        }
    }

    fn shared(&self, spec: &ThrottleSpec) -> Option<Arc<SharedStore>> {
        match &**self.backend.load() {
            Backend::Shared(s) if !spec.local => Some(s.clone()),
            _ => None,
        }
    }

    /// Count an event against `key`; how long it must wait for its turn.
    pub async fn reserve(&self, key: &str, spec: &ThrottleSpec) -> Duration {
        let Some(shared) = self.shared(spec) else { return self.local.reserve(key, spec) };
        if shared.usable() {
            match shared.store.reserve(&shared_key(key), spec).await {
                Ok(wait) => {
                    shared.up();
                    return wait;
                }
                Err(e) => shared.failed(&e),
            }
        }
        self.local.reserve(&fallback_key(key), &spec.share(shared.nodes()))
    }

    /// Count an event and wait for its turn (pacing).
    pub async fn wait(&self, key: &str, spec: &ThrottleSpec) {
        let wait = self.reserve(key, spec).await;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Count an event only if it may go now (`throttle:throttle()`).
    pub async fn check(&self, key: &str, spec: &ThrottleSpec) -> ThrottleResult {
        let Some(shared) = self.shared(spec) else { return self.local.check(key, spec) };
        if shared.usable() {
            match shared.store.check(&shared_key(key), spec).await {
                Ok(result) => {
                    shared.up();
                    return result;
                }
                Err(e) => shared.failed(&e),
            }
        }
        self.local.check(&fallback_key(key), &spec.share(shared.nodes()))
    }

    /// A lease on one of `limit` connections under `key`, or `None` while
    /// all are taken. Without Redis the caller's own count is the limit,
    /// so a lease is always granted; with Redis down, this node may hold
    /// its share (`limit / node_count`, at least one).
    pub async fn lease(&self, key: &str, limit: usize) -> Option<Lease> {
        let shared = match &**self.backend.load() {
            // The caller's own cap is the limit: nothing to count here.
            Backend::Local => return Some(Lease { key: None, holders: self.holders.clone(), renewal: None }),
            Backend::Shared(s) => s.clone(),
        };
        let member = format!("{}-{}", self.node_id, self.next_lease.fetch_add(1, Ordering::Relaxed));
        let redis_key = shared_key(key);
        if shared.usable() {
            match shared.store.acquire(&redis_key, limit, shared.store.config.lease_ttl, &member).await {
                Ok(granted) => {
                    shared.up();
                    return granted.then(|| self.hold(key, Some(Renewal::start(shared, redis_key, member))));
                }
                Err(e) => shared.failed(&e),
            }
        }
        let share = (limit / shared.nodes() as usize).max(1);
        let mut holders = self.holders.lock();
        let held = holders.entry(key.to_string()).or_default();
        if *held >= share {
            return None;
        }
        *held += 1;
        // Renewing writes the lease into Redis, so once Redis answers again
        // the other nodes count this connection too.
        let renewal = Some(Renewal::start(shared, redis_key, member));
        Some(Lease { key: Some(key.to_string()), holders: self.holders.clone(), renewal })
    }

    fn hold(&self, key: &str, renewal: Option<Renewal>) -> Lease {
        *self.holders.lock().entry(key.to_string()).or_default() += 1;
        Lease { key: Some(key.to_string()), holders: self.holders.clone(), renewal }
    }

    /// Leases this node holds under `key`.
    pub fn held(&self, key: &str) -> usize {
        self.holders.lock().get(key).copied().unwrap_or(0)
    }
}

/// Keeps a shared lease alive while its connection is open.
struct Renewal {
    store: Arc<SharedStore>,
    key: String,
    member: String,
    task: tokio::task::JoinHandle<()>,
}

impl Renewal {
    fn start(store: Arc<SharedStore>, key: String, member: String) -> Self {
        let task = {
            let (store, key, member) = (store.clone(), key.clone(), member.clone());
            tokio::spawn(async move {
                let ttl = store.store.config.lease_ttl;
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if let Err(e) = store.store.renew(&key, ttl, &member).await {
                        tracing::debug!(%key, error = %e, "cannot renew a connection lease");
                    }
                }
            })
        };
        Self { store, key, member, task }
    }
}

/// A held connection lease; dropping it frees the connection slot.
pub struct Lease {
    /// `None` for a lease without Redis configured, which counts nothing.
    key: Option<String>,
    holders: Arc<Mutex<HashMap<String, usize>>>,
    renewal: Option<Renewal>,
}

impl Lease {
    /// The lease counts against a limit other nodes share (or, with Redis
    /// down, this node's share of it): holding it idle keeps a connection
    /// from another node, so its holder should close when idle.
    pub fn is_counted(&self) -> bool {
        self.key.is_some()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            let mut holders = self.holders.lock();
            if let Some(held) = holders.get_mut(key) {
                *held -= 1;
                if *held == 0 {
                    holders.remove(key);
                }
            }
        }
        if let Some(Renewal { store, key, member, task }) = self.renewal.take() {
            task.abort();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = store.store.release(&key, &member).await {
                        tracing::debug!(%key, error = %e, "cannot release a connection lease; it expires by itself");
                    }
                });
            }
        }
    }
}
