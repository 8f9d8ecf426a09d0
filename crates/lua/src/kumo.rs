//! The `kumo` module: registration, init-time definitions, constructors for
//! event results, and small utilities policies rely on.

use crate::egress_events::{LuaEgressPool, LuaEgressSource, MakePoolSpec, MakeSourceSpec};
use crate::error::caller_location;
use crate::init::InitCollector;
use crate::init::{in_init, record};
use crate::message::{LuaEgressPath, LuaListenerDomain, LuaMessage, LuaQueueConfig};
use crate::options::spec;
use crate::specs::{
    EgressPathSpec, EsmtpListenerSpec, HttpListenerSpec, ListenerDomainSpec, LocalLogsSpec, PoolSpec, QueueConfigSpec,
    ResolverSpec, SourceSpec, SpoolSpec,
};
use mlua::{Function, Lua, Table, Value};
use serde::de::DeserializeOwned;

pub(crate) const EVENTS: &str = "petrel_events";

/// Raised by `kumo.reject(code, text)`; reception turns it into the reply.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rejected with {code} {text}")]
pub struct Rejection {
    pub code: u16,
    pub text: String,
}

pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_named_registry_value(EVENTS, lua.create_table()?)?;
    let kumo = lua.create_table()?;
    kumo.set("on", lua.create_function(on)?)?;
    kumo.set("define_egress_source", lua.create_function(define_egress_source)?)?;
    kumo.set("define_egress_pool", lua.create_function(define_egress_pool)?)?;
    kumo.set("start_esmtp_listener", lua.create_function(start_esmtp_listener)?)?;
    kumo.set("start_http_listener", lua.create_function(start_http_listener)?)?;
    kumo.set("define_spool", lua.create_function(define_spool)?)?;
    kumo.set("configure_local_logs", lua.create_function(configure_local_logs)?)?;
    kumo.set("configure_bounce_classifier", lua.create_function(configure_bounce_classifier)?)?;
    kumo.set("configure_log_hook", lua.create_function(configure_log_hook)?)?;
    kumo.set("make_queue_config", lua.create_function(make_queue_config)?)?;
    kumo.set("make_egress_path", lua.create_function(make_egress_path)?)?;
    kumo.set("make_listener_domain", lua.create_function(make_listener_domain)?)?;
    kumo.set("reject", lua.create_function(reject)?)?;
    kumo.set("make_egress_source", lua.create_function(make_egress_source)?)?;
    kumo.set("make_egress_pool", lua.create_function(make_egress_pool)?)?;
    kumo.set("sleep", lua.create_async_function(sleep)?)?;
    kumo.set("validation_failed", lua.create_function(validation_failed)?)?;
    kumo.set("set_config_monitor_globs", lua.create_function(set_config_monitor_globs)?)?;
    kumo.set("eval_config_monitor_globs", lua.create_function(eval_config_monitor_globs)?)?;
    kumo.set("make_message", lua.create_function(make_message)?)?;
    kumo.set("spawn_task", lua.create_function(spawn_task)?)?;
    kumo.set("bump_config_epoch", lua.create_function(bump_config_epoch)?)?;
    kumo.set("set_diagnostic_log_filter", lua.create_function(set_diagnostic_log_filter)?)?;
    kumo.set("traceback", lua.create_function(traceback)?)?;
    for (name, level) in [
        ("log_debug", tracing::Level::DEBUG),
        ("log_info", tracing::Level::INFO),
        ("log_warn", tracing::Level::WARN),
        ("log_error", tracing::Level::ERROR),
    ] {
        kumo.set(name, lua.create_function(move |lua, args: mlua::Variadic<Value>| log(lua, level, args))?)?;
    }
    crate::serde_fns::install(lua, &kumo)?;
    crate::throttle::install(lua, &kumo)?;
    crate::regex::install(lua, &kumo)?;
    crate::regex::install_set_map(lua, &kumo)?;
    crate::domain_map::install(lua, &kumo)?;
    crate::memoize::install(lua, &kumo)?;
    crate::string_fns::install(lua, &kumo)?;
    crate::codec::install(lua, &kumo)?;
    crate::cidr_map::install(lua, &kumo)?;
    crate::fs::install(lua, &kumo)?;
    crate::time::install(lua, &kumo)?;
    crate::dkim::install(lua, &kumo)?;
    crate::http::install(lua, &kumo)?;
    crate::automation::install(lua, &kumo)?;
    let dns = lua.create_table()?;
    dns.set("configure_resolver", lua.create_function(configure_resolver)?)?;
    crate::dns::install(lua, &dns)?;
    kumo.set("dns", dns)?;
    crate::unsupported::install(lua, &kumo)?;
    register_modules(lua, &kumo)?;
    lua.globals().set("kumo", kumo)?;
    Ok(())
}

