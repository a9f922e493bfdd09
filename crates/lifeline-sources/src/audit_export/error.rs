use std::path::PathBuf;
use std::time::Duration;

/// Errors of an audit-table export, verification or drill.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
    /// Connecting (the PostgreSQL source's own error, with the URL redacted).
    #[error(transparent)]
    Connect(#[from] crate::postgres::Error),
    #[error("PostgreSQL {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the export of {table} waited {} for {} transaction(s) that were open when it chose its watermark and may still write rows below it: {}; nothing was saved. End them (COMMIT or ROLLBACK; idle_in_transaction_session_timeout ends forgotten ones) or give the source a longer `timeout`",
        seconds(*.waited),
        .blockers.len(),
        list(.blockers)
    )]
    Blocked {
        table: String,
        waited: Duration,
        blockers: Vec<Blocker>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn db(context: impl Into<String>, source: postgres::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A transaction an export waited for in vain: what PostgreSQL says about it. Without
/// `pg_read_all_stats` the server hides other roles' sessions, so only the pid is known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blocker {
    pub pid: Option<i32>,
    /// `idle in transaction`, `active`, …
    pub state: Option<String>,
    pub xact_start: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    /// A prepared (two-phase) transaction's global ID.
    pub prepared: Option<String>,
    /// A transaction ID not tied to a session PostgreSQL shows.
    pub xid: Option<String>,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(gid) = &self.prepared {
            return write!(
                f,
                "prepared transaction {gid:?} (COMMIT PREPARED or ROLLBACK PREPARED it)"
            );
        }
        match self.pid {
            Some(pid) => write!(f, "backend pid {pid}")?,
            None => write!(f, "transaction {}", self.xid.as_deref().unwrap_or("?"))?,
        }
        let mut about = Vec::new();
        if let Some(s) = &self.state {
            about.push(s.clone());
        }
        if let Some(t) = &self.xact_start {
            about.push(format!("transaction began {t}"));
        }
        if let Some(u) = &self.user {
            about.push(format!("user {u}"));
        }
        if let Some(a) = self.application.as_deref().filter(|a| !a.is_empty()) {
            about.push(format!("application {a}"));
        }
        if !about.is_empty() {
            write!(f, " ({})", about.join(", "))?;
        }
        Ok(())
    }
}

fn list(blockers: &[Blocker]) -> String {
    blockers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_export_names_each_transaction() {
        let err = Error::Blocked {
            table: "audit_log".into(),
            waited: Duration::from_secs(300),
            blockers: vec![
                Blocker {
                    pid: Some(4242),
                    state: Some("idle in transaction".into()),
                    xact_start: Some("2026-12-01 10:00:00+00".into()),
                    user: Some("app".into()),
                    application: Some("psql".into()),
                    prepared: None,
                    xid: None,
                },
                Blocker {
                    pid: None,
                    state: None,
                    xact_start: None,
                    user: None,
                    application: None,
                    prepared: Some("tx-1".into()),
                    xid: Some("771".into()),
                },
            ],
        };
        let text = err.to_string();
        assert!(text.contains("waited 300 s for 2 transaction(s)"), "{text}");
        assert!(
            text.contains("backend pid 4242 (idle in transaction, transaction began 2026-12-01 10:00:00+00, user app, application psql)"),
            "{text}"
        );
        assert!(text.contains("prepared transaction \"tx-1\""), "{text}");
        assert!(text.contains("nothing was saved"), "{text}");
    }
}
