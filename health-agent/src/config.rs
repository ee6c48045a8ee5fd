//! health-agent's configuration (env prefix `HEALTH_AGENT_`).
//!
//! Each check is a `[[checks]]` table with `name`, `kind`, optional `enabled` and `timeout`, and the
//! fields of its kind; a field the kind does not have is an error naming it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{ConfigError, DaemonConfig, PgSettings, RedisSettings};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of `/metrics`, `/status`, `/healthz`, `/readyz`. Default `0.0.0.0:9402`.
    pub listen: SocketAddr,
    /// Time between check cycles. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Time between cycles while a check is failing or about to change state. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub recheck_interval: Duration,
    /// Consecutive bad results before a check is reported bad. Default `2`.
    pub failure_threshold: u32,
    /// Consecutive good results before a bad check is reported recovered. Default `1`.
    pub success_threshold: u32,
    /// Reminder line interval while a check stays bad. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub remind_every: Duration,
    /// Timeout of a check that sets none. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// The state-change log people tail. Default `backups/logs/health.log`.
    pub health_log: PathBuf,
    /// Optional webhook called on every state change.
    pub webhook: Option<Webhook>,
    /// The checks. Default none.
    pub checks: Vec<CheckConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9402)),
            interval: Duration::from_secs(300),
            recheck_interval: Duration::from_secs(30),
            failure_threshold: 2,
            success_threshold: 1,
            remind_every: Duration::from_secs(3600),
            default_timeout: Duration::from_secs(10),
            health_log: PathBuf::from("backups/logs/health.log"),
            webhook: None,
            checks: vec![],
        }
    }
}

/// A webhook: JSON POSTed on every state change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://` URL. Required.
    pub url: String,
    /// PEM file of the CA(s) that sign the `https://` certificate, instead of the system's roots
    /// (a private CA). Default none.
    pub ca_file: Option<std::path::PathBuf>,
    /// Per attempt. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts in all. Default `3`.
    pub attempts: usize,
}

impl Default for Webhook {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: None,
            timeout: Duration::from_secs(5),
            attempts: 3,
        }
    }
}

/// One configured check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    /// Unique name, used in health.log, metrics and `--only`.
    pub name: String,
    /// Default `true`.
    pub enabled: bool,
    /// Default: the top-level `default_timeout`.
    pub timeout: Option<Duration>,
    pub spec: CheckSpec,
}

/// What a check looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckSpec {
    Postgres(PostgresCheck),
    Pgbouncer(PgbouncerCheck),
    Redis(RedisCheck),
    Sentinel(SentinelCheck),
    Backups(BackupsCheck),
    Disk(DiskCheck),
    Http(HttpCheck),
    Tcp(TcpCheck),
}

impl CheckSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Pgbouncer(_) => "pgbouncer",
            Self::Redis(_) => "redis",
            Self::Sentinel(_) => "sentinel",
            Self::Backups(_) => "backups",
            Self::Disk(_) => "disk",
            Self::Http(_) => "http",
            Self::Tcp(_) => "tcp",
        }
    }
}

/// PostgreSQL: connect + `SELECT 1`, connections used, standby replay lag, slots' retained WAL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresCheck {
    /// Connection (see configuration.md). Default `127.0.0.1:5432`, user `postgres`.
    pub conn: PgSettings,
    /// Connections used, % of max_connections: WARN / CRIT. Defaults `80`, `95`.
    pub connections_warn_pct: f64,
    pub connections_crit_pct: f64,
    /// On a standby, replay lag: WARN / CRIT. Defaults `30s`, `5m`.
    #[serde(with = "humantime_serde")]
    pub replay_lag_warn: Duration,
    #[serde(with = "humantime_serde")]
    pub replay_lag_crit: Duration,
    /// On a standby, bytes received but not replayed: WARN. Default `256MB`.
    pub replay_lag_bytes_warn: u64,
    /// WAL retained by a replication slot: WARN / CRIT. Defaults `1GB`, `8GB` (in bytes).
    pub slot_retained_warn_bytes: u64,
    pub slot_retained_crit_bytes: u64,
}

impl Default for PostgresCheck {
    fn default() -> Self {
        Self {
            conn: PgSettings::default(),
            connections_warn_pct: 80.0,
            connections_crit_pct: 95.0,
            replay_lag_warn: Duration::from_secs(30),
            replay_lag_crit: Duration::from_secs(300),
            replay_lag_bytes_warn: 256 << 20,
            slot_retained_warn_bytes: 1 << 30,
            slot_retained_crit_bytes: 8 << 30,
        }
    }
}

