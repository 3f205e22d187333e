//! berth-runtime end to end: real pulls from a real registry into a private containerd, real
//! containers through runc with real cgroup limits, and every bad input's clear error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_runtime::{
    ContainerId, ContainerLimits, ContainerSpec, ContainerStatus, Error, ExecOutcome, PullError,
    PulledImage, RegistryAuth, Runtime, RuntimeConfig, TaskLimits,
};
use berth_tests::{AUTH_PASSWORD, AUTH_USER, BadMode, BadRegistry, World, fixtures, run_suite};

#[path = "runtime/caps.rs"]
mod caps;
#[path = "runtime/host_bind.rs"]
mod host_bind;
#[path = "runtime/pull.rs"]
mod pull;
#[path = "runtime/registry.rs"]
mod registry;
#[path = "runtime/registry_hosts.rs"]
mod registry_hosts;
#[path = "runtime/registry_mirrors.rs"]
mod registry_mirrors;
#[path = "runtime/seccomp32.rs"]
mod seccomp32;
#[path = "runtime/stats.rs"]
mod stats;

fn main() -> ExitCode {
    run_suite("runtime", |w| {
        vec![
            w.async_trial("pull_then_run_echo_exit_3", pull_then_run_echo_exit_3),
            w.async_trial(
                "stats_cpu_and_memory_agree_with_ctr",
                stats::cpu_and_memory_agree_with_ctr,
            ),
            w.async_trial(
                "restart_in_place_keeps_rootfs_and_log",
                restart_in_place_keeps_rootfs_and_log,
            ),
            w.async_trial(
                "pull_leaves_what_ctr_pull_leaves",
                pull_leaves_what_ctr_pull_leaves,
            ),
            w.async_trial(
                "whiteouts_delete_and_overwrite",
                whiteouts_delete_and_overwrite,
            ),
            w.async_trial(
                "parallel_pulls_download_each_blob_once",
                parallel_pulls_download_each_blob_once,
            ),
            w.async_trial(
                "second_pull_downloads_nothing",
                second_pull_downloads_nothing,
            ),
            w.async_trial("index_picks_host_platform", index_picks_host_platform),
            w.async_trial(
                "cpu_and_memory_limits_in_cgroup_files",
                cpu_and_memory_limits_in_cgroup_files,
            ),
            w.async_trial(
                "sigterm_ignored_killed_after_stop_timeout",
                sigterm_ignored_killed_after_stop_timeout,
            ),
            w.async_trial(
                "sigterm_reaches_the_main_process_only",
                sigterm_reaches_the_main_process_only,
            ),
            w.async_trial(
                "a_command_that_is_not_executable_fails_the_start_not_the_create",
                a_command_that_is_not_executable_fails_the_start_not_the_create,
            ),
            w.async_trial(
                "memory_hog_reported_oom_killed",
                memory_hog_reported_oom_killed,
            ),
            w.async_trial(
                "delete_leaves_nothing_but_the_image",
                delete_leaves_nothing_but_the_image,
            ),
            w.async_trial(
                "user_name_resolves_through_image_passwd",
                user_name_resolves_through_image_passwd,
            ),
            w.async_trial("list_finds_owned_containers", list_finds_owned_containers),
            w.async_trial("bad_unknown_repository", bad_unknown_repository),
            w.async_trial("bad_unknown_tag", bad_unknown_tag),
            w.async_trial(
                "bad_registry_down_fails_after_its_tries",
                registry::an_unreachable_registry_fails_after_its_tries,
            ),
            w.async_trial("bad_digest_mismatch", bad_digest_mismatch),
            w.async_trial("bad_no_matching_platform", bad_no_matching_platform),
            w.async_trial("bad_limits", bad_limits),
            w.async_trial("bad_image_not_pulled", bad_image_not_pulled),
            w.async_trial("bad_containerd_socket", bad_containerd_socket),
            w.async_trial("auth_basic", auth_basic),
            w.async_trial("auth_bearer_token_from_realm", auth_bearer_token_from_realm),
            w.async_trial("https_unless_listed_insecure", https_unless_listed_insecure),
            w.async_trial(
                "cap_a_100_mib_manifest_is_refused",
                caps::a_100_mib_manifest_is_refused,
            ),
            w.async_trial(
                "cap_a_manifest_without_a_length_is_stopped_at_the_cap",
                caps::a_manifest_without_a_length_is_stopped_at_the_cap,
            ),
            w.async_trial(
                "cap_a_100_mib_index_is_refused",
                caps::a_100_mib_index_is_refused,
            ),
            w.async_trial(
                "host_bind_a_symlink_swapped_in_after_the_check_is_never_bound",
                host_bind::a_symlink_swapped_in_after_the_check_is_never_bound,
            ),
            w.async_trial(
                "host_bind_a_symlink_swapped_in_after_the_bind_changes_nothing",
                host_bind::a_symlink_swapped_in_after_the_bind_changes_nothing,
            ),
            w.async_trial(
                "cap_a_100_mib_config_is_refused_before_it_is_fetched",
                caps::a_100_mib_config_is_refused_before_it_is_fetched,
            ),
            w.async_trial(
                "exec_runs_in_the_container_and_a_timeout_kills_it",
                exec_runs_in_the_container_and_a_timeout_kills_it,
            ),
            w.async_trial(
                "restart_in_place_keeps_the_terminal_and_the_open_stdin",
                restart_in_place_keeps_the_terminal_and_the_open_stdin,
            ),
            w.async_trial(
                "pull_reuses_an_image_another_namespace_pulled",
                pull::reuses_an_image_another_namespace_pulled,
            ),
            w.async_trial(
                "pull_downloads_only_the_layers_containerd_lacks",
                pull::downloads_only_the_layers_containerd_lacks,
            ),
            w.async_trial(
                "pull_with_a_manifest_present_and_its_config_missing",
                pull::manifest_present_config_missing,
            ),
            w.async_trial(
                "pull_resumes_half_written_ingests_and_leaves_foreign_ones",
                pull::resumes_half_written_ingests,
            ),
            w.async_trial(
                "pull_waits_for_an_ingest_another_writer_holds",
                pull::waits_for_an_ingest_another_writer_holds,
            ),
            w.async_trial(
                "seccomp_an_i386_program_is_killed_by_the_default_profile",
                seccomp32::an_i386_program_is_killed_by_the_default_profile,
            ),
            w.async_trial(
                "pull_tries_a_registry_answering_503_again",
                registry::a_registry_answering_503_is_tried_again,
            ),
            w.async_trial(
                "pull_resumes_a_layer_reset_halfway_with_a_range_request",
                registry::a_layer_reset_halfway_resumes_with_a_range_request,
            ),
            w.async_trial(
                "pull_credentials_from_a_docker_config_and_a_token_command",
                registry::credentials_from_a_docker_config_and_a_token_command,
            ),
            w.async_trial(
                "pull_falls_through_a_failing_mirror_to_the_upstream",
                registry_hosts::a_failing_mirror_falls_through_to_the_upstream,
            ),
            w.async_trial(
                "pull_trusts_a_registry_ca_from_certs_d",
                registry_hosts::a_registry_with_its_own_ca_is_trusted_through_certs_d,
            ),
            w.async_trial(
                "pull_credentials_from_each_source_against_htpasswd",
                registry_hosts::credentials_from_each_source_against_htpasswd,
            ),
            w.async_trial(
                "pull_asks_a_mirror_with_its_own_credentials_never_the_upstreams",
                registry_mirrors::a_mirror_gets_its_own_credentials_never_the_upstreams,
            ),
            w.async_trial(
                "pull_presents_a_client_certificate_to_its_own_host_only",
                registry_mirrors::a_client_certificate_is_presented_to_its_own_host_only,
            ),
            w.trial(
                "pull_of_the_largest_fixtures_fits_a_small_stack",
                pull::largest_fixtures_fit_a_small_stack,
            ),
        ]
    })
}

