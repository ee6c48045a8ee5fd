//! A small read-only S3 client (ListObjectsV2 and GET, SigV4-signed) for daemons that must read
//! backup-agent's catalog without the AWS SDK, which stays in backup-agent (a lean build).
//! Credentials come from the config or `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::catalog::{BackupKind, Catalog, PREFIX, WAL_STATUS_KEY};
use crate::httpc::Request;
use crate::sigv4::{Signer, canonical_query, uri_encode};

/// Where backup-agent's S3 storage is (the same keys as backup-agent's `storage.s3`, minus the
/// upload settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Location {
    /// Bucket. Required.
    pub bucket: String,
    /// Key prefix inside the bucket (as configured in backup-agent). Default none.
    pub prefix: String,
    /// Region. Default `us-east-1`.
    pub region: String,
    /// Endpoint URL for S3-compatible servers. Default `https://s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Default `false`.
    pub path_style: bool,
    /// Access key id. Default `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret access key, or `secret_access_key_file`. Default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Bound on each request. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for S3Location {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A reader bound to one bucket and prefix.
#[derive(Clone, Debug)]
pub struct S3Reader {
    /// `http(s)://host[:port]`
    origin: String,
    /// The Host header (signed).
    host: String,
    /// Path before the key: `/bucket/` (path style) or `/`.
    base_path: String,
    prefix: String,
    region: String,
    access_key: String,
    secret_key: Secret,
    timeout: Duration,
}

impl S3Reader {
    pub fn new(loc: &S3Location) -> anyhow::Result<Self> {
        if loc.bucket.is_empty() {
            anyhow::bail!("s3.bucket is required");
        }
        let access_key = match &loc.access_key_id {
            Some(k) => k.clone(),
            None => std::env::var("AWS_ACCESS_KEY_ID").map_err(|_| {
                anyhow::anyhow!("no S3 access key: set s3.access_key_id or AWS_ACCESS_KEY_ID")
            })?,
        };
        let secret_key = match crate::config::resolve_secret(
            "s3.secret_access_key",
            loc.secret_access_key.as_ref(),
            loc.secret_access_key_file.as_deref(),
        )? {
            Some(s) => s,
            None => std::env::var("AWS_SECRET_ACCESS_KEY")
                .map(Secret::new)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no S3 secret key: set s3.secret_access_key(_file) or AWS_SECRET_ACCESS_KEY"
                    )
                })?,
        };
        let endpoint = loc
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", loc.region));
        let uri: hyper::Uri = endpoint
            .parse()
            .with_context(|| format!("s3.endpoint {endpoint:?} is not a URL"))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        let authority = uri
            .authority()
            .with_context(|| format!("s3.endpoint {endpoint:?} has no host"))?
            .as_str()
            .to_string();
        let (host, base_path) = if loc.path_style {
            (authority, format!("/{}/", uri_encode(&loc.bucket, false)))
        } else {
            (format!("{}.{authority}", loc.bucket), "/".to_string())
        };
        Ok(Self {
            origin: format!("{scheme}://{host}"),
            host,
            base_path,
            prefix: loc.prefix.clone(),
            region: loc.region.clone(),
            access_key,
            secret_key,
            timeout: loc.request_timeout,
        })
    }

    async fn signed_get(&self, path: &str, query: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let signer = Signer {
            access_key: &self.access_key,
            secret_key: self.secret_key.expose(),
            region: &self.region,
        };
        let headers = signer.empty_body_headers("GET", &self.host, path, query, SystemTime::now());
        let url = if query.is_empty() {
            format!("{}{path}", self.origin)
        } else {
            format!("{}{path}?{query}", self.origin)
        };
        let mut req = Request::new("GET", &url, self.timeout);
        req.headers = headers;
        req.body_limit = 64 << 20;
        req.refuse_longer = true;
        let resp = req.send().await?;
        Ok((resp.status, resp.body))
    }

    /// The object at `key` (below the prefix); `None` when it does not exist.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let full = format!("{}{key}", self.prefix);
        let path = format!("{}{}", self.base_path, uri_encode(&full, true));
        let (status, body) = self.signed_get(&path, "").await?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(s3_error(status, &body, &full)),
        }
    }

    /// Every key below `prefix` (relative to the configured prefix), in S3's (lexical) order.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let full = format!("{}{prefix}", self.prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = vec![("list-type", "2"), ("prefix", full.as_str())];
            if let Some(t) = &token {
                params.push(("continuation-token", t.as_str()));
            }
            let query = canonical_query(&params);
            let (status, body) = self.signed_get(&self.base_path, &query).await?;
            if status != 200 {
                return Err(s3_error(status, &body, &full));
            }
            let xml = String::from_utf8_lossy(&body);
            for k in xml_values(&xml, "Key") {
                if let Some(rel) = k.strip_prefix(&self.prefix) {
                    keys.push(rel.to_string());
                }
            }
            let truncated =
                xml_values(&xml, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// The WAL status and the newest manifest of each kind (backup ids sort by time), which is
    /// what an age check needs; reading every manifest of 30 days would cost hundreds of GETs.
    pub async fn read_newest(&self) -> anyhow::Result<Catalog> {
        let keys = self.list(PREFIX).await?;
        let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(b) = self.get(WAL_STATUS_KEY).await? {
            objects.push((WAL_STATUS_KEY.to_string(), b));
        }
        for kind in BackupKind::ALL {
            let dir = format!("{PREFIX}{}/", kind.as_str());
            // Newest first; a manifest that vanished between list and get (retention) is skipped.
            let mut of_kind: Vec<&String> = keys
                .iter()
                .filter(|k| k.starts_with(&dir) && k.ends_with(".json"))
                .collect();
            of_kind.sort_unstable_by(|a, b| b.cmp(a));
            for key in of_kind {
                if let Some(b) = self.get(key).await? {
                    objects.push((key.clone(), b));
                    break;
                }
            }
        }
        Ok(Catalog::from_objects(
            objects.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
        ))
    }
}

