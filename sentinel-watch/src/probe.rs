//! The write prober: an increasing sequence number written to the current master every interval
//! (`SET <prefix>:<master>:<seq> <seq> PX <ttl>`, then `WAIT 1 <timeout>`). When the master it
//! writes to changes, it reports the write downtime (last acknowledged write on the old master to
//! the first on the new one) and the acknowledged sequence numbers missing on the new master.
//!
//! Each write also records the master's `run_id` (read once per connection). A master that comes
//! back at the same address with a new `run_id` restarted in place: not a failover, but what it
//! lost in the restart (a restore, a crash with `appendfsync everysec`, no persistence) is
//! measured the same way and reported apart, and the next failover's check starts after it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::Addr;

/// One acknowledged write.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub seq: u64,
    pub addr: Addr,
    /// The master's `run_id` when it took the write (empty if INFO was refused).
    pub run: Arc<str>,
    pub at: SystemTime,
    /// Replicas that acknowledged it within the WAIT timeout.
    pub replicas: i64,
}

/// What the prober measured across a change of master.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    pub master: String,
    pub last_old: Write,
    pub first_new: Write,
    pub downtime: Duration,
    /// Acknowledged writes on the old master that were looked for on the new one.
    pub checked: usize,
    /// Those missing.
    pub lost: Vec<u64>,
    /// How many of the missing ones `WAIT` had reported on a replica: lost although replicated
    /// (the promoted replica was not the one that had them, or it had not received them yet).
    pub lost_replicated: usize,
    /// The same address with a new `run_id`: the master restarted in place; `lost` are the
    /// writes the restart took, not a failover's.
    pub restarted: bool,
}

/// Acknowledged writes kept for the lost-write check (about 80 minutes at 100 ms).
const KEEP: usize = 50_000;

/// The prober's record, readable while it runs.
#[derive(Default, Debug)]
pub struct Record {
    pub writes: VecDeque<Write>,
    pub failed: u64,
    pub switches: Vec<Switch>,
}

pub type Shared = Arc<Mutex<Record>>;

pub fn key(cfg: &Config, master: &str, seq: u64) -> String {
    format!("{}:{master}:{seq}", cfg.probe.key_prefix)
}

/// Probes one master name until cancelled.
pub async fn run(
    cfg: Arc<Config>,
    master: String,
    record: Shared,
    tx: mpsc::UnboundedSender<Switch>,
    metrics: crate::metrics::Metrics,
    cancel: CancellationToken,
) {
    let mut seq = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut conn: Option<(Addr, Arc<str>, redis::aio::MultiplexedConnection)> = None;
    let mut tick = tokio::time::interval(cfg.probe.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wait_ms = cfg.probe.wait_timeout.as_millis() as u64;
    let ttl_ms = cfg.probe.key_ttl.as_millis() as u64;
    let ok_labels = vec![
        ("master".to_string(), master.clone()),
        ("result".into(), "ok".into()),
    ];
    let err_labels = vec![
        ("master".to_string(), master.clone()),
        ("result".into(), "error".into()),
    ];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if conn.is_none() {
            let Some((addr, _, _)) = crate::view::freshest(&cfg, &master).await else {
                continue;
            };
            let mut settings = cfg.redis_auth.at(&addr.ip, addr.port);
            settings.timeout = settings
                .timeout
                .max(cfg.probe.wait_timeout + Duration::from_millis(500));
            match settings.connect().await {
                Ok(mut c) => {
                    let run = run_id(&mut c).await.unwrap_or_else(|e| {
                        tracing::debug!("probe: INFO server on {addr}: {e}");
                        String::new()
                    });
                    conn = Some((addr, run.into(), c));
                }
                Err(e) => {
                    tracing::debug!("probe: connect to {addr}: {e:#}");
                    continue;
                }
            }
        }
        let Some((addr, run, c)) = conn.as_mut() else {
            continue;
        };
        seq += 1;
        let k = key(&cfg, &master, seq);
        let written: redis::RedisResult<i64> = async {
            let () = redis::cmd("SET")
                .arg(&k)
                .arg(seq)
                .arg("PX")
                .arg(ttl_ms)
                .query_async(c)
                .await?;
            redis::cmd("WAIT").arg(1).arg(wait_ms).query_async(c).await
        }
        .await;
        match written {
            Ok(replicas) => {
                metrics.probe_writes.get_or_create(&ok_labels).inc();
                let w = Write {
                    seq,
                    addr: addr.clone(),
                    run: run.clone(),
                    at: SystemTime::now(),
                    replicas,
                };
                let previous = {
                    let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
                    let prev = r.writes.back().cloned();
                    r.writes.push_back(w.clone());
                    if r.writes.len() > KEEP {
                        r.writes.pop_front();
                    }
                    prev
                };
                if let Some(prev) = previous
                    && !same_master(&prev, &w)
                {
                    let switch = measure(&cfg, &master, &record, prev, w, c).await;
                    record
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .switches
                        .push(switch.clone());
                    let _ = tx.send(switch);
                }
            }
            Err(e) => {
                metrics.probe_writes.get_or_create(&err_labels).inc();
                record.lock().unwrap_or_else(|p| p.into_inner()).failed += 1;
                tracing::debug!("probe write to {addr}: {e}");
                conn = None;
            }
        }
    }
}

