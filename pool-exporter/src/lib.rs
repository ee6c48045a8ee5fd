//! pool-exporter: a Prometheus exporter for PgBouncer, drop-in for prometheus-community's
//! pgbouncer_exporter (same names, labels, units), watching several PgBouncers from one process.
//!
//! Data flow: config -> [`target`] (one admin connection each) -> [`admin::Rows`] by column name ->
//! [`collect`] (metric families) -> [`metrics`] (rendered per scrape).

pub mod admin;
pub mod cli;
pub mod collect;
pub mod config;
pub mod exposition;
pub mod metrics;
pub mod target;

use std::future::Future;
use std::sync::Arc;

use common::app::DaemonContext;
use common::http::Reply;

pub use config::Config;
use target::{Scrape, TargetState};

/// `/probe?target=X`: X a configured target's name, or `host[:port]` reached with the first
/// target's credentials; one scrape on a connection of its own, closed after it.
pub async fn probe(cfg: &Config, query: Option<&str>) -> Reply {
    let bad = |msg: String| Reply {
        status: common::http::StatusCode::BAD_REQUEST,
        content_type: "text/plain",
        body: msg + "\n",
    };
    let target = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "target")
        .map(|(_, v)| v.replace('+', " "));
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return bad("missing ?target=NAME or ?target=HOST[:PORT]".into());
    };
    let target = match common::conn::percent_decode(&target) {
        Ok(t) => t,
        Err(e) => return bad(format!("target: {e}")),
    };
    let t = match cfg.probe_target(&target) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    let state = Arc::new(vec![TargetState::new(t)]);
    Reply {
        status: common::http::StatusCode::OK,
        content_type: exposition::CONTENT_TYPE,
        body: metrics_text(&state).await,
    }
}

/// Scrapes every target concurrently; each is bounded by its own timeout.
pub async fn scrape_all(targets: &Arc<Vec<TargetState>>) -> Vec<Scrape> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..targets.len() {
        let t = targets.clone();
        set.spawn(async move { (i, t[i].scrape().await) });
    }
    let mut out: Vec<Option<Scrape>> = (0..targets.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, s)) => out[i] = Some(s),
            Err(e) => tracing::error!("scrape task failed: {e}"),
        }
    }
    out.into_iter()
        .map(|s| {
            s.unwrap_or_else(|| Scrape {
                snapshot: Default::default(),
                error: Some(admin::AdminError::Connection {
                    message: "scrape task failed".into(),
                }),
                duration: Default::default(),
            })
        })
        .collect()
}

/// The /metrics body: a scrape of every target, rendered.
pub async fn metrics_text(targets: &Arc<Vec<TargetState>>) -> String {
    let scrapes = scrape_all(targets).await;
    let pairs: Vec<(&TargetState, Scrape)> = targets.iter().zip(scrapes).collect();
    metrics::render_scrapes(&pairs, env!("CARGO_PKG_VERSION"))
}

/// Registers `/metrics` at `telemetry_path` (scraped per request, like the Go exporter) and
/// `/probe?target=NAME|HOST[:PORT]` (one target per request, for Prometheus multi-target configs),
/// and returns the daemon's work.
pub fn daemon(
    cfg: Config,
    ctx: &mut DaemonContext,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let targets: Arc<Vec<TargetState>> = Arc::new(
        cfg.effective_targets()?
            .into_iter()
            .map(TargetState::new)
            .collect(),
    );
    let for_http = targets.clone();
    ctx.routes.extra.insert(
        cfg.telemetry_path.clone(),
        Arc::new(move |_| {
            let t = for_http.clone();
            Box::pin(async move {
                Reply {
                    status: common::http::StatusCode::OK,
                    content_type: exposition::CONTENT_TYPE,
                    body: metrics_text(&t).await,
                }
            })
        }),
    );
    if cfg.telemetry_path != "/metrics" {
        let moved = format!("metrics are at {}\n", cfg.telemetry_path);
        ctx.routes.extra.insert(
            "/metrics".into(),
            Arc::new(move |_| {
                let body = moved.clone();
                Box::pin(async move {
                    Reply {
                        status: common::http::StatusCode::NOT_FOUND,
                        content_type: "text/plain",
                        body,
                    }
                })
            }),
        );
    }
    let cfg = Arc::new(cfg);
    ctx.routes.extra.insert(
        "/probe".into(),
        Arc::new(move |query| {
            let cfg = cfg.clone();
            Box::pin(async move { probe(&cfg, query.as_deref()).await })
        }),
    );
    let cancel = ctx.cancel.clone();
    let readiness = ctx.readiness.clone();
    Ok(async move {
        let names: Vec<&str> = targets.iter().map(|t| t.config.name.as_str()).collect();
        tracing::info!(targets = ?names, "pool-exporter serving");
        readiness.set(true);
        cancel.cancelled().await;
        Ok(())
    })
}
