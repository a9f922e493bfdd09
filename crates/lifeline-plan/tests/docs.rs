//! The documentation stays true to the code: every TOML example in docs/plan.md is a plan this
//! version reads, the complete one passes `plan check`; every key the plan structs accept is
//! documented in docs/plan.md; every metric lifeline exports is in docs/monitoring.md's table.
//!
//! The key list is derived from the structs themselves, not written down here, so a new field
//! without documentation fails this test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{Duration, Utc};
use lifeline_plan::metrics::Metrics;
use lifeline_plan::options::{ExcludeOptions, RepositoryOptions};
use lifeline_plan::plan::{check, BaseBackupSchedule, Plan, Schedules, SourceDef, SourceKind};
use lifeline_plan::report::{CopyReport, JobReport, Outcome};
use lifeline_plan::schedule::Schedule;
use lifeline_plan::survey::{SourceSurvey, Survey};
use serde::de::value::{Error as DeError, StrDeserializer};
use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fenced block: its info string after the language, its first line (1-based) and its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match current.take() {
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```toml") {
                    current = Some(Block {
                        info: info.trim().to_string(),
                        line: i + 2,
                        text: String::new(),
                    });
                }
            }
            Some(mut b) => {
                if line.trim_start().starts_with("```") {
                    blocks.push(b);
                } else {
                    b.text.push_str(line);
                    b.text.push('\n');
                    current = Some(b);
                }
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```toml block");
    blocks
}

/// The complete example of docs/plan.md (the block marked ```toml complete).
fn complete_example() -> (Plan, String) {
    let blocks: Vec<Block> = toml_blocks(&doc("plan.md"))
        .into_iter()
        .filter(|b| b.info == "complete")
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "docs/plan.md needs exactly one ```toml complete block"
    );
    let text = blocks[0].text.clone();
    let plan = Plan::parse(Path::new("docs/plan.md"), &text).expect("the complete example parses");
    (plan, text)
}

#[test]
fn every_toml_example_in_the_plan_reference_is_a_plan() {
    let blocks = toml_blocks(&doc("plan.md"));
    assert!(blocks.len() > 5, "docs/plan.md lost its examples");
    for b in &blocks {
        let at = format!("docs/plan.md:{}", b.line);
        match b.info.as_str() {
            // A part of a table, shown alone: it must still be TOML.
            "fragment" => {
                let table = match b.text.parse::<toml::Table>() {
                    Ok(t) => t,
                    Err(e) => panic!("{at}: the fragment is not TOML: {e}"),
                };
                // Example schedules are schedules.
                if let Some(schedule) = table.get("schedule") {
                    let expressions: Schedules =
                        schedule.clone().try_into().expect("a schedule");
                    for e in expressions.expressions() {
                        if let Err(e) = Schedule::parse(e, "UTC") {
                            panic!("{at}: {e}");
                        }
                    }
                }
            }
            "" | "complete" => {
                // The error names the block's line as the plan file.
                if let Err(e) = Plan::parse(Path::new(&at), &b.text) {
                    panic!("{e}");
                }
            }
            other => panic!("{at}: unknown block marker {other:?}: use ```toml, ```toml fragment or ```toml complete"),
        }
    }
}

#[test]
fn the_complete_example_passes_plan_check_but_for_its_key_files() {
    let (plan, text) = complete_example();
    let problems = check(&plan, Path::new("plan.toml"), &text);
    // The example names key files of a production machine, which this one lacks.
    let other: Vec<String> = problems
        .iter()
        .filter(|p| !p.message.contains("does not exist"))
        .map(ToString::to_string)
        .collect();
    assert!(other.is_empty(), "{other:#?}");
    // What the reference promises of it: the seeds' tiers, one source of each kind but dumps,
    // a copy to a second region.
    let tiers: Vec<(&str, u64, u64)> = plan
        .tiers
        .iter()
        .map(|(n, t)| (n.as_str(), t.rto.as_secs(), t.rpo.as_secs()))
        .collect();
    assert_eq!(
        tiers,
        [
            ("tier1", 900, 300),
            ("tier2", 3600, 900),
            ("tier3", 4 * 3600, 3600),
            ("tier4", 24 * 3600, 4 * 3600)
        ]
    );
    let kinds: BTreeSet<&str> = plan.sources.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["command", "files", "postgres"]));
    let pg = plan
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::Postgres)
        .expect("a postgres source");
    let jobs: Vec<String> = plan
        .schedules(pg)
        .expect("schedules")
        .iter()
        .map(|j| format!("{} {}", j.job.as_str(), j.schedule.expression()))
        .collect();
    assert_eq!(jobs, ["full 0 2 * * *", "incremental 0 * * * *"]);
    assert_eq!(plan.copies.len(), 1);
}

