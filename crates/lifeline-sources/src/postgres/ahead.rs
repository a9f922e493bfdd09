//! Archiving ahead, as WAL-G and pgBackRest's asynchronous mode do: `pg wal-push` stores the
//! segment PostgreSQL asks for and, in the same run and in parallel, the next segments already
//! waiting for the archiver (their `.ready` files). Each one stored ahead leaves a marker, so
//! PostgreSQL's own call for it returns without opening the repository. PostgreSQL's status files
//! are never touched: a segment counts as archived only when PostgreSQL's call for it succeeds, so
//! a marker that is lost or stale costs a second upload of the same bytes, never a gap.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lifeline_repo::named::Stored;
use lifeline_repo::Repository;

use super::error::{Error, Result};
use super::wal::{self, WalKind, WalName};

/// Markers live beside the segments; `pg_wal` is never part of a base backup, so they never travel
/// into a restored copy.
const MARKERS: &str = "lifeline_ahead";

/// Which file was stored: a marker holds for this exact file only (another file of the same name,
/// after a restore in place, has another inode or mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Self {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        }
    }

    fn encode(self) -> String {
        format!(
            "{} {} {} {}\n",
            self.dev, self.ino, self.size, self.mtime_ns
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace().map(str::parse::<i128>);
        let mut next = || fields.next()?.ok();
        Some(Identity {
            dev: u64::try_from(next()?).ok()?,
            ino: u64::try_from(next()?).ok()?,
            size: u64::try_from(next()?).ok()?,
            mtime_ns: i64::try_from(next()?).ok()?,
        })
    }
}

fn wal_dir(pgdata: &Path) -> PathBuf {
    pgdata.join("pg_wal")
}

fn marker(pgdata: &Path, name: &str) -> PathBuf {
    wal_dir(pgdata).join(MARKERS).join(name)
}

/// Whether the WAL file at `path` (relative to `pgdata`, as `archive_command`'s `%p`) was stored
/// ahead, exactly as it is now. The marker is removed either way: PostgreSQL marks the segment
/// done when this call succeeds, and on a mismatch the caller stores it again.
pub fn stored_ahead(pgdata: &Path, path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let marker = marker(pgdata, name);
    let Ok(text) = fs::read_to_string(&marker) else {
        return false;
    };
    let _ = fs::remove_file(&marker);
    let now = fs::metadata(pgdata.join(path)).map(|m| Identity::of(&m));
    matches!((Identity::decode(&text), now), (Some(then), Ok(now)) if then == now)
}

/// Up to `max` segments other than `asked` that wait for the archiver, oldest first (the order
/// PostgreSQL will ask for them), without a marker.
fn waiting(pgdata: &Path, asked: &str, max: usize) -> Vec<String> {
    if max == 0 {
        return Vec::new();
    }
    let status = wal_dir(pgdata).join("archive_status");
    let Ok(entries) = fs::read_dir(&status) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let file = e.ok()?.file_name().into_string().ok()?;
            let name = file.strip_suffix(".ready")?.to_string();
            let parsed = WalName::parse(&name).ok()?;
            // Only whole segments: a history or backup file is small and PostgreSQL wants it first.
            matches!(parsed.kind, WalKind::Segment { .. }).then_some(name)
        })
        .filter(|name| name != asked && !marker(pgdata, name).exists())
        .collect();
    names.sort();
    names.truncate(max);
    names
}

/// `archive_command`'s push of `path` (relative to `pgdata`, as `%p`): that file on this thread and,
/// beside it on `jobs - 1` more, up to `ahead` more segments that wait for the archiver. Only the
/// asked file's result decides; returns its object key and how it was stored.
pub fn push(
    repo: &Repository,
    pgdata: &Path,
    path: &Path,
    ahead: usize,
    jobs: usize,
) -> Result<(String, Stored)> {
    sweep(pgdata);
    let asked = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let others = waiting(pgdata, &asked, ahead);
    let (pushed, stored_ahead) = std::thread::scope(|scope| {
        let others =
            scope.spawn(|| push_ahead(repo, pgdata, &others, jobs.saturating_sub(1).max(1)));
        let pushed = wal::push(repo, pgdata, path);
        (pushed, others.join().unwrap_or(0))
    });
    if stored_ahead > 0 {
        tracing::info!("archived {stored_ahead} more segment(s) ahead");
    }
    pushed
}

