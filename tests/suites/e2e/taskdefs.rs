//! Task definitions as ECS users keep them, end to end: files of the scheduler's corpus
//! (`scheduler/src/taskdef/corpus/`) register unchanged but for the image, mapped to the test
//! image, and their tasks run; saved describe output gets its note on standard error.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use serde_json::Value;

use super::{Env, hello};

/// The corpus files run here, with a note `register-task-definition` must print for each.
const RUN: &[(&str, &str, Option<&str>)] = &[
    (
        "describe-output.json",
        include_str!("../../../scheduler/src/taskdef/corpus/describe-output.json"),
        Some("note: ignored the read-only fields of describe-task-definition output"),
    ),
    (
        "null-and-empty.json",
        include_str!("../../../scheduler/src/taskdef/corpus/null-and-empty.json"),
        None,
    ),
];

/// Each file registers with only its images replaced, and one task of it runs to a clean exit.
pub(super) fn corpus_registers_and_runs(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    env.connect()?;
    let image = hello(w, "e2e-taskdefs")?;
    for (name, text, note) in RUN {
        let mut def: Value = serde_json::from_str(text).with_context(|| name.to_string())?;
        let inner = match def.get_mut("taskDefinition") {
            Some(inner) => inner,
            None => &mut def,
        };
        let family = inner["family"].as_str().context("no family")?.to_owned();
        for c in inner["containerDefinitions"]
            .as_array_mut()
            .context("no containers")?
        {
            c["image"] = Value::from(image.as_str());
            // The same short command everywhere, so each task ends by itself.
            c["command"] = serde_json::json!(["sh", "-c", "echo ok"]);
        }
        let out = env.try_register(&def)?;
        ensure!(out.status == 0, "{name} was refused: {}", out.stderr);
        if let Some(note) = note {
            ensure!(
                out.stderr.contains(note),
                "{name}: no note in {:?}",
                out.stderr
            );
        }
        let id = env.run_task(&family)?;
        let t = env.wait_exited(&id, 0, Duration::from_secs(90))?;
        ensure!(t["containers"][0]["exitCode"] == 0, "{name}: {t}");
    }
    Ok(())
}
