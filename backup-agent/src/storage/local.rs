//! The local storage directory: objects streamed to `<key>.partial-<pid>-<start>-<n>`, fsynced
//! and renamed into place; leftovers are the temporary files of writers that are gone.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::object::Stored;
use crate::config::FileMode;

/// Marks temporary objects: `<key>.partial-<pid>-<start>-<n>`.
pub const TEMP_MARK: &str = ".partial-";

/// A local storage directory.
#[derive(Clone, Debug)]
pub struct Local {
    pub(super) root: PathBuf,
    /// `storage.mode`; `None`: the umask decides.
    pub(super) mode: Option<FileMode>,
}

impl Local {
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Makes the directories above `path` that are missing, with the directory mode.
    pub(super) async fn make_parent(&self, path: &Path) -> std::io::Result<()> {
        let Some(dir) = path.parent() else {
            return Ok(());
        };
        let mut b = tokio::fs::DirBuilder::new();
        b.recursive(true);
        if let Some(m) = self.mode {
            b.mode(m.dir());
        }
        b.create(dir).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })
    }

    /// Options that create a new file, with the configured mode.
    pub(super) fn open_options(&self) -> tokio::fs::OpenOptions {
        let mut o = tokio::fs::OpenOptions::new();
        o.write(true).create_new(true);
        if let Some(m) = self.mode {
            o.mode(m.file());
        }
        o
    }

    /// Gives a file created here exactly the configured mode, whatever the umask took away.
    pub(super) async fn set_mode(&self, f: &tokio::fs::File, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let Some(m) = self.mode else {
            return Ok(());
        };
        f.set_permissions(std::fs::Permissions::from_mode(m.file()))
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot set the mode of {}: {e}", path.display()),
                )
            })
    }

    pub(super) async fn create(&self, key: &str) -> std::io::Result<LocalWriter> {
        static N: AtomicU64 = AtomicU64::new(0);
        let final_path = self.path(key);
        self.make_parent(&final_path).await?;
        // The owner: pid and the process' start time, so that a pid reused after a restart
        // (the agent is often pid 7 under tini in every container) is not taken for the writer.
        let temp = PathBuf::from(format!(
            "{}{TEMP_MARK}{}-{}-{}",
            final_path.display(),
            std::process::id(),
            process_start(std::process::id()).unwrap_or(0),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = self.open_options().open(&temp).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", temp.display()))
        })?;
        self.set_mode(&file, &temp).await?;
        Ok(LocalWriter {
            key: key.to_string(),
            // tokio's File hands every write to a blocking thread: batch them.
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
            temp,
            final_path,
            hasher: Sha256::new(),
            size: 0,
            finished: false,
        })
    }

    pub(super) async fn open(&self, key: &str) -> std::io::Result<tokio::fs::File> {
        let p = self.path(key);
        tokio::fs::File::open(&p).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("object {key} ({}): {e}", p.display()))
        })
    }

    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Temporary objects left by an interrupted upload: those whose writer process is gone (no
    /// process with that pid, or one started at another time).
    pub fn leftovers(&self) -> std::io::Result<Vec<String>> {
        Ok(self
            .list("", true)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| {
                k.rsplit_once(TEMP_MARK)
                    .is_some_and(|(_, rest)| writer_gone(rest))
            })
            .collect())
    }

    /// Keys under a prefix with their sizes (temporary objects included only when `temps`).
    pub fn list(&self, prefix: &str, temps: bool) -> std::io::Result<Vec<(String, u64)>> {
        let mut out = vec![];
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix)
        };
        if !dir.exists() {
            return Ok(out);
        }
        walk(&dir, &self.root, &mut out)?;
        out.retain(|(k, _)| temps || !k.contains(TEMP_MARK));
        out.sort();
        Ok(out)
    }
}

/// A process' start time (clock ticks since boot, /proc/<pid>/stat field 22).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the writer named by a temporary file's suffix (`<pid>-<start>-<n>`, or the older
/// `<pid>-<n>`) is gone.
fn writer_gone(suffix: &str) -> bool {
    let parts: Vec<&str> = suffix.split('-').collect();
    let Some(pid) = parts.first().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    match (process_start(pid), parts.len()) {
        (None, _) => true,
        (Some(now), 3) => parts[1]
            .parse::<u64>()
            .is_ok_and(|recorded| recorded != now),
        (Some(_), _) => false,
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, u64)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, root, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((rel.to_string_lossy().replace('\\', "/"), size));
        }
    }
    Ok(())
}

