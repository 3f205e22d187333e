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

mod convert;
mod ecs;
mod error;
mod fields;
mod linux;
mod network;
mod refs;
mod suggest;
mod validate;
mod volumes;
mod walk;

#[cfg(test)]
mod tests;

use berth_proto::v1 as proto;
use serde_json::Value;

pub use error::{Problem, TaskDefError};
use fields::TASK_DEFINITION;

/// Parses and validates ECS RegisterTaskDefinition JSON.
///
/// The result has revision 0 and no `registered_at` (the scheduler assigns both) and keeps
/// `json` as `source_json`. An absent `networkMode` becomes "bridge"; an absent task-level `cpu`
/// or `memory` stays 0 (the task is then the sum of its containers).
pub fn parse(json: &str) -> Result<proto::TaskDefinition, TaskDefError> {
    let value: Value = serde_json::from_str(json).map_err(syntax_error)?;
    let Some(map) = value.as_object() else {
        return Err(TaskDefError::NotAnObject {
            found: json_type(&value),
        });
    };
    let mut problems = Vec::new();
    walk::check_object(map, TASK_DEFINITION, "", &mut problems);
    if !problems.is_empty() {
        return Err(TaskDefError::Invalid { problems });
    }
    let task_memory_given = map.get("memory").is_some_and(|m| !m.is_null());
    let mut value = value;
    remove_nulls(&mut value);
    let ecs: ecs::TaskDefinition =
        serde_json::from_value(value).map_err(|error| TaskDefError::Invalid {
            problems: vec![Problem::with_message("", error.to_string())],
        })?;
    let definition = convert::definition(ecs, json, &mut problems);
    validate::definition(&definition, task_memory_given, &mut problems);
    if problems.is_empty() {
        Ok(definition)
    } else {
        Err(TaskDefError::Invalid { problems })
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
