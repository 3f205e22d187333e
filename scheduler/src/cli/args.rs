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
    /// Wait until every task reaches a state; exit status 1 on timeout or failure.
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
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied()))
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
    }

    fn command(args: &[&str]) -> Command {
        parse(args).command
    }

    fn usage_error(args: &[&str]) -> clap::error::ErrorKind {
        match Args::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
            Ok(parsed) => panic!("{args:?} parsed: {parsed:?}"),
            Err(error) => error.kind(),
        }
    }

    #[test]
    fn logs() {
        let Command::Logs(l) = command(&[
            "logs",
            "t1",
            "--container",
            "app",
            "--tail",
            "5",
            "-f",
            "--since",
            "2026-11-18T11:06:40Z",
            "-t",
        ]) else {
            panic!("not logs")
        };
        assert_eq!(
            (l.task.as_str(), l.container.as_deref(), l.tail),
            ("t1", Some("app"), Some(5))
        );
        assert!(l.follow && l.timestamps);
        assert_eq!(
            l.since,
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        );
        let Command::Logs(l) = command(&["logs", "t1", "--since", "1h"]) else {
            panic!("not logs")
        };
        let ago = SystemTime::now().duration_since(l.since.unwrap()).unwrap();
        assert!(
            ago >= Duration::from_secs(3600) && ago < Duration::from_secs(3700),
            "{ago:?}"
        );
        let Command::Logs(l) = command(&["logs", "t1"]) else {
            panic!("not logs")
        };
        assert_eq!(
            (l.container, l.tail, l.since, l.follow),
            (None, None, None, false)
        );
        assert_eq!(
            usage_error(&["logs", "t1", "--since", "yesterday"]),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn global_options() {
        let args = parse(&[
            "--endpoint",
            "http://sched:1",
            "--cluster",
            "prod",
            "-o",
            "json",
            "list-clusters",
        ]);
        assert_eq!(
            (args.endpoint.as_deref(), args.cluster.as_deref()),
            (Some("http://sched:1"), Some("prod"))
        );
        assert_eq!(args.output, OutputFormat::Json);
        // Global options also go after the command.
        let args = parse(&["tasks", "--cluster", "c2", "--output", "table"]);
        assert_eq!(args.cluster.as_deref(), Some("c2"));
        assert_eq!(args.output, OutputFormat::Table);
        if std::env::var_os("BERTH_ENDPOINT").is_none()
            && std::env::var_os("BERTH_CLUSTER").is_none()
        {
            let args = parse(&["list-clusters"]);
            assert_eq!((args.endpoint, args.cluster), (None, None));
            assert_eq!(args.output, OutputFormat::Table);
        }
        assert_eq!(
            usage_error(&["-o", "yaml", "list-clusters"]),
            clap::error::ErrorKind::InvalidValue
        );
        assert_eq!(
            usage_error(&[]),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn cluster_commands() {
        assert_eq!(
            command(&["create-cluster", "c"]),
            Command::CreateCluster { name: "c".into() }
        );
        assert_eq!(command(&["list-clusters"]), Command::ListClusters);
        assert_eq!(
            command(&["describe-clusters", "a", "b"]),
            Command::DescribeClusters {
                names: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            command(&["delete-cluster", "c"]),
            Command::DeleteCluster { name: "c".into() }
        );
        assert_eq!(
            usage_error(&["describe-clusters"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["create-cluster"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn task_definition_commands() {
        assert_eq!(
            command(&["register-task-definition", "--file", "td.json"]),
            Command::RegisterTaskDefinition {
                file: "td.json".into()
            }
        );
        assert_eq!(
            command(&["list-task-definitions"]),
            Command::ListTaskDefinitions { family: None }
        );
        assert_eq!(
            command(&["list-task-definitions", "--family", "web"]),
            Command::ListTaskDefinitions {
                family: Some("web".into())
            }
        );
        assert_eq!(
            command(&["describe-task-definition", "web:3"]),
            Command::DescribeTaskDefinition {
                task_definition: "web:3".into()
            }
        );
        assert_eq!(
            usage_error(&["register-task-definition"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn run_task() {
        assert_eq!(
            command(&["run-task", "--task-definition", "web:2"]),
            Command::RunTask(RunTask {
                task_definition: Some("web:2".into()),
                file: None,
                count: 1,
                started_by: "berthctl".into(),
                network_attachment: None,
                container_instance: None,
                wait: false,
                timeout: None
            })
        );
        assert_eq!(
            command(&[
                "run-task",
                "--file",
                "td.json",
                "--count",
                "3",
                "--started-by",
                "ci"
            ]),
            Command::RunTask(RunTask {
                task_definition: None,
                file: Some("td.json".into()),
                count: 3,
                started_by: "ci".into(),
                network_attachment: None,
                container_instance: None,
                wait: false,
                timeout: None
            })
        );
        let Command::RunTask(run) = command(&[
            "run-task",
            "--task-definition",
            "a",
            "--wait",
            "--timeout",
            "2m",
        ]) else {
            panic!("not run-task")
        };
        assert!(run.wait);
        assert_eq!(run.timeout, Some(Duration::from_secs(120)));
        assert_eq!(
            usage_error(&["run-task", "--task-definition", "a", "--timeout", "5"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["run-task"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["run-task", "--task-definition", "a", "--file", "f"]),
            clap::error::ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["run-task", "--task-definition", "a", "--count", "0"]),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn run_task_with_a_network_attachment() {
        let Command::RunTask(run) = command(&[
            "run-task",
            "--task-definition",
            "vpc",
            "--network-attachment",
            "mac=0A:58:0a:01:00:05,address=10.1.0.5/24,gateway=10.1.0.1",
        ]) else {
            panic!("not run-task")
        };
        assert_eq!(
            run.network_attachment,
            Some(proto::NetworkAttachment {
                mac_address: "0a:58:0a:01:00:05".into(),
                private_ipv4_address: "10.1.0.5".into(),
                subnet: "10.1.0.0/24".into(),
                gateway: "10.1.0.1".into(),
                interface_name: String::new(),
            })
        );
        // Any order; spaces around the parts are fine.
        assert_eq!(
            parse_network_attachment(
                "gateway=10.1.0.1, address=10.1.0.5/24, mac=0a:58:0a:01:00:05"
            ),
            Ok(run.network_attachment.unwrap())
        );
        let form = "use mac=MAC,address=IP/PREFIX,gateway=IP";
        let cases = [
            ("mac=0a:58:0a:01:00:05", format!("`address` and `gateway` are missing: {form}")),
            (
                "mac=0a:58:0a:01:00:05,address=10.1.0.5/24",
                format!("`gateway` is missing: {form}"),
            ),
            ("mac", format!("`mac` is not key=value: {form}")),
            (
                "ip=10.1.0.5/24",
                format!("`ip` is not a key of a network attachment: {form}"),
            ),
            ("mac=a,mac=b", "`mac` is given twice".to_owned()),
            (
                "mac=0a:58,address=10.1.0.5/24,gateway=10.1.0.1",
                "mac `0a:58` is not a MAC address: use six pairs of hex digits like 0a:58:0a:01:00:05".to_owned(),
            ),
            (
                "mac=0a:58:0a:01:00:05,address=10.1.0.5,gateway=10.1.0.1",
                "address `10.1.0.5` is not an IPv4 address with the subnet's prefix length, like 10.1.0.5/24".to_owned(),
            ),
            (
                "mac=0a:58:0a:01:00:05,address=10.1.0.5/24,gateway=router",
                "gateway `router` is not an IPv4 address".to_owned(),
            ),
            (
                "mac=0a:58:0a:01:00:05,address=10.1.0.5/24,gateway=10.1.1.1",
                "network attachment: gateway 10.1.1.1 is not in subnet 10.1.0.0/24".to_owned(),
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse_network_attachment(text), Err(message), "{text}");
        }
        // clap names the flag.
        let error = Args::try_parse_from([
            "berthctl",
            "run-task",
            "--task-definition",
            "vpc",
            "--network-attachment",
            "mac=x",
        ])
        .unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            error.to_string().contains("--network-attachment"),
            "{error}"
        );
    }

    #[test]
    fn task_commands_and_aliases() {
        let all = Command::ListTasks {
            container_instance: None,
            desired_status: None,
        };
        assert_eq!(command(&["list-tasks"]), all);
        assert_eq!(command(&["tasks"]), all);
        assert_eq!(
            command(&[
                "tasks",
                "--container-instance",
                "i-1",
                "--desired-status",
                "STOPPED"
            ]),
            Command::ListTasks {
                container_instance: Some("i-1".into()),
                desired_status: Some(DesiredStatusArg::Stopped)
            }
        );
        assert_eq!(
            command(&["describe-tasks", "t1", "t2"]),
            Command::DescribeTasks {
                ids: vec!["t1".into(), "t2".into()]
            }
        );
        assert_eq!(
            command(&["stop-task", "t1"]),
            Command::StopTask {
                id: "t1".into(),
                reason: None
            }
        );
        assert_eq!(
            command(&["stop-task", "t1", "--reason", "done"]),
            Command::StopTask {
                id: "t1".into(),
                reason: Some("done".into())
            }
        );
        assert_eq!(
            usage_error(&["describe-tasks"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn instance_commands_and_aliases() {
        assert_eq!(
            command(&["list-container-instances"]),
            Command::ListContainerInstances
        );
        assert_eq!(command(&["instances"]), Command::ListContainerInstances);
        assert_eq!(
            command(&["describe-container-instances", "i-1"]),
            Command::DescribeContainerInstances {
                ids: vec!["i-1".into()]
            }
        );
        assert_eq!(
            command(&["deregister-container-instance", "i-1"]),
            Command::DeregisterContainerInstance {
                id: "i-1".into(),
                force: false
            }
        );
        assert_eq!(
            command(&[
                "create-client-certificate",
                "--name",
                "alice@ops",
                "--role",
                "admin",
                "--ttl",
                "7d",
                "--cert-out",
                "a.crt",
                "--key-out",
                "a.key"
            ]),
            Command::CreateClientCertificate {
                name: "alice@ops".into(),
                role: "admin".into(),
                ttl: Some(Duration::from_secs(7 * 24 * 3600)),
                cert_out: "a.crt".into(),
                key_out: "a.key".into(),
            }
        );
        assert_eq!(
            command(&["list-client-certificates"]),
            Command::ListClientCertificates
        );
        assert_eq!(
            command(&["revoke-client-certificate", "0a1b"]),
            Command::RevokeClientCertificate {
                serial: "0a1b".into()
            }
        );
        assert_eq!(
            command(&["deregister-container-instance", "i-1", "--force"]),
            Command::DeregisterContainerInstance {
                id: "i-1".into(),
                force: true
            }
        );
    }

    #[test]
    fn wait() {
        assert_eq!(
            command(&["wait", "tasks-running", "t1", "t2"]),
            Command::Wait {
                condition: WaitCondition::TasksRunning,
                ids: vec!["t1".into(), "t2".into()],
                timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(
            command(&["wait", "tasks-stopped", "t1", "--timeout", "5"]),
            Command::Wait {
                condition: WaitCondition::TasksStopped,
                ids: vec!["t1".into()],
                timeout: Duration::from_secs(5)
            }
        );
        let Command::Wait { timeout, .. } =
            command(&["wait", "tasks-stopped", "t1", "--timeout", "1h30m"])
        else {
            panic!("not wait")
        };
        assert_eq!(timeout, Duration::from_secs(5400));
        assert_eq!(
            usage_error(&["wait", "tasks-gone", "t1"]),
            clap::error::ErrorKind::InvalidValue
        );
        assert_eq!(
            usage_error(&["wait", "tasks-running"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["wait", "tasks-running", "t", "--timeout", "soon"]),
            clap::error::ErrorKind::ValueValidation
        );
    }
}
