//! The PgBouncer admin console: connect (errors that say what to fix), run `SHOW ...` with the
//! simple query protocol, and read the result by column name.

use std::fmt;
use std::time::Duration;

use common::PgSettings;
use tokio_postgres::SimpleQueryMessage;

/// The result of one `SHOW`: column names and rows of text, NULL kept apart from "". The cells
/// live in one buffer (a SHOW CLIENTS of 500 clients is 9000 cells; one allocation, not 9000).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    buf: String,
    /// Per cell, row-major: its range in `buf`, or `None` for NULL.
    cells: Vec<Option<(u32, u32)>>,
}

impl Rows {
    pub fn new(columns: Vec<String>) -> Self {
        Self {
            columns,
            ..Self::default()
        }
    }

    /// Appends a row; cells beyond the columns are dropped, missing ones are NULL.
    pub fn push_row<'a>(&mut self, cells: impl IntoIterator<Item = Option<&'a str>>) {
        let n = self.columns.len();
        let mut added = 0;
        for c in cells.into_iter().take(n) {
            self.cells.push(c.map(|v| {
                let start = self.buf.len() as u32;
                self.buf.push_str(v);
                (start, self.buf.len() as u32)
            }));
            added += 1;
        }
        self.cells.extend(std::iter::repeat_n(None, n - added));
    }

    pub fn len(&self) -> usize {
        self.cells
            .len()
            .checked_div(self.columns.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of a column, by name.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    fn cell(&self, row: usize, col: usize) -> Option<&str> {
        let (a, b) = (*self.cells.get(row * self.columns.len() + col)?)?;
        self.buf.get(a as usize..b as usize)
    }

    /// Each row as a [`Row`] for lookups by name.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.len()).map(move |i| Row { rows: self, i })
    }

    /// Every row as text cells (NULL as ""), for tables printed to people.
    pub fn text_rows(&self) -> Vec<Vec<String>> {
        (0..self.len())
            .map(|r| {
                (0..self.columns.len())
                    .map(|c| self.cell(r, c).unwrap_or("").to_string())
                    .collect()
            })
            .collect()
    }

    /// Parses `psql -A -F'|' -P footer=off -P null='<NULL>'` output (header line, then rows): the
    /// form recorded fixtures are kept in.
    pub fn from_psql(text: &str) -> Self {
        let mut lines = text.lines().filter(|l| !l.is_empty());
        let mut rows = Self::new(
            lines
                .next()
                .map(|h| h.split('|').map(str::to_string).collect())
                .unwrap_or_default(),
        );
        for l in lines {
            rows.push_row(l.split('|').map(|v| (v != "<NULL>").then_some(v)));
        }
        rows
    }
}

/// One row of [`Rows`].
#[derive(Clone, Copy)]
pub struct Row<'a> {
    rows: &'a Rows,
    i: usize,
}

impl<'a> Row<'a> {
    /// The value of a column: `None` when the column does not exist in this release or is NULL.
    pub fn get(&self, column: &str) -> Option<&'a str> {
        self.rows.cell(self.i, self.rows.col(column)?)
    }

    /// The first of several column names (renamed across releases) that this release has.
    pub fn get_any(&self, columns: &[&str]) -> Option<&'a str> {
        columns.iter().find_map(|c| self.get(c))
    }

    /// The value at a column index found once with [`Rows::col`] (the hot path of a scrape).
    pub fn at(&self, col: Option<usize>) -> Option<&'a str> {
        self.rows.cell(self.i, col?)
    }
}

/// Why the admin console could not be used. The message says what to fix.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminError {
    WrongPassword { user: String },
    NotAllowed { user: String },
    StartupParameter { parameter: String },
    Refused { addr: String },
    Timeout { after: Duration },
    Server { message: String },
    Connection { message: String },
}

