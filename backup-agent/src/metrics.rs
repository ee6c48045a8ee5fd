//! backup-agent's metrics, declared in one place.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct Metrics {
    /// backup_agent_last_success_timestamp_seconds{kind}
    pub last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    /// backup_agent_last_duration_seconds{kind}
    pub last_duration: Family<Labels, Gauge<f64, AtomicU64>>,
    /// backup_agent_last_size_bytes{kind}
    pub last_size: Family<Labels, Gauge>,
    /// backup_agent_failures_total{kind}
    pub failures: Family<Labels, Counter>,
    /// backup_agent_wal_lag_bytes: the server's WAL end minus what is stored.
    pub wal_lag_bytes: Gauge,
    /// backup_agent_storage_bytes{kind}: stored bytes of complete backups (and `wal`).
    pub storage_bytes: Family<Labels, Gauge>,
    /// backup_agent_wal_lag_seconds: how long the stored WAL has been behind the server.
    pub wal_lag_seconds: Gauge<f64, AtomicU64>,
    /// backup_agent_wal_slot_retained_bytes: WAL the server keeps for the slot.
    pub slot_retained: Gauge,
    /// backup_agent_last_restore_drill_success_timestamp_seconds
    pub last_drill_success: Gauge<f64, AtomicU64>,
    /// backup_agent_restore_drill_failures_total
    pub drill_failures: Counter,
    /// backup_agent_recovery_window_start_timestamp_seconds: the oldest point a restore reaches
    /// (start of the oldest full backup).
    pub window_start: Gauge<f64, AtomicU64>,
    /// backup_agent_recovery_window_end_timestamp_seconds: the newest (the archiver's last store).
    pub window_end: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("backup_agent");
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful backup, by kind",
            m.last_success.clone(),
        );
        r.register(
            "last_duration_seconds",
            "Duration of the last backup, by kind",
            m.last_duration.clone(),
        );
        r.register(
            "last_size_bytes",
            "Stored size of the last backup, by kind",
            m.last_size.clone(),
        );
        r.register(
            "failures",
            "Failed backup jobs, by kind",
            m.failures.clone(),
        );
        r.register(
            "wal_lag_bytes",
            "WAL the server has that is not stored yet",
            m.wal_lag_bytes.clone(),
        );
        r.register(
            "storage_bytes",
            "Stored bytes of complete backups by kind, and of WAL",
            m.storage_bytes.clone(),
        );
        r.register(
            "wal_lag_seconds",
            "How long the stored WAL has been behind the server",
            m.wal_lag_seconds.clone(),
        );
        r.register(
            "wal_slot_retained_bytes",
            "WAL the server retains for the archiver's slot",
            m.slot_retained.clone(),
        );
        r.register(
            "last_restore_drill_success_timestamp_seconds",
            "Unix time of the last restore drill that passed",
            m.last_drill_success.clone(),
        );
        r.register(
            "restore_drill_failures",
            "Restore drills that failed",
            m.drill_failures.clone(),
        );
        r.register(
            "recovery_window_start_timestamp_seconds",
            "Unix time of the oldest point a restore can reach (start of the oldest full backup)",
            m.window_start.clone(),
        );
        r.register(
            "recovery_window_end_timestamp_seconds",
            "Unix time of the newest point a restore can reach (newest archived WAL)",
            m.window_end.clone(),
        );
        m
    }
}

pub fn kind(k: &str) -> Labels {
    vec![("kind".into(), k.into())]
}
