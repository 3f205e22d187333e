//! ECS `pidMode: task` and `ipcMode: task` end to end: the containers of one task see each
//! other's processes, a SysV shared-memory segment made in the task's IPC namespace and one
//! `/dev/shm`; another task sees none of it; an agent killed and started again leaves the
//! task running and sharing, and a container that starts only under the new agent joins the
//! same namespaces; the task's holder and namespaces are gone once the task is released. The
//! holder is the task's essential container: a restart in place joins its namespaces, and
//! once it is killed the task stops with a reason that names it, nothing restarted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, checks_script, container, hello, taskdef};

/// The size of the SysV segment the trial makes, which the containers look for in
/// /proc/sysvipc/shm (unlikely to be any other segment's).
const SEGMENT_BYTES: &str = "12347";

/// A shell loop that waits (up to 60 s) until `condition` holds, and fails otherwise.
fn eventually(condition: &str) -> String {
    format!(
        "i=0; until {condition}; do i=$((i+1)); test $i -lt 300 || break; sleep 0.2; done; {condition}"
    )
}

/// Whether a process whose command line matches `pattern` is visible here (bracket a letter,
/// `[s]leep`, so that the checking shell's own command line does not match).
fn sees(pattern: &str) -> String {
    format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -q '{pattern}'"
    )
}

/// The segment's line in /proc/sysvipc/shm (its size is the fourth column).
fn segment_visible() -> String {
    format!("awk '$4 == {SEGMENT_BYTES}' /proc/sysvipc/shm | grep -q .")
}

/// The task's shared namespaces' directory under the agent's data dir.
fn namespace_dir(env: &Env, task: &str) -> PathBuf {
    env.opts.data_dir.join("namespaces").join(task)
}

/// The PID of the task's holder (the one process of its cgroup), once it is there.
fn holder_pid(task: &str) -> Result<u32> {
    let path = format!("/sys/fs/cgroup/pids/berth/{task}/berth.ns-holder/cgroup.procs");
    let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    match pids.as_slice() {
        [pid] => Ok(*pid),
        other => anyhow::bail!("the holder's cgroup {path} holds {other:?}"),
    }
}

/// The task once its container `name` has an exit code.
fn exited(env: &Env, id: &str, name: &str) -> Result<serde_json::Value> {
    poll(Duration::from_secs(90), || {
        let t = env.task(id)?;
        Ok((!container(&t, name)?["exitCode"].is_null()).then_some(t))
    })
    .with_context(|| format!("{name} never exited: {}", env.logs()))
}

