//! Services (ECS CreateService and friends): the records (table `services`, keyed by
//! `cluster/name`, the `pb::Service` itself with its bounded events), the calls that create,
//! update, delete, describe and list them, and [`Store::reconcile_service`], the service
//! scheduler's one step for one service: in a single write transaction it reads the service,
//! its tasks and the instances, decides (`decide`, pure), places and creates the new tasks,
//! queues the stop orders and records the events. The tasks it creates carry startedBy
//! `ecs-svc/<service ID>`, so the decision and the tasks it led to are committed together:
//! a scheduler killed at any point finds them on restart and never starts a task twice.
//! Running and pending counts are derived from the tasks when read, never stored.

mod decide;
mod events;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::SystemTime;

use berth_proto::v1::{self as pb, DesiredStatus, StopCode, scheduler_message};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{all_recs, get_rec, load_task, load_tasks, put_rec, put_task};
use super::definitions::load_definition;
use super::placement::{self, Demand};
use super::platform;
use super::records::InstanceRecord;
use super::sessions::enqueue;
use super::tasks::create_tasks;
use super::views::active_definitions;
use super::{
    CLUSTERS, INSTANCES, OUTBOX, RunTasks, SESSIONS, Store, StoreError, TASK_DEFS, TASKS, new_id,
    now,
};

use decide::{Start, View, is_live, plan};

/// The table of services, keyed by `cluster/name`.
pub(super) const SERVICES: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("services");

/// ECS's scheduling strategies.
pub const REPLICA: &str = "REPLICA";
pub const DAEMON: &str = "DAEMON";
/// A service's statuses: ACTIVE, DRAINING (deleted, its tasks being stopped), INACTIVE.
pub const ACTIVE_SERVICE: &str = "ACTIVE";
pub const DRAINING_SERVICE: &str = "DRAINING";
pub const INACTIVE_SERVICE: &str = "INACTIVE";

/// Why a service call is refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid service name {name:?}: use 1 to 255 letters, digits, hyphens and underscores")]
    InvalidName { name: String },
    #[error("invalid service {service}: {what}")]
    Invalid { service: String, what: String },
    #[error("service {name} not found in cluster {cluster} (berthctl list-services)")]
    NotFound { cluster: String, name: String },
    #[error(
        "service {name} already exists in cluster {cluster}; change it with `berthctl update-service {name}`"
    )]
    Exists { cluster: String, name: String },
    #[error("service {name} is {status}: create it again with `berthctl create-service`")]
    NotActive { name: String, status: String },
    #[error(
        "service {name} has desired count {desired}: scale it to 0 first (`berthctl update-service {name} --desired-count 0`) or delete it with --force"
    )]
    StillScaled { name: String, desired: u32 },
}

/// What UpdateService changes; None leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServiceUpdate {
    pub desired_count: Option<u32>,
    pub task_definition: Option<String>,
    pub deployment_configuration: Option<pb::DeploymentConfiguration>,
    pub health_check_grace_period_seconds: Option<u32>,
    pub placement_constraints: Option<Vec<pb::PlacementConstraint>>,
    pub placement_strategy: Option<Vec<pb::PlacementStrategy>>,
}

/// What one step of the service scheduler did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// The tasks created.
    pub started: Vec<pb::Task>,
    /// The tasks ordered to stop, with their instance.
    pub stopped: Vec<(String, String)>,
    /// The events recorded.
    pub events: Vec<String>,
}

impl Reconciled {
    /// The instances with new orders queued, to wake their sessions.
    pub fn instances(&self) -> BTreeSet<String> {
        self.started
            .iter()
            .map(|t| t.container_instance_id.clone())
            .chain(self.stopped.iter().map(|(_, i)| i.clone()))
            .collect()
    }
}

fn key(cluster: &str, name: &str) -> String {
    format!("{cluster}/{name}")
}

/// The startedBy of the service's tasks.
fn started_by(service: &pb::Service) -> String {
    format!("ecs-svc/{}", service.service_id)
}

fn not_found(cluster: &str, name: &str) -> StoreError {
    ServiceError::NotFound {
        cluster: cluster.to_owned(),
        name: name.to_owned(),
    }
    .into()
}

