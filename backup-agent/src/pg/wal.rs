//! Continuous WAL archiving: a physical replication slot and START_REPLICATION. Each segment is
//! compressed and stored when it completes; the open segment is stored as `<name>.partial` every
//! `flush_interval`, so the data at risk is bounded by that interval. The flush position is
//! reported to the server only after storage has the bytes. Timeline switches are followed and
//! their history files stored. Reconnects with backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::catalog::{WAL_STATUS_KEY, WalStatus};
use common::logfmt::Line;
use common::retry::{Failure, RetryError};
use tokio::io::AsyncWriteExt;

use super::conn::{ReplConn, ReplError};
use super::copydata::{WalMsg, status_update};
use super::lsn::{format_lsn, parse_lsn, segment_name};
use crate::compress::Codec;
use crate::config::Config;
use crate::storage::Storage;

/// Parses `16MB`-style sizes from SHOW wal_segment_size.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let mult = match s[digits.len()..].trim() {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    Some(n * mult)
}

/// Microseconds since 2000-01-01, the protocol's clock.
fn pg_now() -> i64 {
    const PG_EPOCH: u64 = 946_684_800;
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_micros() as i64) - (PG_EPOCH as i64) * 1_000_000
}

/// What the archiver reports to the rest of the daemon.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub received: u64,
    pub flushed: u64,
    pub server_end: u64,
    pub timeline: u32,
    /// When everything received so far was last stored.
    pub caught_up_at: Option<SystemTime>,
    /// A replication session is streaming now (false while reconnecting).
    pub streaming: bool,
}

pub type Shared = Arc<std::sync::Mutex<Progress>>;

