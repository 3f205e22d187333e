//! Task secrets on the agent. The values of the secrets a task's definition names (containers'
//! `secrets` and `repositoryCredentials`) are held here, in memory only: the assignment is
//! stored without them, no `Debug` shows them, and no log line or error names more than a
//! secret's name. After an agent restart the book is empty, and a task that must create
//! containers gets its secrets again from a [`SecretSource`] (the scheduler's
//! `GetTaskSecrets`), waiting for them rather than starting without.
//!
//! Where a `valueFrom` is read from (`arn.rs`): a plain name is a secret of Berth's own store,
//! sent by the scheduler with the assignment, and else an SSM parameter of the agent's region;
//! an SSM Parameter Store or Secrets Manager ARN is fetched from AWS with the host's
//! credentials when the task starts (`aws.rs`, behind [`AwsSecretSource`]), its json-key
//! taken here.

mod arn;
mod aws;

#[cfg(test)]
pub(crate) use aws::FixedAws;
pub(crate) use aws::{AwsSecretSource, SdkSecrets};

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

/// Why a task's secrets cannot be used. The message is the task's stoppedReason, with ECS's
/// prefix; it names secrets, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: secret {name} does not exist in the cluster's secret store (create it with `berthctl create-secret {name}`), and SSM Parameter Store of the agent's region answered {aws}"
    )]
    Missing {
        container: String,
        name: String,
        aws: aws::FetchError,
    },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: {value_from}: {service} answered {aws}"
    )]
    Aws {
        container: String,
        value_from: String,
        service: &'static str,
        aws: aws::FetchError,
    },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: {error}"
    )]
    BadArn {
        container: String,
        error: arn::ArnError,
    },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: {value_from}: {error}"
    )]
    JsonKey {
        container: String,
        value_from: String,
        error: arn::JsonKeyError,
    },
    #[error(
        "ResourceInitializationError: unable to get secrets or registry auth: container {container}: secret {name} is not in the task's secrets"
    )]
    Unresolved { container: String, name: String },
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

