//! The corruption matrix (docs/corruption-matrix.md): every kind of stored object × every kind of
//! damage (a flipped byte, truncation, deletion, two objects of a kind swapping contents, an object
//! replaced by an older valid one of its kind). Each case must be caught by the cheapest check that
//! can see it, which must name the object (and the snapshots and files that depend on it), exit with
//! the documented code, and a restore of an affected snapshot must never exit 0 with wrong bytes.
//!
//! One small repository is built once (three snapshots of small random files across two key epochs,
//! two key slots, two holds, a `check --read-data` verification, two drills, three archived WAL
//! segments, the audit trail all of this wrote); every case damages its own copy of it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    Config,
    KeySlot,
    KeyringRoot,
    KeyringEpoch,
    DataPack,
    TreePack,
    Index,
    Snapshot,
    Wal,
    Hold,
    Verification,
    Drill,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// XOR 0x01 on the middle byte: one bit of rot.
    FlipByte,
    /// Cut to half its length.
    Truncate,
    Delete,
    /// Two objects of the kind exchange contents, each keeping its name.
    Swap,
    /// The newer object of the kind gets the older one's (valid) content.
    ReplaceWithOlder,
}

/// The cheapest command that sees the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detector {
    /// Opening the repository (`snapshots`) fails.
    Open,
    /// Opening with the password of the damaged slot fails (`snapshots`).
    OpenWithPassword,
    /// `check` (structure).
    Check,
    /// `check --read-data`.
    CheckReadData,
    /// `audit verify` with the repository's keys.
    AuditVerify,
    /// Undetectable by design (the reason is in the docs table): `check` passes and nothing that
    /// is read back differs.
    ByDesign,
}

/// What the detecting command's output must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// The storage key(s) of the damaged object(s).
    Objects,
    /// At least one of them.
    AnyObject,
    /// A literal text (a damaged object that no longer exists cannot be named by key).
    Text(&'static str),
}

struct Case {
    kind: Obj,
    damage: Damage,
    detector: Detector,
    exit: i32,
    names: &'static [Names],
    /// The snapshots and files that depend on the object are named too.
    dependents: bool,
}

const fn case(
    kind: Obj,
    damage: Damage,
    detector: Detector,
    exit: i32,
    names: &'static [Names],
    dependents: bool,
) -> Case {
    Case {
        kind,
        damage,
        detector,
        exit,
        names,
        dependents,
    }
}

use Damage::*;
use Detector::*;
use Obj::*;

const OBJ: &[Names] = &[Names::Objects];
const NONE: &[Names] = &[];
/// Either of two swapped objects: the command stops at the first it meets.
const ANY: &[Names] = &[Names::AnyObject];
const ROOT: &[Names] = &[Names::Text("keyring/root-")];
const NO_INDEX: &[Names] = &[Names::Text("in no index")];

