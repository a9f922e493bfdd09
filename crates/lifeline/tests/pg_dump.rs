//! `lifeline pg dump`, `pg restore-dump` and `pg verify` against real PostgreSQL 15 and 18 servers:
//! a chatbot's five schemas are dumped, restored into a new database and proven equal (row counts,
//! pgvector neighbours); a changed restore is caught and named; bad input fails with no snapshot.
//!
//! Needs `scripts/postgres.sh install` and `eval "$(scripts/postgres.sh env)"`; without them these
//! tests fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use common::pg::{free_port, shared_dir, Cluster, PgVersion};
use common::{json_str, json_u64, run, Out, Repo};
use serde_json::Value;

const SCHEMAS: [&str; 5] = [
    "chatbot_auth",
    "chatbot_compliance",
    "chatbot_app",
    "chatbot_memory",
    "chatbot_knowledge",
];

/// Tables and their rows, as the dump's `row_counts` must record them. Partitions of
/// chatbot_compliance.events are counted through their parent.
const TABLES: [(&str, u64); 10] = [
    ("chatbot_auth.users", 500),
    ("chatbot_auth.sessions", 800),
    ("chatbot_compliance.audit_log", 1500),
    ("chatbot_compliance.consents", 1000),
    ("chatbot_compliance.events", 1000),
    ("chatbot_app.conversations", 600),
    ("chatbot_app.messages", 3000),
    ("chatbot_memory.memories", 700),
    ("chatbot_knowledge.documents", 200),
    ("chatbot_knowledge.document_embeddings", 2000),
];

const EMBEDDINGS: &str = "chatbot_knowledge.document_embeddings";

const SCHEMA_SQL: &str = "
CREATE SCHEMA chatbot_auth;
CREATE SCHEMA chatbot_compliance;
CREATE SCHEMA chatbot_app;
CREATE SCHEMA chatbot_memory;
CREATE SCHEMA chatbot_knowledge;

CREATE TABLE chatbot_auth.users (id bigint PRIMARY KEY, email text UNIQUE NOT NULL,
    created_at timestamptz NOT NULL);
INSERT INTO chatbot_auth.users
    SELECT g, 'user' || g || '@example.org', timestamptz '2024-01-01' + g * interval '1 hour'
    FROM generate_series(1, 500) g;
CREATE TABLE chatbot_auth.sessions (id bigint PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES chatbot_auth.users, token text NOT NULL);
INSERT INTO chatbot_auth.sessions SELECT g, 1 + g % 500, md5('session' || g)
    FROM generate_series(1, 800) g;

CREATE TABLE chatbot_compliance.audit_log (id bigserial PRIMARY KEY, user_id bigint, action text,
    at timestamptz);
INSERT INTO chatbot_compliance.audit_log (user_id, action, at)
    SELECT 1 + g % 500, (ARRAY['login', 'export', 'delete', 'consent'])[1 + g % 4],
           timestamptz '2024-02-01' + g * interval '1 minute'
    FROM generate_series(1, 1500) g;
CREATE TABLE chatbot_compliance.consents (user_id bigint, kind text, granted boolean,
    PRIMARY KEY (user_id, kind));
INSERT INTO chatbot_compliance.consents
    SELECT u, k, (u + length(k)) % 3 <> 0
    FROM generate_series(1, 500) u, unnest(ARRAY['marketing', 'research']) k;
CREATE TABLE chatbot_compliance.events (id bigint NOT NULL, kind text) PARTITION BY RANGE (id);
CREATE TABLE chatbot_compliance.events_a PARTITION OF chatbot_compliance.events
    FOR VALUES FROM (1) TO (501);
CREATE TABLE chatbot_compliance.events_b PARTITION OF chatbot_compliance.events
    FOR VALUES FROM (501) TO (1001);
INSERT INTO chatbot_compliance.events SELECT g, 'event ' || g FROM generate_series(1, 1000) g;