/// Runs the archiver until cancelled, reconnecting with backoff.
pub async fn run(ctx: crate::context::Ctx, shared: Shared) {
    let (log, cancel) = (&ctx.log, &ctx.cancel);
    let backoff = common::retry::Backoff {
        min: Duration::from_millis(500),
        max: Duration::from_secs(30),
        max_attempts: 0,
    };
    loop {
        let r = common::retry::retry(&backoff, cancel, "wal archiver", || async {
            let ended = session(&ctx, &shared).await;
            shared.lock().unwrap_or_else(|p| p.into_inner()).streaming = false;
            match ended {
                Ok(()) => Ok(()),
                Err(e) if e.is_transient() => Err(Failure::Transient(e)),
                Err(e) => {
                    log.emit(Line::new("wal_error").field("error", &e));
                    // A bad password or a missing REPLICATION attribute needs a person; keep
                    // retrying slowly rather than exit, so the fix takes effect without a restart.
                    Err(Failure::Transient(e))
                }
            }
        })
        .await;
        match r {
            Ok(()) | Err(RetryError::Cancelled) => return,
            Err(e) => {
                tracing::error!("wal archiver: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

struct Segment {
    tli: u32,
    start: u64,
    buf: Vec<u8>,
    /// LSN up to which `buf` holds data.
    end: u64,
}

/// Stores one WAL file (segment, partial segment or history file): compressed (with the zstd
/// content checksum) and encrypted in memory, its SHA-256 written first as `<key>.sha256`, then
/// the object. An object is never stored without its checksum beside it; wal-fetch and verify
/// check it.
pub async fn store(
    storage: &Storage,
    codec: &Codec,
    key: &str,
    data: &[u8],
) -> std::io::Result<()> {
    use sha2::Digest;
    let mut enc = codec.encoder(Vec::with_capacity(data.len() / 4))?;
    enc.write_all(data).await?;
    let bytes = enc.finish().await?;
    let sum = hex::encode(sha2::Sha256::digest(&bytes));
    storage
        .put(&format!("{key}{SUM_SUFFIX}"), format!("{sum}\n").as_bytes())
        .await?;
    storage.put(key, &bytes).await?;
    Ok(())
}

/// The LSN where a timeline history file's newest timeline begins (its last line's switch point).
pub fn switch_point(history: &str) -> Option<u64> {
    history
        .lines()
        .rfind(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(parse_lsn)
}

/// The suffix of the checksum object stored beside every WAL object.
pub const SUM_SUFFIX: &str = ".sha256";

/// Every suffix a stored WAL file may have: compression, then maybe encryption.
pub const SUFFIXES: [&str; 4] = [".zst", ".gz", ".zst.age", ".gz.age"];

/// The stored key of WAL file `name` (a complete segment or history file), whatever its codec.
/// An error reaching storage is an error, not "absent".
pub async fn stored_key(storage: &Storage, name: &str) -> std::io::Result<Option<String>> {
    let keys: Vec<String> = SUFFIXES.iter().map(|s| format!("wal/{name}{s}")).collect();
    storage.first_existing(&keys).await
}

/// The SHA-256 recorded for a stored WAL object, `None` when none was (archives written before
/// checksums were recorded).
pub async fn recorded_sum(storage: &Storage, key: &str) -> std::io::Result<Option<String>> {
    match storage.get(&format!("{key}{SUM_SUFFIX}")).await {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn session(ctx: &crate::context::Ctx, shared: &Shared) -> Result<(), ReplError> {
    let (cfg, storage, log, cancel) = (&ctx.cfg, &ctx.storage, &*ctx.log, &ctx.cancel);
    let mut conn = ReplConn::connect(&cfg.postgres).await?;
    let ident = conn.query("IDENTIFY_SYSTEM").await?;
    let id = ident.first().cloned().unwrap_or_default();
    if let Some(sid) = id.get(0, "systemid") {
        let version = conn
            .params
            .get("server_version")
            .and_then(|v| v.split(['.', ' ']).next())
            .and_then(|m| m.parse().ok());
        crate::cluster::claim(storage, sid, version)
            .await
            .map_err(|e| ReplError::Config(format!("{e:#}")))?;
    }
    let mut tli: u32 = id
        .get(0, "timeline")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let xlogpos = id.get(0, "xlogpos").and_then(parse_lsn).unwrap_or(0);
    let seg_size = conn
        .query("SHOW wal_segment_size")
        .await?
        .first()
        .and_then(|r| {
            r.rows
                .first()
                .and_then(|row| row.first().cloned().flatten())
        })
        .and_then(|v| parse_size(&v))
        .unwrap_or(16 << 20);
    let slot = &cfg.wal.slot;
    match conn
        .query(&format!(
            "CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL"
        ))
        .await
    {
        Ok(_) => log.emit(Line::new("wal_slot_created").field("slot", slot)),
        Err(ReplError::Server { code, .. }) if code == "42710" => {}
        Err(e) => return Err(e),
    }
    let from_slot = conn
        .query(&format!("READ_REPLICATION_SLOT {slot}"))
        .await?
        .first()
        .and_then(|r| r.get(0, "restart_lsn").and_then(parse_lsn));
    let mut pos = from_slot.unwrap_or(xlogpos);
    let mut codec = ctx.codec.clone();
    // A segment is compressed in memory on the daemon's runtime, where workers would only add
    // their buffers to the daemon's resident memory: one thread.
    codec.compression.threads = Some(0);
    let codec = &codec;
    let ext = codec.suffix();
    let ext = ext.as_str();
    // A timeline whose history is not stored yet (after a promotion, or on a cluster restored
    // from this archive): its history file first, and its WAL from the switch point on.
    if tli > 1 {
        let name = format!("{tli:08X}.history");
        let stored = stored_key(storage, &name).await.map_err(|e| io(&conn, e))?;
        if stored.is_none()
            && let Some((fname, content)) =
                store_history(&mut conn, storage, codec, ext, tli).await?
        {
            let switch = switch_point(&content);
            log.emit(
                Line::new("wal_timeline_history")
                    .field("timeline", tli)
                    .field("file", fname)
                    .field_opt("switch", switch.map(format_lsn)),
            );
            if let Some(s) = switch.filter(|s| *s < pos) {
                pos = s;
            }
        }
    }
    pos -= pos % seg_size;
    log.emit(
        Line::new("wal_streaming")
            .field("slot", slot)
            .field("timeline", tli)
            .field("from", format_lsn(pos))
            .field("segment_size", seg_size),
    );
    loop {
        conn.send_query(&format!(
            "START_REPLICATION SLOT {slot} PHYSICAL {} TIMELINE {tli}",
            format_lsn(pos)
        ))
        .await?;
        // Expect CopyBothResponse ('W'); an error comes back as Err.
        let (tag, _) = conn.read_raw().await?;
        if tag != b'W' {
            return Err(ReplError::Protocol {
                server: conn.server.clone(),
                message: format!("expected CopyBothResponse, got {:?}", tag as char),
            });
        }
        shared.lock().unwrap_or_else(|p| p.into_inner()).streaming = true;
        let mut seg = Segment {
            tli,
            start: pos,
            buf: Vec::with_capacity(seg_size as usize),
            end: pos,
        };
        let mut flushed = pos;
        let mut tick = tokio::time::interval(cfg.wal.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut server_end = pos;
        let ended = loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => {
                    flush_partial(cfg, codec, storage, &seg, &mut flushed, seg_size, ext).await?;
                    report(&mut conn, seg.end, flushed).await?;
                    return Ok(());
                }
                _ = tick.tick() => {
                    flush_partial(cfg, codec, storage, &seg, &mut flushed, seg_size, ext).await?;
                    report(&mut conn, seg.end, flushed).await?;
                    update(shared, &seg, flushed, server_end);
                    continue;
                }
                m = conn.read_raw() => m?,
            };
            let body = match msg {
                (b'd', body) => body,
                (b'c', _) => break true,
                (tag, _) => {
                    return Err(ReplError::Protocol {
                        server: conn.server.clone(),
                        message: format!("unexpected message {:?} while streaming", tag as char),
                    });
                }
            };
            let msg = WalMsg::decode(body).map_err(|message| ReplError::Protocol {
                server: conn.server.clone(),
                message,
            })?;
            match msg {
                WalMsg::XLogData {
                    start,
                    end,
                    mut data,
                    ..
                } => {
                    server_end = server_end.max(end);
                    let mut at = start;
                    if at < seg.end {
                        let skip = (seg.end - at) as usize;
                        if skip >= data.len() {
                            continue;
                        }
                        data = data.slice(skip..);
                        at = seg.end;
                    }
                    if at != seg.end {
                        return Err(ReplError::Protocol {
                            server: conn.server.clone(),
                            message: format!(
                                "WAL gap: expected {} got {}",
                                format_lsn(seg.end),
                                format_lsn(at)
                            ),
                        });
                    }
                    while !data.is_empty() {
                        let room = (seg.start + seg_size - seg.end) as usize;
                        let n = room.min(data.len());
                        seg.buf.extend_from_slice(&data[..n]);
                        seg.end += n as u64;
                        data = data.slice(n..);
                        if seg.end == seg.start + seg_size {
                            let name = segment_name(seg.tli, seg.start / seg_size, seg_size);
                            store(storage, codec, &format!("wal/{name}{ext}"), &seg.buf)
                                .await
                                .map_err(|e| io(&conn, e))?;
                            let partial = format!("wal/{name}.partial{ext}");
                            let _ = storage.delete(&partial).await;
                            let _ = storage.delete(&format!("{partial}{SUM_SUFFIX}")).await;
                            flushed = seg.end;
                            write_status(storage, seg.tli, flushed, seg_size)
                                .await
                                .map_err(|e| io(&conn, e))?;
                            seg.start = seg.end;
                            seg.buf.clear();
                        }
                    }
                    update(shared, &seg, flushed, server_end);
                }
                WalMsg::Keepalive { end, reply, .. } => {
                    server_end = server_end.max(end);
                    if reply {
                        report(&mut conn, seg.end, flushed).await?;
                    }
                }
                WalMsg::Other(_) => {}
            }
        };
        if !ended {
            return Ok(());
        }
        // End of this timeline: store what we have, then follow the next one.
        flush_partial(cfg, codec, storage, &seg, &mut flushed, seg_size, ext).await?;
        conn.copy_done().await?;
        let next = conn.read_result().await?.unwrap_or_default();
        while conn.read_result().await?.is_some() {}
        let next_tli: u32 = next
            .rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| ReplError::Protocol {
                server: conn.server.clone(),
                message: "no next timeline after the end of streaming".into(),
            })?;
        let next_pos = next
            .rows
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .and_then(|p| parse_lsn(&p))
            .unwrap_or(seg.end);
        store_history(&mut conn, storage, codec, ext, next_tli).await?;
        log.emit(
            Line::new("wal_timeline_switch")
                .field("from", tli)
                .field("to", next_tli)
                .field("at", format_lsn(next_pos)),
        );
        tli = next_tli;
        pos = next_pos - next_pos % seg_size;
    }
}

/// Fetches timeline `tli`'s history file from the server (`TIMELINE_HISTORY`) and stores it as
/// `wal/<file><ext>`; its file name and content, `None` when the server sent none.
async fn store_history(
    conn: &mut ReplConn,
    storage: &Storage,
    codec: &Codec,
    ext: &str,
    tli: u32,
) -> Result<Option<(String, String)>, ReplError> {
    let hist = conn.query(&format!("TIMELINE_HISTORY {tli}")).await?;
    let Some((fname, content)) = hist.first().and_then(|rs| {
        Some((
            rs.get(0, "filename")?.to_string(),
            rs.get(0, "content")?.to_string(),
        ))
    }) else {
        return Ok(None);
    };
    store(
        storage,
        codec,
        &format!("wal/{fname}{ext}"),
        content.as_bytes(),
    )
    .await
    .map_err(|e| io(conn, e))?;
    Ok(Some((fname, content)))
}

fn io(conn: &ReplConn, e: std::io::Error) -> ReplError {
    ReplError::Protocol {
        server: conn.server.clone(),
        message: format!("storage: {e}"),
    }
}

fn update(shared: &Shared, seg: &Segment, flushed: u64, server_end: u64) {
    let mut p = shared.lock().unwrap_or_else(|p| p.into_inner());
    p.received = seg.end;
    p.flushed = flushed;
    p.server_end = server_end;
    p.timeline = seg.tli;
    if flushed >= server_end {
        p.caught_up_at = Some(SystemTime::now());
    }
}

/// Stores the open segment as `.partial` when it has data not yet stored.
async fn flush_partial(
    cfg: &Config,
    codec: &Codec,
    storage: &Storage,
    seg: &Segment,
    flushed: &mut u64,
    seg_size: u64,
    ext: &str,
) -> Result<(), ReplError> {
    if seg.end <= *flushed || seg.buf.is_empty() {
        return Ok(());
    }
    let name = segment_name(seg.tli, seg.start / seg_size, seg_size);
    let err = |e: std::io::Error| ReplError::Protocol {
        server: cfg.postgres.host.clone(),
        message: format!("storage: {e}"),
    };
    store(
        storage,
        codec,
        &format!("wal/{name}.partial{ext}"),
        &seg.buf,
    )
    .await
    .map_err(err)?;
    *flushed = seg.end;
    write_status(storage, seg.tli, *flushed, seg_size)
        .await
        .map_err(err)
}

async fn write_status(
    storage: &Storage,
    tli: u32,
    flushed: u64,
    seg_size: u64,
) -> std::io::Result<()> {
    let st = WalStatus {
        timeline: tli,
        flushed_lsn: format_lsn(flushed),
        updated_at: SystemTime::now(),
        segment_size: Some(seg_size),
    };
    let json = serde_json::to_vec(&st).map_err(std::io::Error::other)?;
    storage.put(WAL_STATUS_KEY, &json).await.map(|_| ())
}

/// Standby status update: written = received, flushed = stored.
async fn report(conn: &mut ReplConn, received: u64, flushed: u64) -> Result<(), ReplError> {
    conn.copy_data(status_update(received, flushed, pg_now()))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sizes_and_switch_points() {
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(
            switch_point(
                "1\t0/3000060\tno recovery target specified\n\n2\t0/5000A0\tat restore point\n"
            ),
            Some(0x5000A0)
        );
        assert_eq!(switch_point(""), None);
    }
}
