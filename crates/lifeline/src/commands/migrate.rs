use std::path::PathBuf;

use anyhow::Context as _;
use lifeline_repo::crypto::Secret;
use lifeline_repo::keys::migrate::{self, MigrationReport, NamedSecret, Outcome, Step};
use lifeline_repo::Repository;

use crate::context::{print_json, Context};
use crate::{exit, key_file, password, recorder};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also convert the format v1 key slot that this password file opens (repeatable); it gets a
    /// format v2 `admin` slot
    #[arg(long, value_name = "FILE")]
    convert_password_file: Vec<PathBuf>,
    /// Also convert the format v1 key slot that this key file opens (repeatable)
    #[arg(long, value_name = "FILE")]
    convert_key_file: Vec<PathBuf>,
    /// Remove the format v1 key slots that none of the keys given opens (otherwise migrate refuses
    /// and names them): their passwords stop working
    #[arg(long)]
    remove_unconverted: bool,
}

/// A key read from a file or a prompt, held for as long as the migration needs it.
enum Key {
    Password(password::Password),
    File([u8; 32]),
}

impl Key {
    fn secret(&self) -> Secret<'_> {
        match self {
            Key::Password(p) => Secret::Password(p.bytes()),
            Key::File(k) => Secret::KeyFile(k),
        }
    }
}

/// Test hook: `LIFELINE_FAILPOINT=migrate:<step>` (a [`Step::name`]) aborts the process right after
/// that step, as a crash or `kill -9` would, so the tests can prove each intermediate state opens
/// and a rerun completes.
fn failpoint(step: Step) {
    if std::env::var("LIFELINE_FAILPOINT").is_ok_and(|f| f == format!("migrate:{}", step.name())) {
        std::process::abort();
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let location = ctx.options.location()?;
    let storage = ctx.storage()?;
    if !Repository::exists(storage.as_ref())? {
        return Err(lifeline_repo::Error::RepositoryNotFound {
            location: storage.location(),
        }
        .into());
    }
    // The key is read here rather than by `ctx.open()`: migrate writes a v2 slot for it.
    let key = match &ctx.options.key.key_file {
        Some(path) => Key::File(key_file::read(path)?),
        None => Key::Password(password::read(&ctx.options.key)?),
    };
    let repo = Repository::open_with(storage, key.secret())
        .with_context(|| format!("cannot open repository {location}"))?;
    ctx.audit.opened(&repo);
    ctx.audit.begin("migrate", location);

    let mut extra_keys = Vec::new();
    for path in &args.convert_password_file {
        extra_keys.push((
            path.display().to_string(),
            Key::Password(password::from_file(path)?),
        ));
    }
    for path in &args.convert_key_file {
        extra_keys.push((path.display().to_string(), Key::File(key_file::read(path)?)));
    }
    let extra: Vec<NamedSecret<'_>> = extra_keys
        .iter()
        .map(|(name, key)| NamedSecret {
            name,
            secret: key.secret(),
        })
        .collect();

    let report = migrate::migrate_with(
        &repo,
        key.secret(),
        &extra,
        args.remove_unconverted,
        &mut failpoint,
    )?;
    record(ctx, &report);
    // Proof that the switch took: the same key opens the repository as format v2. The audit record
    // then goes to it, sealed under the new epoch.
    let reopened = Repository::open_with(ctx.storage()?, key.secret()).with_context(|| {
        format!("the migrated repository {location} does not open with the key migrate was given")
    })?;
    if reopened.config().version < 2 {
        anyhow::bail!("{location} still says format version 1 after the migration");
    }
    ctx.audit.switched_to(&reopened);

    if ctx.json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(exit::OK)
}

fn record(ctx: &Context, report: &MigrationReport) {
    let outcome = match report.outcome {
        Outcome::Migrated => "migrated",
        Outcome::Resumed => "resumed",
        Outcome::AlreadyV2 => "already-v2",
    };
    ctx.audit.detail("outcome", outcome);
    for object in report.root.iter().filter(|r| !r.reused) {
        ctx.audit.touch(recorder::Wrote, "keyring", &object.object);
    }
    for epoch in report.legacy_epochs.iter().chain(&report.new_epoch) {
        if !epoch.reused {
            ctx.audit.touch(recorder::Wrote, "keyring", &epoch.object);
        }
    }
    if let Some(epoch) = &report.new_epoch {
        ctx.audit.detail("new_epoch", &epoch.tag);
    }
    for slot in report.slots_added.iter().filter(|s| !s.reused) {
        ctx.audit.touch(recorder::Wrote, "key", &slot.id);
    }
    if report.outcome != Outcome::AlreadyV2 {
        ctx.audit.touch(recorder::Wrote, "config", "config");
    }
    for slot in &report.slots_removed {
        ctx.audit.touch(recorder::Deleted, "key", &slot.id);
    }
}

fn print_text(report: &MigrationReport) {
    let id = &report.repository[..report.repository.len().min(8)];
    let reused = |r: bool| if r { " (reused)" } else { "" };
    match report.outcome {
        Outcome::AlreadyV2 => println!("repository {id} is format v2 already; nothing to migrate"),
        Outcome::Migrated => println!("migrated repository {id} to format v2"),
        Outcome::Resumed => println!(
            "migrated repository {id} to format v2, carrying on from an interrupted migration"
        ),
    }
    if let Some(root) = &report.root {
        println!("  key root          {}{}", root.object, reused(root.reused));
    }
    for e in &report.legacy_epochs {
        println!(
            "  epoch {} (legacy)  {}{}: what was sealed before, readable as before",
            e.epoch,
            e.object,
            reused(e.reused)
        );
    }
    if let Some(e) = &report.new_epoch {
        println!(
            "  epoch {} (new)     {}{}: new objects are sealed under it",
            e.epoch,
            e.object,
            reused(e.reused)
        );
    }
    for s in &report.slots_added {
        println!(
            "  added   {} slot {} ({}){}, opened by {}",
            s.role,
            &s.id[..8],
            s.kind,
            reused(s.reused),
            s.opened_by
        );
    }
    for s in &report.slots_removed {
        let why = match s.reason {
            migrate::RemovalReason::Converted => "converted",
            migrate::RemovalReason::Unconverted => {
                "not converted: its key no longer opens the repository"
            }
            migrate::RemovalReason::LeftOver => "left by an interrupted migration",
            migrate::RemovalReason::Stale => "an interrupted migration's, opening nothing",
        };
        println!(
            "  removed v{} slot {} ({}, {}@{}): {why}",
            s.version,
            &s.id[..8],
            s.kind,
            s.username,
            s.hostname
        );
    }
    if report.outcome != Outcome::AlreadyV2 {
        println!("The key you gave opens it as format v2 (checked); `lifeline key list` shows the slots.");
    }
}
