//! Backup jobs as the CLI and the scheduler run them: a start and an end line in backup.log
//! (outcome, size, duration, error), metrics, progress on a terminal or in the logs.

use std::io::IsTerminal;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::catalog::Manifest;
use common::logfmt::Line;

use crate::config::Config;
use crate::context::Ctx;
use crate::metrics::kind;
use crate::pg::basebackup;
use crate::storage::Storage;

/// Runs a job that produces a catalog entry: start and end lines in backup.log (outcome, id,
/// size, duration, LSN range or the error) and the job's metrics.
async fn logged<F>(
    job: &str,
    server: &(dyn std::fmt::Display + Sync),
    ctx: &Ctx,
    work: F,
) -> anyhow::Result<Manifest>
where
    F: std::future::Future<Output = anyhow::Result<Manifest>>,
{
    let (log, metrics) = (&ctx.log, &ctx.metrics);
    let started = Instant::now();
    log.emit(
        Line::new("job_start")
            .field("job", job)
            .field("server", server),
    );
    let r = work.await;
    let took = started.elapsed();
    let l = kind(job);
    match r {
        Ok(m) => {
            let mut line = Line::new("job_end")
                .field("job", job)
                .field("outcome", "ok")
                .field("id", &m.id)
                .field("size", m.size())
                .field("duration_ms", took.as_millis())
                .field_opt("start_lsn", m.start_lsn.as_deref())
                .field_opt("end_lsn", m.end_lsn.as_deref());
            for (k, v) in &m.info {
                line = line.field(k, v);
            }
            log.emit(line);
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
                    .field("job", job)
                    .field("outcome", "failed")
                    .field("duration_ms", took.as_millis())
                    .field("error", format!("{e:#}")),
            );
            metrics.failures.get_or_create(&l).inc();
            Err(e)
        }
    }
}

/// One full backup, logged and measured; progress on a terminal, or in the log every 10 s.
pub async fn postgres_full(ctx: &Ctx) -> anyhow::Result<Manifest> {
    let cfg = &ctx.cfg;
    logged("postgres-full", &cfg.postgres, ctx, async {
        let mut progress = Progress::new("postgres-full");
        // Only a person watching needs a total; the server's sizing pass is skipped otherwise.
        let estimate = progress.tty;
        let r = basebackup::run(
            &cfg.postgres,
            &ctx.storage,
            &ctx.codec,
            estimate,
            &mut |done, total| progress.update(done, total),
        )
        .await;
        progress.end();
        Ok(r?)
    })
    .await
}

/// One Redis snapshot, logged and measured (the server named is the master Sentinel follows, or
/// the fixed address; the node actually used is in the end line).
pub async fn redis(ctx: &Ctx) -> anyhow::Result<Manifest> {
    let cfg = &ctx.cfg;
    let server = match cfg.redis_snapshot.source {
        crate::config::SnapshotSource::Sentinel => format!(
            "sentinel:{}/{}",
            cfg.redis_snapshot.sentinels.join(","),
            cfg.redis_snapshot.master_name
        ),
        crate::config::SnapshotSource::Address => cfg.redis.to_string(),
    };
    logged("redis", &server, ctx, async {
        let mut progress = Progress::new("redis");
        let r =
            crate::redis_snapshot::snapshot(ctx, &mut |done, total| progress.update(done, total))
                .await;
        progress.end();
        r
    })
    .await
}

/// One logical dump of every configured database plus the globals, logged and measured.
pub async fn postgres_logical(ctx: &Ctx) -> anyhow::Result<Manifest> {
    let cfg = &ctx.cfg;
    let pg = cfg.logical.postgres.as_ref().unwrap_or(&cfg.postgres);
    logged("postgres-logical", pg, ctx, crate::logical::backup(ctx)).await
}

/// One restore drill, logged (start and end lines) and measured. A failed drill is recorded in
/// the catalog and returned as an error.
pub async fn drill(
    ctx: &Ctx,
    fetcher: &crate::restore::Fetcher,
) -> anyhow::Result<common::catalog::DrillRecord> {
    let (log, metrics) = (&ctx.log, &ctx.metrics);
    let started = Instant::now();
    log.emit(Line::new("job_start").field("job", "restore-drill"));
    let r = async {
        let codec = ctx.reader()?;
        crate::drill::run(&ctx.cfg, &ctx.storage, &codec, fetcher).await
    }
    .await;
    let took = started.elapsed().as_millis();
    match r {
        Ok(d) if d.ok => {
            log.emit(
                Line::new("job_end")
                    .field("job", "restore-drill")
                    .field("outcome", "ok")
                    .field("id", &d.id)
                    .field("backup", &d.backup_id)
                    .field("duration_ms", took)
                    .field("result", &d.detail),
            );
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            metrics.last_drill_success.set(now.as_secs_f64());
            Ok(d)
        }
        other => {
            let error = match &other {
                Ok(d) => d.detail.clone(),
                Err(e) => format!("{e:#}"),
            };
            log.emit(
                Line::new("job_end")
                    .field("job", "restore-drill")
                    .field("outcome", "failed")
                    .field("duration_ms", took)
                    .field("error", &error),
            );
            metrics.drill_failures.inc();
            Err(anyhow::anyhow!("restore drill failed: {error}"))
        }
    }
}

