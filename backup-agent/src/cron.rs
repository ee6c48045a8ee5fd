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

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant written in RFC 3339.
    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn five_field_cron_and_clear_errors() {
        assert!(parse("0 */6 * * *", "UTC").is_ok());
        let e = parse("* * * * * *", "UTC").expect_err("6 fields");
        assert!(e.contains("5 fields"), "{e}");
        assert!(parse("61 * * * *", "UTC").is_err());
        assert!(parse("0 3 * * 8", "UTC").is_err());
        assert!(parse("@sometimes", "UTC").is_err());
    }

    /// Next fire times of what people write, from known instants (UTC). Standard cron: 0 and 7
    /// are Sunday, names work, DOM and DOW both restricted means either.
    #[test]
    fn next_fire_times_follow_standard_cron() {
        // 2026-12-02 is a Wednesday.
        let wed = "2026-12-02T10:00:00Z";
        let cases: &[(&str, &str, &str)] = &[
            ("0 3 * * 0", wed, "2026-12-06T03:00:00Z"), // Sunday, weekly full backup
            ("0 3 * * 7", wed, "2026-12-06T03:00:00Z"), // 7 is Sunday too
            ("0 3 * * SUN", wed, "2026-12-06T03:00:00Z"),
            ("0 3 * * 1-5", wed, "2026-12-03T03:00:00Z"), // Mon-Fri: Thursday next
            (
                "0 3 * * 1-5",
                "2026-12-04T10:00:00Z",
                "2026-12-07T03:00:00Z",
            ), // Fri -> Mon
            (
                "0 3 * * MON-FRI",
                "2026-12-05T10:00:00Z",
                "2026-12-07T03:00:00Z",
            ), // Sat -> Mon
            ("0 3 * * 6", wed, "2026-12-05T03:00:00Z"),   // Saturday
            ("0 2 * * *", wed, "2026-12-03T02:00:00Z"),
            ("0 */6 * * *", wed, "2026-12-02T12:00:00Z"),
            (
                "0 */4 * * *",
                "2026-12-02T23:59:00Z",
                "2026-12-03T00:00:00Z",
            ),
            ("@daily", wed, "2026-12-03T00:00:00Z"),
            ("@hourly", wed, "2026-12-02T11:00:00Z"),
            ("@weekly", wed, "2026-12-06T00:00:00Z"),
            ("@monthly", wed, "2027-01-01T00:00:00Z"),
            // Both restricted: the 1st OR a Monday, whichever comes first.
            ("0 3 1 * MON", wed, "2026-12-07T03:00:00Z"),
            (
                "0 3 1 * MON",
                "2026-12-28T10:00:00Z",
                "2027-01-01T03:00:00Z",
            ),
            ("30 1 29 2 *", wed, "2028-02-29T01:30:00Z"), // leap day
        ];
        for (expr, from, want) in cases {
            let s = parse(expr, "UTC").unwrap_or_else(|e| panic!("{e}"));
            let next = s.next_after(at(from)).expect("a next time");
            assert_eq!(next, at(want), "{expr} after {from}");
        }
    }

    /// In a zone with daylight saving time (Europe/Berlin: +01:00 in winter, +02:00 in summer;
    /// 2027-03-28 02:00 -> 03:00, 2027-10-31 03:00 -> 02:00), from `schedule.timezone` or
    /// `CRON_TZ=`.
    #[test]
    fn next_fire_times_in_a_zone_with_dst() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // 03:00 local every day: 02:00Z in winter, 01:00Z in summer.
            (
                "0 3 * * *",
                "Europe/Berlin",
                "2027-03-26T12:00:00Z",
                "2027-03-27T02:00:00Z",
            ),
            (
                "0 3 * * *",
                "Europe/Berlin",
                "2027-03-27T12:00:00Z",
                "2027-03-28T01:00:00Z",
            ),
            // 02:30 does not exist on 2027-03-28: it fires right after the jump (03:00 local).
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2027-03-27T12:00:00Z",
                "2027-03-28T01:00:00Z",
            ),
            // 02:30 happens twice on 2027-10-31: it fires once, at the first (+02:00).
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2027-10-30T12:00:00Z",
                "2027-10-31T00:30:00Z",
            ),
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z",
            ),
            // A Sunday weekly full backup, New York time.
            (
                "0 3 * * 0",
                "America/New_York",
                "2026-12-02T10:00:00Z",
                "2026-12-06T08:00:00Z",
            ),
            // CRON_TZ= in the expression wins over the setting.
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                "UTC",
                "2026-12-02T10:00:00Z",
                "2026-12-03T00:00:00Z",
            ),
        ];
        for (expr, tz, from, want) in cases {
            let s = parse(expr, tz).unwrap_or_else(|e| panic!("{e}"));
            let next = s.next_after(at(from)).expect("a next time");
            assert_eq!(next, at(want), "{expr} in {tz} after {from}");
        }
        let e = parse("0 3 * * *", "Mars/Olympus").expect_err("no such zone");
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
    }
}
