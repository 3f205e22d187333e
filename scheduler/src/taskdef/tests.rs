//! Unit tests of task-definition parsing: the exact messages of every kind of problem.

use super::convert::parse_size;
use super::*;

/// The message of a definition that must be refused.
fn refused(json: &str) -> String {
    match parse(json) {
        Ok(def) => panic!("accepted: {def:?}"),
        Err(error) => error.to_string(),
    }
}

/// The problems' messages of a definition that must be refused as invalid.
fn problems(json: &str) -> Vec<String> {
    match parse(json) {
        Err(TaskDefError::Invalid { problems }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

const MINIMAL: &str = r#"{"family": "web", "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 128}]}"#;

#[test]
fn minimal_definition() {
    let def = parse(MINIMAL).unwrap();
    assert_eq!(def.family, "web");
    assert_eq!(def.revision, 0);
    assert_eq!(def.registered_at, None);
    assert_eq!(def.source_json, MINIMAL);
    assert_eq!(def.network_mode, "bridge");
    assert_eq!((def.cpu, def.memory_mib), (0, 0));
    let c = &def.containers[0];
    assert_eq!(
        (c.name.as_str(), c.image.as_str(), c.memory_mib),
        ("app", "nginx", 128)
    );
    assert!(c.essential, "essential defaults to true");
    assert!(!c.entry_point_set && !c.command_set);
}

#[test]
fn every_supported_and_ignored_field() {
    let json = r#"{
        "family": "full_family-1",
        "cpu": "1 vCPU",
        "memory": "1 GB",
        "networkMode": "host",
        "pidMode": "host",
        "ipcMode": "none",
        "executionRoleArn": "arn:aws:iam::1:role/x",
        "taskRoleArn": "arn:aws:iam::1:role/y",
        "requiresCompatibilities": ["EC2"],
        "tags": [{"key": "k", "value": "v"}],
        "containerDefinitions": [
            {
                "name": "app",
                "image": "registry.example.com/app:1.2",
                "cpu": 512,
                "memory": 512,
                "memoryReservation": 256,
                "essential": true,
                "entryPoint": [],
                "command": ["serve", "--port", "80"],
                "environment": [{"name": "A", "value": "1"}, {"name": "B"}],
                "workingDirectory": "/srv",
                "user": "1000:1000",
                "stopTimeout": 120,
                "readonlyRootFilesystem": true,
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                "hostname": "app-host",
                "dockerLabels": {"com.example.team": "web"},
                "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}}
            },
            {"name": "sidecar", "image": "busybox", "essential": false, "memoryReservation": 64,
             "cpu": null, "command": null}
        ]
    }"#;
    let def = parse(json).unwrap();
    assert_eq!(
        (def.cpu, def.memory_mib, def.network_mode.as_str()),
        (1024, 1024, "host")
    );
    assert_eq!(
        (def.pid_mode.as_str(), def.ipc_mode.as_str()),
        ("host", "none")
    );
    let app = &def.containers[0];
    assert_eq!(
        (app.cpu, app.memory_mib, app.memory_reservation_mib),
        (512, 512, 256)
    );
    // An empty entryPoint is absent, as on ECS: the image's own entrypoint runs.
    assert!(app.essential && !app.entry_point_set && app.entry_point.is_empty());
    assert!(app.command_set);
    assert_eq!(app.command, ["serve", "--port", "80"]);
    assert_eq!(app.environment.get("A").map(String::as_str), Some("1"));
    assert_eq!(app.environment.get("B").map(String::as_str), Some(""));
    assert_eq!(
        (app.working_directory.as_str(), app.user.as_str()),
        ("/srv", "1000:1000")
    );
    assert_eq!(app.stop_timeout_seconds, 120);
    assert!(app.readonly_root_filesystem);
    assert_eq!(
        app.ulimits,
        [proto::Ulimit {
            name: "nofile".into(),
            soft_limit: 1024,
            hard_limit: 4096
        }]
    );
    assert_eq!(app.hostname, "app-host");
    assert_eq!(
        app.log_configuration.as_ref().map(|l| l.max_size_bytes),
        Some(1 << 20)
    );
    assert_eq!(
        app.docker_labels
            .get("com.example.team")
            .map(String::as_str),
        Some("web")
    );
    let sidecar = &def.containers[1];
    assert!(!sidecar.essential && !sidecar.command_set);
}

#[test]
fn task_sizes() {
    let sized = |cpu: &str, memory: &str| {
        let json = format!(
            r#"{{"family":"f","cpu":{cpu},"memory":{memory},"containerDefinitions":[{{"name":"a","image":"i"}}]}}"#
        );
        parse(&json)
            .map(|d| (d.cpu, d.memory_mib))
            .map_err(|e| e.to_string())
    };
    assert_eq!(sized("256", "512"), Ok((256, 512)));
    assert_eq!(sized("\"256\"", "\"512\""), Ok((256, 512)));
    assert_eq!(sized("\"0.25 vCPU\"", "\"0.5GB\""), Ok((256, 512)));
    assert_eq!(sized("\"2vcpu\"", "\"2 gb\""), Ok((2048, 2048)));
    assert_eq!(
        sized("\"lots\"", "512"),
        Err(r#"cpu: expected CPU units as an integer or a string like "256" or "1 vCPU", found the string "lots""#
            .into())
    );
    assert_eq!(
        sized("256", "1.5"),
        Err(r#"memory: expected MiB as an integer or a string like "512" or "1 GB", found the number 1.5"#.into())
    );
    assert_eq!(
        sized("256", "\"0\""),
        Err("memory: 0 MiB is less than the minimum of 6 MiB".into())
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let json = "{\n  \"family\": \"web\",\n  \"containerDefinitions\": [\n    {\"name\": \"a\" \"image\": \"b\"}\n  ]\n}";
    assert_eq!(
        refused(json),
        "task definition is not valid JSON: expected `,` or `}` at line 4 column 18"
    );
    assert_eq!(
        refused(""),
        "task definition is not valid JSON: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        parse("{\"family\": 1,"),
        Err(TaskDefError::Syntax {
            reason: "EOF while parsing a value".into(),
            line: 1,
            column: 13
        })
    );
}

#[test]
fn top_level_must_be_an_object() {
    assert_eq!(
        refused("[]"),
        "task definition must be a JSON object, found an array"
    );
    assert_eq!(
        refused("null"),
        "task definition must be a JSON object, found null"
    );
}

#[test]
fn unknown_fields_are_refused_with_a_suggestion() {
    let json = r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memroy":128}]}"#;
    assert_eq!(
        problems(json),
        ["unknown field `memroy` at containerDefinitions[0]: did you mean `memory`?"]
    );
    assert_eq!(
        refused(r#"{"famly":"f","containerDefinitions":[]}"#),
        "task definition has 2 problems:\n  unknown field `famly`: did you mean `family`?\n  missing field `family`"
    );
    assert_eq!(
        refused(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":6,"zzz":1}]}"#
        ),
        "unknown field `zzz` at containerDefinitions[0]"
    );
    assert_eq!(
        refused(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":6,
                "ulimits":[{"name":"nofile","soft":1,"hardLimit":2}]}]}"#
        ),
        "task definition has 2 problems:\n  \
         unknown field `soft` at containerDefinitions[0].ulimits[0]: did you mean `softLimit`?\n  \
         missing field `softLimit` at containerDefinitions[0].ulimits[0]"
    );
    assert_eq!(
        refused(r#"{"family":"f","container_definitions":[]}"#),
        "task definition has 2 problems:\n  \
         unknown field `container_definitions`: did you mean `containerDefinitions`?\n  \
         missing field `containerDefinitions`"
    );
}

#[test]
fn unsupported_fields_are_refused_by_name_and_path() {
    let json = r#"{"family":"f","enableFaultInjection":true,"containerDefinitions":[
        {"name":"a","image":"i","memory":64,"versionConsistency":"enabled"},
        {"name":"b","image":"i","memory":64,"firelensConfiguration":{"type":"fluentbit"},
         "credentialSpecs":["x"]}]}"#;
    let found = problems(json);
    let names = [
        "field `versionConsistency` at containerDefinitions[0] is not supported by Berth: ",
        "field `credentialSpecs` at containerDefinitions[1] is not supported by Berth: ",
        "field `firelensConfiguration` at containerDefinitions[1] is not supported by Berth: ",
        "field `enableFaultInjection` is not supported by Berth: ",
    ];
    assert_eq!(found.len(), names.len(), "{found:?}");
    for (problem, name) in found.iter().zip(names) {
        assert!(
            problem.starts_with(name),
            "{problem:?} does not start with {name:?}"
        );
    }
    match parse(json) {
        Err(TaskDefError::Invalid { problems }) => {
            assert_eq!(
                problems[0].path(),
                "containerDefinitions[0].versionConsistency"
            );
            assert_eq!(problems[3].path(), "enableFaultInjection");
        }
        other => panic!("{other:?}"),
    }
    // Absent (null), empty and false ask for nothing.
    assert!(parse(r#"{"family":"f","pidMode":null,"enableFaultInjection":false,"containerDefinitions":[{"name":"a","image":"i","memory":6,"secrets":[]}]}"#).is_ok());
}

#[test]
fn missing_required_fields_are_named_with_their_path() {
    assert_eq!(
        problems(
            r#"{"containerDefinitions":[{"memory":64}, {"name":"b","image":null,"memory":64}]}"#
        ),
        [
            "missing field `name` at containerDefinitions[0]",
            "missing field `image` at containerDefinitions[0]",
            "missing field `image` at containerDefinitions[1]",
            "missing field `family`",
        ]
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    let json = r#"{"family":7,"networkMode":["host"],"containerDefinitions":[{"name":"a","image":"i",
        "cpu":-1,"memory":"128","essential":"yes","command":"serve","entryPoint":["sh",1],
        "environment":{"A":"1"},"stopTimeout":4294967296,"dockerLabels":{"a.b":1,"ok":true},
        "ulimits":["nofile"]}]}"#;
    assert_eq!(
        problems(json),
        [
            "containerDefinitions[0].command: expected an array of strings, found the string \"serve\"",
            "containerDefinitions[0].cpu: expected an integer from 0 to 4294967295, found the number -1",
            "containerDefinitions[0].dockerLabels[\"a.b\"]: expected a string, found the number 1",
            "containerDefinitions[0].dockerLabels.ok: expected a string, found the boolean true",
            "containerDefinitions[0].entryPoint[1]: expected a string, found the number 1",
            "containerDefinitions[0].environment: expected an array of objects, found an object",
            "containerDefinitions[0].essential: expected true or false, found the string \"yes\"",
            "containerDefinitions[0].memory: expected a non-negative integer, found the string \"128\"",
            "containerDefinitions[0].stopTimeout: expected an integer from 0 to 4294967295, found the number 4294967296",
            "containerDefinitions[0].ulimits[0]: expected an object, found the string \"nofile\"",
            "family: expected a string, found the number 7",
            "networkMode: expected a string, found an array",
        ]
    );
    assert_eq!(
        refused(r#"{"family":"f","containerDefinitions":{}}"#),
        "containerDefinitions: expected an array of objects, found an object"
    );
}

#[test]
fn semantic_problems_are_all_reported_with_paths() {
    let json = r#"{"family":"my family","cpu":"256","memory":"512","networkMode":"nat","containerDefinitions":[
        {"name":"app","image":"","cpu":200,"memory":1024,"essential":false,"stopTimeout":121,
         "environment":[{"name":"A","value":"1"},{"name":"A","value":"2"},{"name":""}],
         "ulimits":[{"name":"nofile","softLimit":10,"hardLimit":5},{"name":"nofiles","softLimit":1,"hardLimit":1},
                    {"name":"nofile","softLimit":1,"hardLimit":1}]},
        {"name":"app","image":"i","cpu":100,"memory":4,"memoryReservation":5,"essential":false},
        {"name":"bad.name","image":"i","memory":64,"memoryReservation":128,"essential":false}]}"#;
    assert_eq!(
        problems(json),
        [
            "containerDefinitions[0].environment[1].name: `A` is already set by environment[0]",
            "containerDefinitions[0].environment[2].name: must not be empty",
            "family: `my family` contains ` `: use only letters, digits, hyphens and underscores",
            "networkMode: `nat` is not a network mode: use awsvpc, bridge, host or none",
            "containerDefinitions: at least one container must be essential",
            "containerDefinitions[0].image: must not be empty",
            "containerDefinitions[0].memory: 1024 MiB is more than the task's memory of 512 MiB",
            "containerDefinitions[0].stopTimeout: 121 seconds is more than the maximum of 120",
            "containerDefinitions[0].ulimits[0]: softLimit 10 is more than hardLimit 5",
            "containerDefinitions[0].ulimits[1].name: `nofiles` is not a ulimit: did you mean `nofile`?",
            "containerDefinitions[0].ulimits[2].name: `nofile` is already set by ulimits[0]",
            "containerDefinitions[1].memory: 4 MiB is less than the minimum of 6 MiB",
            "containerDefinitions[1].memoryReservation: 5 MiB is less than the minimum of 6 MiB",
            "containerDefinitions[1].memoryReservation: 5 MiB is more than the container's memory of 4 MiB",
            "containerDefinitions[1].name: `app` is already the name of containerDefinitions[0]",
            "containerDefinitions[2].name: `bad.name` contains `.`: use only letters, digits, hyphens and underscores",
            "containerDefinitions[2].memoryReservation: 128 MiB is more than the container's memory of 64 MiB",
            "cpu: the containers reserve 300 CPU units in total, more than the task's 256",
            "memory: the containers reserve 1157 MiB in total, more than the task's 512 MiB",
        ]
    );
}

