//! Logical dumps against the harness's real PostgreSQL 15: pg_dump of every database and the
//! globals into storage as one catalog entry, pg_restore of one database into a new one with
//! equal contents; without a superuser the roles are dumped without passwords; a damaged dump
//! is refused before pg_restore sees it.

use std::path::Path;
use std::process::{Command, Output};

use harness::postgres::{self, Postgres};
use harness::process::TempDir;

/// backup-agent storing into `store`, dumping as `user`.
fn agent_cmd(pg: &Postgres, store: &Path, user: &str, password: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_backup-agent"));
    c.env("BACKUP_AGENT_STORAGE__PATH", store)
        .env("BACKUP_AGENT_LOG_FILE", store.join("logs/backup.log"))
        .env("BACKUP_AGENT_LOGICAL__POSTGRES__PORT", pg.port.to_string())
        .env("BACKUP_AGENT_LOGICAL__POSTGRES__USER", user)
        .env("BACKUP_AGENT_LOGICAL__POSTGRES__PASSWORD", password)
        .env("BACKUP_AGENT_LOGICAL__POSTGRES__DBNAME", "postgres");
    c
}

fn agent(pg: &Postgres, store: &Path, user: &str, password: &str, args: &[&str]) -> Output {
    agent_cmd(pg, store, user, password)
        .args(args)
        .output()
        .expect("run backup-agent")
}

