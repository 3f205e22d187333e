//! Confinement end to end (issue 16): a default container runs under Berth's default seccomp
//! profile, which refuses what Docker's refuses; Docker's own profile, given as a file,
//! refuses the same; capabilities beyond Docker's default set stop a task before anything is
//! pulled unless the agent's allowed_capabilities lists them; environment files are read only
//! as regular files below the agent's environment_file_paths.

use anyhow::{Result, ensure};
use berth_tests::{World, fixtures};

use super::{Env, checks_script, taskdef};

/// moby's default profile as Debian installs it (package golang-github-docker-docker-dev).
const MOBY_PROFILE: &str =
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json";

/// The probe image (busybox and /bin/sysprobe) pushed as `repo:v1`; its reference.
fn probe_image(w: &World, repo: &str) -> Result<String> {
    Ok(
        w.block_on(fixtures::probe(&w.registry().host(), repo, "v1"))?
            .reference,
    )
}

/// A check that sysprobe's `call` was refused by a filter: -1 with EPERM.
fn refused(call: &str) -> String {
    format!("sysprobe {call} | grep -qx '{call} -1 1'")
}

/// A check that sysprobe's `call` reached the kernel and succeeded.
fn succeeded(call: &str) -> String {
    format!("sysprobe {call} | grep -q '^{call} [0-9][0-9]* 0$'")
}

/// What a container under Docker's default rules cannot do, as shell checks.
fn refusals(with_io_uring: bool) -> Vec<String> {
    let mut checks = vec![
        "grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status".to_owned(),
        succeeded("getpid"),
        succeeded("personality_query"),
        "! busybox mount -t tmpfs none /mnt 2>/dev/null".to_owned(),
        "! busybox unshare -U true 2>/dev/null".to_owned(),
        "! sh -c 'echo h > /proc/sysrq-trigger' 2>/dev/null".to_owned(),
    ];
    for call in [
        "keyctl",
        "add_key",
        "bpf",
        "kexec_load",
        "init_module",
        "finit_module",
        "unshare_user",
        "personality_bsd",
    ] {
        checks.push(refused(call));
    }
    if with_io_uring {
        checks.push(refused("io_uring_setup"));
    }
    checks
}

/// Inside a default container, mount, unshare -U, keyctl, bpf, kexec_load, loading a module
/// and writing /proc/sysrq-trigger are refused, and so is io_uring; a container given moby's
/// default profile as seccomp=<file> refuses the same (moby 20.10 still allows io_uring); an
/// unconfined one reaches the kernel (its keyctl finds runc's session keyring).
pub(super) fn default_seccomp(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = probe_image(w, "e2e-default-seccomp")?;
    ensure!(
        std::path::Path::new(MOBY_PROFILE).is_file(),
        "{MOBY_PROFILE} is missing: install golang-github-docker-docker-dev (make deps)"
    );
    let unconfined = [
        "grep -q '^Seccomp:[[:space:]]*0$' /proc/self/status".to_owned(),
        succeeded("keyctl"),
    ];
    env.run_checks(
        &taskdef(
            "default-seccomp",
            serde_json::json!([
                {"name": "default", "image": image, "memory": 64, "essential": false,
                 "command": ["sh", "-c", checks_script(&refusals(true))]},
                {"name": "docker", "image": image, "memory": 64, "essential": false,
                 "dockerSecurityOptions": [format!("seccomp={MOBY_PROFILE}")],
                 "command": ["sh", "-c", checks_script(&refusals(false))]},
                {"name": "unconfined", "image": image, "memory": 64,
                 "dockerSecurityOptions": ["seccomp=unconfined"],
                 "dependsOn": [{"containerName": "default", "condition": "COMPLETE"},
                               {"containerName": "docker", "condition": "COMPLETE"}],
                 "command": ["sh", "-c", checks_script(&unconfined)]}
            ]),
        ),
        &["default", "docker", "unconfined"],
    )?;
    Ok(())
}

