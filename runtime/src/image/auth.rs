//! Where a pull's registry credentials come from. A pull that brings its own credentials
//! (the task's: what the scheduler sent with the assignment) uses them; otherwise the agent's
//! sources are asked in order, and the first that knows the registry answers:
//! 1. a Docker `config.json` (`credHelpers`, then `credsStore`, then `auths`), its helpers run
//!    as `docker-credential-<name> get` with the registry on stdin (`docker.rs`);
//! 2. an external command per registry that prints a token, the way ECR tokens are fetched,
//!    cached until the expiry it states, else for [`DEFAULT_TOKEN_TTL`] (`command.rs`).
//!
//! A mirror (`hosts.rs`) is never sent the upstream's credentials, the pull's own or the
//! sources': when it asks for some, the sources are asked for the mirror's own host
//! ([`Credentials::lookup`]), and none means it is asked anonymously.
//!
//! None of them, or none that knows the registry, means anonymous access (a bearer token the
//! registry offers anonymously is still fetched). Whatever a source answers, basic
//! credentials or a token, works with both of a registry's challenges: basic credentials are
//! sent as they are or exchanged at the bearer realm, a token is sent as the bearer.
//!
//! Credentials never reach a log line or an error: [`RegistryAuth`]'s `Debug` hides them, and
//! a source's failure names the source, the registry and what went wrong, never what it read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{PullError, RegistryAuth};

mod command;
mod docker;

/// How long a credential helper or a token command may run.
pub const CREDENTIAL_COMMAND_DEADLINE: Duration = Duration::from_secs(10);
/// How long a token command's answer is used when it states no expiry.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The most bytes read of a command's output (a token, a helper's JSON).
const OUTPUT_LIMIT: usize = 64 << 10;
/// The most characters of a command's stderr quoted in an error.
const STDERR_QUOTE: usize = 200;

/// The agent's sources of registry credentials, asked in this order for a pull that brings
/// none of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSources {
    /// A Docker `config.json` (`auths`, `credHelpers`, `credsStore`), read at each pull so an
    /// edit or a login takes effect without a restart. A missing file knows no registry.
    pub docker_config: Option<PathBuf>,
    /// Per registry host (`host[:port]`, as in image references): an executable run with the
    /// host as its only argument, no shell, that prints a token (see `command.rs`).
    pub token_commands: BTreeMap<String, PathBuf>,
}

/// Why a credential source could not answer. Says which source, for which registry, and what
/// went wrong; never what the source read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get credentials for registry {registry} from {source_name}: {reason}")]
pub struct CredentialError {
    pub(crate) registry: String,
    pub(crate) source_name: String,
    pub(crate) reason: String,
}

/// One source of credentials.
#[async_trait]
pub(crate) trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The credentials this source holds for `registry` (`host[:port]`), or None when it knows
    /// nothing of that registry.
    async fn lookup(&self, registry: &str) -> Result<Option<RegistryAuth>, CredentialError>;
}

/// The chain of sources, in order. Cheap to clone; clones share the sources (and a token
/// command's cache), so the pull and the registry client's mirrors ask the same ones.
#[derive(Debug, Default, Clone)]
pub(crate) struct Credentials {
    sources: Arc<[Box<dyn CredentialSource>]>,
}

impl Credentials {
    pub(crate) fn new(config: &CredentialSources) -> Self {
        let mut sources: Vec<Box<dyn CredentialSource>> = Vec::new();
        if let Some(path) = &config.docker_config {
            sources.push(Box::new(docker::DockerConfig::new(path.clone())));
        }
        if !config.token_commands.is_empty() {
            sources.push(Box::new(command::TokenCommands::new(
                config.token_commands.clone(),
            )));
        }
        Self {
            sources: sources.into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_sources(sources: Vec<Box<dyn CredentialSource>>) -> Self {
        Self {
            sources: sources.into(),
        }
    }

    /// The credentials a pull from `registry` uses: the pull's own when it brings some, else
    /// the first source's that knows the registry, else anonymous.
    pub(crate) async fn resolve(
        &self,
        registry: &str,
        given: &RegistryAuth,
    ) -> Result<RegistryAuth, PullError> {
        if *given != RegistryAuth::Anonymous {
            return Ok(given.clone());
        }
        self.lookup(registry).await
    }

    /// What the sources hold for `host` (`host[:port]`: a registry or a mirror), the first
    /// that knows it answering; anonymous when none does.
    pub(crate) async fn lookup(&self, host: &str) -> Result<RegistryAuth, PullError> {
        for source in self.sources.iter() {
            if let Some(auth) = source.lookup(host).await.map_err(PullError::from)? {
                tracing::debug!(registry = host, source = ?source, "registry credentials found");
                return Ok(auth);
            }
        }
        Ok(RegistryAuth::Anonymous)
    }
}

/// What a command printed and how it ended.
pub(crate) struct Ran {
    pub(crate) success: bool,
    pub(crate) status: String,
    pub(crate) stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Ran {
    /// The start of stderr's first line, for an error (helpers print their reason there).
    pub(crate) fn stderr_quote(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        line.trim().chars().take(STDERR_QUOTE).collect()
    }
}

/// Runs `program args…` without a shell, `input` on its stdin, under
/// [`CREDENTIAL_COMMAND_DEADLINE`]; killed when the deadline passes or the caller gives up.
pub(crate) async fn run_command(
    program: &std::path::Path,
    args: &[&str],
    input: &str,
) -> Result<Ran, String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A command that exits without reading its input is no error of the write.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (out, err) = tokio::join!(read_limited(stdout), read_limited(stderr));
        let status = child.wait().await;
        (out, err, status)
    };
    let (stdout, stderr, status) = tokio::time::timeout(CREDENTIAL_COMMAND_DEADLINE, run)
        .await
        .map_err(|_| {
            format!(
                "{} did not finish within {}s",
                program.display(),
                CREDENTIAL_COMMAND_DEADLINE.as_secs()
            )
        })?;
    let status = status.map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    Ok(Ran {
        success: status.success(),
        status: status.to_string(),
        stdout: stdout?,
        stderr: stderr.unwrap_or_default(),
    })
}

async fn read_limited(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(OUTPUT_LIMIT as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("reading its output: {e}"))?;
    }
    if out.len() > OUTPUT_LIMIT {
        return Err(format!("it printed more than {OUTPUT_LIMIT} bytes"));
    }
    Ok(out)
}