/// `require 'kumo'` and `require 'kumo.<module>'` (KumoMTA's names for its
/// submodules: `kumo.regex`, `kumo.serde`, …) find the tables on `kumo`.
fn register_modules(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("kumo", kumo.clone())?;
    for pair in kumo.pairs::<String, Value>() {
        if let (name, Value::Table(module)) = pair? {
            loaded.set(format!("kumo.{name}"), module)?;
        }
    }
    Ok(())
}

/// The names of every event with a handler.
pub(crate) fn registered_events(lua: &Lua) -> mlua::Result<Vec<String>> {
    let events: Table = lua.named_registry_value(EVENTS)?;
    events.pairs::<String, Function>().map(|pair| pair.map(|(name, _)| name)).collect()
}

/// A registered handler and how many arguments it can see.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) func: Function,
    /// Its declared parameters; `None` when it takes `...` (or is a C
    /// function), which sees every argument.
    params: Option<u8>,
}

impl Handler {
    fn of(func: Function) -> Self {
        let info = func.info();
        let params = (info.what == "Lua" && !info.is_vararg).then_some(info.num_params);
        Self { func, params }
    }

    /// Whether the handler can read its `n`th argument (from 1): an
    /// argument past its parameters is dropped by Lua unseen, so the caller
    /// need not build it.
    pub(crate) fn sees(&self, n: usize) -> bool {
        self.params.is_none_or(|p| usize::from(p) >= n)
    }
}

/// Handlers already looked up in this state: a per-message event would
/// otherwise fetch the registry table and intern two strings each time.
/// `kumo.on` empties it.
#[derive(Default)]
struct HandlerCache(std::cell::RefCell<rustc_hash::FxHashMap<String, Option<Handler>>>);

/// The handler registered for `event`, if any.
pub(crate) fn handler(lua: &Lua, event: &str) -> mlua::Result<Option<Function>> {
    Ok(event_handler(lua, event)?.map(|h| h.func))
}

/// The handler registered for `event` with what it declares, if any.
pub(crate) fn event_handler(lua: &Lua, event: &str) -> mlua::Result<Option<Handler>> {
    if let Some(cache) = lua.app_data_ref::<HandlerCache>()
        && let Some(found) = cache.0.borrow().get(event)
    {
        return Ok(found.clone());
    }
    let found = lua.named_registry_value::<Table>(EVENTS)?.get::<Option<Function>>(event)?.map(Handler::of);
    if lua.app_data_ref::<HandlerCache>().is_none() {
        lua.set_app_data(HandlerCache::default());
    }
    if let Some(cache) = lua.app_data_ref::<HandlerCache>() {
        cache.0.borrow_mut().insert(event.to_string(), found.clone());
    }
    Ok(found)
}

