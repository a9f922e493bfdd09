//! Starting a restored data directory and watching recovery: the server runs on a free loopback port
//! (or the one asked for) with its own socket directories where it can, and is polled until it is
//! paused at the target, promoted, or shut down there. A recovery to the backup's own end also
//! re-asks the pgvector questions the backup recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::catalog::{keys, BaseBackup};
use super::error::{Error, Result};
use super::recovery::{Action, Target};
use super::restore::Restored;
use super::socket;
use super::tools::{self, Tools};
use super::vector::{self, Mismatch, VectorCheck};

/// How to start a restored server.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The port to listen on; a free one when `None`.
    pub port: Option<u16>,
    /// How long to wait for recovery to reach its target.
    pub timeout: Duration,
}

/// Where a started recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecoveryState {
    #[serde(rename = "promoted and running")]
    Promoted,
    #[serde(rename = "paused at the target (read-only)")]
    Paused,
    #[serde(rename = "shut down at the target")]
    ShutDown,
}

impl RecoveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::Promoted => "promoted and running",
            RecoveryState::Paused => "paused at the target (read-only)",
            RecoveryState::ShutDown => "shut down at the target",
        }
    }
}

impl std::fmt::Display for RecoveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a started recovery reached.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub port: u16,
    /// The unix socket directories the server uses.
    #[serde(rename = "socket_directories")]
    pub socket_dirs: Vec<String>,
    /// Why a directory of the cluster's own setting was left out, one line each.
    pub socket_notes: Vec<String>,
    /// The connection string the check connected with (none after a shutdown at the target).
    pub connection: Option<String>,
    pub state: RecoveryState,
    pub replay_lsn: Option<String>,
    pub last_commit_time: Option<String>,
    /// PostgreSQL's own account of where it stopped.
    #[serde(rename = "stop")]
    pub stop_line: Option<String>,
    /// The server's log.
    pub log: PathBuf,
    pub seconds: f64,
    /// pgvector columns whose recorded answers were asked again.
    #[serde(rename = "pgvector_checks")]
    pub vector_checks: usize,
    /// The answers that differ (counted in the serialized form).
    #[serde(rename = "pgvector_mismatches", serialize_with = "count")]
    pub vector_mismatches: Vec<Mismatch>,
}

fn count<S: Serializer>(items: &[Mismatch], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(items.len() as u64)
}

