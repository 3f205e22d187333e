//! A container's `secrets` and `repositoryCredentials`: each names a secret of the task's
//! cluster (`berthctl create-secret`), whose value the agent gets with the assignment. Only
//! the names are part of the definition. Whether the secret exists is checked when the task
//! starts, as on ECS: a missing one fails the task with a reason that names it.
//!
//! A `valueFrom` that is an AWS ARN (SSM Parameter Store, Secrets Manager) is refused by name
//! until the agent fetches from AWS.

use berth_proto::v1 as proto;

use super::error::Problem;
use super::{ecs, walk};
use crate::secrets::validate_name;

/// What a `valueFrom` or `credentialsParameter` that Berth cannot read is told.
fn source_problem(value: &str) -> Option<String> {
    if value.starts_with("arn:") {
        return Some(format!(
            "`{value}` is an AWS ARN, and secrets are not fetched from AWS SSM Parameter Store \
             or Secrets Manager yet: store the value in the cluster with `berthctl create-secret \
             NAME --from-file FILE` and give its NAME here"
        ));
    }
    validate_name(value).err()
}

/// `secrets`: an environment variable name and a secret name each.
pub(super) fn secrets(
    list: Vec<ecs::Secret>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<proto::ContainerSecret> {
    let list_path = walk::child(path, "secrets");
    let mut seen = std::collections::BTreeSet::new();
    list.into_iter()
        .enumerate()
        .map(|(j, s)| {
            let entry = walk::index(&list_path, j);
            if s.name.is_empty() || s.name.contains('=') || s.name.contains('\0') {
                problems.push(Problem::at(
                    &walk::child(&entry, "name"),
                    "an environment variable name must be non-empty, without `=` or NUL",
                ));
            } else if !seen.insert(s.name.clone()) {
                problems.push(Problem::at(
                    &walk::child(&entry, "name"),
                    format!("`{}` is set by two secrets of this container", s.name),
                ));
            }
            if let Some(problem) = source_problem(&s.value_from) {
                problems.push(Problem::at(&walk::child(&entry, "valueFrom"), problem));
            }
            proto::ContainerSecret {
                name: s.name,
                value_from: s.value_from,
            }
        })
        .collect()
}

/// `repositoryCredentials`: the secret holding the registry's username and password.
pub(super) fn repository_credentials(
    creds: ecs::RepositoryCredentials,
    path: &str,
    problems: &mut Vec<Problem>,
) -> proto::RepositoryCredentials {
    let at = walk::child(
        &walk::child(path, "repositoryCredentials"),
        "credentialsParameter",
    );
    if let Some(problem) = source_problem(&creds.credentials_parameter) {
        problems.push(Problem::at(&at, problem));
    }
    proto::RepositoryCredentials {
        credentials_parameter: creds.credentials_parameter,
    }
}
