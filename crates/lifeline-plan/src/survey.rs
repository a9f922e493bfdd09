//! What the repository says about each plan source: its newest recovery point, how far each copy
//! is behind, the WAL archive's age, its newest restore drills, the repository's size. The daemon
//! surveys after every job and once a minute; `run --metrics-file` surveys its one source.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lifeline_repo::Repository;
use lifeline_sources::postgres::catalog::{self, keys};

use crate::job::SOURCE_TAG;
use crate::plan::{JobKind, Plan, SourceKind};

#[derive(Debug, Clone, Default)]
pub struct SourceSurvey {
    /// The newest point this source can be recovered to: its newest snapshot, or for PostgreSQL
    /// the newest archived WAL when that is later.
    pub recovery_point: Option<DateTime<Utc>>,
    /// PostgreSQL: when the newest WAL segment was archived.
    pub wal_archived: Option<DateTime<Utc>>,
    /// Copy target URL → seconds its newest snapshot of this source is behind the primary's.
    pub copy_lag: BTreeMap<String, f64>,
}

/// A source's restore drills, from their records.
#[derive(Debug, Clone, Default)]
pub struct DrillSurvey {
    /// When the newest drill that passed finished.
    pub last_passed: Option<DateTime<Utc>>,
    /// The RTO the newest drill achieved, passed or not.
    pub rto_seconds: Option<f64>,
}

/// A repository's key epochs as storage holds them (another process may have rotated since the
/// repository was opened).
#[derive(Debug, Clone, Default)]
pub struct KeySurvey {
    /// When the current epoch (the one new objects are sealed under) was created.
    pub current_created: Option<DateTime<Utc>>,
    /// Epochs not destroyed.
    pub epochs: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Survey {
    pub sources: BTreeMap<String, SourceSurvey>,
    /// Source → its drills; only sources with a drill record appear.
    pub drills: BTreeMap<String, DrillSurvey>,
    /// Repository URL → bytes stored (packs, indexes, WAL).
    pub repository_bytes: BTreeMap<String, u64>,
    /// Repository URL → its key epochs.
    pub key_epochs: BTreeMap<String, KeySurvey>,
}

/// `repo` with its keyring read again when storage holds an epoch it does not know: a process
/// that keeps a repository open (the daemon) would otherwise take snapshots sealed under the new
/// epoch for foreign ones. None when nothing changed, or when it cannot be read again (logged).
pub fn refreshed_if_rotated(repo: &Repository) -> Option<Repository> {
    match repo.new_epoch() {
        Ok(Some(_)) => match repo.refreshed() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("the repository's keys were rotated, but cannot be read again: {e}");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot list the repository's key epochs: {e}");
            None
        }
    }
}