/// The service's tasks among `tasks`.
fn tasks_of<'a>(service: &pb::Service, tasks: &'a [pb::Task]) -> Vec<&'a pb::Task> {
    let by = started_by(service);
    tasks
        .iter()
        .filter(|t| t.cluster == service.cluster && t.started_by == by)
        .collect()
}

/// Fills the counts derived from the tasks.
fn with_counts(mut service: pb::Service, tasks: &[pb::Task]) -> pb::Service {
    let live: Vec<&pb::Task> = tasks_of(&service, tasks)
        .into_iter()
        .filter(|t| is_live(t))
        .collect();
    let running = live
        .iter()
        .filter(|t| t.last_status == pb::TaskStatus::Running as i32)
        .count();
    service.running_count = u32::try_from(running).unwrap_or(u32::MAX);
    service.pending_count = u32::try_from(live.len() - running).unwrap_or(u32::MAX);
    service
}

fn check_fields(service: &pb::Service) -> Result<(), ServiceError> {
    let name = &service.service_name;
    validate::strategy(name, &service.scheduling_strategy)?;
    if let Some(config) = &service.deployment_configuration {
        validate::deployment(name, config)?;
    }
    validate::constraints(name, &service.placement_constraints)?;
    validate::strategies(name, &service.placement_strategy)?;
    Ok(())
}

