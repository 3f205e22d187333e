//! Keeping the agent's certificate fresh: it is renewed at two thirds of its lifetime (as the
//! kubelet rotates its client certificate), retried with backoff when the scheduler cannot be
//! reached, and each new certificate is handed to the session for its next connection.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Asks for a new certificate; the scheduler in production, a fake in tests.
#[async_trait::async_trait]
pub(crate) trait Renew: Send + Sync {
    type Item: Clone + Send + Sync;
    type Error: std::error::Error + Send + Sync + 'static;

    async fn renew(&self, current: &Self::Item) -> Result<Self::Item, Self::Error>;

    /// The certificate's validity: (not before, not after).
    fn validity(item: &Self::Item) -> (SystemTime, SystemTime);
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its
/// lifetime.
pub(crate) fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime * 2 / 3
}

/// The retry delays of a failed renewal: 1 s doubling up to 5 min, varied by ±20 %.
fn retries() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(300)).jittered(0.2)
}

/// Renews `current` at two thirds of its lifetime, again and again, handing each new one to
/// `publish`, until cancelled.
pub(crate) async fn keep_renewed<R: Renew>(
    renewer: R,
    mut current: R::Item,
    publish: impl Fn(&R::Item) + Send,
    cancel: CancellationToken,
) {
    let mut backoff = retries();
    loop {
        let (not_before, not_after) = R::validity(&current);
        let wait = renew_at(not_before, not_after)
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tracing::debug!(renew_in_s = wait.as_secs(), "certificate renewal scheduled");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = renewer.renew(&current) => r,
            };
            match result {
                Ok(renewed) => {
                    let (_, until) = R::validity(&renewed);
                    tracing::info!(
                        valid_until = ?until,
                        "agent certificate renewed"
                    );
                    current = renewed;
                    publish(&current);
                    backoff.reset();
                    break;
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = &error as &(dyn std::error::Error + 'static),
                        retry_in_s = delay.as_secs(),
                        expires = ?not_after,
                        "cannot renew the agent certificate; retrying"
                    );
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::watch;
    use tokio::time::Instant;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the scheduler is away")]
    struct Away;

    /// Issues certificates valid from "now" for `lifetime`; fails the first `fail` calls.
    #[derive(Clone)]
    struct Fake {
        lifetime: Duration,
        fail: Arc<Mutex<u32>>,
        calls: Arc<Mutex<Vec<Instant>>>,
    }

    #[async_trait::async_trait]
    impl Renew for Fake {
        type Item = (SystemTime, SystemTime);
        type Error = Away;

        async fn renew(&self, _: &Self::Item) -> Result<Self::Item, Away> {
            self.calls.lock().unwrap().push(Instant::now());
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(Away);
            }
            let now = SystemTime::now();
            Ok((now, now + self.lifetime))
        }

        fn validity(item: &Self::Item) -> (SystemTime, SystemTime) {
            *item
        }
    }

    #[test]
    fn renewal_is_at_two_thirds() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            renew_at(start, start + Duration::from_secs(7 * 24 * 3600)),
            start + Duration::from_secs(7 * 24 * 3600 * 2 / 3)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_certificate_is_renewed_at_two_thirds_and_retried_until_it_is() {
        let lifetime = Duration::from_secs(7 * 24 * 3600);
        let fake = Fake {
            lifetime,
            fail: Arc::new(Mutex::new(2)),
            calls: Arc::default(),
        };
        let now = SystemTime::now();
        let (tx, mut rx) = watch::channel((now, now + lifetime));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let publish = move |item: &(SystemTime, SystemTime)| {
            tx.send_replace(*item);
        };
        let task = tokio::spawn(keep_renewed(
            fake.clone(),
            (now, now + lifetime),
            publish,
            cancel.clone(),
        ));
        rx.changed().await.unwrap();
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3, "two failures, then a renewal");
        let first = calls[0] - start;
        let two_thirds = lifetime * 2 / 3;
        // SystemTime does not move on paused time, so the wait is exactly two thirds.
        assert!(
            first >= two_thirds - Duration::from_secs(1) && first <= two_thirds,
            "{first:?}"
        );
        // Retries back off: about 1 s, then about 2 s (±20 %).
        let gaps = [calls[1] - calls[0], calls[2] - calls[1]];
        assert!(
            gaps[0] >= Duration::from_millis(800) && gaps[0] <= Duration::from_millis(1200),
            "{gaps:?}"
        );
        assert!(
            gaps[1] >= Duration::from_millis(1600) && gaps[1] <= Duration::from_millis(2400),
            "{gaps:?}"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
