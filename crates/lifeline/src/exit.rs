//! The one table from errors to exit codes (documented in the README).

use lifeline_repo::ErrorKind;

pub const OK: u8 = 0;
pub const FATAL: u8 = 1;
pub const PARTIAL: u8 = 3;
pub const REPOSITORY_NOT_FOUND: u8 = 10;
pub const WRONG_PASSWORD: u8 = 12;
/// The credential opened the repository but its role does not allow the operation.
pub const NOT_PERMITTED: u8 = 13;
/// `pg wal-fetch` could not supply an archived WAL file intact; PostgreSQL stops recovery on it.
pub const RECOVERY_MUST_STOP: u8 = 126;
/// Standard output was closed early (`lifeline ls latest | head`): the status of a program ended by
/// SIGPIPE, which is how every Unix tool ends there.
pub const BROKEN_PIPE: u8 = 141;

pub fn code_for(err: &anyhow::Error) -> u8 {
    let kind = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<lifeline_repo::Error>())
        .map(lifeline_repo::Error::kind);
    match kind {
        Some(ErrorKind::RepositoryNotFound) => REPOSITORY_NOT_FOUND,
        Some(ErrorKind::WrongPassword) => WRONG_PASSWORD,
        Some(ErrorKind::NotPermitted) => NOT_PERMITTED,
        _ => FATAL,
    }
}

/// What to do about a file system that refused a write, whoever's file it was (the repository's,
/// a restore target's): the operating system's message names the cause, not the way out.
pub fn io_hint(err: &anyhow::Error) -> Option<&'static str> {
    let io = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())?;
    match io.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Some(
            "the file system holding the file named above is full: free space or grow it, then run the command again; \
             an interrupted write leaves the repository as it was, and `lifeline prune` removes the data it left unreferenced",
        ),
        std::io::ErrorKind::ReadOnlyFilesystem => Some(
            "the file system holding the file named above is read-only: remount it read-write or write from a host where it is; \
             reading commands (`snapshots`, `check`, `restore` to a writable target) work on a read-only repository",
        ),
        _ => None,
    }
}

/// What to do about an error, for `--json` output (text output carries it in the message, or in a
/// `hint:` line for [`io_hint`]).
pub fn hint_for(err: &anyhow::Error) -> Option<String> {
    if let Some(hint) = io_hint(err) {
        return Some(hint.to_string());
    }
    let repo_error = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<lifeline_repo::Error>())?;
    match repo_error {
        lifeline_repo::Error::Backend { hint, .. } if !hint.is_empty() => {
            Some(hint.trim_start_matches("; ").to_string())
        }
        _ => match repo_error.kind() {
            ErrorKind::RepositoryNotFound => Some(
                "check --repo (or LIFELINE_REPO, or url in --config), or create the repository with `lifeline init`".into(),
            ),
            ErrorKind::WrongPassword => Some(
                "check the password file or command (--password-file, --password-command), the key file or the KMS command".into(),
            ),
            ErrorKind::NotPermitted => Some(
                "use a credential of the role the message names (`lifeline key list` shows each slot's role)".into(),
            ),
            ErrorKind::Damaged => Some(
                "run `lifeline check --read-data`: it names every damaged object and what depends on it".into(),
            ),
            ErrorKind::Other => None,
        },
    }
}

/// Whether the error is standard output closing under us.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
