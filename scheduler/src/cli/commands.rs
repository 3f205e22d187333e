//! berthctl's commands: one ControlService call each (a polling loop for `wait`), rendered as a
//! table or as ECS-style JSON.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use berth_proto::v1 as proto;
use berth_proto::v1::control_service_client::ControlServiceClient;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::args::{Args, Command, DesiredStatusArg, Logs, OutputFormat, RunTask, WaitCondition};
use super::error::{CliError, from_status, root_cause};
use super::json;
use super::table::{Table, terminal_width};
use super::time::{rfc3339_nanos, rfc3339_seconds};

/// How long connecting to the scheduler may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `wait` polls DescribeTasks.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Runs one command against the scheduler, writing its result to `out`.
pub(super) async fn execute(args: Args, out: &mut dyn Write) -> Result<(), CliError> {
    let Args {
        endpoint,
        cluster,
        output,
        command,
    } = args;
    // Read and check files before connecting, so a bad file fails fast without a scheduler.
    let definition_json = match &command {
        Command::RegisterTaskDefinition { file }
        | Command::RunTask(RunTask {
            file: Some(file), ..
        }) => Some(read_definition(file)?),
        _ => None,
    };
    let client = connect(&endpoint).await?;
    let mut ctx = Context {
        client,
        endpoint,
        cluster,
        output,
        out,
    };
    ctx.run(command, definition_json).await
}

/// The text of a task-definition file, checked with the scheduler's own parser.
fn read_definition(path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| CliError::ReadFile {
        path: path.to_owned(),
        error,
    })?;
    crate::taskdef::parse(&text).map_err(|error| CliError::TaskDefinition {
        path: path.to_owned(),
        error,
    })?;
    Ok(text)
}

async fn connect(endpoint: &str) -> Result<ControlServiceClient<Channel>, CliError> {
    let bad = |reason: String| CliError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if !endpoint.starts_with("http://") {
        return Err(bad("use http://HOST:PORT".to_owned()));
    }
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|error| bad(error.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|error| CliError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason: root_cause(&error),
        })?;
    Ok(ControlServiceClient::new(channel))
}

struct Context<'a> {
    client: ControlServiceClient<Channel>,
    endpoint: String,
    cluster: String,
    output: OutputFormat,
    out: &'a mut dyn Write,
}

