//! health-agent's metrics, declared in one place.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// `check` and `kind` labels.
pub type CheckLabels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct Metrics {
    /// health_check_state{check,kind}: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (the reported state).
    pub state: Family<CheckLabels, Gauge>,
    /// health_check_result{check,kind}: the last result, before debouncing.
    pub result: Family<CheckLabels, Gauge>,
    /// health_check_duration_seconds{check,kind}: the last run's duration.
    pub duration: Family<CheckLabels, Gauge<f64, AtomicU64>>,
    /// health_check_last_success_timestamp_seconds{check,kind}.
    pub last_success: Family<CheckLabels, Gauge<f64, AtomicU64>>,
    /// health_check_failures_total{check,kind}: results that were not OK.
    pub failures: Family<CheckLabels, Counter>,
    /// health_check_flapping{check,kind}: 1 while the check's results keep alternating.
    pub flapping: Family<CheckLabels, Gauge>,
    /// health_cycle_duration_seconds: the last full cycle.
    pub cycle_duration: Gauge<f64, AtomicU64>,
    /// health_cycles_total.
    pub cycles: Counter,
    /// health_alerts_received_total{status}: alerts posted to /alerts (Alertmanager).
    pub alerts_received: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "health_check_state",
            "Reported state of a check: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
            m.state.clone(),
        );
        registry.register(
            "health_check_result",
            "Last result of a check before debouncing: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
            m.result.clone(),
        );
        registry.register(
            "health_check_duration_seconds",
            "Duration of the last run of a check",
            m.duration.clone(),
        );
        registry.register(
            "health_check_last_success_timestamp_seconds",
            "Unix time of the last OK result of a check",
            m.last_success.clone(),
        );
        registry.register(
            "health_check_failures",
            "Results of a check that were not OK",
            m.failures.clone(),
        );
        registry.register(
            "health_check_flapping",
            "1 while a check's results keep alternating between good and bad (5 or more changes in its last 10 results)",
            m.flapping.clone(),
        );
        registry.register(
            "health_cycle_duration_seconds",
            "Duration of the last full check cycle",
            m.cycle_duration.clone(),
        );
        registry.register("health_cycles", "Check cycles run", m.cycles.clone());
        registry.register(
            "health_alerts_received",
            "Alerts posted to /alerts by Alertmanager, by status (firing, resolved)",
            m.alerts_received.clone(),
        );
        m
    }
}

pub fn labels(check: &str, kind: &str) -> CheckLabels {
    vec![
        ("check".to_string(), check.to_string()),
        ("kind".to_string(), kind.to_string()),
    ]
}
