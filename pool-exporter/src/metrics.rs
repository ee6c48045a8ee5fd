//! pool-exporter's own metrics. The PgBouncer series (names of prometheus-community's
//! pgbouncer_exporter) are built per scrape by the collector.
