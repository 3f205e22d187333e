//! The cluster CA: created at first start (rcgen, ECDSA P-256; the key 0600 in
//! `<data dir>/pki/`) or given by the operator, it signs the scheduler's server certificate
//! (made at every start for the names it listens on) and the agents' certificates, which name
//! their cluster and instance in a URI SAN (`identity.rs`).

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::identity::{AgentIdentity, ClientIdentity, spki_pin};

/// The CA's files inside the data directory.
pub const PKI_DIR: &str = "pki";
const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";

/// How far back a new certificate's validity starts, for hosts whose clocks run a little slow.
const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// The CA's lifetime when the scheduler creates it.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The server certificate's lifetime (it is made anew at every start).
const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// What went wrong with the cluster's certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
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
    #[error("{path} is not a usable {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path} is readable by other users (mode {mode:o}); run chmod 600 {path}")]
    KeyMode { path: PathBuf, mode: u32 },
    #[error(
        "only one of {0} exists; remove it to let the scheduler create a new CA, or restore the other"
    )]
    HalfCa(PathBuf),
    #[error("cannot make {what}: {reason}")]
    Generate { what: &'static str, reason: String },
    #[error("the certificate request is not valid: {0}")]
    BadRequest(String),
}

/// An operator's own CA, by file.
#[derive(Debug, Clone)]
pub struct GivenCa {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The cluster CA: its certificate and the key that signs with it.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    pin: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a new file with `mode`, replacing none (the caller checked).
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
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

fn check_key_mode(path: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, as RFC 5280 asks.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

impl ClusterCa {
    /// The operator's CA when given, else the one in `data_dir/pki/`, created when missing.
    pub fn load_or_create(data_dir: &Path, given: Option<&GivenCa>) -> Result<Self, PkiError> {
        if let Some(given) = given {
            return Self::load(&given.cert_file, &given.key_file);
        }
        let dir = data_dir.join(PKI_DIR);
        let (cert, key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        match (cert.exists(), key.exists()) {
            (true, true) => Self::load(&cert, &key),
            (false, false) => {
                std::fs::create_dir_all(&dir).map_err(|source| PkiError::Write {
                    path: dir.clone(),
                    source,
                })?;
                let ca = Self::create(SystemTime::now())?;
                write_private(&key, ca.issuer.key().serialize_pem().as_bytes(), 0o600)?;
                write_private(&cert, ca.cert_pem.as_bytes(), 0o644)?;
                tracing::info!(path = %cert.display(), ca.pin = %ca.pin, "created the cluster CA");
                Ok(ca)
            }
            (true, false) => Err(PkiError::HalfCa(cert)),
            (false, true) => Err(PkiError::HalfCa(key)),
        }
    }

    /// A new self-signed CA valid from `now`.
    pub fn create(now: SystemTime) -> Result<Self, PkiError> {
        let generate = |reason: rcgen::Error| PkiError::Generate {
            what: "the cluster CA",
            reason: reason.to_string(),
        };
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "berth cluster CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "berth");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset(now - CLOCK_SKEW);
        params.not_after = offset(now + CA_LIFETIME);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(generate)?;
        let pin = spki_pin(cert.der()).map_err(|reason| PkiError::Generate {
            what: "the cluster CA's pin",
            reason,
        })?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            pin,
        })
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        check_key_mode(key_path)?;
        let cert_pem = read(cert_path)?;
        let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| PkiError::Invalid {
            path: key_path.to_owned(),
            what: "CA key (PEM, PKCS#8)",
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| PkiError::Invalid {
            path: cert_path.to_owned(),
            what: "CA certificate (PEM)",
            reason,
        };
        let der = pem_der(&cert_pem).map_err(invalid)?;
        let pin = spki_pin(&der).map_err(invalid)?;
        let issuer =
            Issuer::from_ca_cert_der(&der.into(), key).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            cert_pem,
            issuer,
            pin,
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo, as agents pin it.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// A server certificate for `names` (DNS names or IP addresses), with a new key:
    /// (the chain in PEM, server certificate then CA, and the key in PEM).
    pub fn server_identity(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<(String, String), PkiError> {
        let generate = |reason: rcgen::Error| PkiError::Generate {
            what: "the server certificate",
            reason: reason.to_string(),
        };
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "berth-scheduler");
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into().map_err(generate)?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = offset(now - CLOCK_SKEW);
        params.not_after = offset(now + SERVER_LIFETIME);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok((
            format!("{}{}", cert.pem(), self.cert_pem),
            key.serialize_pem(),
        ))
    }

    /// Signs an agent's certificate request for `who`, valid for `lifetime` from `now`. Only
    /// the request's public key is used: the names and usages are the scheduler's.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        who: &AgentIdentity,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        let names = Names {
            what: "the agent's certificate",
            common_name: &who.instance_id,
            organization: &who.cluster,
            uri: who.uri(),
        };
        self.sign(csr_pem, names, lifetime, now)
    }

    /// Signs a client's certificate request for `who` (its name, role and scope), valid for
    /// `lifetime` from `now`; as for an agent, only the request's public key is used.
    pub fn sign_client(
        &self,
        csr_pem: &str,
        who: &ClientIdentity,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        let names = Names {
            what: "the client certificate",
            common_name: &who.name,
            organization: who.role.as_str(),
            uri: who.uri(),
        };
        self.sign(csr_pem, names, lifetime, now)
    }

    fn sign(
        &self,
        csr_pem: &str,
        names: Names<'_>,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadRequest(e.to_string()))?;
        let generate = |reason: rcgen::Error| PkiError::Generate {
            what: names.what,
            reason: reason.to_string(),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, names.common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, names.organization);
        params.subject_alt_names = vec![SanType::URI(
            names.uri.as_str().try_into().map_err(generate)?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = offset(now - CLOCK_SKEW);
        params.not_after = offset(now + lifetime);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let request = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = request.signed_by(&self.issuer).map_err(generate)?;
        Ok(cert.pem())
    }
}

/// What a signed certificate names.
struct Names<'a> {
    /// For errors.
    what: &'static str,
    common_name: &'a str,
    organization: &'a str,
    uri: String,
}

/// The DER of the first certificate in `pem`.
pub fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| "no CERTIFICATE block".to_owned())?
        .map(|c| c.to_vec())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentIdentity {
        AgentIdentity {
            cluster: "prod".into(),
            instance_id: "6a0c".into(),
        }
    }