/// Kept in step with docs/corruption-matrix.md. Cases not listed are not applicable (a config and a
/// key root exist once, so there is nothing of their kind to swap with).
#[rustfmt::skip]
const CASES: &[Case] = &[
    case(Config, FlipByte, Open, EXIT_FATAL, OBJ, false),
    case(Config, Truncate, Open, EXIT_FATAL, OBJ, false),
    case(Config, Delete, Open, EXIT_REPO_NOT_FOUND, OBJ, false),
    case(Config, ReplaceWithOlder, Open, EXIT_FATAL, OBJ, false),
    case(KeySlot, FlipByte, Check, EXIT_FATAL, OBJ, false),
    case(KeySlot, Truncate, Check, EXIT_FATAL, OBJ, false),
    case(KeySlot, Delete, OpenWithPassword, EXIT_WRONG_PASSWORD, NONE, false),
    case(KeySlot, Swap, Check, EXIT_FATAL, ANY, false),
    case(KeySlot, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, false),
    case(KeyringRoot, FlipByte, Open, EXIT_FATAL, OBJ, false),
    case(KeyringRoot, Truncate, Open, EXIT_FATAL, OBJ, false),
    case(KeyringRoot, Delete, Open, EXIT_FATAL, ROOT, false),
    case(KeyringRoot, ReplaceWithOlder, Open, EXIT_FATAL, OBJ, false),
    case(KeyringEpoch, FlipByte, Open, EXIT_FATAL, OBJ, false),
    case(KeyringEpoch, Truncate, Open, EXIT_FATAL, OBJ, false),
    case(KeyringEpoch, Delete, Check, EXIT_FATAL, NONE, true),
    case(KeyringEpoch, Swap, Open, EXIT_FATAL, ANY, false),
    case(KeyringEpoch, ReplaceWithOlder, Open, EXIT_FATAL, OBJ, false),
    case(DataPack, FlipByte, CheckReadData, EXIT_FATAL, OBJ, true),
    case(DataPack, Truncate, Check, EXIT_FATAL, OBJ, true),
    case(DataPack, Delete, Check, EXIT_FATAL, OBJ, true),
    case(DataPack, Swap, Check, EXIT_FATAL, ANY, true),
    case(DataPack, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, true),
    case(TreePack, FlipByte, Check, EXIT_FATAL, OBJ, true),
    case(TreePack, Truncate, Check, EXIT_FATAL, OBJ, true),
    case(TreePack, Delete, Check, EXIT_FATAL, OBJ, true),
    case(TreePack, Swap, Check, EXIT_FATAL, ANY, true),
    case(TreePack, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, true),
    case(Index, FlipByte, Check, EXIT_FATAL, OBJ, false),
    case(Index, Truncate, Check, EXIT_FATAL, OBJ, false),
    case(Index, Delete, Check, EXIT_FATAL, NO_INDEX, true),
    case(Index, Swap, Check, EXIT_FATAL, OBJ, false),
    case(Index, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, false),
    case(Snapshot, FlipByte, Check, EXIT_FATAL, OBJ, false),
    case(Snapshot, Truncate, Check, EXIT_FATAL, OBJ, false),
    case(Snapshot, Delete, ByDesign, EXIT_OK, NONE, false),
    case(Snapshot, Swap, Check, EXIT_FATAL, OBJ, false),
    case(Snapshot, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, false),
    case(Wal, FlipByte, CheckReadData, EXIT_FATAL, OBJ, false),
    case(Wal, Truncate, CheckReadData, EXIT_FATAL, OBJ, false),
    case(Wal, Delete, ByDesign, EXIT_OK, NONE, false),
    case(Wal, Swap, CheckReadData, EXIT_FATAL, OBJ, false),
    case(Wal, ReplaceWithOlder, CheckReadData, EXIT_FATAL, OBJ, false),
    case(Hold, FlipByte, Check, EXIT_FATAL, OBJ, false),
    case(Hold, Truncate, Check, EXIT_FATAL, OBJ, false),
    case(Hold, Delete, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Hold, Swap, Check, EXIT_FATAL, OBJ, false),
    case(Hold, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, false),
    case(Verification, FlipByte, Check, EXIT_FATAL, OBJ, false),
    case(Verification, Truncate, Check, EXIT_FATAL, OBJ, false),
    case(Verification, Delete, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Verification, Swap, Check, EXIT_FATAL, OBJ, false),
    case(Verification, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, false),
    case(Drill, FlipByte, Check, EXIT_FATAL, OBJ, false),
    case(Drill, Truncate, Check, EXIT_FATAL, OBJ, false),
    case(Drill, Delete, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Drill, Swap, Check, EXIT_FATAL, OBJ, false),
    case(Drill, ReplaceWithOlder, Check, EXIT_FATAL, OBJ, false),
    case(Audit, FlipByte, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Audit, Truncate, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Audit, Delete, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Audit, Swap, AuditVerify, EXIT_FATAL, OBJ, false),
    case(Audit, ReplaceWithOlder, AuditVerify, EXIT_FATAL, OBJ, false),
];

// ---------------------------------------------------------------------------
// The pristine repository
// ---------------------------------------------------------------------------

struct Snap {
    id: String,
    short: String,
    /// Every file of the snapshot (absolute source path) and its bytes.
    files: BTreeMap<PathBuf, Vec<u8>>,
}

struct Pristine {
    repo: PathBuf,
    key_file: PathBuf,
    password_file: PathBuf,
    pgdata: PathBuf,
    /// Another repository, initialised first: its config and key root are older valid objects.
    other: PathBuf,
    snaps: Vec<Snap>,
    /// Storage keys of each kind, in the order they were written.
    objects: BTreeMap<Obj, Vec<String>>,
    /// Object key → (snapshot indices, file names) that depend on it.
    dependents: BTreeMap<String, (Vec<usize>, Vec<String>)>,
}