#[test]
fn names_and_containers() {
    let long = "x".repeat(256);
    assert_eq!(
        refused(&format!(
            r#"{{"family":"{long}","containerDefinitions":[{{"name":"a","image":"i","memory":6}}]}}"#
        )),
        "family: is 256 characters long; the maximum is 255"
    );
    assert!(
        parse(&format!(
            r#"{{"family":"{}","containerDefinitions":[{{"name":"a","image":"i","memory":6}}]}}"#,
            "x".repeat(255)
        ))
        .is_ok()
    );
    assert_eq!(
        refused(r#"{"family":"","containerDefinitions":[]}"#),
        "task definition has 2 problems:\n  family: must not be empty\n  \
         containerDefinitions: at least one container is required"
    );
    assert_eq!(
        refused(r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":0}]}"#),
        "task definition has 2 problems:\n  containerDefinitions[0].memory: 0 MiB is less than the minimum of 6 MiB\n  \
         containerDefinitions[0]: set `memory` or `memoryReservation`, or the task-level `memory`"
    );
    // With task memory, containers need none of their own.
    assert!(
        parse(r#"{"family":"f","memory":"128","containerDefinitions":[{"name":"a","image":"i"}]}"#)
            .is_ok()
    );
    assert_eq!(
        refused(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":6,
                "ulimits":[{"name":"stacks","softLimit":1,"hardLimit":1}]}]}"#
        ),
        "containerDefinitions[0].ulimits[0].name: `stacks` is not a ulimit: did you mean `stack`?"
    );
    assert_eq!(
        refused(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":6,
                "ulimits":[{"name":"bogusness","softLimit":1,"hardLimit":1}]}]}"#
        ),
        "containerDefinitions[0].ulimits[0].name: `bogusness` is not a ulimit: use one of core, cpu, data, fsize, \
         locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack"
    );
}

#[test]
fn tables_and_serde_structs_agree() {
    // Every supported and ignored field in the tables deserializes into the serde structs
    // (covered field by field in `every_supported_and_ignored_field`), and no name is listed
    // twice.
    for table in [
        fields::TASK_DEFINITION,
        fields::CONTAINER_DEFINITION,
        fields::KEY_VALUE_PAIR,
        fields::ULIMIT,
        fields::CONTAINER_DEPENDENCY,
        fields::RESTART_POLICY,
        fields::LOG_CONFIGURATION,
        fields::VOLUME,
        fields::HOST_VOLUME,
        fields::DOCKER_VOLUME_CONFIGURATION,
        fields::MOUNT_POINT,
        fields::VOLUME_FROM,
        fields::HEALTH_CHECK,
        fields::SYSTEM_CONTROL,
        fields::HOST_ENTRY,
        fields::LINUX_PARAMETERS,
        fields::KERNEL_CAPABILITIES,
        fields::TMPFS,
        fields::DEVICE,
        fields::ENVIRONMENT_FILE,
        fields::SECRET,
        fields::REPOSITORY_CREDENTIALS,
        fields::PORT_MAPPING,
        fields::BERTH,
    ] {
        let mut names: Vec<_> = table.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a field is listed twice");
    }
    let supported = |table: &[fields::Field]| {
        table
            .iter()
            .filter(|f| !matches!(f.support, fields::Support::Unsupported(_)))
            .count()
    };
    // Keep in step with ecs::TaskDefinition and ecs::ContainerDefinition.
    assert_eq!(supported(fields::TASK_DEFINITION), 24);
    assert_eq!(supported(fields::CONTAINER_DEFINITION), 38);
    assert_eq!(supported(fields::LINUX_PARAMETERS), 7);
    assert_eq!(supported(fields::PORT_MAPPING), 5);
}

/// A definition of containers given as (name, essential, dependsOn JSON).
fn with_deps(containers: &[(&str, bool, &str)]) -> String {
    let list: Vec<String> = containers
        .iter()
        .map(|(name, essential, deps)| {
            format!(
                r#"{{"name":"{name}","image":"busybox","memory":64,"essential":{essential},"dependsOn":{deps}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"family":"f","containerDefinitions":[{}]}}"#,
        list.join(",")
    )
}

#[test]
fn depends_on_and_start_timeout_are_carried() {
    let json = r#"{"family":"f","containerDefinitions":[
        {"name":"init","image":"busybox","memory":64,"essential":false,"startTimeout":30},
        {"name":"app","image":"busybox","memory":64,
         "dependsOn":[{"containerName":"init","condition":"SUCCESS"}]}]}"#;
    let def = parse(json).unwrap();
    assert_eq!(def.containers[0].start_timeout_seconds, 30);
    assert_eq!(
        def.containers[1].depends_on,
        [proto::ContainerDependency {
            container_name: "init".into(),
            condition: proto::DependencyCondition::Success as i32,
        }]
    );
}

