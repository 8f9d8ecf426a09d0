//! Delivery: turns due messages into SMTP transactions.
//!
//! The [`Dispatcher`] takes each due message, resolves its egress pool
//! (message meta, else queue config, else `default`), lets the message's
//! scheduled queue pick a source by weighted round-robin, and appends it to
//! the ready queue for that `source->site`. Each ready queue runs up to
//! `connection_limit` connections from its source, reusing them across
//! messages, and reports every outcome: delivered, retry, or bounce.

pub mod automation;
mod batch;
mod context;
mod custom;
mod dispatcher;
mod explain;
mod health;
mod outcome;
mod path;
mod ready;
mod route;
mod selector;
mod warmup;

pub use context::{Connector, DispatcherHandles, Settlement};
pub use dispatcher::{Dispatcher, ReadySummary};
pub use path::{
    CustomOutcome, EgressPathConfig, EgressPolicy, EgressPolicyError, FixedEgressPolicy, default_prohibited_hosts,
};
pub use petrel_throttle::{Limiter, ThrottleSpec};
pub use route::{HostRoute, PoolChoice, Route, RouteDestination, choose_pool, ehlo_name};
pub use warmup::{WarmupCount, WarmupUse};