const WAL_SEGMENTS: [&str; 3] = [
    "000000010000000000000001",
    "000000010000000000000002",
    "000000010000000000000003",
];
const SYSTEM_ID: u64 = 7_412_345_678_901_234_567;

fn pristine() -> &'static Pristine {
    static P: OnceLock<Pristine> = OnceLock::new();
    P.get_or_init(build_pristine)
}

/// Files in `repo`, relative, that are objects (not staging files or session markers).
fn object_keys(repo: &Path) -> Vec<String> {
    let mut keys: Vec<String> = regular_files_under(repo)
        .iter()
        .map(|p| p.strip_prefix(repo).unwrap().to_string_lossy().into_owned())
        .filter(|k| !k.starts_with("tmp/") && !k.starts_with("sessions/"))
        .collect();
    keys.sort();
    keys
}

fn kind_of(repo: &Path, key: &str) -> Option<Obj> {
    Some(match key {
        "config" => Config,
        k if k.starts_with("keys/") => KeySlot,
        k if k.starts_with("keyring/root-") => KeyringRoot,
        k if k.starts_with("keyring/epoch-") => KeyringEpoch,
        k if k.starts_with("data/") => match fs::read(repo.join(k)).unwrap().get(9) {
            Some(3) => DataPack,
            Some(4) => TreePack,
            other => panic!("{k}: envelope type {other:?}"),
        },
        k if k.starts_with("index/") => Index,
        k if k.starts_with("snapshots/") => Snapshot,
        k if k.starts_with("wal/") => Wal,
        k if k.starts_with("holds/") => Hold,
        k if k.starts_with("verifications/") => Verification,
        k if k.starts_with("drills/") => Drill,
        k if k.starts_with("audit/") => Audit,
        _ => return None,
    })
}

/// Runs lifeline from `home` (a directory for HOME) on `repo`, opened with the key file.
fn ll(home: &Path, repo: &Path, key_file: &Path, args: &[&OsStr]) -> Out {
    let mut c = lifeline_at(home, home);
    c.arg("--repo").arg(repo).arg("--key-file").arg(key_file);
    c.args(args);
    run(&mut c, None)
}

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

