//! Who may call what on `ControlService`: the roles, the one table that maps every RPC to the
//! least role allowed to call it, and the check of a caller's credential against it (role, and
//! a cluster-scoped token's cluster).

use std::fmt;

/// A client's role; each includes everything the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// List, describe and logs.
    ReadOnly,
    /// Also registering task definitions, running and stopping tasks, draining instances.
    Operator,
    /// Also clusters, instances and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::ReadOnly, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role a name spells; the error lists the names.
    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: use read-only, operator or admin"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every `ControlService` RPC, named as in `control.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    CreateCluster,
    DescribeClusters,
    ListClusters,
    DeleteCluster,
    RegisterTaskDefinition,
    DescribeTaskDefinition,
    ListTaskDefinitions,
    RunTask,
    StopTask,
    DescribeTasks,
    WatchTasks,
    ListTasks,
    ListContainerInstances,
    DescribeContainerInstances,
    DeregisterContainerInstance,
    GetTaskLogs,
    CreateJoinToken,
    ListJoinTokens,
    DeleteJoinToken,
    CreateApiToken,
    ListApiTokens,
    DeleteApiToken,
    CreateClientCertificate,
    ListClientCertificates,
    RevokeClientCertificate,
    GetTaskStats,
    GetInstanceStats,
    UpdateContainerInstancesState,
    CreateService,
    UpdateService,
    DeleteService,
    DescribeServices,
    ListServices,
    WatchServiceEvents,
    CreateSecret,
    ListSecrets,
    DeleteSecret,
    ListImages,
    CollectImages,
}

impl Rpc {
    pub const ALL: [Rpc; 39] = [
        Rpc::CreateCluster,
        Rpc::DescribeClusters,
        Rpc::ListClusters,
        Rpc::DeleteCluster,
        Rpc::RegisterTaskDefinition,
        Rpc::DescribeTaskDefinition,
        Rpc::ListTaskDefinitions,
        Rpc::RunTask,
        Rpc::StopTask,
        Rpc::DescribeTasks,
        Rpc::WatchTasks,
        Rpc::ListTasks,
        Rpc::ListContainerInstances,
        Rpc::DescribeContainerInstances,
        Rpc::DeregisterContainerInstance,
        Rpc::GetTaskLogs,
        Rpc::CreateJoinToken,
        Rpc::ListJoinTokens,
        Rpc::DeleteJoinToken,
        Rpc::CreateApiToken,
        Rpc::ListApiTokens,
        Rpc::DeleteApiToken,
        Rpc::CreateClientCertificate,
        Rpc::ListClientCertificates,
        Rpc::RevokeClientCertificate,
        Rpc::GetTaskStats,
        Rpc::GetInstanceStats,
        Rpc::UpdateContainerInstancesState,
        Rpc::CreateService,
        Rpc::UpdateService,
        Rpc::DeleteService,
        Rpc::DescribeServices,
        Rpc::ListServices,
        Rpc::WatchServiceEvents,
        Rpc::CreateSecret,
        Rpc::ListSecrets,
        Rpc::DeleteSecret,
        Rpc::ListImages,
        Rpc::CollectImages,
    ];

