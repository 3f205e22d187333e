//! Placement end to end through the real binaries, on three agents that report custom
//! attributes from their config (`zone` a, a, b; `tier` web, db, web): `spread` over an
//! attribute splits evenly, `distinctInstance` holds for a service, a `memberOf` expression with
//! `and`/`or`/`not` holds, and a refused placement's reason counts what each check excluded.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use berth_tests::World;

use super::services::{Fleet, create, live, steady};
use super::{hello, taskdef};

/// The three agents' attributes, in the order they start.
const AGENTS: [&str; 3] = ["zone=a,tier=web", "zone=a,tier=db", "zone=b,tier=web"];

/// The connected instances' IDs by their (zone, tier).
fn instances_by_attributes(fleet: &Fleet) -> Result<BTreeMap<(String, String), String>> {
    let mut by = BTreeMap::new();
    for instance in fleet.env.instances()? {
        let attribute = |name: &str| {
            instance["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["name"] == name))
                .and_then(|a| a["value"].as_str())
                .map(str::to_owned)
                .with_context(|| format!("instance without attribute {name}: {instance}"))
        };
        let id = instance["containerInstanceId"]
            .as_str()
            .context("instance without an ID")?
            .to_owned();
        by.insert((attribute("zone")?, attribute("tier")?), id);
    }
    ensure!(by.len() == 3, "expected 3 distinct instances: {by:?}");
    Ok(by)
}

/// How many of the tasks `ids` were placed on each instance.
fn placed_on(fleet: &Fleet, ids: &[String]) -> Result<BTreeMap<String, usize>> {
    let mut on = BTreeMap::new();
    for id in ids {
        let task = fleet.env.task(id)?;
        let instance = task["containerInstanceId"]
            .as_str()
            .with_context(|| format!("task {id} without an instance: {task}"))?;
        *on.entry(instance.to_owned()).or_default() += 1;
    }
    Ok(on)
}

pub(super) fn strategies_and_constraints_hold_and_refusals_count_exclusions(
    w: &World,
) -> Result<()> {
    let fleet = Fleet::start_with_attributes(w, &AGENTS, &[])?;
    let env = &fleet.env;
    let by = instances_by_attributes(&fleet)?;
    let id = |zone: &str, tier: &str| -> Result<String> {
        by.get(&(zone.to_owned(), tier.to_owned()))
            .cloned()
            .with_context(|| format!("no instance in zone {zone} tier {tier}: {by:?}"))
    };
    let (a_web, a_db, b_web) = (id("a", "web")?, id("a", "db")?, id("b", "web")?);
    let image = hello(w, "e2e-placement")?;
    for family in ["pl-spread", "pl-member", "pl-distinct"] {
        env.register(&taskdef(
            family,
            serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]),
        ))?;
    }

    // spread over the zone first, then over instances: zone a's two instances take one task
    // each and zone b's one instance takes two, whatever order ties are broken in.
    let ids = env.run_tasks(&[
        "--task-definition",
        "pl-spread",
        "--count",
        "4",
        "--placement-strategy",
        "type=spread,field=attribute:zone",
        "type=spread,field=instanceId",
    ])?;
    let on = placed_on(&fleet, &ids)?;
    let want: BTreeMap<String, usize> = [(a_web.clone(), 1), (a_db.clone(), 1), (b_web.clone(), 2)]
        .into_iter()
        .collect();
    ensure!(
        on == want,
        "spread over zone then instanceId: {on:?}, want {want:?}"
    );

    // memberOf with and, or and not (and a quoted list): the db instance of zone a is out, the
    // two web instances share the tasks.
    let expression =
        "(attribute:zone in [a, z] and not(attribute:tier == db)) or attribute:zone == b";
    let member_of = format!("type=memberOf,expression=\"{expression}\"");
    let ids = env.run_tasks(&[
        "--task-definition",
        "pl-member",
        "--count",
        "4",
        "--placement-constraints",
        &member_of,
        "--placement-strategy",
        "type=spread,field=instanceId",
    ])?;
    let on = placed_on(&fleet, &ids)?;
    let want: BTreeMap<String, usize> = [(a_web.clone(), 2), (b_web.clone(), 2)]
        .into_iter()
        .collect();
    ensure!(on == want, "memberOf({expression}): {on:?}, want {want:?}");

    // A refusal counts each check's exclusions: the db instance fails memberOf, the two web
    // instances already run a task of the family's group; nothing is started.
    let before = env.json(&["list-tasks"])?["tasks"]
        .as_array()
        .map_or(0, Vec::len);
    let refused = env.ctl(&[
        "run-task",
        "--task-definition",
        "pl-member",
        "--placement-constraints",
        "type=distinctInstance",
        "type=memberOf,expression=attribute:tier == web",
    ])?;
    ensure!(
        refused.status != 0,
        "placed against its constraints: {refused:?}"
    );
    let why = refused.stderr.trim();
    ensure!(
        why.contains("no container instance met all of its requirements: of 3 instances, memberOf(attribute:tier == web) excluded 1, distinctInstance excluded 2; the closest matching container-instance "),
        "{why}"
    );
    ensure!(
        why.contains(&format!(
            "{a_web} already runs a task of the group (distinctInstance)"
        )) || why.contains(&format!(
            "{b_web} already runs a task of the group (distinctInstance)"
        )),
        "{why}"
    );
    let after = env.json(&["list-tasks"])?["tasks"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        after == before,
        "a refused run-task started tasks: {before} then {after}"
    );

    // distinctInstance holds for a service (its group is `service:NAME`): three tasks on three
    // instances; a fourth cannot be placed and the service's event counts why.
    create(
        env,
        "distinct",
        "pl-distinct",
        3,
        &[
            "--placement-constraints",
            r#"[{"type":"distinctInstance"}]"#,
        ],
    )?;
    let (_, tasks) = fleet.wait_for("distinct", "3 RUNNING", |s, t| steady(s, t, 3))?;
    let instances: std::collections::BTreeSet<&str> = live(&tasks)
        .iter()
        .filter_map(|t| t["containerInstanceId"].as_str())
        .collect();
    ensure!(instances.len() == 3, "distinctInstance broken: {tasks:?}");
    for task in &tasks {
        ensure!(task["group"] == "service:distinct", "{task}");
    }
    env.ok(&["update-service", "distinct", "--desired-count", "4"])?;
    let unable = "(service distinct) was unable to place a task because no container instance met all of its requirements: of 3 instances, distinctInstance excluded 3; the closest matching container-instance ";
    let (service, tasks) =
        fleet.wait_for("distinct", "an event that counts the exclusions", |s, _| {
            s["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["message"].as_str().is_some_and(|m| m.starts_with(unable)))
            })
        })?;
    ensure!(
        live(&tasks).len() == 3,
        "a fourth task was placed: {tasks:?}"
    );
    ensure!(service["desiredCount"] == 4, "{service}");
    Ok(())
}