impl From<CredentialError> for PullError {
    fn from(e: CredentialError) -> Self {
        PullError::Credentials {
            registry: e.registry,
            source_name: e.source_name,
            reason: e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str, Option<RegistryAuth>, Mutex<Vec<String>>);

    #[async_trait]
    impl CredentialSource for Fixed {
        async fn lookup(&self, registry: &str) -> Result<Option<RegistryAuth>, CredentialError> {
            self.2.lock().unwrap().push(registry.to_owned());
            if self.0 == "broken" {
                return Err(CredentialError {
                    registry: registry.to_owned(),
                    source_name: "broken".to_owned(),
                    reason: "exit status: 1".to_owned(),
                });
            }
            Ok(self.1.clone())
        }
    }

    fn basic(user: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            username: user.to_owned(),
            password: "hunter2".to_owned(),
        }
    }

    #[tokio::test]
    async fn the_pulls_own_credentials_come_first_then_the_sources_in_order() {
        let chain = Credentials::from_sources(vec![
            Box::new(Fixed("none", None, Mutex::default())),
            Box::new(Fixed("second", Some(basic("second")), Mutex::default())),
            Box::new(Fixed("third", Some(basic("third")), Mutex::default())),
        ]);
        let task = RegistryAuth::Bearer("task".to_owned());
        assert_eq!(chain.resolve("r:5000", &task).await.unwrap(), task);
        assert_eq!(
            chain
                .resolve("r:5000", &RegistryAuth::Anonymous)
                .await
                .unwrap(),
            basic("second")
        );
        let empty = Credentials::default();
        assert_eq!(
            empty
                .resolve("r:5000", &RegistryAuth::Anonymous)
                .await
                .unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[tokio::test]
    async fn a_failing_source_fails_the_pull_naming_source_and_registry() {
        let chain =
            Credentials::from_sources(vec![Box::new(Fixed("broken", None, Mutex::default()))]);
        let err = chain
            .resolve("r:5000", &RegistryAuth::Anonymous)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot get credentials for registry r:5000 from broken: exit status: 1"
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let shown = format!(
            "{:?} {:?} {:?}",
            basic("user"),
            RegistryAuth::Bearer("tok-SECRET".to_owned()),
            CredentialSources {
                docker_config: Some("/etc/docker.json".into()),
                token_commands: BTreeMap::from([("r".to_owned(), "/bin/tok".into())]),
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("user"), "{shown}");
    }

    #[tokio::test]
    async fn commands_run_without_a_shell_with_their_input_and_a_deadline() {
        let ran = run_command(std::path::Path::new("/bin/cat"), &[], "registry:5000")
            .await
            .unwrap();
        assert!(ran.success);
        assert_eq!(ran.stdout, b"registry:5000");
        let err = run_command(std::path::Path::new("/nonexistent/helper"), &[], "")
            .await
            .err()
            .unwrap();
        assert!(err.starts_with("cannot run /nonexistent/helper"), "{err}");
        let ran = run_command(
            std::path::Path::new("/bin/sh"),
            &["-c", "echo 'no credentials here' >&2; exit 3"],
            "",
        )
        .await
        .unwrap();
        assert!(!ran.success);
        assert_eq!(ran.stderr_quote(), "no credentials here");
        assert_eq!(ran.status, "exit status: 3");
    }
}
