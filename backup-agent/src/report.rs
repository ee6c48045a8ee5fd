//! What `backup-agent list` and `verify` print: a table for people, or with `--output json` one
//! JSON document for scripts (field names documented in docs/backup-agent.md).

use std::process::ExitCode;
use std::time::SystemTime;

use common::output::{OutputArg, print_json};
use serde::Serialize;

use crate::context::Ctx;
use crate::verify::Verdict;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Serialize)]
struct ListedBackup {
    id: String,
    kind: &'static str,
    finished: String,
    bytes: u64,
    start_lsn: Option<String>,
    end_lsn: Option<String>,
}

#[derive(Serialize)]
struct ListedCluster {
    system_id: String,
    pg_version: Option<u32>,
    first_seen: String,
}

#[derive(Serialize)]
struct Recoverable {
    from: String,
    to: String,
    wal_flushed_lsn: Option<String>,
    timeline: Option<u32>,
}

#[derive(Serialize)]
struct Listing {
    backups: Vec<ListedBackup>,
    cluster: Option<ListedCluster>,
    recoverable: Option<Recoverable>,
    unreadable: Vec<String>,
}

/// `backup-agent list`: the complete backups, oldest first, the cluster and the recovery window.
pub async fn list(ctx: &Ctx, out: OutputArg) -> anyhow::Result<ExitCode> {
    let storage = &ctx.storage;
    let mut cat = storage.catalog().await?;
    cat.manifests.sort_by_key(|m| m.finished_at);
    let listing = Listing {
        backups: cat
            .manifests
            .iter()
            .map(|m| ListedBackup {
                id: m.id.clone(),
                kind: m.kind.as_str(),
                finished: rfc3339(m.finished_at),
                bytes: m.size(),
                start_lsn: m.start_lsn.clone(),
                end_lsn: m.end_lsn.clone(),
            })
            .collect(),
        cluster: cat.cluster.as_ref().map(|c| ListedCluster {
            system_id: c.system_id.clone(),
            pg_version: c.pg_version,
            first_seen: rfc3339(c.first_seen),
        }),
        recoverable: cat.recovery_window().map(|(from, to)| Recoverable {
            from: rfc3339(from),
            to: rfc3339(to),
            wal_flushed_lsn: cat.wal.as_ref().map(|w| w.flushed_lsn.clone()),
            timeline: cat.wal.as_ref().map(|w| w.timeline),
        }),
        unreadable: cat.unreadable.clone(),
    };
    for u in &listing.unreadable {
        tracing::warn!("unreadable catalog file {u}");
    }
    if out.is_json() {
        print_json(&listing)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = listing
        .backups
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.kind.to_string(),
                b.finished.clone(),
                b.bytes.to_string(),
                format!(
                    "{}..{}",
                    b.start_lsn.as_deref().unwrap_or("-"),
                    b.end_lsn.as_deref().unwrap_or("-")
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        common::table::render(&["ID", "KIND", "FINISHED", "BYTES", "LSN"], &rows)
    );
    match &listing.cluster {
        Some(c) => println!(
            "cluster {} (PostgreSQL {}), first seen {}",
            c.system_id,
            c.pg_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            c.first_seen
        ),
        None => println!("cluster: none recorded yet"),
    }
    match &listing.recoverable {
        Some(r) => println!(
            "recoverable from {} to {}{}",
            r.from,
            r.to,
            match (&r.wal_flushed_lsn, r.timeline) {
                (Some(l), Some(t)) => format!(" (archived WAL to {l}, timeline {t})"),
                _ => " (no WAL archived: backup consistency points only)".into(),
            }
        ),
        None => println!("recoverable: nothing (no full backup)"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct VerifyReport<'a> {
    ok: bool,
    backups: &'a [Verdict],
}

/// `backup-agent verify [ID]`: exit 0 when every backup checked is good, 1 otherwise.
pub async fn verify(ctx: &Ctx, id: Option<&str>, out: OutputArg) -> anyhow::Result<ExitCode> {
    let verdicts = crate::verify::verify(&ctx.storage, &ctx.reader()?, id).await?;
    let ok = verdicts.iter().all(|v| v.problem.is_none());
    if out.is_json() {
        print_json(&VerifyReport {
            ok,
            backups: &verdicts,
        })?;
    } else {
        let rows: Vec<Vec<String>> = verdicts
            .iter()
            .map(|v| {
                vec![
                    v.id.clone(),
                    v.kind.clone(),
                    if v.problem.is_none() { "ok" } else { "DAMAGED" }.to_string(),
                    v.problem.clone().unwrap_or_else(|| v.checked.clone()),
                ]
            })
            .collect();
        print!(
            "{}",
            common::table::render(&["ID", "KIND", "RESULT", "DETAIL"], &rows)
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
