//! What the Sentinels and the master say right now: the master each Sentinel names and its config
//! epoch, CKQUORUM, and per replica the link and the lag (from the master's INFO replication).
//! Used by the periodic poll (metrics), by `status`, and to confirm a +switch-master.

use std::collections::BTreeMap;

use common::RedisSettings;
use serde::Serialize;

use crate::config::{Config, split_addr};
use crate::events::Addr;

#[derive(Clone, Debug, Serialize)]
pub struct SentinelView {
    pub addr: String,
    pub reachable: bool,
    pub master: Option<String>,
    pub config_epoch: Option<u64>,
    pub quorum_ok: Option<bool>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplicaView {
    pub addr: String,
    pub link_up: bool,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MasterView {
    pub name: String,
    /// The address most Sentinels name.
    pub master: Option<String>,
    pub config_epoch: Option<u64>,
    pub agreeing: usize,
    pub sentinels: Vec<SentinelView>,
    pub replicas: Vec<ReplicaView>,
    pub quorum_ok: bool,
}

fn sentinel_settings(cfg: &Config, addr: &str) -> Option<RedisSettings> {
    let (h, p) = split_addr(addr)?;
    Some(cfg.sentinel_auth.at(h, p))
}

/// Flat `[k1, v1, k2, v2, ...]` replies as a map.
pub(crate) fn pairs(flat: Vec<String>) -> BTreeMap<String, String> {
    flat.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// Asks one Sentinel for a master's address and config epoch.
pub async fn ask(cfg: &Config, sentinel: &str, name: &str) -> anyhow::Result<(Addr, u64)> {
    let s = sentinel_settings(cfg, sentinel)
        .ok_or_else(|| anyhow::anyhow!("bad address {sentinel}"))?;
    let mut c = s.connect().await?;
    let addr: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query_async(&mut c)
        .await?;
    let (ip, port) = addr.ok_or_else(|| anyhow::anyhow!("{sentinel} does not monitor {name}"))?;
    let info: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(name)
        .query_async(&mut c)
        .await?;
    let epoch = pairs(info)
        .get("config-epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    Ok((
        Addr {
            ip,
            port: port.parse()?,
        },
        epoch,
    ))
}

/// The master as the freshest Sentinels see it: the address named at the highest config epoch
/// (ties: the most named), that epoch, and how many Sentinels name it. A Sentinel that rejoins with
/// an old view has an older epoch and is outvoted by epoch, not by head count.
pub async fn freshest(cfg: &Config, name: &str) -> Option<(Addr, u64, usize)> {
    let answers =
        futures_util::future::join_all(cfg.sentinels.iter().map(|s| ask(cfg, s, name))).await;
    pick_freshest(answers.into_iter().flatten().collect())
}

/// See [`freshest`].
pub fn pick_freshest(answers: Vec<(Addr, u64)>) -> Option<(Addr, u64, usize)> {
    let top = answers.iter().map(|(_, e)| *e).max()?;
    let mut at_top: BTreeMap<Addr, usize> = BTreeMap::new();
    for (a, e) in &answers {
        if *e == top {
            *at_top.entry(a.clone()).or_default() += 1;
        }
    }
    let (addr, _) = at_top.into_iter().max_by_key(|(_, n)| *n)?;
    let agreeing = answers.iter().filter(|(a, _)| *a == addr).count();
    Some((addr, top, agreeing))
}

async fn sentinel_view(cfg: &Config, sentinel: &str, name: &str) -> SentinelView {
    let mut v = SentinelView {
        addr: sentinel.to_string(),
        reachable: false,
        master: None,
        config_epoch: None,
        quorum_ok: None,
        error: None,
    };
    match ask(cfg, sentinel, name).await {
        Ok((addr, epoch)) => {
            v.reachable = true;
            v.master = Some(addr.to_string());
            v.config_epoch = Some(epoch);
        }
        Err(e) => {
            v.error = Some(format!("{e:#}"));
            return v;
        }
    }
    if let Some(s) = sentinel_settings(cfg, sentinel)
        && let Ok(mut c) = s.connect().await
    {
        let r: redis::RedisResult<String> = redis::cmd("SENTINEL")
            .arg("CKQUORUM")
            .arg(name)
            .query_async(&mut c)
            .await;
        v.quorum_ok = Some(r.is_ok());
        if let Err(e) = r {
            v.error = Some(e.to_string());
        }
    }
    v
}

/// The value of `key:` in INFO text.
pub(crate) fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(key)?.strip_prefix(':'))
}

