use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{ObjectInfo, Staged, Storage, STAGING_STALE_AFTER};
use crate::error::{Error, Result};

/// A repository in a local directory. Writes go to `tmp/`, are fsynced, then hard-linked into place:
/// `link` fails when the target exists, which gives create-only semantics without a lock.
pub struct LocalStorage {
    root: PathBuf,
    // Objects never change once written, so an open handle stays valid; reopening a pack for every
    // blob read cost more than the read itself.
    handles: Mutex<HashMap<String, Arc<File>>>,
}

/// Open read handles kept at most; the cache is emptied when it fills.
const MAX_HANDLES: usize = 128;

const TMP_DIR: &str = "tmp";

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage {
            root: root.into(),
            handles: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let valid = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !valid {
            return Err(Error::Invalid(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    fn read_handle(&self, key: &str, path: &Path) -> Result<Arc<File>> {
        let mut handles = self
            .handles
            .lock()
            .map_err(|_| Error::Invalid("storage handle cache poisoned".into()))?;
        if let Some(file) = handles.get(key) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(File::open(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::ObjectMissing { key: key.into() },
            _ => Error::io(path, e),
        })?);
        if handles.len() >= MAX_HANDLES {
            handles.clear();
        }
        handles.insert(key.to_string(), Arc::clone(&file));
        Ok(file)
    }

    fn write_tmp(&self, data: &[u8]) -> Result<PathBuf> {
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // The owner in the name: a later writer on this host removes it once this process is gone.
        let tmp = dir.join(format!("{}-{:016x}", owner_tag(), rand::random::<u64>()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        if let Err(e) = file.write_all(data).and_then(|()| file.sync_all()) {
            // On a full disk the half-written file would hold on to the space it took until a
            // later session swept it: give it back now.
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        Ok(tmp)
    }
}

/// The file's mtime: set by the kernel (or the file server) when the staged copy was written.
fn modified(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `<boot>.<pid namespace>.<pid>`: which process of which boot of this host writes a staging file.
fn owner_tag() -> String {
    format!("{}.{}", crate::session::process_scope(), std::process::id())
}

/// Whether a staging file's writer has provably ended: its name carries this boot and PID namespace
/// of this host, and a process that no longer runs.
fn writer_gone(name: &str) -> bool {
    let Some((owner, _)) = name.rsplit_once('-') else {
        return false;
    };
    let Some((scope, pid)) = owner.rsplit_once('.') else {
        return false;
    };
    scope == crate::session::process_scope()
        && pid
            .parse::<u32>()
            .is_ok_and(|pid| !crate::session::process_alive(pid))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

impl Storage for LocalStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<bool> {
        let dest = self.path(key)?;
        if dest.exists() {
            return Ok(false);
        }
        let parent = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = self.write_tmp(data)?;
        let linked = fs::hard_link(&tmp, &dest);
        // The temporary name is only a staging area; losing it to a crash leaves garbage, not damage.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(parent)?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(&dest, e)),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::ObjectMissing { key: key.into() },
            _ => Error::io(&path, e),
        })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        let file = self.read_handle(key, &path)?;
        let len = usize::try_from(len).map_err(|_| Error::Invalid("range too large".into()))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| match e.kind() {
                ErrorKind::UnexpectedEof => Error::corrupt(
                    key,
                    format!(
                        "shorter than expected (wanted bytes {offset}..{})",
                        offset + len as u64
                    ),
                ),
                _ => Error::io(&path, e),
            })?;
        Ok(buf)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk only the directory the prefix names, never `tmp/`.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_part)?
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, dir_part.to_string())];
        while let Some((dir, key_prefix)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let key = if key_prefix.is_empty() {
                    name
                } else {
                    format!("{key_prefix}/{name}")
                };
                if key == TMP_DIR {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    // Deleted while listed (a prune, a forget): it is simply not there.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(entry.path(), e)),
                };
                if meta.is_dir() {
                    if prefix.starts_with(&format!("{key}/")) || key.starts_with(prefix) {
                        stack.push((entry.path(), key));
                    }
                } else if key.starts_with(prefix) {
                    out.push(ObjectInfo {
                        key,
                        size: meta.len(),
                        modified: modified(&meta),
                    });
                }
            }
        }
        Ok(out)
    }

    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
                key: key.into(),
                size: meta.len(),
                modified: modified(&meta),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        if let Ok(mut handles) = self.handles.lock() {
            handles.remove(key);
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn replace(&self, key: &str, data: &[u8]) -> Result<()> {
        let dest = self.path(key)?;
        let parent = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = self.write_tmp(data)?;
        // `rename` swaps the name over in one step: a crash leaves the old file or the new one.
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&dest, e));
        }
        if let Ok(mut handles) = self.handles.lock() {
            handles.remove(key);
        }
        sync_dir(parent)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn staging(&self) -> Result<Vec<Staged>> {
        let dir = self.root.join(TMP_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let now = SystemTime::now();
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let modified = modified(&meta);
            let old = now.duration_since(modified).unwrap_or_default() >= STAGING_STALE_AFTER;
            out.push(Staged {
                stale: old || writer_gone(&name),
                info: ObjectInfo {
                    key: format!("{TMP_DIR}/{name}"),
                    size: meta.len(),
                    modified,
                },
            });
        }
        Ok(out)
    }

    fn clean_staging(&self) -> Result<Vec<Staged>> {
        let mut removed = Vec::new();
        for staged in self.staging()?.into_iter().filter(|s| s.stale) {
            let path = self.root.join(&staged.info.key);
            match fs::remove_file(&path) {
                Ok(()) => removed.push(staged),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(removed)
    }
}
