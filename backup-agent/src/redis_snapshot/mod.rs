//! Redis snapshots: an RDB pulled over the network ([`sync`]) from the node [`source`] picks,
//! checked ([`rdb`]: magic, end opcode, CRC64; [`walk`]: every record, as redis-server would
//! load it) while it streams through the compressor into
//! storage; the catalog manifest is written only when the payload passed. Restore writes a
//! verified `dump.rdb` for a stopped Redis to load.

pub mod encodings;
pub mod rdb;
pub mod source;
pub mod sync;
pub mod walk;

use std::path::Path;
use std::time::SystemTime;

use common::catalog::{BackupKind, Catalog, Manifest, ObjectEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::compress::{self, Codec};
use crate::ids::fresh_id;
use crate::storage::{HashingReader, Storage};
use rdb::{RdbCheck, RdbInfo};

/// Where a snapshot's object goes.
pub fn prefix(id: &str) -> String {
    format!("redis/{id}/")
}

/// Pulls, checks and stores one snapshot; returns its manifest (already stored).
/// `progress(bytes, total)`; the total is unknown for a diskless transfer.
pub async fn snapshot(
    ctx: &crate::context::Ctx,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> anyhow::Result<Manifest> {
    let (cfg, storage, codec) = (&ctx.cfg, &ctx.storage, &ctx.codec);
    let (id, started_at) = fresh_id(storage, BackupKind::Redis).await?;
    let picked = source::pick(&cfg.redis_snapshot, &cfg.redis).await?;
    tracing::info!(node = %picked.node, role = picked.role, why = %picked.why, "redis snapshot source");
    let key = format!("{}dump.rdb{}", prefix(&id), codec.suffix());
    let mut enc = codec.encoder(storage.create(&key).await?)?;
    let mut check = RdbCheck::new();
    // On any error below, the unfinished object is dropped: never listed, removed by cleanup.
    let pulled = sync::pull(
        &picked.node,
        cfg.redis_snapshot.idle_timeout,
        &mut enc,
        &mut check,
        progress,
    )
    .await?;
    let info = check.finish().map_err(|e| {
        anyhow::anyhow!(
            "the snapshot from {} ({}) failed its check and was not stored: {e}",
            picked.node,
            picked.role
        )
    })?;
    if !info.checksummed {
        tracing::warn!(node = %picked.node, "the server writes RDB files without a checksum (rdbchecksum no): only the structure was checked");
    }
    warn_unwalked(&info, &picked.node.to_string());
    let stored = enc.finish().await?.finish().await?;
    let mut m = Manifest {
        id: id.clone(),
        kind: BackupKind::Redis,
        started_at,
        finished_at: SystemTime::now(),
        system_id: None,
        pg_version: None,
        timeline: None,
        start_lsn: None,
        end_lsn: None,
        compression: compress::name(cfg.compression.algorithm).into(),
        objects: vec![ObjectEntry {
            key: stored.key,
            size: stored.size,
            sha256: stored.sha256,
        }],
        info: Default::default(),
    };
    for (k, v) in [
        (
            "source",
            format!("{}:{}", picked.node.host, picked.node.port),
        ),
        ("source_role", picked.role.to_string()),
        ("source_why", picked.why.clone()),
        ("rdb_version", info.version.to_string()),
        ("rdb_bytes", info.size.to_string()),
        (
            "rdb_checksum",
            if info.checksummed { "crc64" } else { "none" }.into(),
        ),
        ("rdb_walked", walked_summary(&info)),
        ("diskless", pulled.diskless.to_string()),
        ("server_wait_ms", pulled.server_wait.as_millis().to_string()),
        ("transfer_ms", pulled.transfer.as_millis().to_string()),
    ] {
        m.info.insert(k.into(), v);
    }
    crate::catalog::record(storage, &m).await?;
    Ok(m)
}

/// The manifest's account of the structure walk: `keys=N databases=N` (with `modules=`,
/// `functions=` and `dups_checked=false` when they apply), or why it was not walked.
pub fn walked_summary(info: &RdbInfo) -> String {
    match &info.walked {
        None => format!(
            "no: RDB version {} is newer than the walker knows ({})",
            info.version,
            walk::KNOWN_VERSION
        ),
        Some(w) => {
            let mut s = format!("keys={} databases={}", w.keys, w.databases);
            if w.modules > 0 {
                s += &format!(" modules={}", w.modules);
            }
            if w.functions > 0 {
                s += &format!(" functions={}", w.functions);
            }
            if !w.dups_checked {
                s += " dups_checked=false";
            }
            s
        }
    }
}

/// Says what the walk could not vouch for.
fn warn_unwalked(info: &RdbInfo, what: &str) {
    match &info.walked {
        None => tracing::warn!(
            "{what}: RDB version {} is newer than this backup-agent knows ({}): only its checksum was checked",
            info.version,
            walk::KNOWN_VERSION
        ),
        Some(w) => {
            if !w.dups_checked {
                tracing::warn!(
                    "{what}: more keys in a database (or members in a collection) than the duplicate check holds ({}): duplicates were not looked for past it",
                    walk::DUP_LIMIT
                );
            }
            if w.modules > 0 || w.functions > 0 {
                tracing::info!(
                    "{what}: {} module records and {} function libraries: their contents load only where the module (or the function engine) accepts them",
                    w.modules,
                    w.functions
                );
            }
        }
    }
}

/// The Redis snapshot `id`, or the newest.
pub fn pick<'a>(cat: &'a Catalog, id: Option<&str>) -> anyhow::Result<&'a Manifest> {
    match id {
        Some(id) => {
            let m = cat
                .manifests
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| anyhow::anyhow!("no complete backup {id:?} in the catalog"))?;
            if m.kind != BackupKind::Redis {
                anyhow::bail!("backup {id} is a {}, not a Redis snapshot", m.kind.as_str());
            }
            Ok(m)
        }
        None => cat
            .newest(BackupKind::Redis)
            .ok_or_else(|| anyhow::anyhow!("no complete Redis snapshot in the catalog")),
    }
}

