//! health-agent against the harness's real servers.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::catalog::{BackupKind, Manifest, WalStatus};
use common::logfmt::{LogFile, parse};
use common::{PgSettings, RedisSettings, Secret};
use harness::pgbouncer::{self, PgBouncer, PgBouncerOptions};
use harness::postgres::Postgres;
use harness::process::TempDir;
use harness::redis::{RedisOptions, RedisStack};
use harness::webhook::WebhookReceiver;
use health_agent::alerting::Alerting;
use health_agent::checks::{self, State};
use health_agent::config::{
    BackupsCheck, CheckConfig, CheckSpec, Config, DegradedState, HttpCheck, PgbouncerCheck,
    PostgresCheck, RedisCheck, RedisRole, SentinelCheck, TcpCheck, Webhook,
};
use health_agent::metrics::Metrics;
use health_agent::runner::Runner;
use tokio_util::sync::CancellationToken;

const REDIS_PW: &str = "redis-test-pw";

fn check(name: &str, spec: CheckSpec) -> CheckConfig {
    CheckConfig {
        name: name.into(),
        enabled: true,
        timeout: Some(Duration::from_secs(5)),
        spec,
    }
}

fn redis_conn(port: u16) -> RedisSettings {
    RedisSettings {
        port,
        password: Some(Secret::new(REDIS_PW)),
        timeout: Duration::from_secs(2),
        ..RedisSettings::default()
    }
}

/// PgBouncer's admin console as the stats user.
fn stats_conn(port: u16) -> PgSettings {
    PgSettings {
        port,
        user: pgbouncer::STATS_USER.into(),
        password: Some(Secret::new(pgbouncer::STATS_PASSWORD)),
        dbname: "pgbouncer".into(),
        ..PgSettings::default()
    }
}

fn runner(dir: &TempDir, checks: Vec<CheckConfig>, webhook: Option<Webhook>) -> Runner {
    let cfg = Config {
        health_log: dir.path().join("logs/health.log"),
        checks,
        webhook,
        failure_threshold: 2,
        success_threshold: 1,
        ..Config::default()
    };
    let log = LogFile::open(&cfg.health_log).expect("health.log");
    let alerting = Arc::new(Alerting::new(
        Arc::new(log),
        cfg.webhook.clone(),
        CancellationToken::new(),
    ));
    let mut registry = prometheus_client::registry::Registry::default();
    Runner::new(cfg, alerting, Metrics::register(&mut registry))
}

/// Every line of a log file, parsed (fails the test on a line that does not parse).
fn lines(path: &std::path::Path) -> Vec<Vec<(String, String)>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| parse(l).unwrap_or_else(|e| panic!("unparseable line {l:?}: {e}")))
        .collect()
}

fn field<'a>(line: &'a [(String, String)], key: &str) -> Option<&'a str> {
    line.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn changes(path: &std::path::Path, check: &str) -> Vec<(String, String)> {
    lines(path)
        .iter()
        .filter(|l| field(l, "event") == Some("state_change") && field(l, "check") == Some(check))
        .map(|l| {
            (
                field(l, "previous").unwrap_or("").to_string(),
                field(l, "state").unwrap_or("").to_string(),
            )
        })
        .collect()
}

