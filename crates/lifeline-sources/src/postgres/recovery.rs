//! Point-in-time recovery: choose the base backup for a target, prove the archive can reach the
//! target before anything is written, and write the settings PostgreSQL recovers with.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, FixedOffset, TimeZone};
use lifeline_repo::snapshot::SnapshotFilter;
use lifeline_repo::Repository;

use super::archive::{self, Archive, Segment};
use super::catalog::{self, BaseBackup};
use super::error::{Error, Result};
use super::wal::Lsn;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Replay all archived WAL.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    Time(DateTime<FixedOffset>),
    Lsn(Lsn),
    Xid(u64),
    Name(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Latest => write!(f, "the end of the archive"),
            Target::Immediate => write!(f, "the end of the backup (immediate)"),
            Target::Time(t) => write!(f, "time {}", t.to_rfc3339()),
            Target::Lsn(l) => write!(f, "LSN {l}"),
            Target::Xid(x) => write!(f, "transaction {x}"),
            Target::Name(n) => write!(f, "restore point {n:?}"),
        }
    }
}

/// Parse a `--target-time`: RFC 3339, or PostgreSQL's `2026-11-22 10:00:00+00` form. A time without
/// an offset is refused, since the server it is compared with may run in any zone.
pub fn parse_time(text: &str) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t);
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %#z"] {
        if let Ok(t) = DateTime::parse_from_str(text.trim(), format) {
            return Ok(t);
        }
    }
    if let Some(t) = text.trim().strip_suffix(" UTC") {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f") {
            return Ok(chrono::Utc.from_utc_datetime(&naive).fixed_offset());
        }
    }
    Err(Error::Invalid(format!(
        "--target-time {text:?} is not a time with a zone: use RFC 3339 (2026-11-22T10:00:00Z) or 2026-11-22 10:00:00+00"
    )))
}

/// Which timeline recovery follows (`recovery_target_timeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    /// Not given: the newest, unless another history also follows the backup.
    Unspecified,
    /// The newest timeline descending from the backup, whatever else branched.
    Latest,
    /// The backup's own timeline.
    Current,
    Id(u32),
}

#[derive(Debug)]
pub struct Plan {
    /// The backups to restore, full backup first (several for an incremental one).
    pub chain: Vec<BaseBackup>,
    pub target: Target,
    pub timeline: u32,
    /// The last archived segment recovery may use before the target or the end of the archive.
    pub last_segment: String,
    /// When that segment was archived: recovery cannot reach commits after this.
    pub archive_end_ms: u64,
}

impl Plan {
    pub fn backup(&self) -> &BaseBackup {
        &self.chain[self.chain.len() - 1]
    }
}

