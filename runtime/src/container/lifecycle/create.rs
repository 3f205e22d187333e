//! Creating a container as `docker create` does: the spec is checked before anything exists
//! in containerd, then its writable snapshot, its own /etc files, its OCI spec (with the
//! image's user database, the host's devices and capabilities where it asks for them) and its
//! record are made, and its log rotation is recorded. A step that fails removes what the
//! earlier ones made.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use containerd_client::types::Mount;

use super::super::log::Stdio;
use super::super::rootfs::{READ_DEADLINE, UserDatabase, read_user_database};
use super::super::{ContainerId, LABEL_CONTAINER_NAME, LABEL_STOP_TIMEOUT, LABEL_TASK_ID};
use super::{Containers, LABEL_STDIO};
use crate::containerd::ContainerRecord;
use crate::error::Error;
use crate::image::LocalImage;
use crate::model::{ContainerSpec, NetworkNamespace, SwapSupport};
use crate::spec::{self, SpecContext};

/// The host's resolver configuration, the base of a container's own resolv.conf.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where the agent reads its own capabilities.
const PROC_STATUS: &str = "/proc/self/status";

impl Containers {
    /// Creates the container (its record, its writable snapshot, its own /etc files and its
    /// log rotation), as `docker create` does: its process, and so everything runc checks when
    /// it makes one (the command, the mounts, the namespaces), comes with its start.
    /// Everything created is removed again when a later step fails.
    #[tracing::instrument(skip_all, fields(task.id = %spec.task_id, container.name = %spec.name))]
    pub(crate) async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, Error> {
        crate::cgroup::validate_id("task id", &spec.task_id)?;
        crate::cgroup::validate_id("container name", &spec.name)?;
        let image = self.local_image(&spec.image).await?;
        let id = ContainerId::for_container(&spec.task_id, &spec.name);
        // Like Docker, a container without a hostname gets 12 hex digits of its ID instead of
        // the host's name (except in the host's network, where it keeps the host's name).
        let defaulted;
        let spec = if spec.hostname.is_none() && spec.network != NetworkNamespace::Host {
            let mut s = spec.clone();
            s.hostname = Some(default_hostname(&id));
            defaulted = s;
            &defaulted
        } else {
            spec
        };

        // Refuse specs that cannot be built before anything exists in containerd. The user
        // database needs the snapshot, so the probe runs as 0:0 and the user is checked later.
        let cgroups_path = self.cgroups.container_path(&spec.task_id, &spec.name)?;
        let user = spec::effective_user(spec, &image.config);
        let needs_users = spec::needs_user_database(user);
        let mut probe = spec.clone();
        probe.user = Some("0:0".to_owned());
        spec::build(
            &probe,
            &image.config,
            &SpecContext {
                cgroups_path: cgroups_path.clone(),
                passwd: None,
                group: None,
                init_path: Some(self.init_path.clone()),
                bounding_capabilities: None,
                host_devices: Vec::new(),
                file_mounts: Vec::new(),
                devices: Vec::new(),
                swap: SwapSupport::default(),
                seccomp_host: self.seccomp_host,
            },
        )?;

        if spec.init_process && !self.init_path.is_file() {
            return Err(Error::io(
                "find the init of initProcessEnabled (install Debian's tini or set the agent's init_path)",
                self.init_path.clone(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let mounts = self.prepare_snapshot(spec, &id, &image.chain_id).await?;
        tracing::debug!(target: "berth::phase", phase = "snapshot_prepared", task.id = %spec.task_id, "phase ended");
        let result = self
            .create_after_snapshot(spec, &id, &image, mounts, cgroups_path, needs_users)
            .await;
        if result.is_err() {
            self.remove_snapshot(&id).await;
            let _ = tokio::fs::remove_dir_all(self.etc_dir(&id)).await;
        }
        if result.is_ok() {
            tracing::debug!(target: "berth::phase", phase = "container_created", task.id = %spec.task_id, "phase ended");
        }
        result.map(|()| id)
    }

    /// Everything after the snapshot: the spec with what only the host and the snapshot can
    /// tell, the /etc files, the record and the log rotation.
    async fn create_after_snapshot(
        &self,
        spec: &ContainerSpec,
        id: &ContainerId,
        image: &LocalImage,
        mounts: Vec<Mount>,
        cgroups_path: String,
        needs_users: bool,
    ) -> Result<(), Error> {
        let users = if needs_users {
            self.user_database(id, &image.chain_id, mounts.clone())
                .await?
        } else {
            Arc::default()
        };
        let host_devices = if spec.privileged {
            host_devices().await?
        } else {
            Vec::new()
        };
        let bounding_capabilities = bounding_capabilities(spec).await?;
        let devices = mapped_devices(spec).await?;
        let swap = self.swap_support(spec)?;
        let file_mounts = self.write_etc_files(spec, id).await?;
        let oci = spec::build(
            spec,
            &image.config,
            &SpecContext {
                cgroups_path,
                passwd: users.passwd.as_deref(),
                group: users.group.as_deref(),
                init_path: Some(self.init_path.clone()),
                bounding_capabilities,
                host_devices,
                file_mounts,
                devices,
                swap,
                seccomp_host: self.seccomp_host,
            },
        )?;
        let spec_json = serde_json::to_vec(&oci).map_err(|e| {
            Error::io(
                "encode OCI spec",
                PathBuf::from(id.as_str()),
                std::io::Error::other(e),
            )
        })?;
        let record = record(spec, id, spec_json);
        let (created, lost) =
            super::outage::through_outage("a container create", id.as_str(), || {
                self.client.container_create(record.clone())
            })
            .await;
        match created {
            // The create whose answer was lost made the record (a container has one creator).
            Err(e) if lost && e.is_already_exists() => {}
            other => other?,
        }

        // The FIFOs come with the task; the rotation is recorded now, for the first start as
        // for later ones.
        let io_dir = self.io_dir.join(id.as_str());
        let rotation = spec.log_rotation.unwrap_or(self.rotation);
        if let Err(e) = std::fs::create_dir_all(&io_dir).and_then(|()| rotation.save(&io_dir)) {
            self.delete_record(id).await;
            let _ = std::fs::remove_dir_all(&io_dir);
            return Err(Error::io("record the log rotation", io_dir, e));
        }
        if let Some(forward) = &spec.log_forward {
            self.set_log_forward(id, forward.clone());
        }
        self.fresh_lock().insert(
            id.clone(),
            super::Fresh {
                task_id: spec.task_id.clone(),
                name: spec.name.clone(),
                stdio: Stdio {
                    stdin: spec.stdin_open,
                    terminal: spec.terminal,
                },
                rotation,
                mounts,
            },
        );
        Ok(())
    }

    /// The image's /etc/passwd and /etc/group, read from the container's snapshot once per
    /// image: the files come from the image's layers, which a chain ID pins.
    async fn user_database(
        &self,
        id: &ContainerId,
        chain_id: &str,
        mounts: Vec<Mount>,
    ) -> Result<Arc<UserDatabase>, Error> {
        if let Some(cached) = self.user_dbs_lock().get(chain_id).cloned() {
            return Ok(cached);
        }
        let scratch = self.io_dir.join(format!("{id}.users"));
        let failed = |reason: String| Error::ImageFile {
            id: id.to_string(),
            reason,
        };
        // The blocking read cannot be cancelled; on the deadline the container fails and the
        // read, bounded by the file cap, unmounts when it ends.
        let read = tokio::task::spawn_blocking(move || read_user_database(&mounts, &scratch));
        let read = match tokio::time::timeout(READ_DEADLINE, read).await {
            Err(_) => {
                return Err(failed(format!(
                    "the image's user database could not be read within {}s",
                    READ_DEADLINE.as_secs()
                )));
            }
            Ok(Err(join)) => return Err(failed(join.to_string())),
            Ok(Ok(read)) => read.map_err(|e| failed(e.to_string()))?,
        };
        let read = Arc::new(read);
        self.user_dbs_lock()
            .insert(chain_id.to_owned(), Arc::clone(&read));
        Ok(read)
    }

    /// What the container's cgroup can limit of swap, when it asks for a swap limit; a host
    /// that cannot is logged once (as a warning) and the container runs without it, as
    /// Docker runs it.
    fn swap_support(&self, spec: &ContainerSpec) -> Result<SwapSupport, Error> {
        let support = self.cgroups.swap_support(&spec.task_id)?;
        let Some(max_swap_mib) = spec.limits.max_swap_mib else {
            return Ok(support);
        };
        if !support.limit {
            let first = !self
                .swap_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed);
            let message = "this host's kernel does not account swap per cgroup (cgroup v1 \
                 without memory.memsw.limit_in_bytes: boot with swapaccount=1; cgroup v2 without \
                 memory.swap.max); containers asking for maxSwap run without a swap limit";
            if first {
                tracing::warn!(task.id = %spec.task_id, container.name = %spec.name, max_swap_mib, "{message}");
            } else {
                tracing::debug!(task.id = %spec.task_id, container.name = %spec.name, max_swap_mib, "{message}");
            }
        }
        Ok(support)
    }

    /// Writes the container's own `/etc/hosts` (extra hosts) and `/etc/resolv.conf` (DNS
    /// servers, search domains) when it asks for them, and returns their bind mounts.
    async fn write_etc_files(
        &self,
        spec: &ContainerSpec,
        id: &ContainerId,
    ) -> Result<Vec<oci_spec::runtime::Mount>, Error> {
        let wants_hosts = spec::etc::wants_hosts(spec);
        let wants_resolv = spec::etc::wants_resolv_conf(spec);
        if !wants_hosts && !wants_resolv {
            return Ok(Vec::new());
        }
        let dir = self.etc_dir(id);
        let hosts = wants_hosts.then(|| spec::etc::hosts(spec));
        let resolv = if wants_resolv {
            // The host's options and comments are kept; a host without the file has none.
            let host = match tokio::fs::read_to_string(HOST_RESOLV_CONF).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(Error::io(
                        "read the host's resolv.conf",
                        PathBuf::from(HOST_RESOLV_CONF),
                        e,
                    ));
                }
            };
            Some(spec::etc::resolv_conf(&host, spec))
        } else {
            None
        };
        let write = async {
            tokio::fs::create_dir_all(&dir).await?;
            let mut mounts = Vec::new();
            for (name, text) in [("hosts", hosts), ("resolv.conf", resolv)] {
                if let Some(text) = text {
                    let path = dir.join(name);
                    tokio::fs::write(&path, text).await?;
                    mounts.push(spec::etc::bind_file(&path, &format!("/etc/{name}")));
                }
            }
            Ok::<_, std::io::Error>(mounts)
        };
        match write.await {
            Ok(mounts) => Ok(mounts),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(Error::io("write the container's /etc files", dir, e))
            }
        }
    }

