//! From the rows of one PgBouncer's `SHOW` commands to metric families, with the names, labels and
//! units of prometheus-community/pgbouncer_exporter 0.12.
//!
//! Columns are looked up by name: a column this release lacks yields no series, an unknown column is
//! ignored, NULL is absent (no series for a value; an empty label for a label).

use std::collections::BTreeMap;

use crate::admin::{Row, Rows};
use crate::exposition::{Families, Family, Kind, LabelSet};

/// The `SHOW` commands a scrape runs, in order. `None` where the command failed.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub version: Option<Rows>,
    pub databases: Option<Rows>,
    pub stats_totals: Option<Rows>,
    pub pools: Option<Rows>,
    pub lists: Option<Rows>,
    pub config: Option<Rows>,
    pub clients: Option<Rows>,
    pub servers: Option<Rows>,
    pub mem: Option<Rows>,
    pub users: Option<Rows>,
}

/// The commands, by the name used in `SHOW` and in [`Snapshot`].
pub const COMMANDS: [&str; 10] = [
    "VERSION",
    "DATABASES",
    "STATS_TOTALS",
    "POOLS",
    "LISTS",
    "CONFIG",
    "CLIENTS",
    "SERVERS",
    "MEM",
    "USERS",
];

impl Snapshot {
    /// The slot of a command of [`COMMANDS`].
    pub fn slot(&mut self, command: &str) -> Option<&mut Option<Rows>> {
        Some(match command {
            "VERSION" => &mut self.version,
            "DATABASES" => &mut self.databases,
            "STATS_TOTALS" => &mut self.stats_totals,
            "POOLS" => &mut self.pools,
            "LISTS" => &mut self.lists,
            "CONFIG" => &mut self.config,
            "CLIENTS" => &mut self.clients,
            "SERVERS" => &mut self.servers,
            "MEM" => &mut self.mem,
            "USERS" => &mut self.users,
            _ => return None,
        })
    }
}

/// A value column turned into a metric: the first present of `columns` (renames), times `factor`.
struct Col {
    columns: &'static [&'static str],
    name: &'static str,
    kind: Kind,
    factor: f64,
    help: &'static str,
}

const fn gauge(columns: &'static [&'static str], name: &'static str, help: &'static str) -> Col {
    Col {
        columns,
        name,
        kind: Kind::Gauge,
        factor: 1.0,
        help,
    }
}

const fn counter(
    columns: &'static [&'static str],
    name: &'static str,
    factor: f64,
    help: &'static str,
) -> Col {
    Col {
        columns,
        name,
        kind: Kind::Counter,
        factor,
        help,
    }
}

const US: f64 = 1e-6;

const DATABASE_LABELS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_mode",
];
const DATABASES: &[Col] = &[
    gauge(
        &["pool_size"],
        "pgbouncer_databases_pool_size",
        "Maximum number of server connections",
    ),
    gauge(
        &["reserve_pool", "reserve_pool_size"],
        "pgbouncer_databases_reserve_pool",
        "Maximum number of additional connections for this database",
    ),
    gauge(
        &["max_connections"],
        "pgbouncer_databases_max_connections",
        "Maximum number of allowed connections for this database",
    ),
    gauge(
        &["current_connections"],
        "pgbouncer_databases_current_connections",
        "Current number of connections for this database",
    ),
    gauge(
        &["paused"],
        "pgbouncer_databases_paused",
        "1 if this database is currently paused, else 0",
    ),
    gauge(
        &["disabled"],
        "pgbouncer_databases_disabled",
        "1 if this database is currently disabled, else 0",
    ),
];

