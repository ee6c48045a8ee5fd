use std::process::ExitCode;

use common::app::CommonArgs;
use health_agent::Config;

/// Checks PostgreSQL, PgBouncer, Redis, Sentinel, backups, disks and endpoints every 5 minutes;
/// writes health.log on every state change, serves /status and /metrics.
///
/// Configuration: built-in defaults < TOML file (--config or HEALTH_AGENT_CONFIG) < environment
/// (HEALTH_AGENT_<KEY>, nested keys joined by `__`). See docs/health-agent.md.
#[derive(clap::Parser, Debug)]
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
    /// Run every check once now and print a table (or JSON). Exit codes follow the
    /// monitoring-plugin convention: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (any CRIT wins, then
    /// UNKNOWN, then WARN; a check that cannot run, or `--only` naming none, is UNKNOWN). A
    /// configuration error exits 78 and a bad command line 64, never a state's code.
    Check {
        /// Only the check with this name.
        #[arg(long)]
        only: Option<String>,
        #[command(flatten)]
        output: common::output::OutputArg,
    },
}

fn main() -> ExitCode {
    let cli: Cli = common::app::parse_cli();
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
        Cmd::Check { only, output } => common::app::run_command(|_| async move {
            match health_agent::cli::check(&cfg, only.as_deref(), output).await {
                Ok(overall) => Ok(ExitCode::from(overall.exit_code())),
                Err(e) => {
                    eprintln!("UNKNOWN: {e:#}");
                    Ok(ExitCode::from(
                        health_agent::checks::State::Unknown.exit_code(),
                    ))
                }
            }
        }),
    }
}
