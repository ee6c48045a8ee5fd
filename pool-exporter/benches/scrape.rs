//! Scrape latency and memory of pool-exporter against one PgBouncer with 500 pools, side by side
//! with spreaker's prometheus-pgbouncer-exporter (Python) on the same PgBouncer in the same run.
//! Run it with `bench/pool-exporter.sh` (it raises the fd limit and installs the Python exporter).
//! Prints figures; asserts nothing about speed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::pgbouncer::{self, PgBouncer, PgBouncerOptions};
use harness::postgres::{self, PgOptions, Postgres};

const POOLS: usize = 500;
const SCRAPES: usize = 1000;

struct Running {
    name: &'static str,
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_http(addr: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(harness::http::get(addr, path), Ok((200, _))) {
        assert!(Instant::now() < deadline, "{addr}{path} never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn measure(r: &Running) -> String {
    for _ in 0..20 {
        let _ = harness::http::get(&r.addr, "/metrics");
    }
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    let mut series = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        let (status, body) = harness::http::get(&r.addr, "/metrics").expect("scrape");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{}: {body}", r.name);
        bytes = body.len();
        series = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    format!(
        "{:<44} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>9.1} {:>9} {:>8}",
        r.name,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        mean,
        rss_kib(r.child.id(), "VmRSS:") as f64 / 1024.0,
        rss_kib(r.child.id(), "VmHWM:") as f64 / 1024.0,
        bytes / 1024,
        series
    )
}

fn main() {
    let pg = Postgres::start_with(PgOptions {
        extra_conf: vec![
            "max_connections = 700".into(),
            "shared_buffers = 64MB".into(),
        ],
        ..Default::default()
    })
    .expect("postgres");
    let mut databases: Vec<String> = (0..POOLS)
        .map(|i| {
            format!(
                "db_{i} = host=127.0.0.1 port={} dbname={}",
                pg.port,
                postgres::APP_DB
            )
        })
        .collect();
    databases.push(format!(
        "{0} = host=127.0.0.1 port={1} dbname={0}",
        postgres::APP_DB,
        pg.port
    ));
    let b = PgBouncer::start_with(
        &pg,
        PgBouncerOptions {
            databases,
            default_pool_size: 1,
            max_client_conn: 1200,
            extra: vec![],
        },
    )
    .expect("pgbouncer");

    // One client per database makes the 500 pools exist (and 500 clients to list).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _clients = rt.block_on(async {
        let mut clients = Vec::new();
        for i in 0..POOLS {
            let conninfo = format!(
                "host=127.0.0.1 port={} user={} password={} dbname=db_{i}",
                b.port,
                postgres::APP_USER,
                postgres::APP_PASSWORD
            );
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .expect("client connects");
            tokio::spawn(conn);
            client.simple_query("SELECT 1").await.expect("query");
            clients.push(client);
        }
        clients
    });
    let pools = b.admin("SHOW POOLS").expect("pools").lines().count();
    println!(
        "PgBouncer on :{} with {pools} pools and {POOLS} clients",
        b.port
    );

    // Where the time goes, in-process: the SHOW round trips, building families, rendering text.
    let target = pool_exporter::target::TargetState::new(pool_exporter::config::Target {
        name: "main".into(),
        admin: common::PgSettings {
            port: b.port,
            user: pgbouncer::STATS_USER.into(),
            password: Some(common::Secret::new(pgbouncer::STATS_PASSWORD)),
            dbname: "pgbouncer".into(),
            ..Default::default()
        },
        ..Default::default()
    });
    let (mut t_show, mut t_collect, mut t_render) = (vec![], vec![], vec![]);
    rt.block_on(async {
        for _ in 0..200 {
            let t = Instant::now();
            let s = target.scrape().await;
            t_show.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(s.up(), "{:?}", s.error);
            let t = Instant::now();
            let f = pool_exporter::collect::collect(&s.snapshot, &target.labels);
            t_collect.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let text = pool_exporter::exposition::render(&f);
            t_render.push(t.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(text);
        }
    });
    for (what, v) in [
        ("10 SHOW commands", &mut t_show),
        ("collect", &mut t_collect),
        ("render", &mut t_render),
    ] {
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "in-process {what:<18} p50 {:>6.2} ms  p99 {:>6.2} ms",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }

    // The floor: the same commands through psql (libpq, C), one after another, median of 20 each.
    let mut floor = 0.0;
    let mut each = vec![];
    for cmd in pool_exporter::collect::COMMANDS {
        let out = Command::new(pg.bindir().join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &b.port.to_string()])
            .args([
                "-U",
                pgbouncer::STATS_USER,
                "pgbouncer",
                "-c",
                "\\timing on",
                "-c",
                "\\o /dev/null",
            ])
            .args(std::iter::repeat_n(["-c".to_string(), format!("SHOW {cmd}")], 20).flatten())
            .env("PGPASSWORD", pgbouncer::STATS_PASSWORD)
            .output()
            .expect("psql");
        let mut v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("Time: ")?.strip_suffix(" ms")?.parse().ok())
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        if !v.is_empty() {
            floor += percentile(&v, 0.5);
            each.push(format!("{cmd} {:.2}", percentile(&v, 0.5)));
        }
    }
    println!("psql (libpq) running the same 10 SHOW commands one after another: {floor:.2} ms");
    println!("  median per command, ms: {}", each.join(", "));

