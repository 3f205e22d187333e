//! The structural check: walks the JSON against the field tables and reports unknown fields
//! (with a suggestion), unsupported fields, missing required fields and wrong types, each with
//! its JSON path, and collects the notes of fields accepted and ignored. Before it, [`prune`]
//! removes every optional field that asks for nothing (`null`, `[]`, `{}`, `""`), so that null,
//! empty and absent are the same everywhere.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::Problem;
use super::fields::{Field, Shape, Support};
use super::suggest;

/// What fields accepted and ignored leave in the registration's output.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// The read-only fields of describe output that were given.
    pub(super) read_only: BTreeSet<&'static str>,
    /// The notes of other fields accepted and ignored.
    pub(super) ignored: BTreeSet<&'static str>,
}

/// Removes from the object `map` described by `fields`, at every level, each optional field
/// that asks for nothing: `null`, `[]`, `{}`, `""`, or `false` for a field Berth does not
/// support. Objects are pruned from the inside first, so one whose fields all ask for nothing
/// is itself removed. The values of maps (`dockerLabels`, `options`) and the elements of arrays
/// are kept as given: an empty label or environment value means something.
pub(super) fn prune(map: &mut Map<String, Value>, fields: &[Field]) {
    map.retain(|key, value| {
        let Some(field) = fields.iter().find(|f| f.name == key) else {
            return true;
        };
        if field.support == Support::Supported {
            match (field.shape, &mut *value) {
                (Shape::Object(inner), Value::Object(object)) => prune(object, inner),
                (Shape::ObjectList(inner), Value::Array(items)) => {
                    for item in items {
                        if let Value::Object(object) = item {
                            prune(object, inner);
                        }
                    }
                }
                _ => {}
            }
        }
        field.required || !asks_for_nothing(value, field.support)
    });
}

/// Whether a field's value asks for nothing, so that it is the same as absent.
pub(super) fn asks_for_nothing(value: &Value, support: Support) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(on) => !on && matches!(support, Support::Unsupported(_)),
        Value::Number(_) => false,
    }
}

/// Every structural problem of the object `map` (at `path`) described by `fields`, and the
/// notes of the fields it accepts and ignores.
pub(super) fn check_object(
    map: &Map<String, Value>,
    fields: &[Field],
    path: &str,
    problems: &mut Vec<Problem>,
    notes: &mut Notes,
) {
    for (key, value) in map {
        let Some(field) = fields.iter().find(|f| f.name == key) else {
            let near = suggest::nearest(key, fields.iter().map(|f| f.name));
            let mut message = format!("unknown field `{key}`{}", at(path));
            if let Some(near) = near {
                message.push_str(&format!(": did you mean `{near}`?"));
            }
            problems.push(Problem::with_message(path, message));
            continue;
        };
        if value.is_null() {
            continue;
        }
        match field.support {
            Support::Ignored => {}
            Support::ReadOnly => {
                notes.read_only.insert(field.name);
            }
            Support::Noted(note) => {
                notes.ignored.insert(note);
            }
            Support::Unsupported(instead) => problems.push(Problem::with_message(
                &child(path, key),
                format!(
                    "field `{key}`{} is not supported by Berth: {instead}",
                    at(path)
                ),
            )),
            Support::Supported => {
                check_value(value, field.shape, &child(path, key), problems, notes)
            }
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if map.get(field.name).is_none_or(Value::is_null) {
            problems.push(Problem::with_message(
                path,
                format!("missing field `{}`{}", field.name, at(path)),
            ));
        }
    }
}

fn check_value(
    value: &Value,
    shape: Shape,
    path: &str,
    problems: &mut Vec<Problem>,
    notes: &mut Notes,
) {
    let mut expected = |what: &str| {
        problems.push(Problem::at(
            path,
            format!("expected {what}, found {}", describe(value)),
        ))
    };
    match shape {
        Shape::Any => {}
        Shape::String if !value.is_string() => expected("a string"),
        Shape::Bool if !value.is_boolean() => expected("true or false"),
        Shape::U32 if integer(value, u64::from(u32::MAX)).is_none() => {
            expected("an integer from 0 to 4294967295")
        }
        Shape::U64 if integer(value, u64::MAX).is_none() => expected("a non-negative integer"),
        Shape::TaskCpu => {
            if let Err(message) = task_cpu(value) {
                problems.push(Problem::at(path, message));
            }
        }
        Shape::TaskMemory => {
            if let Err(message) = task_memory(value) {
                problems.push(Problem::at(path, message));
            }
        }
        Shape::StringList => match value.as_array() {
            None => expected("an array of strings"),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_value(item, Shape::String, &index(path, i), problems, notes);
                }
            }
        },
        Shape::StringMap => match value.as_object() {
            None => expected("an object of strings"),
            Some(map) => {
                for (key, item) in map {
                    check_value(item, Shape::String, &key_path(path, key), problems, notes);
                }
            }
        },
        Shape::U32List => match value.as_array() {
            None => expected("an array of integers"),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_value(item, Shape::U32, &index(path, i), problems, notes);
                }
            }
        },
        Shape::Object(fields) => match value.as_object() {
            Some(map) => check_object(map, fields, path, problems, notes),
            None => expected("an object"),
        },
        Shape::ObjectList(fields) => match value.as_array() {
            None => expected("an array of objects"),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = index(path, i);
                    match item.as_object() {
                        Some(map) => check_object(map, fields, &item_path, problems, notes),
                        None => problems.push(Problem::at(
                            &item_path,
                            format!("expected an object, found {}", describe(item)),
                        )),
                    }
                }
            }
        },
        Shape::String | Shape::Bool | Shape::U32 | Shape::U64 => {}
    }
}

