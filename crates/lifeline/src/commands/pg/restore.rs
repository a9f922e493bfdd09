//! `pg restore`: point-in-time recovery into a new data directory (or, with `--delta`, in place into
//! a stopped copy of the cluster), optionally started and watched until it reaches the target.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lifeline_sources::files;
use lifeline_sources::postgres::catalog::{self, keys};
use lifeline_sources::postgres::recovery::{self, Action, Plan, Target, TimelineChoice};
use lifeline_sources::postgres::wal::Lsn;
use lifeline_sources::postgres::{delta, socket, tools, vector};

use super::Pg;
use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory to create (must not exist, or be empty; see --delta)
    #[arg(long, value_name = "DIR")]
    pgdata: PathBuf,

    /// Restore in place into a stopped data directory of the same cluster: files equal to the
    /// backup's are kept, only differing chunks are written, files the backup lacks are removed
    #[arg(long)]
    delta: bool,

    /// Recover to this time (RFC 3339, or 2026-11-22 10:00:00+00); stops before the first commit after it
    #[arg(long, group = "recovery_target", value_name = "TIME")]
    target_time: Option<String>,
    /// Recover to this WAL position (X/Y)
    #[arg(long, group = "recovery_target", value_name = "LSN")]
    target_lsn: Option<String>,
    /// Recover up to and including this transaction
    #[arg(long, group = "recovery_target", value_name = "XID")]
    target_xid: Option<u64>,
    /// Recover to a restore point made with pg_create_restore_point()
    #[arg(long, group = "recovery_target", value_name = "NAME")]
    target_name: Option<String>,
    /// `immediate`: stop as soon as the base backup is consistent
    #[arg(long, group = "recovery_target", value_name = "immediate", value_parser = ["immediate"])]
    target: Option<String>,

    /// What the server does at the target
    #[arg(long, value_enum, default_value_t = TargetAction::Pause)]
    target_action: TargetAction,

    /// Timeline to recover along: `latest`, `current` (the backup's) or a number. Needed when two
    /// histories follow the backup (a timeline went on after another branched off it)
    #[arg(long, value_name = "TIMELINE", value_parser = parse_timeline)]
    target_timeline: Option<TimelineChoice>,

    /// Whether the restored server archives WAL. `off` (default): a restore is a copy until you
    /// decide it is the new primary, and a copy must not push its own timeline into this
    /// repository. `preserve`: keep the backup's archive settings (recovering the primary itself)
    #[arg(long, value_enum, default_value_t = ArchiveMode::Off)]
    archive_mode: ArchiveMode,

    /// Restore this base backup instead of the one chosen for the target
    #[arg(long, value_name = "SNAPSHOT")]
    set: Option<String>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,

    /// Cluster to restore when the repository holds several
    #[arg(long, value_name = "ID")]
    system_id: Option<u64>,

    /// Start the server on a free port (or --port), wait until recovery reaches the target, and report
    #[arg(long)]
    start: bool,

    /// Port for --start
    #[arg(long, requires = "start")]
    port: Option<u16>,

    /// How long --start waits for recovery
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    start_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ArchiveMode {
    Off,
    Preserve,
}