/// capabilities.add ALL or SYS_ADMIN on an agent without allowed_capabilities: the task stops
/// before any pull (its image was never pushed, so a pull would fail differently) with a
/// reason that names the capability and the key. An agent whose allowed_capabilities lists
/// SYS_ADMIN runs it, and the default profile then opens what SYS_ADMIN governs (unshare).
pub(super) fn capabilities(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let never_pushed = format!("{}/e2e-never-pushed:v1", w.registry().host());
    for (family, add, want) in [
        (
            "caps-all",
            "ALL",
            "container app: capabilities.add ALL asks for every capability, and this agent's \
             allowed_capabilities does not list DAC_READ_SEARCH,",
        ),
        (
            "caps-admin",
            "SYS_ADMIN",
            "container app: capability SYS_ADMIN is beyond Docker's default set, and this \
             agent's allowed_capabilities does not list it: add it to allowed_capabilities \
             (BERTH_ALLOWED_CAPABILITIES), or set allow_privileged = true",
        ),
    ] {
        let t = env.run_failing(&taskdef(
            family,
            serde_json::json!([
                {"name": "app", "image": never_pushed, "memory": 64,
                 "linuxParameters": {"capabilities": {"add": [add]}},
                 "command": ["true"]}
            ]),
        ))?;
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(
            reason.starts_with(want),
            "{want:?} is not how {reason:?} starts"
        );
    }
    drop(env);

    let mut allowed = Env::new(w, "10800")?;
    allowed
        .opts
        .extra_args
        .push("--allowed-capabilities=SYS_ADMIN".to_owned());
    allowed.connect()?;
    let image = probe_image(w, "e2e-caps-allowed")?;
    // CAP_SYS_ADMIN is bit 21 of CapEff.
    let checks = [
        "cap=$(busybox sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status); \
         test $(( 0x$cap >> 21 & 1 )) = 1"
            .to_owned(),
        "busybox unshare -m true".to_owned(),
        refused("kexec_load"),
    ];
    allowed.run_checks(
        &taskdef(
            "caps-allowed",
            serde_json::json!([
                {"name": "admin", "image": image, "memory": 64,
                 "linuxParameters": {"capabilities": {"add": ["SYS_ADMIN"]}},
                 "command": ["sh", "-c", checks_script(&checks)]}
            ]),
        ),
        &["admin"],
    )?;
    Ok(())
}

/// environmentFiles: /etc/shadow, outside the agent's environment_file_paths, is refused and
/// the reason holds nothing of it; /dev/zero (a symlink to it, a node of it) and a FIFO inside
/// the allowed directory fail their tasks at once; a file whose line is not NAME=value fails naming the
/// line and not its content; the agent then still runs a task with a good file.
pub(super) fn environment_files(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let allowed = env.dir.join("env-files");
    std::fs::create_dir_all(&allowed)?;
    env.opts.extra_args = vec![format!("--environment-file-paths={}", allowed.display())];
    env.connect()?;
    let image = super::hello(w, "e2e-envfiles")?;
    std::os::unix::fs::symlink("/dev/zero", allowed.join("zero.env"))?;
    // A device node of /dev/zero's numbers right inside the allowed directory.
    nix::sys::stat::mknod(
        &allowed.join("zero-node.env"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 5),
    )?;
    let fifo = allowed.join("fifo.env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    std::fs::write(
        allowed.join("secret.env"),
        "A=1\nroot:hunter2-secret:19000\n",
    )?;
    std::fs::write(allowed.join("good.env"), "GOOD=from the file\n")?;
    let shadow_line = std::fs::read_to_string("/etc/shadow")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned));
    let show = allowed.display();
    for (family, file, want) in [
        (
            "env-shadow",
            "/etc/shadow".to_owned(),
            format!(
                "container app: environment file /etc/shadow is outside the directories this \
                 agent allows; environment_file_paths: {show}"
            ),
        ),
        (
            "env-zero",
            format!("{show}/zero.env"),
            format!(
                "container app: environment file {show}/zero.env is a symbolic link, which is \
                 not followed here"
            ),
        ),
        (
            "env-zero-node",
            format!("{show}/zero-node.env"),
            format!(
                "container app: environment file {show}/zero-node.env is a character device, \
                 not a regular file"
            ),
        ),
        (
            "env-fifo",
            format!("{show}/fifo.env"),
            format!(
                "container app: environment file {show}/fifo.env is a FIFO, not a regular file"
            ),
        ),
        (
            "env-secret",
            format!("{show}/secret.env"),
            format!("container app: environment file {show}/secret.env line 2 is not NAME=value"),
        ),
    ] {
        let t = env.run_failing(&taskdef(
            family,
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "environmentFiles": [{"value": file, "type": "file"}],
                 "command": ["true"]}
            ]),
        ))?;
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(reason == want, "{want:?} is not {reason:?}");
        ensure!(!reason.contains("hunter2"), "{reason}");
        if let Some(line) = &shadow_line {
            ensure!(!reason.contains(line.as_str()), "{reason}");
        }
    }
    env.run_checks(
        &taskdef(
            "env-good",
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "environmentFiles": [{"value": format!("{show}/good.env"), "type": "file"}],
                 "command": ["sh", "-c", checks_script(&[r#"test "$GOOD" = 'from the file'"#])]}
            ]),
        ),
        &["app"],
    )?;
    Ok(())
}

