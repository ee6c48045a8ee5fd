//! S3 uploads against the harness's S3 server: multipart parts grow with the object so that no
//! upload hits the part-count ceiling (S3's is 10 000; a low one is injected here).

use backup_agent::config::S3Config;
use backup_agent::storage::s3::{PartPlan, S3};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

async fn bucket(s3: &harness::s3::S3Server) -> S3 {
    S3::new(&S3Config {
        bucket: harness::s3::BUCKET.into(),
        endpoint: Some(s3.endpoint()),
        path_style: true,
        access_key_id: Some(harness::s3::ACCESS_KEY.into()),
        secret_access_key: Some(common::Secret::new(harness::s3::SECRET_KEY)),
        ..S3Config::default()
    })
    .await
    .expect("S3 client")
}

/// Deterministic bytes that do not compress (so sizes are what they say).
fn data(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(b"outrigger").to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

async fn upload(b: &S3, key: &str, bytes: &[u8]) -> std::io::Result<backup_agent::storage::Stored> {
    let mut w = b.create(key);
    // Written in uneven pieces, as a compressor would.
    for chunk in bytes.chunks(100_003) {
        w.write_all(chunk).await?;
    }
    w.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_grow_past_the_part_count_ceiling() {
    let server = tokio::task::spawn_blocking(harness::s3::S3Server::start)
        .await
        .expect("join")
        .expect("s3");
    // 4 parts at most (S3 servers refuse parts under 5 MiB but the last); 5 MiB parts doubling
    // every 2: up to 5 MiB x 2 x (1 + 2) = 30 MiB, where fixed 5 MiB parts hold 20 MiB.
    let growing = PartPlan {
        base: 5 << 20,
        grow_every: 2,
        max_parts: 4,
        max_part: 1 << 30,
    };
    assert_eq!(growing.max_object(), 30 << 20);
    let bytes = data(28 << 20);
    let b = bucket(&server).await.with_part_plan(growing);
    let stored = upload(&b, "big/object", &bytes).await.expect("upload");
    assert_eq!(stored.size, bytes.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&bytes)));
    let back = b.get("big/object").await.expect("read back");
    assert!(back == bytes, "the object read back differs");

    // The same object with fixed parts of the same first size hits the ceiling: the upload fails
    // naming the limit, and nothing is left under the key.
    let fixed = PartPlan {
        grow_every: usize::MAX,
        ..growing
    };
    let b = bucket(&server).await.with_part_plan(fixed);
    let e = upload(&b, "big/fixed", &bytes)
        .await
        .expect_err("fixed parts cannot hold it");
    assert!(e.to_string().contains("larger than 4 parts"), "{e}");
    assert!(
        !b.exists("big/fixed").await.expect("exists"),
        "a failed upload left an object"
    );
    let leftovers = b
        .incomplete(std::time::Duration::ZERO)
        .await
        .expect("list uploads");
    assert!(
        leftovers.iter().all(|(k, _)| !k.ends_with("big/fixed")),
        "the failed multipart upload was not aborted: {leftovers:?}"
    );
}

/// Backups of one kind started in the same second (the CLI and the daemon, two agents on one
/// bucket) get their own ids: each id is claimed atomically before anything is written, on S3
/// with a conditional PUT and locally with an exclusive create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_claimed_once_on_s3_and_locally() {
    use backup_agent::ids::{claim_key, fresh_id, id_time};
    use backup_agent::storage::Storage;
    use common::catalog::BackupKind;
    let server = tokio::task::spawn_blocking(harness::s3::S3Server::start)
        .await
        .expect("join")
        .expect("s3");
    let dir = harness::process::TempDir::new("claims").expect("dir");
    let stores = [
        Storage::S3(bucket(&server).await),
        Storage::local(dir.path()),
    ];
    for storage in &stores {
        // A claim made by someone else for this very second is respected.
        let now = std::time::SystemTime::now();
        let taken = backup_agent::ids::new_id(now);
        assert!(
            storage
                .create_exclusive(&claim_key(BackupKind::Redis, &taken), b"other agent\n")
                .await
                .expect("claim")
        );
        assert!(
            !storage
                .create_exclusive(&claim_key(BackupKind::Redis, &taken), b"again\n")
                .await
                .expect("second claim"),
            "{}: a claim was made twice",
            storage.describe()
        );
        // Many claims of one key at once: exactly one wins, on S3 as locally.
        for round in 0..5 {
            let key = format!("claims/race-{round}");
            let mut claims = tokio::task::JoinSet::new();
            for i in 0..16 {
                let (storage, key) = (storage.clone(), key.clone());
                claims.spawn(async move {
                    storage
                        .create_exclusive(&key, format!("{i}\n").as_bytes())
                        .await
                });
            }
            let won = claims
                .join_all()
                .await
                .into_iter()
                .map(|r| r.expect("claim"))
                .filter(|won| *won)
                .count();
            assert_eq!(won, 1, "{}: {key} claimed {won} times", storage.describe());
        }
        let (a, b, c) = tokio::join!(
            fresh_id(storage, BackupKind::Redis),
            fresh_id(storage, BackupKind::Redis),
            fresh_id(storage, BackupKind::Redis),
        );
        let ids: std::collections::BTreeSet<String> =
            [a, b, c].into_iter().map(|r| r.expect("id").0).collect();
        assert_eq!(ids.len(), 3, "{}: {ids:?}", storage.describe());
        assert!(
            !ids.contains(&taken),
            "{}: took a claimed id",
            storage.describe()
        );
        for id in &ids {
            assert!(id_time(id).is_some(), "{id}");
            assert!(
                storage
                    .exists(&claim_key(BackupKind::Redis, id))
                    .await
                    .expect("exists")
            );
        }
    }
}
