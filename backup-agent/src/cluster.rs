//! One storage prefix, one cluster: the first backup or WAL stored into a prefix records the
//! cluster's system identifier in `catalog/cluster.json`; full backups, the WAL archiver and the
//! incremental refuse to write into a prefix recorded for another cluster (a second or
//! re-initialised cluster would otherwise write WAL segments of the same names over the first's).
//! A cluster restored from the prefix has the same identifier and goes on in it.

use std::time::SystemTime;

use common::catalog::{CLUSTER_KEY, ClusterInfo};

use crate::storage::Storage;

/// Checks that `system_id` may write into `storage`, recording it when the prefix is new.
pub async fn claim(
    storage: &Storage,
    system_id: &str,
    pg_version: Option<u32>,
) -> anyhow::Result<ClusterInfo> {
    match storage.get(CLUSTER_KEY).await {
        Ok(bytes) => {
            let known: ClusterInfo = serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{CLUSTER_KEY} in {} is unreadable: {e}", storage.describe())
            })?;
            if known.system_id != system_id {
                anyhow::bail!(
                    "storage {} belongs to PostgreSQL cluster {} (first seen {}), but this server is cluster {}: \
                     refusing to write its backups or WAL there. Give each cluster its own storage.s3.prefix \
                     (or storage.path); a cluster restored from these backups keeps the identifier {}",
                    storage.describe(),
                    known.system_id,
                    humantime::format_rfc3339_seconds(known.first_seen),
                    system_id,
                    known.system_id
                );
            }
            Ok(known)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let info = ClusterInfo {
                system_id: system_id.to_string(),
                pg_version,
                first_seen: SystemTime::now(),
            };
            storage
                .put(CLUSTER_KEY, &serde_json::to_vec_pretty(&info)?)
                .await?;
            Ok(info)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot read {CLUSTER_KEY} from {}: {e}",
            storage.describe()
        )),
    }
}
