//! Every series from SHOW output in the column layouts of PgBouncer 1.16, 1.18, 1.21, 1.23, 1.24 and
//! 1.25 (fixtures in tests/fixtures): columns by name, missing columns give no series, NULL is absent.

use pool_exporter::admin::Rows;
use pool_exporter::collect::{Snapshot, collect, family_names};
use pool_exporter::exposition::{Families, LabelSet};

fn snapshot(version: &str) -> Snapshot {
    let path = format!(
        "{}/tests/fixtures/pgbouncer-{version}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut s = Snapshot::default();
    for section in text.split("== SHOW ").skip(1) {
        let (cmd, body) = section.split_once('\n').expect("section");
        *s.slot(cmd.trim()).expect("known command") = Some(Rows::from_psql(body));
    }
    s
}

fn base() -> LabelSet {
    LabelSet::new([("pgbouncer", "main"), ("env", "test")])
}

fn value(f: &Families, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    f.get(name)?.find(labels)
}

fn has(f: &Families, name: &str) -> bool {
    f.get(name).is_some_and(|f| !f.samples.is_empty())
}

/// Families every layout from 1.16 on yields.
const ALWAYS: &[&str] = &[
    "pgbouncer_version_info",
    "pgbouncer_databases_pool_size",
    "pgbouncer_databases_reserve_pool",
    "pgbouncer_databases_max_connections",
    "pgbouncer_databases_current_connections",
    "pgbouncer_databases_paused",
    "pgbouncer_databases_disabled",
    "pgbouncer_stats_totals_queries_pooled_total",
    "pgbouncer_stats_totals_queries_duration_seconds_total",
    "pgbouncer_stats_totals_received_bytes_total",
    "pgbouncer_stats_totals_queries_total",
    "pgbouncer_stats_totals_sent_bytes_total",
    "pgbouncer_stats_totals_client_wait_seconds_total",
    "pgbouncer_stats_totals_sql_transactions_pooled_total",
    "pgbouncer_stats_totals_server_in_transaction_seconds_total",
    "pgbouncer_pools_client_active_connections",
    "pgbouncer_pools_client_waiting_connections",
    "pgbouncer_pools_server_active_connections",
    "pgbouncer_pools_server_idle_connections",
    "pgbouncer_pools_server_used_connections",
    "pgbouncer_pools_server_testing_connections",
    "pgbouncer_pools_server_login_connections",
    "pgbouncer_pools_client_maxwait_seconds",
    "pgbouncer_databases",
    "pgbouncer_users",
    "pgbouncer_pools",
    "pgbouncer_free_clients",
    "pgbouncer_used_clients",
    "pgbouncer_login_clients",
    "pgbouncer_free_servers",
    "pgbouncer_used_servers",
    "pgbouncer_cached_dns_names",
    "pgbouncer_cached_dns_zones",
    "pgbouncer_in_flight_dns_queries",
    "pgbouncer_config_max_client_connections",
    "pgbouncer_config_max_user_connections",
    "pgbouncer_client_connections",
    "pgbouncer_server_connections",
    "pgbouncer_mem_item_size_bytes",
    "pgbouncer_mem_used_items",
    "pgbouncer_mem_free_items",
    "pgbouncer_mem_total_bytes",
];
const CANCEL_118: &[&str] = &[
    "pgbouncer_pools_client_active_cancel_connections",
    "pgbouncer_pools_client_waiting_cancel_connections",
    "pgbouncer_pools_server_active_cancel_connections",
    "pgbouncer_pools_server_being_canceled_connections",
];
const PARSES_124: &[&str] = &[
    "pgbouncer_stats_totals_client_parses_total",
    "pgbouncer_stats_totals_server_parses_total",
    "pgbouncer_stats_totals_binds_total",
];
const ASSIGN_123: &str = "pgbouncer_stats_totals_server_assignments_total";
const USERS_NEW: &[&str] = &[
    "pgbouncer_users_pool_size",
    "pgbouncer_users_max_connections",
    "pgbouncer_users_current_connections",
    "pgbouncer_users_max_client_connections",
    "pgbouncer_users_current_client_connections",
];

fn check(version: &str, minor: u32) {
    let s = snapshot(version);
    let f = collect(&s, &base());
    for name in ALWAYS {
        assert!(has(&f, name), "{version}: {name} missing");
    }
    for name in CANCEL_118 {
        assert_eq!(has(&f, name), minor >= 18, "{version}: {name}");
    }
    for name in PARSES_124 {
        assert_eq!(has(&f, name), minor >= 24, "{version}: {name}");
    }
    assert_eq!(has(&f, ASSIGN_123), minor >= 23, "{version}: {ASSIGN_123}");
    for name in USERS_NEW {
        assert_eq!(has(&f, name), minor >= 24, "{version}: {name}");
    }
    // Only names from the table of families, every series with the target's labels first.
    let known = family_names();
    for fam in f.iter() {
        assert!(
            known.contains(&fam.name),
            "{version}: unexpected family {}",
            fam.name
        );
        for (labels, _) in &fam.samples {
            assert_eq!(
                &labels.pairs()[..2],
                &base().pairs()[..],
                "{version}: {} labels {labels:?}",
                fam.name
            );
        }
    }

    let app = [("database", "app"), ("user", "app")];
    // Microsecond precision: maxwait 2 s + maxwait_us 500000.
    assert_eq!(
        value(&f, "pgbouncer_pools_client_maxwait_seconds", &app),
        Some(2.5)
    );
    assert_eq!(
        value(&f, "pgbouncer_pools_client_waiting_connections", &app),
        Some(2.0)
    );
    // Times from microseconds to seconds.
    let db = [("database", "app")];
    assert_eq!(
        value(
            &f,
            "pgbouncer_stats_totals_queries_duration_seconds_total",
            &db
        ),
        Some(1.5)
    );
    assert_eq!(
        value(
            &f,
            "pgbouncer_stats_totals_server_in_transaction_seconds_total",
            &db
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&f, "pgbouncer_stats_totals_client_wait_seconds_total", &db),
        Some(0.25)
    );
    assert_eq!(
        value(&f, "pgbouncer_stats_totals_queries_pooled_total", &db),
        Some(250.0)
    );
    assert_eq!(
        value(&f, "pgbouncer_stats_totals_queries_total", &db),
        Some(250.0)
    );
    assert_eq!(
        value(&f, "pgbouncer_stats_totals_received_bytes_total", &db),
        Some(4096.0)
    );
    // reserve_pool is read from either reserve_pool or reserve_pool_size (1.24 renamed it).
    let dbl = [
        ("name", "app"),
        ("host", "127.0.0.1"),
        ("port", "5432"),
        ("pool_mode", "transaction"),
    ];
    assert_eq!(
        value(&f, "pgbouncer_databases_reserve_pool", &dbl),
        Some(5.0)
    );
    // A NULL label is empty (absent), never the text "<NULL>".
    assert!(
        value(
            &f,
            "pgbouncer_databases_pool_size",
            &[("name", "pgbouncer"), ("host", "")]
        )
        .is_some()
    );
    assert!(f.iter().all(|fam| {
        fam.samples
            .iter()
            .all(|(l, _)| !l.as_str().contains("<NULL>"))
    }));
    assert_eq!(
        value(&f, "pgbouncer_config_max_client_connections", &[]),
        Some(2000.0)
    );
    assert_eq!(value(&f, "pgbouncer_used_clients", &[]), Some(3.0));
    assert_eq!(
        value(
            &f,
            "pgbouncer_version_info",
            &[("version", &format!("PgBouncer {version}"))]
        ),
        Some(1.0)
    );
    // Clients and servers counted per group.
    let web = [
        ("database", "app"),
        ("user", "app"),
        ("application_name", "web"),
        ("state", "active"),
    ];
    assert_eq!(value(&f, "pgbouncer_client_connections", &web), Some(2.0));
    let waiting = [("application_name", "web"), ("state", "waiting")];
    assert_eq!(
        value(&f, "pgbouncer_client_connections", &waiting),
        Some(1.0)
    );
    assert_eq!(
        value(
            &f,
            "pgbouncer_server_connections",
            &[("database", "app"), ("state", "active")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&f, "pgbouncer_client_connections", &[("state", "idle")]).is_some(),
        minor >= 25,
        "{version}: idle clients"
    );
    assert_eq!(
        value(&f, "pgbouncer_mem_total_bytes", &[("name", "iobuf_cache")]),
        Some(205600.0)
    );
    if minor >= 24 {
        // USERS: NULL pool_size gives no series for that user, a value gives one.
        assert_eq!(
            value(&f, "pgbouncer_users_pool_size", &[("user", "app")]),
            Some(20.0)
        );
        assert_eq!(
            value(&f, "pgbouncer_users_pool_size", &[("user", "pgb_stats")]),
            None
        );
        assert_eq!(
            value(&f, "pgbouncer_stats_totals_binds_total", &db),
            Some(13.0)
        );
    }
}

#[test]
fn pgbouncer_1_16() {
    check("1.16.1", 16);
}
#[test]
fn pgbouncer_1_18() {
    check("1.18.0", 18);
}
#[test]
fn pgbouncer_1_21() {
    check("1.21.0", 21);
}
#[test]
fn pgbouncer_1_23() {
    check("1.23.1", 23);
}
#[test]
fn pgbouncer_1_24() {
    check("1.24.0", 24);
}
#[test]
fn pgbouncer_1_25() {
    check("1.25.0", 25);
}

#[test]
fn failed_commands_yield_no_series_and_unknown_columns_are_ignored() {
    let mut s = snapshot("1.18.0");
    s.pools = None;
    s.stats_totals = Some(Rows::from_psql(
        "database|query_count|brand_new_column\napp|7|x\n",
    ));
    let f = collect(&s, &base());
    assert!(!has(&f, "pgbouncer_pools_client_active_connections"));
    assert!(!has(&f, "pgbouncer_pools_client_maxwait_seconds"));
    assert_eq!(
        value(
            &f,
            "pgbouncer_stats_totals_queries_pooled_total",
            &[("database", "app")]
        ),
        Some(7.0)
    );
    assert!(!has(&f, "pgbouncer_stats_totals_sent_bytes_total"));
}
