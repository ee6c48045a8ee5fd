//! What two or more Outrigger daemons share.
//!
//! Startup order in every daemon: telemetry -> config -> metrics server -> signal handler
//! -> work loops, all under one root [`tokio_util::sync::CancellationToken`]. [`app`] wires that order
//! once so that each `main.rs` stays thin.

pub mod app;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod http;
pub mod httpc;
pub mod logfmt;
pub mod metrics;
pub mod output;
pub mod process;
pub mod retry;
pub mod s3read;
pub mod shutdown;
pub mod sigv4;
pub mod table;
pub mod telemetry;
pub mod tls;

pub use config::{ConfigError, DaemonConfig, Secret};
pub use conn::{PgSettings, RedisSettings, TlsMode};