/// Hostile images: /etc/passwd as a symlink to /dev/zero (a device node in the image), as a
/// FIFO, and as a symlink climbing out of the root. Each task fails with a reason naming the
/// file and what it is; the agent stays up (a good task runs afterwards) and leaves no
/// temporary mount of an image behind.
pub(super) fn hostile_images(w: &World) -> Result<()> {
    use berth_tests::fixtures::HostilePasswd;
    let env = Env::with_agent(w, "10800")?;
    for (kind, repo, want) in [
        (
            HostilePasswd::SymlinkToDevZero,
            "e2e-hostile-zero",
            "the image's /etc/passwd is a character device, not a regular file",
        ),
        (
            HostilePasswd::Fifo,
            "e2e-hostile-fifo",
            "the image's /etc/passwd is a FIFO, not a regular file",
        ),
        (
            HostilePasswd::SymlinkOutsideRoot,
            "e2e-hostile-outside",
            "the image's /etc/passwd is a symbolic link that points outside the image's root \
             filesystem",
        ),
    ] {
        let image = w
            .block_on(fixtures::hostile(&w.registry().host(), repo, "v1", kind))?
            .reference;
        // A named user makes the agent read the image's user database.
        let t = env.run_failing(&taskdef(
            repo,
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64, "user": "app",
                 "command": ["true"]}
            ]),
        ))?;
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(reason.contains(want), "{want:?} is not in {reason:?}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let data_dir = env.opts.data_dir.display().to_string();
    ensure!(
        !mounts
            .lines()
            .any(|l| l.contains(&data_dir) && l.contains(".users")),
        "an image's temporary mount was left behind:\n{mounts}"
    );
    let image = super::hello(w, "e2e-hostile-after")?;
    env.run_checks(
        &taskdef(
            "after-hostile",
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64, "user": "app",
                 "command": ["sh", "-c", checks_script(&[r#"test "$(id -u)" = 1000"#])]}
            ]),
        ),
        &["app"],
    )?;
    Ok(())
}

/// Task volumes are mounted nosuid,nodev inside the container; the data dir is 0700, the
/// store and the identity 0600, a container's log 0640; a tmpfs asking for suid stops its task
/// before any pull on an agent that does not allow privileged containers.
pub(super) fn volume_options(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = super::hello(w, "e2e-volume-options")?;
    let checks = [
        r#"grep ' /data ' /proc/mounts | grep -q 'nosuid,nodev'"#,
        "echo ok > /data/file",
    ];
    let (task_id, _) = env.run_checks(
        &serde_json::json!({
            "family": "volume-options", "networkMode": "none",
            "volumes": [{"name": "data"}],
            "containerDefinitions": [
                {"name": "app", "image": image, "memory": 64,
                 "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
                 "command": ["sh", "-c", checks_script(&checks)]}
            ]
        }),
        &["app"],
    )?;
    // The host's files: the data dir and the agent's own files are its alone, container logs
    // readable by the group.
    use std::os::unix::fs::PermissionsExt;
    let data = &env.opts.data_dir;
    for (path, want) in [
        (data.clone(), 0o700),
        (data.join("agent.redb"), 0o600),
        (data.join("instance-identity"), 0o600),
        (data.join("logs").join(&task_id).join("app.log"), 0o640),
    ] {
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
        ensure!(
            mode == want,
            "{} has mode {mode:o}, not {want:o}",
            path.display()
        );
    }
    let never_pushed = format!("{}/e2e-never-pushed:v1", w.registry().host());
    let t = env.run_failing(&taskdef(
        "tmpfs-suid",
        serde_json::json!([
            {"name": "app", "image": never_pushed, "memory": 64,
             "linuxParameters": {"tmpfs": [{"containerPath": "/scratch", "size": 8,
                                            "mountOptions": ["suid"]}]},
             "command": ["true"]}
        ]),
    ))?;
    let want = "container app: tmpfs /scratch: option suid is allowed only where privileged \
                containers are: remove it, or set allow_privileged = true (BERTH_ALLOW_PRIVILEGED)";
    ensure!(t["stoppedReason"] == want, "{want:?}: {t}");
    Ok(())
}
