//! The safe watermark: an upper bound below which no row can still appear.
//!
//! One statement reads the greatest watermark its snapshot sees together with every transaction that
//! is open at that moment — those with a transaction ID (`pg_current_snapshot()`'s in-progress list,
//! which includes prepared transactions) and those without one yet (each holds its own
//! `virtualxid` lock, which `pg_locks` shows to any role). Then the export waits until every one of
//! them has ended. A transaction without an ID matters as much as one with: it may have taken its
//! `now()` or a sequence value already and insert the row later.
//!
//! After the wait, any row at or below the bound is committed or will never be: a transaction that
//! began after the statement gets a later clock value or a later sequence value than any the
//! statement could see. One gap is closed by a margin: PostgreSQL's `now()` is the time the
//! transaction's first statement arrived, a moment before the transaction shows in `pg_locks`; so a
//! clock watermark's bound is held [`CLOCK_MARGIN`] behind the statement's own start.

use std::time::{Duration, Instant};

use postgres::Client;

use super::error::{Blocker, Error, Result};
use super::watermark::WatermarkType;

/// How far a clock watermark's bound stays behind the moment it is chosen (see the module's text).
pub const CLOCK_MARGIN: Duration = Duration::from_secs(1);

/// The bound chosen, and the transactions that must end before rows up to it are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The greatest watermark the statement saw (for a clock watermark, at most its start minus the
    /// margin), as PostgreSQL prints it; `None` when the table had no row.
    pub bound: Option<String>,
    /// Transaction IDs in progress (64-bit, as text).
    pub xids: Vec<String>,
    /// Virtual transaction IDs of other sessions' open transactions (`3/1234`).
    pub vxids: Vec<String>,
}

impl Candidate {
    pub fn open_transactions(&self) -> usize {
        self.vxids.len().max(self.xids.len())
    }
}

/// Step 1: in one statement, the bound and the open transactions. `zone` is the time zone the
/// writers of a `timestamp without time zone` watermark use (the database's default); the session
/// itself runs in UTC.
pub fn choose(
    client: &mut Client,
    table: &str,
    quoted_table: &str,
    quoted_column: &str,
    kind: WatermarkType,
    zone: &str,
) -> Result<Candidate> {
    let margin = format!("interval '{} milliseconds'", CLOCK_MARGIN.as_millis());
    // LEAST ignores NULL: an empty table must give no bound, not the clock's.
    let capped = |cap: String| {
        format!(
            "CASE WHEN max({quoted_column}) IS NULL THEN NULL \
                  ELSE LEAST(max({quoted_column}), {cap}) END"
        )
    };
    let bound = match kind {
        WatermarkType::TimestampTz => capped(format!("statement_timestamp() - {margin}")),
        WatermarkType::Timestamp => capped(format!(
            "(statement_timestamp() - {margin}) AT TIME ZONE $1::text"
        )),
        _ => format!("max({quoted_column})"),
    };
    // The table's snapshot is taken before the statement runs, so pg_locks, read while it runs,
    // shows every transaction that was open then and has not ended since.
    let sql = format!(
        "SELECT (SELECT ({bound})::text FROM {quoted_table}), \
                ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) x), \
                ARRAY(SELECT l.virtualxid FROM pg_locks l \
                       WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid() \
                         AND l.pid NOT IN (SELECT pid FROM pg_stat_activity \
                                            WHERE backend_type LIKE 'autovacuum%'))"
    );
    let row = if kind == WatermarkType::Timestamp {
        client.query_one(sql.as_str(), &[&zone])
    } else {
        client.query_one(sql.as_str(), &[])
    }
    .map_err(|e| Error::db(format!("reading the watermark of {table}"), e))?;
    Ok(Candidate {
        bound: row.get(0),
        xids: row.get(1),
        vxids: row.get(2),
    })
}

/// Step 2: wait until every transaction of `candidate` has ended, at most `timeout`. Returns how
/// long it waited. On timeout the error names what still runs.
pub fn wait(
    client: &mut Client,
    table: &str,
    candidate: &Candidate,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut vxids = candidate.vxids.clone();
    let mut xids = candidate.xids.clone();
    let mut pause = Duration::from_millis(20);
    loop {
        if !vxids.is_empty() {
            vxids = client
                .query_one(
                    "SELECT ARRAY(SELECT virtualxid FROM pg_locks \
                                   WHERE locktype = 'virtualxid' AND granted \
                                     AND virtualxid = ANY($1::text[]))",
                    &[&vxids],
                )
                .map_err(|e| Error::db("watching open transactions", e))?
                .get(0);
        }
        if !xids.is_empty() {
            // NULL: too old for the commit log to say, so long over.
            xids = client
                .query_one(
                    "SELECT ARRAY(SELECT x FROM unnest($1::text[]) x \
                                   WHERE pg_xact_status(x::xid8) = 'in progress')",
                    &[&xids],
                )
                .map_err(|e| Error::db("watching open transactions", e))?
                .get(0);
        }
        if vxids.is_empty() && xids.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return Err(Error::Blocked {
                table: table.to_string(),
                waited: started.elapsed(),
                blockers: blockers(client, &vxids, &xids)?,
            });
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// What PostgreSQL tells about the transactions still open: their sessions, and prepared
/// transactions. A transaction ID that belongs to neither is named by its ID.
fn blockers(client: &mut Client, vxids: &[String], xids: &[String]) -> Result<Vec<Blocker>> {
    let mut found = Vec::new();
    let sessions = client
        .query(
            "SELECT l.pid, a.state, a.xact_start::text, a.usename::text, a.application_name, \
                    a.backend_xid::text \
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
              WHERE l.locktype = 'virtualxid' AND l.granted AND l.virtualxid = ANY($1::text[]) \
              ORDER BY a.xact_start NULLS LAST, l.pid",
            &[&vxids],
        )
        .map_err(|e| Error::db("describing open transactions", e))?;
    let mut explained: Vec<String> = Vec::new();
    for r in &sessions {
        let backend_xid: Option<String> = r.get(5);
        explained.extend(backend_xid);
        found.push(Blocker {
            pid: r.get(0),
            state: r.get(1),
            xact_start: r.get(2),
            user: r.get(3),
            application: r.get(4),
            prepared: None,
            xid: None,
        });
    }
    // pg_prepared_xacts shows 32-bit IDs; the snapshot gave 64-bit ones (epoch above).
    let short = |x: &String| x.parse::<u64>().map(|v| (v & 0xffff_ffff).to_string()).ok();
    let short_xids: Vec<String> = xids.iter().filter_map(short).collect();
    let prepared = client
        .query(
            "SELECT transaction::text, gid FROM pg_prepared_xacts \
              WHERE transaction::text = ANY($1::text[]) ORDER BY prepared",
            &[&short_xids],
        )
        .map_err(|e| Error::db("listing prepared transactions", e))?;
    for r in &prepared {
        let xid: String = r.get(0);
        explained.push(xid.clone());
        found.push(Blocker {
            pid: None,
            state: None,
            xact_start: None,
            user: None,
            application: None,
            prepared: Some(r.get(1)),
            xid: Some(xid),
        });
    }
    // With its session's details hidden (no pg_read_all_stats), an xid's session is listed above
    // without it: the xid is named only when no session is listed at all.
    if found.is_empty() {
        for x in xids
            .iter()
            .filter(|x| short(x).is_none_or(|s| !explained.contains(&s)))
        {
            found.push(Blocker {
                pid: None,
                state: None,
                xact_start: None,
                user: None,
                application: None,
                prepared: None,
                xid: Some(x.clone()),
            });
        }
    }
    Ok(found)
}
