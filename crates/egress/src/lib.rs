//! Egress sources (a source IP and EHLO name: Momentum's bindings), egress
//! pools (weighted groups of sources: binding groups), the validated registry
//! a policy builds, and the smooth weighted round-robin selector. Pure logic,
//! no I/O: the policy layer fills a [`RegistryBuilder`], the delivery layer
//! picks sources with a [`Wrr`].

mod registry;
mod warmup;
mod wrr;

pub use registry::{
    DEFAULT_NAME, EgressPool, EgressSource, Overflow, PoolEntry, Registry, RegistryBuilder, RegistryError,
    RegistryErrorKind,
};
pub use warmup::WarmupPlan;
pub use wrr::Wrr;
