//! EC2 instance tags through the instance metadata service, IMDSv2: a session token by PUT,
//! then the tag names and each value by GET with it. Tags reach the metadata service only when
//! the instance allows it ("allow tags in instance metadata"); without that the list is a 404.
//! Timeouts are short, so a host that is not on EC2 (nothing answers at the address) costs the
//! boot about a second.

use std::time::Duration;

/// How long connecting to the metadata service may take: it is link-local and answers at once
/// on EC2; elsewhere nothing answers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Lifetime asked for the session token: the few calls of one first boot.
const TOKEN_TTL_SECONDS: &str = "60";
/// Tries of one GET after the token was given, for the service's rare transient failures.
const ATTEMPTS: u32 = 3;

/// What the metadata service said about the instance's tags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tags {
    /// No IMDSv2 service answered (not EC2, or the service is turned off): why.
    NoService(String),
    /// The instance does not expose its tags in the metadata.
    NotExposed,
    /// Every tag whose name starts with `prefix`, as (name, value), in the service's order.
    Found(Vec<(String, String)>),
}

/// The metadata service answered in a way that stops the first boot.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("the instance metadata service answered {status} to GET {url}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("the instance metadata service did not answer GET {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot make an HTTP client for the instance metadata service")]
    Client(#[source] reqwest::Error),
}

/// A client of the metadata service at `endpoint` (`http://169.254.169.254` on EC2).
#[derive(Debug)]
pub(crate) struct Imds {
    endpoint: String,
    http: reqwest::Client,
}

impl Imds {
    pub(crate) fn new(endpoint: &str) -> Result<Imds, ImdsError> {
        // reqwest's TLS is built in even for plain http; it takes the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // The metadata service is link-local: never through a proxy.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(ImdsError::Client)?;
        Ok(Imds {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The tags whose names start with `prefix`.
    pub(crate) async fn tags(&self, prefix: &str) -> Result<Tags, ImdsError> {
        let token_url = format!("{}/latest/api/token", self.endpoint);
        let token = match self
            .http
            .put(&token_url)
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .send()
            .await
        {
            Ok(answer) if answer.status().is_success() => match answer.text().await {
                Ok(token) => token,
                Err(e) => return Ok(Tags::NoService(format!("its token could not be read: {e}"))),
            },
            // Another cloud's metadata service, or IMDSv2 turned off.
            Ok(answer) => {
                return Ok(Tags::NoService(format!(
                    "PUT {token_url} answered {}",
                    answer.status()
                )));
            }
            Err(e) => {
                return Ok(Tags::NoService(format!(
                    "nothing answered at {token_url} ({})",
                    innermost(&e)
                )));
            }
        };
        let list_url = format!("{}/latest/meta-data/tags/instance", self.endpoint);
        let Some(names) = self.get(&list_url, &token).await? else {
            return Ok(Tags::NotExposed);
        };
        let mut found = Vec::new();
        for name in names
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(prefix))
        {
            let url = format!("{list_url}/{name}");
            // A tag removed between the two calls is simply absent.
            if let Some(value) = self.get(&url, &token).await? {
                found.push((name.to_owned(), value));
            }
        }
        Ok(Tags::Found(found))
    }

    /// The body of `url`; `None` for a 404. Transient failures are tried again.
    async fn get(&self, url: &str, token: &str) -> Result<Option<String>, ImdsError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let result = self
                .http
                .get(url)
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await;
            let retry = match result {
                Ok(answer) if answer.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
                Ok(answer) if answer.status().is_success() => match answer.text().await {
                    Ok(body) => return Ok(Some(body)),
                    Err(source) => ImdsError::Transport {
                        url: url.to_owned(),
                        source,
                    },
                },
                Ok(answer) if answer.status().is_server_error() => ImdsError::Status {
                    url: url.to_owned(),
                    status: answer.status(),
                },
                Ok(answer) => {
                    return Err(ImdsError::Status {
                        url: url.to_owned(),
                        status: answer.status(),
                    });
                }
                Err(source) => ImdsError::Transport {
                    url: url.to_owned(),
                    source,
                },
            };
            if attempt >= ATTEMPTS {
                return Err(retry);
            }
            tracing::warn!(
                error = &retry as &(dyn std::error::Error + 'static),
                attempt,
                "instance metadata call failed; trying again"
            );
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }
}

/// The innermost cause of a transport error (a refused connection, a timeout).
fn innermost(error: &reqwest::Error) -> String {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}