impl Store {
    /// Creates a service (an INACTIVE one of the same name is replaced). The task definition
    /// reference is resolved to family:revision.
    pub fn create_service(
        &self,
        cluster: &str,
        mut service: pb::Service,
        created_by: &str,
    ) -> Result<pb::Service, StoreError> {
        validate::name(&service.service_name)?;
        if service.scheduling_strategy.is_empty() {
            service.scheduling_strategy = REPLICA.to_owned();
        }
        check_fields(&service)?;
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            if txn.open_table(CLUSTERS)?.get(cluster)?.is_none() {
                return Err(StoreError::ClusterNotFound {
                    name: cluster.to_owned(),
                });
            }
            let def = load_definition(&txn.open_table(TASK_DEFS)?, &service.task_definition)?;
            let mut table = txn.open_table(SERVICES)?;
            let k = key(cluster, &service.service_name);
            if let Some(old) = get_rec::<pb::Service>(&table, "services", &k)?
                && old.status != INACTIVE_SERVICE
            {
                return Err(ServiceError::Exists {
                    cluster: cluster.to_owned(),
                    name: service.service_name.clone(),
                }
                .into());
            }
            let daemon = service.scheduling_strategy == DAEMON;
            let stored = pb::Service {
                service_name: service.service_name.clone(),
                cluster: cluster.to_owned(),
                service_id: new_id(),
                task_definition: format!("{}:{}", def.family, def.revision),
                // A daemon's desired count is its instances', set by the scheduler.
                desired_count: if daemon { 0 } else { service.desired_count },
                scheduling_strategy: service.scheduling_strategy.clone(),
                placement_constraints: service.placement_constraints.clone(),
                placement_strategy: service.placement_strategy.clone(),
                deployment_configuration: service.deployment_configuration,
                health_check_grace_period_seconds: service.health_check_grace_period_seconds,
                status: ACTIVE_SERVICE.to_owned(),
                created_at: Some(now()),
                created_by: created_by.to_owned(),
                ..Default::default()
            };
            put_rec(&mut table, &k, &stored)?;
            tracing::info!(cluster, service = %stored.service_name, task_definition = %stored.task_definition, desired = stored.desired_count, strategy = %stored.scheduling_strategy, "service created");
            Ok(stored)
        })
    }

    /// Changes an ACTIVE service; the service scheduler acts on it at its next step.
    pub fn update_service(
        &self,
        cluster: &str,
        name: &str,
        update: ServiceUpdate,
    ) -> Result<pb::Service, StoreError> {
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            let mut table = txn.open_table(SERVICES)?;
            let k = key(cluster, name);
            let mut service: pb::Service =
                get_rec(&table, "services", &k)?.ok_or_else(|| not_found(cluster, name))?;
            if service.status != ACTIVE_SERVICE {
                return Err(ServiceError::NotActive {
                    name: name.to_owned(),
                    status: service.status,
                }
                .into());
            }
            if let Some(reference) = &update.task_definition {
                let def = load_definition(&txn.open_table(TASK_DEFS)?, reference)?;
                service.task_definition = format!("{}:{}", def.family, def.revision);
            }
            if let Some(n) = update.desired_count
                && service.scheduling_strategy != DAEMON
            {
                service.desired_count = n;
            }
            if let Some(config) = update.deployment_configuration {
                service.deployment_configuration = Some(config);
            }
            if let Some(grace) = update.health_check_grace_period_seconds {
                service.health_check_grace_period_seconds = grace;
            }
            if let Some(c) = update.placement_constraints {
                service.placement_constraints = c;
            }
            if let Some(s) = update.placement_strategy {
                service.placement_strategy = s;
            }
            check_fields(&service)?;
            put_rec(&mut table, &k, &service)?;
            tracing::info!(cluster, service = name, task_definition = %service.task_definition, desired = service.desired_count, "service updated");
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            Ok(with_counts(service, &tasks))
        })
    }

    /// Deletes a service: DRAINING with desired count 0, its tasks stopped by the service
    /// scheduler, then INACTIVE. A REPLICA service still scaled above 0 needs `force`.
    pub fn delete_service(
        &self,
        cluster: &str,
        name: &str,
        force: bool,
    ) -> Result<pb::Service, StoreError> {
        self.ensure_cluster(cluster)?;
        self.write(|txn| {
            let mut table = txn.open_table(SERVICES)?;
            let k = key(cluster, name);
            let mut service: pb::Service =
                get_rec(&table, "services", &k)?.ok_or_else(|| not_found(cluster, name))?;
            if service.status == ACTIVE_SERVICE {
                if !force && service.scheduling_strategy == REPLICA && service.desired_count > 0 {
                    return Err(ServiceError::StillScaled {
                        name: name.to_owned(),
                        desired: service.desired_count,
                    }
                    .into());
                }
                service.status = DRAINING_SERVICE.to_owned();
                service.desired_count = 0;
                events::push(&mut service, events::deleted(name));
                put_rec(&mut table, &k, &service)?;
                tracing::info!(
                    cluster,
                    service = name,
                    force,
                    "service deleted; its tasks are being stopped"
                );
            }
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            Ok(with_counts(service, &tasks))
        })
    }

    /// The services asked for (with their counts and latest events), and the names not found.
    pub fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<(Vec<pb::Service>, Vec<String>), StoreError> {
        self.ensure_cluster(cluster)?;
        self.read(|txn| {
            let table = txn.open_table(SERVICES)?;
            let tasks = load_tasks(&txn.open_table(TASKS)?)?;
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for name in names {
                match get_rec::<pb::Service>(&table, "services", &key(cluster, name))? {
                    Some(s) => found.push(with_counts(s, &tasks)),
                    None => missing.push(name.clone()),
                }
            }
            Ok((found, missing))
        })
    }

    /// The names of the cluster's services that are not INACTIVE, optionally of one strategy.
    pub fn list_services(
        &self,
        cluster: &str,
        strategy: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        self.ensure_cluster(cluster)?;
        Ok(self
            .all_services()?
            .into_iter()
            .filter(|s| {
                s.cluster == cluster
                    && s.status != INACTIVE_SERVICE
                    && strategy.is_none_or(|st| s.scheduling_strategy == st)
            })
            .map(|s| s.service_name)
            .collect())
    }

    fn all_services(&self) -> Result<Vec<pb::Service>, StoreError> {
        self.read(|txn| all_recs(&txn.open_table(SERVICES)?, "services"))
    }

    /// The service's events, oldest first.
    pub fn service_events(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Vec<pb::ServiceEvent>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SERVICES)?;
            let service: pb::Service = get_rec(&table, "services", &key(cluster, name))?
                .ok_or_else(|| not_found(cluster, name))?;
            Ok(service.events.into_iter().rev().collect())
        })
    }

    /// The keys of the services the service scheduler looks after (not INACTIVE).
    pub fn services_to_reconcile(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .all_services()?
            .into_iter()
            .filter(|s| s.status != INACTIVE_SERVICE)
            .map(|s| (s.cluster, s.service_name))
            .collect())
    }

    /// One step of the service scheduler for one service, all in one transaction: stop what
    /// must go, place and create what is missing, record events. A step with nothing to do
    /// writes nothing (so it does not wake the scheduler that runs it).
    pub fn reconcile_service(
        &self,
        cluster: &str,
        name: &str,
        connected: &HashSet<String>,
        degraded: &BTreeMap<String, String>,
        at: SystemTime,
    ) -> Result<Reconciled, StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        match step(&txn, cluster, name, connected, degraded, at) {
            Ok(Some(done)) => {
                txn.commit().map_err(redb::Error::from)?;
                self.commits.send_modify(|n| *n = n.wrapping_add(1));
                Ok(done)
            }
            Ok(None) => {
                txn.abort().map_err(redb::Error::from)?;
                Ok(Reconciled::default())
            }
            Err(e) => {
                if let Err(error) = txn.abort() {
                    tracing::warn!(%error, "aborting a write transaction failed");
                }
                Err(e)
            }
        }
    }
}

