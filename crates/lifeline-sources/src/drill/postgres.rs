//! The drill of a PostgreSQL base backup: prove the WAL archive continuous from the backup to its
//! newest segment, restore the backup (and its incremental chain) into the scratch directory,
//! recover it on a free port to the newest reachable point (or a chosen time) and promote it, then
//! check it: `pg_amcheck` where the server has amcheck, the row counts and pgvector answers the
//! backup recorded, the plan's queries. The server is stopped and its data removed however the drill
//! ends.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use lifeline_repo::snapshot::SnapshotFilter;
use lifeline_repo::Repository;

use super::scratch::Running;
use super::sql::{self, Strictness};
use super::{check, remove_tree, Check, CheckResult, DrillRequest, Drilled, Recorder, CLEANUP};
use crate::postgres::catalog::{self, keys};
use crate::postgres::dump::Recorded;
use crate::postgres::recovery::{self, Action, Target, TimelineChoice};
use crate::postgres::restore::{self, RestoreRequest};
use crate::postgres::server::{self, Recovery, StartRequest};
use crate::postgres::tools::{self, Tools};
use crate::postgres::wal;
use crate::postgres::{Error, Result};
use crate::Progress;

/// Check the archive, restore, recover, check, clean up.
pub fn drill(
    repo: &Repository,
    request: &DrillRequest<'_>,
    tools: &dyn Fn(u32) -> Tools,
    progress: &dyn Progress,
) -> Result<Drilled> {
    let mut rec = Recorder::default();
    let target = match request.time {
        Some(t) => Target::Time(t),
        None => Target::Latest,
    };
    let set = request.id.to_hex();
    let system_id = request
        .snapshot
        .source
        .get(keys::SYSTEM_ID)
        .and_then(|s| s.parse::<u64>().ok());
    // The backup was chosen already; the filter would only refuse it.
    let filter = SnapshotFilter::default();
    // Recovery follows the newest timeline, as a real recovery of the primary would.
    let timeline = TimelineChoice::Latest;
    let planned = rec.step(
        "wal",
        || -> Result<recovery::Plan> {
            let backups = catalog::of_cluster(catalog::base_backups(repo)?, system_id)?;
            recovery::plan(repo, backups, target.clone(), Some(&set), &filter, timeline)
        },
        continuity,
    );
    let pgdata = request.scratch.join("pgdata");
    let tablespace_dir = request.scratch.join("tablespaces");
    let mut running = None;
    if let Some(planned) = planned {
        let major = planned.backup().major;
        rec.drilled.restored = planned.chain.iter().map(|b| b.id).collect();
        let restored = rec.step(
            "restore",
            || {
                let restore_command = request.restore_command.ok_or_else(|| {
                    Error::Invalid(
                        "a PostgreSQL drill needs the command recovery fetches WAL with".into(),
                    )
                })?;
                let restore_request = RestoreRequest {
                    pgdata: &pgdata,
                    delta: false,
                    target: target.clone(),
                    timeline,
                    set: Some(&set),
                    filter: &filter,
                    system_id,
                    // Promoted, so amcheck can be installed and the plan's queries may write.
                    action: Action::Promote,
                    keep_archiving: false,
                    restore_command,
                    start: true,
                    // Beside the copy, never where the original's tablespaces are.
                    tablespace_dir: Some(&tablespace_dir),
                };
                restore::restore(repo, &restore_request, tools, progress)
            },
            |r| {
                format!(
                    "{} base backup(s) restored into {}",
                    r.plan.chain.len(),
                    r.pgdata.display()
                )
            },
        );
        if let Some(restored) = restored {
            // Watched before it starts: a start that times out leaves the server running.
            running = Some(Running::new(tools(major), &pgdata));
            let start = StartRequest {
                port: None,
                timeout: request.timeout,
            };
            let recovered = rec.step(
                "start server",
                || server::start(&restored, &start, tools),
                describe,
            );
            if let Some(recovery) = recovered {
                rec.drilled.recovery_point =
                    reached(&target, &recovery, &restored.plan, request.snapshot);
                check_server(&mut rec, request, &recovery, &tools(major));
            }
        }
    }
    rec.step(
        CLEANUP,
        || -> Result<&str> {
            if let Some(r) = &running {
                r.stop()?;
            }
            remove_tree(&pgdata).map_err(|e| Error::io(&pgdata, e))?;
            remove_tree(&tablespace_dir).map_err(|e| Error::io(&tablespace_dir, e))?;
            let log = PathBuf::from(format!("{}.recovery.log", pgdata.display()));
            remove_tree(&log).map_err(|e| Error::io(&log, e))?;
            Ok(if running.is_some() {
                "server stopped, data directory removed"
            } else {
                "nothing was started; what the restore wrote is removed"
            })
        },
        |said| said.to_string(),
    );
    Ok(rec.finish())
}

