//! TLS for `rediss://` URLs: rustls with the *ring* provider, trusting the CA file the plan names
//! or, without one, the Web PKI roots. No client certificate is offered, so the server must not
//! demand one (`tls-auth-clients no` or `optional`).

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::error::{Error, Result};

pub(super) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Wrap `tcp` in a TLS client session for `host` (checked against the server's certificate).
pub(super) fn wrap(
    tcp: TcpStream,
    host: &str,
    address: &str,
    ca_file: Option<&Path>,
) -> Result<TlsStream> {
    let tls = |reason: String| Error::Tls {
        address: address.to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| Error::file(path, e))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    tls(format!(
                        "{} holds no readable PEM certificate: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    tls(format!(
                        "a certificate in {} is not usable as a CA: {e}",
                        path.display()
                    ))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(tls(format!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider is named: the workspace builds rustls with two, and then none is the default.
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| tls(format!("{host:?} is not a host name TLS can check: {e}")))?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| tls(e.to_string()))?;
    let mut stream = StreamOwned::new(conn, tcp);
    // Handshake now, so a certificate problem is reported as one and not as a failed command.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| tls(handshake_hint(e)))?;
    }
    Ok(stream)
}

fn handshake_hint(e: std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        format!("{text} (set tls_ca_file to the CA that signed the server's certificate)")
    } else if text.contains("CertificateRequired") || text.contains("HandshakeFailure") {
        format!("{text} (does the server demand a client certificate? lifeline offers none: set tls-auth-clients no or optional)")
    } else {
        text
    }
}
