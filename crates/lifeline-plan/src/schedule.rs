//! Cron schedules with an explicit time zone: five fields (minute first) or six (second first), as
//! Kubernetes CronJobs and most schedulers write them.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: croner::Cron,
    tz: Tz,
}

impl Schedule {
    /// A cron expression read in the IANA time zone `tz`.
    pub fn parse(expression: &str, tz: &str) -> Result<Self, String> {
        let tz: Tz = tz.parse().map_err(|_| {
            format!("{tz:?} is not a time zone: give an IANA name such as UTC or Europe/Berlin")
        })?;
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "{expression:?} has {fields} field(s): a schedule has five (minute hour day month weekday) or six (second first)"
            ));
        }
        let cron = croner::Cron::new(expression)
            .with_seconds_optional()
            .parse()
            .map_err(|e| {
                format!("{expression:?} is not a cron expression ({e}); write it like \"0 2 * * *\" (02:00 daily) or \"*/10 * * * * *\" (every 10 s)")
            })?;
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
            tz,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The first time strictly after `after` that the schedule names.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.expression, self.tz.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid")
    }

    #[test]
    fn five_fields_are_minutes_and_six_have_seconds_first() {
        let daily = Schedule::parse("0 2 * * *", "UTC").expect("parse");
        assert_eq!(
            daily.next_after(at(2026, 12, 1, 2, 0, 0)),
            Some(at(2026, 12, 2, 2, 0, 0))
        );
        let tens = Schedule::parse("*/10 * * * * *", "UTC").expect("parse");
        assert_eq!(
            tens.next_after(at(2026, 12, 1, 2, 0, 3)),
            Some(at(2026, 12, 1, 2, 0, 10))
        );
    }

    #[test]
    fn the_time_zone_decides_when_02_00_is() {
        let berlin = Schedule::parse("0 2 * * *", "Europe/Berlin").expect("parse");
        // 02:00 in Berlin in December is 01:00 UTC.
        assert_eq!(
            berlin.next_after(at(2026, 12, 1, 12, 0, 0)),
            Some(at(2026, 12, 2, 1, 0, 0))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        let e = Schedule::parse("0 2 * *", "UTC").expect_err("four fields");
        assert!(e.contains("4 field(s)"), "{e}");
        let e = Schedule::parse("0 25 * * *", "UTC").expect_err("hour 25");
        assert!(e.contains("not a cron expression"), "{e}");
        let e = Schedule::parse("0 2 * * *", "Mars/Olympus").expect_err("zone");
        assert!(e.contains("not a time zone"), "{e}");
    }
}
