//! The environment part of a config drill: the stored `environment.env` is written into the scratch
//! directory and loaded by `sh` the way a person restoring it would (`set -a; . ./environment.env`);
//! every variable must come out with the value the file holds, and the file must hold the names the
//! snapshot recorded.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lifeline_repo::drill::{CheckResult, Step};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::tree::NodeType;
use lifeline_repo::BlobReader;

use super::{environment, keys, ENV_FILE};
use crate::drill::{check, Check};

/// The name of the drill's step and check.
pub(super) const STEP: &str = "environment";

/// The step (and its check, when it got that far) for a snapshot that holds variables; `None` for
/// one that only holds files.
pub(super) fn environment(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
    scratch: &Path,
) -> Option<(Step, Option<Check>)> {
    let clock = Instant::now();
    let expected = snapshot.source.contains_key(keys::VARIABLES);
    let stored = match read_stored(reader, snapshot) {
        Ok(None) if !expected => return None,
        Ok(None) => Err(format!(
            "the snapshot records variables but holds no {ENV_FILE}"
        )),
        Ok(Some(bytes)) => Ok(bytes),
        Err(e) => Err(format!("{ENV_FILE} cannot be read: {e}")),
    };
    let dir = scratch.join(STEP);
    let outcome = stored.and_then(|bytes| load(&bytes, snapshot, &dir));
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("the drill's {} was not removed: {e}", dir.display());
        }
    }
    let seconds = clock.elapsed().as_secs_f64();
    let (ok, message, check) = match outcome {
        Ok(check) => (
            true,
            format!("{ENV_FILE} restored into the scratch directory and read back"),
            Some(check),
        ),
        Err(e) => (false, e, None),
    };
    Some((
        Step {
            name: STEP.into(),
            seconds,
            ok,
            message: Some(message),
        },
        check,
    ))
}

/// The bytes of the snapshot's `environment.env`, or `None` when it has none.
fn read_stored(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
) -> Result<Option<Vec<u8>>, lifeline_repo::Error> {
    let root = reader.read_tree(&snapshot.tree)?;
    let Some(node) = root
        .find(ENV_FILE.as_bytes())
        .filter(|n| n.node_type == NodeType::File)
    else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    for part in node.content.iter().flatten() {
        let blob = reader.read_blob(part.id())?;
        let start = usize::try_from(part.offset()).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(part.len()).unwrap_or(usize::MAX));
        let slice = blob.get(start..end).ok_or_else(|| {
            lifeline_repo::Error::corrupt(ENV_FILE, "a chunk is shorter than the file needs")
        })?;
        bytes.extend_from_slice(slice);
    }
    Ok(Some(bytes))
}

/// Write the file into `dir`, parse it, load it with `sh` and compare. An error is a step that
/// failed (the file could not be written or `sh` not run); a difference is a failed check.
fn load(bytes: &[u8], snapshot: &Snapshot, dir: &Path) -> Result<Check, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = dir.join(ENV_FILE);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let parsed = match environment::parse(bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Ok(check(
                STEP,
                CheckResult::Fail,
                format!("{ENV_FILE} does not parse: {e}"),
            ))
        }
    };
    let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(recorded) = snapshot.source.get(keys::VARIABLES) {
        let Ok(recorded) = serde_json::from_str::<Vec<String>>(recorded) else {
            return Ok(check(
                STEP,
                CheckResult::Fail,
                format!(
                    "the snapshot's record of variable names ({}) is not a list of names",
                    keys::VARIABLES
                ),
            ));
        };
        if recorded != names {
            return Ok(check(
                STEP,
                CheckResult::Fail,
                format!(
                    "{ENV_FILE} holds {} variable(s), the snapshot recorded {}: the names differ",
                    names.len(),
                    recorded.len()
                ),
            ));
        }
    }
    // Names are shell names (checked by the parser), so they go into the script as they are;
    // printf is a builtin, so a restored PATH changes nothing.
    let mut script = String::from("set -a; . ./environment.env || exit 97");
    if !names.is_empty() {
        script.push_str("; printf '%s\\0'");
        for name in &names {
            script.push_str(&format!(" \"${{{name}}}\""));
        }
    }
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run /bin/sh to load {ENV_FILE}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Ok(check(
            STEP,
            CheckResult::Fail,
            format!(
                "sh could not load {ENV_FILE} ({}): {}",
                out.status,
                stderr.trim()
            ),
        ));
    }
    let loaded: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    let differ: Vec<&str> = parsed
        .iter()
        .enumerate()
        .filter(|(i, (_, value))| loaded.get(*i) != Some(&value.as_slice()))
        .map(|(_, (name, _))| name.as_str())
        .collect();
    Ok(match differ.first() {
        // The names only: a value is never put into a drill record.
        Some(first) => check(
            STEP,
            CheckResult::Fail,
            format!(
                "{} of {} variable(s) load with another value than {ENV_FILE} holds; first {first}",
                differ.len(),
                parsed.len()
            ),
        ),
        None => check(
            STEP,
            CheckResult::Pass,
            format!(
                "all {} variable(s) parse and load with sh as stored",
                parsed.len()
            ),
        ),
    })
}
