//! The audit trail: records form a chain that survives concurrent writers and copies, and every way
//! of tampering with it is detected and named, with keys and, where the plaintext allows, without.

use std::sync::Arc;

use lifeline_repo::audit::{
    self, append, import, load, load_since, Envelope, Event, ImportError, ProblemKind, Verification,
};
use lifeline_repo::storage::{LocalStorage, Storage};
use lifeline_repo::{Id, Repository};

fn repo(dir: &std::path::Path, pw: &[u8]) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), pw, 1 << 20).expect("init")
}

/// Append `n` backups of targets `t0`, `t1` … and return their IDs.
fn trail(repo: &Repository, n: usize) -> Vec<Id> {
    (0..n)
        .map(|i| append(repo, &Event::new("backup", &format!("t{i}"))).expect("append"))
        .collect()
}

fn keyed(repo: &Repository, anchors: &[Id]) -> Verification {
    audit::verify(repo.storage(), Some(repo.keyring()), anchors).expect("verify")
}

fn keyless(repo: &Repository, anchors: &[Id]) -> Verification {
    audit::verify(repo.storage(), None, anchors).expect("verify")
}

/// The storage key of the record `id`.
fn key_of(storage: &dyn Storage, id: &Id) -> String {
    storage
        .list(audit::PREFIX)
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .find(|k| k.ends_with(&id.to_hex()))
        .expect("record is stored")
}

/// The record's name as links state it: its key without `audit/`.
fn link_of(key: &str) -> String {
    key.trim_start_matches(audit::PREFIX).to_string()
}

fn envelope(storage: &dyn Storage, key: &str) -> Envelope {
    Envelope::from_bytes(&storage.get(key).expect("get"), key).expect("envelope")
}

/// Store `envelope` under the name its bytes give it; returns the key.
fn put(storage: &dyn Storage, envelope: &Envelope) -> String {
    let (key, bytes) = envelope.stored().expect("a valid time");
    assert!(storage.put(&key, &bytes).expect("put"));
    key
}

/// What a keyless attacker does: rewrite a record's envelope and store it under its new name.
fn rewrite(storage: &dyn Storage, key: &str, change: impl FnOnce(&mut Envelope)) -> String {
    let mut env = envelope(storage, key);
    change(&mut env);
    storage.delete(key).expect("delete");
    put(storage, &env)
}

fn problems(v: &Verification) -> Vec<(ProblemKind, Option<String>)> {
    v.problems
        .iter()
        .map(|p| (p.kind, p.record.clone()))
        .collect()
}

fn has(v: &Verification, kind: ProblemKind, key: &str) -> bool {
    v.problems
        .iter()
        .any(|p| p.kind == kind && p.record.as_deref() == Some(key))
}

#[test]
fn appended_records_form_a_chain_that_verifies() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path(), b"pw");
    let ids = trail(&repo, 5);

    let records = load(&repo).expect("load");
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(records[0].links.is_empty());
    for pair in records.windows(2) {
        assert_eq!(pair[1].links, vec![pair[0].id]);
    }
    assert_eq!(records[2].entry.event.target, "t2");
    assert_eq!(records[2].entry.event.action, "backup");
    assert_eq!(records[2].entry.hostname, lifeline_repo::hostname());
    assert!(records.iter().all(|r| r.entry.origin.is_none()));

    for (v, authenticated) in [(keyed(&repo, &ids), true), (keyless(&repo, &ids), false)] {
        assert!(v.is_clean(), "{:?}", v.problems);
        assert_eq!(v.authenticated, authenticated);
        assert_eq!(v.records, 5);
        assert_eq!(v.heads, vec![ids[4]]);
        assert_eq!(v.first.as_deref(), Some(records[0].entry.time.as_str()));
        assert_eq!(v.last.as_deref(), Some(records[4].entry.time.as_str()));
    }

    let first = chrono::DateTime::parse_from_rfc3339(&records[3].entry.time)
        .expect("time")
        .with_timezone(&chrono::Utc);
    let since: Vec<Id> = load_since(&repo, first)
        .expect("load")
        .iter()
        .map(|r| r.id)
        .collect();
    let expected: Vec<Id> = records
        .iter()
        .filter(|r| r.entry.time >= records[3].entry.time)
        .map(|r| r.id)
        .collect();
    assert_eq!(since, expected);
    assert!(since.ends_with(&ids[3..]));
}

