//! A small HTTP/1.1 client (plain HTTP) for health checks and webhooks: one request per
//! connection, bounded by a timeout, the body read up to a limit.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Bodies longer than this are cut (a health check needs the start, not a 1 GB page).
pub const BODY_LIMIT: usize = 1 << 20;

/// GET `url`.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<Response> {
    request("GET", url, None, timeout).await
}

/// POST a JSON body to `url`.
pub async fn post_json(url: &str, json: String, timeout: Duration) -> anyhow::Result<Response> {
    request("POST", url, Some(json), timeout).await
}

async fn request(
    method: &str,
    url: &str,
    json: Option<String>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    match tokio::time::timeout(timeout, request_inner(method, url, json)).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("{method} {url}: no response within {timeout:?}"),
    }
}

async fn request_inner(method: &str, url: &str, json: Option<String>) -> anyhow::Result<Response> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("bad URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("{url}: only http:// URLs are supported by this build");
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "outrigger");
    if json.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(json.unwrap_or_default())))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow::anyhow!("{method} {url}: reading body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
            if buf.len() >= BODY_LIMIT {
                buf.truncate(BODY_LIMIT);
                break;
            }
        }
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&buf).into_owned(),
    })
}
