//! What a policy's `init` event defines, collected while it runs and then
//! validated as a whole.

use crate::error::PolicyLoadError;
use mlua::{Lua, Value};
use petrel_egress::{Registry, RegistryBuilder};
use petrel_smtp_server::ListenerConfig;
use petrel_spool::SpoolPaths;
use petrel_telemetry::LogConfig;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The validated result of running `init`.
#[derive(Debug, Clone)]
pub struct InitConfig {
    /// Egress sources and pools.
    pub registry: Arc<Registry>,
    /// `kumo.start_esmtp_listener` calls.
    pub listeners: Vec<ListenerConfig>,
    /// `kumo.start_http_listener` calls.
    pub http_listeners: Vec<petrel_http_api::HttpListenerConfig>,
    /// `kumo.define_spool` directories.
    pub spool: SpoolPaths,
    /// Free space and inodes each spool directory keeps (`min_free_*`).
    pub spool_reserves: petrel_spool::SpoolReserves,
    /// `kumo.configure_local_logs`, if called.
    pub logs: Option<LogConfig>,
    /// `kumo.dns.configure_resolver`; `None` uses the system resolver.
    pub name_servers: Option<Vec<std::net::SocketAddr>>,
    /// `kumo.set_config_monitor_globs`: more files whose change reloads.
    pub monitor_globs: Vec<String>,
    /// `kumo.spawn_task`: `(event name, argument)` to run in the background.
    pub tasks: Vec<(String, serde_json::Value)>,
    /// `kumo.set_diagnostic_log_filter` in init, for the daemon to apply.
    pub log_filter: Option<String>,
    /// `kumo.configure_bounce_classifier`, compiled.
    pub bounce_classifier: Option<Arc<petrel_telemetry::BounceClassifier>>,
    /// `kumo.configure_log_hook` calls.
    pub log_hooks: Vec<petrel_telemetry::LogHookConfig>,
    /// Shaping automation rules (`kumo.configure_shaping_automation`).
    pub automation: Vec<petrel_delivery::automation::AutomationRule>,
    /// `kumo.configure_redis_throttles`: limits shared through Redis.
    pub redis_throttles: Option<RedisThrottles>,
}

/// What the daemon needs from the init call: the configuration, and what
/// `petrel validate` should say about parameters with no effect here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisThrottles {
    /// Where the limits are shared.
    pub config: petrel_throttle::RedisConfig,
    /// Accepted parameters that do nothing in Petrel, and why.
    pub notes: Vec<String>,
}

/// Lives in the Lua state's app data only while `init` runs; the `define_*`
/// and `start_*` functions refuse to work anywhere else.
pub(crate) struct InitCollector {
    pub registry: RegistryBuilder,
    pub listeners: Vec<(ListenerConfig, String)>,
    pub http_listeners: Vec<(petrel_http_api::HttpListenerConfig, String)>,
    pub spools: BTreeMap<String, (PathBuf, petrel_spool::StorageReserve, String)>,
    pub logs: Option<(LogConfig, String)>,
    pub name_servers: Option<(Vec<std::net::SocketAddr>, String)>,
    pub monitor_globs: Vec<String>,
    pub tasks: Vec<(String, serde_json::Value)>,
    pub log_filter: Option<String>,
    pub bounce_classifier: Option<(Arc<petrel_telemetry::BounceClassifier>, String)>,
    pub log_hooks: Vec<(petrel_telemetry::LogHookConfig, String)>,
    pub automation: Vec<petrel_delivery::automation::AutomationRule>,
    pub redis_throttles: Option<(RedisThrottles, String)>,
    pub errors: Vec<String>,
    pub default_hostname: String,
}

impl InitCollector {
    pub fn new(default_hostname: String) -> Self {
        Self {
            registry: RegistryBuilder::new(),
            listeners: Vec::new(),
            http_listeners: Vec::new(),
            spools: BTreeMap::new(),
            logs: None,
            name_servers: None,
            monitor_globs: Vec::new(),
            tasks: Vec::new(),
            log_filter: None,
            bounce_classifier: None,
            redis_throttles: None,
            log_hooks: Vec::new(),
            automation: Vec::new(),
            errors: Vec::new(),
            default_hostname,
        }
    }

