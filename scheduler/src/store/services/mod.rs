//! Services (ECS CreateService and friends): the records (table `services`, keyed by
//! `cluster/name`, the `pb::Service` itself with its bounded events), the calls that create,
//! update, delete, describe and list them, and [`Store::reconcile_service`], the service
//! scheduler's one step for one service: in a single write transaction it reads the service,
//! its tasks and the instances, decides (`decide`, pure), places and creates the new tasks,
//! queues the stop orders and records the events. The tasks it creates carry their
//! deployment's ID as startedBy and the service's task group (`deployments.rs`), so the
//! decision and the tasks it led to are committed together: a scheduler killed at any point
//! finds them on restart and never starts a task twice. Running and pending counts are
//! derived from the tasks when read, never stored.

mod decide;
mod deployments;
mod events;
mod launch;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deployments;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::SystemTime;

use berth_proto::v1 as pb;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{all_recs, get_rec, load_tasks, put_rec, put_task};
use super::definitions::load_definition;
use super::placement::service_group;
use super::records::InstanceRecord;
use super::{CLUSTERS, INSTANCES, Store, StoreError, TASK_DEFS, TASKS, new_id, now};

use decide::{View, is_live, plan};
use deployments::FAILED;

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

/// The startedBy of the tasks of a service stored before deployments existed.
fn legacy_started_by(service: &pb::Service) -> String {
    format!("ecs-svc/{}", service.service_id)
}

fn not_found(cluster: &str, name: &str) -> StoreError {
    ServiceError::NotFound {
        cluster: cluster.to_owned(),
        name: name.to_owned(),
    }
    .into()
}

/// The service's tasks among `tasks`: those of its task group (ECS's `service:NAME`) created
/// since the service was (a service re-created under the name of an INACTIVE one, whose
/// tasks are all stopped, does not take them on), or, started before groups were stored, by
/// `ecs-svc/<service ID>`.
fn tasks_of<'a>(service: &pb::Service, tasks: &'a [pb::Task]) -> Vec<&'a pb::Task> {
    let group = service_group(&service.service_name);
    let legacy = legacy_started_by(service);
    let since = stamp(service.created_at.as_ref());
    tasks
        .iter()
        .filter(|t| {
            t.cluster == service.cluster
                && ((t.group == group && stamp(t.created_at.as_ref()) >= since)
                    || t.started_by == legacy)
        })
        .collect()
}

/// A stored time, comparable (absent sorts first).
fn stamp(at: Option<&prost_types::Timestamp>) -> (i64, i32) {
    at.map_or((0, 0), |t| (t.seconds, t.nanos))
}

/// Moves the service's live tasks of `task_definition` into the deployment `id`: a new
/// deployment of a task definition that already runs (a rollback) keeps those tasks rather
/// than replacing them.
fn adopt_tasks(
    txn: &WriteTransaction,
    service: &pb::Service,
    id: &str,
    task_definition: &str,
) -> Result<(), StoreError> {
    let all = load_tasks(&txn.open_table(TASKS)?)?;
    let mut table = txn.open_table(TASKS)?;
    for t in tasks_of(service, &all) {
        if is_live(t) && t.task_definition == task_definition && t.started_by != id {
            let mut moved = t.clone();
            moved.started_by = id.to_owned();
            put_task(&mut table, &moved)?;
        }
    }
    Ok(())
}

