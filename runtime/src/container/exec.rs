//! Running an extra process inside a running container (containerd's Tasks.Exec), as health
//! checks do: the process gets the container's own process spec (environment, user, working
//! directory, capabilities, rlimits) with other arguments, runs without a terminal and with its
//! output discarded, and is killed when it overruns its timeout. The exec process is deleted
//! from containerd on every path once it was created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ContainerId, not_found_or};
use crate::containerd::{Containerd, ContainerdError, Op};
use crate::error::Error;

/// After SIGKILL, how long the shim gets to report the exec process's exit.
const KILL_GRACE: Duration = Duration::from_secs(10);
const SIGKILL: u32 = 9;

/// How an exec process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited with this code (128 + signal number when a signal ended it).
    Exited(u32),
    /// It ran longer than its timeout and was killed.
    TimedOut,
}

/// Runs `args` inside the running container `id` and waits for it at most `timeout`.
pub(crate) async fn exec(
    client: &dyn Containerd,
    id: &ContainerId,
    args: &[String],
    timeout: Duration,
) -> Result<ExecOutcome, Error> {
    if args.is_empty() {
        return Err(ContainerdError::invalid(Op::Exec, id.as_str(), "no command to run").into());
    }
    let process = process_spec(client, id, args).await?;
    let exec_id = next_exec_id();
    client
        .exec(id.as_str(), &exec_id, process)
        .await
        .map_err(|e| not_found_or(client, id, e))?;
    let outcome = start_and_wait(client, id, &exec_id, timeout).await;
    if let Err(error) = client.exec_delete(id.as_str(), &exec_id).await
        && !error.is_not_found()
    {
        tracing::warn!(container.id = %id, exec.id = %exec_id, error = %error.message(), "could not delete exec process");
    }
    outcome
}

async fn start_and_wait(
    client: &dyn Containerd,
    id: &ContainerId,
    exec_id: &str,
    timeout: Duration,
) -> Result<ExecOutcome, Error> {
    client.exec_start(id.as_str(), exec_id).await?;
    match tokio::time::timeout(timeout, client.exec_wait(id.as_str(), exec_id)).await {
        Ok(Ok(exit)) => return Ok(ExecOutcome::Exited(exit.code)),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {}
    }
    tracing::debug!(container.id = %id, exec.id = %exec_id, timeout_s = timeout.as_secs_f64(), "exec process overran its timeout; killing it");
    match client.exec_kill(id.as_str(), exec_id, SIGKILL).await {
        // It may have finished between the timeout and the kill.
        Err(e) if !e.is_finished_process() => return Err(e.into()),
        _ => {}
    }
    match tokio::time::timeout(KILL_GRACE, client.exec_wait(id.as_str(), exec_id)).await {
        Ok(Ok(_)) => Ok(ExecOutcome::TimedOut),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(Error::Timeout {
            what: "exit of an exec process after SIGKILL",
            id: id.to_string(),
            seconds: KILL_GRACE.as_secs(),
        }),
    }
}

/// The container's process spec (as JSON) with `args` and no terminal.
async fn process_spec(
    client: &dyn Containerd,
    id: &ContainerId,
    args: &[String],
) -> Result<Vec<u8>, Error> {
    let container = client
        .container_get(id.as_str())
        .await
        .map_err(|e| not_found_or(client, id, e))?;
    with_args(&container.spec, args).map_err(|reason| {
        ContainerdError::invalid(
            Op::Exec,
            id.as_str(),
            &format!("the container's OCI spec {reason}"),
        )
        .into()
    })
}

/// The `process` of an OCI runtime spec (JSON), with `args` and `terminal: false`. Every other
/// member (env, user, cwd, capabilities, rlimits, ...) is kept as the container has it.
fn with_args(spec: &[u8], args: &[String]) -> Result<Vec<u8>, String> {
    let spec: serde_json::Value =
        serde_json::from_slice(spec).map_err(|e| format!("is not valid JSON: {e}"))?;
    let Some(serde_json::Value::Object(process)) = spec.get("process") else {
        return Err("has no process".to_owned());
    };
    let mut process = process.clone();
    process.insert("args".to_owned(), serde_json::json!(args));
    process.insert("terminal".to_owned(), serde_json::Value::Bool(false));
    process.remove("consoleSize");
    serde_json::to_vec(&process).map_err(|e| format!("cannot be encoded again: {e}"))
}