#[test]
fn dependency_problems_are_reported_with_their_paths() {
    let json = with_deps(&[
        ("db", false, "[]"),
        (
            "app",
            true,
            r#"[{"containerName":"dbb","condition":"START"},{"containerName":"app","condition":"START"},
               {"containerName":"db","condition":"READY"},{"containerName":"web","condition":"SUCCESS"},
               {"containerName":"db","condition":"HEALTHY"}]"#,
        ),
        (
            "web",
            true,
            r#"[{"containerName":"db","condition":"COMPLETE"}]"#,
        ),
    ]);
    assert_eq!(
        problems(&json),
        [
            "containerDefinitions[1].dependsOn[2].condition: `READY` is not a dependency condition: use one of START, COMPLETE, SUCCESS, HEALTHY",
            "containerDefinitions[1].dependsOn[0].containerName: no container named \"dbb\" in this task definition",
            "containerDefinitions[1].dependsOn[1].containerName: container \"app\" cannot depend on itself",
            "containerDefinitions[1].dependsOn[3].condition: condition SUCCESS needs container web to be non-essential (\"essential\": false), as on ECS",
            "containerDefinitions[1].dependsOn[4].condition: condition HEALTHY needs a healthCheck on container db: add one or use START",
        ]
    );
}

#[test]
fn a_dependency_cycle_is_named() {
    let json = with_deps(&[
        ("solo", true, "[]"),
        ("a", true, r#"[{"containerName":"b","condition":"START"}]"#),
        ("b", true, r#"[{"containerName":"c","condition":"START"}]"#),
        ("c", true, r#"[{"containerName":"a","condition":"START"}]"#),
    ]);
    assert_eq!(
        problems(&json),
        [
            "containerDefinitions[3].dependsOn[0].containerName: dependsOn forms a cycle: a → b → c → a"
        ]
    );
}

#[test]
fn start_timeout_is_within_ecs_bounds() {
    for (value, ok) in [(1, false), (2, true), (120, true), (121, false), (0, false)] {
        let json = format!(
            r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"i","memory":64,"startTimeout":{value}}}]}}"#
        );
        match parse(&json) {
            Ok(_) => assert!(ok, "{value} accepted"),
            Err(e) => {
                assert!(!ok, "{value} refused: {e}");
                assert_eq!(
                    e.to_string(),
                    format!(
                        "containerDefinitions[0].startTimeout: {value} seconds is outside ECS's range of 2 to 120 seconds"
                    )
                );
            }
        }
    }
    assert_eq!(
        problems(r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,"dependsOn":[{"containerName":"b"}]}]}"#).len(),
        1,
        "condition is required"
    );
}

/// A one-container definition with this restartPolicy JSON.
fn with_restart_policy(policy: &str) -> String {
    format!(
        r#"{{"family":"f","containerDefinitions":[{{"name":"app","image":"busybox","memory":64,"restartPolicy":{policy}}}]}}"#
    )
}

#[test]
fn restart_policy_is_carried_with_ecs_default_period() {
    let def = parse(&with_restart_policy(
        r#"{"enabled":true,"ignoredExitCodes":[0,3],"restartAttemptPeriod":60}"#,
    ))
    .unwrap();
    assert_eq!(
        def.containers[0].restart_policy,
        Some(proto::RestartPolicy {
            enabled: true,
            ignored_exit_codes: vec![0, 3],
            restart_attempt_period_seconds: 60,
        })
    );
    let def = parse(&with_restart_policy(r#"{"enabled":false}"#)).unwrap();
    assert_eq!(
        def.containers[0].restart_policy,
        Some(proto::RestartPolicy {
            enabled: false,
            ignored_exit_codes: vec![],
            restart_attempt_period_seconds: 300,
        })
    );
    assert_eq!(parse(MINIMAL).unwrap().containers[0].restart_policy, None);
}

#[test]
fn restart_policy_problems_are_reported_with_their_paths() {
    let codes: Vec<String> = (0..51).map(|c| c.to_string()).collect();
    let json = with_restart_policy(&format!(
        r#"{{"enabled":true,"ignoredExitCodes":[{},256],"restartAttemptPeriod":59}}"#,
        codes.join(",")
    ));
    assert_eq!(
        problems(&json),
        [
            "containerDefinitions[0].restartPolicy.ignoredExitCodes: 52 exit codes are more than ECS's maximum of 50",
            "containerDefinitions[0].restartPolicy.ignoredExitCodes[51]: 256 is not an exit code: use 0 to 255",
            "containerDefinitions[0].restartPolicy.restartAttemptPeriod: 59 seconds is outside ECS's range of 60 to 1800 seconds",
        ]
    );
    assert_eq!(
        problems(&with_restart_policy(
            r#"{"enabled":true,"restartAttemptPeriod":1801}"#
        )),
        [
            "containerDefinitions[0].restartPolicy.restartAttemptPeriod: 1801 seconds is outside ECS's range of 60 to 1800 seconds"
        ]
    );
    assert!(
        parse(&with_restart_policy(
            r#"{"enabled":true,"restartAttemptPeriod":1800}"#
        ))
        .is_ok()
    );
}

#[test]
fn restart_policy_shape_is_checked() {
    let p = problems(&with_restart_policy(
        r#"{"ignoredExitCodes":[-1],"restartAttemptPeriods":60}"#,
    ));
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p.iter()
            .any(|m| m.contains("restartPolicy.ignoredExitCodes[0]")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("restartAttemptPeriods")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("missing field `enabled`")),
        "{p:?}"
    );
    let p = problems(&with_restart_policy("true"));
    assert_eq!(
        p,
        ["containerDefinitions[0].restartPolicy: expected an object, found the boolean true"]
    );
}

/// A one-container definition with this logConfiguration JSON.
fn with_log_configuration(config: &str) -> String {
    format!(
        r#"{{"family":"f","containerDefinitions":[{{"name":"app","image":"busybox","memory":64,"logConfiguration":{config}}}]}}"#
    )
}

/// A definition with the given `volumes` JSON and containers given as (name, extra JSON members).
fn with_volumes(volumes: &str, containers: &[(&str, &str)]) -> String {
    let containers: Vec<String> = containers
        .iter()
        .map(|(name, extra)| {
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(", {extra}")
            };
            format!(r#"{{"name": "{name}", "image": "busybox", "memory": 64{extra}}}"#)
        })
        .collect();
    format!(
        r#"{{"family": "f", "volumes": {volumes}, "containerDefinitions": [{}]}}"#,
        containers.join(", ")
    )
}

fn with_health_check(check: &str) -> String {
    format!(
        r#"{{"family":"f","containerDefinitions":[{{"name":"app","image":"busybox","memory":64,"healthCheck":{check}}}]}}"#
    )
}

#[test]
fn json_file_log_configuration_is_carried() {
    let def = parse(&with_log_configuration(
        r#"{"logDriver":"json-file","options":{"max-size":"512k","max-file":"3"}}"#,
    ))
    .unwrap();
    assert_eq!(
        def.containers[0].log_configuration,
        Some(proto::LogConfiguration {
            log_driver: "json-file".into(),
            max_size_bytes: 512 * 1024,
            max_files: 3,
            options: Default::default(),
        })
    );
    let def = parse(&with_log_configuration(r#"{"logDriver":"json-file"}"#)).unwrap();
    let l = def.containers[0].log_configuration.clone().unwrap();
    assert_eq!(
        (l.max_size_bytes, l.max_files),
        (0, 0),
        "defaults are the agent's"
    );
}

#[test]
fn docker_sizes_parse() {
    for (text, bytes) in [
        ("10m", 10 << 20),
        ("512k", 512 << 10),
        ("1g", 1 << 30),
        ("2048", 2048),
        ("1.5k", 1536),
        ("10MB", 10 << 20),
        ("10 MiB", 10 << 20),
        ("3Kb", 3 << 10),
    ] {
        assert_eq!(parse_size(text), Some(bytes), "{text}");
    }
    for bad in ["", "m", "-1", "10x", "1..5k", ".5k", "1e3", "10mm"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn other_log_drivers_options_and_secrets_are_refused_by_name() {
    assert_eq!(
        refused(&with_log_configuration(
            r#"{"logDriver":"splunk","options":{"splunk-url":"u"}}"#
        )),
        "task definition has 2 problems:\n  \
         containerDefinitions[0].logConfiguration.logDriver splunk is not supported by Berth; supported: json-file, awslogs (`berthctl logs` reads the json-file copy that every driver keeps)\n  \
         containerDefinitions[0].logConfiguration.options[\"splunk-url\"]: option splunk-url is not supported by Berth; supported: max-size, max-file"
    );
    assert_eq!(
        problems(&with_log_configuration(
            r#"{"logDriver":"json-file","options":{"max-size":"0","max-file":"0","compress":"true"}}"#
        )),
        [
            "containerDefinitions[0].logConfiguration.options.compress: option compress is not supported by Berth; supported: max-size, max-file",
            "containerDefinitions[0].logConfiguration.options[\"max-file\"]: `0` is not a file count: use 1 to 100",
            "containerDefinitions[0].logConfiguration.options[\"max-size\"]: `0` is not a size: use a positive number of bytes with an optional k, m or g suffix, e.g. 10m",
        ]
    );
    let secret = problems(&with_log_configuration(
        r#"{"logDriver":"json-file","secretOptions":[{"name":"a","valueFrom":"b"}]}"#,
    ));
    assert_eq!(secret.len(), 1);
    assert!(
        secret[0].contains("secretOptions") && secret[0].contains("not supported by Berth"),
        "{secret:?}"
    );
    let missing = problems(&with_log_configuration(r#"{"options":{"max-file":"2"}}"#));
    assert!(missing[0].contains("logDriver"), "{missing:?}");
}

#[test]
fn awslogs_options_are_carried_and_checked() {
    let def = parse(&with_log_configuration(
        r#"{"logDriver":"awslogs","options":{"awslogs-group":"/ecs/app","awslogs-region":"eu-west-1",
            "awslogs-stream-prefix":"ecs","awslogs-create-group":"true","mode":"non-blocking",
            "max-buffer-size":"2m","awslogs-multiline-pattern":"^INFO"}}"#,
    ))
    .unwrap();
    let l = def.containers[0].log_configuration.clone().unwrap();
    assert_eq!(l.log_driver, "awslogs");
    assert_eq!(l.options["awslogs-group"], "/ecs/app");
    assert_eq!(l.options["max-buffer-size"], (2u64 << 20).to_string());
    assert_eq!(l.options["mode"], "non-blocking");
    assert_eq!(l.options.len(), 7);

    assert_eq!(
        problems(&with_log_configuration(
            r#"{"logDriver":"awslogs","options":{"awslogs-stream-prefix":"a:b","mode":"fast",
                "awslogs-create-group":"yes","max-buffer-size":"0","awslogs-multiline-pattern":"(",
                "awslogs-datetime-format":"%Q","awslogs-endpoint":"x","max-size":"1m"}}"#
        )),
        [
            "containerDefinitions[0].logConfiguration.options[\"awslogs-group\"]: required by the awslogs driver (the CloudWatch Logs group and its region)",
            "containerDefinitions[0].logConfiguration.options[\"awslogs-region\"]: required by the awslogs driver (the CloudWatch Logs group and its region)",
            "containerDefinitions[0].logConfiguration.options[\"awslogs-create-group\"]: `yes` is not a boolean: use true or false",
            "containerDefinitions[0].logConfiguration.options[\"awslogs-datetime-format\"]: `%Q` is not a supported directive; supported: %a %A %b %B %d %f %H %I %j %L %m %M %p %S %U %w %W %y %Y %z %Z %%",
            "containerDefinitions[0].logConfiguration.options[\"awslogs-endpoint\"]: option awslogs-endpoint is not supported by Berth's awslogs driver; supported: awslogs-group, awslogs-region, awslogs-stream-prefix, awslogs-create-group, awslogs-datetime-format, awslogs-multiline-pattern, mode, max-buffer-size",
            "containerDefinitions[0].logConfiguration.options[\"awslogs-multiline-pattern\"]: `(` is not a regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group",
            "containerDefinitions[0].logConfiguration.options[\"awslogs-stream-prefix\"]: `a:b` is not a stream prefix: use at most 400 characters without : or *",
            "containerDefinitions[0].logConfiguration.options[\"max-buffer-size\"]: `0` is not a size: use a positive number of bytes with an optional k, m or g suffix, e.g. 1m",
            "containerDefinitions[0].logConfiguration.options[\"max-size\"]: option max-size is not supported by Berth's awslogs driver; supported: awslogs-group, awslogs-region, awslogs-stream-prefix, awslogs-create-group, awslogs-datetime-format, awslogs-multiline-pattern, mode, max-buffer-size",
            "containerDefinitions[0].logConfiguration.options.mode: `fast` is not a mode: use blocking or non-blocking",
        ]
    );
    let both = problems(&with_log_configuration(
        r#"{"logDriver":"awslogs","options":{"awslogs-group":"g","awslogs-region":"us-east-1",
            "awslogs-datetime-format":"%Y-%m-%d","awslogs-multiline-pattern":"^x"}}"#,
    ));
    assert_eq!(
        both,
        [
            "containerDefinitions[0].logConfiguration.options: awslogs-datetime-format and awslogs-multiline-pattern cannot both be set: keep the one that marks where an entry starts"
        ]
    );
}

#[test]
fn volumes_mount_points_and_volumes_from_are_carried() {
    let def = parse(&with_volumes(
        r#"[{"name": "data", "host": {"sourcePath": "/srv/data"}},
            {"name": "scratch"},
            {"name": "cache", "host": {}},
            {"name": "fast", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
             "autoprovision": false, "labels": {"team": "web"},
             "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,mode=1777,noexec"}}},
            {"name": "plain", "dockerVolumeConfiguration": {}}]"#,
        &[
            (
                "app",
                r#""mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true},
                                   {"sourceVolume": "fast", "containerPath": "/fast"}]"#,
            ),
            (
                "side",
                r#""volumesFrom": [{"sourceContainer": "app", "readOnly": true}, {"sourceContainer": "other"}]"#,
            ),
            ("other", ""),
        ],
    ))
    .unwrap();
    assert_eq!(def.volumes.len(), 5);
    assert_eq!(
        def.volumes[0].host.as_ref().map(|h| h.source_path.as_str()),
        Some("/srv/data")
    );
    assert!(def.volumes[1].host.is_none() && def.volumes[1].docker_volume_configuration.is_none());
    // `"host": {}` asks for nothing: a task volume, as in ECS.
    assert!(def.volumes[2].host.is_none());
    let fast = def.volumes[3].docker_volume_configuration.as_ref().unwrap();
    assert_eq!(
        (fast.scope.as_str(), fast.driver.as_str()),
        ("task", "local")
    );
    assert_eq!(
        fast.driver_opts.get("o").map(String::as_str),
        Some("size=64m,mode=1777,noexec")
    );
    assert_eq!(fast.labels.get("team").map(String::as_str), Some("web"));
    // `{}` asks for nothing: a task volume, as ECS's defaults (scope task, driver local) are.
    assert!(def.volumes[4].docker_volume_configuration.is_none());
    assert_eq!(
        def.containers[0].mount_points,
        [
            proto::MountPoint {
                source_volume: "data".into(),
                container_path: "/data".into(),
                read_only: true
            },
            proto::MountPoint {
                source_volume: "fast".into(),
                container_path: "/fast".into(),
                read_only: false
            }
        ]
    );
    assert_eq!(
        def.containers[1].volumes_from,
        [
            proto::VolumeFrom {
                source_container: "app".into(),
                read_only: true
            },
            proto::VolumeFrom {
                source_container: "other".into(),
                read_only: false
            }
        ]
    );
}

