//! `kumo.memoize(f, {name, ttl, capacity})`: a function that remembers
//! `f`'s result per set of arguments.
//!
//! The cache belongs to the configuration generation, not to one Lua state:
//! every state of a generation runs the same policy and finds the same
//! cache by `name`, so a lookup done in one event is reused by the next
//! whichever state runs it. A reload builds a new generation and so starts
//! with empty caches. Values cross states as [`Cached`], a plain copy of
//! the Lua value (the objects of `kumo.make_*` included).

use crate::domain_map::DomainMap;
use crate::egress_events::{LuaEgressPool, LuaEgressSource};
use crate::message::{LuaEgressPath, LuaListenerDomain, LuaQueueConfig};
use crate::specs::DurationSpec;
use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, Value};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Lua value detached from its state.
#[derive(Clone)]
pub(crate) enum Cached {
    Nil,
    Bool(bool),
    Int(i64),
    Number(f64),
    Str(Vec<u8>),
    Table(Vec<(Cached, Cached)>),
    QueueConfig(LuaQueueConfig),
    EgressPath(LuaEgressPath),
    ListenerDomain(LuaListenerDomain),
    Source(LuaEgressSource),
    Pool(LuaEgressPool),
    DomainMap(Vec<(String, Cached)>),
}

impl Cached {
    pub(crate) fn from_lua(value: &Value) -> mlua::Result<Self> {
        Ok(match value {
            Value::Nil => Cached::Nil,
            Value::Boolean(b) => Cached::Bool(*b),
            Value::Integer(i) => Cached::Int(*i),
            Value::Number(n) => Cached::Number(*n),
            Value::String(s) => Cached::Str(s.as_bytes().to_vec()),
            Value::Table(t) => {
                let mut entries = Vec::new();
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    entries.push((Cached::from_lua(&k)?, Cached::from_lua(&v)?));
                }
                Cached::Table(entries)
            }
            Value::UserData(ud) => {
                if let Ok(v) = ud.borrow::<LuaQueueConfig>() {
                    Cached::QueueConfig(v.clone())
                } else if let Ok(v) = ud.borrow::<LuaEgressPath>() {
                    Cached::EgressPath(v.clone())
                } else if let Ok(v) = ud.borrow::<LuaListenerDomain>() {
                    Cached::ListenerDomain(v.clone())
                } else if let Ok(v) = ud.borrow::<LuaEgressSource>() {
                    Cached::Source(v.clone())
                } else if let Ok(v) = ud.borrow::<LuaEgressPool>() {
                    Cached::Pool(v.clone())
                } else if let Ok(map) = ud.borrow::<DomainMap>() {
                    let entries = map.entries.iter().map(|(k, v)| Ok((k.clone(), Cached::from_lua(v)?)));
                    Cached::DomainMap(entries.collect::<mlua::Result<_>>()?)
                } else {
                    return Err(mlua::Error::runtime("kumo.memoize: this kind of object cannot be cached"));
                }
            }
            other => {
                return Err(mlua::Error::runtime(format!("kumo.memoize: a {} cannot be cached", other.type_name())));
            }
        })
    }

    pub(crate) fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Cached::Nil => Value::Nil,
            Cached::Bool(b) => Value::Boolean(*b),
            Cached::Int(i) => Value::Integer(*i),
            Cached::Number(n) => Value::Number(*n),
            Cached::Str(s) => Value::String(lua.create_string(s)?),
            Cached::Table(entries) => {
                let table = lua.create_table_with_capacity(0, entries.len())?;
                for (k, v) in entries {
                    table.raw_set(k.to_lua(lua)?, v.to_lua(lua)?)?;
                }
                Value::Table(table)
            }
            Cached::QueueConfig(v) => Value::UserData(lua.create_userdata(v.clone())?),
            Cached::EgressPath(v) => Value::UserData(lua.create_userdata(v.clone())?),
            Cached::ListenerDomain(v) => Value::UserData(lua.create_userdata(v.clone())?),
            Cached::Source(v) => Value::UserData(lua.create_userdata(v.clone())?),
            Cached::Pool(v) => Value::UserData(lua.create_userdata(v.clone())?),
            Cached::DomainMap(entries) => {
                let mut map = DomainMap::default();
                for (k, v) in entries {
                    map.set(k, v.to_lua(lua)?);
                }
                Value::UserData(lua.create_userdata(map)?)
            }
        })
    }
}

