//! Redis snapshot of 1 million 64-byte string keys (BENCH_KEYS), side by side in the same run
//! with `redis-cli --rdb` against the same replica: wall time, peak memory and stored size, with
//! the server's disk-based and diskless (delay 0) transfer. Prints figures only.
//! Run with `bench/redis-snapshot.sh` (installs GNU time when missing).

use harness::measure::{du, timed};
use harness::process::TempDir;
use harness::redis::{RedisOptions, RedisStack};

const ROUNDS: usize = 3;

fn main() {
    let keys: usize = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let stack = RedisStack::start_with(RedisOptions {
        replicas: 1,
        sentinels: 0,
        ..Default::default()
    })
    .expect("redis");
    fill(&stack, keys);
    let replica = &stack.replicas[0];
    wait_caught_up(stack.master.port, replica.port);
    let ours = env!("CARGO_BIN_EXE_backup-agent");
    println!("Redis 7 replica, {keys} keys of 64-byte values; median of {ROUNDS} rounds per row\n");
    println!(
        "{:<10} {:<36} {:>8} {:>10} {:>12}",
        "transfer", "tool", "seconds", "peak RSS", "stored MiB"
    );
    for diskless in ["no", "yes"] {
        let mut c = replica.conn().expect("conn");
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync")
            .arg(diskless)
            .query(&mut c)
            .expect("config set");
        let label = if diskless == "yes" {
            "diskless"
        } else {
            "disk"
        };
        let port = replica.port.to_string();
        // redis-cli --rdb to a file (to stdout it exits 1 on Redis 6.2+, see the reference).
        let runs: Vec<(f64, u64, u64)> = (0..ROUNDS)
            .map(|_| {
                let dir = TempDir::new("bench-rdb").expect("dir");
                let file = dir.path().join("dump.rdb");
                let (s, kib) = timed(
                    false,
                    "redis-cli",
                    &["-p", &port, "--rdb", &file.display().to_string()],
                    &[],
                );
                (s, kib, du(dir.path()))
            })
            .collect();
        row(label, "redis-cli --rdb (uncompressed)", &runs);
        let runs: Vec<(f64, u64, u64)> = (0..ROUNDS)
            .map(|_| {
                let store = TempDir::new("bench-store").expect("dir");
                let store_s = store.path().display().to_string();
                let (s, kib) = timed(
                    false,
                    ours,
                    &["backup", "redis"],
                    &[
                        ("BACKUP_AGENT_STORAGE__PATH", &store_s),
                        ("BACKUP_AGENT_LOG_FILE", &format!("{store_s}/backup.log")),
                        ("BACKUP_AGENT_REDIS_SNAPSHOT__SOURCE", "address"),
                        ("BACKUP_AGENT_REDIS__PORT", &port),
                    ],
                );
                (s, kib, du(&store.path().join("redis")))
            })
            .collect();
        row(label, "backup-agent backup redis (zstd 3)", &runs);
    }
}

fn row(label: &str, tool: &str, runs: &[(f64, u64, u64)]) {
    let mut secs: Vec<f64> = runs.iter().map(|r| r.0).collect();
    secs.sort_by(f64::total_cmp);
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let size = runs.last().map(|r| r.2).unwrap_or(0);
    println!(
        "{label:<10} {tool:<36} {:>8.2} {:>7.1} MiB {:>12.1}",
        secs[secs.len() / 2],
        rss as f64 / 1024.0,
        size as f64 / (1 << 20) as f64
    );
}

fn fill(stack: &RedisStack, n: usize) {
    let mut c = stack.master.conn().expect("conn");
    let mut pipe = redis::pipe();
    for i in 0..n {
        // 64-byte values, partly repetitive like real payloads.
        let v = format!("{i:016}-{}", "payload-".repeat(6));
        pipe.set(format!("key:{i:08}"), &v[..64]).ignore();
        if i % 10_000 == 9_999 || i + 1 == n {
            let () = pipe.query(&mut c).expect("fill");
            pipe = redis::pipe();
        }
    }
}

fn wait_caught_up(master: u16, replica: u16) {
    let offset = |port, key: &str| {
        harness::redis::info(port, None, "replication")
            .expect("info")
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    for _ in 0..600 {
        if offset(replica, "slave_repl_offset:") >= offset(master, "master_repl_offset:") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("replica did not catch up");
}
