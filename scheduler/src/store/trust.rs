//! Credentials: join tokens (spent by `JoinCluster`, which also records the instance identity
//! it certifies), API tokens, and the certified instance identities, revoked on
//! deregistration. Only hashes of secrets are stored (`trust::token`).

use std::time::{Duration, SystemTime};

use berth_proto::v1 as pb;
use prost_types::Timestamp;
use redb::ReadableTable;

use super::codec::{all_recs, get_rec, put_rec};
use super::error::TokenRefusal;
use super::records::{AgentCertRecord, ApiTokenRecord, JoinTokenRecord};
use super::{AGENT_CERTS, API_TOKENS, CLUSTERS, JOIN_TOKENS, Store, StoreError};
use crate::trust::token::{self, API_SECRET_LEN, JOIN_SECRET_LEN, NewToken};
use crate::trust::{Caller, Role};

/// A join token's lifetime when none is given (kubeadm's).
pub const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn expired(expires_at: Option<&Timestamp>, now: SystemTime) -> bool {
    expires_at.is_some_and(|e| ts(now).seconds >= e.seconds)
}

impl Store {
    /// A new join token for `cluster`: the token, shown once, and what is listed of it. The
    /// cluster may be created later; a join is refused while it does not exist.
    pub fn create_join_token(
        &self,
        cluster: &str,
        ttl: Option<Duration>,
        uses: u32,
        now: SystemTime,
    ) -> Result<(String, pb::JoinToken), StoreError> {
        super::clusters::validate_cluster_name(cluster)?;
        let NewToken {
            id,
            token,
            secret_hash,
        } = token::generate(JOIN_SECRET_LEN);
        let info = pb::JoinToken {
            id: id.clone(),
            cluster: cluster.to_owned(),
            expires_at: Some(ts(now + ttl.unwrap_or(DEFAULT_JOIN_TOKEN_TTL))),
            uses_left: uses,
            unlimited: uses == 0,
            created_at: Some(ts(now)),
        };
        let rec = JoinTokenRecord {
            info: info.clone(),
            secret_hash,
        };
        self.write(|txn| put_rec(&mut txn.open_table(JOIN_TOKENS)?, &id, &rec))?;
        tracing::info!(token.id = %id, cluster, uses, "join token created");
        Ok((token, info))
    }

    /// Every join token, oldest first.
    pub fn list_join_tokens(&self) -> Result<Vec<pb::JoinToken>, StoreError> {
        let mut recs: Vec<JoinTokenRecord> =
            self.read(|txn| all_recs(&txn.open_table(JOIN_TOKENS)?, "join_tokens"))?;
        recs.sort_by_key(|r| r.info.created_at.map(|t| (t.seconds, t.nanos)));
        Ok(recs.into_iter().map(|r| r.info).collect())
    }

    /// Deletes a join token; agents that joined with it keep their certificates.
    pub fn delete_join_token(&self, id: &str) -> Result<(), StoreError> {
        self.write(|txn| match txn.open_table(JOIN_TOKENS)?.remove(id)? {
            Some(_) => Ok(()),
            None => Err(StoreError::TokenNotFound {
                kind: "join",
                id: id.to_owned(),
            }),
        })
    }

    /// Spends one use of `token` to join `cluster` as the new `instance_id`, recorded as
    /// certified in the same transaction that counts the use. Nothing is written when it is
    /// refused.
    pub fn join(
        &self,
        token: &str,
        cluster: &str,
        instance_id: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let (id, secret_hash) =
            token::parse(token, JOIN_SECRET_LEN).map_err(|shape| StoreError::TokenRefused {
                kind: "join",
                id: String::new(),
                reason: TokenRefusal::Malformed(shape),
            })?;
        let refused = |reason| StoreError::TokenRefused {
            kind: "join",
            id: id.clone(),
            reason,
        };
        self.write(|txn| {
            let mut tokens = txn.open_table(JOIN_TOKENS)?;
            let mut rec: JoinTokenRecord = get_rec(&tokens, "join_tokens", &id)?
                .filter(|r: &JoinTokenRecord| r.secret_hash == secret_hash)
                .ok_or_else(|| refused(TokenRefusal::Unknown))?;
            if expired(rec.info.expires_at.as_ref(), now) {
                return Err(refused(TokenRefusal::Expired(rec.info.expires_at)));
            }
            if !rec.info.unlimited && rec.info.uses_left == 0 {
                return Err(refused(TokenRefusal::UsedUp));
            }
            if rec.info.cluster != cluster {
                return Err(refused(TokenRefusal::OtherCluster {
                    token: rec.info.cluster.clone(),
                    asked: cluster.to_owned(),
                }));
            }
            if txn.open_table(CLUSTERS)?.get(cluster)?.is_none() {
                return Err(StoreError::ClusterNotFound {
                    name: cluster.to_owned(),
                });
            }
            if !rec.info.unlimited {
                rec.info.uses_left -= 1;
            }
            put_rec(&mut tokens, &id, &rec)?;
            let mut certs = txn.open_table(AGENT_CERTS)?;
            if certs.get(instance_id)?.is_some() {
                return Err(StoreError::InstanceExists {
                    id: instance_id.to_owned(),
                });
            }
            put_rec(
                &mut certs,
                instance_id,
                &AgentCertRecord {
                    cluster: cluster.to_owned(),
                    revoked: false,
                    join_token_id: id.clone(),
                },
            )?;
            tracing::info!(token.id = %id, cluster, instance.id = %instance_id, "agent joined");
            Ok(())
        })
    }

