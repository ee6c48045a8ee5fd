//! Backup storage. Objects are written as a stream to a temporary name and renamed into place only
//! when complete (fsynced), so a failed or interrupted upload leaves nothing a listing shows;
//! `cleanup` removes the leftovers. Every object's size and SHA-256 are computed while it streams.
//!
//! Backends: a local directory (the default). S3 is not built yet.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Marks temporary objects: `<key>.partial-<pid>-<n>`.
pub const TEMP_MARK: &str = ".partial-";

/// A local storage directory.
#[derive(Clone, Debug)]
pub struct Storage {
    root: PathBuf,
}

/// What a finished object is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

impl Storage {
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Starts a streamed object.
    pub async fn create(&self, key: &str) -> std::io::Result<ObjectWriter> {
        static N: AtomicU64 = AtomicU64::new(0);
        let final_path = self.path(key);
        if let Some(dir) = final_path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let temp = PathBuf::from(format!(
            "{}{TEMP_MARK}{}-{}",
            final_path.display(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = tokio::fs::File::create(&temp).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", temp.display()))
        })?;
        Ok(ObjectWriter {
            key: key.to_string(),
            // tokio's File hands every write to a blocking thread: batch them.
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
            temp,
            final_path,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Writes a small object at once (manifests, status files).
    pub async fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<Stored> {
        let mut w = self.create(key).await?;
        w.write_all(bytes).await?;
        w.finish().await
    }

    /// Opens an object for reading.
    pub async fn open(&self, key: &str) -> std::io::Result<tokio::fs::File> {
        let p = self.path(key);
        tokio::fs::File::open(&p).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("object {key} ({}): {e}", p.display()))
        })
    }

    pub async fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.path(key)).await
    }

    pub async fn exists(&self, key: &str) -> bool {
        tokio::fs::metadata(self.path(key)).await.is_ok()
    }

    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Temporary objects left by an interrupted upload: those whose writer process is gone.
    pub fn leftovers(&self) -> std::io::Result<Vec<String>> {
        Ok(self
            .list("", true)?
            .into_iter()
            .filter(|k| {
                k.rsplit_once(TEMP_MARK)
                    .and_then(|(_, rest)| rest.split('-').next())
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            })
            .collect())
    }

    /// Keys under a prefix (temporary objects included only when `temps`).
    pub fn list(&self, prefix: &str, temps: bool) -> std::io::Result<Vec<String>> {
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
        out.retain(|k| temps || !k.contains(TEMP_MARK));
        out.sort();
        Ok(out)
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, root, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// A streamed object: hashed and counted as written, renamed into place by [`ObjectWriter::finish`].
/// Dropped unfinished, it leaves only a temporary file (removed by cleanup).
pub struct ObjectWriter {
    key: String,
    file: tokio::io::BufWriter<tokio::fs::File>,
    temp: PathBuf,
    final_path: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl ObjectWriter {
    /// Flushes, fsyncs and renames the object into place.
    pub async fn finish(mut self) -> std::io::Result<Stored> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        tokio::fs::rename(&self.temp, &self.final_path).await?;
        if let Some(dir) = self.final_path.parent()
            && let Ok(d) = tokio::fs::File::open(dir).await
        {
            let _ = d.sync_all().await;
        }
        Ok(Stored {
            key: self.key,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl AsyncWrite for ObjectWriter {
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

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.hasher.finalize()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            me.hasher.update(new);
            me.size += new.len() as u64;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn objects_appear_only_when_finished() {
        let dir = std::env::temp_dir().join(format!("ba-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Storage::local(&dir);
        let mut w = s
            .create("postgres/full/x/base.tar.zst")
            .await
            .expect("create");
        w.write_all(b"hello").await.expect("write");
        assert!(
            s.list("postgres", false).expect("list").is_empty(),
            "unfinished object listed"
        );
        assert_eq!(s.list("postgres", true).expect("list").len(), 1);
        let stored = w.finish().await.expect("finish");
        assert_eq!(stored.size, 5);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(b"hello")));
        assert_eq!(
            s.list("postgres", false).expect("list"),
            vec!["postgres/full/x/base.tar.zst"]
        );
        let mut r = HashingReader::new(s.open("postgres/full/x/base.tar.zst").await.expect("open"));
        let mut back = vec![];
        r.read_to_end(&mut back).await.expect("read");
        assert_eq!(r.finish(), (5, stored.sha256.clone()));
        // Dropped unfinished: only a temp file, never listed.
        let w = s
            .create("postgres/full/y/base.tar.zst")
            .await
            .expect("create");
        drop(w);
        assert_eq!(s.list("postgres", false).expect("list").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
