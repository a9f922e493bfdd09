//! Logical dumps: `pg_dump`'s directory format taken from an exported snapshot, stored file by file as
//! a flat tree, with the row count of every table and the pgvector answers read in that same
//! snapshot; restored with `pg_restore` and checked against those records.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::{Snapshot, Summary};
use lifeline_repo::tree::{Node, Tree};
use lifeline_repo::{BlobReader, Writer};
use postgres::{Client, GenericClient, IsolationLevel};
use rayon::prelude::*;

use super::error::{Error, Result};
use super::tools::{self, Tools};
use super::vector::{self, Mismatch, VectorCheck};
use crate::Progress;

/// The snapshot kind of a logical dump.
pub const KIND: &str = "postgres-dump";

/// Keys of a dump snapshot's `source` map.
pub mod source {
    pub const SERVER_VERSION: &str = "server_version";
    pub const DATABASE: &str = "database";
    /// The dumped schemas, comma-separated, or `*` for all.
    pub const SCHEMAS: &str = "schemas";
    /// JSON object `"schema.table"` → row count.
    pub const ROW_COUNTS: &str = "row_counts";
    /// JSON list of [`crate::postgres::vector::VectorCheck`].
    pub const PGVECTOR: &str = "pgvector";
    pub const DUMP_FORMAT: &str = "dump_format";
    /// Major version of the `pg_dump` that wrote the dump: `pg_restore` must be at least as new.
    pub const PG_DUMP_MAJOR: &str = "pg_dump_major";
}

/// Schemas that are PostgreSQL's own, never user data.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// What to dump.
#[derive(Debug, Clone)]
pub struct DumpRequest<'a> {
    /// libpq connection URI or key=value string.
    pub url: &'a str,
    /// Schemas to dump; every non-system schema when empty.
    pub schemas: &'a [String],
    /// `pg_dump --jobs`.
    pub jobs: u32,
}

/// A dump stored in the repository, with the snapshot that will name it (not yet saved).
#[derive(Debug)]
pub struct Dumped {
    pub snapshot: Snapshot,
    pub tables: usize,
    pub rows: u64,
    pub vector_checks: usize,
}

/// Dump a database: export a snapshot from a REPEATABLE READ transaction, count every table's rows
/// and record the pgvector answers in it, run `pg_dump --snapshot` while it stays open, then store the
/// dump's files through `writer`. `tools` picks the client programs for a server major version. The
/// dump is staged uncompressed in a private directory under `$TMPDIR`, removed afterwards.
pub fn dump(
    writer: &Writer<'_>,
    request: &DumpRequest<'_>,
    tools: &dyn Fn(u32) -> Tools,
    progress: &dyn Progress,
) -> Result<Dumped> {
    let started = std::time::Instant::now();
    let mut client = tools::connect(request.url)?;
    let major = tools::server_major(&mut client)?;
    let tools = tools(major);
    tools.check_version("pg_dump", major)?;
    let pg_dump_major = tools.major_version("pg_dump")?;

    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| Error::db("starting the dump transaction", e))?;
    // First statement of the transaction, so the counts below read exactly what pg_dump will.
    let snapshot_id: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .map_err(|e| Error::db("exporting a snapshot for pg_dump", e))?
        .get(0);
    let row = tx
        .query_one(
            "SELECT current_database()::text, current_setting('server_version')",
            &[],
        )
        .map_err(|e| Error::db("reading the database name", e))?;
    let (database, server_version): (String, String) = (row.get(0), row.get(1));
    check_schemas(&mut tx, &database, request.schemas)?;
    let counts = row_counts(&mut tx, request.schemas)?;
    let checks = vector::capture_schemas(&mut tx, request.schemas)?;
    let extensions = if request.schemas.is_empty() {
        Vec::new()
    } else {
        extensions(&mut tx)?
    };

    let staging = staging("dump")?;
    let dir = staging.path().join("dump");
    let mut cmd = tools.command("pg_dump");
    cmd.arg("--format=directory")
        .arg(format!("--jobs={}", request.jobs))
        .arg(format!("--snapshot={snapshot_id}"))
        // Uncompressed, so lifeline's chunking finds unchanged tables again and zstd compresses once.
        .args(["-Z", "0"])
        .arg("--no-password")
        .arg("--file")
        .arg(&dir)
        .arg("--dbname")
        .arg(request.url);
    for schema in request.schemas {
        cmd.arg("--schema").arg(exact_pattern(schema));
    }
    // With --schema, pg_dump leaves out extensions (CREATE EXTENSION vector, …), and a restore of
    // tables with their types would fail; --extension (pg_dump 14+) brings them back.
    if pg_dump_major >= 14 {
        for ext in &extensions {
            cmd.arg("--extension").arg(exact_pattern(ext));
        }
    } else if !extensions.is_empty() {
        tracing::warn!(
            "pg_dump {pg_dump_major} cannot select extensions: the dump will not create {}",
            extensions.join(", ")
        );
    }
    tools::run(&mut cmd, "pg_dump")?;
    tx.commit()
        .map_err(|e| Error::db("ending the dump transaction", e))?;

    let (tree, files, bytes) = store_dir(writer, &dir, progress)?;
    let rows = counts.values().sum();
    let mut snapshot = Snapshot::new(KIND, vec![database.clone()], tree);
    let json = |e: serde_json::Error| Error::Invalid(format!("encoding the dump's records: {e}"));
    snapshot.source = BTreeMap::from([
        (source::SERVER_VERSION.into(), server_version),
        (source::DATABASE.into(), database),
        (
            source::SCHEMAS.into(),
            if request.schemas.is_empty() {
                "*".into()
            } else {
                request.schemas.join(",")
            },
        ),
        (
            source::ROW_COUNTS.into(),
            serde_json::to_string(&counts).map_err(json)?,
        ),
        (
            source::PGVECTOR.into(),
            serde_json::to_string(&checks).map_err(json)?,
        ),
        (source::DUMP_FORMAT.into(), "directory".into()),
        (source::PG_DUMP_MAJOR.into(), pg_dump_major.to_string()),
    ]);
    snapshot.summary = Summary {
        files,
        bytes,
        files_new: files,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    Ok(Dumped {
        snapshot,
        tables: counts.len(),
        rows,
        vector_checks: checks.len(),
    })
}