/// The value as a non-negative integer no larger than `max`.
pub(super) fn integer(value: &Value, max: u64) -> Option<u64> {
    value.as_u64().filter(|n| *n <= max)
}

/// Task-level CPU units from an integer or a string like "256", "1 vCPU" or "0.5 vcpu".
pub(super) fn task_cpu(value: &Value) -> Result<u32, String> {
    let expected = || {
        format!(
            "expected CPU units as an integer or a string like \"256\" or \"1 vCPU\", found {}",
            describe(value)
        )
    };
    let units = task_size(value, "vcpu").ok_or_else(expected)?;
    u32::try_from(units)
        .map_err(|_| format!("{units} CPU units is more than the maximum of {}", u32::MAX))
}

/// Task-level memory in MiB from an integer or a string like "512", "1 GB" or "0.5GB".
pub(super) fn task_memory(value: &Value) -> Result<u64, String> {
    let expected = || {
        format!(
            "expected MiB as an integer or a string like \"512\" or \"1 GB\", found {}",
            describe(value)
        )
    };
    task_size(value, "gb").ok_or_else(expected)
}

/// An integer, a string of digits, or a string "<number> <unit>" (unit case-insensitive, the
/// space optional) counting 1024 per unit; the result must be whole.
fn task_size(value: &Value, unit: &str) -> Option<u64> {
    match value {
        Value::Number(_) => value.as_u64(),
        Value::String(text) => {
            let text = text.trim();
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                return text.parse().ok();
            }
            let split = text.len().checked_sub(unit.len())?;
            let (number, suffix) = (text.get(..split)?, text.get(split..)?);
            if !suffix.eq_ignore_ascii_case(unit) {
                return None;
            }
            let number = number.trim_end();
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return None;
            }
            let scaled = number.parse::<f64>().ok()? * 1024.0;
            // f64 holds every integer below 2^53 exactly, far above any real task size.
            (scaled.is_finite() && scaled.fract() == 0.0 && scaled < 9.0e15)
                .then_some(scaled as u64)
        }
        _ => None,
    }
}

/// A JSON value described for a person: its type, and short scalars themselves.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let short: String = s.chars().take(40).collect();
            format!("the string \"{}…\"", short.escape_debug())
        }
        Value::String(s) => format!("the string \"{}\"", s.escape_debug()),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// " at PATH", or nothing at the top level.
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// The path of field `key` of the object at `path`.
pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of element `i` of the array at `path`.
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The path of map entry `key` (of dockerLabels, say): `.key` when it is an identifier,
/// `["key"]` otherwise.
pub(super) fn key_path(path: &str, key: &str) -> String {
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        child(path, key)
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}
