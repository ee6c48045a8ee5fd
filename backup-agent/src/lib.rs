//! backup-agent: PostgreSQL full backups over the replication protocol, continuous WAL (the
//! incremental, for point-in-time recovery), Redis snapshots over the network, restore and
//! verification, to a local directory or S3.
//!
//! Data flow: config -> a source ([`pg`]: BASE_BACKUP, START_REPLICATION; [`redis_snapshot`]:
//! SYNC; [`logical`]: pg_dump) -> [`compress`] (zstd/gzip, then [`crypt`] when encryption is on)
//! -> [`storage`] (streamed, temp-then-rename or multipart) -> catalog manifest (written last);
//! [`restore`], [`verify`] and [`drill`] read the catalog back.

pub mod alloc;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod compress;
pub mod config;
pub mod context;
pub mod cron;
pub mod crypt;
pub mod drill;
pub mod ids;
pub mod jobs;
pub mod logical;
pub mod metrics;
pub mod osuser;
pub mod pg;
pub mod redis_snapshot;
pub mod report;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod storage;
pub mod verify;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::app::DaemonContext;
use common::logfmt::{Line, LogFile};

pub use config::Config;

/// Registers metrics and returns the daemon's work until cancelled: the WAL archiver (when
/// enabled) and its lag metrics, the scheduled jobs, catalog metrics.
pub fn daemon(
    cfg: Config,
    config_path: Option<std::path::PathBuf>,
    ctx: &mut DaemonContext,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let metrics = metrics::Metrics::register(&mut ctx.routes.registry);
    let log = Arc::new(
        LogFile::open(&cfg.log_file)
            .map_err(|e| anyhow::anyhow!("log_file {}: {e}", cfg.log_file.display()))?,
    );
    let cancel = ctx.cancel.clone();
    let readiness = ctx.readiness.clone();
    Ok(async move {
        let ctx = context::Ctx::new(Arc::new(cfg), log, metrics, cancel.clone()).await?;
        let (cfg, storage, log, metrics) = (&ctx.cfg, &ctx.storage, &ctx.log, &ctx.metrics);
        log.emit(
            Line::new("start")
                .field("storage", storage.describe())
                .field("wal", cfg.wal.enabled),
        );
        let shared = pg::wal::Shared::default();
        let archiver = cfg
            .wal
            .enabled
            .then(|| tokio::spawn(supervise_archiver(ctx.clone(), shared.clone())));
        let fetcher = restore::Fetcher::current(config_path.as_deref())?;
        let jobs = scheduled(&ctx, fetcher);
        let mut fire_now = vec![];
        if cfg.schedule.initial_full && jobs.iter().any(|j| j.name == "postgres-full") {
            match storage.catalog().await {
                Ok(c)
                    if !c
                        .manifests
                        .iter()
                        .any(|m| m.kind == common::catalog::BackupKind::PostgresFull) =>
                {
                    log.emit(
                        Line::new("initial_full").field("why", "the catalog holds no full backup"),
                    );
                    fire_now.push("postgres-full");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    "cannot read the catalog ({e}): no initial full backup; the schedule takes the first"
                ),
            }
        }
        let job_failed: Vec<(&'static str, Arc<std::sync::atomic::AtomicBool>)> =
            jobs.iter().map(|j| (j.name, j.last_failed())).collect();
        let scheduler = tokio::spawn(schedule::run(
            jobs,
            log.clone(),
            cancel.clone(),
            fire_now,
            cfg.shutdown_grace,
        ));
        let mut ticks = 0u64;
        let mut warned = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let p = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    // Ready: the archiver streams (when enabled) and no scheduled job's last run
                    // failed.
                    let failed = job_failed
                        .iter()
                        .any(|(_, f)| f.load(std::sync::atomic::Ordering::SeqCst));
                    readiness.set((!cfg.wal.enabled || p.streaming) && !failed);
                    metrics.wal_lag_bytes.set(p.server_end.saturating_sub(p.flushed) as i64);
                    let behind = p
                        .caught_up_at
                        .filter(|_| p.server_end > p.flushed)
                        .and_then(|t| t.elapsed().ok())
                        .unwrap_or_default();
                    metrics.wal_lag_seconds.set(behind.as_secs_f64());
                    ticks += 1;
                    if ticks % 30 == 1 {
                        if cfg.wal.enabled {
                            warned = slot_retained(cfg, metrics, log, warned).await;
                        }
                        catalog_metrics(storage, metrics).await;
                    }
                }
            }
        }
        if let Some(a) = archiver {
            let _ = a.await;
        }
        let _ = scheduler.await;
        log.emit(Line::new("stop"));
        Ok(())
    })
}

