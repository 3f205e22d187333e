//! `ControlService`: clusters, task definitions, tasks and container instances for berthctl;
//! the credentials' calls are in `credentials.rs`, `WatchTasks`' stream in `watch.rs`. Every
//! call starts by authorizing its caller for its RPC and scope (`guard.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_proto::v1::control_service_server::ControlService;
use berth_proto::v1::{self as pb, run_task_request};
use tonic::{Request, Response, Status};

use super::logs::{self, LogCommand, LogStream};
use super::services::{self, EventStream};
use super::watch::{WatchStream, watch_tasks};
use super::{ServerError, Shared};
use super::{credentials, instances, stats};
use crate::placement;
use crate::store::{DEFAULT_CLUSTER, RunTasks, StoreError};
use crate::taskdef;
use crate::trust::{Rpc, Scope};

/// The control plane's service.
#[derive(Debug)]
pub(crate) struct Control {
    shared: Arc<Shared>,
}

impl Control {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn mark_connected(&self, instances: &mut [pb::ContainerInstance]) {
        for i in instances.iter_mut() {
            i.agent_connected = self.shared.sessions.is_connected(&i.container_instance_id);
        }
        stats::annotate(&self.shared, instances);
    }

    /// Parses and registers an ECS JSON definition; the notes say what was ignored.
    async fn register_json(
        &self,
        json: &str,
    ) -> Result<(pb::TaskDefinition, Vec<String>), ServerError> {
        let taskdef::Parsed { definition, notes } = taskdef::parse_with_notes(json)?;
        let stored = self
            .shared
            .db(move |s| s.register_task_definition(definition))
            .await?;
        Ok((stored, notes))
    }
}

pub(super) fn cluster_or_default(name: String) -> String {
    if name.is_empty() {
        DEFAULT_CLUSTER.to_owned()
    } else {
        name
    }
}

pub(super) fn failures(missing: Vec<String>) -> Vec<pb::Failure> {
    missing
        .into_iter()
        .map(|arn| pb::Failure {
            arn,
            reason: "MISSING".to_owned(),
        })
        .collect()
}

