//! Each instance's session state: the outbox of messages the agent has not acknowledged, the
//! sequence numbers both ways, and the agent's task reports applied in order.

use berth_proto::v1::{
    self as pb, DesiredStatus, SchedulerMessage, StopCode, TaskStatus, scheduler_message,
};
use prost::Message as _;
use redb::ReadableTable;

use super::codec::{decode, get_rec, load_task, put_rec, put_task};
use super::definitions::load_definition;
use super::records::{InstanceRecord, SessionRecord};
use super::views::is_active;
use super::{
    Applied, INSTANCES, OUTBOX, RecordError, SECRETS, SESSIONS, SessionStart, Store, StoreError,
    TASK_DEFS, TASKS,
};

impl Store {
    /// Starts a session: the instance must be known in `cluster`; outbox entries up to
    /// `last_applied_seq` are dropped (the agent has them), and sequence numbering continues
    /// after whatever the agent has seen.
    pub fn open_session(
        &self,
        cluster: &str,
        instance_id: &str,
        last_applied_seq: u64,
    ) -> Result<SessionStart, StoreError> {
        self.write(|txn| {
            let known =
                get_rec::<InstanceRecord>(&txn.open_table(INSTANCES)?, "instances", instance_id)?
                    .filter(|i| i.instance.cluster == cluster);
            let Some(known) = known else {
                return Err(StoreError::InstanceNotFound {
                    cluster: cluster.to_owned(),
                    id: instance_id.to_owned(),
                });
            };
            if super::deregister::is_inactive(&known) {
                return Err(StoreError::InstanceDeregistered {
                    cluster: cluster.to_owned(),
                    id: instance_id.to_owned(),
                });
            }
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut session =
                get_rec::<SessionRecord>(&sessions, "sessions", instance_id)?.unwrap_or_default();
            session.next_seq = session.next_seq.max(1);
            let issued = session.next_seq - 1;
            if last_applied_seq > issued {
                // Claimed to hold what was never sent: refused, so that nothing queued for
                // the instance is dropped on a forged word.
                return Err(StoreError::NotIssued {
                    what: "last_applied_seq",
                    id: instance_id.to_owned(),
                    got: last_applied_seq,
                    issued,
                });
            }
            put_rec(&mut sessions, instance_id, &session)?;
            drop_acked(&mut txn.open_table(OUTBOX)?, instance_id, last_applied_seq)?;
            Ok(SessionStart {
                last_received_seq: session.last_received_seq,
            })
        })
    }

    /// Removes outbox entries up to and including `seq`; returns how many. An ack above the
    /// highest sequence number issued to the instance is refused and removes nothing.
    pub fn ack(&self, instance_id: &str, seq: u64) -> Result<usize, StoreError> {
        self.write(|txn| {
            let issued =
                get_rec::<SessionRecord>(&txn.open_table(SESSIONS)?, "sessions", instance_id)?
                    .map_or(0, |s| s.next_seq.saturating_sub(1));
            if seq > issued {
                return Err(StoreError::NotIssued {
                    what: "ack",
                    id: instance_id.to_owned(),
                    got: seq,
                    issued,
                });
            }
            drop_acked(&mut txn.open_table(OUTBOX)?, instance_id, seq)
        })
    }

