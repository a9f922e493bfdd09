//! The daemon's status page: one server-rendered HTML document, no JavaScript, refreshing itself
//! every 30 seconds. Every piece of text from the status (source names, and above all job
//! messages, which quote databases and file systems) is HTML-escaped where it is written.
//! Cells carry `data-field` attributes and rows `data-source`, so tests and scripts can find
//! them without depending on the layout.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::report::{JobReport, Outcome, SourceStatus, StatusReport};

/// How often the page reloads itself.
const REFRESH_SECONDS: u32 = 30;

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d232a;--muted:#66707a;--line:#d9dee3;--head:#f3f5f7;\
--ok:#17803d;--warn:#a86400;--bad:#c22a2a}\
@media (prefers-color-scheme:dark){:root{--fg:#e3e7eb;--muted:#9aa4ad;--line:#343b42;--head:#22282e;\
--ok:#4cc37a;--warn:#e0a040;--bad:#ff6b6b}}\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);margin:1.5rem auto;\
max-width:80rem;padding:0 1rem}\
h1{font-size:1.3rem;margin:0}h2{font-size:1.05rem;margin:2rem 0 .5rem}\
header p{color:var(--muted);margin:.2rem 0 1rem}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}\
th{background:var(--head);font-weight:600;white-space:nowrap}\
td.when,td[data-field=rpo],td[data-field=next-run]{white-space:nowrap}\
.muted{color:var(--muted)}\
.ok,.rpo-ok{color:var(--ok)}.partial{color:var(--warn)}.failed,.rpo-late{color:var(--bad)}\
.ok,.partial,.failed,.rpo-ok,.rpo-late{font-weight:600}.rpo-unknown,.never{color:var(--muted)}\
.message{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;\
word-break:break-word;margin:0}\
td .message{color:var(--muted);font-weight:400;margin-top:.2rem}\
";

