//! Backup storage. Objects are written as a stream to a temporary name and renamed into place only
//! when complete (fsynced), so a failed or interrupted upload leaves nothing a listing shows;
//! `cleanup` removes the leftovers. Every object's size and SHA-256 are computed while it streams.
//!
//! Backends: a local directory (the default, [`local`]) or S3 ([`s3`]); what every object is
//! checked with when read back is in [`object`].

mod local;
pub mod object;
pub mod s3;

pub use local::{Local, LocalWriter, TEMP_MARK};
pub use object::{HashingReader, Stored, check_stored, sha256_hex};

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::FileMode;

/// A readable stored object.
pub type Reader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Where backups live.
#[derive(Clone, Debug)]
pub enum Storage {
    Local(Local),
    S3(s3::S3),
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
            Some(s3) => Self::S3(s3::S3::new(s3).await?),
            None => Self::local_with_mode(&c.path, Some(c.mode)),
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
    S3(s3::S3Writer),
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
        assert_eq!(stored.sha256, sha256_hex(b"hello"));
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
