//! `backup-agent verify`: re-reads a backup's objects from storage and checks every size and
//! SHA-256 against the catalog; for a PostgreSQL full backup also every file against the
//! server's backup manifest (and the manifest's own checksum); for a Redis snapshot the RDB
//! (magic, end opcode, CRC64).

use std::collections::HashMap;
use std::sync::Arc;

use common::catalog::{BackupKind, Manifest, ObjectEntry};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::compress::Codec;
use crate::storage::{HashingReader, Storage, check_stored, verify_object};

/// The outcome for one backup (also `verify --output json`'s `backups[]`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    pub id: String,
    /// The backup kind, or `catalog` for a catalog file that cannot be read.
    pub kind: String,
    /// `None` when good; the first problem found otherwise.
    pub problem: Option<String>,
    /// What was checked, for people.
    pub checked: String,
}

/// Verifies backup `id`, or every backup in the catalog.
pub async fn verify(
    storage: &Storage,
    codec: &Codec,
    id: Option<&str>,
) -> anyhow::Result<Vec<Verdict>> {
    let mut cat = storage.catalog().await?;
    cat.manifests.sort_by_key(|m| m.finished_at);
    let chosen: Vec<&Manifest> = match id {
        Some(id) => vec![
            cat.manifests
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| anyhow::anyhow!("no complete backup {id:?} in the catalog"))?,
        ],
        None => cat.manifests.iter().collect(),
    };
    let mut out = vec![];
    // A catalog file that cannot be read may be a backup nobody can see: never "all good".
    if id.is_none() {
        for u in &cat.unreadable {
            out.push(Verdict {
                id: u.split(':').next().unwrap_or_default().to_string(),
                kind: "catalog".into(),
                problem: Some(format!("unreadable: {u}")),
                checked: String::new(),
            });
        }
    }
    let chain = WalChain::read(storage, codec, &cat).await;
    for m in chosen {
        let r = match m.kind {
            BackupKind::Redis => {
                crate::redis_snapshot::read_verified(storage, codec, m, &mut tokio::io::sink())
                    .await
                    .map(|i| {
                        format!(
                            "1 object, RDB version {} with {} CRC64, walked: {}",
                            i.version,
                            if i.checksummed { "a matching" } else { "no" },
                            crate::redis_snapshot::walked_summary(&i)
                        )
                    })
            }
            BackupKind::PostgresFull => match postgres_full(storage, codec, m).await {
                Ok(files) => match &chain {
                    Ok(Some(c)) => c.check_from(m).map(|wal| format!("{files}; {wal}")),
                    Ok(None) => Ok(format!("{files}; no WAL archived")),
                    Err(e) => Err(anyhow::anyhow!(
                        "{files}, but the WAL archive cannot be read: {e:#}"
                    )),
                },
                Err(e) => Err(e),
            },
            _ => objects(storage, &m.objects).await,
        };
        out.push(Verdict {
            id: m.id.clone(),
            kind: m.kind.as_str().to_string(),
            checked: r.as_ref().map(String::clone).unwrap_or_default(),
            problem: r.err().map(|e| format!("{e:#}")),
        });
    }
    Ok(out)
}

/// The archived WAL: which segments are stored on which timeline, and the path of timelines to
/// the newest, from its history file.
struct WalChain {
    seg_size: u64,
    /// (timeline, segment number) of complete segments.
    complete: std::collections::HashSet<(u32, u64)>,
    partial: std::collections::HashSet<(u32, u64)>,
    /// (timeline, the LSN it begins at), oldest first; the first begins at 0.
    path: Vec<(u32, u64)>,
    /// The newest archived LSN.
    end: u64,
}