/// Creates database `db` and restores the dump's `app` database into it, as the superuser.
fn restore_app_into(pg: &Postgres, store: &Path, db: &str) -> Output {
    pg.psql_super(&format!("CREATE DATABASE {db} OWNER app"))
        .expect("create");
    let dsn = pg.conninfo(postgres::SUPERUSER, postgres::SUPERUSER_PASSWORD, db);
    agent(
        pg,
        store,
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
        &[
            "restore",
            "postgres-logical",
            "--database",
            "app",
            "--dsn",
            &dsn,
        ],
    )
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn catalog(store: &Path) -> common::catalog::Catalog {
    common::catalog::Catalog::read_local(store).expect("catalog")
}

const FINGERPRINT: &str = "SELECT count(*) || ':' || sum(id) || ':' || md5(string_agg(v, ',' ORDER BY id)) || ':' || (SELECT count(*) FROM t_view) || ':' || (SELECT last_value || '/' || is_called FROM t_seq) FROM t";

#[test]
fn dump_every_database_and_restore_one() {
    let pg = Postgres::start().expect("postgres");
    pg.psql(
        postgres::APP_USER,
        postgres::APP_PASSWORD,
        postgres::APP_DB,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 5000) i; \
         CREATE VIEW t_view AS SELECT * FROM t WHERE id % 2 = 0; \
         CREATE SEQUENCE t_seq START 42; SELECT nextval('t_seq');",
    )
    .expect("data");
    let want = pg
        .psql(
            postgres::APP_USER,
            postgres::APP_PASSWORD,
            postgres::APP_DB,
            FINGERPRINT,
        )
        .expect("fingerprint");
    let store = TempDir::new("logical").expect("dir");

    let out = agent(
        &pg,
        store.path(),
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
        &["backup", "postgres-logical"],
    );
    let text = ok(&out);
    assert!(text.contains("postgres-logical"), "{text}");
    let cat = catalog(store.path());
    let m = cat
        .newest(common::catalog::BackupKind::PostgresLogical)
        .expect("listed");
    assert_eq!(m.info["databases"], "app,postgres");
    assert_eq!(m.info["role_passwords"], "true");
    assert_eq!(m.objects.len(), 3, "{:?}", m.objects);
    let globals = m
        .objects
        .iter()
        .find(|o| o.key.ends_with("globals.sql.zst"))
        .expect("globals");
    let sql = zstd_text(&store.path().join(&globals.key));
    assert!(sql.contains("CREATE ROLE app"), "{sql}");
    assert!(sql.contains("SCRAM-SHA-256"), "role passwords dumped");

    // Restore app into a new database: the same rows, view and sequence.
    let out = restore_app_into(&pg, store.path(), "app_restored");
    ok(&out);
    let got = pg
        .psql(
            postgres::APP_USER,
            postgres::APP_PASSWORD,
            "app_restored",
            FINGERPRINT,
        )
        .expect("fingerprint");
    assert_eq!(got, want);

    // A database the dump does not have: a clear error.
    let dsn = pg.conninfo(
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
        "app_restored",
    );
    let out = agent(
        &pg,
        store.path(),
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
        &[
            "restore",
            "postgres-logical",
            "--database",
            "nope",
            "--dsn",
            &dsn,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no logical dump in the catalog has database \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Damage the app dump: restore refuses before pg_restore runs; the target stays empty.
    let app = m
        .objects
        .iter()
        .find(|o| o.key.ends_with("/app.dump.zst"))
        .expect("app dump");
    let path = store.path().join(&app.key);
    harness::process::damage(&path, 0x01);
    let out = restore_app_into(&pg, store.path(), "app_damaged");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is damaged") && err.contains("nothing was restored"),
        "{err}"
    );
    let tables = pg
        .psql(
            postgres::APP_USER,
            postgres::APP_PASSWORD,
            "app_damaged",
            "SELECT count(*) FROM pg_class WHERE relname = 't'",
        )
        .expect("query");
    assert_eq!(tables.trim(), "0");

    // Without a superuser: the app database only, roles without passwords, said so. Started
    // within the same second as the first dump or not, it gets its own id.
    let out = agent_cmd(
        &pg,
        store.path(),
        postgres::APP_USER,
        postgres::APP_PASSWORD,
    )
    .args(["backup", "postgres-logical"])
    .env("BACKUP_AGENT_LOGICAL__POSTGRES__DBNAME", postgres::APP_DB)
    .env("BACKUP_AGENT_LOGICAL__DATABASES", "[app]")
    .output()
    .expect("run");
    ok(&out);
    let cat = catalog(store.path());
    let m = cat
        .newest(common::catalog::BackupKind::PostgresLogical)
        .expect("listed");
    assert_eq!(m.info["databases"], "app");
    assert_eq!(m.info["role_passwords"], "false");
    let dumps = cat
        .manifests
        .iter()
        .filter(|m| m.kind == common::catalog::BackupKind::PostgresLogical)
        .count();
    assert_eq!(dumps, 2);
}

/// Dumps run back to back (well within a second): each waits for a second no dump of its kind has
/// used, instead of writing over another's objects.
#[test]
fn backups_in_the_same_second_get_their_own_ids() {
    let pg = Postgres::start().expect("postgres");
    let store = TempDir::new("logical-ids").expect("dir");
    let run = || {
        agent(
            &pg,
            store.path(),
            postgres::SUPERUSER,
            postgres::SUPERUSER_PASSWORD,
            &["backup", "postgres-logical"],
        )
    };
    for _ in 0..3 {
        ok(&run());
    }
    let ids: std::collections::BTreeSet<String> = catalog(store.path())
        .manifests
        .iter()
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let out = agent(
        &pg,
        store.path(),
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
        &["verify"],
    );
    ok(&out);
}

/// A database whose name reads like a connection string is dumped as that database: it never
/// redirects pg_dump (and the password) to another server.
#[test]
fn a_database_named_like_a_conninfo_is_only_a_name() {
    let pg = Postgres::start().expect("postgres");
    let store = TempDir::new("logical-names").expect("dir");
    // Read as a conninfo, this would send pg_dump to a port nothing listens on.
    let name = "host=127.0.0.1 port=1 dbname=postgres";
    pg.psql_super(&format!("CREATE DATABASE \"{name}\""))
        .expect("create");
    let out = agent_cmd(
        &pg,
        store.path(),
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
    )
    .env("BACKUP_AGENT_LOGICAL__DATABASES", format!("[\"{name}\"]"))
    .args(["backup", "postgres-logical"])
    .output()
    .expect("run");
    ok(&out);
    let cat = catalog(store.path());
    let m = cat.manifests.last().expect("dump");
    assert_eq!(m.info["databases"], name);
    assert!(
        m.objects
            .iter()
            .any(|o| o.key.contains(&format!("{name}.dump"))),
        "{:?}",
        m.objects
    );
}

/// Storage that fills up in the middle of a dump: the job fails at once with the storage's
/// error (the tool is stopped, not left blocked on its pipe), nothing is listed, and the next
/// dump works once there is space.
#[test]
fn a_full_disk_mid_dump_fails_the_job_and_the_next_one_works() {
    let Some(disk) = harness::disk::SmallDisk::for_test("1m") else {
        return;
    };
    let pg = Postgres::start().expect("postgres");
    // About 13 MB that compresses to several: more than the disk and the pipe hold.
    pg.psql(
        postgres::APP_USER,
        postgres::APP_PASSWORD,
        postgres::APP_DB,
        "CREATE TABLE noise AS SELECT md5(random()::text) || md5(random()::text) AS a \
         FROM generate_series(1, 200000)",
    )
    .expect("data");
    let store = disk.path();
    let mut cmd = agent_cmd(
        &pg,
        store,
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
    );
    cmd.env("BACKUP_AGENT_LOGICAL__DATABASES", "[\"app\"]")
        .args(["backup", "postgres-logical"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run");
    // Bounded: before the fix the agent waited forever on a pg_dump blocked on its full pipe.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the dump hung on a full disk");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a dump to a full disk succeeded");
    assert!(
        err.contains("storing the dump failed") && err.to_lowercase().contains("space"),
        "{err}"
    );
    // Nothing listed: no catalog entry was written.
    let entries = std::fs::read_dir(store.join("catalog/postgres-logical"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "a failed dump is listed");
    // Space again: the next dump works.
    disk.resize("256m");
    let out = agent(
        &pg,
        store,
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
        &["backup", "postgres-logical"],
    );
    ok(&out);
    assert_eq!(catalog(store).manifests.len(), 1);
}

fn zstd_text(p: &Path) -> String {
    use tokio::io::AsyncReadExt;
    let bytes = std::fs::read(p).expect("read");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut dec = backup_agent::compress::decoder(
            backup_agent::config::Algorithm::Zstd,
            tokio::io::BufReader::new(std::io::Cursor::new(bytes)),
        );
        let mut text = String::new();
        dec.read_to_string(&mut text).await.expect("zstd");
        text
    })
}

/// Client tools older than the server are refused before anything runs, naming the package. The
/// "tools" here are scripts reporting version 14 in a `logical.bin_dir` (the server is real).
#[test]
fn older_client_tools_are_refused_clearly() {
    let pg = Postgres::start().expect("postgres");
    let store = TempDir::new("logical-old").expect("dir");
    let bin = TempDir::new("old-tools").expect("dir");
    for tool in ["pg_dump", "pg_dumpall"] {
        let p = bin.path().join(tool);
        std::fs::write(&p, format!("#!/bin/sh\necho '{tool} (PostgreSQL) 14.11'\n"))
            .expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = agent_cmd(
        &pg,
        store.path(),
        postgres::SUPERUSER,
        postgres::SUPERUSER_PASSWORD,
    )
    .args(["backup", "postgres-logical"])
    .env("BACKUP_AGENT_LOGICAL__BIN_DIR", bin.path())
    .output()
    .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pg_dump is version 14 but the server is PostgreSQL 15")
            && err.contains("postgresql-client-15"),
        "{err}"
    );
    assert!(
        !store.path().join("postgres").exists(),
        "something was stored"
    );
}