    /// The authorization table: the least role that may make this call.
    pub fn least_role(self) -> Role {
        match self {
            Rpc::DescribeClusters
            | Rpc::ListClusters
            | Rpc::DescribeTaskDefinition
            | Rpc::ListTaskDefinitions
            | Rpc::DescribeTasks
            | Rpc::WatchTasks
            | Rpc::ListTasks
            | Rpc::ListContainerInstances
            | Rpc::DescribeContainerInstances
            | Rpc::GetTaskLogs
            | Rpc::GetTaskStats
            | Rpc::GetInstanceStats
            | Rpc::DescribeServices
            | Rpc::ListServices
            | Rpc::WatchServiceEvents
            // Names and times only: no call returns a secret's value.
            | Rpc::ListSecrets
            // An instance's images: names, sizes, last uses and the tasks holding them.
            | Rpc::ListImages => Role::ReadOnly,
            // Draining moves no membership or credential (deregistering does, and is Admin's):
            // like stopping tasks, it is the operator's scale-in and maintenance work.
            Rpc::RegisterTaskDefinition
            | Rpc::RunTask
            | Rpc::StopTask
            | Rpc::UpdateContainerInstancesState
            | Rpc::CreateService
            | Rpc::UpdateService
            | Rpc::DeleteService
            // The operator deploys the tasks that read them.
            | Rpc::CreateSecret
            | Rpc::DeleteSecret
            // A collection now, under the agent's own rules: maintenance work, as draining.
            | Rpc::CollectImages => Role::Operator,
            Rpc::CreateCluster
            | Rpc::DeleteCluster
            | Rpc::DeregisterContainerInstance
            | Rpc::CreateJoinToken
            | Rpc::ListJoinTokens
            | Rpc::DeleteJoinToken
            | Rpc::CreateApiToken
            | Rpc::ListApiTokens
            | Rpc::DeleteApiToken
            | Rpc::CreateClientCertificate
            | Rpc::ListClientCertificates
            | Rpc::RevokeClientCertificate => Role::Admin,
        }
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a call touches, for a cluster-scoped credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One cluster.
    Cluster(&'a str),
    /// Nothing of any cluster's (task definitions are shared by all clusters).
    Shared,
    /// Every cluster, or the credentials themselves: unscoped credentials only.
    Global,
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// How it is named in logs: `token <id>`.
    pub name: String,
    pub role: Role,
    /// The one cluster it may touch; every cluster when None.
    pub cluster: Option<String>,
}

/// Why an authenticated caller may not make a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{caller} has role {role}; {rpc} needs {needs} or above")]
    Role {
        caller: String,
        role: Role,
        rpc: Rpc,
        needs: Role,
    },
    #[error("{caller} is scoped to cluster {scope} and cannot act on {target}")]
    Scope {
        caller: String,
        scope: String,
        target: String,
    },
}

impl Caller {
    /// Whether this caller may make `rpc` on `scope`.
    pub fn authorize(&self, rpc: Rpc, scope: Scope<'_>) -> Result<(), Denied> {
        let needs = rpc.least_role();
        if self.role < needs {
            return Err(Denied::Role {
                caller: self.name.clone(),
                role: self.role,
                rpc,
                needs,
            });
        }
        let Some(own) = &self.cluster else {
            return Ok(());
        };
        let target = match scope {
            Scope::Shared => return Ok(()),
            Scope::Cluster(c) if c == own => return Ok(()),
            Scope::Cluster(c) => format!("cluster {c}"),
            Scope::Global => "every cluster (an unscoped token is needed)".to_owned(),
        };
        Err(Denied::Scope {
            caller: self.name.clone(),
            scope: own.clone(),
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RPC names `control.proto` declares.
    fn proto_rpcs() -> Vec<String> {
        include_str!("../../../proto/berth/v1/control.proto")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .map(|n| n.trim().to_owned())
            .collect()
    }

    #[test]
    fn the_table_covers_exactly_the_services_rpcs() {
        let mut ours: Vec<String> = Rpc::ALL.iter().map(|r| r.to_string()).collect();
        let mut theirs = proto_rpcs();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn every_role_may_make_exactly_the_calls_at_or_below_it() {
        let expected_readers = [
            "DescribeClusters",
            "ListClusters",
            "DescribeTaskDefinition",
            "ListTaskDefinitions",
            "DescribeTasks",
            "WatchTasks",
            "ListTasks",
            "ListContainerInstances",
            "DescribeContainerInstances",
            "GetTaskLogs",
            "GetTaskStats",
            "GetInstanceStats",
            "DescribeServices",
            "ListServices",
            "WatchServiceEvents",
            "ListSecrets",
            "ListImages",
        ];
        let expected_operators = [
            "RegisterTaskDefinition",
            "RunTask",
            "StopTask",
            "UpdateContainerInstancesState",
            "CreateService",
            "UpdateService",
            "DeleteService",
            "CreateSecret",
            "DeleteSecret",
            "CollectImages",
        ];
        for rpc in Rpc::ALL {
            let name = rpc.to_string();
            let least = if expected_readers.contains(&name.as_str()) {
                Role::ReadOnly
            } else if expected_operators.contains(&name.as_str()) {
                Role::Operator
            } else {
                Role::Admin
            };
            assert_eq!(rpc.least_role(), least, "{rpc}");
            for role in Role::ALL {
                let caller = Caller {
                    name: "token abcdef".into(),
                    role,
                    cluster: None,
                };
                assert_eq!(
                    caller.authorize(rpc, Scope::Global).is_ok(),
                    role >= least,
                    "{role} calling {rpc}"
                );
            }
        }
    }

    #[test]
    fn a_read_only_token_cannot_run_a_task_and_says_what_it_lacks() {
        let caller = Caller {
            name: "token abcdef".into(),
            role: Role::ReadOnly,
            cluster: None,
        };
        let err = caller
            .authorize(Rpc::RunTask, Scope::Cluster("a"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "token abcdef has role read-only; RunTask needs operator or above"
        );
    }

    #[test]
    fn a_read_only_token_lists_secrets_but_cannot_write_them() {
        let caller = Caller {
            name: "token viewer".into(),
            role: Role::ReadOnly,
            cluster: None,
        };
        assert!(
            caller
                .authorize(Rpc::ListSecrets, Scope::Cluster("a"))
                .is_ok()
        );
        for rpc in [Rpc::CreateSecret, Rpc::DeleteSecret] {
            let err = caller.authorize(rpc, Scope::Cluster("a")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("token viewer has role read-only; {rpc} needs operator or above")
            );
        }
        let operator = Caller {
            role: Role::Operator,
            ..caller
        };
        assert!(
            operator
                .authorize(Rpc::CreateSecret, Scope::Cluster("a"))
                .is_ok()
        );
    }

    #[test]
    fn a_scoped_token_touches_its_cluster_and_shared_things_only() {
        let caller = Caller {
            name: "token abcdef".into(),
            role: Role::Admin,
            cluster: Some("a".into()),
        };
        assert!(caller.authorize(Rpc::RunTask, Scope::Cluster("a")).is_ok());
        assert!(
            caller
                .authorize(Rpc::RegisterTaskDefinition, Scope::Shared)
                .is_ok()
        );
        let err = caller
            .authorize(Rpc::RunTask, Scope::Cluster("b"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "token abcdef is scoped to cluster a and cannot act on cluster b"
        );
        assert!(caller.authorize(Rpc::ListClusters, Scope::Global).is_err());
    }

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(
            Role::parse("root")
                .unwrap_err()
                .contains("read-only, operator or admin")
        );
    }
}
