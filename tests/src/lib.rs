//! The stack harness: real servers on free loopback ports, in temp dirs, stopped on drop (also when
//! a test panics) and at process exit.
//!
//! - [`postgres::Postgres`]: PostgreSQL (15 on Debian 12) with scram-sha-256 logins, a normal and a
//!   replication user, `wal_level=replica`.
//! - [`pgbouncer::PgBouncer`]: transaction pooling, `auth_file`, `admin_users`, `stats_users`.
//! - [`redis::RedisStack`]: master + replicas + Sentinels, `down-after-milliseconds` per test.
//! - [`s3::S3Server`]: S3-compatible (s3s-fs), SigV4 checked, multipart, stoppable mid-test.
//! - [`netns::Net`]: network namespaces joined by veth links, with links to cut and heal.
//! - [`webhook::WebhookReceiver`]: JSON POSTs over `http://` or `https://` (a test CA).
//!
//! Every start waits until the server really answers and fails with the server's own log.
//! PostgreSQL and PgBouncer refuse to run as root: as root the harness runs them as `postgres`.

pub mod cli;
pub mod disk;
pub mod http;
pub mod measure;
pub mod netns;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod s3;
pub mod tls;
pub mod webhook;

/// Tests that kill servers or wait for a failover take this lock so that they run one at a time
/// on a 2-core machine.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
