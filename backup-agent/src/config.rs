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
    /// Credentials for the Redis nodes, and the node to snapshot when
    /// `redis_snapshot.source = "address"`. Default `127.0.0.1:6379`.
    pub redis: RedisSettings,
    /// Where Redis snapshots are pulled from.
    pub redis_snapshot: RedisSnapshot,
    /// Logical dumps (pg_dump).
    pub logical: crate::logical::Logical,
    /// Client-side encryption of stored objects (age). Off by default.
    pub encryption: crate::crypt::Encryption,
    /// Restore drills (`verify --restore-drill`, `schedule.drill`).
    pub drill: crate::drill::Drill,
    /// Where backups go.
    pub storage: Storage,
    /// The job log people tail. Default `backups/logs/backup.log`.
    pub log_file: PathBuf,
    /// On SIGTERM, how long a running backup may take to finish before it is aborted (its
    /// objects removed, `outcome=aborted` in the log). Default `5m`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: std::time::Duration,
    /// Compression of stored backups and WAL.
    pub compression: Compression,
    /// Continuous WAL archiving.
    pub wal: Wal,
    /// What cleanup keeps.
    pub retention: crate::retention::Policy,
    /// When the daemon runs each job (standard cron, 5 fields, in `schedule.timezone`, UTC by default; Sunday is 0 or 7).
    pub schedule: crate::schedule::Schedules,
    /// Restore and `wal-fetch` (PostgreSQL's restore_command).
    pub restore: Restore,
}

/// Restore settings (`[restore]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Restore {
    /// How long `wal-fetch` retries a storage error (an outage, a timeout, a refused credential)
    /// before it exits with the status that stops recovery (126). An object storage positively
    /// reports absent ends recovery normally (exit 1) at once. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub wal_fetch_retry: std::time::Duration,
    /// How many WAL segments a recovery keeps fetched, checked and decoded ahead of PostgreSQL
    /// (a background process `wal-fetch` starts; a spool under `pg_wal`, one segment size each).
    /// 0 turns prefetch off. Default 8, at most 64.
    pub prefetch: usize,
}

impl Default for Restore {
    fn default() -> Self {
        Self {
            wal_fetch_retry: std::time::Duration::from_secs(60),
            prefetch: 8,
        }
    }
}

/// Where a Redis snapshot comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSource {
    /// Ask Sentinel: the healthy replica with the most data, the master when none is healthy.
    #[default]
    Sentinel,
    /// The node of the `[redis]` section.
    Address,
}

/// Redis snapshots (`SYNC` over the network; no shared volume with Redis).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSnapshot {
    /// `sentinel` or `address`. Default `sentinel`.
    pub source: SnapshotSource,
    /// The Sentinels to ask, as `host:port`. Default `["127.0.0.1:26379"]`.
    pub sentinels: Vec<String>,
    /// The master name Sentinel monitors. Default `mymaster`.
    pub master_name: String,
    /// Credentials for the Sentinels (host and port come from `sentinels`).
    pub sentinel_auth: RedisSettings,
    /// Bound on any wait for the server during a transfer (it sends a keepalive every second
    /// while it saves). Default `60s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: std::time::Duration,
}

impl Default for RedisSnapshot {
    fn default() -> Self {
        Self {
            source: SnapshotSource::Sentinel,
            sentinels: vec!["127.0.0.1:26379".into()],
            master_name: "mymaster".into(),
            sentinel_auth: RedisSettings::default(),
            idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Compression algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Zstd,
    Gzip,
}

/// Compression of stored objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compression {
    /// `zstd` or `gzip`. Default `zstd`.
    pub algorithm: Algorithm,
    /// Level. Default `3` (zstd) — for gzip 1-9, default 6 when unset.
    pub level: Option<i32>,
    /// zstd worker threads compressing beside the thread that reads (0: compress on that
    /// thread). Default: the number of cores when there is more than one, else 0. At most 16.
    pub threads: Option<u32>,
}

impl Compression {
    /// The zstd worker threads in force.
    pub fn workers(&self) -> u32 {
        self.threads.unwrap_or_else(|| {
            match std::thread::available_parallelism().map(usize::from) {
                Ok(n) if n > 1 => n.min(16) as u32,
                _ => 0,
            }
        })
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Zstd,
            level: None,
            threads: None,
        }
    }
}

/// Continuous WAL archiving over a physical replication slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Wal {
    /// Run the archiver in the daemon. Default `true`.
    pub enabled: bool,
    /// The physical replication slot. Default `outrigger_backup`.
    pub slot: String,
    /// The open segment is stored at least this often (the data at risk). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub flush_interval: std::time::Duration,
    /// Warn when the slot retains more WAL than this (bytes). Default 1 GiB.
    pub retained_warn_bytes: u64,
}

impl Default for Wal {
    fn default() -> Self {
        Self {
            enabled: true,
            slot: "outrigger_backup".into(),
            flush_interval: std::time::Duration::from_secs(10),
            retained_warn_bytes: 1 << 30,
        }
    }
}

/// Backup storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Local directory holding the catalog and objects (when `s3` is not set). Default `backups`.
    pub path: PathBuf,
    /// S3 instead of the local directory. Default none.
    pub s3: Option<crate::storage::s3::S3Config>,
    /// Permission bits of the files written to the local directory (backups, WAL, catalog), as
    /// an octal string, applied whatever the umask; new directories get the matching search bits
    /// ("0600" -> 0700, "0640" -> 0750). Default: unset, the umask decides (0644/0755 under the usual
    /// 022), because a restored cluster's `restore_command` (`wal-fetch`) runs as the PostgreSQL
    /// user and reads this directory. Set "0600" when that user is the one writing the backups,
    /// "0640" with a shared group.
    pub mode: Option<FileMode>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: PathBuf::from("backups"),
            s3: None,
            mode: None,
        }
    }
}

