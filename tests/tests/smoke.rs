//! Each server of the harness comes up, answers, and checks credentials for real.

use harness::pgbouncer::{self, PgBouncer};
use harness::postgres::{self, Postgres};
use harness::redis::{RedisOptions, RedisStack};
use harness::s3::{BUCKET, S3Server};

#[test]
fn postgres_and_pgbouncer_come_up_with_password_auth() {
    let pg = Postgres::start().expect("postgres starts");
    let v = pg.psql_super("SHOW server_version_num").expect("query");
    assert!(v.trim().parse::<u32>().expect("number") >= 150000, "{v}");
    assert_eq!(
        pg.psql_super("SHOW wal_level").expect("query").trim(),
        "replica"
    );
    // scram-sha-256 for real: the right password works, a wrong one is refused.
    let who = pg
        .psql(
            postgres::APP_USER,
            postgres::APP_PASSWORD,
            postgres::APP_DB,
            "SELECT current_user",
        )
        .expect("app login");
    assert_eq!(who.trim(), postgres::APP_USER);
    let e = pg
        .psql(postgres::APP_USER, "wrong", postgres::APP_DB, "SELECT 1")
        .expect_err("wrong password refused");
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    // The replication user can open a physical replication connection.
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} dbname=replication replication=true",
        pg.port,
        postgres::REPL_USER
    );
    let out = std::process::Command::new(pg.bindir().join("psql"))
        .args(["-X", "-At", "-d", &conninfo, "-c", "IDENTIFY_SYSTEM"])
        .env("PGPASSWORD", postgres::REPL_PASSWORD)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        line.trim().split('|').count(),
        4,
        "IDENTIFY_SYSTEM row: {line}"
    );

    let bouncer = PgBouncer::start(&pg).expect("pgbouncer starts");
    let pools = bouncer.admin("SHOW POOLS").expect("admin console");
    assert!(pools.contains(postgres::APP_DB), "{pools}");
    // stats_users may read, a user in neither list may not.
    postgres::psql_tcp(
        pg.bindir(),
        bouncer.port,
        pgbouncer::STATS_USER,
        pgbouncer::STATS_PASSWORD,
        "pgbouncer",
        "SHOW STATS",
    )
    .expect("stats user reads SHOW STATS");
    let e = postgres::psql_tcp(
        pg.bindir(),
        bouncer.port,
        pgbouncer::PLAIN_USER,
        pgbouncer::PLAIN_PASSWORD,
        "pgbouncer",
        "SHOW STATS",
    )
    .expect_err("plain user refused");
    assert!(e.to_string().contains("not allowed"), "{e}");
    assert!(
        pgbouncer::installed_version()
            .expect("version")
            .contains("PgBouncer"),
        "pgbouncer --version"
    );
}

#[test]
fn redis_master_replicas_and_sentinels_come_up() {
    let stack = RedisStack::start_with(RedisOptions {
        password: Some("redis-pw".into()),
        down_after_ms: 2000,
        ..Default::default()
    })
    .expect("redis stack starts");
    assert_eq!(stack.replicas.len(), 2);
    assert_eq!(stack.sentinels.len(), 3);
    let mut m = stack.master.conn().expect("master");
    let _: () = redis::cmd("SET")
        .arg("smoke")
        .arg("42")
        .query(&mut m)
        .expect("SET");
    let _: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query(&mut m)
        .expect("WAIT");
    for r in &stack.replicas {
        let mut c = r.conn().expect("replica");
        let v: String = redis::cmd("GET").arg("smoke").query(&mut c).expect("GET");
        assert_eq!(v, "42");
    }
    assert_eq!(
        stack.current_master().expect("sentinel answers"),
        ("127.0.0.1".to_string(), stack.master.port)
    );
    // AUTH is enforced.
    let c =
        redis::Client::open(format!("redis://127.0.0.1:{}/", stack.master.port)).expect("client");
    let mut c = c.get_connection().expect("connects");
    let e = redis::cmd("GET")
        .arg("smoke")
        .query::<String>(&mut c)
        .expect_err("NOAUTH");
    assert!(e.to_string().contains("NOAUTH"), "{e}");
}

#[test]
fn s3_server_checks_signatures_and_restarts() {
    let mut s3 = S3Server::start().expect("s3 starts");
    let (status, body) = s3
        .signed_get(&format!("/{BUCKET}"), "list-type=2")
        .expect("signed");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ListBucketResult"), "{body}");
    let (status, _) = s3
        .unsigned_get(&format!("/{BUCKET}"), "list-type=2")
        .expect("unsigned");
    assert!(
        status == 403 || status == 401,
        "unsigned request got {status}"
    );
    let (status, _) = s3
        .badly_signed_get(&format!("/{BUCKET}"), "list-type=2")
        .expect("bad signature");
    assert_eq!(status, 403, "bad signature accepted");
    s3.stop();
    assert!(
        s3.signed_get(&format!("/{BUCKET}"), "list-type=2").is_err(),
        "stopped server answers"
    );
    s3.resume().expect("starts again");
    let (status, _) = s3
        .signed_get(&format!("/{BUCKET}"), "list-type=2")
        .expect("signed");
    assert_eq!(status, 200);
}
