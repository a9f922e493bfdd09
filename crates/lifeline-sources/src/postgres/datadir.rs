//! File-level base backups on the database host (`pg backup --mode files`): the data directory is
//! read by parallel workers between `pg_backup_start` and `pg_backup_stop` on one connection, as
//! pgBackRest does, instead of streamed through `pg_basebackup`. Files unchanged since an earlier
//! backup of the same directory reuse its chunk lists without being read (an incremental by change,
//! on every PostgreSQL version); WAL replay from the backup's start repairs what changed while the
//! files were read, as it does for `pg_basebackup`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lifeline_repo::snapshot::Summary;
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::{Bundle, Id, Writer};
use sha2::{Digest, Sha256};

use super::basebackup::{ServerInfo, Taken, WalRange, MANIFEST};
use super::error::{Error, Result};
use super::tar_tree::Stored;
use super::wal::Lsn;
use crate::files::{self, DirBackup, Exclusions, ListedFile, Live};
use crate::Progress;

/// Where `pg_backup_stop`'s label and tablespace map go in the stored tree: where recovery reads
/// them (the map is kept in the snapshot's metadata instead, see [`take`]).
pub const BACKUP_LABEL: &str = "backup_label";

/// A parent file's mtime must be this much older than the moment the parent started reading
/// files for its chunks to be reused: a file system's clock ticks coarsely, and a write within the
/// same tick as the read would leave size and mtime as they were.
const SETTLE_NS: i64 = 1_000_000_000;

/// What to read, and the earlier backup whose unchanged files need not be read again.
pub struct FilesRequest<'a> {
    pub data_dir: &'a Path,
    /// Parallel readers.
    pub jobs: usize,
    pub reuse: Option<Reuse>,
}

/// An earlier file-mode backup of the same data directory.
#[derive(Debug, Clone, Copy)]
pub struct Reuse {
    pub snapshot: Id,
    pub tree: Id,
    /// When that backup started reading files (ns since the epoch, this host's clock).
    pub read_from: i64,
}

/// The data directory of the server behind `client`, if this process can back it up file by file:
/// the server names it, it is readable here, its `global/pg_control` carries the server's system
/// identifier (so it is this server's and not a same-named directory on another host), and the role
/// may run the low-level backup functions. `Err` says why not, for the message or the log.
pub fn local_data_dir(
    client: &mut postgres::Client,
    info: &ServerInfo,
) -> std::result::Result<PathBuf, String> {
    let dir: String = client
        .query_one("SELECT current_setting('data_directory')", &[])
        .map_err(|e| {
            format!("the role cannot read the data_directory setting ({e}); GRANT pg_read_all_settings TO it")
        })?
        .get(0);
    let dir = PathBuf::from(dir);
    let control = dir.join("global/pg_control");
    let mut head = [0u8; 8];
    fs::File::open(&control)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read {} here ({e})", control.display()))?;
    // pg_control starts with the system identifier, in the host's byte order.
    let system_id = u64::from_ne_bytes(head);
    if system_id != info.system_id {
        return Err(format!(
            "{} belongs to cluster {system_id}, not to the server's {} (the server runs on another host)",
            dir.display(),
            info.system_id
        ));
    }
    let function = if info.major >= 15 {
        "pg_backup_start(text, boolean)"
    } else {
        "pg_start_backup(text, boolean, boolean)"
    };
    let allowed: bool = client
        .query_one(
            "SELECT has_function_privilege(current_user, $1, 'EXECUTE')",
            &[&function],
        )
        .map_err(|e| format!("cannot check the role's right to run {function} ({e})"))?
        .get(0);
    if !allowed {
        return Err(format!(
            "the role may not run {function}; GRANT EXECUTE ON FUNCTION {function} and the matching stop function TO it"
        ));
    }
    Ok(dir)
}

