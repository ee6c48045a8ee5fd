//! Logical PostgreSQL dumps, portable across major versions: `pg_dump -Fc` of each database and
//! `pg_dumpall --globals-only`, each streamed from the tool's stdout through the compressor into
//! storage (never staged on disk), recorded as one catalog entry written last. Restore streams a
//! verified dump into `pg_restore`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use common::catalog::{BackupKind, Manifest, ObjectEntry};
use tokio::io::AsyncReadExt;

use crate::compress::{self, Codec};
use crate::ids::fresh_id;
use crate::storage::{Storage, Stored};

use crate::config::Logical;

impl Logical {
    fn tool(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }
}

/// Where a dump's objects go.
pub fn prefix(id: &str) -> String {
    format!("postgres/logical/{id}/")
}

/// The major version of a client tool (`pg_dump (PostgreSQL) 15.18 (Debian ...)` -> 15).
pub async fn tool_major(tool: &Path) -> anyhow::Result<u32> {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (install the PostgreSQL client tools, or set logical.bin_dir)",
                tool.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_major(&text)
        .ok_or_else(|| anyhow::anyhow!("{}: unexpected --version output {text:?}", tool.display()))
}

fn parse_major(version_output: &str) -> Option<u32> {
    let word = version_output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Refuses tools older than the server: an old pg_dump cannot read a newer catalog.
pub fn check_versions(tool: &str, tool_major: u32, server_num: u32) -> anyhow::Result<()> {
    let server_major = server_num / 10_000;
    if tool_major < server_major {
        anyhow::bail!(
            "{tool} is version {tool_major} but the server is PostgreSQL {server_major}: the client tools must be at least the server's major version (install postgresql-client-{server_major} or set logical.bin_dir)"
        );
    }
    Ok(())
}

/// Dumps the configured databases and the globals; returns the manifest (already stored).
pub async fn backup(ctx: &crate::context::Ctx) -> anyhow::Result<Manifest> {
    let (cfg, storage, codec) = (&ctx.cfg, &ctx.storage, &ctx.codec);
    let l = &cfg.logical;
    let pg = l.postgres.as_ref().unwrap_or(&cfg.postgres);
    let (id, started_at) = fresh_id(storage, BackupKind::PostgresLogical).await?;
    let client = pg.connect("backup-agent").await?;
    let server_num: u32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| anyhow::anyhow!("{pg}: {}", common::conn::pg_error_text(&e)))?
        .get::<_, i32>(0) as u32;
    let mut majors = vec![];
    for t in ["pg_dump", "pg_dumpall"] {
        let m = tool_major(&l.tool(t)).await?;
        check_versions(t, m, server_num)?;
        majors.push(m);
    }
    let databases: Vec<String> = if l.databases.is_empty() {
        client
            .query(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!("{pg}: {}", common::conn::pg_error_text(&e)))?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        l.databases.clone()
    };
    drop(client);
    let env = pg.libpq_env("backup-agent")?;
    let ext = codec.suffix();
    let mut objects = vec![];
    for db in &databases {
        if db.contains('/') || db.is_empty() {
            anyhow::bail!("database name {db:?} cannot be a storage key");
        }
        let key = format!("{}{db}.dump{ext}", prefix(&id));
        let mut cmd = tokio::process::Command::new(l.tool("pg_dump"));
        // -Z0: the archive is compressed once, by us. The name goes in as a quoted conninfo
        // value: a bare `--dbname` holding `=` would be read as a connection string, and a
        // database named `host=elsewhere dbname=x` would send the dump and the password there.
        cmd.args(["--format=custom", "--compress=0", "--dbname"])
            .arg(conninfo_dbname(db))
            .envs(env.iter().map(|(k, v)| (k, v)));
        let stored = dump_to(storage, &key, codec, cmd, &format!("pg_dump of {db}")).await?;
        objects.push(stored);
    }
    // Roles and tablespaces. Reading role passwords needs a superuser; without one, the roles
    // are dumped without their passwords (and the catalog entry says so).
    let key = format!("{}globals.sql{ext}", prefix(&id));
    let mut role_passwords = true;
    let globals = {
        let mut cmd = tokio::process::Command::new(l.tool("pg_dumpall"));
        cmd.arg("--globals-only")
            .envs(env.iter().map(|(k, v)| (k, v)));
        match dump_to(storage, &key, codec, cmd, "pg_dumpall --globals-only").await {
            Ok(s) => s,
            Err(e) if format!("{e:#}").contains("pg_authid") => {
                role_passwords = false;
                let mut cmd = tokio::process::Command::new(l.tool("pg_dumpall"));
                cmd.args(["--globals-only", "--no-role-passwords"])
                    .envs(env.iter().map(|(k, v)| (k, v)));
                dump_to(storage, &key, codec, cmd, "pg_dumpall --globals-only").await?
            }
            Err(e) => return Err(e),
        }
    };
    objects.push(globals);
    let mut m = Manifest {
        id: id.clone(),
        kind: BackupKind::PostgresLogical,
        started_at,
        finished_at: SystemTime::now(),
        system_id: None,
        pg_version: Some(server_num / 10_000),
        timeline: None,
        start_lsn: None,
        end_lsn: None,
        compression: compress::name(cfg.compression.algorithm).into(),
        objects: objects
            .into_iter()
            .map(|s| ObjectEntry {
                key: s.key,
                size: s.size,
                sha256: s.sha256,
            })
            .collect(),
        info: Default::default(),
    };
    m.info.insert("databases".into(), databases.join(","));
    m.info
        .insert("pg_dump_version".into(), majors[0].to_string());
    m.info
        .insert("role_passwords".into(), role_passwords.to_string());
    crate::catalog::record(storage, &m).await?;
    Ok(m)
}

