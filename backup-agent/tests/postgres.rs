//! backup-agent against the harness's real PostgreSQL 15: full backup and restore, point-in-time
//! recovery from streamed WAL, a killed backup, clear errors.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_agent::config::Config;
use backup_agent::context::Ctx;
use backup_agent::pg::conn::{ReplConn, ReplError};
use backup_agent::pg::lsn::parse_lsn;
use backup_agent::storage::Storage;
use common::logfmt::LogFile;
use common::{PgSettings, Secret};
use harness::postgres::{self, Postgres};
use harness::process::TempDir;
use tokio_util::sync::CancellationToken;

fn settings(pg: &Postgres, user: &str, password: &str) -> PgSettings {
    PgSettings {
        port: pg.port,
        user: user.into(),
        password: Some(Secret::new(password)),
        connect_timeout: Duration::from_secs(5),
        ..PgSettings::default()
    }
}

fn config(pg: &Postgres, storage: &Path) -> Config {
    let mut c = Config {
        postgres: settings(pg, postgres::REPL_USER, postgres::REPL_PASSWORD),
        log_file: storage.join("logs/backup.log"),
        ..Config::default()
    };
    c.storage.path = storage.to_path_buf();
    c.wal.flush_interval = Duration::from_millis(500);
    c
}

fn app(pg: &Postgres, sql: &str) -> String {
    pg.psql(
        postgres::APP_USER,
        postgres::APP_PASSWORD,
        postgres::APP_DB,
        sql,
    )
    .expect("query")
}

/// The binary, copied where the `postgres` user can run it: a restored server calls it as its
/// restore_command, and the build directory may not be reachable for that user.
fn exe() -> &'static Path {
    static EXE: std::sync::OnceLock<(TempDir, std::path::PathBuf)> = std::sync::OnceLock::new();
    let (_, p) = EXE.get_or_init(|| {
        let dir = TempDir::new("backup-agent-bin").expect("dir");
        let p = dir.path().join("backup-agent");
        std::fs::copy(env!("CARGO_BIN_EXE_backup-agent"), &p).expect("copy the binary");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        (dir, p)
    });
    p
}

/// `backup-agent backup postgres-full` against `pg` as `user`, storing into `store`.
fn full_backup_cmd(pg: &Postgres, store: &Path, user: &str, password: &str) -> Command {
    let mut c = Command::new(exe());
    c.args(["backup", "postgres-full"])
        .env("BACKUP_AGENT_STORAGE__PATH", store)
        .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
        .env("BACKUP_AGENT_POSTGRES__PORT", pg.port.to_string())
        .env("BACKUP_AGENT_POSTGRES__USER", user)
        .env("BACKUP_AGENT_POSTGRES__PASSWORD", password);
    c
}

/// The WAL archiver on its own task, as the daemon runs it.
/// Returns the job context the archiver runs with (jobs take it too) and its token.
fn archiver(
    cfg: &Arc<Config>,
    storage: &Storage,
) -> (Ctx, CancellationToken, tokio::task::JoinHandle<()>) {
    let ctx = job_ctx(cfg, storage);
    let task = tokio::spawn(backup_agent::pg::wal::run(ctx.clone(), Default::default()));
    (ctx.clone(), ctx.cancel, task)
}

/// A job context on `storage`, with backup.log from `cfg`, as the daemon builds it.
fn job_ctx(cfg: &Arc<Config>, storage: &Storage) -> Ctx {
    let log = Arc::new(LogFile::open(&cfg.log_file).expect("log"));
    Ctx::with_storage(
        cfg.clone(),
        storage.clone(),
        log,
        Default::default(),
        CancellationToken::new(),
    )
    .expect("job context")
}

fn cli(storage: &Path, args: &[&str]) -> std::process::Output {
    Command::new(exe())
        .args(args)
        .env("BACKUP_AGENT_STORAGE__PATH", storage)
        .env("BACKUP_AGENT_LOG_FILE", storage.join("logs/backup.log"))
        .output()
        .expect("backup-agent runs")
}

/// `backup-agent --config CONFIG ARGS...`.
fn with_config(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(exe())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("backup-agent runs")
}

