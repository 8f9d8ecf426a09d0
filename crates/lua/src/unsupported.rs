//! KumoMTA functions Petrel does not implement yet fail where the policy
//! names them, saying so: `kumo.digest.sha256` raises "documented by KumoMTA
//! but not supported by Petrel yet" instead of "attempt to call a nil
//! value" at the first message, and `petrel validate` catches it in code
//! that runs at load. Names KumoMTA does not document stay plain nils.

use mlua::{Lua, Table, Value};

/// Give `kumo` and every documented submodule an `__index` that raises for
/// documented names it lacks. Run after every implemented function is set.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    for (module, functions) in crate::documented::FUNCTIONS {
        let table = match module.strip_prefix("kumo.") {
            None => kumo.clone(),
            Some(name) => match kumo.raw_get::<Value>(name)? {
                Value::Table(t) => t,
                _ => {
                    let t = lua.create_table()?;
                    kumo.raw_set(name, t.clone())?;
                    t
                }
            },
        };
        let names: Vec<&'static str> =
            functions.iter().copied().filter(|f| table.raw_get::<Value>(*f).is_ok_and(|v| v.is_nil())).collect();
        if names.is_empty() {
            continue;
        }
        let module = *module;
        let index = lua.create_function(move |_, (_, key): (Table, Value)| {
            if let Value::String(key) = &key
                && let Ok(key) = key.to_str()
                && names.contains(&&*key)
            {
                return Err(mlua::Error::runtime(format!(
                    "{module}.{} is documented by KumoMTA but not supported by Petrel yet",
                    &*key
                )));
            }
            Ok(Value::Nil)
        })?;
        let meta = lua.create_table()?;
        meta.set("__index", index)?;
        table.set_metatable(Some(meta))?;
    }
    Ok(())
}
