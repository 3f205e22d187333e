//! berth-scheduler's command line: the flags and the `BERTH_SCHEDULER_*` variables that set
//! them. In the library so the man page and shell completions are generated from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The Berth reference scheduler: serves the control API and the agents on one port.
#[derive(Debug, Parser)]
#[command(name = "berth-scheduler", version = env!("BERTH_LONG_VERSION"))]
pub struct Cli {
    /// Address to serve gRPC on (TLS unless --insecure).
    #[arg(long, env = "BERTH_SCHEDULER_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Serve plaintext gRPC and check no caller: anyone who reaches the port can run any image
    /// as root on every host. For tests on one machine only.
    #[arg(long, env = "BERTH_SCHEDULER_INSECURE")]
    pub insecure: bool,
    /// Another DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_san: Vec<String>,
    /// An existing CA certificate (PEM) to use instead of creating one (with --tls-ca-key-file).
    #[arg(
        long,
        env = "BERTH_SCHEDULER_TLS_CA_FILE",
        requires = "tls_ca_key_file"
    )]
    pub tls_ca_file: Option<PathBuf>,
    /// The key of --tls-ca-file (PEM, PKCS#8, mode 0600).
    #[arg(
        long,
        env = "BERTH_SCHEDULER_TLS_CA_KEY_FILE",
        requires = "tls_ca_file"
    )]
    pub tls_ca_key_file: Option<PathBuf>,
    /// A server certificate chain (PEM) to serve instead of one made at start (with
    /// --tls-key-file); it must be signed by the cluster CA.
    #[arg(long, env = "BERTH_SCHEDULER_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file (PEM).
    #[arg(long, env = "BERTH_SCHEDULER_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// How long an agent's certificate lasts; agents renew at two thirds of it.
    #[arg(long, env = "BERTH_SCHEDULER_AGENT_CERT_LIFETIME", default_value = "7d", value_parser = berth_policy::parse_duration)]
    pub agent_cert_lifetime: Duration,
    /// Directory for the scheduler's database (created if missing).
    #[arg(long, env = "BERTH_SCHEDULER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// How often agents send heartbeats, in whole seconds: "10s", "1m" or "10".
    #[arg(long, env = "BERTH_SCHEDULER_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub heartbeat_interval: Duration,
    /// How long a stopped task stays visible before it is forgotten: "1h", "30m" or seconds.
    #[arg(long, env = "BERTH_SCHEDULER_TASK_RETENTION", default_value = "1h", value_parser = berth_policy::parse_duration)]
    pub task_retention: Duration,
    /// How often a connected agent is asked for its full state, to reconcile the two views
    /// (also on every session open): "5m", "30s" or seconds.
    #[arg(long, env = "BERTH_SCHEDULER_RECONCILE_INTERVAL", default_value = "5m", value_parser = parse_positive)]
    pub reconcile_interval: Duration,
    /// How long an instance may stay disconnected before it is lost: its tasks are marked
    /// STOPPED (stop code InstanceLost) and their resources released.
    #[arg(long, env = "BERTH_SCHEDULER_INSTANCE_LOST_AFTER", default_value = "10m", value_parser = parse_positive)]
    pub instance_lost_after: Duration,
    /// How much of the agents' metrics the scheduler keeps in memory per task, container and
    /// instance (rates and `berthctl stats` read it): "1h", "15m" or seconds.
    #[arg(long, env = "BERTH_SCHEDULER_METRICS_WINDOW", default_value = "1h", value_parser = berth_policy::parse_duration)]
    pub metrics_window: Duration,
    /// Serve the scheduler's own Prometheus `/metrics` on this address (loopback unless you
    /// name another, e.g. 127.0.0.1:7701); not served when unset.
    #[arg(long, env = "BERTH_SCHEDULER_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Log format on stderr.
    #[arg(long, env = "BERTH_SCHEDULER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// How the scheduler writes its log on stderr (under systemd it logs to journald natively).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
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
