//! The job context: what every job and command runs with, built once per process.

use std::sync::Arc;

use common::logfmt::LogFile;
use tokio_util::sync::CancellationToken;

use crate::compress::Codec;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// What every job runs with, built once per process: by the daemon for its scheduler and WAL
/// archiver, by a CLI command for itself. One storage client (one S3 client and its connection
/// pool) serves every job; a config whose storage or encryption cannot work fails here, at
/// start, not at the first 02:00.
#[derive(Clone)]
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub storage: Storage,
    /// Compression, and the recipients when encryption is on: what backups are written with.
    pub codec: Codec,
    /// backup.log.
    pub log: Arc<LogFile>,
    pub metrics: Metrics,
    /// The process's root token: cancelled on SIGTERM/SIGINT.
    pub cancel: CancellationToken,
}

impl Ctx {
    pub async fn new(
        cfg: Arc<Config>,
        log: Arc<LogFile>,
        metrics: Metrics,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let storage = Storage::from_config(&cfg.storage).await?;
        Self::with_storage(cfg, storage, log, metrics, cancel)
    }

    /// A context on storage already opened (`storage` must be the one `cfg.storage` names).
    pub fn with_storage(
        cfg: Arc<Config>,
        storage: Storage,
        log: Arc<LogFile>,
        metrics: Metrics,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let codec = Codec::writer(&cfg)?;
        Ok(Self {
            cfg,
            storage,
            codec,
            log,
            metrics,
            cancel,
        })
    }

    /// A backup command's context: backup.log opened from the config (an unusable path fails
    /// here), metrics that nothing serves.
    pub async fn for_command(cfg: Config, cancel: CancellationToken) -> anyhow::Result<Self> {
        let log = LogFile::open(&cfg.log_file)
            .map_err(|e| anyhow::anyhow!("log_file {}: {e}", cfg.log_file.display()))?;
        Self::new(Arc::new(cfg), Arc::new(log), Metrics::default(), cancel).await
    }

    /// The context of a command that reads backups (restore, verify, list, wal-fetch): backup.log
    /// is not opened, so that a restore run as another user (PostgreSQL's, for wal-fetch) needs
    /// no right to it.
    pub async fn for_reading(cfg: Config, cancel: CancellationToken) -> anyhow::Result<Self> {
        let log = LogFile::deferred(&cfg.log_file);
        Self::new(Arc::new(cfg), Arc::new(log), Metrics::default(), cancel).await
    }

    /// The codec for reading backups back (with the identities, when configured): built when a
    /// restore, verify or drill needs it, so that a daemon that only writes never reads them.
    pub fn reader(&self) -> anyhow::Result<Codec> {
        Codec::reader(&self.cfg)
    }
}
