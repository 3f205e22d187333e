//! Services on the server: ControlService's service calls (`control.rs` delegates here), the
//! `WatchServiceEvents` stream, and the service scheduler's loop.
//!
//! The loop is one task owned by the server's tracker and stopped by its cancellation token.
//! It wakes on every committed store write (a task state change, an instance registered or
//! drained or lost, a service created or updated) and on a periodic tick (an agent that
//! connects or disconnects changes no record), then runs one step per service
//! (`Store::reconcile_service`): each decides from the store alone and writes its tasks in
//! the same transaction, so the loop can stop or die anywhere and start again.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1 as pb;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::Shared;
use super::control::failures;
use crate::store::{DEFAULT_CLUSTER, ServiceUpdate};
use crate::trust::{Rpc, Scope};

/// How often the service scheduler looks at every service without being woken.
pub(crate) const SERVICE_TICK: Duration = Duration::from_secs(2);

/// The response stream of one `WatchServiceEvents` call.
pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchServiceEventsResponse, Status>> + Send>>;

fn cluster_of(name: &str) -> String {
    if name.is_empty() {
        DEFAULT_CLUSTER.to_owned()
    } else {
        name.to_owned()
    }
}

fn wants_name(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        Err(Status::invalid_argument(
            "no service name: name the service (berthctl list-services)",
        ))
    } else {
        Ok(())
    }
}

pub(super) async fn create_service(
    shared: &Shared,
    request: Request<pb::CreateServiceRequest>,
) -> Result<Response<pb::CreateServiceResponse>, Status> {
    let cluster = cluster_of(&request.get_ref().cluster);
    let caller = shared.authorize(&request, Rpc::CreateService, Scope::Cluster(&cluster))?;
    let Some(service) = request.into_inner().service else {
        return Err(Status::invalid_argument(
            "no service: give serviceName, taskDefinition and desiredCount",
        ));
    };
    if service.task_definition.is_empty() {
        return Err(Status::invalid_argument(format!(
            "service {} has no taskDefinition: name a registered family or family:revision",
            service.service_name
        )));
    }
    let by = caller.name.clone();
    let service = shared
        .db(move |s| s.create_service(&cluster, service, &by))
        .await?;
    Ok(Response::new(pb::CreateServiceResponse {
        service: Some(service),
    }))
}

pub(super) async fn update_service(
    shared: &Shared,
    request: Request<pb::UpdateServiceRequest>,
) -> Result<Response<pb::UpdateServiceResponse>, Status> {
    let cluster = cluster_of(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::UpdateService, Scope::Cluster(&cluster))?;
    let req = request.into_inner();
    wants_name(&req.service)?;
    let update = ServiceUpdate {
        desired_count: req.desired_count,
        task_definition: req.task_definition.filter(|t| !t.is_empty()),
        deployment_configuration: req.deployment_configuration,
        health_check_grace_period_seconds: req.health_check_grace_period_seconds,
        placement_constraints: req
            .set_placement_constraints
            .then_some(req.placement_constraints),
        placement_strategy: req.set_placement_strategy.then_some(req.placement_strategy),
    };
    let name = req.service;
    let service = shared
        .db(move |s| s.update_service(&cluster, &name, update))
        .await?;
    Ok(Response::new(pb::UpdateServiceResponse {
        service: Some(service),
    }))
}

pub(super) async fn delete_service(
    shared: &Shared,
    request: Request<pb::DeleteServiceRequest>,
) -> Result<Response<pb::DeleteServiceResponse>, Status> {
    let cluster = cluster_of(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::DeleteService, Scope::Cluster(&cluster))?;
    let req = request.into_inner();
    wants_name(&req.service)?;
    let service = shared
        .db(move |s| s.delete_service(&cluster, &req.service, req.force))
        .await?;
    Ok(Response::new(pb::DeleteServiceResponse {
        service: Some(service),
    }))
}

pub(super) async fn describe_services(
    shared: &Shared,
    request: Request<pb::DescribeServicesRequest>,
) -> Result<Response<pb::DescribeServicesResponse>, Status> {
    let cluster = cluster_of(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::DescribeServices, Scope::Cluster(&cluster))?;
    let names = request.into_inner().services;
    if names.is_empty() {
        return Err(Status::invalid_argument(
            "no service named: give one or more service names (berthctl list-services)",
        ));
    }
    let (services, missing) = shared
        .db(move |s| s.describe_services(&cluster, &names))
        .await?;
    Ok(Response::new(pb::DescribeServicesResponse {
        services,
        failures: failures(missing),
    }))
}

