//! berth-package-files: writes under a package's staging root what the packages install beside
//! the binaries, generated from the code so it never drifts from it: the agent's configuration
//! file with every key commented (`etc/berth/agent.toml`), and the man pages and bash, zsh and
//! fish completions of berth-agent, berth-scheduler and berthctl.

mod cli_docs;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Parser};

/// Write the generated files of Berth's packages under a staging root.
#[derive(Debug, Parser)]
#[command(name = "berth-package-files")]
struct Args {
    /// The staging root (created as needed); files go to its etc/ and usr/share/.
    root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match write_all(&args.root) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-package-files: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(root: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let config = root.join("etc/berth/agent.toml");
    let dir = config.parent().context("config path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&config, berth_agent::config::default_config_toml())
        .with_context(|| format!("cannot write {}", config.display()))?;
    let mut files = vec![config];
    for cmd in [
        berth_agent::cli::Cli::command(),
        berth_scheduler::daemon_cli::Cli::command(),
        berth_scheduler::cli::Args::command(),
    ] {
        let name = cmd.get_name().to_owned();
        files
            .extend(cli_docs::write_cli_docs(cmd, root).with_context(|| {
                format!("cannot write the man pages and completions of {name}")
            })?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_config_and_every_binarys_pages_and_completions() {
        let root = tempfile::tempdir().expect("tempdir");
        let files = write_all(root.path()).expect("write");
        let rel: Vec<String> = files
            .iter()
            .map(|f| {
                f.strip_prefix(root.path())
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect();
        for expected in [
            "etc/berth/agent.toml",
            "usr/share/man/man1/berth-agent.1",
            "usr/share/man/man1/berth-agent-check-config.1",
            "usr/share/man/man1/berth-scheduler.1",
            "usr/share/man/man1/berthctl.1",
            "usr/share/man/man1/berthctl-update-container-instances-state.1",
            "usr/share/bash-completion/completions/berthctl",
            "usr/share/zsh/vendor-completions/_berth-agent",
            "usr/share/fish/vendor_completions.d/berth-scheduler.fish",
        ] {
            assert!(
                rel.iter().any(|f| f == expected),
                "{expected} missing from {rel:?}"
            );
        }
        let config =
            std::fs::read_to_string(root.path().join("etc/berth/agent.toml")).expect("config");
        assert_eq!(config, berth_agent::config::default_config_toml());
    }
}
