//! A corpus of task-definition shapes as ECS users keep them (written for these tests, in
//! `corpus/`): each registers unchanged with the notes expected, or is refused naming the field
//! and what to use instead. The e2e suite runs some of them too.

use super::{TaskDefError, parse_with_notes};

/// What registering a file of the corpus does.
enum Outcome {
    /// It registers unchanged, with notes containing each of these.
    Registers(&'static [&'static str]),
    /// It is refused, with a message containing each of these.
    Refused(&'static [&'static str]),
}

const CORPUS: &[(&str, &str, Outcome)] = &[
    (
        "describe-output.json",
        include_str!("corpus/describe-output.json"),
        Outcome::Registers(&[
            "`taskDefinition` of describe-task-definition output",
            "read-only fields of describe-task-definition output: compatibilities, \
             registeredAt, registeredBy, requiresAttributes, revision, status, \
             taskDefinitionArn",
        ]),
    ),
    (
        "codedeploy-template.json",
        include_str!("corpus/codedeploy-template.json"),
        Outcome::Refused(&[
            "containerDefinitions[0].image: `<IMAGE1_NAME>` is a template placeholder",
        ]),
    ),
    (
        "fargate-awsvpc.json",
        include_str!("corpus/fargate-awsvpc.json"),
        Outcome::Registers(&["ephemeralStorage is ignored"]),
    ),
    (
        "fargate-awslogs.json",
        include_str!("corpus/fargate-awslogs.json"),
        Outcome::Registers(&[]),
    ),
    (
        "bridge-links.json",
        include_str!("corpus/bridge-links.json"),
        Outcome::Registers(&[]),
    ),
    (
        "null-and-empty.json",
        include_str!("corpus/null-and-empty.json"),
        Outcome::Registers(&[]),
    ),
    (
        "ecs-ec2-service.json",
        include_str!("corpus/ecs-ec2-service.json"),
        Outcome::Registers(&[]),
    ),
    (
        "every-field.json",
        include_str!("corpus/every-field.json"),
        Outcome::Registers(&[]),
    ),
    (
        "host-pid-ipc.json",
        include_str!("corpus/host-pid-ipc.json"),
        Outcome::Registers(&[]),
    ),
];

#[test]
fn every_file_of_the_corpus_registers_or_is_refused_by_name() {
    let mut registered = 0;
    for (name, json, outcome) in CORPUS {
        match (parse_with_notes(json), outcome) {
            (Ok(parsed), Outcome::Registers(notes)) => {
                let all = parsed.notes.join("\n");
                for note in *notes {
                    assert!(all.contains(note), "{name}: {note:?} missing from {all:?}");
                }
                if notes.is_empty() {
                    assert!(parsed.notes.is_empty(), "{name}: {all}");
                }
                registered += 1;
            }
            (Err(TaskDefError::Invalid { problems }), Outcome::Refused(wanted)) => {
                let all: Vec<_> = problems.iter().map(ToString::to_string).collect();
                for want in *wanted {
                    assert!(
                        all.iter().any(|p| p.contains(want)),
                        "{name}: {want:?} missing from {all:#?}"
                    );
                }
            }
            (Ok(parsed), Outcome::Refused(_)) => panic!("{name} registered: {parsed:?}"),
            (Err(error), _) => panic!("{name} refused: {error}"),
        }
    }
    // The share that registers unchanged (8 of 9: a template's placeholder is refused by
    // design).
    assert_eq!((registered, CORPUS.len()), (8, 9));
}

#[test]
fn describe_output_registers_as_the_definition_it_wraps() {
    let (_, json, _) = &CORPUS[0];
    let def = parse_with_notes(json).unwrap().definition;
    assert_eq!((def.family.as_str(), def.revision), ("shop-api", 0));
    assert_eq!(def.containers[0].memory_reservation_mib, 128);
    // A wrapper with anything else beside it is not describe output.
    let odd = r#"{"taskDefinition": {"family": "f"}, "failures": []}"#;
    assert!(
        parse_with_notes(odd)
            .unwrap_err()
            .to_string()
            .contains("unknown field `taskDefinition`")
    );
}

