//! How berthctl reaches the scheduler, in kubectl's spirit: endpoint, CA and credential from
//! flags, then `BERTH_ENDPOINT`, `BERTH_CA_FILE`, `BERTH_TOKEN`, then a config file
//! (`--config`, `BERTH_CONFIG`, default `~/.config/berth/config.toml`): TOML with `endpoint`,
//! `ca_file` or `ca` (the PEM inline), `token`, and `cert_file`/`key_file`. The token goes to
//! the scheduler as a bearer token on every call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::v1::control_service_client::ControlServiceClient;
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::error::{CliError, root_cause};

/// The endpoint when nothing names one.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:7700";
/// How long connecting to the scheduler may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// berthctl's client of ControlService.
pub(crate) type Client = ControlServiceClient<InterceptedService<Channel, Bearer>>;

/// A berthctl config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    endpoint: Option<String>,
    ca_file: Option<PathBuf>,
    ca: Option<String>,
    token: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// What the flags and the environment gave (clap merges those two, flags first).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Given {
    pub(crate) endpoint: Option<String>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    /// `--config` or `BERTH_CONFIG`: must exist.
    pub(crate) config: Option<PathBuf>,
}

/// Where and how to connect, resolved.
#[derive(Default)]
pub(crate) struct Access {
    pub(crate) endpoint: String,
    ca: Option<Vec<u8>>,
    token: Option<String>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Access {
    /// Whether calls present a client certificate.
    pub(crate) fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| CliError::ReadFile {
        path: path.to_owned(),
        error,
    })
}

fn default_config() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".config/berth/config.toml"))
}

fn load_config(path: &Path) -> Result<ConfigFile, CliError> {
    let text = String::from_utf8(read(path)?).map_err(|_| CliError::Config {
        path: path.to_owned(),
        reason: "it is not UTF-8".to_owned(),
    })?;
    toml::from_str(&text).map_err(|e| CliError::Config {
        path: path.to_owned(),
        reason: e.message().to_owned(),
    })
}

/// Resolves endpoint, CA and credential: flags and environment first, then the config file.
pub(crate) fn resolve(given: Given) -> Result<Access, CliError> {
    let (file, dir) = match given
        .config
        .clone()
        .or_else(|| default_config().filter(|p| p.exists()))
    {
        Some(path) => {
            let file = load_config(&path)?;
            (file, path.parent().map(Path::to_owned))
        }
        None => (ConfigFile::default(), None),
    };
    // Relative paths in a config file are relative to the file.
    let in_dir = |p: PathBuf| match &dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p,
    };
    let endpoint = given
        .endpoint
        .or(file.endpoint)
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let ca = match (given.ca_file, file.ca_file.map(&in_dir), file.ca) {
        (Some(path), _, _) | (None, Some(path), _) => Some(read(&path)?),
        (None, None, Some(pem)) => Some(pem.into_bytes()),
        (None, None, None) => None,
    };
    let token = match (given.token, given.token_file) {
        (Some(token), _) => Some(token),
        (None, Some(path)) => Some(String::from_utf8_lossy(&read(&path)?).trim().to_owned()),
        (None, None) => file.token,
    };
    let identity = match (
        given.cert_file.or(file.cert_file.map(&in_dir)),
        given.key_file.or(file.key_file.map(&in_dir)),
    ) {
        (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
        (None, None) => None,
        _ => {
            return Err(CliError::Endpoint {
                endpoint,
                reason: "a client certificate needs both cert_file and key_file".to_owned(),
            });
        }
    };
    Ok(Access {
        endpoint,
        ca,
        token,
        identity,
    })
}

/// Adds the bearer token, if any, to every call.
#[derive(Debug, Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the scheduler as `access` says.
pub(crate) async fn connect(access: &Access) -> Result<Client, CliError> {
    let endpoint = access.endpoint.as_str();
    let bad = |reason: String| CliError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let tls = if endpoint.starts_with("https://") {
        true
    } else if endpoint.starts_with("http://") {
        false
    } else {
        return Err(bad(
            "use https://HOST:PORT (or http:// for a scheduler run with --insecure)".to_owned(),
        ));
    };
    let mut ep = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|error| bad(error.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    if tls {
        let Some(ca) = &access.ca else {
            return Err(bad(
                "no CA to check the scheduler's certificate: give --ca-file, BERTH_CA_FILE, or ca_file/ca in the config (the scheduler's data dir has berthctl.toml with all of it)"
                    .to_owned(),
            ));
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &access.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        ep = ep.tls_config(config).map_err(|e| bad(root_cause(&e)))?;
    }
    let bearer = match &access.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .map_err(|_| bad("the token holds characters a header cannot carry".to_owned()))?,
        ),
        None => None,
    };
    let channel = ep.connect().await.map_err(|error| CliError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason: root_cause(&error),
    })?;
    Ok(ControlServiceClient::with_interceptor(
        channel,
        Bearer(bearer),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ca.pem", "FILE CA");
        let config = write(
            dir.path(),
            "config.toml",
            "endpoint = \"https://file:1\"\nca_file = \"ca.pem\"\ntoken = \"abcdef.file\"\n",
        );
        let from_file = resolve(Given {
            config: Some(config.clone()),
            ..Given::default()
        })
        .unwrap();
        assert_eq!(from_file.endpoint, "https://file:1");
        assert_eq!(from_file.ca.as_deref(), Some(b"FILE CA".as_slice()));
        assert_eq!(from_file.token.as_deref(), Some("abcdef.file"));
        let flag_ca = write(dir.path(), "flag.pem", "FLAG CA");
        let flags = resolve(Given {
            endpoint: Some("https://flag:2".into()),
            ca_file: Some(flag_ca),
            token: Some("abcdef.flag".into()),
            config: Some(config),
            ..Given::default()
        })
        .unwrap();
        assert_eq!(flags.endpoint, "https://flag:2");
        assert_eq!(flags.ca.as_deref(), Some(b"FLAG CA".as_slice()));
        assert_eq!(flags.token.as_deref(), Some("abcdef.flag"));
        assert!(!format!("{flags:?}").contains("abcdef.flag"));
    }

    #[test]
    fn an_inline_ca_and_a_bad_key_are_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "c.toml", "ca = \"PEM\"\n");
        let access = resolve(Given {
            config: Some(config),
            ..Given::default()
        })
        .unwrap();
        assert_eq!(access.ca.as_deref(), Some(b"PEM".as_slice()));
        let bad = write(dir.path(), "bad.toml", "server = \"x\"\n");
        let err = resolve(Given {
            config: Some(bad),
            ..Given::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
    }

    #[tokio::test]
    async fn https_without_a_ca_says_where_to_give_one() {
        let access = Access {
            endpoint: "https://127.0.0.1:1".into(),
            ..Access::default()
        };
        let err = connect(&access).await.unwrap_err();
        assert!(err.to_string().contains("--ca-file"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_scheduler_gets_a_hint() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let access = Access {
            endpoint: endpoint.clone(),
            ..Access::default()
        };
        let error = connect(&access).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach the scheduler at {endpoint}: connection refused; is berth-scheduler running? \
                 (--endpoint / BERTH_ENDPOINT)"
            )
        );
        let access = Access {
            endpoint: "127.0.0.1:7700".into(),
            ..Access::default()
        };
        let error = connect(&access).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid endpoint `127.0.0.1:7700`: use https://HOST:PORT (or http:// for a scheduler run with --insecure)"
        );
        assert_eq!(error.exit_code(), 2);
    }
}
