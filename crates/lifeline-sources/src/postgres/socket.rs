//! Where a restored server listens, and how to reach it: its own `unix_socket_directories` (a
//! restored cluster keeps the setting its clients and `pg_hba.conf` expect), a fallback only for the
//! directories that cannot hold a socket on this host, and connection strings that name them.

use std::path::Path;

use nix::unistd::{access, AccessFlags};

use super::error::Result;
use super::tools::{self, Tools};

/// The unix socket directories a server on a data directory will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sockets {
    /// The directories (or `@abstract` names) in the order the setting lists them; empty when the
    /// server listens on TCP only.
    pub dirs: Vec<String>,
    /// Whether `dirs` differs from the cluster's own setting, which the server must then be told.
    pub replaced: bool,
    /// Why a listed directory was left out, one line each.
    pub notes: Vec<String>,
}

/// The cluster's effective `unix_socket_directories`, as the server reads it (`postgres -C`, so
/// included files and `postgresql.auto.conf` count), minus the directories that do not exist or
/// that this user cannot create a socket in. When none is left, `fallback` takes their place.
pub fn for_data_dir(tools: &Tools, pgdata: &Path, fallback: &Path) -> Result<Sockets> {
    let mut cmd = tools.command("postgres");
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-C", "unix_socket_directories"]);
    let out = tools::run(&mut cmd, "postgres -C unix_socket_directories")?;
    let setting = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(choose(&setting, fallback, usable))
}

fn choose(setting: &str, fallback: &Path, usable: impl Fn(&str) -> Option<String>) -> Sockets {
    let listed = parse_list(setting);
    let mut dirs = Vec::new();
    let mut notes = Vec::new();
    for dir in &listed {
        match usable(dir) {
            None => dirs.push(dir.clone()),
            Some(why) => notes.push(format!(
                "unix_socket_directories names {dir}, which {why}; left out"
            )),
        }
    }
    if dirs.is_empty() && !listed.is_empty() {
        let fallback = fallback.display().to_string();
        notes.push(format!("the server puts its socket in {fallback} instead"));
        dirs.push(fallback);
    }
    Sockets {
        replaced: dirs != listed,
        dirs,
        notes,
    }
}

/// A comma-separated list as PostgreSQL reads it: elements trimmed, double quotes removed.
fn parse_list(setting: &str) -> Vec<String> {
    setting
        .split(',')
        .map(|d| d.trim().trim_matches('"').trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// `None` when the server can create its socket in `dir`, else why not. Abstract sockets
/// (`@name`, Linux) need no directory.
fn usable(dir: &str) -> Option<String> {
    if dir.starts_with('@') {
        return None;
    }
    match std::fs::metadata(dir) {
        Err(_) => Some("does not exist".into()),
        Ok(meta) if !meta.is_dir() => Some("is not a directory".into()),
        Ok(_) => access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
            .err()
            .map(|_| "this user cannot write to".into()),
    }
}

impl Sockets {
    /// The socket directory a client should use: the first real directory.
    pub fn client_dir(&self) -> Option<&str> {
        self.dirs
            .iter()
            .map(String::as_str)
            .find(|d| !d.starts_with('@'))
    }

    /// The value to give the server with `-c unix_socket_directories=…` when it differs from the
    /// cluster's own.
    pub fn setting(&self) -> String {
        self.dirs.join(",")
    }
}

/// `postgresql://USER@/DB?host=DIR&port=PORT`: the server's unix socket, where local (peer or
/// trust) authentication applies.
pub fn socket_url(user: &str, db: &str, dir: &str, port: u16) -> String {
    format!(
        "postgresql://{}@/{}?host={}&port={port}",
        encode(user),
        encode(db),
        encode(dir)
    )
}

/// `postgresql://USER@127.0.0.1:PORT/DB`: the loopback address a restored server listens on.
pub fn tcp_url(user: &str, db: &str, port: u16) -> String {
    format!(
        "postgresql://{}@127.0.0.1:{port}/{}",
        encode(user),
        encode(db)
    )
}

/// Percent-encoding for a URI component (libpq decodes every part).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists_only(present: &'static [&'static str]) -> impl Fn(&str) -> Option<String> {
        move |d| (!present.contains(&d)).then(|| "does not exist".to_string())
    }

    #[test]
    fn the_clusters_own_directories_are_kept() {
        let s = choose(
            "/run/pg, /tmp",
            Path::new("/x"),
            exists_only(&["/run/pg", "/tmp"]),
        );
        assert_eq!(s.dirs, ["/run/pg", "/tmp"]);
        assert!(!s.replaced && s.notes.is_empty());
    }

    #[test]
    fn a_missing_directory_is_left_out_and_the_fallback_used_only_when_none_is_left() {
        let s = choose("\"/gone\", /tmp", Path::new("/x"), exists_only(&["/tmp"]));
        assert_eq!(s.dirs, ["/tmp"]);
        assert!(s.replaced);
        assert!(s.notes[0].contains("/gone"), "{:?}", s.notes);
        let s = choose("/gone", Path::new("/x"), exists_only(&[]));
        assert_eq!(s.dirs, ["/x"]);
        assert_eq!(s.notes.len(), 2);
    }

    #[test]
    fn an_empty_setting_means_tcp_only() {
        let s = choose("", Path::new("/x"), exists_only(&[]));
        assert!(s.dirs.is_empty() && !s.replaced && s.client_dir().is_none());
    }

    #[test]
    fn urls_encode_what_libpq_would_misread() {
        assert_eq!(
            socket_url("postgres", "my db", "/tmp/a b", 5433),
            "postgresql://postgres@/my%20db?host=/tmp/a%20b&port=5433"
        );
        assert_eq!(
            tcp_url("postgres", "postgres", 5433),
            "postgresql://postgres@127.0.0.1:5433/postgres"
        );
    }
}
