//! Retention: which snapshots a policy keeps, with restic's rules (the newest snapshot of each of the
//! last N calendar buckets, in UTC; weeks are ISO weeks), and the guards no policy overrides: a group
//! keeps its newest snapshot, held snapshots stay, the newest verified ones stay, and so does every
//! snapshot a kept one needs to be restored. A snapshot tagged [`PERMANENT_TAG`] is never removed by
//! a policy; naming it by ID still removes it (an administrator's act, which the audit trail records).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::hold::Holds;
use crate::snapshot::Snapshot;
use crate::verification::{Outcome, Verified};
use crate::Id;

/// The tag of a snapshot no policy removes (an audit-table export, whose chain a gap would break).
pub const PERMANENT_TAG: (&str, &str) = ("retention", "permanent");

/// The snapshot carries [`PERMANENT_TAG`].
pub fn is_permanent(snapshot: &Snapshot) -> bool {
    snapshot.tags.get(PERMANENT_TAG.0).map(String::as_str) == Some(PERMANENT_TAG.1)
}

/// What to keep; a count of 0 leaves its rule out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub last: usize,
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
    /// Everything within this long of the group's newest snapshot.
    pub within: Option<Duration>,
    /// Every snapshot with one of these tags.
    pub tags: Vec<(String, String)>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// `daily 30, weekly 12, within 30d`: the rules that are on, as `plan show` lists them.
impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts = [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ];
        let mut parts: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect();
        if let Some(w) = self.within {
            parts.push(format!("within {}", humantime::format_duration(w)));
        }
        parts.extend(self.tags.iter().map(|(k, v)| format!("tag {k}={v}")));
        if parts.is_empty() {
            f.write_str("keep all")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Which snapshot fields make a group; each group is judged on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub kind: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            kind: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// `host,kind,paths` (the default), any subset of `host`, `kind`, `paths`, `tags`, or `none`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut g = GroupBy {
            host: false,
            kind: false,
            paths: false,
            tags: false,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "kind" => g.kind = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                "none" => {}
                other => {
                    return Err(Error::Invalid(format!(
                        "--group-by {other:?}: use a comma-separated list of host, kind, paths, tags (or none)"
                    )))
                }
            }
        }
        Ok(g)
    }

    pub(crate) fn key(&self, s: &Snapshot) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.hostname.clone()),
            kind: self.kind.then(|| s.kind.clone()),
            paths: self.paths.then(|| s.paths.clone()),
            tags: self.tags.then(|| s.tags.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(k) = &self.kind {
            parts.push(format!("kind {k}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths {}", p.join(" ")));
        }
        if let Some(t) = &self.tags {
            let tags: Vec<String> = t.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("tags {}", tags.join(",")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// What retention must respect besides the policy.
pub struct Guards<'a> {
    pub holds: &'a Holds,
    pub verified: &'a HashMap<Id, Verified>,
    /// The newest N snapshots of each group that passed a data verification are kept.
    pub keep_verified: usize,
    /// Snapshots kept for reasons of their source (the start of a PostgreSQL PITR window).
    pub pinned: HashMap<Id, String>,
    /// The snapshots one needs to be restored (a PostgreSQL incremental backup's parent).
    pub depends_on: &'a dyn Fn(&Snapshot) -> Vec<Id>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub keep: bool,
    /// Every rule that keeps it, or why it goes.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupPlan {
    pub group: GroupKey,
    /// Newest first.
    pub snapshots: Vec<Decision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub groups: Vec<GroupPlan>,
}

impl Plan {
    pub fn removed(&self) -> Vec<Id> {
        self.decisions()
            .filter(|d| !d.keep)
            .filter_map(|d| Id::from_hex(&d.id))
            .collect()
    }

    pub fn kept(&self) -> Vec<Id> {
        self.decisions()
            .filter(|d| d.keep)
            .filter_map(|d| Id::from_hex(&d.id))
            .collect()
    }

    fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.groups.iter().flat_map(|g| g.snapshots.iter())
    }
}

fn utc(s: &Snapshot) -> DateTime<Utc> {
    s.timestamp().with_timezone(&Utc)
}

/// A calendar bucket rule: its name, how many buckets it keeps, and a time's bucket.
type BucketRule = (&'static str, usize, fn(&DateTime<Utc>) -> String);

/// The calendar bucket rules, in the order their reasons are listed.
fn buckets(policy: &Policy) -> [BucketRule; 5] {
    [
        ("hourly", policy.hourly, |t| {
            t.format("%Y-%m-%d %H:00").to_string()
        }),
        ("daily", policy.daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", policy.weekly, |t| t.format("%G-W%V").to_string()),
        ("monthly", policy.monthly, |t| t.format("%Y-%m").to_string()),
        ("yearly", policy.yearly, |t| t.format("%Y").to_string()),
    ]
}

/// Judge every group of `snapshots` by `policy` and the guards.
pub fn apply(
    snapshots: &[(Id, Snapshot)],
    policy: &Policy,
    group_by: GroupBy,
    guards: &Guards<'_>,
) -> Plan {
    plan(snapshots, group_by, guards, |group| {
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); group.len()];
        let newest = group.first().map(|(_, s)| utc(s));
        for (i, (_, s)) in group.iter().enumerate() {
            if i < policy.last {
                reasons[i].push(format!("last {}", policy.last));
            }
            if let (Some(within), Some(newest)) = (policy.within, newest) {
                let age = newest.signed_duration_since(utc(s));
                if age.to_std().map_or(true, |a| a <= within) {
                    reasons[i].push(format!("within {}", human_duration(within)));
                }
            }
            for (k, v) in &policy.tags {
                if s.tags.get(k) == Some(v) {
                    reasons[i].push(format!("tag {k}={v}"));
                }
            }
            if is_permanent(s) {
                reasons[i].push(format!(
                    "permanent (tag {}={})",
                    PERMANENT_TAG.0, PERMANENT_TAG.1
                ));
            }
        }
        for (name, count, bucket_of) in buckets(policy) {
            let mut left = count;
            let mut last: Option<String> = None;
            for (i, (_, s)) in group.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let bucket = bucket_of(&utc(s));
                if last.as_ref() != Some(&bucket) {
                    reasons[i].push(format!("{name} {bucket}"));
                    last = Some(bucket);
                    left -= 1;
                }
            }
        }
        reasons
    })
}

