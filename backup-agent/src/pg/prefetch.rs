//! WAL prefetch during recovery: a spool of segments fetched ahead of PostgreSQL.
//!
//! PostgreSQL runs `restore_command` once per segment, one after the other, and waits for each.
//! Fetching, checking and decoding a segment costs far more than handing over a file that is
//! already there, so `wal-fetch` starts one background process per recovery (`wal-prefetch`)
//! that keeps the next `restore.prefetch` segments fetched, checked and decoded in parallel:
//!
//! - The spool is `<data>/pg_wal/outrigger-prefetch/<system identifier>/`: inside the data
//!   directory (a rename into `pg_wal` is atomic; base backups skip `pg_wal`'s contents) and
//!   keyed by the cluster, read from `global/pg_control`. A prefetched segment whose page header
//!   names another cluster is discarded, and a spool is emptied when its prefetcher starts.
//! - `wal-fetch NAME` first looks in the spool: a segment there has passed every check `wal-fetch`
//!   makes (recorded SHA-256, zstd checksum) and is renamed into place. While the prefetcher
//!   is still fetching NAME (`NAME.inflight`), it waits for it. Otherwise it fetches NAME itself,
//!   as without prefetch; so an absent file, a storage outage or a damaged object is always
//!   decided by `wal-fetch`'s own fetch, never by the spool ("absent" is never cached).
//! - After each segment it hands over, `wal-fetch` writes its name and the segment size (from
//!   the segment's long page header) to `want`; the prefetcher keeps the segments after it on
//!   the same timeline, removes whatever falls out of that window, and never spools an open
//!   `.partial` segment (it may still grow while recovery runs). Until the first announcement
//!   the window starts at the restored backup's first segment (`backup_label`): the first
//!   `wal-fetch` of a recovery starts the prefetcher before it fetches its own segment.
//! - The prefetcher exits, removing the spool, when recovery is over (`recovery.signal` and
//!   `standby.signal` gone), when the postmaster is gone, or when PostgreSQL has not asked for a
//!   segment for [`IDLE`]. It holds `lock` (flock) while it runs, so there is one per spool.
//! - Served ([`serve`]): under `restore --recover` and drills the restore process, which can read
//!   storage when PostgreSQL's user cannot (storage is 0600 by default), holds the lock and marks
//!   the spool `served` before the server starts. `wal-fetch` then reads neither storage nor its
//!   settings: it writes `NAME.ask` and waits for the file (handed to the server's user),
//!   `NAME.absent` (exit 1) or `NAME.error` (exit 126); the restore process answers each ask as
//!   `wal-fetch` would, retry included, and prefetches the same window.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::catalog::{WAL_STATUS_KEY, WalStatus};
use tokio_util::sync::CancellationToken;

use super::fetch::{FetchError, Fetched, fetch, fetch_once};
use super::lsn::{parse_segment_name, segment_name};
use crate::compress::Codec;
use crate::config::MAX_PREFETCH;
use crate::storage::Storage;

/// The spool's directory under `pg_wal`.
pub const SPOOL_DIR: &str = "outrigger-prefetch";
/// The prefetcher exits when PostgreSQL has not asked for a segment for this long.
pub const IDLE: Duration = Duration::from_secs(60);

const WANT: &str = "want";
const LOCK: &str = "lock";
const INFLIGHT: &str = ".inflight";
const FETCHING: &str = ".fetching";
const SERVED: &str = "served";
const ASK: &str = ".ask";
const ABSENT: &str = ".absent";
const ERROR: &str = ".error";

/// What the long page header at the start of a WAL segment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub system_id: u64,
    pub seg_size: u64,
}

