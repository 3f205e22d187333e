//! Task secrets on the agent. The values of the secrets a task's definition names (containers'
//! `secrets` and `repositoryCredentials`) arrive with its assignment and are held here, in
//! memory only: the assignment is stored without them, no `Debug` shows them, and no log line
//! or error names more than a secret's name. After an agent restart the book is empty, and a
//! task that must create containers gets its secrets again from a [`SecretSource`] (the
//! scheduler's `GetTaskSecrets`), waiting for them rather than starting without.
//!
//! Where a `valueFrom` is resolved is decided by [`Origin::of`]: a plain name is a secret of
//! Berth's own store, sent by the scheduler; an AWS ARN (SSM Parameter Store, Secrets Manager)
//! is refused here today, and is where a source that reads AWS plugs in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_proto::v1 as pb;
use berth_runtime::RegistryAuth;

/// The secrets of one task, as resolved. `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskSecrets {
    values: BTreeMap<String, Vec<u8>>,
    missing: BTreeSet<String>,
}

impl std::fmt::Debug for TaskSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSecrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("missing", &self.missing)
            .finish()
    }
}

impl From<pb::TaskSecrets> for TaskSecrets {
    fn from(s: pb::TaskSecrets) -> Self {
        Self {
            values: s.values.into_iter().map(|v| (v.name, v.value)).collect(),
            missing: s.missing.into_iter().collect(),
        }
    }
}

/// Where a `valueFrom` (or `credentialsParameter`) is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A secret of the cluster's store in the scheduler, sent with the assignment.
    Berth,
    /// An AWS ARN: SSM Parameter Store or Secrets Manager.
    Aws,
}

impl Origin {
    pub(crate) fn of(value_from: &str) -> Self {
        if value_from.starts_with("arn:") {
            Self::Aws
        } else {
            Self::Berth
        }
    }
}

/// Why a task's secrets cannot be used. The message is the task's stoppedReason, with ECS's
/// prefix; it names secrets, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: secret {name} does not exist in the cluster's secret store (create it with `berthctl create-secret {name}`)"
    )]
    Missing { container: String, name: String },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: {value_from} is an AWS ARN, which this agent does not read"
    )]
    Unsupported {
        container: String,
        value_from: String,
    },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: secret {name} (environment variable {variable}) is not UTF-8 text"
    )]
    NotText {
        container: String,
        name: String,
        variable: String,
    },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: secret {name} of repositoryCredentials is not JSON with \"username\" and \"password\""
    )]
    NotCredentials { container: String, name: String },
}

/// A source of the secrets of a task this agent runs, for when the book does not hold them
/// (after a restart).
#[async_trait]
pub(crate) trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The secrets of `task_id`; an error says why not (the caller retries).
    async fn fetch(&self, task_id: &str) -> Result<pb::TaskSecrets, String>;
}

/// The secrets of the tasks the agent runs, in memory.
#[derive(Debug, Default)]
pub(crate) struct SecretBook {
    tasks: Mutex<HashMap<String, Arc<TaskSecrets>>>,
}

impl SecretBook {
    pub(crate) fn put(&self, task_id: &str, secrets: TaskSecrets) -> Arc<TaskSecrets> {
        let secrets = Arc::new(secrets);
        self.lock().insert(task_id.to_owned(), Arc::clone(&secrets));
        secrets
    }

    pub(crate) fn get(&self, task_id: &str) -> Option<Arc<TaskSecrets>> {
        self.lock().get(task_id).cloned()
    }

