//! Tasks: placed and created all or none (RunTask), stopped, described, listed, and forgotten
//! after their retention.

use std::collections::HashSet;

use berth_proto::v1::{self as pb, DesiredStatus, StopCode, TaskStatus, scheduler_message};
use redb::{ReadableTable, WriteTransaction};

use super::codec::{all_recs, load_task, load_tasks, put_task};
use super::definitions::load_definition;
use super::placement::{self, Demand, NoCandidate, Shortage, Unplaced};
use super::platform;
use super::records::InstanceRecord;
use super::sessions::{enqueue, enqueue_stop};
use super::views::{active_definitions, is_active, network_mode, task_size};
use super::{
    AttachmentError, CLUSTERS, INSTANCES, MAX_RUN_COUNT, OUTBOX, RunTasks, SESSIONS, Store,
    StoreError, TASK_DEFS, TASKS, new_id, now,
};
use crate::placement::Check;

impl Store {
    /// Places and creates tasks, all or none: each goes to a connected ACTIVE instance that
    /// fits it and satisfies the request's and the definition's placement constraints, chosen
    /// by the request's strategies (binpack on memory when none); its assignment is queued in
    /// that instance's outbox.
    pub fn run_tasks(
        &self,
        req: RunTasks<'_>,
        connected: &HashSet<String>,
    ) -> Result<Vec<pb::Task>, StoreError> {
        let requested = if req.count == 0 { 1 } else { req.count };
        if requested > MAX_RUN_COUNT {
            return Err(StoreError::InvalidCount { count: req.count });
        }
        let attachment = req
            .network_attachment
            .map(crate::attachment::checked)
            .transpose()?;
        self.ensure_cluster(req.cluster)?;
        self.write(|txn| {
            if txn.open_table(CLUSTERS)?.get(req.cluster)?.is_none() {
                return Err(StoreError::ClusterNotFound {
                    name: req.cluster.to_owned(),
                });
            }
            let def = load_definition(&txn.open_table(TASK_DEFS)?, req.task_definition)?;
            if attachment.is_some() {
                attachment_fits(&def, requested)?;
            }
            let placements =
                place_tasks(txn, &req, &def, attachment.as_ref(), requested, connected)?;
            create_tasks(txn, &req, &def, attachment.as_ref(), placements)
        })
    }

    /// Sets the task's desired status to STOPPED and queues a stop order for its instance.
    /// A task already stopped or stopping is returned unchanged; the flag says whether an
    /// order was queued.
    pub fn stop_task(
        &self,
        cluster: &str,
        task_id: &str,
        reason: &str,
    ) -> Result<(pb::Task, bool), StoreError> {
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            let mut tasks_t = txn.open_table(TASKS)?;
            let not_found = || StoreError::TaskNotFound {
                cluster: cluster.to_owned(),
                task_id: task_id.to_owned(),
            };
            let mut task = load_task(&tasks_t, task_id)?.ok_or_else(not_found)?;
            if task.cluster != cluster {
                return Err(not_found());
            }
            if task.desired_status == DesiredStatus::Stopped as i32 || !is_active(&task) {
                return Ok((task, false));
            }
            task.desired_status = DesiredStatus::Stopped as i32;
            task.stopping_at = Some(now());
            let reason = if reason.is_empty() {
                "Task stopped by user"
            } else {
                reason
            };
            // Shown at once, as ECS does, and kept when the agent never reports one: a task
            // stopped before its assignment reached the agent gets it with desired STOPPED, is
            // stopped there before it starts, and may be forgotten before this order arrives.
            task.stop_code = StopCode::UserInitiated as i32;
            task.stopped_reason = reason.to_owned();
            put_task(&mut tasks_t, &task)?;
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let seq = enqueue_stop(
                &mut sessions,
                &mut outbox,
                &task.container_instance_id,
                &task.task_id,
                StopCode::UserInitiated,
                reason,
            )?;
            tracing::info!(
                task.id = %task.task_id,
                instance.id = %task.container_instance_id,
                cluster,
                seq,
                "task stop ordered"
            );
            Ok((task, true))
        })
    }

    /// The tasks asked for, and the IDs not found in the cluster.
    pub fn describe_tasks(
        &self,
        cluster: &str,
        ids: &[String],
    ) -> Result<(Vec<pb::Task>, Vec<String>), StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let tasks_t = txn.open_table(TASKS)?;
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match load_task(&tasks_t, id)? {
                    Some(t) if t.cluster == cluster => found.push(t),
                    _ => missing.push(id.clone()),
                }
            }
            Ok((found, missing))
        })
    }

    /// The cluster's tasks, oldest first, optionally only one instance's or one desired status.
    pub fn list_tasks(
        &self,
        cluster: &str,
        instance_id: Option<&str>,
        desired_status: Option<i32>,
    ) -> Result<Vec<pb::Task>, StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let mut tasks: Vec<pb::Task> = load_tasks(&txn.open_table(TASKS)?)?
                .into_iter()
                .filter(|t| {
                    t.cluster == cluster
                        && instance_id.is_none_or(|i| t.container_instance_id == i)
                        && desired_status.is_none_or(|d| t.desired_status == d)
                })
                .collect();
            tasks.sort_by_key(|t| {
                (
                    t.created_at.map(|c| (c.seconds, c.nanos)),
                    t.task_id.clone(),
                )
            });
            Ok(tasks)
        })
    }

    /// Forgets tasks that stopped before `cutoff` (ECS keeps stopped tasks visible for about an
    /// hour). A stopped task holds no resources, so nothing else changes. Returns how many went.
    pub fn prune_stopped_tasks(&self, cutoff: std::time::SystemTime) -> Result<usize, StoreError> {
        let cutoff = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.write(|txn| {
            let mut tasks_t = txn.open_table(TASKS)?;
            let old: Vec<String> = load_tasks(&tasks_t)?
                .into_iter()
                .filter(|t| {
                    !is_active(t) && t.stopped_at.as_ref().is_some_and(|s| s.seconds < cutoff)
                })
                .map(|t| t.task_id)
                .collect();
            for id in &old {
                tasks_t.remove(id.as_str())?;
            }
            Ok(old.len())
        })
    }
}

