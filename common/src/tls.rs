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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration. `ca_file` (PEM) replaces the system's roots.
pub fn client_config(ca_file: Option<&Path>, verify: Verify) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
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
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build();
            let inner = match (verify, inner) {
                (Verify::Ca, Err(e)) => {
                    return Err(anyhow::anyhow!("no trusted root certificate: {e}"));
                }
                (_, inner) => inner.ok(),
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

/// The default configuration (system roots, full verification), built once.
fn default_config() -> anyhow::Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let c = client_config(None, Verify::Full)?;
    Ok(CONFIG.get_or_init(|| c).clone())
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
        None => default_config()?,
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
