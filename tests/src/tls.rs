//! A test CA and a server certificate it signs (openssl), for servers that speak TLS in tests:
//! PostgreSQL with `ssl = on`, the webhook receiver over `https://`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::process::run;

/// PEM files in the directory given to [`test_certs`].
#[derive(Clone, Debug)]
pub struct TestCerts {
    /// The CA's certificate: what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate, for 127.0.0.1 and localhost.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8), mode 0600.
    pub key: PathBuf,
}

/// A P-256 CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`server.pem`, `server.key`), valid two days, written into `dir`.
pub fn test_certs(dir: &Path) -> Result<TestCerts> {
    let ssl = |args: &[&str]| -> Result<()> {
        run(
            Command::new("openssl").args(args).current_dir(dir),
            &format!("openssl {}", args.first().copied().unwrap_or("")),
        )
        .map(|_| ())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=outrigger test CA",
    ]);
    ssl(&ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    ssl(&csr)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n",
    )?;
    ssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ])?;
    let key = dir.join("server.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key,
    })
}
