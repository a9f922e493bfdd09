//! The audit record of the command being run. A command says what it is and what it touched as it
//! goes; `commands::run` writes the record when the command ends, whatever the outcome, into the
//! repository the command opened. A command that never opened a repository (a wrong password, a
//! bad argument) touched nothing and leaves no record.

use std::cell::RefCell;

use lifeline_plan::audit::AuditOptions;
use lifeline_repo::audit::{Access, Event, EventResult};
use lifeline_repo::Repository;

#[derive(Default)]
pub struct Recorder {
    event: RefCell<Option<Event>>,
    repo: RefCell<Option<Repository>>,
}

impl Recorder {
    /// This command is an audited operation: `action` on `target`.
    pub fn begin(&self, action: &str, target: impl AsRef<str>) {
        *self.event.borrow_mut() = Some(Event::new(action, target.as_ref()));
    }

    pub fn touch(&self, access: Access, kind: &str, id: impl ToString) {
        if let Some(event) = self.event.borrow_mut().as_mut() {
            event.touch(access, kind, id);
        }
    }

    pub fn detail(&self, key: &str, value: impl ToString) {
        if let Some(event) = self.event.borrow_mut().as_mut() {
            event.detail(key, value);
        }
    }

    /// The repository the record goes to: the first one the command opened (`copy`'s source, not its
    /// destination, which records its own side).
    pub fn opened(&self, repo: &Repository) {
        let mut slot = self.repo.borrow_mut();
        if slot.is_none() {
            *slot = Some(repo.clone());
        }
    }

    /// The repository changed format under the command (`migrate`): the record goes to it as it is
    /// now, sealed under its current keys.
    pub fn switched_to(&self, repo: &Repository) {
        *self.repo.borrow_mut() = Some(repo.clone());
    }

    /// Write the record for the command's `outcome`. Returns the warnings to print.
    pub fn finish(&self, outcome: &anyhow::Result<u8>, options: &AuditOptions) -> Vec<String> {
        let (Some(mut event), Some(repo)) = (self.event.take(), self.repo.take()) else {
            return Vec::new();
        };
        match outcome {
            Ok(0) => {}
            Ok(3) => event.result = EventResult::Partial,
            Ok(code) => {
                event.result = EventResult::Failed;
                event
                    .error
                    .get_or_insert_with(|| format!("exit code {code}"));
            }
            Err(e) => {
                event.result = EventResult::Failed;
                event.error = Some(format!("{e:#}"));
                // A refusal by role is evidence of its own (a backup host trying to read), not a
                // failed operation: the compliance report keeps it apart (docs/evidence.md).
                if crate::exit::code_for(e) == crate::exit::NOT_PERMITTED {
                    event.detail("refused", repo.role());
                }
            }
        }
        match lifeline_plan::audit::record(&repo, &event, options) {
            Ok(recorded) => recorded.warnings,
            Err(e) => vec![format!(
                "the audit record of this {} was not written: {e}",
                event.action
            )],
        }
    }

    /// Why the command did not succeed, when it ends with an exit code rather than an error.
    pub fn error(&self, message: impl ToString) {
        if let Some(event) = self.event.borrow_mut().as_mut() {
            event.error = Some(message.to_string());
        }
    }
}

/// Shorthand for the accesses commands report.
pub use Access::{Deleted, Read, Wrote};
