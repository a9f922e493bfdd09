//! `lifeline key list|add|remove|passwd`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// `key list --json` opened with `password_file`: the slots' (id, current) pairs.
#[track_caller]
fn key_list(repo: &Repo, password_file: &Path) -> Vec<(String, bool)> {
    let out = repo.run_with_password_file(password_file, ["key", "list", "--json"]);
    out.assert_success();
    let Some(Value::Array(keys)) = out.json().get("slots").cloned() else {
        panic!("key list --json has no array `slots`\n{}", out.describe())
    };
    keys.iter()
        .map(|k| {
            let current = k
                .get("current")
                .and_then(Value::as_bool)
                .unwrap_or_else(|| panic!("key without boolean `current`: {k}"));
            (json_str(k, "id").to_string(), current)
        })
        .collect()
}

#[track_caller]
fn current_key(keys: &[(String, bool)]) -> String {
    let current: Vec<&String> = keys.iter().filter(|(_, c)| *c).map(|(id, _)| id).collect();
    assert_eq!(
        current.len(),
        1,
        "exactly one key must be current: {keys:?}"
    );
    current[0].clone()
}

#[track_caller]
fn assert_key_files_private(repo: &Repo, expected_count: usize) {
    let files = repo.key_files();
    assert_eq!(files.len(), expected_count, "key files: {files:?}");
    for f in files {
        assert_eq!(
            mode_of(&f),
            0o600,
            "{} has mode {:o}",
            f.display(),
            mode_of(&f)
        );
    }
}

/// Every key id listed must name a file in keys/ (as id or prefix of one).
#[track_caller]
fn assert_ids_match_key_files(repo: &Repo, keys: &[(String, bool)]) {
    let names: Vec<String> = repo.key_files().iter().map(|p| file_name_str(p)).collect();
    for (id, _) in keys {
        assert!(
            names.iter().any(|n| n.starts_with(id.as_str())),
            "key id {id} matches no file in keys/ {names:?}"
        );
    }
}

/// `lifeline key SUB --new-password-file FILE`, which must succeed.
fn key_with_new_password(repo: &Repo, sub: &str, new_password_file: &Path) {
    repo.run([
        std::ffi::OsStr::new("key"),
        sub.as_ref(),
        "--new-password-file".as_ref(),
        new_password_file.as_os_str(),
    ])
    .assert_success();
}

/// The test file's bytes, read back with another password.
fn dump_with(repo: &Repo, password_file: &Path, src: &Path) -> Vec<u8> {
    let out = repo.run_with_password_file(
        password_file,
        [
            std::ffi::OsStr::new("dump"),
            "latest".as_ref(),
            src.join("f").as_os_str(),
        ],
    );
    out.assert_success();
    out.stdout
}

fn repo_with_a_snapshot() -> (Repo, std::path::PathBuf) {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), b"guarded by keys");
    repo.backup(&[&src], &[]);
    (repo, src)
}

#[test]
fn init_writes_one_private_key() {
    let repo = Repo::init();
    assert_key_files_private(&repo, 1);
    let keys = key_list(&repo, &repo.password_file);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].1, "the only key must be current: {keys:?}");
    assert_ids_match_key_files(&repo, &keys);
}

#[test]
fn added_key_opens_the_repository_and_both_are_listed() {
    let (repo, src) = repo_with_a_snapshot();
    let pw2 = repo.sandbox.write("password2", "second password");
    key_with_new_password(&repo, "add", &pw2);
    assert_key_files_private(&repo, 2);

    assert_eq!(dump_with(&repo, &pw2, &src), b"guarded by keys");

    let by_first = key_list(&repo, &repo.password_file);
    let by_second = key_list(&repo, &pw2);
    assert_eq!(by_first.len(), 2, "{by_first:?}");
    assert_eq!(by_second.len(), 2, "{by_second:?}");
    assert_ids_match_key_files(&repo, &by_first);
    let (c1, c2) = (current_key(&by_first), current_key(&by_second));
    assert_ne!(c1, c2, "each password must mark its own key as current");
}

#[test]
fn key_passwd_replaces_the_current_key_and_old_password_exits_12() {
    let (repo, src) = repo_with_a_snapshot();
    let old_id = current_key(&key_list(&repo, &repo.password_file));
    let pw3 = repo.sandbox.write("password3", "the new one");
    key_with_new_password(&repo, "passwd", &pw3);

    repo.run(["snapshots"]).assert_code(EXIT_WRONG_PASSWORD);
    let keys = key_list(&repo, &pw3);
    assert_eq!(keys.len(), 1, "passwd must replace, not add: {keys:?}");
    assert_ne!(current_key(&keys), old_id, "the key id did not change");
    assert_key_files_private(&repo, 1);

    assert_eq!(dump_with(&repo, &pw3, &src), b"guarded by keys");
}

#[test]
fn removing_the_current_key_is_refused() {
    let (repo, _src) = repo_with_a_snapshot();
    let pw2 = repo.sandbox.write("password2", "second password");
    key_with_new_password(&repo, "add", &pw2);
    let current = current_key(&key_list(&repo, &repo.password_file));

    repo.run(["key", "remove", current.as_str()])
        .assert_failure();
    assert_eq!(key_list(&repo, &repo.password_file).len(), 2);
    assert_key_files_private(&repo, 2);
    repo.run(["snapshots"]).assert_success();
}

#[test]
fn removing_another_key_revokes_its_password() {
    let (repo, _src) = repo_with_a_snapshot();
    let pw2 = repo.sandbox.write("password2", "second password");
    key_with_new_password(&repo, "add", &pw2);
    let keys = key_list(&repo, &repo.password_file);
    let other: Vec<&String> = keys.iter().filter(|(_, c)| !c).map(|(id, _)| id).collect();
    assert_eq!(other.len(), 1, "{keys:?}");
    let other = other[0].clone();

    repo.run(["key", "remove", other.as_str()]).assert_success();
    repo.run_with_password_file(&pw2, ["snapshots"])
        .assert_code(EXIT_WRONG_PASSWORD);
    let keys = key_list(&repo, &repo.password_file);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_key_files_private(&repo, 1);
    assert_eq!(repo.snapshots().len(), 1);
}
