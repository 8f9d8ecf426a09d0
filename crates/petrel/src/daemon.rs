//! Wiring the crates into a running MTA, and taking it down again.

pub use crate::error::DaemonError;
pub use crate::host::system_hostname;
use crate::reload::{Parts, Reloader, watch};
use petrel_delivery::{Connector, Dispatcher, DispatcherHandles, Settlement};
use petrel_dns::{HickoryResolver, Resolver};
use petrel_http_api::ReloadOutcome;
use petrel_lua::{InitConfig, PolicyEngine};
use petrel_queue::{QueueFilter, QueueManager, RebindTarget};
use petrel_smtp_client::TlsConfigs;
use petrel_spool::{RocksSpool, Spool};
use petrel_telemetry::{Logger, Metrics};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What `petrel serve` is started with.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The policy script (`init.lua`).
    pub policy: PathBuf,
    /// Reload when a policy file in the policy's directory changes.
    pub watch_policy: bool,
    /// Sandbox and memory limit of the policy's Lua states.
    pub lua: petrel_lua::LuaSettings,
    /// The process's diagnostic log filter, for the policy's
    /// `kumo.set_diagnostic_log_filter` (`None`: the call only checks).
    pub log_filter: Option<petrel_telemetry::LogFilter>,
    /// Log a one-line status this often while anything happens (`None`: never).
    pub status_every: Option<std::time::Duration>,
}

impl DaemonOptions {
    /// Options for `policy` with every default.
    pub fn new(policy: impl Into<PathBuf>) -> Self {
        Self {
            policy: policy.into(),
            watch_policy: true,
            lua: Default::default(),
            log_filter: None,
            status_every: None,
        }
    }
}

type LogThread = Option<std::thread::JoinHandle<()>>;

fn start_logging(config: &InitConfig, metrics: Arc<Metrics>) -> Result<(Logger, LogThread), DaemonError> {
    match &config.logs {
        Some(logs) => {
            let (logger, thread) =
                Logger::start(logs, metrics).map_err(|e| DaemonError::Logs { dir: logs.log_dir.clone(), source: e })?;
            Ok((logger, Some(thread)))
        }
        None => {
            tracing::warn!("no kumo.configure_local_logs in the policy: message events are not logged");
            Ok((Logger::counting(metrics), None))
        }
    }
}

/// Today's warm-up counts survive a restart: restored from beside the
/// spool, saved every few seconds while they change (and by
/// [`Daemon::shutdown`]); a crash can lose the last seconds' counts.
fn keep_warmup_counts(path: &std::path::Path, dispatcher: &Arc<Dispatcher>, shutdown: &CancellationToken) {
    let path = path.to_path_buf();
    if let Some(counts) = crate::state_file::load(&path) {
        dispatcher.restore_warmup_counts(counts);
    }
    let (dispatcher, shutdown) = (dispatcher.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut saved = dispatcher.warmup_counts();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = dispatcher.warmup_counts();
            if now != saved {
                if let Err(e) = crate::state_file::save(&path, &now) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save the warm-up counts");
                }
                saved = now;
            }
        }
    });
}

/// A running daemon. [`Daemon::shutdown`] stops it gracefully.
pub struct Daemon {
    engine: Arc<PolicyEngine>,
    reloader: Arc<Reloader>,
    queues: Arc<QueueManager>,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
    log_thread: Option<std::thread::JoinHandle<()>>,
    recovered: usize,
    /// Where today's warm-up counts are kept.
    warmup_path: PathBuf,
}