/// Fills the counts derived from the tasks.
fn with_counts(mut service: pb::Service, tasks: &[pb::Task]) -> pb::Service {
    let mine = tasks_of(&service, tasks);
    deployments::with_counts(&mut service, &mine);
    let live: Vec<&pb::Task> = mine.into_iter().filter(|t| is_live(t)).collect();
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
            let mut stored = pb::Service {
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
            let reference = stored.task_definition.clone();
            deployments::begin(&mut stored, &reference, None);
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
            deployments::adopt_legacy(&mut service);
            let mut deployed = None;
            if let Some(reference) = &update.task_definition {
                let def = load_definition(&txn.open_table(TASK_DEFS)?, reference)?;
                let resolved = format!("{}:{}", def.family, def.revision);
                if resolved != service.task_definition {
                    service.task_definition.clone_from(&resolved);
                    deployed = Some(resolved);
                }
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
            if let Some(reference) = deployed {
                let id = deployments::begin(&mut service, &reference, None);
                adopt_tasks(txn, &service, &id, &reference)?;
                tracing::info!(cluster, service = name, deployment = %id, task_definition = %reference, "deployment started");
            } else if let Some(d) = service.deployments.first_mut() {
                d.desired_count = service.desired_count;
            }
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

/// The task definitions among `references` whose containers have a health check.
fn with_health_checks<'a>(
    txn: &WriteTransaction,
    references: impl IntoIterator<Item = &'a str>,
) -> Result<HashSet<String>, StoreError> {
    let table = txn.open_table(TASK_DEFS)?;
    let mut checked = HashSet::new();
    let mut seen = HashSet::new();
    for reference in references {
        if !seen.insert(reference) {
            continue;
        }
        // A definition that is gone has no checks to wait for.
        let Ok(def) = load_definition(&table, reference) else {
            continue;
        };
        if def.containers.iter().any(|c| c.health_check.is_some()) {
            checked.insert(reference.to_owned());
        }
    }
    Ok(checked)
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
    let before = service.clone();
    deployments::adopt_legacy(&mut service);
    let mut all_tasks = load_tasks(&txn.open_table(TASKS)?)?;
    // The circuit breaker first: a rollback changes what the step rolls out.
    let before_tasks = tasks_of(&before, &all_tasks);
    let (mut said, rolled_back) = deployments::advance(&mut service, &before_tasks);
    if let (Some(reference), Some(id)) = (
        rolled_back,
        deployments::primary(&service).map(|d| d.id.clone()),
    ) {
        adopt_tasks(txn, &service, &id, &reference)?;
        all_tasks = load_tasks(&txn.open_table(TASKS)?)?;
    }
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
    let checked = with_health_checks(
        txn,
        mine.iter()
            .map(|t| t.task_definition.as_str())
            .chain([service.task_definition.as_str()]),
    )?;
    let deployment =
        deployments::primary(&service).map(|d| (d.id.clone(), d.rollout_state == FAILED));
    let (deployment, halted) = deployment.unwrap_or_else(|| (legacy_started_by(&service), false));
    let decided = plan(&View {
        service: &service,
        tasks: &mine,
        instances: &instances,
        connected: &takes_tasks,
        checked: &checked,
        halted,
        now: at,
    });
    let mut done = Reconciled::default();
    if let Some(n) = decided.daemon_desired {
        service.desired_count = n;
    }
    launch::stop_tasks(txn, &service, &decided.stop, &mut done)?;
    let (started, unplaced) = launch::start_tasks(
        txn,
        &service,
        &deployment,
        &decided.start,
        &all_tasks,
        &instances,
        connected,
        degraded,
        &mut done,
    )?;
    done.events.append(&mut said);
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
    let all_now = load_tasks(&txn.open_table(TASKS)?)?;
    let live_tasks = tasks_of(&service, &all_now);
    if service.status == DRAINING_SERVICE && mine.iter().all(|t| !is_live(t)) {
        service.status = INACTIVE_SERVICE.to_owned();
        tracing::info!(
            cluster,
            service = name,
            "service INACTIVE: its tasks are stopped"
        );
    }
    done.events.extend(deployments::settle(
        &mut service,
        &live_tasks,
        decided.steady,
        at,
    ));
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
    if service == before && done.started.is_empty() && done.stopped.is_empty() {
        return Ok(None);
    }
    put_rec(&mut txn.open_table(SERVICES)?, &k, &service)?;
    Ok(Some(done))
}

impl From<ServiceError> for StoreError {
    fn from(e: ServiceError) -> Self {
        StoreError::Service(e)
    }
}
