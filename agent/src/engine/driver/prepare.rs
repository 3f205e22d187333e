//! Preparing a task on the host, up to its containers created: first what needs nothing
//! pulled (the definition read again, the privileged rule, host paths and devices against the
//! agent's allow-lists, environment files and seccomp profiles read, the limits checked), so a
//! task that cannot run stops before anything is pulled; then the pulls beside the network's
//! setup, the task's volumes and cgroup, and the containers. The outcome is [`Prepared`], or a
//! [`Stalled`] start that says what was created by then and why it ended; every failure is a
//! [`PrepareError`], whose message is the task's stoppedReason.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::v1::TaskDefinition;
use berth_runtime::{
    ContainerId, ContainerInfo, ContainerSpec, NetworkNamespace, PullError, Seccomp, TaskLimits,
    TaskVolume, TaskVolumeKind,
};
use tracing::Instrument;

use super::super::TaskEvent;
use super::super::deps::Plan;
use super::namespaces::{NamespaceModeError, namespace_modes, shared_namespaces};
use super::net::{NetSetupError, join_network, set_up_namespaces};
use super::{Control, Created, Driver, stop_timeout};
use crate::runtime::ContainerRuntime;
use crate::task::network::{self, Mode};
use crate::task::{self, Causes, InputError, capabilities, devices, envfile, seccomp, volumes};

/// The awslogs driver's queue of a container that uses it: its shipper starts now and ends
/// when the runtime lets go of the queue (the container deleted, or never created).
impl<R: ContainerRuntime> Driver<R> {
    pub(super) fn awslogs_forward(
        &self,
        task_id: &str,
        c: &berth_proto::v1::ContainerDefinition,
    ) -> Result<Option<berth_runtime::LogForward>, crate::logs::awslogs::OptionsError> {
        let Some(config) = c
            .log_configuration
            .as_ref()
            .filter(|l| l.log_driver == "awslogs")
        else {
            return Ok(None);
        };
        let options = crate::logs::awslogs::AwsLogsOptions::parse(&config.options)?;
        let events = self.events.clone();
        let (task, name) = (task_id.to_owned(), c.name.clone());
        let notify: crate::logs::awslogs::Notify = Arc::new(move |note: String| {
            // A full engine queue loses the note, not the count (the metric and the log).
            let _ = events.try_send(super::super::Command::Event {
                task_id: task.clone(),
                event: TaskEvent::ContainerNote {
                    name: name.clone(),
                    note,
                },
            });
        });
        Ok(Some(
            self.config
                .awslogs
                .start(task_id, &c.name, &options, notify),
        ))
    }
}

