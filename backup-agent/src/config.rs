//! backup-agent's configuration (env prefix `BACKUP_AGENT_`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{ConfigError, DaemonConfig, PgSettings, RedisSettings, Secret};
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
    pub logical: Logical,
    /// Client-side encryption of stored objects (age). Off by default.
    pub encryption: Encryption,
    /// Restore drills (`verify --restore-drill`, `schedule.drill`).
    pub drill: Drill,
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
    pub retention: Policy,
    /// When the daemon runs each job (standard cron, 5 fields, in `schedule.timezone`, UTC by default; Sunday is 0 or 7).
    pub schedule: Schedules,
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
    /// zstd full backups: the PostgreSQL server compresses each archive before sending it
    /// (`BASE_BACKUP` with `COMPRESSION 'zstd'`, `threads` workers in the server process),
    /// and backup-agent stores it as it comes (encrypting it when encryption is on). The
    /// server then sends only the compressed bytes, and its workers compress while it reads
    /// the next files. `false`: the server sends the files as they are and backup-agent
    /// compresses them (for a server built without zstd, or to keep its CPU for queries).
    /// Default `true`. gzip backups are always compressed by backup-agent.
    pub server: bool,
}

impl Compression {
    /// Whether full backups ask the server to compress (zstd with `server` on).
    pub fn on_server(&self) -> bool {
        self.server && self.algorithm == Algorithm::Zstd
    }

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
            server: true,
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
    pub s3: Option<S3Config>,
    /// Permission bits of the files written to the local directory (backups, WAL, catalog), as
    /// an octal string, applied whatever the umask; new directories get the matching search bits
    /// ("0600" -> 0700, "0640" -> 0750). Default "0600": only the agent's user reads its
    /// backups. `restore --recover` and drills fetch WAL with the agent's rights for a server
    /// that runs as another user; a restore you start yourself runs `wal-fetch` as PostgreSQL's
    /// user, which then needs "0640" and a shared group.
    pub mode: FileMode,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: PathBuf::from("backups"),
            s3: None,
            mode: FileMode::PRIVATE,
        }
    }
}

/// Permission bits of written files (owner read and write at least; no execute or special
/// bits), written in a config as an octal string such as "0600" or "0640".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// The default: the owner only.
    pub const PRIVATE: FileMode = FileMode(0o600);

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
            logical: Logical::default(),
            encryption: Encryption::default(),
            drill: Drill::default(),
            storage: Storage::default(),
            log_file: PathBuf::from("backups/logs/backup.log"),
            shutdown_grace: std::time::Duration::from_secs(300),
            compression: Compression::default(),
            wal: Wal::default(),
            retention: Policy::default(),
            schedule: Schedules::default(),
            restore: Restore::default(),
        }
    }
}

/// The most segments `restore.prefetch` may keep ahead.
pub const MAX_PREFETCH: usize = 64;

/// `host:port` (or `[v6]:port`).
pub fn split_addr(s: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not host:port"))?;
    let port = p
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?}: bad port {p:?}"))?;
    Ok((
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
    ))
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
        if self.restore.prefetch > MAX_PREFETCH {
            return Err(ConfigError::Invalid(format!(
                "restore.prefetch = {}: at most {} segments (0 turns prefetch off)",
                self.restore.prefetch, MAX_PREFETCH
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
        crate::cron::zone(&self.schedule.timezone)
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
                crate::cron::parse(expr, &self.schedule.timezone)
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
                split_addr(s)
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

/// When jobs run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedules {
    /// Full backup. Default `0 2 * * *` (02:00 UTC daily). Empty disables.
    pub full: String,
    /// Incremental (WAL switch, restore point, completeness check). Default `0 */6 * * *`.
    pub incremental: String,
    /// Cleanup (leftovers, retention). Default `0 3 * * *`.
    pub cleanup: String,
    /// Redis snapshot. Default `0 */4 * * *`.
    pub redis: String,
    /// Logical dump (pg_dump of every database). Default empty (off).
    pub logical: String,
    /// Restore drill (needs PostgreSQL server binaries on this machine). Default empty (off).
    pub drill: String,
    /// The time zone the expressions are in (IANA name). Default `UTC`. An expression may name
    /// its own: `CRON_TZ=Europe/Berlin 0 3 * * *`.
    pub timezone: String,
    /// On start, when the catalog holds no full backup, take one now instead of waiting for
    /// `full`'s first time: WAL archived without a base backup restores nothing. Default `true`.
    pub initial_full: bool,
    /// A scheduled run that fails (a restart of PostgreSQL or Redis under it, a storage outage)
    /// is tried again after each of these delays in turn, unless the job's next scheduled time
    /// comes first. Default `["1m", "5m", "15m"]`; `[]` turns retries off.
    #[serde(with = "durations")]
    pub retry: Vec<Duration>,
}

/// A list of durations written as humantime strings (`["1m", "5m"]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|d| humantime_serde::Serde::from(*d))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<humantime_serde::Serde<Duration>>::deserialize(d)?
            .into_iter()
            .map(humantime_serde::Serde::into_inner)
            .collect())
    }
}

