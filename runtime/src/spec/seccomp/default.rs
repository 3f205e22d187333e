//! Berth's default seccomp profile: what every container that is neither privileged nor
//! `seccomp=unconfined` runs under. It keeps the rules of Docker's default profile (moby's
//! `profiles/seccomp/default.json`): everything not listed fails with EPERM; the syscalls any
//! program needs are allowed; namespace, mount, module, clock, reboot and tracing calls are
//! allowed only with the capability that governs them; `personality` only with the execution
//! domains programs really switch to; `clone` without namespace flags unless the container
//! holds CAP_SYS_ADMIN, and `clone3` answers ENOSYS so libc falls back to `clone`.
//!
//! It is written here as Berth's own table, grouped by what the calls are for. Where it
//! departs from moby 20.10's file (io_uring refused, syscalls Linux added since, the split of
//! CAP_BPF and CAP_PERFMON), the comparison test in `tests.rs` names each difference and why.

use std::sync::LazyLock;

use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator};

use super::{Filter, Rule, SeccompProfile};

/// Allowed to everyone: the calls ordinary programs make, by area. Each name is the kernel's;
/// the ones the host's ABI does not have are left out of its filter (`native.rs`), so 32-bit
/// and 64-bit spellings sit side by side.
const EVERYONE: &[&[&str]] = &[
    // Files and directories.
    &[
        "access",
        "chdir",
        "chmod",
        "chown",
        "chown32",
        "close",
        "close_range",
        "copy_file_range",
        "creat",
        "dup",
        "dup2",
        "dup3",
        "faccessat",
        "faccessat2",
        "fadvise64",
        "fadvise64_64",
        "fallocate",
        "fchdir",
        "fchmod",
        "fchmodat",
        "fchown",
        "fchown32",
        "fchownat",
        "fcntl",
        "fcntl64",
        "fdatasync",
        "flock",
        "fstat",
        "fstat64",
        "fstatat64",
        "fstatfs",
        "fstatfs64",
        "fsync",
        "ftruncate",
        "ftruncate64",
        "futimesat",
        "getcwd",
        "getdents",
        "getdents64",
        "lchown",
        "lchown32",
        "link",
        "linkat",
        "_llseek",
        "lseek",
        "lstat",
        "lstat64",
        "mkdir",
        "mkdirat",
        "mknod",
        "mknodat",
        "newfstatat",
        "open",
        "openat",
        "openat2",
        "pread64",
        "preadv",
        "preadv2",
        "pwrite64",
        "pwritev",
        "pwritev2",
        "read",
        "readahead",
        "readlink",
        "readlinkat",
        "readv",
        "rename",
        "renameat",
        "renameat2",
        "rmdir",
        "sendfile",
        "sendfile64",
        "splice",
        "stat",
        "stat64",
        "statfs",
        "statfs64",
        "statx",
        "symlink",
        "symlinkat",
        "sync",
        "sync_file_range",
        "syncfs",
        "tee",
        "truncate",
        "truncate64",
        "umask",
        "unlink",
        "unlinkat",
        "utime",
        "utimensat",
        "utimensat_time64",
        "utimes",
        "vmsplice",
        "write",
        "writev",
    ],
    // Extended attributes.
    &[
        "fgetxattr",
        "flistxattr",
        "fremovexattr",
        "fsetxattr",
        "getxattr",
        "lgetxattr",
        "listxattr",
        "llistxattr",
        "lremovexattr",
        "lsetxattr",
        "removexattr",
        "setxattr",
    ],
    // Waiting on files, events and signals.
    &[
        "epoll_create",
        "epoll_create1",
        "epoll_ctl",
        "epoll_ctl_old",
        "epoll_pwait",
        "epoll_pwait2",
        "epoll_wait",
        "epoll_wait_old",
        "eventfd",
        "eventfd2",
        "fanotify_mark",
        "inotify_add_watch",
        "inotify_init",
        "inotify_init1",
        "inotify_rm_watch",
        "_newselect",
        "pause",
        "pipe",
        "pipe2",
        "poll",
        "ppoll",
        "ppoll_time64",
        "pselect6",
        "pselect6_time64",
        "select",
        "signalfd",
        "signalfd4",
    ],
    // Asynchronous I/O (the old interface; io_uring is refused, see the module's doc).
    &[
        "io_cancel",
        "io_destroy",
        "io_getevents",
        "io_pgetevents",
        "io_pgetevents_time64",
        "io_setup",
        "io_submit",
        "ioctl",
        "ioprio_get",
        "ioprio_set",
    ],
    // Memory.
    &[
        "brk",
        "madvise",
        "membarrier",
        "memfd_create",
        "memfd_secret",
        "mincore",
        "mlock",
        "mlock2",
        "mlockall",
        "mmap",
        "mmap2",
        "mprotect",
        "mremap",
        "msync",
        "munlock",
        "munlockall",
        "munmap",
        "remap_file_pages",
    ],
    // Processes, threads and their credentials.
    &[
        "capget",
        "capset",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "fork",
        "getcpu",
        "getegid",
        "getegid32",
        "geteuid",
        "geteuid32",
        "getgid",
        "getgid32",
        "getgroups",
        "getgroups32",
        "getpgid",
        "getpgrp",
        "getpid",
        "getppid",
        "getpriority",
        "getresgid",
        "getresgid32",
        "getresuid",
        "getresuid32",
        "getrlimit",
        "get_robust_list",
        "getrusage",
        "getsid",
        "get_thread_area",
        "gettid",
        "getuid",
        "getuid32",
        "pidfd_open",
        "pidfd_send_signal",
        "prctl",
        "prlimit64",
        "process_mrelease",
        "restart_syscall",
        "rseq",
        "seccomp",
        "setfsgid",
        "setfsgid32",
        "setfsuid",
        "setfsuid32",
        "setgid",
        "setgid32",
        "setgroups",
        "setgroups32",
        "setpgid",
        "setpriority",
        "setregid",
        "setregid32",
        "setresgid",
        "setresgid32",
        "setresuid",
        "setresuid32",
        "setreuid",
        "setreuid32",
        "setrlimit",
        "set_robust_list",
        "setsid",
        "set_thread_area",
        "set_tid_address",
        "setuid",
        "setuid32",
        "times",
        "ugetrlimit",
        "uname",
        "vfork",
        "wait4",
        "waitid",
        "waitpid",
    ],
    // Futexes.
    &["futex", "futex_time64", "futex_waitv"],
    // Signals.
    &[
        "kill",
        "rt_sigaction",
        "rt_sigpending",
        "rt_sigprocmask",
        "rt_sigqueueinfo",
        "rt_sigreturn",
        "rt_sigsuspend",
        "rt_sigtimedwait",
        "rt_sigtimedwait_time64",
        "rt_tgsigqueueinfo",
        "sigaltstack",
        "sigprocmask",
        "sigreturn",
        "tgkill",
        "tkill",
    ],
    // Time and timers (reading clocks; setting them needs CAP_SYS_TIME).
    &[
        "adjtimex",
        "alarm",
        "clock_adjtime",
        "clock_adjtime64",
        "clock_getres",
        "clock_getres_time64",
        "clock_gettime",
        "clock_gettime64",
        "clock_nanosleep",
        "clock_nanosleep_time64",
        "getitimer",
        "gettimeofday",
        "nanosleep",
        "setitimer",
        "time",
        "timer_create",
        "timer_delete",
        "timer_getoverrun",
        "timer_gettime",
        "timer_gettime64",
        "timer_settime",
        "timer_settime64",
        "timerfd_create",
        "timerfd_gettime",
        "timerfd_gettime64",
        "timerfd_settime",
        "timerfd_settime64",
    ],
    // Scheduling.
    &[
        "sched_getaffinity",
        "sched_getattr",
        "sched_getparam",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_getscheduler",
        "sched_rr_get_interval",
        "sched_rr_get_interval_time64",
        "sched_setaffinity",
        "sched_setattr",
        "sched_setparam",
        "sched_setscheduler",
        "sched_yield",
    ],
    // Sockets.
    &[
        "accept",
        "accept4",
        "bind",
        "connect",
        "getpeername",
        "getsockname",
        "getsockopt",
        "listen",
        "recv",
        "recvfrom",
        "recvmmsg",
        "recvmmsg_time64",
        "recvmsg",
        "send",
        "sendmmsg",
        "sendmsg",
        "sendto",
        "setsockopt",
        "shutdown",
        "socket",
        "socketcall",
        "socketpair",
    ],
    // System V and POSIX IPC (scoped to the container's IPC namespace).
    &[
        "ipc",
        "mq_getsetattr",
        "mq_notify",
        "mq_open",
        "mq_timedreceive",
        "mq_timedreceive_time64",
        "mq_timedsend",
        "mq_timedsend_time64",
        "mq_unlink",
        "msgctl",
        "msgget",
        "msgrcv",
        "msgsnd",
        "semctl",
        "semget",
        "semop",
        "semtimedop",
        "semtimedop_time64",
        "shmat",
        "shmctl",
        "shmdt",
        "shmget",
    ],
    // Random numbers, system information, self-sandboxing.
    &[
        "getrandom",
        "landlock_add_rule",
        "landlock_create_ruleset",
        "landlock_restrict_self",
        "sysinfo",
    ],
    // Added by Linux after moby 20.10's profile, each the same power as a call above.
    &[
        "cachestat",
        "fchmodat2",
        "futex_requeue",
        "futex_wait",
        "futex_wake",
        "map_shadow_stack",
        "mseal",
    ],
];