#[test]
fn runtime_platform_is_carried_and_windows_is_refused_by_name() {
    let with = |platform: &str| {
        format!(
            r#"{{"family":"f","runtimePlatform":{platform},
                "containerDefinitions":[{{"name":"a","image":"i","memory":64}}]}}"#
        )
    };
    let def = super::parse(&with(
        r#"{"cpuArchitecture":"ARM64","operatingSystemFamily":"LINUX"}"#,
    ))
    .unwrap();
    let platform = def.runtime_platform.unwrap();
    assert_eq!(
        (
            platform.cpu_architecture.as_str(),
            platform.operating_system_family.as_str()
        ),
        ("ARM64", "LINUX")
    );
    let windows = super::parse(&with(
        r#"{"operatingSystemFamily":"WINDOWS_SERVER_2022_CORE"}"#,
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        windows,
        "runtimePlatform.operatingSystemFamily: `WINDOWS_SERVER_2022_CORE`: Berth does not run \
         Windows containers; use LINUX"
    );
    let arch = super::parse(&with(r#"{"cpuArchitecture":"x86"}"#))
        .unwrap_err()
        .to_string();
    assert_eq!(
        arch,
        "runtimePlatform.cpuArchitecture: `x86` is not a CPU architecture: use X86_64 or ARM64"
    );
}

#[test]
fn pid_and_ipc_modes_are_carried_and_others_are_refused_by_name() {
    let with = |members: &str| {
        format!(
            r#"{{"family":"f",{members}
                "containerDefinitions":[{{"name":"a","image":"i","memory":64}}]}}"#
        )
    };
    let def = super::parse(&with(r#""pidMode":"host","ipcMode":"none","#)).unwrap();
    assert_eq!(
        (def.pid_mode.as_str(), def.ipc_mode.as_str()),
        ("host", "none")
    );
    let def = super::parse(&with(r#""ipcMode":"host","#)).unwrap();
    assert_eq!((def.pid_mode.as_str(), def.ipc_mode.as_str()), ("", "host"));
    // Null and empty ask for nothing.
    let def = super::parse(&with(r#""pidMode":null,"ipcMode":"","#)).unwrap();
    assert_eq!((def.pid_mode.as_str(), def.ipc_mode.as_str()), ("", ""));
    let def = super::parse(&with(r#""pidMode":"task","ipcMode":"task","#)).unwrap();
    assert_eq!(
        (def.pid_mode.as_str(), def.ipc_mode.as_str()),
        ("task", "task")
    );
    assert_eq!(
        super::parse(&with(r#""pidMode":"none","#))
            .unwrap_err()
            .to_string(),
        "pidMode: `none` is not a value of pidMode: use host or task (or leave it out)"
    );
    assert_eq!(
        super::parse(&with(r#""ipcMode":"shareable","#))
            .unwrap_err()
            .to_string(),
        "ipcMode: `shareable` is not a value of ipcMode: use host or task or none (or leave \
         it out)"
    );
}

#[test]
fn member_of_placement_constraints_are_carried_and_others_refused() {
    let with = |constraints: &str| {
        format!(
            r#"{{"family":"f","placementConstraints":{constraints},
                "containerDefinitions":[{{"name":"a","image":"i","memory":64}}]}}"#
        )
    };
    let def = super::parse(&with(
        r#"[{"type":"memberOf","expression":"attribute:ecs.instance-type =~ t2.*"}]"#,
    ))
    .unwrap();
    assert_eq!(def.placement_constraints.len(), 1);
    assert_eq!(
        def.placement_constraints[0].expression,
        "attribute:ecs.instance-type =~ t2.*"
    );
    let distinct = super::parse(&with(r#"[{"type":"distinctInstance"}]"#))
        .unwrap_err()
        .to_string();
    assert!(
        distinct.starts_with("placementConstraints[0].type: a task definition takes only memberOf"),
        "{distinct}"
    );
    let bad = super::parse(&with(
        r#"[{"type":"memberOf","expression":"attribute:zone in a"}]"#,
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        bad,
        "placementConstraints[0].expression: memberOf expression `attribute:zone in a` does not \
         parse at column 19: expected `[` and a list of values after `in`, found `a`"
    );
    let missing = super::parse(&with(r#"[{"type":"memberOf"}]"#))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("needs an expression"), "{missing}");
}
