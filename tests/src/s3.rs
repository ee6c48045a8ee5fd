//! An S3-compatible server (s3s-fs: SigV4 signatures checked, multipart uploads) on a free loopback
//! port, with a bucket and credentials for the test. It runs in-process on its own thread and
//! runtime, so that a test can stop it mid-operation and start it again on the same port and data.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use crate::process::{TempDir, free_port};

pub const ACCESS_KEY: &str = "outrigger-test-key";
pub const SECRET_KEY: &str = "outrigger-test-secret-0123456789";
pub const BUCKET: &str = "outrigger-backups";
pub const REGION: &str = "us-east-1";

/// A running S3-compatible server.
pub struct S3Server {
    pub port: u16,
    dir: TempDir,
    running: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl S3Server {
    pub fn start() -> Result<Self> {
        let dir = TempDir::new("s3")?;
        std::fs::create_dir_all(dir.path().join(BUCKET))?;
        let mut s = Self {
            port: free_port()?,
            dir,
            running: None,
        };
        s.resume()?;
        Ok(s)
    }

    /// `http://127.0.0.1:<port>`; use path-style addressing.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the objects live on disk (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Stops serving: new connections are refused and open ones are dropped.
    pub fn stop(&mut self) {
        if let Some((tx, thread)) = self.running.take() {
            let _ = tx.send(());
            let _ = thread.join();
        }
    }

    /// Serves again on the same port and data.
    pub fn resume(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let root = self.dir.path().to_path_buf();
        let port = self.port;
        let thread = std::thread::Builder::new()
            .name(format!("s3s-fs:{port}"))
            .spawn(move || serve(root, port, stop_rx, ready_tx))?;
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("S3 server thread did not report")??;
        self.running = Some((stop_tx, thread));
        // Ready = a signed listing of the bucket answers 200.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.signed_get(&format!("/{BUCKET}"), "list-type=2") {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) if std::time::Instant::now() > deadline => {
                    bail!("S3 bucket listing answered {status}: {body}")
                }
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A GET signed with the test credentials: (status, body).
    pub fn signed_get(&self, path: &str, query: &str) -> Result<(u16, String)> {
        let host = format!("127.0.0.1:{}", self.port);
        let auth = sigv4_get_headers(
            &host,
            path,
            query,
            ACCESS_KEY,
            SECRET_KEY,
            SystemTime::now(),
        );
        crate::http::get_with(&host, path, query, &auth)
    }

    /// A GET with no signature: (status, body). The server must refuse it.
    pub fn unsigned_get(&self, path: &str, query: &str) -> Result<(u16, String)> {
        let host = format!("127.0.0.1:{}", self.port);
        crate::http::get_with(&host, path, query, &[])
    }

    /// A GET signed with a wrong secret: (status, body). The server must refuse it.
    pub fn badly_signed_get(&self, path: &str, query: &str) -> Result<(u16, String)> {
        let host = format!("127.0.0.1:{}", self.port);
        let auth = sigv4_get_headers(
            &host,
            path,
            query,
            ACCESS_KEY,
            "wrong-secret",
            SystemTime::now(),
        );
        crate::http::get_with(&host, path, query, &auth)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    root: std::path::PathBuf,
    port: u16,
    stop: tokio::sync::oneshot::Receiver<()>,
    ready: mpsc::Sender<Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    rt.block_on(async move {
        let setup = async {
            let fs =
                s3s_fs::FileSystem::new(&root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
            let mut b = s3s::service::S3ServiceBuilder::new(fs);
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            let service = b.build();
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .with_context(|| format!("S3 server: bind 127.0.0.1:{port}"))?;
            Ok::<_, anyhow::Error>((service, listener))
        };
        let (service, listener) = match setup.await {
            Ok(v) => {
                let _ = ready.send(Ok(()));
                v
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut stop = std::pin::pin!(stop);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (socket, _) = tokio::select! {
                _ = &mut stop => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(_) => continue,
                },
            };
            let service = service.clone();
            conns.spawn(async move {
                let io = hyper_util::rt::TokioIo::new(socket);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
        // A stopped server drops what it was doing, like a crashed one.
        conns.abort_all();
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// The headers of a SigV4-signed GET with an empty body.
fn sigv4_get_headers(
    host: &str,
    path: &str,
    query: &str,
    access_key: &str,
    secret_key: &str,
    now: SystemTime,
) -> Vec<(String, String)> {
    common::sigv4::Signer {
        access_key,
        secret_key,
        region: REGION,
    }
    .empty_body_headers("GET", host, path, query, now)
}