/// PgBouncer: admin console reachable; clients waiting and max wait per pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgbouncerCheck {
    /// Admin console connection. Default `127.0.0.1:6432`, dbname `pgbouncer`; a partial table
    /// keeps these for the keys it does not give.
    #[serde(deserialize_with = "pgbouncer_conn")]
    pub conn: PgSettings,
    /// Clients waiting in one pool: WARN / CRIT. Defaults `1`, `20`.
    pub waiting_warn: u64,
    pub waiting_crit: u64,
    /// Longest wait in one pool: WARN / CRIT. Defaults `1s`, `5s`.
    #[serde(with = "humantime_serde")]
    pub maxwait_warn: Duration,
    #[serde(with = "humantime_serde")]
    pub maxwait_crit: Duration,
}

/// A PgBouncer admin console's defaults.
fn pgbouncer_default() -> PgSettings {
    PgSettings {
        port: 6432,
        dbname: "pgbouncer".into(),
        ..PgSettings::default()
    }
}

fn pgbouncer_conn<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PgSettings, D::Error> {
    common::conn::overlay(d, pgbouncer_default())
}

impl Default for PgbouncerCheck {
    fn default() -> Self {
        Self {
            conn: pgbouncer_default(),
            waiting_warn: 1,
            waiting_crit: 20,
            maxwait_warn: Duration::from_secs(1),
            maxwait_crit: Duration::from_secs(5),
        }
    }
}

/// The role a Redis node must have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisRole {
    Master,
    Replica,
    #[default]
    Any,
}

/// One Redis node: PING, role, replica link and lag, memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisCheck {
    /// Connection. Default `127.0.0.1:6379`.
    pub conn: RedisSettings,
    /// Expected role: `master`, `replica` or `any` (after a failover roles swap). Default `any`.
    pub role: RedisRole,
    /// On a replica, replication lag in bytes behind the master: WARN / CRIT. Defaults 1 MiB, 64 MiB.
    pub lag_warn_bytes: u64,
    pub lag_crit_bytes: u64,
    /// used_memory as % of maxmemory (when maxmemory is set): WARN / CRIT. Defaults `80`, `95`.
    pub memory_warn_pct: f64,
    pub memory_crit_pct: f64,
}

impl Default for RedisCheck {
    fn default() -> Self {
        Self {
            conn: RedisSettings::default(),
            role: RedisRole::Any,
            lag_warn_bytes: 1 << 20,
            lag_crit_bytes: 64 << 20,
            memory_warn_pct: 80.0,
            memory_crit_pct: 95.0,
        }
    }
}

/// Sentinels: each reachable, CKQUORUM, all name the same master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelCheck {
    /// Sentinel addresses `host:port`. Default `["127.0.0.1:26379"]`.
    pub sentinels: Vec<String>,
    /// Master name. Default `mymaster`.
    pub master_name: String,
    /// Credentials for the Sentinels (host/port come from `sentinels`).
    pub auth: RedisSettings,
    /// State when some Sentinels are unreachable or disagree but quorum holds. Default `warn`.
    pub degraded_state: DegradedState,
}

/// WARN or CRIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DegradedState {
    #[default]
    Warn,
    Crit,
}

impl Default for SentinelCheck {
    fn default() -> Self {
        Self {
            sentinels: vec!["127.0.0.1:26379".into()],
            master_name: "mymaster".into(),
            auth: RedisSettings::default(),
            degraded_state: DegradedState::Warn,
        }
    }
}

/// backup-agent's catalog: age of the newest complete backup of each kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupsCheck {
    /// backup-agent's local storage directory. Default `backups`.
    pub path: PathBuf,
    /// Read the catalog from S3 instead of `path` (the same bucket, prefix, endpoint and
    /// credentials as backup-agent's `storage.s3`). Default none.
    pub s3: Option<common::s3read::S3Location>,
    /// Maximum ages (CRIT past it; WARN past 80% of it): full, incremental, Redis, WAL.
    /// Defaults `26h`, `7h`, `5h`, `5m`. `0s` skips that kind.
    #[serde(with = "humantime_serde")]
    pub full_max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub incremental_max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub redis_max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub wal_max_age: Duration,
}

impl Default for BackupsCheck {
    fn default() -> Self {
        Self {
            path: PathBuf::from("backups"),
            s3: None,
            full_max_age: Duration::from_secs(26 * 3600),
            incremental_max_age: Duration::from_secs(7 * 3600),
            redis_max_age: Duration::from_secs(5 * 3600),
            wal_max_age: Duration::from_secs(300),
        }
    }
}