/// What `take` adds to [`Taken`].
pub struct FilesTaken {
    pub taken: Taken,
    /// When the files started to be read (ns since the epoch): the next backup's [`Reuse`].
    pub read_from: i64,
    /// `pg_backup_stop`'s tablespace map, when the cluster has tablespaces.
    pub tablespace_map: Option<String>,
}

/// Take a file-level base backup of `request.data_dir`, the data directory of the server behind
/// `client` (see [`local_data_dir`]).
pub fn take(
    client: &mut postgres::Client,
    writer: &Writer<'_>,
    info: &ServerInfo,
    request: &FilesRequest<'_>,
    progress: &dyn Progress,
) -> Result<FilesTaken> {
    let label = format!(
        "lifeline {}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
    let start = if info.major >= 15 {
        "SELECT pg_backup_start($1, true)::text"
    } else {
        "SELECT pg_start_backup($1, true, false)::text"
    };
    client
        .query_one(start, &[&label])
        .map_err(|e| Error::db("starting the backup (pg_backup_start)", e))?;
    let read_from = now_ns();
    let settled_before = request
        .reuse
        // A clock that went back since the parent read its files makes every mtime suspect.
        .filter(|r| r.read_from < read_from)
        .map(|r| r.read_from - SETTLE_NS);
    let live = Live {
        settled_before,
        expect_changes: true,
    };
    let parent = request.reuse.filter(|_| settled_before.is_some());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(request.jobs.max(1))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {} readers: {e}", request.jobs)))?;
    let version_dir = tablespace_version_dir(client, info)?;
    let read = pool.install(|| {
        read_cluster(
            writer,
            request.data_dir,
            &version_dir,
            parent.map(|p| p.tree),
            live,
            progress,
        )
    })?;

    // The backup ends on the same connection; if anything above failed, the connection closing
    // ends it on the server.
    let stop = if info.major >= 15 {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
    } else {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
    };
    let row = client
        .query_one(stop, &[])
        .map_err(|e| Error::db("ending the backup (pg_backup_stop)", e))?;
    let stop_lsn = Lsn::parse(&row.get::<_, String>(0))?;
    let label_file: String = row.get(1);
    let map: Option<String> = row.get(2);
    let tablespace_map = map.filter(|m| !m.trim().is_empty());
    let range = label_range(&label_file, stop_lsn)?;

    let dir_meta = fs::metadata(request.data_dir).map_err(|e| Error::io(request.data_dir, e))?;
    let mut nodes = read.nodes;
    let mut files = read.files;
    let label_node = small_file(writer, BACKUP_LABEL, label_file.as_bytes(), &dir_meta)?;
    files.push(ListedFile {
        path: PathBuf::from(BACKUP_LABEL),
        size: label_file.len() as u64,
        mtime: label_node.mtime,
    });
    nodes.push(label_node);
    let manifest = manifest(&files, &range, info);
    nodes.push(small_file(writer, MANIFEST, &manifest, &dir_meta)?);
    let tree = writer.add_tree(Tree { nodes })?;

    let mut summary = read.summary;
    summary.files += 2;
    summary.bytes += (label_file.len() + manifest.len()) as u64;
    tracing::info!(
        "read {} of {} files ({} reused from the earlier backup, {} vanished while the backup ran)",
        summary.files_new + summary.files_changed,
        summary.files,
        summary.files_unmodified,
        read.vanished
    );
    Ok(FilesTaken {
        taken: Taken {
            stored: Stored {
                tree,
                summary,
                kept: BTreeMap::new(),
            },
            manifest,
            range,
        },
        read_from,
        tablespace_map,
    })
}

/// The data directory's root entries and files, with each tablespace's directory for this server
/// version stored in place of its `pg_tblspc` link.
fn read_cluster(
    writer: &Writer<'_>,
    data_dir: &Path,
    version_dir: &str,
    parent: Option<Id>,
    live: Live,
    progress: &dyn Progress,
) -> Result<DirBackup> {
    let exclusions = data_dir_exclusions(data_dir)?;
    let mut main = read_dir(writer, data_dir, &exclusions, parent, live, progress)?;
    let parent_root = parent
        .map(|id| writer.reader().read_tree(&id))
        .transpose()?;
    let subtree = |tree: Option<&Tree>, name: &[u8]| -> Result<Option<Tree>> {
        tree.and_then(|t| t.find(name))
            .and_then(|n| n.subtree)
            .map(|id| writer.reader().read_tree(&id))
            .transpose()
            .map_err(Error::from)
    };
    let parent_links = subtree(parent_root.as_ref(), b"pg_tblspc")?;
    let mut spaces = Vec::new();
    for (name, location) in tablespaces(data_dir)? {
        let dir = location.join(version_dir);
        let old = subtree(parent_links.as_ref(), name.as_bytes())?;
        let old = old
            .as_ref()
            .and_then(|t| t.find(version_dir.as_bytes()))
            .and_then(|n| n.subtree);
        let read = read_dir(
            writer,
            &dir,
            &tablespace_exclusions(&dir)?,
            old,
            live,
            progress,
        )?;
        let meta = fs::metadata(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut version = files::node_from(version_dir.as_bytes().to_vec(), &meta);
        version.subtree = Some(writer.add_tree(Tree { nodes: read.nodes })?);
        let meta = fs::metadata(&location).map_err(|e| Error::io(&location, e))?;
        let mut space = files::node_from(name.as_bytes().to_vec(), &meta);
        space.subtree = Some(writer.add_tree(Tree {
            nodes: vec![version],
        })?);
        spaces.push(space);
        let prefix = Path::new("pg_tblspc").join(&name).join(version_dir);
        main.files.extend(read.files.into_iter().map(|mut f| {
            f.path = prefix.join(&f.path);
            f
        }));
        add_summary(&mut main.summary, &read.summary);
        main.summary.dirs += 2;
        main.vanished += read.vanished;
    }
    for node in &mut main.nodes {
        match node.name.as_slice() {
            // A pg_wal that links elsewhere (initdb --waldir) is stored as the empty directory it
            // would be in a backup: the restored cluster must not write into the original's WAL.
            b"pg_wal" if node.node_type == NodeType::Symlink => {
                node.node_type = NodeType::Dir;
                node.mode = 0o700;
                node.target = None;
                node.subtree = Some(writer.add_tree(Tree { nodes: Vec::new() })?);
            }
            b"pg_tblspc" if node.node_type == NodeType::Dir => {
                node.subtree = Some(writer.add_tree(Tree {
                    nodes: std::mem::take(&mut spaces),
                })?);
            }
            _ => {}
        }
    }
    Ok(main)
}

/// The cluster's tablespaces: each entry of `pg_tblspc` (a link, or an in-place directory) and
/// the directory it stands for.
fn tablespaces(data_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = data_dir.join("pg_tblspc");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            tracing::warn!("ignoring {} in pg_tblspc: not a tablespace OID", name);
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// One directory read as a live data directory; an entry that could not be read fails the backup
/// (a base backup with a file missing would restore to a broken cluster).
fn read_dir(
    writer: &Writer<'_>,
    dir: &Path,
    exclusions: &Exclusions,
    parent: Option<Id>,
    live: Live,
    progress: &dyn Progress,
) -> Result<DirBackup> {
    let read = files::backup_dir(writer, dir, parent, exclusions, live, progress)?;
    if let Some(first) = read.errors.first() {
        // Only a refusal is fixed by another user; an I/O error (a failing disk) is not.
        // (The message is the OS's text: "Permission denied (os error 13)".)
        let fix = if first
            .message
            .to_ascii_lowercase()
            .contains("permission denied")
        {
            "run lifeline as the data directory's owner (or a member of its group with initdb --allow-group-access)"
        } else {
            "a base backup needs every file: repair what stops it being read (the storage, for an I/O error) and run the backup again"
        };
        // Errors from opening or reading a file already start with its path.
        let cause = first
            .message
            .strip_prefix(&format!("{}: ", first.path))
            .unwrap_or(&first.message);
        let more = match read.errors.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more under {})", dir.display()),
        };
        return Err(Error::Invalid(format!(
            "{} could not be read: {cause}{more}; {fix}",
            first.path
        )));
    }
    Ok(read)
}

fn add_summary(into: &mut Summary, from: &Summary) {
    into.files += from.files;
    into.dirs += from.dirs;
    into.bytes += from.bytes;
    into.files_new += from.files_new;
    into.files_changed += from.files_changed;
    into.files_unmodified += from.files_unmodified;
}

/// What a base backup leaves out of the data directory, as `pg_basebackup` does: the contents of
/// directories the server rebuilds at start (pg_wal comes from the archive), files of the running
/// server, temporary files and temporary relations.
fn data_dir_exclusions(data_dir: &Path) -> Result<Exclusions> {
    let d = escaped(data_dir)?;
    let mut patterns: Vec<String> = [
        "pg_wal",
        "pg_stat_tmp",
        "pg_replslot",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_subtrans",
        // Read through their links by `read_cluster`.
        "pg_tblspc",
    ]
    .iter()
    .map(|dir| format!("{d}/{dir}/*"))
    .collect();
    patterns.extend(
        [
            "postmaster.pid",
            "postmaster.opts",
            "backup_label",
            "tablespace_map",
            "current_logfiles",
            "postgresql.auto.conf.tmp",
            "**/pg_internal.init*",
            "**/pgsql_tmp*",
            "base/*/t[0-9]*_[0-9]*",
        ]
        .iter()
        .map(|p| format!("{d}/{p}")),
    );
    Ok(Exclusions::new(&patterns, false, false)?)
}

/// A tablespace's version directory: its temporary files and relations.
fn tablespace_exclusions(dir: &Path) -> Result<Exclusions> {
    let d = escaped(dir)?;
    let patterns = vec![
        format!("{d}/**/pgsql_tmp*"),
        format!("{d}/*/t[0-9]*_[0-9]*"),
    ];
    Ok(Exclusions::new(&patterns, false, false)?)
}

fn escaped(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| {
        Error::Invalid(format!(
            "the data directory path {} is not UTF-8; use --mode stream",
            path.display()
        ))
    })?;
    Ok(globset::escape(text.trim_end_matches('/')))
}

