//! Which Redis node a snapshot is pulled from: through Sentinel, the healthy replica with the most
//! replicated data (so the master does not fork for the backup), the master when no replica is
//! healthy; or a fixed address.

use common::RedisSettings;

use crate::config::split_addr;
use crate::config::{RedisSnapshot, SnapshotSource};

/// The node picked and why.
#[derive(Clone, Debug)]
pub struct Picked {
    pub node: RedisSettings,
    /// `replica`, `master` or `address`.
    pub role: &'static str,
    pub why: String,
}

/// Picks the node to pull from. `redis` holds the credentials (and the address for `address`).
pub async fn pick(cfg: &RedisSnapshot, redis: &RedisSettings) -> anyhow::Result<Picked> {
    match cfg.source {
        SnapshotSource::Address => Ok(Picked {
            node: redis.clone(),
            role: "address",
            why: "redis_snapshot.source = \"address\"".into(),
        }),
        SnapshotSource::Sentinel => {
            let mut errors = vec![];
            for s in &cfg.sentinels {
                match ask_sentinel(cfg, redis, s).await {
                    Ok(p) => return Ok(p),
                    Err(e) => errors.push(format!("{s}: {e:#}")),
                }
            }
            anyhow::bail!(
                "no Sentinel of redis_snapshot.sentinels answered for master {:?}: {}",
                cfg.master_name,
                errors.join("; ")
            )
        }
    }
}

async fn ask_sentinel(
    cfg: &RedisSnapshot,
    redis: &RedisSettings,
    sentinel: &str,
) -> anyhow::Result<Picked> {
    let (host, port) = split_addr(sentinel)?;
    let mut conn = cfg.sentinel_auth.at(&host, port).connect().await?;
    let master: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(&cfg.master_name)
        .query_async(&mut conn)
        .await?;
    let Some((mhost, mport)) = master else {
        anyhow::bail!("the Sentinel does not know master {:?}", cfg.master_name);
    };
    let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(&cfg.master_name)
        .query_async(&mut conn)
        .await?;
    // Sentinel names the replicas and flags the ones it sees down; its view of their link is
    // refreshed only every 10 s, so the link and offset are asked of each replica itself.
    let mut best: Option<(u64, String, u16)> = None;
    let mut unhealthy = vec![];
    for r in &replicas {
        let field = |k: &str| {
            r.chunks_exact(2)
                .find(|kv| kv[0] == k)
                .map(|kv| kv[1].as_str())
                .unwrap_or("")
        };
        let (ip, port, flags) = (field("ip"), field("port"), field("flags"));
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if !flags.split(',').all(|f| f == "slave") {
            unhealthy.push(format!("{ip}:{port} (Sentinel flags {flags})"));
            continue;
        }
        match replica_state(&redis.at(ip, port)).await {
            Ok(offset) => {
                if best.as_ref().is_none_or(|(o, _, _)| offset > *o) {
                    best = Some((offset, ip.to_string(), port));
                }
            }
            Err(e) => unhealthy.push(format!("{ip}:{port} ({e:#})")),
        }
    }
    let mport: u16 = mport
        .parse()
        .map_err(|_| anyhow::anyhow!("the Sentinel gave a bad master port {mport:?}"))?;
    Ok(match best {
        Some((offset, ip, port)) => Picked {
            node: redis.at(&ip, port),
            role: "replica",
            why: format!("healthy replica with offset {offset}, per Sentinel {sentinel}"),
        },
        None => Picked {
            node: redis.at(&mhost, mport),
            role: "master",
            why: if replicas.is_empty() {
                format!("no replica known to Sentinel {sentinel}")
            } else {
                format!("no healthy replica: {}", unhealthy.join(", "))
            },
        },
    })
}

/// A replica's replicated offset, when its link to the master is up.
async fn replica_state(node: &RedisSettings) -> anyhow::Result<u64> {
    let mut conn = node.connect().await?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await?;
    let get = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(str::trim)
    };
    if get("role") != Some("slave") {
        anyhow::bail!("not a replica");
    }
    if get("master_link_status") != Some("up") {
        anyhow::bail!(
            "master link {}",
            get("master_link_status").unwrap_or("unknown")
        );
    }
    Ok(get("slave_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}