/// Free space and inodes of paths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskCheck {
    /// Paths whose filesystems are checked. Default `["/"]`.
    pub paths: Vec<PathBuf>,
    /// Used space or inodes, %: WARN / CRIT. Defaults `85`, `95`.
    pub used_warn_pct: f64,
    pub used_crit_pct: f64,
}

impl Default for DiskCheck {
    fn default() -> Self {
        Self {
            paths: vec![PathBuf::from("/")],
            used_warn_pct: 85.0,
            used_crit_pct: 95.0,
        }
    }
}

/// An HTTP endpoint: status, body substring, latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpCheck {
    /// `http://` or `https://` URL. Required.
    pub url: String,
    /// PEM file of the CA(s) that sign the `https://` certificate, instead of the system's roots
    /// (a private CA). Default none.
    pub ca_file: Option<std::path::PathBuf>,
    /// Expected status. Default `200`.
    pub status: u16,
    /// Text the body must contain. Default none.
    pub body_contains: Option<String>,
    /// Latency past which the check is WARN. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub latency_warn: Duration,
}

impl Default for HttpCheck {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: None,
            status: 200,
            body_contains: None,
            latency_warn: Duration::from_secs(2),
        }
    }
}

/// A TCP endpoint accepts connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpCheck {
    /// `host:port`. Required.
    pub address: String,
}

const COMMON_KEYS: [&str; 4] = ["name", "kind", "enabled", "timeout"];
const KINDS: [&str; 8] = [
    "postgres",
    "pgbouncer",
    "redis",
    "sentinel",
    "backups",
    "disk",
    "http",
    "tcp",
];

impl<'de> Deserialize<'de> for CheckConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let name = match map.remove("name") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            _ => return Err(D::Error::custom("a check needs a `name`")),
        };
        let kind = match map.remove("kind") {
            Some(serde_json::Value::String(s)) => s,
            _ => {
                return Err(D::Error::custom(format!(
                    "check {name:?} needs a `kind`: one of {}",
                    KINDS.join(", ")
                )));
            }
        };
        let enabled = match map.remove("enabled") {
            None => true,
            Some(serde_json::Value::Bool(b)) => b,
            Some(v) => {
                return Err(D::Error::custom(format!(
                    "check {name:?}: enabled must be true or false, not {v}"
                )));
            }
        };
        let timeout = match map.remove("timeout") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(
                humantime::parse_duration(&s)
                    .map_err(|e| D::Error::custom(format!("check {name:?}: timeout {s:?}: {e}")))?,
            ),
            Some(v) => {
                return Err(D::Error::custom(format!(
                    "check {name:?}: timeout must be a duration like \"10s\", not {v}"
                )));
            }
        };
        let rest = serde_json::Value::Object(map.into_iter().collect());
        fn spec<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            name: &str,
            kind: &str,
            v: serde_json::Value,
        ) -> Result<T, E> {
            serde_json::from_value(v)
                .map_err(|e| E::custom(format!("check {name:?} (kind {kind}): {e}")))
        }
        let s = match kind.as_str() {
            "postgres" => CheckSpec::Postgres(spec(&name, &kind, rest)?),
            "pgbouncer" => CheckSpec::Pgbouncer(spec(&name, &kind, rest)?),
            "redis" => CheckSpec::Redis(spec(&name, &kind, rest)?),
            "sentinel" => CheckSpec::Sentinel(spec(&name, &kind, rest)?),
            "backups" => CheckSpec::Backups(spec(&name, &kind, rest)?),
            "disk" => CheckSpec::Disk(spec(&name, &kind, rest)?),
            "http" => CheckSpec::Http(spec(&name, &kind, rest)?),
            "tcp" => CheckSpec::Tcp(spec(&name, &kind, rest)?),
            other => {
                return Err(D::Error::custom(format!(
                    "check {name:?}: unknown kind {other:?}; one of {}",
                    KINDS.join(", ")
                )));
            }
        };
        Ok(CheckConfig {
            name,
            enabled,
            timeout,
            spec: s,
        })
    }
}

