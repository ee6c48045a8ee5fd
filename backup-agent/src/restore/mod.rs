//! Restore and point-in-time recovery: pick the right full backup, check that the archive
//! reaches the target, unpack it safely ([`unpack`]) into a new 0700 directory (checking every
//! object's SHA-256 against the catalog), write `recovery.signal`, the recovery target and a
//! `restore_command` that runs this binary's `wal-fetch` with the settings it needs
//! (`outrigger-restore.toml` in the target, mode 0600), then hand the directory to `--owner`.
//! With `--recover` ([`recover`]) a temporary postmaster replays to the target and promotes, and
//! what remains is a data directory any stock PostgreSQL starts without backup-agent.
//! An empty or missing target directory only; on any failure before recovery what was written
//! is removed, so a restore never leaves garbage that looks like a data directory.

pub mod recover;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::catalog::{BackupKind, Catalog, Manifest, WalStatus};

use crate::compress::{self, Codec};
use crate::config::Config;
use crate::pg::lsn::{format_lsn, parse_lsn};
use crate::storage::{HashingReader, Storage};

/// The file in a restored data directory that holds what `wal-fetch` needs.
pub const SETTINGS_FILE: &str = "outrigger-restore.toml";
/// The line that starts what a restore appends to `postgresql.auto.conf`.
const AUTO_CONF_MARK: &str = "# written by backup-agent restore";

/// What to restore to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The end of the available WAL (the default).
    Latest,
    /// A named backup, recovered to its consistency point only.
    Backup(String),
    /// Recover up to this time (`recovery_target_time`).
    Time(SystemTime),
    /// Recover up to this LSN (`recovery_target_lsn`).
    Lsn(String),
}

/// Parses `--time`: RFC 3339 (`2026-12-02T05:52:06Z`) or PostgreSQL's own text
/// (`2026-12-02 05:52:06.916482+00`, `... +01:00`, `...+0100`), with or without fractional
/// seconds. A time without a zone is refused: guessing one moves the target by hours.
pub fn parse_time(s: &str) -> anyhow::Result<SystemTime> {
    let t = s.trim();
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--time {s:?}: {why}; give a time with its zone, e.g. 2026-12-02T05:52:06Z, \
             '2026-12-02 05:52:06.916482+00' (what PostgreSQL prints) or '2026-12-02 06:52:06+01:00'"
        )
    };
    if t.len() < 19 || !t.is_char_boundary(10) || !t.is_char_boundary(19) {
        return Err(bad("not a date and time"));
    }
    let (date, rest) = t.split_at(10);
    let rest = rest
        .strip_prefix(['T', 't', ' '])
        .ok_or_else(|| bad("not a date and time"))?;
    // The clock (with fraction), then the zone, maybe after a space.
    let clock_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(clock_len);
    let zone = zone.trim_start();
    let zone = match zone {
        "" => return Err(bad("it has no time zone")),
        "Z" | "z" | "UTC" => "+00:00".to_string(),
        z if (z.starts_with('+') || z.starts_with('-'))
            && z[1..].chars().all(|c| c.is_ascii_digit() || c == ':') =>
        {
            let digits: String = z[1..].chars().filter(char::is_ascii_digit).collect();
            match digits.len() {
                2 => format!("{}{digits}:00", &z[..1]),
                4 => format!("{}{}:{}", &z[..1], &digits[..2], &digits[2..]),
                _ => return Err(bad("its zone offset is not +HH, +HHMM or +HH:MM")),
            }
        }
        _ => return Err(bad("its time zone is not an offset (+01:00) or Z")),
    };
    let text = format!("{date}T{clock}{zone}");
    let dt = chrono::DateTime::parse_from_rfc3339(&text).map_err(|e| bad(&e.to_string()))?;
    let secs = dt.timestamp();
    let nanos = dt.timestamp_subsec_nanos();
    let since = std::time::Duration::new(secs.max(0) as u64, nanos);
    if secs < 0 {
        return Err(bad("before 1970"));
    }
    Ok(SystemTime::UNIX_EPOCH + since)
}

