//! PostgreSQL over the replication protocol: the connection, full backups, WAL streaming.

pub mod basebackup;
pub mod conn;
pub mod copydata;
pub mod fetch;
pub mod lsn;
pub mod prefetch;
pub mod wal;