// The serial lock is held on purpose for the whole test (each test has its own runtime).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_replica_is_crit_once_and_recovers_once_across_logrotate() {
    let _serial = harness::serial();
    let mut stack = tokio::task::spawn_blocking(|| {
        RedisStack::start_with(RedisOptions {
            password: Some(REDIS_PW.into()),
            sentinels: 0,
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("redis");
    let dir = TempDir::new("health").expect("dir");
    let replica_port = stack.replicas[0].port;
    let r = runner(
        &dir,
        vec![
            check(
                "redis-replica-1",
                CheckSpec::Redis(RedisCheck {
                    conn: redis_conn(replica_port),
                    role: RedisRole::Replica,
                    ..Default::default()
                }),
            ),
            check(
                "redis-master",
                CheckSpec::Redis(RedisCheck {
                    conn: redis_conn(stack.master.port),
                    role: RedisRole::Master,
                    ..Default::default()
                }),
            ),
        ],
        None,
    );
    let log = dir.path().join("logs/health.log");

    let c = r.cycle().await;
    assert!(
        c.results
            .iter()
            .all(|(_, run)| run.outcome.state == State::Ok),
        "{c:?}"
    );
    stack.replicas[0].proc.kill();
    let c = r.cycle().await;
    assert_eq!(c.results[0].1.outcome.state, State::Crit, "{c:?}");
    assert!(c.unsettled, "a pending change asks for a quick recheck");
    assert!(
        changes(&log, "redis-replica-1").is_empty(),
        "reported before the threshold"
    );
    r.cycle().await;
    r.cycle().await;
    assert_eq!(
        changes(&log, "redis-replica-1"),
        vec![("OK".into(), "CRIT".into())]
    );
    let crit_line = lines(&log)
        .into_iter()
        .find(|l| field(l, "state") == Some("CRIT"))
        .expect("CRIT line");
    assert!(
        field(&crit_line, "reason").is_some_and(|r| r.contains(&replica_port.to_string())),
        "the reason names the node: {crit_line:?}"
    );
    assert!(
        !std::fs::read_to_string(&log)
            .expect("log")
            .contains(REDIS_PW)
    );

    // logrotate moves the file away; the next lines go to a new health.log.
    std::fs::rename(&log, dir.path().join("logs/health.log.1")).expect("rotate");
    stack.replicas[0].restart().expect("replica restarts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while changes(&log, "redis-replica-1").is_empty() {
        assert!(Instant::now() < deadline, "no recovery line");
        tokio::time::sleep(Duration::from_millis(300)).await;
        r.cycle().await;
    }
    r.cycle().await;
    assert_eq!(
        changes(&log, "redis-replica-1"),
        vec![("CRIT".into(), "OK".into())]
    );
    let old = dir.path().join("logs/health.log.1");
    assert_eq!(
        changes(&old, "redis-replica-1").len(),
        1,
        "the old file keeps its line"
    );
    assert!(changes(&log, "redis-master").is_empty() && changes(&old, "redis-master").is_empty());
    let status = r.status();
    assert_eq!(status[0].state, State::Ok);
}

/// `sslmode = "disable"` against PostgreSQL and PgBouncer without TLS: both checks are OK
/// (refusing tokio-postgres' request for a TLS connector made them CRIT).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_disable_checks_servers_without_tls() {
    let _serial = harness::serial();
    let (pg, bouncer) = tokio::task::spawn_blocking(|| {
        let pg = Postgres::start().expect("postgres");
        let b = PgBouncer::start(&pg).expect("pgbouncer");
        (pg, b)
    })
    .await
    .expect("join");
    let postgres = check(
        "postgres",
        CheckSpec::Postgres(PostgresCheck {
            conn: PgSettings {
                port: pg.port,
                user: harness::postgres::SUPERUSER.into(),
                password: Some(Secret::new(harness::postgres::SUPERUSER_PASSWORD)),
                sslmode: common::TlsMode::Disable,
                ..PgSettings::default()
            },
            ..PostgresCheck::default()
        }),
    );
    let pgb = check(
        "pgbouncer",
        CheckSpec::Pgbouncer(PgbouncerCheck {
            conn: PgSettings {
                sslmode: common::TlsMode::Disable,
                ..stats_conn(bouncer.port)
            },
            ..PgbouncerCheck::default()
        }),
    );
    for c in [&postgres, &pgb] {
        let run = checks::run(c, Duration::from_secs(10)).await;
        assert_eq!(
            run.outcome.state,
            State::Ok,
            "{}: {:?}",
            c.name,
            run.outcome
        );
    }
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_warn_and_a_killed_sentinel_degrades() {
    let _serial = harness::serial();
    let (_pg, bouncer) = tokio::task::spawn_blocking(|| {
        let pg = Postgres::start().expect("postgres");
        let b = PgBouncer::start_with(
            &pg,
            PgBouncerOptions {
                default_pool_size: 1,
                ..Default::default()
            },
        )
        .expect("pgbouncer");
        (pg, b)
    })
    .await
    .expect("join");
    let psql = |sql: &str| bouncer.app_client(sql).expect("psql");
    let pgb = check(
        "pgbouncer",
        CheckSpec::Pgbouncer(PgbouncerCheck {
            conn: stats_conn(bouncer.port),
            waiting_warn: 1,
            waiting_crit: 10,
            maxwait_warn: Duration::from_secs(30),
            maxwait_crit: Duration::from_secs(60),
        }),
    );
    let run = checks::run(&pgb, Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Ok, "{:?}", run.outcome);
    let mut holder = psql("SELECT pg_sleep(5)");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut waiter = psql("SELECT 1");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let run = checks::run(&pgb, Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Warn, "{:?}", run.outcome);
    assert!(
        run.outcome.reason.contains("clients waiting") && run.outcome.reason.contains("warn 1"),
        "{}",
        run.outcome.reason
    );
    let _ = holder.wait();
    let _ = waiter.wait();

    let mut stack = tokio::task::spawn_blocking(|| {
        RedisStack::start_with(RedisOptions {
            password: Some(REDIS_PW.into()),
            replicas: 1,
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("redis");
    let addrs = stack.sentinel_addrs();
    let sentinel = |degraded| {
        check(
            "sentinel",
            CheckSpec::Sentinel(SentinelCheck {
                sentinels: addrs.clone(),
                master_name: harness::redis::MASTER_NAME.into(),
                auth: RedisSettings {
                    timeout: Duration::from_secs(2),
                    ..RedisSettings::default()
                },
                degraded_state: degraded,
            }),
        )
    };
    let run = checks::run(&sentinel(DegradedState::Warn), Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Ok, "{:?}", run.outcome);
    assert!(run.outcome.reason.contains("3/3"), "{}", run.outcome.reason);
    let killed = stack.sentinels[2].addr();
    stack.sentinels[2].proc.kill();
    let run = checks::run(&sentinel(DegradedState::Warn), Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Warn, "{:?}", run.outcome);
    assert!(
        run.outcome.reason.contains(&killed),
        "{}",
        run.outcome.reason
    );
    let run = checks::run(&sentinel(DegradedState::Crit), Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Crit, "{:?}", run.outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_is_unknown_and_the_others_finish() {
    // Accepts and never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hung_addr = hung.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut conns = vec![];
        while let Ok((c, _)) = hung.accept().await {
            conns.push(c);
        }
    });
    let live = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let live_addr = live.local_addr().expect("addr");
    let dir = TempDir::new("health").expect("dir");
    let mut slow = check(
        "hung-http",
        CheckSpec::Http(HttpCheck {
            url: format!("http://{hung_addr}/health"),
            ..Default::default()
        }),
    );
    slow.timeout = Some(Duration::from_secs(1));
    let r = runner(
        &dir,
        vec![
            slow,
            check(
                "live-tcp",
                CheckSpec::Tcp(TcpCheck {
                    address: live_addr.to_string(),
                }),
            ),
        ],
        None,
    );
    let c = r.cycle().await;
    assert_eq!(c.results[0].1.outcome.state, State::Unknown, "{c:?}");
    assert!(
        c.results[0].1.outcome.reason.contains("timed out after 1s"),
        "{c:?}"
    );
    assert_eq!(c.results[1].1.outcome.state, State::Ok, "{c:?}");
    // Bounded by the timeout, not by the hang (a generous correctness bound).
    assert!(c.duration < Duration::from_secs(10), "{:?}", c.duration);
    held.abort();
}

fn write_catalog(root: &std::path::Path, age: Duration) {
    let t = SystemTime::now() - age;
    for kind in [
        BackupKind::PostgresFull,
        BackupKind::PostgresIncr,
        BackupKind::Redis,
    ] {
        let m = Manifest::new(
            &format!("{}-test", kind.as_str()),
            kind,
            t - Duration::from_secs(60),
            t,
        );
        let p = root.join(kind.manifest_key(&m.id));
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        std::fs::write(&p, serde_json::to_vec(&m).expect("json")).expect("write");
    }
    let w = WalStatus {
        timeline: 1,
        flushed_lsn: "0/3000000".into(),
        updated_at: t,
        segment_size: None,
    };
    std::fs::write(
        root.join(common::catalog::WAL_STATUS_KEY),
        serde_json::to_vec(&w).expect("json"),
    )
    .expect("write");
}

#[tokio::test]
async fn stale_catalog_is_crit_and_fresh_is_ok() {
    let stale = TempDir::new("catalog").expect("dir");
    let fresh = TempDir::new("catalog").expect("dir");
    write_catalog(stale.path(), Duration::from_secs(30 * 3600));
    write_catalog(fresh.path(), Duration::from_secs(60));
    let spec = |p: &std::path::Path| {
        check(
            "backups",
            CheckSpec::Backups(BackupsCheck {
                path: p.to_path_buf(),
                ..Default::default()
            }),
        )
    };
    let run = checks::run(&spec(stale.path()), Duration::from_secs(5)).await;
    assert_eq!(run.outcome.state, State::Crit, "{:?}", run.outcome);
    assert!(
        run.outcome.reason.contains("max 1day 2h"),
        "{}",
        run.outcome.reason
    );
    let run = checks::run(&spec(fresh.path()), Duration::from_secs(5)).await;
    assert_eq!(run.outcome.state, State::Ok, "{:?}", run.outcome);
    let empty = TempDir::new("catalog").expect("dir");
    let run = checks::run(&spec(empty.path()), Duration::from_secs(5)).await;
    assert_eq!(run.outcome.state, State::Crit, "{:?}", run.outcome);
}

/// The same catalog read from a real S3-compatible server (SigV4), below a key prefix; an older
/// manifest next to the newest is ignored; a wrong secret is a clear CRIT naming the bucket.
#[tokio::test]
async fn catalog_is_read_from_s3() {
    let s3 = tokio::task::spawn_blocking(harness::s3::S3Server::start)
        .await
        .expect("join")
        .expect("S3 server");
    let root = s3.root().join(harness::s3::BUCKET).join("site-a");
    write_catalog(&root, Duration::from_secs(60));
    // An old full backup (sorts first) that must not be the one graded.
    let old = root.join(BackupKind::PostgresFull.manifest_key("20200101T000000Z"));
    std::fs::copy(
        root.join(BackupKind::PostgresFull.manifest_key("postgres-full-test")),
        &old,
    )
    .expect("copy");
    let loc = |secret: &str| common::s3read::S3Location {
        bucket: harness::s3::BUCKET.into(),
        prefix: "site-a/".into(),
        endpoint: Some(s3.endpoint()),
        path_style: true,
        access_key_id: Some(harness::s3::ACCESS_KEY.into()),
        secret_access_key: Some(common::Secret::new(secret)),
        ..Default::default()
    };
    let spec = |secret: &str| {
        check(
            "backups",
            CheckSpec::Backups(BackupsCheck {
                s3: Some(loc(secret)),
                ..Default::default()
            }),
        )
    };
    let run = checks::run(&spec(harness::s3::SECRET_KEY), Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Ok, "{:?}", run.outcome);
    assert!(
        run.outcome.reason.contains("postgres-full-test"),
        "{}",
        run.outcome.reason
    );
    let run = checks::run(&spec("wrong-secret"), Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Crit, "{:?}", run.outcome);
    assert!(
        run.outcome.reason.contains("s3://outrigger-backups") && run.outcome.reason.contains("403"),
        "{}",
        run.outcome.reason
    );
    // Stale in S3 is CRIT like stale on disk.
    std::fs::remove_dir_all(&root).expect("rm");
    write_catalog(&root, Duration::from_secs(30 * 3600));
    let run = checks::run(&spec(harness::s3::SECRET_KEY), Duration::from_secs(10)).await;
    assert_eq!(run.outcome.state, State::Crit, "{:?}", run.outcome);
}

/// Two cycles of a check that goes OK -> CRIT (a TCP check on a closed port, failure threshold 2):
/// one state change for the webhook.
async fn alert_once(dir: &TempDir, webhook: Webhook) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let r = runner(
        dir,
        vec![check(
            "gone",
            CheckSpec::Tcp(TcpCheck {
                address: closed_addr.to_string(),
            }),
        )],
        Some(webhook),
    );
    r.cycle().await;
    r.cycle().await;
}

#[tokio::test]
async fn state_changes_reach_the_webhook() {
    let mut hook = WebhookReceiver::http().await.expect("receiver");
    let dir = TempDir::new("health").expect("dir");
    alert_once(
        &dir,
        Webhook {
            url: hook.url.clone(),
            ..Default::default()
        },
    )
    .await;
    let body = hook
        .next(Duration::from_secs(10))
        .await
        .expect("webhook called");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["check"], "gone");
    assert_eq!(v["state"], "CRIT");
    assert_eq!(v["previous"], "OK");
}

#[tokio::test]
async fn https_webhooks_are_verified_against_the_configured_ca() {
    // A private CA named in webhook.ca_file: delivered.
    let mut hook = WebhookReceiver::https().await.expect("receiver");
    assert!(hook.url.starts_with("https://"), "{}", hook.url);
    let dir = TempDir::new("health").expect("dir");
    alert_once(
        &dir,
        Webhook {
            url: hook.url.clone(),
            ca_file: hook.certs.as_ref().map(|c| c.ca.clone()),
            ..Default::default()
        },
    )
    .await;
    let body = hook
        .next(Duration::from_secs(10))
        .await
        .expect("webhook called over https");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "CRIT");

    // The same server checked against the system's roots: refused, never sent in clear.
    let dir = TempDir::new("health").expect("dir");
    alert_once(
        &dir,
        Webhook {
            url: hook.url.clone(),
            attempts: 1,
            ..Default::default()
        },
    )
    .await;
    assert!(
        !hook.called_within(Duration::from_secs(3)).await,
        "a certificate from an untrusted CA was accepted"
    );
}

/// `health-agent check` as a monitoring plugin: table-driven exit codes (0 OK, 1 WARN, 2 CRIT,
/// 3 UNKNOWN, CRIT over UNKNOWN over WARN), a config error (78) and a bad command line (64) apart
/// from them, the table or JSON alone on stdout.
#[test]
fn check_cli_follows_the_plugin_exit_codes_with_tables_on_stdout() {
    let live = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let dir = TempDir::new("health-cli").expect("dir");
    let run = |toml: &str, args: &[&str]| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).expect("write");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_health-agent"));
        cmd.arg("-c").arg(&p).arg("check").args(args);
        cmd.output().expect("runs")
    };
    let up = format!(
        "[[checks]]\nname = \"up\"\nkind = \"tcp\"\naddress = \"{}\"\n",
        live.local_addr().expect("addr")
    );
    let down =
        format!("[[checks]]\nname = \"down\"\nkind = \"tcp\"\naddress = \"{closed_addr}\"\n");
    // Any filesystem in use is above 0.001 %: WARN.
    let warn = "[[checks]]\nname = \"full\"\nkind = \"disk\"\nused_warn_pct = 0.001\nused_crit_pct = 100.0\n";
    // A Sentinel address that is not host:port: the check cannot run.
    let unknown = "[[checks]]\nname = \"odd\"\nkind = \"sentinel\"\nsentinels = [\"nohostport\"]\n";
    let cases: Vec<(&str, String, &[&str], i32)> = vec![
        ("all OK", up.clone(), &[], 0),
        ("a WARN", format!("{up}{warn}"), &[], 1),
        ("a CRIT", format!("{up}{down}"), &[], 2),
        ("an UNKNOWN", format!("{up}{unknown}"), &[], 3),
        ("UNKNOWN over WARN", format!("{warn}{unknown}"), &[], 3),
        ("CRIT over UNKNOWN", format!("{unknown}{down}"), &[], 2),
        (
            "--only the OK one",
            format!("{up}{down}"),
            &["--only", "up"],
            0,
        ),
        ("--only naming none", up.clone(), &["--only", "nope"], 3),
        (
            "a misspelt key (config error)",
            format!("{up}latency_warnn = \"1s\"\n"),
            &[],
            78,
        ),
        ("a bad command line", up.clone(), &["--no-such-flag"], 64),
    ];
    for (what, toml, args, code) in &cases {
        let out = run(toml, args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{what}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The table alone on stdout; the config error names the key and the check.
    let out = run(&format!("{up}{down}"), &[]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.starts_with("CHECK") && table.contains("CRIT"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .all(|l| !l.contains(" INFO ") && !l.contains("WARN health")),
        "{table}"
    );
    let out = run(&up, &["--only", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no enabled check named \"nope\""));
    let out = run(&format!("{up}latency_warnn = \"1s\"\n"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("latency_warnn") && err.contains("\"up\""),
        "{err}"
    );
    // JSON: one document on stdout, stable field names.
    let out = run(&format!("{up}{down}"), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON alone");
    assert_eq!(v["state"], "CRIT");
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2);
    for c in checks {
        for k in ["name", "kind", "state", "duration_ms", "reason"] {
            assert!(c.get(k).is_some(), "{k} missing in {c}");
        }
    }
    assert_eq!(checks[1]["name"], "down");
    assert_eq!(checks[1]["state"], "CRIT");
}

/// A service that comes and goes between every check (a TCP listener opened and closed): with
/// failure_threshold 2 it never changes the reported state, and before it was never seen at all.
/// Now health.log says it flaps (once), and says when it has settled.
#[tokio::test]
async fn a_flapping_service_is_reported_not_hidden() {
    let port = harness::process::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let dir = TempDir::new("health-flap").expect("dir");
    let r = runner(
        &dir,
        vec![check(
            "flappy",
            CheckSpec::Tcp(TcpCheck {
                address: addr.clone(),
            }),
        )],
        None,
    );
    let log = dir.path().join("logs/health.log");
    let events = |name: &str| {
        lines(&log)
            .iter()
            .filter(|l| field(l, "event") == Some(name) && field(l, "check") == Some("flappy"))
            .count()
    };
    for i in 0..12 {
        let listener = (i % 2 == 0).then(|| std::net::TcpListener::bind(&addr).expect("bind"));
        r.cycle().await;
        drop(listener);
    }
    assert!(
        changes(&log, "flappy").is_empty(),
        "debouncing hid every flip"
    );
    assert_eq!(
        events("flapping"),
        1,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // It stays up: settled.
    let _up = std::net::TcpListener::bind(&addr).expect("bind");
    for _ in 0..10 {
        r.cycle().await;
    }
    assert_eq!(events("stopped_flapping"), 1);
}