/// The whole page for `status`.
pub fn render(status: &StatusReport) -> String {
    let now = parse_time(&status.generated_at);
    let mut html = String::with_capacity(8 * 1024);
    let host = text(&status.host);
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
         <title>lifeline · {host}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>lifeline on {host}</h1>\n\
         <p>Plan <span data-field=\"plan\">{plan}</span> · generated {generated} · \
         refreshes every {REFRESH_SECONDS}s</p>\n</header>\n<main>\n",
        plan = text(&status.plan),
        generated = time_element(&status.generated_at, None),
    );

    html.push_str(
        "<table class=\"sources\">\n<thead><tr><th>Source</th><th>Kind</th><th>Class / tier</th>\
         <th>Last run</th><th>Result</th><th>RPO now / target</th><th>Next run</th>\
         <th>Running</th></tr></thead>\n<tbody>\n",
    );
    for source in &status.sources {
        source_row(&mut html, source, now);
    }
    if status.sources.is_empty() {
        html.push_str("<tr><td colspan=\"8\" class=\"muted\">The plan has no sources.</td></tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");

    failures(&mut html, status, now);
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

fn source_row(html: &mut String, s: &SourceStatus, now: Option<DateTime<Utc>>) {
    let (result_class, result_word) = match s.last_run.as_ref().map(|r| r.outcome) {
        Some(outcome) => (outcome_class(outcome), outcome_word(outcome)),
        None => ("never", "never run"),
    };
    let _ = write!(
        html,
        "<tr data-source=\"{name_attr}\"{running_class}>\
         <td data-field=\"name\">{name}</td>\
         <td data-field=\"kind\">{kind}</td>\
         <td data-field=\"class\">{class} / {tier}</td>\
         <td data-field=\"last-run\" class=\"when\">{last_run}</td>\
         <td data-field=\"result\" class=\"{result_class}\">{result_word}{result_message}</td>",
        name_attr = attr(&s.name),
        running_class = if s.running { " class=\"running\"" } else { "" },
        name = text(&s.name),
        kind = text(&s.kind),
        class = text(&s.class),
        tier = text(&s.tier),
        last_run = last_run(s.last_run.as_ref(), now),
        result_message = result_message(s.last_run.as_ref()),
    );

    let rpo_class = match s.rpo_met() {
        Some(true) => "rpo-ok",
        Some(false) => "rpo-late",
        None => "rpo-unknown",
    };
    let or_dash = |seconds: Option<f64>| seconds.map_or_else(|| "—".to_string(), human_duration);
    let next_run = match &s.next_run {
        Some(next) => time_element(next, now),
        None => "<span class=\"muted\">not scheduled</span>".to_string(),
    };
    let _ = writeln!(
        html,
        "<td data-field=\"rpo\" class=\"{rpo_class}\">{} / {}</td>\
         <td data-field=\"next-run\">{next_run}</td>\
         <td data-field=\"running\">{}</td></tr>",
        or_dash(s.rpo_seconds),
        or_dash(s.rpo_target_seconds),
        if s.running {
            "running"
        } else {
            "<span class=\"muted\">—</span>"
        },
    );
}

fn last_run(run: Option<&JobReport>, now: Option<DateTime<Utc>>) -> String {
    match run {
        Some(r) => format!(
            "{} · <span class=\"{}\">{}</span>",
            time_element(&r.finished, now),
            outcome_class(r.outcome),
            outcome_word(r.outcome)
        ),
        None => "<span class=\"never\">never</span>".to_string(),
    }
}

/// Why the last run failed (its first line: the full chain is under "Recent failures"), or the
/// snapshot it saved.
fn result_message(run: Option<&JobReport>) -> String {
    let Some(r) = run else {
        return String::new();
    };
    if let Some(first) = r.message.as_deref().and_then(|m| m.lines().next()) {
        format!("<p class=\"message\">{}</p>", text(first))
    } else if let Some(snapshot) = &r.snapshot {
        format!(" <span class=\"muted\">{}</span>", text(snapshot))
    } else {
        String::new()
    }
}

fn failures(html: &mut String, status: &StatusReport, now: Option<DateTime<Utc>>) {
    let mut all: Vec<_> = status
        .sources
        .iter()
        .flat_map(|s| s.recent_failures.iter().map(move |f| (s, f)))
        .collect();
    // Newest first across sources; times that do not parse sort last rather than vanish.
    all.sort_by_key(|(_, f)| std::cmp::Reverse(parse_time(&f.time)));

    html.push_str("<section class=\"failures\">\n<h2>Recent failures</h2>\n");
    if all.is_empty() {
        html.push_str("<p class=\"muted\" data-field=\"no-failures\">No failures recorded.</p>\n");
    } else {
        html.push_str(
            "<table>\n<thead><tr><th>Time</th><th>Source</th><th>Message</th></tr></thead>\n<tbody>\n",
        );
        for (source, failure) in all {
            let _ = writeln!(
                html,
                "<tr data-source=\"{}\"><td data-field=\"time\" class=\"when\">{}</td>\
                 <td data-field=\"source\">{}</td>\
                 <td data-field=\"message\"><pre class=\"message\">{}</pre></td></tr>",
                attr(&source.name),
                time_element(&failure.time, now),
                text(&source.name),
                text(&failure.message),
            );
        }
        html.push_str("</tbody>\n</table>\n");
    }
    html.push_str("</section>\n");
}

fn outcome_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "ok",
        Outcome::Partial => "partial",
        Outcome::Failure => "failed",
    }
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "ok",
        Outcome::Partial => "partial",
        Outcome::Failure => "failed",
    }
}

