//! The running policy: generations of loaded configuration, each with its
//! own bounded pool of Lua states, and the policy traits the core calls.

use crate::error::{PolicyLoadError, describe};
use crate::init::{InitCollector, InitConfig};
use crate::kumo::{Rejection, handler};
use crate::message::{LuaConnMeta, LuaEgressPath, LuaMessage, LuaQueueConfig};
use crate::specs::{EgressPathSpec, QueueConfigSpec};
use crate::state::new_state;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use mlua::{Lua, LuaSerdeExt, Value};
use parking_lot::Mutex;
use petrel_delivery::{EgressPathConfig, EgressPolicy, EgressPolicyError};
use petrel_egress::Registry;
use petrel_message::Message;
use petrel_queue::{QueueConfig, QueueKey, QueuePolicy, QueuePolicyError};
use petrel_smtp_server::{ConnMeta, PolicyError, SessionPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One loaded policy: its init result and the Lua states that run its
/// per-message events. States are created on demand up to a bound, so a
/// slow handler makes callers wait rather than grow memory without limit.
pub struct Generation {
    pub number: u64,
    pub path: PathBuf,
    pub config: Arc<InitConfig>,
    idle: Mutex<Vec<Lua>>,
    permits: Semaphore,
}

fn max_states() -> usize {
    std::thread::available_parallelism().map_or(8, |n| n.get() * 4).max(8)
}

impl Generation {
    /// Load the policy in a fresh state and run `init`.
    pub fn load(path: &Path, number: u64, default_hostname: &str) -> Result<Self, PolicyLoadError> {
        let lua = new_state(path)?;
        lua.set_app_data(InitCollector::new(default_hostname.to_string()));
        let init_result = match handler(&lua, "init") {
            Ok(Some(init)) => init.call::<()>(()).map_err(|e| describe(&e)),
            Ok(None) => Err(format!(
                "{}: the policy registers no init event (kumo.on('init', ...))",
                path.display()
            )),
            Err(e) => Err(describe(&e)),
        };
        let collector = lua.remove_app_data::<InitCollector>().expect("set above");
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
        Ok(Self {
            number,
            path: path.to_path_buf(),
            config: Arc::new(config?),
            idle: Mutex::new(vec![lua]),
            permits: Semaphore::new(max_states()),
        })
    }

    /// Run `f` in one of this generation's states.
    async fn call<R>(&self, f: impl FnOnce(&Lua) -> mlua::Result<R>) -> Result<R, mlua::Error> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let lua = match self.idle.lock().pop() {
            Some(lua) => lua,
            None => new_state(&self.path).map_err(|e| mlua::Error::runtime(e.to_string()))?,
        };
        let result = f(&lua);
        self.idle.lock().push(lua);
        result
    }
}

/// The policy as the core sees it. A reload swaps in a new [`Generation`];
/// every call reads the current one once and uses only it.
pub struct PolicyEngine {
    current: ArcSwap<Generation>,
}

impl PolicyEngine {
    pub fn load(path: &Path, default_hostname: &str) -> Result<Self, PolicyLoadError> {
        let generation = Generation::load(path, 1, default_hostname)?;
        Ok(Self {
            current: ArcSwap::from_pointee(generation),
        })
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }
}

#[async_trait]
impl SessionPolicy for PolicyEngine {
    async fn message_received(&self, message: &mut Message, conn: &ConnMeta) -> Result<(), PolicyError> {
        let generation = self.current();
        let result = generation
            .call(|lua| {
                let Some(func) = handler(lua, "smtp_server_message_received")? else {
                    return Ok(None);
                };
                let conn = match serde_json::to_value(conn).expect("serializable") {
                    serde_json::Value::Object(map) => map,
                    _ => unreachable!("ConnMeta is a struct"),
                };
                let msg = lua.create_userdata(LuaMessage(message.clone()))?;
                func.call::<()>((msg.clone(), LuaConnMeta(conn)))?;
                Ok(Some(msg.take::<LuaMessage>()?.0))
            })
            .await;
        match result {
            Ok(Some(edited)) => {
                *message = edited;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => match e.downcast_ref::<Rejection>() {
                Some(r) => Err(PolicyError::Reject {
                    code: r.code,
                    text: r.text.clone(),
                }),
                None => Err(PolicyError::Failed(describe(&e))),
            },
        }
    }
}

/// An event result that is either our userdata or a plain table.
fn from_result<T: 'static + Clone, S: serde::de::DeserializeOwned>(
    lua: &Lua,
    value: Value,
    parse: impl FnOnce(S) -> Result<T, String>,
) -> mlua::Result<Option<T>> {
    match value {
        Value::Nil => Ok(None),
        Value::UserData(ud) => Ok(Some(ud.borrow::<T>()?.clone())),
        table @ Value::Table(_) => {
            let spec: S = lua.from_value(table)?;
            parse(spec).map(Some).map_err(mlua::Error::runtime)
        }
        other => Err(mlua::Error::runtime(format!(
            "expected a config object, got {}",
            other.type_name()
        ))),
    }
}

#[async_trait]
impl QueuePolicy for PolicyEngine {
    async fn queue_config(&self, key: &QueueKey) -> Result<QueueConfig, QueuePolicyError> {
        let generation = self.current();
        generation
            .call(|lua| {
                let Some(func) = handler(lua, "get_queue_config")? else {
                    return Ok(None);
                };
                let args = (
                    key.domain.clone(),
                    key.tenant.clone(),
                    key.campaign.clone(),
                    key.routing_domain.clone(),
                );
                let value: Value = func.call(args)?;
                from_result(lua, value, |s: QueueConfigSpec| s.into_config().map(LuaQueueConfig))
            })
            .await
            .map(|c| c.map(|c| c.0).unwrap_or_default())
            .map_err(|e| QueuePolicyError(format!("get_queue_config: {}", describe(&e))))
    }
}

#[async_trait]
impl EgressPolicy for PolicyEngine {
    fn registry(&self) -> Arc<Registry> {
        self.current.load().config.registry.clone()
    }

    async fn egress_path_config(
        &self,
        routing_domain: &str,
        source: &str,
        site: &str,
    ) -> Result<EgressPathConfig, EgressPolicyError> {
        let generation = self.current();
        generation
            .call(|lua| {
                let Some(func) = handler(lua, "get_egress_path_config")? else {
                    return Ok(None);
                };
                let value: Value = func.call((routing_domain, source, site))?;
                from_result(lua, value, |s: EgressPathSpec| s.into_config().map(LuaEgressPath))
            })
            .await
            .map(|p| p.map(|p| p.0).unwrap_or_default())
            .map_err(|e| EgressPolicyError(format!("get_egress_path_config: {}", describe(&e))))
    }
}
