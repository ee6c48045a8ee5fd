//! Compression of stored objects: zstd (default) or gzip, streamed.

use std::pin::Pin;

use async_compression::Level;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};

use std::sync::Arc;

use crate::config::{Algorithm, Compression};
use crate::crypt::{AgeWriter, Keys};

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

/// The compression of a stored key, by suffix (before any `.age`).
pub fn of_key(key: &str) -> Option<Algorithm> {
    let key = key.strip_suffix(crate::crypt::SUFFIX).unwrap_or(key);
    if key.ends_with(".zst") {
        Some(Algorithm::Zstd)
    } else if key.ends_with(".gz") {
        Some(Algorithm::Gzip)
    } else {
        None
    }
}

/// How objects are written and read: the compression, and the age keys when encryption is on.
#[derive(Clone, Debug)]
pub struct Codec {
    pub compression: Compression,
    pub keys: Option<Arc<Keys>>,
}

impl Codec {
    /// The codec for writing backups: compression and, when encryption is on, the recipients.
    pub fn writer(cfg: &crate::config::Config) -> anyhow::Result<Self> {
        Self::from_config(cfg, false)
    }

    /// The codec for reading backups back: it also holds the identities, when configured.
    pub fn reader(cfg: &crate::config::Config) -> anyhow::Result<Self> {
        Self::from_config(cfg, true)
    }

    fn from_config(cfg: &crate::config::Config, identities: bool) -> anyhow::Result<Self> {
        let e = &cfg.encryption;
        let keys = if e.enabled() || (identities && e.identity_file.is_some()) {
            Some(Arc::new(e.keys(identities)?))
        } else {
            None
        };
        Ok(Self {
            compression: cfg.compression.clone(),
            keys,
        })
    }

    /// Compression only (tests, tools).
    pub fn plain(compression: Compression) -> Self {
        Self {
            compression,
            keys: None,
        }
    }

    fn encrypts(&self) -> bool {
        self.keys.as_ref().is_some_and(|k| k.encrypts())
    }

    /// The suffix new objects get: `.zst`, or `.zst.age` when encrypted.
    pub fn suffix(&self) -> String {
        let mut s = suffix(self.compression.algorithm).to_string();
        if self.encrypts() {
            s.push_str(crate::crypt::SUFFIX);
        }
        s
    }

    /// Wraps a writer: compress, then (when on) encrypt. Finish with [`Encoder::finish`].
    pub fn encoder<W: AsyncWrite + Unpin + Send + 'static>(
        &self,
        w: W,
    ) -> std::io::Result<Encoder<W>> {
        let sink = self.sink(w)?;
        let c = &self.compression;
        Ok(match c.algorithm {
            // The frame's content checksum (XXH64) is checked by every decoder at the end of
            // the frame: a damaged object fails to decode instead of decoding to other bytes.
            Algorithm::Zstd => Encoder::Zstd(
                async_compression::tokio::write::ZstdEncoder::with_quality_and_params(
                    sink,
                    Level::Precise(c.level.unwrap_or(3)),
                    &[
                        async_compression::zstd::CParameter::checksum_flag(true),
                        async_compression::zstd::CParameter::nb_workers(c.workers()),
                        // 2 MiB jobs (the default is 4 windows, 8 MiB at level 3): each worker
                        // holds a job's input and output, so this bounds the memory.
                        async_compression::zstd::CParameter::job_size(2 << 20),
                    ],
                ),
            ),
            Algorithm::Gzip => {
                Encoder::Gzip(async_compression::tokio::write::GzipEncoder::with_quality(
                    sink,
                    Level::Precise(c.level.unwrap_or(6)),
                ))
            }
        })
    }

    /// Wraps a writer for bytes already compressed with this codec's algorithm (a full backup's
    /// archives, compressed by the server): stored as they come, encrypted when that is on.
    pub fn precompressed<W: AsyncWrite + Unpin + Send + 'static>(
        &self,
        w: W,
    ) -> std::io::Result<Encoder<W>> {
        Ok(Encoder::Stored(self.sink(w)?))
    }

    /// Where an encoder writes: `w`, or an age stream into `w` when encryption is on.
    fn sink<W: AsyncWrite + Unpin + Send + 'static>(&self, w: W) -> std::io::Result<Sink<W>> {
        Ok(match &self.keys {
            Some(k) if k.encrypts() => Sink::Age(AgeWriter::new(k, w)?),
            _ => Sink::Plain(w),
        })
    }

    /// Reads stored object `key` back: decrypt (`.age`), then decompress by suffix.
    pub fn decoder<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        key: &str,
        stored: R,
    ) -> anyhow::Result<Decoded> {
        let algo =
            of_key(key).ok_or_else(|| anyhow::anyhow!("object {key}: unknown compression"))?;
        Ok(if key.ends_with(crate::crypt::SUFFIX) {
            let plain = crate::crypt::decrypting(self.keys.clone(), key, stored);
            decoder(algo, tokio::io::BufReader::new(plain))
        } else {
            decoder(algo, tokio::io::BufReader::new(stored))
        })
    }
}

/// Where the compressor writes: storage, or an age stream into storage.
pub enum Sink<W> {
    Plain(W),
    Age(AgeWriter<W>),
}

impl<W: AsyncWrite + Unpin + Send + 'static> Sink<W> {
    async fn finish(self) -> std::io::Result<W> {
        match self {
            Self::Plain(w) => Ok(w),
            Self::Age(a) => a.finish().await,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Sink<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_write(cx, buf),
            Self::Age(w) => Pin::new(w).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_flush(cx),
            Self::Age(w) => Pin::new(w).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_shutdown(cx),
            Self::Age(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// A compressing (and maybe encrypting) writer.
pub enum Encoder<W> {
    Zstd(async_compression::tokio::write::ZstdEncoder<Sink<W>>),
    Gzip(async_compression::tokio::write::GzipEncoder<Sink<W>>),
    /// Compressed already: only encrypted, when that is on.
    Stored(Sink<W>),
}

impl<W: AsyncWrite + Unpin + Send + 'static> Encoder<W> {
    /// Ends the compressed (and encrypted) stream and returns the storage writer, still to be
    /// finished (completed) by the caller.
    pub async fn finish(mut self) -> std::io::Result<W> {
        use tokio::io::AsyncWriteExt;
        self.shutdown().await?;
        match self {
            Self::Zstd(e) => e.into_inner().finish().await,
            Self::Gzip(e) => e.into_inner().finish().await,
            Self::Stored(s) => s.finish().await,
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
            Self::Stored(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Zstd(e) => Pin::new(e).poll_flush(cx),
            Self::Gzip(e) => Pin::new(e).poll_flush(cx),
            Self::Stored(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Zstd(e) => Pin::new(e).poll_shutdown(cx),
            Self::Gzip(e) => Pin::new(e).poll_shutdown(cx),
            Self::Stored(s) => Pin::new(s).poll_shutdown(cx),
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