    #[test]
    fn a_signed_agent_certificate_names_its_instance_and_keeps_the_agents_key() {
        let now = SystemTime::now();
        let ca = ClusterCa::create(now).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let pem = ca
            .sign_agent(&csr, &agent(), Duration::from_secs(3600), now)
            .unwrap();
        let der = pem_der(&pem).unwrap();
        let parsed = AgentIdentity::from_der(&der).unwrap();
        assert_eq!(parsed, Some(agent()));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.public_key().raw,
            x509_parser::parse_x509_certificate(&der)
                .unwrap()
                .1
                .public_key()
                .raw
        );
        assert_eq!(
            cert.tbs_certificate
                .subject_pki
                .subject_public_key
                .data
                .as_ref(),
            key.public_key_raw()
        );
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 3600 + 300);
    }

    #[test]
    fn a_bad_request_is_refused() {
        let ca = ClusterCa::create(SystemTime::now()).unwrap();
        let err = ca
            .sign_agent(
                "not pem",
                &agent(),
                Duration::from_secs(1),
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(matches!(err, PkiError::BadRequest(_)), "{err}");
    }

    #[test]
    fn the_ca_is_created_once_with_a_private_key_and_loaded_after() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterCa::load_or_create(dir.path(), None).unwrap();
        let key = dir.path().join(PKI_DIR).join(CA_KEY_FILE);
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = ClusterCa::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.pin(), again.pin());
        assert!(first.pin().starts_with("sha256:") && first.pin().len() == 7 + 64);

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ClusterCa::load_or_create(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::remove_file(&key).unwrap();
        let err = ClusterCa::load_or_create(dir.path(), None).unwrap_err();
        assert!(matches!(err, PkiError::HalfCa(_)), "{err}");
    }

    #[test]
    fn the_server_chain_ends_with_the_ca() {
        let ca = ClusterCa::create(SystemTime::now()).unwrap();
        let (chain, key) = ca
            .server_identity(&["127.0.0.1".into(), "localhost".into()], SystemTime::now())
            .unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(chain.ends_with(ca.cert_pem()));
        assert!(key.contains("PRIVATE KEY"));
    }
}