const STATS_LABELS: &[&str] = &["database"];
const STATS_TOTALS: &[Col] = &[
    counter(
        &["query_count"],
        "pgbouncer_stats_totals_queries_pooled_total",
        1.0,
        "Total number of SQL queries pooled",
    ),
    counter(
        &["query_time"],
        "pgbouncer_stats_totals_queries_duration_seconds_total",
        US,
        "Total number of seconds spent by pgbouncer when actively connected to PostgreSQL, executing queries",
    ),
    counter(
        &["bytes_received", "received"],
        "pgbouncer_stats_totals_received_bytes_total",
        1.0,
        "Total volume in bytes of network traffic received by pgbouncer, shown as bytes",
    ),
    // `requests` was renamed `query_count` in PgBouncer 1.8; the Go exporter still reads the old
    // name, so its dashboards' queries_total is fed from query_count here.
    counter(
        &["requests", "query_count"],
        "pgbouncer_stats_totals_queries_total",
        1.0,
        "Total number of SQL requests pooled by pgbouncer, shown as requests",
    ),
    counter(
        &["bytes_sent", "sent"],
        "pgbouncer_stats_totals_sent_bytes_total",
        1.0,
        "Total volume in bytes of network traffic sent by pgbouncer, shown as bytes",
    ),
    counter(
        &["wait_time"],
        "pgbouncer_stats_totals_client_wait_seconds_total",
        US,
        "Time spent by clients waiting for a server in seconds",
    ),
    counter(
        &["xact_count"],
        "pgbouncer_stats_totals_sql_transactions_pooled_total",
        1.0,
        "Total number of SQL transactions pooled",
    ),
    counter(
        &["xact_time"],
        "pgbouncer_stats_totals_server_in_transaction_seconds_total",
        US,
        "Total number of seconds spent by pgbouncer when connected to PostgreSQL in a transaction, either idle in transaction or executing queries",
    ),
    counter(
        &["client_parse_count"],
        "pgbouncer_stats_totals_client_parses_total",
        1.0,
        "Total number of prepared statement Parse messages received from clients",
    ),
    counter(
        &["server_parse_count"],
        "pgbouncer_stats_totals_server_parses_total",
        1.0,
        "Total number of prepared statement Parse messages sent by pgbouncer to PostgreSQL",
    ),
    counter(
        &["bind_count"],
        "pgbouncer_stats_totals_binds_total",
        1.0,
        "Total number of prepared statements readied for execution with a Bind message",
    ),
    counter(
        &["server_assignment_count"],
        "pgbouncer_stats_totals_server_assignments_total",
        1.0,
        "Total number of times a server connection was assigned to a client",
    ),
];

const POOL_LABELS: &[&str] = &["database", "user"];
const POOLS: &[Col] = &[
    gauge(
        &["cl_active"],
        "pgbouncer_pools_client_active_connections",
        "Client connections linked to server connection and able to process queries, shown as connection",
    ),
    gauge(
        &["cl_active_cancel_req"],
        "pgbouncer_pools_client_active_cancel_connections",
        "Client connections that have forwarded query cancellations to the server and are waiting for the server response",
    ),
    gauge(
        &["cl_waiting"],
        "pgbouncer_pools_client_waiting_connections",
        "Client connections waiting on a server connection, shown as connection",
    ),
    gauge(
        &["cl_waiting_cancel_req"],
        "pgbouncer_pools_client_waiting_cancel_connections",
        "Client connections that have not forwarded query cancellations to the server yet",
    ),
    gauge(
        &["sv_active"],
        "pgbouncer_pools_server_active_connections",
        "Server connections linked to a client connection, shown as connection",
    ),
    gauge(
        &["sv_active_cancel"],
        "pgbouncer_pools_server_active_cancel_connections",
        "Server connections that are currently forwarding a cancel request",
    ),
    gauge(
        &["sv_being_canceled"],
        "pgbouncer_pools_server_being_canceled_connections",
        "Servers that could become idle but wait until all in-flight cancel requests sent to cancel a query on them have completed",
    ),
    gauge(
        &["sv_idle"],
        "pgbouncer_pools_server_idle_connections",
        "Server connections idle and ready for a client query, shown as connection",
    ),
    gauge(
        &["sv_used"],
        "pgbouncer_pools_server_used_connections",
        "Server connections idle more than server_check_delay, needing server_check_query, shown as connection",
    ),
    gauge(
        &["sv_tested"],
        "pgbouncer_pools_server_testing_connections",
        "Server connections currently running either server_reset_query or server_check_query, shown as connection",
    ),
    gauge(
        &["sv_login"],
        "pgbouncer_pools_server_login_connections",
        "Server connections currently in the process of logging in, shown as connection",
    ),
];
const MAXWAIT: &str = "pgbouncer_pools_client_maxwait_seconds";
const MAXWAIT_HELP: &str =
    "Age of oldest unserved client connection, shown as second (microsecond precision)";

/// SHOW LISTS rows -> (list name, metric, help).
const LISTS: &[(&str, &str, &str)] = &[
    ("databases", "pgbouncer_databases", "Count of databases"),
    ("users", "pgbouncer_users", "Count of users"),
    ("pools", "pgbouncer_pools", "Count of pools"),
    (
        "free_clients",
        "pgbouncer_free_clients",
        "Count of free clients",
    ),
    (
        "used_clients",
        "pgbouncer_used_clients",
        "Count of used clients",
    ),
    (
        "login_clients",
        "pgbouncer_login_clients",
        "Count of clients in login state",
    ),
    (
        "free_servers",
        "pgbouncer_free_servers",
        "Count of free servers",
    ),
    (
        "used_servers",
        "pgbouncer_used_servers",
        "Count of used servers",
    ),
    (
        "dns_names",
        "pgbouncer_cached_dns_names",
        "Count of DNS names in the cache",
    ),
    (
        "dns_zones",
        "pgbouncer_cached_dns_zones",
        "Count of DNS zones in the cache",
    ),
    (
        "dns_queries",
        "pgbouncer_in_flight_dns_queries",
        "Count of in-flight DNS queries",
    ),
];

