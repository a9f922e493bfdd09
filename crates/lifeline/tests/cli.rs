//! Command-line contract: repository discovery, init, layout, configuration,
//! password sources, input validation and exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// A TOML basic string.
fn toml_str(s: &Path) -> String {
    let s = s.to_str().expect("sandbox paths are UTF-8");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// sh -c command that prints the password on its first line, then junk.
fn password_command_printing(password: &str) -> String {
    format!("printf '%s\\n%s\\n' '{password}' 'this second line is not the password'")
}

#[test]
fn missing_repository_exits_10_for_every_command() {
    let repo = Repo::uninit(); // never initialised: repo.path does not exist
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("f"), b"data");
    let target = repo.join("target");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["snapshots".as_ref()],
        vec!["snapshots".as_ref(), "--json".as_ref()],
        vec!["check".as_ref()],
        vec!["check".as_ref(), "--read-data".as_ref()],
        vec!["ls".as_ref(), "latest".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec!["dump".as_ref(), "latest".as_ref(), "/f".as_ref()],
        vec!["key".as_ref(), "list".as_ref()],
    ];
    for args in cases {
        repo.run(&args).assert_code(EXIT_REPO_NOT_FOUND);
        assert!(
            !repo.path.exists(),
            "{args:?} created the missing repository directory"
        );
    }
    let mut stdin_backup = repo.cmd(["backup", "--stdin", "--name", "x"]);
    run(&mut stdin_backup, Some(b"x")).assert_code(EXIT_REPO_NOT_FOUND);
    assert!(
        !target.exists(),
        "restore created its target for a missing repository"
    );
}

#[test]
fn init_creates_documented_layout_and_backup_fills_it() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("a"), random_bytes(5, 300 * KIB));
    write_file(&src.join("b"), b"small");
    let summary = repo.backup(&[&src], &[]);

    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(repo.path.join("config")).unwrap())
            .expect("config is plain JSON");
    assert!(config.is_object(), "config is not a JSON object: {config}");

    let top: BTreeSet<String> = fs::read_dir(&repo.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let allowed: BTreeSet<String> = [
        "config",
        "keys",
        "keyring",
        "data",
        "index",
        "snapshots",
        "tmp",
        "sessions",
        "holds",
        "verifications",
        "garbage",
        "drills",
        "audit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert!(
        top.is_subset(&allowed),
        "unexpected top-level entries: {top:?}"
    );
    assert!(
        regular_files_under(&repo.path.join("sessions")).is_empty(),
        "a finished backup leaves no session marker"
    );
    for required in ["config", "keys", "data", "index", "snapshots"] {
        assert!(top.contains(required), "{required} missing from {top:?}");
    }

    for dir in ["keys", "index", "snapshots"] {
        let files = regular_files_under(&repo.path.join(dir));
        assert!(!files.is_empty(), "{dir}/ is empty after a backup");
        for f in files {
            assert_eq!(
                f.parent().unwrap(),
                repo.path.join(dir),
                "{} is nested",
                f.display()
            );
            assert!(
                is_hex(&file_name_str(&f), 64),
                "{} is not named by 64 hex digits",
                f.display()
            );
        }
    }
    let packs = repo.packs();
    assert!(!packs.is_empty(), "no packs after a backup");
    for p in &packs {
        let name = file_name_str(p);
        let dir = file_name_str(p.parent().unwrap());
        assert!(
            is_hex(&name, 64),
            "pack {} is not named by 64 hex digits",
            p.display()
        );
        assert_eq!(
            dir,
            name[..2],
            "pack {} is not in data/<first 2 hex>/",
            p.display()
        );
        assert_eq!(
            p.parent().unwrap().parent().unwrap(),
            repo.path.join("data")
        );
    }

    // The snapshot id is the name of its file in snapshots/.
    let id = json_str(&summary, "snapshot_id");
    assert!(
        repo.path.join("snapshots").join(id).is_file(),
        "snapshots/{id} does not exist"
    );
    repo.run(["check", "--read-data"]).assert_success();
}

