//! `kumo.string`: Rust's string splitting, trimming and replacing, for
//! policies that would otherwise fight Lua patterns; plus the small
//! constants and system facts on `kumo` itself (`version`,
//! `available_parallelism`).

use mlua::{Lua, Table};

fn owned<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<String> {
    parts.map(str::to_string).collect()
}

/// Add `kumo.string` and `kumo.version` / `kumo.available_parallelism`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let s = lua.create_table()?;
    s.set("split", lua.create_function(|_, (t, p): (String, String)| Ok(owned(t.split(p.as_str()))))?)?;
    s.set("rsplit", lua.create_function(|_, (t, p): (String, String)| Ok(owned(t.rsplit(p.as_str()))))?)?;
    s.set("splitn", lua.create_function(|_, (t, n, p): (String, usize, String)| Ok(owned(t.splitn(n, p.as_str()))))?)?;
    s.set(
        "rsplitn",
        lua.create_function(|_, (t, n, p): (String, usize, String)| Ok(owned(t.rsplitn(n, p.as_str()))))?,
    )?;
    s.set("split_whitespace", lua.create_function(|_, t: String| Ok(owned(t.split_whitespace())))?)?;
    s.set("split_ascii_whitespace", lua.create_function(|_, t: String| Ok(owned(t.split_ascii_whitespace())))?)?;
    s.set("trim", lua.create_function(|_, t: String| Ok(t.trim().to_string()))?)?;
    s.set("trim_start", lua.create_function(|_, t: String| Ok(t.trim_start().to_string()))?)?;
    s.set("trim_end", lua.create_function(|_, t: String| Ok(t.trim_end().to_string()))?)?;
    s.set("starts_with", lua.create_function(|_, (t, p): (String, String)| Ok(t.starts_with(p.as_str())))?)?;
    s.set("ends_with", lua.create_function(|_, (t, p): (String, String)| Ok(t.ends_with(p.as_str())))?)?;
    s.set(
        "replace",
        lua.create_function(|_, (t, from, to): (String, String, String)| Ok(t.replace(from.as_str(), &to)))?,
    )?;
    s.set(
        "replacen",
        lua.create_function(|_, (t, from, to, n): (String, String, String, usize)| {
            Ok(t.replacen(from.as_str(), &to, n))
        })?,
    )?;
    kumo.set("string", s)?;
    kumo.set("version", env!("CARGO_PKG_VERSION"))?;
    kumo.set(
        "available_parallelism",
        lua.create_function(|_, ()| Ok(std::thread::available_parallelism().map_or(1, |n| n.get())))?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_trims_and_replaces_like_rust() {
        crate::run_with(
            super::install,
            r#"
            local s = kumo.string
            assert(table.concat(s.split('a,b,,c', ','), '|') == 'a|b||c')
            assert(table.concat(s.splitn('a,b,c', 2, ','), '|') == 'a|b,c')
            assert(table.concat(s.rsplitn('a,b,c', 2, ','), '|') == 'c|a,b')
            assert(table.concat(s.split_whitespace('  a  b '), '|') == 'a|b')
            assert(s.trim('  x ') == 'x' and s.trim_start(' x ') == 'x ' and s.trim_end(' x ') == ' x')
            assert(s.starts_with('hello', 'he') and s.ends_with('hello', 'lo'))
            assert(s.replace('aaa', 'a', 'b') == 'bbb' and s.replacen('aaa', 'a', 'b', 2) == 'bba')
            assert(type(kumo.version) == 'string' and kumo.available_parallelism() >= 1)
            "#,
        )
        .unwrap();
    }
}
