//! Full backup and restore of a pgbench database (~1 GB at the default scale 70), side by side in
//! the same run with `pg_basebackup -Ft -X fetch` (zstd 3, compressed by the client and by the
//! server), the server's send rate and pgBackRest (zst level 3); backup-agent with the server
//! compressing (its default) and with `compression.server = false`; then the archiver's WAL lag
//! while pgbench writes. Prints figures only (BENCH_ROUNDS alternating rounds, default 5).
//! Run with `bench/backup-agent.sh` (installs pgbackrest, zstd and GNU time when missing).

use std::process::Command;
use std::time::{Duration, Instant};

use harness::measure::{du, timed};
use harness::postgres::{self, PgOptions, Postgres};
use harness::process::{TempDir, give_to_server_user};

fn main() {
    let scale: u32 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(70);
    let pg = Postgres::start_with(PgOptions {
        extra_conf: vec!["max_wal_size = 4GB".into(), "shared_buffers = 256MB".into()],
        ..Default::default()
    })
    .expect("postgres");
    let port = pg.port.to_string();
    let pgbench = pg.bindir().join("pgbench");
    let out = Command::new(&pgbench)
        .args([
            "-i",
            "-q",
            "-s",
            &scale.to_string(),
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            postgres::APP_USER,
            postgres::APP_DB,
        ])
        .env("PGPASSWORD", postgres::APP_PASSWORD)
        .output()
        .expect("pgbench -i");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.psql_super("CHECKPOINT").expect("checkpoint");
    let db_size = pg
        .psql_super("SELECT pg_database_size('app')")
        .expect("size")
        .trim()
        .parse::<u64>()
        .unwrap_or(0);
    println!(
        "pgbench scale {scale}: database {:.0} MiB",
        db_size as f64 / 1048576.0
    );

    let dir = TempDir::new("backup-bench").expect("dir");
    dir.give_to_server_user().expect("chown");
    let ours = env!("CARGO_BIN_EXE_backup-agent");
    let unset = String::new();
    let mut env = [
        ("BACKUP_AGENT_STORAGE__PATH", unset.as_str()),
        ("BACKUP_AGENT_POSTGRES__PORT", port.as_str()),
        ("BACKUP_AGENT_POSTGRES__USER", postgres::REPL_USER),
        ("BACKUP_AGENT_POSTGRES__PASSWORD", postgres::REPL_PASSWORD),
        ("BACKUP_AGENT_LOG_FILE", "/dev/null"),
        ("RUST_LOG", "warn"),
    ];
    let mut rows = vec![];

    // backup-agent and pg_basebackup, alternating, BENCH_ROUNDS times each (the machine is
    // noisy): medians. Both with their defaults for durability (fsync of what they wrote).
    // backup-agent with its default (the server compresses, zstd 3 with compression.threads
    // workers) and with compression.server = false (backup-agent compresses); pg_basebackup
    // compressing in the client (the usual way) and in the server with the same workers.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let workers = match std::thread::available_parallelism().map(usize::from) {
        Ok(n) if n > 1 => n.min(16),
        _ => 0,
    };
    let pbb_bin = pg.bindir().join("pg_basebackup");
    let pbb_bin = pbb_bin.to_str().expect("utf8");
    let pbb_args = |d: &str, compress: &str| -> Vec<String> {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            postgres::REPL_USER,
            "-D",
            d,
            "-Ft",
            "--compress",
            compress,
            "-X",
            "fetch",
            "-c",
            "fast",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let server_zstd = if workers > 0 {
        format!("server-zstd:level=3,workers={workers}")
    } else {
        "server-zstd:level=3".into()
    };
    // The floor: the server's send rate, with nothing compressed or written (the tar to
    // /dev/null, no WAL). A backup can go no faster than this.
    let floor_cmd = format!(
        "{pbb_bin} -h 127.0.0.1 -p {port} -U {} -D - -Ft -X none -c fast > /dev/null",
        postgres::REPL_USER
    );
    let pw = [("PGPASSWORD", postgres::REPL_PASSWORD)];
    // (name, runs): the first round's stores are kept for the restores below.
    let mut runs: Vec<(&str, Vec<(f64, u64)>)> = [
        "backup-agent (server zstd 3, default)",
        "backup-agent (compression.server = false)",
        "pg_basebackup -Ft client-zstd:3 -X fetch",
        "pg_basebackup -Ft server-zstd:3 -X fetch",
        "floor",
    ]
    .map(|n| (n, vec![]))
    .to_vec();
    for round in 0..rounds {
        let path = |what: &str| dir.path().join(format!("{what}-{round}"));
        for (i, on_server) in [(0, "true"), (1, "false")] {
            let s = path(&format!("ours{i}"));
            let s = s.display().to_string();
            let mut env_r = env.to_vec();
            env_r[0] = ("BACKUP_AGENT_STORAGE__PATH", s.as_str());
            env_r.push(("BACKUP_AGENT_COMPRESSION__SERVER", on_server));
            runs[i]
                .1
                .push(timed(false, ours, &["backup", "postgres-full"], &env_r));
        }
        for (i, compress) in [(2, "client-zstd:3"), (3, server_zstd.as_str())] {
            let d = path(&format!("pbb{i}")).display().to_string();
            let args = pbb_args(&d, compress);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            runs[i].1.push(timed(false, pbb_bin, &args, &pw));
        }
        runs[4].1.push(timed(false, "sh", &["-c", &floor_cmd], &pw));
        if round > 0 {
            for what in ["ours0", "ours1", "pbb2", "pbb3"] {
                let _ = std::fs::remove_dir_all(path(what));
            }
        }
    }
    let median = |runs: &[(f64, u64)]| {
        let mut t: Vec<f64> = runs.iter().map(|r| r.0).collect();
        t.sort_by(f64::total_cmp);
        (t[t.len() / 2], runs.iter().map(|r| r.1).max().unwrap_or(0))
    };
    let store = dir.path().join("ours0-0");
    let pbb = dir.path().join("pbb2-0");
    let store_s = store.display().to_string();
    env[0] = ("BACKUP_AGENT_STORAGE__PATH", store_s.as_str());
    let (b, bm) = median(&runs[0].1);
    let list = Command::new(ours)
        .arg("list")
        .envs(env)
        .output()
        .expect("list");
    let id = String::from_utf8_lossy(&list.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let target = dir.path().join("ours-restore");
    let t = target.display().to_string();
    let (r, rm) = timed(
        false,
        ours,
        &["restore", "postgres", "--backup", &id, "--target-dir", &t],
        &env,
    );
    rows.push((runs[0].0, b, bm, du(&store), r, rm));
    let (b, bm) = median(&runs[1].1);
    rows.push((
        runs[1].0,
        b,
        bm,
        du(&dir.path().join("ours1-0")),
        f64::NAN,
        0,
    ));

    let (b, bm) = median(&runs[2].1);
    let pbb_restore = dir.path().join("pbb-restore");
    std::fs::create_dir_all(&pbb_restore).expect("dir");
    let script = format!(
        "tar -I zstd -xf {0}/base.tar.zst -C {1} && (test ! -f {0}/pg_wal.tar.zst || tar -I zstd -xf {0}/pg_wal.tar.zst -C {1}/pg_wal)",
        pbb.display(),
        pbb_restore.display()
    );
    let (r, rm) = timed(false, "sh", &["-c", &script], &[]);
    rows.push((runs[2].0, b, bm, du(&pbb), r, rm));
    let (b, bm) = median(&runs[3].1);
    rows.push((
        runs[3].0,
        b,
        bm,
        du(&dir.path().join("pbb3-0")),
        f64::NAN,
        0,
    ));
    let medians: Vec<f64> = runs.iter().map(|(_, r)| median(r).0).collect();

    // pgBackRest
    let repo = dir.path().join("pgbackrest");
    std::fs::create_dir_all(repo.join("repo")).expect("repo");
    std::fs::create_dir_all(repo.join("log")).expect("log");
    std::fs::create_dir_all(repo.join("lock")).expect("lock");
    let conf = repo.join("pgbackrest.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={0}/repo\ncompress-type=zst\ncompress-level=3\nlog-level-console=warn\nlog-path={0}/log\nlock-path={0}/lock\nstart-fast=y\narchive-check=n\n\n[bench]\npg1-path={1}\npg1-port={2}\npg1-socket-path={3}\npg1-user=postgres\n",
            repo.display(),
            pg.data_dir().display(),
            pg.port,
            pg.dir().display()
        ),
    )
    .expect("conf");
    for p in [
        &repo,
        &repo.join("repo"),
        &repo.join("log"),
        &repo.join("lock"),
        &conf,
    ] {
        give_to_server_user(p).expect("chown");
    }
    let c = format!("--config={}", conf.display());
    timed(
        true,
        "pgbackrest",
        &[&c, "--stanza=bench", "stanza-create"],
        &[],
    );
    let (b, bm) = timed(
        true,
        "pgbackrest",
        &[&c, "--stanza=bench", "--type=full", "backup"],
        &[],
    );
    let pgbr_restore = dir.path().join("pgbr-restore");
    std::fs::create_dir_all(&pgbr_restore).expect("dir");
    give_to_server_user(&pgbr_restore).expect("chown");
    let (r, rm) = timed(
        true,
        "pgbackrest",
        &[
            &c,
            "--stanza=bench",
            &format!("--pg1-path={}", pgbr_restore.display()),
            "--type=immediate",
            "restore",
        ],
        &[],
    );
    rows.push((
        "pgBackRest 2.45 (zst 3)",
        b,
        bm,
        du(&repo.join("repo")),
        r,
        rm,
    ));

    println!(
        "same database, same run, local disk; backup = median of {rounds} alternating runs, each tool fsyncing what it wrote (its default); server-side zstd with {workers} workers; restore = unpack only (no WAL replay)"
    );
    println!(
        "the server's send rate (pg_basebackup -D - -Ft -X none to /dev/null: nothing compressed or written): {:.2} s",
        medians[4]
    );
    println!(
        "{:<42} {:>9} {:>12} {:>11} {:>10} {:>12}",
        "tool", "backup s", "backup MiB", "stored MiB", "restore s", "restore MiB"
    );
    for (name, b, bm, size, r, rm) in rows {
        println!(
            "{name:<42} {b:>9.2} {:>12.1} {:>11.1} {r:>10.2} {:>12.1}",
            bm as f64 / 1024.0,
            size as f64 / 1048576.0,
            rm as f64 / 1024.0
        );
    }
    println!(
        "backup time / pg_basebackup client-zstd:3: backup-agent {:.2}, with compression.server = false {:.2}; pg_basebackup server-zstd {:.2}; floor {:.2}",
        medians[0] / medians[2],
        medians[1] / medians[2],
        medians[3] / medians[2],
        medians[4] / medians[2],
    );

    // WAL lag while pgbench writes: the daemon's archiver with flush_interval 500ms (default 10s: the data at risk is what an operator chooses).
    let listen = harness::process::free_port().expect("port");
    let lag_store = dir.path().join("lag");
    let lag_s = lag_store.display().to_string();
    let addr = format!("127.0.0.1:{listen}");
    let mut daemon = Command::new(ours)
        .envs([
            ("BACKUP_AGENT_STORAGE__PATH", lag_s.as_str()),
            ("BACKUP_AGENT_POSTGRES__PORT", port.as_str()),
            ("BACKUP_AGENT_POSTGRES__USER", postgres::REPL_USER),
            ("BACKUP_AGENT_POSTGRES__PASSWORD", postgres::REPL_PASSWORD),
            ("BACKUP_AGENT_LOG_FILE", "/dev/null"),
            ("BACKUP_AGENT_WAL__FLUSH_INTERVAL", "500ms"),
            ("BACKUP_AGENT_WAL__SLOT", "bench_lag"),
            ("BACKUP_AGENT_LISTEN", addr.as_str()),
            ("RUST_LOG", "warn"),
        ])
        .spawn()
        .expect("daemon");
    std::thread::sleep(Duration::from_secs(3));
    let mut load = Command::new(&pgbench)
        .args([
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            "20",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            postgres::APP_USER,
            postgres::APP_DB,
        ])
        .env("PGPASSWORD", postgres::APP_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pgbench");
    let (mut secs, mut bytes, mut rss) = (vec![], vec![], 0f64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(19) {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok((200, body)) = harness::http::get(&addr, "/metrics") {
            let v = |n: &str| {
                body.lines()
                    .find(|l| l.starts_with(n))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|x| x.parse::<f64>().ok())
            };
            if let (Some(s), Some(b)) = (
                v("backup_agent_wal_lag_seconds "),
                v("backup_agent_wal_lag_bytes "),
            ) {
                secs.push(s);
                bytes.push(b);
            }
        }
        let st =
            std::fs::read_to_string(format!("/proc/{}/status", daemon.id())).unwrap_or_default();
        if let Some(k) = st
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
        {
            rss = rss.max(k / 1024.0);
        }
    }
    let _ = load.wait();
    let _ = daemon.kill();
    let _ = daemon.wait();
    secs.sort_by(|a, b| a.total_cmp(b));
    bytes.sort_by(|a, b| a.total_cmp(b));
    let p = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "WAL archiver under pgbench -c 4 (flush_interval 500ms, {} samples): lag p50 {:.2} s, max {:.2} s; lag p50 {:.0} KiB, max {:.0} KiB; daemon peak RSS {rss:.1} MiB",
        secs.len(),
        p(&secs, 0.5),
        p(&secs, 1.0),
        p(&bytes, 0.5) / 1024.0,
        p(&bytes, 1.0) / 1024.0
    );
}
