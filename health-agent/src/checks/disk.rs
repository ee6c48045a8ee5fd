//! Free space and free inodes of the filesystems holding configured paths.

use super::{Findings, Outcome, State, bytes, level};
use crate::config::DiskCheck;

/// Space and inode use of a filesystem.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub used_pct: f64,
    pub inodes_used_pct: f64,
}

/// statvfs(3) of a path.
pub fn usage(path: &std::path::Path) -> std::io::Result<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    #[allow(unsafe_code)]
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let frsize = st.f_frsize as u64;
    let (blocks, bfree, bavail) = (st.f_blocks as u64, st.f_bfree as u64, st.f_bavail as u64);
    let used = blocks.saturating_sub(bfree);
    let denom = used + bavail;
    let used_pct = if denom > 0 {
        used as f64 * 100.0 / denom as f64
    } else {
        0.0
    };
    let (files, ffree) = (st.f_files as u64, st.f_ffree as u64);
    let inodes_used_pct = if files > 0 {
        files.saturating_sub(ffree) as f64 * 100.0 / files as f64
    } else {
        0.0
    };
    Ok(Usage {
        total_bytes: blocks * frsize,
        avail_bytes: bavail * frsize,
        used_pct,
        inodes_used_pct,
    })
}

pub async fn check(c: &DiskCheck) -> Outcome {
    let mut f = Findings::default();
    for p in &c.paths {
        match usage(p) {
            Err(e) => f.add(State::Crit, format!("{}: {e}", p.display())),
            Ok(u) => {
                f.add(
                    level(u.used_pct, c.used_warn_pct, c.used_crit_pct),
                    format!(
                        "{}: {:.0}% used, {} free of {} (warn {}%, crit {}%)",
                        p.display(),
                        u.used_pct,
                        bytes(u.avail_bytes),
                        bytes(u.total_bytes),
                        c.used_warn_pct,
                        c.used_crit_pct
                    ),
                );
                f.add(
                    level(u.inodes_used_pct, c.used_warn_pct, c.used_crit_pct),
                    format!("{}: {:.0}% of inodes used", p.display(), u.inodes_used_pct),
                );
            }
        }
    }
    f.finish()
}
