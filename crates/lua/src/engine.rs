//! The running policy: generations of loaded configuration, each with its
//! own bounded pool of Lua states.
//!
//! Handlers run as async Lua calls polled by the task that asks (an SMTP
//! session, a delivery): a handler that waits (`kumo.sleep`) yields its
//! coroutine, and one that computes yields to the scheduler every slice of
//! instructions (`state::install_deadline_hook`), so neither holds an async
//! worker; the time limit stops either.

use crate::error::{PolicyLoadError, describe};
use crate::init::{InitCollector, InitConfig};
use crate::kumo::handler;
use crate::state::{Deadline, LuaSettings, new_state};
use arc_swap::ArcSwap;
use mlua::{Lua, Value};
use parking_lot::Mutex;
use petrel_telemetry::Metrics;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A handler ready to call: the function, its arguments, and what the
/// caller keeps for reading the result.
pub(crate) type Prepared<K> = (mlua::Function, mlua::MultiValue, K);

/// Events that authenticate HTTP clients; a listener off loopback needs one.
pub(crate) const HTTP_AUTH_EVENTS: [&str; 2] = ["http_server_validate_auth_basic", "http_server_validate_auth_bearer"];

/// One loaded policy: its init result and the Lua states that run its
/// per-message events. States are created on demand up to a bound, so a
/// slow handler makes callers wait rather than grow memory without limit.
pub struct Generation {
    /// Counts up from 1 with each committed reload.
    pub number: u64,
    /// The policy file it was loaded from.
    pub path: PathBuf,
    /// What `init` declared.
    pub config: Arc<InitConfig>,
    idle: Mutex<Vec<Lua>>,
    permits: Semaphore,
    created: std::sync::atomic::AtomicUsize,
    /// Events the policy registered handlers for (every state of a
    /// generation runs the same script, so they all agree), each with its
    /// time histogram once the event has run.
    events: rustc_hash::FxHashMap<String, std::sync::OnceLock<petrel_telemetry::EventHistogram>>,
    settings: LuaSettings,
    /// Caches and handles every state of this generation shares.
    pub(crate) shared: Arc<crate::shared::Shared>,
    /// The files this generation was built from.
    pub fingerprint: crate::Fingerprint,
}

fn max_states() -> usize {
    std::thread::available_parallelism().map_or(8, |n| n.get() * 4).max(8)
}

impl Generation {
    /// Load the policy in a fresh state and run `pre_init`, then `init`.
    pub fn load(
        path: &Path,
        number: u64,
        default_hostname: &str,
        settings: LuaSettings,
    ) -> Result<Self, PolicyLoadError> {
        Self::load_sharing(path, number, default_hostname, settings, &crate::shared::EngineLinks::default())
    }

    fn load_sharing(
        path: &Path,
        number: u64,
        default_hostname: &str,
        settings: LuaSettings,
        links: &crate::shared::EngineLinks,
    ) -> Result<Self, PolicyLoadError> {
        let shared = crate::shared::Shared::new(links);
        let lua = new_state(path, &settings, &shared)?;
        lua.set_app_data(InitCollector::new(default_hostname.to_string()));
        let init_result = run_init(&lua, path);
        let mut collector = lua.remove_app_data::<InitCollector>().expect("set above");
        let mut files = lua.remove_app_data::<crate::fingerprint::DataFiles>().expect("set above").0;
        files.insert(path.to_path_buf());
        files.extend(crate::fingerprint::required_modules(&lua).unwrap_or_default());
        let events = crate::kumo::registered_events(&lua)
            .unwrap_or_default()
            .into_iter()
            .map(|event| (event, std::sync::OnceLock::new()))
            .collect();
        let has_http_auth = HTTP_AUTH_EVENTS.iter().any(|e| matches!(handler(&lua, e), Ok(Some(_))));
        collector.check_http_auth(has_http_auth);
        let mut config = collector.finish();
        if let Err(runtime) = init_result {
            config = match config {
                Ok(_) => Err(PolicyLoadError::one(runtime)),
                Err(mut e) => {
                    e.errors.insert(0, runtime);
                    Err(e)
                }
            };
        }
        let config = config?;
        for listener in &config.listeners {
            files.extend(listener.tls_certificate.iter().chain(&listener.tls_private_key).cloned());
        }
        for listener in &config.http_listeners {
            files.extend(listener.tls_certificate.iter().chain(&listener.tls_private_key).cloned());
        }
        Ok(Self {
            number,
            path: path.to_path_buf(),
            fingerprint: crate::Fingerprint::of(files, config.monitor_globs.clone()),
            config: Arc::new(config),
            idle: Mutex::new(vec![lua]),
            permits: Semaphore::new(max_states()),
            created: std::sync::atomic::AtomicUsize::new(1),
            events,
            settings,
            shared,
        })
    }