    let header = format!(
        "{:<44} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "exporter", "p50 ms", "p99 ms", "mean ms", "RSS MiB", "peak MiB", "body KiB", "series"
    );

    let dir = harness::process::TempDir::new("bench").expect("dir");
    let py = std::env::var("PY_EXPORTER")
        .ok()
        .filter(|p| std::path::Path::new(p).is_file());
    println!(
        "{SCRAPES} sequential scrapes each, one new HTTP connection per scrape, same PgBouncer, same run"
    );
    let mut clients = Some(_clients);
    for scenario in [
        "500 pools, 500 clients connected",
        "500 pools, clients gone (pools stay)",
    ] {
        let rows = compare(&dir, b.port, py.as_deref());
        println!("\n{scenario}\n{header}");
        for r in rows {
            println!("{r}");
        }
        // The second round: the clients leave, the pools (and their server connections) stay.
        if let Some(c) = clients.take() {
            drop(c);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Measures ours and (when installed) the Python exporter against the PgBouncer on `port`.
fn compare(dir: &harness::process::TempDir, port: u16, py: Option<&str>) -> Vec<String> {
    let mut rows = vec![];
    let ours = {
        let listen = harness::process::free_port().expect("port");
        let addr = format!("127.0.0.1:{listen}");
        let cfg = dir.path().join("pool-exporter.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"{addr}\"\n[[targets]]\nname = \"main\"\n[targets.admin]\nport = {port}\nuser = \"{}\"\npassword = \"{}\"\ndbname = \"pgbouncer\"\n",
                pgbouncer::STATS_USER,
                pgbouncer::STATS_PASSWORD
            ),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_pool-exporter"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pool-exporter");
        Running {
            name: "pool-exporter (ours)",
            child,
            addr,
        }
    };
    wait_http(&ours.addr, "/metrics");
    rows.push(measure(&ours));
    drop(ours);
    match py {
        Some(exe) => {
            let listen = harness::process::free_port().expect("port");
            let cfg = dir.path().join("python-exporter.yml");
            std::fs::write(
                &cfg,
                format!(
                    "exporter_host: 127.0.0.1\nexporter_port: {listen}\npgbouncers:\n  - dsn: postgresql://{}:{}@127.0.0.1:{port}/pgbouncer\n",
                    pgbouncer::STATS_USER,
                    pgbouncer::STATS_PASSWORD,
                ),
            )
            .expect("config");
            let child = Command::new(exe)
                .arg("--config")
                .arg(&cfg)
                .args(["--log-level", "WARNING"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python exporter");
            let py = Running {
                name: "prometheus-pgbouncer-exporter 2.1.2 (Python)",
                child,
                addr: format!("127.0.0.1:{listen}"),
            };
            wait_http(&py.addr, "/metrics");
            rows.push(measure(&py));
        }
        None => rows.push(
            "prometheus-pgbouncer-exporter: not measured (PY_EXPORTER unset; run bench/pool-exporter.sh)".into(),
        ),
    }
    rows
}
