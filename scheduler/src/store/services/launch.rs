//! The service scheduler's hands: stopping tasks (each with its stop order queued) and
//! placing and creating new ones, inside the step's write transaction.

use std::collections::{BTreeMap, HashSet};

use berth_proto::v1::{self as pb, DesiredStatus, StopCode};
use redb::WriteTransaction;

use super::super::codec::{load_task, load_tasks, put_task};
use super::super::definitions::load_definition;
use super::super::placement::{self, Demand};
use super::super::platform;
use super::super::records::InstanceRecord;
use super::super::sessions::enqueue_stop;
use super::super::tasks::create_tasks;
use super::super::views::active_definitions;
use super::super::{OUTBOX, RunTasks, SESSIONS, StoreError, TASK_DEFS, TASKS, now};
use super::decide::Start;
use super::{Reconciled, events};

/// Marks each task desired STOPPED and queues its stop order (ServiceSchedulerInitiated).
pub(super) fn stop_tasks(
    txn: &WriteTransaction,
    service: &pb::Service,
    stop: &[(String, String)],
    done: &mut Reconciled,
) -> Result<(), StoreError> {
    let mut tasks_t = txn.open_table(TASKS)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut outbox = txn.open_table(OUTBOX)?;
    for (id, reason) in stop {
        let Some(mut task) = load_task(&tasks_t, id)? else {
            continue;
        };
        task.desired_status = DesiredStatus::Stopped as i32;
        task.stopping_at = Some(now());
        put_task(&mut tasks_t, &task)?;
        let seq = enqueue_stop(
            &mut sessions,
            &mut outbox,
            &task.container_instance_id,
            &task.task_id,
            StopCode::ServiceSchedulerInitiated,
            reason,
        )?;
        tracing::info!(task.id = %task.task_id, instance.id = %task.container_instance_id, service = %service.service_name, reason = %reason, seq, "service scheduler stops a task");
        done.stopped
            .push((task.task_id.clone(), task.container_instance_id.clone()));
    }
    Ok(())
}

/// Places and creates the tasks of `start`, as many as fit. Returns the IDs created, and the
/// event that says why the others did not fit.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_tasks(
    txn: &WriteTransaction,
    service: &pb::Service,
    deployment: &str,
    start: &Start,
    all_tasks: &[pb::Task],
    instances: &[InstanceRecord],
    connected: &HashSet<String>,
    degraded: &BTreeMap<String, String>,
    done: &mut Reconciled,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    let wanted: Vec<Option<&str>> = match start {
        Start::Count(n) => (0..*n).map(|_| None).collect(),
        Start::On(ids) => ids.iter().map(|i| Some(i.as_str())).collect(),
    };
    if wanted.is_empty() {
        return Ok((Vec::new(), None));
    }
    let name = &service.service_name;
    let def = load_definition(&txn.open_table(TASK_DEFS)?, &service.task_definition)?;
    let definitions = active_definitions(&txn.open_table(TASK_DEFS)?, all_tasks)?;
    // Tasks stopped in this step still hold their resources until their host reports them
    // STOPPED: placement sees them as they are stored.
    let tasks = load_tasks(&txn.open_table(TASKS)?)?;
    let pool = placement::Pool {
        cluster: &service.cluster,
        instances,
        tasks: &tasks,
        definitions: &definitions,
        connected,
        degraded,
    };
    let demand = Demand::of(&def);
    let mut placements = Vec::new();
    let mut unplaced = None;
    let mut candidates = pool.candidates(None);
    for pinned in wanted {
        let mut here: Vec<placement::Capacity> = match pinned {
            None => std::mem::take(&mut candidates),
            Some(id) => candidates
                .iter()
                .filter(|c| c.instance_id == id)
                .cloned()
                .collect(),
        };
        let result = if here.is_empty() {
            Err(events::no_instances(name))
        } else {
            match platform::retain_matching(&mut here, instances, &def) {
                Err(mismatches) => Err(mismatches.first().map_or_else(
                    || events::no_instances(name),
                    |m| events::no_platform(name, &m.instance_id, &m.why),
                )),
                Ok(()) => {
                    let (left, placed) =
                        place_one(&pool, here, &def, &demand, service, &placements);
                    here = left;
                    placed
                }
            }
        };
        // What this placement took stays taken for the next one.
        match pinned {
            None => candidates = here,
            Some(id) => {
                if let (Some(slot), Some(now_here)) = (
                    candidates.iter_mut().find(|c| c.instance_id == id),
                    here.into_iter().next(),
                ) {
                    *slot = now_here;
                }
            }
        }
        match result {
            Ok(mut chosen) => placements.append(&mut chosen),
            Err(why) => {
                unplaced.get_or_insert(why);
                if pinned.is_none() {
                    break;
                }
            }
        }
    }
    let reference = service.task_definition.clone();
    let created = create_tasks(
        txn,
        &RunTasks {
            cluster: &service.cluster,
            task_definition: &reference,
            count: 0,
            started_by: deployment,
            group: &placement::service_group(&service.service_name),
            network_attachment: None,
            container_instance: None,
            storage_degraded: None,
            placement_constraints: &[],
            placement_strategy: &[],
        },
        &def,
        None,
        placements,
    )?;
    let ids: Vec<String> = created.iter().map(|t| t.task_id.clone()).collect();
    done.started = created;
    if let Some(why) = &unplaced {
        tracing::warn!(cluster = %service.cluster, service = %name, reason = %why, "service task not placed");
    }
    Ok((ids, unplaced))
}

