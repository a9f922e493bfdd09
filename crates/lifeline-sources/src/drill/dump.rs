//! The drill of a logical dump: restore it into a scratch server of the dumped server's major
//! version (never into the production server: a drill needs no write access there), compare every
//! table's row count with the count recorded in the dump's own snapshot (exactly: the dump is one
//! point in time), ask the recorded pgvector questions and the plan's queries, and remove the server.

use std::path::Path;

use lifeline_repo::Repository;

use super::scratch::ScratchServer;
use super::sql::{self, quote_ident, Strictness};
use super::{remove_tree, Check, DrillRequest, Drilled, Recorder, CLEANUP};
use crate::files::{self, RestoreOptions};
use crate::postgres::dump::{source, Recorded};
use crate::postgres::tools::{self, Tools};
use crate::postgres::{Error, Result};
use crate::Progress;

/// Restore the dump into a scratch server, compare, clean up. `jobs` is `pg_restore --jobs`.
pub fn drill(
    repo: &Repository,
    request: &DrillRequest<'_>,
    jobs: u32,
    tools: &dyn Fn(u32) -> Tools,
    progress: &dyn Progress,
) -> Result<Drilled> {
    let mut rec = Recorder::default();
    let snapshot = request.snapshot;
    // Read first: a snapshot whose records are damaged cannot be judged, so nothing is started.
    let recorded = rec.step(
        "records",
        || Recorded::from_source(&snapshot.source),
        |r| {
            format!(
                "{} table(s) and {} pgvector column(s) recorded",
                r.row_counts.as_ref().map_or(0, |c| c.len()),
                r.vector_checks.len()
            )
        },
    );
    let server_major = major_of(snapshot.source.get(source::SERVER_VERSION));
    let dump_major = snapshot
        .source
        .get(source::PG_DUMP_MAJOR)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let database = snapshot
        .source
        .get(source::DATABASE)
        .cloned()
        .unwrap_or_else(|| "postgres".into());
    let dir = request.scratch.join("dump-drill");
    let server = match (recorded.is_some(), server_major) {
        (false, _) => None,
        (true, None) => {
            rec.step(
                "scratch server",
                || {
                    Err::<(), _>(
                        "the snapshot does not record its server's version, so no matching server can be started",
                    )
                },
                |_| String::new(),
            );
            None
        }
        (true, Some(major)) => rec.step(
            "scratch server",
            || start(tools(major), &dir, &database),
            |(_, url)| format!("PostgreSQL {major}, database {database}, at {url}"),
        ),
    };
    if let (Some(recorded), Some((_, url))) = (recorded, &server) {
        let restore_tools = tools(server_major.unwrap_or(0).max(dump_major));
        let restored = rec.step(
            "restore",
            || restore(repo, request, &dir, url, jobs, &restore_tools, progress),
            |bytes| format!("{bytes} bytes of dump restored with pg_restore"),
        );
        if restored.is_some() {
            rec.drilled.recovery_point = Some(snapshot.timestamp());
            rec.drilled.restored = vec![request.id];
            if let Ok(v) = restore_tools.major_version("pg_restore") {
                rec.drilled
                    .versions
                    .insert("pg_restore".into(), v.to_string());
            }
            let compared = rec.step(
                "compare",
                || compare(url, &recorded, request),
                |checks| format!("{} check(s)", checks.len()),
            );
            if let Some(checks) = compared {
                for c in checks {
                    rec.check(c);
                }
            }
            if let Ok(mut client) = tools::connect(url) {
                if let Some(v) = sql::server_version(&mut client) {
                    rec.drilled.versions.insert("postgres".into(), v);
                }
            }
        }
    }
    rec.step(
        CLEANUP,
        || -> Result<&str> {
            if let Some((server, _)) = &server {
                server.running.stop()?;
            }
            remove_tree(&dir).map_err(|e| Error::io(&dir, e))?;
            Ok(if server.is_some() {
                "scratch server stopped and removed"
            } else {
                "nothing was started"
            })
        },
        |said| said.to_string(),
    );
    Ok(rec.finish())
}

