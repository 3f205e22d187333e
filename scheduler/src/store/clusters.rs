//! Clusters: created on demand (`default`) or by name, described with derived counts, deleted
//! only when nothing runs in them (deregistered instances do not count, and go with it).

use berth_proto::v1 as pb;

use super::codec::{all_recs, get_rec, load_tasks, put_rec};
use super::deregister::{forget_inactive, is_inactive};
use super::records::InstanceRecord;
use super::views::{cluster_view, is_active};
use super::{CLUSTERS, DEFAULT_CLUSTER, INSTANCES, Store, StoreError, TASKS, now};

pub(super) fn validate_cluster_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidClusterName {
            name: name.to_owned(),
        })
    }
}

impl Store {
    /// Creates a cluster; an existing one is returned as it is.
    pub fn create_cluster(&self, name: &str) -> Result<pb::Cluster, StoreError> {
        validate_cluster_name(name)?;
        let rec = self.write(|txn| {
            let mut clusters = txn.open_table(CLUSTERS)?;
            if let Some(rec) = get_rec(&clusters, "clusters", name)? {
                return Ok(rec);
            }
            let rec = pb::Cluster {
                name: name.to_owned(),
                created_at: Some(now()),
                ..Default::default()
            };
            put_rec(&mut clusters, name, &rec)?;
            tracing::info!(cluster = name, "cluster created");
            Ok(rec)
        })?;
        self.read(|txn| {
            let instances = all_recs(&txn.open_table(INSTANCES)?, "instances")?;
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            Ok(cluster_view(&rec, &instances, &tasks, "ACTIVE"))
        })
    }

    /// Fails with `ClusterNotFound` unless the cluster exists; `default` is created on first use.
    pub fn ensure_cluster(&self, name: &str) -> Result<(), StoreError> {
        validate_cluster_name(name)?;
        let exists = self.read(|txn| Ok(txn.open_table(CLUSTERS)?.get(name)?.is_some()))?;
        if exists {
            Ok(())
        } else if name == DEFAULT_CLUSTER {
            self.create_cluster(name).map(|_| ())
        } else {
            Err(StoreError::ClusterNotFound {
                name: name.to_owned(),
            })
        }
    }

    /// The named clusters (every cluster when `names` is empty) and the names not found.
    pub fn describe_clusters(
        &self,
        names: &[String],
    ) -> Result<(Vec<pb::Cluster>, Vec<String>), StoreError> {
        self.read(|txn| {
            let clusters = txn.open_table(CLUSTERS)?;
            let instances: Vec<InstanceRecord> =
                all_recs(&txn.open_table(INSTANCES)?, "instances")?;
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            let recs: Vec<Option<pb::Cluster>> = if names.is_empty() {
                all_recs(&clusters, "clusters")?
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| get_rec(&clusters, "clusters", n))
                    .collect::<Result<_, _>>()?
            };
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for (i, rec) in recs.into_iter().enumerate() {
                match rec {
                    Some(rec) => found.push(cluster_view(&rec, &instances, &tasks, "ACTIVE")),
                    None => missing.extend(names.get(i).cloned()),
                }
            }
            Ok((found, missing))
        })
    }

    /// Every cluster name, sorted.
    pub fn list_clusters(&self) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let recs: Vec<pb::Cluster> = all_recs(&txn.open_table(CLUSTERS)?, "clusters")?;
            Ok(recs.into_iter().map(|c| c.name).collect())
        })
    }

    /// Deletes a cluster with no instances but deregistered ones and no task still holding
    /// resources; its stopped tasks and deregistered instances go with it. Returns the cluster
    /// as it was, INACTIVE.
    pub fn delete_cluster(&self, name: &str) -> Result<pb::Cluster, StoreError> {
        validate_cluster_name(name)?;
        self.write(|txn| {
            let mut clusters = txn.open_table(CLUSTERS)?;
            let mut tasks_t = txn.open_table(TASKS)?;
            let Some(rec) = get_rec::<pb::Cluster>(&clusters, "clusters", name)? else {
                return Err(StoreError::ClusterNotFound {
                    name: name.to_owned(),
                });
            };
            let instances: Vec<InstanceRecord> =
                all_recs(&txn.open_table(INSTANCES)?, "instances")?;
            let tasks = load_tasks(&tasks_t)?;
            let n_instances = instances
                .iter()
                .filter(|i| i.instance.cluster == name && !is_inactive(i))
                .count();
            let n_active = tasks
                .iter()
                .filter(|t| t.cluster == name && is_active(t))
                .count();
            if n_instances > 0 || n_active > 0 {
                return Err(StoreError::ClusterInUse {
                    name: name.to_owned(),
                    instances: n_instances,
                    active_tasks: n_active,
                });
            }
            let view = cluster_view(&rec, &instances, &tasks, "INACTIVE");
            for t in tasks.iter().filter(|t| t.cluster == name) {
                tasks_t.remove(t.task_id.as_str())?;
            }
            clusters.remove(name)?;
            drop(tasks_t);
            drop(clusters);
            let deregistered = forget_inactive(txn, name)?;
            tracing::info!(cluster = name, deregistered, "cluster deleted");
            Ok(view)
        })
    }
}
