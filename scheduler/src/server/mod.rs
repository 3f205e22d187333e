//! The scheduler's gRPC server: `ControlService` (berthctl's API) and `AgentService` (the
//! agents' Register, Session and StreamMetrics) on one listener, the session registry and
//! the heartbeat monitor.
//!
//! [`run`] takes the store, a bound listener and a shutdown token, so tests bind
//! `127.0.0.1:0` and stop the server on demand; [`run_with_hooks`] also takes [`TestHooks`],
//! with which tests of the scheduler's peers inject faults. Every long-lived task (sessions,
//! the monitor) is spawned on one `TaskTracker` and stopped through a child of the shutdown
//! token.

mod agent;
mod control;
mod credentials;
mod error;
mod guard;
mod hooks;
mod images;
mod instances;
mod logs;
mod metrics;
mod pulls;
mod reconcile;
mod revoke;
mod secrets;
mod services;
mod session;
mod stats;
mod telemetry;
#[cfg(test)]
mod tests;
mod tls;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::agent_service_server::AgentServiceServer;
use berth_proto::v1::control_service_server::ControlServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use error::ServerError;
pub use hooks::{Call, Event, HookSpecError, TEST_HOOKS_ENV, TestHooks};
pub use telemetry::DEFAULT_WINDOW as DEFAULT_METRICS_WINDOW;

use crate::store::{Store, StoreError};
use crate::trust::ClusterCa;
use revoke::Revocations;
use session::SessionRegistry;
use telemetry::Telemetry;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How often agents and the scheduler send heartbeats; an agent silent for three intervals
    /// is marked disconnected. Whole seconds, at least one (the wire carries seconds).
    pub heartbeat_interval: Duration,
    /// How long shutdown waits for sessions and in-flight calls before giving up on them.
    pub shutdown_grace: Duration,
    /// How long a stopped task stays visible before it is forgotten.
    pub task_retention: Duration,
    /// TLS, agent certificates and client credentials; None serves plaintext and checks no
    /// caller (`--insecure`).
    pub trust: Option<Arc<TrustConfig>>,
    /// How often a connected agent is asked for its full state to reconcile the two views
    /// (also asked on every session open).
    pub reconcile_interval: Duration,
    /// How long an instance may stay disconnected before it is lost: its tasks are marked
    /// STOPPED (stop code `InstanceLost`) and their resources released.
    pub instance_lost_after: Duration,
    /// How long the in-memory window of the agents' metrics is (per task, container and
    /// instance).
    pub metrics_window: Duration,
    /// Where to serve the scheduler's `/metrics` (Prometheus text); none when unset.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The default of [`ServerConfig::reconcile_interval`].
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The default of [`ServerConfig::instance_lost_after`].
pub const DEFAULT_INSTANCE_LOST_AFTER: Duration = Duration::from_secs(10 * 60);

/// The scheduler's side of trust: the cluster CA, what its server certificate names, and how
/// long the agents' certificates last.
#[derive(Debug)]
pub struct TrustConfig {
    pub ca: ClusterCa,
    /// The server certificate's names and addresses (made at start, signed by `ca`).
    pub server_names: Vec<String>,
    /// An operator's own server certificate chain and key (PEM), used instead.
    pub server_identity: Option<(String, String)>,
    /// How long an agent's certificate lasts (it renews at two thirds).
    pub agent_cert_lifetime: Duration,
}

/// An agent certificate's default lifetime.
pub const DEFAULT_AGENT_CERT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            task_retention: Duration::from_secs(3600),
            trust: None,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            instance_lost_after: DEFAULT_INSTANCE_LOST_AFTER,
            metrics_window: DEFAULT_METRICS_WINDOW,
            metrics_listen: None,
        }
    }
}

/// State shared by both services and the background tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) sessions: SessionRegistry,
    /// Agents' liveness in memory (heartbeats, disconnections).
    pub(crate) liveness: reconcile::Liveness,
    /// The metrics streams a deregistration cuts off.
    pub(crate) revocations: Revocations,
    pub(crate) config: ServerConfig,
    pub(crate) tracker: TaskTracker,
    /// Cancelled on shutdown; sessions and the monitor run under children of it.
    pub(crate) cancel: CancellationToken,
    /// The faults tests inject, when they run the server with [`run_with_hooks`].
    pub(crate) hooks: Option<TestHooks>,
    /// The window of the agents' metrics and their latest health.
    pub(crate) telemetry: Telemetry,
    /// Every gRPC call, counted and timed, for `/metrics`.
    pub(crate) rpc: Arc<metrics::RpcMetrics>,
    /// The agents' latest pull progress, shown on PENDING tasks.
    pub(crate) pulls: pulls::PullBook,
}

