//! berthctl's command line: what each invocation parses to and what is refused.

use super::*;

fn parse(args: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied()))
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
}

fn command(args: &[&str]) -> Command {
    parse(args).command
}

fn usage_error(args: &[&str]) -> clap::error::ErrorKind {
    match Args::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
        Ok(parsed) => panic!("{args:?} parsed: {parsed:?}"),
        Err(error) => error.kind(),
    }
}

#[test]
fn logs() {
    let Command::Logs(l) = command(&[
        "logs",
        "t1",
        "--container",
        "app",
        "--tail",
        "5",
        "-f",
        "--since",
        "2026-11-18T11:06:40Z",
        "-t",
    ]) else {
        panic!("not logs")
    };
    assert_eq!(
        (l.task.as_str(), l.container.as_deref(), l.tail),
        ("t1", Some("app"), Some(5))
    );
    assert!(l.follow && l.timestamps);
    assert_eq!(
        l.since,
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000))
    );
    let Command::Logs(l) = command(&["logs", "t1", "--since", "1h"]) else {
        panic!("not logs")
    };
    let ago = SystemTime::now().duration_since(l.since.unwrap()).unwrap();
    assert!(
        ago >= Duration::from_secs(3600) && ago < Duration::from_secs(3700),
        "{ago:?}"
    );
    let Command::Logs(l) = command(&["logs", "t1"]) else {
        panic!("not logs")
    };
    assert_eq!(
        (l.container, l.tail, l.since, l.follow),
        (None, None, None, false)
    );
    assert_eq!(
        usage_error(&["logs", "t1", "--since", "yesterday"]),
        clap::error::ErrorKind::ValueValidation
    );
}

