//! Failover figures: for down-after-milliseconds 1000, 2000 and 5000, kill the master 5 times
//! (SIGKILL) and report the median write downtime and lost acknowledged writes measured by
//! sentinel-watch's prober, and the delay between a Sentinel publishing +switch-master (seen by a
//! direct subscriber of our own) and sentinel-watch's event log line for it appearing in the file
//! (a tailer polling every millisecond: an upper bound).
//!
//! Then planned changes of master at the shipped down-after (read from
//! compose/sentinel/sentinel.conf), with the prober writing:
//! `sentinel-watch switchover` against a plain `SENTINEL FAILOVER`, alternating, BENCH_SWITCHOVERS
//! (default 20) of each on the same stack; write downtime and acknowledged writes lost for both.
//!
//! Then the faults at the shipped settings (down-after and the `min-replicas-*` lines, read from
//! compose/sentinel/sentinel.conf and compose/redis/redis.conf) beside stock Sentinel and Redis (down-after 30000 ms, no
//! min-replicas), in the same run: the master SIGKILLed, SIGSTOPped (until a replica is promoted),
//! and cut off by a network partition (root: every node in its own network namespace) with the
//! prober beside it. Each on a fresh stack; write downtime and acknowledged writes lost.
//!
//! `cargo bench -p sentinel-watch --bench failover` (several minutes; BENCH_ONLY=kill,
//! BENCH_ONLY=switchover or BENCH_ONLY=faults runs one part). Prints figures only.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use harness::process::TempDir;
use harness::redis::{RedisOptions, RedisStack};
use sentinel_watch::Config;
use sentinel_watch::metrics::Metrics;
use tokio_util::sync::CancellationToken;

const PW: &str = "bench-pw";
const KILLS: usize = 5;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Earliest time any Sentinel's +switch-master reached a plain subscriber.
fn subscribe(addrs: Vec<String>, seen: Arc<Mutex<Vec<SystemTime>>>) {
    for a in addrs {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let Ok(c) = redis::Client::open(format!("redis://{a}/")) else {
                return;
            };
            let Ok(mut conn) = c.get_connection() else {
                return;
            };
            let mut ps = conn.as_pubsub();
            if ps.subscribe("+switch-master").is_err() {
                return;
            }
            while let Ok(_msg) = ps.get_message() {
                seen.lock().expect("lock").push(SystemTime::now());
            }
        });
    }
}

