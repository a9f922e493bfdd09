//! `pg restore --delta`: restore a base backup in place into a stopped copy of the same cluster, as
//! pgBackRest's `--delta` does. Every file is compared with the backup and only what differs is
//! written; what the backup does not hold is removed (WAL in `pg_wal`, `postmaster.opts`, signal
//! files, files added since), so the directory ends up exactly as a full restore would leave it.
//! Refused for a running server's directory and for another cluster's.

use std::fs;
use std::path::Path;

use lifeline_repo::BlobReader;

use super::error::{Error, Result};
use super::recovery::Plan;
use super::wal;
use crate::files::{self, RestoreResult};
use crate::Progress;

/// Check, before anything is written, that `pgdata` may be updated in place from `plan`'s backup:
/// a missing or empty directory is fine (everything is written); otherwise it must be a stopped
/// PostgreSQL data directory of the backup's major version and cluster.
pub fn check_target(pgdata: &Path, plan: &Plan) -> Result<()> {
    let backup = plan.backup();
    if plan.chain.len() > 1 {
        return Err(Error::Invalid(format!(
            "base backup {} is incremental (pg_combinebackup rebuilds it from {} backups into a new directory), so --delta cannot update {} in place: pass --set with a full backup's ID (pg status lists them), or restore into a new or empty directory",
            backup.id.short(),
            plan.chain.len(),
            pgdata.display()
        )));
    }
    match fs::read_dir(pgdata) {
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(pgdata, e)),
    }
    check_stopped(pgdata)?;
    let not_ours = "--delta only updates a stopped copy of the backup's own cluster; restore into a new or empty directory instead";
    let version = match fs::read_to_string(pgdata.join("PG_VERSION")) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "{} is not a PostgreSQL data directory (it has no PG_VERSION): {not_ours}",
                pgdata.display()
            )))
        }
        Err(e) => return Err(Error::io(pgdata.join("PG_VERSION"), e)),
    };
    if version != backup.major.to_string() {
        return Err(Error::Invalid(format!(
            "{} holds a PostgreSQL {version} cluster and the backup is of PostgreSQL {}: {not_ours}",
            pgdata.display(),
            backup.major
        )));
    }
    // Without pg_control the directory is a restore that stopped half way; it is finished here.
    if pgdata.join("global/pg_control").exists() {
        let found = wal::system_identifier(pgdata)?;
        if found != backup.system_id {
            return Err(Error::Invalid(format!(
                "{} holds cluster {found}, but the backup is of cluster {}: {not_ours}",
                pgdata.display(),
                backup.system_id
            )));
        }
    }
    Ok(())
}

/// Refuse while `postmaster.pid` exists, as pgBackRest does: a delta restore under a running server
/// destroys it. A pid that is not running here may still be a server in another pid namespace (a
/// container), so the user, not lifeline, decides that the file is stale.
fn check_stopped(pgdata: &Path) -> Result<()> {
    let pid_file = pgdata.join("postmaster.pid");
    let text = match fs::read_to_string(&pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&pid_file, e)),
    };
    let pid = text.lines().next().unwrap_or("").trim();
    let alive = !pid.is_empty() && Path::new("/proc").join(pid).exists();
    Err(Error::Invalid(if alive {
        format!(
            "a PostgreSQL server (pid {pid}) is running on {}: stop it first (pg_ctl -D {} stop); --delta rewrites its files",
            pgdata.display(),
            pgdata.display()
        )
    } else {
        format!(
            "{} exists and names pid {pid}, which is not running on this host: if no server uses this directory (it crashed, or ran in a container that is gone), remove postmaster.pid and run again",
            pid_file.display()
        )
    }))
}

/// Make `pgdata` equal to the backup's tree, writing only what differs (see the module comment).
/// Call `check_target` first.
pub fn restore(
    reader: &BlobReader<'_>,
    plan: &Plan,
    pgdata: &Path,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    Ok(files::restore_delta(
        reader,
        plan.backup().snapshot.tree,
        pgdata,
        progress,
    )?)
}
