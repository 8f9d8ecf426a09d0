//! A real size-limited filesystem for tests: a tmpfs mounted on a temp dir
//! (needs root, as `make test` runs in CI), unmounted when dropped.

use std::path::{Path, PathBuf};

/// A small tmpfs mounted for a test (needs root), unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// A tmpfs of `mib` MiB. Panics with the reason when mounting fails.
    pub fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root (CAP_SYS_ADMIN); run the tests as root");
        Self { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes an unprivileged writer may still use.
    pub fn free(&self) -> u64 {
        let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(self.path()).output();
        let out = out.expect("run df");
        String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df output")
    }

    /// Take all but `keep` bytes of the free space with one file; removing
    /// that file gives the space back.
    pub fn fill(&self, keep: u64) -> PathBuf {
        let filler = self.path().join("filler");
        std::fs::write(&filler, vec![0u8; self.free().saturating_sub(keep) as usize]).expect("write filler");
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
