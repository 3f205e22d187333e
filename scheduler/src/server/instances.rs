//! ControlService's DeregisterContainerInstance: the store takes the instance out of its
//! cluster (INACTIVE, certificate revoked, tasks stopped when forced) in one transaction, then
//! the agent, if connected, is cut off at once: its session sends what is queued for it (the
//! stop orders of a forced deregistration) and ends with the reason; its metrics streams end.

use berth_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::store::DEFAULT_CLUSTER;
use crate::trust::{Rpc, Scope};

pub(super) async fn deregister_container_instance(
    shared: &Shared,
    request: Request<pb::DeregisterContainerInstanceRequest>,
) -> Result<Response<pb::DeregisterContainerInstanceResponse>, Status> {
    let cluster = match request.get_ref().cluster.as_str() {
        "" => DEFAULT_CLUSTER.to_owned(),
        c => c.to_owned(),
    };
    let caller = shared.authorize(
        &request,
        Rpc::DeregisterContainerInstance,
        Scope::Cluster(&cluster),
    )?;
    let req = request.into_inner();
    if req.container_instance_id.is_empty() {
        return Err(Status::invalid_argument(
            "no container instance ID: name the instance to deregister (berthctl list-container-instances)",
        ));
    }
    let id = req.container_instance_id.clone();
    let done = {
        let cluster = cluster.clone();
        shared
            .db(move |s| s.deregister_instance(&cluster, &id, req.force))
            .await?
    };
    let id = &req.container_instance_id;
    let session = shared.sessions.cut_off(id);
    let metrics = shared.revocations.revoke(id);
    tracing::info!(
        caller = %caller.name,
        instance.id = %id,
        cluster = %cluster,
        force = req.force,
        stopped_tasks = done.stopped_tasks.len(),
        session_cut_off = session,
        metrics_cut_off = metrics,
        "container instance deregistered; its certificate is revoked"
    );
    let mut instance = done.instance;
    instance.agent_connected = false;
    Ok(Response::new(pb::DeregisterContainerInstanceResponse {
        container_instance: Some(instance),
    }))
}
