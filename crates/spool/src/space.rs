//! The free-space reserve (`min_free_space`, `min_free_inodes`): new mail is
//! refused while the spool's filesystem has less free than this, so the
//! disk never fills under RocksDB in normal operation and deliveries, which
//! free space, keep working.

use std::path::Path;

/// An amount of free space or inodes to keep: a share of the filesystem's
/// total, or an absolute count (bytes or inodes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A share of the filesystem, in percent.
    Percent(f64),
    /// A number of bytes or inodes.
    Absolute(u64),
}

impl Threshold {
    /// `"10%"`, or a whole number of bytes (inodes).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(Threshold::Percent(v)),
                _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
            }
        } else {
            text.parse::<u64>().map(Threshold::Absolute).map_err(|_| format!("{text:?} is neither \"N%\" nor a count"))
        }
    }

    fn required(&self, total: u64) -> u64 {
        match *self {
            Threshold::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
            Threshold::Absolute(n) => n,
        }
    }
}

/// What `kumo.define_spool` asks to keep free. KumoMTA's defaults: 10 % each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageReserve {
    /// `min_free_space`.
    pub min_free_space: Threshold,
    /// `min_free_inodes`.
    pub min_free_inodes: Threshold,
}

impl Default for StorageReserve {
    fn default() -> Self {
        Self { min_free_space: Threshold::Percent(10.0), min_free_inodes: Threshold::Percent(10.0) }
    }
}

impl StorageReserve {
    /// No reserve: accept until the filesystem refuses a write.
    pub fn none() -> Self {
        Self { min_free_space: Threshold::Absolute(0), min_free_inodes: Threshold::Absolute(0) }
    }

    /// `None` when `path` has room; otherwise what is short, for the log.
    pub fn shortfall(&self, path: &Path) -> Option<String> {
        let stat = match statvfs(path) {
            Ok(s) => s,
            // Not knowing is no reason to refuse mail; the write itself
            // will fail if the disk is really full.
            Err(_) => return None,
        };
        let need = self.min_free_space.required(stat.total_bytes);
        if stat.free_bytes < need {
            return Some(format!("{}: {} bytes free, {need} reserved", path.display(), stat.free_bytes));
        }
        // Some filesystems (btrfs) report no inode limit at all.
        if stat.total_inodes > 0 {
            let need = self.min_free_inodes.required(stat.total_inodes);
            if stat.free_inodes < need {
                return Some(format!("{}: {} inodes free, {need} reserved", path.display(), stat.free_inodes));
            }
        }
        None
    }
}

/// The reserve of each spool directory (`define_spool` for `meta` and
/// `data` may set different ones).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpoolReserves {
    /// For the meta directory.
    pub meta: StorageReserve,
    /// For the data directory.
    pub data: StorageReserve,
}

impl SpoolReserves {
    /// The same reserve for both directories.
    pub fn uniform(reserve: StorageReserve) -> Self {
        Self { meta: reserve, data: reserve }
    }
}

struct Stat {
    total_bytes: u64,
    free_bytes: u64,
    total_inodes: u64,
    free_inodes: u64,
}

#[allow(unsafe_code)] // libc's statvfs: no maintained crate in the tree wraps it
fn statvfs(path: &Path) -> std::io::Result<Stat> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut raw: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `raw` is a valid out pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut raw) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = raw.f_frsize as u64;
    Ok(Stat {
        total_bytes: raw.f_blocks as u64 * unit,
        // f_bavail: what an unprivileged writer may still use.
        free_bytes: raw.f_bavail as u64 * unit,
        total_inodes: raw.f_files as u64,
        free_inodes: raw.f_favail as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_like_kumomta() {
        assert_eq!(Threshold::parse("10%"), Ok(Threshold::Percent(10.0)));
        assert_eq!(Threshold::parse("1048576"), Ok(Threshold::Absolute(1 << 20)));
        assert!(Threshold::parse("120%").is_err());
        assert!(Threshold::parse("ten").is_err());
        assert_eq!(Threshold::Percent(10.0).required(1000), 100);
    }

    #[test]
    fn an_impossible_reserve_reports_a_shortfall() {
        let dir = tempfile::tempdir().unwrap();
        let all = StorageReserve { min_free_space: Threshold::Percent(100.0), ..StorageReserve::none() };
        assert!(all.shortfall(dir.path()).unwrap().contains("bytes free"));
        assert_eq!(StorageReserve::none().shortfall(dir.path()), None);
    }
}
