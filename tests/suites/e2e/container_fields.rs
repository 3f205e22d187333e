//! Container-level fields end to end, each checked from inside its container: user, ulimits,
//! hostname, sysctls, hosts and DNS files, environment files, capabilities, tmpfs, init, swap,
//! a terminal and stdin; and the fields Berth refuses by name.

use anyhow::{Result, ensure};
use berth_tests::World;
use serde_json::Value;

use super::{Env, checks_script, container, hello, taskdef};

/// Every supported container-level field, checked from inside its container: each check is a
/// shell test, so the container's exit code proves it. `probe` (root, no capabilities but
/// NET_ADMIN and SYS_TIME) starts only once `nobody` has passed its own checks.
pub(super) fn container_fields(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let env_dir = env.dir.join("env-files");
    std::fs::create_dir_all(&env_dir)?;
    env.opts.extra_args = vec![
        format!("--environment-file-paths={}", env_dir.display()),
        "--allowed-capabilities=NET_ADMIN,SYS_TIME".to_owned(),
    ];
    env.connect()?;
    let image = hello(w, "e2e-fields")?;
    let nobody_checks = [
        r#"test "$(id -u)" = 65534"#,
        r#"test "$(ulimit -n)" = 1000"#,
        r#"test "$(ulimit -Hn)" = 2000"#,
    ];
    let probe_checks = [
        r#"test "$(hostname)" = probe-host"#,
        r#"test "$(cat /proc/sys/kernel/shmmax)" = 1234"#,
        r#"grep -q '^CapEff:[[:space:]]*0000000002001000$' /proc/self/status"#,
        r#"grep ' /dev/shm ' /proc/mounts | grep -q size=102400k"#,
        r#"grep ' /scratch tmpfs ' /proc/mounts | grep -q size=8192k"#,
        r#"echo ok > /scratch/file"#,
        r#"! touch /probe 2>/dev/null"#,
        r#"grep -q '^10.1.2.3[[:space:]]db.internal$' /etc/hosts"#,
        r#"grep -q '^nameserver 10.0.0.53$' /etc/resolv.conf"#,
        r#"grep -q '^search corp.example$' /etc/resolv.conf"#,
        r#"test "$FROM_FILE" = 'from a file'"#,
        r#"test "$BOTH" = explicit"#,
        r#"test "$LATER" = second"#,
        r#"test "$(cat /proc/1/comm)" = docker-init"#,
        r#"test "$(ls /sys/class/net)" = lo"#,
    ];
    let first = env_dir.join("first.env");
    let second = env_dir.join("second.env");
    std::fs::write(
        &first,
        "# read by the agent\nFROM_FILE=from a file\nBOTH=from the file\nLATER=first\n",
    )?;
    std::fs::write(&second, "\nLATER=second\n")?;
    let (_, t) = env.run_checks(
        &taskdef(
            "fields",
            serde_json::json!([
                {"name": "nobody", "image": image, "memory": 64, "essential": false,
                 "user": "nobody",
                 "ulimits": [{"name": "nofile", "softLimit": 1000, "hardLimit": 2000}],
                 "command": ["sh", "-c", checks_script(&nobody_checks)]},
                {"name": "probe", "image": image, "memory": 64,
                 "hostname": "probe-host",
                 "readonlyRootFilesystem": true,
                 "disableNetworking": true,
                 "systemControls": [{"namespace": "kernel.shmmax", "value": "1234"}],
                 "extraHosts": [{"hostname": "db.internal", "ipAddress": "10.1.2.3"}],
                 "dnsServers": ["10.0.0.53"],
                 "dnsSearchDomains": ["corp.example"],
                 "environment": [{"name": "BOTH", "value": "explicit"}],
                 "environmentFiles": [{"value": first, "type": "file"},
                                      {"value": second, "type": "file"}],
                 "linuxParameters": {
                     "capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["ALL"]},
                     "sharedMemorySize": 100,
                     "initProcessEnabled": true,
                     "tmpfs": [{"containerPath": "/scratch", "size": 8, "mountOptions": ["noexec"]}]
                 },
                 "dependsOn": [{"containerName": "nobody", "condition": "SUCCESS"}],
                 "command": ["sh", "-c", checks_script(&probe_checks)]}
            ]),
        ),
        &["nobody", "probe"],
    )?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    Ok(())
}

/// Every container field Berth does not support is refused at registration by name, with its
/// JSON path, all at once.
pub(super) fn unsupported_fields(w: &World) -> Result<()> {
    let env = Env::new(w, "10800")?;
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let unsupported = [
        "versionConsistency",
        "resourceRequirements",
        "firelensConfiguration",
        "credentialSpecs",
    ];
    let mut container = serde_json::json!({"name": "app", "image": "busybox", "memory": 64});
    for field in unsupported {
        container[field] = serde_json::json!(true);
    }
    let def = taskdef("refused", serde_json::json!([container]));
    let out = env.try_register(&def)?;
    ensure!(out.status != 0, "registered: {}", out.stdout);
    for field in unsupported {
        let want =
            format!("field `{field}` at containerDefinitions[0] is not supported by Berth: ");
        ensure!(
            out.stderr.contains(&want),
            "{want:?} missing from: {}",
            out.stderr
        );
    }
    Ok(())
}

