use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use lifeline_plan::kms::KmsCommand;
use lifeline_repo::crypto::{Kms, Role, Secret};
use lifeline_repo::keys::{self, EpochInfo};
use lifeline_repo::KeyInfo;
use serde::Serialize;

use crate::context::{print_json, Context};
use crate::options::parse_duration;
use crate::{exit, key_file, password, recorder};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// List the key slots and the key epochs
    List,
    /// Add a password, key file or KMS slot that also opens the repository
    Add {
        /// File holding the new password (otherwise asked on the terminal)
        #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
        new_password_file: Option<PathBuf>,
        /// Create FILE with a random key and add a slot it opens (for archive_command and other
        /// unattended callers: opens in milliseconds, where a password costs 0.2 s of Argon2id)
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
        /// Add a slot whose key is wrapped by this command (a cloud KMS, Vault transit, an HSM:
        /// docs/keys.md); open it later with --kms-command CMD
        #[arg(long, value_name = "CMD", conflicts_with_all = ["new_password_file", "new_key_file"])]
        new_kms_command: Option<String>,
        /// What `key list` shows for the KMS slot (default: the command's program name)
        #[arg(long, value_name = "TEXT", requires = "new_kms_command")]
        kms_label: Option<String>,
        /// What the new credential may do: admin (everything), restore (read and write backups, no
        /// key management), backup (write-only: new backups, decrypts nothing), audit (records and
        /// the audit trail, no data)
        #[arg(long, value_name = "ROLE", value_parser = parse_role, default_value = "admin")]
        role: Role,
        /// The same as `--role backup`: for backup hosts, which then cannot read any backup
        #[arg(long, conflicts_with = "role")]
        write_only: bool,
    },
    /// Remove a key slot (not the one in use)
    Remove {
        /// Key slot ID or prefix
        id: String,
    },
    /// Change the password of the key slot in use
    Passwd {
        /// File holding the new password (otherwise asked on the terminal)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Start a new key epoch: what is written from now on is sealed under new keys; what was
    /// sealed before stays readable (admin)
    Rotate {
        /// Only when the current epoch is older than this (for schedules): `90d`
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        if_older_than: Option<Duration>,
    },
    /// Destroy a key epoch's keys, so that nothing it sealed can ever be read again (admin). It
    /// refuses while snapshots, packs or WAL sealed under it remain, naming them and the fix
    DestroyEpoch {
        /// The epoch's number (`lifeline key list`)
        epoch: u32,
    },
}

