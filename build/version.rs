// Shared by the build scripts of berth-agent and berth-scheduler (included, not a crate): sets
// BERTH_LONG_VERSION, what `--version` prints after the binary's name:
// "0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-06)". From a tarball without .git (or without git)
// the commit is "unknown". The date is SOURCE_DATE_EPOCH's when set (reproducible builds, as
// Debian's packaging sets it), otherwise the day the build script ran.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn emit_long_version() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    // A new commit changes the version: watch HEAD and the ref it points to. The ref is read
    // from its own file when it has one (every commit writes it); packed-refs is watched only
    // when it does not, because git rewrites packed-refs whenever any ref of the repository is
    // packed or deleted (every worktree's branches share it), which would rebuild the binaries
    // for commits on other branches. A ref packed later deletes its file, which reruns this.
    if let Some(p) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={p}");
    }
    let loose = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|branch| git(&["rev-parse", "--git-path", &branch]))
        .filter(|p| std::path::Path::new(p).is_file());
    match loose {
        Some(p) => println!("cargo:rerun-if-changed={p}"),
        None => {
            if let Some(p) = git(&["rev-parse", "--git-path", "packed-refs"]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    // A release tarball may name its commit in BERTH_COMMIT; otherwise git, otherwise unknown.
    let commit = std::env::var("BERTH_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        });
    let built = match seconds {
        Some(s) => {
            let (y, m, d) = civil_date(s.div_euclid(86_400));
            format!("{y:04}-{m:02}-{d:02}")
        }
        None => "unknown".to_owned(),
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=BERTH_LONG_VERSION={version} (commit {commit}, built {built})");
}