/// ECS maxSwap and swappiness. Where the host's cgroups limit swap (cgroup v1 with swap
/// accounting, the case this suite is written for), the container's own memory cgroup has
/// memory.memsw.limit_in_bytes = memory + maxSwap and the swappiness asked for (60 when not
/// given). Where they cannot, the container runs anyway and its reason says what was not
/// applied, which is what this checks then.
pub(super) fn swap(w: &World) -> Result<()> {
    let memsw = std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes");
    let v1_memory = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-swap")?;
    let mib = 1u64 << 20;
    let inside =
        |file: &str, value: u64| format!("test \"$(cat /sys/fs/cgroup/memory/{file})\" = {value}");
    let (swapping, no_swap) = if memsw.exists() {
        (
            vec![
                inside("memory.limit_in_bytes", 64 * mib),
                inside("memory.memsw.limit_in_bytes", 96 * mib),
                inside("memory.swappiness", 10),
            ],
            vec![
                inside("memory.memsw.limit_in_bytes", 64 * mib),
                inside("memory.swappiness", 60),
            ],
        )
    } else {
        (vec!["true".to_owned()], vec!["true".to_owned()])
    };
    let (_, t) = env.run_checks(
        &taskdef(
            "swap",
            serde_json::json!([
                {"name": "swapping", "image": image, "memory": 64, "essential": false,
                 "linuxParameters": {"maxSwap": 32, "swappiness": 10},
                 "command": ["sh", "-c", checks_script(&swapping)]},
                {"name": "noswap", "image": image, "memory": 64,
                 "linuxParameters": {"maxSwap": 0},
                 "dependsOn": [{"containerName": "swapping", "condition": "SUCCESS"}],
                 "command": ["sh", "-c", checks_script(&no_swap)]}
            ]),
        ),
        &["swapping", "noswap"],
    )?;
    if memsw.exists() {
        ensure!(
            container(&t, "swapping")?["reason"].is_null(),
            "nothing to note where swap is limited: {t}"
        );
    } else {
        eprintln!(
            "e2e swap: this kernel does not account swap per cgroup (no {}): checking that the \
             containers run and their reasons say maxSwap was not applied",
            memsw.display()
        );
        let reason = container(&t, "swapping")?["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            reason.starts_with("maxSwap 32 MiB not applied"),
            "the reason names what was not applied: {t}"
        );
        if !v1_memory {
            ensure!(reason.contains("swappiness 10 not applied"), "{t}");
        }
    }
    Ok(())
}

/// ECS pseudoTerminal gives the container a terminal (stdout and stdin are ttys, and its
/// output, stderr included, is logged as stdout); without it neither is a tty. ECS interactive
/// keeps stdin open: cat blocks until killed instead of reading end-of-file at once, which is
/// what a container without it sees.
pub(super) fn terminal_and_stdin(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-terminal")?;
    // busybox timeout execs cat and kills it after 2 s: 137 when cat was still reading.
    let cat_status = "busybox timeout -s KILL 2 cat; echo \"cat: $?\"";
    let (id, _) = env.run_checks(
        &taskdef(
        "terminal",
        serde_json::json!([
            {"name": "tty", "image": image, "memory": 64, "essential": false,
             "pseudoTerminal": true,
             "command": ["sh", "-c",
                 "test -t 1 && echo tty; test -t 0 && echo stdin-tty; echo \"term=$TERM\"; echo to-stderr >&2"]},
            {"name": "notty", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", "test -t 1 || echo notty"]},
            {"name": "stdin", "image": image, "memory": 64, "essential": false,
             "interactive": true,
             "command": ["sh", "-c", cat_status]},
            {"name": "nostdin", "image": image, "memory": 64,
             "dependsOn": [{"containerName": "tty", "condition": "COMPLETE"},
                           {"containerName": "notty", "condition": "COMPLETE"},
                           {"containerName": "stdin", "condition": "COMPLETE"}],
             "command": ["sh", "-c", cat_status]}
        ]),
    ),
        &["tty", "notty", "stdin", "nostdin"],
    )?;
    let tty = env.container_log(&id, "tty");
    ensure!(
        tty.contains("tty\r\n") && tty.contains("stdin-tty") && tty.contains("term=xterm"),
        "a terminal's output, with its carriage returns: {tty:?}"
    );
    let path = env.log_path(&id, "tty");
    let streams: Vec<String> = std::fs::read_to_string(&path)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["stream"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        !streams.is_empty() && streams.iter().all(|s| s == "stdout"),
        "one stream with a terminal: {streams:?}"
    );
    ensure!(
        env.container_log(&id, "tty").contains("to-stderr"),
        "stderr goes to the terminal too"
    );
    ensure!(env.container_log(&id, "notty") == "notty\n");
    let stdin = env.container_log(&id, "stdin");
    // The shell also says "Killed", on stderr, so in either order.
    ensure!(
        stdin.contains("cat: 137\n"),
        "interactive: cat was still reading: {stdin:?}"
    );
    let nostdin = env.container_log(&id, "nostdin");
    ensure!(
        nostdin == "cat: 0\n",
        "not interactive: cat read end-of-file: {nostdin:?}"
    );
    Ok(())
}
