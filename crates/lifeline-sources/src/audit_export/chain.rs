//! The hash chain of a source's exports. Each export's chain hash is SHA-256 over a canonical text
//! of what it recorded — its place, the previous export's chain hash, its range, row count and
//! content hash — so that changing, removing, inserting or reordering any export breaks every hash
//! after it. The text, byte for byte (docs/sources/audit-table.md):
//!
//! ```text
//! lifeline audit-table chain v1\n
//! chain=<name>\n seq=<n>\n previous=<hex or empty>\n time=<RFC 3339>\n table=<table>\n
//! watermark=<column>\n format=<csv|jsonl>\n after=<text or empty>\n through=<text or empty>\n
//! rows=<n>\n first=<text or empty>\n last=<text or empty>\n content_sha256=<hex>\n
//! ```
//!
//! (one `key=value` per line, in this order, each line ending in `\n`, no spaces). Snapshot IDs are
//! not part of it: a copy to another repository gets new IDs but keeps the chain.

use std::collections::BTreeMap;

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Id, Repository};
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::watermark::WatermarkType;
use super::{keys, Format, KIND};

/// The first line of the hashed text; a new definition gets a new version.
pub const HEADER: &str = "lifeline audit-table chain v1";

/// What one export's chain hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub chain: String,
    pub seq: u64,
    /// The previous export's chain hash (hex); `None` for the first.
    pub previous_chain: Option<String>,
    /// The snapshot's time: when the export chose its bound.
    pub time: String,
    pub table: String,
    pub watermark: String,
    pub format: Format,
    pub after: Option<String>,
    pub through: Option<String>,
    pub rows: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub content_sha256: String,
}

impl Link {
    /// The text the chain hash is taken over. Refused when a value holds a newline, which would make
    /// two different records read the same.
    pub fn canonical(&self) -> Result<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let fields = [
            ("chain", self.chain.clone()),
            ("seq", self.seq.to_string()),
            ("previous", opt(&self.previous_chain)),
            ("time", self.time.clone()),
            ("table", self.table.clone()),
            ("watermark", self.watermark.clone()),
            ("format", self.format.as_str().to_string()),
            ("after", opt(&self.after)),
            ("through", opt(&self.through)),
            ("rows", self.rows.to_string()),
            ("first", opt(&self.first)),
            ("last", opt(&self.last)),
            ("content_sha256", self.content_sha256.clone()),
        ];
        let mut text = format!("{HEADER}\n");
        for (key, value) in fields {
            if value.contains(['\n', '\r']) {
                return Err(Error::Invalid(format!(
                    "the export's {key} {value:?} holds a line break; it cannot be chained"
                )));
            }
            text.push_str(&format!("{key}={value}\n"));
        }
        Ok(text)
    }

    /// SHA-256 of [`Link::canonical`], hex.
    pub fn hash(&self) -> Result<String> {
        Ok(hex::encode(Sha256::digest(self.canonical()?.as_bytes())))
    }

    /// Record the link's fields in a snapshot's `source` map.
    pub fn record(&self, source: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: &str| {
            source.insert(k.to_string(), v.to_string());
        };
        put(keys::CHAIN, &self.chain);
        put(keys::SEQ, &self.seq.to_string());
        put(keys::TABLE, &self.table);
        put(keys::WATERMARK, &self.watermark);
        put(keys::FORMAT, self.format.as_str());
        put(keys::ROWS, &self.rows.to_string());
        put(keys::CONTENT_SHA256, &self.content_sha256);
        for (key, value) in [
            (keys::PREVIOUS_CHAIN_SHA256, &self.previous_chain),
            (keys::AFTER, &self.after),
            (keys::THROUGH, &self.through),
            (keys::FIRST, &self.first),
            (keys::LAST, &self.last),
        ] {
            if let Some(v) = value {
                put(key, v);
            }
        }
    }

    /// Read the link back from an export snapshot. The error names the missing or unreadable field.
    pub fn from_snapshot(snapshot: &Snapshot) -> std::result::Result<Link, String> {
        let s = &snapshot.source;
        let need = |k: &str| {
            s.get(k)
                .cloned()
                .ok_or_else(|| format!("its record has no {k}"))
        };
        let number = |k: &str| {
            need(k)?
                .parse::<u64>()
                .map_err(|_| format!("its {k} is not a number"))
        };
        let format = need(keys::FORMAT)?;
        Ok(Link {
            chain: need(keys::CHAIN)?,
            seq: number(keys::SEQ)?,
            previous_chain: s.get(keys::PREVIOUS_CHAIN_SHA256).cloned(),
            time: snapshot.time.clone(),
            table: need(keys::TABLE)?,
            watermark: need(keys::WATERMARK)?,
            format: Format::parse(&format)
                .ok_or_else(|| format!("its format {format:?} is unknown"))?,
            after: s.get(keys::AFTER).cloned(),
            through: s.get(keys::THROUGH).cloned(),
            rows: number(keys::ROWS)?,
            first: s.get(keys::FIRST).cloned(),
            last: s.get(keys::LAST).cloned(),
            content_sha256: need(keys::CONTENT_SHA256)?,
        })
    }
}