/// Progress of a streaming job: a bar (or a byte count when the total is unknown) redrawn on a
/// terminal, a log line every 10 s otherwise.
pub struct Progress {
    job: &'static str,
    tty: bool,
    started: Instant,
    last: Instant,
    drawn: bool,
}

impl Progress {
    pub fn new(job: &'static str) -> Self {
        let now = Instant::now();
        Self {
            job,
            tty: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            drawn: false,
        }
    }

    pub fn update(&mut self, done: u64, total: Option<u64>) {
        if self.tty {
            // Redraw at most 10 times a second.
            if self.drawn && self.last.elapsed().as_millis() < 100 {
                return;
            }
            self.last = Instant::now();
            self.drawn = true;
            eprint!("\r{}", bar(self.job, done, total, self.started.elapsed()));
        } else if self.last.elapsed().as_secs() >= 10 {
            self.last = Instant::now();
            tracing::info!(bytes = done, total, "{}: streaming", self.job);
        }
    }

    pub fn end(&mut self) {
        if self.tty && self.drawn {
            eprintln!();
        }
    }
}

/// `redis [#########-----------]  45% 10.2/22.7 MiB 31.4 MiB/s` (no bar without a total).
fn bar(job: &str, done: u64, total: Option<u64>, took: std::time::Duration) -> String {
    let mib = |n: u64| n as f64 / (1 << 20) as f64;
    let rate = mib(done) / took.as_secs_f64().max(0.001);
    match total.filter(|t| *t > 0) {
        Some(t) => {
            let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
            let filled = (frac * 20.0).round() as usize;
            format!(
                "{job} [{}{}] {:>3.0}% {:.1}/{:.1} MiB {rate:.1} MiB/s ",
                "#".repeat(filled),
                "-".repeat(20 - filled),
                frac * 100.0,
                mib(done),
                mib(t)
            )
        }
        None => format!("{job} {:.1} MiB {rate:.1} MiB/s ", mib(done)),
    }
}

/// Cleanup: what interrupted uploads left (local temporary files of processes that are gone; S3
/// multipart uploads never completed and older than `leftover_age`), then what retention lets go
/// (manifest first). With `dry_run`, only says what would go. Returns what was (or would be) removed.
pub async fn cleanup(
    ctx: &Ctx,
    dry_run: bool,
    leftover_age: std::time::Duration,
) -> anyhow::Result<Vec<String>> {
    let (cfg, storage, log) = (&ctx.cfg, &ctx.storage, &ctx.log);
    let catalog = storage.catalog().await?;
    let wal = storage.keys("wal").await?;
    let seg = catalog
        .wal
        .as_ref()
        .and_then(|s| s.segment_size)
        .unwrap_or(16 << 20);
    let plan = crate::retention::plan(&catalog, &wal, seg, SystemTime::now(), &cfg.retention);
    let leftovers = storage.leftovers(leftover_age).await?;
    let mut keys: Vec<(String, &str)> = vec![];
    for (manifest, objects) in &plan.backups {
        keys.push((manifest.clone(), "retention"));
        keys.extend(objects.iter().map(|o| (o.clone(), "retention")));
    }
    keys.extend(
        plan.wal
            .iter()
            .map(|k| (k.clone(), "below the oldest kept full backup")),
    );
    // Id claims outlive their job by a day (a job still running keeps its id).
    let day_ago = SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    keys.extend(
        storage
            .keys("claims")
            .await?
            .into_iter()
            .filter(|k| {
                let id = k.rsplit('/').next().unwrap_or("");
                crate::ids::id_time(id).is_some_and(|t| t < day_ago)
            })
            .map(|k| (k, "backup id claim older than a day")),
    );
    let mut done: Vec<String> = leftovers.iter().map(ToString::to_string).collect();
    done.extend(keys.iter().map(|(k, _)| k.clone()));
    if !dry_run {
        log.emit(Line::new("job_start").field("job", "cleanup"));
        for l in &leftovers {
            storage.remove_leftover(l).await?;
            log.emit(
                Line::new("cleanup_removed")
                    .field("key", l)
                    .field("why", "interrupted upload"),
            );
        }
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
                .field("removed", done.len())
                .field_opt(
                    "wal_horizon",
                    plan.wal_horizon.map(crate::pg::lsn::format_lsn),
                ),
        );
    }
    Ok(done)
}

/// The incremental: switch WAL, create a restore point, wait until the archive has the WAL up to
/// the switch, check that the WAL since the previous backup is complete (no gap), and record it.
pub async fn postgres_incr(ctx: &Ctx) -> anyhow::Result<Manifest> {
    logged(
        "postgres-incr",
        &ctx.cfg.postgres,
        ctx,
        incr(&ctx.cfg, &ctx.storage),
    )
    .await
}

