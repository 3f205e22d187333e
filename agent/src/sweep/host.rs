//! The sweep's real host: containers through `berth_runtime::Runtime` (only those with Berth's
//! task label in its own containerd namespace), network namespaces through
//! `berth_runtime::Network`, and the task directories under the cgroup parent, the volume dir,
//! the log dir and the shared-namespace dir (whose removal kills the task's holder first).
//!
//! The cgroup parent (`/berth`) is one for the whole host, and several agents may share it (the
//! test suites run many): a task cgroup is taken as this agent's only when the same task also
//! has a container in this agent's namespace or a directory in its data dir. A cgroup with no
//! such trace is never removed on a guess.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::{ContainerId, Network, Runtime};

use super::{Host, Kind, Leftover, SweepError};
use crate::task::network::task_of_namespace;

/// How long an orphan container's main process gets after SIGTERM before every process in it
/// is killed: Docker's default stop timeout.
const ORPHAN_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The host as the agent runs it.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeHost {
    pub runtime: Arc<Runtime>,
    pub network: Arc<Network>,
}

#[async_trait]
impl Host for RuntimeHost {
    async fn leftovers(&self) -> Result<Vec<Leftover>, SweepError> {
        let list = |e: berth_runtime::Error| SweepError::List(Box::new(e));
        let containers = self.runtime.list_containers().await.map_err(list)?;
        let footprints = self.runtime.task_footprints().await.map_err(list)?;
        let namespaces = self
            .network
            .namespaces()
            .await
            .map_err(|e| SweepError::List(Box::new(e)))?;
        let mut out: Vec<Leftover> = containers
            .iter()
            .map(|c| Leftover {
                kind: Kind::Container,
                name: c.id.as_str().to_owned(),
                task_id: c.task_id.clone(),
            })
            .collect();
        out.extend(namespaces.into_iter().map(|name| Leftover {
            kind: Kind::Netns,
            task_id: task_of_namespace(&name).to_owned(),
            name,
        }));
        let dirs = |kind: Kind, ids: &std::collections::BTreeSet<String>| {
            ids.iter()
                .map(|id| Leftover {
                    kind,
                    name: id.clone(),
                    task_id: id.clone(),
                })
                .collect::<Vec<_>>()
        };
        out.extend(dirs(Kind::Volumes, &footprints.volumes));
        out.extend(dirs(Kind::Logs, &footprints.logs));
        out.extend(dirs(Kind::Shared, &footprints.namespaces));
        let ours = |id: &String| {
            containers.iter().any(|c| &c.task_id == id)
                || footprints.volumes.contains(id)
                || footprints.logs.contains(id)
                || footprints.namespaces.contains(id)
        };
        let cgroups: std::collections::BTreeSet<String> = footprints
            .cgroups
            .iter()
            .filter(|id| ours(id))
            .cloned()
            .collect();
        out.extend(dirs(Kind::Cgroup, &cgroups));
        Ok(out)
    }

    async fn remove(&self, leftover: &Leftover) -> Result<(), SweepError> {
        let fail = |e: berth_runtime::Error| SweepError::remove(leftover, e);
        let task = leftover.task_id.as_str();
        match leftover.kind {
            Kind::Container => {
                let id = ContainerId::from_containerd(leftover.name.clone());
                self.runtime
                    .stop_container(&id, ORPHAN_STOP_TIMEOUT)
                    .await
                    .map_err(fail)?;
                self.runtime.delete_container(&id).await.map_err(fail)
            }
            Kind::Netns => self
                .network
                .teardown(&leftover.name)
                .await
                .map_err(|e| SweepError::remove(leftover, e)),
            Kind::Shared => self
                .runtime
                .remove_task_namespaces(task)
                .await
                .map_err(fail),
            Kind::Volumes => self.runtime.remove_task_volumes(task).await.map_err(fail),
            Kind::Cgroup => self.runtime.remove_task_cgroup(task).await.map_err(fail),
            Kind::Logs => self.runtime.remove_task_logs(task).await.map_err(fail),
        }
    }
}