#[test]
fn a_deleted_record_is_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path(), b"pw");
    let ids = trail(&repo, 5);
    let storage = repo.storage();
    let deleted = key_of(storage, &ids[2]);
    let follower = key_of(storage, &ids[3]);
    storage.delete(&deleted).expect("delete");

    for v in [keyed(&repo, &[]), keyless(&repo, &[])] {
        assert_eq!(
            problems(&v),
            vec![(ProblemKind::Missing, Some(follower.clone()))]
        );
        assert!(v.problems[0].message.contains(&link_of(&deleted)));
        assert!(v.problems[0].message.contains("deleted"));
        let json = serde_json::to_value(&v).expect("json");
        assert_eq!(json["problems"][0]["kind"], "missing");
        // The deleted record's predecessor is linked by nothing now.
        assert_eq!(v.heads, vec![ids[1], ids[4]]);
        assert_eq!(json["heads"][1], ids[4].to_hex());
    }
}

#[test]
fn a_flipped_byte_is_altered() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path(), b"pw");
    let ids = trail(&repo, 5);
    let storage = repo.storage();
    let key = key_of(storage, &ids[2]);
    let mut bytes = storage.get(&key).expect("get");
    let at = bytes.len() - 20;
    bytes[at] ^= 0x01;
    storage.delete(&key).expect("delete");
    storage.put(&key, &bytes).expect("put");

    for v in [keyed(&repo, &[]), keyless(&repo, &[])] {
        assert_eq!(
            problems(&v),
            vec![(ProblemKind::Altered, Some(key.clone()))]
        );
    }
    let err = load(&repo).expect_err("an altered record does not load");
    assert!(err.to_string().contains(&key), "{err}");
}

#[test]
fn reordered_records_are_detected() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path(), b"pw");
    let ids = trail(&repo, 5);
    let storage = repo.storage();
    let keys: Vec<String> = ids.iter().map(|id| key_of(storage, id)).collect();

    // Swap the places of records 1 and 2 by exchanging their times and links: the names stay
    // consistent with the bytes, but the records that named the originals now name nothing.
    let (one, two) = (envelope(storage, &keys[1]), envelope(storage, &keys[2]));
    let new1 = rewrite(storage, &keys[1], |e| {
        e.time = two.time.clone();
        e.links = two.links.clone();
    });
    let new2 = rewrite(storage, &keys[2], |e| {
        e.time = one.time.clone();
        e.links = one.links.clone();
    });
    let v = keyless(&repo, &[]);
    assert!(!v.is_clean());
    assert!(has(&v, ProblemKind::Missing, &new1), "{:?}", v.problems);
    assert!(has(&v, ProblemKind::Missing, &keys[3]), "{:?}", v.problems);
    let v = keyed(&repo, &[]);
    assert!(has(&v, ProblemKind::Altered, &new1), "{:?}", v.problems);
    assert!(has(&v, ProblemKind::Altered, &new2), "{:?}", v.problems);
}

