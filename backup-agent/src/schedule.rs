//! Cron schedules (standard Vixie/POSIX cron, 5 fields, UTC unless `schedule.timezone` or
//! `CRON_TZ=` says otherwise): each job fires at its times; a run
//! that would overlap the same job's previous one is skipped and logged; a run missed (the
//! process was stopped or the machine asleep past its time) is logged.
//!
//! Weekdays are 0-7 with 0 and 7 Sunday, or names (`MON-FRI`); months 1-12 or names;
//! `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`; when both day of month and day of week
//! are restricted, either matching fires (`0 3 1 * MON`: the 1st and every Monday).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::logfmt::{Line, LogFile};
use tokio_util::sync::CancellationToken;

use crate::cron::Schedule;

/// One run of a job.
pub type JobRun = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

pub type JobFn = Arc<dyn Fn() -> JobRun + Send + Sync>;

/// A panic's message (the `panic!` text), or "" when it is not text.
pub fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// One scheduled job.
pub struct Job {
    pub name: &'static str,
    pub schedule: Schedule,
    pub run: JobFn,
    running: Arc<AtomicBool>,
    /// The last run failed (an error or a panic); cleared by a run that succeeds.
    last_failed: Arc<AtomicBool>,
    /// The run going now, to abort it when a shutdown's grace runs out.
    current: Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
    /// Called when a run panics (the failures metric), after backup.log says so.
    on_panic: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Delays before the retries of a failed run.
    retry: Vec<Duration>,
    /// Ends pending retries (the scheduler's stop).
    cancel: CancellationToken,
}

impl Job {
    pub fn new(name: &'static str, schedule: Schedule, run: JobFn) -> Self {
        Self {
            name,
            schedule,
            run,
            running: Arc::new(AtomicBool::new(false)),
            last_failed: Arc::new(AtomicBool::new(false)),
            current: Arc::default(),
            on_panic: None,
            retry: Vec::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Retries a failed run after each of `delays` in turn.
    pub fn retry(mut self, delays: Vec<Duration>) -> Self {
        self.retry = delays;
        self
    }

    /// Whether a run is going.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Set while the job's last run failed (for `/readyz`).
    pub fn last_failed(&self) -> Arc<AtomicBool> {
        self.last_failed.clone()
    }

    /// What else to do when a run panics.
    pub fn on_panic(mut self, f: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.on_panic = Some(f);
        self
    }

    /// Starts a run unless one is going: returns false (and logs) when it would overlap.
    pub fn fire(self: &Arc<Self>, log: &Arc<LogFile>) -> bool {
        self.fire_attempt(log, 0)
    }

    /// Run `retries` (0: the scheduled run itself); a failed one schedules the next retry.
    fn fire_attempt(self: &Arc<Self>, log: &Arc<LogFile>, retries: usize) -> bool {
        if self.running.swap(true, Ordering::SeqCst) {
            log.emit(
                Line::new("job_skipped")
                    .field("job", self.name)
                    .field("why", "the previous run is still going"),
            );
            return false;
        }
        let inner = tokio::spawn((self.run)());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(inner.abort_handle());
        let (job, log) = (self.clone(), log.clone());
        tokio::spawn(async move {
            let name = job.name;
            // The job writes its own start and end lines (with the error) to backup.log. A panic
            // is caught here (the run is a task of its own): reported failed, and the job stays
            // schedulable instead of looking "still going" forever.
            let outcome = inner.await;
            let failed = !matches!(outcome, Ok(Ok(())));
            job.last_failed.store(failed, Ordering::SeqCst);
            let aborted = matches!(&outcome, Err(j) if !j.is_panic());
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("{name}: {e:#}"),
                Err(j) if j.is_panic() => {
                    let msg = panic_text(j.into_panic());
                    log.emit(
                        Line::new("job_end")
                            .field("job", name)
                            .field("outcome", "failed")
                            .field("error", format!("the job panicked: {msg}")),
                    );
                    tracing::error!("{name}: the job panicked: {msg}");
                    if let Some(f) = &job.on_panic {
                        f();
                    }
                }
                // Aborted at the end of a shutdown's grace: `run` below says so.
                Err(_) => {}
            }
            job.running.store(false, Ordering::SeqCst);
            crate::alloc::release_free();
            if failed && !aborted {
                job.retry_later(&log, retries).await;
            }
        });
        true
    }

    /// After a failed run: the next retry, unless none is left, the next scheduled run comes
    /// first, or the scheduler stops meanwhile.
    async fn retry_later(self: &Arc<Self>, log: &Arc<LogFile>, done: usize) {
        let Some(&delay) = self.retry.get(done) else {
            if !self.retry.is_empty() {
                log.emit(
                    Line::new("job_retries_exhausted")
                        .field("job", self.name)
                        .field("attempts", done + 1),
                );
            }
            return;
        };
        let now = chrono::Utc::now();
        if let Some(next) = self.schedule.next_after(now)
            && (next - now).to_std().unwrap_or_default() <= delay
        {
            return;
        }
        log.emit(
            Line::new("job_retry")
                .field("job", self.name)
                .field("attempt", done + 2)
                .field("of", self.retry.len() + 1)
                .field("in_s", delay.as_secs()),
        );
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(delay) => {
                self.fire_attempt(log, done + 1);
            }
        }
    }