CREATE TABLE chatbot_app.conversations (id bigint PRIMARY KEY, user_id bigint, title text);
INSERT INTO chatbot_app.conversations SELECT g, 1 + g % 500, 'conversation ' || g
    FROM generate_series(1, 600) g;
CREATE TABLE chatbot_app.messages (id bigint PRIMARY KEY,
    conversation_id bigint REFERENCES chatbot_app.conversations, role text, body text);
INSERT INTO chatbot_app.messages
    SELECT g, 1 + g % 600, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END,
           repeat(md5(g::text), 1 + g % 5)
    FROM generate_series(1, 3000) g;

CREATE TABLE chatbot_memory.memories (id bigint PRIMARY KEY, user_id bigint, content text,
    importance real);
INSERT INTO chatbot_memory.memories SELECT g, 1 + g % 500, 'remembers ' || md5(g::text),
    (g % 10) / 10.0 FROM generate_series(1, 700) g;

CREATE TABLE chatbot_knowledge.documents (id bigint PRIMARY KEY, title text, body text);
INSERT INTO chatbot_knowledge.documents SELECT g, 'doc ' || g, repeat('lorem ipsum ', g % 50)
    FROM generate_series(1, 200) g;
";

/// 2,000 deterministic pseudo-random 384-dimensional vectors (from md5, so every platform draws the
/// same ones), with an HNSW index that the exact neighbour checks must not use.
const VECTOR_SQL: &str = "
CREATE EXTENSION vector;
CREATE TABLE chatbot_knowledge.document_embeddings (id bigint PRIMARY KEY, embedding vector(384));
INSERT INTO chatbot_knowledge.document_embeddings
    SELECT g, (SELECT array_agg((('x' || substr(md5(g || ':' || i), 1, 8))::bit(32)::int
                                 / 2147483648.0)::real ORDER BY i)
               FROM generate_series(1, 384) i)::vector(384)
    FROM generate_series(1, 2000) g;
CREATE INDEX ON chatbot_knowledge.document_embeddings USING hnsw (embedding vector_l2_ops);
";

/// Debian bookworm has no pgvector for 15, so there the embeddings table is a plain one with the
/// same rows and the dump records no pgvector checks; 18 always has pgvector.
const NO_VECTOR_SQL: &str = "
CREATE TABLE chatbot_knowledge.document_embeddings (id bigint PRIMARY KEY, embedding real[]);
INSERT INTO chatbot_knowledge.document_embeddings
    SELECT g, ARRAY[g, g + 1]::real[] FROM generate_series(1, 2000) g;
";

/// `lifeline ARGS` against `repo`, with a private TMPDIR so leftovers of the staging directory show.
fn lifeline(repo: &Repo, tmpdir: &Path, args: &[OsString]) -> Out {
    let mut cmd = repo.cmd(args);
    cmd.env("TMPDIR", tmpdir);
    run(&mut cmd, None)
}