/// Whether the holder `pid` has ended: no such process, another process under its PID, or a
/// zombie (its parent after the agent's restart, init or a subreaper, reaps it when it will).
fn holder_gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // `pid (comm) state ...`: the comm is in parentheses, the state right after.
    let Some((comm, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else {
        return true;
    };
    comm != "berth-ns-holder" || rest.starts_with('Z') || rest.starts_with('X')
}

/// Makes a SysV shared-memory segment in the IPC namespace bound at `ipc`, from the host.
fn make_segment(ipc: &Path) -> Result<()> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--ipc={}", ipc.display()))
        .args(["ipcmk", "-M", SEGMENT_BYTES])
        .output()
        .context("running nsenter ipcmk (util-linux)")?;
    ensure!(
        out.status.success(),
        "nsenter ipcmk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

pub(super) fn task_mode_shares_and_survives_an_agent_restart(w: &World) -> Result<()> {
    let image = hello(w, "e2e-pidipc-task")?;
    let mut env = Env::with_agent(w, "1")?;

    let shared_checks = |who: &str| {
        checks_script(&[
            // The other containers' processes, and the holder as PID 1.
            eventually(&sees("[s]leep 3601")),
            "test \"$(cat /proc/1/comm)\" = berth-ns-holder".to_owned(),
            // One /dev/shm and one IPC namespace for the task.
            eventually("test \"$(cat /dev/shm/marker 2>/dev/null)\" = from-a"),
            eventually(&segment_visible()),
            format!("echo {who} > /dev/shm/{who}"),
        ])
    };
    let mut def = taskdef(
        "pidipctask",
        serde_json::json!([
            {"name": "a", "image": image, "memory": 32, "essential": true,
             "command": ["sh", "-c", "echo from-a > /dev/shm/marker; exec sleep 3601"]},
            {"name": "check", "image": image, "memory": 32, "essential": false,
             "dependsOn": [{"containerName": "a", "condition": "START"}],
             "command": ["sh", "-c", shared_checks("check")]},
            // Starts only once the trial says so (a file in the task's /dev/shm), which is
            // after the agent restarted: a container the new agent starts.
            {"name": "gate", "image": image, "memory": 32, "essential": false,
             "command": ["sh", "-c", "until test -e /dev/shm/go; do sleep 0.2; done"]},
            {"name": "late", "image": image, "memory": 32, "essential": false,
             "dependsOn": [{"containerName": "gate", "condition": "SUCCESS"}],
             "command": ["sh", "-c", shared_checks("late")]}
        ]),
    );
    def["pidMode"] = "task".into();
    def["ipcMode"] = "task".into();
    // Not RUNNING until `late` starts: the task is still starting when the agent dies.
    env.register(&def)?;
    let id = env.run_task("pidipctask")?;
    let dir = namespace_dir(&env, &id);
    poll(Duration::from_secs(90), || {
        Ok((holder_pid(&id).is_ok() && dir.join("ipc").exists()).then_some(()))
    })
    .with_context(|| format!("the task's namespaces never appeared: {}", env.logs()))?;
    make_segment(&dir.join("ipc"))?;
    let t = exited(&env, &id, "check")?;
    ensure!(
        container(&t, "check")?["exitCode"] == 0,
        "check: {t}\n{}",
        env.container_log(&id, "check")
    );
    let holder = holder_pid(&id)?;

    // Another task, sharing its own namespaces: none of the first task's.
    let mut other = taskdef(
        "pidipcother",
        serde_json::json!([
            {"name": "lone", "image": image, "memory": 32,
             "command": ["sh", "-c", checks_script(&[
                 format!("! {}", sees("[s]leep 3601")),
                 format!("! {}", segment_visible()),
                 "test ! -e /dev/shm/marker".to_owned(),
                 "test \"$(cat /proc/1/comm)\" = berth-ns-holder".to_owned(),
             ])]}
        ]),
    );
    other["pidMode"] = "task".into();
    other["ipcMode"] = "task".into();
    env.run_checks(&other, &["lone"])?;

    // The agent dies; the task, its holder and its namespaces stay.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    env.start_agent()?;
    env.wait_instance_connected()?;
    ensure!(
        holder_pid(&id)? == holder,
        "the holder changed across the agent's restart"
    );
    std::fs::write(dir.join("shm/go"), b"go").context("writing the task's /dev/shm/go")?;
    let t = exited(&env, &id, "late")?;
    ensure!(
        container(&t, "late")?["exitCode"] == 0,
        "late: {t}\n{}",
        env.container_log(&id, "late")
    );
    ensure!(
        t["lastStatus"] == "RUNNING" && container(&t, "a")?["exitCode"].is_null(),
        "the task's first container did not keep running: {t}"
    );
    // What the containers wrote went to the one /dev/shm on the host.
    for who in ["check", "late"] {
        ensure!(
            dir.join("shm").join(who).is_file(),
            "{who} wrote nothing to the task's /dev/shm"
        );
    }

    // Stopped and released: the holder is gone, and so are its namespaces.
    env.stop_task(&id, Duration::from_secs(60))?;
    env.wait_released(&id, Duration::from_secs(60))?;
    ensure!(holder_gone(holder), "the holder {holder} outlived its task");
    ensure!(!dir.exists(), "{} outlived its task", dir.display());
    Ok(())
}

/// The stop reason of a task whose holder (of its PID namespace) was killed.
const HOLDER_GONE: &str = "Essential container in task exited: the task's namespace holder \
     (berth-ns-holder, berth-agent task-holder) is gone; it was PID 1 of the PID namespace its \
     containers share (pidMode task), and the kernel killed every process of that namespace \
     with it";

/// The holder is the task's essential pause container, as on ECS. A container restarted in
/// place while it runs joins the same namespaces; once it is killed from the host, the kernel
/// kills every container of its PID namespace, and the task stops with a reason that names
/// the holder: no container is restarted into the dead namespace (nor into another's), though
/// `side` ran long enough for its restart policy to restart it after any other exit.
pub(super) fn killed_holder_stops_the_task_by_name(w: &World) -> Result<()> {
    let image = hello(w, "e2e-pidipc-holder")?;
    let env = Env::with_agent(w, "1")?;
    let policy = serde_json::json!({"enabled": true, "restartAttemptPeriod": 60});
    // app's first run exits after 61 s and is restarted in place (after the 10 s backoff);
    // its second run checks that it is in the task's namespaces and says so in /dev/shm.
    let second_run = checks_script(&[
        "test \"$(cat /proc/1/comm)\" = berth-ns-holder".to_owned(),
        sees("[s]leep 3602"),
        "touch /dev/shm/rejoined".to_owned(),
    ]);
    let app = format!(
        "if [ -f /ran ]; then {second_run}; exec sleep 3601; fi; touch /ran; sleep 61; exit 1"
    );
    let mut def = taskdef(
        "pidipcholder",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "essential": true,
             "command": ["sh", "-c", app], "restartPolicy": policy},
            {"name": "side", "image": image, "memory": 32, "essential": false,
             "command": ["sh", "-c", "exec sleep 3602"], "restartPolicy": policy}
        ]),
    );
    def["pidMode"] = "task".into();
    def["ipcMode"] = "task".into();
    let (id, _) = env.start_task(&def)?;
    let dir = namespace_dir(&env, &id);
    let holder = holder_pid(&id)?;

    // The restart in place, into the same namespaces.
    let t = poll(Duration::from_secs(150), || {
        let t = env.task(&id)?;
        Ok(
            (container(&t, "app")?["restartCount"] == 1 && dir.join("shm/rejoined").exists())
                .then_some(t),
        )
    })
    .with_context(|| {
        format!(
            "app was never restarted into the task's namespaces: {}\n{}",
            env.container_log(&id, "app"),
            env.logs()
        )
    })?;
    ensure!(t["lastStatus"] == "RUNNING", "{t}");
    ensure!(
        holder_pid(&id)? == holder,
        "the holder changed with a restart"
    );

    // The holder is killed from the host.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(holder)?),
        Signal::SIGKILL,
    )
    .context("killing the holder")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(
        t["stopCode"] == "EssentialContainerExited" && t["stoppedReason"] == HOLDER_GONE,
        "{t}"
    );
    for (name, restarts) in [("app", 1), ("side", 0)] {
        let c = container(&t, name)?;
        // describe-tasks leaves a restartCount of 0 out.
        ensure!(
            c["exitCode"] == 137 && c["restartCount"].as_u64().unwrap_or(0) == restarts,
            "{name} was not killed with the holder, or was restarted: {t}"
        );
    }
    env.wait_released(&id, Duration::from_secs(60))?;
    ensure!(holder_gone(holder), "the holder {holder} is still there");
    ensure!(!dir.exists(), "{} outlived its task", dir.display());
    Ok(())
}
