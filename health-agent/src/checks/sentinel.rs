//! Sentinels: each reachable, `SENTINEL CKQUORUM` ok, all name the same master.

use std::collections::BTreeMap;

use super::{Findings, Outcome, State};
use crate::config::{DegradedState, SentinelCheck};

pub async fn check(c: &SentinelCheck) -> Outcome {
    let degraded = match c.degraded_state {
        DegradedState::Warn => State::Warn,
        DegradedState::Crit => State::Crit,
    };
    let mut f = Findings::default();
    let mut masters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut reachable = 0;
    let mut quorum_ok = 0;
    for addr in &c.sentinels {
        let Some((host, port)) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        else {
            f.add(State::Unknown, format!("{addr} is not host:port"));
            continue;
        };
        let mut conn = match c.auth.at(host, port).connect().await {
            Ok(x) => x,
            Err(e) => {
                f.add(degraded, format!("sentinel {addr} unreachable: {e:#}"));
                continue;
            }
        };
        let master: redis::RedisResult<Option<(String, String)>> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&c.master_name)
            .query_async(&mut conn)
            .await;
        match master {
            Ok(Some((h, p))) => {
                reachable += 1;
                masters
                    .entry(format!("{h}:{p}"))
                    .or_default()
                    .push(addr.clone());
            }
            Ok(None) => {
                f.add(
                    degraded,
                    format!("sentinel {addr} does not monitor {}", c.master_name),
                );
                continue;
            }
            Err(e) => {
                f.add(degraded, format!("sentinel {addr}: {e}"));
                continue;
            }
        }
        let ck: redis::RedisResult<String> = redis::cmd("SENTINEL")
            .arg("CKQUORUM")
            .arg(&c.master_name)
            .query_async(&mut conn)
            .await;
        match ck {
            Ok(_) => quorum_ok += 1,
            Err(e) => f.add(State::Crit, format!("sentinel {addr} CKQUORUM: {e}")),
        }
    }
    if reachable == 0 {
        f.add(
            State::Crit,
            format!("no Sentinel of {} answered", c.sentinels.len()),
        );
    }
    if masters.len() > 1 {
        let views: Vec<String> = masters
            .iter()
            .map(|(m, who)| format!("{m} by {}", who.join(",")))
            .collect();
        f.add(
            degraded,
            format!("Sentinels disagree on the master: {}", views.join("; ")),
        );
    }
    if let Some(m) = masters.keys().next() {
        f.add(
            State::Ok,
            format!(
                "master {m}; {reachable}/{} Sentinels reachable; CKQUORUM ok on {quorum_ok}",
                c.sentinels.len()
            ),
        );
    }
    f.finish()
}
