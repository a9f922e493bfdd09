//! The drill of an export: restore its file into the scratch directory, read it back from disk and
//! check it against what the export recorded — content hash, row count, chain hash, and that it
//! starts with the table's columns (what `\copy … FROM` or a JSON loader needs).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use lifeline_repo::drill::{Check, CheckResult, Step};
use lifeline_repo::Repository;

use super::chain::Export;
use super::count::{Counted, Tally};
use super::error::{Error, Result};
use super::{keys, Format};
use crate::drill::{check, DrillRequest, Drilled, CLEANUP};
use crate::files::{self, RestoreOptions};
use crate::Progress;

/// Restore `request.snapshot`, check it, remove it again.
pub fn drill(
    repo: &Repository,
    request: &DrillRequest<'_>,
    progress: &dyn Progress,
) -> Result<Drilled> {
    let export = Export::from_snapshot(request.id, request.snapshot.clone()).map_err(|why| {
        Error::Invalid(format!(
            "snapshot {} is not a readable audit-table export: {why}",
            request.id.short()
        ))
    })?;
    let mut drilled = Drilled::default();
    let target = request.scratch.join("export");
    let reader = repo.reader()?;
    let restored = step(&mut drilled, "restore", || {
        progress.total(request.snapshot.summary.bytes);
        let r = files::restore(
            &reader,
            request.snapshot.tree,
            &target,
            &RestoreOptions::default(),
            progress,
        )
        .map_err(|e| e.to_string())?;
        match r.errors.first() {
            Some((path, err)) => Err(format!("{}: {err}", path.display())),
            None => Ok(format!(
                "{} ({} bytes) into {}",
                export.file,
                r.bytes,
                target.display()
            )),
        }
    });
    if restored {
        drilled.recovery_point = Some(request.snapshot.timestamp());
        drilled.restored = vec![request.id];
        let path = target.join(&export.file);
        let mut counted = None;
        step(&mut drilled, "verify", || {
            let c = tally(&path, export.link.format).map_err(|e| e.to_string())?;
            let said = format!("{} row(s), {} bytes read back", c.rows, c.bytes);
            counted = Some(c);
            Ok(said)
        });
        if let Some(c) = counted {
            drilled.checks.extend(checks(&export, &c, &path));
        }
    }
    if let Some(v) = request.snapshot.source.get(keys::SERVER_VERSION) {
        drilled.versions.insert("postgres".into(), v.clone());
    }
    let clock = Instant::now();
    step(&mut drilled, CLEANUP, || {
        match std::fs::remove_dir_all(&target) {
            Ok(()) => Ok(format!("removed {}", target.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("nothing to remove".into()),
            Err(e) => Err(format!("{}: {e}", target.display())),
        }
    });
    drilled.cleanup_seconds = clock.elapsed().as_secs_f64();
    Ok(drilled)
}

/// Run one timed step; returns whether it succeeded.
fn step(
    drilled: &mut Drilled,
    name: &str,
    run: impl FnOnce() -> std::result::Result<String, String>,
) -> bool {
    let clock = Instant::now();
    let result = run();
    let ok = result.is_ok();
    drilled.steps.push(Step {
        name: name.into(),
        seconds: clock.elapsed().as_secs_f64(),
        ok,
        message: Some(result.unwrap_or_else(|e| e)).filter(|m| !m.is_empty()),
    });
    ok
}

fn tally(path: &Path, format: Format) -> Result<Counted> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut tally = Tally::new(format);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        tally.feed(&buf[..n]);
    }
    Ok(tally.finish())
}

fn checks(export: &Export, c: &Counted, path: &Path) -> Vec<Check> {
    let l = &export.link;
    let compare = |name: &str, expected: String, actual: String, what: &str| Check {
        name: name.into(),
        result: if expected == actual {
            CheckResult::Pass
        } else {
            CheckResult::Fail
        },
        message: Some(if expected == actual {
            format!("the restored file's {what} is the one the export recorded")
        } else {
            format!("the restored file's {what} differs from the export's record")
        }),
        expected: Some(expected),
        actual: Some(actual),
    };
    let mut out = vec![
        compare(
            "content hash",
            l.content_sha256.clone(),
            c.sha256.clone(),
            "SHA-256",
        ),
        compare(
            "row count",
            l.rows.to_string(),
            c.rows.to_string(),
            "row count",
        ),
    ];
    out.push(match l.hash() {
        Ok(h) if h == export.chain_sha256 => check(
            "chain hash",
            CheckResult::Pass,
            format!(
                "export #{} of chain {} hashes to its chain hash",
                l.seq, l.chain
            ),
        ),
        Ok(h) => check(
            "chain hash",
            CheckResult::Fail,
            format!(
                "the export's record hashes to {h}, not to its chain hash {}: it was changed",
                export.chain_sha256
            ),
        ),
        Err(e) => check("chain hash", CheckResult::Fail, e.to_string()),
    });
    out.extend(columns(export, path));
    out
}

/// The file starts the way a loader needs: the CSV header names the table's columns, or the first
/// JSON line is an object with exactly those keys.
fn columns(export: &Export, path: &Path) -> Option<Check> {
    let recorded: Vec<(String, String)> =
        serde_json::from_str(export.snapshot.source.get(keys::COLUMNS)?).ok()?;
    let names: Vec<&str> = recorded.iter().map(|(n, _)| n.as_str()).collect();
    let mut first = String::new();
    let read = File::open(path).and_then(|f| BufReader::new(f).read_line(&mut first));
    if let Err(e) = read {
        return Some(check(
            "columns",
            CheckResult::Fail,
            format!("cannot read the file: {e}"),
        ));
    }
    let first = first.trim_end_matches('\n');
    let (ok, found) = match export.link.format {
        // Names PostgreSQL would quote in a header are compared as it writes them only when plain.
        Format::Csv => {
            if !names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return None;
            }
            (first == names.join(","), first.to_string())
        }
        Format::Jsonl => {
            if export.link.rows == 0 {
                return None;
            }
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(first) {
                Ok(object) => {
                    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
                    let mut want = names.clone();
                    want.sort_unstable();
                    let mut have = keys.clone();
                    have.sort_unstable();
                    (want == have, keys.join(","))
                }
                Err(e) => (false, format!("not a JSON object: {e}")),
            }
        }
    };
    Some(Check {
        name: "columns".into(),
        result: if ok {
            CheckResult::Pass
        } else {
            CheckResult::Fail
        },
        expected: Some(names.join(",")),
        actual: Some(found),
        message: Some(if ok {
            format!("the file holds the table's {} column(s)", names.len())
        } else {
            "the file does not start with the table's columns".into()
        }),
    })
}
