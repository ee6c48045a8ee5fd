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
    /// Run each node in its own network namespace (master host 0, replicas next, then the
    /// Sentinels) instead of on loopback. The caller talks to them from `net.client`
    /// ([`crate::netns::Net::run_in`]).
    pub net: Option<std::sync::Arc<crate::netns::Net>>,
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
            net: None,
        }
    }
}

/// One redis-server or redis-sentinel.
pub struct Node {
    /// Its address: 127.0.0.1, or its namespace's address.
    pub host: String,
    pub port: u16,
    pub proc: Proc,
    pub conf: PathBuf,
    password: Option<String>,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A synchronous connection (with AUTH when the stack has a password).
    pub fn conn(&self) -> Result<redis::Connection> {
        connect_at(&self.host, self.port, self.password.as_deref())
    }

    /// Starts it again with the same config on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.start()?;
        let (host, port, pw) = (self.host.clone(), self.port, self.password.clone());
        self.proc.wait_ready(Duration::from_secs(30), || {
            ping_at(&host, port, pw.as_deref())
        })
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

        // Host i of the namespaces, or loopback.
        let place = |i: usize| -> Option<crate::netns::Host> {
            options.net.as_ref().map(|n| n.hosts[i].clone())
        };
        let data_node = |i: usize, name: &str, replica_of: Option<(String, u16)>| -> Result<Node> {
            start_node(
                &server,
                &dir.path().join(name),
                name,
                place(i).as_ref(),
                replica_of,
                pw.as_deref(),
                &options.extra_conf,
            )
        };

        let master = data_node(0, "master", None)?;
        let mut replicas = Vec::new();
        for i in 0..options.replicas {
            replicas.push(data_node(
                1 + i,
                &format!("replica{}", i + 1),
                Some((master.host.clone(), master.port)),
            )?);
        }
        for r in &mut replicas {
            let (host, port, pw) = (r.host.clone(), r.port, pw.clone());
            r.proc.wait_ready(Duration::from_secs(30), || {
                let info = info_at(&host, port, pw.as_deref(), "replication")?;
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
            let host = place(1 + options.replicas + i);
            let ip = host
                .as_ref()
                .map_or("127.0.0.1".to_string(), |h| h.ip.clone());
            let ndir = dir.path().join(format!("sentinel{}", i + 1));
            std::fs::create_dir_all(&ndir)?;
            let mut conf = vec![
                format!("port {port}"),
                format!("bind {ip}"),
                "protected-mode no".into(),
                format!("dir {}", ndir.display()),
                "sentinel resolve-hostnames no".into(),
                format!("sentinel announce-ip {ip}"),
                format!(
                    "sentinel monitor {MASTER_NAME} {} {} {quorum}",
                    master.host, master.port
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
            let (program, args) = match &host {
                Some(h) => crate::netns::Net::command(h, sentinel.clone(), args),
                None => (sentinel.clone(), args),
            };
            let mut proc = Proc::spawn(Spec {
                name: format!("sentinel{} {ip}:{port}", i + 1),
                program,
                args,
                log: ndir.join("sentinel.log"),
                as_server_user: false,
                stop_signal: libc::SIGKILL,
                env: vec![],
            })?;
            proc.wait_ready(Duration::from_secs(30), || ping_at(&ip, port, None))?;
            sentinels.push(Node {
                host: ip,
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
                match sentinel_master_at(&s.host, s.port) {
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
                let mut c = connect_at(&s.host, s.port, None)?;
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

/// One redis-server on a free port with `ndir` as its `dir` (a `dump.rdb` there is loaded), on
/// loopback or in `host`'s namespace.
fn start_node(
    server: &std::path::Path,
    ndir: &std::path::Path,
    name: &str,
    host: Option<&crate::netns::Host>,
    replica_of: Option<(String, u16)>,
    pw: Option<&str>,
    extra_conf: &[String],
) -> Result<Node> {
    let port = free_port()?;
    let ip = host.map_or("127.0.0.1".to_string(), |h| h.ip.clone());
    std::fs::create_dir_all(ndir)?;
    let mut conf = vec![
        format!("port {port}"),
        format!("bind {ip}"),
        "protected-mode no".into(),
        format!("dir {}", ndir.display()),
        "save \"\"".into(),
        "appendonly no".into(),
        "repl-diskless-sync-delay 0".into(),
        // Sentinel announces replicas by the address they report.
        format!("replica-announce-ip {ip}"),
    ];
    if let Some(pw) = pw {
        conf.push(format!("requirepass {pw}"));
        conf.push(format!("masterauth {pw}"));
    }
    if let Some((h, m)) = replica_of {
        conf.push(format!("replicaof {h} {m}"));
    }
    conf.extend(extra_conf.iter().cloned());
    let path = ndir.join("redis.conf");
    std::fs::write(&path, conf.join("\n") + "\n")?;
    let args = vec![path.display().to_string()];
    let (program, args) = match host {
        Some(h) => crate::netns::Net::command(h, server.to_path_buf(), args),
        None => (server.to_path_buf(), args),
    };
    let mut proc = Proc::spawn(Spec {
        name: format!("redis {name} {ip}:{port}"),
        program,
        args,
        log: ndir.join("redis.log"),
        as_server_user: false,
        stop_signal: libc::SIGKILL,
        env: vec![],
    })?;
    // Loading a large dump.rdb takes a while; LOADING errors until then.
    proc.wait_ready(Duration::from_secs(60), || ping_at(&ip, port, pw))?;
    Ok(Node {
        host: ip,
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
    start_node(&server, dir, "standalone", None, None, password, extra_conf)
}

fn connect_at(host: &str, port: u16, password: Option<&str>) -> Result<redis::Connection> {
    let url = match password {
        Some(pw) => format!("redis://:{pw}@{host}:{port}/"),
        None => format!("redis://{host}:{port}/"),
    };
    let client = redis::Client::open(url)?;
    let c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(c)
}

/// PING answered with PONG.
pub fn ping(port: u16, password: Option<&str>) -> Result<()> {
    ping_at("127.0.0.1", port, password)
}

/// [`ping`] at an address.
pub fn ping_at(host: &str, port: u16, password: Option<&str>) -> Result<()> {
    let mut c = connect_at(host, port, password)?;
    let pong: String = redis::cmd("PING").query(&mut c)?;
    anyhow::ensure!(pong == "PONG", "PING answered {pong:?}");
    Ok(())
}

/// `INFO <section>` text.
pub fn info(port: u16, password: Option<&str>, section: &str) -> Result<String> {
    info_at("127.0.0.1", port, password, section)
}

/// [`info`] at an address.
pub fn info_at(host: &str, port: u16, password: Option<&str>, section: &str) -> Result<String> {
    let mut c = connect_at(host, port, password)?;
    Ok(redis::cmd("INFO").arg(section).query(&mut c)?)
}

/// `SENTINEL MASTER mymaster` as key/value pairs.
pub fn sentinel_master(port: u16) -> Result<Vec<(String, String)>> {
    sentinel_master_at("127.0.0.1", port)
}

/// [`sentinel_master`] at an address.
pub fn sentinel_master_at(host: &str, port: u16) -> Result<Vec<(String, String)>> {
    let mut c = connect_at(host, port, None)?;
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