/// Remove exactly `ids`; refused when a guard protects one of them.
pub fn explicit(
    snapshots: &[(Id, Snapshot)],
    ids: &[Id],
    group_by: GroupBy,
    guards: &Guards<'_>,
) -> Result<Plan> {
    let named: HashSet<&Id> = ids.iter().collect();
    let plan = plan(snapshots, group_by, guards, |group| {
        group
            .iter()
            .map(|(id, _)| {
                if named.contains(id) {
                    Vec::new()
                } else {
                    vec!["not named".to_string()]
                }
            })
            .collect()
    });
    let refused: Vec<String> = plan
        .groups
        .iter()
        .flat_map(|g| g.snapshots.iter())
        .filter(|d| d.keep && Id::from_hex(&d.id).is_some_and(|id| named.contains(&id)))
        .map(|d| format!("{}: {}", d.short_id, d.reasons.join("; ")))
        .collect();
    if !refused.is_empty() {
        return Err(Error::Invalid(format!(
            "refusing to forget snapshots that lifeline must keep — {}",
            refused.join(" — ")
        )));
    }
    Ok(plan)
}

/// What the snapshots a filtered `forget` leaves alone need to be restored, transitively, among those
/// it judges: as keeping reasons for `Guards::pinned`. Without them a policy over one tag could
/// remove the parent of an incremental backup that carries another.
pub fn needed_outside(
    snapshots: &[(Id, Snapshot)],
    judged: &dyn Fn(&Snapshot) -> bool,
    depends_on: &dyn Fn(&Snapshot) -> Vec<Id>,
) -> HashMap<Id, String> {
    let by_id: HashMap<Id, &Snapshot> = snapshots.iter().map(|(id, s)| (*id, s)).collect();
    let mut stack: Vec<(Id, Id)> = snapshots
        .iter()
        .filter(|(_, s)| !judged(s))
        .map(|(id, _)| (*id, *id))
        .collect();
    let mut seen: HashSet<Id> = stack.iter().map(|(id, _)| *id).collect();
    let mut pinned = HashMap::new();
    // Each entry: a snapshot that stays, and the snapshot outside the filter it stays for.
    while let Some((id, outside)) = stack.pop() {
        let Some(snapshot) = by_id.get(&id) else {
            continue;
        };
        for needed in depends_on(snapshot) {
            if !seen.insert(needed) {
                continue;
            }
            if by_id.get(&needed).is_some_and(|s| judged(s)) {
                pinned.insert(
                    needed,
                    format!("needed to restore {} (outside the filter)", outside.short()),
                );
            }
            stack.push((needed, outside));
        }
    }
    pinned
}