fn files_of(src: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    regular_files_under(src)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// A directory of this test binary under target/tmp, rebuilt each run; directories of earlier runs
/// whose process is gone are removed.
fn work_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corruption-matrix");
    fs::create_dir_all(&base).unwrap();
    for e in fs::read_dir(&base).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let alive = name
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn build_pristine() -> Pristine {
    let started = std::time::Instant::now();
    let dir = work_dir();
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let password_file = dir.join("password");
    fs::write(&password_file, PASSWORD).unwrap();
    let repo = dir.join("repo");
    let other = dir.join("other");
    let key_file = dir.join("repo.key");
    let with_password = |target: &Path, args: &[&OsStr]| {
        let mut c = lifeline_at(&home, &home);
        c.arg("--repo")
            .arg(target)
            .env("LIFELINE_PASSWORD_FILE", &password_file)
            .args(args);
        run(&mut c, None)
    };
    with_password(&other, &[os("init")]).assert_success();
    with_password(&repo, &[os("init")]).assert_success();
    let mut order: Vec<String> = object_keys(&repo);
    with_password(
        &repo,
        &[
            os("key"),
            os("add"),
            os("--new-key-file"),
            key_file.as_os_str(),
        ],
    )
    .assert_success();
    let l = |args: &[&OsStr]| ll(&home, &repo, &key_file, args);
    let mut dependents: BTreeMap<String, (Vec<usize>, Vec<String>)> = BTreeMap::new();
    let step_new = |order: &mut Vec<String>| -> Vec<String> {
        let new: Vec<String> = object_keys(&repo)
            .into_iter()
            .filter(|k| !order.contains(k))
            .collect();
        order.extend(new.iter().cloned());
        new
    };

    // Three snapshots; the keys are rotated before the third, so two epochs seal objects.
    let src = dir.join("src");
    write_random_file(&src.join("a.bin"), 1, 300 * KIB);
    write_random_file(&src.join("b.bin"), 2, 100 * KIB);
    for i in 0..4 {
        write_file(&src.join(format!("notes/n{i}.txt")), format!("note {i}\n"));
    }
    stamp_mtimes(&src, 1_700_000_000);
    let mut snaps = Vec::new();
    for n in 0..3 {
        match n {
            1 => {
                write_random_file(&src.join("c.bin"), 3, 700 * KIB);
                write_random_file(&src.join("b.bin"), 4, 100 * KIB);
                stamp_mtimes(&src, 1_700_100_000);
            }
            2 => {
                l(&[os("key"), os("rotate")]).assert_success();
                step_new(&mut order);
                write_file(&src.join("notes/n0.txt"), "note 0, changed\n");
                write_random_file(&src.join("d.bin"), 5, 50 * KIB);
                stamp_mtimes(&src, 1_700_200_000);
            }
            _ => {}
        }
        let out = l(&[
            os("backup"),
            os("--json"),
            os("--tag"),
            os("source=docs"),
            src.as_os_str(),
        ]);
        out.assert_success();
        let id = json_str(&out.json(), "snapshot_id").to_string();
        let files = files_of(&src);
        for key in step_new(&mut order) {
            // Whatever a backup wrote, the snapshot (and, for data, its files) depends on.
            let names = match kind_of(&repo, &key) {
                Some(DataPack) if n == 0 => vec!["a.bin".to_string()],
                _ => Vec::new(),
            };
            let snaps_of = match kind_of(&repo, &key) {
                // a.bin never changes: every snapshot needs the first data pack.
                Some(DataPack) if n == 0 => vec![0, 1, 2],
                _ => vec![n],
            };
            dependents.insert(key, (snaps_of, names));
        }
        snaps.push(Snap {
            short: id[..8].to_string(),
            id,
            files,
        });
    }
    let ids: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
    l(&[
        os("hold"),
        os("add"),
        os(ids[0]),
        os("--reason"),
        os("case 1"),
    ])
    .assert_success();
    l(&[
        os("hold"),
        os("add"),
        os(ids[1]),
        os("--reason"),
        os("case 2"),
    ])
    .assert_success();
    l(&[os("check"), os("--read-data")]).assert_success();

    // Two drills: each writes a drill record and a verification of scope `restore`.
    let plan = dir.join("plan.toml");
    fs::write(
        &plan,
        format!(
            "[repository]\nurl = {repo:?}\nkey = {{ key_file = {key:?} }}\n\n\
             [tiers]\ntier3 = {{ rto = \"4h\", rpo = \"1000d\" }}\n\n\
             [classes.documents]\ntier = \"tier3\"\n\n\
             [[sources]]\nname = \"docs\"\nkind = \"files\"\nclass = \"documents\"\npaths = [{src:?}]\n",
            repo = repo.display().to_string(),
            key = key_file.display().to_string(),
            src = src.display().to_string(),
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let mut c = lifeline_at(&home, &home);
        c.arg("--config").arg(&plan).args(["drill", "docs"]);
        run(&mut c, None).assert_success();
    }

    // Three archived WAL segments of a made-up cluster (pg_control's first field is its system
    // identifier; a segment is 16 MiB, mostly zeros here, so it compresses to almost nothing).
    let pgdata = dir.join("pgdata");
    let mut control = SYSTEM_ID.to_ne_bytes().to_vec();
    control.resize(8192, 0);
    write_file(&pgdata.join("global/pg_control"), control);
    for (i, name) in WAL_SEGMENTS.iter().enumerate() {
        let mut segment = random_bytes(100 + i as u64, 8 * KIB);
        segment.resize(16 * MIB, 0);
        write_file(&pgdata.join("pg_wal").join(name), segment);
        l(&[
            os("pg"),
            os("wal-push"),
            os(&format!("pg_wal/{name}")),
            os("--pgdata"),
            pgdata.as_os_str(),
        ])
        .assert_success();
        for f in regular_files_under(&pgdata.join("pg_wal")) {
            fs::remove_file(f).unwrap();
        }
    }
    step_new(&mut order);

    let mut objects: BTreeMap<Obj, Vec<String>> = BTreeMap::new();
    for key in order {
        if let Some(kind) = kind_of(&repo, &key) {
            objects.entry(kind).or_default().push(key);
        }
    }
    // Audit record names sort by time: their true order.
    objects.get_mut(&Audit).unwrap().sort();
    for (kind, want) in [
        (KeySlot, 2),
        (KeyringEpoch, 2),
        (DataPack, 3),
        (TreePack, 3),
        (Index, 3),
        (Snapshot, 3),
        (Wal, 3),
        (Hold, 2),
        (Verification, 3),
        (Drill, 2),
    ] {
        let got = objects.get(&kind).map_or(0, Vec::len);
        assert_eq!(got, want, "{kind:?}: {:?}", objects.get(&kind));
    }
    eprintln!("pristine repository built in {:?}", started.elapsed());
    Pristine {
        repo,
        key_file,
        password_file,
        pgdata,
        other,
        snaps,
        objects,
        dependents,
    }
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

/// Which objects of a kind are hit: the first (and the one after it, for swaps and replacements).
/// Audit and WAL: the second, so that a later record links to it and a later segment follows it.
fn first_victim(kind: Obj) -> usize {
    match kind {
        Audit | Wal => 1,
        _ => 0,
    }
}

fn writable(path: &Path) {
    set_mode(path, mode_of(path) | 0o200);
}

/// Damages `repo` (a copy); returns the keys of the objects that are now damaged.
fn apply(p: &Pristine, repo: &Path, kind: Obj, damage: Damage) -> Vec<String> {
    let single = matches!(kind, Config | KeyringRoot);
    let list: Vec<String> = match kind {
        Config => vec!["config".to_string()],
        _ => p.objects[&kind].clone(),
    };
    let i = first_victim(kind);
    let path = |key: &str| repo.join(key);
    match damage {
        FlipByte => {
            let f = path(&list[i]);
            writable(&f);
            let mut bytes = fs::read(&f).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
            fs::write(&f, bytes).unwrap();
            vec![list[i].clone()]
        }
        Truncate => {
            let f = path(&list[i]);
            writable(&f);
            let bytes = fs::read(&f).unwrap();
            fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
            vec![list[i].clone()]
        }
        Delete => {
            fs::remove_file(path(&list[i])).unwrap();
            vec![list[i].clone()]
        }
        Swap => {
            assert!(!single, "{kind:?} exists once: nothing to swap with");
            let (a, b) = (path(&list[i]), path(&list[i + 1]));
            writable(&a);
            writable(&b);
            let (ba, bb) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
            fs::write(&a, bb).unwrap();
            fs::write(&b, ba).unwrap();
            vec![list[i].clone(), list[i + 1].clone()]
        }
        ReplaceWithOlder => {
            // Single objects: the other repository's, written before this one's.
            let (older, victim) = if single {
                let older_key = if kind == Config {
                    "config".to_string()
                } else {
                    object_keys(&p.other)
                        .into_iter()
                        .find(|k| k.starts_with("keyring/root-"))
                        .unwrap()
                };
                (fs::read(p.other.join(older_key)).unwrap(), list[i].clone())
            } else {
                (fs::read(path(&list[i])).unwrap(), list[i + 1].clone())
            };
            let f = path(&victim);
            writable(&f);
            fs::write(&f, older).unwrap();
            vec![victim]
        }
    }
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The object named as the output names it: the last part of its key (ID) for packs, the key
/// otherwise.
fn shown(key: &str) -> String {
    if key.starts_with("data/") {
        key.rsplit('/').next().unwrap().to_string()
    } else {
        // Audit records are named without the prefix, as their links name them.
        key.trim_start_matches("audit/").to_string()
    }
}

fn run_case(c: &Case) {
    let p = pristine();
    let sandbox = Sandbox::new();
    let home = sandbox.home();
    let repo = sandbox.join("repo");
    copy_dir(&p.repo, &repo);
    let damaged = apply(p, &repo, c.kind, c.damage);
    let what = format!("{:?} × {:?}", c.kind, c.damage);
    let l = |args: &[&OsStr]| ll(&home, &repo, &p.key_file, args);

    let out = match c.detector {
        Open => l(&[os("snapshots")]),
        OpenWithPassword => {
            let mut cmd = lifeline_at(&home, &home);
            cmd.arg("--repo")
                .arg(&repo)
                .env("LIFELINE_PASSWORD_FILE", &p.password_file)
                .arg("snapshots");
            run(&mut cmd, None)
        }
        Check | ByDesign => l(&[os("check")]),
        CheckReadData => {
            // The cheaper check does not see it (else the table would say so).
            let cheap = l(&[os("check")]);
            assert_eq!(
                cheap.code(),
                Some(EXIT_OK),
                "{what}: plain `check` already sees this; the table should say Check\n{}",
                cheap.describe()
            );
            l(&[os("check"), os("--read-data")])
        }
        AuditVerify => {
            let cheap = l(&[os("check")]);
            assert_eq!(
                cheap.code(),
                Some(EXIT_OK),
                "{what}: `check` already sees this; the table should say Check\n{}",
                cheap.describe()
            );
            l(&[os("audit"), os("verify")])
        }
    };
    assert_eq!(
        out.code(),
        Some(c.exit),
        "{what}: expected exit {}\n{}",
        c.exit,
        out.describe()
    );
    let text = out.all_output();
    for n in c.names {
        match n {
            Names::Objects => {
                for key in &damaged {
                    assert!(
                        text.contains(&shown(key)),
                        "{what}: the output does not name {key}\n{}",
                        out.describe()
                    );
                }
            }
            Names::AnyObject => assert!(
                damaged.iter().any(|key| text.contains(&shown(key))),
                "{what}: the output names none of {damaged:?}\n{}",
                out.describe()
            ),
            Names::Text(t) => assert!(
                text.contains(t),
                "{what}: the output does not say {t:?}\n{}",
                out.describe()
            ),
        }
    }
    if c.detector == Check && c.exit == EXIT_FATAL && c.kind != KeySlot {
        // A report, not a check that gave up at the first damaged object.
        assert!(
            text.contains("problem(s) found"),
            "{what}: `check` printed no report\n{}",
            out.describe()
        );
    }
    if c.dependents {
        // Deleted objects are named by what they held; of swapped ones, those the check saw.
        for key in damaged
            .iter()
            .filter(|k| c.damage == Delete || text.contains(&shown(k)))
        {
            let Some((snaps, files)) = p.dependents.get(key) else {
                continue;
            };
            for s in snaps {
                let short = &p.snaps[*s].short;
                assert!(
                    text.contains(short.as_str()),
                    "{what}: the output does not name snapshot {short}, which needs {key}\n{}",
                    out.describe()
                );
            }
            for f in files {
                assert!(
                    text.contains(f.as_str()),
                    "{what}: the output does not name {f}, which is in {key}\n{}",
                    out.describe()
                );
            }
        }
    }
    if c.damage == Swap && matches!(c.kind, DataPack | TreePack) {
        // Reading the data names both.
        let full = l(&[os("check"), os("--read-data")]);
        full.assert_code(EXIT_FATAL);
        for key in &damaged {
            full.assert_output_contains(&shown(key));
        }
    }
    if c.kind == KeySlot && matches!(c.damage, FlipByte | Truncate) {
        // Its own secret is told that the slot is damaged, not that the password is wrong.
        let mut cmd = lifeline_at(&home, &home);
        cmd.arg("--repo")
            .arg(&repo)
            .env("LIFELINE_PASSWORD_FILE", &p.password_file)
            .arg("snapshots");
        let own = run(&mut cmd, None);
        own.assert_code(EXIT_FATAL)
            .assert_output_contains(&damaged[0]);
    }
    if c.kind == Wal {
        wal_fetch_refuses(p, &home, &repo, c, &damaged);
    }
    restores_are_exact_or_fail(p, &sandbox, &repo, c, &damaged);
}

/// `pg wal-fetch` of a damaged segment exits 126 (recovery must stop), of a deleted one 1 (not
/// archived), and never writes the file.
fn wal_fetch_refuses(p: &Pristine, home: &Path, repo: &Path, c: &Case, damaged: &[String]) {
    for key in damaged {
        let name = key.rsplit('/').next().unwrap();
        let dest = home.join(format!("fetched-{name}"));
        let out = ll(
            home,
            repo,
            &p.key_file,
            &[
                os("pg"),
                os("wal-fetch"),
                os(name),
                dest.as_os_str(),
                os("--pgdata"),
                p.pgdata.as_os_str(),
            ],
        );
        let want = if c.damage == Delete { 1 } else { 126 };
        out.assert_code(want);
        assert!(!dest.exists(), "wal-fetch wrote {}", dest.display());
    }
}

/// Restore every snapshot that may be affected: exit 0 only with every byte right.
fn restores_are_exact_or_fail(
    p: &Pristine,
    sandbox: &Sandbox,
    repo: &Path,
    c: &Case,
    damaged: &[String],
) {
    let mut which: Vec<usize> = damaged
        .iter()
        .filter_map(|k| p.dependents.get(k))
        .flat_map(|(s, _)| s.iter().copied())
        .collect();
    if matches!(c.kind, Config | KeySlot | KeyringRoot | KeyringEpoch) {
        which.extend([0, 2]);
    }
    which.sort();
    which.dedup();
    let must_fail = matches!(c.kind, DataPack | TreePack)
        || (c.kind == Snapshot && c.damage != Delete)
        || (c.kind == KeyringEpoch && c.damage == Delete);
    for s in which {
        let snap = &p.snaps[s];
        let target = sandbox.join(format!("restore-{s}"));
        let out = ll(
            &sandbox.home(),
            repo,
            &p.key_file,
            &[
                os("restore"),
                os(&snap.id),
                os("--target"),
                target.as_os_str(),
            ],
        );
        if out.code() == Some(EXIT_OK) {
            assert!(
                !(must_fail && snap_needs(p, damaged, s)),
                "{:?} × {:?}: restore of {} exited 0 though it needs a damaged object\n{}",
                c.kind,
                c.damage,
                snap.short,
                out.describe()
            );
            for (path, bytes) in &snap.files {
                let back = restored(&target, path);
                let got = fs::read(&back).unwrap_or_else(|e| {
                    panic!(
                        "{:?} × {:?}: restore of {} exited 0 without {}: {e}\n{}",
                        c.kind,
                        c.damage,
                        snap.short,
                        back.display(),
                        out.describe()
                    )
                });
                assert!(
                    got == *bytes,
                    "{:?} × {:?}: restore of {} exited 0 with wrong bytes in {}",
                    c.kind,
                    c.damage,
                    snap.short,
                    path.display()
                );
            }
        } else {
            out.assert_failure();
        }
    }
}

fn snap_needs(p: &Pristine, damaged: &[String], s: usize) -> bool {
    damaged.iter().any(|k| {
        p.dependents
            .get(k)
            .is_some_and(|(snaps, _)| snaps.contains(&s))
    })
}

fn run_kind(kind: Obj) {
    let cases: Vec<&Case> = CASES.iter().filter(|c| c.kind == kind).collect();
    assert!(!cases.is_empty());
    // Every case runs, and the failures are reported together.
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|c| {
            std::panic::catch_unwind(|| run_case(c))
                .err()
                .map(|e| match e.downcast::<String>() {
                    Ok(s) => *s,
                    Err(e) => e
                        .downcast::<&str>()
                        .map_or("(panic)".to_string(), |s| s.to_string()),
                })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------
// One test per kind of object
// ---------------------------------------------------------------------------

#[test]
fn a_damaged_config_stops_every_command_at_opening() {
    run_kind(Config);
}

#[test]
fn a_damaged_key_slot_is_named_when_its_secret_opens_the_repository() {
    run_kind(KeySlot);
}

#[test]
fn a_damaged_keyring_root_is_named_when_the_repository_opens() {
    run_kind(KeyringRoot);
}

#[test]
fn a_damaged_key_epoch_is_named_on_opening_and_a_deleted_one_by_check() {
    run_kind(KeyringEpoch);
}

#[test]
fn a_damaged_data_pack_is_named_by_check_with_its_snapshots_and_files_and_never_restored() {
    run_kind(DataPack);
}

#[test]
fn a_damaged_tree_pack_is_named_by_check_with_its_snapshots_and_never_restored() {
    run_kind(TreePack);
}

#[test]
fn a_damaged_index_is_named_by_check_and_restores_stay_exact() {
    run_kind(Index);
}

#[test]
fn a_damaged_snapshot_is_named_by_check_and_not_restored() {
    run_kind(Snapshot);
}

#[test]
fn a_damaged_wal_object_is_named_by_check_read_data_and_refused_by_wal_fetch() {
    run_kind(Wal);
}

#[test]
fn a_damaged_hold_is_named_by_check() {
    run_kind(Hold);
}

#[test]
fn a_damaged_verification_record_is_named_by_check() {
    run_kind(Verification);
}

#[test]
fn a_damaged_drill_record_is_named_by_check() {
    run_kind(Drill);
}

#[test]
fn a_damaged_audit_record_is_named_by_audit_verify() {
    run_kind(Audit);
}

/// The table covers every kind × damage, except swapping the objects that exist once.
#[test]
fn the_matrix_covers_every_kind_and_damage() {
    let kinds = [
        Config,
        KeySlot,
        KeyringRoot,
        KeyringEpoch,
        DataPack,
        TreePack,
        Index,
        Snapshot,
        Wal,
        Hold,
        Verification,
        Drill,
        Audit,
    ];
    for k in kinds {
        for d in [FlipByte, Truncate, Delete, Swap, ReplaceWithOlder] {
            let listed = CASES
                .iter()
                .filter(|c| c.kind == k && c.damage == d)
                .count();
            let expected = usize::from(!(d == Swap && matches!(k, Config | KeyringRoot)));
            assert_eq!(listed, expected, "{k:?} × {d:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Defects the matrix found, one test each (the case from the table)
// ---------------------------------------------------------------------------

fn run_one(kind: Obj, damage: Damage) {
    let c = CASES
        .iter()
        .find(|c| c.kind == kind && c.damage == damage)
        .unwrap();
    run_case(c);
}

/// A flipped bit in a key slot opened nothing and said "wrong password" (exit 12): slots were not
/// checked against their names.
#[test]
fn a_damaged_key_slot_is_named_not_taken_for_a_wrong_password() {
    run_one(KeySlot, FlipByte);
}

/// Two key slots that swapped contents opened as if nothing had happened, and `check` did not look
/// at key slots.
#[test]
fn key_slots_that_swapped_contents_are_named() {
    run_one(KeySlot, Swap);
    run_one(KeySlot, ReplaceWithOlder);
}

/// `check` did not read drill records: a damaged one went unnoticed.
#[test]
fn check_names_a_damaged_drill_record() {
    run_one(Drill, FlipByte);
}

/// `check` stopped at the first damaged snapshot with an error and no report: its WAL check read
/// every snapshot and failed on the damaged one.
#[test]
fn check_reports_a_damaged_snapshot_instead_of_stopping_at_it() {
    run_one(Snapshot, Swap);
}

/// A config whose id had changed was blamed on the key slot ("this key slot belongs to another
/// repository"), not named.
#[test]
fn a_config_with_another_id_is_named_as_the_damaged_object() {
    run_one(Config, FlipByte);
    run_one(Config, ReplaceWithOlder);
}

/// A drill's verification record was not in its audit record, so deleting it passed `audit
/// verify`; which verification the matrix deletes depends on the random IDs, so every one is
/// deleted here in turn: the one of `check --read-data` and those of the two drills.
#[test]
fn audit_verify_names_every_deleted_verification_record_a_drills_included() {
    let p = pristine();
    let records = &p.objects[&Verification];
    assert_eq!(records.len(), 3, "{records:?}");
    for key in records {
        let sandbox = Sandbox::new();
        let home = sandbox.home();
        let repo = sandbox.join("repo");
        copy_dir(&p.repo, &repo);
        fs::remove_file(repo.join(key)).unwrap();
        let out = ll(&home, &repo, &p.key_file, &[os("audit"), os("verify")]);
        assert_eq!(out.code(), Some(EXIT_FATAL), "{key}\n{}", out.describe());
        assert!(
            out.all_output().contains(key.as_str()),
            "{key}\n{}",
            out.describe()
        );
    }
}

/// Deleting a hold (lifting it silently), a verification or a drill record passed every check;
/// the audit trail says they were written.
#[test]
fn audit_verify_names_deleted_holds_verifications_and_drills() {
    run_one(Hold, Delete);
    run_one(Verification, Delete);
    run_one(Drill, Delete);
}
