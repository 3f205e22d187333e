//! The agent's durable state (redb under the data dir): the instance's registration, the tasks
//! it was assigned with their last known state, the outbox of state changes not yet
//! acknowledged by the scheduler, the sequence numbers on both sides of the session, and the
//! resumes of tasks that an agent crash cut short (the engine's crash-loop guard), and each
//! image's last use by a task (`images.rs`, for the image collector).
//! Every write is one transaction committed before the caller goes on.

use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::v1::{TaskAssignment, TaskState};
use prost::Message;
use redb::{Database, ReadableTable, TableDefinition};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// task id → TaskAssignment (prost bytes).
const ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");
/// task id → TaskState (prost bytes), the last state reported.
const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("states");
/// agent seq → TaskState (prost bytes), not yet acknowledged.
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// task id → [`ResumeRecord`]: the resumes an agent crash cut short and the one in progress
/// (the layout is in `records.rs`).
const RESUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("resumes");
/// task id → each container's task endpoint ID: `name\tid` lines (see [`EndpointIds`]).
const ENDPOINT_IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoint_ids");

const KEY_INSTANCE_ID: &str = "container_instance_id";
const KEY_CLUSTER: &str = "cluster";
const KEY_NEXT_SEQ: &str = "next_seq";
const KEY_LAST_APPLIED: &str = "last_applied_scheduler_seq";
/// Present from the store's creation until the first session with the scheduler: why the store
/// started empty ("created"; a corrupt one moved aside). Such a store may meet a scheduler that
/// holds state changes of this instance numbered higher than its own.
const KEY_REBUILT: &str = "rebuilt";

/// Why the agent's state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot open the agent database {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("agent database {op} failed: {reason}")]
    Db {
        op: &'static str,
        reason: String,
        /// The operating system's error number behind it (28: ENOSPC), when it carried one.
        errno: Option<i32>,
    },
    #[error("agent database holds an undecodable {what} for {key}: {reason}")]
    Corrupt {
        what: &'static str,
        key: String,
        reason: String,
    },
}

fn db_err(op: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| {
        let errno = match &e {
            redb::Error::Io(io) => io.raw_os_error(),
            _ => None,
        };
        StoreError::Db {
            op,
            reason: e.to_string(),
            errno,
        }
    }
}

impl StoreError {
    /// The operating system's error number behind the failure, when it carried one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            StoreError::Db { errno, .. } => *errno,
            _ => None,
        }
    }

    /// The database latched an I/O failure (redb then fails every later call until it is
    /// opened again).
    fn latched(&self) -> bool {
        matches!(self, StoreError::Db { errno: Some(_), .. })
            || matches!(self, StoreError::Db { reason, .. } if reason.contains("re-open"))
    }
}

/// Converts any of redb's specific error types into the umbrella `redb::Error` first.
fn wrap<T, E: Into<redb::Error>>(op: &'static str, r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| db_err(op)(e.into()))
}

/// The agent's database.
#[derive(Debug)]
pub(crate) struct Store {
    /// None only while it is being opened again (after an I/O failure redb latched).
    db: std::sync::RwLock<Option<Database>>,
    /// The database file, for opening it again.
    path: PathBuf,
    /// Set when a call failed on an I/O error: redb fails every later call until the
    /// database is opened again ([`Store::reopen_if_failed`]).
    failed: std::sync::atomic::AtomicBool,
    /// Faults injected into writes (tests of the degraded mode); none in production.
    faults: WriteFaults,
    /// What of the outbox may have been sent, in memory: changes queued after it are coalesced.
    unsent: std::sync::Mutex<Unsent>,
    /// Every state recorded, in order, coalesced or not: what tests of the engine observe.
    #[cfg(test)]
    recorded: std::sync::Mutex<Vec<TaskState>>,
}

