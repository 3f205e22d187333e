//! Wiring: connects the runtime (checking containerd and the cgroup layout), opens the state
//! store, takes the agent's certificate (joining the cluster on first start), and runs the task
//! engine, the scheduler session and the certificate's renewal until the shutdown future
//! resolves. Stopping the agent stops no container.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_proto::v1::VersionInfo;
use berth_runtime::{
    ENDPOINT_ADDRESS, ENDPOINT_LISTEN_PORT, Error as RuntimeError, NetNs, Network, NetworkConfig,
    Runtime, RuntimeConfig,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::AgentConfig;
use crate::engine::{Engine, EngineConfig};
use crate::guard;
use crate::health::Health;
use crate::host;
use crate::service;
use crate::session::{self, SessionConfig, TlsMaterial};
use crate::store::Store;
use crate::trust::{self, AgentIdentity, SchedulerRenewal, TrustError};

/// How long the engine and session get to stop after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the agent probes containerd, its data dir and its engine for the heartbeat.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the agent until `shutdown` resolves.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    host::secure_data_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data dir {} with mode 0700",
            config.data_dir.display()
        )
    })?;
    tokio::pin!(shutdown);
    let notifier: Arc<dyn service::Notifier> = Arc::new(service::Systemd);
    let cancel = CancellationToken::new();
    // Whatever way run returns, the watchdog supervisor stops with it.
    let _stop_on_return = cancel.clone().drop_guard();
    let tracker = TaskTracker::new();
    // The store and containerd come first: READY=1 never waits for the scheduler, so a boot
    // does not hang on the network.
    let store = Arc::new(Store::open(&config.data_dir)?);
    let runtime = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        r = connect_runtime(&config, &*notifier) => r?,
    };
    let containerd_version = runtime
        .containerd_version()
        .await
        .context("cannot ask containerd its version")?;
    tracing::info!(containerd.version = %containerd_version, cgroup.version = %runtime.cgroup_version(), "runtime ready");
    // Before any pull of this run: what a pull of an earlier run (killed mid-pull) held.
    match runtime.release_abandoned_leases().await {
        Ok(released) if released.is_empty() => {}
        Ok(released) => {
            tracing::info!(leases = ?released, "released the leases of pulls an earlier run of the agent left");
        }
        Err(error) => {
            tracing::warn!(%error, "cannot release the leases of pulls an earlier run left; they expire within 24 h");
        }
    }
    let joining = format!(
        "joining cluster {} at {}",
        config.cluster, config.scheduler_endpoint
    );
    service::ready(&*notifier, &joining);
    let (phase, phases) = watch::channel(service::Phase::Starting(joining));
    tracker.spawn(service::supervise(
        Arc::clone(&notifier),
        service::watchdog_interval(),
        phases,
        cancel.child_token(),
    ));
    // A host that cannot join starts no task.
    let credential = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        r = credential(&config, &store) => r?,
    };

    let mut network_config =
        NetworkConfig::new(config.network_cidr, &config.data_dir.join("network"));
    network_config.bridge = config.network_bridge.clone();
    network_config.masquerade = config.network_masquerade;
    network_config.netns_dir = config.network_netns_dir.clone();
    network_config.host_netns = config.network_host_netns.clone();
    network_config.block_instance_metadata = config.block_instance_metadata;
    network_config.task_host_ports = config.task_host_ports.iter().copied().collect();
    network_config.eni_allowed_macs = config.eni_allowed_macs.clone();
    let scheduler = guard::SchedulerTarget::from_endpoint(&config.scheduler_endpoint)
        .context("the scheduler endpoint has no host")?;
    let resolver: Arc<dyn guard::Resolve> = Arc::new(guard::SystemResolver);
    network_config.blocked_destinations = guard::initial(&scheduler, &*resolver).await;
    let network = Network::open(network_config)
        .await
        .context("cannot set up task networking (see network_cidr, network_bridge and network_host_netns in the configuration)")?;
    tracing::info!(bridge = %config.network_bridge, cidr = %config.network_cidr, "task network ready");
    let endpoint = bind_endpoint(config.network_host_netns.as_deref())?;
    let introspection = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the introspection endpoint (see metrics_listen)",
                config.metrics_listen
            )
        })?;
    let sampler = runtime.stats_sampler();
    let host_dns =
        crate::task::host_dns(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());

    let identity = host::identity(&config.data_dir).with_context(|| {
        format!(
            "cannot keep the instance identity in {}",
            config.data_dir.display()
        )
    })?;
    let resources = host::resources(
        config.reserved_cpu,
        config.reserved_memory_mib,
        &config.reserved_ports,
    )
    .map_err(anyhow::Error::msg)?;
    let attributes = host::attributes(
        &runtime.cgroup_version(),
        &containerd_version,
        &config.attributes,
    );
    let tls = match credential {
        Identity::None => None,
        Identity::Files(material) => Some(watch::channel(material).1),
        Identity::Joined(identity) => {
            let (tx, rx) = watch::channel(identity.material.clone());
            let renewal = SchedulerRenewal {
                endpoint: config.scheduler_endpoint.clone(),
                data_dir: config.data_dir.clone(),
            };
            let publish = move |renewed: &AgentIdentity| {
                tx.send_replace(renewed.material.clone());
            };
            tracker.spawn(trust::keep_renewed(
                renewal,
                *identity,
                publish,
                cancel.child_token(),
            ));
            Some(rx)
        }
    };

    let outbox = Arc::new(Notify::new());
    let network = Arc::new(network);
    tracker.spawn(guard::keep_current(
        scheduler,
        network.config().blocked_destinations.clone(),
        resolver,
        Arc::clone(&network) as Arc<dyn guard::Block>,
        cancel.child_token(),
    ));
    let sweep_network = Arc::clone(&network);
    let network: Arc<dyn crate::network::TaskNetworking> = network;
    let runtime = Arc::new(runtime);
    let awslogs = crate::logs::awslogs::AwsLogs::new(
        config
            .awslogs_endpoint
            .clone()
            .or_else(|| config.aws_endpoint.clone()),
        cancel.child_token(),
    );
    tracker.spawn({
        let (awslogs, cancel) = (awslogs.clone(), cancel.clone());
        async move {
            cancel.cancelled().await;
            awslogs.drain(crate::logs::awslogs::SHUTDOWN_GRACE).await;
        }
    });
    let (engine, handle) = Engine::new(
        Arc::clone(&runtime),
        Arc::clone(&network),
        Arc::clone(&store),
        EngineConfig {
            stop_timeout: config.stop_timeout,
            cleanup_wait: config.task_cleanup_wait,
            restart_backoff: crate::engine::RESTART_BACKOFF,
            restart_backoff_max: crate::engine::RESTART_BACKOFF_MAX,
            volume_host_paths: config.volume_host_paths.clone(),
            allow_privileged: config.allow_privileged,
            allow_host_pid_ipc: config.allow_host_pid_ipc,
            host_dns,
            allowed_devices: config.allowed_devices.clone(),
            allow_unconfined_seccomp: config.allow_unconfined_seccomp,
            allowed_capabilities: config.allowed_capabilities.clone(),
            environment_file_paths: config.environment_file_paths.clone(),
            pull_behavior: config.image_pull_behavior,
            secret_source: Arc::new(crate::secrets::SchedulerSecrets {
                endpoint: config.scheduler_endpoint.clone(),
                tls: tls.clone(),
                store: Arc::clone(&store),
            }),
            aws_secrets: Arc::new(crate::secrets::SdkSecrets::new(config.aws_endpoint.clone())),
            awslogs,
        },
        Arc::clone(&outbox),
        cancel.child_token(),
    );
    let disk = engine.disk();
    tracker.spawn(crate::disk::watch(
        Arc::clone(&disk),
        Arc::new(crate::disk::HostDataDir),
        {
            let engine = handle.clone();
            move || {
                let engine = engine.clone();
                async move { engine.flush().await }
            }
        },
        HEALTH_PROBE_INTERVAL,
        cancel.child_token(),
    ));
    let pulls = engine.pulls();
    // The image collector decides under the engine's table of the images tasks hold.
    let mut collector = crate::images::Collector::new(
        crate::images::RuntimeImages {
            runtime: (*runtime).clone(),
            containerd_root: config.containerd_root.clone(),
        },
        engine.images(),
        crate::images::Policy {
            minimum_age: config.image_minimum_age,
            keep_newest: config.image_keep_newest,
            max_removals: config.image_removals_per_cycle,
            high_percent: config.image_gc_high_percent,
            low_percent: config.image_gc_low_percent,
        },
    );
    collector.gate = crate::images::test_gate();
    let collector = Arc::new(collector);
    let image_desk = crate::images::ImageDesk(collector.clone());
    tracker.spawn(
        collector
            .run(config.image_cleanup_interval, cancel.child_token())
            .instrument(tracing::info_span!("image_collector")),
    );
    let engine_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (failed, stop_all) = (Arc::clone(&engine_failed), cancel.clone());
    tracker.spawn(async move {
        if let Err(error) = engine.run().await {
            tracing::error!(%error, "task engine stopped on a state store error; stopping the agent");
            failed.store(true, std::sync::atomic::Ordering::SeqCst);
            // Without its engine the agent must not look healthy to the scheduler.
            stop_all.cancel();
        }
    });
    // Leftovers of tasks the engine does not know (a lost store, a cleanup cut short).
    tracker.spawn(crate::sweep::run(
        crate::sweep::Sweeper::new(
            crate::sweep::RuntimeHost {
                runtime: Arc::clone(&runtime),
                network: sweep_network,
            },
            handle.clone(),
            config.orphan_cleanup_grace,
        ),
        cancel.child_token(),
    ));
    let (latest, snapshots) = tokio::sync::watch::channel(None);
    tracker.spawn(crate::endpoint::serve(
        endpoint,
        handle.clone(),
        network,
        config.cluster.clone(),
        snapshots.clone(),
        cancel.child_token(),
    ));
    let health = Arc::new(Health::default());
    health.watch_disk(Arc::clone(&disk));
    tracker.spawn(crate::health::monitor(
        Arc::clone(&health),
        crate::health::Probes {
            containerd: move || {
                let runtime = Arc::clone(&runtime);
                async move { runtime.containerd_version().await.is_ok() }
            },
            engine_barrier: {
                let engine = handle.clone();
                move || {
                    let engine = engine.clone();
                    async move { engine.barrier().await }
                }
            },
            data_dir: config.data_dir.clone(),
        },
        HEALTH_PROBE_INTERVAL,
        cancel.child_token(),
    ));
    if !config.metrics_interval.is_zero() {
        let batches = Arc::new(crate::metrics::BatchBuffer::new(
            crate::metrics::BUFFER_BATCHES,
        ));
        tracker.spawn(crate::metrics::collect(
            handle.clone(),
            Arc::new(sampler),
            crate::metrics::HostSampler::new(&config.data_dir, &config.containerd_root),
            config.metrics_interval,
            crate::metrics::Sinks {
                latest,
                batches: Arc::clone(&batches),
                health: Arc::clone(&health),
            },
            cancel.child_token(),
        ));
        // Pull progress goes on the metrics stream, between samples.
        tracker.spawn(
            crate::images::publish_progress(
                pulls,
                Arc::clone(&batches),
                crate::images::PUBLISH_EVERY,
                cancel.child_token(),
            )
            .instrument(tracing::info_span!("pull_progress")),
        );
        tracker.spawn(crate::metrics::stream(
            config.scheduler_endpoint.clone(),
            tls.clone(),
            Arc::clone(&store),
            batches,
            cancel.child_token(),
        ));
    }
    tracker.spawn(crate::metrics::serve(
        introspection,
        crate::metrics::Introspection {
            engine: handle.clone(),
            store: Arc::clone(&store),
            cluster: config.cluster.clone(),
            latest: snapshots,
        },
        cancel.child_token(),
    ));
    let drain_tls = tls.clone();
    let drain_store = Arc::clone(&store);
    let session_config = SessionConfig {
        endpoint: config.scheduler_endpoint.clone(),
        cluster: config.cluster.clone(),
        heartbeat_interval: config.heartbeat_interval,
        instance_identity: identity,
        version_info: VersionInfo {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            containerd_version,
        },
        resources,
        attributes,
        tls,
        health,
        disk,
        images: Some(image_desk),
    };
    phase.send_replace(service::Phase::Running(Arc::new(service::AgentProbe {
        engine: handle.clone(),
        store: Arc::clone(&store),
        cluster: config.cluster.clone(),
    })));
    tracker.spawn(session::run(
        session_config,
        store,
        handle,
        outbox,
        cancel.child_token(),
    ));
    tracker.close();

    let ended_on_its_own = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("shutting down; containers keep running");
            if config.drain_on_shutdown {
                service::stopping(&*notifier, "draining this instance at the scheduler before exiting");
                crate::drain::drain_before_exit(&config.scheduler_endpoint, drain_tls, drain_store).await;
            }
            service::stopping(&*notifier, "stopping; containers keep running");
            false
        }
        _ = cancel.cancelled() => true,
        _ = tracker.wait() => true,
    };
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "agent tasks did not stop in time"
        );
    }
    if engine_failed.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!(
            "the task engine stopped on a state store error (see the log); containers keep running"
        );
    }
    if ended_on_its_own {
        anyhow::bail!("the agent's tasks ended without a shutdown signal");
    }
    Ok(())
}

