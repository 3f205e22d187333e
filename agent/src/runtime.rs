//! The seam between the task engine and the host: what the engine needs from a container
//! runtime, implemented for `berth_runtime::Runtime` here and by a recording fake in the
//! engine's tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::{
    ContainerId, ContainerInfo, ContainerSpec, Error, ExecOutcome, ExitStatus, ProgressSender,
    PullError, PulledImage, RegistryAuth, Runtime, SharedNamespaces, SwapSupport, TaskLimits,
    TaskNamespacePaths, TaskVolume,
};

/// What the task engine asks of the host.
#[async_trait]
pub(crate) trait ContainerRuntime: Send + Sync + 'static {
    /// Pulls an image; each blob's progress goes to `progress` when given.
    async fn pull(
        &self,
        image: &str,
        auth: &RegistryAuth,
        progress: Option<ProgressSender>,
    ) -> Result<PulledImage, PullError>;
    /// The image as a pull left it, when it can start containers without the registry.
    async fn cached(&self, image: &str) -> Result<Option<PulledImage>, Error>;
    fn validate_limits(&self, task: &TaskLimits, containers: &[ContainerSpec])
    -> Result<(), Error>;
    async fn create_task_cgroup(&self, task_id: &str, limits: &TaskLimits) -> Result<(), Error>;
    async fn remove_task_cgroup(&self, task_id: &str) -> Result<(), Error>;
    /// What the task's containers can limit of swap on this host (after its cgroup exists).
    fn swap_support(&self, task_id: &str) -> Result<SwapSupport, Error>;
    /// Removes the task's container log files.
    async fn remove_task_logs(&self, task_id: &str) -> Result<(), Error>;
    /// Makes the task's own volumes on the host (directories, tmpfs mounts); returns each
    /// one's host path by name.
    async fn create_task_volumes(
        &self,
        task_id: &str,
        volumes: &[TaskVolume],
    ) -> Result<BTreeMap<String, PathBuf>, Error>;
    /// Unmounts and removes the task's own volumes. Idempotent.
    async fn remove_task_volumes(&self, task_id: &str) -> Result<(), Error>;
    /// Where the namespaces the task's containers share are (named from the task ID).
    fn task_namespace_paths(&self, task_id: &str) -> Result<TaskNamespacePaths, Error>;
    /// Makes the namespaces the task's containers share (`pidMode`/`ipcMode` task), or keeps
    /// those its running holder holds. Idempotent; after the task's cgroup.
    async fn create_task_namespaces(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<(), Error>;
    /// Whether the task's namespace holder still runs and holds what `shared` names (false
    /// once it died, and its PID namespace with it).
    async fn task_namespaces_held(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<bool, Error>;
    /// Ends the task's namespace holder and removes its namespaces. Idempotent.
    async fn remove_task_namespaces(&self, task_id: &str) -> Result<(), Error>;
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, Error>;
    async fn start(&self, id: &ContainerId) -> Result<u32, Error>;
    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, Error>;
    /// Makes an exited container startable again in place (same snapshot, cgroup, log file).
    async fn restart(&self, id: &ContainerId) -> Result<(), Error>;
    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus, Error>;
    async fn delete(&self, id: &ContainerId) -> Result<(), Error>;
    /// Runs `args` inside the running container (health checks), killing it after `timeout`.
    async fn exec(
        &self,
        id: &ContainerId,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, Error>;
    async fn list(&self) -> Result<Vec<ContainerInfo>, Error>;
    /// Reads a container's output again after an agent restart; `forward` is its remote log
    /// driver's queue, when it has one.
    fn reattach(
        &self,
        id: &ContainerId,
        task_id: &str,
        name: &str,
        forward: Option<berth_runtime::LogForward>,
    ) -> Result<(), Error>;
    /// The current json-file log of a task's container (rotated ones are beside it).
    fn log_path(&self, task_id: &str, name: &str) -> std::path::PathBuf;
}

#[async_trait]
impl ContainerRuntime for Runtime {
    async fn pull(
        &self,
        image: &str,
        auth: &RegistryAuth,
        progress: Option<ProgressSender>,
    ) -> Result<PulledImage, PullError> {
        let started = std::time::Instant::now();
        let result = self.pull_image(image, auth, progress).await;
        crate::metrics::AGENT.record_pull(
            result.as_ref().map(|p| p.downloaded).ok(),
            started.elapsed(),
        );
        result
    }
    async fn cached(&self, image: &str) -> Result<Option<PulledImage>, Error> {
        self.cached_image(image).await
    }
    fn validate_limits(
        &self,
        task: &TaskLimits,
        containers: &[ContainerSpec],
    ) -> Result<(), Error> {
        Runtime::validate_limits(task, containers)
    }
    async fn create_task_cgroup(&self, task_id: &str, limits: &TaskLimits) -> Result<(), Error> {
        Runtime::create_task_cgroup(self, task_id, limits).await
    }
    async fn remove_task_cgroup(&self, task_id: &str) -> Result<(), Error> {
        Runtime::remove_task_cgroup(self, task_id).await
    }
    fn swap_support(&self, task_id: &str) -> Result<SwapSupport, Error> {
        Runtime::swap_support(self, task_id)
    }
    async fn remove_task_logs(&self, task_id: &str) -> Result<(), Error> {
        Runtime::remove_task_logs(self, task_id).await
    }
    async fn create_task_volumes(
        &self,
        task_id: &str,
        volumes: &[TaskVolume],
    ) -> Result<BTreeMap<String, PathBuf>, Error> {
        Runtime::create_task_volumes(self, task_id, volumes).await
    }
    async fn remove_task_volumes(&self, task_id: &str) -> Result<(), Error> {
        Runtime::remove_task_volumes(self, task_id).await
    }
    fn task_namespace_paths(&self, task_id: &str) -> Result<TaskNamespacePaths, Error> {
        Runtime::task_namespace_paths(self, task_id)
    }
    async fn create_task_namespaces(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<(), Error> {
        Runtime::create_task_namespaces(self, task_id, shared)
            .await
            .map(drop)
    }
    async fn task_namespaces_held(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<bool, Error> {
        Runtime::task_namespaces_held(self, task_id, shared).await
    }
    async fn remove_task_namespaces(&self, task_id: &str) -> Result<(), Error> {
        Runtime::remove_task_namespaces(self, task_id).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, Error> {
        self.create_container(spec).await
    }
    async fn start(&self, id: &ContainerId) -> Result<u32, Error> {
        self.start_container(id).await
    }
    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, Error> {
        self.wait_container(id).await
    }
    async fn restart(&self, id: &ContainerId) -> Result<(), Error> {
        self.restart_container(id).await
    }
    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus, Error> {
        self.stop_container(id, timeout).await
    }
    async fn delete(&self, id: &ContainerId) -> Result<(), Error> {
        self.delete_container(id).await
    }
    async fn exec(
        &self,
        id: &ContainerId,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, Error> {
        self.exec_in_container(id, args, timeout).await
    }
    async fn list(&self) -> Result<Vec<ContainerInfo>, Error> {
        self.list_containers().await
    }
    fn reattach(
        &self,
        id: &ContainerId,
        task_id: &str,
        name: &str,
        forward: Option<berth_runtime::LogForward>,
    ) -> Result<(), Error> {
        if let Some(forward) = forward {
            self.set_log_forward(id, forward);
        }
        self.reattach_container(id, task_id, name)
    }
    fn log_path(&self, task_id: &str, name: &str) -> std::path::PathBuf {
        Runtime::log_path(self, task_id, name)
    }
}
