//! The scheduler's embedded database (redb, `DIR/scheduler.redb`): clusters, container
//! instances, task definitions, tasks and each instance's session state (sequence numbers and
//! the outbox of messages the agent has not acknowledged).
//!
//! Every mutation is one write transaction committed with immediate durability before the
//! method returns, so whatever a caller acknowledges afterwards survives `kill -9`. The API
//! speaks the proto types, and the records on disk are those same messages encoded with
//! `prost::Message` (plus the two small records in `records` that no proto message covers).
//! An outbox entry is the `SchedulerMessage` as it will be sent, except that an assignment is
//! stored with only its task ID (and the network attachment RunTask asked for, which nothing
//! else records) and materialised when sent. Derived values
//! (remaining resources, task counts) are computed from the tasks when read, never stored, so
//! they cannot drift. Whether an agent is connected is not stored either: callers pass the set
//! of live sessions where it matters (placement).

mod placement;
mod records;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::v1::{
    self as pb, DesiredStatus, SchedulerMessage, StopCode, TaskStatus, scheduler_message,
};
use prost::Message as _;
use prost_types::Timestamp;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

pub use crate::attachment::AttachmentError;
use placement::{Capacity, Demand, HostPort, Protocol, Shortage};
use records::{InstanceRecord, SessionRecord};

/// The cluster created on first use.
pub const DEFAULT_CLUSTER: &str = "default";

/// The most tasks one RunTask call starts.
pub const MAX_RUN_COUNT: u32 = 10;

/// The database file inside the data directory.
pub const DB_FILE: &str = "scheduler.redb";

type StrTable = TableDefinition<'static, &'static str, &'static [u8]>;

const CLUSTERS: StrTable = TableDefinition::new("clusters");
const INSTANCES: StrTable = TableDefinition::new("instances");
const TASKS: StrTable = TableDefinition::new("tasks");
const SESSIONS: StrTable = TableDefinition::new("sessions");
const TASK_DEFS: TableDefinition<'static, (&'static str, u32), &'static [u8]> =
    TableDefinition::new("task_definitions");
const OUTBOX: TableDefinition<'static, (&'static str, u64), &'static [u8]> =
    TableDefinition::new("outbox");