#[test]
fn a_record_moved_after_its_followers_is_reordered() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path(), b"pw");
    let ids = trail(&repo, 5);
    let storage = repo.storage();
    let keys: Vec<String> = ids.iter().map(|id| key_of(storage, id)).collect();

    // Move record 1 half an hour later and rewrite every follower's link so that every name still
    // matches: only the times give the reordering away without keys.
    let moved = rewrite(storage, &keys[1], |e| {
        let t = chrono::NaiveDateTime::parse_from_str(&e.time, "%Y%m%dT%H%M%S%.3fZ").expect("time")
            + chrono::TimeDelta::minutes(30);
        e.time = t.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    });
    let mut previous = moved.clone();
    let mut renamed = vec![moved.clone()];
    for key in &keys[2..] {
        let link = link_of(&previous);
        previous = rewrite(storage, key, |e| e.links = vec![link]);
        renamed.push(previous.clone());
    }
    let v = keyless(&repo, &[]);
    assert_eq!(
        problems(&v),
        vec![(ProblemKind::Reordered, Some(renamed[1].clone()))]
    );
    assert!(
        v.problems[0].message.contains("later than itself"),
        "{}",
        v.problems[0].message
    );
    let v = keyed(&repo, &[]);
    for key in &renamed {
        assert!(
            has(&v, ProblemKind::Altered, key),
            "{key}: {:?}",
            v.problems
        );
    }
    assert!(has(&v, ProblemKind::Reordered, &renamed[1]));
}

#[test]
fn inserted_records_are_detected() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (repo, other) = (repo(a.path(), b"pw"), repo(b.path(), b"other"));
    let ids = trail(&repo, 5);
    let storage = repo.storage();
    let middle = link_of(&key_of(storage, &ids[2]));

    // A record sealed with another repository's keys, dressed up as one of this trail's.
    let foreign_id = append(&other, &Event::new("forget", "everything")).expect("append");
    let mut forged = envelope(other.storage(), &key_of(other.storage(), &foreign_id));
    forged.repository = repo.config().id.clone();
    forged.links = vec![middle.clone()];
    let forged_key = put(storage, &forged);
    assert_eq!(
        problems(&keyed(&repo, &[])),
        vec![(ProblemKind::Inserted, Some(forged_key.clone()))]
    );
    // Without keys a well-formed record is indistinguishable from a genuine one (format.md §14).
    assert!(keyless(&repo, &[]).is_clean());
    storage.delete(&forged_key).expect("delete");

    // A body that was never sealed: a valid header, then bytes of the forger's choosing.
    let mut forged = envelope(storage, &key_of(storage, &ids[4]));
    forged.links = vec![middle.clone()];
    forged.body[48..].fill(0);
    let forged_key = put(storage, &forged);
    assert_eq!(
        problems(&keyed(&repo, &[])),
        vec![(ProblemKind::Inserted, Some(forged_key.clone()))]
    );
    storage.delete(&forged_key).expect("delete");

    // Another repository's record copied as it is: its envelope names that repository.
    let foreign_key = key_of(other.storage(), &foreign_id);
    let bytes = other.storage().get(&foreign_key).expect("get");
    storage.put(&foreign_key, &bytes).expect("put");
    for v in [keyed(&repo, &[]), keyless(&repo, &[])] {
        assert_eq!(
            problems(&v),
            vec![(ProblemKind::Inserted, Some(foreign_key.clone()))]
        );
        assert!(v.problems[0].message.contains(&other.config().id));
    }
}

#[test]
fn deleting_the_newest_records_shows_only_against_an_anchor() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = repo(dir.path(), b"pw");
    let ids = trail(&repo, 5);
    let anchor = keyed(&repo, &[]).heads;
    assert_eq!(anchor, vec![ids[4]]);
    repo.storage()
        .delete(&key_of(repo.storage(), &ids[4]))
        .expect("delete");

    assert!(keyed(&repo, &[]).is_clean());
    assert!(keyless(&repo, &[]).is_clean());
    for v in [keyed(&repo, &anchor), keyless(&repo, &anchor)] {
        assert_eq!(problems(&v), vec![(ProblemKind::Missing, None)]);
        assert!(v.problems[0].message.contains(&ids[4].to_hex()));
    }
}

