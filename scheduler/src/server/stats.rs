//! `GetTaskStats` and `GetInstanceStats`: reads of the telemetry window, scoped to a cluster
//! like the other reads (a task or instance of another cluster is reported missing), and the
//! health and measured use that `DescribeContainerInstances` shows beside each instance.

use std::collections::BTreeSet;

use berth_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::store::DEFAULT_CLUSTER;
use crate::trust::{Rpc, Scope};

fn cluster_or_default(name: &str) -> String {
    if name.is_empty() {
        DEFAULT_CLUSTER.to_owned()
    } else {
        name.to_owned()
    }
}

pub(crate) async fn task_stats(
    shared: &Shared,
    request: Request<pb::GetTaskStatsRequest>,
) -> Result<Response<pb::GetTaskStatsResponse>, Status> {
    let cluster = cluster_or_default(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::GetTaskStats, Scope::Cluster(&cluster))?;
    let req = request.into_inner();
    // The cluster's tasks that are not stopped: what the window may show to this caller.
    let in_cluster: BTreeSet<String> = {
        let cluster = cluster.clone();
        shared
            .db(move |s| s.list_tasks(&cluster, None, None))
            .await?
            .into_iter()
            .map(|t| t.task_id)
            .collect()
    };
    let wanted: Vec<String> = if req.tasks.is_empty() {
        shared
            .telemetry
            .task_ids()
            .into_iter()
            .filter(|id| in_cluster.contains(id))
            .collect()
    } else {
        req.tasks.clone()
    };
    let mut tasks = Vec::new();
    let mut missing = Vec::new();
    for id in wanted {
        let found = in_cluster
            .contains(&id)
            .then(|| shared.telemetry.task(&id, req.history))
            .flatten();
        match found {
            Some(stats) => tasks.push(stats),
            None => missing.push(id),
        }
    }
    Ok(Response::new(pb::GetTaskStatsResponse { tasks, missing }))
}

pub(crate) async fn instance_stats(
    shared: &Shared,
    request: Request<pb::GetInstanceStatsRequest>,
) -> Result<Response<pb::GetInstanceStatsResponse>, Status> {
    let cluster = cluster_or_default(&request.get_ref().cluster);
    shared.authorize(&request, Rpc::GetInstanceStats, Scope::Cluster(&cluster))?;
    let req = request.into_inner();
    let registered: Vec<String> = shared
        .db(move |s| s.list_instances(&cluster))
        .await?
        .into_iter()
        .map(|i| i.container_instance_id)
        .collect();
    let wanted = if req.container_instances.is_empty() {
        registered.clone()
    } else {
        req.container_instances.clone()
    };
    let mut instances = Vec::new();
    let mut missing = Vec::new();
    for id in wanted {
        let found = registered
            .contains(&id)
            .then(|| shared.telemetry.instance(&id, req.history))
            .flatten();
        match found {
            Some(stats) => instances.push(stats),
            None if req.container_instances.is_empty() => {}
            None => missing.push(id),
        }
    }
    Ok(Response::new(pb::GetInstanceStatsResponse {
        instances,
        missing,
    }))
}

/// Fills in each instance's latest health and measured use from the window.
pub(crate) fn annotate(shared: &Shared, instances: &mut [pb::ContainerInstance]) {
    for i in instances {
        let (health, measured) = shared.telemetry.instance_status(&i.container_instance_id);
        if let Some((health, at)) = health {
            i.health = Some(health);
            i.health_at = Some(prost_types::Timestamp::from(at));
        }
        i.measured = measured;
    }
}
