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
            let mut b = s3s::service::S3ServiceBuilder::new(WithUploadListing {
                fs,
                root: root.clone(),
                conditional_puts: tokio::sync::Mutex::new(()),
            });
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

/// s3s-fs plus ListMultipartUploads, which it lacks: every other operation is s3s-fs's own; the
/// listing reads the metadata files s3s-fs keeps for each upload in progress
/// (`.bucket-<b64>.object-<b64>.upload-<id>.metadata.json`, removed when the upload is completed
/// or aborted), so that cleanup of interrupted uploads can be tested against real uploads.
///
/// Conditional PUTs (`If-None-Match: *`) are made atomic: s3s-fs checks that the object is absent
/// and then writes it, so two concurrent claims of one key could both succeed, where S3 lets only
/// one. They are serialised here, which is enough for a test server.
struct WithUploadListing {
    fs: s3s_fs::FileSystem,
    root: std::path::PathBuf,
    conditional_puts: tokio::sync::Mutex<()>,
}

/// Forwards operations to s3s-fs (the signature `#[async_trait]` gives the trait's methods).
macro_rules! delegate {
    ($($name:ident: $input:ident -> $output:ident),* $(,)?) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                req: s3s::S3Request<s3s::dto::$input>,
            ) -> std::pin::Pin<Box<dyn std::future::Future<
                Output = s3s::S3Result<s3s::S3Response<s3s::dto::$output>>,
            > + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                self.fs.$name(req)
            }
        )*
    };
}

#[async_trait::async_trait]
impl s3s::S3 for WithUploadListing {
    delegate! {
        abort_multipart_upload: AbortMultipartUploadInput -> AbortMultipartUploadOutput,
        complete_multipart_upload: CompleteMultipartUploadInput -> CompleteMultipartUploadOutput,
        create_bucket: CreateBucketInput -> CreateBucketOutput,
        create_multipart_upload: CreateMultipartUploadInput -> CreateMultipartUploadOutput,
        delete_object: DeleteObjectInput -> DeleteObjectOutput,
        delete_objects: DeleteObjectsInput -> DeleteObjectsOutput,
        get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput,
        get_object: GetObjectInput -> GetObjectOutput,
        head_bucket: HeadBucketInput -> HeadBucketOutput,
        head_object: HeadObjectInput -> HeadObjectOutput,
        list_buckets: ListBucketsInput -> ListBucketsOutput,
        list_objects: ListObjectsInput -> ListObjectsOutput,
        list_objects_v2: ListObjectsV2Input -> ListObjectsV2Output,
        list_parts: ListPartsInput -> ListPartsOutput,
        upload_part: UploadPartInput -> UploadPartOutput,
    }

    async fn put_object(
        &self,
        req: s3s::S3Request<s3s::dto::PutObjectInput>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::dto::PutObjectOutput>> {
        if req.input.if_none_match.is_none() {
            return self.fs.put_object(req).await;
        }
        let _one_at_a_time = self.conditional_puts.lock().await;
        self.fs.put_object(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: s3s::S3Request<s3s::dto::ListMultipartUploadsInput>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let b64 = base64_simd::URL_SAFE_NO_PAD;
        let mut uploads = vec![];
        let entries =
            std::fs::read_dir(&self.root).map_err(|e| s3s::s3_error!(InternalError, "{e}"))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name
                .strip_prefix(".bucket-")
                .and_then(|r| r.strip_suffix(".metadata.json"))
            else {
                continue;
            };
            let Some((bucket, rest)) = rest.split_once(".object-") else {
                continue;
            };
            let Some((key, upload_id)) = rest.split_once(".upload-") else {
                continue;
            };
            let decode = |s: &str| {
                b64.decode_to_vec(s)
                    .ok()
                    .and_then(|v| String::from_utf8(v).ok())
            };
            let (Some(bucket), Some(key)) = (decode(bucket), decode(key)) else {
                continue;
            };
            if bucket != input.bucket || !key.starts_with(&prefix) {
                continue;
            }
            let initiated = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            uploads.push(s3s::dto::MultipartUpload {
                key: Some(key),
                upload_id: Some(upload_id.to_string()),
                initiated: Some(initiated.into()),
                ..Default::default()
            });
        }
        Ok(s3s::S3Response::new(s3s::dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            uploads: Some(uploads),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }
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