impl AdminError {
    /// Whether the connection is unusable afterwards (reconnect on the next scrape).
    pub fn breaks_connection(&self) -> bool {
        !matches!(self, Self::Server { .. })
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPassword { user } => write!(
                f,
                "wrong password for user {user} (check the password and PgBouncer's auth_file)"
            ),
            Self::NotAllowed { user } => write!(
                f,
                "user {user} may not use the admin console: add it to stats_users (or admin_users) in pgbouncer.ini"
            ),
            Self::StartupParameter { parameter } => write!(
                f,
                "PgBouncer refused the startup parameter {parameter}: remove it from the exporter's \
                 config or add it to ignore_startup_parameters in pgbouncer.ini"
            ),
            Self::Refused { addr } => {
                write!(f, "connection refused by {addr} (is PgBouncer running?)")
            }
            Self::Timeout { after } => write!(f, "no answer within {after:?}"),
            Self::Server { message } => write!(f, "PgBouncer error: {message}"),
            Self::Connection { message } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for AdminError {}

/// Classifies a tokio-postgres error from PgBouncer.
pub fn classify(e: &tokio_postgres::Error, settings: &PgSettings) -> AdminError {
    if let Some(db) = e.as_db_error() {
        let msg = db.message();
        if let Some(p) = msg.strip_prefix("unsupported startup parameter: ") {
            return AdminError::StartupParameter {
                parameter: p.trim().to_string(),
            };
        }
        if msg.contains("password authentication failed")
            || msg.contains("SASL authentication failed")
        {
            return AdminError::WrongPassword {
                user: settings.user.clone(),
            };
        }
        if msg == "not allowed" || msg.contains("admin access needed") {
            return AdminError::NotAllowed {
                user: settings.user.clone(),
            };
        }
        return AdminError::Server {
            message: format!("{}: {msg}", db.severity()),
        };
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return AdminError::Refused {
                addr: format!("{}:{}", settings.host, settings.port),
            };
        }
        src = s.source();
    }
    AdminError::Connection {
        message: common::conn::pg_error_text(e),
    }
}

/// An open admin console connection.
pub struct Admin {
    client: tokio_postgres::Client,
    settings: PgSettings,
}

impl Admin {
    /// Connects and authenticates. Bounded by the settings' connect timeout.
    pub async fn connect(settings: &PgSettings) -> Result<Self, AdminError> {
        let cfg = settings
            .tokio_config("pool-exporter")
            .map_err(|e| AdminError::Connection {
                message: e.to_string(),
            })?;
        let tls = settings.tls().map_err(|e| AdminError::Connection {
            message: format!("{e:#}"),
        })?;
        let connect = cfg.connect(tls);
        let (client, conn) = match tokio::time::timeout(settings.connect_timeout, connect).await {
            Err(_) => {
                return Err(AdminError::Timeout {
                    after: settings.connect_timeout,
                });
            }
            Ok(Err(e)) => return Err(classify(&e, settings)),
            Ok(Ok(c)) => c,
        };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("admin connection ended: {e}");
            }
        });
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    /// Runs `SHOW <what>`.
    pub async fn show(&self, what: &str) -> Result<Rows, AdminError> {
        let msgs = self
            .client
            .simple_query(&format!("SHOW {what}"))
            .await
            .map_err(|e| classify(&e, &self.settings))?;
        let mut out = Rows::default();
        for m in msgs {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    out = Rows::new(cols.iter().map(|c| c.name().to_string()).collect());
                }
                SimpleQueryMessage::Row(r) => {
                    if out.columns.is_empty() {
                        out = Rows::new(r.columns().iter().map(|c| c.name().to_string()).collect());
                    }
                    out.push_row((0..r.len()).map(|i| r.get(i)));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_by_name_with_null_and_missing_columns() {
        let r = Rows::from_psql("name|host|reserve_pool\napp|<NULL>|5\n");
        let row = r.iter().next().expect("one row");
        assert_eq!(row.get("name"), Some("app"));
        assert_eq!(row.get("host"), None, "NULL is absent");
        assert_eq!(
            row.get("load_balance_hosts"),
            None,
            "missing column is absent"
        );
        assert_eq!(
            row.get_any(&["reserve_pool_size", "reserve_pool"]),
            Some("5")
        );
    }

    #[test]
    fn messages_say_what_to_fix() {
        let e = AdminError::StartupParameter {
            parameter: "extra_float_digits".into(),
        };
        assert!(e.to_string().contains("ignore_startup_parameters"));
        assert!(e.to_string().contains("extra_float_digits"));
        let e = AdminError::NotAllowed { user: "x".into() };
        assert!(e.to_string().contains("stats_users"));
    }
}
