//! A real PgBouncer in transaction mode in front of a [`Postgres`], with an `auth_file`,
//! `admin_users` and `stats_users`, on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::postgres::{APP_PASSWORD, APP_USER, Postgres, SUPERUSER, SUPERUSER_PASSWORD, psql_tcp};
use crate::process::{Proc, Spec, TempDir, find_program, free_port, run};

pub const ADMIN_USER: &str = "pgb_admin";
pub const ADMIN_PASSWORD: &str = "pgb-admin-pw";
pub const STATS_USER: &str = "pgb_stats";
pub const STATS_PASSWORD: &str = "pgb-stats-pw";
/// In the auth_file but in neither admin_users nor stats_users.
pub const PLAIN_USER: &str = "pgb_nobody";
pub const PLAIN_PASSWORD: &str = "pgb-nobody-pw";

/// Options for [`PgBouncer::start_with`].
#[derive(Clone, Debug)]
pub struct PgBouncerOptions {
    /// `[databases]` lines; default `* = host=127.0.0.1 port=<postgres port>`.
    pub databases: Vec<String>,
    pub default_pool_size: u32,
    pub max_client_conn: u32,
    /// Extra `[pgbouncer]` lines.
    pub extra: Vec<String>,
}

impl Default for PgBouncerOptions {
    fn default() -> Self {
        Self {
            databases: vec![],
            default_pool_size: 25,
            max_client_conn: 200,
            extra: vec![],
        }
    }
}

/// A running PgBouncer, killed on drop.
pub struct PgBouncer {
    proc: Proc,
    pub port: u16,
    psql_bin: PathBuf,
    ini: PathBuf,
    _dir: TempDir,
}

impl PgBouncer {
    pub fn start(pg: &Postgres) -> Result<Self> {
        Self::start_with(pg, PgBouncerOptions::default())
    }

    pub fn start_with(pg: &Postgres, opts: PgBouncerOptions) -> Result<Self> {
        let program = find_program("pgbouncer", &[])?;
        let dir = TempDir::new("pgbouncer")?;
        dir.give_to_server_user()?;
        let port = free_port()?;
        let auth_file = dir.path().join("userlist.txt");
        let users = [
            (SUPERUSER, SUPERUSER_PASSWORD),
            (APP_USER, APP_PASSWORD),
            (ADMIN_USER, ADMIN_PASSWORD),
            (STATS_USER, STATS_PASSWORD),
            (PLAIN_USER, PLAIN_PASSWORD),
        ];
        let userlist: String = users
            .iter()
            .map(|(u, p)| format!("\"{u}\" \"{p}\"\n"))
            .collect();
        std::fs::write(&auth_file, userlist)?;
        let databases = if opts.databases.is_empty() {
            vec![format!("* = host=127.0.0.1 port={}", pg.port)]
        } else {
            opts.databases.clone()
        };
        let ini = dir.path().join("pgbouncer.ini");
        let mut text = format!(
            "[databases]\n{}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {}\n\
             admin_users = {ADMIN_USER}\nstats_users = {STATS_USER}\n\
             pool_mode = transaction\ndefault_pool_size = {}\nmax_client_conn = {}\n\
             logfile = {}\npidfile = {}\n",
            databases.join("\n"),
            auth_file.display(),
            opts.default_pool_size,
            opts.max_client_conn,
            dir.path().join("pgbouncer.log").display(),
            dir.path().join("pgbouncer.pid").display(),
        );
        for l in &opts.extra {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&ini, text)?;
        let proc = Proc::spawn(Spec {
            name: format!("pgbouncer :{port}"),
            program,
            args: vec![ini.display().to_string()],
            log: dir.path().join("pgbouncer.out"),
            as_server_user: true,
            stop_signal: libc::SIGINT,
            env: vec![],
        })?;
        let mut b = Self {
            proc,
            port,
            psql_bin: pg.bindir().to_path_buf(),
            ini,
            _dir: dir,
        };
        b.wait_ready()?;
        Ok(b)
    }

    /// Ready = the admin console answers SHOW VERSION and a query passes through the pool.
    fn wait_ready(&mut self) -> Result<()> {
        let (bin, port) = (self.psql_bin.clone(), self.port);
        self.proc.wait_ready(Duration::from_secs(30), || {
            let v = psql_tcp(
                &bin,
                port,
                ADMIN_USER,
                ADMIN_PASSWORD,
                "pgbouncer",
                "SHOW VERSION",
            )?;
            anyhow::ensure!(v.contains("PgBouncer"), "SHOW VERSION returned {v:?}");
            let one = psql_tcp(
                &bin,
                port,
                APP_USER,
                APP_PASSWORD,
                crate::postgres::APP_DB,
                "SELECT 1",
            )?;
            anyhow::ensure!(
                one.trim() == "1",
                "SELECT 1 through the pool returned {one:?}"
            );
            Ok(())
        })
    }

    /// Runs an admin console command as the admin user.
    pub fn admin(&self, sql: &str) -> Result<String> {
        psql_tcp(
            &self.psql_bin,
            self.port,
            ADMIN_USER,
            ADMIN_PASSWORD,
            "pgbouncer",
            sql,
        )
    }

    /// Runs `sql` as the app user through the pool in a background psql (a client that holds or
    /// waits for a server connection).
    pub fn app_client(&self, sql: &str) -> Result<std::process::Child> {
        Ok(Command::new(self.psql_bin.join("psql"))
            .args(["-X", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", APP_USER, "-d", crate::postgres::APP_DB, "-c", sql])
            .env("PGPASSWORD", APP_PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?)
    }

    /// Kills it (SIGKILL) — a dead target.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.stop();
        self.proc.start()?;
        self.wait_ready()
    }

    pub fn ini(&self) -> &Path {
        &self.ini
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// The installed PgBouncer's version line (`PgBouncer 1.18.0 ...`).
pub fn installed_version() -> Result<String> {
    let p = find_program("pgbouncer", &[])?;
    run(Command::new(p).arg("--version"), "pgbouncer --version")
}
