//! Task secrets (table `secrets`, keyed by cluster and name): created, overwritten, listed and
//! deleted by ControlService, and resolved for a task's assignment. Values are sealed with the
//! scheduler's key before they reach a transaction and opened only to be sent to the agent
//! that runs the task; a listing never opens one.

use std::collections::BTreeSet;
use std::time::SystemTime;

use berth_proto::v1 as pb;
use prost_types::Timestamp;
use redb::ReadableTable;

use super::codec::decode;
use super::records::SecretRecord;
use super::{SECRETS, Store, StoreError};
use crate::secrets::{validate_name, validate_value};

/// The secret names a definition uses: its containers' `secrets` and `repositoryCredentials`,
/// sorted, each once; not the AWS ARNs, which the agent fetches itself.
fn secret_names(def: &pb::TaskDefinition) -> BTreeSet<String> {
    def.containers
        .iter()
        .flat_map(|c| {
            c.secrets.iter().map(|s| s.value_from.clone()).chain(
                c.repository_credentials
                    .iter()
                    .map(|r| r.credentials_parameter.clone()),
            )
        })
        .filter(|name| !crate::taskdef::is_secret_arn(name))
        .collect()
}

fn record_key(cluster: &str, name: &str) -> String {
    format!("{cluster}/{name}")
}

impl Store {
    /// Stores `value` as the secret `name` of `cluster`, sealed. An existing secret is
    /// replaced only with `overwrite` (it keeps its creation time). Returns what is listed of
    /// it, and whether a value was replaced.
    pub fn create_secret(
        &self,
        cluster: &str,
        name: &str,
        value: &[u8],
        overwrite: bool,
        now: SystemTime,
    ) -> Result<(pb::SecretInfo, bool), StoreError> {
        validate_name(name).map_err(StoreError::InvalidSecret)?;
        validate_value(name, value).map_err(StoreError::InvalidSecret)?;
        self.ensure_cluster(cluster)?;
        let sealed = self.secret_key.seal(cluster, name, value);
        let at = Some(Timestamp::from(now));
        let (info, replaced) = self.write(|txn| {
            let mut table = txn.open_table(SECRETS)?;
            let existing = match table.get((cluster, name))? {
                Some(v) => Some(decode::<SecretRecord>(
                    "secrets",
                    &record_key(cluster, name),
                    v.value(),
                )?),
                None => None,
            };
            if existing.is_some() && !overwrite {
                return Err(StoreError::SecretExists {
                    cluster: cluster.to_owned(),
                    name: name.to_owned(),
                });
            }
            let info = pb::SecretInfo {
                cluster: cluster.to_owned(),
                name: name.to_owned(),
                created_at: existing.as_ref().and_then(|r| r.info.created_at).or(at),
                updated_at: at,
                size: value.len() as u64,
            };
            let record = SecretRecord {
                info: info.clone(),
                sealed,
            };
            table.insert(
                (cluster, name),
                prost::Message::encode_to_vec(&record).as_slice(),
            )?;
            Ok((info, existing.is_some()))
        })?;
        tracing::info!(
            cluster,
            secret = name,
            size = value.len(),
            replaced,
            "secret stored"
        );
        Ok((info, replaced))
    }

    /// The secrets of `cluster`, by name, without their values.
    pub fn list_secrets(&self, cluster: &str) -> Result<Vec<pb::SecretInfo>, StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let table = txn.open_table(SECRETS)?;
            let mut out = Vec::new();
            for item in table.range((cluster, "")..)? {
                let (k, v) = item?;
                let (c, name) = k.value();
                if c != cluster {
                    break;
                }
                let record: SecretRecord = decode("secrets", &record_key(c, name), v.value())?;
                out.push(record.info);
            }
            Ok(out)
        })
    }

    /// Deletes the secret `name` of `cluster`. Tasks running with it keep the value they got.
    pub fn delete_secret(&self, cluster: &str, name: &str) -> Result<(), StoreError> {
        self.ensure_cluster(cluster)?;
        let removed = self.write(|txn| {
            let mut table = txn.open_table(SECRETS)?;
            let removed = table.remove((cluster, name))?.is_some();
            Ok(removed)
        })?;
        if !removed {
            return Err(StoreError::SecretNotFound {
                cluster: cluster.to_owned(),
                name: name.to_owned(),
            });
        }
        tracing::info!(cluster, secret = name, "secret deleted");
        Ok(())
    }

    /// The values of the secrets `def` uses in `cluster`, for the task's agent; None when it
    /// uses none (empty when it names only AWS ARNs, which the agent fetches). A name without a secret, or whose value does not open with this key, is
    /// listed as missing (the agent fails the task naming it).
    pub fn task_secrets(
        &self,
        cluster: &str,
        def: &pb::TaskDefinition,
    ) -> Result<Option<pb::TaskSecrets>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SECRETS)?;
            self.resolve_secrets(&table, cluster, def)
        })
    }

    pub(super) fn resolve_secrets(
        &self,
        table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        cluster: &str,
        def: &pb::TaskDefinition,
    ) -> Result<Option<pb::TaskSecrets>, StoreError> {
        let uses_secrets = def
            .containers
            .iter()
            .any(|c| !c.secrets.is_empty() || c.repository_credentials.is_some());
        if !uses_secrets {
            return Ok(None);
        }
        // Only AWS ARNs: an empty answer still tells the agent the store has nothing for it.
        let names = secret_names(def);
        let mut secrets = pb::TaskSecrets::default();
        for name in names {
            let Some(v) = table.get((cluster, name.as_str()))? else {
                secrets.missing.push(name);
                continue;
            };
            let record: SecretRecord = decode("secrets", &record_key(cluster, &name), v.value())?;
            match self.secret_key.open(cluster, &name, &record.sealed) {
                Ok(value) => secrets.values.push(pb::SecretValue { name, value }),
                Err(error) => {
                    tracing::error!(cluster, secret = %name, %error, "a stored secret cannot be opened; the task that needs it fails");
                    secrets.missing.push(name);
                }
            }
        }
        Ok(Some(secrets))
    }
}
