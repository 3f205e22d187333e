//! berth-agent: parses flags, loads the configuration (file, then environment, then flags),
//! starts tracing, and runs the agent until SIGTERM or SIGINT. A bad configuration exits 64
//! with every bad key listed.

use std::process::ExitCode;

use berth_agent::cli::{Cli, Command, FirstBootArgs};
use berth_agent::config::{self, LoadedConfig};
use berth_agent::first_boot::Outcome;
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
        Some(Command::FirstBoot(ref args)) => first_boot(&cli, args),
        // Needs no configuration: the agent gives it everything on its command line.
        Some(Command::TaskHolder(ref args)) => {
            let error = berth_runtime::hold_namespaces(&args.cgroup_procs);
            eprintln!("berth-agent task-holder: {error}");
            ExitCode::FAILURE
        }
        Some(Command::RecordExit) => match load(&cli) {
            Ok(loaded) => record_exit(&loaded.config.data_dir),
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

/// `berth-agent first-boot`: exit 0 when done (or done before), 64 when the user data, the
/// tags or the configuration they make are wrong, 1 for anything else.
fn first_boot(cli: &Cli, args: &FirstBootArgs) -> ExitCode {
    let options = berth_agent::first_boot::FirstBoot {
        config: cli.config.clone(),
        user_data: args.user_data.clone(),
        imds_endpoint: (!args.no_imds).then(|| args.imds_endpoint.clone()),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(berth_agent::first_boot::run(&options)) {
        Ok(Outcome::AlreadyDone(path)) => {
            println!(
                "first boot done before ({} exists); nothing to do",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::Written { path, taken, notes }) => {
            for note in notes {
                println!("{note}");
            }
            for (key, origin) in &taken {
                println!("{key} from {origin}");
            }
            println!("wrote {} ({} keys)", path.display(), taken.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = if e.is_bad_input() {
                ExitCode::from(64)
            } else {
                ExitCode::FAILURE
            };
            eprintln!("berth-agent first-boot: {:#}", anyhow::Error::new(e));
            code
        }
    }
}

/// `berth-agent record-exit`: exit 0 once the ending is kept, 1 when it cannot be.
fn record_exit(data_dir: &std::path::Path) -> ExitCode {
    match berth_agent::last_exit::record(data_dir, |key| std::env::var(key).ok()) {
        Ok(path) => {
            println!("kept how the agent's run ended in {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-agent record-exit: {:#}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
    }
}

/// The most threads the agent's blocking work (store commits, which redb runs one at a time
/// anyway, and short file-system calls) may hold at once; more of it waits in line. Without a
/// cap a burst of starts holds a thread for each call waiting on the store's write lock, and
/// each thread keeps memory of its own after the burst (its stack, and the allocator's arena
/// it touched).
const BLOCKING_THREADS: usize = 8;

fn run(loaded: LoadedConfig) -> ExitCode {
    berth_agent::telemetry::init_tracing(&loaded.config.log_level, loaded.config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
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
