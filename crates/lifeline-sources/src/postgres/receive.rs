//! `pg receive-wal`: WAL streamed on a replication slot by PostgreSQL's own `pg_receivewal` into a
//! local directory, and from there into the repository. A finished segment (or timeline history
//! file) is stored under the key `pg wal-push` gives it, so `wal-fetch`, `pg status`, retention and
//! copies cannot tell the two apart, then removed from the directory. The segment still being
//! written is stored every few seconds as `<segment>.partial.<16 hex digits>` (its first that many
//! bytes): without `archive_timeout`, an idle server may take hours to fill a segment, and this is
//! what keeps the data at risk to seconds.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lifeline_repo::named::Stored;
use lifeline_repo::Repository;
use serde::Serialize;

use super::error::{Error, Result};
use super::tools::{self, Tools};
use super::wal::{self, WalKind, WalName, WAL_COMPRESSION};

/// The program that speaks the replication protocol.
pub const TOOL: &str = "pg_receivewal";

/// How often the directory is looked at: a finished segment reaches the repository within this.
/// Polling, not file notifications: one `read_dir` of a handful of entries five times a second
/// costs nothing, and needs no dependency.
const POLL: Duration = Duration::from_millis(200);

/// How long pg_receivewal may take to flush and exit once asked to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Lines of pg_receivewal's standard error kept for the error that names its failure.
const STDERR_LINES: usize = 20;

/// What to receive.
#[derive(Debug, Clone)]
pub struct ReceiveRequest<'a> {
    /// libpq connection URI or key=value string (pg_receivewal adds `replication=true` itself).
    pub url: &'a str,
    /// The physical replication slot to stream on.
    pub slot: &'a str,
    /// Create the slot if it does not exist.
    pub create_slot: bool,
    /// Where pg_receivewal writes; created if missing.
    pub dir: &'a Path,
    /// How often the segment in progress is stored, if it grew.
    pub partial_every: Duration,
}

