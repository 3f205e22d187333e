//! ECS `pidMode` and `ipcMode` end to end: `host` is refused by an agent that does not allow it
//! (the reason names allow_host_pid_ipc) and, where allowed, puts the task's containers in the
//! host's PID and IPC namespaces with the host's /dev/shm; `ipcMode` none leaves a container
//! without /dev/shm; a value ECS does not have is refused at registration by name (`task` is in
//! `pidipc_task.rs`). Also run-task with a definition file shows the registration's notes, and
//! describe-task-definition -o json shows the modes.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;

use super::{Env, checks_script, hello, taskdef};

/// `readlink /proc/self/ns/<kind>` of this process: the host's namespace of that kind (the
/// harness and the agent run in the host's).
fn host_namespace(kind: &str) -> Result<String> {
    let link = std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .with_context(|| format!("reading /proc/self/ns/{kind}"))?;
    Ok(link.to_string_lossy().into_owned())
}

/// `pidMode` and `ipcMode` host: refused with the key's name by default, before any pull;
/// with --allow-host-pid-ipc the container is in the host's PID namespace (it sees this
/// process) and IPC namespace, and its /dev/shm is the host's.
pub(super) fn host_needs_the_key(w: &World) -> Result<()> {
    let image = hello(w, "e2e-pidipc-host")?;
    let (pid_ns, ipc_ns) = (host_namespace("pid")?, host_namespace("ipc")?);
    // A file of the host's /dev/shm the container must see through its own /dev/shm.
    let marker = format!("/dev/shm/{}", w.unique("berth-pidipc"));
    std::fs::write(&marker, b"host").with_context(|| marker.clone())?;
    let result = (|| {
        let checks = [
            format!("test \"$(busybox readlink /proc/self/ns/pid)\" = '{pid_ns}'"),
            format!("test \"$(busybox readlink /proc/self/ns/ipc)\" = '{ipc_ns}'"),
            format!("test -d /proc/{}", std::process::id()),
            format!("test \"$(cat {marker})\" = host"),
        ];
        let mut def = taskdef(
            "pidipchost",
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "command": ["sh", "-c", checks_script(&checks)]}
            ]),
        );
        def["pidMode"] = "host".into();
        def["ipcMode"] = "host".into();

        let env = Env::with_agent(w, "10800")?;
        let t = env.run_failing(&def)?;
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(
            reason.contains("the task asks for pidMode host")
                && reason.contains("allow_host_pid_ipc = true (BERTH_ALLOW_HOST_PID_IPC)"),
            "{t}"
        );
        // Refused before any pull.
        ensure!(t["pullStartedAt"].is_null(), "pulled before refusing: {t}");

        let mut allowed = Env::new(w, "10800")?;
        allowed
            .opts
            .extra_args
            .push("--allow-host-pid-ipc".to_owned());
        allowed.connect()?;
        allowed.run_checks(&def, &["app"])?;
        Ok(())
    })();
    std::fs::remove_file(&marker).with_context(|| marker.clone())?;
    result
}

/// `ipcMode` none: a private IPC namespace and no /dev/shm at all, its PID namespace its own;
/// run-task with the file prints the notes on what the registration ignored, and
/// describe-task-definition -o json gives back the modes and the runtimePlatform. A pidMode
/// that is not ECS's is refused at registration, naming the field.
pub(super) fn ipc_none_and_task_refused(w: &World) -> Result<()> {
    let image = hello(w, "e2e-pidipc-none")?;
    let (pid_ns, ipc_ns) = (host_namespace("pid")?, host_namespace("ipc")?);
    let checks = [
        format!("test \"$(busybox readlink /proc/self/ns/pid)\" != '{pid_ns}'"),
        format!("test \"$(busybox readlink /proc/self/ns/ipc)\" != '{ipc_ns}'"),
        "! grep -q ' /dev/shm ' /proc/mounts".to_owned(),
        "test \"$(cat /proc/1/comm)\" = sh".to_owned(),
    ];
    let mut def = taskdef(
        "pidipcnone",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "command": ["sh", "-c", checks_script(&checks)]}
        ]),
    );
    def["ipcMode"] = "none".into();
    def["runtimePlatform"] = serde_json::json!({"operatingSystemFamily": "LINUX"});
    // A read-only field of describe output, accepted and ignored with a note.
    def["status"] = "ACTIVE".into();

    let env = Env::with_agent(w, "10800")?;
    let path = env.dir.join("taskdef-pidipcnone.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&def)?)?;
    let out = env.ok(&["run-task", "--file", &path.to_string_lossy()])?;
    ensure!(
        out.stderr.contains(
            "note: ignored the read-only fields of describe-task-definition output: status"
        ),
        "run-task printed no note: {}",
        out.stderr
    );
    let id = out
        .task_ids()
        .into_iter()
        .next()
        .context("run-task printed no task id")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(90))?;
    ensure!(
        super::container(&t, "app")?["exitCode"] == 0,
        "checks: {t}\n{}",
        env.container_log(&id, "app")
    );

    let described = env.json(&["describe-task-definition", "pidipcnone"])?;
    let d = &described["taskDefinition"];
    ensure!(
        d["ipcMode"] == "none"
            && d["pidMode"].is_null()
            && d["runtimePlatform"]["operatingSystemFamily"] == "LINUX",
        "{described}"
    );

    let mut unknown = def.clone();
    unknown["family"] = "pidipcunknown".into();
    unknown["pidMode"] = "none".into();
    let out = env.try_register(&unknown)?;
    ensure!(
        out.status != 0
            && out
                .stderr
                .contains("pidMode: `none` is not a value of pidMode"),
        "pidMode none was not refused by name: {} {}",
        out.stdout,
        out.stderr
    );
    Ok(())
}