/// The `slaveN:ip=..,port=..,state=..,offset=..,lag=..` lines of a master's INFO replication,
/// each as its fields.
pub(crate) fn replica_lines(info: &str) -> Vec<BTreeMap<&str, &str>> {
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim_end().split_once(':')?;
            k.strip_prefix("slave")?.parse::<u32>().ok()?;
            Some(v.split(',').filter_map(|kv| kv.split_once('=')).collect())
        })
        .collect()
}

/// The master's INFO replication: its replicas with offsets and lag.
async fn replicas(cfg: &Config, master: &Addr) -> anyhow::Result<Vec<ReplicaView>> {
    let mut c = cfg.redis_auth.at(&master.ip, master.port).connect().await?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await?;
    let offset: u64 = info_field(&info, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let out = replica_lines(&info)
        .into_iter()
        .filter_map(|f| {
            let (ip, port) = (f.get("ip")?, f.get("port")?);
            let their: Option<u64> = f.get("offset").and_then(|o| o.parse().ok());
            Some(ReplicaView {
                addr: format!("{ip}:{port}"),
                link_up: f.get("state") == Some(&"online"),
                lag_bytes: their.map(|t| offset.saturating_sub(t)),
                lag_seconds: f.get("lag").and_then(|l| l.parse().ok()),
            })
        })
        .collect();
    Ok(out)
}

/// Replicas Sentinel knows of that the master does not list (link down).
async fn known_replicas(cfg: &Config, name: &str) -> Vec<String> {
    for s in &cfg.sentinels {
        let Some(settings) = sentinel_settings(cfg, s) else {
            continue;
        };
        let Ok(mut c) = settings.connect().await else {
            continue;
        };
        let r: redis::RedisResult<Vec<Vec<String>>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(name)
            .query_async(&mut c)
            .await;
        if let Ok(list) = r {
            return list
                .into_iter()
                .map(pairs)
                .filter_map(|m| Some(format!("{}:{}", m.get("ip")?, m.get("port")?)))
                .collect();
        }
    }
    vec![]
}

/// The full view of one master.
pub async fn master_view(cfg: &Config, name: &str) -> MasterView {
    let sentinels =
        futures_util::future::join_all(cfg.sentinels.iter().map(|s| sentinel_view(cfg, s, name)))
            .await;
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for s in &sentinels {
        if let Some(m) = &s.master {
            *votes.entry(m.clone()).or_default() += 1;
        }
    }
    let top = votes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(m, n)| (m.clone(), *n));
    let mut view = MasterView {
        name: name.to_string(),
        master: top.as_ref().map(|(m, _)| m.clone()),
        config_epoch: sentinels.iter().filter_map(|s| s.config_epoch).max(),
        agreeing: top.map(|(_, n)| n).unwrap_or(0),
        quorum_ok: sentinels.iter().any(|s| s.quorum_ok == Some(true)),
        sentinels,
        replicas: vec![],
    };
    if let Some((ip, port)) = view.master.as_deref().and_then(split_addr) {
        let addr = Addr {
            ip: ip.to_string(),
            port,
        };
        view.replicas = replicas(cfg, &addr).await.unwrap_or_default();
        for r in known_replicas(cfg, name).await {
            if r != addr.to_string() && !view.replicas.iter().any(|v| v.addr == r) {
                view.replicas.push(ReplicaView {
                    addr: r,
                    link_up: false,
                    lag_bytes: None,
                    lag_seconds: None,
                });
            }
        }
        view.replicas.sort_by(|a, b| a.addr.cmp(&b.addr));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freshest_epoch_wins_over_head_count() {
        let a = |p| Addr {
            ip: "10.0.0.1".into(),
            port: p,
        };
        // Two Sentinels still at epoch 1 name the old master; the one at epoch 2 knows better.
        let r = pick_freshest(vec![(a(6379), 1), (a(6379), 1), (a(6380), 2)]);
        assert_eq!(r, Some((a(6380), 2, 1)));
        assert_eq!(pick_freshest(vec![]), None);
        assert_eq!(
            pick_freshest(vec![(a(1), 3), (a(1), 3), (a(2), 3)]),
            Some((a(1), 3, 2))
        );
    }
}
