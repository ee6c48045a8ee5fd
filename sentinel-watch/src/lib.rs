//! sentinel-watch: follows every Redis Sentinel, reconstructs each failover as a timeline, measures
//! the write downtime and the acknowledged writes lost.
//!
//! Data flow: config -> [`watcher`] (one subscription per Sentinel) -> [`events`] (typed) ->
//! [`failover`] (dedup, timeline, confirmation) <- [`probe`] (writes) -> event log, [`hooks`],
//! [`metrics`]; [`view`] polls replication and quorum for metrics and `status`.

pub mod cli;
pub mod config;
pub mod events;
pub mod failover;
pub mod hooks;
pub mod metrics;
pub mod probe;
pub mod switchover;
pub mod view;
pub mod watcher;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::app::DaemonContext;
use common::http::{Reply, StatusCode};
use common::logfmt::{Line, LogFile};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use failover::{Confirm, Outcome, Tracker};
use metrics::Metrics;

/// Confirms against the live Sentinels.
struct LiveConfirm(Arc<Config>);

impl Confirm for LiveConfirm {
    async fn current(&self, master: &str) -> Option<(events::Addr, u64, usize)> {
        view::freshest(&self.0, master).await
    }
}

/// The running watcher: what tests and `/status` can read.
#[derive(Clone)]
pub struct Handle {
    pub probes: Vec<(String, probe::Shared)>,
    pub views: Arc<Mutex<Vec<view::MasterView>>>,
    pub finished: Arc<Mutex<Vec<failover::Failover>>>,
    pub current: Arc<Mutex<std::collections::HashMap<String, events::Addr>>>,
}

/// Starts everything and runs until cancelled.
pub async fn run(
    cfg: Config,
    metrics: Metrics,
    cancel: CancellationToken,
    handle_tx: Option<tokio::sync::oneshot::Sender<Handle>>,
) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let log = Arc::new(
        LogFile::open(&cfg.event_log)
            .map_err(|e| anyhow::anyhow!("event_log {}: {e}", cfg.event_log.display()))?,
    );
    let mut tracker = Tracker::new(
        log.clone(),
        metrics.clone(),
        cfg.dedup_window,
        cfg.failover_idle,
        cfg.probe.enabled,
    );
    for m in &cfg.masters {
        // Present from the start (at zero), so that increase() and alerts see the first failover.
        let l = metrics::master(m);
        let _ = metrics.failovers.get_or_create(&l);
        let _ = metrics.lost_writes.get_or_create(&l);
        let _ = metrics.restart_lost_writes.get_or_create(&l);
        let _ = metrics.failover_duration.get_or_create(&l);
        let _ = metrics.write_downtime.get_or_create(&l);
        match view::freshest(&cfg, m).await {
            Some((addr, epoch, n)) => {
                tracing::info!(master = %m, %addr, epoch, agreeing = n, "current master");
                tracker.set_current(m, addr);
            }
            None => tracing::warn!(master = %m, "no Sentinel answered for this master yet"),
        }
    }
    log.emit(
        Line::new("start")
            .field("sentinels", cfg.sentinels.join(","))
            .field("masters", cfg.masters.join(","))
            .field("probe", cfg.probe.enabled),
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let tasks = tokio_util::task::TaskTracker::new();
    for s in &cfg.sentinels {
        tasks.spawn(watcher::watch(
            s.clone(),
            cfg.sentinel_auth.clone(),
            cfg.reconnect.clone(),
            cfg.sentinel_down_after,
            tx.clone(),
            cancel.clone(),
        ));
    }
    drop(tx);
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let mut probes = vec![];
    if cfg.probe.enabled {
        for m in &cfg.masters {
            let record = probe::Shared::default();
            probes.push((m.clone(), record.clone()));
            tasks.spawn(probe::run(
                cfg.clone(),
                m.clone(),
                record,
                probe_tx.clone(),
                metrics.clone(),
                cancel.clone(),
            ));
        }
    }
    drop(probe_tx);
    let views = Arc::new(Mutex::new(Vec::new()));
    tasks.spawn(poll(
        cfg.clone(),
        metrics.clone(),
        views.clone(),
        cancel.clone(),
    ));
    let finished = Arc::new(Mutex::new(Vec::new()));
    let handle = Handle {
        probes,
        views,
        finished: finished.clone(),
        current: tracker.current.clone(),
    };
    if let Some(t) = handle_tx {
        let _ = t.send(handle);
    }

    let confirm = LiveConfirm(cfg.clone());
    let mut up: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // What the Sentinels name now against what the tracker knows: a change nobody heard.
    let mut reconcile = tokio::time::interval(cfg.poll_interval);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outcomes: Vec<Outcome> = tokio::select! {
            _ = cancel.cancelled() => break,
            m = rx.recv() => match m {
                None => break,
                Some(watcher::Message::Event { sentinel, event, at }) => {
                    tracker.on_event(&sentinel, &event, at, &confirm).await
                }
                Some(watcher::Message::Link { sentinel, up: is_up, error }) => {
                    let changed = if is_up { up.insert(sentinel.clone()) } else { up.remove(&sentinel) };
                    metrics.sentinel_up.get_or_create(&vec![("sentinel".into(), sentinel.clone())]).set(i64::from(is_up));
                    metrics.sentinels_up.set(up.len() as i64);
                    if changed || !is_up {
                        let line = Line::new(if is_up { "sentinel_up" } else { "sentinel_down" })
                            .field("sentinel", &sentinel)
                            .field_opt("error", error.as_deref());
                        if changed { log.emit(line); }
                    }
                    vec![]
                }
            },
            s = probe_rx.recv(), if cfg.probe.enabled => match s {
                Some(s) if s.restarted => { tracker.on_restart(&s); vec![] }
                Some(s) => tracker.on_probe(s),
                None => vec![],
            },
            _ = tick.tick() => tracker.tick(SystemTime::now()),
            _ = reconcile.tick() => {
                let mut out = vec![];
                for m in &cfg.masters {
                    let named = confirm.current(m).await;
                    out.extend(tracker.reconcile(m, named, SystemTime::now()));
                }
                out
            }
        };
        for o in &outcomes {
            hooks::fire(&cfg.hooks, &log, o, &cancel);
            if let Outcome::Ended(f) = o {
                finished
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(f.clone());
            }
        }
    }
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    log.emit(Line::new("stop"));
    Ok(())
}