/// A runtime in its own containerd namespace, with its own state and log dirs, reaching the
/// private registry over plain HTTP.
async fn runtime(w: &World) -> Result<(Runtime, String)> {
    runtime_with(w, "rt", &[w.registry().host()]).await
}

/// A runtime in its own namespace (`prefix-…`) that reaches only `insecure` over plain HTTP.
async fn runtime_with(w: &World, prefix: &str, insecure: &[String]) -> Result<(Runtime, String)> {
    let ns = w.unique(prefix);
    let dir = w.scratch_dir(&ns)?;
    let mut config = RuntimeConfig::new(w.containerd().socket(), &dir);
    config.namespace = ns.clone();
    config.insecure_registries = insecure.to_vec();
    let rt = Runtime::connect(config).await.context("connect runtime")?;
    Ok((rt, ns))
}

fn container(task: &str, name: &str, image: &str, cmd: &[&str]) -> ContainerSpec {
    ContainerSpec {
        task_id: task.to_owned(),
        name: name.to_owned(),
        image: image.to_owned(),
        command: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// Create, start, wait; returns the exit status and the container's log entries.
async fn run_to_exit(
    rt: &Runtime,
    spec: &ContainerSpec,
) -> Result<(berth_runtime::ExitStatus, Vec<String>)> {
    let id = rt.create_container(spec).await?;
    rt.start_container(&id).await?;
    let status = tokio::time::timeout(Duration::from_secs(60), rt.wait_container(&id))
        .await
        .context("container did not exit within 60s")??;
    let logs = log_lines(&rt.log_path(&spec.task_id, &spec.name))?;
    rt.delete_container(&id).await?;
    Ok((status, logs))
}

fn log_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).with_context(|| format!("log line {l:?}"))?;
            Ok(v["log"]
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('\n')
                .to_owned())
        })
        .collect()
}

