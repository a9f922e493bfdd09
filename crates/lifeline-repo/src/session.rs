//! Write-session markers (format.md §13): every session that may reference existing packs announces
//! itself in `sessions/` before it reads the index, keeps the announcement fresh, and removes it when it
//! is done. Prune deletes nothing a session that started before its mark might still rely on.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// A session not heard from for this long (storage time) is presumed dead.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often a session renews its marker.
pub const HEARTBEAT: Duration = Duration::from_secs(600);
/// How far the store's clock may step back between two objects (format.md §1).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

const PREFIX: &str = "sessions/";

/// The plain JSON of a marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub session: String,
    pub seq: u64,
    pub hostname: String,
    pub pid: u32,
    /// The kernel's boot ID and the PID namespace: a PID means this process only on the same boot
    /// of the same host, in the same namespace.
    pub boot_id: String,
    #[serde(default)]
    pub pid_namespace: String,
    /// What the session is: `write` (a backup or copy) or `prune`.
    pub command: String,
    /// The writer's clock, for people.
    pub started: String,
    /// The tag (8 hex digits) of the key epoch the session seals under, so `key destroy-epoch`
    /// waits for it (format.md §3.2); absent in markers of sessions that seal nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// This process's identity as markers record it.
fn local_identity() -> (String, String, String) {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let pid_namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    (crate::host::hostname(), boot_id, pid_namespace)
}

/// `<boot id prefix>.<pid namespace>`: with a PID, names one process of this boot of this host.
pub(crate) fn process_scope() -> String {
    let (_, boot_id, namespace) = local_identity();
    let boot: String = boot_id.chars().take(8).collect();
    let namespace: String = namespace.chars().filter(char::is_ascii_digit).collect();
    format!("{boot}.{namespace}")
}

/// Whether a process runs under `pid` here (a zombie does not: in a container whose PID 1 never
/// reaps, a killed process stays a zombie).
pub(crate) fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

fn marker_key(session: &str, seq: u64) -> String {
    format!("{PREFIX}{session}-{seq}")
}

/// A running session of this process. Dropping it ends it.
pub struct Session {
    storage: Arc<dyn Storage>,
    marker: Marker,
    started: SystemTime,
    /// The sequence number of the newest marker, and when it was stored (monotonic clock).
    beat: Arc<Mutex<(u64, Instant)>>,
    heartbeat: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Session {
    /// Announce a session: store its first marker and learn the store's time from it.
    pub fn start(storage: Arc<dyn Storage>, command: &str) -> Result<Session> {
        Self::start_sealing(storage, command, None)
    }

    /// [`Session::start`] for a session that seals new objects under the epoch tagged `epoch`.
    pub fn start_sealing(
        storage: Arc<dyn Storage>,
        command: &str,
        epoch: Option<u32>,
    ) -> Result<Session> {
        let (hostname, boot_id, pid_namespace) = local_identity();
        let marker = Marker {
            session: hex::encode(rand::random::<[u8; 16]>()),
            seq: 0,
            hostname,
            pid: std::process::id(),
            boot_id,
            pid_namespace,
            command: command.to_string(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            epoch: epoch.map(crate::keys::tag_hex),
        };
        let key = marker_key(&marker.session, 0);
        storage.put(&key, &to_json(&marker)?)?;
        let stored_at = Instant::now();
        let started = storage
            .stat(&key)?
            .ok_or_else(|| Error::ObjectMissing { key: key.clone() })?
            .modified;
        let beat = Arc::new(Mutex::new((0, stored_at)));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = {
            let storage = Arc::clone(&storage);
            let beat = Arc::clone(&beat);
            let marker = marker.clone();
            std::thread::Builder::new()
                .name("session-heartbeat".into())
                .spawn(move || loop {
                    match stopped.recv_timeout(HEARTBEAT) {
                        Err(RecvTimeoutError::Timeout) => renew(storage.as_ref(), &marker, &beat),
                        _ => return,
                    }
                })
                .map_err(|e| Error::io("session heartbeat thread", e))?
        };
        Ok(Session {
            storage,
            marker,
            started,
            beat,
            heartbeat: Some((stop, thread)),
        })
    }

    /// When the session started, by the store's clock.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    pub fn id(&self) -> &str {
        &self.marker.session
    }

    /// Refuse to go on when the session has not renewed its marker for half the timeout: a prune may
    /// then have presumed it dead and deleted what it relies on.
    pub fn ensure_trusted(&self) -> Result<()> {
        let since = self
            .beat
            .lock()
            .map(|b| b.1.elapsed())
            .unwrap_or(Duration::MAX);
        if since >= SESSION_TIMEOUT / 2 {
            return Err(Error::Invalid(format!(
                "this session could not renew its marker for {} min, so a prune may have presumed it dead; nothing was recorded: run it again",
                since.as_secs() / 60
            )));
        }
        Ok(())
    }

    /// End the session: stop the heartbeat and remove the markers (newest first, `-0` last, so a
    /// session without its `-0` marker is over). A marker that cannot be removed is only a warning:
    /// what the session wrote is complete, and prune presumes the session dead later.
    pub fn end(self) {
        drop(self);
    }

    fn finish(&mut self) -> Result<()> {
        let Some((stop, thread)) = self.heartbeat.take() else {
            return Ok(());
        };
        drop(stop);
        let _ = thread.join();
        let seq = self.beat.lock().map(|b| b.0).unwrap_or(0);
        if seq > 0 {
            self.storage
                .delete(&marker_key(&self.marker.session, seq))?;
        }
        self.storage.delete(&marker_key(&self.marker.session, 0))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(
                "could not remove session marker {}: {e} (prune will presume the session dead after {} min)",
                self.marker.session,
                SESSION_TIMEOUT.as_secs() / 60
            );
        }
    }
}

