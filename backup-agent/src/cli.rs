//! The command line: the daemon (the default) and the one-shot commands (backup, restore, verify,
//! list, cleanup, keygen, and `wal-fetch`/`wal-prefetch`, which PostgreSQL runs during
//! recovery), each on the job context ([`crate::context::Ctx`]) built for it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::Config;
use crate::context::Ctx;
use crate::restore::Target;
use clap::Parser;
use common::app::CommonArgs;

/// PostgreSQL full backups over the replication protocol, continuous WAL archiving and
/// point-in-time restore; logical dumps; Redis snapshots over the network; verification and
/// restore drills; optional age encryption; to a local directory or S3.
///
/// Configuration: built-in defaults < TOML file (--config or BACKUP_AGENT_CONFIG) < environment
/// (BACKUP_AGENT_<KEY>, nested keys joined by `__`). See docs/backup-agent.md.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon (the default): continuous WAL archiving, the scheduled jobs (`schedule.*`)
    /// and metrics.
    Run,
    /// Run one backup now.
    Backup {
        #[command(subcommand)]
        what: BackupWhat,
    },
    /// List complete backups: id, kind, finished, size, LSN range; the cluster and the window a
    /// point-in-time restore can reach.
    List {
        #[command(flatten)]
        output: common::output::OutputArg,
    },
    /// Restore a backup.
    Restore {
        #[command(subcommand)]
        what: RestoreWhat,
    },
    /// Remove what interrupted uploads left, and backups and WAL past retention (never the newest
    /// `retention.min_full_backups` full backups, nor WAL a kept backup needs).
    Cleanup {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// S3 multipart uploads never completed are aborted once this old (a backup running
        /// now may still complete its own). Local leftovers go as soon as their process is gone.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        leftovers_older_than: std::time::Duration,
    },
    /// Re-read backups from storage and check them: every object's size and SHA-256, a
    /// PostgreSQL full backup's files against the server's backup manifest, a Redis snapshot's
    /// RDB checksum. Exit 0 when all are good, 1 otherwise.
    Verify {
        /// Only this backup (default: every backup in the catalog).
        #[arg(conflicts_with = "restore_drill")]
        id: Option<String>,
        /// Instead: restore the newest full backup and the WAL into a temporary cluster (needs
        /// the PostgreSQL server binaries here), start it, run `drill.query`, record the
        /// result in the catalog and the metrics, remove the cluster. Exit 0 when it passed.
        #[arg(long)]
        restore_drill: bool,
        #[command(flatten)]
        output: common::output::OutputArg,
    },
    /// Print a new age identity for `encryption`: the secret key (keep it off the backup
    /// machine; restore needs it in `encryption.identity_file`) and its public recipient (put it
    /// in `encryption.recipients`). With `--output FILE` the identity goes into a new file of
    /// mode 0600 (never over an existing one) and only the public key is printed.
    Keygen {
        /// Write the identity here (created 0600; refused if it exists).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// PostgreSQL's restore_command: fetch WAL file NAME from storage into PATH, checked
    /// (SHA-256, compression checksum) before it is renamed into place. Exit 0 when written, 1
    /// only when storage says the file does not exist (the end of the archive), 126 for any
    /// other failure (storage unreachable for `restore.wal_fetch_retry`, a damaged object, a
    /// missing key or secret, a bad config): PostgreSQL then stops recovery instead of
    /// promoting.
    ///
    /// Inside a data directory's pg_wal, it also starts the prefetcher (`restore.prefetch`
    /// segments ahead) and hands over segments it has already fetched and checked.
    WalFetch { name: String, path: PathBuf },
    /// The prefetcher `wal-fetch` starts for a recovery in DATA_DIR (not run by hand).
    #[command(hide = true)]
    WalPrefetch {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum BackupWhat {
    /// A full backup over the replication protocol (BASE_BACKUP).
    PostgresFull,
    /// The incremental: switch WAL, create a restore point, check the archived WAL since the
    /// previous backup has no gap, and record it.
    PostgresIncr,
    /// A Redis snapshot pulled over the network (SYNC) from a healthy replica found through
    /// Sentinel (or `redis_snapshot.source = "address"`), checked (CRC64) before it is listed.
    Redis,
    /// A logical dump: `pg_dump -Fc` of each database (`logical.databases`, all by default) and
    /// `pg_dumpall --globals-only`, streamed into storage as one catalog entry.
    PostgresLogical,
}

#[derive(clap::Subcommand, Debug)]
pub enum RestoreWhat {
    /// Restore PostgreSQL into an empty directory, to the latest WAL by default.
    Postgres {
        /// The new data directory (must be empty or missing).
        #[arg(long)]
        target_dir: PathBuf,
        /// Restore this backup (to its consistency point).
        #[arg(long, conflicts_with_all = ["time", "lsn"])]
        backup: Option<String>,
        /// Recover to this time, with its zone: RFC 3339 (2026-11-30T20:15:00Z) or what
        /// PostgreSQL prints ('2026-11-30 20:15:00.123456+00', '... +01:00').
        #[arg(long, conflicts_with = "lsn")]
        time: Option<String>,
        /// Recover to this LSN (e.g. 0/3000028).
        #[arg(long)]
        lsn: Option<String>,
        /// Give the restored directory to this OS user (name or UID:GID). Default: the user
        /// running the restore. PostgreSQL refuses to run as root.
        #[arg(long)]
        owner: Option<String>,
        /// Replay and promote now: a temporary postmaster (as --owner, socket only, no TCP)
        /// recovers to the target, answers a query and stops cleanly. What remains starts on any
        /// stock PostgreSQL of the same major version, without backup-agent.
        #[arg(long)]
        recover: bool,
        /// Where tablespace OID goes (repeatable): OID=DIR. Default: <target-dir>_tblspc_OID.
        #[arg(long, value_name = "OID=DIR")]
        tablespace_map: Vec<String>,
    },
    /// Restore one database of a logical dump with pg_restore (the object is verified first).
    PostgresLogical {
        /// The database of the dump to restore.
        #[arg(long)]
        database: String,
        /// Where to restore it: a libpq connection string or URI naming an existing database
        /// (the password may come from PGPASSWORD or ~/.pgpass).
        #[arg(long)]
        dsn: String,
        /// This dump (default: the newest that has the database).
        #[arg(long)]
        backup: Option<String>,
        /// Drop the dump's objects in the target before recreating them.
        #[arg(long)]
        clean: bool,
    },
    /// Write a verified dump.rdb into a directory, for a stopped Redis to load.
    Redis {
        /// The directory (Redis's `dir`); an existing dump.rdb is never replaced.
        #[arg(long)]
        target_dir: PathBuf,
        /// This snapshot (default: the newest).
        #[arg(long)]
        backup: Option<String>,
    },
}

/// Parses the command line and runs what it asks for: the daemon, or one command.
pub fn main() -> ExitCode {
    // wal-fetch runs as PostgreSQL's restore_command: any failure that is not "the archive has no
    // such file" (exit 1) must stop recovery (exit 126), a mangled command line or a bad config
    // included.
    let fatal = || ExitCode::from(crate::pg::fetch::EXIT_FATAL);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "wal-fetch") => {
            let _ = e.print();
            return fatal();
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                common::app::EXIT_USAGE
            } else {
                0
            });
        }
    };
    let wal_fetch = matches!(cli.cmd, Some(Cmd::WalFetch { .. })) && !cli.common.check_config;
    // wal-fetch's spool (when its destination is in a data directory's pg_wal), looked up once.
    let spool = match &cli.cmd {
        Some(Cmd::WalFetch { path, .. }) if wal_fetch => crate::pg::prefetch::Spool::for_dest(path),
        _ => None,
    };
    if let (Some(Cmd::WalFetch { name, path }), Some(s)) = (&cli.cmd, &spool)
        && let Some(code) = served_wal_fetch(s, name, path, cli.common.config.as_deref())
    {
        return code;
    }
    let cfg: Config = match common::app::bootstrap(&cli.common) {
        Ok(c) => c,
        Err(_) if wal_fetch => return fatal(),
        Err(code) => return code,
    };
    let config_path = cli.common.config.clone();
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Run => common::app::run_daemon(
            "backup_agent",
            env!("CARGO_PKG_VERSION"),
            cfg.listen,
            common::app::Threads::PerCore,
            |ctx| crate::daemon(cfg, config_path, ctx),
        ),
        Cmd::Backup {
            what: BackupWhat::PostgresFull,
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_command(cfg, cancel).await?;
            let m = crate::jobs::postgres_full(&ctx).await?;
            println!(
                "{} postgres-full {} bytes {}..{}",
                m.id,
                m.size(),
                m.start_lsn.unwrap_or_default(),
                m.end_lsn.unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Backup {
            what: BackupWhat::PostgresIncr,
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_command(cfg, cancel).await?;
            let m = crate::jobs::postgres_incr(&ctx).await?;
            println!(
                "{} postgres-incr {}..{}",
                m.id,
                m.start_lsn.unwrap_or_default(),
                m.end_lsn.unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Backup {
            what: BackupWhat::Redis,
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_command(cfg, cancel).await?;
            let m = crate::jobs::redis(&ctx).await?;
            let info = |k: &str| m.info.get(k).map(String::as_str).unwrap_or("-");
            println!(
                "{} redis {} bytes from {} ({}), server wait {} ms, transfer {} ms",
                m.id,
                m.size(),
                info("source"),
                info("source_role"),
                info("server_wait_ms"),
                info("transfer_ms")
            );
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Backup {
            what: BackupWhat::PostgresLogical,
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_command(cfg, cancel).await?;
            let m = crate::jobs::postgres_logical(&ctx).await?;
            println!(
                "{} postgres-logical {} bytes, databases {}",
                m.id,
                m.size(),
                m.info.get("databases").map(String::as_str).unwrap_or("-")
            );
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Restore {
            what:
                RestoreWhat::PostgresLogical {
                    database,
                    dsn,
                    backup,
                    clean,
                },
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_reading(cfg, cancel).await?;
            let m =
                crate::logical::restore(&ctx, backup.as_deref(), &database, &dsn, clean).await?;
            println!("restored database {database} from logical dump {}", m.id);
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Restore {
            what: RestoreWhat::Redis { target_dir, backup },
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_reading(cfg, cancel).await?;
            let (m, info) = crate::redis_snapshot::restore(
                &ctx.storage,
                &ctx.reader()?,
                backup.as_deref(),
                &target_dir,
            )
            .await?;
            let databases = info.walked.as_ref().map_or(16, |w| w.databases.max(16));
            println!(
                "restored Redis snapshot {} into {} ({} bytes, RDB version {}, {}, walked: {}); \
                 start Redis with dir {} and dbfilename dump.rdb (appendonly no{}) to load it",
                m.id,
                target_dir.join("dump.rdb").display(),
                info.size,
                info.version,
                if info.checksummed {
                    "checksum verified"
                } else {
                    "written without a checksum"
                },
                crate::redis_snapshot::walked_summary(&info),
                target_dir.display(),
                if databases > 16 {
                    format!(", databases {databases} or more")
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Verify {
            restore_drill: true,
            ..
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_command(cfg, cancel).await?;
            let fetcher = crate::restore::Fetcher::current(config_path.as_deref())?;
            let d = crate::jobs::drill(&ctx, &fetcher).await?;
            println!(
                "restore drill {} of backup {} passed: {}",
                d.id, d.backup_id, d.detail
            );
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Verify { id, output, .. } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_reading(cfg, cancel).await?;
            crate::report::verify(&ctx, id.as_deref(), output).await
        }),
        Cmd::Keygen { output } => {
            let (secret, public) = crate::crypt::generate();
            match output {
                None => {
                    println!("# public key (encryption.recipients): {public}\n{secret}");
                    ExitCode::SUCCESS
                }
                Some(path) => match crate::crypt::write_identity(&path, &secret, &public) {
                    Ok(()) => {
                        println!("{public}");
                        eprintln!(
                            "identity written to {} (mode 0600); the line above is its public key",
                            path.display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                },
            }
        }
        Cmd::List { output } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_reading(cfg, cancel).await?;
            crate::report::list(&ctx, output).await
        }),
        Cmd::Restore {
            what:
                RestoreWhat::Postgres {
                    target_dir,
                    backup,
                    time,
                    lsn,
                    owner,
                    recover,
                    tablespace_map,
                },
        } => common::app::run_command(|cancel| async move {
            let target = match (backup, time, lsn) {
                (Some(id), _, _) => Target::Backup(id),
                (_, Some(t), _) => Target::Time(crate::restore::parse_time(&t)?),
                (_, _, Some(l)) => Target::Lsn(l),
                _ => Target::Latest,
            };
            let mut tablespaces = std::collections::HashMap::new();
            for m in &tablespace_map {
                let (oid, dir) = m
                    .split_once('=')
                    .and_then(|(o, d)| Some((o.parse::<u32>().ok()?, PathBuf::from(d))))
                    .ok_or_else(|| anyhow::anyhow!("--tablespace-map {m:?}: give OID=DIR"))?;
                tablespaces.insert(oid, dir);
            }
            let ctx = Ctx::for_reading(cfg, cancel).await?;
            let opts = crate::restore::Options {
                target,
                dir: target_dir.clone(),
                owner,
                tablespaces,
                recover,
            };
            let fetcher = crate::restore::Fetcher::current(config_path.as_deref())?;
            let r =
                crate::restore::restore(&ctx.cfg, &ctx.storage, &ctx.reader()?, &opts, &fetcher)
                    .await?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            match &r.recovered {
                Some(rec) => println!(
                    "restored {} into {}; {rec}; stopped cleanly: start PostgreSQL on it",
                    r.backup.id,
                    target_dir.display()
                ),
                None => println!(
                    "restored {} into {}; start PostgreSQL on it to recover (restore_command runs backup-agent wal-fetch)",
                    r.backup.id,
                    target_dir.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Cleanup {
            dry_run,
            leftovers_older_than,
        } => common::app::run_command(|cancel| async move {
            let ctx = Ctx::for_command(cfg, cancel).await?;
            for key in crate::jobs::cleanup(&ctx, dry_run, leftovers_older_than).await? {
                println!(
                    "{}{key}",
                    if dry_run { "would remove " } else { "removed " }
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::WalFetch { name, path } => {
            use crate::pg::prefetch::is_segment_name;
            // The prefetch spool first: no runtime, no storage client for a segment already
            // fetched and checked.
            let spool = spool.filter(|_| cfg.restore.prefetch > 0 && is_segment_name(&name));
            if let Some(s) = &spool
                && s.take(&name, &path, cfg.restore.wal_fetch_retry)
            {
                s.handed_over(&name, &path, config_path.as_deref());
                return ExitCode::SUCCESS;
            }
            // The first call of a recovery: the prefetcher starts now, from the backup's first
            // segment, while this call fetches its own.
            if let Some(s) = spool.as_ref().filter(|s| s.at_start())
                && let Err(e) = std::env::current_exe()
                    .and_then(|exe| s.ensure_prefetcher(&exe, config_path.as_deref()))
            {
                eprintln!("wal-fetch {name}: prefetch off: {e}");
            }
            // One thread: PostgreSQL runs this once per WAL file.
            common::app::run_command_on(common::app::Threads::One, |cancel| async move {
                use crate::pg::fetch::{EXIT_ABSENT, EXIT_FATAL, FetchError, Fetched, fetch};
                let retry = cfg.restore.wal_fetch_retry;
                let r = async {
                    let fatal = |e: anyhow::Error| FetchError::Fatal(format!("{e:#}"));
                    let ctx = Ctx::for_reading(cfg, cancel).await.map_err(fatal)?;
                    let codec = ctx.reader().map_err(fatal)?;
                    fetch(&ctx.storage, &codec, &name, &path, retry).await
                }
                .await;
                Ok(match r {
                    Ok(Fetched::Written(key)) => {
                        if let Some(s) = &spool
                            && !key.contains(".partial")
                        {
                            s.handed_over(&name, &path, config_path.as_deref());
                        }
                        ExitCode::SUCCESS
                    }
                    Ok(Fetched::Absent) => ExitCode::from(EXIT_ABSENT),
                    Err(e) => {
                        eprintln!("wal-fetch {name}: {e}; exit {EXIT_FATAL}: recovery stops here");
                        ExitCode::from(EXIT_FATAL)
                    }
                })
            })
        }
        Cmd::WalPrefetch { data_dir } => common::app::run_command(|cancel| async move {
            let spool = crate::pg::prefetch::Spool::of_data_dir(&data_dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", data_dir.display()))?;
            let depth = cfg.restore.prefetch;
            let ctx = Ctx::for_reading(cfg, cancel.clone()).await?;
            crate::pg::prefetch::run(&spool, &ctx.storage, &ctx.reader()?, depth, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// `wal-fetch` in a spool the restore process serves (`restore --recover`, drills): every file
/// comes through the spool, fetched with that process's rights; this process reads neither
/// storage nor its settings (PostgreSQL's user may have no right to either). `None`: not
/// served, fetch as usual.
fn served_wal_fetch(
    spool: &crate::pg::prefetch::Spool,
    name: &str,
    path: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Option<ExitCode> {
    use crate::pg::fetch::{EXIT_ABSENT, EXIT_FATAL};
    use crate::pg::prefetch::{Answer, is_segment_name};
    let wait = spool.served_wait()?;
    Some(match spool.ask(name, path, wait) {
        Answer::Placed => {
            if is_segment_name(name) {
                spool.handed_over(name, path, config);
            }
            ExitCode::SUCCESS
        }
        Answer::Absent => ExitCode::from(EXIT_ABSENT),
        Answer::Failed(e) => {
            eprintln!("wal-fetch {name}: {e}; exit {EXIT_FATAL}: recovery stops here");
            ExitCode::from(EXIT_FATAL)
        }
    })
}
