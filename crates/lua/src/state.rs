//! Creating a Lua state with the `kumo` module and the policy loaded.

use crate::error::{PolicyLoadError, describe};
use crate::kumo;
use mlua::{HookTriggers, Lua, Table, VmState};
use std::path::Path;
use std::time::Instant;

/// When the event running in a state must have finished; set per call.
pub(crate) struct Deadline(pub Instant);

/// Lua code checks the deadline every so many VM instructions, so a runaway
/// handler fails its call instead of holding a thread (and its state) forever.
fn install_deadline_hook(lua: &Lua) -> mlua::Result<()> {
    lua.set_global_hook(HookTriggers::default().every_nth_instruction(10_000), |lua, _| {
        match lua.app_data_ref::<Deadline>() {
            Some(deadline) if Instant::now() > deadline.0 => {
                Err(mlua::Error::runtime("the policy event ran past its time limit and was stopped"))
            }
            _ => Ok(VmState::Continue),
        }
    })
}

/// A fresh state that has run the policy's top level (so its handlers are
/// registered) but not its `init` event.
pub(crate) fn new_state(path: &Path) -> Result<Lua, PolicyLoadError> {
    let code = std::fs::read(path)
        .map_err(|e| PolicyLoadError::one(format!("{}: cannot read policy: {e}", path.display())))?;
    let lua = Lua::new();
    kumo::install(&lua).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    install_deadline_hook(&lua).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    add_to_package_path(&lua, path).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
    lua.load(code).set_name(format!("@{}", path.display())).exec().map_err(|e| PolicyLoadError::one(describe(&e)))?;
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
