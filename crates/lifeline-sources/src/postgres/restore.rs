//! Point-in-time recovery as one operation: plan it (the base backup for the target, and proof that
//! the archive reaches the target), check every program it needs, write the data directory (a plain
//! restore, an incremental chain combined by `pg_combinebackup`, or `--delta` in place), and leave
//! the settings PostgreSQL recovers with. Starting the result is [`super::server::start`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lifeline_repo::snapshot::SnapshotFilter;
use lifeline_repo::{BlobReader, Id, Repository};
use serde::Serialize;

use super::catalog;
use super::delta;
use super::error::{Error, Result};
use super::recovery::{self, Action, Plan, Target, TimelineChoice};
use super::tablespaces::{self, Placement};
use super::tools::{self, Tools};
use crate::files::{self, RestoreResult};
use crate::Progress;

/// What to restore, where, and how recovery is to go on from it.
#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    /// The data directory to write: new or empty, or with `delta` a stopped copy of the cluster.
    /// Relative to the current directory when not absolute.
    pub pgdata: &'a Path,
    /// Update `pgdata` in place (see [`delta`]).
    pub delta: bool,
    pub target: Target,
    pub timeline: TimelineChoice,
    /// Restore the base backup whose ID starts with this instead of the one chosen for the target.
    pub set: Option<&'a str>,
    /// The base backups to choose among.
    pub filter: &'a SnapshotFilter,
    /// The cluster, when the repository holds several.
    pub system_id: Option<u64>,
    /// What the server does at the target.
    pub action: Action,
    /// Keep the backup's archive settings instead of turning archiving off in the copy.
    pub keep_archiving: bool,
    /// The `restore_command` recovery fetches WAL with (a shell command line).
    pub restore_command: &'a str,
    /// The caller will start the server afterwards ([`super::server::start`]): its `pg_ctl` is
    /// checked before anything is written.
    pub start: bool,
    /// Restore each tablespace to `DIR/OID` instead of where it was ([`tablespaces`]).
    pub tablespace_dir: Option<&'a Path>,
}

/// What `--delta` found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeltaSummary {
    pub files_checked: u64,
    pub files_rewritten: u64,
    pub files_unchanged: u64,
    /// Entries the backup does not hold, removed (a directory counts once).
    pub entries_removed: u64,
    pub bytes_checked: u64,
    pub bytes_written: u64,
}

impl From<&RestoreResult> for DeltaSummary {
    fn from(r: &RestoreResult) -> Self {
        DeltaSummary {
            files_checked: r.files,
            files_rewritten: r.files - r.unchanged,
            files_unchanged: r.unchanged,
            entries_removed: r.deleted.len() as u64,
            bytes_checked: r.bytes,
            bytes_written: r.bytes_written,
        }
    }
}

/// A data directory ready to recover.
#[derive(Debug)]
pub struct Restored {
    /// The data directory, absolute.
    pub pgdata: PathBuf,
    /// The backups restored (`plan.chain`), the target and the timeline recovery follows.
    pub plan: Plan,
    /// What the server was told to do at the target.
    pub action: Action,
    /// With `delta`: what was compared and written.
    pub delta: Option<DeltaSummary>,
}

/// Plan the recovery and write the data directory. Nothing is written until the plan holds and every
/// program it needs (`pg_combinebackup` for a chain, `pg_ctl` when the caller will start it) is
/// found. `tools` picks the client programs for a server major version; `progress` is told the
/// backups' total size.
pub fn restore(
    repo: &Repository,
    request: &RestoreRequest<'_>,
    tools: &dyn Fn(u32) -> Tools,
    progress: &dyn Progress,
) -> Result<Restored> {
    if !request.delta {
        check_empty(request.pgdata)?;
    }
    let backups = catalog::of_cluster(catalog::base_backups(repo)?, request.system_id)?;
    let plan = recovery::plan(
        repo,
        backups,
        request.target.clone(),
        request.set,
        request.filter,
        request.timeline,
    )?;
    let major = plan.backup().major;
    let tools = tools(major);
    if plan.chain.len() > 1 {
        tools.check_version("pg_combinebackup", major)?;
    }
    if request.start {
        tools.check_version("pg_ctl", major)?;
    }

    let pgdata = absolute(request.pgdata)?;
    let spaces = tablespaces::placements(&plan.backup().snapshot, request.tablespace_dir)?;
    if request.delta {
        if !spaces.is_empty() {
            return Err(Error::Invalid(format!(
                "base backup {} has tablespaces, which --delta cannot update in place yet; restore into a new or empty directory",
                plan.backup().id.short()
            )));
        }
        delta::check_target(&pgdata, &plan)?;
    }
    let reader = repo.reader()?;
    progress.total(plan.chain.iter().map(|b| b.snapshot.summary.bytes).sum());
    let mut delta_summary = None;
    if request.delta {
        let result = delta::restore(&reader, &plan, &pgdata, progress)?;
        first_error(&result)?;
        delta_summary = Some(DeltaSummary::from(&result));
    } else if let [only] = plan.chain.as_slice() {
        restore_tree(&reader, only.snapshot.tree, &pgdata, &spaces, progress)?;
    } else {
        combine(&tools, &reader, &plan, &pgdata, progress)?;
    }
    fs::set_permissions(&pgdata, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(&pgdata, e))?;
    recovery::write_settings(
        &pgdata,
        &plan,
        request.restore_command,
        request.action,
        request.keep_archiving,
    )?;
    // pg_combinebackup flushes what it writes; a plain restore is flushed here.
    if plan.chain.len() == 1 {
        files::sync_tree(&pgdata)?;
        for space in &spaces {
            files::sync_tree(&space.dir)?;
        }
    }
    Ok(Restored {
        pgdata,
        plan,
        action: request.action,
        delta: delta_summary,
    })
}

