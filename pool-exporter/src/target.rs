//! One PgBouncer target: a persistent admin connection reused across scrapes and reopened after a
//! failure; concurrent scrapes wait for each other instead of opening more connections; every
//! scrape is bounded by the target's timeout, so a dead target never delays the others beyond it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::admin::{Admin, AdminError, Rows};
use crate::collect::{COMMANDS, Snapshot};
use crate::config::Target;
use crate::exposition::LabelSet;

/// The outcome of one scrape of one target.
#[derive(Debug)]
pub struct Scrape {
    pub snapshot: Snapshot,
    /// The first error, when any command (or the connection) failed.
    pub error: Option<AdminError>,
    pub duration: Duration,
}

impl Scrape {
    pub fn up(&self) -> bool {
        self.error.is_none()
    }
}

/// A target and its connection.
pub struct TargetState {
    pub config: Target,
    /// `pgbouncer="<name>"` then the configured extra labels.
    pub labels: LabelSet,
    conn: Mutex<Option<Admin>>,
    connects: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl TargetState {
    pub fn new(config: Target) -> Self {
        let labels = LabelSet::new(
            std::iter::once(("pgbouncer", config.name.as_str()))
                .chain(config.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        );
        Self {
            config,
            labels,
            conn: Mutex::new(None),
            connects: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// Admin connections opened so far (one per reconnect).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Runs every command of [`COMMANDS`] on the admin connection, within the scrape timeout.
    pub async fn scrape(&self) -> Scrape {
        let started = Instant::now();
        let timeout = self.config.scrape_timeout;
        let outcome = tokio::time::timeout(timeout, self.scrape_inner()).await;
        let (snapshot, error) = match outcome {
            Ok(r) => r,
            // The connection was taken out of its slot for the scrape and is dropped with the
            // future: the next scrape opens a fresh one.
            Err(_) => (
                Snapshot::default(),
                Some(AdminError::Timeout { after: timeout }),
            ),
        };
        self.log_transition(error.as_ref());
        Scrape {
            snapshot,
            error,
            duration: started.elapsed(),
        }
    }

    async fn scrape_inner(&self) -> (Snapshot, Option<AdminError>) {
        let mut slot = self.conn.lock().await;
        let admin = match slot.take() {
            Some(a) if !a.is_closed() => a,
            _ => {
                self.connects.fetch_add(1, Ordering::Relaxed);
                match Admin::connect(&self.config.admin).await {
                    Ok(a) => a,
                    Err(e) => return (Snapshot::default(), Some(e)),
                }
            }
        };
        // All commands are sent at once; tokio-postgres pipelines them on the one connection.
        let results = run_all(&admin).await;
        let mut snapshot = Snapshot::default();
        let mut error = None;
        let mut broken = false;
        for (cmd, r) in COMMANDS.iter().zip(results) {
            match r {
                Ok(rows) => {
                    if let Some(s) = snapshot.slot(cmd) {
                        *s = Some(rows);
                    }
                }
                // SERVERS, MEM and USERS are extras: a release without one is not an error.
                Err(AdminError::Server { message }) if OPTIONAL.contains(cmd) => {
                    tracing::debug!("SHOW {cmd} on {}: {message}", self.config.name);
                }
                Err(e) => {
                    broken |= e.breaks_connection();
                    if error.is_none() {
                        error = Some(match e {
                            AdminError::Server { message } => AdminError::Server {
                                message: format!("SHOW {cmd}: {message}"),
                            },
                            e => e,
                        });
                    }
                }
            }
        }
        if !broken {
            *slot = Some(admin);
        }
        (snapshot, error)
    }

    /// Logs a failure when it starts or changes, and the recovery — not every failed scrape.
    fn log_transition(&self, error: Option<&AdminError>) {
        let now = error.map(ToString::to_string);
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if *last != now {
            match &now {
                Some(e) => tracing::warn!(
                    target_name = %self.config.name,
                    admin = %self.config.admin,
                    "pgbouncer target {}: {e}",
                    self.config.name
                ),
                None => {
                    tracing::info!(target_name = %self.config.name, "pgbouncer target {} is reachable", self.config.name)
                }
            }
            *last = now;
        }
    }
}

/// Commands whose absence in a release is not a failed scrape.
const OPTIONAL: [&str; 3] = ["SERVERS", "MEM", "USERS"];

async fn run_all(admin: &Admin) -> [Result<Rows, AdminError>; 10] {
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9] = COMMANDS;
    let (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9) = tokio::join!(
        admin.show(c0),
        admin.show(c1),
        admin.show(c2),
        admin.show(c3),
        admin.show(c4),
        admin.show(c5),
        admin.show(c6),
        admin.show(c7),
        admin.show(c8),
        admin.show(c9),
    );
    [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9]
}
