//! `kumo.set_config_monitor_globs` / `kumo.eval_config_monitor_globs`:
//! extra files (beyond the policy, its modules and the data files it read)
//! whose change makes a reload take effect, named by glob patterns such as
//! `/etc/petrel/**/*.{lua,json,toml,yaml}`.

use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The directory a pattern's matches live under: its longest leading part
/// without glob syntax (`/etc/petrel/**/*.toml` → `/etc/petrel`).
pub fn base_dir(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for part in Path::new(pattern).components() {
        let text = part.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(part);
    }
    if base.as_os_str().is_empty() { PathBuf::from(".") } else { base }
}

/// A pattern, checked; the error says what is wrong with it.
pub(crate) fn check(pattern: &str) -> Result<(), String> {
    Glob::new(pattern).map(|_| ()).map_err(|e| format!("{pattern:?}: {e}"))
}

fn set(patterns: &[String]) -> Option<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).ok()?);
    }
    builder.build().ok()
}

/// Whether `path` matches one of `patterns`.
pub fn matches(patterns: &[String], path: &Path) -> bool {
    set(patterns).is_some_and(|s| s.is_match(path))
}

/// Every existing file matching one of `patterns`, sorted.
pub fn eval(patterns: &[String]) -> BTreeSet<PathBuf> {
    let Some(globs) = set(patterns) else { return BTreeSet::new() };
    let mut out = BTreeSet::new();
    let bases: BTreeSet<PathBuf> = patterns.iter().map(|p| base_dir(p)).collect();
    for base in bases {
        for entry in walkdir::WalkDir::new(&base).follow_links(true).into_iter().flatten() {
            if entry.file_type().is_file() && globs.is_match(entry.path()) {
                out.insert(entry.path().to_path_buf());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_find_files_below_their_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        for f in ["a/one.toml", "a/b/two.json", "a/b/skip.txt", "three.lua"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let pattern = format!("{}/**/*.{{lua,json,toml}}", dir.path().display());
        assert_eq!(base_dir(&pattern), dir.path());
        let found: Vec<String> = eval(std::slice::from_ref(&pattern))
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a/b/two.json", "a/one.toml", "three.lua"]);
        assert!(matches(&[pattern], &dir.path().join("new/x.toml")));
        assert!(check("/etc/[oops").is_err());
    }
}
