//! berthctl: the command-line client of the control plane (all logic is in `berth_scheduler::cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit here with clap's status 2 (and --help / --version with 0).
    let args = berth_scheduler::cli::Args::parse();
    match berth_scheduler::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berthctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
