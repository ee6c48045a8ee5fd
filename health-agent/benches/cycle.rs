//! One full check cycle against the harness stack (PostgreSQL, PgBouncer, Redis master + 2
//! replicas + 3 Sentinels, a backup catalog, a disk) and the agent's resident memory.
//! `cargo bench -p health-agent --bench cycle`. Prints figures; asserts nothing about speed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::pgbouncer::{self, PgBouncer};
use harness::postgres::{self, Postgres};
use harness::process::TempDir;
use harness::redis::{RedisOptions, RedisStack};

fn main() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");
    let stack = RedisStack::start_with(RedisOptions::default()).expect("redis");
    let dir = TempDir::new("health-bench").expect("dir");
    let catalog = dir.path().join("backups");
    std::fs::create_dir_all(catalog.join("catalog")).expect("catalog");
    let port = harness::process::free_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let mut cfg = format!(
        "listen = \"{listen}\"\ninterval = \"1s\"\nhealth_log = \"{}/health.log\"\n",
        dir.path().display()
    );
    cfg += &format!(
        "[[checks]]\nname = \"postgres\"\nkind = \"postgres\"\n[checks.conn]\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n",
        pg.port,
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD
    );
    cfg += &format!(
        "[[checks]]\nname = \"pgbouncer\"\nkind = \"pgbouncer\"\n[checks.conn]\nport = {}\nuser = \"{}\"\npassword = \"{}\"\ndbname = \"pgbouncer\"\n",
        b.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD
    );
    for (i, n) in std::iter::once(&stack.master)
        .chain(stack.replicas.iter())
        .enumerate()
    {
        cfg += &format!(
            "[[checks]]\nname = \"redis-{i}\"\nkind = \"redis\"\n[checks.conn]\nport = {}\n",
            n.port
        );
    }
    cfg += &format!(
        "[[checks]]\nname = \"sentinel\"\nkind = \"sentinel\"\nsentinels = {:?}\n",
        stack.sentinel_addrs()
    );
    cfg += &format!(
        "[[checks]]\nname = \"backups\"\nkind = \"backups\"\npath = \"{}\"\n",
        catalog.display()
    );
    cfg += &format!(
        "[[checks]]\nname = \"disk\"\nkind = \"disk\"\npaths = [\"{}\"]\n",
        dir.path().display()
    );
    cfg += &format!(
        "[[checks]]\nname = \"tcp\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n",
        pg.port
    );
    let path = dir.path().join("health-agent.toml");
    std::fs::write(&path, cfg).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_health-agent"))
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("health-agent");
    let mut cycles = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last_count = 0.0;
    while cycles.len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let Ok((200, body)) = harness::http::get(&listen, "/metrics") else {
            continue;
        };
        let value = |name: &str| {
            body.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(n), Some(d)) = (
            value("health_cycles_total"),
            value("health_cycle_duration_seconds "),
        ) && n > last_count
        {
            last_count = n;
            cycles.push(d * 1000.0);
        }
    }
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let kib = |f: &str| {
        status
            .lines()
            .find(|l| l.starts_with(f))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let _ = child.kill();
    let _ = child.wait();
    cycles.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| cycles[((cycles.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "health-agent, 9 checks (postgres, pgbouncer, 3 redis, sentinel over 3 Sentinels, backups, disk, tcp), {} cycles:",
        cycles.len()
    );
    println!(
        "  cycle duration p50 {:.1} ms, max {:.1} ms; RSS {:.1} MiB (peak {:.1} MiB)",
        p(0.5),
        p(1.0),
        kib("VmRSS:") / 1024.0,
        kib("VmHWM:") / 1024.0
    );
}
