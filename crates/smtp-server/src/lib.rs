//! The ESMTP listener: accepts connections, runs one session per client,
//! and turns each accepted DATA into one spooled message per recipient. The
//! `250` goes out only after the spool has made every message durable.
//!
//! Policy enters through [`SessionPolicy`]; relay rules, size and recipient
//! limits and the strict DATA framing are enforced here, whatever the policy.

mod auth;
mod config;
mod io;
mod listener;
mod peers;
mod reception;
mod replies;
mod session;
mod tls;
mod verbs;

pub use config::{
    AcceptAll, ConnMeta, ListenerConfig, ListenerDomain, PolicyError, ReportHandling, ServerHandles, SessionPolicy,
    parse_cidr,
};
pub use listener::{Listener, Prepared};
