//! The mongodb source (issue 14) on the real binary against FerretDB 1.24 (a MongoDB-protocol
//! server on SQLite; no registry here serves mongod): a plan source of kind mongodb run by
//! `lifeline run`, restored by `lifeline mongo restore` into an empty server with equal counts and
//! the indexes rebuilt, drilled, writes during the backup, a target that already holds the data,
//! and a server that does not answer.
#![allow(clippy::unwrap_used)]

mod common;
// Not in `common`: every test binary compiles `common`, and the driver's code is large.
#[path = "common/mongo.rs"]
mod mongo;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use mongo::Server;
use mongodb::bson::{doc, Bson, Document};
use serde_json::Value;

const DB: &str = "knowledge";
const CONTENT: &str = "therapeutic_content";
const CATEGORIES: [&str; 5] = ["anxiety", "depression", "sleep", "grief", "stress"];
/// The knowledge base's embeddings are 1024-dimensional.
const DIMENSIONS: usize = 1024;

/// A repository and a plan with one mongodb source `kb` reading `uri`.
struct Planned {
    repo: Repo,
    plan: PathBuf,
}

impl Planned {
    fn new(uri: &str) -> Planned {
        let repo = Repo::init();
        let plan = repo.plan(&format!(
            "[tiers]\ntier1 = {{ rto = \"15m\", rpo = \"5m\" }}\n\n\
             [classes.phi]\ntier = \"tier1\"\n\n\
             [[sources]]\nname = \"kb\"\nkind = \"mongodb\"\nclass = \"phi\"\nurl = {uri:?}\n"
        ));
        Planned { repo, plan }
    }

    fn lifeline(&self, args: &[&str]) -> Out {
        let mut c = self.repo.sandbox.lifeline();
        c.arg("--config").arg(&self.plan).args(args);
        run(&mut c, None)
    }

    /// `lifeline run kb --json`, asserting success; the new snapshot.
    #[track_caller]
    fn backup(&self) -> Value {
        let out = self.lifeline(&["run", "kb", "--json"]);
        out.assert_success();
        let report = out.json();
        assert_eq!(report["outcome"], "success", "{report:#}");
        let snapshots = self.repo.run(["snapshots", "--json", "--tag", "source=kb"]);
        snapshots.assert_success();
        snapshots.json().as_array().unwrap().last().unwrap().clone()
    }

    fn restore(&self, uri: &str, extra: &[&str]) -> Out {
        let mut args = vec!["--json", "mongo", "restore", "latest", "--uri", uri];
        args.extend(extra);
        self.lifeline(&args)
    }
}

fn recorded(snapshot: &Value) -> Value {
    serde_json::from_str(snapshot["source"]["collections"].as_str().unwrap()).unwrap()
}

/// A knowledge-base document: every tenth has no embedding, every seventh no category.
fn content(i: i64) -> Document {
    let mut d = doc! {
        "_id": i,
        "slug": format!("article-{i}"),
        "title": format!("Coping skills, part {i}"),
        "language": if i % 3 == 0 { "es" } else { "en" },
        "created_at": mongodb::bson::DateTime::from_millis(1_700_000_000_000 + i * 60_000),
    };
    if i % 7 != 0 {
        d.insert("therapeutic_category", CATEGORIES[i as usize % 5]);
    }
    if i % 10 != 0 {
        let v: Vec<Bson> = (0..DIMENSIONS)
            .map(|k| Bson::Double(((i as usize * 31 + k) % 997) as f64 / 997.0))
            .collect();
        d.insert("embedding", v);
    }
    d
}

fn insert(server: &Server, ids: std::ops::Range<i64>) {
    let docs: Vec<Document> = ids.map(content).collect();
    server
        .db(DB)
        .collection::<Document>(CONTENT)
        .insert_many(docs)
        .run()
        .unwrap();
}

/// The knowledge base: `therapeutic_content` with four secondary indexes, and a session log.
fn seed(server: &Server, documents: i64) {
    insert(server, 0..documents);
    server
        .db(DB)
        .run_command(doc! { "createIndexes": CONTENT, "indexes": [
            { "key": { "therapeutic_category": 1 }, "name": "category" },
            { "key": { "slug": 1 }, "name": "slug", "unique": true },
            { "key": { "language": 1, "therapeutic_category": 1 }, "name": "language_category" },
            { "key": { "created_at": -1 }, "name": "newest" },
        ] })
        .run()
        .unwrap();
    let sessions: Vec<Document> = (0..50)
        .map(|i| doc! { "_id": format!("s{i}"), "patient": format!("p{}", i % 9), "turns": i })
        .collect();
    server
        .db("chat")
        .collection::<Document>("sessions")
        .insert_many(sessions)
        .run()
        .unwrap();
}

