//! The calendar month a report covers, written `YYYY-MM` on the command line and in the report.
//! Months are UTC: the audit trail's times are UTC, so a month read anywhere covers the same
//! records.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Serialize, Serializer};

/// Why a text is not a month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonthError {
    #[error("invalid month {0:?}: write it as YYYY-MM, for example 2025-03")]
    Format(String),
    #[error("invalid month {0:?}: the month must be 01 to 12")]
    OutOfRange(String),
}

/// A calendar month in UTC, from its first instant up to (not including) the next month's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// `month` is 1 to 12; `year` 0 to 9999, the years `YYYY` can write.
    pub fn new(year: i32, month: u32) -> Result<Month, MonthError> {
        if !(0..=9999).contains(&year) {
            return Err(MonthError::Format(format!("{year}-{month:02}")));
        }
        if !(1..=12).contains(&month) {
            return Err(MonthError::OutOfRange(format!("{year:04}-{month:02}")));
        }
        Ok(Month { year, month })
    }

    /// The month `time` falls in.
    pub fn of(time: DateTime<Utc>) -> Month {
        Month {
            year: time.year(),
            month: time.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// Its first instant: the 1st at 00:00 UTC.
    pub fn start(self) -> DateTime<Utc> {
        first_instant(self.year, self.month)
    }

    /// The first instant after it: the next month's 1st at 00:00 UTC.
    pub fn end(self) -> DateTime<Utc> {
        if self.month == 12 {
            first_instant(self.year + 1, 1)
        } else {
            first_instant(self.year, self.month + 1)
        }
    }

    pub fn contains(self, time: DateTime<Utc>) -> bool {
        self.start() <= time && time < self.end()
    }

    /// "March 2025".
    pub fn name(self) -> String {
        self.start().format("%B %Y").to_string()
    }
}

/// The 1st of `month` at midnight UTC. Every year 0..=10000 and month 1..=12 is a valid date, and
/// `Month` admits no others, so the fallback is never taken; it keeps the function total.
fn first_instant(year: i32, month: u32) -> DateTime<Utc> {
    let date = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN);
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(text: &str) -> Result<Month, MonthError> {
        let format = || MonthError::Format(text.to_string());
        let (year, month) = text.split_once('-').ok_or_else(format)?;
        let digits =
            |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return Err(format());
        }
        let year: i32 = year.parse().map_err(|_| format())?;
        let month: u32 = month.parse().map_err(|_| format())?;
        if !(1..=12).contains(&month) {
            return Err(MonthError::OutOfRange(text.to_string()));
        }
        Ok(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// As `YYYY-MM`, the form it was given in.
impl Serialize for Month {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_yyyy_mm_and_bounds_the_month() {
        let march: Month = "2025-03".parse().unwrap();
        assert_eq!((march.year(), march.month()), (2025, 3));
        assert_eq!(march.to_string(), "2025-03");
        assert_eq!(march.name(), "March 2025");
        assert_eq!(march.start().to_rfc3339(), "2025-03-01T00:00:00+00:00");
        assert_eq!(march.end().to_rfc3339(), "2025-04-01T00:00:00+00:00");
        let december: Month = "2024-12".parse().unwrap();
        assert_eq!(december.end().to_rfc3339(), "2025-01-01T00:00:00+00:00");
        assert!(march.contains(march.start()));
        assert!(!march.contains(march.end()));
        assert!(!march.contains(march.start() - chrono::Duration::milliseconds(1)));
        assert_eq!(Month::of(march.end()), "2025-04".parse().unwrap());
        assert_eq!(serde_json::to_string(&march).unwrap(), "\"2025-03\"");
    }

    #[test]
    fn rejects_other_forms_with_a_clear_error() {
        for bad in [
            "2025-3",
            "25-03",
            "2025/03",
            "2025-03-01",
            "march",
            "",
            "2025-0x",
            "+025-03",
        ] {
            let err = bad.parse::<Month>().unwrap_err();
            assert_eq!(err, MonthError::Format(bad.into()));
            assert!(err.to_string().contains("YYYY-MM"), "{err}");
        }
        for bad in ["2025-00", "2025-13"] {
            let err = bad.parse::<Month>().unwrap_err();
            assert_eq!(err, MonthError::OutOfRange(bad.into()));
            assert!(err.to_string().contains("01 to 12"), "{err}");
        }
        assert!(Month::new(2025, 13).is_err());
        assert!(Month::new(-1, 1).is_err());
        assert_eq!(Month::new(2025, 1).unwrap().to_string(), "2025-01");
    }
}
