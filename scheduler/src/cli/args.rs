//! berthctl's command line: global options and one subcommand per ControlService call.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use berth_proto::v1 as proto;
use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

use crate::attachment;

/// berthctl: the command-line client of the Berth control plane.
#[derive(Debug, Parser)]
#[command(name = "berthctl", version = env!("BERTH_LONG_VERSION"), about, propagate_version = true)]
pub struct Args {
    /// The scheduler's ControlService URL [default: the config file's, else
    /// https://127.0.0.1:7700].
    #[arg(long, env = "BERTH_ENDPOINT", global = true)]
    pub(crate) endpoint: Option<String>,
    /// The CA that signs the scheduler's certificate (PEM).
    #[arg(long, env = "BERTH_CA_FILE", global = true)]
    pub(crate) ca_file: Option<PathBuf>,
    /// An API token (prefer BERTH_TOKEN or --token-file: a flag shows in `ps`).
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// A file holding the API token.
    #[arg(long, global = true, conflicts_with = "token")]
    pub(crate) token_file: Option<PathBuf>,
    /// A client certificate of the cluster CA (PEM), with --key-file
    /// (`berthctl create-client-certificate` makes one).
    #[arg(long, env = "BERTH_CERT_FILE", global = true, requires = "key_file")]
    pub(crate) cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long, env = "BERTH_KEY_FILE", global = true, requires = "cert_file")]
    pub(crate) key_file: Option<PathBuf>,
    /// A berthctl config file (TOML: endpoint, ca_file or ca, token, cert_file, key_file)
    /// [default: ~/.config/berth/config.toml when it exists].
    #[arg(long, env = "BERTH_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// The cluster the command applies to [default: default].
    #[arg(long, env = "BERTH_CLUSTER", global = true)]
    pub(crate) cluster: Option<String>,
    /// Output format: a table for people, or ECS-style JSON.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub(crate) output: OutputFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub(crate) enum Command {
    /// Create a cluster.
    CreateCluster { name: String },
    /// List the clusters' names.
    ListClusters,
    /// Describe clusters.
    DescribeClusters {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete a cluster that has no instances and no tasks left.
    DeleteCluster { name: String },
    /// Register a task definition (ECS JSON) as its family's next revision.
    RegisterTaskDefinition {
        /// The ECS RegisterTaskDefinition JSON file.
        #[arg(long)]
        file: PathBuf,
    },
    /// List task definitions as family:revision, oldest first.
    ListTaskDefinitions {
        /// Only this family.
        #[arg(long)]
        family: Option<String>,
    },
    /// Describe a task definition: FAMILY (latest revision) or FAMILY:REV.
    DescribeTaskDefinition { task_definition: String },
    /// Run tasks of a registered definition, or of a definition file (registered first).
    RunTask(RunTask),
    /// List the cluster's tasks.
    #[command(visible_alias = "tasks")]
    ListTasks {
        /// Only tasks on this container instance.
        #[arg(long)]
        container_instance: Option<String>,
        /// Only tasks whose desired status is this.
        #[arg(long, value_enum)]
        desired_status: Option<DesiredStatusArg>,
    },
    /// Describe tasks.
    DescribeTasks {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop a task.
    StopTask {
        id: String,
        /// Why, for people (shown as the task's stoppedReason).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the cluster's container instances.
    #[command(visible_alias = "instances")]
    ListContainerInstances,
    /// Describe container instances.
    DescribeContainerInstances {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Deregister a container instance: it takes no more tasks, its agent's certificate is
    /// revoked and a connected agent is cut off. Refused while tasks on it are not STOPPED.
    DeregisterContainerInstance {
        id: String,
        /// Also stop the tasks on it that are not STOPPED.
        #[arg(long)]
        force: bool,
    },
    /// Print a container's log: its stdout lines to stdout, its stderr lines to stderr.
    Logs(Logs),
    /// Create a join token for the cluster's agents; prints it and the CA pin they check.
    CreateJoinToken {
        /// How long it is valid: a duration such as 30m, 1h or 7d.
        #[arg(long, default_value = "24h", value_parser = berth_policy::parse_duration)]
        ttl: Duration,
        /// How many agents may join with it (unlimited when not given).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        uses: Option<u32>,
    },
    /// List join tokens (IDs only; secrets are never shown again).
    ListJoinTokens,
    /// Delete a join token; agents that joined with it keep their certificates.
    DeleteJoinToken { id: String },
    /// Create an API token with a role, for --cluster only when given.
    CreateApiToken {
        #[arg(long, value_parser = ["read-only", "operator", "admin"])]
        role: String,
        /// How long it is valid (a duration such as 90d); forever when not given.
        #[arg(long, value_parser = berth_policy::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Make a client certificate of the cluster CA for a role, for --cluster only when given:
    /// the key is made here and never sent; the scheduler signs its request.
    CreateClientCertificate {
        /// Who will hold it, as logs name it (e.g. alice@ops).
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read-only", "operator", "admin"])]
        role: String,
        /// How long it is valid (a duration such as 90d) [default: 30d].
        #[arg(long, value_parser = berth_policy::parse_duration)]
        ttl: Option<Duration>,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        cert_out: PathBuf,
        /// Where to write the key (PEM, mode 0600); it must not exist yet.
        #[arg(long)]
        key_out: PathBuf,
    },
    /// List the client certificates the scheduler issued (serial, holder, role, scope,
    /// expiry, revocation).
    ListClientCertificates,
    /// Revoke a client certificate by its serial number (see list-client-certificates):
    /// every call made with it is refused from now on.
    RevokeClientCertificate { serial: String },
    /// List API tokens (IDs only).
    ListApiTokens,
    /// Delete an API token.
    DeleteApiToken { id: String },
    /// Store a task secret in the cluster (encrypted at rest; no command shows it again).
    /// Containers read it through `secrets` (`valueFrom`: NAME) or `repositoryCredentials`.
    CreateSecret {
        /// 1 to 512 letters, digits and / _ + = . @ -.
        name: String,
        /// Read the value from this file (`-` for standard input), as it is.
        #[arg(
            long,
            conflicts_with = "from_literal",
            required_unless_present = "from_literal"
        )]
        from_file: Option<std::path::PathBuf>,
        /// The value itself (it stays in the shell's history: prefer --from-file).
        #[arg(long)]
        from_literal: Option<String>,
        /// Replace the value of an existing secret (running tasks keep the one they have).
        #[arg(long)]
        overwrite: bool,
    },
    /// List the cluster's secrets: names, sizes and times, never values.
    ListSecrets,
    /// Delete a secret (running tasks keep the value they started with).
    DeleteSecret { name: String },
    /// CPU %, memory use / limit, network and block I/O and pids of tasks and their
    /// containers (or of a host), from the scheduler's metrics window; a table refreshed
    /// until interrupted, like `docker stats`.
    Stats {
        /// Tasks to show; every task of the cluster with metrics when none is given.
        tasks: Vec<String>,
        /// Print one sample and exit (JSON output is always one sample).
        #[arg(long)]
        no_stream: bool,
        /// Show this container instance (the host) instead of tasks.
        #[arg(long, conflicts_with = "tasks")]
        instance: Option<String>,
    },
    /// Set container instances ACTIVE or DRAINING. A DRAINING instance takes no new task;
    /// its tasks keep running until they are stopped.
    UpdateContainerInstancesState {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, value_enum)]
        status: InstanceStatusArg,
    },
    /// The service commands (create-service, ..., events).
    #[command(flatten)]
    Service(super::services::ServiceCommand),
    /// An instance's images: size, last use by a task, and the tasks that hold them now.
    ListImages {
        /// The container instance.
        #[arg(long)]
        instance: String,
    },
    /// Run the instance's image collector now, under its usual rules; prints what was
    /// removed and the bytes freed.
    CollectImages {
        /// The container instance.
        #[arg(long)]
        instance: String,
    },
    /// Wait until every task (or service) reaches a state; exit status 1 on timeout or failure.
    Wait {
        condition: WaitCondition,
        #[arg(required = true)]
        ids: Vec<String>,
        /// How long to wait: seconds, or a duration such as 500ms, 30s, 2m or 1h30m.
        #[arg(long, default_value = "60", value_parser = berth_policy::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Debug, PartialEq, Eq, clap::Args)]
#[command(group(ArgGroup::new("definition").required(true).args(["task_definition", "file"])))]
pub(crate) struct RunTask {
    /// A registered definition: FAMILY (latest revision) or FAMILY:REV.
    #[arg(long)]
    pub(crate) task_definition: Option<String>,
    /// An ECS task-definition JSON file, registered as its family's next revision, then run.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// How many tasks to run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) count: u32,
    /// Who started the tasks.
    #[arg(long, default_value = "berthctl")]
    pub(crate) started_by: String,
    /// The ENI an awsvpc task gets (one task), already attached to the instance: its MAC
    /// address, its IPv4 address with the subnet's prefix length, and the subnet's gateway,
    /// e.g. mac=0a:58:0a:01:00:05,address=10.1.0.5/24,gateway=10.1.0.1.
    #[arg(
        long,
        value_name = "mac=MAC,address=IP/PREFIX,gateway=IP",
        value_parser = parse_network_attachment
    )]
    pub(crate) network_attachment: Option<proto::NetworkAttachment>,
    /// Place the tasks only on this container instance (as ECS StartTask), e.g. the one the
    /// ENI of --network-attachment is attached to.
    #[arg(long, value_name = "ID")]
    pub(crate) container_instance: Option<String>,
    /// Placement constraints in ECS's shorthand, one a value (at most 10, with the
    /// definition's own): type=distinctInstance, or
    /// type=memberOf,expression="attribute:ecs.availability-zone in [us-east-1a, us-east-1b]".
    #[arg(
        long,
        num_args = 1..,
        value_name = "type=TYPE[,expression=EXPR]",
        value_parser = parse_placement_constraint
    )]
    pub(crate) placement_constraints: Vec<proto::PlacementConstraint>,
    /// Placement strategies in ECS's shorthand, applied in order (at most 5; default binpack on
    /// memory): type=spread,field=attribute:ecs.availability-zone, type=spread,field=instanceId,
    /// type=binpack,field=cpu|memory or type=random.
    #[arg(
        long,
        num_args = 1..,
        value_name = "type=TYPE[,field=FIELD]",
        value_parser = parse_placement_strategy
    )]
    pub(crate) placement_strategy: Vec<proto::PlacementStrategy>,
    /// After printing the tasks, wait until every one is RUNNING (as `wait tasks-running`):
    /// exit status 1 when one stops first or the timeout passes.
    #[arg(long)]
    pub(crate) wait: bool,
    /// How long --wait waits: seconds, or a duration such as 500ms, 30s or 2m [default: 60].
    #[arg(long, requires = "wait", value_parser = berth_policy::parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug, PartialEq, Eq, clap::Args)]
