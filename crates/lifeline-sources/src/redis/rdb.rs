//! A reader of the RDB format that steps over every value without building it, to count each
//! database's keys (and those with a time to live) as they are in the RDB: the point in time the
//! backup holds, whatever was written to the server meanwhile. It reads Redis 2.6 to 7.4 RDBs
//! (versions up to 12), module values included; a value it cannot step over is reported as
//! [`ScanError::Unsupported`] so the caller can count keys another way.

use std::collections::BTreeMap;
use std::io::Read;

use super::compare::KeyCounts;

/// Redis's RDB checksum, CRC-64 with the Jones polynomial (`crc64.c`).
pub static CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// The newest RDB version this reader knows (Redis 7.4).
pub const KNOWN_VERSION: u32 = 12;

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    pub version: u32,
    /// Keys counted, per database.
    pub counts: KeyCounts,
    /// The RESIZEDB hints the server wrote, per database (sizes of its tables when it forked).
    pub hints: KeyCounts,
    /// AUX fields with short text values (`redis-ver`, `ctime`, `used-mem`, …).
    pub aux: BTreeMap<String, String>,
    /// Bytes up to and including the EOF opcode; the 8-byte checksum follows.
    pub length: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading the RDB: {0}")]
    Io(#[from] std::io::Error),
    #[error("at byte {offset}: {detail}")]
    Malformed { offset: u64, detail: String },
    #[error("at byte {offset}: {detail}")]
    Unsupported { offset: u64, detail: String },
}

const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

/// AUX values longer than this are stepped over, not kept.
const AUX_LIMIT: u64 = 256;

/// Read an RDB from its header to its EOF opcode, counting keys per database. Reads nothing past
/// the EOF opcode (the checksum is the caller's).
pub fn scan(input: impl Read) -> Result<Scanned, ScanError> {
    let mut src = Src { r: input, pos: 0 };
    let mut header = [0u8; 9];
    src.exact(&mut header)?;
    if &header[..5] != b"REDIS" {
        return Err(src.malformed("it does not start with REDIS"));
    }
    let version = std::str::from_utf8(&header[5..])
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| src.malformed("its version is not four digits"))?;
    let mut scanned = Scanned {
        version,
        ..Scanned::default()
    };
    let mut db = 0u64;
    let mut has_expire = false;
    loop {
        let op = src.byte()?;
        match op {
            OP_EOF => break,
            OP_SELECTDB => db = src.len()?,
            OP_RESIZEDB => {
                let keys = src.len()?;
                let expires = src.len()?;
                let hint = scanned.hints.entry(format!("db{db}")).or_default();
                hint.keys += keys;
                hint.expires += expires;
            }
            OP_EXPIRETIME_MS => {
                src.skip(8)?;
                has_expire = true;
            }
            OP_EXPIRETIME => {
                src.skip(4)?;
                has_expire = true;
            }
            OP_FREQ => src.skip(1)?,
            OP_IDLE => {
                src.len()?;
            }
            OP_AUX => {
                let key = src.text(AUX_LIMIT)?;
                let value = src.text(AUX_LIMIT)?;
                if let (Some(k), Some(v)) = (key, value) {
                    scanned.aux.insert(k, v);
                }
            }
            OP_MODULE_AUX => {
                src.len()?; // module id
                let when_opcode = src.len()?;
                if when_opcode != 2 {
                    return Err(src.malformed(format!(
                        "module AUX data with `when` opcode {when_opcode}, not 2"
                    )));
                }
                src.len()?; // when
                src.module_value()?;
            }
            OP_FUNCTION2 => src.skip_string()?,
            OP_FUNCTION_PRE_GA => {
                return Err(
                    src.unsupported("functions in the format of Redis 7.0's release candidates")
                )
            }
            OP_SLOT_INFO => {
                for _ in 0..3 {
                    src.len()?;
                }
            }
            value_type => {
                src.skip_string()?; // the key
                src.skip_value(value_type)?;
                let counts = scanned.counts.entry(format!("db{db}")).or_default();
                counts.keys += 1;
                if has_expire {
                    counts.expires += 1;
                }
                has_expire = false;
            }
        }
    }
    scanned.length = src.pos;
    Ok(scanned)
}

