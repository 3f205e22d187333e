//! Tests of loading the configuration: defaults, layering and sources, every key from every
//! layer, and the exact words of every error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};

use super::*;

const FILE: &str = "/etc/berth/agent.toml";

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
}

fn flags(args: &[&str]) -> Overrides {
    let argv = std::iter::once("berth-agent").chain(args.iter().copied());
    Cli::try_parse_from(argv).expect("flags parse").overrides
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_ok(file: Option<&str>, vars: &[(&str, &str)], args: &[&str]) -> LoadedConfig {
    match load(Some(Path::new(FILE)), false, file, &env(vars), &flags(args)) {
        Ok(loaded) => loaded,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn load_err(file: Option<&str>, vars: &[(&str, &str)], args: &[&str]) -> Vec<String> {
    match load(Some(Path::new(FILE)), false, file, &env(vars), &flags(args)) {
        Ok(loaded) => panic!("expected errors, got {loaded:?}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn file_source() -> Source {
    Source::File(PathBuf::from(FILE))
}

#[test]
fn defaults_when_nothing_is_set() {
    let loaded = load(None, false, None, &[], &Overrides::default()).expect("defaults load");
    assert_eq!(loaded.config, AgentConfig::default());
    assert_eq!(loaded.sources.len(), Key::ALL.len());
    assert!(loaded.sources.values().all(|s| *s == Source::Default));

    let c = &loaded.config;
    assert_eq!(c.cluster, "default");
    assert_eq!(c.scheduler_endpoint, "http://127.0.0.1:7700");
    assert_eq!(c.tls, None);
    assert!(!c.allow_plaintext);
    assert!(
        !c.allow_privileged,
        "privileged containers are refused by default"
    );
    assert!(
        !c.allow_host_pid_ipc,
        "the host's PID and IPC namespaces are refused by default"
    );
    assert_eq!(c.data_dir, Path::new("/var/lib/berth"));
    assert_eq!(
        c.containerd_address,
        Path::new("/run/containerd/containerd.sock")
    );
    assert_eq!(c.containerd_namespace, "berth");
    assert_eq!((c.reserved_cpu, c.reserved_memory_mib), (0, 0));
    assert_eq!(c.reserved_ports, [22, 2375, 2376, 51678, 51679]);
    assert!(c.attributes.is_empty());
    assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
    assert_eq!(c.task_cleanup_wait, Duration::from_secs(3 * 3600));
    assert_eq!(c.stop_timeout, Duration::from_secs(30));
    assert_eq!(c.image_pull_timeout, Duration::from_secs(600));
    assert!(c.insecure_registries.is_empty());
    assert_eq!(c.max_concurrent_downloads, 3);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.log_format, LogFormat::Plain);
    assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:51678");
    assert!(c.volume_host_paths.is_empty());
    assert_eq!(c.network_bridge, "berth0");
    assert_eq!(c.network_cidr.to_string(), "10.222.0.0/16");
    assert!(c.network_masquerade);
    assert_eq!(c.network_host_netns, None);
    assert!(
        c.allowed_devices.is_empty(),
        "no host device may be mapped by default"
    );
    assert!(c.allow_unconfined_seccomp, "as on Docker");
    assert!(c.allowed_capabilities.is_empty());
    assert!(
        c.environment_file_paths.is_empty(),
        "no host file may be read as an environment file by default"
    );
    assert!(
        c.block_instance_metadata,
        "tasks are kept from the metadata service"
    );
    assert!(
        c.task_host_ports.is_empty(),
        "no host port is open to tasks"
    );
    assert!(c.eni_allowed_macs.is_empty());
    assert_eq!(
        c.max_manifest_size_mib, 4,
        "registry answers are capped at 4 MiB"
    );
}

#[test]
fn reference_table_defaults_are_the_real_defaults() {
    for doc in reference_table() {
        if doc.default == "(none)" {
            continue;
        }
        let text = format!("{} = {}", doc.key, doc.default);
        let loaded = load_ok(Some(&text), &[], &[]);
        assert_eq!(loaded.config, AgentConfig::default(), "{}", doc.key);
        assert_eq!(loaded.sources[doc.key], file_source());
    }
}

#[test]
fn missing_default_file_is_fine_but_missing_explicit_file_is_not() {
    let none = Overrides::default();
    assert!(load(None, false, None, &[], &none).is_ok());
    let err =
        load(Some(Path::new("/etc/other.toml")), true, None, &[], &none).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "config file /etc/other.toml does not exist"
    );
}

#[test]
fn later_layers_win_and_sources_are_recorded() {
    let file = "cluster = \"from-file\"\nstop_timeout = \"1m\"\nlog_level = \"warn\"\n";
    let vars = [
        ("BERTH_STOP_TIMEOUT", "2m"),
        ("BERTH_LOG_LEVEL", "debug"),
        ("BERTH_RESERVED_CPU", "256"),
    ];
    let loaded = load_ok(
        Some(file),
        &vars,
        &["--log-level", "trace", "--reserved-memory=512"],
    );
    let c = &loaded.config;
    assert_eq!(c.cluster, "from-file");
    assert_eq!(c.stop_timeout, Duration::from_secs(120));
    assert_eq!(c.log_level, "trace");
    assert_eq!(c.reserved_cpu, 256);
    assert_eq!(c.reserved_memory_mib, 512);
    assert_eq!(c.data_dir, Path::new("/var/lib/berth"));

    let s = &loaded.sources;
    assert_eq!(s["cluster"], file_source());
    assert_eq!(s["stop_timeout"], Source::Env("BERTH_STOP_TIMEOUT".into()));
    assert_eq!(s["log_level"], Source::Flag);
    assert_eq!(s["reserved_cpu"], Source::Env("BERTH_RESERVED_CPU".into()));
    assert_eq!(s["reserved_memory"], Source::Flag);
    assert_eq!(s["data_dir"], Source::Default);
}

#[test]
fn lists_and_tables_are_replaced_whole() {
    let file = "reserved_ports = [22, 80]\nattributes = { zone = \"a\", rack = \"1\" }\n";
    let loaded = load_ok(
        Some(file),
        &[
            ("BERTH_RESERVED_PORTS", "443"),
            ("BERTH_ATTRIBUTES", "zone=b"),
        ],
        &[],
    );
    assert_eq!(loaded.config.reserved_ports, [443]);
    assert_eq!(
        loaded.config.attributes,
        BTreeMap::from([("zone".to_owned(), "b".to_owned())])
    );
    let loaded = load_ok(Some(file), &[("BERTH_RESERVED_PORTS", "")], &[]);
    assert!(loaded.config.reserved_ports.is_empty());
}

/// One way to set a group of keys: (key, TOML value, environment and flag text).
struct Sample {
    entries: &'static [(&'static str, &'static str, &'static str)],
    /// The environment text when it differs from the flag's (task_cleanup_wait).
    env_override: Option<&'static str>,
}

const fn sample(entries: &'static [(&'static str, &'static str, &'static str)]) -> Sample {
    Sample {
        entries,
        env_override: None,
    }
}

