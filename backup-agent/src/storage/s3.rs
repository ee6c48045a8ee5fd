//! S3 storage (aws-sdk-s3): region, endpoint URL and path-style for S3-compatible servers,
//! credentials from the config (`*_file`) or the standard AWS chain, optional server-side
//! encryption and storage class, checksums "when required" (what S3-compatible servers need).
//!
//! Uploads stream as multipart uploads with one bounded part buffer: the writer feeds a pipe, an
//! uploader task sends parts as they fill. The object exists only once the upload is completed,
//! which happens only when the writer is finished; a writer dropped half way aborts the upload.
//! An upload interrupted by a crash stays incomplete (never listed) until `cleanup` aborts it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::oneshot;

use super::object::Stored;

use crate::config::S3Config;

/// How multipart parts grow: `base` bytes for the first `grow_every` parts, then twice as much
/// every `grow_every` parts, at most `max_part`; at most `max_parts` parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    pub base: usize,
    pub grow_every: usize,
    pub max_parts: usize,
    pub max_part: usize,
}

impl PartPlan {
    /// S3's limits: 10 000 parts of at most 5 GiB; doubling every 1000 parts.
    pub fn s3(base: usize) -> Self {
        Self {
            base,
            grow_every: 1000,
            max_parts: 10_000,
            max_part: 5 << 30,
        }
    }

    /// The size of part `n` (from 1).
    pub fn size(&self, n: usize) -> usize {
        let doublings = (n.saturating_sub(1) / self.grow_every.max(1)).min(40) as u32;
        self.base
            .saturating_mul(1usize << doublings)
            .min(self.max_part)
    }

    /// The largest object the plan can upload.
    pub fn max_object(&self) -> u64 {
        (1..=self.max_parts).map(|n| self.size(n) as u64).sum()
    }
}

/// An S3 bucket (and prefix) as storage.
#[derive(Clone, Debug)]
pub struct S3 {
    client: Client,
    bucket: String,
    prefix: String,
    sse: Option<ServerSideEncryption>,
    class: Option<StorageClass>,
    plan: PartPlan,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("S3 {what}: {e}"))
}

/// The error's full chain: the SDK's Display alone says only "dispatch failure".
fn sdk_err<E: std::error::Error + 'static>(e: E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