/// The outbox's unsent tail. Everything up to `sent` may have reached the scheduler (at open:
/// all that is queued, as an earlier run may have sent it), so it is never rewritten; a task's
/// change queued after it is replaced in place by the task's next one (each is a full snapshot
/// of the task), which keeps the numbering without gaps and sends only the latest.
#[derive(Debug, Default)]
struct Unsent {
    sent: u64,
    /// Task id → the sequence number of its one queued, unsent change.
    by_task: std::collections::HashMap<String, u64>,
}

impl Unsent {
    fn all_sent_up_to(&mut self, seq: u64) {
        self.sent = self.sent.max(seq);
        let sent = self.sent;
        self.by_task.retain(|_, s| *s > sent);
    }
}

/// How many state changes the session reads from the outbox at a time.
pub(crate) const OUTBOX_PAGE: usize = 256;

/// A task as persisted: what it was assigned and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredTask {
    pub assignment: TaskAssignment,
    pub state: TaskState,
}

impl Store {
    /// Runs `op` against the store on tokio's blocking pool and waits for it: a commit that
    /// waits on a slow disk holds a blocking thread, never an async worker, so the session and
    /// every other task go on meanwhile.
    pub(crate) async fn off_thread<T, F>(self: &Arc<Self>, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| StoreError::Db {
                op: "run on the blocking pool",
                reason: e.to_string(),
                errno: None,
            })?
    }

    /// Why the store started empty, until the first session with the scheduler (None after).
    pub(crate) fn rebuilt(&self) -> Result<Option<String>, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open meta", tx.open_table(META))?;
        Ok(wrap("get", t.get(KEY_REBUILT))?.map(|v| v.value().to_owned()))
    }

    /// The first session after the store started empty: the scheduler holds state changes of
    /// this instance up to `last_received`, which this store never saw (it was lost, reset or
    /// moved aside). The changes not yet sent are renumbered after it, and later ones follow,
    /// so the scheduler takes them; the store is no longer new. One transaction.
    pub(crate) fn continue_numbering_after(&self, last_received: u64) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut o = wrap("open outbox", tx.open_table(OUTBOX))?;
            let mut pending = Vec::new();
            for entry in wrap("iter", o.iter())? {
                let (_, v) = wrap("read", entry)?;
                pending.push(v.value().to_vec());
            }
            wrap("retain", o.retain(|_, _| false))?;
            for (seq, bytes) in (last_received + 1..).zip(&pending) {
                wrap("insert", o.insert(seq, bytes.as_slice()))?;
            }
            let mut c = wrap("open counters", tx.open_table(COUNTERS))?;
            let next = last_received + pending.len() as u64;
            wrap("insert", c.insert(KEY_NEXT_SEQ, next))?;
            let mut meta = wrap("open meta", tx.open_table(META))?;
            wrap("remove", meta.remove(KEY_REBUILT))?;
        }
        self.committed(tx.commit())?;
        // Renumbered: what is queued counts as sent again (it is, on the next session).
        let last = self.counter(KEY_NEXT_SEQ)?;
        let mut unsent = self.unsent_lock();
        unsent.sent = last;
        unsent.by_task.clear();
        Ok(())
    }

    /// The store has met the scheduler: it is no longer new.
    pub(crate) fn mark_established(&self) -> Result<(), StoreError> {
        if self.rebuilt()?.is_none() {
            return Ok(());
        }
        let tx = self.begin_write()?;
        {
            let mut meta = wrap("open meta", tx.open_table(META))?;
            wrap("remove", meta.remove(KEY_REBUILT))?;
        }
        self.committed(tx.commit())
    }

    /// The registration kept from a previous run: (cluster, instance id).
    pub(crate) fn registration(&self) -> Result<Option<(String, String)>, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open meta", tx.open_table(META))?;
        let cluster = wrap("get", t.get(KEY_CLUSTER))?.map(|v| v.value().to_owned());
        let id = wrap("get", t.get(KEY_INSTANCE_ID))?.map(|v| v.value().to_owned());
        Ok(cluster.zip(id))
    }

    #[cfg(test)]
    pub(crate) fn set_registration(
        &self,
        cluster: &str,
        instance_id: &str,
    ) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut t = wrap("open meta", tx.open_table(META))?;
            wrap("insert", t.insert(KEY_CLUSTER, cluster))?;
            wrap("insert", t.insert(KEY_INSTANCE_ID, instance_id))?;
        }
        self.committed(tx.commit())
    }

    /// Records a registration under an instance ID the agent did not have before (the
    /// scheduler forgot the old one, or the cluster changed), and restarts both sequence
    /// numberings with it, which are per instance: the scheduler's numbers start again at 1,
    /// so nothing applied is remembered, and the state changes not yet acknowledged are
    /// renumbered from 1 in their order, as the new record has received none. One transaction.
    pub(crate) fn register_anew(&self, cluster: &str, instance_id: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut t = wrap("open meta", tx.open_table(META))?;
            wrap("insert", t.insert(KEY_CLUSTER, cluster))?;
            wrap("insert", t.insert(KEY_INSTANCE_ID, instance_id))?;
            let mut o = wrap("open outbox", tx.open_table(OUTBOX))?;
            let mut pending = Vec::new();
            for entry in wrap("iter", o.iter())? {
                let (_, v) = wrap("read", entry)?;
                pending.push(v.value().to_vec());
            }
            wrap("retain", o.retain(|_, _| false))?;
            for (seq, bytes) in (1u64..).zip(&pending) {
                wrap("insert", o.insert(seq, bytes.as_slice()))?;
            }
            let mut c = wrap("open counters", tx.open_table(COUNTERS))?;
            wrap("insert", c.insert(KEY_NEXT_SEQ, pending.len() as u64))?;
            wrap("insert", c.insert(KEY_LAST_APPLIED, 0u64))?;
        }
        self.committed(tx.commit())?;
        // Renumbered: what is queued counts as sent again (it is, on the next session).
        let last = self.counter(KEY_NEXT_SEQ)?;
        let mut unsent = self.unsent_lock();
        unsent.sent = last;
        unsent.by_task.clear();
        Ok(())
    }

    /// The highest scheduler sequence number applied.
    pub(crate) fn last_applied_seq(&self) -> Result<u64, StoreError> {
        self.counter(KEY_LAST_APPLIED)
    }

    fn counter(&self, key: &str) -> Result<u64, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open counters", tx.open_table(COUNTERS))?;
        Ok(wrap("get", t.get(key))?.map(|v| v.value()).unwrap_or(0))
    }

    /// Records a new assignment, a fresh endpoint ID for each of its containers, and the
    /// scheduler sequence number it came with, atomically. Returns false (and changes nothing
    /// but the sequence number) when the task is already known. Tests seed stores with it; the
    /// engine queues the first state in the same commit ([`Self::accept_assignment_queued`]).
    #[cfg(test)]
    pub(crate) fn accept_assignment(
        &self,
        assignment: &TaskAssignment,
        initial: &TaskState,
    ) -> Result<bool, StoreError> {
        let tx = self.begin_write()?;
        let fresh = insert_assignment(&tx, assignment, initial)?;
        self.committed(tx.commit())?;
        Ok(fresh)
    }

    /// [`Self::accept_assignment`] and, for a new task, [`Self::record_state`] of its first
    /// state, in one transaction: one commit (one fsync) before the assignment is acknowledged
    /// rather than two. Returns the state change's sequence number, None (and changes nothing
    /// but the scheduler's sequence number) when the task is already known.
    pub(crate) fn accept_assignment_queued(
        &self,
        assignment: &TaskAssignment,
        initial: &TaskState,
    ) -> Result<Option<u64>, StoreError> {
        let mut unsent = self.unsent_lock();
        let tx = self.begin_write()?;
        if !insert_assignment(&tx, assignment, initial)? {
            self.committed(tx.commit())?;
            return Ok(None);
        }
        let seq = queue_state(&tx, &unsent, initial)?;
        self.committed(tx.commit())?;
        self.queued(&mut unsent, initial, seq);
        Ok(Some(seq))
    }

    /// Records that a scheduler message was applied (a stop order, a duplicate assignment).
    pub(crate) fn mark_applied(&self, seq: u64) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        bump_applied(&tx, seq)?;
        self.committed(tx.commit())
    }

    /// Stores a task's new state and queues it for the scheduler, atomically: under the next
    /// sequence number, or, when a change of the same task is queued and not yet sent, in its
    /// place (the newer full snapshot replaces it). Returns the sequence number it goes under.
    pub(crate) fn record_state(&self, state: &TaskState) -> Result<u64, StoreError> {
        let mut unsent = self.unsent_lock();
        let tx = self.begin_write()?;
        let seq = queue_state(&tx, &unsent, state)?;
        self.committed(tx.commit())?;
        self.queued(&mut unsent, state, seq);
        Ok(seq)
    }

    /// Notes a committed state change as queued, unsent, under `seq`.
    fn queued(&self, unsent: &mut Unsent, state: &TaskState, seq: u64) {
        unsent.by_task.insert(state.task_id.clone(), seq);
        #[cfg(test)]
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(state.clone());
    }

    /// Every state recorded in this run, in order (before any coalescing).
    #[cfg(test)]
    pub(crate) fn recorded(&self) -> Vec<TaskState> {
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The next page of queued state changes after `after`, at most `limit`, in order; they
    /// count as sent from now on (never rewritten by a later change).
    pub(crate) fn outbox_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, TaskState)>, StoreError> {
        let mut unsent = self.unsent_lock();
        let tx = self.begin_read()?;
        let t = wrap("open outbox", tx.open_table(OUTBOX))?;
        let mut out = Vec::new();
        let mut last = after;
        for entry in wrap("range", t.range((after + 1)..))?.take(limit) {
            let (k, v) = wrap("read", entry)?;
            last = k.value();
            let state = decode::<TaskState>("state change", &k.value().to_string(), v.value())
                .unwrap_or_else(|error| {
                    // Its number still goes out (the scheduler takes them without gaps), with
                    // an empty state, which names no task and changes none.
                    skipped("outbox", &error);
                    TaskState::default()
                });
            out.push((k.value(), state));
        }
        unsent.all_sent_up_to(last);
        Ok(out)
    }

    fn unsent_lock(&self) -> std::sync::MutexGuard<'_, Unsent> {
        // The guarded data stays consistent whatever panicked while holding it.
        self.unsent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sequence number of the last state change recorded (0 when none).
    pub(crate) fn last_recorded_seq(&self) -> Result<u64, StoreError> {
        self.counter(KEY_NEXT_SEQ)
    }

    /// State changes not yet acknowledged, in order, after `after` (all at once: tests).
    #[cfg(test)]
    pub(crate) fn outbox_after(&self, after: u64) -> Result<Vec<(u64, TaskState)>, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open outbox", tx.open_table(OUTBOX))?;
        let mut out = Vec::new();
        for entry in wrap("range", t.range((after + 1)..))? {
            let (k, v) = wrap("read", entry)?;
            match decode::<TaskState>("state change", &k.value().to_string(), v.value()) {
                Ok(state) => out.push((k.value(), state)),
                Err(error) => skipped("outbox", &error),
            }
        }
        Ok(out)
    }

    /// Drops acknowledged state changes (everything up to and including `seq`).
    pub(crate) fn ack(&self, seq: u64) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        let acked;
        {
            let mut t = wrap("open outbox", tx.open_table(OUTBOX))?;
            acked = wrap("range", t.range(..=seq))?.count() as u64;
            wrap("retain", t.retain(|k, _| k > seq))?;
        }
        self.committed(tx.commit())?;
        crate::metrics::AGENT.state_changes_acked.inc_by(acked);
        Ok(())
    }

    /// Every task known, with its assignment and last state.
    pub(crate) fn tasks(&self) -> Result<Vec<StoredTask>, StoreError> {
        let tx = self.begin_read()?;
        let a = wrap("open assignments", tx.open_table(ASSIGNMENTS))?;
        let s = wrap("open states", tx.open_table(STATES))?;
        let mut out = Vec::new();
        for entry in wrap("iter", a.iter())? {
            let (k, v) = wrap("read", entry)?;
            let id = k.value().to_owned();
            // A task with an undecodable record is left out: the scheduler's view (which marks
            // it STOPPED) and the orphan sweep take care of it, never a guess.
            let assignment = match decode::<TaskAssignment>("assignment", &id, v.value()) {
                Ok(a) => a,
                Err(error) => {
                    skipped("assignments", &error);
                    continue;
                }
            };
            let state = match wrap("get", s.get(id.as_str()))? {
                Some(v) => match decode::<TaskState>("task state", &id, v.value()) {
                    Ok(state) => state,
                    Err(error) => {
                        skipped("states", &error);
                        continue;
                    }
                },
                None => TaskState {
                    task_id: id.clone(),
                    ..Default::default()
                },
            };
            out.push(StoredTask { assignment, state });
        }
        Ok(out)
    }

    /// The endpoint IDs of a task's containers (empty for a task accepted before they existed).
    pub(crate) fn endpoint_ids(&self, task_id: &str) -> Result<EndpointIds, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open endpoint ids", tx.open_table(ENDPOINT_IDS))?;
        match wrap("get", t.get(task_id))? {
            Some(v) => decode_endpoint_ids(task_id, v.value()),
            None => Ok(EndpointIds::new()),
        }
    }

    /// Forgets a task entirely (after its release was recorded for the scheduler).
    pub(crate) fn forget_task(&self, task_id: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut a = wrap("open assignments", tx.open_table(ASSIGNMENTS))?;
            wrap("remove", a.remove(task_id))?;
            let mut s = wrap("open states", tx.open_table(STATES))?;
            wrap("remove", s.remove(task_id))?;
            let mut r = wrap("open resumes", tx.open_table(RESUMES))?;
            wrap("remove", r.remove(task_id))?;
            let mut e = wrap("open endpoint ids", tx.open_table(ENDPOINT_IDS))?;
            wrap("remove", e.remove(task_id))?;
        }
        self.committed(tx.commit())
    }

    /// The resumes of a task that began and never completed (empty when none).
    pub(crate) fn resume_record(&self, task_id: &str) -> Result<ResumeRecord, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open resumes", tx.open_table(RESUMES))?;
        match wrap("get", t.get(task_id))? {
            Some(v) => Ok(
                ResumeRecord::decode(task_id, v.value()).unwrap_or_else(|error| {
                    // Counted as no resume begun: the guard starts again from this one.
                    skipped("resumes", &error);
                    ResumeRecord::default()
                }),
            ),
            None => Ok(ResumeRecord::default()),
        }
    }

    /// Replaces a task's resume record.
    pub(crate) fn set_resume_record(
        &self,
        task_id: &str,
        record: &ResumeRecord,
    ) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut t = wrap("open resumes", tx.open_table(RESUMES))?;
            wrap("insert", t.insert(task_id, record.encode().as_slice()))?;
        }
        self.committed(tx.commit())
    }

    /// Drops a task's resume record (its resume completed).
    pub(crate) fn clear_resume_record(&self, task_id: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut t = wrap("open resumes", tx.open_table(RESUMES))?;
            wrap("remove", t.remove(task_id))?;
        }
        self.committed(tx.commit())
    }
}

