//! The audit trail (format.md §14): one immutable, hash-linked, authenticated record per operation
//! that reads, writes or deletes backup data or keys.

mod event;

pub use event::{Access, AuditRecord, Entry, Event, EventResult, Origin, Touched};
