//! TLS client side (rustls, aws-lc-rs provider): the HTTP client's `https://` and the PostgreSQL
//! connections' `sslmode`. Roots are the system's certificates, or a CA file when one is given.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted root and the host name (libpq `verify-full`, every `https://`).
    Full,
    /// Chain to a trusted root, any host name (libpq `verify-ca`).
    Ca,
    /// Encrypt only; any certificate (libpq `require`: protects against sniffing, not against a
    /// server in the middle).
    None,
}

/// A client TLS stream over `S`.
pub use tokio_rustls::client::TlsStream;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration. `ca_file` (PEM) replaces the system's roots. Configurations on the
/// system's roots are built once per verification level (reading the roots costs milliseconds
/// and memory: not per connection); with nothing to verify, no roots are read at all.
pub fn client_config(ca_file: Option<&Path>, verify: Verify) -> anyhow::Result<Arc<ClientConfig>> {
    if ca_file.is_some() {
        return build_config(ca_file, verify);
    }
    static CACHE: [OnceLock<Arc<ClientConfig>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = &CACHE[verify as usize];
    if let Some(c) = slot.get() {
        return Ok(c.clone());
    }
    let c = build_config(None, verify)?;
    Ok(slot.get_or_init(|| c).clone())
}

fn build_config(ca_file: Option<&Path>, verify: Verify) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        _ if verify == Verify::None => {}
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading CA file {}", path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing CA file {}", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("CA file {} holds no certificate", path.display());
            }
            for c in certs {
                roots
                    .add(c)
                    .with_context(|| format!("CA file {}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match verify {
        Verify::Full => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::Ca | Verify::None => {
            // verify-ca checks the chain (not the name); require checks nothing.
            let inner = if verify == Verify::Ca {
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| anyhow::anyhow!("no trusted root certificate: {e}"))?,
                )
            } else {
                None
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Relaxed {
                    inner,
                    algorithms: provider().signature_verification_algorithms,
                }))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// TLS handshake on `stream` for `host` (`config` defaults to system roots, full verification).
pub async fn connect<S>(
    host: &str,
    stream: S,
    config: Option<Arc<ClientConfig>>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = match config {
        Some(c) => c,
        None => client_config(None, Verify::Full)?,
    };
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a valid TLS server name"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| anyhow::anyhow!("TLS handshake with {host}: {e}"))
}

/// `verify-ca` (chain checked, name not) and `require` (nothing checked); handshake signatures
/// are always checked.
#[derive(Debug)]
struct Relaxed {
    inner: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS client configuration for a PostgreSQL `sslmode` (libpq's meanings): `None` for
/// `disable`; `prefer` and `require` encrypt without checking the certificate; `verify-ca`
/// checks the chain, `verify-full` the chain and the host name. Roots: `sslrootcert`, else the
/// system's.
pub fn pg_config(
    mode: crate::TlsMode,
    rootcert: Option<&Path>,
) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    use crate::TlsMode;
    Ok(match mode {
        TlsMode::Disable => None,
        TlsMode::Prefer | TlsMode::Require => Some(client_config(rootcert, Verify::None)?),
        TlsMode::VerifyCa => Some(client_config(rootcert, Verify::Ca)?),
        TlsMode::VerifyFull => Some(client_config(rootcert, Verify::Full)?),
    })
}

/// rustls for tokio-postgres (`MakeTlsConnect`).
#[derive(Clone)]
pub struct MakeRustls {
    config: Option<Arc<ClientConfig>>,
}

impl MakeRustls {
    /// `None`: connections with `SslMode::Disable` only (TLS is never attempted).
    pub fn new(config: Option<Arc<ClientConfig>>) -> Self {
        Self { config }
    }
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = std::io::Error;

    /// tokio-postgres asks for a connector before it looks at sslmode, also with `disable`:
    /// that must succeed; only a handshake (never started with `disable`) needs the config.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, std::io::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            domain: domain.to_string(),
        })
    }
}

/// One pending TLS handshake for tokio-postgres.
pub struct RustlsConnect {
    config: Option<Arc<ClientConfig>>,
    domain: String,
}

impl<S> tokio_postgres::tls::TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<PgTlsStream<S>, std::io::Error>> + Send>,
    >;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let Some(config) = self.config else {
                return Err(std::io::Error::other(
                    "TLS handshake requested although sslmode = \"disable\"",
                ));
            };
            connect(&self.domain, stream, Some(config))
                .await
                .map(PgTlsStream)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))
        })
    }
}

/// A TLS stream tokio-postgres can use (no channel binding).
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
