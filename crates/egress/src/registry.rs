//! Definitions and their validation. Each definition remembers where the
//! policy made it (`file:line`), so every error points at the line to fix.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Name of the built-in source and pool, used when nothing else applies.
pub const DEFAULT_NAME: &str = "default";

/// A source IP and EHLO name mail leaves from (Momentum's binding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressSource {
    /// Its name in pools, logs and the API.
    pub name: String,
    /// Bind address; `None` lets the kernel choose (the machine's default).
    pub source_address: Option<IpAddr>,
    /// The EHLO name it greets with (its PTR name, usually).
    pub ehlo_domain: Option<String>,
    /// Overrides the destination port for everything sent from this source.
    pub remote_port: Option<u16>,
    /// Its warm-up plan, while it is a new IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<crate::WarmupPlan>,
}

impl EgressSource {
    /// A source with only a name: the machine's address and host name.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), source_address: None, ehlo_domain: None, remote_port: None, warmup: None }
    }
}

/// One source of a pool and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolEntry {
    /// The source's name.
    pub source: String,
    /// Share of picks; 0 keeps the entry but disables it.
    pub weight: u32,
}

/// Weighted sources a message may leave from (Momentum's binding group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressPool {
    /// Its name, as messages and queue configs name it.
    pub name: String,
    /// Its sources, in policy order.
    pub entries: Vec<PoolEntry>,
    /// What happens to a message whose chosen source is busy.
    pub overflow: Overflow,
}

/// When the source the round-robin picks has a full ready queue (its
/// connections cannot keep up with the site), the message either waits for
/// that source, keeping the pool's split exact, or goes to the next source.
/// Sources that are suspended or whose address does not bind are skipped in
/// both cases: that is availability, not load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Wait for the picked source (the default): weights are a promise.
    #[default]
    Wait,
    /// Give the message to the next source with room.
    Spill,
}

impl Overflow {
    /// From the policy's `overflow = 'wait' | 'spill'`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "wait" => Some(Self::Wait),
            "spill" => Some(Self::Spill),
            _ => None,
        }
    }
}

impl EgressSource {
    /// A source from its policy fields, checking the name and the address.
    pub fn parse(
        name: &str,
        address: Option<&str>,
        ehlo_domain: Option<String>,
        remote_port: Option<u16>,
    ) -> Result<Self, RegistryErrorKind> {
        if !valid_name(name) {
            return Err(RegistryErrorKind::InvalidName { what: "source", name: name.into() });
        }
        let source_address = address
            .map(|a| {
                a.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| RegistryErrorKind::InvalidAddress { source_name: name.into(), address: a.into() })
            })
            .transpose()?;
        Ok(Self { name: name.into(), source_address, ehlo_domain, remote_port, warmup: None })
    }
}

/// A pool's name and weights are usable (its source names are checked
/// where the sources are known).
fn check_pool(name: &str, entries: &[(String, i64)]) -> Result<(), RegistryErrorKind> {
    if !valid_name(name) {
        return Err(RegistryErrorKind::InvalidName { what: "pool", name: name.into() });
    }
    if let Some((source, weight)) = entries.iter().find(|(_, w)| *w < 0) {
        return Err(RegistryErrorKind::NegativeWeight {
            pool: name.into(),
            source_name: source.clone(),
            weight: *weight,
        });
    }
    if entries.iter().all(|(_, w)| *w == 0) {
        return Err(RegistryErrorKind::NoUsableEntry { pool: name.into() });
    }
    Ok(())
}

impl EgressPool {
    /// A pool defined outside the registry (the policy's `get_egress_pool`),
    /// with the same checks; whether its sources exist is decided when
    /// they are looked up.
    pub fn parse(name: &str, entries: Vec<(String, i64)>, overflow: Overflow) -> Result<Self, RegistryErrorKind> {
        check_pool(name, &entries)?;
        let entries = entries
            .into_iter()
            .map(|(source, weight)| PoolEntry { source, weight: u32::try_from(weight).unwrap_or(u32::MAX) })
            .collect();
        Ok(Self { name: name.into(), entries, overflow })
    }

    /// The sum of the weights: the length of one round-robin cycle.
    pub fn total_weight(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.weight)).sum()
    }
}

