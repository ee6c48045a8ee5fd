//! A webhook receiver: accepts JSON POSTs over `http://` or `https://` (a test CA) on a free
//! loopback port and hands each body to the test.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::process::TempDir;
use crate::tls::TestCerts;

/// Runs until dropped (its accept loop is a task of the test's runtime).
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT/hook` or `https://localhost:PORT/hook`.
    pub url: String,
    /// The CA that signs the `https://` certificate.
    pub certs: Option<TestCerts>,
    bodies: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<TempDir>,
}

impl WebhookReceiver {
    /// A plain `http://` receiver.
    pub async fn http() -> Result<Self> {
        Self::start(None).await
    }

    /// An `https://` receiver with a certificate from a fresh test CA.
    pub async fn https() -> Result<Self> {
        let dir = TempDir::new("webhook-tls")?;
        let certs = crate::tls::test_certs(dir.path())?;
        let mut r = Self::start(Some(&certs)).await?;
        r.certs = Some(certs);
        r._dir = Some(dir);
        Ok(r)
    }

    async fn start(certs: Option<&TestCerts>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let acceptor = certs.map(acceptor).transpose()?;
        let (tx, bodies) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve(tls, tx).await;
                            }
                        }
                        None => serve(tcp, tx).await,
                    }
                });
            }
        });
        let url = match certs {
            Some(_) => format!("https://localhost:{port}/hook"),
            None => format!("http://127.0.0.1:{port}/hook"),
        };
        Ok(Self {
            url,
            certs: None,
            bodies,
            task,
            _dir: None,
        })
    }

    /// The next body POSTed, within `within`.
    pub async fn next(&mut self, within: Duration) -> Result<String> {
        tokio::time::timeout(within, self.bodies.recv())
            .await
            .with_context(|| format!("no webhook call on {} within {within:?}", self.url))?
            .context("webhook receiver stopped")
    }

    /// Whether a body arrives within `within`.
    pub async fn called_within(&mut self, within: Duration) -> bool {
        self.next(within).await.is_ok()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn acceptor(certs: &TestCerts) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&certs.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&certs.key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One request: head, then a body of `content-length` bytes; answers 204.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut c: S, tx: mpsc::UnboundedSender<String>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = c.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if body.len() >= len {
            let _ = tx.send(body.to_string());
            let _ = c
                .write_all(
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            let _ = c.shutdown().await;
            return;
        }
    }
}