/// Choose the backup among those `filter` matches and check the archive, without writing anything.
/// An incremental backup's chain may reach outside the filter: it is what restoring it needs.
pub fn plan(
    repo: &Repository,
    backups: Vec<BaseBackup>,
    target: Target,
    set: Option<&str>,
    filter: &SnapshotFilter,
    choice: TimelineChoice,
) -> Result<Plan> {
    let chosen = match set {
        Some(prefix) => {
            let chosen = backups
                .iter()
                .rfind(|b| b.id.to_hex().starts_with(prefix))
                .cloned()
                .ok_or_else(|| {
                    Error::Invalid(format!("no base backup matches --set {prefix:?}"))
                })?;
            if !filter.matches(&chosen.snapshot) {
                return Err(lifeline_repo::Error::OutsideFilter {
                    id: chosen.id.short(),
                    filter: filter.to_string(),
                }
                .into());
            }
            chosen
        }
        None => {
            let eligible: Vec<BaseBackup> = backups
                .iter()
                .filter(|b| filter.matches(&b.snapshot))
                .cloned()
                .collect();
            if eligible.is_empty() && !filter.is_empty() {
                return Err(lifeline_repo::Error::NoSnapshotInFilter(filter.to_string()).into());
            }
            choose(&eligible, &target)?
        }
    };
    check_target_after_backup(&chosen, &target)?;
    let chain = catalog::chain(&backups, &chosen)?;
    let archive = Archive::load(repo, chosen.system_id, chosen.segment_size)?;
    let descendants = archive.descendants(chosen.timeline, chosen.start);
    let timeline = match choice {
        TimelineChoice::Unspecified | TimelineChoice::Latest => {
            descendants.last().copied().unwrap_or(chosen.timeline)
        }
        TimelineChoice::Current => chosen.timeline,
        TimelineChoice::Id(t) => t,
    };
    let legs = archive
        .path(chosen.timeline, chosen.start, timeline)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "timeline {timeline} does not follow base backup {} (timeline {}, WAL from {}); the timelines that do: {}",
                chosen.id.short(),
                chosen.timeline,
                chosen.start,
                list(&descendants)
            ))
        })?;
    // The point up to which every history that follows the backup agrees.
    let agreed = |limit: Lsn| match &target {
        Target::Lsn(lsn) => *lsn <= limit,
        Target::Immediate => chosen.stop <= limit,
        _ => false,
    };
    if choice == TimelineChoice::Unspecified {
        let forks = archive.forks(&legs, chosen.start);
        let first_fork = forks.iter().map(|(at, _)| *at).min();
        if let Some(at) = first_fork.filter(|at| !agreed(*at)) {
            let what: Vec<&str> = forks.iter().map(|(_, f)| f.as_str()).collect();
            return Err(Error::Invalid(format!(
                "two histories follow base backup {} from {at}: {}; {target} could lie on either, so choose one with --target-timeline {} (latest = {timeline}, current = {})",
                chosen.id.short(),
                what.join("; "),
                list(&descendants),
                chosen.timeline
            )));
        }
    }
    let first = chosen.start.segment(chosen.segment_size);
    let consistent = chosen.stop.segment(chosen.segment_size);
    let newest = archive.newest(&legs).map_or(0, |s| s.segno);
    let until = match &target {
        Target::Immediate => consistent,
        Target::Lsn(lsn) => lsn.segment(chosen.segment_size),
        _ => newest.max(consistent),
    };
    let walk = archive.walk(&legs, first, until);
    let last = walk.last;
    if let Some(missing) = walk.gap {
        let reach = match last {
            Some(seg) if seg.segno >= consistent => format!(
                "; the archive is complete only up to segment {} — choose a target before it (e.g. --target-lsn) or restore the missing file",
                archive.name(seg)
            ),
            _ => " — it is needed to make the backup consistent, so this backup cannot be restored; choose an older one with --set".to_string(),
        };
        return Err(Error::Invalid(format!(
            "cannot reach {target} from base backup {}: WAL segment {} is missing from the archive{reach}",
            chosen.id.short(),
            archive.name(missing),
        )));
    }
    if let Some((limit, missing)) = walk.limit.filter(|(limit, _)| !agreed(*limit)) {
        return Err(Error::Invalid(format!(
            "cannot reach {target} on timeline {timeline}: segment {} (where timeline {} began, at {limit}) is not archived yet, so recovery can go no further than {limit}; wait until that server archives it (SELECT pg_switch_wal() there), or choose --target-timeline {}",
            archive.name(missing),
            missing.timeline,
            legs.first().map_or(chosen.timeline, |l| l.timeline)
        )));
    }
    let last: Segment = last.ok_or_else(|| {
        Error::Invalid(format!(
            "the archive holds no WAL for base backup {}",
            chosen.id.short()
        ))
    })?;
    // Past the newest whole segment, `pg wal-fetch` serves the largest part `pg receive-wal`
    // stored of the next one: recovery to a time, a transaction or the end goes that far.
    let streamed = match &target {
        Target::Immediate | Target::Lsn(_) => None,
        _ => archive.streamed_after(last),
    };
    let (last_segment, archive_end_ms) = match streamed {
        Some((_, part)) => (
            part.name.clone(),
            archive::streamed_at(repo, &archive, part)?,
        ),
        None => (
            archive.name(last),
            archive::archived_at(repo, &archive, last)?,
        ),
    };
    if let Target::Time(t) = &target {
        // WAL for a time is archived after that time: if the newest usable segment was stored
        // before the target, the commits up to the target are not all in the archive yet.
        if t.timestamp_millis() > i64::try_from(archive_end_ms).unwrap_or(i64::MAX) {
            let end =
                chrono::DateTime::from_timestamp_millis(i64::try_from(archive_end_ms).unwrap_or(0))
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default();
            return Err(Error::Invalid(format!(
                "cannot reach {target}: the newest archived WAL ({last_segment}) was archived at {end}, before it; if the server is running, `SELECT pg_switch_wal()` archives the WAL written since"
            )));
        }
    }
    Ok(Plan {
        last_segment,
        chain,
        target,
        timeline,
        archive_end_ms,
    })
}