/// What is wrong with a set of sources and pools.
#[allow(missing_docs)] // the fields are named by the messages
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryErrorKind {
    /// A source or pool name that logs and selectors could not carry.
    #[error("invalid {what} name {name:?}: names must be non-empty, without spaces or colons")]
    InvalidName { what: &'static str, name: String },
    /// A name defined twice.
    #[error("{what} {name:?} is defined twice (first at {first})")]
    Duplicate { what: &'static str, name: String, first: String },
    /// A pool entry naming no defined source.
    #[error("pool {pool:?} names unknown source {source_name:?}")]
    UnknownSource { pool: String, source_name: String },
    /// A weight below zero.
    #[error("pool {pool:?} has a negative weight {weight} for source {source_name:?}")]
    NegativeWeight { pool: String, source_name: String, weight: i64 },
    /// A pool that could never pick a source.
    #[error("pool {pool:?} has no usable entry (no sources, or every weight is 0)")]
    NoUsableEntry { pool: String },
    /// A `source_address` that is not an IP address.
    #[error("source {source_name:?} has an invalid source_address {address:?}")]
    InvalidAddress { source_name: String, address: String },
}

/// A registry error with the policy location it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    /// `file:line` of the definition at fault.
    pub origin: String,
    /// What is wrong.
    pub kind: RegistryErrorKind,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.kind)
    }
}

impl std::error::Error for RegistryError {}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == ':')
}

/// A pool as defined: `(source, weight)` entries, overflow, and its origin.
type PoolDefinition = (Vec<(String, i64)>, Overflow, String);

/// Collects definitions as the policy's `init` makes them.
#[derive(Debug, Default)]
pub struct RegistryBuilder {
    sources: BTreeMap<String, (EgressSource, String)>,
    pools: BTreeMap<String, PoolDefinition>,
}

impl RegistryBuilder {
    /// An empty builder; `build` adds the built-in `default` source and pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// `address` is parsed here so that a bad IP is reported at its line.
    pub fn define_source(
        &mut self,
        name: &str,
        address: Option<&str>,
        ehlo_domain: Option<String>,
        remote_port: Option<u16>,
        origin: &str,
    ) -> Result<(), RegistryError> {
        let err = |kind| RegistryError { origin: origin.to_string(), kind };
        if let Some((_, first)) = self.sources.get(name) {
            return Err(err(RegistryErrorKind::Duplicate { what: "source", name: name.into(), first: first.clone() }));
        }
        let source = EgressSource::parse(name, address, ehlo_domain, remote_port).map_err(err)?;
        self.sources.insert(name.into(), (source, origin.into()));
        Ok(())
    }

    /// Give the source `name` (defined just before) a warm-up plan.
    pub fn set_warmup(&mut self, name: &str, plan: crate::WarmupPlan) {
        if let Some((source, _)) = self.sources.get_mut(name) {
            source.warmup = Some(plan);
        }
    }

    /// Entries are `(source name, weight)`; weights are checked here, source
    /// names at [`build`](Self::build) since a pool may precede its sources.
    pub fn define_pool(
        &mut self,
        name: &str,
        entries: Vec<(String, i64)>,
        overflow: Overflow,
        origin: &str,
    ) -> Result<(), RegistryError> {
        let err = |kind| RegistryError { origin: origin.to_string(), kind };
        if let Some((_, _, first)) = self.pools.get(name) {
            return Err(err(RegistryErrorKind::Duplicate { what: "pool", name: name.into(), first: first.clone() }));
        }
        check_pool(name, &entries).map_err(err)?;
        self.pools.insert(name.into(), (entries, overflow, origin.into()));
        Ok(())
    }

    /// Resolve cross references and add the built-in `default` source and
    /// pool where the policy did not define its own.
    pub fn build(mut self) -> Result<Registry, Vec<RegistryError>> {
        let builtin_default = (!self.sources.contains_key(DEFAULT_NAME), !self.pools.contains_key(DEFAULT_NAME));
        self.sources
            .entry(DEFAULT_NAME.into())
            .or_insert_with(|| (EgressSource::named(DEFAULT_NAME), "built-in".into()));
        self.pools
            .entry(DEFAULT_NAME.into())
            .or_insert_with(|| (vec![(DEFAULT_NAME.into(), 1)], Overflow::default(), "built-in".into()));
        let mut errors = Vec::new();
        let mut pools = BTreeMap::new();
        for (name, (entries, overflow, origin)) in self.pools {
            let mut resolved = Vec::with_capacity(entries.len());
            for (source, weight) in entries {
                if !self.sources.contains_key(&source) {
                    errors.push(RegistryError {
                        origin: origin.clone(),
                        kind: RegistryErrorKind::UnknownSource { pool: name.clone(), source_name: source },
                    });
                    continue;
                }
                let weight = u32::try_from(weight).unwrap_or(u32::MAX);
                resolved.push(PoolEntry { source, weight });
            }
            pools.insert(name.clone(), Arc::new(EgressPool { name, entries: resolved, overflow }));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let sources = self.sources.into_iter().map(|(n, (s, _))| (n, Arc::new(s))).collect();
        Ok(Registry { sources, pools, builtin_default })
    }
}

/// An immutable, validated set of sources and pools. A reload builds a new
/// one; nothing ever mutates a registry in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    sources: BTreeMap<String, Arc<EgressSource>>,
    pools: BTreeMap<String, Arc<EgressPool>>,
    /// Whether `default` is the built-in source / pool (the policy's init
    /// did not define its own), so a late-bound definition may replace it.
    builtin_default: (bool, bool),
}