/// SHOW CONFIG keys -> (metric, help).
const CONFIG: &[(&str, &str, &str)] = &[
    (
        "max_client_conn",
        "pgbouncer_config_max_client_connections",
        "Config maximum number of client connections",
    ),
    (
        "max_user_connections",
        "pgbouncer_config_max_user_connections",
        "Config maximum number of server connections per user",
    ),
];

const MEM: &[Col] = &[
    gauge(
        &["size"],
        "pgbouncer_mem_item_size_bytes",
        "Size of one item of this slab cache",
    ),
    gauge(
        &["used"],
        "pgbouncer_mem_used_items",
        "Items of this slab cache in use",
    ),
    gauge(
        &["free"],
        "pgbouncer_mem_free_items",
        "Free items of this slab cache",
    ),
    gauge(
        &["memtotal"],
        "pgbouncer_mem_total_bytes",
        "Memory held by this slab cache",
    ),
];

const USER_LABELS: &[&str] = &["name"];
const USERS: &[Col] = &[
    gauge(
        &["pool_size"],
        "pgbouncer_users_pool_size",
        "Pool size set for this user",
    ),
    gauge(
        &["reserve_pool_size"],
        "pgbouncer_users_reserve_pool_size",
        "Reserve pool size set for this user",
    ),
    gauge(
        &["max_user_connections"],
        "pgbouncer_users_max_connections",
        "Maximum server connections for this user",
    ),
    gauge(
        &["current_connections"],
        "pgbouncer_users_current_connections",
        "Current server connections of this user",
    ),
    gauge(
        &["max_user_client_connections"],
        "pgbouncer_users_max_client_connections",
        "Maximum client connections for this user",
    ),
    gauge(
        &["current_client_connections"],
        "pgbouncer_users_current_client_connections",
        "Current client connections of this user",
    ),
];

const VERSION: &str = "pgbouncer_version_info";
const CLIENTS: &str = "pgbouncer_client_connections";
const SERVERS: &str = "pgbouncer_server_connections";

/// Every family name this module can produce (docs and tests check against it).
pub fn family_names() -> Vec<&'static str> {
    let mut v = vec![VERSION];
    v.extend(DATABASES.iter().map(|c| c.name));
    v.extend(STATS_TOTALS.iter().map(|c| c.name));
    v.extend(POOLS.iter().map(|c| c.name));
    v.push(MAXWAIT);
    v.extend(LISTS.iter().map(|l| l.1));
    v.extend(CONFIG.iter().map(|c| c.1));
    v.push(CLIENTS);
    v.push(SERVERS);
    v.extend(MEM.iter().map(|c| c.name));
    v.extend(USERS.iter().map(|c| c.name));
    v
}

fn num(v: Option<&str>) -> Option<f64> {
    v?.trim().parse::<f64>().ok()
}

