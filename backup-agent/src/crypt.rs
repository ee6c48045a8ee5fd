//! Client-side encryption of stored objects with the age format (X25519 recipients, or a
//! passphrase), streamed: the compressor writes into an age stream that writes into storage, so
//! what is stored (and hashed in the catalog) is ciphertext. Encrypted objects carry the `.age`
//! suffix. age runs synchronously on a blocking thread, fed through a bounded pipe.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use crate::config::Encryption;

/// The suffix of encrypted objects.
pub const SUFFIX: &str = ".age";

/// The keys built from the settings.
pub struct Keys {
    recipients: Vec<Box<dyn age::Recipient + Send + Sync>>,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Where identities would come from, for error messages.
    identity_hint: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keys({} recipients, {} identities)",
            self.recipients.len(),
            self.identities.len()
        )
    }
}

impl Encryption {
    /// Builds the keys: recipients to encrypt (when enabled) and, with `identities`, what
    /// decrypts (the identity file, or the passphrase). Backing up never reads the identity file.
    pub fn keys(&self, identities: bool) -> anyhow::Result<Keys> {
        self.validate().map_err(anyhow::Error::msg)?;
        let mut keys = Keys {
            recipients: vec![],
            identities: vec![],
            identity_hint: "set encryption.identity_file (or encryption.passphrase_file)".into(),
        };
        for r in &self.recipients {
            let r = age::x25519::Recipient::from_str(r).map_err(anyhow::Error::msg)?;
            keys.recipients.push(Box::new(r));
        }
        if let Some(p) = &self.passphrase_file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("encryption.passphrase_file {}: {e}", p.display()))?;
            let pass = text.trim_end_matches(['\r', '\n']).to_string();
            if pass.is_empty() {
                anyhow::bail!("encryption.passphrase_file {} is empty", p.display());
            }
            let secret = age::secrecy::SecretString::from(pass);
            keys.recipients
                .push(Box::new(age::scrypt::Recipient::new(secret.clone())));
            keys.identities
                .push(Box::new(age::scrypt::Identity::new(secret)));
            keys.identity_hint = format!("encryption.passphrase_file {}", p.display());
        }
        if let Some(p) = self.identity_file.as_ref().filter(|_| identities) {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("encryption.identity_file {}: {e}", p.display()))?;
            let mut n = 0;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let id = age::x25519::Identity::from_str(line).map_err(|e| {
                    anyhow::anyhow!(
                        "encryption.identity_file {} line {}: not an age identity: {e}",
                        p.display(),
                        i + 1
                    )
                })?;
                keys.identities.push(Box::new(id));
                n += 1;
            }
            if n == 0 {
                anyhow::bail!(
                    "encryption.identity_file {} holds no AGE-SECRET-KEY line",
                    p.display()
                );
            }
            keys.identity_hint = format!("encryption.identity_file {}", p.display());
        }
        Ok(keys)
    }
}

impl Keys {
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty()
    }

    fn encryptor(&self) -> std::io::Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.recipients.iter().map(|r| r.as_ref() as _))
            .map_err(|e| std::io::Error::other(format!("age: {e}")))
    }
}

/// A new X25519 identity: (secret `AGE-SECRET-KEY-1...`, public recipient `age1...`).
pub fn generate() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

/// Writes an identity (and its public key as a comment, as age-keygen does) into a new file of
/// mode 0600: never over an existing file, never through a symlink.
pub fn write_identity(path: &std::path::Path, secret: &str, public: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    writeln!(f, "# public key: {public}\n{secret}")?;
    f.sync_all()?;
    Ok(())
}

