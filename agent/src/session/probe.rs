//! Why a call over TLS was cut. With TLS 1.3 the client counts its handshake done before the
//! scheduler has checked the client's certificate, so the scheduler's refusal (a fatal alert)
//! arrives after the first request was sent; hyper hands it to whichever read is pending on
//! the connection, and a call can end with just "operation was canceled". This probe asks
//! again on a connection of its own that sends nothing after the handshake: the scheduler's
//! next words are then either its alert, read before its close, or its HTTP/2 settings.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt as _;

use super::TlsMaterial;

/// How long the probe waits for the connection, the handshake, and then for the scheduler's
/// first words.
const PROBE_WITHIN: Duration = Duration::from_secs(3);

/// The TLS alert names that mean the scheduler refused this agent's certificate (a
/// DecryptError: the signature on it, or the agent's proof of its key, did not verify).
const REFUSALS: [rustls::AlertDescription; 9] = {
    use rustls::AlertDescription as A;
    [
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::CertificateRevoked,
        A::CertificateExpired,
        A::CertificateUnknown,
        A::UnknownCA,
        A::AccessDenied,
        A::CertificateRequired,
        A::DecryptError,
    ]
};

/// The refusal alert named in an error's text ("received fatal alert: UnknownCA"), if any.
pub(super) fn alert_in(text: &str) -> Option<String> {
    text.split("received fatal alert: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .filter(|name| REFUSALS.iter().any(|a| format!("{a:?}") == *name))
        .map(str::to_owned)
}

/// The alert with which the scheduler at `endpoint` (https://host:port) refuses `tls`'s
/// certificate, or None when it accepts it, cannot be reached, or the material is unusable
/// (the session's own error says so).
pub(super) async fn certificate_refusal(endpoint: &str, tls: &TlsMaterial) -> Option<String> {
    let uri: tonic::codegen::http::Uri = endpoint.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let config = client_config(tls)?;
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut stream = match connector.connect(name, tcp).await {
            Ok(stream) => stream,
            Err(e) => return alert_in(&e.to_string()),
        };
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Err(e) => alert_in(&e.to_string()),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(PROBE_WITHIN, attempt)
        .await
        .ok()
        .flatten()
}

fn client_config(tls: &TlsMaterial) -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca) {
        roots.add(cert.ok()?).ok()?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert)
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key).ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_found_in_error_text_and_only_refusals_count() {
        assert_eq!(
            alert_in("transport error: received fatal alert: UnknownCA").as_deref(),
            Some("UnknownCA")
        );
        assert_eq!(
            alert_in("received fatal alert: CertificateExpired)").as_deref(),
            Some("CertificateExpired")
        );
        assert_eq!(alert_in("received fatal alert: DecodeError"), None);
        assert_eq!(alert_in("operation was canceled"), None);
    }

    /// A scheduler stand-in that requires client certificates of its own CA: an agent
    /// certificate of another CA is refused, and the probe names the alert; one of its CA is
    /// accepted, and the probe finds nothing.
    #[tokio::test]
    async fn the_probe_names_the_alert_of_a_refused_certificate() {
        let ca = Ca::new("cluster CA");
        let other = Ca::new("another CA");
        let server = ca.issue("localhost", true);
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(ca.cert.der().clone()).expect("root");
            Arc::new(r)
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .expect("verifier");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server.0.der().clone()],
                PrivateKeyDer::from_pem_slice(server.1.serialize_pem().as_bytes()).expect("key"),
            )
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        // Accepted: hold the connection, as a scheduler awaiting the preface.
                        let mut buf = [0u8; 1];
                        let _ = s.read(&mut buf).await;
                    }
                });
            }
        });
        let endpoint = format!("https://localhost:{port}");
        let foreign = other.issue("agent", false);
        let material = |cert: &(rcgen::Certificate, rcgen::KeyPair)| TlsMaterial {
            ca: ca.cert.pem().into_bytes(),
            cert: cert.0.pem().into_bytes(),
            key: cert.1.serialize_pem().into_bytes(),
        };
        let refused = certificate_refusal(&endpoint, &material(&foreign)).await;
        assert_eq!(refused.as_deref(), Some("UnknownCA"));
        let ours = ca.issue("agent", false);
        let started = std::time::Instant::now();
        assert_eq!(certificate_refusal(&endpoint, &material(&ours)).await, None);
        assert!(started.elapsed() <= PROBE_WITHIN + Duration::from_secs(1));
        // Nobody listening: nothing to name.
        drop(ours);
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gone = format!(
            "https://localhost:{}",
            closed.local_addr().expect("a").port()
        );
        drop(closed);
        assert_eq!(certificate_refusal(&gone, &material(&foreign)).await, None);
    }

    struct Ca {
        cert: rcgen::Certificate,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Ca {
        fn new(name: &str) -> Self {
            let mut params = rcgen::CertificateParams::default();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.self_signed(&key).expect("ca");
            Self {
                cert,
                issuer: rcgen::Issuer::new(params, key),
            }
        }

        fn issue(&self, name: &str, server: bool) -> (rcgen::Certificate, rcgen::KeyPair) {
            let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
            params.extended_key_usages = vec![if server {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            }];
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &self.issuer).expect("sign");
            (cert, key)
        }
    }
}