fn on(lua: &Lua, (event, func): (String, Function)) -> mlua::Result<()> {
    if let Err(why) = crate::event_names::check(&event) {
        return Err(mlua::Error::runtime(format!("{}: {why}", caller_location(lua))));
    }
    lua.remove_app_data::<HandlerCache>();
    let events: Table = lua.named_registry_value(EVENTS)?;
    let func = match events.get::<Option<Function>>(event.as_str())? {
        None => func,
        // KumoMTA composes these: handlers run in the order registered until
        // one returns a value (so helper modules can each add their own).
        Some(earlier) if FIRST_ANSWER_EVENTS.contains(&event.as_str()) => {
            chain(lua, CHAIN_FIRST_ANSWER, earlier, func)?
        }
        // Every handler of these runs, in the order registered.
        Some(earlier) if EVERY_HANDLER_EVENTS.contains(&event.as_str()) => chain(lua, CHAIN_EVERY, earlier, func)?,
        // Elsewhere the most recent registration is the one used.
        Some(_) => {
            tracing::debug!(event, at = %caller_location(lua), "a later kumo.on replaces the earlier handler");
            func
        }
    };
    events.set(event, func)
}

/// Events whose handlers are called in turn until one returns a value.
const FIRST_ANSWER_EVENTS: [&str; 2] = ["get_queue_config", "should_enqueue_log_record"];
/// Events whose handlers all run (helper modules each add a check).
const EVERY_HANDLER_EVENTS: [&str; 2] = ["pre_init", "validate_config"];

const CHAIN_FIRST_ANSWER: &str = "local first, second = ...\n\
     return function(...)\n\
       local result = first(...)\n\
       if result ~= nil then return result end\n\
       return second(...)\n\
     end";
const CHAIN_EVERY: &str = "local first, second = ...\n\
     return function(...)\n\
       first(...)\n\
       return second(...)\n\
     end";

/// A handler calling `first` then `second` as `code` composes them.
fn chain(lua: &Lua, code: &str, first: Function, second: Function) -> mlua::Result<Function> {
    let make: Function = lua.load(code).set_name("=kumo.on").into_function()?;
    make.call((first, second))
}

/// Set while `validate_config` runs: `kumo.validation_failed()` marks it,
/// and what the checks log as errors or warnings is kept to show the user.
#[derive(Default)]
pub(crate) struct Validation {
    pub failed: bool,
    pub messages: Vec<String>,
}

fn validation_failed(lua: &Lua, (): ()) -> mlua::Result<()> {
    match lua.app_data_mut::<Validation>() {
        Some(mut validation) => validation.failed = true,
        None => tracing::warn!(at = %caller_location(lua), "kumo.validation_failed called outside validate_config"),
    }
    Ok(())
}

/// `kumo.traceback(level)`: the calling stack as a list of frames
/// `{event, name, source, short_src, line, what}`, innermost first.
fn traceback(lua: &Lua, level: Option<usize>) -> mlua::Result<Table> {
    let frames = lua.create_table()?;
    let mut index = level.unwrap_or(1);
    loop {
        let frame = lua.inspect_stack(index, |debug| {
            let source = debug.source();
            let names = debug.names();
            (
                names.name.map(|n| n.to_string()),
                source.source.map(|s| s.to_string()),
                source.short_src.map(|s| s.to_string()),
                debug.current_line(),
                source.what.to_string(),
            )
        });
        let Some((name, source, short_src, line, what)) = frame else { break };
        let entry = lua.create_table()?;
        entry.set("name", name)?;
        entry.set("source", source)?;
        entry.set("short_src", short_src)?;
        entry.set("curr_line", line)?;
        entry.set("line", line)?;
        entry.set("what", what)?;
        frames.push(entry)?;
        index += 1;
    }
    Ok(frames)
}

fn define_egress_source(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "define_egress_source", value, |c, s: SourceSpec, loc| {
        let plan = s.warmup.map(|w| w.plan()).transpose()?;
        c.registry
            .define_source(&s.name, s.source_address.as_deref(), s.ehlo_domain, s.remote_port, loc)
            .map_err(|e| e.kind.to_string())?;
        if let Some(plan) = plan {
            c.registry.set_warmup(&s.name, plan);
        }
        Ok(())
    })
}