/// The full backup a target needs: the newest that finished before it.
pub fn pick<'a>(catalog: &'a Catalog, target: &Target) -> anyhow::Result<&'a Manifest> {
    let mut fulls: Vec<&Manifest> = catalog
        .manifests
        .iter()
        .filter(|m| m.kind == BackupKind::PostgresFull)
        .collect();
    fulls.sort_by_key(|m| m.finished_at);
    let chosen = match target {
        Target::Latest => fulls.last().copied(),
        Target::Backup(id) => fulls.iter().copied().find(|m| &m.id == id),
        Target::Time(t) => fulls.iter().copied().rev().find(|m| m.finished_at <= *t),
        Target::Lsn(l) => {
            let want = parse_lsn(l)
                .ok_or_else(|| anyhow::anyhow!("--lsn {l:?} is not an LSN like 0/3000028"))?;
            fulls.iter().copied().rev().find(|m| {
                m.end_lsn
                    .as_deref()
                    .and_then(parse_lsn)
                    .is_some_and(|e| e <= want)
            })
        }
    };
    chosen.ok_or_else(|| match target {
        Target::Backup(id) => anyhow::anyhow!("no complete full backup with id {id:?} (see `backup-agent list`)"),
        Target::Latest => anyhow::anyhow!("no complete full backup in the catalog"),
        Target::Time(t) => anyhow::anyhow!(
            "no full backup finished before {}: the earliest recoverable time is the end of the oldest full backup",
            humantime::format_rfc3339_seconds(*t)
        ),
        Target::Lsn(l) => anyhow::anyhow!("no full backup ends at or before LSN {l}"),
    })
}

/// Refuses a target past the newest archived WAL, before anything is written: PostgreSQL would
/// otherwise stop at the end of the archive, short of what was asked.
pub fn check_reachable(catalog: &Catalog, target: &Target) -> anyhow::Result<()> {
    let newest = || -> anyhow::Result<&WalStatus> {
        catalog.wal.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the catalog has no archived WAL (catalog/wal-status.json): only --backup ID (its consistency point) can be restored")
        })
    };
    match target {
        Target::Lsn(l) => {
            let want = parse_lsn(l)
                .ok_or_else(|| anyhow::anyhow!("--lsn {l:?} is not an LSN like 0/3000028"))?;
            let w = newest()?;
            let have = parse_lsn(&w.flushed_lsn).unwrap_or(0);
            if want > have {
                anyhow::bail!(
                    "--lsn {l} is past the newest archived WAL: the archive reaches {} (timeline {}, stored at {}); \
                     restore without --lsn for the latest point, or wait for the archiver",
                    format_lsn(have),
                    w.timeline,
                    humantime::format_rfc3339_seconds(w.updated_at)
                );
            }
        }
        Target::Time(t) => {
            let w = newest()?;
            if *t > w.updated_at {
                anyhow::bail!(
                    "--time {} is past the newest archived WAL: the archive is known complete up to {} \
                     (LSN {}, timeline {}); restore without --time for the latest point, or wait for the archiver",
                    humantime::format_rfc3339_micros(*t),
                    humantime::format_rfc3339_millis(w.updated_at),
                    w.flushed_lsn,
                    w.timeline
                );
            }
        }
        Target::Latest | Target::Backup(_) => {}
    }
    Ok(())
}

/// How a restore is done.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    /// The new data directory (empty or missing).
    pub dir: PathBuf,
    /// The OS user the result belongs to (`--owner`); `None`: the user running the restore.
    pub owner: Option<String>,
    /// Where each tablespace OID goes (`--tablespace-map OID=DIR`).
    pub tablespaces: unpack::TablespaceMap,
    /// Replay and promote now, with a temporary postmaster (`--recover`).
    pub recover: bool,
}

/// The binary `restore_command` runs, and the config file the restore came from.
#[derive(Clone, Debug)]
pub struct Fetcher {
    pub exe: PathBuf,
    pub config: Option<PathBuf>,
}

