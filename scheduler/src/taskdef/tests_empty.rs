//! Null, empty and absent are the same for every optional field of every table, supported or
//! not; a field Berth does not support is refused, with what to use instead, only when its value
//! asks for something.

use serde_json::{Value, json};

use super::fields::{self, Field, Support};
use super::{TaskDefError, parse_with_notes};

/// A valid definition with `object` (a minimal valid object of `table`) in its place.
struct Place {
    table: &'static [Field],
    name: &'static str,
    base: fn() -> Value,
    wrap: fn(Value) -> Value,
}

fn container() -> Value {
    json!({"name": "a", "image": "busybox", "memory": 64})
}

fn task(containers: Value) -> Value {
    json!({"family": "f", "memory": 256, "containerDefinitions": containers})
}

fn in_container(key: &str, value: Value) -> Value {
    let mut c = container();
    c[key] = value;
    task(json!([c]))
}

fn in_linux(key: &str, value: Value) -> Value {
    in_container("linuxParameters", json!({ key: value }))
}

fn volume_with(key: &str, value: Value) -> Value {
    let mut t = task(json!([container()]));
    t["volumes"] = json!([{"name": "v", key: value}]);
    t
}

/// Every table with a place in a valid definition. Tables whose fields are all required
/// (ulimits, dependsOn, environmentFiles, systemControls, extraHosts) have nothing optional.
const PLACES: &[Place] = &[
    Place {
        table: fields::TASK_DEFINITION,
        name: "task",
        base: || task(json!([container()])),
        wrap: |v| v,
    },
    Place {
        table: fields::RUNTIME_PLATFORM,
        name: "runtimePlatform",
        base: || json!({"operatingSystemFamily": "LINUX"}),
        wrap: |p| {
            let mut t = task(json!([container()]));
            t["runtimePlatform"] = p;
            t
        },
    },
    Place {
        table: fields::CONTAINER_DEFINITION,
        name: "container",
        base: container,
        wrap: |c| task(json!([c])),
    },
    Place {
        table: fields::PORT_MAPPING,
        name: "portMappings[]",
        base: || json!({"containerPort": 80}),
        wrap: |p| in_container("portMappings", json!([p])),
    },
    Place {
        table: fields::VOLUME,
        name: "volumes[]",
        base: || json!({"name": "v"}),
        wrap: |v| {
            let mut t = task(json!([container()]));
            t["volumes"] = json!([v]);
            t
        },
    },
    Place {
        table: fields::HOST_VOLUME,
        name: "volumes[].host",
        base: || json!({"sourcePath": "/srv"}),
        wrap: |h| volume_with("host", h),
    },
    Place {
        table: fields::DOCKER_VOLUME_CONFIGURATION,
        name: "volumes[].dockerVolumeConfiguration",
        base: || json!({"scope": "task"}),
        wrap: |d| volume_with("dockerVolumeConfiguration", d),
    },
    Place {
        table: fields::MOUNT_POINT,
        name: "mountPoints[]",
        base: || json!({"sourceVolume": "v", "containerPath": "/v"}),
        wrap: |m| {
            let mut t = in_container("mountPoints", json!([m]));
            t["volumes"] = json!([{"name": "v"}]);
            t
        },
    },
    Place {
        table: fields::VOLUME_FROM,
        name: "volumesFrom[]",
        base: || json!({"sourceContainer": "b"}),
        wrap: |v| {
            let mut a = container();
            a["volumesFrom"] = json!([v]);
            task(json!([a, {"name": "b", "image": "busybox", "memory": 64}]))
        },
    },
    Place {
        table: fields::KEY_VALUE_PAIR,
        name: "environment[]",
        base: || json!({"name": "A", "value": "1"}),
        wrap: |e| in_container("environment", json!([e])),
    },
    Place {
        table: fields::RESTART_POLICY,
        name: "restartPolicy",
        base: || json!({"enabled": true}),
        wrap: |r| in_container("restartPolicy", r),
    },
    Place {
        table: fields::LOG_CONFIGURATION,
        name: "logConfiguration",
        base: || json!({"logDriver": "json-file"}),
        wrap: |l| in_container("logConfiguration", l),
    },
    Place {
        table: fields::HEALTH_CHECK,
        name: "healthCheck",
        base: || json!({"command": ["CMD", "true"]}),
        wrap: |h| in_container("healthCheck", h),
    },
    Place {
        table: fields::LINUX_PARAMETERS,
        name: "linuxParameters",
        base: || json!({"initProcessEnabled": true}),
        wrap: |l| in_container("linuxParameters", l),
    },
    Place {
        table: fields::DEVICE,
        name: "linuxParameters.devices[]",
        base: || json!({"hostPath": "/dev/null"}),
        wrap: |d| in_linux("devices", json!([d])),
    },
    Place {
        table: fields::KERNEL_CAPABILITIES,
        name: "linuxParameters.capabilities",
        base: || json!({"add": ["NET_ADMIN"]}),
        wrap: |c| in_linux("capabilities", c),
    },
    Place {
        table: fields::TMPFS,
        name: "linuxParameters.tmpfs[]",
        base: || json!({"containerPath": "/t", "size": 64}),
        wrap: |t| in_linux("tmpfs", json!([t])),
    },
];

