//! backup-agent's catalog format, read by health-agent: one JSON manifest per complete backup at
//! `catalog/<kind>/<id>.json`, written last (a backup without a manifest is not complete), and the
//! WAL archiver's status at `catalog/wal-status.json`, rewritten on every flush.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Prefix of every catalog key.
pub const PREFIX: &str = "catalog/";
/// Key of the WAL archiver's status.
pub const WAL_STATUS_KEY: &str = "catalog/wal-status.json";

/// What a backup is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    PostgresFull,
    PostgresIncr,
    PostgresLogical,
    Redis,
}

impl BackupKind {
    pub const ALL: [BackupKind; 4] = [
        Self::PostgresFull,
        Self::PostgresIncr,
        Self::PostgresLogical,
        Self::Redis,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PostgresFull => "postgres-full",
            Self::PostgresIncr => "postgres-incr",
            Self::PostgresLogical => "postgres-logical",
            Self::Redis => "redis",
        }
    }

    /// The catalog key of a manifest.
    pub fn manifest_key(&self, id: &str) -> String {
        format!("{PREFIX}{}/{id}.json", self.as_str())
    }
}

/// One stored object of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// A complete backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub kind: BackupKind,
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    #[serde(with = "rfc3339")]
    pub finished_at: SystemTime,
    /// PostgreSQL system identifier, version, timeline and LSN range (PostgreSQL kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_lsn: Option<String>,
    /// `zstd`, `gzip` or `none`.
    pub compression: String,
    pub objects: Vec<ObjectEntry>,
    /// What else a kind records (Redis: source node, RDB version; logical: databases, tool
    /// version; drills: outcome).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub info: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    /// A manifest with no objects and none of the PostgreSQL fields, zstd-compressed (the kinds
    /// fill in what they have; tests).
    pub fn new(
        id: &str,
        kind: BackupKind,
        started_at: SystemTime,
        finished_at: SystemTime,
    ) -> Self {
        Self {
            id: id.to_string(),
            kind,
            started_at,
            finished_at,
            system_id: None,
            pg_version: None,
            timeline: None,
            start_lsn: None,
            end_lsn: None,
            compression: "zstd".into(),
            objects: vec![],
            info: Default::default(),
        }
    }

    /// Stored bytes of all objects.
    pub fn size(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// The WAL archiver's last flush.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WalStatus {
    pub timeline: u32,
    pub flushed_lsn: String,
    #[serde(with = "rfc3339")]
    pub updated_at: SystemTime,
    /// The server's `wal_segment_size` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<u64>,
}

/// Key of the record of the cluster whose backups a storage prefix holds.
pub const CLUSTER_KEY: &str = "catalog/cluster.json";

/// The one PostgreSQL cluster a storage prefix belongs to: written by the first backup or WAL
/// archived into it; every later writer must have the same system identifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub system_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_version: Option<u32>,
    #[serde(with = "rfc3339")]
    pub first_seen: SystemTime,
}

/// Where restore drills are recorded (`catalog/drills/<id>.json`).
pub const DRILLS_PREFIX: &str = "catalog/drills/";

/// One restore drill: a backup restored into a temporary cluster, started and queried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub id: String,
    /// The full backup restored.
    pub backup_id: String,
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    #[serde(with = "rfc3339")]
    pub finished_at: SystemTime,
    pub ok: bool,
    /// The query and its result when it passed; the error when not.
    pub detail: String,
}

/// What a catalog read found: complete backups, the WAL status, restore drills, and files that
/// could not be read.
#[derive(Debug, Default)]
pub struct Catalog {
    pub manifests: Vec<Manifest>,
    pub wal: Option<WalStatus>,
    pub drills: Vec<DrillRecord>,
    /// The cluster the prefix belongs to (`catalog/cluster.json`).
    pub cluster: Option<ClusterInfo>,
    pub unreadable: Vec<String>,
}

impl Catalog {
    /// The newest complete backup of a kind.
    pub fn newest(&self, kind: BackupKind) -> Option<&Manifest> {
        self.manifests
            .iter()
            .filter(|m| m.kind == kind)
            .max_by_key(|m| m.finished_at)
    }

