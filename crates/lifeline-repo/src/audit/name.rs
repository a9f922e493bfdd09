//! How audit records are named (format.md §14): `audit/<YYYY-MM>/<TIME>-<id>`, where TIME is the
//! writer's UTC time `YYYYMMDDTHHMMSS.mmmZ`, so names sort by time and a month is one prefix.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, Utc};

use crate::Id;

/// Where the trail lives.
pub const PREFIX: &str = "audit/";

const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// A writer links the heads among the records written within this long of the newest one, and
/// `verify` expects every record older than that to be linked: it absorbs clock skew and the time
/// between a writer's listing and its write.
pub const WINDOW: TimeDelta = TimeDelta::hours(1);

/// How much later than a record the records it links to may be, by their writers' clocks.
pub const SKEW: TimeDelta = TimeDelta::minutes(5);

/// A record's name: the trail time and the hash of its stored bytes. Ordered by time, then ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Name {
    pub time: DateTime<Utc>,
    pub id: Id,
}

/// A time in the form names and envelopes carry.
pub(crate) fn format_time(time: &DateTime<Utc>) -> String {
    time.format(TIME_FORMAT).to_string()
}

/// Parse a TIME, accepting only its one canonical spelling (so one instant has one name).
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let time = NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .ok()?
        .and_utc();
    (format_time(&time) == text).then_some(time)
}

/// `time` cut to whole milliseconds, the precision names keep.
pub(crate) fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// The month directory of a time: `YYYY-MM`.
pub(crate) fn month(time: &DateTime<Utc>) -> String {
    format!("{:04}-{:02}", time.year(), time.month())
}

/// The month directory before the one `time` falls in.
pub(crate) fn previous_month(time: &DateTime<Utc>) -> String {
    match time.month() {
        1 => format!("{:04}-12", time.year() - 1),
        m => format!("{:04}-{:02}", time.year(), m - 1),
    }
}

/// RFC 3339 with milliseconds, as entries carry their time.
pub(crate) fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Name {
    /// Parse `YYYY-MM/TIME-<64 hex>` (a link, or a key without [`PREFIX`]).
    pub fn parse(text: &str) -> Option<Self> {
        let (dir, file) = text.split_once('/')?;
        let (time, id) = file.split_once('-')?;
        let time = parse_time(time)?;
        // `from_hex` takes upper case too; a name has one spelling.
        if id.len() != 64 || id.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let name = Name {
            time,
            id: Id::from_hex(id)?,
        };
        (dir == month(&time)).then_some(name)
    }

    /// Parse a storage key `audit/YYYY-MM/TIME-<id>`.
    pub fn from_key(key: &str) -> Option<Self> {
        Name::parse(key.strip_prefix(PREFIX)?)
    }

    pub fn key(&self) -> String {
        format!("{PREFIX}{self}")
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}-{}",
            month(&self.time),
            format_time(&self.time),
            self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let t = DateTime::parse_from_rfc3339("2026-01-05T07:08:09.012Z")
            .expect("time")
            .with_timezone(&Utc);
        let name = Name {
            time: t,
            id: Id([7; 32]),
        };
        let text = name.to_string();
        assert!(text.starts_with("2026-01/20260105T070809.012Z-0707"));
        assert_eq!(Name::parse(&text), Some(name));
        assert_eq!(Name::from_key(&name.key()), Some(name));
        assert_eq!(previous_month(&t), "2025-12");
        let later = format_time(&(t + TimeDelta::milliseconds(1)));
        assert!(format_time(&t) < later);
    }

    #[test]
    fn only_the_canonical_spelling_parses() {
        let id = "07".repeat(32);
        assert!(Name::parse(&format!("2026-01/20260105T070809.012Z-{id}")).is_some());
        // Filed under the wrong month.
        assert!(Name::parse(&format!("2026-02/20260105T070809.012Z-{id}")).is_none());
        // No milliseconds, upper-case hex, short ID.
        assert!(Name::parse(&format!("2026-01/20260105T070809Z-{id}")).is_none());
        assert!(
            Name::parse(&format!("2026-01/20260105T070809.012Z-{}", "AB".repeat(32))).is_none()
        );
        assert!(Name::parse("2026-01/20260105T070809.012Z-0707").is_none());
    }
}