const JOIN: &[(&str, &str, &str)] = &[
    (
        "join_token",
        r#""abcdef.0123456789abcdef""#,
        "abcdef.0123456789abcdef",
    ),
    (
        "scheduler_ca_pin",
        r#""sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff""#,
        "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    ),
    (
        "scheduler_endpoint",
        r#""https://scheduler.example:7700""#,
        "https://scheduler.example:7700",
    ),
];

const TLS: &[(&str, &str, &str)] = &[
    ("tls_ca_file", r#""/etc/berth/ca.pem""#, "/etc/berth/ca.pem"),
    (
        "tls_cert_file",
        r#""/etc/berth/agent.pem""#,
        "/etc/berth/agent.pem",
    ),
    (
        "tls_key_file",
        r#""/etc/berth/agent-key.pem""#,
        "/etc/berth/agent-key.pem",
    ),
    (
        "scheduler_endpoint",
        r#""https://scheduler.example:7700""#,
        "https://scheduler.example:7700",
    ),
];

fn samples() -> Vec<Sample> {
    vec![
        sample(&[("cluster", r#""prod-eu_1""#, "prod-eu_1")]),
        sample(&[(
            "scheduler_endpoint",
            r#""https://scheduler.example/""#,
            "https://scheduler.example/",
        )]),
        sample(TLS),
        sample(&[
            ("allow_plaintext", "true", "true"),
            (
                "scheduler_endpoint",
                r#""http://10.0.0.5:7700""#,
                "http://10.0.0.5:7700",
            ),
        ]),
        sample(JOIN),
        sample(&[("data_dir", r#""/srv/berth""#, "/srv/berth")]),
        sample(&[(
            "containerd_address",
            r#""/run/k3s/containerd.sock""#,
            "/run/k3s/containerd.sock",
        )]),
        sample(&[("containerd_namespace", r#""k8s.io""#, "k8s.io")]),
        sample(&[("reserved_cpu", "512", "512")]),
        sample(&[("reserved_memory", "1024", "1024")]),
        sample(&[("reserved_ports", "[8080, 22, 8080]", "8080, 22,8080")]),
        sample(&[(
            "attributes",
            r#"{ zone = "eu-1a", "ecs.os-type" = "linux" }"#,
            "zone=eu-1a,ecs.os-type=linux",
        )]),
        sample(&[("heartbeat_interval", r#""5s""#, "5s")]),
        Sample {
            entries: &[("task_cleanup_wait", r#""1h30m""#, "1h30m")],
            env_override: Some("5400"),
        },
        sample(&[("stop_timeout", "90", "90")]),
        sample(&[("image_pull_timeout", r#""1m30s""#, "90s")]),
        sample(&[(
            "insecure_registries",
            r#"["127.0.0.1:5000", "registry.local"]"#,
            "127.0.0.1:5000,registry.local",
        )]),
        sample(&[("max_concurrent_downloads", "8", "8")]),
        sample(&[(
            "log_level",
            r#""info,berth_agent=debug""#,
            "info,berth_agent=debug",
        )]),
        sample(&[("log_format", r#""json""#, "json")]),
        sample(&[("metrics_listen", r#""0.0.0.0:9100""#, "0.0.0.0:9100")]),
        sample(&[("metrics_interval", r#""1s""#, "1s")]),
        sample(&[(
            "volume_host_paths",
            r#"["/srv/data", "/mnt/shared"]"#,
            "/srv/data,/mnt/shared",
        )]),
        sample(&[("allow_privileged", "true", "true")]),
        sample(&[("allow_host_pid_ipc", "true", "true")]),
        sample(&[("init_path", r#""/opt/bin/tini""#, "/opt/bin/tini")]),
        sample(&[("network_bridge", r#""br-tasks""#, "br-tasks")]),
        sample(&[("network_cidr", r#""192.168.64.0/20""#, "192.168.64.0/20")]),
        sample(&[("network_masquerade", "false", "false")]),
        sample(&[("network_netns_dir", r#""/run/netns""#, "/run/netns")]),
        sample(&[(
            "network_host_netns",
            r#""/run/netns/lab""#,
            "/run/netns/lab",
        )]),
        sample(&[(
            "allowed_devices",
            r#"["/dev/fuse", "/dev/snd"]"#,
            "/dev/fuse,/dev/snd",
        )]),
        sample(&[("allow_unconfined_seccomp", "false", "false")]),
        sample(&[(
            "allowed_capabilities",
            r#"["net_admin", "CAP_SYS_TIME", "NET_ADMIN"]"#,
            "net_admin,CAP_SYS_TIME,NET_ADMIN",
        )]),
        sample(&[(
            "environment_file_paths",
            r#"["/etc/berth/env", "/srv/env"]"#,
            "/etc/berth/env,/srv/env",
        )]),
        sample(&[("block_instance_metadata", "false", "false")]),
        sample(&[("task_host_ports", "[53, 8125]", "53,8125")]),
        sample(&[(
            "eni_allowed_macs",
            r#"["0a:1b:2c:3d:4e:5f"]"#,
            "0a:1b:2c:3d:4e:5f",
        )]),
        sample(&[("max_manifest_size", "16", "16")]),
        sample(&[("containerd_root", r#""/srv/containerd""#, "/srv/containerd")]),
        sample(&[("drain_on_shutdown", "true", "true")]),
        sample(&[("orphan_cleanup_grace", r#""off""#, "off")]),
        sample(&[(
            "registry_docker_config",
            r#""/etc/berth/docker.json""#,
            "/etc/berth/docker.json",
        )]),
        sample(&[(
            "registry_token_commands",
            r#"{ "ecr.example" = "/usr/local/bin/ecr-token", "127.0.0.1:5000" = "/opt/tok" }"#,
            "ecr.example=/usr/local/bin/ecr-token,127.0.0.1:5000=/opt/tok",
        )]),
        sample(&[("image_pull_behavior", r#""prefer-cached""#, "prefer-cached")]),
        sample(&[("image_cleanup_interval", r#""off""#, "off")]),
        sample(&[("image_minimum_age", r#""30m""#, "30m")]),
        sample(&[("image_keep_newest", "0", "0")]),
        sample(&[("image_removals_per_cycle", "50", "50")]),
        sample(&[
            ("image_gc_high_percent", "95", "95"),
            ("image_gc_low_percent", "90", "90"),
        ]),
        sample(&[(
            "awslogs_endpoint",
            r#""http://127.0.0.1:4566""#,
            "http://127.0.0.1:4566",
        )]),
        sample(&[(
            "registry_certs_dir",
            r#""/srv/registry-certs""#,
            "/srv/registry-certs",
        )]),
        sample(&[(
            "aws_endpoint",
            r#""https://vpce.example:443""#,
            "https://vpce.example:443",
        )]),
    ]
}

#[test]
fn image_keys_are_checked_alone_and_against_each_other() {
    let refused = |file: &str| load_err(Some(file), &[], &[]).join("\n");
    let err = refused("image_gc_low_percent = 85\n");
    assert!(
        err.contains("image_gc_low_percent = 85")
            && err.contains("below image_gc_high_percent (85)"),
        "{err}"
    );
    let err = refused("image_pull_behavior = \"sometimes\"\n");
    assert!(
        err.contains("one of default, always, once or prefer-cached"),
        "{err}"
    );
    assert!(refused("image_gc_high_percent = 101\n").contains("1 to 100"));
    assert!(refused("image_removals_per_cycle = 0\n").contains("1 to 1000"));
    assert!(refused("image_cleanup_interval = \"0s\"\n").contains("\"off\""));
}

#[test]
fn every_key_is_read_from_the_file_the_environment_and_flags() {
    let defaults = load_ok(None, &[], &[]).render();
    let mut covered = std::collections::BTreeSet::new();
    for sample in samples() {
        let file: String = sample
            .entries
            .iter()
            .map(|(k, v, _)| format!("{k} = {v}\n"))
            .collect();
        let vars: Vec<(String, String)> = sample
            .entries
            .iter()
            .map(|(k, _, text)| {
                let text = match (sample.env_override, *k) {
                    (Some(env), "task_cleanup_wait") => env,
                    _ => text,
                };
                (format!("BERTH_{}", k.to_ascii_uppercase()), text.to_owned())
            })
            .collect();
        let args: Vec<String> = sample
            .entries
            .iter()
            .map(|(k, _, text)| format!("--{}={text}", k.replace('_', "-")))
            .collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();

        let from_file = load_ok(Some(&file), &[], &[]);
        let from_env = load_ok(None, &vars, &[]);
        let from_flags = load_ok(None, &[], &args);
        // Where the join token came from differs by design (the file's is removed after the join).
        let file_config = from_file.config.clone();
        assert_eq!(
            file_config.join.as_ref().map(|j| j.token_file.is_some()),
            file_config.join.as_ref().map(|_| true),
            "{file}"
        );
        let unsourced = |mut config: AgentConfig| {
            if let Some(join) = config.join.as_mut() {
                join.token_file = None;
            }
            config
        };
        assert_eq!(unsourced(file_config.clone()), from_env.config, "{file}");
        assert_eq!(unsourced(file_config), from_flags.config, "{file}");
        assert_ne!(from_file.config, AgentConfig::default(), "{file}");
        for (key, _, _) in sample.entries {
            covered.insert(*key);
            assert_eq!(from_file.sources[key], file_source());
            assert_eq!(
                from_env.sources[key],
                Source::Env(format!("BERTH_{}", key.to_ascii_uppercase()))
            );
            assert_eq!(from_flags.sources[key], Source::Flag);
            let line = |r: &str| {
                r.lines()
                    .find(|l| l.starts_with(&format!("{key} ")))
                    .map(str::to_owned)
            };
            assert_ne!(
                line(&from_file.render()),
                line(&defaults),
                "{key} should differ from its default"
            );
        }
    }
    let all: std::collections::BTreeSet<&str> = reference_table().iter().map(|d| d.key).collect();
    assert_eq!(covered, all);
}

#[test]
fn sample_values_are_parsed_as_meant() {
    let loaded = load_ok(
        None,
        &[
            ("BERTH_RESERVED_PORTS", "8080, 22,8080"),
            ("BERTH_ATTRIBUTES", "zone=eu-1a,ecs.os-type=linux"),
            ("BERTH_TASK_CLEANUP_WAIT", "30"),
            ("BERTH_SCHEDULER_ENDPOINT", "https://scheduler.example/"),
        ],
        &["--allow-plaintext", "--heartbeat-interval=1h30m"],
    );
    let c = &loaded.config;
    assert_eq!(c.reserved_ports, [22, 8080]);
    assert_eq!(c.attributes["zone"], "eu-1a");
    assert_eq!(c.attributes["ecs.os-type"], "linux");
    assert_eq!(c.task_cleanup_wait, Duration::from_secs(30));
    assert_eq!(c.scheduler_endpoint, "https://scheduler.example");
    assert!(c.allow_plaintext);
    assert_eq!(c.heartbeat_interval, Duration::from_secs(5400));

    let tls = load_ok(
        Some(
            &TLS.iter()
                .map(|(k, v, _)| format!("{k} = {v}\n"))
                .collect::<String>(),
        ),
        &[],
        &[],
    );
    assert_eq!(
        tls.config.tls,
        Some(TlsFiles {
            ca_file: "/etc/berth/ca.pem".into(),
            cert_file: "/etc/berth/agent.pem".into(),
            key_file: "/etc/berth/agent-key.pem".into(),
        })
    );
    let off = load_ok(
        Some("allow_plaintext = true"),
        &[],
        &["--allow-plaintext=false"],
    );
    assert!(!off.config.allow_plaintext);
}

#[test]
fn durations_in_every_form() {
    let d = |file: &str| load_ok(Some(file), &[], &[]).config;
    assert_eq!(
        d(r#"stop_timeout = "30s""#).stop_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        d(r#"stop_timeout = "5m""#).stop_timeout,
        Duration::from_secs(300)
    );
    assert_eq!(
        d(r#"stop_timeout = "1h30m""#).stop_timeout,
        Duration::from_secs(5400)
    );
    assert_eq!(
        d(r#"stop_timeout = "90""#).stop_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(d("stop_timeout = 90").stop_timeout, Duration::from_secs(90));
    assert_eq!(
        d(r#"stop_timeout = "250ms""#).stop_timeout,
        Duration::from_millis(250)
    );
    // Every spelling the agent took before, and the rest of the grammar every Berth binary
    // shares (berth_policy::parse_duration: humantime's, plus bare seconds).
    for (text, want) in [
        ("1m30s250ms", Duration::from_millis(90_250)),
        ("1500ms", Duration::from_millis(1500)),
        ("1h 30m", Duration::from_secs(5400)),
        ("10 s", Duration::from_secs(10)),
        ("1.5s", Duration::from_millis(1500)),
        ("2days", Duration::from_secs(2 * 86_400)),
        ("3 hours", Duration::from_secs(3 * 3600)),
    ] {
        assert_eq!(
            d(&format!("stop_timeout = {text:?}")).stop_timeout,
            want,
            "{text}"
        );
    }
    let c = load_ok(
        None,
        &[("BERTH_STOP_TIMEOUT", "1h 30m")],
        &["--heartbeat-interval", "45"],
    )
    .config;
    assert_eq!(
        (c.stop_timeout, c.heartbeat_interval),
        (Duration::from_secs(5400), Duration::from_secs(45))
    );
    for bad in [
        "",
        "abc",
        "s",
        "-5s",
        "5 parsecs",
        "h1",
        "99999999999999999999h",
    ] {
        assert_eq!(
            load_err(Some(&format!("stop_timeout = {bad:?}")), &[], &[]),
            [format!(
                r#"stop_timeout = {bad:?} ({FILE}): expected a duration greater than zero like "30s", "5m" or "1h30m""#
            )],
            "{bad:?}"
        );
    }
    // Zero is a valid cleanup wait (remove at once) and metrics interval (sampling off),
    // nowhere else; a metrics interval under a second is refused.
    assert_eq!(
        d(r#"task_cleanup_wait = "0s""#).task_cleanup_wait,
        Duration::ZERO
    );
    let c = load_ok(None, &[("BERTH_TASK_CLEANUP_WAIT", "0")], &[]).config;
    assert_eq!(c.task_cleanup_wait, Duration::ZERO);
    let c = load_ok(None, &[("BERTH_METRICS_INTERVAL", "0")], &[]).config;
    assert_eq!(c.metrics_interval, Duration::ZERO);
    assert_eq!(
        d(r#"metrics_interval = "1s""#).metrics_interval,
        Duration::from_secs(1)
    );
    assert_eq!(
        load_err(Some(r#"metrics_interval = "999ms""#), &[], &[]),
        [format!(
            r#"metrics_interval = "999ms" ({FILE}): expected a duration of 1s or more like "10s", or 0 for off"#
        )]
    );

    let positive = r#"expected a duration greater than zero like "30s", "5m" or "1h30m""#;
    for key in ["heartbeat_interval", "stop_timeout", "image_pull_timeout"] {
        assert_eq!(
            load_err(Some(&format!(r#"{key} = "0s""#)), &[], &[]),
            [format!(r#"{key} = "0s" ({FILE}): {positive}"#)]
        );
        assert_eq!(
            load_err(Some(&format!("{key} = 0")), &[], &[]),
            [format!("{key} = 0 ({FILE}): {positive}")]
        );
    }
    assert_eq!(
        load_err(None, &[("BERTH_HEARTBEAT_INTERVAL", "0")], &[]),
        [format!(
            "BERTH_HEARTBEAT_INTERVAL=0 (environment): {positive}"
        )]
    );
    assert_eq!(
        load_err(Some("task_cleanup_wait = -5"), &[], &[]),
        [format!(
            r#"task_cleanup_wait = -5 ({FILE}): expected a duration like "30s", "5m" or "1h30m""#
        )]
    );
}

#[test]
fn task_cleanup_wait_in_the_environment_is_seconds() {
    let c = load_ok(None, &[("BERTH_TASK_CLEANUP_WAIT", "30")], &[]).config;
    assert_eq!(c.task_cleanup_wait, Duration::from_secs(30));
    for bad in ["abc", "30s", "-1", "1.5", ""] {
        assert_eq!(
            load_err(None, &[("BERTH_TASK_CLEANUP_WAIT", bad)], &[]),
            [format!(
                "BERTH_TASK_CLEANUP_WAIT={bad} (environment): expected a number of seconds"
            )]
        );
    }
    // The flag takes durations.
    let c = load_ok(None, &[], &["--task-cleanup-wait", "30s"]).config;
    assert_eq!(c.task_cleanup_wait, Duration::from_secs(30));
}

#[test]
fn every_bad_value_names_key_origin_and_expectation() {
    let duration = r#"a duration like "30s", "5m" or "1h30m""#;
    let positive = r#"a duration greater than zero like "30s", "5m" or "1h30m""#;
    let cases: &[(&str, &str, &str)] = &[
        (
            "cluster",
            "bad name",
            "a cluster name of 1 to 255 letters, digits, '-' or '_'",
        ),
        (
            "scheduler_endpoint",
            "scheduler:7700",
            "an http:// or https:// URL with a host and an optional port, like https://scheduler.example:7700",
        ),
        ("tls_ca_file", "ca.pem", "an absolute file path"),
        ("tls_cert_file", "cert.pem", "an absolute file path"),
        ("tls_key_file", "key.pem", "an absolute file path"),
        ("allow_plaintext", "yes", "true or false"),
        ("data_dir", "var/lib/berth", "an absolute path"),
        (
            "containerd_address",
            "containerd.sock",
            "an absolute path to containerd's socket",
        ),
        (
            "containerd_namespace",
            "-berth",
            "a containerd namespace: letters and digits separated by single '.', '_' or '-', at most 76 characters",
        ),
        (
            "reserved_cpu",
            "-1",
            "a whole number of CPU units (1024 = one core)",
        ),
        ("reserved_memory", "1GiB", "a whole number of MiB"),
        (
            "reserved_ports",
            "22,70000",
            "comma-separated port numbers from 1 to 65535",
        ),
        (
            "attributes",
            "zone",
            "comma-separated name=value pairs, but `zone` has no `=`",
        ),
        ("heartbeat_interval", "10 parsecs", positive),
        ("task_cleanup_wait", "three hours", duration),
        ("stop_timeout", "0s", positive),
        ("image_pull_timeout", "forever", positive),
        (
            "insecure_registries",
            "http://registry.local",
            "comma-separated registry hosts like 127.0.0.1:5000 (host[:port], no scheme)",
        ),
        (
            "max_concurrent_downloads",
            "0",
            "a whole number of at least 1",
        ),
        (
            "log_level",
            "berth=loud",
            r#"error, warn, info, debug, trace or a tracing filter like "info,berth_agent=debug""#,
        ),
        ("log_format", "xml", "plain or json"),
        (
            "metrics_listen",
            "localhost",
            "an address and port like 127.0.0.1:51678",
        ),
        (
            "metrics_interval",
            "500ms",
            "a duration of 1s or more like \"10s\", or 0 for off",
        ),
        (
            "volume_host_paths",
            "/srv/data,/srv/../etc",
            "comma-separated absolute directories like /srv/data (without ..)",
        ),
        ("allow_privileged", "maybe", "true or false"),
        ("init_path", "tini", "an absolute file path"),
        (
            "network_bridge",
            "a-bridge-name-too-long",
            "an interface name of 1 to 15 letters, digits, '-', '_' or '.'",
        ),
        (
            "network_cidr",
            "10.222.0.1/16",
            "an IPv4 network (host bits zero) with a prefix of /8 to /30, like 10.222.0.0/16",
        ),
        ("network_masquerade", "sometimes", "true or false"),
        ("network_netns_dir", "netns", "an absolute directory"),
        (
            "network_host_netns",
            "lab",
            "the absolute path of a network namespace, like /run/netns/lab",
        ),
        (
            "allowed_devices",
            "/dev/fuse,dev/snd",
            "comma-separated absolute device paths like /dev/fuse (without ..)",
        ),
        ("block_instance_metadata", "maybe", "true or false"),
        (
            "task_host_ports",
            "53,70000",
            "comma-separated port numbers from 1 to 65535",
        ),
        (
            "eni_allowed_macs",
            "0a:1b:2c:3d:4e",
            "comma-separated MAC addresses like 0a:1b:2c:3d:4e:5f",
        ),
        (
            "max_manifest_size",
            "65",
            "a whole number of MiB from 1 to 64",
        ),
        ("containerd_root", "var/lib", "an absolute directory path"),
        ("drain_on_shutdown", "maybe", "true or false"),
        (
            "orphan_cleanup_grace",
            "later",
            r#"a duration like "10m", 0 to remove at once, or "off" to only report"#,
        ),
        (
            "registry_docker_config",
            "docker.json",
            "the absolute path of a Docker config.json",
        ),
        (
            "registry_token_commands",
            "ecr.example=ecr-token",
            "the absolute path of an executable for ecr.example, not `ecr-token`",
        ),
        (
            "awslogs_endpoint",
            "localhost:4566",
            "an http:// or https:// URL, like http://127.0.0.1:4566",
        ),
        (
            "registry_certs_dir",
            "certs.d",
            "the absolute path of a directory",
        ),
        (
            "aws_endpoint",
            "ftp://127.0.0.1",
            "an http:// or https:// URL, like http://127.0.0.1:4566",
        ),
    ];
    assert_eq!(cases.len(), 44);
    for (key, value, expected) in cases {
        let flag = format!("--{}", key.replace('_', "-"));
        let flag_arg = format!("{flag}={value}");
        assert_eq!(
            load_err(None, &[], &[&flag_arg]),
            [format!(
                "{flag}={value} (command line): expected {expected}"
            )],
            "{key}"
        );
        if *key == "task_cleanup_wait" {
            continue;
        }
        let env_name = format!("BERTH_{}", key.to_ascii_uppercase());
        assert_eq!(
            load_err(None, &[(&env_name, value)], &[]),
            [format!(
                "{env_name}={value} (environment): expected {expected}"
            )],
            "{key}"
        );
    }
}

#[test]
fn bad_values_in_the_file_are_shown_as_toml() {
    let cases: &[(&str, &str)] = &[
        (
            "cluster = 5",
            "cluster = 5 (F): expected a cluster name of 1 to 255 letters, digits, '-' or '_'",
        ),
        (
            "containerd_namespace = \"a..b\"",
            "containerd_namespace = \"a..b\" (F): expected a containerd namespace: letters and digits separated by single '.', '_' or '-', at most 76 characters",
        ),
        (
            "allow_plaintext = \"true\"",
            "allow_plaintext = \"true\" (F): expected true or false",
        ),
        (
            "reserved_cpu = 1.5",
            "reserved_cpu = 1.5 (F): expected a whole number of CPU units (1024 = one core)",
        ),
        (
            "reserved_ports = \"22\"",
            "reserved_ports = \"22\" (F): expected an array of port numbers from 1 to 65535",
        ),
        (
            "reserved_ports = [0]",
            "reserved_ports = [0] (F): expected an array of port numbers from 1 to 65535",
        ),
        (
            "insecure_registries = \"a:5000\"",
            "insecure_registries = \"a:5000\" (F): expected an array of registry hosts like \"127.0.0.1:5000\" (host[:port], no scheme)",
        ),
        (
            "registry_token_commands = { \"https://r\" = \"/bin/t\" }",
            "registry_token_commands = { \"https://r\" = \"/bin/t\" } (F): expected registry hosts like 127.0.0.1:5000 (host[:port], no scheme), not `https://r`",
        ),
        (
            "attributes = { zone = 1 }",
            "attributes = { zone = 1 } (F): expected a table of attribute names to strings, but `zone` is 1",
        ),
        (
            "attributes = \"zone=a\"",
            "attributes = \"zone=a\" (F): expected a table of attribute names to strings",
        ),
        (
            "attributes = { \"a b\" = \"x\" }",
            "attributes = { \"a b\" = \"x\" } (F): expected attribute names of 1 to 128 letters, digits, '_', '-', '.', '/' or '\\', not `a b`",
        ),
        (
            "attributes = { zone = \" a\" }",
            "attributes = { zone = \" a\" } (F): expected attribute values of 1 to 128 letters, digits, spaces, '_', '-', '.', '@', '/', '\\' or ':' without leading or trailing spaces, not ` a`",
        ),
        (
            "attributes = { \"berth.os-type\" = \"windows\" }",
            "attributes = { \"berth.os-type\" = \"windows\" } (F): expected names outside berth.*, which the agent reports itself, not `berth.os-type` (choose another name, e.g. `os-type`)",
        ),
        (
            "max_concurrent_downloads = -3",
            "max_concurrent_downloads = -3 (F): expected a whole number of at least 1",
        ),
        (
            "allowed_capabilities = [\"SYS_ADMN\"]",
            "allowed_capabilities = [\"SYS_ADMN\"] (F): expected an array of capability names like \"NET_ADMIN\" (or \"ALL\"), but `SYS_ADMN` is not a Linux capability",
        ),
        (
            "log_format = \"JSON\"",
            "log_format = \"JSON\" (F): expected plain or json",
        ),
        (
            "log_level = \"\"",
            "log_level = \"\" (F): expected error, warn, info, debug, trace or a tracing filter like \"info,berth_agent=debug\"",
        ),
    ];
    for (file, expected) in cases {
        assert_eq!(
            load_err(Some(file), &[], &[]),
            [expected.replace("(F)", &format!("({FILE})"))]
        );
    }
}

#[test]
fn attributes_from_the_environment() {
    assert_eq!(
        load_err(None, &[("BERTH_ATTRIBUTES", "zone=a,zone=b")], &[]),
        [
            "BERTH_ATTRIBUTES=zone=a,zone=b (environment): expected each attribute name once, but `zone` is repeated"
        ]
    );
    assert_eq!(
        load_err(None, &[("BERTH_ATTRIBUTES", "zone=")], &[]),
        [
            "BERTH_ATTRIBUTES=zone= (environment): expected attribute values of 1 to 128 letters, digits, spaces, '_', '-', '.', '@', '/', '\\' or ':' without leading or trailing spaces, not ``"
        ]
    );
    let c = load_ok(None, &[("BERTH_ATTRIBUTES", "")], &[]).config;
    assert!(c.attributes.is_empty());
    let c = load_ok(None, &[("BERTH_ATTRIBUTES", " a = x/y:z , b=c@d ")], &[]).config;
    assert_eq!(c.attributes["a"], "x/y:z");
    assert_eq!(c.attributes["b"], "c@d");
}

#[test]
fn unknown_file_keys_are_refused_with_a_suggestion() {
    assert_eq!(
        load_err(Some("clustr = \"prod\""), &[], &[]),
        ["unknown key `clustr` in /etc/berth/agent.toml: did you mean `cluster`?"]
    );
    assert_eq!(
        load_err(Some("scheduler-endpoint = \"https://s\""), &[], &[]),
        [
            "unknown key `scheduler-endpoint` in /etc/berth/agent.toml: did you mean `scheduler_endpoint`?"
        ]
    );
    assert_eq!(
        load_err(Some("[agent]\ncluster = \"x\""), &[], &[]),
        ["unknown key `agent` in /etc/berth/agent.toml"]
    );
}

#[test]
fn unknown_berth_variables_are_refused_but_other_tools_are_ignored() {
    assert_eq!(
        load_err(None, &[("BERTH_CLUSTR", "prod")], &[]),
        ["unknown environment variable `BERTH_CLUSTR`: did you mean `BERTH_CLUSTER`?"]
    );
    assert_eq!(
        load_err(None, &[("BERTH_WHATEVER", "1")], &[]),
        ["unknown environment variable `BERTH_WHATEVER`"]
    );
    let loaded = load_ok(
        None,
        &[
            ("BERTH_ENDPOINT", "http://somewhere:1"),
            ("BERTH_E2E_KEEP", "1"),
            ("BERTH_E2E_TMPDIR", "/tmp/x"),
            ("PATH", "/usr/bin"),
            ("berth_cluster", "lowercase-is-not-ours"),
        ],
        &[],
    );
    assert_eq!(loaded.config, AgentConfig::default());
}

#[test]
fn every_problem_is_reported_at_once() {
    let file =
        "clustr = \"x\"\nstop_timeout = \"soon\"\nscheduler_endpoint = \"http://10.1.2.3:7700\"\n";
    let vars = [
        ("BERTH_TASK_CLEANUP_WAIT", "abc"),
        ("BERTH_RESERVED_PORTS", "22,0"),
        ("BERTH_NAMESPACE", "berth"),
    ];
    let errors = load_err(
        Some(file),
        &vars,
        &["--log-format=xml", "--tls-ca-file=/ca.pem"],
    );
    assert_eq!(
        errors,
        [
            // The file, in key order.
            "unknown key `clustr` in /etc/berth/agent.toml: did you mean `cluster`?",
            r#"stop_timeout = "soon" (/etc/berth/agent.toml): expected a duration greater than zero like "30s", "5m" or "1h30m""#,
            // The environment, by name.
            "unknown environment variable `BERTH_NAMESPACE`",
            "BERTH_RESERVED_PORTS=22,0 (environment): expected comma-separated port numbers from 1 to 65535",
            "BERTH_TASK_CLEANUP_WAIT=abc (environment): expected a number of seconds",
            // The flags.
            "--log-format=xml (command line): expected plain or json",
            // Checks across keys.
            "tls_ca_file (command line) is set but tls_cert_file and tls_key_file are not: expected all three tls files or none",
            r#"scheduler_endpoint = "http://10.1.2.3:7700" (/etc/berth/agent.toml): expected an https:// endpoint or a loopback host (plain http to another host needs allow_plaintext = true)"#,
        ]
    );
    let err = load(
        Some(Path::new(FILE)),
        false,
        Some(file),
        &env(&vars),
        &Overrides::default(),
    )
    .expect_err("bad");
    assert_eq!(err.to_string().lines().count(), err.0.len());
}

#[test]
fn plaintext_to_a_remote_scheduler_needs_allow_plaintext() {
    let remote = [("BERTH_SCHEDULER_ENDPOINT", "http://10.0.0.5:7700")];
    assert_eq!(
        load_err(None, &remote, &[]),
        [
            "BERTH_SCHEDULER_ENDPOINT=http://10.0.0.5:7700 (environment): expected an https:// endpoint or a loopback host (plain http to another host needs allow_plaintext = true)"
        ]
    );
    let loaded = load_ok(Some("allow_plaintext = true"), &remote, &[]);
    assert!(loaded.config.allow_plaintext);
    assert_eq!(loaded.config.scheduler_endpoint, "http://10.0.0.5:7700");
    load_ok(
        None,
        &[("BERTH_SCHEDULER_ENDPOINT", "http://10.0.0.5:7700")],
        &["--allow-plaintext"],
    );
    for fine in [
        "https://10.0.0.5:7700",
        "http://localhost:7700",
        "http://[::1]:7700",
        "http://127.0.0.2",
    ] {
        load_ok(None, &[("BERTH_SCHEDULER_ENDPOINT", fine)], &[]);
    }
}

#[test]
fn tls_files_all_or_none_must_exist_and_need_https() {
    assert_eq!(
        load_err(
            Some("tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\""),
            &[],
            &[]
        ),
        [
            "tls_cert_file (file /etc/berth/agent.toml) and tls_key_file (file /etc/berth/agent.toml) are set but tls_ca_file is not: expected all three tls files or none"
        ]
    );
    let trio = "tls_ca_file = \"/ca.pem\"\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n";
    assert_eq!(
        load_err(Some(trio), &[], &[]),
        [
            r#"scheduler_endpoint = "http://127.0.0.1:7700" (default): expected an https:// endpoint when the tls files are set"#
        ]
    );
    let with_https = format!("{trio}scheduler_endpoint = \"https://s.example\"\n");
    let none = Overrides::default();
    let only_ca = |p: &Path| p == Path::new("/ca.pem");
    let err = load_with(
        Some(Path::new(FILE)),
        false,
        Some(&with_https),
        &[],
        &none,
        &only_ca,
    )
    .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "tls_cert_file = \"/c.pem\" (/etc/berth/agent.toml): expected an existing file\n\
         tls_key_file = \"/k.pem\" (/etc/berth/agent.toml): expected an existing file"
    );
    let loaded = load_with(
        Some(Path::new(FILE)),
        false,
        Some(&with_https),
        &[],
        &none,
        &|_| true,
    )
    .expect("ok");
    assert_eq!(
        loaded.config.tls.map(|t| t.key_file),
        Some(PathBuf::from("/k.pem"))
    );
}

#[test]
fn toml_syntax_errors_point_at_the_line() {
    let errors = load_err(Some("cluster = \"a\"\nstop_timeout = \n"), &[], &[]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("invalid TOML in /etc/berth/agent.toml at line 2, column "),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains('\n'));
}

#[test]
fn render_lists_every_key_with_value_and_source() {
    let loaded = load_ok(
        Some("cluster = \"prod\"\nattributes = { zone = \"eu-1a\", rack = \"x\" }\n"),
        &[("BERTH_TASK_CLEANUP_WAIT", "5400")],
        &["--log-format", "json"],
    );
    let expected = r#"cluster                  = "prod"                             # file /etc/berth/agent.toml
scheduler_endpoint       = "http://127.0.0.1:7700"            # default
tls_ca_file              = (none)                             # default
tls_cert_file            = (none)                             # default
tls_key_file             = (none)                             # default
join_token               = (none)                             # default
scheduler_ca_pin         = (none)                             # default
allow_plaintext          = false                              # default
data_dir                 = "/var/lib/berth"                   # default
containerd_address       = "/run/containerd/containerd.sock"  # default
containerd_namespace     = "berth"                            # default
reserved_cpu             = 0                                  # default
reserved_memory          = 0                                  # default
reserved_ports           = [22, 2375, 2376, 51678, 51679]     # default
attributes               = { rack = "x", zone = "eu-1a" }     # file /etc/berth/agent.toml
heartbeat_interval       = "10s"                              # default
task_cleanup_wait        = "1h30m"                            # env BERTH_TASK_CLEANUP_WAIT
stop_timeout             = "30s"                              # default
image_pull_timeout       = "10m"                              # default
insecure_registries      = []                                 # default
max_concurrent_downloads = 3                                  # default
log_level                = "info"                             # default
log_format               = "json"                             # flag --log-format
metrics_listen           = "127.0.0.1:51678"                  # default
metrics_interval         = "10s"                              # default
volume_host_paths        = []                                 # default
allow_privileged         = false                              # default
init_path                = "/usr/bin/tini-static"             # default
network_bridge           = "berth0"                           # default
network_cidr             = "10.222.0.0/16"                    # default
network_masquerade       = true                               # default
network_netns_dir        = "/run/berth/netns"                 # default
network_host_netns       = (none)                             # default
allowed_devices          = []                                 # default
allow_unconfined_seccomp = true                               # default
allowed_capabilities     = []                                 # default
environment_file_paths   = []                                 # default
block_instance_metadata  = true                               # default
task_host_ports          = []                                 # default
eni_allowed_macs         = []                                 # default
max_manifest_size        = 4                                  # default
containerd_root          = "/var/lib/containerd"              # default
drain_on_shutdown        = false                              # default
orphan_cleanup_grace     = "10m"                              # default
registry_docker_config   = (none)                             # default
registry_token_commands  = {}                                 # default
image_pull_behavior      = "default"                          # default
image_cleanup_interval   = "10m"                              # default
image_minimum_age        = "1h"                               # default
image_keep_newest        = 2                                  # default
image_removals_per_cycle = 5                                  # default
image_gc_high_percent    = 85                                 # default
image_gc_low_percent     = 80                                 # default
allow_host_pid_ipc       = false                              # default
awslogs_endpoint         = (none)                             # default
registry_certs_dir       = "/etc/berth/certs.d"               # default
aws_endpoint             = (none)                             # default
"#;
    assert_eq!(loaded.render(), expected);
}

#[test]
fn rendered_values_read_back_as_the_same_config() {
    let loaded = load_ok(
        None,
        &[
            ("BERTH_ATTRIBUTES", "ecs.os-type=linux,zone=a"),
            ("BERTH_INSECURE_REGISTRIES", "127.0.0.1:5000"),
            ("BERTH_IMAGE_PULL_TIMEOUT", "1500ms"),
        ],
        &[],
    );
    let toml: String = loaded
        .render()
        .lines()
        .filter(|l| !l.contains("(none)"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(load_ok(Some(&toml), &[], &[]).config, loaded.config);
}

#[test]
fn flags_cover_exactly_the_keys() {
    let command = Overrides::augment_args(clap::Command::new("berth-agent"));
    let mut longs: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    longs.sort();
    let mut expected: Vec<String> = reference_table()
        .iter()
        .map(|d| d.flag.to_owned())
        .collect();
    expected.sort();
    assert_eq!(longs, expected);
    // No flag reads the environment behind our back (that would mislabel its source).
    assert!(command.get_arguments().all(|a| a.get_env().is_none()));
}

#[test]
fn load_from_system_reads_the_file_and_checks_tls_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "ca").expect("write");
    let config = dir.path().join("agent.toml");
    let text = format!(
        "cluster = \"from-tempfile\"\nscheduler_endpoint = \"https://s.example\"\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        ca,
        ca,
        dir.path().join("missing-key.pem")
    );
    std::fs::write(&config, text).expect("write");
    let err = load_from_system(Some(&config), &Overrides::default()).expect_err("key missing");
    let missing = format!(
        "tls_key_file = {:?} ({}): expected an existing file",
        dir.path().join("missing-key.pem"),
        config.display()
    );
    assert!(err.0.iter().any(|e| e.to_string() == missing), "{err}");

    std::fs::write(&config, "cluster = \"from-tempfile\"\n").expect("write");
    match load_from_system(Some(&config), &Overrides::default()) {
        Ok(loaded) => {
            assert_eq!(loaded.config.cluster, "from-tempfile");
            assert_eq!(loaded.sources["cluster"], Source::File(config.clone()));
        }
        // The test process's own environment may carry stray BERTH_* variables.
        Err(e) => assert!(
            e.0.iter()
                .all(|e| matches!(e, ConfigError::UnknownEnv { .. })),
            "{e}"
        ),
    }

    let absent = dir.path().join("absent.toml");
    let err = load_from_system(Some(&absent), &Overrides::default()).expect_err("absent");
    assert!(
        err.0.contains(&ConfigError::MissingFile {
            path: absent.clone()
        }),
        "{err}"
    );
    let err = load_from_system(Some(dir.path()), &Overrides::default()).expect_err("a directory");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read config file {}: ",
            dir.path().display()
        )),
        "{err}"
    );
}

#[test]
fn a_join_token_needs_a_way_to_check_the_scheduler_and_is_never_shown() {
    let token = "abcdef.0123456789abcdef";
    let errors = load_err(
        None,
        &[
            ("BERTH_JOIN_TOKEN", token),
            ("BERTH_SCHEDULER_ENDPOINT", "http://127.0.0.1:7700"),
        ],
        &[],
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("scheduler_ca_pin")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("an https:// endpoint when join_token is set")),
        "{errors:?}"
    );
    assert!(errors.iter().all(|e| !e.contains(token)), "{errors:?}");
    let bad = load_err(None, &[("BERTH_JOIN_TOKEN", "abcdef.tooshort")], &[]);
    assert!(bad.iter().all(|e| !e.contains("tooshort")), "{bad:?}");
    let pin = load_err(None, &[("BERTH_SCHEDULER_CA_PIN", "md5:00")], &[]);
    assert!(pin[0].contains("sha256:<64 hex digits>"), "{pin:?}");
    let loaded = load_ok(
        None,
        &[
            ("BERTH_JOIN_TOKEN", token),
            ("BERTH_SCHEDULER_ENDPOINT", "https://127.0.0.1:7700"),
            (
                "BERTH_SCHEDULER_CA_PIN",
                "sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
            ),
        ],
        &[],
    );
    let join = loaded.config.join.as_ref().expect("join");
    assert_eq!(join.token, token);
    assert!(
        join.ca_pin
            .as_deref()
            .is_some_and(|p| p.ends_with("aabbccddeeff00112233445566778899aabbccddeeff"))
    );
    assert!(!loaded.render().contains(token));
    assert!(!format!("{:?}", loaded.config).contains(token));
}