#[test]
fn init_into_existing_empty_directory_works() {
    let repo = Repo::uninit();
    fs::create_dir(&repo.path).unwrap();
    repo.run(["init"]).assert_success();
    assert!(repo.path.join("config").is_file(), "init wrote no config");
    assert_eq!(repo.key_files().len(), 1, "init wrote no key");
    assert!(repo.snapshots().is_empty());
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let repo = Repo::uninit();
    write_file(&repo.path.join("precious.txt"), b"do not touch");
    repo.run(["init"]).assert_failure();
    assert_eq!(
        fs::read(repo.path.join("precious.txt")).unwrap(),
        b"do not touch"
    );
    assert!(
        !repo.path.join("config").exists(),
        "init wrote a config into a non-empty dir"
    );
}

#[test]
fn init_twice_is_refused_and_keeps_the_repository() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), b"keep me");
    repo.backup(&[&src], &[]);
    let before = fingerprint_dir(&repo.path);

    repo.run(["init"]).assert_failure();
    let other_password = repo.sandbox.write("other-password", "another one");
    repo.run_with_password_file(&other_password, ["init"])
        .assert_failure();

    assert_eq!(
        fingerprint_dir(&repo.path),
        before,
        "a refused init changed the repository"
    );
    assert_eq!(repo.snapshots().len(), 1);
    assert_eq!(repo.dump("latest", src.join("f")), b"keep me");
}

#[test]
fn relative_backup_paths_are_made_absolute() {
    let repo = Repo::init();
    write_file(&repo.join("src/sub/f"), b"relative");
    let out = repo.run(["backup", "src", "--json"]); // cwd is the sandbox
    out.assert_success();
    let abs = fs::canonicalize(repo.sandbox.path()).unwrap().join("src");
    let snaps = repo.snapshots();
    assert_eq!(
        snaps[0]["paths"],
        json!([abs.to_str().unwrap()]),
        "{}",
        snaps[0]
    );
    let ls = repo.run(["ls", "latest"]);
    ls.assert_success();
    let want = abs.join("sub/f").to_str().unwrap().to_string();
    assert!(
        lines(&ls).contains(&want),
        "ls does not list {want}\n{}",
        ls.describe()
    );
    assert_eq!(repo.dump("latest", &want), b"relative");
}

#[test]
fn tags_are_recorded_as_a_map() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), b"x");
    repo.backup(
        &[&src],
        &["--tag", "env=prod", "--tag", "team=db", "--tag", "note=a=b"],
    );
    let s = &repo.snapshots()[0];
    assert_eq!(
        s["tags"],
        json!({"env": "prod", "team": "db", "note": "a=b"}),
        "{s}"
    );
}

#[test]
fn tag_without_equals_sign_is_rejected() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), b"x");
    let out = repo.run([
        OsStr::new("backup"),
        OsStr::new("--tag"),
        OsStr::new("novalue"),
        src.as_os_str(),
    ]);
    out.assert_failure().assert_output_contains("novalue");
    assert!(
        repo.snapshots().is_empty(),
        "a rejected backup created a snapshot"
    );
}

#[test]
fn malformed_config_file_exits_1_naming_the_file() {
    let repo = Repo::init();
    let cfg = repo
        .sandbox
        .write("broken-config.toml", "[repository\nurl = \"/x\"\nkey = {\n");
    let out = run(
        repo.sandbox
            .lifeline()
            .arg("snapshots")
            .arg("--config")
            .arg(&cfg),
        None,
    );
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("broken-config.toml");
}

