//! What a generation was built from: the policy file, the Lua modules it
//! required, the data files it read through `kumo.*` loaders and the
//! certificate files its listeners use. A reload whose files all read the
//! same as the running generation's is a no-op.

use mlua::{Lua, Table};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Files read through `kumo.json_load` (and later loaders) while a state
/// ran; kept as app data of the state that ran `init`.
#[derive(Default)]
pub(crate) struct DataFiles(pub BTreeSet<PathBuf>);

/// The policy file and data files as the generation first read them.
///
/// Every Lua state of a generation runs the policy's top level again, and
/// helpers read their data files there. Reading them from disk each time
/// would let an edit made before the reload reach some states and not
/// others, and a broken edit stop new states from being built while the
/// running generation is still in force. So each file is read once per
/// generation; the next reload reads the new contents.
#[derive(Default)]
pub(crate) struct FileSnapshot(parking_lot::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<[u8]>>>);

impl FileSnapshot {
    /// `path`'s contents as this generation first read them.
    pub(crate) fn read(&self, path: &Path) -> std::io::Result<std::sync::Arc<[u8]>> {
        if let Some(bytes) = self.0.lock().get(path) {
            return Ok(bytes.clone());
        }
        let bytes: std::sync::Arc<[u8]> = std::fs::read(path)?.into();
        Ok(self.0.lock().entry(path.to_path_buf()).or_insert(bytes).clone())
    }
}

/// Record that `path` was read by a `kumo.*` loader.
pub(crate) fn note_data_file(lua: &Lua, path: &Path) {
    if let Some(mut files) = lua.app_data_mut::<DataFiles>() {
        files.0.insert(path.to_path_buf());
    }
}

/// The files of a generation and a hash of their contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Every file the policy read while loading (the script and what it required or loaded).
    pub files: BTreeSet<PathBuf>,
    /// `kumo.set_config_monitor_globs` patterns: the files they match count
    /// too, including ones that appear later.
    pub globs: Vec<String>,
    /// A hash over their paths and contents.
    pub hash: u64,
}

impl Fingerprint {
    pub(crate) fn of(files: BTreeSet<PathBuf>, globs: Vec<String>) -> Self {
        let hash = Self::hash(&files, &globs);
        Self { files, globs, hash }
    }

    fn hash(files: &BTreeSet<PathBuf>, globs: &[String]) -> u64 {
        let mut all = files.clone();
        all.extend(crate::monitor::eval(globs));
        hash_files(&all)
    }

    /// Whether the same files still read the same (and the globs still
    /// match the same files).
    pub fn unchanged(&self) -> bool {
        Self::hash(&self.files, &self.globs) == self.hash
    }
}

/// The generation's monitor globs, for `kumo.eval_config_monitor_globs`.
#[derive(Default)]
pub(crate) struct MonitorGlobs(pub parking_lot::RwLock<Vec<String>>);

fn hash_files(files: &BTreeSet<PathBuf>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        // A missing file hashes as such, so its return is a change too.
        std::fs::read(file).ok().hash(&mut hasher);
    }
    hasher.finish()
}

/// The files of the Lua modules `require` loaded into `lua`.
pub(crate) fn required_modules(lua: &Lua) -> mlua::Result<BTreeSet<PathBuf>> {
    let package: Table = lua.globals().get("package")?;
    let loaded: Table = package.get("loaded")?;
    let search_path: String = package.get("path")?;
    let searchpath: mlua::Function = package.get("searchpath")?;
    let mut files = BTreeSet::new();
    for pair in loaded.pairs::<String, mlua::Value>() {
        let (name, _) = pair?;
        if let Some(file) = searchpath.call::<Option<String>>((name, search_path.clone()))? {
            files.insert(PathBuf::from(file));
        }
    }
    Ok(files)
}
