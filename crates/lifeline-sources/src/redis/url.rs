//! `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]` and `rediss://…` (TLS), as Redis clients write them.
//! User and password are percent-decoded; a database number is accepted and ignored (an RDB holds
//! every database).

use super::error::{Error, Result};

/// Redis's default port, for URLs that name none.
pub const DEFAULT_PORT: u16 = 6379;

/// Where a server is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The ACL user; `None` is the `default` user.
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Target {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let bad = |reason: &str| Error::Url {
            // The URL may hold a password: shown without it.
            url: redact(url),
            reason: reason.into(),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(bad("the scheme must be redis:// or rediss://"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let u = decode(u).ok_or_else(|| bad("the user is not valid percent-encoding"))?;
                let p = p
                    .map(|p| {
                        decode(p).ok_or_else(|| bad("the password is not valid percent-encoding"))
                    })
                    .transpose()?;
                (
                    Some(u).filter(|u| !u.is_empty()),
                    p.filter(|p| !p.is_empty()),
                )
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address lacks its closing ]"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("junk after the IPv6 address"))?,
                ),
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        Ok(Target {
            host,
            port,
            tls,
            user,
            password,
        })
    }

    /// `host:port` (IPv6 in brackets), for connecting and for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without the password: what a snapshot records as its path.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.user {
            Some(u) => format!("{scheme}://{}@{}", encode(u), self.address()),
            None => format!("{scheme}://{}", self.address()),
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((info, host)) => match info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_tls_user_and_password() {
        let t = Target::parse("redis://localhost").expect("parses");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("localhost", 6379, false));
        assert_eq!((t.user, t.password), (None, None));
        let t =
            Target::parse("rediss://backup:p%40ss%3Aword@redis.internal:6380/0").expect("parses");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("redis.internal", 6380, true)
        );
        assert_eq!(t.user.as_deref(), Some("backup"));
        assert_eq!(t.password.as_deref(), Some("p@ss:word"));
        assert_eq!(t.display_url(), "rediss://backup@redis.internal:6380");
        assert!(!format!("{t:?}").contains("p@ss"));
        // The password alone, as `requirepass` servers are addressed.
        let t = Target::parse("redis://:secret@10.0.0.1:7000").expect("parses");
        assert_eq!((t.user, t.password.as_deref()), (None, Some("secret")));
        let t = Target::parse("redis://[::1]:6390").expect("parses");
        assert_eq!((t.host.as_str(), t.port), ("::1", 6390));
        assert_eq!(t.address(), "[::1]:6390");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for url in [
            "http://x",
            "redis://",
            "redis://host:0",
            "redis://host:99999",
            "redis://u:p%zz@host",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
        let err = Target::parse("redis://u:hunter2@host:x").expect_err("bad port");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://u:***@host:x"), "{text}");
    }
}
