//! Retention: keep every full backup younger than `retention.keep` and at least the newest
//! `retention.min_full_backups`, whatever their age; delete WAL only below the start LSN of the
//! oldest kept full backup, and incrementals older than it. A backup's manifest is deleted before
//! its objects, so a half-deleted backup is never listed.

use std::time::SystemTime;

use common::catalog::{BackupKind, Catalog, Manifest};

use crate::pg::lsn::parse_lsn;

use crate::config::Policy;

/// What a cleanup removes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Backups to delete: the manifest key, then their objects.
    pub backups: Vec<(String, Vec<String>)>,
    /// WAL objects below the oldest kept full backup.
    pub wal: Vec<String>,
    /// The LSN below which WAL goes (the oldest kept full backup's start).
    pub wal_horizon: Option<u64>,
}

/// The start LSN of a WAL object key (`wal/TTTTTTTTXXXXXXXXYYYYYYYY[.partial].zst`) and its end.
fn segment_range(key: &str, seg_size: u64) -> Option<(u64, u64)> {
    let (_, segno) = crate::pg::lsn::parse_segment_name(key.strip_prefix("wal/")?, seg_size)?;
    let start = segno * seg_size;
    Some((start, start + seg_size))
}

/// Decides what goes. `wal_keys` are the stored WAL objects.
pub fn plan(
    catalog: &Catalog,
    wal_keys: &[String],
    seg_size: u64,
    now: SystemTime,
    p: &Policy,
) -> Plan {
    let mut fulls: Vec<&Manifest> = catalog
        .manifests
        .iter()
        .filter(|m| m.kind == BackupKind::PostgresFull)
        .collect();
    fulls.sort_by_key(|m| std::cmp::Reverse(m.finished_at));
    let young = |m: &Manifest| now.duration_since(m.finished_at).unwrap_or_default() <= p.keep;
    let kept: Vec<&Manifest> = fulls
        .iter()
        .enumerate()
        .filter(|(i, m)| *i < p.min_full_backups || young(m))
        .map(|(_, m)| *m)
        .collect();
    let oldest_kept = kept.iter().min_by_key(|m| m.finished_at).copied();
    let horizon = oldest_kept.and_then(|m| m.start_lsn.as_deref().and_then(parse_lsn));
    let mut out = Plan {
        wal_horizon: horizon,
        ..Plan::default()
    };
    for m in &catalog.manifests {
        let doomed = match m.kind {
            BackupKind::PostgresFull => !kept.iter().any(|k| k.id == m.id),
            // Incrementals go with age, but never while a kept full is older.
            BackupKind::PostgresIncr => {
                !young(m) && oldest_kept.is_none_or(|o| m.finished_at < o.finished_at)
            }
            // Logical dumps and Redis snapshots stand alone: they go with age, except the newest
            // of their kind (an old backup beats none).
            BackupKind::PostgresLogical | BackupKind::Redis => {
                !young(m) && catalog.newest(m.kind).is_some_and(|n| n.id != m.id)
            }
        };
        if doomed {
            out.backups.push((
                m.kind.manifest_key(&m.id),
                m.objects.iter().map(|o| o.key.clone()).collect(),
            ));
        }
    }
    // With no full backup kept there is nothing to replay WAL onto, but deleting it all would
    // be irreversible: keep it.
    if let Some(h) = horizon {
        out.wal = wal_keys
            .iter()
            .filter(|k| segment_range(k, seg_size).is_some_and(|(_, end)| end <= h))
            .cloned()
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn full(id: &str, days_old: u64, start: &str, now: SystemTime) -> Manifest {
        let t = now - Duration::from_secs(days_old * 86400);
        Manifest {
            id: id.into(),
            kind: BackupKind::PostgresFull,
            started_at: t,
            finished_at: t,
            system_id: None,
            pg_version: Some(15),
            timeline: Some(1),
            start_lsn: Some(start.into()),
            end_lsn: Some(start.into()),
            compression: "zstd".into(),
            info: Default::default(),
            objects: vec![common::catalog::ObjectEntry {
                key: format!("postgres/full/{id}/base.tar.zst"),
                size: 1,
                sha256: "x".into(),
            }],
        }
    }

    #[test]
    fn keeps_the_minimum_and_the_wal_they_need() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let seg = 16 << 20;
        let cat = Catalog {
            manifests: vec![
                full("a", 90, "0/2000028", now),
                full("b", 60, "0/5000028", now),
                full("c", 45, "0/9000028", now),
            ],
            ..Catalog::default()
        };
        let wal: Vec<String> = (1..=12)
            .map(|i| format!("wal/00000001000000000000000{i:X}.zst"))
            .chain(["wal/00000002.history.zst".to_string()])
            .collect();
        let p = plan(&cat, &wal, seg, now, &Policy::default());
        // All three are older than 30 days: the newest two stay anyway.
        assert_eq!(p.backups.len(), 1);
        assert_eq!(p.backups[0].0, "catalog/postgres-full/a.json");
        assert_eq!(
            p.backups[0].1,
            vec!["postgres/full/a/base.tar.zst".to_string()]
        );
        // b starts in segment 5: segments 1-4 go, 5 and later stay; history files stay.
        assert_eq!(p.wal_horizon, Some(0x5000028));
        assert_eq!(
            p.wal,
            (1..=4)
                .map(|i| format!("wal/00000001000000000000000{i}.zst"))
                .collect::<Vec<_>>()
        );
        // With min 3, nothing goes.
        let p = plan(
            &cat,
            &wal,
            seg,
            now,
            &Policy {
                min_full_backups: 3,
                ..Policy::default()
            },
        );
        assert!(p.backups.is_empty());
        assert!(
            p.wal
                .iter()
                .all(|k| segment_range(k, seg).is_some_and(|(_, e)| e <= 0x2000028))
        );
        // Nothing at all kept (min 0, all old): no WAL is deleted.
        let p = plan(
            &cat,
            &wal,
            seg,
            now,
            &Policy {
                min_full_backups: 0,
                ..Policy::default()
            },
        );
        assert_eq!(p.backups.len(), 3);
        assert!(p.wal.is_empty());
    }

    #[test]
    fn redis_snapshots_go_with_age_but_the_newest_stays() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let redis = |id: &str, days| Manifest {
            kind: BackupKind::Redis,
            objects: vec![common::catalog::ObjectEntry {
                key: format!("redis/{id}/dump.rdb.zst"),
                size: 1,
                sha256: "x".into(),
            }],
            ..full(id, days, "0/0", now)
        };
        let cat = Catalog {
            manifests: vec![redis("r1", 40), redis("r2", 35), redis("r3", 1)],
            ..Catalog::default()
        };
        let p = plan(&cat, &[], 16 << 20, now, &Policy::default());
        let gone: Vec<&str> = p.backups.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(gone, vec!["catalog/redis/r1.json", "catalog/redis/r2.json"]);
        // Only old ones: the newest of them stays.
        let cat = Catalog {
            manifests: vec![redis("r1", 40), redis("r2", 35)],
            ..Catalog::default()
        };
        let p = plan(&cat, &[], 16 << 20, now, &Policy::default());
        let gone: Vec<&str> = p.backups.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(gone, vec!["catalog/redis/r1.json"]);
    }
}
