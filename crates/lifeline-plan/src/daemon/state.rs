//! What the daemon knows, shared by its loop, its job threads and its HTTP server: the plan in
//! force, the metrics, each source's last run and recent failures, the newest survey.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::report::{Failure, JobReport, Outcome, SourceStatus, StatusReport};
use crate::survey::Survey;

/// Failures kept per source for the status page.
const RECENT_FAILURES: usize = 10;

#[derive(Default)]
struct SourceState {
    running: bool,
    last_run: Option<JobReport>,
    failures: VecDeque<Failure>,
}

#[derive(Default)]
struct Inner {
    sources: BTreeMap<String, SourceState>,
    next_runs: BTreeMap<String, DateTime<Utc>>,
    survey: Survey,
    reload_error: Option<String>,
}

pub struct Shared {
    plan: Mutex<Arc<Plan>>,
    pub metrics: Metrics,
    inner: Mutex<Inner>,
    plan_path: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves consistent data here (plain assignments), so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(plan: Plan, metrics: Metrics, plan_path: &Path) -> Self {
        Shared {
            plan: Mutex::new(Arc::new(plan)),
            metrics,
            inner: Mutex::new(Inner::default()),
            plan_path: plan_path.display().to_string(),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        Arc::clone(&lock(&self.plan))
    }

    pub fn replace_plan(&self, plan: Plan) {
        self.metrics.declare(&plan);
        *lock(&self.plan) = Arc::new(plan);
        lock(&self.inner).reload_error = None;
    }

    pub fn reload_refused(&self, error: String) {
        lock(&self.inner).reload_error = Some(error);
    }

    pub fn set_running(&self, source: &str, running: bool) {
        lock(&self.inner)
            .sources
            .entry(source.into())
            .or_default()
            .running = running;
        self.metrics.set_running(&self.plan(), source, running);
    }

    pub fn is_failing(&self, source: &str) -> bool {
        lock(&self.inner)
            .sources
            .get(source)
            .and_then(|s| s.last_run.as_ref())
            .is_some_and(|r| r.outcome == Outcome::Failure)
    }

    pub fn record(&self, report: JobReport) {
        self.metrics.record(&self.plan(), &report);
        let mut inner = lock(&self.inner);
        let state = inner.sources.entry(report.source.clone()).or_default();
        if report.outcome == Outcome::Failure {
            state.failures.push_front(Failure {
                time: report.finished.clone(),
                message: report.message.clone().unwrap_or_default(),
            });
            state.failures.truncate(RECENT_FAILURES);
        }
        state.last_run = Some(report);
    }

    pub fn set_next_runs(&self, next: BTreeMap<String, DateTime<Utc>>) {
        lock(&self.inner).next_runs = next;
    }

    pub fn set_survey(&self, survey: Survey) {
        self.metrics.survey(&self.plan(), &survey);
        lock(&self.inner).survey = survey;
    }

    pub fn reload_error(&self) -> Option<String> {
        lock(&self.inner).reload_error.clone()
    }

    /// `/api/status` and the status page.
    pub fn status(&self) -> StatusReport {
        let plan = self.plan();
        let inner = lock(&self.inner);
        let now = Utc::now();
        let sources = plan
            .sources
            .iter()
            .map(|def| {
                let state = inner.sources.get(&def.name);
                let point = inner
                    .survey
                    .sources
                    .get(&def.name)
                    .and_then(|s| s.recovery_point);
                let labels = crate::metrics::labels_of(&plan, &def.name);
                SourceStatus {
                    name: def.name.clone(),
                    kind: labels.kind,
                    class: labels.class,
                    tier: labels.tier,
                    schedules: plan
                        .schedules(def)
                        .unwrap_or_default()
                        .iter()
                        .map(|js| format!("{}: {}", js.job.as_str(), js.schedule))
                        .collect(),
                    running: state.is_some_and(|s| s.running),
                    last_run: state.and_then(|s| s.last_run.clone()),
                    last_success: point.map(|p| p.to_rfc3339_opts(SecondsFormat::Secs, true)),
                    rpo_seconds: point.map(|p| (now - p).num_milliseconds().max(0) as f64 / 1000.0),
                    rpo_target_seconds: plan
                        .class_of(def)
                        .and_then(|(_, t)| t)
                        .map(|t| t.rpo.as_secs_f64()),
                    next_run: inner
                        .next_runs
                        .get(&def.name)
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                    recent_failures: state
                        .map(|s| s.failures.iter().cloned().collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        StatusReport {
            generated_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            host: lifeline_repo::hostname(),
            plan: self.plan_path.clone(),
            sources,
        }
    }
}
