//! Trust end to end: TLS and credentials on every call. A plaintext client, a client without a
//! credential, a read-only token running a task and a token of another cluster are refused with
//! what is missing; a used-up join token and a wrong CA pin keep an agent out (and write no
//! instance); and no secret the trial made appears in any log of the run.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use berth_tests::berth::{Agent, JoinCredentials, ctl_command};

use super::Env;

/// berthctl with `config` and extra environment, never failing on a non-zero exit.
fn ctl_env(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Result<(i32, String)> {
    let mut cmd = ctl_command(&env.scheduler.ctl_config)?;
    cmd.args(["--cluster", &env.cluster]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().context("run berthctl")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub(super) fn clients_need_tls_and_a_credential_with_the_role(w: &World) -> Result<()> {
    let env = Env::new(w, "10800")?;
    let c = env.cluster.clone();
    env.ok(&["create-cluster", &c])?;

    // Plaintext against the TLS port.
    let plain = env.scheduler.endpoint.replace("https://", "http://");
    let (status, err) = ctl_env(&env, &[("BERTH_ENDPOINT", &plain)], &["list-clusters"])?;
    ensure!(status != 0, "a plaintext client was served: {err}");

    // The CA but no token: the scheduler names what is missing.
    let ca = env.dir.join("ca.pem");
    std::fs::write(
        &ca,
        std::fs::read(env.scheduler.data_dir.join("pki/ca.crt")).context("read the CA")?,
    )?;
    let empty = env.dir.join("empty.toml");
    std::fs::write(&empty, "")?;
    let mut bare = ctl_command(&empty)?;
    let out = bare
        .args(["--endpoint", &env.scheduler.endpoint])
        .env("BERTH_CA_FILE", &ca)
        .args(["list-clusters"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("no credential"),
        "a call without a credential: {err}"
    );

    // A read-only token lists but cannot run a task.
    let reader = env.json(&["create-api-token", "--role", "read-only"])?;
    let reader = reader["token"].as_str().context("no token")?.to_owned();
    let (status, _) = ctl_env(&env, &[("BERTH_TOKEN", &reader)], &["list-tasks"])?;
    ensure!(status == 0, "a read-only token cannot list");
    let (status, err) = ctl_env(
        &env,
        &[("BERTH_TOKEN", &reader)],
        &["run-task", "--task-definition", "nosuch"],
    )?;
    ensure!(
        status != 0 && err.contains("has role read-only; RunTask needs operator or above"),
        "a read-only token running a task: {err}"
    );

    // A token of cluster A cannot touch cluster B.
    let other = w.unique("b");
    env.ok(&["create-cluster", &other])?;
    let scoped = env.json(&["create-api-token", "--role", "operator"])?;
    let scoped = scoped["token"].as_str().context("no token")?.to_owned();
    let mut cmd = ctl_command(&env.scheduler.ctl_config)?;
    let out = cmd
        .env("BERTH_TOKEN", &scoped)
        .args(["--cluster", &other, "list-tasks"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains(&format!(
                "is scoped to cluster {c} and cannot act on cluster {other}"
            )),
        "a token of cluster {c} on {other}: {err}"
    );

    secrets_absent(&env, &[&reader, &scoped])
}

pub(super) fn used_up_tokens_and_wrong_pins_keep_agents_out(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let c = env.cluster.clone();
    env.ok(&["create-cluster", &c])?;
    let once = env.json(&["create-join-token", "--uses", "1"])?;
    let join = JoinCredentials {
        token: once["token"].as_str().context("no token")?.to_owned(),
        ca_pin: once["caPin"].as_str().context("no pin")?.to_owned(),
    };
    env.opts.join = Some(join.clone());
    env.start_agent()?;
    env.wait_instance_connected()?;

    // The same token again, for another host: used up.
    let mut second = env.opts.clone();
    second.data_dir = env.dir.join("second-agent");
    let replay = Agent::start(&second, env.dir.join("second-agent.log"))?;
    replay
        .daemon
        .wait_for_log("has no uses left", Duration::from_secs(20))?;

    // A wrong pin: the token is never sent.
    let mut third = env.opts.clone();
    third.data_dir = env.dir.join("third-agent");
    let fresh = env.json(&["create-join-token"])?;
    let fresh_token = fresh["token"].as_str().context("no token")?.to_owned();
    third.join = Some(JoinCredentials {
        token: fresh_token.clone(),
        ca_pin: format!("sha256:{}", "0".repeat(64)),
    });
    let pinned = Agent::start(&third, env.dir.join("third-agent.log"))?;
    pinned
        .daemon
        .wait_for_log("does not match scheduler_ca_pin", Duration::from_secs(20))?;
    let tokens = env.json(&["list-join-tokens"])?.to_string();
    ensure!(
        tokens.contains("\"usesLeft\":0"),
        "the used-up token: {tokens}"
    );
    ensure!(
        env.instances()?.len() == 1,
        "a refused agent left an instance"
    );
    drop(replay);
    drop(pinned);
    secrets_absent(&env, &[&join.token, &fresh_token])
}

/// No secret in any log of the trial (scheduler, agents) nor in describe output.
pub(super) fn secrets_absent(env: &Env, secrets: &[&str]) -> Result<()> {
    let mut text = env.logs();
    for entry in std::fs::read_dir(&env.dir)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text.push_str(&env.json(&["list-container-instances"])?.to_string());
    for secret in secrets {
        let (_, secret_part) = secret.split_once('.').context("a token without a secret")?;
        ensure!(
            !text.contains(secret_part),
            "a secret appears in the logs or describe output"
        );
    }
    Ok(())
}
