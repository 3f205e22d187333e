//! The store's errors and the messages of the ones a user meets (no room, ports taken, a
//! cluster still in use, a definition not found).

use std::path::PathBuf;

use super::MAX_RUN_COUNT;
use crate::attachment::AttachmentError;

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
    /// A service call is refused (`services`).
    #[error(transparent)]
    Service(super::ServiceError),
    #[error("{}", no_connected_instance_message(cluster, draining, degraded))]
    NoConnectedInstance {
        cluster: String,
        /// The cluster's instances that are connected but DRAINING.
        draining: Vec<String>,
        /// The cluster's connected ACTIVE instances whose agent cannot write its data dir,
        /// with why.
        degraded: Vec<(String, String)>,
    },
    #[error("invalid container instance status {status:?}: use ACTIVE or DRAINING")]
    InvalidInstanceStatus { status: String },
    #[error(
        "container instance {id} in cluster {cluster} cannot take tasks: {why}; run the task elsewhere or without --container-instance"
    )]
    InstanceUnavailable {
        cluster: String,
        id: String,
        why: String,
    },
    #[error(
        "no instance of cluster {cluster} has the runtimePlatform of {task_definition}: {}; register an instance of that platform, or change runtimePlatform",
        instances.join("; ")
    )]
    NoMatchingPlatform {
        cluster: String,
        task_definition: String,
        /// Each candidate instance with why it does not match.
        instances: Vec<String>,
    },
    /// A placement constraint or strategy that cannot be applied.
    #[error("invalid placement: {why}")]
    InvalidPlacement { why: String },
    /// Constraints (or awsvpc addresses) left no instance for a task; `why` counts what each
    /// check excluded.
    #[error("unable to place a task of {task_definition} in cluster {cluster} because {why}")]
    NotPlaced {
        cluster: String,
        task_definition: String,
        why: String,
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
    #[error(
        "container instance {id} in cluster {cluster} has {tasks} task(s) not yet STOPPED; stop them first, or deregister with --force to stop them too"
    )]
    InstanceHasTasks {
        cluster: String,
        id: String,
        tasks: usize,
    },
    #[error(
        "container instance {id} in cluster {cluster} was deregistered; an agent joins again with a new join token (insecure: remove its registration from the data dir)"
    )]
    InstanceDeregistered { cluster: String, id: String },
    /// A state change that is neither the instance's next sequence number nor one already
    /// received.
    #[error(
        "state change {got} of container instance {id} is out of sequence: the next one is {expected}; an agent sends its state changes in order, each once numbered"
    )]
    SequenceGap { id: String, expected: u64, got: u64 },
    /// An ack, or a session's `last_applied_seq`, above anything issued to the instance.
    #[error(
        "{what} {got} of container instance {id} is above the highest sequence number issued to it ({issued})"
    )]
    NotIssued {
        what: &'static str,
        id: String,
        got: u64,
        issued: u64,
    },
    /// A report on a task another instance runs.
    #[error("container instance {id} reported on task {task_id}, which runs on another instance")]
    NotYourTask { id: String, task_id: String },
    #[error("instance {id} already exists")]
    InstanceExists { id: String },
    #[error(
        "a registration needs an instance identity (instance_identity) or a container instance ID"
    )]
    NoIdentity,
    /// A presented token is not accepted.
    #[error("{}", token_refused_message(kind, id, reason))]
    TokenRefused {
        kind: &'static str,
        id: String,
        reason: TokenRefusal,
    },
    #[error("no {kind} token {id}")]
    TokenNotFound { kind: &'static str, id: String },
    #[error(
        "no client certificate with serial {serial}; `berthctl list-client-certificates` shows them"
    )]
    ClientCertificateNotFound { serial: String },
    /// The secrets key cannot be used (the store refuses to open without it).
    #[error(transparent)]
    SecretKey(#[from] crate::secrets::KeyError),
    /// A secret's name or value breaks the rules (`crate::secrets`).
    #[error("{0}")]
    InvalidSecret(String),
    #[error(
        "secret {name} already exists in cluster {cluster}; pass --overwrite to replace its value"
    )]
    SecretExists { cluster: String, name: String },
    #[error("no secret {name} in cluster {cluster}; `berthctl list-secrets` shows them")]
    SecretNotFound { cluster: String, name: String },
}

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not `<id>.<secret>`; the expected shape.
    Malformed(String),
    /// No such token, or the secret does not match.
    Unknown,
    /// Expired at this time.
    Expired(Option<prost_types::Timestamp>),
    /// A join token with no uses left.
    UsedUp,
    /// A join token of another cluster.
    OtherCluster { token: String, asked: String },
}

fn token_refused_message(kind: &str, id: &str, reason: &TokenRefusal) -> String {
    let renew = if kind == "join" {
        "create a new one with `berthctl create-join-token`"
    } else {
        "ask an admin for a new one (`berthctl create-api-token`)"
    };
    match reason {
        TokenRefusal::Malformed(shape) => format!("the {kind} token is malformed: {shape}"),
        TokenRefusal::Unknown => {
            format!("{kind} token {id} is not valid (unknown, deleted, or a wrong secret); {renew}")
        }
        TokenRefusal::Expired(at) => {
            let at = at
                .and_then(|t| jiff::Timestamp::from_second(t.seconds).ok())
                .map_or_else(|| "an unknown time".to_owned(), |t| t.to_string());
            format!("{kind} token {id} expired at {at}; {renew}")
        }
        TokenRefusal::UsedUp => format!("{kind} token {id} has no uses left; {renew}"),
        TokenRefusal::OtherCluster { token, asked } => format!(
            "{kind} token {id} is for cluster {token}, not {asked}; set the agent's cluster to {token} or create a token for {asked}"
        ),
    }
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

fn no_connected_instance_message(
    cluster: &str,
    draining: &[String],
    degraded: &[(String, String)],
) -> String {
    let mut msg = format!("no connected ACTIVE container instance in cluster {cluster}");
    if !degraded.is_empty() {
        msg =
            format!("no connected ACTIVE container instance in cluster {cluster} takes new tasks");
        for (id, why) in degraded {
            msg.push_str(&format!(" (container instance {id}: {why})"));
        }
    }
    match draining {
        [] => {}
        [one] => msg.push_str(&format!(
            " (container instance {one} is DRAINING; berthctl update-container-instances-state {one} --status ACTIVE takes tasks on it again)"
        )),
        many => msg.push_str(&format!(
            " (container instances {} are DRAINING; berthctl update-container-instances-state ID --status ACTIVE takes tasks on one again)",
            many.join(", ")
        )),
    }
    msg
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
