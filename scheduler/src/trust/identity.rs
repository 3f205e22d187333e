//! Who a peer is, read back from its certificate: an agent's certificate names its cluster and
//! instance in one URI SAN, `spiffe://berth/cluster/<cluster>/instance/<instance ID>`, which the
//! scheduler alone writes (it signs only requests it checked, with names of its choosing).
//! A client certificate names its holder, role and optional cluster scope in one URI SAN,
//! `spiffe://berth/client/<name>/role/<role>[/cluster/<cluster>]`, again written only by the
//! scheduler (CreateClientCertificate, admins only), so a certificate of an agent can never be
//! taken for a client's, nor the other way round.
//! Also the CA pin, `sha256:<hex>` of a certificate's SubjectPublicKeyInfo, as kubeadm pins it.

use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;

use super::Role;

const URI_PREFIX: &str = "spiffe://berth/cluster/";
const CLIENT_PREFIX: &str = "spiffe://berth/client/";

/// Whether `s` may be one segment of a Berth URI SAN (a name, a cluster).
fn segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// A client (berthctl), as its certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Who holds it, for logs: a person or a system.
    pub name: String,
    pub role: Role,
    /// The one cluster it may touch; every cluster when None.
    pub cluster: Option<String>,
}

impl ClientIdentity {
    /// Checks the parts; the error says which is bad and what is allowed.
    pub fn new(name: &str, role: Role, cluster: Option<&str>) -> Result<Self, String> {
        if !segment(name) {
            return Err(format!(
                "invalid client name {name:?}: use 1 to 128 letters, digits, '-', '_', '.' and '@'"
            ));
        }
        if let Some(c) = cluster.filter(|c| !segment(c)) {
            return Err(format!("invalid cluster name {c:?}"));
        }
        Ok(Self {
            name: name.to_owned(),
            role,
            cluster: cluster.map(str::to_owned),
        })
    }

    /// The URI SAN that names this client.
    pub fn uri(&self) -> String {
        let mut uri = format!("{CLIENT_PREFIX}{}/role/{}", self.name, self.role);
        if let Some(c) = &self.cluster {
            uri.push_str("/cluster/");
            uri.push_str(c);
        }
        uri
    }

    fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(CLIENT_PREFIX)?;
        let (name, rest) = rest.split_once("/role/")?;
        let (role, cluster) = match rest.split_once("/cluster/") {
            Some((role, cluster)) => (role, Some(cluster)),
            None => (rest, None),
        };
        Self::new(name, Role::parse(role).ok()?, cluster).ok()
    }
}

impl std::fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client certificate {}", self.name)
    }
}

/// Who a certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    Agent(AgentIdentity),
    Client(ClientIdentity),
}

impl PeerIdentity {
    /// Who a certificate (DER) names; None for one that names neither an agent nor a client.
    pub fn from_der(der: &[u8]) -> Result<Option<Self>, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        Ok(san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => AgentIdentity::from_uri(uri)
                .map(PeerIdentity::Agent)
                .or_else(|| ClientIdentity::from_uri(uri).map(PeerIdentity::Client)),
            _ => None,
        }))
    }
}

/// An agent, as its certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub cluster: String,
    pub instance_id: String,
}

impl AgentIdentity {
    /// The URI SAN that names this agent.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}/instance/{}", self.cluster, self.instance_id)
    }

    fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let (cluster, instance_id) = rest.split_once("/instance/")?;
        let valid = |s: &str| !s.is_empty() && !s.contains('/');
        (valid(cluster) && valid(instance_id)).then(|| Self {
            cluster: cluster.to_owned(),
            instance_id: instance_id.to_owned(),
        })
    }

    /// The agent a certificate (DER) names; None for a certificate that names no agent.
    pub fn from_der(der: &[u8]) -> Result<Option<Self>, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        Ok(san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Self::from_uri(uri),
            _ => None,
        }))
    }
}

impl std::fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "instance {} of cluster {}",
            self.instance_id, self.cluster
        )
    }
}

/// A certificate's (DER) serial number as the scheduler records and lists it: lowercase hex of
/// its bytes, without separators.
pub fn serial(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(hex::encode(cert.raw_serial()))
}

/// [`serial`] of a PEM certificate.
pub fn serial_of_pem(pem: &str) -> Result<String, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    serial(&block.contents)
}

/// `sha256:<hex>` of the SubjectPublicKeyInfo of a certificate (DER).
pub fn spki_pin(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(format!("sha256:{}", hex::encode(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_uris_round_trip_and_never_parse_as_agents() {
        for cluster in [None, Some("prod")] {
            let id = ClientIdentity::new("alice@ops", Role::Admin, cluster).unwrap();
            assert_eq!(ClientIdentity::from_uri(&id.uri()), Some(id.clone()));
            assert_eq!(AgentIdentity::from_uri(&id.uri()), None);
        }
        let agent = AgentIdentity {
            cluster: "c".into(),
            instance_id: "i".into(),
        };
        assert_eq!(ClientIdentity::from_uri(&agent.uri()), None);
        for bad in [
            "spiffe://berth/client/a/role/root",
            "spiffe://berth/client//role/admin",
            "spiffe://berth/client/a/b/role/admin",
            "spiffe://berth/client/a/role/admin/cluster/",
            "spiffe://berth/client/a/role/admin/cluster/x/y",
        ] {
            assert_eq!(ClientIdentity::from_uri(bad), None, "{bad}");
        }
        assert!(ClientIdentity::new("a b", Role::Admin, None).is_err());
    }

    #[test]
    fn uris_round_trip_and_nothing_else_parses() {
        let id = AgentIdentity {
            cluster: "c-1".into(),
            instance_id: "0b5e".into(),
        };
        assert_eq!(AgentIdentity::from_uri(&id.uri()), Some(id));
        for bad in [
            "spiffe://berth/cluster//instance/x",
            "spiffe://berth/cluster/c/instance/",
            "spiffe://other/cluster/c/instance/x",
            "spiffe://berth/cluster/c/instance/x/y",
            "https://berth/cluster/c/instance/x",
        ] {
            assert_eq!(AgentIdentity::from_uri(bad), None, "{bad}");
        }
    }
}
