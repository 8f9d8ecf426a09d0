//! The ESMTP listener: accepts connections, runs one [`session`] per client,
//! and turns each accepted DATA into one spooled message per recipient. The
//! `250` goes out only after the spool has made every message durable.
//!
//! Policy enters through [`SessionPolicy`]; relay rules, size and recipient
//! limits and the strict DATA framing are enforced here, whatever the policy.

mod config;
mod listener;
mod reception;
mod session;

pub use config::{AcceptAll, ConnMeta, ListenerConfig, PolicyError, SessionPolicy, parse_cidr};
pub use listener::{Listener, ServerHandles};