/// The master's `run_id`, from `INFO server`.
async fn run_id(c: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(c).await?;
    Ok(crate::view::info_field(&info, "run_id")
        .unwrap_or_default()
        .to_string())
}

/// Both writes went to the same master process: same address, and the same `run_id` where both
/// are known.
fn same_master(a: &Write, b: &Write) -> bool {
    a.addr == b.addr && (a.run == b.run || a.run.is_empty() || b.run.is_empty())
}

/// Looks for the old master's acknowledged writes (since the previous change of master or restart)
/// on the new master (or on the restarted one).
async fn measure(
    cfg: &Config,
    master: &str,
    record: &Shared,
    last_old: Write,
    first_new: Write,
    new_conn: &mut redis::aio::MultiplexedConnection,
) -> Switch {
    let seqs: Vec<(u64, i64)> = {
        let r = record.lock().unwrap_or_else(|p| p.into_inner());
        // Walk back from the write before the first on the new master while it was the old one,
        // within half the keys' TTL (older keys may have expired on their own).
        let horizon = cfg.probe.key_ttl / 2;
        r.writes
            .iter()
            .rev()
            .skip(1)
            .take_while(|w| same_master(w, &last_old))
            .filter(|w| first_new.at.duration_since(w.at).unwrap_or_default() < horizon)
            .map(|w| (w.seq, w.replicas))
            .collect()
    };
    let mut lost = Vec::new();
    let mut lost_replicated = 0;
    let mut checked = 0;
    for chunk in seqs.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|(s, _)| key(cfg, master, *s)).collect();
        let got: redis::RedisResult<Vec<Option<String>>> =
            redis::cmd("MGET").arg(&keys).query_async(new_conn).await;
        match got {
            Ok(values) => {
                checked += chunk.len();
                for ((seq, replicas), v) in chunk.iter().zip(values) {
                    if v.is_none() {
                        lost.push(*seq);
                        lost_replicated += usize::from(*replicas > 0);
                    }
                }
            }
            Err(e) => tracing::warn!("probe: checking writes on the new master: {e}"),
        }
    }
    lost.sort_unstable();
    let restarted = last_old.addr == first_new.addr;
    Switch {
        restarted,
        master: master.to_string(),
        downtime: first_new.at.duration_since(last_old.at).unwrap_or_default(),
        last_old,
        first_new,
        checked,
        lost,
        lost_replicated,
    }
}

/// The prober run for a while on its own (a switchover, a bench): writes first, then the
/// measurement of one change of master.
pub struct Session {
    record: Shared,
    switches: mpsc::UnboundedReceiver<Switch>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts writing to `name`'s master; returns once a few writes are acknowledged.
    pub async fn start(cfg: &Config, name: &str) -> anyhow::Result<Self> {
        let record = Shared::default();
        let (tx, switches) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::new(cfg.clone()),
            name.to_string(),
            record.clone(),
            tx,
            crate::metrics::Metrics::new(),
            cancel.clone(),
        ));
        let p = Self {
            record,
            switches,
            cancel,
            task,
        };
        // A few acknowledged writes first, so that the switch has a before.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.written() < 3 {
            if std::time::Instant::now() > deadline {
                p.stop().await;
                anyhow::bail!("the write prober could not write to {name}'s master within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(p)
    }

    pub fn written(&self) -> usize {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .writes
            .len()
    }

    /// The prober's measurement of the switch away from `old`, waiting up to `within`.
    pub async fn switch(mut self, old: &Addr, within: Duration) -> Option<Switch> {
        let got = tokio::time::timeout(within, async {
            while let Some(s) = self.switches.recv().await {
                if !s.restarted && &s.last_old.addr == old {
                    return Some(s);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        self.stop().await;
        got
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