#[test]
fn health_check_is_carried_with_ecs_defaults() {
    let def = parse(&with_health_check(
        r#"{"command":["CMD-SHELL","test -f /ready"]}"#,
    ))
    .unwrap();
    assert_eq!(
        def.containers[0].health_check,
        Some(proto::HealthCheck {
            command: vec!["CMD-SHELL".into(), "test -f /ready".into()],
            interval_seconds: 30,
            timeout_seconds: 5,
            retries: 3,
            start_period_seconds: 0,
        })
    );
    let def = parse(&with_health_check(
        r#"{"command":["CMD","/bin/true"],"interval":5,"timeout":2,"retries":1,"startPeriod":300}"#,
    ))
    .unwrap();
    assert_eq!(
        def.containers[0].health_check,
        Some(proto::HealthCheck {
            command: vec!["CMD".into(), "/bin/true".into()],
            interval_seconds: 5,
            timeout_seconds: 2,
            retries: 1,
            start_period_seconds: 300,
        })
    );
    let upper = parse(&with_health_check(
        r#"{"command":["CMD","true"],"interval":300,"timeout":60,"retries":10,"startPeriod":0}"#,
    ));
    assert!(upper.is_ok(), "{upper:?}");
    assert_eq!(parse(MINIMAL).unwrap().containers[0].health_check, None);
}

