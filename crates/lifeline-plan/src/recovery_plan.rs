//! `lifeline recovery-plan --time T`: for every source of the plan, the recovery point nearest
//! before T (for PostgreSQL, T itself when it lies in the point-in-time window), how far apart the
//! sources' points are, the restore commands in the order to run them, and how long they took in
//! the last drills. The answer to "bring everything back as of 09:00" before anyone starts typing.

use chrono::{DateTime, SecondsFormat, Utc};
use lifeline_repo::drill::DrillRecord;
use lifeline_repo::Repository;
use lifeline_sources::postgres::{catalog::keys, status};
use serde::Serialize;

use crate::job::SOURCE_TAG;
use crate::plan::{Plan, SourceDef, SourceKind};

/// One source's part of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePoint {
    pub source: String,
    pub kind: String,
    pub tier: Option<String>,
    pub rto_target_seconds: Option<f64>,
    /// The snapshot to restore (for PostgreSQL the base backup recovery starts from).
    pub snapshot: Option<String>,
    /// RFC 3339: the point this source comes back to.
    pub recovery_point: Option<String>,
    /// How much earlier than T that point is.
    pub behind_seconds: Option<f64>,
    /// The command that restores it, with placeholders for where to.
    pub command: Option<String>,
    /// RTO of the newest drill of this source.
    pub last_drill_rto_seconds: Option<f64>,
    /// Why this source has no recovery point before T, or what limits it.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPlan {
    pub time: String,
    /// Restore order: the tightest RTO first.
    pub sources: Vec<SourcePoint>,
    /// Between the earliest and the latest recovery point of the sources.
    pub skew_seconds: Option<f64>,
    /// Sum of the last drills' RTOs (sources restored one after another); `None` when a source was
    /// never drilled.
    pub estimated_seconds: Option<f64>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The recovery plan for time `at`, from `repo`'s snapshots and `drills` (the drill records).
pub fn plan(
    plan: &Plan,
    repo: &Repository,
    drills: &[DrillRecord],
    at: DateTime<Utc>,
) -> anyhow::Result<RecoveryPlan> {
    let snapshots = repo.load_snapshots()?.items;
    let mut points = Vec::new();
    for source in &plan.sources {
        let mut point = SourcePoint {
            source: source.name.clone(),
            kind: source.kind.as_str().into(),
            tier: plan.class_of(source).map(|(c, _)| c.tier.clone()),
            rto_target_seconds: plan
                .class_of(source)
                .and_then(|(_, t)| t)
                .map(|t| t.rto.as_secs_f64()),
            snapshot: None,
            recovery_point: None,
            behind_seconds: None,
            command: None,
            last_drill_rto_seconds: drills
                .iter()
                .filter(|d| d.source == source.name)
                .max_by(|a, b| a.started.cmp(&b.started))
                .map(|d| d.rto_seconds),
            note: None,
        };
        // The newest snapshot of this source taken at or before T.
        let newest = snapshots
            .iter()
            .filter(|(_, s)| s.tags.get(SOURCE_TAG) == Some(&source.name))
            .map(|(id, s)| (id, s, s.timestamp().with_timezone(&Utc)))
            .filter(|(_, _, t)| *t <= at)
            .max_by_key(|(_, _, t)| *t);
        match newest {
            None => {
                point.note = Some(format!(
                    "no backup of {} was taken before {}",
                    source.name,
                    rfc3339(at)
                ))
            }
            Some((id, snap, taken)) => {
                point.snapshot = Some(id.to_hex());
                let mut reached = taken;
                if source.kind == SourceKind::Postgres {
                    let system_id = snap
                        .source
                        .get(keys::SYSTEM_ID)
                        .and_then(|s| s.parse().ok());
                    match pitr_point(repo, system_id, at) {
                        Ok((t, note)) => {
                            reached = t.max(taken);
                            point.note = note;
                        }
                        Err(e) => point.note = Some(format!("{e:#}")),
                    }
                }
                point.recovery_point = Some(rfc3339(reached));
                point.behind_seconds = Some((at - reached).num_milliseconds() as f64 / 1000.0);
                point.command = Some(command(source, &id.to_hex(), at));
            }
        }
        points.push(point);
    }
    points.sort_by(|a, b| {
        let rto = |p: &SourcePoint| p.rto_target_seconds.unwrap_or(f64::INFINITY);
        rto(a)
            .total_cmp(&rto(b))
            .then_with(|| a.source.cmp(&b.source))
    });
    let reached: Vec<DateTime<Utc>> = points
        .iter()
        .filter_map(|p| p.recovery_point.as_deref())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect();
    let skew_seconds = match (reached.iter().min(), reached.iter().max()) {
        (Some(a), Some(b)) => Some((*b - *a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let estimated_seconds = points
        .iter()
        .map(|p| p.last_drill_rto_seconds)
        .sum::<Option<f64>>();
    Ok(RecoveryPlan {
        time: rfc3339(at),
        sources: points,
        skew_seconds,
        estimated_seconds,
    })
}

/// Where PostgreSQL point-in-time recovery gets to for `at`: `at` itself inside the window, the end
/// of the window when the archive stops earlier (with a note saying what is lost).
fn pitr_point(
    repo: &Repository,
    system_id: Option<u64>,
    at: DateTime<Utc>,
) -> anyhow::Result<(DateTime<Utc>, Option<String>)> {
    let status = status::status(repo, system_id)?;
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let latest = parse(&status.pitr_latest);
    Ok(match latest {
        Some(latest) if latest < at => (
            latest,
            Some(match &status.pitr_blocked_at {
                Some(segment) => format!(
                    "the WAL archive stops at {} (segment {segment} is missing): the time after it cannot be recovered",
                    rfc3339(latest)
                ),
                None => format!(
                    "the newest archived WAL is from {}: the time after it cannot be recovered",
                    rfc3339(latest)
                ),
            }),
        ),
        Some(_) => (at, None),
        None => anyhow::bail!("no restorable base backup of this cluster"),
    })
}

/// The command that restores `source` to `at` from snapshot `id`; UPPERCASE words are for the
/// operator to fill in.
fn command(source: &SourceDef, id: &str, at: DateTime<Utc>) -> String {
    let short = &id[..8.min(id.len())];
    match source.kind {
        SourceKind::Postgres => format!(
            "lifeline pg restore --pgdata NEW_PGDATA --target-time '{}' --target-action promote",
            rfc3339(at)
        ),
        SourceKind::PostgresDump => {
            format!("lifeline pg restore-dump {short} --db postgresql://HOST/NEW_DATABASE")
        }
        SourceKind::Files => format!("lifeline restore {short} --target RESTORE_DIR"),
        SourceKind::Command => format!(
            "lifeline dump {short} /{} > FILE",
            source.filename.as_deref().unwrap_or(&source.name)
        ),
        SourceKind::Redis => format!("lifeline redis restore {short} --dir REDIS_DIR --start"),
        SourceKind::Scylla => {
            format!("lifeline scylla restore {short} --node NEW_CLUSTER_NODE --cql-port 9042")
        }
        SourceKind::Mongodb => {
            format!("lifeline mongo restore {short} --uri mongodb://HOST:27017/ --drop")
        }
        SourceKind::S3 => format!("lifeline s3 restore {short} --to s3://BUCKET/PREFIX"),
        SourceKind::Config => format!("lifeline restore {short} --target RESTORE_DIR"),
        SourceKind::AuditTable => format!("lifeline audit-table verify {}", source.name),
    }
}