impl S3 {
    pub async fn new(c: &S3Config) -> anyhow::Result<Self> {
        use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
        if c.bucket.is_empty() {
            anyhow::bail!("storage.s3.bucket is required");
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(c.region.clone()));
        let secret = common::config::resolve_secret(
            "storage.s3.secret_access_key",
            c.secret_access_key.as_ref(),
            c.secret_access_key_file.as_deref(),
        )?;
        if let (Some(id), Some(secret)) = (&c.access_key_id, &secret) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id,
                secret.expose(),
                None,
                None,
                "outrigger-config",
            ));
        }
        let shared = loader.load().await;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(c.connect_timeout)
            .operation_attempt_timeout(c.request_timeout)
            .build();
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(timeouts)
            .force_path_style(c.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &c.endpoint {
            b = b.endpoint_url(e);
        }
        let mut prefix = c.prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            client: Client::from_conf(b.build()),
            bucket: c.bucket.clone(),
            prefix,
            sse: c
                .server_side_encryption
                .as_deref()
                .map(ServerSideEncryption::from),
            class: c.storage_class.as_deref().map(StorageClass::from),
            plan: PartPlan::s3(c.part_size.max(5 << 20)),
        })
    }

    /// This bucket with another part plan (tests: tiny parts and a low part ceiling).
    #[doc(hidden)]
    pub fn with_part_plan(mut self, plan: PartPlan) -> Self {
        self.plan = plan;
        self
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Starts a streamed upload.
    pub fn create(&self, key: &str) -> S3Writer {
        let (tx, rx) = tokio::io::duplex(256 * 1024);
        let (commit_tx, commit_rx) = oneshot::channel();
        let me = self.clone();
        let k = key.to_string();
        let failure = Arc::new(Mutex::new(None));
        let why = failure.clone();
        let task = tokio::spawn(async move { me.upload(k, rx, commit_rx, why).await });
        S3Writer {
            pipe: Some(tx),
            commit: Some(commit_tx),
            task: Some(task),
            failure,
        }
    }

    async fn upload(
        &self,
        key: String,
        mut rx: DuplexStream,
        commit: oneshot::Receiver<()>,
        failure: Arc<Mutex<Option<String>>>,
    ) -> std::io::Result<Stored> {
        let full = self.full(&key);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut upload_id: Option<String> = None;
        let mut parts: Vec<CompletedPart> = vec![];
        let mut buf: Vec<u8> = Vec::with_capacity(self.plan.size(1));
        let result: std::io::Result<()> = async {
            loop {
                // Fill one part (or reach the end of the stream). Parts grow with the object.
                let part_size = self.plan.size(parts.len() + 1);
                buf.clear();
                buf.reserve(part_size);
                while buf.len() < part_size {
                    let start = buf.len();
                    let want = (part_size - start).min(256 * 1024);
                    buf.resize(start + want, 0);
                    let n = rx.read(&mut buf[start..]).await?;
                    buf.truncate(start + n);
                    if n == 0 {
                        break;
                    }
                }
                let last = buf.len() < part_size;
                hasher.update(&buf);
                size += buf.len() as u64;
                if upload_id.is_none() && last {
                    return Ok(()); // small object: one PUT after the commit check below
                }
                if parts.len() == self.plan.max_parts && !buf.is_empty() {
                    return Err(io_err(
                        "upload",
                        format!(
                            "{key} is larger than {} parts can hold ({} bytes)",
                            self.plan.max_parts,
                            self.plan.max_object()
                        ),
                    ));
                }
                let id = match &upload_id {
                    Some(id) => id.clone(),
                    None => {
                        let mut req = self
                            .client
                            .create_multipart_upload()
                            .bucket(&self.bucket)
                            .key(&full);
                        if let Some(s) = &self.sse {
                            req = req.server_side_encryption(s.clone());
                        }
                        if let Some(c) = &self.class {
                            req = req.storage_class(c.clone());
                        }
                        let out = req
                            .send()
                            .await
                            .map_err(|e| io_err("create multipart upload", sdk_err(e)))?;
                        let id = out.upload_id().unwrap_or_default().to_string();
                        upload_id = Some(id.clone());
                        id
                    }
                };
                if !buf.is_empty() {
                    let n = parts.len() as i32 + 1;
                    // The part's bytes move into the request (retries share them); the next
                    // part gets a fresh buffer: one part in memory at a time.
                    let body = bytes::Bytes::from(std::mem::take(&mut buf));
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(&full)
                        .upload_id(&id)
                        .part_number(n)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| io_err("upload part", sdk_err(e)))?;
                    parts.push(
                        CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .build(),
                    );
                }
                if last {
                    return Ok(());
                }
            }
        }
        .await;
        // Stop reading: a writer still writing (after a failed upload) gets this error at once
        // instead of waiting on a full pipe.
        if let Err(e) = &result {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            // Aborted before the writer learns of the failure (its next write fails once `rx`
            // is gone): a caller that gives up then, or a process that exits, leaves no
            // incomplete upload behind.
            // A failed abort is left to `cleanup`.
            if let Some(id) = upload_id.take() {
                let _ = self.abort(&key, &id).await;
            }
        }
        drop(rx);
        // Only a finished writer commits; a dropped one (an error half way) aborts.
        let committed = commit.await.is_ok();
        match (result, committed, upload_id) {
            (Ok(()), true, None) => {
                let mut req = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .body(ByteStream::from(bytes::Bytes::from(std::mem::take(
                        &mut buf,
                    ))));
                if let Some(s) = &self.sse {
                    req = req.server_side_encryption(s.clone());
                }
                if let Some(c) = &self.class {
                    req = req.storage_class(c.clone());
                }
                req.send()
                    .await
                    .map_err(|e| io_err("put object", sdk_err(e)))?;
            }
            (Ok(()), true, Some(id)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| io_err("complete multipart upload", sdk_err(e)))?;
            }
            (r, _, id) => {
                if let Some(id) = id {
                    let _ = self.abort(&key, &id).await;
                }
                r?;
                return Err(io_err(
                    "upload",
                    format!("{key} was abandoned before it was finished"),
                ));
            }
        }
        Ok(Stored {
            key,
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    async fn get_object(
        &self,
        key: &str,
    ) -> std::io::Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| not_found_or(key, e))
    }

    /// PUT with `If-None-Match: *`: `Ok(false)` when the key exists (412 or 409).
    pub async fn put_if_absent(&self, key: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .if_none_match("*")
            .body(ByteStream::from(bytes.to_vec()));
        if let Some(s) = &self.sse {
            req = req.server_side_encryption(s.clone());
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 409)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(io_err(&format!("put {key} if absent"), sdk_err(e))),
        }
    }

    pub async fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        let out = self.get_object(key).await?;
        let bytes = out.body.collect().await.map_err(|e| io_err("read", e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    pub async fn open(&self, key: &str) -> std::io::Result<crate::storage::Reader> {
        Ok(Box::pin(self.get_object(key).await?.body.into_async_read()))
    }

    /// The stored size of an object.
    pub async fn size(&self, key: &str) -> std::io::Result<u64> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| not_found_or(key, e))?;
        Ok(out.content_length().unwrap_or(0).max(0) as u64)
    }

    /// `Ok(false)` only on a 404; a timeout, a refused credential or an outage is an error.
    pub async fn exists(&self, key: &str) -> std::io::Result<bool> {
        match self.size(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| io_err("delete", sdk_err(e)))?;
        Ok(())
    }

    /// Keys (without the prefix) under `prefix`, with their sizes.
    pub async fn list(&self, prefix: &str) -> std::io::Result<Vec<(String, u64)>> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let r = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| io_err("list", sdk_err(e)))?;
            for o in r.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push((k.to_string(), o.size().unwrap_or(0) as u64));
                }
            }
            match r.next_continuation_token() {
                Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    /// Incomplete multipart uploads started more than `older_than` ago: (key, upload id).
    pub async fn incomplete(&self, older_than: Duration) -> std::io::Result<Vec<(String, String)>> {
        let r = match self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let text = sdk_err(e);
                if text.contains("NotImplemented") {
                    // Some S3-compatible servers cannot list them: say what to do instead.
                    tracing::warn!(
                        "{}: this S3 server cannot list incomplete multipart uploads; add a bucket \
                         lifecycle rule (AbortIncompleteMultipartUpload) to remove interrupted uploads",
                        self.describe()
                    );
                    return Ok(vec![]);
                }
                return Err(io_err("list multipart uploads", text));
            }
        };
        let now = SystemTime::now();
        Ok(r.uploads()
            .iter()
            .filter(|u| {
                u.initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= older_than)
            })
            .filter_map(|u| {
                let k = u.key()?.strip_prefix(&self.prefix)?.to_string();
                Some((k, u.upload_id()?.to_string()))
            })
            .collect())
    }

    pub async fn abort(&self, key: &str, upload_id: &str) -> std::io::Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| io_err("abort multipart upload", sdk_err(e)))?;
        Ok(())
    }
}

