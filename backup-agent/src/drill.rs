//! Restore drill (`verify --restore-drill`): the newest full backup plus the archived WAL restored
//! into a temporary directory, a throwaway PostgreSQL started on it (socket only, its own
//! pg_hba), a query run once recovery is over, the result recorded in the catalog
//! (`catalog/drills/<id>.json`) and the metrics, and the directory removed whatever happened.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::catalog::{BackupKind, DRILLS_PREFIX, DrillRecord};
use serde::{Deserialize, Serialize};

use crate::compress::Codec;
use crate::restore::Target;
use crate::storage::Storage;

/// Restore drill settings (`[drill]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Drill {
    /// Directory of the `postgres` binary. Default `/usr/lib/postgresql/<backup's major>/bin`
    /// when it exists, else PATH.
    pub bin_dir: Option<PathBuf>,
    /// Where the temporary cluster goes. Default the system's temp directory.
    pub work_dir: Option<PathBuf>,
    /// The role and database the query runs as/in (the restored cluster's). Default `postgres`.
    pub user: String,
    pub database: String,
    /// The query whose first value is recorded. Default
    /// `SELECT count(*) FROM pg_database`.
    pub query: String,
    /// When running as root, PostgreSQL runs as this OS user. Default `postgres`.
    pub os_user: String,
    /// Bound on restore, recovery and query together. Default `30m`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Drill {
    fn default() -> Self {
        Self {
            bin_dir: None,
            work_dir: None,
            user: "postgres".into(),
            database: "postgres".into(),
            query: "SELECT count(*) FROM pg_database".into(),
            os_user: "postgres".into(),
            timeout: Duration::from_secs(1800),
        }
    }
}

/// Runs one drill and records it (passed or failed). `restore_command` is what the temporary
/// cluster fetches WAL with (this binary's `wal-fetch`). Returns the record; a failed drill is
/// `Ok` with `ok = false` (the error is in `detail`), an error only when nothing could be recorded.
pub async fn run(
    cfg: &crate::config::Config,
    storage: &Storage,
    codec: &Codec,
    restore_command: &str,
) -> anyhow::Result<DrillRecord> {
    let d = &cfg.drill;
    let started_at = SystemTime::now();
    let id = crate::pg::basebackup::new_id(started_at);
    let cat = storage.catalog().await?;
    let backup = cat
        .newest(BackupKind::PostgresFull)
        .ok_or_else(|| anyhow::anyhow!("no complete full backup to drill"))?
        .clone();
    let work = d
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("outrigger-drill-{id}-{}", std::process::id()));
    let outcome = tokio::time::timeout(
        d.timeout,
        attempt(d, storage, codec, restore_command, &backup, &work),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish within {:?}", d.timeout)));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let record = DrillRecord {
        id: id.clone(),
        backup_id: backup.id.clone(),
        started_at,
        finished_at: SystemTime::now(),
        ok: outcome.is_ok(),
        detail: match &outcome {
            Ok(v) => format!("{} -> {v}", d.query),
            Err(e) => format!("{e:#}"),
        },
    };
    storage
        .put(
            &format!("{DRILLS_PREFIX}{id}.json"),
            &serde_json::to_vec_pretty(&record)?,
        )
        .await?;
    Ok(record)
}

/// Restore, start, wait for recovery, query, stop. The result of the query as text.
async fn attempt(
    d: &Drill,
    storage: &Storage,
    codec: &Codec,
    restore_command: &str,
    backup: &common::catalog::Manifest,
    work: &Path,
) -> anyhow::Result<String> {
    let data = work.join("data");
    let sock = work.join("sock");
    tokio::fs::create_dir_all(&sock).await?;
    crate::restore::restore(storage, codec, &Target::Latest, &data, restore_command)
        .await
        .map_err(|e| anyhow::anyhow!("restore of {}: {e:#}", backup.id))?;
    // A data directory from a Debian cluster has its postgresql.conf in /etc: give it one.
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        tokio::fs::write(&conf, b"").await?;
    }
    let hba = work.join("drill_hba.conf");
    tokio::fs::write(&hba, b"local all all trust\n").await?;
    let owner = os_user(&d.os_user)?;
    if let Some((uid, gid)) = owner {
        chown_tree(work, uid, gid)?;
    }
    set_mode(&data, 0o700)?;
    let postgres = postgres_binary(d, backup.pg_version);
    let port = free_port()?;
    let log = std::fs::File::create(work.join("postgres.log"))?;
    let mut cmd = tokio::process::Command::new(&postgres);
    cmd.arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", sock.display()))
        .arg("-c")
        .arg(format!("hba_file={}", hba.display()))
        .args(["-c", "archive_mode=off", "-c", "logging_collector=off"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e} (set drill.bin_dir)", postgres.display()))?;
    let result = query_when_recovered(d, &sock, port, &mut child).await;
    stop(&mut child).await;
    result.map_err(|e| {
        let tail = log_tail(&work.join("postgres.log"));
        anyhow::anyhow!("{e:#}; server log: {tail}")
    })
}

async fn query_when_recovered(
    d: &Drill,
    sock: &Path,
    port: u16,
    child: &mut tokio::process::Child,
) -> anyhow::Result<String> {
    let mut c = tokio_postgres::Config::new();
    c.host_path(sock)
        .port(port)
        .user(&d.user)
        .dbname(&d.database)
        .application_name("backup-agent drill")
        .connect_timeout(Duration::from_secs(5));
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the restored server exited ({status}) before recovery finished");
        }
        match c.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                let recovering: bool = client
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .await?
                    .get(0);
                if !recovering {
                    let msg = client.simple_query(&d.query).await.map_err(|e| {
                        anyhow::anyhow!("{}: {}", d.query, common::conn::pg_error_text(&e))
                    })?;
                    let value = msg.iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).unwrap_or("NULL").to_string())
                        }
                        _ => None,
                    });
                    return value.ok_or_else(|| anyhow::anyhow!("{} returned no row", d.query));
                }
            }
            // Not accepting connections yet (starting, or replaying WAL).
            Err(e) => tracing::debug!("drill: {}", common::conn::pg_error_text(&e)),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fast shutdown (SIGINT), then kill.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

fn postgres_binary(d: &Drill, major: Option<u32>) -> PathBuf {
    if let Some(dir) = &d.bin_dir {
        return dir.join("postgres");
    }
    if let Some(m) = major {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{m}/bin/postgres"));
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("postgres")
}

/// (uid, gid) of `name` when we are root (PostgreSQL refuses to run as root); `None` otherwise.
fn os_user(name: &str) -> anyhow::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return Ok(Some((f[2].parse()?, f[3].parse()?)));
        }
    }
    anyhow::bail!(
        "running as root and there is no OS user {name:?} to run PostgreSQL as (drill.os_user)"
    )
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn log_tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
