//! Task secrets in the engine: they reach the containers' environment and the pull's
//! credentials, never the store; a missing one fails the task by name; a task whose secrets
//! are not known (after an agent restart) waits for the source rather than starting without.

use berth_proto::v1 as pb;
use berth_runtime::RegistryAuth;

use super::*;
use crate::secrets::FixedSource;

const VALUE: &str = "s3cr3t-value-for-the-test";

fn with_secrets(task: &str) -> TaskAssignment {
    let mut a = one_container(task, |c| {
        c.secrets = vec![pb::ContainerSecret {
            name: "DB_PASSWORD".into(),
            value_from: "db".into(),
        }];
        c.repository_credentials = Some(pb::RepositoryCredentials {
            credentials_parameter: "reg".into(),
        });
    });
    a.secrets = Some(values());
    a
}

fn values() -> pb::TaskSecrets {
    pb::TaskSecrets {
        values: vec![
            pb::SecretValue {
                name: "db".into(),
                value: VALUE.as_bytes().to_vec(),
            },
            pb::SecretValue {
                name: "reg".into(),
                value: br#"{"username":"bob","password":"pw-for-the-test"}"#.to_vec(),
            },
        ],
        missing: vec![],
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secrets_reach_the_environment_and_the_pull_but_never_the_store() {
    let h = start();
    h.run(with_secrets("t-secrets")).await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(specs[0].environment["DB_PASSWORD"], VALUE);
    let auths = h.fake.pull_auths.lock().unwrap().clone();
    assert_eq!(
        auths,
        [(
            "img:1".to_owned(),
            RegistryAuth::Basic {
                username: "bob".into(),
                password: "pw-for-the-test".into()
            }
        )]
    );
    let file = std::fs::read(h.store.path()).unwrap();
    assert!(!contains(&file, VALUE), "the store holds the value");
    assert!(
        !contains(&file, "pw-for-the-test"),
        "the store holds the password"
    );
    let stored = h.store.tasks().unwrap();
    assert!(stored.iter().all(|t| t.assignment.secrets.is_none()));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_missing_secret_fails_the_task_naming_it() {
    let h = start();
    let mut a = with_secrets("t-missing");
    a.secrets = Some(pb::TaskSecrets {
        values: values().values.into_iter().skip(1).collect(),
        missing: vec!["db".into()],
    });
    h.assign(a).await;
    let stopped = until(&h.store, "t-missing", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped
            .stopped_reason
            .starts_with("ResourceInitializationError: ")
            && stopped.stopped_reason.contains("secret db does not exist"),
        "{}",
        stopped.stopped_reason
    );
    assert_eq!(
        count_calls(&h.fake, "pull img:1"),
        0,
        "pulled before failing"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_task_whose_secrets_are_unknown_waits_for_the_source() {
    let source = Arc::new(FixedSource::default());
    let given = Arc::clone(&source);
    let h = start_configured(tempfile::tempdir().unwrap(), move |c| {
        c.secret_source = given;
    });
    // As after an agent restart: the assignment as stored, without its values.
    let mut a = with_secrets("t-wait");
    a.secrets = None;
    h.assign(a).await;
    h.handle.barrier().await;
    assert!(
        h.fake.specs.lock().unwrap().is_empty(),
        "created without its secrets"
    );
    *source.0.lock().unwrap() = Some(values());
    until(&h.store, "t-wait", TaskStatus::Running).await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(specs[0].environment["DB_PASSWORD"], VALUE);
    h.cancel.cancel();
}

const PARAM: &str = "arn:aws:ssm:eu-west-1:111122223333:parameter/prod/db";
const AWS_VALUE: &str = "from-ssm-value-for-the-test";

fn with_aws_secret(task: &str) -> TaskAssignment {
    let mut a = one_container(task, |c| {
        c.secrets = vec![pb::ContainerSecret {
            name: "DB_PASSWORD".into(),
            value_from: PARAM.into(),
        }];
    });
    // The scheduler's answer for a definition that names only ARNs.
    a.secrets = Some(pb::TaskSecrets::default());
    a
}

#[tokio::test]
async fn aws_secrets_are_fetched_when_the_task_starts_and_never_stored() {
    let aws = Arc::new(crate::secrets::FixedAws::default());
    aws.values
        .lock()
        .unwrap()
        .insert(PARAM.into(), AWS_VALUE.as_bytes().to_vec());
    let given = Arc::clone(&aws);
    let h = start_configured(tempfile::tempdir().unwrap(), move |c| {
        c.aws_secrets = given;
    });
    h.run(with_aws_secret("t-aws")).await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(specs[0].environment["DB_PASSWORD"], AWS_VALUE);
    assert_eq!(aws.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let file = std::fs::read(h.store.path()).unwrap();
    assert!(!contains(&file, AWS_VALUE), "the store holds the value");
    h.cancel.cancel();
}

#[tokio::test]
async fn an_aws_secret_that_cannot_be_read_fails_the_task_with_the_aws_code() {
    let h = start();
    h.assign(with_aws_secret("t-aws-missing")).await;
    let stopped = until(&h.store, "t-aws-missing", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    let reason = &stopped.stopped_reason;
    assert!(
        reason.starts_with("ResourceInitializationError: ")
            && reason.contains(PARAM)
            && reason.contains("SSM Parameter Store answered ParameterNotFound"),
        "{reason}"
    );
    assert_eq!(
        count_calls(&h.fake, "pull img:1"),
        0,
        "pulled before failing"
    );
    h.cancel.cancel();
}
