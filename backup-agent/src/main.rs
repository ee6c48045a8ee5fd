use std::process::ExitCode;

use backup_agent::Config;
use clap::Parser;
use common::app::CommonArgs;

/// PostgreSQL full backups over the replication protocol, continuous WAL, Redis snapshots, retention, restore and point-in-time recovery, to a local directory or S3.
///
/// Configuration: built-in defaults < TOML file (--config or BACKUP_AGENT_CONFIG) < environment
/// (BACKUP_AGENT_<KEY>, nested keys joined by `__`). See docs/backup-agent.md.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Run the daemon (the default).
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg: Config = match common::app::bootstrap(&cli.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Run => common::app::run_daemon(
            "backup_agent",
            env!("CARGO_PKG_VERSION"),
            cfg.listen,
            common::app::Threads::PerCore,
            |ctx| backup_agent::daemon(cfg, ctx),
        ),
    }
}
