//! Backup storage. Objects are written as a stream to a temporary name and renamed into place only
//! when complete (fsynced), so a failed or interrupted upload leaves nothing a listing shows;
//! `cleanup` removes the leftovers. Every object's size and SHA-256 are computed while it streams.
//!
//! Backends: a local directory (the default) or S3 ([`crate::s3`]).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::config::FileMode;

/// Marks temporary objects: `<key>.partial-<pid>-<n>`.
pub const TEMP_MARK: &str = ".partial-";

/// A readable stored object.
pub type Reader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Where backups live.
#[derive(Clone, Debug)]
pub enum Storage {
    Local(Local),
    S3(crate::s3::S3),
}

/// A local storage directory.
#[derive(Clone, Debug)]
pub struct Local {
    root: PathBuf,
    /// `storage.mode`; `None`: the umask decides.
    mode: Option<FileMode>,
}

/// What a finished object is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

impl Storage {
    /// A local directory whose files get the modes the umask leaves.
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self::local_with_mode(root, None)
    }

    /// A local directory whose files are written with `mode` (directories with its search bits).
    pub fn local_with_mode(root: impl Into<PathBuf>, mode: Option<FileMode>) -> Self {
        Self::Local(Local {
            root: root.into(),
            mode,
        })
    }

    /// The storage a config names: S3 when `storage.s3` is set, else the local directory.
    pub async fn from_config(c: &crate::config::Storage) -> anyhow::Result<Self> {
        Ok(match &c.s3 {
            Some(s3) => Self::S3(crate::s3::S3::new(s3).await?),
            None => Self::local_with_mode(&c.path, c.mode),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Local(l) => l.root.display().to_string(),
            Self::S3(s) => s.describe(),
        }
    }

    /// Starts a streamed object.
    pub async fn create(&self, key: &str) -> std::io::Result<ObjectWriter> {
        match self {
            Self::Local(l) => l
                .create(key)
                .await
                .map(|w| ObjectWriter::Local(Box::new(w))),
            Self::S3(s) => Ok(ObjectWriter::S3(s.create(key))),
        }
    }

    /// Writes a small object at once (manifests, status files).
    pub async fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<Stored> {
        let mut w = self.create(key).await?;
        w.write_all(bytes).await?;
        w.finish().await
    }

    /// Writes a small object only if `key` does not exist yet, atomically: an exclusive create
    /// locally, a conditional PUT (`If-None-Match: *`) on S3. `Ok(false)`: someone has it.
    pub async fn create_exclusive(&self, key: &str, bytes: &[u8]) -> std::io::Result<bool> {
        match self {
            Self::Local(l) => {
                let path = l.path(key);
                l.make_parent(&path).await?;
                let created = l.open_options().open(&path).await;
                match created {
                    Ok(mut f) => {
                        l.set_mode(&f, &path).await?;
                        f.write_all(bytes).await?;
                        f.sync_all().await?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot create {}: {e}", path.display()),
                    )),
                }
            }
            Self::S3(s) => s.put_if_absent(key, bytes).await,
        }
    }

    pub async fn open(&self, key: &str) -> std::io::Result<Reader> {
        match self {
            Self::Local(l) => Ok(Box::pin(l.open(key).await?)),
            Self::S3(s) => s.open(key).await,
        }
    }

    pub async fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Local(l) => tokio::fs::read(l.path(key)).await,
            Self::S3(s) => s.get(key).await,
        }
    }

    /// Whether `key` exists: `Ok(false)` only when storage positively says it does not (a local
    /// ENOENT, an S3 404); any other failure is an error, never "absent".
    pub async fn exists(&self, key: &str) -> std::io::Result<bool> {
        match self {
            Self::Local(l) => match tokio::fs::symlink_metadata(l.path(key)).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("object {key} ({}): {e}", l.path(key).display()),
                )),
            },
            Self::S3(s) => s.exists(key).await,
        }
    }

    /// The stored size of an object.
    pub async fn size(&self, key: &str) -> std::io::Result<u64> {
        match self {
            Self::Local(l) => tokio::fs::metadata(l.path(key))
                .await
                .map(|m| m.len())
                .map_err(|e| std::io::Error::new(e.kind(), format!("object {key}: {e}"))),
            Self::S3(s) => s.size(key).await,
        }
    }

    /// The first of `keys` that exists, by one listing where the backend lists cheaply (S3: one
    /// request for every key under their common prefix) or one check each (local).
    pub async fn first_existing(&self, keys: &[String]) -> std::io::Result<Option<String>> {
        match self {
            Self::Local(_) => {
                for k in keys {
                    if self.exists(k).await? {
                        return Ok(Some(k.clone()));
                    }
                }
                Ok(None)
            }
            Self::S3(s) => {
                let common = common_prefix(keys);
                let listed = s.list(&common).await?;
                Ok(keys
                    .iter()
                    .find(|k| listed.iter().any(|(l, _)| l == *k))
                    .cloned())
            }
        }
    }

    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match self {
            Self::Local(l) => l.delete(key).await,
            Self::S3(s) => s.delete(key).await,
        }
    }

    /// Complete objects under a prefix, with their sizes.
    pub async fn list(&self, prefix: &str) -> std::io::Result<Vec<(String, u64)>> {
        match self {
            Self::Local(l) => l.list(prefix, false),
            Self::S3(s) => s.list(prefix).await,
        }
    }

    /// Keys under a prefix.
    pub async fn keys(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// What interrupted uploads left: local temporary files of processes that are gone, or S3
    /// multipart uploads never completed, started more than `older_than` ago.
    pub async fn leftovers(
        &self,
        older_than: std::time::Duration,
    ) -> std::io::Result<Vec<Leftover>> {
        match self {
            Self::Local(l) => Ok(l
                .leftovers()?
                .into_iter()
                .map(|k| Leftover {
                    key: k,
                    upload_id: None,
                })
                .collect()),
            Self::S3(s) => Ok(s
                .incomplete(older_than)
                .await?
                .into_iter()
                .map(|(key, id)| Leftover {
                    key,
                    upload_id: Some(id),
                })
                .collect()),
        }
    }

    pub async fn remove_leftover(&self, l: &Leftover) -> std::io::Result<()> {
        match (self, &l.upload_id) {
            (Self::S3(s), Some(id)) => s.abort(&l.key, id).await,
            (Self::Local(loc), _) => loc.delete(&l.key).await,
            (Self::S3(s), None) => s.delete(&l.key).await,
        }
    }

    /// The catalog: every manifest and the WAL status.
    pub async fn catalog(&self) -> std::io::Result<common::catalog::Catalog> {
        let mut objects = vec![];
        for key in self.keys(common::catalog::PREFIX).await? {
            if key.ends_with(".json") {
                objects.push((key.clone(), self.get(&key).await?));
            }
        }
        Ok(common::catalog::Catalog::from_objects(
            objects.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
        ))
    }
}

