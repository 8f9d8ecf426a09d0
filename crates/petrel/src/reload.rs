//! Hot reload: the policy is loaded again into fresh Lua state, new
//! listeners are bound, and only when all of that worked is the new
//! generation swapped in and the listener set reconciled. A failed reload
//! leaves everything as it was.

use crate::admin::DaemonAdmin;
use crate::daemon::DaemonError;
use petrel_delivery::Dispatcher;
use petrel_egress::Registry;
use petrel_http_api::{
    ApiState, ChangedDefinition, DefinitionChanges, HttpListener, HttpListenerConfig, ListenerChanges, ReloadChanges,
    ReloadOutcome,
};
use petrel_lua::{InitConfig, PolicyEngine};
use petrel_queue::{Intake, QueueManager};
use petrel_smtp_server::{Listener, ListenerConfig, Prepared, ServerHandles};
use petrel_spool::Spool;
use petrel_telemetry::Logger;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use tokio_util::sync::CancellationToken;

/// The daemon's parts a reload touches.
pub(crate) struct Parts {
    pub engine: Arc<PolicyEngine>,
    pub queues: Arc<QueueManager>,
    pub dispatcher: Arc<Dispatcher>,
    pub spool: Arc<dyn Spool>,
    pub logger: Logger,
    pub hostname: String,
    pub shutdown: CancellationToken,
}

impl Parts {
    /// The one admission path both listeners use.
    fn intake(&self) -> Intake {
        Intake::new(self.spool.clone(), self.queues.clone(), self.logger.clone())
    }
}

#[derive(Default)]
struct Listeners {
    smtp: Vec<Listener>,
    http: Vec<HttpListener>,
}

/// Owns the listeners and carries out reloads, one at a time.
pub struct Reloader {
    parts: Parts,
    smtp_handles: Arc<ServerHandles>,
    admin: Arc<DaemonAdmin>,
    listeners: tokio::sync::Mutex<Listeners>,
    addrs: parking_lot::Mutex<(Vec<SocketAddr>, Vec<SocketAddr>)>,
}

/// Pair new configurations with running listeners by configured address
/// (in order, for repeated addresses such as port 0): `(new index, running
/// index)` for kept ones, then the new ones to start and running ones to stop.
fn pair<N, R>(
    new: &[N],
    running: &[R],
    key_new: impl Fn(&N) -> SocketAddr,
    key_running: impl Fn(&R) -> SocketAddr,
) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    let mut taken = vec![false; running.len()];
    let mut kept = Vec::new();
    let mut added = Vec::new();
    for (i, n) in new.iter().enumerate() {
        match (0..running.len()).find(|&j| !taken[j] && key_running(&running[j]) == key_new(n)) {
            Some(j) => {
                taken[j] = true;
                kept.push((i, j));
            }
            None => added.push(i),
        }
    }
    let removed = (0..running.len()).filter(|&j| !taken[j]).collect();
    (kept, added, removed)
}

