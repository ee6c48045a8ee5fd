//! `health-agent check [--only NAME] [--output json]`: every check once, now, as a table (or one
//! JSON document); the exit code follows the monitoring-plugin convention (0 OK, 1 WARN, 2 CRIT,
//! 3 UNKNOWN) for Nagios/Icinga, `docker-manage.sh health` and HEALTHCHECK.

use std::sync::Arc;

use crate::checks::State;
use crate::config::Config;
use crate::runner::run_all;

#[derive(serde::Serialize)]
struct CheckRow<'a> {
    name: &'a str,
    kind: &'a str,
    state: State,
    duration_ms: u128,
    reason: &'a str,
}

/// Runs the checks, prints them, returns the overall state ([`State::overall`]).
pub async fn check(
    cfg: &Config,
    only: Option<&str>,
    out: common::output::OutputArg,
) -> anyhow::Result<State> {
    let checks: Vec<_> = cfg
        .checks
        .iter()
        .filter(|c| c.enabled && only.is_none_or(|n| n == c.name))
        .cloned()
        .map(Arc::new)
        .collect();
    if checks.is_empty() {
        let names: Vec<&str> = cfg.checks.iter().map(|c| c.name.as_str()).collect();
        match only {
            Some(n) => anyhow::bail!(
                "no enabled check named {n:?}; configured: {}",
                names.join(", ")
            ),
            None => anyhow::bail!("no checks configured: add [[checks]] to the config"),
        }
    }
    let results = run_all(&checks, cfg.default_timeout).await;
    let overall = State::overall(results.iter().map(|(_, r)| r.outcome.state));
    if out.is_json() {
        let rows: Vec<CheckRow> = checks
            .iter()
            .zip(&results)
            .map(|(c, (_, run))| CheckRow {
                name: &c.name,
                kind: c.spec.kind(),
                state: run.outcome.state,
                duration_ms: run.duration.as_millis(),
                reason: &run.outcome.reason,
            })
            .collect();
        common::output::print_json(&serde_json::json!({ "state": overall, "checks": rows }))?;
        return Ok(overall);
    }
    let rows: Vec<Vec<String>> = checks
        .iter()
        .zip(&results)
        .map(|(c, (_, run))| {
            vec![
                c.name.clone(),
                c.spec.kind().to_string(),
                run.outcome.state.to_string(),
                format!("{}ms", run.duration.as_millis()),
                run.outcome.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        common::table::render(&["CHECK", "KIND", "STATE", "TIME", "REASON"], &rows)
    );
    Ok(overall)
}