/// Refuse schemas the database does not have before anything is dumped: `pg_dump --schema` with a
/// name that matches nothing fails only after connecting, with a less helpful message.
fn check_schemas(tx: &mut impl GenericClient, database: &str, schemas: &[String]) -> Result<()> {
    if schemas.is_empty() {
        return Ok(());
    }
    let existing: Vec<String> = tx
        .query(
            &format!("SELECT n.nspname::text FROM pg_namespace n WHERE {USER_SCHEMAS} ORDER BY 1"),
            &[],
        )
        .map_err(|e| Error::db("listing schemas", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<&str> = schemas
        .iter()
        .filter(|s| !existing.contains(s))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "schema {} not found in database {database:?}; its schemas are: {} (names are case-sensitive)",
        missing
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        if existing.is_empty() {
            "(none)".to_string()
        } else {
            existing.join(", ")
        }
    )))
}

/// Installed extensions other than plpgsql (present in every database).
fn extensions(tx: &mut impl GenericClient) -> Result<Vec<String>> {
    Ok(tx
        .query(
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
            &[],
        )
        .map_err(|e| Error::db("listing extensions", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A pg_dump name pattern that matches exactly `name`: in double quotes, wildcards and dots are
/// literal and case is kept.
fn exact_pattern(name: &str) -> String {
    vector::quote_ident(name)
}

/// The row count of every ordinary and partitioned table in `schemas` (every non-system schema when
/// empty), keyed `schema.table`. Partitions are counted through their parent; tables that belong to
/// an extension are left out, as pg_dump leaves out their rows.
pub fn row_counts(
    client: &mut impl GenericClient,
    schemas: &[String],
) -> Result<BTreeMap<String, u64>> {
    let tables = client
        .query(
            &format!(
                "SELECT n.nspname::text || '.' || c.relname::text, \
                        quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_SCHEMAS} \
                    AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[])) \
                    AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                                       AND d.deptype = 'e') \
                  ORDER BY n.nspname, c.relname"
            ),
            &[&schemas],
        )
        .map_err(|e| Error::db("listing tables", e))?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let (name, quoted): (String, String) = (row.get(0), row.get(1));
        let n = vector::count(client, &quoted, &name)?;
        counts.insert(name, n);
    }
    Ok(counts)
}

/// Count the rows of every recorded table again. Tables the database has and the record does not are
/// not compared.
pub fn compare_row_counts(
    client: &mut impl GenericClient,
    expected: &BTreeMap<String, u64>,
) -> Result<Vec<Mismatch>> {
    let tables = vector::table_names(client)?;
    let mut mismatches = Vec::new();
    for (name, &want) in expected {
        let (expected_text, found) = match tables.get(name) {
            Some((_, quoted)) => {
                let have = vector::count(client, quoted, name)?;
                if have == want {
                    continue;
                }
                (want.to_string(), have.to_string())
            }
            None => (format!("{want} rows"), "no such table".to_string()),
        };
        mismatches.push(Mismatch {
            table: name.clone(),
            check: "row count".into(),
            expected: expected_text,
            found,
        });
    }
    Ok(mismatches)
}

/// What a snapshot recorded to check a database against: its row counts (dumps) and pgvector answers
/// (dumps and base backups).
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub row_counts: Option<BTreeMap<String, u64>>,
    pub vector_checks: Vec<VectorCheck>,
}

impl Recorded {
    pub fn from_source(source: &BTreeMap<String, String>) -> Result<Self> {
        let bad = |key: &str, e: serde_json::Error| {
            Error::Invalid(format!(
                "the snapshot's {key} record is not valid ({e}); it cannot be verified"
            ))
        };
        let row_counts = source
            .get(source::ROW_COUNTS)
            .map(|text| serde_json::from_str(text).map_err(|e| bad(source::ROW_COUNTS, e)))
            .transpose()?;
        let vector_checks = source
            .get(source::PGVECTOR)
            .map(|text| serde_json::from_str(text).map_err(|e| bad(source::PGVECTOR, e)))
            .transpose()?
            .unwrap_or_default();
        Ok(Recorded {
            row_counts,
            vector_checks,
        })
    }

    /// Nothing to compare: no row counts (an empty table list still counts: it says there were no
    /// tables) and no pgvector answers.
    pub fn is_empty(&self) -> bool {
        self.row_counts.is_none() && self.vector_checks.is_empty()
    }
}

/// The outcome of comparing a database with a snapshot's records.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// Tables whose row counts were compared.
    pub tables: usize,
    /// Rows the record expects in them.
    pub rows: u64,
    /// pgvector columns checked.
    pub vector_checks: usize,
    /// Neighbour lists compared (samples of those columns).
    pub neighbour_lists: usize,
    /// Every difference; empty when the database gives the recorded answers.
    pub mismatches: Vec<Mismatch>,
}

/// Compare the database at `url` with `recorded`, all in one REPEATABLE READ snapshot. A record with
/// nothing in it is an error: a check that compares nothing must not pass.
pub fn verify(url: &str, recorded: &Recorded) -> Result<Verification> {
    if recorded.is_empty() {
        return Err(Error::Invalid(
            "the snapshot records no row counts and no pgvector answers (the database had no vector columns): there is nothing to compare".into(),
        ));
    }
    let mut client = tools::connect(url)?;
    verify_with(&mut client, recorded)
}

fn verify_with(client: &mut Client, recorded: &Recorded) -> Result<Verification> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| Error::db("starting the verification transaction", e))?;
    let mut mismatches = Vec::new();
    let (mut tables, mut rows) = (0, 0);
    if let Some(counts) = &recorded.row_counts {
        mismatches.extend(compare_row_counts(&mut tx, counts)?);
        tables = counts.len();
        rows = counts.values().sum();
    }
    // A vector table's row count is also among the row counts: one difference, reported once.
    for m in vector::verify(&mut tx, &recorded.vector_checks)? {
        if !mismatches.contains(&m) {
            mismatches.push(m);
        }
    }
    tx.commit()
        .map_err(|e| Error::db("ending the verification transaction", e))?;
    Ok(Verification {
        tables,
        rows,
        vector_checks: recorded.vector_checks.len(),
        neighbour_lists: recorded.vector_checks.iter().map(|c| c.samples.len()).sum(),
        mismatches,
    })
}