/// Why a task could not be prepared. The message is the task's stoppedReason, so it travels
/// alone: causes are written into it, not kept as sources.
#[derive(Debug, thiserror::Error)]
pub(super) enum PrepareError {
    /// What the task names is wrong, or not allowed on this host.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A container's awslogs options the agent cannot use.
    #[error("container {container}: {error}")]
    AwsLogs {
        container: String,
        error: crate::logs::awslogs::OptionsError,
    },
    /// Its containers' dependencies (`dependsOn`, `links`) do not add up.
    #[error("{0}")]
    Dependencies(String),
    /// A privileged container on an agent that does not allow them.
    #[error(
        "container {0} asks to run privileged, which this agent does not allow: set \
         allow_privileged = true (BERTH_ALLOW_PRIVILEGED) in the agent's configuration to \
         permit it"
    )]
    Privileged(String),
    /// A `pidMode` or `ipcMode` this agent does not run or allow.
    #[error(transparent)]
    Namespace(#[from] NamespaceModeError),
    /// Limits the runtime refuses.
    #[error("invalid resource limits: {}", Causes(.0))]
    Limits(berth_runtime::Error),
    /// An image that could not be pulled.
    #[error("CannotPullContainerError: {}", Causes(.0))]
    Pull(PullError),
    /// The task that set the network up ended abnormally.
    #[error("the task's network setup ended abnormally: {0}")]
    NetworkTask(tokio::task::JoinError),
    /// The task's network could not be set up.
    #[error(transparent)]
    Network(#[from] NetSetupError),
    /// The task's own volumes could not be made.
    #[error("cannot create the task's volumes: {}", Causes(.0))]
    Volumes(berth_runtime::Error),
    /// The task's cgroup could not be made.
    #[error("cannot create the task's cgroup: {}", Causes(.0))]
    Cgroup(berth_runtime::Error),
    /// The namespaces the task's containers share (`pidMode`/`ipcMode` task) could not be
    /// made.
    #[error("cannot create the task's shared namespaces: {}", Causes(.0))]
    SharedNamespaces(berth_runtime::Error),
    /// A secret the task names cannot be used (missing, or not what it should hold).
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
    /// A container could not be created.
    #[error("CannotCreateContainerError: container {container}: {}", Causes(.error))]
    Create {
        container: String,
        error: berth_runtime::Error,
    },
}

/// A task whose containers are all created: what the supervision starts from.
pub(super) struct Prepared {
    pub(super) plan: Plan,
    pub(super) created: Vec<Created>,
}

/// A start that ended before its containers were started: what it had created by then
/// (none of them started), and why.
pub(super) struct Stalled {
    pub(super) created: Vec<Created>,
    pub(super) interrupted: Interrupted,
}

/// Why the start ended early.
pub(super) enum Interrupted {
    /// The engine asked to stop.
    Stop,
    /// The agent is shutting down: leave everything as it is.
    Shutdown,
    /// A step failed.
    Failed(PrepareError),
}

impl From<Interrupted> for Stalled {
    /// Ended before anything was created.
    fn from(interrupted: Interrupted) -> Self {
        Self {
            created: Vec::new(),
            interrupted,
        }
    }
}

impl From<PrepareError> for Stalled {
    fn from(error: PrepareError) -> Self {
        Interrupted::Failed(error).into()
    }
}

impl From<InputError> for Stalled {
    fn from(error: InputError) -> Self {
        PrepareError::Input(error).into()
    }
}

/// A definition that passed every check that needs nothing pulled.
struct Checked {
    plan: Plan,
    mode: Mode,
    network: Vec<network::Plan>,
    specs: Vec<ContainerSpec>,
    limits: TaskLimits,
    /// The volumes the runtime makes for the task.
    task_volumes: Vec<TaskVolume>,
    /// The host paths the task binds, resolved, by volume name.
    host_paths: BTreeMap<String, PathBuf>,
}

impl<R: ContainerRuntime> Driver<R> {
    /// Checks, pulls and creates; the supervision starts the containers. Containers in
    /// `existing` (found in containerd when a task the agent died while starting is taken up
    /// again) are taken as they are, never created a second time; every other step is
    /// idempotent and is simply done again.
    pub(super) async fn prepare(
        &mut self,
        def: &TaskDefinition,
        existing: &[ContainerInfo],
    ) -> Result<Prepared, Stalled> {
        let task_id = self.task_id().to_owned();
        // Environment files are read first, within their deadline, and a stop ends the read.
        let read = envfile::load_task(
            def.containers
                .iter()
                .map(|c| (c.name.clone(), c.environment_files.clone()))
                .collect(),
            self.config.environment_file_paths.clone(),
        );
        let mut env_files = self.interruptible(read).await??;
        // The secrets before anything else is done: a task that names one it cannot have
        // fails before any pull, and one whose secrets are not known yet waits for them.
        let mut secrets = self.task_secrets(def).await?;
        let Checked {
            plan,
            mode,
            network: network_plans,
            mut specs,
            limits,
            mut task_volumes,
            host_paths,
        } = self.check(def, &mut env_files).await?;
        for spec in &mut specs {
            if let Some(s) = secrets.remove(&spec.name) {
                spec.environment.extend(s.environment);
                if let Some(auth) = s.registry_auth {
                    self.registry_auth.entry(spec.image.clone()).or_insert(auth);
                }
            }
        }

        // The namespaces need nothing from the images: they are set up beside the pulls, and
        // awaited before any early return, so a cleanup never races a setup in flight.
        let setup = {
            let network = Arc::clone(&self.network);
            let (def, plans) = (def.clone(), network_plans.clone());
            tokio::spawn(
                async move { set_up_namespaces(&*network, &def, &plans).await }
                    .instrument(tracing::Span::current()),
            )
        };
        let pulled = self.pull_images(&specs).await;
        let nets = match setup.await {
            Ok(nets) => nets.map_err(PrepareError::from),
            Err(e) => Err(PrepareError::NetworkTask(e)),
        };
        let digests = pulled?;
        let nets = nets?;
        self.report(TaskEvent::Pulled { digests }).await;

        // The task's own volumes and its host paths, bound now from what was checked (opened
        // without following a symlink, staged under the task's volume directory); all removed
        // with the task by the cleanup on every path.
        task_volumes.extend(host_paths.into_iter().map(|(name, path)| TaskVolume {
            name,
            kind: TaskVolumeKind::HostPath { path },
        }));
        let volume_paths = self
            .runtime
            .create_task_volumes(&task_id, &task_volumes)
            .await
            .map_err(PrepareError::Volumes)?;
        for (spec, c) in specs.iter_mut().zip(&def.containers) {
            spec.mounts = volumes::container_mounts(def, c, &volume_paths)?;
        }
        let network = join_network(
            def,
            mode,
            &network_plans,
            &nets,
            &self.endpoint_ids,
            &mut specs,
        );
        self.runtime
            .create_task_cgroup(&task_id, &limits)
            .await
            .map_err(PrepareError::Cgroup)?;
        // In the task's cgroup; kept as they are when its holder still runs (a restart of
        // the agent, a task taken up again), so every container joins the same ones.
        if let Some(shared) = shared_namespaces(&specs) {
            self.runtime
                .create_task_namespaces(&task_id, shared)
                .await
                .map_err(PrepareError::SharedNamespaces)?;
        }
        let notes = self.swap_notes(def);
        let created = self.create_containers(def, &specs, existing).await?;

        let runtime_ids = created
            .iter()
            .map(|c| (c.name.clone(), c.id.to_string()))
            .collect();
        self.report(TaskEvent::Created {
            runtime_ids,
            network,
        })
        .await;
        for (name, note) in notes {
            self.report(TaskEvent::ContainerNote { name, note }).await;
        }
        // The task endpoint finds a caller's task by its address: the engine must know the
        // addresses (reported with CREATED) before any container can ask, from its very first
        // instruction.
        self.applied().await;
        if let Ok(Control::Stop) = self.control.try_recv() {
            return Err(Stalled {
                created,
                interrupted: Interrupted::Stop,
            });
        }
        Ok(Prepared { plan, created })
    }

    /// Everything that needs nothing pulled: the definition read again (dependencies, network
    /// mode and plan), the privileged rule, each container's spec with what it reads from the
    /// host (its environment files' variables, read before, and its seccomp profile), the
    /// capabilities it adds and its devices against the agent's allow-lists, the limits, and
    /// the host paths of volumes against theirs.
    async fn check(
        &self,
        def: &TaskDefinition,
        env_files: &mut BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Checked, PrepareError> {
        let task_id = self.task_id();
        let plan = Plan::new(def).map_err(PrepareError::Dependencies)?;
        let mode = Mode::of(def)?;
        let network_plans = network::plan(
            task_id,
            def,
            self.assignment.network_attachment.as_ref(),
            &self.config.host_dns,
        )?;
        if !self.config.allow_privileged
            && let Some(c) = def.containers.iter().find(|c| c.privileged)
        {
            return Err(PrepareError::Privileged(c.name.clone()));
        }
        let paths = self
            .runtime
            .task_namespace_paths(task_id)
            .map_err(PrepareError::SharedNamespaces)?;
        let (pid, ipc) = namespace_modes(def, self.config.allow_host_pid_ipc, &paths)?;
        // Until its network is set up, a container has a namespace of its own (none) or the
        // host's; join_network joins the others to theirs.
        let base_network = if mode == Mode::Host {
            NetworkNamespace::Host
        } else {
            NetworkNamespace::New
        };
        let mut specs = Vec::with_capacity(def.containers.len());
        for c in &def.containers {
            let mut spec = task::container_spec(task_id, c, &base_network);
            (spec.pid, spec.ipc) = (pid.clone(), ipc.clone());
            let named = |e| InputError::in_container(&c.name, e);
            envfile::apply(
                &mut spec.environment,
                env_files.remove(&c.name).unwrap_or_default(),
            );
            capabilities::check_added(
                &c.name,
                &spec.capabilities.add,
                &self.config.allowed_capabilities,
                self.config.allow_privileged,
            )?;
            for tmpfs in &spec.tmpfs {
                capabilities::check_tmpfs_options(
                    &tmpfs.container_path,
                    &tmpfs.mount_options,
                    self.config.allow_privileged,
                )
                .map_err(named)?;
            }
            if let Some(path) = task::seccomp_profile_path(c) {
                spec.seccomp = Seccomp::Profile(seccomp::load(path).await.map_err(named)?);
            } else if task::seccomp_unconfined(c) {
                if !self.config.allow_unconfined_seccomp {
                    return Err(InputError::UnconfinedSeccomp(c.name.clone()).into());
                }
                spec.seccomp = Seccomp::Unconfined;
            }
            // Mapped as the host resolves them now.
            for mapping in &mut spec.devices {
                let host_path = mapping.host_path.to_string_lossy().into_owned();
                mapping.host_path =
                    devices::allowed_device(&c.name, &host_path, &self.config.allowed_devices)?;
            }
            spec.log_forward =
                self.awslogs_forward(task_id, c)
                    .map_err(|error| PrepareError::AwsLogs {
                        container: c.name.clone(),
                        error,
                    })?;
            specs.push(spec);
        }
        let limits = task::task_limits(def);
        self.runtime
            .validate_limits(&limits, &specs)
            .map_err(PrepareError::Limits)?;
        let task_volumes = volumes::task_volumes(def);
        for v in &task_volumes.task {
            if let TaskVolumeKind::Tmpfs { options, .. } = &v.kind {
                capabilities::check_tmpfs_options(
                    &format!("volume {}", v.name),
                    options,
                    self.config.allow_privileged,
                )?;
            }
        }
        let mut host_paths = BTreeMap::new();
        for (name, source) in &task_volumes.host {
            let path = volumes::allowed_host_path(name, source, &self.config.volume_host_paths)?;
            host_paths.insert(name.clone(), path);
        }
        Ok(Checked {
            plan,
            mode,
            network: network_plans,
            specs,
            limits,
            task_volumes: task_volumes.task,
            host_paths,
        })
    }

    /// Resolves every image of the task (each once) by its pull behaviour: from the cache or
    /// the registry; the digests by container name.
    async fn pull_images(
        &mut self,
        specs: &[ContainerSpec],
    ) -> Result<HashMap<String, String>, Stalled> {
        self.report(TaskEvent::PullStarted).await;
        let behavior = crate::images::for_task(
            self.assignment
                .definition
                .as_ref()
                .map_or("", |d| d.image_pull_behavior.as_str()),
            self.config.pull_behavior,
        );
        let mut digests = HashMap::new();
        let mut pulled: HashMap<String, String> = HashMap::new();
        for spec in specs {
            if let Some(d) = pulled.get(&spec.image) {
                digests.insert(spec.name.clone(), d.clone());
                continue;
            }
            let image = self.resolve_image(&spec.image, behavior, specs).await?;
            tracing::debug!(target: "berth::phase", phase = "image_resolved", task.id = %self.task_id(), "phase ended");
            pulled.insert(spec.image.clone(), image.manifest_digest.clone());
            digests.insert(spec.name.clone(), image.manifest_digest);
        }
        Ok(digests)
    }

    /// One image by `behavior` (see [`crate::images::plan`]). A removal of the image by the
    /// collector is waited for first (the task holds it since its assignment, so no later
    /// collection takes it). Under `default`, a registry failure with the image cached starts
    /// from the cache, and each container of the image says so.
    async fn resolve_image(
        &mut self,
        reference: &str,
        behavior: berth_policy::PullBehavior,
        specs: &[ContainerSpec],
    ) -> Result<berth_runtime::PulledImage, Stalled> {
        let images = Arc::clone(&self.images);
        self.interruptible(images.wait_removal(reference)).await?;
        let runtime = Arc::clone(&self.runtime);
        let cached = match self.interruptible(runtime.cached(reference)).await? {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(image.ref = reference, %error, "cannot tell whether the image is cached; pulling it");
                None
            }
        };
        let plan = crate::images::plan(
            behavior,
            reference,
            cached.is_some(),
            images.pulled_before(reference),
        );
        if let Some(image) = cached
            .as_ref()
            .filter(|c| self.resolved.get(reference) == Some(&c.manifest_digest))
        {
            tracing::info!(image.ref = reference, digest = %image.manifest_digest, "using the image this task resolved before the agent restarted");
            self.touch(reference, false);
            return Ok(image.clone());
        }
        let fallback = match (plan, cached) {
            (crate::images::Plan::UseCached, Some(image)) => {
                tracing::info!(image.ref = reference, %behavior, digest = %image.manifest_digest, "using the cached image");
                self.touch(reference, false);
                return Ok(image);
            }
            (crate::images::Plan::Pull { fallback: true }, cached) => cached,
            _ => None,
        };
        let auth = match self.registry_auth.get(reference) {
            Some(auth) => auth.clone(),
            None => task::auth_for(reference, &self.assignment.registry_credentials),
        };
        let runtime = Arc::clone(&self.runtime);
        let image_ref = reference.to_owned();
        let tracked = self.pulls.track(self.task_id(), reference);
        // The runtime owns the pull's one deadline (`image_pull_timeout`): it tries the
        // registry again within it, then names the registry, its tries and its last error.
        // Its progress goes on the board while it runs; the entry goes with `tracked`.
        let pull = async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let pull = runtime.pull(&image_ref, &auth, Some(tx));
            tokio::pin!(pull);
            loop {
                tokio::select! {
                    biased;
                    Some(report) = rx.recv() => tracked.record(&report),
                    result = &mut pull => break result,
                }
            }
        };
        let error = match self.interruptible(pull).await? {
            Ok(image) => {
                self.touch(reference, true);
                return Ok(image);
            }
            Err(e) => PrepareError::Pull(e),
        };
        let Some(image) = fallback else {
            return Err(error.into());
        };
        let note = format!(
            "{error}; started from the cached image {} (image pull behavior {behavior})",
            image.manifest_digest
        );
        tracing::warn!(image.ref = reference, %error, digest = %image.manifest_digest, "the registry failed; using the cached image");
        for spec in specs.iter().filter(|s| s.image == reference) {
            self.report(TaskEvent::ContainerNote {
                name: spec.name.clone(),
                note: note.clone(),
            })
            .await;
        }
        self.touch(reference, false);
        Ok(image)
    }

    /// Records that this task uses `image` now (`pulled`: from the registry).
    fn touch(&self, image: &str, pulled: bool) {
        let images = Arc::clone(&self.images);
        let names = [image.to_owned()];
        crate::store::blocking_ok(|| images.touch(&names, std::time::SystemTime::now(), pulled));
    }

    /// Creates the containers in definition order, but for those in `existing`; on a failure,
    /// what was created by then.
    async fn create_containers(
        &self,
        def: &TaskDefinition,
        specs: &[ContainerSpec],
        existing: &[ContainerInfo],
    ) -> Result<Vec<Created>, Stalled> {
        let mut created = Vec::with_capacity(specs.len());
        for (spec, c) in specs.iter().zip(&def.containers) {
            let id = ContainerId::for_container(&spec.task_id, &spec.name);
            let made = if existing.iter().any(|e| e.id == id) {
                tracing::info!(container.name = %spec.name, "container created before the agent restarted; taken as it is");
                Ok(id)
            } else {
                self.runtime.create(spec).await
            };
            match made {
                Ok(id) => created.push(Created {
                    name: spec.name.clone(),
                    id,
                    stop_timeout: stop_timeout(c.stop_timeout_seconds, self.config.stop_timeout),
                }),
                Err(error) => {
                    let error = PrepareError::Create {
                        container: spec.name.clone(),
                        error,
                    };
                    return Err(Stalled {
                        created,
                        interrupted: Interrupted::Failed(error),
                    });
                }
            }
        }
        Ok(created)
    }

    /// What the host cannot apply of the containers' swap settings, by container name (see
    /// [`task::swap_note`]); the containers run without it, as on Docker.
    fn swap_notes(&self, def: &TaskDefinition) -> Vec<(String, String)> {
        let asks = def.containers.iter().any(|c| {
            c.linux_parameters
                .as_ref()
                .is_some_and(|l| l.max_swap_mib.is_some())
        });
        if !asks {
            return Vec::new();
        }
        match self.runtime.swap_support(self.task_id()) {
            Ok(support) => def
                .containers
                .iter()
                .filter_map(|c| task::swap_note(c, support).map(|n| (c.name.clone(), n)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether this host limits swap");
                Vec::new()
            }
        }
    }
}
