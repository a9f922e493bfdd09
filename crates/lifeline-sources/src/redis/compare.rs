//! Key counts per database, as recorded with a snapshot and as a restored server reports them, and
//! their comparison. Keys without a time to live must match exactly; keys with one may have expired
//! between the capture and the restore, so fewer of them is expected, never more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One database's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbKeys {
    pub keys: u64,
    /// Keys with a time to live (an expire time).
    pub expires: u64,
}

impl DbKeys {
    /// Keys without a time to live.
    pub fn persistent(&self) -> u64 {
        self.keys.saturating_sub(self.expires)
    }
}

/// `"db0"` → its keys; databases without keys are left out, as INFO leaves them out.
pub type KeyCounts = BTreeMap<String, DbKeys>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Equal,
    /// Every key without a time to live is there; some with one have expired since.
    ExpiredSince,
    Differ,
}

/// One database compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbComparison {
    pub db: String,
    pub expected: DbKeys,
    pub found: DbKeys,
    pub verdict: Verdict,
}

impl DbComparison {
    pub fn describe(&self) -> String {
        let (e, f) = (self.expected, self.found);
        match self.verdict {
            Verdict::Equal => format!("{}: {} keys ({} with a TTL), equal", self.db, f.keys, f.expires),
            Verdict::ExpiredSince => format!(
                "{}: {} of {} keys; all {} without a TTL are there, {} with a TTL expired since the backup",
                self.db,
                f.keys,
                e.keys,
                e.persistent(),
                e.expires - f.expires
            ),
            Verdict::Differ => format!(
                "{}: expected {} keys ({} with a TTL), found {} ({} with a TTL)",
                self.db, e.keys, e.expires, f.keys, f.expires
            ),
        }
    }
}

/// Compare every database either side names.
pub fn compare(expected: &KeyCounts, found: &KeyCounts) -> Vec<DbComparison> {
    let mut names: Vec<&String> = expected.keys().chain(found.keys()).collect();
    names.sort_by_key(|n| (n.len(), n.as_str()));
    names.dedup();
    names
        .into_iter()
        .map(|db| {
            let e = expected.get(db).copied().unwrap_or_default();
            let f = found.get(db).copied().unwrap_or_default();
            let verdict = if e == f {
                Verdict::Equal
            } else if e.persistent() == f.persistent() && f.expires < e.expires {
                Verdict::ExpiredSince
            } else {
                Verdict::Differ
            };
            DbComparison {
                db: db.clone(),
                expected: e,
                found: f,
                verdict,
            }
        })
        .collect()
}

/// No database differs.
pub fn matches(comparisons: &[DbComparison]) -> bool {
    comparisons.iter().all(|c| c.verdict != Verdict::Differ)
}

pub fn encode(counts: &KeyCounts) -> String {
    serde_json::to_string(counts).unwrap_or_else(|_| "{}".into())
}

pub fn decode(text: &str) -> Result<KeyCounts, String> {
    serde_json::from_str(text).map_err(|e| format!("key counts {text:?} are not readable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(list: &[(&str, u64, u64)]) -> KeyCounts {
        list.iter()
            .map(|(db, keys, expires)| {
                (
                    db.to_string(),
                    DbKeys {
                        keys: *keys,
                        expires: *expires,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn persistent_keys_must_match_and_volatile_ones_may_only_be_fewer() {
        let expected = counts(&[("db0", 10, 2), ("db2", 5, 0)]);
        let same = compare(&expected, &expected);
        assert!(same.iter().all(|c| c.verdict == Verdict::Equal));
        let expired = compare(&expected, &counts(&[("db0", 9, 1), ("db2", 5, 0)]));
        assert_eq!(expired[0].verdict, Verdict::ExpiredSince);
        assert!(matches(&expired));
        assert!(
            expired[0].describe().contains("1 with a TTL expired"),
            "{}",
            expired[0].describe()
        );
        let lost = compare(&expected, &counts(&[("db0", 9, 2)]));
        assert_eq!(lost[0].verdict, Verdict::Differ);
        assert_eq!(lost[1].db, "db2");
        assert_eq!(lost[1].found, DbKeys::default());
        assert!(!matches(&lost));
        // A database the snapshot did not have is a difference too.
        let extra = compare(
            &expected,
            &counts(&[("db0", 10, 2), ("db2", 5, 0), ("db10", 1, 0)]),
        );
        assert_eq!(
            extra.iter().map(|c| c.db.as_str()).collect::<Vec<_>>(),
            ["db0", "db2", "db10"]
        );
        assert!(!matches(&extra));
        assert_eq!(decode(&encode(&expected)).expect("round trip"), expected);
        assert_eq!(super::super::server::databases_for(&expected), 16);
        assert_eq!(
            super::super::server::databases_for(&counts(&[("db40", 1, 0)])),
            41
        );
    }
}
