//! Key files: 256 random bits, hex-encoded, that open a key slot without a password. They let
//! unattended callers (PostgreSQL's `archive_command`, run once per WAL segment) skip Argon2id.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};

pub fn read(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim();
    let mut key = [0u8; 32];
    if hex::decode_to_slice(line, &mut key).is_err() {
        bail!(
            "key file {} does not hold a lifeline key (64 hex digits); create one with `lifeline key add --new-key-file FILE`",
            path.display()
        );
    }
    Ok(key)
}

/// Write a fresh key to `path`, which must not exist; readable by its owner only.
pub fn create(path: &Path) -> anyhow::Result<[u8; 32]> {
    let key: [u8; 32] = rand::random();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    writeln!(file, "{}", hex::encode(key))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok(key)
}