fn list(timelines: &[u32]) -> String {
    timelines
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The newest backup from which the target can be reached.
fn choose(backups: &[BaseBackup], target: &Target) -> Result<BaseBackup> {
    let usable = |b: &&BaseBackup| match target {
        Target::Latest | Target::Immediate | Target::Name(_) => true,
        Target::Time(t) => b.stop_time <= *t,
        Target::Lsn(l) => b.stop <= *l,
        Target::Xid(x) => b.next_xid <= *x,
    };
    backups.iter().rev().find(usable).cloned().ok_or_else(|| {
        let earliest = backups.first().map_or(String::new(), |b| {
            format!(
                " (the earliest, {}, completed at {}, LSN {}, next transaction {})",
                b.id.short(),
                b.stop_time.to_rfc3339(),
                b.stop,
                b.next_xid
            )
        });
        Error::Invalid(format!(
            "cannot reach {target}: it is before the earliest base backup was complete{earliest}"
        ))
    })
}

fn check_target_after_backup(backup: &BaseBackup, target: &Target) -> Result<()> {
    let too_early = match target {
        Target::Time(t) => backup.stop_time > *t,
        Target::Lsn(l) => backup.stop > *l,
        _ => false,
    };
    if too_early {
        return Err(Error::Invalid(format!(
            "cannot reach {target} from base backup {}: the backup was complete only at {} (LSN {})",
            backup.id.short(),
            backup.stop_time.to_rfc3339(),
            backup.stop
        )));
    }
    Ok(())
}

/// What recovery does at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Promote,
    Shutdown,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Promote => "promote",
            Action::Shutdown => "shutdown",
        }
    }
}

/// A value inside single quotes in postgresql.conf.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Append the recovery settings to `postgresql.auto.conf` (read last, so they win) and create
/// `recovery.signal`.
pub fn write_settings(
    pgdata: &Path,
    plan: &Plan,
    restore_command: &str,
    action: Action,
    keep_archiving: bool,
) -> Result<()> {
    let mut lines = vec![
        String::new(),
        format!(
            "# Written by lifeline pg restore from base backup {} to reach {}",
            plan.backup().id.short(),
            plan.target
        ),
        format!("restore_command = {}", quoted(restore_command)),
        format!(
            "recovery_target_timeline = {}",
            quoted(&plan.timeline.to_string())
        ),
    ];
    if !keep_archiving {
        // A restored copy must not push a timeline of its own into the repository it came from.
        lines.push("archive_mode = 'off'".into());
    }
    let target = match &plan.target {
        Target::Latest => None,
        Target::Immediate => Some(("recovery_target", "immediate".to_string())),
        Target::Time(t) => Some(("recovery_target_time", t.to_rfc3339())),
        Target::Lsn(l) => Some(("recovery_target_lsn", l.to_string())),
        Target::Xid(x) => Some(("recovery_target_xid", x.to_string())),
        Target::Name(n) => Some(("recovery_target_name", n.clone())),
    };
    if let Some((setting, value)) = target {
        lines.push(format!("{setting} = {}", quoted(&value)));
        lines.push(format!(
            "recovery_target_action = {}",
            quoted(action.as_str())
        ));
    }
    let conf = pgdata.join("postgresql.auto.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .map_err(|e| Error::io(&conf, e))?;
    file.write_all((lines.join("\n") + "\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&conf, e))?;
    let signal = pgdata.join("recovery.signal");
    fs::write(&signal, b"").map_err(|e| Error::io(&signal, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_need_a_zone() {
        let t = parse_time("2026-11-22 10:00:00.5+00").expect("pg form");
        assert_eq!(t.to_rfc3339(), "2026-11-22T10:00:00.500+00:00");
        assert!(parse_time("2026-11-22T10:00:00Z").is_ok());
        assert!(parse_time("2026-11-22 10:00:00 UTC").is_ok());
        assert!(parse_time("2026-11-22 10:00:00").is_err());
    }

    #[test]
    fn settings_are_quoted_for_postgresql_conf() {
        assert_eq!(quoted("it's"), "'it''s'");
    }
}
