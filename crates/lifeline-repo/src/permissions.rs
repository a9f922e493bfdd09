//! What each role may do (format.md §3.1), asked once at the start of an operation. The crypto layer
//! refuses a key the credential lacks anyway; asking first means a refusal names the operation and
//! the role it needs, instead of surfacing deep inside as "snapshots cannot be read" or, worse, as
//! an empty listing.

use crate::crypto::Role;
use crate::error::Result;
use crate::repository::Repository;

/// Roles that open snapshots, trees and data.
pub const READERS: &[Role] = &[Role::Admin, Role::Restore];
/// Roles that store new backups.
pub const WRITERS: &[Role] = &[Role::Admin, Role::Restore, Role::Backup];
/// Roles that open records (holds, verifications, drills) and audit bodies.
pub const RECORD_READERS: &[Role] = &[Role::Admin, Role::Restore, Role::Audit];
/// Roles that manage keys.
pub const ADMINS: &[Role] = &[Role::Admin];

impl Repository {
    /// The role of the credential this repository was opened with (`admin` for format v1).
    pub fn role(&self) -> Role {
        self.keyring().role
    }

    /// Whether this credential opens snapshots, trees and data: not a write-only `backup`
    /// credential, nor an `audit` one.
    pub fn can_read_backups(&self) -> bool {
        READERS.contains(&self.role())
    }

    /// Refuse `what` (a command or an operation, e.g. "restore") unless this credential can read
    /// snapshots, trees and data.
    pub fn require_read(&self, what: &str) -> Result<()> {
        self.keyring().require(READERS, what)
    }

    /// Refuse `what` unless this credential can store new backups.
    pub fn require_write(&self, what: &str) -> Result<()> {
        self.keyring().require(WRITERS, what)
    }

    /// Refuse `what` unless this credential can open records and the audit trail.
    pub fn require_records(&self, what: &str) -> Result<()> {
        self.keyring().require(RECORD_READERS, what)
    }

    /// Refuse `what` unless this credential manages keys.
    pub fn require_admin(&self, what: &str) -> Result<()> {
        self.keyring().require(ADMINS, what)
    }
}
