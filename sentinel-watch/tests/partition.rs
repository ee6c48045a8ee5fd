//! Network partitions, for real: every Redis node and Sentinel in its own network namespace
//! (harness::netns), sentinel-watch and its write prober in the master's namespace (the client on
//! the master's side), links cut and healed. Root only: without it these tests say so and fail.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use harness::netns::Net;
use harness::process::TempDir;
use harness::redis::{MASTER_NAME, RedisOptions, RedisStack};
use sentinel_watch::events::Addr;
use sentinel_watch::failover::Failover;
use sentinel_watch::metrics::Metrics;
use sentinel_watch::{Config, Handle};
use tokio_util::sync::CancellationToken;

mod support;

const PW: &str = "partition-test-pw";

/// The stack in namespaces: host 0 the master, 1-2 the replicas, 3-5 the Sentinels.
fn stack(net: &Arc<Net>, extra_conf: Vec<String>) -> RedisStack {
    let options = RedisOptions {
        password: Some(PW.into()),
        down_after_ms: 1000,
        failover_timeout_ms: 5000,
        extra_conf,
        net: Some(net.clone()),
        ..Default::default()
    };
    Net::run_in(&net.client, move || RedisStack::start_with(options))
        .expect("thread")
        .expect("redis stack in namespaces")
}

/// sentinel-watch running on its own thread and runtime inside `host`'s namespace.
struct Watch {
    handle: Handle,
    metrics: Metrics,
    cfg: Config,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Watch {
    fn start(stack: &RedisStack, host: &harness::netns::Host) -> Self {
        let dir = TempDir::new("sw-partition").expect("dir");
        let log = dir.path().join("events.log");
        let cfg = Config {
            sentinel_down_after: Duration::from_secs(1),
            ..support::config(stack.sentinel_addrs(), PW, &log)
        };
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = Net::spawn_in(host, {
            let (cfg, metrics, cancel) = (cfg.clone(), metrics.clone(), cancel.clone());
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let _ = rt.block_on(sentinel_watch::run(cfg, metrics, cancel, Some(tx)));
            }
        })
        .expect("thread in the namespace");
        let handle = rx.blocking_recv().expect("handle");
        let w = Self {
            handle,
            metrics,
            cfg,
            cancel,
            thread: Some(thread),
            log,
            _dir: dir,
        };
        w.wait(Duration::from_secs(30), "the prober writing", |w| {
            w.writes().len() >= 10
        });
        w
    }

    fn writes(&self) -> Vec<sentinel_watch::probe::Write> {
        self.handle.probes[0]
            .1
            .lock()
            .expect("lock")
            .writes
            .iter()
            .cloned()
            .collect()
    }

    fn finished(&self) -> Vec<Failover> {
        self.handle.finished.lock().expect("lock").clone()
    }