impl WalChain {
    async fn read(
        storage: &Storage,
        codec: &Codec,
        cat: &common::catalog::Catalog,
    ) -> anyhow::Result<Option<Self>> {
        use crate::pg::lsn::parse_lsn;
        let Some(status) = &cat.wal else {
            return Ok(None);
        };
        let seg_size = status.segment_size.unwrap_or(16 << 20);
        let mut complete = std::collections::HashSet::new();
        let mut partial = std::collections::HashSet::new();
        for key in storage.keys("wal/").await? {
            let Some(name) = key.strip_prefix("wal/") else {
                continue;
            };
            if name.ends_with(crate::pg::wal::SUM_SUFFIX) {
                continue;
            }
            let Some((tli, segno)) = crate::pg::lsn::parse_segment_name(name, seg_size) else {
                continue;
            };
            if name[24..].starts_with(".partial") {
                partial.insert((tli, segno));
            } else {
                complete.insert((tli, segno));
            }
        }
        let mut path = vec![(status.timeline, 0)];
        if status.timeline > 1 {
            let name = format!("{:08X}.history", status.timeline);
            let key = crate::pg::wal::stored_key(storage, &name)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the history file of timeline {} ({name}) is not archived",
                        status.timeline
                    )
                })?;
            let stored = HashingReader::new(storage.open(&key).await?);
            let (mut dec, tee) = crate::restore::decode_hashed(codec, &key, stored)?;
            let mut text = String::new();
            dec.read_to_string(&mut text)
                .await
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            drop(dec);
            tee.await??;
            // `parent  switchpoint  reason`: the parent ran until the switch point.
            let mut entries: Vec<(u32, u64)> = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    Some((f.next()?.parse().ok()?, parse_lsn(f.next()?)?))
                })
                .collect();
            entries.sort();
            path.clear();
            let mut begins = 0;
            for (tli, switch) in entries {
                path.push((tli, begins));
                begins = switch;
            }
            path.push((status.timeline, begins));
        }
        Ok(Some(Self {
            seg_size,
            complete,
            partial,
            path,
            end: parse_lsn(&status.flushed_lsn).unwrap_or(0),
        }))
    }

    /// Every segment from backup `m`'s start to the newest archived LSN is stored: complete, or
    /// partial for the last one. Names the missing ones.
    fn check_from(&self, m: &Manifest) -> anyhow::Result<String> {
        use crate::pg::lsn::{format_lsn, parse_lsn};
        let start = m
            .start_lsn
            .as_deref()
            .and_then(parse_lsn)
            .ok_or_else(|| anyhow::anyhow!("the backup has no start LSN"))?;
        if self.end < start {
            anyhow::bail!(
                "the WAL archive ends at {}, before the backup starts ({})",
                format_lsn(self.end),
                format_lsn(start)
            );
        }
        let (first, last) = (
            start / self.seg_size,
            self.end.saturating_sub(1).max(start) / self.seg_size,
        );
        let mut missing = vec![];
        for segno in first..=last {
            // The newest timeline that had begun by the start of the segment's successor: the
            // segment holding a switch point belongs to the new timeline.
            let tli = self
                .path
                .iter()
                .rev()
                .find(|(_, begins)| begins / self.seg_size <= segno)
                .map(|(t, _)| *t)
                .unwrap_or(1);
            let ok = self.complete.contains(&(tli, segno))
                || (segno == last && self.partial.contains(&(tli, segno)));
            if !ok {
                missing.push(crate::pg::lsn::segment_name(tli, segno, self.seg_size));
            }
        }
        if !missing.is_empty() {
            anyhow::bail!(
                "the WAL from this backup to {} has {} missing segment(s): {}{}",
                format_lsn(self.end),
                missing.len(),
                missing
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() > 10 { ", ..." } else { "" }
            );
        }
        Ok(format!(
            "WAL complete to {} ({} segment(s))",
            format_lsn(self.end),
            last - first + 1
        ))
    }
}

/// Size and SHA-256 of each object as stored.
async fn objects(storage: &Storage, objs: &[ObjectEntry]) -> anyhow::Result<String> {
    for o in objs {
        verify_object(storage, o).await?;
    }
    Ok(format!("{} object(s)", objs.len()))
}

#[derive(Deserialize)]
struct PgManifest {
    #[serde(rename = "Files")]
    files: Vec<PgFile>,
}