async fn pull_then_run_echo_exit_3(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "hello-exit", "1.0").await?;
    let (rt, _) = runtime(&w).await?;
    let pulled = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(
        pulled.chain_id == img.chain_id,
        "chain id {} != {}",
        pulled.chain_id,
        img.chain_id
    );
    let task = w.unique("task");
    let spec = container(
        &task,
        "app",
        &img.reference,
        &["sh", "-c", "echo hello; exit 3"],
    );
    let (status, logs) = run_to_exit(&rt, &spec).await?;
    ensure!(status.code == 3, "exit code {}", status.code);
    ensure!(!status.oom_killed);
    ensure!(logs == ["hello"], "logs {logs:?}");
    Ok(())
}

/// An exited container restarted in place runs again on the same writable layer (a file the
/// first run wrote is there) and its output is appended to the same log file.
async fn restart_in_place_keeps_rootfs_and_log(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "hello-restart", "1.0").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let spec = container(
        &task,
        "app",
        &img.reference,
        &[
            "sh",
            "-c",
            "echo run; test -f /marker && echo again; touch /marker; exit 4",
        ],
    );
    let id = rt.create_container(&spec).await?;
    for run in 1..=2 {
        if run > 1 {
            rt.restart_container(&id).await?;
        }
        rt.start_container(&id).await?;
        let status = tokio::time::timeout(Duration::from_secs(60), rt.wait_container(&id))
            .await
            .context("container did not exit within 60s")??;
        ensure!(status.code == 4, "run {run}: exit code {}", status.code);
    }
    let logs = log_lines(&rt.log_path(&spec.task_id, &spec.name))?;
    ensure!(logs == ["run", "run", "again"], "logs {logs:?}");
    rt.delete_container(&id).await?;
    Ok(())
}

fn labels_of(w: &World, ns: &str, digest: &str) -> Result<String> {
    let out = w.ctr(&["-n", ns, "content", "ls"])?;
    out.lines()
        .find(|l| l.starts_with(digest))
        .map(str::to_owned)
        .with_context(|| format!("{digest} not in content store:\n{out}"))
}

async fn pull_leaves_what_ctr_pull_leaves(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "labels", "v1").await?;
    let (rt, ns) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    berth_tests::pulled::expect_clean_pull(
        w.containerd(),
        &ns,
        berth_tests::pulled::Pulled::Image(&img),
    )
}

async fn whiteouts_delete_and_overwrite(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "whiteouts", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let script = "test ! -e /data/deleted.txt && echo deleted-absent; echo \"$(cat /data/overwritten.txt)\"; \
                  echo \"$(cat /data/l2.txt)\"; ls /data/dir";
    let spec = container(&task, "check", &img.reference, &["sh", "-c", script]);
    let (status, logs) = run_to_exit(&rt, &spec).await?;
    ensure!(status.code == 0, "exit {} logs {logs:?}", status.code);
    ensure!(logs.contains(&"deleted-absent".to_owned()), "{logs:?}");
    ensure!(
        logs.contains(&"new".to_owned()) && !logs.contains(&"old".to_owned()),
        "{logs:?}"
    );
    ensure!(
        logs.contains(&"fresh.txt".to_owned()) && !logs.iter().any(|l| l.contains("keep.txt")),
        "opaque dir: {logs:?}"
    );
    Ok(())
}

async fn parallel_pulls_download_each_blob_once(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "parallel", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    let (a, b) = tokio::join!(
        rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None),
        rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
    );
    ensure!(a? == b?, "both pulls report the same image");
    for d in img.layer_digests.iter().chain([&img.config_digest]) {
        let n = w.registry().blob_get_count("parallel", d)?;
        ensure!(n == 1, "blob {d} downloaded {n} times");
    }
    Ok(())
}

async fn second_pull_downloads_nothing(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "again", "v1").await?;
    let (rt, ns) = runtime(&w).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let first = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, Some(tx))
        .await?;
    ensure!(first.downloaded > 0);
    let mut last = BTreeMap::new();
    while let Ok(p) = rx.try_recv() {
        last.insert(p.digest.clone(), (p.done, p.total));
    }
    for d in &img.layer_digests {
        let (done, total) = last
            .get(d)
            .with_context(|| format!("no progress for {d}"))?;
        ensure!(done == total, "progress for {d} ended at {done}/{total}");
    }
    let second = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(
        second.downloaded == 0,
        "second pull downloaded {} bytes",
        second.downloaded
    );
    ensure!(
        second
            == PulledImage {
                downloaded: 0,
                ..first.clone()
            },
        "a re-pull of the same digest answered {second:?} after {first:?}"
    );
    for d in &img.layer_digests {
        ensure!(w.registry().blob_get_count("again", d)? == 1);
    }
    // The image record removed behind the runtime's back (containerd's GC may then take its
    // content too): the next pull is a full one that writes the record again.
    w.ctr(&["-n", &ns, "images", "rm", &img.reference])?;
    let third = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(third.chain_id == first.chain_id && third.target_digest == first.target_digest);
    let images = w.ctr(&["-n", &ns, "images", "ls", "-q"])?;
    ensure!(
        images.lines().any(|l| l.trim() == img.reference),
        "the re-pull did not record the image again: {images}"
    );
    Ok(())
}