    fn wait(&self, within: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; event log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn addr(node: &harness::redis::Node) -> Addr {
    Addr {
        ip: node.host.clone(),
        port: node.port,
    }
}

/// The master the Sentinels name, asked from the client namespace.
fn named_master(net: &Net, stack: &RedisStack) -> Option<(String, u16)> {
    let sentinels: Vec<(String, u16)> = stack
        .sentinels
        .iter()
        .map(|s| (s.host.clone(), s.port))
        .collect();
    Net::run_in(&net.client, move || {
        for (h, p) in sentinels {
            let Ok(c) = redis::Client::open(format!("redis://{h}:{p}/")) else {
                continue;
            };
            let Ok(mut c) = c.get_connection_with_timeout(Duration::from_secs(1)) else {
                continue;
            };
            let got: redis::RedisResult<(String, String)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER_NAME)
                .query(&mut c);
            if let Ok((h, p)) = got {
                return p.parse().ok().map(|p| (h, p));
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Of the prober's acknowledged writes to `old`, those missing on `new` (read from the client
/// namespace): what the client itself counts as lost.
fn lost_as_counted_by_the_client(net: &Net, w: &Watch, old: &Addr, new: &Addr) -> Vec<u64> {
    let seqs: Vec<u64> = w
        .writes()
        .iter()
        .filter(|x| &x.addr == old)
        .map(|x| x.seq)
        .collect();
    let url = format!("redis://:{PW}@{}:{}/", new.ip, new.port);
    Net::run_in(&net.client, move || {
        let mut c = redis::Client::open(url)
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("new master");
        seqs.into_iter()
            .filter(|s| {
                let k = format!("outrigger:probe:{MASTER_NAME}:{s}");
                redis::cmd("EXISTS")
                    .arg(&k)
                    .query::<i64>(&mut c)
                    .expect("EXISTS")
                    == 0
            })
            .collect()
    })
    .expect("thread")
}

/// Cuts the master (with sentinel-watch beside it) off for `hold`, heals, and returns what was
/// measured: (the failover, lost writes as the client counts them, the last acknowledged write
/// on the isolated master after the cut, how long after the cut).
fn cut_the_master(
    extra_conf: Vec<String>,
    hold: Duration,
) -> (Failover, Vec<u64>, Option<Duration>) {
    let net = Arc::new(Net::new(6).expect("namespaces"));
    let stack = stack(&net, extra_conf);
    let w = Watch::start(&stack, &net.hosts[0]);
    let old = addr(&stack.master);

    let cut_at = SystemTime::now();
    net.cut(0).expect("cut");
    // The Sentinels, on the other side, promote a replica.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        if let Some((h, p)) = named_master(&net, &stack)
            && (h.as_str(), p) != (old.ip.as_str(), old.port)
        {
            break Addr { ip: h, port: p };
        }
        assert!(
            Instant::now() < deadline,
            "no promotion while the master was cut off"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(hold);
    // The last write the isolated master acknowledged.
    let last_on_old = w
        .writes()
        .iter()
        .filter(|x| x.addr == old && x.at > cut_at)
        .map(|x| x.at.duration_since(cut_at).unwrap_or_default())
        .max();
    net.heal(0).expect("heal");

    // The old master rejoins as a replica; the prober follows to the new master and measures.
    w.wait(Duration::from_secs(60), "the failover measured", |w| {
        w.finished()
            .iter()
            .any(|f| f.probe.is_some() && f.new.as_ref() == Some(&new))
    });
    let old_host = stack.master.host.clone();
    let port = stack.master.port;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (h, p) = (old_host.clone(), port);
        let role = Net::run_in(&net.client, move || {
            harness::redis::info_at(&h, p, Some(PW), "replication").unwrap_or_default()
        })
        .expect("thread");
        if role.contains("role:slave") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old master did not rejoin as a replica"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let f = w
        .finished()
        .into_iter()
        .find(|f| f.probe.is_some() && f.new.as_ref() == Some(&new))
        .expect("failover");
    let counted = lost_as_counted_by_the_client(&net, &w, &old, &new);
    drop(w);
    drop(stack);
    (f, counted, last_on_old)
}

#[test]
fn a_cut_off_master_without_min_replicas_loses_exactly_what_sentinel_watch_counts() {
    let _serial = harness::serial();
    let (f, counted, last) = cut_the_master(
        vec!["min-replicas-to-write 0".into()],
        Duration::from_secs(3),
    );
    let p = f.probe.as_ref().expect("probe");
    eprintln!(
        "min-replicas-to-write 0: {} acknowledged writes lost (client counted {}), last acknowledged \
         on the isolated master {:?} after the cut, write downtime {:?}",
        p.lost.len(),
        counted.len(),
        last,
        p.downtime
    );
    assert!(!p.lost.is_empty(), "the isolated master took no writes");
    assert_eq!(
        p.lost, counted,
        "sentinel-watch's figure is what the client counted"
    );
    // Cut off from its replicas, the master's WAIT saw none of them.
    assert_eq!(p.lost_replicated, 0, "lost writes a replica had: {p:?}");
}

#[test]
fn a_cut_off_master_with_min_replicas_stops_taking_writes_within_the_lag_bound() {
    let _serial = harness::serial();
    // The shipped settings: an isolated master refuses writes once no replica acknowledged within
    // 10 s. The partition lasts past that.
    let (f, counted, last) = cut_the_master(
        vec![
            "min-replicas-to-write 1".into(),
            "min-replicas-max-lag 10".into(),
        ],
        Duration::from_secs(14),
    );
    let p = f.probe.as_ref().expect("probe");
    eprintln!(
        "min-replicas-to-write 1, max-lag 10: {} acknowledged writes lost (client counted {}), last \
         acknowledged on the isolated master {:?} after the cut",
        p.lost.len(),
        counted.len(),
        last
    );
    assert_eq!(
        p.lost, counted,
        "sentinel-watch's figure is what the client counted"
    );
    // Replicas ping every second; lag counts from the last ack: refused within about 10 + 2 s.
    let last = last.unwrap_or_default();
    assert!(
        last <= Duration::from_secs(12),
        "the isolated master acknowledged a write {last:?} after the cut"
    );
    // Bounded: at most one write per probe interval (100 ms) until then.
    assert!(p.lost.len() <= 130, "{} lost", p.lost.len());
}

#[test]
fn lost_quorum_is_reported_and_no_failover_is_counted() {
    let _serial = harness::serial();
    let net = Arc::new(Net::new(6).expect("namespaces"));
    let stack = stack(&net, vec![]);
    // sentinel-watch beside the first Sentinel (host 3), which stays reachable.
    let w = Watch::start(&stack, &net.hosts[3]);
    let quorum = |w: &Watch| {
        w.metrics
            .quorum_ok
            .get_or_create(&sentinel_watch::metrics::master(MASTER_NAME))
            .get()
    };
    w.wait(Duration::from_secs(20), "quorum reported ok", |w| {
        quorum(w) == 1
    });
    net.cut(4).expect("cut");
    net.cut(5).expect("cut");
    w.wait(
        Duration::from_secs(20),
        "two Sentinels down, no quorum",
        |w| w.metrics.sentinels_up.get() == 1 && quorum(w) == 0,
    );
    // The master hangs meanwhile: one Sentinel cannot reach +odown with quorum 2.
    stack.master.proc.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(6));
    stack.master.proc.signal(libc::SIGCONT);
    let cfg = w.cfg.clone();
    let healthy = Net::run_in(&net.hosts[3], move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(sentinel_watch::cli::status(&cfg, Default::default()))
    })
    .expect("thread")
    .expect("status");
    assert!(!healthy, "status must exit 1 without quorum");
    assert!(
        w.finished().is_empty(),
        "a failover was counted without quorum"
    );
    assert_eq!(
        named_master(&net, &stack),
        Some((stack.master.host.clone(), stack.master.port))
    );
    net.heal(4).expect("heal");
    net.heal(5).expect("heal");
    w.wait(Duration::from_secs(30), "quorum back", |w| {
        w.metrics.sentinels_up.get() == 3 && quorum(w) == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        w.finished().is_empty(),
        "a failover was counted after healing"
    );
}
