//! The audit trail (format.md §14): one immutable, hash-linked, authenticated record per operation
//! that reads, writes or deletes backup data or keys.
//!
//! Each record names the records its writer saw as the newest, by their names, which are hashes of
//! their stored bytes; a plaintext envelope lets a reader without keys check those links, and a body
//! sealed with the repository's keys repeats them so that a rewritten envelope is detected with keys.

mod append;
mod envelope;
mod event;
mod import;
mod inspect;
mod load;
mod name;
mod order;
#[cfg(test)]
mod tests;
mod verify;

pub use append::{append, append_entry};
pub use envelope::{Envelope, ENVELOPE_VERSION};
pub use event::{Access, AuditRecord, Entry, Event, EventResult, Origin, Touched};
pub use import::{import, ImportError};
pub use load::{load, load_since, verify_and_load};
pub use name::{PREFIX, SKEW, WINDOW};
pub use verify::{verify, Problem, ProblemKind, Verification};
