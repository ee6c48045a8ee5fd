//! Redis snapshots against the harness's real Redis master, replicas and Sentinels: pulled from a
//! replica found through Sentinel (diskless and disk-based), restored into a new redis-server
//! with every key equal; the master when no replica is healthy; a replica killed mid-transfer
//! fails the job with nothing listed; a damaged object is caught by verify and by restore.
// Each test holds harness::serial() for its whole run on purpose: one Redis stack at a time.
#![allow(clippy::await_holding_lock)]

use std::path::Path;
use std::time::Duration;

use backup_agent::compress::Codec;
use backup_agent::config::{Config, SnapshotSource};
use backup_agent::storage::Storage;
use common::catalog::BackupKind;
use common::{RedisSettings, Secret};
use harness::process::TempDir;
use harness::redis::{RedisOptions, RedisStack};

const PASSWORD: &str = "redis-test-pw";

/// A master, 2 replicas and 3 Sentinels with a password. `down_after_ms` must outlast the
/// longest command the test runs (DEBUG DIGEST of 300k keys blocks for a while).
fn stack(down_after_ms: u64) -> RedisStack {
    RedisStack::start_with(RedisOptions {
        password: Some(PASSWORD.into()),
        down_after_ms,
        extra_conf: vec!["enable-debug-command yes".to_string()],
        ..Default::default()
    })
    .expect("redis stack")
}

fn config(stack: &RedisStack, store: &Path) -> Config {
    let mut c = Config {
        redis: RedisSettings {
            port: stack.master.port,
            password: Some(Secret::new(PASSWORD)),
            ..RedisSettings::default()
        },
        log_file: store.join("logs/backup.log"),
        ..Config::default()
    };
    c.storage.path = store.to_path_buf();
    c.redis_snapshot.sentinels = stack.sentinel_addrs();
    c.redis_snapshot.idle_timeout = Duration::from_secs(20);
    c
}

/// `n` keys of every type: strings, hashes, lists, sets, sorted sets, with TTLs on some.
fn fill(stack: &RedisStack, n: usize) {
    let mut c = stack.master.conn().expect("conn");
    let mut pipe = redis::pipe();
    for i in 0..n {
        match i % 5 {
            0 => pipe.set(
                format!("s:{i}"),
                format!("value-{i}-{}", "x".repeat(i % 40)),
            ),
            1 => pipe.hset_multiple(
                format!("h:{i}"),
                &[("a", i.to_string()), ("b", format!("b{i}"))],
            ),
            2 => pipe.rpush(format!("l:{i}"), vec![i, i + 1, i + 2]),
            3 => pipe.sadd(format!("z:{i}"), vec![format!("m{i}"), "common".into()]),
            _ => pipe.zadd(format!("o:{i}"), format!("m{i}"), i as f64 / 3.0),
        }
        .ignore();
        if i % 1000 == 0 {
            pipe.expire(format!("s:{}", i - i % 5), 86_400).ignore();
        }
        if i % 10_000 == 9_999 || i + 1 == n {
            let () = pipe.query(&mut c).expect("fill");
            pipe = redis::pipe();
        }
    }
}

fn digest(c: &mut redis::Connection) -> (String, u64) {
    let d: String = redis::cmd("DEBUG").arg("DIGEST").query(c).expect("digest");
    let n: u64 = redis::cmd("DBSIZE").query(c).expect("dbsize");
    (d, n)
}