async fn index_picks_host_platform(w: Arc<World>) -> Result<()> {
    let idx = fixtures::multiarch(&w.registry().host(), "multi", "v1").await?;
    let (rt, ns) = runtime(&w).await?;
    let pulled = rt
        .pull_image(&idx.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let amd64 = idx.platform("linux/amd64").context("fixture has amd64")?;
    ensure!(
        pulled.target_digest == idx.digest && pulled.manifest_digest == amd64.digest,
        "{pulled:?}"
    );
    let index = labels_of(&w, &ns, &idx.digest)?;
    for (i, m) in idx.manifests.iter().enumerate() {
        ensure!(
            index.contains(&format!("containerd.io/gc.ref.content.m.{i}={}", m.digest)),
            "{index}"
        );
    }
    let task = w.unique("task");
    let (status, logs) = run_to_exit(
        &rt,
        &container(&task, "c", &idx.reference, &["echo", "multi"]),
    )
    .await?;
    ensure!(status.code == 0 && logs == ["multi"], "{status:?} {logs:?}");
    Ok(())
}

fn read_cgroup(controller: &str, path: &str, file: &str) -> Result<String> {
    let p = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
        .join(file);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("read {}", p.display()))?
        .trim()
        .to_owned())
}

async fn cpu_and_memory_limits_in_cgroup_files(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "limits", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let limits = TaskLimits {
        cpu_units: Some(512),
        cpu_shares: None,
        memory_mib: Some(256),
    };
    let mut spec = container(&task, "app", &img.reference, &["sleep", "30"]);
    spec.limits = ContainerLimits {
        cpu_units: 256,
        memory_mib: Some(128),
        memory_reservation_mib: Some(64),
        ..ContainerLimits::default()
    };
    Runtime::validate_limits(&limits, std::slice::from_ref(&spec))?;
    rt.create_task_cgroup(&task, &limits).await?;
    let id = rt.create_container(&spec).await?;
    rt.start_container(&id).await?;
    let check = (|| -> Result<()> {
        let t = format!("/berth/{task}");
        let c = format!("/berth/{task}/app");
        ensure!(read_cgroup("cpu", &t, "cpu.cfs_period_us")? == "100000");
        ensure!(read_cgroup("cpu", &t, "cpu.cfs_quota_us")? == "50000");
        ensure!(read_cgroup("memory", &t, "memory.limit_in_bytes")? == (256u64 << 20).to_string());
        ensure!(read_cgroup("cpu", &c, "cpu.shares")? == "256");
        ensure!(read_cgroup("memory", &c, "memory.limit_in_bytes")? == (128u64 << 20).to_string());
        ensure!(
            read_cgroup("memory", &c, "memory.soft_limit_in_bytes")? == (64u64 << 20).to_string()
        );
        Ok(())
    })();
    rt.stop_container(&id, Duration::from_secs(1)).await?;
    rt.delete_container(&id).await?;
    rt.remove_task_cgroup(&task).await?;
    check
}

async fn sigterm_ignored_killed_after_stop_timeout(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "stubborn", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let spec = container(
        &task,
        "stubborn",
        &img.reference,
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
        ],
    );
    let id = rt.create_container(&spec).await?;
    rt.start_container(&id).await?;
    wait_for_log(&rt.log_path(&task, "stubborn"), "ready").await?;
    let start = Instant::now();
    let status = rt.stop_container(&id, Duration::from_secs(2)).await?;
    let took = start.elapsed();
    rt.delete_container(&id).await?;
    ensure!(
        status.code == 137,
        "exit code {} (expected SIGKILL's 137)",
        status.code
    );
    ensure!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(3),
        "stop took {took:?}"
    );
    Ok(())
}

/// `docker stop`'s signals: SIGTERM to the main process only, so a shell that traps it
/// decides what its child gets; here the child ends cleanly and the shell exits 0 (SIGTERM to
/// every process would kill the child and make it 143).
async fn sigterm_reaches_the_main_process_only(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "trapper", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let spec = container(
        &task,
        "trapper",
        &img.reference,
        &[
            "sh",
            "-c",
            "trap 'touch /tmp/stop; wait $child; exit $?' TERM
(while [ ! -e /tmp/stop ]; do sleep 1; done) & child=$!
echo ready; wait $child",
        ],
    );
    let id = rt.create_container(&spec).await?;
    rt.start_container(&id).await?;
    wait_for_log(&rt.log_path(&task, "trapper"), "ready").await?;
    let status = rt.stop_container(&id, Duration::from_secs(30)).await?;
    rt.delete_container(&id).await?;
    ensure!(
        status.code == 0,
        "exit code {} (expected 0: the trap ended the child itself)",
        status.code
    );
    Ok(())
}

