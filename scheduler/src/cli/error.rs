//! berthctl's errors, their messages for people and their exit statuses.

use std::path::PathBuf;
use std::time::Duration;

use crate::taskdef::TaskDefError;

/// Why a berthctl command failed. `Display` is the message after "berthctl: ".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A `--file` could not be read. (Each message holds its cause's text, for the one line
    /// berthctl prints, so no cause is also a source.)
    #[error("cannot read {}: {error}", path.display())]
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A `--file` is not a valid task definition (checked locally before it is sent).
    #[error("{}: {error}", path.display())]
    TaskDefinition { path: PathBuf, error: TaskDefError },
    /// A service command's input (flags or --cli-input-json) is unusable.
    #[error("{what}")]
    ServiceInput { what: String },
    /// A berthctl config file is not valid.
    #[error("config file {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// `--endpoint` is not a URL.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// The scheduler cannot be reached.
    #[error(
        "cannot reach the scheduler at {endpoint}: {reason}; is berth-scheduler running? (--endpoint / BERTH_ENDPOINT)"
    )]
    Unreachable { endpoint: String, reason: String },
    /// The scheduler refused or failed the call; the message is the server's.
    #[error("{message}")]
    Api { code: tonic::Code, message: String },
    /// A describe call named objects that do not exist.
    #[error("{}", describe_failures(.0))]
    Failures(Vec<(String, String)>),
    /// `wait` ran out of time.
    #[error("timed out after {} waiting for {condition}: {}", seconds(*waited), pending.join(", "))]
    WaitTimeout {
        condition: &'static str,
        waited: Duration,
        pending: Vec<String>,
    },
    /// `deploy --wait` saw its deployment fail (or be replaced).
    #[error("deployment {deployment} of service {service} failed: {reason}")]
    DeploymentFailed {
        service: String,
        deployment: String,
        reason: String,
    },
    /// `wait services-stable` found a service that is not ACTIVE.
    #[error("service {service} is {status}: it will not become stable")]
    ServiceNotActive { service: String, status: String },
    /// `wait tasks-running` saw a task stop first.
    #[error("task {task_id} stopped before it was running: {reason}")]
    TaskStopped { task_id: String, reason: String },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Standard output could not be written.
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    /// A file berthctl makes (a client certificate or its key) could not be written.
    #[error("cannot write {}: {reason}", path.display())]
    WriteFile { path: PathBuf, reason: String },
    /// The connection broke during a call made with a client certificate: with TLS 1.3 the
    /// scheduler checks the certificate after the handshake and closes the connection.
    #[error(
        "the scheduler at {endpoint} closed the connection ({reason}): it refuses a client certificate its cluster CA did not sign or that is not valid now; check --cert-file, or make a new one with `berthctl create-client-certificate`"
    )]
    CertificateRefused { endpoint: String, reason: String },
    /// A secret's name or value breaks the rules (checked before it is sent).
    #[error("{0}")]
    InvalidSecret(String),
    /// A key or certificate request could not be made.
    #[error("cannot make the client key and certificate request: {0}")]
    Key(String),
}

impl CliError {
    /// The process exit status for this error: 64 for a bad `--file`, 2 for a bad endpoint
    /// (a usage error, like clap's), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ReadFile { .. }
            | Self::TaskDefinition { .. }
            | Self::ServiceInput { .. }
            | Self::Config { .. }
            | Self::InvalidSecret(_) => 64,
            Self::Endpoint { .. } => 2,
            Self::Unreachable { .. }
            | Self::Api { .. }
            | Self::Failures(_)
            | Self::WaitTimeout { .. }
            | Self::TaskStopped { .. }
            | Self::DeploymentFailed { .. }
            | Self::ServiceNotActive { .. }
            | Self::Runtime(_)
            | Self::Output(_)
            | Self::WriteFile { .. }
            | Self::CertificateRefused { .. }
            | Self::Key(_) => 1,
        }
    }
}

