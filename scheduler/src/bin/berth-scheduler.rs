//! berth-scheduler: the reference control plane. Parses flags, starts tracing, opens the
//! store, sets up TLS (the cluster CA and, at first start, the admin's berthctl config), binds
//! the listener and runs the server until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;
use berth_scheduler::daemon_cli::{Cli, LogFormat};
use berth_scheduler::server::{self, ServerConfig, TEST_HOOKS_ENV, TestHooks, TrustConfig};
use berth_scheduler::store::Store;
use berth_scheduler::trust::{ClusterCa, GivenCa, setup};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[path = "berth-scheduler/service.rs"]
mod service;

/// Exit code for bad flags and an unusable data directory (EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Under systemd, native journald: every field its own journal field.
    if berth_policy::stderr_is_journal()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_field_prefix(None))
            .try_init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn wait_for_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        r = tokio::signal::ctrl_c() => {
            r.context("cannot listen for SIGINT")?;
            tracing::info!(signal = "SIGINT", "shutting down");
        }
    }
    token.cancel();
    Ok(())
}

/// The cluster CA, the server certificate's names and the admin's config, unless --insecure.
fn trust(cli: &Cli, store: &Store) -> anyhow::Result<Option<TrustConfig>> {
    let endpoint = setup::local_endpoint(cli.listen, !cli.insecure);
    if cli.insecure {
        setup::write_admin_config(&cli.data_dir, store, &endpoint, None)?;
        return Ok(None);
    }
    let given = match (&cli.tls_ca_file, &cli.tls_ca_key_file) {
        (Some(cert_file), Some(key_file)) => Some(GivenCa {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        }),
        _ => None,
    };
    let ca = ClusterCa::load_or_create(&cli.data_dir, given.as_ref())?;
    let server_identity = match (&cli.tls_cert_file, &cli.tls_key_file) {
        (Some(cert), Some(key)) => Some((
            std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?,
            std::fs::read_to_string(key)
                .with_context(|| format!("cannot read {}", key.display()))?,
        )),
        _ => None,
    };
    if let Some(path) = setup::write_admin_config(&cli.data_dir, store, &endpoint, Some(&ca))? {
        tracing::info!(path = %path.display(), "wrote the admin's berthctl config (berthctl --config PATH)");
    }
    tracing::info!(ca.pin = %ca.pin(), "TLS on; agents join with a join token and this CA pin");
    Ok(Some(TrustConfig {
        ca,
        server_names: setup::server_names(cli.listen, &cli.tls_san),
        server_identity,
        agent_cert_lifetime: cli.agent_cert_lifetime,
    }))
}

async fn serve(cli: Cli, store: Store) -> anyhow::Result<()> {
    if cli.insecure {
        tracing::warn!(
            listen = %cli.listen,
            "--insecure: serving plaintext gRPC without authentication; anyone who reaches this port can run any image as root on every host"
        );
    }
    let trust = trust(&cli, &store).context("cannot set up TLS")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let config = ServerConfig {
        heartbeat_interval: cli.heartbeat_interval,
        task_retention: cli.task_retention,
        reconcile_interval: cli.reconcile_interval,
        instance_lost_after: cli.instance_lost_after,
        metrics_window: cli.metrics_window,
        metrics_listen: cli.metrics_listen,
        trust: trust.map(std::sync::Arc::new),
        ..ServerConfig::default()
    };
    let supervisor = tokio::spawn(service::supervise(
        store.clone(),
        cli.listen,
        shutdown.child_token(),
    ));
    let result = match test_hooks()? {
        Some(hooks) => {
            server::run_with_hooks(store, listener, config, hooks, shutdown.clone()).await
        }
        None => server::run(store, listener, config, shutdown.clone()).await,
    };
    shutdown.cancel();
    let _ = supervisor.await;
    signals.abort();
    result.context("scheduler failed")
}

/// The test hooks of `BERTH_SCHEDULER_TEST_HOOKS`, for the end-to-end suites (which run debug
/// builds): a release build ignores the variable, so no deployment can turn a fault on.
fn test_hooks() -> anyhow::Result<Option<TestHooks>> {
    let Some(spec) = std::env::var_os(TEST_HOOKS_ENV) else {
        return Ok(None);
    };
    if !cfg!(debug_assertions) {
        tracing::warn!(
            variable = TEST_HOOKS_ENV,
            "test hooks are for debug builds only; ignored"
        );
        return Ok(None);
    }
    let spec = spec
        .to_str()
        .with_context(|| format!("{TEST_HOOKS_ENV} is not UTF-8"))?;
    let hooks = TestHooks::from_spec(spec).with_context(|| format!("bad {TEST_HOOKS_ENV}"))?;
    tracing::warn!(
        hooks = spec,
        "test hooks on: this scheduler injects faults (debug build, {TEST_HOOKS_ENV})"
    );
    Ok(Some(hooks))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing(cli.log_format);

    let store = match std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("cannot create data dir {}", cli.data_dir.display()))
        .and_then(|()| {
            Store::open(&cli.data_dir)
                .with_context(|| format!("data dir {} is not usable", cli.data_dir.display()))
        }) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("berth-scheduler: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-scheduler: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, store)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("berth-scheduler: {e:#}");
            ExitCode::FAILURE
        }
    }
}
