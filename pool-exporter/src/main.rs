use std::process::ExitCode;

use clap::Parser;
use common::app::CommonArgs;
use pool_exporter::Config;

/// Prometheus exporter for PgBouncer: the metric names of prometheus-community's
/// pgbouncer_exporter, several PgBouncers from one process, one persistent admin connection each.
///
/// Configuration: built-in defaults < TOML file (--config or POOL_EXPORTER_CONFIG) < environment
/// (POOL_EXPORTER_<KEY>, nested keys joined by `__`). See docs/pool-exporter.md.
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
    /// Serve /metrics (the default).
    Run,
    /// Print an admin console table of every target: pools, stats, databases, clients, servers,
    /// lists, config, mem, users or version.
    Show {
        /// What to show.
        what: String,
        /// Only this target (by name).
        #[arg(long)]
        target: Option<String>,
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
            "pool_exporter",
            env!("CARGO_PKG_VERSION"),
            cfg.listen,
            common::app::Threads::One,
            |ctx| pool_exporter::daemon(cfg, ctx),
        ),
        Cmd::Show { what, target } => common::app::run_command(|_| async move {
            let ok = pool_exporter::cli::show(&cfg, &what, target.as_deref()).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
    }
}