#[derive(Clone, Deserialize)]
struct PgFile {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

/// The server's backup manifest first, then every archive: each file's size and checksum (in the
/// algorithm the manifest names: CRC32C, pg_basebackup's default and ours, or SHA-256) against it.
async fn postgres_full(storage: &Storage, codec: &Codec, m: &Manifest) -> anyhow::Result<String> {
    let is_manifest = |o: &&ObjectEntry| {
        o.key
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("backup_manifest"))
    };
    let mo = m
        .objects
        .iter()
        .find(is_manifest)
        .ok_or_else(|| anyhow::anyhow!("the backup has no server backup manifest"))?;
    let stored = HashingReader::new(storage.open(&mo.key).await?);
    let (mut dec, tee) = crate::restore::decode_hashed(codec, &mo.key, stored)?;
    let mut text = Vec::new();
    let read = dec.read_to_end(&mut text).await;
    drop(dec);
    check_stored(mo, tee.await??)?;
    read.map_err(|e| anyhow::anyhow!("object {}: {e}", mo.key))?;
    check_manifest_checksum(&text)?;
    let manifest: PgManifest =
        serde_json::from_slice(&text).map_err(|e| anyhow::anyhow!("backup_manifest: {e}"))?;
    let expected: Arc<HashMap<String, PgFile>> = Arc::new(
        manifest
            .files
            .iter()
            .map(|f| (f.path.clone(), f.clone()))
            .collect(),
    );
    let mut seen = 0usize;
    for o in m.objects.iter().filter(|o| !is_manifest(o)) {
        let name = o.key.rsplit('/').next().unwrap_or_default();
        // Files of pg_wal.tar live under pg_wal/ in the data directory.
        let base = if name.starts_with("pg_wal.tar") {
            "pg_wal/"
        } else if name.starts_with("base.tar") {
            ""
        } else {
            anyhow::bail!("object {}: this build backs up no tablespaces", o.key)
        };
        let stored = HashingReader::new(storage.open(&o.key).await?);
        let (dec, tee) = crate::restore::decode_hashed(codec, &o.key, stored)?;
        let bridge = tokio_util::io::SyncIoBridge::new(dec);
        let base = base.to_string();
        let expected = expected.clone();
        let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let mut n = 0;
            let mut ar = tar::Archive::new(bridge);
            for entry in ar.entries()? {
                let mut entry = entry?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let path = format!("{base}{}", entry.path()?.to_string_lossy());
                let Some(PgFile {
                    size,
                    algorithm: algo,
                    checksum: sum,
                    ..
                }) = expected.get(&path)
                else {
                    // WAL segments are not in the manifest (its WAL-Ranges cover them).
                    std::io::copy(&mut entry, &mut std::io::sink())?;
                    continue;
                };
                let mut h = Sum::new(algo.as_deref());
                let got = std::io::copy(&mut entry, &mut h)?;
                if got != *size {
                    anyhow::bail!("{path}: {got} bytes, the server's manifest says {size}");
                }
                if let (Some(want), Some(have)) = (sum, h.finish())
                    && !want.eq_ignore_ascii_case(&have)
                {
                    anyhow::bail!(
                        "{path}: {} differs from the server's backup manifest",
                        algo.as_deref().unwrap_or("checksum")
                    );
                }
                n += 1;
            }
            let mut rest = ar.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink())?;
            Ok(n)
        })
        .await?;
        check_stored(o, tee.await??)?;
        seen += checked.map_err(|e| anyhow::anyhow!("object {}: {e:#}", o.key))?;
    }
    if seen != manifest.files.len() {
        anyhow::bail!(
            "the archives hold {seen} of the {} files the server's backup manifest lists",
            manifest.files.len()
        );
    }
    Ok(format!(
        "{} object(s), {} files against the server's backup manifest",
        m.objects.len(),
        manifest.files.len()
    ))
}

/// A file checksum in a manifest algorithm. CRC32C is written as PostgreSQL does: the 4 bytes
/// of the final value in native (little-endian) order, in hex.
enum Sum {
    Sha256(Sha256),
    Crc32c(u32),
    None,
}

impl Sum {
    fn new(algorithm: Option<&str>) -> Self {
        match algorithm {
            Some("SHA256") => Self::Sha256(Sha256::new()),
            Some("CRC32C") => Self::Crc32c(0),
            _ => Self::None,
        }
    }

    fn finish(self) -> Option<String> {
        match self {
            Self::Sha256(h) => Some(hex::encode(h.finalize())),
            Self::Crc32c(c) => Some(hex::encode(c.to_le_bytes())),
            Self::None => None,
        }
    }
}

impl std::io::Write for Sum {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Sha256(h) => h.update(buf),
            Self::Crc32c(c) => *c = crc32c::crc32c_append(*c, buf),
            Self::None => {}
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The manifest's last line holds the SHA-256 of everything before it.
fn check_manifest_checksum(text: &[u8]) -> anyhow::Result<()> {
    let key = b"\"Manifest-Checksum\": \"";
    let at = text
        .windows(key.len())
        .rposition(|w| w == key)
        .ok_or_else(|| anyhow::anyhow!("backup_manifest has no Manifest-Checksum"))?;
    let stored = &text[at + key.len()..];
    let stored = String::from_utf8_lossy(&stored[..stored.len().min(64)]).to_string();
    let computed = hex::encode(Sha256::digest(&text[..at]));
    if stored != computed {
        anyhow::bail!("backup_manifest is damaged: its checksum does not match its content");
    }
    Ok(())
}