/// Runs `cmd` and streams its stdout through the compressor into object `key`. A tool that fails
/// fails the object (never completed) with the tool's own error text.
async fn dump_to(
    storage: &Storage,
    key: &str,
    codec: &Codec,
    mut cmd: tokio::process::Command,
    what: &str,
) -> anyhow::Result<Stored> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let (mut child, errors) = spawn_tool(cmd, what)?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("{what}: no stdout"))?;
    let mut enc = codec.encoder(storage.create(key).await?)?;
    let copied = tokio::io::copy(&mut stdout, &mut enc).await;
    // A storage error leaves the tool blocked on a full pipe: close it and stop the tool before
    // waiting for it.
    drop(stdout);
    if copied.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await?;
    let errors = errors.await.unwrap_or_default();
    if let Err(e) = copied {
        anyhow::bail!("{what}: storing the dump failed: {e}; {what} was stopped");
    }
    if !status.success() {
        anyhow::bail!("{what} failed ({status}): {}", errors.trim());
    }
    Ok(enc.finish().await?.finish().await?)
}

/// Starts a client tool with its stderr collected (for the error message when it fails); killed
/// if dropped.
fn spawn_tool(
    mut cmd: tokio::process::Command,
    what: &str,
) -> anyhow::Result<(tokio::process::Child, tokio::task::JoinHandle<String>)> {
    cmd.stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!(
            "{what}: cannot run it: {e} (install the PostgreSQL client tools, or set logical.bin_dir)"
        )
    })?;
    let stderr = child.stderr.take();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text).await;
        }
        text
    });
    Ok((child, errors))
}

/// Restores database `database` of dump `id` (default the newest that has it) into the database
/// `dsn` names, with pg_restore. The stored object is verified (size, SHA-256) before pg_restore
/// sees a byte of it.
pub async fn restore(
    ctx: &crate::context::Ctx,
    id: Option<&str>,
    database: &str,
    dsn: &str,
    clean: bool,
) -> anyhow::Result<Manifest> {
    let (cfg, storage) = (&ctx.cfg, &ctx.storage);
    let mut cat = storage.catalog().await?;
    cat.manifests
        .sort_by_key(|m| std::cmp::Reverse(m.finished_at));
    let name = format!("{database}.dump");
    // `<database>.dump` plus exactly a compression suffix.
    let has = |m: &Manifest| {
        m.objects
            .iter()
            .find(|o| {
                let file = o.key.rsplit('/').next().unwrap_or_default();
                file.strip_prefix(name.as_str())
                    .is_some_and(|rest| compress::of_key(rest).is_some() && rest.len() <= 8)
            })
            .cloned()
    };
    let (m, obj) = cat
        .manifests
        .iter()
        .filter(|m| m.kind == BackupKind::PostgresLogical)
        .filter(|m| id.is_none_or(|i| m.id == i))
        .find_map(|m| has(m).map(|o| (m.clone(), o)))
        .ok_or_else(|| match id {
            Some(i) => {
                anyhow::anyhow!("logical dump {i} has no database {database:?} (or does not exist)")
            }
            None => anyhow::anyhow!("no logical dump in the catalog has database {database:?}"),
        })?;
    // Verify first: pg_restore applies as it reads, so damage found at the end would be too late.
    crate::storage::verify_object(storage, &obj)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing was restored"))?;
    let tool = cfg.logical.tool("pg_restore");
    let mut cmd = tokio::process::Command::new(&tool);
    cmd.arg("--exit-on-error").arg("--dbname").arg(dsn);
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null());
    let (mut child, errors) = spawn_tool(cmd, "pg_restore")?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("pg_restore: no stdin"))?;
    let stored = storage.open(&obj.key).await?;
    let mut dec = ctx.reader()?.decoder(&obj.key, stored)?;
    let fed = tokio::io::copy(&mut dec, &mut stdin).await;
    drop(stdin);
    let status = child.wait().await?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        anyhow::bail!(
            "pg_restore of {database} from {} failed ({status}): {}",
            m.id,
            errors.trim()
        );
    }
    fed.map_err(|e| anyhow::anyhow!("feeding pg_restore: {e}"))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dumpall (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("no version here"), None);
        assert_eq!(parse_major("pg_dump (PostgreSQL) 16.2"), Some(16));
        assert!(check_versions("pg_dump", 15, 150_004).is_ok());
        assert!(check_versions("pg_dump", 16, 150_004).is_ok());
        let e = check_versions("pg_dump", 15, 160_001).expect_err("older tool");
        assert!(e.to_string().contains("postgresql-client-16"), "{e}");
    }
}

/// `dbname='<name>'`, quoted as libpq reads a conninfo value (`\\` and `\'` escaped), so the
/// name is only ever a database name.
pub fn conninfo_dbname(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod dbname {
    use super::conninfo_dbname;

    #[test]
    fn names_are_quoted_as_conninfo_values() {
        assert_eq!(conninfo_dbname("app"), "dbname='app'");
        assert_eq!(
            conninfo_dbname("host=evil dbname=x"),
            "dbname='host=evil dbname=x'"
        );
        assert_eq!(conninfo_dbname(r"it's\x"), r"dbname='it\'s\\x'");
        // Parsed back the way libpq does, it is the one key with the whole name.
        let parsed = common::conn::parse_conninfo(
            &conninfo_dbname("host=evil port=1 dbname='x'"),
            common::PgSettings::default(),
        )
        .expect("parses");
        assert_eq!(parsed.dbname, "host=evil port=1 dbname='x'");
        assert_eq!(parsed.host, common::PgSettings::default().host);
    }
}