/// Permission bits of written files (owner read and write at least; no execute or special
/// bits), written in a config as an octal string such as "0600" or "0640".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// `bits` when they are a valid file mode, else why not.
    pub fn new(bits: u32) -> Result<Self, String> {
        if bits & !0o666 != 0 {
            return Err(format!(
                "{bits:04o} has execute or special bits (file modes are made of 6, 4 and 0)"
            ));
        }
        if bits & 0o600 != 0o600 {
            return Err(format!(
                "{bits:04o} does not let the owner read and write (backup-agent reads back what it writes)"
            ));
        }
        Ok(FileMode(bits))
    }

    pub fn file(self) -> u32 {
        self.0
    }

    /// The mode of a directory: the file mode plus search where there is read.
    pub fn dir(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }
}

impl std::fmt::Display for FileMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// "0640" (a string, octal), or TOML's own octal integer `0o640`.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bits(u32),
        }
        let (text, bits) = match Raw::deserialize(d)? {
            Raw::Text(text) => {
                let digits = text.strip_prefix("0o").unwrap_or(&text);
                let bits = u32::from_str_radix(digits, 8).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "mode {text:?} is not an octal mode such as \"0600\" or \"0640\""
                    ))
                })?;
                (text, bits)
            }
            Raw::Bits(bits) => (format!("0o{bits:o}"), bits),
        };
        FileMode::new(bits).map_err(|e| serde::de::Error::custom(format!("mode {text}: {e}")))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9401)),
            postgres: PgSettings::default(),
            redis: RedisSettings::default(),
            redis_snapshot: RedisSnapshot::default(),
            logical: crate::logical::Logical::default(),
            encryption: crate::crypt::Encryption::default(),
            drill: crate::drill::Drill::default(),
            storage: Storage::default(),
            log_file: PathBuf::from("backups/logs/backup.log"),
            shutdown_grace: std::time::Duration::from_secs(300),
            compression: Compression::default(),
            wal: Wal::default(),
            retention: crate::retention::Policy::default(),
            schedule: crate::schedule::Schedules::default(),
            restore: Restore::default(),
        }
    }
}

impl DaemonConfig for Config {
    const ENV_PREFIX: &'static str = "BACKUP_AGENT";

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(l) = self.compression.level {
            let ok = match self.compression.algorithm {
                Algorithm::Zstd => (1..=19).contains(&l),
                Algorithm::Gzip => (1..=9).contains(&l),
            };
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "compression.level = {l} is out of range for {:?} (zstd 1-19, gzip 1-9)",
                    self.compression.algorithm
                )));
            }
        }
        if self.compression.threads.is_some_and(|t| t > 16) {
            return Err(ConfigError::Invalid(format!(
                "compression.threads = {}: at most 16 (0 compresses on the reading thread)",
                self.compression.threads.unwrap_or_default()
            )));
        }
        if self.restore.prefetch > crate::pg::prefetch::MAX_DEPTH {
            return Err(ConfigError::Invalid(format!(
                "restore.prefetch = {}: at most {} segments (0 turns prefetch off)",
                self.restore.prefetch,
                crate::pg::prefetch::MAX_DEPTH
            )));
        }
        if self.wal.slot.is_empty()
            || !self
                .wal
                .slot
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "wal.slot = {:?}: lower-case letters, digits and underscores only",
                self.wal.slot
            )));
        }
        crate::schedule::zone(&self.schedule.timezone)
            .map_err(|e| ConfigError::Invalid(format!("schedule.timezone: {e}")))?;
        for (key, expr) in [
            ("schedule.full", &self.schedule.full),
            ("schedule.incremental", &self.schedule.incremental),
            ("schedule.cleanup", &self.schedule.cleanup),
            ("schedule.redis", &self.schedule.redis),
            ("schedule.logical", &self.schedule.logical),
            ("schedule.drill", &self.schedule.drill),
        ] {
            if !expr.trim().is_empty() {
                crate::schedule::parse(expr, &self.schedule.timezone)
                    .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
            }
        }
        if let Some(s3) = &self.storage.s3 {
            if s3.bucket.is_empty() {
                return Err(ConfigError::Invalid("storage.s3.bucket is required".into()));
            }
            common::config::resolve_secret(
                "storage.s3.secret_access_key",
                s3.secret_access_key.as_ref(),
                s3.secret_access_key_file.as_deref(),
            )?;
        }
        if self.redis_snapshot.source == SnapshotSource::Sentinel {
            if self.redis_snapshot.sentinels.is_empty() {
                return Err(ConfigError::Invalid(
                    "redis_snapshot.sentinels is empty; list the Sentinels or set redis_snapshot.source = \"address\"".into(),
                ));
            }
            for s in &self.redis_snapshot.sentinels {
                crate::redis_snapshot::source::split_addr(s)
                    .map_err(|e| ConfigError::Invalid(format!("redis_snapshot.sentinels: {e}")))?;
            }
        }
        self.redis_snapshot
            .sentinel_auth
            .validate("redis_snapshot.sentinel_auth")?;
        self.encryption.validate().map_err(ConfigError::Invalid)?;
        if let Some(pg) = &self.logical.postgres {
            pg.validate("logical.postgres")?;
        }
        self.postgres.validate("postgres")?;
        self.redis.validate("redis")
    }
}
