//! `restore postgres --recover` and restore drills: a temporary postmaster on a restored data
//! directory — run as its owner, reachable only through a socket in a private 0700 directory (no
//! TCP), its own pg_hba (peer; a drill's query over scram-sha-256), the WAL served by this process
//! ([`Wal`]) — replays WAL to the target and promotes; it must then answer a query,
//! and it is shut down cleanly (a fast shutdown writes a checkpoint, so the directory needs no
//! recovery at its next start). Reports where recovery ended.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::compress::Codec;
use crate::pg::prefetch::{self, Serving, Spool};
use crate::storage::Storage;

/// One recovery run.
pub struct Run<'a> {
    /// The restored data directory (with `recovery.signal`).
    pub dir: &'a Path,
    /// Directory of the PostgreSQL server binaries.
    pub bin: &'a Path,
    /// (uid, gid) the server runs as; `None`: this process's user.
    pub owner: Option<(u32, u32)>,
    /// Role and database to connect as (peer authentication, on the private socket only: see
    /// [`auth_files`]).
    pub user: &'a str,
    pub database: &'a str,
    /// A query whose first value is returned (restore drills).
    pub query: Option<&'a str>,
    /// Where the WAL comes from: this process serves every file the server asks for.
    pub wal: Wal<'a>,
}

/// The archive the temporary server replays from. This process fetches (with its own rights,
/// which PostgreSQL's user may not have: storage is 0600 by default) and hands the files over
/// through the data directory's spool; `wal-fetch`, the server's restore_command, only asks.
pub struct Wal<'a> {
    pub storage: &'a Storage,
    pub codec: &'a Codec,
    pub settings: &'a crate::config::Restore,
}

/// Where recovery ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovered {
    /// The last WAL record replayed.
    pub lsn: String,
    /// The commit time of the last transaction replayed, as PostgreSQL prints it.
    pub last_transaction: Option<String>,
    /// The timeline the promoted server writes on.
    pub timeline: u32,
    /// The first value of [`Run::query`].
    pub answer: Option<String>,
    /// How long replay took, by the server's own count ("redo done ... elapsed").
    pub replay: Option<Duration>,
}

impl std::fmt::Display for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered to LSN {} (last transaction at {}), promoted to timeline {}",
            self.lsn,
            self.last_transaction.as_deref().unwrap_or("-"),
            self.timeline
        )?;
        match self.replay {
            Some(d) => write!(f, ", WAL replayed in {:.2} s", d.as_secs_f64()),
            None => Ok(()),
        }
    }
}

/// The directory of the `postgres` binary: `configured`, else `/usr/lib/postgresql/<major>/bin`
/// when it exists, else whatever PATH has (an empty path).
pub fn bin_dir(configured: Option<&Path>, major: Option<u32>) -> PathBuf {
    if let Some(d) = configured {
        return d.to_path_buf();
    }
    if let Some(m) = major {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{m}/bin"));
        if p.join("postgres").exists() {
            return p;
        }
    }
    PathBuf::new()
}