/// A writer that encrypts into `W` on a blocking thread. [`AgeWriter::finish`] ends the age
/// stream and gives `W` back; dropped unfinished, `W` is dropped unfinished too.
pub struct AgeWriter<W> {
    tx: Option<DuplexStream>,
    task: JoinHandle<std::io::Result<W>>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> AgeWriter<W> {
    pub fn new(keys: &Keys, out: W) -> std::io::Result<Self> {
        let enc = keys.encryptor()?;
        let (tx, rx) = tokio::io::duplex(256 * 1024);
        let task = tokio::task::spawn_blocking(move || {
            let mut input = SyncIoBridge::new(rx);
            let mut w = enc.wrap_output(SyncIoBridge::new(out))?;
            std::io::copy(&mut input, &mut w)?;
            let mut bridge = w.finish()?;
            std::io::Write::flush(&mut bridge)?;
            Ok(bridge.into_inner())
        });
        Ok(Self { tx: Some(tx), task })
    }

    /// Ends the stream (shut down first) and returns the inner writer.
    pub async fn finish(mut self) -> std::io::Result<W> {
        self.tx.take();
        (&mut self.task)
            .await
            .map_err(|e| std::io::Error::other(format!("encryption task: {e}")))?
    }
}

impl<W> AsyncWrite for AgeWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.tx.as_mut() {
            Some(tx) => Pin::new(tx).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tx.as_mut() {
            Some(tx) => Pin::new(tx).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tx.as_mut() {
            Some(tx) => Pin::new(tx).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Decrypts `stored` (an encrypted object named `key`) on a blocking thread. A wrong or missing
/// key, or damage, is an error of the returned reader, never garbage.
pub fn decrypting<R: AsyncRead + Unpin + Send + 'static>(
    keys: Option<Arc<Keys>>,
    key: &str,
    stored: R,
) -> Pin<Box<dyn AsyncRead + Send>> {
    let (mut tx, rx) = tokio::io::duplex(256 * 1024);
    let key = key.to_string();
    let task = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let keys = keys.filter(|k| !k.identities.is_empty()).ok_or_else(|| {
            std::io::Error::other(format!(
                "object {key} is encrypted (age) and no decryption key is configured: set encryption.identity_file (or encryption.passphrase_file)"
            ))
        })?;
        let input = std::io::BufReader::new(SyncIoBridge::new(stored));
        let dec = age::Decryptor::new_buffered(input).map_err(|e| {
            std::io::Error::other(format!("object {key}: not a readable age file: {e}"))
        })?;
        let mut plain = dec
            .decrypt(keys.identities.iter().map(|i| i.as_ref() as _))
            .map_err(|e| {
                std::io::Error::other(format!(
                    "object {key}: cannot decrypt with {}: {e}",
                    keys.identity_hint
                ))
            })?;
        let mut out = SyncIoBridge::new(&mut tx);
        std::io::copy(&mut plain, &mut out)
            .map_err(|e| std::io::Error::new(e.kind(), format!("object {key}: decrypting: {e}")))?;
        Ok(())
    });
    Box::pin(DecryptReader {
        rx,
        task: Some(task),
    })
}

/// The plaintext pipe; at its end, the decryption task's outcome.
struct DecryptReader {
    rx: DuplexStream,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl AsyncRead for DecryptReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.rx).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                // End of the pipe: did decryption finish or fail?
                let Some(task) = self.task.as_mut() else {
                    return Poll::Ready(Ok(()));
                };
                match Pin::new(task).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => {
                        self.task = None;
                        match r {
                            Ok(Ok(())) => Poll::Ready(Ok(())),
                            Ok(Err(e)) => Poll::Ready(Err(e)),
                            Err(e) => Poll::Ready(Err(std::io::Error::other(format!(
                                "decryption task: {e}"
                            )))),
                        }
                    }
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn roundtrip(enc: &Encryption, dec: &Encryption) -> std::io::Result<Vec<u8>> {
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let keys = enc.keys(false).expect("keys");
        let mut w = AgeWriter::new(&keys, Vec::new())?;
        w.write_all(&plain).await?;
        w.shutdown().await?;
        let sealed = w.finish().await?;
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        let keys = Arc::new(dec.keys(true).expect("keys"));
        let mut r = decrypting(Some(keys), "x.zst.age", std::io::Cursor::new(sealed));
        let mut back = Vec::new();
        r.read_to_end(&mut back).await?;
        assert_eq!(back, plain);
        Ok(back)
    }

    #[tokio::test]
    async fn passphrase_roundtrip_and_wrong_passphrase() {
        let dir = std::env::temp_dir().join(format!("ba-crypt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (good, bad) = (dir.join("good"), dir.join("bad"));
        std::fs::write(&good, "correct horse battery staple\n").expect("write");
        std::fs::write(&bad, "wrong\n").expect("write");
        let with = |p: &PathBuf| Encryption {
            passphrase_file: Some(p.clone()),
            ..Default::default()
        };
        roundtrip(&with(&good), &with(&good))
            .await
            .expect("roundtrip");
        let e = roundtrip(&with(&good), &with(&bad))
            .await
            .expect_err("wrong passphrase");
        assert!(e.to_string().contains("cannot decrypt"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Encryption {
            recipients: vec!["age1nope".into()],
            ..Default::default()
        }
        .validate()
        .expect_err("bad recipient");
        assert!(e.contains("encryption.recipients"), "{e}");
        let (_, public) = generate();
        let e = Encryption {
            recipients: vec![public],
            passphrase_file: Some("/x".into()),
            ..Default::default()
        }
        .validate()
        .expect_err("mixed");
        assert!(e.contains("choose one"), "{e}");
    }
}
