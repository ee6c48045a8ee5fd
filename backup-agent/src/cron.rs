//! Cron expressions as `schedule.*` holds them: standard 5-field (Vixie/POSIX) cron or a
//! nickname, in a time zone (`schedule.timezone`, or `CRON_TZ=<zone>` before the expression).
//! Parsed here for the config's check and for the scheduler.

/// A parsed schedule: when, and in which time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// The first time after `t` the schedule fires. In a zone with daylight saving time, a time
    /// the clocks skip fires right after the jump and a time they repeat fires once (the first).
    pub fn next_after(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    }
}

/// A time zone by its IANA name (`UTC`, `Europe/Berlin`).
pub fn zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        format!("time zone {name:?} is not an IANA zone name (e.g. UTC, Europe/Berlin, America/New_York)")
    })
}

/// Parses a standard 5-field cron expression (minute hour day month weekday) or a nickname
/// (`@daily`), in time zone `tz` unless the expression starts with `CRON_TZ=<zone> `.
pub fn parse(expr: &str, tz: &str) -> Result<Schedule, String> {
    let mut t = expr.trim();
    let mut tz = tz;
    if let Some(rest) = t.strip_prefix("CRON_TZ=").or_else(|| t.strip_prefix("TZ=")) {
        let (z, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        tz = z;
        t = r.trim();
    }
    let tz = zone(tz).map_err(|e| format!("{expr:?}: {e}"))?;
    let fields = t.split_whitespace().count();
    if !(t.starts_with('@') && fields == 1) && fields != 5 {
        return Err(format!(
            "{expr:?}: a cron expression has 5 fields (minute hour day month weekday) or is @hourly/@daily/@weekly/@monthly/@yearly, not {fields} fields"
        ));
    }
    croner::Cron::new(t)
        .parse()
        .map(|cron| Schedule { cron, tz })
        .map_err(|e| format!("{expr:?}: {e}"))
}