/// A string's header: its length, or one of the special encodings.
enum Str {
    Raw(u64),
    Int(u64),
    Lzf,
}

struct Src<R> {
    r: R,
    pos: u64,
}

impl<R: Read> Src<R> {
    fn malformed(&self, detail: impl Into<String>) -> ScanError {
        ScanError::Malformed {
            offset: self.pos,
            detail: detail.into(),
        }
    }

    fn unsupported(&self, detail: impl Into<String>) -> ScanError {
        ScanError::Unsupported {
            offset: self.pos,
            detail: detail.into(),
        }
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), ScanError> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, ScanError> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn skip(&mut self, n: u64) -> Result<(), ScanError> {
        let skipped = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        self.pos += skipped;
        if skipped != n {
            return Err(ScanError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// A length or a string header (`rdbLoadLenByRef`).
    fn header(&mut self) -> Result<(u64, bool), ScanError> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => (u64::from(first & 0x3f), false),
            1 => (
                u64::from(first & 0x3f) << 8 | u64::from(self.byte()?),
                false,
            ),
            3 => (u64::from(first & 0x3f), true),
            _ => match first {
                0x80 => {
                    let mut b = [0u8; 4];
                    self.exact(&mut b)?;
                    (u64::from(u32::from_be_bytes(b)), false)
                }
                0x81 => {
                    let mut b = [0u8; 8];
                    self.exact(&mut b)?;
                    (u64::from_be_bytes(b), false)
                }
                other => return Err(self.malformed(format!("length byte {other:#04x}"))),
            },
        })
    }

    fn len(&mut self) -> Result<u64, ScanError> {
        match self.header()? {
            (n, false) => Ok(n),
            (_, true) => Err(self.malformed("an encoded string where a length belongs")),
        }
    }

    fn string_header(&mut self) -> Result<Str, ScanError> {
        Ok(match self.header()? {
            (n, false) => Str::Raw(n),
            (0, true) => Str::Int(1),
            (1, true) => Str::Int(2),
            (2, true) => Str::Int(4),
            (3, true) => Str::Lzf,
            (other, true) => return Err(self.malformed(format!("string encoding {other}"))),
        })
    }

    fn skip_string(&mut self) -> Result<(), ScanError> {
        match self.string_header()? {
            Str::Raw(n) | Str::Int(n) => self.skip(n),
            Str::Lzf => {
                let compressed = self.len()?;
                self.len()?; // uncompressed length
                self.skip(compressed)
            }
        }
    }