    /// An HTTP listener reachable from off this host must be able to
    /// authenticate clients.
    pub fn check_http_auth(&mut self, has_auth_event: bool) {
        for (listener, origin) in &self.http_listeners {
            if !listener.listen.ip().is_loopback() && !has_auth_event {
                self.errors.push(format!(
                    "{origin}: start_http_listener on {} is reachable from other hosts but the policy defines no \
                     http_server_validate_auth_basic or http_server_validate_auth_bearer event",
                    listener.listen
                ));
            }
        }
    }

    pub fn finish(mut self) -> Result<InitConfig, PolicyLoadError> {
        let mut seen: BTreeMap<std::net::SocketAddr, &str> = BTreeMap::new();
        let all = self
            .listeners
            .iter()
            .map(|(l, o)| (l.listen, o))
            .chain(self.http_listeners.iter().map(|(l, o)| (l.listen, o)));
        for (listen, origin) in all {
            if listen.port() == 0 {
                continue; // a kernel-chosen port never collides
            }
            if let Some(first) = seen.insert(listen, origin) {
                self.errors.push(format!("{origin}: listener {listen} is defined twice (first at {first})"));
            }
        }
        let spool = match (self.spools.get("data"), self.spools.get("meta")) {
            (Some((data, data_reserve, _)), meta) => Some((
                SpoolPaths { data: data.clone(), meta: meta.map_or(data, |m| &m.0).clone() },
                petrel_spool::SpoolReserves { data: *data_reserve, meta: meta.map_or(*data_reserve, |m| m.1) },
            )),
            (None, _) => {
                self.errors.push("policy: kumo.define_spool{ name = 'data', path = ... } is required in init".into());
                None
            }
        };
        let registry = match self.registry.build() {
            Ok(registry) => Some(registry),
            Err(errors) => {
                self.errors.extend(errors.iter().map(|e| e.to_string()));
                None
            }
        };
        match (registry, spool) {
            (Some(registry), Some((spool, spool_reserves))) if self.errors.is_empty() => Ok(InitConfig {
                registry: Arc::new(registry),
                listeners: self.listeners.into_iter().map(|(l, _)| l).collect(),
                http_listeners: self.http_listeners.into_iter().map(|(l, _)| l).collect(),
                spool,
                spool_reserves,
                logs: self.logs.map(|(l, _)| l),
                name_servers: self.name_servers.map(|(n, _)| n),
                monitor_globs: self.monitor_globs,
                tasks: self.tasks,
                log_filter: self.log_filter,
                bounce_classifier: self.bounce_classifier.map(|(c, _)| c),
                redis_throttles: self.redis_throttles.map(|(r, _)| r),
                log_hooks: self.log_hooks.into_iter().map(|(h, _)| h).collect(),
                automation: self.automation,
            }),
            _ => Err(PolicyLoadError { errors: self.errors }),
        }
    }
}

/// Run `f` with the init collector, or fail when called outside `init`.
/// Errors are collected rather than raised, so one load reports them all.
pub(crate) fn in_init(lua: &Lua, what: &str, f: impl FnOnce(&mut InitCollector, &str)) -> mlua::Result<()> {
    let location = crate::error::caller_location(lua);
    let Some(mut collector) = lua.app_data_mut::<InitCollector>() else {
        return Err(mlua::Error::runtime(format!("{location}: kumo.{what} may only be called from the init event")));
    };
    f(&mut collector, &location);
    Ok(())
}

pub(crate) fn record<T>(
    lua: &Lua,
    what: &str,
    value: Value,
    apply: impl FnOnce(&mut InitCollector, T, &str) -> Result<(), String>,
) -> mlua::Result<()>
where
    T: DeserializeOwned,
{
    let parsed = crate::options::spec::<T>(lua, what, value);
    in_init(lua, what, |collector, location| {
        let result =
            parsed.and_then(|spec| apply(collector, spec, location).map_err(|e| format!("{location}: {what}: {e}")));
        if let Err(e) = result {
            collector.errors.push(e);
        }
    })
}