impl Default for Schedules {
    fn default() -> Self {
        Self {
            full: "0 2 * * *".into(),
            incremental: "0 */6 * * *".into(),
            cleanup: "0 3 * * *".into(),
            redis: "0 */4 * * *".into(),
            logical: String::new(),
            drill: String::new(),
            timezone: "UTC".into(),
            initial_full: true,
            retry: vec![
                Duration::from_secs(60),
                Duration::from_secs(300),
                Duration::from_secs(900),
            ],
        }
    }
}

/// Logical dump settings (`[logical]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logical {
    /// Databases to dump. Default: every database that accepts connections (templates excluded).
    pub databases: Vec<String>,
    /// The connection for the dumps: a role that can read everything (the replication role
    /// usually cannot). Default: the `[postgres]` section.
    pub postgres: Option<PgSettings>,
    /// Directory of pg_dump, pg_dumpall and pg_restore. Default: found on PATH.
    pub bin_dir: Option<PathBuf>,
}

/// Encryption settings (`[encryption]`). Off unless `recipients` or `passphrase_file` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Encryption {
    /// age X25519 recipients (`age1...`) every object is encrypted to. The agent needs only these
    /// public keys to back up. Default none.
    pub recipients: Vec<String>,
    /// File with age identities (`AGE-SECRET-KEY-1...` lines, `#` comments), needed by restore,
    /// wal-fetch and verify of encrypted objects. Default none.
    pub identity_file: Option<PathBuf>,
    /// Instead of recipients: encrypt and decrypt with the passphrase in this file (scrypt; slower
    /// per object than X25519). Default none.
    pub passphrase_file: Option<PathBuf>,
}

impl Encryption {
    pub fn enabled(&self) -> bool {
        !self.recipients.is_empty() || self.passphrase_file.is_some()
    }

    /// Checks the settings without reading secret files.
    pub fn validate(&self) -> Result<(), String> {
        use std::str::FromStr;
        if self.passphrase_file.is_some() && !self.recipients.is_empty() {
            return Err(
                "encryption.recipients and encryption.passphrase_file are both set; age cannot mix them: choose one"
                    .into(),
            );
        }
        for r in &self.recipients {
            age::x25519::Recipient::from_str(r).map_err(|e| {
                format!(
                    "encryption.recipients: {r:?} is not an age X25519 recipient (age1...): {e}"
                )
            })?;
        }
        Ok(())
    }
}

/// Restore drill settings (`[drill]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Drill {
    /// Directory of the `postgres` binary. Default `/usr/lib/postgresql/<backup's major>/bin`
    /// when it exists, else PATH.
    pub bin_dir: Option<PathBuf>,
    /// Where the temporary cluster goes. Default the system's temp directory.
    pub work_dir: Option<PathBuf>,
    /// The role and database the query runs as/in (the restored cluster's). Default `postgres`.
    pub user: String,
    pub database: String,
    /// The query whose first value is recorded. Default
    /// `SELECT count(*) FROM pg_database`.
    pub query: String,
    /// When running as root, PostgreSQL runs as this OS user. Default `postgres`.
    pub os_user: String,
    /// Bound on restore, recovery and query together. Default `30m`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Drill {
    fn default() -> Self {
        Self {
            bin_dir: None,
            work_dir: None,
            user: "postgres".into(),
            database: "postgres".into(),
            query: "SELECT count(*) FROM pg_database".into(),
            os_user: "postgres".into(),
            timeout: Duration::from_secs(1800),
        }
    }
}

/// Retention settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Keep backups this long. Default `30days`.
    #[serde(with = "humantime_serde")]
    pub keep: Duration,
    /// Keep at least this many complete full backups, however old. Default `2`.
    pub min_full_backups: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(30 * 24 * 3600),
            min_full_backups: 2,
        }
    }
}

/// S3 settings (`storage.s3`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Bucket. Required.
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `outrigger/`. Default none.
    pub prefix: String,
    /// Region. Default `us-east-1`.
    pub region: String,
    /// Endpoint URL for S3-compatible servers (MinIO, Ceph, ...). Default: AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    /// Default `false`.
    pub path_style: bool,
    /// Access key id. Default: the standard AWS credential chain.
    pub access_key_id: Option<String>,
    /// Secret access key, or `secret_access_key_file`. Default: the standard AWS chain.
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Server-side encryption: `AES256` or `aws:kms`. Default none.
    pub server_side_encryption: Option<String>,
    /// Storage class, e.g. `STANDARD_IA`. Default the bucket's.
    pub storage_class: Option<String>,
    /// First multipart part size in bytes. Parts double every 1000 parts (up to S3's 5 GiB) so that
    /// an object fits S3's 10 000 parts however large: with 8 MiB, parts stay 8 MiB up to
    /// 7.8 GiB, and an object can reach 5 TiB. An upload holds one part in memory. Default
    /// 8 MiB (minimum 5 MiB).
    pub part_size: usize,
    /// Bound on one request attempt (a part upload included): an S3 that stops answering fails
    /// the job instead of hanging it. Default `2m`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connect timeout. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            server_side_encryption: None,
            storage_class: None,
            part_size: 8 << 20,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
        }
    }
}