/// The longest prefix all keys share.
fn common_prefix(keys: &[String]) -> String {
    let Some(first) = keys.first() else {
        return String::new();
    };
    let mut n = first.len();
    for k in &keys[1..] {
        n = n.min(
            first
                .bytes()
                .zip(k.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(n) {
        n -= 1;
    }
    first[..n].to_string()
}

/// An interrupted upload's remains.
#[derive(Clone, Debug, PartialEq)]
pub struct Leftover {
    pub key: String,
    pub upload_id: Option<String>,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.upload_id {
            Some(id) => write!(f, "{} (incomplete upload {id})", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// A streamed object being written.
pub enum ObjectWriter {
    Local(Box<LocalWriter>),
    S3(crate::s3::S3Writer),
}

impl ObjectWriter {
    /// Completes the object: only now does it exist for a listing.
    pub async fn finish(self) -> std::io::Result<Stored> {
        match self {
            Self::Local(w) => w.finish().await,
            Self::S3(w) => w.finish().await,
        }
    }
}

impl AsyncWrite for ObjectWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Local(w) => Pin::new(w.as_mut()).poll_write(cx, buf),
            Self::S3(w) => Pin::new(w).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Local(w) => Pin::new(w.as_mut()).poll_flush(cx),
            Self::S3(w) => Pin::new(w).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Local(w) => Pin::new(w.as_mut()).poll_shutdown(cx),
            Self::S3(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

impl Local {
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Makes the directories above `path` that are missing, with the directory mode.
    async fn make_parent(&self, path: &Path) -> std::io::Result<()> {
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
    fn open_options(&self) -> tokio::fs::OpenOptions {
        let mut o = tokio::fs::OpenOptions::new();
        o.write(true).create_new(true);
        if let Some(m) = self.mode {
            o.mode(m.file());
        }
        o
    }

    /// Gives a file created here exactly the configured mode, whatever the umask took away.
    async fn set_mode(&self, f: &tokio::fs::File, path: &Path) -> std::io::Result<()> {
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

    async fn create(&self, key: &str) -> std::io::Result<LocalWriter> {
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

    async fn open(&self, key: &str) -> std::io::Result<tokio::fs::File> {
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

/// Checks the size and SHA-256 read back from storage against the catalog's entry.
pub fn check_stored(
    o: &common::catalog::ObjectEntry,
    (size, sha): (u64, String),
) -> anyhow::Result<()> {
    if size != o.size || sha != o.sha256 {
        anyhow::bail!(
            "object {} is damaged: {size} bytes with SHA-256 {sha}, the catalog says {} bytes with {}",
            o.key,
            o.size,
            o.sha256
        );
    }
    Ok(())
}

/// Reads a stored object to its end and checks it against the catalog's entry.
pub async fn verify_object(
    storage: &Storage,
    o: &common::catalog::ObjectEntry,
) -> anyhow::Result<()> {
    let mut r = HashingReader::new(storage.open(&o.key).await?);
    tokio::io::copy(&mut r, &mut tokio::io::sink())
        .await
        .map_err(|e| anyhow::anyhow!("object {}: {e}", o.key))?;
    check_stored(o, r.finish())
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

/// The SHA-256 of bytes, in lower-case hex (what manifests and `.sha256` files record).
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
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
        let Storage::Local(local) = &s else {
            unreachable!()
        };
        let mut w = s
            .create("postgres/full/x/base.tar.zst")
            .await
            .expect("create");
        w.write_all(b"hello").await.expect("write");
        assert!(
            s.list("postgres").await.expect("list").is_empty(),
            "unfinished object listed"
        );
        assert_eq!(local.list("postgres", true).expect("list").len(), 1);
        let stored = w.finish().await.expect("finish");
        assert_eq!(stored.size, 5);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(b"hello")));
        assert_eq!(
            s.list("postgres").await.expect("list"),
            vec![("postgres/full/x/base.tar.zst".to_string(), 5)]
        );
        let mut r = HashingReader::new(s.open("postgres/full/x/base.tar.zst").await.expect("open"));
        let mut back = vec![];
        r.read_to_end(&mut back).await.expect("read");
        assert_eq!(r.finish(), (5, stored.sha256.clone()));
        // Dropped unfinished: never listed, and its temporary file is gone.
        let w = s
            .create("postgres/full/y/base.tar.zst")
            .await
            .expect("create");
        drop(w);
        assert_eq!(s.list("postgres").await.expect("list").len(), 1);
        assert_eq!(local.list("postgres", true).expect("list").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod modes {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

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
