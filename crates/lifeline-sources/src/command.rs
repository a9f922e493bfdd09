//! Any program whose standard output is the backup (`terraform state pull`, `vault operator raft
//! snapshot save /dev/stdout`): streamed into the repository as one file. The program must exit 0 and
//! print something; otherwise the capture fails and no snapshot is saved.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::Writer;

use crate::{stdin, Progress};

/// The snapshot kind of a command's output.
pub const KIND: &str = "command";

/// What to run.
#[derive(Debug, Clone)]
pub struct CommandRequest<'a> {
    /// Run with `sh -c`.
    pub command: &'a str,
    /// Name of the stored file.
    pub filename: &'a str,
    /// Killed, and failed, after this long.
    pub timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start command {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("command {command:?} failed ({status}); no snapshot was saved{}", stderr_tail(.stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("command {command:?} printed nothing; an empty backup is refused and no snapshot was saved (check that it writes the backup to standard output)")]
    Empty { command: String },
    #[error("command {command:?} ran longer than its timeout of {}s and was killed; no snapshot was saved", .timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
}

/// The last lines a failed program said on stderr, as `": a | b"` (empty when it said nothing), for
/// an error message. Also used for the secret commands of lifeline-plan.
pub fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines[lines.len().saturating_sub(5)..].join(" | "))
    }
}

/// Run the command and store its output; the snapshot is returned unsaved.
pub fn capture(
    writer: &Writer<'_>,
    request: &CommandRequest<'_>,
    progress: &dyn Progress,
) -> Result<Snapshot, Error> {
    let command = request.command.to_string();
    // Not a process group of its own: the daemon stops a job by killing the job's group, and that
    // must reach this command too. A timeout kills the command's process tree instead.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(request.command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    let stdout = child.stdout.take().ok_or_else(|| Error::Spawn {
        command: command.clone(),
        source: std::io::Error::other("no stdout pipe"),
    })?;
    // stderr is drained beside stdout, so a chatty program cannot block on a full pipe.
    let stderr = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    let child = Arc::new(Mutex::new(child));
    let timed_out = Arc::new(AtomicBool::new(false));
    let done = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let watchdog = request.timeout.map(|limit| {
        let (child, timed_out, done) = (
            Arc::clone(&child),
            Arc::clone(&timed_out),
            Arc::clone(&done),
        );
        std::thread::spawn(move || {
            let (lock, cvar) = &*done;
            let Ok(guard) = lock.lock() else { return };
            let Ok((finished, _)) = cvar.wait_timeout_while(guard, limit, |finished| !*finished)
            else {
                return;
            };
            if !*finished {
                timed_out.store(true, Ordering::SeqCst);
                if let Ok(c) = child.lock() {
                    kill_tree(c.id());
                }
            }
        })
    });
    let stored = stdin::backup(writer, request.filename, stdout, progress);
    let status = child
        .lock()
        .map_err(|_| Error::Spawn {
            command: command.clone(),
            source: std::io::Error::other("command state poisoned"),
        })?
        .wait();
    {
        let (lock, cvar) = &*done;
        if let Ok(mut finished) = lock.lock() {
            *finished = true;
        }
        cvar.notify_all();
    }
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    let stderr = stderr_reader.join().unwrap_or_default();
    if let (true, Some(timeout)) = (timed_out.load(Ordering::SeqCst), request.timeout) {
        return Err(Error::TimedOut { command, timeout });
    }
    let status = status.map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        return Err(Error::Failed {
            command,
            status: status.to_string(),
            stderr,
        });
    }
    let (tree, summary) = stored?;
    if summary.bytes == 0 {
        return Err(Error::Empty { command });
    }
    let mut snapshot = Snapshot::new(KIND, vec![request.filename.to_string()], tree);
    snapshot.summary = summary;
    snapshot.source.insert("command".into(), command);
    Ok(snapshot)
}

/// Kill `root` and every process below it: the whole pipeline of `sh -c 'a | b'`, so no child
/// keeps the output pipe open after a timeout. Children are found through /proc.
pub fn kill_tree(root: u32) {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // The parent is the second field after the command name, which may hold spaces.
            let ppid = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1.to_string();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    for pid in tree {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
