//! A small disk that fills up: a tmpfs of a given size mounted on a fresh directory (root only),
//! resized or unmounted on demand, unmounted on drop.

use std::path::Path;
use std::process::Command;

use crate::process::TempDir;

pub struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// A tmpfs of `size` (`1m`, `256m`), or `None` where mounting is not allowed.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = TempDir::new("small-disk").ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    /// [`SmallDisk::mount`] for a test: `None` means skip (said on stderr), unless
    /// `OUTRIGGER_REQUIRE_TOOLS` is set (as `./dev test` does), where a failed mount fails the test.
    pub fn for_test(size: &str) -> Option<Self> {
        let disk = Self::mount(size);
        if disk.is_none() {
            assert!(
                std::env::var_os("OUTRIGGER_REQUIRE_TOOLS").is_none(),
                "mounting a tmpfs needs root"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
        }
        disk
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Gives it another size (space freed, or taken away).
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} to {size}", self.dir.path().display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