impl Context<'_> {
    async fn run(
        &mut self,
        command: Command,
        definition_json: Option<String>,
    ) -> Result<(), CliError> {
        let cluster = self.cluster.clone();
        match command {
            Command::CreateCluster { name } => {
                let response = self
                    .call(
                        self.client
                            .clone()
                            .create_cluster(proto::CreateClusterRequest { name }),
                    )
                    .await?;
                self.one_cluster(response.cluster)
            }
            Command::DeleteCluster { name } => {
                let response = self
                    .call(
                        self.client
                            .clone()
                            .delete_cluster(proto::DeleteClusterRequest { name }),
                    )
                    .await?;
                self.one_cluster(response.cluster)
            }
            Command::ListClusters => {
                let response = self
                    .call(
                        self.client
                            .clone()
                            .list_clusters(proto::ListClustersRequest {}),
                    )
                    .await?;
                self.names("NAME", response.names, |names| json::ClusterNames {
                    cluster_names: names,
                })
            }
            Command::DescribeClusters { names } => {
                let response = self
                    .call(
                        self.client
                            .clone()
                            .describe_clusters(proto::DescribeClustersRequest { names }),
                    )
                    .await?;
                self.emit(
                    &json::Clusters {
                        clusters: response.clusters.iter().map(json::Cluster::from).collect(),
                        failures: json::failures(&response.failures),
                    },
                    || clusters_table(&response.clusters),
                )?;
                check_failures(&response.failures)
            }
            Command::RegisterTaskDefinition { .. } => {
                let request = proto::RegisterTaskDefinitionRequest {
                    task_definition_json: definition_json.unwrap_or_default(),
                };
                let response = self
                    .call(self.client.clone().register_task_definition(request))
                    .await?;
                let definition = response.task_definition.unwrap_or_default();
                let name = format!("{}:{}", definition.family, definition.revision);
                self.emit(
                    &json::OneTaskDefinition {
                        task_definition: json::TaskDefinition::from(&definition),
                    },
                    || format!("{name}\n"),
                )
            }
            Command::ListTaskDefinitions { family } => {
                let request = proto::ListTaskDefinitionsRequest {
                    family: family.unwrap_or_default(),
                };
                let response = self
                    .call(self.client.clone().list_task_definitions(request))
                    .await?;
                self.names("TASK DEFINITION", response.task_definitions, |names| {
                    json::TaskDefinitionNames {
                        task_definitions: names,
                    }
                })
            }
            Command::DescribeTaskDefinition { task_definition } => {
                let request = proto::DescribeTaskDefinitionRequest { task_definition };
                let response = self
                    .call(self.client.clone().describe_task_definition(request))
                    .await?;
                let definition = response.task_definition.unwrap_or_default();
                self.emit(
                    &json::OneTaskDefinition {
                        task_definition: json::TaskDefinition::from(&definition),
                    },
                    || task_definition_tables(&definition),
                )
            }
            Command::RunTask(run) => {
                let definition = match (run.task_definition, definition_json) {
                    (_, Some(json)) => {
                        proto::run_task_request::Definition::TaskDefinitionJson(json)
                    }
                    (Some(name), None) => proto::run_task_request::Definition::TaskDefinition(name),
                    // clap requires one of the two.
                    (None, None) => {
                        proto::run_task_request::Definition::TaskDefinition(String::new())
                    }
                };
                let request = proto::RunTaskRequest {
                    cluster,
                    definition: Some(definition),
                    count: run.count,
                    started_by: run.started_by,
                    network_attachment: run.network_attachment,
                    container_instance_id: run.container_instance.unwrap_or_default(),
                };
                let response = self.call(self.client.clone().run_task(request)).await?;
                self.emit(&json::Tasks::of(&response.tasks, None), || {
                    response
                        .tasks
                        .iter()
                        .map(|t| format!("{}\n", t.task_id))
                        .collect()
                })
            }
            Command::ListTasks {
                container_instance,
                desired_status,
            } => {
                let desired_status = match desired_status {
                    None => proto::DesiredStatus::Unspecified,
                    Some(DesiredStatusArg::Running) => proto::DesiredStatus::Running,
                    Some(DesiredStatusArg::Stopped) => proto::DesiredStatus::Stopped,
                };
                let request = proto::ListTasksRequest {
                    cluster,
                    container_instance_id: container_instance.unwrap_or_default(),
                    desired_status: desired_status as i32,
                };
                let response = self.call(self.client.clone().list_tasks(request)).await?;
                self.emit(&json::Tasks::of(&response.tasks, None), || {
                    tasks_table(&response.tasks)
                })
            }
            Command::DescribeTasks { ids } => {
                let request = proto::DescribeTasksRequest {
                    cluster,
                    task_ids: ids,
                };
                let response = self
                    .call(self.client.clone().describe_tasks(request))
                    .await?;
                self.emit(
                    &json::Tasks::of(&response.tasks, Some(&response.failures)),
                    || tasks_table(&response.tasks),
                )?;
                check_failures(&response.failures)
            }
            Command::StopTask { id, reason } => {
                let request = proto::StopTaskRequest {
                    cluster,
                    task_id: id,
                    reason: reason.unwrap_or_default(),
                };
                let response = self.call(self.client.clone().stop_task(request)).await?;
                let task = response.task.unwrap_or_default();
                self.emit(
                    &json::OneTask {
                        task: json::Task::from(&task),
                    },
                    || tasks_table(std::slice::from_ref(&task)),
                )
            }
            Command::ListContainerInstances => {
                let request = proto::ListContainerInstancesRequest { cluster };
                let response = self
                    .call(self.client.clone().list_container_instances(request))
                    .await?;
                self.emit(
                    &json::ContainerInstances::of(&response.container_instances, None),
                    || instances_table(&response.container_instances),
                )
            }
            Command::DescribeContainerInstances { ids } => {
                let request = proto::DescribeContainerInstancesRequest {
                    cluster,
                    container_instance_ids: ids,
                };
                let response = self
                    .call(self.client.clone().describe_container_instances(request))
                    .await?;
                self.emit(
                    &json::ContainerInstances::of(
                        &response.container_instances,
                        Some(&response.failures),
                    ),
                    || instances_table(&response.container_instances),
                )?;
                check_failures(&response.failures)
            }
            Command::Logs(logs) => self.logs(cluster, logs).await,
            Command::Wait {
                condition,
                ids,
                timeout,
            } => {
                let client = self.client.clone();
                let endpoint = self.endpoint.clone();
                wait_for(condition, &ids, timeout, move |task_ids| {
                    let mut client = client.clone();
                    let endpoint = endpoint.clone();
                    let request = proto::DescribeTasksRequest {
                        cluster: cluster.clone(),
                        task_ids,
                    };
                    async move {
                        client
                            .describe_tasks(request)
                            .await
                            .map(tonic::Response::into_inner)
                            .map_err(|status| from_status(&endpoint, &status))
                    }
                })
                .await
            }
        }
    }

    /// Streams a container's log: stdout lines to `out`, stderr lines to standard error.
    async fn logs(&mut self, cluster: String, logs: Logs) -> Result<(), CliError> {
        let request = proto::GetTaskLogsRequest {
            cluster,
            task_id: logs.task,
            container_name: logs.container.unwrap_or_default(),
            tail: logs.tail,
            since: logs.since.map(prost_types::Timestamp::from),
            follow: logs.follow,
        };
        let mut stream = self
            .call(self.client.clone().get_task_logs(request))
            .await?;
        let endpoint = self.endpoint.clone();
        let mut stderr = std::io::stderr();
        while let Some(response) = stream
            .message()
            .await
            .map_err(|status| from_status(&endpoint, &status))?
        {
            for line in response.lines {
                let to: &mut dyn Write = if line.output == proto::LogOutput::Stderr as i32 {
                    &mut stderr
                } else {
                    &mut *self.out
                };
                if logs.timestamps {
                    let time = line.time.as_ref().map(rfc3339_nanos).unwrap_or_default();
                    write!(to, "{time} ").map_err(CliError::Output)?;
                }
                to.write_all(line.text.as_bytes())
                    .map_err(CliError::Output)?;
            }
            self.out.flush().map_err(CliError::Output)?;
            stderr.flush().map_err(CliError::Output)?;
        }
        Ok(())
    }

    /// Awaits one call, turning its status into a [`CliError`].
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|status| from_status(&self.endpoint, &status))
    }

    /// Writes `json` in JSON mode, else the text `table` makes.
    fn emit(
        &mut self,
        json: &impl Serialize,
        table: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let text = match self.output {
            OutputFormat::Json => {
                let mut text =
                    serde_json::to_string_pretty(json).map_err(|e| CliError::Output(e.into()))?;
                text.push('\n');
                text
            }
            OutputFormat::Table => table(),
        };
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(CliError::Output)
    }

    fn one_cluster(&mut self, cluster: Option<proto::Cluster>) -> Result<(), CliError> {
        let cluster = cluster.unwrap_or_default();
        self.emit(
            &json::OneCluster {
                cluster: json::Cluster::from(&cluster),
            },
            || clusters_table(std::slice::from_ref(&cluster)),
        )
    }

    fn names<T: Serialize>(
        &mut self,
        header: &str,
        names: Vec<String>,
        wrap: impl FnOnce(Vec<String>) -> T,
    ) -> Result<(), CliError> {
        let mut table = Table::new(&[header]);
        for name in &names {
            table.row(vec![name.clone()]);
        }
        self.emit(&wrap(names), || table.render(terminal_width()))
    }
}

