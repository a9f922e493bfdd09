//! The report as one self-contained HTML page an auditor can read on screen and print: no
//! scripts, no external assets, A4 print rules (table headers repeat on every page, rows and
//! headings do not split). Every string from the trail (source names, causes quoting databases
//! and file systems) is escaped where it is written. Sections carry `id`s, rows `data-source` and
//! cells `data-field`, so tests and scripts find them without depending on the layout.

use std::fmt::Write;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};

use super::model::*;
use super::text::{self, percent_or_dash, when, when_or_never};

const STYLE: &str = "\
:root{--fg:#1b1f24;--muted:#5f6b76;--line:#d0d7de;--head:#eef1f4;--ok:#1a7f37;--warn:#9a6700;\
--bad:#cf222e}\
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}\
body{font:10.5pt/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);\
background:#fff;max-width:190mm;margin:0 auto;padding:10mm 4mm}\
header{border-bottom:2px solid var(--fg);padding-bottom:3mm;margin-bottom:5mm}\
.kicker{text-transform:uppercase;letter-spacing:.08em;font-size:8.5pt;color:var(--muted);margin:0}\
h1{font-size:20pt;margin:1mm 0 2mm}\
h2{font-size:13pt;margin:7mm 0 1mm;break-after:avoid;page-break-after:avoid}\
h3{font-size:10.5pt;margin:4mm 0 1mm;break-after:avoid;page-break-after:avoid}\
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.5mm 4mm;margin:0;font-size:9.5pt}\
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;word-break:break-all}\
.rule{color:var(--muted);font-size:8.5pt;margin:0 0 2mm}\
.verdict{font-size:14pt;font-weight:700;margin:2mm 0 3mm;padding:2mm 3mm;border-left:5px solid}\
.verdict.met{border-color:var(--ok);color:var(--ok)}.verdict.not-met{border-color:var(--bad);color:var(--bad)}\
table{border-collapse:collapse;width:100%;font-size:9pt;margin:1mm 0 3mm}\
thead{display:table-header-group}\
tr,li,.verdict{break-inside:avoid;page-break-inside:avoid}\
th,td{text-align:left;padding:1mm 1.8mm;border-bottom:1px solid var(--line);vertical-align:top}\
th{background:var(--head);font-weight:600}\
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}\
td.when,td[data-field=status]{white-space:nowrap}\
tr.total td{font-weight:600;border-top:1.5px solid var(--fg)}\
.ok,.warn,.bad{font-weight:600}.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}\
.muted{color:var(--muted)}\
pre.cause{font:8.5pt/1.35 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;\
word-break:break-word;margin:0}\
ol.findings li,ul.notes li{margin:.8mm 0}\
ol.findings a,table a{color:inherit}\
footer{margin-top:8mm;padding-top:2mm;border-top:1px solid var(--line);color:var(--muted);font-size:8.5pt}\
@media print{body{max-width:none;padding:0}a{text-decoration:none}}\
";

/// The whole page.
pub fn render_html(report: &MonthlyReport) -> String {
    let mut html = String::with_capacity(32 * 1024);
    let h = &report.header;
    let month_name = h.month.name();
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <title>Backup compliance report · {month_name} · {repository}</title>\n\
         <style>{STYLE}{page}</style>\n</head>\n<body>\n<header>\n\
         <p class=\"kicker\">lifeline · monthly backup compliance report</p>\n\
         <h1 data-field=\"month\">{month_name}</h1>\n<dl class=\"meta\">\n\
         <dt>Repository</dt><dd data-field=\"repository\">{repository}</dd>\n\
         <dt>Period</dt><dd data-field=\"period\">{period}</dd>\n\
         <dt>Generated</dt><dd data-field=\"generated\">{generated}</dd>\n\
         <dt>lifeline</dt><dd data-field=\"version\">{version}</dd>\n</dl>\n</header>\n<main>\n",
        repository = esc(&h.repository),
        page = page_rules(&month_name),
        period = esc(&text::period(h.month)),
        generated = esc(&when(&h.generated_at)),
        version = esc(&h.lifeline_version),
    );
    summary(&mut html, report);
    backups(&mut html, &report.backups);
    recovery_tests(&mut html, &report.recovery_tests);
    integrity(&mut html, &report.integrity);
    encryption(&mut html, &report.encryption);
    retention(&mut html, &report.retention);
    copies(&mut html, &report.copies);
    wal(&mut html, &report.wal);
    failures(&mut html, &report.failures);
    let _ = write!(
        html,
        "</main>\n<footer>\n<p>{}</p>\n</footer>\n</body>\n</html>\n",
        esc(text::PROVENANCE)
    );
    html
}

