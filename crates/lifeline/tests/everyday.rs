//! What a restic or pgBackRest user hits in the first hour (issue 9): each test is named after the
//! defect it pins.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

/// Regression: `lifeline ls latest --json | head -c 100` panicked ("failed printing to stdout:
/// Broken pipe", exit 101). A closed pipe ends the command quietly, with SIGPIPE's status.
#[test]
fn ls_json_into_a_closed_pipe_ends_quietly() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    // Far more than a pipe buffer (64 KiB) of listing.
    for i in 0..3000 {
        write_file(&src.join(format!("file-{i:05}.txt")), format!("{i}"));
    }
    repo.backup(&[&src], &[]);
    for args in [&["ls", "latest", "--json"][..], &["ls", "latest"][..]] {
        let mut child = repo
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 100];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is closed here, as `head -c 100` closes it.
        let status = wait_timeout(&mut child, TIMEOUT, "ls into a closed pipe");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
    }
}

/// Regression: with `--json` errors were printed as text only. They are one JSON object on stdout
/// too, with the exit code, the message and what to do.
#[test]
fn json_errors_are_one_object_on_stdout() {
    let repo = Repo::uninit();
    let out = repo.run(["snapshots", "--json"]);
    out.assert_code(EXIT_REPO_NOT_FOUND);
    let v = out.json();
    assert_eq!(v["error"]["code"], EXIT_REPO_NOT_FOUND);
    assert!(json_str(&v["error"], "message").contains("no repository at"));
    assert!(
        json_str(&v["error"], "hint").contains("lifeline init"),
        "{v}"
    );
    assert!(out.stderr_str().contains("error:"), "text on stderr still");

    repo.run(["init"]).assert_success();
    let wrong = repo.sandbox.write("wrong", "not the password");
    let out = repo.run_with_password_file(&wrong, ["snapshots", "--json"]);
    out.assert_code(EXIT_WRONG_PASSWORD);
    let v = out.json();
    assert_eq!(v["error"]["code"], EXIT_WRONG_PASSWORD);
    assert!(json_str(&v["error"], "hint").contains("password"), "{v}");

    let out = repo.run(["ls", "latest", "--json"]);
    out.assert_code(EXIT_FATAL);
    assert_eq!(out.json()["error"]["code"], EXIT_FATAL);
    assert!(out.json()["error"]["hint"].is_null());
}

/// Regression: a snapshot holding a FIFO always restored with exit 1 ("recorded but not
/// recreated"). FIFOs are recreated, device nodes too as root, and sockets are skipped with a note.
#[test]
fn fifos_and_device_nodes_are_restored_and_sockets_skipped_with_a_note() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("plain.txt"), b"plain");
    let mkfifo = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("0640")
        .arg(src.join("queue"))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    let _listener = std::os::unix::net::UnixListener::bind(src.join("app.sock")).unwrap();
    if is_root() {
        // /dev/null's numbers: character device 1, 3.
        let mknod = std::process::Command::new("mknod")
            .arg(src.join("null"))
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(mknod.success());
    }
    repo.backup(&[&src], &[]);

    let target = repo.join("restored");
    let out = repo.run([
        std::ffi::OsStr::new("restore"),
        std::ffi::OsStr::new("latest"),
        std::ffi::OsStr::new("--target"),
        target.as_os_str(),
    ]);
    out.assert_success()
        .assert_output_contains("app.sock: socket")
        .assert_output_contains("skipped");
    let back = restored(&target, &src);
    let fifo = std::fs::symlink_metadata(back.join("queue")).unwrap();
    assert!(fifo.file_type().is_fifo(), "the FIFO is a FIFO again");
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        fifo.mtime(),
        std::fs::symlink_metadata(src.join("queue"))
            .unwrap()
            .mtime()
    );
    assert!(!back.join("app.sock").exists(), "sockets are not created");
    assert_eq!(std::fs::read(back.join("plain.txt")).unwrap(), b"plain");
    if is_root() {
        let dev = std::fs::symlink_metadata(back.join("null")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), std::fs::metadata("/dev/null").unwrap().rdev());
    }
}

