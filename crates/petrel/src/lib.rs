//! The Petrel daemon as a library: [`Daemon::start`] loads the policy, opens
//! the spool, re-queues what it holds, and starts delivery and listeners;
//! it returns the addresses really bound, so tests run it in-process on
//! port 0. The `petrel` binary is a thin command line over this.

mod admin;
mod automation;
pub mod cli;
mod console;
mod daemon;
mod error;
mod host;
mod listeners;
pub mod momentum;
mod reload;
mod state_file;
mod status;
mod suspensions;

pub use daemon::{Controls, Daemon, DaemonError, DaemonOptions, system_hostname};
pub use petrel_http_api::ReloadOutcome;
pub use petrel_lua::LuaSettings;
pub use petrel_queue::{QueueFilter, RebindTarget};
pub use reload::Reloader;
