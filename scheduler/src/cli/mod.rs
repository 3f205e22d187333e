//! berthctl, the command-line client of the control plane: argument parsing, the
//! ControlService calls, and table or ECS-style JSON output.
//!
//! The binary (`src/bin/berthctl.rs`) parses [`Args`], calls [`run`] and turns a [`CliError`]
//! into `berthctl: <message>` on stderr and [`CliError::exit_code`].

mod access;
mod args;
mod client_certs;
mod commands;
mod error;
mod images;
mod json;
mod names;
mod pull_progress;
mod secrets;
mod services;
mod stats;
mod table;
mod time;
mod tokens;
mod wait;

pub use args::Args;
pub use error::CliError;

/// Runs one berthctl command to completion, writing its output to stdout.
pub fn run(args: Args) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match runtime.block_on(commands::execute(args, &mut out)) {
        // A reader that went away (`berthctl tasks | head -1`) is not an error.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}
