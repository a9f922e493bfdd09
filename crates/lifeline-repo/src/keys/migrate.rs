//! `lifeline migrate`: a format v1 repository becomes v2 in place (format.md §3.5).
//!
//! Every step is create-only until `config` is replaced in one atomic step, and the repository opens
//! at every moment: while `config` says version 1 it opens only through its v1 slots, so whatever an
//! interrupted run wrote is unused; once it says 2 it opens through the v2 slots written before the
//! switch. A rerun picks up what an interrupted run left: its first act is a v2 `admin` slot for the
//! key it was opened with, so a later run opens that slot with the same key and reuses the root and
//! epochs sealed under it. Nothing is derived from the v1 keys: a `restore` credential, which holds
//! the legacy epochs' keys, must never be able to compute the admin key.

use serde::Serialize;

use super::ROOT_PREFIX;
use crate::crypto::{fresh_tag, Epoch, KeySlot, Keyring, Opened, Role, RoleKeys, Secret};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::{Config, Id, Repository};

/// A further key (a key file or password) whose v1 slot is converted, with the name messages use
/// for it (its file).
#[derive(Debug, Clone, Copy)]
pub struct NamedSecret<'a> {
    pub name: &'a str,
    pub secret: Secret<'a>,
}

/// The steps of a migration, in order (format.md §3.5); [`migrate_with`] reports each as it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 1. the v2 `admin` slot of the key the repository was opened with.
    AdminSlot,
    /// 2. the root.
    Root,
    /// 2. one legacy epoch object per v1 epoch.
    LegacyEpochs,
    /// 3. the new epoch.
    NewEpoch,
    /// 4. the v2 `admin` slots of the further keys.
    Slots,
    /// 5. `config` says version 2.
    Config,
    /// 6. the v1 slots are gone.
    RemoveSlots,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::AdminSlot => "admin-slot",
            Step::Root => "root",
            Step::LegacyEpochs => "legacy-epochs",
            Step::NewEpoch => "new-epoch",
            Step::Slots => "slots",
            Step::Config => "config",
            Step::RemoveSlots => "remove-slots",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Migrated from the start.
    Migrated,
    /// Migrated, reusing what an interrupted migration had written.
    Resumed,
    /// The repository was format v2 already (the v1 slots an interrupted run left are removed).
    AlreadyV2,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub repository: String,
    pub outcome: Outcome,
    /// `keyring/root-...` (absent when the repository was v2 already).
    pub root: Option<ObjectReport>,
    /// One per v1 epoch, sealed as before (tags 1, 2, ...).
    pub legacy_epochs: Vec<EpochReport>,
    /// The epoch new objects are sealed under.
    pub new_epoch: Option<EpochReport>,
    pub slots_added: Vec<AddedSlot>,
    pub slots_removed: Vec<RemovedSlot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub object: String,
    /// Written by an interrupted migration and reused.
    pub reused: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: u32,
    pub tag: String,
    pub object: String,
    pub reused: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AddedSlot {
    pub id: String,
    pub role: Role,
    /// `password` or `key-file`.
    pub kind: &'static str,
    /// Which key opens it: the one the repository was opened with, or a further key's name.
    pub opened_by: String,
    pub reused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalReason {
    /// A v1 slot whose key now opens a v2 slot.
    Converted,
    /// A v1 slot none of the keys given opened (`remove_unconverted`).
    Unconverted,
    /// A v1 slot left in a v2 repository by a migration interrupted after its switch.
    LeftOver,
    /// A v2 slot of an interrupted migration that opens no key root: it could only fail.
    Stale,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemovedSlot {
    pub id: String,
    pub version: u32,
    pub kind: &'static str,
    pub created: String,
    pub hostname: String,
    pub username: String,
    pub reason: RemovalReason,
}

/// Migrate `repo` (opened with `opened_with`) to format v2; see [`migrate_with`].
pub fn migrate(
    repo: &Repository,
    opened_with: Secret<'_>,
    extra: &[NamedSecret<'_>],
    remove_unconverted: bool,
) -> Result<MigrationReport> {
    migrate_with(repo, opened_with, extra, remove_unconverted, &mut |_| {})
}

/// Migrate `repo`, a v1 repository opened with `opened_with`, to format v2 (format.md §3.5). Each
/// key of `extra` must open a v1 slot of the repository; it gets a v2 `admin` slot too. v1 slots
/// none of the keys opens are refused before anything is written, unless `remove_unconverted`.
/// On a v2 repository it only removes the v1 slots an interrupted migration left. `on_step` is told
/// when each step has ended.
pub fn migrate_with(
    repo: &Repository,
    opened_with: Secret<'_>,
    extra: &[NamedSecret<'_>],
    remove_unconverted: bool,
    on_step: &mut dyn FnMut(Step),
) -> Result<MigrationReport> {
    if repo.config().version >= 2 {
        return finish_v2(repo, on_step);
    }
    let storage = repo.storage();
    let v1 = repo.keyring();
    v1.require(&[Role::Admin], "migrating the repository")?;
    let repo_id = v1.repo_id.clone();
    let mut secrets = vec![NamedSecret {
        name: "the key the repository was opened with",
        secret: opened_with,
    }];
    for more in extra {
        // The same key twice would get two slots.
        if !secrets.iter().any(|s| same_secret(s.secret, more.secret)) {
            secrets.push(*more);
        }
    }
    let slots = read_slots(storage)?;

    // Which v1 slot each key converts, and which v2 slots of an interrupted run each key opens.
    let mut converted = vec![false; slots.len()];
    let mut admin_keys: Vec<(usize, usize, [u8; 32])> = Vec::new();
    for (s, secret) in secrets.iter().enumerate() {
        let mut opens_v1 = false;
        for (i, slot) in slots.iter().enumerate() {
            if !slot.slot.accepts(secret.secret) {
                continue;
            }
            match slot.slot.unwrap(secret.secret, &repo_id) {
                Ok(Opened::V1(keyring)) => {
                    same_v1_keys(&keyring, v1, &slot.key)?;
                    converted[i] = true;
                    opens_v1 = true;
                }
                Ok(Opened::V2 {
                    role: Role::Admin,
                    key,
                }) => admin_keys.push((i, s, key)),
                Ok(Opened::V2 { .. }) | Err(Error::WrongPassword) => {}
                Err(e) => return Err(e),
            }
        }
        if !opens_v1 {
            return Err(Error::Invalid(format!(
                "{} opens no format v1 key slot of this repository; give only keys of this repository (`lifeline key list` shows its slots)",
                secret.name
            )));
        }
    }
    let unconverted: Vec<&Slot> = slots
        .iter()
        .zip(&converted)
        .filter(|(s, c)| s.slot.version == 1 && !**c)
        .map(|(s, _)| s)
        .collect();
    if !unconverted.is_empty() && !remove_unconverted {
        let list: Vec<String> = unconverted.iter().map(|s| s.describe()).collect();
        return Err(Error::Invalid(format!(
            "{} format v1 key slot(s) open with none of the keys given and would be left behind: {}. Give each one's key to convert it (`--convert-password-file FILE`, `--convert-key-file FILE`), or remove them with `--remove-unconverted`",
            list.len(),
            list.join("; ")
        )));
    }

    let mut report = MigrationReport {
        repository: repo_id.clone(),
        outcome: Outcome::Migrated,
        root: None,
        legacy_epochs: Vec::new(),
        new_epoch: None,
        slots_added: Vec::new(),
        slots_removed: Vec::new(),
    };

    // Step 1, or what an interrupted run left: the admin key, its root and its epochs.
    let roots = storage.list(ROOT_PREFIX)?;
    let mut stale: Vec<usize> = Vec::new();
    let mut wrote_admin_slot = false;
    let (admin_key, roles, existing) = if roots.is_empty() {
        let objects = storage.list("keyring/")?;
        if !objects.is_empty() {
            return Err(leftovers(
                storage,
                &slots,
                &format!(
                    "`keyring/` holds {} key object(s) but no root",
                    objects.len()
                ),
            ));
        }
        // No root: every v2 slot is an interrupted run's, written before its root. Keep one this
        // run's keys open; the others wrap admin keys no root will ever answer to.
        let admin_key = match admin_keys.first() {
            Some(&(i, s, key)) => {
                report
                    .slots_added
                    .push(added(&slots[i], secrets[s].name, true));
                report.outcome = Outcome::Resumed;
                key
            }
            None => {
                let key: [u8; 32] = rand::random();
                let id = write_slot(storage, &repo_id, &key, opened_with)?;
                wrote_admin_slot = true;
                report.slots_added.push(AddedSlot {
                    id: id.to_hex(),
                    role: Role::Admin,
                    kind: kind_of(opened_with),
                    opened_by: secrets[0].name.to_string(),
                    reused: false,
                });
                key
            }
        };
        stale.extend(
            slots
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    s.slot.version == 2
                        && !admin_keys
                            .iter()
                            .any(|&(j, _, k)| j == *i && k == admin_key)
                })
                .map(|(i, _)| i),
        );
        remove_stale(storage, &slots, &stale, &mut report)?;
        on_step(Step::AdminSlot);
        (admin_key, RoleKeys::generate(), None)
    } else {
        let mut last = None;
        let mut found = None;
        for &(_, _, key) in &admin_keys {
            match super::load(storage, &repo_id, Role::Admin, &key) {
                Ok(keyring) => {
                    found = Some((key, keyring));
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some((admin_key, keyring)) = found else {
            let why = match last {
                Some(e) => format!("its key objects do not open with the admin key the keys given reach ({e})"),
                None => "no format v2 slot that the keys given open leads to its root (that migration was started with another key)".into(),
            };
            return Err(leftovers(storage, &slots, &why));
        };
        reusable(&keyring, v1).map_err(|why| leftovers(storage, &slots, &why))?;
        let roles = keyring
            .roles
            .clone()
            .ok_or_else(|| Error::Format("an administrator's keyring without role keys".into()))?;
        report.outcome = Outcome::Resumed;
        for &(i, s, key) in &admin_keys {
            if key == admin_key {
                if !report.slots_added.iter().any(|a| a.id == slots[i].id) {
                    report
                        .slots_added
                        .push(added(&slots[i], secrets[s].name, true));
                }
            } else if !stale.contains(&i) {
                stale.push(i);
            }
        }
        remove_stale(storage, &slots, &stale, &mut report)?;
        on_step(Step::AdminSlot);
        (admin_key, roles, Some(keyring))
    };

    // Step 2: the root and one legacy epoch per v1 epoch.
    let keyring = Keyring {
        repo_id: repo_id.clone(),
        format: 2,
        role: Role::Admin,
        chunk_id_key: v1.chunk_id_key,
        gear_key: v1.gear_key,
        epochs: Vec::new(),
        roles: Some(roles),
        admin_key: Some(admin_key),
    };
    let root = match (roots.first(), &existing) {
        (Some(info), Some(_)) => ObjectReport {
            object: info.key.clone(),
            reused: true,
        },
        _ => ObjectReport {
            object: super::write_root(storage, &keyring)?,
            reused: false,
        },
    };
    report.root = Some(root);
    on_step(Step::Root);
    let before: &[Epoch] = existing.as_ref().map_or(&[], |k| k.epochs.as_slice());
    for epoch in &v1.epochs {
        let (object, reused) = match before.iter().find(|e| e.legacy && e.tag == epoch.tag) {
            Some(e) => (e.object.clone().unwrap_or_default(), true),
            None => (super::write_epoch(storage, &keyring, epoch)?, false),
        };
        report.legacy_epochs.push(EpochReport {
            epoch: epoch.epoch,
            tag: super::tag_hex(epoch.tag),
            object,
            reused,
        });
    }
    on_step(Step::LegacyEpochs);

    // Step 3: a new epoch with the keys separated, numbered after the v1 epochs.
    let new_epoch = match before.iter().find(|e| !e.legacy) {
        Some(e) => EpochReport {
            epoch: e.epoch,
            tag: super::tag_hex(e.tag),
            object: e.object.clone().unwrap_or_default(),
            reused: true,
        },
        None => {
            let taken: Vec<u32> = v1.epochs.iter().map(|e| e.tag).collect();
            let number = v1.epochs.iter().map(|e| e.epoch).max().unwrap_or(0) + 1;
            let epoch = Epoch::generate(number, fresh_tag(&taken));
            EpochReport {
                epoch: number,
                tag: super::tag_hex(epoch.tag),
                object: super::write_epoch(storage, &keyring, &epoch)?,
                reused: false,
            }
        }
    };
    report.new_epoch = Some(new_epoch);
    on_step(Step::NewEpoch);

    // Step 4: a v2 admin slot for every key given that has none yet.
    for (s, secret) in secrets.iter().enumerate() {
        let has_slot = admin_keys
            .iter()
            .any(|&(i, t, key)| t == s && key == admin_key && !stale.contains(&i))
            || (s == 0 && wrote_admin_slot);
        if has_slot {
            continue;
        }
        let id = write_slot(storage, &repo_id, &admin_key, secret.secret)?;
        report.slots_added.push(AddedSlot {
            id: id.to_hex(),
            role: Role::Admin,
            kind: kind_of(secret.secret),
            opened_by: secret.name.to_string(),
            reused: false,
        });
    }
    on_step(Step::Slots);

    // Step 5, the switch. Prove first that the admin key opens exactly what was meant, and that no
    // other migration wrote a second root meanwhile: its epochs would not open under ours.
    let roots = storage.list(ROOT_PREFIX)?;
    if roots.len() != 1 {
        return Err(Error::Invalid(format!(
            "{} holds {} key roots: another migration is running or was interrupted; run one migration at a time",
            storage.location(),
            roots.len()
        )));
    }
    let written = super::load(storage, &repo_id, Role::Admin, &admin_key)?;
    reusable(&written, v1).map_err(|why| leftovers(storage, &slots, &why))?;
    if v1
        .epochs
        .iter()
        .any(|e| !written.epochs.iter().any(|w| w.legacy && w.tag == e.tag))
        || !written.epochs.iter().any(|e| !e.legacy)
    {
        return Err(Error::Format(
            "the key objects just written do not load back: the repository stays format v1".into(),
        ));
    }
    let config = Config {
        version: 2,
        ..repo.config().clone()
    };
    let bytes = serde_json::to_vec_pretty(&config)
        .map_err(|e| Error::Format(format!("config JSON: {e}")))?;
    storage.replace("config", &bytes)?;
    on_step(Step::Config);

    // Step 6: the v1 slots, each a full copy of the legacy keys, go.
    for (slot, converted) in slots.iter().zip(&converted) {
        if slot.slot.version != 1 {
            continue;
        }
        storage.delete(&slot.key)?;
        let reason = if *converted {
            RemovalReason::Converted
        } else {
            RemovalReason::Unconverted
        };
        report.slots_removed.push(slot.removed(reason));
    }
    on_step(Step::RemoveSlots);
    Ok(report)
}

/// A v2 repository: only the v1 slots a migration interrupted after its switch left are to remove.
fn finish_v2(repo: &Repository, on_step: &mut dyn FnMut(Step)) -> Result<MigrationReport> {
    let storage = repo.storage();
    let left: Vec<Slot> = read_slots(storage)?
        .into_iter()
        .filter(|s| s.slot.version == 1)
        .collect();
    if !left.is_empty() {
        repo.keyring().require(
            &[Role::Admin],
            "removing the format v1 key slots an interrupted migration left",
        )?;
    }
    let mut removed = Vec::new();
    for slot in &left {
        storage.delete(&slot.key)?;
        removed.push(slot.removed(RemovalReason::LeftOver));
    }
    on_step(Step::RemoveSlots);
    Ok(MigrationReport {
        repository: repo.config().id.clone(),
        outcome: Outcome::AlreadyV2,
        root: None,
        legacy_epochs: Vec::new(),
        new_epoch: None,
        slots_added: Vec::new(),
        slots_removed: removed,
    })
}

struct Slot {
    /// `keys/<id>`.
    key: String,
    id: String,
    slot: KeySlot,
}

impl Slot {
    fn describe(&self) -> String {
        format!(
            "{} ({}, created {} by {} on {})",
            &self.id[..self.id.len().min(8)],
            self.slot.kdf.kind(),
            self.slot.created,
            self.slot.username,
            self.slot.hostname
        )
    }

    fn removed(&self, reason: RemovalReason) -> RemovedSlot {
        RemovedSlot {
            id: self.id.clone(),
            version: self.slot.version,
            kind: self.slot.kdf.kind(),
            created: self.slot.created.clone(),
            hostname: self.slot.hostname.clone(),
            username: self.slot.username.clone(),
            reason,
        }
    }
}

fn read_slots(storage: &dyn Storage) -> Result<Vec<Slot>> {
    let mut out = Vec::new();
    for info in storage.list("keys/")? {
        let bytes = match storage.get(&info.key) {
            Ok(b) => b,
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.push(Slot {
            id: info.key.trim_start_matches("keys/").to_string(),
            slot: KeySlot::from_json(&bytes, &info.key)?,
            key: info.key,
        });
    }
    out.sort_by(|a, b| a.slot.created.cmp(&b.slot.created));
    Ok(out)
}

fn same_secret(a: Secret<'_>, b: Secret<'_>) -> bool {
    match (a, b) {
        (Secret::Password(a), Secret::Password(b)) => a == b,
        (Secret::KeyFile(a), Secret::KeyFile(b)) => a == b,
        _ => false,
    }
}

fn kind_of(secret: Secret<'_>) -> &'static str {
    match secret {
        Secret::Password(_) => "password",
        Secret::KeyFile(_) => "key-file",
        Secret::Kms(_) => "kms",
    }
}

fn added(slot: &Slot, opened_by: &str, reused: bool) -> AddedSlot {
    AddedSlot {
        id: slot.id.clone(),
        role: Role::Admin,
        kind: slot.slot.kdf.kind(),
        opened_by: opened_by.to_string(),
        reused,
    }
}

fn write_slot(
    storage: &dyn Storage,
    repo_id: &str,
    admin_key: &[u8; 32],
    secret: Secret<'_>,
) -> Result<Id> {
    let bytes = KeySlot::wrap_role(repo_id, Role::Admin, admin_key, secret)?.to_json();
    let id = Id::of_stored(&bytes);
    storage.put(&format!("keys/{id}"), &bytes)?;
    Ok(id)
}

fn remove_stale(
    storage: &dyn Storage,
    slots: &[Slot],
    stale: &[usize],
    report: &mut MigrationReport,
) -> Result<()> {
    for &i in stale {
        storage.delete(&slots[i].key)?;
        report
            .slots_removed
            .push(slots[i].removed(RemovalReason::Stale));
    }
    Ok(())
}

/// Another v1 slot of the same repository must hold the same keys: anything else is damage.
fn same_v1_keys(other: &Keyring, v1: &Keyring, slot: &str) -> Result<()> {
    let same_epochs = other.epochs.len() == v1.epochs.len()
        && other.epochs.iter().zip(&v1.epochs).all(|(a, b)| {
            a.epoch == b.epoch && a.data_key == b.data_key && a.meta_key == b.meta_key
        });
    if other.chunk_id_key != v1.chunk_id_key || other.gear_key != v1.gear_key || !same_epochs {
        return Err(Error::corrupt(
            slot,
            "it holds other keys than the slot the repository was opened with",
        ));
    }
    Ok(())
}

/// Whether an interrupted run's keyring can be carried on: the same dedup keys, legacy epochs that
/// are the v1 epochs, no destroyed epoch. Says why not.
fn reusable(written: &Keyring, v1: &Keyring) -> std::result::Result<(), String> {
    if written.chunk_id_key != v1.chunk_id_key || written.gear_key != v1.gear_key {
        return Err("`keyring/` holds other deduplication keys than the v1 keyring".into());
    }
    for e in &written.epochs {
        if e.destroyed.is_some() {
            return Err(format!("`keyring/` holds a tombstone (epoch {})", e.epoch));
        }
        if !e.legacy {
            continue;
        }
        let same = v1.epochs.iter().any(|o| {
            o.tag == e.tag
                && o.epoch == e.epoch
                && o.data_key == e.data_key
                && o.meta_key == e.meta_key
        });
        if !same {
            return Err(format!(
                "`keyring/` holds a legacy epoch {} that is not the v1 keyring's",
                e.epoch
            ));
        }
    }
    if written.epochs.iter().filter(|e| !e.legacy).count() > 1 {
        return Err("`keyring/` holds more than one new epoch".into());
    }
    Ok(())
}

/// The refusal when `keyring/` holds what this run cannot carry on: say how to clean it up.
fn leftovers(storage: &dyn Storage, slots: &[Slot], why: &str) -> Error {
    let v2: Vec<&str> = slots
        .iter()
        .filter(|s| s.slot.version == 2)
        .map(|s| &s.id[..s.id.len().min(8)])
        .collect();
    let slots = if v2.is_empty() {
        String::new()
    } else {
        format!(
            " and the format v2 key slots ({}; `lifeline key remove ID`)",
            v2.join(", ")
        )
    };
    Error::Invalid(format!(
        "{} is still format v1, but the key objects an interrupted migration left cannot be carried on: {why}. Rerun `lifeline migrate` with the key that migration was started with; or, since a format v1 repository does not use them, delete everything under `keyring/`{slots} and migrate again",
        storage.location(),
    ))
}
