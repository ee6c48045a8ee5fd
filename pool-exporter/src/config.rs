//! pool-exporter's configuration (env prefix `POOL_EXPORTER_`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{ConfigError, DaemonConfig, PgSettings, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the `/metrics` server. Default `0.0.0.0:9127` (the Go exporter's port).
    pub listen: SocketAddr,
    /// The path `/metrics` is served on (the Go exporter's `--web.telemetry-path`). Default
    /// `/metrics`.
    pub telemetry_path: String,
    /// The PgBouncers to scrape. Default: one target `pgbouncer` at `127.0.0.1:6432`, user
    /// `pgbouncer_exporter`, database `pgbouncer`.
    pub targets: Vec<Target>,
    /// One PgBouncer as a libpq connection string, the Go exporter's way
    /// (`--pgBouncer.connectionString`, `PGBOUNCER_EXPORTER_CONNECTION_STRING`):
    /// `postgres://user:password@host:6432/pgbouncer?sslmode=disable`. When set, it replaces
    /// `targets` with one target named `pgbouncer`. Default none.
    pub connection_string: Option<Secret>,
}

impl Config {
    /// The targets to scrape: `connection_string` as one target, else `targets`.
    pub fn effective_targets(&self) -> Result<Vec<Target>, ConfigError> {
        match &self.connection_string {
            Some(cs) => {
                let admin = common::conn::parse_conninfo(cs.expose(), admin_default())
                    .map_err(|e| ConfigError::Invalid(format!("connection_string: {e}")))?;
                Ok(vec![Target {
                    admin,
                    ..Target::default()
                }])
            }
            None => Ok(self.targets.clone()),
        }
    }

    /// A target for `/probe?target=ADDR` when ADDR names no configured target: the first target's
    /// settings (credentials, TLS, timeout) at `host[:port]`, named ADDR.
    pub fn probe_target(&self, addr: &str) -> Result<Target, String> {
        let targets = self.effective_targets().map_err(|e| e.to_string())?;
        if let Some(t) = targets.iter().find(|t| t.name == addr) {
            return Ok(t.clone());
        }
        let template = targets.first().cloned().unwrap_or_default();
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("target {addr:?}: {p:?} is not a port"))?,
            ),
            _ => (addr.to_string(), template.admin.port),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!(
                "target {addr:?} is neither a configured target nor host[:port]"
            ));
        }
        let mut t = template;
        t.name = addr.to_string();
        t.admin.host = host;
        t.admin.port = port;
        Ok(t)
    }
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
    /// Default `127.0.0.1:6432`, user `pgbouncer_exporter`, dbname `pgbouncer`; a partial table
    /// keeps these for the keys it does not give.
    #[serde(deserialize_with = "admin_settings")]
    pub admin: PgSettings,
    /// Time allowed for one scrape of this target. Default `3s`.
    #[serde(with = "humantime_serde")]
    pub scrape_timeout: Duration,
}

/// A PgBouncer admin console's defaults.
fn admin_default() -> PgSettings {
    PgSettings {
        port: 6432,
        user: "pgbouncer_exporter".into(),
        dbname: "pgbouncer".into(),
        ..PgSettings::default()
    }
}

fn admin_settings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PgSettings, D::Error> {
    common::conn::overlay(d, admin_default())
}

impl Default for Target {
    fn default() -> Self {
        Self {
            name: "pgbouncer".into(),
            labels: BTreeMap::new(),
            admin: admin_default(),
            scrape_timeout: Duration::from_secs(3),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9127)),
            telemetry_path: "/metrics".into(),
            targets: vec![Target::default()],
            connection_string: None,
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "POOL_EXPORTER";

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.telemetry_path.starts_with('/')
            || ["/healthz", "/readyz", "/probe"].contains(&self.telemetry_path.as_str())
        {
            return Err(ConfigError::Invalid(format!(
                "telemetry_path = {:?} must be a path starting with / other than /healthz, /readyz and /probe",
                self.telemetry_path
            )));
        }
        self.effective_targets()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Partial admin tables keep the admin console's defaults, from a file and from the env.
    #[test]
    fn partial_admin_tables_keep_the_consoles_defaults() {
        let dir = std::env::temp_dir().join(format!("pe-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("p.toml");
        std::fs::write(
            &f,
            "[[targets]]\nname = \"a\"\n[targets.admin]\nhost = \"pgb\"\n",
        )
        .expect("write");
        let from_file: Config =
            common::config::load_from("POOL_EXPORTER", Some(&f), Vec::new()).expect("loads");
        let from_env: Config = common::config::load_from(
            "POOL_EXPORTER",
            None,
            vec![(
                "POOL_EXPORTER_TARGETS".to_string(),
                "[{name=\"a\", admin={host=\"pgb\", password=\"0042\"}}]".to_string(),
            )],
        )
        .expect("loads");
        for (c, password) in [(from_file, None), (from_env, Some("0042"))] {
            let a = &c.targets[0].admin;
            assert_eq!(
                (a.host.as_str(), a.port, a.user.as_str(), a.dbname.as_str()),
                ("pgb", 6432, "pgbouncer_exporter", "pgbouncer")
            );
            assert_eq!(a.password.as_ref().map(common::Secret::expose), password);
        }
        std::fs::write(&f, "[[targets]]\n[targets.admin]\nhots = \"x\"\n").expect("write");
        let e = common::config::load_from::<Config>("POOL_EXPORTER", Some(&f), Vec::new())
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("hots"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
