//! WAL archiving: each file PostgreSQL hands to `archive_command` (segments, `.partial`, `.backup`
//! and `.history` files) becomes one named object `wal/<system id>/<timeline>/<file name>`, so
//! pushing and fetching touch one object and never the index.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use lifeline_repo::named::Stored;
use lifeline_repo::Repository;

use super::error::{Error, Result};

/// zstd level for WAL: level 1 keeps a 16 MiB segment well inside `archive_command`'s time budget
/// and already removes most of a segment's slack (WAL is full of zero-padded pages).
pub(crate) const WAL_COMPRESSION: i32 = 1;

pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// A position in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `16/B374D848` as PostgreSQL prints it.
    pub fn parse(text: &str) -> Result<Lsn> {
        let (hi, lo) = text.trim().split_once('/').ok_or_else(|| {
            Error::Invalid(format!(
                "{text:?} is not an LSN (expected X/Y, e.g. 0/16B3748)"
            ))
        })?;
        let hi = u32::from_str_radix(hi, 16);
        let lo = u32::from_str_radix(lo, 16);
        match (hi, lo) {
            (Ok(hi), Ok(lo)) => Ok(Lsn((u64::from(hi) << 32) | u64::from(lo))),
            _ => Err(Error::Invalid(format!(
                "{text:?} is not an LSN (expected two hex numbers X/Y, e.g. 0/16B3748)"
            ))),
        }
    }

    /// The segment number holding this position.
    pub fn segment(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What a file handed to `archive_command` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// A full segment, numbered from the start of the WAL (log × segments-per-log + seg).
    Segment { log: u32, seg: u32 },
    /// A segment cut short at a timeline switch.
    Partial { log: u32, seg: u32 },
    /// A backup history file (`….00000028.backup`).
    Backup,
    /// A timeline history file (`00000002.history`).
    History,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalName {
    pub name: String,
    pub timeline: u32,
    pub kind: WalKind,
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalName {
    /// Parse a WAL file name; anything else is refused, so a typo can never become an object key.
    pub fn parse(name: &str) -> Result<WalName> {
        let invalid = || {
            Error::Invalid(format!(
                "{name:?} is not a WAL file name (a segment such as 000000010000000000000003, or a .partial, .backup or .history file)"
            ))
        };
        let (stem, suffix) = match name.split_once('.') {
            Some((stem, suffix)) => (stem, Some(suffix)),
            None => (name, None),
        };
        let timeline = hex8(stem.get(..8).ok_or_else(invalid)?).ok_or_else(invalid)?;
        let segment = || -> Result<(u32, u32)> {
            if stem.len() != 24 {
                return Err(invalid());
            }
            // `get`, not indexing: 24 bytes of text need not split at 8 and 16 into whole characters.
            Ok((
                stem.get(8..16).and_then(hex8).ok_or_else(invalid)?,
                stem.get(16..24).and_then(hex8).ok_or_else(invalid)?,
            ))
        };
        let kind = match suffix {
            None => {
                let (log, seg) = segment()?;
                WalKind::Segment { log, seg }
            }
            Some("partial") => {
                let (log, seg) = segment()?;
                WalKind::Partial { log, seg }
            }
            Some("history") if stem.len() == 8 => WalKind::History,
            Some(rest) => match rest.split_once('.') {
                Some((offset, "backup")) if hex8(offset).is_some() => {
                    segment()?;
                    WalKind::Backup
                }
                _ => return Err(invalid()),
            },
        };
        if timeline == 0 {
            return Err(invalid());
        }
        Ok(WalName {
            name: name.to_string(),
            timeline,
            kind,
        })
    }

    /// The segment number of a segment or partial segment.
    pub fn segment_number(&self, segment_size: u64) -> Option<u64> {
        match self.kind {
            WalKind::Segment { log, seg } | WalKind::Partial { log, seg } => {
                Some(u64::from(log) * segments_per_log(segment_size) + u64::from(seg))
            }
            _ => None,
        }
    }

    /// The segment a file belongs to: its own for segments and partial segments, the one a backup
    /// started in for a backup history file; none for a timeline history file.
    pub fn segment_of(&self, segment_size: u64) -> Option<u64> {
        match self.kind {
            WalKind::Backup => {
                let log = hex8(self.name.get(8..16)?)?;
                let seg = hex8(self.name.get(16..24)?)?;
                Some(u64::from(log) * segments_per_log(segment_size) + u64::from(seg))
            }
            WalKind::History => None,
            _ => self.segment_number(segment_size),
        }
    }
}

fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size.max(1)
}

/// The file name of segment `segno` on `timeline`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per_log = segments_per_log(segment_size);
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log,
        segno % per_log
    )
}

/// The object key of a WAL file of cluster `system_id`.
pub fn object_key(system_id: u64, name: &WalName) -> String {
    format!("wal/{system_id}/{:08X}/{}", name.timeline, name.name)
}

