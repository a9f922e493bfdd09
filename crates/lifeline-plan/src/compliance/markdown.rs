//! The report as Markdown (GitHub-flavoured tables), for a ticket, a wiki or a pull request.
//! Strings from the trail are escaped so a cause quoting `|`, `*` or `<tag>` cannot break a table
//! or turn into markup; line breaks inside a cell become `<br>`.

use std::fmt::Write;

use lifeline_repo::audit::EventResult;

use super::model::*;
use super::text::{self, percent_or_dash};

pub fn render_markdown(report: &MonthlyReport) -> String {
    let mut md = String::with_capacity(16 * 1024);
    let h = &report.header;
    // Writing to a String cannot fail.
    let _ = write!(
        md,
        "# Backup compliance report: {}\n\n\
         | | |\n|---|---|\n\
         | Repository | {} |\n| Period | {} |\n| Generated | {} |\n| lifeline | {} |\n\n",
        h.month.name(),
        cell(&h.repository),
        text::period(h.month),
        time(&h.generated_at),
        cell(&h.lifeline_version),
    );
    summary(&mut md, report);
    backups(&mut md, &report.backups);
    recovery_tests(&mut md, &report.recovery_tests);
    integrity(&mut md, &report.integrity);
    encryption(&mut md, &report.encryption);
    retention(&mut md, &report.retention);
    copies(&mut md, &report.copies);
    wal(&mut md, &report.wal);
    md.push_str("## Failures\n\n");
    if report.failures.is_empty() {
        md.push_str("No operation failed this month.\n\n");
    } else {
        failure_table(&mut md, &report.failures);
    }
    let _ = writeln!(md, "---\n\n{}", text::PROVENANCE);
    md
}

/// Text made safe for a table cell or a list item.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.lines().enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        for c in line.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '\\' | '|' | '*' | '`' | '[' | ']' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out
}

/// A time as `2025-03-14 02:00 UTC`; one that does not parse is escaped as it came.
fn time(rfc3339: &str) -> String {
    cell(&text::when(rfc3339))
}

fn time_or_never(rfc3339: Option<&str>) -> String {
    cell(&text::when_or_never(rfc3339))
}

fn heading(md: &mut String, section: Section) {
    let s = text::section(section);
    let _ = writeln!(md, "## {}\n", s.title);
    if let Some(rule) = s.rule {
        let _ = writeln!(md, "*HIPAA {rule}*\n");
    }
}

/// A table of already escaped cells; `empty` stands in for it without rows.
fn table(md: &mut String, headings: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        if !empty.is_empty() {
            let _ = writeln!(md, "{empty}\n");
        }
        return;
    }
    let _ = writeln!(md, "| {} |", headings.join(" | "));
    let _ = writeln!(
        md,
        "|{}",
        headings.iter().map(|_| "---|").collect::<String>()
    );
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md.push('\n');
}

fn summary(md: &mut String, report: &MonthlyReport) {
    let s = &report.summary;
    let _ = writeln!(md, "## Summary\n\n**{}**\n", text::verdict(s.verdict));
    let rows: Vec<Vec<String>> = text::scorecard(report)
        .into_iter()
        .map(|score| {
            vec![
                text::section(score.section).title.to_string(),
                cell(&score.result),
                if score.met {
                    "met"
                } else {
                    "**action needed**"
                }
                .to_string(),
            ]
        })
        .collect();
    table(md, &["Control", "This month", "Status"], &rows, "");
    if !s.findings.is_empty() {
        md.push_str("### Findings\n\n");
        for (i, f) in s.findings.iter().enumerate() {
            let _ = writeln!(
                md,
                "{}. {}: {}",
                i + 1,
                text::section(f.section).title,
                cell(&f.text)
            );
        }
        md.push('\n');
    }
    if !s.notes.is_empty() {
        md.push_str("### Notes\n\n");
        for n in &s.notes {
            let _ = writeln!(md, "- {}", cell(n));
        }
        md.push('\n');
    }
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "—".to_string(), cell)
}

