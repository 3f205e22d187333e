//! A container's `secrets` and `repositoryCredentials`: each names a secret of the task's
//! cluster (`berthctl create-secret`), whose value the agent gets with the assignment, or
//! else an SSM parameter of the agent's region; or it is an SSM Parameter Store or Secrets
//! Manager ARN, which the agent fetches with its host's credentials. Only the names are part
//! of the definition. Whether the secret exists is checked when the task starts, as on ECS: a
//! missing one fails the task with a reason that names it.
//!
//! An ARN is checked here as far as its shape goes (the agent parses it fully); one of another
//! service is refused by name.

use berth_proto::v1 as proto;

use super::error::Problem;
use super::{ecs, walk};
use crate::secrets::validate_name;

/// What a `valueFrom` or `credentialsParameter` that Berth cannot read is told.
fn source_problem(value: &str) -> Option<String> {
    if is_arn(value) {
        return arn_problem(value).map(|reason| {
            format!(
                "`{value}` is not an SSM Parameter Store or Secrets Manager ARN ({reason}): write \
                 arn:aws:ssm:REGION:ACCOUNT:parameter/NAME, \
                 arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:json-key:version-stage:version-id], \
                 or the NAME of a secret of the cluster (`berthctl create-secret NAME`)"
            )
        });
    }
    validate_name(value).err()
}

/// Whether a `valueFrom` is an ARN (fetched by the agent from AWS) rather than a name.
pub(crate) fn is_arn(value: &str) -> bool {
    value.starts_with("arn:")
}

/// What is wrong with the shape of an ARN a secret names, if anything.
fn arn_problem(value: &str) -> Option<&'static str> {
    let fields: Vec<&str> = value.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = fields[..] else {
        return Some("an ARN has six fields separated by `:`");
    };
    if !partition.starts_with("aws") {
        return Some("the partition is not aws, aws-cn or aws-us-gov");
    }
    if region.is_empty() || account.is_empty() {
        return Some("the region and the account cannot be empty");
    }
    match service {
        "ssm" => match resource.strip_prefix("parameter/") {
            Some(name) if !name.is_empty() => None,
            _ => Some("an SSM ARN names `parameter/NAME`"),
        },
        "secretsmanager" => match resource.strip_prefix("secret:") {
            Some(rest) => {
                let fields: Vec<&str> = rest.split(':').collect();
                if fields[0].is_empty() {
                    Some("the secret name is empty")
                } else if fields.len() > 4 {
                    Some(
                        "after the secret name come at most json-key, version-stage and version-id",
                    )
                } else if fields.get(2).is_some_and(|f| !f.is_empty())
                    && fields.get(3).is_some_and(|f| !f.is_empty())
                {
                    Some("give a version stage or a version ID, not both")
                } else {
                    None
                }
            }
            None => Some("a Secrets Manager ARN names `secret:NAME`"),
        },
        _ => Some("the service is neither ssm nor secretsmanager"),
    }
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
