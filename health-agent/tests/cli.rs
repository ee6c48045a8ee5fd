//! The command-line contract: --help, --version, --check-config (unknown key, missing password file).

#[test]
fn help_version_and_check_config() {
    harness::cli::check_contract(
        std::path::Path::new(env!("CARGO_BIN_EXE_health-agent")),
        "health-agent",
        "HEALTH_AGENT",
        "[[checks]]\nname = \"r\"\nkind = \"redis\"\n[checks.conn]\n{KEY} = \"{VALUE}\"\n",
    )
    .expect("CLI contract");
}

#[test]
fn serves_metrics_health_and_stops_on_sigterm() {
    harness::cli::check_serves(
        std::path::Path::new(env!("CARGO_BIN_EXE_health-agent")),
        "HEALTH_AGENT",
        "health_agent",
        &[],
    )
    .expect("metrics server");
}