fn bump_applied(tx: &redb::WriteTransaction, seq: u64) -> Result<(), StoreError> {
    let mut c = wrap("open counters", tx.open_table(COUNTERS))?;
    let current = wrap("get", c.get(KEY_LAST_APPLIED))?
        .map(|v| v.value())
        .unwrap_or(0);
    if seq > current {
        wrap("insert", c.insert(KEY_LAST_APPLIED, seq))?;
    }
    Ok(())
}

/// Inserts a new task's assignment, first state and endpoint IDs (nothing when the task is
/// known) and bumps the scheduler's applied sequence number; whether the task was new.
fn insert_assignment(
    tx: &redb::WriteTransaction,
    assignment: &TaskAssignment,
    initial: &TaskState,
) -> Result<bool, StoreError> {
    let mut a = wrap("open assignments", tx.open_table(ASSIGNMENTS))?;
    let fresh = wrap("get", a.get(assignment.task_id.as_str()))?.is_none();
    if fresh {
        wrap(
            "insert",
            a.insert(
                assignment.task_id.as_str(),
                assignment.encode_to_vec().as_slice(),
            ),
        )?;
        let mut s = wrap("open states", tx.open_table(STATES))?;
        wrap(
            "insert",
            s.insert(
                assignment.task_id.as_str(),
                initial.encode_to_vec().as_slice(),
            ),
        )?;
        let ids: EndpointIds = assignment
            .definition
            .iter()
            .flat_map(|d| &d.containers)
            .map(|c| (c.name.clone(), new_endpoint_id()))
            .collect();
        let mut e = wrap("open endpoint ids", tx.open_table(ENDPOINT_IDS))?;
        wrap(
            "insert",
            e.insert(
                assignment.task_id.as_str(),
                encode_endpoint_ids(&ids).as_slice(),
            ),
        )?;
    }
    bump_applied(tx, assignment.seq)?;
    Ok(fresh)
}