/// Waits until every replica has the master's offset (the replica snapshot has every key).
fn replicas_caught_up(stack: &RedisStack) {
    let offset = |port| {
        let info = harness::redis::info(port, Some(PASSWORD), "replication").expect("info");
        info.lines()
            .find_map(|l| {
                l.strip_prefix("master_repl_offset:")
                    .or_else(|| l.strip_prefix("slave_repl_offset:"))
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = offset(stack.master.port);
        if stack.replicas.iter().all(|r| offset(r.port) >= m) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "replicas lag");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_all(stack: &RedisStack, key: &str, value: &str) {
    set_on(
        std::iter::once(&stack.master).chain(&stack.replicas),
        key,
        value,
    );
}

/// `CONFIG SET key value` on each node.
fn set_on<'a>(nodes: impl Iterator<Item = &'a harness::redis::Node>, key: &str, value: &str) {
    for node in nodes {
        let mut c = node.conn().expect("conn");
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query(&mut c)
            .expect("config set");
    }
}

async fn snapshot(cfg: &Config) -> anyhow::Result<common::catalog::Manifest> {
    let ctx = backup_agent::context::Ctx::for_command(cfg.clone(), Default::default()).await?;
    backup_agent::jobs::redis(&ctx).await
}

/// Restores snapshot `id` into a new dir, starts redis-server on it, returns (digest, keys).
fn restore_and_load(store: &Path, id: &str) -> (String, u64) {
    let dir = TempDir::new("redis-restore").expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backup-agent"))
        .args(["restore", "redis", "--target-dir"])
        .arg(dir.path())
        .args(["--backup", id])
        .env("BACKUP_AGENT_STORAGE__PATH", store)
        .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "restore redis: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = harness::redis::start_standalone(
        dir.path(),
        None,
        &["enable-debug-command yes".to_string()],
    )
    .expect("redis on the restored dump.rdb");
    let mut c = node.conn().expect("conn");
    let got = digest(&mut c);
    let v: String = redis::cmd("GET").arg("s:0").query(&mut c).expect("get");
    assert_eq!(v, "value-0-");
    let ttl: i64 = redis::cmd("TTL").arg("s:0").query(&mut c).expect("ttl");
    assert!(ttl > 80_000, "TTL kept: {ttl}");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_a_replica_restores_every_key_diskless_and_not() {
    let _serial = harness::serial();
    let stack = tokio::task::spawn_blocking(|| {
        let s = stack(30_000);
        fill(&s, 300_000);
        replicas_caught_up(&s);
        s
    })
    .await
    .expect("join");
    let store = TempDir::new("redis-store").expect("dir");
    let cfg = config(&stack, store.path());
    let source = digest(&mut stack.master.conn().expect("conn"));
    assert_eq!(source.1, 300_000);

    let mut ids = vec![];
    for diskless in ["yes", "no"] {
        set_all(&stack, "repl-diskless-sync", diskless);
        let m = snapshot(&cfg).await.expect("snapshot");
        assert_eq!(m.kind, BackupKind::Redis);
        assert_eq!(m.info["source_role"], "replica", "{:?}", m.info);
        let replica_ports: Vec<String> = stack
            .replicas
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port))
            .collect();
        assert!(replica_ports.contains(&m.info["source"]), "{:?}", m.info);
        assert_eq!(m.info["diskless"], (diskless == "yes").to_string());
        assert_eq!(m.info["rdb_checksum"], "crc64");
        // Every record walked: the keys the source holds (and the prober-free stack has no others).
        assert_eq!(
            m.info["rdb_walked"], "keys=300000 databases=1",
            "{:?}",
            m.info
        );
        ids.push(m.id.clone());
        // Ids are per second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let store_path = store.path().to_path_buf();
    for id in ids.clone() {
        let p = store_path.clone();
        let got = tokio::task::spawn_blocking(move || restore_and_load(&p, &id))
            .await
            .expect("join");
        assert_eq!(got, source, "restored dataset differs from the source");
    }
    // The CLI lists them and verify passes; the job log has start and end lines.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backup-agent"))
        .arg("verify")
        .env("BACKUP_AGENT_STORAGE__PATH", store.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(" ok ").count(), 2, "{text}");
    assert_eq!(text.matches("walked: keys=300000").count(), 2, "{text}");
    let log = std::fs::read_to_string(store.path().join("logs/backup.log")).expect("log");
    assert_eq!(log.matches("job=redis outcome=ok").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_when_no_replica_is_healthy_and_damage_is_caught() {
    let _serial = harness::serial();
    let mut stack = tokio::task::spawn_blocking(|| {
        let s = stack(1000);
        fill(&s, 20_000);
        s
    })
    .await
    .expect("join");
    for r in &mut stack.replicas {
        r.proc.kill();
    }
    // Sentinel flags them down after down-after (1 s).
    let sentinel = stack.sentinels[0].port;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let flags = tokio::task::spawn_blocking(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{sentinel}/"))
                .and_then(|c| c.get_connection())
                .expect("sentinel");
            let rs: Vec<Vec<String>> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(harness::redis::MASTER_NAME)
                .query(&mut c)
                .expect("replicas");
            rs.iter()
                .filter(|r| r.iter().any(|v| v.contains("s_down")))
                .count()
        })
        .await
        .expect("join");
        if flags == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replicas not flagged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = TempDir::new("redis-store").expect("dir");
    let cfg = config(&stack, store.path());
    let m = snapshot(&cfg).await.expect("snapshot");
    assert_eq!(m.info["source_role"], "master", "{:?}", m.info);
    assert_eq!(m.info["source"], format!("127.0.0.1:{}", stack.master.port));

    // A wrong password is a clear failure, nothing listed.
    let mut bad = cfg.clone();
    bad.redis.password = Some(Secret::new("wrong"));
    let e = snapshot(&bad).await.expect_err("wrong password");
    assert!(format!("{e:#}").contains("AUTH refused"), "{e:#}");
    // An ACL user with just SYNC and REPLCONF can take snapshots; one without is told what it
    // lacks.
    {
        let mut c = stack.master.conn().expect("conn");
        for rules in [
            vec!["backup", "on", ">backup-pw", "+sync", "+replconf"],
            vec!["nosync", "on", ">nosync-pw", "+ping"],
        ] {
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(rules)
                .query(&mut c)
                .expect("acl");
        }
    }
    let mut acl = cfg.clone();
    acl.redis_snapshot.source = SnapshotSource::Address;
    acl.redis.username = Some("backup".into());
    acl.redis.password = Some(Secret::new("backup-pw"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m2 = snapshot(&acl).await.expect("ACL user snapshot");
    assert_eq!(m2.info["source_role"], "address");
    acl.redis.username = Some("nosync".into());
    acl.redis.password = Some(Secret::new("nosync-pw"));
    let e = snapshot(&acl).await.expect_err("no SYNC permission");
    assert!(
        format!("{e:#}").contains("needs the SYNC and REPLCONF"),
        "{e:#}"
    );
    // Only the first snapshot is checked below.
    std::fs::remove_file(store.path().join(BackupKind::Redis.manifest_key(&m2.id)))
        .expect("forget the second snapshot");

    // Damage one stored byte: verify and restore both refuse, naming the object.
    let obj = store.path().join(&m.objects[0].key);
    harness::process::damage(&obj, 0x40);
    let storage = Storage::local(store.path());
    let v = backup_agent::verify::verify(&storage, &Codec::reader(&cfg).expect("codec"), None)
        .await
        .expect("verify");
    assert_eq!(v.len(), 1);
    let problem = v[0].problem.clone().expect("damage found");
    assert!(
        problem.contains("damaged") || problem.contains("CRC"),
        "{problem}"
    );
    let dir = TempDir::new("redis-restore").expect("dir");
    let e = backup_agent::redis_snapshot::restore(
        &storage,
        &Codec::reader(&cfg).expect("codec"),
        None,
        dir.path(),
    )
    .await
    .expect_err("damaged restore");
    assert!(format!("{e:#}").contains(&m.objects[0].key), "{e:#}");
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "a failed restore leaves nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_mid_transfer_fails_cleanly() {
    let _serial = harness::serial();
    let mut stack = tokio::task::spawn_blocking(|| {
        let s = stack(30_000);
        fill(&s, 50_000);
        replicas_caught_up(&s);
        s
    })
    .await
    .expect("join");
    // Slow, streamed transfers: 100 µs per key is ~5 s for the whole set.
    set_all(&stack, "repl-diskless-sync", "yes");
    set_all(&stack, "rdb-key-save-delay", "100");
    let store = TempDir::new("redis-store").expect("dir");
    let mut cfg = config(&stack, store.path());
    cfg.redis_snapshot.source = SnapshotSource::Address;
    cfg.redis.port = stack.replicas[0].port;
    let job = {
        let cfg = cfg.clone();
        tokio::spawn(async move { snapshot(&cfg).await })
    };
    // Kill the replica once the transfer is under way (the object is being written).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let partial = walk(store.path())
            .into_iter()
            .any(|(p, _)| p.contains(".partial-"));
        if partial {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "transfer never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!job.is_finished(), "the transfer was meant to take ~5 s");
    stack.replicas[0].proc.kill();
    let e = job.await.expect("join").expect_err("killed mid-transfer");
    let msg = format!("{e:#}");
    assert!(msg.contains("diskless snapshot"), "{msg}");
    let storage = Storage::local(store.path());
    assert!(
        storage
            .catalog()
            .await
            .expect("catalog")
            .manifests
            .is_empty(),
        "a failed snapshot is never listed"
    );
    // The failed job removed its own partial object (a killed process leaves it to cleanup:
    // tests/postgres.rs); the next snapshot, from the other replica, succeeds.
    assert!(
        walk(store.path())
            .iter()
            .all(|(p, _)| !p.contains(".partial-")),
        "{:?}",
        walk(store.path())
    );
    let log = std::fs::read_to_string(&cfg.log_file).expect("log");
    assert!(log.contains("job=redis outcome=failed"), "{log}");
    // The killed replica is gone: set it back on the others.
    set_on(
        std::iter::once(&stack.master).chain(&stack.replicas[1..]),
        "rdb-key-save-delay",
        "0",
    );
    cfg.redis.port = stack.replicas[1].port;
    let m = snapshot(&cfg).await.expect("next snapshot");
    assert_eq!(
        m.info["source"],
        format!("127.0.0.1:{}", stack.replicas[1].port)
    );

    // A disk-based save that takes seconds: the server sends keepalive newlines until the
    // payload starts; they are skipped and the snapshot is whole.
    let alive = || std::iter::once(&stack.master).chain(&stack.replicas[1..]);
    set_on(alive(), "repl-diskless-sync", "no");
    set_on(alive(), "rdb-key-save-delay", "40");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = snapshot(&cfg).await.expect("snapshot after a slow save");
    set_on(alive(), "rdb-key-save-delay", "0");
    assert_eq!(m.info["diskless"], "false");
    let waited: u64 = m.info["server_wait_ms"].parse().expect("ms");
    assert!(
        waited >= 1500,
        "the save was meant to take ~2 s: {:?}",
        m.info
    );
    assert_eq!(m.info["rdb_checksum"], "crc64");
}

/// Every file below `dir` with its size.
fn walk(dir: &Path) -> Vec<(String, u64)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let n = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((p.display().to_string(), n));
            }
        }
    }
    out
}
