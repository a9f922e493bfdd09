//! Finding and running the PostgreSQL client programs that match a server, and connecting to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::error::{Error, Result};

/// Where the PostgreSQL programs are. `pg_dump` and `pg_basebackup` must be at least as new as the
/// server, so the directory is chosen per server unless the user names one.
#[derive(Debug, Clone)]
pub struct Tools {
    bin_dir: Option<PathBuf>,
}

impl Tools {
    /// The programs for a server of major version `major`: `bin_dir` when given, else Debian's
    /// `/usr/lib/postgresql/MAJOR/bin` when present, else whatever `PATH` finds.
    pub fn for_server(bin_dir: Option<&Path>, major: u32) -> Self {
        let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
        let bin_dir = match bin_dir {
            Some(dir) => Some(dir.to_path_buf()),
            None if debian.join("pg_dump").exists() => Some(debian),
            None => None,
        };
        Tools { bin_dir }
    }

    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.program(name));
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The major version a program reports (`pg_dump (PostgreSQL) 18.4` → 18).
    pub fn major_version(&self, name: &str) -> Result<u32> {
        let out = run(self.command(name).arg("--version"), name)?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|word| word.split('.').next()?.parse::<u32>().ok())
            .ok_or_else(|| {
                Error::Invalid(format!("cannot read the version of {name} from {text:?}"))
            })
    }

    /// Refuse programs older than the server: they cannot read its catalogs or its backup protocol.
    pub fn check_version(&self, name: &str, server_major: u32) -> Result<()> {
        let have = self.major_version(name)?;
        if have < server_major {
            return Err(Error::Invalid(format!(
                "{} is version {have} but the server is {server_major}; install PostgreSQL {server_major}'s client programs or pass --pg-bin DIR",
                self.program(name).display()
            )));
        }
        Ok(())
    }
}

/// Run a command to completion, turning a failure into an error that carries its standard error.
pub fn run(cmd: &mut Command, tool: &str) -> Result<Output> {
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| spawn_error(tool, e))?;
    if !out.status.success() {
        return Err(tool_failed(tool, &out.status, &out.stderr));
    }
    Ok(out)
}

pub fn spawn_error(tool: &str, e: std::io::Error) -> Error {
    let hint = if e.kind() == std::io::ErrorKind::NotFound {
        " (not found: install PostgreSQL's client programs or pass --pg-bin DIR)"
    } else {
        ""
    };
    Error::Invalid(format!("cannot run {tool}: {e}{hint}"))
}

pub fn tool_failed(tool: &str, status: &std::process::ExitStatus, stderr: &[u8]) -> Error {
    let text = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Error::Tool {
        tool: tool.into(),
        status: status.to_string(),
        stderr: if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join("\n  "))
        },
    }
}

/// A connection to the server at `url` (a libpq connection URI or key=value string).
pub fn connect(url: &str) -> Result<postgres::Client> {
    postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| Error::db(format!("cannot connect to {}", redact(url)), e))
}

/// The major version of the connected server (`server_version_num` 180004 → 18).
pub fn server_major(client: &mut postgres::Client) -> Result<u32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map_err(|e| Error::db("reading server_version_num", e))?;
    let num: i32 = row.get(0);
    Ok(u32::try_from(num / 10000).unwrap_or(0))
}

/// The URL without its password, for messages and snapshot metadata.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url
            .split_whitespace()
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgresql://app:s3cret@db:5432/x"),
            "postgresql://app:***@db:5432/x"
        );
        assert_eq!(redact("postgresql://app@db/x"), "postgresql://app@db/x");
        assert_eq!(
            redact("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
    }
}