impl Serialize for CheckConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let spec = match &self.spec {
            CheckSpec::Postgres(c) => serde_json::to_value(c),
            CheckSpec::Pgbouncer(c) => serde_json::to_value(c),
            CheckSpec::Redis(c) => serde_json::to_value(c),
            CheckSpec::Sentinel(c) => serde_json::to_value(c),
            CheckSpec::Backups(c) => serde_json::to_value(c),
            CheckSpec::Disk(c) => serde_json::to_value(c),
            CheckSpec::Http(c) => serde_json::to_value(c),
            CheckSpec::Tcp(c) => serde_json::to_value(c),
        }
        .map_err(S::Error::custom)?;
        let mut map = serde_json::Map::new();
        map.insert("name".into(), self.name.clone().into());
        map.insert("kind".into(), self.spec.kind().into());
        map.insert("enabled".into(), self.enabled.into());
        if let Some(t) = self.timeout {
            map.insert(
                "timeout".into(),
                humantime::format_duration(t).to_string().into(),
            );
        }
        if let serde_json::Value::Object(rest) = strip_nulls(spec) {
            for (k, v) in rest {
                if !COMMON_KEYS.contains(&k.as_str()) {
                    map.insert(k, v);
                }
            }
        }
        map.serialize(s)
    }
}

/// Drops `null` (unset options) at every depth: TOML has no null.
fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(strip_nulls).collect())
        }
        v => v,
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "HEALTH_AGENT";

    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            if !names.insert(c.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "checks[{i}]: name {:?} is used twice",
                    c.name
                )));
            }
            let key = format!("checks[{i}] ({})", c.name);
            match &c.spec {
                CheckSpec::Postgres(p) => p.conn.validate(&format!("{key}.conn"))?,
                CheckSpec::Pgbouncer(p) => p.conn.validate(&format!("{key}.conn"))?,
                CheckSpec::Redis(r) => r.conn.validate(&format!("{key}.conn"))?,
                CheckSpec::Sentinel(s) => s.auth.validate(&format!("{key}.auth"))?,
                CheckSpec::Http(h) => common::httpc::check_url(&h.url)
                    .map_err(|e| ConfigError::Invalid(format!("{key}.url: {e}")))?,
                CheckSpec::Tcp(t) if t.address.rsplit_once(':').is_none() => {
                    return Err(ConfigError::Invalid(format!(
                        "{key}.address: {:?} is not host:port",
                        t.address
                    )));
                }
                _ => {}
            }
        }
        if let Some(w) = &self.webhook {
            common::httpc::check_url(&w.url)
                .map_err(|e| ConfigError::Invalid(format!("webhook.url: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `toml` as a config file (and no environment).
    fn load(toml: &str) -> Result<Config, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ha-cfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("h.toml");
        std::fs::write(&f, toml).expect("write");
        let r = common::config::load_from("HEALTH_AGENT", Some(&f), Vec::new())
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    /// `[checks.conn] host = "pgb"` on a pgbouncer check is the admin console on port 6432.
    #[test]
    fn a_partial_pgbouncer_conn_keeps_the_consoles_defaults() {
        let c = load(
            "[[checks]]\nname = \"pgb\"\nkind = \"pgbouncer\"\n[checks.conn]\nhost = \"pgb\"\nuser = \"stats\"\n",
        )
        .expect("loads");
        let CheckSpec::Pgbouncer(p) = &c.checks[0].spec else {
            panic!("{:?}", c.checks[0].spec);
        };
        assert_eq!(
            (
                p.conn.host.as_str(),
                p.conn.port,
                p.conn.user.as_str(),
                p.conn.dbname.as_str()
            ),
            ("pgb", 6432, "stats", "pgbouncer")
        );
    }

    /// https:// webhooks and HTTP checks are accepted with a CA file; other schemes are refused
    /// naming the key.
    #[test]
    fn https_urls_are_accepted_and_other_schemes_refused() {
        let c = load(
            "[webhook]\nurl = \"https://hooks.example:8443/x\"\nca_file = \"/etc/ca.pem\"\n\
             [[checks]]\nname = \"web\"\nkind = \"http\"\nurl = \"https://web.example/health\"\n",
        )
        .expect("https accepted");
        assert_eq!(
            c.webhook.and_then(|w| w.ca_file),
            Some(std::path::PathBuf::from("/etc/ca.pem"))
        );
        let e = load("[webhook]\nurl = \"ftp://hooks.example/x\"\n").expect_err("ftp refused");
        assert!(e.contains("webhook.url") && e.contains("https://"), "{e}");
        let e = load("[[checks]]\nname = \"web\"\nkind = \"http\"\nurl = \"web.example\"\n")
            .expect_err("no scheme refused");
        assert!(e.contains("checks[0] (web).url"), "{e}");
    }
}
