//! The ECS agent's introspection API on the metrics endpoint: `/v1/metadata` (the cluster,
//! this instance, the agent's version) and `/v1/tasks` (every task with its containers; one
//! with `?taskarn=<task id>` or `?dockerid=<container id>`).

use berth_proto::v1::{ContainerState, DesiredStatus, TaskStatus};
use serde_json::{Value, json};

use crate::engine::TaskView;

/// `/v1/metadata`; the instance ID is null until the first registration.
pub(crate) fn metadata(cluster: &str, instance_id: Option<&str>) -> Value {
    json!({
        "Cluster": cluster,
        "ContainerInstanceArn": instance_id,
        "Version": format!("Berth Agent - v{}", env!("CARGO_PKG_VERSION")),
    })
}

/// Which tasks `/v1/tasks` answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskQuery {
    All,
    Task(String),
    Container(String),
}

impl TaskQuery {
    /// From the query parameters; both at once is an error.
    pub(crate) fn new(taskarn: Option<String>, dockerid: Option<String>) -> Result<Self, String> {
        match (taskarn, dockerid) {
            (None, None) => Ok(TaskQuery::All),
            (Some(task), None) => Ok(TaskQuery::Task(task)),
            (None, Some(container)) => Ok(TaskQuery::Container(container)),
            (Some(_), Some(_)) => Err("give taskarn or dockerid, not both".to_owned()),
        }
    }
}

/// `/v1/tasks`: `{"Tasks": [...]}` for All; the one task object otherwise (None: not found).
pub(crate) fn tasks(views: &[TaskView], query: &TaskQuery) -> Option<Value> {
    match query {
        TaskQuery::All => Some(json!({ "Tasks": views.iter().map(task).collect::<Vec<_>>() })),
        TaskQuery::Task(id) => views.iter().find(|v| v.state.task_id == *id).map(task),
        TaskQuery::Container(id) => views
            .iter()
            .find(|v| v.state.containers.iter().any(|c| c.runtime_id == *id))
            .map(task),
    }
}

fn task(view: &TaskView) -> Value {
    let known = TaskStatus::try_from(view.state.status).unwrap_or(TaskStatus::Unspecified);
    let desired =
        DesiredStatus::try_from(view.state.desired_status).unwrap_or(DesiredStatus::Unspecified);
    json!({
        "Arn": view.state.task_id,
        "DesiredStatus": desired.as_str_name().trim_start_matches("DESIRED_STATUS_"),
        "KnownStatus": status_name(known),
        "Family": view.definition.family,
        "Version": view.definition.revision.to_string(),
        "Containers": view.state.containers.iter().map(container).collect::<Vec<_>>(),
    })
}

fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Unspecified | TaskStatus::Provisioning => "NONE",
        TaskStatus::Pending => "PENDING",
        TaskStatus::Pulled => "PULLED",
        TaskStatus::Created => "CREATED",
        TaskStatus::Running => "RUNNING",
        TaskStatus::Stopped => "STOPPED",
    }
}

fn container(c: &ContainerState) -> Value {
    json!({
        "DockerId": c.runtime_id,
        "DockerName": c.runtime_id,
        "Name": c.name,
    })
}
