//! The one table from errors to exit codes (documented in the README).

use lifeline_repo::ErrorKind;

pub const OK: u8 = 0;
pub const FATAL: u8 = 1;
pub const PARTIAL: u8 = 3;
pub const REPOSITORY_NOT_FOUND: u8 = 10;
pub const WRONG_PASSWORD: u8 = 12;
/// `pg wal-fetch` could not supply an archived WAL file intact; PostgreSQL stops recovery on it.
pub const RECOVERY_MUST_STOP: u8 = 126;

pub fn code_for(err: &anyhow::Error) -> u8 {
    let kind = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<lifeline_repo::Error>())
        .map(lifeline_repo::Error::kind);
    match kind {
        Some(ErrorKind::RepositoryNotFound) => REPOSITORY_NOT_FOUND,
        Some(ErrorKind::WrongPassword) => WRONG_PASSWORD,
        _ => FATAL,
    }
}