    /// Whether the policy registered a handler for `event`.
    pub(crate) fn handles(&self, event: &str) -> bool {
        self.events.contains_key(event)
    }

    /// `event`'s time histogram in `metrics`; `None` when the policy has no
    /// handler for it.
    fn histogram(&self, event: &str, metrics: &Metrics) -> Option<&petrel_telemetry::EventHistogram> {
        let slot = self.events.get(event)?;
        Some(slot.get_or_init(|| metrics.lua_histogram(event)))
    }

    /// How many Lua states this generation has created (never more than
    /// its bound, however many callers wait).
    pub fn states_created(&self) -> usize {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A state of this generation: an idle one, or a new one built on a
    /// blocking thread (it reads and runs the policy file).
    async fn state(self: &Arc<Self>) -> Result<Lua, mlua::Error> {
        if let Some(lua) = self.idle.lock().pop() {
            return Ok(lua);
        }
        let generation = self.clone();
        tokio::task::spawn_blocking(move || {
            generation.created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            new_state(&generation.path, &generation.settings, &generation.shared)
                .map_err(|e| mlua::Error::runtime(e.to_string()))
        })
        .await
        .map_err(|e| mlua::Error::runtime(format!("building a Lua state failed: {e}")))?
    }

    /// Run one handler in one of this generation's states: `prepare` finds
    /// it and builds its arguments (`None`: nothing to call), the call runs
    /// as an async Lua call stopped at `limit`, and `finish` reads its
    /// result. A state that ran out of memory is dropped rather than reused.
    async fn call<K, R>(
        self: Arc<Self>,
        limit: Duration,
        prepare: impl FnOnce(&Lua) -> mlua::Result<Option<Prepared<K>>>,
        finish: impl FnOnce(&Lua, Value, K) -> mlua::Result<R>,
    ) -> Result<Option<R>, mlua::Error> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let lua = self.state().await?;
        let deadline = Instant::now() + limit;
        Deadline::set(&lua, Some(deadline));
        let result = async {
            let Some((func, args, keep)) = prepare(&lua)? else { return Ok(None) };
            let value = tokio::time::timeout_at(deadline.into(), func.call_async::<Value>(args))
                .await
                .unwrap_or_else(|_| Err(mlua::Error::runtime(crate::state::TIME_LIMIT_MESSAGE)))?;
            finish(&lua, value, keep).map(Some)
        }
        .await;
        Deadline::set(&lua, None);
        if is_memory_error(&result) {
            tracing::error!(
                limit = self.settings.memory_limit,
                "a policy event ran out of Lua memory; its state is discarded"
            );
            // Collect what is left before the state goes, so the memory is
            // returned at once.
            drop(lua);
        } else {
            self.idle.lock().push(lua);
        }
        result
    }
}

/// `pre_init` (every handler, in order), then `init`.
fn run_init(lua: &Lua, path: &Path) -> Result<(), String> {
    if let Some(pre_init) = handler(lua, "pre_init").map_err(|e| describe(&e))? {
        pre_init.call::<()>(()).map_err(|e| describe(&e))?;
    }
    match handler(lua, "init") {
        Ok(Some(init)) => init.call::<()>(()).map_err(|e| describe(&e)),
        Ok(None) => Err(format!("{}: the policy registers no init event (kumo.on('init', ...))", path.display())),
        Err(e) => Err(describe(&e)),
    }
}