/// Label columns resolved to indexes once per table: (label name, column index).
fn label_columns<'a>(
    rows: &Rows,
    columns: &[&'a str],
    rename: &[(&str, &'a str)],
) -> Vec<(&'a str, Option<usize>)> {
    columns
        .iter()
        .map(|c| {
            let key = rename
                .iter()
                .find(|(from, _)| from == c)
                .map_or(*c, |(_, to)| *to);
            (key, rows.col(c))
        })
        .collect()
}

/// Labels of one row: `base` (the target's labels) then each label column's value ("" for NULL).
fn row_labels(base: &LabelSet, row: &Row<'_>, labels: &[(&str, Option<usize>)]) -> LabelSet {
    base.with(labels.iter().map(|(k, i)| (*k, row.at(*i).unwrap_or(""))))
}

/// One family per [`Col`], one series per row where the column is present and numeric.
fn table(
    out: &mut Families,
    rows: Option<&Rows>,
    base: &LabelSet,
    label_cols: &[&str],
    rename: &[(&str, &str)],
    cols: &[Col],
) {
    let Some(rows) = rows else { return };
    let labels = label_columns(rows, label_cols, rename);
    let value_cols: Vec<Option<usize>> = cols
        .iter()
        .map(|c| c.columns.iter().find_map(|n| rows.col(n)))
        .collect();
    let mut fams: Vec<Family> = cols
        .iter()
        .map(|c| Family::new(c.name, c.help, c.kind))
        .collect();
    for fam in &mut fams {
        fam.samples.reserve(rows.len());
    }
    for row in rows.iter() {
        let l = row_labels(base, &row, &labels);
        for ((c, fam), idx) in cols.iter().zip(fams.iter_mut()).zip(&value_cols) {
            if let Some(v) = num(row.at(*idx)) {
                fam.samples.push((l.clone(), v * c.factor));
            }
        }
    }
    out.extend(fams);
}

/// Counts rows grouped by the given columns.
fn counts(
    out: &mut Families,
    rows: Option<&Rows>,
    base: &LabelSet,
    name: &'static str,
    help: &'static str,
    group: &[&str],
) {
    let Some(rows) = rows else { return };
    let cols: Vec<Option<usize>> = group.iter().map(|c| rows.col(c)).collect();
    let mut groups: BTreeMap<Vec<&str>, f64> = BTreeMap::new();
    for row in rows.iter() {
        let key = cols.iter().map(|i| row.at(*i).unwrap_or("")).collect();
        *groups.entry(key).or_default() += 1.0;
    }
    let mut f = Family::new(name, help, Kind::Gauge);
    for (key, n) in groups {
        let l = base.with(group.iter().copied().zip(key));
        f.samples.push((l, n));
    }
    out.add(f);
}

/// Key/value tables (LISTS, CONFIG): a row's `key_col` selects the metric, `value_col` is the value.
fn key_values(
    out: &mut Families,
    rows: Option<&Rows>,
    base: &LabelSet,
    key_col: &str,
    value_col: &str,
    map: &[(&str, &'static str, &'static str)],
) {
    let Some(rows) = rows else { return };
    for (key, name, help) in map {
        let mut f = Family::new(name, help, Kind::Gauge);
        if let Some(v) = rows
            .iter()
            .find(|r| r.get(key_col) == Some(key))
            .and_then(|r| num(r.get(value_col)))
        {
            f.samples.push((base.clone(), v));
        }
        out.add(f);
    }
}

/// All PgBouncer families of one target. `base` labels (`pgbouncer="<name>"` and the target's
/// extra labels) come first on every series.
pub fn collect(s: &Snapshot, base: &LabelSet) -> Families {
    let mut out = Families::default();

    let mut version = Family::new(VERSION, "The pgbouncer version info", Kind::Gauge);
    if let Some(v) = s
        .version
        .as_ref()
        .and_then(|r| r.iter().next())
        .and_then(|r| r.get("version"))
    {
        version.samples.push((base.with([("version", v)]), 1.0));
    }
    out.add(version);

    table(
        &mut out,
        s.databases.as_ref(),
        base,
        DATABASE_LABELS,
        &[],
        DATABASES,
    );
    table(
        &mut out,
        s.stats_totals.as_ref(),
        base,
        STATS_LABELS,
        &[],
        STATS_TOTALS,
    );
    table(&mut out, s.pools.as_ref(), base, POOL_LABELS, &[], POOLS);

    let mut maxwait = Family::new(MAXWAIT, MAXWAIT_HELP, Kind::Gauge);
    if let Some(rows) = &s.pools {
        let labels = label_columns(rows, POOL_LABELS, &[]);
        let (secs_col, us_col) = (rows.col("maxwait"), rows.col("maxwait_us"));
        for row in rows.iter() {
            if let Some(secs) = num(row.at(secs_col)) {
                let us = num(row.at(us_col)).unwrap_or(0.0);
                maxwait
                    .samples
                    .push((row_labels(base, &row, &labels), secs + us * US));
            }
        }
    }
    out.add(maxwait);

    key_values(&mut out, s.lists.as_ref(), base, "list", "items", LISTS);
    key_values(&mut out, s.config.as_ref(), base, "key", "value", CONFIG);
    counts(
        &mut out,
        s.clients.as_ref(),
        base,
        CLIENTS,
        "Client connections, by database, user, application_name and state",
        &["database", "user", "application_name", "state"],
    );
    counts(
        &mut out,
        s.servers.as_ref(),
        base,
        SERVERS,
        "Server connections, by database, user and state",
        &["database", "user", "state"],
    );
    table(&mut out, s.mem.as_ref(), base, &["name"], &[], MEM);
    table(
        &mut out,
        s.users.as_ref(),
        base,
        USER_LABELS,
        &[("name", "user")],
        USERS,
    );
    out
}
