//! The command-line contract: --help, --version, --check-config (unknown key, missing password file).

#[test]
fn help_version_and_check_config() {
    harness::cli::check_contract(
        std::path::Path::new(env!("CARGO_BIN_EXE_pool-exporter")),
        "pool-exporter",
        "POOL_EXPORTER",
        "[[targets]]\nname = \"main\"\n[targets.admin]\n{KEY} = \"{VALUE}\"\n",
    )
    .expect("CLI contract");
}

#[test]
fn serves_metrics_health_and_stops_on_sigterm() {
    harness::cli::check_serves(
        std::path::Path::new(env!("CARGO_BIN_EXE_pool-exporter")),
        "POOL_EXPORTER",
        "pool_exporter",
        &[],
    )
    .expect("metrics server");
}

/// `--check-config` shows what a partial `[targets.admin]` table becomes: the admin console's
/// defaults for every key it does not give.
#[test]
fn check_config_shows_the_defaults_a_partial_admin_table_keeps() {
    let text = harness::cli::effective_config(
        std::path::Path::new(env!("CARGO_BIN_EXE_pool-exporter")),
        "[[targets]]\nname = \"a\"\n[targets.admin]\nhost = \"pgb\"\n",
    )
    .expect("--check-config");
    for want in [
        "host = \"pgb\"",
        "port = 6432",
        "user = \"pgbouncer_exporter\"",
        "dbname = \"pgbouncer\"",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
