//! Restore drill (`verify --restore-drill`): the newest full backup plus the archived WAL restored
//! into a temporary directory, a throwaway PostgreSQL started on it (socket only, its own
//! pg_hba), a query run once recovery is over, the result recorded in the catalog
//! (`catalog/drills/<id>.json`) and the metrics, and the directory removed whatever happened.

use std::path::Path;
use std::time::SystemTime;

use common::catalog::{BackupKind, DrillRecord};

use crate::compress::Codec;
use crate::restore::{Fetcher, Options, Target, recover};
use crate::storage::Storage;

/// Runs one drill and records it (passed or failed). `fetcher` is the binary the temporary
/// cluster fetches WAL with (`wal-fetch`). Returns the record; a failed drill is
/// `Ok` with `ok = false` (the error is in `detail`), an error only when nothing could be recorded.
pub async fn run(
    cfg: &crate::config::Config,
    storage: &Storage,
    codec: &Codec,
    fetcher: &Fetcher,
) -> anyhow::Result<DrillRecord> {
    let d = &cfg.drill;
    let started_at = SystemTime::now();
    let id = crate::ids::new_id(started_at);
    let cat = storage.catalog().await?;
    let backup = cat
        .newest(BackupKind::PostgresFull)
        .ok_or_else(|| anyhow::anyhow!("no complete full backup to drill"))?
        .clone();
    let work = d
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("outrigger-drill-{id}-{}", std::process::id()));
    let outcome = tokio::time::timeout(
        d.timeout,
        attempt(cfg, storage, codec, fetcher, &backup, &work),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish within {:?}", d.timeout)));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let record = DrillRecord {
        id: id.clone(),
        backup_id: backup.id.clone(),
        started_at,
        finished_at: SystemTime::now(),
        ok: outcome.is_ok(),
        detail: match &outcome {
            Ok(v) => format!("{} -> {v}", d.query),
            Err(e) => format!("{e:#}"),
        },
    };
    crate::catalog::record_drill(storage, &record).await?;
    Ok(record)
}

/// Restore, recover with a temporary postmaster, query, stop. The result of the query as text.
async fn attempt(
    cfg: &crate::config::Config,
    storage: &Storage,
    codec: &Codec,
    fetcher: &Fetcher,
    backup: &common::catalog::Manifest,
    work: &Path,
) -> anyhow::Result<String> {
    use std::os::unix::fs::DirBuilderExt;
    let d = &cfg.drill;
    std::fs::DirBuilder::new().mode(0o700).create(work)?;
    let owner = if crate::osuser::is_root() {
        let o = crate::osuser::lookup(&d.os_user).map_err(|e| {
            anyhow::anyhow!("running as root, PostgreSQL needs another user (drill.os_user): {e:#}")
        })?;
        crate::osuser::chown_tree(work, o.0, o.1)?;
        Some(o)
    } else {
        None
    };
    let data = work.join("data");
    // The newest backup plus every archived WAL file after it.
    let opts = Options {
        target: Target::Latest,
        dir: data.clone(),
        owner: owner.map(|(u, g)| format!("{u}:{g}")),
        tablespaces: Default::default(),
        recover: false,
    };
    crate::restore::restore(cfg, storage, codec, &opts, fetcher)
        .await
        .map_err(|e| anyhow::anyhow!("restore of {}: {e:#}", backup.id))?;
    let bin = recover::bin_dir(d.bin_dir.as_deref(), backup.pg_version);
    let r = recover::run(&recover::Run {
        dir: &data,
        bin: &bin,
        owner,
        user: &d.user,
        database: &d.database,
        query: Some(&d.query),
        wal: recover::Wal {
            storage,
            codec,
            settings: &cfg.restore,
        },
    })
    .await?;
    Ok(r.answer.unwrap_or_default())
}