#[test]
fn a_backup_restores_into_an_empty_server_with_equal_counts_and_its_indexes() {
    let source = Server::start();
    seed(&source, 400);
    let planned = Planned::new(&source.uri);
    let snapshot = planned.backup();
    assert_eq!(snapshot["kind"], "mongodb", "{snapshot:#}");
    let counts = recorded(&snapshot);
    let kb = &counts[format!("{DB}.{CONTENT}")];
    // 400 documents; 40 without an embedding; five categories (the 58 without one not counted).
    assert_eq!(kb["documents"], 400, "{counts:#}");
    assert_eq!(kb["with_embedding"], 360, "{counts:#}");
    assert_eq!(kb["categories"], 5, "{counts:#}");
    let names: Vec<&str> = kb["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["_id_", "category", "language_category", "newest", "slug"]
    );
    assert_eq!(counts["chat.sessions"]["documents"], 50);
    assert_eq!(snapshot["source"]["consistency"], "none");
    assert!(
        snapshot["source"]["consistency_note"]
            .as_str()
            .unwrap()
            .contains("standalone"),
        "{snapshot:#}"
    );

    // The stored file is a mongodump archive, for `lifeline dump … | mongorestore --archive`.
    let archive = planned.repo.run(["dump", "latest", "dump.archive"]);
    archive.assert_success();
    assert_eq!(&archive.stdout[..4], &[0x6d, 0xe2, 0x99, 0x81]);

    let target = Server::start();
    let out = planned.restore(&target.uri, &[]);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["matches"], true, "{report:#}");
    assert_eq!(report["documents"], 450, "{report:#}");
    assert_eq!(report["indexes_built"], 4, "{report:#}");
    assert_eq!(target.count(DB, CONTENT), 400);
    assert_eq!(target.count("chat", "sessions"), 50);
    assert_eq!(
        target.index_names(DB, CONTENT),
        ["_id_", "category", "language_category", "newest", "slug"]
    );
    // The unique index came back unique.
    let dup = target
        .db(DB)
        .collection::<Document>(CONTENT)
        .insert_one(doc! { "_id": 10_000, "slug": "article-1" })
        .run();
    assert!(dup.is_err(), "a duplicate slug was accepted");
    // Byte for byte: the embedding of a restored document is the one backed up.
    let one = target
        .db(DB)
        .collection::<Document>(CONTENT)
        .find_one(doc! { "_id": 11 })
        .run()
        .unwrap()
        .unwrap();
    assert_eq!(one, content(11));

    // A drill reads the stored archive back: CRC-64 of every collection, counts as recorded.
    let out = planned.lifeline(&["--json", "drill", "kb"]);
    out.assert_success();
    let drilled = out.json();
    assert_eq!(drilled["passed"], true, "{drilled:#}");
    assert!(
        drilled
            .to_string()
            .contains("2 collection(s): CRC-64 intact"),
        "{drilled:#}"
    );
}

/// Inserts keep arriving while the backup runs: the snapshot records what its archive holds, and
/// a restore of it matches those records exactly.
#[test]
fn writes_during_the_backup_are_in_the_records_exactly_as_in_the_archive() {
    let source = Server::start();
    seed(&source, 300);
    let planned = Planned::new(&source.uri);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (uri, stop) = (source.uri.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let client = mongodb::sync::Client::with_uri_str(&uri).unwrap();
            let coll = client.database(DB).collection::<Document>(CONTENT);
            let mut next = 1_000;
            while !stop.load(Ordering::Relaxed) {
                coll.insert_one(content(next)).run().unwrap();
                next += 1;
            }
            next - 1_000
        })
    };
    // Let writes start before the backup does.
    while source.count(DB, CONTENT) < 310 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let snapshot = planned.backup();
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap() as u64;
    let recorded_docs = recorded(&snapshot)[format!("{DB}.{CONTENT}")]["documents"]
        .as_u64()
        .unwrap();
    assert!(
        (310..=300 + written).contains(&recorded_docs),
        "recorded {recorded_docs}, {written} written during the backup"
    );

    let target = Server::start();
    let out = planned.restore(&target.uri, &[]);
    out.assert_success();
    assert_eq!(out.json()["matches"], true, "{}", out.describe());
    assert_eq!(target.count(DB, CONTENT), recorded_docs);
}

/// A target that already holds a collection of the snapshot is refused, and nothing of it changes;
/// `--drop` replaces it.
#[test]
fn restore_refuses_an_existing_collection_unless_drop() {
    let source = Server::start();
    seed(&source, 40);
    let planned = Planned::new(&source.uri);
    planned.backup();
    // The source itself has every collection: restoring into it is the case to refuse.
    source
        .db(DB)
        .collection::<Document>(CONTENT)
        .insert_one(doc! { "_id": -1, "slug": "local-edit" })
        .run()
        .unwrap();
    let out = planned.restore(&source.uri, &[]);
    out.assert_failure();
    out.assert_output_contains("already exists on the target");
    out.assert_output_contains("--drop");
    assert_eq!(
        source.count(DB, CONTENT),
        41,
        "a refused restore changed the data"
    );

    let out = planned.restore(&source.uri, &["--drop"]);
    out.assert_success();
    assert_eq!(out.json()["matches"], true, "{}", out.describe());
    assert_eq!(source.count(DB, CONTENT), 40);
}

/// A server that does not answer fails the job within seconds, says where, and saves no snapshot.
#[test]
fn an_unreachable_server_fails_the_backup_and_saves_no_snapshot() {
    let port = common::redis::free_port();
    let planned = Planned::new(&format!("mongodb://127.0.0.1:{port}/"));
    let started = std::time::Instant::now();
    let out = planned.lifeline(&["run", "kb"]);
    out.assert_failure();
    out.assert_output_contains(&format!("127.0.0.1:{port}"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let snapshots = planned.repo.run(["snapshots", "--json"]);
    assert_eq!(snapshots.json().as_array().unwrap().len(), 0);
}
