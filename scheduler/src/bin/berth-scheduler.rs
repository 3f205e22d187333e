//! berth-scheduler: the reference control plane. Parses flags, starts tracing, opens the
//! store, sets up TLS (the cluster CA and, at first start, the admin's berthctl config), binds
//! the listener and runs the server until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use berth_scheduler::server::{self, ServerConfig, TEST_HOOKS_ENV, TestHooks, TrustConfig};
use berth_scheduler::store::Store;
use berth_scheduler::trust::{ClusterCa, GivenCa, setup};
use clap::{Parser, ValueEnum};
use tokio_util::sync::CancellationToken;

/// Exit code for bad flags and an unusable data directory (EX_USAGE).
#[path = "berth-scheduler/service.rs"]
mod service;

const EXIT_USAGE: u8 = 64;

/// The Berth reference scheduler: serves the control API and the agents on one port.
#[derive(Debug, Parser)]
#[command(version = env!("BERTH_LONG_VERSION"))]
struct Cli {
    /// Address to serve gRPC on (TLS unless --insecure).
    #[arg(long, env = "BERTH_SCHEDULER_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Serve plaintext gRPC and check no caller: anyone who reaches the port can run any image
    /// as root on every host. For tests on one machine only.
    #[arg(long, env = "BERTH_SCHEDULER_INSECURE")]
    insecure: bool,
    /// Another DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_san: Vec<String>,
    /// An existing CA certificate (PEM) to use instead of creating one (with --tls-ca-key-file).
    #[arg(
        long,
        env = "BERTH_SCHEDULER_TLS_CA_FILE",
        requires = "tls_ca_key_file"
    )]
    tls_ca_file: Option<PathBuf>,
    /// The key of --tls-ca-file (PEM, PKCS#8, mode 0600).
    #[arg(
        long,
        env = "BERTH_SCHEDULER_TLS_CA_KEY_FILE",
        requires = "tls_ca_file"
    )]
    tls_ca_key_file: Option<PathBuf>,
    /// A server certificate chain (PEM) to serve instead of one made at start (with
    /// --tls-key-file); it must be signed by the cluster CA.
    #[arg(long, env = "BERTH_SCHEDULER_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file (PEM).
    #[arg(long, env = "BERTH_SCHEDULER_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// How long an agent's certificate lasts; agents renew at two thirds of it.
    #[arg(long, env = "BERTH_SCHEDULER_AGENT_CERT_LIFETIME", default_value = "7d", value_parser = berth_policy::parse_duration)]
    agent_cert_lifetime: Duration,
    /// Directory for the scheduler's database (created if missing).
    #[arg(long, env = "BERTH_SCHEDULER_DATA_DIR")]
    data_dir: PathBuf,
    /// How often agents send heartbeats, in whole seconds: "10s", "1m" or "10".
    #[arg(long, env = "BERTH_SCHEDULER_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    heartbeat_interval: Duration,
    /// How long a stopped task stays visible before it is forgotten: "1h", "30m" or seconds.
    #[arg(long, env = "BERTH_SCHEDULER_TASK_RETENTION", default_value = "1h", value_parser = berth_policy::parse_duration)]
    task_retention: Duration,
    /// How often a connected agent is asked for its full state, to reconcile the two views
    /// (also on every session open): "5m", "30s" or seconds.
    #[arg(long, env = "BERTH_SCHEDULER_RECONCILE_INTERVAL", default_value = "5m", value_parser = parse_positive)]
    reconcile_interval: Duration,
    /// How long an instance may stay disconnected before it is lost: its tasks are marked
    /// STOPPED (stop code InstanceLost) and their resources released.
    #[arg(long, env = "BERTH_SCHEDULER_INSTANCE_LOST_AFTER", default_value = "10m", value_parser = parse_positive)]
    instance_lost_after: Duration,
    /// How much of the agents' metrics the scheduler keeps in memory per task, container and
    /// instance (rates and `berthctl stats` read it): "1h", "15m" or seconds.
    #[arg(long, env = "BERTH_SCHEDULER_METRICS_WINDOW", default_value = "1h", value_parser = berth_policy::parse_duration)]
    metrics_window: Duration,
    /// Serve the scheduler's own Prometheus `/metrics` on this address (loopback unless you
    /// name another, e.g. 127.0.0.1:7701); not served when unset.
    #[arg(long, env = "BERTH_SCHEDULER_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log format on stderr.
    #[arg(long, env = "BERTH_SCHEDULER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

/// A duration (`berth_policy::parse_duration`) above zero.
fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = berth_policy::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!(
            "{s:?} is zero; give a duration such as \"30s\" or \"5m\""
        ));
    }
    Ok(d)
}

/// A heartbeat interval: a duration (`berth_policy::parse_duration`) of whole seconds, at least
/// one (the wire carries seconds).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = berth_policy::parse_duration(s).map_err(|error| error.to_string())?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "{s:?} is not a whole number of seconds, e.g. \"10s\""
        ));
    }
    if !(1..=u64::from(u32::MAX)).contains(&d.as_secs()) {
        return Err(format!("{s:?} is out of range: use at least 1s"));
    }
    Ok(d)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("7"), Ok(Duration::from_secs(7)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("1.5s").is_err());
        assert!(parse_interval("ten").is_err());
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
    }
}