/// An error naming every failure of a describe call, if it had any.
pub(super) fn check_failures(failures: &[berth_proto::v1::Failure]) -> Result<(), CliError> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(CliError::Failures(
        failures
            .iter()
            .map(|f| (f.arn.clone(), f.reason.clone()))
            .collect(),
    ))
}

fn describe_failures(failures: &[(String, String)]) -> String {
    let items: Vec<String> = failures
        .iter()
        .map(|(arn, reason)| format!("{arn}: {reason}"))
        .collect();
    items.join(", ")
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

/// The error of a failed call to the scheduler at `endpoint`: "unreachable" (with the hint)
/// when the transport failed, the server's own message otherwise.
pub(super) fn from_status(endpoint: &str, status: &tonic::Status) -> CliError {
    let transport_failed = status.code() == tonic::Code::Unavailable
        && std::error::Error::source(status)
            .is_some_and(|source| source.is::<tonic::transport::Error>());
    if transport_failed {
        return CliError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason: root_cause(status),
        };
    }
    let message = if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    };
    CliError::Api {
        code: status.code(),
        message,
    }
}

/// [`from_status`] for a call made with a client certificate: a call cut by the transport (not
/// a status the scheduler answered with) is taken for a refused certificate.
pub(super) fn from_status_with_cert(endpoint: &str, status: &tonic::Status) -> CliError {
    let cut = status.code() != tonic::Code::Unavailable
        && (std::error::Error::source(status).is_some() || status.code() == tonic::Code::Cancelled);
    if cut {
        return CliError::CertificateRefused {
            endpoint: endpoint.to_owned(),
            reason: root_cause(status),
        };
    }
    from_status(endpoint, status)
}

/// The innermost cause of an error, for people: an I/O error by its kind ("connection
/// refused"), anything else by its message.
pub(super) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    let mut io: Option<&std::io::Error> = None;
    while let Some(source) = current.source() {
        if let Some(e) = source.downcast_ref::<std::io::Error>() {
            io = Some(e);
        }
        current = source;
    }
    if let Some(io) = io {
        use std::io::ErrorKind as K;
        return match io.kind() {
            kind @ (K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::TimedOut
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::AddrNotAvailable) => kind.to_string(),
            _ => io.to_string(),
        };
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_exit_codes() {
        let unreachable = CliError::Unreachable {
            endpoint: "http://127.0.0.1:7700".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the scheduler at http://127.0.0.1:7700: connection refused; is berth-scheduler running? \
             (--endpoint / BERTH_ENDPOINT)"
        );
        assert_eq!(unreachable.exit_code(), 1);
        let api = from_status(
            "http://x",
            &tonic::Status::not_found("task definition `web:9` not found"),
        );
        assert_eq!(api.to_string(), "task definition `web:9` not found");
        assert_eq!(api.exit_code(), 1);
        assert_eq!(
            from_status("http://x", &tonic::Status::internal("")).to_string(),
            "Internal error"
        );
        let missing = CliError::Failures(vec![
            ("t-1".into(), "MISSING".into()),
            ("t-2".into(), "MISSING".into()),
        ]);
        assert_eq!(missing.to_string(), "t-1: MISSING, t-2: MISSING");
        let timeout = CliError::WaitTimeout {
            condition: "tasks to be RUNNING",
            waited: Duration::from_secs(60),
            pending: vec!["t-1 (PENDING)".into()],
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 60s waiting for tasks to be RUNNING: t-1 (PENDING)"
        );
        let bad_file = CliError::ReadFile {
            path: "td.json".into(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            bad_file.to_string(),
            "cannot read td.json: entity not found"
        );
        assert_eq!(bad_file.exit_code(), 64);
    }

    #[test]
    fn root_cause_names_io_errors_by_kind() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Outer(#[source] std::io::Error);
        let refused = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "os error 111",
        ));
        assert_eq!(root_cause(&refused), "connection refused");
    }
}
