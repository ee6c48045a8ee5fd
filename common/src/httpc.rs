//! A small HTTP/1.1 client for health checks, webhooks and reading S3 objects: one request per
//! connection, bounded by a timeout, the body read up to a limit. `https://` goes through rustls
//! with the system's root certificates, or the CA file given ([`crate::tls`]), host name checked.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Bodies longer than this are cut by [`get`] (a health check needs the start, not a 1 GB page).
pub const BODY_LIMIT: usize = 1 << 20;

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<(&'static str, Vec<u8>)>,
    pub timeout: Duration,
    /// Longer bodies are cut (`None`) or refused (`Some(what)`: an error naming `what`).
    pub body_limit: usize,
    pub refuse_longer: bool,
    /// PEM roots for `https://` instead of the system's.
    pub ca_file: Option<&'a Path>,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, url: &'a str, timeout: Duration) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
            timeout,
            body_limit: BODY_LIMIT,
            refuse_longer: false,
            ca_file: None,
        }
    }

    pub async fn send(self) -> anyhow::Result<Response> {
        let (method, url, timeout) = (self.method, self.url, self.timeout);
        match tokio::time::timeout(timeout, self.send_inner()).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!("{method} {url}: no response within {timeout:?}"),
        }
    }

    async fn send_inner(self) -> anyhow::Result<Response> {
        let (method, url) = (self.method, self.url);
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{method} {url}: {e}");
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("bad URL {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => anyhow::bail!("{url}: only http:// and https:// URLs are supported"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| err(&e))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "outrigger");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let body = match self.body {
            Some((content_type, bytes)) => {
                req = req.header(hyper::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        let req = req.body(Full::new(Bytes::from(body)))?;
        let resp = if https {
            let config = match self.ca_file {
                Some(ca) => Some(
                    crate::tls::client_config(Some(ca), crate::tls::Verify::Full)
                        .map_err(|e| err(&e))?,
                ),
                None => None,
            };
            let tls = crate::tls::connect(&host, tcp, config)
                .await
                .map_err(|e| err(&e))?;
            send_on(TokioIo::new(tls), req).await
        } else {
            send_on(TokioIo::new(tcp), req).await
        }
        .map_err(|e| err(&e))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| err(&format!("reading body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
                if buf.len() > self.body_limit {
                    if self.refuse_longer {
                        anyhow::bail!("{method} {url}: body longer than {} bytes", self.body_limit);
                    }
                    buf.truncate(self.body_limit);
                    break;
                }
            }
        }
        Ok(Response { status, body: buf })
    }
}

async fn send_on<IO>(
    io: IO,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// GET `url` (`ca_file`: PEM roots for `https://` instead of the system's).
pub async fn get(url: &str, timeout: Duration, ca_file: Option<&Path>) -> anyhow::Result<Response> {
    let mut r = Request::new("GET", url, timeout);
    r.ca_file = ca_file;
    r.send().await
}

/// POST a JSON body to `url` (`ca_file`: PEM roots for `https://` instead of the system's).
pub async fn post_json(
    url: &str,
    json: String,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> anyhow::Result<Response> {
    let mut r = Request::new("POST", url, timeout);
    r.body = Some(("application/json", json.into_bytes()));
    r.ca_file = ca_file;
    r.send().await
}

/// Whether `url` is one [`Request`] can send to: `http://` or `https://` with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("http" | "https") => Err(format!("{url:?} has no host")),
        _ => Err(format!("{url:?} must be an http:// or https:// URL")),
    }
}