#[tonic::async_trait]
impl ControlService for Control {
    async fn create_cluster(
        &self,
        request: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::CreateClusterResponse>, Status> {
        self.shared
            .authorize(&request, Rpc::CreateCluster, Scope::Global)?;
        let name = cluster_or_default(request.into_inner().name);
        let cluster = self.shared.db(move |s| s.create_cluster(&name)).await?;
        Ok(Response::new(pb::CreateClusterResponse {
            cluster: Some(cluster),
        }))
    }

    async fn describe_clusters(
        &self,
        request: Request<pb::DescribeClustersRequest>,
    ) -> Result<Response<pb::DescribeClustersResponse>, Status> {
        let scope = match request.get_ref().names.as_slice() {
            [one] => Scope::Cluster(one),
            _ => Scope::Global,
        };
        self.shared
            .authorize(&request, Rpc::DescribeClusters, scope)?;
        let names = request.into_inner().names;
        let (clusters, missing) = self.shared.db(move |s| s.describe_clusters(&names)).await?;
        Ok(Response::new(pb::DescribeClustersResponse {
            clusters,
            failures: failures(missing),
        }))
    }

    async fn list_clusters(
        &self,
        request: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        self.shared
            .authorize(&request, Rpc::ListClusters, Scope::Global)?;
        let names = self.shared.db(|s| s.list_clusters()).await?;
        Ok(Response::new(pb::ListClustersResponse { names }))
    }

    async fn delete_cluster(
        &self,
        request: Request<pb::DeleteClusterRequest>,
    ) -> Result<Response<pb::DeleteClusterResponse>, Status> {
        let name = cluster_or_default(request.get_ref().name.clone());
        self.shared
            .authorize(&request, Rpc::DeleteCluster, Scope::Cluster(&name))?;
        let cluster = self.shared.db(move |s| s.delete_cluster(&name)).await?;
        Ok(Response::new(pb::DeleteClusterResponse {
            cluster: Some(cluster),
        }))
    }

    async fn register_task_definition(
        &self,
        request: Request<pb::RegisterTaskDefinitionRequest>,
    ) -> Result<Response<pb::RegisterTaskDefinitionResponse>, Status> {
        self.shared
            .authorize(&request, Rpc::RegisterTaskDefinition, Scope::Shared)?;
        let json = request.into_inner().task_definition_json;
        let (def, notes) = self.register_json(&json).await?;
        Ok(Response::new(pb::RegisterTaskDefinitionResponse {
            task_definition: Some(def),
            notes,
        }))
    }

    async fn describe_task_definition(
        &self,
        request: Request<pb::DescribeTaskDefinitionRequest>,
    ) -> Result<Response<pb::DescribeTaskDefinitionResponse>, Status> {
        self.shared
            .authorize(&request, Rpc::DescribeTaskDefinition, Scope::Shared)?;
        let reference = request.into_inner().task_definition;
        let def = self
            .shared
            .db(move |s| s.task_definition(&reference))
            .await?;
        Ok(Response::new(pb::DescribeTaskDefinitionResponse {
            task_definition: Some(def),
        }))
    }

    async fn list_task_definitions(
        &self,
        request: Request<pb::ListTaskDefinitionsRequest>,
    ) -> Result<Response<pb::ListTaskDefinitionsResponse>, Status> {
        self.shared
            .authorize(&request, Rpc::ListTaskDefinitions, Scope::Shared)?;
        let family = request.into_inner().family;
        let task_definitions = self
            .shared
            .db(move |s| s.list_task_definitions((!family.is_empty()).then_some(family.as_str())))
            .await?;
        Ok(Response::new(pb::ListTaskDefinitionsResponse {
            task_definitions,
        }))
    }

    async fn run_task(
        &self,
        request: Request<pb::RunTaskRequest>,
    ) -> Result<Response<pb::RunTaskResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared
            .authorize(&request, Rpc::RunTask, Scope::Cluster(&cluster))?;
        let req = request.into_inner();
        {
            let cluster = cluster.clone();
            self.shared.db(move |s| s.ensure_cluster(&cluster)).await?;
        }
        // A malformed attachment is refused before a definition given as JSON is registered;
        // the store checks it again against the definition and count.
        if let Some(attachment) = &req.network_attachment {
            crate::attachment::checked(attachment).map_err(|e| ServerError::Store(e.into()))?;
        }
        let (constraints, strategies) =
            placement_of(&req.placement_constraints, &req.placement_strategy)
                .map_err(|why| ServerError::Store(StoreError::InvalidPlacement { why }))?;
        let (reference, notes) = match req.definition {
            Some(run_task_request::Definition::TaskDefinition(r)) if !r.is_empty() => {
                (r, Vec::new())
            }
            Some(run_task_request::Definition::TaskDefinitionJson(json)) => {
                let (def, notes) = self.register_json(&json).await?;
                (format!("{}:{}", def.family, def.revision), notes)
            }
            _ => return Err(ServerError::MissingDefinition.into()),
        };
        let connected = self.shared.sessions.connected();
        let degraded = self.shared.telemetry.storage_degraded();
        let (count, started_by, attachment) = (req.count, req.started_by, req.network_attachment);
        let instance = req.container_instance_id;
        let tasks = self
            .shared
            .db(move |s| {
                s.run_tasks(
                    RunTasks {
                        cluster: &cluster,
                        task_definition: &reference,
                        count,
                        started_by: &started_by,
                        group: "",
                        network_attachment: attachment.as_ref(),
                        container_instance: (!instance.is_empty()).then_some(instance.as_str()),
                        storage_degraded: Some(&degraded),
                        placement_constraints: &constraints,
                        placement_strategy: &strategies,
                    },
                    &connected,
                )
            })
            .await?;
        for task in &tasks {
            tracing::debug!(target: "berth::phase", phase = "placed", task.id = %task.task_id, "phase ended");
        }
        let instances: BTreeSet<&str> = tasks
            .iter()
            .map(|t| t.container_instance_id.as_str())
            .collect();
        for id in instances {
            self.shared.sessions.notify(id);
        }
        Ok(Response::new(pb::RunTaskResponse { tasks, notes }))
    }

