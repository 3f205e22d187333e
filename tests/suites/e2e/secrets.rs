//! Task secrets end to end: a secret stored with `berthctl create-secret` reaches the
//! container's environment; a `repositoryCredentials` secret pulls from a registry that
//! demands basic auth; after the agent is killed and started again the task still runs with
//! it; a read-only token cannot write one; no berthctl output, no file under the agent's data
//! dir and no log of the run holds a value.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::berth::{Agent, ctl_command};
use berth_tests::{AUTH_PASSWORD, AUTH_USER, BadMode, BadRegistry, World, fixtures, poll};
use nix::sys::signal::Signal;
use sha2::Digest as _;

use super::{Env, RUNNING_WITHIN, container, hello, taskdef};

/// The value of the environment secret: written by berthctl, read only by the container.
const VALUE: &str = "e2e-secret-value-7f3a9c1d";

/// Every file under `dir` whose bytes hold `needle`.
pub(super) fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t)
                    if t.is_file()
                        && std::fs::read(&path)
                            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) =>
                {
                    found.push(path.display().to_string());
                }
                _ => {}
            }
        }
    }
    found
}

/// The line the container logs: the SHA-256 of the variable, so the value itself is never
/// written anywhere by the test's own container.
pub(super) fn digest_line(value: &str) -> String {
    format!(
        "sha={}\n",
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    )
}

/// The files the secret must not be in: the agent's data dir (its store, logs, everything),
/// the scheduler's files other than its database (which holds the value sealed) and every
/// log of the run.
fn leaks(env: &Env, needle: &str) -> Vec<String> {
    let mut found = files_holding(&env.dir, needle.as_bytes());
    // The value the test wrote for --from-file.
    found.retain(|f| !f.ends_with("secret-value"));
    found
}

pub(super) fn reach_the_environment_and_nowhere_else(w: &World) -> Result<()> {
    let reg = BadRegistry::start_serving(BadMode::BasicAuth, fixtures::hello_image()?)?;
    let mut env = Env::new(w, "10800")?;
    env.opts.insecure_registries.push(reg.host());
    env.connect()?;
    let image = hello(w, "e2e-secrets")?;

    let file = env.dir.join("secret-value");
    std::fs::write(&file, VALUE)?;
    let created = env.ok(&[
        "create-secret",
        "db",
        "--from-file",
        &file.display().to_string(),
    ])?;
    let creds = format!(r#"{{"username":"{AUTH_USER}","password":"{AUTH_PASSWORD}"}}"#);
    env.ok(&["create-secret", "registry", "--from-literal", &creds])?;
    let again = env.ctl(&["create-secret", "db", "--from-literal", "other"])?;
    ensure!(
        again.status != 0 && again.stderr.contains("--overwrite"),
        "{}",
        again.stderr
    );
    let listed = env.ok(&["list-secrets"])?;
    let listed_json = env.json(&["list-secrets"])?;
    ensure!(
        listed.stdout.contains("db") && listed.stdout.contains("registry"),
        "{}",
        listed.stdout
    );

    // A read-only token lists but cannot write.
    if env.scheduler.tls {
        let reader = env.json(&["create-api-token", "--role", "read-only"])?;
        let reader = reader["token"].as_str().context("no token")?.to_owned();
        let out = ctl_command(&env.scheduler.ctl_config)?
            .env("BERTH_TOKEN", &reader)
            .args([
                "--cluster",
                &env.cluster,
                "create-secret",
                "x",
                "--from-literal",
                "v",
            ])
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && err.contains("has role read-only; CreateSecret needs operator or above"),
            "{err}"
        );
        let out = ctl_command(&env.scheduler.ctl_config)?
            .env("BERTH_TOKEN", &reader)
            .args(["--cluster", &env.cluster, "list-secrets"])
            .output()?;
        ensure!(
            out.status.success(),
            "a read-only token cannot list secrets"
        );
    }

    let def = taskdef(
        "secrets",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
             "secrets": [{"name": "DB_PASSWORD", "valueFrom": "db"}],
             "command": ["sh", "-c",
                 "echo sha=$(printf %s \"$DB_PASSWORD\" | sha256sum | cut -c1-64); exec sleep 300"]},
            {"name": "private", "image": reg.reference("private/app"), "memory": 32,
             "stopTimeout": 1,
             "repositoryCredentials": {"credentialsParameter": "registry"},
             "command": ["sleep", "300"]}
        ]),
    );
    let (id, _) = env.run_until(&def, "RUNNING", RUNNING_WITHIN)?;
    let want = digest_line(VALUE);
    poll(Duration::from_secs(30), || {
        Ok(env.container_log(&id, "app").contains(&want).then_some(()))
    })
    .with_context(|| {
        format!(
            "the container never saw the secret: {:?}{}",
            env.container_log(&id, "app"),
            env.logs()
        )
    })?;
    // The registry refuses anonymous requests: the image resolved (its blobs may already be in
    // containerd from the suite's other images) with the secret's credentials.
    let task = env.task(&id)?;
    ensure!(
        container(&task, "private")?["lastStatus"] == "RUNNING",
        "{task}"
    );
    ensure!(
        reg.requests()
            .iter()
            .any(|r| r.starts_with("GET /v2/private/app/manifests/")),
        "the private image was never asked for: {:?}",
        reg.requests()
    );
    let described = env
        .json(&["describe-task-definition", "secrets"])?
        .to_string();
    ensure!(
        described.contains(r#""secrets":[{"name":"DB_PASSWORD","valueFrom":"db"}]"#)
            && described.contains(r#""repositoryCredentials":{"credentialsParameter":"registry"}"#),
        "{described}"
    );

    // The agent killed and started again: the task goes on with its secret.
    let agent = env.agent.take().context("no agent")?;
    agent
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(20))?;
    drop(agent);
    env.agent = Some(Agent::start(&env.opts, env.dir.join("agent-again.log"))?);
    env.wait_instance_connected()?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(30))?;
    let task = env.task(&id)?;
    ensure!(
        container(&task, "app")?["lastStatus"] == "RUNNING",
        "{task}"
    );
    ensure!(env.container_log(&id, "app").contains(&want));

    // Nothing the run wrote holds a value: the agent's data dir and logs, berthctl's output,
    // the scheduler's log; describe-tasks neither.
    let outputs = format!(
        "{}{}{}{}{}",
        created.stdout,
        listed.stdout,
        listed_json,
        described,
        env.json(&["describe-tasks", &id])?
    );
    for secret in [VALUE, AUTH_PASSWORD] {
        ensure!(
            !outputs.contains(secret),
            "berthctl showed a secret: {outputs}"
        );
        let leaked = leaks(&env, secret);
        ensure!(leaked.is_empty(), "{secret:?} is in {leaked:?}");
    }
    env.stop_task(&id, Duration::from_secs(30))?;
    env.ok(&["delete-secret", "db"])?;
    let gone = env.ctl(&["delete-secret", "db"])?;
    ensure!(
        gone.status != 0 && gone.stderr.contains("no secret db"),
        "{}",
        gone.stderr
    );
    Ok(())
}

pub(super) fn a_missing_secret_fails_the_task_naming_it(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-secrets-missing")?;
    let t = env.run_failing(&taskdef(
        "secret-missing",
        serde_json::json!([{"name": "app", "image": image, "memory": 32,
            "secrets": [{"name": "TOKEN", "valueFrom": "never-created"}],
            "command": ["true"]}]),
    ))?;
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("ResourceInitializationError: ")
            && reason.contains("secret never-created does not exist"),
        "{t}"
    );
    Ok(())
}