/// What went wrong in the store. Messages name the object and are fit for users.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file cannot be opened or created.
    #[error("cannot open the scheduler database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// The database failed underneath a transaction.
    #[error("scheduler database error")]
    Db(#[from] redb::Error),
    /// A stored record could not be decoded.
    #[error("corrupt {table} record {key}")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: RecordError,
    },
    #[error("invalid cluster name {name:?}: use 1 to 255 letters, digits, hyphens and underscores")]
    InvalidClusterName { name: String },
    #[error("cluster {name} not found; create it with `berthctl create-cluster {name}`")]
    ClusterNotFound { name: String },
    #[error("{}", cluster_in_use_message(name, *instances, *active_tasks))]
    ClusterInUse {
        name: String,
        instances: usize,
        active_tasks: usize,
    },
    #[error("invalid task definition reference {reference:?}: use family or family:revision")]
    InvalidTaskDefinitionRef { reference: String },
    #[error("{}", task_definition_not_found_message(reference, family, *latest))]
    TaskDefinitionNotFound {
        reference: String,
        family: String,
        /// The family's latest revision, when the family exists.
        latest: Option<u32>,
    },
    #[error("invalid task definition: the family is empty")]
    EmptyFamily,
    #[error("task {task_id} not found in cluster {cluster}")]
    TaskNotFound { cluster: String, task_id: String },
    #[error("unknown container instance {id} in cluster {cluster}; register first")]
    InstanceNotFound { cluster: String, id: String },
    #[error("invalid count {count}: run 1 to {MAX_RUN_COUNT} tasks at a time")]
    InvalidCount { count: u32 },
    /// RunTask's network attachment is malformed, or does not fit the definition or count.
    #[error(transparent)]
    NetworkAttachment(#[from] AttachmentError),
    #[error("no connected ACTIVE container instance in cluster {cluster}")]
    NoConnectedInstance { cluster: String },
    #[error(
        "container instance {id} in cluster {cluster} cannot take tasks: {why}; run the task elsewhere or without --container-instance"
    )]
    InstanceUnavailable {
        cluster: String,
        id: String,
        why: &'static str,
    },
    #[error("{}", no_capacity_message(self))]
    NoCapacity {
        cluster: String,
        cpu: u64,
        memory_mib: u64,
        /// The instance with the most free memory, with its free CPU and memory.
        largest: Option<(String, u64, u64)>,
        /// How many of the requested tasks fitted before (none were started).
        placed: u32,
        requested: u32,
    },
    #[error("{}", no_free_port_message(self))]
    NoFreePort {
        cluster: String,
        /// The task's fixed host ports that are taken, as "8080/tcp".
        ports: Vec<String>,
        /// How many connected ACTIVE instances there are.
        instances: usize,
        /// How many of the requested tasks fitted before (none were started).
        placed: u32,
        requested: u32,
    },
}

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a valid encoding of the record's message.
    #[error(transparent)]
    Decode(#[from] prost::DecodeError),
    /// The record decoded but lacks a part it must have.
    #[error("it has no {0}")]
    Missing(&'static str),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn cluster_in_use_message(name: &str, instances: usize, tasks: usize) -> String {
    let mut what = Vec::new();
    if instances > 0 {
        what.push(plural(
            instances,
            "container instance",
            "container instances",
        ));
    }
    if tasks > 0 {
        what.push(plural(tasks, "running task", "running tasks"));
    }
    let todo = match (tasks > 0, instances > 0) {
        (true, true) => "stop the tasks and deregister the instances first",
        (true, false) => "stop the tasks first",
        _ => "deregister the instances first",
    };
    format!("cluster {name} has {}; {todo}", what.join(" and "))
}

fn task_definition_not_found_message(reference: &str, family: &str, latest: Option<u32>) -> String {
    match latest {
        Some(1) => format!("task definition {reference} not found; {family} has revision 1"),
        Some(n) => {
            format!("task definition {reference} not found; {family} has revisions 1 to {n}")
        }
        None => format!("task definition {reference} not found"),
    }
}

fn no_capacity_message(e: &StoreError) -> String {
    let StoreError::NoCapacity {
        cluster,
        cpu,
        memory_mib,
        largest,
        placed,
        requested,
    } = e
    else {
        return String::new();
    };
    let mut msg = format!(
        "no container instance in cluster {cluster} has room for {cpu} CPU units and {memory_mib} MiB"
    );
    if let Some((id, free_cpu, free_mem)) = largest {
        msg.push_str(&format!(
            ": the largest free capacity is {free_cpu} CPU units and {free_mem} MiB on {id}"
        ));
    }
    if *placed > 0 {
        msg.push_str(&format!(
            " (only {placed} of the {requested} tasks fit; none was started)"
        ));
    }
    msg
}

fn no_free_port_message(e: &StoreError) -> String {
    let StoreError::NoFreePort {
        cluster,
        ports,
        instances,
        placed,
        requested,
    } = e
    else {
        return String::new();
    };
    let mut msg = match (ports.as_slice(), instances) {
        ([one], 1) => format!(
            "no container instance in cluster {cluster} has host port {one} free (taken on the \
             only connected instance"
        ),
        ([one], n) => format!(
            "no container instance in cluster {cluster} has host port {one} free (taken on all \
             {n} connected instances"
        ),
        (many, 1) => format!(
            "no container instance in cluster {cluster} has host ports {} free (the only \
             connected instance has one or more of them taken",
            many.join(", ")
        ),
        (many, n) => format!(
            "no container instance in cluster {cluster} has host ports {} free (all {n} \
             connected instances have one or more of them taken",
            many.join(", ")
        ),
    };
    if *placed > 0 {
        msg.push_str(&format!(
            "; only {placed} of the {requested} tasks fit, none was started"
        ));
    }
    msg.push(')');
    msg
}

/// What applying an agent's task report did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The sequence number was already received; nothing changed.
    Duplicate,
    /// The task was updated (and persisted).
    Updated(Box<pb::Task>),
    /// The report would move the task backwards, or changed nothing.
    Unchanged,
    /// The task is unknown, or belongs to another instance.
    UnknownTask,
}

/// A RunTask request after its definition is resolved to a reference.
#[derive(Debug, Clone)]
pub struct RunTasks<'a> {
    pub cluster: &'a str,
    /// "family" or "family:revision".
    pub task_definition: &'a str,
    /// 0 means 1.
    pub count: u32,
    pub started_by: &'a str,
    /// The ENI the task gets: only for a definition in awsvpc mode, with count 1.
    pub network_attachment: Option<&'a pb::NetworkAttachment>,
    /// Place only on this instance (ECS StartTask); any connected ACTIVE one when None.
    pub container_instance: Option<&'a str>,
}

