//! Recovery speed: the same archived WAL (a pgbench run) replayed by PostgreSQL with
//! `restore_command` = backup-agent wal-fetch (prefetch off and on, local storage and the
//! harness's S3) beside the serial floor, `zstd -q -dc <store>/wal/%f.zst > %p` (one segment at a
//! time, no process of ours, no checks). Rounds alternate the modes; medians of PostgreSQL's own
//! "redo done ... elapsed" figure, and ratios to the floor. `restore --recover` rounds (the
//! restore process serving the WAL to its temporary server) give the server's figure as the
//! restore prints it; their second column is the whole restore, unpacking included.
//! Prints figures only.
//! Run with `bench/restore.sh` (BENCH_SCALE, default 20; BENCH_SECONDS of pgbench, default 30;
//! BENCH_ROUNDS, default 3).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::postgres::{self, PgOptions, Postgres};
use harness::process::{TempDir, give_to_server_user};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// How a round replays the WAL.
#[derive(Clone, Copy)]
enum Mode {
    Floor,
    WalFetch {
        s3: bool,
        prefetch: usize,
    },
    /// `restore --recover`: the restore process serves the WAL to its temporary server.
    Recover {
        s3: bool,
        prefetch: usize,
    },
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Floor => "zstd -dc floor (local)".into(),
            Mode::WalFetch { s3, prefetch } => format!(
                "wal-fetch prefetch {prefetch} ({})",
                if s3 { "S3" } else { "local" }
            ),
            Mode::Recover { s3, prefetch } => format!(
                "--recover prefetch {prefetch} ({})",
                if s3 { "S3" } else { "local" }
            ),
        }
    }
}

