//! `pool-exporter show pools|stats|...`: the admin console as aligned tables, for people (what
//! `docker-manage.sh pgbouncer pools|stats` prints), or with `--output json` one document for scripts.

use crate::admin::Admin;
use crate::config::Config;

/// What `show` can print, and the admin command behind each.
pub const SHOWABLE: &[(&str, &str)] = &[
    ("pools", "POOLS"),
    ("stats", "STATS"),
    ("databases", "DATABASES"),
    ("clients", "CLIENTS"),
    ("servers", "SERVERS"),
    ("lists", "LISTS"),
    ("config", "CONFIG"),
    ("mem", "MEM"),
    ("users", "USERS"),
    ("version", "VERSION"),
];

/// Prints `SHOW <what>` of every target (or the one named) and returns false when one failed.
pub async fn show(
    cfg: &Config,
    what: &str,
    only: Option<&str>,
    out: common::output::OutputArg,
) -> anyhow::Result<bool> {
    let command = SHOWABLE
        .iter()
        .find(|(w, _)| *w == what)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = SHOWABLE.iter().map(|(w, _)| *w).collect();
            anyhow::anyhow!("cannot show {what:?}; one of: {}", names.join(", "))
        })?;
    let all = cfg.effective_targets()?;
    let targets: Vec<_> = all
        .iter()
        .filter(|t| only.is_none_or(|n| n == t.name))
        .collect();
    if targets.is_empty() {
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "no target named {:?}; configured: {}",
            only.unwrap_or(""),
            names.join(", ")
        );
    }
    let mut ok = true;
    let mut json = vec![];
    for t in targets {
        let address = format!("{}:{}", t.admin.host, t.admin.port);
        if all.len() > 1 && !out.is_json() {
            println!("== {} ({address})", t.name);
        }
        let rows = match Admin::connect(&t.admin).await {
            Ok(a) => a.show(command).await,
            Err(e) => Err(e),
        };
        let (cells, header, error) = match rows {
            Ok(rows) => (rows.text_rows(), rows.columns.clone(), None),
            Err(e) => {
                ok = false;
                tracing::error!("target {} ({address}): {e}", t.name);
                (vec![], vec![], Some(e.to_string()))
            }
        };
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        if out.is_json() {
            json.push(serde_json::json!({
                "name": t.name,
                "address": address,
                "ok": error.is_none(),
                "error": error,
                "rows": common::output::rows_as_objects(&header, &cells),
            }));
        } else if error.is_none() {
            print!("{}", common::table::render(&header, &cells));
        }
    }
    if out.is_json() {
        common::output::print_json(&serde_json::json!({ "show": what, "targets": json }))?;
    }
    Ok(ok)
}