#[test]
fn health_check_problems_are_reported_with_their_paths() {
    assert_eq!(
        problems(&with_health_check(
            r#"{"command":["curl","-f","http://localhost"],"interval":4,"timeout":61,"retries":0,"startPeriod":301}"#
        )),
        [
            "containerDefinitions[0].healthCheck.command[0]: `curl` is not how a health check command starts: use [\"CMD\", program, args...] or [\"CMD-SHELL\", command]",
            "containerDefinitions[0].healthCheck.interval: 4 seconds is outside ECS's range of 5 to 300 seconds",
            "containerDefinitions[0].healthCheck.timeout: 61 seconds is outside ECS's range of 2 to 60 seconds",
            "containerDefinitions[0].healthCheck.retries: 0 is outside ECS's range of 1 to 10",
            "containerDefinitions[0].healthCheck.startPeriod: 301 seconds is outside ECS's range of 0 to 300 seconds",
        ]
    );
    assert_eq!(
        problems(&with_health_check(
            r#"{"command":[],"interval":301,"timeout":1,"retries":11}"#
        )),
        [
            "containerDefinitions[0].healthCheck.command: must not be empty: use [\"CMD\", program, args...] or [\"CMD-SHELL\", command]",
            "containerDefinitions[0].healthCheck.interval: 301 seconds is outside ECS's range of 5 to 300 seconds",
            "containerDefinitions[0].healthCheck.timeout: 1 seconds is outside ECS's range of 2 to 60 seconds",
            "containerDefinitions[0].healthCheck.retries: 11 is outside ECS's range of 1 to 10",
        ]
    );
    assert_eq!(
        problems(&with_health_check(r#"{"command":["CMD-SHELL"," "]}"#)),
        [
            "containerDefinitions[0].healthCheck.command: `CMD-SHELL` needs a command to run after it"
        ]
    );
    let shape = problems(&with_health_check(r#"{"interval":"5s"}"#));
    assert!(
        shape.iter().any(
            |p| p.contains("containerDefinitions[0].healthCheck.interval")
                && p.contains("expected")
        ),
        "{shape:?}"
    );
    assert!(
        shape.iter().any(|p| p.contains("missing field `command`")),
        "{shape:?}"
    );
}

#[test]
fn volume_problems_are_all_reported_with_their_paths() {
    let json = with_volumes(
        r#"[{"name": "data"}, {"name": "data"}, {"name": "bad name"},
            {"name": "rel", "host": {"sourcePath": "srv/data"}},
            {"name": "both", "host": {"sourcePath": "/srv"}, "dockerVolumeConfiguration": {"scope": "task"}},
            {"name": "shared", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true}},
            {"name": "odd", "dockerVolumeConfiguration": {"scope": "global", "driver": "rexray"}},
            {"name": "nfs", "dockerVolumeConfiguration": {"driverOpts": {"type": "nfs", "flavour": "x"}}},
            {"name": "half", "dockerVolumeConfiguration": {"driverOpts": {"o": "size=1m"}}},
            {"name": "tmp", "dockerVolumeConfiguration": {"driverOpts": {"type": "tmpfs", "o": "size=big,exec,bogus"}}}]"#,
        &[(
            "app",
            r#""mountPoints": [{"sourceVolume": "nope", "containerPath": "/a"},
                               {"sourceVolume": "data", "containerPath": "relative"},
                               {"sourceVolume": "data", "containerPath": "/a/../etc"},
                               {"sourceVolume": "data", "containerPath": "/"},
                               {"sourceVolume": "data", "containerPath": "/a/"}]"#,
        )],
    );
    assert_eq!(
        problems(&json),
        [
            "volumes[5].dockerVolumeConfiguration.autoprovision: autoprovision is only for scope `shared`, which Berth does not support: remove it or set it to false",
            "volumes[1].name: `data` is already the name of volumes[0]",
            "volumes[2].name: `bad name` contains ` `: use only letters, digits, hyphens and underscores",
            "volumes[3].host.sourcePath: `srv/data` must be an absolute path",
            "volumes[4]: set `host` or `dockerVolumeConfiguration`, not both",
            "volumes[5].dockerVolumeConfiguration.scope: scope `shared` is not supported by Berth yet: use `task`",
            "volumes[6].dockerVolumeConfiguration.scope: `global` is not a volume scope: use `task` (ECS also has `shared`, which Berth does not support yet)",
            "volumes[6].dockerVolumeConfiguration.driver: driver `rexray` is not supported by Berth: use `local`",
            "volumes[7].dockerVolumeConfiguration.driverOpts: `flavour` is not an option of the local driver: use type, device, o",
            "volumes[7].dockerVolumeConfiguration.driverOpts.type: type `nfs` is not supported by Berth: use `tmpfs`, or no driverOpts for a plain directory",
            "volumes[8].dockerVolumeConfiguration.driverOpts: `device` and `o` need `type`: set `type` to `tmpfs`, or remove them for a plain directory",
            "volumes[9].dockerVolumeConfiguration.driverOpts.o: `size=big` is not a tmpfs option: use ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime, nodiratime, diratime, relatime, norelatime, strictatime, or name=value with size, nr_blocks, nr_inodes, mode, uid, gid, huge, mpol (e.g. size=64m)",
            "volumes[9].dockerVolumeConfiguration.driverOpts.o: `bogus` is not a tmpfs option: use ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime, nodiratime, diratime, relatime, norelatime, strictatime, or name=value with size, nr_blocks, nr_inodes, mode, uid, gid, huge, mpol (e.g. size=64m)",
            "containerDefinitions[0].mountPoints[0].sourceVolume: no volume named \"nope\" in this task definition's volumes",
            "containerDefinitions[0].mountPoints[1].containerPath: `relative` must be an absolute path",
            "containerDefinitions[0].mountPoints[2].containerPath: `/a/../etc` must not contain `..`",
            "containerDefinitions[0].mountPoints[3].containerPath: cannot mount over the container's root `/`",
            "containerDefinitions[0].mountPoints[4].containerPath: `/a/` is already the containerPath of mountPoints[0]",
        ]
    );
    match parse(&json) {
        Err(TaskDefError::Invalid { problems }) => {
            assert_eq!(problems[1].path(), "volumes[1].name");
            assert_eq!(
                problems[13].path(),
                "containerDefinitions[0].mountPoints[0].sourceVolume"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn volume_shapes_are_checked_and_unsupported_kinds_refused_by_name() {
    let json = with_volumes(
        r#"[{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
            {"name": "x", "host": {"sourcePath": 3}, "dockerVolumeConfiguration": {"driverOpts": {"o": 1}}},
            {"host": {}}]"#,
        &[(
            "app",
            r#""mountPoints": [{"sourceVolume": "x"}], "volumesFrom": [{"readOnly": "yes"}]"#,
        )],
    );
    assert_eq!(
        problems(&json),
        [
            "missing field `containerPath` at containerDefinitions[0].mountPoints[0]",
            "containerDefinitions[0].volumesFrom[0].readOnly: expected true or false, found the string \"yes\"",
            "missing field `sourceContainer` at containerDefinitions[0].volumesFrom[0]",
            "field `efsVolumeConfiguration` at volumes[0] is not supported by Berth: mount the file system on the host and use a `host` volume with its `sourcePath`",
            "volumes[1].dockerVolumeConfiguration.driverOpts.o: expected a string, found the number 1",
            "volumes[1].host.sourcePath: expected a string, found the number 3",
            "missing field `name` at volumes[2]",
        ]
    );
}

#[test]
fn volumes_from_must_name_another_container_without_cycles() {
    let json = with_volumes(
        "[]",
        &[
            ("a", r#""volumesFrom": [{"sourceContainer": "b"}]"#),
            ("b", r#""volumesFrom": [{"sourceContainer": "c"}]"#),
            (
                "c",
                r#""volumesFrom": [{"sourceContainer": "a"}, {"sourceContainer": "c"}, {"sourceContainer": "zz"}]"#,
            ),
        ],
    );
    assert_eq!(
        problems(&json),
        [
            "containerDefinitions[2].volumesFrom[1].sourceContainer: container \"c\" cannot take volumes from itself",
            "containerDefinitions[2].volumesFrom[2].sourceContainer: no container named \"zz\" in this task definition",
            "containerDefinitions[2].volumesFrom[0].sourceContainer: volumesFrom forms a cycle: a → b → c → a",
        ]
    );
}

#[test]
fn a_healthy_dependency_needs_a_health_check() {
    let json = r#"{"family":"f","containerDefinitions":[
        {"name":"db","image":"busybox","memory":64,"healthCheck":{"command":["CMD","true"]}},
        {"name":"cache","image":"busybox","memory":64},
        {"name":"app","image":"busybox","memory":64,"dependsOn":[
            {"containerName":"db","condition":"HEALTHY"},
            {"containerName":"cache","condition":"HEALTHY"}]}]}"#;
    assert_eq!(
        problems(json),
        [
            "containerDefinitions[2].dependsOn[1].condition: condition HEALTHY needs a healthCheck on container cache: add one or use START"
        ]
    );
    let ok = json.replace(
        r#"{"name":"cache","image":"busybox","memory":64}"#,
        r#"{"name":"cache","image":"busybox","memory":64,"healthCheck":{"command":["CMD-SHELL","true"]}}"#,
    );
    let def = parse(&ok).unwrap();
    assert_eq!(
        def.containers[2].depends_on[0].condition,
        proto::DependencyCondition::Healthy as i32
    );
}

/// One container (bridge mode unless `mode` says otherwise) with `extra` JSON members.
fn with_container(mode: &str, extra: &str) -> String {
    format!(
        r#"{{"family":"f","networkMode":"{mode}","containerDefinitions":[
            {{"name":"a","image":"i","memory":64,{extra}}}]}}"#
    )
}

#[test]
fn linux_fields_are_carried() {
    let def = parse(&with_container(
        "bridge",
        r#""systemControls":[{"namespace":"kernel.shmmax","value":"1234"},
                             {"namespace":"net.ipv4.ip_forward","value":"1"}],
           "extraHosts":[{"hostname":"db.local","ipAddress":"10.0.0.5"}],
           "dnsServers":["10.0.0.2","fd00::2"],
           "dnsSearchDomains":["example.com"],
           "linuxParameters":{"capabilities":{"add":["cap_net_admin","ALL"],"drop":["MKNOD"]},
                              "sharedMemorySize":128,"initProcessEnabled":true,
                              "tmpfs":[{"containerPath":"/scratch","size":16,
                                        "mountOptions":["noexec","mode=1777"]}]}"#,
    ))
    .unwrap();
    let c = &def.containers[0];
    assert_eq!(
        c.system_controls,
        [
            proto::SystemControl {
                namespace: "kernel.shmmax".into(),
                value: "1234".into()
            },
            proto::SystemControl {
                namespace: "net.ipv4.ip_forward".into(),
                value: "1".into()
            }
        ]
    );
    assert_eq!(
        c.extra_hosts,
        [proto::HostEntry {
            hostname: "db.local".into(),
            ip_address: "10.0.0.5".into()
        }]
    );
    assert_eq!(c.dns_servers, ["10.0.0.2", "fd00::2"]);
    assert_eq!(c.dns_search_domains, ["example.com"]);
    let linux = c.linux_parameters.as_ref().unwrap();
    assert_eq!(
        linux.capabilities,
        Some(proto::KernelCapabilities {
            add: vec!["NET_ADMIN".into(), "ALL".into()],
            drop: vec!["MKNOD".into()]
        })
    );
    assert_eq!(linux.shared_memory_size_mib, 128);
    assert!(linux.init_process_enabled);
    assert!(!c.privileged, "privileged defaults to false");
    let privileged = parse(&with_container("none", r#""privileged":true"#)).unwrap();
    assert!(privileged.containers[0].privileged);
    assert_eq!(
        linux.tmpfs,
        [proto::TmpfsMount {
            container_path: "/scratch".into(),
            size_mib: 16,
            mount_options: vec!["noexec".into(), "mode=1777".into()]
        }]
    );
}

#[test]
fn linux_field_problems_are_reported_with_their_paths() {
    assert_eq!(
        problems(&with_container(
            "bridge",
            r#""systemControls":[{"namespace":"kernel.panic","value":"1"},
                                 {"namespace":"kernel.sem","value":"1"},
                                 {"namespace":"kernel.sem","value":"2"}],
               "extraHosts":[{"hostname":"has space","ipAddress":"300.1.1.1"}],
               "dnsServers":["dns.google"],
               "dnsSearchDomains":["bad_domain"],
               "linuxParameters":{"capabilities":{"add":["NET_ADMN"]},
                                  "sharedMemorySize":0,
                                  "tmpfs":[{"containerPath":"rel","size":0,
                                            "mountOptions":["nosuchopt","mode="]}]}"#,
        )),
        [
            "containerDefinitions[0].systemControls[0].namespace: `kernel.panic` is not a namespaced kernel parameter: a container may set only kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, kernel.shmall, kernel.shmmax, kernel.shmmni, kernel.shm_rmid_forced, fs.mqueue.* and net.* (in its own network namespace)",
            "containerDefinitions[0].systemControls[2].namespace: `kernel.sem` is already set by systemControls[1]",
            "containerDefinitions[0].extraHosts[0].hostname: \"has space\" is not a host name: it must be non-empty, without spaces or `#`",
            "containerDefinitions[0].extraHosts[0].ipAddress: \"300.1.1.1\" is not an IPv4 or IPv6 address",
            "containerDefinitions[0].dnsServers[0]: \"dns.google\" is not an IPv4 or IPv6 address",
            "containerDefinitions[0].dnsSearchDomains[0]: \"bad_domain\" is not a search domain: use letters, digits, '-' and '.', up to 254 characters, ending in a letter or digit",
            "containerDefinitions[0].linuxParameters.capabilities.add[0]: `NET_ADMN` is not a Linux capability: did you mean `NET_ADMIN`?",
            "containerDefinitions[0].linuxParameters.sharedMemorySize: 0 MiB is less than the minimum of 1 MiB",
            "containerDefinitions[0].linuxParameters.tmpfs[0].containerPath: \"rel\" is not an absolute path",
            "containerDefinitions[0].linuxParameters.tmpfs[0].size: 0 MiB is less than the minimum of 1 MiB",
            &format!(
                "containerDefinitions[0].linuxParameters.tmpfs[0].mountOptions[0]: `nosuchopt` is not a tmpfs mount option: use one of {}, or mode, uid, gid, nr_inodes, nr_blocks, mpol with `=value`",
                fields::TMPFS_MOUNT_OPTIONS.join(", ")
            ),
            &format!(
                "containerDefinitions[0].linuxParameters.tmpfs[0].mountOptions[1]: `mode=` is not a tmpfs mount option: use one of {}, or mode, uid, gid, nr_inodes, nr_blocks, mpol with `=value`",
                fields::TMPFS_MOUNT_OPTIONS.join(", ")
            ),
        ]
    );
}

#[test]
fn network_mode_rules_of_dns_hosts_and_net_sysctls() {
    let fields = r#""systemControls":[{"namespace":"net.core.somaxconn","value":"1024"}],
                    "extraHosts":[{"hostname":"db","ipAddress":"10.0.0.5"}],
                    "dnsServers":["10.0.0.2"],"dnsSearchDomains":["example.com"],
                    "hostname":"db-client","disableNetworking":true"#;
    assert!(parse(&with_container("bridge", fields)).is_ok());
    let none = parse(&with_container("none", fields)).unwrap();
    assert!(none.containers[0].disable_networking);
    assert_eq!(
        problems(&with_container("host", fields)),
        [
            "containerDefinitions[0].dnsServers: is not valid with networkMode host, as on ECS",
            "containerDefinitions[0].dnsSearchDomains: is not valid with networkMode host, as on ECS",
            "containerDefinitions[0].disableNetworking: is not valid with networkMode host, as on ECS",
            "containerDefinitions[0].systemControls[0].namespace: `net.core.somaxconn` would change the host's network stack: net.* parameters need the task's own network namespace (not networkMode host)",
        ]
    );
    assert_eq!(
        problems(&with_container("awsvpc", fields)),
        [
            "containerDefinitions[0].dnsServers: is not valid with networkMode awsvpc, as on ECS",
            "containerDefinitions[0].dnsSearchDomains: is not valid with networkMode awsvpc, as on ECS",
            "containerDefinitions[0].extraHosts: is not valid with networkMode awsvpc, as on ECS",
            "containerDefinitions[0].hostname: is not valid with networkMode awsvpc, as on ECS",
            "containerDefinitions[0].disableNetworking: is not valid with networkMode awsvpc, as on ECS",
        ]
    );
}

#[test]
fn security_options_in_every_docker_spelling_are_carried() {
    let options = |list: &str| {
        let def = parse(&with_container(
            "none",
            &format!(r#""dockerSecurityOptions":{list}"#),
        ))
        .unwrap();
        let c = def.containers[0].clone();
        (c.no_new_privileges, c.seccomp_profile)
    };
    assert_eq!(options("[]"), (None, String::new()));
    assert_eq!(
        options(r#"["no-new-privileges"]"#),
        (Some(true), String::new())
    );
    assert_eq!(
        options(r#"["no-new-privileges:true"]"#),
        (Some(true), String::new())
    );
    assert_eq!(
        options(r#"["no-new-privileges=false"]"#),
        (Some(false), String::new())
    );
    assert_eq!(
        options(r#"["seccomp=unconfined"]"#),
        (None, "unconfined".to_owned())
    );
    assert_eq!(
        options(r#"["no-new-privileges=1","seccomp:/etc/berth/seccomp.json"]"#),
        (Some(true), "/etc/berth/seccomp.json".to_owned())
    );
    let absent = parse(&with_container("none", r#""cpu":1"#)).unwrap();
    assert_eq!(absent.containers[0].no_new_privileges, None);
    assert!(absent.containers[0].seccomp_profile.is_empty());
}

#[test]
fn security_options_berth_cannot_honour_are_refused_by_name() {
    assert_eq!(
        problems(&with_container(
            "none",
            r#""dockerSecurityOptions":["apparmor:docker-default","label:type:svirt_apache_t",
               "credentialspec:file://gmsa.json","seccomp","seccomp=default.json",
               "no-new-privileges=maybe","no-new-privileges","no-new-privileges:false",
               "systempaths=unconfined","sandbox"]"#,
        )),
        [
            "containerDefinitions[0].dockerSecurityOptions[0]: `apparmor:docker-default` is not supported by Berth: Berth applies no AppArmor profiles: remove it (the container runs without one)",
            "containerDefinitions[0].dockerSecurityOptions[1]: `label:type:svirt_apache_t` is not supported by Berth: Berth applies no SELinux labels: remove it (the container runs unlabelled)",
            "containerDefinitions[0].dockerSecurityOptions[2]: `credentialspec:file://gmsa.json` is not supported by Berth: credential specs are for Windows containers (gMSA), which Berth does not run",
            "containerDefinitions[0].dockerSecurityOptions[3]: seccomp needs a value: seccomp=unconfined, or seccomp=<absolute path of a Docker seccomp profile on the host>",
            "containerDefinitions[0].dockerSecurityOptions[4]: `default.json` is not an absolute path: the agent reads a seccomp profile from the host (Berth has no built-in profile); use seccomp=unconfined or seccomp=/path/to/profile.json",
            "containerDefinitions[0].dockerSecurityOptions[5]: `no-new-privileges=maybe`: the value of no-new-privileges must be true or false",
            "containerDefinitions[0].dockerSecurityOptions[7]: `no-new-privileges` is already set by dockerSecurityOptions[6]",
            "containerDefinitions[0].dockerSecurityOptions[8]: `systempaths=unconfined` is not supported by Berth: Berth always masks /proc and /sys paths as Docker does by default; use privileged for an unmasked container",
            "containerDefinitions[0].dockerSecurityOptions[9]: `sandbox` is not a Docker security option Berth supports: use no-new-privileges[=true|false], seccomp=unconfined or seccomp=<absolute path of a seccomp profile on the host>",
        ]
    );
    assert_eq!(
        problems(&with_container(
            "none",
            r#""privileged":true,"dockerSecurityOptions":["seccomp=/etc/p.json"]"#,
        )),
        [
            "containerDefinitions[0].dockerSecurityOptions: `seccomp=/etc/p.json` has no effect on a privileged container (Docker runs privileged containers without a seccomp filter): remove the profile or privileged",
        ]
    );
    assert!(
        parse(&with_container(
            "none",
            r#""privileged":true,"dockerSecurityOptions":["seccomp=unconfined"]"#,
        ))
        .is_ok()
    );
}

#[test]
fn interactive_and_pseudo_terminal_are_carried() {
    let def = parse(&with_container(
        "none",
        r#""interactive":true,"pseudoTerminal":true"#,
    ))
    .unwrap();
    assert!(def.containers[0].interactive && def.containers[0].pseudo_terminal);
    let def = parse(MINIMAL).unwrap();
    assert!(!def.containers[0].interactive && !def.containers[0].pseudo_terminal);
}

#[test]
fn devices_are_carried_with_ecs_defaults() {
    let def = parse(&with_container(
        "none",
        r#""linuxParameters":{"devices":[
              {"hostPath":"/dev/fuse"},
              {"hostPath":"/dev/snd","containerPath":"/dev/sound","permissions":["write","read","read"]}]}"#,
    ))
    .unwrap();
    let linux = def.containers[0].linux_parameters.as_ref().unwrap();
    assert_eq!(
        linux.devices,
        [
            proto::Device {
                host_path: "/dev/fuse".into(),
                container_path: "/dev/fuse".into(),
                permissions: vec!["read".into(), "write".into(), "mknod".into()],
            },
            proto::Device {
                host_path: "/dev/snd".into(),
                container_path: "/dev/sound".into(),
                permissions: vec!["read".into(), "write".into()],
            },
        ]
    );
}

#[test]
fn device_problems_are_reported_with_their_paths() {
    assert_eq!(
        problems(&with_container(
            "none",
            r#""linuxParameters":{"devices":[
                  {"hostPath":"dev/fuse","containerPath":"fuse","permissions":null},
                  {"hostPath":"/dev/a","containerPath":"/dev/x/../y"},
                  {"hostPath":"/dev/b","containerPath":"/dev/c","permissions":["exec"]},
                  {"hostPath":"/dev/c"},
                  {"containerPath":"/dev/d"}]}"#,
        )),
        ["missing field `hostPath` at containerDefinitions[0].linuxParameters.devices[4]",]
    );
    assert_eq!(
        problems(&with_container(
            "none",
            r#""linuxParameters":{"devices":[
                  {"hostPath":"dev/fuse","containerPath":"fuse","permissions":null},
                  {"hostPath":"/dev/a","containerPath":"/dev/x/../y"},
                  {"hostPath":"/dev/b","containerPath":"/dev/c","permissions":["exec"]},
                  {"hostPath":"/dev/c"}]}"#,
        )),
        [
            "containerDefinitions[0].linuxParameters.devices[0].hostPath: \"dev/fuse\" is not an absolute path on the host",
            "containerDefinitions[0].linuxParameters.devices[0].containerPath: \"fuse\" is not an absolute path",
            "containerDefinitions[0].linuxParameters.devices[1].containerPath: \"/dev/x/../y\" must not contain `..`",
            "containerDefinitions[0].linuxParameters.devices[2].permissions[0]: `exec` is not a device permission: use read, write or mknod",
            "containerDefinitions[0].linuxParameters.devices[3].hostPath: \"/dev/c\" is already the device of devices[2]",
        ]
    );
}

#[test]
fn swap_settings_are_carried_and_checked() {
    let def = parse(&with_container(
        "none",
        r#""linuxParameters":{"maxSwap":0,"swappiness":10}"#,
    ))
    .unwrap();
    let linux = def.containers[0].linux_parameters.as_ref().unwrap();
    assert_eq!((linux.max_swap_mib, linux.swappiness), (Some(0), Some(10)));
    // swappiness without maxSwap is accepted and has no effect, as on ECS.
    let def = parse(&with_container(
        "none",
        r#""linuxParameters":{"swappiness":0}"#,
    ))
    .unwrap();
    let linux = def.containers[0].linux_parameters.as_ref().unwrap();
    assert_eq!((linux.max_swap_mib, linux.swappiness), (None, Some(0)));
    assert_eq!(
        problems(&with_container(
            "none",
            r#""linuxParameters":{"maxSwap":-1,"swappiness":101}"#,
        )),
        [
            "containerDefinitions[0].linuxParameters.maxSwap: expected an integer from 0 to 4294967295, found the number -1"
        ]
    );
    assert_eq!(
        problems(&with_container(
            "none",
            r#""linuxParameters":{"swappiness":101}"#,
        )),
        [
            "containerDefinitions[0].linuxParameters.swappiness: 101 is outside ECS's range of 0 to 100"
        ]
    );
    assert_eq!(
        problems(
            r#"{"family":"f","memory":"512","containerDefinitions":[
                {"name":"a","image":"i","memoryReservation":64,"linuxParameters":{"maxSwap":64}}]}"#
        ),
        [
            "containerDefinitions[0].linuxParameters.maxSwap: needs the container's `memory` (its hard limit): the memory+swap limit is memory + maxSwap, as on ECS; set memory"
        ]
    );
}