/// Regression: one damaged snapshot object made `snapshots` and `ls latest` fail outright. They
/// list everything readable, name the damaged object and exit 1; backups go on.
#[test]
fn a_damaged_snapshot_object_does_not_hide_the_others() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("first.txt"), b"one");
    let first = repo.backup(&[&src], &[]);
    write_file(&src.join("second.txt"), b"two");
    let second = repo.backup(&[&src], &[]);
    let damaged = repo
        .path
        .join("snapshots")
        .join(json_str(&second, "snapshot_id"));
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[60] ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();

    let out = repo.run(["snapshots", "--json"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains(&format!("snapshots/{}", json_str(&second, "snapshot_id")));
    let listed = out.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], first["snapshot_id"]);
    repo.run(["snapshots"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains(json_str(&first, "short_id"));

    let out = repo.run(["ls", "latest"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("first.txt")
        .assert_output_contains("cannot be read");
    assert!(!out.stdout_str().contains("second.txt"));

    // A backup still works, with the newest readable snapshot as its parent.
    let third = repo.backup(&[&src], &[]);
    assert_eq!(third["parent"], first["snapshot_id"]);
}

/// Regression: after a disk-full failure a 3.7 MB file stayed in `tmp/`, every later backup failed
/// with ENOSPC until it was deleted by hand, and `check` never mentioned it. `check` reports staging
/// files; a backup removes those whose writer is gone (a process of this host that ended, or an age
/// no write reaches) and leaves a live writer's alone.
#[test]
fn leftover_temporary_files_are_reported_and_removed_safely() {
    use std::time::{Duration, SystemTime};
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("a"), b"a");
    repo.backup(&[&src], &[]);
    // What a crashed writer of this host leaves (its process has ended), one of another host long
    // ago, and one of a writer still running (this test process).
    let tmp = repo.path.join("tmp");
    let scope = staging_scope();
    let dead = tmp.join(format!("{scope}.{}-00000000deadbeef", dead_pid()));
    let old = tmp.join("otherhost-0000000000000001");
    let live = tmp.join(format!("{scope}.{}-0000000000000002", std::process::id()));
    write_random_file(&dead, 1, 3_700_000);
    write_file(&old, b"old");
    write_file(&live, b"live");
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let secs = two_hours_ago
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    set_mtime(&old, secs as i64, 0);

    let out = repo.run(["check", "--json"]);
    out.assert_success();
    let r = out.json();
    assert_eq!(r["staging_files"], 3, "{r}");
    assert_eq!(r["staging_stale"], 2, "{r}");
    assert!(json_u64(&r, "staging_bytes") >= 3_700_000);
    repo.run(["check"])
        .assert_success()
        .assert_output_contains("3 temporary file(s)");

    write_file(&src.join("b"), b"b");
    repo.backup(&[&src], &[]);
    assert!(
        !dead.exists() && !old.exists(),
        "stale staging files are removed"
    );
    assert!(live.exists(), "a live writer's staging file is left alone");
}

/// The `<boot id prefix>.<pid namespace>` that names this host's processes in staging files.
fn staging_scope() -> String {
    let boot: String = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .chars()
        .take(8)
        .collect();
    let ns: String = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .display()
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{boot}.{ns}")
}

/// A PID no process has: one of a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Regression: a file that grew while it was read was stored silently, truncated to what was read.
/// It is detected (size, mtime, ctime before and after), warned about, marked in the snapshot (its
/// node and the item list), the backup exits 3, and the next backup reads it again.
#[test]
fn a_file_that_grows_while_it_is_read_is_marked_and_exits_3() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    let growing = src.join("growing.log");
    // Big enough that reading it takes far longer than the appender's pause.
    write_random_file(&growing, 1, 48 * MIB);
    write_file(&src.join("quiet.txt"), b"still");
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (stop, path) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"one more line\n").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let out = repo.run([
        std::ffi::OsStr::new("backup"),
        std::ffi::OsStr::new("--json"),
        src.as_os_str(),
    ]);
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    out.assert_code(EXIT_PARTIAL);
    let errors = out.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "only the growing file: {errors:?}");
    assert!(json_str(&errors[0], "path").ends_with("growing.log"));
    assert_eq!(errors[0]["changed_while_read"], true);
    assert!(json_str(&errors[0], "message").contains("changed while it was read"));

    let listing = repo.run(["ls", "latest", "--json"]);
    listing.assert_success();
    let marked: Vec<String> = listing
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["changed_while_read"] == true)
        .map(|n| json_str(n, "path").to_string())
        .collect();
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert!(marked[0].ends_with("growing.log"));
    let snap = repo.snapshots().pop().unwrap();
    assert_eq!(snap["errors"][0]["changed_while_read"], true);

    // Quiet now: the next backup reads it again (the marked copy is never reused) and is clean.
    let again = repo.backup(&[&src], &[]);
    assert_eq!(json_u64(&again, "files_changed"), 1, "{again}");
    assert_eq!(json_u64(&again, "files_unmodified"), 1, "{again}");
    assert!(again["errors"].as_array().unwrap().is_empty());
    assert_eq!(
        repo.dump("latest", &growing),
        std::fs::read(&growing).unwrap()
    );
}