struct Entry {
    value: Cached,
    expires: Instant,
}

/// One named cache: argument key → entry, least recently used evicted.
type Cache = Arc<Mutex<lru::LruCache<String, Entry>>>;

/// The caches of one generation, by name.
#[derive(Default)]
pub(crate) struct Caches {
    by_name: Mutex<HashMap<String, Cache>>,
}

impl Caches {
    fn cache(&self, name: &str, capacity: NonZeroUsize) -> Cache {
        self.by_name
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(lru::LruCache::new(capacity))))
            .clone()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoizeSpec {
    name: String,
    ttl: DurationSpec,
    capacity: usize,
    #[serde(default)]
    invalidate_with_epoch: bool,
    populate_timeout: Option<DurationSpec>,
    #[serde(default)]
    retry_on_populate_timeout: bool,
    #[serde(default)]
    allow_stale_reads: bool,
}

/// The cache key: the arguments as JSON (strings, numbers, booleans and
/// tables; a message or other object cannot be a key).
fn key(lua: &Lua, args: &MultiValue) -> mlua::Result<String> {
    let values: Vec<serde_json::Value> = args
        .iter()
        .map(|v| lua.from_value(v.clone()))
        .collect::<mlua::Result<_>>()
        .map_err(|e| mlua::Error::runtime(format!("kumo.memoize: arguments must be plain values: {e}")))?;
    serde_json::to_string(&values).map_err(mlua::Error::external)
}

fn memoize(lua: &Lua, (func, params): (Function, Value)) -> mlua::Result<Function> {
    let spec: MemoizeSpec = lua
        .from_value(params)
        .map_err(|e| mlua::Error::runtime(format!("{}: kumo.memoize: {e}", crate::error::caller_location(lua))))?;
    let ttl = spec.ttl.to_duration("ttl").map_err(mlua::Error::runtime)?;
    let capacity = NonZeroUsize::new(spec.capacity)
        .ok_or_else(|| mlua::Error::runtime("kumo.memoize: capacity must be at least 1"))?;
    let populate_timeout = match &spec.populate_timeout {
        Some(d) => d.to_duration("populate_timeout").map_err(mlua::Error::runtime)?,
        None => Duration::from_secs(120),
    };
    // Each generation has its own caches, so a configuration change always
    // starts afresh: invalidate_with_epoch holds whatever it says.
    let _ = spec.invalidate_with_epoch;
    if spec.allow_stale_reads {
        return Err(mlua::Error::runtime(format!(
            "{}: kumo.memoize: allow_stale_reads is not supported by Petrel yet",
            crate::error::caller_location(lua)
        )));
    }
    let (name, retry) = (spec.name, spec.retry_on_populate_timeout);
    lua.create_async_function(move |lua, args: MultiValue| {
        let (func, name) = (func.clone(), name.clone());
        async move {
            let key = key(&lua, &args)?;
            let caches = lua.app_data_ref::<Arc<Caches>>().map(|c| c.clone());
            let cache = caches.as_ref().map(|c| c.cache(&name, capacity));
            if let Some(cache) = &cache {
                let mut cache = cache.lock();
                match cache.get(&key) {
                    Some(entry) if entry.expires > Instant::now() => return entry.value.to_lua(&lua),
                    Some(_) => {
                        cache.pop(&key);
                    }
                    None => {}
                }
            }
            let value = loop {
                match tokio::time::timeout(populate_timeout, func.call_async::<Value>(args.clone())).await {
                    Ok(result) => break result?,
                    Err(_) if retry => continue,
                    Err(_) => {
                        return Err(mlua::Error::runtime(format!(
                            "kumo.memoize {name}: populating took longer than {populate_timeout:?}"
                        )));
                    }
                }
            };
            if let Some(cache) = &cache {
                let entry = Entry { value: Cached::from_lua(&value)?, expires: Instant::now() + ttl };
                cache.lock().put(key, entry);
            }
            Ok(value)
        }
    })
}

/// Add `kumo.memoize`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    kumo.set("memoize", lua.create_function(memoize)?)
}
