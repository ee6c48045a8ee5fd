use std::process::ExitCode;

use common::app::CommonArgs;
use pool_exporter::Config;

/// Prometheus exporter for PgBouncer: the metric names of prometheus-community's
/// pgbouncer_exporter, several PgBouncers from one process, one persistent admin connection each.
///
/// Configuration: built-in defaults < TOML file (--config or POOL_EXPORTER_CONFIG) < environment
/// (POOL_EXPORTER_<KEY>, nested keys joined by `__`). See docs/pool-exporter.md.
#[derive(clap::Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// prometheus-community pgbouncer_exporter flags, for a drop-in switch (each sets the key
    /// named, over the file and the environment).
    #[command(flatten)]
    compat: Compat,
}

#[derive(clap::Args, Debug)]
struct Compat {
    /// Sets `listen`. `:9127` means every interface.
    #[arg(long = "web.listen-address", value_name = "[HOST]:PORT", global = true)]
    listen_address: Option<String>,
    /// Sets `telemetry_path`.
    #[arg(long = "web.telemetry-path", value_name = "PATH", global = true)]
    telemetry_path: Option<String>,
    /// Sets `connection_string` (one PgBouncer, a libpq URL or key=value string). Also read
    /// from PGBOUNCER_EXPORTER_CONNECTION_STRING when POOL_EXPORTER_CONNECTION_STRING is unset.
    #[arg(
        long = "pgBouncer.connectionString",
        value_name = "CONNSTR",
        global = true
    )]
    connection_string: Option<String>,
}

impl Compat {
    /// The flags as POOL_EXPORTER_* settings.
    fn overrides(&self) -> Vec<(String, String)> {
        let mut o = vec![];
        if let Some(a) = &self.listen_address {
            let a = if a.starts_with(':') {
                format!("0.0.0.0{a}")
            } else {
                a.clone()
            };
            o.push(("POOL_EXPORTER_LISTEN".into(), a));
        }
        if let Some(p) = &self.telemetry_path {
            o.push(("POOL_EXPORTER_TELEMETRY_PATH".into(), p.clone()));
        }
        let from_env = std::env::var("POOL_EXPORTER_CONNECTION_STRING")
            .is_err()
            .then(|| std::env::var("PGBOUNCER_EXPORTER_CONNECTION_STRING").ok())
            .flatten();
        if let Some(cs) = self.connection_string.clone().or(from_env) {
            o.push(("POOL_EXPORTER_CONNECTION_STRING".into(), cs));
        }
        o
    }
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
        #[command(flatten)]
        output: common::output::OutputArg,
    },
}

fn main() -> ExitCode {
    let cli: Cli = common::app::parse_cli();
    let cfg: Config = match common::app::bootstrap_with(&cli.common, cli.compat.overrides()) {
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
        Cmd::Show {
            what,
            target,
            output,
        } => common::app::run_command(|_| async move {
            let ok = pool_exporter::cli::show(&cfg, &what, target.as_deref(), output).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
    }
}
