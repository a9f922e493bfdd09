//! Prometheus metrics: one schema for every kind of source (labels source, kind, class, tier), plus
//! the four names the platform's dashboards already use (`backup_*`, label `database`). The daemon
//! serves them on `/metrics`; `lifeline run --metrics-file` writes them for node_exporter's textfile
//! collector. docs/monitoring.md lists each.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::plan::Plan;
use crate::report::{JobReport, Outcome};
use crate::survey::Survey;

type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;
/// A source's newest recovery point and newest archived WAL.
type Points = BTreeMap<SourceLabels, (Option<DateTime<Utc>>, Option<DateTime<Utc>>)>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
    pub kind: String,
    pub class: String,
    pub tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    source: String,
    kind: String,
    class: String,
    tier: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CopyLabels {
    source: String,
    kind: String,
    class: String,
    tier: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabels {
    repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabels {
    database: String,
}

pub struct Metrics {
    registry: Registry,
    last_success: Family<SourceLabels, GaugeF>,
    last_attempt: Family<SourceLabels, GaugeF>,
    last_duration: Family<SourceLabels, GaugeF>,
    last_size: Family<SourceLabels, GaugeF>,
    last_added: Family<SourceLabels, GaugeF>,
    runs: Family<RunLabels, CounterF>,
    failures: Family<SourceLabels, CounterF>,
    rpo: Family<SourceLabels, GaugeF>,
    rpo_target: Family<SourceLabels, GaugeF>,
    rto_target: Family<SourceLabels, GaugeF>,
    copy_lag: Family<CopyLabels, GaugeF>,
    wal_lag: Family<SourceLabels, GaugeF>,
    verified: Family<SourceLabels, GaugeF>,
    verified_restore: Family<SourceLabels, GaugeF>,
    drill_rto: Family<SourceLabels, GaugeF>,
    running: Family<SourceLabels, GaugeF>,
    repository_size: Family<RepoLabels, GaugeF>,
    key_epoch_age: Family<RepoLabels, GaugeF>,
    key_epochs: Family<RepoLabels, GaugeF>,
    key_rotation_period: Family<RepoLabels, GaugeF>,
    seed_completion: Family<DatabaseLabels, GaugeF>,
    seed_size: Family<DatabaseLabels, GaugeF>,
    seed_duration: Family<DatabaseLabels, GaugeF>,
    seed_failures: Family<DatabaseLabels, CounterF>,
    /// Source → newest recovery point and newest archived WAL, turned into ages when scraped.
    points: Mutex<Points>,
    /// Repository URL → when its current key epoch was created, turned into an age when scraped.
    epochs_created: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut m = Metrics {
            last_success: Family::default(),
            last_attempt: Family::default(),
            last_duration: Family::default(),
            last_size: Family::default(),
            last_added: Family::default(),
            runs: Family::default(),
            failures: Family::default(),
            rpo: Family::default(),
            rpo_target: Family::default(),
            rto_target: Family::default(),
            copy_lag: Family::default(),
            wal_lag: Family::default(),
            verified: Family::default(),
            verified_restore: Family::default(),
            drill_rto: Family::default(),
            running: Family::default(),
            repository_size: Family::default(),
            key_epoch_age: Family::default(),
            key_epochs: Family::default(),
            key_rotation_period: Family::default(),
            seed_completion: Family::default(),
            seed_size: Family::default(),
            seed_duration: Family::default(),
            seed_failures: Family::default(),
            points: Mutex::new(BTreeMap::new()),
            epochs_created: Mutex::new(BTreeMap::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "lifeline_last_success_timestamp_seconds",
            "Unix time the newest successful job of the source finished",
            m.last_success.clone(),
        );
        r.register(
            "lifeline_last_attempt_timestamp_seconds",
            "Unix time the newest job of the source started",
            m.last_attempt.clone(),
        );
        r.register(
            "lifeline_last_duration_seconds",
            "How long the newest job took",
            m.last_duration.clone(),
        );
        r.register(
            "lifeline_last_size_bytes",
            "Bytes the newest snapshot holds",
            m.last_size.clone(),
        );
        r.register(
            "lifeline_last_added_bytes",
            "Bytes the newest snapshot added to the repository",
            m.last_added.clone(),
        );
        r.register(
            "lifeline_runs",
            "Jobs run, by result (success, partial, failure)",
            m.runs.clone(),
        );
        r.register("lifeline_failures", "Jobs that failed", m.failures.clone());
        r.register(
            "lifeline_rpo_seconds",
            "Age of the newest recovery point (PostgreSQL: the newest archived WAL)",
            m.rpo.clone(),
        );
        r.register(
            "lifeline_rpo_target_seconds",
            "The tier's recovery point objective",
            m.rpo_target.clone(),
        );
        r.register(
            "lifeline_rto_target_seconds",
            "The tier's recovery time objective",
            m.rto_target.clone(),
        );
        r.register(
            "lifeline_copy_lag_seconds",
            "How far the copy target's newest snapshot of the source is behind the primary's",
            m.copy_lag.clone(),
        );
        r.register(
            "lifeline_wal_archive_lag_seconds",
            "Age of the newest archived WAL segment",
            m.wal_lag.clone(),
        );
        r.register(
            "lifeline_last_verified_timestamp_seconds",
            "Unix time the source's data was last read back and verified",
            m.verified.clone(),
        );
        r.register(
            "lifeline_last_verified_restore_timestamp_seconds",
            "Unix time of the source's last successful restore drill",
            m.verified_restore.clone(),
        );
        r.register(
            "lifeline_drill_rto_seconds",
            "Recovery time the source's newest restore drill achieved, start to verified target",
            m.drill_rto.clone(),
        );
        r.register(
            "lifeline_job_running",
            "1 while a job of the source runs",
            m.running.clone(),
        );
        r.register(
            "lifeline_repository_size_bytes",
            "Bytes the repository stores",
            m.repository_size.clone(),
        );
        r.register(
            "lifeline_key_epoch_age_seconds",
            "Age of the repository's current key epoch, the one new data is sealed under",
            m.key_epoch_age.clone(),
        );
        r.register(
            "lifeline_key_epochs",
            "Key epochs of the repository that are not destroyed",
            m.key_epochs.clone(),
        );
        r.register(
            "lifeline_key_rotation_period_seconds",
            "The plan's [keys] rotate_every, for the primary repository",
            m.key_rotation_period.clone(),
        );
        r.register(
            "backup_completion_time",
            "Unix time of the last completed backup (legacy name)",
            m.seed_completion.clone(),
        );
        r.register(
            "backup_size_bytes",
            "Bytes of the last backup (legacy name)",
            m.seed_size.clone(),
        );
        r.register(
            "backup_duration_seconds",
            "Duration of the last backup (legacy name)",
            m.seed_duration.clone(),
        );
        r.register(
            "backup_failures",
            "Failed backups (legacy name)",
            m.seed_failures.clone(),
        );
        m.registry = registry;
        m
    }

    /// Every source of the plan appears, with its targets, before its first job.
    pub fn declare(&self, plan: &Plan) {
        // A reload may have changed or removed the period.
        self.key_rotation_period.clear();
        if let (Some(url), Some(every)) = (&plan.repository.url, plan.keys.rotate_every) {
            self.key_rotation_period
                .get_or_create(&RepoLabels {
                    repository: url.clone(),
                })
                .set(every.as_secs_f64());
        }
        for source in &plan.sources {
            let labels = labels_of(plan, &source.name);
            if let Some((_, Some(tier))) = plan.class_of(source) {
                self.rpo_target
                    .get_or_create(&labels)
                    .set(tier.rpo.as_secs_f64());
                self.rto_target
                    .get_or_create(&labels)
                    .set(tier.rto.as_secs_f64());
            }
            self.running.get_or_create(&labels).set(0.0);
            // Zero, not absent, before the first failure: `increase()` needs the series to exist.
            self.failures.get_or_create(&labels).inc_by(0.0);
            self.seed_failures
                .get_or_create(&DatabaseLabels {
                    database: source.name.clone(),
                })
                .inc_by(0.0);
        }
    }

    pub fn set_running(&self, plan: &Plan, source: &str, running: bool) {
        self.running
            .get_or_create(&labels_of(plan, source))
            .set(if running { 1.0 } else { 0.0 });
    }

    pub fn record(&self, plan: &Plan, report: &JobReport) {
        let labels = labels_of(plan, &report.source);
        let db = DatabaseLabels {
            database: report.source.clone(),
        };
        let started = DateTime::parse_from_rfc3339(&report.started).map(|t| t.with_timezone(&Utc));
        let finished =
            DateTime::parse_from_rfc3339(&report.finished).map(|t| t.with_timezone(&Utc));
        if let Ok(t) = started {
            self.last_attempt.get_or_create(&labels).set(seconds(t));
        }
        self.last_duration
            .get_or_create(&labels)
            .set(report.duration_seconds);
        let result = match report.outcome {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Failure => "failure",
        };
        self.runs
            .get_or_create(&RunLabels {
                source: labels.source.clone(),
                kind: labels.kind.clone(),
                class: labels.class.clone(),
                tier: labels.tier.clone(),
                result: result.into(),
            })
            .inc();
        if report.outcome == Outcome::Failure {
            self.failures.get_or_create(&labels).inc();
            self.seed_failures.get_or_create(&db).inc();
            return;
        }
        if let Ok(t) = finished {
            self.last_success.get_or_create(&labels).set(seconds(t));
            self.seed_completion.get_or_create(&db).set(seconds(t));
            if report.verified == Some(true) {
                self.verified.get_or_create(&labels).set(seconds(t));
            }
        }
        self.last_size
            .get_or_create(&labels)
            .set(report.bytes as f64);
        self.last_added
            .get_or_create(&labels)
            .set(report.bytes_added as f64);
        self.seed_size.get_or_create(&db).set(report.bytes as f64);
        self.seed_duration
            .get_or_create(&db)
            .set(report.duration_seconds);
    }

    pub fn survey(&self, plan: &Plan, survey: &Survey) {
        for (repository, bytes) in &survey.repository_bytes {
            self.repository_size
                .get_or_create(&RepoLabels {
                    repository: repository.clone(),
                })
                .set(*bytes as f64);
        }
        for (repository, keys) in &survey.key_epochs {
            let labels = RepoLabels {
                repository: repository.clone(),
            };
            self.key_epochs
                .get_or_create(&labels)
                .set(keys.epochs as f64);
            if let (Some(created), Ok(mut epochs)) =
                (keys.current_created, self.epochs_created.lock())
            {
                epochs.insert(repository.clone(), created);
            }
        }
        for (name, d) in &survey.drills {
            let labels = labels_of(plan, name);
            if let Some(t) = d.last_passed {
                self.verified_restore.get_or_create(&labels).set(seconds(t));
            }
            if let Some(rto) = d.rto_seconds {
                self.drill_rto.get_or_create(&labels).set(rto);
            }
        }
        let Ok(mut points) = self.points.lock() else {
            return;
        };
        for (name, s) in &survey.sources {
            let labels = labels_of(plan, name);
            for (target, lag) in &s.copy_lag {
                self.copy_lag
                    .get_or_create(&CopyLabels {
                        source: labels.source.clone(),
                        kind: labels.kind.clone(),
                        class: labels.class.clone(),
                        tier: labels.tier.clone(),
                        target: target.clone(),
                    })
                    .set(*lag);
            }
            points.insert(labels, (s.recovery_point, s.wal_archived));
        }
    }

    /// The text exposition format, with ages computed now.
    pub fn encode(&self) -> String {
        let now = Utc::now();
        if let Ok(points) = self.points.lock() {
            for (labels, (point, wal)) in points.iter() {
                if let Some(p) = point {
                    self.rpo.get_or_create(labels).set(age(now, *p));
                }
                if let Some(w) = wal {
                    self.wal_lag.get_or_create(labels).set(age(now, *w));
                }
            }
        }
        if let Ok(epochs) = self.epochs_created.lock() {
            for (repository, created) in epochs.iter() {
                self.key_epoch_age
                    .get_or_create(&RepoLabels {
                        repository: repository.clone(),
                    })
                    .set(age(now, *created));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counters a previous `--metrics-file` held, so totals keep counting across one-shot runs.
    pub fn carry_counters(&self, plan: &Plan, previous: &str) {
        for line in previous.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |key: &str| -> Option<String> {
                let start = series.find(&format!("{key}=\""))? + key.len() + 2;
                let end = series[start..].find('"')? + start;
                Some(series[start..end].to_string())
            };
            if series.starts_with("lifeline_runs_total{") {
                if let (Some(source), Some(result)) = (label("source"), label("result")) {
                    let l = labels_of(plan, &source);
                    self.runs
                        .get_or_create(&RunLabels {
                            source: l.source,
                            kind: l.kind,
                            class: l.class,
                            tier: l.tier,
                            result,
                        })
                        .inc_by(value);
                }
            } else if series.starts_with("lifeline_failures_total{") {
                if let Some(source) = label("source") {
                    self.failures
                        .get_or_create(&labels_of(plan, &source))
                        .inc_by(value);
                }
            } else if series.starts_with("backup_failures_total{") {
                if let Some(database) = label("database") {
                    self.seed_failures
                        .get_or_create(&DatabaseLabels { database })
                        .inc_by(value);
                }
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    (now - t).num_milliseconds().max(0) as f64 / 1000.0
}

/// The labels of a plan source (empty class/tier for a name the plan lacks).
pub fn labels_of(plan: &Plan, source: &str) -> SourceLabels {
    let def = plan.source(source);
    let class = def.map(|d| d.class.clone()).unwrap_or_default();
    let tier = def
        .and_then(|d| plan.classes.get(&d.class))
        .map(|c| c.tier.clone())
        .unwrap_or_default();
    SourceLabels {
        source: source.into(),
        kind: def.map(|d| d.kind.as_str().to_string()).unwrap_or_default(),
        class,
        tier,
    }
}
