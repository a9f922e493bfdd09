//! The crash matrix (issue 15): every command that writes to a repository is killed with SIGKILL at
//! seeded random moments, and after every kill
//! - `check --read-data` passes,
//! - every snapshot that existed before the kill (and was not the command's own target) restores
//!   byte for byte,
//! - the same command run again succeeds.
//!
//! `LIFELINE_CRASH_KILLS` sets the kills per command (default 10, the CI profile;
//! `scripts/reliability.sh crash` runs 100), `LIFELINE_CRASH_SEED` the seed (default below; every
//! test prints the seed and its figures, so a failure reruns exactly). A kill delay is drawn
//! uniformly from zero to the command's typical run time (its unkilled runs), so kills land in
//! start-up, in the middle of writing and, sometimes, after the command has finished (those are
//! counted apart). The PostgreSQL cases (a killed `pg wal-push` retried by PostgreSQL itself, a
//! killed `pg backup`) need `scripts/postgres.sh env`, as the other PostgreSQL tests do.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::pg::{chown_to_postgres, PgVersion};
use common::pitr::{self, s, switch_wal, wait_archived, Env};
use common::*;

/// What one snapshot holds: path relative to a restore's target → bytes.
type Contents = BTreeMap<PathBuf, Vec<u8>>;

fn kills() -> usize {
    std::env::var("LIFELINE_CRASH_KILLS")
        .ok()
        .map(|v| v.parse().expect("LIFELINE_CRASH_KILLS must be a number"))
        .unwrap_or(10)
}