impl Reloader {
    pub(crate) fn new(parts: Parts) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Reloader>| {
            let smtp_handles = Arc::new(ServerHandles { intake: parts.intake(), policy: parts.engine.clone() });
            let admin = Arc::new(DaemonAdmin {
                engine: parts.engine.clone(),
                queues: parts.queues.clone(),
                dispatcher: parts.dispatcher.clone(),
                spool: parts.spool.clone(),
                reloader: me.clone(),
            });
            Reloader { parts, smtp_handles, admin, listeners: Default::default(), addrs: Default::default() }
        })
    }

    fn api_state(&self, config: &HttpListenerConfig) -> Arc<ApiState> {
        Arc::new(ApiState {
            intake: self.parts.intake(),
            logger: self.parts.logger.clone(),
            policy: self.parts.engine.clone(),
            admin: self.admin.clone(),
            trusted_hosts: config.trusted_hosts.clone(),
            max_request_size: config.max_request_size,
        })
    }

    async fn start_smtp(&self, config: &ListenerConfig) -> Result<Listener, DaemonError> {
        Listener::start(config.clone(), self.smtp_handles.clone(), &self.parts.shutdown)
            .await
            .map_err(|e| DaemonError::Listen { addr: config.listen, source: e })
    }

    async fn start_http(&self, config: &HttpListenerConfig) -> Result<HttpListener, DaemonError> {
        HttpListener::start(config, self.api_state(config), &self.parts.shutdown)
            .await
            .map_err(|e| DaemonError::Listen { addr: config.listen, source: e })
    }

    /// Bind the listeners of the first generation.
    pub(crate) async fn start_listeners(&self, config: &InitConfig) -> Result<(), DaemonError> {
        let mut listeners = self.listeners.lock().await;
        for c in &config.listeners {
            listeners.smtp.push(self.start_smtp(c).await?);
        }
        for c in &config.http_listeners {
            listeners.http.push(self.start_http(c).await?);
        }
        self.record_addrs(&listeners);
        Ok(())
    }

    fn record_addrs(&self, listeners: &Listeners) {
        *self.addrs.lock() = (
            listeners.smtp.iter().map(|l| l.local_addr()).collect(),
            listeners.http.iter().map(|l| l.local_addr()).collect(),
        );
    }

    pub fn smtp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.lock().0.clone()
    }

    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.lock().1.clone()
    }

    fn refused(&self, errors: Vec<String>) -> ReloadOutcome {
        self.parts.logger.metrics().reload_failures.inc();
        for e in &errors {
            tracing::error!(error = %e, "policy reload refused; the running policy stays");
        }
        ReloadOutcome {
            success: false,
            generation: Some(self.parts.engine.current().number),
            unchanged: false,
            changes: ReloadChanges::default(),
            errors,
        }
    }

    /// Load, validate, bind, swap, reconcile. Concurrent calls queue up.
    pub async fn reload(&self) -> ReloadOutcome {
        let mut listeners = self.listeners.lock().await;
        let running = self.parts.engine.current();
        if running.fingerprint.unchanged() {
            tracing::info!(generation = running.number, "policy files unchanged; nothing to reload");
            return ReloadOutcome {
                success: true,
                generation: Some(running.number),
                unchanged: true,
                changes: ReloadChanges::default(),
                errors: Vec::new(),
            };
        }
        let next = match self.parts.engine.prepare(&self.parts.hostname) {
            Ok(next) => next,
            Err(e) => return self.refused(e.errors),
        };
        let config = next.config.clone();
        let (smtp_kept, smtp_added, smtp_removed) =
            pair(&config.listeners, &listeners.smtp, |c| c.listen, |l| l.config().listen);
        let (http_kept, http_added, http_removed) =
            pair(&config.http_listeners, &listeners.http, |c| c.listen, |l| l.config().listen);
        // Check new settings and bind everything new before committing: a
        // bad certificate or a listener that cannot bind refuses the reload.
        let mut prepared = Vec::new();
        for &(i, j) in &smtp_kept {
            if *listeners.smtp[j].config() != config.listeners[i] {
                match Prepared::new(config.listeners[i].clone()) {
                    Ok(p) => prepared.push((j, p)),
                    Err(e) => return self.refused(vec![format!("listener {}: {e}", config.listeners[i].listen)]),
                }
            }
        }
        let mut http_tls = Vec::new();
        for &(i, j) in &http_kept {
            match listeners.http[j].prepare(&config.http_listeners[i]) {
                Ok(tls) => http_tls.push(tls),
                Err(e) => return self.refused(vec![e]),
            }
        }
        let mut new_smtp = Vec::new();
        let mut new_http = Vec::new();
        for &i in &smtp_added {
            match self.start_smtp(&config.listeners[i]).await {
                Ok(l) => new_smtp.push(l),
                Err(e) => return self.abandon(new_smtp, new_http, e),
            }
        }
        for &i in &http_added {
            match self.start_http(&config.http_listeners[i]).await {
                Ok(l) => new_http.push(l),
                Err(e) => return self.abandon(new_smtp, new_http, e),
            }
        }
        let old = self.parts.engine.commit(next);
        let generation = self.parts.engine.current();

        let mut changes = ReloadChanges {
            sources: registry_changes(&old.config.registry, &generation.config.registry, true),
            pools: registry_changes(&old.config.registry, &generation.config.registry, false),
            listeners: ListenerChanges::default(),
        };
        let mut started: Vec<String> = new_smtp.iter().map(|l| format!("smtp {}", l.local_addr())).collect();
        started.extend(new_http.iter().map(|l| format!("http {}", l.local_addr())));
        let mut updated = Vec::new();
        for (j, p) in prepared {
            listeners.smtp[j].apply(p);
            updated.push(format!("smtp {}", listeners.smtp[j].local_addr()));
        }
        for (&(i, j), tls) in http_kept.iter().zip(http_tls) {
            let state = self.api_state(&config.http_listeners[i]);
            if *listeners.http[j].config() != config.http_listeners[i] {
                updated.push(format!("http {}", listeners.http[j].local_addr()));
            }
            listeners.http[j].update(&config.http_listeners[i], state, tls);
        }
        let stopped = self.stop_removed(&mut listeners, smtp_removed, http_removed);
        listeners.smtp.extend(new_smtp);
        listeners.http.extend(new_http);
        self.record_addrs(&listeners);
        changes.listeners = ListenerChanges { started, stopped, updated };

        // Queues ask the new policy for their settings; waiting work is
        // routed again under the new sources and pools.
        self.parts.queues.refresh_configs();
        let affected = affected_sources(&old.config.registry, &generation.config.registry, &changes);
        let retired = self.parts.dispatcher.retire_changed_ready_queues(&affected).await;
        tracing::debug!(retired, "ready queues retired by the reload");
        tracing::info!(generation = generation.number, changes = ?changes, "policy reloaded");
        ReloadOutcome {
            success: true,
            generation: Some(generation.number),
            unchanged: false,
            changes,
            errors: Vec::new(),
        }
    }

    fn stop_removed(&self, listeners: &mut Listeners, smtp: Vec<usize>, http: Vec<usize>) -> Vec<String> {
        let mut stopped = Vec::new();
        for j in smtp.into_iter().rev() {
            let l = listeners.smtp.remove(j);
            l.stop();
            stopped.push(format!("smtp {}", l.local_addr()));
        }
        for j in http.into_iter().rev() {
            let l = listeners.http.remove(j);
            l.stop();
            stopped.push(format!("http {}", l.local_addr()));
        }
        stopped
    }

    fn abandon(&self, smtp: Vec<Listener>, http: Vec<HttpListener>, error: DaemonError) -> ReloadOutcome {
        smtp.iter().for_each(Listener::stop);
        http.iter().for_each(HttpListener::stop);
        self.refused(vec![error.to_string()])
    }
}