#[test]
fn config_file_with_password_file_replaces_repo_and_password_flags() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), b"via config");
    let cfg = repo.sandbox.write(
        "lifeline.toml",
        format!(
            "[repository]\nurl = {}\nkey = {{ password_file = {} }}\n",
            toml_str(&repo.path),
            toml_str(&repo.password_file)
        ),
    );
    let with_config = |args: &[&OsStr]| {
        let mut c = repo.sandbox.lifeline();
        c.args(args).arg("--config").arg(&cfg);
        run(&mut c, None)
    };
    with_config(&["backup".as_ref(), src.as_os_str()]).assert_success();
    let out = with_config(&["snapshots".as_ref(), "--json".as_ref()]);
    out.assert_success();
    assert_eq!(
        out.json().as_array().map(Vec::len),
        Some(1),
        "{}",
        out.describe()
    );
    let out = with_config(&[
        "dump".as_ref(),
        "latest".as_ref(),
        src.join("f").as_os_str(),
    ]);
    out.assert_success();
    assert_eq!(out.stdout, b"via config");
}

#[test]
fn config_file_with_password_command_works_and_wrong_one_exits_12() {
    let repo = Repo::init();
    let write_cfg = |name: &str, command: &str| {
        let cmd_toml = format!("\"{}\"", command.replace('\\', "\\\\").replace('"', "\\\""));
        repo.sandbox.write(
            name,
            format!(
                "[repository]\nurl = {}\nkey = {{ password_command = {} }}\n",
                toml_str(&repo.path),
                cmd_toml
            ),
        )
    };
    let good = write_cfg("good.toml", &password_command_printing(PASSWORD));
    let bad = write_cfg("bad.toml", &password_command_printing("not the password"));
    run(
        repo.sandbox
            .lifeline()
            .args(["snapshots", "--config"])
            .arg(&good),
        None,
    )
    .assert_success();
    run(
        repo.sandbox
            .lifeline()
            .args(["snapshots", "--config"])
            .arg(&bad),
        None,
    )
    .assert_code(EXIT_WRONG_PASSWORD);
}

#[test]
fn password_command_env_uses_first_line_of_stdout() {
    let repo = Repo::init();
    let mut c = repo.sandbox.lifeline();
    c.args(["snapshots", "--json", "--repo"])
        .arg(&repo.path)
        .env(
            "LIFELINE_PASSWORD_COMMAND",
            password_command_printing(PASSWORD),
        );
    run(&mut c, None).assert_success();

    let mut c = repo.sandbox.lifeline();
    c.args(["snapshots", "--repo"]).arg(&repo.path).env(
        "LIFELINE_PASSWORD_COMMAND",
        password_command_printing("wrong"),
    );
    run(&mut c, None).assert_code(EXIT_WRONG_PASSWORD);
}

#[test]
fn password_command_flag_works() {
    let repo = Repo::init();
    let mut c = repo.sandbox.lifeline();
    c.args(["snapshots", "--repo"])
        .arg(&repo.path)
        .arg("--password-command")
        .arg(format!("cat '{}'", repo.password_file.display()));
    run(&mut c, None).assert_success();
}

#[test]
fn repo_env_and_password_file_flag_work() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), b"env");
    let mut c = repo.sandbox.lifeline();
    c.arg("backup")
        .arg(&src)
        .arg("--password-file")
        .arg(&repo.password_file)
        .env("LIFELINE_REPO", &repo.path);
    run(&mut c, None).assert_success();
    assert_eq!(repo.snapshots().len(), 1);
}

/// Recursively hands `root` over to `uid:gid`.
fn chown_tree(root: &Path, uid: u32, gid: u32) {
    for (rel, _) in scan_tree(root) {
        let p = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        lchown(&p, Some(uid), Some(gid)).unwrap();
    }
}

/// A command as `nobody` (uid 65534) when the tests run as root, for whom nothing is unreadable by
/// permission; as the caller otherwise.
fn as_user(mut c: std::process::Command) -> std::process::Command {
    if is_root() {
        c.uid(65534).gid(65534);
    }
    c
}

