//! The environment part of a config capture: which variables the allow-list takes, which of them
//! look like secrets and what is left of their values, and the dotenv file they are stored as.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Names that are secrets whatever the plan adds: `*` is any run of characters, case is ignored.
pub const SECRET_NAMES: [&str; 4] = ["*_PASSWORD", "*_SECRET", "*_TOKEN", "*_KEY"];

/// What a secret's value (or a URL's password) is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The reason recorded for a URL whose password was replaced.
pub const URL_PASSWORD: &str = "password in a URL";

/// The variables an allow-list took from an environment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selected {
    /// Sorted by name, secrets already redacted.
    pub variables: Vec<(String, Vec<u8>)>,
    /// The variables that held a secret, with why (`name matches *_TOKEN`, [`URL_PASSWORD`]).
    pub secrets: BTreeMap<String, String>,
    /// Allow-list entries that took nothing, and variables that could not be kept.
    pub warnings: Vec<String>,
}

/// Take from `environment` the variables `allow` names (exact names, or prefixes ending in `*`),
/// and redact those whose name matches [`SECRET_NAMES`] or `redact`, or whose value holds a URL
/// with a password.
pub fn select(
    environment: impl IntoIterator<Item = (OsString, OsString)>,
    allow: &[String],
    redact: &[String],
) -> Selected {
    let mut matched = vec![false; allow.len()];
    let mut selected = Selected::default();
    let patterns: Vec<&str> = SECRET_NAMES
        .iter()
        .copied()
        .chain(redact.iter().map(String::as_str))
        .collect();
    for (name, value) in environment {
        let name = name.into_vec();
        let mut wanted = false;
        for (i, entry) in allow.iter().enumerate() {
            if allows(entry, &name) {
                matched[i] = true;
                wanted = true;
            }
        }
        if !wanted {
            continue;
        }
        let shown = String::from_utf8_lossy(&name).into_owned();
        let Some(name) = String::from_utf8(name).ok().filter(|n| is_name(n)) else {
            // `set -a; . FILE` could not set it: kept out rather than stored as a file that breaks.
            selected.warnings.push(format!(
                "variable {shown:?} was left out: its name is not a shell name (letters, digits and _)"
            ));
            continue;
        };
        let mut value = value.into_vec();
        if let Some(pattern) = patterns.iter().find(|p| glob_matches(p, &name)) {
            selected
                .secrets
                .insert(name.clone(), format!("name matches {pattern}"));
            value = REDACTED.as_bytes().to_vec();
        } else if let Some(redacted) = redact_url_passwords(&value) {
            selected.secrets.insert(name.clone(), URL_PASSWORD.into());
            value = redacted;
        }
        selected.variables.push((name, value));
    }
    selected.variables.sort();
    selected.variables.dedup_by(|a, b| a.0 == b.0);
    for (entry, hit) in allow.iter().zip(matched) {
        if !hit {
            selected
                .warnings
                .push(format!("env entry {entry:?} matched no variable"));
        }
    }
    selected
}

/// Whether allow-list `entry` takes the variable `name`: equal, or `PREFIX*` and starting so.
fn allows(entry: &str, name: &[u8]) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix.as_bytes()),
        None => name == entry.as_bytes(),
    }
}

