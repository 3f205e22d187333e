//! Running an extra process inside a running container (containerd's Tasks.Exec), as health
//! checks do: the process gets the container's own process spec (environment, user, working
//! directory, capabilities, rlimits) with other arguments, runs without a terminal and with its
//! output discarded, and is killed when it overruns its timeout. The exec process is deleted
//! from containerd on every path once it was created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest,
    WaitRequest,
};

use super::ContainerId;
use crate::containerd::{Containerd, ContainerdError};
use crate::error::Error;

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
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
    client: &Containerd,
    id: &ContainerId,
    args: &[String],
    timeout: Duration,
) -> Result<ExecOutcome, Error> {
    if args.is_empty() {
        return Err(ContainerdError::invalid("exec", id.as_str(), "no command to run").into());
    }
    let process = process_spec(client, id, args).await?;
    let exec_id = next_exec_id();
    client
        .tasks()
        .exec(client.request(ExecProcessRequest {
            container_id: id.to_string(),
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            terminal: false,
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE_URL.to_owned(),
                value: process,
            }),
            exec_id: exec_id.clone(),
        }))
        .await
        .map_err(|s| not_found_or(client, id, ContainerdError::new("exec", id.as_str(), &s)))?;
    let outcome = start_and_wait(client, id, &exec_id, timeout).await;
    if let Err(s) = client
        .tasks()
        .delete_process(client.request(DeleteProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.clone(),
        }))
        .await
        && s.code() != tonic::Code::NotFound
    {
        tracing::warn!(container.id = %id, exec.id = %exec_id, error = %s.message(), "could not delete exec process");
    }
    outcome
}

async fn start_and_wait(
    client: &Containerd,
    id: &ContainerId,
    exec_id: &str,
    timeout: Duration,
) -> Result<ExecOutcome, Error> {
    client
        .tasks()
        .start(client.request(StartRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_owned(),
        }))
        .await
        .map_err(|s| ContainerdError::new("exec start", id.as_str(), &s))?;
    let wait = move || async move {
        client
            .tasks()
            .wait(client.request_with(
                WaitRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_owned(),
                },
                None,
                None,
            ))
            .await
    };
    match tokio::time::timeout(timeout, wait()).await {
        Ok(Ok(r)) => return Ok(ExecOutcome::Exited(r.into_inner().exit_status)),
        Ok(Err(s)) => return Err(ContainerdError::new("exec wait", id.as_str(), &s).into()),
        Err(_) => {}
    }
    tracing::debug!(container.id = %id, exec.id = %exec_id, timeout_s = timeout.as_secs_f64(), "exec process overran its timeout; killing it");
    match client
        .tasks()
        .kill(client.request(KillRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_owned(),
            signal: SIGKILL,
            all: false,
        }))
        .await
    {
        Ok(_) => {}
        // It finished between the timeout and the kill.
        Err(s) if s.code() == tonic::Code::NotFound => {}
        Err(s)
            if s.code() == tonic::Code::FailedPrecondition && s.message().contains("finished") => {}
        Err(s) => return Err(ContainerdError::new("exec kill", id.as_str(), &s).into()),
    }
    match tokio::time::timeout(KILL_GRACE, wait()).await {
        Ok(Ok(_)) => Ok(ExecOutcome::TimedOut),
        Ok(Err(s)) => Err(ContainerdError::new("exec wait", id.as_str(), &s).into()),
        Err(_) => Err(Error::Timeout {
            what: "exit of an exec process after SIGKILL",
            id: id.to_string(),
            seconds: KILL_GRACE.as_secs(),
        }),
    }
}

/// The container's process spec (as JSON) with `args` and no terminal.
async fn process_spec(
    client: &Containerd,
    id: &ContainerId,
    args: &[String],
) -> Result<Vec<u8>, Error> {
    let container = client
        .containers()
        .get(client.request(GetContainerRequest { id: id.to_string() }))
        .await
        .map_err(|s| {
            not_found_or(
                client,
                id,
                ContainerdError::new("container get", id.as_str(), &s),
            )
        })?
        .into_inner()
        .container
        .ok_or_else(|| Error::NotFound {
            id: id.to_string(),
            namespace: client.namespace().to_owned(),
        })?;
    let spec = container.spec.map(|s| s.value).unwrap_or_default();
    with_args(&spec, args).map_err(|reason| {
        ContainerdError::invalid(
            "exec",
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

fn not_found_or(client: &Containerd, id: &ContainerId, e: ContainerdError) -> Error {
    if e.is_not_found() {
        Error::NotFound {
            id: id.to_string(),
            namespace: client.namespace().to_owned(),
        }
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
