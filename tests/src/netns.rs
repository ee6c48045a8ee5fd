//! Network partitions for real: Linux network namespaces (`ip netns`, root only) joined through a
//! bridge in a hub namespace, on a private range (10.77.0.0/24) that exists only inside them.
//!
//! - [`Net::new`] makes `hosts` host namespaces (10.77.0.10, .11, ...) and one client namespace
//!   (10.77.0.2), each with a veth link to the hub's bridge and its own loopback.
//! - [`Net::cut`] takes a host's link down on the hub side (it can reach nobody, nobody reaches
//!   it; its TCP connections stay open, as in a real partition); [`Net::heal`] brings it back.
//! - [`Net::command`] wraps a program to run in a host (`ip netns exec`); [`Net::run_in`] runs a
//!   closure on a thread that has entered a namespace, so sockets it (and threads it starts) opens
//!   live there: a test body runs in the client namespace, an in-process daemon in a host.
//!
//! Nothing is routed to or from the machine's own namespace. Every namespace is deleted on drop,
//! and leftovers of a test process that died are deleted by the next [`Net::new`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

use crate::process::run;

const PREFIX: &str = "outrigger-";
const SUBNET: &str = "10.77.0";

/// One namespace attached to the hub.
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace's name (`ip netns`).
    pub ns: String,
    pub ip: String,
    /// Its link's name on the hub side.
    port: String,
}

/// The namespaces of one test, deleted on drop.
#[derive(Debug)]
pub struct Net {
    hub: String,
    pub hosts: Vec<Host>,
    pub client: Host,
}

/// Whether this process may make namespaces (root, with `ip`).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip").arg("-V").output().is_ok()
}

impl Net {
    pub fn new(hosts: usize) -> Result<Self> {
        if !available() {
            bail!("network namespaces need root and iproute2's `ip`");
        }
        remove_leftovers();
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("{id}-hub");
        ip(&["netns", "add", &hub])?;
        let mut net = Self {
            hub: hub.clone(),
            hosts: Vec::new(),
            client: Host {
                ns: String::new(),
                ip: String::new(),
                port: String::new(),
            },
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        net.client = net.attach(&format!("{id}-client"), "pc", &format!("{SUBNET}.2"))?;
        for i in 0..hosts {
            let h = net.attach(
                &format!("{id}-h{i}"),
                &format!("p{i}"),
                &format!("{SUBNET}.{}", 10 + i),
            )?;
            net.hosts.push(h);
        }
        Ok(net)
    }

    /// A namespace with a veth link (`eth0` inside, `port` on the hub's bridge) and an address.
    fn attach(&self, ns: &str, port: &str, addr: &str) -> Result<Host> {
        ip(&["netns", "add", ns])?;
        let hub = self.hub.as_str();
        ip(&[
            "-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", hub, "link", "set", port, "master", "br0"])?;
        ip(&["-n", hub, "link", "set", port, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(Host {
            ns: ns.to_string(),
            ip: addr.to_string(),
            port: port.to_string(),
        })
    }

    /// Cuts host `i` off from every other namespace.
    pub fn cut(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &self.hosts[i].port, "down"])
    }

    /// Undoes [`Net::cut`].
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &self.hosts[i].port, "up"])
    }

    /// (program, args) that run `program args` inside `host`.
    pub fn command(host: &Host, program: PathBuf, args: Vec<String>) -> (PathBuf, Vec<String>) {
        let mut a = vec![
            "netns".to_string(),
            "exec".into(),
            host.ns.clone(),
            program.display().to_string(),
        ];
        a.extend(args);
        (PathBuf::from("ip"), a)
    }

    /// Runs `f` on a new thread that has entered `host`'s network namespace, and waits for it.
    pub fn run_in<T: Send + 'static>(
        host: &Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        Self::spawn_in(host, f)?
            .join()
            .map_err(|p| anyhow::anyhow!("thread in {} panicked: {}", host.ns, panic_text(&p)))
    }

    /// Starts `f` on a new thread inside `host`'s network namespace.
    pub fn spawn_in<T: Send + 'static>(
        host: &Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<T>> {
        let path = PathBuf::from("/var/run/netns").join(&host.ns);
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let handle = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an open namespace file; it changes this thread's network namespace
            // only, and touches no memory.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                let _ = tx.send(Err(std::io::Error::last_os_error().to_string()));
                panic!("setns failed");
            }
            drop(file);
            let _ = tx.send(Ok(()));
            f()
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => bail!("entering {}: {e}", host.ns),
            Err(_) => bail!("the thread for {} ended early", host.ns),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain([&self.client]) {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.hub]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
    .map(|_| ())
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Deletes namespaces made by test processes that are gone.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