/// A4 pages with the report's name and page numbers in the margins. The month's name comes from
/// chrono (letters, digits and a space), so it is safe inside a CSS string.
fn page_rules(month_name: &str) -> String {
    let margin = "font:8pt system-ui,sans-serif;color:#5f6b76";
    format!(
        "@page{{size:A4;margin:16mm 14mm 18mm;\
         @bottom-left{{content:\"Backup compliance report · {month_name}\";{margin}}}\
         @bottom-right{{content:\"Page \" counter(page) \" of \" counter(pages);{margin}}}}}"
    )
}

/// A column: its heading, the `data-field` of its cells, and whether it holds numbers.
struct Col(&'static str, &'static str, bool);

/// The content of a cell: text to escape, or markup already built from escaped parts.
enum Cell {
    Text(String),
    Html(String),
}

fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

/// Text in a `class` span (`ok`, `warn`, `bad`, `muted`).
fn mark(class: &str, s: &str) -> Cell {
    Cell::Html(format!("<span class=\"{class}\">{}</span>", esc(s)))
}

fn cause(s: &str) -> Cell {
    Cell::Html(format!("<pre class=\"cause\">{}</pre>", esc(s)))
}

fn open_section(html: &mut String, section: Section) {
    let s = text::section(section);
    let _ = write!(
        html,
        "<section id=\"{}\">\n<h2>{}</h2>\n",
        s.anchor,
        esc(s.title)
    );
    if let Some(rule) = s.rule {
        let _ = writeln!(html, "<p class=\"rule\">HIPAA {}</p>", esc(rule));
    }
}

fn para(html: &mut String, class: &str, s: &str) {
    if class.is_empty() {
        let _ = writeln!(html, "<p>{}</p>", esc(s));
    } else {
        let _ = writeln!(html, "<p class=\"{class}\">{}</p>", esc(s));
    }
}

