//! `plan show`: each source with its class, tier, targets and next run times.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::Plan;

#[derive(Debug, Serialize)]
pub struct PlanView {
    pub repository: String,
    pub copies: Vec<String>,
    pub sources: Vec<SourceView>,
}

#[derive(Debug, Serialize)]
pub struct SourceView {
    pub name: String,
    pub kind: String,
    pub class: String,
    pub tier: String,
    pub rto_seconds: Option<u64>,
    pub rpo_seconds: Option<u64>,
    /// The retention policy, as `forget` would describe it.
    pub retention: Option<String>,
    /// The repository, then each copy target.
    pub targets: Vec<String>,
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Serialize)]
pub struct ScheduleView {
    pub job: String,
    pub cron: String,
    pub timezone: String,
    /// The next three times, RFC 3339 UTC.
    pub next: Vec<String>,
}

/// The plan as `plan show` prints it; schedules counted from `now`. Call after [`super::check`].
pub fn show(plan: &Plan, now: DateTime<Utc>) -> PlanView {
    let repository = plan.repository.url.clone().unwrap_or_default();
    let copies: Vec<String> = plan
        .copies
        .iter()
        .map(|c| c.url.clone().unwrap_or_default())
        .collect();
    let sources = plan
        .sources
        .iter()
        .map(|s| {
            let (class, tier) = match plan.class_of(s) {
                Some((c, t)) => (Some(c), t),
                None => (None, None),
            };
            let schedules = plan
                .schedules(s)
                .unwrap_or_default()
                .into_iter()
                .map(|js| {
                    let mut next = Vec::new();
                    let mut t = now;
                    while next.len() < 3 {
                        match js.schedule.next_after(t) {
                            Some(n) => {
                                next.push(n.to_rfc3339_opts(SecondsFormat::Secs, true));
                                t = n;
                            }
                            None => break,
                        }
                    }
                    ScheduleView {
                        job: js.job.as_str().into(),
                        cron: js.schedule.expression().into(),
                        timezone: js.schedule.timezone().into(),
                        next,
                    }
                })
                .collect();
            SourceView {
                name: s.name.clone(),
                kind: s.kind.as_str().into(),
                class: s.class.clone(),
                tier: class.map(|c| c.tier.clone()).unwrap_or_default(),
                rto_seconds: tier.map(|t| t.rto.as_secs()),
                rpo_seconds: tier.map(|t| t.rpo.as_secs()),
                retention: class
                    .and_then(|c| c.retention.as_ref())
                    .map(|r| r.policy().to_string()),
                targets: std::iter::once(repository.clone())
                    .chain(copies.iter().cloned())
                    .collect(),
                schedules,
            }
        })
        .collect();
    PlanView {
        repository,
        copies,
        sources,
    }
}
