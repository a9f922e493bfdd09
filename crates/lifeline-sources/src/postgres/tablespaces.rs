//! Where a restore puts the tablespaces of a file-mode base backup. The backup stores each one as
//! `pg_tblspc/OID` (the server version's directory inside it); PostgreSQL wants `pg_tblspc/OID` to
//! be a symbolic link, so each is written to a directory of its own and linked: by default where it
//! was (from `pg_backup_stop`'s tablespace map), or under `--tablespace-dir DIR` as `DIR/OID`.

use std::fs;
use std::path::{Path, PathBuf};

use lifeline_repo::snapshot::Snapshot;

use super::catalog::keys;
use super::error::{Error, Result};

/// One tablespace to restore: its OID and the directory it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub oid: String,
    pub dir: PathBuf,
}

/// The tablespaces of `backup` and where they go, checked before anything is written: each
/// directory must be missing or empty, so a restore never writes into a live cluster's tablespace.
pub fn placements(backup: &Snapshot, under: Option<&Path>) -> Result<Vec<Placement>> {
    let Some(map) = backup.source.get(keys::TABLESPACE_MAP) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (oid, original) in parse_map(map)? {
        let dir = match under {
            Some(dir) => dir.join(&oid),
            None => original,
        };
        let occupied = match fs::read_dir(&dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        if occupied {
            return Err(Error::Invalid(format!(
                "tablespace {oid} goes to {}, which is not empty (the original cluster's tablespace?); pass --tablespace-dir DIR to restore each tablespace to DIR/OID",
                dir.display()
            )));
        }
        out.push(Placement { oid, dir });
    }
    Ok(out)
}

/// `OID PATH` per line, as `pg_backup_stop` writes it (a path's own newlines escaped with `\`).
fn parse_map(map: &str) -> Result<Vec<(String, PathBuf)>> {
    map.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (oid, path) = line.split_once(' ').ok_or_else(|| {
                Error::Invalid(format!(
                    "the backup's tablespace map has a bad line {line:?}"
                ))
            })?;
            if oid.parse::<u32>().is_err() || !path.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "the backup's tablespace map has a bad line {line:?}"
                )));
            }
            Ok((oid.to_string(), PathBuf::from(unescape(path))))
        })
        .collect()
}

fn unescape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Link `pgdata/pg_tblspc/OID` to where the tablespace was restored.
pub fn link(pgdata: &Path, placement: &Placement) -> Result<()> {
    let link = pgdata.join("pg_tblspc").join(&placement.oid);
    std::os::unix::fs::symlink(&placement.dir, &link).map_err(|e| Error::io(&link, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn backup_with(map: &str) -> Snapshot {
        let mut s = Snapshot::new("postgres", Vec::new(), lifeline_repo::Id::of_stored(b"t"));
        s.source.insert(keys::TABLESPACE_MAP.into(), map.into());
        s
    }

    #[test]
    fn tablespaces_go_where_they_were_or_under_the_given_directory() {
        let dir = tempfile::tempdir().unwrap();
        let was = dir.path().join("was here");
        let backup = backup_with(&format!("16393 {}\n", was.display()));
        assert_eq!(
            placements(&backup, None).unwrap(),
            [Placement {
                oid: "16393".into(),
                dir: was.clone()
            }]
        );
        let under = dir.path().join("spaces");
        assert_eq!(
            placements(&backup, Some(&under)).unwrap()[0].dir,
            under.join("16393")
        );

        // Occupied: refused, naming the way out.
        fs::create_dir_all(&was).unwrap();
        fs::write(was.join("PG_15_202209061"), "").unwrap();
        let err = placements(&backup, None).unwrap_err().to_string();
        assert!(err.contains("--tablespace-dir"), "{err}");
        assert!(placements(&backup_with(""), None).unwrap().is_empty());
        assert!(placements(&backup_with("x /a\n"), None).is_err());
        assert_eq!(unescape(r"/a\ b\\c"), r"/a b\c");
    }
}