/// Like `docker create` then `docker start`: a command that is not executable is found when
/// the process is made, at the start; the container exists until it is deleted.
async fn a_command_that_is_not_executable_fails_the_start_not_the_create(
    w: Arc<World>,
) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "noexec", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let id = rt
        .create_container(&container(&task, "data", &img.reference, &["/etc/passwd"]))
        .await?;
    let err = rt
        .start_container(&id)
        .await
        .err()
        .context("a command that is not executable started")?;
    ensure!(err.to_string().contains("/etc/passwd"), "{err}");
    let listed = rt.list_containers().await?;
    ensure!(
        listed.iter().any(|c| c.id == id),
        "the container is gone: {listed:?}"
    );
    rt.delete_container(&id).await?;
    ensure!(rt.list_containers().await?.iter().all(|c| c.id != id));
    Ok(())
}

async fn wait_for_log(path: &Path, needle: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{needle:?} never appeared in {}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn memory_hog_reported_oom_killed(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "hog", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    // tail buffers its input until a newline that /dev/zero never sends.
    let mut spec = container(&task, "hog", &img.reference, &["tail", "/dev/zero"]);
    spec.limits.memory_mib = Some(16);
    let (status, _) = run_to_exit(&rt, &spec).await?;
    ensure!(status.oom_killed, "not reported OOM-killed: {status:?}");
    ensure!(status.code == 137, "exit code {}", status.code);
    Ok(())
}

async fn delete_leaves_nothing_but_the_image(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "cleanup", "v1").await?;
    let (rt, ns) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    rt.create_task_cgroup(
        &task,
        &TaskLimits {
            cpu_units: Some(256),
            cpu_shares: None,
            memory_mib: Some(64),
        },
    )
    .await?;
    let spec = container(&task, "app", &img.reference, &["sleep", "60"]);
    let id = rt.create_container(&spec).await?;
    rt.start_container(&id).await?;
    rt.stop_container(&id, Duration::from_secs(1)).await?;
    rt.delete_container(&id).await?;
    rt.remove_task_cgroup(&task).await?;
    rt.delete_container(&id)
        .await
        .context("delete is idempotent")?;
    let containers = w.ctr(&["-n", &ns, "containers", "ls", "-q"])?;
    ensure!(
        containers.trim().is_empty(),
        "containers left: {containers}"
    );
    let tasks = w.ctr(&["-n", &ns, "tasks", "ls"])?;
    ensure!(tasks.lines().count() <= 1, "tasks left: {tasks}");
    let snaps = w.ctr(&["-n", &ns, "snapshots", "ls"])?;
    ensure!(
        !snaps.contains(id.as_str()),
        "container snapshot left: {snaps}"
    );
    ensure!(
        snaps.contains(&img.chain_id),
        "image snapshot gone: {snaps}"
    );
    let leases = w.ctr(&["-n", &ns, "leases", "ls"])?;
    ensure!(leases.lines().count() <= 1, "leases left: {leases}");
    for controller in ["cpu", "memory", "pids", "cpuset", "cpuacct"] {
        let p = PathBuf::from("/sys/fs/cgroup")
            .join(controller)
            .join("berth")
            .join(&task);
        ensure!(!p.exists(), "cgroup left: {}", p.display());
    }
    let images = w.ctr(&["-n", &ns, "images", "ls", "-q"])?;
    ensure!(
        images.contains(&img.reference),
        "image not cached: {images}"
    );
    Ok(())
}

async fn user_name_resolves_through_image_passwd(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "users", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let mut spec = container(
        &task,
        "app",
        &img.reference,
        &["sh", "-c", "id -u; id -g; id -G; hostname"],
    );
    spec.user = Some("app".into());
    let (status, logs) = run_to_exit(&rt, &spec).await?;
    ensure!(status.code == 0, "{status:?} {logs:?}");
    ensure!(logs[0] == "1000" && logs[1] == "1000", "{logs:?}");
    ensure!(
        logs[3].len() == 12 && logs[3].chars().all(|c| c.is_ascii_hexdigit()),
        "default hostname is not 12 hex digits: {logs:?}"
    );
    ensure!(
        logs[2].split(' ').any(|g| g == "1500"),
        "supplementary group missing: {logs:?}"
    );
    let mut spec = container(&task, "nobody", &img.reference, &["id", "-u"]);
    spec.user = Some("nosuchuser".into());
    let err = rt
        .create_container(&spec)
        .await
        .err()
        .context("unknown user accepted")?;
    ensure!(err.to_string().contains("nosuchuser"), "{err}");
    Ok(())
}

