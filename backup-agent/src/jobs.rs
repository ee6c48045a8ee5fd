//! Backup jobs as the CLI and the scheduler run them: a start and an end line in backup.log
//! (outcome, size, duration, error), metrics, progress on a terminal or in the logs.

use std::io::IsTerminal;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::catalog::Manifest;
use common::logfmt::{Line, LogFile};

use crate::config::Config;
use crate::metrics::{Metrics, kind};
use crate::pg::basebackup;
use crate::storage::Storage;

/// One full backup, logged and measured.
pub async fn postgres_full(
    cfg: &Config,
    log: &LogFile,
    metrics: &Metrics,
) -> anyhow::Result<Manifest> {
    let storage = Storage::local(&cfg.storage.path);
    let started = Instant::now();
    log.emit(
        Line::new("job_start")
            .field("job", "postgres-full")
            .field("server", &cfg.postgres),
    );
    let tty = std::io::stderr().is_terminal();
    let mut last_log = Instant::now();
    let mut progress = |done: u64| {
        if tty {
            eprint!("\rpostgres-full: {} streamed", common_bytes(done));
        } else if last_log.elapsed().as_secs() >= 10 {
            last_log = Instant::now();
            tracing::info!(bytes = done, "postgres-full: streaming");
        }
    };
    let r = basebackup::run(&cfg.postgres, &storage, &cfg.compression, &mut progress).await;
    if tty {
        eprintln!();
    }
    let took = started.elapsed();
    let l = kind("postgres-full");
    match r {
        Ok(m) => {
            log.emit(
                Line::new("job_end")
                    .field("job", "postgres-full")
                    .field("outcome", "ok")
                    .field("id", &m.id)
                    .field("size", m.size())
                    .field("duration_ms", took.as_millis())
                    .field_opt("start_lsn", m.start_lsn.as_deref())
                    .field_opt("end_lsn", m.end_lsn.as_deref()),
            );
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            metrics
                .last_success
                .get_or_create(&l)
                .set(now.as_secs_f64());
            metrics
                .last_duration
                .get_or_create(&l)
                .set(took.as_secs_f64());
            metrics.last_size.get_or_create(&l).set(m.size() as i64);
            Ok(m)
        }
        Err(e) => {
            log.emit(
                Line::new("job_end")
                    .field("job", "postgres-full")
                    .field("outcome", "failed")
                    .field("duration_ms", took.as_millis())
                    .field("error", &e),
            );
            metrics.failures.get_or_create(&l).inc();
            Err(e.into())
        }
    }
}

fn common_bytes(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

/// Cleanup: what interrupted uploads left, then what retention lets go (manifest first). With
/// `dry_run`, only says what would go. Returns the keys removed (or to remove).
pub async fn cleanup(cfg: &Config, log: &LogFile, dry_run: bool) -> anyhow::Result<Vec<String>> {
    let storage = Storage::local(&cfg.storage.path);
    let catalog = crate::restore::catalog(&storage)?;
    let wal = storage.list("wal", false)?;
    let seg = storage
        .get(common::catalog::WAL_STATUS_KEY)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<common::catalog::WalStatus>(&b).ok())
        .and_then(|s| s.segment_size)
        .unwrap_or(16 << 20);
    let plan = crate::retention::plan(&catalog, &wal, seg, SystemTime::now(), &cfg.retention);
    let mut keys: Vec<(String, &str)> = storage
        .leftovers()?
        .into_iter()
        .map(|k| (k, "interrupted upload"))
        .collect();
    for (manifest, objects) in &plan.backups {
        keys.push((manifest.clone(), "retention"));
        keys.extend(objects.iter().map(|o| (o.clone(), "retention")));
    }
    keys.extend(
        plan.wal
            .iter()
            .map(|k| (k.clone(), "below the oldest kept full backup")),
    );
    if !dry_run {
        log.emit(Line::new("job_start").field("job", "cleanup"));
        for (k, why) in &keys {
            storage.delete(k).await?;
            log.emit(
                Line::new("cleanup_removed")
                    .field("key", k)
                    .field("why", why),
            );
        }
        log.emit(
            Line::new("job_end")
                .field("job", "cleanup")
                .field("outcome", "ok")
                .field("removed", keys.len())
                .field_opt(
                    "wal_horizon",
                    plan.wal_horizon.map(crate::pg::conn::format_lsn),
                ),
        );
    }
    Ok(keys.into_iter().map(|(k, _)| k).collect())
}
