//! Object keys as paths of a directory tree, and back (docs/sources/s3.md, key mapping).
//!
//! A key is split on `/`; each segment becomes a name. A directory cannot also be a file, so an
//! object whose key is also the prefix of other keys (`a` beside `a/b`) is stored inside the
//! directory of its key under [`OWN_OBJECT`]. So that no real segment can be taken for that name, a
//! segment that starts with `%` is stored with one more `%` in front. Keys the S3 client lists never
//! have empty, `.` or `..` segments (it refuses to list them), so those need no mapping.

use std::collections::HashSet;

/// The name, inside the directory of its key, of an object whose key is also a prefix of others.
pub const OWN_OBJECT: &str = "%object";

/// The tree names of `key`, below the snapshot's `objects/`. `is_prefix`: other keys start with
/// `key/`.
pub fn path_of(key: &str, is_prefix: bool) -> Vec<String> {
    let mut names: Vec<String> = key.split('/').map(escape).collect();
    if is_prefix {
        names.push(OWN_OBJECT.to_string());
    }
    names
}

/// The key that the tree names `names` (below `objects/`) stand for; `None` for names no key maps
/// to.
pub fn key_of(names: &[&str]) -> Option<String> {
    let (last, dirs) = names.split_last()?;
    let mut segments = dirs
        .iter()
        .map(|n| unescape(n))
        .collect::<Option<Vec<&str>>>()?;
    if *last != OWN_OBJECT {
        segments.push(unescape(last)?);
    }
    if segments.is_empty() {
        return None;
    }
    Some(segments.join("/"))
}

/// Every key of `keys` that other keys continue with `/`: these become directories.
pub(crate) fn prefixes<'k>(keys: impl Iterator<Item = &'k str>) -> HashSet<&'k str> {
    let mut prefixes = HashSet::new();
    for key in keys {
        for (i, _) in key.match_indices('/') {
            prefixes.insert(&key[..i]);
        }
    }
    prefixes
}

fn escape(segment: &str) -> String {
    if segment.starts_with('%') {
        format!("%{segment}")
    } else {
        segment.to_string()
    }
}

fn unescape(name: &str) -> Option<&str> {
    if name.is_empty() {
        return None;
    }
    match name.strip_prefix('%') {
        Some(rest) if rest.starts_with('%') => Some(rest),
        Some(_) => None,
        None => Some(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(keys: &[&str]) -> Vec<(String, Vec<String>)> {
        let prefixes = prefixes(keys.iter().copied());
        keys.iter()
            .map(|k| (k.to_string(), path_of(k, prefixes.contains(k))))
            .collect()
    }

    #[test]
    fn plain_keys_are_their_own_paths() {
        let m = mapped(&["index.html", "img/logo.png", "a b/c#d%e.txt"]);
        assert_eq!(m[0].1, ["index.html"]);
        assert_eq!(m[1].1, ["img", "logo.png"]);
        assert_eq!(m[2].1, ["a b", "c#d%e.txt"]);
    }

    #[test]
    fn an_object_that_is_also_a_prefix_goes_inside_its_directory() {
        let m = mapped(&["a", "a/b", "a/b/c", "ab"]);
        assert_eq!(m[0].1, ["a", OWN_OBJECT]);
        assert_eq!(m[1].1, ["a", "b", OWN_OBJECT]);
        assert_eq!(m[2].1, ["a", "b", "c"]);
        assert_eq!(m[3].1, ["ab"]);
    }

    #[test]
    fn segments_starting_with_percent_are_escaped_so_nothing_collides() {
        let keys = [
            "a",
            "a/%object",
            "a/%%object",
            "%",
            "%x/%",
            "x/%y%/z",
            "%object",
        ];
        let m = mapped(&keys);
        assert_eq!(m[1].1, ["a", "%%object"]);
        assert_eq!(m[3].1, ["%%"]);
        assert_eq!(m[6].1, ["%%object"]);
        let paths: HashSet<&Vec<String>> = m.iter().map(|(_, p)| p).collect();
        assert_eq!(paths.len(), keys.len(), "two keys share a path: {m:?}");
    }

    #[test]
    fn every_mapped_key_maps_back() {
        let keys = [
            "a",
            "a/b",
            "a/%object",
            "%",
            "%%",
            "%a/%%b/c",
            "d/e/f",
            "d/e",
            "ü/ñ",
        ];
        for (key, path) in mapped(&keys) {
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            assert_eq!(key_of(&names).as_deref(), Some(key.as_str()), "{path:?}");
        }
    }

    #[test]
    fn names_no_key_maps_to_are_refused() {
        assert_eq!(key_of(&[]), None);
        assert_eq!(key_of(&[OWN_OBJECT]), None);
        assert_eq!(key_of(&["%x"]), None);
        assert_eq!(key_of(&["%object", "b"]), None);
        assert_eq!(key_of(&[""]), None);
    }
}
