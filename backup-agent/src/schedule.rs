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
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

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
        }
    }
}

/// A parsed schedule: when, and in which time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// The first time after `t` the schedule fires. In a zone with daylight saving time, a time
    /// the clocks skip fires right after the jump and a time they repeat fires once (the first).
    pub fn next_after(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    }
}

/// A time zone by its IANA name (`UTC`, `Europe/Berlin`).
pub fn zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        format!("time zone {name:?} is not an IANA zone name (e.g. UTC, Europe/Berlin, America/New_York)")
    })
}

/// Parses a standard 5-field cron expression (minute hour day month weekday) or a nickname
/// (`@daily`), in time zone `tz` unless the expression starts with `CRON_TZ=<zone> `.
pub fn parse(expr: &str, tz: &str) -> Result<Schedule, String> {
    let mut t = expr.trim();
    let mut tz = tz;
    if let Some(rest) = t.strip_prefix("CRON_TZ=").or_else(|| t.strip_prefix("TZ=")) {
        let (z, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        tz = z;
        t = r.trim();
    }
    let tz = zone(tz).map_err(|e| format!("{expr:?}: {e}"))?;
    let fields = t.split_whitespace().count();
    if !(t.starts_with('@') && fields == 1) && fields != 5 {
        return Err(format!(
            "{expr:?}: a cron expression has 5 fields (minute hour day month weekday) or is @hourly/@daily/@weekly/@monthly/@yearly, not {fields} fields"
        ));
    }
    croner::Cron::new(t)
        .parse()
        .map(|cron| Schedule { cron, tz })
        .map_err(|e| format!("{expr:?}: {e}"))
}

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
        }
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
    pub fn fire(&self, log: &Arc<LogFile>) -> bool {
        if self.running.swap(true, Ordering::SeqCst) {
            log.emit(
                Line::new("job_skipped")
                    .field("job", self.name)
                    .field("why", "the previous run is still going"),
            );
            return false;
        }
        let (run, running, name) = (self.run.clone(), self.running.clone(), self.name);
        let (log, on_panic) = (log.clone(), self.on_panic.clone());
        let failed = self.last_failed.clone();
        let inner = tokio::spawn(run());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(inner.abort_handle());
        tokio::spawn(async move {
            // The job writes its own start and end lines (with the error) to backup.log. A panic
            // is caught here (the run is a task of its own): reported failed, and the job stays
            // schedulable instead of looking "still going" forever.
            let outcome = inner.await;
            failed.store(!matches!(outcome, Ok(Ok(()))), Ordering::SeqCst);
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
                    if let Some(f) = on_panic {
                        f();
                    }
                }
                // Aborted at the end of a shutdown's grace: `run` below says so.
                Err(_) => {}
            }
            running.store(false, Ordering::SeqCst);
        });
        true
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
    let jobs: Vec<Arc<Job>> = jobs.into_iter().map(Arc::new).collect();
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

    #[test]
    fn five_field_cron_and_clear_errors() {
        assert!(parse("0 */6 * * *", "UTC").is_ok());
        let e = parse("* * * * * *", "UTC").expect_err("6 fields");
        assert!(e.contains("5 fields"), "{e}");
        assert!(parse("61 * * * *", "UTC").is_err());
        assert!(parse("0 3 * * 8", "UTC").is_err());
        assert!(parse("@sometimes", "UTC").is_err());
    }

    /// Next fire times of what people write, from known instants (UTC). Standard cron: 0 and 7
    /// are Sunday, names work, DOM and DOW both restricted means either.
    #[test]
    fn next_fire_times_follow_standard_cron() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&chrono::Utc)
        };
        // 2026-12-02 is a Wednesday.
        let wed = "2026-12-02T10:00:00Z";
        let cases: &[(&str, &str, &str)] = &[
            ("0 3 * * 0", wed, "2026-12-06T03:00:00Z"), // Sunday, weekly full backup
            ("0 3 * * 7", wed, "2026-12-06T03:00:00Z"), // 7 is Sunday too
            ("0 3 * * SUN", wed, "2026-12-06T03:00:00Z"),
            ("0 3 * * 1-5", wed, "2026-12-03T03:00:00Z"), // Mon-Fri: Thursday next
            (
                "0 3 * * 1-5",
                "2026-12-04T10:00:00Z",
                "2026-12-07T03:00:00Z",
            ), // Fri -> Mon
            (
                "0 3 * * MON-FRI",
                "2026-12-05T10:00:00Z",
                "2026-12-07T03:00:00Z",
            ), // Sat -> Mon
            ("0 3 * * 6", wed, "2026-12-05T03:00:00Z"),   // Saturday
            ("0 2 * * *", wed, "2026-12-03T02:00:00Z"),
            ("0 */6 * * *", wed, "2026-12-02T12:00:00Z"),
            (
                "0 */4 * * *",
                "2026-12-02T23:59:00Z",
                "2026-12-03T00:00:00Z",
            ),
            ("@daily", wed, "2026-12-03T00:00:00Z"),
            ("@hourly", wed, "2026-12-02T11:00:00Z"),
            ("@weekly", wed, "2026-12-06T00:00:00Z"),
            ("@monthly", wed, "2027-01-01T00:00:00Z"),
            // Both restricted: the 1st OR a Monday, whichever comes first.
            ("0 3 1 * MON", wed, "2026-12-07T03:00:00Z"),
            (
                "0 3 1 * MON",
                "2026-12-28T10:00:00Z",
                "2027-01-01T03:00:00Z",
            ),
            ("30 1 29 2 *", wed, "2028-02-29T01:30:00Z"), // leap day
        ];
        for (expr, from, want) in cases {
            let s = parse(expr, "UTC").unwrap_or_else(|e| panic!("{e}"));
            let next = s.next_after(at(from)).expect("a next time");
            assert_eq!(next, at(want), "{expr} after {from}");
        }
    }

    /// In a zone with daylight saving time (Europe/Berlin: +01:00 in winter, +02:00 in summer;
    /// 2027-03-28 02:00 -> 03:00, 2027-10-31 03:00 -> 02:00), from `schedule.timezone` or
    /// `CRON_TZ=`.
    #[test]
    fn next_fire_times_in_a_zone_with_dst() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&chrono::Utc)
        };
        let cases: &[(&str, &str, &str, &str)] = &[
            // 03:00 local every day: 02:00Z in winter, 01:00Z in summer.
            (
                "0 3 * * *",
                "Europe/Berlin",
                "2027-03-26T12:00:00Z",
                "2027-03-27T02:00:00Z",
            ),
            (
                "0 3 * * *",
                "Europe/Berlin",
                "2027-03-27T12:00:00Z",
                "2027-03-28T01:00:00Z",
            ),
            // 02:30 does not exist on 2027-03-28: it fires right after the jump (03:00 local).
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2027-03-27T12:00:00Z",
                "2027-03-28T01:00:00Z",
            ),
            // 02:30 happens twice on 2027-10-31: it fires once, at the first (+02:00).
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2027-10-30T12:00:00Z",
                "2027-10-31T00:30:00Z",
            ),
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z",
            ),
            // A Sunday weekly full backup, New York time.
            (
                "0 3 * * 0",
                "America/New_York",
                "2026-12-02T10:00:00Z",
                "2026-12-06T08:00:00Z",
            ),
            // CRON_TZ= in the expression wins over the setting.
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                "UTC",
                "2026-12-02T10:00:00Z",
                "2026-12-03T00:00:00Z",
            ),
        ];
        for (expr, tz, from, want) in cases {
            let s = parse(expr, tz).unwrap_or_else(|e| panic!("{e}"));
            let next = s.next_after(at(from)).expect("a next time");
            assert_eq!(next, at(want), "{expr} in {tz} after {from}");
        }
        let e = parse("0 3 * * *", "Mars/Olympus").expect_err("no such zone");
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
    }

    /// A run that panics is reported failed in backup.log, and the job runs again next time
    /// (before, its "running" flag stayed set and every later run was skipped).
    #[tokio::test]
    async fn a_panicking_run_is_reported_and_the_next_one_happens() {
        let dir = std::env::temp_dir().join(format!("ba-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(LogFile::open(dir.join("backup.log")).expect("log"));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let panics = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        let p = panics.clone();
        let job = Job::new(
            "postgres-full",
            parse("0 2 * * *", "UTC").expect("cron"),
            Arc::new(move || {
                let c = c.clone();
                Box::pin(async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("out of cheese");
                    }
                    Ok(())
                })
            }),
        )
        .on_panic(Arc::new(move || {
            p.fetch_add(1, Ordering::SeqCst);
        }));
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