fn main() {
    let scale = env_or("BENCH_SCALE", 20);
    let seconds = env_or("BENCH_SECONDS", 30);
    let rounds = env_or("BENCH_ROUNDS", 3) as usize;
    // BENCH_TRACE=1: time every restore_command call (adds two `date` runs to each).
    let trace = std::env::var_os("BENCH_TRACE").is_some();
    let pg = Postgres::start_with(PgOptions {
        extra_conf: vec!["max_wal_size = 4GB".into(), "shared_buffers = 256MB".into()],
        ..Default::default()
    })
    .expect("postgres");
    let s3 = harness::s3::S3Server::start().expect("s3");
    let port = pg.port.to_string();
    let pgbench = pg.bindir().join("pgbench");
    let bench = |args: &[&str]| {
        let out = Command::new(&pgbench)
            .args(args)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", postgres::APP_USER])
            .arg(postgres::APP_DB)
            .env("PGPASSWORD", postgres::APP_PASSWORD)
            .output()
            .expect("pgbench");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    bench(&["-i", "-q", "-s", &scale.to_string()]);

    let dir = TempDir::new("restore-bench").expect("dir");
    dir.give_to_server_user().expect("chown");
    // The binary where the postgres user can run it (restore_command runs as that user).
    let exe = dir.path().join("backup-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_backup-agent"), &exe).expect("copy");
    let local = dir.path().join("local");
    let s3_conf = dir.path().join("s3.toml");
    std::fs::write(
        &s3_conf,
        format!(
            "log_file = \"/dev/null\"\n[postgres]\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n\
             [wal]\nslot = \"bench_s3\"\nflush_interval = \"500ms\"\n\
             [storage.s3]\nbucket = \"{}\"\nprefix = \"bench\"\nendpoint = \"{}\"\npath_style = true\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            pg.port,
            postgres::REPL_USER,
            postgres::REPL_PASSWORD,
            harness::s3::BUCKET,
            s3.endpoint(),
            harness::s3::ACCESS_KEY,
            harness::s3::SECRET_KEY
        ),
    )
    .expect("config");
    let local_s = local.display().to_string();
    let local_env = [
        ("BACKUP_AGENT_STORAGE__PATH", local_s.as_str()),
        ("BACKUP_AGENT_POSTGRES__PORT", port.as_str()),
        ("BACKUP_AGENT_POSTGRES__USER", postgres::REPL_USER),
        ("BACKUP_AGENT_POSTGRES__PASSWORD", postgres::REPL_PASSWORD),
        ("BACKUP_AGENT_LOG_FILE", "/dev/null"),
        ("BACKUP_AGENT_WAL__SLOT", "bench_local"),
        ("BACKUP_AGENT_WAL__FLUSH_INTERVAL", "500ms"),
        // Restores started by hand run wal-fetch (and the floor's zstd) as postgres, which must
        // read the storage itself.
        ("BACKUP_AGENT_STORAGE__MODE", "0644"),
        ("RUST_LOG", "warn"),
    ];
    let agent = |s3: bool| {
        let mut c = Command::new(&exe);
        if s3 {
            c.arg("--config").arg(&s3_conf);
        } else {
            c.envs(local_env);
        }
        c
    };
    let ok = |mut c: Command| {
        let out = c.output().expect("backup-agent");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // One archiver per storage, as the daemon runs it.
    let mut daemons: Vec<std::process::Child> = [false, true]
        .iter()
        .map(|&s3| {
            let listen = format!("127.0.0.1:{}", harness::process::free_port().expect("port"));
            let mut c = agent(s3);
            c.env("BACKUP_AGENT_LISTEN", listen)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("daemon")
        })
        .collect();
    for s3 in [false, true] {
        let mut c = agent(s3);
        c.args(["backup", "postgres-full"]);
        ok(c);
    }
    bench(&["-c", "4", "-j", "2", "-T", &seconds.to_string()]);
    pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    let want = lsn(&pg.psql_super("SELECT pg_current_wal_lsn()").expect("lsn"));
    let s3_root = s3.root().join(harness::s3::BUCKET).join("bench");
    for store in [&local, &s3_root] {
        wait_archived(store, want);
    }
    for d in &mut daemons {
        let _ = d.kill();
        let _ = d.wait();
    }
    let segments = std::fs::read_dir(local.join("wal"))
        .expect("wal")
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.len() == 28 && n.ends_with(".zst")
        })
        .count();
    let stored: u64 = harness::measure::du(&local.join("wal"));
    println!(
        "pgbench scale {scale}, then -c 4 for {seconds} s: {segments} WAL segments archived ({:.0} MiB stored)",
        stored as f64 / 1048576.0
    );

    let modes = [
        Mode::Floor,
        Mode::WalFetch {
            s3: false,
            prefetch: 0,
        },
        Mode::WalFetch {
            s3: false,
            prefetch: 8,
        },
        Mode::WalFetch {
            s3: true,
            prefetch: 0,
        },
        Mode::WalFetch {
            s3: true,
            prefetch: 8,
        },
        Mode::Recover {
            s3: false,
            prefetch: 8,
        },
        Mode::Recover {
            s3: true,
            prefetch: 8,
        },
    ];
    let mut times: Vec<Vec<(f64, f64)>> = vec![vec![]; modes.len()];
    for round in 0..rounds {
        for (i, mode) in modes.iter().enumerate() {
            let target = dir.path().join(format!("r{round}-{i}"));
            let (s3, prefetch) = match *mode {
                Mode::Floor => (false, 0),
                Mode::WalFetch { s3, prefetch } | Mode::Recover { s3, prefetch } => (s3, prefetch),
            };
            let mut c = agent(s3);
            c.env("BACKUP_AGENT_RESTORE__PREFETCH", prefetch.to_string())
                .args(["restore", "postgres", "--owner", "postgres", "--target-dir"])
                .arg(&target);
            if let Mode::Recover { .. } = mode {
                // The replay time is the server's own, as the restore prints it.
                c.arg("--recover");
                let started = Instant::now();
                let out = c.output().expect("backup-agent");
                let total = started.elapsed().as_secs_f64();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let replay = text
                    .split("WAL replayed in ")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    .and_then(|t| t.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                println!(
                    "  round {round} {:<28} replay {replay:6.2} s, restore to stopped {total:6.2} s",
                    mode.label()
                );
                times[i].push((replay, total));
                let _ = std::fs::remove_dir_all(&target);
                continue;
            }
            ok(c);
            if let Mode::Floor = mode {
                floor_command(&target, &local);
            }
            let calls = dir.path().join(format!("calls-{round}-{i}"));
            if trace {
                trace_command(&target, &calls);
            }
            let conf = target.join("postgresql.conf");
            let text = std::fs::read_to_string(&conf).expect("conf");
            std::fs::write(&conf, format!("{text}\nlog_min_messages = log\n")).expect("conf");
            give_to_server_user(&conf).expect("chown");
            let started = Instant::now();
            let mut restored =
                Postgres::start_existing(&target, Duration::from_secs(600)).expect("recovers");
            let total = started.elapsed().as_secs_f64();
            let log = std::fs::read_to_string(restored.proc().log_path()).unwrap_or_default();
            let replay = backup_agent::restore::recover::redo_elapsed(&log)
                .map_or(f64::NAN, |d| d.as_secs_f64());
            let per_call = if trace {
                let mut ms: Vec<f64> = std::fs::read_to_string(&calls)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse::<f64>().ok())
                    .map(|ns| ns / 1e6)
                    .collect();
                ms.sort_by(f64::total_cmp);
                format!(
                    "; restore_command: {} calls, median {:.1} ms, p90 {:.1} ms, total {:.2} s",
                    ms.len(),
                    ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
                    ms.get(ms.len() * 9 / 10).copied().unwrap_or(f64::NAN),
                    ms.iter().sum::<f64>() / 1e3
                )
            } else {
                String::new()
            };
            println!(
                "  round {round} {:<28} replay {replay:6.2} s, start to promoted {total:6.2} s{per_call}",
                mode.label()
            );
            times[i].push((replay, total));
            drop(restored);
            let _ = std::fs::remove_dir_all(&target);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let floor = median(&times[0].iter().map(|t| t.0).collect::<Vec<_>>());
    println!(
        "\n| restore_command ({segments} segments) | replay s (median of {rounds}) | start to promoted s | × floor |"
    );
    println!("|---|---|---|---|");
    for (i, mode) in modes.iter().enumerate() {
        let r = median(&times[i].iter().map(|t| t.0).collect::<Vec<_>>());
        let t = median(&times[i].iter().map(|t| t.1).collect::<Vec<_>>());
        println!("| {} | {r:.2} | {t:.2} | {:.2} |", mode.label(), r / floor);
    }
    drop(s3);
}

/// Replaces the restore's restore_command with the serial floor.
fn floor_command(target: &Path, store: &Path) {
    let auto = target.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto).expect("auto.conf");
    let kept: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("restore_command") {
                format!(
                    "restore_command = 'zstd -q -dc {}/wal/%f.zst > %p'",
                    store.display()
                )
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&auto, kept.join("\n") + "\n").expect("auto.conf");
}

