//! What the Lua states of one generation share: `kumo.memoize` caches, the
//! late-bound sources and pools, and the engine's DNS resolver. Every state
//! gets the parts its functions use as app data; a reload's new generation
//! brings new caches (the resolver slot is the engine's, so it carries over).

use crate::dns::DnsSlot;
use crate::egress_events::EgressCache;
use crate::memoize::Caches;
use std::sync::Arc;

pub(crate) struct Shared {
    pub memo: Arc<Caches>,
    pub egress: EgressCache,
    pub dns: Arc<DnsSlot>,
    /// The policy and data files as this generation read them.
    pub files: Arc<crate::fingerprint::FileSnapshot>,
    /// `kumo.set_config_monitor_globs` of this generation's init.
    pub monitor: Arc<crate::fingerprint::MonitorGlobs>,
    /// `kumo.bump_config_epoch`'s signal, the engine's.
    pub epoch: Arc<crate::kumo::EpochSignal>,
    /// `kumo.fs.glob` results kept for their ttl.
    pub globs: Arc<crate::fs::GlobCache>,
    /// DKIM signers built by this generation.
    pub dkim: Arc<crate::dkim::SignerCache>,
    /// The diagnostic log filter, the engine's.
    pub log_filter: Arc<crate::kumo::LogFilterSlot>,
    /// `kumo.make_throttle`'s limits, the engine's (and delivery's).
    pub limits: Arc<petrel_throttle::Limiter>,
}

impl Shared {
    pub(crate) fn new(links: &EngineLinks) -> Arc<Self> {
        Arc::new(Self {
            memo: Arc::default(),
            egress: EgressCache::default(),
            dns: links.dns.clone(),
            files: Arc::default(),
            monitor: Arc::default(),
            epoch: links.epoch.clone(),
            globs: Arc::default(),
            dkim: Arc::default(),
            log_filter: links.log_filter.clone(),
            limits: links.limits.clone(),
        })
    }

    /// Hand a state the parts its `kumo.*` functions look up.
    pub(crate) fn install(&self, lua: &mlua::Lua) {
        lua.set_app_data(self.memo.clone());
        lua.set_app_data(self.dns.clone());
        lua.set_app_data(self.files.clone());
        lua.set_app_data(self.monitor.clone());
        lua.set_app_data(self.epoch.clone());
        lua.set_app_data(self.globs.clone());
        lua.set_app_data(self.dkim.clone());
        lua.set_app_data(self.log_filter.clone());
        lua.set_app_data(self.limits.clone());
    }
}

/// The engine's handles that outlive a generation: the resolver
/// `kumo.dns.*` uses, `kumo.bump_config_epoch`'s signal, the log filter,
/// the limiter (its counters and Redis connection survive a reload).
#[derive(Default)]
pub(crate) struct EngineLinks {
    pub dns: Arc<DnsSlot>,
    pub epoch: Arc<crate::kumo::EpochSignal>,
    pub log_filter: Arc<crate::kumo::LogFilterSlot>,
    pub limits: Arc<petrel_throttle::Limiter>,
}
