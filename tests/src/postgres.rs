//! A real PostgreSQL (15 where installed) in a temp dir on a free loopback port: `wal_level=replica`,
//! replication allowed, password auth with scram-sha-256 for every TCP login (so auth is exercised,
//! not trust), a normal user `app` owning database `app`, and a replication user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{
    Proc, Spec, TempDir, free_port, give_to_server_user, run, run_as_server_user,
};

pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres-pw";
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-pw";
pub const APP_DB: &str = "app";
pub const REPL_USER: &str = "replicator";
pub const REPL_PASSWORD: &str = "replicator-pw";

/// Options for [`Postgres::start_with`].
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
    /// `ssl = on` with a certificate for 127.0.0.1 and localhost signed by a test CA
    /// ([`Postgres::ca_file`]), and TCP connections accepted only over TLS (`hostssl`).
    pub tls: bool,
}

/// A running PostgreSQL server, stopped (immediate shutdown) and removed on drop.
pub struct Postgres {
    proc: Proc,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    dir: TempDir,
}

/// The directory of the PostgreSQL server binaries: `$OUTRIGGER_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin` (15 on Debian 12).
pub fn bindir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("OUTRIGGER_PG_BINDIR") {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install postgresql (./dev test does)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .context("no PostgreSQL server under /usr/lib/postgresql/*/bin")
}

impl Postgres {
    pub fn start() -> Result<Self> {
        Self::start_with(PgOptions::default())
    }