/// No instance reports a data dir it cannot write.
static NONE_DEGRADED: std::collections::BTreeMap<String, String> =
    std::collections::BTreeMap::new();

/// The instance of each task RunTask asks for: the instance it pins must be able to take
/// tasks and the ENI must be free, then the pure placement decides among the candidates.
fn place_tasks(
    txn: &WriteTransaction,
    req: &RunTasks<'_>,
    def: &pb::TaskDefinition,
    attachment: Option<&pb::NetworkAttachment>,
    requested: u32,
    connected: &HashSet<String>,
) -> Result<Vec<String>, StoreError> {
    let cluster = req.cluster;
    let tasks = load_tasks(&txn.open_table(TASKS)?)?;
    let definitions = active_definitions(&txn.open_table(TASK_DEFS)?, &tasks)?;
    let instances: Vec<InstanceRecord> = all_recs(&txn.open_table(INSTANCES)?, "instances")?;
    let pool = placement::Pool {
        cluster,
        instances: &instances,
        tasks: &tasks,
        definitions: &definitions,
        connected,
        degraded: req.storage_degraded.unwrap_or(&NONE_DEGRADED),
    };
    if let Some(id) = req.container_instance {
        pool.check_pinned(id).map_err(|why| match why {
            NoCandidate::Unknown => StoreError::InstanceNotFound {
                cluster: cluster.to_owned(),
                id: id.to_owned(),
            },
            NoCandidate::Unavailable(why) => StoreError::InstanceUnavailable {
                cluster: cluster.to_owned(),
                id: id.to_owned(),
                why,
            },
        })?;
    }
    if let Some(a) = attachment {
        eni_free(a, &tasks)?;
    }
    let mut candidates = pool.candidates(req.container_instance);
    if candidates.is_empty() {
        return Err(StoreError::NoConnectedInstance {
            cluster: cluster.to_owned(),
            draining: pool.draining(),
            degraded: pool.degraded(),
        });
    }
    platform::retain_matching(&mut candidates, pool.instances, def).map_err(|mismatches| {
        StoreError::NoMatchingPlatform {
            cluster: cluster.to_owned(),
            task_definition: format!("{}:{}", def.family, def.revision),
            instances: mismatches
                .into_iter()
                .map(|m| format!("{} {}", m.instance_id, m.why))
                .collect(),
        }
    })?;
    let demand = Demand::of(def);
    let constraints = definition_constraints(def)?
        .into_iter()
        .chain(req.placement_constraints.iter().cloned())
        .collect::<Vec<_>>();
    let strategies = if req.placement_strategy.is_empty() {
        crate::placement::DEFAULT_STRATEGIES
    } else {
        req.placement_strategy
    };
    let requirements = crate::placement::Requirements {
        cpu: demand.cpu,
        memory_mib: demand.memory_mib,
        ports: demand.ports.clone(),
        awsvpc: network_mode(def) == "awsvpc" && attachment.is_none(),
        cpu_architecture: None,
        os_type: None,
        group: group_of(req, def),
    };
    let mut engine = pool.engine_candidates(candidates);
    let count = engine.len();
    crate::placement::place(
        &mut engine,
        &requirements,
        &constraints,
        strategies,
        requested,
        &mut rand::rng(),
    )
    .map_err(|refusal| {
        let constrained = refusal.exclusions.iter().any(|e| {
            matches!(
                e.check,
                Check::MemberOf(_) | Check::DistinctInstance | Check::AwsvpcAddresses
            )
        });
        if constrained {
            tracing::info!(cluster, task_definition = %def.family, %refusal, "task not placed");
            return StoreError::NotPlaced {
                cluster: cluster.to_owned(),
                task_definition: format!("{}:{}", def.family, def.revision),
                why: refusal.to_string(),
            };
        }
        // Only capacity was short: say so in its terms (the roomiest instance, the ports).
        let left = placement::capacities(&engine);
        let unplaced = Unplaced {
            placed: refusal.placed,
            shortage: placement::shortage(&left, &demand),
        };
        no_room(cluster, &demand, requested, count, unplaced)
    })
}

