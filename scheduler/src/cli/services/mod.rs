//! berthctl's service commands: create-service, update-service, delete-service,
//! describe-services, list-services and events, with ECS's JSON field names in (flags and
//! `--cli-input-json`) and out (`-o json`).

mod args;
mod deploy;
mod json;

pub(crate) use args::ServiceCommand;

use std::io::Write;

use berth_proto::v1 as proto;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::commands::Context;
use super::error::{CliError, check_failures};
use super::table::{Table, names_table, terminal_width};
use super::time::rfc3339_seconds;
use args::{ServiceFields, UpdateService, input_source};
use json::ServiceInput;

/// How many events describe-services' table shows per service (JSON has them all).
const TABLE_EVENTS: usize = 5;

/// How long `deploy --wait` waits without `--timeout` (as ECS's services-stable waiter).
const DEFAULT_DEPLOY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

fn bad_input(what: String) -> CliError {
    CliError::ServiceInput { what }
}

fn parse_flag<T: DeserializeOwned>(flag: &str, text: &str) -> Result<T, CliError> {
    serde_json::from_str(text).map_err(|e| bad_input(format!("--{flag}: {e}")))
}

/// The input: `--cli-input-json` if given, then each flag over it. Fields Berth does not use
/// are named on stderr.
fn merged(fields: &ServiceFields) -> Result<ServiceInput, CliError> {
    let mut input = match &fields.cli_input_json {
        None => ServiceInput::default(),
        Some(given) => {
            let text = match input_source(given) {
                None => given.clone(),
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|error| CliError::ReadFile { path, error })?,
            };
            serde_json::from_str(&text).map_err(|e| bad_input(format!("--cli-input-json: {e}")))?
        }
    };
    let mut stderr = std::io::stderr();
    for name in input.other.keys() {
        writeln!(stderr, "note: {name} is not used by Berth and was ignored")
            .map_err(CliError::Output)?;
    }
    if let Some(v) = &fields.service_name {
        input.service_name = Some(v.clone());
    }
    if let Some(v) = &fields.task_definition {
        input.task_definition = Some(v.clone());
    }
    if let Some(v) = fields.desired_count {
        input.desired_count = Some(v);
    }
    if let Some(v) = &fields.scheduling_strategy {
        input.scheduling_strategy = Some(v.clone());
    }
    if let Some(v) = &fields.placement_constraints {
        input.placement_constraints = Some(parse_flag("placement-constraints", v)?);
    }
    if let Some(v) = &fields.placement_strategy {
        input.placement_strategy = Some(parse_flag("placement-strategy", v)?);
    }
    if let Some(v) = &fields.deployment_configuration {
        input.deployment_configuration = Some(parse_flag("deployment-configuration", v)?);
    }
    if let Some(v) = fields.health_check_grace_period_seconds {
        input.health_check_grace_period_seconds = Some(v);
    }
    Ok(input)
}

/// CreateService's request from the merged input.
fn create_request(
    input: ServiceInput,
    cluster: String,
) -> Result<proto::CreateServiceRequest, CliError> {
    let service_name = input.service_name.ok_or_else(|| {
        bad_input(
            "no service name: give --service-name or serviceName in --cli-input-json".to_owned(),
        )
    })?;
    let task_definition = input.task_definition.ok_or_else(|| {
        bad_input("no task definition: give --task-definition FAMILY[:REVISION] or taskDefinition in --cli-input-json".to_owned())
    })?;
    Ok(proto::CreateServiceRequest {
        cluster: input.cluster.unwrap_or(cluster),
        service: Some(proto::Service {
            service_name,
            task_definition,
            desired_count: input.desired_count.unwrap_or_default(),
            scheduling_strategy: input.scheduling_strategy.unwrap_or_default(),
            placement_constraints: input
                .placement_constraints
                .iter()
                .flatten()
                .map(Into::into)
                .collect(),
            placement_strategy: input
                .placement_strategy
                .iter()
                .flatten()
                .map(Into::into)
                .collect(),
            deployment_configuration: input.deployment_configuration.as_ref().map(Into::into),
            health_check_grace_period_seconds: input
                .health_check_grace_period_seconds
                .unwrap_or_default(),
            ..Default::default()
        }),
    })
}

