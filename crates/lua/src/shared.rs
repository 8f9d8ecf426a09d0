//! What the Lua states of one generation share: `kumo.memoize` caches, the
//! late-bound sources and pools, and the engine's DNS resolver. Every state
//! finds it in its app data; a reload's new generation brings a new one
//! (the resolver slot is the engine's, so it carries over).

use crate::dns::DnsSlot;
use crate::egress_events::EgressCache;
use crate::memoize::Caches;
use std::sync::Arc;

pub(crate) struct Shared {
    pub memo: Caches,
    pub egress: EgressCache,
    pub dns: Arc<DnsSlot>,
}

impl Shared {
    pub(crate) fn new(dns: Arc<DnsSlot>) -> Arc<Self> {
        Arc::new(Self { memo: Caches::default(), egress: EgressCache::default(), dns })
    }
}
