use std::process::ExitCode;

use clap::Parser;
use common::app::CommonArgs;
use health_agent::Config;

/// Checks PostgreSQL, PgBouncer, Redis, Sentinel, backups, disks and endpoints every 5 minutes; writes health.log on every state change.
///
/// Configuration: built-in defaults < TOML file (--config or HEALTH_AGENT_CONFIG) < environment
/// (HEALTH_AGENT_<KEY>, nested keys joined by `__`). See docs/health-agent.md.
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
            "health_agent",
            env!("CARGO_PKG_VERSION"),
            cfg.listen,
            common::app::Threads::PerCore,
            |ctx| health_agent::daemon(cfg, ctx),
        ),
    }
}
