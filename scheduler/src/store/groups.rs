//! Task groups in stored records: a task carries its group (ECS's `service:NAME` or
//! `family:FAMILY`) from its creation; records written before tasks carried one get it filled
//! in once, when the store opens.

use berth_proto::v1 as pb;
use redb::WriteTransaction;

use super::codec::{all_recs, load_tasks, put_task};
use super::placement::{service_group, task_group};
use super::services::SERVICES;
use super::{StoreError, TASKS};

/// Gives each stored task without a group its group: `service:NAME` for a task a service
/// started (the service found by the ID in its `startedBy`), else `family:FAMILY` of its
/// definition. How many it filled in.
pub(super) fn fill_task_groups(txn: &WriteTransaction) -> Result<usize, StoreError> {
    let mut tasks_t = txn.open_table(TASKS)?;
    let missing: Vec<pb::Task> = load_tasks(&tasks_t)?
        .into_iter()
        .filter(|t| t.group.is_empty())
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let services: Vec<pb::Service> = all_recs(&txn.open_table(SERVICES)?, "services")?;
    for mut task in missing.iter().cloned() {
        let service = task.started_by.strip_prefix("ecs-svc/").and_then(|id| {
            services
                .iter()
                .find(|s| s.service_id == id && s.cluster == task.cluster)
        });
        task.group = match service {
            Some(service) => service_group(&service.service_name),
            None => task_group(&task),
        };
        put_task(&mut tasks_t, &task)?;
    }
    Ok(missing.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::codec::put_rec;

    fn task(id: &str, definition: &str, started_by: &str, group: &str) -> pb::Task {
        pb::Task {
            task_id: id.into(),
            cluster: "c".into(),
            task_definition: definition.into(),
            started_by: started_by.into(),
            group: group.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tasks_stored_without_a_group_get_theirs_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|txn| {
                let service = pb::Service {
                    service_name: "web".into(),
                    service_id: "svc-1".into(),
                    cluster: "c".into(),
                    ..Default::default()
                };
                put_rec(&mut txn.open_table(SERVICES)?, "c/web", &service)?;
                let mut tasks = txn.open_table(TASKS)?;
                for t in [
                    task("t1", "web:3", "ecs-svc/svc-1", ""),
                    task("t2", "batch:1", "berthctl", ""),
                    task("t3", "web:3", "ecs-svc/gone", ""),
                    task("t4", "web:3", "ecs-svc/svc-1", "family:kept"),
                ] {
                    put_task(&mut tasks, &t)?;
                }
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let groups: Vec<(String, String)> = store
            .read(|txn| load_tasks(&txn.open_table(TASKS)?))
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.group))
            .collect();
        assert_eq!(
            groups,
            [
                ("t1".into(), "service:web".into()),
                ("t2".into(), "family:batch".into()),
                ("t3".into(), "family:web".into()),
                ("t4".into(), "family:kept".into()),
            ]
        );
        // Once filled in, nothing is left to fill.
        assert_eq!(store.write(fill_task_groups).unwrap(), 0);
    }
}
