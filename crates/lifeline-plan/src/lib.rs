//! lifeline's backup programme: the options model shared by flags and the plan file, how keys are
//! read, the plan that `lifeline run` and `lifeline daemon` carry out, its schedules, metrics,
//! notifications and status page. Below the binary, above the sources: it decides what runs when
//! and where copies go; the sources decide how data is captured.

pub mod audit;
pub mod compliance;
pub mod daemon;
pub mod drill;
pub mod forget;
pub mod job;
pub mod key_file;
pub mod kms;
pub mod metrics;
pub mod notify;
pub mod open;
pub mod options;
pub mod page;
pub mod password;
pub mod plan;
pub mod recovery_plan;
pub mod report;
pub mod schedule;
pub mod secret_command;
pub mod survey;