fn define_egress_pool(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "define_egress_pool", value, |c, p: PoolSpec, loc| {
        let overflow = match p.overflow.as_deref() {
            None => petrel_egress::Overflow::default(),
            Some(text) => petrel_egress::Overflow::parse(text)
                .ok_or_else(|| format!("overflow: {text:?} is not 'wait' or 'spill'"))?,
        };
        let entries = p.entries.into_iter().map(|e| (e.name, e.weight.unwrap_or(1))).collect();
        c.registry.define_pool(&p.name, entries, overflow, loc).map_err(|e| e.kind.to_string())
    })
}

fn start_esmtp_listener(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "start_esmtp_listener", value, |c, s: EsmtpListenerSpec, loc| {
        let config = s.into_config(&c.default_hostname)?;
        c.listeners.push((config, loc.to_string()));
        Ok(())
    })
}

fn start_http_listener(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "start_http_listener", value, |c, s: HttpListenerSpec, loc| {
        c.http_listeners.push((s.into_config()?, loc.to_string()));
        Ok(())
    })
}

fn define_spool(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "define_spool", value, |c, s: SpoolSpec, loc| {
        if !matches!(s.name.as_str(), "data" | "meta") {
            return Err(format!("name must be 'data' or 'meta', not {:?}", s.name));
        }
        if s.kind.as_deref().is_some_and(|k| !k.eq_ignore_ascii_case("rocksdb")) {
            return Err("kind: only 'RocksDB' is supported".into());
        }
        let reserve = s.reserve()?;
        if let Some((_, _, first)) = c.spools.insert(s.name.clone(), (s.path, reserve, loc.to_string())) {
            return Err(format!("spool {:?} is defined twice (first at {first})", s.name));
        }
        Ok(())
    })
}

fn configure_local_logs(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "configure_local_logs", value, |c, s: LocalLogsSpec, loc| {
        if let Some((_, first)) = &c.logs {
            return Err(format!("logs are configured twice (first at {first})"));
        }
        c.logs = Some((s.into_config()?, loc.to_string()));
        Ok(())
    })
}

/// One log hook; several may be configured, each with its own name.
fn configure_log_hook(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "configure_log_hook", value, |c, s: crate::specs::LogHookSpec, loc| {
        if let Some((_, first)) = c.log_hooks.iter().find(|(h, _)| h.name == s.name) {
            return Err(format!("log hook {:?} is configured twice (first at {first})", s.name));
        }
        if s.name.is_empty() {
            return Err("name: a log hook needs a name".into());
        }
        let hook =
            petrel_telemetry::LogHookConfig { name: s.name, headers: s.headers.unwrap_or_default(), meta: s.meta };
        c.log_hooks.push((hook, loc.to_string()));
        Ok(())
    })
}

/// Compiled at once, so a bad rules file fails the load at the policy line.
fn configure_bounce_classifier(lua: &Lua, value: Value) -> mlua::Result<()> {
    // The rules files count among the policy's files: editing one reloads.
    if let Value::Table(t) = &value
        && let Ok(Some(files)) = t.get::<Option<Vec<String>>>("files")
    {
        for file in files.iter().filter(|f| !f.starts_with("[petrel]/")) {
            crate::fingerprint::note_data_file(lua, std::path::Path::new(file));
        }
    }
    record(lua, "configure_bounce_classifier", value, |c, s: crate::specs::BounceClassifierSpec, loc| {
        if let Some((_, first)) = &c.bounce_classifier {
            return Err(format!("the bounce classifier is configured twice (first at {first})"));
        }
        let defaults = petrel_telemetry::CacheSizes::default();
        let sizes = petrel_telemetry::CacheSizes {
            classified: s.cache_size.unwrap_or(defaults.classified),
            uncategorized: s.uncategorized_cache_size.unwrap_or(defaults.uncategorized),
        };
        let classifier = petrel_telemetry::BounceClassifier::load(&s.files, sizes).map_err(|e| e.to_string())?;
        c.bounce_classifier = Some((std::sync::Arc::new(classifier), loc.to_string()));
        Ok(())
    })
}

