//! Task secrets from AWS end to end, against moto's SSM Parameter Store and Secrets Manager on
//! 127.0.0.1: an SSM SecureString by ARN (decrypted), a key of a Secrets Manager JSON secret
//! (`ARN:json-key::`) and an SSM parameter by plain name (not in Berth's store) reach the
//! container's environment; a Secrets Manager secret is the `repositoryCredentials` of a
//! registry that demands basic auth; no file under the agent's data dir, no log of the run and
//! no berthctl output holds a value; a parameter that does not exist fails its task with a
//! reason that names it and AWS's error code. A container restarted in place after an agent
//! restart (its values gone from the agent's memory) keeps the environment it was created
//! with, as on ECS and Docker, even when the parameter was rotated meanwhile.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::moto::{ACCOUNT, Moto, REGION};
use berth_tests::{AUTH_PASSWORD, AUTH_USER, BadMode, BadRegistry, World, fixtures, poll};
use serde_json::json;

use super::secrets::{digest_line, files_holding};
use super::{Env, RUNNING_WITHIN, container, hello, taskdef};
use nix::sys::signal::Signal;

const DB_VALUE: &str = "ssm-db-value-5c2e81";
const API_VALUE: &str = "sm-api-key-value-9d04b7";
const FLAG_VALUE: &str = "ssm-by-name-value-e6a13f";

pub(super) fn aws_secrets_reach_the_environment_and_nowhere_else(w: &World) -> Result<()> {
    let moto = Moto::start(&w.scratch_dir("moto")?)?;
    let reg = BadRegistry::start_serving(BadMode::BasicAuth, fixtures::hello_image()?)?;
    let mut env = Env::new(w, "10800")?;
    env.opts.insecure_registries.push(reg.host());
    env.opts
        .extra_args
        .push(format!("--aws-endpoint={}", moto.endpoint()));
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let mut vars = Moto::agent_env().to_vec();
    vars.push(("AWS_REGION", REGION));
    env.start_agent_with_env(&vars)?;
    env.wait_instance_connected()?;
    let image = hello(w, "e2e-aws-secrets")?;

    let unique = w.unique("s");
    let param = moto.put_secure_parameter(&format!("/berth/{unique}/db"), DB_VALUE)?;
    let by_name = format!("/berth/{unique}/flag");
    moto.put_secure_parameter(&by_name, FLAG_VALUE)?;
    let app_secret = moto.create_secret(
        &format!("berth/{unique}/app"),
        &json!({"api_key": API_VALUE, "other": "unused"}).to_string(),
    )?;
    let registry_secret = moto.create_secret(
        &format!("berth/{unique}/registry"),
        &json!({"username": AUTH_USER, "password": AUTH_PASSWORD}).to_string(),
    )?;

    let show = "for v in DB_PASSWORD API_KEY FLAG; do eval x=\\$$v; \
                echo \"$v sha=$(printf %s \"$x\" | sha256sum | cut -c1-64)\"; done; exec sleep 300";
    let def = taskdef(
        "aws-secrets",
        json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
             "secrets": [
                 {"name": "DB_PASSWORD", "valueFrom": param},
                 {"name": "API_KEY", "valueFrom": format!("{app_secret}:api_key::")},
                 {"name": "FLAG", "valueFrom": by_name}],
             "command": ["sh", "-c", show]},
            {"name": "private", "image": reg.reference("private/app"), "memory": 32,
             "stopTimeout": 1,
             "repositoryCredentials": {"credentialsParameter": registry_secret},
             "command": ["sleep", "300"]}
        ]),
    );
    let (id, _) = env.run_until(&def, "RUNNING", RUNNING_WITHIN)?;
    let want: Vec<String> = [
        ("DB_PASSWORD", DB_VALUE),
        ("API_KEY", API_VALUE),
        ("FLAG", FLAG_VALUE),
    ]
    .iter()
    .map(|(name, value)| format!("{name} {}", digest_line(value)))
    .collect();
    poll(Duration::from_secs(30), || {
        let log = env.container_log(&id, "app");
        Ok(want.iter().all(|w| log.contains(w.as_str())).then_some(()))
    })
    .with_context(|| {
        format!(
            "the container did not see the secrets (SecureString decrypted, json-key taken): {:?}{}\nmoto:\n{}",
            env.container_log(&id, "app"),
            env.logs(),
            moto.log_tail(20)
        )
    })?;
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

    // A parameter that does not exist: the task fails naming it and AWS's error code.
    let absent = format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/berth/{unique}/absent");
    let failed = env.run_failing(&taskdef(
        "aws-secret-absent",
        json!([{"name": "app", "image": image, "memory": 32,
                "secrets": [{"name": "TOKEN", "valueFrom": absent}],
                "command": ["true"]}]),
    ))?;
    let reason = failed["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("ResourceInitializationError: ")
            && reason.contains(&absent)
            && reason.contains("ParameterNotFound"),
        "{failed}"
    );

    // Nothing the run wrote holds a value: the agent's data dir (its store, the containers'
    // logs), the agent's and the scheduler's logs; berthctl's descriptions neither.
    let outputs = format!(
        "{}{}",
        env.json(&["describe-tasks", &id])?,
        env.json(&["describe-task-definition", "aws-secrets"])?
    );
    for value in [DB_VALUE, API_VALUE, FLAG_VALUE, AUTH_PASSWORD] {
        ensure!(
            !outputs.contains(value),
            "berthctl showed a secret: {outputs}"
        );
        let leaked = files_holding(&env.dir, value.as_bytes());
        ensure!(leaked.is_empty(), "{value:?} is in {leaked:?}");
    }
    env.stop_task(&id, Duration::from_secs(30))?;
    Ok(())
}

