//! berthctl's commands: one ControlService call each (a `WatchTasks` stream for `wait` and
//! `run-task --wait`), rendered as a table (`table.rs`) or as ECS-style JSON (`json/`).

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use berth_proto::v1 as proto;
use futures::StreamExt;
use serde::Serialize;

use super::access::{self, Client, Given};
use super::args::{Args, Command, DesiredStatusArg, Logs, OutputFormat, RunTask, WaitCondition};
use super::error::{CliError, check_failures, from_status};
use super::json;
use super::stats;
use super::table::{
    clusters_table, instances_table, names_table, task_definition_tables, tasks_table,
};
use super::time::rfc3339_nanos;
use super::wait::{polled, wait_showing};

/// How long `run-task --wait` waits without `--timeout` (as `wait`'s default).
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Runs one command against the scheduler, writing its result to `out`.
pub(super) async fn execute(args: Args, out: &mut dyn Write) -> Result<(), CliError> {
    let Args {
        endpoint,
        ca_file,
        token,
        token_file,
        cert_file,
        key_file,
        config,
        cluster,
        output,
        command,
    } = args;
    let access = access::resolve(Given {
        endpoint,
        ca_file,
        token,
        token_file,
        cert_file,
        key_file,
        config,
    })?;
    // An API token is scoped to a cluster only when one is named.
    let scoped_cluster = cluster.clone();
    let cluster = cluster.unwrap_or_else(|| crate::store::DEFAULT_CLUSTER.to_owned());
    // Read and check files before connecting, so a bad file fails fast without a scheduler.
    let definition_json = match &command {
        Command::RegisterTaskDefinition { file }
        | Command::RunTask(RunTask {
            file: Some(file), ..
        }) => Some(read_definition(file)?),
        _ => None,
    };
    let client = access::connect(&access).await?;
    let client_cert = access.has_client_cert();
    let mut ctx = Context {
        client,
        client_cert,
        endpoint: access.endpoint,
        cluster,
        scoped_cluster,
        output,
        out,
    };
    ctx.run(command, definition_json).await
}

