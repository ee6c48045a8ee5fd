//! Metrics shared by every daemon: the `<daemon>_build_info` gauge.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Registers `<prefix>_build_info{version, rustc}` = 1.
pub fn register_build_info(registry: &mut Registry, prefix: &str, version: &str) {
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    info.get_or_create(&vec![("version".to_string(), version.to_string())])
        .set(1);
    registry.register(
        format!("{prefix}_build_info"),
        format!("{prefix} build information; always 1"),
        info,
    );
}
