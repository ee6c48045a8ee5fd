//! PgBouncer: the admin console answers; clients waiting and the longest wait per pool.

use tokio_postgres::SimpleQueryMessage;

use super::{Findings, Outcome, level};
use crate::config::PgbouncerCheck;

pub async fn check(c: &PgbouncerCheck) -> Outcome {
    let client = match c.conn.connect("health-agent").await {
        Ok(cl) => cl,
        Err(e) => return Outcome::crit(format!("admin console: {e:#}")),
    };
    let msgs = match client.simple_query("SHOW POOLS").await {
        Ok(m) => m,
        Err(e) => {
            return Outcome::crit(format!("SHOW POOLS: {}", common::conn::pg_error_text(&e)));
        }
    };
    let mut f = Findings::default();
    let mut pools = 0;
    for m in msgs {
        let SimpleQueryMessage::Row(r) = m else {
            continue;
        };
        pools += 1;
        let text = |col: &str| r.try_get(col).ok().flatten().unwrap_or("");
        let num = |col: &str| text(col).parse::<f64>().unwrap_or(0.0);
        let pool = format!("{}/{}", text("database"), text("user"));
        let waiting = num("cl_waiting");
        let maxwait = num("maxwait") + num("maxwait_us") / 1e6;
        let st = level(waiting, c.waiting_warn as f64, c.waiting_crit as f64);
        if !st.is_ok() {
            f.add(
                st,
                format!(
                    "pool {pool}: {waiting:.0} clients waiting (warn {}, crit {})",
                    c.waiting_warn, c.waiting_crit
                ),
            );
        }
        let st = level(
            maxwait,
            c.maxwait_warn.as_secs_f64(),
            c.maxwait_crit.as_secs_f64(),
        );
        if !st.is_ok() {
            f.add(
                st,
                format!(
                    "pool {pool}: oldest client waiting {maxwait:.3}s (warn {}, crit {})",
                    humantime::format_duration(c.maxwait_warn),
                    humantime::format_duration(c.maxwait_crit)
                ),
            );
        }
    }
    f.add(
        super::State::Ok,
        format!("{pools} pools, none over thresholds"),
    );
    f.finish()
}
