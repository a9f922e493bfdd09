//! Names from a snapshot, shown losslessly and accepted back. A name is raw bytes (format.md §8): it
//! need not be UTF-8 and may hold a newline. Text and JSON output show it as UTF-8 with `\xNN` for
//! each byte that is not printable UTF-8 and `\\` for a backslash, so every name prints on one line,
//! as a valid JSON string, and the printed form can be given back to `ls`, `dump` and `restore`.

use lifeline_repo::tree::Node;
use lifeline_repo::walk::lookup;
use lifeline_repo::{BlobReader, Id};

/// The printable form of `bytes`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let hex = |out: &mut String, b: u8| out.push_str(&format!("\\x{b:02x}"));
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            hex(&mut out, b);
        }
    }
    out
}

/// The bytes a printed form stands for, or `None` when it holds no escape (then it is the name
/// itself). A backslash that starts no escape stands for itself.
pub fn unescape(text: &[u8]) -> Option<Vec<u8>> {
    if !text.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'\\', [b'\\', tail @ ..]) => {
                out.push(b'\\');
                rest = tail;
            }
            (b'\\', [b'x', h, l, tail @ ..]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                let digits = [*h, *l];
                // Two ASCII hex digits always parse.
                let text = std::str::from_utf8(&digits).unwrap_or("00");
                out.push(u8::from_str_radix(text, 16).unwrap_or(0));
                rest = tail;
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    Some(out)
}

/// Look up a path given on the command line: its printed form first, then the bytes as typed (a
/// real name may hold a backslash). Returns the name found and its node.
pub fn lookup_arg(
    reader: &BlobReader<'_>,
    tree: Id,
    arg: &[u8],
) -> lifeline_repo::Result<Option<(Vec<u8>, Node)>> {
    if let Some(bytes) = unescape(arg) {
        if let Some(node) = lookup(reader, tree, &bytes)? {
            return Ok(Some((bytes, node)));
        }
    }
    Ok(lookup(reader, tree, arg)?.map(|node| (arg.to_vec(), node)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_its_printed_form() {
        let names: [&[u8]; 7] = [
            b"plain.txt",
            b"caf\xc3\xa9",
            b"latin1-\xe9t\xe9",
            b"new\nline",
            b"back\\slash",
            b"\\x41 looks escaped",
            b"\xff\xfe\x00",
        ];
        for name in names {
            let shown = escape(name);
            assert!(!shown.contains('\n'), "{shown}");
            let back = unescape(shown.as_bytes()).unwrap_or_else(|| shown.as_bytes().to_vec());
            assert_eq!(back, name, "{shown}");
        }
    }

    #[test]
    fn printable_utf8_is_shown_as_is() {
        assert_eq!(escape("café/日本".as_bytes()), "café/日本");
        assert_eq!(escape(b"latin1-\xe9"), "latin1-\\xe9");
        assert_eq!(unescape(b"plain"), None);
        assert_eq!(unescape(b"a\\qb").as_deref(), Some(b"a\\qb".as_slice()));
    }
}
