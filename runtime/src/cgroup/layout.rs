//! Which cgroup version the host runs and where its hierarchies are mounted, parsed from mountinfo.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::CgroupError;

/// Where the kernel's cgroup filesystems are expected.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// cgroup v1 controllers the kernel knows; other superblock options (`rw`, `clone_children`,
/// `release_agent=...`) are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The cgroup version in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// How cgroups are mounted on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CgroupLayout {
    /// One hierarchy per controller (or co-mounted group, e.g. `cpu,cpuacct`). Keys are
    /// controller names (`memory`, `cpu`, ...) and named hierarchies (`name=systemd`); co-mounted
    /// controllers map to the same mount point.
    V1 { mounts: BTreeMap<String, PathBuf> },
    /// The unified hierarchy rooted at `root`.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    /// A v2 layout rooted at `root` (for tests: a tempdir).
    #[cfg(test)]
    pub(crate) fn v2(root: PathBuf) -> Self {
        CgroupLayout::V2 { root }
    }

    /// A v1 layout from `(controller, mount point)` pairs; co-mounted controllers appear once each
    /// with the same mount point (for tests).
    #[cfg(test)]
    pub(crate) fn v1<I, S>(mounts: I) -> Self
    where
        I: IntoIterator<Item = (S, PathBuf)>,
        S: Into<String>,
    {
        CgroupLayout::V1 {
            mounts: mounts.into_iter().map(|(c, p)| (c.into(), p)).collect(),
        }
    }

    /// Reads the real /proc/self/mountinfo.
    pub(crate) fn detect() -> Result<Self, CgroupError> {
        let text =
            std::fs::read_to_string(MOUNTINFO).map_err(|source| CgroupError::ReadMountinfo {
                path: PathBuf::from(MOUNTINFO),
                source,
            })?;
        Self::from_mountinfo(&text)
    }

    /// Parses mountinfo text (proc(5)): cgroup2 mounted at /sys/fs/cgroup means v2; otherwise any
    /// mounted v1 controller means v1 (a hybrid host's controller-less cgroup2 at
    /// /sys/fs/cgroup/unified is ignored). For a controller mounted more than once, the first
    /// mount wins.
    pub(crate) fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut v1: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mount = parse_line(line).map_err(|reason| CgroupError::Mountinfo {
                line: index + 1,
                reason,
            })?;
            match mount.fs_type {
                "cgroup2" if mount.mount_point == Path::new(CGROUP_ROOT) => {
                    return Ok(CgroupLayout::V2 {
                        root: mount.mount_point,
                    });
                }
                "cgroup" => {
                    for opt in mount.super_options.split(',') {
                        if V1_CONTROLLERS.contains(&opt) || opt.starts_with("name=") {
                            v1.entry(opt.to_owned())
                                .or_insert_with(|| mount.mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if v1.is_empty() {
            return Err(CgroupError::NoCgroupMount);
        }
        Ok(CgroupLayout::V1 { mounts: v1 })
    }

    /// The cgroup version of this layout.
    pub(crate) fn version(&self) -> CgroupVersion {
        match self {
            CgroupLayout::V1 { .. } => CgroupVersion::V1,
            CgroupLayout::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// Every distinct hierarchy root: each v1 mount point once, or the v2 root.
    pub(crate) fn hierarchy_roots(&self) -> Vec<&Path> {
        match self {
            CgroupLayout::V1 { mounts } => {
                let mut roots: Vec<&Path> = mounts.values().map(PathBuf::as_path).collect();
                roots.sort();
                roots.dedup();
                roots
            }
            CgroupLayout::V2 { root } => vec![root.as_path()],
        }
    }
}

/// The fields of one mountinfo line this module needs.
struct Mount<'a> {
    mount_point: PathBuf,
    fs_type: &'a str,
    super_options: &'a str,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: six fields,
/// optional fields up to a lone `-`, then filesystem type, source and superblock options.
fn parse_line(line: &str) -> Result<Mount<'_>, &'static str> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let separator = fields
        .iter()
        .skip(6)
        .position(|f| *f == "-")
        .map(|p| p + 6)
        .ok_or("no \" - \" separator after the first six fields")?;
    let mount_point = fields.get(4).ok_or("no mount point")?;
    if !mount_point.starts_with('/') {
        return Err("mount point is not an absolute path");
    }
    let after = &fields[separator + 1..];
    let fs_type = after
        .first()
        .ok_or("no filesystem type after the separator")?;
    // Source and superblock options; the source may be missing when it is empty.
    let super_options = if after.len() >= 2 {
        after[after.len() - 1]
    } else {
        ""
    };
    Ok(Mount {
        mount_point: PathBuf::from(unescape(mount_point)?),
        fs_type,
        super_options,
    })
}

/// The kernel escapes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape(field: &str) -> Result<String, &'static str> {
    if !field.contains('\\') {
        return Ok(field.to_owned());
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let digits = bytes.get(i + 1..i + 4).ok_or("truncated octal escape")?;
            let text = std::str::from_utf8(digits).map_err(|_| "bad octal escape")?;
            let value = u8::from_str_radix(text, 8).map_err(|_| "bad octal escape")?;
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "mount point is not valid UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development machine: hybrid, v1 controllers each on their own plus an empty cgroup2.
    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host in unified mode.
    const PURE_V2: &str = "\
21 26 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// An older production host: cpu and cpuacct co-mounted, net_cls,net_prio too.
    const COMOUNTED_V1: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,net_cls,net_prio
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
";

    fn mounts(layout: &CgroupLayout) -> &BTreeMap<String, PathBuf> {
        match layout {
            CgroupLayout::V1 { mounts } => mounts,
            CgroupLayout::V2 { .. } => panic!("expected v1, got {layout:?}"),
        }
    }

    #[test]
    fn hybrid_host_is_v1_with_every_controller() {
        let layout = CgroupLayout::from_mountinfo(HYBRID).expect("hybrid parses");
        assert_eq!(layout.version(), CgroupVersion::V1);
        let m = mounts(&layout);
        for c in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
        ] {
            assert_eq!(m[c], Path::new("/sys/fs/cgroup").join(c), "{c}");
        }
        assert_eq!(m["name=systemd"], Path::new("/sys/fs/cgroup/systemd"));
        assert_eq!(m.len(), 9, "{m:?}");
        assert_eq!(layout.hierarchy_roots().len(), 9);
    }

    #[test]
    fn cgroup2_at_the_root_is_v2() {
        let layout = CgroupLayout::from_mountinfo(PURE_V2).expect("v2 parses");
        assert_eq!(layout, CgroupLayout::v2(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(layout.version().to_string(), "v2");
    }

    #[test]
    fn comounted_controllers_share_a_mount_point() {
        let layout = CgroupLayout::from_mountinfo(COMOUNTED_V1).expect("v1 parses");
        assert_eq!(layout.version().to_string(), "v1");
        let m = mounts(&layout);
        let cpu = Path::new("/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(m["cpu"], cpu);
        assert_eq!(m["cpuacct"], cpu);
        assert_eq!(m["net_prio"], Path::new("/sys/fs/cgroup/net_cls,net_prio"));
        assert_eq!(m["cpuset"], Path::new("/sys/fs/cgroup/cpuset"));
        assert!(!m.contains_key("clone_children") && !m.contains_key("xattr"));
        // cpu,cpuacct and net_cls,net_prio count once each.
        assert_eq!(layout.hierarchy_roots().len(), 6);
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        let text = "40 31 0:37 / /sys/fs/cgroup/my\\040cpu rw - cgroup cgroup rw,cpu\n";
        let layout = CgroupLayout::from_mountinfo(text).expect("parses");
        assert_eq!(mounts(&layout)["cpu"], Path::new("/sys/fs/cgroup/my cpu"));
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let err = CgroupLayout::from_mountinfo("hello world\n").expect_err("garbage");
        assert_eq!(
            err.to_string(),
            "malformed mountinfo line 1: no \" - \" separator after the first six fields"
        );
        let text = format!("{HYBRID}41 31 0:38 / relative rw - cgroup cgroup rw,cpu\n");
        let err = CgroupLayout::from_mountinfo(&text).expect_err("relative mount point");
        assert_eq!(
            err.to_string(),
            "malformed mountinfo line 15: mount point is not an absolute path"
        );
        let err = CgroupLayout::from_mountinfo("1 2 3:4 / /x\\04 rw - cgroup cgroup rw,cpu")
            .expect_err("truncated escape");
        assert!(err.to_string().contains("escape"), "{err}");
        let err = CgroupLayout::from_mountinfo("1 2 3:4 / /x rw -").expect_err("no fs type");
        assert!(err.to_string().contains("no filesystem type"), "{err}");
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let err = CgroupLayout::from_mountinfo(text).expect_err("nothing usable");
        assert!(matches!(err, CgroupError::NoCgroupMount), "{err}");
        assert!(matches!(
            CgroupLayout::from_mountinfo(""),
            Err(CgroupError::NoCgroupMount)
        ));
    }
}
