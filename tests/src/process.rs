//! Child processes of the harness: started (as the `postgres` user where a server refuses root),
//! waited for until they really answer, and killed on drop — also when a test panics, and at exit
//! for servers held in statics (shared per test binary), which Rust never drops.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Pids still running, with the signal that stops each; killed by an `atexit` handler.
fn live() -> &'static Mutex<HashMap<u32, i32>> {
    static LIVE: OnceLock<Mutex<HashMap<u32, i32>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashMap::new()))
}

extern "C" fn kill_leftovers() {
    if let Ok(map) = live().lock() {
        for (pid, sig) in map.iter() {
            send(*pid, *sig);
        }
    }
}

fn register(pid: u32, stop_signal: i32) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" fn with no captured state.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(kill_leftovers);
        }
    });
    if let Ok(mut m) = live().lock() {
        m.insert(pid, stop_signal);
    }
}

fn unregister(pid: u32) {
    if let Ok(mut m) = live().lock() {
        m.remove(&pid);
    }
}

/// Sends a signal to a pid (no error when it is gone).
pub fn send(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started; no memory is touched.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(what: &str) -> Result<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "outrigger-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the directory to the user servers run as (see [`server_user`]).
    pub fn give_to_server_user(&self) -> Result<()> {
        give_to_server_user(&self.path)
    }
}

/// Hands a file or directory to the user servers run as (see [`server_user`]).
pub fn give_to_server_user(path: &Path) -> Result<()> {
    if let Some((uid, gid)) = server_user()? {
        chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("OUTRIGGER_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The uid/gid to run PostgreSQL and PgBouncer as when we are root (both refuse root): the
/// `postgres` user. `None` when not root (run as ourselves).
pub fn server_user() -> Result<Option<(u32, u32)>> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .context("reading /proc/self")?;
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            let uid = f[2].parse().context("uid of postgres")?;
            let gid = f[3].parse().context("gid of postgres")?;
            return Ok(Some((uid, gid)));
        }
    }
    bail!(
        "running as root and there is no `postgres` user to run PostgreSQL/PgBouncer as; install the postgresql package"
    )
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Finds a program: `$OUTRIGGER_<NAME>_BIN`, then PATH, then the given extra directories.
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Result<PathBuf> {
    let var = format!(
        "OUTRIGGER_{}_BIN",
        name.to_ascii_uppercase().replace('-', "_")
    );
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found (PATH, {extra_dirs:?}); `./dev test` installs it, or set {var}")
}

/// How a [`Proc`] is started, kept so that it can be restarted the same way.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub as_server_user: bool,
    /// Signal that stops it cleanly and quickly (SIGQUIT for PostgreSQL: immediate shutdown).
    pub stop_signal: i32,
    pub env: Vec<(String, String)>,
}

/// A running child process, stopped on drop.
#[derive(Debug)]
pub struct Proc {
    spec: Spec,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(spec: Spec) -> Result<Self> {
        let mut p = Self { spec, child: None };
        p.start()?;
        Ok(p)
    }

    /// Starts it again after [`Proc::stop`] or a kill.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let s = &self.spec;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&s.log)
            .with_context(|| format!("opening {}", s.log.display()))?;
        if s.as_server_user {
            give_to_server_user(&s.log)?;
        }
        let mut cmd = Command::new(&s.program);
        cmd.args(&s.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .envs(s.env.iter().map(|(k, v)| (k, v)));
        if s.as_server_user
            && let Some((uid, gid)) = server_user()?
        {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", s.name, s.program.display()))?;
        register(child.id(), s.stop_signal);
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal (SIGSTOP, SIGCONT, SIGKILL ...) without waiting.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            send(pid, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.stop_with(libc::SIGKILL);
    }

    /// The stop signal, then SIGKILL after 10 s; reaps.
    pub fn stop(&mut self) {
        self.stop_with(self.spec.stop_signal);
    }

    fn stop_with(&mut self, sig: i32) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        send(pid, libc::SIGCONT);
        send(pid, sig);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        unregister(pid);
    }

    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.spec.log, 30)
    }

    /// Polls `ready` until it returns Ok, the process exits, or `timeout` passes. The error carries
    /// the last answer and the server's log.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match ready() {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            if !self.is_running() {
                bail!(
                    "{} exited before it was ready (last check: {last}); its log {}:\n{}",
                    self.spec.name,
                    self.spec.log.display(),
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?} (last check: {last}); its log {}:\n{}",
                    self.spec.name,
                    self.spec.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a file ("" when unreadable).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command to completion; the error carries its output.
pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Runs a command as the server user (see [`server_user`]).
pub fn run_as_server_user(cmd: &mut Command, what: &str) -> Result<String> {
    if let Some((uid, gid)) = server_user()? {
        cmd.uid(uid).gid(gid);
    }
    run(cmd, what)
}

/// Damages a stored file the way bit rot does: XORs `mask` into its middle byte.
pub fn damage(path: &Path, mask: u8) {
    let mut bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mid = bytes.len() / 2;
    bytes[mid] ^= mask;
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
