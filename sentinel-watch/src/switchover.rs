//! `sentinel-watch switchover`: a planned change of master that loses no acknowledged write.
//!
//! A plain `SENTINEL FAILOVER` loses writes: the old master keeps accepting (and replicas keep
//! acknowledging) writes until Sentinel demotes it, and Sentinel may promote a replica that has not
//! received the last of them. The switchover:
//!
//! 1. finds the master the freshest Sentinels name and its online replicas (the master's INFO);
//! 2. with `--to`, steers Sentinel's choice: every other replica gets `replica-priority 0` (their
//!    values are put back at the end, whatever happens), and the switchover waits until the
//!    Sentinel that will run the failover has seen that (it reads replica INFO every 10 s);
//! 3. pauses writes on the master (`CLIENT PAUSE <ms> WRITE`, bounded, so a crash of this command
//!    unpauses by itself);
//! 4. waits until the target (without `--to`: every online replica) has processed the master's
//!    whole replication stream. If `pause_max` passes first, it unpauses and stops, having
//!    changed nothing;
//! 5. runs `SENTINEL FAILOVER` and waits until the Sentinels name a new master (with `--to`, it
//!    must be the target);
//! 6. makes the old master a replica of the new one (`REPLICAOF`, as Sentinel would) and only
//!    then unpauses it: the writes held by the pause fail with READONLY instead of being
//!    acknowledged by a master about to be demoted.
//!
//! With the write prober on (default), it reports the write downtime and the acknowledged writes
//! lost, measured the same way as the daemon does for any failover.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use crate::config::{Config, split_addr};
use crate::events::Addr;
use crate::probe;
use crate::view::info_field as field;

/// What to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub master: String,
    /// The replica to promote; none: the one Sentinel picks, once every replica has caught up.
    pub to: Option<Addr>,
    /// The longest writes stay paused waiting for the replica(s) to catch up.
    pub pause_max: Duration,
    /// The longest the Sentinels may take to name the new master once asked.
    pub failover_timeout: Duration,
    /// Run the write prober during the switchover and report what it saw.
    pub probe: bool,
}

/// What happened.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub master: String,
    pub old: String,
    pub new: String,
    /// Writes paused on the old master: pause to unpause.
    pub paused_ms: u128,
    /// Pause to the replica(s) caught up.
    pub caught_up_ms: u128,
    /// Pause to the Sentinels naming the new master.
    pub switched_ms: u128,
    /// From the prober: last acknowledged write on the old master to the first on the new.
    pub write_downtime_ms: Option<u128>,
    /// From the prober: acknowledged writes looked for on the new master, and those missing.
    pub writes_checked: Option<usize>,
    pub writes_lost: Option<usize>,
}

impl Report {
    pub fn line(&self) -> String {
        let mut s = format!(
            "switchover {}: {} -> {}; writes paused {} ms (caught up after {} ms, Sentinels switched after {} ms)",
            self.master, self.old, self.new, self.paused_ms, self.caught_up_ms, self.switched_ms
        );
        if let (Some(d), Some(c), Some(l)) = (
            self.write_downtime_ms,
            self.writes_checked,
            self.writes_lost,
        ) {
            s.push_str(&format!(
                "; prober: write downtime {d} ms, {l} of {c} acknowledged writes lost"
            ));
        }
        s
    }
}

/// `ip:port` or `host:port` as an [`Addr`].
pub fn parse_addr(s: &str) -> anyhow::Result<Addr> {
    let (h, p) = split_addr(s).with_context(|| format!("{s:?} is not host:port"))?;
    Ok(Addr {
        ip: h.to_string(),
        port: p,
    })
}