/// A name `sh` can assign: a letter or `_`, then letters, digits and `_`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `pattern` (with `*` for any run of characters) matches all of `name`, ignoring ASCII case.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_uppercase();
    let name = name.to_ascii_uppercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = match parts.as_slice() {
        [only] => return *only == name,
        [first, .., last] => (*first, *last),
        [] => return false,
    };
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// `value` with the password of every `scheme://user:password@host` in it replaced by
/// [`REDACTED`] (user, host and the rest kept, so the restored value still says where it pointed);
/// `None` when it holds no such password.
pub fn redact_url_passwords(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut copied = 0;
    let mut search = 0;
    let mut changed = false;
    while let Some(found) = find(&value[search..], b"://") {
        let separator = search + found;
        let authority_start = separator + 3;
        search = authority_start;
        if !has_scheme(&value[..separator]) {
            continue;
        }
        // The authority ends where the path, query or fragment begins (or at white space, for
        // values that hold several URLs); the user information ends at its last `@`, since a
        // password with an unencoded `@` is still a password.
        let authority_end = value[authority_start..]
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#') || b.is_ascii_whitespace())
            .map_or(value.len(), |p| authority_start + p);
        let authority = &value[authority_start..authority_end];
        let Some(at) = authority.iter().rposition(|&b| b == b'@') else {
            continue;
        };
        let Some(colon) = authority[..at].iter().position(|&b| b == b':') else {
            continue;
        };
        if colon + 1 == at {
            // `user:@host`: an empty password hides nothing.
            continue;
        }
        out.extend_from_slice(&value[copied..authority_start + colon + 1]);
        out.extend_from_slice(REDACTED.as_bytes());
        copied = authority_start + at;
        search = copied;
        changed = true;
    }
    out.extend_from_slice(&value[copied..]);
    changed.then_some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `before` ends with a URL scheme (RFC 3986: a letter, then letters, digits, `+-.`).
fn has_scheme(before: &[u8]) -> bool {
    let run = before
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    run > 0 && before[before.len() - run].is_ascii_alphabetic()
}

/// The dotenv file of `variables`: one `NAME='value'` per line, sorted as given. Single quotes keep
/// every byte as it is for `sh` (`set -a; . ./environment.env`), newlines included; a quote in a
/// value is written `'\''`, as shells quote it.
pub fn encode(variables: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in variables {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        for &b in value {
            if b == b'\'' {
                out.extend_from_slice(b"'\\''");
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice(b"'\n");
    }
    out
}

/// A file [`encode`] wrote that does not read back, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Read back what [`encode`] wrote (blank lines and `#` comments are allowed, as a person editing
/// the file may add them).
pub fn parse(text: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ParseError> {
    let mut variables = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let fail = |line: usize, message: &str| ParseError {
        line,
        message: message.into(),
    };
    while i < text.len() {
        let end_of_line = text[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |p| i + p);
        let head = &text[i..end_of_line];
        if head.iter().all(u8::is_ascii_whitespace) || head.first() == Some(&b'#') {
            i = end_of_line + 1;
            line += 1;
            continue;
        }
        let Some(eq) = head.iter().position(|&b| b == b'=') else {
            return Err(fail(line, "expected NAME='value'"));
        };
        let name = std::str::from_utf8(&head[..eq])
            .ok()
            .filter(|n| is_name(n))
            .ok_or_else(|| fail(line, "the name is not a shell name"))?
            .to_string();
        let started = line;
        i += eq + 1;
        if text.get(i) != Some(&b'\'') {
            return Err(fail(line, "the value does not start with a single quote"));
        }
        i += 1;
        let mut value = Vec::new();
        loop {
            let Some(&b) = text.get(i) else {
                return Err(fail(started, "the value's quote is never closed"));
            };
            i += 1;
            match b {
                b'\'' if text[i..].starts_with(b"\\''") => {
                    value.push(b'\'');
                    i += 3;
                }
                b'\'' => break,
                b'\n' => {
                    value.push(b);
                    line += 1;
                }
                _ => value.push(b),
            }
        }
        match text.get(i) {
            None => {}
            Some(b'\n') => {
                i += 1;
                line += 1;
            }
            Some(_) => return Err(fail(line, "text follows the closing quote")),
        }
        variables.push((name, value));
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| (OsString::from(n), OsString::from(v)))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_prefixes_are_taken_and_secrets_redacted_with_why() {
        let selected = select(
            env(&[
                ("APP_MODE", "prod"),
                ("APP_DB_PASSWORD", "hunter2"),
                ("app_api_token", "t0k"),
                ("APP_SIGNING_KEY", "k"),
                ("APP_SESSION_SECRET", "s"),
                ("APP_LICENSE", "L-1"),
                (
                    "DATABASE_URL",
                    "postgres://app:pw@db:5432/app?sslmode=require",
                ),
                ("HOME", "/root"),
                ("OTHER", "x"),
            ]),
            &strings(&["APP_*", "app_*", "DATABASE_URL", "MISSING", "NOPE_*"]),
            &strings(&["*license*"]),
        );
        let names: Vec<&str> = selected.variables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "APP_DB_PASSWORD",
                "APP_LICENSE",
                "APP_MODE",
                "APP_SESSION_SECRET",
                "APP_SIGNING_KEY",
                "DATABASE_URL",
                "app_api_token"
            ]
        );
        let value = |n: &str| {
            let v = &selected
                .variables
                .iter()
                .find(|(m, _)| m == n)
                .expect("present")
                .1;
            String::from_utf8(v.clone()).expect("present")
        };
        assert_eq!(value("APP_MODE"), "prod");
        assert_eq!(value("APP_DB_PASSWORD"), REDACTED);
        assert_eq!(value("app_api_token"), REDACTED);
        assert_eq!(value("APP_LICENSE"), REDACTED);
        assert_eq!(
            value("DATABASE_URL"),
            "postgres://app:[REDACTED]@db:5432/app?sslmode=require"
        );
        let why: Vec<(&str, &str)> = selected
            .secrets
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                ("APP_DB_PASSWORD", "name matches *_PASSWORD"),
                ("APP_LICENSE", "name matches *license*"),
                ("APP_SESSION_SECRET", "name matches *_SECRET"),
                ("APP_SIGNING_KEY", "name matches *_KEY"),
                ("DATABASE_URL", "password in a URL"),
                ("app_api_token", "name matches *_TOKEN"),
            ]
        );
        assert_eq!(
            selected.warnings,
            [
                "env entry \"MISSING\" matched no variable",
                "env entry \"NOPE_*\" matched no variable"
            ]
        );
    }

    #[test]
    fn only_url_passwords_are_replaced() {
        let r = |v: &str| {
            redact_url_passwords(v.as_bytes()).map(|b| String::from_utf8(b).expect("present"))
        };
        assert_eq!(r("https://example.com/a:b@c"), None);
        assert_eq!(r("postgres://app@db/app"), None);
        assert_eq!(r("redis://:@cache:6379"), None);
        assert_eq!(r("not a url: user:pass@host"), None);
        assert_eq!(
            r("redis://:s3cr3t@cache:6379/0").as_deref(),
            Some("redis://:[REDACTED]@cache:6379/0")
        );
        assert_eq!(
            r("amqp://u:p@ss:w@rd@mq").as_deref(),
            Some("amqp://u:[REDACTED]@mq")
        );
        assert_eq!(
            r("redis://a:b@h1,redis://c:d@h2").as_deref(),
            Some("redis://a:[REDACTED]@h1,redis://c:[REDACTED]@h2")
        );
        assert_eq!(
            r("x https://u:p@h y git+ssh://g:q@host/repo").as_deref(),
            Some("x https://u:[REDACTED]@h y git+ssh://g:[REDACTED]@host/repo")
        );
    }

    #[test]
    fn globs_ignore_case_and_anchor_both_ends() {
        assert!(glob_matches("*_KEY", "aws_secret_access_key"));
        assert!(!glob_matches("*_KEY", "KEYRING_PATH"));
        assert!(!glob_matches("*_KEY", "KEY"));
        assert!(glob_matches("PGPASSWORD", "pgpassword"));
        assert!(glob_matches("*PASS*", "MYSQL_PASSWD"));
        assert!(glob_matches("A*B*C", "AxxBxxC"));
        assert!(!glob_matches("A*B*C", "AxxCxxB"));
        assert!(!glob_matches("AB*BA", "ABA"));
    }

    #[test]
    fn the_dotenv_file_reads_back_byte_for_byte() {
        let variables = vec![
            ("A".to_string(), b"plain".to_vec()),
            ("B".to_string(), b"it's \"quoted\" $HOME `x` \\n".to_vec()),
            ("C".to_string(), b"two\nlines\n".to_vec()),
            ("D".to_string(), Vec::new()),
            ("E".to_string(), b"''".to_vec()),
            ("F".to_string(), b"caf\xc3\xa9 \xff".to_vec()),
        ];
        let text = encode(&variables);
        assert!(text.starts_with(b"A='plain'\nB='it'\\''s"));
        assert_eq!(parse(&text).expect("present"), variables);
        let mut edited = b"# kept by hand\n\n".to_vec();
        edited.extend_from_slice(&text);
        assert_eq!(parse(&edited).expect("present"), variables);
        assert_eq!(parse(b"A=plain\n").expect_err("refused").line, 1);
        assert_eq!(parse(b"A='x'\nB='open\n").expect_err("refused").line, 2);
        assert_eq!(parse(b"A='x'\n1B='y'\n").expect_err("refused").line, 2);
        assert!(parse(b"A='x'y\n").is_err());
    }
}