impl Fetcher {
    /// This binary.
    pub fn current(config: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            config: config.map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf())),
        })
    }
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub backup: Manifest,
    /// Where recovery ended, with `--recover`.
    pub recovered: Option<recover::Recovered>,
    /// What the person restoring should know (without `--recover`: a storage the server's user
    /// cannot read).
    pub warnings: Vec<String>,
}

/// Restores into `opts.dir` (which must be empty or missing).
pub async fn restore(
    cfg: &Config,
    storage: &Storage,
    codec: &Codec,
    opts: &Options,
    fetcher: &Fetcher,
) -> anyhow::Result<Restored> {
    let cat = storage.catalog().await?;
    let m = pick(&cat, &opts.target)?.clone();
    check_reachable(&cat, &opts.target)?;
    let owner = match &opts.owner {
        Some(name) => Some(crate::osuser::lookup(name)?),
        None => None,
    };
    if opts.recover && owner.is_none() && crate::osuser::is_root() {
        anyhow::bail!(
            "--recover runs PostgreSQL, which refuses to run as root: give --owner (e.g. --owner postgres)"
        );
    }
    let dir = &opts.dir;
    let tablespaces = tablespace_dirs(&m, dir, &opts.tablespaces)?;
    prepare_dir(dir, "--target-dir")?;
    let made = async {
        for (oid, d) in &tablespaces {
            prepare_dir(d, &format!("tablespace {oid}'s directory"))?;
        }
        unpack_all(storage, codec, &m, dir, &tablespaces).await?;
        write_settings(cfg, dir, fetcher)?;
        write_recovery(dir, &opts.target, &restore_command(fetcher, dir))?;
        if let Some((uid, gid)) = owner {
            crate::osuser::chown_tree(dir, uid, gid)?;
            for d in tablespaces.values() {
                crate::osuser::chown_tree(d, uid, gid)?;
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = made {
        clear(dir);
        for d in tablespaces.values() {
            clear(d);
        }
        return Err(e);
    }
    let mut warnings = vec![];
    if !opts.recover
        && let (Some(owner), Storage::Local(l)) = (owner, storage)
        && let Some(why) = unreadable_by(&l.root().join("wal"), owner)
    {
        warnings.push(format!(
            "PostgreSQL's restore_command (wal-fetch) will run as uid {}, and {why}: \
             recovery will stop at the first WAL file. Restore with --recover (this process then \
             fetches the WAL for it), or set storage.mode = \"0640\" with a group that user is in.",
            owner.0
        ));
    }
    let recovered = if opts.recover {
        let bin = recover::bin_dir(cfg.drill.bin_dir.as_deref(), m.pg_version);
        let r = recover::run(&recover::Run {
            dir,
            bin: &bin,
            owner,
            user: &cfg.drill.user,
            database: &cfg.drill.database,
            query: None,
            wal: recover::Wal {
                storage,
                codec,
                settings: &cfg.restore,
            },
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\nThe data directory {} holds backup {} unpacked but NOT promoted. Once the cause is \
                 fixed, restore again into an empty directory (or start PostgreSQL on it to resume recovery, \
                 if its user can read the storage).",
                dir.display(),
                m.id
            )
        })?;
        finish_recovered(dir)?;
        Some(r)
    } else {
        None
    };
    Ok(Restored {
        backup: m,
        recovered,
        warnings,
    })
}

/// Why user `(uid, gid)` cannot list directory `dir`, judged by its owner and mode (supplementary
/// groups and ACLs are not looked at); `None` when it looks readable.
fn unreadable_by(dir: &Path, (uid, gid): (u32, u32)) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).ok()?;
    let bits = if m.uid() == uid {
        m.mode() >> 6
    } else if m.gid() == gid {
        m.mode() >> 3
    } else {
        m.mode()
    } & 0o5;
    (uid != 0 && bits != 0o5).then(|| {
        format!(
            "{} (owner {}, group {}, mode {:04o}) is not readable for it",
            dir.display(),
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        )
    })
}

/// The tablespace archives of a backup (`<oid>.tar...`): OID -> the object's key.
fn tablespace_archives(m: &Manifest) -> BTreeMap<u32, &str> {
    m.objects
        .iter()
        .filter_map(|o| {
            let name = o.key.rsplit('/').next()?;
            let oid = name.split_once(".tar")?.0.parse().ok()?;
            Some((oid, o.key.as_str()))
        })
        .collect()
}

