//! Creating a Lua state with the `kumo` module and the policy loaded.

use crate::error::{PolicyLoadError, describe};
use crate::kumo;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use std::path::Path;
use std::time::Instant;

/// Default longest run of one event (see [`LuaSettings`]).
pub const EVENT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How policy states are built (`petrel serve --unrestricted-lua`,
/// `--lua-memory-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LuaSettings {
    /// Give policies Lua's whole standard library (`io`, `os.execute`,
    /// `load`, C modules). Off by default: a policy reads files through
    /// `kumo.*` helpers and cannot run programs.
    pub unrestricted: bool,
    /// Bytes one Lua state may allocate; past it the event fails and the
    /// state is discarded.
    pub memory_limit: usize,
    /// Longest one event may compute or wait; past it the event fails.
    pub event_time_limit: std::time::Duration,
}

impl Default for LuaSettings {
    fn default() -> Self {
        Self { unrestricted: false, memory_limit: 256 * 1024 * 1024, event_time_limit: EVENT_TIME_LIMIT }
    }
}

/// Coroutines each state keeps for reuse: one event runs in a state at a
/// time, and a handler's own `kumo.*` calls that wait use a few more.
const THREAD_POOL: usize = 16;

/// Globals a sandboxed policy does not get: running programs, touching
/// files, loading code that is not Lua source from the policy directory.
const REMOVED_GLOBALS: [&str; 4] = ["dofile", "loadfile", "load", "io"];
const REMOVED_OS: [&str; 6] = ["execute", "exit", "remove", "rename", "tmpname", "setlocale"];

fn sandbox(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    for name in REMOVED_GLOBALS {
        globals.set(name, Value::Nil)?;
    }
    let os: Table = globals.get("os")?;
    for name in REMOVED_OS {
        os.set(name, Value::Nil)?;
    }
    // Bytecode can crash the VM; string.dump is how it is made.
    let string: Table = globals.get("string")?;
    string.set("dump", Value::Nil)?;
    // `require` finds Lua source only: no C modules, no loadlib.
    let package: Table = globals.get("package")?;
    package.set("loadlib", Value::Nil)?;
    package.set("cpath", "")?;
    // Searchers 1 and 2 are the preload table and Lua files on
    // `package.path`; the rest load C libraries.
    let searchers: Table = package.get("searchers")?;
    for index in (3..=searchers.raw_len()).rev() {
        searchers.raw_set(index, Value::Nil)?;
    }
    Ok(())
}

/// When the event running in a state must have finished: set for each
/// call, `None` between calls (and while the policy loads). Inserted into
/// the state at its first call; later calls only write the cell.
pub(crate) struct Deadline(std::cell::Cell<Option<Instant>>);

impl Deadline {
    /// Set (or with `None` clear) the running call's deadline in `lua`.
    pub(crate) fn set(lua: &Lua, deadline: Option<Instant>) {
        match lua.app_data_ref::<Deadline>() {
            Some(cell) => cell.0.set(deadline),
            None => {
                lua.set_app_data(Deadline(std::cell::Cell::new(deadline)));
            }
        }
    }
}

/// The error of an event stopped at its time limit.
pub(crate) const TIME_LIMIT_MESSAGE: &str = "the policy event ran past its time limit and was stopped";

/// Lua code checks the deadline every slice of VM instructions: past it,
/// the call fails; before it, the coroutine yields so the async worker
/// running it serves other tasks before the next slice (cooperative
/// preemption; mlua resumes a hook-yielded call when polled again). Inside
/// a C call (a `table.sort` comparator, a `gsub` callback) Lua cannot
/// yield, and the slice goes on until the call returns or the deadline.
fn install_deadline_hook(lua: &Lua) -> mlua::Result<()> {
    lua.set_global_hook(HookTriggers::default().every_nth_instruction(10_000), |lua, _| {
        match lua.app_data_ref::<Deadline>().and_then(|d| d.0.get()) {
            Some(deadline) if Instant::now() > deadline => Err(mlua::Error::runtime(TIME_LIMIT_MESSAGE)),
            Some(_) => Ok(VmState::Yield),
            None => Ok(VmState::Continue),
        }
    })
}

/// A fresh state that has run the policy's top level (so its handlers are
/// registered) but not its `init` event.
pub(crate) fn new_state(
    path: &Path,
    settings: &LuaSettings,
    shared: &std::sync::Arc<crate::shared::Shared>,
) -> Result<Lua, PolicyLoadError> {
    let code = shared
        .files
        .read(path)
        .map_err(|e| PolicyLoadError::one(format!("{}: cannot read policy: {e}", path.display())))?;
    let setup = |e: mlua::Error| PolicyLoadError::one(format!("cannot set up Lua: {e}"));
    // Every event runs as a coroutine; without a pool mlua builds a new
    // Lua thread for each call and leaves the old one to the collector.
    let options = LuaOptions::default().thread_pool_size(THREAD_POOL);
    let lua = Lua::new_with(StdLib::ALL_SAFE, options).map_err(setup)?;
    if !settings.unrestricted {
        sandbox(&lua).map_err(setup)?;
    }
    lua.set_memory_limit(settings.memory_limit).map_err(setup)?;
    // An event's garbage (its message userdata, strings, tables) dies young;
    // the generational collector frees it without walking the policy's
    // long-lived tables every cycle.
    lua.gc_set_mode(mlua::state::GcMode::Generational(Default::default()));
    shared.install(&lua);
    // Data files read by the policy's top level count as its files too.
    lua.set_app_data(crate::fingerprint::DataFiles::default());
    kumo::install(&lua).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    let kumo_table: Table = lua.globals().get("kumo").map_err(setup)?;
    crate::invoke::install(&lua, &kumo_table).map_err(setup)?;
    install_deadline_hook(&lua).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    add_to_package_path(&lua, path).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    crate::extras::install(&lua).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    lua.load(&code[..])
        .set_name(format!("@{}", path.display()))
        .exec()
        .map_err(|e| PolicyLoadError::one(describe(&e)))?;
    Ok(lua)
}

/// `require` finds modules next to the policy file.
fn add_to_package_path(lua: &Lua, path: &Path) -> mlua::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let package: Table = lua.globals().get("package")?;
    let current: String = package.get("path")?;
    let dir = dir.display();
    package.set("path", format!("{dir}/?.lua;{dir}/?/init.lua;{current}"))
}
