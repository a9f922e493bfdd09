//! lifeline's backup programme: the options model shared by flags and the plan file, how keys are
//! read, and (growing) the plan that `lifeline run` and `lifeline daemon` carry out. Below the binary,
//! above the sources: it decides what runs when, the sources decide how data is captured.

pub mod key_file;
pub mod notify;
pub mod open;
pub mod options;
pub mod page;
pub mod password;
pub mod report;