/// The WAL step's account of a plan that holds.
fn continuity(plan: &recovery::Plan) -> String {
    let backup = plan.backup();
    let first = wal::segment_name(
        backup.timeline,
        backup.start.segment(backup.segment_size),
        backup.segment_size,
    );
    format!(
        "the archive is continuous from segment {first} (base backup {}) to {}, archived at {}; recovery to {} follows timeline {}",
        backup.id.short(),
        plan.last_segment,
        millis_text(plan.archive_end_ms),
        plan.target,
        plan.timeline
    )
}

fn describe(r: &Recovery) -> String {
    let mut text = format!(
        "recovered in {:.1} s on port {}: {}",
        r.seconds, r.port, r.state
    );
    if let Some(t) = &r.last_commit_time {
        text.push_str(&format!(", last transaction committed at {t}"));
    }
    text
}

fn millis_text(ms: u64) -> String {
    millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn millis(ms: u64) -> Option<DateTime<FixedOffset>> {
    DateTime::from_timestamp_millis(i64::try_from(ms).ok()?).map(|t| t.fixed_offset())
}

/// The point the restored server holds. At the end of the archive that is the newest point the
/// archive reaches: the later of the last transaction replayed and the time its newest segment was
/// archived (WAL is archived once written, so an idle database loses nothing up to then). At a
/// chosen time it is that time.
fn reached(
    target: &Target,
    recovery: &Recovery,
    plan: &recovery::Plan,
    snapshot: &lifeline_repo::snapshot::Snapshot,
) -> Option<DateTime<FixedOffset>> {
    match target {
        Target::Time(t) => Some(*t),
        _ => {
            let commit = recovery
                .last_commit_time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let archived = millis(plan.archive_end_ms);
            let stop = snapshot
                .source
                .get(keys::STOP_TIME)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            [commit, archived, stop].into_iter().flatten().max()
        }
    }
}

/// The checks of a running, promoted server.
fn check_server(
    rec: &mut Recorder,
    request: &DrillRequest<'_>,
    recovery: &Recovery,
    tools: &Tools,
) {
    let Some(url) = recovery.connection.clone() else {
        rec.check(check(
            "connect",
            CheckResult::Fail,
            "the recovered server gave no connection to check it through",
        ));
        return;
    };
    let amcheck = rec.step(
        "amcheck",
        || Ok::<_, Error>(amcheck(tools, &url)),
        |c| c.message.clone().unwrap_or_default(),
    );
    if let Some(c) = amcheck {
        rec.check(c);
    }
    // The backup's own end is the point its records describe; any later point may differ.
    let strictness = Strictness::LaterPoint;
    let compared = rec.step(
        "compare",
        || -> Result<(Vec<Check>, Option<String>)> {
            let recorded = Recorded::from_source(&request.snapshot.source)?;
            let mut client = tools::connect(&url)?;
            let mut checks = sql::rows(&mut client, &recorded, strictness);
            checks.extend(sql::vectors(&mut client, &recorded, strictness));
            checks.extend(sql::queries(&mut client, request.checks));
            Ok((checks, sql::server_version(&mut client)))
        },
        |(checks, _)| format!("{} check(s)", checks.len()),
    );
    if let Some((checks, version)) = compared {
        for c in checks {
            rec.check(c);
        }
        if let Some(v) = version {
            rec.drilled.versions.insert("postgres".into(), v);
        }
    }
}

/// `pg_amcheck --all` of the recovered server, installing the amcheck extension where it is
/// missing. A server without amcheck (the extension is not installed with it, or this role may not
/// create it) is a warning: the drill cannot look inside the indexes, which is not a fault of the
/// backup.
fn amcheck(tools: &Tools, url: &str) -> Check {
    const NAME: &str = "pg_amcheck";
    let config: postgres::Config = match url.parse() {
        Ok(c) => c,
        Err(e) => {
            return check(
                NAME,
                CheckResult::Fail,
                format!("bad connection string: {e}"),
            )
        }
    };
    let mut cmd = tools.command("pg_amcheck");
    cmd.args(["--all", "--install-missing", "--no-password"]);
    match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => {
            cmd.arg("--host").arg(h);
        }
        Some(postgres::config::Host::Unix(dir)) => {
            cmd.arg("--host").arg(dir);
        }
        None => {}
    }
    if let Some(port) = config.get_ports().first() {
        cmd.arg("--port").arg(port.to_string());
    }
    if let Some(user) = config.get_user() {
        cmd.arg("--username").arg(user);
    }
    let out = match cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                NAME,
                CheckResult::Warn,
                format!(
                    "{} is not installed, so indexes and tables were not checked for corruption",
                    tools.program("pg_amcheck").display()
                ),
            )
        }
        Err(e) => {
            return check(
                NAME,
                CheckResult::Fail,
                format!("cannot run pg_amcheck: {e}"),
            )
        }
    };
    judge_amcheck(
        out.status.success(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

/// pg_amcheck reports corruption on standard output and its own troubles on standard error.
fn judge_amcheck(success: bool, stdout: &str, stderr: &str) -> Check {
    const NAME: &str = "pg_amcheck";
    let first = |text: &str| {
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    if success && stdout.trim().is_empty() {
        return check(
            NAME,
            CheckResult::Pass,
            "no corruption in any table or B-tree index",
        );
    }
    if !stdout.trim().is_empty() {
        let reports = stdout
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.trim().is_empty())
            .count();
        return check(
            NAME,
            CheckResult::Fail,
            format!("{reports} corruption report(s); first: {}", first(stdout)),
        );
    }
    if stderr.contains("extension \"amcheck\"") || stderr.contains("amcheck.control") {
        return check(
            NAME,
            CheckResult::Warn,
            format!(
                "the amcheck extension cannot be used on this server, so indexes and tables were not checked for corruption: {}",
                first(stderr)
            ),
        );
    }
    check(
        NAME,
        CheckResult::Fail,
        format!("pg_amcheck failed: {}", first(stderr)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amcheck_corruption_fails_and_a_missing_extension_warns() {
        assert_eq!(judge_amcheck(true, "", "").result, CheckResult::Pass);
        let corrupt = judge_amcheck(
            false,
            "heap table \"postgres.public.t\", block 0, offset 3:\n    xmin 12 precedes relation freeze threshold\n",
            "",
        );
        assert_eq!(corrupt.result, CheckResult::Fail);
        assert!(corrupt
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("1 corruption report(s)"));
        let missing = judge_amcheck(
            false,
            "",
            "pg_amcheck: error: ERROR:  extension \"amcheck\" is not available\nDETAIL:  Could not open extension control file \"/x/amcheck.control\"",
        );
        assert_eq!(missing.result, CheckResult::Warn);
        let refused = judge_amcheck(
            false,
            "",
            "pg_amcheck: error: ERROR:  permission denied to create extension \"amcheck\"",
        );
        assert_eq!(refused.result, CheckResult::Warn);
        let other = judge_amcheck(false, "", "pg_amcheck: error: connection to server failed");
        assert_eq!(other.result, CheckResult::Fail);
    }
}
