//! Removing what a task's networking put on the host: one task's teardown, and the repair of
//! whatever tasks no longer live left behind (a crash mid-setup, an agent restart).

use std::collections::BTreeSet;

use super::{
    MacAddr, NetNs, Network, NetworkError, check_task_name, identity, ipam, nft, veth_name,
};

impl Network {
    /// Removes everything of `task`: rules, interface (an ENI goes back to the host), namespace,
    /// files, allocations. Idempotent; every step is tried, the first failure is returned and
    /// the allocation is kept so a later teardown or repair finishes the job.
    pub async fn teardown(&self, task: &str) -> Result<(), NetworkError> {
        check_task_name(task)?;
        let mut first: Option<NetworkError> = None;
        let mut note = |r: Result<(), NetworkError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let record = self.state.lock().await.tasks.get(task).cloned();
        let mut script = record
            .as_ref()
            .and_then(|r| r.address)
            .map(|a| nft::remove_identity(&identity(task, a)))
            .unwrap_or_default();
        // A task allocated without ports never had rules; anything else is looked up.
        if record.as_ref().is_none_or(|r| !r.ports.is_empty()) {
            match self.task_rule_handles(task).await {
                Ok(handles) => script.push_str(&nft::delete_rules(&handles)),
                Err(e) => note(Err(e)),
            }
        }
        note(self.ops.nft_apply(script).await);
        if let Some(eni) = record.as_ref().and_then(|r| r.eni.as_ref()) {
            let ns = NetNs::open(self.netns_path(task));
            note(match eni.mac.parse::<MacAddr>() {
                Ok(mac) => self.ops.eni_out(&mac.0, &eni.host_name, &ns).await,
                Err(e) => Err(e),
            });
        }
        note(self.ops.delete_link(&veth_name(task)).await);
        note(self.ops.delete_netns(task).await);
        let dir = self.config.files_dir.join(task);
        note(match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(NetworkError::Io {
                what: "remove the task's network files",
                path: dir,
                error,
            }),
        });
        if let Some(e) = first {
            return Err(e);
        }
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        if next.release(task) {
            ipam::save(&self.state_path, &next)?;
            *state = next;
        }
        Ok(())
    }

    /// Every namespace name that has something on the host (an allocation, a namespace, a
    /// veth, a rule, a files dir), whether or not a task still uses it; each one is removed
    /// with [`Self::teardown`].
    pub async fn namespaces(&self) -> Result<BTreeSet<String>, NetworkError> {
        let mut found: BTreeSet<String> = self.state.lock().await.tasks.keys().cloned().collect();
        found.extend(self.ops.list_netns().await?);
        found.extend(self.ops.task_veths().await?.into_iter().map(|(_, t)| t));
        found.extend(
            self.ops
                .nft_rules()
                .await?
                .into_iter()
                .filter_map(|r| r.comment),
        );
        if let Ok(entries) = std::fs::read_dir(&self.config.files_dir) {
            found.extend(
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
        found.retain(|name| check_task_name(name).is_ok());
        Ok(found)
    }

    /// Tears down every task that is not in `live` but left something behind (an allocation,
    /// a namespace, a veth, a rule, a files dir), e.g. after a crash mid-setup. Returns the
    /// tasks repaired; the first failure is returned after trying them all.
    pub async fn repair(&self, live: &BTreeSet<String>) -> Result<Vec<String>, NetworkError> {
        let leftovers = self.namespaces().await?;
        let veths = self.ops.task_veths().await?;
        let mut first = None;
        let mut repaired = Vec::new();
        for task in leftovers.difference(live) {
            if check_task_name(task).is_err() {
                continue;
            }
            let mut result = self.teardown(task).await;
            // A veth named otherwise (by an older naming scheme) is found by its alias.
            for (name, _) in veths.iter().filter(|(_, t)| t == task) {
                if let Err(e) = self.ops.delete_link(name).await {
                    result = result.and(Err(e));
                }
            }
            match result {
                Ok(()) => repaired.push(task.clone()),
                Err(e) => {
                    tracing::warn!(task.id = %task, error = %e, "repairing a task's network failed");
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(repaired),
        }
    }
}
