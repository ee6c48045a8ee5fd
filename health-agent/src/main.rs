use std::process::ExitCode;

use clap::Parser;
use common::app::CommonArgs;
use health_agent::Config;

/// Checks PostgreSQL, PgBouncer, Redis, Sentinel, backups, disks and endpoints every 5 minutes;
/// writes health.log on every state change, serves /status and /metrics.
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
    /// Run every check once now and print a table. Exit 0 all OK, 1 WARN, 2 CRIT or UNKNOWN.
    Check {
        /// Only the check with this name.
        #[arg(long)]
        only: Option<String>,
    },
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
        Cmd::Check { only } => common::app::run_command(|_| async move {
            let worst = health_agent::cli::check(&cfg, only.as_deref()).await?;
            Ok(ExitCode::from(worst.exit_code()))
        }),
    }
}