impl Default for Registry {
    /// Only the built-in `default` source and pool.
    fn default() -> Self {
        RegistryBuilder::new().build().expect("the built-in registry is valid")
    }
}

impl Registry {
    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&Arc<EgressSource>> {
        self.sources.get(name)
    }
    /// A pool by name.
    pub fn pool(&self, name: &str) -> Option<&Arc<EgressPool>> {
        self.pools.get(name)
    }
    /// Whether the `default` source is the built-in one.
    pub fn default_source_is_builtin(&self) -> bool {
        self.builtin_default.0
    }
    /// Whether the `default` pool is the built-in one.
    pub fn default_pool_is_builtin(&self) -> bool {
        self.builtin_default.1
    }
    /// Sources in name order.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<EgressSource>> {
        self.sources.values()
    }
    /// Pools in name order.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<EgressPool>> {
        self.pools.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    #[test]
    fn builds_with_defaults() {
        let mut b = RegistryBuilder::new();
        b.define_source("ip-1", Some("10.0.0.1"), Some("mta1.example".into()), None, "init.lua:3").unwrap();
        b.define_pool("pool", entries(&[("ip-1", 2), (DEFAULT_NAME, 0)]), Overflow::Wait, "init.lua:4").unwrap();
        let reg = b.build().unwrap();
        assert_eq!(reg.source("ip-1").unwrap().source_address, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(reg.pool(DEFAULT_NAME).unwrap().entries[0].source, DEFAULT_NAME);
        assert_eq!(reg.pool("pool").unwrap().total_weight(), 2);
        assert_eq!(Registry::default().sources().count(), 1);
    }

    #[test]
    fn policy_may_redefine_default() {
        let mut b = RegistryBuilder::new();
        b.define_source(DEFAULT_NAME, Some("::1"), None, None, "x:1").unwrap();
        let reg = b.build().unwrap();
        assert!(reg.source(DEFAULT_NAME).unwrap().source_address.unwrap().is_ipv6());
    }

    #[test]
    fn every_error_names_its_origin() {
        let mut b = RegistryBuilder::new();
        let bad_name = b.define_source("has space", None, None, None, "init.lua:1").unwrap_err();
        assert!(bad_name.to_string().starts_with("init.lua:1: invalid source name"));
        assert!(b.define_source("a:b", None, None, None, "init.lua:1").is_err());
        b.define_source("a", None, None, None, "init.lua:2").unwrap();
        let dup = b.define_source("a", None, None, None, "init.lua:3").unwrap_err();
        assert!(dup.to_string().contains("first at init.lua:2"), "{dup}");
        let ip = b.define_source("b", Some("10.0.0.300"), None, None, "init.lua:4").unwrap_err();
        assert!(matches!(ip.kind, RegistryErrorKind::InvalidAddress { .. }));
        let neg = b.define_pool("p", entries(&[("a", -1)]), Overflow::Wait, "init.lua:5").unwrap_err();
        assert!(matches!(neg.kind, RegistryErrorKind::NegativeWeight { .. }));
        let zero = b.define_pool("p", entries(&[("a", 0)]), Overflow::Wait, "init.lua:6").unwrap_err();
        assert!(matches!(zero.kind, RegistryErrorKind::NoUsableEntry { .. }));
        assert!(b.define_pool("empty", vec![], Overflow::Wait, "init.lua:7").is_err());
        b.define_pool("p", entries(&[("ghost", 1)]), Overflow::Wait, "init.lua:8").unwrap();
        let errs = b.build().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].origin, "init.lua:8");
        assert!(errs[0].to_string().contains("unknown source \"ghost\""));
    }
}