    /// Whether the certified identity `instance_id` of `cluster` is honoured: known to the CA's
    /// records and not revoked.
    pub fn agent_certified(&self, cluster: &str, instance_id: &str) -> Result<bool, StoreError> {
        let rec: Option<AgentCertRecord> =
            self.read(|txn| get_rec(&txn.open_table(AGENT_CERTS)?, "agent_certs", instance_id))?;
        Ok(rec.is_some_and(|r| !r.revoked && r.cluster == cluster))
    }

    /// Revokes the certified identity `instance_id` (a no-op when it has none).
    pub fn revoke_agent(&self, instance_id: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(AGENT_CERTS)?;
            if let Some(mut rec) = get_rec::<AgentCertRecord>(&t, "agent_certs", instance_id)? {
                rec.revoked = true;
                put_rec(&mut t, instance_id, &rec)?;
            }
            Ok(())
        })
    }

    /// A new API token with `role`, scoped to `cluster` when given (which must exist).
    pub fn create_api_token(
        &self,
        role: Role,
        cluster: Option<&str>,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<(String, pb::ApiToken), StoreError> {
        if let Some(cluster) = cluster {
            self.ensure_cluster(cluster)?;
        }
        let NewToken {
            id,
            token,
            secret_hash,
        } = token::generate(API_SECRET_LEN);
        let info = pb::ApiToken {
            id: id.clone(),
            role: role.as_str().to_owned(),
            cluster: cluster.unwrap_or_default().to_owned(),
            created_at: Some(ts(now)),
            expires_at: ttl.map(|ttl| ts(now + ttl)),
        };
        let rec = ApiTokenRecord {
            info: info.clone(),
            secret_hash,
        };
        self.write(|txn| put_rec(&mut txn.open_table(API_TOKENS)?, &id, &rec))?;
        tracing::info!(token.id = %id, role = role.as_str(), cluster = cluster.unwrap_or("*"), "API token created");
        Ok((token, info))
    }

    /// Every API token, oldest first.
    pub fn list_api_tokens(&self) -> Result<Vec<pb::ApiToken>, StoreError> {
        let mut recs: Vec<ApiTokenRecord> =
            self.read(|txn| all_recs(&txn.open_table(API_TOKENS)?, "api_tokens"))?;
        recs.sort_by_key(|r| r.info.created_at.map(|t| (t.seconds, t.nanos)));
        Ok(recs.into_iter().map(|r| r.info).collect())
    }

    pub fn delete_api_token(&self, id: &str) -> Result<(), StoreError> {
        self.write(|txn| match txn.open_table(API_TOKENS)?.remove(id)? {
            Some(_) => Ok(()),
            None => Err(StoreError::TokenNotFound {
                kind: "API",
                id: id.to_owned(),
            }),
        })
    }

    /// The caller a bearer token names, or why it is refused.
    pub fn authenticate(&self, bearer: &str, now: SystemTime) -> Result<Caller, StoreError> {
        let (id, secret_hash) =
            token::parse(bearer, API_SECRET_LEN).map_err(|shape| StoreError::TokenRefused {
                kind: "API",
                id: String::new(),
                reason: TokenRefusal::Malformed(shape),
            })?;
        let refused = |reason| StoreError::TokenRefused {
            kind: "API",
            id: id.clone(),
            reason,
        };
        let rec: ApiTokenRecord = self
            .read(|txn| get_rec(&txn.open_table(API_TOKENS)?, "api_tokens", &id))?
            .filter(|r: &ApiTokenRecord| r.secret_hash == secret_hash)
            .ok_or_else(|| refused(TokenRefusal::Unknown))?;
        if expired(rec.info.expires_at.as_ref(), now) {
            return Err(refused(TokenRefusal::Expired(rec.info.expires_at)));
        }
        let role = Role::parse(&rec.info.role).map_err(|_| StoreError::Corrupt {
            table: "api_tokens",
            key: id.clone(),
            source: super::RecordError::Missing("known role"),
        })?;
        Ok(Caller {
            name: format!("token {id}"),
            role,
            cluster: (!rec.info.cluster.is_empty()).then(|| rec.info.cluster.clone()),
        })
    }

    /// Whether any API token exists (the first start creates the admin's).
    pub fn has_api_tokens(&self) -> Result<bool, StoreError> {
        self.read(|txn| Ok(txn.open_table(API_TOKENS)?.iter()?.next().is_some()))
    }
}
