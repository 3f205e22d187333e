//! The scheduler's embedded database (redb, `DIR/scheduler.redb`): clusters, container
//! instances, task definitions, tasks and each instance's session state (sequence numbers and
//! the outbox of messages the agent has not acknowledged).
//!
//! Every mutation is one write transaction committed with immediate durability before the
//! method returns, so whatever a caller acknowledges afterwards survives `kill -9`. The API
//! speaks the proto types, and the records on disk are those same messages encoded with
//! `prost::Message` (plus the two small records in `records` that no proto message covers;
//! `codec` reads and writes them). An outbox entry is the `SchedulerMessage` as it will be
//! sent, except that an assignment is stored with only its task ID (and the network
//! attachment RunTask asked for, which nothing else records) and materialised when sent.
//! Derived values (remaining resources, task counts, host ports in use) are computed from the
//! tasks when read (`views`), never stored, so they cannot drift. Whether an agent is
//! connected is not stored either: callers pass the set of live sessions where it matters
//! (placement, which is pure: `placement`).
//!
//! The methods of each entity are one `impl Store` block in its own file: `clusters`,
//! `definitions`, `instances`, `deregister`, `tasks`, `sessions`, `trust` (tokens and
//! certified agents) and `client_certs` (the client certificates issued, and their revocation); `error` holds the errors and their messages.

mod client_certs;
mod clusters;
mod codec;
mod definitions;
mod deregister;
mod error;
mod groups;
mod instances;
mod lifecycle;
mod placement;
mod platform;
use crate::placement as ports;
mod reconcile;
mod records;
mod secrets;
mod services;
mod sessions;
mod tasks;
#[cfg(test)]
mod tests;
mod trust;
mod views;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::v1 as pb;
use prost_types::Timestamp;
use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition};

pub use crate::attachment::AttachmentError;
pub use client_certs::normalize_serial;
pub use deregister::Deregistered;
pub use error::{RecordError, StoreError, TokenRefusal};
pub use reconcile::{FORGOTTEN_BY_SCHEDULER, Reconciled, UNKNOWN_TO_HOST};
pub use services::{
    ACTIVE_SERVICE, DAEMON, DRAINING_SERVICE, INACTIVE_SERVICE, REPLICA, Reconciled as ServiceStep,
    ServiceError, ServiceUpdate,
};
pub use trust::DEFAULT_JOIN_TOKEN_TTL;

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
const JOIN_TOKENS: StrTable = TableDefinition::new("join_tokens");
const API_TOKENS: StrTable = TableDefinition::new("api_tokens");
const AGENT_CERTS: StrTable = TableDefinition::new("agent_certs");
const CLIENT_CERTS: StrTable = TableDefinition::new("client_certs");
/// Task secrets by (cluster, name), values sealed (`secrets.rs`).
const SECRETS: TableDefinition<'static, (&'static str, &'static str), &'static [u8]> =
    TableDefinition::new("secrets");
const OUTBOX: TableDefinition<'static, (&'static str, u64), &'static [u8]> =
    TableDefinition::new("outbox");

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
    /// The tasks' group (ECS's task group, see [`pb::Task::group`]); empty: `family:FAMILY` of
    /// the definition.
    pub group: &'a str,
    /// The ENI the task gets: only for a definition in awsvpc mode, with count 1.
    pub network_attachment: Option<&'a pb::NetworkAttachment>,
    /// Place only on this instance (ECS StartTask); any connected ACTIVE one when None.
    pub container_instance: Option<&'a str>,
    /// Connected instances whose agent reports that it cannot write its data dir, with why:
    /// they take no new task (None: none is).
    pub storage_degraded: Option<&'a std::collections::BTreeMap<String, String>>,
    /// The request's placement constraints, checked with the definition's own.
    pub placement_constraints: &'a [crate::placement::Constraint],
    /// The request's placement strategies, in order; empty: binpack on memory.
    pub placement_strategy: &'a [crate::placement::Strategy],
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
    /// Counts committed write transactions: watchers (`WatchTasks`) wake on every commit and
    /// read again what they watch.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// Seals and opens the values of task secrets (`DIR/secrets.key`).
    secret_key: Arc<crate::secrets::SecretKey>,
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// A new random ID (a version 4 UUID, lowercase hex with dashes) for a task or an instance.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Store {
    /// Opens (or creates) `dir/scheduler.redb`, and the key of its secrets,
    /// `dir/secrets.key` (made on first start; refused when others may read it or it is
    /// malformed). The directory must exist.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let secret_key = Arc::new(crate::secrets::SecretKey::load_or_create(dir)?);
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = Self {
            db: Arc::new(db),
            commits: Arc::new(tokio::sync::watch::Sender::new(0)),
            secret_key,
        };
        store.write(|txn| {
            txn.open_table(CLUSTERS)?;
            txn.open_table(INSTANCES)?;
            txn.open_table(TASKS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(TASK_DEFS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(JOIN_TOKENS)?;
            txn.open_table(API_TOKENS)?;
            txn.open_table(AGENT_CERTS)?;
            txn.open_table(CLIENT_CERTS)?;
            txn.open_table(services::SERVICES)?;
            txn.open_table(SECRETS)?;
            let filled = groups::fill_task_groups(txn)?;
            if filled > 0 {
                tracing::info!(tasks = filled, "filled in the task group of stored tasks");
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// Wakes on every committed write from now on (whatever it changed): subscribe before
    /// reading, so that no commit between the read and the wait is missed.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write()?;
        match f(&txn) {
            Ok(v) => {
                txn.commit()?;
                self.commits.send_modify(|n| *n = n.wrapping_add(1));
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

    /// Every record of every table, keys and values as stored: what tests compare to prove
    /// that a refused call wrote nothing.
    #[cfg(test)]
    pub(crate) fn contents(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        use redb::ReadableTable;
        self.read(|txn| {
            let mut out = Vec::new();
            for def in [
                CLUSTERS,
                INSTANCES,
                TASKS,
                SESSIONS,
                JOIN_TOKENS,
                API_TOKENS,
                AGENT_CERTS,
                CLIENT_CERTS,
            ] {
                for item in txn.open_table(def)?.iter()? {
                    let (k, v) = item?;
                    out.push((def.to_string(), k.value().to_owned(), v.value().to_vec()));
                }
            }
            for item in txn.open_table(TASK_DEFS)?.iter()? {
                let (k, v) = item?;
                out.push((
                    "task_definitions".into(),
                    format!("{:?}", k.value()),
                    v.value().to_vec(),
                ));
            }
            for item in txn.open_table(SECRETS)?.iter()? {
                let (k, v) = item?;
                out.push((
                    "secrets".into(),
                    format!("{:?}", k.value()),
                    v.value().to_vec(),
                ));
            }
            for item in txn.open_table(OUTBOX)?.iter()? {
                let (k, v) = item?;
                out.push((
                    "outbox".into(),
                    format!("{:?}", k.value()),
                    v.value().to_vec(),
                ));
            }
            Ok(out)
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }
}