/// Where each of the backup's tablespaces goes: `--tablespace-map OID=DIR`, or beside the
/// target (`<target>-tablespace-<oid>`). A mapped OID the backup does not have is refused.
fn tablespace_dirs(
    m: &Manifest,
    dir: &Path,
    mapped: &unpack::TablespaceMap,
) -> anyhow::Result<unpack::TablespaceMap> {
    let have = tablespace_archives(m);
    if let Some(oid) = mapped.keys().find(|oid| !have.contains_key(oid)) {
        anyhow::bail!(
            "--tablespace-map {oid}=...: backup {} has no tablespace {oid} (it has: {})",
            m.id,
            if have.is_empty() {
                "none".to_string()
            } else {
                have.keys()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("--target-dir {} has no name", dir.display()))?
        .to_string_lossy();
    Ok(have
        .keys()
        .map(|oid| {
            let d = mapped
                .get(oid)
                .cloned()
                .unwrap_or_else(|| dir.with_file_name(format!("{name}-tablespace-{oid}")));
            (*oid, d)
        })
        .collect())
}

/// An empty directory with mode 0700 (PostgreSQL refuses a data directory others can read).
/// `what` names it in errors.
fn prepare_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(dir)?.next().is_some() {
                anyhow::bail!(
                    "{what} {} is not empty; restore refuses to write into it",
                    dir.display()
                );
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(_) => anyhow::bail!("{what} {} exists and is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            // The umask may have taken bits away, never added: set exactly 0700.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Err(e) => anyhow::bail!("{}: {e}", dir.display()),
    }
    Ok(())
}

fn clear(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            let _ = if is_dir {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

async fn unpack_all(
    storage: &Storage,
    codec: &Codec,
    m: &Manifest,
    dir: &Path,
    tablespaces: &unpack::TablespaceMap,
) -> anyhow::Result<()> {
    for o in &m.objects {
        let name = o.key.rsplit('/').next().unwrap_or_default();
        let (size, sha) = if name.starts_with("backup_manifest") {
            // Small: read it whole, check it, then write it out.
            let bytes = storage.get(&o.key).await?;
            let got = (bytes.len() as u64, crate::storage::sha256_hex(&bytes));
            if got == (o.size, o.sha256.clone()) {
                use tokio::io::AsyncReadExt;
                let mut dec = codec.decoder(&o.key, std::io::Cursor::new(bytes))?;
                let mut text = vec![];
                dec.read_to_end(&mut text)
                    .await
                    .map_err(|e| anyhow::anyhow!("object {}: {e}", o.key))?;
                unpack::write_nofollow(&dir.join("backup_manifest"), &text, false, 0o600)?;
            }
            got
        } else {
            // (where, under which subdirectory, the tablespace links it may hold)
            let (into, base, links) = if name.starts_with("pg_wal.tar") {
                (dir.to_path_buf(), "pg_wal", Default::default())
            } else if name.starts_with("base.tar") {
                (dir.to_path_buf(), "", tablespaces.clone())
            } else if let Some(d) = tablespace_archives(m)
                .into_iter()
                .find(|(_, k)| *k == o.key)
                .and_then(|(oid, _)| tablespaces.get(&oid))
            {
                (d.clone(), "", Default::default())
            } else {
                anyhow::bail!(
                    "object {}: neither the data directory's nor a tablespace's archive",
                    o.key
                )
            };
            let file = storage.open(&o.key).await?;
            unpack_tar(codec, &o.key, HashingReader::new(file), into, base, links)
                .await
                .map_err(|e| anyhow::anyhow!("object {} is damaged or unreadable: {e:#}", o.key))?
        };
        crate::storage::check_stored(o, (size, sha))?;
    }
    Ok(())
}

/// The size and SHA-256 of an object's stored bytes, once it has been read to the end.
pub type StoredHash = tokio::task::JoinHandle<std::io::Result<(u64, String)>>;

/// A stored object decompressed, and the size and SHA-256 of its stored bytes once it has been
/// read to the end (a tee: one task reads and hashes the object and feeds the decoder through a
/// pipe; bytes after the end of the compressed frame are still hashed).
pub fn decode_hashed(
    codec: &Codec,
    key: &str,
    mut stored: HashingReader<crate::storage::Reader>,
) -> anyhow::Result<(compress::Decoded, StoredHash)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tx, rx) = tokio::io::duplex(256 * 1024);
    let tee = tokio::spawn(async move {
        let mut buf = vec![0u8; 128 * 1024];
        let mut forwarding = true;
        loop {
            let n = stored.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if forwarding && tx.write_all(&buf[..n]).await.is_err() {
                forwarding = false;
            }
        }
        drop(tx);
        Ok::<_, std::io::Error>(stored.finish())
    });
    Ok((codec.decoder(key, rx)?, tee))
}

/// Decompresses and untars a stored archive into `dir`, hashing every stored byte on the way.
async fn unpack_tar(
    codec: &Codec,
    key: &str,
    stored: HashingReader<crate::storage::Reader>,
    dir: PathBuf,
    base: &'static str,
    tablespaces: unpack::TablespaceMap,
) -> anyhow::Result<(u64, String)> {
    let (dec, tee) = decode_hashed(codec, key, stored)?;
    let bridge = tokio_util::io::SyncIoBridge::new(dec);
    let unpacked =
        tokio::task::spawn_blocking(move || unpack::unpack(bridge, &dir, base, &tablespaces))
            .await?;
    let hashed = tee.await??;
    // A damaged object usually fails to decompress: report it as damage, with the checksum.
    unpacked.map_err(|e| anyhow::anyhow!("{e:#} (stored object SHA-256 {})", hashed.1))?;
    Ok(hashed)
}

/// `restore_command` for a restored cluster: this binary's wal-fetch with the settings file in
/// the data directory. No secret is on the command line.
pub fn restore_command(fetcher: &Fetcher, dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!(
        "'{}' --config '{}' wal-fetch \"%f\" \"%p\"",
        fetcher.exe.display(),
        dir.join(SETTINGS_FILE).display()
    )
}

/// Writes `outrigger-restore.toml` (0600): the storage, encryption keys (by file), and restore
/// settings in force, with every path absolute, so that wal-fetch works from the data directory
/// whatever its working directory and environment.
fn write_settings(cfg: &Config, dir: &Path, fetcher: &Fetcher) -> anyhow::Result<()> {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    let mut storage = cfg.storage.clone();
    storage.path = abs(&storage.path);
    let mut encryption = crate::config::Encryption {
        recipients: vec![],
        identity_file: cfg.encryption.identity_file.as_deref().map(abs),
        passphrase_file: cfg.encryption.passphrase_file.as_deref().map(abs),
    };
    if encryption.identity_file.is_some() {
        encryption.passphrase_file = None;
    }
    let mut inline_secret = None;
    if let Some(s3) = storage.s3.as_mut() {
        s3.secret_access_key_file = s3.secret_access_key_file.as_deref().map(abs);
        inline_secret = s3.secret_access_key.take();
    }
    #[derive(serde::Serialize)]
    struct Settings<'a> {
        storage: &'a crate::config::Storage,
        encryption: &'a crate::config::Encryption,
        restore: &'a crate::config::Restore,
    }
    let mut doc = toml::Value::try_from(Settings {
        storage: &storage,
        encryption: &encryption,
        restore: &cfg.restore,
    })?;
    if let (Some(secret), Some(s3)) = (
        inline_secret,
        doc.get_mut("storage")
            .and_then(|s| s.get_mut("s3"))
            .and_then(|s| s.as_table_mut()),
    ) {
        // Given inline (file or environment) to the restore: kept in this 0600 file only.
        s3.insert(
            "secret_access_key".into(),
            toml::Value::String(secret.expose().to_string()),
        );
    }
    let text = format!(
        "# Written by backup-agent restore at {} for PostgreSQL's restore_command (wal-fetch):\n\
         # the settings in force{}, environment overrides included. Removed by --recover;\n\
         # remove it yourself once recovery is over otherwise.\n{}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        fetcher
            .config
            .as_ref()
            .map(|c| format!(" (from {})", c.display()))
            .unwrap_or_default(),
        toml::to_string(&doc)?
    );
    let path = dir.join(SETTINGS_FILE);
    if std::fs::symlink_metadata(&path).is_ok() {
        anyhow::bail!(
            "{} exists in the archive; refusing to overwrite it",
            path.display()
        );
    }
    unpack::write_nofollow(&path, text.as_bytes(), false, 0o600)
}

fn write_recovery(dir: &Path, target: &Target, restore_command: &str) -> anyhow::Result<()> {
    use std::fmt::Write;
    unpack::write_nofollow(&dir.join("recovery.signal"), b"", false, 0o600)?;
    let mut conf = String::new();
    writeln!(conf, "\n{AUTO_CONF_MARK}")?;
    writeln!(
        conf,
        "restore_command = '{}'",
        restore_command.replace('\'', "''")
    )?;
    match target {
        Target::Latest => {}
        Target::Backup(_) => writeln!(conf, "recovery_target = 'immediate'")?,
        Target::Time(t) => {
            // PostgreSQL's timestamptz input: `2026-11-30 20:34:50.881968+00`.
            let ts = humantime::format_rfc3339_micros(*t)
                .to_string()
                .replacen('T', " ", 1)
                .replace('Z', "+00");
            writeln!(conf, "recovery_target_time = '{ts}'")?
        }
        Target::Lsn(l) => writeln!(conf, "recovery_target_lsn = '{l}'")?,
    }
    if *target != Target::Latest {
        writeln!(conf, "recovery_target_action = 'promote'")?;
    }
    unpack::write_nofollow(
        &dir.join("postgresql.auto.conf"),
        conf.as_bytes(),
        true,
        0o600,
    )
}

/// After `--recover`: the restore's lines leave postgresql.auto.conf and the settings file goes,
/// so that a stock PostgreSQL starts the directory without backup-agent.
fn finish_recovered(dir: &Path) -> anyhow::Result<()> {
    let auto = dir.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto)?;
    let kept = match text.find(AUTO_CONF_MARK) {
        Some(at) => text[..at].trim_end().to_string() + "\n",
        None => text,
    };
    unpack::write_nofollow(&auto, kept.as_bytes(), false, 0o600)?;
    let _ = std::fs::remove_file(dir.join(SETTINGS_FILE));
    let _ = std::fs::remove_dir_all(dir.join("pg_wal").join(crate::pg::prefetch::SPOOL_DIR));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_people_paste() {
        let at = |s: &str| {
            humantime::format_rfc3339_micros(parse_time(s).unwrap_or_else(|e| panic!("{s}: {e}")))
                .to_string()
        };
        for (input, want) in [
            ("2026-12-02T05:52:06Z", "2026-12-02T05:52:06.000000Z"),
            (
                "2026-12-02 05:52:06.916482+00",
                "2026-12-02T05:52:06.916482Z",
            ),
            (
                "2026-12-02 06:52:06.916482+01",
                "2026-12-02T05:52:06.916482Z",
            ),
            ("2026-12-02 06:52:06 +01:00", "2026-12-02T05:52:06.000000Z"),
            ("2026-12-02T06:52:06+0100", "2026-12-02T05:52:06.000000Z"),
            ("2026-12-02 01:52:06.5-04", "2026-12-02T05:52:06.500000Z"),
            ("2026-12-02t05:52:06z", "2026-12-02T05:52:06.000000Z"),
        ] {
            assert_eq!(at(input), want, "{input}");
        }
        for bad in [
            "2026-12-02 05:52:06",
            "2026-12-02T05:52:06.1",
            "yesterday",
            "2026-12-02 05:52:06 CET",
            "",
        ] {
            let e = parse_time(bad).expect_err(bad).to_string();
            assert!(e.contains("zone") || e.contains("date"), "{bad}: {e}");
        }
        assert!(
            parse_time("2026-12-02 05:52:06")
                .expect_err("no zone")
                .to_string()
                .contains("no time zone")
        );
    }
}