/// Reads a snapshot's object back, decompressed, into `out`, checking the stored bytes' size and
/// SHA-256 against the catalog and the RDB (magic, end, CRC64). `out` may hold garbage when this
/// fails: callers write to a temporary file.
pub async fn read_verified<W: tokio::io::AsyncWrite + Unpin>(
    storage: &Storage,
    codec: &Codec,
    m: &Manifest,
    out: &mut W,
) -> anyhow::Result<RdbInfo> {
    let o = m
        .objects
        .first()
        .ok_or_else(|| anyhow::anyhow!("snapshot {} lists no object", m.id))?;
    let stored = HashingReader::new(storage.open(&o.key).await?);
    let (mut dec, tee) = crate::restore::decode_hashed(codec, &o.key, stored)?;
    let mut check = RdbCheck::new();
    let mut buf = vec![0u8; 256 * 1024];
    let decoded: anyhow::Result<()> = async {
        loop {
            let n = dec.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            check.update(&buf[..n]);
            out.write_all(&buf[..n]).await?;
        }
    }
    .await;
    drop(dec);
    crate::storage::check_stored(o, tee.await??)?;
    decoded.map_err(|e| anyhow::anyhow!("object {}: {e:#}", o.key))?;
    check
        .finish()
        .map_err(|e| anyhow::anyhow!("object {}: {e}", o.key))
}

/// Writes the snapshot as `dir/dump.rdb` (refusing to replace one), through a temporary file
/// renamed into place only once verified.
pub async fn restore(
    storage: &Storage,
    codec: &Codec,
    id: Option<&str>,
    dir: &Path,
) -> anyhow::Result<(Manifest, RdbInfo)> {
    let cat = storage.catalog().await?;
    let m = pick(&cat, id)?.clone();
    let target = dir.join("dump.rdb");
    if target.exists() {
        anyhow::bail!(
            "{} exists; restore refuses to replace it (stop Redis and move it away first)",
            target.display()
        );
    }
    tokio::fs::create_dir_all(dir).await?;
    let temp = dir.join(format!(".dump.rdb.partial-{}", std::process::id()));
    let result = async {
        let mut f = tokio::fs::File::create(&temp).await?;
        let info = read_verified(storage, codec, &m, &mut f).await?;
        f.flush().await?;
        f.sync_all().await?;
        tokio::fs::rename(&temp, &target).await?;
        Ok::<_, anyhow::Error>(info)
    }
    .await;
    match result {
        Ok(info) => Ok((m, info)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e)
        }
    }
}
