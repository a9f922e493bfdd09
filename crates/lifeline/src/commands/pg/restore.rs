//! `pg restore`: point-in-time recovery into a new data directory (or, with `--delta`, in place into
//! a stopped copy of the cluster), optionally started and watched until it reaches the target.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lifeline_sources::postgres::recovery::{self, Action, Target, TimelineChoice};
use lifeline_sources::postgres::restore::{self, RestoreRequest};
use lifeline_sources::postgres::server::{self, shell_quote, Recovery, StartRequest};
use lifeline_sources::postgres::wal::Lsn;

use super::backup::repo_errors;
use super::Pg;
use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;
use crate::recorder;

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

    /// Restore each tablespace to DIR/OID (linked from pg_tblspc) instead of where it was, which
    /// must then be missing or empty
    #[arg(long, value_name = "DIR")]
    tablespace_dir: Option<PathBuf>,

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
    // Before the repository is opened, so a wrong directory is refused before a password is asked.
    if !args.delta {
        restore::check_empty(&args.pgdata)?;
    }
    ctx.audit
        .begin("pg restore", args.pgdata.display().to_string());
    ctx.audit.detail("target", target.to_string());
    let repo = ctx.open()?;
    repo.require_read("pg restore")?;
    let restore_command = restore_command(ctx)?;
    let filter = args.filter.filter();
    let request = RestoreRequest {
        pgdata: &args.pgdata,
        delta: args.delta,
        target,
        timeline: args.target_timeline.unwrap_or(TimelineChoice::Unspecified),
        set: args.set.as_deref(),
        filter: &filter,
        system_id: args.system_id,
        action: args.action(),
        keep_archiving: args.archive_mode == ArchiveMode::Preserve,
        restore_command: &restore_command,
        start: args.start,
        tablespace_dir: args.tablespace_dir.as_deref(),
    };
    let bar = Bar::new(ctx.json, None);
    let restored = restore::restore(&repo, &request, &|major| pg.tools(major), &bar);
    bar.finish();
    let restored = restored.map_err(repo_errors)?;
    let restored_ms = started.elapsed().as_millis() as u64;

    let (plan, pgdata) = (&restored.plan, &restored.pgdata);
    let backup = plan.backup();
    for b in &plan.chain {
        ctx.audit.touch(recorder::Read, "snapshot", b.id.to_hex());
    }
    ctx.audit.detail("target", plan.target.to_string());
    let mut report = serde_json::json!({
        "pgdata": pgdata,
        "backup": backup.id.to_hex(),
        "backups_combined": plan.chain.len(),
        "target": plan.target.to_string(),
        "timeline": plan.timeline,
        "last_archived_segment": plan.last_segment,
        "restore_ms": restored_ms,
    });
    if let Some(d) = &restored.delta {
        report["delta"] = serde_json::to_value(d)?;
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
        if let Some(d) = &restored.delta {
            println!(
                "delta: {} files checked, {} rewritten ({} written of {}), {} unchanged; {} entries the backup does not hold removed",
                d.files_checked,
                d.files_rewritten,
                human_bytes(d.bytes_written),
                human_bytes(d.bytes_checked),
                d.files_unchanged,
                d.entries_removed
            );
        }
        println!(
            "recovery will follow timeline {} to {}, through segment {} at most",
            plan.timeline, plan.target, plan.last_segment
        );
    }
    if args.start {
        let request = StartRequest {
            port: args.port,
            timeout: Duration::from_secs(args.start_timeout),
        };
        let reached =
            server::start(&restored, &request, &|major| pg.tools(major)).map_err(repo_errors)?;
        for m in &reached.vector_mismatches {
            eprintln!(
                "pgvector mismatch in {}: {}: expected {}, found {}",
                m.table, m.check, m.expected, m.found
            );
        }
        report["recovery"] = serde_json::to_value(&reached)?;
        if !ctx.json {
            println!("{}", describe(&reached));
        }
        if !reached.vector_mismatches.is_empty() {
            if ctx.json {
                print_json(&report)?;
            }
            bail!(
                "{} pgvector check(s) differ from the backup's answers (listed above)",
                reached.vector_mismatches.len()
            );
        }
    } else if !ctx.json {
        println!(
            "start it with: pg_ctl -D {} start   (it recovers, then {})",
            pgdata.display(),
            if matches!(plan.target, Target::Latest) {
                "promotes".to_string()
            } else {
                format!("{}s at the target", restored.action.as_str())
            }
        );
    }
    if ctx.json {
        print_json(&report)?;
    }
    Ok(exit::OK)
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
    // The source the repository was opened with (lifeline_plan::open's order).
    if let Some(f) = &o.key.key_file {
        flags.push("--key-file".into());
        flags.push(cwd.join(f).display().to_string());
    } else if let Some(c) = &o.key.kms_command {
        flags.push("--kms-command".into());
        flags.push(c.clone());
    } else if let Some(f) = &o.key.password_file {
        flags.push("--password-file".into());
        flags.push(cwd.join(f).display().to_string());
    } else if let Some(c) = &o.key.password_command {
        flags.push("--password-command".into());
        flags.push(c.clone());
    } else {
        bail!("recovery runs unattended, so it needs a key source it can read: pass --key-file, --kms-command, --password-file or --password-command (or --config)");
    }
    Ok(flags)
}

/// What a started recovery reached, for people.
fn describe(r: &Recovery) -> String {
    let mut out = format!(
        "recovery reached its target in {:.1} s: server {} on port {}",
        r.seconds, r.state, r.port
    );
    if let Some(lsn) = &r.replay_lsn {
        out.push_str(&format!(", replayed to LSN {lsn}"));
    }
    if let Some(t) = &r.last_commit_time {
        out.push_str(&format!(", last transaction committed at {t}"));
    }
    if let Some(line) = &r.stop_line {
        out.push_str(&format!("\n  {line}"));
    }
    for note in &r.socket_notes {
        out.push_str(&format!("\n  note: {note}"));
    }
    if let Some(url) = &r.connection {
        out.push_str(&format!("\n  connect: psql '{url}'"));
    }
    if r.vector_checks > 0 {
        out.push_str(&format!(
            "\n  pgvector: {} of {} checks equal the backup's answers",
            r.vector_checks - r.vector_mismatches.len(),
            r.vector_checks
        ));
    }
    out
}
