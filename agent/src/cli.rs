//! berth-agent's command line. In the library so the man page and shell completions are
//! generated from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// berth-agent's command line: the configuration flags and the subcommands.
#[derive(Debug, Parser)]
#[command(name = "berth-agent", version = env!("BERTH_LONG_VERSION"), about = "The Berth host agent")]
pub struct Cli {
    /// Configuration file [default: /etc/berth/agent.toml]
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What berth-agent does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the configuration and print every effective value with its source.
    CheckConfig,
    /// Print a configuration file with every key commented out at its default (what the
    /// packages install as /etc/berth/agent.toml).
    PrintDefaultConfig,
    /// Take the cluster, scheduler endpoint, CA pin and join token from the instance's
    /// cloud-init user data (a berth: section) and EC2 tags (berth:KEY), and write them once
    /// to first-boot.toml beside the configuration file (run by berth-agent-first-boot.service).
    FirstBoot(FirstBootArgs),
    /// Keep how the agent's run just ended (systemd's INVOCATION_ID, SERVICE_RESULT,
    /// EXIT_CODE and EXIT_STATUS) in the data dir, so the next run tells a crash while it
    /// resumed tasks from a stop or an outside kill (run by the unit's ExecStopPost=).
    RecordExit,
    /// Hold a task's shared PID and IPC namespaces (pidMode or ipcMode task) as their first
    /// process; started by the agent itself, never by hand.
    #[command(hide = true)]
    TaskHolder(TaskHolderArgs),
}

/// The subcommand the runtime runs as a task's namespace holder.
pub const TASK_HOLDER: &str = "task-holder";

/// Where `berth-agent task-holder` puts itself.
#[derive(Debug, clap::Args)]
pub struct TaskHolderArgs {
    /// A cgroup.procs file to join (one a cgroup hierarchy)
    #[arg(long, value_name = "PATH")]
    pub cgroup_procs: Vec<std::path::PathBuf>,
}

/// Where `berth-agent first-boot` looks.
#[derive(Debug, clap::Args)]
pub struct FirstBootArgs {
    /// The user data cloud-init left
    #[arg(long, value_name = "PATH", default_value = crate::first_boot::DEFAULT_USER_DATA)]
    pub user_data: PathBuf,
    /// The EC2 instance metadata service
    #[arg(long, value_name = "URL", default_value = crate::first_boot::DEFAULT_IMDS_ENDPOINT)]
    pub imds_endpoint: String,
    /// Do not ask the instance metadata service for tags
    #[arg(long)]
    pub no_imds: bool,
}
