//! What the failover and partition tests and the failover bench share.

use std::path::Path;
use std::time::Duration;

use common::{RedisSettings, Secret};
use sentinel_watch::Config;

/// sentinel-watch following `sentinels` (nodes with `password`, Sentinels without), 1 s timeouts
/// and a 1 s poll, its event log at `log`.
pub fn config(sentinels: Vec<String>, password: &str, log: &Path) -> Config {
    Config {
        sentinels,
        masters: vec!["mymaster".into()],
        redis_auth: RedisSettings {
            password: Some(Secret::new(password)),
            timeout: Duration::from_secs(1),
            ..RedisSettings::default()
        },
        sentinel_auth: RedisSettings {
            timeout: Duration::from_secs(1),
            ..RedisSettings::default()
        },
        event_log: log.to_path_buf(),
        poll_interval: Duration::from_secs(1),
        ..Config::default()
    }
}