async fn list_finds_owned_containers(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "listing", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let mut spec_a = container(&task, "a", &img.reference, &["sleep", "30"]);
    spec_a.stop_timeout = Some(Duration::from_millis(1500));
    let a = rt.create_container(&spec_a).await?;
    let b = rt
        .create_container(&container(&task, "b", &img.reference, &["true"]))
        .await?;
    rt.start_container(&a).await?;
    let list = rt.list_containers().await?;
    let find = |id: &ContainerId| list.iter().find(|c| &c.id == id).cloned();
    let ia = find(&a).context("a listed")?;
    let ib = find(&b).context("b listed")?;
    ensure!(
        ia.task_id == task
            && ia.name == "a"
            && ia.status == ContainerStatus::Running
            && ia.pid.is_some()
            && ia.stop_timeout == Some(Duration::from_millis(1500)),
        "{ia:?}"
    );
    // Created as `docker create` creates: the process comes with the start.
    ensure!(ib.status == ContainerStatus::NoTask, "{ib:?}");
    for id in [a, b] {
        rt.stop_container(&id, Duration::from_secs(1)).await?;
        rt.delete_container(&id).await?;
    }
    ensure!(rt.list_containers().await?.is_empty());
    Ok(())
}

/// What a failed pull must not leave: an image record, a lease, an active ingest.
fn assert_nothing_left(w: &World, ns: &str) -> Result<()> {
    let images = w.ctr(&["-n", ns, "images", "ls", "-q"])?;
    ensure!(images.trim().is_empty(), "image left: {images}");
    let leases = w.ctr(&["-n", ns, "leases", "ls"])?;
    ensure!(leases.lines().count() <= 1, "lease left: {leases}");
    let active = w.ctr(&["-n", ns, "content", "active"])?;
    ensure!(active.lines().count() <= 1, "ingest left: {active}");
    let snaps = w.ctr(&["-n", ns, "snapshots", "ls"])?;
    ensure!(snaps.lines().count() <= 1, "snapshot left: {snaps}");
    Ok(())
}

async fn expect_pull_error(w: &World, reference: &str) -> Result<(PullError, String)> {
    let (rt, ns) = runtime(w).await?;
    let err = rt
        .pull_image(reference, &RegistryAuth::Anonymous, None)
        .await
        .err()
        .with_context(|| format!("pull of {reference} succeeded"))?;
    assert_nothing_left(w, &ns)?;
    Ok((err, ns))
}

async fn bad_unknown_repository(w: Arc<World>) -> Result<()> {
    let host = w.registry().host();
    let (err, _) = expect_pull_error(&w, &format!("{host}/nosuchrepo:1.0")).await?;
    let msg = err.to_string();
    ensure!(
        msg == format!("repository unknown: registry {host} has no repository nosuchrepo")
            || msg == format!("manifest unknown: registry {host} has no tag 1.0 for nosuchrepo"),
        "{msg}"
    );
    Ok(())
}

async fn bad_unknown_tag(w: Arc<World>) -> Result<()> {
    let host = w.registry().host();
    fixtures::hello(&host, "app", "1.0").await?;
    let (err, _) = expect_pull_error(&w, &format!("{host}/app:1.3")).await?;
    ensure!(
        err.to_string() == format!("manifest unknown: registry {host} has no tag 1.3 for app"),
        "{err}"
    );
    Ok(())
}

async fn bad_digest_mismatch(w: Arc<World>) -> Result<()> {
    let bad = BadRegistry::start(BadMode::CorruptBlob)?;
    let (rt, ns) = runtime_with(&w, "corrupt", &[bad.host()]).await?;
    let err = rt
        .pull_image(&bad.reference("corrupt"), &RegistryAuth::Anonymous, None)
        .await
        .err()
        .context("pull succeeded")?;
    let layer = bad.layer_digest();
    ensure!(
        err.to_string()
            .starts_with(&format!("digest mismatch for layer {layer}")),
        "{err}"
    );
    assert_nothing_left(&w, &ns)?;
    let blobs = w.ctr(&["-n", &ns, "content", "ls", "-q"])?;
    ensure!(!blobs.contains(&layer), "corrupt layer committed: {blobs}");
    Ok(())
}

async fn bad_no_matching_platform(w: Arc<World>) -> Result<()> {
    let idx = fixtures::arm_only(&w.registry().host(), "armonly", "v1").await?;
    let (err, _) = expect_pull_error(&w, &idx.reference).await?;
    ensure!(
        err.to_string()
            == format!(
                "no linux/amd64 entry in index {}; available: linux/arm64/v8, linux/s390x",
                idx.reference
            ),
        "{err}"
    );
    Ok(())
}

