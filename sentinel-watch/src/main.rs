use std::process::ExitCode;

use clap::Parser;
use common::app::CommonArgs;
use sentinel_watch::Config;

/// Follows every Redis Sentinel, reconstructs each failover as a timeline, measures the write
/// downtime and the acknowledged writes lost, and runs hooks on +switch-master and +failover-end.
///
/// Configuration: built-in defaults < TOML file (--config or SENTINEL_WATCH_CONFIG) < environment
/// (SENTINEL_WATCH_<KEY>, nested keys joined by `__`). See docs/sentinel-watch.md.
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
    /// Print masters, replicas (link, lag) and Sentinels as tables; exit 1 when something is off
    /// (no master, no quorum, a Sentinel disagreeing or unreachable, a replica link down).
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg: Config = match common::app::bootstrap(&cli.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Run => common::app::run_daemon(
            "sentinel_watch",
            env!("CARGO_PKG_VERSION"),
            cfg.listen,
            common::app::Threads::PerCore,
            |ctx| sentinel_watch::daemon(cfg, ctx),
        ),
        Cmd::Status => common::app::run_command(|_| async move {
            let ok = sentinel_watch::cli::status(&cfg).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
    }
}