/// The key epochs of `repo`: read from storage for format v2 (so a rotation by another process
/// counts), from the keyring for v1, whose epochs live in the key slots.
pub fn key_epochs(repo: &Repository) -> anyhow::Result<KeySurvey> {
    let parse = |created: &str| {
        DateTime::parse_from_rfc3339(created)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    if repo.keyring().format < 2 {
        let current = repo.keyring().current().ok();
        return Ok(KeySurvey {
            current_created: current.and_then(|e| parse(&e.created)),
            epochs: repo.keyring().epochs.len(),
        });
    }
    let listed = lifeline_repo::keys::list_epochs(repo.storage())?;
    Ok(KeySurvey {
        current_created: lifeline_repo::keys::current_listed(&listed)
            .and_then(|e| parse(&e.created)),
        epochs: listed.iter().filter(|e| e.destroyed.is_none()).count(),
    })
}

/// The newest snapshot of each (plan source, job) in `repo`: when that job last succeeded. The
/// daemon judges missed schedules by it.
pub fn newest_by_job(
    repo: &Repository,
) -> anyhow::Result<BTreeMap<(String, JobKind), DateTime<Utc>>> {
    let mut out = BTreeMap::new();
    if !repo.can_read_backups() {
        // A write-only credential cannot tell when a job last ran: as for a job that never ran.
        tracing::info!(
            "a `{}` credential cannot read snapshots, so no job's last run is known",
            repo.role()
        );
        return Ok(out);
    }
    for (_, s) in repo.load_snapshots()?.items {
        let Some(source) = s.tags.get(SOURCE_TAG) else {
            continue;
        };
        let job = match s.source.get(keys::BACKUP_TYPE).map(String::as_str) {
            Some("incremental") => JobKind::Incremental,
            Some("full") => JobKind::Full,
            _ => JobKind::Backup,
        };
        let t = s.timestamp().with_timezone(&Utc);
        let e = out.entry((source.clone(), job)).or_insert(t);
        *e = (*e).max(t);
    }
    Ok(out)
}

/// Newest snapshot time per plan source in `repo`, whatever its job.
fn newest_by_source(repo: &Repository) -> anyhow::Result<BTreeMap<String, DateTime<Utc>>> {
    let mut newest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for ((source, _), t) in newest_by_job(repo)? {
        let e = newest.entry(source).or_insert(t);
        *e = (*e).max(t);
    }
    Ok(newest)
}

fn size(repo: &Repository) -> anyhow::Result<u64> {
    let o = lifeline_repo::stats::objects(repo)?;
    Ok(o.pack_bytes + o.index_bytes + o.named_bytes)
}

/// Survey `repo` and the opened copies (URL, repository) for the plan's sources. A copy that cannot
/// be read simply has no lag figure.
pub fn survey(
    plan: &Plan,
    repo: &Repository,
    copies: &[(String, Repository)],
) -> anyhow::Result<Survey> {
    let mut out = Survey::default();
    if let Some(url) = &plan.repository.url {
        out.repository_bytes.insert(url.clone(), size(repo)?);
        out.key_epochs.insert(url.clone(), key_epochs(repo)?);
    }
    if !repo.can_read_backups() {
        // Recovery points, WAL ages and copy lags come from snapshots, which a write-only
        // credential cannot open: only the sizes, which come from listings, are known.
        for (url, r) in copies {
            if let Ok(bytes) = size(r) {
                out.repository_bytes.insert(url.clone(), bytes);
            }
        }
        return Ok(out);
    }
    let newest = newest_by_source(repo)?;
    let in_copies: Vec<(String, BTreeMap<String, DateTime<Utc>>)> = copies
        .iter()
        .filter_map(|(url, r)| match newest_by_source(r) {
            Ok(n) => Some((url.clone(), n)),
            Err(e) => {
                tracing::warn!("survey of copy {url}: {e:#}");
                None
            }
        })
        .collect();
    for (url, r) in copies {
        if let Ok(bytes) = size(r) {
            out.repository_bytes.insert(url.clone(), bytes);
        }
        if let Ok(keys) = key_epochs(r) {
            out.key_epochs.insert(url.clone(), keys);
        }
    }
    let backups = if plan.sources.iter().any(|s| s.kind == SourceKind::Postgres) {
        catalog::base_backups(repo)?
    } else {
        Vec::new()
    };
    for source in &plan.sources {
        let mut s = SourceSurvey {
            recovery_point: newest.get(&source.name).copied(),
            ..SourceSurvey::default()
        };
        if source.kind == SourceKind::Postgres {
            let cluster = backups
                .iter()
                .rev()
                .find(|b| b.snapshot.tags.get(SOURCE_TAG) == Some(&source.name))
                .map(|b| b.system_id);
            if let Some(system_id) = cluster {
                let status = lifeline_sources::postgres::status::status(repo, Some(system_id))?;
                s.wal_archived = status
                    .newest_wal_archived_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if let (Some(w), Some(p)) = (s.wal_archived, s.recovery_point) {
                    s.recovery_point = Some(w.max(p));
                }
            }
        }
        if let Some(primary) = newest.get(&source.name) {
            for (url, copy) in &in_copies {
                let lag = match copy.get(&source.name) {
                    Some(t) => (*primary - *t).num_milliseconds().max(0) as f64 / 1000.0,
                    // Never copied: behind by the primary's whole age.
                    None => (Utc::now() - *primary).num_milliseconds().max(0) as f64 / 1000.0,
                };
                s.copy_lag.insert(url.clone(), lag);
            }
        }
        out.sources.insert(source.name.clone(), s);
    }
    out.drills = drills(plan, repo);
    Ok(out)
}

/// The newest drill and newest passed drill of each plan source. Drill records are evidence, not
/// something a survey depends on: a repository whose records cannot be listed has no drill figures.
fn drills(plan: &Plan, repo: &Repository) -> BTreeMap<String, DrillSurvey> {
    let newest = match crate::drill::newest_records(repo) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("survey of drill records: {e:#}");
            return BTreeMap::new();
        }
    };
    newest
        .into_iter()
        .filter(|(source, _)| plan.source(source).is_some())
        .map(|(source, (last, passed))| {
            let last_passed = passed.and_then(|r| {
                DateTime::parse_from_rfc3339(&r.finished)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            });
            let survey = DrillSurvey {
                last_passed,
                rto_seconds: Some(last.rto_seconds),
            };
            (source, survey)
        })
        .collect()
}