/// Start the restored server and wait until recovery reaches its target (or, with
/// [`Action::Shutdown`], stops there). A server still recovering at the timeout is left running;
/// one that stops early is reported with the end of its log. The log is written beside the data
/// directory, `PGDATA.recovery.log`.
pub fn start(
    restored: &Restored,
    request: &StartRequest,
    tools: &dyn Fn(u32) -> Tools,
) -> Result<Recovery> {
    let started = Instant::now();
    let (plan, pgdata) = (&restored.plan, restored.pgdata.as_path());
    let backup = plan.backup();
    let tools = tools(backup.major);
    let port = match request.port {
        Some(p) => p,
        None => free_port()?,
    };
    let log = PathBuf::from(format!("{}.recovery.log", pgdata.display()));
    // The cluster's own socket directories, so its clients and pg_hba.conf's `local` lines work
    // as before; only those that cannot hold a socket here are replaced (and the report says so).
    let sockets = socket::for_data_dir(&tools, pgdata, &std::env::temp_dir())?;
    // pg_ctl hands -o to a shell.
    let mut options = format!("-p {port} -c listen_addresses=127.0.0.1");
    if sockets.replaced {
        options.push_str(&format!(" -k {}", shell_quote(&sockets.setting())));
    }
    let mut cmd = tools.command("pg_ctl");
    cmd.arg("-D")
        .arg(pgdata)
        .arg("-l")
        .arg(&log)
        .args(["-o", &options, "start"]);
    if let Err(e) = tools::run(&mut cmd, "pg_ctl start") {
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(Error::ServerDidNotStart {
            target: plan.target.to_string(),
            cause: Box::new(e),
            tail: tail(&log_text, 15),
            log,
        });
    }

    let (user, db) = server_role(backup);
    // The socket first: local connections are the ones a fresh cluster's pg_hba.conf trusts.
    let urls: Vec<String> = sockets
        .client_dir()
        .map(|dir| socket::socket_url(&user, &db, dir, port))
        .into_iter()
        .chain([socket::tcp_url(&user, &db, port)])
        .collect();
    let deadline = started + request.timeout;
    let reached = |connection, state, replay_lsn, last_commit_time, stop_line, vectors| {
        let (vector_checks, vector_mismatches) = vectors;
        Recovery {
            port,
            socket_dirs: sockets.dirs.clone(),
            socket_notes: sockets.notes.clone(),
            connection,
            state,
            replay_lsn,
            last_commit_time,
            stop_line,
            log: log.clone(),
            seconds: started.elapsed().as_secs_f64(),
            vector_checks,
            vector_mismatches,
        }
    };
    loop {
        if Instant::now() > deadline {
            return Err(Error::RecoveryTimeout {
                target: plan.target.to_string(),
                seconds: request.timeout.as_secs(),
                log: log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        if !running(&tools, pgdata) {
            let stop_line = stop_line(&log_text);
            if restored.action == Action::Shutdown && stop_line.is_some() {
                return Ok(reached(
                    None,
                    RecoveryState::ShutDown,
                    None,
                    None,
                    stop_line,
                    (0, Vec::new()),
                ));
            }
            return Err(Error::ServerStopped {
                target: plan.target.to_string(),
                tail: tail(&log_text, 15),
                log: log.clone(),
            });
        }
        let Some((url, mut client)) = urls.iter().find_map(|url| Some((url, connect(url)?))) else {
            continue;
        };
        let Ok(row) = client.query_one(
            "SELECT pg_is_in_recovery(),
                    CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'not paused' END,
                    pg_last_wal_replay_lsn()::text,
                    to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        ) else {
            continue;
        };
        let in_recovery: bool = row.get(0);
        let pause: String = row.get(1);
        let state = match (in_recovery, restored.action, &plan.target) {
            (false, _, _) => RecoveryState::Promoted,
            (true, Action::Pause, t) if !matches!(t, Target::Latest) && pause == "paused" => {
                RecoveryState::Paused
            }
            _ => continue,
        };
        // Only at the backup's own end is the database what the backup recorded answers for.
        let vectors = if matches!(plan.target, Target::Immediate) {
            verify_vectors(backup, &mut client)?
        } else {
            (0, Vec::new())
        };
        return Ok(reached(
            Some(url.clone()),
            state,
            row.get(2),
            row.get(3),
            stop_line(&log_text),
            vectors,
        ));
    }
}

/// A port nobody listens on now (the server binds it a moment later).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Invalid(format!("cannot find a free port: {e}")))
}

/// The backup's role and database, to connect to the restored server with.
fn server_role(backup: &BaseBackup) -> (String, String) {
    let original: Option<postgres::Config> = backup
        .snapshot
        .source
        .get("database_url")
        .and_then(|u| u.parse().ok());
    let user = original
        .as_ref()
        .and_then(|c| c.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".into());
    let db = original
        .as_ref()
        .and_then(|c| c.get_dbname().map(str::to_string))
        .unwrap_or_else(|| "postgres".into());
    (user, db)
}

/// A connection that gives up after 5 s (the server may still be starting).
fn connect(url: &str) -> Option<postgres::Client> {
    let mut config: postgres::Config = url.parse().ok()?;
    config
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
        .ok()
}

/// Re-run the backup's pgvector checks on a server recovered to the backup's own end: the number of
/// checks and the ones that answer differently.
fn verify_vectors(
    backup: &BaseBackup,
    client: &mut postgres::Client,
) -> Result<(usize, Vec<Mismatch>)> {
    let Some(json) = backup.snapshot.source.get(keys::PGVECTOR) else {
        return Ok((0, Vec::new()));
    };
    let checks: Vec<VectorCheck> = serde_json::from_str(json).map_err(|e| {
        Error::Invalid(format!(
            "base backup {}: its pgvector checks are unreadable ({e})",
            backup.id.short()
        ))
    })?;
    let mismatches = vector::verify(client, &checks)?;
    Ok((checks.len(), mismatches))
}

fn running(tools: &Tools, pgdata: &Path) -> bool {
    let mut cmd = tools.command("pg_ctl");
    cmd.arg("-D").arg(pgdata).arg("status");
    tools::run(&mut cmd, "pg_ctl status").is_ok()
}

/// PostgreSQL's own account of where it stopped ("recovery stopping before commit of transaction …").
fn stop_line(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| {
            l.contains("recovery stopping")
                || l.contains("consistent recovery state reached") && l.contains("immediate")
        })
        .map(|l| l.split("LOG:").last().unwrap_or(l).trim().to_string())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `word` as one word for a POSIX shell: as it is when that is safe, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-%=:@,+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_line_is_postgresqls_own_words() {
        let log = "2026-01-01 LOG:  starting point-in-time recovery\n\
                   2026-01-01 LOG:  recovery stopping before commit of transaction 812, time 2026-01-01\n\
                   2026-01-01 LOG:  pausing at the end of recovery";
        assert_eq!(
            stop_line(log).as_deref(),
            Some("recovery stopping before commit of transaction 812, time 2026-01-01")
        );
        assert_eq!(stop_line("LOG:  consistent recovery state reached"), None);
        assert_eq!(
            stop_line("LOG:  consistent recovery state reached at 0/3000100 (immediate)")
                .as_deref(),
            Some("consistent recovery state reached at 0/3000100 (immediate)")
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn shell_words_survive_a_shell() {
        assert_eq!(shell_quote("/usr/bin/lifeline"), "/usr/bin/lifeline");
        assert_eq!(shell_quote("%f"), "%f");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_report_counts_mismatches() {
        let recovery = Recovery {
            port: 5433,
            socket_dirs: vec!["/tmp".into()],
            socket_notes: Vec::new(),
            connection: None,
            state: RecoveryState::ShutDown,
            replay_lsn: None,
            last_commit_time: None,
            stop_line: None,
            log: PathBuf::from("/x.recovery.log"),
            seconds: 1.5,
            vector_checks: 2,
            vector_mismatches: vec![Mismatch {
                table: "public.t".into(),
                check: "row count".into(),
                expected: "3".into(),
                found: "2".into(),
            }],
        };
        let json = serde_json::to_value(&recovery).expect("json");
        assert_eq!(json["state"], "shut down at the target");
        assert_eq!(json["pgvector_mismatches"], 1);
        assert_eq!(json["socket_directories"][0], "/tmp");
        assert_eq!(json["stop"], serde_json::Value::Null);
    }
}
