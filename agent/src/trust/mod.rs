//! The agent's identity towards the scheduler: its key (made here, 0600, never sent), its
//! certificate and the cluster CA, in `<data dir>/tls/`. On first start the agent joins: it
//! checks the scheduler's CA against `scheduler_ca_pin` (`verify.rs`) or `tls_ca_file`, sends
//! a certificate request with the join token, and keeps the certificate it gets for its
//! instance ID. It renews the certificate at two thirds of its lifetime (`renew.rs`); an
//! expired one is an error that says when it expired and what to do.

mod renew;
mod verify;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::agent_service_client::AgentServiceClient;
use berth_proto::v1::{JoinClusterRequest, RenewCertificateRequest};
use rcgen::{CertificateParams, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::JoinConfig;
use crate::session::TlsMaterial;
pub(crate) use renew::{Renew, keep_renewed};

/// The agent's TLS files inside its data directory.
pub(crate) const TLS_DIR: &str = "tls";
const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.crt";
const CA_FILE: &str = "ca.crt";

/// Why the agent has no usable certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "the agent's certificate {path} expired at {at}: the agent was stopped or could not reach the scheduler to renew it; \
         create a join token (berthctl create-join-token), give it as join_token, and remove {dir} to join again"
    )]
    Expired {
        path: PathBuf,
        dir: PathBuf,
        at: String,
    },
    #[error("cannot make a key or certificate request: {0}")]
    Generate(String),
    #[error("cannot reach the scheduler at {endpoint} to join: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("the scheduler at {endpoint} refused to join this agent: {message}")]
    Refused {
        endpoint: String,
        code: tonic::Code,
        message: String,
    },
    #[error("the scheduler answered with a CA that does not match scheduler_ca_pin; not joining")]
    CaMismatch,
    #[error(
        "the scheduler at {0} needs a certificate: set join_token and scheduler_ca_pin (berthctl create-join-token prints both), or the tls files"
    )]
    NoCredential(String),
}

impl TrustError {
    /// Whether trying again later may help (the scheduler was unreachable or unavailable).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            TrustError::Connect { .. } => true,
            TrustError::Refused { code, .. } => {
                // A cluster that does not exist yet may be created by its operator.
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::NotFound
                )
            }
            _ => false,
        }
    }
}

