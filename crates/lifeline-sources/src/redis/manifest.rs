//! Redis 7's AOF manifest (`appendonly.aof.manifest`): one line per file,
//! `file NAME seq N type b|h|i`, names quoted as `sdscatrepr` writes them when they need it.

/// The files a manifest lists, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Manifest {
    /// The base file (an RDB or an AOF), written by the last rewrite.
    pub base: Option<String>,
    /// Incremental files in order; the server appends to the last.
    pub incr: Vec<String>,
}

pub(super) fn parse(text: &str) -> Result<Manifest, String> {
    let mut manifest = Manifest::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            return Err(format!("line {} is empty", n + 1));
        }
        let words =
            split_args(line).ok_or_else(|| format!("line {} has unbalanced quotes", n + 1))?;
        if words.len() < 6 || words.len() % 2 != 0 {
            return Err(format!("line {} is not `file NAME seq N type T`", n + 1));
        }
        let field = |key: &str| {
            words
                .chunks(2)
                .find(|kv| kv[0].eq_ignore_ascii_case(key))
                .map(|kv| kv[1].clone())
        };
        let (Some(name), Some(kind)) = (field("file"), field("type")) else {
            return Err(format!("line {} lacks the file name or type", n + 1));
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!(
                "line {} names {name:?}, not a plain file name",
                n + 1
            ));
        }
        match kind.as_str() {
            "b" => manifest.base = Some(name),
            "i" => manifest.incr.push(name),
            // History files are left from before a rewrite: the server deletes them, never loads them.
            "h" => {}
            other => return Err(format!("line {} has file type {other:?}", n + 1)),
        }
    }
    if manifest.base.is_none() && manifest.incr.is_empty() {
        return Err("it lists no base or incremental file".into());
    }
    Ok(manifest)
}

/// Words of a line as `sdssplitargs` reads them: plain, or in double quotes with C escapes
/// (`\xHH`, `\n`, `\"`…), or in single quotes.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Some(words);
        };
        let mut word = Vec::<u8>::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                let c = chars.next()?;
                if c == first {
                    break;
                }
                if c == '\\' && first == '"' {
                    let e = chars.next()?;
                    match e {
                        'x' => {
                            let hex: String = [chars.next()?, chars.next()?].iter().collect();
                            word.push(u8::from_str_radix(&hex, 16).ok()?);
                        }
                        'n' => word.push(b'\n'),
                        'r' => word.push(b'\r'),
                        't' => word.push(b'\t'),
                        'b' => word.push(8),
                        'a' => word.push(7),
                        other => word.extend_from_slice(other.to_string().as_bytes()),
                    }
                } else if c == '\\' && chars.peek() == Some(&'\'') {
                    chars.next();
                    word.push(b'\'');
                } else {
                    word.extend_from_slice(c.to_string().as_bytes());
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.extend_from_slice(c.to_string().as_bytes());
                chars.next();
            }
        }
        words.push(String::from_utf8(word).ok()?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_gives_its_base_and_incremental_files_in_order() {
        let m = parse(
            "file appendonly.aof.2.base.rdb seq 2 type b\n\
             file appendonly.aof.1.incr.aof seq 1 type h\n\
             file appendonly.aof.3.incr.aof seq 3 type i\n\
             file \"my aof.4.incr.aof\" seq 4 type i\n",
        )
        .expect("parses");
        assert_eq!(m.base.as_deref(), Some("appendonly.aof.2.base.rdb"));
        assert_eq!(m.incr, ["appendonly.aof.3.incr.aof", "my aof.4.incr.aof"]);
    }

    #[test]
    fn malformed_manifests_are_refused() {
        for text in [
            "",
            "file a seq 1\n",
            "file ../etc/passwd seq 1 type b\n",
            "file \"open seq 1 type b\n",
            "file a seq 1 type z\n",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        assert_eq!(
            split_args(r#"file "a\x41\"b" x"#).expect("splits"),
            ["file", "aA\"b", "x"]
        );
    }
}
