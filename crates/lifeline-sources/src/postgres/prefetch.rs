//! Fetching ahead during recovery, as pgBackRest's asynchronous archive-get and WAL-G's prefetch
//! do: each `pg wal-fetch` of a segment records it and starts a worker (a second lifeline process,
//! so PostgreSQL's call returns at once) that fetches the next segments of the same timeline into
//! `pg_wal/lifeline_prefetch/`. PostgreSQL's call for one of those renames it into place without
//! opening the repository, so replay no longer waits for a repository open and a decompression
//! per segment.
//!
//! Only whole archived segments are fetched ahead: they never change once stored, so a copy
//! fetched a moment ago is the copy PostgreSQL would get now. Streamed parts, history and backup
//! files always come from the repository. The queue holds at most `depth` segments past the last
//! one asked for, and is emptied when PostgreSQL asks for a file the archive lacks (recovery is
//! ending, or waiting for more WAL), so a finished recovery leaves nothing behind.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use lifeline_repo::Repository;

use super::error::{Error, Result};
use super::wal::{self, WalKind, WalName};

/// Beside the segments: `pg_wal` is never part of a base backup, and a delta restore removes it.
const QUEUE: &str = "lifeline_prefetch";
/// The last segment PostgreSQL asked for and the segment size, for the worker.
const WANT: &str = "want";
/// Held by the one worker that runs at a time.
const LOCK: &str = "lock";

/// Segments kept ahead by default: 8 × 16 MiB, pgBackRest's default archive-get queue of 128 MiB.
pub const DEFAULT_DEPTH: u64 = 8;

/// The prefetch queue of one data directory.
pub struct Prefetch {
    dir: PathBuf,
    depth: u64,
}

impl Prefetch {
    pub fn new(pgdata: &Path, depth: u64) -> Self {
        Prefetch {
            dir: pgdata.join("pg_wal").join(QUEUE),
            depth,
        }
    }

    /// Move a copy of `name` fetched ahead to `dest` (absolute); its size when there was one.
    pub fn take(&self, name: &str, dest: &Path) -> Option<u64> {
        let parsed = WalName::parse(name).ok()?;
        if !matches!(parsed.kind, WalKind::Segment { .. }) {
            return None;
        }
        let queued = self.dir.join(name);
        let size = fs::metadata(&queued).ok()?.len();
        if !wal::is_segment_size(size) {
            let _ = fs::remove_file(&queued);
            return None;
        }
        match fs::rename(&queued, dest) {
            Ok(()) => Some(size),
            Err(e) => {
                tracing::warn!("cannot use {} ({e}); fetching it", queued.display());
                let _ = fs::remove_file(&queued);
                None
            }
        }
    }

    /// Record that PostgreSQL asked for `name`, a segment of `segment_size` bytes, and drop what
    /// the queue holds outside the `depth` segments after it (earlier segments, other timelines).
    /// Whether a worker has anything to fetch.
    pub fn asked(&self, name: &str, segment_size: u64) -> Result<bool> {
        if self.depth == 0 || !wal::is_segment_size(segment_size) {
            return Ok(false);
        }
        let Some(window) = self.window(name, segment_size) else {
            return Ok(false);
        };
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        wal::write_atomically(
            &self.dir.join(WANT),
            format!("{name} {segment_size}\n").as_bytes(),
        )?;
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if WalName::parse(&file).is_ok() && !window.contains(&file) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(window.iter().any(|n| !self.dir.join(n).exists()))
    }

