//! One Redis node: PING, role as expected, on a replica the master link and lag, memory used vs
//! maxmemory.

use std::collections::HashMap;

use super::{Findings, Outcome, State, bytes, level};
use crate::config::{RedisCheck, RedisRole};

/// `INFO` text as key/value pairs.
pub fn parse_info(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .collect()
}

pub async fn check(c: &RedisCheck) -> Outcome {
    let mut conn = match c.conn.connect().await {
        Ok(x) => x,
        Err(e) => return Outcome::crit(format!("cannot connect: {e:#}")),
    };
    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    if let Err(e) = pong {
        return Outcome::crit(format!("PING: {e}"));
    }
    let info: String = match redis::cmd("INFO")
        .arg("replication")
        .arg("memory")
        .query_async(&mut conn)
        .await
    {
        Ok(i) => i,
        Err(e) => return Outcome::crit(format!("INFO: {e}")),
    };
    let kv = parse_info(&info);
    let mut f = Findings::default();
    let role = kv.get("role").copied().unwrap_or("?");
    let is_replica = role == "slave";
    match (c.role, is_replica) {
        (RedisRole::Master, true) => f.add(State::Crit, "role is replica, expected master"),
        (RedisRole::Replica, false) => {
            f.add(State::Crit, format!("role is {role}, expected replica"))
        }
        _ => f.add(
            State::Ok,
            format!("role {}", if is_replica { "replica" } else { role }),
        ),
    }
    if is_replica {
        let link = kv.get("master_link_status").copied().unwrap_or("?");
        if link != "up" {
            f.add(State::Crit, format!("master link {link}"));
        } else {
            f.add(State::Ok, "master link up");
            // Lag in bytes: the master's offset minus ours, asked of the master itself.
            let ours: Option<u64> = kv.get("slave_repl_offset").and_then(|v| v.parse().ok());
            let master = kv
                .get("master_host")
                .zip(kv.get("master_port").and_then(|p| p.parse::<u16>().ok()));
            if let (Some(ours), Some((host, port))) = (ours, master) {
                match master_offset(c, host, port).await {
                    Ok(theirs) => {
                        let lag = theirs.saturating_sub(ours);
                        let st =
                            level(lag as f64, c.lag_warn_bytes as f64, c.lag_crit_bytes as f64);
                        f.add(
                            st,
                            format!(
                                "{} behind the master (warn {}, crit {})",
                                bytes(lag),
                                bytes(c.lag_warn_bytes),
                                bytes(c.lag_crit_bytes)
                            ),
                        );
                    }
                    Err(e) => f.add(
                        State::Warn,
                        format!("cannot ask the master {host}:{port} for its offset: {e:#}"),
                    ),
                }
            }
        }
    }
    let used: f64 = kv
        .get("used_memory")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let max: f64 = kv
        .get("maxmemory")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    if max > 0.0 {
        let pct = used * 100.0 / max;
        f.add(
            level(pct, c.memory_warn_pct, c.memory_crit_pct),
            format!(
                "memory {} of maxmemory {} ({pct:.0}%, warn {}%, crit {}%)",
                bytes(used as u64),
                bytes(max as u64),
                c.memory_warn_pct,
                c.memory_crit_pct
            ),
        );
    }
    f.finish()
}

async fn master_offset(c: &RedisCheck, host: &str, port: u16) -> anyhow::Result<u64> {
    let mut conn = c.conn.at(host, port).connect().await?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await?;
    parse_info(&info)
        .get("master_repl_offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no master_repl_offset"))
}