fn seed() -> u64 {
    std::env::var("LIFELINE_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("LIFELINE_CRASH_SEED must be a number"))
        .unwrap_or(20_261_203)
}

/// How one kill went.
#[derive(Default)]
struct Tally {
    /// Killed while running.
    mid_run: usize,
    /// The command had already ended when the kill came.
    after_exit: usize,
    /// Snapshots restored and compared byte for byte after the kills.
    restores: usize,
    /// `check --read-data` runs that passed.
    checks: usize,
}

impl Tally {
    fn print(&self, name: &str, secs: f64) {
        eprintln!(
            "crash-matrix {name}: seed {} kills {} (mid-run {}, after exit {}), check --read-data passed {}, snapshots restored byte for byte {}, reruns succeeded {}, {secs:.1} s",
            seed(),
            self.mid_run + self.after_exit,
            self.mid_run,
            self.after_exit,
            self.checks,
            self.restores,
            self.mid_run + self.after_exit,
        );
    }
}

/// A command to kill: its arguments and, for a stream backup, what it reads on stdin.
struct Job {
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

impl Job {
    fn new<I: IntoIterator<Item = S>, S: Into<OsString>>(args: I) -> Job {
        Job {
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
        }
    }
}

/// A repository (opened with a key file: no Argon2 per command), a source directory and what every
/// snapshot of it holds.
struct Lab {
    repo: Repo,
    key: PathBuf,
    src: PathBuf,
    expected: BTreeMap<String, Contents>,
    rng: Rng,
    restores: usize,
}

impl Lab {
    /// Three snapshots of a changing directory, in a repository of 1 MiB packs (many objects per run).
    fn new(name: &str) -> Lab {
        let repo = Repo::uninit();
        repo.run(["init", "--pack-size", "1"]).assert_success();
        let key = repo.join("admin.key");
        repo.add_key_file(&key);
        let src = repo.sandbox.mkdir("src");
        let mut lab = Lab {
            repo,
            key,
            src,
            expected: BTreeMap::new(),
            rng: Rng::new(
                seed()
                    ^ name
                        .bytes()
                        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
            ),
            restores: 0,
        };
        for _ in 0..3 {
            lab.change_source();
            lab.backup();
        }
        lab
    }

    fn cmd<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Command {
        let mut c = self.repo.cmd(args);
        c.arg("--key-file").arg(&self.key);
        c
    }

    #[track_caller]
    fn run<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Out {
        run(&mut self.cmd(args), None)
    }

    #[track_caller]
    fn run_job(&self, job: &Job) -> Out {
        run(&mut self.cmd(&job.args), job.stdin.as_deref())
    }

    /// Rewrites one or two files with new random bytes (about 2.5 MiB in all), sometimes adds one.
    fn change_source(&mut self) {
        let round = self.rng.next_u64();
        write_random_file(&self.src.join("a.bin"), round, 1500 * KIB);
        write_random_file(
            &self.src.join(format!("b{}.bin", round % 3)),
            round ^ 1,
            1000 * KIB,
        );
        write_file(&self.src.join("note.txt"), format!("round {round}\n"));
    }

    /// What a restore of the source directory holds now.
    fn source_contents(&self) -> Contents {
        let prefix = self.src.strip_prefix("/").unwrap();
        file_contents(&self.src)
            .into_iter()
            .map(|(p, b)| (prefix.join(p), b))
            .collect()
    }

    /// `backup` of the source (never killed); records what it holds.
    fn backup(&mut self) -> String {
        let out = self.run([
            OsString::from("backup"),
            "--json".into(),
            self.src.clone().into(),
        ]);
        out.assert_success();
        let id = json_str(&out.json(), "snapshot_id").to_string();
        self.expected.insert(id.clone(), self.source_contents());
        id
    }

    fn snapshot_ids(&self) -> Vec<String> {
        let out = self.run(["snapshots", "--json"]);
        out.assert_success();
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json_str(s, "id").to_string())
            .collect()
    }

    /// Snapshots the repository has that the lab does not know yet hold `contents` (a killed
    /// command that had finished its work, then the rerun).
    fn adopt_new_snapshots(&mut self, contents: &Contents) {
        for id in self.snapshot_ids() {
            self.expected.entry(id).or_insert_with(|| contents.clone());
        }
    }

    /// `forget --keep-last N` (never killed) and the lab forgets them too.
    fn forget_all_but(&mut self, keep: usize) {
        self.run(["forget", "--keep-last", &keep.to_string()])
            .assert_success();
        let left = self.snapshot_ids();
        self.expected.retain(|id, _| left.contains(id));
    }

    #[track_caller]
    fn check_read_data(&self, what: &str) {
        let out = self.run(["check", "--read-data"]);
        assert_eq!(out.code(), Some(EXIT_OK), "{what}\n{}", out.describe());
    }

    /// Every snapshot the lab expects restores to exactly what it held.
    #[track_caller]
    fn restore_all(&mut self, what: &str) {
        let ids: Vec<String> = self.expected.keys().cloned().collect();
        for id in ids {
            self.restore_one(&id, what);
        }
    }

    #[track_caller]
    fn restore_one(&mut self, id: &str, what: &str) {
        self.restores += 1;
        let target = self.repo.join(format!("restore-{}", self.restores));
        let out = self.run([
            OsString::from("restore"),
            id.into(),
            "--target".into(),
            target.clone().into(),
        ]);
        assert_eq!(
            out.code(),
            Some(EXIT_OK),
            "{what}: restore {id}\n{}",
            out.describe()
        );
        let got = file_contents(&target);
        assert!(
            got == self.expected[id],
            "{what}: snapshot {id} restored {:?}, expected {:?}",
            got.keys().collect::<Vec<_>>(),
            self.expected[id].keys().collect::<Vec<_>>()
        );
        fs::remove_dir_all(&target).unwrap();
    }
}

/// How a command met its kill.
struct Killed {
    /// It was still running when SIGKILL came.
    mid_run: bool,
    /// Until it was killed or ended.
    elapsed: Duration,
}

/// Spawns `cmd`, sends SIGKILL after `delay` unless it ended first.
fn kill_after(mut cmd: Command, stdin: Option<&[u8]>, delay: Duration) -> Killed {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap();
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        // A broken pipe after the kill is expected.
        thread::spawn(move || drop(pipe.write_all(&data)))
    });
    let started = Instant::now();
    let mut running = true;
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            running = false;
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    if running {
        running = child.try_wait().unwrap().is_none();
        if running {
            child.kill().unwrap();
        }
    }
    child.wait().unwrap();
    let elapsed = started.elapsed();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    Killed {
        mid_run: running,
        elapsed,
    }
}

