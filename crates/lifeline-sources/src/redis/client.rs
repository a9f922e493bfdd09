//! A small RESP2 client: what a backup needs of Redis (AUTH, INFO, CONFIG, REPLCONF, SYNC) over TCP
//! or TLS, with timeouts, and the raw connection for the RDB that follows SYNC.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::compare::{DbKeys, KeyCounts};
use super::error::{Error, Result};
use super::tls::{self, TlsStream};
use super::url::Target;

/// How long a connection attempt, and any single read or write, may take. SYNC waits longer: the
/// server sends a newline every second while it prepares the RDB, so silence means trouble.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Bulk replies larger than this are refused (INFO and CONFIG answers are a few kilobytes).
const MAX_BULK: usize = 64 << 20;

/// Everything needed to reach and log in to one server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub target: Target,
    /// PEM CA for `rediss://`; the Web PKI roots without it.
    pub tls_ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl ConnectOptions {
    /// From a URL, with the password of `password_file` (trimmed) taking the URL's place.
    pub fn new(
        url: &str,
        password_file: Option<&std::path::Path>,
        tls_ca_file: Option<PathBuf>,
    ) -> Result<Self> {
        let mut target = Target::parse(url)?;
        if let Some(path) = password_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            let password = text.trim();
            if password.is_empty() {
                return Err(Error::Invalid(format!(
                    "password file {} is empty",
                    path.display()
                )));
            }
            target.password = Some(password.to_string());
        }
        if tls_ca_file.is_some() && !target.tls {
            return Err(Error::Invalid(format!(
                "tls_ca_file is set but {} is not a TLS URL: use rediss://",
                target.display_url()
            )));
        }
        Ok(ConnectOptions {
            target,
            tls_ca_file,
            timeout: TIMEOUT,
        })
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// One logged-in connection.
pub struct Client {
    pub(super) conn: BufReader<Conn>,
    address: String,
}

impl Client {
    /// Connect (TLS for `rediss://`) and log in with AUTH when a password is known.
    pub fn connect(options: &ConnectOptions) -> Result<Client> {
        let target = &options.target;
        let address = target.address();
        let connect_err = |source| Error::Connect {
            address: address.clone(),
            source,
        };
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(connect_err)?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address found");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, options.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| connect_err(last))?;
        let io = |e| Error::Io {
            address: address.clone(),
            doing: "setting socket options".into(),
            source: e,
        };
        tcp.set_read_timeout(Some(options.timeout)).map_err(io)?;
        tcp.set_write_timeout(Some(options.timeout)).map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let conn = if target.tls {
            Conn::Tls(Box::new(tls::wrap(
                tcp,
                &target.host,
                &address,
                options.tls_ca_file.as_deref(),
            )?))
        } else {
            Conn::Plain(tcp)
        };
        let mut client = Client {
            // Large: the RDB streams through this buffer.
            conn: BufReader::with_capacity(256 << 10, conn),
            address,
        };
        if let Some(password) = &target.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            if let Reply::Error(message) = client.call(&args)? {
                return Err(Error::Auth {
                    address: client.address.clone(),
                    message,
                });
            }
        }
        Ok(client)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub(super) fn io(&self, doing: &str, source: std::io::Error) -> Error {
        Error::Io {
            address: self.address.clone(),
            doing: doing.into(),
            source,
        }
    }

    pub(super) fn protocol(&self, detail: impl Into<String>) -> Error {
        Error::Protocol {
            address: self.address.clone(),
            detail: detail.into(),
        }
    }

    /// Send a command; its error reply is returned as a reply, not an error.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.send(&out)?;
        self.reply()
    }

    /// Send a command; an error reply becomes an [`Error`] that names it.
    pub fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match self.call(&bytes)? {
            Reply::Error(message) => Err(self.refused(args, message)),
            reply => Ok(reply),
        }
    }

    pub(super) fn refused(&self, args: &[&str], message: String) -> Error {
        let address = self.address.clone();
        if message.starts_with("NOAUTH") {
            return Error::NoAuth { address, message };
        }
        // Only the command's name and its subcommand: arguments may be secrets (CONFIG SET …).
        let command = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        let message = if message.starts_with("NOPERM") {
            format!("{message} (grant the backup user this command: see docs/sources/redis.md)")
        } else {
            message
        };
        Error::Command {
            address,
            command,
            message,
        }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let conn = self.conn.get_mut();
        conn.write_all(bytes)
            .and_then(|_| conn.flush())
            .map_err(|e| self.io("sending a command", e))
    }

    /// One line without its CR LF.
    pub(super) fn line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.conn)
            .take(MAX_BULK as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.io("reading a reply", e))?;
        if n == 0 {
            return Err(self.protocol("the server closed the connection"));
        }
        if !line.ends_with(b"\r\n") {
            return Err(self.protocol("a reply line does not end with CR LF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn reply(&mut self) -> Result<Reply> {
        let line = self.line()?;
        let (&kind, rest) = line
            .split_first()
            .ok_or_else(|| self.protocol("an empty reply line"))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        let number = |this: &Self| {
            text.parse::<i64>()
                .map_err(|_| this.protocol(format!("{text:?} is not a number")))
        };
        Ok(match kind {
            b'+' => Reply::Simple(text),
            b'-' => Reply::Error(text),
            b':' => Reply::Integer(number(self)?),
            b'$' => {
                let len = number(self)?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_BULK {
                    return Err(self.protocol(format!("a {len}-byte reply is too large")));
                }
                let mut data = vec![0; len + 2];
                self.conn
                    .read_exact(&mut data)
                    .map_err(|e| self.io("reading a reply", e))?;
                if !data.ends_with(b"\r\n") {
                    return Err(self.protocol("a bulk reply does not end with CR LF"));
                }
                data.truncate(len);
                Reply::Bulk(Some(data))
            }
            b'*' => {
                let len = number(self)?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(self.reply()?);
                }
                Reply::Array(Some(items))
            }
            other => {
                return Err(self.protocol(format!("unexpected reply type {:?}", char::from(other))))
            }
        })
    }

    /// `INFO section…` as a map of its `key:value` lines.
    pub fn info(&mut self, sections: &[&str]) -> Result<Info> {
        let mut args = vec!["INFO"];
        args.extend_from_slice(sections);
        let reply = self.command(&args)?;
        let text = reply
            .text()
            .ok_or_else(|| self.protocol("INFO did not answer with text"))?;
        Ok(Info::parse(&text))
    }

    /// `CONFIG GET name`: the value, `None` when the server has no such setting.
    pub fn config_get(&mut self, name: &str) -> Result<Option<String>> {
        match self.command(&["CONFIG", "GET", name])? {
            Reply::Array(Some(items)) => Ok(items.get(1).and_then(Reply::text)),
            _ => Err(self.protocol("CONFIG GET did not answer with a list")),
        }
    }

    pub fn config_set(&mut self, name: &str, value: &str) -> Result<()> {
        self.command(&["CONFIG", "SET", name, value]).map(|_| ())
    }
}

/// INFO's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info(pub BTreeMap<String, String>);

impl Info {
    pub fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The `dbN:keys=…,expires=…` lines of the keyspace section.
    pub fn keyspace(&self) -> KeyCounts {
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("db")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(db, value)| {
                let field = |name: &str| {
                    value
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == name)
                        .and_then(|(_, v)| v.parse::<u64>().ok())
                };
                Some((
                    db.clone(),
                    DbKeys {
                        keys: field("keys")?,
                        expires: field("expires").unwrap_or(0),
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_gives_fields_and_the_keyspace() {
        let info = Info::parse(
            "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n# Keyspace\r\n\
             db0:keys=12,expires=2,avg_ttl=1000\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n",
        );
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("role"), Some("master"));
        let ks = info.keyspace();
        assert_eq!(ks.len(), 2);
        assert_eq!(
            ks["db0"],
            DbKeys {
                keys: 12,
                expires: 2
            }
        );
        assert_eq!(
            ks["db3"],
            DbKeys {
                keys: 1,
                expires: 0
            }
        );
    }
}
