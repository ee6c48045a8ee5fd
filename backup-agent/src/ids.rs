//! Backup ids: the UTC second a backup started (`20261130T201500Z`, sortable), claimed in
//! storage before the backup writes anything, so that no two backups share one.

use std::time::SystemTime;

use common::catalog::BackupKind;

use crate::storage::Storage;

/// A backup id: the UTC start time, sortable (`20261130T201500Z`).
pub fn new_id(at: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(at).to_string();
    s.replace(['-', ':'], "")
}

/// The start time an id ([`new_id`]) encodes.
pub fn id_time(id: &str) -> Option<SystemTime> {
    let b = id.as_bytes();
    if id.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &id[0..4],
        &id[4..6],
        &id[6..8],
        &id[9..11],
        &id[11..13],
        &id[13..15]
    );
    humantime::parse_rfc3339(&text).ok()
}

/// Where the claim of backup id `id` of `kind` is stored (outside `catalog/`, which lists only
/// finished backups).
pub fn claim_key(kind: BackupKind, id: &str) -> String {
    format!("claims/{}/{id}", kind.as_str())
}

/// A new id for a backup of `kind` starting now, and that start time. The id is claimed before
/// any object is written, atomically (an exclusive create locally, a conditional PUT on S3), so
/// two processes starting the same kind in the same second (the CLI and the daemon, or two
/// agents on one bucket) never share an id: the second waits for the next second. An id whose
/// backup finished is never reused either.
pub async fn fresh_id(
    storage: &Storage,
    kind: BackupKind,
) -> std::io::Result<(String, SystemTime)> {
    loop {
        let at = SystemTime::now();
        let id = new_id(at);
        if !storage.exists(&kind.manifest_key(&id)).await? {
            let who = format!(
                "pid {} on {}\n",
                std::process::id(),
                hostname().unwrap_or_else(|| "?".into())
            );
            if storage
                .create_exclusive(&claim_key(kind, &id), who.as_bytes())
                .await?
            {
                return Ok((id, at));
            }
        }
        let into_second = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_millis();
        tokio::time::sleep(std::time::Duration::from_millis(
            1001 - u64::from(into_second),
        ))
        .await;
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_gives_back_its_second() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_069_700);
        let id = new_id(t + std::time::Duration::from_millis(700));
        assert_eq!(id, "20261130T201500Z");
        assert_eq!(id_time(&id), Some(t));
        for bad in ["", "2026-11-30", "20261130X201500Z", "20261330T201500Z"] {
            assert_eq!(id_time(bad), None, "{bad}");
        }
    }
}
