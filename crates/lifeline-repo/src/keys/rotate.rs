//! `key rotate` (format.md §3.2): one new epoch object, nothing else. Sessions already running
//! keep sealing under the epoch they loaded, which stays readable; processes that open the
//! repository afterwards seal under the new one.

use std::time::Duration;

use serde::Serialize;

use super::{tag_hex, write_epoch};
use crate::crypto::{fresh_tag, Epoch, Role};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotateReport {
    /// Whether a new epoch was written (`rotate_if_older` may find the current one young enough).
    pub rotated: bool,
    /// The current epoch after the call: the new one when `rotated`.
    pub epoch: u32,
    pub tag: String,
    pub created: String,
    /// The epoch object written, when `rotated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The epoch that was current before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    /// Age of the epoch that was current before, in seconds.
    pub previous_age_seconds: Option<u64>,
}

/// Write a new epoch: number = the greatest so far (destroyed ones included) + 1, a tag no epoch
/// has. Administrators of v2 repositories only.
pub fn rotate(repo: &Repository) -> Result<RotateReport> {
    rotate_if_older(repo, None)
}

/// [`rotate`], but only when the current epoch is older than `older_than` (when given): what the
/// daemon and a scheduled job run, so that a rotation someone else did meanwhile counts.
pub fn rotate_if_older(repo: &Repository, older_than: Option<Duration>) -> Result<RotateReport> {
    require_v2_admin(repo, "rotating the keys")?;
    // The handle may be older than another rotation: number and tag come from what storage holds.
    let repo = repo.refreshed()?;
    let keyring = repo.keyring();
    let previous = keyring.current().ok();
    let previous_age = previous.and_then(|e| age(&e.created));
    if let (Some(limit), Some(current), Some(age)) = (older_than, previous, previous_age) {
        if age < limit {
            return Ok(RotateReport {
                rotated: false,
                epoch: current.epoch,
                tag: tag_hex(current.tag),
                created: current.created.clone(),
                object: None,
                previous: None,
                previous_age_seconds: Some(age.as_secs()),
            });
        }
    }
    let number = keyring.epochs.iter().map(|e| e.epoch).max().unwrap_or(0) + 1;
    let taken: Vec<u32> = keyring.epochs.iter().map(|e| e.tag).collect();
    let epoch = Epoch::generate(number, fresh_tag(&taken));
    let object = write_epoch(repo.storage(), keyring, &epoch)?;
    Ok(RotateReport {
        rotated: true,
        epoch: epoch.epoch,
        tag: tag_hex(epoch.tag),
        created: epoch.created,
        object: Some(object),
        previous: previous.map(|e| e.epoch),
        previous_age_seconds: previous_age.map(|a| a.as_secs()),
    })
}

/// Key epochs are v2 objects, and only an administrator holds the role keys that seal them.
pub(super) fn require_v2_admin(repo: &Repository, what: &str) -> Result<()> {
    if repo.keyring().format < 2 {
        return Err(Error::Invalid(format!(
            "{what} needs repository format v2 (this repository is v1, whose key slots each hold every key): run `lifeline migrate` first"
        )));
    }
    repo.keyring().require(&[Role::Admin], what)
}

/// How old an epoch created at `created` (RFC 3339) is; none when unreadable or in the future.
pub(super) fn age(created: &str) -> Option<Duration> {
    let created = chrono::DateTime::parse_from_rfc3339(created).ok()?;
    (chrono::Utc::now() - created.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}