/// Waits until the archiver has stored WAL up to the server's current position.
async fn wait_archived(pg: &Postgres, storage: &Storage) {
    let want = parse_lsn(&pg.psql_super("SELECT pg_current_wal_lsn()").expect("lsn")).expect("lsn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let flushed = storage
            .get(common::catalog::WAL_STATUS_KEY)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<common::catalog::WalStatus>(&b).ok())
            .and_then(|s| parse_lsn(&s.flushed_lsn));
        if flushed.is_some_and(|f| f >= want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "WAL not archived up to {want:X}: {flushed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The backups `list` shows (its rows start with the id, a UTC time).
fn listed_rows(listed: &str) -> usize {
    listed
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count()
}

/// Asserts that a command succeeded (showing its stderr when not); returns its stdout.
fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every file under a directory (paths as text).
fn files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Starts PostgreSQL on a restored directory and waits until recovery is done.
async fn start_restored(dir: std::path::PathBuf) -> Postgres {
    tokio::task::spawn_blocking(move || Postgres::start_existing(&dir, Duration::from_secs(120)))
        .await
        .expect("join")
        .expect("restored server starts and recovers")
}

fn ids(pg: &Postgres) -> Vec<i32> {
    pg.psql(
        postgres::APP_USER,
        postgres::APP_PASSWORD,
        postgres::APP_DB,
        "SELECT id FROM t ORDER BY id",
    )
    .expect("select")
    .lines()
    .map(|l| l.trim().parse().expect("id"))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_then_point_in_time_restore() {
    let pg = started().await;
    let dir = TempDir::new("backup").expect("dir");
    let store = dir.path().join("storage");
    let cfg = Arc::new(config(&pg, &store));
    let storage = Storage::local(&store);
    let (ctx, cancel, archiver) = archiver(&cfg, &storage);

    app(
        &pg,
        "CREATE TABLE t (id int PRIMARY KEY, payload text, at timestamptz DEFAULT clock_timestamp())",
    );
    app(
        &pg,
        "INSERT INTO t (id, payload) SELECT g, repeat('x', 200) FROM generate_series(1, 3) g",
    );
    let m = backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup");
    assert!(
        m.objects.iter().any(|o| o.key.ends_with("base.tar.zst")),
        "{m:?}"
    );
    assert!(
        m.objects
            .iter()
            .any(|o| o.key.ends_with("backup_manifest.zst")),
        "{m:?}"
    );
    let listed = cli(&store, &["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&m.id));

    // Rows committed a second apart; the target time falls between rows 5 and 6.
    let mut target = String::new();
    for id in 4..=6 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        app(
            &pg,
            &format!("INSERT INTO t (id, payload) VALUES ({id}, 'row {id}')"),
        );
        if id == 5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            target = pg
                .psql_super("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
                .expect("time")
                .trim()
                .to_string();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    app(
        &pg,
        "INSERT INTO t (id, payload) VALUES (7, 'after the switch')",
    );
    wait_archived(&pg, &storage).await;

    // Point in time: exactly the rows committed before the target.
    let pitr = dir.path().join("pitr");
    let out = cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            pitr.to_str().expect("utf8"),
            "--time",
            &target,
        ],
    );
    succeeded(&out);
    let restored = start_restored(pitr).await;
    assert_eq!(ids(&restored), vec![1, 2, 3, 4, 5], "restored to {target}");
    drop(restored);

    // Latest: every row, with the same contents.
    let latest = dir.path().join("latest");
    let out = cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            latest.to_str().expect("utf8"),
        ],
    );
    succeeded(&out);
    let restored = start_restored(latest).await;
    let q = "SELECT id, payload FROM t ORDER BY id";
    assert_eq!(app(&restored, q), app(&pg, q));

    // A non-empty target is refused.
    let out = cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            store.to_str().expect("utf8"),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
    cancel.cancel();
    let _ = archiver.await;
}

/// Whether the zstd frame at the start of `bytes` carries a content checksum (bit 2 of its
/// frame header descriptor). backup-agent's encoder always sets one; PostgreSQL's server-side
/// compression does not, which tells who compressed.
fn zstd_content_checksum(bytes: &[u8]) -> bool {
    assert_eq!(
        bytes.get(..4),
        Some(&[0x28, 0xb5, 0x2f, 0xfd][..]),
        "a zstd frame"
    );
    bytes[4] & 0b100 != 0
}

/// By default the server compresses a zstd full backup and backup-agent stores it as it
/// comes; with `compression.server = false` backup-agent compresses. Both restore to the same
/// rows and verify against the server's manifest, and the catalog says who compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backups_compressed_by_the_server_or_by_backup_agent_both_restore() {
    let pg = started().await;
    let dir = TempDir::new("backup-by").expect("dir");
    app(
        &pg,
        "CREATE TABLE t (id int PRIMARY KEY, payload text); \
         INSERT INTO t SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 20000) g",
    );
    let q = "SELECT count(*), sum(length(payload)), max(id) FROM t";
    for (on_server, by) in [(true, "server"), (false, "backup-agent")] {
        let store = dir.path().join(by);
        let mut cfg = config(&pg, &store);
        assert!(cfg.compression.server, "the server compresses by default");
        cfg.compression.server = on_server;
        let cfg = Arc::new(cfg);
        let storage = Storage::local(&store);
        let m = backup_agent::jobs::postgres_full(&job_ctx(&cfg, &storage))
            .await
            .expect("full backup");
        assert_eq!(m.info.get("compressed_by").map(String::as_str), Some(by));
        let base = m
            .objects
            .iter()
            .find(|o| o.key.ends_with("/base.tar.zst"))
            .unwrap_or_else(|| panic!("no base.tar.zst: {m:?}"));
        let stored = std::fs::read(store.join(&base.key)).expect("stored archive");
        assert_eq!(
            zstd_content_checksum(&stored),
            !on_server,
            "{by} compressed {}",
            base.key
        );
        let verified = succeeded(&cli(&store, &["verify", &m.id]));
        assert!(
            verified.contains("against the server's backup manifest"),
            "{verified}"
        );
        let target = dir.path().join(format!("{by}-restored"));
        succeeded(&cli(
            &store,
            &[
                "restore",
                "postgres",
                "--target-dir",
                target.to_str().expect("utf8"),
            ],
        ));
        let restored = start_restored(target).await;
        assert_eq!(
            app(&restored, q),
            app(&pg, q),
            "restored from {by}'s backup"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_is_never_listed_and_cleanup_removes_its_leftovers() {
    let pg = started().await;
    // Enough data that the backup is still streaming when it is killed.
    app(
        &pg,
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 1500000) g",
    );
    let dir = TempDir::new("backup-kill").expect("dir");
    let store = dir.path().join("storage");
    let mut child = full_backup_cmd(&pg, &store, postgres::REPL_USER, postgres::REPL_PASSWORD)
        .spawn()
        .expect("starts");
    // Kill it once it has started writing an object.
    let storage = Storage::local(&store);
    let deadline = Instant::now() + Duration::from_secs(30);
    while files(&store.join("postgres")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the backup never started writing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().expect("kill");
    let _ = child.wait();
    let listed = cli(&store, &["list"]);
    assert_eq!(
        listed_rows(&String::from_utf8_lossy(&listed.stdout)),
        0,
        "only the header: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // The prefix now belongs to the cluster (catalog/cluster.json); no manifest is there.
    assert_eq!(
        storage.keys("catalog").await.expect("list"),
        vec![common::catalog::CLUSTER_KEY.to_string()]
    );
    assert!(
        !storage
            .leftovers(Duration::ZERO)
            .await
            .expect("leftovers")
            .is_empty(),
        "a killed upload leaves a temporary object"
    );
    let out = cli(&store, &["cleanup"]);
    assert!(out.status.success());
    assert!(
        storage
            .leftovers(Duration::ZERO)
            .await
            .expect("leftovers")
            .is_empty()
    );
    assert!(
        files(&store)
            .iter()
            .all(|k| !k.contains(backup_agent::storage::TEMP_MARK))
    );
    // The next backup succeeds.
    let out = full_backup_cmd(&pg, &store, postgres::REPL_USER, postgres::REPL_PASSWORD)
        .output()
        .expect("runs");
    succeeded(&out);
    let listed = cli(&store, &["list"]);
    assert_eq!(listed_rows(&String::from_utf8_lossy(&listed.stdout)), 1);
    let log = std::fs::read_to_string(store.join("logs/backup.log")).expect("backup.log");
    assert!(
        log.contains("event=job_end job=postgres-full outcome=ok"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_missing_replication_and_unreachable_are_clear() {
    let pg = started().await;
    let e = ReplConn::connect(&settings(&pg, postgres::REPL_USER, "wrong"))
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, ReplError::WrongPassword { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("password authentication failed for user replicator"),
        "{e}"
    );
    let e = ReplConn::connect(&settings(&pg, postgres::APP_USER, postgres::APP_PASSWORD))
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, ReplError::NoReplication { .. }), "{e:?}");
    assert!(e.to_string().contains("REPLICATION"), "{e}");
    let closed = harness::process::free_port().expect("port");
    let mut s = settings(&pg, postgres::REPL_USER, postgres::REPL_PASSWORD);
    s.port = closed;
    let e = ReplConn::connect(&s).await.err().expect("refused");
    assert!(
        matches!(e, ReplError::Connect { .. }) && e.is_transient(),
        "{e:?}"
    );
    // The CLI exits non-zero with the cause, and nothing is listed.
    let dir = TempDir::new("backup-err").expect("dir");
    let store = dir.path().join("storage");
    let out = full_backup_cmd(&pg, &store, postgres::APP_USER, postgres::APP_PASSWORD)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REPLICATION"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(store.join("logs/backup.log")).expect("backup.log");
    assert!(
        log.contains("outcome=failed") && !log.contains(postgres::APP_PASSWORD),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_minimum_and_the_wal_they_need_and_damage_is_caught() {
    let pg = started().await;
    let dir = TempDir::new("backup-retention").expect("dir");
    let store = dir.path().join("storage");
    let mut cfg = config(&pg, &store);
    cfg.retention.keep = Duration::ZERO;
    cfg.retention.min_full_backups = 2;
    let cfg = Arc::new(cfg);
    let storage = Storage::local(&store);
    let (ctx, cancel, archiver) = archiver(&cfg, &storage);
    let mut fulls = vec![];
    for _ in 0..3 {
        app(
            &pg,
            "CREATE TABLE IF NOT EXISTS t (id serial PRIMARY KEY, v text)",
        );
        app(
            &pg,
            "INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g",
        );
        pg.psql_super("SELECT pg_switch_wal()").expect("switch");
        fulls.push(
            backup_agent::jobs::postgres_full(&ctx)
                .await
                .expect("full backup"),
        );
        // Distinct ids need distinct seconds.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_archived(&pg, &storage).await;
    let dry = backup_agent::jobs::cleanup(&ctx, true, Duration::ZERO)
        .await
        .expect("dry run");
    assert!(
        dry.contains(&format!("catalog/postgres-full/{}.json", fulls[0].id)),
        "{dry:?}"
    );
    assert!(
        storage
            .exists(&format!("catalog/postgres-full/{}.json", fulls[0].id))
            .await
            .expect("storage"),
        "dry run deleted"
    );
    let removed = backup_agent::jobs::cleanup(&ctx, false, Duration::ZERO)
        .await
        .expect("cleanup");
    assert_eq!(removed, dry);
    let cat = storage.catalog().await.expect("catalog");
    let mut kept: Vec<&str> = cat.manifests.iter().map(|m| m.id.as_str()).collect();
    kept.sort();
    assert_eq!(kept, vec![fulls[1].id.as_str(), fulls[2].id.as_str()]);
    // Every WAL segment a kept backup needs is still there.
    let seg = 16u64 << 20;
    for m in &fulls[1..] {
        let (s, e) = (
            parse_lsn(m.start_lsn.as_deref().expect("start")).expect("lsn") / seg,
            parse_lsn(m.end_lsn.as_deref().expect("end")).expect("lsn") / seg,
        );
        for segno in s..=e {
            let name = backup_agent::pg::lsn::segment_name(1, segno, seg);
            assert!(
                storage
                    .exists(&format!("wal/{name}.zst"))
                    .await
                    .expect("storage")
                    || storage
                        .exists(&format!("wal/{name}.partial.zst"))
                        .await
                        .expect("storage"),
                "WAL {name} needed by {} was deleted",
                m.id
            );
        }
    }
    assert!(
        removed.iter().any(|k| k.starts_with("wal/")),
        "old WAL was not cleaned: {removed:?}"
    );

    // A damaged object: restore says which and leaves the target empty.
    let base = fulls[2]
        .objects
        .iter()
        .find(|o| o.key.ends_with("base.tar.zst"))
        .expect("base")
        .key
        .clone();
    let path = store.join(&base);
    harness::process::damage(&path, 0xFF);
    let target = dir.path().join("restore");
    let out = cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            target.to_str().expect("utf8"),
            "--backup",
            &fulls[2].id,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&base) && err.contains("damaged"), "{err}");
    assert_eq!(
        std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0),
        0,
        "garbage left in the target"
    );
    cancel.cancel();
    let _ = archiver.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_checks_the_wal_has_no_gap() {
    let pg = started().await;
    for f in ["pg_switch_wal()", "pg_create_restore_point(text)"] {
        pg.psql_super(&format!(
            "GRANT EXECUTE ON FUNCTION {f} TO {}",
            postgres::REPL_USER
        ))
        .expect("grant");
    }
    let dir = TempDir::new("backup-incr").expect("dir");
    let store = dir.path().join("storage");
    let cfg = Arc::new(config(&pg, &store));
    let storage = Storage::local(&store);
    let (ctx, cancel, archiver) = archiver(&cfg, &storage);
    let full = backup_agent::jobs::postgres_full(&ctx).await.expect("full");
    app(
        &pg,
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g",
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let inc = backup_agent::jobs::postgres_incr(&ctx)
        .await
        .expect("incremental");
    assert_eq!(inc.start_lsn, full.end_lsn);
    assert!(
        parse_lsn(inc.end_lsn.as_deref().expect("end"))
            > parse_lsn(full.end_lsn.as_deref().expect("end"))
    );
    assert!(!inc.objects.is_empty());
    assert!(
        storage
            .exists(&common::catalog::BackupKind::PostgresIncr.manifest_key(&inc.id))
            .await
            .expect("storage")
    );

    // A segment goes missing from the archive: the next incremental refuses, naming it.
    app(
        &pg,
        "INSERT INTO t SELECT g FROM generate_series(1, 10000) g",
    );
    let lsn = pg
        .psql_super("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .expect("name");
    pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    wait_archived(&pg, &storage).await;
    let lost = lsn.trim().to_string();
    storage
        .delete(&format!("wal/{lost}.zst"))
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = backup_agent::jobs::postgres_incr(&ctx)
        .await
        .expect_err("gap");
    assert!(
        e.to_string().contains("not complete") && e.to_string().contains(&lost),
        "{e}"
    );
    let text = std::fs::read_to_string(&cfg.log_file).expect("log");
    assert!(text.contains("job=postgres-incr outcome=failed"), "{text}");
    cancel.cancel();
    let _ = archiver.await;
}

/// A PostgreSQL server and an S3-compatible server for one test.
/// A PostgreSQL of the harness, started off the async threads.
async fn started() -> Postgres {
    tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("join")
        .expect("postgres")
}

async fn pg_and_s3() -> (Postgres, harness::s3::S3Server) {
    let pg = started().await;
    let s3 = tokio::task::spawn_blocking(harness::s3::S3Server::start)
        .await
        .expect("join")
        .expect("s3");
    (pg, s3)
}

fn s3_toml(pg: &Postgres, s3: &harness::s3::S3Server, dir: &Path) -> std::path::PathBuf {
    let p = dir.join("backup-agent.toml");
    std::fs::write(
        &p,
        format!(
            "log_file = \"{}/backup.log\"\n[postgres]\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n\
             [storage.s3]\nbucket = \"{}\"\nprefix = \"cluster-a\"\nendpoint = \"{}\"\npath_style = true\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\npart_size = 5242880\n\
             request_timeout = \"10s\"\nconnect_timeout = \"2s\"\n",
            dir.display(),
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
    p
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_to_s3_restores_and_survives_s3_going_away() {
    let _serial = harness::serial();
    let (pg, mut s3) = pg_and_s3().await;
    // Enough data for a multipart upload (parts of 5 MiB).
    app(
        &pg,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((-g)::text) AS v FROM generate_series(1, 400000) g",
    );
    let dir = TempDir::new("backup-s3").expect("dir");
    let cfg_path = s3_toml(&pg, &s3, dir.path());
    let run = |args: &[&str]| with_config(&cfg_path, args);
    let out = run(&["backup", "postgres-full"]);
    succeeded(&out);
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert_eq!(listed_rows(&listed), 1, "{listed}");
    // The objects are really in the bucket, under the prefix.
    let in_bucket = files(&s3.root().join(harness::s3::BUCKET).join("cluster-a"));
    assert!(
        in_bucket.iter().any(|f| f.ends_with("base.tar.zst")),
        "{in_bucket:?}"
    );
    assert!(
        in_bucket
            .iter()
            .any(|f| f.contains("catalog/postgres-full")),
        "{in_bucket:?}"
    );

    let target = dir.path().join("restored");
    let out = run(&[
        "restore",
        "postgres",
        "--target-dir",
        target.to_str().expect("utf8"),
    ]);
    succeeded(&out);
    let restored = start_restored(target).await;
    let q = "SELECT count(*), md5(string_agg(v, '' ORDER BY id)) FROM t";
    assert_eq!(app(&restored, q), app(&pg, q));
    drop(restored);

    // S3 goes away in the middle of a backup: the job fails clearly, nothing new is listed.
    let child = Command::new(exe())
        .arg("--config")
        .arg(&cfg_path)
        .args(["backup", "postgres-full"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s3.stop();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("exits");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the backup succeeded without S3");
    assert!(err.contains("S3") || err.contains("storage"), "{err}");
    let log = std::fs::read_to_string(dir.path().join("backup.log")).expect("backup.log");
    assert!(log.contains("outcome=failed"), "{log}");
    let _s3 = resumed(s3).await;
    // Still one backup listed; a new one works now that S3 is back.
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert_eq!(
        listed_rows(&listed),
        1,
        "a partial backup is listed: {listed}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = run(&["backup", "postgres-full"]);
    succeeded(&out);
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert_eq!(listed_rows(&listed), 2, "{listed}");
    let out = run(&["cleanup", "--leftovers-older-than", "0s", "--dry-run"]);
    succeeded(&out);
}

/// Encrypted (age) full backup to S3: every stored object is ciphertext; restore without the key
/// or with the wrong key fails clearly and leaves the target empty; with the key the restored
/// server has the same rows, and verify passes.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backup_to_s3_restores_only_with_the_key() {
    let _serial = harness::serial();
    let (pg, s3) = pg_and_s3().await;
    app(
        &pg,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
    );
    let dir = TempDir::new("backup-age").expect("dir");
    let base = s3_toml(&pg, &s3, dir.path());
    let (secret, public) = backup_agent::crypt::generate();
    let (wrong, _) = backup_agent::crypt::generate();
    let key_file = dir.path().join("backup.key");
    let wrong_file = dir.path().join("wrong.key");
    std::fs::write(&key_file, format!("# test key\n{secret}\n")).expect("key");
    std::fs::write(&wrong_file, format!("{wrong}\n")).expect("key");
    let with = |name: &str, extra: &str| {
        let p = dir.path().join(name);
        let text = std::fs::read_to_string(&base).expect("config");
        std::fs::write(
            &p,
            format!("{text}[encryption]\nrecipients = [\"{public}\"]\n{extra}"),
        )
        .expect("config");
        p
    };
    let backup_only = with("backup.toml", "");
    let with_key = with(
        "restore.toml",
        &format!("identity_file = \"{}\"\n", key_file.display()),
    );
    let with_wrong = with(
        "wrong.toml",
        &format!("identity_file = \"{}\"\n", wrong_file.display()),
    );
    let run = |cfg: &Path, args: &[&str]| {
        Command::new(exe())
            .arg("--config")
            .arg(cfg)
            .args(args)
            .output()
            .expect("runs")
    };
    // Backing up needs only the public key.
    let out = run(&backup_only, &["backup", "postgres-full"]);
    succeeded(&out);
    let stored = files(&s3.root().join(harness::s3::BUCKET).join("cluster-a"));
    let objects: Vec<&String> = stored
        .iter()
        .filter(|f| f.contains("postgres/full/"))
        .collect();
    assert!(!objects.is_empty(), "{stored:?}");
    for o in &objects {
        assert!(o.ends_with(".zst.age"), "{o}");
        let head = std::fs::read(o).expect("read");
        assert!(head.starts_with(b"age-encryption.org/v1"), "{o} is not age");
    }

    for (cfg, want) in [
        (&backup_only, "no decryption key is configured"),
        (&with_wrong, "cannot decrypt"),
    ] {
        let target = dir.path().join("refused");
        let out = run(
            cfg,
            &[
                "restore",
                "postgres",
                "--target-dir",
                target.to_str().expect("utf8"),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "restored without the key");
        assert!(err.contains(want), "{err}");
        assert!(
            std::fs::read_dir(&target)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true),
            "a refused restore left files"
        );
    }
    let out = run(&with_key, &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let target = dir.path().join("restored");
    let out = run(
        &with_key,
        &[
            "restore",
            "postgres",
            "--target-dir",
            target.to_str().expect("utf8"),
        ],
    );
    succeeded(&out);
    let restored = start_restored(target).await;
    let q = "SELECT count(*), md5(string_agg(v, '' ORDER BY id)) FROM t";
    assert_eq!(app(&restored, q), app(&pg, q));
}

/// `verify --restore-drill`: the newest full backup plus the archived WAL restored into a
/// temporary cluster that is started and queried (rows written after the backup are there),
/// recorded in the catalog; a damaged backup fails the drill, recorded too; the temporary
/// cluster is gone either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_drill_passes_on_a_good_backup_and_fails_on_a_damaged_one() {
    let pg = started().await;
    let dir = TempDir::new("drill").expect("dir");
    let store = dir.path().join("storage");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let cfg = Arc::new(config(&pg, &store));
    // Private storage (the default modes): the drill's server runs as postgres, which cannot
    // read it; the agent fetches the WAL for it.
    let storage = Storage::from_config(&cfg.storage).await.expect("storage");
    let (ctx, cancel, archiver) = archiver(&cfg, &storage);
    app(
        &pg,
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    let m = backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup");
    // Written after the backup: only the WAL archive has them.
    app(
        &pg,
        "INSERT INTO t SELECT g FROM generate_series(1001, 1500) g",
    );
    wait_archived(&pg, &storage).await;
    let bindir = pg.bindir().to_path_buf();
    let (st, wk) = (store.clone(), work.clone());
    let drill = move || {
        let (store, work) = (&st, &wk);
        Command::new(exe())
            .args(["verify", "--restore-drill"])
            .env("BACKUP_AGENT_STORAGE__PATH", store)
            .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
            .env("BACKUP_AGENT_DRILL__DATABASE", postgres::APP_DB)
            // The rows, and how the drill's own connection was let in.
            .env(
                "BACKUP_AGENT_DRILL__QUERY",
                "SELECT count(*) || ' via ' || (SELECT string_agg(auth_method, ',') FROM pg_hba_file_rules) FROM t",
            )
            .env("BACKUP_AGENT_DRILL__WORK_DIR", work)
            .env("BACKUP_AGENT_DRILL__BIN_DIR", &bindir)
            .output()
            .expect("runs")
    };
    let out = tokio::task::spawn_blocking(drill.clone())
        .await
        .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The query ran once pg_hba was scram-sha-256 only: never trust, which would let any local
    // user who reaches the socket in.
    assert!(
        text.contains("FROM t -> 1500 via scram-sha-256\n"),
        "{text}"
    );
    let cat = storage.catalog().await.expect("catalog");
    assert_eq!(cat.drills.len(), 1);
    assert!(
        cat.drills[0].ok && cat.drills[0].backup_id == m.id,
        "{:?}",
        cat.drills
    );
    assert_eq!(
        files(&work),
        Vec::<String>::new(),
        "the drill cluster was not removed"
    );

    // Damage the base archive: the drill fails, names the object, and is recorded as failed.
    let base = m
        .objects
        .iter()
        .find(|o| o.key.ends_with("base.tar.zst"))
        .expect("base");
    let path = store.join(&base.key);
    harness::process::damage(&path, 0x10);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = tokio::task::spawn_blocking(drill).await.expect("join");
    assert!(!out.status.success(), "a drill of a damaged backup passed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("restore drill failed") && err.contains("base.tar.zst"),
        "{err}"
    );
    // verify finds the same damage, file by file.
    let out = cli(&store, &["verify", &m.id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("DAMAGED"), "{text}");
    let cat = storage.catalog().await.expect("catalog");
    assert_eq!(cat.drills.len(), 2);
    assert_eq!(cat.drills.iter().filter(|d| !d.ok).count(), 1);
    assert!(files(&work).is_empty(), "the drill cluster was not removed");
    let log_text = std::fs::read_to_string(store.join("logs/backup.log")).expect("log");
    assert!(
        log_text.contains("job=restore-drill outcome=ok"),
        "{log_text}"
    );
    assert!(
        log_text.contains("job=restore-drill outcome=failed"),
        "{log_text}"
    );
    cancel.cancel();
    let _ = archiver.await;
}

/// `sslmode = "disable"` against a server with `ssl = off`, as people write it: a full backup
/// (replication protocol) and the SQL connections (tokio-postgres, which asks for a TLS connector
/// even when it will not use one) both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_disable_backs_up_a_server_without_tls() {
    let pg = started().await;
    let dir = TempDir::new("backup-notls").expect("dir");
    let mut cfg = config(&pg, &dir.path().join("storage"));
    cfg.postgres.sslmode = common::TlsMode::Disable;
    let client = cfg.postgres.connect("test").await.expect("SQL without TLS");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(!ssl);
    let ctx = Ctx::for_command(cfg, CancellationToken::new())
        .await
        .expect("job context");
    let m = backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup with sslmode disable");
    assert!(m.objects.iter().any(|o| o.key.ends_with("base.tar.zst")));
}

/// TLS: a server that accepts TCP connections only over TLS. A full backup with
/// `sslmode = verify-full` against the test CA works; without TLS the server refuses; a
/// certificate that does not chain to a trusted root is refused by us; the SQL connections
/// (tokio-postgres) use TLS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_replication_connection_verifies_the_server() {
    let pg = tokio::task::spawn_blocking(|| {
        Postgres::start_with(postgres::PgOptions {
            tls: true,
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("postgres with TLS");
    let ca = pg.ca_file().expect("test CA");
    let dir = TempDir::new("backup-tls").expect("dir");
    let store = dir.path().join("storage");
    let mut cfg = config(&pg, &store);
    cfg.postgres.sslmode = common::TlsMode::VerifyFull;
    cfg.postgres.sslrootcert = Some(ca.clone());
    let ctx = Ctx::for_command(cfg.clone(), CancellationToken::new())
        .await
        .expect("job context");
    let m = backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup over verified TLS");
    assert!(m.objects.iter().any(|o| o.key.ends_with("base.tar.zst")));
    // The SQL side: tokio-postgres over the same TLS settings.
    let client = cfg.postgres.connect("test").await.expect("SQL over TLS");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl);

    // Without TLS the server's pg_hba refuses; with the system roots our side refuses.
    let mut plain = cfg.postgres.clone();
    plain.sslmode = common::TlsMode::Disable;
    let e = ReplConn::connect(&plain).await.err().expect("refused");
    assert!(e.to_string().contains("no encryption"), "{e}");
    let mut untrusted = cfg.postgres.clone();
    untrusted.sslrootcert = None;
    let e = ReplConn::connect(&untrusted).await.err().expect("refused");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // require encrypts without checking the certificate.
    let mut require = cfg.postgres.clone();
    require.sslmode = common::TlsMode::Require;
    require.sslrootcert = None;
    ReplConn::connect(&require).await.expect("require connects");
    // verify-ca checks the chain only.
    let mut ca_only = cfg.postgres.clone();
    ca_only.sslmode = common::TlsMode::VerifyCa;
    ReplConn::connect(&ca_only)
        .await
        .expect("verify-ca connects");
}

/// The agent SIGKILLed while a multipart upload is in flight: nothing is listed, the incomplete
/// upload stays on the server until `cleanup` aborts it, and the next backup succeeds.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_an_s3_upload_nothing_listed_and_cleanup_aborts_it() {
    let _serial = harness::serial();
    let (pg, s3) = pg_and_s3().await;
    // Poorly compressible rows, so the base archive needs several 5 MiB parts.
    app(
        &pg,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS v \
         FROM generate_series(1, 600000) g",
    );
    let dir = TempDir::new("backup-s3-kill").expect("dir");
    let cfg = s3_toml(&pg, &s3, dir.path());
    let uploads = || -> Vec<String> {
        std::fs::read_dir(s3.root())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.contains(".upload-") && n.ends_with(".metadata.json"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let run = |args: &[&str]| {
        Command::new(exe())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("runs")
    };
    let mut child = Command::new(exe())
        .arg("--config")
        .arg(&cfg)
        .args(["backup", "postgres-full"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploads().is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the backup finished before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        !uploads().is_empty(),
        "the interrupted upload is on the server"
    );
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert_eq!(
        listed_rows(&listed),
        0,
        "a killed backup is listed: {listed}"
    );

    let out = run(&["cleanup", "--dry-run", "--leftovers-older-than", "0s"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("would remove") && text.contains("incomplete upload"),
        "{text}"
    );
    assert!(!uploads().is_empty(), "a dry run removed something");
    let out = run(&["cleanup", "--leftovers-older-than", "0s"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("incomplete upload"),
        "{text}"
    );
    assert_eq!(
        uploads(),
        Vec::<String>::new(),
        "cleanup left uploads behind"
    );

    let out = run(&["backup", "postgres-full"]);
    succeeded(&out);
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert_eq!(listed_rows(&listed), 1, "{listed}");
    // The same for scripts: one JSON document on stdout.
    let out = run(&["list", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list: JSON alone");
    let backups = v["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 1, "{v}");
    assert_eq!(backups[0]["kind"], "postgres-full");
    assert!(backups[0]["bytes"].as_u64().is_some_and(|b| b > 0), "{v}");
    assert!(v["cluster"]["system_id"].is_string(), "{v}");
    let out = run(&["verify", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify: JSON alone");
    assert_eq!(v["ok"].as_bool(), Some(out.status.success()), "{v}");
    assert!(
        v["backups"].as_array().is_some_and(|b| !b.is_empty()),
        "{v}"
    );
}

/// Encrypted WAL archive: the archiver stores `.age` segments; `wal-fetch` (the restored server's
/// restore_command) decrypts them with the identity and, without it, fails clearly and writes
/// nothing where PostgreSQL would read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_wal_is_fetched_only_with_the_key() {
    let pg = started().await;
    let dir = TempDir::new("wal-age").expect("dir");
    let store = dir.path().join("storage");
    let (secret, public) = backup_agent::crypt::generate();
    let key = dir.path().join("backup.key");
    std::fs::write(&key, format!("{secret}\n")).expect("key");
    let mut cfg = config(&pg, &store);
    cfg.encryption.recipients = vec![public.clone()];
    let cfg = Arc::new(cfg);
    let storage = Storage::local(&store);
    let (_ctx, cancel, archiver) = archiver(&cfg, &storage);
    app(
        &pg,
        "CREATE TABLE w AS SELECT g FROM generate_series(1, 50000) g",
    );
    pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    app(&pg, "INSERT INTO w VALUES (0)");
    wait_archived(&pg, &storage).await;
    cancel.cancel();
    let _ = archiver.await;
    let segments: Vec<String> = files(&store.join("wal"))
        .into_iter()
        .filter(|f| f.ends_with(".zst.age") && !f.contains(".partial"))
        .collect();
    let first = segments.first().expect("an encrypted complete segment");
    let name = Path::new(first)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".zst.age"))
        .expect("segment name")
        .to_string();
    let fetch = |with_key: bool, dest: &Path| {
        let mut c = Command::new(exe());
        c.args(["wal-fetch", &name])
            .arg(dest)
            .env("BACKUP_AGENT_STORAGE__PATH", &store)
            .env(
                "BACKUP_AGENT_ENCRYPTION__RECIPIENTS",
                format!("[\"{public}\"]"),
            );
        if with_key {
            c.env("BACKUP_AGENT_ENCRYPTION__IDENTITY_FILE", &key);
        }
        c.output().expect("runs")
    };
    let dest = dir.path().join("fetched");
    let out = fetch(false, &dest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fetched without the key");
    assert!(err.contains("no decryption key is configured"), "{err}");
    assert!(
        !dest.exists(),
        "a failed fetch left a file where PostgreSQL reads"
    );
    let out = fetch(true, &dest);
    succeeded(&out);
    let bytes = std::fs::read(&dest).expect("segment");
    assert_eq!(bytes.len(), 16 << 20);
    // The first page header's magic: PostgreSQL 15's XLOG_PAGE_MAGIC, little-endian.
    assert_eq!(&bytes[..2], &0xD110u16.to_le_bytes());
}

/// A stored full backup whose archive is the given tar bytes (zstd, catalogued with its SHA-256),
/// as a hostile or broken writer could leave it.
async fn catalogued_archive(storage: &Storage, id: &str, tar: Vec<u8>) {
    use common::catalog::{BackupKind, Manifest, ObjectEntry};
    let codec = backup_agent::compress::Codec::plain(Default::default());
    let key = format!("postgres/full/{id}/base.tar.zst");
    let mut enc = codec
        .encoder(storage.create(&key).await.expect("create"))
        .expect("enc");
    tokio::io::AsyncWriteExt::write_all(&mut enc, &tar)
        .await
        .expect("write");
    let stored = enc
        .finish()
        .await
        .expect("finish")
        .finish()
        .await
        .expect("stored");
    let t = std::time::SystemTime::now();
    let m = Manifest {
        id: id.into(),
        kind: BackupKind::PostgresFull,
        started_at: t,
        finished_at: t,
        system_id: None,
        pg_version: Some(15),
        timeline: Some(1),
        start_lsn: Some("0/2000028".into()),
        end_lsn: Some("0/2000100".into()),
        compression: "zstd".into(),
        objects: vec![ObjectEntry {
            key,
            size: stored.size,
            sha256: stored.sha256,
        }],
        info: Default::default(),
    };
    storage
        .put(
            &BackupKind::PostgresFull.manifest_key(id),
            &serde_json::to_vec(&m).expect("json"),
        )
        .await
        .expect("manifest");
}

/// A tar entry written field by field, so that it can hold what `tar`'s builder refuses.
fn raw_entry(path: &str, kind: tar::EntryType, link: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t: Vec<u8> = entries.concat();
    t.extend_from_slice(&[0u8; 1024]);
    t
}

/// Hand-made hostile archives in storage: an entry climbing out with `..`, an absolute path, a
/// symlink to a directory outside with a file written through it, a hard link, and a setuid
/// file. Nothing is written outside the target, each restore fails naming the entry and leaves
/// the target empty; the setuid bit never survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_write_nothing_outside_the_target() {
    use tar::EntryType::{Link, Regular, Symlink};
    let dir = TempDir::new("hostile").expect("dir");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "dotdot",
            vec![raw_entry("../outside/x", Regular, "", 0o600, b"pwned")],
            "../outside/x",
        ),
        (
            "absolute",
            vec![raw_entry(
                &format!("{}/abs", outside.display()),
                Regular,
                "",
                0o600,
                b"pwned",
            )],
            "/abs",
        ),
        (
            "symlink",
            vec![
                raw_entry(
                    "escape",
                    Symlink,
                    outside.to_str().expect("utf8"),
                    0o777,
                    b"",
                ),
                raw_entry("escape/through", Regular, "", 0o600, b"pwned"),
            ],
            "\"escape\"",
        ),
        (
            "tblspc-then-through",
            vec![
                raw_entry(
                    "pg_tblspc/16400",
                    Symlink,
                    outside.to_str().expect("utf8"),
                    0o777,
                    b"",
                ),
                raw_entry("pg_tblspc/16400/through", Regular, "", 0o600, b"pwned"),
            ],
            "pg_tblspc/16400",
        ),
        (
            "hardlink",
            vec![raw_entry("hl", Link, "/etc/passwd", 0o600, b"")],
            "\"hl\"",
        ),
    ];
    let store = dir.path().join("store");
    let storage = Storage::local(&store);
    for (i, (name, entries, named)) in cases.into_iter().enumerate() {
        let id = format!("20260101T00000{i}Z");
        catalogued_archive(&storage, &id, tar_of(&entries)).await;
        let target = dir.path().join(format!("target-{name}"));
        let out = cli(
            &store,
            &[
                "restore",
                "postgres",
                "--backup",
                &id,
                "--target-dir",
                target.to_str().expect("utf8"),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{name}: restored a hostile archive");
        assert!(
            err.contains(named),
            "{name}: the error does not name the entry: {err}"
        );
        assert_eq!(
            files(&outside),
            Vec::<String>::new(),
            "{name}: written outside"
        );
        assert_eq!(
            files(&target),
            Vec::<String>::new(),
            "{name}: the target is not empty"
        );
    }
    // A setuid, world-writable file: restored with its permission bits only.
    let id = "20260101T000009Z";
    catalogued_archive(
        &storage,
        id,
        tar_of(&[raw_entry("PG_VERSION", Regular, "", 0o4777, b"15\n")]),
    )
    .await;
    let target = dir.path().join("target-setuid");
    succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--backup",
            id,
            "--target-dir",
            target.to_str().expect("utf8"),
        ],
    ));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    let m = mode(&target.join("PG_VERSION"));
    assert_eq!(m & 0o7000, 0, "setuid/setgid/sticky kept: {m:o}");
    assert_eq!(m & 0o700, 0o700, "{m:o}");
    assert_eq!(mode(&target), 0o700, "a data directory must be 0700");
    let settings = target.join(backup_agent::restore::SETTINGS_FILE);
    assert_eq!(mode(&settings), 0o600);
    let auto = std::fs::read_to_string(target.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(
        // In postgresql.auto.conf the command's quotes are doubled.
        auto.contains(&format!(
            "--config ''{}''",
            std::fs::canonicalize(&settings).expect("abs").display()
        )),
        "{auto}"
    );
}

/// A cluster with a tablespace: the backup stores it as its own archive; a restore puts it where
/// `--tablespace-map OID=DIR` says (or beside the target), links `pg_tblspc/<oid>` to it, and the
/// restored server reads the table in it, with the WAL replayed into it. A mapped OID the backup
/// does not have is refused before anything is written.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespaces_are_backed_up_and_restored_where_mapped() {
    let _serial = harness::serial();
    let pg = started().await;
    let location = pg.dir().join("ts");
    std::fs::create_dir(&location).expect("mkdir");
    harness::process::give_to_server_user(&location).expect("chown");
    pg.psql_super(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'",
        location.display()
    ))
    .expect("tablespace");
    pg.psql_super(&format!(
        "GRANT CREATE ON TABLESPACE ts TO {}",
        postgres::APP_USER
    ))
    .expect("grant");
    let oid = pg
        .psql_super("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'")
        .expect("oid")
        .trim()
        .to_string();
    let dir = TempDir::new("tablespaces").expect("dir");
    let store = dir.path().join("storage");
    let cfg = Arc::new(config(&pg, &store));
    let storage = Storage::local(&store);
    let (ctx, cancel, task) = archiver(&cfg, &storage);
    app(&pg, "CREATE TABLE t (id int PRIMARY KEY) TABLESPACE ts");
    app(&pg, "INSERT INTO t SELECT generate_series(1, 3)");
    let m = backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup");
    assert!(
        m.objects
            .iter()
            .any(|o| o.key.contains(&format!("/{oid}.tar"))),
        "{:?}",
        m.objects
    );
    app(&pg, "INSERT INTO t VALUES (4)");
    pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    wait_archived(&pg, &storage).await;
    cancel.cancel();
    let _ = task.await;
    let path = |name: &str| dir.path().join(name);

    let mapped = path("mapped-ts");
    let target = path("mapped");
    let out = succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            target.to_str().expect("utf8"),
            "--tablespace-map",
            &format!("{oid}={}", mapped.display()),
            "--owner",
            "postgres",
            "--recover",
        ],
    ));
    assert!(out.contains("recovered to LSN"), "{out}");
    assert_eq!(
        std::fs::read_link(target.join("pg_tblspc").join(&oid)).expect("a link"),
        mapped
    );
    let restored = start_restored(target).await;
    assert_eq!(ids(&restored), vec![1, 2, 3, 4]);
    let at = restored
        .psql_super(&format!("SELECT pg_tablespace_location({oid})"))
        .expect("location");
    assert_eq!(at.trim(), mapped.to_str().expect("utf8"));
    drop(restored);

    // No map: beside the target.
    let target = path("beside");
    succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            target.to_str().expect("utf8"),
            "--owner",
            "postgres",
        ],
    ));
    let beside = path(&format!("beside-tablespace-{oid}"));
    assert_eq!(
        std::fs::read_link(target.join("pg_tblspc").join(&oid)).expect("a link"),
        beside
    );
    let restored = start_restored(target).await;
    assert_eq!(ids(&restored), vec![1, 2, 3, 4]);
    drop(restored);

    let never = path("never");
    let out = cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            never.to_str().expect("utf8"),
            "--tablespace-map",
            &format!("99999={}", path("nowhere").display()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "restored with a map for no tablespace"
    );
    assert!(
        err.contains("has no tablespace 99999") && err.contains(&oid),
        "{err}"
    );
    assert!(!never.exists() && !path("nowhere").exists());
}

/// wal-fetch's exit status is what PostgreSQL acts on: 1 only when storage says the file does
/// not exist, 126 (recovery stops) for a storage outage after the retry window, a missing
/// config file, a missing secret file or a mangled command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_fetch_exits_1_only_for_absent_files() {
    let dir = TempDir::new("wal-fetch").expect("dir");
    let dest = dir.path().join("RECOVERYXLOG");
    let d = dest.to_str().expect("utf8");
    let status = |out: std::process::Output| {
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Empty local storage: absent.
    let (code, err) = status(cli(
        &dir.path().join("store"),
        &["wal-fetch", "000000010000000000000001", d],
    ));
    assert_eq!(code, Some(1), "{err}");
    // No such config file, no arguments: fatal.
    let (code, err) = status(
        Command::new(exe())
            .args([
                "--config",
                "/nonexistent/outrigger.toml",
                "wal-fetch",
                "000000010000000000000001",
                d,
            ])
            .output()
            .expect("runs"),
    );
    assert_eq!(code, Some(126), "{err}");
    let (code, err) = status(Command::new(exe()).arg("wal-fetch").output().expect("runs"));
    assert_eq!(code, Some(126), "{err}");
    // S3 down: retried for restore.wal_fetch_retry, then fatal; a missing secret file: fatal.
    let mut s3 = tokio::task::spawn_blocking(harness::s3::S3Server::start)
        .await
        .expect("join")
        .expect("s3");
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, harness::s3::SECRET_KEY).expect("secret");
    let cfg = dir.path().join("s3.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage.s3]\nbucket = \"{}\"\nendpoint = \"{}\"\npath_style = true\naccess_key_id = \"{}\"\n\
             secret_access_key_file = \"{}\"\nrequest_timeout = \"2s\"\nconnect_timeout = \"1s\"\n\
             [restore]\nwal_fetch_retry = \"2s\"\n",
            harness::s3::BUCKET,
            s3.endpoint(),
            harness::s3::ACCESS_KEY,
            secret.display()
        ),
    )
    .expect("config");
    let fetch = || {
        status(
            Command::new(exe())
                .arg("--config")
                .arg(&cfg)
                .args(["wal-fetch", "000000010000000000000001", d])
                .output()
                .expect("runs"),
        )
    };
    assert_eq!(fetch().0, Some(1), "absent in a reachable bucket");
    s3.stop();
    let (code, err) = fetch();
    assert_eq!(code, Some(126), "{err}");
    assert!(err.contains("restore.wal_fetch_retry"), "{err}");
    s3.resume().expect("s3 back");
    std::fs::remove_file(&secret).expect("rm");
    let (code, err) = fetch();
    assert_eq!(code, Some(126), "{err}");
    assert!(!dest.exists());
}

/// The S3 config of [`s3_toml`] with the secret in a file (readable by the server user, as
/// wal-fetch runs as PostgreSQL's user), a short wal-fetch retry, and the file's path.
fn s3_toml_secret_file(
    pg: &Postgres,
    s3: &harness::s3::S3Server,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let p = s3_toml(pg, s3, dir);
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, harness::s3::SECRET_KEY).expect("secret");
    let text = std::fs::read_to_string(&p).expect("config").replace(
        &format!("secret_access_key = \"{}\"", harness::s3::SECRET_KEY),
        &format!("secret_access_key_file = \"{}\"", secret.display()),
    );
    std::fs::write(
        &p,
        format!("{text}[restore]\nwal_fetch_retry = \"2s\"\n[wal]\nflush_interval = \"500ms\"\n"),
    )
    .expect("config");
    (p, secret)
}

/// Starts PostgreSQL on a restored directory whose recovery must stop by itself (an error);
/// returns its log.
async fn stopped_on_its_own(data: &Path) -> String {
    let d = data.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Postgres::run_existing_until_exit(&d, Duration::from_secs(120))
    })
    .await
    .expect("join")
    .expect("the server stops on its own")
}

/// The S3 server serving again after `stop`.
async fn resumed(mut s3: harness::s3::S3Server) -> harness::s3::S3Server {
    tokio::task::spawn_blocking(move || {
        s3.resume().expect("S3 back");
        s3
    })
    .await
    .expect("join")
}

/// Whether a server that stopped on its own had promoted (a new timeline, no recovery.signal).
fn promoted(data: &Path, log: &str) -> bool {
    log.contains("selected new timeline ID") || !data.join("recovery.signal").exists()
}

/// A "latest" restore from S3 whose recovery meets a missing secret file, then an S3 outage:
/// PostgreSQL stops with an error each time instead of promoting at the end of the base backup;
/// once both are back, restarting recovery reaches the latest point and the rows equal the
/// source's.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_restore_stops_instead_of_promoting_when_storage_fails() {
    let _serial = harness::serial();
    let (pg, mut s3) = pg_and_s3().await;
    let dir = TempDir::new("restore-outage").expect("dir");
    let (cfg_path, secret) = s3_toml_secret_file(&pg, &s3, dir.path());
    let cfg: Config = common::config::load(Some(&cfg_path)).expect("config");
    let cfg = Arc::new(cfg);
    let storage = Storage::from_config(&cfg.storage).await.expect("storage");
    let (_ctx, cancel, task) = archiver(&cfg, &storage);
    app(&pg, "CREATE TABLE t (id int PRIMARY KEY)");
    app(&pg, "INSERT INTO t SELECT generate_series(1, 3)");
    let run = |args: &[&str]| with_config(&cfg_path, args);
    succeeded(&run(&["backup", "postgres-full"]));
    for id in 4..=6 {
        app(&pg, &format!("INSERT INTO t VALUES ({id})"));
        pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    }
    app(&pg, "INSERT INTO t VALUES (7)");
    wait_archived(&pg, &storage).await;
    cancel.cancel();
    let _ = task.await;
    let target = dir.path().join("latest");
    succeeded(&run(&[
        "restore",
        "postgres",
        "--target-dir",
        target.to_str().expect("utf8"),
    ]));

    // The secret file is missing on the restore host: recovery stops, nothing promoted.
    std::fs::rename(&secret, dir.path().join("elsewhere")).expect("mv");
    let log = stopped_on_its_own(&target).await;
    assert!(
        log.contains("could not restore file") && log.contains("FATAL"),
        "{log}"
    );
    assert!(
        log.contains("s3-secret"),
        "the error names the secret file: {log}"
    );
    assert!(
        !promoted(&target, &log),
        "promoted without the archive: {log}"
    );
    std::fs::rename(dir.path().join("elsewhere"), &secret).expect("mv back");

    // S3 is down: wal-fetch retries for restore.wal_fetch_retry, then recovery stops.
    s3.stop();
    let log = stopped_on_its_own(&target).await;
    assert!(log.contains("restore.wal_fetch_retry"), "{log}");
    assert!(
        !promoted(&target, &log),
        "promoted during an S3 outage: {log}"
    );

    // Both back: recovery reaches the latest point.
    let s3 = resumed(s3).await;
    let restored = start_restored(target).await;
    assert_eq!(ids(&restored), ids(&pg));
    assert_eq!(ids(&restored), (1..=7).collect::<Vec<_>>());
    drop(s3);
}

/// WAL prefetch during a "latest" restore from S3: segments are handed over from the spool; a
/// spool no prefetcher holds (planted garbage, under this cluster's key and another's) is never
/// used; S3 stopped in the middle of replay (once the spool holds a segment) still stops
/// recovery without promoting, and once S3 is back recovery reaches the latest point exactly.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_hands_segments_over_and_an_outage_mid_replay_still_stops_recovery() {
    let _serial = harness::serial();
    let (pg, mut s3) = pg_and_s3().await;
    let dir = TempDir::new("prefetch").expect("dir");
    let (cfg_path, _secret) = s3_toml_secret_file(&pg, &s3, dir.path());
    let text = std::fs::read_to_string(&cfg_path).expect("config");
    std::fs::write(
        &cfg_path,
        text.replace("[restore]\n", "[restore]\nprefetch = 2\n"),
    )
    .expect("config");
    let cfg: Config = common::config::load(Some(&cfg_path)).expect("config");
    assert_eq!(cfg.restore.prefetch, 2);
    let cfg = Arc::new(cfg);
    let storage = Storage::from_config(&cfg.storage).await.expect("storage");
    let (_ctx, cancel, task) = archiver(&cfg, &storage);
    app(&pg, "CREATE TABLE t (id int PRIMARY KEY, pad text)");
    let run = |args: &[&str]| with_config(&cfg_path, args);
    succeeded(&run(&["backup", "postgres-full"]));
    const SEGMENTS: i32 = 16;
    for n in 0..SEGMENTS {
        app(
            &pg,
            &format!(
                "INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series({}, {}) g",
                n * 1000 + 1,
                n * 1000 + 1000
            ),
        );
        pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    }
    wait_archived(&pg, &storage).await;
    cancel.cancel();
    let _ = task.await;
    let target = dir.path().join("latest");
    succeeded(&run(&[
        "restore",
        "postgres",
        "--target-dir",
        target.to_str().expect("utf8"),
    ]));
    std::fs::OpenOptions::new()
        .append(true)
        .open(target.join("postgresql.conf"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"\nlog_min_messages = log\n"))
        .expect("log what is restored");
    let system_id = pg
        .psql_super("SELECT system_identifier FROM pg_control_system()")
        .expect("system id")
        .trim()
        .to_string();
    let spools = target
        .join("pg_wal")
        .join(backup_agent::pg::prefetch::SPOOL_DIR);
    let spool = spools.join(&system_id);
    for d in [&spool, &spools.join("12345")] {
        std::fs::create_dir_all(d).expect("mkdir");
        for segno in 1..=0x30u64 {
            let name = backup_agent::pg::lsn::segment_name(1, segno, 16 << 20);
            std::fs::write(d.join(name), b"stale garbage").expect("plant");
        }
    }

    // S3 stops once recovery is under way and the prefetcher has spooled a segment.
    let t = target.clone();
    let server = tokio::spawn(async move { stopped_on_its_own(&t).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let spooled = std::fs::read_dir(&spool)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| backup_agent::pg::prefetch::read_header(&e.path()).is_ok());
        if spooled {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was ever prefetched");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s3.stop();
    let log = server.await.expect("join");
    let restored = log.matches("restored log file").count();
    assert!(
        restored >= 1 && log.contains("restore.wal_fetch_retry"),
        "not stopped mid-replay: {log}"
    );
    assert!(
        !promoted(&target, &log),
        "promoted during an S3 outage: {log}"
    );

    // S3 back: recovery reaches the latest point, through the spool.
    let s3 = resumed(s3).await;
    let mut restored = start_restored(target.clone()).await;
    assert_eq!(ids(&restored), ids(&pg));
    assert_eq!(ids(&restored).len(), (SEGMENTS * 1000) as usize);
    let log_path = restored.proc().log_path().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(30);
    let handed = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("handed to PostgreSQL")) {
            break line
                .split(", ")
                .nth(1)
                .and_then(|w| w.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{line}"));
        }
        assert!(
            Instant::now() < deadline,
            "the prefetcher never ended: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(handed >= 1, "no segment came from the spool");
    assert!(
        !spools.join(&system_id).exists(),
        "the spool is left behind"
    );
    drop(s3);
}

/// A table `t` with rows 1-3, a full backup, then row 4, its WAL archived and the archiver
/// stopped: the temp dir `name`, its storage directory and a client for it.
async fn backed_up_rows_1_to_4(
    pg: &Postgres,
    name: &str,
) -> (TempDir, std::path::PathBuf, Storage) {
    backed_up(pg, name, &[4], false).await
}

/// A table `t` with rows 1-3, a full backup, then each row of `after` in a WAL segment of its
/// own, archived, and the archiver stopped: the temp dir `name`, its storage directory and a
/// client for it. `private`: storage with the default modes (0600, PostgreSQL's user cannot read
/// it); else the umask's.
async fn backed_up(
    pg: &Postgres,
    name: &str,
    after: &[i32],
    private: bool,
) -> (TempDir, std::path::PathBuf, Storage) {
    let dir = TempDir::new(name).expect("dir");
    let store = dir.path().join("storage");
    let cfg = Arc::new(config(pg, &store));
    let storage = if private {
        Storage::from_config(&cfg.storage).await.expect("storage")
    } else {
        Storage::local(&store)
    };
    let (ctx, cancel, task) = archiver(&cfg, &storage);
    app(pg, "CREATE TABLE t (id int PRIMARY KEY)");
    app(pg, "INSERT INTO t SELECT generate_series(1, 3)");
    backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup");
    for id in after {
        app(pg, &format!("INSERT INTO t VALUES ({id})"));
        pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    }
    wait_archived(pg, &storage).await;
    cancel.cancel();
    let _ = task.await;
    (dir, store, storage)
}

/// A primary whose `max_connections` comes from a file outside its data directory (compose's
/// `config_file`, a Debian cluster's /etc/postgresql): the restored directory's own settings are
/// lower than the primary's, and `--recover` must still replay and promote (a hot standby would
/// refuse to start below the primary's values). It runs with no programs on PATH, like a slim
/// image without `kill`: the temporary server is still stopped at once.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_works_when_the_primary_had_higher_settings_than_the_restored_files() {
    let _serial = harness::serial();
    let outside = std::env::temp_dir().join(format!(
        "outrigger-outside-{}-{}.conf",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    ));
    std::fs::write(
        &outside,
        "max_connections = 250\nmax_worker_processes = 12\n",
    )
    .expect("write");
    let include = format!("include_if_exists '{}'", outside.display());
    let pg = tokio::task::spawn_blocking(move || {
        Postgres::start_with(postgres::PgOptions {
            extra_conf: vec![include],
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("postgres");
    assert_eq!(
        pg.psql_super("SHOW max_connections").expect("show").trim(),
        "250"
    );
    let (dir, store, _) = backed_up_rows_1_to_4(&pg, "restore-settings").await;
    // The restore host has the data directory's files only, and (a slim image) no `kill`
    // program: an empty PATH.
    std::fs::remove_file(&outside).expect("remove");
    let target = dir.path().join("restored");
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).expect("dir");
    let out = succeeded(
        &Command::new(exe())
            .args(["restore", "postgres", "--target-dir"])
            .arg(&target)
            .args(["--owner", "postgres", "--recover"])
            .env("BACKUP_AGENT_STORAGE__PATH", &store)
            .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
            .env("PATH", &empty)
            .output()
            .expect("backup-agent runs"),
    );
    assert!(out.contains("recovered to LSN"), "{out}");
    let restored = start_restored(target).await;
    assert_eq!(ids(&restored), vec![1, 2, 3, 4]);
}

/// Storage is private by default: 0600 files in 0700 directories, owned by the agent's user
/// (root here), which PostgreSQL's user cannot read. `restore --recover --owner postgres` still
/// replays every archived segment: the restore process fetches the WAL with its own rights and
/// hands each file over through the data directory's spool, and `wal-fetch` (run by the server
/// as postgres) only asks. A damaged segment stops that recovery with the damage named, never
/// a promotion short of the archive's end. A restore the operator starts themself is warned
/// about at restore time, and its recovery stops at the first WAL file (exit 126, not "absent").
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_as_another_user_replays_from_private_storage() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = harness::serial();
    let pg = started().await;
    // Rows 4-6, one segment each: several files to serve after the backup.
    let (dir, store, _) = backed_up(&pg, "private", &[4, 5, 6], true).await;

    // The default modes, on everything under the storage directory.
    fn modes(p: &Path, out: &mut Vec<(String, u32, bool)>) {
        for e in std::fs::read_dir(p).expect("read_dir").flatten() {
            let m = e.metadata().expect("stat");
            out.push((
                e.path().display().to_string(),
                m.permissions().mode() & 0o777,
                m.is_dir(),
            ));
            if m.is_dir() {
                modes(&e.path(), out);
            }
        }
    }
    let mut seen = vec![];
    modes(&store, &mut seen);
    let wal = seen.iter().filter(|(p, _, _)| p.contains("/wal/")).count();
    assert!(wal >= 3, "archived WAL: {seen:?}");
    for (p, mode, is_dir) in &seen {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{p} is {mode:04o}");
    }

    let restore = |target: &Path, extra: &[&str]| {
        Command::new(exe())
            .args(["restore", "postgres", "--target-dir"])
            .arg(target)
            .args(["--owner", "postgres"])
            .args(extra)
            .env("BACKUP_AGENT_STORAGE__PATH", &store)
            .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
            .env("BACKUP_AGENT_RESTORE__WAL_FETCH_RETRY", "1s")
            .output()
            .expect("backup-agent runs")
    };
    let recovered = dir.path().join("recovered");
    let out = succeeded(&restore(&recovered, &["--recover"]));
    assert!(out.contains("recovered to LSN"), "{out}");
    let restored = start_restored(recovered).await;
    assert_eq!(ids(&restored), vec![1, 2, 3, 4, 5, 6]);
    drop(restored);

    // Started by the operator: wal-fetch runs as postgres and cannot read the storage. Warned
    // at restore time; recovery then stops, as for any storage error.
    let plain = dir.path().join("plain");
    let out = restore(&plain, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("is not readable for it") && err.contains("--recover"),
        "{err}"
    );
    let log = stopped_on_its_own(&plain).await;
    assert!(!promoted(&plain, &log), "{log}");
    assert!(log.contains("Permission denied"), "{log}");

    // A damaged segment (the last row's): recovery stops there, the damage named.
    let last = seen
        .iter()
        .filter(|(p, _, d)| !d && p.contains("/wal/") && p.ends_with(".zst"))
        .map(|(p, _, _)| p.clone())
        .max()
        .expect("a WAL object");
    let mut bytes = std::fs::read(&last).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&last, bytes).expect("damage");
    let damaged = dir.path().join("damaged");
    let out = restore(&damaged, &["--recover"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "recovered past a damaged segment");
    assert!(
        err.contains("without promoting") && err.contains("is damaged"),
        "{err}"
    );
}

/// `--time` in PostgreSQL's own format and `--lsn` restore exactly; `--recover` leaves a
/// directory a stock PostgreSQL starts (no restore_command, no settings file); targets past the
/// archive and times without a zone are refused before anything is written; a damaged WAL
/// object stops recovery naming it; verify names a gap in the WAL chain.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_and_lsn_restores_are_exact_and_recover_leaves_a_stock_cluster() {
    let _serial = harness::serial();
    let pg = started().await;
    let dir = TempDir::new("restore-exact").expect("dir");
    let store = dir.path().join("storage");
    let cfg = Arc::new(config(&pg, &store));
    let storage = Storage::local(&store);
    let (ctx, cancel, task) = archiver(&cfg, &storage);
    app(&pg, "CREATE TABLE t (id int PRIMARY KEY)");
    app(&pg, "INSERT INTO t SELECT generate_series(1, 3)");
    backup_agent::jobs::postgres_full(&ctx)
        .await
        .expect("full backup");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // What people paste: PostgreSQL's timestamptz text, e.g. 2026-12-02 05:52:06.916482+00.
    let time = pg
        .psql_super("SELECT now()::text")
        .expect("now")
        .trim()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app(&pg, "INSERT INTO t VALUES (4)");
    app(&pg, "INSERT INTO t VALUES (5)");
    let lsn = pg
        .psql_super("SELECT pg_current_wal_lsn()::text")
        .expect("lsn")
        .trim()
        .to_string();
    app(&pg, "INSERT INTO t VALUES (6)");
    pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    app(&pg, "INSERT INTO t VALUES (7)");
    wait_archived(&pg, &storage).await;
    cancel.cancel();
    let _ = task.await;
    let path = |name: &str| dir.path().join(name).to_str().expect("utf8").to_string();

    let at_time = path("at-time");
    let out = succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--time",
            &time,
            "--target-dir",
            &at_time,
            "--recover",
            "--owner",
            "postgres",
        ],
    ));
    assert!(out.contains("recovered to LSN"), "{out}");
    let at_time = Path::new(&at_time);
    assert!(!at_time.join(backup_agent::restore::SETTINGS_FILE).exists());
    assert!(!at_time.join("recovery.signal").exists());
    let auto = std::fs::read_to_string(at_time.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(!auto.contains("restore_command"), "{auto}");
    let restored = start_restored(at_time.to_path_buf()).await;
    assert_eq!(ids(&restored), vec![1, 2, 3], "restored to {time}");
    drop(restored);

    // The same moment as RFC 3339 in another zone, and one backup's consistency point: the
    // runbook's other two forms, each recovered in place.
    let in_paris = format!(
        "{}+01:00",
        pg.psql_super(&format!(
            "SELECT to_char('{time}'::timestamptz AT TIME ZONE 'Etc/GMT-1', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
        ))
        .expect("to_char")
        .trim()
    );
    let listed = succeeded(&cli(&store, &["list"]));
    let backup_id = listed
        .lines()
        .find(|l| l.contains("postgres-full"))
        .and_then(|l| l.split_whitespace().find(|w| w.ends_with('Z')))
        .unwrap_or_else(|| panic!("a full backup id in {listed}"))
        .to_string();
    for (flag, value) in [("--time", in_paris.as_str()), ("--backup", &backup_id)] {
        let target = path(&format!("at{flag}"));
        let out = succeeded(&cli(
            &store,
            &[
                "restore",
                "postgres",
                "--target-dir",
                &target,
                "--owner",
                "postgres",
                "--recover",
                flag,
                value,
            ],
        ));
        assert!(out.contains("recovered to LSN"), "{out}");
        let restored = start_restored(target.into()).await;
        assert_eq!(ids(&restored), vec![1, 2, 3], "restored {flag} {value}");
        drop(restored);
    }

    let at_lsn = path("at-lsn");
    succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--lsn",
            &lsn,
            "--target-dir",
            &at_lsn,
        ],
    ));
    let restored = start_restored(at_lsn.into()).await;
    assert_eq!(ids(&restored), vec![1, 2, 3, 4, 5], "restored to {lsn}");
    drop(restored);

    for (flag, value, says) in [
        ("--lsn", "FF/0", "past the newest archived WAL"),
        (
            "--time",
            "2999-01-01 00:00:00+00",
            "past the newest archived WAL",
        ),
        ("--time", "2026-12-02 05:52:06", "no time zone"),
    ] {
        let never = path("never");
        let out = cli(
            &store,
            &["restore", "postgres", flag, value, "--target-dir", &never],
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success() && err.contains(says),
            "{flag} {value}: {err}"
        );
        assert!(
            files(Path::new(&never)).is_empty(),
            "{flag} {value} wrote files"
        );
    }
    let verified = succeeded(&cli(&store, &["verify"]));
    assert!(verified.contains("WAL complete"), "{verified}");

    // A catalog manifest that cannot be read fails verify, named, and is never taken as absent.
    let manifest = store
        .join("catalog/postgres-full")
        .join(format!("{backup_id}.json"));
    let good = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &good[..good.len() / 2]).expect("truncate");
    let out = cli(&store, &["verify"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains(&format!("{backup_id}.json")) && report.contains("unreadable"),
        "{report}"
    );
    std::fs::write(&manifest, &good).expect("put back");

    // A damaged segment: recovery stops, naming the object.
    let mut segments: Vec<String> = files(&store.join("wal"))
        .into_iter()
        .filter(|f| f.ends_with(".zst") && !f.contains(".partial") && !f.contains(".history"))
        .collect();
    segments.sort();
    let newest = segments.last().expect("an archived segment").clone();
    harness::process::damage(Path::new(&newest), 0x55);
    let damaged = path("damaged");
    succeeded(&cli(
        &store,
        &["restore", "postgres", "--target-dir", &damaged],
    ));
    let log = stopped_on_its_own(Path::new(&damaged)).await;
    let key = newest.rsplit('/').next().expect("name");
    assert!(log.contains(key) && log.contains("damaged"), "{log}");
    assert!(
        !promoted(Path::new(&damaged), &log),
        "promoted past a damaged segment: {log}"
    );

    // A gap in the chain: verify names the missing segment and exits non-zero.
    let gone = &segments[segments.len() - 2];
    std::fs::remove_file(gone).expect("rm");
    let out = cli(&store, &["verify"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let name = gone
        .rsplit('/')
        .next()
        .expect("name")
        .trim_end_matches(".zst");
    assert!(!out.status.success(), "{report}");
    assert!(report.contains(name), "{report}");
}

/// Every WAL object with its bytes.
fn wal_snapshot(store: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files(&store.join("wal"))
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).expect("read");
            (f, b)
        })
        .collect();
    out.sort();
    out
}

/// One storage prefix, one cluster: a second cluster's full backup and archiver are refused,
/// naming both identifiers, and the first's WAL is untouched. Then PITR across a promotion: a
/// restore with --recover (timeline 2) archived into the same prefix by the agent, rows written
/// on it, and a restore to a moment on timeline 2 gives exactly the rows before it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prefix_one_cluster_and_pitr_across_a_promotion() {
    let _serial = harness::serial();
    let pg = started().await;
    let (dir, store, storage) = backed_up_rows_1_to_4(&pg, "one-cluster").await;

    // A second cluster pointed at the same storage.
    let other = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("join")
        .expect("postgres");
    let sysid = |p: &Postgres| {
        p.psql_super("SELECT system_identifier FROM pg_control_system()")
            .expect("sysid")
            .trim()
            .to_string()
    };
    let before = wal_snapshot(&store);
    let out = full_backup_cmd(&other, &store, postgres::REPL_USER, postgres::REPL_PASSWORD)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "a second cluster backed up into the prefix"
    );
    assert!(
        err.contains(&sysid(&pg))
            && err.contains(&sysid(&other))
            && err.contains("storage.s3.prefix"),
        "{err}"
    );
    let other_cfg = Arc::new(config(&other, &store));
    let (_, cancel, task) = archiver(&other_cfg, &storage);
    app(&other, "CREATE TABLE u AS SELECT 1 AS x");
    other.psql_super("SELECT pg_switch_wal()").expect("switch");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cancel.cancel();
    let _ = task.await;
    let backup_log = std::fs::read_to_string(store.join("logs/backup.log")).expect("log");
    assert!(
        backup_log.contains("belongs to PostgreSQL cluster"),
        "{backup_log}"
    );
    assert!(
        wal_snapshot(&store) == before,
        "the second cluster changed the first's WAL"
    );
    drop(other);

    // Restore and promote (timeline 2), archive it into the same prefix, PITR on timeline 2.
    let promoted_dir = dir.path().join("promoted");
    let out = succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--target-dir",
            promoted_dir.to_str().expect("utf8"),
            "--recover",
            "--owner",
            "postgres",
        ],
    ));
    assert!(out.contains("promoted to timeline 2"), "{out}");
    let restored = start_restored(promoted_dir).await;
    let rcfg = Arc::new(config(&restored, &store));
    let (_, cancel, task) = archiver(&rcfg, &storage);
    app(&restored, "INSERT INTO t VALUES (5)");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let time = restored
        .psql_super("SELECT now()::text")
        .expect("now")
        .trim()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app(&restored, "INSERT INTO t VALUES (6)");
    restored
        .psql_super("SELECT pg_switch_wal()")
        .expect("switch");
    wait_archived(&restored, &storage).await;
    cancel.cancel();
    let _ = task.await;
    assert!(
        store.join("wal/00000002.history.zst").exists(),
        "{:?}",
        files(&store.join("wal"))
    );
    let pitr = dir.path().join("pitr-tl2");
    succeeded(&cli(
        &store,
        &[
            "restore",
            "postgres",
            "--time",
            &time,
            "--target-dir",
            pitr.to_str().expect("utf8"),
        ],
    ));
    let again = start_restored(pitr).await;
    assert_eq!(
        ids(&again),
        vec![1, 2, 3, 4, 5],
        "restored to {time} on timeline 2"
    );
    let verified = succeeded(&cli(&store, &["verify"]));
    assert!(verified.contains("WAL complete"), "{verified}");
}

