//! Prerequisites of the end-to-end suites (root, binaries, overlayfs) and the skip-or-fail policy.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::geteuid;

/// Paths of the programs the harness runs.
pub mod bins {
    /// The containerd daemon.
    pub const CONTAINERD: &str = "/usr/bin/containerd";
    /// containerd's command-line client.
    pub const CTR: &str = "/usr/bin/ctr";
    /// Debian's build of the distribution registry.
    pub const REGISTRY: &str = "/usr/bin/docker-registry";
    /// The static busybox copied into every image.
    pub const BUSYBOX: &str = "/bin/busybox";
    /// Found through `PATH` by containerd.
    pub const SHIM: &str = "containerd-shim-runc-v2";
    /// Found through `PATH` by the shim.
    pub const RUNC: &str = "runc";
}

/// What a suite does when a prerequisite is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Outside CI: report every trial as ignored and print a loud SKIPPED message.
    Skip,
    /// In CI (`CI=true`): a missing prerequisite fails every trial.
    Fail,
}

impl Policy {
    /// `Fail` when the `CI` environment variable is `true` or `1`, else `Skip`.
    pub fn from_env() -> Self {
        match env::var("CI") {
            Ok(v) if v.eq_ignore_ascii_case("true") || v == "1" => Policy::Fail,
            _ => Policy::Skip,
        }
    }
}

/// The prerequisite check.
#[derive(Debug, Clone, Copy)]
pub struct Prereq;

impl Prereq {
    /// `Ok` when every prerequisite is met, else every reason at once, `; `-separated.
    pub fn check() -> Result<(), String> {
        let mut why = Vec::new();
        let root = geteuid().is_root();
        if !root {
            why.push("end-to-end tests need root (run as root or in CI)".to_owned());
        }
        for bin in [bins::CONTAINERD, bins::CTR, bins::REGISTRY, bins::BUSYBOX] {
            if !is_executable(Path::new(bin)) {
                why.push(format!("{bin} is missing or not executable"));
            }
        }
        for name in [bins::SHIM, bins::RUNC] {
            if which(name).is_none() {
                why.push(format!("{name} is not on PATH"));
            }
        }
        // The agent's task networking (nft) and the tests' namespaces (ip).
        for name in ["nft", "ip"] {
            if which(name).is_none() {
                why.push(format!(
                    "{name} is not on PATH (install nftables and iproute2)"
                ));
            }
        }
        match fs::read_to_string("/proc/filesystems") {
            Ok(fss)
                if fss
                    .lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay")) =>
            {
                // Only root can prove that overlay mounts really work on the temp filesystem.
                if root && let Err(e) = probe_overlay() {
                    why.push(format!(
                        "overlayfs mount on {} fails: {e}",
                        env::temp_dir().display()
                    ));
                }
            }
            Ok(_) => {
                why.push("overlayfs is not available (no `overlay` in /proc/filesystems)".into())
            }
            Err(e) => why.push(format!("cannot read /proc/filesystems: {e}")),
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable called `name` on `PATH` (plus the sbin directories, which a non-login
/// root shell may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Mounts and unmounts a tiny overlay in a temp dir, which is what containerd's overlayfs
/// snapshotter will do.
fn probe_overlay() -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("berth-overlay-probe")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let d = dir.path();
    for sub in ["lower", "upper", "work", "merged"] {
        fs::create_dir(d.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        d.join("lower").display(),
        d.join("upper").display(),
        d.join("work").display()
    );
    let merged = d.join("merged");
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| e.to_string())?;
    umount2(&merged, MntFlags::MNT_DETACH).map_err(|e| format!("umount: {e}"))?;
    Ok(())
}