#[test]
fn environment_files_are_host_paths_and_s3_is_refused() {
    let def = parse(&with_container(
        "none",
        r#""environmentFiles":[{"value":"/etc/app/a.env","type":"file"},{"value":"/b.env","type":"file"}]"#,
    ))
    .unwrap();
    assert_eq!(
        def.containers[0].environment_files,
        ["/etc/app/a.env", "/b.env"]
    );
    assert_eq!(
        problems(&with_container(
            "none",
            r#""environmentFiles":[{"value":"arn:aws:s3:::bucket/a.env","type":"s3"},
                                   {"value":"rel.env","type":"local"}]"#,
        )),
        [
            "containerDefinitions[0].environmentFiles[0].type: type `s3` needs AWS credentials, which a Berth host does not have: copy the file to the host and use type `file` with its path",
            "containerDefinitions[0].environmentFiles[0].value: \"arn:aws:s3:::bucket/a.env\" is not an absolute path on the host",
            "containerDefinitions[0].environmentFiles[1].type: `local` is not an environment file type: use `file`",
            "containerDefinitions[0].environmentFiles[1].value: \"rel.env\" is not an absolute path on the host",
        ]
    );
}

/// A port mapping of (containerPort, hostPort, protocol).
fn mapping(container_port: u32, host_port: u32, protocol: &str) -> proto::PortMapping {
    proto::PortMapping {
        container_port,
        host_port,
        protocol: protocol.into(),
    }
}

