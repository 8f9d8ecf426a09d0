//! Hot reload: the policy is loaded again into fresh Lua state, new
//! listeners are bound, and only when all of that worked is the new
//! generation swapped in and the listener set reconciled. A failed reload
//! leaves everything as it was.

use crate::admin::DaemonAdmin;
use crate::error::DaemonError;
use crate::listeners::ListenerContext;
use petrel_delivery::Dispatcher;
use petrel_egress::Registry;
use petrel_http_api::{
    ApiState, ChangedDefinition, DefinitionChanges, HttpListenerConfig, ReloadChanges, ReloadOutcome,
};
use petrel_lua::{InitConfig, PolicyEngine};
use petrel_queue::{Intake, QueueManager};
use petrel_smtp_server::ServerHandles;
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
    /// Every suspension, kept across restarts.
    pub suspensions: Arc<crate::suspensions::SuspensionBook>,
    /// Shaping automation: its rules follow the policy.
    pub automation: crate::automation::Automation,
    /// Where log hook records go (the consumer outlives reloads).
    pub hook_tx: tokio::sync::mpsc::UnboundedSender<petrel_telemetry::HookRecord>,
}

impl Parts {
    /// Tap the log for `hooks` (none: stop tapping).
    pub(crate) fn set_log_hooks(&self, hooks: &[petrel_telemetry::LogHookConfig]) {
        let tap =
            (!hooks.is_empty()).then(|| petrel_telemetry::HookTap { hooks: hooks.to_vec(), tx: self.hook_tx.clone() });
        self.logger.set_hooks(tap);
    }

    /// The one admission path both listeners use.
    fn intake(&self) -> Intake {
        Intake::new(self.spool.clone(), self.queues.clone(), self.logger.clone())
    }
}

/// Owns the listeners and carries out reloads, one at a time.
pub struct Reloader {
    parts: Parts,
    smtp_handles: Arc<ServerHandles>,
    admin: Arc<DaemonAdmin>,
    listeners: tokio::sync::Mutex<crate::listeners::Listeners>,
    addrs: Arc<parking_lot::Mutex<(Vec<SocketAddr>, Vec<SocketAddr>)>>,
}

impl Reloader {
    pub(crate) fn new(parts: Parts) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Reloader>| {
            let smtp_handles = Arc::new(ServerHandles { intake: parts.intake(), policy: parts.engine.clone() });
            let addrs: Arc<parking_lot::Mutex<(Vec<SocketAddr>, Vec<SocketAddr>)>> = Arc::default();
            let admin = Arc::new(DaemonAdmin {
                engine: parts.engine.clone(),
                queues: parts.queues.clone(),
                dispatcher: parts.dispatcher.clone(),
                spool: parts.spool.clone(),
                bounces: parts.logger.bounces().clone(),
                suspensions: parts.suspensions.clone(),
                metrics: parts.logger.metrics().clone(),
                listeners: addrs.clone(),
                hostname: parts.hostname.clone(),
                started: chrono::Utc::now().timestamp(),
                reload: {
                    let me = me.clone();
                    Box::new(move || {
                        let me = me.clone();
                        Box::pin(async move { Some(me.upgrade()?.reload().await) })
                    })
                },
            });
            Reloader { parts, smtp_handles, admin, listeners: Default::default(), addrs }
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

    fn context<'a>(
        &'a self,
        api_state: &'a (dyn Fn(&HttpListenerConfig) -> Arc<ApiState> + Sync),
    ) -> ListenerContext<'a> {
        ListenerContext { smtp: &self.smtp_handles, api_state, shutdown: &self.parts.shutdown }
    }

    /// Bind the listeners of the first generation.
    pub(crate) async fn start_listeners(&self, config: &InitConfig) -> Result<(), DaemonError> {
        let mut listeners = self.listeners.lock().await;
        let api_state = |c: &HttpListenerConfig| self.api_state(c);
        listeners.start_all(config, &self.context(&api_state)).await?;
        *self.addrs.lock() = listeners.addrs();
        Ok(())
    }

    /// Addresses the SMTP listeners are bound to now.
    pub fn smtp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.lock().0.clone()
    }

    /// Addresses the HTTP listeners are bound to now.
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
        self.reload_with(false).await
    }

    /// A reload even when no file changed (`kumo.bump_config_epoch`): a new
    /// generation, so caches and late-bound definitions start afresh.
    pub async fn reload_forced(&self) -> ReloadOutcome {
        self.reload_with(true).await
    }

    async fn reload_with(&self, force: bool) -> ReloadOutcome {
        let mut listeners = self.listeners.lock().await;
        let running = self.parts.engine.current();
        if !force && running.fingerprint.unchanged() {
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
        let api_state = |c: &HttpListenerConfig| self.api_state(c);
        let context = self.context(&api_state);
        let staged = match listeners.stage(&config, &context).await {
            Ok(staged) => staged,
            Err(e) => return self.refused(vec![e]),
        };
        let old = self.parts.engine.commit(next);
        let generation = self.parts.engine.current();
        self.parts.logger.set_classifier(generation.config.bounce_classifier.clone());
        self.parts.set_log_hooks(&generation.config.log_hooks);
        self.parts.automation.replace(generation.config.automation.clone());
        configure_limits(&self.parts.engine.limiter(), &generation.config);
        let changes = ReloadChanges {
            sources: registry_changes(&old.config.registry, &generation.config.registry, true),
            pools: registry_changes(&old.config.registry, &generation.config.registry, false),
            listeners: listeners.apply(staged, &config, &context),
        };
        *self.addrs.lock() = listeners.addrs();

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
}

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

/// Added, removed and changed sources (or pools) between two registries.
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
/// Watch the policy's directory, and the directories of the policy's
/// `set_config_monitor_globs` patterns (recursively), reloading on a change
/// to a policy or data file there or to any file a pattern matches.
pub(crate) fn watch(reloader: Arc<Reloader>, dir: std::path::PathBuf, globs: Vec<String>) -> Result<(), notify::Error> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let patterns = globs.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && e.paths.iter().any(|p| {
                    p.extension().is_some_and(|x| x == "lua" || x == "toml" || x == "json")
                        || petrel_lua::monitor::matches(&patterns, p)
                })
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    for glob in &globs {
        let base = petrel_lua::monitor::base_dir(glob);
        if let Err(e) = watcher.watch(&base, notify::RecursiveMode::Recursive) {
            tracing::warn!(glob, base = %base.display(), error = %e, "cannot watch a config monitor glob's directory");
        }
    }
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

/// Point the node's limits at the generation's Redis (or at none). The
/// URLs were checked at load, so this fails only on what connecting finds.
pub(crate) fn configure_limits(limits: &petrel_throttle::Limiter, config: &petrel_lua::InitConfig) {
    let redis = config.redis_throttles.as_ref().map(|r| &r.config);
    if let Err(e) = limits.configure(redis) {
        tracing::warn!(error = %e, "cannot use the configured redis throttles; limits stay local");
    }
}
