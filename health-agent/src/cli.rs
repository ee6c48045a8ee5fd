//! `health-agent check [--only NAME]`: every check once, now, as a table; the exit code is the
//! worst state (0 OK, 1 WARN, 2 CRIT or UNKNOWN) for `docker-manage.sh health` and HEALTHCHECK.

use std::sync::Arc;

use crate::checks::State;
use crate::config::Config;
use crate::runner::run_all;

/// Runs the checks, prints the table, returns the worst state.
pub async fn check(cfg: &Config, only: Option<&str>) -> anyhow::Result<State> {
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
    Ok(results
        .iter()
        .map(|(_, r)| r.outcome.state)
        .max()
        .unwrap_or(State::Ok))
}
