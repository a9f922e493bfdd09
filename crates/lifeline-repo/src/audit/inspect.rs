//! Reading every stored record and checking each on its own: its name, its hash, its envelope and,
//! with keys, its seal. How the records fit together is `verify`'s part.

use rayon::prelude::*;

use super::envelope::{Envelope, Sealed, ENVELOPE_VERSION};
use super::event::Entry;
use super::name::{self, Name, PREFIX};
use super::verify::ProblemKind;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::Id;

/// What is wrong with one record taken alone.
#[derive(Debug, Clone)]
pub(crate) struct Flaw {
    pub kind: ProblemKind,
    pub message: String,
}

/// One stored record as read.
#[derive(Debug, Clone)]
pub(crate) struct Inspected {
    pub key: String,
    /// `None` when the key is not an audit record's name.
    pub name: Option<Name>,
    /// The records it links to, when its stored bytes are the ones its name commits to and its
    /// envelope reads: only then do its links say anything about the trail.
    pub links: Option<Vec<Name>>,
    /// The authenticated content (keys given, and the body opened).
    pub entry: Option<Entry>,
    pub flaw: Option<Flaw>,
}

impl Inspected {
    fn flawed(mut self, kind: ProblemKind, message: String) -> Self {
        self.flaw = Some(Flaw { kind, message });
        self
    }
}

/// Read and inspect every record under `audit/` that `wanted` accepts (by name; objects whose key is
/// no name are always read, to be reported). A record deleted between the listing and its reading is
/// left out: the records linking to it say it is missing.
pub(crate) fn read_all(
    storage: &dyn Storage,
    keyring: Option<&Keyring>,
    repository: Option<&str>,
    wanted: &(dyn Fn(&Name) -> bool + Sync),
) -> Result<Vec<Inspected>> {
    let listed = storage.list(PREFIX)?;
    listed
        .par_iter()
        .filter(|o| Name::from_key(&o.key).is_none_or(|n| wanted(&n)))
        .filter_map(|o| match storage.get(&o.key) {
            Ok(bytes) => Some(Ok(inspect(&o.key, &bytes, keyring, repository))),
            Err(Error::ObjectMissing { .. }) => None,
            Err(e) => Some(Err(e)),
        })
        .collect()
}

/// Check one record: the first flaw found is the one reported.
pub(crate) fn inspect(
    key: &str,
    bytes: &[u8],
    keyring: Option<&Keyring>,
    repository: Option<&str>,
) -> Inspected {
    let mut out = Inspected {
        key: key.to_string(),
        name: Name::from_key(key),
        links: None,
        entry: None,
        flaw: None,
    };
    let Some(own) = out.name else {
        return out.flawed(
            ProblemKind::Altered,
            format!("{key} is not an audit record's name ({PREFIX}YYYY-MM/TIME-<id>): a record was renamed, or something else was put in the trail"),
        );
    };
    if Id::of_stored(bytes) != own.id {
        return out.flawed(
            ProblemKind::Altered,
            format!("the bytes of {key} do not hash to its name: the record was altered"),
        );
    }
    let envelope = match Envelope::from_bytes(bytes, key) {
        Ok(e) => e,
        Err(e) => return out.flawed(ProblemKind::Altered, format!("{e}: the record was altered")),
    };
    if envelope.version != ENVELOPE_VERSION {
        return out.flawed(
            ProblemKind::Altered,
            format!(
                "{key} has envelope version {}, which this lifeline does not read (a newer lifeline wrote it, or it was altered)",
                envelope.version
            ),
        );
    }
    let own_time = name::format_time(&own.time);
    if envelope.time != own_time {
        return out.flawed(
            ProblemKind::Altered,
            format!(
                "{key} is named for {own_time} but its envelope says {}: the record was rewritten",
                envelope.time
            ),
        );
    }
    let mut links = Vec::with_capacity(envelope.links.len());
    for link in &envelope.links {
        match Name::parse(link) {
            Some(l) => links.push(l),
            None => {
                return out.flawed(
                    ProblemKind::Altered,
                    format!(
                    "{key} links to {link:?}, which is not a record name: the record was rewritten"
                ),
                )
            }
        }
    }
    out.links = Some(links);
    if let Some(repository) = repository {
        if envelope.repository != repository {
            return out.flawed(
                ProblemKind::Inserted,
                format!(
                    "{key} belongs to the trail of repository {}, not this one ({repository}): it was copied or forged into this trail",
                    envelope.repository
                ),
            );
        }
    }
    let Some(keyring) = keyring else {
        return out;
    };
    let payload = match envelope.unseal(keyring, key) {
        Ok(p) => p,
        // Sealed under an epoch destroyed with its record keys (a legacy epoch, format.md §3.2):
        // checked structurally only, as without keys.
        Err(crate::Error::Shredded { .. }) => return out,
        Err(e) => {
            return out.flawed(
                ProblemKind::Inserted,
                format!("{key} is intact but does not authenticate with this repository's keys ({e}): someone without the keys wrote it"),
            )
        }
    };
    let sealed = match Sealed::decode(&payload, key) {
        Ok(s) => s,
        Err(e) => return out.flawed(ProblemKind::Altered, e.to_string()),
    };
    if sealed.time != envelope.time || sealed.links != envelope.links {
        return out.flawed(
            ProblemKind::Altered,
            format!(
                "the envelope of {key} (written {}, links {:?}) differs from its sealed copy (written {}, links {:?}): the envelope was rewritten",
                envelope.time, envelope.links, sealed.time, sealed.links
            ),
        );
    }
    out.entry = Some(sealed.entry);
    out
}
