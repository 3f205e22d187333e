//! `berth-agent --version` shows the version, the commit and the build date.

use std::process::Command;

#[test]
fn version_names_the_version_the_commit_and_the_build_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .arg("--version")
        .output()
        .expect("run berth-agent --version");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("berth-agent {} (commit ", env!("CARGO_PKG_VERSION"));
    let rest = text
        .trim()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3
            && [4, 2, 2] == [parts[0].len(), parts[1].len(), parts[2].len()]
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
        "{text}"
    );
}
