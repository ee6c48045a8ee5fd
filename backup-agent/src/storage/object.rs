//! What an object is once stored (size and SHA-256), and the checks of one read back: computed as
//! it streams, compared with the catalog's entry.

use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// What a finished object is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub size: u64,
    pub sha256: String,
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