/// `key list --json`: the key slots and the key epochs.
#[derive(Serialize)]
struct KeyListing {
    slots: Vec<KeyInfo>,
    epochs: Vec<EpochInfo>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let mut repo = ctx.open()?;
    match args.command {
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            let epochs = keys::epoch_infos(repo.keyring());
            if ctx.json {
                print_json(&KeyListing {
                    slots: keys,
                    epochs,
                })?;
            } else {
                println!(
                    " {:<10}  {:<7}  {:<8}  {:<32}  {:<12}  {:<12}  KMS label",
                    "ID", "role", "kind", "created", "host", "user"
                );
                for k in keys {
                    let mark = if k.current { '*' } else { ' ' };
                    let line = format!(
                        "{mark}{:<10}  {:<7}  {:<8}  {:<32}  {:<12}  {:<12}  {}",
                        &k.id[..8],
                        k.role.as_str(),
                        k.kind,
                        k.created,
                        k.hostname,
                        k.username,
                        k.kms_label.as_deref().unwrap_or_default()
                    );
                    println!("{}", line.trim_end());
                }
                print_epochs(&epochs);
            }
        }
        KeyCommand::Rotate { if_older_than } => {
            ctx.audit.begin("key rotate", ctx.options.location()?);
            let report = keys::rotate_if_older(&repo, if_older_than)?;
            ctx.audit.detail("rotated", report.rotated);
            ctx.audit.detail("epoch", report.epoch);
            ctx.audit.detail("tag", &report.tag);
            if let Some(previous) = report.previous {
                ctx.audit.detail("previous_epoch", previous);
            }
            if let Some(object) = &report.object {
                ctx.audit.touch(recorder::Wrote, "key epoch", object);
            }
            if ctx.json {
                print_json(&report)?;
            } else if report.rotated {
                println!(
                    "key epoch {} (tag {}) is now current: what is written from now on is sealed under it; earlier epochs stay readable",
                    report.epoch, report.tag
                );
            } else {
                println!(
                    "not rotated: key epoch {} is {} old, younger than --if-older-than",
                    report.epoch,
                    lifeline_repo::retention::human_duration(Duration::from_secs(
                        report.previous_age_seconds.unwrap_or(0)
                    ))
                );
            }
        }
        KeyCommand::DestroyEpoch { epoch } => {
            ctx.audit
                .begin("key destroy-epoch", format!("epoch {epoch}"));
            let report = keys::destroy_epoch(&repo, epoch)?;
            ctx.audit.detail("tags", report.tags.join(" "));
            ctx.audit
                .detail("index_files_resealed", report.index_files_resealed);
            ctx.audit.detail("objects_scanned", report.objects_scanned);
            for t in &report.tombstones {
                ctx.audit.touch(recorder::Wrote, "key tombstone", t);
            }
            for d in &report.deleted {
                ctx.audit.touch(recorder::Deleted, "key epoch", d);
            }
            if ctx.json {
                print_json(&report)?;
            } else if report.already_destroyed {
                println!("key epoch {epoch} was destroyed already");
            } else {
                println!(
                    "key epoch {epoch} is destroyed: nothing it sealed can be read again ({} object(s) checked, {} index file(s) re-sealed under the current epoch); its records and audit bodies stay readable",
                    report.objects_scanned, report.index_files_resealed
                );
            }
        }
        KeyCommand::Add {
            new_key_file: Some(path),
            role,
            write_only,
            ..
        } => {
            let role = if write_only { Role::Backup } else { role };
            ctx.audit.begin("key add", path.display().to_string());
            ctx.audit.detail("kind", "key file");
            ctx.audit.detail("role", role.as_str());
            // Refused before the file exists, so a refusal leaves no key file that opens nothing.
            repo.keyring().require(&[Role::Admin], "adding key slots")?;
            let key = key_file::create(&path)?;
            let id = match repo.add_slot(role, Secret::KeyFile(&key)) {
                Ok(id) => id,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e.into());
                }
            };
            ctx.audit.touch(recorder::Wrote, "key", id.to_hex());
            println!(
                "added {role} key {} opened by key file {}",
                id.short(),
                path.display()
            );
        }
        KeyCommand::Add {
            new_kms_command: Some(command),
            kms_label,
            role,
            write_only,
            ..
        } => {
            let role = if write_only { Role::Backup } else { role };
            let kms = KmsCommand::new(&command, kms_label.as_deref())?;
            ctx.audit.begin("key add", kms.label());
            ctx.audit.detail("kind", "kms");
            ctx.audit.detail("role", role.as_str());
            repo.keyring().require(&[Role::Admin], "adding key slots")?;
            // add_slot wraps through the command and unwraps again before it writes the slot.
            let id = repo.add_slot(role, Secret::Kms(&kms))?;
            ctx.audit.touch(recorder::Wrote, "key", id.to_hex());
            println!(
                "added {role} key {} opened by KMS command ({})",
                id.short(),
                kms.label()
            );
        }
        KeyCommand::Add {
            new_password_file,
            role,
            write_only,
            ..
        } => {
            let role = if write_only { Role::Backup } else { role };
            ctx.audit.begin("key add", "password");
            ctx.audit.detail("kind", "password");
            ctx.audit.detail("role", role.as_str());
            // Refused before asking for a password nobody could use.
            repo.keyring().require(&[Role::Admin], "adding key slots")?;
            let pw = password::new_password(new_password_file.as_deref(), None)?;
            let id = repo.add_slot(role, Secret::Password(pw.bytes()))?;
            ctx.audit.touch(recorder::Wrote, "key", id.to_hex());
            println!("added {role} key {}", id.short());
        }
        KeyCommand::Remove { id } => {
            ctx.audit.begin("key remove", &id);
            let removed = repo.remove_key(&id)?;
            ctx.audit.touch(recorder::Deleted, "key", &removed);
            println!("removed key {}", &removed[..8]);
        }
        KeyCommand::Passwd { new_password_file } => {
            ctx.audit.begin("key passwd", "the key slot in use");
            let pw = password::new_password(new_password_file.as_deref(), None)?;
            let id = repo.change_password(pw.bytes())?;
            ctx.audit.touch(recorder::Wrote, "key", id.to_hex());
            println!("password changed; the key slot is now {}", id.short());
        }
    }
    Ok(exit::OK)
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
        .ok_or_else(|| format!("{s:?} is not a role: use admin, restore, backup or audit"))
}

/// The epochs, after the slots: `*` marks the current one.
fn print_epochs(epochs: &[EpochInfo]) {
    println!();
    println!(
        " {:<6}  {:<8}  {:<32}  {:>7}  state",
        "epoch", "tag", "created", "age"
    );
    for e in epochs {
        let mark = if e.current { '*' } else { ' ' };
        let age = e
            .age_days
            .map_or_else(|| "?".to_string(), |d| format!("{d} d"));
        let state = match (&e.destroyed, e.current) {
            (Some(at), _) => format!("destroyed {at}"),
            (None, true) => "current".to_string(),
            (None, false) => "readable".to_string(),
        };
        let legacy = if e.legacy { " (from format v1)" } else { "" };
        println!(
            "{mark}{:<6}  {:<8}  {:<32}  {:>7}  {state}{legacy}",
            e.epoch, e.tag, e.created, age
        );
    }
}
