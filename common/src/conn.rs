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