    /// The recoverable window: from the start of the oldest full backup to the newest archived
    /// WAL (as of the archiver's last store).
    pub fn recovery_window(&self) -> Option<(SystemTime, SystemTime)> {
        let start = self
            .manifests
            .iter()
            .filter(|m| m.kind == BackupKind::PostgresFull)
            .map(|m| m.started_at)
            .min()?;
        let end = self
            .wal
            .as_ref()
            .map(|w| w.updated_at)
            .into_iter()
            .chain(
                self.manifests
                    .iter()
                    .filter(|m| m.kind == BackupKind::PostgresFull)
                    .map(|m| m.finished_at),
            )
            .max()?;
        Some((start, end))
    }

    /// Parses catalog objects given as (key, bytes).
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut c = Catalog::default();
        for (key, bytes) in objects {
            if key == WAL_STATUS_KEY {
                match serde_json::from_slice(bytes) {
                    Ok(w) => c.wal = Some(w),
                    Err(e) => c.unreadable.push(format!("{key}: {e}")),
                }
            } else if key == CLUSTER_KEY {
                match serde_json::from_slice(bytes) {
                    Ok(w) => c.cluster = Some(w),
                    Err(e) => c.unreadable.push(format!("{key}: {e}")),
                }
            } else if key.starts_with(DRILLS_PREFIX) {
                match serde_json::from_slice(bytes) {
                    Ok(d) => c.drills.push(d),
                    Err(e) => c.unreadable.push(format!("{key}: {e}")),
                }
            } else if key.ends_with(".json") {
                match serde_json::from_slice(bytes) {
                    Ok(m) => c.manifests.push(m),
                    Err(e) => c.unreadable.push(format!("{key}: {e}")),
                }
            }
        }
        c
    }

    /// Reads the catalog of a local storage directory.
    pub fn read_local(root: &Path) -> std::io::Result<Self> {
        let mut files = Vec::new();
        let dir = root.join(PREFIX);
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no catalog at {}", dir.display()),
            ));
        }
        collect(&dir, root, &mut files)?;
        Ok(Self::from_objects(
            files.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
        ))
    }
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect(&p, root, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            let key = p
                .strip_prefix(root)
                .map(|k| k.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            out.push((key, std::fs::read(&p)?));
        }
    }
    Ok(())
}

/// RFC 3339 timestamps in JSON, to the millisecond: what is read is cut to whole milliseconds,
/// so that a value read (from a file another tool wrote with more digits) is the value written
/// back (found by the `catalog` fuzz target).
pub mod rfc3339 {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        let t = humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)?;
        let since = t
            .duration_since(UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?;
        let ms = u64::try_from(since.as_millis()).map_err(serde::de::Error::custom)?;
        Ok(UNIX_EPOCH + Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A timestamp with more than millisecond digits reads as its millisecond, and what was read
    /// is what is written back.
    #[test]
    fn timestamps_read_to_the_millisecond_round_trip() {
        let json = r#"{"id":"x","kind":"postgres-full","started_at":"2026-12-03T01:55:25.944444444Z","finished_at":"2026-12-03T01:55:27.315Z","compression":"zstd","objects":[]}"#;
        let m: Manifest = serde_json::from_str(json).expect("reads");
        assert_eq!(
            m.started_at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_262_925_944)
        );
        let again = serde_json::to_vec(&m).expect("json");
        let back: Manifest = serde_json::from_slice(&again).expect("reads back");
        assert_eq!(back, m);
    }

    #[test]
    fn manifest_round_trips_and_newest_wins() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let m = |id: &str, kind, secs| Manifest {
            objects: vec![ObjectEntry {
                key: "x".into(),
                size: 3,
                sha256: "ab".into(),
            }],
            ..Manifest::new(id, kind, t, t + Duration::from_secs(secs))
        };
        let a = serde_json::to_vec(&m("a", BackupKind::PostgresFull, 10)).expect("json");
        let b = serde_json::to_vec(&m("b", BackupKind::PostgresFull, 20)).expect("json");
        let c = Catalog::from_objects([
            ("catalog/postgres-full/a.json", a.as_slice()),
            ("catalog/postgres-full/b.json", b.as_slice()),
            ("catalog/redis/bad.json", b"{".as_slice()),
        ]);
        assert_eq!(
            c.newest(BackupKind::PostgresFull).map(|m| m.id.as_str()),
            Some("b")
        );
        assert!(c.newest(BackupKind::Redis).is_none());
        assert_eq!(c.unreadable.len(), 1);
        assert_eq!(
            BackupKind::PostgresIncr.manifest_key("x"),
            "catalog/postgres-incr/x.json"
        );
    }
}
