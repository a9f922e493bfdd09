//! Service configuration as a source: allowed environment variables, with secrets redacted or
//! refused by name, and configuration files (Kubernetes ConfigMaps mounted as files included).

use serde::{Deserialize, Serialize};

/// What a variable whose name looks like a secret does to a capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Secrets {
    /// Stored with its value replaced, and named in the snapshot's record of redactions.
    #[default]
    Redact,
    /// The capture fails, naming the variable.
    Refuse,
}
