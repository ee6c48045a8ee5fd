//! Logs to stderr with `tracing` (stdout is for what a command prints: tables, JSON): text for a terminal, JSON when `LOG_FORMAT=json`; the level comes
//! from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// The output format of the process log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`text` or `json`, default `text`).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("LOG_FORMAT").as_deref() {
            Err(_) | Ok("") | Ok("text") => Ok(Self::Text),
            Ok("json") => Ok(Self::Json),
            Ok(other) => Err(format!("LOG_FORMAT={other:?} is not one of: text, json")),
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so that
/// tests can call it freely.
pub fn init() {
    let (format, bad) = match LogFormat::from_env() {
        Ok(f) => (f, None),
        Err(e) => (LogFormat::Text, Some(e)),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok()
        && let Some(e) = bad
    {
        tracing::warn!("{e}; logging as text");
    }
}
