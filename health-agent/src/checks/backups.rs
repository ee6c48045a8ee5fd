//! backup-agent's catalog: the age of the newest complete backup of each kind and of the WAL.

use std::time::{Duration, SystemTime};

use common::catalog::{BackupKind, Catalog};
use common::s3read::S3Reader;

use super::{Findings, Outcome, State};
use crate::config::BackupsCheck;

pub async fn check(c: &BackupsCheck) -> Outcome {
    let catalog = match &c.s3 {
        Some(loc) => {
            let reader = match S3Reader::new(loc) {
                Ok(r) => r,
                Err(e) => return Outcome::unknown(format!("S3 settings: {e:#}")),
            };
            match reader.read_newest().await {
                Ok(cat) => cat,
                Err(e) => return Outcome::crit(format!("catalog in s3://{}: {e:#}", loc.bucket)),
            }
        }
        None => {
            let path = c.path.clone();
            match tokio::task::spawn_blocking(move || Catalog::read_local(&path)).await {
                Ok(Ok(cat)) => cat,
                Ok(Err(e)) => {
                    return Outcome::crit(format!("catalog at {}: {e}", c.path.display()));
                }
                Err(e) => return Outcome::unknown(format!("catalog read failed: {e}")),
            }
        }
    };
    grade(c, &catalog, SystemTime::now())
}

/// Grades a catalog as of `now` (pure, for tests).
pub fn grade(c: &BackupsCheck, catalog: &Catalog, now: SystemTime) -> Outcome {
    let mut f = Findings::default();
    let age_of = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
    let kinds = [
        (BackupKind::PostgresFull, c.full_max_age, "full backup"),
        (
            BackupKind::PostgresIncr,
            c.incremental_max_age,
            "incremental",
        ),
        (BackupKind::Redis, c.redis_max_age, "Redis snapshot"),
    ];
    for (kind, max, what) in kinds {
        if max.is_zero() {
            continue;
        }
        match catalog.newest(kind) {
            None => f.add(State::Crit, format!("no complete {what} in the catalog")),
            Some(m) => {
                let age = age_of(m.finished_at);
                f.add(
                    grade_age(age, max),
                    format!(
                        "newest {what} {} is {} old (max {})",
                        m.id,
                        fmt_age(age),
                        humantime::format_duration(max)
                    ),
                );
            }
        }
    }
    if !c.wal_max_age.is_zero() {
        match &catalog.wal {
            None => f.add(
                State::Crit,
                "no WAL archived (catalog/wal-status.json missing)",
            ),
            Some(w) => {
                let age = age_of(w.updated_at);
                f.add(
                    grade_age(age, c.wal_max_age),
                    format!(
                        "WAL flushed to {} {} ago (max {})",
                        w.flushed_lsn,
                        fmt_age(age),
                        humantime::format_duration(c.wal_max_age)
                    ),
                );
            }
        }
    }
    for u in &catalog.unreadable {
        f.add(State::Warn, format!("unreadable catalog entry {u}"));
    }
    f.finish()
}

/// CRIT past the maximum, WARN past 80% of it.
fn grade_age(age: Duration, max: Duration) -> State {
    if age > max {
        State::Crit
    } else if age.as_secs_f64() > max.as_secs_f64() * 0.8 {
        State::Warn
    } else {
        State::Ok
    }
}

fn fmt_age(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