/// Restore a dump snapshot into the (empty) database at `url` with `pg_restore --jobs`. The dump's
/// files are written to a private directory under `$TMPDIR` first, removed afterwards. Returns the
/// dump's size in bytes.
pub fn restore(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
    url: &str,
    jobs: u32,
    tools: &dyn Fn(u32) -> Tools,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut client = tools::connect(url)?;
    let server = tools::server_major(&mut client)?;
    drop(client);
    // pg_restore must read the archive version the dump's pg_dump wrote, and the target's catalogs.
    let dump_major = snapshot
        .source
        .get(source::PG_DUMP_MAJOR)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let need = server.max(dump_major);
    let tools = tools(need);
    tools.check_version("pg_restore", need)?;

    let staging = staging("restore")?;
    let dir = staging.path().join("dump");
    let restored = crate::files::restore(
        reader,
        snapshot.tree,
        &dir,
        &crate::files::RestoreOptions::default(),
        progress,
    )?;
    if let Some((path, err)) = restored.errors.first() {
        return Err(Error::Invalid(format!(
            "cannot write the dump's file {} ({err}){}",
            path.display(),
            match restored.errors.len() {
                1 => String::new(),
                n => format!(" and {} other(s)", n - 1),
            }
        )));
    }
    if !dir.join("toc.dat").is_file() {
        return Err(Error::Invalid(
            "the snapshot holds no toc.dat: it is not a pg_dump directory-format dump".into(),
        ));
    }
    let mut cmd = tools.command("pg_restore");
    cmd.arg(format!("--jobs={jobs}"))
        .arg("--exit-on-error")
        .arg("--no-password")
        .arg("--dbname")
        .arg(url)
        .arg(&dir);
    match tools::run(&mut cmd, "pg_restore") {
        Ok(_) => Ok(restored.bytes),
        Err(Error::Tool { stderr, .. }) if stderr.contains("already exists") => {
            Err(Error::Invalid(format!(
                "pg_restore failed because the target database already has some of the dump's objects{}\n\
                 restore-dump does not drop anything: restore into an empty database (CREATE DATABASE newdb) instead",
                stderr.trim_end()
            )))
        }
        Err(e) => Err(e),
    }
}