    async fn stop_task(
        &self,
        request: Request<pb::StopTaskRequest>,
    ) -> Result<Response<pb::StopTaskResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared
            .authorize(&request, Rpc::StopTask, Scope::Cluster(&cluster))?;
        let req = request.into_inner();
        let (task, enqueued) = self
            .shared
            .db(move |s| s.stop_task(&cluster, &req.task_id, &req.reason))
            .await?;
        if enqueued {
            self.shared.sessions.notify(&task.container_instance_id);
        }
        Ok(Response::new(pb::StopTaskResponse { task: Some(task) }))
    }

    type GetTaskLogsStream = LogStream;

    async fn get_task_logs(
        &self,
        request: Request<pb::GetTaskLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared
            .authorize(&request, Rpc::GetTaskLogs, Scope::Cluster(&cluster))?;
        let req = request.into_inner();
        let task_id = req.task_id.clone();
        let (task, definition) = self
            .shared
            .db(move |s| {
                let (tasks, _) = s.describe_tasks(&cluster, std::slice::from_ref(&task_id))?;
                let task = tasks
                    .into_iter()
                    .next()
                    .ok_or_else(|| StoreError::TaskNotFound {
                        cluster: cluster.clone(),
                        task_id: task_id.clone(),
                    })?;
                let definition = s.task_definition(&task.task_definition)?;
                Ok((task, definition))
            })
            .await?;
        let containers: Vec<String> = definition
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let container_name = match (req.container_name.as_str(), containers.as_slice()) {
            ("", [only]) => only.clone(),
            ("", _) => {
                return Err(ServerError::ContainerRequired {
                    task_id: task.task_id,
                    containers,
                }
                .into());
            }
            (name, _) if containers.iter().any(|c| c == name) => name.to_owned(),
            (name, _) => {
                return Err(ServerError::UnknownContainer {
                    task_id: task.task_id,
                    name: name.to_owned(),
                    containers,
                }
                .into());
            }
        };
        let instance_id = task.container_instance_id.clone();
        let Some((session, request_id)) = self.shared.sessions.log_session(&instance_id) else {
            return Err(ServerError::InstanceDisconnected {
                task_id: task.task_id,
                instance_id,
            }
            .into());
        };
        let (to_caller, from_agent) = logs::caller_queue();
        let open = LogCommand::Open {
            request: pb::LogRequest {
                request_id,
                task_id: task.task_id,
                container_name,
                tail: req.tail,
                since: req.since,
                follow: req.follow,
                window: logs::WINDOW,
            },
            to_caller,
        };
        if session.send(open).is_err() {
            return Err(ServerError::SessionClosed { instance_id }.into());
        }
        Ok(Response::new(LogStream::new(
            request_id, from_agent, session,
        )))
    }

    async fn describe_tasks(
        &self,
        request: Request<pb::DescribeTasksRequest>,
    ) -> Result<Response<pb::DescribeTasksResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared
            .authorize(&request, Rpc::DescribeTasks, Scope::Cluster(&cluster))?;
        let req = request.into_inner();
        let (mut tasks, missing) = self
            .shared
            .db(move |s| s.describe_tasks(&cluster, &req.task_ids))
            .await?;
        self.shared.pulls.annotate(&mut tasks);
        Ok(Response::new(pb::DescribeTasksResponse {
            tasks,
            failures: failures(missing),
        }))
    }

    type WatchTasksStream = WatchStream;

    async fn watch_tasks(
        &self,
        request: Request<pb::WatchTasksRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared
            .authorize(&request, Rpc::WatchTasks, Scope::Cluster(&cluster))?;
        let req = request.into_inner();
        Ok(Response::new(watch_tasks(
            Arc::clone(&self.shared),
            cluster,
            req.task_ids,
        )))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared
            .authorize(&request, Rpc::ListTasks, Scope::Cluster(&cluster))?;
        let req = request.into_inner();
        let instance = req.container_instance_id;
        let desired = req.desired_status;
        let tasks = self
            .shared
            .db(move |s| {
                s.list_tasks(
                    &cluster,
                    (!instance.is_empty()).then_some(instance.as_str()),
                    (desired != 0).then_some(desired),
                )
            })
            .await?;
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    async fn list_container_instances(
        &self,
        request: Request<pb::ListContainerInstancesRequest>,
    ) -> Result<Response<pb::ListContainerInstancesResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared.authorize(
            &request,
            Rpc::ListContainerInstances,
            Scope::Cluster(&cluster),
        )?;
        let mut container_instances = self.shared.db(move |s| s.list_instances(&cluster)).await?;
        self.mark_connected(&mut container_instances);
        Ok(Response::new(pb::ListContainerInstancesResponse {
            container_instances,
        }))
    }

    async fn describe_container_instances(
        &self,
        request: Request<pb::DescribeContainerInstancesRequest>,
    ) -> Result<Response<pb::DescribeContainerInstancesResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared.authorize(
            &request,
            Rpc::DescribeContainerInstances,
            Scope::Cluster(&cluster),
        )?;
        let req = request.into_inner();
        let (mut container_instances, missing) = self
            .shared
            .db(move |s| s.describe_instances(&cluster, &req.container_instance_ids))
            .await?;
        self.mark_connected(&mut container_instances);
        Ok(Response::new(pb::DescribeContainerInstancesResponse {
            container_instances,
            failures: failures(missing),
        }))
    }

    async fn deregister_container_instance(
        &self,
        request: Request<pb::DeregisterContainerInstanceRequest>,
    ) -> Result<Response<pb::DeregisterContainerInstanceResponse>, Status> {
        instances::deregister_container_instance(&self.shared, request).await
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        credentials::create_join_token(&self.shared, request).await
    }

    async fn list_join_tokens(
        &self,
        request: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        credentials::list_join_tokens(&self.shared, request).await
    }

    async fn delete_join_token(
        &self,
        request: Request<pb::DeleteJoinTokenRequest>,
    ) -> Result<Response<pb::DeleteJoinTokenResponse>, Status> {
        credentials::delete_join_token(&self.shared, request).await
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        credentials::create_api_token(&self.shared, request).await
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        credentials::list_api_tokens(&self.shared, request).await
    }

    async fn delete_api_token(
        &self,
        request: Request<pb::DeleteApiTokenRequest>,
    ) -> Result<Response<pb::DeleteApiTokenResponse>, Status> {
        credentials::delete_api_token(&self.shared, request).await
    }

    async fn create_client_certificate(
        &self,
        request: Request<pb::CreateClientCertificateRequest>,
    ) -> Result<Response<pb::CreateClientCertificateResponse>, Status> {
        credentials::create_client_certificate(&self.shared, request).await
    }

    async fn list_client_certificates(
        &self,
        request: Request<pb::ListClientCertificatesRequest>,
    ) -> Result<Response<pb::ListClientCertificatesResponse>, Status> {
        credentials::list_client_certificates(&self.shared, request).await
    }

    async fn revoke_client_certificate(
        &self,
        request: Request<pb::RevokeClientCertificateRequest>,
    ) -> Result<Response<pb::RevokeClientCertificateResponse>, Status> {
        credentials::revoke_client_certificate(&self.shared, request).await
    }

    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        super::images::list_images(&self.shared, request).await
    }

    async fn collect_images(
        &self,
        request: Request<pb::CollectImagesRequest>,
    ) -> Result<Response<pb::CollectImagesResponse>, Status> {
        super::images::collect_images(&self.shared, request).await
    }

    async fn get_task_stats(
        &self,
        request: Request<pb::GetTaskStatsRequest>,
    ) -> Result<Response<pb::GetTaskStatsResponse>, Status> {
        stats::task_stats(&self.shared, request).await
    }

    async fn get_instance_stats(
        &self,
        request: Request<pb::GetInstanceStatsRequest>,
    ) -> Result<Response<pb::GetInstanceStatsResponse>, Status> {
        stats::instance_stats(&self.shared, request).await
    }

    async fn update_container_instances_state(
        &self,
        request: Request<pb::UpdateContainerInstancesStateRequest>,
    ) -> Result<Response<pb::UpdateContainerInstancesStateResponse>, Status> {
        let cluster = cluster_or_default(request.get_ref().cluster.clone());
        self.shared.authorize(
            &request,
            Rpc::UpdateContainerInstancesState,
            Scope::Cluster(&cluster),
        )?;
        let req = request.into_inner();
        let (mut container_instances, missing) = self
            .shared
            .db(move |s| {
                s.update_instances_state(&cluster, &req.container_instance_ids, &req.status)
            })
            .await?;
        self.mark_connected(&mut container_instances);
        Ok(Response::new(pb::UpdateContainerInstancesStateResponse {
            container_instances,
            failures: failures(missing),
        }))
    }

    async fn create_service(
        &self,
        request: Request<pb::CreateServiceRequest>,
    ) -> Result<Response<pb::CreateServiceResponse>, Status> {
        services::create_service(&self.shared, request).await
    }

    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> Result<Response<pb::UpdateServiceResponse>, Status> {
        services::update_service(&self.shared, request).await
    }

    async fn delete_service(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> Result<Response<pb::DeleteServiceResponse>, Status> {
        services::delete_service(&self.shared, request).await
    }

    async fn describe_services(
        &self,
        request: Request<pb::DescribeServicesRequest>,
    ) -> Result<Response<pb::DescribeServicesResponse>, Status> {
        services::describe_services(&self.shared, request).await
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        services::list_services(&self.shared, request).await
    }

    type WatchServiceEventsStream = EventStream;

    async fn watch_service_events(
        &self,
        request: Request<pb::WatchServiceEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        services::watch_service_events(self.shared.clone(), request).await
    }

    async fn create_secret(
        &self,
        request: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::CreateSecretResponse>, Status> {
        super::secrets::create_secret(&self.shared, request).await
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        super::secrets::list_secrets(&self.shared, request).await
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Result<Response<pb::DeleteSecretResponse>, Status> {
        super::secrets::delete_secret(&self.shared, request).await
    }
}

/// A request's placement constraints and strategies as the engine takes them: each one valid,
/// no more of either than ECS allows.
pub(crate) fn placement_of(
    constraints: &[pb::PlacementConstraint],
    strategies: &[pb::PlacementStrategy],
) -> Result<(Vec<placement::Constraint>, Vec<placement::Strategy>), String> {
    placement::check_counts(constraints.len(), strategies.len()).map_err(|e| e.to_string())?;
    let constraints = constraints
        .iter()
        .map(|c| placement::Constraint::from_parts(&c.r#type, &c.expression))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let strategies = strategies
        .iter()
        .map(|s| placement::Strategy::from_parts(&s.r#type, &s.field))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((constraints, strategies))
}