/// UpdateService's request from the service named and the merged input.
fn update_request(
    service: Option<String>,
    input: ServiceInput,
    cluster: String,
) -> Result<proto::UpdateServiceRequest, CliError> {
    let service = service.or(input.service).or(input.service_name).ok_or_else(|| {
        bad_input("no service: name it (berthctl update-service SERVICE ...) or give service in --cli-input-json".to_owned())
    })?;
    Ok(proto::UpdateServiceRequest {
        cluster: input.cluster.unwrap_or(cluster),
        service,
        desired_count: input.desired_count,
        task_definition: input.task_definition,
        deployment_configuration: input.deployment_configuration.as_ref().map(Into::into),
        health_check_grace_period_seconds: input.health_check_grace_period_seconds,
        set_placement_constraints: input.placement_constraints.is_some(),
        placement_constraints: input
            .placement_constraints
            .iter()
            .flatten()
            .map(Into::into)
            .collect(),
        set_placement_strategy: input.placement_strategy.is_some(),
        placement_strategy: input
            .placement_strategy
            .iter()
            .flatten()
            .map(Into::into)
            .collect(),
    })
}

/// The table of services, then each one's latest events.
fn services_table(services: &[proto::Service]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "STATUS",
        "STRATEGY",
        "DESIRED",
        "RUNNING",
        "PENDING",
        "TASK DEFINITION",
    ]);
    for s in services {
        table.row(vec![
            s.service_name.clone(),
            s.status.clone(),
            s.scheduling_strategy.clone(),
            s.desired_count.to_string(),
            s.running_count.to_string(),
            s.pending_count.to_string(),
            s.task_definition.clone(),
        ]);
    }
    let mut text = table.render(terminal_width());
    for s in services {
        if s.deployments.is_empty() {
            continue;
        }
        let mut table = Table::new(&[
            "DEPLOYMENT",
            "STATUS",
            "TASK DEFINITION",
            "DESIRED",
            "RUNNING",
            "PENDING",
            "FAILED",
            "ROLLOUT",
        ]);
        for d in &s.deployments {
            table.row(vec![
                d.id.clone(),
                d.status.clone(),
                d.task_definition.clone(),
                d.desired_count.to_string(),
                d.running_count.to_string(),
                d.pending_count.to_string(),
                d.failed_tasks.to_string(),
                d.rollout_state.clone(),
            ]);
        }
        text.push_str(&format!("\nDeployments of {}:\n", s.service_name));
        text.push_str(&table.render(terminal_width()));
    }
    for s in services {
        if s.events.is_empty() {
            continue;
        }
        text.push_str(&format!("\nEvents of {}:\n", s.service_name));
        for e in s.events.iter().take(TABLE_EVENTS) {
            text.push_str(&event_line(e));
        }
    }
    text
}

fn event_line(e: &proto::ServiceEvent) -> String {
    let at = e
        .created_at
        .as_ref()
        .map(rfc3339_seconds)
        .unwrap_or_default();
    format!("{at}  {}\n", e.message)
}

