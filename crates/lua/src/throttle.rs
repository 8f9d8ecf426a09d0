//! `kumo.configure_redis_throttles` (init: where shared limits live) and
//! `kumo.make_throttle` (named GCRA throttles for policies). A throttle's
//! waiting yields, so a paced policy never blocks a runtime worker.

use crate::init::{RedisThrottles, record};
use crate::specs::DurationSpec;
use mlua::{Lua, UserData, UserDataMethods, Value};
use petrel_throttle::{Limiter, RedisConfig, ThrottleSpec};
use serde::Deserialize;
use std::sync::Arc;

/// One Redis URL or a list of cluster nodes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Nodes {
    One(String),
    Many(Vec<String>),
}

/// `kumo.configure_redis_throttles`'s table: redis.open's parameters and
/// Petrel's `node_count`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisThrottlesSpec {
    node: Nodes,
    cluster: Option<bool>,
    username: Option<String>,
    password: Option<String>,
    connect_timeout: Option<DurationSpec>,
    response_timeout: Option<DurationSpec>,
    read_from_replicas: Option<bool>,
    pool_size: Option<u32>,
    wait_timeout: Option<DurationSpec>,
    recycle_timeout: Option<DurationSpec>,
    /// Petrel: how many nodes share the limits (each takes its share when
    /// Redis is unreachable).
    node_count: Option<u32>,
}

impl RedisThrottlesSpec {
    fn into_config(self) -> Result<RedisThrottles, String> {
        if self.read_from_replicas == Some(true) {
            return Err("read_from_replicas is documented by KumoMTA but not supported by Petrel yet".into());
        }
        let defaults = RedisConfig::default();
        let mut config = RedisConfig {
            nodes: match self.node {
                Nodes::One(url) => vec![url],
                Nodes::Many(urls) => urls,
            },
            cluster: self.cluster,
            username: self.username,
            password: self.password,
            node_count: self.node_count.unwrap_or(1),
            ..defaults
        };
        if config.node_count == 0 {
            return Err("node_count must be at least 1".into());
        }
        if let Some(t) = self.connect_timeout {
            config.connect_timeout = t.to_duration("connect_timeout")?;
        }
        if let Some(t) = self.response_timeout {
            config.response_timeout = t.to_duration("response_timeout")?;
        }
        config.check()?;
        let mut notes = Vec::new();
        for (name, given) in [
            ("pool_size", self.pool_size.is_some()),
            ("wait_timeout", self.wait_timeout.is_some()),
            ("recycle_timeout", self.recycle_timeout.is_some()),
        ] {
            if given {
                notes.push(format!("{name} has no effect: Petrel keeps one multiplexed connection, not a pool"));
            }
        }
        Ok(RedisThrottles { config, notes })
    }
}

fn configure_redis_throttles(lua: &Lua, value: Value) -> mlua::Result<()> {
    record(lua, "configure_redis_throttles", value, |c, spec: RedisThrottlesSpec, loc| {
        if let Some((_, first)) = &c.redis_throttles {
            return Err(format!("redis throttles are configured twice (first at {first})"));
        }
        c.redis_throttles = Some((spec.into_config()?, loc.to_string()));
        Ok(())
    })
}

/// A named throttle; every object with the same name counts against the
/// same limit (on every node, with Redis configured).
struct LuaThrottle {
    name: String,
    spec: ThrottleSpec,
    limits: Arc<Limiter>,
}

fn limiter(lua: &Lua) -> mlua::Result<Arc<Limiter>> {
    lua.app_data_ref::<Arc<Limiter>>()
        .map(|l| l.clone())
        .ok_or_else(|| mlua::Error::runtime("kumo.make_throttle is not available in this context"))
}

fn make_throttle(lua: &Lua, (name, spec): (String, String)) -> mlua::Result<LuaThrottle> {
    let location = crate::error::caller_location(lua);
    let spec =
        ThrottleSpec::parse(&spec).map_err(|e| mlua::Error::runtime(format!("{location}: kumo.make_throttle: {e}")))?;
    Ok(LuaThrottle { name: format!("throttle:{name}"), spec, limits: limiter(lua)? })
}

impl UserData for LuaThrottle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("sleep_if_throttled", |_, this, ()| async move {
            let wait = this.limits.reserve(&this.name, &this.spec).await;
            if wait.is_zero() {
                return Ok(false);
            }
            tokio::time::sleep(wait).await;
            Ok(true)
        });
        methods.add_async_method("throttle", |lua, this, ()| async move {
            let r = this.limits.check(&this.name, &this.spec).await;
            let out = lua.create_table()?;
            out.set("throttled", r.throttled)?;
            out.set("limit", r.limit)?;
            out.set("remaining", r.remaining)?;
            out.set("reset_after", r.reset_after.as_secs_f64())?;
            out.set("retry_after", r.retry_after.map(|d| d.as_secs_f64()))?;
            Ok(out)
        });
        methods.add_method("delay_message_if_throttled", |_, _, _msg: Value| -> mlua::Result<()> {
            Err(mlua::Error::runtime(
                "throttle:delay_message_if_throttled belongs to the throttle_insert_ready_queue event, which is \
                 documented by KumoMTA but not supported by Petrel yet",
            ))
        });
    }
}

/// Add the two functions to the `kumo` table.
pub(crate) fn install(lua: &Lua, kumo: &mlua::Table) -> mlua::Result<()> {
    kumo.set("configure_redis_throttles", lua.create_function(configure_redis_throttles)?)?;
    kumo.set("make_throttle", lua.create_function(make_throttle)?)?;
    Ok(())
}
