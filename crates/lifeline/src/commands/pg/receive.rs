//! `pg receive-wal`: stream WAL on a replication slot with pg_receivewal and store it as it arrives,
//! for a recovery point seconds old without `archive_timeout`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lifeline_repo::named::Stored;
use lifeline_sources::postgres::receive::{self, Event, ReceiveRequest};
use lifeline_sources::postgres::tools::redact;

use super::Pg;
use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server to stream from: a libpq URI or key=value string, of a role with REPLICATION
    #[arg(long, value_name = "URL")]
    db: String,

    /// The physical replication slot to stream on
    #[arg(long, value_name = "NAME")]
    slot: String,

    /// Create the slot if it does not exist (the server then keeps WAL until it is received: drop
    /// the slot when the receiver is retired)
    #[arg(long)]
    create_slot: bool,

    /// Where pg_receivewal writes; finished segments are removed once stored
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,

    /// Store the segment in progress this often, if it grew: the data at risk, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    partial_every: u64,
}

pub fn run(ctx: &Context, pg: &Pg, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_write("pg receive-wal")?;
    // Either signal stops the receiver cleanly: the last part is stored before it exits.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let request = ReceiveRequest {
        url: &args.db,
        slot: &args.slot,
        create_slot: args.create_slot,
        dir: &args.dir,
        partial_every: Duration::from_secs(args.partial_every),
    };
    let json = ctx.json;
    let received = receive::receive(&repo, &request, &|major| pg.tools(major), &stop, &|event| {
        print_event(event, json)
    })
    .with_context(|| {
        format!(
            "pg receive-wal from {} on slot {}",
            redact(&args.db),
            args.slot
        )
    })?;
    if ctx.json {
        print_json(&received)?;
    } else {
        println!(
            "stopped: {} WAL file(s) stored ({} archived already), {} part(s) of segments in progress{}",
            received.files,
            received.already_archived,
            received.partials,
            received
                .last_partial
                .as_deref()
                .map(|k| format!("; the last: {k}"))
                .unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

/// One line per finished file (a service's log of what reached the repository); the parts stored
/// every few seconds only with -v.
fn print_event(event: &Event<'_>, json: bool) {
    match event {
        Event::Partial { key, bytes } => tracing::info!("stored {key} ({bytes} bytes of WAL)"),
        _ if json => {}
        Event::Started {
            system_id,
            slot_created,
        } => println!(
            "receiving WAL of cluster {system_id}{}",
            if *slot_created {
                " on a slot created now"
            } else {
                ""
            }
        ),
        Event::Stored {
            key,
            stored: Stored::New,
        } => println!("archived {key}"),
        Event::Stored { key, .. } => println!("{key} was already archived"),
    }
}
