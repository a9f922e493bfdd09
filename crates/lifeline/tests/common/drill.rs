//! Helpers of the restore-drill suite: reading drill records back with the repository's key, finding
//! a check in a report, damaging a pack and undoing it.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeline_repo::drill::DrillRecord;
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::Repository;
use serde_json::Value;

use crate::common::{regular_files_under, PASSWORD};

/// Every drill record of the repository at `path`, opened with the tests' password: a record that
/// was not sealed with the repository's key would not open.
pub fn drill_records(path: &Path) -> Vec<(String, DrillRecord)> {
    let repo = Repository::open(
        Arc::new(LocalStorage::new(path.to_str().unwrap())),
        PASSWORD.as_bytes(),
    )
    .unwrap();
    let (records, damaged) = lifeline_repo::drill::load_all(&repo).unwrap();
    assert!(damaged.is_empty(), "unreadable drill records: {damaged:?}");
    records
        .into_iter()
        .map(|s| (s.id.to_hex(), s.record))
        .collect()
}

/// The check called `name` in a drill record's JSON.
#[track_caller]
pub fn check<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {record:#}"))
}

/// The names of a record's steps, in order, and whether each succeeded.
pub fn steps(record: &Value) -> Vec<(String, bool)> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["ok"] == true))
        .collect()
}

/// A pack whose middle byte was flipped; `restore` puts the original back.
pub struct FlippedPack {
    pub path: PathBuf,
    original: Vec<u8>,
}

impl FlippedPack {
    /// Flip the middle byte of the largest pack of the repository at `repo` (the one that surely
    /// holds file data rather than only trees).
    pub fn largest(repo: &Path) -> FlippedPack {
        let path = regular_files_under(&repo.join("data"))
            .into_iter()
            .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("the repository has a pack");
        let original = fs::read(&path).unwrap();
        let mut bytes = original.clone();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        fs::write(&path, bytes).unwrap();
        FlippedPack { path, original }
    }

    /// The pack's name: its ID, which the object key `data/XX/ID` ends with.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    pub fn restore(self) {
        fs::write(&self.path, &self.original).unwrap();
    }
}

/// The value of the first sample of `series` (a prefix such as `name{source="x"`) in a metrics
/// file's text.
#[track_caller]
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
        .rsplit_once(' ')
        .unwrap()
        .1
        .parse()
        .unwrap()
}
