//! pool-exporter's configuration (env prefix `POOL_EXPORTER_`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{ConfigError, DaemonConfig, PgSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the `/metrics` server. Default `0.0.0.0:9127` (the Go exporter's port).
    pub listen: SocketAddr,
    /// The PgBouncers to scrape. Default: one target `pgbouncer` at `127.0.0.1:6432`, user
    /// `pgbouncer_exporter`, database `pgbouncer`.
    pub targets: Vec<Target>,
}

/// One PgBouncer admin console.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// Name, the value of the `pgbouncer` label on every series. Default `pgbouncer`.
    pub name: String,
    /// Extra constant labels on every series of this target. Default none.
    pub labels: BTreeMap<String, String>,
    /// How to reach the admin console; the user must be in `stats_users` or `admin_users`.
    /// Default `127.0.0.1:6432`, user `pgbouncer_exporter`, dbname `pgbouncer`.
    pub admin: PgSettings,
    /// Time allowed for one scrape of this target. Default `3s`.
    #[serde(with = "humantime_serde")]
    pub scrape_timeout: Duration,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            name: "pgbouncer".into(),
            labels: BTreeMap::new(),
            admin: PgSettings {
                port: 6432,
                user: "pgbouncer_exporter".into(),
                dbname: "pgbouncer".into(),
                ..PgSettings::default()
            },
            scrape_timeout: Duration::from_secs(3),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9127)),
            targets: vec![Target::default()],
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "POOL_EXPORTER";

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            if !seen.insert(&t.name) {
                return Err(ConfigError::Invalid(format!(
                    "targets[{i}].name: {:?} is used by two targets; names must be unique",
                    t.name
                )));
            }
            t.admin.validate(&format!("targets[{i}].admin"))?;
        }
        Ok(())
    }
}
