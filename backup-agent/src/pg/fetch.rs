//! `wal-fetch`, PostgreSQL's `restore_command`: one WAL file from storage into the path
//! PostgreSQL names, checked before PostgreSQL sees a byte.
//!
//! The exit status is what PostgreSQL acts on, so it is exact:
//! - 0: the file is in place (decoded, checksums matched, renamed into place);
//! - 1 ([`EXIT_ABSENT`]): storage positively says the file does not exist (an S3 404 or an empty
//!   listing, a local ENOENT) — PostgreSQL takes this as the end of the archive and, in a
//!   "latest" restore, promotes;
//! - 126 ([`EXIT_FATAL`]): anything else — storage unreachable for `restore.wal_fetch_retry`, a
//!   damaged object, a missing key or secret, a bad configuration. PostgreSQL treats a status
//!   above 125 as fatal: recovery stops with an error instead of promoting at the wrong point.

use std::path::Path;
use std::time::{Duration, Instant};

use common::catalog::{WAL_STATUS_KEY, WalStatus};

use super::wal::{SUFFIXES, recorded_sum};
use crate::compress::Codec;
use crate::storage::Storage;

/// Exit status: the archive does not have the file.
pub const EXIT_ABSENT: u8 = 1;
/// Exit status that makes PostgreSQL stop recovery (any status above 125 does).
pub const EXIT_FATAL: u8 = 126;

/// What a fetch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Written to the destination from this stored key.
    Written(String),
    /// Storage says the archive has no such file.
    Absent,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Storage could not be asked or read (retried until the deadline).
    #[error("{0}")]
    Storage(String),
    /// Retrying cannot help: a damaged object, a bad name, a missing or wrong key.
    #[error("{0}")]
    Fatal(String),
}

/// Fetches WAL file `name` into `dest`, retrying storage errors with backoff for `retry`.
pub async fn fetch(
    storage: &Storage,
    codec: &Codec,
    name: &str,
    dest: &Path,
    retry: Duration,
) -> Result<Fetched, FetchError> {
    let deadline = Instant::now() + retry;
    let mut delay = Duration::from_millis(250);
    loop {
        match fetch_once(storage, codec, name, dest).await {
            Err(FetchError::Storage(e)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(FetchError::Fatal(format!(
                        "{e} (still failing after restore.wal_fetch_retry = {})",
                        humantime::format_duration(retry)
                    )));
                }
                eprintln!("wal-fetch {name}: {e}; retrying");
                tokio::time::sleep(delay.min(left)).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

fn storage_err(e: std::io::Error) -> FetchError {
    FetchError::Storage(format!("storage: {e}"))
}

/// One try at fetching WAL file `name` into `dest` (no retry).
pub async fn fetch_once(
    storage: &Storage,
    codec: &Codec,
    name: &str,
    dest: &Path,
) -> Result<Fetched, FetchError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(FetchError::Fatal(format!("bad WAL file name {name:?}")));
    }
    let keys: Vec<String> = SUFFIXES
        .iter()
        .map(|s| format!("wal/{name}{s}"))
        .chain(SUFFIXES.iter().map(|s| format!("wal/{name}.partial{s}")))
        .collect();
    let Some(key) = storage.first_existing(&keys).await.map_err(storage_err)? else {
        return Ok(Fetched::Absent);
    };
    let partial = key.contains(".partial.");
    // The recorded SHA-256 and the object in parallel: one round trip fewer on S3. A WAL object
    // is small (one compressed segment): read whole, its SHA-256 checked before a byte is
    // decoded, then decoded from memory into one file written in large blocks.
    let (recorded, stored) = tokio::join!(recorded_sum(storage, &key), storage.get(&key));
    let recorded = recorded.map_err(storage_err)?;
    let stored = stored
        .map_err(|e| storage_err(std::io::Error::new(e.kind(), format!("object {key}: {e}"))))?;
    let segment_size = if partial {
        match storage.get(WAL_STATUS_KEY).await {
            Ok(b) => serde_json::from_slice::<WalStatus>(&b)
                .ok()
                .and_then(|s| s.segment_size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(storage_err(e)),
        }
        .unwrap_or(16 << 20)
    } else {
        0
    };
    let sha = crate::storage::sha256_hex(&stored);
    if let Some(want) = &recorded
        && !want.eq_ignore_ascii_case(&sha)
    {
        return Err(FetchError::Fatal(format!(
            "object {key} is damaged: its SHA-256 is {sha}, {key}.sha256 records {want}"
        )));
    }
    let mut dec = codec
        .decoder(&key, std::io::Cursor::new(stored))
        .map_err(|e| FetchError::Fatal(format!("{e:#}")))?;
    // Written aside and renamed: PostgreSQL never sees a half-written, damaged or undecryptable
    // file.
    let tmp = dest.with_extension("outrigger-tmp");
    let written = write_decoded(&mut dec, &tmp, &key, partial.then_some(segment_size)).await;
    drop(dec);
    // No fsync: PostgreSQL makes a restored segment it keeps durable itself (it renames it into
    // pg_wal with an fsync), and after a crash recovery asks for the file again. Syncing here
    // too would write every segment to disk twice.
    let placed = written.and_then(|()| {
        std::fs::rename(&tmp, dest)
            .map_err(|e| FetchError::Fatal(format!("{}: {e}", dest.display())))
    });
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed.map(|()| Fetched::Written(key))
}

/// Decodes into a new file `tmp` in large blocks (a decode error names the object, a write
/// error the file); `pad_to`: the open segment, padded with zeros to a whole segment.
async fn write_decoded(
    dec: &mut crate::compress::Decoded,
    tmp: &Path,
    key: &str,
    pad_to: Option<u64>,
) -> Result<(), FetchError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use tokio::io::AsyncReadExt;
    let io = |e: std::io::Error| FetchError::Fatal(format!("cannot write {}: {e}", tmp.display()));
    // PostgreSQL's own mode for WAL files.
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        // Fill the block before writing it: one write per MiB.
        let mut filled = 0;
        while filled < buf.len() {
            let n = dec.read(&mut buf[filled..]).await.map_err(|e| {
                FetchError::Fatal(format!("object {key} is damaged or cannot be decoded: {e}"))
            })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        out.write_all(&buf[..filled]).map_err(io)?;
        total += filled as u64;
    }
    if let Some(size) = pad_to
        && total < size
    {
        // PostgreSQL reads whole segments.
        out.set_len(size).map_err(io)?;
    }
    Ok(())
}
