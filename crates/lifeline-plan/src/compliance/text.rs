//! Wording and number formats every rendering of a report shares, so the HTML page, the Markdown
//! file and the summary's sentences say the same thing the same way.

use chrono::{DateTime, Utc};

use super::model::{
    EpochState, Integrity, MonthlyReport, RecoveryTests, Retention, Section, Verdict,
    WalContinuity, WalStatus,
};
use super::month::Month;
use lifeline_repo::audit::EventResult;
use lifeline_repo::drill::CheckResult;

/// A section's title, the HIPAA provisions it gives evidence for, and its anchor in the HTML page.
pub struct SectionText {
    pub title: &'static str,
    /// None where HIPAA sets no rule of its own (retention of backups is the plan's policy).
    pub rule: Option<&'static str>,
    pub anchor: &'static str,
}

pub fn section(section: Section) -> SectionText {
    let (title, rule, anchor) = match section {
        Section::Backups => (
            "Backups",
            Some("§164.308(a)(7)(ii)(A) data backup plan"),
            "backups",
        ),
        Section::RecoveryTests => (
            "Recovery tests",
            Some(
                "§164.308(a)(7)(ii)(B) disaster recovery plan, (D) testing and revision procedures",
            ),
            "recovery-tests",
        ),
        Section::Integrity => (
            "Data integrity",
            Some("§164.312(b) audit controls, §164.312(c)(1) integrity"),
            "integrity",
        ),
        Section::Encryption => (
            "Encryption",
            Some("§164.312(a)(2)(iv) encryption and decryption"),
            "encryption",
        ),
        Section::Retention => ("Retention and legal holds", None, "retention"),
        Section::Copies => (
            "Second-region copies",
            Some("§164.308(a)(7)(ii)(B) disaster recovery plan"),
            "copies",
        ),
        Section::Wal => (
            "WAL continuity",
            Some("§164.308(a)(7)(ii)(A) data backup plan: point-in-time recovery"),
            "wal",
        ),
    };
    SectionText {
        title,
        rule,
        anchor,
    }
}

pub fn verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Met => "All controls met",
        Verdict::NotMet => "Action needed",
    }
}

pub fn result(result: EventResult) -> &'static str {
    match result {
        EventResult::Ok => "ok",
        EventResult::Partial => "partial",
        EventResult::Failed => "failed",
    }
}

pub fn check_result(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "pass",
        CheckResult::Warn => "warning",
        CheckResult::Fail => "fail",
    }
}

pub fn epoch_state(state: EpochState) -> &'static str {
    match state {
        EpochState::Current => "current",
        EpochState::Superseded => "superseded",
        EpochState::Later => "created after the month",
        EpochState::Unknown => "creation time unreadable",
        EpochState::Destroyed => "destroyed",
    }
}

/// An epoch's state for a table: a destroyed one with its day.
pub fn epoch_state_of(e: &super::model::EpochStatus) -> String {
    match (&e.destroyed, e.state) {
        (Some(at), EpochState::Destroyed) => format!("destroyed on {}", day(at)),
        _ => epoch_state(e.state).to_string(),
    }
}

pub fn wal_status(status: WalStatus) -> &'static str {
    match status {
        WalStatus::Continuous => "continuous",
        WalStatus::Broken => "broken",
        WalStatus::NotTested => "not tested",
    }
}

/// `1 backup`, `2 backups`: every noun the report counts takes a plain -s.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// A success rate with one decimal, cut rather than rounded: 99.97% must not read as 100.0% when
/// the target is 100%.
pub fn percent(rate: f64) -> String {
    format!("{:.1}%", (rate * 10.0).floor() / 10.0)
}

pub fn percent_or_dash(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_string(), percent)
}