/// Runs one switchover. An error before the failover was asked for means nothing changed.
pub async fn run(cfg: &Config, opts: &Options) -> anyhow::Result<Report> {
    let name = opts.master.as_str();
    let (old, epoch, agreeing) = crate::view::freshest(cfg, name)
        .await
        .with_context(|| format!("no Sentinel answered for {name}"))?;
    if agreeing * 2 <= cfg.sentinels.len() {
        bail!(
            "only {agreeing} of {} Sentinels name {old} the master of {name}: not switching without a majority",
            cfg.sentinels.len()
        );
    }
    let sentinel = pick_sentinel(cfg, name, &old, epoch).await?;
    let mut master = connect(cfg, &old).await?;
    let info = info_replication(&mut master).await?;
    if field(&info, "role") != Some("master") {
        bail!("{old}, which the Sentinels name the master of {name}, says it is not a master");
    }
    let online = online_replicas(&info);
    if online.is_empty() {
        bail!("{old} has no online replica to switch to");
    }
    let must_catch_up: Vec<Addr> = match &opts.to {
        Some(t) => {
            if !online.contains(t) {
                bail!(
                    "{t} is not an online replica of {old} (online: {})",
                    list(&online)
                );
            }
            vec![t.clone()]
        }
        None => online.clone(),
    };

    // Steering: priorities changed on the other replicas are restored whatever happens next.
    let mut restore = Vec::new();
    let steered = match &opts.to {
        Some(t) => steer(cfg, name, &sentinel, t, &online, &mut restore).await,
        None => Ok(()),
    };
    let result = match steered {
        Ok(()) => switch(cfg, opts, &sentinel, &old, &mut master, &must_catch_up).await,
        Err(e) => Err(e),
    };
    for (addr, priority) in restore {
        if let Err(e) = set_priority(cfg, &addr, &priority).await {
            tracing::error!(
                "switchover: could not restore replica-priority {priority} on {addr}: {e:#}"
            );
        }
    }
    result
}

