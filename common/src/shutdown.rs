//! The one root cancellation token: SIGTERM or SIGINT cancels it, a second signal aborts the
//! process at once (exit code 130).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Installs the handlers and returns the root token. Must be called inside a tokio runtime.
pub fn on_signals() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let root = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received: stopping; a second signal aborts at once");
        root.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!("second signal ({name}): aborting now");
        std::process::exit(130);
    });
    Ok(token)
}
