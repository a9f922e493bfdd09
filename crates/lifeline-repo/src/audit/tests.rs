//! Trails whose times span hours, written with chosen clocks: what `verify` tolerates (concurrent
//! beginnings, small skew, gaps explained by a deletion) and what it names.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::append::{heads, write};
use super::event::{Entry, Event};
use super::name::{self, Name};
use super::verify::{verify, ProblemKind};
use crate::storage::LocalStorage;
use crate::Repository;

fn repo(dir: &std::path::Path) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), b"pw", 1 << 20).expect("init")
}

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

/// A record written `seconds` after the base time, linking to `links`.
fn at(repo: &Repository, seconds: i64, links: &[Name]) -> Name {
    let time = base() + TimeDelta::seconds(seconds);
    let entry = Entry {
        time: name::rfc3339(&time),
        hostname: "h".into(),
        username: "u".into(),
        event: Event::new("backup", "t"),
        origin: None,
    };
    write(repo, time, links, entry).expect("write")
}

/// The problems both without and with keys (which must agree here: nothing is forged).
fn problems(repo: &Repository) -> Vec<(ProblemKind, Option<String>)> {
    let keyless = verify(repo.storage(), None, &[]).expect("verify");
    let keyed = verify(repo.storage(), Some(repo.keyring()), &[]).expect("verify");
    assert_eq!(keyless.problems, keyed.problems);
    keyed
        .problems
        .into_iter()
        .map(|p| (p.kind, p.record))
        .collect()
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;

#[test]
fn a_head_no_later_writer_saw_is_inserted() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path());
    let g = at(&repo, 0, &[]);
    let a = at(&repo, MIN, &[g]);
    let x = at(&repo, 2 * MIN, &[g]);
    at(&repo, 3 * HOUR, &[a]);
    assert_eq!(
        problems(&repo),
        vec![(ProblemKind::Inserted, Some(x.key()))]
    );
}

#[test]
fn a_second_beginning_is_inserted_but_concurrent_beginnings_are_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path());
    let g1 = at(&repo, 0, &[]);
    let g2 = at(&repo, 2, &[]);
    let a = at(&repo, MIN, &[g1, g2]);
    assert!(problems(&repo).is_empty());

    let z = at(&repo, 2 * HOUR, &[]);
    at(&repo, 2 * HOUR + MIN, &[a, z]);
    assert_eq!(
        problems(&repo),
        vec![(ProblemKind::Inserted, Some(z.key()))]
    );
}

#[test]
fn links_to_later_records_are_reordered_beyond_the_allowed_skew() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path());
    let a = at(&repo, 0, &[]);
    // A writer whose clock is three minutes behind: tolerated.
    let b = at(&repo, -3 * MIN, &[a]);
    assert!(problems(&repo).is_empty());
    let c = at(&repo, -10 * MIN, &[b]);
    assert_eq!(
        problems(&repo),
        vec![(ProblemKind::Reordered, Some(c.key()))]
    );
}

#[test]
fn a_deletion_explains_the_heads_it_leaves() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path());
    let g = at(&repo, 0, &[]);
    let a = at(&repo, MIN, &[g]);
    let b = at(&repo, 3 * HOUR, &[a]);
    at(&repo, 3 * HOUR + MIN, &[b]);
    repo.storage().delete(&a.key()).expect("delete");
    // `g` is now linked by nothing, but the deleted `a` linked it: only the deletion is reported.
    assert_eq!(problems(&repo), vec![(ProblemKind::Missing, Some(b.key()))]);
}

#[test]
fn writers_link_the_heads_within_the_window() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path());
    let g = at(&repo, 0, &[]);
    let a = at(&repo, MIN, &[g]);
    let x = at(&repo, 2 * MIN, &[g]);
    assert_eq!(
        heads(repo.storage(), &(base() + TimeDelta::minutes(3))).expect("heads"),
        vec![a, x]
    );
    // Two months later both recent months are empty: the whole trail is listed.
    let later = base() + TimeDelta::days(70);
    assert_eq!(heads(repo.storage(), &later).expect("heads"), vec![a, x]);
    // Records older than the window before the newest are not heads any more, linked or not.
    let n = at(&repo, 2 * HOUR, &[]);
    assert_eq!(
        heads(repo.storage(), &(base() + TimeDelta::hours(3))).expect("heads"),
        vec![n]
    );
}
