//! backup-agent's configuration (env prefix `BACKUP_AGENT_`).

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{ConfigError, DaemonConfig, PgSettings, RedisSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the `/metrics` server. Default `0.0.0.0:9401`.
    pub listen: SocketAddr,
    /// The PostgreSQL server to back up; the user needs the REPLICATION attribute.
    /// Default `127.0.0.1:5432`, user `postgres`.
    pub postgres: PgSettings,
    /// The Redis deployment to snapshot. Default `127.0.0.1:6379`.
    pub redis: RedisSettings,
    /// Where backups go.
    pub storage: Storage,
    /// The job log people tail. Default `backups/logs/backup.log`.
    pub log_file: PathBuf,
}

/// Backup storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Local directory holding the catalog and objects. Default `backups`.
    pub path: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: PathBuf::from("backups"),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9401)),
            postgres: PgSettings::default(),
            redis: RedisSettings::default(),
            storage: Storage::default(),
            log_file: PathBuf::from("backups/logs/backup.log"),
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "BACKUP_AGENT";

    fn validate(&self) -> Result<(), ConfigError> {
        self.postgres.validate("postgres")?;
        self.redis.validate("redis")
    }
}