    /// Empty the queue: PostgreSQL asked for a file the archive does not have. A worker still
    /// running finds its directory gone and stops.
    pub fn clear(&self) {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {} ({e})", self.dir.display()),
        }
    }

    /// The worker: fetch the segments after the last one asked for, in order, until `depth` wait,
    /// the archive has no more, or the queue is cleared. Only one worker runs at a time; another
    /// returns 0 at once. Returns how many segments it fetched.
    pub fn run(&self, repo: &Repository, system_id: u64) -> Result<usize> {
        let lock_path = self.dir.join(LOCK);
        let file = match fs::File::create(&lock_path) {
            Ok(file) => file,
            // Cleared before the worker started: nothing is wanted.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&lock_path, e)),
        };
        let _lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(0),
            Err((_, e)) => return Err(Error::io(&lock_path, e.into())),
        };
        self.remove_partial();
        let mut fetched = 0;
        while let Some((name, segment_size)) = self.next_missing() {
            let key = wal::object_key(system_id, &WalName::parse(&name)?);
            let data = match repo.get_named(&key) {
                Ok(object) => object.data,
                Err(lifeline_repo::Error::ObjectMissing { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            if data.len() as u64 != segment_size {
                // Never a whole segment of this cluster's size: PostgreSQL's own call reports it.
                break;
            }
            match wal::write_atomically(&self.dir.join(&name), &data) {
                Ok(()) => fetched += 1,
                Err(_) if !self.dir.exists() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(fetched)
    }

    /// The first of the `depth` segments after the last one asked for that the queue lacks.
    fn next_missing(&self) -> Option<(String, u64)> {
        let want = fs::read_to_string(self.dir.join(WANT)).ok()?;
        let mut fields = want.split_whitespace();
        let name = fields.next()?;
        let segment_size = fields.next()?.parse().ok()?;
        self.window(name, segment_size)?
            .into_iter()
            .find(|n| !self.dir.join(n).exists())
            .map(|n| (n, segment_size))
    }

    /// The names of the `depth` segments after segment `name` on its timeline.
    fn window(&self, name: &str, segment_size: u64) -> Option<Vec<String>> {
        let parsed = WalName::parse(name).ok()?;
        if !matches!(parsed.kind, WalKind::Segment { .. }) {
            return None;
        }
        let segno = parsed.segment_number(segment_size)?;
        Some(
            (1..=self.depth)
                .map(|i| wal::segment_name(parsed.timeline, segno + i, segment_size))
                .collect(),
        )
    }

    /// Files a worker that was killed left half written.
    fn remove_partial(&self) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(wal::TMP_SUFFIX)
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn queue(depth: u64) -> (tempfile::TempDir, Prefetch) {
        let pgdata = tempfile::tempdir().unwrap();
        fs::create_dir_all(pgdata.path().join("pg_wal")).unwrap();
        let prefetch = Prefetch::new(pgdata.path(), depth);
        (pgdata, prefetch)
    }

    #[test]
    fn the_window_is_the_next_segments_of_the_same_timeline() {
        let (_pgdata, prefetch) = queue(3);
        assert_eq!(
            prefetch.window("0000000200000001000000FE", SEG).unwrap(),
            [
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        assert!(prefetch.window("00000002.history", SEG).is_none());
    }

    #[test]
    fn asking_drops_what_falls_outside_the_window_and_the_worker_starts_at_the_first_gap() {
        let (_pgdata, prefetch) = queue(2);
        assert!(prefetch.asked("000000010000000000000003", SEG).unwrap());
        for name in [
            "000000010000000000000002",
            "000000010000000000000004",
            "000000020000000000000004",
        ] {
            fs::write(prefetch.dir.join(name), b"x").unwrap();
        }
        assert!(prefetch.asked("000000010000000000000003", SEG).unwrap());
        assert!(prefetch.dir.join("000000010000000000000004").exists());
        assert!(!prefetch.dir.join("000000010000000000000002").exists());
        assert!(!prefetch.dir.join("000000020000000000000004").exists());
        assert_eq!(
            prefetch.next_missing(),
            Some(("000000010000000000000005".to_string(), SEG))
        );
        fs::write(prefetch.dir.join("000000010000000000000005"), b"x").unwrap();
        assert!(!prefetch.asked("000000010000000000000003", SEG).unwrap());
        assert_eq!(prefetch.next_missing(), None);
    }

    #[test]
    fn only_a_whole_segment_is_taken_and_clearing_empties_the_queue() {
        let (pgdata, prefetch) = queue(2);
        prefetch.asked("000000010000000000000003", SEG).unwrap();
        let dest = pgdata.path().join("pg_wal/RECOVERYXLOG");
        fs::write(prefetch.dir.join("000000010000000000000004"), b"short").unwrap();
        assert_eq!(prefetch.take("000000010000000000000004", &dest), None);
        assert!(!prefetch.dir.join("000000010000000000000004").exists());
        let whole = vec![7u8; 1 << 20];
        fs::write(prefetch.dir.join("000000010000000000000004"), &whole).unwrap();
        assert_eq!(
            prefetch.take("000000010000000000000004", &dest),
            Some(1 << 20)
        );
        assert_eq!(fs::read(&dest).unwrap(), whole);
        assert_eq!(prefetch.take("00000002.history", &dest), None);
        prefetch.clear();
        assert!(!prefetch.dir.exists());
        assert_eq!(prefetch.take("000000010000000000000005", &dest), None);
    }
}
