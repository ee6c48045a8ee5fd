//! Connection settings for PostgreSQL (and PgBouncer's admin console) and Redis, shared by the
//! daemons. `Display` never shows a password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MASK, Secret, resolve_secret};

/// TLS use on a connection (libpq's `sslmode` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it (certificate not checked). Redis connections in this
    /// build never use TLS.
    #[default]
    Prefer,
    /// Refuse to connect without TLS (certificate not checked).
    Require,
    /// TLS, and the server's certificate must chain to a trusted root (`sslrootcert`).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

/// How to reach a PostgreSQL server or a PgBouncer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgSettings {
    /// Host name or IP address. Default `127.0.0.1`.
    pub host: String,
    /// TCP port. Default `5432`.
    pub port: u16,
    /// User name. Default `postgres`.
    pub user: String,
    /// Password. Default none. Prefer `password_file`.
    pub password: Option<Secret>,
    /// File holding the password (docker secrets). Default none.
    pub password_file: Option<PathBuf>,
    /// Database name. Default `postgres`.
    pub dbname: String,
    /// TLS: `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (libpq's meanings).
    /// Default `prefer`.
    pub sslmode: TlsMode,
    /// CA certificates (PEM) that server certificates must chain to, for `verify-ca` and
    /// `verify-full`. Default: the system's roots.
    pub sslrootcert: Option<PathBuf>,
    /// Connect timeout. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Command-line options sent at startup (libpq's `options`, e.g. `-c statement_timeout=5s`).
    /// Default none. PgBouncer refuses it unless `ignore_startup_parameters` lists `options`.
    pub options: Option<String>,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            password_file: None,
            dbname: "postgres".into(),
            sslmode: TlsMode::Prefer,
            sslrootcert: None,
            connect_timeout: Duration::from_secs(10),
            options: None,
        }
    }
}

