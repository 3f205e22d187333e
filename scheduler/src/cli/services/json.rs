//! Services in ECS's JSON: what `--cli-input-json` and the JSON flags read (CreateService's and
//! UpdateService's input, ECS's field names), and what `-o json` prints.

use std::collections::BTreeMap;

use berth_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use crate::cli::json::{non_empty, time};

/// ECS's placementConstraints item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlacementConstraint {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expression: Option<String>,
}

/// ECS's placementStrategy item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlacementStrategy {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) field: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CircuitBreaker {
    #[serde(default)]
    pub(super) enable: bool,
    #[serde(default)]
    pub(super) rollback: bool,
}

/// ECS's deploymentConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeploymentConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) minimum_healthy_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) maximum_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) deployment_circuit_breaker: Option<CircuitBreaker>,
}

/// CreateService's and UpdateService's input as `aws ecs create-service --cli-input-json`
/// takes it; fields Berth does not use are kept in `other` and named in a note.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServiceInput {
    pub(super) cluster: Option<String>,
    pub(super) service_name: Option<String>,
    /// UpdateService's name of the service.
    pub(super) service: Option<String>,
    pub(super) task_definition: Option<String>,
    pub(super) desired_count: Option<u32>,
    pub(super) scheduling_strategy: Option<String>,
    pub(super) placement_constraints: Option<Vec<PlacementConstraint>>,
    pub(super) placement_strategy: Option<Vec<PlacementStrategy>>,
    pub(super) deployment_configuration: Option<DeploymentConfiguration>,
    pub(super) health_check_grace_period_seconds: Option<u32>,
    #[serde(flatten)]
    pub(super) other: BTreeMap<String, serde_json::Value>,
}

impl From<&PlacementConstraint> for proto::PlacementConstraint {
    fn from(c: &PlacementConstraint) -> Self {
        Self {
            r#type: c.kind.clone(),
            expression: c.expression.clone().unwrap_or_default(),
        }
    }
}

impl From<&PlacementStrategy> for proto::PlacementStrategy {
    fn from(s: &PlacementStrategy) -> Self {
        Self {
            r#type: s.kind.clone(),
            field: s.field.clone().unwrap_or_default(),
        }
    }
}

impl From<&DeploymentConfiguration> for proto::DeploymentConfiguration {
    fn from(d: &DeploymentConfiguration) -> Self {
        Self {
            minimum_healthy_percent: d.minimum_healthy_percent.unwrap_or_default(),
            maximum_percent: d.maximum_percent.unwrap_or_default(),
            deployment_circuit_breaker: d.deployment_circuit_breaker.as_ref().map(|b| {
                proto::DeploymentCircuitBreaker {
                    enable: b.enable,
                    rollback: b.rollback,
                }
            }),
            minimum_healthy_percent_set: d.minimum_healthy_percent.is_some(),
            maximum_percent_set: d.maximum_percent.is_some(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Event {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    message: String,
}

impl From<&proto::ServiceEvent> for Event {
    fn from(e: &proto::ServiceEvent) -> Self {
        Self {
            id: e.id.clone(),
            created_at: time(e.created_at.as_ref()),
            message: e.message.clone(),
        }
    }
}

/// One deployment as ECS's `deployments` shows it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Deployment {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) task_definition: String,
    pub(crate) desired_count: u32,
    pub(crate) pending_count: u32,
    pub(crate) running_count: u32,
    pub(crate) failed_tasks: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) updated_at: Option<String>,
    pub(crate) rollout_state: String,
    pub(crate) rollout_state_reason: String,
    /// While IN_PROGRESS: since when the service has been steady on it (it completes 5 s on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) steady_since: Option<String>,
}

impl From<&proto::Deployment> for Deployment {
    fn from(d: &proto::Deployment) -> Self {
        Self {
            id: d.id.clone(),
            status: d.status.clone(),
            task_definition: d.task_definition.clone(),
            desired_count: d.desired_count,
            pending_count: d.pending_count,
            running_count: d.running_count,
            failed_tasks: d.failed_tasks,
            created_at: time(d.created_at.as_ref()),
            updated_at: time(d.updated_at.as_ref()),
            rollout_state: d.rollout_state.clone(),
            rollout_state_reason: d.rollout_state_reason.clone(),
            steady_since: time(d.steady_since.as_ref()),
        }
    }
}

/// A service as ECS's DescribeServices shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Service {
    service_name: String,
    cluster_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_arn: Option<String>,
    task_definition: String,
    desired_count: u32,
    running_count: u32,
    pending_count: u32,
    status: String,
    scheduling_strategy: String,
    placement_constraints: Vec<PlacementConstraint>,
    placement_strategy: Vec<PlacementStrategy>,
    deployment_configuration: DeploymentConfiguration,
    health_check_grace_period_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
    deployments: Vec<Deployment>,
    events: Vec<Event>,
}

impl From<&proto::Service> for Service {
    fn from(s: &proto::Service) -> Self {
        let config = s.deployment_configuration.unwrap_or_default();
        let daemon = s.scheduling_strategy == "DAEMON";
        // ECS's defaults where none was given (a daemon's: 0 and 100).
        let deployment_configuration = DeploymentConfiguration {
            minimum_healthy_percent: Some(if config.minimum_healthy_percent_set {
                config.minimum_healthy_percent
            } else if daemon {
                0
            } else {
                100
            }),
            maximum_percent: Some(if config.maximum_percent_set {
                config.maximum_percent
            } else if daemon {
                100
            } else {
                200
            }),
            deployment_circuit_breaker: Some(
                config
                    .deployment_circuit_breaker
                    .map(|b| CircuitBreaker {
                        enable: b.enable,
                        rollback: b.rollback,
                    })
                    .unwrap_or_default(),
            ),
        };
        Self {
            service_name: s.service_name.clone(),
            cluster_arn: s.cluster.clone(),
            service_arn: non_empty(&s.service_id),
            task_definition: s.task_definition.clone(),
            desired_count: s.desired_count,
            running_count: s.running_count,
            pending_count: s.pending_count,
            status: s.status.clone(),
            scheduling_strategy: s.scheduling_strategy.clone(),
            placement_constraints: s
                .placement_constraints
                .iter()
                .map(|c| PlacementConstraint {
                    kind: c.r#type.clone(),
                    expression: non_empty(&c.expression),
                })
                .collect(),
            placement_strategy: s
                .placement_strategy
                .iter()
                .map(|p| PlacementStrategy {
                    kind: p.r#type.clone(),
                    field: non_empty(&p.field),
                })
                .collect(),
            deployment_configuration,
            health_check_grace_period_seconds: s.health_check_grace_period_seconds,
            created_at: time(s.created_at.as_ref()),
            created_by: non_empty(&s.created_by),
            deployments: s.deployments.iter().map(Deployment::from).collect(),
            events: s.events.iter().map(Event::from).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct OneService {
    pub(super) service: Service,
}

#[derive(Debug, Serialize)]
pub(super) struct Services {
    pub(super) services: Vec<Service>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) failures: Option<Vec<crate::cli::json::Failure>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServiceNames {
    pub(super) service_arns: Vec<String>,
}
