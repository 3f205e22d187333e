//! Credentials from an external command per registry, the way ECR tokens are fetched: the
//! configured executable runs with the registry host as its only argument (no shell, stdin
//! empty, under the deadline) and prints either
//! - one line: a token, sent as the bearer; or
//! - a JSON object: `{"username", "password"}` (basic credentials, such as ECR's `AWS` and
//!   its password) or `{"token"}`, with an optional `"expires_at"` (RFC 3339).
//!
//! An answer is kept until [`EXPIRY_MARGIN`] before the expiry it states, else for
//! [`DEFAULT_TOKEN_TTL`](super::DEFAULT_TOKEN_TTL); the command runs again after that.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use super::{CredentialError, CredentialSource, DEFAULT_TOKEN_TTL, RegistryAuth, run_command};

/// How long before a stated expiry an answer stops being used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct TokenCommands {
    commands: BTreeMap<String, PathBuf>,
    cache: tokio::sync::Mutex<Cache>,
}

/// Answers by registry, each with the instant it stops being used.
#[derive(Default)]
struct Cache(HashMap<String, (RegistryAuth, Instant)>);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Cache {
    fn get(&self, registry: &str, now: Instant) -> Option<RegistryAuth> {
        self.0
            .get(registry)
            .filter(|(_, until)| now < *until)
            .map(|(auth, _)| auth.clone())
    }

    fn put(&mut self, registry: &str, auth: RegistryAuth, ttl: Duration, now: Instant) {
        self.0.insert(registry.to_owned(), (auth, now + ttl));
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, alias = "expiresAt")]
    expires_at: Option<String>,
}

impl TokenCommands {
    pub(super) fn new(commands: BTreeMap<String, PathBuf>) -> Self {
        Self {
            commands,
            cache: tokio::sync::Mutex::new(Cache::default()),
        }
    }
}

#[async_trait]
impl CredentialSource for TokenCommands {
    async fn lookup(&self, registry: &str) -> Result<Option<RegistryAuth>, CredentialError> {
        let Some(program) = self.commands.get(registry) else {
            return Ok(None);
        };
        // One run at a time: pulls that start together wait for one answer.
        let mut cache = self.cache.lock().await;
        if let Some(auth) = cache.get(registry, Instant::now()) {
            return Ok(Some(auth));
        }
        let failed = |reason: String| CredentialError {
            registry: registry.to_owned(),
            source_name: format!("token command {}", program.display()),
            reason,
        };
        let ran = run_command(program, &[registry], "")
            .await
            .map_err(failed)?;
        if !ran.success {
            let quote = ran.stderr_quote();
            return Err(failed(if quote.is_empty() {
                format!("it failed ({})", ran.status)
            } else {
                format!("it failed ({}): {quote}", ran.status)
            }));
        }
        let (auth, ttl) = parse_answer(&ran.stdout, jiff::Timestamp::now()).map_err(failed)?;
        tracing::debug!(
            registry,
            command = %program.display(),
            ttl_s = ttl.as_secs(),
            "registry token fetched"
        );
        cache.put(registry, auth.clone(), ttl, Instant::now());
        Ok(Some(auth))
    }
}