fn parse_timeline(text: &str) -> Result<TimelineChoice, String> {
    match text {
        "latest" => Ok(TimelineChoice::Latest),
        "current" => Ok(TimelineChoice::Current),
        n => match n.parse::<u32>() {
            Ok(t) if t > 0 => Ok(TimelineChoice::Id(t)),
            _ => Err(format!(
                "{text:?} is not a timeline: give latest, current or a number such as 2"
            )),
        },
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TargetAction {
    Pause,
    Promote,
    Shutdown,
}

impl Args {
    fn target(&self) -> anyhow::Result<Target> {
        Ok(if let Some(t) = &self.target_time {
            Target::Time(recovery::parse_time(t)?)
        } else if let Some(l) = &self.target_lsn {
            Target::Lsn(Lsn::parse(l)?)
        } else if let Some(x) = self.target_xid {
            Target::Xid(x)
        } else if let Some(n) = &self.target_name {
            Target::Name(n.clone())
        } else if self.target.is_some() {
            Target::Immediate
        } else {
            Target::Latest
        })
    }

    fn action(&self) -> Action {
        match self.target_action {
            TargetAction::Pause => Action::Pause,
            TargetAction::Promote => Action::Promote,
            TargetAction::Shutdown => Action::Shutdown,
        }
    }
}

pub fn run(ctx: &Context, pg: &Pg, args: Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    let target = args.target()?;
    if !args.delta {
        check_empty(&args.pgdata)?;
    }
    let repo = ctx.open()?;
    let backups = catalog::of_cluster(catalog::base_backups(&repo)?, args.system_id)?;
    let plan = recovery::plan(
        &repo,
        backups,
        target,
        args.set.as_deref(),
        &args.filter.filter(),
        args.target_timeline.unwrap_or(TimelineChoice::Unspecified),
    )?;
    let restore_command = restore_command(ctx)?;
    // Every program the restore will need is checked before the first file is written.
    let tools = pg.tools(plan.backup().major);
    if plan.chain.len() > 1 {
        tools.check_version("pg_combinebackup", plan.backup().major)?;
    }
    if args.start {
        tools.check_version("pg_ctl", plan.backup().major)?;
    }

    let pgdata = absolute(&args.pgdata)?;
    if args.delta {
        delta::check_target(&pgdata, &plan)?;
    }
    let reader = repo.reader()?;
    let total: u64 = plan.chain.iter().map(|b| b.snapshot.summary.bytes).sum();
    let bar = Bar::new(ctx.json, Some(total));
    let mut delta_result = None;
    if args.delta {
        let result = delta::restore(&reader, &plan, &pgdata, &bar)?;
        first_error(&result)?;
        delta_result = Some(result);
    } else if let [only] = plan.chain.as_slice() {
        restore_tree(&reader, only.snapshot.tree, &pgdata, &bar)?;
    } else {
        combine(pg, &reader, &plan, &pgdata, &bar)?;
    }
    bar.finish();
    std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", pgdata.display()))?;
    recovery::write_settings(
        &pgdata,
        &plan,
        &restore_command,
        args.action(),
        args.archive_mode == ArchiveMode::Preserve,
    )?;
    // pg_combinebackup flushes what it writes; a plain restore is flushed here.
    if plan.chain.len() == 1 {
        files::sync_tree(&pgdata)?;
    }
    let restored_ms = started.elapsed().as_millis() as u64;

    let backup = plan.backup();
    let mut report = serde_json::json!({
        "pgdata": pgdata,
        "backup": backup.id.to_hex(),
        "backups_combined": plan.chain.len(),
        "target": plan.target.to_string(),
        "timeline": plan.timeline,
        "last_archived_segment": plan.last_segment,
        "restore_ms": restored_ms,
    });
    if let Some(d) = &delta_result {
        report["delta"] = serde_json::json!({
            "files_checked": d.files,
            "files_rewritten": d.files - d.unchanged,
            "files_unchanged": d.unchanged,
            "entries_removed": d.deleted.len(),
            "bytes_checked": d.bytes,
            "bytes_written": d.bytes_written,
        });
    }
    if !ctx.json {
        println!(
            "restored base backup {} ({} of cluster {}, WAL from {}) into {} in {:.1} s",
            backup.id.short(),
            backup.snapshot.time,
            backup.system_id,
            backup.start,
            pgdata.display(),
            restored_ms as f64 / 1000.0
        );
        if let Some(d) = &delta_result {
            println!(
                "delta: {} files checked, {} rewritten ({} written of {}), {} unchanged; {} entries the backup does not hold removed",
                d.files,
                d.files - d.unchanged,
                human_bytes(d.bytes_written),
                human_bytes(d.bytes),
                d.unchanged,
                d.deleted.len()
            );
        }
        println!(
            "recovery will follow timeline {} to {}, through segment {} at most",
            plan.timeline, plan.target, plan.last_segment
        );
    }
    if args.start {
        let reached = start_and_wait(pg, &plan, &pgdata, &args)?;
        report["recovery"] = reached.to_json();
        if !ctx.json {
            println!("{}", reached.describe());
        }
        if reached.vector_mismatches > 0 {
            if ctx.json {
                print_json(&report)?;
            }
            bail!(
                "{} pgvector check(s) differ from the backup's answers (listed above)",
                reached.vector_mismatches
            );
        }
    } else if !ctx.json {
        println!(
            "start it with: pg_ctl -D {} start   (it recovers, then {})",
            pgdata.display(),
            if matches!(plan.target, Target::Latest) {
                "promotes".to_string()
            } else {
                format!("{}s at the target", args.action().as_str())
            }
        );
    }
    if ctx.json {
        print_json(&report)?;
    }
    Ok(exit::OK)
}

fn check_empty(pgdata: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(pgdata) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: restore into a new or empty directory, or pass --delta to update a stopped copy of this cluster in place (a running cluster's data directory is never overwritten)",
                    pgdata.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", pgdata.display())),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

fn restore_tree(
    reader: &lifeline_repo::BlobReader<'_>,
    tree: lifeline_repo::Id,
    dir: &Path,
    bar: &Bar,
) -> anyhow::Result<()> {
    first_error(&files::restore(
        reader,
        tree,
        dir,
        &files::RestoreOptions::default(),
        bar,
    )?)
}

fn first_error(result: &files::RestoreResult) -> anyhow::Result<()> {
    if let Some((path, err)) = result.errors.first() {
        bail!(
            "{} file(s) could not be restored, first {}: {err}",
            result.errors.len(),
            path.display()
        );
    }
    Ok(())
}

/// Restore each backup of an incremental chain beside the target, then let pg_combinebackup
/// reconstruct the full data directory from them.
fn combine(
    pg: &Pg,
    reader: &lifeline_repo::BlobReader<'_>,
    plan: &Plan,
    pgdata: &Path,
    bar: &Bar,
) -> anyhow::Result<()> {
    let parent = pgdata
        .parent()
        .context("the data directory has no parent directory")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".lifeline-combine-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    let mut dirs = Vec::new();
    for (n, backup) in plan.chain.iter().enumerate() {
        let dir = staging.path().join(format!("{n:03}-{}", backup.id.short()));
        restore_tree(reader, backup.snapshot.tree, &dir, bar)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        dirs.push(dir);
    }
    let tools = pg.tools(plan.backup().major);
    let mut cmd = tools.command("pg_combinebackup");
    cmd.args(&dirs).arg("-o").arg(pgdata);
    tools::run(&mut cmd, "pg_combinebackup")?;
    Ok(())
}

/// The command PostgreSQL runs to fetch WAL: this program with the repository and key options this
/// restore was given, so recovery reads the same repository.
fn restore_command(ctx: &Context) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut words = vec![exe.display().to_string()];
    match &ctx.config_path {
        // The config file names the repository and the key; flags would repeat it.
        Some(config) => words.extend(["--config".into(), cwd.join(config).display().to_string()]),
        None => words.extend(repository_flags(ctx, &cwd)?),
    }
    words.extend(["pg", "wal-fetch", "%f", "%p"].map(String::from));
    Ok(words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The flags that name this restore's repository and key, with paths made absolute (PostgreSQL runs
/// the command in the data directory).
fn repository_flags(ctx: &Context, cwd: &Path) -> anyhow::Result<Vec<String>> {
    let o = &ctx.options;
    let mut flags = Vec::new();
    if let Some(url) = &o.url {
        let local = !url.contains("://");
        flags.push("--repo".into());
        flags.push(if local {
            cwd.join(url).display().to_string()
        } else {
            url.clone()
        });
    }
    if let Some(f) = &o.key.key_file {
        flags.push("--key-file".into());
        flags.push(cwd.join(f).display().to_string());
    } else if let Some(f) = &o.key.password_file {
        flags.push("--password-file".into());
        flags.push(cwd.join(f).display().to_string());
    } else if let Some(c) = &o.key.password_command {
        flags.push("--password-command".into());
        flags.push(c.clone());
    } else {
        bail!("recovery runs unattended, so it needs a key source it can read: pass --key-file, --password-file or --password-command (or --config)");
    }
    Ok(flags)
}

fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-%=:@,+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What a started recovery reached.
struct Reached {
    port: u16,
    sockets: socket::Sockets,
    /// The connection string the check connected with (none after a shutdown at the target).
    connection: Option<String>,
    state: &'static str,
    lsn: Option<String>,
    last_commit: Option<String>,
    stop_line: Option<String>,
    log: PathBuf,
    seconds: f64,
    vector_checks: usize,
    vector_mismatches: usize,
}

impl Reached {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "port": self.port,
            "socket_directories": self.sockets.dirs,
            "socket_notes": self.sockets.notes,
            "connection": self.connection,
            "state": self.state,
            "replay_lsn": self.lsn,
            "last_commit_time": self.last_commit,
            "stop": self.stop_line,
            "log": self.log,
            "seconds": self.seconds,
            "pgvector_checks": self.vector_checks,
            "pgvector_mismatches": self.vector_mismatches,
        })
    }

    fn describe(&self) -> String {
        let mut out = format!(
            "recovery reached its target in {:.1} s: server {} on port {}",
            self.seconds, self.state, self.port
        );
        if let Some(lsn) = &self.lsn {
            out.push_str(&format!(", replayed to LSN {lsn}"));
        }
        if let Some(t) = &self.last_commit {
            out.push_str(&format!(", last transaction committed at {t}"));
        }
        if let Some(line) = &self.stop_line {
            out.push_str(&format!("\n  {line}"));
        }
        for note in &self.sockets.notes {
            out.push_str(&format!("\n  note: {note}"));
        }
        if let Some(url) = &self.connection {
            out.push_str(&format!("\n  connect: psql '{url}'"));
        }
        if self.vector_checks > 0 {
            out.push_str(&format!(
                "\n  pgvector: {} of {} checks equal the backup's answers",
                self.vector_checks - self.vector_mismatches,
                self.vector_checks
            ));
        }
        out
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port")?
        .local_addr()?
        .port())
}

fn start_and_wait(pg: &Pg, plan: &Plan, pgdata: &Path, args: &Args) -> anyhow::Result<Reached> {
    let started = Instant::now();
    let backup = plan.backup();
    let tools = pg.tools(backup.major);
    let port = match args.port {
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
        bail!(
            "the restored server did not start or stopped before reaching {} ({e}); the end of its log ({}):\n{}",
            plan.target,
            log.display(),
            tail(&log_text, 15)
        );
    }

    let (user, db) = server_role(backup);
    // The socket first: local connections are the ones a fresh cluster's pg_hba.conf trusts.
    let urls: Vec<String> = sockets
        .client_dir()
        .map(|dir| socket::socket_url(&user, &db, dir, port))
        .into_iter()
        .chain([socket::tcp_url(&user, &db, port)])
        .collect();
    let deadline = started + Duration::from_secs(args.start_timeout);
    let action = args.action();
    loop {
        if Instant::now() > deadline {
            bail!(
                "recovery did not reach {} within {} s; the server is still running (log: {})",
                plan.target,
                args.start_timeout,
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        if !running(&tools, pgdata) {
            let stop_line = stop_line(&log_text);
            if action == Action::Shutdown && stop_line.is_some() {
                return Ok(Reached {
                    port,
                    sockets,
                    connection: None,
                    state: "shut down at the target",
                    lsn: None,
                    last_commit: None,
                    stop_line,
                    log,
                    seconds: started.elapsed().as_secs_f64(),
                    vector_checks: 0,
                    vector_mismatches: 0,
                });
            }
            bail!(
                "the restored server stopped before reaching {}; the end of its log ({}):\n{}",
                plan.target,
                log.display(),
                tail(&log_text, 15)
            );
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
        let reached = match (in_recovery, action, &plan.target) {
            (false, _, _) => Some("promoted and running"),
            (true, Action::Pause, t) if !matches!(t, Target::Latest) && pause == "paused" => {
                Some("paused at the target (read-only)")
            }
            _ => None,
        };
        let Some(state) = reached else {
            continue;
        };
        let (vector_checks, vector_mismatches) = if matches!(plan.target, Target::Immediate) {
            verify_vectors(backup, &mut client)?
        } else {
            (0, 0)
        };
        return Ok(Reached {
            port,
            connection: Some(url.clone()),
            sockets,
            state,
            lsn: row.get(2),
            last_commit: row.get(3),
            stop_line: stop_line(&log_text),
            log,
            seconds: started.elapsed().as_secs_f64(),
            vector_checks,
            vector_mismatches,
        });
    }
}

/// The backup's role and database, to connect to the restored server with.
fn server_role(backup: &catalog::BaseBackup) -> (String, String) {
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

/// Re-run the backup's pgvector checks on a server recovered to the backup's own end.
fn verify_vectors(
    backup: &catalog::BaseBackup,
    client: &mut postgres::Client,
) -> anyhow::Result<(usize, usize)> {
    let Some(json) = backup.snapshot.source.get(keys::PGVECTOR) else {
        return Ok((0, 0));
    };
    let checks: Vec<vector::VectorCheck> =
        serde_json::from_str(json).context("the backup's pgvector checks are unreadable")?;
    let mismatches = vector::verify(client, &checks)?;
    for m in &mismatches {
        eprintln!(
            "pgvector mismatch in {}: {}: expected {}, found {}",
            m.table, m.check, m.expected, m.found
        );
    }
    Ok((checks.len(), mismatches.len()))
}

fn running(tools: &tools::Tools, pgdata: &Path) -> bool {
    let mut cmd: Command = tools.command("pg_ctl");
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

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
