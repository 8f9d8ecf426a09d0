//! `kumo.fs.glob`, `uncached_glob`, `read_dir` (and their older names on
//! `kumo`): listing files, which a sandboxed policy cannot do through Lua's
//! `io`. Listing only: reading goes through the `kumo.*_load` functions.

use mlua::{Lua, Table};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Glob results kept for their ttl, per generation.
#[derive(Default)]
pub(crate) struct GlobCache(crate::egress_events::TtlCache<Vec<String>>);

fn listed(paths: impl IntoIterator<Item = PathBuf>, relative_to: &Path) -> mlua::Result<Vec<String>> {
    paths
        .into_iter()
        .map(|p| {
            let shown = p.strip_prefix(relative_to).unwrap_or(&p);
            shown
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| mlua::Error::runtime(format!("{} is not valid UTF-8", p.display())))
        })
        .collect()
}

fn glob_now(pattern: &str, relative_to: Option<&str>) -> mlua::Result<Vec<String>> {
    crate::monitor::check(pattern).map_err(|e| mlua::Error::runtime(format!("kumo.fs.glob: {e}")))?;
    let relative_to = relative_to.unwrap_or(".");
    // A relative pattern is relative to `relative_to`, as KumoMTA reads it.
    let full = if Path::new(pattern).is_absolute() {
        pattern.to_string()
    } else {
        Path::new(relative_to).join(pattern).display().to_string()
    };
    listed(crate::monitor::eval(std::slice::from_ref(&full)), Path::new(relative_to))
}

fn glob(lua: &Lua, (pattern, relative_to, ttl): (String, Option<String>, Option<f64>)) -> mlua::Result<Vec<String>> {
    let key = format!("{pattern}\0{}", relative_to.as_deref().unwrap_or("."));
    let cache = lua.app_data_ref::<Arc<GlobCache>>().map(|c| c.clone());
    if let Some(hit) = cache.as_ref().and_then(|c| c.0.get(&key)).flatten() {
        return Ok(hit);
    }
    let found = glob_now(&pattern, relative_to.as_deref())?;
    if let Some(cache) = cache {
        let ttl = Duration::from_secs_f64(ttl.unwrap_or(60.0).max(0.0));
        cache.0.put(&key, Some(found.clone()), ttl);
    }
    Ok(found)
}

fn uncached_glob(_: &Lua, (pattern, relative_to): (String, Option<String>)) -> mlua::Result<Vec<String>> {
    glob_now(&pattern, relative_to.as_deref())
}

fn read_dir(_: &Lua, path: String) -> mlua::Result<Vec<String>> {
    let entries =
        std::fs::read_dir(&path).map_err(|e| mlua::Error::runtime(format!("kumo.fs.read_dir {path}: {e}")))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let absolute: Vec<PathBuf> = paths.into_iter().map(|p| std::path::absolute(&p).unwrap_or(p)).collect();
    listed(absolute, Path::new(""))
}

/// Add `kumo.fs` and the older `kumo.glob`, `kumo.uncached_glob`, `kumo.read_dir`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let fs = lua.create_table()?;
    fs.set("glob", lua.create_function(glob)?)?;
    fs.set("uncached_glob", lua.create_function(uncached_glob)?)?;
    fs.set("read_dir", lua.create_function(read_dir)?)?;
    for name in ["glob", "uncached_glob", "read_dir"] {
        kumo.set(name, fs.get::<mlua::Function>(name)?)?;
    }
    kumo.set("fs", fs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys/a.example")).unwrap();
        std::fs::write(dir.path().join("keys/a.example/s1.key"), "x").unwrap();
        std::fs::write(dir.path().join("keys/b.txt"), "x").unwrap();
        let lua = mlua::Lua::new();
        let kumo = lua.create_table().unwrap();
        super::install(&lua, &kumo).unwrap();
        lua.globals().set("kumo", kumo).unwrap();
        lua.globals().set("DIR", dir.path().display().to_string()).unwrap();
        lua.load(
            r#"
            local found = kumo.fs.glob('keys/**/*.key', DIR)
            assert(#found == 1 and found[1] == 'keys/a.example/s1.key', table.concat(found, ','))
            local abs = kumo.glob(DIR .. '/keys/*.txt')
            assert(#abs == 1 and abs[1]:sub(-10) == 'keys/b.txt', table.concat(abs, ','))
            local entries = kumo.fs.read_dir(DIR .. '/keys')
            assert(#entries == 2 and entries[1]:sub(1, 1) == '/', table.concat(entries, ','))
            assert(not pcall(kumo.fs.read_dir, DIR .. '/missing'))
            "#,
        )
        .exec()
        .unwrap();
    }
}