/// Group, let `rules` give each snapshot (newest first) its keeping reasons, then add the guards.
fn plan(
    snapshots: &[(Id, Snapshot)],
    group_by: GroupBy,
    guards: &Guards<'_>,
    rules: impl Fn(&[&(Id, Snapshot)]) -> Vec<Vec<String>>,
) -> Plan {
    let mut groups: BTreeMap<GroupKey, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for entry in snapshots {
        groups
            .entry(group_by.key(&entry.1))
            .or_default()
            .push(entry);
    }
    let by_id: HashMap<Id, &Snapshot> = snapshots.iter().map(|(id, s)| (*id, s)).collect();
    let mut reasons: HashMap<Id, Vec<String>> = HashMap::new();
    for group in groups.values_mut() {
        group.sort_by_key(|e| std::cmp::Reverse((utc(&e.1), e.0)));
        let mut found = rules(group);
        let mut verified_left = guards.keep_verified;
        for (i, (id, _)) in group.iter().enumerate() {
            let r = &mut found[i];
            if i == 0 {
                r.push("newest of its group".into());
            }
            if let Some(hold) = guards.holds.get(id) {
                r.push(format!("legal hold: {} ({})", hold.reason, hold.by));
            }
            if let Some(v) = guards.verified.get(id).filter(|v| v.result == Outcome::Ok) {
                if verified_left > 0 {
                    verified_left -= 1;
                    r.push(format!(
                        "verified {} (newest {} verified)",
                        v.time, guards.keep_verified
                    ));
                }
            }
            if let Some(pin) = guards.pinned.get(id) {
                r.push(pin.clone());
            }
        }
        for (i, (id, _)) in group.iter().enumerate() {
            reasons.insert(*id, std::mem::take(&mut found[i]));
        }
    }
    // What a kept snapshot needs to be restored is kept too, transitively.
    let mut stack: Vec<Id> = reasons
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(id, _)| *id)
        .collect();
    while let Some(id) = stack.pop() {
        let Some(snapshot) = by_id.get(&id) else {
            continue;
        };
        for needed in (guards.depends_on)(snapshot) {
            if let Some(r) = reasons.get_mut(&needed) {
                let first = r.is_empty();
                r.push(format!("needed to restore {}", id.short()));
                if first {
                    stack.push(needed);
                }
            }
        }
    }
    Plan {
        groups: groups
            .into_iter()
            .map(|(group, members)| GroupPlan {
                group,
                snapshots: members
                    .iter()
                    .map(|(id, s)| {
                        let r = reasons.remove(id).unwrap_or_default();
                        Decision {
                            id: id.to_hex(),
                            short_id: id.short(),
                            time: s.time.clone(),
                            keep: !r.is_empty(),
                            reasons: if r.is_empty() {
                                vec!["no rule keeps it".into()]
                            } else {
                                r
                            },
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// `30d`, `12w`, `36h` as a person would write them back.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= len && secs % len == 0 {
            return format!("{}{unit}", secs / len);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hold::Holds;

    fn snap(time: &str, tags: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::new("files", vec!["/srv".into()], Id([0; 32]));
        s.time = time.into();
        s.tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    fn history() -> Vec<(Id, Snapshot)> {
        [
            "2026-11-30T14:00:00Z",
            "2026-11-30T02:00:00Z",
            "2026-11-29T02:00:00Z",
            "2026-11-28T02:00:00Z",
            "2026-11-23T02:00:00Z",
            "2026-11-22T02:00:00Z",
            "2026-11-01T02:00:00Z",
            "2026-10-15T02:00:00Z",
            "2025-12-31T02:00:00Z",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| (Id([i as u8 + 1; 32]), snap(t, &[])))
        .collect()
    }

    fn kept(plan: &Plan) -> Vec<u8> {
        let mut k: Vec<u8> = plan.kept().iter().map(|id| id.0[0]).collect();
        k.sort();
        k
    }

    fn no_deps(_: &Snapshot) -> Vec<Id> {
        Vec::new()
    }

    fn guards<'a>(holds: &'a Holds, verified: &'a HashMap<Id, Verified>) -> Guards<'a> {
        Guards {
            holds,
            verified,
            keep_verified: 1,
            pinned: HashMap::new(),
            depends_on: &no_deps,
        }
    }

    #[test]
    fn calendar_buckets_keep_the_newest_of_each_with_iso_weeks_and_utc_years() {
        let (holds, verified) = (Holds::default(), HashMap::new());
        let policy = Policy {
            daily: 2,
            weekly: 3,
            monthly: 2,
            yearly: 2,
            ..Policy::default()
        };
        let plan = apply(
            &history(),
            &policy,
            GroupBy::default(),
            &guards(&holds, &verified),
        );
        // 11-30 14:00 (every rule), 11-29 (day 2, W48), 11-22 (W47), 10-15 (2026-10), 2025-12-31
        // (year 2025, although its ISO week is 2026-W01).
        assert_eq!(kept(&plan), [1, 3, 6, 8, 9]);
        let reasons = &plan.groups[0].snapshots[8].reasons;
        assert_eq!(reasons, &["yearly 2025".to_string()]);
        assert_eq!(
            plan.groups[0].snapshots[1].reasons,
            ["no rule keeps it".to_string()]
        );
    }

    #[test]
    fn last_within_and_tags() {
        let (holds, verified) = (Holds::default(), HashMap::new());
        let mut snaps = history();
        snaps[6].1.tags.insert("audit".into(), "2026".into());
        let policy = Policy {
            last: 1,
            within: Some(Duration::from_secs(36 * 3600)),
            tags: vec![("audit".into(), "2026".into())],
            ..Policy::default()
        };
        let plan = apply(
            &snaps,
            &policy,
            GroupBy::default(),
            &guards(&holds, &verified),
        );
        // Within 36 h of the newest snapshot (not of now), inclusive, and the tagged one.
        assert_eq!(kept(&plan), [1, 2, 3, 7]);
    }

    #[test]
    fn guards_keep_the_newest_held_verified_and_what_kept_snapshots_need() {
        use crate::hold::{HoldAction, HoldRecord};
        use crate::record::{Stamp, Stored};
        let holds = Holds::from_records(
            vec![Stored {
                id: Id([99; 32]),
                stored: std::time::UNIX_EPOCH,
                record: HoldRecord {
                    stamp: Stamp::now("hold"),
                    action: HoldAction::Add,
                    snapshots: vec![Id([5; 32])],
                    reason: "case 7".into(),
                    until: None,
                },
            }],
            Utc::now(),
        );
        let ok = |time: &str| Verified {
            time: time.into(),
            result: Outcome::Ok,
            scope: crate::verification::Scope::All,
        };
        let verified: HashMap<Id, Verified> =
            [(Id([7; 32]), ok("a")), (Id([8; 32]), ok("b"))].into();
        // Snapshot 3 needs 4 (an incremental backup and its parent).
        let deps = |s: &Snapshot| {
            if s.time.starts_with("2026-11-29") {
                vec![Id([4; 32])]
            } else {
                Vec::new()
            }
        };
        let g = Guards {
            depends_on: &deps,
            pinned: [(Id([9; 32]), "pinned".to_string())].into(),
            ..guards(&holds, &verified)
        };
        let policy = Policy {
            last: 0,
            daily: 2,
            ..Policy::default()
        };
        let plan = apply(&history(), &policy, GroupBy::default(), &g);
        // 1, 3 daily; 4 needed by 3; 5 held; 7 the newest verified (8 is older); 9 pinned.
        assert_eq!(kept(&plan), [1, 3, 4, 5, 7, 9]);

        let refused = explicit(&history(), &[Id([5; 32])], GroupBy::default(), &g)
            .expect_err("a held snapshot is never removed");
        assert!(
            refused.to_string().contains("legal hold: case 7"),
            "{refused}"
        );
        let refused = explicit(&history(), &[Id([1; 32])], GroupBy::default(), &g)
            .expect_err("the newest of a group stays");
        assert!(
            refused.to_string().contains("newest of its group"),
            "{refused}"
        );
        let plan = explicit(&history(), &[Id([2; 32])], GroupBy::default(), &g).expect("plan");
        assert_eq!(plan.removed(), [Id([2; 32])]);
    }

    /// A policy over some snapshots keeps what the others need: 3 is outside the filter and needs 4,
    /// which needs 5 (an incremental chain).
    #[test]
    fn a_filtered_forget_keeps_what_snapshots_outside_the_filter_need() {
        let snaps = history();
        let deps = |s: &Snapshot| match s.time.as_str() {
            "2026-11-29T02:00:00Z" => vec![Id([4; 32])],
            "2026-11-28T02:00:00Z" => vec![Id([5; 32])],
            _ => Vec::new(),
        };
        let judged = |s: &Snapshot| !s.time.starts_with("2026-11-29");
        let pinned = needed_outside(&snaps, &judged, &deps);
        let mut ids: Vec<u8> = pinned.keys().map(|id| id.0[0]).collect();
        ids.sort();
        assert_eq!(ids, [4, 5]);
        assert!(pinned[&Id([5; 32])].contains("outside the filter"));
        assert!(needed_outside(&snaps, &|_| true, &deps).is_empty());
    }

    /// No policy removes a permanent snapshot; naming it does.
    #[test]
    fn permanent_snapshots_survive_every_policy_but_not_their_own_id() {
        let (holds, verified) = (Holds::default(), HashMap::new());
        let mut snaps = history();
        snaps[5]
            .1
            .tags
            .insert(PERMANENT_TAG.0.into(), PERMANENT_TAG.1.into());
        let policy = Policy {
            last: 1,
            ..Policy::default()
        };
        let g = Guards {
            keep_verified: 0,
            ..guards(&holds, &verified)
        };
        let plan = apply(&snaps, &policy, GroupBy::default(), &g);
        assert_eq!(kept(&plan), [1, 6]);
        assert_eq!(
            plan.groups[0].snapshots[5].reasons,
            ["permanent (tag retention=permanent)".to_string()]
        );
        let plan = explicit(&snaps, &[Id([6; 32])], GroupBy::default(), &g).expect("named");
        assert_eq!(plan.removed(), [Id([6; 32])]);
    }

    #[test]
    fn groups_are_judged_apart() {
        let (holds, verified) = (Holds::default(), HashMap::new());
        let mut snaps = history();
        for (_, s) in snaps.iter_mut().skip(4) {
            s.hostname = "other".into();
        }
        let policy = Policy {
            last: 1,
            ..Policy::default()
        };
        let plan = apply(
            &snaps,
            &policy,
            GroupBy::default(),
            &guards(&holds, &verified),
        );
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(kept(&plan), [1, 5]);
        let one = apply(
            &snaps,
            &policy,
            GroupBy::parse("kind").expect("parse"),
            &guards(&holds, &verified),
        );
        assert_eq!(kept(&one), [1]);
        assert!(GroupBy::parse("hosts").is_err());
    }
}