impl Shared {
    /// Tells the test hooks, if any, what happened.
    pub(crate) fn record(&self, event: impl FnOnce() -> Event) {
        if let Some(hooks) = &self.hooks {
            hooks.record(event());
        }
    }

    /// The failure a test asked for on this call of `call`, if any.
    pub(crate) fn injected_failure(&self, call: Call) -> Result<(), tonic::Status> {
        match self.hooks.as_ref().and_then(|h| h.failure(call)) {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }

    /// Runs a store call on the blocking pool (redb commits fsync).
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(ServerError::Blocking)?
            .map_err(ServerError::from)
    }
}

/// Serves both services on `listener` until `shutdown` is cancelled, then stops accepting,
/// closes the sessions and waits up to `config.shutdown_grace` for everything to finish.
/// Every store write is committed when it happens, so there is nothing left to flush.
pub async fn run(
    store: Store,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    serve(store, listener, config, None, shutdown).await
}

/// [`run`], with `hooks` through which a test drops sessions, fails calls, delays acks and
/// watches what the server sees: for tests of the scheduler's peers, never for a deployment.
pub async fn run_with_hooks(
    store: Store,
    listener: TcpListener,
    config: ServerConfig,
    hooks: TestHooks,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    serve(store, listener, config, Some(hooks), shutdown).await
}

async fn serve(
    store: Store,
    listener: TcpListener,
    config: ServerConfig,
    hooks: Option<TestHooks>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let grace = config.shutdown_grace;
    let telemetry = Telemetry::new(config.metrics_window);
    let shared = Arc::new(Shared {
        telemetry,
        rpc: Arc::default(),
        pulls: pulls::PullBook::default(),
        store,
        sessions: SessionRegistry::default(),
        liveness: reconcile::Liveness::default(),
        revocations: Revocations::default(),
        config,
        tracker: TaskTracker::new(),
        cancel: shutdown.child_token(),
        hooks,
    });
    if let Some(hooks) = &shared.hooks {
        hooks.attach(&shared);
    }
    let addr = listener.local_addr().ok();
    tracing::info!(
        addr = ?addr,
        tls = shared.config.trust.is_some(),
        heartbeat_interval_s = shared.config.heartbeat_interval.as_secs(),
        "scheduler listening"
    );

    shared.tracker.spawn(
        session::monitor(shared.clone(), shared.cancel.child_token())
            .instrument(tracing::info_span!("heartbeat_monitor")),
    );

    shared.tracker.spawn(
        services::run(shared.clone(), shared.cancel.child_token())
            .instrument(tracing::info_span!("service_scheduler")),
    );

    if let Some(address) = shared.config.metrics_listen {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::MetricsListen { address, source })?;
        shared.tracker.spawn(metrics::serve(
            listener,
            shared.clone(),
            shared.cancel.child_token(),
        ));
    }
    let mut builder =
        tonic::transport::Server::builder().layer(metrics::RpcMetricsLayer(shared.rpc.clone()));
    if let Some(window) = shared.hooks.as_ref().and_then(TestHooks::stream_window) {
        builder = builder.initial_stream_window_size(window);
    }
    let router = builder
        .add_service(ControlServiceServer::new(control::Control::new(
            shared.clone(),
        )))
        .add_service(AgentServiceServer::new(agent::Agent::new(shared.clone())));
    let stopped = shutdown.clone().cancelled_owned();
    let serve: std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &shared.config.trust {
            Some(trust) => {
                let incoming = tls::incoming(
                    listener,
                    tls::acceptor(trust)?,
                    &shared.tracker,
                    shared.cancel.child_token(),
                );
                Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
            }
            None => {
                // TCP_NODELAY: without it small HTTP/2 frames (a DescribeTasks answer, an
                // assignment) wait for the peer's delayed ACK, up to 40 ms on Linux.
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
            }
        };
    let mut serve = serve;

    let result = tokio::select! {
        r = &mut serve => r.map_err(ServerError::Transport),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs(), "in-flight calls outlived the shutdown grace period; dropping them");
            Ok(())
        }
    };
    // Sessions and the monitor stop on the token (cancelled here too if serving failed).
    shared.cancel.cancel();
    shared.tracker.close();
    if tokio::time::timeout(grace, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = shared.tracker.len(),
            "background tasks outlived the shutdown grace period"
        );
    }
    tracing::info!("scheduler stopped");
    result
}