#[test]
fn global_options() {
    let args = parse(&[
        "--endpoint",
        "http://sched:1",
        "--cluster",
        "prod",
        "-o",
        "json",
        "list-clusters",
    ]);
    assert_eq!(
        (args.endpoint.as_deref(), args.cluster.as_deref()),
        (Some("http://sched:1"), Some("prod"))
    );
    assert_eq!(args.output, OutputFormat::Json);
    // Global options also go after the command.
    let args = parse(&["tasks", "--cluster", "c2", "--output", "table"]);
    assert_eq!(args.cluster.as_deref(), Some("c2"));
    assert_eq!(args.output, OutputFormat::Table);
    if std::env::var_os("BERTH_ENDPOINT").is_none() && std::env::var_os("BERTH_CLUSTER").is_none() {
        let args = parse(&["list-clusters"]);
        assert_eq!((args.endpoint, args.cluster), (None, None));
        assert_eq!(args.output, OutputFormat::Table);
    }
    assert_eq!(
        usage_error(&["-o", "yaml", "list-clusters"]),
        clap::error::ErrorKind::InvalidValue
    );
    assert_eq!(
        usage_error(&[]),
        clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
}

#[test]
fn cluster_commands() {
    assert_eq!(
        command(&["create-cluster", "c"]),
        Command::CreateCluster { name: "c".into() }
    );
    assert_eq!(command(&["list-clusters"]), Command::ListClusters);
    assert_eq!(
        command(&["describe-clusters", "a", "b"]),
        Command::DescribeClusters {
            names: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(
        command(&["delete-cluster", "c"]),
        Command::DeleteCluster { name: "c".into() }
    );
    assert_eq!(
        usage_error(&["describe-clusters"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        usage_error(&["create-cluster"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn task_definition_commands() {
    assert_eq!(
        command(&["register-task-definition", "--file", "td.json"]),
        Command::RegisterTaskDefinition {
            file: "td.json".into()
        }
    );
    assert_eq!(
        command(&["list-task-definitions"]),
        Command::ListTaskDefinitions { family: None }
    );
    assert_eq!(
        command(&["list-task-definitions", "--family", "web"]),
        Command::ListTaskDefinitions {
            family: Some("web".into())
        }
    );
    assert_eq!(
        command(&["describe-task-definition", "web:3"]),
        Command::DescribeTaskDefinition {
            task_definition: "web:3".into()
        }
    );
    assert_eq!(
        usage_error(&["register-task-definition"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn run_task() {
    assert_eq!(
        command(&["run-task", "--task-definition", "web:2"]),
        Command::RunTask(RunTask {
            task_definition: Some("web:2".into()),
            file: None,
            count: 1,
            started_by: "berthctl".into(),
            network_attachment: None,
            container_instance: None,
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            wait: false,
            timeout: None
        })
    );
    assert_eq!(
        command(&[
            "run-task",
            "--file",
            "td.json",
            "--count",
            "3",
            "--started-by",
            "ci"
        ]),
        Command::RunTask(RunTask {
            task_definition: None,
            file: Some("td.json".into()),
            count: 3,
            started_by: "ci".into(),
            network_attachment: None,
            container_instance: None,
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            wait: false,
            timeout: None
        })
    );
    let Command::RunTask(run) = command(&[
        "run-task",
        "--task-definition",
        "a",
        "--wait",
        "--timeout",
        "2m",
    ]) else {
        panic!("not run-task")
    };
    assert!(run.wait);
    assert_eq!(run.timeout, Some(Duration::from_secs(120)));
    assert_eq!(
        usage_error(&["run-task", "--task-definition", "a", "--timeout", "5"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        usage_error(&["run-task"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        usage_error(&["run-task", "--task-definition", "a", "--file", "f"]),
        clap::error::ErrorKind::ArgumentConflict
    );
    assert_eq!(
        usage_error(&["run-task", "--task-definition", "a", "--count", "0"]),
        clap::error::ErrorKind::ValueValidation
    );
}

#[test]
fn run_task_with_a_network_attachment() {
    let Command::RunTask(run) = command(&[
        "run-task",
        "--task-definition",
        "vpc",
        "--network-attachment",
        "mac=0A:58:0a:01:00:05,address=10.1.0.5/24,gateway=10.1.0.1",
    ]) else {
        panic!("not run-task")
    };
    assert_eq!(
        run.network_attachment,
        Some(proto::NetworkAttachment {
            mac_address: "0a:58:0a:01:00:05".into(),
            private_ipv4_address: "10.1.0.5".into(),
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            interface_name: String::new(),
        })
    );
    // Any order; spaces around the parts are fine.
    assert_eq!(
        parse_network_attachment("gateway=10.1.0.1, address=10.1.0.5/24, mac=0a:58:0a:01:00:05"),
        Ok(run.network_attachment.unwrap())
    );
    let form = "use mac=MAC,address=IP/PREFIX,gateway=IP";
    let cases = [
        ("mac=0a:58:0a:01:00:05", format!("`address` and `gateway` are missing: {form}")),
        (
            "mac=0a:58:0a:01:00:05,address=10.1.0.5/24",
            format!("`gateway` is missing: {form}"),
        ),
        ("mac", format!("`mac` is not key=value: {form}")),
        (
            "ip=10.1.0.5/24",
            format!("`ip` is not a key of a network attachment: {form}"),
        ),
        ("mac=a,mac=b", "`mac` is given twice".to_owned()),
        (
            "mac=0a:58,address=10.1.0.5/24,gateway=10.1.0.1",
            "mac `0a:58` is not a MAC address: use six pairs of hex digits like 0a:58:0a:01:00:05".to_owned(),
        ),
        (
            "mac=0a:58:0a:01:00:05,address=10.1.0.5,gateway=10.1.0.1",
            "address `10.1.0.5` is not an IPv4 address with the subnet's prefix length, like 10.1.0.5/24".to_owned(),
        ),
        (
            "mac=0a:58:0a:01:00:05,address=10.1.0.5/24,gateway=router",
            "gateway `router` is not an IPv4 address".to_owned(),
        ),
        (
            "mac=0a:58:0a:01:00:05,address=10.1.0.5/24,gateway=10.1.1.1",
            "network attachment: gateway 10.1.1.1 is not in subnet 10.1.0.0/24".to_owned(),
        ),
    ];
    for (text, message) in cases {
        assert_eq!(parse_network_attachment(text), Err(message), "{text}");
    }
    // clap names the flag.
    let error = Args::try_parse_from([
        "berthctl",
        "run-task",
        "--task-definition",
        "vpc",
        "--network-attachment",
        "mac=x",
    ])
    .unwrap_err();
    assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
    assert!(
        error.to_string().contains("--network-attachment"),
        "{error}"
    );
}

#[test]
fn task_commands_and_aliases() {
    let all = Command::ListTasks {
        container_instance: None,
        desired_status: None,
    };
    assert_eq!(command(&["list-tasks"]), all);
    assert_eq!(command(&["tasks"]), all);
    assert_eq!(
        command(&[
            "tasks",
            "--container-instance",
            "i-1",
            "--desired-status",
            "STOPPED"
        ]),
        Command::ListTasks {
            container_instance: Some("i-1".into()),
            desired_status: Some(DesiredStatusArg::Stopped)
        }
    );
    assert_eq!(
        command(&["describe-tasks", "t1", "t2"]),
        Command::DescribeTasks {
            ids: vec!["t1".into(), "t2".into()]
        }
    );
    assert_eq!(
        command(&["stop-task", "t1"]),
        Command::StopTask {
            id: "t1".into(),
            reason: None
        }
    );
    assert_eq!(
        command(&["stop-task", "t1", "--reason", "done"]),
        Command::StopTask {
            id: "t1".into(),
            reason: Some("done".into())
        }
    );
    assert_eq!(
        usage_error(&["describe-tasks"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn instance_commands_and_aliases() {
    assert_eq!(
        command(&["list-container-instances"]),
        Command::ListContainerInstances
    );
    assert_eq!(command(&["instances"]), Command::ListContainerInstances);
    assert_eq!(
        command(&["describe-container-instances", "i-1"]),
        Command::DescribeContainerInstances {
            ids: vec!["i-1".into()]
        }
    );
    assert_eq!(
        command(&["deregister-container-instance", "i-1"]),
        Command::DeregisterContainerInstance {
            id: "i-1".into(),
            force: false
        }
    );
    assert_eq!(
        command(&[
            "create-client-certificate",
            "--name",
            "alice@ops",
            "--role",
            "admin",
            "--ttl",
            "7d",
            "--cert-out",
            "a.crt",
            "--key-out",
            "a.key"
        ]),
        Command::CreateClientCertificate {
            name: "alice@ops".into(),
            role: "admin".into(),
            ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            cert_out: "a.crt".into(),
            key_out: "a.key".into(),
        }
    );
    assert_eq!(
        command(&["list-client-certificates"]),
        Command::ListClientCertificates
    );
    assert_eq!(
        command(&["revoke-client-certificate", "0a1b"]),
        Command::RevokeClientCertificate {
            serial: "0a1b".into()
        }
    );
    assert_eq!(
        command(&["deregister-container-instance", "i-1", "--force"]),
        Command::DeregisterContainerInstance {
            id: "i-1".into(),
            force: true
        }
    );
}

#[test]
fn wait() {
    assert_eq!(
        command(&["wait", "tasks-running", "t1", "t2"]),
        Command::Wait {
            condition: WaitCondition::TasksRunning,
            ids: vec!["t1".into(), "t2".into()],
            timeout: Duration::from_secs(60)
        }
    );
    assert_eq!(
        command(&["wait", "tasks-stopped", "t1", "--timeout", "5"]),
        Command::Wait {
            condition: WaitCondition::TasksStopped,
            ids: vec!["t1".into()],
            timeout: Duration::from_secs(5)
        }
    );
    let Command::Wait { timeout, .. } =
        command(&["wait", "tasks-stopped", "t1", "--timeout", "1h30m"])
    else {
        panic!("not wait")
    };
    assert_eq!(timeout, Duration::from_secs(5400));
    assert_eq!(
        usage_error(&["wait", "tasks-gone", "t1"]),
        clap::error::ErrorKind::InvalidValue
    );
    assert_eq!(
        usage_error(&["wait", "tasks-running"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        usage_error(&["wait", "tasks-running", "t", "--timeout", "soon"]),
        clap::error::ErrorKind::ValueValidation
    );
}

#[test]
fn run_task_with_placement() {
    let Command::RunTask(run) = command(&[
        "run-task",
        "--task-definition",
        "web",
        "--placement-constraints",
        "type=distinctInstance",
        "type=memberOf,expression=\"attribute:ecs.availability-zone in [a, b]\"",
        "--placement-strategy",
        "type=spread,field=attribute:ecs.availability-zone",
        "type=binpack,field=memory",
    ]) else {
        panic!("not run-task")
    };
    let constraints: Vec<(&str, &str)> = run
        .placement_constraints
        .iter()
        .map(|c| (c.r#type.as_str(), c.expression.as_str()))
        .collect();
    assert_eq!(
        constraints,
        [
            ("distinctInstance", ""),
            ("memberOf", "attribute:ecs.availability-zone in [a, b]")
        ]
    );
    let strategies: Vec<(&str, &str)> = run
        .placement_strategy
        .iter()
        .map(|s| (s.r#type.as_str(), s.field.as_str()))
        .collect();
    assert_eq!(
        strategies,
        [
            ("spread", "attribute:ecs.availability-zone"),
            ("binpack", "memory")
        ]
    );
    let err = Args::try_parse_from([
        "berthctl",
        "run-task",
        "--task-definition",
        "web",
        "--placement-constraints",
        "type=memberOf,expression=\"attribute:zone in a\"",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("at column 19"), "{err}");
}
