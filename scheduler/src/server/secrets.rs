//! The calls on task secrets: ControlService's CreateSecret, ListSecrets and DeleteSecret
//! (writing needs an operator; no call ever answers with a value), and AgentService's
//! GetTaskSecrets, with which an agent that restarted gets back the values of a task it runs
//! (it never stores them). Values are never logged: only names and sizes are.

use std::time::SystemTime;

use berth_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use super::control::cluster_or_default;
use super::guard::not_yours;
use crate::trust::{Rpc, Scope};

pub(super) async fn create_secret(
    shared: &Shared,
    request: Request<pb::CreateSecretRequest>,
) -> Result<Response<pb::CreateSecretResponse>, Status> {
    let cluster = cluster_or_default(request.get_ref().cluster.clone());
    let caller = shared.authorize(&request, Rpc::CreateSecret, Scope::Cluster(&cluster))?;
    let req = request.into_inner();
    let name = req.name.clone();
    let (secret, replaced) = shared
        .db(move |s| {
            s.create_secret(
                &cluster,
                &req.name,
                &req.value,
                req.overwrite,
                SystemTime::now(),
            )
        })
        .await?;
    tracing::info!(caller = %caller.name, secret = %name, cluster = %secret.cluster, replaced, "secret written");
    Ok(Response::new(pb::CreateSecretResponse {
        secret: Some(secret),
        replaced,
    }))
}

pub(super) async fn list_secrets(
    shared: &Shared,
    request: Request<pb::ListSecretsRequest>,
) -> Result<Response<pb::ListSecretsResponse>, Status> {
    let cluster = cluster_or_default(request.get_ref().cluster.clone());
    shared.authorize(&request, Rpc::ListSecrets, Scope::Cluster(&cluster))?;
    let secrets = shared.db(move |s| s.list_secrets(&cluster)).await?;
    Ok(Response::new(pb::ListSecretsResponse { secrets }))
}

pub(super) async fn delete_secret(
    shared: &Shared,
    request: Request<pb::DeleteSecretRequest>,
) -> Result<Response<pb::DeleteSecretResponse>, Status> {
    let cluster = cluster_or_default(request.get_ref().cluster.clone());
    let caller = shared.authorize(&request, Rpc::DeleteSecret, Scope::Cluster(&cluster))?;
    let name = request.into_inner().name;
    let shown = name.clone();
    shared.db(move |s| s.delete_secret(&cluster, &name)).await?;
    tracing::info!(caller = %caller.name, secret = %shown, "secret deleted");
    Ok(Response::new(pb::DeleteSecretResponse {}))
}

/// The secrets of a task the calling agent runs: refused for a task of another instance.
pub(super) async fn get_task_secrets(
    shared: &Shared,
    request: Request<pb::GetTaskSecretsRequest>,
) -> Result<Response<pb::GetTaskSecretsResponse>, Status> {
    let agent = shared.agent_peer(&request, "GetTaskSecrets").await?;
    let req = request.into_inner();
    let cluster = cluster_or_default(req.cluster.clone());
    if let Some(agent) = &agent
        && (cluster != agent.cluster || req.container_instance_id != agent.instance_id)
    {
        return Err(not_yours(
            agent,
            format!(
                "read the secrets of instance {} in cluster {cluster}",
                req.container_instance_id
            ),
        ));
    }
    let (task_id, instance) = (req.task_id.clone(), req.container_instance_id.clone());
    let secrets = shared
        .db(move |s| {
            let (tasks, _) = s.describe_tasks(&cluster, std::slice::from_ref(&task_id))?;
            let Some(task) = tasks.into_iter().next() else {
                return Ok(Err(Status::not_found(format!(
                    "no task {task_id} in cluster {cluster}"
                ))));
            };
            if task.container_instance_id != instance {
                return Ok(Err(Status::permission_denied(format!(
                    "task {task_id} does not run on instance {instance}"
                ))));
            }
            let definition = s.task_definition(&task.task_definition)?;
            Ok(Ok(s.task_secrets(&cluster, &definition)?))
        })
        .await??;
    tracing::info!(task.id = %req.task_id, instance.id = %req.container_instance_id, "task secrets sent again to the agent");
    Ok(Response::new(pb::GetTaskSecretsResponse { secrets }))
}
