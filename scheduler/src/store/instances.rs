//! Container instances: registered (idempotent by ID, then by identity), described with their
//! remaining resources, and their last heartbeat.

use berth_proto::v1 as pb;
use redb::ReadableTable;

use super::codec::{all_recs, get_rec, load_tasks, put_rec};
use super::deregister::is_inactive;
use super::records::InstanceRecord;
use super::views::{active_definitions, instance_view};
use super::{CLUSTERS, INSTANCES, Store, StoreError, TASK_DEFS, TASKS, new_id, now};

impl Store {
    /// Registers a host, or re-registers a known one (matched by ID, then by identity, within
    /// the cluster): resources, attributes and versions are updated, the status stays.
    pub fn register_instance(&self, req: &pb::RegisterRequest) -> Result<String, StoreError> {
        self.register(req, None)
    }

    /// Registers the host whose certificate names `instance_id` under exactly that ID: the
    /// record is found (or created) by it alone, never by the host identity the request
    /// claims, so one agent cannot take over another's record.
    pub fn register_certified_instance(
        &self,
        req: &pb::RegisterRequest,
        instance_id: &str,
    ) -> Result<String, StoreError> {
        self.register(req, Some(instance_id))
    }

    fn register(
        &self,
        req: &pb::RegisterRequest,
        certified: Option<&str>,
    ) -> Result<String, StoreError> {
        let cluster = req.cluster.as_str();
        self.ensure_cluster(cluster)?;
        if certified.is_none()
            && req.container_instance_id.is_empty()
            && req.instance_identity.is_empty()
        {
            // Each such call would otherwise make a new record.
            return Err(StoreError::NoIdentity);
        }
        self.write(|txn| {
            if txn.open_table(CLUSTERS)?.get(cluster)?.is_none() {
                return Err(StoreError::ClusterNotFound {
                    name: cluster.to_owned(),
                });
            }
            let mut instances_t = txn.open_table(INSTANCES)?;
            let all: Vec<InstanceRecord> = all_recs(&instances_t, "instances")?;
            let known = if let Some(id) = certified {
                all.iter().find(|i| {
                    i.instance.container_instance_id == id && i.instance.cluster == cluster
                })
            } else {
                all.iter()
                    .find(|i| {
                        !req.container_instance_id.is_empty()
                            && i.instance.container_instance_id == req.container_instance_id
                            && i.instance.cluster == cluster
                    })
                    .or_else(|| {
                        all.iter().find(|i| {
                            !req.instance_identity.is_empty()
                                && i.instance.instance_identity == req.instance_identity
                                && i.instance.cluster == cluster
                        })
                    })
            };
            if let Some(rec) = known.filter(|r| is_inactive(r)) {
                return Err(StoreError::InstanceDeregistered {
                    cluster: cluster.to_owned(),
                    id: rec.instance.container_instance_id.clone(),
                });
            }
            let fresh = known.is_none();
            let mut rec = known.cloned().unwrap_or_else(|| InstanceRecord {
                instance: pb::ContainerInstance {
                    container_instance_id: certified.map_or_else(new_id, str::to_owned),
                    cluster: cluster.to_owned(),
                    status: "ACTIVE".to_owned(),
                    registered_at: Some(now()),
                    ..Default::default()
                },
                capabilities: Vec::new(),
            });
            let inst = &mut rec.instance;
            inst.registered_resources = Some(req.resources.clone().unwrap_or_default());
            inst.attributes.clone_from(&req.attributes);
            inst.version_info = Some(req.version_info.clone().unwrap_or_default());
            if !req.instance_identity.is_empty() {
                inst.instance_identity.clone_from(&req.instance_identity);
            }
            rec.capabilities.clone_from(&req.capabilities);
            let id = rec.instance.container_instance_id.clone();
            put_rec(&mut instances_t, &id, &rec)?;
            let resources = rec.instance.registered_resources.unwrap_or_default();
            tracing::info!(
                instance.id = %id,
                cluster,
                identity = %rec.instance.instance_identity,
                cpu = resources.cpu,
                memory_mib = resources.memory_mib,
                new = fresh,
                "container instance registered"
            );
            Ok(id)
        })
    }

    /// The cluster's instances that are not deregistered, with remaining resources and counts
    /// (`agent_connected` false: the caller knows the sessions). Describe still shows an
    /// INACTIVE one, as ECS does.
    pub fn list_instances(&self, cluster: &str) -> Result<Vec<pb::ContainerInstance>, StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            let defs = active_definitions(&txn.open_table(TASK_DEFS)?, &tasks)?;
            let recs: Vec<InstanceRecord> = all_recs(&txn.open_table(INSTANCES)?, "instances")?;
            Ok(recs
                .iter()
                .filter(|i| i.instance.cluster == cluster && !is_inactive(i))
                .map(|i| instance_view(i, &tasks, &defs))
                .collect())
        })
    }

    /// The instances asked for, and the IDs not found in the cluster.
    pub fn describe_instances(
        &self,
        cluster: &str,
        ids: &[String],
    ) -> Result<(Vec<pb::ContainerInstance>, Vec<String>), StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            let defs = active_definitions(&txn.open_table(TASK_DEFS)?, &tasks)?;
            let instances_t = txn.open_table(INSTANCES)?;
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match get_rec::<InstanceRecord>(&instances_t, "instances", id)? {
                    Some(rec) if rec.instance.cluster == cluster => {
                        found.push(instance_view(&rec, &tasks, &defs));
                    }
                    _ => missing.push(id.clone()),
                }
            }
            Ok((found, missing))
        })
    }

    /// Records the time of an agent heartbeat.
    pub fn record_heartbeat(&self, instance_id: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(INSTANCES)?;
            if let Some(mut rec) = get_rec::<InstanceRecord>(&t, "instances", instance_id)? {
                rec.instance.last_heartbeat_at = Some(now());
                put_rec(&mut t, instance_id, &rec)?;
            }
            Ok(())
        })
    }
}
