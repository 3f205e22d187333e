//! Instance lifecycle (ECS's UpdateContainerInstancesState): an instance is ACTIVE (takes
//! tasks) or DRAINING (takes no new task; its tasks keep running until they are stopped).

use berth_proto::v1 as pb;

use super::codec::{all_recs, get_rec, load_tasks, put_rec};
use super::placement::{ACTIVE, DRAINING};
use super::records::InstanceRecord;
use super::views::{active_definitions, instance_view};
use super::{INSTANCES, Store, StoreError, TASK_DEFS, TASKS};

impl Store {
    /// Sets the status of the cluster's instances `ids` to `status` (ACTIVE or DRAINING), all in
    /// one transaction; returns them as they are now, and the IDs not found in the cluster.
    /// Setting the status an instance already has changes nothing.
    pub fn update_instances_state(
        &self,
        cluster: &str,
        ids: &[String],
        status: &str,
    ) -> Result<(Vec<pb::ContainerInstance>, Vec<String>), StoreError> {
        if status != ACTIVE && status != DRAINING {
            return Err(StoreError::InvalidInstanceStatus {
                status: status.to_owned(),
            });
        }
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            let mut instances_t = txn.open_table(INSTANCES)?;
            let mut changed = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match get_rec::<InstanceRecord>(&instances_t, "instances", id)? {
                    Some(mut rec) if rec.instance.cluster == cluster => {
                        if rec.instance.status != status {
                            tracing::info!(
                                instance.id = %id,
                                cluster,
                                from = %rec.instance.status,
                                to = status,
                                "container instance status changed"
                            );
                            rec.instance.status = status.to_owned();
                            put_rec(&mut instances_t, id, &rec)?;
                        }
                        changed.push(id.clone());
                    }
                    _ => missing.push(id.clone()),
                }
            }
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            let defs = active_definitions(&txn.open_table(TASK_DEFS)?, &tasks)?;
            let recs: Vec<InstanceRecord> = all_recs(&instances_t, "instances")?;
            let updated = recs
                .iter()
                .filter(|r| changed.contains(&r.instance.container_instance_id))
                .map(|r| instance_view(r, &tasks, &defs))
                .collect();
            Ok((updated, missing))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::{DEFAULT_CLUSTER, RunTasks};
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        store
            .register_task_definition(pb::TaskDefinition {
                family: "web".into(),
                containers: vec![pb::ContainerDefinition {
                    name: "app".into(),
                    image: "nginx".into(),
                    cpu: 256,
                    memory_mib: 256,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .expect("register definition");
        (dir, store)
    }

    fn register(store: &Store, identity: &str) -> String {
        store
            .register_instance(&pb::RegisterRequest {
                cluster: DEFAULT_CLUSTER.into(),
                instance_identity: identity.into(),
                resources: Some(pb::Resources {
                    cpu: 4096,
                    memory_mib: 8192,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .expect("register instance")
    }

    fn run(
        store: &Store,
        connected: &[&str],
        pinned: Option<&str>,
    ) -> Result<Vec<pb::Task>, StoreError> {
        let connected: HashSet<String> = connected.iter().map(|s| s.to_string()).collect();
        store.run_tasks(
            RunTasks {
                cluster: DEFAULT_CLUSTER,
                task_definition: "web",
                count: 1,
                started_by: "",
                group: "",
                network_attachment: None,
                container_instance: pinned,
                storage_degraded: None,
                placement_constraints: &[],
                placement_strategy: &[],
            },
            &connected,
        )
    }

    fn set(store: &Store, ids: &[&str], status: &str) -> (Vec<pb::ContainerInstance>, Vec<String>) {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        store
            .update_instances_state(DEFAULT_CLUSTER, &ids, status)
            .expect("update state")
    }

    #[test]
    fn a_draining_instance_takes_no_new_task_and_keeps_its_tasks() {
        let (_dir, store) = store();
        let a = register(&store, "a");
        let b = register(&store, "b");
        let first = run(&store, &[&a], None).expect("placed on a");
        assert_eq!(first[0].container_instance_id, a);

        let (updated, missing) = set(&store, &[&a, "nosuch"], DRAINING);
        assert_eq!(missing, vec!["nosuch".to_owned()]);
        assert_eq!(updated.len(), 1);
        assert_eq!(updated[0].status, DRAINING);
        // Its task is still there, still counted on it.
        assert_eq!(
            updated[0].pending_tasks_count + updated[0].running_tasks_count,
            1
        );
        let listed = store.list_instances(DEFAULT_CLUSTER).expect("list");
        let shown = listed
            .iter()
            .find(|i| i.container_instance_id == a)
            .expect("a listed");
        assert_eq!(shown.status, DRAINING);
        let (tasks, _) = store
            .describe_tasks(DEFAULT_CLUSTER, std::slice::from_ref(&first[0].task_id))
            .expect("describe");
        assert_eq!(tasks[0].desired_status, pb::DesiredStatus::Running as i32);

        // New tasks go to the ACTIVE instance only.
        let second = run(&store, &[&a, &b], None).expect("placed on b");
        assert_eq!(second[0].container_instance_id, b);

        // Nothing ACTIVE and connected: the error names the DRAINING instance.
        let error = run(&store, &[&a], None).expect_err("a is draining");
        assert!(
            matches!(&error, StoreError::NoConnectedInstance { draining, .. } if draining == &vec![a.clone()]),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("container instance {a} is DRAINING")),
            "{message}"
        );
        // Pinned to it: refused with the reason.
        let pinned = run(&store, &[&a, &b], Some(&a)).expect_err("pinned to a draining instance");
        assert!(pinned.to_string().contains("DRAINING"), "{pinned}");

        // ACTIVE again: it takes tasks again.
        let (updated, _) = set(&store, &[&a], ACTIVE);
        assert_eq!(updated[0].status, ACTIVE);
        run(&store, &[&a], None).expect("placed on a again");
    }

    #[test]
    fn only_active_and_draining_are_statuses() {
        let (_dir, store) = store();
        let a = register(&store, "a");
        let error = store
            .update_instances_state(DEFAULT_CLUSTER, &[a], "INACTIVE")
            .expect_err("not a status");
        assert_eq!(
            error.to_string(),
            "invalid container instance status \"INACTIVE\": use ACTIVE or DRAINING"
        );
    }
}