async fn bad_limits(w: Arc<World>) -> Result<()> {
    let task = TaskLimits {
        cpu_units: Some(256),
        cpu_shares: None,
        memory_mib: Some(64),
    };
    let mut a = container("t", "a", "x", &["true"]);
    a.limits = ContainerLimits {
        cpu_units: 512,
        memory_mib: Some(4),
        memory_reservation_mib: Some(8),
        ..ContainerLimits::default()
    };
    let mut b = container("t", "b", "x", &["true"]);
    b.limits = ContainerLimits {
        cpu_units: 0,
        memory_mib: Some(100),
        memory_reservation_mib: None,
        ..ContainerLimits::default()
    };
    let err = Runtime::validate_limits(&task, &[a, b])
        .err()
        .context("bad limits accepted")?;
    let msg = err.to_string();
    for part in [
        "4 MiB",
        "below the minimum of 6 MiB",
        "memoryReservation",
        "64 MiB",
        "cpu",
    ] {
        ensure!(msg.contains(part), "{part:?} missing from {msg}");
    }
    // A container's own bad limits are refused at create, before anything exists.
    let img = fixtures::hello(&w.registry().host(), "badlimits", "v1").await?;
    let (rt, ns) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let mut c = container(&w.unique("task"), "tiny", &img.reference, &["true"]);
    c.limits.memory_mib = Some(2);
    let err = rt
        .create_container(&c)
        .await
        .err()
        .context("2 MiB accepted")?;
    ensure!(
        err.to_string().contains("below the minimum of 6 MiB"),
        "{err}"
    );
    let containers = w.ctr(&["-n", &ns, "containers", "ls", "-q"])?;
    ensure!(containers.trim().is_empty(), "container left: {containers}");
    Ok(())
}

async fn bad_image_not_pulled(w: Arc<World>) -> Result<()> {
    let (rt, ns) = runtime(&w).await?;
    let err = rt
        .create_container(&container("t1", "c", "127.0.0.1:1/never:pulled", &["true"]))
        .await
        .err()
        .context("accepted")?;
    ensure!(matches!(err, Error::Image(_)), "{err:?}");
    ensure!(
        err.to_string()
            == format!(
                "image 127.0.0.1:1/never:pulled is not in containerd namespace {ns}; pull it first"
            ),
        "{err}"
    );
    Ok(())
}

async fn bad_containerd_socket(w: Arc<World>) -> Result<()> {
    let dir = w.scratch_dir("nosock")?;
    let sock = dir.join("nothing.sock");
    let err = Runtime::connect(RuntimeConfig::new(&sock, &dir))
        .await
        .err()
        .context("connected to nothing")?;
    let msg = err.to_string();
    ensure!(
        msg.contains(&sock.display().to_string()) && msg.contains("does not exist"),
        "{msg}"
    );
    Ok(())
}

/// A runtime in its own namespace that reaches `host` over plain HTTP.
async fn runtime_for(w: &World, host: &str) -> Result<(Runtime, String)> {
    runtime_with(w, "auth", &[host.to_owned()]).await
}

fn basic(password: &str) -> RegistryAuth {
    RegistryAuth::Basic {
        username: AUTH_USER.to_owned(),
        password: password.to_owned(),
    }
}

async fn auth_basic(w: Arc<World>) -> Result<()> {
    let reg = BadRegistry::start(BadMode::BasicAuth)?;
    let reference = reg.reference("private/app");
    for auth in [RegistryAuth::Anonymous, basic("wrong")] {
        let (rt, ns) = runtime_for(&w, &reg.host()).await?;
        let err = rt
            .pull_image(&reference, &auth, None)
            .await
            .err()
            .context("pull without valid credentials succeeded")?;
        ensure!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
        ensure!(
            err.to_string().starts_with(&format!(
                "registry {} refused access to private/app",
                reg.host()
            )),
            "{err}"
        );
        assert_nothing_left(&w, &ns)?;
    }
    let (rt, _) = runtime_for(&w, &reg.host()).await?;
    let pulled = rt
        .pull_image(&reference, &basic(AUTH_PASSWORD), None)
        .await?;
    ensure!(pulled.manifest_digest == reg.manifest_digest());
    Ok(())
}

async fn auth_bearer_token_from_realm(w: Arc<World>) -> Result<()> {
    let reg = BadRegistry::start(BadMode::TokenAuth)?;
    let reference = reg.reference("private/app");
    let (rt, ns) = runtime_for(&w, &reg.host()).await?;
    let err = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await
        .err()
        .context("anonymous pull from a token registry succeeded")?;
    ensure!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    assert_nothing_left(&w, &ns)?;
    let (rt, _) = runtime_for(&w, &reg.host()).await?;
    let pulled = rt
        .pull_image(&reference, &basic(AUTH_PASSWORD), None)
        .await?;
    ensure!(pulled.manifest_digest == reg.manifest_digest());
    let requests = reg.requests();
    ensure!(
        requests.iter().any(|r| r.starts_with("GET /token")),
        "token realm never asked: {requests:?}"
    );
    Ok(())
}