/// Reads a segment's long page header (`XLogLongPageHeaderData`: the 24-byte page header, then
/// the system identifier at byte 24 and the segment size at byte 32, in the host's byte order).
pub fn read_header(path: &Path) -> std::io::Result<SegmentHeader> {
    let mut b = [0u8; 40];
    std::fs::File::open(path)?.read_exact(&mut b)?;
    let info = u16::from_ne_bytes([b[2], b[3]]);
    const XLP_LONG_HEADER: u16 = 0x0002;
    let system_id = u64::from_ne_bytes(b[24..32].try_into().expect("8 bytes"));
    let seg_size = u64::from(u32::from_ne_bytes(b[32..36].try_into().expect("4 bytes")));
    if info & XLP_LONG_HEADER == 0
        || !seg_size.is_power_of_two()
        || !((1 << 20)..=(1 << 30)).contains(&seg_size)
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not the start of a WAL segment", path.display()),
        ));
    }
    Ok(SegmentHeader {
        system_id,
        seg_size,
    })
}

/// The system identifier of a data directory (the first field of `global/pg_control`).
fn data_dir_system_id(data: &Path) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open(data.join("global/pg_control"))?.read_exact(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

/// True for a WAL segment's name (not a history file, `.partial` or `.backup` file).
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A data directory's prefetch spool.
#[derive(Clone, Debug)]
pub struct Spool {
    pub data: PathBuf,
    pub dir: PathBuf,
    pub system_id: u64,
}

impl Spool {
    /// The spool of the data directory `data`.
    pub fn of_data_dir(data: &Path) -> std::io::Result<Self> {
        let system_id = data_dir_system_id(data)?;
        Ok(Self {
            data: data.to_path_buf(),
            dir: data
                .join("pg_wal")
                .join(SPOOL_DIR)
                .join(system_id.to_string()),
            system_id,
        })
    }

    /// The spool for `wal-fetch`'s destination, when it is in a data directory's `pg_wal`
    /// (PostgreSQL passes `pg_wal/RECOVERYXLOG`, relative to the data directory).
    pub fn for_dest(dest: &Path) -> Option<Self> {
        let pg_wal = dest.parent()?;
        if pg_wal.file_name()? != "pg_wal" {
            return None;
        }
        let data = pg_wal.parent()?;
        let data = if data.as_os_str().is_empty() {
            Path::new(".")
        } else {
            data
        };
        Self::of_data_dir(&std::fs::canonicalize(data).ok()?).ok()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Moves the prefetched segment `name` to `dest` when the spool has it, waiting up to
    /// `wait` while the prefetcher is still fetching it. False: fetch it yourself.
    /// Only a spool a running prefetcher holds is used: files left by one that died are stale.
    pub fn take(&self, name: &str, dest: &Path, wait: Duration) -> bool {
        if !matches!(self.try_lock(), Ok(None)) {
            return false;
        }
        let file = self.path(name);
        let inflight = self.path(&format!("{name}{INFLIGHT}"));
        let deadline = Instant::now() + wait;
        loop {
            if std::fs::rename(&file, dest).is_ok() {
                return true;
            }
            if !inflight.exists() || Instant::now() >= deadline {
                // One more look: it may have landed just before the marker went.
                return std::fs::rename(&file, dest).is_ok();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Tells the prefetcher that recovery has reached segment `name` (segments are `seg_size`).
    pub fn announce(&self, name: &str, seg_size: u64) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = self.path(&format!("{WANT}.tmp"));
        std::fs::write(&tmp, format!("{name} {seg_size}\n"))?;
        std::fs::rename(&tmp, self.path(WANT))
    }

    /// The segment recovery has reached and the segment size, as announced.
    fn wanted(&self) -> Option<(String, u64)> {
        let text = std::fs::read_to_string(self.path(WANT)).ok()?;
        let (name, size) = text.trim().split_once(' ')?;
        Some((name.to_string(), size.parse().ok()?))
    }

    /// Takes the spool's lock without waiting; `None` when a prefetcher holds it.
    fn try_lock(&self) -> std::io::Result<Option<std::fs::File>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path(LOCK))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// True while the restored backup's `backup_label` is there: recovery is starting, and a
    /// prefetcher can start from the backup's first segment (see [`head_start`]).
    pub fn at_start(&self) -> bool {
        self.data.join("backup_label").exists()
    }

    /// Starts `exe wal-prefetch` for this spool unless one runs. It shares `wal-fetch`'s process
    /// group (so PostgreSQL's shutdown signals reach it) and its stderr (PostgreSQL's log).
    pub fn ensure_prefetcher(&self, exe: &Path, config: Option<&Path>) -> std::io::Result<()> {
        match self.try_lock()? {
            None => return Ok(()),
            Some(lock) => drop(lock),
        }
        let mut c = std::process::Command::new(exe);
        if let Some(config) = config {
            c.arg("--config").arg(config);
        }
        c.arg("wal-prefetch")
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map(drop)
    }

    /// After `wal-fetch` handed segment `name` over at `dest`: announces it (segment size from
    /// its header) and starts the prefetcher unless one runs. Prefetch is an accelerator: when
    /// it cannot start, recovery goes on without it (said on stderr, PostgreSQL's log).
    pub fn handed_over(&self, name: &str, dest: &Path, config: Option<&Path>) {
        let started = read_header(dest)
            .and_then(|h| self.announce(name, h.seg_size))
            .and_then(|()| self.ensure_prefetcher(&std::env::current_exe()?, config));
        if let Err(e) = started {
            eprintln!("wal-fetch {name}: prefetch off: {e}");
        }
    }

    /// True once PostgreSQL no longer needs the spool: recovery is over or the postmaster gone.
    fn recovery_over(&self) -> bool {
        let d = &self.data;
        !d.join("postmaster.pid").exists()
            || !(d.join("recovery.signal").exists() || d.join("standby.signal").exists())
    }

    /// Every file of the spool except its lock and `want`.
    fn clear(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                if n != LOCK && n != WANT {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// What `wal-fetch` got from a served spool.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The file is in place at the destination.
    Placed,
    /// Storage says the archive has no such file.
    Absent,
    /// Anything else: why (recovery must stop).
    Failed(String),
}

/// The restore process's hold on a spool it serves (see [`Spool::open_served`]).
pub struct ServedLock {
    _held: std::fs::File,
}

impl Spool {
    /// When the restore process serves this spool (it holds the lock and left its mark): how
    /// long `wal-fetch` waits for an answer (twice the server's retry, plus two minutes).
    pub fn served_wait(&self) -> Option<Duration> {
        let retry: u64 = std::fs::read_to_string(self.path(SERVED))
            .ok()?
            .trim()
            .strip_prefix("retry_ms=")?
            .parse()
            .ok()?;
        matches!(self.try_lock(), Ok(None))
            .then(|| Duration::from_millis(retry) * 2 + Duration::from_secs(120))
    }

    /// `wal-fetch` in a served spool: asks the restore process for `name` (any WAL file: a
    /// segment, a history file) and waits up to `wait` for its answer, moving the file to
    /// `dest` when it comes. Never reads storage itself.
    pub fn ask(&self, name: &str, dest: &Path, wait: Duration) -> Answer {
        let file = self.path(name);
        let absent = self.path(&format!("{name}{ABSENT}"));
        let error = self.path(&format!("{name}{ERROR}"));
        let ask = self.path(&format!("{name}{ASK}"));
        // An answer left from an earlier ask that gave up is not this one's.
        let _ = std::fs::remove_file(&absent);
        let _ = std::fs::remove_file(&error);
        if std::fs::rename(&file, dest).is_ok() {
            return Answer::Placed;
        }
        if let Err(e) = std::fs::write(&ask, b"") {
            return Answer::Failed(format!("cannot ask for {name} at {}: {e}", ask.display()));
        }
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            if std::fs::rename(&file, dest).is_ok() {
                let _ = std::fs::remove_file(&ask);
                return Answer::Placed;
            }
            if std::fs::remove_file(&absent).is_ok() {
                return Answer::Absent;
            }
            if let Ok(why) = std::fs::read_to_string(&error) {
                let _ = std::fs::remove_file(&error);
                return Answer::Failed(why);
            }
            let gone = !matches!(self.try_lock(), Ok(None));
            if gone || Instant::now() >= deadline {
                let _ = std::fs::remove_file(&ask);
                return Answer::Failed(if gone {
                    "the restore process that serves WAL to this recovery is gone".into()
                } else {
                    format!("no answer from the restore process within {wait:?}")
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The restore process takes the spool to serve it before it starts PostgreSQL: the lock
    /// (so no prefetcher of `wal-fetch`'s own starts), an empty spool, the mark `wal-fetch`
    /// looks for, and the spool's directories handed to `owner`, the user PostgreSQL runs as.
    pub fn open_served(&self, serving: Serving) -> std::io::Result<ServedLock> {
        let lock = self.try_lock()?.ok_or_else(|| {
            std::io::Error::other(format!(
                "{}: another process is fetching WAL for this data directory",
                self.dir.display()
            ))
        })?;
        self.clear();
        let _ = std::fs::remove_file(self.path(WANT));
        std::fs::write(
            self.path(SERVED),
            format!("retry_ms={}\n", serving.retry.as_millis()),
        )?;
        if let Some((uid, gid)) = serving.owner {
            let top = self.dir.parent().unwrap_or(&self.dir);
            crate::osuser::chown_tree(top, uid, gid)?;
        }
        Ok(ServedLock { _held: lock })
    }

    /// Writes an answer file (`name` + `suffix`) the way `wal-fetch` may see it: whole, and
    /// owned by `owner`.
    fn answer(
        &self,
        name: &str,
        suffix: &str,
        text: &str,
        owner: Option<(u32, u32)>,
    ) -> std::io::Result<()> {
        let tmp = self.path(&format!("{name}{suffix}.tmp"));
        std::fs::write(&tmp, text)?;
        give(&tmp, owner)?;
        std::fs::rename(&tmp, self.path(&format!("{name}{suffix}")))
    }
}

/// Hands a file PostgreSQL will take to its user (`None`: it is ours already).
fn give(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// How the restore process serves a spool: who PostgreSQL runs as, and how long a fetch
/// PostgreSQL asked for retries storage errors (`restore.wal_fetch_retry`).
#[derive(Clone, Copy, Debug)]
pub struct Serving {
    pub owner: Option<(u32, u32)>,
    pub retry: Duration,
}

/// How one fetch ended.
enum Outcome {
    Spooled,
    /// Not spooled (absent, an open `.partial`, another cluster's): asked again after a while.
    Skipped(Duration),
    Failed(String, Duration),
    /// An asked-for file's answer is written.
    Answered,
}

/// The prefetcher `wal-fetch` starts: keeps the `depth` segments after the announced one in
/// the spool until recovery is over, the postmaster is gone, PostgreSQL stops asking for
/// [`IDLE`] or `cancel`. Returns at once when another process holds the spool.
pub async fn run(
    spool: &Spool,
    storage: &Storage,
    codec: &Codec,
    depth: usize,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let Some(_lock) = spool.try_lock()? else {
        return Ok(());
    };
    spool.clear();
    let seed = head_start(spool, storage).await;
    if seed.is_none() && spool.wanted().is_none() {
        // Nothing to start from yet: the wal-fetch that hands a segment over starts another.
        let _ = std::fs::remove_dir_all(&spool.dir);
        return Ok(());
    }
    let (spooled, handed) = drive(spool, storage, codec, depth.max(1), None, seed, cancel).await?;
    let _ = std::fs::remove_dir_all(&spool.dir);
    eprintln!(
        "backup-agent wal-prefetch: {spooled} segments prefetched, {handed} handed to PostgreSQL"
    );
    Ok(())
}

/// The restore process serving a spool it opened ([`Spool::open_served`]) to a PostgreSQL that
/// runs as another user (`restore --recover`, restore drills): answers every file PostgreSQL
/// asks for (fetched with retry; the file, "absent" or the error), and keeps `depth` segments
/// ahead (0: none), all with the restore process's rights. Until `cancel`; the spool is
/// removed at the end.
pub async fn serve(
    spool: &Spool,
    lock: ServedLock,
    storage: &Storage,
    codec: &Codec,
    depth: usize,
    serving: Serving,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let seed = head_start(spool, storage).await;
    let r = drive(spool, storage, codec, depth, Some(serving), seed, cancel).await;
    let _ = std::fs::remove_dir_all(&spool.dir);
    drop(lock);
    r.map(drop)
}

/// A head start: the segment before the restored backup's first one (from `backup_label`,
/// which PostgreSQL renames once it has read it) and the segment size (from the archive's
/// status), so that the window is fetched while PostgreSQL starts. `None` when either is
/// unknown: the window then starts with the first segment handed over.
async fn head_start(spool: &Spool, storage: &Storage) -> Option<(String, u64)> {
    let label = std::fs::read_to_string(spool.data.join("backup_label")).ok()?;
    let line = label
        .lines()
        .find(|l| l.starts_with("START WAL LOCATION:"))?;
    let first = line.split("(file ").nth(1)?.trim_end_matches(')').trim();
    let status = storage.get(WAL_STATUS_KEY).await.ok()?;
    let size = serde_json::from_slice::<WalStatus>(&status)
        .ok()?
        .segment_size?;
    let (tli, segno) = parse_segment_name(first, size)?;
    Some((segment_name(tli, segno.checked_sub(1)?, size), size))
}

/// The spool's loop; returns the segments spooled and those handed to PostgreSQL. `seed`: where
/// the window starts until PostgreSQL announces a segment.
async fn drive(
    spool: &Spool,
    storage: &Storage,
    codec: &Codec,
    depth: usize,
    serving: Option<Serving>,
    seed: Option<(String, u64)>,
    cancel: CancellationToken,
) -> anyhow::Result<(u64, u64)> {
    let depth = depth.min(MAX_PREFETCH);
    // Nearest first, as many at a time as there are cores (twice that on S3, where a fetch
    // mostly waits on round trips): decoding is CPU work, and the segment PostgreSQL needs
    // next should not share the CPU with seven later ones.
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let per_core = if matches!(storage, Storage::S3(_)) {
        2
    } else {
        1
    };
    let jobs = (cores * per_core).clamp(2, depth.max(2));
    let owner = serving.and_then(|s| s.owner);
    let mut tasks = tokio::task::JoinSet::new();
    let mut inflight: HashSet<String> = HashSet::new();
    let mut not_before: HashMap<String, Instant> = HashMap::new();
    // Segments prefetched and still in the spool.
    let mut prefetched: HashSet<String> = HashSet::new();
    let mut last = (String::new(), Instant::now());
    let (mut spooled, mut handed) = (0u64, 0u64);
    while !cancel.is_cancelled() {
        let wanted = spool.wanted().or_else(|| seed.clone());
        if serving.is_none() {
            // Started by wal-fetch: ends with recovery, or when PostgreSQL stops asking.
            let Some((want, _)) = &wanted else { break };
            if spool.recovery_over() {
                break;
            }
            if *want != last.0 {
                last = (want.clone(), Instant::now());
            } else if last.1.elapsed() > IDLE && inflight.is_empty() {
                break;
            }
        }
        let window: Vec<String> = match wanted
            .as_ref()
            .and_then(|(w, size)| Some((parse_segment_name(w, *size)?, *size)))
        {
            Some(((tli, segno), size)) => (1..=depth as u64)
                .map(|i| segment_name(tli, segno + i, size))
                .collect(),
            None if serving.is_none() => break,
            None => vec![],
        };
        // Taken by PostgreSQL, or fallen out of the window (behind recovery, another timeline).
        prefetched.retain(|n| {
            let p = spool.path(n);
            if !p.exists() {
                handed += 1;
                false
            } else if window.contains(n) {
                true
            } else {
                let _ = std::fs::remove_file(p);
                false
            }
        });
        not_before.retain(|n, _| window.contains(n));
        if let Some(serving) = serving {
            for name in asked(spool) {
                if inflight.contains(&name) {
                    // Being prefetched: answered when that ends.
                    continue;
                }
                let _ = std::fs::remove_file(spool.path(&format!("{name}{ASK}")));
                if spool.path(&name).exists() {
                    continue;
                }
                inflight.insert(name.clone());
                let (s, st, c, n) = (spool.clone(), storage.clone(), codec.clone(), name);
                tasks.spawn(async move {
                    answer(&s, &st, &c, &n, serving).await;
                    (n, Outcome::Answered)
                });
            }
        }
        for name in &window {
            if inflight.len() >= jobs {
                break;
            }
            if inflight.contains(name)
                || spool.path(name).exists()
                || not_before.get(name).is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            std::fs::write(spool.path(&format!("{name}{INFLIGHT}")), b"")?;
            inflight.insert(name.clone());
            let (s, st, c, n) = (spool.clone(), storage.clone(), codec.clone(), name.clone());
            tasks.spawn(async move {
                let outcome = prefetch_one(&s, &st, &c, &n, owner).await;
                (n, outcome)
            });
        }
        tokio::select! {
            Some(done) = tasks.join_next() => {
                let (name, outcome) = done?;
                inflight.remove(&name);
                let _ = std::fs::remove_file(spool.path(&format!("{name}{INFLIGHT}")));
                match outcome {
                    Outcome::Spooled => {
                        spooled += 1;
                        prefetched.insert(name);
                    }
                    Outcome::Answered => {}
                    Outcome::Skipped(after) => {
                        not_before.insert(name, Instant::now() + after);
                    }
                    Outcome::Failed(e, after) => {
                        eprintln!(
                            "backup-agent wal-prefetch {name}: {e} ({} fetches it again when PostgreSQL asks)",
                            if serving.is_some() { "the restore process" } else { "wal-fetch" }
                        );
                        not_before.insert(name, Instant::now() + after);
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(if serving.is_some() { 2 } else { 10 })) => {}
            _ = cancel.cancelled() => {}
        }
    }
    tasks.shutdown().await;
    Ok((spooled, handed))
}

/// The names PostgreSQL asks a served spool for.
fn asked(spool: &Spool) -> Vec<String> {
    std::fs::read_dir(&spool.dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.strip_suffix(ASK).map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Fetches one segment into the spool: written aside, its header checked, then renamed.
async fn prefetch_one(
    spool: &Spool,
    storage: &Storage,
    codec: &Codec,
    name: &str,
    owner: Option<(u32, u32)>,
) -> Outcome {
    let aside = spool.path(&format!("{name}{FETCHING}"));
    let outcome = match fetch_once(storage, codec, name, &aside).await {
        Ok(Fetched::Written(key)) if key.contains(".partial") => {
            Outcome::Skipped(Duration::from_secs(1))
        }
        Ok(Fetched::Written(key)) => match read_header(&aside) {
            Ok(h) if h.system_id == spool.system_id => {
                match give(&aside, owner).and_then(|()| std::fs::rename(&aside, spool.path(name))) {
                    Ok(()) => return Outcome::Spooled,
                    Err(e) => Outcome::Failed(e.to_string(), Duration::from_secs(2)),
                }
            }
            Ok(h) => Outcome::Failed(
                format!(
                    "object {key} belongs to cluster {}, this data directory to {}",
                    h.system_id, spool.system_id
                ),
                IDLE,
            ),
            Err(e) => Outcome::Failed(format!("object {key}: {e}"), IDLE),
        },
        Ok(Fetched::Absent) => Outcome::Skipped(Duration::from_millis(500)),
        Err(FetchError::Storage(e)) => Outcome::Failed(e, Duration::from_secs(1)),
        Err(FetchError::Fatal(e)) => Outcome::Failed(e, Duration::from_secs(5)),
    };
    let _ = std::fs::remove_file(&aside);
    outcome
}

/// Answers an asked-for file exactly as `wal-fetch` would: the file (retrying storage errors
/// for `restore.wal_fetch_retry`), "absent", or the error.
async fn answer(spool: &Spool, storage: &Storage, codec: &Codec, name: &str, serving: Serving) {
    let aside = spool.path(&format!("{name}{FETCHING}"));
    let given = match fetch(storage, codec, name, &aside, serving.retry).await {
        Ok(Fetched::Written(_)) => give(&aside, serving.owner)
            .and_then(|()| std::fs::rename(&aside, spool.path(name)))
            .map_err(|e| format!("cannot hand {name} over: {e}")),
        Ok(Fetched::Absent) => spool
            .answer(name, ABSENT, "", serving.owner)
            .map_err(|e| format!("cannot answer that {name} is absent: {e}")),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = given {
        let _ = std::fs::remove_file(&aside);
        if let Err(e) = spool.answer(name, ERROR, &why, serving.owner) {
            // wal-fetch gives up when its wait is over, and recovery stops.
            eprintln!("backup-agent: cannot answer for {name} ({why}): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory with just what the spool reads: `global/pg_control` and `pg_wal`.
    fn data_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outrigger-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("global")).expect("mkdir");
        std::fs::create_dir_all(d.join("pg_wal")).expect("mkdir");
        std::fs::write(d.join("global/pg_control"), 7_u64.to_ne_bytes()).expect("pg_control");
        d
    }

    /// What `wal-fetch` gets for `name` when the restore process answers with `reply`.
    fn asked_and_answered(spool: &Spool, name: &str, reply: impl FnOnce(&Spool)) -> Answer {
        let dest = spool.data.join("pg_wal/RECOVERYXLOG");
        let _ = std::fs::remove_file(&dest);
        let asking = {
            let (s, n, d) = (spool.clone(), name.to_string(), dest.clone());
            std::thread::spawn(move || s.ask(&n, &d, Duration::from_secs(20)))
        };
        let ask = spool.path(&format!("{name}{ASK}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ask.exists() {
            assert!(
                Instant::now() < deadline,
                "wal-fetch never asked for {name}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        reply(spool);
        asking.join().expect("join")
    }

    /// The served spool's protocol, from `wal-fetch`'s side: the file, "absent" and an error
    /// each come back as such, and once the restore process is gone `wal-fetch` fails (recovery
    /// stops) instead of waiting out its bound or taking that for "absent".
    #[test]
    fn a_served_spool_answers_file_absent_error_and_a_gone_server_stops_recovery() {
        let data = data_dir("served");
        let spool = Spool::of_data_dir(&data).expect("spool");
        assert_eq!(spool.served_wait(), None, "served before anyone serves it");
        let lock = spool
            .open_served(Serving {
                owner: None,
                retry: Duration::from_secs(3),
            })
            .expect("open");
        assert_eq!(spool.served_wait(), Some(Duration::from_secs(126)));

        let seg = "000000010000000000000005";
        let got = asked_and_answered(&spool, seg, |s| {
            std::fs::write(s.path(seg), b"segment bytes").expect("answer");
        });
        assert_eq!(got, Answer::Placed);
        let placed = spool.data.join("pg_wal/RECOVERYXLOG");
        assert_eq!(std::fs::read(&placed).expect("placed"), b"segment bytes");

        let history = "00000002.history";
        let got = asked_and_answered(&spool, history, |s| {
            s.answer(history, ABSENT, "", None).expect("answer");
        });
        assert_eq!(got, Answer::Absent);

        let got = asked_and_answered(&spool, seg, |s| {
            s.answer(seg, ERROR, "object wal/x.zst is damaged", None)
                .expect("answer");
        });
        assert_eq!(got, Answer::Failed("object wal/x.zst is damaged".into()));

        // A stale answer left behind is not taken for the next ask's.
        spool.answer(seg, ABSENT, "", None).expect("stale");
        let got = asked_and_answered(&spool, seg, |s| {
            std::fs::write(s.path(seg), b"again").expect("answer");
        });
        assert_eq!(got, Answer::Placed);

        let started = Instant::now();
        let got = asked_and_answered(&spool, seg, |_| drop(lock));
        assert_eq!(
            got,
            Answer::Failed("the restore process that serves WAL to this recovery is gone".into())
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited out its bound"
        );
        assert_eq!(
            spool.served_wait(),
            None,
            "still served after the server went"
        );
        let _ = std::fs::remove_dir_all(&data);
    }
}
