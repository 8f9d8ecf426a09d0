//! Petrel's own `policy-extras` modules (`require 'policy-extras.sources'`
//! and the rest), built into the binary from `policy/policy-extras/`.
//!
//! They are found after the policy's own directory and `package.path`, so
//! a copy of a module next to the policy (as KumoMTA users keep edited
//! helpers) wins over the shipped one.

use mlua::{Lua, Table, Value};

/// `(module name, source)` of every shipped helper.
const MODULES: [(&str, &str); 8] = [
    ("policy-extras.policy_utils", include_str!("../../../policy/policy-extras/policy_utils.lua")),
    ("policy-extras.sources", include_str!("../../../policy/policy-extras/sources.lua")),
    ("policy-extras.queue", include_str!("../../../policy/policy-extras/queue.lua")),
    ("policy-extras.listener_domains", include_str!("../../../policy/policy-extras/listener_domains.lua")),
    ("policy-extras.shaping", include_str!("../../../policy/policy-extras/shaping.lua")),
    ("policy-extras.rollup", include_str!("../../../policy/policy-extras/rollup.lua")),
    ("policy-extras.dkim_sign", include_str!("../../../policy/policy-extras/dkim_sign.lua")),
    ("policy-extras.log_hooks", include_str!("../../../policy/policy-extras/log_hooks.lua")),
];

/// Append the searcher for shipped modules to `package.searchers`.
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    let searchers: Table = package.get("searchers")?;
    let searcher = lua.create_function(|lua, name: String| {
        if let Some((_, code)) = MODULES.iter().find(|(module, _)| *module == name) {
            let chunk = format!("@[petrel]/{}.lua", name.replace('.', "/"));
            let loader = lua.load(*code).set_name(chunk).into_function()?;
            return Ok((Value::Function(loader), Value::Nil));
        }
        let why = format!("\n\tno module '{name}' shipped with Petrel");
        Ok((Value::String(lua.create_string(why)?), Value::Nil))
    })?;
    searchers.raw_set(searchers.raw_len() + 1, searcher)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_module_compiles() {
        let lua = mlua::Lua::new();
        for (name, code) in super::MODULES {
            lua.load(code).set_name(name).into_function().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