async fn https_unless_listed_insecure(w: Arc<World>) -> Result<()> {
    // The private registry speaks plain HTTP; a runtime that does not list it as insecure
    // must insist on TLS and fail, never fall back to HTTP.
    fixtures::hello(&w.registry().host(), "tls", "v1").await?;
    let (rt, ns) = runtime_with(&w, "tls", &[]).await?;
    let reference = format!("{}/tls:v1", w.registry().host());
    let err = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await
        .err()
        .context("pull over plain HTTP succeeded")?;
    ensure!(err.to_string().contains(&w.registry().host()), "{err}");
    ensure!(
        w.registry().manifest_get_count("tls")? == 0,
        "manifest fetched over plain HTTP"
    );
    assert_nothing_left(&w, &ns)
}

/// Health checks' exec: the process runs inside the running container with the container's
/// environment and working directory, its exit code comes back, a process that overruns its
/// timeout is killed (reported as timed out well before it would have finished), and a
/// container that no longer runs is an error rather than an exit code.
async fn exec_runs_in_the_container_and_a_timeout_kills_it(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "hello-exec", "1.0").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let mut spec = container(&task, "app", &img.reference, &["sleep", "300"]);
    spec.environment
        .insert("GREETING".to_owned(), "hello".to_owned());
    spec.working_directory = Some("/bin".to_owned());
    let id = rt.create_container(&spec).await?;
    rt.start_container(&id).await?;
    let args = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let timeout = Duration::from_secs(5);

    let outcome = rt
        .exec_in_container(&id, &args("exit 0"), timeout)
        .await
        .context("exec exit 0")?;
    ensure!(outcome == ExecOutcome::Exited(0), "exit 0: {outcome:?}");
    let outcome = rt
        .exec_in_container(
            &id,
            &args(r#"test "$GREETING" = hello && test "$(pwd)" = /bin && exit 7"#),
            timeout,
        )
        .await
        .context("exec with the container's env and cwd")?;
    ensure!(
        outcome == ExecOutcome::Exited(7),
        "the exec did not see the container's environment and working directory: {outcome:?}"
    );

    let started = Instant::now();
    let outcome = rt
        .exec_in_container(&id, &args("sleep 120"), Duration::from_secs(2))
        .await
        .context("exec that overruns its timeout")?;
    let took = started.elapsed();
    ensure!(outcome == ExecOutcome::TimedOut, "sleep 120: {outcome:?}");
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(60),
        "the overrunning exec was not killed: it took {took:?}"
    );
    // The container itself is untouched and still answers.
    let outcome = rt
        .exec_in_container(&id, &args("exit 3"), timeout)
        .await
        .context("exec after a timeout")?;
    ensure!(outcome == ExecOutcome::Exited(3), "exit 3: {outcome:?}");

    rt.stop_container(&id, Duration::from_secs(1)).await?;
    let after = rt.exec_in_container(&id, &args("exit 0"), timeout).await;
    ensure!(
        after.is_err(),
        "an exec in a stopped container must fail, got {after:?}"
    );
    rt.delete_container(&id).await?;
    Ok(())
}

/// A container with a terminal and an open stdin (ECS pseudoTerminal, interactive) gets both
/// again when it is restarted in place: the new task is created with the streams its first one
/// had (a terminal on stdout, and a stdin cat blocks on until killed), into the same log.
async fn restart_in_place_keeps_the_terminal_and_the_open_stdin(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "hello-tty-restart", "1.0").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    let mut spec = container(
        &task,
        "app",
        &img.reference,
        &[
            "sh",
            "-c",
            "test -t 1 && echo tty; busybox timeout -s KILL 1 cat; echo \"cat $?\"; exit 4",
        ],
    );
    spec.terminal = true;
    spec.stdin_open = true;
    let id = rt.create_container(&spec).await?;
    for run in 1..=2 {
        if run > 1 {
            rt.restart_container(&id).await?;
        }
        rt.start_container(&id).await?;
        let status = tokio::time::timeout(Duration::from_secs(60), rt.wait_container(&id))
            .await
            .context("container did not exit within 60s")??;
        ensure!(status.code == 4, "run {run}: exit code {}", status.code);
    }
    let text = std::fs::read_to_string(rt.log_path(&spec.task_id, &spec.name))?;
    let logs: String = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["log"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        logs.matches("tty\r\n").count() == 2 && logs.matches("cat 137").count() == 2,
        "both runs had a terminal and a stdin that stayed open: {logs:?}"
    );
    rt.delete_container(&id).await?;
    Ok(())
}
