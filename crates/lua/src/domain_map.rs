//! `kumo.domain_map.new{...}`: a table from domain names to values where a
//! `*.example.com` key answers for every name below `example.com` (but not
//! for `example.com` itself), and an exact key wins over a wildcard.

use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value};
use std::collections::HashMap;

/// Keys are kept lower-case: domain names do not care about case.
#[derive(Default, Clone)]
pub(crate) struct DomainMap {
    pub(crate) entries: HashMap<String, Value>,
}

impl DomainMap {
    pub(crate) fn get(&self, domain: &str) -> Option<&Value> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(value) = self.entries.get(&domain) {
            return Some(value);
        }
        // The nearest wildcard above the name: foo.bar.example.com tries
        // *.bar.example.com, then *.example.com, then *.com.
        let mut rest = domain.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(value) = self.entries.get(&format!("*.{parent}")) {
                return Some(value);
            }
            rest = parent;
        }
        None
    }

    pub(crate) fn set(&mut self, key: &str, value: Value) {
        let key = key.trim_end_matches('.').to_ascii_lowercase();
        if value.is_nil() {
            self.entries.remove(&key);
        } else {
            self.entries.insert(key, value);
        }
    }
}

impl UserData for DomainMap {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods
            .add_meta_method(MetaMethod::Index, |_, map, key: String| Ok(map.get(&key).cloned().unwrap_or(Value::Nil)));
        methods.add_meta_method_mut(MetaMethod::NewIndex, |_, map, (key, value): (String, Value)| {
            map.set(&key, value);
            Ok(())
        });
        methods.add_meta_method(MetaMethod::Len, |_, map, ()| Ok(map.entries.len()));
    }
}

fn new(_: &Lua, seed: Option<Table>) -> mlua::Result<DomainMap> {
    let mut map = DomainMap::default();
    if let Some(seed) = seed {
        for pair in seed.pairs::<String, Value>() {
            let (key, value) = pair?;
            map.set(&key, value);
        }
    }
    Ok(map)
}

/// Add `kumo.domain_map`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let module = lua.create_table()?;
    module.set("new", lua.create_function(new)?)?;
    kumo.set("domain_map", module)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_answer_below_their_domain_and_exact_keys_win() {
        crate::run_with(
            super::install,
            r#"
            local dmap = kumo.domain_map.new { ['*.woot.com'] = 123, ['example.com'] = 24 }
            dmap['*.example.com'] = 42
            assert(dmap['lemon.example.com'] == 42)
            assert(dmap['deep.lemon.example.com'] == 42)
            assert(dmap['example.com'] == 24)
            assert(dmap['Example.COM'] == 24)
            assert(dmap['woot.com'] == nil)
            assert(dmap['aa.woot.com'] == 123)
            dmap['explicit.example.com'] = 'explicit'
            assert(dmap['explicit.example.com'] == 'explicit')
            assert(dmap['not.set'] == nil)
            "#,
        )
        .unwrap();
    }
}
