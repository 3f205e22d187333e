//! ECS task-definition JSON: parsing with precise errors, validation, and conversion to the
//! proto model (`berth_proto::v1::TaskDefinition`).
//!
//! [`parse`] runs in three steps, each reporting every problem it finds with its JSON path:
//! 1. JSON syntax (serde_json; line and column; here);
//! 2. structure (`walk.rs` against the tables of `fields.rs`): unknown fields with the nearest
//!    known one suggested, fields Berth does not support yet, missing required fields, wrong
//!    types;
//! 3. semantics: conversion to the proto model with ECS's defaults (`convert.rs`), then
//!    validation of names, memory and CPU budgets, limits and dependencies (`validate.rs`),
//!    with the rules of each area beside it and what they share about how containers refer
//!    to each other in `refs.rs`.
//!
//! Which ECS fields are supported, ignored or refused is decided in `fields.rs` alone.

mod awslogs;
mod convert;
mod ecs;
mod error;
mod fields;
mod linux;
mod network;
mod refs;
mod secrets;
mod suggest;
mod validate;
mod volumes;
mod walk;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_corpus;
#[cfg(test)]
mod tests_empty;

use berth_proto::v1 as proto;
use serde_json::{Map, Value};

pub use error::{Problem, TaskDefError};
use fields::TASK_DEFINITION;
pub(crate) use fields::{CPU_ARCHITECTURES, OS_FAMILIES};
pub(crate) use secrets::is_arn as is_secret_arn;

/// A definition that parsed, with the notes for the person who registers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub definition: proto::TaskDefinition,
    /// What was accepted and ignored (read-only fields of describe output, the describe
    /// wrapper, `ephemeralStorage`), one sentence each; empty when nothing was.
    pub notes: Vec<String>,
}

/// The members of `aws ecs describe-task-definition` output around the definition itself.
const DESCRIBE_WRAPPER: &[&str] = &["taskDefinition", "tags"];

/// Parses and validates ECS RegisterTaskDefinition JSON.
///
/// The result has revision 0 and no `registered_at` (the scheduler assigns both) and keeps
/// `json` as `source_json`. An absent `networkMode` becomes "bridge"; an absent task-level `cpu`
/// or `memory` stays 0 (the task is then the sum of its containers).
pub fn parse(json: &str) -> Result<proto::TaskDefinition, TaskDefError> {
    parse_with_notes(json).map(|parsed| parsed.definition)
}

/// [`parse`], with the notes of what was accepted and ignored.
///
/// Saved describe output is taken as it is: its `{"taskDefinition": {...}, "tags": [...]}`
/// wrapper is unwrapped and its read-only fields are ignored, each named in a note.
pub fn parse_with_notes(json: &str) -> Result<Parsed, TaskDefError> {
    let value: Value = serde_json::from_str(json).map_err(syntax_error)?;
    let Value::Object(mut map) = value else {
        return Err(TaskDefError::NotAnObject {
            found: json_type(&value),
        });
    };
    let mut notes = Vec::new();
    if let Some(inner) = unwrap_describe_output(&mut map) {
        map = inner;
        notes.push(
            "read the definition from the `taskDefinition` of describe-task-definition output; \
             its `tags` are ignored"
                .to_owned(),
        );
    }
    walk::prune(&mut map, TASK_DEFINITION);
    let task_memory_given = map.contains_key("memory");
    let mut problems = Vec::new();
    let mut ignored = walk::Notes::default();
    walk::check_object(&map, TASK_DEFINITION, "", &mut problems, &mut ignored);
    if !problems.is_empty() {
        return Err(TaskDefError::Invalid { problems });
    }
    let mut value = Value::Object(map);
    remove_nulls(&mut value);
    let ecs: ecs::TaskDefinition =
        serde_json::from_value(value).map_err(|error| TaskDefError::Invalid {
            problems: vec![Problem::with_message("", error.to_string())],
        })?;
    let definition = convert::definition(ecs, json, &mut problems);
    validate::definition(&definition, task_memory_given, &mut problems);
    if !problems.is_empty() {
        return Err(TaskDefError::Invalid { problems });
    }
    if !ignored.read_only.is_empty() {
        let names: Vec<_> = ignored.read_only.iter().copied().collect();
        notes.push(format!(
            "ignored the read-only fields of describe-task-definition output: {} (the \
             scheduler assigns its own revision and registration time)",
            names.join(", ")
        ));
    }
    notes.extend(ignored.ignored.iter().map(|note| (*note).to_owned()));
    Ok(Parsed { definition, notes })
}

/// The definition inside describe output (`{"taskDefinition": {...}, "tags": [...]}`), when
/// `map` is that wrapper and nothing else.
fn unwrap_describe_output(map: &mut Map<String, Value>) -> Option<Map<String, Value>> {
    let wrapper = map.contains_key("taskDefinition")
        && map
            .keys()
            .all(|key| DESCRIBE_WRAPPER.contains(&key.as_str()));
    if !wrapper {
        return None;
    }
    match map.remove("taskDefinition") {
        Some(Value::Object(inner)) => Some(inner),
        Some(other) => {
            map.insert("taskDefinition".to_owned(), other);
            None
        }
        None => None,
    }
}

/// Removes every object member that is `null`: absent and `null` mean the same everywhere.
fn remove_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(remove_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_nulls),
        _ => {}
    }
}

fn syntax_error(error: serde_json::Error) -> TaskDefError {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let reason = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full)
        .to_owned();
    TaskDefError::Syntax {
        reason,
        line,
        column,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