pub(crate) struct Logs {
    /// The task's ID.
    pub(crate) task: String,
    /// The container, by its name in the task (needed when the task has several).
    #[arg(long)]
    pub(crate) container: Option<String>,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<u64>,
    /// Keep printing new lines until the container stops.
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Only lines since TIME: RFC 3339 (2026-11-27T10:00:00Z) or a duration ago (10m, 1h, 30s).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub(crate) since: Option<SystemTime>,
    /// Prefix each line with the time it was logged (RFC 3339, UTC).
    #[arg(short = 't', long)]
    pub(crate) timestamps: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WaitCondition {
    /// Every task is RUNNING (a task that stops first fails the wait).
    TasksRunning,
    /// Every task is STOPPED (the last status a task shows).
    TasksStopped,
    /// Every service (the IDs are service names) is ACTIVE with one deployment and its
    /// running count at its desired count (ECS's services-stable waiter).
    ServicesStable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(crate) enum DesiredStatusArg {
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(crate) enum InstanceStatusArg {
    Active,
    Draining,
}

impl InstanceStatusArg {
    /// The status as the scheduler spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InstanceStatusArg::Active => "ACTIVE",
            InstanceStatusArg::Draining => "DRAINING",
        }
    }
}

/// The keys of `--network-attachment`, in the order they are written.
const ATTACHMENT_KEYS: [&str; 3] = ["mac", "address", "gateway"];
const ATTACHMENT_FORM: &str = "mac=MAC,address=IP/PREFIX,gateway=IP";

/// `--network-attachment mac=MAC,address=IP/PREFIX,gateway=IP`: the subnet is the network of
/// the address's prefix (10.1.0.5/24 → 10.1.0.0/24); the result passes the scheduler's checks.
fn parse_placement_constraint(text: &str) -> Result<proto::PlacementConstraint, String> {
    let c = crate::placement::Constraint::parse(text).map_err(|e| e.to_string())?;
    Ok(proto::PlacementConstraint {
        r#type: c.kind().to_owned(),
        expression: c.expression().to_owned(),
    })
}

fn parse_placement_strategy(text: &str) -> Result<proto::PlacementStrategy, String> {
    let s = crate::placement::Strategy::parse(text).map_err(|e| e.to_string())?;
    Ok(proto::PlacementStrategy {
        r#type: s.kind().to_owned(),
        field: s.field(),
    })
}

fn parse_network_attachment(text: &str) -> Result<proto::NetworkAttachment, String> {
    let mut values: [Option<&str>; 3] = [None; 3];
    for item in text.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("`{item}` is not key=value: use {ATTACHMENT_FORM}"));
        };
        let key = key.trim();
        let Some(slot) = ATTACHMENT_KEYS.iter().position(|k| *k == key) else {
            return Err(format!(
                "`{key}` is not a key of a network attachment: use {ATTACHMENT_FORM}"
            ));
        };
        if values[slot].replace(value.trim()).is_some() {
            return Err(format!("`{key}` is given twice"));
        }
    }
    let [Some(mac), Some(address), Some(gateway)] = values else {
        let missing: Vec<String> = ATTACHMENT_KEYS
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| format!("`{k}`"))
            .collect();
        let verb = if missing.len() == 1 { "is" } else { "are" };
        return Err(format!(
            "{} {verb} missing: use {ATTACHMENT_FORM}",
            missing.join(" and ")
        ));
    };
    if !attachment::is_mac(mac) {
        return Err(format!(
            "mac `{mac}` is not a MAC address: use six pairs of hex digits like 0a:58:0a:01:00:05"
        ));
    }
    let Ok(cidr) = address.parse::<Ipv4Net>() else {
        return Err(format!(
            "address `{address}` is not an IPv4 address with the subnet's prefix length, like \
             10.1.0.5/24"
        ));
    };
    if gateway.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("gateway `{gateway}` is not an IPv4 address"));
    }
    let requested = proto::NetworkAttachment {
        mac_address: mac.to_owned(),
        private_ipv4_address: cidr.addr().to_string(),
        subnet: cidr.trunc().to_string(),
        gateway: gateway.to_owned(),
        interface_name: String::new(),
    };
    attachment::checked(&requested).map_err(|error| error.to_string())
}

/// `--since`: RFC 3339, or a duration ago ("10m", "1h", "30s", "500ms").
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Some(t) = super::time::parse_rfc3339(text) {
        return Ok(t);
    }
    berth_policy::parse_duration(text)
        .ok()
        .and_then(|ago| SystemTime::now().checked_sub(ago))
        .ok_or_else(|| {
            format!("`{text}` is not a time: use RFC 3339 (2026-11-27T10:00:00Z) or a duration ago (10m, 1h, 30s)")
        })
}

#[cfg(test)]
mod tests;