// ---- every key the plan structs accept ----

/// Key paths found while deserializing: map entries are `NAME`, list items add nothing.
#[derive(Default)]
struct Found {
    paths: Vec<Vec<String>>,
    /// Enum key path → its variants.
    variants: BTreeMap<String, Vec<&'static str>>,
}

/// A deserializer that answers every struct with all of its fields (serde tells a deserializer
/// the field names), every map with one entry `NAME`, every list with one item and every value
/// with one the field accepts, and records the key paths it was asked for. It sees every field,
/// documented or not: that is the point.
struct Probe<'a> {
    path: Vec<String>,
    found: &'a RefCell<Found>,
}

impl<'a> Probe<'a> {
    fn at(&self, key: &str) -> Probe<'a> {
        let mut path = self.path.clone();
        path.push(key.to_string());
        self.found.borrow_mut().paths.push(path.clone());
        Probe {
            path,
            found: self.found,
        }
    }

    fn text(&self) -> &'static str {
        // Tags are KEY=VALUE; every other string the plan reads parses as a duration.
        match self.path.last() {
            Some(k) if k.contains("tags") => "env=prod",
            _ => "1h",
        }
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_str(self.text())
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_bool(true)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_u64(1)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_u64(1)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        // A source's keys are found another way (see `source_keys`): an empty list here.
        if self.path == ["sources"] {
            return v.visit_seq(OneItem(None));
        }
        v.visit_seq(OneItem(Some(self)))
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_map(Fields {
            probe: self,
            fields: &["NAME"],
            next: 0,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_map(Fields {
            probe: self,
            fields,
            next: 0,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.found
            .borrow_mut()
            .variants
            .insert(self.path.join("."), variants.to_vec());
        v.visit_enum(variants[0].into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct tuple tuple_struct identifier ignored_any
    }
}

struct OneItem<'a>(Option<Probe<'a>>);

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0.take().map(|p| seed.deserialize(p)).transpose()
    }
}

struct Fields<'a> {
    probe: Probe<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.fields.get(self.next) {
            Some(key) => seed
                .deserialize(StrDeserializer::<DeError>::new(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let key = self.fields[self.next];
        self.next += 1;
        seed.deserialize(self.probe.at(key))
    }
}

/// The key paths `T` accepts below `prefix`, leaves only (a table's own path is implied by its
/// keys).
fn probe<'de, T: Deserialize<'de>>(prefix: &[&str]) -> (Vec<Vec<String>>, Found) {
    let found = RefCell::new(Found::default());
    let root = Probe {
        path: prefix.iter().map(|s| s.to_string()).collect(),
        found: &found,
    };
    if let Err(e) = T::deserialize(root) {
        panic!("probing {}: {e}", std::any::type_name::<T>());
    }
    let found = found.into_inner();
    let leaves = found
        .paths
        .iter()
        .filter(|p| {
            !found
                .paths
                .iter()
                .any(|q| q.len() > p.len() && q.starts_with(p))
        })
        .cloned()
        .collect();
    (leaves, found)
}

/// The keys of a `[[sources]]` table. `SourceDef` flattens its excludes and catches unknown keys
/// (so `plan check` can name them with their line), which hides its field list from serde; its
/// derived Debug lists the fields instead.
fn source_keys() -> Vec<String> {
    let def: SourceDef =
        toml::from_str("name = \"n\"\nkind = \"files\"\nclass = \"c\"").expect("a minimal source");
    let debug = format!("{def:#?}");
    let mut keys = Vec::new();
    for line in debug.lines() {
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        let Some((field, _)) = rest.split_once(':') else {
            continue;
        };
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        match field {
            "unknown" => {}
            "exclude" => keys.extend(
                probe::<ExcludeOptions>(&[])
                    .0
                    .into_iter()
                    .map(|p| p.join(".")),
            ),
            "base_backup" => keys.extend(
                probe::<BaseBackupSchedule>(&["base_backup"])
                    .0
                    .into_iter()
                    .map(|p| p.join(".")),
            ),
            f => keys.push(f.to_string()),
        }
    }
    keys
}

/// Keys every source has, whatever its kind (as `plan check` names them).
const COMMON_SOURCE_KEYS: [&str; 7] = [
    "name", "kind", "class", "schedule", "timezone", "tags", "drill",
];

/// The part of `markdown` under the first heading holding `marker`, down to the next heading of
/// the same or a higher level.
fn section<'a>(markdown: &'a str, marker: &str) -> Option<&'a str> {
    let mut start = None;
    let mut offset = 0;
    let mut fenced = false;
    for line in markdown.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        // A `# comment` in a TOML block is not a heading.
        let level = line.chars().take_while(|&c| c == '#').count();
        if !fenced && level > 0 && line[level..].starts_with(' ') {
            match start {
                Some((from, l)) if level <= l => return Some(&markdown[from..offset]),
                None if line.contains(marker) => start = Some((offset, level)),
                _ => {}
            }
        }
        offset += line.len();
    }
    start.map(|(from, _)| &markdown[from..])
}