#[test]
fn port_mappings_are_carried_with_ecs_defaults() {
    let def = parse(&with_container(
        "bridge",
        r#""portMappings":[{"containerPort":80},
                           {"containerPort":53,"hostPort":5353,"protocol":"UDP"},
                           {"containerPort":443,"hostPort":0,"protocol":"tcp",
                            "name":"https","appProtocol":"http2"}]"#,
    ))
    .unwrap();
    assert_eq!(
        def.containers[0].port_mappings,
        [
            mapping(80, 0, "tcp"),
            mapping(53, 5353, "udp"),
            mapping(443, 0, "tcp")
        ]
    );
    // In host and awsvpc modes the host port is the container port.
    for mode in ["host", "awsvpc"] {
        let def = parse(&with_container(
            mode,
            r#""portMappings":[{"containerPort":80},{"containerPort":8125,"hostPort":8125,"protocol":"udp"}]"#,
        ))
        .unwrap();
        assert_eq!(
            def.containers[0].port_mappings,
            [mapping(80, 80, "tcp"), mapping(8125, 8125, "udp")],
            "{mode}"
        );
    }
}

#[test]
fn port_mapping_problems_are_reported_with_their_paths() {
    assert_eq!(
        problems(&with_container(
            "bridge",
            r#""portMappings":[{"containerPort":0,"hostPort":70000,"protocol":"sctp"},
                               {"hostPort":80},
                               {"containerPort":-1},
                               {"containerPort":1,"containerPortRange":"1-2","hostPortRange":"3-4"}]"#,
        )),
        [
            "missing field `containerPort` at containerDefinitions[0].portMappings[1]",
            "containerDefinitions[0].portMappings[2].containerPort: expected an integer from 0 to 4294967295, found the number -1",
            "field `containerPortRange` at containerDefinitions[0].portMappings[3] is not supported by Berth: map each port with its own `containerPort`",
            "field `hostPortRange` at containerDefinitions[0].portMappings[3] is not supported by Berth: map each port with its own `containerPort` and `hostPort`",
        ]
    );
    assert_eq!(
        problems(&with_container(
            "bridge",
            r#""portMappings":[{"containerPort":0,"hostPort":70000,"protocol":"sctp"},
                               {"containerPort":65536}]"#,
        )),
        [
            "containerDefinitions[0].portMappings[0].containerPort: 0 is not a port: use 1 to 65535",
            "containerDefinitions[0].portMappings[0].hostPort: 70000 is not a port: use 1 to 65535, or 0 for a dynamic one",
            "containerDefinitions[0].portMappings[0].protocol: `sctp` is not a port protocol: use tcp or udp",
            "containerDefinitions[0].portMappings[1].containerPort: 65536 is not a port: use 1 to 65535",
        ]
    );
}