/// One task of `service` placed by the placement engine among `here`, under the service's
/// constraints (with its definition's) and strategies (binpack on memory when it has none):
/// the candidates with what the task took, and its instance or the event that says why not.
/// `placed_before` are the instances of the tasks placed earlier in this step (not stored yet).
fn place_one(
    pool: &placement::Pool<'_>,
    here: Vec<placement::Capacity>,
    def: &pb::TaskDefinition,
    demand: &Demand,
    service: &pb::Service,
    placed_before: &[String],
) -> (Vec<placement::Capacity>, Result<Vec<String>, String>) {
    let name = &service.service_name;
    let constraints: Result<Vec<_>, String> = def
        .placement_constraints
        .iter()
        .chain(&service.placement_constraints)
        .map(|c| {
            crate::placement::Constraint::from_parts(&c.r#type, &c.expression)
                .map_err(|e| e.to_string())
        })
        .collect();
    let strategies: Result<Vec<_>, String> = service
        .placement_strategy
        .iter()
        .map(|s| {
            crate::placement::Strategy::from_parts(&s.r#type, &s.field).map_err(|e| e.to_string())
        })
        .collect();
    let (constraints, strategies) = match (constraints, strategies) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(why), _) | (_, Err(why)) => {
            return (
                here,
                Err(format!("(service {name}) {} {why}", events::UNABLE)),
            );
        }
    };
    let strategies: &[crate::placement::Strategy] = if strategies.is_empty() {
        crate::placement::DEFAULT_STRATEGIES
    } else {
        &strategies
    };
    let requirements = crate::placement::Requirements {
        cpu: demand.cpu,
        memory_mib: demand.memory_mib,
        ports: demand.ports.clone(),
        awsvpc: def.network_mode == "awsvpc",
        cpu_architecture: None,
        os_type: None,
        group: placement::service_group(&service.service_name),
    };
    let mut engine = pool.engine_candidates(here);
    placement::count_placed(&mut engine, placed_before, &requirements);
    let placed = crate::placement::place(
        &mut engine,
        &requirements,
        &constraints,
        strategies,
        1,
        &mut rand::rng(),
    );
    let left = placement::capacities(&engine);
    let placed = placed.map_err(|refusal| {
        let constrained = refusal.exclusions.iter().any(|e| {
            matches!(
                e.check,
                crate::placement::Check::MemberOf(_)
                    | crate::placement::Check::DistinctInstance
                    | crate::placement::Check::AwsvpcAddresses
            )
        });
        if constrained {
            format!("(service {name}) was unable to place a task because {refusal}.")
        } else {
            events::unplaced(name, demand, &placement::shortage(&left, demand))
        }
    });
    (left, placed)
}