    /// Prepares the container's writable snapshot. It is a collector root (nothing else
    /// references it until the container record exists) and carries the task's labels, so a
    /// leftover is found and removed by the agent's reconciliation.
    async fn prepare_snapshot(
        &self,
        spec: &ContainerSpec,
        id: &ContainerId,
        chain_id: &str,
    ) -> Result<Vec<Mount>, Error> {
        let labels = HashMap::from([
            (
                "containerd.io/gc.root".to_owned(),
                crate::time::rfc3339(SystemTime::now()),
            ),
            (LABEL_TASK_ID.to_owned(), spec.task_id.clone()),
            (LABEL_CONTAINER_NAME.to_owned(), spec.name.clone()),
        ]);
        let (prepared, _) =
            super::outage::through_outage("a snapshot prepare", id.as_str(), || {
                self.client
                    .snapshot_prepare(None, id.as_str(), chain_id, labels.clone())
            })
            .await;
        match prepared {
            // A container is created only when containerd has no record of it, so a snapshot
            // under its key is what an interrupted create left (the agent was killed between
            // the two): it holds nothing yet, and is made again.
            Err(e) if e.is_already_exists() => {
                tracing::info!(container.id = %id, "removing the snapshot an interrupted create of this container left");
                match self.client.snapshot_remove(id.as_str()).await {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
                Ok(self
                    .client
                    .snapshot_prepare(None, id.as_str(), chain_id, labels)
                    .await?)
            }
            other => Ok(other?),
        }
    }
}

/// The container record: the caller's labels with the task's, the stop timeout and the
/// standard streams Berth needs back after a restart.
fn record(spec: &ContainerSpec, id: &ContainerId, spec_json: Vec<u8>) -> ContainerRecord {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL_TASK_ID.to_owned(), spec.task_id.clone());
    labels.insert(LABEL_CONTAINER_NAME.to_owned(), spec.name.clone());
    if let Some(t) = spec.stop_timeout {
        labels.insert(LABEL_STOP_TIMEOUT.to_owned(), t.as_millis().to_string());
    }
    let stdio = Stdio {
        stdin: spec.stdin_open,
        terminal: spec.terminal,
    };
    if stdio != Stdio::default() {
        labels.insert(LABEL_STDIO.to_owned(), stdio.label());
    }
    ContainerRecord {
        id: id.to_string(),
        image: spec.image.clone(),
        labels,
        spec: spec_json,
        snapshot_key: id.to_string(),
    }
}

