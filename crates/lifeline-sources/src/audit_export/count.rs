//! SHA-256 and record count of an export's bytes, taken as they stream past: at export time from
//! PostgreSQL's COPY output, at verification from the repository.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::Format;

/// Counts records and hashes bytes fed in any slicing.
pub struct Tally {
    format: Format,
    hash: Sha256,
    /// Newlines that end a record (outside CSV quotes).
    lines: u64,
    in_quotes: bool,
    /// The last byte seen, so a final record without a newline still counts.
    last: Option<u8>,
    bytes: u64,
}

/// What a [`Tally`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub sha256: String,
    /// Rows: records, less the CSV header.
    pub rows: u64,
    pub bytes: u64,
    /// The bytes end inside a quoted CSV field: the file was cut or altered.
    pub unterminated: bool,
}

impl Tally {
    pub fn new(format: Format) -> Self {
        Tally {
            format,
            hash: Sha256::new(),
            lines: 0,
            in_quotes: false,
            last: None,
            bytes: 0,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.hash.update(data);
        self.bytes += data.len() as u64;
        match self.format {
            // PostgreSQL quotes a CSV field holding a newline and doubles a quote inside one: each
            // quote toggles, so a doubled one leaves the state as it was.
            Format::Csv => {
                for &b in data {
                    if b == b'"' {
                        self.in_quotes = !self.in_quotes;
                    } else if b == b'\n' && !self.in_quotes {
                        self.lines += 1;
                    }
                }
            }
            // JSON escapes newlines inside strings: every newline ends a row.
            Format::Jsonl => {
                self.lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        if let Some(&b) = data.last() {
            self.last = Some(b);
        }
    }

    pub fn finish(self) -> Counted {
        let mut records = self.lines;
        if self.last.is_some_and(|b| b != b'\n') {
            records += 1;
        }
        let rows = match self.format {
            Format::Csv => records.saturating_sub(1),
            Format::Jsonl => records,
        };
        Counted {
            sha256: hex::encode(self.hash.finalize()),
            rows,
            bytes: self.bytes,
            unterminated: self.in_quotes,
        }
    }
}

/// A reader that tallies what passes through it.
pub struct Tallying<R> {
    inner: R,
    pub tally: Tally,
}

impl<R: Read> Tallying<R> {
    pub fn new(inner: R, format: Format) -> Self {
        Tallying {
            inner,
            tally: Tally::new(format),
        }
    }
}

impl<R: Read> Read for Tallying<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.feed(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(format: Format, pieces: &[&[u8]]) -> Counted {
        let mut t = Tally::new(format);
        for p in pieces {
            t.feed(p);
        }
        t.finish()
    }

    #[test]
    fn csv_records_with_quoted_newlines_and_quotes_count_once_in_any_slicing() {
        let csv: &[u8] = b"id,msg\n1,\"a\"\"b\nc\"\n2,plain\n";
        let whole = count(Format::Csv, &[csv]);
        assert_eq!(whole.rows, 2);
        assert!(!whole.unterminated);
        for cut in 0..csv.len() {
            let (a, b) = csv.split_at(cut);
            assert_eq!(count(Format::Csv, &[a, b]), whole, "cut at {cut}");
        }
        assert_eq!(count(Format::Csv, &[b"id,msg\n"]).rows, 0);
        assert_eq!(count(Format::Csv, &[b"id\n1\n2"]).rows, 2);
        assert!(count(Format::Csv, &[b"id,msg\n1,\"open"]).unterminated);
    }

    #[test]
    fn json_lines_count_lines() {
        assert_eq!(count(Format::Jsonl, &[b"{\"a\":\"x\\ny\"}\n{}\n"]).rows, 2);
        assert_eq!(count(Format::Jsonl, &[b""]).rows, 0);
        assert_eq!(count(Format::Jsonl, &[b"{}"]).rows, 1);
    }

    #[test]
    fn the_hash_is_sha256_of_the_bytes() {
        // `printf 'abc' | sha256sum`
        assert_eq!(
            count(Format::Jsonl, &[b"a", b"bc"]).sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