/// What `container` gets from `secrets` (Berth's and AWS's values, see [`resolve_aws`]): each
/// of its `secrets` as an environment variable, its `repositoryCredentials` as basic auth. An
/// unreadable secret fails it.
pub(crate) fn for_container(
    container: &pb::ContainerDefinition,
    secrets: &TaskSecrets,
) -> Result<ContainerSecrets, SecretError> {
    let value = |name: &str| -> Result<&[u8], SecretError> {
        secrets
            .values
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| SecretError::Unresolved {
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

/// One value a task needs from AWS.
#[derive(Debug)]
struct Wanted {
    /// The first container that names it.
    container: String,
    value_from: String,
    what: arn::AwsRef,
}

/// The `valueFrom`s of `def` that `secrets` does not hold: ARNs, and names Berth's store does
/// not have (asked of SSM Parameter Store by name); each once, in the definition's order.
fn aws_wanted(def: &pb::TaskDefinition, secrets: &TaskSecrets) -> Result<Vec<Wanted>, SecretError> {
    let mut seen = BTreeSet::new();
    let mut wanted = Vec::new();
    for c in &def.containers {
        let names = c.secrets.iter().map(|s| &s.value_from).chain(
            c.repository_credentials
                .iter()
                .map(|r| &r.credentials_parameter),
        );
        for value_from in names {
            if secrets.values.contains_key(value_from) || !seen.insert(value_from.clone()) {
                continue;
            }
            let what = arn::parse(value_from).map_err(|error| SecretError::BadArn {
                container: c.name.clone(),
                error,
            })?;
            wanted.push(Wanted {
                container: c.name.clone(),
                value_from: value_from.clone(),
                what,
            });
        }
    }
    Ok(wanted)
}

/// What `def` needs beyond `secrets` (the values of Berth's store), fetched from `source`,
/// each once and all at once, its json-key taken: `secrets` with them, or the first failure in
/// the definition's order. None when nothing is needed from AWS.
pub(crate) async fn resolve_aws(
    def: &pb::TaskDefinition,
    secrets: &TaskSecrets,
    source: &dyn AwsSecretSource,
) -> Result<Option<TaskSecrets>, SecretError> {
    let wanted = aws_wanted(def, secrets)?;
    if wanted.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        secrets = ?wanted.iter().map(|w| w.value_from.as_str()).collect::<Vec<_>>(),
        "fetching the task's secrets from AWS"
    );
    let answers = futures::future::join_all(wanted.iter().map(|w| source.get(&w.what))).await;
    let mut resolved = secrets.clone();
    for (w, answer) in wanted.into_iter().zip(answers) {
        let value = answer.map_err(|aws| {
            if arn::is_arn(&w.value_from) {
                SecretError::Aws {
                    container: w.container.clone(),
                    value_from: w.value_from.clone(),
                    service: w.what.service(),
                    aws,
                }
            } else {
                SecretError::Missing {
                    container: w.container.clone(),
                    name: w.value_from.clone(),
                    aws,
                }
            }
        })?;
        let value = match &w.what {
            arn::AwsRef::Secret {
                json_key: Some(key),
                ..
            } => arn::json_key(&value, key).map_err(|error| SecretError::JsonKey {
                container: w.container.clone(),
                value_from: w.value_from.clone(),
                error,
            })?,
            _ => value,
        };
        resolved.missing.remove(&w.value_from);
        resolved.values.insert(w.value_from, value);
    }
    Ok(Some(resolved))
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
            SecretError::Unresolved {
                container: "app".into(),
                name: "db".into()
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("ResourceInitializationError: ")
        );
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
    }

    const PARAM: &str = "arn:aws:ssm:eu-west-1:111122223333:parameter/prod/db";
    const SECRET: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/reg-AbCdEf";

    fn aws_definition() -> pb::TaskDefinition {
        let secret = |name: &str, value_from: &str| pb::ContainerSecret {
            name: name.into(),
            value_from: value_from.into(),
        };
        pb::TaskDefinition {
            containers: vec![
                pb::ContainerDefinition {
                    name: "app".into(),
                    secrets: vec![
                        secret("DB", PARAM),
                        secret("API_KEY", &format!("{SECRET}:api_key::")),
                        secret("LOCAL", "local"),
                        secret("BY_NAME", "/shared/flag"),
                    ],
                    repository_credentials: Some(pb::RepositoryCredentials {
                        credentials_parameter: SECRET.into(),
                    }),
                    ..Default::default()
                },
                pb::ContainerDefinition {
                    name: "sidecar".into(),
                    secrets: vec![secret("DB", PARAM)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn aws(values: &[(&str, &[u8])]) -> FixedAws {
        let aws = FixedAws::default();
        aws.values
            .lock()
            .unwrap()
            .extend(values.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())));
        aws
    }

    #[tokio::test]
    async fn aws_secrets_are_fetched_once_and_json_keys_taken() {
        let source = aws(&[
            (PARAM, b"db-secret-value"),
            (
                SECRET,
                br#"{"username":"bob","password":"pw-secret","api_key":"key-secret"}"#,
            ),
            ("/shared/flag", b"on"),
        ]);
        let berth = secrets(&[("local", b"from-berth")], &["/shared/flag"]);
        let def = aws_definition();
        let got = resolve_aws(&def, &berth, &source).await.unwrap().unwrap();
        // Each distinct valueFrom once: the parameter both containers name, the secret whole
        // (credentials) and by key, the name Berth's store lacks; not the one it has.
        assert_eq!(source.calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        let app = for_container(&def.containers[0], &got).unwrap();
        assert_eq!(app.environment["DB"], "db-secret-value");
        assert_eq!(app.environment["API_KEY"], "key-secret");
        assert_eq!(app.environment["LOCAL"], "from-berth");
        assert_eq!(app.environment["BY_NAME"], "on");
        assert_eq!(
            app.registry_auth,
            Some(RegistryAuth::Basic {
                username: "bob".into(),
                password: "pw-secret".into()
            })
        );
        let sidecar = for_container(&def.containers[1], &got).unwrap();
        assert_eq!(sidecar.environment["DB"], "db-secret-value");
        let shown = format!("{got:?}");
        assert!(!shown.contains("secret-value") && !shown.contains("pw-secret"));
        // Resolved, nothing more is asked.
        assert!(resolve_aws(&def, &got, &source).await.unwrap().is_none());
        assert_eq!(source.calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn aws_failures_name_the_secret_and_the_error_code() {
        let def = aws_definition();
        let berth = secrets(&[("local", b"v")], &[]);
        let error = resolve_aws(&def, &berth, &aws(&[])).await.unwrap_err();
        assert!(
            matches!(&error, SecretError::Aws { container, value_from, .. }
                if container == "app" && value_from == PARAM),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.starts_with("ResourceInitializationError: "), "{text}");
        assert!(
            text.contains(PARAM) && text.contains("SSM Parameter Store answered ParameterNotFound"),
            "{text}"
        );
        // A name neither Berth's store nor SSM has.
        let only_name = pb::TaskDefinition {
            containers: vec![pb::ContainerDefinition {
                name: "app".into(),
                secrets: vec![pb::ContainerSecret {
                    name: "X".into(),
                    value_from: "db".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let error = resolve_aws(&only_name, &secrets(&[], &["db"]), &aws(&[]))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("secret db does not exist in the cluster's secret store")
                && text.contains("berthctl create-secret db")
                && text.contains("ParameterNotFound"),
            "{text}"
        );
        // A json-key the secret lacks; a secret that is not JSON: the value is never shown.
        let source = aws(&[(PARAM, b"v"), (SECRET, b"not-json-secret")]);
        let error = resolve_aws(&def, &berth, &source).await.unwrap_err();
        assert!(matches!(error, SecretError::JsonKey { .. }), "{error:?}");
        assert!(!error.to_string().contains("not-json-secret"));
        let source = aws(&[(PARAM, b"v"), (SECRET, br#"{"other":"x"}"#)]);
        let error = resolve_aws(&def, &berth, &source).await.unwrap_err();
        assert!(error.to_string().contains("no key \"api_key\""), "{error}");
        // An ARN of another service.
        let mut bad = def.clone();
        bad.containers[0].secrets[0].value_from = "arn:aws:s3:eu-west-1:1:bucket/key".into();
        let error = resolve_aws(&bad, &berth, &aws(&[])).await.unwrap_err();
        assert!(matches!(error, SecretError::BadArn { .. }), "{error:?}");
        assert!(error.to_string().contains("neither ssm nor secretsmanager"));
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