/// An export as the repository holds it.
#[derive(Debug, Clone)]
pub struct Export {
    pub id: Id,
    pub snapshot: Snapshot,
    pub link: Link,
    /// The chain hash it recorded (which [`Link::hash`] must give).
    pub chain_sha256: String,
    /// The previous export's snapshot ID it recorded.
    pub previous: Option<String>,
    pub file: String,
    pub kind: Option<WatermarkType>,
}

impl Export {
    pub fn from_snapshot(id: Id, snapshot: Snapshot) -> std::result::Result<Export, String> {
        let link = Link::from_snapshot(&snapshot)?;
        let s = &snapshot.source;
        let chain_sha256 = s
            .get(keys::CHAIN_SHA256)
            .cloned()
            .ok_or_else(|| format!("its record has no {}", keys::CHAIN_SHA256))?;
        let file = s
            .get(keys::FILE)
            .cloned()
            .unwrap_or_else(|| link.format.file_name(&link.table));
        Ok(Export {
            id,
            previous: s.get(keys::PREVIOUS).cloned(),
            kind: s
                .get(keys::WATERMARK_TYPE)
                .and_then(|t| WatermarkType::from_sql(t)),
            link,
            chain_sha256,
            file,
            snapshot,
        })
    }

    /// The IDs this export is known by: its own, and in a copy the original's.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.id.to_hex()];
        names.extend(
            self.snapshot
                .source
                .get(lifeline_repo::copy::COPIED_FROM)
                .cloned(),
        );
        names
    }
}

/// Every export snapshot of the repository, by chain: the readable ones, those of this kind whose
/// record cannot be read (with why), and snapshot objects that could not be read at all (any of
/// which may have been an export).
#[derive(Debug, Default)]
pub struct Chains {
    pub exports: BTreeMap<String, Vec<Export>>,
    /// `(snapshot ID, chain if known, why)`.
    pub unreadable: Vec<(String, Option<String>, String)>,
}

impl Chains {
    pub fn load(repo: &Repository) -> Result<Chains> {
        let listed = repo.load_snapshots()?;
        let mut chains = Chains::default();
        for (key, e) in listed.damaged {
            chains.unreadable.push((
                key.trim_start_matches("snapshots/").to_string(),
                None,
                e.to_string(),
            ));
        }
        for (id, snapshot) in listed.items {
            if snapshot.kind != KIND {
                continue;
            }
            let chain = snapshot.source.get(keys::CHAIN).cloned();
            match Export::from_snapshot(id, snapshot) {
                Ok(export) => chains
                    .exports
                    .entry(export.link.chain.clone())
                    .or_default()
                    .push(export),
                Err(why) => chains.unreadable.push((id.to_hex(), chain, why)),
            }
        }
        for exports in chains.exports.values_mut() {
            exports.sort_by(|a, b| {
                (a.link.seq, a.snapshot.timestamp(), a.id).cmp(&(
                    b.link.seq,
                    b.snapshot.timestamp(),
                    b.id,
                ))
            });
        }
        Ok(chains)
    }
}