/// The daemon on an empty catalog takes a full backup at once (WAL archived without one restores
/// nothing until the first scheduled full); restarted with one in the catalog, it does not; with
/// `schedule.initial_full = false`, it never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_on_an_empty_catalog_takes_a_full_backup() {
    let pg = started().await;
    let dir = TempDir::new("initial-full").expect("dir");
    let store = dir.path().join("storage");
    let fulls = || {
        std::fs::read_dir(store.join("catalog/postgres-full"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let daemon = |initial: bool| {
        daemon_cmd(
            &pg.port.to_string(),
            &store,
            &[
                ("BACKUP_AGENT_WAL__ENABLED", "false"),
                (
                    "BACKUP_AGENT_SCHEDULE__INITIAL_FULL",
                    if initial { "true" } else { "false" },
                ),
            ],
        )
        .1
    };
    let stop = |mut c: std::process::Child| {
        harness::process::send(c.id(), libc::SIGTERM);
        let _ = c.wait();
    };
    // Off: nothing in 5 s.
    let d = daemon(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop(d);
    assert_eq!(fulls(), 0, "initial_full = false took a backup");
    // On, empty catalog: one full backup, logged as the initial one.
    let d = daemon(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fulls() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no initial full backup:\n{}",
            std::fs::read_to_string(store.join("logs/backup.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(d);
    let log = std::fs::read_to_string(store.join("logs/backup.log")).expect("backup.log");
    assert!(log.contains("event=initial_full"), "{log}");
    // On again, with a full backup in the catalog: no second one.
    let d = daemon(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop(d);
    assert_eq!(fulls(), 1);
}

/// The daemon on local storage `store` with PostgreSQL at `pg_port` (replication user), a full
/// schedule that never fires during a test, and `env` on top: (its listen address, the process).
fn daemon_cmd(pg_port: &str, store: &Path, env: &[(&str, &str)]) -> (String, std::process::Child) {
    let port = harness::process::free_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(exe())
        .env("BACKUP_AGENT_LISTEN", &listen)
        .env("BACKUP_AGENT_STORAGE__PATH", store)
        .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
        .env("BACKUP_AGENT_POSTGRES__PORT", pg_port)
        .env("BACKUP_AGENT_POSTGRES__USER", postgres::REPL_USER)
        .env("BACKUP_AGENT_POSTGRES__PASSWORD", postgres::REPL_PASSWORD)
        .env("BACKUP_AGENT_WAL__FLUSH_INTERVAL", "500ms")
        .env("BACKUP_AGENT_SCHEDULE__FULL", "0 2 29 2 *")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    (listen, child)
}

/// Waits until `/readyz` answers `status`.
async fn readyz_becomes(listen: &str, status: u16, within: Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = harness::http::get(listen, "/readyz").map(|(s, _)| s).ok();
        if got == Some(status) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: /readyz answered {got:?}, not {status}, within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/readyz` says whether the daemon is doing its work: 503 until the WAL archiver streams, 200
/// while it does, 503 again once PostgreSQL is gone; and 503 while a scheduled job's last run
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_archiver_and_the_last_job_runs() {
    let mut pg = started().await;
    let dir = TempDir::new("readyz").expect("dir");
    let store = dir.path().join("storage");
    let (listen, mut d) = daemon_cmd(
        &pg.port.to_string(),
        &store,
        &[("BACKUP_AGENT_SCHEDULE__INITIAL_FULL", "false")],
    );
    readyz_becomes(&listen, 200, Duration::from_secs(30), "archiver streaming").await;
    pg.proc().stop();
    readyz_becomes(&listen, 503, Duration::from_secs(30), "PostgreSQL stopped").await;
    harness::process::send(d.id(), libc::SIGTERM);
    let _ = d.wait();

    // No archiver; the first full backup fails (nothing listens on the port).
    let closed = harness::process::free_port().expect("port").to_string();
    let (listen, mut d) = daemon_cmd(&closed, &store, &[("BACKUP_AGENT_WAL__ENABLED", "false")]);
    readyz_becomes(
        &listen,
        503,
        Duration::from_secs(30),
        "the initial full backup failed",
    )
    .await;
    harness::process::send(d.id(), libc::SIGTERM);
    let _ = d.wait();
    let log = std::fs::read_to_string(store.join("logs/backup.log")).expect("backup.log");
    assert!(
        log.contains("event=job_end job=postgres-full outcome=failed"),
        "{log}"
    );
}

/// SIGTERM in the middle of a backup: with the grace (default 5 min) the backup finishes and is
/// listed before the daemon exits; with no grace it is aborted, logged `outcome=aborted`, nothing
/// listed and no temporary file left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_backup_finish_within_the_grace_or_aborts_it_cleanly() {
    let pg = started().await;
    // Enough data that the backup is still running when the signal comes.
    app(
        &pg,
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) AS t \
         FROM generate_series(1, 600000) i",
    );
    let dir = TempDir::new("grace").expect("dir");
    for (grace, finishes) in [("5m", true), ("0s", false)] {
        let store = dir.path().join(format!("storage-{grace}"));
        let log_path = store.join("logs/backup.log");
        let (_, mut d) = daemon_cmd(
            &pg.port.to_string(),
            &store,
            &[
                ("BACKUP_AGENT_WAL__ENABLED", "false"),
                ("BACKUP_AGENT_SHUTDOWN_GRACE", grace),
            ],
        );
        // The initial full backup starts; the signal comes at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("event=job_start job=postgres-full")
        {
            assert!(std::time::Instant::now() < deadline, "no backup started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        harness::process::send(d.id(), libc::SIGTERM);
        let exited = tokio::task::spawn_blocking(move || d.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(exited.success(), "grace {grace}: exit {exited:?}");
        let log = std::fs::read_to_string(&log_path).expect("backup.log");
        let fulls = std::fs::read_dir(store.join("catalog/postgres-full"))
            .map(|d| d.count())
            .unwrap_or(0);
        let partials: Vec<String> = files(&store)
            .into_iter()
            .filter(|n| n.contains(".partial-"))
            .collect();
        assert!(partials.is_empty(), "grace {grace}: left {partials:?}");
        if finishes {
            assert!(
                log.contains("event=shutdown_wait jobs=postgres-full"),
                "{log}"
            );
            assert!(
                log.contains("event=job_end job=postgres-full outcome=ok"),
                "{log}"
            );
            assert_eq!(fulls, 1, "grace {grace}");
        } else {
            assert!(
                log.contains("event=job_end job=postgres-full outcome=aborted"),
                "{log}"
            );
            assert!(!log.contains("outcome=ok"), "{log}");
            assert_eq!(fulls, 0, "an aborted backup is listed");
        }
    }
}

/// The archiver through the bad hour, on S3: PostgreSQL restarted fast and then immediately,
/// backup-agent SIGKILLed mid-stream and started again, S3 stopped while segments are being
/// stored. After each, the archiver picks up where the slot is; in the end `verify` finds the WAL
/// chain from the full backup complete and a recovery to the latest point has every row.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_loses_nothing_across_restarts_a_sigkill_and_an_s3_outage() {
    let _serial = harness::serial();
    let (mut pg, s3) = pg_and_s3().await;
    let dir = TempDir::new("archiver-faults").expect("dir");
    let (cfg_path, _secret) = s3_toml_secret_file(&pg, &s3, dir.path());
    let cfg: Config =
        common::config::load_from("BACKUP_AGENT", Some(&cfg_path), Vec::new()).expect("config");
    let storage = Storage::from_config(&cfg.storage).await.expect("storage");
    let daemon = || {
        let port = harness::process::free_port().expect("port");
        Command::new(exe())
            .arg("--config")
            .arg(&cfg_path)
            .env("BACKUP_AGENT_LISTEN", format!("127.0.0.1:{port}"))
            .env("BACKUP_AGENT_SCHEDULE__FULL", "0 2 29 2 *")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("daemon")
    };
    app(&pg, "CREATE TABLE t (id int)");
    let mut d = daemon();
    // The initial full backup, then WAL on top of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(dir.path().join("backup.log"))
        .unwrap_or_default()
        .contains("event=job_end job=postgres-full outcome=ok")
    {
        assert!(Instant::now() < deadline, "no initial full backup");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut next = 1;
    let mut write = |pg: &Postgres, n: i32| {
        for _ in 0..n {
            app(pg, &format!("INSERT INTO t VALUES ({next})"));
            next += 1;
        }
        pg.psql_super("SELECT pg_switch_wal()").expect("switch");
    };

    write(&pg, 3);
    wait_archived(&pg, &storage).await;
    // PostgreSQL: a fast shutdown and start, then an immediate one.
    pg.proc().signal(libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.proc().is_running() {
        assert!(Instant::now() < deadline, "fast shutdown did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.restart().expect("start again");
        pg
    })
    .await
    .expect("join");
    write(&pg, 3);
    wait_archived(&pg, &storage).await;
    pg = tokio::task::spawn_blocking(move || {
        pg.restart().expect("immediate restart");
        pg
    })
    .await
    .expect("join");
    write(&pg, 3);
    wait_archived(&pg, &storage).await;

    // backup-agent SIGKILLed while WAL flows; writes go on; it starts again.
    write(&pg, 2);
    let _ = d.kill();
    let _ = d.wait();
    write(&pg, 3);
    let mut d = daemon();
    wait_archived(&pg, &storage).await;

    // S3 stops answering while segments complete; the slot keeps them; S3 comes back.
    let mut s3 = s3;
    s3.stop();
    write(&pg, 3);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s3 = resumed(s3).await;
    write(&pg, 2);
    wait_archived(&pg, &storage).await;
    let want = ids(&pg);
    assert_eq!(want.len(), 19);
    harness::process::send(d.id(), libc::SIGTERM);
    let _ = d.wait();

    // verify walks the WAL chain from the full backup: no gap.
    let out = with_config(&cfg_path, &["verify"]);
    let report = succeeded(&out);
    assert!(!report.contains("DAMAGED"), "{report}");
    // And a recovery to the latest point has every row.
    let target = dir.path().join("restored");
    let out = with_config(
        &cfg_path,
        &[
            "restore",
            "postgres",
            "--target-dir",
            target.to_str().expect("utf8"),
            "--recover",
            "--owner",
            "postgres",
        ],
    );
    succeeded(&out);
    let restored = start_restored(target).await;
    assert_eq!(ids(&restored), want);
    drop(restored);
    drop(s3);
}

/// Compose's pg_hba.conf, on a real PostgreSQL 15 (the compose network's range swapped for
/// loopback): the replicator may open a replication connection with scram (BASE_BACKUP and the
/// WAL archiver need it; the stock image's pg_hba has no replication line), and another role may
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_pg_hba_lets_the_replicator_replicate() {
    let dir = TempDir::new("compose-hba").expect("dir");
    dir.give_to_server_user().expect("chown");
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/postgres/pg_hba.conf"),
    )
    .expect("compose/postgres/pg_hba.conf");
    assert!(shipped.contains("172.25.0.0/16"), "{shipped}");
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(&hba, shipped.replace("172.25.0.0/16", "127.0.0.1/32")).expect("hba");
    harness::process::give_to_server_user(&hba).expect("chown");
    let opts = postgres::PgOptions {
        extra_conf: vec![format!("hba_file = '{}'", hba.display())],
        ..Default::default()
    };
    let pg = tokio::task::spawn_blocking(move || Postgres::start_with(opts))
        .await
        .expect("join")
        .expect("postgres with compose's pg_hba");
    let repl = settings(&pg, postgres::REPL_USER, postgres::REPL_PASSWORD);
    let mut c = ReplConn::connect(&repl)
        .await
        .expect("replication as the replicator");
    c.query("IDENTIFY_SYSTEM").await.expect("IDENTIFY_SYSTEM");
    let app = settings(&pg, postgres::APP_USER, postgres::APP_PASSWORD);
    assert!(
        ReplConn::connect(&app).await.is_err(),
        "another role got a replication connection"
    );
}

/// Local storage fills up during a full backup: the job fails naming the storage error, nothing
/// is listed, no temporary file is left, and the next backup works once there is space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_full_backup_fails_it_cleanly() {
    let Some(disk) = harness::disk::SmallDisk::for_test("1m") else {
        return;
    };
    let pg = started().await;
    app(
        &pg,
        "CREATE TABLE noise AS SELECT md5(random()::text) || md5(random()::text) AS a \
         FROM generate_series(1, 100000)",
    );
    let store = disk.path().to_path_buf();
    let out = full_backup_cmd(&pg, &store, postgres::REPL_USER, postgres::REPL_PASSWORD)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a backup to a full disk succeeded");
    assert!(err.to_lowercase().contains("space"), "{err}");
    let listed = std::fs::read_dir(store.join("catalog/postgres-full"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(listed, 0, "a failed backup is listed");
    let partials: Vec<String> = files(&store)
        .into_iter()
        .filter(|f| f.contains(".partial-"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
    disk.resize("512m");
    let out = full_backup_cmd(&pg, &store, postgres::REPL_USER, postgres::REPL_PASSWORD)
        .output()
        .expect("runs");
    succeeded(&out);
    let listed = cli(&store, &["list"]);
    assert_eq!(listed_rows(&String::from_utf8_lossy(&listed.stdout)), 1);
}
