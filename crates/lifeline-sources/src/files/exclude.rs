//! What a file backup leaves out, decided per entry as the walk lists a directory: glob patterns
//! (`--exclude`), the contents of tagged cache directories (`--exclude-caches`) and other file
//! systems (`--one-file-system`). restic's rules, so its users' exclude files work unchanged.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use lifeline_repo::{Error, Result};

/// The file that marks a cache directory (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// What a valid `CACHEDIR.TAG` starts with; a tag file without it is an ordinary file.
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Glob patterns as restic reads them, for `backup --exclude` and `restore --include/--exclude`:
/// one starting with `/` is matched against the whole absolute path; any other against the end of
/// it, so `*.tmp` matches a name anywhere and `cache/*` the entries of every directory named
/// `cache`. `*` and `?` stay within one name, `**` crosses directories, `[...]` is a class, `\`
/// escapes, and a trailing `/` is ignored.
#[derive(Debug, Clone, Default)]
pub struct Globs(GlobSet);

impl Globs {
    /// `what` names the patterns in errors (`exclude`, `--include`).
    pub fn new(patterns: &[String], what: &str) -> Result<Self> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = pattern.trim_end_matches('/');
            let anchored = match glob {
                "" if pattern.is_empty() => {
                    return Err(Error::Invalid(format!(
                        "an {what} pattern is empty; remove it or write what it should match"
                    )))
                }
                "" => "/".to_string(),
                g if g.starts_with('/') => g.to_string(),
                g => format!("**/{g}"),
            };
            let compiled = GlobBuilder::new(&anchored)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Error::Invalid(format!(
                        "{what} pattern {pattern:?} is not a valid glob: {}; `*`, `?`, `**` and `[...]` are special, `\\` escapes them",
                        e.kind()
                    ))
                })?;
            set.add(compiled);
        }
        set.build()
            .map(Globs)
            .map_err(|e| Error::Invalid(format!("{what} patterns: {e}")))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a pattern matches `path` (absolute; names need not be UTF-8).
    pub fn matches(&self, path: impl AsRef<Path>) -> bool {
        !self.0.is_empty() && self.0.is_match(path)
    }
}

/// The exclusion rules of one backup. The default leaves nothing out.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    patterns: Globs,
    caches: bool,
    one_file_system: bool,
}

impl Exclusions {
    /// `patterns` as `Globs` reads them.
    pub fn new(patterns: &[String], caches: bool, one_file_system: bool) -> Result<Self> {
        Ok(Exclusions {
            patterns: Globs::new(patterns, "exclude")?,
            caches,
            one_file_system,
        })
    }

    /// Whether a pattern leaves `path` out (a directory with everything below it).
    pub fn excludes(&self, path: &Path) -> bool {
        self.patterns.matches(path)
    }

    /// Whether `dir` is a cache directory whose contents, all but the tag, are left out.
    pub(super) fn is_cache(&self, dir: &Path) -> bool {
        self.caches && has_cache_tag(dir)
    }

    /// Whether an entry lies on another file system than the directory it is listed in (`dir_dev`):
    /// a mount point is kept as an empty directory, nothing below it is read.
    pub(super) fn crosses(&self, meta: &Metadata, dir_dev: u64) -> bool {
        self.one_file_system && meta.dev() != dir_dev
    }
}

/// One pattern per line; blank lines and lines starting with `#` are skipped, as in restic's
/// `--exclude-file`.
pub fn patterns_from_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect())
}

fn has_cache_tag(dir: &Path) -> bool {
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    File::open(dir.join(CACHEDIR_TAG))
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str], path: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Exclusions::new(&patterns, false, false)
            .expect("valid")
            .excludes(Path::new(path))
    }

    #[test]
    fn patterns_match_names_anywhere_and_absolute_paths_from_the_root() {
        assert!(excludes(&["*.tmp"], "/srv/a/b/x.tmp"));
        assert!(excludes(&["*.tmp"], "/x.tmp"));
        assert!(!excludes(&["*.tmp"], "/srv/x.tmp.keep"));
        assert!(excludes(&["/srv/cache"], "/srv/cache"));
        assert!(excludes(&["/srv/cache/"], "/srv/cache"));
        assert!(!excludes(&["/srv/cache"], "/home/srv/cache"));
        assert!(excludes(&["cache/*.bin"], "/home/u/cache/x.bin"));
        assert!(!excludes(&["cache/*.bin"], "/home/u/cache/sub/x.bin"));
        assert!(excludes(&["/home/**/*.bin"], "/home/u/cache/sub/x.bin"));
        assert!(excludes(&["file-?.log"], "/var/file-1.log"));
        assert!(excludes(&["file-[0-3].log"], "/var/file-2.log"));
        assert!(!excludes(&["file-[0-3].log"], "/var/file-7.log"));
        assert!(!excludes(&[], "/anything"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Exclusions::new(&["ok".into(), "[abc".into()], false, false)
            .expect_err("unclosed class");
        assert!(err.to_string().contains("\"[abc\""), "{err}");
        assert!(Exclusions::new(&[String::new()], false, false).is_err());
    }
}