    /// The instance's unacknowledged messages with a sequence number above `after`, in order,
    /// ready to send (assignments carry the definition, the task's current desired status and
    /// the values of the secrets the definition names).
    pub fn outbox_after(
        &self,
        instance_id: &str,
        after: u64,
    ) -> Result<Vec<(u64, SchedulerMessage)>, StoreError> {
        self.read(|txn| {
            let outbox = txn.open_table(OUTBOX)?;
            let tasks_t = txn.open_table(TASKS)?;
            let defs = txn.open_table(TASK_DEFS)?;
            let secrets = txn.open_table(SECRETS)?;
            let mut out = Vec::new();
            let start = after.saturating_add(1);
            for item in outbox.range((instance_id, start)..=(instance_id, u64::MAX))? {
                let (k, v) = item?;
                let seq = k.value().1;
                let key = format!("{instance_id}/{seq}");
                let stored: SchedulerMessage = decode("outbox", &key, v.value())?;
                let msg = match stored.message {
                    Some(scheduler_message::Message::Assignment(mut assignment)) => {
                        let Some(task) = load_task(&tasks_t, &assignment.task_id)? else {
                            tracing::warn!(task.id = %assignment.task_id, instance.id = instance_id, seq, "assignment for a task that no longer exists");
                            continue;
                        };
                        let definition = load_definition(&defs, &task.task_definition)?;
                        // The values travel only in the message as sent: the outbox keeps
                        // the assignment without them.
                        assignment.secrets =
                            self.resolve_secrets(&secrets, &task.cluster, &definition)?;
                        assignment.definition = Some(definition);
                        assignment.desired_status = task.desired_status;
                        scheduler_message::Message::Assignment(assignment)
                    }
                    Some(msg) => msg,
                    None => {
                        return Err(StoreError::Corrupt {
                            table: "outbox",
                            key,
                            source: RecordError::Missing("message"),
                        });
                    }
                };
                out.push((
                    seq,
                    SchedulerMessage {
                        message: Some(msg),
                    },
                ));
            }
            Ok(out)
        })
    }

    /// Applies an agent's report on a task. With a sequence number, a number already received
    /// is a duplicate and changes nothing; the next one is stored as the highest received, in
    /// the same transaction as the task; any other is refused. A report on a task another
    /// instance runs is refused. A refusal writes nothing. Status only moves forward.
    pub fn apply_task_state(
        &self,
        instance_id: &str,
        seq: Option<u64>,
        state: &pb::TaskState,
    ) -> Result<Applied, StoreError> {
        self.write(|txn| {
            if let Some(seq) = seq {
                let mut sessions = txn.open_table(SESSIONS)?;
                let mut session = get_rec::<SessionRecord>(&sessions, "sessions", instance_id)?
                    .unwrap_or_default();
                if seq <= session.last_received_seq {
                    return Ok(Applied::Duplicate);
                }
                let expected = session.last_received_seq.saturating_add(1);
                if seq != expected {
                    return Err(StoreError::SequenceGap {
                        id: instance_id.to_owned(),
                        expected,
                        got: seq,
                    });
                }
                session.last_received_seq = seq;
                put_rec(&mut sessions, instance_id, &session)?;
            }
            let mut tasks_t = txn.open_table(TASKS)?;
            let Some(mut task) = load_task(&tasks_t, &state.task_id)? else {
                return Ok(Applied::UnknownTask);
            };
            if task.container_instance_id != instance_id {
                return Err(StoreError::NotYourTask {
                    id: instance_id.to_owned(),
                    task_id: state.task_id.clone(),
                });
            }
            if !merge_state(&mut task, state) {
                return Ok(Applied::Unchanged);
            }
            put_task(&mut tasks_t, &task)?;
            Ok(Applied::Updated(Box::new(task)))
        })
    }
}

