//! Compression of stored objects: zstd (default) or gzip, streamed.

use std::pin::Pin;

use async_compression::Level;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};

use crate::config::{Algorithm, Compression};

/// The suffix stored objects get.
pub fn suffix(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Zstd => ".zst",
        Algorithm::Gzip => ".gz",
    }
}

pub fn name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Zstd => "zstd",
        Algorithm::Gzip => "gzip",
    }
}

/// The algorithm of a stored key, by suffix.
pub fn of_key(key: &str) -> Option<Algorithm> {
    if key.ends_with(".zst") {
        Some(Algorithm::Zstd)
    } else if key.ends_with(".gz") {
        Some(Algorithm::Gzip)
    } else {
        None
    }
}

/// Wraps a writer in the configured encoder. Call `shutdown()` to finish the stream.
pub fn encoder<W: AsyncWrite + Unpin + Send + 'static>(c: &Compression, w: W) -> Encoder<W> {
    match c.algorithm {
        Algorithm::Zstd => {
            Encoder::Zstd(async_compression::tokio::write::ZstdEncoder::with_quality(
                w,
                Level::Precise(c.level.unwrap_or(3)),
            ))
        }
        Algorithm::Gzip => {
            Encoder::Gzip(async_compression::tokio::write::GzipEncoder::with_quality(
                w,
                Level::Precise(c.level.unwrap_or(6)),
            ))
        }
    }
}

/// A compressing writer.
pub enum Encoder<W> {
    Zstd(async_compression::tokio::write::ZstdEncoder<W>),
    Gzip(async_compression::tokio::write::GzipEncoder<W>),
}

impl<W> Encoder<W> {
    pub fn into_inner(self) -> W {
        match self {
            Self::Zstd(e) => e.into_inner(),
            Self::Gzip(e) => e.into_inner(),
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Encoder<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Zstd(e) => Pin::new(e).poll_write(cx, buf),
            Self::Gzip(e) => Pin::new(e).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Zstd(e) => Pin::new(e).poll_flush(cx),
            Self::Gzip(e) => Pin::new(e).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Zstd(e) => Pin::new(e).poll_shutdown(cx),
            Self::Gzip(e) => Pin::new(e).poll_shutdown(cx),
        }
    }
}

/// A decompressed stream.
pub type Decoded = Pin<Box<dyn AsyncRead + Send>>;

/// A decompressing reader for a stored object of algorithm `a`.
pub fn decoder<R: AsyncBufRead + Unpin + Send + 'static>(a: Algorithm, r: R) -> Decoded {
    match a {
        Algorithm::Zstd => Box::pin(async_compression::tokio::bufread::ZstdDecoder::new(r)),
        Algorithm::Gzip => Box::pin(async_compression::tokio::bufread::GzipDecoder::new(r)),
    }
}
