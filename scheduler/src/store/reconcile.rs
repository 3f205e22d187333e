//! Reconciliation: the agent's full state (its answer to a StateRequest) against what the
//! scheduler holds for that instance, and instances lost for good. Every difference is
//! resolved by one rule, in one transaction:
//!
//! 1. the agent's known status wins: its report moves the task forward (never back), as any
//!    state change does;
//! 2. the scheduler's desired status wins: a task it wants STOPPED that still runs on the host
//!    gets a stop order (unless one is already queued);
//! 3. a task the scheduler has forgotten (pruned, or placed on another instance) that still
//!    runs on the host gets a stop order;
//! 4. a task the scheduler placed on the instance that the host does not know (its store was
//!    lost, or it forgot it) is marked STOPPED with a reason, unless its assignment is still
//!    queued for delivery;
//! 5. unless the host found that task's containers in containerd (its store was lost while
//!    they ran: `FullState.found`) and the scheduler still wants it RUNNING there: then its
//!    assignment is queued again, marked `adopt`, and the agent takes the task up from what
//!    containerd has (nothing is created or started twice). Found containers of a task the
//!    scheduler does not want are left to the agent's orphan sweep.
//!
//! A lost instance (disconnected longer than `--instance-lost-after`) has its active tasks
//! marked STOPPED with stop code `InstanceLost` and a reason, which releases their resources
//! (ports, ENIs, CPU and memory are only booked by active tasks); a later reconnect reconciles
//! by rule 2: whatever still runs there is stopped.

use std::collections::{HashMap, HashSet};

use berth_proto::v1::{
    self as pb, DesiredStatus, SchedulerMessage, StopCode, TaskStatus, scheduler_message,
};
use redb::ReadableTable;

use super::codec::{decode, load_task, load_tasks, put_task};
use super::sessions::{enqueue, enqueue_stop, merge_state};
use super::views::is_active;
use super::{OUTBOX, SESSIONS, Store, StoreError, TASKS, now};

/// The reason of a task the host did not know when the scheduler asked for its full state.
pub const UNKNOWN_TO_HOST: &str = "the agent of its container instance does not know this task \
     (its state was lost, or the task was never delivered and is no longer queued), so the \
     scheduler marked it STOPPED when it reconciled the two views";

/// The reason of the stop order for a task the scheduler does not know.
pub const FORGOTTEN_BY_SCHEDULER: &str = "the scheduler does not know this task (it was \
     forgotten, or placed on another instance); stopped when the scheduler reconciled the two \
     views";

/// What reconciling an instance's full state did, by task ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Rule 1: the agent's report moved these forward.
    pub updated: Vec<String>,
    /// Rule 2: the scheduler wants these stopped and they still run: stop orders queued.
    pub stop_ordered: Vec<String>,
    /// Rule 3: the host runs these and the scheduler does not know them: stop orders queued.
    pub forgotten: Vec<String>,
    /// Rule 4: placed on the instance, unknown to the host: marked STOPPED.
    pub unknown_to_host: Vec<String>,
    /// Rule 5: unknown to the host, its containers found there, wanted RUNNING: assignments
    /// queued again, marked `adopt`.
    pub adopted: Vec<String>,
}

impl Reconciled {
    /// Whether anything differed.
    pub fn is_empty(&self) -> bool {
        self.updated.is_empty()
            && self.stop_ordered.is_empty()
            && self.forgotten.is_empty()
            && self.unknown_to_host.is_empty()
            && self.adopted.is_empty()
    }
}

/// The task IDs of the assignments and stop orders still queued for an instance.
fn queued(
    outbox: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    instance_id: &str,
) -> Result<(HashSet<String>, HashSet<String>), StoreError> {
    let (mut assigned, mut stopping) = (HashSet::new(), HashSet::new());
    for item in outbox.range((instance_id, 0u64)..=(instance_id, u64::MAX))? {
        let (k, v) = item?;
        let key = format!("{instance_id}/{}", k.value().1);
        let msg: SchedulerMessage = decode("outbox", &key, v.value())?;
        match msg.message {
            Some(scheduler_message::Message::Assignment(a)) => {
                assigned.insert(a.task_id);
            }
            Some(scheduler_message::Message::Stop(s)) => {
                stopping.insert(s.task_id);
            }
            _ => {}
        }
    }
    Ok((assigned, stopping))
}

/// Whether the host still runs (or starts) the task and has not been told to stop it.
fn runs_on_host(state: &pb::TaskState) -> bool {
    state.status < TaskStatus::Stopped as i32
        && state.desired_status != DesiredStatus::Stopped as i32
}

/// Marks an active task STOPPED without word from its host.
fn mark_stopped(task: &mut pb::Task, code: StopCode, reason: &str) {
    let at = now();
    task.last_status = TaskStatus::Stopped as i32;
    task.desired_status = DesiredStatus::Stopped as i32;
    if task.stop_code == StopCode::Unspecified as i32 {
        task.stop_code = code as i32;
        task.stopped_reason = reason.to_owned();
    }
    task.stopping_at.get_or_insert(at);
    task.stopped_at = Some(at);
}