/// Moves `task` forward with the agent's report; false when nothing changed.
pub(super) fn merge_state(task: &mut pb::Task, state: &pb::TaskState) -> bool {
    let reported = state.status;
    if reported == TaskStatus::Unspecified as i32 || reported < task.last_status {
        return false;
    }
    let before = task.clone();
    task.last_status = reported;
    // Containers carry their network bindings and addresses. Like them, the task's network
    // interface is kept as last reported when a report has none (it was torn down with the
    // task), so a stopped task still shows where it ran.
    if !state.containers.is_empty() {
        let previous = std::mem::replace(&mut task.containers, state.containers.clone());
        // An agent that re-adopted the task after losing its store reports its containers
        // without the bindings and addresses it no longer knows: they stand as reported.
        for c in &mut task.containers {
            let Some(p) = previous.iter().find(|p| p.name == c.name) else {
                continue;
            };
            if c.network_bindings.is_empty() {
                c.network_bindings.clone_from(&p.network_bindings);
            }
            if c.private_ipv4_address.is_empty() {
                c.private_ipv4_address.clone_from(&p.private_ipv4_address);
            }
        }
    }
    if !state.attachments.is_empty() {
        task.attachments = state.attachments.clone();
    }
    let times = [
        (&mut task.pull_started_at, &state.pull_started_at),
        (&mut task.pull_stopped_at, &state.pull_stopped_at),
        (&mut task.started_at, &state.started_at),
        (&mut task.stopping_at, &state.stopping_at),
        (&mut task.stopped_at, &state.stopped_at),
        // Reported after STOPPED (the status does not move), so it is merged like the rest.
        (
            &mut task.resources_released_at,
            &state.resources_released_at,
        ),
    ];
    for (mine, theirs) in times {
        if theirs.is_some() {
            mine.clone_from(theirs);
        }
    }
    if state.stop_code != StopCode::Unspecified as i32 {
        task.stop_code = state.stop_code;
    }
    if !state.stopped_reason.is_empty() {
        task.stopped_reason.clone_from(&state.stopped_reason);
    }
    // Health is not a forward-only status: every report carries the current one.
    task.health_status = state.health_status;
    if !is_active(task) || state.desired_status == DesiredStatus::Stopped as i32 {
        // The agent decided to stop it (an essential container exited, it failed to start):
        // the desired status follows, so describe-tasks tells the truth while it stops.
        task.desired_status = DesiredStatus::Stopped as i32;
    }
    *task != before
}

/// Appends the message `msg` makes with the instance's next sequence number to its outbox.
pub(super) fn enqueue(
    sessions: &mut redb::Table<'_, &'static str, &'static [u8]>,
    outbox: &mut redb::Table<'_, (&'static str, u64), &'static [u8]>,
    instance_id: &str,
    msg: impl FnOnce(u64) -> scheduler_message::Message,
) -> Result<u64, StoreError> {
    let mut session =
        get_rec::<SessionRecord>(sessions, "sessions", instance_id)?.unwrap_or_default();
    let seq = session.next_seq.max(1);
    session.next_seq = seq.saturating_add(1);
    put_rec(sessions, instance_id, &session)?;
    let msg = SchedulerMessage {
        message: Some(msg(seq)),
    };
    outbox.insert((instance_id, seq), msg.encode_to_vec().as_slice())?;
    Ok(seq)
}

/// Queues the order that stops `task_id` on `instance_id` (with ECS's stop code and the
/// reason the task will show); returns the order's sequence number.
pub(super) fn enqueue_stop(
    sessions: &mut redb::Table<'_, &'static str, &'static [u8]>,
    outbox: &mut redb::Table<'_, (&'static str, u64), &'static [u8]>,
    instance_id: &str,
    task_id: &str,
    code: pb::StopCode,
    reason: &str,
) -> Result<u64, StoreError> {
    enqueue(sessions, outbox, instance_id, |seq| {
        scheduler_message::Message::Stop(pb::StopTaskOrder {
            seq,
            task_id: task_id.to_owned(),
            stop_code: code as i32,
            reason: reason.to_owned(),
        })
    })
}

fn drop_acked(
    outbox: &mut redb::Table<'_, (&'static str, u64), &'static [u8]>,
    instance_id: &str,
    seq: u64,
) -> Result<usize, StoreError> {
    let mut seqs = Vec::new();
    for item in outbox.range((instance_id, 0u64)..=(instance_id, seq))? {
        let (k, _) = item?;
        seqs.push(k.value().1);
    }
    for s in &seqs {
        outbox.remove((instance_id, *s))?;
    }
    Ok(seqs.len())
}