async fn switch(
    cfg: &Config,
    opts: &Options,
    sentinel: &str,
    old: &Addr,
    master: &mut MultiplexedConnection,
    must_catch_up: &[Addr],
) -> anyhow::Result<Report> {
    let name = opts.master.as_str();
    let prober = if opts.probe {
        Some(probe::Session::start(cfg, name).await?)
    } else {
        None
    };
    // Bounded pause: long enough for the catch-up and the failover, ended early below.
    let bound = opts.pause_max + opts.failover_timeout + Duration::from_secs(1);
    let paused = Instant::now();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(bound.as_millis() as u64)
        .arg("WRITE")
        .query_async(master)
        .await
        .with_context(|| format!("CLIENT PAUSE on {old}"))?;

    if let Err(e) = catch_up(cfg, master, must_catch_up, paused, opts.pause_max).await {
        unpause(master, old).await;
        if let Some(p) = prober {
            p.stop().await;
        }
        return Err(e.context(format!(
            "aborted: writes on {old} unpaused, nothing changed"
        )));
    }
    let caught_up = paused.elapsed();

    let asked: redis::RedisResult<String> = async {
        let mut c = sentinel_conn(cfg, sentinel).await?;
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(name)
            .query_async(&mut c)
            .await
    }
    .await;
    if let Err(e) = asked {
        unpause(master, old).await;
        if let Some(p) = prober {
            p.stop().await;
        }
        bail!(
            "SENTINEL FAILOVER {name} on {sentinel}: {e}; writes on {old} unpaused, nothing changed"
        );
    }

    let deadline = paused + opts.pause_max + opts.failover_timeout;
    let new = loop {
        if let Some((addr, _, _)) = crate::view::freshest(cfg, name).await
            && &addr != old
        {
            break addr;
        }
        if Instant::now() > deadline {
            // Still paused until the bound: a late promotion cannot lose what the old master
            // would otherwise acknowledge now.
            if let Some(p) = prober {
                p.stop().await;
            }
            bail!(
                "the Sentinels did not name a new master of {name} within {:?} of SENTINEL FAILOVER; \
                 writes on {old} stay paused until the {bound:?} bound ends",
                opts.failover_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let switched = paused.elapsed();

    // Demote before unpausing: held writes then fail instead of landing on a lost master.
    let demoted: redis::RedisResult<String> = redis::cmd("REPLICAOF")
        .arg(&new.ip)
        .arg(new.port)
        .query_async(master)
        .await;
    if let Err(e) = demoted {
        tracing::warn!("switchover: REPLICAOF {new} on {old}: {e} (Sentinel will reconfigure it)");
    }
    unpause(master, old).await;
    let paused_ms = paused.elapsed().as_millis();

    let measured = match prober {
        Some(p) => p.switch(old, Duration::from_secs(10)).await,
        None => None,
    };
    if let Some(t) = &opts.to
        && &new != t
    {
        bail!("Sentinel promoted {new}, not the requested {t}");
    }
    Ok(Report {
        master: name.to_string(),
        old: old.to_string(),
        new: new.to_string(),
        paused_ms,
        caught_up_ms: caught_up.as_millis(),
        switched_ms: switched.as_millis(),
        write_downtime_ms: measured.as_ref().map(|s| s.downtime.as_millis()),
        writes_checked: measured.as_ref().map(|s| s.checked),
        writes_lost: measured.as_ref().map(|s| s.lost.len()),
    })
}

/// Waits until every replica has processed the master's whole stream, within `max` of `since`.
/// Everything here, connecting to the replicas included, is bounded by that deadline.
async fn catch_up(
    cfg: &Config,
    master: &mut MultiplexedConnection,
    replicas: &[Addr],
    since: Instant,
    max: Duration,
) -> anyhow::Result<()> {
    let deadline = since + max;
    let mut conns: Vec<Option<MultiplexedConnection>> = replicas.iter().map(|_| None).collect();
    loop {
        let target = offset(&info_replication(master).await?, "master_repl_offset")?;
        let mut behind = None;
        for (addr, conn) in replicas.iter().zip(conns.iter_mut()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let theirs = tokio::time::timeout(left, async {
                if conn.is_none() {
                    *conn = Some(connect(cfg, addr).await?);
                }
                let c = conn.as_mut().context("connection")?;
                offset(&info_replication(c).await?, "slave_repl_offset")
            })
            .await;
            let why = match theirs {
                Ok(Ok(o)) if o >= target => continue,
                Ok(Ok(o)) => format!("at offset {o}"),
                Ok(Err(e)) => {
                    *conn = None;
                    format!("{e:#}")
                }
                Err(_) => "not answering".to_string(),
            };
            behind = Some((addr.clone(), why));
            break;
        }
        let Some((addr, why)) = behind else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            bail!(
                "replica {addr} ({why}) had not caught up with the master's offset {target} within {max:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sets `replica-priority 0` on every online replica but `target`, remembering the old values
/// in `restore`, and waits until `sentinel` sees the new priorities.
async fn steer(
    cfg: &Config,
    name: &str,
    sentinel: &str,
    target: &Addr,
    online: &[Addr],
    restore: &mut Vec<(Addr, String)>,
) -> anyhow::Result<()> {
    let key = |m: &BTreeMap<String, String>| {
        format!(
            "{}:{}",
            m.get("ip").map(String::as_str).unwrap_or(""),
            m.get("port").map(String::as_str).unwrap_or("")
        )
    };
    // The target's own setting decides; Sentinel's copy may be up to 10 s old (a previous
    // switchover's steering). When the target does not answer, Sentinel's copy is all there is.
    let own = get_priority(cfg, target).await.ok();
    let seen = sentinel_replicas(cfg, sentinel, name).await?;
    let cached = match seen.iter().find(|m| key(m) == target.to_string()) {
        None => bail!("Sentinel {sentinel} does not know {target} as a replica of {name}"),
        Some(m) => m.get("slave-priority").cloned(),
    };
    if own.as_deref().or(cached.as_deref()) == Some("0") {
        bail!("{target} has replica-priority 0: Sentinel never promotes it");
    }
    for r in online.iter().filter(|r| *r != target) {
        let p = get_priority(cfg, r).await?;
        if p != "0" {
            set_priority(cfg, r, "0").await?;
            restore.push((r.clone(), p));
        }
    }
    // Sentinel reads replica INFO every 10 s; the failover uses what it read last.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let seen = sentinel_replicas(cfg, sentinel, name).await?;
        let ready = seen.iter().all(|m| {
            let a = key(m);
            let p = m.get("slave-priority").map(String::as_str);
            if a == target.to_string() {
                p != Some("0")
            } else if online.iter().any(|o| o.to_string() == a) {
                p == Some("0")
            } else {
                true
            }
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Sentinel {sentinel} did not see the replica priorities change within 25 s; nothing switched"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Sentinel that names `master` at `epoch` and has quorum: the one asked to fail over.
async fn pick_sentinel(
    cfg: &Config,
    name: &str,
    master: &Addr,
    epoch: u64,
) -> anyhow::Result<String> {
    let mut last = None;
    for s in &cfg.sentinels {
        match crate::view::ask(cfg, s, name).await {
            Ok((a, e)) if &a == master && e == epoch => {
                let mut c = sentinel_conn(cfg, s).await?;
                let q: redis::RedisResult<String> = redis::cmd("SENTINEL")
                    .arg("CKQUORUM")
                    .arg(name)
                    .query_async(&mut c)
                    .await;
                match q {
                    Ok(_) => return Ok(s.clone()),
                    Err(e) => last = Some(format!("{s}: {e}")),
                }
            }
            Ok(_) => {}
            Err(e) => last = Some(format!("{s}: {e:#}")),
        }
    }
    bail!(
        "no Sentinel with quorum names {master} for {name}{}",
        last.map(|l| format!(" (last: {l})")).unwrap_or_default()
    )
}

async fn sentinel_conn(cfg: &Config, sentinel: &str) -> redis::RedisResult<MultiplexedConnection> {
    let (h, p) = split_addr(sentinel).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "bad Sentinel address",
        ))
    })?;
    cfg.sentinel_auth
        .at(h, p)
        .connect()
        .await
        .map_err(|e| redis::RedisError::from(std::io::Error::other(format!("{e:#}"))))
}

async fn sentinel_replicas(
    cfg: &Config,
    sentinel: &str,
    name: &str,
) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let mut c = sentinel_conn(cfg, sentinel).await?;
    let list: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(name)
        .query_async(&mut c)
        .await?;
    Ok(list.into_iter().map(crate::view::pairs).collect())
}

async fn connect(cfg: &Config, a: &Addr) -> anyhow::Result<MultiplexedConnection> {
    cfg.redis_auth
        .at(&a.ip, a.port)
        .connect()
        .await
        .with_context(|| format!("connecting to {a}"))
}

async fn get_priority(cfg: &Config, a: &Addr) -> anyhow::Result<String> {
    let mut c = connect(cfg, a).await?;
    let (_, v): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("replica-priority")
        .query_async(&mut c)
        .await
        .with_context(|| format!("CONFIG GET replica-priority on {a}"))?;
    Ok(v)
}

async fn set_priority(cfg: &Config, a: &Addr, v: &str) -> anyhow::Result<()> {
    let mut c = connect(cfg, a).await?;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-priority")
        .arg(v)
        .query_async(&mut c)
        .await
        .with_context(|| format!("CONFIG SET replica-priority {v} on {a}"))?;
    Ok(())
}

async fn unpause(master: &mut MultiplexedConnection, old: &Addr) {
    let r: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(master)
        .await;
    if let Err(e) = r {
        tracing::error!("switchover: CLIENT UNPAUSE on {old}: {e} (the pause ends at its bound)");
    }
}

async fn info_replication(c: &mut MultiplexedConnection) -> anyhow::Result<String> {
    Ok(redis::cmd("INFO").arg("replication").query_async(c).await?)
}

fn offset(info: &str, key: &str) -> anyhow::Result<u64> {
    field(info, key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} in INFO replication"))
}

/// The online replicas of a master's INFO replication.
fn online_replicas(info: &str) -> Vec<Addr> {
    crate::view::replica_lines(info)
        .into_iter()
        .filter(|f| f.get("state") == Some(&"online"))
        .filter_map(|f| {
            Some(Addr {
                ip: f.get("ip")?.to_string(),
                port: f.get("port")?.parse().ok()?,
            })
        })
        .collect()
}

fn list(a: &[Addr]) -> String {
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_replicas_and_offsets_come_from_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=127.0.0.1,port=16380,state=online,offset=1234,lag=0\r\n\
            slave1:ip=127.0.0.1,port=16381,state=wait_bgsave,offset=0,lag=0\r\n\
            master_failover_state:no-failover\r\nmaster_repl_offset:1234\r\n";
        assert_eq!(
            online_replicas(info),
            vec![Addr {
                ip: "127.0.0.1".into(),
                port: 16380
            }]
        );
        assert_eq!(offset(info, "master_repl_offset").ok(), Some(1234));
        assert_eq!(field(info, "role"), Some("master"));
        assert!(offset(info, "slave_repl_offset").is_err());
    }
}