/// The definition a JSON value parses to, without its source text.
fn parsed(value: &Value) -> Result<super::proto::TaskDefinition, TaskDefError> {
    parse_with_notes(&value.to_string()).map(|p| super::proto::TaskDefinition {
        source_json: String::new(),
        ..p.definition
    })
}

/// The JSON values that ask for nothing, for a field with this support.
fn nothing(support: Support) -> Vec<Value> {
    let mut values = vec![json!(null), json!([]), json!({}), json!("")];
    if matches!(support, Support::Unsupported(_)) {
        values.push(json!(false));
    }
    values
}

#[test]
fn null_empty_and_absent_are_the_same_for_every_optional_field() {
    let mut checked = 0;
    for place in PLACES {
        for field in place.table.iter().filter(|f| !f.required) {
            let mut without = (place.base)();
            if let Some(object) = without.as_object_mut() {
                object.remove(field.name);
            }
            let absent = parsed(&(place.wrap)(without.clone()))
                .unwrap_or_else(|e| panic!("{} without {}: {e}", place.name, field.name));
            for value in nothing(field.support) {
                let mut with = without.clone();
                with[field.name] = value.clone();
                let given = parsed(&(place.wrap)(with))
                    .unwrap_or_else(|e| panic!("{}.{} = {value}: {e}", place.name, field.name));
                assert_eq!(given, absent, "{}.{} = {value}", place.name, field.name);
                checked += 1;
            }
        }
    }
    assert!(checked > 400, "only {checked} cases");
}

#[test]
fn an_unsupported_field_is_refused_by_name_with_what_to_use_instead_when_it_asks_for_something() {
    let mut refused = 0;
    for place in PLACES {
        for field in place.table {
            let Support::Unsupported(instead) = field.support else {
                continue;
            };
            assert!(
                !instead.is_empty(),
                "{}.{} says nothing",
                place.name,
                field.name
            );
            for value in [
                json!(true),
                json!("x"),
                json!(["x"]),
                json!({"x": 1}),
                json!(1),
            ] {
                let mut with = (place.base)();
                with[field.name] = value.clone();
                let Err(TaskDefError::Invalid { problems }) = parsed(&(place.wrap)(with)) else {
                    panic!("{}.{} = {value} was accepted", place.name, field.name);
                };
                assert_eq!(problems.len(), 1, "{problems:?}");
                let message = problems[0].to_string();
                assert!(
                    problems[0].path().ends_with(field.name)
                        && message.contains(&format!("`{}`", field.name))
                        && message.ends_with(instead),
                    "{message}"
                );
                refused += 1;
            }
        }
    }
    // 13 fields refused, each with 5 values.
    assert_eq!(refused, 13 * 5);
}

#[test]
fn empty_values_deep_inside_collapse_to_absent() {
    let deep = in_container(
        "linuxParameters",
        json!({"capabilities": {"add": [], "drop": null}, "devices": [], "tmpfs": null}),
    );
    assert_eq!(
        parsed(&deep).unwrap(),
        parsed(&task(json!([container()]))).unwrap()
    );
    // A value inside a map or a list means what it says: an empty label, an empty variable.
    let mut c = container();
    c["dockerLabels"] = json!({"empty": ""});
    c["environment"] = json!([{"name": "E", "value": ""}]);
    let def = parsed(&task(json!([c]))).unwrap();
    assert_eq!(def.containers[0].docker_labels["empty"], "");
    assert_eq!(def.containers[0].environment["E"], "");
    // A required field that is empty is still named.
    let Err(error) = parsed(&json!({"family": "", "containerDefinitions": [container()]})) else {
        panic!("an empty family was accepted");
    };
    assert!(error.to_string().contains("family"), "{error}");
}