/// What a call needs beyond being listed: a capability the container holds.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy"]),
    ("CAP_SYSLOG", &["syslog"]),
    // Linux 5.8 split these two out of CAP_SYS_ADMIN.
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Calls that only some architectures have, by the Go architecture names Docker matches.
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
];

/// The execution domains `personality` may switch to: PER_LINUX, PER_LINUX32,
/// UNAME26 (PER_LINUX | 0x20000), PER_LINUX32 | UNAME26, and 0xffffffff, which only queries.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The `clone` flags that make namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
/// NEWPID and NEWNET. Without CAP_SYS_ADMIN, `clone` is allowed only with all of them clear.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The architectures where `clone3` returns a different ENOSYS (MIPS numbers errors its own
/// way), in the names moby's profile uses for them.
const MIPS: &[&str] = &["mipsel64n32", "mips64", "mips64n32", "mipsel", "mipsel64"];

/// ENOSYS on most architectures, and on MIPS.
const ENOSYS: u32 = 38;
const ENOSYS_MIPS: u32 = 89;

/// The profile, built once.
pub(crate) static DEFAULT_PROFILE: LazyLock<SeccompProfile> = LazyLock::new(build);

fn caps(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn rule(names: &[&str]) -> Rule {
    Rule {
        names: caps(names),
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: Vec::new(),
        includes: Filter::default(),
        excludes: Filter::default(),
    }
}

/// A rule on argument `index`: equal to `value`, or (`masked`) with the bits of `value` all
/// clear.
fn arg(index: usize, value: u64, masked: bool) -> oci_spec::runtime::LinuxSeccompArg {
    let mut builder = LinuxSeccompArgBuilder::default().index(index);
    // MASKED_EQ compares `arg & value` with valueTwo, which is left at zero.
    builder = builder.value(value).op(if masked {
        LinuxSeccompOperator::ScmpCmpMaskedEq
    } else {
        LinuxSeccompOperator::ScmpCmpEq
    });
    // Every field the builder requires is set above.
    builder.build().unwrap_or_default()
}

/// The ABIs the default profile is written for, each alone (moby's `archMap` keys).
pub(super) const NATIVE_ARCHES: [Arch; 7] = [
    Arch::ScmpArchX86_64,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchS390x,
];

fn build() -> SeccompProfile {
    let mut rules = Vec::new();
    rules.push(rule(&EVERYONE.concat()));
    // ptrace of one's own children is safe once the kernel stopped seccomp bypasses (4.8).
    rules.push(Rule {
        includes: Filter {
            min_kernel: Some((4, 8)),
            ..Filter::default()
        },
        ..rule(&["ptrace"])
    });
    for persona in PERSONALITIES {
        rules.push(Rule {
            args: vec![arg(0, persona, false)],
            ..rule(&["personality"])
        });
    }
    for (arches, names) in BY_ARCH {
        rules.push(Rule {
            includes: Filter {
                arches: caps(arches),
                ..Filter::default()
            },
            ..rule(names)
        });
    }
    for (cap, names) in BY_CAPABILITY {
        rules.push(Rule {
            includes: Filter {
                caps: vec![(*cap).to_owned()],
                ..Filter::default()
            },
            ..rule(names)
        });
    }
    // clone's flags are its first argument, except on s390, where they are the second.
    rules.push(Rule {
        args: vec![arg(0, CLONE_NAMESPACE_FLAGS, true)],
        excludes: Filter {
            caps: caps(&["CAP_SYS_ADMIN"]),
            arches: caps(&["s390", "s390x"]),
            ..Filter::default()
        },
        ..rule(&["clone"])
    });
    rules.push(Rule {
        args: vec![arg(1, CLONE_NAMESPACE_FLAGS, true)],
        includes: Filter {
            arches: caps(&["s390", "s390x"]),
            ..Filter::default()
        },
        excludes: Filter {
            caps: caps(&["CAP_SYS_ADMIN"]),
            ..Filter::default()
        },
        ..rule(&["clone"])
    });
    // clone3 passes its flags in memory, where a filter cannot look: answer ENOSYS, so libc
    // uses clone, whose flags the rules above see.
    rules.push(Rule {
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(ENOSYS),
        excludes: Filter {
            caps: caps(&["CAP_SYS_ADMIN"]),
            arches: caps(MIPS),
            ..Filter::default()
        },
        ..rule(&["clone3"])
    });
    rules.push(Rule {
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(ENOSYS_MIPS),
        includes: Filter {
            arches: caps(MIPS),
            ..Filter::default()
        },
        excludes: Filter {
            caps: caps(&["CAP_SYS_ADMIN"]),
            ..Filter::default()
        },
        ..rule(&["clone3"])
    });
    SeccompProfile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: None,
        architectures: Vec::new(),
        // The host's own ABI only, where moby also lists each host's compatibility ABIs
        // (x86_64: x86 and x32; aarch64: arm; ...). runc and libseccomp compile the whole
        // filter once more for every ABI listed, which cost each container start about 10 ms
        // an ABI on the bench host; and a call through an ABI that is not listed does not
        // get through: the kernel kills the caller (SIGSYS). So nothing is allowed that
        // moby's profile refuses, but 32-bit programs do not run under the default profile;
        // `seccomp=<file>` with moby's own profile runs them (see compare.rs and README).
        arch_map: NATIVE_ARCHES
            .iter()
            .map(|arch| (*arch, Vec::new()))
            .collect(),
        flags: Vec::new(),
        rules,
        native_names_only: true,
    }
}
