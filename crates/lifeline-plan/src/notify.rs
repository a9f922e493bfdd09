//! Webhook notifications when a source's job fails and when it recovers: a generic JSON body any
//! receiver can read, or PagerDuty's Events API v2 shape so a failure opens an incident and the
//! recovery resolves it. Delivery never fails the job: a target that keeps failing is logged and
//! reported back, the backup itself already happened (or did not) either way.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::report::{JobReport, Outcome};

/// One `[[notify]]` table of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyOptions {
    /// Where the JSON body is POSTed (`http://` or `https://`).
    pub url: String,
    /// PagerDuty Events API v2: the routing key is read from this file and the body has
    /// PagerDuty's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty_routing_key_file: Option<PathBuf>,
    /// Attempts after the first, for connection errors, timeouts, 429 and 5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Delay before the first retry, doubling for each further one.
    #[serde(
        default = "default_retry_delay",
        with = "crate::options::duration_text"
    )]
    pub retry_delay: Duration,
    /// Limit on one attempt, from connecting to reading the response.
    #[serde(default = "default_timeout", with = "crate::options::duration_text")]
    pub timeout: Duration,
}

fn default_retries() -> u32 {
    3
}

fn default_retry_delay() -> Duration {
    Duration::from_secs(2)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// PagerDuty caps `dedup_key` at 255 characters and `summary` at 1024.
const PAGERDUTY_DEDUP_KEY_MAX: usize = 255;
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

impl NotifyOptions {
    /// What the plan checker reports before the daemon starts, so a broken target is found
    /// before the first failure needs it.
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "notify url {:?} is not an http:// or https:// address; write the webhook's full URL",
                self.url
            ));
        }
        if self.timeout.is_zero() {
            return Err(format!(
                "notify {}: timeout must be longer than 0s; write it like \"10s\"",
                self.url
            ));
        }
        self.routing_key().map(|_| ())
    }

    /// The PagerDuty routing key, if this target is PagerDuty's: the file's first non-empty line.
    fn routing_key(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.pagerduty_routing_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read PagerDuty routing key file {} ({e}); write the Integration Key of the service's Events API v2 integration into it",
                path.display()
            )
        })?;
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(key) => Ok(Some(key.to_string())),
            None => Err(format!(
                "PagerDuty routing key file {} is empty; write the Integration Key of the service's Events API v2 integration into it",
                path.display()
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A job failed (or saved only part of its data).
    Failure,
    /// A source whose last notified job failed has succeeded again.
    Recovery,
}

/// What happened, to whom, and where.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub report: &'a JobReport,
    /// The machine the daemon runs on: the PagerDuty `source` and part of the dedup key.
    pub host: &'a str,
}

/// How one target's delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub url: String,
    pub ok: bool,
    /// Requests made; 0 when the body could not be built (an unreadable routing key).
    pub attempts: u32,
    /// The last attempt's error.
    pub error: Option<String>,
}

/// Deliver to every target; never returns an error: a webhook that keeps failing is logged
/// (tracing::warn) and reported.
///
/// Targets are delivered concurrently so one unreachable receiver, retrying with backoff, does
/// not hold back the others.
pub fn deliver(targets: &[NotifyOptions], event: &Event<'_>) -> Vec<Delivery> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|target| scope.spawn(move || deliver_one(target, event)))
            .collect();
        handles
            .into_iter()
            .zip(targets)
            .map(|(handle, target)| {
                handle.join().unwrap_or_else(|_| Delivery {
                    url: target.url.clone(),
                    ok: false,
                    attempts: 0,
                    error: Some("the delivery thread panicked".to_string()),
                })
            })
            .collect()
    })
}