/// Where an opened session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStart {
    /// The highest agent sequence number stored.
    pub last_received_seq: u64,
}

/// The scheduler's database. Cheap to clone; all clones share one handle.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// A new random ID (a version 4 UUID, lowercase hex with dashes) for a task or an instance.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn validate_cluster_name(name: &str) -> Result<(), StoreError> {
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

fn decode<M: prost::Message + Default>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        table,
        key: key.to_owned(),
        source: e.into(),
    })
}

fn get_rec<M: prost::Message + Default>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
    key: &str,
) -> Result<Option<M>, StoreError> {
    match table.get(key)? {
        Some(v) => decode(name, key, v.value()).map(Some),
        None => Ok(None),
    }
}

fn all_recs<M: prost::Message + Default>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
) -> Result<Vec<M>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push(decode(name, k.value(), v.value())?);
    }
    Ok(out)
}

fn put_rec(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    v: &impl prost::Message,
) -> Result<(), StoreError> {
    table.insert(key, v.encode_to_vec().as_slice())?;
    Ok(())
}

fn load_task(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<pb::Task>, StoreError> {
    get_rec(table, "tasks", id)
}

fn load_tasks(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<pb::Task>, StoreError> {
    all_recs(table, "tasks")
}

fn put_task(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    task: &pb::Task,
) -> Result<(), StoreError> {
    put_rec(table, &task.task_id, task)
}

/// Not yet STOPPED or DEPROVISIONED: holds its resources.
fn is_active(t: &pb::Task) -> bool {
    t.last_status < TaskStatus::Stopped as i32
}

fn is_running(t: &pb::Task) -> bool {
    t.last_status == TaskStatus::Running as i32
}

fn is_pending(t: &pb::Task) -> bool {
    is_active(t) && !is_running(t)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The definition's network mode; empty (never stored by the registration) means bridge.
fn network_mode(def: &pb::TaskDefinition) -> &str {
    if def.network_mode.is_empty() {
        "bridge"
    } else {
        &def.network_mode
    }
}

/// Whether a task of this network mode binds host ports: bridge (also an empty mode) and host
/// do; an awsvpc task has its own address, and a task in none mode has no network.
fn takes_host_ports(network_mode: &str) -> bool {
    matches!(network_mode, "" | "bridge" | "host")
}

/// The fixed host ports a task of `def` takes on its instance, each once, in definition order.
fn fixed_host_ports(def: &pb::TaskDefinition) -> Vec<HostPort> {
    if !takes_host_ports(network_mode(def)) {
        return Vec::new();
    }
    let mut ports = Vec::new();
    for m in def.containers.iter().flat_map(|c| &c.port_mappings) {
        let port = HostPort {
            protocol: Protocol::named(&m.protocol),
            port: m.host_port,
        };
        if m.host_port != 0 && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// The host ports an active task holds on its instance: in bridge and host modes the fixed
/// host ports of its definition and every host port the agent reported bound (the dynamic ones
/// among them); none in awsvpc and none modes.
fn task_host_ports(task: &pb::Task, def: Option<&pb::TaskDefinition>) -> Vec<HostPort> {
    let mode = def.map_or(task.network_mode.as_str(), network_mode);
    if !takes_host_ports(mode) {
        return Vec::new();
    }
    let mut ports = def.map(fixed_host_ports).unwrap_or_default();
    ports.extend(
        task.containers
            .iter()
            .flat_map(|c| &c.network_bindings)
            .filter(|b| b.host_port != 0)
            .map(|b| HostPort {
                protocol: Protocol::named(&b.protocol),
                port: b.host_port,
            }),
    );
    ports
}

/// The definitions of the tasks still holding resources, by reference, for their host ports.
/// A definition that cannot be found is left out (its task then holds only the ports the agent
/// reported).
fn active_definitions(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    tasks: &[pb::Task],
) -> Result<HashMap<String, pb::TaskDefinition>, StoreError> {
    let mut defs = HashMap::new();
    for t in tasks.iter().filter(|t| is_active(t)) {
        if defs.contains_key(&t.task_definition) {
            continue;
        }
        match load_definition(table, &t.task_definition) {
            Ok(def) => {
                defs.insert(t.task_definition.clone(), def);
            }
            Err(
                error @ (StoreError::TaskDefinitionNotFound { .. }
                | StoreError::InvalidTaskDefinitionRef { .. }),
            ) => {
                tracing::warn!(task.id = %t.task_id, %error, "the definition of an active task is missing; counting only its reported ports");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(defs)
}

/// An instance with its derived fields, from all tasks and the active ones' definitions.
fn instance_view(
    rec: &InstanceRecord,
    tasks: &[pb::Task],
    defs: &HashMap<String, pb::TaskDefinition>,
) -> pb::ContainerInstance {
    let mut view = rec.instance.clone();
    let mine = || {
        tasks
            .iter()
            .filter(|t| t.container_instance_id == rec.instance.container_instance_id)
    };
    let (used_cpu, used_mem) = mine()
        .filter(|t| is_active(t))
        .fold((0u64, 0u64), |(c, m), t| {
            (
                c.saturating_add(u64::from(t.cpu)),
                m.saturating_add(t.memory_mib),
            )
        });
    if let Some(reg) = &view.registered_resources {
        let mut tcp: BTreeSet<u32> = reg.ports.iter().copied().collect();
        let mut udp: BTreeSet<u32> = reg.udp_ports.iter().copied().collect();
        for port in mine()
            .filter(|t| is_active(t))
            .flat_map(|t| task_host_ports(t, defs.get(&t.task_definition)))
        {
            match port.protocol {
                Protocol::Tcp => tcp.insert(port.port),
                Protocol::Udp => udp.insert(port.port),
            };
        }
        view.remaining_resources = Some(pb::Resources {
            cpu: reg.cpu.saturating_sub(used_cpu),
            memory_mib: reg.memory_mib.saturating_sub(used_mem),
            cpu_millicores: reg.cpu_millicores.saturating_sub(used_cpu * 1000 / 1024),
            cores: reg.cores,
            ports: tcp.into_iter().collect(),
            udp_ports: udp.into_iter().collect(),
        });
    }
    view.running_tasks_count = count(mine().filter(|t| is_running(t)).count());
    view.pending_tasks_count = count(mine().filter(|t| is_pending(t)).count());
    view
}

fn cluster_view(
    rec: &pb::Cluster,
    instances: &[InstanceRecord],
    tasks: &[pb::Task],
    status: &str,
) -> pb::Cluster {
    let in_cluster = || tasks.iter().filter(|t| t.cluster == rec.name);
    pb::Cluster {
        name: rec.name.clone(),
        status: status.to_owned(),
        registered_container_instances_count: count(
            instances
                .iter()
                .filter(|i| i.instance.cluster == rec.name)
                .count(),
        ),
        running_tasks_count: count(in_cluster().filter(|t| is_running(t)).count()),
        pending_tasks_count: count(in_cluster().filter(|t| is_pending(t)).count()),
        created_at: rec.created_at,
    }
}

/// Splits "family" or "family:rev".
fn parse_reference(reference: &str) -> Result<(&str, Option<u32>), StoreError> {
    let bad = || StoreError::InvalidTaskDefinitionRef {
        reference: reference.to_owned(),
    };
    match reference.rsplit_once(':') {
        Some((family, rev)) => {
            let rev: u32 = rev.parse().map_err(|_| bad())?;
            if family.is_empty() || rev == 0 {
                return Err(bad());
            }
            Ok((family, Some(rev)))
        }
        None if reference.is_empty() => Err(bad()),
        None => Ok((reference, None)),
    }
}

/// The task's CPU units and memory: the definition's, or the sums of its containers'.
pub(crate) fn task_size(def: &pb::TaskDefinition) -> (u32, u64) {
    let cpu = if def.cpu > 0 {
        def.cpu
    } else {
        def.containers
            .iter()
            .fold(0u32, |a, c| a.saturating_add(c.cpu))
    };
    let memory = if def.memory_mib > 0 {
        def.memory_mib
    } else {
        def.containers.iter().fold(0u64, |a, c| {
            let m = if c.memory_mib > 0 {
                c.memory_mib
            } else {
                c.memory_reservation_mib
            };
            a.saturating_add(m)
        })
    };
    (cpu, memory)
}

fn latest_revision(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    family: &str,
) -> Result<Option<u32>, StoreError> {
    let last = table
        .range((family, 0u32)..=(family, u32::MAX))?
        .next_back();
    match last {
        Some(item) => {
            let (k, _) = item?;
            Ok(Some(k.value().1))
        }
        None => Ok(None),
    }
}

fn load_definition(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    reference: &str,
) -> Result<pb::TaskDefinition, StoreError> {
    let (family, rev) = parse_reference(reference)?;
    let latest = latest_revision(table, family)?;
    let not_found = || StoreError::TaskDefinitionNotFound {
        reference: reference.to_owned(),
        family: family.to_owned(),
        latest,
    };
    let rev = match (rev, latest) {
        (Some(r), _) => r,
        (None, Some(l)) => l,
        (None, None) => return Err(not_found()),
    };
    let key = format!("{family}:{rev}");
    match table.get((family, rev))? {
        Some(v) => decode("task_definitions", &key, v.value()),
        None => Err(not_found()),
    }
}

/// Moves `task` forward with the agent's report; false when nothing changed.
fn merge_state(task: &mut pb::Task, state: &pb::TaskState) -> bool {
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
        task.containers = state.containers.clone();
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

impl Store {
    /// Opens (or creates) `dir/scheduler.redb`. The directory must exist.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = Self { db: Arc::new(db) };
        store.write(|txn| {
            txn.open_table(CLUSTERS)?;
            txn.open_table(INSTANCES)?;
            txn.open_table(TASKS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(TASK_DEFS)?;
            txn.open_table(OUTBOX)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write()?;
        match f(&txn) {
            Ok(v) => {
                txn.commit()?;
                Ok(v)
            }
            Err(e) => {
                if let Err(error) = txn.abort() {
                    tracing::warn!(%error, "aborting a write transaction failed");
                }
                Err(e)
            }
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    // ---- clusters ----

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

    /// Forgets tasks that stopped before `cutoff` (ECS keeps stopped tasks visible for about an
    /// hour). A stopped task holds no resources, so nothing else changes. Returns how many went.
    pub fn prune_stopped_tasks(&self, cutoff: std::time::SystemTime) -> Result<usize, StoreError> {
        let cutoff = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.write(|txn| {
            let mut tasks_t = txn.open_table(TASKS)?;
            let old: Vec<String> = load_tasks(&tasks_t)?
                .into_iter()
                .filter(|t| {
                    !is_active(t) && t.stopped_at.as_ref().is_some_and(|s| s.seconds < cutoff)
                })
                .map(|t| t.task_id)
                .collect();
            for id in &old {
                tasks_t.remove(id.as_str())?;
            }
            Ok(old.len())
        })
    }

    /// Deletes a cluster with no instances and no task still holding resources; its stopped
    /// tasks go with it. Returns the cluster as it was, INACTIVE.
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
                .filter(|i| i.instance.cluster == name)
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
            tracing::info!(cluster = name, "cluster deleted");
            Ok(view)
        })
    }

    // ---- task definitions ----

    /// Stores `def` as its family's next revision, stamped with the registration time.
    pub fn register_task_definition(
        &self,
        mut def: pb::TaskDefinition,
    ) -> Result<pb::TaskDefinition, StoreError> {
        if def.family.is_empty() {
            return Err(StoreError::EmptyFamily);
        }
        self.write(|txn| {
            let mut defs = txn.open_table(TASK_DEFS)?;
            let rev = latest_revision(&defs, &def.family)?
                .unwrap_or(0)
                .saturating_add(1);
            def.revision = rev;
            def.registered_at = Some(now());
            defs.insert((def.family.as_str(), rev), def.encode_to_vec().as_slice())?;
            tracing::info!(family = %def.family, revision = rev, "task definition registered");
            Ok(def)
        })
    }

    /// "family" (the latest revision) or "family:revision".
    pub fn task_definition(&self, reference: &str) -> Result<pb::TaskDefinition, StoreError> {
        self.read(|txn| load_definition(&txn.open_table(TASK_DEFS)?, reference))
    }

    /// "family:revision" of every definition (of one family when given), oldest first.
    pub fn list_task_definitions(&self, family: Option<&str>) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let defs = txn.open_table(TASK_DEFS)?;
            let mut out = Vec::new();
            let iter = match family {
                Some(f) => defs.range((f, 0u32)..=(f, u32::MAX))?,
                None => defs.iter()?,
            };
            for item in iter {
                let (k, v) = item?;
                let (fam, rev) = k.value();
                let key = format!("{fam}:{rev}");
                let def: pb::TaskDefinition = decode("task_definitions", &key, v.value())?;
                let at = def.registered_at.map(|t| (t.seconds, t.nanos));
                out.push((at, key));
            }
            out.sort();
            Ok(out.into_iter().map(|(_, k)| k).collect())
        })
    }

    // ---- tasks ----

    /// Places and creates tasks, all or none: each goes to the connected ACTIVE instance with
    /// the least free memory that fits it; its assignment is queued in that instance's outbox.
    pub fn run_tasks(
        &self,
        req: RunTasks<'_>,
        connected: &HashSet<String>,
    ) -> Result<Vec<pb::Task>, StoreError> {
        let requested = if req.count == 0 { 1 } else { req.count };
        if requested > MAX_RUN_COUNT {
            return Err(StoreError::InvalidCount { count: req.count });
        }
        let attachment = req
            .network_attachment
            .map(crate::attachment::checked)
            .transpose()?;
        self.ensure_cluster(req.cluster)?;
        let cluster = req.cluster;
        self.write(|txn| {
            if txn.open_table(CLUSTERS)?.get(cluster)?.is_none() {
                return Err(StoreError::ClusterNotFound {
                    name: cluster.to_owned(),
                });
            }
            let defs_t = txn.open_table(TASK_DEFS)?;
            let def = load_definition(&defs_t, req.task_definition)?;
            if attachment.is_some() {
                if network_mode(&def) != "awsvpc" {
                    return Err(AttachmentError::NotAwsvpc {
                        task_definition: format!("{}:{}", def.family, def.revision),
                        network_mode: network_mode(&def).to_owned(),
                    }
                    .into());
                }
                if requested != 1 {
                    return Err(AttachmentError::Count { count: requested }.into());
                }
            }
            let (cpu, memory_mib) = task_size(&def);
            let demand = Demand {
                cpu: u64::from(cpu),
                memory_mib,
                ports: fixed_host_ports(&def),
            };
            let mut tasks_t = txn.open_table(TASKS)?;
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let tasks = load_tasks(&tasks_t)?;
            let defs = active_definitions(&defs_t, &tasks)?;
            let instances: Vec<InstanceRecord> =
                all_recs(&txn.open_table(INSTANCES)?, "instances")?;
            if let Some(id) = req.container_instance {
                let Some(i) = instances.iter().find(|i| {
                    i.instance.cluster == cluster && i.instance.container_instance_id == id
                }) else {
                    return Err(StoreError::InstanceNotFound {
                        cluster: cluster.to_owned(),
                        id: id.to_owned(),
                    });
                };
                let why = if i.instance.status != "ACTIVE" {
                    Some("it is DRAINING")
                } else if !connected.contains(id) {
                    Some("its agent is not connected")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(StoreError::InstanceUnavailable {
                        cluster: cluster.to_owned(),
                        id: id.to_owned(),
                        why,
                    });
                }
            }
            if let Some(a) = &attachment
                && let Some(other) = tasks.iter().find(|t| {
                    t.last_status < TaskStatus::Stopped as i32
                        && t.desired_status != DesiredStatus::Stopped as i32
                        && t.attachments
                            .iter()
                            .any(|o| o.mac_address.eq_ignore_ascii_case(&a.mac_address))
                })
            {
                return Err(AttachmentError::InUse {
                    mac: a.mac_address.clone(),
                    task_id: other.task_id.clone(),
                }
                .into());
            }
            let mut candidates: Vec<Capacity> = instances
                .iter()
                .filter(|i| {
                    i.instance.cluster == cluster
                        && i.instance.status == "ACTIVE"
                        && connected.contains(&i.instance.container_instance_id)
                        && req
                            .container_instance
                            .is_none_or(|id| i.instance.container_instance_id == id)
                })
                .map(|i| {
                    let v = instance_view(i, &tasks, &defs);
                    let rem = v.remaining_resources.unwrap_or_default();
                    let port = |protocol| move |&port| HostPort { protocol, port };
                    Capacity {
                        instance_id: v.container_instance_id,
                        cpu: rem.cpu,
                        memory_mib: rem.memory_mib,
                        ports: rem
                            .ports
                            .iter()
                            .map(port(Protocol::Tcp))
                            .chain(rem.udp_ports.iter().map(port(Protocol::Udp)))
                            .collect(),
                    }
                })
                .collect();
            if candidates.is_empty() {
                return Err(StoreError::NoConnectedInstance {
                    cluster: cluster.to_owned(),
                });
            }
            let reference = format!("{}:{}", def.family, def.revision);
            let mut created = Vec::new();
            for placed in 0..requested {
                let Some(i) = placement::binpack(&candidates, &demand) else {
                    return Err(match placement::shortage(&candidates, &demand) {
                        Shortage::Ports(taken) => StoreError::NoFreePort {
                            cluster: cluster.to_owned(),
                            ports: taken.iter().map(HostPort::to_string).collect(),
                            instances: candidates.len(),
                            placed,
                            requested,
                        },
                        Shortage::Room(largest) => StoreError::NoCapacity {
                            cluster: cluster.to_owned(),
                            cpu: u64::from(cpu),
                            memory_mib,
                            largest: largest.map(|c| (c.instance_id.clone(), c.cpu, c.memory_mib)),
                            placed,
                            requested,
                        },
                    });
                };
                let Some(cand) = candidates.get_mut(i) else {
                    break;
                };
                cand.take(&demand);
                let instance_id = cand.instance_id.clone();
                let task = pb::Task {
                    task_id: new_id(),
                    cluster: cluster.to_owned(),
                    task_definition: reference.clone(),
                    container_instance_id: instance_id.clone(),
                    last_status: TaskStatus::Provisioning as i32,
                    desired_status: DesiredStatus::Running as i32,
                    cpu,
                    memory_mib,
                    created_at: Some(now()),
                    started_by: req.started_by.to_owned(),
                    network_mode: network_mode(&def).to_owned(),
                    // The ENI asked for, until the agent reports what the task got.
                    attachments: attachment.iter().cloned().collect(),
                    ..Default::default()
                };
                put_task(&mut tasks_t, &task)?;
                // The attachment asked for is stored in the assignment itself, which stays in
                // the outbox (written in this transaction with the task) until the agent has
                // it; the definition and desired status are filled in when it is sent.
                let seq = enqueue(&mut sessions, &mut outbox, &instance_id, |seq| {
                    scheduler_message::Message::Assignment(pb::TaskAssignment {
                        seq,
                        task_id: task.task_id.clone(),
                        network_attachment: attachment.clone(),
                        ..Default::default()
                    })
                })?;
                tracing::info!(
                    task.id = %task.task_id,
                    instance.id = %instance_id,
                    cluster,
                    task_definition = %reference,
                    seq,
                    "task placed"
                );
                created.push(task);
            }
            Ok(created)
        })
    }

    /// Sets the task's desired status to STOPPED and queues a stop order for its instance.
    /// A task already stopped or stopping is returned unchanged; the flag says whether an
    /// order was queued.
    pub fn stop_task(
        &self,
        cluster: &str,
        task_id: &str,
        reason: &str,
    ) -> Result<(pb::Task, bool), StoreError> {
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            let mut tasks_t = txn.open_table(TASKS)?;
            let not_found = || StoreError::TaskNotFound {
                cluster: cluster.to_owned(),
                task_id: task_id.to_owned(),
            };
            let mut task = load_task(&tasks_t, task_id)?.ok_or_else(not_found)?;
            if task.cluster != cluster {
                return Err(not_found());
            }
            if task.desired_status == DesiredStatus::Stopped as i32 || !is_active(&task) {
                return Ok((task, false));
            }
            task.desired_status = DesiredStatus::Stopped as i32;
            task.stopping_at = Some(now());
            let reason = if reason.is_empty() {
                "Task stopped by user"
            } else {
                reason
            };
            put_task(&mut tasks_t, &task)?;
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let seq = enqueue(
                &mut sessions,
                &mut outbox,
                &task.container_instance_id,
                |seq| {
                    scheduler_message::Message::Stop(pb::StopTaskOrder {
                        seq,
                        task_id: task.task_id.clone(),
                        stop_code: StopCode::UserInitiated as i32,
                        reason: reason.to_owned(),
                    })
                },
            )?;
            tracing::info!(
                task.id = %task.task_id,
                instance.id = %task.container_instance_id,
                cluster,
                seq,
                "task stop ordered"
            );
            Ok((task, true))
        })
    }

    /// The tasks asked for, and the IDs not found in the cluster.
    pub fn describe_tasks(
        &self,
        cluster: &str,
        ids: &[String],
    ) -> Result<(Vec<pb::Task>, Vec<String>), StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let tasks_t = txn.open_table(TASKS)?;
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match load_task(&tasks_t, id)? {
                    Some(t) if t.cluster == cluster => found.push(t),
                    _ => missing.push(id.clone()),
                }
            }
            Ok((found, missing))
        })
    }

    /// The cluster's tasks, oldest first, optionally only one instance's or one desired status.
    pub fn list_tasks(
        &self,
        cluster: &str,
        instance_id: Option<&str>,
        desired_status: Option<i32>,
    ) -> Result<Vec<pb::Task>, StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let mut tasks: Vec<pb::Task> = load_tasks(&txn.open_table(TASKS)?)?
                .into_iter()
                .filter(|t| {
                    t.cluster == cluster
                        && instance_id.is_none_or(|i| t.container_instance_id == i)
                        && desired_status.is_none_or(|d| t.desired_status == d)
                })
                .collect();
            tasks.sort_by_key(|t| {
                (
                    t.created_at.map(|c| (c.seconds, c.nanos)),
                    t.task_id.clone(),
                )
            });
            Ok(tasks)
        })
    }

    // ---- container instances ----

    /// Registers a host, or re-registers a known one (matched by ID, then by identity, within
    /// the cluster): resources, attributes and versions are updated, the status stays.
    pub fn register_instance(&self, req: &pb::RegisterRequest) -> Result<String, StoreError> {
        let cluster = req.cluster.as_str();
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            if txn.open_table(CLUSTERS)?.get(cluster)?.is_none() {
                return Err(StoreError::ClusterNotFound {
                    name: cluster.to_owned(),
                });
            }
            let mut instances_t = txn.open_table(INSTANCES)?;
            let all: Vec<InstanceRecord> = all_recs(&instances_t, "instances")?;
            let known = all
                .iter()
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
                });
            let fresh = known.is_none();
            let mut rec = known.cloned().unwrap_or_else(|| InstanceRecord {
                instance: pb::ContainerInstance {
                    container_instance_id: new_id(),
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

    /// The cluster's instances with remaining resources and counts (`agent_connected` false:
    /// the caller knows the sessions).
    pub fn list_instances(&self, cluster: &str) -> Result<Vec<pb::ContainerInstance>, StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            let defs = active_definitions(&txn.open_table(TASK_DEFS)?, &tasks)?;
            let recs: Vec<InstanceRecord> = all_recs(&txn.open_table(INSTANCES)?, "instances")?;
            Ok(recs
                .iter()
                .filter(|i| i.instance.cluster == cluster)
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

    // ---- sessions ----

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
                    .is_some_and(|i| i.instance.cluster == cluster);
            if !known {
                return Err(StoreError::InstanceNotFound {
                    cluster: cluster.to_owned(),
                    id: instance_id.to_owned(),
                });
            }
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut session = get_rec::<SessionRecord>(&sessions, "sessions", instance_id)?
                .unwrap_or_default();
            session.next_seq = session.next_seq.max(1);
            if session.next_seq <= last_applied_seq {
                tracing::warn!(
                    instance.id = instance_id,
                    last_applied_seq,
                    next_seq = session.next_seq,
                    "agent has applied sequence numbers this scheduler never issued; skipping past them"
                );
                session.next_seq = last_applied_seq.saturating_add(1);
            }
            put_rec(&mut sessions, instance_id, &session)?;
            drop_acked(&mut txn.open_table(OUTBOX)?, instance_id, last_applied_seq)?;
            Ok(SessionStart {
                last_received_seq: session.last_received_seq,
            })
        })
    }

    /// Removes outbox entries up to and including `seq`; returns how many.
    pub fn ack(&self, instance_id: &str, seq: u64) -> Result<usize, StoreError> {
        self.write(|txn| drop_acked(&mut txn.open_table(OUTBOX)?, instance_id, seq))
    }

    /// The instance's unacknowledged messages with a sequence number above `after`, in order,
    /// ready to send (assignments carry the definition and the task's current desired status).
    pub fn outbox_after(
        &self,
        instance_id: &str,
        after: u64,
    ) -> Result<Vec<(u64, SchedulerMessage)>, StoreError> {
        self.read(|txn| {
            let outbox = txn.open_table(OUTBOX)?;
            let tasks_t = txn.open_table(TASKS)?;
            let defs = txn.open_table(TASK_DEFS)?;
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
    /// is a duplicate and changes nothing; otherwise it is stored as the highest received, in
    /// the same transaction as the task. Status only moves forward.
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
                session.last_received_seq = seq;
                put_rec(&mut sessions, instance_id, &session)?;
            }
            let mut tasks_t = txn.open_table(TASKS)?;
            let Some(mut task) = load_task(&tasks_t, &state.task_id)? else {
                return Ok(Applied::UnknownTask);
            };
            if task.container_instance_id != instance_id {
                return Ok(Applied::UnknownTask);
            }
            if !merge_state(&mut task, state) {
                return Ok(Applied::Unchanged);
            }
            put_task(&mut tasks_t, &task)?;
            Ok(Applied::Updated(Box::new(task)))
        })
    }
}

/// Appends the message `msg` makes with the instance's next sequence number to its outbox.
fn enqueue(
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

#[cfg(test)]
mod tests;
