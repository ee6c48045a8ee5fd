//! Restore and point-in-time recovery: pick the right full backup, unpack it (checking every
//! object's SHA-256 against the catalog), write `recovery.signal`, `restore_command` (this binary's
//! `wal-fetch`) and the recovery target. An empty or missing target directory only; on any failure
//! what was written is removed, so a restore never leaves garbage that looks like a data directory.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::catalog::{BackupKind, Catalog, Manifest};

use crate::compress::{self, Codec};
use crate::pg::conn::parse_lsn;
use crate::storage::{HashingReader, Storage};

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

/// Restores into `dir` (which must be empty or missing). `restore_command` is written as given.
pub async fn restore(
    storage: &Storage,
    codec: &Codec,
    target: &Target,
    dir: &Path,
    restore_command: &str,
) -> anyhow::Result<Manifest> {
    let cat = storage.catalog().await?;
    let m = pick(&cat, target)?.clone();
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)?;
        if entries.next().is_some() {
            anyhow::bail!(
                "--target-dir {} is not empty; restore refuses to write into it",
                dir.display()
            );
        }
    } else {
        std::fs::create_dir_all(dir)?;
    }
    let result = unpack_all(storage, codec, &m, dir).await;
    if let Err(e) = result {
        clear(dir);
        return Err(e);
    }
    write_recovery(dir, target, restore_command)?;
    Ok(m)
}

fn clear(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
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
) -> anyhow::Result<()> {
    for o in &m.objects {
        let name = o.key.rsplit('/').next().unwrap_or_default();
        let (size, sha) = if name.starts_with("backup_manifest") {
            // Small: read it whole, check it, then write it out.
            let bytes = storage.get(&o.key).await?;
            let got = (bytes.len() as u64, hex_sha(&bytes));
            if got == (o.size, o.sha256.clone()) {
                let mut dec = codec.decoder(&o.key, std::io::Cursor::new(bytes))?;
                let mut out = tokio::fs::File::create(dir.join("backup_manifest")).await?;
                tokio::io::copy(&mut dec, &mut out)
                    .await
                    .map_err(|e| anyhow::anyhow!("object {}: {e}", o.key))?;
            }
            got
        } else {
            let file = storage.open(&o.key).await?;
            unpack_tar(codec, &o.key, HashingReader::new(file), dir.to_path_buf())
                .await
                .map_err(|e| anyhow::anyhow!("object {} is damaged or unreadable: {e:#}", o.key))?
        };
        crate::storage::check_stored(o, (size, sha))?;
    }
    Ok(())
}

fn hex_sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
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
) -> anyhow::Result<(u64, String)> {
    let (dec, tee) = decode_hashed(codec, key, stored)?;
    let bridge = tokio_util::io::SyncIoBridge::new(dec);
    let unpacked = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut ar = tar::Archive::new(bridge);
        ar.set_preserve_permissions(true);
        ar.set_overwrite(false);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            if path.is_absolute()
                || path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                anyhow::bail!(
                    "archive entry {} escapes the target directory",
                    path.display()
                );
            }
            entry.unpack_in(&dir)?;
        }
        let mut rest = ar.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())?;
        Ok(())
    })
    .await?;
    let hashed = tee.await??;
    // A damaged object usually fails to decompress: report it as damage, with the checksum.
    unpacked.map_err(|e| anyhow::anyhow!("{e:#} (stored object SHA-256 {})", hashed.1))?;
    Ok(hashed)
}

fn write_recovery(dir: &Path, target: &Target, restore_command: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::write(dir.join("recovery.signal"), b"")?;
    let mut conf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgresql.auto.conf"))?;
    writeln!(conf, "\n# written by backup-agent restore")?;
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
    Ok(())
}

/// `restore_command` for a restored cluster: this binary's wal-fetch with the same storage and
/// config file.
pub fn restore_command(
    cfg: &crate::config::Config,
    config: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let storage =
        std::fs::canonicalize(&cfg.storage.path).unwrap_or_else(|_| cfg.storage.path.clone());
    let mut cmd = format!(
        "BACKUP_AGENT_STORAGE__PATH='{}' '{}'",
        storage.display(),
        exe.display()
    );
    if let Some(c) = config {
        let c = std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf());
        cmd.push_str(&format!(" --config '{}'", c.display()));
    }
    cmd.push_str(" wal-fetch \"%f\" \"%p\"");
    Ok(cmd)
}