fn deliver_one(target: &NotifyOptions, event: &Event<'_>) -> Delivery {
    let source = &event.report.source;
    let body = match body(target, event) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(url = %target.url, %source, "notification not sent: {error}");
            return Delivery {
                url: target.url.clone(),
                ok: false,
                attempts: 0,
                error: Some(error),
            };
        }
    };
    let agent = agent(target.timeout);
    let mut delay = target.retry_delay;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match post(&agent, &target.url, &body) {
            Ok(()) => {
                return Delivery {
                    url: target.url.clone(),
                    ok: true,
                    attempts,
                    error: None,
                }
            }
            Err(e) => e,
        };
        if !error.retry || attempts > target.retries {
            tracing::warn!(
                url = %target.url, %source, attempts,
                "notification failed: {}", error.message
            );
            return Delivery {
                url: target.url.clone(),
                ok: false,
                attempts,
                error: Some(error.message),
            };
        }
        tracing::info!(
            url = %target.url, %source, attempts,
            "notification failed, retrying in {}: {}",
            humantime::format_duration(delay), error.message
        );
        std::thread::sleep(delay);
        delay = delay.saturating_mul(2);
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // Status codes decide retries here, and the receiver's error text goes into the report.
        .http_status_as_error(false)
        // A redirected POST becomes a GET without the body: report it instead of losing the event.
        .max_redirects(0)
        .user_agent(concat!("lifeline/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                // The system's trust store, so receivers behind a private CA work as with curl.
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .new_agent()
}

struct AttemptError {
    message: String,
    retry: bool,
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(), AttemptError> {
    let started = Instant::now();
    let mut response = agent
        .post(url)
        .content_type("application/json")
        .send(body)
        .map_err(|e| AttemptError {
            // Transient by nature; anything else (a bad URL, a TLS certificate) will not heal.
            // TLS failures arrive as I/O errors too: rustls reports them as `InvalidData`.
            retry: match &e {
                ureq::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
                _ => matches!(
                    e,
                    ureq::Error::Timeout(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                        | ureq::Error::Protocol(_)
                ),
            },
            message: format!("{e} after {:.1}s", started.elapsed().as_secs_f64()),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The receiver's explanation, bounded: a misconfigured URL may answer with a whole web page.
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let text: String = text.trim().chars().take(300).collect();
    let mut message = format!("HTTP {status}");
    if status.is_redirection() {
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("?");
        message.push_str(&format!(
            " to {location}; write the final address as the url"
        ));
    } else if !text.is_empty() {
        message.push_str(&format!(": {text}"));
    }
    Err(AttemptError {
        message,
        retry: status.as_u16() == 429 || status.is_server_error(),
    })
}

fn body(target: &NotifyOptions, event: &Event<'_>) -> Result<Vec<u8>, String> {
    let json = match target.routing_key()? {
        Some(key) => serde_json::to_vec(&PagerDutyEvent::new(&key, event)),
        None => serde_json::to_vec(&GenericEvent::new(event)),
    };
    json.map_err(|e| format!("cannot encode the notification: {e}"))
}

/// The body every plain webhook receives.
#[derive(Serialize)]
struct GenericEvent<'a> {
    event: EventKind,
    source: &'a str,
    kind: &'a str,
    class: &'a str,
    tier: &'a str,
    host: &'a str,
    /// When the job finished.
    time: &'a str,
    message: Option<&'a str>,
    snapshot: Option<&'a str>,
    report: &'a JobReport,
}

impl<'a> GenericEvent<'a> {
    fn new(event: &Event<'a>) -> Self {
        let r = event.report;
        GenericEvent {
            event: event.kind,
            source: &r.source,
            kind: &r.kind,
            class: &r.class,
            tier: &r.tier,
            host: event.host,
            time: &r.finished,
            message: r.message.as_deref(),
            snapshot: r.snapshot.as_deref(),
            report: r,
        }
    }
}

/// PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`). A failure
/// triggers an alert and the recovery resolves it: both carry the same `dedup_key`, so repeated
/// failures of one source fold into one incident.
#[derive(Serialize)]
struct PagerDutyEvent<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    /// Only `trigger` needs it; PagerDuty accepts and ignores it on `resolve`, and it keeps the
    /// report attached to the resolving event's log entry.
    payload: PagerDutyPayload<'a>,
}

#[derive(Serialize)]
struct PagerDutyPayload<'a> {
    summary: String,
    source: &'a str,
    severity: &'static str,
    timestamp: &'a str,
    component: &'a str,
    group: &'a str,
    class: &'a str,
    custom_details: &'a JobReport,
}

impl<'a> PagerDutyEvent<'a> {
    fn new(routing_key: &'a str, event: &Event<'a>) -> Self {
        let r = event.report;
        let summary = match event.kind {
            EventKind::Failure => {
                let what = match r.outcome {
                    Outcome::Partial => "saved only part of its data",
                    Outcome::Failure | Outcome::Success => "failed",
                };
                let cause = r
                    .message
                    .as_deref()
                    .and_then(|m| m.lines().next())
                    .unwrap_or("no message");
                format!(
                    "lifeline: backup of {} on {} {what}: {cause}",
                    r.source, event.host
                )
            }
            EventKind::Recovery => format!(
                "lifeline: backup of {} on {} succeeded again",
                r.source, event.host
            ),
        };
        PagerDutyEvent {
            routing_key,
            event_action: match event.kind {
                EventKind::Failure => "trigger",
                EventKind::Recovery => "resolve",
            },
            dedup_key: truncate(
                format!("lifeline/{}/{}", event.host, r.source),
                PAGERDUTY_DEDUP_KEY_MAX,
            ),
            payload: PagerDutyPayload {
                summary: truncate(summary, PAGERDUTY_SUMMARY_MAX),
                source: event.host,
                severity: "critical",
                timestamp: &r.finished,
                component: &r.source,
                group: &r.class,
                class: &r.kind,
                custom_details: r,
            },
        }
    }
}

/// At most `max` characters (PagerDuty counts characters, not bytes).
fn truncate(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use serde_json::{json, Value};

    use super::*;
    use crate::report::CopyReport;

    struct Request {
        method: String,
        path: String,
        content_type: Option<String>,
        body: Value,
    }

    /// A real HTTP server on a free local port answering one request per status in `statuses`,
    /// in order, then closing (so a further, unexpected attempt finds nobody listening).
    fn receiver(statuses: &[u16]) -> (String, mpsc::Receiver<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        let statuses = statuses.to_vec();
        std::thread::spawn(move || {
            for status in statuses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap().to_string();
                let path = parts.next().unwrap().to_string();
                let mut length = 0;
                let mut content_type = None;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "content-type" => content_type = Some(value.trim().to_string()),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                // Recorded before answering: once the client has its response, the request is here.
                tx.send(Request {
                    method,
                    path,
                    content_type,
                    body: serde_json::from_slice(&body).unwrap(),
                })
                .unwrap();
                let text = format!("status {status}");
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                )
                .unwrap();
            }
        });
        (url, rx)
    }

    fn target(url: &str) -> NotifyOptions {
        NotifyOptions {
            url: url.to_string(),
            pagerduty_routing_key_file: None,
            retries: 3,
            retry_delay: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
        }
    }

    fn report() -> JobReport {
        JobReport {
            source: "orders-db".into(),
            kind: "postgres".into(),
            class: "production".into(),
            tier: "gold".into(),
            job: "incremental".into(),
            started: "2025-03-01T10:00:00Z".into(),
            finished: "2025-03-01T10:02:30Z".into(),
            duration_seconds: 150.0,
            outcome: Outcome::Failure,
            message: Some("connection refused\ncaused by: server not running".into()),
            snapshot: None,
            bytes: 0,
            bytes_added: 0,
            copies: vec![CopyReport {
                target: "offsite".into(),
                ok: false,
                snapshots: 0,
                bytes_added: 0,
                message: Some("skipped".into()),
            }],
            forgotten: 0,
            verified: None,
        }
    }

    #[test]
    fn generic_body_carries_the_event_and_the_report() {
        let (url, requests) = receiver(&[200]);
        let report = report();
        let event = Event {
            kind: EventKind::Failure,
            report: &report,
            host: "db1",
        };
        let deliveries = deliver(&[target(&url)], &event);
        assert_eq!(
            deliveries,
            vec![Delivery {
                url,
                ok: true,
                attempts: 1,
                error: None
            }]
        );
        let request = requests.try_recv().unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            request.body,
            json!({
                "event": "failure",
                "source": "orders-db",
                "kind": "postgres",
                "class": "production",
                "tier": "gold",
                "host": "db1",
                "time": "2025-03-01T10:02:30Z",
                "message": "connection refused\ncaused by: server not running",
                "snapshot": null,
                "report": serde_json::to_value(&report).unwrap(),
            })
        );
    }

    #[test]
    fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("pd-key");
        std::fs::write(&key_file, "\n  R0UT1NGKEY  \n").unwrap();
        let (url, requests) = receiver(&[202, 202]);
        let options = NotifyOptions {
            pagerduty_routing_key_file: Some(key_file),
            ..target(&url)
        };
        let failed = report();
        let mut recovered = report();
        recovered.outcome = Outcome::Success;
        recovered.message = None;
        recovered.snapshot = Some("5e1f0c2a".into());

        for (kind, report) in [
            (EventKind::Failure, &failed),
            (EventKind::Recovery, &recovered),
        ] {
            let event = Event {
                kind,
                report,
                host: "db1",
            };
            let deliveries = deliver(std::slice::from_ref(&options), &event);
            assert!(deliveries[0].ok, "{deliveries:?}");
        }

        let trigger = requests.try_recv().unwrap().body;
        assert_eq!(
            trigger,
            json!({
                "routing_key": "R0UT1NGKEY",
                "event_action": "trigger",
                "dedup_key": "lifeline/db1/orders-db",
                "payload": {
                    "summary": "lifeline: backup of orders-db on db1 failed: connection refused",
                    "source": "db1",
                    "severity": "critical",
                    "timestamp": "2025-03-01T10:02:30Z",
                    "component": "orders-db",
                    "group": "production",
                    "class": "postgres",
                    "custom_details": serde_json::to_value(&failed).unwrap(),
                },
            })
        );
        let resolve = requests.try_recv().unwrap().body;
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], "lifeline/db1/orders-db");
        assert_eq!(
            resolve["payload"]["summary"],
            "lifeline: backup of orders-db on db1 succeeded again"
        );
        assert_eq!(
            resolve["payload"]["custom_details"],
            serde_json::to_value(&recovered).unwrap()
        );
    }

    #[test]
    fn retries_after_503_until_accepted() {
        let (url, requests) = receiver(&[503, 503, 200]);
        let report = report();
        let event = Event {
            kind: EventKind::Failure,
            report: &report,
            host: "db1",
        };
        let deliveries = deliver(&[target(&url)], &event);
        assert!(deliveries[0].ok, "{deliveries:?}");
        assert_eq!(deliveries[0].attempts, 3);
        assert_eq!(requests.try_iter().count(), 3);
    }

    #[test]
    fn gives_up_after_the_last_retry_with_the_receivers_answer() {
        let (url, requests) = receiver(&[429, 500, 502]);
        let report = report();
        let event = Event {
            kind: EventKind::Failure,
            report: &report,
            host: "db1",
        };
        let options = NotifyOptions {
            retries: 2,
            ..target(&url)
        };
        let deliveries = deliver(&[options], &event);
        assert!(!deliveries[0].ok);
        assert_eq!(deliveries[0].attempts, 3);
        let error = deliveries[0].error.as_deref().unwrap();
        assert!(
            error.contains("502") && error.contains("status 502"),
            "{error}"
        );
        assert_eq!(requests.try_iter().count(), 3);
    }

    #[test]
    fn no_retry_after_400() {
        let (url, requests) = receiver(&[400]);
        let report = report();
        let event = Event {
            kind: EventKind::Failure,
            report: &report,
            host: "db1",
        };
        let deliveries = deliver(&[target(&url)], &event);
        assert!(!deliveries[0].ok);
        assert_eq!(deliveries[0].attempts, 1);
        let error = deliveries[0].error.as_deref().unwrap();
        assert!(error.starts_with("HTTP 400"), "{error}");
        assert_eq!(requests.try_iter().count(), 1);
    }

    #[test]
    fn a_dead_port_fails_after_every_attempt_with_doubling_delays() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let report = report();
        let event = Event {
            kind: EventKind::Failure,
            report: &report,
            host: "db1",
        };
        let options = NotifyOptions {
            retries: 3,
            retry_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
            ..target(&format!("http://127.0.0.1:{port}/hook"))
        };
        let started = Instant::now();
        let deliveries = deliver(&[options], &event);
        let elapsed = started.elapsed();
        assert!(!deliveries[0].ok);
        assert_eq!(deliveries[0].attempts, 4);
        assert!(deliveries[0].error.is_some());
        // 50 + 100 + 200 ms of backoff; a refused connection returns at once.
        assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn https_goes_through_rustls_and_a_failed_handshake_is_reported_not_retried() {
        // A plain-HTTP server answering a TLS client: the handshake fails in rustls, which shows
        // the TLS stack and its trust store are built in (ureq panics when a feature is missing).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/hook", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let report = report();
        let event = Event {
            kind: EventKind::Failure,
            report: &report,
            host: "db1",
        };
        let deliveries = deliver(&[target(&url)], &event);
        assert!(!deliveries[0].ok);
        assert_eq!(deliveries[0].attempts, 1, "{deliveries:?}");
        assert!(deliveries[0].error.is_some());
    }

    #[test]
    fn one_failing_target_does_not_stop_the_others() {
        let (url, requests) = receiver(&[200]);
        let report = report();
        let event = Event {
            kind: EventKind::Recovery,
            report: &report,
            host: "db1",
        };
        let broken = NotifyOptions {
            pagerduty_routing_key_file: Some("/nonexistent/pd-key".into()),
            ..target("http://127.0.0.1:9/unused")
        };
        let deliveries = deliver(&[broken, target(&url)], &event);
        assert!(!deliveries[0].ok);
        assert_eq!(deliveries[0].attempts, 0);
        assert!(deliveries[0]
            .error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/pd-key"));
        assert!(deliveries[1].ok);
        assert_eq!(requests.try_recv().unwrap().body["event"], "recovery");
    }

    #[test]
    fn check_names_the_routing_key_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty-key");
        std::fs::write(&empty, "\n \n").unwrap();
        let options = NotifyOptions {
            pagerduty_routing_key_file: Some(empty.clone()),
            ..target("https://events.pagerduty.com/v2/enqueue")
        };
        let error = options.check().unwrap_err();
        assert!(error.contains(&empty.display().to_string()), "{error}");
        assert!(error.contains("is empty") && error.contains("Integration Key"));

        let missing = NotifyOptions {
            pagerduty_routing_key_file: Some(dir.path().join("missing")),
            ..options.clone()
        };
        assert!(missing.check().unwrap_err().contains("cannot read"));

        std::fs::write(&empty, "abc\n").unwrap();
        assert_eq!(options.check(), Ok(()));
        assert!(target("hooks.example.com/x")
            .check()
            .unwrap_err()
            .contains("http://"));
    }

    #[test]
    fn plan_table_defaults_and_durations() {
        let options: NotifyOptions =
            toml::from_str(r#"url = "https://hooks.example.com/x""#).unwrap();
        assert_eq!(options.retries, 3);
        assert_eq!(options.retry_delay, Duration::from_secs(2));
        assert_eq!(options.timeout, Duration::from_secs(10));
        assert_eq!(options.pagerduty_routing_key_file, None);

        let options: NotifyOptions = toml::from_str(
            "url = \"http://h/x\"\nretries = 0\nretry_delay = \"500ms\"\ntimeout = \"1m\"",
        )
        .unwrap();
        assert_eq!(options.retries, 0);
        assert_eq!(options.retry_delay, Duration::from_millis(500));
        assert_eq!(options.timeout, Duration::from_secs(60));
        let text = toml::to_string(&options).unwrap();
        assert_eq!(toml::from_str::<NotifyOptions>(&text).unwrap(), options);

        let error =
            toml::from_str::<NotifyOptions>("url = \"http://h/x\"\ntimeout = \"10 parsecs\"")
                .unwrap_err()
                .to_string();
        assert!(error.contains("not a duration"), "{error}");
        assert!(toml::from_str::<NotifyOptions>("url = \"http://h/x\"\nretry = 2").is_err());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("ééé".into(), 2), "éé");
        assert_eq!(truncate("ab".into(), 5), "ab");
    }
}