#[test]
fn concurrent_writers_keep_a_valid_trail() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    repo(&path, b"pw");
    // Both writers start appending together, on an empty trail.
    let start = Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (path, start) = (path.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let repo =
                    Repository::open(Arc::new(LocalStorage::new(&path)), b"pw").expect("open");
                start.wait();
                (0..20)
                    .map(|i| {
                        append(&repo, &Event::new("backup", &format!("writer {w} #{i}")))
                            .expect("append")
                    })
                    .collect::<Vec<Id>>()
            })
        })
        .collect();
    let written: Vec<Id> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer thread"))
        .collect();
    let repo = Repository::open(Arc::new(LocalStorage::new(&path)), b"pw").expect("open");

    let v = keyed(&repo, &[]);
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.records, 40);
    assert!(!v.heads.is_empty() && v.heads.len() <= 2, "{:?}", v.heads);
    assert!(keyless(&repo, &[]).is_clean());
    let loaded = load(&repo).expect("load");
    assert_eq!(loaded.len(), 40);
    assert!(written.iter().all(|id| loaded.iter().any(|r| r.id == *id)));
    // Each writer's records are in its order: every record follows the ones it links to.
    for w in 0..2 {
        let mine: Vec<String> = loaded
            .iter()
            .map(|r| r.entry.event.target.clone())
            .filter(|t| t.starts_with(&format!("writer {w} ")))
            .collect();
        let expected: Vec<String> = (0..20).map(|i| format!("writer {w} #{i}")).collect();
        assert_eq!(mine, expected);
    }

    let last = append(&repo, &Event::new("report", "monthly")).expect("append");
    let v = keyed(&repo, &[]);
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.heads, vec![last]);
}

#[test]
fn import_copies_a_trail_once_and_it_verifies_with_the_destination_keys() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (src, dst) = (repo(a.path(), b"one"), repo(b.path(), b"two"));
    let src_ids = trail(&src, 3);
    let own = trail(&dst, 2);

    assert_eq!(import(&src, &dst).expect("import"), 3);
    assert_eq!(import(&src, &dst).expect("import"), 0);
    let v = keyed(&dst, &own);
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.records, 5);
    assert_eq!(v.heads.len(), 1);
    assert!(keyless(&dst, &[]).is_clean());

    let source = load(&src).expect("load");
    let copied = load(&dst).expect("load");
    assert_eq!(copied[..2].iter().map(|r| r.id).collect::<Vec<_>>(), own);
    // The first copy continues the destination's chain; the others follow their source's links.
    assert_eq!(copied[2].links, vec![own[1]]);
    assert_eq!(copied[3].links, vec![copied[2].id]);
    for (copy, original) in copied[2..].iter().zip(&source) {
        let origin = copy.entry.origin.as_ref().expect("origin");
        assert_eq!(origin.repository, src.config().id);
        assert_eq!(origin.record, original.id);
        assert_eq!(copy.entry.event, original.entry.event);
        assert_eq!(copy.entry.time, original.entry.time);
    }
    assert_eq!(
        copied[2..]
            .iter()
            .filter_map(|r| r.entry.origin.as_ref().map(|o| o.record))
            .collect::<Vec<_>>(),
        src_ids
    );

    // A later record of the source follows its predecessor's copy, and the destination's own.
    let own_later = append(&dst, &Event::new("check", "all")).expect("append");
    let later = append(&src, &Event::new("forget", "t0")).expect("append");
    assert_eq!(import(&src, &dst).expect("import"), 1);
    let copied = load(&dst).expect("load");
    let last = copied.last().expect("records");
    assert_eq!(last.entry.origin.as_ref().map(|o| o.record), Some(later));
    assert!(last.links.contains(&own_later));
    let v = keyed(&dst, &[]);
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.heads, vec![last.id]);

    // Copying back sends only the destination's own records: the source's come home as themselves.
    assert_eq!(import(&dst, &src).expect("import back"), 3);
    assert_eq!(import(&src, &dst).expect("import"), 0);
    let v = keyed(&src, &[]);
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.records, 4 + 3);
}

#[test]
fn import_refuses_a_damaged_source() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (src, dst) = (repo(a.path(), b"one"), repo(b.path(), b"two"));
    let ids = trail(&src, 3);
    src.storage()
        .delete(&key_of(src.storage(), &ids[1]))
        .expect("delete");
    match import(&src, &dst) {
        Err(ImportError::SourceDamaged { problems, .. }) => {
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].kind, ProblemKind::Missing);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(keyed(&dst, &[]).records, 0);
}