/// Connects to containerd, waiting (with STATUS= saying so) while its socket does not answer,
/// as it may still be starting at boot; any other failure is final.
async fn connect_runtime(
    config: &AgentConfig,
    notifier: &dyn service::Notifier,
) -> anyhow::Result<Runtime> {
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
            .jittered(0.2);
    let socket = config.containerd_address.display();
    loop {
        let mut runtime_config = RuntimeConfig::new(&config.containerd_address, &config.data_dir);
        runtime_config.namespace = config.containerd_namespace.clone();
        runtime_config.insecure_registries = config.insecure_registries.clone();
        runtime_config.credentials = berth_runtime::CredentialSources {
            docker_config: config.registry_docker_config.clone(),
            token_commands: config.registry_token_commands.clone(),
        };
        runtime_config.pull_timeout = config.image_pull_timeout;
        runtime_config.max_manifest_bytes = config.max_manifest_size_mib << 20;
        runtime_config.max_concurrent_downloads = config.max_concurrent_downloads;
        runtime_config.init_path = config.init_path.clone();
        runtime_config.registry_certs_dir = Some(config.registry_certs_dir.clone());
        // The running binary itself, even after an upgrade replaced its file.
        runtime_config.namespace_holder = Some(berth_runtime::HolderCommand {
            program: "/proc/self/exe".into(),
            args: vec![crate::cli::TASK_HOLDER.to_owned()],
        });
        let error = match Runtime::connect(runtime_config).await {
            Ok(runtime) => match runtime.containerd_version().await {
                Ok(_) => return Ok(runtime),
                Err(error) => error,
            },
            Err(error @ (RuntimeError::Connect(_) | RuntimeError::Containerd(_))) => error,
            Err(error) => return Err(error).context("cannot start the container runtime"),
        };
        let delay = backoff.next_delay();
        service::status(notifier, &format!("waiting for containerd at {socket}"));
        tracing::warn!(
            error = &error as &(dyn std::error::Error + 'static),
            containerd.socket = %socket,
            retry_in_ms = delay.as_millis() as u64,
            "containerd does not answer yet; waiting"
        );
        tokio::time::sleep(delay).await;
    }
}

/// How the agent authenticates to the scheduler.
enum Identity {
    /// Plain http (loopback or allow_plaintext).
    None,
    /// The operator's mTLS files.
    Files(TlsMaterial),
    /// The certificate the agent got by joining, renewed by the agent.
    Joined(Box<AgentIdentity>),
}

/// The agent's credential: the operator's files, the certificate it joined with before, or a
/// new one from joining now (retried while the scheduler is unreachable; a refusal is final).
async fn credential(config: &AgentConfig, store: &Store) -> anyhow::Result<Identity> {
    if let Some(files) = &config.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        return Ok(Identity::Files(TlsMaterial {
            ca: read(&files.ca_file)?,
            cert: read(&files.cert_file)?,
            key: read(&files.key_file)?,
        }));
    }
    if !config.scheduler_endpoint.starts_with("https://") {
        return Ok(Identity::None);
    }
    if let Some(identity) = trust::load(&config.data_dir, std::time::SystemTime::now())? {
        tracing::info!(valid_until = ?identity.not_after, "using the agent certificate from the data dir");
        return Ok(Identity::Joined(Box::new(identity)));
    }
    let Some(join) = &config.join else {
        return Err(TrustError::NoCredential(config.scheduler_endpoint.clone()).into());
    };
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
            .jittered(0.2);
    loop {
        match trust::join(
            &config.scheduler_endpoint,
            &config.cluster,
            join,
            &config.data_dir,
        )
        .await
        {
            Ok((instance_id, identity)) => {
                store.register_anew(&config.cluster, &instance_id)?;
                crate::first_boot::forget_used_token(join);
                tracing::info!(instance.id = %instance_id, cluster = %config.cluster, valid_until = ?identity.not_after, "joined the cluster");
                return Ok(Identity::Joined(Box::new(identity)));
            }
            Err(error) if error.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = &error as &(dyn std::error::Error + 'static),
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot join the cluster yet; retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                tracing::error!(error = %error, "joining the cluster failed");
                return Err(error.into());
            }
        }
    }
}

/// Binds the task endpoint at 169.254.170.2 (an address of the bridge, made by
/// `Network::open`) inside the namespace that holds the bridge.
fn bind_endpoint(host_netns: Option<&std::path::Path>) -> anyhow::Result<tokio::net::TcpListener> {
    let address = std::net::SocketAddr::from((ENDPOINT_ADDRESS, ENDPOINT_LISTEN_PORT));
    let bind = move || {
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(listener)
    };
    let listener = match host_netns {
        Some(path) => NetNs::open(path)
            .run(bind)
            .context("cannot enter network_host_netns to bind the task endpoint")?,
        None => bind(),
    }
    .with_context(|| format!("cannot listen on {address} for the task endpoint"))?;
    tokio::net::TcpListener::from_std(listener).context("cannot register the task endpoint")
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the agent can only be killed; wait forever.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
