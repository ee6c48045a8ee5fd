//! The check cycle: every check concurrently, each bounded by its timeout; results go through the
//! debouncer to health.log, the webhook, metrics and `/status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alerting::Alerting;
use crate::checks::{self, Outcome, Run, State};
use crate::config::{CheckConfig, Config};
use crate::metrics::{Metrics, labels};
use crate::state::{Policy, Tracker};

/// One check's view for `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckStatus {
    pub name: String,
    pub kind: &'static str,
    pub state: State,
    #[serde(with = "common::catalog::rfc3339")]
    pub since: SystemTime,
    pub last: Option<LastResult>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastResult {
    pub state: State,
    pub reason: String,
    pub duration_ms: u64,
    #[serde(with = "common::catalog::rfc3339")]
    pub at: SystemTime,
}

struct Entry {
    check: Arc<CheckConfig>,
    tracker: Tracker,
    last: Option<LastResult>,
}

pub struct Runner {
    cfg: Config,
    policy: Policy,
    entries: Mutex<Vec<Entry>>,
    pub alerting: Arc<Alerting>,
    metrics: Metrics,
}

/// What a cycle did.
#[derive(Debug)]
pub struct Cycle {
    pub duration: Duration,
    pub results: Vec<(String, Run)>,
    /// Some check is bad or about to change: recheck soon.
    pub unsettled: bool,
}

impl Runner {
    pub fn new(cfg: Config, alerting: Arc<Alerting>, metrics: Metrics) -> Self {
        let now = SystemTime::now();
        let entries = cfg
            .checks
            .iter()
            .filter(|c| c.enabled)
            .map(|c| Entry {
                check: Arc::new(c.clone()),
                tracker: Tracker::new(now),
                last: None,
            })
            .collect();
        Self {
            policy: Policy {
                failure_threshold: cfg.failure_threshold,
                success_threshold: cfg.success_threshold,
                remind_every: cfg.remind_every,
            },
            cfg,
            entries: Mutex::new(entries),
            alerting,
            metrics,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs every enabled check once, concurrently, and processes the results.
    pub async fn cycle(&self) -> Cycle {
        let started = Instant::now();
        let checks: Vec<Arc<CheckConfig>> =
            self.entries().iter().map(|e| e.check.clone()).collect();
        let results = run_all(&checks, self.cfg.default_timeout).await;
        let now = SystemTime::now();
        let mut unsettled = false;
        {
            let mut entries = self.entries();
            for (entry, (_, run)) in entries.iter_mut().zip(&results) {
                let name = entry.check.name.as_str();
                let kind = entry.check.spec.kind();
                let l = labels(name, kind);
                self.metrics
                    .result
                    .get_or_create(&l)
                    .set(run.outcome.state.code());
                self.metrics
                    .duration
                    .get_or_create(&l)
                    .set(run.duration.as_secs_f64());
                if run.outcome.state.is_ok() {
                    let ts = now
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64();
                    self.metrics.last_success.get_or_create(&l).set(ts);
                } else {
                    self.metrics.failures.get_or_create(&l).inc();
                }
                if let Some(event) = entry.tracker.observe(&run.outcome, now, &self.policy) {
                    self.alerting.event(name, kind, &event, now);
                }
                if let Some(event) = entry.tracker.flap(&run.outcome) {
                    self.alerting.event(name, kind, &event, now);
                }
                self.metrics
                    .flapping
                    .get_or_create(&l)
                    .set(i64::from(entry.tracker.flapping));
                self.metrics
                    .state
                    .get_or_create(&l)
                    .set(entry.tracker.reported.code());
                unsettled |= entry.tracker.is_pending() || !entry.tracker.reported.is_ok();
                entry.last = Some(LastResult {
                    state: run.outcome.state,
                    reason: run.outcome.reason.clone(),
                    duration_ms: run.duration.as_millis() as u64,
                    at: now,
                });
            }
        }
        let duration = started.elapsed();
        self.metrics.cycle_duration.set(duration.as_secs_f64());
        self.metrics.cycles.inc();
        Cycle {
            duration,
            results,
            unsettled,
        }
    }

    /// Cycles until cancelled: every `interval`, or `recheck_interval` while unsettled.
    pub async fn run(&self, cancel: CancellationToken) {
        let n = self.entries().len();
        self.alerting.log.emit(
            common::logfmt::Line::new("start")
                .field("checks", n)
                .field("interval", humantime::format_duration(self.cfg.interval))
                .field("version", env!("CARGO_PKG_VERSION")),
        );
        if n == 0 {
            tracing::warn!("no checks configured: add [[checks]] to the config");
        }
        loop {
            let c = tokio::select! {
                _ = cancel.cancelled() => break,
                c = self.cycle() => c,
            };
            let wait = if c.unsettled {
                self.cfg.recheck_interval.min(self.cfg.interval)
            } else {
                self.cfg.interval
            };
            tracing::debug!(took = ?c.duration, next_in = ?wait, "check cycle done");
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.alerting.log.emit(common::logfmt::Line::new("stop"));
    }

    /// Every check's current state, for `/status`.
    pub fn status(&self) -> Vec<CheckStatus> {
        self.entries()
            .iter()
            .map(|e| CheckStatus {
                name: e.check.name.clone(),
                kind: e.check.spec.kind(),
                state: e.tracker.reported,
                since: e.tracker.since,
                last: e.last.clone(),
            })
            .collect()
    }
}

/// Runs checks concurrently, each bounded by its own timeout; results in the order given.
pub async fn run_all(checks: &[Arc<CheckConfig>], default_timeout: Duration) -> Vec<(String, Run)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in checks.iter().enumerate() {
        let c = c.clone();
        let timeout = c.timeout.unwrap_or(default_timeout);
        set.spawn(async move { (i, checks::run(&c, timeout).await) });
    }
    let mut out: HashMap<usize, Run> = HashMap::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, run)) => {
                out.insert(i, run);
            }
            Err(e) => tracing::error!("a check task failed: {e}"),
        }
    }
    checks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let run = out.remove(&i).unwrap_or(Run {
                outcome: Outcome::unknown("the check task failed"),
                duration: Duration::ZERO,
            });
            (c.name.clone(), run)
        })
        .collect()
}