/// The step in `txn`; None when it changes nothing.
fn step(
    txn: &WriteTransaction,
    cluster: &str,
    name: &str,
    connected: &HashSet<String>,
    degraded: &BTreeMap<String, String>,
    at: SystemTime,
) -> Result<Option<Reconciled>, StoreError> {
    let k = key(cluster, name);
    let Some(mut service) = get_rec::<pb::Service>(&txn.open_table(SERVICES)?, "services", &k)?
    else {
        return Ok(None);
    };
    if service.status == INACTIVE_SERVICE {
        return Ok(None);
    }
    let all_tasks = load_tasks(&txn.open_table(TASKS)?)?;
    let instances: Vec<InstanceRecord> =
        all_recs::<InstanceRecord>(&txn.open_table(INSTANCES)?, "instances")?
            .into_iter()
            .filter(|i| i.instance.cluster == cluster)
            .collect();
    let takes_tasks: HashSet<String> = connected
        .iter()
        .filter(|id| !degraded.contains_key(*id))
        .cloned()
        .collect();
    let mine = tasks_of(&service, &all_tasks);
    let decided = plan(&View {
        service: &service,
        tasks: &mine,
        instances: &instances,
        connected: &takes_tasks,
        now: at,
    });
    let before = service.clone();
    let mut done = Reconciled::default();
    if let Some(n) = decided.daemon_desired {
        service.desired_count = n;
    }
    stop_tasks(txn, &service, &decided.stop, &mut done)?;
    let (started, unplaced) = start_tasks(
        txn,
        &service,
        &decided.start,
        &all_tasks,
        &instances,
        connected,
        degraded,
        &mut done,
    )?;
    if !done.stopped.is_empty() {
        let ids: Vec<String> = done.stopped.iter().map(|(t, _)| t.clone()).collect();
        done.events.push(events::stopped(name, &ids));
    }
    if !started.is_empty() {
        done.events.push(events::started(name, &started));
    }
    if let Some(why) = unplaced {
        done.events.push(why);
    }
    if decided.steady {
        done.events.push(events::steady(name));
    }
    let mut recorded = Vec::new();
    for e in std::mem::take(&mut done.events) {
        if events::push(&mut service, e.clone()) {
            recorded.push(e);
        }
    }
    done.events = recorded;
    if service.status == DRAINING_SERVICE && mine.iter().all(|t| !is_live(t)) {
        service.status = INACTIVE_SERVICE.to_owned();
        tracing::info!(
            cluster,
            service = name,
            "service INACTIVE: its tasks are stopped"
        );
    }
    if service == before && done.started.is_empty() && done.stopped.is_empty() {
        return Ok(None);
    }
    put_rec(&mut txn.open_table(SERVICES)?, &k, &service)?;
    Ok(Some(done))
}

/// Marks each task desired STOPPED and queues its stop order (ServiceSchedulerInitiated).
fn stop_tasks(
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
        let seq = enqueue(
            &mut sessions,
            &mut outbox,
            &task.container_instance_id,
            |seq| {
                scheduler_message::Message::Stop(pb::StopTaskOrder {
                    seq,
                    task_id: task.task_id.clone(),
                    stop_code: StopCode::ServiceSchedulerInitiated as i32,
                    reason: reason.clone(),
                })
            },
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
fn start_tasks(
    txn: &WriteTransaction,
    service: &pb::Service,
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
    let by = started_by(service);
    let created = create_tasks(
        txn,
        &RunTasks {
            cluster: &service.cluster,
            task_definition: &reference,
            count: 0,
            started_by: &by,
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

impl From<ServiceError> for StoreError {
    fn from(e: ServiceError) -> Self {
        StoreError::Service(e)
    }
}
