//! `kumo.invoke_get_queue_config`, `invoke_get_egress_path_config`,
//! `invoke_get_egress_pool`, `invoke_get_egress_source`: call the policy's
//! own handler for the event from Lua and hand back the answer in the shape
//! of the matching `kumo.make_*` parameters (so it can be adjusted and
//! passed on). The handler runs in the caller's state and may wait.

use crate::egress_events::{LuaEgressPool, LuaEgressSource, MakePoolSpec, MakeSourceSpec};
use crate::kumo::handler;
use crate::message::{LuaEgressPath, LuaQueueConfig};
use crate::specs::{EgressPathSpec, QueueConfigSpec};
use mlua::{Lua, LuaSerdeExt, MultiValue, Table, Value};
use petrel_delivery::EgressPathConfig;
use petrel_queue::{DeliveryProtocol, QueueConfig};
use petrel_smtp_client::TlsMode;
use serde_json::{Map, Value as Json, json};

fn tls_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Disabled => "Disabled",
        TlsMode::Opportunistic => "Opportunistic",
        TlsMode::OpportunisticInsecure => "OpportunisticInsecure",
        TlsMode::Required => "Required",
        TlsMode::RequiredInsecure => "RequiredInsecure",
    }
}

/// An egress path config as `kumo.make_egress_path` parameters.
pub(crate) fn path_params(p: &EgressPathConfig) -> Json {
    let t = &p.timeouts;
    let mut out = json!({
        "connection_limit": p.connection_limit,
        "max_ready": p.max_ready,
        "max_deliveries_per_connection": p.max_deliveries_per_connection,
        "max_recipients_per_batch": p.max_recipients_per_batch,
        "smtp_port": p.smtp_port,
        "enable_tls": tls_name(p.enable_tls),
        "idle_timeout": p.idle_timeout.as_secs_f64(),
        "connect_timeout": t.connect.as_secs_f64(),
        "banner_timeout": t.banner.as_secs_f64(),
        "ehlo_timeout": t.ehlo.as_secs_f64(),
        "mail_from_timeout": t.mail_from.as_secs_f64(),
        "rcpt_to_timeout": t.rcpt_to.as_secs_f64(),
        "data_timeout": t.data.as_secs_f64(),
        "data_dot_timeout": t.data_dot.as_secs_f64(),
        "prohibited_hosts": p.prohibited_hosts.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "use_lmtp": p.use_lmtp,
    });
    let map = out.as_object_mut().expect("an object");
    if let Some(ehlo) = &p.ehlo_domain {
        map.insert("ehlo_domain".into(), ehlo.clone().into());
    }
    if let Some(rate) = &p.max_message_rate {
        map.insert("max_message_rate".into(), rate.to_string().into());
    }
    if let Some(rate) = &p.max_connection_rate {
        map.insert("max_connection_rate".into(), rate.to_string().into());
    }
    out
}

/// A queue config as `kumo.make_queue_config` parameters.
pub(crate) fn queue_params(q: &QueueConfig) -> Json {
    let mut map = Map::new();
    if let Some(pool) = &q.egress_pool {
        map.insert("egress_pool".into(), pool.clone().into());
    }
    map.insert("retry_interval".into(), q.retry_interval.as_secs_f64().into());
    if let Some(max) = q.max_retry_interval {
        map.insert("max_retry_interval".into(), max.as_secs_f64().into());
    }
    map.insert("max_age".into(), q.max_age.as_secs_f64().into());
    map.insert("generate_bounces".into(), q.generate_bounces.into());
    map.insert("generate_delay_dsn".into(), q.generate_delay_dsn.into());
    map.insert("delay_dsn_retry_interval".into(), q.delay_dsn_retry_interval.as_secs_f64().into());
    if let DeliveryProtocol::CustomLua { constructor, batch_size, batch_timeout } = &q.protocol {
        let mut custom = json!({ "constructor": constructor, "batch_size": batch_size });
        if let Some(t) = batch_timeout {
            custom["batch_timeout"] = t.as_secs_f64().into();
        }
        map.insert("protocol".into(), json!({ "custom_lua": custom }));
    }
    if let Some(list) = q.protocol.mx_list() {
        let entries: Vec<Json> = list
            .iter()
            .map(|e| match &e.addr {
                Some(addr) => json!({ "name": e.name, "addr": addr }),
                None => json!(e.name),
            })
            .collect();
        map.insert("protocol".into(), json!({ "smtp": { "mx_list": entries } }));
    }
    Json::Object(map)
}