/// The text of a task-definition file, checked with the scheduler's own parser.
pub(super) fn read_definition(path: &Path) -> Result<String, CliError> {
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

pub(super) struct Context<'a> {
    pub(super) client: Client,
    /// Whether calls present a client certificate (a connection cut mid-call then most likely
    /// means the scheduler refused it).
    pub(super) client_cert: bool,
    pub(super) endpoint: String,
    pub(super) cluster: String,
    /// The cluster as the user named it (flag or environment), if they did.
    pub(super) scoped_cluster: Option<String>,
    pub(super) output: OutputFormat,
    pub(super) out: &'a mut dyn Write,
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
                // The notes go to standard error, so that the name (or the JSON) on standard
                // output stays what scripts read.
                let mut stderr = std::io::stderr();
                for note in &response.notes {
                    writeln!(stderr, "note: {note}").map_err(CliError::Output)?;
                }
                self.emit(
                    &json::RegisteredTaskDefinition {
                        task_definition: json::TaskDefinition::from(&definition),
                        notes: response.notes.clone(),
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
                    placement_constraints: run.placement_constraints,
                    placement_strategy: run.placement_strategy,
                };
                let response = self.call(self.client.clone().run_task(request)).await?;
                // As register-task-definition: the notes on a definition given as JSON go to
                // standard error, so that the task IDs on standard output stay what scripts read.
                let mut stderr = std::io::stderr();
                for note in &response.notes {
                    writeln!(stderr, "note: {note}").map_err(CliError::Output)?;
                }
                // Printed (and flushed) first, so a script has the IDs even when the wait fails.
                let tasks = json::Tasks::of(&response.tasks, None).with_notes(&response.notes);
                self.emit(&tasks, || {
                    response
                        .tasks
                        .iter()
                        .map(|t| format!("{}\n", t.task_id))
                        .collect()
                })?;
                if !run.wait {
                    return Ok(());
                }
                let ids = response.tasks.into_iter().map(|t| t.task_id).collect();
                let timeout = run.timeout.unwrap_or(DEFAULT_WAIT);
                let mut display = super::pull_progress::PullDisplay::for_stdout();
                let waited = self
                    .wait_showing(WaitCondition::TasksRunning, ids, timeout, |r| {
                        display.show(r)
                    })
                    .await;
                display.finish();
                waited
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
                    || {
                        instances_table(&response.container_instances)
                            + &stats::health_lines(
                                &response.container_instances,
                                std::time::SystemTime::now(),
                            )
                    },
                )?;
                check_failures(&response.failures)
            }
            Command::DeregisterContainerInstance { id, force } => {
                let request = proto::DeregisterContainerInstanceRequest {
                    cluster,
                    container_instance_id: id,
                    force,
                };
                let response = self
                    .call(self.client.clone().deregister_container_instance(request))
                    .await?;
                let instance = response.container_instance.unwrap_or_default();
                self.emit(
                    &json::OneContainerInstance {
                        container_instance: json::ContainerInstance::from(&instance),
                    },
                    || instances_table(std::slice::from_ref(&instance)),
                )
            }
            Command::UpdateContainerInstancesState { ids, status } => {
                let request = proto::UpdateContainerInstancesStateRequest {
                    cluster,
                    container_instance_ids: ids,
                    status: status.as_str().to_owned(),
                };
                let response = self
                    .call(
                        self.client
                            .clone()
                            .update_container_instances_state(request),
                    )
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
            Command::Stats {
                tasks,
                no_stream,
                instance,
            } => self.stats(cluster, tasks, instance, no_stream).await,
            Command::CreateJoinToken { ttl, uses } => self.create_join_token(ttl, uses).await,
            Command::ListJoinTokens => self.list_join_tokens().await,
            Command::DeleteJoinToken { id } => self.delete_join_token(id).await,
            Command::CreateApiToken { role, ttl } => self.create_api_token(role, ttl).await,
            Command::CreateClientCertificate {
                name,
                role,
                ttl,
                cert_out,
                key_out,
            } => {
                self.create_client_certificate(name, role, ttl, &cert_out, &key_out)
                    .await
            }
            Command::ListClientCertificates => self.list_client_certificates().await,
            Command::RevokeClientCertificate { serial } => {
                self.revoke_client_certificate(serial).await
            }
            Command::ListApiTokens => self.list_api_tokens().await,
            Command::DeleteApiToken { id } => self.delete_api_token(id).await,
            Command::Service(command) => self.service(command).await,
            Command::CreateSecret {
                name,
                from_file,
                from_literal,
                overwrite,
            } => {
                self.create_secret(name, from_file, from_literal, overwrite)
                    .await
            }
            Command::ListSecrets => self.list_secrets().await,
            Command::DeleteSecret { name } => self.delete_secret(name).await,
            Command::ListImages { instance } => self.list_images(instance).await,
            Command::CollectImages { instance } => self.collect_images(instance).await,
            Command::Wait {
                condition: WaitCondition::ServicesStable,
                ids,
                timeout,
            } => self.wait_services_stable(ids, timeout).await,
            Command::Wait {
                condition,
                ids,
                timeout,
            } => self.wait(condition, ids, timeout).await,
        }
    }

    /// Waits on the scheduler's `WatchTasks` stream (polling DescribeTasks when the scheduler
    /// has no `WatchTasks`) until every task in `ids` reached `condition`.
    async fn wait(
        &self,
        condition: WaitCondition,
        ids: Vec<String>,
        timeout: Duration,
    ) -> Result<(), CliError> {
        self.wait_showing(condition, ids, timeout, |_| {}).await
    }

    /// [`Self::wait`], handing each answer to `show` (`run-task --wait`'s progress).
    async fn wait_showing(
        &self,
        condition: WaitCondition,
        ids: Vec<String>,
        timeout: Duration,
        show: impl FnMut(&proto::DescribeTasksResponse),
    ) -> Result<(), CliError> {
        let (client, endpoint, cluster) = (
            self.client.clone(),
            self.endpoint.clone(),
            self.cluster.clone(),
        );
        wait_showing(
            condition,
            &ids,
            timeout,
            move |task_ids| {
                let (mut client, endpoint, cluster) =
                    (client.clone(), endpoint.clone(), cluster.clone());
                async move {
                    let request = proto::WatchTasksRequest {
                        cluster: cluster.clone(),
                        task_ids: task_ids.clone(),
                    };
                    match client.watch_tasks(request).await {
                        Ok(stream) => Ok(stream
                            .into_inner()
                            .map(move |answer| {
                                answer.map_err(|status| from_status(&endpoint, &status))
                            })
                            .boxed()),
                        Err(status) if status.code() == tonic::Code::Unimplemented => {
                            Ok(polled(move || {
                                let (mut client, endpoint) = (client.clone(), endpoint.clone());
                                let request = proto::DescribeTasksRequest {
                                    cluster: cluster.clone(),
                                    task_ids: task_ids.clone(),
                                };
                                async move {
                                    client
                                        .describe_tasks(request)
                                        .await
                                        .map(tonic::Response::into_inner)
                                        .map_err(|status| from_status(&endpoint, &status))
                                }
                            }))
                        }
                        Err(status) => Err(from_status(&endpoint, &status)),
                    }
                }
            },
            show,
        )
        .await
    }

    /// Streams a container's log: stdout lines to `out`, stderr lines to standard error.
    /// `stats`: one sample (JSON, `--no-stream`) or a table refreshed every couple of seconds
    /// until interrupted.
    async fn stats(
        &mut self,
        cluster: String,
        tasks: Vec<String>,
        instance: Option<String>,
        no_stream: bool,
    ) -> Result<(), CliError> {
        let once = no_stream || self.output == OutputFormat::Json;
        loop {
            let (text, json, missing) = match &instance {
                Some(id) => {
                    let request = proto::GetInstanceStatsRequest {
                        cluster: cluster.clone(),
                        container_instances: vec![id.clone()],
                        history: false,
                    };
                    let r = self
                        .call(self.client.clone().get_instance_stats(request))
                        .await?;
                    let json = serde_json::to_string_pretty(&stats::InstancesStats::from(&r));
                    (stats::instance_stats_table(&r), json, r.missing)
                }
                None => {
                    let request = proto::GetTaskStatsRequest {
                        cluster: cluster.clone(),
                        tasks: tasks.clone(),
                        history: false,
                    };
                    let r = self
                        .call(self.client.clone().get_task_stats(request))
                        .await?;
                    let json = serde_json::to_string_pretty(&stats::TasksStats::from(&r));
                    (stats::tasks_stats_table(&r), json, r.missing)
                }
            };
            let text = match self.output {
                OutputFormat::Json => json.map_err(|e| CliError::Output(e.into()))? + "\n",
                OutputFormat::Table if once => text,
                OutputFormat::Table => format!("{}{text}", stats::CLEAR),
            };
            self.out
                .write_all(text.as_bytes())
                .and_then(|()| self.out.flush())
                .map_err(CliError::Output)?;
            if once {
                return check_failures(
                    &missing
                        .into_iter()
                        .map(|arn| proto::Failure {
                            arn,
                            reason: "MISSING (no metrics in the scheduler's window: not running, or no batch yet)".to_owned(),
                        })
                        .collect::<Vec<_>>(),
                );
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                () = tokio::time::sleep(stats::REFRESH) => {}
            }
        }
    }

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
    pub(super) async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|status| {
                if self.client_cert {
                    super::error::from_status_with_cert(&self.endpoint, &status)
                } else {
                    from_status(&self.endpoint, &status)
                }
            })
    }

    /// Writes `json` in JSON mode, else the text `table` makes.
    pub(super) fn emit(
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
        let table = names_table(header, &names);
        self.emit(&wrap(names), || table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