/// The group of the tasks `req` creates: the one asked for, else the definition's family.
fn group_of(req: &RunTasks<'_>, def: &pb::TaskDefinition) -> String {
    if req.group.is_empty() {
        placement::family_group(&def.family)
    } else {
        req.group.to_owned()
    }
}

/// The definition's placement constraints (memberOf), checked when it was registered.
fn definition_constraints(
    def: &pb::TaskDefinition,
) -> Result<Vec<crate::placement::Constraint>, StoreError> {
    def.placement_constraints
        .iter()
        .map(|c| {
            crate::placement::Constraint::from_parts(&c.r#type, &c.expression).map_err(|e| {
                StoreError::InvalidPlacement {
                    why: format!("task definition {}:{}: {e}", def.family, def.revision),
                }
            })
        })
        .collect()
}

/// Writes a PROVISIONING task on each instance of `placements`, each with its assignment
/// queued in the instance's outbox.
pub(super) fn create_tasks(
    txn: &WriteTransaction,
    req: &RunTasks<'_>,
    def: &pb::TaskDefinition,
    attachment: Option<&pb::NetworkAttachment>,
    placements: Vec<String>,
) -> Result<Vec<pb::Task>, StoreError> {
    let (cpu, memory_mib) = task_size(def);
    let reference = format!("{}:{}", def.family, def.revision);
    let mut tasks_t = txn.open_table(TASKS)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut created = Vec::new();
    let group = group_of(req, def);
    for instance_id in placements {
        let task = pb::Task {
            task_id: new_id(),
            cluster: req.cluster.to_owned(),
            task_definition: reference.clone(),
            container_instance_id: instance_id.clone(),
            last_status: TaskStatus::Provisioning as i32,
            desired_status: DesiredStatus::Running as i32,
            cpu,
            memory_mib,
            created_at: Some(now()),
            started_by: req.started_by.to_owned(),
            group: group.clone(),
            network_mode: network_mode(def).to_owned(),
            // The ENI asked for, until the agent reports what the task got.
            attachments: attachment.into_iter().cloned().collect(),
            ..Default::default()
        };
        put_task(&mut tasks_t, &task)?;
        // The attachment asked for is stored in the assignment itself, which stays in the
        // outbox (written in this transaction with the task) until the agent has it; the
        // definition and desired status are filled in when it is sent.
        let seq = enqueue(&mut sessions, &mut outbox, &instance_id, |seq| {
            scheduler_message::Message::Assignment(pb::TaskAssignment {
                seq,
                task_id: task.task_id.clone(),
                network_attachment: attachment.cloned(),
                ..Default::default()
            })
        })?;
        tracing::info!(
            task.id = %task.task_id,
            instance.id = %instance_id,
            cluster = req.cluster,
            task_definition = %reference,
            seq,
            "task placed"
        );
        created.push(task);
    }
    Ok(created)
}

/// A network attachment is one ENI for one task of an awsvpc definition.
fn attachment_fits(def: &pb::TaskDefinition, requested: u32) -> Result<(), StoreError> {
    if network_mode(def) != "awsvpc" {
        return Err(AttachmentError::NotAwsvpc {
            task_definition: format!("{}:{}", def.family, def.revision),
            network_mode: network_mode(def).to_owned(),
        }
        .into());
    }
    if requested != 1 {
        return Err(AttachmentError::Count { count: requested }.into());
    }
    Ok(())
}

/// The ENI of `attachment` must not be another task's that is neither stopped nor stopping.
fn eni_free(attachment: &pb::NetworkAttachment, tasks: &[pb::Task]) -> Result<(), StoreError> {
    let holder = tasks.iter().find(|t| {
        t.last_status < TaskStatus::Stopped as i32
            && t.desired_status != DesiredStatus::Stopped as i32
            && t.attachments
                .iter()
                .any(|o| o.mac_address.eq_ignore_ascii_case(&attachment.mac_address))
    });
    match holder {
        Some(other) => Err(AttachmentError::InUse {
            mac: attachment.mac_address.clone(),
            task_id: other.task_id.clone(),
        }
        .into()),
        None => Ok(()),
    }
}

/// Why the tasks asked for do not fit, for the user: the ports taken everywhere, or the largest
/// room left.
fn no_room(
    cluster: &str,
    demand: &Demand,
    requested: u32,
    instances: usize,
    unplaced: Unplaced,
) -> StoreError {
    let Unplaced { placed, shortage } = unplaced;
    match shortage {
        Shortage::Ports(taken) => StoreError::NoFreePort {
            cluster: cluster.to_owned(),
            ports: taken.iter().map(ToString::to_string).collect(),
            instances,
            placed,
            requested,
        },
        Shortage::Room(largest) => StoreError::NoCapacity {
            cluster: cluster.to_owned(),
            cpu: demand.cpu,
            memory_mib: demand.memory_mib,
            largest: largest.map(|c| (c.instance_id, c.cpu, c.memory_mib)),
            placed,
            requested,
        },
    }
}
