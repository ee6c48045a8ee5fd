//! A full backup: `BASE_BACKUP` (PostgreSQL 15 syntax, fast checkpoint, WAL included, the server's
//! backup manifest with CRC32C file checksums, as pg_basebackup asks for) streamed archive by
//! archive through the compressor into storage — never staged on disk, memory bounded by the
//! protocol buffer whatever the size. The catalog manifest is written last: a backup that failed
//! half way is never listed.

use std::time::SystemTime;

use common::PgSettings;
use common::catalog::{BackupKind, Manifest, ObjectEntry};
use postgres_protocol::message::backend::Message;
use tokio::io::AsyncWriteExt;

use super::conn::{ReplConn, ReplError};
use super::copydata::BackupMsg;
use super::lsn::parse_lsn;
use crate::compress::Codec;
use crate::compress::{self, Encoder};
use crate::ids::fresh_id;
use crate::storage::{ObjectWriter, Storage};

/// Progress callback: bytes of the database streamed so far, and the server's estimate of the
/// total when one was asked for.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, Option<u64>) + Send);

/// Where a full backup's objects go.
pub fn prefix(id: &str) -> String {
    format!("postgres/full/{id}/")
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repl(#[from] ReplError),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// Runs one full backup; returns its catalog manifest (already stored). With `estimate`, the
/// server first sizes the data directory (`PROGRESS true`, what `pg_basebackup -P` asks for) so
/// that progress has a total.
pub async fn run(
    pg: &PgSettings,
    storage: &Storage,
    codec: &Codec,
    estimate: bool,
    progress: Progress<'_>,
) -> Result<Manifest, BackupError> {
    let (id, started_at) = fresh_id(storage, BackupKind::PostgresFull).await?;
    let mut conn = ReplConn::connect(pg).await?;
    let sys = conn.query("IDENTIFY_SYSTEM").await?;
    let system_id = sys
        .first()
        .and_then(|r| r.get(0, "systemid"))
        .map(str::to_string);
    let version: Option<u32> = conn
        .params
        .get("server_version")
        .and_then(|v| v.split(['.', ' ']).next())
        .and_then(|m| m.parse().ok());
    if version.is_some_and(|v| v < 15) {
        return Err(BackupError::Protocol(format!(
            "{}: PostgreSQL {} is older than 15; this backup uses the PostgreSQL 15 BASE_BACKUP syntax",
            conn.server,
            version.unwrap_or(0)
        )));
    }
    if let Some(sid) = &system_id {
        crate::cluster::claim(storage, sid, version)
            .await
            .map_err(|e| BackupError::Protocol(format!("{e:#}")))?;
    }
    // zstd: the server compresses each archive (its workers compress while it reads the next
    // files) and sends a fraction of the bytes; they are stored as they come.
    let on_server = codec.compression.on_server();
    let compression = if on_server {
        let c = &codec.compression;
        let mut detail = format!("level={}", c.level.unwrap_or(3));
        if c.workers() > 0 {
            detail.push_str(&format!(",workers={}", c.workers()));
        }
        format!(", COMPRESSION 'zstd', COMPRESSION_DETAIL '{detail}'")
    } else {
        String::new()
    };
    conn.send_query(&format!(
        "BASE_BACKUP ( LABEL 'outrigger {id}', CHECKPOINT 'fast', WAL true, WAIT true, \
         MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', PROGRESS {estimate}{compression} )"
    ))
    .await?;
    let start = match conn.read_result().await {
        Err(e @ ReplError::Server { .. }) if on_server && e.to_string().contains("compress") => {
            return Err(BackupError::Protocol(format!(
                "{e} (the server was asked to compress with zstd; with compression.server = \
                 false backup-agent compresses instead)"
            )));
        }
        r => r?.ok_or_else(|| BackupError::Protocol("no start position".into()))?,
    };
    let start_lsn = start.get(0, "recptr").map(str::to_string);
    let timeline: Option<u32> = start.get(0, "tli").and_then(|t| t.parse().ok());
    let tablespaces = conn
        .read_result()
        .await?
        .ok_or_else(|| BackupError::Protocol("no tablespace list".into()))?;
    // With PROGRESS, each tablespace row carries its size in kB.
    let total: Option<u64> = estimate.then(|| {
        tablespaces
            .rows
            .iter()
            .filter_map(|r| r.get(2).cloned().flatten())
            .filter_map(|kb| kb.parse::<u64>().ok())
            .sum::<u64>()
            * 1024
    });
    // Each tablespace (besides pg_default/pg_global) comes as its own archive, `<oid>.tar`; its
    // location on the source is recorded (a restore puts it where `--tablespace-map` says).
    let mut info = std::collections::BTreeMap::new();
    let by = if on_server { "server" } else { "backup-agent" };
    info.insert("compressed_by".to_string(), by.to_string());
    for r in &tablespaces.rows {
        if let (Some(Some(oid)), Some(Some(location))) = (r.first(), r.get(1)) {
            info.insert(format!("tablespace.{oid}"), location.clone());
        }
    }
    match conn.read().await? {
        Message::CopyOutResponse(_) => {}
        m => return Err(conn.unexpected(&m, "instead of CopyOutResponse").into()),
    }

    let ext = codec.suffix();
    let mut objects: Vec<ObjectEntry> = vec![];
    let mut current: Option<Encoder<ObjectWriter>> = None;
    let mut done: u64 = 0;
    loop {
        match conn.read().await? {
            Message::CopyData(body) => {
                match BackupMsg::decode(body.into_bytes()).map_err(BackupError::Protocol)? {
                    BackupMsg::NewArchive { name, .. } => {
                        finish(&mut current, &mut objects).await?;
                        let plain = if on_server {
                            name.strip_suffix(".zst").ok_or_else(|| {
                                BackupError::Protocol(format!(
                                    "archive {name}: asked for zstd, the server sent no .zst"
                                ))
                            })?
                        } else {
                            &name
                        };
                        let w = storage
                            .create(&format!("{}{plain}{ext}", prefix(&id)))
                            .await?;
                        current = Some(if on_server {
                            codec.precompressed(w)?
                        } else {
                            codec.encoder(w)?
                        });
                    }
                    BackupMsg::Manifest => {
                        finish(&mut current, &mut objects).await?;
                        let key = format!("{}backup_manifest{ext}", prefix(&id));
                        current = Some(codec.encoder(storage.create(&key).await?)?);
                    }
                    BackupMsg::Data(data) => {
                        let w = current.as_mut().ok_or_else(|| {
                            BackupError::Protocol("data before an archive".into())
                        })?;
                        w.write_all(&data).await?;
                    }
                    BackupMsg::Progress(n) => {
                        done = n;
                        progress(done, total);
                    }
                }
            }
            Message::CopyDone => break,
            m => return Err(conn.unexpected(&m, "in the backup stream").into()),
        }
    }
    finish(&mut current, &mut objects).await?;
    progress(done, Some(done));
    let end = conn
        .read_result()
        .await?
        .ok_or_else(|| BackupError::Protocol("no end position".into()))?;
    let end_lsn = end.get(0, "recptr").map(str::to_string);
    while conn.read_result().await?.is_some() {}
    if !objects
        .iter()
        .any(|o| o.key.ends_with(&format!("base.tar{ext}")))
    {
        return Err(BackupError::Protocol("the server sent no base.tar".into()));
    }
    if start_lsn.as_deref().and_then(parse_lsn).is_none()
        || end_lsn.as_deref().and_then(parse_lsn).is_none()
    {
        return Err(BackupError::Protocol("bad start or end LSN".into()));
    }
    let manifest = Manifest {
        id: id.clone(),
        kind: BackupKind::PostgresFull,
        started_at,
        finished_at: SystemTime::now(),
        system_id,
        pg_version: version,
        timeline,
        start_lsn,
        end_lsn,
        compression: compress::name(codec.compression.algorithm).into(),
        info,
        objects,
    };
    crate::catalog::record(storage, &manifest).await?;
    Ok(manifest)
}

async fn finish(
    current: &mut Option<Encoder<ObjectWriter>>,
    objects: &mut Vec<ObjectEntry>,
) -> Result<(), BackupError> {
    if let Some(enc) = current.take() {
        let stored = enc.finish().await?.finish().await?;
        objects.push(ObjectEntry {
            key: stored.key,
            size: stored.size,
            sha256: stored.sha256,
        });
    }
    Ok(())
}