/// An error naming every failure of a describe call, if it had any.
fn check_failures(failures: &[proto::Failure]) -> Result<(), CliError> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(CliError::Failures(
        failures
            .iter()
            .map(|f| (f.arn.clone(), f.reason.clone()))
            .collect(),
    ))
}

/// Polls `describe` every 100 ms until every task in `ids` reached `condition`, for at most
/// `timeout`. A scheduler that is briefly unavailable is polled again; any other error, a task
/// the scheduler does not know, or (for tasks-running) a task that stopped ends the wait.
pub(super) async fn wait_for<F, Fut>(
    condition: WaitCondition,
    ids: &[String],
    timeout: Duration,
    mut describe: F,
) -> Result<(), CliError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = Result<proto::DescribeTasksResponse, CliError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reached: HashSet<&str> = HashSet::new();
    let mut interval = tokio::time::interval(WAIT_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<String> = Vec::new();
    let timed_out = |pending: Vec<String>| CliError::WaitTimeout {
        condition: match condition {
            WaitCondition::TasksRunning => "tasks to be RUNNING",
            WaitCondition::TasksStopped => "tasks to be STOPPED",
        },
        waited: timeout,
        pending,
    };
    loop {
        let waiting: Vec<String> = unique(ids)
            .filter(|id| !reached.contains(id))
            .map(str::to_owned)
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            if pending.is_empty() {
                pending = waiting.clone();
            }
            return Err(timed_out(pending));
        }
        interval.tick().await;
        let response = match tokio::time::timeout_at(deadline, describe(waiting.clone())).await {
            Err(_elapsed) => {
                return Err(timed_out(if pending.is_empty() {
                    waiting
                } else {
                    pending
                }));
            }
            Ok(Err(CliError::Unreachable { reason, .. })) => {
                pending = vec![format!("the scheduler is unreachable ({reason})")];
                continue;
            }
            Ok(Err(CliError::Api {
                code: tonic::Code::Unavailable,
                message,
            })) => {
                pending = vec![format!("the scheduler is unavailable ({message})")];
                continue;
            }
            Ok(Err(error)) => return Err(error),
            Ok(Ok(response)) => response,
        };
        check_failures(&response.failures)?;
        pending.clear();
        for task in &response.tasks {
            let Some(id) = ids.iter().find(|id| **id == task.task_id) else {
                continue;
            };
            let status = proto::TaskStatus::try_from(task.last_status)
                .unwrap_or(proto::TaskStatus::Unspecified);
            let stopped = matches!(
                status,
                proto::TaskStatus::Stopped | proto::TaskStatus::Deprovisioned
            );
            let done = match condition {
                WaitCondition::TasksRunning if stopped => {
                    return Err(CliError::TaskStopped {
                        task_id: task.task_id.clone(),
                        reason: stop_reason(task),
                    });
                }
                WaitCondition::TasksRunning => status == proto::TaskStatus::Running,
                WaitCondition::TasksStopped => stopped,
            };
            if done {
                reached.insert(id);
            } else {
                pending.push(format!(
                    "{} ({})",
                    task.task_id,
                    json::task_status_name(task.last_status)
                ));
            }
        }
    }
}