/// Store every file of a flat directory (pg_dump's output) as one tree. Returns the tree, the number
/// of files and their bytes.
fn store_dir(
    writer: &Writer<'_>,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(lifeline_repo::Id, u64, u64)> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!(
                "{} in pg_dump's output is not a regular file; a directory-format dump has only files",
                path.display()
            )));
        }
        paths.push((path, meta.len()));
    }
    // Largest first, so the big table files start early and the small ones fill in around them.
    paths.sort_by_key(|p| std::cmp::Reverse(p.1));
    let bytes = AtomicU64::new(0);
    let nodes = paths
        .par_iter()
        .map(|(path, _)| {
            let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mtime = file
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| Error::io(path, e))?;
            let (content, size) =
                writer.add_stream(file, ChunkProfile::Stream, path, &|n| progress.bytes(n))?;
            progress.file_done(size);
            bytes.fetch_add(size, Ordering::Relaxed);
            let name = path
                .file_name()
                .map(|n| n.as_encoded_bytes().to_vec())
                .ok_or_else(|| Error::Invalid(format!("{} has no file name", path.display())))?;
            Ok(Node::file(name, size, content, nanos(mtime)))
        })
        .collect::<Result<Vec<_>>>()?;
    let files = nodes.len() as u64;
    let tree = writer.add_tree(Tree { nodes })?;
    Ok((tree, files, bytes.into_inner()))
}

fn nanos(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A private (0700: dumps hold the database's data) directory under `$TMPDIR`, removed when
/// dropped, so it goes on success, on error and on an early return alike.
fn staging(what: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("lifeline-pg-{what}-"))
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot create a staging directory in {} ({e}); set TMPDIR to a writable directory with room for the dump",
                std::env::temp_dir().display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::{exact_pattern, staging, Recorded};
    use std::collections::BTreeMap;

    #[test]
    fn schema_patterns_match_one_name() {
        assert_eq!(exact_pattern("chatbot_app"), "\"chatbot_app\"");
        assert_eq!(exact_pattern("My.Schema*"), "\"My.Schema*\"");
    }

    #[test]
    fn records_parse_and_report_damage() {
        let mut source = BTreeMap::from([("row_counts".to_string(), "{\"a.b\": 3}".to_string())]);
        let rec = Recorded::from_source(&source).expect("valid record");
        assert_eq!(rec.row_counts.as_ref().and_then(|c| c.get("a.b")), Some(&3));
        assert!(rec.vector_checks.is_empty() && !rec.is_empty());
        source.insert("pgvector".into(), "not json".into());
        let err = Recorded::from_source(&source).expect_err("damaged record");
        assert!(err.to_string().contains("pgvector"), "{err}");
        assert!(Recorded::from_source(&BTreeMap::new())
            .expect("empty")
            .is_empty());
        let no_tables = BTreeMap::from([("row_counts".to_string(), "{}".to_string())]);
        assert!(!Recorded::from_source(&no_tables).expect("valid").is_empty());
    }

    #[test]
    fn staging_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let staging = staging("test").expect("staging dir");
        let path = staging.path().to_path_buf();
        std::fs::write(path.join("f"), b"x").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(staging);
        assert!(!path.exists());
    }
}