/// The export the next one of `chain` follows: the one with the greatest sequence number (the
/// newest of them, should two claim it). Damage is logged, not fatal: an export that cannot be read
/// makes the next one repeat rows (never lose them), and `audit-table verify` reports it.
pub fn head(repo: &Repository, chain: &str) -> Result<Option<Export>> {
    // Each export continues from the previous one's watermark, which is in its snapshot.
    repo.require_read("an audit-table export, which continues from the previous export,")?;
    let mut chains = Chains::load(repo)?;
    for (id, of, why) in &chains.unreadable {
        if of.as_deref().is_none_or(|c| c == chain) {
            tracing::warn!(
                "snapshot {id} cannot be read ({why}); if it was an export of {chain}, this export repeats its rows. `lifeline audit-table verify {chain}` reports it"
            );
        }
    }
    let mut exports = chains.exports.remove(chain).unwrap_or_default();
    let head = exports.pop();
    if let (Some(h), Some(twin)) = (&head, exports.last()) {
        if twin.link.seq == h.link.seq {
            tracing::warn!(
                "exports {} and {} of {chain} both claim #{}: the chain forked (two exports ran at once?); continuing from the newer. `lifeline audit-table verify {chain}` reports it",
                twin.id.short(),
                h.id.short(),
                h.link.seq
            );
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn link(seq: u64) -> Link {
        Link {
            chain: "audit".into(),
            seq,
            previous_chain: None,
            time: "2026-12-01T10:00:00.000000001Z".into(),
            table: "audit_log".into(),
            watermark: "id".into(),
            format: Format::Csv,
            after: None,
            through: Some("3".into()),
            rows: 3,
            first: Some("1".into()),
            last: Some("3".into()),
            content_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn the_canonical_text_is_the_documented_one_and_every_field_counts() {
        let l = link(1);
        assert_eq!(
            l.canonical().expect("text"),
            format!(
                "lifeline audit-table chain v1\nchain=audit\nseq=1\nprevious=\ntime=2026-12-01T10:00:00.000000001Z\ntable=audit_log\nwatermark=id\nformat=csv\nafter=\nthrough=3\nrows=3\nfirst=1\nlast=3\ncontent_sha256={}\n",
                "ab".repeat(32)
            )
        );
        let base = l.hash().expect("hash");
        assert_eq!(base.len(), 64);
        let changes: [fn(&mut Link); 9] = [
            |l| l.seq = 2,
            |l| l.previous_chain = Some("00".repeat(32)),
            |l| l.time = "2026-12-01T10:00:01Z".into(),
            |l| l.after = Some("0".into()),
            |l| l.through = Some("4".into()),
            |l| l.rows = 2,
            |l| l.last = Some("2".into()),
            |l| l.content_sha256 = "cd".repeat(32),
            |l| l.format = Format::Jsonl,
        ];
        for change in changes {
            let mut other = l.clone();
            change(&mut other);
            assert_ne!(other.hash().expect("hash"), base);
        }
        let mut bad = l.clone();
        bad.first = Some("1\nrows=9".into());
        assert!(bad.hash().is_err());
    }

    #[test]
    fn a_link_survives_the_snapshot_record() {
        let mut l = link(4);
        l.previous_chain = Some("12".repeat(32));
        l.after = Some("0".into());
        let mut s = Snapshot::new(KIND, vec!["audit_log".into()], Id([0; 32]));
        s.time = l.time.clone();
        l.record(&mut s.source);
        assert_eq!(Link::from_snapshot(&s).expect("parsed"), l);
        s.source.remove(keys::ROWS);
        assert_eq!(
            Link::from_snapshot(&s).expect_err("no rows"),
            "its record has no rows"
        );
    }
}