impl Daemon {
    /// Open the spool, load the policy, bind the listeners and start delivery.
    pub async fn start(options: DaemonOptions) -> Result<Self, DaemonError> {
        let hostname = system_hostname();
        let metrics = Arc::new(Metrics::new());
        let engine = Arc::new(PolicyEngine::load_with(&options.policy, &hostname, metrics.clone(), options.lua)?);
        let config = engine.current().config.clone();
        if let Some(handle) = options.log_filter.clone() {
            if let Some(filter) = &config.log_filter
                && let Err(e) = handle.set(filter)
            {
                tracing::warn!(filter, error = %e, "cannot apply the policy's diagnostic log filter");
            }
            engine.set_log_filter(handle);
        }
        let (logger, log_thread) = start_logging(&config, metrics.clone())?;
        logger.set_classifier(config.bounce_classifier.clone());
        let spool: Arc<dyn Spool> = Arc::new(RocksSpool::open_with(&config.spool, config.spool_reserves)?);
        let shutdown = CancellationToken::new();
        let (queues, due) = QueueManager::with_clock(
            engine.clone(),
            spool.clone(),
            logger.clone(),
            shutdown.clone(),
            Arc::new(petrel_queue::SystemClock),
            hostname.clone(),
        );
        let resolver: Arc<dyn Resolver> = Arc::new(match &config.name_servers {
            Some(servers) => HickoryResolver::with_name_servers(servers)?,
            None => HickoryResolver::system()?,
        });
        // Policies' kumo.dns.* lookups see what delivery sees.
        engine.set_resolver(resolver.clone());
        // And their throttles count in the same store delivery paces with.
        let limits = engine.limiter();
        crate::reload::configure_limits(&limits, &config);
        let dispatcher = Dispatcher::new(DispatcherHandles {
            settle: Settlement { queues: queues.clone(), spool: spool.clone(), logger: logger.clone() },
            connect: Connector { resolver: resolver.clone(), tls: TlsConfigs::new(), limits },
            policy: engine.clone(),
            default_ehlo: hostname,
            shutdown: shutdown.clone(),
        });
        tokio::spawn(dispatcher.clone().run(due));

        // Suspensions made before a restart hold again, until they expire;
        // applied before the spooled mail is queued, so none slips out.
        let suspensions =
            crate::suspensions::SuspensionBook::open(&config.spool.meta, queues.clone(), dispatcher.clone());
        suspensions.clone().run_expiry(shutdown.clone());
        let warmup_path = config.spool.meta.join("warmup.json");
        keep_warmup_counts(&warmup_path, &dispatcher, &shutdown);

        // Everything spooled before a stop or crash is queued again.
        let spooled = spool.enumerate()?;
        metrics.spool_unreadable.set(spool.unreadable() as i64);
        let recovered = spooled.len();
        for message in spooled {
            queues.insert(message);
        }
        if recovered > 0 {
            tracing::info!(count = recovered, "re-queued spooled messages");
        }

        // Log hooks: records become messages the policy may queue.
        let (hook_tx, hook_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(petrel_queue::run_log_hooks(
            hook_rx,
            engine.clone(),
            spool.clone(),
            queues.clone(),
            shutdown.clone(),
        ));
        let automation = crate::automation::Automation::start(
            logger.clone(),
            config.automation.clone(),
            suspensions.clone(),
            shutdown.clone(),
        );
        let parts = Parts {
            engine: engine.clone(),
            queues: queues.clone(),
            dispatcher: dispatcher.clone(),
            spool: spool.clone(),
            logger,
            hostname: system_hostname(),
            shutdown: shutdown.clone(),
            suspensions,
            automation,
            hook_tx,
        };
        parts.set_log_hooks(&config.log_hooks);
        let reloader = Reloader::new(parts);
        if let Err(e) = reloader.start_listeners(&config).await {
            shutdown.cancel();
            return Err(e);
        }
        if options.watch_policy {
            let dir =
                options.policy.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if let Err(e) = watch(reloader.clone(), dir.to_path_buf(), config.monitor_globs.clone()) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the policy directory; reload with SIGHUP or the API");
            }
        }
        spawn_policy_tasks(&engine, &reloader, &shutdown);
        if let Some(every) = options.status_every.filter(|d| !d.is_zero()) {
            crate::status::run(every, metrics.clone(), queues.clone(), dispatcher.clone(), shutdown.clone());
        }
        Ok(Self { engine, reloader, queues, dispatcher, shutdown, log_thread, recovered, warmup_path })
    }

    /// Reload the policy (what SIGHUP, the API and file changes do).
    pub async fn reload(&self) -> ReloadOutcome {
        self.reloader.reload().await
    }

    /// A handle that reloads; cheap to clone and to move into a task.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Addresses the ESMTP listeners are bound to, in policy order.
    pub fn smtp_addrs(&self) -> Vec<SocketAddr> {
        self.reloader.smtp_addrs()
    }