/// Starts the server, waits until it has promoted, queries it, stops it.
pub async fn run(r: &Run<'_>) -> anyhow::Result<Recovered> {
    use std::os::unix::fs::DirBuilderExt;
    let private = std::env::temp_dir().join(format!(
        "outrigger-recover-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let conf = r.dir.join("postgresql.conf");
    // A data directory from a Debian cluster keeps its postgresql.conf in /etc: lend it an empty
    // one for this run.
    let lent_conf = !conf.exists();
    let result = async {
        if lent_conf {
            super::unpack::write_nofollow(&conf, b"", false, 0o600)?;
        }
        let (hba, ident) = auth_files(&private, r.user)?;
        if let Some((uid, gid)) = r.owner {
            crate::osuser::chown_tree(&private, uid, gid)?;
            if lent_conf {
                std::os::unix::fs::lchown(&conf, Some(uid), Some(gid))?;
            }
        }
        let spool =
            Spool::of_data_dir(r.dir).map_err(|e| anyhow::anyhow!("{}: {e}", r.dir.display()))?;
        let how = Serving {
            owner: r.owner,
            retry: r.wal.settings.wal_fetch_retry,
        };
        let lock = spool
            .open_served(how)
            .map_err(|e| anyhow::anyhow!("the WAL spool {}: {e}", spool.dir.display()))?;
        let stop_serving = CancellationToken::new();
        // Also when this future is dropped (a drill's timeout): the task must not outlive it.
        let _stop_on_drop = stop_serving.clone().drop_guard();
        let serving = {
            let (spool, storage, codec) =
                (spool.clone(), r.wal.storage.clone(), r.wal.codec.clone());
            let (depth, stop) = (r.wal.settings.prefetch, stop_serving.clone());
            tokio::spawn(async move {
                prefetch::serve(&spool, lock, &storage, &codec, depth, how, stop).await
            })
        };
        let result = start_and_query(r, &private, &hba, &ident).await;
        stop_serving.cancel();
        match serving.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("serving WAL: {e:#}"),
            Err(e) => tracing::warn!("serving WAL: {e}"),
        }
        result
    }
    .await;
    if lent_conf {
        let _ = std::fs::remove_file(&conf);
    }
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// `s` in double quotes, inner ones doubled: a PostgreSQL identifier, and a pg_ident.conf field.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The temporary server's pg_hba and pg_ident: socket connections only, by peer authentication,
/// and only from this process's OS user, mapped to `role`. The restored cluster carries the
/// source's roles and their passwords, which we do not know, so a password of ours cannot be set
/// before the first connection; peer authentication needs none, and the kernel vouches for the
/// connecting user (trust would let in any local user who can reach the socket, and the cluster
/// holds production data). A drill then moves to scram-sha-256 ([`to_scram`]).
fn auth_files(private: &Path, role: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let me = crate::osuser::current_name()
        .map_err(|e| anyhow::anyhow!("the temporary server admits only this OS user: {e:#}"))?;
    let hba = private.join("hba.conf");
    std::fs::write(&hba, b"local all all peer map=outrigger\n")?;
    let ident = private.join("ident.conf");
    std::fs::write(
        &ident,
        format!("outrigger {} {}\n", quoted(&me), quoted(role)),
    )?;
    Ok((hba, ident))
}

async fn start_and_query(
    r: &Run<'_>,
    private: &Path,
    hba: &Path,
    ident: &Path,
) -> anyhow::Result<Recovered> {
    let postgres = r.bin.join("postgres");
    let log_path = private.join("postgres.log");
    let log = std::fs::File::create(&log_path)?;
    if let Some((uid, gid)) = r.owner {
        std::os::unix::fs::lchown(&log_path, Some(uid), Some(gid))?;
    }
    let mut cmd = tokio::process::Command::new(&postgres);
    cmd.arg("-D")
        .arg(r.dir)
        .args(["-p", "5432", "-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", private.display()))
        .arg("-c")
        .arg(format!("hba_file={}", hba.display()))
        .arg("-c")
        .arg(format!("ident_file={}", ident.display()))
        // Keep this run's WAL through its shutdown checkpoint, so that an archiver started on
        // the promoted cluster can still store the new timeline from its first segment.
        .args(["-c", "archive_mode=off", "-c", "logging_collector=off"])
        // Not a hot standby: one refuses to replay below the primary's max_connections (and
        // max_worker_processes, max_wal_senders, ...), which the restored directory's own files
        // may set lower when the primary took them from elsewhere (compose's config_file, a
        // Debian cluster's /etc/postgresql). Connections wait for the promotion instead.
        .args(["-c", "hot_standby=off"])
        .args(["-c", "wal_keep_size=1GB"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some((uid, gid)) = r.owner {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (install the PostgreSQL server, or set drill.bin_dir)",
            postgres.display()
        )
    })?;
    let result = wait_promoted(r, private, &mut child).await;
    let stopped = stop(&mut child).await;
    let tail = || crate::restore::recover::log_tail(&log_path);
    let recovered = result.map_err(|e| anyhow::anyhow!("{e:#}; server log: {}", tail()))?;
    stopped.map_err(|e| anyhow::anyhow!("{e:#}; server log: {}", tail()))?;
    let replay = redo_elapsed(&std::fs::read_to_string(&log_path).unwrap_or_default());
    Ok(Recovered {
        replay,
        ..recovered
    })
}

async fn wait_promoted(
    r: &Run<'_>,
    private: &Path,
    child: &mut tokio::process::Child,
) -> anyhow::Result<Recovered> {
    let mut c = tokio_postgres::Config::new();
    c.host_path(private)
        .port(5432)
        .user(r.user)
        .dbname(r.database)
        .application_name("backup-agent recover")
        .connect_timeout(Duration::from_secs(5));
    let mut last_error = String::new();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the server stopped ({status}) before recovery finished, without promoting{}",
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {last_error})")
                }
            );
        }
        match c.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                let recovering: bool = client
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", common::conn::pg_error_text(&e)))?
                    .get(0);
                if !recovering {
                    let row = client
                        .query_one(
                            "SELECT pg_last_wal_replay_lsn()::text, \
                             pg_last_xact_replay_timestamp()::text, \
                             ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
                            &[],
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("{}", common::conn::pg_error_text(&e)))?;
                    // The server must answer a query of the caller's (drills) or a plain one.
                    let answer = match r.query {
                        Some(q) => {
                            let scram = to_scram(r, private, &client, &c, child).await?;
                            first_value(&scram, q).await?
                        }
                        None => first_value(&client, "SELECT 1").await?,
                    };
                    return Ok(Recovered {
                        lsn: row.get::<_, Option<String>>(0).unwrap_or_default(),
                        last_transaction: row.get(1),
                        timeline: row.get::<_, i32>(2) as u32,
                        answer: r.query.map(|_| answer),
                        replay: None,
                    });
                }
            }
            // Not accepting connections yet (starting, or replaying WAL).
            Err(e) => last_error = common::conn::pg_error_text(&e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A drill's cluster is a throwaway copy, so its role may get a password of ours: the role gets
/// a random one (sent as a SCRAM verifier, never in clear), pg_hba becomes `scram-sha-256` only,
/// the server reloads it (SIGHUP from us, its parent: the role need not be a superuser), and once
/// a connection without the password is refused the drill's query runs on one that gives it.
/// `restore --recover` hands production's roles over untouched and stays with peer.
async fn to_scram(
    r: &Run<'_>,
    private: &Path,
    peer: &tokio_postgres::Client,
    c: &tokio_postgres::Config,
    child: &tokio::process::Child,
) -> anyhow::Result<tokio_postgres::Client> {
    use std::io::Read;
    let mut raw = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let password = hex::encode(raw);
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let role = quoted(r.user);
    peer.batch_execute(&format!("ALTER ROLE {role} PASSWORD '{verifier}'"))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "setting the drill role's password: {}",
                common::conn::pg_error_text(&e)
            )
        })?;
    std::fs::write(private.join("hba.conf"), b"local all all scram-sha-256\n")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("the server is gone"))?;
    crate::osuser::signal(pid, libc::SIGHUP)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let without = match c.connect(tokio_postgres::NoTls).await {
            // Still let in by peer: the reload is not done.
            Ok(_) => "it still admits a connection without a password".to_string(),
            Err(e) => common::conn::pg_error_text(&e),
        };
        // Asked for the password it was not given: scram is in force.
        if without.contains("password missing") {
            break;
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("30 s after reloading pg_hba for scram-sha-256: {without}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut with = c.clone();
    with.password(password);
    let (client, conn) = with.connect(tokio_postgres::NoTls).await.map_err(|e| {
        anyhow::anyhow!(
            "connecting with scram-sha-256: {}",
            common::conn::pg_error_text(&e)
        )
    })?;
    tokio::spawn(conn);
    Ok(client)
}

async fn first_value(client: &tokio_postgres::Client, q: &str) -> anyhow::Result<String> {
    let msg = client
        .simple_query(q)
        .await
        .map_err(|e| anyhow::anyhow!("{q}: {}", common::conn::pg_error_text(&e)))?;
    msg.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(0).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("{q} returned no row"))
}

