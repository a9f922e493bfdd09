//! The monthly compliance report (`lifeline report --month YYYY-MM`): backup success per source,
//! recovery tests against RTO/RPO targets, data integrity and the audit trail's verification,
//! encryption keys against the 90-day rotation, retention and legal holds, second-region copies,
//! WAL continuity and every failure with its cause — the evidence HIPAA §164.308(a)(7) and
//! §164.312(b) ask for.
//!
//! [`build`] is a pure function of what the repository holds (audit trail, drill records, key
//! epochs, holds) and the plan's sources, so a report made from the copy in the other region is
//! the same report. It renders as HTML ([`render_html`], printable on A4), Markdown
//! ([`render_markdown`]) and JSON (`serde_json` on [`MonthlyReport`]).

mod build;
mod gather;
mod html;
mod markdown;
mod model;
mod month;
mod text;

pub use build::{build, ALGORITHM, ROTATION_DAYS};
pub use gather::gather;
pub use html::render_html;
pub use markdown::render_markdown;
pub use model::*;
pub use month::{Month, MonthError};
