//! `berthctl deploy` and `berthctl wait services-stable`: the CI/CD gates. Both follow the
//! service's events on the scheduler's `WatchServiceEvents` stream (every deployment step
//! records one) and read the service with DescribeServices after each, with a slow tick as a
//! backstop; a broken stream (the scheduler restarting) is opened again.
//!
//! `deploy` updates the service to the task definition (registering a file first) and, with
//! `--wait`, prints the deployment's events and counts until it is COMPLETED (exit 0) or
//! FAILED (exit 1 with the reason, and the deployment rolled back to if any).
//! `services-stable` has ECS's waiter's meaning: every service ACTIVE, with one deployment
//! and its running count at its desired count.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use berth_proto::v1 as proto;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

use super::json;
use crate::cli::args::OutputFormat;
use crate::cli::commands::{Context, read_definition};
use crate::cli::error::{CliError, check_failures};

/// How often the services are read without an event (a backstop: every step records one).
const BACKSTOP: Duration = Duration::from_secs(5);
/// How long after a broken stream it is opened again.
const REOPEN_AFTER: Duration = Duration::from_millis(500);

/// One line of `deploy -o json`.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum Line<'a> {
    /// A service event, in ECS's wording.
    Event { message: &'a str },
    /// The deployment's counts changed.
    Progress { deployment: &'a json::Deployment },
    /// The deployment COMPLETED.
    Completed { deployment: &'a json::Deployment },
    /// The deployment FAILED (and what the service rolled back to, if it did).
    Failed {
        deployment: &'a json::Deployment,
        #[serde(skip_serializing_if = "Option::is_none")]
        rolled_back_to: Option<&'a str>,
    },
}

/// The events of `services`, followed: an item whenever any of them records one.
type Wakeups = BoxStream<'static, ()>;

impl Context<'_> {
    fn line(&mut self, line: &Line<'_>, text: impl FnOnce() -> String) -> Result<(), CliError> {
        let mut text = match self.output {
            OutputFormat::Json => {
                serde_json::to_string(line).map_err(|e| CliError::Output(e.into()))?
            }
            OutputFormat::Table => text(),
        };
        text.push('\n');
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(CliError::Output)
    }

    /// A stream that yields whenever one of the services records an event (and once at
    /// first); it ends when a stream breaks.
    async fn wakeups(&self, services: &[String]) -> Result<Wakeups, CliError> {
        let mut streams = Vec::new();
        for service in services {
            let request = proto::WatchServiceEventsRequest {
                cluster: self.cluster.clone(),
                service: service.clone(),
                follow: true,
            };
            let stream = self
                .call(self.client.clone().watch_service_events(request))
                .await?;
            streams.push(stream.map(|_| ()).boxed());
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn describe(&self, services: &[String]) -> Result<Vec<proto::Service>, CliError> {
        let request = proto::DescribeServicesRequest {
            cluster: self.cluster.clone(),
            services: services.to_vec(),
        };
        let response = self
            .call(self.client.clone().describe_services(request))
            .await?;
        check_failures(&response.failures)?;
        Ok(response.services)
    }

    /// Waits for the next wake-up (an event, the backstop tick, or a broken stream opened
    /// again).
    async fn next_wakeup(&self, services: &[String], wakeups: &mut Option<Wakeups>) {
        if wakeups.is_none() {
            match self.wakeups(services).await {
                Ok(w) => *wakeups = Some(w),
                Err(_) => {
                    tokio::time::sleep(REOPEN_AFTER).await;
                    return;
                }
            }
        }
        let Some(stream) = wakeups.as_mut() else {
            return;
        };
        tokio::select! {
            next = stream.next() => {
                if next.is_none() {
                    *wakeups = None;
                    tokio::time::sleep(REOPEN_AFTER).await;
                }
            }
            () = tokio::time::sleep(BACKSTOP) => {}
        }
    }

    /// `berthctl deploy`.
    pub(super) async fn deploy(
        &mut self,
        service: String,
        task_definition: String,
        wait: bool,
        timeout: Duration,
    ) -> Result<(), CliError> {
        let reference = if Path::new(&task_definition).is_file() {
            self.register(Path::new(&task_definition)).await?
        } else {
            task_definition
        };
        let request = proto::UpdateServiceRequest {
            cluster: self.cluster.clone(),
            service: service.clone(),
            task_definition: Some(reference),
            ..Default::default()
        };
        let updated = self
            .call(self.client.clone().update_service(request))
            .await?
            .service
            .unwrap_or_default();
        let Some(deployment) = updated.deployments.first().cloned() else {
            return Err(CliError::Api {
                code: tonic::Code::Internal,
                message: format!("service {service} has no deployment after the update"),
            });
        };
        let seen: HashSet<String> = updated.events.iter().map(|e| e.id.clone()).collect();
        let shown = json::Deployment::from(&deployment);
        self.line(&Line::Progress { deployment: &shown }, || {
            format!(
                "service {service}: deployment {} of {} ({})",
                deployment.id, deployment.task_definition, deployment.rollout_state
            )
        })?;
        if !wait {
            return Ok(());
        }
        match tokio::time::timeout(timeout, self.follow(&service, &deployment.id, seen)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(CliError::WaitTimeout {
                condition: "the deployment to complete",
                waited: timeout,
                pending: vec![format!("deployment {} of service {service}", deployment.id)],
            }),
        }
    }

    /// Registers the task definition in `path`; its family:revision.
    async fn register(&mut self, path: &Path) -> Result<String, CliError> {
        let request = proto::RegisterTaskDefinitionRequest {
            task_definition_json: read_definition(path)?,
        };
        let response = self
            .call(self.client.clone().register_task_definition(request))
            .await?;
        let mut stderr = std::io::stderr();
        for note in &response.notes {
            writeln!(stderr, "note: {note}").map_err(CliError::Output)?;
        }
        let def = response.task_definition.unwrap_or_default();
        Ok(format!("{}:{}", def.family, def.revision))
    }

    /// Prints the service's new events and the deployment's counts until it COMPLETED or
    /// FAILED.
    async fn follow(
        &mut self,
        service: &str,
        id: &str,
        mut seen: HashSet<String>,
    ) -> Result<(), CliError> {
        let names = [service.to_owned()];
        let mut wakeups = None;
        let mut last_counts = None;
        // What the events said of the deployment: a step can complete a rollback right
        // after the failure, and the failed deployment then leaves the list.
        let (failed_event, completed_event) = (
            format!("(deployment {id}) deployment failed"),
            format!("(deployment {id}) deployment completed"),
        );
        let mut failed: Option<String> = None;
        let mut completed = false;
        let mut rolled_back: Option<String> = None;
        loop {
            let read = match self.describe(&names).await {
                Ok(mut s) => s.pop(),
                Err(CliError::Unreachable { .. }) => None,
                Err(CliError::Api {
                    code: tonic::Code::Unavailable,
                    ..
                }) => None,
                Err(e) => return Err(e),
            };
            if let Some(s) = read {
                for e in s.events.iter().rev() {
                    if !seen.insert(e.id.clone()) {
                        continue;
                    }
                    self.line(
                        &Line::Event {
                            message: &e.message,
                        },
                        || e.message.clone(),
                    )?;
                    if e.message.contains(&failed_event) {
                        failed = Some(e.message.clone());
                    } else if e.message.contains(&completed_event) {
                        completed = true;
                    } else if failed.is_some()
                        && let Some((_, to)) = e.message.split_once("rolling back to deployment ")
                    {
                        rolled_back = Some(format!("deployment {}", to.trim_end_matches('.')));
                    }
                }
                let found = s.deployments.iter().find(|d| d.id == id);
                if let Some(d) = found {
                    let counts = (d.running_count, d.pending_count, d.failed_tasks);
                    if last_counts != Some(counts) {
                        last_counts = Some(counts);
                        let shown = json::Deployment::from(d);
                        self.line(&Line::Progress { deployment: &shown }, || {
                            format!(
                                "deployment {}: {} running, {} pending of {} desired, {} failed",
                                d.id,
                                d.running_count,
                                d.pending_count,
                                d.desired_count,
                                d.failed_tasks
                            )
                        })?;
                    }
                    completed |= d.rollout_state == "COMPLETED";
                    if d.rollout_state == "FAILED" {
                        failed = Some(d.rollout_state_reason.clone());
                    }
                }
                let shown = found.map_or_else(
                    || {
                        json::Deployment::from(&proto::Deployment {
                            id: id.to_owned(),
                            ..Default::default()
                        })
                    },
                    json::Deployment::from,
                );
                if completed {
                    return self.line(&Line::Completed { deployment: &shown }, || {
                        format!("deployment {id} completed")
                    });
                }
                if let Some(reason) = failed {
                    // The PRIMARY after a failure is the rollback, if there was one.
                    let to = s
                        .deployments
                        .first()
                        .filter(|p| p.id != id && p.rollout_state_reason.contains("rolling back"))
                        .map(|p| format!("{} ({})", p.task_definition, p.id))
                        .or(rolled_back);
                    self.line(
                        &Line::Failed {
                            deployment: &shown,
                            rolled_back_to: to.as_deref(),
                        },
                        || format!("deployment {id} failed: {reason}"),
                    )?;
                    let mut reason = reason;
                    if let Some(to) = to {
                        reason.push_str(&format!(" The service rolled back to {to}."));
                    }
                    return Err(CliError::DeploymentFailed {
                        service: service.to_owned(),
                        deployment: id.to_owned(),
                        reason,
                    });
                }
                if found.is_none() {
                    return Err(CliError::DeploymentFailed {
                        service: service.to_owned(),
                        deployment: id.to_owned(),
                        reason: "it was replaced by another deployment".to_owned(),
                    });
                }
            }
            self.next_wakeup(&names, &mut wakeups).await;
        }
    }

    /// `berthctl wait services-stable`.
    pub(crate) async fn wait_services_stable(
        &mut self,
        services: Vec<String>,
        timeout: Duration,
    ) -> Result<(), CliError> {
        let mut pending = Vec::new();
        let waited = tokio::time::timeout(timeout, async {
            let mut wakeups = None;
            loop {
                match self.describe(&services).await {
                    Ok(described) => {
                        pending = unstable(&described)?;
                        if pending.is_empty() {
                            return Ok(());
                        }
                    }
                    Err(CliError::Unreachable { reason, .. }) => {
                        pending = vec![format!("the scheduler is unreachable ({reason})")];
                    }
                    Err(CliError::Api {
                        code: tonic::Code::Unavailable,
                        message,
                    }) => pending = vec![format!("the scheduler is unavailable ({message})")],
                    Err(e) => return Err(e),
                }
                self.next_wakeup(&services, &mut wakeups).await;
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_elapsed) => Err(CliError::WaitTimeout {
                condition: "services to be stable",
                waited: timeout,
                pending,
            }),
        }
    }
}

/// The services not yet stable, each with where it stands; a service that is not ACTIVE
/// fails the wait (ECS's waiter: DRAINING or INACTIVE is a failure).
fn unstable(services: &[proto::Service]) -> Result<Vec<String>, CliError> {
    let mut pending = Vec::new();
    for s in services {
        if s.status != "ACTIVE" {
            return Err(CliError::ServiceNotActive {
                service: s.service_name.clone(),
                status: s.status.clone(),
            });
        }
        let deployments = s
            .deployments
            .iter()
            .filter(|d| d.status != "INACTIVE")
            .count();
        if deployments > 1 || s.running_count != s.desired_count {
            pending.push(format!(
                "{} ({} of {} running, {deployments} deployments)",
                s.service_name, s.running_count, s.desired_count
            ));
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: &str, running: u32, deployments: usize) -> proto::Service {
        proto::Service {
            service_name: "web".into(),
            status: status.into(),
            desired_count: 2,
            running_count: running,
            deployments: (0..deployments)
                .map(|i| proto::Deployment {
                    id: format!("ecs-svc/{i}"),
                    status: if i == 0 { "PRIMARY" } else { "ACTIVE" }.into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn stable_means_one_deployment_and_the_desired_count_running() {
        assert!(
            unstable(&[service("ACTIVE", 2, 1)])
                .expect("active")
                .is_empty()
        );
        assert_eq!(
            unstable(&[service("ACTIVE", 1, 1)]).expect("active"),
            vec!["web (1 of 2 running, 1 deployments)".to_owned()]
        );
        assert_eq!(
            unstable(&[service("ACTIVE", 2, 2)]).expect("active").len(),
            1
        );
        let gone = unstable(&[service("DRAINING", 2, 1)]).unwrap_err();
        assert!(gone.to_string().contains("DRAINING"), "{gone}");
    }

    #[test]
    fn json_lines_are_tagged_with_their_type() {
        let d = json::Deployment::from(&proto::Deployment {
            id: "ecs-svc/1".into(),
            rollout_state: "FAILED".into(),
            ..Default::default()
        });
        let line = serde_json::to_value(Line::Failed {
            deployment: &d,
            rolled_back_to: Some("web:1"),
        })
        .expect("json");
        assert_eq!(line["type"], "failed");
        assert_eq!(line["rolledBackTo"], "web:1");
        assert_eq!(line["deployment"]["rolloutState"], "FAILED");
        let event = serde_json::to_value(Line::Event { message: "hi" }).expect("json");
        assert_eq!(event, serde_json::json!({"type": "event", "message": "hi"}));
    }
}
