//! A repository with the evidence of the 2026-12 additions to format version 1 (tests/fixtures/
//! v1-evidence, password `fixture-password`): an audit trail of five records (init, a plan backup of
//! source `docs`, its drill, a hold, a restore), the drill's record and the restore-scope
//! verification it wrote. Every later version must read and verify it. Never regenerate it: add a
//! new fixture.

use std::path::Path;
use std::sync::Arc;

use lifeline_repo::audit::{self, Access, EventResult};
use lifeline_repo::drill::{self, CheckResult};
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::verification::{Outcome, Scope, Verifications};
use lifeline_repo::Repository;

fn open() -> Repository {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-evidence");
    Repository::open(Arc::new(LocalStorage::new(dir)), b"fixture-password")
        .expect("open the v1-evidence fixture")
}

#[test]
fn version_1_audit_trail_still_verifies_and_reads() {
    let repo = open();
    for keyring in [Some(repo.keyring()), None] {
        let verified = audit::verify(repo.storage(), keyring, &[]).expect("verify");
        assert!(verified.is_clean(), "{:#?}", verified.problems);
        assert_eq!(verified.records, 5);
        assert_eq!(verified.heads.len(), 1);
    }
    let records = audit::load(&repo).expect("load");
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r.entry.event.action.as_str())
        .collect();
    assert_eq!(actions, ["init", "backup", "drill", "hold add", "restore"]);
    assert!(records
        .iter()
        .all(|r| r.entry.event.result == EventResult::Ok));
    // Each record links to the one before it.
    for pair in records.windows(2) {
        assert_eq!(pair[1].links, [pair[0].id]);
    }
    let backup = &records[1].entry.event;
    assert_eq!(backup.details["source"], "docs");
    let snapshot = &backup.touched[0];
    assert_eq!(snapshot.access, Access::Wrote);
    let (id, _) = repo.find_snapshot("latest").expect("snapshot");
    assert_eq!(snapshot.id, id.to_hex());
    let drill = &records[2].entry.event;
    assert_eq!(drill.details["passed"], "true");
    assert!(drill.touched.iter().any(|t| t.kind == "drill"));
}

#[test]
fn version_1_drill_record_and_restore_verification_still_read() {
    let repo = open();
    let (drills, damaged) = drill::load_all(&repo).expect("drills");
    assert!(damaged.is_empty());
    let [d] = drills.as_slice() else {
        panic!("one drill record, found {}", drills.len())
    };
    let d = &d.record;
    assert_eq!((d.source.as_str(), d.kind.as_str()), ("docs", "files"));
    assert!(d.passed);
    assert_eq!(d.tier.as_deref(), Some("tier3"));
    assert_eq!(d.rto_target_seconds, Some(4.0 * 3600.0));
    assert!(d.checks.iter().all(|c| c.result == CheckResult::Pass));
    assert!(d.steps.iter().any(|s| s.name == "restore" && s.ok));

    let (id, _) = repo.find_snapshot("latest").expect("snapshot");
    assert_eq!(d.snapshot, id.to_hex());
    let verified = Verifications::load(&repo).expect("verifications").latest();
    let v = &verified[&id];
    assert_eq!((v.scope, v.result), (Scope::Restore, Outcome::Ok));
}