fn args(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// `pg --pg-bin DIR SUBCOMMAND...`
fn pg_args(version: PgVersion, rest: &[&str]) -> Vec<OsString> {
    let mut v = args(&["pg", "--pg-bin"]);
    v.push(version.bin_dir().into_os_string());
    v.extend(args(rest));
    v
}

fn dump_ids(repo: &Repo) -> Vec<String> {
    repo.snapshots()
        .iter()
        .filter(|s| json_str(s, "kind") == "postgres-dump")
        .map(|s| json_str(s, "id").to_string())
        .collect()
}

#[track_caller]
fn assert_staging_removed(tmpdir: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(tmpdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

fn dump_restore_verify(version: PgVersion) {
    let major = version.major();
    let tmp = shared_dir(&format!("lifeline-pg{major}-dump-"));
    let c = Cluster::init(version, tmp.path(), &[]);
    c.start();
    c.psql("CREATE DATABASE chatbot");
    c.psql_db("chatbot", SCHEMA_SQL);
    let has_vector =
        c.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") == "1";
    assert!(
        has_vector || version != PgVersion::V18,
        "the PostgreSQL 18 test server lacks pgvector"
    );
    c.psql_db(
        "chatbot",
        if has_vector {
            VECTOR_SQL
        } else {
            NO_VECTOR_SQL
        },
    );
    let url = c.url_db("chatbot");

    let repo = Repo::init();
    let tmpdir = repo.sandbox.mkdir("tmp");
    let mut dump = vec![
        "dump", "--json", "--db", &url, "--jobs", "2", "--tag", "env=test",
    ];
    for s in SCHEMAS {
        dump.extend(["--schema", s]);
    }
    let out = lifeline(&repo, &tmpdir, &pg_args(version, &dump));
    out.assert_success();
    assert_staging_removed(&tmpdir);
    let summary = out.json();
    let total_rows: u64 = TABLES.iter().map(|t| t.1).sum();
    assert_eq!(
        json_u64(&summary, "tables"),
        TABLES.len() as u64,
        "{summary}"
    );
    assert_eq!(json_u64(&summary, "rows"), total_rows, "{summary}");
    assert_eq!(
        json_u64(&summary, "pgvector_checks"),
        u64::from(has_vector),
        "{summary}"
    );
    assert_eq!(json_str(&summary, "database"), "chatbot");
    assert_eq!(json_str(&summary, "schemas"), SCHEMAS.join(","));
    let id = json_str(&summary, "snapshot_id").to_string();

    // The snapshot: kind, paths, what it records, and pg_dump's files at the root of its tree.
    let snaps = repo.snapshots();
    let snap = snaps
        .iter()
        .find(|s| json_str(s, "id") == id)
        .expect("the dump's snapshot is listed");
    assert_eq!(json_str(snap, "kind"), "postgres-dump");
    assert_eq!(snap["paths"], serde_json::json!(["chatbot"]));
    assert_eq!(snap["tags"]["env"], "test");
    let source = &snap["source"];
    assert_eq!(json_str(source, "dump_format"), "directory");
    assert_eq!(json_str(source, "database"), "chatbot");
    assert!(
        json_str(source, "server_version").starts_with(&major.to_string()),
        "{source}"
    );
    let counts: Value = serde_json::from_str(json_str(source, "row_counts")).unwrap();
    let expected: serde_json::Map<String, Value> = TABLES
        .iter()
        .map(|(t, n)| (t.to_string(), Value::from(*n)))
        .collect();
    assert_eq!(counts, Value::Object(expected));
    let checks: Value = serde_json::from_str(json_str(source, "pgvector")).unwrap();
    let checks = checks.as_array().unwrap();
    if has_vector {
        assert_eq!(checks.len(), 1, "{checks:?}");
        let check = &checks[0];
        assert_eq!(check["table"], EMBEDDINGS);
        assert_eq!(check["column"], "embedding");
        assert_eq!(check["key"], "id");
        assert_eq!(check["rows"], 2000);
        let samples = check["samples"].as_array().unwrap();
        let keys: Vec<&str> = samples.iter().map(|s| s["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["1", "2", "3"], "the samples are the smallest keys");
        for s in samples {
            let neighbours = s["neighbours"].as_array().unwrap();
            assert_eq!(neighbours.len(), 10);
            assert_eq!(
                neighbours[0], s["key"],
                "a vector is its own nearest neighbour"
            );
        }
    } else {
        assert!(checks.is_empty(), "{checks:?}");
    }
    let listing = repo.run(["ls", id.as_str()]);
    listing.assert_success().assert_output_contains("/toc.dat");

    // Restored into a new, empty database: every count and neighbour list is the same.
    c.psql("CREATE DATABASE restored");
    let restored_url = c.url_db("restored");
    let out = lifeline(
        &repo,
        &tmpdir,
        &pg_args(
            version,
            &[
                "restore-dump",
                "latest",
                "--db",
                &restored_url,
                "--jobs",
                "2",
            ],
        ),
    );
    out.assert_success()
        .assert_output_contains(&format!(
            "{} tables, {total_rows} rows: all counts equal",
            TABLES.len()
        ))
        .assert_output_contains(&format!("{} pgvector checks equal", u64::from(has_vector)));
    assert_staging_removed(&tmpdir);
    assert_eq!(
        c.psql_db(
            "restored",
            "SELECT count(*) FROM chatbot_compliance.events_b"
        ),
        "500"
    );

    // The original database still gives the recorded answers.
    lifeline(
        &repo,
        &tmpdir,
        &pg_args(version, &["verify", &id, "--db", &url]),
    )
    .assert_success()
    .assert_output_contains("all counts equal");

    // A restore into a database that is not empty is refused, saying why.
    lifeline(
        &repo,
        &tmpdir,
        &pg_args(version, &["restore-dump", &id, "--db", &restored_url]),
    )
    .assert_code(common::EXIT_FATAL)
    .assert_output_contains("empty database");
    assert_staging_removed(&tmpdir);

    // One row less, and (with pgvector) a vector that now ties with a sample: both are named.
    c.psql_db("restored", "DELETE FROM chatbot_app.messages WHERE id = 17");
    if has_vector {
        c.psql_db(
            "restored",
            "UPDATE chatbot_knowledge.document_embeddings
                SET embedding = (SELECT embedding FROM chatbot_knowledge.document_embeddings
                                  WHERE id = 1)
              WHERE id = 1500",
        );
    }
    let out = lifeline(
        &repo,
        &tmpdir,
        &pg_args(version, &["verify", &id[..12], "--db", &restored_url]),
    );
    out.assert_code(common::EXIT_FATAL)
        .assert_output_contains("chatbot_app.messages")
        .assert_output_contains("3000")
        .assert_output_contains("2999");
    if has_vector {
        out.assert_output_contains("neighbours of id 1 (embedding)")
            .assert_output_contains(EMBEDDINGS);
    }
    assert!(
        !out.all_output().contains("chatbot_auth.users"),
        "only what changed is reported\n{}",
        out.describe()
    );

    // A schema the database does not have: a clear error, and no snapshot.
    let before = repo.snapshots().len();
    let out = lifeline(
        &repo,
        &tmpdir,
        &pg_args(
            version,
            &[
                "dump",
                "--db",
                &url,
                "--schema",
                "chatbot_app",
                "--schema",
                "chatbot_nope",
            ],
        ),
    );
    out.assert_code(common::EXIT_FATAL)
        .assert_output_contains("chatbot_nope")
        .assert_output_contains("not found");
    assert_eq!(
        repo.snapshots().len(),
        before,
        "a failed dump saved a snapshot"
    );
    assert_staging_removed(&tmpdir);

    // A database that cannot be reached: a clear error, and no snapshot.
    let nowhere = format!("postgresql://postgres@127.0.0.1:{}/chatbot", free_port());
    lifeline(
        &repo,
        &tmpdir,
        &pg_args(version, &["dump", "--db", &nowhere]),
    )
    .assert_code(common::EXIT_FATAL)
    .assert_output_contains("cannot connect");
    assert_eq!(repo.snapshots().len(), before);
    assert_eq!(dump_ids(&repo), vec![id]);

    // A snapshot of another kind is refused by restore-dump.
    let file = repo.sandbox.write("notes.txt", "not a dump");
    let files_id = json_str(&repo.backup(&[&file], &[]), "snapshot_id").to_string();
    lifeline(
        &repo,
        &tmpdir,
        &pg_args(version, &["restore-dump", &files_id, "--db", &restored_url]),
    )
    .assert_code(common::EXIT_FATAL)
    .assert_output_contains("needs a postgres-dump snapshot");
}

#[test]
fn pg15_dump_restore_verify() {
    dump_restore_verify(PgVersion::V15);
}

#[test]
fn pg18_dump_restore_verify() {
    dump_restore_verify(PgVersion::V18);
}
