//! Creating a Lua state with the `kumo` module and the policy loaded.

use crate::error::{PolicyLoadError, describe};
use crate::kumo;
use mlua::{Lua, Table};
use std::path::Path;

/// A fresh state that has run the policy's top level (so its handlers are
/// registered) but not its `init` event.
pub(crate) fn new_state(path: &Path) -> Result<Lua, PolicyLoadError> {
    let code = std::fs::read(path)
        .map_err(|e| PolicyLoadError::one(format!("{}: cannot read policy: {e}", path.display())))?;
    let lua = Lua::new();
    kumo::install(&lua).map_err(|e| PolicyLoadError::one(format!("cannot set up Lua: {e}")))?;
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
