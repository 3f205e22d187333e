//! Task secrets through the server: stored sealed, listed without values, sent with the
//! assignment (and again to an agent that asks after a restart), never in the outbox.

use super::*;

const WITH_SECRETS: &str = r#"{"family":"sec","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
  "secrets":[{"name":"DB_PASSWORD","valueFrom":"db"},{"name":"GONE","valueFrom":"absent"}],
  "repositoryCredentials":{"credentialsParameter":"reg"}}]}"#;

const VALUE: &[u8] = b"correct-horse-battery-staple";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn secrets_are_sealed_listed_without_values_and_sent_with_the_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WITH_SECRETS]).await;
    for (name, value) in [
        ("db", VALUE),
        ("reg", br#"{"username":"u","password":"p"}"#.as_slice()),
    ] {
        let created = c
            .create_secret(pb::CreateSecretRequest {
                cluster: String::new(),
                name: name.into(),
                value: value.to_vec(),
                overwrite: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!created.replaced);
        assert_eq!(created.secret.unwrap().size, value.len() as u64);
    }
    let again = c
        .create_secret(pb::CreateSecretRequest {
            cluster: String::new(),
            name: "db".into(),
            value: b"other".to_vec(),
            overwrite: false,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    assert!(
        again.message().contains("--overwrite"),
        "{}",
        again.message()
    );
    let bad = c
        .create_secret(pb::CreateSecretRequest {
            name: "no spaces".into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let listed = c
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "reg"]);
    assert!(!format!("{listed:?}").contains("correct-horse"));

    let (task, assignment) = run_assigned(&mut c, &mut agent, "sec").await;
    let secrets = assignment
        .secrets
        .clone()
        .expect("the assignment carries secrets");
    let values: Vec<_> = secrets
        .values
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_slice()))
        .collect();
    assert_eq!(values[0], ("db", VALUE));
    assert_eq!(values[1].0, "reg");
    assert_eq!(secrets.missing, ["absent"]);

    // Nothing stored holds the value: the secret is sealed, the outbox has no values.
    for (table, key, bytes) in server.store.contents().unwrap() {
        assert!(!contains(&bytes, VALUE), "{table} {key} holds the value");
    }
    let on_disk = std::fs::read(dir.path().join(crate::store::DB_FILE)).unwrap();
    assert!(
        !contains(&on_disk, VALUE),
        "the database file holds the value"
    );

    // An agent that restarted asks again.
    let mut a = server.agent_client().await;
    let again = a
        .get_task_secrets(pb::GetTaskSecretsRequest {
            cluster: String::new(),
            container_instance_id: id.clone(),
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.secrets, assignment.secrets);
    let other = a
        .get_task_secrets(pb::GetTaskSecretsRequest {
            cluster: String::new(),
            container_instance_id: "someone-else".into(),
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");

    c.delete_secret(pb::DeleteSecretRequest {
        cluster: String::new(),
        name: "db".into(),
    })
    .await
    .unwrap();
    let gone = c
        .delete_secret(pb::DeleteSecretRequest {
            cluster: String::new(),
            name: "db".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}

#[test]
fn overwrite_keeps_the_creation_time_and_a_new_key_cannot_read_old_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1000);
    let t1 = t0 + Duration::from_secs(60);
    store
        .create_secret("default", "db", b"one", false, t0)
        .unwrap();
    let (info, replaced) = store
        .create_secret("default", "db", b"two!", true, t1)
        .unwrap();
    assert!(replaced);
    assert_eq!(info.created_at.unwrap().seconds, 1000);
    assert_eq!(info.updated_at.unwrap().seconds, 1060);
    assert_eq!(info.size, 4);
    let def = crate::taskdef::parse(WITH_SECRETS).unwrap();
    let got = store.task_secrets("default", &def).unwrap().unwrap();
    assert_eq!(got.values[0].value, b"two!");
    drop(store);
    // Another key (the file replaced): the value does not open and counts as missing.
    std::fs::remove_file(dir.path().join(crate::secrets::KEY_FILE)).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let got = store.task_secrets("default", &def).unwrap().unwrap();
    assert!(got.values.is_empty());
    assert_eq!(got.missing, ["absent", "db", "reg"]);
}

#[tokio::test]
async fn aws_arns_are_left_to_the_agent_and_names_it_lacks_are_listed_missing() {
    const AWS: &str = r#"{"family":"aws","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
      "secrets":[{"name":"DB","valueFrom":"arn:aws:ssm:eu-west-1:111122223333:parameter/prod/db"},
                 {"name":"KEY","valueFrom":"arn:aws:secretsmanager:eu-west-1:111122223333:secret:app-AbCdEf:key::"},
                 {"name":"PLAIN","valueFrom":"/prod/plain"}]}]}"#;
    const ONLY_ARNS: &str = r#"{"family":"arns","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
      "repositoryCredentials":{"credentialsParameter":"arn:aws:secretsmanager:eu-west-1:111122223333:secret:reg-AbCdEf"}}]}"#;
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c, _id, mut agent) = scene(dir.path(), &[AWS, ONLY_ARNS]).await;
    let (_, assignment) = run_assigned(&mut c, &mut agent, "aws").await;
    let secrets = assignment.secrets.expect("the assignment carries secrets");
    assert!(secrets.values.is_empty());
    // The agent asks SSM Parameter Store for the name the store lacks, and AWS for the ARNs.
    assert_eq!(secrets.missing, ["/prod/plain"]);
    // Only ARNs: an empty answer, so the agent does not take the task for one it restarted with.
    let (_, assignment) = run_assigned(&mut c, &mut agent, "arns").await;
    assert_eq!(assignment.secrets, Some(pb::TaskSecrets::default()));
}
