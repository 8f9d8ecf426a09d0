//! KumoMTA's late-bound sources and pools: `kumo.make_egress_source` /
//! `kumo.make_egress_pool` and the `get_egress_source` / `get_egress_pool`
//! events, asked for names the init registry does not hold.
//!
//! Answers are kept per configuration generation for their `ttl` (60 s
//! unless the definition says otherwise), so a policy reading a data file
//! or a database is asked again after that, and a reload starts afresh.

use crate::specs::DurationSpec;
use parking_lot::Mutex;
use petrel_egress::{EgressPool, EgressSource, Overflow};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a definition is kept when it names no `ttl` (KumoMTA's default).
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// `kumo.make_egress_source{...}`.
#[derive(Clone)]
pub(crate) struct LuaEgressSource {
    pub source: Arc<EgressSource>,
    pub ttl: Duration,
}

/// `kumo.make_egress_pool{...}`.
#[derive(Clone)]
pub(crate) struct LuaEgressPool {
    pub pool: Arc<EgressPool>,
    pub ttl: Duration,
}

impl mlua::UserData for LuaEgressSource {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("name", |_, s| Ok(s.source.name.clone()));
    }
}

impl mlua::UserData for LuaEgressPool {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("name", |_, p| Ok(p.pool.name.clone()));
    }
}

/// The documented fields of `make_egress_source`; the proxy and automatic
/// suspension options are not in it, so they are refused as "not supported
/// by Petrel" (see `options.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MakeSourceSpec {
    name: String,
    source_address: Option<String>,
    ehlo_domain: Option<String>,
    remote_port: Option<u16>,
    ttl: Option<DurationSpec>,
    /// Petrel's warm-up plan, as for `define_egress_source`.
    warmup: Option<crate::specs::WarmupSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MakePoolEntry {
    name: String,
    weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MakePoolSpec {
    name: String,
    #[serde(default)]
    entries: Vec<MakePoolEntry>,
    ttl: Option<DurationSpec>,
    /// Petrel's: `'wait'` (default) or `'spill'`, as for `define_egress_pool`.
    overflow: Option<String>,
}

fn ttl(spec: &Option<DurationSpec>) -> Result<Duration, String> {
    spec.as_ref().map_or(Ok(DEFAULT_TTL), |d| d.to_duration("ttl"))
}

impl MakeSourceSpec {
    pub(crate) fn build(self) -> Result<LuaEgressSource, String> {
        let ttl = ttl(&self.ttl)?;
        let mut source =
            EgressSource::parse(&self.name, self.source_address.as_deref(), self.ehlo_domain, self.remote_port)
                .map_err(|e| e.to_string())?;
        source.warmup = self.warmup.map(|w| w.plan()).transpose()?;
        Ok(LuaEgressSource { source: Arc::new(source), ttl })
    }
}

impl MakePoolSpec {
    pub(crate) fn build(self) -> Result<LuaEgressPool, String> {
        let ttl = ttl(&self.ttl)?;
        let overflow = match self.overflow.as_deref() {
            None => Overflow::default(),
            Some(text) => {
                Overflow::parse(text).ok_or_else(|| format!("overflow: {text:?} is not 'wait' or 'spill'"))?
            }
        };
        let entries = self.entries.into_iter().map(|e| (e.name, e.weight.unwrap_or(1))).collect();
        let pool = EgressPool::parse(&self.name, entries, overflow).map_err(|e| e.to_string())?;
        Ok(LuaEgressPool { pool: Arc::new(pool), ttl })
    }
}

/// Answers of the events by name, each until it expires. A `None` answer
/// (the handler returned nothing) is kept too, for the default TTL.
pub(crate) struct TtlCache<T> {
    entries: Mutex<HashMap<String, (Option<T>, Instant)>>,
}

impl<T> Default for TtlCache<T> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> TtlCache<T> {
    /// `Some(answer)` while a fresh answer is kept.
    pub(crate) fn get(&self, name: &str) -> Option<Option<T>> {
        let entries = self.entries.lock();
        entries.get(name).filter(|(_, expires)| *expires > Instant::now()).map(|(value, _)| value.clone())
    }

    pub(crate) fn put(&self, name: &str, value: Option<T>, ttl: Duration) {
        self.entries.lock().insert(name.to_string(), (value, Instant::now() + ttl));
    }

    /// Every definition the events have given this generation, fresh or not.
    pub(crate) fn values(&self) -> Vec<T> {
        self.entries.lock().values().filter_map(|(value, _)| value.clone()).collect()
    }
}

/// The late-bound sources and pools of one generation.
#[derive(Default)]
pub(crate) struct EgressCache {
    pub sources: TtlCache<Arc<EgressSource>>,
    pub pools: TtlCache<Arc<EgressPool>>,
}