fn s3_error(status: u16, body: &[u8], key: &str) -> anyhow::Error {
    let xml = String::from_utf8_lossy(body);
    let code = xml_values(&xml, "Code").into_iter().next();
    let message = xml_values(&xml, "Message").into_iter().next();
    match (code, message) {
        (Some(c), Some(m)) => anyhow::anyhow!("S3 {key:?}: {status} {c}: {m}"),
        (Some(c), None) => anyhow::anyhow!("S3 {key:?}: {status} {c}"),
        _ => anyhow::anyhow!("S3 {key:?}: HTTP {status}"),
    }
}

/// The text of every `<tag>...</tag>` element, entities decoded. Enough for S3's flat responses.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_values_are_found_and_decoded() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b.json</Key></Contents>\
                   <Contents><Key>c.json</Key></Contents><NextContinuationToken>t/1=</NextContinuationToken></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), vec!["a&b.json", "c.json"]);
        assert_eq!(xml_values(xml, "IsTruncated"), vec!["true"]);
        assert_eq!(xml_values(xml, "NextContinuationToken"), vec!["t/1="]);
        assert!(xml_values(xml, "Missing").is_empty());
    }

    #[test]
    fn addressing_styles() {
        let mut loc = S3Location {
            bucket: "b".into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some(Secret::new("s")),
            ..Default::default()
        };
        let r = S3Reader::new(&loc).expect("reader");
        assert_eq!(r.origin, "https://b.s3.us-east-1.amazonaws.com");
        assert_eq!(r.base_path, "/");
        loc.endpoint = Some("http://127.0.0.1:9000".into());
        loc.path_style = true;
        let r = S3Reader::new(&loc).expect("reader");
        assert_eq!(
            (r.origin.as_str(), r.host.as_str()),
            ("http://127.0.0.1:9000", "127.0.0.1:9000")
        );
        assert_eq!(r.base_path, "/b/");
        loc.bucket.clear();
        assert!(S3Reader::new(&loc).is_err());
    }
}