    /// A short string as text; `None` when it is longer than `limit` or compressed (stepped over).
    fn text(&mut self, limit: u64) -> Result<Option<String>, ScanError> {
        match self.string_header()? {
            Str::Raw(n) if n <= limit => {
                let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
                self.exact(&mut buf)?;
                Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            Str::Raw(n) => self.skip(n).map(|_| None),
            Str::Int(n) => {
                let mut buf = [0u8; 4];
                let width = usize::try_from(n).unwrap_or(4).min(4);
                self.exact(&mut buf[..width])?;
                let value = match width {
                    1 => i64::from(buf[0] as i8),
                    2 => i64::from(i16::from_le_bytes([buf[0], buf[1]])),
                    _ => i64::from(i32::from_le_bytes(buf)),
                };
                Ok(Some(value.to_string()))
            }
            Str::Lzf => {
                let compressed = self.len()?;
                self.len()?;
                self.skip(compressed).map(|_| None)
            }
        }
    }

    /// A double as text (sorted sets before RDB 8): a length byte, or 253–255 for NaN and ±inf.
    fn skip_text_double(&mut self) -> Result<(), ScanError> {
        match self.byte()? {
            253..=255 => Ok(()),
            n => self.skip(u64::from(n)),
        }
    }

    /// A module value in the self-describing format of RDB type 7 and module AUX data.
    fn module_value(&mut self) -> Result<(), ScanError> {
        loop {
            match self.len()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.len()?;
                }
                3 => self.skip(4)?,
                4 => self.skip(8)?,
                5 => self.skip_string()?,
                other => return Err(self.malformed(format!("module value opcode {other}"))),
            }
        }
    }

    fn repeat(
        &mut self,
        mut each: impl FnMut(&mut Self) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        let n = self.len()?;
        for _ in 0..n {
            each(self)?;
        }
        Ok(())
    }

    /// Step over one value of `value_type` (`rdbLoadObject`).
    fn skip_value(&mut self, value_type: u8) -> Result<(), ScanError> {
        match value_type {
            // string; and the encodings stored as one blob (ziplists, listpacks, intsets, zipmaps)
            0 | 9..=13 | 16 | 17 | 20 | 23 => self.skip_string(),
            // hash with field TTLs as one listpack, after its minimum expire time
            25 => {
                self.skip(8)?;
                self.skip_string()
            }
            // list, set; quicklist of ziplists
            1 | 2 | 14 => self.repeat(|s| s.skip_string()),
            // sorted set, scores as text
            3 => self.repeat(|s| {
                s.skip_string()?;
                s.skip_text_double()
            }),
            4 => self.repeat(|s| {
                s.skip_string()?;
                s.skip_string()
            }),
            // sorted set, scores as binary doubles
            5 => self.repeat(|s| {
                s.skip_string()?;
                s.skip(8)
            }),
            6 => Err(self.unsupported(
                "a module value in the format of Redis 4.0's release candidates (RDB type 6)",
            )),
            7 => {
                self.len()?; // module id
                self.module_value()
            }
            // quicklist of listpacks, each with its container kind
            18 => self.repeat(|s| {
                s.len()?;
                s.skip_string()
            }),
            15 | 19 | 21 => self.skip_stream(value_type),
            // hash with field TTLs, field by field (24 after its minimum expire time)
            22 | 24 => {
                if value_type == 24 {
                    self.skip(8)?;
                }
                self.repeat(|s| {
                    s.len()?; // the field's TTL
                    s.skip_string()?;
                    s.skip_string()
                })
            }
            other => Err(self.unsupported(format!("value type {other}, newer than this reader"))),
        }
    }

    fn skip_stream(&mut self, value_type: u8) -> Result<(), ScanError> {
        // Listpacks, each after its master ID.
        self.repeat(|s| {
            s.skip_string()?;
            s.skip_string()
        })?;
        // Length, last ID; from type 19 the first ID, the max deleted ID and entries added.
        let ids = if value_type >= 19 { 8 } else { 3 };
        for _ in 0..ids {
            self.len()?;
        }
        // Consumer groups.
        self.repeat(|s| {
            s.skip_string()?;
            s.len()?;
            s.len()?;
            if value_type >= 19 {
                s.len()?; // entries read
            }
            // The group's pending entries: ID, delivery time, delivery count.
            s.repeat(|s| {
                s.skip(16 + 8)?;
                s.len().map(|_| ())
            })?;
            // Consumers: name, seen time (and active time from type 21), their pending IDs.
            s.repeat(|s| {
                s.skip_string()?;
                s.skip(if value_type >= 21 { 16 } else { 8 })?;
                s.repeat(|s| s.skip(16))
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes RDB encodings, for building test files.
    #[derive(Default)]
    pub(crate) struct Rdb(pub Vec<u8>);

    impl Rdb {
        pub fn new(version: u32) -> Self {
            Rdb(format!("REDIS{version:04}").into_bytes())
        }
        pub fn op(&mut self, b: u8) -> &mut Self {
            self.0.push(b);
            self
        }
        pub fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        pub fn len(&mut self, n: u64) -> &mut Self {
            if n < 64 {
                self.0.push(n as u8);
            } else if n < 16384 {
                self.0.push(0x40 | (n >> 8) as u8);
                self.0.push(n as u8);
            } else if n <= u64::from(u32::MAX) {
                self.0.push(0x80);
                self.0.extend_from_slice(&(n as u32).to_be_bytes());
            } else {
                self.0.push(0x81);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
            self
        }
        pub fn str(&mut self, s: &[u8]) -> &mut Self {
            self.len(s.len() as u64).raw(s)
        }
        /// The checksum Redis appends after the EOF opcode.
        pub fn finish(&mut self) -> Vec<u8> {
            self.op(OP_EOF);
            let crc = CRC.checksum(&self.0);
            self.0.extend_from_slice(&crc.to_le_bytes());
            self.0.clone()
        }
    }

    #[test]
    fn the_checksum_is_redis_crc64() {
        // The check value of Redis's crc64.c test.
        assert_eq!(CRC.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    /// One key of every value type, each encoding of lengths and strings, and every opcode.
    pub(crate) fn every_type() -> Vec<u8> {
        let mut r = Rdb::new(11);
        r.op(OP_AUX).str(b"redis-ver").str(b"7.0.15");
        r.op(OP_AUX).str(b"redis-bits").raw(&[0xC0, 64]); // an int8-encoded value
        r.op(OP_AUX)
            .str(b"ctime")
            .raw(&[0xC2])
            .raw(&1_700_000_000i32.to_le_bytes());
        r.op(OP_MODULE_AUX).len(12345).len(2).len(1);
        r.len(2).len(7).len(5).str(b"aux").len(0); // a UINT and a string, then EOF
        r.op(OP_FUNCTION2)
            .str(b"#!lua name=lib\nredis.register_function('f', function() return 1 end)");
        r.op(OP_SELECTDB).len(0).op(OP_RESIZEDB).len(15).len(2);
        // string, int-encoded value, with an expire in ms
        r.op(OP_EXPIRETIME_MS)
            .raw(&1_900_000_000_000u64.to_le_bytes());
        r.op(0)
            .str(b"s:int")
            .raw(&[0xC1])
            .raw(&1234i16.to_le_bytes());
        // string, LZF-compressed value, with an old-style expire in seconds and LRU/LFU hints
        r.op(OP_EXPIRETIME).raw(&2_000_000_000u32.to_le_bytes());
        r.op(OP_IDLE).len(100).op(OP_FREQ).raw(&[5]);
        r.op(0)
            .str(b"s:lzf")
            .raw(&[0xC3])
            .len(4)
            .len(40)
            .raw(b"\x01ab\xe0");
        // strings with 14-, 32- and 64-bit lengths
        r.op(0).str(b"s:14").str(&[b'x'; 300]);
        r.op(0)
            .str(b"s:32")
            .raw(&[0x80])
            .raw(&5u32.to_be_bytes())
            .raw(b"hello");
        r.op(0)
            .str(b"s:64")
            .raw(&[0x81])
            .raw(&3u64.to_be_bytes())
            .raw(b"abc");
        // list, set, hash (plain encodings)
        r.op(1).str(b"list").len(2).str(b"a").str(b"b");
        r.op(2).str(b"set").len(1).str(b"m");
        r.op(4).str(b"hash").len(1).str(b"f").str(b"v");
        // sorted sets: scores as text (with +inf) and as binary doubles
        r.op(3)
            .str(b"zset1")
            .len(2)
            .str(b"a")
            .raw(&[3])
            .raw(b"1.5")
            .str(b"b")
            .raw(&[254]);
        r.op(5)
            .str(b"zset2")
            .len(1)
            .str(b"a")
            .raw(&2.5f64.to_le_bytes());
        // blob encodings
        for t in [9u8, 10, 11, 12, 13, 16, 17, 20, 23] {
            r.op(t)
                .str(format!("blob{t}").as_bytes())
                .str(b"\x00\x01\x02listpack");
        }
        // quicklists
        r.op(14).str(b"ql1").len(2).str(b"zl1").str(b"zl2");
        r.op(18)
            .str(b"ql2")
            .len(2)
            .len(2)
            .str(b"lp")
            .len(1)
            .str(b"plain");
        // hashes with field TTLs (Redis 7.4)
        r.op(24).str(b"hfe").raw(&7u64.to_le_bytes()).len(2);
        r.len(0).str(b"f1").str(b"v1").len(5).str(b"f2").str(b"v2");
        r.op(25)
            .str(b"hfe-lp")
            .raw(&7u64.to_le_bytes())
            .str(b"listpack");
        // a module value: a double, a float, a signed int, then EOF
        r.op(7)
            .str(b"module")
            .len(999)
            .len(4)
            .raw(&1.0f64.to_le_bytes());
        r.len(3).raw(&1.0f32.to_le_bytes()).len(1).len(42).len(0);
        // streams of each version, with a consumer group, its PEL and a consumer
        for t in [15u8, 19, 21] {
            r.op(t).str(format!("stream{t}").as_bytes());
            r.len(1).str(&[0u8; 16]).str(b"listpack");
            r.len(3).len(1_700_000_000_000).len(0);
            if t >= 19 {
                r.len(1).len(0).len(0).len(0).len(3);
            }
            r.len(1).str(b"group").len(1).len(0);
            if t >= 19 {
                r.len(3);
            }
            r.len(1).raw(&[1u8; 16]).raw(&[2u8; 8]).len(1);
            r.len(1).str(b"consumer").raw(&[3u8; 8]);
            if t >= 21 {
                r.raw(&[4u8; 8]);
            }
            r.len(1).raw(&[1u8; 16]);
        }
        // a second database, and a cluster slot hint
        r.op(OP_SELECTDB)
            .len(3)
            .op(OP_SLOT_INFO)
            .len(1)
            .len(1)
            .len(0);
        r.op(0).str(b"other").str(b"db");
        r.finish()
    }

    #[test]
    fn every_value_type_is_stepped_over_and_counted() {
        let bytes = every_type();
        let scanned = scan(bytes.as_slice()).expect("scans");
        assert_eq!(scanned.version, 11);
        assert_eq!(scanned.counts.len(), 2);
        let db0 = scanned.counts["db0"];
        assert_eq!((db0.keys, db0.expires), (27, 2));
        assert_eq!(
            (scanned.counts["db3"].keys, scanned.counts["db3"].expires),
            (1, 0)
        );
        assert_eq!(scanned.hints["db0"].keys, 15);
        assert_eq!(scanned.aux["redis-ver"], "7.0.15");
        assert_eq!(scanned.aux["redis-bits"], "64");
        assert_eq!(scanned.aux["ctime"], "1700000000");
        // The checksum follows the EOF opcode.
        assert_eq!(scanned.length, bytes.len() as u64 - 8);
    }

    #[test]
    fn a_truncated_rdb_is_an_error() {
        let bytes = every_type();
        for cut in [5, 9, 100, bytes.len() / 2, bytes.len() - 9] {
            assert!(scan(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_value_it_cannot_step_over_is_unsupported_not_malformed() {
        let mut r = Rdb::new(9);
        r.op(OP_SELECTDB)
            .len(0)
            .op(6)
            .str(b"old-module")
            .raw(b"opaque");
        let err = scan(r.finish().as_slice()).expect_err("type 6");
        assert!(matches!(err, ScanError::Unsupported { .. }), "{err}");
        let mut r = Rdb::new(12);
        r.op(OP_SELECTDB).len(0).op(40).str(b"future").str(b"x");
        assert!(matches!(
            scan(r.finish().as_slice()),
            Err(ScanError::Unsupported { .. })
        ));
        assert!(matches!(
            scan(&b"RDB0001xx"[..]),
            Err(ScanError::Malformed { .. })
        ));
    }
}
