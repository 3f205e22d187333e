//! Registry credentials and a misbehaving registry through the real agent: a Docker config's
//! `credsStore` runs a `docker-credential-*` helper script found on the agent's PATH, and the
//! task's image comes from a registry that demands basic credentials; the password reaches no
//! log of the run and nothing under the agent's data dir. A registry that stalls past
//! `image_pull_timeout` stops the task with ECS's `CannotPullContainerError`, naming the
//! registry, the tries and the last error.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{AUTH_PASSWORD, AUTH_USER, BadMode, BadRegistry, World, fixtures};

use super::{Env, RUNNING_WITHIN, taskdef};

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
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

pub(super) fn credentials_from_a_docker_credential_helper(w: &World) -> Result<()> {
    let reg = BadRegistry::start_serving(BadMode::BasicAuth, fixtures::hello_image()?)?;
    let mut env = Env::new(w, "10800")?;
    let bin = env.dir.join("helpers");
    std::fs::create_dir_all(&bin)?;
    let helper = bin.join("docker-credential-berthe2e");
    let asked = env.dir.join("helper-asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\nif [ \"$server\" = {} ]; then echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"{AUTH_USER}\",\"Secret\":\"{AUTH_PASSWORD}\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
            asked.display(),
            reg.host()
        ),
    )?;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))?;
    let docker = env.dir.join("docker-config.json");
    std::fs::write(&docker, r#"{"credsStore": "berthe2e"}"#)?;
    env.opts.insecure_registries.push(reg.host());
    env.opts
        .extra_args
        .push(format!("--registry-docker-config={}", docker.display()));
    // The helper is found on the agent's PATH, as the Docker CLI finds it.
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    env.start_agent_with_env(&[("PATH", &path)])?;
    env.wait_instance_connected()?;

    let (id, _) = env.run_until(
        &taskdef(
            "private",
            serde_json::json!([{"name": "app", "image": reg.reference("private/app"),
                "memory": 32, "stopTimeout": 1, "command": ["sleep", "300"]}]),
        ),
        "RUNNING",
        RUNNING_WITHIN,
    )?;
    let asked = std::fs::read_to_string(&asked).context("the helper was never run")?;
    ensure!(
        asked.lines().all(|l| l == format!("get {}", reg.host())),
        "{asked}"
    );
    ensure!(
        reg.requests()
            .iter()
            .any(|r| r.starts_with("GET /v2/private/app/blobs/")),
        "{:?}",
        reg.requests()
    );
    env.stop_task(&id, Duration::from_secs(30))?;
    // The password is in the helper's script and nowhere else the run wrote.
    let mut leaked = files_holding(&env.dir, AUTH_PASSWORD.as_bytes());
    leaked.retain(|f| !f.ends_with("docker-credential-berthe2e"));
    ensure!(leaked.is_empty(), "the password is in {leaked:?}");
    Ok(())
}

pub(super) fn a_registry_slower_than_the_pull_timeout_stops_the_task_naming_it(
    w: &World,
) -> Result<()> {
    let stall = BadRegistry::start(BadMode::Stall)?;
    let mut env = Env::new(w, "10800")?;
    env.opts.insecure_registries.push(stall.host());
    env.opts
        .extra_args
        .push("--image-pull-timeout=6s".to_owned());
    env.connect()?;
    let t = env.run_failing(&taskdef(
        "stalled",
        serde_json::json!([{"name": "app", "image": stall.reference("slow/app"), "memory": 32}]),
    ))?;
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with(&format!(
            "CannotPullContainerError: registry {} failed 1 try of {} within 6s; last error: ",
            stall.host(),
            stall.reference("slow/app")
        )) && reason.contains("timed out"),
        "{t}"
    );
    Ok(())
}