/// Each ID once, in order.
fn unique(ids: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(move |id| seen.insert(*id))
}

/// Why a task stopped: its stop code and reason, as far as they are known.
fn stop_reason(task: &proto::Task) -> String {
    match (
        json::stop_code_name(task.stop_code),
        task.stopped_reason.as_str(),
    ) {
        (Some(code), "") => code,
        (Some(code), reason) => format!("{code}: {reason}"),
        (None, "") => "no reason given".to_owned(),
        (None, reason) => reason.to_owned(),
    }
}

fn tasks_table(tasks: &[proto::Task]) -> String {
    let mut table = Table::new(&[
        "TASK ID",
        "DEFINITION",
        "LAST",
        "DESIRED",
        "HEALTH",
        "INSTANCE",
        "NETWORK",
        "STARTED",
        "STOP CODE/REASON",
    ]);
    for t in tasks {
        let stop = match json::stop_code_name(t.stop_code) {
            Some(_) => stop_reason(t),
            None => t.stopped_reason.clone(),
        };
        table.row(vec![
            t.task_id.clone(),
            t.task_definition.clone(),
            json::task_status_name(t.last_status),
            json::desired_status_name(t.desired_status),
            json::health_status_name(t.health_status),
            t.container_instance_id.clone(),
            task_network(t),
            t.started_at
                .as_ref()
                .map(rfc3339_seconds)
                .unwrap_or_default(),
            stop,
        ]);
    }
    table.render(terminal_width())
}

