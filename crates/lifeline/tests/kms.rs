//! KMS key slots (`key add --new-kms-command`, `--kms-command`) against a real HSM: SoftHSM2 tokens
//! made by scripts/softhsm.sh, wrapped to and unwrapped inside by scripts/kms-pkcs11.sh.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use common::hsm::Token;
use common::*;
use serde_json::Value;

const LABEL: &str = "softhsm test token";

/// `lifeline ARGS --repo PATH --kms-command CMD`, with no password anywhere.
fn with_kms<I, S>(repo: &Repo, command: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = repo.sandbox.lifeline();
    c.args(args)
        .arg("--repo")
        .arg(&repo.path)
        .arg("--kms-command")
        .arg(command);
    c
}

#[track_caller]
fn run_kms<I, S>(repo: &Repo, command: &str, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mut with_kms(repo, command, args), None)
}

/// `key add --new-kms-command CMD --kms-label LABEL`, opened with the password; returns the output.
#[track_caller]
fn add_kms_slot(repo: &Repo, token: &Token, label: &str) -> Out {
    let out = repo.run([
        "key",
        "add",
        "--new-kms-command",
        &token.command,
        "--kms-label",
        label,
    ]);
    out.assert_success()
        .assert_output_contains(&format!("opened by KMS command ({label})"));
    out
}

/// A repository with a password slot and a KMS slot on a token of its own, in its sandbox.
#[track_caller]
fn repo_with_kms_slot() -> (Repo, Token) {
    let repo = Repo::init();
    let token = Token::create(&repo.join("hsm"));
    add_kms_slot(&repo, &token, LABEL);
    (repo, token)
}

/// `key list --json` as opened by `cmd`.
#[track_caller]
fn key_list(cmd: &mut Command) -> Vec<Value> {
    let out = run(cmd, None);
    out.assert_success();
    match out.json().get("slots").cloned() {
        Some(Value::Array(keys)) => keys,
        _ => panic!("key list --json has no array `slots`\n{}", out.describe()),
    }
}

/// The slot `key list --json` marks as current.
#[track_caller]
fn current(keys: &[Value]) -> &Value {
    let current: Vec<&Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1, "exactly one current slot: {keys:?}");
    current[0]
}

/// The KMS slot files of the repository, with their JSON.
fn kms_slots(repo: &Repo) -> Vec<(PathBuf, Value)> {
    repo.key_files()
        .into_iter()
        .map(|p| {
            let json: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, json)
        })
        .filter(|(_, json)| json["kdf"]["algorithm"] == "kms")
        .collect()
}

/// The one KMS slot's file and wrapped blob.
#[track_caller]
fn the_kms_slot(repo: &Repo) -> (PathBuf, Vec<u8>) {
    let mut slots = kms_slots(repo);
    assert_eq!(slots.len(), 1, "one KMS slot: {slots:?}");
    let (path, json) = slots.remove(0);
    assert_eq!(json["kms"]["label"], LABEL, "{json}");
    let wrapped = hex::decode(json["kms"]["wrapped"].as_str().unwrap()).unwrap();
    (path, wrapped)
}

#[track_caller]
fn assert_kms_failure(out: &Out) {
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("KMS command")
        .assert_output_contains("(unwrap) failed (exit status: 1)");
    assert!(
        !out.all_output().contains("wrong password"),
        "a KMS that fails is not a wrong password\n{}",
        out.describe()
    );
}

