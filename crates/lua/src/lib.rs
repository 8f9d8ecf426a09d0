//! The embedded Lua policy (Lua 5.4 through mlua) and its `kumo` module.
//!
//! Loading a policy runs the script in a fresh Lua state, fires its `init`
//! event, and collects what `init` defined (egress sources and pools,
//! listeners, spools, logs) into an [`InitConfig`], validated as a whole:
//! every problem is reported with the policy file and line it came from.
//!
//! At run time [`PolicyEngine`] answers the core's questions through the
//! traits the core owns (`SessionPolicy`, `QueuePolicy`, `EgressPolicy`),
//! calling the script's event handlers in a bounded pool of Lua states. This
//! is the only crate that knows Lua exists.

mod automation;
mod cidr_map;
mod codec;
mod custom_lua;
mod dkim;
mod dns;
mod documented;
mod domain_map;
mod egress_events;
mod engine;
mod error;
mod event_names;
mod events;
mod extras;
mod fingerprint;
mod fs;
mod http;
mod init;
mod invoke;
mod kumo;
mod memoize;
mod message;
mod message_headers;
pub mod monitor;
mod options;
mod regex;
mod serde_fns;
mod shared;
mod specs;
mod state;
mod string_fns;
mod throttle;
mod time;
mod unsupported;

pub use engine::{Generation, PolicyEngine};
pub use error::PolicyLoadError;
pub use fingerprint::Fingerprint;
pub use init::InitConfig;
pub use init::RedisThrottles;
pub use state::LuaSettings;

/// The `kumo` functions KumoMTA's reference documents, by module (`kumo`,
/// `kumo.dns`, …), generated from that reference.
pub fn kumomta_functions() -> &'static [(&'static str, &'static [&'static str])] {
    documented::FUNCTIONS
}

/// The events Petrel raises (a policy may register handlers for them).
pub fn raised_events() -> &'static [&'static str] {
    &event_names::IMPLEMENTED
}

/// Run `code` in a bare Lua state whose `kumo` holds only what `install`
/// adds: the unit tests of one `kumo` module.
#[cfg(test)]
pub(crate) fn run_with(install: fn(&mlua::Lua, &mlua::Table) -> mlua::Result<()>, code: &str) -> mlua::Result<()> {
    let lua = mlua::Lua::new();
    let kumo = lua.create_table()?;
    install(&lua, &kumo)?;
    lua.globals().set("kumo", kumo)?;
    lua.load(code).exec()
}
