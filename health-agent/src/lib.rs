//! health-agent: checks every service of the stack on a schedule (every 5 minutes by default) and
//! writes health.log when something changes state.
//!
//! Data flow: config -> [`checks`] (one outcome each, bounded by a timeout) -> [`state`] (debounce)
//! -> [`alerting`] (health.log, webhook) and [`metrics`], `/status`. [`receiver`]: Alertmanager's
//! alerts posted to `/alerts` go to health.log too.

pub mod alerting;
pub mod checks;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod receiver;
pub mod runner;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use common::app::DaemonContext;
use common::http::{Reply, StatusCode};
use common::logfmt::LogFile;

pub use config::Config;
use runner::Runner;

/// Builds the runner (opening health.log), registers metrics and `/status`, returns the work.
pub fn daemon(
    cfg: Config,
    ctx: &mut DaemonContext,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let metrics = metrics::Metrics::register(&mut ctx.routes.registry);
    let log = LogFile::open(&cfg.health_log)
        .map_err(|e| anyhow::anyhow!("health_log {}: {e}", cfg.health_log.display()))?;
    let log = Arc::new(log);
    ctx.routes.post.insert(
        "/alerts".into(),
        receiver::route(log.clone(), metrics.clone()),
    );
    let alerting = Arc::new(alerting::Alerting::new(
        log,
        cfg.webhook.clone(),
        ctx.cancel.clone(),
    ));
    let runner = Arc::new(Runner::new(cfg, alerting, metrics));
    let for_status = runner.clone();
    ctx.routes.extra.insert(
        "/status".into(),
        Arc::new(move |_| {
            let r = for_status.clone();
            Box::pin(async move {
                match serde_json::to_string_pretty(&serde_json::json!({ "checks": r.status() })) {
                    Ok(body) => Reply {
                        status: StatusCode::OK,
                        content_type: "application/json",
                        body,
                    },
                    Err(e) => Reply {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        content_type: "text/plain",
                        body: format!("{e}\n"),
                    },
                }
            })
        }),
    );
    let cancel = ctx.cancel.clone();
    let readiness = ctx.readiness.clone();
    Ok(async move {
        readiness.set(true);
        runner.run(cancel).await;
        Ok(())
    })
}
