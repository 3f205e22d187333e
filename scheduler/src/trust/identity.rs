//! Who a peer is, read back from its certificate: an agent's certificate names its cluster and
//! instance in one URI SAN, `spiffe://berth/cluster/<cluster>/instance/<instance ID>`, which the
//! scheduler alone writes (it signs only requests it checked, with names of its choosing).
//! Also the CA pin, `sha256:<hex>` of a certificate's SubjectPublicKeyInfo, as kubeadm pins it.

use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;

const URI_PREFIX: &str = "spiffe://berth/cluster/";

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