    pub fn start_with(opts: PgOptions) -> Result<Self> {
        let bin = bindir()?;
        let dir = TempDir::new("pg")?;
        dir.give_to_server_user()?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD)?;
        give_to_server_user(&pwfile)?;
        run_as_server_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        )?;
        let port = free_port()?;
        let mut conf = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("port = {port}"),
            format!("unix_socket_directories = '{}'", dir.path().display()),
            "wal_level = replica".into(),
            "max_wal_senders = 10".into(),
            "max_replication_slots = 10".into(),
            "max_connections = 200".into(),
            "shared_buffers = 32MB".into(),
            "fsync = off".into(),
            "password_encryption = 'scram-sha-256'".into(),
            "log_min_messages = warning".into(),
        ];
        conf.extend(opts.extra_conf);
        let host = if opts.tls {
            let (cert, key) = make_certs(dir.path())?;
            conf.push("ssl = on".into());
            conf.push(format!("ssl_cert_file = '{}'", cert.display()));
            conf.push(format!("ssl_key_file = '{}'", key.display()));
            "hostssl"
        } else {
            "host"
        };
        append(&data.join("postgresql.conf"), &conf.join("\n"))?;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 {host} all all 127.0.0.1/32 scram-sha-256\n\
                 {host} replication all 127.0.0.1/32 scram-sha-256\n"
            ),
        )?;
        let args = vec!["-D".into(), data.display().to_string()];
        let mut pg = Self::spawn(bin, data, dir, port, args)?;
        pg.wait_ready()?;
        for sql in [
            format!("CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'"),
            format!("CREATE DATABASE {APP_DB} OWNER {APP_USER}"),
            format!("CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{REPL_PASSWORD}'"),
        ] {
            pg.psql_super(&sql)?;
        }
        Ok(pg)
    }

    /// Starts a server on an existing data directory (a restored backup): hands it to the server
    /// user, gives it its own port and socket directory, and waits until it accepts queries
    /// (that is, until recovery has finished and it was promoted).
    pub fn start_existing(data: &Path, ready_timeout: Duration) -> Result<Self> {
        let mut pg = Self::spawn_existing(data, "pg-restored", "127.0.0.1")?;
        let (bin, port) = (pg.bin.clone(), pg.port);
        pg.proc.wait_ready(ready_timeout, || {
            let out = psql_tcp(
                &bin,
                port,
                SUPERUSER,
                SUPERUSER_PASSWORD,
                "postgres",
                "SELECT pg_is_in_recovery()",
            )?;
            anyhow::ensure!(out.trim() == "f", "still in recovery");
            Ok(())
        })?;
        Ok(pg)
    }

    /// Starts a server on a restored data directory that is expected to stop on its own (recovery
    /// stopped by an error) and waits for that; returns its log. An error when it is still
    /// running after `timeout` (it is then stopped) or when it became ready instead.
    pub fn run_existing_until_exit(data: &Path, timeout: Duration) -> Result<String> {
        let mut pg = Self::spawn_existing(data, "pg-stops", "")?;
        let deadline = std::time::Instant::now() + timeout;
        while pg.proc.is_running() {
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(pg.proc.log_path()).unwrap_or_default();
                pg.proc.stop();
                anyhow::bail!("the server is still running after {timeout:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(std::fs::read_to_string(pg.proc.log_path())?)
    }

    /// Starts the postmaster on an existing data directory ([`prepare_existing`]), listening on
    /// `listen` (empty: no TCP) and its own socket directory; does not wait.
    fn spawn_existing(data: &Path, name: &str, listen: &str) -> Result<Self> {
        let (bin, dir, port) = prepare_existing(data, name)?;
        let args = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            format!("listen_addresses={listen}"),
            "-c".into(),
            format!("unix_socket_directories={}", dir.path().display()),
        ];
        Self::spawn(bin, data.to_path_buf(), dir, port, args)
    }

    /// Starts the postmaster (as the server user; immediate shutdown on drop).
    fn spawn(
        bin: PathBuf,
        data: PathBuf,
        dir: TempDir,
        port: u16,
        args: Vec<String>,
    ) -> Result<Self> {
        let proc = Proc::spawn(Spec {
            name: format!("postgres :{port}"),
            program: bin.join("postgres"),
            args,
            log: dir.path().join("postgres.log"),
            as_server_user: true,
            stop_signal: libc::SIGQUIT,
            env: vec![],
        })?;
        Ok(Self {
            proc,
            port,
            bin,
            data,
            dir,
        })
    }

    /// Waits until a password login over TCP runs `SELECT 1`.
    fn wait_ready(&mut self) -> Result<()> {
        let (bin, port) = (self.bin.clone(), self.port);
        self.proc.wait_ready(Duration::from_secs(60), || {
            let out = psql_tcp(
                &bin,
                port,
                SUPERUSER,
                SUPERUSER_PASSWORD,
                "postgres",
                "SELECT 1",
            )?;
            anyhow::ensure!(out.trim() == "1", "SELECT 1 returned {out:?}");
            Ok(())
        })
    }

    /// Runs SQL as the superuser (over TCP with the password) and returns psql's unaligned output.
    pub fn psql_super(&self, sql: &str) -> Result<String> {
        psql_tcp(
            &self.bin,
            self.port,
            SUPERUSER,
            SUPERUSER_PASSWORD,
            "postgres",
            sql,
        )
    }

    /// Runs SQL as `user` in `db`.
    pub fn psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Result<String> {
        psql_tcp(&self.bin, self.port, user, password, db, sql)
    }

    /// A tokio-postgres connection string (keyword form) for `user`.
    pub fn conninfo(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.port
        )
    }

    /// The test CA's certificate (PEM) when started with `tls`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        let p = self.dir.path().join("ca.pem");
        p.exists().then_some(p)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn bindir(&self) -> &Path {
        &self.bin
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Stops the server (immediate) and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.stop();
        self.proc.start()?;
        self.wait_ready()
    }
}

/// The test certificates ([`crate::tls::test_certs`]), the key owned by the server user with mode
/// 0600 as PostgreSQL demands. Returns (cert, key).
fn make_certs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let c = crate::tls::test_certs(dir)?;
    give_to_server_user(&c.key)?;
    give_to_server_user(&c.cert)?;
    Ok((c.cert, c.key))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "\n{text}")?;
    Ok(())
}

/// `psql` over TCP with a password; `-At` output.
/// For a server on an existing data directory: the server binaries, a socket directory and a
/// port; the data directory handed to the server user with mode 0700.
fn prepare_existing(data: &Path, name: &str) -> Result<(PathBuf, TempDir, u16)> {
    let bin = bindir()?;
    let dir = TempDir::new(name)?;
    dir.give_to_server_user()?;
    if crate::process::server_user()?.is_some() {
        run(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(data),
            "chown -R postgres",
        )?;
    }
    run(Command::new("chmod").arg("0700").arg(data), "chmod 0700")?;
    Ok((bin, dir, free_port()?))
}

pub fn psql_tcp(
    bin: &Path,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String> {
    let psql = if bin.join("psql").is_file() {
        bin.join("psql")
    } else {
        crate::process::find_program("psql", &[])?
    };
    run(
        Command::new(psql)
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(port.to_string())
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5"),
        &format!("psql -p {port} -U {user} -d {db}"),
    )
}