/// One row of the matrix: `prepare` readies round `round` (never killed) and names the command;
/// the command is killed; the repository is checked and every expected snapshot restored; then
/// `rerun` runs the command again (it must succeed) and updates what the lab expects.
fn crash_matrix(
    name: &str,
    lab: &mut Lab,
    mut prepare: impl FnMut(&mut Lab, usize) -> Job,
    mut rerun: impl FnMut(&mut Lab, &Job),
) {
    let clock = Instant::now();
    let mut tally = Tally::default();
    // One unkilled run measures how long the command takes.
    let job = prepare(lab, 0);
    let mut typical = kill_after(lab.cmd(&job.args), job.stdin.as_deref(), Duration::MAX).elapsed;
    rerun(lab, &job);
    let mut rng = Rng::new(lab.rng.next_u64());
    for round in 1..=kills() {
        let job = prepare(lab, round);
        let delay = Duration::from_micros(rng.next_u64() % (typical.as_micros() as u64 + 1));
        let what = format!(
            "{name}: round {round} (seed {}), killed after {delay:?}",
            seed()
        );
        let killed = kill_after(lab.cmd(&job.args), job.stdin.as_deref(), delay);
        if killed.mid_run {
            tally.mid_run += 1;
        } else {
            tally.after_exit += 1;
            // A run that ended on its own: the mean of the last two guides the next delay.
            typical = (typical + killed.elapsed) / 2;
        }
        lab.check_read_data(&what);
        tally.checks += 1;
        let before = lab.restores;
        lab.restore_all(&what);
        tally.restores += lab.restores - before;
        rerun(lab, &job);
    }
    lab.check_read_data(&format!("{name}: at the end"));
    tally.print(name, clock.elapsed().as_secs_f64());
    assert!(
        tally.mid_run * 3 >= kills(),
        "{name}: only {} of {} kills came while the command ran",
        tally.mid_run,
        kills()
    );
}

/// The common rerun: the same command again succeeds.
#[track_caller]
fn again(lab: &Lab, job: &Job) -> Out {
    let out = lab.run_job(job);
    out.assert_success();
    out
}

#[test]
fn backup_of_files_killed_at_random() {
    let mut lab = Lab::new("backup-files");
    crash_matrix(
        "backup (files)",
        &mut lab,
        |lab, _| {
            if lab.expected.len() > 6 {
                lab.forget_all_but(4);
            }
            lab.change_source();
            Job::new([OsString::from("backup"), lab.src.clone().into()])
        },
        |lab, job| {
            again(lab, job);
            let now = lab.source_contents();
            lab.adopt_new_snapshots(&now);
        },
    );
}

#[test]
fn backup_of_a_stream_killed_at_random() {
    let mut lab = Lab::new("backup-stream");
    let mut data = Vec::new();
    crash_matrix(
        "backup (stream)",
        &mut lab,
        |lab, _| {
            if lab.expected.len() > 6 {
                lab.forget_all_but(4);
            }
            // Half the stream repeats the last one (deduplicated), half is new.
            let fresh = random_bytes(lab.rng.next_u64(), 2 * MIB);
            data.truncate(2 * MIB);
            data.extend_from_slice(&fresh);
            // One name for every round: one group, which `forget --keep-last` trims.
            let mut job = Job::new(["backup", "--stdin", "--name", "stream.bin"]);
            job.stdin = Some(data.clone());
            job
        },
        |lab, job| {
            again(lab, job);
            let name = job.args[3].clone();
            let held = Contents::from([(PathBuf::from(name), job.stdin.clone().unwrap())]);
            lab.adopt_new_snapshots(&held);
        },
    );
}

#[test]
fn copy_killed_at_random() {
    let mut lab = Lab::new("copy");
    let (dst, dst_password) = lab.repo.init_copy("second region");
    // The destination, opened with its own password.
    let copy = Repo {
        sandbox: Sandbox::new(),
        path: dst.clone(),
        password_file: dst_password.clone(),
    };
    let check_copy = |what: &str| {
        let out = copy.run(["check", "--read-data"]);
        assert_eq!(out.code(), Some(EXIT_OK), "{what}\n{}", out.describe());
    };
    crash_matrix(
        "copy",
        &mut lab,
        |lab, round| {
            if round > 0 {
                check_copy(&format!("copy: after round {}", round - 1));
            }
            if lab.expected.len() > 6 {
                lab.forget_all_but(4);
            }
            lab.change_source();
            lab.backup();
            Job::new([
                OsString::from("copy"),
                "--to".into(),
                dst.clone().into(),
                "--to-password-file".into(),
                dst_password.clone().into(),
            ])
        },
        |lab, job| {
            again(lab, job);
        },
    );
    check_copy("copy: at the end");
    // Every snapshot is in the destination once, and restores from it as it was backed up.
    let out = copy.run(["snapshots", "--json"]);
    out.assert_success();
    let mut copied_from: BTreeMap<String, String> = BTreeMap::new();
    for snap in out.json().as_array().unwrap() {
        let from = json_str(&snap["source"], "copied_from").to_string();
        let to = json_str(snap, "id").to_string();
        assert!(
            copied_from.insert(from.clone(), to).is_none(),
            "copy: {from} is in the destination twice"
        );
    }
    for (id, held) in &lab.expected {
        let to = copied_from
            .get(id)
            .unwrap_or_else(|| panic!("copy: {id} is not in the destination"));
        let target = copy.sandbox.join(format!("r-{}", &id[..8]));
        let out = copy.run([
            OsString::from("restore"),
            to.into(),
            "--target".into(),
            target.clone().into(),
        ]);
        out.assert_success();
        assert!(
            file_contents(&target) == *held,
            "copy: {id} restored other bytes"
        );
    }
}