/// What the receiver did, as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// pg_receivewal is running on the slot.
    Started {
        system_id: u64,
        /// Whether the slot was created just now.
        slot_created: bool,
    },
    /// A finished segment or timeline history file is in the repository.
    Stored { key: &'a str, stored: Stored },
    /// The first `bytes` of the segment in progress are in the repository.
    Partial { key: &'a str, bytes: u64 },
}

/// What a run of the receiver stored.
#[derive(Debug, Default, Serialize)]
pub struct Received {
    pub system_id: String,
    pub slot: String,
    /// Finished segments and history files stored (archived already with the same bytes included).
    pub files: usize,
    /// Of those, the ones `archive_command` (or an earlier run) had already stored.
    pub already_archived: usize,
    /// Parts of segments in progress stored.
    pub partials: usize,
    /// The key of the last part stored, if any: where recovery from this archive ends.
    pub last_partial: Option<String>,
}

/// Stream WAL from the server at `request.url` into `repo` until `stop` is set (SIGTERM or SIGINT
/// in the binary), then stop pg_receivewal, store what it flushed last, and return. `tools` picks
/// the client programs for a server major version; `on_event` hears of every object stored.
///
/// Everything that can be checked before streaming is: the role's REPLICATION attribute, the slot
/// (missing without `create_slot`, or logical), and that the directory holds no other cluster's
/// WAL. pg_receivewal runs with `--no-loop`: a lost connection ends the run with its standard
/// error, for a supervisor to restart it, instead of retrying unseen.
pub fn receive(
    repo: &Repository,
    request: &ReceiveRequest<'_>,
    tools: &dyn Fn(u32) -> Tools,
    stop: &AtomicBool,
    on_event: &dyn Fn(&Event<'_>),
) -> Result<Received> {
    let mut client = tools::connect(request.url)?;
    let major = tools::server_major(&mut client)?;
    // From 15 on, pg_receivewal starting on an empty directory asks the server where the slot
    // stands (READ_REPLICATION_SLOT); before, it starts at the server's current position, and the
    // WAL between the slot and there would silently be missing.
    if major < 15 {
        return Err(Error::ReceiveTooOld { major });
    }
    let system_id = system_identifier(&mut client)?;
    check_role(&mut client)?;
    let slot_exists = check_slot(&mut client, request.slot)?;
    if !slot_exists && !request.create_slot {
        return Err(Error::SlotMissing {
            slot: request.slot.to_string(),
        });
    }
    drop(client);
    let tools = tools(major);
    tools.check_version(TOOL, major)?;
    fs::create_dir_all(request.dir).map_err(|e| Error::io(request.dir, e))?;
    check_dir(request.dir, system_id)?;
    if !slot_exists {
        // `--if-not-exists`: another receiver creating it at the same moment is no failure.
        tools::run(
            tools
                .command(TOOL)
                .args(["--create-slot", "--if-not-exists", "--no-password"])
                .arg("--slot")
                .arg(request.slot)
                .arg("--dbname")
                .arg(request.url),
            TOOL,
        )?;
    }

    let mut receiver = Receiver {
        repo,
        system_id,
        dir: request.dir,
        stored: HashMap::new(),
        received: Received {
            system_id: system_id.to_string(),
            slot: request.slot.to_string(),
            ..Received::default()
        },
        on_event,
    };
    // What an earlier run finished but did not store goes first.
    receiver.store_finished()?;
    let mut child = Receivewal::spawn(&tools, request)?;
    on_event(&Event::Started {
        system_id,
        slot_created: !slot_exists,
    });
    let mut next_partial = Instant::now() + request.partial_every;
    loop {
        let exited = if stop.load(Ordering::Relaxed) {
            Some(child.stop()?)
        } else {
            child.exited()?
        };
        if let Some(status) = exited {
            // What it flushed before it ended is stored either way.
            let stored = receiver
                .store_finished()
                .and_then(|()| receiver.store_partials());
            // pg_receivewal exits 0 only when told to stop (by us, or by a Ctrl-C that reached
            // the whole process group); with --no-loop anything else ends it with an error.
            if status.success() {
                stored?;
                return Ok(receiver.received);
            }
            if let Err(e) = stored {
                tracing::warn!("storing what pg_receivewal wrote before it failed: {e}");
            }
            return Err(child.failure(&status));
        }
        receiver.store_finished()?;
        if Instant::now() >= next_partial {
            receiver.store_partials()?;
            next_partial = Instant::now() + request.partial_every;
        }
        thread::sleep(POLL);
    }
}

/// The server's system identifier: the first part of every WAL object key.
fn system_identifier(client: &mut postgres::Client) -> Result<u64> {
    let row = client
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .map_err(|e| Error::db("reading the system identifier", e))?;
    let id: i64 = row.get(0);
    // The server shows its unsigned 64-bit identifier as a bigint: the same bits.
    Ok(u64::from_ne_bytes(id.to_ne_bytes()))
}

/// Refuse a role without REPLICATION before pg_receivewal's less helpful refusal.
fn check_role(client: &mut postgres::Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .map_err(|e| Error::db("reading the role's attributes", e))?;
    let (role, may): (String, bool) = (row.get(0), row.get(1));
    if may {
        Ok(())
    } else {
        Err(Error::NoReplication { role })
    }
}

/// Whether the slot exists; an error if it is not a physical slot.
fn check_slot(client: &mut postgres::Client, slot: &str) -> Result<bool> {
    let row = client
        .query_opt(
            "SELECT slot_type::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .map_err(|e| Error::db("reading pg_replication_slots", e))?;
    match row.map(|r| r.get::<_, String>(0)) {
        None => Ok(false),
        Some(kind) if kind == "physical" => Ok(true),
        Some(kind) => Err(Error::SlotNotPhysical {
            slot: slot.to_string(),
            kind,
        }),
    }
}

/// The WAL files in `dir` (segments, pg_receivewal's `.partial` and history files), by name.
fn wal_files(dir: &Path) -> Result<Vec<(WalName, PathBuf)>> {
    let mut files: Vec<(WalName, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = WalName::parse(entry.file_name().to_str()?).ok()?;
            Some((name, entry.path()))
        })
        .collect();
    files.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(files)
}

/// The cluster a WAL file belongs to, from its first page; `None` when nothing was written yet.
fn cluster_of(path: &Path) -> Result<Option<u64>> {
    let mut head = Vec::with_capacity(64);
    match fs::File::open(path).and_then(|f| f.take(64).read_to_end(&mut head)) {
        Ok(_) => Ok(wal::segment_header(&head).map(|(sysid, _)| sysid)),
        // Renamed by pg_receivewal (a `.partial` finished) between the listing and now.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Refuse a directory that holds another cluster's WAL: pg_receivewal would continue from it, and
/// its segments would be stored under this cluster's keys.
fn check_dir(dir: &Path, system_id: u64) -> Result<()> {
    for (name, path) in wal_files(dir)? {
        if matches!(name.kind, WalKind::History) {
            continue;
        }
        if let Some(found) = cluster_of(&path)?.filter(|&found| found != system_id) {
            return Err(Error::OtherClusterWal {
                dir: dir.to_path_buf(),
                found,
                expected: system_id,
            });
        }
    }
    Ok(())
}

/// Stores what pg_receivewal writes.
struct Receiver<'a> {
    repo: &'a Repository,
    system_id: u64,
    dir: &'a Path,
    /// By `.partial` file name, the WAL bytes stored of it. Whether it grew is judged by reading it,
    /// not by its modification time: file times are coarse, and a write in the same tick as the
    /// last read would go unseen until the next one, which on an idle server may be hours away.
    stored: HashMap<String, u64>,
    received: Received,
    on_event: &'a dyn Fn(&Event<'_>),
}

impl Receiver<'_> {
    fn other_cluster(&self, found: u64) -> Error {
        Error::OtherClusterWal {
            dir: self.dir.to_path_buf(),
            found,
            expected: self.system_id,
        }
    }

    /// Store and remove every finished segment and history file in the directory, oldest first.
    fn store_finished(&mut self) -> Result<()> {
        for (name, path) in wal_files(self.dir)? {
            match name.kind {
                WalKind::Segment { .. } => self.store_segment(&name, &path)?,
                WalKind::History => {
                    self.store_file(&name, &path)?;
                }
                // pg_receivewal's segment in progress: `store_partials`.
                _ => {}
            }
        }
        Ok(())
    }

    fn store_segment(&mut self, name: &WalName, path: &Path) -> Result<()> {
        let size = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        // pg_receivewal renames a segment only once it is whole: anything else came from elsewhere.
        if !wal::is_segment_size(size) {
            return Err(Error::Invalid(format!(
                "{} is {size} bytes, not a whole WAL segment; pg_receivewal did not write it: move it out of the directory",
                path.display()
            )));
        }
        match cluster_of(path)? {
            Some(found) if found != self.system_id => return Err(self.other_cluster(found)),
            Some(_) => {}
            None => {
                return Err(Error::Invalid(format!(
                    "{} does not start with a WAL page header; pg_receivewal did not write it: move it out of the directory",
                    path.display()
                )))
            }
        }
        let key = self.store_file(name, path)?;
        // The whole segment supersedes its parts; recovery reads it instead.
        for part in wal::streamed_keys(self.repo, &key)? {
            self.repo.delete_named(&part)?;
        }
        self.stored.remove(&format!("{}.partial", name.name));
        Ok(())
    }

    /// Store a finished file under `pg wal-push`'s key and remove it from the directory.
    fn store_file(&mut self, name: &WalName, path: &Path) -> Result<String> {
        let key = wal::object_key(self.system_id, name);
        let stored = self.repo.put_named_file(&key, path, WAL_COMPRESSION)?;
        (self.on_event)(&Event::Stored { key: &key, stored });
        self.received.files += 1;
        if stored != Stored::New {
            self.received.already_archived += 1;
        }
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        Ok(key)
    }

    /// Store each segment in progress that holds more WAL than when it was last stored.
    fn store_partials(&mut self) -> Result<()> {
        for (name, path) in wal_files(self.dir)? {
            if matches!(name.kind, WalKind::Partial { .. }) {
                self.store_partial(&name, &path)?;
            }
        }
        Ok(())
    }

    fn store_partial(&mut self, name: &WalName, path: &Path) -> Result<()> {
        let data = match fs::read(path) {
            Ok(data) => data,
            // Finished and renamed since the listing: `store_finished` takes it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        };
        // pg_receivewal pads the file to a whole segment with zeros before it writes WAL into it,
        // and writes in order: the WAL it holds ends at the last byte that is not zero. The exact
        // byte, not its page: two stores within one page must not claim the same key.
        let bytes = data
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i as u64 + 1);
        if bytes <= self.stored.get(&name.name).copied().unwrap_or(0) {
            return Ok(());
        }
        match wal::segment_header(&data) {
            Some((found, _)) if found != self.system_id => return Err(self.other_cluster(found)),
            Some(_) => {}
            // Its first page is not written yet: nothing to store.
            None => return Ok(()),
        }
        let segment = name.name.trim_end_matches(".partial");
        let part = WalName::parse(&wal::streamed_name(segment, bytes))?;
        let key = wal::object_key(self.system_id, &part);
        let end = usize::try_from(bytes).unwrap_or(data.len());
        self.repo.put_named(&key, &data[..end], WAL_COMPRESSION)?;
        (self.on_event)(&Event::Partial { key: &key, bytes });
        self.received.partials += 1;
        self.stored.insert(name.name.clone(), bytes);
        // Deleted only once the larger part is stored: there is always one to fetch.
        let segment_key = wal::object_key(self.system_id, &WalName::parse(segment)?);
        for older in wal::streamed_keys(self.repo, &segment_key)? {
            if older < key {
                self.repo.delete_named(&older)?;
            }
        }
        self.received.last_partial = Some(key);
        Ok(())
    }
}

/// The running pg_receivewal, stopped when dropped (a failed upload ends the run too).
struct Receivewal {
    child: Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Receivewal {
    fn spawn(tools: &Tools, request: &ReceiveRequest<'_>) -> Result<Receivewal> {
        let mut cmd = tools.command(TOOL);
        cmd.arg("--directory")
            .arg(request.dir)
            .arg("--slot")
            .arg(request.slot)
            // Flushed as it arrives: a part stored from the file holds all the server sent.
            .args(["--synchronous", "--no-loop", "--no-password"])
            .arg("--dbname")
            .arg(request.url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| tools::spawn_error(TOOL, e))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let reader = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(std::io::Result::ok) {
                    // Its own words, prefixed with its name; a failure's are in the error too.
                    tracing::info!("{line}");
                    let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                    if lines.len() == STDERR_LINES {
                        lines.pop_front();
                    }
                    lines.push_back(line);
                }
            })
        });
        Ok(Receivewal {
            child,
            stderr,
            reader,
        })
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| Error::Invalid(format!("cannot wait for {TOOL}: {e}")))
    }

    /// SIGINT, as pg_receivewal documents for a clean stop: it flushes and exits 0.
    fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited()? {
            return Ok(status);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "{TOOL} did not stop within {} s; killing it",
                    STOP_GRACE.as_secs()
                );
                let _ = self.child.kill();
                return self
                    .child
                    .wait()
                    .map_err(|e| Error::Invalid(format!("cannot wait for {TOOL}: {e}")));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The error naming pg_receivewal's failure, with its last lines of standard error.
    fn failure(&mut self, status: &ExitStatus) -> Error {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let text = lines.iter().cloned().collect::<Vec<_>>().join("\n");
        tools::tool_failed(TOOL, status, text.as_bytes())
    }
}

