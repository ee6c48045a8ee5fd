//! Real Redis: a master, replicas and Sentinels on free loopback ports in a temp dir.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{Proc, Spec, TempDir, find_program, free_port};

pub const MASTER_NAME: &str = "mymaster";

/// Options for [`RedisStack::start_with`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub replicas: usize,
    pub sentinels: usize,
    /// Sentinel `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// Sentinel `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// `requirepass`/`masterauth` on every node and `auth-pass` in the Sentinels.
    pub password: Option<String>,
    /// Extra redis.conf lines for every data node.
    pub extra_conf: Vec<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            replicas: 2,
            sentinels: 3,
            down_after_ms: 5000,
            failover_timeout_ms: 10000,
            password: None,
            extra_conf: vec![],
        }
    }
}

/// One redis-server or redis-sentinel.
pub struct Node {
    pub port: u16,
    pub proc: Proc,
    pub conf: PathBuf,
    password: Option<String>,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A synchronous connection (with AUTH when the stack has a password).
    pub fn conn(&self) -> Result<redis::Connection> {
        connect(self.port, self.password.as_deref())
    }

    /// Starts it again with the same config on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.start()?;
        let (port, pw) = (self.port, self.password.clone());
        self.proc
            .wait_ready(Duration::from_secs(30), || ping(port, pw.as_deref()))
    }
}

/// Master + replicas + Sentinels, all killed on drop.
pub struct RedisStack {
    pub master: Node,
    pub replicas: Vec<Node>,
    pub sentinels: Vec<Node>,
    pub options: RedisOptions,
    dir: TempDir,
}