/// `PG_<major>_<catalog version>`: the directory a tablespace keeps this server version's files in.
fn tablespace_version_dir(client: &mut postgres::Client, info: &ServerInfo) -> Result<String> {
    let catalog: i32 = client
        .query_one("SELECT catalog_version_no FROM pg_control_system()", &[])
        .map_err(|e| Error::db("reading the catalog version", e))?
        .get(0);
    Ok(format!("PG_{}_{catalog}", info.major))
}

/// The WAL range from `pg_backup_stop`'s label (`START WAL LOCATION`, `START TIMELINE`) and its
/// stop LSN.
fn label_range(label: &str, stop: Lsn) -> Result<WalRange> {
    let field = |name: &str| {
        label
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .ok_or_else(|| Error::Invalid(format!("backup_label from pg_backup_stop lacks {name}")))
    };
    let start = field("START WAL LOCATION:")?;
    let start = Lsn::parse(start.split_whitespace().next().unwrap_or_default())?;
    let timeline = field("START TIMELINE:")?;
    let timeline = timeline
        .parse()
        .map_err(|_| Error::Invalid(format!("backup_label: timeline {timeline:?}")))?;
    Ok(WalRange {
        timeline,
        start,
        stop,
    })
}

/// A small file at the root of the stored tree (the label, the manifest), owned like the data
/// directory and readable by its owner only, as PostgreSQL writes them.
fn small_file(writer: &Writer<'_>, name: &str, data: &[u8], dir: &fs::Metadata) -> Result<Node> {
    let mut node = files::node_from(name.as_bytes().to_vec(), dir);
    node.node_type = NodeType::File;
    node.mode = 0o600;
    node.mtime = now_ns();
    node.size = Some(data.len() as u64);
    node.inode = 0;
    node.nlink = 1;
    let mut bundle = Bundle::default();
    let offset = bundle.push(data);
    let id = bundle.seal(writer)?;
    node.content = Some(vec![ContentRef(id, offset, data.len() as u64)]);
    Ok(node)
}