#[test]
fn every_plan_key_is_in_the_reference() {
    let reference = doc("plan.md");
    let (paths, found) = probe::<Plan>(&[]);
    let mut missing = Vec::new();

    // [[copies]] are repositories: documented once, under [repository].
    let keys_under = |top: &str| -> BTreeSet<Vec<String>> {
        paths
            .iter()
            .filter(|p| p[0] == top)
            .map(|p| p[1..].to_vec())
            .collect()
    };
    assert_eq!(keys_under("copies"), keys_under("repository"));
    let (repository, _) = probe::<RepositoryOptions>(&[]);
    assert_eq!(
        keys_under("repository"),
        repository.into_iter().collect::<BTreeSet<_>>()
    );
    if section(&reference, "`[[copies]]`").is_none() {
        missing.push("a heading with `[[copies]]`".to_string());
    }

    for path in &paths {
        match path[0].as_str() {
            "copies" => continue,
            // Probed from SourceDef below; the list is empty to the probe.
            "sources" if path.len() == 1 => continue,
            _ => {}
        }
        // The longest prefix with a heading of its own: `[repository.s3]`, `[classes.NAME]`, …
        let located = (1..path.len()).rev().find_map(|k| {
            let table = path[..k].join(".");
            [format!("`[{table}]`"), format!("`[[{table}]]`")]
                .into_iter()
                .find_map(|m| section(&reference, &m).map(|s| (m, s, k)))
        });
        let Some((heading, text, k)) = located else {
            missing.push(format!("a heading for {}", path.join(".")));
            continue;
        };
        let key: Vec<&str> = path[k..]
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "NAME")
            .collect();
        let key = format!("`{}`", key.join("."));
        if !text.contains(&key) {
            missing.push(format!("{key} under {heading}"));
        }
    }

    let Some(sources) = section(&reference, "`[[sources]]`") else {
        panic!("docs/plan.md has no heading with `[[sources]]`");
    };
    let keys = source_keys();
    for key in &keys {
        if !sources.contains(&format!("`{key}`")) {
            missing.push(format!("`{key}` under `[[sources]]`"));
        }
    }
    // Each kind's own keys, under its own heading; and `plan check`'s list of them is complete.
    let mut kinds = BTreeSet::new();
    let kind_names = {
        let f = RefCell::new(Found::default());
        let _ = SourceKind::deserialize(Probe {
            path: vec!["kind".into()],
            found: &f,
        });
        f.into_inner().variants["kind"].clone()
    };
    for name in kind_names {
        let kind = SourceKind::deserialize(StrDeserializer::<DeError>::new(name)).expect("a kind");
        let marker = format!("`kind = \"{name}\"`");
        let Some(text) = section(sources, &marker) else {
            missing.push(format!("a heading with {marker} under `[[sources]]`"));
            continue;
        };
        for key in kind.own_keys() {
            kinds.insert(key.to_string());
            let keyed = format!("`{key}");
            if !text.contains(&keyed) {
                missing.push(format!("`{key}` under {marker}"));
            }
        }
    }
    let mut own: BTreeSet<String> = keys
        .iter()
        .filter(|k| !COMMON_SOURCE_KEYS.contains(&k.as_str()))
        .map(|k| k.split('.').next().unwrap_or(k).to_string())
        .collect();
    own.retain(|k| !kinds.contains(k));
    for key in own {
        missing.push(format!(
            "`{key}` in the own_keys of a kind (plan check cannot tell which kinds take it)"
        ));
    }

    // Enumerated values: `verify = "snapshot"` and the like.
    for (path, variants) in &found.variants {
        for v in variants {
            if !reference.contains(&format!("\"{v}\"")) {
                missing.push(format!("value \"{v}\" of {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/plan.md (or the code) lacks:\n{}",
        missing.join("\n")
    );
}

// ---- every metric ----

#[test]
fn every_metric_is_in_the_monitoring_table() {
    let (plan, _) = complete_example();
    let metrics = Metrics::new();
    metrics.declare(&plan);
    let now = Utc::now();
    let mut survey = Survey::default();
    for (i, source) in plan.sources.iter().enumerate() {
        metrics.set_running(&plan, &source.name, i == 0);
        let copies = plan
            .copies
            .iter()
            .map(|c| CopyReport {
                target: c.url.clone().unwrap_or_default(),
                ok: true,
                snapshots: 1,
                bytes_added: 10,
                message: None,
            })
            .collect();
        for outcome in [Outcome::Success, Outcome::Partial, Outcome::Failure] {
            metrics.record(
                &plan,
                &JobReport {
                    source: source.name.clone(),
                    kind: source.kind.as_str().into(),
                    class: source.class.clone(),
                    tier: String::new(),
                    job: source.default_job().as_str().into(),
                    started: (now - Duration::seconds(60)).to_rfc3339(),
                    finished: now.to_rfc3339(),
                    duration_seconds: 60.0,
                    outcome,
                    message: None,
                    snapshot: Some("0123abcd".into()),
                    bytes: 1000,
                    bytes_added: 100,
                    copies: Clone::clone(&copies),
                    forgotten: 1,
                    verified: Some(true),
                },
            );
        }
        survey.sources.insert(
            source.name.clone(),
            SourceSurvey {
                recovery_point: Some(now - Duration::seconds(30)),
                wal_archived: (source.kind == SourceKind::Postgres)
                    .then(|| now - Duration::seconds(20)),
                copy_lag: plan
                    .copies
                    .iter()
                    .map(|c| (c.url.clone().unwrap_or_default(), 5.0))
                    .collect(),
            },
        );
    }
    let urls = std::iter::once(&plan.repository).chain(&plan.copies);
    survey.repository_bytes = urls
        .map(|r| (r.url.clone().unwrap_or_default(), 1 << 30))
        .collect();
    metrics.survey(&plan, &survey);
    let text = metrics.encode();

    // Family name → type, from `# TYPE`; counters' samples carry `_total`.
    let mut exposed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            exposed.insert(name, kind.to_string());
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(exposed.contains_key(name), "sample {name} has no # TYPE");
    }
    assert!(exposed.len() >= 20, "{text}");

    let monitoring = doc("monitoring.md");
    let table = section(&monitoring, "## Metrics").expect("docs/monitoring.md has ## Metrics");
    let mut missing = Vec::new();
    for (name, kind) in &exposed {
        let row = table
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{name}`")));
        match row {
            None => missing.push(format!("{name} ({kind})")),
            Some(row) if !row.contains(&format!("| {kind} |")) => {
                missing.push(format!("{name}: its row does not say {kind}"))
            }
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "docs/monitoring.md's metrics table lacks:\n{}",
        missing.join("\n")
    );
}

/// The plan the Kubernetes manifests ship in their ConfigMap is one `plan check` accepts, but for
/// the key files a pod gets from its Secret.
#[test]
fn the_kubernetes_configmap_holds_a_plan_that_passes_plan_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/base/plan-configmap.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = yaml
        .find("plan.toml: |")
        .expect("the ConfigMap has a plan.toml key");
    // The block scalar: every following line indented by four spaces (or blank).
    let text: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let plan = Plan::parse(Path::new("plan.toml"), &text)
        .unwrap_or_else(|e| panic!("the ConfigMap's plan: {e}"));
    assert!(plan.sources.len() >= 2, "{text}");
    let other: Vec<String> = check(&plan, Path::new("plan.toml"), &text)
        .iter()
        .filter(|p| !p.message.contains("does not exist"))
        .map(ToString::to_string)
        .collect();
    assert!(other.is_empty(), "{other:#?}");
}