/// Regression: names that are not UTF-8 were shown with U+FFFD by `ls` and `ls --json`, so they
/// could not be given back to `dump` or `restore`. They print as `\xNN` (a backslash as `\\`),
/// one line each, and that form is accepted back.
#[test]
fn non_utf8_names_print_escaped_and_are_accepted_back() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    let latin1 = src.join(os(b"caf\xe9"));
    let odd_dir = src.join(os(b"dir-\xff\n"));
    let slash = src.join("back\\slash");
    write_file(&latin1, b"latin-1 name");
    write_file(&odd_dir.join("child"), b"below a newline");
    write_file(&slash, b"a real backslash");
    repo.backup(&[&src], &[]);
    let shown = |p: &std::path::Path| {
        p.to_str()
            .map(|s| s.replace('\\', "\\\\"))
            .unwrap_or_default()
    };
    let src_shown = shown(&src);
    let expected = [
        format!("{src_shown}/caf\\xe9"),
        format!("{src_shown}/dir-\\xff\\x0a"),
        format!("{src_shown}/dir-\\xff\\x0a/child"),
        format!("{src_shown}/back\\\\slash"),
    ];

    let text = repo.run(["ls", "latest"]);
    text.assert_success();
    let listed = lines(&text);
    let json: Vec<String> = repo
        .run(["ls", "latest", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json_str(n, "path").to_string())
        .collect();
    for e in &expected {
        assert!(listed.contains(e), "text ls lacks {e}: {listed:?}");
        assert!(json.contains(e), "ls --json lacks {e}: {json:?}");
    }
    assert!(!text.stdout_str().contains('\u{fffd}'));

    // The printed form is accepted back by dump and ls, and so is a raw name with a backslash.
    assert_eq!(repo.dump("latest", &expected[0]), b"latin-1 name");
    assert_eq!(repo.dump("latest", &expected[2]), b"below a newline");
    assert_eq!(repo.dump("latest", &expected[3]), b"a real backslash");
    assert_eq!(repo.dump("latest", &slash), b"a real backslash");
    let under = repo.run(["ls", "latest", expected[1].as_str()]);
    under.assert_success();
    assert_eq!(lines(&under), [expected[1].clone(), expected[2].clone()]);
}

/// Missing: the age of the newest backup at a glance. `snapshots` shows each snapshot's age and
/// marks incomplete ones; `status` gives every group's newest snapshot, its age, its incomplete
/// snapshots and the repository's size, and `--max-age` turns a stale group into exit 1.
#[test]
fn status_shows_each_groups_newest_snapshot_its_age_and_incomplete_ones() {
    let repo = Repo::init();
    let docs = repo.sandbox.mkdir("docs");
    let config = repo.sandbox.mkdir("config");
    write_file(&docs.join("a.pdf"), b"scan");
    write_file(&config.join("app.toml"), b"x = 1");
    let at = |hours: i64| (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339();
    repo.backup(&[&docs], &["--time", &at(72)]);
    repo.backup(&[&docs], &["--time", &at(2)]);
    // A file that cannot be read (even by root: reading a process's memory at 0 is EIO): the
    // snapshot is stored, but incomplete.
    repo.run([
        std::ffi::OsStr::new("backup"),
        config.as_os_str(),
        std::ffi::OsStr::new("/proc/self/mem"),
    ])
    .assert_code(EXIT_PARTIAL);

    let out = repo.run(["status", "--json"]);
    out.assert_success();
    let v = out.json();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v}");
    let docs_group = groups
        .iter()
        .find(|g| g["group"]["paths"][0] == docs.to_str().unwrap())
        .unwrap();
    assert_eq!(docs_group["snapshots"], 2);
    assert_eq!(docs_group["incomplete"], 0);
    let age = json_u64(&docs_group["newest"], "age_seconds");
    assert!((7_100..7_500).contains(&age), "age of the newest: {age}");
    let config_group = groups.iter().find(|g| g != &docs_group).unwrap();
    assert_eq!(config_group["incomplete"], 1);
    assert_eq!(config_group["newest"]["incomplete"], true);
    assert_eq!(v["snapshots"], 3);
    assert_eq!(v["incomplete"], 1);
    assert!(json_u64(&v["repository"], "pack_bytes") > 0);

    let text = repo.run(["status"]);
    text.assert_success();
    let t = text.stdout_str();
    assert!(t.contains("age 2h 0"), "{t}");
    assert!(t.contains("INCOMPLETE"), "{t}");

    // Stale: the docs group's newest is two hours old.
    let late = repo.run(["status", "--max-age", "1h", "--json"]);
    late.assert_code(EXIT_FATAL);
    let v = late.json();
    let late_groups: Vec<&serde_json::Value> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["late"] == true)
        .collect();
    assert_eq!(late_groups.len(), 1);
    assert_eq!(late_groups[0]["group"]["paths"][0], docs.to_str().unwrap());
    repo.run(["status", "--max-age", "3h"]).assert_success();

    let listing = repo.run(["snapshots"]);
    listing.assert_success();
    let rows = lines(&listing);
    let row_of = |path: &std::path::Path| {
        rows.iter()
            .filter(|l| {
                l.ends_with(path.to_str().unwrap()) || l.contains(&format!("  {}", path.display()))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        row_of(&docs).iter().any(|l| l.contains("3d 00h")),
        "{rows:?}"
    );
    assert!(
        row_of(&docs).iter().any(|l| l.contains("2h 00m")),
        "{rows:?}"
    );
    assert!(
        row_of(&config)
            .iter()
            .any(|l| l.contains(" I ") || l.contains(" IH")),
        "incomplete flag: {rows:?}"
    );
    let snaps = repo.snapshots();
    assert_eq!(snaps.iter().filter(|s| s["incomplete"] == true).count(), 1);
}