#[test]
fn a_kms_slot_opens_the_repository_without_a_password() {
    let (repo, token) = repo_with_kms_slot();
    let src = repo.join("src");
    write_random_file(&src.join("a.bin"), 1, 300 * KIB);
    write_random_file(&src.join("sub/b.bin"), 2, 40 * KIB);

    let out = run_kms(
        &repo,
        &token.command,
        [OsStr::new("backup"), src.as_os_str()],
    );
    out.assert_success();
    let target = repo.join("restored");
    run_kms(
        &repo,
        &token.command,
        [
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
        ],
    )
    .assert_success();
    assert_trees_equal(&src, &restored(&target, &src), Compare::content_only());

    let keys = key_list(&mut with_kms(
        &repo,
        &token.command,
        ["key", "list", "--json"],
    ));
    assert_eq!(keys.len(), 2, "{keys:?}");
    let kms = current(&keys);
    assert_eq!(kms["kind"], "kms", "{kms}");
    assert_eq!(kms["kms_label"], LABEL, "{kms}");
    assert_eq!(kms["role"], "admin", "{kms}");
    // In text, the label ends the KMS slot's line.
    let text = run_kms(&repo, &token.command, ["key", "list"]);
    text.assert_success();
    assert!(
        text.stdout_str()
            .lines()
            .any(|l| l.contains(" kms ") && l.trim_end().ends_with(LABEL)),
        "{}",
        text.describe()
    );

    // The same from a config file, as a scheduled job reads it.
    let config = repo.sandbox.write(
        "lifeline.toml",
        format!(
            "[repository]\nurl = {}\nkey = {{ kms_command = {} }}\n",
            serde_json::to_string(&repo.path.display().to_string()).unwrap(),
            serde_json::to_string(&token.command).unwrap()
        ),
    );
    let out = run(
        repo.sandbox
            .lifeline()
            .args(["snapshots", "--json", "--config"])
            .arg(&config),
        None,
    );
    let snapshots = out.assert_success().json();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");
}

#[test]
fn a_kms_that_fails_exits_1_with_its_error_and_changes_nothing() {
    let (repo, token) = repo_with_kms_slot();
    let before = fingerprint_dir(&repo.path);

    let out = run(
        with_kms(&repo, &token.command, ["snapshots"]).env("LIFELINE_PKCS11_PIN", "654321"),
        None,
    );
    assert_kms_failure(&out);
    out.assert_output_contains("wrong PIN");

    std::fs::remove_dir_all(&token.dir).unwrap();
    let out = run_kms(&repo, &token.command, ["snapshots"]);
    assert_kms_failure(&out);
    out.assert_output_contains("does not exist");

    assert_eq!(
        fingerprint_dir(&repo.path),
        before,
        "a failed open changed the repository"
    );
    // The password still opens it.
    repo.run(["snapshots"]).assert_success();
}

#[test]
fn key_add_with_a_failing_kms_adds_no_slot() {
    let repo = Repo::init();
    let token = Token::create(&repo.join("hsm"));
    let before = repo.key_files();
    let out = run(
        repo.cmd(["key", "add", "--new-kms-command", &token.command])
            .env("LIFELINE_PKCS11_PIN", "654321"),
        None,
    );
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("(wrap) failed (exit status: 1)")
        .assert_output_contains("wrong PIN");
    assert_eq!(repo.key_files(), before);
}

/// The HSM itself answers, with 32 bytes, but not the slot's key: that is a wrong secret.
#[test]
fn a_kms_that_unwraps_to_another_key_exits_12() {
    let (repo, token) = repo_with_kms_slot();
    let (path, _) = the_kms_slot(&repo);
    let other = token.kms("wrap", &random_bytes(7, 32));
    other.assert_success();
    let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["kms"]["wrapped"] = Value::String(hex::encode(&other.stdout));
    // A slot is named after the hash of its bytes: store the edited slot under its own name,
    // so the repository sees a well-formed slot whose KMS answers with the wrong key, not a
    // damaged one.
    let bytes = serde_json::to_vec_pretty(&json).unwrap();
    let renamed = path.with_file_name(lifeline_repo::Id::of_stored(&bytes).to_hex());
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&renamed, bytes).unwrap();

    run_kms(&repo, &token.command, ["snapshots"])
        .assert_code(EXIT_WRONG_PASSWORD)
        .assert_output_contains("wrong password");
}