fn backups(md: &mut String, b: &Backups) {
    heading(md, Section::Backups);
    let _ = writeln!(
        md,
        "Success rate **{}** of {}; target {}.\n",
        percent_or_dash(b.success_rate_percent),
        text::count(b.attempts as u64, "backup"),
        text::percent(b.target_percent)
    );
    let mut rows: Vec<Vec<String>> = b
        .sources
        .iter()
        .map(|s| {
            vec![
                cell(&s.source),
                opt(s.kind.as_deref()),
                opt(s.tier.as_deref()),
                s.attempts.to_string(),
                s.ok.to_string(),
                s.partial.to_string(),
                s.failed.to_string(),
                percent_or_dash(s.success_rate_percent),
                time_or_never(s.last_success.as_deref()),
                text::bytes(s.bytes_added),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let added: u64 = b.sources.iter().map(|s| s.bytes_added).sum();
        rows.push(vec![
            "**All sources**".into(),
            String::new(),
            String::new(),
            b.attempts.to_string(),
            b.ok.to_string(),
            b.partial.to_string(),
            b.failed.to_string(),
            format!("**{}**", percent_or_dash(b.success_rate_percent)),
            String::new(),
            text::bytes(added),
        ]);
    }
    table(
        md,
        &[
            "Source",
            "Kind",
            "Tier",
            "Attempts",
            "OK",
            "Partial",
            "Failed",
            "Success rate",
            "Last success",
            "Added",
        ],
        &rows,
        "No backup was recorded this month.",
    );
}

fn against(value: f64, target: Option<f64>, met: Option<bool>) -> String {
    format!(
        "{} / {} ({})",
        text::duration(value),
        text::duration_or_dash(target),
        text::met(met)
    )
}

fn recovery_tests(md: &mut String, r: &RecoveryTests) {
    heading(md, Section::RecoveryTests);
    let _ = writeln!(md, "{}\n", text::drills_sentence(r));
    let rows: Vec<Vec<String>> = r
        .drills
        .iter()
        .map(|d| {
            vec![
                time(&d.started),
                cell(&d.source),
                opt(d.tier.as_deref()),
                cell(text::short_id(&d.snapshot)),
                against(d.rto_seconds, d.rto_target_seconds, d.rto_met),
                against(d.rpo_seconds, d.rpo_target_seconds, d.rpo_met),
                format!(
                    "{} ({} failed, {} warnings)",
                    d.checks, d.checks_failed, d.checks_warned
                ),
                match (d.passed, &d.error) {
                    (true, _) => "passed".into(),
                    (false, Some(e)) => format!("**failed**: {}", cell(e)),
                    (false, None) => "**failed**".into(),
                },
            ]
        })
        .collect();
    table(
        md,
        &[
            "Started",
            "Source",
            "Tier",
            "Snapshot",
            "RTO / target",
            "RPO / target",
            "Checks",
            "Result",
        ],
        &rows,
        "No recovery test ran this month.",
    );
    if !r.untested.is_empty() {
        md.push_str("Sources of the plan with **no recovery test** this month:\n\n");
        let rows: Vec<Vec<String>> = r
            .untested
            .iter()
            .map(|u| {
                vec![
                    cell(&u.source),
                    cell(&u.kind),
                    opt(u.tier.as_deref()),
                    text::duration_or_dash(u.rto_target_seconds),
                    time_or_never(u.last_drill.as_deref()),
                ]
            })
            .collect();
        table(
            md,
            &["Source", "Kind", "Tier", "RTO target", "Last drill"],
            &rows,
            "",
        );
    }
}

fn integrity(md: &mut String, i: &Integrity) {
    heading(md, Section::Integrity);
    let _ = writeln!(md, "{}\n", text::integrity_sentence(i));
    let rows: Vec<Vec<String>> = i
        .checks
        .iter()
        .map(|c| {
            vec![
                time(&c.time),
                cell(&c.target),
                text::result(c.result).to_string(),
                c.problems.map_or_else(|| "—".into(), |n| n.to_string()),
                opt(c.cause.as_deref()),
            ]
        })
        .collect();
    table(
        md,
        &["Time", "Repository", "Result", "Problems", "Cause"],
        &rows,
        "No repository check ran this month.",
    );
    let t = &i.trail;
    md.push_str("### Audit trail (§164.312(b))\n\n");
    let heads = t
        .heads
        .iter()
        .map(|h| text::short_id(h))
        .collect::<Vec<_>>()
        .join(", ");
    let problems = if t.problems.is_empty() {
        "none".to_string()
    } else {
        t.problems
            .iter()
            .map(|p| cell(p))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let rows = vec![
        vec![
            "Hash chain and authentication".into(),
            if t.verified {
                "verified".into()
            } else {
                "**not verified**".into()
            },
        ],
        vec![
            "Authenticated with the repository key".into(),
            text::yes_no(t.authenticated).into(),
        ],
        vec!["Records in the trail".into(), t.records.to_string()],
        vec![
            "Records of the month (imported from another repository)".into(),
            format!("{} ({})", t.records_in_month, t.imported_in_month),
        ],
        vec!["Newest records (heads)".into(), cell(&heads)],
        vec!["Problems".into(), problems],
    ];
    table(md, &["Audit trail", ""], &rows, "");
}

fn encryption(md: &mut String, e: &Encryption) {
    heading(md, Section::Encryption);
    let _ = writeln!(
        md,
        "Data and metadata are sealed with **{}**. Keys are rotated every {} days; ages are \
         measured on {}.\n",
        cell(&e.algorithm),
        e.rotation_days,
        text::day(&e.as_of)
    );
    let rows: Vec<Vec<String>> = e
        .epochs
        .iter()
        .map(|x| {
            vec![
                x.epoch.to_string(),
                time(&x.created),
                match x.age_days {
                    Some(d) if x.overdue => format!("**{d} days (overdue)**"),
                    Some(d) => format!("{d} days"),
                    None => "—".into(),
                },
                text::epoch_state_of(x),
            ]
        })
        .collect();
    table(
        md,
        &["Key epoch", "Created", "Age", "State"],
        &rows,
        "The key epochs could not be read.",
    );
    if !e.key_changes.is_empty() {
        md.push_str("Key operations this month:\n\n");
        activities(md, &e.key_changes);
    }
}

fn activities(md: &mut String, list: &[Activity]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                time(&a.time),
                cell(&a.action),
                cell(&a.target),
                text::result(a.result).to_string(),
                cell(&a.by),
            ]
        })
        .collect();
    table(
        md,
        &["Time", "Operation", "Target", "Result", "By"],
        &rows,
        "",
    );
}

