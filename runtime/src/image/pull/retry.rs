//! A pull's tries. A registry that is slow, answers 5xx, resets the connection or cannot be
//! reached is tried again with jittered exponential backoff for as long as the pull's deadline
//! (`image_pull_timeout`) allows; each try, credentials included, is cut at the deadline.
//! This is the pull's one deadline: the agent sets no other around it. A download cut off
//! mid-blob keeps its ingest, so the next try resumes it with an HTTP Range request. When no
//! time is left the pull fails with [`PullError::GaveUp`], which names the registry, the
//! number of tries and the last error. An answer (unknown manifest, refused credentials, bad
//! content) ends the pull at once.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{PullOutcome, Puller};
use crate::image::registry::ImageRef;
use crate::image::{PullError, RegistryAuth};

/// A pull's deadline unless configured, as the agent's default `image_pull_timeout`.
pub(crate) const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The first wait before another try; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(15);

/// Waits between tries: doubling from [`RETRY_FIRST`] to [`RETRY_MAX`], each jittered down
/// to half so that hosts retrying one registry spread out.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    tries: u32,
}

impl Backoff {
    /// The wait after the latest failure, given a jitter in [0, 1).
    pub(super) fn next(&mut self, jitter: f64) -> Duration {
        let full = RETRY_FIRST
            .saturating_mul(1 << self.tries.min(8))
            .min(RETRY_MAX);
        self.tries += 1;
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

impl Puller {
    /// Pulls `image`, trying again on transient failures until the pull's deadline.
    pub(super) fn pull_retrying(
        &self,
        image: ImageRef,
        auth: RegistryAuth,
    ) -> BoxFuture<'_, PullOutcome> {
        Box::pin(async move {
            let budget = self.inner.pull_timeout;
            let deadline = Instant::now() + budget;
            let mut backoff = Backoff::default();
            let mut tries = 0u32;
            let gave_up = |tries, last| PullError::GaveUp {
                registry: image.registry().to_owned(),
                reference: image.given().to_owned(),
                tries,
                seconds: budget.as_secs(),
                last: Box::new(last),
            };
            loop {
                tries += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                // The deadline covers the credentials too: a helper or token command that
                // hangs is cut with the try.
                let attempt = async {
                    let auth = self
                        .inner
                        .credentials
                        .resolve(image.registry(), &auth)
                        .await?;
                    self.pull_once(image.clone(), auth).await
                };
                let error = match tokio::time::timeout(left, attempt).await {
                    Ok(Ok(pulled)) => return Ok(pulled),
                    Ok(Err(e)) if !e.is_transient() => return Err(e),
                    Ok(Err(e)) => e,
                    Err(_) => {
                        let cut = PullError::Timeout {
                            what: format!("try {tries} of the pull from {}", image.registry()),
                            seconds: left.as_secs(),
                        };
                        return Err(gave_up(tries, cut));
                    }
                };
                let wait = backoff.next(rand::random());
                if Instant::now() + wait >= deadline {
                    return Err(gave_up(tries, error));
                }
                tracing::warn!(
                    image.ref = image.given(),
                    registry = image.registry(),
                    tries,
                    retry_in_ms = wait.as_millis() as u64,
                    %error,
                    "pull failed; trying again"
                );
                tokio::time::sleep(wait).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use bytes::Bytes;

    use super::super::tests::FakeRegistry;
    use super::*;
    use crate::containerd::Containerd;
    use crate::containerd::fake::FakeContainerd;
    use crate::image::DEFAULT_MAX_MANIFEST_BYTES;
    use crate::image::auth::Credentials;
    use crate::image::fixture::TestImage;
    use crate::image::registry::{BlobStream, Distribution};

    /// A registry whose manifest fetches fail `failures` times with `error`, or stall for
    /// ever; then it serves the image.
    #[derive(Debug)]
    struct Flaky {
        inner: Arc<FakeRegistry>,
        failures: AtomicU32,
        error: Option<PullError>,
        asked: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Distribution for Flaky {
        async fn fetch_manifest(
            &self,
            image: &ImageRef,
            auth: &RegistryAuth,
            limit: u64,
        ) -> Result<(Bytes, String), PullError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                match &self.error {
                    Some(e) => return Err(e.clone()),
                    None => std::future::pending::<()>().await,
                }
            }
            self.inner.fetch_manifest(image, auth, limit).await
        }

        async fn blob_stream(
            &self,
            image: &ImageRef,
            auth: &RegistryAuth,
            digest: &str,
            size: i64,
            media_type: &str,
            offset: u64,
        ) -> Result<BlobStream, PullError> {
            self.inner
                .blob_stream(image, auth, digest, size, media_type, offset)
                .await
        }
    }

    fn flaky(failures: u32, error: Option<PullError>, budget: Duration) -> (Arc<Flaky>, Puller) {
        let image = TestImage::new(&["first layer", "second layer"]);
        let registry = Arc::new(Flaky {
            inner: FakeRegistry::serving("1", &image),
            failures: AtomicU32::new(failures),
            error,
            asked: AtomicU32::new(0),
        });
        let client: Arc<dyn Containerd> = FakeContainerd::new();
        let puller = Puller::with_sources(
            client,
            registry.clone(),
            3,
            DEFAULT_MAX_MANIFEST_BYTES,
            Credentials::default(),
            budget,
        );
        (registry, puller)
    }

    fn unavailable() -> PullError {
        PullError::Registry {
            registry: "127.0.0.1:5000".into(),
            what: "manifest".into(),
            reason: "HTTP 503: down for maintenance".into(),
            transient: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_registry_is_tried_again_until_it_answers() {
        let (registry, puller) = flaky(3, Some(unavailable()), Duration::from_secs(60));
        let t0 = Instant::now();
        let pulled = puller
            .pull(super::super::tests::REF, &RegistryAuth::Anonymous, None)
            .await
            .unwrap();
        assert_eq!(pulled.name, super::super::tests::REF);
        assert_eq!(registry.asked.load(Ordering::SeqCst), 4);
        // Three waits of at most 0.5 s, 1 s and 2 s.
        assert!(
            t0.elapsed() <= Duration::from_millis(3500),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_failing_past_the_deadline_names_registry_tries_and_last_error() {
        let (registry, puller) = flaky(u32::MAX, Some(unavailable()), Duration::from_secs(60));
        let t0 = Instant::now();
        let err = puller
            .pull(super::super::tests::REF, &RegistryAuth::Anonymous, None)
            .await
            .unwrap_err();
        let tries = registry.asked.load(Ordering::SeqCst);
        assert!(
            t0.elapsed() <= Duration::from_secs(60),
            "{:?}",
            t0.elapsed()
        );
        assert!(tries >= 5, "{tries}");
        assert_eq!(
            err.to_string(),
            format!(
                "registry 127.0.0.1:5000 failed {tries} tries of {} within 60s; last error: registry 127.0.0.1:5000 failed on manifest: HTTP 503: down for maintenance",
                super::super::tests::REF
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_that_never_answers_is_cut_at_the_deadline() {
        let (registry, puller) = flaky(u32::MAX, None, Duration::from_secs(90));
        let t0 = Instant::now();
        let err = puller
            .pull(super::super::tests::REF, &RegistryAuth::Anonymous, None)
            .await
            .unwrap_err();
        assert_eq!(t0.elapsed(), Duration::from_secs(90));
        // The manifest fetch gives up after a minute; the second try is cut at the deadline.
        assert_eq!(registry.asked.load(Ordering::SeqCst), 2);
        assert_eq!(
            err.to_string(),
            format!(
                "registry 127.0.0.1:5000 failed 2 tries of {} within 90s; last error: try 2 of the pull from 127.0.0.1:5000 timed out after 29s",
                super::super::tests::REF
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_ends_the_pull_at_once() {
        let unknown = PullError::ManifestUnknown {
            registry: "127.0.0.1:5000".into(),
            repository: "app".into(),
            tag: "1".into(),
        };
        let (registry, puller) = flaky(1, Some(unknown), Duration::from_secs(60));
        let err = puller
            .pull(super::super::tests::REF, &RegistryAuth::Anonymous, None)
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::ManifestUnknown { .. }), "{err}");
        assert_eq!(registry.asked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn waits_double_to_the_cap_and_jitter_only_shortens_them() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| b.next(1.0)).collect();
        assert_eq!(waits[0], RETRY_FIRST);
        assert_eq!(waits[1], RETRY_FIRST * 2);
        assert_eq!(*waits.last().unwrap(), RETRY_MAX);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(Backoff::default().next(0.0), RETRY_FIRST / 2);
    }
}