/// Tails the event log and records when each +switch-master line appears in the file.
fn tail(
    path: std::path::PathBuf,
    appeared: Arc<Mutex<Vec<SystemTime>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut offset = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(text) = std::fs::read_to_string(&path)
                && text.len() > offset
            {
                let now = SystemTime::now();
                let fresh = &text[offset..];
                let complete = fresh.rfind('\n').map_or(0, |i| i + 1);
                for line in fresh[..complete].lines() {
                    if line.contains("name=+switch-master") {
                        appeared.lock().expect("lock").push(now);
                    }
                }
                offset += complete;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

#[path = "../tests/support/mod.rs"]
mod support;

fn config(stack: &RedisStack, log: std::path::PathBuf) -> Config {
    support::config(stack.sentinel_addrs(), PW, &log)
}

/// The lines of a shipped compose file that start with `prefix`.
fn shipped(file: &str, prefix: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../compose")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// `sentinel down-after-milliseconds mymaster N` as shipped.
fn shipped_down_after_ms() -> u64 {
    shipped(
        "sentinel/sentinel.conf",
        "sentinel down-after-milliseconds ",
    )
    .first()
    .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    .expect("compose/sentinel/sentinel.conf sets down-after-milliseconds")
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "kill" {
        kills(&rt);
    }
    if only.is_empty() || only == "switchover" {
        switchovers(&rt);
    }
    if only.is_empty() || only == "faults" {
        faults();
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Stop,
    Partition,
}

/// One fault on a fresh stack in network namespaces (master host 0, prober beside it):
/// (write downtime, acknowledged writes lost), or why not.
fn fault(f: Fault, down_after_ms: u64, extra_conf: Vec<String>) -> Result<(f64, usize), String> {
    use harness::netns::Net;
    let net = Arc::new(Net::new(6).map_err(|e| format!("{e:#}"))?);
    let options = RedisOptions {
        password: Some(PW.into()),
        down_after_ms,
        failover_timeout_ms: 10_000,
        extra_conf,
        net: Some(net.clone()),
        ..Default::default()
    };
    let mut stack = Net::run_in(&net.client, move || RedisStack::start_with(options))
        .map_err(|e| format!("{e:#}"))?
        .map_err(|e| format!("{e:#}"))?;
    let dir = TempDir::new("sw-bench").expect("dir");
    let cfg = config(&stack, dir.path().join("events.log"));
    let old = sentinel_watch::events::Addr {
        ip: stack.master.host.clone(),
        port: stack.master.port,
    };
    // The prober, in the master's namespace.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let prober = Net::spawn_in(&net.hosts[0], {
        let (cfg, old) = (cfg.clone(), old.clone());
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let s = sentinel_watch::probe::Session::start(&cfg, "mymaster").await;
                let _ = started_tx.send(s.is_ok());
                s.ok()?
                    .switch(&old, Duration::from_secs(down_after_ms / 1000 + 90))
                    .await
            })
        }
    })
    .map_err(|e| format!("{e:#}"))?;
    if started_rx.recv() != Ok(true) {
        return Err("the prober could not start".into());
    }
    std::thread::sleep(Duration::from_secs(1));
    // Waits until the Sentinels (asked from the client namespace) name another master.
    let promoted = |within: Duration| -> bool {
        let addrs: Vec<String> = stack.sentinel_addrs();
        let old = old.clone();
        Net::run_in(&net.client, move || {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                for a in &addrs {
                    let asked = redis::Client::open(format!("redis://{a}/"))
                        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                        .and_then(|mut c| {
                            redis::cmd("SENTINEL")
                                .arg("get-master-addr-by-name")
                                .arg("mymaster")
                                .query::<(String, String)>(&mut c)
                        });
                    if let Ok((h, p)) = asked
                        && (h != old.ip || p != old.port.to_string())
                    {
                        return true;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .unwrap_or(false)
    };
    let within = Duration::from_millis(down_after_ms) + Duration::from_secs(60);
    match f {
        Fault::Kill => stack.master.proc.kill(),
        Fault::Stop => {
            stack.master.proc.signal(libc::SIGSTOP);
            let ok = promoted(within);
            stack.master.proc.signal(libc::SIGCONT);
            if !ok {
                return Err("no promotion".into());
            }
        }
        Fault::Partition => {
            net.cut(0).map_err(|e| format!("{e:#}"))?;
            let ok = promoted(within);
            // A partition outlives the failover by a few seconds.
            std::thread::sleep(Duration::from_secs(3));
            net.heal(0).map_err(|e| format!("{e:#}"))?;
            if !ok {
                return Err("no promotion".into());
            }
        }
    }
    let measured = prober
        .join()
        .map_err(|_| "the prober panicked".to_string())?;
    drop(stack);
    measured
        .map(|s| (s.downtime.as_secs_f64(), s.lost.len()))
        .ok_or_else(|| "the prober saw no new master".into())
}

/// The faults at the shipped settings beside stock Sentinel/Redis, same run.
fn faults() {
    if !harness::netns::available() {
        println!("\nfaults: skipped (network namespaces need root)");
        return;
    }
    let conf = shipped("redis/redis.conf", "min-replicas-");
    let down_after = shipped_down_after_ms();
    let label = format!("shipped ({down_after} ms, {})", conf.join(", "));
    println!("\nfaults, prober beside the master (one run each, fresh stack)");
    println!("fault      {:<64} write downtime  lost writes", "settings");
    for f in [Fault::Kill, Fault::Stop, Fault::Partition] {
        for (name, down_after, conf) in [
            (label.as_str(), down_after, conf.clone()),
            ("stock (30000 ms, no min-replicas)", 30_000, vec![]),
        ] {
            match fault(f, down_after, conf) {
                Ok((d, lost)) => println!(
                    "{:<10} {name:<64} {d:>12.2} s  {lost:>11}",
                    format!("{f:?}")
                ),
                Err(e) => println!("{:<10} {name:<64} failed: {e}", format!("{f:?}")),
            }
        }
    }
}

/// Planned changes of master, alternating switchover and plain SENTINEL FAILOVER.
fn switchovers(rt: &tokio::runtime::Runtime) {
    let rounds: usize = std::env::var("BENCH_SWITCHOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let stack = RedisStack::start_with(RedisOptions {
        password: Some(PW.into()),
        down_after_ms: shipped_down_after_ms(),
        failover_timeout_ms: 5000,
        ..Default::default()
    })
    .expect("stack");
    let dir = TempDir::new("sw-bench").expect("dir");
    let cfg = config(&stack, dir.path().join("events.log"));
    let settle = || {
        stack
            .wait_sentinels_agree(Duration::from_secs(60))
            .expect("sentinels settle");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, port) = stack.current_master().expect("master");
            let info = harness::redis::info(port, Some(PW), "replication").unwrap_or_default();
            if info.matches("state=online").count() >= 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not come back online"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Sentinel refuses a new failover while the last one is still being closed (INPROG) or
    // before it has re-read the replicas (NOGOODSLAVE): ask again for up to a minute.
    let retrying = |what: &str, mut attempt: Box<dyn FnMut() -> Result<(), String> + '_>| -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match attempt() {
                Ok(()) => return true,
                Err(e)
                    if (e.contains("INPROG") || e.contains("NOGOODSLAVE"))
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    eprintln!("{what}: {e}");
                    return false;
                }
            }
        }
    };
    let (mut sw_down, mut sw_lost, mut plain_down, mut plain_lost) =
        (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        settle();
        let opts = sentinel_watch::switchover::Options {
            master: "mymaster".into(),
            to: None,
            pause_max: Duration::from_secs(2),
            failover_timeout: Duration::from_secs(15),
            probe: true,
        };
        let mut report = None;
        retrying(
            &format!("switchover {round}"),
            Box::new(|| {
                rt.block_on(sentinel_watch::switchover::run(&cfg, &opts))
                    .map(|r| report = Some(r))
                    .map_err(|e| format!("{e:#}"))
            }),
        );
        if let Some(r) = report
            && let (Some(d), Some(l)) = (r.write_downtime_ms, r.writes_lost)
        {
            sw_down.push(d as f64 / 1000.0);
            sw_lost.push(l as f64);
        }
        settle();
        // The same prober, around a plain SENTINEL FAILOVER.
        let (ip, port) = stack.current_master().expect("master");
        let old = sentinel_watch::events::Addr { ip, port };
        let session = rt
            .block_on(sentinel_watch::probe::Session::start(&cfg, "mymaster"))
            .expect("prober");
        let first = stack.sentinel_addrs()[0].clone();
        let asked = retrying(
            &format!("SENTINEL FAILOVER {round}"),
            Box::new(|| {
                let c =
                    redis::Client::open(format!("redis://{first}/")).map_err(|e| e.to_string())?;
                let mut c = c.get_connection().map_err(|e| e.to_string())?;
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg("mymaster")
                    .query::<String>(&mut c)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
        );
        if !asked {
            rt.block_on(session.stop());
            continue;
        }
        if let Some(sw) = rt.block_on(session.switch(&old, Duration::from_secs(60))) {
            plain_down.push(sw.downtime.as_secs_f64());
            plain_lost.push(sw.lost.len() as f64);
        }
    }
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    println!(
        "\nplanned change of master, down-after {} ms, {rounds} of each, alternating",
        shipped_down_after_ms()
    );
    println!(
        "how                     done  median write downtime  max write downtime  lost writes (total)"
    );
    for (how, down, lost) in [
        ("sentinel-watch switchover", &mut sw_down, &sw_lost),
        ("SENTINEL FAILOVER", &mut plain_down, &plain_lost),
    ] {
        let max = down.iter().copied().fold(0.0, f64::max);
        println!(
            "{how:<25} {:>3}  {:>19.2} s  {:>16.2} s  {:>19}",
            down.len(),
            median(down),
            max,
            sum(lost)
        );
    }
}

/// SIGKILL of the master at three down-after settings.
fn kills(rt: &tokio::runtime::Runtime) {
    println!(
        "down-after  kills  median write downtime  median lost writes  median +switch-master -> log line"
    );
    for down_after in [1000u64, 2000, 5000] {
        let mut stack = RedisStack::start_with(RedisOptions {
            password: Some(PW.into()),
            down_after_ms: down_after,
            failover_timeout_ms: 5000,
            ..Default::default()
        })
        .expect("stack");
        let dir = TempDir::new("sw-bench").expect("dir");
        let log = dir.path().join("events.log");
        let cfg = config(&stack, log.clone());
        let direct = Arc::new(Mutex::new(Vec::new()));
        subscribe(stack.sentinel_addrs(), direct.clone());
        let appeared = Arc::new(Mutex::new(Vec::new()));
        let stop_tail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tail(log.clone(), appeared.clone(), stop_tail.clone());
        let cancel = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = rt.spawn(sentinel_watch::run(
            cfg,
            Metrics::new(),
            cancel.clone(),
            Some(tx),
        ));
        let handle = rt.block_on(rx).expect("handle");
        std::thread::sleep(Duration::from_secs(2));

        let (mut downtime, mut lost, mut delay) = (vec![], vec![], vec![]);
        for kill in 0..KILLS {
            let (_, port) = stack.current_master().expect("master");
            let node = stack
                .data_nodes()
                .find(|n| n.port == port)
                .expect("master node");
            let before = handle.finished.lock().expect("lock").len();
            direct.lock().expect("lock").clear();
            appeared.lock().expect("lock").clear();
            node.proc.kill();
            let deadline = Instant::now() + Duration::from_secs(90);
            while handle.finished.lock().expect("lock").len() == before {
                assert!(Instant::now() < deadline, "failover {kill} did not finish");
                std::thread::sleep(Duration::from_millis(100));
            }
            let f = handle
                .finished
                .lock()
                .expect("lock")
                .last()
                .cloned()
                .expect("failover");
            if let Some(p) = &f.probe {
                downtime.push(p.downtime.as_secs_f64());
                lost.push(p.lost.len() as f64);
            }
            // When the line appeared in the file vs the first direct receipt of the event.
            std::thread::sleep(Duration::from_millis(50));
            let logged = appeared.lock().expect("lock").first().copied();
            let first = direct.lock().expect("lock").iter().min().copied();
            if let (Some(l), Some(d)) = (logged, first) {
                let ms = match l.duration_since(d) {
                    Ok(x) => x.as_secs_f64() * 1000.0,
                    Err(e) => -e.duration().as_secs_f64() * 1000.0,
                };
                delay.push(ms);
            }
            // Bring the killed node back (it rejoins as a replica) and let things settle.
            node.restart().expect("restart");
            stack
                .wait_sentinels_agree(Duration::from_secs(60))
                .expect("sentinels settle");
            std::thread::sleep(Duration::from_secs(2));
        }
        cancel.cancel();
        stop_tail.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = rt.block_on(task);
        println!(
            "{down_after:>7} ms  {:>2} of {KILLS}  {:>18.2} s  {:>18}  {:>26.1} ms",
            downtime.len(),
            median(&mut downtime),
            median(&mut lost),
            median(&mut delay),
        );
    }
}
