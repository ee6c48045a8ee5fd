//! The small HTTP server every daemon runs: `/metrics` (Prometheus text format), `/healthz` (the
//! process is alive), `/readyz` (the daemon's own readiness) and any extra JSON routes a daemon adds
//! (`/status`), and POST routes a daemon adds (health-agent's `/alerts`). It stops accepting on
//! cancellation and lets open requests finish.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
pub use hyper::StatusCode;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whether the daemon is ready (`/readyz` answers 200) — set by the daemon when its sources answer.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a route answers.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

/// A route computed per request (`/status`, or a daemon's own `/metrics`); it gets the request's
/// query string (`target=x` of `/probe?target=x`), if any.
pub type Handler = Arc<
    dyn Fn(Option<String>) -> std::pin::Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync,
>;

/// A POST route: gets the request body, at most [`MAX_POST_BODY`] bytes (a longer one is answered
/// 413 without calling it).
pub type PostHandler =
    Arc<dyn Fn(Bytes) -> std::pin::Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// The largest POST body accepted.
pub const MAX_POST_BODY: usize = 1 << 20;

/// What the server serves. A path in `extra` wins over the built-in routes, so a daemon can render
/// `/metrics` itself (pool-exporter scrapes its targets per request). `post` holds the only paths
/// that accept POST.
pub struct Routes {
    pub registry: Registry,
    pub readiness: Readiness,
    pub extra: HashMap<String, Handler>,
    pub post: HashMap<String, PostHandler>,
}

impl Routes {
    pub fn new(registry: Registry, readiness: Readiness) -> Self {
        Self {
            registry,
            readiness,
            extra: HashMap::new(),
            post: HashMap::new(),
        }
    }
}

/// The OpenMetrics content type that prometheus-client writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the listener. Binding is separate from serving so that a bad address fails at startup with
/// its own error, and tests can bind port 0 and read the port back.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))
}

/// Serves until `cancel`, then waits up to 5 s for open requests.
pub async fn serve(listener: TcpListener, routes: Arc<Routes>, cancel: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics server accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let routes = routes.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let routes = routes.clone();
            async move { Ok::<_, std::convert::Infallible>(respond(&routes, req).await) }
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection error: {e}");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("metrics server: open connections did not finish within 5s");
    }
}

async fn respond(routes: &Routes, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() == Method::POST
        && let Some(h) = routes.post.get(req.uri().path())
    {
        return match Limited::new(req.into_body(), MAX_POST_BODY).collect().await {
            Ok(body) => {
                let r = h(body.to_bytes()).await;
                reply(r.status, r.content_type, r.body)
            }
            Err(e) => reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                format!("reading the body failed (at most {MAX_POST_BODY} bytes): {e}\n"),
            ),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only (on this path)\n".into(),
        );
    }
    if routes.post.contains_key(req.uri().path()) {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST only (on this path)\n".into(),
        );
    }
    if let Some(h) = routes.extra.get(req.uri().path()) {
        let r = h(req.uri().query().map(str::to_string)).await;
        return reply(r.status, r.content_type, r.body);
    }
    match req.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &routes.registry) {
                Ok(()) => reply(StatusCode::OK, METRICS_CONTENT_TYPE, body),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("encoding metrics failed: {e}\n"),
                ),
            }
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if routes.readiness.get() {
                reply(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".into(),
                )
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    resp
}