/// The agent's certificate, its key, the CA, and the certificate's validity.
#[derive(Clone)]
pub(crate) struct AgentIdentity {
    pub(crate) material: TlsMaterial,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl std::fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrustError> {
    std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` atomically with `mode`.
fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), TrustError> {
    let err = |source| TrustError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The validity of a PEM certificate.
fn validity(pem: &[u8], path: &Path) -> Result<(SystemTime, SystemTime), TrustError> {
    let bad = |reason: String| TrustError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| bad(e.to_string()))?;
    let cert = block.parse_x509().map_err(|e| bad(e.to_string()))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    Ok((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(TLS_DIR)
}

/// The identity kept in `data_dir`, if the agent joined before; an error when it expired.
pub(crate) fn load(data_dir: &Path, now: SystemTime) -> Result<Option<AgentIdentity>, TrustError> {
    let dir = dir(data_dir);
    let cert_path = dir.join(CERT_FILE);
    if !cert_path.exists() {
        return Ok(None);
    }
    let cert = read(&cert_path)?;
    let (not_before, not_after) = validity(&cert, &cert_path)?;
    if now >= not_after {
        return Err(TrustError::Expired {
            path: cert_path,
            dir,
            at: rfc3339(not_after),
        });
    }
    Ok(Some(AgentIdentity {
        material: TlsMaterial {
            ca: read(&dir.join(CA_FILE))?,
            cert,
            key: read(&dir.join(KEY_FILE))?,
        },
        not_before,
        not_after,
    }))
}

/// The agent's key, made and kept (0600) on first use.
fn key(dir: &Path) -> Result<KeyPair, TrustError> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        let pem = String::from_utf8_lossy(&read(&path)?).into_owned();
        return KeyPair::from_pem(&pem).map_err(|e| TrustError::BadCertificate {
            path,
            reason: e.to_string(),
        });
    }
    let key = KeyPair::generate().map_err(|e| TrustError::Generate(e.to_string()))?;
    write(&path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(key)
}

fn csr(key: &KeyPair) -> Result<String, TrustError> {
    CertificateParams::default()
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| TrustError::Generate(e.to_string()))
}

fn connect_err(endpoint: &str, error: &tonic::transport::Error) -> TrustError {
    // The innermost cause says most (a pin mismatch, a refused connection).
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    TrustError::Connect {
        endpoint: endpoint.to_owned(),
        reason,
    }
}

fn refused(endpoint: &str, status: &tonic::Status) -> TrustError {
    if status.code() == tonic::Code::Unavailable
        && let Some(source) = std::error::Error::source(status)
    {
        let mut reason = source.to_string();
        let mut next = source.source();
        while let Some(s) = next {
            reason = s.to_string();
            next = s.source();
        }
        return TrustError::Connect {
            endpoint: endpoint.to_owned(),
            reason,
        };
    }
    TrustError::Refused {
        endpoint: endpoint.to_owned(),
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// Joins the cluster: checks the scheduler's CA, trades the token and a certificate request
/// for a certificate, and keeps it with the CA in `data_dir`. Returns the instance ID it names.
pub(crate) async fn join(
    endpoint: &str,
    cluster: &str,
    join: &JoinConfig,
    data_dir: &Path,
) -> Result<(String, AgentIdentity), TrustError> {
    let dir = dir(data_dir);
    let key = key(&dir)?;
    let csr_pem = csr(&key)?;
    let ep = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| connect_err(endpoint, &e))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let ep = match (&join.ca_pin, &join.ca_file) {
        (Some(pin), _) => ep
            .tls_config_with_verifier(ClientTlsConfig::new(), Arc::new(verify::PinnedCa::new(pin))),
        (None, Some(ca_file)) => ep.tls_config(
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca_file)?)),
        ),
        (None, None) => return Err(TrustError::NoCredential(endpoint.to_owned())),
    }
    .map_err(|e| connect_err(endpoint, &e))?;
    let channel = ep.connect().await.map_err(|e| connect_err(endpoint, &e))?;
    let response = AgentServiceClient::new(channel)
        .join_cluster(JoinClusterRequest {
            token: join.token.clone(),
            csr_pem,
            cluster: cluster.to_owned(),
        })
        .await
        .map_err(|s| refused(endpoint, &s))?
        .into_inner();
    if let Some(pin) = &join.ca_pin {
        let ca_der = x509_parser::pem::parse_x509_pem(response.ca_pem.as_bytes())
            .map(|(_, p)| p.contents)
            .map_err(|_| TrustError::CaMismatch)?;
        if verify::spki_pin(&ca_der).as_deref() != Some(pin.to_ascii_lowercase().as_str()) {
            return Err(TrustError::CaMismatch);
        }
    }
    let identity = keep(&dir, &key, &response.certificate_pem, &response.ca_pem)?;
    Ok((response.container_instance_id, identity))
}

/// Writes a new certificate and the CA beside the key, and reads back its validity.
fn keep(
    dir: &Path,
    key: &KeyPair,
    cert_pem: &str,
    ca_pem: &str,
) -> Result<AgentIdentity, TrustError> {
    let cert_path = dir.join(CERT_FILE);
    let (not_before, not_after) = validity(cert_pem.as_bytes(), &cert_path)?;
    write(&dir.join(CA_FILE), ca_pem.as_bytes(), 0o644)?;
    write(&cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok(AgentIdentity {
        material: TlsMaterial {
            ca: ca_pem.as_bytes().to_vec(),
            cert: cert_pem.as_bytes().to_vec(),
            key: key.serialize_pem().into_bytes(),
        },
        not_before,
        not_after,
    })
}

/// Renews the agent's certificate over mTLS with its current one, for the same key.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerRenewal {
    pub(crate) endpoint: String,
    pub(crate) data_dir: PathBuf,
}

#[async_trait::async_trait]
impl Renew for SchedulerRenewal {
    type Item = AgentIdentity;
    type Error = TrustError;

    async fn renew(&self, current: &AgentIdentity) -> Result<AgentIdentity, TrustError> {
        let dir = dir(&self.data_dir);
        let key = key(&dir)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&current.material.ca))
            .identity(Identity::from_pem(
                &current.material.cert,
                &current.material.key,
            ));
        let channel = Endpoint::from_shared(self.endpoint.clone())
            .and_then(|ep| ep.tls_config(tls))
            .map_err(|e| connect_err(&self.endpoint, &e))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| connect_err(&self.endpoint, &e))?;
        let response = AgentServiceClient::new(channel)
            .renew_certificate(RenewCertificateRequest {
                csr_pem: csr(&key)?,
            })
            .await
            .map_err(|s| refused(&self.endpoint, &s))?
            .into_inner();
        keep(&dir, &key, &response.certificate_pem, &response.ca_pem)
    }

    fn validity(identity: &AgentIdentity) -> (SystemTime, SystemTime) {
        (identity.not_before, identity.not_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_certificate_says_when_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.not_before = time_of(SystemTime::now() - Duration::from_secs(7200));
        params.not_after = time_of(SystemTime::now() - Duration::from_secs(3600));
        let cert = params.self_signed(&key).unwrap();
        let tls = dir.path().join(TLS_DIR);
        write(&tls.join(CERT_FILE), cert.pem().as_bytes(), 0o644).unwrap();
        let err = load(dir.path(), SystemTime::now()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("expired at 20"), "{text}");
        assert!(text.contains("berthctl create-join-token"), "{text}");
        assert!(!err.is_transient());
    }

    #[test]
    fn the_key_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = key(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            key(dir.path()).unwrap().public_key_raw(),
            first.public_key_raw()
        );
        assert!(load(dir.path(), SystemTime::now()).unwrap().is_none());
    }

    fn time_of(t: SystemTime) -> ::time::OffsetDateTime {
        ::time::OffsetDateTime::from(t)
    }
}