#[test]
fn host_ports_follow_the_network_mode() {
    let mappings = r#""portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":81,"hostPort":0}]"#;
    assert!(parse(&with_container("bridge", mappings)).is_ok());
    for mode in ["host", "awsvpc"] {
        assert_eq!(
            problems(&with_container(mode, mappings)),
            [
                format!(
                    "containerDefinitions[0].portMappings[0].hostPort: 8080 must equal containerPort 80 in networkMode {mode}, as on ECS: leave hostPort out or set it to 80"
                ),
                format!(
                    "containerDefinitions[0].portMappings[1].hostPort: 0 must equal containerPort 81 in networkMode {mode}, as on ECS: leave hostPort out or set it to 81"
                ),
            ]
        );
    }
    assert_eq!(
        problems(&with_container(
            "none",
            r#""portMappings":[{"containerPort":80}]"#
        )),
        [
            "containerDefinitions[0].portMappings: is not valid with networkMode none, as on ECS: the task has no network to map ports from"
        ]
    );
    assert_eq!(
        problems(&with_container(
            "bridge",
            r#""disableNetworking":true,"portMappings":[{"containerPort":80}]"#
        )),
        [
            "containerDefinitions[0].portMappings: is not valid on a container with disableNetworking: it has no network to map ports from"
        ]
    );
    // An empty list maps nothing, so it is fine anywhere.
    assert!(parse(&with_container("none", r#""portMappings":[]"#)).is_ok());
}

#[test]
fn ports_are_mapped_once() {
    let json = r#"{"family":"f","containerDefinitions":[
        {"name":"a","image":"i","memory":64,"portMappings":[
            {"containerPort":80,"hostPort":8080},
            {"containerPort":80,"hostPort":8081,"protocol":"TCP"},
            {"containerPort":80,"hostPort":8080,"protocol":"udp"},
            {"containerPort":81},{"containerPort":82}]},
        {"name":"b","image":"i","memory":64,"portMappings":[
            {"containerPort":80,"hostPort":8080},
            {"containerPort":80,"hostPort":8080,"protocol":"udp"},
            {"containerPort":81}]}]}"#;
    assert_eq!(
        problems(json),
        [
            "containerDefinitions[0].portMappings[1]: container port 80/tcp is already mapped by portMappings[0]",
            "containerDefinitions[1].portMappings[0]: host port 8080/tcp is already taken by containerDefinitions[0].portMappings[0]",
            "containerDefinitions[1].portMappings[1]: host port 8080/udp is already taken by containerDefinitions[0].portMappings[2]",
        ]
    );
    // In awsvpc mode every container shares one stack: one container port is one host port.
    let json = r#"{"family":"f","networkMode":"awsvpc","containerDefinitions":[
        {"name":"a","image":"i","memory":64,"portMappings":[{"containerPort":80}]},
        {"name":"b","image":"i","memory":64,"portMappings":[{"containerPort":80,"hostPort":80}]}]}"#;
    assert_eq!(
        problems(json),
        [
            "containerDefinitions[1].portMappings[0]: host port 80/tcp is already taken by containerDefinitions[0].portMappings[0]"
        ]
    );
}

/// Containers `a`, `b` and `c` (bridge mode unless `mode` says otherwise), `a` with `links`.
fn with_links(mode: &str, links: &str) -> String {
    format!(
        r#"{{"family":"f","networkMode":"{mode}","containerDefinitions":[
            {{"name":"a","image":"i","memory":64,"links":{links}}},
            {{"name":"b","image":"i","memory":64}},
            {{"name":"c","image":"i","memory":64}}]}}"#
    )
}

#[test]
fn links_are_carried() {
    let def = parse(&with_links("bridge", r#"["b","c:cache","b:db-1_x"]"#)).unwrap();
    assert_eq!(def.containers[0].links, ["b", "c:cache", "b:db-1_x"]);
    // An absent networkMode is bridge.
    let json = r#"{"family":"f","containerDefinitions":[
        {"name":"a","image":"i","memory":64,"links":["b"]},{"name":"b","image":"i","memory":64}]}"#;
    assert_eq!(parse(json).unwrap().containers[0].links, ["b"]);
}

#[test]
fn link_problems_are_reported_with_their_paths() {
    assert_eq!(
        problems(&with_links("bridge", r#"["b",3]"#)),
        ["containerDefinitions[0].links[1]: expected a string, found the number 3"]
    );
    assert_eq!(
        problems(&with_links(
            "bridge",
            r#"["zz","a","b:bad.alias","c:","b","b:b","c:x","b:x","c:zz:y"]"#
        )),
        [
            "containerDefinitions[0].links[0]: no container named \"zz\" in this task definition",
            "containerDefinitions[0].links[1]: container \"a\" cannot link to itself",
            "containerDefinitions[0].links[2]: \"bad.alias\" is not a link alias: use \"name\" or \"name:alias\" with an alias of 1 to 255 letters, digits, hyphens and underscores",
            "containerDefinitions[0].links[3]: \"\" is not a link alias: use \"name\" or \"name:alias\" with an alias of 1 to 255 letters, digits, hyphens and underscores",
            "containerDefinitions[0].links[5]: alias `b` is already used by links[4]",
            "containerDefinitions[0].links[7]: alias `x` is already used by links[6]",
            "containerDefinitions[0].links[8]: \"zz:y\" is not a link alias: use \"name\" or \"name:alias\" with an alias of 1 to 255 letters, digits, hyphens and underscores",
        ]
    );
    assert!(
        parse(&with_links(
            "bridge",
            &format!(r#"["b:{}"]"#, "y".repeat(255))
        ))
        .is_ok()
    );
    let long = "x".repeat(256);
    assert_eq!(
        problems(&with_links("bridge", &format!(r#"["b:{long}"]"#))),
        [format!(
            "containerDefinitions[0].links[0]: \"{long}\" is not a link alias: use \"name\" or \"name:alias\" with an alias of 1 to 255 letters, digits, hyphens and underscores"
        )]
    );
}

#[test]
fn links_are_for_bridge_mode_without_cycles() {
    for mode in ["host", "awsvpc"] {
        assert_eq!(
            problems(&with_links(mode, r#"["b"]"#)),
            [format!(
                "containerDefinitions[0].links: is not valid with networkMode {mode}, as on ECS: the task's containers share one network and reach each other on localhost"
            )]
        );
    }
    assert_eq!(
        problems(&with_links("none", r#"["b"]"#)),
        [
            "containerDefinitions[0].links: is not valid with networkMode none, as on ECS: the task has no network"
        ]
    );
    let json = r#"{"family":"f","containerDefinitions":[
        {"name":"a","image":"i","memory":64,"links":["b:x"]},
        {"name":"b","image":"i","memory":64,"links":["a"]}]}"#;
    assert_eq!(
        problems(json),
        ["containerDefinitions[1].links[0]: links forms a cycle: a → b → a"]
    );
}

#[test]
fn the_berth_extension_sets_the_image_pull_behavior() {
    let def = parse(
        r#"{"family":"f","berth":{"imagePullBehavior":"prefer-cached"},
            "containerDefinitions":[{"name":"a","image":"i","memory":6}]}"#,
    )
    .unwrap();
    assert_eq!(def.image_pull_behavior, "prefer-cached");
    let def =
        parse(r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":6}]}"#)
            .unwrap();
    assert_eq!(def.image_pull_behavior, "", "unset: the agent's");
    let refusal = refused(
        r#"{"family":"f","berth":{"imagePullBehavior":"sometimes"},
            "containerDefinitions":[{"name":"a","image":"i","memory":6}]}"#,
    );
    assert!(
        refusal.contains("berth.imagePullBehavior: `sometimes` is not an image pull behavior"),
        "{refusal}"
    );
    assert!(
        refused(
            r#"{"family":"f","berth":{"pullPolicy":"once"},
            "containerDefinitions":[{"name":"a","image":"i","memory":6}]}"#
        )
        .contains("pullPolicy"),
        "unknown extension fields are refused by name"
    );
}

#[test]
fn secrets_and_repository_credentials_name_secrets_of_the_cluster() {
    let def = parse(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,
        "secrets":[{"name":"DB_PASSWORD","valueFrom":"prod/db"}],
        "repositoryCredentials":{"credentialsParameter":"registry-creds"}}]}"#,
    )
    .unwrap();
    let c = &def.containers[0];
    assert_eq!(
        c.secrets,
        [proto::ContainerSecret {
            name: "DB_PASSWORD".into(),
            value_from: "prod/db".into(),
        }]
    );
    assert_eq!(
        c.repository_credentials
            .as_ref()
            .unwrap()
            .credentials_parameter,
        "registry-creds"
    );
    // SSM Parameter Store and Secrets Manager ARNs are the agent's to fetch.
    let def = parse(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,
        "secrets":[{"name":"A","valueFrom":"arn:aws:ssm:eu-west-1:111122223333:parameter/prod/a"},
                   {"name":"B","valueFrom":"arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf:password::"},
                   {"name":"C","valueFrom":"/prod/plain-name"}],
        "repositoryCredentials":{"credentialsParameter":"arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:reg-Xy12Zw"}}]}"#,
    )
    .unwrap();
    assert_eq!(def.containers[0].secrets.len(), 3);
    let found = problems(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,
        "secrets":[{"name":"A","valueFrom":"arn:aws:s3:eu-west-1:1:bucket/a"},
                   {"name":"A","valueFrom":"has space"},{"name":"","valueFrom":"ok"}],
        "repositoryCredentials":{"credentialsParameter":"arn:aws:secretsmanager:x"}}]}"#,
    );
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(found.iter().any(|p| p.starts_with(
        "containerDefinitions[0].secrets[0].valueFrom: `arn:aws:s3:eu-west-1:1:bucket/a` is not an SSM Parameter Store or Secrets Manager ARN (the service is neither ssm nor secretsmanager)"
    ) && p.contains("berthctl create-secret")), "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p
                .starts_with("containerDefinitions[0].secrets[1].name: `A` is set by two secrets")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("containerDefinitions[0].secrets[1].valueFrom: secret name")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("containerDefinitions[0].secrets[2].name")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with(
            "containerDefinitions[0].repositoryCredentials.credentialsParameter: `arn:aws:secretsmanager:x` is not an SSM Parameter Store or Secrets Manager ARN (an ARN has six fields"
        )),
        "{found:?}"
    );
}
