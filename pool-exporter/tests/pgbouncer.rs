//! pool-exporter against the harness's real PgBouncer (and PostgreSQL behind it).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PgSettings, Secret};
use harness::pgbouncer::{self, PgBouncer, PgBouncerOptions};
use harness::postgres::{self, Postgres};
use pool_exporter::admin::AdminError;
use pool_exporter::config::Target;
use pool_exporter::target::TargetState;

fn target(name: &str, port: u16, user: &str, password: &str) -> Target {
    Target {
        name: name.into(),
        admin: PgSettings {
            port,
            user: user.into(),
            password: Some(Secret::new(password)),
            dbname: "pgbouncer".into(),
            connect_timeout: Duration::from_secs(5),
            ..PgSettings::default()
        },
        ..Target::default()
    }
}

fn stats_target(name: &str, b: &PgBouncer) -> Target {
    target(
        name,
        b.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
    )
}

/// One sample of the text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format strictly: every sample belongs to a family declared by
/// `# TYPE` before it, label values are quoted and escaped, values are numbers.
fn parse_exposition(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("bad TYPE"))?;
            if !["gauge", "counter", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err("unknown type"));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(err("family declared twice"));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(err("bad metric name"));
        }
        if !types.contains_key(name) {
            return Err(err("sample before its # TYPE"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            loop {
                let start = match chars.peek() {
                    Some((_, '}')) => {
                        end = chars.next().map(|(i, _)| i);
                        break;
                    }
                    Some((i, _)) => *i,
                    None => break,
                };
                let eq = r[start..].find('=').ok_or_else(|| err("label without ="))? + start;
                let key = &r[start..eq];
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(err("bad label name"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("unquoted label value"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => return Err(err("bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                }
                if labels.insert(key.to_string(), value).is_some() {
                    return Err(err("duplicate label"));
                }
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            let end = end.ok_or_else(|| err("unterminated labels"))?;
            rest = &r[end + 1..];
        }
        let value = rest.trim();
        let v: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| err("bad value"))?,
        };
        samples.push((name.to_string(), labels, v));
    }
    Ok((types, samples))
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|(n, l, _)| {
        n == name
            && labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    })
}

struct Exporter {
    child: Child,
    addr: String,
    _dir: harness::process::TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    fn start(config: &str) -> Exporter {
        let dir = harness::process::TempDir::new("pool-exporter").expect("dir");
        let cfg = dir.path().join("pool-exporter.toml");
        let port = harness::process::free_port().expect("port");
        let addr = format!("127.0.0.1:{port}");
        std::fs::write(&cfg, format!("listen = \"{addr}\"\n{config}")).expect("config");
        let cfg = cfg.display().to_string();
        Self::spawn(dir, addr, &["--config", &cfg], &[])
    }

    /// The binary with these arguments and environment, serving on `addr`.
    fn spawn(
        dir: harness::process::TempDir,
        addr: String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Exporter {
        let child = Command::new(env!("CARGO_BIN_EXE_pool-exporter"))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("POOL_EXPORTER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while harness::http::get(&addr, "/healthz").is_err() {
            assert!(Instant::now() < deadline, "pool-exporter did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Exporter {
            child,
            addr,
            _dir: dir,
        }
    }

    fn scrape(&self) -> (BTreeMap<String, String>, Vec<Sample>, String) {
        let (status, body) = harness::http::get(&self.addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        let (types, samples) = parse_exposition(&body).unwrap_or_else(|e| panic!("{e}"));
        (types, samples, body)
    }
}

/// `pool-exporter show pools` with a config holding `toml`.
fn show_pools(toml: &str) -> std::process::Output {
    show_pools_with(toml, &[])
}

fn show_pools_with(toml: &str, args: &[&str]) -> std::process::Output {
    let dir = harness::process::TempDir::new("show").expect("dir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, toml).expect("write");
    Command::new(env!("CARGO_BIN_EXE_pool-exporter"))
        .arg("--config")
        .arg(&cfg)
        .args(["show", "pools"])
        .args(args)
        .output()
        .expect("runs")
}

fn toml_target(name: &str, port: u16, user: &str, password: &str) -> String {
    format!(
        "[[targets]]\nname = \"{name}\"\nlabels = {{ cluster = \"test\" }}\n[targets.admin]\nport = {port}\nuser = \"{user}\"\npassword = \"{password}\"\ndbname = \"pgbouncer\"\n"
    )
}

/// pgbench through PgBouncer in the background.
fn pgbench_load(pg: &Postgres, port: u16, seconds: u32) -> Child {
    let pgbench = pg.bindir().join("pgbench");
    let init = Command::new(&pgbench)
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1"])
        .arg("-p")
        .arg(pg.port.to_string())
        .args(["-U", postgres::APP_USER, postgres::APP_DB])
        .env("PGPASSWORD", postgres::APP_PASSWORD)
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    Command::new(&pgbench)
        .args([
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-h",
            "127.0.0.1",
        ])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", postgres::APP_USER, postgres::APP_DB])
        .env("PGPASSWORD", postgres::APP_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench runs")
}

/// The families of the reference table that PgBouncer 1.18 has (the parse/bind counters come
/// with 1.24 and server assignments with 1.23: tests/layouts.rs covers those).
const FAMILIES_118: &[(&str, &[&str])] = &[
    ("pgbouncer_up", &["pgbouncer"]),
    ("pgbouncer_version_info", &["pgbouncer", "version"]),
    (
        "pgbouncer_databases_pool_size",
        &[
            "pgbouncer",
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_mode",
        ],
    ),
    (
        "pgbouncer_databases_reserve_pool",
        &[
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_mode",
        ],
    ),
    ("pgbouncer_databases_max_connections", &["name", "database"]),
    (
        "pgbouncer_databases_current_connections",
        &["name", "database"],
    ),
    ("pgbouncer_databases_paused", &["name", "database"]),
    ("pgbouncer_databases_disabled", &["name", "database"]),
    (
        "pgbouncer_stats_totals_queries_pooled_total",
        &["pgbouncer", "database"],
    ),
    (
        "pgbouncer_stats_totals_queries_duration_seconds_total",
        &["database"],
    ),
    ("pgbouncer_stats_totals_received_bytes_total", &["database"]),
    ("pgbouncer_stats_totals_queries_total", &["database"]),
    ("pgbouncer_stats_totals_sent_bytes_total", &["database"]),
    (
        "pgbouncer_stats_totals_client_wait_seconds_total",
        &["database"],
    ),
    (
        "pgbouncer_stats_totals_sql_transactions_pooled_total",
        &["database"],
    ),
    (
        "pgbouncer_stats_totals_server_in_transaction_seconds_total",
        &["database"],
    ),
    (
        "pgbouncer_pools_client_active_connections",
        &["pgbouncer", "database", "user"],
    ),
    (
        "pgbouncer_pools_client_active_cancel_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_client_waiting_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_client_waiting_cancel_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_active_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_active_cancel_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_being_canceled_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_idle_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_used_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_testing_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_server_login_connections",
        &["database", "user"],
    ),
    (
        "pgbouncer_pools_client_maxwait_seconds",
        &["database", "user"],
    ),
    ("pgbouncer_databases", &["pgbouncer"]),
    ("pgbouncer_users", &[]),
    ("pgbouncer_pools", &[]),
    ("pgbouncer_free_clients", &[]),
    ("pgbouncer_used_clients", &[]),
    ("pgbouncer_login_clients", &[]),
    ("pgbouncer_free_servers", &[]),
    ("pgbouncer_used_servers", &[]),
    ("pgbouncer_cached_dns_names", &[]),
    ("pgbouncer_cached_dns_zones", &[]),
    ("pgbouncer_in_flight_dns_queries", &[]),
    ("pgbouncer_config_max_client_connections", &[]),
    ("pgbouncer_config_max_user_connections", &[]),
    (
        "pgbouncer_client_connections",
        &["database", "user", "application_name", "state"],
    ),
    (
        "pgbouncer_server_connections",
        &["database", "user", "state"],
    ),
    ("pgbouncer_mem_total_bytes", &["name"]),
    ("pgbouncer_exporter_scrape_duration_seconds", &["pgbouncer"]),
    ("pgbouncer_exporter_last_scrape_error", &["pgbouncer"]),
    ("pool_exporter_build_info", &["version"]),
];

#[test]
fn every_family_under_load_with_growing_counters() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");
    let exporter = Exporter::start(&toml_target(
        "main",
        b.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
    ));
    let mut load = pgbench_load(&pg, b.port, 6);
    std::thread::sleep(Duration::from_secs(2));
    let (types, first, body) = exporter.scrape();
    std::thread::sleep(Duration::from_secs(2));
    let (_, second, _) = exporter.scrape();
    let _ = load.wait();

    for (family, labels) in FAMILIES_118 {
        let s = second
            .iter()
            .find(|(n, _, _)| n == family)
            .unwrap_or_else(|| panic!("{family} missing from:\n{body}"));
        for l in *labels {
            assert!(s.1.contains_key(*l), "{family} lacks label {l}: {:?}", s.1);
        }
        if *family != "pool_exporter_build_info" {
            assert_eq!(
                s.1.get("pgbouncer").map(String::as_str),
                Some("main"),
                "{family}"
            );
            assert_eq!(
                s.1.get("cluster").map(String::as_str),
                Some("test"),
                "{family}"
            );
        }
    }
    assert_eq!(find(&second, "pgbouncer_up", &[]).map(|s| s.2), Some(1.0));
    assert_eq!(
        find(&second, "pgbouncer_version_info", &[])
            .and_then(|s| s.1.get("version").cloned())
            .as_deref()
            .map(|v| v.starts_with("PgBouncer 1.")),
        Some(true)
    );

    // Counters only grow; the load makes the app database's grow strictly.
    let mut compared = 0;
    for (name, labels, v1) in &first {
        if types.get(name).map(String::as_str) != Some("counter") {
            continue;
        }
        if let Some((_, _, v2)) = second.iter().find(|(n, l, _)| n == name && l == labels) {
            assert!(v2 >= v1, "{name}{labels:?} went from {v1} to {v2}");
            compared += 1;
        }
    }
    assert!(compared > 10, "only {compared} counters compared");
    let app = [("database", postgres::APP_DB)];
    let q1 = find(&first, "pgbouncer_stats_totals_queries_pooled_total", &app)
        .expect("app stats")
        .2;
    let q2 = find(&second, "pgbouncer_stats_totals_queries_pooled_total", &app)
        .expect("app stats")
        .2;
    assert!(q2 > q1, "queries did not grow under load: {q1} -> {q2}");

    // promtool's own linter accepts the output (./dev test installs it and requires it).
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(body.as_bytes())?;
            c.wait_with_output()
        });
    match promtool {
        Err(e) => assert!(
            std::env::var_os("OUTRIGGER_REQUIRE_TOOLS").is_none(),
            "promtool: {e}"
        ),
        Ok(out) => assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_target_is_down_alone_and_comes_back() {
    let pg = Postgres::start().expect("postgres");
    let live = PgBouncer::start(&pg).expect("pgbouncer 1");
    let mut dying = PgBouncer::start(&pg).expect("pgbouncer 2");
    let targets = Arc::new(vec![
        TargetState::new(stats_target("live", &live)),
        TargetState::new(stats_target("dying", &dying)),
    ]);
    let text = pool_exporter::metrics_text(&targets).await;
    let (_, s) = parse_exposition(&text).expect("parses");
    for t in ["live", "dying"] {
        assert_eq!(
            find(&s, "pgbouncer_up", &[("pgbouncer", t)]).map(|x| x.2),
            Some(1.0),
            "{t}"
        );
    }

    dying.kill();
    let text = pool_exporter::metrics_text(&targets).await;
    let (_, s) = parse_exposition(&text).expect("parses");
    assert_eq!(
        find(&s, "pgbouncer_up", &[("pgbouncer", "live")]).map(|x| x.2),
        Some(1.0)
    );
    assert_eq!(
        find(&s, "pgbouncer_up", &[("pgbouncer", "dying")]).map(|x| x.2),
        Some(0.0)
    );
    assert_eq!(
        find(
            &s,
            "pgbouncer_exporter_last_scrape_error",
            &[("pgbouncer", "dying")]
        )
        .map(|x| x.2),
        Some(1.0)
    );
    assert!(
        find(
            &s,
            "pgbouncer_pools_client_active_connections",
            &[("pgbouncer", "live")]
        )
        .is_some()
    );
    assert!(
        find(
            &s,
            "pgbouncer_pools_client_active_connections",
            &[("pgbouncer", "dying")]
        )
        .is_none()
    );
    let scrape = targets[1].scrape().await;
    assert!(
        matches!(scrape.error, Some(AdminError::Refused { .. })),
        "{:?}",
        scrape.error
    );

    let _dying = tokio::task::spawn_blocking(move || {
        dying.restart().expect("restarts");
        dying
    })
    .await
    .expect("join");
    let scrape = targets[1].scrape().await;
    assert!(scrape.up(), "after restart: {:?}", scrape.error);
    let text = pool_exporter::metrics_text(&targets).await;
    let (_, s) = parse_exposition(&text).expect("parses");
    assert_eq!(
        find(&s, "pgbouncer_up", &[("pgbouncer", "dying")]).map(|x| x.2),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_target_times_out_and_does_not_hold_up_the_other() {
    let pg = Postgres::start().expect("postgres");
    let live = PgBouncer::start(&pg).expect("pgbouncer");
    // Accepts connections and never answers: a hung PgBouncer.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_port = hung.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in hung.incoming().take(2) {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let mut slow = target("hung", hung_port, "x", "y");
    slow.scrape_timeout = Duration::from_secs(1);
    let targets = Arc::new(vec![
        TargetState::new(stats_target("live", &live)),
        TargetState::new(slow),
    ]);
    let started = Instant::now();
    let scrapes = pool_exporter::scrape_all(&targets).await;
    let took = started.elapsed();
    assert!(scrapes[0].up(), "{:?}", scrapes[0].error);
    assert!(
        matches!(scrapes[1].error, Some(AdminError::Timeout { .. })),
        "{:?}",
        scrapes[1].error
    );
    assert!(
        scrapes[1]
            .error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("no answer within")),
        "timeout message"
    );
    // A correctness bound, not a speed one: the scrape ended by the timeout, not by the OS.
    assert!(took < Duration::from_secs(15), "scrape took {took:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_for_password_stats_users_and_startup_parameters() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");

    let wrong = TargetState::new(target("wrongpw", b.port, pgbouncer::STATS_USER, "nope"));
    let e = wrong.scrape().await.error.expect("fails");
    assert!(matches!(e, AdminError::WrongPassword { .. }), "{e:?}");
    assert!(
        e.to_string().contains("wrong password for user pgb_stats"),
        "{e}"
    );

    let plain = TargetState::new(target(
        "plain",
        b.port,
        pgbouncer::PLAIN_USER,
        pgbouncer::PLAIN_PASSWORD,
    ));
    let e = plain.scrape().await.error.expect("fails");
    assert!(matches!(e, AdminError::NotAllowed { .. }), "{e:?}");
    assert!(e.to_string().contains("stats_users"), "{e}");

    let mut t = stats_target("opts", &b);
    t.admin.options = Some("-c extra_float_digits=3".into());
    let e = TargetState::new(t).scrape().await.error.expect("fails");
    assert!(
        matches!(&e, AdminError::StartupParameter { parameter } if parameter == "options"),
        "{e:?}"
    );
    assert!(e.to_string().contains("ignore_startup_parameters"), "{e}");

    // The CLI names the target and the cause, and exits 1.
    let out = show_pools(&toml_target("edge", b.port, pgbouncer::STATS_USER, "nope"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("target edge") && err.contains("wrong password"),
        "{err}"
    );
}

/// `sslmode = "disable"` against a PgBouncer without TLS: scrapes succeed (tokio-postgres asks
/// for a TLS connector even when it will not use one; refusing it made every scrape fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_disable_scrapes_a_pgbouncer_without_tls() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");
    let mut t = stats_target("plain", &b);
    t.admin.sslmode = common::TlsMode::Disable;
    let scraped = TargetState::new(t).scrape().await;
    assert!(scraped.error.is_none(), "{:?}", scraped.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_reused_across_sequential_and_concurrent_scrapes() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");
    let targets = Arc::new(vec![TargetState::new(stats_target("main", &b))]);
    for _ in 0..3 {
        assert!(pool_exporter::scrape_all(&targets).await[0].up());
    }
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let t = targets.clone();
        set.spawn(async move { pool_exporter::metrics_text(&t).await });
    }
    while let Some(text) = set.join_next().await {
        assert!(
            text.expect("join")
                .contains("pgbouncer_up{pgbouncer=\"main\"} 1")
        );
    }
    assert_eq!(
        targets[0].connects(),
        1,
        "a scrape opened a second connection"
    );
    // PgBouncer agrees: one client of the stats user.
    let clients = b.admin("SHOW CLIENTS").expect("show clients");
    let n = clients
        .lines()
        .filter(|l| l.contains(pgbouncer::STATS_USER))
        .count();
    assert_eq!(n, 1, "{clients}");
}

#[test]
fn maxwait_keeps_microseconds_and_show_prints_a_table() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start_with(
        &pg,
        PgBouncerOptions {
            default_pool_size: 1,
            ..Default::default()
        },
    )
    .expect("pgbouncer");
    // One client holds the only server connection; a second one waits for it.
    let psql = |sql: &str| b.app_client(sql).expect("psql");
    let mut holder = psql("SELECT pg_sleep(4)");
    std::thread::sleep(Duration::from_millis(700));
    let mut waiter = psql("SELECT 1");
    std::thread::sleep(Duration::from_millis(1300));

    let exporter = Exporter::start(&toml_target(
        "main",
        b.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
    ));
    let (_, s, _) = exporter.scrape();
    let pool = [("database", postgres::APP_DB), ("user", postgres::APP_USER)];
    let waiting = find(&s, "pgbouncer_pools_client_waiting_connections", &pool)
        .expect("pool")
        .2;
    let maxwait = find(&s, "pgbouncer_pools_client_maxwait_seconds", &pool)
        .expect("maxwait")
        .2;
    assert!(waiting >= 1.0, "no waiting client");
    assert!(maxwait > 0.5 && maxwait < 60.0, "maxwait {maxwait}");
    assert!(
        maxwait.fract() != 0.0,
        "maxwait {maxwait} lost its microseconds"
    );

    let out = show_pools(&toml_target(
        "main",
        b.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().expect("header");
    assert!(
        header.starts_with("database") && header.contains("cl_waiting"),
        "{table}"
    );
    let app_line = table
        .lines()
        .find(|l| l.starts_with("app "))
        .expect("app row");
    // Aligned: each column starts where its header starts.
    let col = header.find("cl_active").expect("column");
    assert_ne!(&app_line[col..col + 1], " ", "{table}");
    assert_eq!(&app_line[col - 1..col], " ", "{table}");
    // The same as one JSON document, rows keyed by PgBouncer's column names.
    let out = show_pools_with(
        &toml_target(
            "main",
            b.port,
            pgbouncer::STATS_USER,
            pgbouncer::STATS_PASSWORD,
        ),
        &["--output", "json"],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON alone");
    assert_eq!(v["show"], "pools");
    let t = &v["targets"][0];
    assert_eq!(
        (t["name"].as_str(), t["ok"].as_bool()),
        (Some("main"), Some(true))
    );
    let app = t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["database"] == "app")
        .expect("app row");
    assert!(
        app["cl_waiting"].is_string() && app["cl_active"].is_string(),
        "{app}"
    );
    let _ = holder.wait();
    let _ = waiter.wait();
}

/// The Go exporter's flags and env for a drop-in switch, `/probe?target=` for multi-target
/// configs, the Go exporter's build-info name and the standard process metrics.
#[test]
fn go_exporter_flags_probe_and_process_metrics() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");
    let other = PgBouncer::start(&pg).expect("second pgbouncer");
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/pgbouncer?sslmode=disable",
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
        b.port
    );
    let get = |addr: &str, path: &str| harness::http::get(addr, path).expect("GET");

    // --web.listen-address :PORT, --web.telemetry-path, --pgBouncer.connectionString.
    let port = harness::process::free_port().expect("port");
    let e = Exporter::spawn(
        harness::process::TempDir::new("pool-exporter").expect("dir"),
        format!("127.0.0.1:{port}"),
        &[
            "--web.listen-address",
            &format!(":{port}"),
            "--web.telemetry-path",
            "/custom",
            "--pgBouncer.connectionString",
            &url,
        ],
        &[],
    );
    let (status, body) = get(&e.addr, "/custom");
    assert_eq!(status, 200, "{body}");
    let (_, samples) = parse_exposition(&body).expect("exposition");
    assert_eq!(
        find(&samples, "pgbouncer_up", &[("pgbouncer", "pgbouncer")]).map(|s| s.2),
        Some(1.0),
        "{body}"
    );
    assert!(
        find(
            &samples,
            "pgbouncer_exporter_build_info",
            &[("goos", "linux")]
        )
        .is_some(),
        "{body}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let v = find(&samples, name, &[]).unwrap_or_else(|| panic!("{name} missing:\n{body}"));
        assert!(v.2 >= 0.0, "{name}");
    }
    assert!(
        find(&samples, "process_resident_memory_bytes", &[]).is_some_and(|s| s.2 > 1e6),
        "{body}"
    );
    assert_eq!(get(&e.addr, "/metrics").0, 404, "the default path is gone");
    drop(e);

    // PGBOUNCER_EXPORTER_CONNECTION_STRING, as the Go exporter reads it.
    let port = harness::process::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let e = Exporter::spawn(
        harness::process::TempDir::new("pool-exporter").expect("dir"),
        addr.clone(),
        &[],
        &[
            ("POOL_EXPORTER_LISTEN", addr.as_str()),
            ("PGBOUNCER_EXPORTER_CONNECTION_STRING", url.as_str()),
        ],
    );
    let (_, samples, body) = e.scrape();
    assert_eq!(
        find(&samples, "pgbouncer_up", &[("pgbouncer", "pgbouncer")]).map(|s| s.2),
        Some(1.0),
        "{body}"
    );
    drop(e);

    // /probe: a configured target by name, another PgBouncer by address (the first target's
    // credentials), an address nobody answers, and no target at all.
    let e = Exporter::start(&toml_target(
        "main",
        b.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
    ));
    let probe = |q: &str| {
        let (status, body) = harness::http::get_with(&e.addr, "/probe", q, &[]).expect("GET");
        (status, body)
    };
    let (status, body) = probe("target=main");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("pgbouncer_up{pgbouncer=\"main\",cluster=\"test\"} 1"),
        "{body}"
    );
    let other_addr = format!("127.0.0.1:{}", other.port);
    let (status, body) = probe(&format!("target=127.0.0.1%3A{}", other.port));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(
            "pgbouncer_up{{pgbouncer=\"{other_addr}\",cluster=\"test\"}} 1"
        )),
        "{body}"
    );
    let closed = harness::process::free_port().expect("port");
    let (status, body) = probe(&format!("target=127.0.0.1:{closed}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("} 0") && body.contains("pgbouncer_up{"),
        "{body}"
    );
    let (status, body) = probe("");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("target"), "{body}");
}

/// RELOAD, PAUSE and RESUME while scrapes run: PgBouncer stays reachable, so every scrape says
/// `pgbouncer_up 1` and carries every family the first one had (never half a scrape).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_pause_and_resume_never_make_a_scrape_down_or_partial() {
    let pg = Postgres::start().expect("postgres");
    let b = PgBouncer::start(&pg).expect("pgbouncer");
    let targets = Arc::new(vec![TargetState::new(stats_target("main", &b))]);
    let families = |text: &str| -> std::collections::BTreeSet<String> {
        let (types, _) = parse_exposition(text).expect("parses");
        types.keys().cloned().collect()
    };
    let first = pool_exporter::metrics_text(&targets).await;
    let want = families(&first);
    assert!(
        want.contains("pgbouncer_pools_client_active_connections"),
        "{first}"
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (targets, stop) = (targets.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = vec![];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                seen.push(pool_exporter::metrics_text(&targets).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let admin = |sql: &'static str| {
        let out = b.admin(sql);
        assert!(out.is_ok(), "{sql}: {out:?}");
    };
    for sql in [
        "RELOAD",
        "PAUSE",
        "RESUME",
        "RELOAD",
        "PAUSE app",
        "RESUME app",
    ] {
        tokio::task::block_in_place(|| admin(sql));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = scraper.await.expect("scraper");
    assert!(seen.len() > 20, "only {} scrapes", seen.len());
    for text in &seen {
        assert!(
            text.contains("pgbouncer_up{pgbouncer=\"main\"} 1"),
            "a scrape said down:\n{text}"
        );
        let got = families(text);
        assert!(
            want.is_subset(&got),
            "a scrape lacked {:?}",
            want.difference(&got).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        targets[0].connects(),
        1,
        "the admin connection was reopened"
    );
}
