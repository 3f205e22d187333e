//! Privileges and the host's devices end to end: ECS `privileged`, no-new-privileges and
//! seccomp profiles, and device mappings within the agent's `allowed_devices`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::World;

use super::{Env, checks_script, hello, taskdef};

/// ECS `privileged`: an agent refuses it by default (the task stops with a reason that names
/// the setting); an agent started with --allow-privileged runs it with every capability, the
/// host's devices, and /sys writable, as Docker's --privileged.
pub(super) fn privileged(w: &World) -> Result<()> {
    let image = hello(w, "e2e-privileged")?;
    // Every capability the agent may hand on: its bounding set, which is this process's.
    let status = std::fs::read_to_string("/proc/self/status")?;
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(str::trim)
        .context("no CapBnd in /proc/self/status")?
        .to_owned();
    let checks = [
        format!("grep -q '^CapEff:[[:space:]]*{bounding}$' /proc/self/status"),
        "test -c /dev/loop-control".to_owned(),
        "grep -q ' /sys sysfs rw' /proc/mounts".to_owned(),
    ];
    let def = taskdef(
        "privileged",
        serde_json::json!([
            {"name": "root", "image": image, "memory": 64, "privileged": true,
             "command": ["sh", "-c", checks_script(&checks)]}
        ]),
    );

    let env = Env::with_agent(w, "10800")?;
    let t = env.run_failing(&def)?;
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("container root asks to run privileged")
            && reason.contains("allow_privileged = true (BERTH_ALLOW_PRIVILEGED)"),
        "{t}"
    );

    let mut allowed = Env::new(w, "10800")?;
    allowed
        .opts
        .extra_args
        .push("--allow-privileged".to_owned());
    allowed.connect()?;
    allowed.run_checks(&def, &["root"])?;
    Ok(())
}

/// ECS dockerSecurityOptions: no-new-privileges sets the process's NoNewPrivs (and =false
/// clears it), seccomp=unconfined leaves the container without a filter, and a profile read
/// from the host becomes its filter: mkdir fails with EPERM as the profile says, and nothing
/// else does.
pub(super) fn security_options(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-security")?;
    let profile = env.dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        serde_json::to_vec_pretty(&serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64",
                         "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "comment": "EPERM"},
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"caps": ["CAP_SYS_BOOT"]}}
            ]
        }))?,
    )?;
    let status = |field: &str, value: u32| {
        format!("grep -q '^{field}:[[:space:]]*{value}$' /proc/self/status")
    };
    // Without a seccomp option a container runs under the default profile (filter mode 2).
    let nnp = [status("NoNewPrivs", 1), status("Seccomp", 2)];
    let open = [
        status("NoNewPrivs", 0),
        status("Seccomp", 0),
        "mkdir /tmp/allowed".to_owned(),
    ];
    let filtered = [
        status("Seccomp", 2),
        "! mkdir /tmp/blocked 2>/dev/null".to_owned(),
        "mkdir /tmp/blocked 2>&1 | grep -q 'Operation not permitted'".to_owned(),
        "test ! -e /tmp/blocked".to_owned(),
        "touch /tmp/other-syscalls-work".to_owned(),
    ];
    let profile_opt = format!("seccomp={}", profile.display());
    env.run_checks(
        &taskdef(
            "security",
            serde_json::json!([
                {"name": "nnp", "image": image, "memory": 64, "essential": false,
                 "dockerSecurityOptions": ["no-new-privileges"],
                 "command": ["sh", "-c", checks_script(&nnp)]},
                {"name": "open", "image": image, "memory": 64, "essential": false,
                 "dockerSecurityOptions": ["no-new-privileges:false", "seccomp:unconfined"],
                 "command": ["sh", "-c", checks_script(&open)]},
                {"name": "filtered", "image": image, "memory": 64,
                 "dockerSecurityOptions": [profile_opt],
                 "dependsOn": [{"containerName": "nnp", "condition": "SUCCESS"},
                               {"containerName": "open", "condition": "SUCCESS"}],
                 "command": ["sh", "-c", checks_script(&filtered)]}
            ]),
        ),
        &["nnp", "open", "filtered"],
    )?;
    let described = env.json(&["describe-task-definition", "security"])?;
    let options = &described["taskDefinition"]["containerDefinitions"][1]["dockerSecurityOptions"];
    ensure!(
        *options == serde_json::json!(["no-new-privileges=false", "seccomp=unconfined"]),
        "describe shows the options in Docker's syntax: {described}"
    );
    Ok(())
}