/// The credentials a command printed and how long to use them, given the wall clock `now`.
/// An error never quotes the output.
fn parse_answer(stdout: &[u8], now: jiff::Timestamp) -> Result<(RegistryAuth, Duration), String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "it printed something that is not UTF-8")?;
    let text = text.trim();
    if text.is_empty() {
        return Err("it printed nothing".to_owned());
    }
    if !text.starts_with('{') {
        if text.lines().count() > 1 || text.chars().any(char::is_whitespace) {
            return Err("it printed more than one word; print a token, or a JSON object".into());
        }
        return Ok((RegistryAuth::Bearer(text.to_owned()), DEFAULT_TOKEN_TTL));
    }
    let answer: Answer = serde_json::from_str(text).map_err(|e| {
        format!(
            "its JSON cannot be read (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let auth = match (answer.username, answer.password, answer.token) {
        (Some(username), Some(password), None) if !username.is_empty() => {
            RegistryAuth::Basic { username, password }
        }
        (None, None, Some(token)) if !token.is_empty() => RegistryAuth::Bearer(token),
        _ => {
            return Err(
                "its JSON holds neither a username and a password nor a token (exactly one of them)"
                    .into(),
            );
        }
    };
    let ttl = match answer.expires_at {
        None => DEFAULT_TOKEN_TTL,
        Some(at) => {
            let at: jiff::Timestamp = at
                .parse()
                .map_err(|_| "its expires_at is not an RFC 3339 time".to_owned())?;
            let left = at.duration_since(now);
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            left.saturating_sub(EXPIRY_MARGIN)
        }
    };
    Ok((auth, ttl))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_line_is_a_bearer_token_and_json_may_be_either_kind_with_an_expiry() {
        assert_eq!(
            parse_answer(b"tok-123\n", now()).unwrap(),
            (RegistryAuth::Bearer("tok-123".into()), DEFAULT_TOKEN_TTL)
        );
        assert_eq!(
            parse_answer(
                br#"{"username":"AWS","password":"pw","expires_at":"2026-01-01T12:00:00Z"}"#,
                now()
            )
            .unwrap(),
            (
                RegistryAuth::Basic {
                    username: "AWS".into(),
                    password: "pw".into()
                },
                Duration::from_secs(12 * 3600) - EXPIRY_MARGIN
            )
        );
        assert_eq!(
            parse_answer(
                br#"{"token":"t","expiresAt":"2025-12-31T00:00:00Z"}"#,
                now()
            )
            .unwrap(),
            (RegistryAuth::Bearer("t".into()), Duration::ZERO)
        );
    }

    #[test]
    fn bad_answers_are_refused_without_quoting_them() {
        for (out, want) in [
            (&b""[..], "it printed nothing"),
            (b"SECRET more", "more than one word"),
            (br#"{"password":"SECRET"}"#, "neither a username"),
            (
                br#"{"token":"SECRET","username":"u","password":"p"}"#,
                "neither",
            ),
            (
                br#"{"token":"SECRET","expires_at":"soon"}"#,
                "not an RFC 3339 time",
            ),
            (br#"{"token": SECRET}"#, "cannot be read"),
        ] {
            let err = parse_answer(out, now()).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_used_until_their_time_is_up() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        cache.put(
            "r",
            RegistryAuth::Bearer("a".into()),
            Duration::from_secs(60),
            t0,
        );
        assert!(cache.get("r", t0).is_some());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(cache.get("r", Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get("r", Instant::now()).is_none());
        assert!(cache.get("other", t0).is_none());
        assert_eq!(format!("{cache:?}"), r#"{"r"}"#);
    }

    #[tokio::test]
    async fn the_command_runs_once_per_answer_with_the_registry_as_argument() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = dir.path().join("token");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho run >> {}\necho \"tok-for-$1\"\n",
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let failing = dir.path().join("failing");
        std::fs::write(&failing, "#!/bin/sh\necho 'no session' >&2\nexit 4\n").unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let source = TokenCommands::new(BTreeMap::from([
            ("r:5000".to_owned(), script),
            ("f:5000".to_owned(), failing),
        ]));
        for _ in 0..2 {
            assert_eq!(
                source.lookup("r:5000").await.unwrap(),
                Some(RegistryAuth::Bearer("tok-for-r:5000".into()))
            );
        }
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
        assert_eq!(source.lookup("x:5000").await.unwrap(), None);
        let err = source.lookup("f:5000").await.unwrap_err().to_string();
        assert!(
            err.contains("from token command")
                && err.ends_with("it failed (exit status: 4): no session"),
            "{err}"
        );
    }
}