/// A repository and a source with a readable file, an unreadable file and an unreadable directory,
/// owned by the user `as_user` runs as.
fn unreadable_scenario() -> (Repo, PathBuf) {
    let repo = Repo::uninit();
    let src = repo.join("src");
    write_file(&src.join("readable.txt"), b"hello");
    write_file(&src.join("secret.txt"), b"top secret");
    write_file(&src.join("locked/inner.txt"), b"cannot see me");
    if is_root() {
        chown_tree(repo.sandbox.path(), 65534, 65534);
    }
    set_mode(repo.sandbox.path(), 0o755);
    set_mode(&src.join("secret.txt"), 0o000);
    set_mode(&src.join("locked"), 0o000);
    run(&mut as_user(repo.cmd(["init"])), None).assert_success();
    (repo, src)
}

/// Lets the TempDir clean-up (and later readers) get in again.
fn readable_again(src: &Path) {
    set_mode(&src.join("locked"), 0o755);
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn backup_with_unreadable_items_exits_3_and_keeps_the_readable_ones() {
    let (repo, src) = unreadable_scenario();
    let out = run(
        &mut as_user(repo.cmd([OsStr::new("backup"), src.as_os_str()])),
        None,
    );
    out.assert_code(EXIT_PARTIAL);
    out.assert_output_contains("secret.txt");
    out.assert_output_contains("locked");

    let out = run(&mut as_user(repo.cmd(["snapshots", "--json"])), None);
    out.assert_success();
    assert_eq!(
        out.json().as_array().map(Vec::len),
        Some(1),
        "exit 3 must still write a snapshot"
    );
    let out = run(
        &mut as_user(repo.cmd([
            OsStr::new("dump"),
            OsStr::new("latest"),
            src.join("readable.txt").as_os_str(),
        ])),
        None,
    );
    out.assert_success();
    assert_eq!(out.stdout, b"hello");
    readable_again(&src);
}

/// Regression: every warning was printed twice, a `WARN` log line and a `warning:` line.
#[test]
fn warning_for_an_unreadable_item_is_printed_once() {
    let (repo, src) = unreadable_scenario();
    let out = run(
        &mut as_user(repo.cmd([OsStr::new("backup"), src.as_os_str()])),
        None,
    );
    out.assert_code(EXIT_PARTIAL);
    let stderr = out.stderr_str();
    assert_eq!(
        stderr.matches("secret.txt").count(),
        1,
        "the unreadable file is named once\n{}",
        out.describe()
    );
    assert!(!stderr.contains("WARN"), "{}", out.describe());
    readable_again(&src);
}

#[test]
fn unknown_snapshot_is_a_fatal_error() {
    let repo = Repo::init();
    let target = repo.join("target");
    // Empty repository: there is no `latest`.
    repo.run(["ls", "latest"]).assert_code(EXIT_FATAL);

    let src = repo.join("src");
    write_file(&src.join("f"), b"x");
    let id = json_str(&repo.backup(&[&src], &[]), "snapshot_id").to_string();
    let missing = if id.starts_with("ffff") {
        "0000"
    } else {
        "ffff"
    };
    let f = src.join("f");
    repo.run([OsStr::new("dump"), OsStr::new(missing), f.as_os_str()])
        .assert_code(EXIT_FATAL)
        .assert_output_contains(missing);
    repo.run([
        OsStr::new("restore"),
        OsStr::new(missing),
        OsStr::new("--target"),
        target.as_os_str(),
    ])
    .assert_code(EXIT_FATAL);
    assert!(regular_files_under(&target).is_empty());
}

#[test]
fn files_in_tmp_are_ignored_by_check() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), random_bytes(8, 100 * KIB));
    repo.backup(&[&src], &[]);
    write_file(
        &repo.path.join("tmp/leftover-upload"),
        random_bytes(9, 50 * KIB),
    );
    write_file(&repo.path.join("tmp/0123"), b"");
    repo.run(["check"]).assert_success();
    repo.run(["check", "--read-data"]).assert_success();
    assert_eq!(
        repo.dump("latest", src.join("f")),
        random_bytes(8, 100 * KIB)
    );
}
