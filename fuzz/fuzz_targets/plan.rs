//! The plan file (docs/plan.md, TOML): parsed, then checked (every rule `lifeline plan check`
//! applies), then shown.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lifeline_plan::plan::{self, Plan};

/// Every TOML example in docs/plan.md.
fn examples() -> Vec<Vec<u8>> {
    let doc = include_str!("../../docs/plan.md");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.starts_with("```toml") => current = Some(String::new()),
            Some(text) if line.starts_with("```") => {
                out.push(std::mem::take(text).into_bytes());
                current = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(examples);
    },
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let path = Path::new("/nonexistent/plan.toml");
        if let Ok(parsed) = Plan::parse(path, text) {
            let problems = plan::check(&parsed, path, text);
            if problems.is_empty() {
                let _ = plan::show(&parsed, chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default());
            }
        }
    }
);