/// Every device node of the host, which a privileged container gets.
async fn host_devices() -> Result<Vec<oci_spec::runtime::LinuxDevice>, Error> {
    let failed = |e| Error::io("list the host's devices", PathBuf::from("/dev"), e);
    tokio::task::spawn_blocking(|| super::super::devices::host_devices(Path::new("/dev")))
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?
        .map_err(failed)
}

/// `ALL` and privileged mean every capability this process may hand on, as containerd's
/// WithAllCurrentCapabilities: runc cannot give a container more than its own bounding set.
/// None for a container that asks for neither.
async fn bounding_capabilities(spec: &ContainerSpec) -> Result<Option<u64>, Error> {
    let wants_all = spec.privileged
        || spec
            .capabilities
            .add
            .iter()
            .any(|c| c.eq_ignore_ascii_case("ALL"));
    if !wants_all {
        return Ok(None);
    }
    let status = tokio::fs::read_to_string(PROC_STATUS).await.map_err(|e| {
        Error::io(
            "read the agent's capabilities",
            PathBuf::from(PROC_STATUS),
            e,
        )
    })?;
    Ok(spec::params::parse_bounding_set(&status))
}

/// The device nodes a container maps, found on the host (after the agent allowed them), each
/// with its device cgroup access.
async fn mapped_devices(
    spec: &ContainerSpec,
) -> Result<Vec<(oci_spec::runtime::LinuxDevice, String)>, Error> {
    let mut out = Vec::new();
    for mapping in &spec.devices {
        let host = mapping.host_path.clone();
        let in_container = PathBuf::from(&mapping.container_path);
        let found = tokio::task::spawn_blocking(move || {
            super::super::devices::mapped_devices(&host, &in_container)
        })
        .await
        .map_err(|e| {
            Error::io(
                "map the device",
                mapping.host_path.clone(),
                std::io::Error::other(e),
            )
        })?
        .map_err(|e| Error::io("map the device", mapping.host_path.clone(), e))?;
        out.extend(
            found
                .into_iter()
                .map(|node| (node, mapping.permissions.clone())),
        );
    }
    Ok(out)
}

/// Docker's default hostname: the first 12 hex digits of an ID.
fn default_hostname(id: &ContainerId) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_str().as_bytes()))[..12].to_owned()
}