impl fmt::Display for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pw = if self.password.is_some() || self.password_file.is_some() {
            format!(":{MASK}")
        } else {
            String::new()
        };
        write!(
            f,
            "postgres://{}{pw}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl PgSettings {
    /// Checks what can be checked without connecting. `key` names these settings in the config.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.password(key).map(|_| ())
    }

    /// The password, read from `password_file` when that is set.
    pub fn password(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        resolve_secret(
            &format!("{key}.password"),
            self.password.as_ref(),
            self.password_file.as_deref(),
        )
    }

    /// A tokio-postgres config for these settings.
    pub fn tokio_config(&self, application_name: &str) -> anyhow::Result<tokio_postgres::Config> {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(self.connect_timeout)
            .application_name(application_name)
            .ssl_mode(match self.sslmode {
                TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
                TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
                    tokio_postgres::config::SslMode::Require
                }
            });
        if let Some(pw) = self.password("connection")? {
            c.password(pw.expose());
        }
        if let Some(o) = &self.options {
            c.options(o);
        }
        Ok(c)
    }

    /// libpq environment variables for these settings, for client tools (pg_dump, psql): the
    /// password travels in the environment, never on a command line.
    pub fn libpq_env(&self, application_name: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut env = vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), self.user.clone()),
            ("PGDATABASE".into(), self.dbname.clone()),
            ("PGAPPNAME".into(), application_name.into()),
            (
                "PGCONNECT_TIMEOUT".into(),
                self.connect_timeout.as_secs().max(1).to_string(),
            ),
            (
                "PGSSLMODE".into(),
                match self.sslmode {
                    TlsMode::Disable => "disable",
                    TlsMode::Prefer => "prefer",
                    TlsMode::Require => "require",
                    TlsMode::VerifyCa => "verify-ca",
                    TlsMode::VerifyFull => "verify-full",
                }
                .into(),
            ),
        ];
        if let Some(ca) = &self.sslrootcert {
            env.push(("PGSSLROOTCERT".into(), ca.display().to_string()));
        }
        if let Some(pw) = self.password("connection")? {
            env.push(("PGPASSWORD".into(), pw.expose().to_string()));
        }
        if let Some(o) = &self.options {
            env.push(("PGOPTIONS".into(), o.clone()));
        }
        Ok(env)
    }

    /// The TLS connector for tokio-postgres that `sslmode` and `sslrootcert` ask for.
    pub fn tls(&self) -> anyhow::Result<crate::tls::MakeRustls> {
        let config = crate::tls::pg_config(self.sslmode, self.sslrootcert.as_deref())
            .map_err(|e| anyhow::anyhow!("{self}: TLS settings: {e:#}"))?;
        Ok(crate::tls::MakeRustls::new(config))
    }

    /// Connects with tokio-postgres and drives the connection on a task. Errors name the server.
    pub async fn connect(&self, application_name: &str) -> anyhow::Result<tokio_postgres::Client> {
        let cfg = self.tokio_config(application_name)?;
        let (client, conn) = cfg
            .connect(self.tls()?)
            .await
            .map_err(|e| anyhow::anyhow!("{self}: {}", crate::conn::pg_error_text(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }
}

/// Deserializes a connection table over the defaults of its context: the keys the table gives
/// replace `default`'s, the others keep them. A partial `[targets.admin] host = "pgb"` then still
/// means PgBouncer's admin console (port 6432, its user and dbname), not PostgreSQL's defaults.
/// `default` must not hold a secret (secrets serialize masked).
pub fn overlay<'de, D: serde::Deserializer<'de>>(
    d: D,
    default: PgSettings,
) -> Result<PgSettings, D::Error> {
    use serde::Deserialize;
    let given = <figment::value::Value as Deserialize>::deserialize(d)?;
    figment::Figment::from(figment::providers::Serialized::defaults(default))
        .merge(figment::providers::Serialized::defaults(given))
        .extract_lossy()
        .map_err(|e| {
            serde::de::Error::custom(
                e.into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

/// The most useful text of a tokio-postgres error: the server's message when there is one, else the
/// error and its cause (tokio-postgres' own Display says only "db error").
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

/// How to reach a Redis server or a Sentinel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Host name or IP address. Default `127.0.0.1`.
    pub host: String,
    /// TCP port. Default `6379`.
    pub port: u16,
    /// ACL user name. Default none (the `default` user).
    pub username: Option<String>,
    /// Password. Default none. Prefer `password_file`.
    pub password: Option<Secret>,
    /// File holding the password (docker secrets). Default none.
    pub password_file: Option<PathBuf>,
    /// Database number. Default `0`.
    pub db: i64,
    /// TLS: `disable`, `prefer` or `require`. Default `prefer`.
    pub tls: TlsMode,
    /// Connect and response timeout. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: None,
            password_file: None,
            db: 0,
            tls: TlsMode::Prefer,
            timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Display for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.username.as_deref().unwrap_or("");
        let pw = if self.password.is_some() || self.password_file.is_some() {
            format!("{user}:{MASK}@")
        } else if !user.is_empty() {
            format!("{user}@")
        } else {
            String::new()
        };
        write!(f, "redis://{pw}{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisSettings {
    /// Settings for another node with the same credentials (a replica, the master after failover).
    pub fn at(&self, host: &str, port: u16) -> Self {
        Self {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }

    /// Checks what can be checked without connecting. `key` names these settings in the config.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        resolve_secret(
            &format!("{key}.password"),
            self.password.as_ref(),
            self.password_file.as_deref(),
        )
        .map(|_| ())
    }

    /// A redis client for these settings.
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        if !matches!(self.tls, TlsMode::Disable | TlsMode::Prefer) {
            anyhow::bail!(
                "{self}: tls = {:?} but this build connects to Redis without TLS; use \"prefer\" or \"disable\"",
                self.tls
            );
        }
        let password = resolve_secret(
            "redis.password",
            self.password.as_ref(),
            self.password_file.as_deref(),
        )?;
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(u) = &self.username {
            redis_info = redis_info.set_username(u);
        }
        if let Some(pw) = &password {
            redis_info = redis_info.set_password(pw.expose());
        }
        use redis::IntoConnectionInfo;
        let info = redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()
            .map_err(|e| anyhow::anyhow!("{self}: {e}"))?
            .set_redis_settings(redis_info);
        redis::Client::open(info).map_err(|e| anyhow::anyhow!("{self}: {e}"))
    }

    /// Opens one multiplexed async connection, bounded by `timeout`.
    pub async fn connect(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let client = self.client()?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| anyhow::anyhow!("{self}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_masks_passwords() {
        let pg = PgSettings {
            password: Some(Secret::new("s3cret")),
            ..Default::default()
        };
        let shown = pg.to_string();
        assert_eq!(
            shown,
            format!("postgres://postgres:{MASK}@127.0.0.1:5432/postgres")
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        let r = RedisSettings {
            username: Some("backup".into()),
            password: Some(Secret::new("s3cret")),
            ..Default::default()
        };
        assert_eq!(
            r.to_string(),
            format!("redis://backup:{MASK}@127.0.0.1:6379/0")
        );
        assert!(!format!("{r:?}").contains("s3cret"));
        assert_eq!(
            RedisSettings::default().to_string(),
            "redis://127.0.0.1:6379/0"
        );
    }

    #[test]
    fn sslmodes_parse_as_libpq_spells_them() {
        for (text, mode) in [
            ("disable", TlsMode::Disable),
            ("prefer", TlsMode::Prefer),
            ("require", TlsMode::Require),
            ("verify-ca", TlsMode::VerifyCa),
            ("verify-full", TlsMode::VerifyFull),
        ] {
            let pg: PgSettings = toml::from_str(&format!("sslmode = \"{text}\"")).expect("parses");
            assert_eq!(pg.sslmode, mode);
        }
        let bad = PgSettings {
            sslmode: TlsMode::VerifyFull,
            sslrootcert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = format!("{:#}", bad.tls().err().expect("missing CA file"));
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}

/// A libpq connection string, as `postgres://user:password@host:port/dbname?sslmode=disable` (or
/// `postgresql://`) or as `host=h port=6432 user=u password='p w' dbname=d`, applied over `base`.
/// Keys: host, port, user, password, dbname, sslmode, sslrootcert, connect_timeout (seconds),
/// options; any other is refused, naming it. Percent-escapes are decoded in the URL form; in the
/// key/value form a value may be single-quoted with `\'` and `\\`.
pub fn parse_conninfo(s: &str, base: PgSettings) -> Result<PgSettings, String> {
    let s = s.trim();
    let pairs = match s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    {
        Some(rest) => url_pairs(rest)?,
        None => keyword_pairs(s)?,
    };
    let mut p = base;
    for (k, v) in pairs {
        match k.as_str() {
            "host" if !v.is_empty() => p.host = v,
            "port" if !v.is_empty() => {
                p.port = v
                    .parse()
                    .map_err(|_| format!("port {v:?} is not a port number"))?
            }
            "user" if !v.is_empty() => p.user = v,
            "password" => p.password = Some(Secret::new(v)),
            "dbname" if !v.is_empty() => p.dbname = v,
            "sslmode" => {
                p.sslmode = match v.as_str() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    _ => return Err(format!("sslmode {v:?} is not a libpq sslmode")),
                }
            }
            "sslrootcert" => p.sslrootcert = Some(PathBuf::from(v)),
            "connect_timeout" => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("connect_timeout {v:?} is not a number of seconds"))?;
                p.connect_timeout = Duration::from_secs(secs);
            }
            "options" => p.options = Some(v),
            "host" | "port" | "user" | "dbname" => {}
            other => return Err(format!("unknown connection parameter {other:?}")),
        }
    }
    Ok(p)
}

/// `%XX` escapes decoded (URL userinfo, paths and query values).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// `user:password@host:port/dbname?k=v&k=v` (after the scheme).
fn url_pairs(rest: &str) -> Result<Vec<(String, String)>, String> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut pairs = vec![];
    if let Some(u) = userinfo {
        let (user, pw) = match u.split_once(':') {
            Some((user, pw)) => (user, Some(pw)),
            None => (u, None),
        };
        pairs.push(("user".to_string(), percent_decode(user)?));
        if let Some(pw) = pw.filter(|p| !p.is_empty()) {
            pairs.push(("password".to_string(), percent_decode(pw)?));
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 host in {hostport:?}"))?;
        (
            h.to_string(),
            after.strip_prefix(':').unwrap_or("").to_string(),
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (hostport.to_string(), String::new()),
        }
    };
    pairs.push(("host".to_string(), percent_decode(&host)?));
    pairs.push(("port".to_string(), port));
    pairs.push(("dbname".to_string(), percent_decode(db)?));
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{kv:?} in the query is not key=value"))?;
        pairs.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(pairs)
}

/// `k=v k='quoted \' value'`.
fn keyword_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = vec![];
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "{key:?} is not followed by = in the connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or("a connection string ends in \\")?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quote in the value of {key:?}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod conninfo {
    use super::*;

    #[test]
    fn urls_and_keyword_strings_as_libpq_writes_them() {
        let base = PgSettings::default();
        type Want<'a> = (&'a str, u16, &'a str, Option<&'a str>, &'a str, TlsMode);
        let cases: Vec<(&str, Want)> = vec![
            (
                "postgres://postgres:@localhost:6543/pgbouncer?sslmode=disable",
                (
                    "localhost",
                    6543,
                    "postgres",
                    None,
                    "pgbouncer",
                    TlsMode::Disable,
                ),
            ),
            (
                "postgresql://stats:p%40ss%3Aword@pgb.internal:6432/pgbouncer",
                (
                    "pgb.internal",
                    6432,
                    "stats",
                    Some("p@ss:word"),
                    "pgbouncer",
                    TlsMode::Prefer,
                ),
            ),
            (
                "postgres://u:0042@[::1]:6432/pgbouncer?sslmode=verify-full",
                (
                    "::1",
                    6432,
                    "u",
                    Some("0042"),
                    "pgbouncer",
                    TlsMode::VerifyFull,
                ),
            ),
            (
                "host=pgb port=6432 user=exporter password='it\\'s a \\\\ ok' dbname=pgbouncer sslmode=require",
                (
                    "pgb",
                    6432,
                    "exporter",
                    Some("it's a \\ ok"),
                    "pgbouncer",
                    TlsMode::Require,
                ),
            ),
            (
                "host = pgb dbname=pgbouncer",
                (
                    "pgb",
                    base.port,
                    &base.user,
                    None,
                    "pgbouncer",
                    TlsMode::Prefer,
                ),
            ),
        ];
        for (s, (host, port, user, pw, db, mode)) in cases {
            let p = parse_conninfo(s, base.clone()).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                (
                    p.host.as_str(),
                    p.port,
                    p.user.as_str(),
                    p.password.as_ref().map(Secret::expose),
                    p.dbname.as_str(),
                    p.sslmode
                ),
                (host, port, user, pw, db, mode),
                "{s}"
            );
        }
        for bad in [
            "postgres://h:notaport/db",
            "host=h sslmode=maybe",
            "host=h colour=blue",
            "host='h",
            "postgres://h/db?sslmode",
        ] {
            assert!(parse_conninfo(bad, base.clone()).is_err(), "{bad} accepted");
        }
    }
}
