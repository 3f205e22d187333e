//! berthctl's service subcommands (flattened into its command list).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Create a service: the scheduler keeps --desired-count tasks of --task-definition running
    /// (ECS CreateService).
    CreateService(ServiceFields),
    /// Change a service's desired count, task definition, deployment configuration or
    /// placement (ECS UpdateService).
    UpdateService(UpdateService),
    /// Delete a service: its tasks are stopped (ECS DeleteService).
    DeleteService {
        service: String,
        /// Delete it even though its desired count is above 0.
        #[arg(long)]
        force: bool,
    },
    /// Show services with their counts and latest events (ECS DescribeServices).
    DescribeServices {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// List the cluster's services (ECS ListServices).
    #[command(visible_alias = "services")]
    ListServices {
        /// Only REPLICA or DAEMON services.
        #[arg(long)]
        scheduling_strategy: Option<String>,
    },
    /// Roll a task definition out to a service (the CI/CD entry point): with --wait, print
    /// the deployment's progress and exit 0 once it is COMPLETED, 1 with the reason if it
    /// FAILED (or was rolled back).
    Deploy {
        service: String,
        /// FAMILY or FAMILY:REV, or an ECS task-definition JSON file (registered first as its
        /// family's next revision).
        #[arg(long)]
        task_definition: String,
        /// Follow the deployment until it is COMPLETED or FAILED.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits: seconds, or a duration such as 30s, 10m or 1h [default: 10m].
        #[arg(long, requires = "wait", value_parser = berth_policy::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Print a service's events, oldest first; with --follow, the ones that come later too.
    Events {
        service: String,
        /// Keep printing events as they happen, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// The fields CreateService takes; flags override `--cli-input-json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub(crate) struct ServiceFields {
    /// The service's name.
    #[arg(long)]
    pub(crate) service_name: Option<String>,
    /// family or family:revision.
    #[arg(long)]
    pub(crate) task_definition: Option<String>,
    /// How many tasks to keep running (REPLICA).
    #[arg(long)]
    pub(crate) desired_count: Option<u32>,
    /// REPLICA (default) or DAEMON (one task on every ACTIVE instance).
    #[arg(long)]
    pub(crate) scheduling_strategy: Option<String>,
    /// ECS JSON, e.g. '[{"type":"distinctInstance"}]'.
    #[arg(long)]
    pub(crate) placement_constraints: Option<String>,
    /// ECS JSON, e.g. '[{"type":"binpack","field":"memory"}]'.
    #[arg(long)]
    pub(crate) placement_strategy: Option<String>,
    /// ECS JSON, e.g. '{"minimumHealthyPercent":50,"maximumPercent":200}'.
    #[arg(long)]
    pub(crate) deployment_configuration: Option<String>,
    /// How long failing health checks of a new task are ignored.
    #[arg(long)]
    pub(crate) health_check_grace_period_seconds: Option<u32>,
    /// The request as ECS JSON (`aws ecs create-service --cli-input-json`): a file path,
    /// file://PATH, or the JSON itself.
    #[arg(long)]
    pub(crate) cli_input_json: Option<String>,
}

/// UpdateService: the service, then the fields to change.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub(crate) struct UpdateService {
    /// The service (or `service` in --cli-input-json).
    pub(crate) service: Option<String>,
    #[command(flatten)]
    pub(crate) fields: ServiceFields,
}

/// Where `--cli-input-json` points: a file (`file://` optional) unless it starts with `{`.
pub(crate) fn input_source(given: &str) -> Option<PathBuf> {
    let trimmed = given.trim_start();
    if trimmed.starts_with('{') {
        None
    } else {
        Some(PathBuf::from(
            given.strip_prefix("file://").unwrap_or(given),
        ))
    }
}