impl Context<'_> {
    fn one_service(&mut self, service: Option<proto::Service>) -> Result<(), CliError> {
        let service = service.unwrap_or_default();
        let table = services_table(std::slice::from_ref(&service));
        self.emit(
            &json::OneService {
                service: json::Service::from(&service),
            },
            || table,
        )
    }

    /// Runs one service command.
    pub(crate) async fn service(&mut self, command: ServiceCommand) -> Result<(), CliError> {
        let cluster = self.cluster.clone();
        match command {
            ServiceCommand::CreateService(fields) => {
                let request = create_request(merged(&fields)?, cluster)?;
                let response = self
                    .call(self.client.clone().create_service(request))
                    .await?;
                self.one_service(response.service)
            }
            ServiceCommand::UpdateService(UpdateService { service, fields }) => {
                let request = update_request(service, merged(&fields)?, cluster)?;
                let response = self
                    .call(self.client.clone().update_service(request))
                    .await?;
                self.one_service(response.service)
            }
            ServiceCommand::DeleteService { service, force } => {
                let request = proto::DeleteServiceRequest {
                    cluster,
                    service,
                    force,
                };
                let response = self
                    .call(self.client.clone().delete_service(request))
                    .await?;
                self.one_service(response.service)
            }
            ServiceCommand::DescribeServices { services } => {
                let request = proto::DescribeServicesRequest { cluster, services };
                let response = self
                    .call(self.client.clone().describe_services(request))
                    .await?;
                self.emit(
                    &json::Services {
                        services: response.services.iter().map(json::Service::from).collect(),
                        failures: crate::cli::json::failures(&response.failures),
                    },
                    || services_table(&response.services),
                )?;
                check_failures(&response.failures)
            }
            ServiceCommand::ListServices {
                scheduling_strategy,
            } => {
                let request = proto::ListServicesRequest {
                    cluster,
                    scheduling_strategy: scheduling_strategy.unwrap_or_default(),
                };
                let response = self
                    .call(self.client.clone().list_services(request))
                    .await?;
                let table = names_table("SERVICE", &response.service_names);
                self.emit(
                    &json::ServiceNames {
                        service_arns: response.service_names,
                    },
                    || table,
                )
            }
            ServiceCommand::Events { service, follow } => {
                self.events(cluster, service, follow).await
            }
            ServiceCommand::Deploy {
                service,
                task_definition,
                wait,
                timeout,
            } => {
                self.deploy(
                    service,
                    task_definition,
                    wait,
                    timeout.unwrap_or(DEFAULT_DEPLOY_WAIT),
                )
                .await
            }
        }
    }

    /// Prints the events as they come: a line each, or one JSON object a line with `-o json`.
    async fn events(
        &mut self,
        cluster: String,
        service: String,
        follow: bool,
    ) -> Result<(), CliError> {
        let request = proto::WatchServiceEventsRequest {
            cluster,
            service,
            follow,
        };
        let mut stream = self
            .call(self.client.clone().watch_service_events(request))
            .await?;
        while let Some(batch) = stream.next().await {
            let batch =
                batch.map_err(|status| super::error::from_status(&self.endpoint, &status))?;
            for e in &batch.events {
                let line = match self.output {
                    super::args::OutputFormat::Json => {
                        let mut line = serde_json::to_string(&json::Event::from(e))
                            .map_err(|e| CliError::Output(e.into()))?;
                        line.push('\n');
                        line
                    }
                    super::args::OutputFormat::Table => event_line(e),
                };
                self.out
                    .write_all(line.as_bytes())
                    .map_err(CliError::Output)?;
            }
            self.out.flush().map_err(CliError::Output)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_input_json_is_a_file_or_the_json_itself() {
        assert_eq!(
            input_source("file:///tmp/s.json"),
            Some("/tmp/s.json".into())
        );
        assert_eq!(input_source("s.json"), Some("s.json".into()));
        assert_eq!(input_source(r#" {"serviceName":"web"}"#), None);
    }

    #[test]
    fn flags_override_the_input_json_in_ecs_names() {
        let fields = ServiceFields {
            desired_count: Some(4),
            cli_input_json: Some(
                serde_json::json!({
                    "serviceName": "web",
                    "taskDefinition": "web:2",
                    "desiredCount": 2,
                    "launchType": "EC2",
                    "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
                    "placementStrategy": [{"type": "spread", "field": "instanceId"}],
                    "deploymentConfiguration": {"minimumHealthyPercent": 0,
                        "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
                    "healthCheckGracePeriodSeconds": 30
                })
                .to_string(),
            ),
            ..Default::default()
        };
        let input = merged(&fields).expect("merged");
        assert!(input.other.contains_key("launchType"));
        let request = create_request(input, "default".into()).expect("request");
        let service = request.service.expect("service");
        assert_eq!(request.cluster, "default");
        assert_eq!(service.service_name, "web");
        assert_eq!(service.task_definition, "web:2");
        assert_eq!(service.desired_count, 4);
        assert_eq!(service.placement_constraints[0].r#type, "memberOf");
        assert_eq!(service.placement_strategy[0].field, "instanceId");
        let config = service.deployment_configuration.expect("config");
        assert!(config.minimum_healthy_percent_set && config.minimum_healthy_percent == 0);
        assert!(!config.maximum_percent_set);
        assert_eq!(
            config.deployment_circuit_breaker,
            Some(proto::DeploymentCircuitBreaker {
                enable: true,
                rollback: true
            })
        );
        assert_eq!(service.health_check_grace_period_seconds, 30);
    }

    #[test]
    fn missing_or_malformed_input_says_what_to_give() {
        let none = create_request(ServiceInput::default(), "default".into()).unwrap_err();
        assert!(none.to_string().contains("--service-name"), "{none}");
        let bad = merged(&ServiceFields {
            placement_strategy: Some("[{\"type\":".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            bad.to_string().starts_with("--placement-strategy:"),
            "{bad}"
        );
        assert_eq!(bad.exit_code(), 64);
    }
}
