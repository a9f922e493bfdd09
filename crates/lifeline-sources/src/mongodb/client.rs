//! Connecting to MongoDB with the official driver (its blocking API), failing within seconds when
//! no server answers instead of the driver's 30-second default.

use std::path::Path;

use mongodb::bson::{doc, Document};
use mongodb::sync::{Client, Database};

use super::error::{Error, Result};

/// How long a command waits for a server it can use.
const SERVER_SELECTION_MS: u32 = 10_000;

/// A connected client and the connection string as shown (without its password).
pub struct Connection {
    pub client: Client,
    pub shown: String,
}

impl Connection {
    pub fn open(uri: &str) -> Result<Connection> {
        Self::open_with(uri, None)
    }

    /// Like [`Connection::open`], with the password of `password_file` (trimmed) for the URI's user.
    pub fn open_with(uri: &str, password_file: Option<&Path>) -> Result<Connection> {
        let shown = redact(uri);
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(Error::Invalid(format!(
                "{shown:?} is not a MongoDB connection string: use mongodb://[USER:PASSWORD@]HOST[:PORT]/[?OPTIONS]"
            )));
        }
        let uri = match password_file {
            None => uri.to_string(),
            Some(path) => with_password(uri, path)?,
        };
        let client = Client::with_uri_str(with_defaults(&uri)).map_err(|source| Error::Mongo {
            at: shown.clone(),
            doing: "parsing the connection string".into(),
            source: Box::new(source),
        })?;
        Ok(Connection { client, shown })
    }

    /// Run `command` on `db`, naming what it was for when it fails.
    pub fn command(&self, db: &str, command: Document, doing: &str) -> Result<Document> {
        self.database(db)
            .run_command(command)
            .run()
            .map_err(|source| self.error(doing, source))
    }

    /// Run a command that answers with a cursor, and read it to the end.
    pub fn cursor_command(
        &self,
        db: &str,
        command: Document,
        doing: &str,
    ) -> Result<Vec<Document>> {
        let cursor = self
            .database(db)
            .run_cursor_command(command)
            .run()
            .map_err(|source| self.error(doing, source))?;
        cursor
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|source| self.error(doing, source))
    }

    pub fn database(&self, db: &str) -> Database {
        self.client.database(db)
    }

    pub fn error(&self, doing: &str, source: mongodb::error::Error) -> Error {
        Error::Mongo {
            at: self.shown.clone(),
            doing: doing.to_string(),
            source: Box::new(source),
        }
    }

    /// Server selection proves a server answers; `ping` also proves the credentials.
    pub fn ping(&self) -> Result<()> {
        self.command("admin", doc! { "ping": 1 }, "connecting")
            .map(|_| ())
    }
}

/// `uri` with the password from `path` put after its user, percent-encoded.
fn with_password(uri: &str, path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("reading password_file {}", path.display()), e))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(Error::Invalid(format!(
            "password file {} is empty",
            path.display()
        )));
    }
    let (scheme, rest) = uri.split_once("://").unwrap_or(("mongodb", uri));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some((user, host)) = rest[..authority_end].rsplit_once('@') else {
        return Err(Error::Invalid(format!(
            "{}: password_file needs a user in the URL (mongodb://USER@HOST/)",
            redact(uri)
        )));
    };
    if user.contains(':') {
        return Err(Error::Invalid(format!(
            "{}: the URL has a password and password_file gives another; keep one",
            redact(uri)
        )));
    }
    // RFC 3986 unreserved characters stay; everything else is escaped byte by byte.
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!(
        "{scheme}://{user}:{encoded}@{host}{}",
        &rest[authority_end..]
    ))
}

/// The URI with lifeline's defaults for what it leaves unset: a short server selection timeout
/// and the application name servers log.
fn with_defaults(uri: &str) -> String {
    let mut out = uri.to_string();
    let lower = uri.to_ascii_lowercase();
    let mut add = |key: &str, value: String| {
        if lower.contains(&format!("{}=", key.to_ascii_lowercase())) {
            return;
        }
        if !out.contains('?') {
            let after_scheme = out.split_once("://").map_or("", |(_, rest)| rest);
            out.push_str(if after_scheme.contains('/') {
                "?"
            } else {
                "/?"
            });
        } else if !out.ends_with('?') && !out.ends_with('&') {
            out.push('&');
        }
        out.push_str(&format!("{key}={value}"));
    };
    add("serverSelectionTimeoutMS", SERVER_SELECTION_MS.to_string());
    add("appName", "lifeline".into());
    out
}

/// `mongodb://user:secret@host/…` → `mongodb://user@host/…`.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{redact, with_defaults, with_password};

    #[test]
    fn redact_drops_only_the_password() {
        assert_eq!(
            redact("mongodb://app:s3cr%40t@db1:27017,db2/kb?replicaSet=rs0"),
            "mongodb://app@db1:27017,db2/kb?replicaSet=rs0"
        );
        assert_eq!(redact("mongodb://db1/"), "mongodb://db1/");
    }

    #[test]
    fn a_password_file_fills_in_the_users_password_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "p@ss:w/rd\n").unwrap();
        assert_eq!(
            with_password("mongodb://backup@db1:27017/?replicaSet=rs0", &file).unwrap(),
            "mongodb://backup:p%40ss%3Aw%2Frd@db1:27017/?replicaSet=rs0"
        );
        for bad in ["mongodb://db1/", "mongodb://backup:other@db1/"] {
            assert!(with_password(bad, &file).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_added_only_where_unset() {
        assert_eq!(
            with_defaults("mongodb://db1:27017"),
            "mongodb://db1:27017/?serverSelectionTimeoutMS=10000&appName=lifeline"
        );
        assert_eq!(
            with_defaults("mongodb://db1/kb?replicaSet=rs0&appname=x"),
            "mongodb://db1/kb?replicaSet=rs0&appname=x&serverSelectionTimeoutMS=10000"
        );
    }
}