/// A profile the agent cannot use stops the task before it starts, with a reason that names the
/// file and says what is wrong in it; so does a profile that is not there.
pub(super) fn bad_seccomp_profile(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-bad-seccomp")?;
    let profile = env.dir.join("typo.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_DENY"}]}"#,
    )?;
    for (family, path, want) in [
        (
            "bad-seccomp",
            profile.clone(),
            format!(
                "container app: seccomp profile {} is not usable: syscalls[0].action: \
                 `SCMP_ACT_DENY` is not a seccomp action",
                profile.display()
            ),
        ),
        (
            "missing-seccomp",
            env.dir.join("missing.json"),
            format!(
                "container app: cannot read seccomp profile {} on the host",
                env.dir.join("missing.json").display()
            ),
        ),
    ] {
        let t = env.run_failing(&taskdef(
            family,
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "dockerSecurityOptions": [format!("seccomp={}", path.display())],
                 "command": ["true"]}
            ]),
        ))?;
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(
            reason.starts_with(&want),
            "{want:?} is not how {reason:?} starts"
        );
    }
    Ok(())
}

/// The host device a trial may map: one runc does not allow by default, so that only the
/// mapping's cgroup rule lets the container use it.
fn mappable_device() -> Result<(PathBuf, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for candidate in ["/dev/fuse", "/dev/loop-control"] {
        let path = PathBuf::from(candidate);
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.file_type().is_char_device()
        {
            return Ok((path, meta.rdev()));
        }
    }
    bail!("this host has neither /dev/fuse nor /dev/loop-control to map into a container")
}

/// ECS linuxParameters.devices on an agent that allows one device: the container sees the node
/// with the host's numbers at its containerPath and may read it but not write it (permissions
/// read), while a device outside allowed_devices stops its task with a reason naming both.
pub(super) fn devices(w: &World) -> Result<()> {
    let (device, rdev) = mappable_device()?;
    // glibc's major() and minor(), as busybox stat prints them in hex (%t:%T).
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    let mut env = Env::new(w, "10800")?;
    env.opts.extra_args = vec![format!("--allowed-devices={}", device.display())];
    env.connect()?;
    let image = hello(w, "e2e-devices")?;
    let checks = [
        "test -c /dev/mapped".to_owned(),
        format!("test \"$(stat -c '%t:%T' /dev/mapped)\" = '{major:x}:{minor:x}'"),
        "true < /dev/mapped".to_owned(),
        "! sh -c 'true > /dev/mapped' 2>/dev/null".to_owned(),
        "sh -c 'true > /dev/mapped' 2>&1 | grep -q 'Operation not permitted'".to_owned(),
    ];
    env.run_checks(
        &taskdef(
        "devices",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "linuxParameters": {"devices": [
                 {"hostPath": device, "containerPath": "/dev/mapped", "permissions": ["read"]}]},
             "command": ["sh", "-c", checks_script(&checks)]}
        ]),
    ),
        &["app"],
    )?;

    let t = env.run_failing(&taskdef(
        "other-device",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "linuxParameters": {"devices": [{"hostPath": "/dev/zero"}]},
             "command": ["true"]}
        ]),
    ))?;
    let want = format!(
        "container app: device /dev/zero is not among the devices this agent allows; \
         allowed_devices: {}",
        device.display()
    );
    ensure!(t["stoppedReason"] == want.as_str(), "{want:?}: {t}");
    Ok(())
}