    pub(crate) fn forget(&self, task_id: &str) {
        self.lock().remove(task_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TaskSecrets>>> {
        // A panic while holding the lock left a map that is still whole.
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a definition names any secret.
pub(crate) fn needs_secrets(def: &pb::TaskDefinition) -> bool {
    def.containers
        .iter()
        .any(|c| !c.secrets.is_empty() || c.repository_credentials.is_some())
}

/// What a container gets from the task's secrets.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct ContainerSecrets {
    /// Environment variables, by name.
    pub(crate) environment: BTreeMap<String, String>,
    /// The credentials of its image's registry (`repositoryCredentials`).
    pub(crate) registry_auth: Option<RegistryAuth>,
}

impl std::fmt::Debug for ContainerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSecrets")
            .field("environment", &self.environment.keys().collect::<Vec<_>>())
            .field("registry_auth", &self.registry_auth)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// What `container` gets from `secrets`: each of its `secrets` as an environment variable,
/// its `repositoryCredentials` as basic auth. A missing or unreadable secret fails it.
pub(crate) fn for_container(
    container: &pb::ContainerDefinition,
    secrets: &TaskSecrets,
) -> Result<ContainerSecrets, SecretError> {
    let value = |name: &str| -> Result<&[u8], SecretError> {
        if Origin::of(name) == Origin::Aws {
            return Err(SecretError::Unsupported {
                container: container.name.clone(),
                value_from: name.to_owned(),
            });
        }
        secrets
            .values
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| SecretError::Missing {
                container: container.name.clone(),
                name: name.to_owned(),
            })
    };
    let mut out = ContainerSecrets::default();
    for s in &container.secrets {
        let text =
            std::str::from_utf8(value(&s.value_from)?).map_err(|_| SecretError::NotText {
                container: container.name.clone(),
                name: s.value_from.clone(),
                variable: s.name.clone(),
            })?;
        out.environment.insert(s.name.clone(), text.to_owned());
    }
    if let Some(creds) = &container.repository_credentials {
        let name = &creds.credentials_parameter;
        let parsed: Credentials =
            serde_json::from_slice(value(name)?).map_err(|_| SecretError::NotCredentials {
                container: container.name.clone(),
                name: name.clone(),
            })?;
        out.registry_auth = Some(RegistryAuth::Basic {
            username: parsed.username,
            password: parsed.password,
        });
    }
    Ok(out)
}

/// The scheduler as a [`SecretSource`]: `GetTaskSecrets` over a new authenticated channel, as
/// the instance the store says this host registered as.
pub(crate) struct SchedulerSecrets {
    pub(crate) endpoint: String,
    pub(crate) tls: Option<tokio::sync::watch::Receiver<crate::session::TlsMaterial>>,
    pub(crate) store: Arc<crate::store::Store>,
}

impl std::fmt::Debug for SchedulerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerSecrets")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SecretSource for SchedulerSecrets {
    async fn fetch(&self, task_id: &str) -> Result<pb::TaskSecrets, String> {
        let store = Arc::clone(&self.store);
        let (cluster, instance) = store
            .off_thread(crate::store::Store::registration)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("this host is not registered")?;
        let tls = self.tls.as_ref().map(|rx| rx.borrow().clone());
        let channel = crate::session::connect(&self.endpoint, tls.as_ref())
            .await
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
        let response = pb::agent_service_client::AgentServiceClient::new(channel)
            .get_task_secrets(pb::GetTaskSecretsRequest {
                cluster,
                container_instance_id: instance,
                task_id: task_id.to_owned(),
            })
            .await
            .map_err(|status| format!("{}: {}", status.code(), status.message()))?;
        Ok(response.into_inner().secrets.unwrap_or_default())
    }
}

/// A source that answers what a test put in it, and fails while it holds nothing.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FixedSource(pub(crate) Mutex<Option<pb::TaskSecrets>>);

#[cfg(test)]
#[async_trait]
impl SecretSource for FixedSource {
    async fn fetch(&self, _task_id: &str) -> Result<pb::TaskSecrets, String> {
        self.0
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .clone()
            .ok_or_else(|| "the scheduler is unreachable".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> pb::ContainerDefinition {
        pb::ContainerDefinition {
            name: "app".into(),
            secrets: vec![pb::ContainerSecret {
                name: "DB_PASSWORD".into(),
                value_from: "db".into(),
            }],
            repository_credentials: Some(pb::RepositoryCredentials {
                credentials_parameter: "reg".into(),
            }),
            ..Default::default()
        }
    }

    fn secrets(values: &[(&str, &[u8])], missing: &[&str]) -> TaskSecrets {
        pb::TaskSecrets {
            values: values
                .iter()
                .map(|(n, v)| pb::SecretValue {
                    name: (*n).into(),
                    value: v.to_vec(),
                })
                .collect(),
            missing: missing.iter().map(|m| (*m).to_owned()).collect(),
        }
        .into()
    }

    #[test]
    fn secrets_become_variables_and_registry_credentials() {
        let s = secrets(
            &[
                ("db", b"hunter2-secret"),
                ("reg", br#"{"username":"bob","password":"pw-secret"}"#),
            ],
            &[],
        );
        let got = for_container(&container(), &s).unwrap();
        assert_eq!(got.environment["DB_PASSWORD"], "hunter2-secret");
        assert_eq!(
            got.registry_auth,
            Some(RegistryAuth::Basic {
                username: "bob".into(),
                password: "pw-secret".into()
            })
        );
        // Nothing a log or an error could show holds a value.
        let shown = format!("{s:?} {got:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("DB_PASSWORD") && shown.contains("db"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_or_malformed_secret_fails_with_its_name_only() {
        let error = for_container(&container(), &secrets(&[("reg", b"{}")], &["db"])).unwrap_err();
        assert_eq!(
            error,
            SecretError::Missing {
                container: "app".into(),
                name: "db".into()
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("ResourceInitializationError: ")
        );
        assert!(error.to_string().contains("berthctl create-secret db"));
        let error = for_container(
            &container(),
            &secrets(&[("db", b"ok"), ("reg", b"not-json-secret")], &[]),
        )
        .unwrap_err();
        assert!(matches!(error, SecretError::NotCredentials { .. }));
        assert!(!error.to_string().contains("not-json-secret"));
        let error =
            for_container(&container(), &secrets(&[("db", &[0xff, 0xfe])], &[])).unwrap_err();
        assert!(matches!(error, SecretError::NotText { .. }), "{error}");
        let mut aws = container();
        aws.secrets[0].value_from = "arn:aws:ssm:eu-west-1:1:parameter/x".into();
        assert!(matches!(
            for_container(&aws, &TaskSecrets::default()),
            Err(SecretError::Unsupported { .. })
        ));
    }

    #[test]
    fn the_book_holds_and_forgets() {
        let book = SecretBook::default();
        assert!(book.get("t").is_none());
        book.put("t", secrets(&[("db", b"v")], &[]));
        assert!(book.get("t").is_some());
        book.forget("t");
        assert!(book.get("t").is_none());
    }
}
