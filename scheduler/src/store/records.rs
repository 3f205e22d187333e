//! The two stored records that no proto message covers, as hand-written prost messages.
//!
//! Everything else is stored as the proto message itself (`berth_proto::v1`), encoded with
//! `prost::Message`. Tags here are the stored schema: never reuse or renumber one.

use berth_proto::v1 as pb;

/// Per-instance session bookkeeping (table `sessions`, keyed by instance ID).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionRecord {
    /// The sequence number the next scheduler message to this instance gets (from 1).
    #[prost(uint64, tag = "1")]
    pub(crate) next_seq: u64,
    /// The highest agent state-change sequence number stored.
    #[prost(uint64, tag = "2")]
    pub(crate) last_received_seq: u64,
}

/// A container instance as registered (table `instances`, keyed by instance ID).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct InstanceRecord {
    /// The instance without its derived fields (remaining resources, task counts,
    /// `agent_connected`), which are computed when it is read.
    #[prost(message, required, tag = "1")]
    pub(crate) instance: pb::ContainerInstance,
    /// The capabilities the agent registered with, which `ContainerInstance` does not carry.
    #[prost(string, repeated, tag = "2")]
    pub(crate) capabilities: Vec<String>,
}

/// A join token (table `join_tokens`, keyed by token ID): what is listed, and the hash of its
/// secret.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct JoinTokenRecord {
    #[prost(message, required, tag = "1")]
    pub(crate) info: pb::JoinToken,
    /// SHA-256 of the secret, hex.
    #[prost(string, tag = "2")]
    pub(crate) secret_hash: String,
}

/// An API token (table `api_tokens`, keyed by token ID).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ApiTokenRecord {
    #[prost(message, required, tag = "1")]
    pub(crate) info: pb::ApiToken,
    /// SHA-256 of the secret, hex.
    #[prost(string, tag = "2")]
    pub(crate) secret_hash: String,
}

/// An instance identity the CA certified (table `agent_certs`, keyed by instance ID): its
/// certificates are honoured while it is not revoked.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AgentCertRecord {
    #[prost(string, tag = "1")]
    pub(crate) cluster: String,
    /// Set when the instance is deregistered; never cleared.
    #[prost(bool, tag = "2")]
    pub(crate) revoked: bool,
    /// The join token it joined with.
    #[prost(string, tag = "3")]
    pub(crate) join_token_id: String,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn instance_record_round_trips() {
        let rec = InstanceRecord {
            instance: pb::ContainerInstance {
                container_instance_id: "i-1".into(),
                cluster: "default".into(),
                status: "ACTIVE".into(),
                registered_resources: Some(pb::Resources {
                    cpu: 1024,
                    memory_mib: 2048,
                    ports: vec![22],
                    ..Default::default()
                }),
                attributes: [("zone".to_owned(), "a".to_owned())].into(),
                registered_at: Some(prost_types::Timestamp {
                    seconds: 5,
                    nanos: 6,
                }),
                ..Default::default()
            },
            capabilities: vec!["awsvpc".into()],
        };
        let back = InstanceRecord::decode(rec.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn session_record_round_trips() {
        let rec = SessionRecord {
            next_seq: 7,
            last_received_seq: u64::MAX,
        };
        let back = SessionRecord::decode(rec.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, rec);
    }
}

/// A task secret (table `secrets`, keyed by cluster and name): what is listed, and the value
/// sealed with the scheduler's key (`crate::secrets`), never the value itself.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SecretRecord {
    #[prost(message, required, tag = "1")]
    pub(crate) info: pb::SecretInfo,
    /// Nonce, ciphertext and tag.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) sealed: Vec<u8>,
}
