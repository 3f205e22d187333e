//! Deregistration (ECS's DeregisterContainerInstance): an instance becomes INACTIVE for good,
//! its certified identity is revoked and, when forced, the tasks on it that are not STOPPED
//! are stopped, all in one transaction. An INACTIVE instance takes no tasks, cannot register
//! or open a session again, and no longer keeps its cluster from being deleted.

use berth_proto::v1::{self as pb, DesiredStatus, StopCode, TaskStatus};
use redb::ReadableTable;

use super::codec::{all_recs, get_rec, load_tasks, put_rec, put_task};
use super::records::{AgentCertRecord, InstanceRecord};
use super::sessions::enqueue_stop;
use super::views::{active_definitions, instance_view, is_active};
use super::{AGENT_CERTS, INSTANCES, OUTBOX, SESSIONS, Store, StoreError, TASK_DEFS, TASKS, now};

/// The status of a deregistered instance.
pub(crate) const INACTIVE: &str = "INACTIVE";

/// What a deregistration did.
#[derive(Debug, Clone, PartialEq)]
pub struct Deregistered {
    /// The instance as it is now (INACTIVE).
    pub instance: pb::ContainerInstance,
    /// The tasks `force` stopped.
    pub stopped_tasks: Vec<String>,
}

/// Whether an instance record was deregistered.
pub(super) fn is_inactive(rec: &InstanceRecord) -> bool {
    rec.instance.status == INACTIVE
}

impl Store {
    /// Whether the instance `id` was deregistered (an unknown one was not).
    pub fn is_deregistered(&self, id: &str) -> Result<bool, StoreError> {
        let rec: Option<InstanceRecord> =
            self.read(|txn| get_rec(&txn.open_table(INSTANCES)?, "instances", id))?;
        Ok(rec.is_some_and(|r| is_inactive(&r)))
    }

    /// Deregisters the instance `id` of `cluster`. Refused while tasks on it are not STOPPED,
    /// unless `force`: then each of them is recorded STOPPED (its agent can no longer report)
    /// and a stop order is queued, which a connected agent receives before it is cut off.
    /// Deregistering an INACTIVE instance again returns it as it is.
    pub fn deregister_instance(
        &self,
        cluster: &str,
        id: &str,
        force: bool,
    ) -> Result<Deregistered, StoreError> {
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            let mut instances_t = txn.open_table(INSTANCES)?;
            let mut rec = get_rec::<InstanceRecord>(&instances_t, "instances", id)?
                .filter(|r| r.instance.cluster == cluster)
                .ok_or_else(|| StoreError::InstanceNotFound {
                    cluster: cluster.to_owned(),
                    id: id.to_owned(),
                })?;
            let mut tasks_t = txn.open_table(TASKS)?;
            let active: Vec<pb::Task> = load_tasks(&tasks_t)?
                .into_iter()
                .filter(|t| t.container_instance_id == id && is_active(t))
                .collect();
            if !active.is_empty() && !force {
                return Err(StoreError::InstanceHasTasks {
                    cluster: cluster.to_owned(),
                    id: id.to_owned(),
                    tasks: active.len(),
                });
            }
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let reason = format!("container instance {id} was deregistered (--force)");
            let mut stopped_tasks = Vec::with_capacity(active.len());
            for mut task in active {
                let stopped_at = now();
                task.desired_status = DesiredStatus::Stopped as i32;
                task.last_status = TaskStatus::Stopped as i32;
                task.stop_code = StopCode::ServiceSchedulerInitiated as i32;
                task.stopped_reason.clone_from(&reason);
                task.stopping_at.get_or_insert(stopped_at);
                task.stopped_at = Some(stopped_at);
                put_task(&mut tasks_t, &task)?;
                let seq = enqueue_stop(
                    &mut sessions,
                    &mut outbox,
                    id,
                    &task.task_id,
                    StopCode::ServiceSchedulerInitiated,
                    &reason,
                )?;
                tracing::info!(task.id = %task.task_id, instance.id = id, cluster, seq, "task stopped by a forced deregistration");
                stopped_tasks.push(task.task_id);
            }
            let was_active = !is_inactive(&rec);
            rec.instance.status = INACTIVE.to_owned();
            put_rec(&mut instances_t, id, &rec)?;
            let mut certs = txn.open_table(AGENT_CERTS)?;
            let revoked =
                match get_rec::<AgentCertRecord>(&certs, "agent_certs", id)? {
                    Some(mut cert) if !cert.revoked => {
                        cert.revoked = true;
                        put_rec(&mut certs, id, &cert)?;
                        true
                    }
                    _ => false,
                };
            if was_active {
                tracing::info!(instance.id = id, cluster, force, revoked, stopped = stopped_tasks.len(), "container instance deregistered");
            }
            let tasks = load_tasks(&tasks_t)?;
            let defs = active_definitions(&txn.open_table(TASK_DEFS)?, &tasks)?;
            Ok(Deregistered {
                instance: instance_view(&rec, &tasks, &defs),
                stopped_tasks,
            })
        })
    }
}

/// Removes the INACTIVE instances of `cluster` with their session records and queued messages
/// (a cluster being deleted).
pub(super) fn forget_inactive(
    txn: &redb::WriteTransaction,
    cluster: &str,
) -> Result<usize, StoreError> {
    let mut instances_t = txn.open_table(INSTANCES)?;
    let gone: Vec<String> = all_recs::<InstanceRecord>(&instances_t, "instances")?
        .into_iter()
        .filter(|r| r.instance.cluster == cluster && is_inactive(r))
        .map(|r| r.instance.container_instance_id)
        .collect();
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut outbox = txn.open_table(OUTBOX)?;
    for id in &gone {
        instances_t.remove(id.as_str())?;
        sessions.remove(id.as_str())?;
        let seqs: Vec<u64> = outbox
            .range((id.as_str(), 0u64)..=(id.as_str(), u64::MAX))?
            .map(|item| item.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for seq in seqs {
            outbox.remove((id.as_str(), seq))?;
        }
    }
    Ok(gone.len())
}