/// The WAL archiver, restarted with backoff (1 s doubling to 30 s) if it ever ends or panics
/// while the daemon runs; each stop is logged (`wal_archiver_stopped`).
async fn supervise_archiver(ctx: context::Ctx, shared: pg::wal::Shared) {
    let (log, cancel) = (&ctx.log, &ctx.cancel);
    let mut delay = Duration::from_secs(1);
    loop {
        let ended = tokio::spawn(pg::wal::run(ctx.clone(), shared.clone())).await;
        shared.lock().unwrap_or_else(|p| p.into_inner()).streaming = false;
        if cancel.is_cancelled() {
            return;
        }
        let why = match ended {
            Ok(()) => "it returned".to_string(),
            Err(j) if j.is_panic() => {
                format!("it panicked: {}", schedule::panic_text(j.into_panic()))
            }
            Err(e) => e.to_string(),
        };
        log.emit(
            Line::new("wal_archiver_stopped")
                .field("why", &why)
                .field("restart_in_s", delay.as_secs()),
        );
        tracing::error!("WAL archiver stopped ({why}); restarting in {delay:?}");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// The scheduled jobs of the config (an empty expression disables a job).
fn scheduled(ctx: &context::Ctx, fetcher: restore::Fetcher) -> Vec<schedule::Job> {
    let x = Scheduled {
        job: ctx.clone(),
        fetcher: Arc::new(fetcher),
    };
    let cfg = &ctx.cfg;
    let mut jobs = vec![];
    let mut add = |name: &'static str, expr: &str, run: fn(Scheduled) -> schedule::JobRun| {
        if expr.trim().is_empty() {
            return;
        }
        let x = x.clone();
        let failures = x.job.metrics.failures.clone();
        match cron::parse(expr, &cfg.schedule.timezone) {
            Ok(s) => jobs.push(
                schedule::Job::new(name, s, Arc::new(move || run(x.clone())))
                    .on_panic(Arc::new(move || {
                        failures.get_or_create(&metrics::kind(name)).inc();
                    }))
                    .retry(cfg.schedule.retry.clone()),
            ),
            Err(e) => tracing::error!("schedule of {name}: {e}"),
        }
    };
    let s = &cfg.schedule;
    add("postgres-full", &s.full, |x| {
        Box::pin(async move { jobs::postgres_full(&x.job).await.map(|_| ()) })
    });
    add("postgres-incr", &s.incremental, |x| {
        Box::pin(async move { jobs::postgres_incr(&x.job).await.map(|_| ()) })
    });
    add("redis", &s.redis, |x| {
        Box::pin(async move { jobs::redis(&x.job).await.map(|_| ()) })
    });
    add("postgres-logical", &s.logical, |x| {
        Box::pin(async move { jobs::postgres_logical(&x.job).await.map(|_| ()) })
    });
    add("restore-drill", &s.drill, |x| {
        Box::pin(async move { jobs::drill(&x.job, &x.fetcher).await.map(|_| ()) })
    });
    add("cleanup", &s.cleanup, |x| {
        Box::pin(async move {
            jobs::cleanup(&x.job, false, Duration::from_secs(12 * 3600))
                .await
                .map(|_| ())
        })
    });
    jobs
}

/// What every scheduled job runs with: the daemon's one job context, and the binary a drill's
/// temporary cluster fetches WAL with.
#[derive(Clone)]
struct Scheduled {
    job: context::Ctx,
    fetcher: Arc<restore::Fetcher>,
}

/// Exports the WAL the archiver's slot retains on the server; warns (once per crossing) past
/// `wal.retained_warn_bytes`: a stalled archiver must not silently fill pg_wal.
async fn slot_retained(
    cfg: &Config,
    metrics: &metrics::Metrics,
    log: &LogFile,
    warned: bool,
) -> bool {
    let q = "SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1";
    let retained: Option<i64> = match cfg.postgres.connect("backup-agent").await {
        Ok(c) => c
            .query_opt(q, &[&cfg.wal.slot])
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0)),
        Err(e) => {
            tracing::debug!("slot check: {e:#}");
            None
        }
    };
    let Some(bytes) = retained else { return warned };
    metrics.slot_retained.set(bytes);
    let over = bytes as u64 > cfg.wal.retained_warn_bytes;
    if over && !warned {
        tracing::warn!(slot = %cfg.wal.slot, bytes, "the replication slot retains more WAL than wal.retained_warn_bytes");
        log.emit(
            Line::new("wal_slot_retained_high")
                .field("slot", &cfg.wal.slot)
                .field("bytes", bytes)
                .field("threshold", cfg.wal.retained_warn_bytes),
        );
    }
    over
}

/// Last success, size and stored bytes per kind, from the catalog — the source of truth, so
/// backups run from the CLI and before a restart count too.
async fn catalog_metrics(storage: &storage::Storage, metrics: &metrics::Metrics) {
    let Ok(cat) = storage.catalog().await else {
        return;
    };
    for kind in common::catalog::BackupKind::ALL {
        let l = metrics::kind(kind.as_str());
        let of_kind: Vec<_> = cat.manifests.iter().filter(|m| m.kind == kind).collect();
        if let Some(newest) = of_kind.iter().max_by_key(|m| m.finished_at) {
            let ts = newest
                .finished_at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            metrics.last_success.get_or_create(&l).set(ts);
            metrics
                .last_size
                .get_or_create(&l)
                .set(newest.size() as i64);
            let took = newest
                .finished_at
                .duration_since(newest.started_at)
                .unwrap_or_default();
            metrics
                .last_duration
                .get_or_create(&l)
                .set(took.as_secs_f64());
        }
        // Present from the start, so that increase() and alerts see the first failure.
        let _ = metrics.failures.get_or_create(&l);
        let total: u64 = of_kind.iter().map(|m| m.size()).sum();
        metrics.storage_bytes.get_or_create(&l).set(total as i64);
    }
    if let Some((start, end)) = cat.recovery_window() {
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        metrics.window_start.set(secs(start));
        metrics.window_end.set(secs(end));
    }
    if let Some(d) = cat
        .drills
        .iter()
        .filter(|d| d.ok)
        .max_by_key(|d| d.finished_at)
    {
        let ts = d
            .finished_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        metrics.last_drill_success.set(ts);
    }
    let wal: u64 = storage
        .list("wal")
        .await
        .unwrap_or_default()
        .iter()
        .map(|(_, n)| n)
        .sum();
    metrics
        .storage_bytes
        .get_or_create(&metrics::kind("wal"))
        .set(wal as i64);
}
