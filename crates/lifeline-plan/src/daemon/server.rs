//! The daemon's HTTP endpoints: `/metrics` (Prometheus), `/` (the status page), `/api/status`
//! (JSON) and `/healthz`. A small synchronous server on one thread: scrapes are rare and cheap.

use std::sync::Arc;

use anyhow::Context as _;
use tiny_http::{Header, Response, Server};

use super::state::Shared;

pub fn spawn(addr: &str, shared: Arc<Shared>) -> anyhow::Result<()> {
    let server = Server::http(addr)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot listen on {addr} ([metrics] listen)"))?;
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or("/").to_string();
            let (status, content_type, body) = match path.as_str() {
                "/metrics" => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    shared.metrics.encode(),
                ),
                "/api/status" => (
                    200,
                    "application/json",
                    serde_json::to_string_pretty(&shared.status()).unwrap_or_default(),
                ),
                "/" => (
                    200,
                    "text/html; charset=utf-8",
                    crate::page::render(&shared.status()),
                ),
                "/healthz" => match shared.reload_error() {
                    // Still healthy: the old plan keeps running; the message says why it was kept.
                    Some(e) => (
                        200,
                        "text/plain",
                        format!("ok (last reload refused: {e})\n"),
                    ),
                    None => (200, "text/plain", "ok\n".to_string()),
                },
                _ => (404, "text/plain", "not found\n".to_string()),
            };
            let header = Header::from_bytes("Content-Type", content_type).unwrap_or_else(|()| {
                Header::from_bytes("Content-Type", "text/plain").expect("static header")
            });
            let response = Response::from_string(body)
                .with_status_code(status)
                .with_header(header);
            if let Err(e) = request.respond(response) {
                tracing::debug!("response not delivered: {e}");
            }
        }
    });
    Ok(())
}