/// Store `names` (segments in `pgdata/pg_wal`) with `jobs` in parallel, leaving a marker for each
/// one stored. A segment that fails is left for PostgreSQL's own call, which reports the error;
/// returns how many were stored.
fn push_ahead(repo: &Repository, pgdata: &Path, names: &[String], jobs: usize) -> usize {
    if names.is_empty() {
        return 0;
    }
    if let Err(e) = fs::create_dir_all(wal_dir(pgdata).join(MARKERS)) {
        tracing::warn!("not archiving ahead: cannot create the marker directory ({e})");
        return 0;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stored = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, names.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                match push_one(repo, pgdata, name) {
                    Ok(()) => {
                        stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!("archiving {name} ahead failed ({e}); PostgreSQL's own call for it will retry"),
                }
            });
        }
    });
    stored.into_inner()
}

fn push_one(repo: &Repository, pgdata: &Path, name: &str) -> Result<()> {
    let path = Path::new("pg_wal").join(name);
    let full = pgdata.join(&path);
    let before = fs::metadata(&full).map_err(|e| Error::io(&full, e))?;
    wal::push(repo, pgdata, &path)?;
    // Written after the object is stored, and atomically: a marker always means stored.
    let marker = marker(pgdata, name);
    let tmp = marker.with_extension("tmp");
    fs::write(&tmp, Identity::of(&before).encode())
        .and_then(|()| fs::rename(&tmp, &marker))
        .map_err(|e| Error::io(&marker, e))
}

/// Remove markers whose segment is gone (PostgreSQL recycled it after archiving it some other way).
fn sweep(pgdata: &Path) {
    let dir = wal_dir(pgdata).join(MARKERS);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !wal_dir(pgdata).join(&name).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_its_marker_and_a_damaged_marker_is_none() {
        let id = Identity {
            dev: 2049,
            ino: 77,
            size: 16 << 20,
            mtime_ns: 1_764_745_200_123_456_789,
        };
        assert_eq!(Identity::decode(&id.encode()), Some(id));
        assert_eq!(Identity::decode("2049 77 16777216"), None);
        assert_eq!(Identity::decode("x 77 1 1"), None);
    }

    #[test]
    fn a_marker_is_consumed_and_holds_only_for_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path();
        fs::create_dir_all(pgdata.join("pg_wal/archive_status")).unwrap();
        fs::create_dir_all(pgdata.join("pg_wal").join(MARKERS)).unwrap();
        let name = "000000010000000000000003";
        let seg = pgdata.join("pg_wal").join(name);
        fs::write(&seg, b"wal").unwrap();
        let rel = Path::new("pg_wal").join(name);
        assert!(!stored_ahead(pgdata, &rel), "no marker yet");

        let id = Identity::of(&fs::metadata(&seg).unwrap());
        fs::write(marker(pgdata, name), id.encode()).unwrap();
        assert!(stored_ahead(pgdata, &rel));
        assert!(!marker(pgdata, name).exists(), "consumed");
        assert!(!stored_ahead(pgdata, &rel), "once only");

        // Another file under the same name (replaced): the marker does not hold.
        fs::write(marker(pgdata, name), id.encode()).unwrap();
        fs::remove_file(&seg).unwrap();
        fs::write(pgdata.join("other"), b"other wal").unwrap();
        fs::rename(pgdata.join("other"), &seg).unwrap();
        assert!(!stored_ahead(pgdata, &rel));
    }

    #[test]
    fn waiting_lists_ready_segments_oldest_first_without_the_asked_or_marked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path();
        let status = pgdata.join("pg_wal/archive_status");
        fs::create_dir_all(&status).unwrap();
        fs::create_dir_all(pgdata.join("pg_wal").join(MARKERS)).unwrap();
        for n in [5, 3, 4, 6, 7] {
            fs::write(status.join(format!("00000001000000000000000{n}.ready")), "").unwrap();
        }
        fs::write(status.join("000000010000000000000002.done"), "").unwrap();
        fs::write(status.join("00000002.history.ready"), "").unwrap();
        fs::write(marker(pgdata, "000000010000000000000006"), "").unwrap();
        assert_eq!(
            waiting(pgdata, "000000010000000000000003", 2),
            ["000000010000000000000004", "000000010000000000000005"]
        );
        assert_eq!(
            waiting(pgdata, "000000010000000000000003", 10),
            [
                "000000010000000000000004",
                "000000010000000000000005",
                "000000010000000000000007"
            ]
        );
        assert!(waiting(pgdata, "x", 0).is_empty());
    }
}
