//! sentinel-watch's configuration (env prefix `SENTINEL_WATCH_`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::retry::Backoff;
use common::{ConfigError, DaemonConfig, RedisSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of `/metrics`, `/status`, `/healthz`, `/readyz`. Default `0.0.0.0:9403`.
    pub listen: SocketAddr,
    /// The Sentinels to follow, as `host:port`. Default `["127.0.0.1:26379"]`.
    pub sentinels: Vec<String>,
    /// The master names to follow. Default `["mymaster"]`.
    pub masters: Vec<String>,
    /// Credentials for the Sentinels (host and port come from `sentinels`).
    pub sentinel_auth: RedisSettings,
    /// Credentials for the Redis nodes (host and port come from Sentinel).
    pub redis_auth: RedisSettings,
    /// The event log people tail. Default `backups/logs/sentinel-events.log`.
    pub event_log: PathBuf,
    /// The same event from several Sentinels within this window is one event. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// A failover with no new event for this long is closed (summary written). Default `60s`.
    #[serde(with = "humantime_serde")]
    pub failover_idle: Duration,
    /// How often the replication view (lag, quorum, agreement) is refreshed. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A Sentinel that does not answer a PING for this long is reported down
    /// (`sentinel_watch_sentinel_up 0`, a `sentinel_down` line), even with its connection open
    /// (hung, stopped, partitioned). Default `3s`.
    #[serde(with = "humantime_serde")]
    pub sentinel_down_after: Duration,
    /// Reconnect backoff for a Sentinel subscription.
    pub reconnect: Backoff,
    /// The write prober.
    pub probe: Probe,
    /// Hooks run on +switch-master and +failover-end.
    pub hooks: Hooks,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9403)),
            sentinels: vec!["127.0.0.1:26379".into()],
            masters: vec!["mymaster".into()],
            sentinel_auth: RedisSettings {
                timeout: Duration::from_secs(2),
                ..RedisSettings::default()
            },
            redis_auth: RedisSettings {
                timeout: Duration::from_secs(2),
                ..RedisSettings::default()
            },
            event_log: PathBuf::from("backups/logs/sentinel-events.log"),
            dedup_window: Duration::from_secs(10),
            failover_idle: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            sentinel_down_after: Duration::from_secs(3),
            reconnect: Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_secs(5),
                max_attempts: 0,
            },
            probe: Probe::default(),
            hooks: Hooks::default(),
        }
    }
}

/// The write prober: an increasing sequence number written to the current master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Probe {
    /// Default `true`.
    pub enabled: bool,
    /// Time between writes. Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Key prefix; keys are `<prefix>:<master>:<seq>`. Default `outrigger:probe`.
    pub key_prefix: String,
    /// `WAIT 1 <timeout>` after each write. Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// Probe keys expire after this. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub key_ttl: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_millis(100),
            key_prefix: "outrigger:probe".into(),
            wait_timeout: Duration::from_millis(100),
            key_ttl: Duration::from_secs(3600),
        }
    }
}

/// Hooks on +switch-master and +failover-end: a command and/or a webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    /// Program and arguments; gets the event as `OUTRIGGER_*` env vars and JSON on stdin.
    pub command: Vec<String>,
    /// `http://` or `https://` URL that receives the event as a JSON POST.
    pub webhook: Option<String>,
    /// PEM file of the CA(s) that sign the webhook's `https://` certificate, instead of the
    /// system's roots (a private CA). Default none.
    pub webhook_ca_file: Option<std::path::PathBuf>,
    /// Per attempt. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts in all. Default `3`.
    pub attempts: usize,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            command: vec![],
            webhook: None,
            webhook_ca_file: None,
            timeout: Duration::from_secs(10),
            attempts: 3,
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "SENTINEL_WATCH";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.sentinels.is_empty() {
            return Err(ConfigError::Invalid(
                "sentinels: at least one is needed".into(),
            ));
        }
        for (i, s) in self.sentinels.iter().enumerate() {
            if split_addr(s).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "sentinels[{i}] = {s:?} is not host:port"
                )));
            }
        }
        if self.sentinel_down_after < Duration::from_millis(300) {
            return Err(ConfigError::Invalid(format!(
                "sentinel_down_after = {:?} is too short (at least 300ms)",
                self.sentinel_down_after
            )));
        }
        if self.masters.is_empty() {
            return Err(ConfigError::Invalid(
                "masters: at least one is needed".into(),
            ));
        }
        if let Some(w) = &self.hooks.webhook {
            common::httpc::check_url(w)
                .map_err(|e| ConfigError::Invalid(format!("hooks.webhook: {e}")))?;
        }
        self.sentinel_auth.validate("sentinel_auth")?;
        self.redis_auth.validate("redis_auth")
    }
}

/// `host:port` -> (host, port).
pub fn split_addr(s: &str) -> Option<(&str, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    (!h.is_empty()).then_some((h, p.parse().ok()?))
}