impl RedisStack {
    pub fn start() -> Result<Self> {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Result<Self> {
        let server = find_program("redis-server", &[])?;
        let sentinel =
            find_program("redis-sentinel", &[]).or_else(|_| find_program("redis-server", &[]))?;
        let dir = TempDir::new("redis")?;
        let pw = options.password.clone();

        let data_node = |name: &str, replica_of: Option<u16>| -> Result<Node> {
            start_node(
                &server,
                &dir.path().join(name),
                name,
                replica_of,
                pw.as_deref(),
                &options.extra_conf,
            )
        };

        let master = data_node("master", None)?;
        let mut replicas = Vec::new();
        for i in 0..options.replicas {
            replicas.push(data_node(&format!("replica{}", i + 1), Some(master.port))?);
        }
        for r in &mut replicas {
            let (port, pw) = (r.port, pw.clone());
            r.proc.wait_ready(Duration::from_secs(30), || {
                let info = info(port, pw.as_deref(), "replication")?;
                anyhow::ensure!(
                    info.contains("master_link_status:up"),
                    "master_link_status not up yet"
                );
                Ok(())
            })?;
        }

        let quorum = options.sentinels / 2 + 1;
        let mut sentinels = Vec::new();
        for i in 0..options.sentinels {
            let port = free_port()?;
            let ndir = dir.path().join(format!("sentinel{}", i + 1));
            std::fs::create_dir_all(&ndir)?;
            let mut conf = vec![
                format!("port {port}"),
                "bind 127.0.0.1".into(),
                "protected-mode no".into(),
                format!("dir {}", ndir.display()),
                "sentinel resolve-hostnames no".into(),
                "sentinel announce-ip 127.0.0.1".into(),
                format!(
                    "sentinel monitor {MASTER_NAME} 127.0.0.1 {} {quorum}",
                    master.port
                ),
                format!(
                    "sentinel down-after-milliseconds {MASTER_NAME} {}",
                    options.down_after_ms
                ),
                format!(
                    "sentinel failover-timeout {MASTER_NAME} {}",
                    options.failover_timeout_ms
                ),
                format!("sentinel parallel-syncs {MASTER_NAME} 1"),
            ];
            if let Some(pw) = &pw {
                conf.push(format!("sentinel auth-pass {MASTER_NAME} {pw}"));
            }
            let path = ndir.join("sentinel.conf");
            std::fs::write(&path, conf.join("\n") + "\n")?;
            let mut args = vec![path.display().to_string()];
            if sentinel.ends_with("redis-server") {
                args.push("--sentinel".into());
            }
            let mut proc = Proc::spawn(Spec {
                name: format!("sentinel{} :{port}", i + 1),
                program: sentinel.clone(),
                args,
                log: ndir.join("sentinel.log"),
                as_server_user: false,
                stop_signal: libc::SIGKILL,
                env: vec![],
            })?;
            proc.wait_ready(Duration::from_secs(30), || ping(port, None))?;
            sentinels.push(Node {
                port,
                proc,
                conf: path,
                password: None,
            });
        }
        let stack = Self {
            master,
            replicas,
            sentinels,
            options,
            dir,
        };
        stack.wait_sentinels_agree(Duration::from_secs(60))?;
        Ok(stack)
    }

    /// Waits until every Sentinel knows the master, all replicas and all other Sentinels.
    pub fn wait_sentinels_agree(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let want_replicas = self.replicas.len().to_string();
        let want_sentinels = (self.sentinels.len().saturating_sub(1)).to_string();
        loop {
            let mut last = String::new();
            let mut all = true;
            for s in &self.sentinels {
                match sentinel_master(s.port) {
                    Ok(m) => {
                        let get = |k: &str| m.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                        if get("num-slaves").as_deref() != Some(want_replicas.as_str())
                            || get("num-other-sentinels").as_deref()
                                != Some(want_sentinels.as_str())
                        {
                            all = false;
                            last = format!(
                                "sentinel :{} sees {:?} replicas, {:?} other sentinels",
                                s.port,
                                get("num-slaves"),
                                get("num-other-sentinels")
                            );
                        }
                    }
                    Err(e) => {
                        all = false;
                        last = format!("sentinel :{}: {e:#}", s.port);
                    }
                }
            }
            if all {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let tail = self
                    .sentinels
                    .first()
                    .map(|s| s.proc.log_tail())
                    .unwrap_or_default();
                bail!(
                    "sentinels do not agree after {timeout:?}: {last}; first sentinel's log:\n{tail}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The master address the first reachable Sentinel reports.
    pub fn current_master(&self) -> Result<(String, u16)> {
        let mut last = None;
        for s in &self.sentinels {
            let asked = (|| -> Result<(String, u16)> {
                let mut c = connect(s.port, None)?;
                let (h, p): (String, String) = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(MASTER_NAME)
                    .query(&mut c)?;
                Ok((h, p.parse().context("port")?))
            })();
            match asked {
                Ok(addr) => return Ok(addr),
                Err(e) => last = Some(e),
            }
        }
        bail!("no sentinel answered: {last:?}")
    }

    /// The Sentinel addresses as `host:port`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::addr).collect()
    }

    /// All data nodes, master first.
    pub fn data_nodes(&mut self) -> impl Iterator<Item = &mut Node> {
        std::iter::once(&mut self.master).chain(self.replicas.iter_mut())
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// One redis-server on a free port with `ndir` as its `dir` (a `dump.rdb` there is loaded).
fn start_node(
    server: &std::path::Path,
    ndir: &std::path::Path,
    name: &str,
    replica_of: Option<u16>,
    pw: Option<&str>,
    extra_conf: &[String],
) -> Result<Node> {
    let port = free_port()?;
    std::fs::create_dir_all(ndir)?;
    let mut conf = vec![
        format!("port {port}"),
        "bind 127.0.0.1".into(),
        "protected-mode no".into(),
        format!("dir {}", ndir.display()),
        "save \"\"".into(),
        "appendonly no".into(),
        "repl-diskless-sync-delay 0".into(),
        // Sentinel announces replicas by the address they report.
        "replica-announce-ip 127.0.0.1".into(),
    ];
    if let Some(pw) = pw {
        conf.push(format!("requirepass {pw}"));
        conf.push(format!("masterauth {pw}"));
    }
    if let Some(m) = replica_of {
        conf.push(format!("replicaof 127.0.0.1 {m}"));
    }
    conf.extend(extra_conf.iter().cloned());
    let path = ndir.join("redis.conf");
    std::fs::write(&path, conf.join("\n") + "\n")?;
    let mut proc = Proc::spawn(Spec {
        name: format!("redis {name} :{port}"),
        program: server.to_path_buf(),
        args: vec![path.display().to_string()],
        log: ndir.join("redis.log"),
        as_server_user: false,
        stop_signal: libc::SIGKILL,
        env: vec![],
    })?;
    // Loading a large dump.rdb takes a while; LOADING errors until then.
    proc.wait_ready(Duration::from_secs(60), || ping(port, pw))?;
    Ok(Node {
        port,
        proc,
        conf: path,
        password: pw.map(str::to_string),
    })
}

/// A standalone redis-server whose `dir` is `dir` (it loads the `dump.rdb` found there).
pub fn start_standalone(
    dir: &std::path::Path,
    password: Option<&str>,
    extra_conf: &[String],
) -> Result<Node> {
    let server = find_program("redis-server", &[])?;
    start_node(&server, dir, "standalone", None, password, extra_conf)
}

fn connect(port: u16, password: Option<&str>) -> Result<redis::Connection> {
    let url = match password {
        Some(pw) => format!("redis://:{pw}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    };
    let client = redis::Client::open(url)?;
    let c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(c)
}

/// PING answered with PONG.
pub fn ping(port: u16, password: Option<&str>) -> Result<()> {
    let mut c = connect(port, password)?;
    let pong: String = redis::cmd("PING").query(&mut c)?;
    anyhow::ensure!(pong == "PONG", "PING answered {pong:?}");
    Ok(())
}

/// `INFO <section>` text.
pub fn info(port: u16, password: Option<&str>, section: &str) -> Result<String> {
    let mut c = connect(port, password)?;
    Ok(redis::cmd("INFO").arg(section).query(&mut c)?)
}

/// `SENTINEL MASTER mymaster` as key/value pairs.
pub fn sentinel_master(port: u16) -> Result<Vec<(String, String)>> {
    let mut c = connect(port, None)?;
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER_NAME)
        .query(&mut c)?;
    Ok(flat
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect())
}
