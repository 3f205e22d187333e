//! The TLS server in process: the scheduler's own handshake (the cluster CA's client
//! certificates asked for but optional) serves a client certificate, an API token and no
//! credential as before, refuses a certificate of another CA at the handshake, and refuses
//! every call made with a client certificate an admin revoked, saying so.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{self as pb};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::Server;
use crate::server::{DEFAULT_AGENT_CERT_LIFETIME, ServerConfig, TrustConfig};
use crate::trust::{ClusterCa, Role};

struct TlsServer {
    server: Server,
    endpoint: String,
    ca_pem: String,
    admin_token: String,
}

async fn start(dir: &std::path::Path) -> TlsServer {
    let ca = ClusterCa::create(SystemTime::now()).unwrap();
    let ca_pem = ca.cert_pem().to_owned();
    let config = ServerConfig {
        shutdown_grace: Duration::from_secs(2),
        trust: Some(Arc::new(TrustConfig {
            ca,
            server_names: vec!["127.0.0.1".into(), "localhost".into()],
            server_identity: None,
            agent_cert_lifetime: DEFAULT_AGENT_CERT_LIFETIME,
        })),
        ..ServerConfig::default()
    };
    let server = Server::start_configured(dir, config, None).await;
    let (admin_token, _) = server
        .store
        .create_api_token(Role::Admin, None, None, SystemTime::now())
        .unwrap();
    TlsServer {
        endpoint: server.addr.replace("http://", "https://"),
        server,
        ca_pem,
        admin_token,
    }
}

/// Adds the admin's bearer token to a request, or nothing.
type Bearer =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Intercepted = InterceptedService<Channel, Bearer>;

impl TlsServer {
    async fn channel(
        &self,
        identity: Option<(&str, &str)>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(self.endpoint.clone())?
            .tls_config(tls)?
            .connect()
            .await
    }

    /// A client with `identity` (certificate and key PEM) or else the admin's token.
    async fn client(&self, identity: Option<(&str, &str)>) -> ControlServiceClient<Intercepted> {
        let channel = self.channel(identity).await.unwrap();
        let bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = identity
            .is_none()
            .then(|| format!("Bearer {}", self.admin_token).parse().unwrap());
        let interceptor: Bearer = Box::new(move |mut request: tonic::Request<()>| {
            if let Some(b) = &bearer {
                request.metadata_mut().insert("authorization", b.clone());
            }
            Ok(request)
        });
        ControlServiceClient::with_interceptor(channel, interceptor)
    }
}

/// A key and a signed client certificate for `name` with `role`; its serial.
async fn client_cert(s: &TlsServer, name: &str, role: &str) -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let made = s
        .client(None)
        .await
        .create_client_certificate(pb::CreateClientCertificateRequest {
            csr_pem: csr,
            name: name.into(),
            role: role.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!made.serial.is_empty());
    (made.certificate_pem, key.serialize_pem(), made.serial)
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_on_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (cert, key, serial) = client_cert(&s, "ci@ops", "operator").await;
    let (_, _, other_serial) = client_cert(&s, "bob@ops", "read-only").await;

    let listed = s
        .client(None)
        .await
        .list_client_certificates(pb::ListClientCertificatesRequest {})
        .await
        .unwrap()
        .into_inner()
        .certificates;
    let ours = listed.iter().find(|c| c.serial == serial).unwrap();
    assert_eq!(
        (ours.name.as_str(), ours.role.as_str(), ours.revoked_at),
        ("ci@ops", "operator", None)
    );
    assert!(listed.iter().any(|c| c.serial == other_serial));

    // Honoured, but an operator cannot revoke.
    let mut holder = s.client(Some((&cert, &key))).await;
    holder
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap();
    let err = holder
        .revoke_client_certificate(pb::RevokeClientCertificateRequest {
            serial: other_serial.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // An unknown serial is named.
    let err = s
        .client(None)
        .await
        .revoke_client_certificate(pb::RevokeClientCertificateRequest {
            serial: "ff00".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .contains("no client certificate with serial ff00")
    );

    let revoked = s
        .client(None)
        .await
        .revoke_client_certificate(pb::RevokeClientCertificateRequest {
            serial: serial.to_uppercase(),
        })
        .await
        .unwrap()
        .into_inner()
        .certificate
        .unwrap();
    assert_eq!(revoked.serial, serial);
    assert!(revoked.revoked_at.is_some());

    // Refused on the open connection and on a new one, and nothing is written.
    let before = s.server.store.contents().unwrap();
    for mut client in [holder, s.client(Some((&cert, &key))).await] {
        let err = client
            .list_tasks(pb::ListTasksRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(
            err.message().contains(&format!(
                "the client certificate {serial} of ci@ops was revoked at"
            )),
            "{}",
            err.message()
        );
        let err = client
            .create_cluster(pb::CreateClusterRequest { name: "x".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    assert_eq!(s.server.store.contents().unwrap(), before);
    s.server.stop().await;
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let other = ClusterCa::create(SystemTime::now()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let who = crate::trust::ClientIdentity::new("mallory", Role::Admin, None).unwrap();
    let cert = other
        .sign_client(&csr, &who, Duration::from_secs(3600), SystemTime::now())
        .unwrap();
    let key = key.serialize_pem();
    let before = s.server.store.contents().unwrap();
    // TLS 1.3 finishes the client's side of the handshake before the server checks its
    // certificate: the refusal arrives with the first call, if not at connect.
    let refused = match s.channel(Some((&cert, &key))).await {
        Err(_) => true,
        Ok(channel) => ControlServiceClient::new(channel)
            .list_clusters(pb::ListClustersRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate of another CA was served");
    assert_eq!(s.server.store.contents().unwrap(), before);

    // The listener goes on serving: a token still works.
    s.client(None)
        .await
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .unwrap();
    s.server.stop().await;
}
