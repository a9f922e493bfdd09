//! Physical base backups: `pg_basebackup`'s tar stream stored as a tree, with what recovery needs to
//! know about it (LSNs, timeline, system identifier, the manifest), and a check that the WAL that
//! makes it consistent is in the repository before the snapshot is written.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lifeline_repo::{Repository, Writer};

use super::error::{Error, Result};
use super::tar_tree;
use super::tools::{self, Tools};
use super::wal::{self, Lsn, WalName};
use crate::Progress;

pub const MANIFEST: &str = "backup_manifest";

/// What the server says about itself before a backup.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub system_id: u64,
    pub version: String,
    pub major: u32,
    pub wal_segment_size: u64,
    pub archive_mode: String,
    pub summarize_wal: bool,
}

pub fn server_info(client: &mut postgres::Client) -> Result<ServerInfo> {
    let major = tools::server_major(client)?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                    current_setting('server_version'),
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
                    current_setting('archive_mode')",
            &[],
        )
        .map_err(|e| Error::db("reading the server's identity", e))?;
    let system_id: String = row.get(0);
    let summarize_wal = if major >= 17 {
        let row = client
            .query_one("SELECT current_setting('summarize_wal')", &[])
            .map_err(|e| Error::db("reading summarize_wal", e))?;
        row.get::<_, String>(0) == "on"
    } else {
        false
    };
    Ok(ServerInfo {
        system_id: system_id
            .parse()
            .map_err(|_| Error::Invalid(format!("system identifier {system_id:?}")))?,
        version: row.get(1),
        major,
        wal_segment_size: u64::try_from(row.get::<_, i64>(2)).unwrap_or(wal::DEFAULT_SEGMENT_SIZE),
        archive_mode: row.get(3),
        summarize_wal,
    })
}

/// The WAL range a backup needs, from its manifest's `WAL-Ranges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub start: Lsn,
    pub stop: Lsn,
}

pub fn wal_range(manifest: &[u8]) -> Result<WalRange> {
    let bad = |what: &str| Error::Invalid(format!("backup_manifest: {what}"));
    let json: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let ranges = json["WAL-Ranges"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("no WAL-Ranges"))?;
    let lsn = |v: &serde_json::Value| Lsn::parse(v.as_str().unwrap_or_default());
    let first = &ranges[0];
    let last = &ranges[ranges.len() - 1];
    Ok(WalRange {
        timeline: first["Timeline"]
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| bad("WAL-Ranges without a timeline"))?,
        start: lsn(&first["Start-LSN"])?,
        stop: lsn(&last["End-LSN"])?,
    })
}

pub struct Taken {
    pub stored: tar_tree::Stored,
    pub manifest: Vec<u8>,
    pub range: WalRange,
}

/// Run `pg_basebackup` and store its stream. `incremental_from` is the manifest of the backup an
/// incremental one builds on. WAL is not copied (`-X none`): it comes from the archive, and with
/// `-X none` the server itself waits until the last segment the backup needs is archived.
pub fn take(
    writer: &Writer<'_>,
    tools: &Tools,
    url: &str,
    incremental_from: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Taken> {
    let mut cmd = tools.command("pg_basebackup");
    cmd.args(["-D", "-", "-F", "t", "-X", "none", "-c", "fast", "-d", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(manifest) = incremental_from {
        cmd.arg(format!("--incremental={}", manifest.display()));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| tools::spawn_error("pg_basebackup", e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Invalid("pg_basebackup has no stdout".into()))?;
    let mut stderr = child.stderr.take();
    // Read stderr on its own thread so a chatty tool cannot stall on a full pipe.
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut text);
        }
        text
    });
    // Read-ahead lets the server stream on while lifeline seals what it has; the writer already
    // reads its next batch while it compresses one, so 8 MiB is enough, and 64 MiB kept the
    // backup's peak memory over 100 MiB (docs/benchmarks-pg.md, peak RSS).
    let input = crate::ReadAhead::new(stdout, 1 << 20, 8);
    let stored = tar_tree::store(writer, input, &[MANIFEST], progress);
    let status = child.wait().map_err(|e| Error::io("pg_basebackup", e))?;
    let stderr = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(tools::tool_failed("pg_basebackup", &status, &stderr));
    }
    let mut stored = stored?;
    let manifest = stored.kept.remove(MANIFEST).ok_or_else(|| {
        Error::Invalid(
            "pg_basebackup sent no backup_manifest (manifests need PostgreSQL 13 or later)".into(),
        )
    })?;
    let range = wal_range(&manifest)?;
    Ok(Taken {
        stored,
        manifest,
        range,
    })
}

/// Wait until every segment from the backup's start to its stop is in the repository: only then can
/// the backup be restored to a consistent state. Fails after `timeout` naming the first missing one.
pub fn wait_for_wal(
    repo: &Repository,
    system_id: u64,
    range: &WalRange,
    segment_size: u64,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for segno in range.start.segment(segment_size)..=range.stop.segment(segment_size) {
        let name = WalName::parse(&wal::segment_name(range.timeline, segno, segment_size))?;
        let key = wal::object_key(system_id, &name);
        loop {
            if repo.storage().stat(&key)?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Invalid(format!(
                    "WAL segment {} that this backup needs is not in the repository after {} s: check that archive_command runs `lifeline pg wal-push` into this repository (pg_stat_archiver shows its failures)",
                    name.name,
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_wal_ranges_give_the_backup_range() {
        let manifest = br#"{ "PostgreSQL-Backup-Manifest-Version": 1,
            "Files": [],
            "WAL-Ranges": [ { "Timeline": 2, "Start-LSN": "0/6000028", "End-LSN": "0/6000138" } ] }"#;
        let range = wal_range(manifest).expect("range");
        assert_eq!(range.timeline, 2);
        assert_eq!(range.start, Lsn(0x600_0028));
        assert_eq!(range.stop, Lsn(0x600_0138));
        assert!(wal_range(b"{}").is_err());
    }
}