/// The prefix under which all WAL of cluster `system_id` lives.
pub fn archive_prefix(system_id: u64) -> String {
    format!("wal/{system_id}/")
}

/// The database system identifier from `PGDATA/global/pg_control`, whose first field it is. It
/// keeps the WAL of two clusters apart even when they share a repository.
pub fn system_identifier(pgdata: &Path) -> Result<u64> {
    let path = pgdata.join("global/pg_control");
    let bytes = fs::read(&path).map_err(|e| {
        Error::Invalid(format!(
            "cannot read {} ({e}): run from the data directory (PostgreSQL does for archive_command and restore_command) or pass --pgdata",
            path.display()
        ))
    })?;
    let first = bytes.first_chunk::<8>().ok_or_else(|| {
        Error::Invalid(format!("{} is too short to be pg_control", path.display()))
    })?;
    Ok(u64::from_ne_bytes(*first))
}

/// Archive one WAL file (`archive_command`'s `%p`, relative to `pgdata` or absolute).
pub fn push(repo: &Repository, pgdata: &Path, path: &Path) -> Result<(String, Stored)> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Invalid(format!("{} names no WAL file", path.display())))?;
    let name = WalName::parse(file_name)?;
    let full = pgdata.join(path);
    let size = fs::metadata(&full).map_err(|e| Error::io(&full, e))?.len();
    if matches!(name.kind, WalKind::Segment { .. })
        && !(size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size))
    {
        return Err(Error::Invalid(format!(
            "{} is {size} bytes, not a whole WAL segment (a power of two from 1 MiB to 1 GiB); refusing to archive it",
            full.display(),
        )));
    }
    let key = object_key(system_identifier(pgdata)?, &name);
    let stored = repo.put_named_file(&key, &full, WAL_COMPRESSION)?;
    Ok((key, stored))
}

/// Outcome of `fetch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Written(u64),
    NotArchived,
}

/// Restore one WAL file (`restore_command`'s `%f` and `%p`). A file that was never archived is
/// `NotArchived`; a damaged one is an error.
pub fn fetch(repo: &Repository, pgdata: &Path, file_name: &str, dest: &Path) -> Result<Fetched> {
    let name = WalName::parse(file_name)?;
    let key = object_key(system_identifier(pgdata)?, &name);
    let object = match repo.get_named(&key) {
        Ok(object) => object,
        Err(lifeline_repo::Error::ObjectMissing { .. }) => return Ok(Fetched::NotArchived),
        Err(e) => return Err(e.into()),
    };
    let dest = pgdata.join(dest);
    // PostgreSQL may read `%p` as soon as the command exits, never while it is half written.
    let tmp = tmp_path(&dest);
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&object.data))
        .and_then(|()| fs::rename(&tmp, &dest));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&dest, e));
    }
    Ok(Fetched::Written(object.data.len() as u64))
}

fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".lifeline-tmp");
    dest.with_file_name(name)
}

/// One line of a timeline history file: `timeline` branched off its parent at `switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    pub parent: u32,
    pub switch: Lsn,
}

/// Parse a `.history` file: each line is `parentTLI <tab> switchpoint <tab> reason`.
pub fn parse_history(text: &str) -> Result<Vec<Branch>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let parent = fields
                .next()
                .and_then(|f| f.parse::<u32>().ok())
                .ok_or_else(|| Error::Invalid(format!("timeline history line {line:?}")))?;
            let switch = Lsn::parse(fields.next().unwrap_or_default())?;
            Ok(Branch { parent, switch })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_round_trip() {
        let seg = WalName::parse("0000000200000001000000FE").expect("segment");
        assert_eq!(seg.timeline, 2);
        assert_eq!(seg.segment_number(DEFAULT_SEGMENT_SIZE), Some(256 + 254));
        assert_eq!(
            segment_name(2, 256 + 254, DEFAULT_SEGMENT_SIZE),
            "0000000200000001000000FE"
        );
        assert_eq!(
            WalName::parse("00000003.history").expect("h").kind,
            WalKind::History
        );
        assert_eq!(
            WalName::parse("000000010000000000000002.00000028.backup")
                .expect("b")
                .kind,
            WalKind::Backup
        );
        assert!(matches!(
            WalName::parse("000000010000000000000002.partial")
                .expect("p")
                .kind,
            WalKind::Partial { .. }
        ));
        for bad in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000000",
            "../x",
            "00000000.history",
            "000000010000000000000002.0000002G.backup",
            "00000001.partial",
        ] {
            assert!(WalName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn lsns_parse_print_and_place() {
        let lsn = Lsn::parse("16/B374D848").expect("lsn");
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(lsn.segment(DEFAULT_SEGMENT_SIZE), 0x16_B374_D848 >> 24);
        assert!(Lsn::parse("B374D848").is_err());
    }

    #[test]
    fn history_files_parse() {
        let h = parse_history(
            "1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tat restore point \"x\"\n",
        )
        .expect("history");
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].parent, 2);
        assert_eq!(h[1].switch, Lsn(0x5000000));
    }
}