#[test]
fn forget_killed_at_random() {
    let mut lab = Lab::new("forget");
    crash_matrix(
        "forget",
        &mut lab,
        |lab, _| {
            lab.change_source();
            lab.backup();
            // The oldest is the command's own target: it may or may not survive the kill.
            let oldest = lab.snapshot_ids().into_iter().next().unwrap();
            let others = lab.expected.len() - 1;
            lab.expected.remove(&oldest);
            Job::new(["forget", "--keep-last", others.to_string().as_str()])
        },
        |lab, job| {
            again(lab, job);
            let left = lab.snapshot_ids();
            let mut expected: Vec<&String> = lab.expected.keys().collect();
            let mut left_sorted: Vec<&String> = left.iter().collect();
            expected.sort();
            left_sorted.sort();
            assert_eq!(left_sorted, expected, "forget left other snapshots");
        },
    );
}

#[test]
fn prune_killed_at_random_in_both_phases() {
    let mut lab = Lab::new("prune");
    crash_matrix(
        "prune",
        &mut lab,
        |lab, _| {
            // Garbage for prune: new data, then forgetting what held the old.
            lab.change_source();
            lab.backup();
            lab.forget_all_but(2);
            Job::new(["prune", "--grace", "0s", "--max-unused", "0"])
        },
        |lab, job| {
            again(lab, job);
        },
    );
    assert!(
        regular_files_under(&lab.repo.path.join("garbage")).is_empty(),
        "prune left marks after a completed run"
    );
    lab.restore_all("prune: at the end");
}

#[test]
fn hold_add_and_remove_killed_at_random() {
    let mut lab = Lab::new("hold");
    let held = |lab: &Lab| -> Vec<String> {
        let out = lab.run(["hold", "list", "--json"]);
        out.assert_success();
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|h| json_str(h, "snapshot").to_string())
            .collect()
    };
    crash_matrix(
        "hold add",
        &mut lab,
        |lab, round| {
            let ids: Vec<String> = lab.expected.keys().cloned().collect();
            let id = &ids[round % ids.len()];
            Job::new([
                "hold",
                "add",
                "--reason",
                format!("case {round}").as_str(),
                id.as_str(),
            ])
        },
        |lab, job| {
            again(lab, job);
            let id = job.args.last().unwrap().to_str().unwrap();
            assert!(held(lab).iter().any(|h| h == id), "{id} is not held");
        },
    );
    crash_matrix(
        "hold remove",
        &mut lab,
        |lab, round| {
            let ids: Vec<String> = lab.expected.keys().cloned().collect();
            let id = ids[round % ids.len()].clone();
            if !held(lab).contains(&id) {
                lab.run(["hold", "add", "--reason", "to lift", id.as_str()])
                    .assert_success();
            }
            Job::new([
                "hold",
                "remove",
                "--reason",
                format!("lifted {round}").as_str(),
                id.as_str(),
            ])
        },
        |lab, job| {
            let id = job.args.last().unwrap().to_str().unwrap().to_string();
            // A remove that finished before the kill has nothing left to do: the rerun says so.
            if held(lab).contains(&id) {
                again(lab, job);
            }
            assert!(!held(lab).contains(&id), "{id} is still held");
        },
    );
}