/// Fast shutdown (SIGINT): a clean stop with a checkpoint. Killed after 5 minutes.
async fn stop(child: &mut tokio::process::Child) -> anyhow::Result<()> {
    if let Some(s) = child.try_wait()? {
        anyhow::ensure!(s.success(), "the server exited ({s})");
        return Ok(());
    }
    if let Some(pid) = child.id() {
        // SIGINT: a fast shutdown. Sent directly, not through a `kill` program: slim images
        // have none.
        if let Err(e) = crate::osuser::signal(pid, libc::SIGINT) {
            tracing::warn!("cannot signal the server (pid {pid}): {e}");
        }
        match tokio::time::timeout(Duration::from_secs(300), child.wait()).await {
            Ok(Ok(s)) if s.success() => return Ok(()),
            Ok(Ok(s)) => anyhow::bail!("the server did not stop cleanly ({s})"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    let _ = child.kill().await;
    anyhow::bail!("the server did not stop within 5 minutes and was killed")
}

/// The server's own replay time: "redo done at 0/3000100 system usage: ... elapsed: 1.23 s".
pub fn redo_elapsed(log: &str) -> Option<Duration> {
    let line = log.lines().find(|l| l.contains("redo done at"))?;
    let at = line.find("elapsed: ")? + "elapsed: ".len();
    let secs: f64 = line[at..].split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The last lines of a server log, on one line.
pub fn log_tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_replay_time_is_read_from_its_log() {
        let log = "2026-12-03 15:01:02.345 UTC [812] LOG:  redo starts at 0/2000028\n\
                   2026-12-03 15:01:05.678 UTC [812] LOG:  redo done at 0/9A001F8 system usage: \
                   CPU: user: 1.02 s, system: 0.40 s, elapsed: 3.33 s\n";
        assert_eq!(redo_elapsed(log), Some(Duration::from_millis(3330)));
        assert_eq!(redo_elapsed("LOG:  database system is ready"), None);
    }
}