#[test]
fn the_slot_holds_only_the_hsm_blob_and_another_token_cannot_unwrap_it() {
    let (repo, token) = repo_with_kms_slot();
    let (_, wrapped) = the_kms_slot(&repo);
    // RSA-3072 OAEP: the blob is one RSA block, 384 bytes.
    assert_eq!(wrapped.len(), 384);

    // The token unwraps it to the slot's 32-byte key, which is nowhere in the repository.
    let kek = token.kms("unwrap", &wrapped);
    kek.assert_success();
    assert_eq!(kek.stdout.len(), 32);
    let kek_hex = hex::encode(&kek.stdout);
    for file in regular_files_under(&repo.path) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == kek.stdout.as_slice()),
            "{} holds the slot's key in the clear",
            file.display()
        );
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&kek_hex),
            "{} holds the slot's key in hex",
            file.display()
        );
    }

    // Another token, with a key pair of its own, cannot unwrap it, and does not open the repository.
    let stranger = Token::create(&repo.join("other-hsm"));
    let out = stranger.kms("unwrap", &wrapped);
    out.assert_failure();
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert_kms_failure(&run_kms(&repo, &stranger.command, ["snapshots"]));
}

#[test]
fn password_key_file_and_kms_slots_coexist_in_the_documented_order() {
    let (repo, token) = repo_with_kms_slot();
    let key_file = repo.join("lifeline.key");
    repo.add_key_file(&key_file);

    let kind_opened = |cmd: &mut Command| -> String {
        current(&key_list(cmd))["kind"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let list = ["key", "list", "--json"];
    assert_eq!(kind_opened(&mut repo.cmd(list)), "password");
    let mut by_key_file = repo.sandbox.lifeline();
    by_key_file
        .args(list)
        .arg("--repo")
        .arg(&repo.path)
        .arg("--key-file")
        .arg(&key_file);
    assert_eq!(kind_opened(&mut by_key_file), "key-file");
    assert_eq!(
        kind_opened(&mut with_kms(&repo, &token.command, list)),
        "kms"
    );
    // A KMS command wins over a password, a key file over both (docs/config.md).
    let mut kms_and_password = with_kms(&repo, &token.command, list);
    kms_and_password.env("LIFELINE_PASSWORD_FILE", &repo.password_file);
    assert_eq!(kind_opened(&mut kms_and_password), "kms");
    kms_and_password.arg("--key-file").arg(&key_file);
    assert_eq!(kind_opened(&mut kms_and_password), "key-file");

    let keys = key_list(&mut repo.cmd(list));
    let mut kinds: Vec<&str> = keys.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["key-file", "kms", "password"]);

    // Removed, the KMS slot no longer opens anything; the others still do.
    let kms_id = keys.iter().find(|k| k["kind"] == "kms").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    repo.run(["key", "remove", &kms_id]).assert_success();
    run_kms(&repo, &token.command, ["snapshots"]).assert_code(EXIT_WRONG_PASSWORD);
    run(&mut by_key_file, None).assert_success();
}

/// Regression: opening stopped at the first KMS slot whose KMS failed, so of two slots wrapped by
/// two HSMs only the one listed first could ever open.
#[test]
fn each_of_two_kms_slots_opens_with_its_own_hsm() {
    let repo = Repo::init();
    let first = Token::create(&repo.join("hsm-1"));
    let second = Token::create(&repo.join("hsm-2"));
    add_kms_slot(&repo, &first, "HSM 1");
    add_kms_slot(&repo, &second, "HSM 2");
    assert_eq!(kms_slots(&repo).len(), 2);

    for (token, label) in [(&first, "HSM 1"), (&second, "HSM 2")] {
        let keys = key_list(&mut with_kms(
            &repo,
            &token.command,
            ["key", "list", "--json"],
        ));
        assert_eq!(current(&keys)["kms_label"], label, "{keys:?}");
    }
    // One HSM gone: the other still opens.
    std::fs::remove_dir_all(&first.dir).unwrap();
    run_kms(&repo, &second.command, ["snapshots"]).assert_success();
    assert_kms_failure(&run_kms(&repo, &first.command, ["snapshots"]));
}
