//! Unit tests of task-definition parsing: the exact messages of every kind of problem.

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
    assert_eq!(
        budget(&def),
        Budget {
            cpu: 0,
            memory_mib: 128
        }
    );
}

#[test]
fn every_supported_and_ignored_field() {
    let json = r#"{
        "family": "full_family-1",
        "cpu": "1 vCPU",
        "memory": "1 GB",
        "networkMode": "host",
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
                "dockerLabels": {"com.example.team": "web"}
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
    let app = &def.containers[0];
    assert_eq!(
        (app.cpu, app.memory_mib, app.memory_reservation_mib),
        (512, 512, 256)
    );
    assert!(app.essential && app.entry_point_set && app.entry_point.is_empty());
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
        app.docker_labels
            .get("com.example.team")
            .map(String::as_str),
        Some("web")
    );
    let sidecar = &def.containers[1];
    assert!(!sidecar.essential && !sidecar.command_set);
    assert_eq!(
        budget(&def),
        Budget {
            cpu: 1024,
            memory_mib: 1024
        }
    );
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
fn budget_sums_containers_without_task_sizes() {
    let def = parse(
        r#"{"family":"f","containerDefinitions":[
            {"name":"a","image":"i","cpu":100,"memory":256,"memoryReservation":128},
            {"name":"b","image":"i","cpu":50,"memory":64}]}"#,
    )
    .unwrap();
    assert_eq!(
        budget(&def),
        Budget {
            cpu: 150,
            memory_mib: 192
        }
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
    let json = r#"{"family":"f","volumes":[],"containerDefinitions":[
        {"name":"a","image":"i","memory":64,"logConfiguration":{"logDriver":"awslogs"},"portMappings":[]},
        {"name":"b","image":"i","memory":64,"healthCheck":{},"secrets":[],"links":[]}]}"#;
    assert_eq!(
        problems(json),
        [
            "field `logConfiguration` at containerDefinitions[0] is not supported by Berth yet",
            "field `portMappings` at containerDefinitions[0] is not supported by Berth yet",
            "field `healthCheck` at containerDefinitions[1] is not supported by Berth yet",
            "field `links` at containerDefinitions[1] is not supported by Berth yet",
            "field `secrets` at containerDefinitions[1] is not supported by Berth yet",
            "field `volumes` is not supported by Berth yet",
        ]
    );
    match parse(json) {
        Err(TaskDefError::Invalid { problems }) => {
            assert_eq!(
                problems[0].path(),
                "containerDefinitions[0].logConfiguration"
            );
            assert_eq!(problems[5].path(), "volumes");
        }
        other => panic!("{other:?}"),
    }
    // Absent (null) is not present.
    assert!(parse(r#"{"family":"f","volumes":null,"containerDefinitions":[{"name":"a","image":"i","memory":6}]}"#).is_ok());
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
        fields::SYSTEM_CONTROL,
        fields::HOST_ENTRY,
        fields::LINUX_PARAMETERS,
        fields::KERNEL_CAPABILITIES,
        fields::TMPFS,
        fields::ENVIRONMENT_FILE,
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
            .filter(|f| f.support != fields::Support::Unsupported)
            .count()
    };
    // Keep in step with ecs::TaskDefinition and ecs::ContainerDefinition.
    assert_eq!(supported(fields::TASK_DEFINITION), 9);
    assert_eq!(supported(fields::CONTAINER_DEFINITION), 27);
    assert_eq!(supported(fields::LINUX_PARAMETERS), 4);
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
            "containerDefinitions[1].dependsOn[4].condition: condition HEALTHY needs a healthCheck on container db; healthCheck is not supported by Berth yet",
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
                    "disableNetworking":true"#;
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
            "containerDefinitions[0].disableNetworking: is not valid with networkMode awsvpc, as on ECS",
        ]
    );
}

#[test]
fn unsupported_linux_parameters_are_refused_by_name() {
    assert_eq!(
        problems(&with_container(
            "none",
            r#""linuxParameters":{"devices":[],"maxSwap":0,"swappiness":1}"#
        )),
        [
            "field `devices` at containerDefinitions[0].linuxParameters is not supported by Berth yet",
            "field `maxSwap` at containerDefinitions[0].linuxParameters is not supported by Berth yet",
            "field `swappiness` at containerDefinitions[0].linuxParameters is not supported by Berth yet",
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