fn parse_time(rfc3339: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A `<time>` element showing the UTC minute and, against `now`, how long ago or how soon.
/// A time that does not parse is shown as it came, escaped.
fn time_element(rfc3339: &str, now: Option<DateTime<Utc>>) -> String {
    let Some(t) = parse_time(rfc3339) else {
        return text(rfc3339).into_owned();
    };
    let relative = match now {
        Some(now) => {
            let seconds = (t - now).num_milliseconds() as f64 / 1000.0;
            if seconds.abs() < 1.0 {
                " (now)".to_string()
            } else if seconds < 0.0 {
                format!(" ({} ago)", human_duration(-seconds))
            } else {
                format!(" (in {})", human_duration(seconds))
            }
        }
        None => String::new(),
    };
    format!(
        "<time datetime=\"{}\">{}</time>{relative}",
        attr(rfc3339),
        t.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The two largest units people read at a glance: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn human_duration(seconds: f64) -> String {
    // NaN and negative ages (clock skew) read as zero rather than as nonsense.
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3_600,
        total % 3_600 / 60,
        total % 60,
    );
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    if days > 0 {
        pair(days, "d", hours, "h")
    } else if hours > 0 {
        pair(hours, "h", minutes, "m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::report::Failure;

    fn run(source: &str, outcome: Outcome, message: Option<&str>) -> JobReport {
        JobReport {
            source: source.into(),
            kind: "postgres".into(),
            class: "production".into(),
            tier: "gold".into(),
            job: "full".into(),
            started: "2025-03-01T11:40:00Z".into(),
            finished: "2025-03-01T11:48:00Z".into(),
            duration_seconds: 480.0,
            outcome,
            message: message.map(Into::into),
            snapshot: (outcome != Outcome::Failure).then(|| "5e1f0c2a".into()),
            bytes: 1,
            bytes_added: 1,
            copies: vec![],
            forgotten: 0,
            verified: None,
        }
    }

    fn source(name: &str, last_run: Option<JobReport>) -> SourceStatus {
        SourceStatus {
            name: name.into(),
            kind: "postgres".into(),
            class: "production".into(),
            tier: "gold".into(),
            schedules: vec!["0 * * * * UTC".into()],
            running: false,
            last_run,
            last_success: None,
            rpo_seconds: Some(720.0),
            rpo_target_seconds: Some(3600.0),
            next_run: Some("2025-03-01T13:00:00Z".into()),
            recent_failures: vec![],
        }
    }

    fn status() -> StatusReport {
        let mut late = source(
            "orders",
            Some(run(
                "orders",
                Outcome::Failure,
                Some("<script>alert(1)</script>\ncaused by: x"),
            )),
        );
        late.rpo_seconds = Some(7200.0 + 300.0);
        late.running = true;
        late.recent_failures = vec![
            Failure {
                time: "2025-03-01T11:48:00Z".into(),
                message: "<script>alert(1)</script>\ncaused by: x".into(),
            },
            Failure {
                time: "2025-03-01T10:48:00Z".into(),
                message: "disk \"full\" & more".into(),
            },
        ];
        let mut unknown = source("files", Some(run("files", Outcome::Partial, None)));
        unknown.rpo_target_seconds = None;
        unknown.next_run = None;
        let mut never = source("new\"one", None);
        never.rpo_seconds = None;
        never.recent_failures = vec![Failure {
            time: "2025-03-01T11:50:00Z".into(),
            message: "cannot connect".into(),
        }];
        StatusReport {
            generated_at: "2025-03-01T12:00:00Z".into(),
            host: "db1".into(),
            plan: "/etc/lifeline/plan.toml".into(),
            sources: vec![
                source("billing", Some(run("billing", Outcome::Success, None))),
                late,
                unknown,
                never,
            ],
        }
    }

    /// The `<tr data-source="NAME">…</tr>` row of the sources table.
    fn row<'a>(html: &'a str, name_attr: &str) -> &'a str {
        let start = html
            .find(&format!("<tr data-source=\"{name_attr}\""))
            .unwrap();
        let end = start + html[start..].find("</tr>").unwrap();
        &html[start..end]
    }

    /// The content of `<td data-field="FIELD" …>` within `row`, with the tag's attributes.
    fn cell<'a>(row: &'a str, field: &str) -> &'a str {
        let start = row.find(&format!("<td data-field=\"{field}\"")).unwrap();
        let end = start + row[start..].find("</td>").unwrap();
        &row[start..end]
    }

    #[test]
    fn one_row_per_source_with_its_fields() {
        let html = render(&status());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(
            !html.contains("<script"),
            "no JavaScript, and none smuggled in"
        );
        let sources = &html[..html.find("Recent failures").unwrap()];
        assert_eq!(sources.matches("<tr data-source=").count(), 4);

        let billing = row(&html, "billing");
        assert!(cell(billing, "name").ends_with(">billing"));
        assert!(cell(billing, "kind").ends_with(">postgres"));
        assert!(cell(billing, "class").ends_with(">production / gold"));
        let last = cell(billing, "last-run");
        assert!(
            last.contains(
                "<time datetime=\"2025-03-01T11:48:00Z\">2025-03-01 11:48 UTC</time> (12m ago)"
            ),
            "{last}"
        );
        assert!(last.contains("<span class=\"ok\">ok</span>"));
        assert!(cell(billing, "result").starts_with("<td data-field=\"result\" class=\"ok\">ok"));
        assert_eq!(
            cell(billing, "rpo"),
            "<td data-field=\"rpo\" class=\"rpo-ok\">12m / 1h"
        );
        assert!(cell(billing, "next-run").ends_with("(in 1h)"));
        assert!(cell(billing, "running").contains("—"));
    }

    #[test]
    fn classes_follow_outcome_and_rpo() {
        let html = render(&status());
        let orders = row(&html, "orders");
        assert!(orders.starts_with("<tr data-source=\"orders\" class=\"running\">"));
        assert!(cell(orders, "result").contains("class=\"failed\">failed"));
        assert_eq!(
            cell(orders, "rpo"),
            "<td data-field=\"rpo\" class=\"rpo-late\">2h 5m / 1h"
        );
        assert!(cell(orders, "running").ends_with(">running"));

        let files = row(&html, "files");
        assert!(cell(files, "result").contains("class=\"partial\">partial"));
        assert_eq!(
            cell(files, "rpo"),
            "<td data-field=\"rpo\" class=\"rpo-unknown\">12m / —"
        );
        assert!(cell(files, "next-run").contains("not scheduled"));

        let never = row(&html, "new&quot;one");
        assert!(cell(never, "name").ends_with(">new\"one"));
        assert!(cell(never, "last-run").contains("never"));
        assert!(cell(never, "result").contains("class=\"never\""));
        assert!(cell(never, "rpo").contains("class=\"rpo-unknown\">— / 1h"));
    }

    #[test]
    fn messages_are_escaped() {
        let html = render(&status());
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("disk \"full\" &amp; more"));
        // The result cell shows only the first line; the failures list has the whole chain.
        let orders = row(&html, "orders");
        assert!(!cell(orders, "result").contains("caused by"));
    }

    #[test]
    fn recent_failures_newest_first_across_sources() {
        let html = render(&status());
        let section = &html[html.find("<section class=\"failures\">").unwrap()..];
        let rows: Vec<&str> = section
            .match_indices("<tr data-source=")
            .map(|(i, _)| &section[i..i + section[i..].find("</tr>").unwrap()])
            .collect();
        assert_eq!(rows.len(), 3);
        assert!(cell(rows[0], "source").ends_with(">new\"one"));
        assert!(cell(rows[0], "time").contains("(10m ago)"));
        assert!(cell(rows[0], "message").contains(">cannot connect</pre>"));
        assert!(cell(rows[1], "message")
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;\ncaused by: x"));
        assert!(cell(rows[2], "time").contains("2025-03-01 10:48 UTC"));
    }

    #[test]
    fn empty_plan_and_no_failures() {
        let html = render(&StatusReport {
            generated_at: "not a time".into(),
            host: "h<1>".into(),
            plan: "p".into(),
            sources: vec![],
        });
        assert!(html.contains("The plan has no sources."));
        assert!(html.contains("No failures recorded."));
        assert!(html.contains("<title>lifeline · h&lt;1&gt;</title>"));
        assert!(html.contains("generated not a time"));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0.0), "0s");
        assert_eq!(human_duration(45.2), "45s");
        assert_eq!(human_duration(720.0), "12m");
        assert_eq!(human_duration(3600.0), "1h");
        assert_eq!(human_duration(3.0 * 3600.0 + 5.0 * 60.0 + 9.0), "3h 5m");
        assert_eq!(human_duration(2.0 * 86400.0 + 4.0 * 3600.0), "2d 4h");
        assert_eq!(human_duration(-5.0), "0s");
        assert_eq!(human_duration(f64::NAN), "0s");
    }
}
