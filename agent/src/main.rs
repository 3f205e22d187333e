//! berth-agent: parses flags, loads the configuration (file, then environment, then flags),
//! starts tracing, and runs the agent until SIGTERM or SIGINT. A bad configuration exits 64
//! with every bad key listed.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_agent::config::{self, LoadedConfig, Overrides};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "berth-agent", version = env!("BERTH_LONG_VERSION"), about = "The Berth host agent")]
struct Cli {
    /// Configuration file [default: /etc/berth/agent.toml]
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the configuration and print every effective value with its source.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load_from_system(cli.config.as_deref(), &cli.overrides) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("berth-agent: invalid configuration:\n{errors}");
            return ExitCode::from(64);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            print!("{}", loaded.render());
            ExitCode::SUCCESS
        }
        Command::Run => run(loaded),
    }
}

fn run(loaded: LoadedConfig) -> ExitCode {
    berth_agent::telemetry::init_tracing(&loaded.config.log_level, loaded.config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(berth_agent::run(
        loaded.config,
        berth_agent::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "berth-agent stopped");
            eprintln!("berth-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
