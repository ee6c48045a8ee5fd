//! `sentinel-watch status`: aligned tables of masters, replicas (link, lag) and Sentinels — what
//! `docker-manage.sh redis sentinel|replicas` prints; `--output json` for scripts.

use crate::config::Config;
use crate::view::master_view;

/// Prints the status (a table, or JSON with `--output json`: `{"healthy", "masters": [...]}`) and
/// returns whether all is well.
pub async fn status(cfg: &Config, out: common::output::OutputArg) -> anyhow::Result<bool> {
    let mut healthy = true;
    let mut views = vec![];
    let mut masters = vec![];
    let mut replicas = vec![];
    let mut sentinels = vec![];
    for name in &cfg.masters {
        let v = master_view(cfg, name).await;
        healthy &= v.master.is_some() && v.quorum_ok && v.agreeing == cfg.sentinels.len();
        healthy &= v.replicas.iter().all(|r| r.link_up);
        views.push(v.clone());
        masters.push(vec![
            v.name.clone(),
            v.master.clone().unwrap_or_else(|| "?".into()),
            v.config_epoch.map(|e| e.to_string()).unwrap_or_default(),
            format!("{}/{}", v.agreeing, cfg.sentinels.len()),
            if v.quorum_ok {
                "ok".into()
            } else {
                "NO".into()
            },
            v.replicas.len().to_string(),
        ]);
        for r in &v.replicas {
            replicas.push(vec![
                v.name.clone(),
                r.addr.clone(),
                if r.link_up {
                    "up".into()
                } else {
                    "DOWN".into()
                },
                r.lag_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.lag_seconds
                    .map(|s| format!("{s:.0}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        for s in &v.sentinels {
            sentinels.push(vec![
                s.addr.clone(),
                v.name.clone(),
                if s.reachable {
                    "yes".into()
                } else {
                    "NO".into()
                },
                s.master.clone().unwrap_or_else(|| "-".into()),
                s.config_epoch
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
                match s.quorum_ok {
                    Some(true) => "ok".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
                s.error.clone().unwrap_or_default(),
            ]);
        }
    }
    if out.is_json() {
        common::output::print_json(&serde_json::json!({
            "healthy": healthy,
            "masters": views,
        }))?;
        return Ok(healthy);
    }
    use common::table::render;
    println!("MASTERS");
    print!(
        "{}",
        render(
            &["NAME", "MASTER", "EPOCH", "AGREE", "QUORUM", "REPLICAS"],
            &masters
        )
    );
    println!("\nREPLICAS");
    print!(
        "{}",
        render(
            &["MASTER", "REPLICA", "LINK", "LAG_BYTES", "LAG_S"],
            &replicas
        )
    );
    println!("\nSENTINELS");
    print!(
        "{}",
        render(
            &[
                "SENTINEL",
                "MASTER",
                "REACHABLE",
                "NAMES",
                "EPOCH",
                "CKQUORUM",
                "ERROR"
            ],
            &sentinels
        )
    );
    Ok(healthy)
}