/// A `backup_manifest` in PostgreSQL's format for the stored tree, so `pg_verifybackup` checks a
/// restored directory (every file there with its size, nothing more) and, from 17 on, a block-level
/// incremental can build on it (version 2, which names the cluster). It carries no per-file
/// checksums: the repository verifies every chunk it restores.
fn manifest(files: &[ListedFile], range: &WalRange, info: &ServerInfo) -> Vec<u8> {
    let mut files: Vec<&ListedFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut text = if info.major >= 17 {
        format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": {},\n\"Files\": [\n",
            info.system_id
        )
    } else {
        String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n")
    };
    for (i, file) in files.iter().enumerate() {
        let modified = chrono::DateTime::from_timestamp(file.mtime.div_euclid(1_000_000_000), 0)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S GMT");
        // PostgreSQL's own rule: a path that is not UTF-8 goes hex-encoded.
        let path = match file.path.to_str() {
            Some(p) => format!("\"Path\": {}", serde_json::Value::from(p)),
            None => format!(
                "\"Encoded-Path\": \"{}\"",
                hex::encode(file.path.as_os_str().as_encoded_bytes())
            ),
        };
        let comma = if i + 1 < files.len() { "," } else { "" };
        text.push_str(&format!(
            "{{ {path}, \"Size\": {}, \"Last-Modified\": \"{modified}\" }}{comma}\n",
            file.size
        ));
    }
    text.push_str(&format!(
        "],\n\"WAL-Ranges\": [\n{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}\n],\n",
        range.timeline, range.start, range.stop
    ));
    // The checksum covers everything up to and including the newline before its own line.
    let checksum = hex::encode(Sha256::digest(text.as_bytes()));
    text.push_str(&format!("\"Manifest-Checksum\": \"{checksum}\"}}\n"));
    text.into_bytes()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_gives_the_start_and_timeline() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-03 07:00:00 UTC\nLABEL: lifeline\nSTART TIMELINE: 3\n";
        let range = label_range(label, Lsn(0x300_0000)).expect("range");
        assert_eq!(range.timeline, 3);
        assert_eq!(range.start, Lsn(0x200_0028));
        assert_eq!(range.stop, Lsn(0x300_0000));
        assert!(label_range("LABEL: x\n", Lsn(1)).is_err());
    }

    #[test]
    fn the_exclusions_leave_out_what_pg_basebackup_leaves_out() {
        let ex = data_dir_exclusions(Path::new("/var/lib/pg [15]/main")).expect("patterns");
        let d = "/var/lib/pg [15]/main";
        for out in [
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status",
            "pg_replslot/slot",
            "postmaster.pid",
            "base/5/pg_internal.init",
            "global/pg_internal.init.1234",
            "base/pgsql_tmp",
            "base/5/t3_16384",
            "base/5/t3_16384_fsm",
        ] {
            assert!(ex.excludes(Path::new(&format!("{d}/{out}"))), "{out}");
        }
        for kept in [
            "pg_wal",
            "base/5/16384",
            "base/5/16384_fsm",
            "global/pg_control",
            "postgresql.auto.conf",
            "pg_xact/0000",
        ] {
            assert!(!ex.excludes(Path::new(&format!("{d}/{kept}"))), "{kept}");
        }
    }
}
