//! `ListImages` and `CollectImages`: requests relayed to an instance's agent over its session
//! (the agent has no inbound port), each with an ID and a deadline, answered by one
//! `ImagesResponse`. The call hands the instance's session an [`ImagesCall`]; the session sends
//! the request and routes the answer with the same ID back. A caller that gives up (its
//! deadline, or it went away) leaves a route the session drops with the next request or its
//! end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{self as pb, ImagesAction};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::Shared;
use super::control::cluster_or_default;
use super::error::ServerError;
use crate::store::StoreError;
use crate::trust::{Rpc, Scope};

/// How long ListImages waits for the agent.
const LIST_DEADLINE: Duration = Duration::from_secs(30);
/// How long CollectImages waits: a pass removes at most `image_removals_per_cycle` images,
/// each waiting for containerd's garbage collector.
const COLLECT_DEADLINE: Duration = Duration::from_secs(300);

/// What a call asks of a session: send `request`, route its answer to `reply`.
#[derive(Debug)]
pub(crate) struct ImagesCall {
    pub(crate) request: pb::ImagesRequest,
    pub(crate) reply: oneshot::Sender<pb::ImagesResponse>,
}

pub(crate) async fn list_images(
    shared: &Arc<Shared>,
    request: Request<pb::ListImagesRequest>,
) -> Result<Response<pb::ListImagesResponse>, Status> {
    let cluster = cluster_or_default(request.get_ref().cluster.clone());
    shared.authorize(&request, Rpc::ListImages, Scope::Cluster(&cluster))?;
    let instance = request.into_inner().container_instance;
    let answer = ask(shared, cluster, instance, ImagesAction::List, LIST_DEADLINE).await?;
    Ok(Response::new(pb::ListImagesResponse {
        images: answer.images,
    }))
}

pub(crate) async fn collect_images(
    shared: &Arc<Shared>,
    request: Request<pb::CollectImagesRequest>,
) -> Result<Response<pb::CollectImagesResponse>, Status> {
    let cluster = cluster_or_default(request.get_ref().cluster.clone());
    shared.authorize(&request, Rpc::CollectImages, Scope::Cluster(&cluster))?;
    let instance = request.into_inner().container_instance;
    let answer = ask(
        shared,
        cluster,
        instance,
        ImagesAction::Collect,
        COLLECT_DEADLINE,
    )
    .await?;
    tracing::info!(
        removed = answer.removed.len(),
        kept = answer.kept.len(),
        bytes_freed = answer.bytes_freed,
        "image collection asked for by a client"
    );
    Ok(Response::new(pb::CollectImagesResponse {
        removed: answer.removed,
        kept: answer.kept,
        bytes_freed: answer.bytes_freed,
    }))
}

/// Asks the agent of `instance` (which must be of `cluster`) and waits for its answer.
async fn ask(
    shared: &Arc<Shared>,
    cluster: String,
    instance: String,
    action: ImagesAction,
    within: Duration,
) -> Result<pb::ImagesResponse, ServerError> {
    if instance.is_empty() {
        return Err(ServerError::InstanceRequired);
    }
    let (ids, lookup) = (vec![instance.clone()], cluster.clone());
    let (_, missing) = shared
        .db(move |s| s.describe_instances(&lookup, &ids))
        .await?;
    if !missing.is_empty() {
        return Err(StoreError::InstanceNotFound {
            cluster,
            id: instance,
        }
        .into());
    }
    let Some((session, request_id)) = shared.sessions.images_session(&instance) else {
        return Err(ServerError::AgentNotConnected {
            instance_id: instance,
        });
    };
    let (reply, answer) = oneshot::channel();
    let call = ImagesCall {
        request: pb::ImagesRequest {
            request_id,
            action: action as i32,
            deadline: Some((SystemTime::now() + within).into()),
        },
        reply,
    };
    if session.send(call).is_err() {
        return Err(ServerError::SessionClosed {
            instance_id: instance,
        });
    }
    let answer = match tokio::time::timeout(within, answer).await {
        Err(_) => {
            return Err(ServerError::AgentTimeout {
                instance_id: instance,
                seconds: within.as_secs(),
            });
        }
        Ok(Err(_)) => {
            return Err(ServerError::SessionClosed {
                instance_id: instance,
            });
        }
        Ok(Ok(answer)) => answer,
    };
    if !answer.error.is_empty() {
        return Err(ServerError::AgentFailed {
            instance_id: instance,
            message: answer.error,
        });
    }
    Ok(answer)
}