/// Run `event`'s handler with `args` in this state; its raw answer.
async fn run(lua: &Lua, event: &str, args: MultiValue) -> mlua::Result<Value> {
    match handler(lua, event)? {
        Some(f) => f.call_async::<Value>(args).await,
        None => Ok(Value::Nil),
    }
}

fn to_lua(lua: &Lua, json: &Json) -> mlua::Result<Value> {
    lua.to_value_with(json, mlua::serde::SerializeOptions::new().serialize_none_to_null(false))
}

async fn invoke_get_queue_config(lua: Lua, args: MultiValue) -> mlua::Result<Value> {
    let answer = run(&lua, "get_queue_config", args).await?;
    let config = crate::message::from_result(&lua, answer, |s: QueueConfigSpec| s.into_config().map(LuaQueueConfig))?
        .map(|c| c.0)
        .unwrap_or_default();
    to_lua(&lua, &queue_params(&config))
}

async fn invoke_get_egress_path_config(lua: Lua, args: MultiValue) -> mlua::Result<Value> {
    let answer = run(&lua, "get_egress_path_config", args).await?;
    let config = crate::message::from_result(&lua, answer, |s: EgressPathSpec| s.into_config().map(LuaEgressPath))?
        .map(|p| p.0)
        .unwrap_or_default();
    to_lua(&lua, &path_params(&config))
}

async fn invoke_get_egress_pool(lua: Lua, name: String) -> mlua::Result<Value> {
    let answer =
        run(&lua, "get_egress_pool", MultiValue::from_vec(vec![Value::String(lua.create_string(&name)?)])).await?;
    match crate::message::from_result(&lua, answer, |s: MakePoolSpec| s.build())? {
        None => Ok(Value::Nil),
        Some(LuaEgressPool { pool, ttl }) => {
            let entries: Vec<Json> =
                pool.entries.iter().map(|e| json!({ "name": e.source, "weight": e.weight })).collect();
            to_lua(&lua, &json!({ "name": pool.name, "entries": entries, "ttl": ttl.as_secs_f64() }))
        }
    }
}

async fn invoke_get_egress_source(lua: Lua, name: String) -> mlua::Result<Value> {
    let answer =
        run(&lua, "get_egress_source", MultiValue::from_vec(vec![Value::String(lua.create_string(&name)?)])).await?;
    match crate::message::from_result(&lua, answer, |s: MakeSourceSpec| s.build())? {
        None => Ok(Value::Nil),
        Some(LuaEgressSource { source, ttl }) => {
            let mut map = Map::new();
            map.insert("name".into(), source.name.clone().into());
            if let Some(ip) = source.source_address {
                map.insert("source_address".into(), ip.to_string().into());
            }
            if let Some(ehlo) = &source.ehlo_domain {
                map.insert("ehlo_domain".into(), ehlo.clone().into());
            }
            if let Some(port) = source.remote_port {
                map.insert("remote_port".into(), port.into());
            }
            map.insert("ttl".into(), ttl.as_secs_f64().into());
            to_lua(&lua, &Json::Object(map))
        }
    }
}

/// Add the four `kumo.invoke_get_*` functions.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    kumo.set("invoke_get_queue_config", lua.create_async_function(invoke_get_queue_config)?)?;
    kumo.set("invoke_get_egress_path_config", lua.create_async_function(invoke_get_egress_path_config)?)?;
    kumo.set("invoke_get_egress_pool", lua.create_async_function(invoke_get_egress_pool)?)?;
    kumo.set("invoke_get_egress_source", lua.create_async_function(invoke_get_egress_source)?)?;
    Ok(())
}
