//! sentinel-watch's configuration (env prefix `SENTINEL_WATCH_`).

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{ConfigError, DaemonConfig, RedisSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the `/metrics` server. Default `0.0.0.0:9403`.
    pub listen: SocketAddr,
    /// The Sentinels to follow, as `host:port`. Default `127.0.0.1:26379`.
    pub sentinels: Vec<String>,
    /// The master names to follow. Default `["mymaster"]`.
    pub masters: Vec<String>,
    /// Credentials for the Sentinels (host and port come from `sentinels`).
    pub sentinel_auth: RedisSettings,
    /// Credentials for the Redis nodes (host and port come from Sentinel).
    pub redis_auth: RedisSettings,
    /// The event log people tail. Default `backups/logs/sentinel-events.log`.
    pub event_log: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9403)),
            sentinels: vec!["127.0.0.1:26379".into()],
            masters: vec!["mymaster".into()],
            sentinel_auth: RedisSettings::default(),
            redis_auth: RedisSettings::default(),
            event_log: PathBuf::from("backups/logs/sentinel-events.log"),
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "SENTINEL_WATCH";

    fn validate(&self) -> Result<(), ConfigError> {
        for (i, s) in self.sentinels.iter().enumerate() {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "sentinels[{i}] = {s:?} is not host:port"
                )));
            }
        }
        self.sentinel_auth.validate("sentinel_auth")?;
        self.redis_auth.validate("redis_auth")
    }
}