    /// Aborts the run going now (its objects are dropped unfinished: a local temporary file is
    /// removed, an S3 multipart upload aborted).
    fn abort(&self) {
        if let Some(h) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

/// Fires each job at its times until cancelled.
pub async fn run(
    jobs: Vec<Job>,
    log: Arc<LogFile>,
    cancel: CancellationToken,
    fire_now: Vec<&'static str>,
    grace: Duration,
) {
    let jobs: Vec<Arc<Job>> = jobs
        .into_iter()
        .map(|mut j| {
            j.cancel = cancel.clone();
            Arc::new(j)
        })
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for job in jobs.iter().cloned() {
        let (log, cancel) = (log.clone(), cancel.clone());
        let now = fire_now.contains(&job.name);
        set.spawn(async move {
            if now {
                job.fire(&log);
            }
            loop {
                let Some(next) = job.schedule.next_after(chrono::Utc::now()) else {
                    return;
                };
                let wait = (next - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                let late = (chrono::Utc::now() - next)
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                if late > Duration::from_secs(60) {
                    log.emit(
                        Line::new("job_missed")
                            .field("job", job.name)
                            .field("scheduled", next.to_rfc3339())
                            .field("late_s", late.as_secs()),
                    );
                }
                job.fire(&log);
            }
        });
    }
    while set.join_next().await.is_some() {}
    shutdown(&jobs, &log, grace).await;
}

/// After the stop signal: running jobs get `grace` to finish; then they are aborted and logged
/// `job_end outcome=aborted`. Nothing is dropped silently.
pub async fn shutdown(jobs: &[Arc<Job>], log: &Arc<LogFile>, grace: Duration) {
    let running = || -> Vec<&'static str> {
        jobs.iter()
            .filter(|j| j.is_running())
            .map(|j| j.name)
            .collect()
    };
    if running().is_empty() {
        return;
    }
    log.emit(
        Line::new("shutdown_wait")
            .field("jobs", running().join(","))
            .field("grace_s", grace.as_secs()),
    );
    tracing::info!(
        "waiting up to {grace:?} for {} to finish",
        running().join(", ")
    );
    let deadline = tokio::time::Instant::now() + grace;
    while !running().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = running();
    for j in jobs.iter().filter(|j| j.is_running()) {
        j.abort();
        log.emit(
            Line::new("job_end")
                .field("job", j.name)
                .field("outcome", "aborted")
                .field(
                    "error",
                    format!("still running when the shutdown grace of {grace:?} ended"),
                ),
        );
    }
    if !left.is_empty() {
        tracing::warn!(
            "aborted {} at the end of the shutdown grace",
            left.join(", ")
        );
        // Let the aborted jobs' uploads clean up (abort multipart uploads) before the runtime
        // goes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::parse;

    /// A run that panics is reported failed in backup.log, and the job runs again next time
    /// (before, its "running" flag stayed set and every later run was skipped).
    #[tokio::test]
    async fn a_panicking_run_is_reported_and_the_next_one_happens() {
        let dir = std::env::temp_dir().join(format!("ba-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(LogFile::open(dir.join("backup.log")).expect("log"));
        let panics = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = panics.clone();
        let (job, count) = counting(|n| {
            if n == 0 {
                panic!("out of cheese");
            }
            Ok(())
        });
        let job = job.on_panic(Arc::new(move || {
            p.fetch_add(1, Ordering::SeqCst);
        }));
        let job = Arc::new(job);
        for run in 1..=2 {
            assert!(job.fire(&log), "run {run} was skipped");
            for _ in 0..200 {
                if count.load(Ordering::SeqCst) >= run && !job.running.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                !job.running.load(Ordering::SeqCst),
                "run {run} still marked running"
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(panics.load(Ordering::SeqCst), 1);
        let text = std::fs::read_to_string(dir.join("backup.log")).expect("log");
        assert!(
            text.contains("event=job_end job=postgres-full outcome=failed")
                && text.contains("out of cheese"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A `postgres-full` job whose run `n` (from 0) does `run(n)`, and its run count.
    fn counting(
        run: impl Fn(usize) -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> (Job, Arc<std::sync::atomic::AtomicUsize>) {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, run) = (count.clone(), Arc::new(run));
        let job = Job::new(
            "postgres-full",
            parse("0 2 * * *", "UTC").expect("cron"),
            Arc::new(move || {
                let (c, run) = (c.clone(), run.clone());
                Box::pin(async move { run(c.fetch_add(1, Ordering::SeqCst)) })
            }),
        );
        (job, count)
    }

    /// A job that fails its first `fails` runs, retried after `retry`.
    fn flaky(
        fails: usize,
        retry: Vec<Duration>,
    ) -> (Arc<Job>, Arc<std::sync::atomic::AtomicUsize>) {
        let (job, count) = counting(move |n| {
            if n < fails {
                anyhow::bail!("the server closed the connection");
            }
            Ok(())
        });
        (Arc::new(job.retry(retry)), count)
    }

    async fn settle(job: &Job, count: &std::sync::atomic::AtomicUsize, runs: usize) {
        for _ in 0..300 {
            if count.load(Ordering::SeqCst) >= runs && !job.running.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Long enough for one more retry to show if one were (wrongly) due.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    #[tokio::test]
    async fn a_failed_run_is_retried_until_it_succeeds_or_the_retries_run_out() {
        let dir = std::env::temp_dir().join(format!("ba-retry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(LogFile::open(dir.join("backup.log")).expect("log"));
        let ms = Duration::from_millis;

        // Fails once (PostgreSQL restarted under it), then the first retry succeeds.
        let (job, count) = flaky(1, vec![ms(50), ms(50)]);
        assert!(job.fire(&log));
        settle(&job, &count, 2).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(
            !job.last_failed.load(Ordering::SeqCst),
            "the retry succeeded"
        );
        let text = std::fs::read_to_string(dir.join("backup.log")).expect("log");
        assert!(
            text.contains("event=job_retry job=postgres-full attempt=2 of=3 in_s=0"),
            "{text}"
        );

        // Fails every time: 1 + 2 retries, then it says so and stops.
        let (job, count) = flaky(usize::MAX, vec![ms(50), ms(50)]);
        assert!(job.fire(&log));
        settle(&job, &count, 3).await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert!(job.last_failed.load(Ordering::SeqCst));
        let text = std::fs::read_to_string(dir.join("backup.log")).expect("log");
        assert!(
            text.contains("event=job_retries_exhausted job=postgres-full attempts=3"),
            "{text}"
        );

        // No retries configured: one run.
        let (job, count) = flaky(usize::MAX, vec![]);
        assert!(job.fire(&log));
        settle(&job, &count, 1).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // The scheduler stopping ends a pending retry.
        let (job, count) = flaky(usize::MAX, vec![Duration::from_secs(3600)]);
        assert!(job.fire(&log));
        settle(&job, &count, 1).await;
        job.cancel.cancel();
        tokio::time::sleep(ms(50)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn overlapping_runs_never_start() {
        let dir = std::env::temp_dir().join(format!("ba-sched-{}", std::process::id()));
        let log = Arc::new(LogFile::open(dir.join("backup.log")).expect("log"));
        let gate = Arc::new(tokio::sync::Notify::new());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (g, c) = (gate.clone(), count.clone());
        let job = Job::new(
            "slow",
            parse("0 2 * * *", "UTC").expect("cron"),
            Arc::new(move || {
                let (g, c) = (g.clone(), c.clone());
                Box::pin(async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    g.notified().await;
                    Ok(())
                })
            }),
        );
        let job = Arc::new(job);
        assert!(job.fire(&log));
        tokio::task::yield_now().await;
        assert!(
            !job.fire(&log),
            "a second run started while the first was going"
        );
        gate.notify_waiters();
        for _ in 0..100 {
            if !job.running.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            job.fire(&log),
            "the job could not run again after finishing"
        );
        gate.notify_waiters();
        let text = std::fs::read_to_string(dir.join("backup.log")).expect("log");
        assert!(text.contains("event=job_skipped job=slow"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