impl Store {
    /// Reconciles the instance's full state, as its agent reported it (its tasks, and the
    /// containers it found of tasks it has no record of), with the scheduler's (see the
    /// module's rules).
    pub fn reconcile(
        &self,
        instance_id: &str,
        reported: &[pb::TaskState],
        found: &[pb::FoundContainer],
    ) -> Result<Reconciled, StoreError> {
        self.write(|txn| {
            let mut out = Reconciled::default();
            let mut tasks_t = txn.open_table(TASKS)?;
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let (assigned, stopping) = queued(&outbox, instance_id)?;
            let mut orders: Vec<(String, StopCode, String)> = Vec::new();
            for state in reported {
                let known = load_task(&tasks_t, &state.task_id)?
                    .filter(|t| t.container_instance_id == instance_id);
                let Some(mut task) = known else {
                    if runs_on_host(state) && !stopping.contains(&state.task_id) {
                        out.forgotten.push(state.task_id.clone());
                        orders.push((
                            state.task_id.clone(),
                            StopCode::ServiceSchedulerInitiated,
                            FORGOTTEN_BY_SCHEDULER.to_owned(),
                        ));
                    }
                    continue;
                };
                if merge_state(&mut task, state) {
                    put_task(&mut tasks_t, &task)?;
                    out.updated.push(task.task_id.clone());
                }
                if task.desired_status == DesiredStatus::Stopped as i32
                    && runs_on_host(state)
                    && !stopping.contains(&task.task_id)
                {
                    out.stop_ordered.push(task.task_id.clone());
                    let code = StopCode::try_from(task.stop_code)
                        .ok()
                        .filter(|c| *c != StopCode::Unspecified)
                        .unwrap_or(StopCode::ServiceSchedulerInitiated);
                    let reason = if task.stopped_reason.is_empty() {
                        "the scheduler's desired status for this task is STOPPED".to_owned()
                    } else {
                        task.stopped_reason.clone()
                    };
                    orders.push((task.task_id.clone(), code, reason));
                }
            }
            let on_host: HashSet<&str> = reported.iter().map(|s| s.task_id.as_str()).collect();
            let found_on_host: HashSet<&str> = found.iter().map(|c| c.task_id.as_str()).collect();
            let mine: Vec<pb::Task> = load_tasks(&tasks_t)?
                .into_iter()
                .filter(|t| t.container_instance_id == instance_id && is_active(t))
                .filter(|t| !on_host.contains(t.task_id.as_str()))
                .filter(|t| !assigned.contains(&t.task_id))
                .collect();
            for mut task in mine {
                if found_on_host.contains(task.task_id.as_str())
                    && task.desired_status == DesiredStatus::Running as i32
                {
                    // Rule 5: the definition, desired status and secrets are filled in when
                    // it is sent, as for a first assignment.
                    let seq = enqueue(&mut sessions, &mut outbox, instance_id, |seq| {
                        scheduler_message::Message::Assignment(pb::TaskAssignment {
                            seq,
                            task_id: task.task_id.clone(),
                            network_attachment: task.attachments.first().cloned(),
                            adopt: true,
                            ..Default::default()
                        })
                    })?;
                    tracing::info!(task.id = %task.task_id, instance.id = instance_id, seq, "the host found this task's containers after losing its store: assignment queued again for re-adoption");
                    out.adopted.push(task.task_id.clone());
                    continue;
                }
                let code = if task.last_status < TaskStatus::Running as i32 {
                    StopCode::TaskFailedToStart
                } else {
                    StopCode::ServiceSchedulerInitiated
                };
                mark_stopped(&mut task, code, UNKNOWN_TO_HOST);
                put_task(&mut tasks_t, &task)?;
                out.unknown_to_host.push(task.task_id.clone());
            }
            for (task_id, code, reason) in orders {
                enqueue_stop(
                    &mut sessions,
                    &mut outbox,
                    instance_id,
                    &task_id,
                    code,
                    &reason,
                )?;
            }
            Ok(out)
        })
    }

    /// Marks the instance's active tasks STOPPED (stop code `InstanceLost`, with `reason`),
    /// which releases what they booked; returns their IDs.
    pub fn mark_instance_lost(
        &self,
        instance_id: &str,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.write(|txn| {
            let mut tasks_t = txn.open_table(TASKS)?;
            let lost: Vec<pb::Task> = load_tasks(&tasks_t)?
                .into_iter()
                .filter(|t| t.container_instance_id == instance_id && is_active(t))
                .collect();
            let mut ids = Vec::with_capacity(lost.len());
            for mut task in lost {
                mark_stopped(&mut task, StopCode::InstanceLost, reason);
                put_task(&mut tasks_t, &task)?;
                ids.push(task.task_id);
            }
            Ok(ids)
        })
    }

    /// The instances with active tasks, with when each was last heard of (its persisted
    /// heartbeat, or its registration).
    pub fn instances_with_active_tasks(
        &self,
    ) -> Result<HashMap<String, Option<prost_types::Timestamp>>, StoreError> {
        self.read(|txn| {
            let tasks_t = txn.open_table(TASKS)?;
            let instances = txn.open_table(super::INSTANCES)?;
            let mut out = HashMap::new();
            for task in load_tasks(&tasks_t)?.into_iter().filter(is_active) {
                if out.contains_key(&task.container_instance_id) {
                    continue;
                }
                let rec = super::codec::get_rec::<super::records::InstanceRecord>(
                    &instances,
                    "instances",
                    &task.container_instance_id,
                )?;
                let seen =
                    rec.and_then(|r| r.instance.last_heartbeat_at.or(r.instance.registered_at));
                out.insert(task.container_instance_id.clone(), seen);
            }
            Ok(out)
        })
    }
}
