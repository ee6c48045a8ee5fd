//! health-agent's configuration (env prefix `HEALTH_AGENT_`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{ConfigError, DaemonConfig, PgSettings, RedisSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the `/metrics` and `/status` server. Default `0.0.0.0:9402`.
    pub listen: SocketAddr,
    /// Time between check cycles. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The state-change log people tail. Default `backups/logs/health.log`.
    pub health_log: PathBuf,
    /// PostgreSQL to check. Default `127.0.0.1:5432`, user `postgres`.
    pub postgres: PgSettings,
    /// Redis master (replicas are found through it). Default `127.0.0.1:6379`.
    pub redis: RedisSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9402)),
            interval: Duration::from_secs(300),
            health_log: PathBuf::from("backups/logs/health.log"),
            postgres: PgSettings::default(),
            redis: RedisSettings::default(),
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "HEALTH_AGENT";

    fn validate(&self) -> Result<(), ConfigError> {
        self.postgres.validate("postgres")?;
        self.redis.validate("redis")
    }
}