pub(super) async fn list_services(
    shared: &Shared,
    request: Request<pb::ListServicesRequest>,
) -> Result<Response<pb::ListServicesResponse>, Status> {
    let cluster = cluster_of(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::ListServices, Scope::Cluster(&cluster))?;
    let strategy = request.into_inner().scheduling_strategy;
    let service_names = shared
        .db(move |s| s.list_services(&cluster, (!strategy.is_empty()).then_some(&strategy)))
        .await?;
    Ok(Response::new(pb::ListServicesResponse { service_names }))
}

/// What the events stream has sent: the ID of the newest event sent.
struct Follow {
    shared: Arc<Shared>,
    cluster: String,
    service: String,
    follow: bool,
    commits: tokio::sync::watch::Receiver<u64>,
    cancel: CancellationToken,
    last: Option<String>,
    first: bool,
    done: bool,
}

pub(super) async fn watch_service_events(
    shared: Arc<Shared>,
    request: Request<pb::WatchServiceEventsRequest>,
) -> Result<Response<EventStream>, Status> {
    let cluster = cluster_of(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::WatchServiceEvents, Scope::Cluster(&cluster))?;
    let req = request.into_inner();
    wants_name(&req.service)?;
    // The service must exist now: a typo fails at once rather than as a silent stream.
    {
        let (cluster, name) = (cluster.clone(), req.service.clone());
        shared
            .db(move |s| s.service_events(&cluster, &name))
            .await?;
    }
    let state = Follow {
        commits: shared.store.commits(),
        cancel: shared.cancel.clone(),
        shared,
        cluster,
        service: req.service,
        follow: req.follow,
        last: None,
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            if !f.first {
                if !f.follow {
                    return None;
                }
                tokio::select! {
                    () = f.cancel.cancelled() => return None,
                    changed = f.commits.changed() => changed.ok()?,
                }
            }
            f.commits.borrow_and_update();
            let (cluster, name) = (f.cluster.clone(), f.service.clone());
            let read = f
                .shared
                .db(move |s| s.service_events(&cluster, &name))
                .await;
            let first = std::mem::replace(&mut f.first, false);
            let events = match read {
                Ok(events) => events,
                Err(error) => {
                    f.done = true;
                    return Some((Err(Status::from(error)), f));
                }
            };
            // Oldest first: what follows the last one sent (all of them if it was dropped).
            let new: Vec<pb::ServiceEvent> = match &f.last {
                None => events,
                Some(last) => match events.iter().position(|e| &e.id == last) {
                    Some(i) => events[i + 1..].to_vec(),
                    None => events,
                },
            };
            if let Some(newest) = new.last() {
                f.last = Some(newest.id.clone());
            }
            if !new.is_empty() || first {
                return Some((Ok(pb::WatchServiceEventsResponse { events: new }), f));
            }
        }
    });
    Ok(Response::new(Box::pin(stream)))
}

/// The service scheduler: one step per service whenever the store changes, and every
/// [`SERVICE_TICK`], until `cancel`.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut commits = shared.store.commits();
    let mut tick = tokio::time::interval(SERVICE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = commits.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        commits.borrow_and_update();
        reconcile_all(&shared).await;
    }
    tracing::debug!("service scheduler stopped");
}

/// One step for every service that is not INACTIVE.
pub(super) async fn reconcile_all(shared: &Shared) {
    let services = match shared.db(|s| s.services_to_reconcile()).await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot list the services to reconcile; retrying at the next tick");
            return;
        }
    };
    for (cluster, name) in services {
        let connected = shared.sessions.connected();
        let degraded = shared.telemetry.storage_degraded();
        let (c, n) = (cluster.clone(), name.clone());
        let step = shared
            .db(move |s| s.reconcile_service(&c, &n, &connected, &degraded, SystemTime::now()))
            .await;
        match step {
            Ok(done) => {
                for id in done.instances() {
                    shared.sessions.notify(&id);
                }
                for event in &done.events {
                    tracing::info!(cluster = %cluster, service = %name, event = %event, "service event");
                }
            }
            Err(error) => {
                tracing::warn!(cluster = %cluster, service = %name, %error, "service scheduler step failed; retrying at the next tick");
            }
        }
    }
}
