//! Proves the end-to-end harness against the real programs: containerd, runc, the registry.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::{BadMode, BadRegistry, PrivateContainerd, World, fixtures, pid_alive, run_suite};

fn main() -> ExitCode {
    run_suite("harness", |world: &Arc<World>| {
        vec![
            world.trial("containerd_answers", containerd_answers),
            world.trial("fixtures_push_and_pull", fixtures_push_and_pull),
            world.trial("run_hello_prints_hi", run_hello_prints_hi),
            world.trial("layered_whiteouts_apply", layered_whiteouts_apply),
            world.trial(
                "bad_registry_digest_mismatch_fails_pull",
                bad_registry_digest_mismatch,
            ),
            world.trial("bad_registry_stall_sends_headers_only", bad_registry_stall),
            world.trial("cleanup_leaves_no_process_or_mount", cleanup_leaves_nothing),
            world.trial(
                "containerd_start_failure_shows_log_tail",
                start_failure_shows_log,
            ),
        ]
    })
}

fn containerd_answers(w: &World) -> Result<()> {
    let out = w.ctr(&["version"])?;
    ensure!(
        out.contains("Server:"),
        "no server section in `ctr version`:\n{out}"
    );
    Ok(())
}

fn pull(w: &World, ns: &str, reference: &str, extra: &[&str]) -> Result<String> {
    let mut args = vec!["-n", ns, "images", "pull", "--plain-http"];
    args.extend_from_slice(extra);
    args.push(reference);
    w.ctr(&args)
}

fn fixtures_push_and_pull(w: &World) -> Result<()> {
    let host = w.registry().host();
    let ns = &w.unique("harness-check");
    let (hello, layered, multi, arm, big) = w.block_on(async {
        Ok::<_, anyhow::Error>((
            fixtures::hello(&host, "check/hello", "v1").await?,
            fixtures::layered(&host, "check/layered", "v1").await?,
            fixtures::multiarch(&host, "check/multiarch", "v1").await?,
            fixtures::arm_only(&host, "check/arm-only", "v1").await?,
            fixtures::big(&host, "check/big", "v1").await?,
        ))
    })?;
    ensure!(
        hello.reference == format!("{host}/check/hello:v1"),
        "reference {}",
        hello.reference
    );
    ensure!(
        layered.layer_digests.len() == 3 && big.layer_digests.len() == 4,
        "layer counts"
    );
    let big_bytes: u64 = big.image.layers.iter().skip(1).map(|l| l.size()).sum();
    ensure!(
        big_bytes > 30 * 1000 * 1000,
        "big layers only {big_bytes} bytes"
    );

    pull(w, ns, &hello.reference, &[])?;
    pull(w, ns, &layered.reference, &[])?;
    pull(w, ns, &multi.reference, &["--platform", "linux/amd64"])?;
    pull(w, ns, &arm.reference, &["--platform", "linux/arm64/v8"])?;
    match pull(w, ns, &arm.reference, &["--platform", "linux/amd64"]) {
        Ok(out) => bail!("pulling arm_only for linux/amd64 succeeded:\n{out}"),
        Err(e) => ensure!(
            format!("{e:#}").contains("no match for platform"),
            "unexpected error: {e:#}"
        ),
    }

    // containerd stored what we computed.
    let images = w.ctr(&["-n", ns, "images", "ls"])?;
    for (reference, digest) in [
        (&hello.reference, &hello.digest),
        (&layered.reference, &layered.digest),
        (&multi.reference, &multi.digest),
    ] {
        ensure!(
            images
                .lines()
                .any(|l| l.starts_with(reference.as_str()) && l.contains(digest.as_str())),
            "{reference} with {digest} not in:\n{images}"
        );
    }
    let snapshots = w.ctr(&["-n", ns, "snapshots", "--snapshotter", "overlayfs", "ls"])?;
    for chain in [&hello.chain_id, &layered.chain_id] {
        ensure!(
            snapshots.contains(chain.as_str()),
            "snapshot {chain} missing:\n{snapshots}"
        );
    }
    let amd = multi.platform("linux/amd64").context("amd64 entry")?;
    ensure!(multi.platform("linux/arm64/v8").is_some(), "arm64 entry");

    // The access log saw exactly one download of each blob we pulled once.
    let reg = w.registry();
    ensure!(
        reg.blob_get_count("check/hello", &hello.layer_digests[0])? == 1,
        "hello layer GETs"
    );
    ensure!(
        reg.blob_get_count("check/hello", &hello.config_digest)? == 1,
        "hello config GETs"
    );
    for d in &layered.layer_digests {
        ensure!(
            reg.blob_get_count("check/layered", d)? == 1,
            "layered {d} GETs"
        );
    }
    ensure!(
        reg.blob_get_count("check/multiarch", &amd.config_digest)? == 1,
        "multiarch amd64 config GETs"
    );
    ensure!(
        reg.blob_get_count("check/big", &big.layer_digests[1])? == 0,
        "big was never pulled"
    );
    ensure!(
        reg.manifest_get_count("check/hello")? >= 1,
        "hello manifest GETs"
    );
    Ok(())
}