/// Refreshes the replication view and its metrics every `poll_interval`.
async fn poll(
    cfg: Arc<Config>,
    metrics: Metrics,
    views: Arc<Mutex<Vec<view::MasterView>>>,
    cancel: CancellationToken,
) {
    loop {
        let mut fresh = vec![];
        for m in &cfg.masters {
            let v = view::master_view(&cfg, m).await;
            let l = metrics::master(m);
            metrics
                .sentinels_agreeing
                .get_or_create(&l)
                .set(v.agreeing as i64);
            metrics
                .quorum_ok
                .get_or_create(&l)
                .set(i64::from(v.quorum_ok));
            for r in &v.replicas {
                let rl = vec![
                    ("master".to_string(), m.clone()),
                    ("replica".to_string(), r.addr.clone()),
                ];
                metrics
                    .replica_link_up
                    .get_or_create(&rl)
                    .set(i64::from(r.link_up));
                if let Some(b) = r.lag_bytes {
                    metrics.replica_lag_bytes.get_or_create(&rl).set(b as i64);
                }
                if let Some(s) = r.lag_seconds {
                    metrics.replica_lag_seconds.get_or_create(&rl).set(s);
                }
            }
            fresh.push(v);
        }
        *views.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.poll_interval) => {}
        }
    }
}

/// Registers metrics and `/status`, returns the daemon's work.
pub fn daemon(
    cfg: Config,
    ctx: &mut DaemonContext,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let metrics = Metrics::register(&mut ctx.routes.registry);
    let cancel = ctx.cancel.clone();
    let readiness = ctx.readiness.clone();
    let (htx, hrx) = tokio::sync::oneshot::channel::<Handle>();
    let slot: Arc<Mutex<Option<Handle>>> = Arc::default();
    let for_status = slot.clone();
    ctx.routes.extra.insert(
        "/status".into(),
        Arc::new(move |_| {
            let slot = for_status.clone();
            Box::pin(async move {
                let views = slot
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|h| h.views.lock().unwrap_or_else(|p| p.into_inner()).clone())
                    .unwrap_or_default();
                Reply {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: serde_json::to_string_pretty(&serde_json::json!({ "masters": views }))
                        .unwrap_or_default(),
                }
            })
        }),
    );
    Ok(async move {
        tokio::spawn(async move {
            if let Ok(h) = hrx.await {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
            }
        });
        readiness.set(true);
        run(cfg, metrics, cancel, Some(htx)).await
    })
}