#[test]
fn key_add_remove_and_rotate_killed_at_random() {
    let mut lab = Lab::new("keys");
    let slots = |lab: &Lab| -> Vec<String> {
        let out = lab.run(["key", "list", "--json"]);
        out.assert_success();
        out.json()["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json_str(s, "id").to_string())
            .collect()
    };
    crash_matrix(
        "key add",
        &mut lab,
        |lab, round| {
            let file = lab
                .repo
                .sandbox
                .write(format!("password-{round}"), format!("password {round}"));
            Job::new([
                OsString::from("key"),
                "add".into(),
                "--new-password-file".into(),
                file.into(),
            ])
        },
        |lab, job| {
            again(lab, job);
            // The new password opens the repository.
            let file = PathBuf::from(job.args.last().unwrap());
            lab.repo
                .run_with_password_file(&file, ["snapshots"])
                .assert_success();
        },
    );
    let mut removing = String::new();
    crash_matrix(
        "key remove",
        &mut lab,
        |lab, round| {
            let before = slots(lab);
            let file = lab
                .repo
                .sandbox
                .write(format!("doomed-{round}"), format!("doomed {round}"));
            lab.run([
                OsString::from("key"),
                "add".into(),
                "--new-password-file".into(),
                file.into(),
            ])
            .assert_success();
            removing = slots(lab)
                .into_iter()
                .find(|s| !before.contains(s))
                .unwrap();
            Job::new(["key", "remove", removing.as_str()])
        },
        |lab, job| {
            let id = job.args.last().unwrap().to_str().unwrap().to_string();
            if slots(lab).contains(&id) {
                again(lab, job);
            }
            assert!(!slots(lab).contains(&id), "slot {id} is still there");
        },
    );
    crash_matrix(
        "key rotate",
        &mut lab,
        |_, _| Job::new(["key", "rotate"]),
        |lab, job| {
            again(lab, job);
            if lab.expected.len() > 6 {
                lab.forget_all_but(4);
            }
            // What is written under the new epoch restores too.
            lab.change_source();
            let id = lab.backup();
            lab.restore_one(&id, "key rotate: a backup after the rotation");
        },
    );
}

// ---------------------------------------------------------------------------
// PostgreSQL: wal-push killed under PostgreSQL's own retries, pg backup killed
// ---------------------------------------------------------------------------

/// PostgreSQL archives through a wrapper that runs `lifeline pg wal-push` and, on attempts the seed
/// picks, kills it with SIGKILL after a seeded delay: the archiver sees a failure and retries, as it
/// does after a real crash. Every segment must reach the archive exactly as PostgreSQL wrote it,
/// with no gap, and `check --read-data` must pass.
#[test]
fn wal_push_killed_at_random_is_retried_by_postgresql_and_no_wal_is_lost() {
    let env = Env::new(
        PgVersion::V15,
        "crash-wal",
        &[
            // The test compares every archived segment with the server's copy, so the server must
            // keep them all: no checkpoint by size (100 kills write 1.6 GB of WAL) and no recycling.
            ("checkpoint_timeout", "1h"),
            ("max_wal_size", "8GB"),
            ("wal_keep_size", "8GB"),
            ("archive_timeout", "0"),
        ],
    );
    let c = &env.cluster;
    let mut rng = Rng::new(seed() ^ 0x3a1);
    // Attempt N of the archiver reads line N: a delay in ms to kill after, or "-" to let it run.
    // The first attempts are killed more often than not, never three in a row (after three failures
    // the archiver waits a minute); later ones run, so the test ends.
    let mut in_a_row = 0;
    let plan: String = (0..4 * kills())
        .map(|i| {
            if i < 2 * kills() && in_a_row < 2 && rng.next_u64() % 4 != 0 {
                in_a_row += 1;
                format!("{}\n", rng.next_u64() % 50)
            } else {
                in_a_row = 0;
                "-\n".to_string()
            }
        })
        .collect();
    let kills_file = env.path("kills");
    let attempts = env.path("attempts");
    fs::write(&kills_file, plan).unwrap();
    let killed = env.path("killed");
    for file in [&attempts, &killed] {
        fs::write(file, "").unwrap();
        chown_to_postgres(file);
    }
    let wrapper = env.path("archive.sh");
    fs::write(
        &wrapper,
        format!(
            r#"#!/bin/bash
# Attempt N: line N of the kills file ("-": no kill).
echo "$1" >> {attempts}
n=$(wc -l < {attempts})
delay=$(sed -n "${{n}}p" {kills})
{lifeline} --config {cfg} pg wal-push "$1" &
pid=$!
if [[ -n $delay && $delay != - ]]; then
    sleep "$(printf '0.%03d' "$delay")"
    kill -9 "$pid" 2>/dev/null && {{ echo "$1" >> {killed}; wait "$pid"; exit 1; }}
fi
wait "$pid"
"#,
            attempts = pitr::quote(s(&attempts)),
            killed = pitr::quote(s(&killed)),
            kills = pitr::quote(s(&kills_file)),
            lifeline = pitr::quote(s(&common::pg::lifeline_bin())),
            cfg = pitr::quote(s(&env.cfg)),
        ),
    )
    .unwrap();
    set_mode(&wrapper, 0o755);
    c.append_conf(&[(
        "archive_command",
        &format!("{} %p", pitr::quote(s(&wrapper))),
    )]);
    c.psql("SELECT pg_reload_conf()");
    c.psql(pitr::TABLE_SQL);
    env.backup(&c.url(), &[]);
    let clock = Instant::now();
    let mut segments = Vec::new();
    for i in 0..kills() as u32 {
        let _ = pitr::commit_row(c, i + 1);
        segments.push(switch_wal(c));
    }
    let last = segments.last().unwrap().clone();
    wait_archived(c, &last);
    let tried = fs::read_to_string(&attempts).unwrap();
    let failures = pitr::archiver_failures(c);
    let kills_done = fs::read_to_string(&killed).unwrap().lines().count();
    // Every segment is in the archive byte for byte (wal_keep_size keeps the server's copies).
    for seg in &segments {
        let stored = env.path(&format!("fetched-{seg}"));
        let out = env.run(&["pg", "wal-fetch", seg, s(&stored), "--pgdata", s(&c.dir)]);
        out.assert_success();
        assert!(
            fs::read(&stored).unwrap() == fs::read(c.dir.join("pg_wal").join(seg)).unwrap(),
            "{seg} in the archive differs from the server's"
        );
    }
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.code(), Some(EXIT_OK), "{}", out.describe());
    eprintln!(
        "crash-matrix pg wal-push: seed {} segments {} archive attempts {} killed mid-push {kills_done} (PostgreSQL counted {failures} failures and retried), every segment archived byte for byte, check --read-data passed, {:.1} s",
        seed(),
        segments.len(),
        tried.lines().count(),
        clock.elapsed().as_secs_f64()
    );
    assert!(
        kills_done * 3 >= kills() && failures >= kills_done as u64,
        "{kills_done} pushes killed, {failures} failures seen by PostgreSQL: the matrix tested too little"
    );
}