async fn incr(cfg: &Config, storage: &Storage) -> anyhow::Result<Manifest> {
    use crate::pg::lsn::{format_lsn, parse_lsn};
    use common::catalog::{BackupKind, ObjectEntry, WAL_STATUS_KEY, WalStatus};
    let (id, started_at) = crate::ids::fresh_id(storage, BackupKind::PostgresIncr).await?;
    let catalog = storage.catalog().await?;
    let previous = catalog
        .manifests
        .iter()
        .filter(|m| matches!(m.kind, BackupKind::PostgresFull | BackupKind::PostgresIncr))
        .max_by_key(|m| m.finished_at)
        .ok_or_else(|| {
            anyhow::anyhow!("no full backup yet: an incremental needs one to build on")
        })?;
    let from = previous
        .end_lsn
        .as_deref()
        .and_then(parse_lsn)
        .ok_or_else(|| anyhow::anyhow!("backup {} has no end LSN", previous.id))?;
    let client = cfg.postgres.connect("backup-agent").await?;
    let system_id: String = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(|e| anyhow::anyhow!("pg_control_system(): {}", common::conn::pg_error_text(&e)))?
        .get(0);
    crate::cluster::claim(storage, &system_id, previous.pg_version).await?;
    let switched: String = client
        .query_one("SELECT pg_switch_wal()::text", &[])
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "pg_switch_wal(): {} (GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {})",
                common::conn::pg_error_text(&e),
                cfg.postgres.user
            )
        })?
        .get(0);
    let point = format!("outrigger-{id}");
    client
        .query_one("SELECT pg_create_restore_point($1)::text", &[&point])
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "pg_create_restore_point(): {} (GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO {})",
                common::conn::pg_error_text(&e),
                cfg.postgres.user
            )
        })?;
    let to = parse_lsn(&switched)
        .ok_or_else(|| anyhow::anyhow!("pg_switch_wal() returned {switched:?}"))?;
    // Wait for the archiver to have it all.
    let deadline = Instant::now() + cfg.wal.flush_interval * 3 + std::time::Duration::from_secs(60);
    let status = loop {
        let st: Option<WalStatus> = storage
            .get(WAL_STATUS_KEY)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(s) = st.as_ref().filter(|s| {
            s.flushed_lsn.as_str() != "" && parse_lsn(&s.flushed_lsn).is_some_and(|f| f >= to)
        }) {
            break s.clone();
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the WAL archive has not reached {} (pg_switch_wal) in time: is the archiver running? (archived up to {})",
                format_lsn(to),
                st.map(|s| s.flushed_lsn)
                    .unwrap_or_else(|| "nothing".into())
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let seg = status.segment_size.unwrap_or(16 << 20);
    let mut objects = vec![];
    let mut missing = vec![];
    // Every segment from the previous backup's end to the switch point (the switch LSN is the end of
    // the last segment, so it is excluded).
    for segno in crate::pg::lsn::segments_between(from, to, seg) {
        let name = crate::pg::lsn::segment_name(status.timeline, segno, seg);
        let Some(key) = crate::pg::wal::stored_key(storage, &name).await? else {
            missing.push(name);
            continue;
        };
        // The archiver recorded each object's SHA-256 beside it; only objects stored before
        // that are read back to hash them.
        let sum = crate::pg::wal::recorded_sum(storage, &key).await?;
        let (size, sha256) = match sum {
            Some(sum) => (storage.size(&key).await?, sum),
            None => {
                use sha2::Digest;
                let bytes = storage.get(&key).await?;
                (
                    bytes.len() as u64,
                    hex::encode(sha2::Sha256::digest(&bytes)),
                )
            }
        };
        objects.push(ObjectEntry { key, size, sha256 });
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "WAL since backup {} is not complete: missing {} segment(s): {}",
            previous.id,
            missing.len(),
            missing.join(", ")
        );
    }
    let m = Manifest {
        id: id.clone(),
        kind: BackupKind::PostgresIncr,
        started_at,
        finished_at: SystemTime::now(),
        system_id: previous.system_id.clone(),
        pg_version: previous.pg_version,
        timeline: Some(status.timeline),
        start_lsn: Some(format_lsn(from)),
        end_lsn: Some(format_lsn(to)),
        compression: crate::compress::name(cfg.compression.algorithm).into(),
        info: Default::default(),
        objects,
    };
    crate::catalog::record(storage, &m).await?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn progress_bar_shows_share_size_and_rate() {
        let b = super::bar(
            "postgres-full",
            512 << 20,
            Some(1 << 30),
            Duration::from_secs(2),
        );
        assert_eq!(
            b,
            "postgres-full [##########----------]  50% 512.0/1024.0 MiB 256.0 MiB/s "
        );
        // The server's estimate can be below what was sent: never past 100%.
        let b = super::bar(
            "postgres-full",
            2 << 20,
            Some(1 << 20),
            Duration::from_secs(1),
        );
        assert!(b.contains("[####################] 100%"), "{b}");
        // No total (a diskless Redis transfer): bytes and rate only.
        let b = super::bar("redis", 3 << 20, None, Duration::from_secs(1));
        assert_eq!(b, "redis 3.0 MiB 3.0 MiB/s ");
    }
}