    /// Addresses the HTTP listeners are bound to, in policy order.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.reloader.http_addrs()
    }

    /// Messages found in the spool at start.
    pub fn recovered(&self) -> usize {
        self.recovered
    }

    /// Operator controls (suspend, resume, rebind, bounce).
    pub fn controls(&self) -> Controls {
        Controls { queues: self.queues.clone(), dispatcher: self.dispatcher.clone(), engine: self.engine.clone() }
    }

    /// Stop accepting, stop delivering, and flush logs. Messages not yet
    /// delivered stay in the spool for the next start.
    pub async fn shutdown(self) {
        self.shutdown_within(Duration::from_secs(30)).await
    }

    /// Stop accepting (sessions get `421 4.3.2` at their next command), let
    /// deliveries in flight finish for up to `grace`, then flush the logs.
    pub async fn shutdown_within(mut self, grace: Duration) {
        self.shutdown.cancel();
        if !self.dispatcher.finish(grace).await {
            tracing::warn!(?grace, "deliveries still in flight at the deadline; they will be retried after restart");
        }
        let counts = self.dispatcher.warmup_counts();
        if (!counts.is_empty() || self.warmup_path.exists())
            && let Err(e) = crate::state_file::save(&self.warmup_path, &counts)
        {
            tracing::warn!(path = %self.warmup_path.display(), error = %e, "cannot save the warm-up counts");
        }
        let log_thread = self.log_thread.take();
        drop(self);
        if let Some(thread) = log_thread {
            // The writer ends once the last task holding a logger has ended.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The policy's background side: its `kumo.spawn_task` tasks (stopped at
/// shutdown) and `kumo.bump_config_epoch`, which builds a new generation.
fn spawn_policy_tasks(engine: &Arc<PolicyEngine>, reloader: &Arc<Reloader>, shutdown: &CancellationToken) {
    let tasks = engine.spawn_tasks();
    let token = shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        for task in tasks {
            task.abort();
        }
    });
    let (engine, reloader, token) = (engine.clone(), reloader.clone(), shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = engine.epoch_bumped() => {
                    tracing::info!("kumo.bump_config_epoch: building a new configuration generation");
                    reloader.reload_forced().await;
                }
                _ = token.cancelled() => return,
            }
        }
    });
}

/// What an operator can do to a running daemon. Cheap to clone; the HTTP
/// admin API and tests hold one.
#[derive(Clone)]
pub struct Controls {
    queues: Arc<QueueManager>,
    dispatcher: Arc<Dispatcher>,
    engine: Arc<PolicyEngine>,
}

impl Controls {
    /// The policy generation in force (1 at start, +1 per successful reload).
    pub fn policy_generation(&self) -> u64 {
        self.engine.current().number
    }

    /// Hold a scheduled queue's messages until resumed.
    pub fn suspend_queue(&self, name: &str) {
        self.queues.suspend_queue(name);
    }
    /// Release a suspended scheduled queue.
    pub fn resume_queue(&self, name: &str) {
        self.queues.resume_queue(name);
    }
    /// Stop sending from an egress source; its pools' other sources take over.
    pub fn suspend_source(&self, name: &str) {
        self.dispatcher.suspend_source(name);
    }
    /// Let a suspended egress source send again.
    pub fn resume_source(&self, name: &str) {
        self.dispatcher.resume_source(name);
    }
    /// Move waiting messages of matching queues to another queue or pool.
    pub async fn rebind(&self, filter: &QueueFilter, target: &RebindTarget) -> usize {
        self.queues.rebind(filter, target).await
    }
    /// Every scheduled queue as `queue summary` shows it.
    pub fn queue_summary(&self) -> Vec<petrel_queue::ScheduledSummary> {
        self.queues.summary()
    }
    /// Messages waiting in scheduled queues for their next attempt.
    pub fn waiting(&self) -> usize {
        self.queues.waiting()
    }
    /// Bounce waiting messages of matching queues.
    pub async fn admin_bounce(&self, filter: &QueueFilter, reason: &str) -> usize {
        self.queues.admin_bounce(filter, reason).await
    }
}