impl Generation {
    async fn run_task(self: Arc<Self>, event: String, args: serde_json::Value) {
        let generation = self.clone();
        let built =
            tokio::task::spawn_blocking(move || new_state(&generation.path, &generation.settings, &generation.shared))
                .await;
        let lua = match built {
            Ok(Ok(lua)) => lua,
            Ok(Err(e)) => return tracing::error!(event, error = %e, "cannot start a spawned task"),
            Err(e) => return tracing::error!(event, error = %e, "cannot start a spawned task"),
        };
        // A deadline far away: the hook still yields every slice, so a busy
        // task shares its worker, and never stops it.
        Deadline::set(&lua, Some(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)));
        let run = async {
            let func = handler(&lua, &event)?.ok_or_else(|| mlua::Error::runtime("no handler"))?;
            let arg = mlua::LuaSerdeExt::to_value(&lua, &args)?;
            func.call_async::<()>(arg).await
        };
        match run.await {
            Ok(()) => tracing::info!(event, "spawned task finished"),
            Err(e) => tracing::error!(event, error = %describe(&e), "spawned task failed"),
        }
    }
}

fn is_memory_error<R>(result: &mlua::Result<R>) -> bool {
    let Err(mut e) = result.as_ref() else { return false };
    loop {
        match e {
            mlua::Error::MemoryError(_) => return true,
            mlua::Error::CallbackError { cause, .. } => e = cause,
            _ => return false,
        }
    }
}

/// The policy as the core sees it. A reload swaps in a new [`Generation`];
/// every call reads the current one once and uses only it.
pub struct PolicyEngine {
    current: ArcSwap<Generation>,
    metrics: Arc<Metrics>,
    /// Longest a per-message event may run.
    event_time_limit: Mutex<Duration>,
    settings: LuaSettings,
    /// What every generation's states reach of the engine.
    links: crate::shared::EngineLinks,
}

impl PolicyEngine {
    /// Load the policy at `path` and run its `init` event.
    pub fn load(path: &Path, default_hostname: &str) -> Result<Self, PolicyLoadError> {
        Self::load_with_metrics(path, default_hostname, Arc::new(Metrics::new()))
    }

    /// Load, timing Lua events into `metrics`.
    pub fn load_with_metrics(
        path: &Path,
        default_hostname: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PolicyLoadError> {
        Self::load_with(path, default_hostname, metrics, LuaSettings::default())
    }

    /// Load with `settings` for every Lua state of every generation.
    pub fn load_with(
        path: &Path,
        default_hostname: &str,
        metrics: Arc<Metrics>,
        settings: LuaSettings,
    ) -> Result<Self, PolicyLoadError> {
        let links = crate::shared::EngineLinks::default();
        let generation = Generation::load_sharing(path, 1, default_hostname, settings, &links)?;
        let event_time_limit = Mutex::new(settings.event_time_limit);
        Ok(Self { current: ArcSwap::from_pointee(generation), metrics, event_time_limit, settings, links })
    }

    /// The generation in force now.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Load the policy file again into fresh Lua state as the next
    /// generation, without touching the running one.
    pub fn prepare(&self, default_hostname: &str) -> Result<Generation, PolicyLoadError> {
        let current = self.current();
        Generation::load_sharing(&current.path, current.number + 1, default_hostname, self.settings, &self.links)
    }

    /// Make `next` the generation every later decision uses. Calls already
    /// running finish with the generation they started with; its Lua states
    /// are dropped with the last of them.
    pub fn commit(&self, next: Generation) -> Arc<Generation> {
        self.current.swap(Arc::new(next))
    }

    /// Run `f` for `event` in a state of the current generation, timed.
    /// `None` without touching Lua when the policy does not handle `event`.
    pub(crate) async fn call_event<K, R>(
        &self,
        event: &str,
        prepare: impl FnOnce(&Lua) -> mlua::Result<Option<Prepared<K>>>,
        finish: impl FnOnce(&Lua, Value, K) -> mlua::Result<R>,
    ) -> Result<Option<R>, mlua::Error> {
        let generation = self.current();
        let Some(histogram) = generation.histogram(event, &self.metrics) else { return Ok(None) };
        let _timer = histogram.start_timer();
        let limit = *self.event_time_limit.lock();
        generation.call(limit, prepare, finish).await
    }

    /// The process's diagnostic log filter, for `kumo.set_diagnostic_log_filter`
    /// (which until then only checks its argument).
    pub fn set_log_filter(&self, filter: petrel_telemetry::LogFilter) {
        self.links.log_filter.0.store(Some(Arc::new(filter)));
    }

    /// Resolves when a policy calls `kumo.bump_config_epoch()`; the daemon
    /// then builds a new generation even though no file changed.
    pub async fn epoch_bumped(&self) {
        self.links.epoch.0.notified().await;
    }

    /// Start the background tasks `kumo.spawn_task` asked for in the
    /// current generation's `init`: each runs its event's handler in a Lua
    /// state of its own, with no time limit (it yields to the scheduler
    /// like any handler). They keep the generation they started with.
    pub fn spawn_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let generation = self.current();
        let tasks = generation.config.tasks.clone();
        tasks.into_iter().map(|(event, args)| tokio::spawn(generation.clone().run_task(event, args))).collect()
    }