/// Refuse a data directory that exists with anything in it: a plain restore never overwrites (a
/// running cluster's directory least of all). Callers may check this before opening the repository,
/// so a wrong directory is refused before a password is asked for; [`restore`] checks it again.
pub fn check_empty(pgdata: &Path) -> Result<()> {
    match fs::read_dir(pgdata) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(Error::NotEmpty(pgdata.to_path_buf())),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(pgdata, e)),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(std::env::current_dir()
        .map_err(|e| Error::Invalid(format!("cannot read the current directory: {e}")))?
        .join(path))
}

/// The data directory, and each tablespace in its own directory, linked from `pg_tblspc`.
fn restore_tree(
    reader: &BlobReader<'_>,
    tree: Id,
    dir: &Path,
    spaces: &[Placement],
    progress: &dyn Progress,
) -> Result<()> {
    let in_tblspc = |path: &[u8]| path.starts_with(b"/pg_tblspc/");
    let mut opts = files::RestoreOptions::default();
    if !spaces.is_empty() {
        opts.select.exclude = Some(&in_tblspc);
    }
    first_error(&files::restore(reader, tree, dir, &opts, progress)?)?;
    for space in spaces {
        let prefix = format!("pg_tblspc/{}", space.oid);
        let subtree = lifeline_repo::walk::lookup(reader, tree, prefix.as_bytes())?
            .and_then(|node| node.subtree)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "the backup's tablespace map names tablespace {}, but the backup holds no {prefix}",
                    space.oid
                ))
            })?;
        let opts = files::RestoreOptions {
            prefix: prefix.as_bytes(),
            ..files::RestoreOptions::default()
        };
        first_error(&files::restore(
            reader, subtree, &space.dir, &opts, progress,
        )?)?;
        fs::set_permissions(&space.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&space.dir, e))?;
        tablespaces::link(dir, space)?;
    }
    Ok(())
}

/// A data directory with any file missing cannot recover: the first failure fails the restore.
fn first_error(result: &RestoreResult) -> Result<()> {
    match result.errors.first() {
        Some((path, err)) => Err(Error::FilesNotRestored {
            count: result.errors.len(),
            first: path.clone(),
            error: err.clone(),
        }),
        None => Ok(()),
    }
}

/// Restore each backup of an incremental chain beside the target, then let pg_combinebackup
/// reconstruct the full data directory from them.
fn combine(
    tools: &Tools,
    reader: &BlobReader<'_>,
    plan: &Plan,
    pgdata: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let parent = pgdata
        .parent()
        .ok_or_else(|| Error::Invalid("the data directory has no parent directory".into()))?;
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    // Beside the target, on the same file system, where there is room for the data directory.
    let staging = tempfile::Builder::new()
        .prefix(".lifeline-combine-")
        .tempdir_in(parent)
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot create a staging directory in {}: {e}",
                parent.display()
            ))
        })?;
    let mut dirs = Vec::new();
    for (n, backup) in plan.chain.iter().enumerate() {
        let dir = staging.path().join(format!("{n:03}-{}", backup.id.short()));
        restore_tree(reader, backup.snapshot.tree, &dir, &[], progress)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&dir, e))?;
        dirs.push(dir);
    }
    let mut cmd = tools.command("pg_combinebackup");
    cmd.args(&dirs).arg("-o").arg(pgdata);
    tools::run(&mut cmd, "pg_combinebackup")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_empty_directory_is_a_plain_restores_target() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(check_empty(&dir.path().join("new")).is_ok());
        assert!(check_empty(dir.path()).is_ok());
        fs::write(dir.path().join("PG_VERSION"), b"17\n").expect("write");
        let err = check_empty(dir.path()).expect_err("not empty");
        assert!(matches!(err, Error::NotEmpty(_)), "{err}");
        assert!(err.to_string().contains("--delta"), "{err}");
    }

    #[test]
    fn delta_counts_what_was_rewritten() {
        let result = RestoreResult {
            files: 10,
            unchanged: 7,
            bytes: 1000,
            bytes_written: 30,
            deleted: vec![PathBuf::from("pg_wal/x"), PathBuf::from("postmaster.opts")],
            ..RestoreResult::default()
        };
        let d = DeltaSummary::from(&result);
        assert_eq!(
            (d.files_checked, d.files_rewritten, d.files_unchanged),
            (10, 3, 7)
        );
        assert_eq!(
            (d.entries_removed, d.bytes_checked, d.bytes_written),
            (2, 1000, 30)
        );
    }
}
