//! WAL archiving: each file PostgreSQL hands to `archive_command` (segments, `.partial`, `.backup`
//! and `.history` files) becomes one named object `wal/<system id>/<timeline>/<file name>`, so
//! pushing and fetching touch one object and never the index. `pg receive-wal` adds the segment in
//! progress as `<segment>.partial.<16 hex digits>` (its first that many bytes), which `fetch` falls
//! back to when the whole segment was never archived.

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
    /// The first `bytes` of a segment still being written, as `pg receive-wal` stored it
    /// (`….partial.<16 hex digits>`): the hex digits are fixed-width, so a listing sorts them by how
    /// much WAL they hold.
    Streamed { log: u32, seg: u32, bytes: u64 },
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
                "{name:?} is not a WAL file name (a segment such as 000000010000000000000003, or a .partial, .backup or .history file, or a streamed .partial.<16 hex digits>)"
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
                Some(("partial", bytes)) => {
                    let bytes = hex16(bytes).ok_or_else(invalid)?;
                    let (log, seg) = segment()?;
                    WalKind::Streamed { log, seg, bytes }
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

    /// The segment number of a segment or partial segment (cut at a timeline switch, or streamed).
    pub fn segment_number(&self, segment_size: u64) -> Option<u64> {
        match self.kind {
            WalKind::Segment { log, seg }
            | WalKind::Partial { log, seg }
            | WalKind::Streamed { log, seg, .. } => {
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

fn hex16(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// The file name under which the first `bytes` of segment `segment` (a segment file name) are
/// stored while it is still being written.
pub fn streamed_name(segment: &str, bytes: u64) -> String {
    format!("{segment}.partial.{bytes:016X}")
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

/// What the long page header that opens every WAL segment says: the cluster it belongs to and the
/// segment size. `None` when `first_page` does not start with one (a segment file not written yet
/// is all zeros).
pub fn segment_header(first_page: &[u8]) -> Option<(u64, u64)> {
    // XLogLongPageHeaderData: xlp_magic u16, xlp_info u16, xlp_tli u32, xlp_pageaddr u64,
    // xlp_rem_len u32, padding to 24, xlp_sysid u64, xlp_seg_size u32; in the server's byte order.
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_ne_bytes(*first_page.get(2..4)?.first_chunk::<2>()?);
    let magic = u16::from_ne_bytes(*first_page.first_chunk::<2>()?);
    if magic == 0 || info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let sysid = u64::from_ne_bytes(*first_page.get(24..32)?.first_chunk::<8>()?);
    let seg_size = u32::from_ne_bytes(*first_page.get(32..36)?.first_chunk::<4>()?);
    Some((sysid, u64::from(seg_size)))
}

/// Whether `size` can be a WAL segment's: a power of two from 1 MiB to 1 GiB.
pub fn is_segment_size(size: u64) -> bool {
    size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size)
}

/// The data directory `archive_command` and `restore_command` run in. PostgreSQL runs them with
/// the data directory as the working directory, but its `PGDATA` (lifeline's default for
/// `--pgdata`) is whatever `pg_ctl -D` was given: a relative one names the directory from where
/// pg_ctl was started, not from inside it. So a relative `pgdata` that holds no data directory
/// while the working directory is one means the working directory.
pub fn command_data_dir(pgdata: &Path) -> PathBuf {
    let control = |dir: &Path| dir.join("global/pg_control").is_file();
    if pgdata.is_relative() && !control(pgdata) && control(Path::new(".")) {
        tracing::debug!(
            "{} (relative, from PGDATA) holds no data directory; using the working directory, where PostgreSQL runs its commands",
            pgdata.display()
        );
        return PathBuf::from(".");
    }
    pgdata.to_path_buf()
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
    if matches!(name.kind, WalKind::Streamed { .. }) {
        return Err(Error::Invalid(format!(
            "{file_name} is a name only `pg receive-wal` gives what it stores, not a file PostgreSQL archives"
        )));
    }
    let full = pgdata.join(path);
    let size = fs::metadata(&full).map_err(|e| Error::io(&full, e))?.len();
    if matches!(name.kind, WalKind::Segment { .. }) && !is_segment_size(size) {
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

/// Restore one WAL file (`restore_command`'s `%f` and `%p`). A segment that was never archived
/// whole is written from the largest part of it `pg receive-wal` stored, zero-padded to a whole
/// segment as the server itself leaves one: recovery replays it to its end, up to seconds before
/// the primary was lost. A file that was never archived is `NotArchived`; a damaged one is an error.
pub fn fetch(repo: &Repository, pgdata: &Path, file_name: &str, dest: &Path) -> Result<Fetched> {
    let name = WalName::parse(file_name)?;
    let key = object_key(system_identifier(pgdata)?, &name);
    let data = match repo.get_named(&key) {
        Ok(object) => object.data,
        Err(lifeline_repo::Error::ObjectMissing { .. }) => {
            match matches!(name.kind, WalKind::Segment { .. })
                .then(|| newest_streamed(repo, &key))
                .transpose()?
                .flatten()
            {
                Some(data) => data,
                None => return Ok(Fetched::NotArchived),
            }
        }
        Err(e) => return Err(e.into()),
    };
    write_atomically(&pgdata.join(dest), &data)?;
    Ok(Fetched::Written(data.len() as u64))
}

/// Write `data` to `dest` through a temporary file beside it: PostgreSQL may read `%p` as soon as
/// the command exits, never while it is half written.
pub fn write_atomically(dest: &Path, data: &[u8]) -> Result<()> {
    let tmp = tmp_path(dest);
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| fs::rename(&tmp, dest));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(dest, e));
    }
    Ok(())
}

/// The keys of the streamed parts of the segment stored under `segment_key`, smallest first.
pub fn streamed_keys(repo: &Repository, segment_key: &str) -> Result<Vec<String>> {
    let prefix = format!("{segment_key}.partial.");
    let mut keys: Vec<String> = repo
        .storage()
        .list(&prefix)?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.get(prefix.len()..).and_then(hex16).is_some())
        .collect();
    // Fixed-width hex: sorting the keys sorts by bytes held.
    keys.sort();
    Ok(keys)
}

/// The largest streamed part of the segment under `segment_key` as a whole segment file, if any.
fn newest_streamed(repo: &Repository, segment_key: &str) -> Result<Option<Vec<u8>>> {
    // The receiver deletes a part once a larger one is stored: a part listed a moment ago may be
    // gone, and a larger one is there instead.
    for _ in 0..3 {
        let Some(key) = streamed_keys(repo, segment_key)?.pop() else {
            return Ok(None);
        };
        let mut data = match repo.get_named(&key) {
            Ok(object) => object.data,
            Err(lifeline_repo::Error::ObjectMissing { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let size = segment_header(&data)
            .map(|(_, size)| size)
            .filter(|&size| is_segment_size(size) && size >= data.len() as u64)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{key} does not start with a WAL segment header naming a segment size it fits in"
                ))
            })?;
        data.resize(usize::try_from(size).unwrap_or(usize::MAX), 0);
        return Ok(Some(data));
    }
    Err(Error::Invalid(format!(
        "the streamed parts of {segment_key} kept changing while they were read; try again"
    )))
}

/// The suffix of a file `write_atomically` has not finished.
pub const TMP_SUFFIX: &str = ".lifeline-tmp";

fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(TMP_SUFFIX);
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
        let streamed =
            WalName::parse(&streamed_name("0000000200000001000000FE", 0x2A000)).expect("streamed");
        assert_eq!(
            streamed.kind,
            WalKind::Streamed {
                log: 1,
                seg: 0xFE,
                bytes: 0x2A000
            }
        );
        assert_eq!(
            streamed.name,
            "0000000200000001000000FE.partial.000000000002A000"
        );
        assert_eq!(streamed.segment_of(DEFAULT_SEGMENT_SIZE), Some(256 + 254));
        for bad in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000000",
            "../x",
            "00000000.history",
            "000000010000000000000002.0000002G.backup",
            "00000001.partial",
            "000000010000000000000002.partial.123",
            "000000010000000000000002.partial.000000000000012G",
            "000000010000000000000002.partial.00000000000001234",
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
    fn a_segment_header_names_its_cluster_and_segment_size() {
        let mut page = vec![0u8; 40];
        assert_eq!(segment_header(&page), None, "a segment not written yet");
        page[..2].copy_from_slice(&0xD118u16.to_ne_bytes());
        page[2..4].copy_from_slice(&0x0002u16.to_ne_bytes());
        page[24..32].copy_from_slice(&7u64.to_ne_bytes());
        page[32..36].copy_from_slice(&(16u32 << 20).to_ne_bytes());
        assert_eq!(segment_header(&page), Some((7, 16 << 20)));
        assert_eq!(segment_header(&page[..30]), None, "too short");
        page[2..4].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(segment_header(&page), None, "a short page header");
        assert!(is_segment_size(16 << 20) && !is_segment_size(3 << 20));
    }

    #[test]
    fn a_segment_never_archived_whole_is_fetched_from_its_largest_part_padded() {
        use std::sync::Arc;
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(
            Arc::new(lifeline_repo::storage::LocalStorage::new(
                tmp.path().join("repo"),
            )),
            b"pw",
            1 << 20,
        )
        .expect("init");
        let pgdata = tmp.path().join("pgdata");
        fs::create_dir_all(pgdata.join("global")).expect("mkdir");
        fs::write(pgdata.join("global/pg_control"), 7u64.to_ne_bytes()).expect("pg_control");
        let segment = "000000010000000000000003";
        let name = WalName::parse(segment).expect("segment");
        let key = object_key(7, &name);
        let dest = Path::new("fetched");
        assert_eq!(
            fetch(&repo, &pgdata, segment, dest).expect("fetch"),
            Fetched::NotArchived
        );

        let mut wal = vec![0u8; 0x2000];
        wal[..2].copy_from_slice(&0xD118u16.to_ne_bytes());
        wal[2..4].copy_from_slice(&0x0002u16.to_ne_bytes());
        wal[24..32].copy_from_slice(&7u64.to_ne_bytes());
        wal[32..36].copy_from_slice(&(16u32 << 20).to_ne_bytes());
        wal[0x1000..].fill(0x5A);
        for bytes in [0x1800, 0x2000] {
            let part = format!("{key}.partial.{bytes:016X}");
            repo.put_named(&part, &wal[..bytes], WAL_COMPRESSION)
                .expect("part");
        }
        assert_eq!(
            fetch(&repo, &pgdata, segment, dest).expect("fetch"),
            Fetched::Written(DEFAULT_SEGMENT_SIZE)
        );
        let fetched = fs::read(pgdata.join(dest)).expect("read");
        assert_eq!(&fetched[..0x2000], &wal[..], "the largest part");
        assert!(fetched[0x2000..].iter().all(|&b| b == 0));

        // A part never stands in for a file that is not a segment.
        assert_eq!(
            fetch(&repo, &pgdata, "00000002.history", dest).expect("fetch"),
            Fetched::NotArchived
        );
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