fn retention(md: &mut String, r: &Retention) {
    heading(md, Section::Retention);
    let rows: Vec<Vec<String>> = r
        .sources
        .iter()
        .map(|s| {
            vec![
                cell(&s.source),
                s.runs.to_string(),
                s.failed.to_string(),
                s.snapshots_removed.to_string(),
            ]
        })
        .collect();
    table(
        md,
        &["Source", "Retention runs", "Failed", "Snapshots removed"],
        &rows,
        "No retention run (forget) was recorded this month.",
    );
    let _ = writeln!(md, "{}\n", text::prune_sentence(r));
    md.push_str("### Legal holds in force\n\n");
    let rows: Vec<Vec<String>> = r
        .holds
        .iter()
        .map(|h| {
            vec![
                cell(text::short_id(&h.snapshot)),
                cell(&h.reason),
                time(&h.since),
                cell(&h.by),
                h.until
                    .as_deref()
                    .map_or_else(|| "until lifted".into(), time),
            ]
        })
        .collect();
    table(
        md,
        &["Snapshot", "Reason", "Since", "By", "Until"],
        &rows,
        "No snapshot is under legal hold.",
    );
    if !r.hold_changes.is_empty() {
        md.push_str("Holds placed or lifted this month:\n\n");
        activities(md, &r.hold_changes);
    }
}

fn copies(md: &mut String, c: &Copies) {
    heading(md, Section::Copies);
    let rows: Vec<Vec<String>> = c
        .destinations
        .iter()
        .map(|d| {
            vec![
                cell(&d.destination),
                d.runs.to_string(),
                d.ok.to_string(),
                d.partial.to_string(),
                d.failed.to_string(),
                time_or_never(d.last_success.as_deref()),
            ]
        })
        .collect();
    table(
        md,
        &[
            "Destination",
            "Runs",
            "OK",
            "Partial",
            "Failed",
            "Last success",
        ],
        &rows,
        "No copy to a second region was recorded.",
    );
}

fn wal(md: &mut String, w: &WalContinuity) {
    heading(md, Section::Wal);
    let line = format!(
        "WAL continuity: **{}**. {}",
        text::wal_status(w.status),
        text::wal_pushes_sentence(w).unwrap_or_default()
    );
    let _ = writeln!(md, "{}\n", line.trim_end());
    let rows: Vec<Vec<String>> = w
        .checks
        .iter()
        .map(|c| {
            vec![
                time(&c.time),
                cell(&c.source),
                cell(text::short_id(&c.snapshot)),
                cell(&c.name),
                text::check_result(c.result).to_string(),
                opt(c.detail.as_deref()),
            ]
        })
        .collect();
    table(
        md,
        &["Drill", "Source", "Snapshot", "Check", "Result", "Detail"],
        &rows,
        "No recovery test checked WAL this month.",
    );
    if !w.failures.is_empty() {
        md.push_str("WAL archiving failures:\n\n");
        failure_table(md, &w.failures);
    }
}

fn failure_table(md: &mut String, list: &[Failure]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|f| {
            let by = match &f.origin {
                Some(origin) => format!("{} (imported from {})", cell(&f.by), cell(origin)),
                None => cell(&f.by),
            };
            vec![
                time(&f.time),
                cell(&f.action),
                cell(&f.target),
                match f.result {
                    EventResult::Ok => "ok".into(),
                    other => format!("**{}**", text::result(other)),
                },
                cell(&f.cause),
                by,
            ]
        })
        .collect();
    table(
        md,
        &["Time", "Operation", "Target", "Result", "Cause", "By"],
        &rows,
        "",
    );
}