/// Added, removed and changed sources (or pools) between two registries.
/// Sources whose ready queues a reload must empty: redefined or removed
/// ones, and every source (before or after) of a pool that changed, so
/// waiting mail is spread by the new weights.
fn affected_sources(old: &Registry, new: &Registry, changes: &ReloadChanges) -> std::collections::HashSet<String> {
    let mut affected: std::collections::HashSet<String> = changes.sources.removed.iter().cloned().collect();
    affected.extend(changes.sources.changed.iter().map(|c| c.name.clone()));
    let pools =
        changes.pools.added.iter().chain(&changes.pools.removed).chain(changes.pools.changed.iter().map(|c| &c.name));
    for pool in pools {
        for registry in [old, new] {
            if let Some(p) = registry.pool(pool) {
                affected.extend(p.entries.iter().map(|e| e.source.clone()));
            }
        }
    }
    affected
}

fn registry_changes(old: &Registry, new: &Registry, sources: bool) -> DefinitionChanges {
    let items = |r: &Registry| -> Vec<(String, Value)> {
        if sources {
            r.sources().map(|s| (s.name.clone(), serde_json::to_value(&**s).expect("serializable"))).collect()
        } else {
            r.pools().map(|p| (p.name.clone(), serde_json::to_value(&**p).expect("serializable"))).collect()
        }
    };
    let (before, after) = (items(old), items(new));
    let find = |list: &[(String, Value)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let added = after.iter().filter(|(n, _)| find(&before, n).is_none()).map(|(n, _)| n.clone()).collect();
    let removed = before.iter().filter(|(n, _)| find(&after, n).is_none()).map(|(n, _)| n.clone()).collect();
    let changed = after
        .iter()
        .filter_map(|(n, v)| match find(&before, n) {
            Some(old) if old != *v => Some(ChangedDefinition { name: n.clone(), before: old, after: v.clone() }),
            _ => None,
        })
        .collect();
    DefinitionChanges { added, removed, changed }
}

/// Reload whenever a `.lua`, `.toml` or `.json` file in `dir` changes;
/// bursts of events (editors write several times) make one reload.
pub(crate) fn watch(reloader: Arc<Reloader>, dir: std::path::PathBuf) -> Result<(), notify::Error> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && e.paths.iter().any(|p| p.extension().is_some_and(|x| x == "lua" || x == "toml" || x == "json"))
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    let shutdown = reloader.parts.shutdown.clone();
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                event = rx.recv() => if event.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            tracing::info!(dir = %dir.display(), "policy files changed; reloading");
            reloader.reload().await;
        }
    });
    Ok(())
}