/// The major version in a `server_version` text (`18.1`, `15.13 (Debian 15.13-1)`, `9.6.24`: 9).
fn major_of(version: Option<&String>) -> Option<u32> {
    version?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Start the scratch server and create the dumped database in it (named as the original, so the
/// plan's queries read as they would there). Returns the server and that database's URL.
fn start(tools: Tools, dir: &Path, database: &str) -> Result<(ScratchServer, String)> {
    let server = ScratchServer::start(tools, dir)?;
    if database != "postgres" {
        let mut client = tools::connect(&server.url("postgres"))?;
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
                quote_ident(database)
            ))
            .map_err(|e| Error::db(format!("creating database {database}"), e))?;
    }
    let url = server.url(database);
    Ok((server, url))
}

/// Write the dump's files under `dir` and restore them with `pg_restore`. Ownership and grants are
/// left out: they name roles of the production cluster, which a scratch cluster does not have, and
/// a drill proves the data, not the roles. Returns the dump's size.
fn restore(
    repo: &Repository,
    request: &DrillRequest<'_>,
    dir: &Path,
    url: &str,
    jobs: u32,
    tools: &Tools,
    progress: &dyn Progress,
) -> Result<u64> {
    let need = tools.major_version("pg_restore")?;
    let dump_major = request
        .snapshot
        .source
        .get(source::PG_DUMP_MAJOR)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    if need < dump_major {
        return Err(Error::Invalid(format!(
            "{} is version {need} but the dump was written by pg_dump {dump_major}; install PostgreSQL {dump_major}'s programs or set [postgres] bin_dir",
            tools.program("pg_restore").display()
        )));
    }
    let files_dir = dir.join("dump");
    progress.total(request.snapshot.summary.bytes);
    let reader = repo.reader()?;
    let restored = files::restore(
        &reader,
        request.snapshot.tree,
        &files_dir,
        &RestoreOptions::default(),
        progress,
    )?;
    if let Some((path, err)) = restored.errors.first() {
        return Err(Error::FilesNotRestored {
            count: restored.errors.len(),
            first: path.clone(),
            error: err.clone(),
        });
    }
    if !files_dir.join("toc.dat").is_file() {
        return Err(Error::Invalid(
            "the snapshot holds no toc.dat: it is not a pg_dump directory-format dump".into(),
        ));
    }
    let mut cmd = tools.command("pg_restore");
    cmd.arg(format!("--jobs={}", jobs.max(1)))
        .args([
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--no-password",
        ])
        .arg("--dbname")
        .arg(url)
        .arg(&files_dir);
    tools::run(&mut cmd, "pg_restore")?;
    // The dump's files are not needed once restored; the database holds the data now.
    remove_tree(&files_dir).map_err(|e| Error::io(&files_dir, e))?;
    Ok(restored.bytes)
}

/// Row counts (exact), pgvector answers (exact) and the plan's queries.
fn compare(url: &str, recorded: &Recorded, request: &DrillRequest<'_>) -> Result<Vec<Check>> {
    let mut client = tools::connect(url)?;
    let mut checks = sql::rows(&mut client, recorded, Strictness::Exact);
    checks.extend(sql::vectors(&mut client, recorded, Strictness::Exact));
    checks.extend(sql::queries(&mut client, request.checks));
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::major_of;

    #[test]
    fn the_major_version_is_the_first_number() {
        let v = |s: &str| major_of(Some(&s.to_string()));
        assert_eq!(v("18.1"), Some(18));
        assert_eq!(v("15.13 (Debian 15.13-1.pgdg120+1)"), Some(15));
        assert_eq!(v("9.6.24"), Some(9));
        assert_eq!(v("devel"), None);
        assert_eq!(major_of(None), None);
    }
}