/// Stores a task's state and queues it in the outbox within `tx`: under the next sequence
/// number, or in the place of the task's queued, unsent change. Returns the sequence number.
fn queue_state(
    tx: &redb::WriteTransaction,
    unsent: &Unsent,
    state: &TaskState,
) -> Result<u64, StoreError> {
    let bytes = state.encode_to_vec();
    let mut s = wrap("open states", tx.open_table(STATES))?;
    wrap("insert", s.insert(state.task_id.as_str(), bytes.as_slice()))?;
    let mut o = wrap("open outbox", tx.open_table(OUTBOX))?;
    let seq = match unsent.by_task.get(&state.task_id) {
        Some(queued) => *queued,
        None => {
            let mut c = wrap("open counters", tx.open_table(COUNTERS))?;
            let next = wrap("get", c.get(KEY_NEXT_SEQ))?
                .map(|v| v.value())
                .unwrap_or(0)
                + 1;
            wrap("insert", c.insert(KEY_NEXT_SEQ, next))?;
            next
        }
    };
    wrap("insert", o.insert(seq, bytes.as_slice()))?;
    Ok(seq)
}

/// Runs `f`, which commits to the store and must finish before its caller goes on (the
/// engine, the one owner of task state, applies each command's writes in order), telling a
/// multi-threaded runtime first that this thread blocks: its other tasks move to another worker,
/// so a slow disk stalls only the caller. On a single-threaded runtime (tests) it just runs.
pub(crate) fn blocking_ok<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Reports a record that cannot be decoded and is skipped, by table and key.
fn skipped(table: &'static str, error: &StoreError) {
    tracing::error!(
        table,
        error = error as &(dyn std::error::Error + 'static),
        "skipping an undecodable record of the agent database"
    );
}

fn decode<M: Message + Default>(
    what: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        what,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

mod access;
mod images;
pub(crate) use images::ImageRecord;
mod open;
mod records;
pub(crate) use records::{EndpointIds, InProgress, ResumeRecord};
use records::{decode_endpoint_ids, encode_endpoint_ids, new_endpoint_id};

pub(crate) use access::WriteFaults;
#[cfg(test)]
mod tests;
