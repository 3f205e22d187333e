//! Man pages and shell completions generated from a binary's clap command, so what packages
//! install always matches the flags the binary parses.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The shells whose completions packages install, with where each file goes under the root
/// of a Debian (and Fedora) file-system layout.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "usr/share/bash-completion/completions/{}"),
    (Shell::Zsh, "usr/share/zsh/vendor-completions/_{}"),
    (Shell::Fish, "usr/share/fish/vendor_completions.d/{}.fish"),
];

/// Writes, under `root` (a package's staging root, created as needed), the man page of `cmd` in
/// section 1 (`usr/share/man/man1/<name>.1`), one page a visible subcommand
/// (`<name>-<subcommand>.1`, as git and cargo do), and its bash, zsh and fish completions.
/// Returns the files written: the pages sorted by name, then the completions.
pub(crate) fn write_cli_docs(cmd: clap::Command, root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_owned();
    let man_dir = root.join("usr/share/man/man1");
    std::fs::create_dir_all(&man_dir)?;
    // clap_mangen names each subcommand's page by its display name, `<name>-<subcommand>`.
    clap_mangen::generate_to(cmd.clone(), &man_dir)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man_dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    pages.retain(|p| {
        p.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f == format!("{name}.1") || f.starts_with(&format!("{name}-")))
    });
    pages.sort();
    let mut written = pages;
    for (shell, pattern) in SHELLS {
        let path = root.join(pattern.replace("{}", &name));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut text);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("berthx")
            .about("a sample")
            .arg(clap::Arg::new("level").long("level").help("how loud"))
            .arg(
                clap::Arg::new("secret")
                    .long("secret-docs")
                    .hide(true)
                    .help("hidden"),
            )
            .subcommand(clap::Command::new("list-things").about("list the things"))
            .subcommand(clap::Command::new("internal").hide(true))
    }

    #[test]
    fn writes_pages_and_completions_without_hidden_subcommands() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let written = write_cli_docs(sample(), &dir).expect("write docs");
        let names: Vec<String> = written
            .iter()
            .map(|p| {
                p.strip_prefix(&dir)
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "usr/share/man/man1/berthx-list-things.1",
                "usr/share/man/man1/berthx.1",
                "usr/share/bash-completion/completions/berthx",
                "usr/share/zsh/vendor-completions/_berthx",
                "usr/share/fish/vendor_completions.d/berthx.fish",
            ]
        );
        let page = std::fs::read_to_string(dir.join("usr/share/man/man1/berthx.1")).expect("page");
        assert!(page.contains(".TH berthx 1"), "{page}");
        assert!(page.contains("level"), "{page}");
        assert!(!page.contains("secret"), "hidden flag in the page: {page}");
        let bash = std::fs::read_to_string(&written[2]).expect("bash");
        assert!(bash.contains("--level") && bash.contains("list-things"));
    }
}
