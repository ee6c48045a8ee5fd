//! The command-line contract: --help, --version, --check-config (unknown key, missing password file).

#[test]
fn help_version_and_check_config() {
    harness::cli::check_contract(
        std::path::Path::new(env!("CARGO_BIN_EXE_sentinel-watch")),
        "sentinel-watch",
        "SENTINEL_WATCH",
        "[redis_auth]\n{KEY} = \"{VALUE}\"\n",
    )
    .expect("CLI contract");
}

#[test]
fn serves_metrics_health_and_stops_on_sigterm() {
    harness::cli::check_serves(
        std::path::Path::new(env!("CARGO_BIN_EXE_sentinel-watch")),
        "SENTINEL_WATCH",
        "sentinel_watch",
        &[],
    )
    .expect("metrics server");
}
