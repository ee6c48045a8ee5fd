//! Unpacking a base backup archive without trusting it: every entry must stay inside the target.
//!
//! - Paths are relative, without `..`; an absolute path or one that climbs out fails the restore
//!   naming the entry.
//! - Only regular files and directories are created. A symbolic link is refused, except
//!   `pg_tblspc/<oid>`, which is created pointing at the tablespace directory the restore itself
//!   made for that OID; hard links, devices and FIFOs are refused.
//! - No entry is written through a symbolic link: every parent is checked to be a real directory
//!   inside the target, and files are created with `O_NOFOLLOW | O_EXCL`.
//! - Modes keep the permission bits only (no setuid, setgid or sticky bit); files belong to the
//!   user running the restore (then `--owner`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Where the tablespaces of a backup go: OID -> directory (made by the restore).
pub type TablespaceMap = HashMap<u32, PathBuf>;

/// Unpacks a tar stream into `dir` (which exists). `base` is the archive's place in the data
/// directory (`""` for base.tar, `"pg_wal"` for pg_wal.tar).
pub fn unpack(
    archive: impl Read,
    dir: &Path,
    base: &str,
    tablespaces: &TablespaceMap,
) -> anyhow::Result<()> {
    let mut ar = tar::Archive::new(archive);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).to_string();
        let rel = checked_path(&raw).map_err(|why| {
            anyhow::anyhow!("archive entry {shown:?} {why}; nothing was written outside the target")
        })?;
        let rel = if base.is_empty() {
            rel
        } else {
            Path::new(base).join(rel)
        };
        let dest = dir.join(&rel);
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o600) & 0o777;
        real_parents(dir, &rel).map_err(|e| anyhow::anyhow!("archive entry {shown:?}: {e}"))?;
        if kind.is_dir() {
            match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => anyhow::bail!(
                    "archive entry {shown:?}: {} exists and is not a directory",
                    dest.display()
                ),
                Err(_) => std::fs::DirBuilder::new()
                    .mode(mode | 0o700)
                    .create(&dest)
                    .map_err(|e| {
                        anyhow::anyhow!("archive entry {shown:?}: {}: {e}", dest.display())
                    })?,
            }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&dest)
                .map_err(|e| anyhow::anyhow!("archive entry {shown:?}: {}: {e}", dest.display()))?;
            std::io::copy(&mut entry, &mut out)?;
            out.flush()?;
        } else if kind.is_symlink() {
            let oid = tablespace_link(&rel).ok_or_else(|| {
                anyhow::anyhow!(
                    "archive entry {shown:?} is a symbolic link (to {:?}); a base backup has none outside pg_tblspc/",
                    entry.link_name().ok().flatten().map(|p| p.display().to_string()).unwrap_or_default()
                )
            })?;
            let to = tablespaces.get(&oid).ok_or_else(|| {
                anyhow::anyhow!(
                    "archive entry {shown:?}: tablespace {oid} has no directory (--tablespace-map {oid}=DIR)"
                )
            })?;
            std::os::unix::fs::symlink(to, &dest)
                .map_err(|e| anyhow::anyhow!("archive entry {shown:?}: {e}"))?;
        } else {
            anyhow::bail!(
                "archive entry {shown:?} is a {kind:?}, which a base backup never holds; nothing was written for it"
            );
        }
    }
    // Whatever follows the archive's end (padding) is read, so that the stored object is hashed
    // to its last byte.
    let mut rest = ar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())?;
    Ok(())
}

/// A relative path of normal components, or why not.
fn checked_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(raw));
    if raw.is_empty() || raw.contains(&0) {
        return Err("has an empty or invalid path");
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
            Component::ParentDir => return Err("climbs out of the target with \"..\""),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("names the target itself");
    }
    Ok(out)
}

/// Every directory between `dir` and `rel`'s parent is a real directory (not a symlink).
fn real_parents(dir: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut at = dir.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    anyhow::bail!(
                        "{} is a symbolic link; nothing is written through one",
                        at.display()
                    )
                }
                Ok(_) => anyhow::bail!("{} is not a directory", at.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new().mode(0o700).create(&at)?;
                }
                Err(e) => anyhow::bail!("{}: {e}", at.display()),
            }
        }
    }
    Ok(())
}

/// `pg_tblspc/<oid>` -> the OID.
fn tablespace_link(rel: &Path) -> Option<u32> {
    let mut c = rel.components();
    match (c.next(), c.next(), c.next()) {
        (Some(Component::Normal(a)), Some(Component::Normal(oid)), None) if a == "pg_tblspc" => {
            oid.to_str()?.parse().ok()
        }
        _ => None,
    }
}

/// Creates (or appends to) a file the restore writes itself, never through a symbolic link.
pub fn write_nofollow(path: &Path, bytes: &[u8], append: bool, mode: u32) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW).mode(mode);
    if append {
        o.append(true).create(true);
    } else {
        o.write(true).create(true).truncate(true);
    }
    let mut f = o.open(path).map_err(|e| {
        anyhow::anyhow!("{}: {e} (a symbolic link there is refused)", path.display())
    })?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_target_are_refused() {
        assert!(checked_path(b"base/1/123").is_ok());
        assert!(checked_path(b"./PG_VERSION").is_ok());
        assert_eq!(
            checked_path(b"../x"),
            Err("climbs out of the target with \"..\"")
        );
        assert_eq!(
            checked_path(b"a/../../x"),
            Err("climbs out of the target with \"..\"")
        );
        assert_eq!(checked_path(b"/etc/passwd"), Err("has an absolute path"));
        assert_eq!(tablespace_link(Path::new("pg_tblspc/16384")), Some(16384));
        assert_eq!(tablespace_link(Path::new("pg_tblspc/16384/x")), None);
        assert_eq!(tablespace_link(Path::new("base/16384")), None);
    }
}