/// Where a task is reachable, compactly: its bound host ports ("0.0.0.0:49153->80/tcp"), else
/// its address (its own interface's in awsvpc mode, else its first container's on the bridge).
fn task_network(t: &proto::Task) -> String {
    let ports: Vec<String> = t
        .containers
        .iter()
        .flat_map(|c| &c.network_bindings)
        .map(|b| {
            let ip = if b.bind_ip.is_empty() {
                "0.0.0.0"
            } else {
                &b.bind_ip
            };
            format!("{ip}:{}->{}/{}", b.host_port, b.container_port, b.protocol)
        })
        .collect();
    if !ports.is_empty() {
        return ports.join(", ");
    }
    let address = json::task_address(t);
    if !address.is_empty() {
        return address.to_owned();
    }
    t.containers
        .iter()
        .map(|c| c.private_ipv4_address.as_str())
        .find(|a| !a.is_empty())
        .unwrap_or("")
        .to_owned()
}

fn instances_table(instances: &[proto::ContainerInstance]) -> String {
    let mut table = Table::new(&[
        "INSTANCE ID",
        "STATUS",
        "AGENT",
        "CPU FREE/TOTAL",
        "MEMORY FREE/TOTAL",
        "RUNNING",
        "PENDING",
        "VERSION",
    ]);
    for i in instances {
        let (registered, remaining) = (
            i.registered_resources.clone().unwrap_or_default(),
            i.remaining_resources.clone().unwrap_or_default(),
        );
        table.row(vec![
            i.container_instance_id.clone(),
            i.status.clone(),
            if i.agent_connected {
                "connected"
            } else {
                "disconnected"
            }
            .to_owned(),
            format!("{}/{}", remaining.cpu, registered.cpu),
            format!("{}/{} MiB", remaining.memory_mib, registered.memory_mib),
            i.running_tasks_count.to_string(),
            i.pending_tasks_count.to_string(),
            i.version_info
                .as_ref()
                .map(|v| v.agent_version.clone())
                .unwrap_or_default(),
        ]);
    }
    table.render(terminal_width())
}

fn clusters_table(clusters: &[proto::Cluster]) -> String {
    let mut table = Table::new(&["NAME", "STATUS", "INSTANCES", "RUNNING", "PENDING"]);
    for c in clusters {
        table.row(vec![
            c.name.clone(),
            c.status.clone(),
            c.registered_container_instances_count.to_string(),
            c.running_tasks_count.to_string(),
            c.pending_tasks_count.to_string(),
        ]);
    }
    table.render(terminal_width())
}

