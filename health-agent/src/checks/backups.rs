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
    // When the stack's backups began: a kind that has not run yet is only late once this is older
    // than the kind's maximum age (a new stack has its first full backup, and its first
    // incremental comes on schedule, hours later).
    let began = catalog
        .manifests
        .iter()
        .map(|m| m.finished_at)
        .chain(catalog.cluster.as_ref().map(|c| c.first_seen))
        .min();
    for (kind, max, what) in kinds {
        if max.is_zero() {
            continue;
        }
        match catalog.newest(kind) {
            None => match began.map(age_of) {
                Some(since) if since <= max => f.add(
                    grade_age(since, max),
                    format!(
                        "no {what} yet: backups began {} ago (max {})",
                        fmt_age(since),
                        humantime::format_duration(max)
                    ),
                ),
                _ => f.add(State::Crit, format!("no complete {what} in the catalog")),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::catalog::Manifest;

    fn manifest(kind: BackupKind, finished_at: SystemTime) -> Manifest {
        Manifest::new(
            &format!("{}-x", kind.as_str()),
            kind,
            finished_at,
            finished_at,
        )
    }

    fn check() -> BackupsCheck {
        BackupsCheck {
            wal_max_age: Duration::ZERO,
            ..BackupsCheck::default()
        }
    }

    /// A new stack: its first full backup an hour old, no incremental nor Redis snapshot yet —
    /// OK (they come on schedule); the same catalog 8 hours later is CRIT for the incremental
    /// (max 7 h) and the Redis snapshot (max 5 h). An empty catalog is CRIT at once.
    #[test]
    fn a_kind_not_run_yet_is_late_only_once_backups_began_longer_ago_than_its_max_age() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cat = Catalog {
            manifests: vec![manifest(BackupKind::PostgresFull, t0)],
            ..Catalog::default()
        };
        let hour = Duration::from_secs(3600);
        let o = grade(&check(), &cat, t0 + hour);
        assert_eq!(o.state, State::Ok, "{}", o.reason);
        assert!(o.reason.contains("no incremental yet"), "{}", o.reason);
        let o = grade(&check(), &cat, t0 + 8 * hour);
        assert_eq!(o.state, State::Crit, "{}", o.reason);
        assert!(
            o.reason.contains("no complete incremental")
                && o.reason.contains("no complete Redis snapshot"),
            "{}",
            o.reason
        );
        let o = grade(&check(), &Catalog::default(), t0);
        assert_eq!(o.state, State::Crit, "{}", o.reason);
        assert!(o.reason.contains("no complete full backup"), "{}", o.reason);
    }
}
