//! `pool-exporter show pools|stats|...`: the admin console as aligned tables, for people (what
//! `docker-manage.sh pgbouncer pools|stats` prints).

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
pub async fn show(cfg: &Config, what: &str, only: Option<&str>) -> anyhow::Result<bool> {
    let command = SHOWABLE
        .iter()
        .find(|(w, _)| *w == what)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = SHOWABLE.iter().map(|(w, _)| *w).collect();
            anyhow::anyhow!("cannot show {what:?}; one of: {}", names.join(", "))
        })?;
    let targets: Vec<_> = cfg
        .targets
        .iter()
        .filter(|t| only.is_none_or(|n| n == t.name))
        .collect();
    if targets.is_empty() {
        let names: Vec<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "no target named {:?}; configured: {}",
            only.unwrap_or(""),
            names.join(", ")
        );
    }
    let mut ok = true;
    for t in targets {
        if cfg.targets.len() > 1 {
            println!("== {} ({}:{})", t.name, t.admin.host, t.admin.port);
        }
        let rows = match Admin::connect(&t.admin).await {
            Ok(a) => a.show(command).await,
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => {
                let cells = rows.text_rows();
                let header: Vec<&str> = rows.columns.iter().map(String::as_str).collect();
                print!("{}", common::table::render(&header, &cells));
            }
            Err(e) => {
                eprintln!("target {} ({}:{}): {e}", t.name, t.admin.host, t.admin.port);
                ok = false;
            }
        }
    }
    Ok(ok)
}