fn run_hello_prints_hi(w: &World) -> Result<()> {
    let host = w.registry().host();
    let hello = w.block_on(fixtures::hello(&host, "run/hello", "v1"))?;
    let ns = w.unique("harness-run");
    pull(w, &ns, &hello.reference, &[])?;
    let id = w.unique("hello");
    let runc_root = w.containerd().runc_root().to_string_lossy().into_owned();
    let args = ["-n", &ns, "run", "--rm", "--runc-root", &runc_root];
    let out = w.ctr(&[&args[..], &[&hello.reference, &id, "echo", "hi"]].concat())?;
    ensure!(out.trim() == "hi", "container printed {out:?}");
    let global = std::path::Path::new("/run/containerd/runc").join(&ns);
    ensure!(
        !global.exists(),
        "runc state leaked to {}",
        global.display()
    );
    Ok(())
}

fn layered_whiteouts_apply(w: &World) -> Result<()> {
    let host = w.registry().host();
    let layered = w.block_on(fixtures::layered(&host, "run/layered", "v1"))?;
    let ns = w.unique("harness-layered");
    pull(w, &ns, &layered.reference, &[])?;
    let id = w.unique("layered");
    let script = "cat /data/overwritten.txt; echo; ls /data; echo --; ls /data/dir";
    let out = w.ctr(&[
        "-n",
        &ns,
        "run",
        "--rm",
        &layered.reference,
        &id,
        "sh",
        "-c",
        script,
    ])?;
    ensure!(
        out == "new\ndir\nl2.txt\noverwritten.txt\n--\nfresh.txt\n",
        "layered view is {out:?}"
    );
    Ok(())
}

fn bad_registry_digest_mismatch(w: &World) -> Result<()> {
    let bad = BadRegistry::start(BadMode::CorruptBlob)?;
    let ns = w.unique("harness-bad");
    let err = match pull(w, &ns, &bad.reference("bad/hello"), &[]) {
        Ok(out) => bail!("pull of a corrupt blob succeeded:\n{out}"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("digest"),
        "error does not mention the digest: {err}"
    );
    let layer_get = format!("GET /v2/bad/hello/blobs/{}", bad.layer_digest());
    ensure!(
        bad.requests().contains(&layer_get),
        "no layer GET in {:?}",
        bad.requests()
    );
    Ok(())
}

fn bad_registry_stall(w: &World) -> Result<()> {
    let bad = BadRegistry::start(BadMode::Stall)?;
    let ns = w.unique("harness-stall");
    let mut args = vec!["-n", ns.as_str(), "images", "pull", "--plain-http"];
    let reference = bad.reference("stall/hello");
    args.push(&reference);
    let err = match w
        .containerd()
        .ctr_with_timeout(&args, Duration::from_secs(4))
    {
        Ok(out) => bail!("pull from a stalling registry finished:\n{out}"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("did not finish"),
        "expected a timeout, got: {err}"
    );
    let layer_get = format!("GET /v2/stall/hello/blobs/{}", bad.layer_digest());
    ensure!(
        bad.requests().contains(&layer_get),
        "no layer GET in {:?}",
        bad.requests()
    );
    Ok(())
}

fn cleanup_leaves_nothing(w: &World) -> Result<()> {
    let host = w.registry().host();
    let hello = w.block_on(fixtures::hello(&host, "cleanup/hello", "v1"))?;
    let dir = w.scratch_dir("ctd")?;
    let ctd = PrivateContainerd::start(&dir)?;
    let socket = ctd.socket().to_string_lossy().into_owned();
    let ns = w.unique("leftover");
    let runc_root = ctd.runc_root().to_string_lossy().into_owned();
    ctd.ctr(&[
        "-n",
        &ns,
        "images",
        "pull",
        "--plain-http",
        &hello.reference,
    ])?;
    let run = ["-n", &ns, "run", "-d", "--runc-root", &runc_root];
    ctd.ctr(&[&run[..], &[&hello.reference, "sleeper", "sleep", "1000"]].concat())?;
    let ps = ctd.ctr(&["-n", &ns, "tasks", "ls"])?;
    ensure!(ps.contains("RUNNING"), "task not running:\n{ps}");
    let pid = ctd.pid();
    ensure!(!shim_pids(&socket).is_empty(), "no shim found for {socket}");
    ensure!(
        !mounts_under(&dir).is_empty(),
        "rootfs not mounted under {}",
        dir.display()
    );
    drop(ctd);
    ensure!(!pid_alive(pid), "containerd {pid} still alive");
    let shims = shim_pids(&socket);
    ensure!(shims.is_empty(), "shims still alive: {shims:?}");
    let mounts = mounts_under(&dir);
    ensure!(mounts.is_empty(), "still mounted: {mounts:?}");
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory").join(&ns);
    ensure!(
        !cgroup.exists(),
        "namespace cgroup {} left behind",
        cgroup.display()
    );
    Ok(())
}

fn start_failure_shows_log(w: &World) -> Result<()> {
    let dir = w.scratch_dir("broken")?;
    // containerd cannot create its root when a file is in the way.
    std::fs::write(dir.join("root"), "not a directory")?;
    let err = match PrivateContainerd::start(&dir) {
        Ok(_) => bail!("containerd started with a file as its root"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("exited during startup") && err.contains("not a directory"),
        "no log tail in: {err}"
    );
    Ok(())
}

fn shim_pids(socket: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("containerd-shim") && cmd.contains(socket) && pid_alive(*pid)
        })
        .collect()
}

fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(d.as_ref()))
        .map(str::to_owned)
        .collect()
}
