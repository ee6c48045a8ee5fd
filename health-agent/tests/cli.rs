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

/// `--check-config` shows what a partial pgbouncer `[checks.conn]` table becomes: the admin
/// console's port and database for the keys it does not give.
#[test]
fn check_config_shows_the_defaults_a_partial_conn_table_keeps() {
    let dir = harness::process::TempDir::new("ha-check").expect("dir");
    let f = dir.path().join("h.toml");
    std::fs::write(
        &f,
        "[[checks]]\nname = \"pgb\"\nkind = \"pgbouncer\"\n[checks.conn]\nhost = \"pgb\"\nuser = \"stats\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_health-agent"))
        .arg("--config")
        .arg(&f)
        .arg("--check-config")
        .env_remove("HEALTH_AGENT_CONFIG")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "host = \"pgb\"",
        "port = 6432",
        "user = \"stats\"",
        "dbname = \"pgbouncer\"",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
