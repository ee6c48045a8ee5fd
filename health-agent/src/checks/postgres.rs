//! PostgreSQL: connect + `SELECT 1`; connections used vs max_connections; on a standby, replay lag
//! in seconds and bytes; replication slots' retained WAL.

use super::{Findings, Outcome, State, bytes, level};
use crate::config::PostgresCheck;

pub async fn check(c: &PostgresCheck) -> Outcome {
    let client = match c.conn.connect("health-agent").await {
        Ok(cl) => cl,
        Err(e) => return Outcome::crit(format!("cannot connect: {e:#}")),
    };
    match inspect(c, &client).await {
        Ok(o) => o,
        Err(e) => Outcome::crit(format!("{}: {}", c.conn, common::conn::pg_error_text(&e))),
    }
}

async fn inspect(
    c: &PostgresCheck,
    client: &tokio_postgres::Client,
) -> Result<Outcome, tokio_postgres::Error> {
    let mut f = Findings::default();
    let row = client
        .query_one(
            "SELECT 1::int4,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8,
                    current_setting('max_connections')::float8,
                    pg_is_in_recovery()",
            &[],
        )
        .await?;
    let (used, max, standby): (f64, f64, bool) = (row.get(1), row.get(2), row.get(3));
    let pct = if max > 0.0 { used * 100.0 / max } else { 0.0 };
    let st = level(pct, c.connections_warn_pct, c.connections_crit_pct);
    f.add(
        st,
        format!(
            "connections {used:.0}/{max:.0} ({pct:.0}%, warn {}%, crit {}%)",
            c.connections_warn_pct, c.connections_crit_pct
        ),
    );

    if standby {
        let row = client
            .query_one(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                        ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,
                        COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8",
                &[],
            )
            .await?;
        let (secs, behind): (f64, f64) = (row.get(0), row.get(1));
        let st = level(
            secs,
            c.replay_lag_warn.as_secs_f64(),
            c.replay_lag_crit.as_secs_f64(),
        );
        f.add(
            st,
            format!(
                "replay lag {secs:.1}s (warn {}, crit {})",
                humantime::format_duration(c.replay_lag_warn),
                humantime::format_duration(c.replay_lag_crit)
            ),
        );
        let st = level(behind, c.replay_lag_bytes_warn as f64, f64::INFINITY);
        f.add(
            st,
            format!(
                "{} received but not replayed (warn {})",
                bytes(behind as u64),
                bytes(c.replay_lag_bytes_warn)
            ),
        );
    }

    let position = if standby {
        "pg_last_wal_receive_lsn()"
    } else {
        "pg_current_wal_lsn()"
    };
    let rows = client
        .query(
            &format!(
                "SELECT slot_name::text, pg_wal_lsn_diff({position}, restart_lsn)::float8
                 FROM pg_replication_slots WHERE restart_lsn IS NOT NULL ORDER BY 1"
            ),
            &[],
        )
        .await?;
    for r in rows {
        let (name, retained): (String, f64) = (r.get(0), r.get(1));
        let st = level(
            retained,
            c.slot_retained_warn_bytes as f64,
            c.slot_retained_crit_bytes as f64,
        );
        if st != State::Ok {
            f.add(
                st,
                format!(
                    "slot {name} retains {} of WAL (warn {}, crit {})",
                    bytes(retained as u64),
                    bytes(c.slot_retained_warn_bytes),
                    bytes(c.slot_retained_crit_bytes)
                ),
            );
        }
    }
    Ok(f.finish())
}
