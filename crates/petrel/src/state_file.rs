//! Small state files kept beside the spool (suspensions, warm-up counts):
//! JSON, written atomically (a reader sees the old file or the new one,
//! never half of one) and synced before they replace the old.

use std::io::Write;
use std::path::Path;

/// Replace `path` with `value` as JSON.
pub(crate) fn save<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The value saved at `path`; `None` when there is none, logged when it
/// cannot be read.
pub(crate) fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read a state file; starting without it");
            None
        }
    }
}