/// A fresh exec ID, unique within this process and across its restarts.
fn next_exec_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("berth-exec-{nanos:x}-{n}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::Code;

    use super::*;
    use crate::containerd::fake::FakeContainerd;
    use crate::containerd::{ContainerRecord, TaskStatus};

    const ID: &str = "t1.web";

    /// A running container whose exec processes run until killed, unless told otherwise.
    fn running() -> Arc<FakeContainerd> {
        container(Some(TaskStatus::Running))
    }

    fn container(task: Option<TaskStatus>) -> Arc<FakeContainerd> {
        let fake = FakeContainerd::new();
        let record = ContainerRecord {
            id: ID.to_owned(),
            spec: br#"{"process":{"args":["sleep","1000"],"env":["A=1"],"cwd":"/"}}"#.to_vec(),
            snapshot_key: ID.to_owned(),
            ..ContainerRecord::default()
        };
        fake.put_container(record, task);
        fake
    }

    async fn check(fake: &FakeContainerd, timeout: Duration) -> Result<ExecOutcome, Error> {
        let args = ["/bin/check".to_owned()];
        exec(fake, &ContainerId::from_containerd(ID), &args, timeout).await
    }

    fn calls(ops: &[&str]) -> Vec<String> {
        ops.iter().map(|op| format!("{op} {ID}")).collect()
    }

    #[tokio::test]
    async fn an_exec_process_reports_its_exit_and_is_deleted() {
        let fake = running();
        fake.exec_exits_with(Some(3));
        let outcome = check(&fake, Duration::from_secs(5)).await.unwrap();
        assert_eq!(outcome, ExecOutcome::Exited(3));
        let expected = [
            "container get",
            "exec",
            "exec start",
            "exec wait",
            "exec delete",
        ];
        assert_eq!(fake.calls(), calls(&expected));
        assert_eq!(fake.execs(), 0);
    }

    #[tokio::test]
    async fn an_exec_process_that_cannot_start_is_deleted() {
        let fake = running();
        let refused = "exec: \"/bin/check\": stat /bin/check: no such file or directory";
        fake.fail(Op::ExecStart, Code::FailedPrecondition, refused);
        let err = check(&fake, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("containerd exec start {ID}: {refused} (FailedPrecondition)")
        );
        let expected = ["container get", "exec", "exec start", "exec delete"];
        assert_eq!(fake.calls(), calls(&expected));
        assert_eq!(fake.execs(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exec_process_that_overruns_its_timeout_is_killed_and_deleted() {
        let fake = running();
        let started = tokio::time::Instant::now();
        let outcome = check(&fake, Duration::from_secs(2)).await.unwrap();
        assert_eq!(outcome, ExecOutcome::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let expected = [
            "container get",
            "exec",
            "exec start",
            "exec wait",
            "exec kill",
            "exec wait",
            "exec delete",
        ];
        assert_eq!(fake.calls(), calls(&expected));
        assert_eq!(fake.execs(), 0);
    }

    #[tokio::test]
    async fn a_container_without_a_task_is_not_found_and_nothing_starts() {
        let fake = container(None);
        let err = check(&fake, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { id, .. } if id == ID),
            "{err}"
        );
        assert_eq!(fake.calls(), calls(&["container get", "exec"]));
    }

    #[tokio::test]
    async fn an_empty_command_is_refused_before_containerd_is_asked() {
        let fake = running();
        let err = exec(
            &*fake,
            &ContainerId::from_containerd(ID),
            &[],
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no command to run"), "{err}");
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn the_process_keeps_env_user_and_cwd_with_new_args() {
        let spec = br#"{"ociVersion":"1.0.2","process":{"terminal":true,"consoleSize":{"height":1,"width":1},"user":{"uid":1000,"gid":1000},"args":["sleep","1000"],"env":["A=1"],"cwd":"/srv"},"root":{"path":"rootfs"}}"#;
        let out = with_args(spec, &["/bin/sh".into(), "-c".into(), "true".into()]).unwrap();
        let process: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            process["args"],
            serde_json::json!(["/bin/sh", "-c", "true"])
        );
        assert_eq!(process["terminal"], serde_json::json!(false));
        assert_eq!(process["env"], serde_json::json!(["A=1"]));
        assert_eq!(process["cwd"], serde_json::json!("/srv"));
        assert_eq!(process["user"]["uid"], serde_json::json!(1000));
        assert!(process.get("consoleSize").is_none());
    }

    #[test]
    fn a_spec_without_a_process_is_refused() {
        assert_eq!(
            with_args(br#"{"root":{}}"#, &["true".into()]).unwrap_err(),
            "has no process"
        );
        assert!(with_args(b"not json", &["true".into()]).is_err());
    }

    #[test]
    fn exec_ids_are_unique_and_valid() {
        let a = next_exec_id();
        let b = next_exec_id();
        assert_ne!(a, b);
        assert!(a.len() <= 76);
        assert!(super::super::is_valid_containerd_id(&a));
    }
}
