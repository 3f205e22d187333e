//! Credentials from a Docker `config.json`, as the Docker CLI reads them: a registry named in
//! `credHelpers` asks that helper; else a `credsStore` asks the store's helper; else `auths`
//! gives `auth` (base64 of `user:password`), or `username` and `password`, or a
//! `registrytoken`. A helper is `docker-credential-<name>` found on `PATH`, run as `get` with
//! the registry's server URL on stdin and no shell; it prints `{"Username", "Secret"}`, or
//! fails saying "credentials not found", which means it knows nothing of the registry.
//! The file is read at each lookup (it is small), so a `docker login` takes effect at once.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;

use super::{CredentialError, CredentialSource, RegistryAuth, run_command};

/// The most bytes of a config file read.
const CONFIG_LIMIT: u64 = 1 << 20;
/// The server URL the Docker CLI uses for Docker Hub, in `auths` and towards helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

#[derive(Debug)]
pub(super) struct DockerConfig {
    path: PathBuf,
    /// Where helpers are looked for: None is `PATH`, as the Docker CLI does.
    helper_dir: Option<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

impl DockerConfig {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            helper_dir: None,
        }
    }

    #[cfg(test)]
    fn with_helper_dir(mut self, dir: &std::path::Path) -> Self {
        self.helper_dir = Some(dir.to_owned());
        self
    }

    fn error(&self, registry: &str, reason: String) -> CredentialError {
        CredentialError {
            registry: registry.to_owned(),
            source_name: format!("Docker config {}", self.path.display()),
            reason,
        }
    }

    fn read(&self, registry: &str) -> Result<Option<File>, CredentialError> {
        use std::io::Read as _;
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(registry, format!("cannot open it: {e}"))),
        };
        let mut text = Vec::new();
        file.take(CONFIG_LIMIT + 1)
            .read_to_end(&mut text)
            .map_err(|e| self.error(registry, format!("cannot read it: {e}")))?;
        if text.len() as u64 > CONFIG_LIMIT {
            return Err(self.error(registry, format!("it is larger than {CONFIG_LIMIT} bytes")));
        }
        // serde_json's message says where the file is wrong, never what a value holds.
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| self.error(registry, format!("it is not a Docker config: {e}")))
    }

    async fn helper(
        &self,
        registry: &str,
        name: &str,
    ) -> Result<Option<RegistryAuth>, CredentialError> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(self.error(
                registry,
                format!("{name:?} is not a credential helper name"),
            ));
        }
        let program = format!("docker-credential-{name}");
        let resolved = match &self.helper_dir {
            Some(dir) => dir.join(&program),
            None => PathBuf::from(&program),
        };
        let ran = run_command(&resolved, &["get"], &server_url(registry))
            .await
            .map_err(|reason| self.error(registry, reason))?;
        if !ran.success {
            // Helpers say "credentials not found in native keychain" on stdout for an unknown
            // server; that is no failure, only nothing known.
            let said = String::from_utf8_lossy(&ran.stdout).to_ascii_lowercase();
            if said.contains("credentials not found") {
                return Ok(None);
            }
            let quote = ran.stderr_quote();
            return Err(self.error(
                registry,
                format!(
                    "{program} get failed ({}){}",
                    ran.status,
                    if quote.is_empty() {
                        String::new()
                    } else {
                        format!(": {quote}")
                    }
                ),
            ));
        }
        let answer: HelperAnswer = serde_json::from_slice(&ran.stdout).map_err(|_| {
            self.error(
                registry,
                format!("{program} get printed no JSON object with Username and Secret"),
            )
        })?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        if answer.username == "<token>" {
            return Err(self.error(
                registry,
                format!(
                    "{program} answered an identity token, which Berth cannot exchange; store a username and password or a registry token"
                ),
            ));
        }
        Ok(Some(RegistryAuth::Basic {
            username: answer.username,
            password: answer.secret,
        }))
    }

    fn in_auths(
        &self,
        registry: &str,
        auths: &HashMap<String, AuthEntry>,
    ) -> Result<Option<RegistryAuth>, CredentialError> {
        let Some(entry) = auths
            .iter()
            .find(|(key, _)| normalize(key) == registry)
            .map(|(_, e)| e)
        else {
            return Ok(None);
        };
        if let Some(token) = entry.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(RegistryAuth::Bearer(token.to_owned())));
        }
        if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| self.error(registry, "its auth is not base64 text".to_owned()))?;
            let (username, password) = decoded.split_once(':').ok_or_else(|| {
                self.error(
                    registry,
                    "its auth does not hold a username and a password separated by ':'".to_owned(),
                )
            })?;
            return Ok(Some(RegistryAuth::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password)
            && !username.is_empty()
        {
            return Ok(Some(RegistryAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        if entry.identitytoken.is_some() {
            return Err(self.error(
                registry,
                "its entry holds only an identity token, which Berth cannot exchange".to_owned(),
            ));
        }
        Ok(None)
    }
}

#[async_trait]
impl CredentialSource for DockerConfig {
    async fn lookup(&self, registry: &str) -> Result<Option<RegistryAuth>, CredentialError> {
        let Some(file) = self.read(registry)? else {
            return Ok(None);
        };
        if let Some(name) = file
            .cred_helpers
            .iter()
            .find(|(key, _)| normalize(key) == registry)
            .map(|(_, name)| name.clone())
        {
            return self.helper(registry, &name).await;
        }
        if let Some(store) = file.creds_store.as_deref().filter(|s| !s.is_empty())
            && let Some(found) = self.helper(registry, store).await?
        {
            return Ok(Some(found));
        }
        self.in_auths(registry, &file.auths)
    }
}

/// A key of `auths` or `credHelpers` as the registry host of image references: scheme and
/// path dropped, Docker Hub's names as `docker.io`.
fn normalize(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

/// What a helper is asked for: Docker Hub by the CLI's URL, any other registry by its host.
fn server_url(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        registry.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    fn config(dir: &tempfile::TempDir, json: &str) -> DockerConfig {
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        DockerConfig::new(path)
    }

    #[tokio::test]
    async fn auths_give_basic_credentials_by_host_whatever_the_keys_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        let c = config(
            &dir,
            &format!(
                r#"{{"auths": {{"https://r.example:5000/v2/": {{"auth": "{auth}"}},
                    "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}},
                    "tok.example": {{"registrytoken": "rt"}}}}}}"#
            ),
        );
        assert_eq!(
            c.lookup("r.example:5000").await.unwrap(),
            Some(RegistryAuth::Basic {
                username: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            c.lookup("docker.io").await.unwrap(),
            Some(RegistryAuth::Basic {
                username: "bob".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            c.lookup("tok.example").await.unwrap(),
            Some(RegistryAuth::Bearer("rt".into()))
        );
        assert_eq!(c.lookup("other:5000").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_missing_file_knows_nothing_and_a_bad_one_says_where_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let missing = DockerConfig::new(dir.path().join("absent.json"));
        assert_eq!(missing.lookup("r").await.unwrap(), None);
        let bad = config(&dir, r#"{"auths": {"r": {"auth": "!!notbase64-SECRET"}}}"#);
        let err = bad.lookup("r").await.unwrap_err().to_string();
        assert!(err.contains("its auth is not base64 text"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        let broken = config(&dir, r#"{"auths": "SECRET"#);
        let err = broken.lookup("r").await.unwrap_err().to_string();
        assert!(err.contains("is not a Docker config"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    fn helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn helpers_answer_for_their_registries_and_the_store_for_the_rest() {
        let bin = tempfile::tempdir().unwrap();
        helper(
            bin.path(),
            "berthtest",
            r#"read host; if [ "$1" = get ] && [ "$host" = r.example ]; then echo '{"ServerURL":"r.example","Username":"hu","Secret":"hs"}'; else echo 'credentials not found in native keychain'; exit 1; fi"#,
        );
        helper(
            bin.path(),
            "berthstore",
            r#"read host; if [ "$host" = s.example ]; then echo '{"Username":"su","Secret":"ss"}'; elif [ "$host" = fail.example ]; then echo 'keychain locked' >&2; exit 2; else echo 'credentials not found'; exit 1; fi"#,
        );
        helper(
            bin.path(),
            "berthtoken",
            r#"echo '{"Username":"<token>","Secret":"idt"}'"#,
        );
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            &dir,
            r#"{"credHelpers": {"r.example": "berthtest", "i.example": "berthtoken"},
                "credsStore": "berthstore",
                "auths": {"a.example": {"username": "au", "password": "ap"}}}"#,
        )
        .with_helper_dir(bin.path());
        let basic = |u: &str, p: &str| {
            Some(RegistryAuth::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(c.lookup("r.example").await.unwrap(), basic("hu", "hs"));
        assert_eq!(c.lookup("s.example").await.unwrap(), basic("su", "ss"));
        // Unknown to the store: the file's own entries.
        assert_eq!(c.lookup("a.example").await.unwrap(), basic("au", "ap"));
        assert_eq!(c.lookup("n.example").await.unwrap(), None);
        let err = c.lookup("fail.example").await.unwrap_err().to_string();
        assert!(
            err.contains(
                "docker-credential-berthstore get failed (exit status: 2): keychain locked"
            ),
            "{err}"
        );
        let err = c.lookup("i.example").await.unwrap_err().to_string();
        assert!(err.contains("identity token"), "{err}");
        assert!(!err.contains("idt"), "{err}");
    }

    #[test]
    fn keys_are_read_as_image_reference_hosts() {
        assert_eq!(normalize("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize("r.example/v2/"), "r.example");
        assert_eq!(server_url("docker.io"), DOCKER_HUB_SERVER);
        assert_eq!(server_url("r.example:5000"), "r.example:5000");
    }
}
