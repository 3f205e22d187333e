//! Registry credentials through the real agent against Debian's docker-registry demanding
//! htpasswd basic credentials: one task's image is pulled with the credentials a Docker
//! config's `credsStore` helper (a `docker-credential-*` script on the agent's PATH) gives,
//! another's with its `repositoryCredentials` secret; the password reaches no file of the run
//! but the helper script and the htpasswd registry's own.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{PrivateRegistry, RegistryOptions, World, fixtures};

use super::{Env, RUNNING_WITHIN, taskdef};

const USER: &str = "e2e-htpasswd";
const PASSWORD: &str = "htpasswd-e2e-secret-7781";

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

pub(super) fn credentials_from_a_helper_and_a_task_secret(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    // The image is pushed to a plain registry; the htpasswd one serves the same storage.
    let regs = env.dir.join("registries");
    let plain = PrivateRegistry::start(&regs.join("plain"))?;
    w.block_on(fixtures::hello(&plain.host(), "private/app", "v1"))?;
    w.block_on(fixtures::hello(&plain.host(), "private/other", "v1"))?;
    let htpasswd = regs.join("htpasswd");
    let hashed = bcrypt::hash_with_result(PASSWORD, 5)?;
    std::fs::write(
        &htpasswd,
        format!(
            "{USER}:{}\n",
            hashed.format_for_version(bcrypt::Version::TwoA)
        ),
    )?;
    let locked = PrivateRegistry::start_with(
        &regs.join("locked"),
        &RegistryOptions {
            htpasswd: Some(htpasswd),
            data: Some(plain.data_dir()),
            ..RegistryOptions::default()
        },
    )?;
    let host = locked.host();

    // The helper answers for this registry only, as the Docker CLI's helpers do.
    let bin = env.dir.join("helpers");
    std::fs::create_dir_all(&bin)?;
    let helper = bin.join("docker-credential-berthhtpasswd");
    let asked = env.dir.join("helper-asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\nif [ \"$server\" = {host} ]; then echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
            asked.display(),
        ),
    )?;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))?;
    let docker = env.dir.join("docker-config.json");
    std::fs::write(&docker, r#"{"credsStore": "berthhtpasswd"}"#)?;
    env.opts.insecure_registries.push(host.clone());
    env.opts
        .extra_args
        .push(format!("--registry-docker-config={}", docker.display()));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    env.start_agent_with_env(&[("PATH", &path)])?;
    env.wait_instance_connected()?;
    let creds = format!(r#"{{"username":"{USER}","password":"{PASSWORD}"}}"#);
    env.ok(&["create-secret", "htpasswd", "--from-literal", &creds])?;

    let reference = format!("{host}/private/app:v1");
    let (helped, _) = env.run_until(
        &taskdef(
            "helped",
            serde_json::json!([{"name": "app", "image": reference, "memory": 32,
                "stopTimeout": 1, "command": ["sleep", "300"]}]),
        ),
        "RUNNING",
        RUNNING_WITHIN,
    )?;
    let asked = std::fs::read_to_string(&asked).context("the helper was never run")?;
    ensure!(asked.lines().all(|l| l == format!("get {host}")), "{asked}");

    // Another repository: its manifest is asked for with the task's secret.
    let (secret, _) = env.run_until(
        &taskdef(
            "secret",
            serde_json::json!([{"name": "app", "image": format!("{host}/private/other:v1"),
                "memory": 32, "stopTimeout": 1,
                "repositoryCredentials": {"credentialsParameter": "htpasswd"},
                "command": ["sleep", "300"]}]),
        ),
        "RUNNING",
        RUNNING_WITHIN,
    )?;
    env.stop_task(&helped, Duration::from_secs(30))?;
    env.stop_task(&secret, Duration::from_secs(30))?;

    let mut leaked = files_holding(&env.dir, PASSWORD.as_bytes());
    leaked.retain(|f| !f.ends_with("docker-credential-berthhtpasswd"));
    ensure!(leaked.is_empty(), "the password is in {leaked:?}");
    Ok(())
}