fn task_definition_tables(d: &proto::TaskDefinition) -> String {
    let size = |n: u64, unit: &str| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{n}{unit}")
        }
    };
    let mut summary = Table::new(&["TASK DEFINITION", "CPU", "MEMORY", "NETWORK", "REGISTERED"]);
    summary.row(vec![
        format!("{}:{}", d.family, d.revision),
        size(u64::from(d.cpu), ""),
        size(d.memory_mib, " MiB"),
        d.network_mode.clone(),
        d.registered_at
            .as_ref()
            .map(rfc3339_seconds)
            .unwrap_or_default(),
    ]);
    let mut containers = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CPU",
        "MEMORY",
        "RESERVATION",
        "ESSENTIAL",
        "PORTS",
    ]);
    for c in &d.containers {
        containers.row(vec![
            c.name.clone(),
            c.image.clone(),
            size(u64::from(c.cpu), ""),
            size(c.memory_mib, " MiB"),
            size(c.memory_reservation_mib, " MiB"),
            if c.essential { "yes" } else { "no" }.to_owned(),
            c.port_mappings
                .iter()
                .map(|m| match m.host_port {
                    // A dynamic host port, chosen by the agent when the task starts.
                    0 => format!("{}/{}", m.container_port, m.protocol),
                    host => format!("{host}->{}/{}", m.container_port, m.protocol),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    let width = terminal_width();
    format!("{}\n{}", summary.render(width), containers.render(width))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The task IDs of each DescribeTasks call, in order.
    type Calls = Arc<Mutex<Vec<Vec<String>>>>;

    fn task(id: &str, status: proto::TaskStatus) -> proto::Task {
        proto::Task {
            task_id: id.into(),
            last_status: status as i32,
            ..Default::default()
        }
    }

    /// A fake DescribeTasks that plays back `script` one response a call (repeating the last)
    /// and records the IDs asked for.
    fn scripted(
        script: Vec<Result<Vec<proto::Task>, CliError>>,
    ) -> (
        impl FnMut(Vec<String>) -> std::future::Ready<Result<proto::DescribeTasksResponse, CliError>>,
        Calls,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let mut script = script
            .into_iter()
            .collect::<std::collections::VecDeque<_>>();
        let mut last: Option<Vec<proto::Task>> = None;
        let describe = move |ids: Vec<String>| {
            recorded.lock().unwrap().push(ids);
            let next = match script.pop_front() {
                Some(Ok(tasks)) => {
                    last = Some(tasks.clone());
                    Ok(tasks)
                }
                Some(Err(error)) => Err(error),
                None => Ok(last.clone().unwrap_or_default()),
            };
            std::future::ready(next.map(|tasks| proto::DescribeTasksResponse {
                tasks,
                failures: vec![],
            }))
        };
        (describe, calls)
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_every_task_runs() {
        use proto::TaskStatus::*;
        let (describe, calls) = scripted(vec![
            Ok(vec![task("a", Pending), task("b", Provisioning)]),
            Ok(vec![task("a", Running), task("b", Pulled)]),
            Ok(vec![task("b", Running)]),
        ]);
        let started = tokio::time::Instant::now();
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a", "b", "a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap();
        // Three polls, 100 ms apart; tasks already RUNNING are not asked for again.
        assert_eq!(
            *calls.lock().unwrap(),
            vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["b"])]
        );
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_stops_fails_the_wait_for_running() {
        let stopped = proto::Task {
            stop_code: proto::StopCode::TaskFailedToStart as i32,
            stopped_reason: "CannotPullContainerError: not found".into(),
            ..task("a", proto::TaskStatus::Stopped)
        };
        let (describe, _) = scripted(vec![
            Ok(vec![task("a", proto::TaskStatus::Pending)]),
            Ok(vec![stopped]),
        ]);
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "task a stopped before it was running: TaskFailedToStart: CannotPullContainerError: not found"
        );
        assert_eq!(error.exit_code(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_stopped_or_deprovisioned() {
        use proto::TaskStatus::*;
        let (describe, _) = scripted(vec![
            Ok(vec![task("a", Running), task("b", Running)]),
            Ok(vec![task("a", Stopped), task("b", Deprovisioned)]),
        ]);
        wait_for(
            WaitCondition::TasksStopped,
            &ids(&["a", "b"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_the_tasks_still_pending() {
        let (describe, calls) = scripted(vec![Ok(vec![task("a", proto::TaskStatus::Pending)])]);
        let started = tokio::time::Instant::now();
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(2),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 2s waiting for tasks to be RUNNING: a (PENDING)"
        );
        assert_eq!(error.exit_code(), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Polls at 0, 100, …, 2000 ms.
        assert_eq!(calls.lock().unwrap().len(), 21);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_polling_while_the_scheduler_is_unavailable() {
        let (describe, _) = scripted(vec![
            Err(CliError::Api {
                code: tonic::Code::Unavailable,
                message: "restarting".into(),
            }),
            Ok(vec![task("a", proto::TaskStatus::Running)]),
        ]);
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap();
        let (describe, _) = scripted(vec![Err(CliError::Api {
            code: tonic::Code::PermissionDenied,
            message: "no".into(),
        })]);
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "no");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_task_fails_the_wait() {
        let describe = |_ids: Vec<String>| {
            std::future::ready(Ok(proto::DescribeTasksResponse {
                tasks: vec![],
                failures: vec![proto::Failure {
                    arn: "nope".into(),
                    reason: "MISSING".into(),
                }],
            }))
        };
        let error = wait_for(
            WaitCondition::TasksStopped,
            &ids(&["nope"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "nope: MISSING");
    }

    #[test]
    fn a_bad_file_fails_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("td.json");
        std::fs::write(
            &path,
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memroy":6}]}"#,
        )
        .unwrap();
        let error = read_definition(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: unknown field `memroy` at containerDefinitions[0]: did you mean `memory`?",
                path.display()
            )
        );
        assert_eq!(error.exit_code(), 64);
        let missing = dir.path().join("missing.json");
        let error = read_definition(&missing).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot read {}: ", missing.display())),
            "{error}"
        );
        assert_eq!(error.exit_code(), 64);
    }

    #[tokio::test]
    async fn an_unreachable_scheduler_gets_a_hint() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let error = connect(&endpoint).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach the scheduler at {endpoint}: connection refused; is berth-scheduler running? \
                 (--endpoint / BERTH_ENDPOINT)"
            )
        );
        let error = connect("127.0.0.1:7700").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid endpoint `127.0.0.1:7700`: use http://HOST:PORT"
        );
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn tasks_table_columns() {
        let t = proto::Task {
            task_id: "t-1".into(),
            task_definition: "web:3".into(),
            container_instance_id: "i-1".into(),
            last_status: proto::TaskStatus::Stopped as i32,
            desired_status: proto::DesiredStatus::Stopped as i32,
            started_at: Some(prost_types::Timestamp {
                seconds: 1_795_778_400,
                nanos: 0,
            }),
            stop_code: proto::StopCode::UserInitiated as i32,
            stopped_reason: "done".into(),
            ..Default::default()
        };
        let text = tasks_table(&[t]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "TASK ID  DEFINITION  LAST     DESIRED  HEALTH   INSTANCE  NETWORK  STARTED               STOP CODE/REASON"
        );
        assert_eq!(
            lines[1],
            "t-1      web:3       STOPPED  STOPPED  UNKNOWN  i-1                2026-11-27T11:20:00Z  UserInitiated: done"
        );
    }

    #[test]
    fn the_network_column_shows_ports_else_the_address() {
        let binding = |host_port, container_port, protocol: &str| proto::NetworkBinding {
            bind_ip: "0.0.0.0".into(),
            container_port,
            host_port,
            protocol: protocol.into(),
        };
        let bridge = proto::Task {
            containers: vec![
                proto::ContainerState {
                    network_bindings: vec![binding(49153, 80, "tcp"), binding(5353, 53, "udp")],
                    private_ipv4_address: "172.17.0.2".into(),
                    ..Default::default()
                },
                proto::ContainerState {
                    network_bindings: vec![proto::NetworkBinding {
                        bind_ip: String::new(),
                        ..binding(8080, 8080, "tcp")
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            task_network(&bridge),
            "0.0.0.0:49153->80/tcp, 0.0.0.0:5353->53/udp, 0.0.0.0:8080->8080/tcp"
        );
        let awsvpc = proto::Task {
            attachments: vec![proto::NetworkAttachment {
                private_ipv4_address: "10.1.0.5".into(),
                ..Default::default()
            }],
            containers: vec![proto::ContainerState::default()],
            ..Default::default()
        };
        assert_eq!(task_network(&awsvpc), "10.1.0.5");
        let no_ports = proto::Task {
            containers: vec![
                proto::ContainerState::default(),
                proto::ContainerState {
                    private_ipv4_address: "172.17.0.3".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(task_network(&no_ports), "172.17.0.3");
        assert_eq!(task_network(&proto::Task::default()), "");
    }

    #[test]
    fn the_definition_table_shows_port_mappings() {
        let def = crate::taskdef::parse(
            r#"{"family":"web","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
                "portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":9000},
                                {"containerPort":53,"protocol":"udp"}]}]}"#,
        )
        .unwrap();
        let text = task_definition_tables(&def);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].ends_with("PORTS"), "{text}");
        assert!(
            lines[4].ends_with("8080->80/tcp, 9000/tcp, 53/udp"),
            "{text}"
        );
    }
}