/// `pg backup` killed at random moments: no snapshot of a killed run is ever listed, `check
/// --read-data` passes, the next backup succeeds, and the newest backup restores to a running
/// server with every row.
#[test]
fn pg_backup_killed_at_random_leaves_nothing_a_restore_would_pick() {
    let env = Env::new(PgVersion::V15, "crash-backup", &[]);
    let c = &env.cluster;
    c.psql(pitr::TABLE_SQL);
    c.pgbench(["-i", "-s", "3", "-q"]).assert_success();
    let mut rng = Rng::new(seed() ^ 0xba5e);
    let mut tally = Tally::default();
    let clock = Instant::now();
    let started = Instant::now();
    env.backup(&c.url(), &[]);
    let longest = started.elapsed();
    let count = |env: &Env| -> usize {
        let out = env.run(&["snapshots", "--json"]);
        out.assert_success();
        out.json().as_array().unwrap().len()
    };
    for round in 1..=kills() as u32 {
        let _ = pitr::commit_row(c, round);
        let before = count(&env);
        let delay = Duration::from_micros(rng.next_u64() % (longest.as_micros() as u64 + 1));
        let mut cmd = common::pg::as_postgres(common::pg::lifeline_bin());
        cmd.args(["--config", s(&env.cfg), "pg", "backup", "--db", &c.url()]);
        if kill_after(cmd, None, delay).mid_run {
            tally.mid_run += 1;
        } else {
            tally.after_exit += 1;
        }
        let after = count(&env);
        assert!(
            after == before || after == before + 1,
            "round {round}: {before} snapshots became {after}"
        );
        let out = env.run(&["check", "--read-data"]);
        assert_eq!(
            out.code(),
            Some(EXIT_OK),
            "round {round}, killed after {delay:?}\n{}",
            out.describe()
        );
        tally.checks += 1;
        env.backup(&c.url(), &[]);
    }
    // The newest backup is what a restore picks: it recovers with every committed row.
    let (server, _) = env.restore_started("restored", &[]);
    assert_eq!(
        pitr::rows(&server),
        pitr::rows(c),
        "the restored server's rows differ"
    );
    tally.restores = 1;
    tally.print("pg backup", clock.elapsed().as_secs_f64());
    assert!(
        tally.mid_run * 3 >= kills(),
        "pg backup: only {} of {} kills came while it ran",
        tally.mid_run,
        kills()
    );
}