/// A streamed local object: hashed and counted as written, renamed into place by
/// [`LocalWriter::finish`]. Dropped unfinished (a failed job), its temporary file is removed; a
/// process killed mid-write leaves it for cleanup.
pub struct LocalWriter {
    key: String,
    file: tokio::io::BufWriter<tokio::fs::File>,
    temp: PathBuf,
    final_path: PathBuf,
    hasher: Sha256,
    size: u64,
    finished: bool,
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl LocalWriter {
    /// Flushes, fsyncs and renames the object into place.
    pub async fn finish(mut self) -> std::io::Result<Stored> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        tokio::fs::rename(&self.temp, &self.final_path).await?;
        self.finished = true;
        if let Some(dir) = self.final_path.parent()
            && let Ok(d) = tokio::fs::File::open(dir).await
        {
            let _ = d.sync_all().await;
        }
        Ok(Stored {
            key: std::mem::take(&mut self.key),
            size: self.size,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl AsyncWrite for LocalWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = &mut *self;
        match Pin::new(&mut me.file).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                me.hasher.update(&buf[..n]);
                me.size += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
}

#[cfg(test)]
mod modes {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::storage::Storage;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    /// Every way an object is written: streamed, at once, exclusively; in a new directory.
    async fn write_all_ways(s: &Storage) {
        let mut w = s
            .create("base/20260101T020000Z/base.tar.zst")
            .await
            .expect("create");
        w.write_all(b"tar").await.expect("write");
        w.finish().await.expect("finish");
        s.put("catalog/x.json", b"{}").await.expect("put");
        assert!(s.create_exclusive("claims/x", b"me").await.expect("claim"));
    }

    #[tokio::test]
    async fn files_and_directories_have_the_configured_mode() {
        for (bits, file, dir) in [(0o600, 0o600, 0o700), (0o640, 0o640, 0o750)] {
            let root =
                std::env::temp_dir().join(format!("ba-modes-{}-{}", std::process::id(), file));
            let _ = std::fs::remove_dir_all(&root);
            let s = Storage::local_with_mode(&root, Some(FileMode::new(bits).expect("mode")));
            write_all_ways(&s).await;
            for rel in [
                "base/20260101T020000Z/base.tar.zst",
                "catalog/x.json",
                "claims/x",
            ] {
                assert_eq!(mode(&root.join(rel)), file, "{rel}");
            }
            for rel in ["", "base", "base/20260101T020000Z", "catalog", "claims"] {
                assert_eq!(mode(&root.join(rel)), dir, "{rel}/");
            }
            std::fs::remove_dir_all(&root).expect("cleanup");
        }
    }

    #[test]
    fn modes_that_would_lock_the_agent_out_or_execute_are_refused() {
        assert_eq!(FileMode::new(0o640).map(FileMode::dir), Ok(0o750));
        assert_eq!(FileMode::new(0o644).map(FileMode::dir), Ok(0o755));
        assert!(FileMode::new(0o755).is_err());
        assert!(FileMode::new(0o4600).is_err());
        assert!(FileMode::new(0o400).is_err());
    }
}

#[cfg(test)]
mod leftovers {
    use super::*;

    /// A temporary file is the writer's while that very process runs: same pid and start time.
    /// The same pid with another start time (reused after a restart) or a pid that is gone
    /// means a leftover.
    #[test]
    fn the_writer_is_the_pid_and_its_start_time() {
        let me = std::process::id();
        let start = process_start(me).expect("own start time");
        assert!(!writer_gone(&format!("{me}-{start}-0")), "the live writer");
        assert!(
            writer_gone(&format!("{me}-{}-0", start + 1)),
            "a reused pid"
        );
        assert!(writer_gone("4194304000-1-0"), "no such pid");
        assert!(!writer_gone(&format!("{me}-0")), "old names: pid only");
        assert!(!writer_gone("x-1-2"), "not ours to judge");
        // And through the listing: only the reused-pid file is a leftover.
        let dir = std::env::temp_dir().join(format!("leftovers-{me}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("wal")).expect("dir");
        let live = format!("wal/a{TEMP_MARK}{me}-{start}-0");
        let stale = format!("wal/b{TEMP_MARK}{me}-{}-0", start + 1);
        std::fs::write(dir.join(&live), b"x").expect("write");
        std::fs::write(dir.join(&stale), b"x").expect("write");
        let l = Local {
            root: dir.clone(),
            mode: None,
        };
        assert_eq!(l.leftovers().expect("list"), vec![stale]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