/// Wraps restore_command so that each call appends its duration (ns) to `calls`.
fn trace_command(target: &Path, calls: &Path) {
    let auto = target.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto).expect("auto.conf");
    let kept: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("restore_command = '") {
            Some(rest) => {
                let cmd = rest.trim_end().trim_end_matches('\'').replace("''", "'");
                let wrapped = format!(
                    "a=$(date +%s%N); {cmd}; r=$?; echo $(( $(date +%s%N) - a )) >> {}; exit $r",
                    calls.display()
                );
                format!("restore_command = '{}'", wrapped.replace('\'', "''"))
            }
            None => l.to_string(),
        })
        .collect();
    std::fs::write(&auto, kept.join("\n") + "\n").expect("auto.conf");
    std::fs::write(calls, b"").expect("calls");
    give_to_server_user(calls).expect("chown");
}

fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.trim().split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).expect("hex") << 32) | u64::from_str_radix(lo, 16).expect("hex")
}

/// Waits until the archiver writing into `store` (a directory) has flushed WAL up to `want`.
fn wait_archived(store: &Path, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let flushed = std::fs::read(store.join("catalog/wal-status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["flushed_lsn"].as_str().map(lsn));
        if flushed.is_some_and(|f| f >= want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "WAL not archived to {want:X} in {}",
            store.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
