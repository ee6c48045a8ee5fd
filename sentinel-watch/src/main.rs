use std::process::ExitCode;

use common::app::CommonArgs;
use sentinel_watch::Config;

/// Follows every Redis Sentinel, reconstructs each failover as a timeline, measures the write
/// downtime and the acknowledged writes lost, and runs hooks on +switch-master and +failover-end.
///
/// Configuration: built-in defaults < TOML file (--config or SENTINEL_WATCH_CONFIG) < environment
/// (SENTINEL_WATCH_<KEY>, nested keys joined by `__`). See docs/sentinel-watch.md.
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
    /// Print masters, replicas (link, lag) and Sentinels as tables; exit 1 when something is off
    /// (no master, no quorum, a Sentinel disagreeing or unreachable, a replica link down).
    Status {
        #[command(flatten)]
        output: common::output::OutputArg,
    },
    /// Planned change of master without losing acknowledged writes: pause writes on the master
    /// (bounded), wait until the target has every write, SENTINEL FAILOVER towards it, demote and
    /// unpause the old master. Prints the write downtime and the writes lost (the prober runs
    /// meanwhile). Exit 0 done, 1 failed; "nothing changed" in the error when it stopped before
    /// the failover. See docs/sentinel-watch.md.
    Switchover(SwitchoverArgs),
}

#[derive(clap::Args, Debug)]
struct SwitchoverArgs {
    /// The master name (default: the only one configured).
    #[arg(long)]
    master: Option<String>,
    /// The replica to promote, host:port as the Sentinels name it. Without it, Sentinel picks one
    /// once every online replica has caught up.
    #[arg(long, value_name = "HOST:PORT")]
    to: Option<String>,
    /// Longest time writes stay paused waiting for the replica(s) to catch up; past it the
    /// switchover is abandoned and writes resume on the old master.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pause_max: std::time::Duration,
    /// Longest time the Sentinels may take to name the new master once asked.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    failover_timeout: std::time::Duration,
    /// Do not run the write prober (no downtime / lost-writes figures).
    #[arg(long)]
    no_probe: bool,
}

fn main() -> ExitCode {
    let cli: Cli = common::app::parse_cli();
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
        Cmd::Switchover(a) => common::app::run_command(|_| async move {
            let master = match (a.master, cfg.masters.as_slice()) {
                (Some(m), _) => m,
                (None, [only]) => only.clone(),
                (None, many) => anyhow::bail!(
                    "--master is needed: {} masters are configured ({})",
                    many.len(),
                    many.join(", ")
                ),
            };
            let opts = sentinel_watch::switchover::Options {
                master,
                to: a
                    .to
                    .as_deref()
                    .map(sentinel_watch::switchover::parse_addr)
                    .transpose()?,
                pause_max: a.pause_max,
                failover_timeout: a.failover_timeout,
                probe: !a.no_probe,
            };
            let report = sentinel_watch::switchover::run(&cfg, &opts).await?;
            println!("{}", report.line());
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Status { output } => common::app::run_command(|_| async move {
            let ok = sentinel_watch::cli::status(&cfg, output).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
    }
}