pub fn parse_time(rfc3339: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `2025-03-14 02:00 UTC`; a time that does not parse is shown as it came.
pub fn when(rfc3339: &str) -> String {
    parse_time(rfc3339).map_or_else(
        || rfc3339.to_string(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

pub fn when_or_never(rfc3339: Option<&str>) -> String {
    rfc3339.map_or_else(|| "never".to_string(), when)
}

/// `2025-03-14`.
pub fn day(rfc3339: &str) -> String {
    parse_time(rfc3339).map_or_else(|| rfc3339.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

/// The month as whole days: `2025-03-01 to 2025-03-31 (UTC)`.
pub fn period(month: Month) -> String {
    format!(
        "{} to {} (UTC)",
        month.start().format("%Y-%m-%d"),
        (month.end() - chrono::Duration::days(1)).format("%Y-%m-%d")
    )
}

pub fn duration(seconds: f64) -> String {
    crate::page::human_duration(seconds)
}

pub fn duration_or_dash(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "—".to_string(), duration)
}

/// `met`, `missed` or `no target`.
pub fn met(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "no target",
    }
}

/// Binary units, one decimal: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first 8 characters of an ID, as `lifeline snapshots` shows them.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// One line of the summary's scorecard: a control, what the month shows, and whether it is met
/// (no finding in its section).
pub struct Score {
    pub section: Section,
    pub result: String,
    pub met: bool,
}

pub fn scorecard(report: &MonthlyReport) -> Vec<Score> {
    let met = |section: Section| !report.summary.findings.iter().any(|f| f.section == section);
    let b = &report.backups;
    let r = &report.recovery_tests;
    let i = &report.integrity;
    let e = &report.encryption;
    let k = &report.retention;
    let c = &report.copies;
    let w = &report.wal;
    let backups = match b.success_rate_percent {
        Some(rate) => format!(
            "{} of {} backups succeeded ({}; target 100%)",
            b.ok,
            b.attempts,
            percent(rate)
        ),
        None => "no backups recorded".to_string(),
    };
    let mut tests = format!("{} passed, {} failed", r.passed, r.failed);
    if !r.untested.is_empty() {
        tests.push_str(&format!(
            "; {} not tested",
            count(r.untested.len() as u64, "source")
        ));
    }
    let trail = if i.trail.verified {
        "audit trail verified".to_string()
    } else if !i.trail.authenticated {
        "audit trail not authenticated".to_string()
    } else {
        format!(
            "audit trail: {}",
            count(i.trail.problems.len() as u64, "problem")
        )
    };
    let integrity = format!(
        "{}, {} with problems; {}, {} failed; {trail}",
        count(i.checks.len() as u64, "repository check"),
        i.checks_with_problems,
        count(i.drill_checks as u64, "drill check"),
        i.drill_checks_failed
    );
    let encryption = match e.epochs.iter().find(|x| x.state == EpochState::Current) {
        Some(current) => format!(
            "{}; key epoch {} is {} days old (rotation every {} days)",
            e.algorithm,
            current.epoch,
            current.age_days.unwrap_or_default(),
            e.rotation_days
        ),
        None => format!("{}; key age unknown", e.algorithm),
    };
    let removed: u64 = k.sources.iter().map(|s| s.snapshots_removed).sum();
    let runs: usize = k.sources.iter().map(|s| s.runs).sum();
    let retention = format!(
        "{}, {} removed; {} under legal hold",
        count(runs as u64, "retention run"),
        count(removed, "snapshot"),
        count(k.holds.len() as u64, "snapshot")
    );
    let copy_runs: usize = c.destinations.iter().map(|d| d.runs).sum();
    let copy_ok: usize = c.destinations.iter().map(|d| d.ok).sum();
    let copies = format!(
        "{copy_ok} of {} completed to {}",
        count(copy_runs as u64, "copy run"),
        count(c.destinations.len() as u64, "destination")
    );
    let wal = format!(
        "{} ({})",
        wal_status(w.status),
        count(w.checks.len() as u64, "drill check")
    );
    [
        (Section::Backups, backups),
        (Section::RecoveryTests, tests),
        (Section::Integrity, integrity),
        (Section::Encryption, encryption),
        (Section::Retention, retention),
        (Section::Copies, copies),
        (Section::Wal, wal),
    ]
    .into_iter()
    .map(|(section, result)| Score {
        section,
        result,
        met: met(section),
    })
    .collect()
}

/// The sentence above the drills table.
pub fn drills_sentence(r: &RecoveryTests) -> String {
    format!(
        "{} this month: {} passed, {} failed. RTO is the time from the start of a drill to a \
         verified, usable target; RPO is the age of the data it restored.",
        count(r.drills.len() as u64, "drill"),
        r.passed,
        r.failed
    )
}

/// The sentence above the checks table.
pub fn integrity_sentence(i: &Integrity) -> String {
    format!(
        "{}, {} with problems. Drills: {} passed, {} failed; {} of restored data, {} failed.",
        count(i.checks.len() as u64, "repository check"),
        i.checks_with_problems,
        i.drills_passed,
        i.drills_failed,
        count(i.drill_checks as u64, "check"),
        i.drill_checks_failed
    )
}

pub fn prune_sentence(r: &Retention) -> String {
    format!(
        "Prune (freeing the space of removed snapshots): {}, {} failed.",
        count(r.prune_runs as u64, "run"),
        r.prune_failed
    )
}

/// How many WAL segments `pg wal-push` archived, when the trail records any.
pub fn wal_pushes_sentence(w: &WalContinuity) -> Option<String> {
    (w.segments_archived > 0).then(|| {
        format!(
            "{} archived this month by pg wal-push.",
            count(w.segments_archived as u64, "WAL segment")
        )
    })
}

/// The closing words of every rendering: where the figures come from and how long to keep it.
pub const PROVENANCE: &str = "Computed by lifeline from the repository's audit trail and drill \
records alone, so it can be reproduced from the copy in the other region. Times are UTC. Success \
rates count only runs that finished ok: partial runs (some items unreadable) count against them. \
Keep this report for six years (HIPAA §164.316(b)(2)(i)).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_round_up_to_the_target() {
        assert_eq!(percent(100.0), "100.0%");
        assert_eq!(percent(99.97), "99.9%");
        assert_eq!(percent(30.0 * 100.0 / 31.0), "96.7%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(percent_or_dash(None), "—");
    }

    #[test]
    fn times_bytes_and_ids() {
        assert_eq!(when("2025-03-14T02:00:07.120Z"), "2025-03-14 02:00 UTC");
        assert_eq!(when("yesterday"), "yesterday");
        assert_eq!(day("2025-03-14T02:00:07+02:00"), "2025-03-14");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(short_id("5e1f0c2a99"), "5e1f0c2a");
        assert_eq!(short_id("5e1f"), "5e1f");
    }
}
