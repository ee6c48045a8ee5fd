//! The startup order every daemon shares, so that each `main.rs` is only wiring:
//! telemetry -> config (`--check-config`) -> metrics server -> signal handler -> work.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{DaemonConfig, to_masked_toml};
use crate::http::{Readiness, Routes};

/// Exit code for a configuration error (and for `--check-config` on a bad config): sysexits'
/// EX_CONFIG, apart from the 0-3 a monitoring plugin's states use.
pub const EXIT_CONFIG: u8 = 78;

/// Exit code for a command line that does not parse (sysexits' EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Parses the command line; on an error prints clap's message and exits [`EXIT_USAGE`] (`--help`
/// and `--version` print and exit 0).
pub fn parse_cli<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(t) => t,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                i32::from(EXIT_USAGE)
            } else {
                0
            });
        }
    }
}

/// Flags every daemon has.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Config file (TOML). Default: the file named by <PREFIX>_CONFIG, else built-in defaults.
    /// Environment variables <PREFIX>_<KEY> (nested keys joined by `__`) override the file.
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (secrets masked) and exit: 0 when it is valid, 78 with
    /// the error when it is not.
    #[arg(long, global = true)]
    pub check_config: bool,
}

/// Telemetry, then config. Returns the config, or the exit code to leave with: `--check-config`
/// done (0) or a config error (78), which has been printed to stderr.
pub fn bootstrap<C: DaemonConfig>(args: &CommonArgs) -> Result<C, ExitCode> {
    bootstrap_with(args, Vec::new())
}

/// [`bootstrap`] with extra `<PREFIX>_<KEY>` settings that win over the environment (a daemon's
/// own flags, such as pool-exporter's `--web.listen-address`).
pub fn bootstrap_with<C: DaemonConfig>(
    args: &CommonArgs,
    overrides: Vec<(String, String)>,
) -> Result<C, ExitCode> {
    crate::telemetry::init();
    let vars = std::env::vars().chain(overrides);
    match crate::config::load_from::<C>(C::ENV_PREFIX, args.config.as_deref(), vars) {
        Ok(cfg) if args.check_config => match to_masked_toml(&cfg) {
            Ok(text) => {
                print!("{text}");
                Err(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Err(ExitCode::from(EXIT_CONFIG))
            }
        },
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            eprintln!("configuration error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// What a daemon's work gets: the root token, readiness to set, and the registry/routes to fill
/// before the server starts.
pub struct DaemonContext {
    pub cancel: CancellationToken,
    pub readiness: Readiness,
    pub routes: Routes,
}

/// How many threads a daemon's runtime has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One thread for everything: the least memory, for I/O-bound daemons.
    One,
    /// A worker per core.
    PerCore,
}

/// Builds the runtime and runs a daemon: root token from signals, metrics registered by `setup`,
/// `/metrics` served on `listen`, then the work future until it returns (it must return soon after
/// the token is cancelled). `name` is the metric prefix of the build info gauge.
pub fn run_daemon<S, Fut>(
    name: &str,
    version: &str,
    listen: SocketAddr,
    threads: Threads,
    setup: S,
) -> ExitCode
where
    S: FnOnce(&mut DaemonContext) -> anyhow::Result<Fut>,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let Some(rt) = runtime(threads) else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async move {
        let cancel = crate::shutdown::on_signals()?;
        let mut registry = Registry::default();
        crate::metrics::register_build_info(&mut registry, name, version);
        registry.register_collector(Box::new(crate::process::ProcessCollector));
        let readiness = Readiness::default();
        let mut ctx = DaemonContext {
            cancel: cancel.clone(),
            readiness: readiness.clone(),
            routes: Routes::new(registry, readiness),
        };
        let work = setup(&mut ctx)?;
        let listener = crate::http::bind(listen).await?;
        tracing::info!(
            version,
            "{name} started; metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let server = tokio::spawn(crate::http::serve(
            listener,
            Arc::new(ctx.routes),
            cancel.clone(),
        ));
        let outcome = work.await;
        cancel.cancel();
        let _ = server.await;
        outcome
    });
    match result {
        Ok(()) => {
            tracing::info!("{name} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{name} failed: {e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a one-shot CLI command (`show`, `check`, `status`, `backup`...) on a fresh runtime with the
/// root token, and turns its error into exit code 1 with the cause chain printed.
pub fn run_command<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    run_command_on(Threads::PerCore, f)
}

/// [`run_command`] on a runtime of the given size: one thread for a short command run many
/// times (no worker threads to start and hand work between).
pub fn run_command_on<F, Fut>(threads: Threads, f: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let Some(rt) = runtime(threads) else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async move {
        let cancel = match crate::shutdown::on_signals() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        match f(cancel).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn runtime(threads: Threads) -> Option<tokio::runtime::Runtime> {
    let mut b = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    match b.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}
