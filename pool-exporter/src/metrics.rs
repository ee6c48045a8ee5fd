//! pool-exporter's /metrics: the PgBouncer families of every target (see [`crate::collect`]) plus
//! the exporter's own series, all rendered per scrape in the text format of the Go exporter.

use crate::collect::collect;
use crate::exposition::{Families, Family, Kind, LabelSet, render};
use crate::target::{Scrape, TargetState};

pub const UP: &str = "pgbouncer_up";
pub const SCRAPE_DURATION: &str = "pgbouncer_exporter_scrape_duration_seconds";
pub const LAST_SCRAPE_ERROR: &str = "pgbouncer_exporter_last_scrape_error";
pub const CONNECTIONS_OPENED: &str = "pgbouncer_exporter_connections_opened_total";
pub const BUILD_INFO: &str = "pool_exporter_build_info";
/// The Go exporter's build-info name, kept for dashboards and alerts that check it.
pub const LEGACY_BUILD_INFO: &str = "pgbouncer_exporter_build_info";

/// Renders one scrape of every target.
pub fn render_scrapes(scrapes: &[(&TargetState, Scrape)], version: &str) -> String {
    let mut all = Families::default();
    let mut up = Family::new(UP, "The pgbouncer scrape succeeded", Kind::Gauge);
    let mut duration = Family::new(
        SCRAPE_DURATION,
        "Duration of the last scrape of this PgBouncer, in seconds",
        Kind::Gauge,
    );
    let mut error = Family::new(
        LAST_SCRAPE_ERROR,
        "1 if the last scrape of this PgBouncer failed, else 0",
        Kind::Gauge,
    );
    let mut opened = Family::new(
        CONNECTIONS_OPENED,
        "Admin console connections opened to this PgBouncer (one per reconnect)",
        Kind::Counter,
    );
    for (target, scrape) in scrapes {
        all.extend(collect(&scrape.snapshot, &target.labels));
        let l: LabelSet = target.labels.clone();
        up.samples
            .push((l.clone(), f64::from(u8::from(scrape.up()))));
        duration
            .samples
            .push((l.clone(), scrape.duration.as_secs_f64()));
        error
            .samples
            .push((l.clone(), f64::from(u8::from(!scrape.up()))));
        opened.samples.push((l, target.connects() as f64));
    }
    let mut build = Family::new(
        BUILD_INFO,
        "pool-exporter build information; always 1",
        Kind::Gauge,
    );
    build
        .samples
        .push((LabelSet::new([("version", version)]), 1.0));
    let mut legacy = Family::new(
        LEGACY_BUILD_INFO,
        "Build information, as the Go pgbouncer_exporter exports it; always 1",
        Kind::Gauge,
    );
    legacy.samples.push((
        LabelSet::new([
            ("version", version),
            ("goos", std::env::consts::OS),
            ("goarch", goarch()),
        ]),
        1.0,
    ));
    for f in [up, duration, error, opened, build, legacy] {
        all.add(f);
    }
    if let Some(p) = common::process::read() {
        for (name, help, counter, value) in common::process::samples(&p) {
            let kind = if counter { Kind::Counter } else { Kind::Gauge };
            let mut f = Family::new(name, help, kind);
            f.samples.push((LabelSet::default(), value));
            all.add(f);
        }
    }
    render(&all)
}

/// Go's name for this machine's architecture.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