    /// The node's limits: `kumo.make_throttle`'s, and the ones delivery
    /// paces egress paths with, so both count against the same store.
    /// Configure it from [`InitConfig::redis_throttles`] after each load.
    pub fn limiter(&self) -> Arc<petrel_throttle::Limiter> {
        self.links.limits.clone()
    }

    /// The sources and pools the policy's `get_egress_source` /
    /// `get_egress_pool` have defined for the current generation so far
    /// (they are not in the init registry), for operator views.
    pub fn late_bound(&self) -> (Vec<Arc<petrel_egress::EgressSource>>, Vec<Arc<petrel_egress::EgressPool>>) {
        let generation = self.current();
        let egress = &generation.shared.egress;
        (egress.sources.values(), egress.pools.values())
    }

    /// The resolver `kumo.dns.*` lookups use from now on: the daemon's own,
    /// so policies see the answers (and the name servers) delivery sees.
    pub fn set_resolver(&self, resolver: Arc<dyn petrel_dns::Resolver>) {
        self.links.dns.set(resolver);
    }

    /// Run the policy's `validate_config` handlers (KumoMTA's deep check,
    /// which helpers register to check their data files): an error for
    /// each failure, and one when a handler called `kumo.validation_failed`.
    pub async fn validate_config(&self) -> Vec<String> {
        let generation = self.current();
        if !generation.handles("validate_config") {
            return Vec::new();
        }
        let limit = *self.event_time_limit.lock();
        let result = generation
            .call(
                limit,
                |lua| {
                    lua.set_app_data(crate::kumo::Validation::default());
                    let Some(func) = handler(lua, "validate_config")? else { return Ok(None) };
                    Ok(Some((func, mlua::MultiValue::new(), ())))
                },
                |lua, _, ()| Ok(lua.remove_app_data::<crate::kumo::Validation>().unwrap_or_default()),
            )
            .await;
        match result {
            Ok(Some(validation)) if validation.failed && validation.messages.is_empty() => {
                vec!["validate_config: a check called kumo.validation_failed()".to_string()]
            }
            Ok(Some(validation)) if validation.failed => validation.messages,
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("validate_config: {}", describe(&e))],
        }
    }

    /// The names of the sources and pools the policy defines late, when it
    /// says (the shipped sources helper answers the `petrel.egress_names`
    /// event with the names in its data files), for `petrel validate`.
    pub async fn late_bound_names(&self) -> Result<(Vec<String>, Vec<String>), String> {
        #[derive(serde::Deserialize, Default)]
        struct Names {
            #[serde(default)]
            sources: Vec<String>,
            #[serde(default)]
            pools: Vec<String>,
        }
        const EVENT: &str = "petrel.egress_names";
        let generation = self.current();
        if !generation.handles(EVENT) {
            return Ok(Default::default());
        }
        let limit = *self.event_time_limit.lock();
        let names = generation
            .call(
                limit,
                |lua| Ok(handler(lua, EVENT)?.map(|f| (f, mlua::MultiValue::new(), ()))),
                |lua, value, ()| mlua::LuaSerdeExt::from_value::<Names>(lua, value),
            )
            .await
            .map_err(|e| format!("{EVENT}: {}", describe(&e)))?
            .unwrap_or_default();
        Ok((names.sources, names.pools))
    }

    /// Stop any event handler that runs longer than `limit`; its caller gets
    /// an error (SMTP: 451) and the state is reused.
    pub fn set_event_time_limit(&self, limit: Duration) {
        *self.event_time_limit.lock() = limit;
    }
}
