//! berth-agent: parses flags, loads the configuration (file, then environment, then flags),
//! starts tracing, and runs the agent until SIGTERM or SIGINT. A bad configuration exits 64
//! with every bad key listed.

use std::process::ExitCode;

use berth_agent::cli::{Cli, Command};
use berth_agent::config::{self, LoadedConfig};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Needs no configuration: it prints what an unconfigured host has.
        Some(Command::PrintDefaultConfig) => {
            print!("{}", config::default_config_toml());
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig) => match load(&cli) {
            Ok(loaded) => {
                print!("{}", loaded.render());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::Run) | None => match load(&cli) {
            Ok(loaded) => run(loaded),
            Err(code) => code,
        },
    }
}

/// The configuration, or exit code 64 after printing every bad key.
fn load(cli: &Cli) -> Result<LoadedConfig, ExitCode> {
    config::load_from_system(cli.config.as_deref(), &cli.overrides).map_err(|errors| {
        eprintln!("berth-agent: invalid configuration:\n{errors}");
        ExitCode::from(64)
    })
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
