//! The catalog's one writer. A backup's manifest is written last, after every object it lists:
//! only then is the backup listed, so one that failed half way never is. Drill records go beside
//! the manifests. Everything that reads the catalog back goes through `Storage::catalog`.

use common::catalog::{DRILLS_PREFIX, DrillRecord, Manifest};

use crate::storage::Storage;

/// Lists a finished backup: its manifest, at `catalog/<kind>/<id>.json`.
pub async fn record(storage: &Storage, m: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
    storage.put(&m.kind.manifest_key(&m.id), &json).await?;
    Ok(())
}

/// Records a restore drill (passed or failed), at `catalog/drills/<id>.json`.
pub async fn record_drill(storage: &Storage, d: &DrillRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(d).map_err(std::io::Error::other)?;
    storage
        .put(&format!("{DRILLS_PREFIX}{}.json", d.id), &json)
        .await?;
    Ok(())
}