const OLD_VALUE: &str = "ssm-before-rotation-71c0d2";
const NEW_VALUE: &str = "ssm-after-rotation-38a9f5";

/// A restart in place needs no secret from the agent: the container keeps the environment
/// it was created with (ECS's rule: a secret reaches a container when it is created; a rotated
/// value reaches new tasks). So neither an agent restart, which empties the agent's memory of
/// the values, nor a rotation in AWS changes what the restarted container sees, and no value
/// is on the agent's disk afterwards.
pub(super) fn aws_secrets_survive_an_agent_restart_and_a_restart_in_place(w: &World) -> Result<()> {
    let moto = Moto::start(&w.scratch_dir("moto")?)?;
    let mut env = Env::new(w, "10800")?;
    env.opts
        .extra_args
        .push(format!("--aws-endpoint={}", moto.endpoint()));
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let mut vars = Moto::agent_env().to_vec();
    vars.push(("AWS_REGION", REGION));
    env.start_agent_with_env(&vars)?;
    env.wait_instance_connected()?;
    let image = hello(w, "e2e-aws-secrets-restart")?;
    let name = format!("/berth/{}/rotated", w.unique("r"));
    let param = moto.put_secure_parameter(&name, OLD_VALUE)?;

    // Each run prints the value's digest; the first run lasts the restart policy's period
    // and fails, the second stays.
    let app = "echo \"run sha=$(printf %s \"$DB\" | sha256sum | cut -c1-64)\"; \
               if [ -f /ran ]; then exec sleep 300; fi; touch /ran; sleep 61; exit 1";
    let def = taskdef(
        "aws-secrets-restart",
        json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
             "secrets": [{"name": "DB", "valueFrom": param}],
             "restartPolicy": {"enabled": true, "restartAttemptPeriod": 60},
             "command": ["sh", "-c", app]}
        ]),
    );
    let (id, _) = env.run_until(&def, "RUNNING", RUNNING_WITHIN)?;
    let old_line = format!("run {}", digest_line(OLD_VALUE).trim_end());
    let runs = |env: &Env| {
        env.container_log(&id, "app")
            .lines()
            .filter(|l| l.contains("run sha="))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    poll(Duration::from_secs(30), || {
        Ok(runs(&env)
            .iter()
            .any(|l| l.contains(&old_line))
            .then_some(()))
    })
    .with_context(|| format!("app never saw its secret: {:?}", runs(&env)))?;

    // The value is rotated in AWS, and the agent dies and comes back with nothing in memory.
    moto.overwrite_parameter(&name, NEW_VALUE)?;
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    env.start_agent_with_env(&vars)?;
    env.wait_instance_connected()?;

    let t = poll(Duration::from_secs(150), || {
        let t = env.task(&id)?;
        Ok((container(&t, "app")?["restartCount"] == 1 && runs(&env).len() == 2).then_some(t))
    })
    .with_context(|| {
        format!(
            "app was never restarted in place after the agent's restart: {:?}{}",
            runs(&env),
            env.logs()
        )
    })?;
    ensure!(t["lastStatus"] == "RUNNING", "{t}");
    let seen = runs(&env);
    ensure!(
        seen.iter().all(|l| l.contains(&old_line)),
        "the restarted container's environment changed: {seen:?}"
    );
    for value in [OLD_VALUE, NEW_VALUE] {
        let leaked = files_holding(&env.dir, value.as_bytes());
        ensure!(leaked.is_empty(), "{value:?} is in {leaked:?}");
    }
    env.stop_task(&id, Duration::from_secs(30))?;
    Ok(())
}