impl Drop for Receivewal {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use lifeline_repo::storage::LocalStorage;

    use super::*;

    const SYSTEM_ID: u64 = 7;
    const SEGMENT: &str = "000000010000000000000003";

    /// A segment file as pg_receivewal leaves it: the long page header of cluster `system_id`,
    /// `wal` bytes of WAL that are not zero, zeros to the segment's end.
    fn segment(system_id: u64, wal: usize) -> Vec<u8> {
        let mut data = vec![0u8; wal::DEFAULT_SEGMENT_SIZE as usize];
        data[40..wal].fill(0x5A);
        data[..2].copy_from_slice(&0xD118u16.to_ne_bytes());
        data[2..4].copy_from_slice(&0x0002u16.to_ne_bytes());
        data[24..32].copy_from_slice(&system_id.to_ne_bytes());
        data[32..36].copy_from_slice(&(16u32 << 20).to_ne_bytes());
        data
    }

    fn keys(repo: &Repository) -> Vec<String> {
        let mut keys: Vec<String> = repo
            .storage()
            .list("wal/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn parts_grow_replace_each_other_and_give_way_to_the_whole_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(
            Arc::new(LocalStorage::new(tmp.path().join("repo"))),
            b"pw",
            1 << 20,
        )
        .unwrap();
        let dir = tmp.path().join("received");
        fs::create_dir(&dir).unwrap();
        let events = Mutex::new(Vec::new());
        let on_event = |e: &Event<'_>| events.lock().unwrap().push(format!("{e:?}"));
        let mut receiver = Receiver {
            repo: &repo,
            system_id: SYSTEM_ID,
            dir: &dir,
            stored: HashMap::new(),
            received: Received::default(),
            on_event: &on_event,
        };
        let partial = dir.join(format!("{SEGMENT}.partial"));
        let part = |bytes: u64| format!("wal/7/00000001/{}", wal::streamed_name(SEGMENT, bytes));

        fs::write(&partial, segment(SYSTEM_ID, 0x3000)).unwrap();
        receiver.store_partials().unwrap();
        assert_eq!(keys(&repo), [part(0x3000)]);
        let stored = repo.get_named(&part(0x3000)).unwrap().data;
        assert_eq!(stored.len(), 0x3000, "only the WAL, not the zeros after it");

        // Unchanged: nothing is stored again.
        receiver.store_partials().unwrap();
        assert_eq!(receiver.received.partials, 1);

        // Grown: the larger part replaces the smaller one.
        fs::write(&partial, segment(SYSTEM_ID, 0x5001)).unwrap();
        receiver.store_partials().unwrap();
        assert_eq!(keys(&repo), [part(0x5001)]);
        assert_eq!(receiver.received.last_partial, Some(part(0x5001)));

        // Finished: stored under pg wal-push's key, its parts deleted, the file removed.
        fs::rename(&partial, dir.join(SEGMENT)).unwrap();
        receiver.store_finished().unwrap();
        assert_eq!(keys(&repo), [format!("wal/7/00000001/{SEGMENT}")]);
        assert!(dir_is_empty(&dir));
        assert_eq!(
            (receiver.received.files, receiver.received.partials),
            (1, 2)
        );
        assert_eq!(events.lock().unwrap().len(), 3);

        // Another cluster's WAL is refused, by name.
        fs::write(dir.join("000000010000000000000004"), segment(8, 0x100)).unwrap();
        let err = receiver.store_finished().unwrap_err();
        assert!(
            matches!(
                err,
                Error::OtherClusterWal {
                    found: 8,
                    expected: SYSTEM_ID,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            check_dir(&dir, SYSTEM_ID),
            Err(Error::OtherClusterWal { found: 8, .. })
        ));
        assert!(check_dir(&dir, 8).is_ok());
    }

    fn dir_is_empty(dir: &Path) -> bool {
        fs::read_dir(dir).unwrap().next().is_none()
    }
}