fn to_json(marker: &Marker) -> Result<Vec<u8>> {
    serde_json::to_vec(marker).map_err(|e| Error::Format(format!("session marker JSON: {e}")))
}

/// Store the next marker, then remove the previous heartbeat (never `-0`, which dates the start).
fn renew(storage: &dyn Storage, marker: &Marker, beat: &Mutex<(u64, Instant)>) {
    let Ok(mut guard) = beat.lock() else { return };
    let next = Marker {
        seq: guard.0 + 1,
        ..marker.clone()
    };
    let stored =
        to_json(&next).and_then(|json| storage.put(&marker_key(&next.session, next.seq), &json));
    match stored {
        Ok(_) => {
            if guard.0 > 0 {
                let _ = storage.delete(&marker_key(&next.session, guard.0));
            }
            *guard = (next.seq, Instant::now());
        }
        Err(e) => tracing::warn!("could not renew session marker {}: {e}", next.session),
    }
}

/// Another session as its markers show it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub session: String,
    pub hostname: String,
    pub pid: u32,
    pub command: String,
    /// Storage times of its `-0` marker and of its newest one.
    #[serde(skip)]
    pub started: SystemTime,
    #[serde(skip)]
    pub last_seen: SystemTime,
    pub started_at: String,
    /// Why it counts as live or dead.
    pub live: bool,
    pub why: String,
    /// The tag of the key epoch it seals under, when its marker says.
    #[serde(skip)]
    pub epoch: Option<u32>,
}

/// Every session in the repository, judged at storage time `now`. Leftover heartbeat markers of
/// sessions whose `-0` marker is gone are skipped (the session ended).
pub fn list(storage: &dyn Storage, now: SystemTime) -> Result<Vec<SessionInfo>> {
    let mut groups: BTreeMap<String, Vec<(u64, crate::storage::ObjectInfo)>> = BTreeMap::new();
    for o in storage.list(PREFIX)? {
        let Some((sid, seq)) = o.key[PREFIX.len()..].rsplit_once('-') else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            continue;
        };
        groups.entry(sid.to_string()).or_default().push((seq, o));
    }
    let (hostname, boot_id, pid_namespace) = local_identity();
    let mut out = Vec::new();
    for (sid, mut markers) in groups {
        markers.sort_by_key(|(seq, _)| *seq);
        let Some((0, first)) = markers.first() else {
            continue;
        };
        let Some((_, newest)) = markers.last() else {
            continue;
        };
        let marker: Marker = match storage.get(&newest.key) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(&newest.key, format!("session marker JSON: {e}")))?,
            // Ended between the listing and the read.
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => return Err(e),
        };
        let last_seen = markers
            .iter()
            .map(|(_, o)| o.modified)
            .max()
            .unwrap_or(first.modified);
        let silent = now.duration_since(last_seen).unwrap_or_default();
        let same_boot = marker.hostname == hostname
            && marker.boot_id == boot_id
            && !boot_id.is_empty()
            && marker.pid_namespace == pid_namespace;
        let (live, why) = if same_boot && !process_alive(marker.pid) {
            (
                false,
                format!("process {} on this host has ended", marker.pid),
            )
        } else if silent >= SESSION_TIMEOUT {
            (
                false,
                format!("not heard from for {} min", silent.as_secs() / 60),
            )
        } else {
            (true, format!("last heard from {} s ago", silent.as_secs()))
        };
        let epoch = marker
            .epoch
            .as_deref()
            .and_then(|t| u32::from_str_radix(t, 16).ok());
        out.push(SessionInfo {
            epoch,
            session: sid,
            hostname: marker.hostname,
            pid: marker.pid,
            command: marker.command,
            started: first.modified,
            last_seen,
            started_at: marker.started,
            live,
            why,
        });
    }
    Ok(out)
}

/// Another live session running one of `commands`, judged at `ours`'s start. Prune and repair
/// rewrite index files and each assumes no other of them does meanwhile, so they run one at a time.
pub fn running(
    storage: &dyn Storage,
    ours: &Session,
    commands: &[&str],
) -> Result<Option<SessionInfo>> {
    Ok(list(storage, ours.started())?
        .into_iter()
        .find(|s| s.session != ours.id() && s.live && commands.contains(&s.command.as_str())))
}