fn not_found_or<E: std::error::Error + 'static>(
    key: &str,
    e: aws_sdk_s3::error::SdkError<E>,
) -> std::io::Error {
    let kind = match e.raw_response().map(|r| r.status().as_u16()) {
        Some(404) => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, format!("S3 object {key}: {}", sdk_err(e)))
}

/// A streamed S3 object: write, then [`S3Writer::finish`].
pub struct S3Writer {
    pipe: Option<DuplexStream>,
    commit: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<Stored>>>,
    /// Why the uploader stopped, for the writer's next write.
    failure: Arc<Mutex<Option<String>>>,
}

impl S3Writer {
    pub async fn finish(mut self) -> std::io::Result<Stored> {
        use tokio::io::AsyncWriteExt;
        if let Some(c) = self.commit.take() {
            let _ = c.send(());
        }
        if let Some(mut p) = self.pipe.take() {
            p.shutdown().await?;
        }
        match self.task.take() {
            Some(t) => t.await.map_err(|e| io_err("upload task", e))?,
            None => Err(io_err("upload", "finished twice")),
        }
    }
}

impl tokio::io::AsyncWrite for S3Writer {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.pipe.as_mut() {
            // The uploader stopped reading: it failed, and said why.
            Some(p) => match std::pin::Pin::new(p).poll_write(cx, buf) {
                std::task::Poll::Ready(Err(_)) => {
                    let why = self
                        .failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    std::task::Poll::Ready(Err(match why {
                        Some(w) => std::io::Error::other(w),
                        None => io_err(
                            "upload",
                            "the uploader stopped (S3 unreachable or refused the upload)",
                        ),
                    }))
                }
                other => other,
            },
            None => std::task::Poll::Ready(Err(io_err("upload", "already finished"))),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.pipe.as_mut() {
            Some(p) => std::pin::Pin::new(p).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // The compressor's shutdown flushes its frame; the pipe closes in finish().
        match self.pipe.as_mut() {
            Some(p) => std::pin::Pin::new(p).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod part_plan {
    use super::*;

    #[test]
    fn parts_grow_so_that_ten_thousand_hold_five_tib() {
        let p = PartPlan::s3(8 << 20);
        assert_eq!(p.size(1), 8 << 20);
        assert_eq!(p.size(1000), 8 << 20);
        assert_eq!(p.size(1001), 16 << 20);
        assert_eq!(p.size(10_000), 4 << 30);
        assert!(p.max_object() >= 5u64 << 40, "{}", p.max_object());
        // At the 5 MiB minimum as well.
        assert!(PartPlan::s3(5 << 20).max_object() >= 4u64 << 40);
        // Never past 5 GiB a part.
        let big = PartPlan::s3(1 << 30);
        assert_eq!(big.size(10_000), 5 << 30);
        // The old fixed 8 MiB parts stopped at 78 GiB.
        assert!(p.max_object() > 10_000 * (8u64 << 20));
    }
}