fn configure_resolver(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "dns.configure_resolver", value, |c, s: ResolverSpec, loc| {
        if let Some((_, first)) = &c.name_servers {
            return Err(format!("the resolver is configured twice (first at {first})"));
        }
        c.name_servers = Some((s.servers()?, loc.to_string()));
        Ok(())
    })
}

/// Build a result object from its spec table; errors name the caller's line.
fn make<S: DeserializeOwned, T>(
    lua: &Lua,
    what: &str,
    value: Value,
    build: impl FnOnce(S) -> Result<T, String>,
) -> mlua::Result<T> {
    let parsed: S = spec(lua, what, value).map_err(mlua::Error::runtime)?;
    build(parsed).map_err(|e| mlua::Error::runtime(format!("{}: {what}: {e}", caller_location(lua))))
}

fn make_queue_config(lua: &Lua, value: Value) -> mlua::Result<LuaQueueConfig> {
    make(lua, "make_queue_config", value, |s: QueueConfigSpec| s.into_config().map(LuaQueueConfig))
}

fn make_egress_path(lua: &Lua, value: Value) -> mlua::Result<LuaEgressPath> {
    make(lua, "make_egress_path", value, |s: EgressPathSpec| s.into_config().map(LuaEgressPath))
}

fn make_listener_domain(lua: &Lua, value: Value) -> mlua::Result<LuaListenerDomain> {
    make(lua, "make_listener_domain", value, |s: ListenerDomainSpec| s.into_domain().map(LuaListenerDomain))
}

