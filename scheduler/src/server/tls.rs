//! The scheduler's TLS listener: it accepts TCP connections, runs each TLS handshake itself
//! (rustls, client certificates of the cluster CA asked for but optional) and hands the
//! finished streams to tonic. Serving TLS here rather than through tonic's `ServerTlsConfig`
//! is what lets the scheduler log every refused handshake (a forged, expired or foreign
//! certificate, a plaintext client) with the peer's address and the reason: tonic drops those
//! connections with a debug line that names neither.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::{ServerError, TrustConfig};

/// How long a peer may take over its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many finished handshakes may wait for tonic to take them.
const BACKLOG: usize = 64;

/// The server's TLS configuration: its certificate chain (ending with the CA, so that an agent
/// can check the CA against its pin), and client certificates of the cluster CA asked for but
/// optional, since clients may bring a bearer token instead and agents joining bring none yet.
pub(super) fn acceptor(trust: &TrustConfig) -> Result<TlsAcceptor, ServerError> {
    let (chain, key) = match &trust.server_identity {
        Some((chain, key)) => (chain.clone(), key.clone()),
        None => trust
            .ca
            .server_identity(&trust.server_names, std::time::SystemTime::now())
            .map_err(ServerError::Pki)?,
    };
    let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("the server certificate chain", e))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| tls_error("the server key", e))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(trust.ca.cert_pem().as_bytes()) {
        let ca = ca.map_err(|e| tls_error("the cluster CA", e))?;
        roots.add(ca).map_err(|e| tls_error("the cluster CA", e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls_error("the client certificate verifier", e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("the TLS protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("the server certificate and key", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn tls_error(what: &'static str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls {
        what,
        reason: e.to_string(),
    }
}

/// Accepts connections on `listener` until `cancel`, handshakes each on its own task (on
/// `tracker`) and yields the finished ones. A refused handshake is logged with the peer and
/// the reason, and the connection dropped.
pub(super) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let handshakes = tracker.clone();
    tracker.spawn(
        async move {
            loop {
                let accepted = tokio::select! {
                    () = cancel.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of descriptors and the like: the listener itself stays good.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                };
                // Without TCP_NODELAY small HTTP/2 frames (a DescribeTasks answer, an
                // assignment) wait for the peer's delayed ACK, up to 40 ms on Linux.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                }
                let (acceptor, tx, cancel) = (acceptor.clone(), tx.clone(), cancel.clone());
                handshakes.spawn(async move {
                    let done = tokio::select! {
                        () = cancel.cancelled() => return,
                        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => done,
                    };
                    match done {
                        Ok(Ok(tls)) => {
                            // The receiver is gone only when the server stopped.
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => refused(peer, &error),
                        Err(_) => tracing::info!(
                            %peer,
                            timeout_s = HANDSHAKE_TIMEOUT.as_secs(),
                            "TLS handshake refused: the peer did not finish it in time"
                        ),
                    }
                });
            }
        }
        .instrument(tracing::info_span!("tls_accept")),
    );
    ReceiverStream::new(rx)
}

/// Logs a failed handshake: a refused certificate as a warning (someone holds a certificate
/// the cluster does not trust), anything else (a plaintext client, a scanner) as information.
fn refused(peer: SocketAddr, error: &std::io::Error) {
    let rustls_error = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => tracing::warn!(
            %peer,
            reason = %certificate_reason(cert),
            "TLS handshake refused: bad client certificate"
        ),
        Some(e) => tracing::info!(%peer, reason = %e, "TLS handshake refused"),
        None if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "connection closed before the TLS handshake finished");
        }
        None => tracing::info!(%peer, reason = %error, "TLS handshake refused"),
    }
}

/// Why a client certificate was refused, in words an operator acts on.
fn certificate_reason(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the certificate was not issued by this cluster's CA (forged, or of another cluster): {e}"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the certificate has expired: {e}")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the certificate is not valid yet (is the peer's clock right?): {e}")
        }
        CertificateError::Revoked => format!("the certificate is revoked: {e}"),
        _ => format!("the certificate is not acceptable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_reasons_name_the_cause() {
        assert!(
            certificate_reason(&CertificateError::UnknownIssuer)
                .contains("not issued by this cluster's CA")
        );
        assert!(certificate_reason(&CertificateError::Expired).contains("has expired"));
        assert!(certificate_reason(&CertificateError::NotValidYet).contains("not valid yet"));
    }
}