/// A table, or `empty` in its place when there are no rows. Each row has its `data-source`
/// (when given) and `class`.
fn table(html: &mut String, cols: &[Col], rows: Vec<(Option<&str>, &str, Vec<Cell>)>, empty: &str) {
    if rows.is_empty() {
        para(html, "muted", empty);
        return;
    }
    html.push_str("<table>\n<thead><tr>");
    for col in cols {
        let _ = write!(
            html,
            "<th{}>{}</th>",
            if col.2 { " class=\"num\"" } else { "" },
            esc(col.0)
        );
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for (source, class, cells) in rows {
        html.push_str("<tr");
        if let Some(source) = source {
            let _ = write!(html, " data-source=\"{}\"", attr(source));
        }
        if !class.is_empty() {
            let _ = write!(html, " class=\"{class}\"");
        }
        html.push('>');
        for (col, cell) in cols.iter().zip(cells) {
            let class = if col.2 {
                " class=\"num\""
            } else if col.1 == "time" || col.1.starts_with("last") {
                " class=\"when\""
            } else {
                ""
            };
            let content = match cell {
                Cell::Text(s) => esc(&s).into_owned(),
                Cell::Html(s) => s,
            };
            let _ = write!(html, "<td data-field=\"{}\"{class}>{content}</td>", col.1);
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
}

fn summary(html: &mut String, report: &MonthlyReport) {
    let s = &report.summary;
    let class = match s.verdict {
        Verdict::Met => "met",
        Verdict::NotMet => "not-met",
    };
    let _ = write!(
        html,
        "<section id=\"summary\">\n<h2>Summary</h2>\n\
         <p class=\"verdict {class}\" data-field=\"verdict\">{}</p>\n",
        esc(text::verdict(s.verdict))
    );
    let rows = text::scorecard(report)
        .into_iter()
        .map(|score| {
            let section = text::section(score.section);
            let control = Cell::Html(format!(
                "<a href=\"#{}\">{}</a>",
                section.anchor,
                esc(section.title)
            ));
            let status = if score.met {
                mark("ok", "met")
            } else {
                mark("bad", "action needed")
            };
            (None, section.anchor, vec![control, t(score.result), status])
        })
        .collect();
    table(
        html,
        &[
            Col("Control", "control", false),
            Col("This month", "result", false),
            Col("Status", "status", false),
        ],
        rows,
        "",
    );
    if !s.findings.is_empty() {
        html.push_str("<h3>Findings</h3>\n<ol class=\"findings\">\n");
        for f in &s.findings {
            let section = text::section(f.section);
            let _ = writeln!(
                html,
                "<li data-section=\"{}\"><a href=\"#{}\">{}</a>: {}</li>",
                section.anchor,
                section.anchor,
                esc(section.title),
                esc(&f.text)
            );
        }
        html.push_str("</ol>\n");
    }
    if !s.notes.is_empty() {
        html.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for n in &s.notes {
            let _ = writeln!(html, "<li>{}</li>", esc(n));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</section>\n");
}

fn rate_cell(rate: Option<f64>, target: f64) -> Cell {
    match rate {
        Some(r) if r >= target => mark("ok", &text::percent(r)),
        Some(r) => mark("bad", &text::percent(r)),
        None => mark("muted", "—"),
    }
}

fn count_cell(n: usize, class_when_nonzero: &str) -> Cell {
    if n == 0 {
        t("0")
    } else {
        mark(class_when_nonzero, &n.to_string())
    }
}

fn backups(html: &mut String, b: &Backups) {
    open_section(html, Section::Backups);
    let _ = writeln!(
        html,
        "<p>Success rate <strong data-field=\"success-rate\">{}</strong> of {}; target {}.</p>",
        esc(&percent_or_dash(b.success_rate_percent)),
        text::count(b.attempts as u64, "backup"),
        esc(&text::percent(b.target_percent))
    );
    let mut rows: Vec<(Option<&str>, &str, Vec<Cell>)> = b
        .sources
        .iter()
        .map(|s| {
            (
                Some(s.source.as_str()),
                "",
                vec![
                    t(&s.source),
                    t(s.kind.as_deref().unwrap_or("—")),
                    t(s.tier.as_deref().unwrap_or("—")),
                    t(s.attempts.to_string()),
                    t(s.ok.to_string()),
                    count_cell(s.partial, "warn"),
                    count_cell(s.failed, "bad"),
                    rate_cell(s.success_rate_percent, b.target_percent),
                    t(when_or_never(s.last_success.as_deref())),
                    t(text::bytes(s.bytes_added)),
                ],
            )
        })
        .collect();
    if !rows.is_empty() {
        let added: u64 = b.sources.iter().map(|s| s.bytes_added).sum();
        rows.push((
            None,
            "total",
            vec![
                t("All sources"),
                t(""),
                t(""),
                t(b.attempts.to_string()),
                t(b.ok.to_string()),
                count_cell(b.partial, "warn"),
                count_cell(b.failed, "bad"),
                rate_cell(b.success_rate_percent, b.target_percent),
                t(""),
                t(text::bytes(added)),
            ],
        ));
    }
    table(
        html,
        &[
            Col("Source", "source", false),
            Col("Kind", "kind", false),
            Col("Tier", "tier", false),
            Col("Attempts", "attempts", true),
            Col("OK", "ok", true),
            Col("Partial", "partial", true),
            Col("Failed", "failed", true),
            Col("Success rate", "success-rate", true),
            Col("Last success", "last-success", false),
            Col("Added", "bytes-added", true),
        ],
        rows,
        "No backup was recorded this month.",
    );
    html.push_str("</section>\n");
}

fn against(value: f64, target: Option<f64>, met: Option<bool>) -> Cell {
    let s = format!(
        "{} / {}",
        text::duration(value),
        text::duration_or_dash(target)
    );
    match met {
        Some(true) => mark("ok", &s),
        Some(false) => mark("bad", &s),
        None => t(s),
    }
}

fn recovery_tests(html: &mut String, r: &RecoveryTests) {
    open_section(html, Section::RecoveryTests);
    para(html, "", &text::drills_sentence(r));
    let rows = r
        .drills
        .iter()
        .map(|d| {
            let mut result = if d.passed {
                mark("ok", "passed")
            } else {
                mark("bad", "failed")
            };
            if let (false, Some(error)) = (d.passed, &d.error) {
                result = Cell::Html(format!(
                    "<span class=\"bad\">failed</span><pre class=\"cause\">{}</pre>",
                    esc(error)
                ));
            }
            (
                Some(d.source.as_str()),
                "",
                vec![
                    t(when(&d.started)),
                    t(&d.source),
                    t(d.tier.as_deref().unwrap_or("—")),
                    t(text::short_id(&d.snapshot)),
                    against(d.rto_seconds, d.rto_target_seconds, d.rto_met),
                    against(d.rpo_seconds, d.rpo_target_seconds, d.rpo_met),
                    t(format!(
                        "{} ({} failed, {} warnings)",
                        d.checks, d.checks_failed, d.checks_warned
                    )),
                    result,
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Started", "time", false),
            Col("Source", "source", false),
            Col("Tier", "tier", false),
            Col("Snapshot", "snapshot", false),
            Col("RTO / target", "rto", false),
            Col("RPO / target", "rpo", false),
            Col("Checks", "checks", false),
            Col("Result", "result", false),
        ],
        rows,
        "No recovery test ran this month.",
    );
    if !r.untested.is_empty() {
        html.push_str("<h3>Sources of the plan with no recovery test this month</h3>\n");
        let rows = r
            .untested
            .iter()
            .map(|u| {
                (
                    Some(u.source.as_str()),
                    "untested",
                    vec![
                        mark("bad", &u.source),
                        t(&u.kind),
                        t(u.tier.as_deref().unwrap_or("—")),
                        t(text::duration_or_dash(u.rto_target_seconds)),
                        t(when_or_never(u.last_drill.as_deref())),
                    ],
                )
            })
            .collect();
        table(
            html,
            &[
                Col("Source", "source", false),
                Col("Kind", "kind", false),
                Col("Tier", "tier", false),
                Col("RTO target", "rto-target", false),
                Col("Last drill", "last-drill", false),
            ],
            rows,
            "",
        );
    }
    html.push_str("</section>\n");
}

fn integrity(html: &mut String, i: &Integrity) {
    open_section(html, Section::Integrity);
    para(html, "", &text::integrity_sentence(i));
    let rows = i
        .checks
        .iter()
        .map(|c| {
            let problems = match c.problems {
                Some(0) => t("0"),
                Some(n) => mark("bad", &n.to_string()),
                None => t("—"),
            };
            let result = match c.result {
                lifeline_repo::audit::EventResult::Ok => mark("ok", "ok"),
                other => mark("bad", text::result(other)),
            };
            (
                None,
                "",
                vec![
                    t(when(&c.time)),
                    t(&c.target),
                    result,
                    problems,
                    c.cause.as_deref().map_or_else(|| t(""), cause),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Time", "time", false),
            Col("Repository", "target", false),
            Col("Result", "result", false),
            Col("Problems", "problems", true),
            Col("Cause", "cause", false),
        ],
        rows,
        "No repository check ran this month.",
    );

    let tr = &i.trail;
    html.push_str("<h3>Audit trail (§164.312(b))</h3>\n");
    let verified = if tr.verified {
        mark("ok", "verified")
    } else {
        mark("bad", "not verified")
    };
    let problems = if tr.problems.is_empty() {
        t("none")
    } else {
        Cell::Html(
            tr.problems
                .iter()
                .map(|p| format!("<pre class=\"cause\">{}</pre>", esc(p)))
                .collect(),
        )
    };
    let heads = tr
        .heads
        .iter()
        .map(|h| text::short_id(h))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = vec![
        (None, "", vec![t("Hash chain and authentication"), verified]),
        (
            None,
            "",
            vec![
                t("Authenticated with the repository key"),
                t(text::yes_no(tr.authenticated)),
            ],
        ),
        (
            None,
            "",
            vec![t("Records in the trail"), t(tr.records.to_string())],
        ),
        (
            None,
            "",
            vec![
                t("Records of the month (imported from another repository)"),
                t(format!(
                    "{} ({})",
                    tr.records_in_month, tr.imported_in_month
                )),
            ],
        ),
        (None, "", vec![t("Newest records (heads)"), t(heads)]),
        (None, "", vec![t("Problems"), problems]),
    ];
    table(
        html,
        &[Col("Audit trail", "name", false), Col("", "value", false)],
        rows,
        "",
    );
    html.push_str("</section>\n");
}

fn encryption(html: &mut String, e: &Encryption) {
    open_section(html, Section::Encryption);
    let _ = writeln!(
        html,
        "<p>Data and metadata are sealed with <strong data-field=\"algorithm\">{}</strong>. Keys \
         are rotated every {} days; ages are measured on {}.</p>",
        esc(&e.algorithm),
        e.rotation_days,
        esc(&text::day(&e.as_of))
    );
    let rows = e
        .epochs
        .iter()
        .map(|x| {
            let age = match x.age_days {
                Some(days) if x.overdue => mark("bad", &format!("{days} days (overdue)")),
                Some(days) => t(format!("{days} days")),
                None => t("—"),
            };
            let state = match x.state {
                EpochState::Unknown => mark("bad", text::epoch_state(x.state)),
                _ => t(text::epoch_state_of(x)),
            };
            (
                None,
                if x.overdue { "overdue" } else { "" },
                vec![t(x.epoch.to_string()), t(when(&x.created)), age, state],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Key epoch", "epoch", true),
            Col("Created", "created", false),
            Col("Age", "age", false),
            Col("State", "state", false),
        ],
        rows,
        "The key epochs could not be read.",
    );
    if !e.key_changes.is_empty() {
        html.push_str("<h3>Key operations this month</h3>\n");
        activities(html, &e.key_changes);
    }
    html.push_str("</section>\n");
}

fn activities(html: &mut String, list: &[Activity]) {
    let rows = list
        .iter()
        .map(|a| {
            let result = match a.result {
                lifeline_repo::audit::EventResult::Ok => t("ok"),
                other => mark("bad", text::result(other)),
            };
            (
                None,
                "",
                vec![
                    t(when(&a.time)),
                    t(&a.action),
                    t(&a.target),
                    result,
                    t(&a.by),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Time", "time", false),
            Col("Operation", "action", false),
            Col("Target", "target", false),
            Col("Result", "result", false),
            Col("By", "by", false),
        ],
        rows,
        "",
    );
}

fn retention(html: &mut String, r: &Retention) {
    open_section(html, Section::Retention);
    let rows = r
        .sources
        .iter()
        .map(|s| {
            (
                Some(s.source.as_str()),
                "",
                vec![
                    t(&s.source),
                    t(s.runs.to_string()),
                    count_cell(s.failed, "bad"),
                    t(s.snapshots_removed.to_string()),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Source", "source", false),
            Col("Retention runs", "runs", true),
            Col("Failed", "failed", true),
            Col("Snapshots removed", "removed", true),
        ],
        rows,
        "No retention run (forget) was recorded this month.",
    );
    para(html, "", &text::prune_sentence(r));
    html.push_str("<h3>Legal holds in force</h3>\n");
    let rows = r
        .holds
        .iter()
        .map(|h| {
            (
                None,
                "",
                vec![
                    t(text::short_id(&h.snapshot)),
                    t(&h.reason),
                    t(when(&h.since)),
                    t(&h.by),
                    t(h.until
                        .as_deref()
                        .map_or_else(|| "until lifted".into(), when)),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Snapshot", "snapshot", false),
            Col("Reason", "reason", false),
            Col("Since", "since", false),
            Col("By", "by", false),
            Col("Until", "until", false),
        ],
        rows,
        "No snapshot is under legal hold.",
    );
    if !r.hold_changes.is_empty() {
        html.push_str("<h3>Holds placed or lifted this month</h3>\n");
        activities(html, &r.hold_changes);
    }
    html.push_str("</section>\n");
}

fn copies(html: &mut String, c: &Copies) {
    open_section(html, Section::Copies);
    let rows = c
        .destinations
        .iter()
        .map(|d| {
            (
                Some(d.destination.as_str()),
                "",
                vec![
                    t(&d.destination),
                    if d.runs == 0 {
                        mark("bad", "0")
                    } else {
                        t(d.runs.to_string())
                    },
                    t(d.ok.to_string()),
                    count_cell(d.partial, "warn"),
                    count_cell(d.failed, "bad"),
                    t(when_or_never(d.last_success.as_deref())),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Destination", "destination", false),
            Col("Runs", "runs", true),
            Col("OK", "ok", true),
            Col("Partial", "partial", true),
            Col("Failed", "failed", true),
            Col("Last success", "last-success", false),
        ],
        rows,
        "No copy to a second region was recorded.",
    );
    html.push_str("</section>\n");
}

fn wal(html: &mut String, w: &WalContinuity) {
    open_section(html, Section::Wal);
    let class = match w.status {
        WalStatus::Continuous => "ok",
        WalStatus::Broken => "bad",
        WalStatus::NotTested => "warn",
    };
    let _ = writeln!(
        html,
        "<p>WAL continuity: <span class=\"{class}\" data-field=\"wal-status\">{}</span>. \
         {}</p>",
        esc(text::wal_status(w.status)),
        esc(&text::wal_pushes_sentence(w).unwrap_or_default())
    );
    let rows = w
        .checks
        .iter()
        .map(|c| {
            let result = match c.result {
                lifeline_repo::drill::CheckResult::Pass => mark("ok", "pass"),
                lifeline_repo::drill::CheckResult::Warn => mark("warn", "warning"),
                lifeline_repo::drill::CheckResult::Fail => mark("bad", "fail"),
            };
            (
                Some(c.source.as_str()),
                "",
                vec![
                    t(when(&c.time)),
                    t(&c.source),
                    t(text::short_id(&c.snapshot)),
                    t(&c.name),
                    result,
                    c.detail.as_deref().map_or_else(|| t(""), cause),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Drill", "time", false),
            Col("Source", "source", false),
            Col("Snapshot", "snapshot", false),
            Col("Check", "check", false),
            Col("Result", "result", false),
            Col("Detail", "detail", false),
        ],
        rows,
        "No recovery test checked WAL this month.",
    );
    if !w.failures.is_empty() {
        html.push_str("<h3>WAL archiving failures</h3>\n");
        failure_table(html, &w.failures);
    }
    html.push_str("</section>\n");
}

fn failures(html: &mut String, list: &[Failure]) {
    html.push_str("<section id=\"failures\">\n<h2>Failures</h2>\n");
    if list.is_empty() {
        html.push_str(
            "<p class=\"muted\" data-field=\"no-failures\">No operation failed this month.</p>\n",
        );
    } else {
        failure_table(html, list);
    }
    html.push_str("</section>\n");
}

fn failure_table(html: &mut String, list: &[Failure]) {
    let rows = list
        .iter()
        .map(|f| {
            let by = match &f.origin {
                Some(origin) => format!("{} (imported from {origin})", f.by),
                None => f.by.clone(),
            };
            let result = match f.result {
                lifeline_repo::audit::EventResult::Partial => mark("warn", "partial"),
                other => mark("bad", text::result(other)),
            };
            (
                Some(f.target.as_str()),
                "",
                vec![
                    t(when(&f.time)),
                    t(&f.action),
                    t(&f.target),
                    result,
                    cause(&f.cause),
                    t(by),
                ],
            )
        })
        .collect();
    table(
        html,
        &[
            Col("Time", "time", false),
            Col("Operation", "action", false),
            Col("Target", "target", false),
            Col("Result", "result", false),
            Col("Cause", "cause", false),
            Col("By", "by", false),
        ],
        rows,
        "",
    );
}