fn set_config_monitor_globs(lua: &Lua, globs: Vec<String>) -> mlua::Result<()> {
    let kept = globs.clone();
    in_init(lua, "set_config_monitor_globs", |c, location| {
        for glob in &globs {
            if let Err(e) = crate::monitor::check(glob) {
                c.errors.push(format!("{location}: set_config_monitor_globs: {e}"));
            }
        }
        c.monitor_globs = globs;
    })?;
    if let Some(monitor) = lua.app_data_ref::<std::sync::Arc<crate::fingerprint::MonitorGlobs>>() {
        *monitor.0.write() = kept;
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSpec {
    event_name: String,
    #[serde(default)]
    args: serde_json::Value,
}

/// `kumo.spawn_task{event_name, args}` (in init): run that event's handler
/// in the background once the daemon has started.
fn spawn_task(lua: &Lua, value: Value) -> mlua::Result<()> {
    let parsed = spec::<TaskSpec>(lua, "spawn_task", value);
    let registered = match &parsed {
        Ok(task) => handler(lua, &task.event_name)?.is_some(),
        Err(_) => true,
    };
    in_init(lua, "spawn_task", |c, location| match parsed {
        Err(e) => c.errors.push(e),
        Ok(task) if !registered => c.errors.push(format!(
            "{location}: spawn_task: no handler for {:?} (register it with kumo.on before init runs)",
            task.event_name
        )),
        Ok(task) => c.tasks.push((task.event_name, task.args)),
    })
}

/// The running process's diagnostic log filter, once the daemon has one.
#[derive(Default)]
pub(crate) struct LogFilterSlot(pub arc_swap::ArcSwapOption<petrel_telemetry::LogFilter>);

/// `kumo.set_diagnostic_log_filter('petrel=debug')`. KumoMTA's `kumod`
/// target is read as `petrel`, so its documented examples work as written.
fn set_diagnostic_log_filter(lua: &Lua, filter: String) -> mlua::Result<()> {
    let filter = filter.replace("kumod", "petrel");
    let location = caller_location(lua);
    petrel_telemetry::LogFilter::check(&filter)
        .map_err(|e| mlua::Error::runtime(format!("{location}: set_diagnostic_log_filter: {e}")))?;
    if let Some(mut collector) = lua.app_data_mut::<InitCollector>() {
        collector.log_filter = Some(filter.clone());
    }
    let slot = lua.app_data_ref::<std::sync::Arc<LogFilterSlot>>().and_then(|s| s.0.load_full());
    if let Some(handle) = slot {
        handle.set(&filter).map_err(|e| mlua::Error::runtime(format!("{location}: set_diagnostic_log_filter: {e}")))?;
    }
    Ok(())
}

/// The engine's "configuration changed" signal; the daemon reloads.
#[derive(Default)]
pub(crate) struct EpochSignal(pub tokio::sync::Notify);

/// `kumo.bump_config_epoch()`: a new configuration generation even though
/// no file changed (caches, memoized values and late-bound sources refresh).
fn bump_config_epoch(lua: &Lua, (): ()) -> mlua::Result<()> {
    if let Some(signal) = lua.app_data_ref::<std::sync::Arc<EpochSignal>>() {
        signal.0.notify_one();
    }
    Ok(())
}

fn eval_config_monitor_globs(lua: &Lua, (): ()) -> mlua::Result<Vec<String>> {
    let globs = lua
        .app_data_ref::<std::sync::Arc<crate::fingerprint::MonitorGlobs>>()
        .map(|m| m.0.read().clone())
        .unwrap_or_default();
    Ok(crate::monitor::eval(&globs).into_iter().map(|p| p.display().to_string()).collect())
}

/// `kumo.make_message(sender, recipient, body)`: a message that exists only
/// in Lua (KumoMTA's, for tests and for building messages to hand on).
fn make_message(_: &Lua, (sender, recipient, body): (String, String, mlua::LuaString)) -> mlua::Result<LuaMessage> {
    let sender = petrel_message::EnvelopeAddress::parse(&sender).map_err(mlua::Error::external)?;
    let recipient = petrel_message::EnvelopeAddress::parse(&recipient).map_err(mlua::Error::external)?;
    Ok(LuaMessage(petrel_message::Message::new(sender, recipient, std::sync::Arc::from(&body.as_bytes()[..]))))
}

fn make_egress_source(lua: &Lua, value: Value) -> mlua::Result<LuaEgressSource> {
    make(lua, "make_egress_source", value, MakeSourceSpec::build)
}

fn make_egress_pool(lua: &Lua, value: Value) -> mlua::Result<LuaEgressPool> {
    make(lua, "make_egress_pool", value, MakePoolSpec::build)
}

fn reject(lua: &Lua, (code, text): (u16, String)) -> mlua::Result<()> {
    if !(400..600).contains(&code) {
        let location = caller_location(lua);
        return Err(mlua::Error::runtime(format!("{location}: kumo.reject needs a 4xx or 5xx code, not {code}")));
    }
    Err(mlua::Error::external(Rejection { code, text }))
}

/// `kumo.sleep(seconds)`: waits without holding any async worker (the
/// event's coroutine yields). Counts against the event's time limit.
async fn sleep(_: Lua, seconds: f64) -> mlua::Result<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(mlua::Error::runtime(format!("kumo.sleep: {seconds} is not a number of seconds")));
    }
    tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
    Ok(())
}

fn log(lua: &Lua, level: tracing::Level, args: mlua::Variadic<Value>) -> mlua::Result<()> {
    let location = caller_location(lua);
    let text: Vec<String> = args.iter().map(|v| v.to_string().unwrap_or_else(|_| format!("{v:?}"))).collect();
    let text = text.join(" ");
    if level <= tracing::Level::WARN
        && let Some(mut validation) = lua.app_data_mut::<Validation>()
    {
        validation.messages.push(text.clone());
    }
    match level {
        tracing::Level::ERROR => tracing::error!(policy = %location, "{text}"),
        tracing::Level::WARN => tracing::warn!(policy = %location, "{text}"),
        tracing::Level::DEBUG => tracing::debug!(policy = %location, "{text}"),
        _ => tracing::info!(policy = %location, "{text}"),
    }
    Ok(())
}
