use lifeline_repo::storage::{conformance, LocalStorage, Storage};

#[test]
fn local_storage_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::run(&LocalStorage::new(dir.path()));
}

#[test]
fn local_objects_are_private_and_staging_is_not_listed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = LocalStorage::new(dir.path());
    s.put("keys/abc", b"slot").expect("put");
    let mode = std::fs::metadata(dir.path().join("keys/abc"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(dir.path().join("tmp/leftover"), b"x").expect("write");
    assert!(s
        .list("")
        .expect("list")
        .iter()
        .all(|o| !o.key.starts_with("tmp")));
}

#[test]
fn keys_cannot_escape_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = LocalStorage::new(dir.path());
    for key in ["../x", "data/../../x", "/abs", "a//b", ""] {
        assert!(s.put(key, b"x").is_err(), "{key:?} must be refused");
    }
}
