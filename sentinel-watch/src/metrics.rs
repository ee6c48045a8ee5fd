//! sentinel-watch's metrics, declared in one place.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
    ])
}

#[derive(Clone)]
pub struct Metrics {
    pub failovers: Family<Labels, Counter>,
    pub failover_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub write_downtime: Family<Labels, Histogram, fn() -> Histogram>,
    pub lost_writes: Family<Labels, Counter>,
    pub restart_lost_writes: Family<Labels, Counter>,
    pub master_info: Family<Labels, Gauge>,
    pub sentinel_up: Family<Labels, Gauge>,
    pub sentinels_up: Gauge,
    pub sentinels_agreeing: Family<Labels, Gauge>,
    pub quorum_ok: Family<Labels, Gauge>,
    pub replica_lag_bytes: Family<Labels, Gauge>,
    pub replica_lag_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    pub replica_link_up: Family<Labels, Gauge>,
    pub events: Family<Labels, Counter>,
    pub probe_writes: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            failovers: Family::default(),
            failover_duration: Family::new_with_constructor(seconds_histogram),
            write_downtime: Family::new_with_constructor(seconds_histogram),
            lost_writes: Family::default(),
            restart_lost_writes: Family::default(),
            master_info: Family::default(),
            sentinel_up: Family::default(),
            sentinels_up: Gauge::default(),
            sentinels_agreeing: Family::default(),
            quorum_ok: Family::default(),
            replica_lag_bytes: Family::default(),
            replica_lag_seconds: Family::default(),
            replica_link_up: Family::default(),
            events: Family::default(),
            probe_writes: Family::default(),
        }
    }

    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::new();
        let r = registry.sub_registry_with_prefix("sentinel_watch");
        r.register(
            "failovers",
            "Failovers confirmed, per master",
            m.failovers.clone(),
        );
        r.register(
            "failover_duration_seconds",
            "From the first event of a failover to the confirmed +switch-master",
            m.failover_duration.clone(),
        );
        r.register(
            "write_downtime_seconds",
            "Last acknowledged probe write on the old master to the first on the new one",
            m.write_downtime.clone(),
        );
        r.register(
            "lost_writes",
            "Acknowledged probe writes missing on the new master after a failover",
            m.lost_writes.clone(),
        );
        r.register(
            "restart_lost_writes",
            "Acknowledged probe writes missing on a master that restarted in place (same address, new run_id)",
            m.restart_lost_writes.clone(),
        );
        r.register(
            "master_info",
            "The current master of each name (1 for the current address)",
            m.master_info.clone(),
        );
        r.register(
            "sentinel_up",
            "1 when the Sentinel's subscription is live",
            m.sentinel_up.clone(),
        );
        r.register(
            "sentinels_up",
            "Sentinels with a live subscription",
            m.sentinels_up.clone(),
        );
        r.register(
            "sentinels_agreeing",
            "Sentinels that name the majority's master",
            m.sentinels_agreeing.clone(),
        );
        r.register(
            "quorum_ok",
            "1 when SENTINEL CKQUORUM succeeds on a Sentinel",
            m.quorum_ok.clone(),
        );
        r.register(
            "replica_lag_bytes",
            "Master replication offset minus the replica's",
            m.replica_lag_bytes.clone(),
        );
        r.register(
            "replica_lag_seconds",
            "Seconds since the master last heard from the replica",
            m.replica_lag_seconds.clone(),
        );
        r.register(
            "replica_link_up",
            "1 when the replica's master link is up",
            m.replica_link_up.clone(),
        );
        r.register(
            "events",
            "Sentinel events, deduplicated, by name",
            m.events.clone(),
        );
        r.register(
            "probe_writes",
            "Probe writes by result",
            m.probe_writes.clone(),
        );
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn master(name: &str) -> Labels {
    vec![("master".into(), name.into())]
}
