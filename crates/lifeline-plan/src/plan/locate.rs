//! Where a setting is in the plan file: a second, span-keeping parse (toml_edit) maps a key path such
//! as `sources[2].class` to its line, so problems found after serde has read the file still say where.

use toml_edit::{ImDocument, Item};

/// A step of a key path.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

pub struct Locator {
    doc: Option<ImDocument<String>>,
    line_starts: Vec<usize>,
}

impl Locator {
    pub fn new(text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            doc: ImDocument::parse(text.to_string()).ok(),
            line_starts,
        }
    }

    /// The 1-based line of the deepest part of `path` the file has: the key itself when present,
    /// else the table that should hold it.
    pub fn line(&self, path: &[Seg<'_>]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item: &Item = doc.as_item();
        let mut span = None;
        for seg in path {
            let next = match *seg {
                Seg::Key(key) => {
                    let Some((k, v)) = item.as_table_like().and_then(|t| t.get_key_value(key))
                    else {
                        break;
                    };
                    span = k.span().or_else(|| v.span()).or(span);
                    v
                }
                Seg::Index(i) => {
                    let Some(v) = item.get(i) else { break };
                    span = match v {
                        Item::Table(t) => t.span(),
                        other => other.span(),
                    }
                    .or(span);
                    v
                }
            };
            item = next;
        }
        span.map(|s| self.line_of(s.start))
    }

    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_arrays_of_tables_are_found_by_index() {
        let text = "[repository]\nurl = \"/r\"\n\n[[sources]]\nname = \"a\"\n\n[[sources]]\nname = \"b\"\nclass = \"x\"\n";
        let l = Locator::new(text);
        assert_eq!(l.line(&[Seg::Key("repository"), Seg::Key("url")]), Some(2));
        assert_eq!(
            l.line(&[Seg::Key("sources"), Seg::Index(1), Seg::Key("class")]),
            Some(9)
        );
        // A missing key points at the table that should hold it.
        assert_eq!(
            l.line(&[Seg::Key("sources"), Seg::Index(0), Seg::Key("class")]),
            Some(4)
        );
    }
}
