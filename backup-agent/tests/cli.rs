//! The command-line contract: --help, --version, --check-config (unknown key, missing password file).

#[test]
fn help_version_and_check_config() {
    harness::cli::check_contract(
        std::path::Path::new(env!("CARGO_BIN_EXE_backup-agent")),
        "backup-agent",
        "BACKUP_AGENT",
        "[postgres]\n{KEY} = \"{VALUE}\"\n",
    )
    .expect("CLI contract");
}
